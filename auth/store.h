/*
 * store.h - the narrow interface to what mfagate keeps: users, factors, app
 * passwords, single-use TOTP steps, audit events (and the tables later
 * issues fill: trusted devices, challenges, web sessions).
 *
 * store.c is the only file that includes sqlite3.h; a PostgreSQL store can
 * replace it by implementing these functions.  One struct store is one
 * database connection, used by one thread at a time: each worker opens its
 * own, and the CLI opens its own while the server runs.
 *
 * Conventions: every function returns STORE_OK (0) or a negative STORE_*
 * code.  User names are passed already normalized (auth_normalize_user).
 * Times are seconds since the epoch; 0 means "never"/"not set".  A users row
 * is created only by store_user_ensure(), store_factor_add() and
 * store_apppw_add() - never by a lookup.
 *
 * Durability: writes a person is shown (a new app password, a binding, a
 * revocation, an admin audit row) commit with synchronous=FULL before the
 * function returns.  Hot-path bookkeeping (last use of an app password, login
 * audit rows) is queued with store_batch_*() and written by
 * store_batch_flush() in one transaction.
 */
#ifndef MFA_STORE_H
#define MFA_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_OK 0
#define STORE_ERR (-1)        /* database error (logged) */
#define STORE_NOTFOUND (-2)   /* no such row */
#define STORE_CONFLICT (-3)   /* already there / already used */
#define STORE_GONE (-4)       /* a row the change depended on was used or expired */

#define STORE_NAME_MAX 256    /* user names (= AUTH_USER_MAX) */
#define STORE_LABEL_MAX 128   /* app password names, factor labels */
#define STORE_KIND_MAX 16     /* "totp", "email", "wechat" */
#define STORE_HASH_MAX 192    /* encoded argon2id string */
#define STORE_LOCATOR_MAX 16
#define STORE_SECRET_MAX 256  /* encrypted factor secret */
#define STORE_ADDR_MAX 64
#define STORE_PROTO_MAX 8
#define STORE_EVENT_MAX 32
#define STORE_DETAIL_MAX 256
#define STORE_TOKEN_HASH_LEN 32  /* HMAC-SHA256 of a web token */
#define STORE_CKIND_MAX 32    /* challenge kinds: "signin", "grant", ... */
#define STORE_CDATA_MAX 256   /* a challenge's data */
#define STORE_SUBJECT_MAX 128 /* a WeChat openid (28 characters today) */

/* Queued bookkeeping beyond this is flushed at once by the call that queues. */
#define STORE_BATCH_MAX 1024

/* The current schema version (PRAGMA user_version after store_migrate). */
#define STORE_SCHEMA_VERSION 3

struct store;

/* "<state_dir>/mfagate.db" into out; 0 or STORE_ERR if it does not fit. */
int store_path(const char *state_dir, char *out, size_t outlen);

/*
 * Opens (creating it 0600 if missing) the database at path: WAL, a
 * busy_timeout, foreign keys on.  Does not migrate.
 */
int store_open(const char *path, struct store **out);

/* Flushes nothing (call store_batch_flush first), finalizes, closes. */
void store_close(struct store *st);

/*
 * Applies the numbered migrations above PRAGMA user_version, each in one
 * transaction.  Idempotent, and safe against a second process migrating at
 * the same time.  Called once at start (auth_init_state) and by the CLI.
 */
int store_migrate(struct store *st);

int store_schema_version(struct store *st, int *out);

/*
 * A number that changes whenever the database changed: SQLite's
 * data_version (commits by other connections, other processes included)
 * plus the changes this connection made itself.  Cheap; no table is read.
 */
int store_data_version(struct store *st, int64_t *out);

/* --- users -------------------------------------------------------------- */

/* The user's id, or STORE_NOTFOUND. */
int store_user_id(struct store *st, const char *user, int64_t *id);

/* The user's id, creating the row (web sign-in, bindings) if missing. */
int store_user_ensure(struct store *st, const char *user, int64_t now, int64_t *id);

/* --- factors ------------------------------------------------------------ */

struct store_factor {
    int64_t id;
    char kind[STORE_KIND_MAX];
    char label[STORE_LABEL_MAX];
    unsigned char secret[STORE_SECRET_MAX];   /* as stored (encrypted) */
    size_t secret_len;
    int64_t created;
    int64_t last_used;
    char subject[STORE_SUBJECT_MAX];          /* wechat: the openid bound */
    char user[STORE_NAME_MAX];
};

/* kind is "totp", "email" or "wechat".  Durable.  Creates the user row. */
int store_factor_add(struct store *st, const char *user, const char *kind, const char *label,
                     const void *secret, size_t secret_len, int64_t now, int64_t *id);

/* Number of factors the user has bound (0 for an unknown user). */
int store_factor_count(struct store *st, const char *user, int *count);

/* The user's oldest factor of this kind, or STORE_NOTFOUND. */
int store_factor_get(struct store *st, const char *user, const char *kind,
                     struct store_factor *out);

/* Calls cb for each factor (oldest first); a non-zero return from cb stops. */
typedef int (*store_factor_cb)(void *arg, const struct store_factor *f);
int store_factor_list(struct store *st, const char *user, store_factor_cb cb, void *arg);

/* Removes the user's factors of this kind; *removed = how many.  Durable. */
int store_factor_remove(struct store *st, const char *user, const char *kind, int *removed);

/*
 * Replaces a factor's secret (a changed binding): new secret, created = now,
 * never used, and its used TOTP steps forgotten.  Durable.  STORE_NOTFOUND
 * if the factor is gone.
 */
int store_factor_set_secret(struct store *st, int64_t factor_id, const void *secret,
                            size_t secret_len, int64_t now);

/* Sets the factor's last_used time. */
int store_factor_touch(struct store *st, int64_t factor_id, int64_t now);

/*
 * Marks TOTP time step `step` of the factor as used.  STORE_CONFLICT if this
 * step or a later one was already used: a code is accepted at most once, and
 * never one older than the last accepted.  Atomic across connections.
 */
int store_totp_use(struct store *st, int64_t factor_id, int64_t step);

/* --- app passwords ------------------------------------------------------ */

struct store_apppw {
    int64_t id;
    char user[STORE_NAME_MAX];
    char name[STORE_LABEL_MAX];
    unsigned scope;                       /* APPPW_SCOPE_* bits */
    char locator[STORE_LOCATOR_MAX];
    char hash[STORE_HASH_MAX];
    int64_t created;
    int64_t expires;                      /* 0 = never */
    int64_t last_used;                    /* 0 = never */
    char last_addr[STORE_ADDR_MAX];
    char last_proto[STORE_PROTO_MAX];
};

/*
 * Adds an app password (ids are never reused).  Durable.  Creates the user
 * row.  expires: 0 = never.
 */
int store_apppw_add(struct store *st, const char *user, const char *name, unsigned scope,
                    const char *locator, const char *hash, int64_t now, int64_t expires,
                    int64_t *id);

/* The user's newest app password with this locator, or STORE_NOTFOUND. */
int store_apppw_find(struct store *st, const char *user, const char *locator,
                     struct store_apppw *out);

/* One app password by id (a point query), or STORE_NOTFOUND. */
int store_apppw_get(struct store *st, int64_t id, struct store_apppw *out);

typedef int (*store_apppw_cb)(void *arg, const struct store_apppw *a);
int store_apppw_list(struct store *st, const char *user, store_apppw_cb cb, void *arg);

/* Deletes one of the user's app passwords; STORE_NOTFOUND if not theirs. */
int store_apppw_revoke(struct store *st, const char *user, int64_t id);

/* Deletes all of the user's app passwords; *removed = how many.  Durable. */
int store_apppw_revoke_all(struct store *st, const char *user, int *removed);

/* --- audit -------------------------------------------------------------- */

struct store_audit_row {
    int64_t id;
    int64_t time;
    char user[STORE_NAME_MAX];
    char event[STORE_EVENT_MAX];
    char detail[STORE_DETAIL_MAX];
    char addr[STORE_ADDR_MAX];
};

/* Writes one audit row now, durably (admin and web changes).  user may be
 * NULL; detail and addr may be NULL. */
int store_audit(struct store *st, int64_t now, const char *user, const char *event,
                const char *detail, const char *addr);

/* The newest `limit` rows (of user, or of everybody if user is NULL), oldest
 * first. */
typedef int (*store_audit_cb)(void *arg, const struct store_audit_row *r);
int store_audit_list(struct store *st, const char *user, int limit, store_audit_cb cb,
                     void *arg);

/* --- batched bookkeeping ------------------------------------------------ */

/* Queues "app password id was used at time from addr over proto". */
int store_batch_apppw_used(struct store *st, int64_t id, int64_t now, const char *addr,
                           const char *proto);

/* Queues an audit row (logins). */
int store_batch_audit(struct store *st, int64_t now, const char *user, const char *event,
                      const char *detail, const char *addr);

/* How many queued items wait for the next flush. */
size_t store_batch_pending(const struct store *st);

/* Writes everything queued in one transaction.  On failure the queue is
 * kept for the next try. */
int store_batch_flush(struct store *st);

/* --- web sessions, challenges, trusted devices (web/) -------------------- */

/*
 * Tokens are never stored: each row holds HMAC-SHA256(keys.token, token)
 * (STORE_TOKEN_HASH_LEN bytes, auth/token.h), and lookups are by that hash.
 */

struct store_websession {
    int64_t id;
    char user[STORE_NAME_MAX];
    int64_t created;
    int64_t expires;          /* the hard end (7 days after created) */
    int64_t last_seen;        /* idle expiry counts from here */
    char addr[STORE_ADDR_MAX];
};

/* Adds a signed-in session.  Creates the users row (a web sign-in). */
int store_websession_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                         const char *user, int64_t now, int64_t expires, const char *addr,
                         int64_t *id);

/* The session with this token hash, or STORE_NOTFOUND (expiry is the caller's). */
int store_websession_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                         struct store_websession *out);

/* Sets last_seen. */
int store_websession_touch(struct store *st, int64_t id, int64_t now);

/* Deletes one session (sign-out); STORE_NOTFOUND if there was none. */
int store_websession_remove(struct store *st, int64_t id);

/* Deletes the sessions ended before now (hard expiry, or idle since idle_before). */
int store_websession_prune(struct store *st, int64_t now, int64_t idle_before);

struct store_challenge {
    int64_t id;
    char user[STORE_NAME_MAX];
    char kind[STORE_CKIND_MAX];
    char state[16];                       /* "pending" or "used" */
    unsigned char data[STORE_CDATA_MAX];
    size_t data_len;
    char addr[STORE_ADDR_MAX];
    int64_t created;
    int64_t expires;
    int attempts;                         /* wrong codes so far */
};

/* Adds a pending challenge (no users row is created). */
int store_challenge_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                        const char *user, const char *kind, const void *data, size_t data_len,
                        const char *addr, int64_t now, int64_t expires, int64_t *id);

int store_challenge_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                        struct store_challenge *out);

/* The user's newest pending challenge of this kind, or STORE_NOTFOUND. */
int store_challenge_find(struct store *st, const char *user, const char *kind,
                         struct store_challenge *out);

/* Replaces a pending challenge's data (an e-mail code sent later). */
int store_challenge_set_data(struct store *st, int64_t id, const void *data, size_t len);

/* One more wrong code; *attempts = the count after it. */
int store_challenge_fail(struct store *st, int64_t id, int *attempts);

/*
 * Uses the challenge up: pending -> used, only if it is still pending, not
 * expired at now and has fewer than max_attempts wrong codes; otherwise
 * STORE_CONFLICT.  Atomic across connections, so a challenge grants once.
 */
int store_challenge_consume(struct store *st, int64_t id, int64_t now, int max_attempts);

/* Deletes the user's challenges of this kind (a newer one replaces them). */
int store_challenge_remove_kind(struct store *st, const char *user, const char *kind);

/* Deletes challenges that expired before now. */
int store_challenge_prune(struct store *st, int64_t now);

struct store_device {
    int64_t id;
    char user[STORE_NAME_MAX];
    char label[STORE_LABEL_MAX];
    int64_t created;
    int64_t expires;
    int64_t last_used;
    char last_addr[STORE_ADDR_MAX];
};

/* Adds a trusted device.  Durable.  Creates the users row. */
int store_device_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                     const char *user, const char *label, const char *addr, int64_t now,
                     int64_t expires, int64_t *id);

int store_device_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                     struct store_device *out);

int store_device_touch(struct store *st, int64_t id, int64_t now, const char *addr);

typedef int (*store_device_cb)(void *arg, const struct store_device *d);
/* The user's devices, newest first. */
int store_device_list(struct store *st, const char *user, store_device_cb cb, void *arg);

/* Deletes one of the user's devices; STORE_NOTFOUND if not theirs.  Durable. */
int store_device_revoke(struct store *st, const char *user, int64_t id);

/* Deletes all of the user's devices; *removed = how many.  Durable. */
int store_device_revoke_all(struct store *st, const char *user, int *removed);

/* --- WeChat (issue 5) --------------------------------------------------- */

/* A WeChat binding to make (store_wechat_bind). */
struct store_wechat_binding {
    const char *user;
    const char *openid;            /* the factor's subject */
    const char *label;
    const void *secret;            /* the sealed code secret */
    size_t secret_len;
    int replace;                   /* a rebind: the old binding goes with it */
    int64_t scene_id;              /* > 0: this scene is answered "confirm" by
                                    * openid in the same transaction */
    int64_t grant_id;              /* > 0: this challenge (the change grant)
                                    * is used up in the same transaction */
    int grant_max_attempts;
};

/*
 * Binds b->openid to b->user: a 'wechat' factor with the sealed code
 * secret, subject = openid, all in one transaction.  STORE_CONFLICT if the
 * user has one already and !replace; STORE_NOTFOUND if replace and not;
 * STORE_GONE if the scene was answered or expired, or the grant used or
 * expired.  On any failure nothing changes.  Durable.
 */
int store_wechat_bind(struct store *st, const struct store_wechat_binding *b, int64_t now,
                      int64_t *id);

/* Calls cb for each binding of openid (f->user names the mailbox). */
int store_wechat_list(struct store *st, const char *openid, store_factor_cb cb, void *arg);

/* A QR scene: what a phone is asked to answer. */
struct store_scene {
    int64_t id;
    char user[STORE_NAME_MAX];
    char purpose[16];                     /* bind, rebind, signin, unbind, change */
    int64_t challenge_id;                 /* the challenge it verifies; 0 for binds */
    char addr[STORE_ADDR_MAX];            /* the browser's */
    int number;                           /* number matching of a push; 0 for scans */
    int64_t created;
    int64_t expires;
    char answer[16];                      /* "" until answered */
    char openid[STORE_SUBJECT_MAX];       /* who answered */
    int used;
};

int store_scene_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    const struct store_scene *sc, int64_t *id);
int store_scene_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    struct store_scene *out);
/* Records the answer once, before expiry at now; else STORE_CONFLICT. */
int store_scene_answer(struct store *st, int64_t id, const char *answer, const char *openid,
                       int64_t now);
/* Uses an approved scene once; else STORE_CONFLICT. */
int store_scene_use(struct store *st, int64_t id);

/* Deletes a scene (its QR could not be shown after all). */
int store_scene_remove(struct store *st, int64_t id);
int store_scene_prune(struct store *st, int64_t now);

/* Mini-program sessions: a bearer token's hash for an openid. */
int store_mpsession_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                        const char *openid, int64_t now, int64_t expires);
/* The openid of a live session, or STORE_NOTFOUND. */
int store_mpsession_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                        int64_t now, char *openid, size_t openid_len);
int store_mpsession_prune(struct store *st, int64_t now);

/* --- recovery codes (issue 4) -------------------------------------------- */

/*
 * One-time recovery codes, kept like app passwords: a non-secret locator
 * picks the one row worth a KDF run, the hash is argon2id (auth/recovery.c
 * makes both; the store keeps what it is given).  A user has at most one
 * set; a used code stays in the table (used = its time) until the set is
 * replaced or cleared.
 */
struct store_recovery {
    int64_t id;
    char locator[STORE_LOCATOR_MAX];
    char hash[STORE_HASH_MAX];
    int64_t created;
};

/* Replaces the user's set with n codes (locators[i], hashes[i]) in one
 * durable transaction.  Creates the users row. */
int store_recovery_replace(struct store *st, const char *user, const char *const *locators,
                           const char *const *hashes, int n, int64_t now);

/* The user's unused code with this locator, or STORE_NOTFOUND. */
int store_recovery_find(struct store *st, const char *user, const char *locator,
                        struct store_recovery *out);

/* Marks a code used at now, durably; STORE_CONFLICT if it was used already
 * (atomic across connections: a code is good once). */
int store_recovery_use(struct store *st, int64_t id, int64_t now);

/* How many codes the user has (*total), how many unused (*left), and when
 * the set was made (*created, 0 if none).  Any pointer may be NULL. */
int store_recovery_count(struct store *st, const char *user, int *total, int *left,
                         int64_t *created);

/* Deletes the user's set; *removed = how many rows.  Durable. */
int store_recovery_clear(struct store *st, const char *user, int *removed);

#endif
