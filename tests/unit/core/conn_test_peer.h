/*
 * conn_test_peer.h - a scripted peer (struct conn plus what it saw) and a
 * listener for test_conn.c and test_tls.c.  Everything runs on real loopback
 * sockets in one loop; each test ends with uv_loop_close(loop) == 0, so a
 * leaked handle fails it.  Header-only (static functions) because ctest
 * builds every test_*.c as its own executable; inline so that a test need
 * not use all of them.
 */
#ifndef MFA_CONN_TEST_PEER_H
#define MFA_CONN_TEST_PEER_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "core/conn.h"
#include "core/listen.h"
#include "core/util.h"

struct tpeer {
    struct conn c;
    const char *name;
    char *rx;                 /* everything on_read delivered */
    size_t rx_len, rx_cap;
    int closed;               /* on_close calls */
    int eof;                  /* on_error(UV_EOF) calls */
    int errs, err;            /* on_error calls, last status */
    int hs_calls, hs_status;  /* TLS done calls, last status */
    int drains;
    int echo;                 /* write back what arrives */
    void (*hook_read)(struct tpeer *p, const char *data, size_t len);
    void (*hook_error)(struct tpeer *p, int status); /* default: conn_close */
    void (*hook_hs)(struct tpeer *p, int status);    /* default: close on failure */
    void (*hook_drain)(struct tpeer *p);
    void (*hook_connect)(struct tpeer *p);           /* default: read_start */
    void *ctx;                /* the test's own state */
};

static inline void
tp_on_read(struct conn *c, const char *data, size_t len)
{
    struct tpeer *p = c->data;

    if (p->rx_cap - p->rx_len < len) {
        size_t cap = p->rx_cap ? p->rx_cap : 4096;

        while (cap - p->rx_len < len)
            cap *= 2;
        p->rx = realloc(p->rx, cap);
        assert_non_null(p->rx);
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, data, len);
    p->rx_len += len;
    if (p->echo)
        assert_int_equal(conn_write(c, data, len), 0);
    if (p->hook_read != NULL)
        p->hook_read(p, data, len);
}

static inline void
tp_on_error(struct conn *c, int status)
{
    struct tpeer *p = c->data;

    p->errs++;
    p->err = status;
    if (status == UV_EOF)
        p->eof++;
    if (p->hook_error != NULL)
        p->hook_error(p, status);
    else
        conn_close(c);
}

static inline void
tp_on_drain(struct conn *c, int status)
{
    struct tpeer *p = c->data;

    p->drains++;
    if (p->hook_drain != NULL)
        p->hook_drain(p);
}

static inline void
tp_on_close(struct conn *c)
{
    struct tpeer *p = c->data;

    p->closed++;
}

static inline void
tp_on_hs(struct conn *c, int status)
{
    struct tpeer *p = c->data;

    p->hs_calls++;
    p->hs_status = status;
    if (p->hook_hs != NULL)
        p->hook_hs(p, status);
    else if (status < 0)
        conn_close(c);
}

static inline void
tp_init(struct tpeer *p, const char *name)
{
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->c.data = p;
    p->c.on_read = tp_on_read;
    p->c.on_error = tp_on_error;
    p->c.on_drain = tp_on_drain;
    p->c.on_close = tp_on_close;
}

static inline void
tp_free(struct tpeer *p)
{
    free(p->rx);
    p->rx = NULL;
    p->rx_len = p->rx_cap = 0;
}

static inline void
tp_on_connect(struct conn *c, int status)
{
    struct tpeer *p = c->data;

    assert_int_equal(status, 0);
    if (p->hook_connect != NULL)
        p->hook_connect(p);
    else
        assert_int_equal(conn_read_start(c), 0);
}

static inline void
tp_connect(uv_loop_t *loop, struct tpeer *p, int port)
{
    struct sockaddr_in sin;

    assert_int_equal(uv_ip4_addr("127.0.0.1", port, &sin), 0);
    assert_int_equal(conn_init(loop, &p->c), 0);
    assert_int_equal(conn_connect(&p->c, (struct sockaddr *)&sin, tp_on_connect), 0);
}

/* One or two listeners on one port; accepted conns go into peers[] in order. */
struct tserver {
    uv_tcp_t lis[2];
    int nlis;
    int port;
    struct tpeer *peers[4];
    int naccepted;
    int close_after;                        /* close the listeners after this many */
    void (*on_accept)(struct tpeer *p);     /* default: read_start */
    int lis_accepted[2];                    /* which listener took how many */
};

static inline void
ts_close_listeners(struct tserver *ts)
{
    for (int i = 0; i < ts->nlis; i++)
        if (!uv_is_closing((uv_handle_t *)&ts->lis[i]))
            uv_close((uv_handle_t *)&ts->lis[i], NULL);
}

static inline void
ts_on_connection(uv_stream_t *s, int status)
{
    struct tserver *ts = s->data;
    struct tpeer *p;

    assert_int_equal(status, 0);
    assert_true(ts->naccepted < (int)ARRAY_SIZE(ts->peers));
    p = ts->peers[ts->naccepted++];
    assert_non_null(p);
    ts->lis_accepted[(uv_tcp_t *)s == &ts->lis[0] ? 0 : 1]++;
    assert_int_equal(conn_init(s->loop, &p->c), 0);
    assert_int_equal(conn_accept(s, &p->c), 0);
    if (ts->on_accept != NULL)
        ts->on_accept(p);
    else
        assert_int_equal(conn_read_start(&p->c), 0);
    if (ts->naccepted == ts->close_after)
        ts_close_listeners(ts);
}

/* Listens on 127.0.0.1:port (0 = any) with nlis sockets sharing the port. */
static inline void
ts_listen(uv_loop_t *loop, struct tserver *ts, int nlis)
{
    struct sockaddr_in sin;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    for (int i = 0; i < nlis; i++) {
        if (i > 0)
            sin.sin_port = htons((uint16_t)ts->port);
        assert_int_equal(listen_open(loop, &ts->lis[i], (struct sockaddr *)&sin, sizeof(sin),
                                     64, ts_on_connection),
                         0);
        ts->lis[i].data = ts;
        ts->nlis++;
        if (i == 0) {
            assert_int_equal(uv_tcp_getsockname(&ts->lis[0], (struct sockaddr *)&ss, &len), 0);
            ts->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            assert_true(ts->port > 0);
        }
    }
}

/* A watchdog that fails the test instead of letting a hang eat the ctest timeout. */
static uv_timer_t tp_guard;

static inline void
tp_on_guard(uv_timer_t *t)
{
    fail_msg("test timed out");
}

static inline void
tp_guard_start(uv_loop_t *loop, uint64_t ms)
{
    assert_int_equal(uv_timer_init(loop, &tp_guard), 0);
    assert_int_equal(uv_timer_start(&tp_guard, tp_on_guard, ms, 0), 0);
    uv_unref((uv_handle_t *)&tp_guard); /* the test's own handles decide when the loop ends */
}

/* Closes the watchdog, runs the loop out, and asserts nothing leaked. */
static inline void
tp_loop_finish(uv_loop_t *loop)
{
    uv_close((uv_handle_t *)&tp_guard, NULL);
    assert_int_equal(uv_run(loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Deterministic filler so that a reordering or a lost byte shows. */
static inline void
tp_fill(char *buf, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (char)(x & 0xff);
    }
}

#endif
