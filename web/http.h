/*
 * http.h - HTTP/1.1 requests and responses on a core/conn connection (TLS or
 * not), parsed by llhttp.  http.c is the only file that includes llhttp.h.
 *
 * A request is handed to a handler once its headers and body are complete.
 * The handler answers with exactly one http_respond*() call, at once or
 * later (a backend check, a long-poll, an e-mail being sent).  If the
 * connection goes away first, req->on_abort (if set) is called and the
 * handler must not touch req afterwards.  Requests on one connection are
 * answered in order; a pipelined request waits for the one before it.
 *
 * Bounds (a clear status, then close): request line + headers 16 KiB (431),
 * 64 headers (431), body 64 KiB (413), header read 30 s and keep-alive idle
 * 60 s (408 / close), malformed input (400).
 */
#ifndef MFA_HTTP_H
#define MFA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_HEAD (16 * 1024)
#define HTTP_MAX_BODY (64 * 1024)

struct http_conn;

struct http_header {
    char *name;          /* as sent; compare case-insensitively */
    char *value;
};

struct http_request {
    const char *method;  /* "GET", "POST", ... */
    char *path;          /* the path, percent-decoded, without the query; starts with '/' */
    char *query;         /* the raw query after '?', or "" */
    struct http_header headers[HTTP_MAX_HEADERS];
    int nheaders;
    char *body;          /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
    char peer[64];       /* the client's address (no port) */
    int peer_port;       /* and its port */
    int tls;             /* arrived over TLS */
    uint64_t id;         /* for logs */

    void *user;                                  /* the handler's, while pending */
    void (*on_abort)(struct http_request *req);  /* the connection went away first */

    struct http_conn *conn;                      /* private */
};

/* A header's value (first of that name, case-insensitive), or NULL. */
const char *http_header(const struct http_request *req, const char *name);

/* The address of ours the client connected to (getsockname); 0 or negative. */
int http_local_addr(const struct http_request *req, struct sockaddr_storage *out);

/* A cookie's value from the Cookie header(s) into out; 0, or -1 if absent or too long. */
int http_cookie(const struct http_request *req, const char *name, char *out, size_t outlen);

/* A query parameter, percent-decoded, into out; 0, or -1 if absent or too long. */
int http_query(const struct http_request *req, const char *name, char *out, size_t outlen);

/*
 * Answers the request.  extra_headers is NULL or whole header lines, each
 * ending in CRLF (e.g. "Set-Cookie: ...\r\n").  The security headers
 * (Content-Security-Policy, X-Content-Type-Options, Referrer-Policy,
 * X-Frame-Options, HSTS over TLS) and Cache-Control: no-store (unless
 * extra_headers sets Cache-Control) are added to every response.
 */
void http_respond(struct http_request *req, int status, const char *content_type,
                  const void *body, size_t len, const char *extra_headers);

/* Answers with a JSON text (application/json; charset=utf-8). */
void http_respond_json(struct http_request *req, int status, const char *json,
                       const char *extra_headers);

/* Answers {"error": code, "message": message} with the status. */
void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message);

/* The reason phrase of a status code ("Not Found"). */
const char *http_status_text(int status);

/* ---- Added by web.c's author (everything above is the agreed interface) ---- */

/*
 * Whether the request's Accept-Language ranks Chinese (zh, zh-*) at least as
 * high as English (en, en-*), by q-value, the earlier one winning a tie.
 * 1 also when the header is missing or names neither (the pages default to
 * zh-CN); 0 when English is preferred.
 */
int http_accept_lang_zh(const struct http_request *req);

/* "zh" or "en" for this request: the query's lang=zh|en if given, else
 * Accept-Language as http_accept_lang_zh decides. */
const char *http_lang(const struct http_request *req);

/* Default timeouts (http_server.head_timeout_ms / idle_timeout_ms when 0). */
#define HTTP_HEAD_TIMEOUT_MS (30 * 1000)
#define HTTP_IDLE_TIMEOUT_MS (60 * 1000)

/*
 * The server side that web.c (and the unit tests) drive: one per loop; it
 * owns its connections (core/conn + llhttp), not the listeners.
 *
 * Requests reach on_request one at a time per connection, in order.  The
 * connection is closed after the response when the client asked for it
 * (Connection: close, HTTP/1.0 without keep-alive), after an error status
 * of the HTTP layer itself (400, 408, 413, 431, 501), and while stopping.
 *
 * Request bodies: Content-Length or chunked (decoded, same 64 KiB bound);
 * "Expect: 100-continue" is answered with 100 Continue when the announced
 * length fits.  Any other Transfer-Encoding is 501, a method outside GET,
 * HEAD, POST, PUT, DELETE, OPTIONS, PATCH is 501.
 *
 * If on_abort is NULL when the connection goes away with the handler's
 * answer still owed, the request stays alive, detached, until the handler
 * answers (the answer is then dropped): set on_abort for anything that may
 * never answer (long polls).
 */
struct http_server {
    uv_loop_t *loop;
    void (*on_request)(struct http_server *srv, struct http_request *req);
    /* Optional: a connection has fully closed (stop waits for nconns == 0). */
    void (*on_conn_closed)(struct http_server *srv);
    void *data;                       /* the owner's */
    uint64_t head_timeout_ms;         /* a request head (and body) must arrive within */
    uint64_t idle_timeout_ms;         /* a keep-alive connection may idle this long */
    uint64_t id_base;                 /* request ids are id_base | counter */

    /* private: http.c's */
    uint64_t next_id;
    struct http_conn *conns;          /* doubly linked */
    int nconns;
    int stopping;
};

/* Zeroes srv and sets the loop; set the callbacks and timeouts after. */
void http_server_init(struct http_server *srv, uv_loop_t *loop);

/*
 * Accepts one connection from listener.  tls_ctx NULL: cleartext; else TLS
 * with that context (borrowed: the connection's SSL object takes its own
 * reference).  0, or a negative UV error (for logs: the connection, if
 * begun, closes and frees itself).
 */
int http_server_accept(struct http_server *srv, uv_stream_t *listener, SSL_CTX *tls_ctx);

/*
 * Graceful stop: idle connections close now, one waiting for its answer
 * closes after it (its answer says Connection: close), one in the middle
 * of a request finishes it within the head timeout and closes likewise.
 */
void http_server_stop(struct http_server *srv);

/* Closes every connection now (conn_abort); pending requests get on_abort. */
void http_server_abort(struct http_server *srv);

#endif
