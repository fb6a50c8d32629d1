/*
 * tls.h - OpenSSL contexts: the one server context shared by all workers and
 * the client context for backends.
 *
 * Owns policy (protocol versions, ciphers, groups, tickets); owns no
 * connection: core/conn.c runs the per-connection SSL objects.
 */
#ifndef MFA_TLS_H
#define MFA_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>
#include <uv.h>

/*
 * Server context from PEM files (cert_file may hold the chain): TLS 1.2
 * minimum, Mozilla "intermediate" ciphers and TLS 1.3 suites, groups
 * X25519:P-256:P-384, session tickets and a server-side session cache,
 * SSL_MODE_RELEASE_BUFFERS, no renegotiation.  One context serves every
 * worker thread, so all of them share the ticket keys and a session resumes
 * whichever worker the reconnect lands on.  NULL with a message in err.
 */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err,
                            size_t errlen);

/*
 * Client context for backends: TLS 1.2 minimum; verify != 0 checks the
 * peer's chain against ca_file (NULL or "" = the system's default paths), and
 * conn_tls_client then checks the name.  NULL with a message in err.
 */
SSL_CTX *tls_client_ctx_new(int verify, const char *ca_file, char *err, size_t errlen);

/*
 * The reason of the oldest OpenSSL error of this thread as text into out,
 * or "unknown" if there is none; clears the thread's error queue.
 */
void tls_error_text(char *out, size_t outlen);

/*
 * The server context the workers use, replaceable while they run (SIGHUP
 * reloads the certificate).  A worker takes a reference for each handshake
 * it starts (tls_slot_get, then SSL_CTX_free after conn_tls_server, whose
 * SSL object holds its own); the main thread swaps in a new context.  The
 * lock is held only to copy a pointer and count a reference.
 */
struct tls_slot {
    uv_mutex_t lock;
    SSL_CTX *ctx;
};

int tls_slot_init(struct tls_slot *slot, SSL_CTX *ctx);   /* takes ctx */
SSL_CTX *tls_slot_get(struct tls_slot *slot);             /* a new reference, or NULL */
/*
 * Puts ctx (taken) in place of the current one, after copying the session
 * ticket keys over, so that clients resume across a reload.
 */
void tls_slot_set(struct tls_slot *slot, SSL_CTX *ctx);
void tls_slot_free(struct tls_slot *slot);

#endif
