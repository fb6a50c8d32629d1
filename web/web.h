/*
 * web.h - the web endpoint on the workers' loops: listeners ([listen] https
 * and http), HTTP connections, the route table, and what handlers share.
 *
 * web.c owns the listeners, connections and dispatch; routes live in tables
 * (web_builtin_routes in web.c: static pages, /healthz, /metrics;
 * api_routes in api.c: the JSON API).  A route matches a method and an exact
 * path, or a path prefix when prefix is set (the rest is the handler's).
 */
#ifndef MFA_WEB_H
#define MFA_WEB_H

#include <sys/socket.h>
#include <uv.h>

#include "conf/config.h"
#include "core/worker.h"
#include "web/http.h"

struct auth_ctx;
struct keys;
struct tls_slot;
struct web_worker;
struct scanhub;
struct wechat_shared;

/* Read-only after start; shared by every worker thread. */
struct web_shared {
    const struct config *cfg;
    const struct keys *keys;
    struct tls_slot *tls_server;               /* borrowed; NULL if no [tls] */
    struct sockaddr_storage backend_imap;      /* where passwords are checked */
    char hostname[256];
    struct scanhub *scanhub;                   /* thread-safe: scene wakeups */
    struct wechat_shared *wechat;              /* thread-safe; NULL when [wechat] is off */
};

typedef void (*web_handler)(struct web_worker *ww, struct http_request *req);

struct web_route {
    const char *method;      /* "GET", "POST", "DELETE" */
    const char *path;
    int prefix;              /* 1: path is a prefix */
    web_handler fn;
};

extern const struct web_route api_routes[];
extern const size_t api_nroutes;

/* One per worker; used only on that worker's loop thread. */
struct web_worker {
    struct worker *w;
    uv_loop_t *loop;
    const struct web_shared *sh;
    const struct config *cfg;
    struct auth_ctx *auth;                     /* the worker's, borrowed */
    void *api;                                 /* api.c's per-worker state */
    void *priv;                                /* web.c's (listeners, connections) */
};

int web_shared_init(struct web_shared *sh, const struct config *cfg, const struct keys *keys,
                    struct tls_slot *tls_server, char *err, size_t errlen);
void web_shared_free(struct web_shared *sh);

/* Runs the web endpoint on worker w's loop: opens its listeners.  On error
 * *out may be set: stop and free it as usual. */
int web_worker_start(struct worker *w, const struct web_shared *sh, struct auth_ctx *auth,
                     struct web_worker **out);
/* Stops accepting and lets requests finish; stopped(arg) when nothing is left. */
void web_worker_stop(struct web_worker *ww, void (*stopped)(void *arg), void *arg);
void web_worker_abort(struct web_worker *ww);
void web_worker_free(struct web_worker *ww);

/* api.c's per-worker state, made and freed by web.c around the worker's life. */
int api_worker_init(struct web_worker *ww);
void api_worker_stop(struct web_worker *ww);   /* end long-polls, cancel outbound calls */
void api_worker_free(struct web_worker *ww);

#endif
