/*
 * proxyhdr.h - the PROXY protocol version 2 header (HAProxy's
 * "proxy-protocol.txt", section 2.2).
 *
 * With `[backend] forward_client_addr = proxy`, every backend connection
 * begins with this binary header, which tells the backend the client's
 * address and port and the address the client connected to, before any
 * protocol byte: no ID / XCLIENT command, no answer to wait for.  The
 * backend's listeners must expect it (Dovecot: `haproxy = yes` with
 * `haproxy_trusted_networks`; Postfix: `smtpd_upstream_proxy_protocol =
 * haproxy`), and a listener that does not sees "QUIT" in it and ends the
 * connection - the signature is made for that.
 */
#ifndef MFA_PROXYHDR_H
#define MFA_PROXYHDR_H

#include <stddef.h>
#include <sys/socket.h>

/* 16 bytes of header, then two IPv6 addresses and two ports. */
#define PROXYHDR_V2_MAX (16 + 36)

/*
 * Writes the header for a TCP connection from src to dst (AF_INET or
 * AF_INET6; IPv4-mapped IPv6 addresses are written as IPv4) into out.
 * When the two families differ, or one is neither, the header says
 * AF_UNSPEC ("use the connection's own addresses").  Returns its length,
 * or -1 if cap is too small.
 */
int proxyhdr_v2(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
                size_t cap);
/* The same with the source as text, as conn_peer_addr writes it, and a
 * port; text that is no IP address gives the AF_UNSPEC header. */
int proxyhdr_v2_text(const char *src_ip, int src_port, const struct sockaddr *dst,
                     unsigned char *out, size_t cap);

#endif
