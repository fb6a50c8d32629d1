/*
 * test_http.c - web/http.c on a real loopback loop, plaintext and TLS:
 * keep-alive, pipelining in order, bodies (Content-Length and chunked), the
 * bounds (413, 431, 400, 501, 408), answers given later from a timer, a
 * client that leaves while its answer is owed (on_abort), Connection:
 * close, HEAD, the security headers, graceful stop; then the header,
 * cookie, query and Accept-Language helpers, and the metrics text.  Each
 * loop test ends with uv_loop_close(loop) == 0.
 */
#define _GNU_SOURCE    /* memmem */
#include "tests/unit/core/conn_test_peer.h"

#include <stdio.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "core/metrics.h"
#include "core/tls.h"
#include "web/http.h"

/* ---- TLS material, made once ---- */

static struct {
    char dir[64], cert[128], key[128];
    SSL_CTX *sctx, *cctx;
} fx;

static void
make_self_signed(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    FILE *f;

    assert_non_null(pkey);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, pkey), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                (const unsigned char *)"localhost", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);
    f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
}

static int
group_setup(void **state)
{
    char err[256];

    snprintf(fx.dir, sizeof(fx.dir), "/tmp/mfa-http-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.cert, sizeof(fx.cert), "%s/cert.pem", fx.dir);
    snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
    make_self_signed(fx.cert, fx.key);
    fx.sctx = tls_server_ctx_new(fx.cert, fx.key, err, sizeof(err));
    if (fx.sctx == NULL)
        fail_msg("server ctx: %s", err);
    fx.cctx = tls_client_ctx_new(0, NULL, err, sizeof(err));
    if (fx.cctx == NULL)
        fail_msg("client ctx: %s", err);
    return 0;
}

static int
group_teardown(void **state)
{
    SSL_CTX_free(fx.sctx);
    SSL_CTX_free(fx.cctx);
    unlink(fx.cert);
    unlink(fx.key);
    rmdir(fx.dir);
    return 0;
}

/* ---- one scenario: a server, one client, a script ---- */

struct scen {
    /* in */
    int tls;
    const char *send;             /* written once connected */
    size_t send_len;              /* 0: strlen(send) */
    const char *send2;            /* written after the first answer */
    int want;                     /* the client closes after this many answers; 0: never */
    uint64_t head_timeout_ms, idle_timeout_ms;
    uint64_t client_leave_ms;     /* the client closes this long after sending */
    uint64_t stop_after_ms;       /* http_server_stop this long after sending */

    /* out */
    int requests;                 /* handler calls */
    int aborts;                   /* on_abort calls */
    int accepted;
    char paths[512];              /* "|/a|/b" in handler order */

    /* private */
    uv_loop_t loop;
    uv_tcp_t lis;
    int port;
    struct http_server srv;
    struct tpeer cli;
    uv_timer_t later, leave;
    struct http_request *pending[8];
    int npending;
    int sent2;
    int finished;
};

/* Complete answers in buf (100 Continue not counted), by Content-Length. */
static int
count_answers(const char *buf, size_t len)
{
    size_t pos = 0;
    int n = 0;

    while (pos < len) {
        const char *end = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
        const char *cl;
        size_t head_len, body = 0;

        if (end == NULL)
            break;
        head_len = (size_t)(end - (buf + pos)) + 4;
        if (strncmp(buf + pos, "HTTP/1.1 100 ", 13) == 0) {
            pos += head_len;
            continue;
        }
        cl = memmem(buf + pos, head_len, "Content-Length: ", 16);
        if (cl != NULL)
            body = strtoul(cl + 16, NULL, 10);
        /* A HEAD answer has no body: the test marks it with X-Head. */
        if (memmem(buf + pos, head_len, "\r\nX-Head: 1", 11) != NULL)
            body = 0;
        if (strncmp(buf + pos, "HTTP/1.1 304 ", 13) == 0)
            body = 0;
        if (len - pos - head_len < body)
            break;
        pos += head_len + body;
        n++;
    }
    return n;
}

static void
scen_finish(struct scen *sc)
{
    if (sc->finished)
        return;
    sc->finished = 1;
    uv_close((uv_handle_t *)&sc->lis, NULL);
    uv_close((uv_handle_t *)&sc->later, NULL);
    uv_close((uv_handle_t *)&sc->leave, NULL);
}

static void
scen_cli_closed(struct conn *c)
{
    struct tpeer *p = c->data;
    struct scen *sc = p->ctx;

    tp_on_close(c);
    scen_finish(sc);
}

static void
scen_cli_read(struct tpeer *p, const char *data, size_t len)
{
    struct scen *sc = p->ctx;
    int n = count_answers(p->rx, p->rx_len);

    if (sc->send2 != NULL && !sc->sent2 && n >= 1) {
        sc->sent2 = 1;
        assert_int_equal(conn_write(&p->c, sc->send2, strlen(sc->send2)), 0);
    }
    if (sc->want > 0 && n >= sc->want)
        conn_close(&p->c);
}

static void
scen_answer_later(uv_timer_t *t)
{
    struct scen *sc = t->data;

    for (int i = 0; i < sc->npending; i++) {
        struct http_request *req = sc->pending[i];
        char body[128];
        int n = snprintf(body, sizeof(body), "later %s", req->path);

        http_respond(req, 200, "text/plain", body, (size_t)n, NULL);
    }
    sc->npending = 0;
}

static void
scen_on_abort(struct http_request *req)
{
    struct scen *sc = req->user;

    sc->aborts++;
    for (int i = 0; i < sc->npending; i++)
        if (sc->pending[i] == req)
            sc->pending[i] = sc->pending[--sc->npending];
}

/*
 * The handler: /later answers from a timer, /never only through on_abort,
 * /echo sends the body back, anything else its method, path and query.
 */
static void
scen_on_request(struct http_server *srv, struct http_request *req)
{
    struct scen *sc = srv->data;
    char body[256];
    int n;

    sc->requests++;
    strncat(sc->paths, "|", sizeof(sc->paths) - strlen(sc->paths) - 1);
    strncat(sc->paths, req->path, sizeof(sc->paths) - strlen(sc->paths) - 1);
    assert_int_equal(req->tls, sc->tls);
    assert_string_equal(req->peer, "127.0.0.1");
    if (strcmp(req->path, "/later") == 0 || strcmp(req->path, "/never") == 0) {
        req->user = sc;
        req->on_abort = scen_on_abort;
        assert_true(sc->npending < (int)ARRAY_SIZE(sc->pending));
        sc->pending[sc->npending++] = req;
        if (strcmp(req->path, "/later") == 0)
            assert_int_equal(uv_timer_start(&sc->later, scen_answer_later, 30, 0), 0);
        return;
    }
    if (strcmp(req->path, "/echo") == 0) {
        http_respond(req, 200, "application/octet-stream", req->body, req->body_len, NULL);
        return;
    }
    if (strcmp(req->path, "/json") == 0) {
        http_respond_error(req, 404, "not_found", "No \"such\" thing.");
        return;
    }
    n = snprintf(body, sizeof(body), "%s %s ?%s", req->method, req->path, req->query);
    http_respond(req, 200, "text/plain", body, (size_t)n,
                 strcmp(req->method, "HEAD") == 0 ? "X-Head: 1\r\n" : NULL);
}

static void
scen_on_connection(uv_stream_t *server, int status)
{
    struct scen *sc = server->data;

    assert_int_equal(status, 0);
    sc->accepted++;
    assert_int_equal(http_server_accept(&sc->srv, server, sc->tls ? fx.sctx : NULL), 0);
}

static void
scen_leave(uv_timer_t *t)
{
    struct scen *sc = t->data;

    conn_close(&sc->cli.c);
}

static void
scen_stop(uv_timer_t *t)
{
    struct scen *sc = t->data;

    http_server_stop(&sc->srv);
}

static void
scen_send(struct tpeer *p)
{
    struct scen *sc = p->ctx;
    size_t len = sc->send_len ? sc->send_len : strlen(sc->send);

    assert_int_equal(conn_write(&p->c, sc->send, len), 0);
    if (sc->client_leave_ms > 0)
        assert_int_equal(uv_timer_start(&sc->leave, scen_leave, sc->client_leave_ms, 0), 0);
    if (sc->stop_after_ms > 0)
        assert_int_equal(uv_timer_start(&sc->leave, scen_stop, sc->stop_after_ms, 0), 0);
}

static void
scen_connected(struct tpeer *p)
{
    struct scen *sc = p->ctx;

    if (sc->tls)
        assert_int_equal(conn_tls_client(&p->c, fx.cctx, "localhost", tp_on_hs), 0);
    else
        assert_int_equal(conn_read_start(&p->c), 0);
    /* With TLS, conn queues this until the handshake is done. */
    scen_send(p);
}

static void
scen_run(struct scen *sc)
{
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    assert_int_equal(uv_loop_init(&sc->loop), 0);
    tp_guard_start(&sc->loop, 20000);
    http_server_init(&sc->srv, &sc->loop);
    sc->srv.on_request = scen_on_request;
    sc->srv.data = sc;
    sc->srv.head_timeout_ms = sc->head_timeout_ms;
    sc->srv.idle_timeout_ms = sc->idle_timeout_ms;
    assert_int_equal(uv_timer_init(&sc->loop, &sc->later), 0);
    assert_int_equal(uv_timer_init(&sc->loop, &sc->leave), 0);
    sc->later.data = sc->leave.data = sc;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    assert_int_equal(listen_open(&sc->loop, &sc->lis, (struct sockaddr *)&sin, sizeof(sin), 16,
                                 scen_on_connection),
                     0);
    sc->lis.data = sc;
    assert_int_equal(uv_tcp_getsockname(&sc->lis, (struct sockaddr *)&ss, &len), 0);
    sc->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);

    tp_init(&sc->cli, "client");
    sc->cli.ctx = sc;
    sc->cli.hook_read = scen_cli_read;
    sc->cli.hook_connect = scen_connected;
    sc->cli.c.on_close = scen_cli_closed;
    tp_connect(&sc->loop, &sc->cli, sc->port);

    assert_int_equal(uv_run(&sc->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(sc->srv.nconns, 0);
    assert_int_equal(sc->cli.closed, 1);
    /* NUL-terminate what the client got, for strstr. */
    tp_on_read(&sc->cli.c, "", 1);
    sc->cli.rx_len--;
    tp_loop_finish(&sc->loop);
}

static void
scen_done(struct scen *sc)
{
    tp_free(&sc->cli);
}

/* The n-th answer's status line starts with this. */
static const char *
nth_answer(const struct scen *sc, int n)
{
    const char *p = sc->cli.rx;

    for (int i = 0; p != NULL; i++) {
        p = strstr(p, "HTTP/1.1 ");
        if (p == NULL || i == n)
            return p;
        p += 9;
    }
    return NULL;
}

/* ---- the tests ---- */

static void
run_keepalive(int tls)
{
    struct scen sc = {0};

    sc.tls = tls;
    sc.send = "GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.send2 = "GET /b HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.want = 2;
    scen_run(&sc);
    assert_int_equal(sc.accepted, 1);
    assert_int_equal(sc.requests, 2);
    assert_string_equal(sc.paths, "|/a|/b");
    assert_non_null(strstr(sc.cli.rx, "GET /a ?x=1"));
    assert_non_null(strstr(sc.cli.rx, "GET /b ?"));
    assert_null(strstr(sc.cli.rx, "Connection: close"));
    assert_non_null(strstr(sc.cli.rx, "\r\nContent-Length: 11\r\n"));
    assert_non_null(strstr(sc.cli.rx, "Content-Security-Policy: default-src 'none'; script-src "
                                      "'self'; style-src 'self'; img-src 'self' data:; "
                                      "connect-src 'self'; form-action 'self'; frame-ancestors "
                                      "'none'; base-uri 'none'\r\n"));
    assert_non_null(strstr(sc.cli.rx, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(sc.cli.rx, "Referrer-Policy: no-referrer\r\n"));
    assert_non_null(strstr(sc.cli.rx, "X-Frame-Options: DENY\r\n"));
    assert_non_null(strstr(sc.cli.rx, "Cache-Control: no-store\r\n"));
    if (tls)
        assert_non_null(strstr(sc.cli.rx, "Strict-Transport-Security: max-age=31536000\r\n"));
    else
        assert_null(strstr(sc.cli.rx, "Strict-Transport-Security"));
    scen_done(&sc);
}

static void
test_keepalive_plain(void **state)
{
    run_keepalive(0);
}

static void
test_keepalive_tls(void **state)
{
    run_keepalive(1);
}

/* Three requests in one write, the first answered later: answers in order. */
static void
run_pipelined(int tls)
{
    struct scen sc = {0};
    const char *a, *b, *c;

    sc.tls = tls;
    sc.send = "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"
              "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
              "GET /third HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.want = 3;
    scen_run(&sc);
    assert_int_equal(sc.requests, 3);
    assert_string_equal(sc.paths, "|/later|/echo|/third");
    a = strstr(sc.cli.rx, "later /later");
    b = strstr(sc.cli.rx, "\r\n\r\nhello");
    c = strstr(sc.cli.rx, "GET /third");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(a < b && b < c);
    scen_done(&sc);
}

static void
test_pipelined_plain(void **state)
{
    run_pipelined(0);
}

static void
test_pipelined_tls(void **state)
{
    run_pipelined(1);
}

static void
test_post_bodies(void **state)
{
    struct scen sc = {0};

    sc.send = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
              "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
              "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
              "Expect: 100-continue\r\n\r\nxyz";
    sc.want = 3;
    scen_run(&sc);
    assert_int_equal(sc.requests, 3);
    assert_non_null(strstr(sc.cli.rx, "Content-Length: 11\r\n"));
    assert_non_null(strstr(sc.cli.rx, "\r\n\r\nhello world"));
    assert_non_null(strstr(sc.cli.rx, "\r\n\r\nabcdefg"));
    assert_non_null(strstr(sc.cli.rx, "HTTP/1.1 100 Continue\r\n\r\n"));
    assert_non_null(strstr(sc.cli.rx, "\r\n\r\nxyz"));
    scen_done(&sc);
}

/*
 * Trailer fields after a chunked body are discarded: kept, they grew the
 * buffer the request's path and headers point into after those pointers
 * were set (found by tests/fuzz/fuzz_http.c; ASan saw the handler read
 * freed memory).  Long trailers make the buffer grow.
 */
static void
test_chunked_trailers(void **state)
{
    static char send[8192];
    char big[3000];
    struct scen sc = {0};

    (void)state;
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(send, sizeof(send),
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             "4\r\nabcd\r\n0\r\nX-Trailer-1: %s\r\nX-Trailer-2: %s\r\n\r\n"
             "GET /after HTTP/1.1\r\nHost: t\r\n\r\n",
             big, big);
    sc.send = send;
    sc.want = 2;
    scen_run(&sc);
    assert_int_equal(sc.requests, 2);
    assert_string_equal(sc.paths, "|/echo|/after");
    assert_non_null(strstr(sc.cli.rx, "\r\n\r\nabcd"));
    scen_done(&sc);
}

/* The server refuses with status and closes; the handler never runs. */
static void
expect_refusal(struct scen *sc, const char *status_line)
{
    scen_run(sc);
    assert_int_equal(sc->requests, 0);
    assert_non_null(sc->cli.rx);
    if (strncmp(sc->cli.rx, status_line, strlen(status_line)) != 0)
        fail_msg("expected %s, got %.80s", status_line, sc->cli.rx);
    assert_non_null(strstr(sc->cli.rx, "Connection: close\r\n"));
    assert_non_null(strstr(sc->cli.rx, "Content-Length: "));
    assert_int_equal(sc->cli.eof, 1);    /* the server closed */
    scen_done(sc);
}

static void
test_body_too_large(void **state)
{
    struct scen sc = {0};
    char *big;
    size_t n;
    static const char head[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n";

    sc.send = head;
    expect_refusal(&sc, "HTTP/1.1 413 ");

    /* Chunked: the bound is on the decoded body. */
    memset(&sc, 0, sizeof(sc));
    big = malloc(80 * 1024);
    assert_non_null(big);
    n = (size_t)sprintf(big, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 17; i++) {
        n += (size_t)sprintf(big + n, "1000\r\n");
        memset(big + n, 'a', 4096);
        n += 4096;
        n += (size_t)sprintf(big + n, "\r\n");
    }
    sc.send = big;
    sc.send_len = n;
    expect_refusal(&sc, "HTTP/1.1 413 ");
    free(big);
}

static void
test_head_too_large(void **state)
{
    struct scen sc = {0};
    char *big = malloc(20 * 1024);

    assert_non_null(big);
    strcpy(big, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(big + strlen(big), 'b', 17 * 1024);
    big[strlen("GET / HTTP/1.1\r\nHost: t\r\nX-Big: ") + 17 * 1024] = '\0';
    strcat(big, "\r\n\r\n");
    sc.send = big;
    expect_refusal(&sc, "HTTP/1.1 431 ");
    free(big);
}

static void
test_too_many_headers(void **state)
{
    struct scen sc = {0};
    char buf[4096];
    size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\n");

    for (int i = 0; i < 65; i++)
        n += (size_t)sprintf(buf + n, "X-H%d: v\r\n", i);
    strcpy(buf + n, "\r\n");
    sc.send = buf;
    expect_refusal(&sc, "HTTP/1.1 431 ");

    /* 64 are fine. */
    memset(&sc, 0, sizeof(sc));
    n = (size_t)sprintf(buf, "GET /ok HTTP/1.1\r\n");
    for (int i = 0; i < 64; i++)
        n += (size_t)sprintf(buf + n, "X-H%d: v\r\n", i);
    strcpy(buf + n, "\r\n");
    sc.send = buf;
    sc.want = 1;
    scen_run(&sc);
    assert_int_equal(sc.requests, 1);
    assert_non_null(strstr(sc.cli.rx, "HTTP/1.1 200 OK\r\n"));
    scen_done(&sc);
}

static void
test_garbage(void **state)
{
    struct scen sc = {0};

    sc.send = "\x01\x02 nonsense\r\n\r\n";
    expect_refusal(&sc, "HTTP/1.1 400 ");
    memset(&sc, 0, sizeof(sc));
    sc.send = "GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_refusal(&sc, "HTTP/1.1 400 ");
    memset(&sc, 0, sizeof(sc));
    /* Request smuggling shapes are refused, not guessed at. */
    sc.send = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    expect_refusal(&sc, "HTTP/1.1 400 ");
}

static void
test_not_implemented(void **state)
{
    struct scen sc = {0};

    sc.send = "BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_refusal(&sc, "HTTP/1.1 501 ");
    memset(&sc, 0, sizeof(sc));
    sc.send = "PROPFIND / HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_refusal(&sc, "HTTP/1.1 501 ");
    memset(&sc, 0, sizeof(sc));
    sc.send = "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
    expect_refusal(&sc, "HTTP/1.1 501 ");
}

static void
test_slowloris(void **state)
{
    struct scen sc = {0};

    sc.send = "GET / HTTP/1.1\r\nHost: t\r\n";    /* the head never ends */
    sc.head_timeout_ms = 150;
    expect_refusal(&sc, "HTTP/1.1 408 ");
}

/* A connection that sends nothing, or idles after an answer, is closed quietly. */
static void
test_idle_timeouts(void **state)
{
    struct scen sc = {0};

    sc.send = "";
    sc.send_len = 0;
    sc.head_timeout_ms = 100;
    scen_run(&sc);
    assert_int_equal(sc.cli.rx_len, 0);
    assert_int_equal(sc.cli.eof, 1);
    scen_done(&sc);

    memset(&sc, 0, sizeof(sc));
    sc.send = "GET /one HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.idle_timeout_ms = 100;
    scen_run(&sc);
    assert_int_equal(sc.requests, 1);
    assert_int_equal(count_answers(sc.cli.rx, sc.cli.rx_len), 1);
    assert_int_equal(sc.cli.eof, 1);
    scen_done(&sc);
}

static void
test_abort_pending(void **state)
{
    struct scen sc = {0};

    sc.send = "GET /never HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.client_leave_ms = 50;
    scen_run(&sc);
    assert_int_equal(sc.requests, 1);
    assert_int_equal(sc.aborts, 1);
    assert_int_equal(sc.cli.rx_len, 0);
    scen_done(&sc);

    /* The same over TLS. */
    memset(&sc, 0, sizeof(sc));
    sc.tls = 1;
    sc.send = "GET /never HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.client_leave_ms = 80;
    scen_run(&sc);
    assert_int_equal(sc.aborts, 1);
    scen_done(&sc);
}

static void
test_connection_close_and_head(void **state)
{
    struct scen sc = {0};

    sc.send = "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"
              "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
              "GET /not-reached HTTP/1.1\r\nHost: t\r\n\r\n";
    scen_run(&sc);
    assert_string_equal(sc.paths, "|/h|/json");
    assert_int_equal(sc.cli.eof, 1);
    /* HEAD: the length of the body it would have had, and no body. */
    assert_non_null(strstr(sc.cli.rx, "Content-Length: 9\r\n"));
    assert_null(strstr(sc.cli.rx, "HEAD /h"));
    assert_non_null(strstr(nth_answer(&sc, 1), "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr(sc.cli.rx, "Connection: close\r\n"));
    assert_non_null(strstr(sc.cli.rx, "Content-Type: application/json; charset=utf-8\r\n"));
    assert_non_null(strstr(sc.cli.rx,
                           "{\"error\":\"not_found\",\"message\":\"No \\\"such\\\" thing.\"}"));
    scen_done(&sc);

    /* HTTP/1.0 without keep-alive closes too. */
    memset(&sc, 0, sizeof(sc));
    sc.send = "GET /old HTTP/1.0\r\n\r\n";
    scen_run(&sc);
    assert_int_equal(sc.requests, 1);
    assert_non_null(strstr(sc.cli.rx, "Connection: close\r\n"));
    assert_int_equal(sc.cli.eof, 1);
    scen_done(&sc);
}

/* Graceful stop: the answer owed is given (with Connection: close), then close. */
static void
test_stop_finishes_pending(void **state)
{
    struct scen sc = {0};

    sc.send = "GET /later HTTP/1.1\r\nHost: t\r\n\r\n";
    sc.stop_after_ms = 5;    /* before /later's 30 ms timer */
    scen_run(&sc);
    assert_int_equal(sc.requests, 1);
    assert_int_equal(sc.aborts, 0);
    assert_non_null(strstr(sc.cli.rx, "later /later"));
    assert_non_null(strstr(sc.cli.rx, "Connection: close\r\n"));
    assert_int_equal(sc.cli.eof, 1);
    scen_done(&sc);
}

/* ---- helpers without a loop ---- */

static struct http_request *
fake_request(const char *query, int n, const char *const *hdrs)
{
    static struct http_request req;

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.path = (char *)"/";
    req.query = (char *)query;
    for (int i = 0; i < n; i++) {
        req.headers[i].name = (char *)hdrs[2 * i];
        req.headers[i].value = (char *)hdrs[2 * i + 1];
    }
    req.nheaders = n;
    return &req;
}

static void
test_header_cookie_query(void **state)
{
    static const char *const h[] = {
        "content-TYPE", "text/plain",
        "Cookie", "a=1; mfa_session=abc; empty=; q=\"quoted\"",
        "Accept", "*/*",
        "cookie", "second=2;third = 3 ;flag",
        "Content-Type", "ignored",
    };
    struct http_request *req = fake_request("x=1&name=J%C3%B6rg+B&empty=&novalue&bad=%zz&x=2",
                                            5, h);
    char out[64], tiny[3];

    assert_string_equal(http_header(req, "Content-Type"), "text/plain");
    assert_string_equal(http_header(req, "ACCEPT"), "*/*");
    assert_null(http_header(req, "X-Missing"));

    assert_int_equal(http_cookie(req, "mfa_session", out, sizeof(out)), 0);
    assert_string_equal(out, "abc");
    assert_int_equal(http_cookie(req, "a", out, sizeof(out)), 0);
    assert_string_equal(out, "1");
    assert_int_equal(http_cookie(req, "empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_cookie(req, "q", out, sizeof(out)), 0);
    assert_string_equal(out, "quoted");
    assert_int_equal(http_cookie(req, "second", out, sizeof(out)), 0);
    assert_string_equal(out, "2");
    assert_int_equal(http_cookie(req, "third", out, sizeof(out)), 0);
    assert_string_equal(out, "3");
    assert_int_equal(http_cookie(req, "flag", out, sizeof(out)), -1);
    assert_int_equal(http_cookie(req, "MFA_SESSION", out, sizeof(out)), -1); /* names are exact */
    assert_int_equal(http_cookie(req, "missing", out, sizeof(out)), -1);
    assert_int_equal(http_cookie(req, "mfa_session", tiny, sizeof(tiny)), -1); /* too long */

    assert_int_equal(http_query(req, "x", out, sizeof(out)), 0);
    assert_string_equal(out, "1");    /* the first */
    assert_int_equal(http_query(req, "name", out, sizeof(out)), 0);
    assert_string_equal(out, "J\xc3\xb6rg B");
    assert_int_equal(http_query(req, "empty", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query(req, "novalue", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_query(req, "bad", out, sizeof(out)), -1);
    assert_int_equal(http_query(req, "missing", out, sizeof(out)), -1);
    assert_int_equal(http_query(req, "name", tiny, sizeof(tiny)), -1);

    req = fake_request("", 0, NULL);
    assert_int_equal(http_cookie(req, "a", out, sizeof(out)), -1);
    assert_int_equal(http_query(req, "a", out, sizeof(out)), -1);
    req = fake_request("nul=a%00b", 0, NULL);
    assert_int_equal(http_query(req, "nul", out, sizeof(out)), -1);
}

static int
lang_zh(const char *accept)
{
    const char *h[] = {"Accept-Language", accept};

    return http_accept_lang_zh(fake_request("", accept != NULL ? 1 : 0, h));
}

static void
test_accept_language(void **state)
{
    const char *h[] = {"accept-language", "en-US,en;q=0.9"};

    assert_int_equal(lang_zh(NULL), 1);                         /* default: zh-CN */
    assert_int_equal(lang_zh(""), 1);
    assert_int_equal(lang_zh("zh-CN,zh;q=0.9,en;q=0.8"), 1);
    assert_int_equal(lang_zh("en-US,en;q=0.9"), 0);
    assert_int_equal(lang_zh("en-US,en;q=0.9,zh-CN;q=0.8"), 0);
    assert_int_equal(lang_zh("en;q=0.5, zh-TW;q=0.8"), 1);
    assert_int_equal(lang_zh("zh;q=0.5, en;q=0.8"), 0);
    assert_int_equal(lang_zh("en, zh"), 0);                     /* a tie: the first */
    assert_int_equal(lang_zh("zh, en"), 1);
    assert_int_equal(lang_zh("fr-FR, de"), 1);                  /* neither: zh */
    assert_int_equal(lang_zh("fr, en;q=0.1"), 0);
    assert_int_equal(lang_zh("zh;q=0, en"), 0);
    assert_int_equal(lang_zh("en;q=0, *"), 1);
    assert_int_equal(lang_zh("english, zhx"), 1);               /* not en, not zh */
    assert_int_equal(lang_zh("EN-gb"), 0);

    assert_string_equal(http_lang(fake_request("lang=zh", 1, h)), "zh");
    assert_string_equal(http_lang(fake_request("lang=en", 0, h)), "en");
    assert_string_equal(http_lang(fake_request("lang=xx", 1, h)), "en");
    assert_string_equal(http_lang(fake_request("", 0, h)), "zh");
}

static void
test_status_text(void **state)
{
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(599), "Unknown");
}

static void
test_metrics_text(void **state)
{
    char *text;
    size_t len;

    metrics_reset();
    metrics_conn_open(METRICS_IMAP);
    metrics_conn_open(METRICS_IMAP);
    metrics_conn_close(METRICS_IMAP);
    metrics_login(METRICS_IMAP, METRICS_OK, "passthrough", 7);
    metrics_login(METRICS_IMAP, METRICS_REFUSED, "refused", 3000);
    metrics_login(METRICS_SMTP, METRICS_OK, "apppw", 20000);
    metrics_backend_error(METRICS_POP3);
    metrics_http_response(200);
    metrics_http_response(404);
    metrics_challenge(1);
    metrics_challenge(0);
    metrics_challenge(0);
    assert_int_equal(metrics_render(&text, &len), 0);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "# HELP mfagate_connections_total "));
    assert_non_null(strstr(text, "# TYPE mfagate_connections_total counter\n"));
    assert_non_null(strstr(text, "mfagate_connections_total{protocol=\"imap\"} 2\n"));
    assert_non_null(strstr(text, "mfagate_connections_open{protocol=\"imap\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE mfagate_connections_open gauge\n"));
    assert_non_null(strstr(text, "mfagate_logins_total{protocol=\"imap\",result=\"ok\","
                                 "how=\"passthrough\"} 1\n"));
    assert_non_null(strstr(text, "mfagate_logins_total{protocol=\"imap\",result=\"refused\","
                                 "how=\"refused\"} 1\n"));
    assert_non_null(strstr(text, "# TYPE mfagate_auth_seconds histogram\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"imap\",le=\"0.005\"} "
                                 "0\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"imap\",le=\"0.01\"} "
                                 "1\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"imap\",le=\"2.5\"} "
                                 "1\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"imap\",le=\"5\"} 2\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"imap\",le=\"+Inf\"} "
                                 "2\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_sum{protocol=\"imap\"} 3.007\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_count{protocol=\"imap\"} 2\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"smtp\",le=\"10\"} 0\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_bucket{protocol=\"smtp\",le=\"+Inf\"} "
                                 "1\n"));
    assert_non_null(strstr(text, "mfagate_backend_errors_total{protocol=\"pop3\"} 1\n"));
    assert_non_null(strstr(text, "mfagate_http_requests_total{code=\"2xx\"} 1\n"));
    assert_non_null(strstr(text, "mfagate_http_requests_total{code=\"4xx\"} 1\n"));
    assert_non_null(strstr(text, "mfagate_challenges_total{result=\"ok\"} 1\n"));
    assert_non_null(strstr(text, "mfagate_challenges_total{result=\"failed\"} 2\n"));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_plain),
        cmocka_unit_test(test_keepalive_tls),
        cmocka_unit_test(test_pipelined_plain),
        cmocka_unit_test(test_pipelined_tls),
        cmocka_unit_test(test_post_bodies),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_not_implemented),
        cmocka_unit_test(test_slowloris),
        cmocka_unit_test(test_idle_timeouts),
        cmocka_unit_test(test_abort_pending),
        cmocka_unit_test(test_connection_close_and_head),
        cmocka_unit_test(test_stop_finishes_pending),
        cmocka_unit_test(test_header_cookie_query),
        cmocka_unit_test(test_accept_language),
        cmocka_unit_test(test_status_text),
        cmocka_unit_test(test_metrics_text),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
