/*
 * test_conn.c - core/conn.c and core/listen.c over plaintext loopback
 * sockets: SO_REUSEPORT listeners, echo, backpressure, the close lifecycle.
 * TLS is in test_tls.c.
 */
#include "tests/unit/core/conn_test_peer.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#define ECHO_LEN (256 * 1024)

/* The client closes once it has its bytes back. */
static void
echo_client_read(struct tpeer *p, const char *data, size_t len)
{
    if (p->rx_len == ECHO_LEN)
        conn_close(&p->c);
}

static void
echo_client_connected(struct tpeer *p)
{
    char *buf = malloc(ECHO_LEN);

    assert_non_null(buf);
    tp_fill(buf, ECHO_LEN, 1);
    assert_int_equal(conn_read_start(&p->c), 0);
    /* Many small writes: order must hold across separate uv_writes. */
    for (size_t off = 0; off < ECHO_LEN; off += 1000) {
        size_t n = ECHO_LEN - off < 1000 ? ECHO_LEN - off : 1000;

        assert_int_equal(conn_write(&p->c, buf + off, n), 0);
    }
    free(buf);
}

static void
echo_server_accept(struct tpeer *p)
{
    char ip[64];
    int port = 0;

    assert_int_equal(conn_peer_addr(&p->c, ip, sizeof(ip), &port), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_true(port > 0);
    assert_int_equal(conn_is_tls(&p->c), 0);
    assert_int_equal(conn_read_start(&p->c), 0);
    assert_int_equal(conn_read_start(&p->c), 0); /* twice is fine */
}

static void
test_plain_echo(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli;
    char *want = malloc(ECHO_LEN);

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    srv.echo = 1;
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts.on_accept = echo_server_accept;
    ts_listen(&loop, &ts, 2); /* the second bind works only with SO_REUSEPORT */
    cli.hook_read = echo_client_read;
    cli.hook_connect = echo_client_connected;
    tp_connect(&loop, &cli, ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(ts.naccepted, 1);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(srv.closed, 1);
    assert_int_equal(srv.eof, 1);
    assert_int_equal(cli.errs, 0);
    assert_int_equal(cli.rx_len, ECHO_LEN);
    assert_int_equal(srv.rx_len, ECHO_LEN);
    tp_fill(want, ECHO_LEN, 1);
    assert_memory_equal(cli.rx, want, ECHO_LEN);
    assert_int_equal(cli.c.bytes_out, ECHO_LEN);
    assert_int_equal(cli.c.bytes_in, ECHO_LEN);
    assert_int_equal(srv.c.bytes_in, ECHO_LEN);
    free(want);
    tp_free(&srv);
    tp_free(&cli);
    tp_loop_finish(&loop);
}

/* A second listen_open on a port without SO_REUSEPORT on the first fails. */
static void
test_listen_errors(void **state)
{
    uv_loop_t loop;
    uv_tcp_t lis;
    struct sockaddr_in sin;
    int fd, port;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);

    assert_int_equal(uv_loop_init(&loop), 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    sin.sin_port = htons((uint16_t)port);
    assert_int_equal(listen_open(&loop, &lis, (struct sockaddr *)&sin, sizeof(sin), 8,
                                 ts_on_connection),
                     UV_EADDRINUSE);
    close(fd);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/*
 * Backpressure: the server writes until its queue passes high water while
 * the client is not reading; then the client reads slowly (one chunk per
 * timer tick), and on_drain must fire once the queue falls to low water.
 */
#define BP_LOW (32 * 1024)
#define BP_HIGH (128 * 1024)
#define BP_CHUNK (64 * 1024)

struct bp_state {
    uv_timer_t tick;
    struct tpeer *cli, *srv;
    size_t sent;
    size_t queued_at_drain;
};

static void
bp_tick(uv_timer_t *t)
{
    struct bp_state *bp = t->data;

    if (!conn_is_closing(&bp->cli->c))
        assert_int_equal(conn_read_start(&bp->cli->c), 0);
}

/* The slow reader: one chunk, then a pause. */
static void
bp_client_read(struct tpeer *p, const char *data, size_t len)
{
    struct bp_state *bp = p->ctx;

    conn_read_stop(&p->c);
    conn_read_stop(&p->c); /* twice is fine */
    assert_int_equal(uv_timer_start(&bp->tick, bp_tick, 1, 0), 0);
}

static void
bp_client_error(struct tpeer *p, int status)
{
    struct bp_state *bp = p->ctx;

    assert_int_equal(status, UV_EOF);
    conn_close(&p->c);
    uv_close((uv_handle_t *)&bp->tick, NULL);
}

static void
bp_client_connected(struct tpeer *p)
{
    /* Not reading yet: the server's writes pile up. */
}

static void
bp_server_drain(struct tpeer *p)
{
    struct bp_state *bp = p->ctx;

    bp->queued_at_drain = conn_write_queued(&p->c);
    conn_close(&p->c);
}

static void
bp_server_accept(struct tpeer *p)
{
    struct bp_state *bp = p->ctx;
    char *buf = malloc(BP_CHUNK);

    assert_non_null(buf);
    conn_set_low_water(&p->c, BP_LOW, BP_HIGH);
    /* The kernel's buffers absorb the first megabytes; then libuv queues. */
    while (conn_write_queued(&p->c) <= BP_HIGH) {
        tp_fill(buf, BP_CHUNK, (uint32_t)bp->sent);
        assert_int_equal(conn_write(&p->c, buf, BP_CHUNK), 0);
        bp->sent += BP_CHUNK;
        assert_true(bp->sent < 256u * 1024 * 1024);
    }
    free(buf);
    assert_int_equal(p->drains, 0);
    /* Wake the reader only now. */
    assert_int_equal(uv_timer_start(&bp->tick, bp_tick, 5, 0), 0);
}

static void
test_backpressure(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli;
    struct bp_state bp = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 60000);
    assert_int_equal(uv_timer_init(&loop, &bp.tick), 0);
    bp.tick.data = &bp;
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    bp.cli = &cli;
    bp.srv = &srv;
    srv.ctx = cli.ctx = &bp;
    srv.hook_drain = bp_server_drain;
    cli.hook_read = bp_client_read;
    cli.hook_error = bp_client_error;
    cli.hook_connect = bp_client_connected;
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts.on_accept = bp_server_accept;
    ts_listen(&loop, &ts, 1);
    tp_connect(&loop, &cli, ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(srv.drains, 1);
    assert_true(bp.queued_at_drain <= BP_LOW);
    assert_int_equal(cli.rx_len, bp.sent);
    assert_int_equal(srv.c.bytes_out, bp.sent);
    assert_int_equal(cli.eof, 1);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(srv.closed, 1);
    tp_free(&srv);
    tp_free(&cli);
    tp_loop_finish(&loop);
}

/* conn_close right after large writes: the peer gets every byte, then EOF. */
#define CLOSE_LEN (8 * 1024 * 1024)

static void
close_server_accept(struct tpeer *p)
{
    char *buf = malloc(CLOSE_LEN);

    assert_non_null(buf);
    tp_fill(buf, CLOSE_LEN, 7);
    assert_int_equal(conn_write(&p->c, buf, CLOSE_LEN), 0);
    free(buf);
    assert_true(conn_write_queued(&p->c) > 0);
    conn_close(&p->c);
    conn_close(&p->c); /* idempotent */
    assert_int_equal(conn_write(&p->c, "x", 1), UV_EPIPE);
}

static void
test_close_delivers_all(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli;
    char *want = malloc(CLOSE_LEN);

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 30000);
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts.on_accept = close_server_accept;
    ts_listen(&loop, &ts, 1);
    tp_connect(&loop, &cli, ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(cli.rx_len, CLOSE_LEN);
    tp_fill(want, CLOSE_LEN, 7);
    assert_memory_equal(cli.rx, want, CLOSE_LEN);
    assert_int_equal(cli.eof, 1);
    assert_int_equal(cli.errs, 1);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(srv.closed, 1);
    free(want);
    tp_free(&srv);
    tp_free(&cli);
    tp_loop_finish(&loop);
}

/*
 * The owner aborts from inside on_read (and closes again, and aborts
 * again): on_close exactly once, no use after free (ASan watches).
 */
static void
abort_server_read(struct tpeer *p, const char *data, size_t len)
{
    conn_write(&p->c, "bye\r\n", 5);
    conn_abort(&p->c);
    conn_close(&p->c);
    conn_abort(&p->c);
    conn_read_stop(&p->c);
    assert_true(conn_read_start(&p->c) < 0);
}

static void
abort_client_connected(struct tpeer *p)
{
    assert_int_equal(conn_read_start(&p->c), 0);
    assert_int_equal(conn_write(&p->c, "hello\r\n", 7), 0);
}

static void
test_abort_in_read(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    srv.hook_read = abort_server_read;
    cli.hook_connect = abort_client_connected;
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts_listen(&loop, &ts, 1);
    tp_connect(&loop, &cli, ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(srv.closed, 1);
    assert_int_equal(srv.rx_len, 7);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(cli.errs, 1); /* EOF or reset, reported once */
    tp_free(&srv);
    tp_free(&cli);
    tp_loop_finish(&loop);
}

/* Closing while the connect is pending: no connect callback, on_close once. */
static void
never_connected(struct conn *c, int status)
{
    fail_msg("connect callback after conn_close");
}

static void
test_close_while_connecting(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer cli, cli2;
    struct sockaddr_in sin;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    ts_listen(&loop, &ts, 1);
    ts_close_listeners(&ts); /* refused or not: the close must win either way */
    tp_init(&cli, "client");
    tp_init(&cli2, "client2");
    assert_int_equal(uv_ip4_addr("127.0.0.1", ts.port, &sin), 0);
    assert_int_equal(conn_init(&loop, &cli.c), 0);
    assert_int_equal(conn_connect(&cli.c, (struct sockaddr *)&sin, never_connected), 0);
    conn_close(&cli.c);
    conn_abort(&cli.c);
    /* A conn that never connected at all. */
    assert_int_equal(conn_init(&loop, &cli2.c), 0);
    conn_close(&cli2.c);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(cli2.closed, 1);
    tp_loop_finish(&loop);
}

/*
 * conn_connect_greeted: the connect callback comes with the server's first
 * bytes, before on_read gets them; TCP_NODELAY on both ends (the accepted
 * socket inherits it from listen_open's listener); conn_peer_done lets the
 * server close at once after its last reply, and the client still gets it.
 */
struct greeted {
    int calls, status;
    size_t rx_at_cb;
};

static int
tcp_nodelay_of(struct conn *c)
{
    uv_os_fd_t fd;
    int on = 0;
    socklen_t len = sizeof(on);

    assert_int_equal(uv_fileno((uv_handle_t *)&c->tcp, &fd), 0);
    assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), 0);
    return on;
}

static void
greeted_cb(struct conn *c, int status)
{
    struct tpeer *p = c->data;
    struct greeted *g = p->ctx;

    g->calls++;
    g->status = status;
    g->rx_at_cb = p->rx_len;
    if (status == 0)
        assert_int_equal(tcp_nodelay_of(c), 1);
}

static void
greeted_server_accept(struct tpeer *p)
{
    assert_int_equal(tcp_nodelay_of(&p->c), 1);
    assert_int_equal(conn_read_start(&p->c), 0);
    assert_int_equal(conn_write(&p->c, "* OK hi\r\n", 9), 0);
}

static void
greeted_server_read(struct tpeer *p, const char *data, size_t len)
{
    if (p->rx_len == 6 && memcmp(p->rx, "QUIT\r\n", 6) == 0) {
        assert_int_equal(conn_write(&p->c, "BYE\r\n", 5), 0);
        conn_peer_done(&p->c);
        conn_close(&p->c);
    }
}

static void
greeted_client_read(struct tpeer *p, const char *data, size_t len)
{
    if (p->rx_len == 9)
        assert_int_equal(conn_write(&p->c, "QUIT\r\n", 6), 0);
}

static void
test_connect_greeted(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli, cli2;
    struct greeted g = {0}, g2 = {0};
    struct sockaddr_in sin;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    tp_init(&cli2, "client2");
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts.on_accept = greeted_server_accept;
    srv.hook_read = greeted_server_read;
    ts_listen(&loop, &ts, 1);
    cli.ctx = &g;
    cli.hook_read = greeted_client_read;
    assert_int_equal(uv_ip4_addr("127.0.0.1", ts.port, &sin), 0);
    assert_int_equal(conn_init(&loop, &cli.c), 0);
    assert_int_equal(conn_connect_greeted(&cli.c, (struct sockaddr *)&sin, greeted_cb), 0);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_int_equal(g.rx_at_cb, 0);
    assert_int_equal(cli.rx_len, 14);
    assert_memory_equal(cli.rx, "* OK hi\r\nBYE\r\n", 14);
    assert_int_equal(cli.eof, 1);
    assert_int_equal(cli.closed, 1);
    assert_int_equal(srv.closed, 1);
    assert_int_equal(srv.errs, 0);

    /* Nobody listens there any more: the failure goes to the callback. */
    cli2.ctx = &g2;
    assert_int_equal(conn_init(&loop, &cli2.c), 0);
    assert_int_equal(conn_connect_greeted(&cli2.c, (struct sockaddr *)&sin, greeted_cb), 0);
    uv_run(&loop, UV_RUN_ONCE);
    while (g2.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(g2.status < 0);
    assert_int_equal(cli2.errs, 0);
    conn_close(&cli2.c);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(cli2.closed, 1);
    tp_free(&srv);
    tp_free(&cli);
    tp_free(&cli2);
    tp_loop_finish(&loop);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_echo),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_close_delivers_all),
        cmocka_unit_test(test_abort_in_read),
        cmocka_unit_test(test_close_while_connecting),
        cmocka_unit_test(test_connect_greeted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
