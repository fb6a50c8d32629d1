/*
 * apppw.c - app passwords as values (apppw.h).  Owns the password alphabet,
 * the shown and accepted shapes, the encoded-hash format and the scope
 * names.  Owns no storage and no I/O beyond OpenSSL's CSPRNG.
 */
#include "auth/apppw.h"

#include <stdio.h>
#include <string.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/util.h"

static const char apppw_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* Upper bounds accepted when parsing a stored hash, so that a tampered row
 * cannot make a verification allocate gigabytes or loop for minutes. */
#define APPPW_MAX_MEMORY_KIB (4u * 1024 * 1024)
#define APPPW_MAX_PASSES 64u
#define APPPW_MAX_LANES 64u

static int
apppw_is_alnum(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int
apppw_generate(char out[APPPW_LEN + 1])
{
    /* 62 * 4 = 248: bytes at or above it are thrown away, so every
     * character is equally likely (no modulo bias). */
    unsigned char rnd[32];
    size_t n = 0;

    while (n < APPPW_LEN) {
        if (util_random_bytes(rnd, sizeof(rnd)) != 0) {
            OPENSSL_cleanse(rnd, sizeof(rnd));
            OPENSSL_cleanse(out, APPPW_LEN + 1);
            return -1;
        }
        for (size_t i = 0; i < sizeof(rnd) && n < APPPW_LEN; i++)
            if (rnd[i] < 248)
                out[n++] = apppw_alphabet[rnd[i] % 62];
    }
    out[APPPW_LEN] = '\0';
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return 0;
}

void
apppw_format(const char *pw, char out[APPPW_SHOWN_LEN + 1])
{
    size_t o = 0;

    for (size_t i = 0; i < APPPW_LEN; i++) {
        if (i > 0 && i % 4 == 0)
            out[o++] = ' ';
        out[o++] = pw[i];
    }
    out[o] = '\0';
}

int
apppw_normalize(const char *in, size_t len, char out[APPPW_LEN + 1])
{
    size_t n = 0;

    if (len < APPPW_LEN || len > APPPW_SHOWN_LEN)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];

        if (c == ' ') {
            /* One space, only where one group of four ends and the next
             * begins. */
            if (n == 0 || n % 4 != 0 || n == APPPW_LEN || i + 1 >= len ||
                in[i + 1] == ' ' || in[i - 1] == ' ')
                goto fail;
            continue;
        }
        if (!apppw_is_alnum(c) || n == APPPW_LEN)
            goto fail;
        out[n++] = (char)c;
    }
    if (n != APPPW_LEN)
        goto fail;
    out[n] = '\0';
    return 0;

fail:
    OPENSSL_cleanse(out, APPPW_LEN + 1);
    return -1;
}

/* --- base64 without padding, as in PHC strings --------------------------- */

static const char apppw_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t
apppw_b64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = apppw_b64[v >> 18];
        out[o++] = apppw_b64[(v >> 12) & 63];
        out[o++] = apppw_b64[(v >> 6) & 63];
        out[o++] = apppw_b64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = apppw_b64[v >> 18];
        out[o++] = apppw_b64[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = apppw_b64[v >> 18];
        out[o++] = apppw_b64[(v >> 12) & 63];
        out[o++] = apppw_b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

static int
apppw_b64_value(char c)
{
    const char *p = c ? strchr(apppw_b64, c) : NULL;

    return p ? (int)(p - apppw_b64) : -1;
}

/* Decodes exactly `want` bytes from in[0..len); 0 or -1. */
static int
apppw_b64_decode(const char *in, size_t len, unsigned char *out, size_t want)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;

    if (len != (want * 4 + 2) / 3)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = apppw_b64_value(in[i]);

        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == want)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    /* Leftover bits must be zero (one canonical encoding). */
    return o == want && acc == 0 ? 0 : -1;
}

/* --- the KDF ------------------------------------------------------------ */

static int
apppw_kdf(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
          const char *pw, const unsigned char salt[APPPW_SALT_LEN],
          unsigned char tag[APPPW_TAG_LEN])
{
    argon2_context ctx;
    char pwcopy[APPPW_LEN];
    unsigned char secret[APPPW_KEY_LEN];
    int rc;

    /* argon2_ctx takes non-const pointers; give it copies, wiped after. */
    memcpy(pwcopy, pw, APPPW_LEN);
    memcpy(secret, pepper, APPPW_KEY_LEN);
    memset(&ctx, 0, sizeof(ctx));
    ctx.out = tag;
    ctx.outlen = APPPW_TAG_LEN;
    ctx.pwd = (uint8_t *)pwcopy;
    ctx.pwdlen = APPPW_LEN;
    ctx.salt = (uint8_t *)salt;
    ctx.saltlen = APPPW_SALT_LEN;
    ctx.secret = secret;
    ctx.secretlen = APPPW_KEY_LEN;
    ctx.t_cost = p->passes;
    ctx.m_cost = p->memory_kib;
    ctx.lanes = p->lanes;
    /* One thread: the caller already runs us on a pool thread. */
    ctx.threads = 1;
    ctx.version = ARGON2_VERSION_13;
    ctx.flags = ARGON2_DEFAULT_FLAGS;
    rc = argon2_ctx(&ctx, Argon2_id);
    OPENSSL_cleanse(pwcopy, sizeof(pwcopy));
    OPENSSL_cleanse(secret, sizeof(secret));
    return rc == ARGON2_OK ? 0 : -1;
}

int
apppw_hash(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
           const char *pw, char *out, size_t outlen)
{
    unsigned char salt[APPPW_SALT_LEN], tag[APPPW_TAG_LEN];
    char salt64[32], tag64[48];
    int n, r = -1;

    if (strlen(pw) != APPPW_LEN || p->memory_kib > APPPW_MAX_MEMORY_KIB ||
        p->passes > APPPW_MAX_PASSES || p->lanes > APPPW_MAX_LANES || p->lanes == 0)
        return -1;
    if (util_random_bytes(salt, sizeof(salt)) != 0)
        return -1;
    if (apppw_kdf(p, pepper, pw, salt, tag) != 0)
        goto fail;
    apppw_b64_encode(salt, sizeof(salt), salt64);
    apppw_b64_encode(tag, sizeof(tag), tag64);
    n = snprintf(out, outlen, "$argon2id$v=19$m=%u,t=%u,p=%u$%s$%s", p->memory_kib, p->passes,
                 p->lanes, salt64, tag64);
    if (n < 0 || (size_t)n >= outlen)
        goto fail;
    r = 0;

fail:
    OPENSSL_cleanse(tag, sizeof(tag));
    return r;
}

/* Parses an unsigned decimal ending at `stop`; advances *s past it. */
static int
apppw_parse_u32(const char **s, char stop, uint32_t max, uint32_t *out)
{
    const char *p = *s;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max)
            return -1;
        p++;
    }
    if (*p != stop)
        return -1;
    *out = (uint32_t)v;
    *s = p + 1;
    return 0;
}

int
apppw_verify(const unsigned char pepper[APPPW_KEY_LEN], const char *pw, const char *encoded)
{
    static const char prefix[] = "$argon2id$v=19$m=";
    struct apppw_params p;
    unsigned char salt[APPPW_SALT_LEN], want[APPPW_TAG_LEN], got[APPPW_TAG_LEN];
    const char *s = encoded, *dollar;
    int r = -1;

    if (strlen(pw) != APPPW_LEN || strncmp(s, prefix, sizeof(prefix) - 1) != 0)
        return -1;
    s += sizeof(prefix) - 1;
    if (apppw_parse_u32(&s, ',', APPPW_MAX_MEMORY_KIB, &p.memory_kib) != 0 ||
        strncmp(s, "t=", 2) != 0)
        return -1;
    s += 2;
    if (apppw_parse_u32(&s, ',', APPPW_MAX_PASSES, &p.passes) != 0 || strncmp(s, "p=", 2) != 0)
        return -1;
    s += 2;
    if (apppw_parse_u32(&s, '$', APPPW_MAX_LANES, &p.lanes) != 0)
        return -1;
    dollar = strchr(s, '$');
    if (dollar == NULL || apppw_b64_decode(s, (size_t)(dollar - s), salt, sizeof(salt)) != 0 ||
        apppw_b64_decode(dollar + 1, strlen(dollar + 1), want, sizeof(want)) != 0)
        return -1;
    if (apppw_kdf(&p, pepper, pw, salt, got) != 0)
        goto fail;
    r = util_ct_equal(got, want, sizeof(got)) ? 0 : APPPW_MISMATCH;

fail:
    OPENSSL_cleanse(got, sizeof(got));
    OPENSSL_cleanse(want, sizeof(want));
    return r;
}

int
apppw_mac(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *pw,
          unsigned char out[32])
{
    char msg[512];
    size_t ul = strlen(user), pl = strlen(pw);
    unsigned int len = 32;
    int r = -1;

    if (ul + 1 + pl > sizeof(msg))
        return -1;
    memcpy(msg, user, ul);
    msg[ul] = ':';
    memcpy(msg + ul + 1, pw, pl);
    if (HMAC(EVP_sha256(), key, APPPW_KEY_LEN, (const unsigned char *)msg, ul + 1 + pl, out,
             &len) != NULL && len == 32)
        r = 0;
    OPENSSL_cleanse(msg, sizeof(msg));
    return r;
}

int
apppw_locator(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *pw,
              char out[APPPW_LOCATOR_LEN + 1])
{
    unsigned char mac[32];

    if (apppw_mac(key, user, pw, mac) != 0)
        return -1;
    util_hex_encode(mac, APPPW_LOCATOR_LEN / 2, out);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

static const struct {
    const char *name;
    unsigned bit;
} apppw_scopes[] = {
    {"imap", APPPW_SCOPE_IMAP},
    {"pop3", APPPW_SCOPE_POP3},
    {"smtp", APPPW_SCOPE_SMTP},
};

int
apppw_scope_parse(const char *s, unsigned *out)
{
    unsigned scope = 0;

    if (s == NULL || *s == '\0')
        return -1;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        int found = 0;

        for (size_t i = 0; i < ARRAY_SIZE(apppw_scopes); i++) {
            if (strlen(apppw_scopes[i].name) == len &&
                strncmp(apppw_scopes[i].name, s, len) == 0) {
                scope |= apppw_scopes[i].bit;
                found = 1;
            }
        }
        if (!found)
            return -1;
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0')
                return -1;
        }
    }
    *out = scope;
    return 0;
}

void
apppw_scope_format(unsigned scope, char *out, size_t outlen)
{
    size_t o = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(apppw_scopes); i++) {
        if (!(scope & apppw_scopes[i].bit))
            continue;
        int n = snprintf(out + o, outlen - o, "%s%s", o ? "," : "", apppw_scopes[i].name);
        if (n < 0 || (size_t)n >= outlen - o)
            return;
        o += (size_t)n;
    }
}
