/*
 * test_scene.c - QR scenes of the WeChat factor (auth/scene.c and the
 * store's scenes, WeChat bindings and mini-program sessions): the shape of
 * an id, stored by its keyed hash only, the states a waiting page sees,
 * an answer given once and a scene used once, who may answer, which
 * answers fit which purpose, number matching, and rebinding an account.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "auth/challenge.h"
#include "auth/scene.h"
#include "auth_test_util.h"
#include "core/log.h"

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    struct keys keys;
    struct store *st;
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    memset(f->keys.token, 0x33, sizeof(f->keys.token));
    f->st = tu_store(&f->cfg);
    if (f->st == NULL)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->st);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

/* A new scene for alice with this purpose and number; its id into text. */
static void
make_scene(struct fx *f, const char *purpose, int number, int64_t now,
           struct store_scene *sc, char text[SCENE_LEN + 1])
{
    memset(sc, 0, sizeof(*sc));
    snprintf(sc->user, sizeof(sc->user), "alice@example.com");
    snprintf(sc->purpose, sizeof(sc->purpose), "%s", purpose);
    snprintf(sc->addr, sizeof(sc->addr), "192.0.2.7");
    sc->number = number;
    assert_int_equal(scene_create(f->st, &f->keys, sc, now, SCENE_TTL_S, text), STORE_OK);
}

static void
test_text_ok(void **state)
{
    (void)state;
    assert_true(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"));
    assert_true(scene_text_ok("0123456789ghijklmnopqrstuvwxyzAB"));
    assert_false(scene_text_ok(NULL));
    assert_false(scene_text_ok(""));
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcde"));    /* 31 */
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"));  /* 33 */
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcde-"));
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcde_"));
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcde "));
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZabcde\xc3"));
    assert_false(scene_text_ok("ABCDEFGHIJKLMNOP=RSTUVWXYZabcdef"));
}

static void
test_create_open(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    char text[SCENE_LEN + 1], other[SCENE_LEN + 1];
    unsigned char hash[STORE_TOKEN_HASH_LEN];
    int64_t now = 1700000000;

    make_scene(f, SCENE_SIGNIN, 42, now, &sc, text);
    assert_int_equal(strlen(text), SCENE_LEN);
    assert_true(scene_text_ok(text));
    assert_true(sc.id > 0);
    assert_int_equal(sc.created, now);
    assert_int_equal(sc.expires, now + SCENE_TTL_S);

    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(got.id, sc.id);
    assert_string_equal(got.user, "alice@example.com");
    assert_string_equal(got.purpose, SCENE_SIGNIN);
    assert_string_equal(got.addr, "192.0.2.7");
    assert_int_equal(got.number, 42);
    assert_int_equal(got.created, now);
    assert_int_equal(got.expires, now + SCENE_TTL_S);
    assert_string_equal(got.answer, "");
    assert_string_equal(got.openid, "");
    assert_int_equal(got.used, 0);

    /* Kept by its keyed hash: the store finds the hash, not the text. */
    assert_int_equal(scene_hash(&f->keys, text, hash), 0);
    assert_int_equal(store_scene_get(f->st, hash, &got), STORE_OK);
    assert_int_equal(got.id, sc.id);
    memset(hash, 0, sizeof(hash));
    memcpy(hash, text, sizeof(hash));
    assert_int_equal(store_scene_get(f->st, hash, &got), STORE_NOTFOUND);

    /* Another key gives another hash. */
    {
        struct keys k2 = f->keys;

        memset(k2.token, 0x44, sizeof(k2.token));
        assert_int_equal(scene_open(f->st, &k2, text, &got), SCENE_GONE);
    }

    /* A different well-formed id, and malformed ones, are gone. */
    memcpy(other, text, sizeof(other));
    other[0] = other[0] == 'A' ? 'B' : 'A';
    assert_int_equal(scene_open(f->st, &f->keys, other, &got), SCENE_GONE);
    other[0] = '-';
    assert_int_equal(scene_open(f->st, &f->keys, other, &got), SCENE_GONE);
    assert_int_equal(scene_open(f->st, &f->keys, "", &got), SCENE_GONE);
    assert_int_equal(scene_open(f->st, &f->keys, NULL, &got), SCENE_GONE);
    other[SCENE_LEN - 1] = '\0';
    memcpy(other, text, SCENE_LEN - 1);
    assert_int_equal(scene_open(f->st, &f->keys, other, &got), SCENE_GONE);
    assert_int_equal(scene_hash(&f->keys, other, hash), -1);

    /* Two scenes, two ids. */
    make_scene(f, SCENE_BIND, 0, now, &got, other);
    assert_string_not_equal(text, other);
    assert_true(got.id != sc.id);
}

static void
test_states(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    char text[SCENE_LEN + 1];
    int64_t now = 1700000000;

    assert_string_equal(scene_state_name(SCENE_PENDING), "pending");
    assert_string_equal(scene_state_name(SCENE_APPROVED), "approved");
    assert_string_equal(scene_state_name(SCENE_DENIED), "denied");
    assert_string_equal(scene_state_name(SCENE_EXPIRED), "expired");
    assert_string_equal(scene_state_name(SCENE_USED), "used");
    assert_string_equal(scene_state_name(SCENE_FAILED), "failed");

    /* Pending, then expired once expires is reached. */
    make_scene(f, SCENE_SIGNIN, 0, now, &sc, text);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(scene_state(&got, now), SCENE_PENDING);
    assert_int_equal(scene_state(&got, now + SCENE_TTL_S - 1), SCENE_PENDING);
    assert_int_equal(scene_state(&got, now + SCENE_TTL_S), SCENE_EXPIRED);
    assert_int_equal(scene_state(&got, now + SCENE_TTL_S + 100), SCENE_EXPIRED);
    /* Expired or not, scene_open still finds it. */
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);

    /* Approved after an answer, then used after store_scene_use. */
    assert_int_equal(scene_answer(f->st, &got, "trust", "oWX-alice", now + 10), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "trust");
    assert_string_equal(got.openid, "oWX-alice");
    assert_int_equal(scene_state(&got, now + 11), SCENE_APPROVED);
    assert_int_equal(store_scene_use(f->st, got.id), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(got.used, 1);
    assert_int_equal(scene_state(&got, now + 12), SCENE_USED);
    assert_int_equal(scene_state(&got, now + SCENE_TTL_S + 1), SCENE_USED);

    /* Denied after "deny". */
    make_scene(f, SCENE_UNBIND, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, "deny", "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(scene_state(&got, now + 2), SCENE_DENIED);

    /* Failed after SCENE_FAIL (a confirmed bind that could not be made). */
    make_scene(f, SCENE_BIND, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, SCENE_FAIL, "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(scene_state(&got, now + 2), SCENE_FAILED);
}

static void
test_answer_once(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    char text[SCENE_LEN + 1];
    int64_t now = 1700000000;

    make_scene(f, SCENE_CHANGE, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(scene_answer(f->st, &sc, "deny", "oWX-mallory", now + 2), SCENE_ANSWERED);
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now + 2), SCENE_ANSWERED);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "confirm");
    assert_string_equal(got.openid, "oWX-alice");

    /* Not at or after expiry. */
    make_scene(f, SCENE_CHANGE, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now + SCENE_TTL_S),
                     SCENE_ANSWERED);
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now + SCENE_TTL_S + 60),
                     SCENE_ANSWERED);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "");
    assert_int_equal(scene_state(&got, now + SCENE_TTL_S), SCENE_EXPIRED);
    /* Just before expiry is still in time. */
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now + SCENE_TTL_S - 1),
                     STORE_OK);

    /* An unknown scene row takes no answer. */
    sc.id = 999999;
    assert_int_equal(scene_answer(f->st, &sc, "confirm", "oWX-alice", now), SCENE_ANSWERED);
}

static void
test_use_once(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    char text[SCENE_LEN + 1];
    int64_t now = 1700000000;

    /* Unanswered: not usable. */
    make_scene(f, SCENE_SIGNIN, 0, now, &sc, text);
    assert_int_equal(store_scene_use(f->st, sc.id), STORE_CONFLICT);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(got.used, 0);
    /* Approved: once. */
    assert_int_equal(scene_answer(f->st, &sc, "temporary", "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(store_scene_use(f->st, sc.id), STORE_OK);
    assert_int_equal(store_scene_use(f->st, sc.id), STORE_CONFLICT);

    /* Denied: never. */
    make_scene(f, SCENE_SIGNIN, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, "deny", "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(store_scene_use(f->st, sc.id), STORE_CONFLICT);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(got.used, 0);
    assert_int_equal(scene_state(&got, now + 2), SCENE_DENIED);

    /* Failed: never. */
    make_scene(f, SCENE_BIND, 0, now, &sc, text);
    assert_int_equal(scene_answer(f->st, &sc, SCENE_FAIL, "oWX-alice", now + 1), STORE_OK);
    assert_int_equal(store_scene_use(f->st, sc.id), STORE_CONFLICT);

    /* Unknown row. */
    assert_int_equal(store_scene_use(f->st, 999999), STORE_CONFLICT);
}

static void
test_may_answer(void **state)
{
    struct store_scene sc;
    static const char *const others[] = {SCENE_SIGNIN, SCENE_UNBIND, SCENE_CHANGE};

    (void)state;
    memset(&sc, 0, sizeof(sc));
    snprintf(sc.purpose, sizeof(sc.purpose), "%s", SCENE_BIND);
    assert_int_equal(scene_may_answer(&sc, "oWX-anyone", ""), 0);
    assert_int_equal(scene_may_answer(&sc, "oWX-anyone", "oWX-alice"), 0);

    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        snprintf(sc.purpose, sizeof(sc.purpose), "%s", others[i]);
        assert_int_equal(scene_may_answer(&sc, "oWX-alice", "oWX-alice"), 0);
        assert_int_equal(scene_may_answer(&sc, "oWX-bob", "oWX-alice"), SCENE_WRONG_ACCOUNT);
        assert_int_equal(scene_may_answer(&sc, "oWX-alic", "oWX-alice"), SCENE_WRONG_ACCOUNT);
        assert_int_equal(scene_may_answer(&sc, "oWX-alice", ""), SCENE_WRONG_ACCOUNT);
        assert_int_equal(scene_may_answer(&sc, "oWX-alice", NULL), SCENE_WRONG_ACCOUNT);
        /* No account bound: an empty openid must not match it. */
        assert_int_equal(scene_may_answer(&sc, "", ""), SCENE_WRONG_ACCOUNT);
        assert_int_equal(scene_may_answer(&sc, NULL, ""), SCENE_WRONG_ACCOUNT);
        assert_int_equal(scene_may_answer(&sc, NULL, NULL), SCENE_WRONG_ACCOUNT);
    }
}

static void
test_check_answer(void **state)
{
    struct store_scene sc;
    const char *stored;
    static const char *const others[] = {SCENE_BIND, SCENE_REBIND, SCENE_UNBIND, SCENE_CHANGE};

    (void)state;
    memset(&sc, 0, sizeof(sc));

    /* Sign-in: trust, temporary, deny. */
    snprintf(sc.purpose, sizeof(sc.purpose), "%s", SCENE_SIGNIN);
    assert_int_equal(scene_check_answer(&sc, "trust", 0, &stored), 0);
    assert_string_equal(stored, "trust");
    assert_int_equal(scene_check_answer(&sc, "temporary", 0, &stored), 0);
    assert_string_equal(stored, "temporary");
    assert_int_equal(scene_check_answer(&sc, "deny", 0, &stored), 0);
    assert_string_equal(stored, "deny");
    assert_int_equal(scene_check_answer(&sc, "confirm", 0, &stored), SCENE_BAD_ANSWER);
    assert_null(stored);
    assert_int_equal(scene_check_answer(&sc, "", 0, &stored), SCENE_BAD_ANSWER);
    assert_int_equal(scene_check_answer(&sc, "Trust", 0, &stored), SCENE_BAD_ANSWER);
    assert_int_equal(scene_check_answer(&sc, "trust ", 0, &stored), SCENE_BAD_ANSWER);
    assert_int_equal(scene_check_answer(&sc, NULL, 0, &stored), SCENE_BAD_ANSWER);
    assert_null(stored);

    /* The rest: confirm, deny. */
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        snprintf(sc.purpose, sizeof(sc.purpose), "%s", others[i]);
        assert_int_equal(scene_check_answer(&sc, "confirm", 0, &stored), 0);
        assert_string_equal(stored, "confirm");
        assert_int_equal(scene_check_answer(&sc, "deny", 0, &stored), 0);
        assert_string_equal(stored, "deny");
        assert_int_equal(scene_check_answer(&sc, "trust", 0, &stored), SCENE_BAD_ANSWER);
        assert_int_equal(scene_check_answer(&sc, "temporary", 0, &stored), SCENE_BAD_ANSWER);
        assert_int_equal(scene_check_answer(&sc, "yes", 0, &stored), SCENE_BAD_ANSWER);
        assert_null(stored);
    }

    /* Number matching: the right pick keeps the answer, a wrong one is a no. */
    snprintf(sc.purpose, sizeof(sc.purpose), "%s", SCENE_SIGNIN);
    sc.number = 57;
    assert_int_equal(scene_check_answer(&sc, "trust", 57, &stored), 0);
    assert_string_equal(stored, "trust");
    assert_int_equal(scene_check_answer(&sc, "trust", 58, &stored), 0);
    assert_string_equal(stored, "deny");
    assert_int_equal(scene_check_answer(&sc, "temporary", 0, &stored), 0);
    assert_string_equal(stored, "deny");
    assert_int_equal(scene_check_answer(&sc, "deny", 57, &stored), 0);
    assert_string_equal(stored, "deny");
    /* A bad answer stays bad even with the right number. */
    assert_int_equal(scene_check_answer(&sc, "confirm", 57, &stored), SCENE_BAD_ANSWER);
    snprintf(sc.purpose, sizeof(sc.purpose), "%s", SCENE_CHANGE);
    assert_int_equal(scene_check_answer(&sc, "confirm", 57, &stored), 0);
    assert_string_equal(stored, "confirm");
    assert_int_equal(scene_check_answer(&sc, "confirm", 75, &stored), 0);
    assert_string_equal(stored, "deny");
}

static void
test_numbers(void **state)
{
    struct store_scene sc;
    int a[3], b[3], pos_seen[3] = {0};

    (void)state;
    memset(&sc, 0, sizeof(sc));
    for (int64_t id = 1; id <= 300; id++) {
        sc.id = id;
        sc.number = 10 + (int)(id * 7 % 90);
        scene_numbers(&sc, a);
        scene_numbers(&sc, b);
        assert_memory_equal(a, b, sizeof(a));
        int hits = 0;
        for (int i = 0; i < 3; i++) {
            assert_in_range(a[i], 10, 99);
            if (a[i] == sc.number) {
                hits++;
                pos_seen[i]++;
            }
        }
        assert_int_equal(hits, 1);
        assert_true(a[0] != a[1] && a[0] != a[2] && a[1] != a[2]);
    }
    /* The right number is not always in the same place. */
    for (int i = 0; i < 3; i++)
        assert_true(pos_seen[i] > 0);
}

struct listed {
    int n;
    char user[STORE_NAME_MAX];
    char subject[STORE_SUBJECT_MAX];
    char kind[STORE_KIND_MAX];
};

static int
on_listed(void *arg, const struct store_factor *f)
{
    struct listed *l = arg;

    l->n++;
    snprintf(l->user, sizeof(l->user), "%s", f->user);
    snprintf(l->subject, sizeof(l->subject), "%s", f->subject);
    snprintf(l->kind, sizeof(l->kind), "%s", f->kind);
    return 0;
}

static const unsigned char bind_secret[] = "sealed-secret";

/* store_wechat_bind of bind_secret, without a scene or grant. */
static int
wx_bind(struct fx *f, const char *user, const char *openid, const char *label, int replace,
        int64_t now, int64_t *id)
{
    struct store_wechat_binding b = {
        .user = user, .openid = openid, .label = label, .secret = bind_secret,
        .secret_len = sizeof(bind_secret), .replace = replace,
    };

    return store_wechat_bind(f->st, &b, now, id);
}

static void
test_wechat_bind(void **state)
{
    struct fx *f = *state;
    struct listed l;
    struct store_factor fac;
    int64_t id1 = 0, id2 = 0, now = 1700000000;
    int count = -1;
    /* A rebind without a binding. */
    assert_int_equal(wx_bind(f, "alice@example.com", "oWX-old", "WeChat", 1, now, &id1),
                     STORE_NOTFOUND);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-old", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 0);

    /* Bind. */
    assert_int_equal(wx_bind(f, "alice@example.com", "oWX-old", "WeChat", 0, now, &id1),
                     STORE_OK);
    assert_true(id1 > 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-old", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.user, "alice@example.com");
    assert_string_equal(l.subject, "oWX-old");
    assert_string_equal(l.kind, "wechat");

    /* A second bind conflicts, and changes nothing. */
    assert_int_equal(wx_bind(f, "alice@example.com", "oWX-new", "WeChat", 0, now + 1, &id2),
                     STORE_CONFLICT);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-new", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 0);

    /* A rebind replaces it. */
    assert_int_equal(wx_bind(f, "alice@example.com", "oWX-new", "WeChat 2", 1, now + 2, &id2),
                     STORE_OK);
    assert_true(id2 > 0 && id2 != id1);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-old", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 0);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-new", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.user, "alice@example.com");
    assert_string_equal(l.subject, "oWX-new");
    assert_int_equal(store_factor_count(f->st, "alice@example.com", &count), STORE_OK);
    assert_int_equal(count, 1);
    assert_int_equal(store_factor_get(f->st, "alice@example.com", "wechat", &fac), STORE_OK);
    assert_int_equal(fac.id, id2);
    assert_string_equal(fac.label, "WeChat 2");
    assert_int_equal(fac.secret_len, sizeof(bind_secret));
    assert_memory_equal(fac.secret, bind_secret, sizeof(bind_secret));

    /* One openid may serve two mailboxes: both are listed. */
    assert_int_equal(wx_bind(f, "bob@example.com", "oWX-new", "WeChat", 0, now + 3, NULL),
                     STORE_OK);
    memset(&l, 0, sizeof(l));
    assert_int_equal(store_wechat_list(f->st, "oWX-new", on_listed, &l), STORE_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.user, "bob@example.com");
}

/* A binding with its scene and grant: all of it or nothing. */
static void
test_wechat_bind_scene_grant(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    struct store_challenge ch;
    struct store_factor fac;
    char text[SCENE_LEN + 1], grant[TOKEN_TEXT_LEN + 1];
    int64_t now = 1700000000, gid = 0, id = 0;
    struct store_wechat_binding b = {
        .user = "alice@example.com", .openid = "oWX-new", .label = "WeChat",
        .secret = bind_secret, .secret_len = sizeof(bind_secret),
        .grant_max_attempts = CHALLENGE_MAX_ATTEMPTS,
    };

    /* A bind answers its scene "confirm" by the binding's openid. */
    make_scene(f, SCENE_BIND, 0, now, &sc, text);
    b.scene_id = sc.id;
    assert_int_equal(store_wechat_bind(f->st, &b, now + 1, &id), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "confirm");
    assert_string_equal(got.openid, "oWX-new");
    /* The same scene again: gone, and nothing changes. */
    b.replace = 1;
    assert_int_equal(store_wechat_bind(f->st, &b, now + 2, NULL), STORE_GONE);

    /* A rebind that conflicts leaves its scene unanswered. */
    make_scene(f, SCENE_BIND, 0, now, &sc, text);
    b.replace = 0;
    b.scene_id = sc.id;
    assert_int_equal(store_wechat_bind(f->st, &b, now + 3, NULL), STORE_CONFLICT);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "");

    /* A rebind uses its change grant up, in the same transaction. */
    assert_int_equal(challenge_create(f->st, &f->keys, "alice@example.com", CHALLENGE_GRANT,
                                      "change:wechat", 13, "192.0.2.7", now, 300, grant, &gid),
                     STORE_OK);
    make_scene(f, SCENE_REBIND, 0, now, &sc, text);
    b.replace = 1;
    b.openid = "oWX-third";
    b.scene_id = sc.id;
    b.grant_id = gid;
    assert_int_equal(store_wechat_bind(f->st, &b, now + 4, &id), STORE_OK);
    assert_int_equal(challenge_open(f->st, &f->keys, grant, CHALLENGE_GRANT, now + 5, &ch),
                     CHALLENGE_GONE);
    assert_int_equal(store_factor_get(f->st, "alice@example.com", "wechat", &fac), STORE_OK);
    assert_string_equal(fac.subject, "oWX-third");

    /* The grant once more (a second QR's scene): gone; that scene stays
     * unanswered and the binding stays as it is. */
    make_scene(f, SCENE_REBIND, 0, now, &sc, text);
    b.openid = "oWX-fourth";
    b.scene_id = sc.id;
    assert_int_equal(store_wechat_bind(f->st, &b, now + 6, NULL), STORE_GONE);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_string_equal(got.answer, "");
    assert_int_equal(store_factor_get(f->st, "alice@example.com", "wechat", &fac), STORE_OK);
    assert_string_equal(fac.subject, "oWX-third");
    OPENSSL_cleanse(&fac, sizeof(fac));
}

static void
test_mpsession(void **state)
{
    struct fx *f = *state;
    unsigned char h1[STORE_TOKEN_HASH_LEN], h2[STORE_TOKEN_HASH_LEN];
    char openid[STORE_SUBJECT_MAX];
    int64_t now = 1700000000;

    memset(h1, 0xa1, sizeof(h1));
    memset(h2, 0xb2, sizeof(h2));
    assert_int_equal(store_mpsession_add(f->st, h1, "oWX-alice", now, now + 3600), STORE_OK);

    memset(openid, 0, sizeof(openid));
    assert_int_equal(store_mpsession_get(f->st, h1, now, openid, sizeof(openid)), STORE_OK);
    assert_string_equal(openid, "oWX-alice");
    assert_int_equal(store_mpsession_get(f->st, h1, now + 3599, openid, sizeof(openid)),
                     STORE_OK);
    assert_int_equal(store_mpsession_get(f->st, h1, now + 3600, openid, sizeof(openid)),
                     STORE_NOTFOUND);
    assert_int_equal(store_mpsession_get(f->st, h1, now + 7200, openid, sizeof(openid)),
                     STORE_NOTFOUND);
    assert_int_equal(store_mpsession_get(f->st, h2, now, openid, sizeof(openid)),
                     STORE_NOTFOUND);

    /* Pruned once expired. */
    assert_int_equal(store_mpsession_prune(f->st, now + 3600), STORE_OK);
    assert_int_equal(store_mpsession_get(f->st, h1, now, openid, sizeof(openid)),
                     STORE_NOTFOUND);
}

static void
test_scene_prune(void **state)
{
    struct fx *f = *state;
    struct store_scene sc, got;
    char text[SCENE_LEN + 1];
    int64_t now = 1700000000;

    make_scene(f, SCENE_BIND, 0, now, &sc, text);
    assert_int_equal(store_scene_prune(f->st, now + SCENE_TTL_S - 1), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), STORE_OK);
    assert_int_equal(store_scene_prune(f->st, now + SCENE_TTL_S), STORE_OK);
    assert_int_equal(scene_open(f->st, &f->keys, text, &got), SCENE_GONE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_ok),
        cmocka_unit_test_setup_teardown(test_create_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_use_once, setup, teardown),
        cmocka_unit_test(test_may_answer),
        cmocka_unit_test(test_check_answer),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test_setup_teardown(test_wechat_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wechat_bind_scene_grant, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mpsession, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scene_prune, setup, teardown),
    };

    log_init(LOG_WARN, 2);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
