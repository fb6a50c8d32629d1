/*
 * test_auth.c - the auth decision (auth/auth.c) on a real uv loop, with a
 * throw-away state folder and small argon2 parameters: app passwords
 * accepted (grouped or not), the cache skipping the KDF but never the row,
 * scope, expiry and revocation (with a warm cache, from another
 * connection), passthrough without users rows, refusal with a factor,
 * cancelling during the KDF, freeing during the KDF, lockout and delays,
 * batched last use and audit rows, and live sessions ended by a revocation
 * made elsewhere.  Every test ends with uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "auth/auth.h"
#include "auth/ratelimit.h"
#include "auth_test_util.h"
#include "core/log.h"
#include "core/util.h"

#define ADDR "192.0.2.1"

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    struct keys keys;
    uv_loop_t loop;
    struct auth_ctx *ctx;
    struct store *st;          /* another connection, as the CLI's */
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char err[256];

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    if (auth_init_state(&f->cfg, &f->keys, err, sizeof(err)) != 0)
        return -1;
    if (uv_loop_init(&f->loop) != 0 ||
        auth_ctx_new(&f->loop, &f->cfg, &f->keys, NULL, &f->ctx) != 0)
        return -1;
    f->st = tu_store(&f->cfg);
    if (f->st == NULL)
        return -1;
    ratelimit_reset();
    *state = f;
    return 0;
}

/* Frees the context and lets the loop close its handles and drain work. */
static void
close_ctx(struct fx *f)
{
    if (f->ctx == NULL)
        return;
    auth_ctx_free(f->ctx);
    f->ctx = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    close_ctx(f);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    store_close(f->st);
    keys_wipe(&f->keys);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

struct result {
    int calls;
    struct auth_outcome out;
};

static void
on_done(void *arg, const struct auth_outcome *o)
{
    struct result *r = arg;

    r->calls++;
    r->out = *o;
}

/* One decision, run to completion; checks the callback contract. */
static struct auth_outcome
check(struct fx *f, enum config_proto proto, const char *user, const char *pass)
{
    struct result r = {0};
    struct auth_pending *h = NULL;

    assert_int_equal(auth_check(f->ctx, proto, user, pass, ADDR, on_done, &r, &h), 0);
    assert_non_null(h);
    assert_int_equal(r.calls, 0); /* never from inside auth_check */
    while (r.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r.calls, 1);
    return r.out;
}

static struct auth_stats
stats(struct fx *f)
{
    struct auth_stats s;

    auth_ctx_stats(f->ctx, &s);
    return s;
}

static void
bind_factor(struct fx *f, const char *user)
{
    assert_int_equal(store_factor_add(f->st, user, "totp", "app", "x", 1, util_wall_time(), NULL),
                     STORE_OK);
}

static void
test_apppw_ok_grouped_or_not_and_cache(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], shown[APPPW_SHOWN_LEN + 1];
    struct auth_outcome o;
    struct store_apppw row;
    int64_t id;

    bind_factor(f, "alice");
    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw);
    assert_true(id > 0);
    apppw_format(pw, shown);

    o = check(f, CONFIG_PROTO_IMAP, "alice", shown);
    assert_int_equal(o.result, AUTH_APPPW);
    assert_int_equal(o.apppw_id, id);
    assert_string_equal(o.user, "alice");
    assert_int_equal(stats(f).kdf_runs, 1);
    assert_int_equal(stats(f).cache_hits, 0);

    /* Same password without spaces, other protocol, other case of the
     * name: the cache answers, no second KDF run. */
    o = check(f, CONFIG_PROTO_POP3, "ALICE", pw);
    assert_int_equal(o.result, AUTH_APPPW);
    assert_int_equal(o.apppw_id, id);
    assert_string_equal(o.user, "alice");
    assert_int_equal(stats(f).kdf_runs, 1);
    assert_int_equal(stats(f).cache_hits, 1);
    assert_int_equal(stats(f).apppw_ok, 2);

    /* Last use is batched: not in the database until the flush. */
    assert_int_equal(store_apppw_get(f->st, id, &row), STORE_OK);
    assert_int_equal(row.last_used, 0);
    close_ctx(f);
    assert_int_equal(store_apppw_get(f->st, id, &row), STORE_OK);
    assert_true(row.last_used > 0);
    assert_string_equal(row.last_addr, ADDR);
    assert_string_equal(row.last_proto, "pop3");
}

static void
test_cache_disabled_runs_kdf_each_time(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];

    /* Same check as above with no cache: proves the counter is honest. */
    close_ctx(f);
    f->cfg.cache_entries = 0;
    assert_int_equal(auth_ctx_new(&f->loop, &f->cfg, &f->keys, NULL, &f->ctx), 0);
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(stats(f).kdf_runs, 2);
    assert_int_equal(stats(f).cache_hits, 0);
}

static void
test_wrong_passwords_refused_with_factor(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], other[APPPW_LEN + 1];

    bind_factor(f, "alice");
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);

    /* The account password, with a factor bound: refused, no KDF. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "hunter2").result, AUTH_REFUSED);
    assert_int_equal(stats(f).kdf_runs, 0);
    /* Another app-password-shaped string: refused, at most one KDF. */
    assert_int_equal(apppw_generate(other), 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", other).result, AUTH_REFUSED);
    assert_true(stats(f).kdf_runs <= 1);
    /* The right password of another user is not this user's. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", pw).result, AUTH_PASSTHROUGH);
    /* Names the backend must never see. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice*master", pw).result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "", pw).result, AUTH_REFUSED);
}

static void
test_wrong_scope_refused(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    int64_t id;

    bind_factor(f, "alice");
    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_SMTP, 0, pw);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_SMTP, "alice", pw).apppw_id, id);
    /* Warm cache, still the wrong protocol. */
    assert_int_equal(check(f, CONFIG_PROTO_POP3, "alice", pw).result, AUTH_REFUSED);
    assert_true(stats(f).cache_hits >= 1);
}

static void
test_expired_refused(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], pw2[APPPW_LEN + 1];
    int64_t now = util_wall_time();

    bind_factor(f, "alice");
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, now - 10, pw) >
                0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_REFUSED);
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, now + 3600,
                             pw2) > 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw2).result, AUTH_APPPW);
    /* An expired app password is refused even without a factor: it was
     * recognized, so it is not handed to the backend. */
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "bob", APPPW_SCOPE_ALL, now - 10, pw) > 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", pw).result, AUTH_REFUSED);
}

static void
test_revoked_refused_with_warm_cache(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], bpw[APPPW_LEN + 1];
    int64_t id, bid;

    bind_factor(f, "alice");
    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw);
    bid = tu_add_apppw(f->st, &f->cfg, &f->keys, "bob", APPPW_SCOPE_ALL, 0, bpw);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", bpw).result, AUTH_APPPW);
    assert_int_equal(stats(f).cache_hits, 1);
    assert_int_equal(stats(f).kdf_runs, 2);

    /* Revoked by another connection (the CLI, another process). */
    assert_int_equal(store_apppw_revoke(f->st, "alice", id), STORE_OK);
    assert_int_equal(store_apppw_revoke(f->st, "bob", bid), STORE_OK);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_REFUSED);
    /* Without a factor the backend decides (and will not know it). */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", bpw).result, AUTH_PASSTHROUGH);
    assert_int_equal(stats(f).kdf_runs, 2);
    assert_int_equal(stats(f).cache_hits, 1);
}

static void
test_passthrough_creates_no_user(void **state)
{
    struct fx *f = *state;
    char shaped[APPPW_LEN + 1];
    int64_t id;

    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "newbie", "account-password").result,
                     AUTH_PASSTHROUGH);
    assert_int_equal(apppw_generate(shaped), 0);
    assert_int_equal(check(f, CONFIG_PROTO_SMTP, "newbie", shaped).result, AUTH_PASSTHROUGH);
    auth_report(f->ctx, CONFIG_PROTO_IMAP, "newbie", ADDR, AUTH_PASSTHROUGH, 0);
    close_ctx(f);
    assert_int_equal(store_user_id(f->st, "newbie", &id), STORE_NOTFOUND);
}

static void
test_cancel_during_kdf(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    struct result r = {0};
    struct auth_pending *h;

    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &r, &h), 0);
    assert_int_equal(stats(f).kdf_runs, 1);
    auth_cancel(h);
    /* The loop drains the work item; nobody is called. */
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 0);

    /* A fast-path outcome waiting in the queue can be cancelled too. */
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "x", "y", ADDR, on_done, &r, &h), 0);
    auth_cancel(h);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 0);

    /* And the context still works. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
}

static void
test_free_during_kdf(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    struct result r = {0};
    struct auth_pending *h;

    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &r, &h), 0);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "x", "y", ADDR, on_done, &r, &h), 0);
    close_ctx(f); /* teardown asserts the loop closes */
    assert_int_equal(r.calls, 0);
}

static void
test_lockout(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];

    f->cfg.fail_lockout = 3;
    f->cfg.fail_lockout_ms = 400;
    bind_factor(f, "alice");
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);

    /* Two failures, a success, two failures: the success reset the count. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(stats(f).lockouts, 0);
    /* The third: locked out.  The right password is not even checked. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    uint64_t kdf = stats(f).kdf_runs, hits = stats(f).cache_hits;
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_REFUSED);
    assert_int_equal(stats(f).lockouts, 1);
    assert_int_equal(stats(f).kdf_runs, kdf);
    assert_int_equal(stats(f).cache_hits, hits);
    /* Other users are not affected. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", "x").result, AUTH_PASSTHROUGH);
    /* After the lockout time, the right password works again. */
    uv_sleep(450);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
}

static void
test_passthrough_failures_count(void **state)
{
    struct fx *f = *state;

    f->cfg.fail_lockout = 3;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(check(f, CONFIG_PROTO_POP3, "dave", "guess").result, AUTH_PASSTHROUGH);
        auth_report(f->ctx, CONFIG_PROTO_POP3, "dave", ADDR, AUTH_PASSTHROUGH, 0);
    }
    assert_int_equal(check(f, CONFIG_PROTO_POP3, "dave", "right").result, AUTH_REFUSED);
    assert_int_equal(stats(f).lockouts, 1);
    /* A backend success resets the counter (for a user not locked). */
    assert_int_equal(check(f, CONFIG_PROTO_POP3, "erin", "guess").result, AUTH_PASSTHROUGH);
    auth_report(f->ctx, CONFIG_PROTO_POP3, "erin", ADDR, AUTH_PASSTHROUGH, 0);
    auth_report(f->ctx, CONFIG_PROTO_POP3, "erin", ADDR, AUTH_PASSTHROUGH, 0);
    auth_report(f->ctx, CONFIG_PROTO_POP3, "erin", ADDR, AUTH_PASSTHROUGH, 1);
    auth_report(f->ctx, CONFIG_PROTO_POP3, "erin", ADDR, AUTH_PASSTHROUGH, 0);
    assert_int_equal(check(f, CONFIG_PROTO_POP3, "erin", "right").result, AUTH_PASSTHROUGH);
}

static void
test_failure_delay(void **state)
{
    struct fx *f = *state;
    uint64_t t0;

    f->cfg.fail_delay_after = 2;
    bind_factor(f, "alice");
    t0 = uv_hrtime();
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_true((uv_hrtime() - t0) / 1000000 < 200);
    /* Two failures: the next answer waits (on a timer, not the loop). */
    t0 = uv_hrtime();
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_true((uv_hrtime() - t0) / 1000000 >= 240);
}

struct audit_rows {
    struct store_audit_row *rows;
    int *n;
};

static int
collect(void *arg, const struct store_audit_row *r)
{
    struct audit_rows *c = arg;

    if (*c->n < 8)
        c->rows[(*c->n)++] = *r;
    return 0;
}

static void
test_audit_rows(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    struct store_audit_row rows[8];
    int n = 0;

    bind_factor(f, "alice");
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", "wrong").result, AUTH_REFUSED);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    auth_report(f->ctx, CONFIG_PROTO_IMAP, "alice", ADDR, AUTH_APPPW, 1);
    assert_int_equal(check(f, CONFIG_PROTO_SMTP, "bob", "pw").result, AUTH_PASSTHROUGH);
    auth_report(f->ctx, CONFIG_PROTO_SMTP, "bob", ADDR, AUTH_PASSTHROUGH, 1);
    close_ctx(f);

    struct audit_rows c = {rows, &n};
    assert_int_equal(store_audit_list(f->st, NULL, 8, collect, &c), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].user, "alice");
    assert_string_equal(rows[0].event, "login_fail");
    assert_non_null(strstr(rows[0].detail, "reason=factor"));
    assert_string_equal(rows[0].addr, ADDR);
    assert_string_equal(rows[1].event, "login_ok");
    assert_non_null(strstr(rows[1].detail, "how=apppw"));
    assert_string_equal(rows[2].user, "bob");
    assert_non_null(strstr(rows[2].detail, "proto=smtp how=passthrough"));
    /* Nothing secret in them. */
    for (int i = 0; i < n; i++) {
        assert_null(strstr(rows[i].detail, pw));
        assert_null(strstr(rows[i].detail, "wrong"));
    }
}

/* --- live sessions ------------------------------------------------------ */

struct live_fx {
    struct auth_live node;
    struct auth_ctx *ctx;
    uv_timer_t *guard;
    int *remaining;
    int revoked;
};

static void
on_revoked(struct auth_live *node)
{
    struct live_fx *l = container_of(node, struct live_fx, node);

    l->revoked++;
    auth_live_remove(l->ctx, node); /* as a closing session does */
    if (l->remaining != NULL && --*l->remaining == 0 && l->guard != NULL)
        uv_close((uv_handle_t *)l->guard, NULL);
}

static void
on_guard(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
    fail_msg("no revocation callback within the guard time");
}

static void
test_live_revocation_from_other_connection(void **state)
{
    struct fx *f = *state;
    char pw1[APPPW_LEN + 1], pw2[APPPW_LEN + 1];
    uv_timer_t guard;
    int remaining = 2;
    int64_t id1, id2;
    uint64_t t0;

    id1 = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw1);
    id2 = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw2);
    struct live_fx a = {{id1, on_revoked, NULL, NULL}, f->ctx, &guard, &remaining, 0};
    struct live_fx b = {{id1, on_revoked, NULL, NULL}, f->ctx, &guard, &remaining, 0};
    struct live_fx c = {{id2, on_revoked, NULL, NULL}, f->ctx, &guard, &remaining, 0};
    auth_live_add(f->ctx, &a.node);
    auth_live_add(f->ctx, &b.node);
    auth_live_add(f->ctx, &c.node);

    /* Nothing changed: a watch tick calls nobody. */
    assert_int_equal(auth_live_check(f->ctx), 0);
    assert_int_equal(a.revoked + b.revoked + c.revoked, 0);

    uv_timer_init(&f->loop, &guard);
    uv_timer_start(&guard, on_guard, 8000, 0);
    t0 = uv_hrtime();
    assert_int_equal(store_apppw_revoke(f->st, "alice", id1), STORE_OK);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* until the guard closes */
    assert_int_equal(a.revoked, 1);
    assert_int_equal(b.revoked, 1);
    assert_int_equal(c.revoked, 0);
    assert_true((uv_hrtime() - t0) / 1000000 < 5000);
    assert_int_equal(stats(f).revoked_live, 2);

    /* Removing twice is harmless. */
    auth_live_remove(f->ctx, &a.node);
    auth_live_remove(f->ctx, &c.node);
}

static void
test_live_check_now_after_own_revoke(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    int64_t id;

    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw);
    struct live_fx a = {{id, on_revoked, NULL, NULL}, f->ctx, NULL, NULL, 0};
    auth_live_add(f->ctx, &a.node);
    /* Revoked through this worker's own connection (as web/ would). */
    assert_int_equal(store_apppw_revoke(auth_ctx_store(f->ctx), "alice", id), STORE_OK);
    assert_int_equal(auth_live_check(f->ctx), 0);
    assert_int_equal(a.revoked, 1);
}

/* Last use is written to the minute: a client polling from the same address
 * over the same protocol costs no write; another protocol or address does. */
static void
test_last_use_recorded_to_the_minute(void **state)
{
    struct fx *f = *state;
    struct store *own;
    char pw[APPPW_LEN + 1];
    struct store_apppw row;
    int64_t id;

    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw);
    own = auth_ctx_store(f->ctx);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(store_batch_pending(own), 1);
    assert_int_equal(store_batch_flush(own), STORE_OK);
    assert_int_equal(store_apppw_get(f->st, id, &row), STORE_OK);
    assert_true(row.last_used > 0);

    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(store_batch_pending(own), 0);
    assert_int_equal(check(f, CONFIG_PROTO_SMTP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(store_batch_pending(own), 1);
    assert_int_equal(store_batch_flush(own), STORE_OK);
    assert_int_equal(store_apppw_get(f->st, id, &row), STORE_OK);
    assert_string_equal(row.last_proto, "smtp");
}

static void
test_normalize_user(void **state)
{
    struct fx *f = *state;
    char out[AUTH_USER_MAX], longname[AUTH_USER_MAX + 1];

    assert_int_equal(auth_normalize_user(&f->cfg, "Alice@Example.COM", 17, out), 0);
    assert_string_equal(out, "alice@example.com");
    f->cfg.lowercase_usernames = 0;
    assert_int_equal(auth_normalize_user(&f->cfg, "Alice", 5, out), 0);
    assert_string_equal(out, "Alice");
    assert_int_equal(auth_normalize_user(&f->cfg, "", 0, out), -1);
    assert_int_equal(auth_normalize_user(&f->cfg, "a*b", 3, out), -1);
    assert_int_equal(auth_normalize_user(&f->cfg, "a\rb", 3, out), -1);
    assert_int_equal(auth_normalize_user(&f->cfg, "a\nb", 3, out), -1);
    assert_int_equal(auth_normalize_user(&f->cfg, "a\0b", 3, out), -1);
    memset(longname, 'a', sizeof(longname));
    assert_int_equal(auth_normalize_user(&f->cfg, longname, AUTH_USER_MAX - 1, out), 0);
    assert_int_equal(strlen(out), AUTH_USER_MAX - 1);
    assert_int_equal(auth_normalize_user(&f->cfg, longname, AUTH_USER_MAX, out), -1);
}

/* Two checks of the same password at once share one argon2id run; a
 * wrong password of the same user does not join it. */
static void
test_concurrent_checks_share_one_kdf(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1];
    struct result r1 = {0}, r2 = {0}, r3 = {0};
    struct auth_pending *h1, *h2, *h3;
    int64_t id;

    bind_factor(f, "alice");
    /* A hash slow enough (tens of ms) that the checks below overlap it. */
    f->cfg.argon2_memory_kib = 32768;
    f->cfg.argon2_passes = 2;
    id = tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &r1, &h1),
                     0);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_POP3, "alice", pw, ADDR, on_done, &r2, &h2),
                     0);
    assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &r3, &h3),
                     0);
    assert_int_equal(stats(f).kdf_runs, 1);
    assert_int_equal(stats(f).kdf_merged, 2);
    /* One waiter leaves: the others still get their answer. */
    auth_cancel(h3);
    while (r1.calls == 0 || r2.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r3.calls, 0);
    assert_int_equal(r1.out.result, AUTH_APPPW);
    assert_int_equal(r2.out.result, AUTH_APPPW);
    assert_int_equal(r2.out.apppw_id, id);
    /* And the result went into the cache. */
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "alice", pw).result, AUTH_APPPW);
    assert_int_equal(stats(f).cache_hits, 1);
    assert_int_equal(stats(f).kdf_runs, 1);
}

/* Every waiter of a job cancels before it ran: nobody is called, and the
 * context goes on working. */
static void
test_cancel_all_waiters(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], pw2[APPPW_LEN + 1];
    struct result r[4] = {{0}};
    struct auth_pending *h[4];

    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "bob", APPPW_SCOPE_ALL, 0, pw2) > 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(auth_check(f->ctx, CONFIG_PROTO_IMAP, i % 2 ? "bob" : "alice",
                                    i % 2 ? pw2 : pw, ADDR, on_done, &r[i], &h[i]),
                         0);
    assert_int_equal(stats(f).kdf_runs, 2);
    for (int i = 3; i >= 0; i--)
        auth_cancel(h[i]);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].calls, 0);
    assert_int_equal(check(f, CONFIG_PROTO_IMAP, "bob", pw2).result, AUTH_APPPW);
}

/* Two workers' contexts share one cache and one set of KDF threads: a
 * password verified by one is a hit for the other, and both asking at
 * once run argon2id once. */
/* [auth] kdf_threads: as many KDF threads as asked; 0 leaves a core to the loops. */
static void
test_kdf_threads(void **state)
{
    struct fx *f = *state;
    struct auth_shared *sh;
    unsigned cores = uv_available_parallelism();
    int automatic = cores > 1 ? (int)cores - 1 : 1;

    if (automatic > 4)
        automatic = 4;
    f->cfg.kdf_threads = 3;
    assert_int_equal(auth_shared_new(&f->cfg, &sh), 0);
    assert_int_equal(auth_shared_kdf_threads(sh), 3);
    auth_shared_free(sh);
    f->cfg.kdf_threads = 0;
    assert_int_equal(auth_shared_new(&f->cfg, &sh), 0);
    assert_int_equal(auth_shared_kdf_threads(sh), automatic);
    auth_shared_free(sh);
}

static void
test_shared_between_contexts(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_LEN + 1], pw2[APPPW_LEN + 1];
    struct auth_shared *sh;
    struct auth_ctx *a, *b;
    uv_loop_t loop2;
    struct result ra = {0}, rb = {0};
    struct auth_pending *ha, *hb;
    struct auth_stats sa, sb;

    close_ctx(f);
    assert_int_equal(auth_shared_new(&f->cfg, &sh), 0);
    assert_int_equal(uv_loop_init(&loop2), 0);
    assert_int_equal(auth_ctx_new(&f->loop, &f->cfg, &f->keys, sh, &a), 0);
    assert_int_equal(auth_ctx_new(&loop2, &f->cfg, &f->keys, sh, &b), 0);
    /* A hash slow enough (tens of ms) that the two checks overlap it. */
    f->cfg.argon2_memory_kib = 32768;
    f->cfg.argon2_passes = 2;
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "alice", APPPW_SCOPE_ALL, 0, pw) > 0);
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "bob", APPPW_SCOPE_ALL, 0, pw2) > 0);

    /* At once, from both loops: one job, two answers. */
    assert_int_equal(auth_check(a, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &ra, &ha), 0);
    assert_int_equal(auth_check(b, CONFIG_PROTO_IMAP, "alice", pw, ADDR, on_done, &rb, &hb), 0);
    while (ra.calls == 0 || rb.calls == 0) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        uv_run(&loop2, UV_RUN_NOWAIT);
        uv_sleep(1);
    }
    assert_int_equal(ra.out.result, AUTH_APPPW);
    assert_int_equal(rb.out.result, AUTH_APPPW);
    auth_ctx_stats(a, &sa);
    auth_ctx_stats(b, &sb);
    assert_int_equal(sa.kdf_runs + sb.kdf_runs, 1);
    assert_int_equal(sa.kdf_merged + sb.kdf_merged, 1);

    /* One after the other: the second is a cache hit. */
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    assert_int_equal(auth_check(a, CONFIG_PROTO_IMAP, "bob", pw2, ADDR, on_done, &ra, &ha), 0);
    while (ra.calls == 0)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(auth_check(b, CONFIG_PROTO_IMAP, "bob", pw2, ADDR, on_done, &rb, &hb), 0);
    while (rb.calls == 0)
        uv_run(&loop2, UV_RUN_ONCE);
    assert_int_equal(rb.out.result, AUTH_APPPW);
    auth_ctx_stats(b, &sb);
    assert_int_equal(sb.cache_hits, 1);

    /* b goes away while a check of it waits for a KDF run. */
    assert_true(tu_add_apppw(f->st, &f->cfg, &f->keys, "carol", APPPW_SCOPE_ALL, 0, pw) > 0);
    memset(&rb, 0, sizeof(rb));
    assert_int_equal(auth_check(b, CONFIG_PROTO_IMAP, "carol", pw, ADDR, on_done, &rb, &hb), 0);
    auth_ctx_stats(b, &sb);
    assert_int_equal(sb.kdf_runs, 1);
    auth_ctx_free(b);
    uv_run(&loop2, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop2), 0);
    assert_int_equal(rb.calls, 0);
    auth_ctx_free(a);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    auth_shared_free(sh);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_apppw_ok_grouped_or_not_and_cache),
        T(test_last_use_recorded_to_the_minute),
        T(test_cache_disabled_runs_kdf_each_time),
        T(test_wrong_passwords_refused_with_factor),
        T(test_wrong_scope_refused),
        T(test_expired_refused),
        T(test_revoked_refused_with_warm_cache),
        T(test_passthrough_creates_no_user),
        T(test_cancel_during_kdf),
        T(test_free_during_kdf),
        T(test_concurrent_checks_share_one_kdf),
        T(test_cancel_all_waiters),
        T(test_kdf_threads),
        T(test_shared_between_contexts),
        T(test_lockout),
        T(test_passthrough_failures_count),
        T(test_failure_delay),
        T(test_audit_rows),
        T(test_live_revocation_from_other_connection),
        T(test_live_check_now_after_own_revoke),
        T(test_normalize_user),
    };
    log_init(LOG_WARN, 2);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
