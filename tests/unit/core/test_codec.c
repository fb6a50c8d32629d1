/*
 * test_codec.c - base64 (core/codec.c): the RFC 4648 section 10 vectors both
 * ways, buffer bounds, and what the strict decoder refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/codec.h"

static const struct {
    const char *plain;
    const char *b64;
} vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void
test_rfc4648_encode(void **state)
{
    char out[32];

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        int n = codec_b64_encode(vectors[i].plain, strlen(vectors[i].plain), out, sizeof(out));

        assert_int_equal(n, strlen(vectors[i].b64));
        assert_string_equal(out, vectors[i].b64);
    }
}

static void
test_rfc4648_decode(void **state)
{
    unsigned char out[32];

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        memset(out, 'x', sizeof(out));
        int n = codec_b64_decode(vectors[i].b64, strlen(vectors[i].b64), out, sizeof(out));

        assert_int_equal(n, strlen(vectors[i].plain));
        assert_memory_equal(out, vectors[i].plain, (size_t)n);
        assert_int_equal(out[n], '\0');
    }
}

static void
test_binary_roundtrip(void **state)
{
    unsigned char in[256], back[260];
    char enc[400];

    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)(255 - i);
    for (size_t len = 0; len <= sizeof(in); len++) {
        int n = codec_b64_encode(in, len, enc, sizeof(enc));

        assert_int_equal(n, CODEC_B64_ENCODED_LEN(len));
        assert_int_equal(codec_b64_decode(enc, (size_t)n, back, sizeof(back)), len);
        assert_memory_equal(back, in, len);
    }
    /* All 64 characters decode (and "+/" are the standard alphabet's). */
    assert_int_equal(codec_b64_decode("+/+/", 4, back, sizeof(back)), 3);
    assert_int_equal(back[0], 0xfb);
    assert_int_equal(back[1], 0xff);
    assert_int_equal(back[2], 0xbf);
}

static void
test_encode_cap(void **state)
{
    char out[9];

    /* "foobar" needs 8 characters and the NUL. */
    assert_int_equal(codec_b64_encode("foobar", 6, out, 9), 8);
    assert_int_equal(codec_b64_encode("foobar", 6, out, 8), -1);
    assert_int_equal(codec_b64_encode("", 0, out, 1), 0);
    assert_string_equal(out, "");
    assert_int_equal(codec_b64_encode("", 0, out, 0), -1);
}

static void
test_decode_cap(void **state)
{
    unsigned char out[8];

    assert_int_equal(codec_b64_decode("Zm9vYmFy", 8, out, 7), 6);
    assert_int_equal(codec_b64_decode("Zm9vYmFy", 8, out, 6), -1);
    assert_int_equal(codec_b64_decode("Zm8=", 4, out, 3), 2);
    assert_int_equal(codec_b64_decode("Zm8=", 4, out, 2), -1);
    assert_int_equal(codec_b64_decode("", 0, out, 1), 0);
    assert_int_equal(codec_b64_decode("", 0, out, 0), -1);
}

static void
test_decode_strict(void **state)
{
    static const char *const bad[] = {
        "Zg",        /* no padding */
        "Zg=",       /* short padding */
        "Zg===",     /* length not a multiple of 4 */
        "Z===",      /* too much padding */
        "====",
        "Zg==Zg==",  /* padding in the middle */
        "Zm=v",
        "Zm9v\r\n",  /* whitespace */
        "Zm9 v",
        " Zm9v",
        "Zm9v Zm9v",
        "Zm9-",      /* base64url is not this alphabet */
        "Zm9_",
        "Zm9*",
        "Zh==",      /* non-zero bits after "f" */
        "Zm9=",      /* non-zero bits after "fo" */
        "Zm\x80v",
    };
    unsigned char out[32];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(codec_b64_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    /* An embedded NUL is outside the alphabet too. */
    assert_int_equal(codec_b64_decode("Zm\0v", 4, out, sizeof(out)), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_encode),
        cmocka_unit_test(test_rfc4648_decode),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_encode_cap),
        cmocka_unit_test(test_decode_cap),
        cmocka_unit_test(test_decode_strict),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
