/*
 * test_proxyhdr.c - core/proxyhdr.c: the PROXY protocol v2 header, byte for
 * byte against HAProxy's proxy-protocol.txt (section 2.2).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "core/proxyhdr.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static struct sockaddr_in
v4(const char *ip, int port)
{
    struct sockaddr_in in;

    memset(&in, 0, sizeof(in));
    in.sin_family = AF_INET;
    in.sin_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET, ip, &in.sin_addr), 1);
    return in;
}

static struct sockaddr_in6
v6(const char *ip, int port)
{
    struct sockaddr_in6 in6;

    memset(&in6, 0, sizeof(in6));
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons((uint16_t)port);
    assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
    return in6;
}

static void
test_tcp4(void **state)
{
    struct sockaddr_in src = v4("192.0.2.10", 51234), dst = v4("198.51.100.1", 993);
    unsigned char out[PROXYHDR_V2_MAX];
    static const unsigned char body[] = {
        0x21, 0x11, 0x00, 0x0C,                     /* v2 PROXY, TCP4, 12 bytes */
        192, 0, 2, 10, 198, 51, 100, 1,             /* source, destination */
        0xC8, 0x22, 0x03, 0xE1,                     /* 51234, 993 */
    };

    assert_int_equal(proxyhdr_v2((struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                                 sizeof(out)), 28);
    assert_memory_equal(out, sig, 12);
    assert_memory_equal(out + 12, body, sizeof(body));
}

static void
test_tcp6(void **state)
{
    struct sockaddr_in6 src = v6("2001:db8::7", 40000), dst = v6("2001:db8::1", 143);
    unsigned char out[PROXYHDR_V2_MAX];

    assert_int_equal(proxyhdr_v2((struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                                 sizeof(out)), 52);
    assert_memory_equal(out, sig, 12);
    assert_int_equal(out[12], 0x21);
    assert_int_equal(out[13], 0x21);                /* TCP6 */
    assert_int_equal(out[14] * 256 + out[15], 36);
    assert_memory_equal(out + 16, &src.sin6_addr, 16);
    assert_memory_equal(out + 32, &dst.sin6_addr, 16);
    assert_int_equal(out[48] * 256 + out[49], 40000);
    assert_int_equal(out[50] * 256 + out[51], 143);
}

/* A client on a dual-stack listener: IPv4-mapped addresses go out as IPv4. */
static void
test_v4_mapped_is_tcp4(void **state)
{
    struct sockaddr_in6 dst = v6("::ffff:127.0.0.1", 10143);
    unsigned char out[PROXYHDR_V2_MAX];

    assert_int_equal(proxyhdr_v2_text("127.0.0.2", 5000, (struct sockaddr *)&dst, out,
                                      sizeof(out)), 28);
    assert_int_equal(out[13], 0x11);
    assert_memory_equal(out + 16, "\x7f\x00\x00\x02\x7f\x00\x00\x01", 8);
    assert_int_equal(out[24] * 256 + out[25], 5000);
    assert_int_equal(out[26] * 256 + out[27], 10143);
}

/* Families that differ, or an address that is not one: "use the connection's". */
static void
test_unspec(void **state)
{
    struct sockaddr_in dst = v4("127.0.0.1", 143);
    unsigned char out[PROXYHDR_V2_MAX];

    assert_int_equal(proxyhdr_v2_text("2001:db8::7", 1, (struct sockaddr *)&dst, out,
                                      sizeof(out)), 16);
    assert_int_equal(out[12], 0x21);
    assert_int_equal(out[13], 0x00);
    assert_int_equal(out[14], 0);
    assert_int_equal(out[15], 0);
    assert_int_equal(proxyhdr_v2_text("", 0, (struct sockaddr *)&dst, out, sizeof(out)), 16);
    assert_int_equal(out[13], 0x00);
    assert_int_equal(proxyhdr_v2_text("127.0.0.2", 1, NULL, out, sizeof(out)), 16);
}

static void
test_too_small(void **state)
{
    struct sockaddr_in src = v4("192.0.2.10", 1), dst = v4("198.51.100.1", 2);
    unsigned char out[PROXYHDR_V2_MAX];

    assert_int_equal(proxyhdr_v2((struct sockaddr *)&src, (struct sockaddr *)&dst, out, 27), -1);
    assert_int_equal(proxyhdr_v2_text("x", 0, NULL, out, 15), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp4),
        cmocka_unit_test(test_tcp6),
        cmocka_unit_test(test_v4_mapped_is_tcp4),
        cmocka_unit_test(test_unspec),
        cmocka_unit_test(test_too_small),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
