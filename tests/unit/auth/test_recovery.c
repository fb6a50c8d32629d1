/*
 * test_recovery.c - one-time recovery codes (auth/recovery.c and the store's
 * recovery_codes section): the alphabet and the shown shape, what normalize
 * accepts and refuses, argon2id with the pepper and the tag that keeps a
 * code apart from an app password, sets with distinct locators, and the
 * life of a set in the store: saved hashed, found by locator, used once
 * (also across two connections), replaced by a new set, cleared with the
 * last factor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth/account.h"
#include "auth/recovery.h"
#include "auth_test_util.h"
#include "core/log.h"

static const struct apppw_params small = {256, 1, 1};

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    struct keys keys;
    struct store *a, *b;   /* two connections: two workers */
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    memset(f->keys.pepper, 0x11, sizeof(f->keys.pepper));
    memset(f->keys.locator, 0x22, sizeof(f->keys.locator));
    f->a = tu_store(&f->cfg);
    f->b = tu_store(&f->cfg);
    if (f->a == NULL || f->b == NULL)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->a);
    store_close(f->b);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static void
test_generate(void **state)
{
    static const char abc[] = "0123456789abcdefghjkmnpqrstvwxyz";
    char code[RECOVERY_LEN + 1], prev[RECOVERY_LEN + 1] = "";
    int seen[256] = {0};

    for (int n = 0; n < 3200; n++) {
        assert_int_equal(recovery_generate(code), 0);
        assert_int_equal(strlen(code), RECOVERY_LEN);
        assert_string_not_equal(code, prev);
        for (int i = 0; i < RECOVERY_LEN; i++) {
            assert_non_null(strchr(abc, code[i]));
            seen[(unsigned char)code[i]]++;
        }
        memcpy(prev, code, sizeof(code));
    }
    /* 32000 draws over 32 symbols: ~1000 each; none of i, l, o, u ever. */
    for (const char *p = abc; *p; p++) {
        assert_true(seen[(unsigned char)*p] > 800);
        assert_true(seen[(unsigned char)*p] < 1200);
    }
    assert_int_equal(seen['i'] + seen['l'] + seen['o'] + seen['u'], 0);
}

static void
test_format(void **state)
{
    char out[RECOVERY_SHOWN_LEN + 1];

    recovery_format("7kq3mx9a2p", out);
    assert_string_equal(out, "7kq3m-x9a2p");
}

static void
test_normalize(void **state)
{
    static const char *const ok[] = {
        "7kq3m-x9a2p", "7kq3mx9a2p", "7KQ3M-X9A2P", "7kq3m x9a2p", "  7kq3m-x9a2p ",
        "7Kq3M-x9A2p",
    };
    static const char *const bad[] = {
        "",           "7kq3m-x9a2",    "7kq3m-x9a2pp", "7kq3-mx9a2p", "7kq3m--x9a2p",
        "7kq3m-x9a2p-", "-7kq3mx9a2p", "7kq3m-x9u2p", "7kq3m-x9a2!", "7kq3m\tx9a2p",
        "7kq3m- x9a2p", "7kq3m-x9a2p\n", "GdGn eAF6 iFvU g6rB",
    };
    char out[RECOVERY_LEN + 1];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(recovery_normalize(ok[i], strlen(ok[i]), out), 0);
        assert_string_equal(out, "7kq3mx9a2p");
    }
    /* Crockford: o reads as 0, i and l as 1. */
    assert_int_equal(recovery_normalize("Oilo0-11100", 11, out), 0);
    assert_string_equal(out, "0110011100");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(recovery_normalize(bad[i], strlen(bad[i]), out), -1);
    /* A NUL inside is not a code. */
    assert_int_equal(recovery_normalize("7kq3m\0x9a2p", 11, out), -1);
}

static void
test_hash_verify(void **state)
{
    unsigned char pepper[APPPW_KEY_LEN] = {1, 2, 3}, other[APPPW_KEY_LEN] = {1, 2, 4};
    char hash[APPPW_HASH_MAX], hash2[APPPW_HASH_MAX];

    assert_int_equal(recovery_hash(&small, pepper, "7kq3mx9a2p", hash, sizeof(hash)), 0);
    assert_non_null(strstr(hash, "$argon2id$v=19$m=256,t=1,p=1$"));
    assert_null(strstr(hash, "7kq3mx9a2p"));
    assert_int_equal(recovery_verify(pepper, "7kq3mx9a2p", hash), 0);
    assert_int_equal(recovery_verify(pepper, "7kq3mx9a2q", hash), RECOVERY_MISMATCH);
    /* The pepper is part of it: a stolen database alone verifies nothing. */
    assert_int_equal(recovery_verify(other, "7kq3mx9a2p", hash), RECOVERY_MISMATCH);
    /* Salted per code. */
    assert_int_equal(recovery_hash(&small, pepper, "7kq3mx9a2p", hash2, sizeof(hash2)), 0);
    assert_string_not_equal(hash, hash2);
    /* Tagged: the same characters as an app password's KDF input differ. */
    assert_int_equal(apppw_verify(pepper, "7kq3mx9a2p000000", hash), APPPW_MISMATCH);
    assert_int_equal(recovery_verify(pepper, "short", hash), -1);
    assert_int_equal(recovery_verify(pepper, "7kq3mx9a2p", "$argon2id$garbage"), -1);
}

static void
test_locator(void **state)
{
    unsigned char key[APPPW_KEY_LEN] = {9}, key2[APPPW_KEY_LEN] = {8};
    char a[APPPW_LOCATOR_LEN + 1], b[APPPW_LOCATOR_LEN + 1], c[APPPW_LOCATOR_LEN + 1];
    char d[APPPW_LOCATOR_LEN + 1];

    assert_int_equal(recovery_locator(key, "alice", "7kq3mx9a2p", a), 0);
    assert_int_equal(recovery_locator(key, "alice", "7kq3mx9a2p", b), 0);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), APPPW_LOCATOR_LEN);
    assert_int_equal(recovery_locator(key, "bob", "7kq3mx9a2p", c), 0);
    assert_int_equal(recovery_locator(key2, "alice", "7kq3mx9a2p", d), 0);
    /* Per user and per key (16 bits: a clash is possible but not with these). */
    assert_string_not_equal(a, c);
    assert_string_not_equal(a, d);
}

static void
test_set_distinct(void **state)
{
    struct fx *f = *state;
    struct recovery_set *set = calloc(1, sizeof(*set));

    assert_non_null(set);
    for (int n = 0; n < 200; n++) {
        assert_int_equal(recovery_set_new(&f->keys, "alice", set), 0);
        for (int i = 0; i < RECOVERY_COUNT; i++) {
            char loc[APPPW_LOCATOR_LEN + 1];

            assert_int_equal(strlen(set->codes[i]), RECOVERY_LEN);
            assert_int_equal(recovery_locator(f->keys.locator, "alice", set->codes[i], loc), 0);
            assert_string_equal(loc, set->locators[i]);
            for (int j = 0; j < i; j++) {
                assert_string_not_equal(set->codes[i], set->codes[j]);
                assert_string_not_equal(set->locators[i], set->locators[j]);
            }
        }
    }
    recovery_set_wipe(set);
    free(set);
}

/* Makes, hashes and saves a set for user; the caller frees it. */
static struct recovery_set *
make_set(struct fx *f, struct store *st, const char *user, int64_t now)
{
    struct recovery_set *set = calloc(1, sizeof(*set));

    assert_non_null(set);
    assert_int_equal(recovery_set_new(&f->keys, user, set), 0);
    /* Not hashed yet: refused, nothing stored. */
    assert_int_equal(recovery_set_save(st, user, set, now, "test", "127.0.0.1"), STORE_ERR);
    assert_int_equal(recovery_hash_set(&small, f->keys.pepper, set), 0);
    assert_int_equal(recovery_set_save(st, user, set, now, "test", "127.0.0.1"), STORE_OK);
    return set;
}

/* The whole check of a typed code, as the web does it: 0 used now,
 * 1 wrong (or used before). */
static int
check(struct fx *f, struct store *st, const char *user, const char *typed)
{
    char code[RECOVERY_LEN + 1];
    struct store_recovery row;
    int r = recovery_lookup(st, &f->keys, user, typed, code, &row);

    if (r == STORE_NOTFOUND)
        return 1;
    assert_int_equal(r, STORE_OK);
    if (recovery_verify(f->keys.pepper, code, row.hash) != 0)
        return 1;
    r = recovery_use(st, user, row.id, "signin", "127.0.0.1", (int64_t)time(NULL), NULL);
    if (r == STORE_CONFLICT)
        return 1;
    assert_int_equal(r, STORE_OK);
    return 0;
}

static void
test_store_life(void **state)
{
    struct fx *f = *state;
    int64_t now = (int64_t)time(NULL), created = 0;
    char shown[RECOVERY_SHOWN_LEN + 1], upper[RECOVERY_SHOWN_LEN + 1];
    struct store_recovery row;
    char code[RECOVERY_LEN + 1];
    struct recovery_set *set, *set2;
    int total = -1, left = -1, removed = -1;

    /* Nothing yet: counts are zero, and no users row from a lookup. */
    assert_int_equal(store_recovery_count(f->a, "alice", &total, &left, &created), STORE_OK);
    assert_int_equal(total, 0);
    assert_int_equal(left, 0);
    assert_int_equal(created, 0);
    assert_int_equal(check(f, f->a, "alice", "7kq3m-x9a2p"), 1);

    set = make_set(f, f->a, "alice", now);
    assert_int_equal(store_recovery_count(f->b, "alice", &total, &left, &created), STORE_OK);
    assert_int_equal(total, RECOVERY_COUNT);
    assert_int_equal(left, RECOVERY_COUNT);
    assert_int_equal(created, now);

    /* A code as shown, and in upper case without the dash: each once. */
    recovery_format(set->codes[0], shown);
    assert_int_equal(check(f, f->a, "alice", shown), 0);
    assert_int_equal(check(f, f->a, "alice", shown), 1);
    assert_int_equal(check(f, f->b, "alice", set->codes[0]), 1);
    recovery_format(set->codes[1], upper);
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(check(f, f->b, "alice", upper), 0);
    assert_int_equal(store_recovery_count(f->a, "alice", &total, &left, NULL), STORE_OK);
    assert_int_equal(total, RECOVERY_COUNT);
    assert_int_equal(left, RECOVERY_COUNT - 2);
    /* Another user's code is not alice's. */
    assert_int_equal(check(f, f->a, "bob", set->codes[2]), 1);

    /* Two workers racing for one code: the store lets one of them win. */
    assert_int_equal(recovery_lookup(f->a, &f->keys, "alice", set->codes[3], code, &row),
                     STORE_OK);
    assert_int_equal(recovery_use(f->a, "alice", row.id, "signin", NULL, now, &left), STORE_OK);
    assert_int_equal(left, RECOVERY_COUNT - 3);
    assert_int_equal(recovery_use(f->b, "alice", row.id, "signin", NULL, now, NULL),
                     STORE_CONFLICT);

    /* A new set replaces the old one: every old code is dead. */
    set2 = make_set(f, f->b, "alice", now + 1);
    for (int i = 4; i < RECOVERY_COUNT; i++)
        assert_int_equal(check(f, f->a, "alice", set->codes[i]), 1);
    assert_int_equal(store_recovery_count(f->a, "alice", &total, &left, &created), STORE_OK);
    assert_int_equal(total, RECOVERY_COUNT);
    assert_int_equal(left, RECOVERY_COUNT);
    assert_int_equal(created, now + 1);
    assert_int_equal(check(f, f->a, "alice", set2->codes[9]), 0);

    /* Clear. */
    assert_int_equal(recovery_clear(f->a, "alice", "test", NULL, now, &removed), STORE_OK);
    assert_int_equal(removed, RECOVERY_COUNT);
    assert_int_equal(check(f, f->a, "alice", set2->codes[8]), 1);
    assert_int_equal(recovery_clear(f->a, "alice", "test", NULL, now, &removed), STORE_OK);
    assert_int_equal(removed, 0);

    recovery_set_wipe(set);
    recovery_set_wipe(set2);
    free(set);
    free(set2);
}

/* Audit rows name what happened, never a code. */
struct audit_seen {
    int codes, used, clear;
    const struct recovery_set *set;
};

static int
audit_row(void *arg, const struct store_audit_row *r)
{
    struct audit_seen *s = arg;

    for (int i = 0; i < RECOVERY_COUNT; i++)
        assert_null(strstr(r->detail, s->set->codes[i]));
    if (strcmp(r->event, "recovery_codes") == 0)
        s->codes++;
    else if (strcmp(r->event, "recovery_code_used") == 0)
        s->used++;
    else if (strcmp(r->event, "recovery_codes_clear") == 0)
        s->clear++;
    return 0;
}

static void
test_last_factor_clears(void **state)
{
    struct fx *f = *state;
    int64_t now = (int64_t)time(NULL);
    struct audit_seen seen = {0};
    struct recovery_set *set;
    int removed, left, devices, total = -1;

    assert_int_equal(store_factor_add(f->a, "carol", "totp", "", "x", 1, now, NULL), STORE_OK);
    assert_int_equal(store_factor_add(f->a, "carol", "email", "c@example.com", NULL, 0, now,
                                      NULL),
                     STORE_OK);
    set = make_set(f, f->a, "carol", now);
    assert_int_equal(check(f, f->a, "carol", set->codes[5]), 0);
    /* One factor left: the codes stay. */
    assert_int_equal(account_factor_remove(f->a, "carol", "totp", "test", NULL, now, &removed,
                                           &left, &devices),
                     STORE_OK);
    assert_int_equal(left, 1);
    assert_int_equal(store_recovery_count(f->a, "carol", &total, NULL, NULL), STORE_OK);
    assert_int_equal(total, RECOVERY_COUNT);
    /* The last one: they go with it. */
    assert_int_equal(account_factor_remove(f->a, "carol", "email", "test", NULL, now, &removed,
                                           &left, &devices),
                     STORE_OK);
    assert_int_equal(left, 0);
    assert_int_equal(store_recovery_count(f->a, "carol", &total, NULL, NULL), STORE_OK);
    assert_int_equal(total, 0);
    assert_int_equal(check(f, f->a, "carol", set->codes[6]), 1);

    seen.set = set;
    assert_int_equal(store_audit_list(f->a, "carol", 50, audit_row, &seen), STORE_OK);
    assert_int_equal(seen.codes, 1);
    assert_int_equal(seen.used, 1);
    assert_int_equal(seen.clear, 1);
    recovery_set_wipe(set);
    free(set);
}

int
main(void)
{
    log_init(LOG_WARN, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_hash_verify),
        cmocka_unit_test(test_locator),
        cmocka_unit_test_setup_teardown(test_set_distinct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_life, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_factor_clears, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
