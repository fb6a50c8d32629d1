/*
 * conn.c - see conn.h.  Owns a connection's socket handle, its SSL object
 * and its BIO, its write requests and its close lifecycle; owns no
 * protocol state and not the struct's memory.
 *
 * TLS runs over one small BIO of our own (conn_bio_*), not over the socket:
 * the engine reads the ciphertext straight from the loop's read buffer
 * (c->tls_in, set for the duration of one pump), and what it writes
 * (handshake flights, records, alerts, tickets) is appended to c->tls_out,
 * a write request in the making, sent in one write at the end of each batch
 * of SSL operations.  Unlike a pair of memory BIOs, this copies nothing
 * twice and keeps no buffer while a connection is idle.
 *
 * Re-entrancy: every owner callback may close or abort the conn.  uv_close
 * defers its callback to the loop, so the struct stays valid until on_close;
 * after each owner callback conn.c checks CONN_F_CLOSING and stops.
 */
#include "core/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/tls.h"
#include "core/util.h"

enum {
    CONN_F_READING = 1u << 0,     /* uv_read_start is in effect (owner's reads) */
    CONN_F_TLS = 1u << 1,         /* an SSL object runs this conn */
    CONN_F_HANDSHAKING = 1u << 2, /* TLS handshake not finished */
    CONN_F_TLS_FAILED = 1u << 3,  /* fatal TLS error: no more SSL calls but SSL_free */
    CONN_F_CLOSING = 1u << 4,     /* conn_close or conn_abort was called */
    CONN_F_EOF = 1u << 5,         /* the peer's FIN was read */
    CONN_F_ABOVE_HIGH = 1u << 6,  /* queued exceeded high water; on_drain owed */
    CONN_F_LINGER = 1u << 7,      /* c->linger was initialized */
    CONN_F_CONNECTING = 1u << 8,  /* uv_tcp_connect pending */
    CONN_F_TLS_EOF = 1u << 9,     /* the peer's close_notify was read */
    CONN_F_PEER_DONE = 1u << 10,  /* conn_peer_done: the peer sends nothing more */
    CONN_F_GREETED = 1u << 11,    /* conn_connect_greeted: cb waits for the first bytes */
};

/* Default water marks: a few TLS records either way. */
#define CONN_LOW_WATER_DEFAULT (64 * 1024)
#define CONN_HIGH_WATER_DEFAULT (256 * 1024)

/* A write request and its bytes, in one allocation. */
struct conn_wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void conn_close_handles(struct conn *c);

static struct conn *
conn_from_stream(uv_stream_t *stream)
{
    return container_of((uv_tcp_t *)stream, struct conn, tcp);
}

int
conn_init(uv_loop_t *loop, struct conn *c)
{
    int r;

    c->ssl = NULL;
    c->tls_in = NULL;
    c->tls_in_len = 0;
    c->tls_out = NULL;
    c->tls_out_cap = 0;
    c->tls_done = NULL;
    c->connect_cb = NULL;
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
    c->low_water = CONN_LOW_WATER_DEFAULT;
    c->high_water = CONN_HIGH_WATER_DEFAULT;
    c->flags = 0;
    c->handles = 0;
    c->depth = 0;
    c->uv_writes = 0;
    c->bytes_in = c->bytes_out = 0;

    r = uv_tcp_init(loop, &c->tcp);
    if (r < 0)
        return r;
    c->handles = 1;
    return 0;
}

int
conn_accept(uv_stream_t *server, struct conn *c)
{
    int r;

    /*
     * The greeting must not wait for a delayed ACK: TCP_NODELAY.  Linux
     * copies it from the listening socket (listen_open sets it there), so
     * no setsockopt per connection.
     */
    r = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (r < 0)
        return r;
    return 0;
}

static void
conn_on_connect(uv_connect_t *req, int status)
{
    struct conn *c = container_of(req, struct conn, connect_req);

    c->flags &= ~CONN_F_CONNECTING;
    if (c->flags & CONN_F_CLOSING)
        return;
    if (c->connect_cb != NULL)
        c->connect_cb(c, status);
}

int
conn_connect(struct conn *c, const struct sockaddr *addr, conn_status_cb cb)
{
    int r;

    if (c->flags & CONN_F_CLOSING)
        return UV_ECANCELED;
    c->connect_cb = cb;
    /* Without a socket yet, libuv records the flag and applies it as
     * uv_tcp_connect makes the socket. */
    uv_tcp_nodelay(&c->tcp, 1);
    r = uv_tcp_connect(&c->connect_req, &c->tcp, addr, conn_on_connect);
    if (r < 0)
        return r;
    c->flags |= CONN_F_CONNECTING;
    /*
     * Reading starts with the connect, so that the socket enters epoll once
     * for both (libuv reports the connect first, reads only after it);
     * starting it in cb would cost two more epoll_ctl calls.
     */
    return conn_read_start(c);
}

int
conn_connect_greeted(struct conn *c, const struct sockaddr *addr, conn_status_cb cb)
{
    socklen_t len;
    int fd, r;

    if (c->flags & CONN_F_CLOSING)
        return UV_ECANCELED;
    if (addr->sa_family == AF_INET)
        len = sizeof(struct sockaddr_in);
    else if (addr->sa_family == AF_INET6)
        len = sizeof(struct sockaddr_in6);
    else
        return conn_connect(c, addr, cb);
    fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return conn_connect(c, addr, cb);
    /*
     * Anything but "under way" (a refusal comes later, through the read):
     * let uv_tcp_connect do it again and report it as it always does.
     */
    if (connect(fd, addr, len) < 0 && errno != EINPROGRESS) {
        close(fd);
        return conn_connect(c, addr, cb);
    }
    /* uv_tcp_open applies the flag to the socket. */
    uv_tcp_nodelay(&c->tcp, 1);
    r = uv_tcp_open(&c->tcp, fd);
    if (r < 0) {
        close(fd);    /* not libuv's unless uv_tcp_open succeeded */
        return r;
    }
    c->connect_cb = cb;
    c->flags |= CONN_F_CONNECTING | CONN_F_GREETED;
    return conn_read_start(c);
}

/*
 * One buffer per thread, which is one per loop: libuv calls alloc, read(2)
 * and the read callback back to back for one stream at a time, and conn.c
 * hands the bytes on (to the owner or to the TLS engine) before returning, so idle
 * connections hold no read buffer at all.
 */
static void
conn_on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static _Thread_local char conn_rbuf[CONN_READ_BUF];

    buf->base = conn_rbuf;
    buf->len = sizeof(conn_rbuf);
}

int
conn_read_start(struct conn *c)
{
    int r;

    if (c->flags & CONN_F_CLOSING)
        return UV_ECANCELED;
    if (c->flags & CONN_F_READING)
        return 0;
    r = uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read);
    if (r < 0)
        return r;
    c->flags |= CONN_F_READING;
    return 0;
}

void
conn_read_stop(struct conn *c)
{
    /* While closing, reads belong to the linger phase, not to the owner. */
    if (c->flags & CONN_F_CLOSING)
        return;
    if (c->flags & CONN_F_READING) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->flags &= ~CONN_F_READING;
    }
}

/* Reports an error to the owner unless it has already given up the conn. */
static void
conn_report_error(struct conn *c, int status)
{
    if (c->flags & CONN_F_CLOSING)
        return;
    if (c->on_error != NULL)
        c->on_error(c, status);
}

size_t
conn_write_queued(const struct conn *c)
{
    return c->tcp.write_queue_size + c->pend_len + (c->tls_out != NULL ? c->tls_out->len : 0);
}

/* --- the BIO between the engine and the socket ---------------------------- */

/* Reads ciphertext from what the current pump was given. */
static int
conn_bio_read(BIO *b, char *out, int outl)
{
    struct conn *c = BIO_get_data(b);
    size_t n;

    BIO_clear_retry_flags(b);
    if (c->tls_in_len == 0 || outl <= 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    n = c->tls_in_len < (size_t)outl ? c->tls_in_len : (size_t)outl;
    memcpy(out, c->tls_in, n);
    c->tls_in += n;
    c->tls_in_len -= n;
    return (int)n;
}

/* Appends ciphertext to the write being made; it never blocks. */
static int
conn_bio_write(BIO *b, const char *in, int inl)
{
    struct conn *c = BIO_get_data(b);
    struct conn_wreq *w = c->tls_out;
    size_t need;

    BIO_clear_retry_flags(b);
    if (inl <= 0)
        return 0;
    need = (w != NULL ? w->len : 0) + (size_t)inl;
    if (w == NULL || need > c->tls_out_cap) {
        size_t cap = c->tls_out_cap ? c->tls_out_cap : 1024;

        while (cap < need)
            cap *= 2;
        w = realloc(w, sizeof(*w) + cap);
        if (w == NULL)
            return -1;    /* the old request is still in c->tls_out */
        if (c->tls_out == NULL)
            w->len = 0;
        c->tls_out = w;
        c->tls_out_cap = cap;
    }
    memcpy(w->data + w->len, in, (size_t)inl);
    w->len += (size_t)inl;
    return inl;
}

static long
conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct conn *c = BIO_get_data(b);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:      /* the batch's end sends; nothing to do here */
        return 1;
    case BIO_CTRL_PENDING:    /* ciphertext not yet read by the engine */
        return (long)c->tls_in_len;
    case BIO_CTRL_WPENDING:   /* ciphertext not yet sent */
        return c->tls_out != NULL ? (long)c->tls_out->len : 0;
    default:
        return 0;
    }
}

static BIO_METHOD *conn_bio_method;
static uv_once_t conn_bio_once = UV_ONCE_INIT;

/* Made once per process and never changed: shared by every thread. */
static void
conn_bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mfagate conn");

    if (m != NULL && (!BIO_meth_set_write(m, conn_bio_write) ||
                      !BIO_meth_set_read(m, conn_bio_read) ||
                      !BIO_meth_set_ctrl(m, conn_bio_ctrl))) {
        BIO_meth_free(m);
        m = NULL;
    }
    conn_bio_method = m;
}

static BIO *
conn_bio_new(struct conn *c)
{
    BIO *b;

    uv_once(&conn_bio_once, conn_bio_method_init);
    if (conn_bio_method == NULL || (b = BIO_new(conn_bio_method)) == NULL)
        return NULL;
    BIO_set_data(b, c);
    BIO_set_init(b, 1);
    return b;
}

static void
conn_tls_out_free(struct conn *c)
{
    free(c->tls_out);
    c->tls_out = NULL;
    c->tls_out_cap = 0;
}

void
conn_set_low_water(struct conn *c, size_t low, size_t high)
{
    c->low_water = low;
    c->high_water = high < low ? low : high;
}

static void
conn_on_write(uv_write_t *req, int status)
{
    struct conn_wreq *w = container_of(req, struct conn_wreq, req);
    struct conn *c = conn_from_stream(req->handle);

    free(w);
    if (c->flags & CONN_F_CLOSING)
        return;
    if (status < 0) {
        conn_report_error(c, status);
        return;
    }
    if ((c->flags & CONN_F_ABOVE_HIGH) && conn_write_queued(c) <= c->low_water) {
        c->flags &= ~CONN_F_ABOVE_HIGH;
        if (c->on_drain != NULL)
            c->on_drain(c, 0);
    }
}

/* Queues w (len bytes filled in, from off on) on the socket; frees it on failure. */
static int
conn_wreq_send(struct conn *c, struct conn_wreq *w, size_t off)
{
    uv_buf_t b = uv_buf_init(w->data + off, (unsigned int)(w->len - off));
    int r;

    r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write);
    if (r < 0) {
        free(w);
        return r;
    }
    return 0;
}

/*
 * What the kernel takes at once goes straight to it: no request, no copy,
 * and none of the epoll_ctl call libuv 1.44 makes after every completed
 * uv_write.  Returns the bytes written - 0 when the socket is full or a
 * write is still queued (order must hold) - or a negative error when the
 * connection is broken.
 */
static ssize_t
conn_try_send(struct conn *c, const char *data, size_t len)
{
    uv_os_fd_t fd;
    ssize_t n;

    c->uv_writes++;
    /*
     * What uv_try_write does, with MSG_NOSIGNAL: a peer that reset the
     * connection must not raise SIGPIPE, whether or not the program
     * ignores it.
     */
    if (c->tcp.write_queue_size != 0 || (c->flags & CONN_F_CONNECTING) ||
        uv_is_closing((uv_handle_t *)&c->tcp) || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return 0;
    do
        n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
        return n;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS ? 0 : -errno;
}

/* Sends a copy of data: what the kernel does not take now is queued. */
static int
conn_send(struct conn *c, const char *data, size_t len)
{
    struct conn_wreq *w;
    ssize_t done = conn_try_send(c, data, len);

    if (done < 0)
        return (int)done;
    if ((size_t)done == len)
        return 0;
    w = malloc(sizeof(*w) + (len - (size_t)done));
    if (w == NULL)
        return UV_ENOMEM;
    w->len = len - (size_t)done;
    memcpy(w->data, data + done, w->len);
    return conn_wreq_send(c, w, 0);
}

/*
 * Sends everything the TLS engine wrote, in one write, unless a batch is
 * running (depth > 0): then its end does it, so that a handshake flight,
 * the session tickets and the owner's first reply share one segment.
 */
static int
conn_tls_flush(struct conn *c, int force)
{
    struct conn_wreq *w = c->tls_out;
    ssize_t done;

    if (w == NULL || w->len == 0 || (c->depth > 0 && !force))
        return 0;
    /* The request goes to the socket (or away): the next write starts anew. */
    c->tls_out = NULL;
    c->tls_out_cap = 0;
    if (uv_is_closing((uv_handle_t *)&c->tcp)) {
        free(w);
        return UV_ECANCELED;
    }
    done = conn_try_send(c, w->data, w->len);
    if (done < 0 || (size_t)done == w->len) {
        free(w);
        return done < 0 ? (int)done : 0;
    }
    return conn_wreq_send(c, w, (size_t)done);
}

/* Logs why OpenSSL failed, at info: a peer can cause it; never the data. */
static void
conn_tls_log_failure(struct conn *c, const char *op, int ssl_err)
{
    char reason[256], peer[64];

    if (ssl_err == SSL_ERROR_SSL)
        tls_error_text(reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "ssl_error=%d", ssl_err);
    if (conn_peer_addr(c, peer, sizeof(peer), NULL) < 0)
        util_strlcpy(peer, "-", sizeof(peer));
    log_info("event=tls_failed op=%s peer=%s reason=\"%s\"", op, peer, reason);
    ERR_clear_error();
}

/* Encrypts len bytes into c->tls_out; 0 or UV_EPROTO. */
static int
conn_tls_encrypt(struct conn *c, const void *data, size_t len)
{
    size_t written = 0;
    int r;

    ERR_clear_error();
    /* Memory BIOs grow, so without partial writes SSL_write takes it all. */
    r = SSL_write_ex(c->ssl, data, len, &written);
    if (r != 1 || written != len) {
        conn_tls_log_failure(c, "write", SSL_get_error(c->ssl, r));
        c->flags |= CONN_F_TLS_FAILED;
        return UV_EPROTO;
    }
    return 0;
}

/* Appends to the plaintext that waits for the end of the handshake. */
static int
conn_pend_append(struct conn *c, const void *data, size_t len)
{
    if (c->pend_cap - c->pend_len < len) {
        size_t cap = c->pend_cap ? c->pend_cap : 1024;
        char *p;

        while (cap - c->pend_len < len)
            cap *= 2;
        p = realloc(c->pend, cap);
        if (p == NULL)
            return UV_ENOMEM;
        c->pend = p;
        c->pend_cap = cap;
    }
    memcpy(c->pend + c->pend_len, data, len);
    c->pend_len += len;
    return 0;
}

static void
conn_pend_free(struct conn *c)
{
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
}

int
conn_write(struct conn *c, const void *data, size_t len)
{
    int r;

    if (c->flags & CONN_F_CLOSING)
        return UV_EPIPE;
    if (len == 0)
        return 0;
    /* uv_buf_t and the BIO calls count in int; nothing we send is that big. */
    if (len > INT_MAX)
        return UV_EINVAL;
    if (c->flags & CONN_F_TLS) {
        if (c->flags & CONN_F_TLS_FAILED)
            return UV_EPROTO;
        if (c->flags & CONN_F_HANDSHAKING) {
            r = conn_pend_append(c, data, len);
        } else {
            r = conn_tls_encrypt(c, data, len);
            if (r == 0)
                r = conn_tls_flush(c, 0);
        }
    } else {
        r = conn_send(c, data, len);
    }
    if (r < 0)
        return r;
    c->bytes_out += len;
    if (conn_write_queued(c) > c->high_water)
        c->flags |= CONN_F_ABOVE_HIGH;
    return 0;
}

/*
 * One step of the handshake: 1 when it completed (and the owner was told),
 * 0 when it needs more bytes, -1 when it failed (and the owner was told).
 */
static int
conn_tls_handshake(struct conn *c)
{
    conn_status_cb done = c->tls_done;
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->flags &= ~CONN_F_HANDSHAKING;
        /*
         * What the owner wrote meanwhile (the greeting) is encrypted behind
         * the session tickets the server just wrote, so both leave together.
         */
        if (c->pend_len > 0) {
            r = conn_tls_encrypt(c, c->pend, c->pend_len);
            conn_pend_free(c);
            if (r < 0) {
                if (done != NULL)
                    done(c, r);
                return -1;
            }
        }
        conn_pend_free(c);
        if (done != NULL)
            done(c, 0);
        return 1;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    conn_tls_log_failure(c, "handshake", e);
    c->flags &= ~CONN_F_HANDSHAKING;
    c->flags |= CONN_F_TLS_FAILED;
    conn_pend_free(c);
    if (done != NULL)
        done(c, UV_EPROTO);
    return -1;
}

/*
 * Runs the engine over c->tls_in: the handshake first, then every
 * record that can be decrypted, each chunk handed to on_read.  Sends c->tls_out
 * once at the end (alerts included, so a refused peer learns why).
 */
static void
conn_tls_pump(struct conn *c)
{
    char plain[CONN_READ_BUF];
    size_t n;
    int e, r;

    c->depth++;
    if ((c->flags & CONN_F_HANDSHAKING) && conn_tls_handshake(c) <= 0)
        goto out;
    while (!(c->flags & (CONN_F_CLOSING | CONN_F_TLS_FAILED))) {
        ERR_clear_error();
        if (SSL_read_ex(c->ssl, plain, sizeof(plain), &n) == 1) {
            c->bytes_in += n;
            if (c->on_read != NULL)
                c->on_read(c, plain, n);
            continue;
        }
        e = SSL_get_error(c->ssl, 0);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            /* The peer's close_notify: the same as its FIN for the owner. */
            c->flags |= CONN_F_TLS_EOF;
            conn_report_error(c, UV_EOF);
            break;
        }
        conn_tls_log_failure(c, "read", e);
        c->flags |= CONN_F_TLS_FAILED;
        conn_report_error(c, UV_EPROTO);
        break;
    }
out:
    c->depth--;
    r = conn_tls_flush(c, 0);
    /* A broken connection found while sending: the owner decides. */
    if (r < 0 && r != UV_ECANCELED)
        conn_report_error(c, r);
}

static void
conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = conn_from_stream(stream);

    if (nread == 0)
        return;
    if (c->flags & CONN_F_CLOSING) {
        /*
         * Closing: whatever the peer sends is discarded.  Once our FIN is
         * out (the linger phase) its EOF ends the conn.  Before that, the
         * shutdown still waits for our queued writes: remember the EOF and
         * let conn_on_shutdown close (an error ends it at once: the
         * writes would fail anyway).
         */
        if (nread == UV_EOF && !(c->flags & CONN_F_LINGER)) {
            c->flags |= CONN_F_EOF;
            c->flags &= ~CONN_F_READING;
        } else if (nread < 0) {
            conn_close_handles(c);
        }
        return;
    }
    if (c->flags & CONN_F_GREETED) {
        /* conn_connect_greeted: the first bytes, or the failure, tell. */
        c->flags &= ~(CONN_F_GREETED | CONN_F_CONNECTING);
        if (nread < 0) {
            if (nread == UV_EOF)
                c->flags |= CONN_F_EOF;
            conn_read_stop(c);
        }
        if (c->connect_cb != NULL)
            c->connect_cb(c, nread < 0 ? (int)nread : 0);
        if (nread < 0 || (c->flags & CONN_F_CLOSING))
            return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            c->flags |= CONN_F_EOF;
        /* libuv stops on EOF by itself; on an error, stop repeats. */
        conn_read_stop(c);
        if (c->flags & CONN_F_HANDSHAKING) {
            c->flags &= ~CONN_F_HANDSHAKING;
            c->flags |= CONN_F_TLS_FAILED;
            conn_pend_free(c);
            if (c->tls_done != NULL)
                c->tls_done(c, (int)nread);
        } else {
            conn_report_error(c, (int)nread);
        }
        return;
    }
    if (!(c->flags & CONN_F_TLS)) {
        c->bytes_in += (uint64_t)nread;
        if (c->on_read != NULL)
            c->on_read(c, buf->base, (size_t)nread);
        return;
    }
    /*
     * After a fatal TLS error or the peer's close_notify nothing more can
     * be decrypted (and the owner, told once, is closing): ignore the rest.
     */
    if (c->flags & (CONN_F_TLS_FAILED | CONN_F_TLS_EOF))
        return;
    /*
     * The engine reads these bytes in place.  The pump runs until it
     * wants more, so it takes them all, unless the conn failed or is
     * closing, and then the rest does not matter.
     */
    c->tls_in = buf->base;
    c->tls_in_len = (size_t)nread;
    conn_tls_pump(c);
    c->tls_in = NULL;
    c->tls_in_len = 0;
}

/* Is name an IP address literal (then it is no SNI host name)? */
static int
conn_is_ip_literal(const char *name)
{
    unsigned char tmp[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
}

static int
conn_tls_start(struct conn *c, SSL_CTX *ctx, int server, const char *sni,
               SSL_SESSION *session, conn_status_cb done)
{
    SSL *ssl = NULL;
    BIO *bio = NULL;
    int r = UV_ENOMEM, e;

    if (c->flags & CONN_F_CLOSING)
        return UV_ECANCELED;
    if (c->flags & CONN_F_TLS)
        return UV_EALREADY;
    ERR_clear_error();
    ssl = SSL_new(ctx);
    bio = conn_bio_new(c);
    if (ssl == NULL || bio == NULL)
        goto fail;
    SSL_set_bio(ssl, bio, bio); /* ssl owns the BIO (one reference) from here */
    bio = NULL;

    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (sni != NULL && sni[0] != '\0') {
            int ip = conn_is_ip_literal(sni);

            /* RFC 6066: SNI carries host names only, never addresses. */
            if (!ip && !SSL_set_tlsext_host_name(ssl, sni))
                goto fail_proto;
            if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) {
                if (ip ? !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), sni)
                       : !SSL_set1_host(ssl, sni))
                    goto fail_proto;
            }
        }
        if (session != NULL && !SSL_set_session(ssl, session))
            goto fail_proto;
    }

    c->ssl = ssl;
    c->tls_done = done;
    c->flags |= CONN_F_TLS | CONN_F_HANDSHAKING;

    if (!server) {
        /* The ClientHello: a failure here is local, so report it by return. */
        r = SSL_do_handshake(ssl);
        e = SSL_get_error(ssl, r);
        if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            conn_tls_log_failure(c, "client_hello", e);
            c->flags &= ~CONN_F_HANDSHAKING;
            c->flags |= CONN_F_TLS_FAILED;
            return UV_EPROTO;
        }
        r = conn_tls_flush(c, 0);
        if (r < 0)
            return r;
    }
    return conn_read_start(c);

fail_proto:
    r = UV_EPROTO;
fail:
    ERR_clear_error();
    BIO_free(bio);
    SSL_free(ssl);
    return r;
}

int
conn_tls_server(struct conn *c, SSL_CTX *ctx, conn_status_cb done)
{
    return conn_tls_start(c, ctx, 1, NULL, NULL, done);
}

int
conn_tls_client(struct conn *c, SSL_CTX *ctx, const char *sni, conn_status_cb done)
{
    return conn_tls_start(c, ctx, 0, sni, NULL, done);
}

int
conn_tls_client_session(struct conn *c, SSL_CTX *ctx, const char *sni, SSL_SESSION *session,
                        conn_status_cb done)
{
    return conn_tls_start(c, ctx, 0, sni, session, done);
}

int
conn_is_tls(const struct conn *c)
{
    return (c->flags & CONN_F_TLS) != 0;
}

SSL *
conn_ssl(const struct conn *c)
{
    return c->ssl;
}

int
conn_is_closing(const struct conn *c)
{
    return (c->flags & CONN_F_CLOSING) != 0;
}

static void
conn_on_handle_close(uv_handle_t *h)
{
    struct conn *c;

    if (h->type == UV_TCP)
        c = container_of((uv_tcp_t *)h, struct conn, tcp);
    else
        c = container_of((uv_timer_t *)h, struct conn, linger);
    if (--c->handles > 0)
        return;
    SSL_free(c->ssl); /* and its BIO */
    c->ssl = NULL;
    conn_tls_out_free(c);
    conn_pend_free(c);
    if (c->on_close != NULL)
        c->on_close(c);
}

/* Closes every handle the conn has; on_close follows when the last is closed. */
static void
conn_close_handles(struct conn *c)
{
    c->flags |= CONN_F_CLOSING;
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_on_handle_close);
    if ((c->flags & CONN_F_LINGER) && !uv_is_closing((uv_handle_t *)&c->linger))
        uv_close((uv_handle_t *)&c->linger, conn_on_handle_close);
}

static void
conn_on_linger_timeout(uv_timer_t *t)
{
    conn_close_handles(container_of(t, struct conn, linger));
}

/*
 * Everything we queued is with the kernel and our FIN follows it.  Closing
 * now, with unread input in the socket, would send an RST, and an RST makes
 * the peer's kernel drop what it has not yet read of ours: so read and
 * discard until the peer's EOF, for a bounded time.
 */
static void
conn_linger(struct conn *c, int status)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (status < 0 || (c->flags & CONN_F_EOF))
        goto close;
    if (uv_timer_init(c->tcp.loop, &c->linger) < 0)
        goto close;
    c->handles++;
    c->flags |= CONN_F_LINGER;
    if (uv_timer_start(&c->linger, conn_on_linger_timeout, CONN_LINGER_MS, 0) < 0)
        goto close;
    /* conn_close left reads on when they were (no epoll_ctl round trip). */
    if (!(c->flags & CONN_F_READING)) {
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_on_alloc, conn_on_read) < 0)
            goto close;
        c->flags |= CONN_F_READING;
    }
    return;

close:
    conn_close_handles(c);
}

static void
conn_on_shutdown(uv_shutdown_t *req, int status)
{
    conn_linger(container_of(req, struct conn, shutdown_req), status);
}

void
conn_close(struct conn *c)
{
    if (c->flags & CONN_F_CLOSING)
        return;
    /*
     * Reads stay on if they are: from here conn_on_read discards what
     * arrives and watches for the peer's EOF, which the linger phase below
     * waits for anyway.  Stopping and restarting them would cost epoll_ctl
     * calls on every close.
     */
    c->flags |= CONN_F_CLOSING;
    /* Plaintext for a handshake that will not finish cannot be sent. */
    conn_pend_free(c);
    if ((c->flags & CONN_F_TLS) && !(c->flags & (CONN_F_HANDSHAKING | CONN_F_TLS_FAILED))) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    /* Even inside a batch: uv_shutdown below refuses later writes. */
    conn_tls_flush(c, 1);
    /*
     * The peer has already sent its FIN (so nothing unread can turn our
     * close into a reset) and every byte is in the kernel: close() sends
     * our FIN after it, no shutdown round or linger needed.  The common
     * end of a proxied session: the backend says BYE and closes.  The
     * same when the owner knows the peer is done (conn_peer_done): its
     * FIN will reach a closed socket, which the kernel handles alone, so
     * neither a linger timer nor another loop turn is spent waiting for it.
     */
    if ((c->flags & (CONN_F_EOF | CONN_F_PEER_DONE)) && c->tcp.write_queue_size == 0 &&
        !(c->flags & CONN_F_CONNECTING)) {
        conn_close_handles(c);
        return;
    }
    /* A pending connect has nothing to flush; uv_close cancels it. */
    if (c->flags & CONN_F_CONNECTING) {
        conn_close_handles(c);
        return;
    }
    /*
     * Every byte is already in the kernel (the usual case: libuv writes at
     * once when it can): our FIN goes now.  uv_shutdown would wait for the
     * socket to be writable first, two epoll_ctl calls and a loop turn.
     */
    if (c->tcp.write_queue_size == 0) {
        uv_os_fd_t fd;

        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
            conn_linger(c, shutdown(fd, SHUT_WR) == 0 ? 0 : UV_EPIPE);
            return;
        }
    }
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_on_shutdown) < 0)
        conn_close_handles(c);
}

void
conn_peer_done(struct conn *c)
{
    c->flags |= CONN_F_PEER_DONE;
}

void
conn_ack_now(struct conn *c)
{
    uv_os_fd_t fd;
    int on = 1;

    /* Not sticky: the kernel goes back to delaying ACKs by itself. */
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
}

void
conn_abort(struct conn *c)
{
    conn_pend_free(c);
    conn_close_handles(c);
}

int
conn_peer_addr(struct conn *c, char *out, size_t outlen, int *port)
{
    struct sockaddr_storage ss;
    struct sockaddr_in v4;
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    int len = sizeof(ss), r;

    r = uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len);
    if (r < 0)
        return r;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;

        /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memset(&v4, 0, sizeof(v4));
            v4.sin_family = AF_INET;
            v4.sin_port = s6->sin6_port;
            memcpy(&v4.sin_addr, &s6->sin6_addr.s6_addr[12], 4);
            sa = (const struct sockaddr *)&v4;
        }
    }
    if (port != NULL)
        *port = ntohs(sa->sa_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                               : ((const struct sockaddr_in6 *)sa)->sin6_port);
    return uv_ip_name(sa, out, outlen);
}
