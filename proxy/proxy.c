/*
 * proxy.c - the mail proxy on a worker: shared start-up state (TLS contexts,
 * backend addresses), the worker hooks (listeners, stop, abort) and the
 * worker's session list.  Sessions themselves are session.c's.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/listen.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/util.h"
#include "proxy/session.h"

const struct session_proto *
session_proto_for(enum config_proto proto)
{
    switch (proto) {
    case CONFIG_PROTO_IMAP:
        return &imap_session_proto;
    case CONFIG_PROTO_POP3:
        return &pop3_session_proto;
    case CONFIG_PROTO_SMTP:
        return &smtp_session_proto;
    default:
        return NULL;
    }
}

/* Resolves the backend host once, at start (numeric or a name). */
static int
proxy_resolve(const char *host, int port, struct sockaddr_storage *out)
{
    struct addrinfo hints, *res = NULL;
    char portbuf[16];
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    rc = getaddrinfo(host, portbuf, &hints, &res);
    if (rc != 0 || res == NULL)
        return -1;
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

int
proxy_shared_init(struct proxy_shared *sh, const struct config *cfg,
                  struct tls_slot *tls_server, char *err, size_t errlen)
{
    memset(sh, 0, sizeof(*sh));
    sh->cfg = cfg;
    sh->tls_server = tls_server;
    if (gethostname(sh->hostname, sizeof(sh->hostname) - 1) != 0 || sh->hostname[0] == '\0')
        util_strlcpy(sh->hostname, "localhost", sizeof(sh->hostname));
    for (int i = 0; i < CONFIG_L_COUNT; i++) {
        const struct config_listener *l = &cfg->listeners[i];

        if (l->naddrs > 0 && l->proto != CONFIG_PROTO_HTTP && session_proto_for(l->proto) == NULL) {
            snprintf(err, errlen, "%s: [listen] %s: this protocol is not implemented yet",
                     cfg->path, l->key);
            return -1;
        }
    }
    sh->tls_client = tls_client_ctx_new(cfg->backend_tls_verify,
                                        cfg->backend_ca[0] ? cfg->backend_ca : NULL, err, errlen);
    if (sh->tls_client == NULL)
        goto fail;
    for (int p = CONFIG_PROTO_IMAP; p <= CONFIG_PROTO_SMTP; p++) {
        if (proxy_resolve(cfg->backend_host, cfg->backend_port[p], &sh->backend[p]) != 0) {
            snprintf(err, errlen, "%s: [backend] host %s: cannot resolve", cfg->path,
                     cfg->backend_host);
            goto fail;
        }
    }
    if (proxy_resolve(cfg->backend_host, cfg->backend_smtp_inbound, &sh->backend_inbound) != 0) {
        snprintf(err, errlen, "%s: [backend] host %s: cannot resolve", cfg->path,
                 cfg->backend_host);
        goto fail;
    }
    return 0;

fail:
    proxy_shared_free(sh);
    return -1;
}

void
proxy_shared_free(struct proxy_shared *sh)
{
    SSL_CTX_free(sh->tls_client);
    sh->tls_client = NULL;
}

void
proxy_session_add(struct proxy_worker *pw, struct session *s)
{
    s->prev = NULL;
    s->next = pw->sessions;
    if (pw->sessions != NULL)
        pw->sessions->prev = s;
    pw->sessions = s;
    pw->nsessions++;
}

/* Ends the worker when it is stopping and nothing is left. */
static void
proxy_maybe_finish(struct proxy_worker *pw)
{
    void (*stopped)(void *) = pw->stopped;

    if (!pw->stopping || pw->nsessions > 0 || pw->listeners_open > 0 || stopped == NULL)
        return;
    pw->stopped = NULL;
    stopped(pw->stopped_arg);
}

void
proxy_session_gone(struct proxy_worker *pw, struct session *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        pw->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    pw->nsessions--;
    proxy_maybe_finish(pw);
}

static void
proxy_on_connection(uv_stream_t *server, int status)
{
    struct proxy_listener *l = container_of((uv_tcp_t *)server, struct proxy_listener, tcp);

    if (status < 0) {
        log_warn("event=accept_error listener=%s error=\"%s\"", l->conf->key,
                 uv_strerror(status));
        return;
    }
    if (l->pw->stopping)
        return;
    session_accept(l);
}

static void
proxy_listener_closed(uv_handle_t *h)
{
    struct proxy_listener *l = container_of((uv_tcp_t *)h, struct proxy_listener, tcp);

    l->pw->listeners_open--;
    proxy_maybe_finish(l->pw);
}

static void
proxy_close_listeners(struct proxy_worker *pw)
{
    for (int i = 0; i < pw->nlisteners; i++) {
        struct proxy_listener *l = &pw->listeners[i];

        if (!l->closed) {
            l->closed = 1;
            uv_close((uv_handle_t *)&l->tcp, proxy_listener_closed);
        }
    }
}

int
proxy_worker_start(struct worker *w, const struct proxy_shared *sh, struct auth_ctx *auth,
                   struct proxy_worker **out)
{
    const struct config *cfg = sh->cfg;
    struct proxy_worker *pw;
    int rc;

    *out = NULL;
    pw = calloc(1, sizeof(*pw));
    if (pw == NULL)
        return UV_ENOMEM;
    pw->w = w;
    pw->sh = sh;
    pw->cfg = cfg;
    pw->auth = auth;
    *out = pw;
    for (int i = 0; i < CONFIG_L_COUNT; i++) {
        const struct config_listener *cl = &cfg->listeners[i];

        if (cl->proto == CONFIG_PROTO_HTTP)
            continue;    /* the web endpoint is web/'s */
        for (int a = 0; a < cl->naddrs; a++) {
            struct proxy_listener *l = &pw->listeners[pw->nlisteners];

            l->pw = pw;
            l->conf = cl;
            rc = listen_open(&w->loop, &l->tcp, (const struct sockaddr *)&cl->addrs[a].ss,
                             cl->addrs[a].len, 511, proxy_on_connection);
            if (rc != 0) {
                log_error("worker=%d event=listen_failed listener=%s addr=%s error=\"%s\"",
                          w->id, cl->key, cl->addrs[a].text, uv_strerror(rc));
                return rc;
            }
            pw->nlisteners++;
            pw->listeners_open++;
            if (w->id == 0)
                log_info("event=listening listener=%s addr=%s", cl->key, cl->addrs[a].text);
        }
    }
    return 0;
}

void
proxy_worker_stop(struct proxy_worker *pw, void (*stopped)(void *arg), void *arg)
{
    struct session *s, *next;

    if (pw->stopping)
        return;
    pw->stopping = 1;
    pw->stopped = stopped;
    pw->stopped_arg = arg;
    proxy_close_listeners(pw);
    for (s = pw->sessions; s != NULL; s = next) {
        next = s->next;
        session_shutdown(s);
    }
    proxy_maybe_finish(pw);
}

void
proxy_worker_abort(struct proxy_worker *pw)
{
    struct session *s, *next;

    for (s = pw->sessions; s != NULL; s = next) {
        next = s->next;
        session_abort(s);
    }
}

void
proxy_worker_free(struct proxy_worker *pw)
{
    free(pw);
}
