/*
 * test_totp.c - auth/totp.c: the RFC 6238 appendix B (SHA-1) and RFC 4226
 * appendix D vectors, the RFC 4648 base32 vectors both ways, the +-1 step
 * window, single use through the store, the otpauth:// URI, and sealing
 * (roundtrip, tampering, the wrong user, the wrong key).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/totp.h"
#include "auth_test_util.h"

static const unsigned char rfc_key[] = "12345678901234567890";
#define RFC_KEY_LEN 20

static void
test_rfc6238_sha1_vectors(void **state)
{
    static const struct {
        int64_t time;
        const char *code;
    } v[] = {
        {59, "94287082"},         {1111111109, "07081804"}, {1111111111, "14050471"},
        {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000LL, "65353130"},
    };
    char buf[16];

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint32_t code;
        int64_t step = -1;

        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)totp_step(v[i].time), 8, &code),
                         0);
        snprintf(buf, sizeof(buf), "%08u", (unsigned)code);
        assert_string_equal(buf, v[i].code);
        /* And verify accepts it at that time, naming the step. */
        assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, v[i].time, v[i].code, 8, 1, &step), 0);
        assert_int_equal(step, v[i].time / 30);
    }
}

static void
test_rfc4226_vectors(void **state)
{
    static const uint32_t v[] = {755224, 287082, 359152, 969429, 338314,
                                 254676, 287922, 162583, 399871, 520489};

    for (uint64_t c = 0; c < 10; c++) {
        uint32_t code;

        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, c, 6, &code), 0);
        assert_int_equal(code, v[c]);
    }
    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 5, &(uint32_t){0}), -1);
    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, 0, 9, &(uint32_t){0}), -1);
}

static const struct {
    const char *plain;
    const char *b32;
} b32v[] = {
    {"", ""},
    {"f", "MY======"},
    {"fo", "MZXQ===="},
    {"foo", "MZXW6==="},
    {"foob", "MZXW6YQ="},
    {"fooba", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI======"},
};

static void
test_base32_rfc4648(void **state)
{
    char enc[64], nopad[64];
    unsigned char dec[64];
    size_t n;

    for (size_t i = 0; i < sizeof(b32v) / sizeof(b32v[0]); i++) {
        const char *p = b32v[i].plain;

        assert_int_equal(totp_base32_encode((const unsigned char *)p, strlen(p), 1, enc,
                                            sizeof(enc)),
                         0);
        assert_string_equal(enc, b32v[i].b32);
        assert_int_equal(totp_base32_decode(b32v[i].b32, dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(dec, p, n);

        /* Unpadded, and lower case, decode the same. */
        assert_int_equal(totp_base32_encode((const unsigned char *)p, strlen(p), 0, nopad,
                                            sizeof(nopad)),
                         0);
        assert_null(strchr(nopad, '='));
        for (char *c = nopad; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c - 'A' + 'a');
        assert_int_equal(totp_base32_decode(nopad, dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(p));
        assert_memory_equal(dec, p, n);
    }
}

static void
test_base32_refuses(void **state)
{
    unsigned char dec[4];
    char small[8];
    size_t n;

    assert_int_equal(totp_base32_decode("MZXW1===", dec, sizeof(dec), &n), -1); /* '1' */
    assert_int_equal(totp_base32_decode("MZ=XW", dec, sizeof(dec), &n), -1);    /* after pad */
    assert_int_equal(totp_base32_decode("MZXW6YTBOI", dec, sizeof(dec), &n), -1); /* too long */
    assert_int_equal(totp_base32_encode((const unsigned char *)"foobar", 6, 1, small,
                                        sizeof(small)),
                     -1);
}

static void
test_window(void **state)
{
    const int64_t now = 1700000000;  /* step 56666666, 20 s into it */
    const int64_t base = now / 30;
    char code[8];
    int64_t step;

    for (int d = -3; d <= 3; d++) {
        uint32_t c;

        assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)(base + d), 6, &c), 0);
        snprintf(code, sizeof(code), "%06u", (unsigned)c);
        step = -1;
        if (d >= -1 && d <= 1) {
            assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, code, 6, TOTP_WINDOW, &step),
                             0);
            assert_int_equal(step, base + d);
        } else {
            assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, code, 6, TOTP_WINDOW, &step),
                             -1);
        }
    }
    /* Shapes that are not a code. */
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, "12345", 6, 1, &step), -1);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, "1234567", 6, 1, &step), -1);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, "12a456", 6, 1, &step), -1);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, "", 6, 1, &step), -1);
}

static void
test_single_use(void **state)
{
    char dir[PATH_MAX], code[8];
    struct config cfg;
    struct store *st;
    int64_t fid, step, now = 1700000000;
    uint32_t c;

    assert_int_equal(tu_mkdtemp(dir, sizeof(dir)), 0);
    tu_config(&cfg, dir);
    st = tu_store(&cfg);
    assert_non_null(st);
    assert_int_equal(store_factor_add(st, "alice", "totp", "app", "x", 1, now, &fid), STORE_OK);

    assert_int_equal(totp_hotp(rfc_key, RFC_KEY_LEN, (uint64_t)(now / 30), 6, &c), 0);
    snprintf(code, sizeof(code), "%06u", (unsigned)c);
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now, code, 6, 1, &step), 0);
    assert_int_equal(store_totp_use(st, fid, step), STORE_OK);
    /* The same code again, even 10 s later: refused. */
    assert_int_equal(totp_verify(rfc_key, RFC_KEY_LEN, now + 10, code, 6, 1, &step), 0);
    assert_int_equal(store_totp_use(st, fid, step), STORE_CONFLICT);
    /* The previous step's code, still in the window, is older: refused. */
    assert_int_equal(store_totp_use(st, fid, step - 1), STORE_CONFLICT);
    /* The next step's code is fine, once. */
    assert_int_equal(store_totp_use(st, fid, step + 1), STORE_OK);
    assert_int_equal(store_totp_use(st, fid, step + 1), STORE_CONFLICT);
    /* Another factor has its own steps. */
    int64_t fid2;
    assert_int_equal(store_factor_add(st, "bob", "totp", "app", "y", 1, now, &fid2), STORE_OK);
    assert_int_equal(store_totp_use(st, fid2, step), STORE_OK);
    /* A factor that is gone. */
    assert_int_equal(store_totp_use(st, 999999, step + 5), STORE_NOTFOUND);

    store_close(st);
    tu_rmtree(dir);
}

static void
test_uri(void **state)
{
    char uri[TOTP_URI_MAX];

    assert_int_equal(totp_uri("alice@example.com", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), 0);
    assert_string_equal(uri, "otpauth://totp/mfagate:alice%40example.com?"
                             "secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=mfagate"
                             "&algorithm=SHA1&digits=6&period=30");
    assert_int_equal(totp_uri("a b&c", rfc_key, RFC_KEY_LEN, uri, sizeof(uri)), 0);
    assert_non_null(strstr(uri, "mfagate:a%20b%26c?"));
    assert_int_equal(totp_uri("alice", rfc_key, RFC_KEY_LEN, uri, 40), -1);
}

static void
test_seal_open(void **state)
{
    unsigned char key[TOTP_KEY_LEN] = {7}, key2[TOTP_KEY_LEN] = {8};
    unsigned char secret[TOTP_SECRET_LEN], s1[TOTP_SEALED_MAX], s2[TOTP_SEALED_MAX];
    unsigned char out[64];
    size_t n1, n2, n;

    assert_int_equal(totp_generate_secret(secret), 0);
    assert_int_equal(totp_seal(key, "alice", secret, sizeof(secret), s1, sizeof(s1), &n1), 0);
    assert_int_equal(n1, 1 + 12 + TOTP_SECRET_LEN + 16);
    assert_memory_not_equal(s1 + 13, secret, sizeof(secret));
    assert_int_equal(totp_open(key, "alice", s1, n1, out, sizeof(out), &n), 0);
    assert_int_equal(n, sizeof(secret));
    assert_memory_equal(out, secret, n);

    /* A fresh nonce each time. */
    assert_int_equal(totp_seal(key, "alice", secret, sizeof(secret), s2, sizeof(s2), &n2), 0);
    assert_memory_not_equal(s1, s2, n1);

    /* Any flipped bit, anywhere: refused. */
    for (size_t i = 0; i < n1; i++) {
        memcpy(s2, s1, n1);
        s2[i] ^= 0x01;
        assert_int_equal(totp_open(key, "alice", s2, n1, out, sizeof(out), &n), -1);
    }
    /* Another user's row, another key, a truncated blob: refused. */
    assert_int_equal(totp_open(key, "alicf", s1, n1, out, sizeof(out), &n), -1);
    assert_int_equal(totp_open(key2, "alice", s1, n1, out, sizeof(out), &n), -1);
    assert_int_equal(totp_open(key, "alice", s1, n1 - 1, out, sizeof(out), &n), -1);
    assert_int_equal(totp_open(key, "alice", s1, 29, out, sizeof(out), &n), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6238_sha1_vectors),
        cmocka_unit_test(test_rfc4226_vectors),
        cmocka_unit_test(test_base32_rfc4648),
        cmocka_unit_test(test_base32_refuses),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_single_use),
        cmocka_unit_test(test_uri),
        cmocka_unit_test(test_seal_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
