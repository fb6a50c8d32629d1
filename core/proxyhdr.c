/*
 * proxyhdr.c - the PROXY protocol version 2 header; see proxyhdr.h.
 */
#include "core/proxyhdr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* "\r\n\r\n\0\r\nQUIT\n": no text protocol's first line. */
static const unsigned char proxyhdr_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                               0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define PROXYHDR_V2_PROXY 0x21    /* version 2, command PROXY */
#define PROXYHDR_UNSPEC 0x00
#define PROXYHDR_TCP4 0x11
#define PROXYHDR_TCP6 0x21

/* One endpoint, IPv4-mapped IPv6 taken down to IPv4. */
struct proxyhdr_end {
    int family;                   /* AF_INET, AF_INET6, or 0 */
    unsigned char addr[16];       /* network order; 4 bytes for AF_INET */
    unsigned char port[2];        /* network order */
};

static void
proxyhdr_end(const struct sockaddr *sa, struct proxyhdr_end *e)
{
    memset(e, 0, sizeof(*e));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        e->family = AF_INET;
        memcpy(e->addr, &in->sin_addr, 4);
        memcpy(e->port, &in->sin_port, 2);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        memcpy(e->port, &in6->sin6_port, 2);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            e->family = AF_INET;
            memcpy(e->addr, in6->sin6_addr.s6_addr + 12, 4);
        } else {
            e->family = AF_INET6;
            memcpy(e->addr, &in6->sin6_addr, 16);
        }
    }
}

int
proxyhdr_v2(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
            size_t cap)
{
    struct proxyhdr_end s, d;
    size_t alen = 0, n = 16;
    unsigned char fam = PROXYHDR_UNSPEC;

    proxyhdr_end(src, &s);
    proxyhdr_end(dst, &d);
    if (s.family == d.family && s.family == AF_INET) {
        fam = PROXYHDR_TCP4;
        alen = 4;
    } else if (s.family == d.family && s.family == AF_INET6) {
        fam = PROXYHDR_TCP6;
        alen = 16;
    }
    if (alen > 0)
        n += 2 * alen + 4;
    if (cap < n)
        return -1;
    memcpy(out, proxyhdr_sig, sizeof(proxyhdr_sig));
    out[12] = PROXYHDR_V2_PROXY;
    out[13] = fam;
    out[14] = (unsigned char)((n - 16) >> 8);
    out[15] = (unsigned char)((n - 16) & 0xff);
    if (alen > 0) {
        unsigned char *p = out + 16;

        memcpy(p, s.addr, alen);
        memcpy(p + alen, d.addr, alen);
        memcpy(p + 2 * alen, s.port, 2);
        memcpy(p + 2 * alen + 2, d.port, 2);
    }
    return (int)n;
}

int
proxyhdr_v2_text(const char *src_ip, int src_port, const struct sockaddr *dst,
                 unsigned char *out, size_t cap)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, src_ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)src_port);
    } else if (inet_pton(AF_INET6, src_ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)src_port);
    }
    return proxyhdr_v2((const struct sockaddr *)&ss, dst, out, cap);
}
