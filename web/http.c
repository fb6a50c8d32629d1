/*
 * http.c - HTTP/1.1 on core/conn connections (TLS or not): the only file
 * that includes llhttp.h.  Owns each connection's parser, its input buffer,
 * its timer and the request being parsed or answered; owns neither the
 * listeners nor what a request means (web.c's on_request decides).
 *
 * One request at a time per connection: when a request is complete the
 * parser pauses (on_message_complete returns HPE_PAUSED) and bytes that
 * follow wait in the input buffer until the request is answered, so
 * pipelined requests are answered in order and at most one request per
 * connection holds memory.  Reads stop while the buffer holds more than one
 * head and one body, and while the answers already written are not taken by
 * the client (write queue above high water).
 *
 * States: IDLE (between requests: the keep-alive timer, or for a new
 * connection the head timer), HEAD (a request has begun: its head and body
 * must arrive before the head timer fires, else 408), PENDING (the handler
 * owes the answer: no timer, the handler bounds its own work).
 */
#include "web/http.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <llhttp.h>
#include <openssl/crypto.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/util.h"

/* Input kept while a request is pending, before reads stop. */
#define HTTP_IN_MAX (HTTP_MAX_HEAD + HTTP_MAX_BODY)
/* Answers queued and not taken by the client: stop parsing above this. */
#define HTTP_WRITE_LOW (64 * 1024)
#define HTTP_WRITE_HIGH (256 * 1024)
/* The request line and headers as kept: names, values, NULs, the path twice. */
#define HTTP_ARENA_MAX (2 * HTTP_MAX_HEAD + 4 * HTTP_MAX_HEADERS + 64)

static const char http_security_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "X-Frame-Options: DENY\r\n";
static const char http_hsts[] = "Strict-Transport-Security: max-age=31536000\r\n";

enum http_state {
    HTTP_S_IDLE = 0,
    HTTP_S_HEAD,      /* a request is being read (head or body) */
    HTTP_S_PENDING,   /* complete; the handler owes the answer */
};

/* One request: the public part plus what parsing needs. */
struct http_req {
    struct http_request pub;
    struct http_conn *hc;          /* NULL once detached (the conn went away) */
    char *arena;                   /* url, then name NUL value NUL ..., then the path */
    size_t arena_len, arena_cap;
    size_t url_len;
    size_t name_off[HTTP_MAX_HEADERS], value_off[HTTP_MAX_HEADERS];
    int in_field, in_value;
    size_t body_cap;
    uint64_t started_ms;
    int keep_alive;
    int head_only;                 /* HEAD: the answer has no body */
    int head_done;                 /* the headers are complete */
    int http10;
    int detached;
    int in_abort;                  /* on_abort runs: an answer now is ignored */
    char logpath[160];             /* the raw path, escaped for the log */
};

struct http_conn {
    struct conn c;
    struct http_server *srv;
    struct http_conn *prev, *next;
    llhttp_t parser;
    uv_timer_t timer;
    int handles;                   /* conn + timer */
    enum http_state state;
    int closing;
    int close_after;               /* close once the current answer is written */
    int processing;                /* http_conn_process is on the stack */
    int wait_drain;
    int tls;
    int metrics_proto;
    unsigned served;
    char peer[64];
    int peer_port;
    char *in;
    size_t in_len, in_pos, in_cap;
    struct http_req *req;
    int err_status;                /* set by a callback that fails the parse */
    size_t head_bytes;             /* raw bytes of the current head so far */
};

static void http_conn_process(struct http_conn *hc);
static void http_conn_close(struct http_conn *hc, int graceful);

/* ---- small helpers ---- */

const char *
http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static int
http_hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes in[0..len) into out (NUL-terminated); '+' is a space when
 * plus_space.  The decoded length, or -1 for a bad escape, a NUL, or no room.
 */
static long
http_pct_decode(const char *in, size_t len, char *out, size_t outlen, int plus_space)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)in[i];

        if (ch == '%') {
            int hi, lo;

            if (i + 2 >= len)
                return -1;
            hi = http_hexval((unsigned char)in[i + 1]);
            lo = http_hexval((unsigned char)in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+' && plus_space) {
            ch = ' ';
        }
        if (ch == '\0' || o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return (long)o;
}

int
http_local_addr(const struct http_request *req, struct sockaddr_storage *out)
{
    int len = sizeof(*out);

    memset(out, 0, sizeof(*out));
    return uv_tcp_getsockname(&req->conn->c.tcp, (struct sockaddr *)out, &len);
}

const char *
http_header(const struct http_request *req, const char *name)
{
    for (int i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static int
http_is_ows(int ch)
{
    return ch == ' ' || ch == '\t';
}

/* The cookie in one Cookie header's value ("a=b; c=d"); 0, -1, or -2 if too long. */
static int
http_cookie_in(const char *p, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);

    while (*p != '\0') {
        const char *k, *v, *end;
        size_t klen, vlen;

        while (http_is_ows((unsigned char)*p) || *p == ';')
            p++;
        k = p;
        while (*p != '\0' && *p != '=' && *p != ';')
            p++;
        klen = (size_t)(p - k);
        while (klen > 0 && http_is_ows((unsigned char)k[klen - 1]))
            klen--;
        if (*p != '=') {
            /* A pair without '=' is no cookie of ours; skip it. */
            continue;
        }
        p++;
        while (http_is_ows((unsigned char)*p))
            p++;
        v = p;
        while (*p != '\0' && *p != ';')
            p++;
        end = p;
        while (end > v && http_is_ows((unsigned char)end[-1]))
            end--;
        vlen = (size_t)(end - v);
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
            v++;
            vlen -= 2;
        }
        if (klen == nlen && memcmp(k, name, nlen) == 0) {
            if (vlen >= outlen)
                return -2;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
    }
    return -1;
}

int
http_cookie(const struct http_request *req, const char *name, char *out, size_t outlen)
{
    if (outlen == 0 || name == NULL || name[0] == '\0')
        return -1;
    /* Browsers send one Cookie header; HTTP/2 gateways may split it. */
    for (int i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, "Cookie") != 0)
            continue;
        int rc = http_cookie_in(req->headers[i].value, name, out, outlen);

        if (rc == 0)
            return 0;
        if (rc == -2)
            return -1;
    }
    return -1;
}

int
http_query(const struct http_request *req, const char *name, char *out, size_t outlen)
{
    const char *p = req->query;
    char key[256];

    if (p == NULL || outlen == 0)
        return -1;
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        const char *end = amp != NULL ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        const char *kend = eq != NULL ? eq : end;

        if (http_pct_decode(p, (size_t)(kend - p), key, sizeof(key), 1) >= 0 &&
            strcmp(key, name) == 0) {
            if (eq == NULL) {
                out[0] = '\0';
                return 0;
            }
            return http_pct_decode(eq + 1, (size_t)(end - eq - 1), out, outlen, 1) >= 0 ? 0
                                                                                         : -1;
        }
        p = amp != NULL ? amp + 1 : end;
    }
    return -1;
}

/* The q-value of a language range's parameters (";q=0.5"); 1000 = q=1. */
static int
http_qvalue(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (http_is_ows((unsigned char)*p) || *p == ';'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            int q = 0, scale = 1000;

            p += 2;
            if (p < end && *p == '1')
                return 1000;
            if (p < end && *p == '0') {
                p++;
                if (p < end && *p == '.') {
                    p++;
                    for (int i = 0; i < 3 && p < end && isdigit((unsigned char)*p); i++, p++) {
                        scale /= 10;
                        q += (*p - '0') * scale;
                    }
                }
                return q;
            }
            return 0;
        }
        while (p < end && *p != ';')
            p++;
    }
    return 1000;
}

int
http_accept_lang_zh(const struct http_request *req)
{
    const char *h = http_header(req, "Accept-Language");
    int qzh = -1, qen = -1, qany = -1, poszh = 0, posen = 0, pos = 0;

    if (h == NULL)
        return 1;
    while (*h != '\0') {
        const char *item = h, *end, *tag_end;
        size_t tlen;
        int q;

        end = strchr(h, ',');
        if (end == NULL)
            end = h + strlen(h);
        h = *end == ',' ? end + 1 : end;
        while (item < end && http_is_ows((unsigned char)*item))
            item++;
        tag_end = item;
        while (tag_end < end && *tag_end != ';' && !http_is_ows((unsigned char)*tag_end))
            tag_end++;
        tlen = (size_t)(tag_end - item);
        if (tlen == 0)
            continue;
        q = http_qvalue(tag_end, end);
        pos++;
        if (tlen == 1 && item[0] == '*') {
            if (q > qany)
                qany = q;
        } else if (strncasecmp(item, "zh", 2) == 0 && (tlen == 2 || item[2] == '-')) {
            if (q > qzh) {
                qzh = q;
                poszh = pos;
            }
        } else if (strncasecmp(item, "en", 2) == 0 && (tlen == 2 || item[2] == '-')) {
            if (q > qen) {
                qen = q;
                posen = pos;
            }
        }
    }
    /* A language not named takes the wildcard's q (RFC 4647 3.3 basic filtering). */
    if (qzh < 0) {
        qzh = qany;
        poszh = 1000;
    }
    if (qen < 0) {
        qen = qany;
        posen = 1000;
    }
    if (qen > qzh)
        return 0;
    if (qen == qzh && qen > 0 && posen < poszh)
        return 0;
    return 1;
}

const char *
http_lang(const struct http_request *req)
{
    char v[8];

    if (http_query(req, "lang", v, sizeof(v)) == 0) {
        if (strcasecmp(v, "en") == 0)
            return "en";
        if (strcasecmp(v, "zh") == 0 || strcasecmp(v, "zh-cn") == 0)
            return "zh";
    }
    return http_accept_lang_zh(req) ? "zh" : "en";
}

/* ---- requests ---- */

static struct http_req *
http_req_new(struct http_conn *hc)
{
    struct http_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    r->arena_cap = 1024;
    r->arena = malloc(r->arena_cap);
    if (r->arena == NULL) {
        free(r);
        return NULL;
    }
    r->hc = hc;
    r->started_ms = util_now_ms();
    r->pub.method = "-";
    r->pub.path = (char *)"/";
    r->pub.query = (char *)"";
    r->pub.conn = hc;
    r->pub.tls = hc->tls;
    util_strlcpy(r->pub.peer, hc->peer, sizeof(r->pub.peer));
    r->pub.peer_port = hc->peer_port;
    util_strlcpy(r->logpath, "-", sizeof(r->logpath));
    r->pub.id = hc->srv->id_base | ++hc->srv->next_id;
    return r;
}

static void
http_req_free(struct http_req *r)
{
    if (r == NULL)
        return;
    free(r->arena);
    if (r->pub.body != NULL) {
        /* A body can hold a password or a code. */
        OPENSSL_cleanse(r->pub.body, r->body_cap);
        free(r->pub.body);
    }
    free(r);
}

/* Appends to the arena; -1 past HTTP_ARENA_MAX (the caller answers 431). */
static int
http_arena_add(struct http_req *r, const char *data, size_t len)
{
    if (r->arena_len + len > HTTP_ARENA_MAX)
        return -1;
    if (r->arena_cap - r->arena_len < len) {
        size_t cap = r->arena_cap;
        char *p;

        while (cap - r->arena_len < len)
            cap *= 2;
        if (cap > HTTP_ARENA_MAX)
            cap = HTTP_ARENA_MAX;
        p = realloc(r->arena, cap);
        if (p == NULL)
            return -1;
        r->arena = p;
        r->arena_cap = cap;
    }
    memcpy(r->arena + r->arena_len, data, len);
    r->arena_len += len;
    return 0;
}

static int
http_token_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/*
 * The raw path for the log: bytes outside printable ASCII, '"' and '\' as
 * %XX, and what looks like a secret cut to its first HTTP_LOG_KEEP
 * characters and "...": a run of HTTP_LOG_TOKEN_MIN or more letters,
 * digits, '-' or '_' (a QR scene in /api/scan/<scene>/wait or /mp?scene=
 * lets whoever holds it answer the request; the log must not hand it out).
 */
#define HTTP_LOG_TOKEN_MIN 16
#define HTTP_LOG_KEEP 4
static void
http_log_path(struct http_req *r, const char *raw, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (size_t i = 0; i < len && o + 4 < sizeof(r->logpath); i++) {
        unsigned char ch = (unsigned char)raw[i];
        size_t run = 0;

        if (http_token_char(ch) && (i == 0 || !http_token_char((unsigned char)raw[i - 1]))) {
            while (i + run < len && http_token_char((unsigned char)raw[i + run]))
                run++;
            if (run >= HTTP_LOG_TOKEN_MIN) {
                if (o + HTTP_LOG_KEEP + 4 >= sizeof(r->logpath))
                    break;
                memcpy(r->logpath + o, raw + i, HTTP_LOG_KEEP);
                memcpy(r->logpath + o + HTTP_LOG_KEEP, "...", 3);
                o += HTTP_LOG_KEEP + 3;
                i += run - 1;
                continue;
            }
        }
        if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            r->logpath[o++] = '%';
            r->logpath[o++] = hex[ch >> 4];
            r->logpath[o++] = hex[ch & 15];
        } else {
            r->logpath[o++] = (char)ch;
        }
    }
    r->logpath[o] = '\0';
}

/* ---- writing answers ---- */

/*
 * Writes one whole answer (head and body in one conn_write).  body_len is
 * the Content-Length even when the body is not sent (HEAD, 304).  0 or <0.
 */
static int
http_write_answer(struct http_conn *hc, int status, const char *ctype, const void *body,
                  size_t body_len, const char *extra, int send_body, int keep_alive,
                  int http10)
{
    char head[2048], date[64];
    struct tm tm;
    time_t now = time(NULL);
    size_t extra_len = extra != NULL ? strlen(extra) : 0;
    int cache_set = 0, n;
    char *buf;
    size_t total;
    int rc;

    for (const char *p = extra; p != NULL && *p != '\0';) {
        if (strncasecmp(p, "Cache-Control:", 14) == 0)
            cache_set = 1;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\n"
                 "Date: %s\r\n"
                 "%s%s%s"
                 "Content-Length: %zu\r\n"
                 "%s"
                 "%s%s"
                 "%s",
                 status, http_status_text(status), date,
                 ctype != NULL ? "Content-Type: " : "", ctype != NULL ? ctype : "",
                 ctype != NULL ? "\r\n" : "", body_len,
                 !keep_alive ? "Connection: close\r\n"
                             : (http10 ? "Connection: keep-alive\r\n" : ""),
                 http_security_headers, hc->tls ? http_hsts : "",
                 cache_set ? "" : "Cache-Control: no-store\r\n");
    if (n < 0 || (size_t)n >= sizeof(head))
        return UV_EINVAL;
    if (!send_body)
        body_len = 0;
    total = (size_t)n + extra_len + 2 + body_len;
    buf = malloc(total);
    if (buf == NULL)
        return UV_ENOMEM;
    memcpy(buf, head, (size_t)n);
    if (extra_len > 0)
        memcpy(buf + n, extra, extra_len);
    memcpy(buf + n + extra_len, "\r\n", 2);
    if (body_len > 0)
        memcpy(buf + n + extra_len + 2, body, body_len);
    rc = conn_write(&hc->c, buf, total);
    free(buf);
    if (rc == 0)
        metrics_http_response(status);
    return rc;
}

static void
http_log(struct http_conn *hc, struct http_req *r, int status)
{
    log_info("http=%" PRIu64 " method=%s path=%s status=%d ms=%" PRIu64 " addr=%s",
             r != NULL ? r->pub.id : 0, r != NULL ? r->pub.method : "-",
             r != NULL ? r->logpath : "-", status,
             r != NULL ? util_now_ms() - r->started_ms : 0, hc->peer);
}

/* The HTTP layer's own refusal (bad input, limits, timeout): answer, then close. */
static void
http_conn_fail(struct http_conn *hc, int status, const char *code, const char *message)
{
    char body[256];
    int n;

    if (hc->closing)
        return;
    n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", code, message);
    http_write_answer(hc, status, "application/json; charset=utf-8", body, (size_t)n, NULL,
                      hc->req == NULL || !hc->req->head_only, 0,
                      hc->req != NULL && hc->req->http10);
    http_log(hc, hc->req, status);
    http_conn_close(hc, 1);
}

/* ---- timers ---- */

static void
http_timer_cb(uv_timer_t *t)
{
    struct http_conn *hc = t->data;

    if (hc->closing)
        return;
    if (hc->state == HTTP_S_HEAD) {
        log_info("http=%" PRIu64 " event=timeout state=head addr=%s",
                 hc->req != NULL ? hc->req->pub.id : 0, hc->peer);
        http_conn_fail(hc, 408, "timeout", "The request took too long to arrive.");
    } else if (hc->state == HTTP_S_IDLE) {
        /* Nothing begun: a quiet close, as a keep-alive timeout is no error. */
        http_conn_close(hc, 1);
    }
}

static void
http_timer_set(struct http_conn *hc)
{
    struct http_server *srv = hc->srv;
    uint64_t ms;

    if (hc->closing)
        return;
    switch (hc->state) {
    case HTTP_S_IDLE:
        if (hc->served == 0)
            ms = srv->head_timeout_ms ? srv->head_timeout_ms : HTTP_HEAD_TIMEOUT_MS;
        else
            ms = srv->idle_timeout_ms ? srv->idle_timeout_ms : HTTP_IDLE_TIMEOUT_MS;
        uv_timer_start(&hc->timer, http_timer_cb, ms, 0);
        break;
    case HTTP_S_HEAD:
        ms = srv->head_timeout_ms ? srv->head_timeout_ms : HTTP_HEAD_TIMEOUT_MS;
        uv_timer_start(&hc->timer, http_timer_cb, ms, 0);
        break;
    case HTTP_S_PENDING:
        uv_timer_stop(&hc->timer);
        break;
    }
}

/* ---- llhttp callbacks ---- */

static struct http_conn *
http_of(llhttp_t *p)
{
    return p->data;
}

/* Fails the parse with an HTTP status chosen here. */
static int
http_cb_fail(struct http_conn *hc, int status)
{
    hc->err_status = status;
    return -1;
}

static int
http_on_message_begin(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);

    if (hc->req != NULL)
        return http_cb_fail(hc, 500);
    hc->req = http_req_new(hc);
    if (hc->req == NULL)
        return http_cb_fail(hc, 500);
    hc->head_bytes = 0;
    hc->state = HTTP_S_HEAD;
    http_timer_set(hc);
    return 0;
}

static int
http_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->url_len + len > HTTP_MAX_HEAD || http_arena_add(r, at, len) != 0)
        return http_cb_fail(hc, 431);
    r->url_len += len;
    return 0;
}

static int
http_on_url_complete(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);

    return http_arena_add(hc->req, "", 1) == 0 ? 0 : http_cb_fail(hc, 431);
}

static int
http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    /*
     * After the head, fields are the trailer of a chunked body.  They are
     * discarded (RFC 9112 7.1.2 allows it): kept, they would grow the arena
     * after the request's pointers into it were set, and be counted in
     * nheaders without a name.  (Found by tests/fuzz/fuzz_http.c.)
     */
    if (r->head_done)
        return 0;
    if (!r->in_field) {
        if (r->pub.nheaders >= HTTP_MAX_HEADERS)
            return http_cb_fail(hc, 431);
        r->name_off[r->pub.nheaders] = r->arena_len;
        r->in_field = 1;
    }
    return http_arena_add(r, at, len) == 0 ? 0 : http_cb_fail(hc, 431);
}

static int
http_on_header_field_complete(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->head_done)
        return 0;    /* a trailer field: discarded */
    if (!r->in_field) {
        /* An empty name cannot pass llhttp, but stay consistent anyway. */
        if (r->pub.nheaders >= HTTP_MAX_HEADERS)
            return http_cb_fail(hc, 431);
        r->name_off[r->pub.nheaders] = r->arena_len;
    }
    r->in_field = 0;
    return http_arena_add(r, "", 1) == 0 ? 0 : http_cb_fail(hc, 431);
}

static int
http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->head_done)
        return 0;    /* a trailer field: discarded */
    if (!r->in_value) {
        r->value_off[r->pub.nheaders] = r->arena_len;
        r->in_value = 1;
    }
    return http_arena_add(r, at, len) == 0 ? 0 : http_cb_fail(hc, 431);
}

static int
http_on_header_value_complete(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->head_done)
        return 0;    /* a trailer field: discarded */
    if (!r->in_value)
        r->value_off[r->pub.nheaders] = r->arena_len;
    r->in_value = 0;
    /* Trailing whitespace is not part of a field value (RFC 9110 5.5). */
    while (r->arena_len > r->value_off[r->pub.nheaders] &&
           http_is_ows((unsigned char)r->arena[r->arena_len - 1]))
        r->arena_len--;
    if (http_arena_add(r, "", 1) != 0)
        return http_cb_fail(hc, 431);
    r->pub.nheaders++;
    return 0;
}

static int
http_method_known(const char *m)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                        "PATCH"};

    for (size_t i = 0; i < ARRAY_SIZE(known); i++)
        if (strcmp(m, known[i]) == 0)
            return 1;
    return 0;
}

/* Splits the URL into path (decoded) and query; 0, or an HTTP status. */
static int
http_split_url(struct http_req *r)
{
    size_t start = 0, plen, qoff = 0, path_off;
    char *url = r->arena, *q;
    int has_query = 0;
    long n;

    /* Absolute form (RFC 9112 3.2.2): keep the path of it. */
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        char *slash = strchr(strstr(url, "//") + 2, '/');

        if (slash == NULL)
            return 400;
        start = (size_t)(slash - url);
    }
    url += start;
    if (url[0] != '/')
        return 400;
    url[strcspn(url, "#")] = '\0';
    q = strchr(url, '?');
    if (q != NULL) {
        *q = '\0';
        has_query = 1;
        qoff = (size_t)(q + 1 - r->arena);
    }
    plen = strlen(url);
    http_log_path(r, url, plen);
    /* The decoded path is no longer than the raw one: make room once. */
    if (r->arena_cap - r->arena_len < plen + 1) {
        char *np = realloc(r->arena, r->arena_len + plen + 1);

        if (np == NULL)
            return 500;
        r->arena = np;
        r->arena_cap = r->arena_len + plen + 1;
    }
    path_off = r->arena_len;
    n = http_pct_decode(r->arena + start, plen, r->arena + path_off, plen + 1, 0);
    if (n < 0)
        return 400;
    r->arena_len += (size_t)n + 1;
    r->pub.path = r->arena + path_off;
    if (has_query)
        r->pub.query = r->arena + qoff;
    return 0;
}

static int
http_on_headers_complete(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;
    const char *te, *expect;
    size_t est;
    int st;

    r->head_done = 1;
    r->pub.method = llhttp_method_name((llhttp_method_t)llhttp_get_method(p));
    r->head_only = strcmp(r->pub.method, "HEAD") == 0;
    r->http10 = llhttp_get_http_major(p) == 1 && llhttp_get_http_minor(p) == 0;
    /* The request line and headers as sent, but for optional whitespace. */
    est = strlen(r->pub.method) + r->url_len + 12;
    for (int i = 0; i < r->pub.nheaders; i++)
        est += strlen(r->arena + r->name_off[i]) + strlen(r->arena + r->value_off[i]) + 4;
    if (est > HTTP_MAX_HEAD || hc->head_bytes > HTTP_MAX_HEAD)
        return http_cb_fail(hc, 431);
    /* The arena no longer moves, but for the decoded path, which comes next. */
    st = http_split_url(r);
    if (st != 0)
        return http_cb_fail(hc, st);
    for (int i = 0; i < r->pub.nheaders; i++) {
        r->pub.headers[i].name = r->arena + r->name_off[i];
        r->pub.headers[i].value = r->arena + r->value_off[i];
    }
    if (!http_method_known(r->pub.method))
        return http_cb_fail(hc, 501);
    te = http_header(&r->pub, "Transfer-Encoding");
    if (te != NULL && strcasecmp(te, "chunked") != 0)
        return http_cb_fail(hc, 501);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > HTTP_MAX_BODY)
        return http_cb_fail(hc, 413);
    expect = http_header(&r->pub, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && !r->http10) {
        /* Every earlier request is answered (one at a time): in order. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

        conn_write(&hc->c, cont, sizeof(cont) - 1);
    }
    if (llhttp_get_upgrade(p))
        hc->close_after = 1;    /* no protocol switch here: answer, then close */
    return 0;
}

static int
http_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->pub.body_len + len > HTTP_MAX_BODY)
        return http_cb_fail(hc, 413);
    if (r->body_cap < r->pub.body_len + len + 1) {
        size_t cap = r->body_cap ? r->body_cap : 1024;
        char *nb;

        while (cap < r->pub.body_len + len + 1)
            cap *= 2;
        if (cap > HTTP_MAX_BODY + 1)
            cap = HTTP_MAX_BODY + 1;
        nb = malloc(cap);
        if (nb == NULL)
            return http_cb_fail(hc, 500);
        if (r->pub.body != NULL) {
            memcpy(nb, r->pub.body, r->pub.body_len);
            OPENSSL_cleanse(r->pub.body, r->body_cap);
            free(r->pub.body);
        }
        r->pub.body = nb;
        r->body_cap = cap;
    }
    memcpy(r->pub.body + r->pub.body_len, at, len);
    r->pub.body_len += len;
    r->pub.body[r->pub.body_len] = '\0';
    return 0;
}

static int
http_on_message_complete(llhttp_t *p)
{
    struct http_conn *hc = http_of(p);
    struct http_req *r = hc->req;

    if (r->pub.body == NULL) {
        r->pub.body = calloc(1, 1);
        if (r->pub.body == NULL)
            return http_cb_fail(hc, 500);
        r->body_cap = 1;
    }
    r->keep_alive = llhttp_should_keep_alive(p);
    hc->state = HTTP_S_PENDING;
    http_timer_set(hc);
    return HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_message_begin = http_on_message_begin,
    .on_url = http_on_url,
    .on_url_complete = http_on_url_complete,
    .on_header_field = http_on_header_field,
    .on_header_field_complete = http_on_header_field_complete,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = http_on_headers_complete,
    .on_body = http_on_body,
    .on_message_complete = http_on_message_complete,
};

/* ---- the connection ---- */

static void
http_conn_unlink(struct http_conn *hc)
{
    struct http_server *srv = hc->srv;

    if (hc->prev != NULL)
        hc->prev->next = hc->next;
    else
        srv->conns = hc->next;
    if (hc->next != NULL)
        hc->next->prev = hc->prev;
    srv->nconns--;
}

static void
http_conn_unref(struct http_conn *hc)
{
    struct http_server *srv = hc->srv;

    if (--hc->handles > 0)
        return;
    http_conn_unlink(hc);
    metrics_conn_close(hc->metrics_proto);
    http_req_free(hc->req);
    free(hc->in);
    free(hc);
    if (srv->on_conn_closed != NULL)
        srv->on_conn_closed(srv);
}

static void
http_timer_closed(uv_handle_t *h)
{
    http_conn_unref(h->data);
}

static void
http_conn_closed(struct conn *c)
{
    http_conn_unref(c->data);
}

/*
 * The connection goes away.  A request whose answer is still owed is
 * aborted: on_abort if the handler set one, else it is detached and lives
 * until the handler answers.
 */
static void
http_conn_close(struct http_conn *hc, int graceful)
{
    struct http_req *r = hc->req;

    if (hc->closing) {
        if (!graceful)
            conn_abort(&hc->c);
        return;
    }
    hc->closing = 1;
    uv_timer_stop(&hc->timer);
    uv_close((uv_handle_t *)&hc->timer, http_timer_closed);
    if (r != NULL && hc->state == HTTP_S_PENDING) {
        hc->req = NULL;
        log_info("http=%" PRIu64 " method=%s path=%s event=aborted ms=%" PRIu64 " addr=%s",
                 r->pub.id, r->pub.method, r->logpath, util_now_ms() - r->started_ms,
                 hc->peer);
        r->hc = NULL;
        r->pub.conn = NULL;
        if (r->pub.on_abort != NULL) {
            r->in_abort = 1;
            r->pub.on_abort(&r->pub);
            http_req_free(r);
        } else {
            r->detached = 1;
        }
    }
    if (graceful)
        conn_close(&hc->c);
    else
        conn_abort(&hc->c);
}

static void
http_conn_on_error(struct conn *c, int status)
{
    struct http_conn *hc = c->data;

    if (status != UV_EOF && status != UV_ECONNRESET)
        log_info("http=- event=conn_error addr=%s error=\"%s\"", hc->peer, uv_strerror(status));
    /* A client that hangs up with a request pending has given up on it. */
    http_conn_close(hc, 1);
}

static void
http_conn_on_drain(struct conn *c, int status)
{
    struct http_conn *hc = c->data;

    if (hc->wait_drain) {
        hc->wait_drain = 0;
        http_conn_process(hc);
    }
}

static void
http_conn_on_read(struct conn *c, const char *data, size_t len)
{
    struct http_conn *hc = c->data;

    if (hc->closing)
        return;
    if (hc->in_pos > 0 && hc->in_pos == hc->in_len)
        hc->in_pos = hc->in_len = 0;
    if (hc->in_cap - hc->in_len < len) {
        size_t cap = hc->in_cap ? hc->in_cap : 4096;
        char *p;

        if (hc->in_pos > 0) {
            memmove(hc->in, hc->in + hc->in_pos, hc->in_len - hc->in_pos);
            hc->in_len -= hc->in_pos;
            hc->in_pos = 0;
        }
        while (cap - hc->in_len < len)
            cap *= 2;
        if (cap != hc->in_cap) {
            p = realloc(hc->in, cap);
            if (p == NULL) {
                http_conn_close(hc, 0);
                return;
            }
            hc->in = p;
            hc->in_cap = cap;
        }
    }
    memcpy(hc->in + hc->in_len, data, len);
    hc->in_len += len;
    http_conn_process(hc);
}

/* Is ch a token character (RFC 9110 5.6.2)? */
static int
http_is_tchar(int ch)
{
    return ch > 0x20 && ch < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", ch) == NULL;
}

/*
 * The status for a parse error.  An unknown method that is a well-formed
 * token is 501 (RFC 9110 9.1); bytes that are no method at all are 400.
 * data is where this parse began, the start of the request if it was idle.
 */
static int
http_status_for(llhttp_errno_t err, const char *data, size_t len)
{
    size_t i = 0;

    if (err != HPE_INVALID_METHOD)
        return 400;
    while (i < len && (data[i] == '\r' || data[i] == '\n'))
        i++;
    if (i >= len || !http_is_tchar((unsigned char)data[i]))
        return 400;
    while (i < len && http_is_tchar((unsigned char)data[i]))
        i++;
    return i < len && data[i] != ' ' ? 400 : 501;
}

/* Hands the complete request to the owner. */
static void
http_conn_dispatch(struct http_conn *hc)
{
    struct http_req *r = hc->req;

    hc->served++;
    if (hc->srv->stopping)
        hc->close_after = 1;
    hc->srv->on_request(hc->srv, &r->pub);
}

/*
 * Feeds buffered input to the parser while no answer is owed; dispatches
 * each complete request.  Reentrant calls (an answer given inside
 * on_request) return at once: the outer loop goes on.
 */
static void
http_conn_process(struct http_conn *hc)
{
    if (hc->processing)
        return;
    hc->processing = 1;
    while (!hc->closing && hc->state != HTTP_S_PENDING &&
           !(hc->close_after && hc->state == HTTP_S_IDLE) && hc->in_pos < hc->in_len) {
        const char *data = hc->in + hc->in_pos;
        size_t len = hc->in_len - hc->in_pos;
        llhttp_errno_t err;

        if (hc->state == HTTP_S_IDLE && conn_write_queued(&hc->c) > HTTP_WRITE_HIGH) {
            /* The client does not read its answers: neither do we, for now. */
            hc->wait_drain = 1;
            break;
        }
        hc->err_status = 0;
        err = llhttp_execute(&hc->parser, data, len);
        if (err == HPE_OK) {
            hc->in_pos = hc->in_len;
            if (hc->state == HTTP_S_HEAD && hc->req != NULL && !hc->req->head_done) {
                /* Still in the head: count what it took, whitespace included. */
                hc->head_bytes += len;
                if (hc->head_bytes > HTTP_MAX_HEAD) {
                    log_info("http=%" PRIu64 " event=bad_request addr=%s status=431 "
                             "reason=\"head too large\"", hc->req->pub.id, hc->peer);
                    http_conn_fail(hc, 431, "head_too_large", "The request head is too large.");
                    break;
                }
            }
            continue;
        }
        if (err == HPE_PAUSED || (err == HPE_PAUSED_UPGRADE && hc->state == HTTP_S_PENDING)) {
            hc->in_pos += (size_t)(llhttp_get_error_pos(&hc->parser) - data);
            if (err == HPE_PAUSED)
                llhttp_resume(&hc->parser);
            else
                hc->close_after = 1;
            if (hc->state == HTTP_S_PENDING)
                http_conn_dispatch(hc);
            continue;
        }
        {
            int status = hc->err_status ? hc->err_status : http_status_for(err, data, len);

            log_info("http=%" PRIu64 " event=bad_request addr=%s status=%d reason=\"%s\"",
                     hc->req != NULL ? hc->req->pub.id : 0, hc->peer, status,
                     hc->err_status ? "limit" : llhttp_errno_name(err));
            switch (status) {
            case 413:
                http_conn_fail(hc, 413, "body_too_large", "The request body is too large.");
                break;
            case 431:
                http_conn_fail(hc, 431, "head_too_large", "The request head is too large.");
                break;
            case 501:
                http_conn_fail(hc, 501, "not_implemented", "This method or encoding is not "
                                                           "supported.");
                break;
            case 500:
                http_conn_fail(hc, 500, "internal", "Internal error.");
                break;
            default:
                http_conn_fail(hc, 400, "bad_request", "Malformed request.");
                break;
            }
        }
        break;
    }
    hc->processing = 0;
    if (hc->closing)
        return;
    if (hc->close_after && hc->state == HTTP_S_IDLE) {
        /* Answered what it was told to (stop, Connection: close) */
        http_conn_close(hc, 1);
        return;
    }
    /* Backpressure on input: stop reading while much is buffered or owed. */
    if (hc->wait_drain || hc->in_len - hc->in_pos > HTTP_IN_MAX)
        conn_read_stop(&hc->c);
    else
        conn_read_start(&hc->c);
}

void
http_respond(struct http_request *pub, int status, const char *content_type, const void *body,
             size_t len, const char *extra_headers)
{
    struct http_req *r = container_of(pub, struct http_req, pub);
    struct http_conn *hc = r->hc;
    int send_body, rc;

    if (r->in_abort)
        return;    /* freed when on_abort returns */
    if (r->detached || hc == NULL) {
        /* The client went away without on_abort set: drop the answer. */
        http_req_free(r);
        return;
    }
    if (hc->req != r || hc->state != HTTP_S_PENDING) {
        log_error("http=%" PRIu64 " event=bug what=\"answered twice\"", pub->id);
        return;
    }
    if (!r->keep_alive || hc->srv->stopping)
        hc->close_after = 1;
    send_body = !r->head_only && status != 304 && status != 204 && status >= 200;
    rc = http_write_answer(hc, status, content_type, body, len, extra_headers, send_body,
                           !hc->close_after, r->http10);
    http_log(hc, r, status);
    hc->req = NULL;
    http_req_free(r);
    if (rc < 0) {
        http_conn_close(hc, 0);
        return;
    }
    hc->state = HTTP_S_IDLE;
    if (hc->close_after) {
        if (!hc->processing)
            http_conn_close(hc, 1);
        return;
    }
    http_timer_set(hc);
    if (!hc->processing)
        http_conn_process(hc);
}

void
http_respond_json(struct http_request *req, int status, const char *json,
                  const char *extra_headers)
{
    http_respond(req, status, "application/json; charset=utf-8", json, strlen(json),
                 extra_headers);
}

/* JSON string contents of s (no quotes) into out; cut to fit. */
static void
http_json_escape(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (; *s != '\0' && o + 7 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch < 0x20) {
            out[o++] = '\\';
            out[o++] = 'u';
            out[o++] = '0';
            out[o++] = '0';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

void
http_respond_error(struct http_request *req, int status, const char *code, const char *message)
{
    char c[128], m[768], body[1024];

    http_json_escape(code != NULL ? code : "error", c, sizeof(c));
    http_json_escape(message != NULL ? message : http_status_text(status), m, sizeof(m));
    snprintf(body, sizeof(body), "{\"error\":\"%s\",\"message\":\"%s\"}", c, m);
    http_respond_json(req, status, body, NULL);
}

/* ---- the server ---- */

void
http_server_init(struct http_server *srv, uv_loop_t *loop)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
}

static void
http_conn_tls_done(struct conn *c, int status)
{
    struct http_conn *hc = c->data;

    if (status < 0)
        http_conn_close(hc, 0);
}

int
http_server_accept(struct http_server *srv, uv_stream_t *listener, SSL_CTX *tls_ctx)
{
    struct http_conn *hc;
    int rc;

    hc = calloc(1, sizeof(*hc));
    if (hc == NULL)
        return UV_ENOMEM;
    hc->srv = srv;
    rc = conn_init(srv->loop, &hc->c);
    if (rc != 0) {
        free(hc);
        return rc;
    }
    hc->c.data = hc;
    hc->c.on_read = http_conn_on_read;
    hc->c.on_error = http_conn_on_error;
    hc->c.on_drain = http_conn_on_drain;
    hc->c.on_close = http_conn_closed;
    uv_timer_init(srv->loop, &hc->timer);
    hc->timer.data = hc;
    hc->handles = 2;
    hc->tls = tls_ctx != NULL;
    hc->metrics_proto = hc->tls ? METRICS_HTTPS : METRICS_HTTP;
    llhttp_init(&hc->parser, HTTP_REQUEST, &http_settings);
    hc->parser.data = hc;
    conn_set_low_water(&hc->c, HTTP_WRITE_LOW, HTTP_WRITE_HIGH);
    hc->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = hc;
    srv->conns = hc;
    srv->nconns++;
    metrics_conn_open(hc->metrics_proto);
    util_strlcpy(hc->peer, "-", sizeof(hc->peer));

    rc = conn_accept(listener, &hc->c);
    if (rc == 0) {
        conn_peer_addr(&hc->c, hc->peer, sizeof(hc->peer), &hc->peer_port);
        rc = tls_ctx != NULL ? conn_tls_server(&hc->c, tls_ctx, http_conn_tls_done)
                             : conn_read_start(&hc->c);
    }
    if (rc != 0) {
        /* Its close callbacks free it: the caller has nothing to undo. */
        http_conn_close(hc, 0);
        return rc;
    }
    http_timer_set(hc);
    return 0;
}

void
http_server_stop(struct http_server *srv)
{
    struct http_conn *hc, *next;

    srv->stopping = 1;
    for (hc = srv->conns; hc != NULL; hc = next) {
        next = hc->next;
        if (hc->closing)
            continue;
        if (hc->state == HTTP_S_IDLE && hc->in_pos == hc->in_len)
            http_conn_close(hc, 1);
        else
            hc->close_after = 1;
    }
}

void
http_server_abort(struct http_server *srv)
{
    struct http_conn *hc, *next;

    srv->stopping = 1;
    for (hc = srv->conns; hc != NULL; hc = next) {
        next = hc->next;
        http_conn_close(hc, 0);
    }
}
