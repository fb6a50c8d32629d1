/*
 * fuzz_sasl.c - libFuzzer driver of the SASL messages (proxy/sasl.c) and of
 * base64 (core/codec.c).
 *
 * Input: byte 0 picks the output buffer sizes, the rest is a client's base64
 * response. Checks: whatever decodes obeys the name policy and fits its
 * buffer; a decoded PLAIN message re-encodes and decodes to the same names;
 * the strict decoder accepts only canonical base64 (decode then encode gives
 * the input back); and encode then decode is the identity.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/codec.h"
#include "proxy/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) \
    do { \
        if (!(x)) \
            __builtin_trap(); \
    } while (0)

#define BIG (2 * SASL_MAX_DECODED + 16)

static void
check_name(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);

    CHECK(n < cap && n > 0);
    CHECK(strchr(s, '\r') == NULL && strchr(s, '\n') == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char user[BIG], pass[BIG], enc[2 * BIG], user2[BIG], pass2[BIG];
    static unsigned char raw[BIG], back[BIG];
    const char *in;
    size_t len, ucap, pcap;
    int rc, n, m;

    if (size < 1)
        return 0;
    ucap = (data[0] & 0x0f) == 0 ? sizeof(user) : (size_t)(data[0] & 0x0f) * 4;
    pcap = (data[0] >> 4) == 0 ? sizeof(pass) : (size_t)(data[0] >> 4) * 4;
    in = (const char *)data + 1;
    len = size - 1;

    rc = sasl_plain_decode(in, len, user, ucap, pass, pcap);
    CHECK(rc <= 0 && rc >= SASL_CANCELLED);
    if (rc == SASL_OK) {
        check_name(user, ucap);
        CHECK(strnlen(pass, pcap) < pcap && pass[0] != '\0');
        /* Re-encode as a client would, and decode again: the same names. */
        n = sasl_plain_encode(NULL, user, pass, enc, sizeof(enc));
        CHECK(n > 0);
        CHECK(sasl_plain_decode(enc, (size_t)n, user2, sizeof(user2), pass2,
                                sizeof(pass2)) == SASL_OK);
        CHECK(strcmp(user, user2) == 0 && strcmp(pass, pass2) == 0);
        n = sasl_plain_encode(user, user, pass, enc, sizeof(enc));
        CHECK(n > 0);
        CHECK(sasl_plain_decode(enc, (size_t)n, user2, sizeof(user2), pass2,
                                sizeof(pass2)) == SASL_OK);
    } else {
        CHECK(ucap == 0 || user[0] == '\0');
        CHECK(pcap == 0 || pass[0] == '\0');
    }

    rc = sasl_login_decode(in, len, user, ucap, 1);
    CHECK(rc <= 0 && rc >= SASL_CANCELLED);
    if (rc == SASL_OK)
        check_name(user, ucap);
    rc = sasl_login_decode(in, len, pass, pcap, 0);
    CHECK(rc <= 0 && rc >= SASL_CANCELLED);
    if (rc == SASL_OK)
        CHECK(strnlen(pass, pcap) < pcap);

    /* Strict base64: only canonical text decodes. */
    n = codec_b64_decode(in, len, raw, sizeof(raw));
    if (n >= 0) {
        CHECK((size_t)n <= len / 4 * 3 && raw[n] == '\0');
        m = codec_b64_encode(raw, (size_t)n, enc, sizeof(enc));
        CHECK(m >= 0 && (size_t)m == len && memcmp(enc, in, len) == 0);
    }
    /* Any bytes round-trip. */
    if (len < sizeof(raw)) {
        m = codec_b64_encode(in, len, enc, sizeof(enc));
        CHECK(m == (int)CODEC_B64_ENCODED_LEN(len));
        n = codec_b64_decode(enc, (size_t)m, back, sizeof(back));
        CHECK(n == (int)len && memcmp(back, in, len) == 0);
    }
    return 0;
}
