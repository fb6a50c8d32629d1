/*
 * auth.c - the auth decision (auth.h): one auth_ctx per worker loop.
 *
 * Owns, per worker: the store connection, the queue of decisions waiting to
 * be delivered, the flush timer for batched bookkeeping, and the revocation
 * watch over live sessions.  Shares with the other workers (struct
 * auth_shared, made once by main.c): the verification cache, the KDF
 * threads and their queue of jobs; and the failure table (ratelimit.c).
 * Does not own the keys or the config (borrowed), nor the sessions (proxy/).
 *
 * Life of a check:
 *   auth_check -> failure table -> [app-password shape?]
 *      -> cache hit: re-read the row by id, decide          (loop thread)
 *      -> miss: find the one row with the locator; then, under the shared
 *         lock, either join the job already verifying the same (user,
 *         password, row) - two workers, or two sessions, asking at once run
 *         argon2id once - or queue a new job for the KDF threads
 *         -> a KDF thread runs argon2id, fills the shared cache on a match,
 *            and hands the result to every waiter's loop (uv_async)
 *         -> back on each loop: re-read the row by id, decide
 *   -> otherwise: factor count -> PASSTHROUGH or REFUSED
 *
 * The KDF threads are mfagate's own, not libuv's pool: [auth] kdf_threads
 * of them, by default min(4, cores - 1) (at least one), at the lowest
 * priority with a short time slice, so that argon2id never takes the last
 * core from the loops and a loop that wakes up never waits behind it; and
 * nothing else queues behind argon2id either.
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
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "auth/apppw.h"
#include "auth/keys.h"
#include "auth/ratelimit.h"
#include "auth/store.h"
#include "core/log.h"
#include "core/util.h"

#define AUTH_KDF_NICE 19              /* the KDF threads' nice value */
#define AUTH_KDF_SLICE_NS 100000      /* and their time slice (see auth_kdf_thread_sched) */
#define AUTH_KDF_THREADS_AUTO 4       /* [auth] kdf_threads = 0: min(this, cores - 1), at least 1 */
#define AUTH_KDF_QUEUE_MAX 512        /* distinct verifications waiting; beyond: tempfail */
#define AUTH_LAST_USE_GRAIN_S 60       /* last use is recorded to the minute */
#define AUTH_FLUSH_MS 1000          /* batched bookkeeping is written this often */
#define AUTH_WATCH_MS 2000          /* revocation watch tick */
#define AUTH_WATCH_FULL_TICKS 15    /* check live sessions at least every 30 s */
#define AUTH_CACHE_WAYS 4
#define AUTH_DELAY_BASE_MS 250      /* first failure delay, doubling */
#define AUTH_DELAY_MAX_MS 8000

enum auth_pending_state {
    PENDING_KDF,       /* waiting for a KDF job (or its result to be taken) */
    PENDING_READY,     /* its outcome waits in the ready queue */
};

struct auth_kdf_job;

struct auth_pending {
    struct auth_ctx *ctx;
    struct auth_pending *prev, *next;  /* ctx->kdf or ctx->ready */
    enum auth_pending_state state;
    auth_done_cb cb;
    void *arg;
    enum config_proto proto;
    char addr[AUTH_ADDR_MAX];
    struct auth_outcome outcome;       /* user filled in at the start */
    uint64_t delay_ms;
    uint64_t due_ms;                   /* PENDING_READY: deliver at (uv_now) */
    char pw[APPPW_LEN + 1];            /* normalized app password; wiped */
    unsigned char cache_key[32];       /* HMAC(keys.cache, user ":" pw) */
    int64_t cand_id;                   /* the row the KDF checks against */
    char hash[APPPW_HASH_MAX];         /* its hash, as read before the KDF */
    int record_use;                    /* last use worth writing (see auth_decide_row) */

    /* Under the shared lock while state is PENDING_KDF. */
    struct auth_kdf_job *job;          /* the job it waits for; NULL once done */
    struct auth_pending *wnext;        /* the job's waiters, or ctx->kdf_done */
    int kdf_result;                    /* apppw_verify's result, once done */
};

/*
 * One argon2id run, shared by every check of the same (user, password, row)
 * that arrives while it is queued or running.  Lives under the shared lock;
 * the KDF thread reads its copies without it while running.
 */
struct auth_kdf_job {
    struct auth_kdf_job *next;         /* the queue, then the running list */
    int running;
    unsigned char cache_key[32];
    int64_t cand_id;
    char hash[APPPW_HASH_MAX];
    char pw[APPPW_LEN + 1];
    unsigned char pepper[KEYS_LEN];
    struct auth_pending *waiters;      /* singly linked through wnext */
};

struct auth_cache_entry {
    unsigned char key[32];
    int64_t apppw_id;
    unsigned char hash_digest[16];     /* SHA-256 prefix of the row's hash */
    uint64_t expires_ms;               /* util_now_ms; 0 = free slot */
};

/*
 * What every worker's context shares: the verification cache (so that a
 * user pays argon2id once per process, not once per worker) and the KDF
 * threads with their queue.  Everything below `lock` is guarded by it.
 */
struct auth_shared {
    const struct config *cfg;
    uv_mutex_t lock;
    uv_cond_t wake;                    /* a job was queued, or stopping */
    uv_thread_t threads[CONFIG_KDF_THREADS_MAX];
    int nthreads;

    struct auth_cache_entry *cache;    /* cache_sets sets of cache_ways entries */
    size_t cache_sets;
    size_t cache_ways;

    struct auth_kdf_job *queue_head, *queue_tail;
    struct auth_kdf_job *running;
    int queued;
    int stopping;
};

struct auth_ctx {
    uv_loop_t *loop;
    const struct config *cfg;
    const struct keys *keys;
    struct store *store;
    struct auth_shared *shared;
    int own_shared;                    /* made by auth_ctx_new, freed with the context */

    struct auth_pending *kdf;          /* PENDING_KDF checks of this context */
    struct auth_pending *kdf_done;     /* under shared->lock: results to take */
    struct auth_pending *ready_head;   /* sorted by due_ms */
    struct auth_pending *ready_tail;

    uv_async_t kdf_async;              /* a KDF thread finished one of ours */
    uv_timer_t ready_timer;
    uv_timer_t flush_timer;
    uv_timer_t watch_timer;
    int closing;                       /* handles still closing */

    struct auth_live live;             /* sentinel of the circular list */
    int64_t data_version;
    EVP_MAC_CTX *cache_mac;            /* HMAC-SHA256 keyed with keys->cache, reused */
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

    /* Once per cache hit: util_sha256 skips OpenSSL 3's per-call fetch. */
    if (util_sha256(hash, strlen(hash), md) != 0)
        SHA256((const unsigned char *)hash, strlen(hash), md);
    memcpy(out, md, 16);
}

/* Under sh->lock. */
static struct auth_cache_entry *
auth_cache_set(struct auth_shared *sh, const unsigned char key[32])
{
    uint64_t h;

    memcpy(&h, key, sizeof(h));
    return &sh->cache[(h % sh->cache_sets) * sh->cache_ways];
}

/* Copies the live entry for key into *out; 1 if there was one.  Locks. */
static int
auth_cache_lookup(struct auth_shared *sh, const unsigned char key[32], uint64_t now,
                  struct auth_cache_entry *out)
{
    struct auth_cache_entry *set;
    int found = 0;

    if (sh->cache == NULL)
        return 0;
    uv_mutex_lock(&sh->lock);
    set = auth_cache_set(sh, key);
    for (size_t i = 0; i < sh->cache_ways; i++) {
        if (set[i].expires_ms > now && util_ct_equal(set[i].key, key, 32)) {
            *out = set[i];
            found = 1;
            break;
        }
    }
    uv_mutex_unlock(&sh->lock);
    return found;
}

/* Under sh->lock. */
static void
auth_cache_insert(struct auth_shared *sh, const unsigned char key[32], int64_t id,
                  const char *hash, uint64_t now)
{
    struct auth_cache_entry *set, *slot = NULL;

    if (sh->cache == NULL)
        return;
    set = auth_cache_set(sh, key);
    for (size_t i = 0; i < sh->cache_ways; i++) {
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
    slot->expires_ms = now + sh->cfg->cache_ttl_ms;
}

/* Forgets key's entry if it still names apppw_id.  Locks. */
static void
auth_cache_drop(struct auth_shared *sh, const unsigned char key[32], int64_t apppw_id)
{
    struct auth_cache_entry *set;

    if (sh->cache == NULL)
        return;
    uv_mutex_lock(&sh->lock);
    set = auth_cache_set(sh, key);
    for (size_t i = 0; i < sh->cache_ways; i++)
        if (set[i].apppw_id == apppw_id && util_ct_equal(set[i].key, key, 32))
            OPENSSL_cleanse(&set[i], sizeof(set[i]));
    uv_mutex_unlock(&sh->lock);
}

/* --- the KDF threads ---------------------------------------------------- */

static void
auth_job_free(struct auth_kdf_job *j)
{
    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

/* Under sh->lock: takes j off the queue (it has not started). */
static void
auth_job_unqueue(struct auth_shared *sh, struct auth_kdf_job *j)
{
    struct auth_kdf_job **pp = &sh->queue_head, *prev = NULL;

    while (*pp != NULL && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = j->next;
    if (sh->queue_tail == j)
        sh->queue_tail = prev;
    sh->queued--;
}

/* Under sh->lock: takes j off the running list. */
static void
auth_job_unrun(struct auth_shared *sh, struct auth_kdf_job *j)
{
    struct auth_kdf_job **pp = &sh->running;

    while (*pp != NULL && *pp != j)
        pp = &(*pp)->next;
    if (*pp != NULL)
        *pp = j->next;
}

/* Under sh->lock: a queued or running job for the same check, or NULL. */
static struct auth_kdf_job *
auth_job_find(struct auth_shared *sh, const struct auth_pending *p)
{
    struct auth_kdf_job *lists[2] = {sh->running, sh->queue_head};

    for (int l = 0; l < 2; l++)
        for (struct auth_kdf_job *j = lists[l]; j != NULL; j = j->next)
            if (j->cand_id == p->cand_id && util_ct_equal(j->cache_key, p->cache_key, 32) &&
                strcmp(j->hash, p->hash) == 0)
                return j;
    return NULL;
}

/* sched_setattr(2)'s argument (glibc has no wrapper). */
struct auth_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

/*
 * A cold check (~20 ms of one core) must not delay the loops' warm logins.
 * Lowest priority (nice 19) is not enough by itself: Linux's scheduler
 * (EEVDF) lets the running thread finish its time slice (~3 ms) before a
 * woken loop thread gets the core, and that slice showed in the warm
 * logins' p99 (measured here: +75-400 % with nice 10).  So the slice is
 * also made short (0.1 ms; Linux >= 6.6 takes sched_runtime as the slice
 * of a normal thread), and a loop that wakes up gets the core at once.
 * Not SCHED_IDLE: it measured no better, and a thread cannot leave it
 * again without privileges, so on a saturated server cold checks could
 * starve for good.  Each call is the calling thread's own (Linux sets
 * these per thread).
 */
static void
auth_kdf_thread_sched(void)
{
    struct auth_sched_attr a;
    pid_t tid = (pid_t)syscall(SYS_gettid);

    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.sched_policy = SCHED_OTHER;
    a.sched_nice = AUTH_KDF_NICE;
    a.sched_runtime = AUTH_KDF_SLICE_NS;
    if (syscall(SYS_sched_setattr, tid, &a, 0) == 0)
        return;
    /* An older kernel: the nice value alone. */
    if (setpriority(PRIO_PROCESS, (id_t)tid, AUTH_KDF_NICE) != 0)
        log_debug("auth event=kdf_nice_failed");
}

static void
auth_kdf_thread(void *arg)
{
    struct auth_shared *sh = arg;

    auth_kdf_thread_sched();
    uv_mutex_lock(&sh->lock);
    for (;;) {
        struct auth_kdf_job *j = sh->queue_head;
        struct auth_pending *w, *wn;
        int r;

        if (sh->stopping)
            break;
        if (j == NULL) {
            uv_cond_wait(&sh->wake, &sh->lock);
            continue;
        }
        sh->queue_head = j->next;
        if (sh->queue_head == NULL)
            sh->queue_tail = NULL;
        sh->queued--;
        j->next = sh->running;
        sh->running = j;
        j->running = 1;
        uv_mutex_unlock(&sh->lock);

        r = apppw_verify(j->pepper, j->pw, j->hash);

        uv_mutex_lock(&sh->lock);
        auth_job_unrun(sh, j);
        /* The waiters re-read the row before they decide, and so does
         * every later cache hit: a revocation meanwhile still counts. */
        if (r == 0)
            auth_cache_insert(sh, j->cache_key, j->cand_id, j->hash, util_now_ms());
        /* Each waiter's context stays open while it has waiters (its
         * auth_ctx_free takes them off under this lock first). */
        for (w = j->waiters; w != NULL; w = wn) {
            struct auth_ctx *ctx = w->ctx;

            wn = w->wnext;
            w->job = NULL;
            w->kdf_result = r;
            w->wnext = ctx->kdf_done;
            ctx->kdf_done = w;
            uv_async_send(&ctx->kdf_async);
        }
        auth_job_free(j);
    }
    uv_mutex_unlock(&sh->lock);
}

int
auth_shared_kdf_threads(const struct auth_shared *sh)
{
    return sh->nthreads;
}

int
auth_shared_new(const struct config *cfg, struct auth_shared **out)
{
    struct auth_shared *sh;
    unsigned cores = uv_available_parallelism();
    int n;

    *out = NULL;
    sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return UV_ENOMEM;
    sh->cfg = cfg;
    if (cfg->cache_entries > 0 && cfg->cache_ttl_ms > 0) {
        sh->cache_ways = cfg->cache_entries < AUTH_CACHE_WAYS ? cfg->cache_entries
                                                             : AUTH_CACHE_WAYS;
        sh->cache_sets = cfg->cache_entries / sh->cache_ways;
        sh->cache = calloc(sh->cache_sets * sh->cache_ways, sizeof(*sh->cache));
        if (sh->cache == NULL)
            goto fail_mem;
    }
    if (uv_mutex_init(&sh->lock) != 0)
        goto fail_mem;
    if (uv_cond_init(&sh->wake) != 0) {
        uv_mutex_destroy(&sh->lock);
        goto fail_mem;
    }
    /* [auth] kdf_threads, or: leave one core to the loops; one thread at least. */
    n = cores > 1 ? (int)cores - 1 : 1;
    if (n > AUTH_KDF_THREADS_AUTO)
        n = AUTH_KDF_THREADS_AUTO;
    if (cfg->kdf_threads > 0)
        n = cfg->kdf_threads < CONFIG_KDF_THREADS_MAX ? cfg->kdf_threads : CONFIG_KDF_THREADS_MAX;
    for (int i = 0; i < n; i++) {
        if (uv_thread_create(&sh->threads[i], auth_kdf_thread, sh) != 0)
            break;
        sh->nthreads++;
    }
    if (sh->nthreads == 0) {
        auth_shared_free(sh);
        return UV_EAGAIN;
    }
    *out = sh;
    return 0;

fail_mem:
    free(sh->cache);
    free(sh);
    return UV_ENOMEM;
}

void
auth_shared_free(struct auth_shared *sh)
{
    struct auth_kdf_job *j, *next;

    if (sh == NULL)
        return;
    uv_mutex_lock(&sh->lock);
    sh->stopping = 1;
    uv_cond_broadcast(&sh->wake);
    uv_mutex_unlock(&sh->lock);
    for (int i = 0; i < sh->nthreads; i++)
        uv_thread_join(&sh->threads[i]);
    /* Every context is gone, so no job has waiters left. */
    for (j = sh->queue_head; j != NULL; j = next) {
        next = j->next;
        auth_job_free(j);
    }
    uv_cond_destroy(&sh->wake);
    uv_mutex_destroy(&sh->lock);
    if (sh->cache != NULL) {
        OPENSSL_cleanse(sh->cache, sh->cache_sets * sh->cache_ways * sizeof(*sh->cache));
        free(sh->cache);
    }
    free(sh);
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

/* The async handle keeps the loop alive only while checks wait for a KDF. */
static void
auth_kdf_ref(struct auth_ctx *ctx)
{
    if (ctx->kdf != NULL)
        uv_ref((uv_handle_t *)&ctx->kdf_async);
    else
        uv_unref((uv_handle_t *)&ctx->kdf_async);
}

/* A KDF result is back on the loop: the row decides, as on a cache hit. */
static void
auth_kdf_done(struct auth_pending *p)
{
    struct auth_ctx *ctx = p->ctx;
    struct store_apppw row;
    int r;

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
    auth_decide_row(p, &row);
}

static void
auth_kdf_async_cb(uv_async_t *h)
{
    struct auth_ctx *ctx = container_of(h, struct auth_ctx, kdf_async);
    struct auth_pending *done, *p, *rev = NULL;

    uv_mutex_lock(&ctx->shared->lock);
    done = ctx->kdf_done;
    ctx->kdf_done = NULL;
    uv_mutex_unlock(&ctx->shared->lock);
    /* The list was pushed newest first: decide in arrival order. */
    while (done != NULL) {
        p = done;
        done = p->wnext;
        p->wnext = rev;
        rev = p;
    }
    while ((p = rev) != NULL) {
        rev = p->wnext;
        p->wnext = NULL;
        auth_list_unlink(&ctx->kdf, NULL, p);
        auth_kdf_done(p);
    }
    auth_kdf_ref(ctx);
}

/*
 * Under the shared lock: waits for the job already verifying the same
 * check, or queues a new one.  0, or a reason word for a tempfail.
 */
static const char *
auth_kdf_enqueue(struct auth_pending *p)
{
    struct auth_ctx *ctx = p->ctx;
    struct auth_shared *sh = ctx->shared;
    struct auth_kdf_job *j;

    j = auth_job_find(sh, p);
    if (j != NULL) {
        ctx->stats.kdf_merged++;
    } else {
        if (sh->queued >= AUTH_KDF_QUEUE_MAX)
            return "kdf_busy";
        j = calloc(1, sizeof(*j));
        if (j == NULL)
            return "memory";
        memcpy(j->cache_key, p->cache_key, sizeof(j->cache_key));
        j->cand_id = p->cand_id;
        util_strlcpy(j->hash, p->hash, sizeof(j->hash));
        util_strlcpy(j->pw, p->pw, sizeof(j->pw));
        memcpy(j->pepper, ctx->keys->pepper, sizeof(j->pepper));
        if (sh->queue_tail != NULL)
            sh->queue_tail->next = j;
        else
            sh->queue_head = j;
        sh->queue_tail = j;
        sh->queued++;
        uv_cond_signal(&sh->wake);
        ctx->stats.kdf_runs++;
    }
    p->job = j;
    p->wnext = j->waiters;
    j->waiters = p;
    return NULL;
}

/* Under the shared lock: p no longer waits (cancelled, or its context goes). */
static void
auth_kdf_leave(struct auth_pending *p)
{
    struct auth_shared *sh = p->ctx->shared;
    struct auth_pending **pp;
    struct auth_kdf_job *j = p->job;

    pp = j != NULL ? &j->waiters : &p->ctx->kdf_done;
    while (*pp != NULL && *pp != p)
        pp = &(*pp)->wnext;
    if (*pp != NULL)
        *pp = p->wnext;
    p->wnext = NULL;
    p->job = NULL;
    /* Nobody else waits and it has not started: it need not run at all.
     * (A running job finishes and still fills the cache.) */
    if (j != NULL && j->waiters == NULL && !j->running) {
        auth_job_unqueue(sh, j);
        auth_job_free(j);
    }
}

static EVP_MAC *auth_hmac;             /* fetched once per process, never freed */
static uv_once_t auth_hmac_once = UV_ONCE_INIT;

static void
auth_hmac_fetch(void)
{
    auth_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

/*
 * The cache key, HMAC-SHA256(keys.cache, user ":" pw): the same bytes as
 * apppw_mac, from a context keyed once per worker and re-initialised per
 * use; apppw_mac's one-shot HMAC() fetches the algorithms (locked lookups)
 * and sets the key up again on every call, once per login.
 */
static int
auth_cache_key(struct auth_ctx *ctx, const char *user, const char *pw, unsigned char out[32])
{
    size_t ul = strlen(user), pl = strlen(pw), n = 0;

    if (ul + 1 + pl > 512)    /* apppw_mac's limit, so that both refuse alike */
        return -1;
    if (ctx->cache_mac == NULL) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end(),
        };

        uv_once(&auth_hmac_once, auth_hmac_fetch);
        if (auth_hmac != NULL && (ctx->cache_mac = EVP_MAC_CTX_new(auth_hmac)) != NULL &&
            EVP_MAC_init(ctx->cache_mac, ctx->keys->cache, APPPW_KEY_LEN, params) != 1) {
            EVP_MAC_CTX_free(ctx->cache_mac);
            ctx->cache_mac = NULL;
        }
        if (ctx->cache_mac == NULL)
            return apppw_mac(ctx->keys->cache, user, pw, out);
    }
    /* A NULL key re-initialises with the key already set. */
    if (EVP_MAC_init(ctx->cache_mac, NULL, 0, NULL) != 1 ||
        EVP_MAC_update(ctx->cache_mac, (const unsigned char *)user, ul) != 1 ||
        EVP_MAC_update(ctx->cache_mac, (const unsigned char *)":", 1) != 1 ||
        EVP_MAC_update(ctx->cache_mac, (const unsigned char *)pw, pl) != 1 ||
        EVP_MAC_final(ctx->cache_mac, out, &n, 32) != 1 || n != 32)
        return -1;
    return 0;
}

/* The password has the shape of an app password. */
static void
auth_try_apppw(struct auth_pending *p)
{
    struct auth_ctx *ctx = p->ctx;
    struct auth_cache_entry e;
    struct store_apppw row;
    char locator[APPPW_LOCATOR_LEN + 1];
    unsigned char digest[16];
    const char *why;
    int r;

    if (auth_cache_key(ctx, p->outcome.user, p->pw, p->cache_key) != 0) {
        auth_finish(p, AUTH_TEMPFAIL, "crypto");
        return;
    }
    if (auth_cache_lookup(ctx->shared, p->cache_key, util_now_ms(), &e)) {
        /* A hit skips the KDF, never the row: revocation, expiry and scope
         * changes made by any process count at once. */
        r = store_apppw_get(ctx->store, e.apppw_id, &row);
        if (r == STORE_ERR) {
            auth_finish(p, AUTH_TEMPFAIL, "store");
            return;
        }
        if (r == STORE_OK) {
            auth_hash_digest(row.hash, digest);
            if (strcmp(row.user, p->outcome.user) == 0 &&
                util_ct_equal(digest, e.hash_digest, sizeof(digest))) {
                ctx->stats.cache_hits++;
                OPENSSL_cleanse(&e, sizeof(e));
                auth_decide_row(p, &row);
                return;
            }
        }
        auth_cache_drop(ctx->shared, p->cache_key, e.apppw_id);
        OPENSSL_cleanse(&e, sizeof(e));
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
    util_strlcpy(p->hash, row.hash, sizeof(p->hash));
    uv_mutex_lock(&ctx->shared->lock);
    why = auth_kdf_enqueue(p);
    uv_mutex_unlock(&ctx->shared->lock);
    if (why != NULL) {
        auth_finish(p, AUTH_TEMPFAIL, why);
        return;
    }
    p->state = PENDING_KDF;
    p->prev = NULL;
    p->next = ctx->kdf;
    if (ctx->kdf)
        ctx->kdf->prev = p;
    ctx->kdf = p;
    auth_kdf_ref(ctx);
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
        /* Off the job (which then runs only if others still wait) or off
         * the list of results not yet taken; then nothing refers to it. */
        uv_mutex_lock(&ctx->shared->lock);
        auth_kdf_leave(p);
        uv_mutex_unlock(&ctx->shared->lock);
        auth_list_unlink(&ctx->kdf, NULL, p);
        auth_pending_free(p);
        auth_kdf_ref(ctx);
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
             struct auth_shared *shared, struct auth_ctx **out)
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
    if (shared == NULL) {
        if (auth_shared_new(cfg, &shared) != 0)
            goto fail;
        ctx->own_shared = 1;
    }
    ctx->shared = shared;
    if (store_path(cfg->state_dir, path, sizeof(path)) != STORE_OK ||
        store_open(path, &ctx->store) != STORE_OK ||
        store_data_version(ctx->store, &ctx->data_version) != STORE_OK)
        goto fail;
    if (uv_async_init(loop, &ctx->kdf_async, auth_kdf_async_cb) != 0)
        goto fail;
    uv_unref((uv_handle_t *)&ctx->kdf_async);
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
    if (ctx->own_shared)
        auth_shared_free(ctx->shared);
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
    /* Checks waiting for a KDF leave their jobs under the shared lock:
     * after this, no KDF thread refers to this context. */
    uv_mutex_lock(&ctx->shared->lock);
    for (p = ctx->kdf; p != NULL; p = p->next)
        auth_kdf_leave(p);
    uv_mutex_unlock(&ctx->shared->lock);
    for (p = ctx->kdf; p != NULL; p = next) {
        next = p->next;
        auth_pending_free(p);
    }
    ctx->kdf = NULL;
    if (ctx->own_shared) {
        auth_shared_free(ctx->shared);
        ctx->shared = NULL;
    }
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
    EVP_MAC_CTX_free(ctx->cache_mac);
    ctx->cache_mac = NULL;
    ctx->closing = 4;
    ctx->kdf_async.data = ctx;
    ctx->ready_timer.data = ctx->flush_timer.data = ctx->watch_timer.data = ctx;
    uv_close((uv_handle_t *)&ctx->kdf_async, auth_ctx_close_cb);
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
