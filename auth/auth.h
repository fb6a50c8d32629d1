/*
 * auth.h - the auth decision: the one entry point proxy/ (and later web/)
 * asks "may this user in, and how?".
 *
 * One auth_ctx per worker (it owns that worker's store connection and its
 * batched bookkeeping) and used only on that worker's loop thread; one
 * auth_shared per process (the verification cache and the KDF threads,
 * behind a mutex), shared by the workers' contexts.  The decision, in order (DESIGN.md 2.3):
 *   1. failure counter: a user over the lockout threshold is refused;
 *   2. the password is one of the user's app passwords, its scope allows the
 *      protocol and it has not expired -> AUTH_APPPW (log in to the backend
 *      with the master credentials; last use recorded);
 *   3. the user has no second factor -> AUTH_PASSTHROUGH (the backend decides
 *      with the client's own credentials);
 *   4. otherwise -> AUTH_REFUSED.
 * The KDF (argon2id) runs on auth's own few niced threads, never on the
 * loop; checks of the same password that overlap share one KDF run.
 */
#ifndef MFA_AUTH_H
#define MFA_AUTH_H

#include <stdint.h>
#include <uv.h>

#include "conf/config.h"

struct auth_ctx;
struct auth_pending;
struct auth_shared;
struct keys;
struct store;

#define AUTH_USER_MAX 256
#define AUTH_PASS_MAX 256
#define AUTH_ADDR_MAX 64

enum auth_result {
    AUTH_APPPW = 0,      /* app password: log in as user via the master user */
    AUTH_PASSTHROUGH,    /* no factor: forward the client's credentials */
    AUTH_REFUSED,        /* the one generic refusal */
    AUTH_TEMPFAIL,       /* the store failed: a temporary error to the client */
};

struct auth_outcome {
    enum auth_result result;
    int64_t apppw_id;            /* AUTH_APPPW: which app password, else 0 */
    char user[AUTH_USER_MAX];    /* the normalized user name */
};

/* Called on the loop thread, never from inside auth_check(). */
typedef void (*auth_done_cb)(void *arg, const struct auth_outcome *outcome);

/*
 * What the workers' contexts share: the verification cache (cfg's
 * cache_entries and cache_ttl) and the KDF threads (kdf_threads, by default
 * min(4, cores - 1), at least one; niced).  Made once before the workers start, freed after the
 * last context was freed (it joins the threads).  cfg is borrowed.
 */
int auth_shared_new(const struct config *cfg, struct auth_shared **out);
/* How many KDF threads it runs ([auth] kdf_threads, or the automatic count). */
int auth_shared_kdf_threads(const struct auth_shared *sh);
void auth_shared_free(struct auth_shared *sh);

/*
 * Creates a worker's context: opens its store connection (migrations were
 * applied by the main thread at start) and its timers on loop.  keys, cfg
 * and shared are borrowed and must outlive the context; shared NULL makes
 * the context its own (tests, single-loop tools), freed with it.
 */
int auth_ctx_new(uv_loop_t *loop, const struct config *cfg, const struct keys *keys,
                 struct auth_shared *shared, struct auth_ctx **out);

/* Flushes batched bookkeeping, closes the store and the handles.  The loop
 * must run once more afterwards for the handles to close. */
void auth_ctx_free(struct auth_ctx *ctx);

/*
 * Normalizes a user name as the decision and the backend will see it:
 * lower-cased if so configured; refuses (-1) empty names, names longer than
 * AUTH_USER_MAX-1, names with CR, LF, NUL, or Dovecot's master-user
 * separator '*'.  out has AUTH_USER_MAX bytes.
 */
int auth_normalize_user(const struct config *cfg, const char *user, size_t len, char *out);

/*
 * Starts the decision for (proto, user, password, client address).  user and
 * pass are copied; the password copy is wiped when done.  On 0, cb will be
 * called exactly once unless auth_cancel(*handle) is called first.
 */
int auth_check(struct auth_ctx *ctx, enum config_proto proto, const char *user,
               const char *pass, const char *client_addr, auth_done_cb cb, void *arg,
               struct auth_pending **handle);

/* The session went away: cb will not be called.  The handle is invalid after. */
void auth_cancel(struct auth_pending *handle);

/*
 * What the backend said about a passthrough (or app-password) login, for the
 * failure counter and the audit log.  ok: 1 logged in, 0 refused.
 */
void auth_report(struct auth_ctx *ctx, enum config_proto proto, const char *user,
                 const char *client_addr, enum auth_result how, int ok);

/*
 * Live sessions that logged in with an app password register here, so that
 * revoking the password (from the web, or from the CLI in another process)
 * ends them.  The context notices revocations within a few seconds (it
 * watches SQLite's data_version, it does not poll rows) and calls
 * node->revoked(node) on the loop thread; the session then closes and calls
 * auth_live_remove().
 */
struct auth_live {
    int64_t apppw_id;
    void (*revoked)(struct auth_live *node);
    struct auth_live *prev, *next;   /* owned by the context */
};

void auth_live_add(struct auth_ctx *ctx, struct auth_live *node);
void auth_live_remove(struct auth_ctx *ctx, struct auth_live *node);

/* --- Added by the auth/ implementation (not in the first agreed draft) --- */

/*
 * Notes on the contract above, as implemented:
 *  - auth_check() returns 0, UV_EINVAL (NULL ctx/user/pass/cb) or UV_ENOMEM;
 *    handle may be NULL if the caller never cancels.  The handle is invalid
 *    once cb has run.  A name auth_normalize_user() refuses is AUTH_REFUSED.
 *  - After cfg->fail_delay_after consecutive failures the outcome (whatever
 *    it is) is delivered after a growing delay (250 ms doubling, at most
 *    8 s), on a timer: the loop never blocks.
 *  - An app password that verifies but is expired or out of scope is
 *    AUTH_REFUSED even for a user without a factor (it is never handed to
 *    the backend).
 *  - Audit rows: auth_check() writes its own refusals (login_fail with
 *    reason=factor|lockout|apppw_scope|apppw_expired); auth_report() writes
 *    what the backend said (login_ok / login_fail, how=passthrough|apppw).
 *  - auth_ctx_free(): checks still pending are dropped without a callback
 *    (their handles must not be used again); a KDF job they waited for runs
 *    on only if it had started or another context waits for it.  Run the
 *    loop until uv_run() returns before closing it.  Live nodes still
 *    registered are unlinked.
 *  - More than 512 distinct verifications waiting for a KDF thread:
 *    AUTH_TEMPFAIL (the client is told to try again later).
 */

/*
 * For main.c, once at start before the workers: creates the state folder
 * (0700) and the server key (0600) if missing, loads the keys into *keys,
 * and opens, migrates and closes the database.  0, or -1 with a message in
 * err.
 */
int auth_init_state(const struct config *cfg, struct keys *keys, char *err, size_t errlen);

/* Counters of one context, for /metrics and for tests. */
struct auth_stats {
    uint64_t checks;         /* auth_check calls */
    uint64_t kdf_runs;       /* argon2id verifications queued to the KDF threads */
    uint64_t kdf_merged;     /* checks that joined a verification already queued */
    uint64_t cache_hits;     /* verification cache hits (no KDF) */
    uint64_t apppw_ok;
    uint64_t passthrough;
    uint64_t refused;        /* lockouts included */
    uint64_t lockouts;       /* refused because of the failure counter */
    uint64_t tempfail;
    uint64_t revoked_live;   /* live sessions told their password is gone */
};

void auth_ctx_stats(const struct auth_ctx *ctx, struct auth_stats *out);

/*
 * Runs the revocation check now instead of at the next tick of the watch
 * (web/ calls it right after revoking through this worker's store, so that
 * this worker's sessions end at once).  0, or -1 on a store error.
 */
int auth_live_check(struct auth_ctx *ctx);

/*
 * This worker's store connection (struct store, auth/store.h), for web/ and
 * later auth/ files running on the same loop thread.
 */
struct store *auth_ctx_store(struct auth_ctx *ctx);

/* The APPPW_SCOPE_* bit of a protocol (0 for CONFIG_PROTO_HTTP). */
unsigned auth_proto_scope(enum config_proto proto);

/* "imap", "pop3", "smtp", "http". */
const char *auth_proto_name(enum config_proto proto);

#endif
