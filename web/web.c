/*
 * web.c - the web endpoint as a worker part: shared start-up state, the
 * listeners ([listen] https and http, SO_REUSEPORT on every worker), stop
 * and abort, and request dispatch: the static pages embedded at build time,
 * /healthz, /metrics, /api/lang, then the JSON API's table (api.c).
 *
 * Owns no HTTP parsing (http.c) and no API logic (api.c).  Everything here
 * runs on the worker's loop thread but web_shared_init/free.
 */
#include "web/web.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/listen.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/tls.h"
#include "core/util.h"
#include "web/scanhub.h"
#include "web/web_static.h"
#include "web/wechat.h"

#define WEB_MAX_LISTENERS (2 * CONFIG_MAX_ADDRS)

struct web_priv;

struct web_listener {
    uv_tcp_t tcp;
    struct web_priv *wp;
    const struct config_listener *conf;
    int tls;
    int closed;
};

/* web.c's per-worker state (web_worker.priv). */
struct web_priv {
    struct web_worker *ww;
    struct http_server srv;
    struct web_listener listeners[WEB_MAX_LISTENERS];
    int nlisteners;
    int listeners_open;
    int api_started;
    int stopping;
    void (*stopped)(void *arg);
    void *stopped_arg;
};

/* ---- shared state ---- */

int
web_shared_init(struct web_shared *sh, const struct config *cfg, const struct keys *keys,
                struct tls_slot *tls_server, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char port[16];
    int rc;

    memset(sh, 0, sizeof(*sh));
    sh->cfg = cfg;
    sh->keys = keys;
    sh->tls_server = tls_server;
    if (cfg->listeners[CONFIG_L_HTTPS].naddrs > 0 && tls_server == NULL) {
        snprintf(err, errlen, "%s: [listen] https needs [tls] cert and key", cfg->path);
        return -1;
    }
    if (gethostname(sh->hostname, sizeof(sh->hostname) - 1) != 0 || sh->hostname[0] == '\0')
        util_strlcpy(sh->hostname, "localhost", sizeof(sh->hostname));
    /* Web sign-in checks the password by a login at the backend's IMAP port. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", cfg->backend_port[CONFIG_PROTO_IMAP]);
    rc = getaddrinfo(cfg->backend_host, port, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "%s: [backend] host %s: cannot resolve", cfg->path,
                 cfg->backend_host);
        return -1;
    }
    memcpy(&sh->backend_imap, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (scanhub_new(&sh->scanhub) != 0 || wechat_shared_new(cfg, &sh->wechat) != 0) {
        snprintf(err, errlen, "%s: [wechat]: cannot set up the WeChat client", cfg->path);
        return -1;
    }
    return 0;
}

void
web_shared_free(struct web_shared *sh)
{
    wechat_shared_free(sh->wechat);
    sh->wechat = NULL;
    scanhub_free(sh->scanhub);
    sh->scanhub = NULL;
}

/* ---- stop ---- */

/* Tells the worker once nothing of the web part is left open. */
static void
web_maybe_finish(struct web_priv *wp)
{
    void (*stopped)(void *) = wp->stopped;

    if (!wp->stopping || wp->listeners_open > 0 || wp->srv.nconns > 0 || stopped == NULL)
        return;
    wp->stopped = NULL;
    stopped(wp->stopped_arg);
}

static void
web_conn_closed(struct http_server *srv)
{
    struct web_worker *ww = srv->data;

    web_maybe_finish(ww->priv);
}

static void
web_listener_closed(uv_handle_t *h)
{
    struct web_listener *l = container_of((uv_tcp_t *)h, struct web_listener, tcp);

    l->wp->listeners_open--;
    web_maybe_finish(l->wp);
}

static void
web_close_listeners(struct web_priv *wp)
{
    for (int i = 0; i < wp->nlisteners; i++) {
        struct web_listener *l = &wp->listeners[i];

        if (!l->closed) {
            l->closed = 1;
            uv_close((uv_handle_t *)&l->tcp, web_listener_closed);
        }
    }
}

/* ---- accept ---- */

static void
web_refused_closed(uv_handle_t *h)
{
    free(h);
}

/* Takes a connection off the backlog and drops it (no TLS context to serve it). */
static void
web_refuse(uv_stream_t *server)
{
    uv_tcp_t *t = malloc(sizeof(*t));

    if (t == NULL || uv_tcp_init(server->loop, t) != 0) {
        free(t);
        return;
    }
    uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, web_refused_closed);
}

static void
web_on_connection(uv_stream_t *server, int status)
{
    struct web_listener *l = container_of((uv_tcp_t *)server, struct web_listener, tcp);
    struct web_priv *wp = l->wp;
    SSL_CTX *ctx = NULL;
    int rc;

    if (status < 0) {
        log_warn("event=accept_error listener=%s error=\"%s\"", l->conf->key,
                 uv_strerror(status));
        return;
    }
    if (wp->stopping)
        return;
    if (l->tls) {
        /* A reference per handshake, as SIGHUP may swap the context meanwhile. */
        ctx = tls_slot_get(wp->ww->sh->tls_server);
        if (ctx == NULL) {
            log_error("event=accept_failed listener=%s error=\"no TLS context\"", l->conf->key);
            web_refuse(server);
            return;
        }
    }
    rc = http_server_accept(&wp->srv, server, ctx);
    SSL_CTX_free(ctx);    /* the SSL object holds its own reference */
    if (rc != 0)
        log_info("event=accept_failed listener=%s error=\"%s\"", l->conf->key, uv_strerror(rc));
}

/* ---- builtin routes ---- */

static void
web_healthz(struct web_worker *ww, struct http_request *req)
{
    http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
}

static void
web_metrics(struct web_worker *ww, struct http_request *req)
{
    char *text;
    size_t len;

    if (metrics_render(&text, &len) != 0) {
        http_respond_error(req, 500, "internal", "Out of memory.");
        return;
    }
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
}

/* Which language the pages should show: ?lang= first, then Accept-Language. */
static void
web_lang(struct web_worker *ww, struct http_request *req)
{
    char body[64];

    snprintf(body, sizeof(body), "{\"lang\":\"%s\"}", http_lang(req));
    http_respond_json(req, 200, body, "Vary: Accept-Language\r\n");
}

/* GET routes here also answer HEAD (http.c leaves the body out). */
static const struct web_route web_builtin_routes[] = {
    {"GET", "/healthz", 0, web_healthz},
    {"GET", "/metrics", 0, web_metrics},
    {"GET", "/api/lang", 0, web_lang},
};

static const struct web_static_file *
web_static_find(const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < web_static_nfiles; i++)
        if (web_static_files[i].path[0] != '\0' && strcmp(web_static_files[i].path, path) == 0)
            return &web_static_files[i];
    return NULL;
}

/*
 * The files are not fingerprinted (their names stay the same across
 * releases), so browsers revalidate each time (no-cache) with the ETag.
 */
static void
web_static_serve(struct http_request *req, const struct web_static_file *f)
{
    char extra[160];
    const char *inm = http_header(req, "If-None-Match");

    snprintf(extra, sizeof(extra), "Cache-Control: no-cache\r\nETag: %s\r\n", f->etag);
    if (inm != NULL && strstr(inm, f->etag) != NULL) {
        http_respond(req, 304, NULL, NULL, f->len, extra);
        return;
    }
    http_respond(req, 200, f->content_type, f->data, f->len, extra);
}

/* ---- dispatch ---- */

static int
web_path_matches(const struct web_route *r, const char *path)
{
    if (r->path == NULL)
        return 0;
    if (r->prefix)
        return strncmp(path, r->path, strlen(r->path)) == 0;
    return strcmp(path, r->path) == 0;
}

/* Adds method to a ", "-separated list unless it is there. */
static void
web_allow_add(char *allow, size_t cap, const char *method)
{
    size_t mlen = strlen(method);

    for (const char *p = allow; (p = strstr(p, method)) != NULL; p += mlen)
        if ((p == allow || p[-1] == ' ') && (p[mlen] == ',' || p[mlen] == '\0'))
            return;
    if (allow[0] != '\0')
        strncat(allow, ", ", cap - strlen(allow) - 1);
    strncat(allow, method, cap - strlen(allow) - 1);
}

/*
 * The handler of the first route matching method and path, or NULL; the
 * methods of routes matching the path only are added to allow.  head_as_get:
 * a GET route answers HEAD too.
 */
static web_handler
web_route_find(const struct web_route *routes, size_t n, const struct http_request *req,
               int head_as_get, char *allow, size_t allow_cap)
{
    int head = strcmp(req->method, "HEAD") == 0;

    for (size_t i = 0; i < n; i++) {
        const struct web_route *r = &routes[i];

        if (r->method == NULL || r->fn == NULL || !web_path_matches(r, req->path))
            continue;
        if (strcmp(r->method, req->method) == 0 ||
            (head && head_as_get && strcmp(r->method, "GET") == 0))
            return r->fn;
        web_allow_add(allow, allow_cap, r->method);
        if (head_as_get && strcmp(r->method, "GET") == 0)
            web_allow_add(allow, allow_cap, "HEAD");
    }
    return NULL;
}

static int
web_is_api(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0;
}

static void
web_dispatch(struct http_server *srv, struct http_request *req)
{
    struct web_worker *ww = srv->data;
    const struct web_static_file *f;
    char allow[128] = "", extra[192], body[256];
    web_handler fn;
    int get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;

    f = web_is_api(req->path) ? NULL : web_static_find(req->path);
    if (f != NULL) {
        if (get) {
            web_static_serve(req, f);
            return;
        }
        web_allow_add(allow, sizeof(allow), "GET");
        web_allow_add(allow, sizeof(allow), "HEAD");
    }
    fn = web_route_find(web_builtin_routes, ARRAY_SIZE(web_builtin_routes), req, 1, allow,
                        sizeof(allow));
    if (fn == NULL)
        fn = web_route_find(api_routes, api_nroutes, req, 0, allow, sizeof(allow));
    if (fn != NULL) {
        fn(ww, req);
        return;
    }
    if (allow[0] != '\0') {
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
        if (strcmp(req->method, "OPTIONS") == 0) {
            http_respond(req, 200, "text/plain; charset=utf-8", "", 0, extra);
            return;
        }
        snprintf(body, sizeof(body),
                 "{\"error\":\"method_not_allowed\",\"message\":\"Allowed: %s\"}", allow);
        http_respond_json(req, 405, body, extra);
        return;
    }
    if (web_is_api(req->path))
        http_respond_error(req, 404, "not_found", "No such API endpoint.");
    else
        http_respond(req, 404, "text/plain; charset=utf-8", "Not Found\n", 10, NULL);
}

/* ---- the worker part ---- */

int
web_worker_start(struct worker *w, const struct web_shared *sh, struct auth_ctx *auth,
                 struct web_worker **out)
{
    static const int keys[] = {CONFIG_L_HTTPS, CONFIG_L_HTTP};
    const struct config *cfg = sh->cfg;
    struct web_worker *ww;
    struct web_priv *wp;
    int rc;

    *out = NULL;
    ww = calloc(1, sizeof(*ww));
    wp = calloc(1, sizeof(*wp));
    if (ww == NULL || wp == NULL) {
        free(ww);
        free(wp);
        return UV_ENOMEM;
    }
    ww->w = w;
    ww->loop = &w->loop;
    ww->sh = sh;
    ww->cfg = cfg;
    ww->auth = auth;
    ww->priv = wp;
    wp->ww = ww;
    *out = ww;
    http_server_init(&wp->srv, &w->loop);
    wp->srv.on_request = web_dispatch;
    wp->srv.on_conn_closed = web_conn_closed;
    wp->srv.data = ww;
    wp->srv.id_base = (uint64_t)w->id << 48;

    rc = api_worker_init(ww);
    if (rc != 0) {
        log_error("worker=%d event=api_init_failed error=%d", w->id, rc);
        return rc < 0 ? rc : -1;
    }
    wp->api_started = 1;
    for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
        const struct config_listener *cl = &cfg->listeners[keys[k]];

        for (int a = 0; a < cl->naddrs && wp->nlisteners < WEB_MAX_LISTENERS; a++) {
            struct web_listener *l = &wp->listeners[wp->nlisteners];

            l->wp = wp;
            l->conf = cl;
            l->tls = cl->implicit_tls;
            rc = listen_open(&w->loop, &l->tcp, (const struct sockaddr *)&cl->addrs[a].ss,
                             cl->addrs[a].len, 511, web_on_connection);
            if (rc != 0) {
                log_error("worker=%d event=listen_failed listener=%s addr=%s error=\"%s\"",
                          w->id, cl->key, cl->addrs[a].text, uv_strerror(rc));
                return rc;
            }
            wp->nlisteners++;
            wp->listeners_open++;
            if (w->id == 0)
                log_info("event=listening listener=%s addr=%s", cl->key, cl->addrs[a].text);
        }
    }
    return 0;
}

void
web_worker_stop(struct web_worker *ww, void (*stopped)(void *arg), void *arg)
{
    struct web_priv *wp = ww->priv;

    if (wp->stopping)
        return;
    wp->stopping = 1;
    wp->stopped = stopped;
    wp->stopped_arg = arg;
    web_close_listeners(wp);
    http_server_stop(&wp->srv);
    /* Long polls answer now; their connections then close (stopping). */
    if (wp->api_started)
        api_worker_stop(ww);
    web_maybe_finish(wp);
}

void
web_worker_abort(struct web_worker *ww)
{
    struct web_priv *wp = ww->priv;

    web_close_listeners(wp);
    http_server_abort(&wp->srv);
}

void
web_worker_free(struct web_worker *ww)
{
    struct web_priv *wp;

    if (ww == NULL)
        return;
    wp = ww->priv;
    if (wp != NULL && wp->api_started)
        api_worker_free(ww);
    free(wp);
    free(ww);
}
