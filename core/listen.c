/*
 * listen.c - see listen.h.  Owns the socket until uv_tcp_open hands it to
 * libuv; owns no connection.
 */
#include "core/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

int
listen_open(uv_loop_t *loop, uv_tcp_t *server, const struct sockaddr *addr,
            socklen_t len, int backlog, uv_connection_cb cb)
{
    int fd, on = 1, r;

    fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /*
     * SO_REUSEADDR lets a restart bind while old connections sit in
     * TIME_WAIT; SO_REUSEPORT lets every worker bind the same address with
     * its own socket, so accepts need no lock and no thundering herd.
     */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
        goto fail_errno;
    /*
     * TCP_NODELAY here: accepted sockets inherit it (Linux copies it from
     * the listener), which saves a setsockopt per connection.
     */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0)
        goto fail_errno;
    /*
     * An IPv6 address means IPv6 only, as in nginx: IPv4 is listed on its
     * own, so that "[::]:993" and "0.0.0.0:993" can both be configured.
     */
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0)
        goto fail_errno;
    if (bind(fd, addr, len) < 0 || listen(fd, backlog) < 0)
        goto fail_errno;

    r = uv_tcp_init(loop, server);
    if (r < 0)
        goto fail;
    /* From here on libuv owns fd: closing the handle closes it. */
    r = uv_tcp_open(server, fd);
    if (r < 0) {
        uv_close((uv_handle_t *)server, NULL);
        goto fail;
    }
    r = uv_listen((uv_stream_t *)server, backlog, cb);
    if (r < 0) {
        uv_close((uv_handle_t *)server, NULL);
        return r;
    }
    return 0;

fail_errno:
    r = -errno;
fail:
    close(fd);
    return r;
}
