/*
 * tls.c - see tls.h.  Owns the SSL_CTX policy; conn.c owns the SSL objects.
 */
#include "core/tls.h"

#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "core/util.h"

/* Mozilla server-side TLS "intermediate" configuration (version 5.7). */
#define TLS_CIPHERS_12                                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"               \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"               \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"               \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:"                     \
    "DHE-RSA-CHACHA20-POLY1305"
#define TLS_SUITES_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"

/* A fixed id context: sessions are only ever resumed into this service. */
static const unsigned char tls_sid_ctx[] = "mfagate";

void
tls_error_text(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();

    if (e == 0)
        util_strlcpy(out, "unknown", outlen);
    else
        ERR_error_string_n(e, out, outlen);
    ERR_clear_error();
}

/* Writes "what: reason" into err, the reason from OpenSSL's queue. */
static void
tls_set_err(char *err, size_t errlen, const char *what)
{
    char reason[256];

    tls_error_text(reason, sizeof(reason));
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s: %s", what, reason);
}

/* What both sides share: versions, groups, modes, options. */
static int
tls_ctx_common(SSL_CTX *ctx, char *err, size_t errlen)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        tls_set_err(err, errlen, "tls: minimum version");
        return -1;
    }
    if (!SSL_CTX_set1_groups_list(ctx, TLS_GROUPS)) {
        tls_set_err(err, errlen, "tls: groups");
        return -1;
    }
    /*
     * Memory BIOs never block, so a write either completes or fails; idle
     * mail connections are the common case, so give their buffers back.
     */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /*
     * Renegotiation is an attack surface we do not need.  A peer that drops
     * the TCP connection without close_notify is common among mail clients;
     * conn.c reports the socket's EOF either way.
     */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    return 0;
}

SSL_CTX *
tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        tls_set_err(err, errlen, "tls: SSL_CTX_new");
        return NULL;
    }
    if (tls_ctx_common(ctx, err, errlen) < 0)
        goto fail;
    if (!SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS_SUITES_13)) {
        tls_set_err(err, errlen, "tls: ciphers");
        goto fail;
    }
    /* The DHE suites of the intermediate list need parameters. */
    SSL_CTX_set_dh_auto(ctx, 1);
    /* Mozilla intermediate: the client's order wins (it knows its hardware). */
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_set_err(err, errlen, cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_set_err(err, errlen, key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_set_err(err, errlen, "tls: key does not match certificate");
        goto fail;
    }

    /*
     * Mail clients reconnect often: stateless tickets (keys live in this
     * context, which every worker shares) plus the server-side cache for
     * TLS 1.2 clients that only do session ids.
     */
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (!SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1)) {
        tls_set_err(err, errlen, "tls: session id context");
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *
tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        tls_set_err(err, errlen, "tls: SSL_CTX_new");
        return NULL;
    }
    if (tls_ctx_common(ctx, err, errlen) < 0)
        goto fail;
    if (verify) {
        int ok;

        if (ca_file != NULL && ca_file[0] != '\0')
            ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
        else
            ok = SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            tls_set_err(err, errlen, ca_file != NULL && ca_file[0] ? ca_file : "tls: CA paths");
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    /* Sessions are offered back explicitly (conn_tls_client_session). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int
tls_slot_init(struct tls_slot *slot, SSL_CTX *ctx)
{
    int rc = uv_mutex_init(&slot->lock);

    slot->ctx = ctx;
    return rc;
}

SSL_CTX *
tls_slot_get(struct tls_slot *slot)
{
    SSL_CTX *ctx;

    uv_mutex_lock(&slot->lock);
    ctx = slot->ctx;
    if (ctx != NULL)
        SSL_CTX_up_ref(ctx);
    uv_mutex_unlock(&slot->lock);
    return ctx;
}

void
tls_slot_set(struct tls_slot *slot, SSL_CTX *ctx)
{
    unsigned char keys[80];    /* name, HMAC secret, AES key: 16 + 32 + 32 */
    SSL_CTX *old;

    uv_mutex_lock(&slot->lock);
    old = slot->ctx;
    if (old != NULL && SSL_CTX_get_tlsext_ticket_keys(old, keys, sizeof(keys)) == 1)
        SSL_CTX_set_tlsext_ticket_keys(ctx, keys, sizeof(keys));
    slot->ctx = ctx;
    uv_mutex_unlock(&slot->lock);
    OPENSSL_cleanse(keys, sizeof(keys));
    /* Handshakes under way hold their own references. */
    SSL_CTX_free(old);
}

void
tls_slot_free(struct tls_slot *slot)
{
    SSL_CTX_free(slot->ctx);
    slot->ctx = NULL;
    uv_mutex_destroy(&slot->lock);
}
