/*
 * test_apppw.c - app passwords as values (auth/apppw.c): the alphabet and
 * the shown shape, what normalize accepts and refuses, argon2id hashing with
 * the pepper, the locator, the scope names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/apppw.h"

static const unsigned char pepper1[APPPW_KEY_LEN] = {1, 2, 3};
static const unsigned char pepper2[APPPW_KEY_LEN] = {1, 2, 4};
static const struct apppw_params small = {256, 1, 1};

static int
is_alnum(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static void
test_generate(void **state)
{
    char pw[APPPW_LEN + 1], prev[APPPW_LEN + 1] = "";
    int seen[256] = {0};
    int distinct = 0;

    for (int n = 0; n < 2000; n++) {
        assert_int_equal(apppw_generate(pw), 0);
        assert_int_equal(strlen(pw), APPPW_LEN);
        for (int i = 0; i < APPPW_LEN; i++) {
            assert_true(is_alnum(pw[i]));
            seen[(unsigned char)pw[i]]++;
        }
        assert_string_not_equal(pw, prev);
        memcpy(prev, pw, sizeof(pw));
    }
    /* 32000 draws over 62 symbols: each appears, none dominates (expected
     * ~516 each; a modulo-biased or broken generator strays far). */
    for (int c = 0; c < 256; c++) {
        if (!is_alnum((char)c))
            continue;
        distinct++;
        assert_true(seen[c] > 350);
        assert_true(seen[c] < 700);
    }
    assert_int_equal(distinct, 62);
}

static void
test_format(void **state)
{
    char out[APPPW_SHOWN_LEN + 1];

    apppw_format("GdGneAF6iFvUg6rB", out);
    assert_string_equal(out, "GdGn eAF6 iFvU g6rB");
}

static void
test_normalize_accepts(void **state)
{
    static const char *const ok[] = {
        "GdGn eAF6 iFvU g6rB",
        "GdGneAF6iFvUg6rB",
        "GdGn eAF6iFvU g6rB",   /* some group spaces left out */
        "GdGneAF6 iFvUg6rB",
    };
    char out[APPPW_LEN + 1];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(apppw_normalize(ok[i], strlen(ok[i]), out), 0);
        assert_string_equal(out, "GdGneAF6iFvUg6rB");
    }
}

static void
test_normalize_refuses(void **state)
{
    static const char *const bad[] = {
        "",
        "GdGneAF6iFvUg6r",        /* 15 */
        "GdGneAF6iFvUg6rBx",      /* 17 */
        "GdGn  eAF6 iFvU g6rB",   /* double space */
        " GdGneAF6iFvUg6rB",      /* leading */
        "GdGneAF6iFvUg6rB ",      /* trailing */
        "GdG neAF6iFvUg6rB",      /* space inside a group */
        "GdGn-eAF6-iFvU-g6rB",
        "GdGn\teAF6 iFvU g6rB",
        "GdGneAF6iFvUg6r_",
        "GdGneAF6iFvUg6r\xc3\xa9",
        "GdGn eAF6 iFvU g6rB x",
        "correct horse battery",
    };
    char out[APPPW_LEN + 1];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(apppw_normalize(bad[i], strlen(bad[i]), out), -1);
    /* A NUL inside the given length is not a character either. */
    assert_int_equal(apppw_normalize("GdGneAF6\0FvUg6rB", 16, out), -1);
}

static void
test_hash_verify(void **state)
{
    char h1[APPPW_HASH_MAX], h2[APPPW_HASH_MAX];

    assert_int_equal(apppw_hash(&small, pepper1, "GdGneAF6iFvUg6rB", h1, sizeof(h1)), 0);
    assert_non_null(strstr(h1, "$argon2id$v=19$m=256,t=1,p=1$"));
    assert_int_equal(apppw_verify(pepper1, "GdGneAF6iFvUg6rB", h1), 0);
    /* One wrong character, or the wrong pepper: no match. */
    assert_int_equal(apppw_verify(pepper1, "GdGneAF6iFvUg6rC", h1), APPPW_MISMATCH);
    assert_int_equal(apppw_verify(pepper2, "GdGneAF6iFvUg6rB", h1), APPPW_MISMATCH);
    /* A fresh salt each time. */
    assert_int_equal(apppw_hash(&small, pepper1, "GdGneAF6iFvUg6rB", h2, sizeof(h2)), 0);
    assert_string_not_equal(h1, h2);
    assert_int_equal(apppw_verify(pepper1, "GdGneAF6iFvUg6rB", h2), 0);
}

static void
test_verify_params_come_from_the_hash(void **state)
{
    const struct apppw_params other = {512, 2, 2};
    char h[APPPW_HASH_MAX];

    assert_int_equal(apppw_hash(&other, pepper1, "AAAABBBBCCCCDDDD", h, sizeof(h)), 0);
    assert_non_null(strstr(h, "m=512,t=2,p=2$"));
    assert_int_equal(apppw_verify(pepper1, "AAAABBBBCCCCDDDD", h), 0);
}

static void
test_verify_malformed(void **state)
{
    char h[APPPW_HASH_MAX], bad[APPPW_HASH_MAX];

    assert_int_equal(apppw_hash(&small, pepper1, "AAAABBBBCCCCDDDD", h, sizeof(h)), 0);
    assert_int_equal(apppw_verify(pepper1, "AAAABBBBCCCCDDDD", ""), -1);
    assert_int_equal(apppw_verify(pepper1, "AAAABBBBCCCCDDDD", "$argon2i$v=19$m=256"), -1);
    /* Cut short. */
    memcpy(bad, h, sizeof(bad));
    bad[strlen(bad) - 3] = '\0';
    assert_int_equal(apppw_verify(pepper1, "AAAABBBBCCCCDDDD", bad), -1);
    /* Absurd cost is refused, not run. */
    assert_int_equal(apppw_verify(pepper1, "AAAABBBBCCCCDDDD",
                                  "$argon2id$v=19$m=99999999,t=1,p=1$AAAAAAAAAAAAAAAAAAAAAA$"
                                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                     -1);
    /* Not a normalized password. */
    assert_int_equal(apppw_verify(pepper1, "AAAA BBBB CCCC DDDD", h), -1);
}

static void
test_locator(void **state)
{
    char a[APPPW_LOCATOR_LEN + 1], b[APPPW_LOCATOR_LEN + 1], c[APPPW_LOCATOR_LEN + 1];
    char d[APPPW_LOCATOR_LEN + 1];

    assert_int_equal(apppw_locator(pepper1, "alice", "AAAABBBBCCCCDDDD", a), 0);
    assert_int_equal(strlen(a), APPPW_LOCATOR_LEN);
    for (int i = 0; i < APPPW_LOCATOR_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    assert_int_equal(apppw_locator(pepper1, "alice", "AAAABBBBCCCCDDDD", b), 0);
    assert_string_equal(a, b);
    /* Depends on the user, the password and the key (a collision in 16 bits
     * for these fixed inputs would show as a stable failure, not a flake). */
    assert_int_equal(apppw_locator(pepper1, "bob", "AAAABBBBCCCCDDDD", b), 0);
    assert_int_equal(apppw_locator(pepper1, "alice", "AAAABBBBCCCCDDDE", c), 0);
    assert_int_equal(apppw_locator(pepper2, "alice", "AAAABBBBCCCCDDDD", d), 0);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
}

static void
test_scope(void **state)
{
    unsigned s = 99;
    char out[32];

    assert_int_equal(apppw_scope_parse("imap,pop3,smtp", &s), 0);
    assert_int_equal(s, APPPW_SCOPE_ALL);
    assert_int_equal(apppw_scope_parse("smtp,imap", &s), 0);
    assert_int_equal(s, APPPW_SCOPE_IMAP | APPPW_SCOPE_SMTP);
    assert_int_equal(apppw_scope_parse("pop3", &s), 0);
    assert_int_equal(s, APPPW_SCOPE_POP3);
    assert_int_equal(apppw_scope_parse("", &s), -1);
    assert_int_equal(apppw_scope_parse("imap,", &s), -1);
    assert_int_equal(apppw_scope_parse(",imap", &s), -1);
    assert_int_equal(apppw_scope_parse("imap,http", &s), -1);
    assert_int_equal(apppw_scope_parse("IMAP", &s), -1);
    assert_int_equal(apppw_scope_parse("imaps", &s), -1);

    apppw_scope_format(APPPW_SCOPE_ALL, out, sizeof(out));
    assert_string_equal(out, "imap,pop3,smtp");
    apppw_scope_format(APPPW_SCOPE_SMTP | APPPW_SCOPE_IMAP, out, sizeof(out));
    assert_string_equal(out, "imap,smtp");
    apppw_scope_format(0, out, sizeof(out));
    assert_string_equal(out, "");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_normalize_accepts),
        cmocka_unit_test(test_normalize_refuses),
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_verify_params_come_from_the_hash),
        cmocka_unit_test(test_verify_malformed),
        cmocka_unit_test(test_locator),
        cmocka_unit_test(test_scope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
