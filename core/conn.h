/*
 * conn.h - a TCP connection with optional TLS through OpenSSL (over a BIO of its own).
 *
 * Owns the socket handle, the SSL object and its BIOs, the write queue and
 * the close lifecycle.  Does not own the memory of struct conn (its owner,
 * usually a session, frees it in on_close) nor any protocol state.
 *
 * Callbacks run on the loop's thread.  Inside any of them the owner may call
 * conn_close, conn_abort, conn_read_stop or conn_write on this conn: the
 * memory stays valid until on_close, which is always called from the loop,
 * never from inside another conn_* call.
 */
#ifndef MFA_CONN_H
#define MFA_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>
#include <uv.h>

struct conn;
struct conn_wreq;

typedef void (*conn_read_cb)(struct conn *c, const char *data, size_t len); /* plaintext bytes */
typedef void (*conn_status_cb)(struct conn *c, int status); /* 0 or a negative UV error */

/* Bytes read from the socket at a time (one TLS record fits). */
#define CONN_READ_BUF (16 * 1024)
/* How long a graceful close keeps reading (and discarding) after its FIN. */
#define CONN_LINGER_MS 2000

struct conn {
    uv_tcp_t tcp;             /* first member; tcp.data is unused: use container_of or c->data */
    void *data;               /* the owner (a session) */
    conn_read_cb on_read;     /* plaintext arrived */
    conn_status_cb on_error;  /* EOF (UV_EOF), reset, TLS failure: the owner decides (usually conn_close) */
    conn_status_cb on_drain;  /* the write queue fell to/below low water after being above high */
    void (*on_close)(struct conn *c); /* the handle is fully closed: the owner may free the memory now */

    /* private: only conn.c touches these. */
    SSL *ssl;                 /* NULL until conn_tls_server/client; owns our BIO */
    const char *tls_in;       /* ciphertext the engine may read now (during a pump) */
    size_t tls_in_len;
    struct conn_wreq *tls_out; /* ciphertext written by the engine, not yet sent */
    size_t tls_out_cap;
    conn_status_cb tls_done;  /* handshake outcome */
    conn_status_cb connect_cb;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    uv_timer_t linger;        /* bounds the graceful close; initialized only then */
    char *pend;               /* plaintext written before the handshake completed */
    size_t pend_len, pend_cap;
    size_t low_water, high_water;
    unsigned flags;           /* CONN_F_* in conn.c */
    int handles;              /* handles open, on_close when it falls to 0 */
    int depth;                /* > 0 while conn.c runs a batch: flush once at its end */
    uint64_t uv_writes;       /* writes to the socket started, for tests and stats */

    uint64_t bytes_in, bytes_out; /* plaintext counters */
};

/*
 * uv_tcp_init.  Resets the private fields and the counters; leaves data and
 * the callbacks alone, so the owner may set them before or after.  If it
 * fails there is nothing to close; once it succeeded, conn_close or
 * conn_abort must end the conn.
 */
int conn_init(uv_loop_t *loop, struct conn *c);
/*
 * uv_accept into c (conn_init'ed on the server's loop).  TCP_NODELAY comes
 * from the listening socket (listen_open sets it; Linux passes it on).
 */
int conn_accept(uv_stream_t *server, struct conn *c);
/*
 * Connects with TCP_NODELAY; cb(c, 0 or error) unless the conn is closed
 * first.  Reading starts with the connect (on_read only ever after
 * cb(c, 0)); conn_read_stop in cb if the owner does not want bytes yet.
 */
int conn_connect(struct conn *c, const struct sockaddr *addr, conn_status_cb cb);
/*
 * The same for a server that speaks first (a mail greeting): cb(c, 0) comes
 * with the server's first bytes, right before on_read gets them; cb(c, <0)
 * if the connection fails or ends first.  libuv's connect watches for
 * writability, then reads SO_ERROR and re-arms epoll for reads only: three
 * system calls and a loop turn per connection that this skips (the socket
 * is made and connected here, then handed to libuv).  Writes before cb are
 * queued until the socket can take them.  Never for a client-speaks-first
 * protocol (TLS): cb would wait for bytes that never come.
 */
int conn_connect_greeted(struct conn *c, const struct sockaddr *addr, conn_status_cb cb);

int conn_read_start(struct conn *c);
/*
 * Stops reading (backpressure); safe to call twice.  With TLS, plaintext
 * already decrypted from the chunk being processed is still delivered (at
 * most about one read buffer), so that nothing stays stranded in the engine.
 */
void conn_read_stop(struct conn *c);

/* Copies; encrypts if TLS is on; writes go out in order.  0 or negative. */
int conn_write(struct conn *c, const void *data, size_t len);
/*
 * Bytes queued and not yet handed to the kernel (encrypted if TLS), plus
 * what waits for the handshake or for the end of the current batch.
 */
size_t conn_write_queued(const struct conn *c);
/* on_drain fires when queued drops <= low after having exceeded high. */
void conn_set_low_water(struct conn *c, size_t low, size_t high);

/*
 * Starts TLS as server on an accepted (or plaintext-so-far) conn, and starts
 * reading.  Bytes read after this call are TLS records.  done(c, 0) when the
 * handshake completes, done(c, <0) on failure (the owner then closes).
 * Writes made before the handshake completes are queued as plaintext and
 * sent, encrypted, right after it, in the same uv_write as the TLS 1.3
 * session tickets.
 */
int conn_tls_server(struct conn *c, SSL_CTX *ctx, conn_status_cb done);
/* The same as client; sni may be NULL; verification per ctx (name = sni). */
int conn_tls_client(struct conn *c, SSL_CTX *ctx, const char *sni, conn_status_cb done);
/* conn_tls_client offering session (may be NULL) for resumption. */
int conn_tls_client_session(struct conn *c, SSL_CTX *ctx, const char *sni,
                            SSL_SESSION *session, conn_status_cb done);
int conn_is_tls(const struct conn *c);
/* The SSL object (NULL before TLS): for SSL_session_reused, SSL_get1_session, logs. */
SSL *conn_ssl(const struct conn *c);

/*
 * Graceful: stop delivering reads (what arrives is discarded), send
 * close_notify (TLS), let queued writes flush, FIN (at once by close() if
 * the peer's EOF was already read or conn_peer_done was called), else read
 * and discard until the peer's EOF (at most CONN_LINGER_MS, so that unread
 * input does not turn our close into an RST that destroys what we sent),
 * then close.  on_close exactly once.  Idempotent.
 */
void conn_close(struct conn *c);
/*
 * The owner knows the peer will send nothing more (it logged out and the
 * server confirmed): a later conn_close whose bytes are all with the kernel
 * then closes at once (close() sends the FIN after them) instead of
 * lingering for the peer's FIN.  Input arriving after that would meet a
 * reset, so only for a peer that has finished its side of the dialogue.
 */
void conn_peer_done(struct conn *c);
/*
 * Acknowledge what was received at once (TCP_QUICKACK).  For a peer that
 * keeps Nagle's algorithm on and still owes an answer to a command we
 * pipelined: it holds that answer until its previous one is acknowledged,
 * and in a request/response rhythm Linux delays that ACK by up to 40 ms.
 */
void conn_ack_now(struct conn *c);
/* Immediate close, drops queued data; on_close once; idempotent, safe after conn_close. */
void conn_abort(struct conn *c);
/* 1 once conn_close or conn_abort was called. */
int conn_is_closing(const struct conn *c);

/*
 * The peer address as text "ip" (no port; IPv4-mapped IPv6 shown as IPv4),
 * and the port into *port if port is not NULL; 0 or negative.
 */
int conn_peer_addr(struct conn *c, char *out, size_t outlen, int *port);

#endif
