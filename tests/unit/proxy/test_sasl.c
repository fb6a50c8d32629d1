/*
 * test_sasl.c - SASL PLAIN and LOGIN messages (proxy/sasl.c): the accepted
 * forms, and every refusal with its own status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/codec.h"
#include "proxy/sasl.h"

/* Base64 of n raw bytes (which may contain NULs) into a static buffer. */
static const char *
b64(const char *raw, size_t n)
{
    static char out[8192];

    assert_true(codec_b64_encode(raw, n, out, sizeof(out)) >= 0);
    return out;
}

#define B64(lit) b64((lit), sizeof(lit) - 1)

static int
plain(const char *text, char *user, size_t ucap, char *pass, size_t pcap)
{
    return sasl_plain_decode(text, strlen(text), user, ucap, pass, pcap);
}

static void
test_plain_ok(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(user, "alice");
    assert_string_equal(pass, "secret");

    /* RFC 4616 section 4's example. */
    assert_int_equal(plain("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(user, "tim");
    assert_string_equal(pass, "tanstaaftanstaaf");

    /* The password may hold spaces, CR and LF: only names are restricted. */
    assert_int_equal(plain(B64("\0bob\0p a\r\nss"), user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(pass, "p a\r\nss");
}

static void
test_plain_authzid_equal_ok(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("alice\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(user, "alice");
    assert_string_equal(pass, "secret");
}

static void
test_plain_authzid_differs(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("admin\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_AUTHZID);
    assert_string_equal(user, "");
    assert_string_equal(pass, "");
    /* Byte for byte: neither a prefix nor another case matches. */
    assert_int_equal(plain(B64("alic\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_AUTHZID);
    assert_int_equal(plain(B64("alicee\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_AUTHZID);
    assert_int_equal(plain(B64("Alice\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_AUTHZID);
}

static void
test_plain_missing_nuls(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("alicesecret"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain(B64("alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    /* A third NUL (in the password, or a NUL in a name) is refused too. */
    assert_int_equal(plain(B64("\0alice\0sec\0ret"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain(B64("\0al\0ice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    /* Empty: "=" (SASL-IR) and "". */
    assert_int_equal(plain("=", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain("", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
}

static void
test_plain_empty_names(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("\0\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain(B64("\0alice\0"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain(B64("\0\0"), user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
}

static void
test_plain_bad_chars(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain(B64("\0ali\rce\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_BAD_CHARS);
    assert_int_equal(plain(B64("\0alice\n\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_BAD_CHARS);
    assert_int_equal(plain(B64("\0\r\n\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_BAD_CHARS);
    /* Same with an equal authzid: the names are still checked. */
    assert_int_equal(plain(B64("a\nb\0a\nb\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_BAD_CHARS);
    assert_string_equal(user, "");
}

static void
test_plain_too_long(void **state)
{
    char user[6], pass[7], big[SASL_MAX_DECODED + 8];
    char bigu[SASL_MAX_DECODED + 8], bigp[SASL_MAX_DECODED + 8];

    /* Exactly fits: "alice" + NUL, "secret" + NUL. */
    assert_int_equal(plain(B64("\0alice\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_int_equal(plain(B64("\0alice1\0secret"), user, sizeof(user), pass, sizeof(pass)), SASL_TOO_LONG);
    assert_int_equal(plain(B64("\0alice\0secret1"), user, sizeof(user), pass, sizeof(pass)), SASL_TOO_LONG);
    assert_string_equal(user, "");

    /* Longer than SASL_MAX_DECODED whatever the buffers. */
    memset(big, 'p', sizeof(big));
    big[0] = '\0';
    big[2] = '\0';
    assert_int_equal(plain(b64(big, SASL_MAX_DECODED + 1), bigu, sizeof(bigu), bigp, sizeof(bigp)), SASL_TOO_LONG);
    assert_int_equal(plain(b64(big, SASL_MAX_DECODED), bigu, sizeof(bigu), bigp, sizeof(bigp)), SASL_OK);
    assert_int_equal(strlen(bigp), SASL_MAX_DECODED - 3);
}

static void
test_plain_bad_base64(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain("AGFsaWNlAHNlY3JldA", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain("AGFsaWNlAHNlY3Jld!==", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain("AGFsaWNl AHNlY3JldA==", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    assert_int_equal(plain("AGFsaWNlAHNlY3JldA==\r\n", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
    /* The same without the damage decodes, so the damage is what fails. */
    assert_int_equal(plain("AGFsaWNlAHNlY3JldA==", user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(pass, "secret");
}

static void
test_plain_cancel(void **state)
{
    char user[64], pass[64];

    assert_int_equal(plain("*", user, sizeof(user), pass, sizeof(pass)), SASL_CANCELLED);
    assert_int_equal(plain("**", user, sizeof(user), pass, sizeof(pass)), SASL_MALFORMED);
}

static int
login(const char *text, char *out, size_t cap, int is_user)
{
    return sasl_login_decode(text, strlen(text), out, cap, is_user);
}

static void
test_login_decode(void **state)
{
    char out[64];

    assert_int_equal(login("YWxpY2U=", out, sizeof(out), 1), SASL_OK);
    assert_string_equal(out, "alice");
    assert_int_equal(login("c2VjcmV0", out, sizeof(out), 0), SASL_OK);
    assert_string_equal(out, "secret");
    assert_int_equal(login("*", out, sizeof(out), 1), SASL_CANCELLED);
    assert_int_equal(login("*", out, sizeof(out), 0), SASL_CANCELLED);
    /* An empty user is refused, an empty password is only empty. */
    assert_int_equal(login("", out, sizeof(out), 1), SASL_MALFORMED);
    assert_int_equal(login("=", out, sizeof(out), 1), SASL_MALFORMED);
    assert_int_equal(login("", out, sizeof(out), 0), SASL_OK);
    assert_string_equal(out, "");
    /* Names: no CR, LF, NUL. Passwords: no NUL. */
    assert_int_equal(login(B64("ali\rce"), out, sizeof(out), 1), SASL_BAD_CHARS);
    assert_int_equal(login(B64("alice\n"), out, sizeof(out), 1), SASL_BAD_CHARS);
    assert_int_equal(login(B64("al\0ice"), out, sizeof(out), 1), SASL_BAD_CHARS);
    assert_string_equal(out, "");
    assert_int_equal(login(B64("se\r\ncret"), out, sizeof(out), 0), SASL_OK);
    assert_int_equal(login(B64("se\0cret"), out, sizeof(out), 0), SASL_MALFORMED);
    /* Bounds and base64. */
    assert_int_equal(login("YWxpY2U=", out, 6, 1), SASL_OK);
    assert_int_equal(login("YWxpY2U=", out, 5, 1), SASL_TOO_LONG);
    assert_int_equal(login("YWxpY2U", out, sizeof(out), 1), SASL_MALFORMED);
    assert_int_equal(login("YWxp Y2U=", out, sizeof(out), 1), SASL_MALFORMED);
}

static void
test_encode_roundtrip(void **state)
{
    char enc[128], user[64], pass[64];
    int n;

    /* The master-user form: authzid = the user, authcid = the master. */
    n = sasl_plain_encode("alice", "mfagate", "master secret", enc, sizeof(enc));
    assert_int_equal(n, strlen(enc));
    assert_string_equal(enc, B64("alice\0mfagate\0master secret"));
    /* Our own decoder refuses exactly that form from clients. */
    assert_int_equal(plain(enc, user, sizeof(user), pass, sizeof(pass)), SASL_AUTHZID);

    n = sasl_plain_encode(NULL, "alice", "secret", enc, sizeof(enc));
    assert_true(n > 0);
    assert_int_equal(plain(enc, user, sizeof(user), pass, sizeof(pass)), SASL_OK);
    assert_string_equal(user, "alice");
    assert_string_equal(pass, "secret");
    assert_int_equal(sasl_plain_encode("", "alice", "secret", enc, sizeof(enc)), n);

    /* RFC 4616's example, byte for byte. */
    assert_true(sasl_plain_encode("", "tim", "tanstaaftanstaaf", enc, sizeof(enc)) > 0);
    assert_string_equal(enc, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");

    /* Bounds: the output needs CODEC_B64_ENCODED_LEN + 1. */
    n = (int)CODEC_B64_ENCODED_LEN(strlen("alice") + strlen("secret") + 2);
    assert_int_equal(sasl_plain_encode(NULL, "alice", "secret", enc, (size_t)n + 1), n);
    assert_int_equal(sasl_plain_encode(NULL, "alice", "secret", enc, (size_t)n), -1);
}

static void
test_encode_too_long(void **state)
{
    static char big[SASL_MAX_DECODED + 2], enc[2 * SASL_MAX_DECODED];

    memset(big, 'x', sizeof(big) - 1);
    assert_int_equal(sasl_plain_encode(NULL, "alice", big, enc, sizeof(enc)), -1);
    big[SASL_MAX_DECODED - 7] = '\0'; /* "\0alice\0" + that = SASL_MAX_DECODED */
    assert_true(sasl_plain_encode(NULL, "alice", big, enc, sizeof(enc)) > 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_ok),
        cmocka_unit_test(test_plain_authzid_equal_ok),
        cmocka_unit_test(test_plain_authzid_differs),
        cmocka_unit_test(test_plain_missing_nuls),
        cmocka_unit_test(test_plain_empty_names),
        cmocka_unit_test(test_plain_bad_chars),
        cmocka_unit_test(test_plain_too_long),
        cmocka_unit_test(test_plain_bad_base64),
        cmocka_unit_test(test_plain_cancel),
        cmocka_unit_test(test_login_decode),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_encode_too_long),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
