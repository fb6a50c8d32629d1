/*
 * listen.h - listening sockets, one per worker loop, shared through
 * SO_REUSEPORT so that the kernel spreads new connections over the workers.
 *
 * Owns only the opening of the socket; what is done with an accepted
 * connection belongs to the callback's owner (proxy/listener.c, web/).
 */
#ifndef MFA_LISTEN_H
#define MFA_LISTEN_H

#include <sys/socket.h>

#include <uv.h>

/*
 * Opens a listening TCP socket on addr for this loop: socket(), SO_REUSEADDR
 * and SO_REUSEPORT, TCP_NODELAY (inherited by accepted sockets), bind,
 * listen(backlog), then uv_tcp_init + uv_tcp_open + uv_listen(cb).  libuv 1.44 has no flag for SO_REUSEPORT, hence the detour.
 * An IPv6 address is bound IPV6_V6ONLY: list IPv4 addresses separately.
 *
 * Returns 0 with *server initialized and listening (close it with uv_close),
 * or a negative UV error.  On error the handle is normally left
 * uninitialized; only if libuv itself fails after uv_tcp_init has the handle
 * already been passed to uv_close(server, NULL), so its memory must then
 * outlive one turn of the loop.
 */
int listen_open(uv_loop_t *loop, uv_tcp_t *server, const struct sockaddr *addr,
                socklen_t len, int backlog, uv_connection_cb cb);

#endif
