/*
 * test_websession.c - the web side of auth/: tokens (format, stored only
 * hashed), sessions (create, lookup, idle and hard expiry, sign-out), CSRF
 * tied to the session, challenges (expiry, single use, attempt limit,
 * kinds), grants, trusted devices (trust, other user's cookie, expiry,
 * revoke, all revoked when the last factor goes), TOTP bind/confirm/replace
 * through account.c with single-use steps, app passwords through account.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "auth/account.h"
#include "auth/challenge.h"
#include "auth/device.h"
#include "auth/token.h"
#include "auth/totp.h"
#include "auth/websession.h"
#include "auth_test_util.h"
#include "core/log.h"

#define NOW ((int64_t)1800000000)

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    struct keys keys;
    struct store *st, *st2;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    if (keys_load_or_create(f->dir, &f->keys, err, sizeof(err)) != 0)
        return -1;
    f->st = tu_store(&f->cfg);
    f->st2 = tu_store(&f->cfg);
    if (f->st == NULL || f->st2 == NULL)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->st);
    store_close(f->st2);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

/* Counts rows of a table whose blob column equals bytes (raw SQL, test only). */
static int
count_blob(const struct fx *f, const char *sql, const void *bytes, size_t len)
{
    char path[PATH_MAX + 16];
    sqlite3 *db;
    sqlite3_stmt *s;
    int n = -1;

    store_path(f->dir, path, sizeof(path));
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_blob(s, 1, bytes, (int)len, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void
test_token_format(void **state)
{
    struct fx *f = *state;
    char a[TOKEN_TEXT_LEN + 1], b[TOKEN_TEXT_LEN + 1];
    unsigned char ha[TOKEN_HASH_LEN], hb[TOKEN_HASH_LEN], h2[TOKEN_HASH_LEN];

    assert_int_equal(token_new(f->keys.token, a, ha), 0);
    assert_int_equal(token_new(f->keys.token, b, hb), 0);
    assert_int_equal(strlen(a), TOKEN_TEXT_LEN);
    assert_string_not_equal(a, b);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     TOKEN_TEXT_LEN);
    assert_int_equal(token_hash(f->keys.token, a, strlen(a), h2), 0);
    assert_memory_equal(ha, h2, TOKEN_HASH_LEN);
    /* Wrong length, wrong alphabet. */
    assert_int_equal(token_hash(f->keys.token, a, strlen(a) - 1, h2), -1);
    a[5] = '=';
    assert_int_equal(token_hash(f->keys.token, a, strlen(a), h2), -1);
    assert_int_equal(token_hash(f->keys.token, "", 0, h2), -1);
}

static void
test_session_lifecycle(void **state)
{
    struct fx *f = *state;
    char token[TOKEN_TEXT_LEN + 1];
    struct websession ws, got;
    int64_t uid;

    assert_int_equal(store_user_id(f->st, "alice", &uid), STORE_NOTFOUND);
    assert_int_equal(websession_create(f->st, &f->keys, "alice", "192.0.2.1", NOW, token, &ws),
                     STORE_OK);
    /* A web sign-in makes the users row. */
    assert_int_equal(store_user_id(f->st, "alice", &uid), STORE_OK);
    /* Stored hashed: the token's bytes are nowhere in the table. */
    assert_int_equal(count_blob(f, "SELECT count(*) FROM web_sessions WHERE token_hash = ?1 "
                                   "OR instr(token_hash, ?1) > 0",
                                token, strlen(token)),
                     0);
    assert_int_equal(websession_lookup(f->st2, &f->keys, token, NOW + 10, &got), STORE_OK);
    assert_string_equal(got.user, "alice");
    assert_int_equal(got.id, ws.id);
    assert_string_equal(got.csrf, ws.csrf);
    /* Unknown and malformed tokens. */
    assert_int_equal(websession_lookup(f->st, &f->keys, "x", NOW, &got), STORE_NOTFOUND);
    {
        char first = token[0];

        token[0] = first == 'A' ? 'B' : 'A';
        assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW, &got), STORE_NOTFOUND);
        token[0] = first;
    }
    /* Idle expiry moves with use... */
    assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW + WEBSESSION_IDLE_S - 10, &got),
                     STORE_OK);
    assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW + 2 * WEBSESSION_IDLE_S - 20,
                                       &got),
                     STORE_OK);
    /* ...and sign-out ends it at once. */
    assert_int_equal(websession_end(f->st, got.id), STORE_OK);
    assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW + 2 * WEBSESSION_IDLE_S - 10,
                                       &got),
                     STORE_NOTFOUND);
}

static void
test_session_expiry(void **state)
{
    struct fx *f = *state;
    char token[TOKEN_TEXT_LEN + 1];
    struct websession ws, got;
    int64_t t = NOW;

    /* Idle: 12 hours without a request. */
    assert_int_equal(websession_create(f->st, &f->keys, "bob", NULL, NOW, token, &ws), STORE_OK);
    assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW + WEBSESSION_IDLE_S, &got),
                     STORE_NOTFOUND);
    /* Hard: 7 days however busy. */
    assert_int_equal(websession_create(f->st, &f->keys, "bob", NULL, NOW, token, &ws), STORE_OK);
    for (; t < NOW + WEBSESSION_MAX_S - 3600; t += 6 * 3600)
        assert_int_equal(websession_lookup(f->st, &f->keys, token, t, &got), STORE_OK);
    assert_int_equal(websession_lookup(f->st, &f->keys, token, NOW + WEBSESSION_MAX_S, &got),
                     STORE_NOTFOUND);
}

static void
test_csrf(void **state)
{
    struct fx *f = *state;
    char t1[TOKEN_TEXT_LEN + 1], t2[TOKEN_TEXT_LEN + 1], bad[TOKEN_TEXT_LEN + 1];
    struct websession w1, w2;

    assert_int_equal(websession_create(f->st, &f->keys, "alice", NULL, NOW, t1, &w1), STORE_OK);
    assert_int_equal(websession_create(f->st, &f->keys, "alice", NULL, NOW, t2, &w2), STORE_OK);
    assert_int_equal(strlen(w1.csrf), TOKEN_TEXT_LEN);
    assert_string_not_equal(w1.csrf, w2.csrf);
    assert_string_not_equal(w1.csrf, t1);
    assert_int_equal(websession_csrf_check(&f->keys, t1, w1.csrf), 0);
    /* Another session's token, a missing one, a near miss. */
    assert_int_equal(websession_csrf_check(&f->keys, t1, w2.csrf), -1);
    assert_int_equal(websession_csrf_check(&f->keys, t1, NULL), -1);
    assert_int_equal(websession_csrf_check(&f->keys, t1, ""), -1);
    memcpy(bad, w1.csrf, sizeof(bad));
    bad[TOKEN_TEXT_LEN - 1] = bad[TOKEN_TEXT_LEN - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(websession_csrf_check(&f->keys, t1, bad), -1);
}

static void
test_challenge_rules(void **state)
{
    struct fx *f = *state;
    char token[TOKEN_TEXT_LEN + 1];
    unsigned char hash[TOKEN_HASH_LEN];
    struct store_challenge ch;
    int left = -1;
    int64_t uid;

    assert_int_equal(challenge_create(f->st, &f->keys, "nobody", CHALLENGE_SIGNIN, NULL, 0,
                                      "192.0.2.9", NOW, CHALLENGE_TTL_S, token, NULL),
                     STORE_OK);
    /* No users row for a challenge. */
    assert_int_equal(store_user_id(f->st, "nobody", &uid), STORE_NOTFOUND);
    assert_int_equal(token_hash(f->keys.token, token, strlen(token), hash), 0);
    assert_int_equal(count_blob(f, "SELECT count(*) FROM challenges WHERE token_hash = ?1",
                                hash, sizeof(hash)),
                     1);
    /* Wrong kind; expired. */
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_GRANT, NOW, &ch),
                     CHALLENGE_GONE);
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_SIGNIN,
                                    NOW + CHALLENGE_TTL_S, &ch),
                     CHALLENGE_GONE);
    /* Five wrong codes, then locked. */
    for (int i = 1; i <= CHALLENGE_MAX_ATTEMPTS; i++) {
        assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_SIGNIN, NOW + i, &ch),
                         STORE_OK);
        assert_int_equal(challenge_wrong(f->st, &ch, &left), STORE_OK);
        assert_int_equal(left, CHALLENGE_MAX_ATTEMPTS - i);
    }
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_SIGNIN, NOW + 9, &ch),
                     CHALLENGE_LOCKED);
    assert_int_equal(challenge_consume(f->st, &ch, NOW + 9), CHALLENGE_GONE);
}

static void
test_challenge_single_use(void **state)
{
    struct fx *f = *state;
    char token[TOKEN_TEXT_LEN + 1];
    struct store_challenge a, b;

    assert_int_equal(challenge_create(f->st, &f->keys, "alice", CHALLENGE_GRANT, "unbind:totp",
                                      11, NULL, NOW, CHALLENGE_TTL_S, token, NULL),
                     STORE_OK);
    /* Two connections open it; only one may use it. */
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_GRANT, NOW, &a), STORE_OK);
    assert_int_equal(challenge_open(f->st2, &f->keys, token, CHALLENGE_GRANT, NOW, &b), STORE_OK);
    assert_int_equal(a.data_len, 11);
    assert_memory_equal(a.data, "unbind:totp", 11);
    assert_string_equal(a.user, "alice");
    assert_int_equal(challenge_consume(f->st, &a, NOW + 1), STORE_OK);
    assert_int_equal(challenge_consume(f->st2, &b, NOW + 1), CHALLENGE_GONE);
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_GRANT, NOW + 2, &a),
                     CHALLENGE_GONE);
    /* An expired grant cannot be used even if opened in time. */
    assert_int_equal(challenge_create(f->st, &f->keys, "alice", CHALLENGE_GRANT, "x", 1, NULL,
                                      NOW, CHALLENGE_TTL_S, token, NULL),
                     STORE_OK);
    assert_int_equal(challenge_open(f->st, &f->keys, token, CHALLENGE_GRANT, NOW, &a), STORE_OK);
    assert_int_equal(challenge_consume(f->st, &a, NOW + CHALLENGE_TTL_S), CHALLENGE_GONE);
}

static void
test_challenge_find_and_replace(void **state)
{
    struct fx *f = *state;
    char t1[TOKEN_TEXT_LEN + 1], t2[TOKEN_TEXT_LEN + 1];
    struct store_challenge ch;

    assert_int_equal(challenge_create(f->st, &f->keys, "alice", CHALLENGE_TOTP_ENROLL, "b1", 2,
                                      NULL, NOW, CHALLENGE_ENROLL_TTL_S, t1, NULL),
                     STORE_OK);
    assert_int_equal(store_challenge_remove_kind(f->st, "alice", CHALLENGE_TOTP_ENROLL), STORE_OK);
    assert_int_equal(challenge_create(f->st, &f->keys, "alice", CHALLENGE_TOTP_ENROLL, "b2", 2,
                                      NULL, NOW, CHALLENGE_ENROLL_TTL_S, t2, NULL),
                     STORE_OK);
    assert_int_equal(store_challenge_find(f->st, "alice", CHALLENGE_TOTP_ENROLL, &ch), STORE_OK);
    assert_memory_equal(ch.data, "b2", 2);
    assert_int_equal(challenge_open(f->st, &f->keys, t1, NULL, NOW, &ch), CHALLENGE_GONE);
    assert_int_equal(store_challenge_find(f->st, "bob", CHALLENGE_TOTP_ENROLL, &ch),
                     STORE_NOTFOUND);
}

/* A TOTP code of secret at t. */
static void
code_at(const unsigned char *secret, int64_t t, char out[8])
{
    uint32_t c;

    assert_int_equal(totp_hotp(secret, TOTP_SECRET_LEN, (uint64_t)totp_step(t), 6, &c), 0);
    snprintf(out, 8, "%06u", c);
}

static void
test_totp_bind_and_check(void **state)
{
    struct fx *f = *state;
    unsigned char secret[TOTP_SECRET_LEN], secret2[TOTP_SECRET_LEN];
    char b32[64], uri[TOTP_URI_MAX], code[8];
    int64_t step = -1, id = 0, id2 = 0;
    int count = -1;

    assert_int_equal(account_totp_secret("alice", secret, b32, uri), 0);
    assert_non_null(strstr(uri, b32));
    code_at(secret, NOW, code);
    /* Confirming a pending enrollment: the code matches the unbound secret. */
    assert_int_equal(account_totp_check_secret(secret, sizeof(secret), code, NOW, &step),
                     STORE_OK);
    assert_int_equal(account_totp_check_secret(secret, sizeof(secret), "12345", NOW, &step),
                     ACCOUNT_BAD_CODE);
    assert_int_equal(account_totp_bind(f->st, &f->keys, "alice", secret, sizeof(secret), step,
                                       "web", "192.0.2.1", NOW, &id),
                     STORE_OK);
    assert_int_equal(store_factor_count(f->st, "alice", &count), STORE_OK);
    assert_int_equal(count, 1);
    /* Never two TOTP factors. */
    assert_int_equal(account_totp_bind(f->st, &f->keys, "alice", secret, sizeof(secret), -1,
                                       "web", NULL, NOW, &id2),
                     STORE_CONFLICT);
    /* The confirming code was used up by the binding. */
    assert_int_equal(account_totp_check(f->st, &f->keys, "alice", code, NOW), ACCOUNT_BAD_CODE);
    /* The next step's code works once. */
    code_at(secret, NOW + TOTP_PERIOD, code);
    assert_int_equal(account_totp_check(f->st, &f->keys, "alice", code, NOW + TOTP_PERIOD),
                     STORE_OK);
    assert_int_equal(account_totp_check(f->st2, &f->keys, "alice", code, NOW + TOTP_PERIOD),
                     ACCOUNT_BAD_CODE);
    assert_int_equal(account_totp_check(f->st, &f->keys, "alice", "abcdef", NOW),
                     ACCOUNT_BAD_CODE);
    assert_int_equal(account_totp_check(f->st, &f->keys, "bob", code, NOW), ACCOUNT_NO_FACTOR);

    /* Change: the old authenticator stops working, the new one works. */
    assert_int_equal(account_totp_secret("alice", secret2, b32, uri), 0);
    assert_int_equal(account_totp_replace(f->st, &f->keys, "alice", secret2, sizeof(secret2), -1,
                                          "web", NULL, NOW + 120, &id2),
                     STORE_OK);
    assert_int_equal(id2, id);
    code_at(secret, NOW + 150, code);
    assert_int_equal(account_totp_check(f->st, &f->keys, "alice", code, NOW + 150),
                     ACCOUNT_BAD_CODE);
    code_at(secret2, NOW + 150, code);
    assert_int_equal(account_totp_check(f->st, &f->keys, "alice", code, NOW + 150), STORE_OK);
}

static void
test_devices(void **state)
{
    struct fx *f = *state;
    char t1[TOKEN_TEXT_LEN + 1], t2[TOKEN_TEXT_LEN + 1];
    unsigned char secret[TOTP_SECRET_LEN] = {1, 2, 3};
    int64_t d1, d2, fid;
    int removed = -1, left = -1, devices = -1;

    assert_int_equal(account_totp_bind(f->st, &f->keys, "alice", secret, sizeof(secret), -1,
                                       "cli", NULL, NOW, &fid),
                     STORE_OK);
    assert_int_equal(device_trust(f->st, &f->keys, "alice", "Firefox", "192.0.2.1", NOW,
                                  DEVICE_DAYS_DEFAULT, t1, &d1),
                     STORE_OK);
    assert_int_equal(device_trust(f->st, &f->keys, "alice", "Chrome", "192.0.2.2", NOW,
                                  DEVICE_DAYS_DEFAULT, t2, &d2),
                     STORE_OK);
    assert_int_equal(device_check(f->st2, &f->keys, t1, "alice", "192.0.2.1", NOW + 86400),
                     STORE_OK);
    /* Bound to the user; expires after 30 days; garbage is nothing. */
    assert_int_equal(device_check(f->st, &f->keys, t1, "bob", NULL, NOW), STORE_NOTFOUND);
    assert_int_equal(device_check(f->st, &f->keys, t1, "alice", NULL,
                                  NOW + DEVICE_DAYS_DEFAULT * 86400),
                     STORE_NOTFOUND);
    assert_int_equal(device_check(f->st, &f->keys, "junk", "alice", NULL, NOW), STORE_NOTFOUND);
    assert_int_equal(device_check(f->st, &f->keys, NULL, "alice", NULL, NOW), STORE_NOTFOUND);
    /* Revoke one (only one's own). */
    assert_int_equal(store_device_revoke(f->st, "bob", d1), STORE_NOTFOUND);
    assert_int_equal(store_device_revoke(f->st, "alice", d1), STORE_OK);
    assert_int_equal(device_check(f->st, &f->keys, t1, "alice", NULL, NOW), STORE_NOTFOUND);
    assert_int_equal(device_check(f->st, &f->keys, t2, "alice", NULL, NOW), STORE_OK);
    /* The last factor goes: every trusted device goes with it. */
    assert_int_equal(account_factor_remove(f->st, "alice", "totp", "web", NULL, NOW, &removed,
                                           &left, &devices),
                     STORE_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(left, 0);
    assert_int_equal(devices, 1);
    assert_int_equal(device_check(f->st, &f->keys, t2, "alice", NULL, NOW), STORE_NOTFOUND);
    assert_int_equal(account_factor_remove(f->st, "alice", "totp", "web", NULL, NOW, &removed,
                                           &left, &devices),
                     STORE_NOTFOUND);
}

static void
test_devices_kept_while_a_factor_is_left(void **state)
{
    struct fx *f = *state;
    char t1[TOKEN_TEXT_LEN + 1];
    unsigned char secret[TOTP_SECRET_LEN] = {9};
    int64_t fid, d1;
    int removed, left, devices = -1;

    assert_int_equal(account_totp_bind(f->st, &f->keys, "carol", secret, sizeof(secret), -1,
                                       "cli", NULL, NOW, &fid),
                     STORE_OK);
    assert_int_equal(store_factor_add(f->st, "carol", "email", "c@example.com", NULL, 0, NOW,
                                      &fid),
                     STORE_OK);
    assert_int_equal(device_trust(f->st, &f->keys, "carol", "x", NULL, NOW, 30, t1, &d1),
                     STORE_OK);
    assert_int_equal(account_factor_remove(f->st, "carol", "totp", "web", NULL, NOW, &removed,
                                           &left, &devices),
                     STORE_OK);
    assert_int_equal(left, 1);
    assert_int_equal(devices, 0);
    assert_int_equal(device_check(f->st, &f->keys, t1, "carol", NULL, NOW), STORE_OK);
}

struct audit_find {
    const char *event, *needle;
    int found;
};

static int
audit_row(void *arg, const struct store_audit_row *r)
{
    struct audit_find *a = arg;

    if (strcmp(r->event, a->event) == 0 && strstr(r->detail, a->needle) != NULL)
        a->found++;
    return 0;
}

static void
test_apppw_shared_logic(void **state)
{
    struct fx *f = *state;
    struct apppw_params p = {f->cfg.argon2_memory_kib, 1, 1};
    char pw[APPPW_LEN + 1], loc[APPPW_LOCATOR_LEN + 1], hash[APPPW_HASH_MAX];
    struct store_apppw row;
    struct audit_find a = {"apppw_create", "via=web", 0};
    int64_t id = 0;
    int removed = -1;

    assert_int_equal(account_apppw_name_ok("Foxmail"), 0);
    assert_int_equal(account_apppw_name_ok(""), -1);
    assert_int_equal(account_apppw_name_ok("a\nb"), -1);
    assert_int_equal(account_apppw_name_ok("\xff"), -1);
    assert_int_equal(account_apppw_name_ok("1234567890123456789012345678901234567890123456789012345678901234"), 0);
    assert_int_equal(account_apppw_name_ok("12345678901234567890123456789012345678901234567890123456789012345"), -1);
    assert_int_equal(account_apppw_pick(f->st, &f->keys, "dave", pw, loc), STORE_OK);
    assert_int_equal(strlen(pw), APPPW_LEN);
    assert_int_equal(apppw_hash(&p, f->keys.pepper, pw, hash, sizeof(hash)), 0);
    assert_int_equal(account_apppw_save(f->st, "dave", "Foxmail", APPPW_SCOPE_ALL, loc, hash,
                                        NOW, 0, "web", "192.0.2.1", &id),
                     STORE_OK);
    assert_int_equal(store_apppw_find(f->st, "dave", loc, &row), STORE_OK);
    assert_int_equal(apppw_verify(f->keys.pepper, pw, row.hash), 0);
    assert_int_equal(store_audit_list(f->st, "dave", 10, audit_row, &a), STORE_OK);
    assert_int_equal(a.found, 1);
    assert_int_equal(account_apppw_revoke(f->st, "dave", id + 100, "web", NULL, NOW, &removed),
                     STORE_NOTFOUND);
    assert_int_equal(account_apppw_revoke(f->st, "dave", id, "web", NULL, NOW, &removed),
                     STORE_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(store_apppw_get(f->st, id, &row), STORE_NOTFOUND);
    assert_int_equal(account_apppw_revoke(f->st, "dave", 0, "web", NULL, NOW, &removed),
                     STORE_OK);
    assert_int_equal(removed, 0);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_token_format),
        T(test_session_lifecycle),
        T(test_session_expiry),
        T(test_csrf),
        T(test_challenge_rules),
        T(test_challenge_single_use),
        T(test_challenge_find_and_replace),
        T(test_totp_bind_and_check),
        T(test_devices),
        T(test_devices_kept_while_a_factor_is_left),
        T(test_apppw_shared_logic),
    };

    log_init(LOG_ERROR, 2);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
