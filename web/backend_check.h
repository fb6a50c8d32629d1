/*
 * backend_check.h - checks a user's account password the only way mfagate
 * may: by logging in to the backend IMAP server ([backend] host/imap, with
 * imap_tls), on the caller's loop.  Greeting; STARTTLS or implicit TLS if
 * configured; the client's address with ID (as proxy/imap.c does); then
 * AUTHENTICATE PLAIN (SASL-IR when the greeting offers it) and LOGOUT.
 * The whole exchange is bounded by [limits] backend_timeout.
 *
 * The password is copied and wiped as soon as it has been sent.
 */
#ifndef MFA_BACKEND_CHECK_H
#define MFA_BACKEND_CHECK_H

#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "conf/config.h"

enum backend_check_result {
    BACKEND_CHECK_OK = 0,        /* the backend accepted the password */
    BACKEND_CHECK_REFUSED,       /* it said NO */
    BACKEND_CHECK_UNAVAILABLE,   /* down, slow, [UNAVAILABLE], or not IMAP */
};

struct backend_check;

/* Called once on the loop thread (never from inside backend_check_start). */
typedef void (*backend_check_cb)(void *arg, enum backend_check_result result);

/* The browser, for the backend's logs and limits (ID, or the PROXY header). */
struct backend_check_client {
    const char *addr;                /* its address as text, or "" */
    int port;                        /* its port, or 0 */
    const struct sockaddr *local;    /* the address of ours it connected to, or NULL */
};

/*
 * Starts a check.  tls_client is needed (borrowed) when cfg->backend_tls
 * for IMAP is not "no".  On 0, cb runs exactly once unless
 * backend_check_cancel() is called first; on a negative error nothing runs.
 */
int backend_check_start(uv_loop_t *loop, const struct config *cfg, const struct sockaddr *addr,
                        SSL_CTX *tls_client, const char *user, const char *pass,
                        const struct backend_check_client *client, backend_check_cb cb,
                        void *arg, struct backend_check **out);

/* The caller lost interest: cb will not run; the connection is dropped. */
void backend_check_cancel(struct backend_check *bc);

const char *backend_check_result_name(enum backend_check_result r);

#endif
