/*
 * fuzz_http.c - libFuzzer driver of the HTTP/1.1 request layer (web/http.c
 * on llhttp), driven as the web endpoint drives it: one connection of an
 * http_server, bytes arriving in chunks through the connection's on_read,
 * a handler that answers at once or later, the client going away.
 *
 * http.c is compiled here unchanged; its one seam is core/conn.h, which
 * this file implements with a stand-in (below) instead of core/conn.c: no
 * socket, no TLS; writes are checked and counted, close is deferred as the
 * real one is (on_close never runs inside a conn_* call).  The libuv loop
 * is real, for the connection's timer.
 *
 * Input: byte 0 seeds a PRNG for the chunk sizes and the handler's
 * choices, byte 1 is a mode (bit 0: the client does not read its answers,
 * so writes stay queued; bit 1: tiny chunks; bit 2: graceful server stop
 * at the end; bit 3: the client hangs up at the end with an answer owed),
 * the rest is what the client sends.  Checked: every request handed over
 * is well formed (path, query, headers, NUL-terminated body within the
 * bounds), every answer is one whole HTTP/1.1 response whose body matches
 * its Content-Length, nothing is written after close, and the connection
 * and its requests are freed (LeakSanitizer) whatever the order.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "core/conn.h"
#include "core/log.h"
#include "web/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) \
    do { \
        if (!(x)) \
            __builtin_trap(); \
    } while (0)

/* ---- the stand-in for core/conn.c ---- */

static struct {
    struct conn *c;
    int reading;
    int closing;          /* conn_close or conn_abort was called */
    int stalled;          /* the client does not read: writes stay queued */
    size_t queued;
    unsigned answers;
} fk;

/* One whole response: status line, headers, blank line, the body as long
 * as Content-Length says (or none: HEAD, 204, 304, 1xx). */
static void
check_response(const char *p, size_t len)
{
    const char *end = NULL, *cl;
    size_t head, body, want;

    CHECK(len > 17 && memcmp(p, "HTTP/1.1 ", 9) == 0);
    CHECK(p[9] >= '1' && p[9] <= '5' && p[10] >= '0' && p[10] <= '9' && p[11] >= '0' &&
          p[11] <= '9' && p[12] == ' ');
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
            end = p + i;
            break;
        }
    }
    CHECK(end != NULL);
    head = (size_t)(end - p) + 4;
    body = len - head;
    if (p[9] == '1') {
        CHECK(body == 0);    /* 100 Continue: an interim response, no body */
        return;
    }
    cl = NULL;
    for (const char *q = p; q + 17 < end; q++) {
        if (q[0] == '\n' && memcmp(q + 1, "Content-Length: ", 16) == 0) {
            cl = q + 17;
            break;
        }
    }
    CHECK(cl != NULL);
    want = strtoul(cl, NULL, 10);
    CHECK(body == want || body == 0);
    /* No header line may hold a bare CR or LF (response splitting). */
    for (const char *q = p; q < end; q++)
        if (*q == '\r')
            CHECK(q[1] == '\n');
}

int
conn_init(uv_loop_t *loop, struct conn *c)
{
    fk.c = c;
    return 0;
}

int
conn_accept(uv_stream_t *server, struct conn *c)
{
    return 0;
}

int
conn_read_start(struct conn *c)
{
    CHECK(!fk.closing);
    fk.reading = 1;
    return 0;
}

void
conn_read_stop(struct conn *c)
{
    fk.reading = 0;
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
    CHECK(!fk.closing);
    check_response(data, len);
    fk.answers++;
    if (fk.stalled)
        fk.queued += len;
    return 0;
}

size_t
conn_write_queued(const struct conn *c)
{
    return fk.queued;
}

void
conn_set_low_water(struct conn *c, size_t low, size_t high)
{
}

int
conn_tls_server(struct conn *c, SSL_CTX *ctx, conn_status_cb done)
{
    return UV_EINVAL;    /* never: this driver is cleartext */
}

void
conn_close(struct conn *c)
{
    fk.closing = 1;
    fk.reading = 0;
}

void
conn_abort(struct conn *c)
{
    fk.closing = 1;
    fk.reading = 0;
}

int
conn_is_closing(const struct conn *c)
{
    return fk.closing;
}

int
conn_peer_addr(struct conn *c, char *out, size_t outlen, int *port)
{
    snprintf(out, outlen, "192.0.2.7");
    if (port != NULL)
        *port = 40000;
    return 0;
}

/* ---- the handler ---- */

static uint32_t rng;

static uint32_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* The request whose answer is owed, if the handler took its time. */
static struct http_request *owed;
static int owed_abortable;

static void
on_abort(struct http_request *req)
{
    CHECK(req == owed);
    owed = NULL;    /* must not be touched again */
}

static void
check_request(const struct http_request *req)
{
    char buf[128];
    const char *lang;

    CHECK(req->method != NULL && req->method[0] != '\0');
    CHECK(req->path != NULL && req->path[0] == '/');
    CHECK(req->query != NULL);
    CHECK(req->nheaders >= 0 && req->nheaders <= HTTP_MAX_HEADERS);
    for (int i = 0; i < req->nheaders; i++)
        CHECK(req->headers[i].name != NULL && req->headers[i].value != NULL);
    CHECK(req->body != NULL && req->body_len <= HTTP_MAX_BODY);
    CHECK(req->body[req->body_len] == '\0');
    CHECK(strcmp(req->peer, "192.0.2.7") == 0);
    (void)http_header(req, "Host");
    if (http_cookie(req, "mfa_session", buf, sizeof(buf)) == 0)
        CHECK(strlen(buf) < sizeof(buf));
    if (http_query(req, "lang", buf, sizeof(buf)) == 0)
        CHECK(strlen(buf) < sizeof(buf));
    lang = http_lang(req);
    CHECK(strcmp(lang, "zh") == 0 || strcmp(lang, "en") == 0);
}

static void
answer(struct http_request *req, uint32_t how)
{
    static char big[100 * 1024];

    switch (how % 5) {
    case 0:
        http_respond_json(req, 200, "{\"ok\":true}", NULL);
        break;
    case 1:
        /* The path in a message: escaped into the JSON. */
        http_respond_error(req, 404, "not_found", req->path);
        break;
    case 2:
        http_respond(req, (how & 8) ? 204 : 304, NULL, NULL, 0,
                     "Cache-Control: max-age=60\r\nSet-Cookie: a=b; HttpOnly\r\n");
        break;
    case 3:
        memset(big, 'x', sizeof(big));
        http_respond(req, 200, "text/plain", big, sizeof(big), NULL);
        break;
    default:
        http_respond(req, 500 + (int)(how % 4), "text/plain", "no", 2, NULL);
        break;
    }
}

static void
on_request(struct http_server *srv, struct http_request *req)
{
    uint32_t r = next_rand();

    check_request(req);
    CHECK(owed == NULL);    /* one request at a time per connection */
    if (r % 3 != 0) {
        answer(req, r >> 8);
        return;
    }
    /* Later: with on_abort (a long poll) or without (a backend check that
     * finishes on its own even if the client left). */
    owed = req;
    owed_abortable = (r >> 4) & 1;
    if (owed_abortable)
        req->on_abort = on_abort;
}

static void
answer_owed(void)
{
    struct http_request *req = owed;

    if (req == NULL)
        return;
    owed = NULL;
    req->on_abort = NULL;
    answer(req, next_rand());
}

static void
drain(void)
{
    if (fk.queued > 0) {
        fk.queued = 0;
        if (!fk.closing && fk.c->on_drain != NULL)
            fk.c->on_drain(fk.c, 0);
    }
}

/* ---- the driver ---- */

static uv_loop_t loop;
static int closed_conns;

static void
on_conn_closed(struct http_server *srv)
{
    closed_conns++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    static uv_tcp_t listener;    /* never used by the stand-in */
    struct http_server srv;
    size_t pos = 2;
    unsigned mode;

    if (!inited) {
        CHECK(uv_loop_init(&loop) == 0);
        log_init(LOG_ERROR, 2);
        inited = 1;
    }
    if (size < 2)
        return 0;
    rng = 0x9e3779b9u ^ (uint32_t)data[0] * 2654435761u;
    mode = data[1];
    memset(&fk, 0, sizeof(fk));
    fk.stalled = mode & 1;
    owed = NULL;
    closed_conns = 0;

    http_server_init(&srv, &loop);
    srv.on_request = on_request;
    srv.on_conn_closed = on_conn_closed;
    srv.id_base = 1ULL << 40;
    CHECK(http_server_accept(&srv, (uv_stream_t *)&listener, NULL) == 0);
    CHECK(fk.c != NULL && srv.nconns == 1);

    while (pos < size && !fk.closing) {
        uint32_t r = next_rand();
        size_t n = (mode & 2) ? 1 + r % 7 : 1 + r % 2048;

        if (!fk.reading) {
            /* Reads stopped (backpressure, or an answer owed): what the
             * server waits for must happen first. */
            if (owed != NULL)
                answer_owed();
            else if (fk.queued > 0)
                drain();
            else
                break;
            continue;
        }
        if (n > size - pos)
            n = size - pos;
        fk.c->on_read(fk.c, (const char *)data + pos, n);
        pos += n;
        if (owed != NULL && (r & 0x30000) == 0)
            answer_owed();
        if (fk.queued > 0 && (r & 0xc0000) == 0)
            drain();
    }

    if (mode & 4)
        http_server_stop(&srv);
    if (!(mode & 8)) {
        for (int i = 0; i < 64 && !fk.closing && (owed != NULL || fk.queued > 0); i++) {
            answer_owed();
            drain();
        }
    }
    /* The client hangs up (an answer may still be owed). */
    if (!fk.closing && fk.c->on_error != NULL)
        fk.c->on_error(fk.c, UV_EOF);
    CHECK(fk.closing);
    /* A request owed without on_abort lives, detached, until answered. */
    if (owed != NULL) {
        CHECK(!owed_abortable);
        answer_owed();
    }
    /* conn.c calls on_close later, from the loop; then the timer closes. */
    fk.c->on_close(fk.c);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(srv.nconns == 0 && srv.conns == NULL && closed_conns == 1);
    return 0;
}
