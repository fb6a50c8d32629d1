/*
 * proxy.h - the mail proxy's state: what all workers share (read-only after
 * start) and what each worker owns (listeners, sessions, auth context).
 *
 * proxy.c implements the worker hooks (core/worker.h) and the session list;
 * session.c the protocol-neutral parts of a session (timers, backend
 * connection, relay, close lifecycle); imap.c the IMAP dialogs.
 */
#ifndef MFA_PROXY_H
#define MFA_PROXY_H

#include <openssl/ssl.h>
#include <uv.h>

#include "conf/config.h"
#include "core/tls.h"
#include "core/worker.h"

struct auth_ctx;
struct session;

/* Read-only after start; shared by every worker thread. */
struct proxy_shared {
    const struct config *cfg;
    struct tls_slot *tls_server;          /* NULL if no [tls]; borrowed, reloadable */
    SSL_CTX *tls_client;                  /* for backends with TLS */
    struct sockaddr_storage backend[3];   /* by enum config_proto */
    struct sockaddr_storage backend_inbound; /* SMTP without AUTH */
    char hostname[256];                   /* for SMTP greetings */
};

/* One listening socket and what it serves. */
struct proxy_listener {
    uv_tcp_t tcp;
    struct proxy_worker *pw;
    const struct config_listener *conf;
    int closed;
};

#define PROXY_MAX_LISTENERS (CONFIG_L_COUNT * CONFIG_MAX_ADDRS)

/* One per worker, used only on that worker's loop thread. */
struct proxy_worker {
    struct worker *w;
    void (*stopped)(void *arg);           /* proxy_worker_stop's callback */
    void *stopped_arg;
    const struct proxy_shared *sh;
    const struct config *cfg;
    struct auth_ctx *auth;                /* the worker's, borrowed */
    struct proxy_listener listeners[PROXY_MAX_LISTENERS];
    int nlisteners;
    int listeners_open;                   /* not yet closed */
    struct session *sessions;             /* doubly linked list */
    int nsessions;
    uint64_t next_id;
    int stopping;
    /* What the SMTP backend's last EHLO on this worker announced, so that
     * clients are told the extensions they will get (smtp.c). */
    int smtp_ext_known;
    unsigned smtp_ext;
    uint64_t smtp_size;
};

/*
 * Fills the shared state: backend addresses, the client TLS context.
 * tls_server (may be NULL) is borrowed.  0, or -1 with err.
 */
int proxy_shared_init(struct proxy_shared *sh, const struct config *cfg,
                      struct tls_slot *tls_server, char *err, size_t errlen);
void proxy_shared_free(struct proxy_shared *sh);

/*
 * Runs the proxy on worker w's loop (its thread): opens its listeners.
 * auth is the worker's auth context, borrowed.  On error, *out may still be
 * set: stop and free it as usual.
 */
int proxy_worker_start(struct worker *w, const struct proxy_shared *sh, struct auth_ctx *auth,
                       struct proxy_worker **out);

/*
 * Stops accepting; sessions before login say goodbye, logged-in ones go on.
 * stopped(arg) is called once nothing is left open.
 */
void proxy_worker_stop(struct proxy_worker *pw, void (*stopped)(void *arg), void *arg);

/* Ends every session now (the grace period is over). */
void proxy_worker_abort(struct proxy_worker *pw);

/* Frees what is left, after the loop has ended. */
void proxy_worker_free(struct proxy_worker *pw);

/* Called by session.c: a session joins the worker's list. */
void proxy_session_add(struct proxy_worker *pw, struct session *s);

/* Called by session.c when a session is fully closed. */
void proxy_session_gone(struct proxy_worker *pw, struct session *s);

#endif
