/*
 * auth.c - the auth decision (auth.h): one auth_ctx per worker loop.
 *
 * Owns, per worker: the store connection, the verification cache, the queue
 * of decisions waiting to be delivered, the flush timer for batched
 * bookkeeping, and the revocation watch over live sessions.  Shares with the
 * other workers only the failure table (ratelimit.c).  Does not own the keys
 * or the config (borrowed), nor the sessions (proxy/).
 *
 * Life of a check:
 *   auth_check -> failure table -> [app-password shape?]
 *      -> cache hit: re-read the row by id, decide          (loop thread)
 *      -> miss: find the one row with the locator, copy its hash and the
 *         pepper into the pending, argon2id on the thread pool (uv_queue_work)
 *         -> back on the loop: re-read the row by id, fill the cache, decide
 *   -> otherwise: factor count -> PASSTHROUGH or REFUSED
 *   Every outcome goes through the ready queue and a uv timer, so the
 *   callback never runs inside auth_check; a growing delay after
 *   cfg->fail_delay_after consecutive failures uses the same queue.
 *
 * The revocation watch: a repeating timer (AUTH_WATCH_MS) reads the store's
 * data version (SQLite's PRAGMA data_version, which moves when any other
 * connection or process commits, plus this connection's own commits).  Only
 * when it moved - or every AUTH_WATCH_FULL_TICKS ticks, so that passwords
 * that merely expire are noticed too - it takes the distinct apppw ids of
 * the live sessions, reads each row by id, and calls node->revoked(node) for
 * the sessions whose password is gone or expired.  Revocations made anywhere
 * therefore end sessions within about AUTH_WATCH_MS, without polling rows
 * while nothing changes.
 */
#include "auth/auth.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "auth/apppw.h"
#include "auth/keys.h"
#include "auth/ratelimit.h"
#include "auth/store.h"
#include "core/log.h"
#include "core/util.h"

#define AUTH_KDF_NICE 10              /* pool threads running argon2id */
#define AUTH_LAST_USE_GRAIN_S 60       /* last use is recorded to the minute */
#define AUTH_FLUSH_MS 1000          /* batched bookkeeping is written this often */
#define AUTH_WATCH_MS 2000          /* revocation watch tick */
#define AUTH_WATCH_FULL_TICKS 15    /* check live sessions at least every 30 s */
#define AUTH_CACHE_WAYS 4
#define AUTH_DELAY_BASE_MS 250      /* first failure delay, doubling */
#define AUTH_DELAY_MAX_MS 8000

enum auth_pending_state {
    PENDING_KDF,       /* its work item is on the thread pool */
    PENDING_READY,     /* its outcome waits in the ready queue */
};

struct auth_pending {
    struct auth_ctx *ctx;              /* NULL once the context is gone */
    struct auth_pending *prev, *next;  /* ctx->kdf or ctx->ready */
    enum auth_pending_state state;
    int cancelled;
    auth_done_cb cb;
    void *arg;
    enum config_proto proto;
    char addr[AUTH_ADDR_MAX];
    struct auth_outcome outcome;       /* user filled in at the start */
    uint64_t delay_ms;
    uint64_t due_ms;                   /* PENDING_READY: deliver at (uv_now) */
    char pw[APPPW_LEN + 1];            /* normalized app password; wiped */
    unsigned char cache_key[32];       /* HMAC(keys.cache, user ":" pw) */

    /* The KDF job.  The pool thread reads only these copies. */
    uv_work_t work;
    unsigned char pepper[KEYS_LEN];
    char hash[APPPW_HASH_MAX];
    int64_t cand_id;
    int kdf_result;
    int record_use;                    /* last use worth writing (see auth_decide_row) */
};

struct auth_cache_entry {
    unsigned char key[32];
    int64_t apppw_id;
    unsigned char hash_digest[16];     /* SHA-256 prefix of the row's hash */
    uint64_t expires_ms;               /* 0 = free slot */
};

struct auth_ctx {
    uv_loop_t *loop;
    const struct config *cfg;
    const struct keys *keys;
    struct store *store;

    /* Verification cache: nsets sets of `ways` entries. */
    struct auth_cache_entry *cache;
    size_t cache_sets;
    size_t cache_ways;

    struct auth_pending *kdf;          /* in flight on the pool */
    struct auth_pending *ready_head;   /* sorted by due_ms */
    struct auth_pending *ready_tail;

    uv_timer_t ready_timer;
    uv_timer_t flush_timer;
    uv_timer_t watch_timer;
    int closing;                       /* handles still closing */

    struct auth_live live;             /* sentinel of the circular list */
    int64_t data_version;
    int watch_ticks;

    struct auth_stats stats;
};

static void auth_try_factor(struct auth_pending *p);

unsigned
auth_proto_scope(enum config_proto proto)
{
    switch (proto) {
    case CONFIG_PROTO_IMAP:
        return APPPW_SCOPE_IMAP;
    case CONFIG_PROTO_POP3:
        return APPPW_SCOPE_POP3;
    case CONFIG_PROTO_SMTP:
        return APPPW_SCOPE_SMTP;
    default:
        return 0;
    }
}

const char *
auth_proto_name(enum config_proto proto)
{
    switch (proto) {
    case CONFIG_PROTO_IMAP:
        return "imap";
    case CONFIG_PROTO_POP3:
        return "pop3";
    case CONFIG_PROTO_SMTP:
        return "smtp";
    case CONFIG_PROTO_HTTP:
        return "http";
    }
    return "?";
}

int
auth_normalize_user(const struct config *cfg, const char *user, size_t len, char *out)
{
    if (user == NULL || len == 0 || len > AUTH_USER_MAX - 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)user[i];

        if (c == '\0' || c == '\r' || c == '\n' || c == '*')
            return -1;
        if (cfg->lowercase_usernames && c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        out[i] = (char)c;
    }
    out[len] = '\0';
    return 0;
}

/* --- the verification cache --------------------------------------------- */

static void
auth_hash_digest(const char *hash, unsigned char out[16])
{
    unsigned char md[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)hash, strlen(hash), md);
    memcpy(out, md, 16);
}

static struct auth_cache_entry *
auth_cache_set(struct auth_ctx *ctx, const unsigned char key[32])
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    return &ctx->cache[(h % ctx->cache_sets) * ctx->cache_ways];
}

static struct auth_cache_entry *
auth_cache_lookup(struct auth_ctx *ctx, const unsigned char key[32], uint64_t now)
{
    struct auth_cache_entry *set;

    if (ctx->cache == NULL)
        return NULL;
    set = auth_cache_set(ctx, key);
    for (size_t i = 0; i < ctx->cache_ways; i++)
        if (set[i].expires_ms > now && util_ct_equal(set[i].key, key, 32))
            return &set[i];
    return NULL;
}

static void
auth_cache_insert(struct auth_ctx *ctx, const unsigned char key[32], int64_t id,
                  const char *hash, uint64_t now)
{
    struct auth_cache_entry *set, *slot = NULL;

    if (ctx->cache == NULL)
        return;
    set = auth_cache_set(ctx, key);
    for (size_t i = 0; i < ctx->cache_ways; i++) {
        struct auth_cache_entry *e = &set[i];

        if (e->expires_ms > now && util_ct_equal(e->key, key, 32)) {
            slot = e;
            break;
        }
        /* A free or expired slot, else the one that expires first (the
         * oldest, since every entry lives the same time). */
        if (slot == NULL || (slot->expires_ms > now && e->expires_ms < slot->expires_ms))
            slot = e;
    }
    memcpy(slot->key, key, 32);
    slot->apppw_id = id;
    auth_hash_digest(hash, slot->hash_digest);
    slot->expires_ms = now + ctx->cfg->cache_ttl_ms;
}

static void
auth_cache_drop(struct auth_cache_entry *e)
{
    OPENSSL_cleanse(e, sizeof(*e));
}

/* --- delivering outcomes ------------------------------------------------ */

static void
auth_pending_free(struct auth_pending *p)
{
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
}

static void
auth_list_unlink(struct auth_pending **head, struct auth_pending **tail, struct auth_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        *head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else if (tail != NULL)
        *tail = p->prev;
    p->prev = p->next = NULL;
}

static void auth_ready_cb(uv_timer_t *t);

static void
auth_ready_arm(struct auth_ctx *ctx)
{
    uint64_t now = uv_now(ctx->loop);
    struct auth_pending *h = ctx->ready_head;

    if (h == NULL) {
        uv_timer_stop(&ctx->ready_timer);
        return;
    }
    uv_timer_start(&ctx->ready_timer, auth_ready_cb, h->due_ms > now ? h->due_ms - now : 0, 0);
}

/* Puts p into the ready queue (sorted by due time) and arms the timer. */
static void
auth_ready_push(struct auth_ctx *ctx, struct auth_pending *p)
{
    struct auth_pending *after = ctx->ready_tail;

    p->state = PENDING_READY;
    p->due_ms = uv_now(ctx->loop) + p->delay_ms;
    while (after != NULL && after->due_ms > p->due_ms)
        after = after->prev;
    p->prev = after;
    p->next = after ? after->next : ctx->ready_head;
    if (p->next)
        p->next->prev = p;
    else
        ctx->ready_tail = p;
    if (after)
        after->next = p;
    else
        ctx->ready_head = p;
    if (ctx->ready_head == p)
        auth_ready_arm(ctx);
}

static void
auth_ready_cb(uv_timer_t *t)
{
    struct auth_ctx *ctx = container_of(t, struct auth_ctx, ready_timer);
    uint64_t now = uv_now(ctx->loop);
    struct auth_pending *p;

    /* Pop one at a time: a callback may start or cancel other checks. */
    while ((p = ctx->ready_head) != NULL && p->due_ms <= now) {
        struct auth_outcome outcome = p->outcome;
        auth_done_cb cb = p->cb;
        void *arg = p->arg;

        auth_list_unlink(&ctx->ready_head, &ctx->ready_tail, p);
        auth_pending_free(p);
        cb(arg, &outcome);
    }
    auth_ready_arm(ctx);
}

static void
auth_audit(struct auth_ctx *ctx, const char *user, const char *event, const char *addr,
           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
auth_audit(struct auth_ctx *ctx, const char *user, const char *event, const char *addr,
           const char *fmt, ...)
{
    char detail[STORE_DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (store_batch_audit(ctx->store, util_wall_time(), user, event, detail, addr) != STORE_OK)
        log_warn("auth event=audit_lost");
}

/*
 * The decision is made: count it, audit refusals, wipe the secret parts,
 * queue the outcome.  reason is a short word for logs and audit rows.
 */
static void
auth_finish(struct auth_pending *p, enum auth_result result, const char *reason)
{
    struct auth_ctx *ctx = p->ctx;
    const char *proto = auth_proto_name(p->proto);
    char lu[AUTH_USER_MAX];

    OPENSSL_cleanse(p->pw, sizeof(p->pw));
    OPENSSL_cleanse(p->cache_key, sizeof(p->cache_key));
    p->outcome.result = result;
    util_log_safe(p->outcome.user, lu, sizeof(lu));
    switch (result) {
    case AUTH_APPPW:
        ctx->stats.apppw_ok++;
        ratelimit_success(p->outcome.user);
        if (p->record_use &&
            store_batch_apppw_used(ctx->store, p->outcome.apppw_id, util_wall_time(), p->addr,
                                   proto) != STORE_OK)
            log_warn("auth event=last_use_lost id=%lld", (long long)p->outcome.apppw_id);
        log_debug("auth event=decision user=%s proto=%s addr=%s result=apppw id=%lld", lu,
                  proto, p->addr, (long long)p->outcome.apppw_id);
        break;
    case AUTH_PASSTHROUGH:
        ctx->stats.passthrough++;
        log_debug("auth event=decision user=%s proto=%s addr=%s result=passthrough", lu, proto,
                  p->addr);
        break;
    case AUTH_REFUSED:
        ctx->stats.refused++;
        p->outcome.apppw_id = 0;
        if (strcmp(reason, "lockout") == 0) {
            ctx->stats.lockouts++;
        } else if (p->outcome.user[0] != '\0') {
            ratelimit_fail(p->outcome.user, util_now_ms(), ctx->cfg->fail_lockout,
                           ctx->cfg->fail_lockout_ms);
        }
        if (p->outcome.user[0] != '\0')
            auth_audit(ctx, p->outcome.user, "login_fail", p->addr,
                       "proto=%s how=refused reason=%s", proto, reason);
        log_info("auth event=decision user=%s proto=%s addr=%s result=refused reason=%s", lu,
                 proto, p->addr, reason);
        break;
    case AUTH_TEMPFAIL:
        ctx->stats.tempfail++;
        p->outcome.apppw_id = 0;
        log_warn("auth event=decision user=%s proto=%s addr=%s result=tempfail reason=%s", lu,
                 proto, p->addr, reason);
        break;
    }
    auth_ready_push(ctx, p);
}

/* --- the decision ------------------------------------------------------- */

/* An app password row matched: may it be used here and now? */
static void
auth_decide_row(struct auth_pending *p, const struct store_apppw *row)
{
    if (row->expires != 0 && row->expires <= util_wall_time()) {
        auth_finish(p, AUTH_REFUSED, "apppw_expired");
        return;
    }
    if (!(row->scope & auth_proto_scope(p->proto))) {
        auth_finish(p, AUTH_REFUSED, "apppw_scope");
        return;
    }
    p->outcome.apppw_id = row->id;
    /*
     * "Last used" is kept to the minute: a client that logs in again and
     * again from the same address with the same protocol (mail apps poll)
     * does not cost a write each time.
     */
    p->record_use = !(row->last_used != 0 &&
                      util_wall_time() - row->last_used < AUTH_LAST_USE_GRAIN_S &&
                      strcmp(row->last_addr, p->addr) == 0 &&
                      strcmp(row->last_proto, auth_proto_name(p->proto)) == 0);
    auth_finish(p, AUTH_APPPW, "apppw");
}

/* Not an app password (or none matched): the factor decides. */
static void
auth_try_factor(struct auth_pending *p)
{
    int count = 0;

    if (store_factor_count(p->ctx->store, p->outcome.user, &count) != STORE_OK) {
        auth_finish(p, AUTH_TEMPFAIL, "store");
        return;
    }
    if (count == 0)
        auth_finish(p, AUTH_PASSTHROUGH, "no_factor");
    else
        auth_finish(p, AUTH_REFUSED, "factor");
}

/* On a pool thread: only the pending's own copies are read. */
static void
auth_kdf_work(uv_work_t *req)
{
    struct auth_pending *p = container_of(req, struct auth_pending, work);
    /*
     * A cold check (~20 ms of one core) must not delay the loops' warm
     * logins: the pool thread that runs it is niced once (Linux nices
     * threads one by one).  Not SCHED_IDLE, which could starve cold checks
     * for good on a busy server.  The only mutable static here, and it is
     * per thread.
     */
    static _Thread_local int niced;

    if (!niced) {
        niced = 1;
        if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), AUTH_KDF_NICE) != 0)
            log_debug("auth event=kdf_nice_failed");
    }
    p->kdf_result = apppw_verify(p->pepper, p->pw, p->hash);
}

static void
auth_kdf_done(uv_work_t *req, int status)
{
    struct auth_pending *p = container_of(req, struct auth_pending, work);
    struct auth_ctx *ctx = p->ctx;
    struct store_apppw row;
    int r;

    OPENSSL_cleanse(p->pepper, sizeof(p->pepper));
    if (ctx == NULL) {
        /* The context went away meanwhile (auth_ctx_free). */
        auth_pending_free(p);
        return;
    }
    auth_list_unlink(&ctx->kdf, NULL, p);
    if (p->cancelled) {
        auth_pending_free(p);
        return;
    }
    if (status != 0) {
        auth_finish(p, AUTH_TEMPFAIL, "kdf_cancelled");
        return;
    }
    if (p->kdf_result == APPPW_MISMATCH) {
        auth_try_factor(p);
        return;
    }
    if (p->kdf_result != 0) {
        log_error("auth event=bad_hash id=%lld", (long long)p->cand_id);
        auth_try_factor(p);
        return;
    }
    /* It matched; the row may have been revoked while the KDF ran. */
    r = store_apppw_get(ctx->store, p->cand_id, &row);
    if (r == STORE_ERR) {
        auth_finish(p, AUTH_TEMPFAIL, "store");
        return;
    }
    if (r == STORE_NOTFOUND || strcmp(row.hash, p->hash) != 0) {
        auth_try_factor(p);
        return;
    }
    auth_cache_insert(ctx, p->cache_key, row.id, row.hash, uv_now(ctx->loop));
    auth_decide_row(p, &row);
}

/* The password has the shape of an app password. */
static void
auth_try_apppw(struct auth_pending *p)
{
    struct auth_ctx *ctx = p->ctx;
    struct auth_cache_entry *e;
    struct store_apppw row;
    char locator[APPPW_LOCATOR_LEN + 1];
    unsigned char digest[16];
    int r;

    if (apppw_mac(ctx->keys->cache, p->outcome.user, p->pw, p->cache_key) != 0) {
        auth_finish(p, AUTH_TEMPFAIL, "crypto");
        return;
    }
    e = auth_cache_lookup(ctx, p->cache_key, uv_now(ctx->loop));
    if (e != NULL) {
        /* A hit skips the KDF, never the row: revocation, expiry and scope
         * changes made by any process count at once. */
        r = store_apppw_get(ctx->store, e->apppw_id, &row);
        if (r == STORE_ERR) {
            auth_finish(p, AUTH_TEMPFAIL, "store");
            return;
        }
        if (r == STORE_OK) {
            auth_hash_digest(row.hash, digest);
            if (strcmp(row.user, p->outcome.user) == 0 &&
                util_ct_equal(digest, e->hash_digest, sizeof(digest))) {
                ctx->stats.cache_hits++;
                auth_decide_row(p, &row);
                return;
            }
        }
        auth_cache_drop(e);
    }
    if (apppw_locator(ctx->keys->locator, p->outcome.user, p->pw, locator) != 0) {
        auth_finish(p, AUTH_TEMPFAIL, "crypto");
        return;
    }
    r = store_apppw_find(ctx->store, p->outcome.user, locator, &row);
    if (r == STORE_ERR) {
        auth_finish(p, AUTH_TEMPFAIL, "store");
        return;
    }
    if (r == STORE_NOTFOUND) {
        auth_try_factor(p);
        return;
    }
    /* One candidate, one KDF run.  (Creation keeps locators unique per
     * user, so the newest row with this locator is the only one.) */
    p->cand_id = row.id;
    memcpy(p->pepper, ctx->keys->pepper, sizeof(p->pepper));
    util_strlcpy(p->hash, row.hash, sizeof(p->hash));
    p->state = PENDING_KDF;
    if (uv_queue_work(ctx->loop, &p->work, auth_kdf_work, auth_kdf_done) != 0) {
        OPENSSL_cleanse(p->pepper, sizeof(p->pepper));
        auth_finish(p, AUTH_TEMPFAIL, "queue");
        return;
    }
    ctx->stats.kdf_runs++;
    p->prev = NULL;
    p->next = ctx->kdf;
    if (ctx->kdf)
        ctx->kdf->prev = p;
    ctx->kdf = p;
}

/* The delay before answering a user with `failures` consecutive failures. */
static uint64_t
auth_fail_delay(const struct config *cfg, int failures)
{
    int over;

    if (cfg->fail_delay_after <= 0 || failures < cfg->fail_delay_after)
        return 0;
    over = failures - cfg->fail_delay_after;
    if (over > 10)
        return AUTH_DELAY_MAX_MS;
    uint64_t d = (uint64_t)AUTH_DELAY_BASE_MS << over;
    return d > AUTH_DELAY_MAX_MS ? AUTH_DELAY_MAX_MS : d;
}

int
auth_check(struct auth_ctx *ctx, enum config_proto proto, const char *user,
           const char *pass, const char *client_addr, auth_done_cb cb, void *arg,
           struct auth_pending **handle)
{
    struct auth_pending *p;
    uint64_t until;
    int failures;
    size_t plen;

    if (handle != NULL)
        *handle = NULL;
    if (ctx == NULL || user == NULL || pass == NULL || cb == NULL)
        return UV_EINVAL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    p->ctx = ctx;
    p->cb = cb;
    p->arg = arg;
    p->proto = proto;
    util_strlcpy(p->addr, client_addr ? client_addr : "", sizeof(p->addr));
    ctx->stats.checks++;
    if (handle != NULL)
        *handle = p;

    if (auth_normalize_user(ctx->cfg, user, strnlen(user, AUTH_USER_MAX), p->outcome.user) != 0) {
        p->outcome.user[0] = '\0';
        auth_finish(p, AUTH_REFUSED, "bad_user");
        return 0;
    }
    if (ratelimit_check(p->outcome.user, util_now_ms(), &failures, &until)) {
        auth_finish(p, AUTH_REFUSED, "lockout");
        return 0;
    }
    p->delay_ms = auth_fail_delay(ctx->cfg, failures);
    plen = strnlen(pass, AUTH_PASS_MAX);
    if (plen < AUTH_PASS_MAX && apppw_normalize(pass, plen, p->pw) == 0)
        auth_try_apppw(p);
    else
        auth_try_factor(p);
    return 0;
}

void
auth_cancel(struct auth_pending *p)
{
    struct auth_ctx *ctx;

    if (p == NULL)
        return;
    ctx = p->ctx;
    if (p->state == PENDING_KDF) {
        /* The work item finishes (or is cancelled before it starts) and
         * auth_kdf_done frees it without calling back. */
        p->cancelled = 1;
        uv_cancel((uv_req_t *)&p->work);
        return;
    }
    auth_list_unlink(&ctx->ready_head, &ctx->ready_tail, p);
    auth_pending_free(p);
    auth_ready_arm(ctx);
}

void
auth_report(struct auth_ctx *ctx, enum config_proto proto, const char *user,
            const char *client_addr, enum auth_result how, int ok)
{
    char name[AUTH_USER_MAX];
    const char *hows;

    if (ctx == NULL || user == NULL ||
        auth_normalize_user(ctx->cfg, user, strnlen(user, AUTH_USER_MAX), name) != 0)
        return;
    if (how == AUTH_PASSTHROUGH) {
        hows = "passthrough";
        /* The backend judged the account password: that is a login attempt
         * like any other for the failure counter. */
        if (ok)
            ratelimit_success(name);
        else
            ratelimit_fail(name, util_now_ms(), ctx->cfg->fail_lockout,
                           ctx->cfg->fail_lockout_ms);
    } else if (how == AUTH_APPPW) {
        /* A backend refusing the master login is our failure, not the
         * user's: no counting. */
        hows = "apppw";
    } else {
        return; /* refusals were audited by auth_check itself */
    }
    auth_audit(ctx, name, ok ? "login_ok" : "login_fail", client_addr,
               ok ? "proto=%s how=%s" : "proto=%s how=%s reason=backend",
               auth_proto_name(proto), hows);
}

/* --- batched bookkeeping and the revocation watch ----------------------- */

static void
auth_flush_cb(uv_timer_t *t)
{
    struct auth_ctx *ctx = container_of(t, struct auth_ctx, flush_timer);

    if (store_batch_pending(ctx->store) > 0 && store_batch_flush(ctx->store) != STORE_OK)
        log_warn("auth event=flush_failed pending=%zu", store_batch_pending(ctx->store));
}

static int
auth_id_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void
auth_live_link(struct auth_live *after, struct auth_live *node)
{
    node->prev = after;
    node->next = after->next;
    after->next->prev = node;
    after->next = node;
}

static void
auth_live_unlink(struct auth_live *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

int
auth_live_check(struct auth_ctx *ctx)
{
    struct auth_live *n, pend;
    int64_t *ids = NULL, now = util_wall_time();
    size_t count = 0, uniq = 0, ndead = 0;
    int r = 0;

    for (n = ctx->live.next; n != &ctx->live; n = n->next)
        count++;
    if (count == 0)
        return 0;
    ids = malloc(count * sizeof(*ids));
    if (ids == NULL)
        return -1;
    count = 0;
    for (n = ctx->live.next; n != &ctx->live; n = n->next)
        ids[count++] = n->apppw_id;
    qsort(ids, count, sizeof(*ids), auth_id_cmp);
    for (size_t i = 0; i < count; i++)
        if (uniq == 0 || ids[uniq - 1] != ids[i])
            ids[uniq++] = ids[i];
    /* Keep, at the front of ids, the distinct ids that are gone. */
    for (size_t i = 0; i < uniq; i++) {
        struct store_apppw row;
        int g = store_apppw_get(ctx->store, ids[i], &row);

        if (g == STORE_ERR) {
            r = -1;
            goto done;
        }
        if (g == STORE_NOTFOUND || (row.expires != 0 && row.expires <= now))
            ids[ndead++] = ids[i];
    }
    if (ndead == 0)
        goto done;
    /* Move the affected nodes to a private list first: the callbacks may
     * remove any node, and the circular lists make that safe wherever the
     * node is. */
    pend.prev = pend.next = &pend;
    for (n = ctx->live.next; n != &ctx->live;) {
        struct auth_live *next = n->next;

        if (bsearch(&n->apppw_id, ids, ndead, sizeof(*ids), auth_id_cmp) != NULL) {
            auth_live_unlink(n);
            auth_live_link(pend.prev, n);
        }
        n = next;
    }
    while (pend.next != &pend) {
        n = pend.next;
        auth_live_unlink(n);
        auth_live_link(ctx->live.prev, n);
        ctx->stats.revoked_live++;
        log_info("auth event=live_revoked id=%lld", (long long)n->apppw_id);
        n->revoked(n);
    }

done:
    free(ids);
    return r;
}

static void
auth_watch_cb(uv_timer_t *t)
{
    struct auth_ctx *ctx = container_of(t, struct auth_ctx, watch_timer);
    int64_t v;

    if (store_data_version(ctx->store, &v) != STORE_OK)
        return;
    ctx->watch_ticks++;
    if (v == ctx->data_version && ctx->watch_ticks < AUTH_WATCH_FULL_TICKS)
        return;
    if (auth_live_check(ctx) == 0) {
        ctx->data_version = v;
        ctx->watch_ticks = 0;
    }
}

void
auth_live_add(struct auth_ctx *ctx, struct auth_live *node)
{
    auth_live_link(ctx->live.prev, node);
}

void
auth_live_remove(struct auth_ctx *ctx, struct auth_live *node)
{
    /* Idempotent: a node never added, or already removed, has no links. */
    if (node->next == NULL || node->prev == NULL)
        return;
    auth_live_unlink(node);
}

/* --- the context -------------------------------------------------------- */

int
auth_ctx_new(uv_loop_t *loop, const struct config *cfg, const struct keys *keys,
             struct auth_ctx **out)
{
    struct auth_ctx *ctx;
    char path[4096];

    *out = NULL;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return UV_ENOMEM;
    ctx->loop = loop;
    ctx->cfg = cfg;
    ctx->keys = keys;
    ctx->live.prev = ctx->live.next = &ctx->live;
    if (cfg->cache_entries > 0 && cfg->cache_ttl_ms > 0) {
        ctx->cache_ways = cfg->cache_entries < AUTH_CACHE_WAYS ? cfg->cache_entries
                                                               : AUTH_CACHE_WAYS;
        ctx->cache_sets = cfg->cache_entries / ctx->cache_ways;
        ctx->cache = calloc(ctx->cache_sets * ctx->cache_ways, sizeof(*ctx->cache));
        if (ctx->cache == NULL)
            goto fail;
    }
    if (store_path(cfg->state_dir, path, sizeof(path)) != STORE_OK ||
        store_open(path, &ctx->store) != STORE_OK ||
        store_data_version(ctx->store, &ctx->data_version) != STORE_OK)
        goto fail;
    uv_timer_init(loop, &ctx->ready_timer);
    uv_timer_init(loop, &ctx->flush_timer);
    uv_timer_init(loop, &ctx->watch_timer);
    /* The two periodic timers do not keep a loop alive by themselves. */
    uv_timer_start(&ctx->flush_timer, auth_flush_cb, AUTH_FLUSH_MS, AUTH_FLUSH_MS);
    uv_unref((uv_handle_t *)&ctx->flush_timer);
    uv_timer_start(&ctx->watch_timer, auth_watch_cb, AUTH_WATCH_MS, AUTH_WATCH_MS);
    uv_unref((uv_handle_t *)&ctx->watch_timer);
    *out = ctx;
    return 0;

fail:
    store_close(ctx->store);
    free(ctx->cache);
    free(ctx);
    return -1;
}

static void
auth_ctx_close_cb(uv_handle_t *h)
{
    struct auth_ctx *ctx = h->data;

    if (--ctx->closing == 0) {
        OPENSSL_cleanse(ctx, sizeof(*ctx));
        free(ctx);
    }
}

void
auth_ctx_free(struct auth_ctx *ctx)
{
    struct auth_pending *p, *next;

    if (ctx == NULL)
        return;
    if (store_batch_flush(ctx->store) != STORE_OK)
        log_warn("auth event=flush_failed pending=%zu at=exit", store_batch_pending(ctx->store));
    /* Checks still on the pool free themselves when their work completes;
     * the loop must run until then (uv_run drains them). */
    for (p = ctx->kdf; p != NULL; p = next) {
        next = p->next;
        p->ctx = NULL;
        p->prev = p->next = NULL;
        uv_cancel((uv_req_t *)&p->work);
    }
    ctx->kdf = NULL;
    /* Outcomes not yet delivered are dropped: their sessions are going
     * away with the worker. */
    for (p = ctx->ready_head; p != NULL; p = next) {
        next = p->next;
        auth_pending_free(p);
    }
    ctx->ready_head = ctx->ready_tail = NULL;
    while (ctx->live.next != &ctx->live)
        auth_live_unlink(ctx->live.next);
    store_close(ctx->store);
    ctx->store = NULL;
    if (ctx->cache != NULL) {
        OPENSSL_cleanse(ctx->cache, ctx->cache_sets * ctx->cache_ways * sizeof(*ctx->cache));
        free(ctx->cache);
        ctx->cache = NULL;
    }
    ctx->closing = 3;
    ctx->ready_timer.data = ctx->flush_timer.data = ctx->watch_timer.data = ctx;
    uv_close((uv_handle_t *)&ctx->ready_timer, auth_ctx_close_cb);
    uv_close((uv_handle_t *)&ctx->flush_timer, auth_ctx_close_cb);
    uv_close((uv_handle_t *)&ctx->watch_timer, auth_ctx_close_cb);
}

void
auth_ctx_stats(const struct auth_ctx *ctx, struct auth_stats *out)
{
    *out = ctx->stats;
}

struct store *
auth_ctx_store(struct auth_ctx *ctx)
{
    return ctx->store;
}

int
auth_init_state(const struct config *cfg, struct keys *keys, char *err, size_t errlen)
{
    struct store *st = NULL;
    char path[4096];

    if (keys_load_or_create(cfg->state_dir, keys, err, errlen) != 0)
        return -1;
    if (store_path(cfg->state_dir, path, sizeof(path)) != STORE_OK) {
        snprintf(err, errlen, "%s: path too long", cfg->state_dir);
        goto fail;
    }
    if (store_open(path, &st) != STORE_OK || store_migrate(st) != STORE_OK) {
        snprintf(err, errlen, "%s: cannot open or migrate the database (see the log)", path);
        goto fail;
    }
    store_close(st);
    return 0;

fail:
    store_close(st);
    keys_wipe(keys);
    return -1;
}
