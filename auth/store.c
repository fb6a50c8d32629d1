/*
 * store.c - the SQLite store behind store.h.  The only file that includes
 * sqlite3.h.  Owns the schema (numbered migrations), one connection per
 * struct store with its cached prepared statements, and that connection's
 * queue of batched bookkeeping.  Knows nothing about passwords or codes: it
 * keeps what it is given.
 *
 * Every prepared statement is reset right after use: a SELECT left
 * un-reset would pin a WAL snapshot, and this connection would stop seeing
 * other connections' commits (revocations, above all).
 */
#include "auth/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "core/log.h"
#include "core/util.h"

/* How long a connection waits for another writer (CLI, other workers). */
#define STORE_BUSY_TIMEOUT_MS 5000

/* TOTP steps kept per factor below the newest used one (about an hour). */
#define STORE_TOTP_KEEP_STEPS 120

enum store_stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SYNC_FULL,
    S_SYNC_NORMAL,
    S_DATA_VERSION,
    S_USER_VERSION,
    S_USER_ID,
    S_USER_INSERT,
    S_FACTOR_ADD,
    S_FACTOR_COUNT,
    S_FACTOR_GET,
    S_FACTOR_LIST,
    S_FACTOR_REMOVE,
    S_FACTOR_TOUCH,
    S_TOTP_USE,
    S_TOTP_PRUNE,
    S_APPPW_ADD,
    S_APPPW_FIND,
    S_APPPW_GET,
    S_APPPW_LIST,
    S_APPPW_REVOKE,
    S_APPPW_REVOKE_ALL,
    S_APPPW_USED,
    S_AUDIT_ADD,
    S_AUDIT_LIST_USER,
    S_AUDIT_LIST_ALL,
    S_FACTOR_SET_SECRET,
    S_TOTP_FORGET,
    S_WS_ADD,
    S_WS_GET,
    S_WS_TOUCH,
    S_WS_REMOVE,
    S_WS_PRUNE,
    S_CH_ADD,
    S_CH_GET,
    S_CH_FIND,
    S_CH_SET_DATA,
    S_CH_FAIL,
    S_CH_ATTEMPTS,
    S_CH_CONSUME,
    S_CH_REMOVE_KIND,
    S_CH_PRUNE,
    S_DEV_ADD,
    S_DEV_GET,
    S_DEV_TOUCH,
    S_DEV_LIST,
    S_DEV_REVOKE,
    S_DEV_REVOKE_ALL,
    S_WX_BIND_REMOVE,
    S_WX_BIND_ADD,
    S_WX_LIST,
    S_SCENE_ADD,
    S_SCENE_GET,
    S_SCENE_ANSWER,
    S_SCENE_USE,
    S_SCENE_REMOVE,
    S_SCENE_PRUNE,
    S_MPS_ADD,
    S_MPS_GET,
    S_MPS_PRUNE,
    S_RC_ADD,
    S_RC_DELETE,
    S_RC_FIND,
    S_RC_USE,
    S_RC_COUNT,
    S_COUNT,
};

#define APPPW_COLS                                                                  \
    "SELECT a.id, u.name, a.name, a.scope, a.locator, a.hash, a.created, a.expires, " \
    "a.last_used, a.last_addr, a.last_proto "                                          \
    "FROM app_passwords a JOIN users u ON u.id = a.user_id "

#define FACTOR_COLS                                                                  \
    "SELECT f.id, f.kind, f.label, f.secret, f.created, f.last_used, f.subject, "    \
    "u.name FROM factors f JOIN users u ON u.id = f.user_id "

#define AUDIT_COLS "SELECT id, time, user, event, detail, addr FROM "

#define WS_COLS                                                                  \
    "SELECT w.id, u.name, w.created, w.expires, w.last_seen, w.addr "               \
    "FROM web_sessions w JOIN users u ON u.id = w.user_id "

#define CH_COLS                                                                  \
    "SELECT id, user_name, kind, state, data, addr, created, expires, attempts "    \
    "FROM challenges "

#define DEV_COLS                                                                 \
    "SELECT d.id, u.name, d.label, d.created, d.expires, d.last_used, d.last_addr " \
    "FROM trusted_devices d JOIN users u ON u.id = d.user_id "

static const char *const store_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [S_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
    [S_DATA_VERSION] = "PRAGMA data_version",
    [S_USER_VERSION] = "PRAGMA user_version",
    [S_USER_ID] = "SELECT id FROM users WHERE name = ?1",
    [S_USER_INSERT] = "INSERT INTO users(name, created) VALUES (?1, ?2) "
                      "ON CONFLICT(name) DO NOTHING",
    [S_FACTOR_ADD] = "INSERT INTO factors(user_id, kind, label, secret, created) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_FACTOR_COUNT] = "SELECT count(*) FROM factors f JOIN users u ON u.id = f.user_id "
                       "WHERE u.name = ?1",
    [S_FACTOR_GET] = FACTOR_COLS "WHERE u.name = ?1 AND f.kind = ?2 ORDER BY f.id LIMIT 1",
    [S_FACTOR_LIST] = FACTOR_COLS "WHERE u.name = ?1 ORDER BY f.id",
    [S_FACTOR_REMOVE] = "DELETE FROM factors WHERE kind = ?2 AND "
                        "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_FACTOR_TOUCH] = "UPDATE factors SET last_used = ?2 WHERE id = ?1",
    /* One statement: it holds the write lock from its start, so the check
     * and the insert cannot interleave with another connection's. */
    [S_TOTP_USE] = "INSERT INTO totp_used(factor_id, step) SELECT ?1, ?2 "
                   "WHERE NOT EXISTS (SELECT 1 FROM totp_used "
                   "WHERE factor_id = ?1 AND step >= ?2)",
    [S_TOTP_PRUNE] = "DELETE FROM totp_used WHERE factor_id = ?1 AND step < ?2",
    [S_APPPW_ADD] = "INSERT INTO app_passwords(user_id, name, scope, locator, hash, created, "
                    "expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_APPPW_FIND] = APPPW_COLS "WHERE u.name = ?1 AND a.locator = ?2 "
                                "ORDER BY a.id DESC LIMIT 1",
    [S_APPPW_GET] = APPPW_COLS "WHERE a.id = ?1",
    [S_APPPW_LIST] = APPPW_COLS "WHERE u.name = ?1 ORDER BY a.id",
    [S_APPPW_REVOKE] = "DELETE FROM app_passwords WHERE id = ?2 AND "
                       "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_APPPW_REVOKE_ALL] = "DELETE FROM app_passwords WHERE "
                           "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_APPPW_USED] = "UPDATE app_passwords SET last_used = ?2, last_addr = ?3, "
                     "last_proto = ?4 WHERE id = ?1 AND "
                     "(last_used IS NULL OR last_used <= ?2)",
    [S_AUDIT_ADD] = "INSERT INTO audit(time, user, event, detail, addr) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_AUDIT_LIST_USER] = AUDIT_COLS "(SELECT * FROM audit WHERE user = ?1 "
                                     "ORDER BY id DESC LIMIT ?2) ORDER BY id",
    [S_AUDIT_LIST_ALL] = AUDIT_COLS "(SELECT * FROM audit ORDER BY id DESC LIMIT ?2) "
                                    "ORDER BY id",
    [S_FACTOR_SET_SECRET] = "UPDATE factors SET secret = ?2, created = ?3, last_used = NULL "
                            "WHERE id = ?1",
    [S_TOTP_FORGET] = "DELETE FROM totp_used WHERE factor_id = ?1",
    [S_WS_ADD] = "INSERT INTO web_sessions(token_hash, user_id, created, expires, last_seen, "
                 "addr) VALUES (?1, ?2, ?3, ?4, ?3, ?5)",
    [S_WS_GET] = WS_COLS "WHERE w.token_hash = ?1",
    [S_WS_TOUCH] = "UPDATE web_sessions SET last_seen = ?2 WHERE id = ?1",
    [S_WS_REMOVE] = "DELETE FROM web_sessions WHERE id = ?1",
    [S_WS_PRUNE] = "DELETE FROM web_sessions WHERE expires <= ?1 OR last_seen < ?2",
    [S_CH_ADD] = "INSERT INTO challenges(token_hash, user_name, kind, data, addr, created, "
                 "expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_CH_GET] = CH_COLS "WHERE token_hash = ?1",
    [S_CH_FIND] = CH_COLS "WHERE user_name = ?1 AND kind = ?2 AND state = 'pending' "
                          "ORDER BY id DESC LIMIT 1",
    [S_CH_SET_DATA] = "UPDATE challenges SET data = ?2 WHERE id = ?1 AND state = 'pending'",
    [S_CH_FAIL] = "UPDATE challenges SET attempts = attempts + 1 WHERE id = ?1",
    [S_CH_ATTEMPTS] = "SELECT attempts FROM challenges WHERE id = ?1",
    /* One statement: the check and the change cannot interleave with
     * another connection's, so a challenge is used at most once. */
    [S_CH_CONSUME] = "UPDATE challenges SET state = 'used' WHERE id = ?1 AND "
                     "state = 'pending' AND expires > ?2 AND attempts < ?3",
    [S_CH_REMOVE_KIND] = "DELETE FROM challenges WHERE user_name = ?1 AND kind = ?2",
    [S_CH_PRUNE] = "DELETE FROM challenges WHERE expires <= ?1",
    [S_DEV_ADD] = "INSERT INTO trusted_devices(token_hash, user_id, label, created, expires, "
                  "last_used, last_addr) VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
    [S_DEV_GET] = DEV_COLS "WHERE d.token_hash = ?1",
    [S_DEV_TOUCH] = "UPDATE trusted_devices SET last_used = ?2, last_addr = ?3 WHERE id = ?1",
    [S_DEV_LIST] = DEV_COLS "WHERE u.name = ?1 ORDER BY d.id DESC",
    [S_DEV_REVOKE] = "DELETE FROM trusted_devices WHERE id = ?2 AND "
                     "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_DEV_REVOKE_ALL] = "DELETE FROM trusted_devices WHERE "
                         "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_WX_BIND_REMOVE] = "DELETE FROM factors WHERE kind = 'wechat' AND user_id = ?1",
    [S_WX_BIND_ADD] = "INSERT INTO factors(user_id, kind, label, secret, created, subject) "
                      "VALUES (?1, 'wechat', ?2, ?3, ?4, ?5)",
    [S_WX_LIST] = FACTOR_COLS "WHERE f.kind = 'wechat' AND f.subject = ?1 ORDER BY f.id",
    [S_SCENE_ADD] = "INSERT INTO scenes(token_hash, user_name, purpose, challenge_id, addr, "
                    "number, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [S_SCENE_GET] = "SELECT id, user_name, purpose, challenge_id, addr, number, created, "
                    "expires, answer, openid, used FROM scenes WHERE token_hash = ?1",
    /* One statement each: an answer is given once, a scene is used once. */
    [S_SCENE_ANSWER] = "UPDATE scenes SET answer = ?2, openid = ?3 WHERE id = ?1 AND "
                       "answer IS NULL AND expires > ?4",
    [S_SCENE_USE] = "UPDATE scenes SET used = 1 WHERE id = ?1 AND used = 0 AND "
                    "answer IS NOT NULL AND answer NOT IN ('deny', 'fail')",
    [S_SCENE_REMOVE] = "DELETE FROM scenes WHERE id = ?1",
    [S_SCENE_PRUNE] = "DELETE FROM scenes WHERE expires <= ?1",
    [S_MPS_ADD] = "INSERT INTO mp_sessions(token_hash, openid, created, expires) "
                  "VALUES (?1, ?2, ?3, ?4)",
    [S_MPS_GET] = "SELECT openid FROM mp_sessions WHERE token_hash = ?1 AND expires > ?2",
    [S_MPS_PRUNE] = "DELETE FROM mp_sessions WHERE expires <= ?1",
    [S_RC_ADD] = "INSERT INTO recovery_codes(user_id, locator, hash, created) "
                 "VALUES (?1, ?2, ?3, ?4)",
    [S_RC_DELETE] = "DELETE FROM recovery_codes WHERE "
                    "user_id = (SELECT id FROM users WHERE name = ?1)",
    [S_RC_FIND] = "SELECT r.id, r.locator, r.hash, r.created FROM recovery_codes r "
                  "JOIN users u ON u.id = r.user_id WHERE u.name = ?1 AND r.locator = ?2 "
                  "AND r.used IS NULL ORDER BY r.id LIMIT 1",
    /* One statement: the check and the change cannot interleave with
     * another connection's, so a code is used at most once. */
    [S_RC_USE] = "UPDATE recovery_codes SET used = ?2 WHERE id = ?1 AND used IS NULL",
    [S_RC_COUNT] = "SELECT count(*), coalesce(sum(r.used IS NULL), 0), "
                   "coalesce(max(r.created), 0) FROM recovery_codes r "
                   "JOIN users u ON u.id = r.user_id WHERE u.name = ?1",
};

/*
 * The migrations, in order; migration i brings user_version from i to i+1.
 * Never edit one that has shipped: add the next.
 */
static const char *const store_migrations[] = {
    /* 1: the whole product's first schema. */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE factors ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL CHECK (kind IN ('totp', 'email', 'wechat')),"
    "  label TEXT NOT NULL DEFAULT '',"
    "  secret BLOB,"                       /* encrypted (AES-256-GCM) */
    "  created INTEGER NOT NULL,"
    "  last_used INTEGER);"
    "CREATE INDEX factors_user ON factors(user_id, kind);"
    /* AUTOINCREMENT: an id is never reused, so a verification-cache entry
     * that names a revoked password can never name a newer one. */
    "CREATE TABLE app_passwords ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  scope INTEGER NOT NULL,"            /* imap=1 pop3=2 smtp=4 */
    "  locator TEXT NOT NULL,"             /* non-secret HMAC prefix */
    "  hash TEXT NOT NULL,"                /* $argon2id$v=19$m=,t=,p=$salt$hash */
    "  created INTEGER NOT NULL,"
    "  expires INTEGER,"
    "  last_used INTEGER,"
    "  last_addr TEXT,"
    "  last_proto TEXT);"
    "CREATE INDEX app_passwords_locator ON app_passwords(user_id, locator);"
    "CREATE TABLE totp_used ("
    "  factor_id INTEGER NOT NULL REFERENCES factors(id) ON DELETE CASCADE,"
    "  step INTEGER NOT NULL,"
    "  PRIMARY KEY (factor_id, step)) WITHOUT ROWID;"
    "CREATE TABLE trusted_devices ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  label TEXT NOT NULL DEFAULT '',"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  last_used INTEGER,"
    "  last_addr TEXT);"
    "CREATE INDEX trusted_devices_user ON trusted_devices(user_id);"
    "CREATE TABLE challenges ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  user_name TEXT NOT NULL,"           /* not a users row: may be unknown */
    "  kind TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending',"
    "  data BLOB,"
    "  addr TEXT,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL);"
    "CREATE INDEX challenges_expires ON challenges(expires);"
    "CREATE TABLE web_sessions ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  csrf_hash BLOB,"
    "  verified INTEGER NOT NULL DEFAULT 0," /* second factor done */
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  last_seen INTEGER,"
    "  addr TEXT);"
    "CREATE INDEX web_sessions_user ON web_sessions(user_id);"
    /* user is text, not a reference: failed logins of unknown names are
     * audited without creating users rows. */
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  time INTEGER NOT NULL,"
    "  user TEXT,"
    "  event TEXT NOT NULL,"
    "  detail TEXT,"
    "  addr TEXT);"
    "CREATE INDEX audit_user ON audit(user, id);",
    /* 2: the web endpoint counts wrong codes per challenge, and finds a
     * user's pending enrollment or e-mail code by kind. */
    "ALTER TABLE challenges ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX challenges_user ON challenges(user_name, kind);",
    /* 3: WeChat (issue 5): the openid a 'wechat' factor is bound to, the
     * QR scenes a phone answers, the mini program's sessions; and the
     * one-time recovery codes (issue 4), kept like app passwords. */
    "ALTER TABLE factors ADD COLUMN subject TEXT;"
    "CREATE INDEX factors_subject ON factors(kind, subject);"
    "CREATE TABLE scenes ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  user_name TEXT NOT NULL,"
    "  purpose TEXT NOT NULL,"             /* bind | signin | unbind | change */
    "  challenge_id INTEGER,"              /* the challenge a verification answers */
    "  addr TEXT,"                         /* the browser's address */
    "  number INTEGER,"                    /* number matching of a pushed request */
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL,"
    "  answer TEXT,"                       /* NULL until the phone answers */
    "  openid TEXT,"                       /* who answered */
    "  used INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX scenes_expires ON scenes(expires);"
    "CREATE TABLE mp_sessions ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  token_hash BLOB NOT NULL UNIQUE,"
    "  openid TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL);"
    "CREATE TABLE recovery_codes ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  locator TEXT NOT NULL,"             /* non-secret HMAC prefix */
    "  hash TEXT NOT NULL,"                /* argon2id, like app passwords */
    "  created INTEGER NOT NULL,"
    "  used INTEGER);"
    "CREATE INDEX recovery_codes_user ON recovery_codes(user_id, locator);",
};

enum store_batch_kind {
    BATCH_APPPW_USED,
    BATCH_AUDIT,
};

struct store_batch_item {
    enum store_batch_kind kind;
    int64_t id;                            /* BATCH_APPPW_USED */
    int64_t time;
    char user[STORE_NAME_MAX];             /* BATCH_AUDIT */
    char event[STORE_EVENT_MAX];
    char detail[STORE_DETAIL_MAX];
    char addr[STORE_ADDR_MAX];             /* both */
    char proto[STORE_PROTO_MAX];           /* BATCH_APPPW_USED */
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_COUNT];           /* prepared on first use */
    int64_t local_changes;                 /* commits made through this connection */
    struct store_batch_item *batch;        /* queued bookkeeping */
    size_t batch_len;
    size_t batch_cap;
};

static void
store_log_error(struct store *st, const char *what)
{
    log_error("store op=%s err=\"%s\"", what, st->db ? sqlite3_errmsg(st->db) : "no db");
}

/* The cached statement id, reset and unbound; NULL after logging on error. */
static sqlite3_stmt *
store_stmt(struct store *st, enum store_stmt_id id)
{
    sqlite3_stmt *s = st->stmt[id];

    if (s == NULL) {
        if (sqlite3_prepare_v3(st->db, store_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
                               NULL) != SQLITE_OK) {
            store_log_error(st, "prepare");
            return NULL;
        }
        st->stmt[id] = s;
    }
    return s;
}

/* Ends a statement's use: releases its read snapshot and its bindings. */
static void
store_done(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/* Runs a statement that returns no rows we need (PRAGMA set, BEGIN, ...). */
static int
store_run(struct store *st, enum store_stmt_id id)
{
    sqlite3_stmt *s = store_stmt(st, id);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        ;
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, store_sql[id]);
        return STORE_ERR;
    }
    return STORE_OK;
}

/*
 * Starts a write transaction.  BEGIN IMMEDIATE takes the write lock up front
 * (waiting up to busy_timeout), so a transaction never fails halfway for
 * want of an upgrade.  durable: this commit is fsynced (synchronous=FULL).
 */
static int
store_begin(struct store *st, int durable)
{
    if (durable && store_run(st, S_SYNC_FULL) != STORE_OK)
        return STORE_ERR;
    if (store_run(st, S_BEGIN) != STORE_OK) {
        if (durable)
            store_run(st, S_SYNC_NORMAL);
        return STORE_ERR;
    }
    return STORE_OK;
}

static int
store_commit(struct store *st, int durable)
{
    int r = store_run(st, S_COMMIT);

    if (r != STORE_OK)
        store_run(st, S_ROLLBACK);
    else
        st->local_changes++;
    if (durable)
        store_run(st, S_SYNC_NORMAL);
    return r;
}

static void
store_rollback(struct store *st, int durable)
{
    if (sqlite3_get_autocommit(st->db) == 0)
        store_run(st, S_ROLLBACK);
    if (durable)
        store_run(st, S_SYNC_NORMAL);
}

static void
store_col_text(sqlite3_stmt *s, int col, char *out, size_t outlen)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    util_strlcpy(out, t ? (const char *)t : "", outlen);
}

static int
store_bind_text(sqlite3_stmt *s, int idx, const char *text)
{
    if (text == NULL)
        return sqlite3_bind_null(s, idx);
    return sqlite3_bind_text(s, idx, text, -1, SQLITE_TRANSIENT);
}

int
store_path(const char *state_dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/mfagate.db", state_dir);

    return n > 0 && (size_t)n < outlen ? STORE_OK : STORE_ERR;
}

int
store_open(const char *path, struct store **out)
{
    struct store *st = NULL;
    char *err = NULL;

    *out = NULL;
    /*
     * The file must be 0600 whatever the umask (SQLite gives the -wal and
     * -shm files the database's mode).  It is created with SQLite's own open
     * and then chmod'ed: never open() and close() the database file here.
     * Closing any descriptor of a file drops every POSIX lock this process
     * holds on it, so a second connection opened that way would strip the
     * first one's locks, and another process would then delete the WAL
     * under it.  The state folder is 0700, so the moment between create
     * and chmod shows the file to nobody.
     */
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        goto fail;
    /* NOMUTEX: a connection is only ever used by one thread at a time. */
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                            SQLITE_OPEN_EXRESCODE,
                        NULL) != SQLITE_OK) {
        store_log_error(st, "open");
        goto fail;
    }
    if (chmod(path, 0600) != 0) {
        log_error("store op=chmod path=%s err=\"%s\"", path, strerror(errno));
        goto fail;
    }
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    if (sqlite3_exec(st->db,
                     "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = NORMAL;"
                     "PRAGMA foreign_keys = ON;"
                     "PRAGMA secure_delete = ON;",
                     NULL, NULL, &err) != SQLITE_OK) {
        log_error("store op=pragmas err=\"%s\"", err ? err : "?");
        sqlite3_free(err);
        goto fail;
    }
    *out = st;
    return STORE_OK;

fail:
    store_close(st);
    return STORE_ERR;
}

void
store_close(struct store *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < S_COUNT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    if (st->batch != NULL) {
        /* Queued rows carry addresses and names; wipe before freeing. */
        OPENSSL_cleanse(st->batch, st->batch_cap * sizeof(*st->batch));
        free(st->batch);
    }
    free(st);
}

static int
store_user_version(struct store *st, int *out)
{
    sqlite3_stmt *s = store_stmt(st, S_USER_VERSION);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(s, 0);
    store_done(s);
    if (rc != SQLITE_ROW) {
        store_log_error(st, "user_version");
        return STORE_ERR;
    }
    return STORE_OK;
}

int
store_schema_version(struct store *st, int *out)
{
    return store_user_version(st, out);
}

int
store_migrate(struct store *st)
{
    const int target = (int)ARRAY_SIZE(store_migrations);
    char *err = NULL;
    char sql[64];
    int version;

    _Static_assert(ARRAY_SIZE(store_migrations) == STORE_SCHEMA_VERSION,
                   "STORE_SCHEMA_VERSION must name the last migration");
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    /* Read inside the write transaction: a second process migrating at the
     * same time waits, then sees the version we set. */
    if (store_user_version(st, &version) != STORE_OK)
        goto fail;
    if (version > target) {
        log_error("store op=migrate err=\"database schema %d is newer than this program (%d)\"",
                  version, target);
        goto fail;
    }
    for (int v = version; v < target; v++) {
        if (sqlite3_exec(st->db, store_migrations[v], NULL, NULL, &err) != SQLITE_OK) {
            log_error("store op=migrate to=%d err=\"%s\"", v + 1, err ? err : "?");
            sqlite3_free(err);
            goto fail;
        }
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            store_log_error(st, "migrate");
            goto fail;
        }
        log_info("store event=migrated version=%d", v + 1);
    }
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_data_version(struct store *st, int64_t *out)
{
    sqlite3_stmt *s = store_stmt(st, S_DATA_VERSION);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0) + st->local_changes;
    store_done(s);
    if (rc != SQLITE_ROW) {
        store_log_error(st, "data_version");
        return STORE_ERR;
    }
    return STORE_OK;
}

/* --- users -------------------------------------------------------------- */

int
store_user_id(struct store *st, const char *user, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, S_USER_ID);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "user_id");
    return STORE_ERR;
}

/* Inside a transaction: the user's id, inserting the row if needed. */
static int
store_user_ensure_locked(struct store *st, const char *user, int64_t now, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, S_USER_INSERT);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    sqlite3_bind_int64(s, 2, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "user_insert");
        return STORE_ERR;
    }
    return store_user_id(st, user, id) == STORE_OK ? STORE_OK : STORE_ERR;
}

int
store_user_ensure(struct store *st, const char *user, int64_t now, int64_t *id)
{
    if (store_user_id(st, user, id) == STORE_OK)
        return STORE_OK;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_user_ensure_locked(st, user, now, id) != STORE_OK) {
        store_rollback(st, 1);
        return STORE_ERR;
    }
    return store_commit(st, 1);
}

/* --- factors ------------------------------------------------------------ */

int
store_factor_add(struct store *st, const char *user, const char *kind, const char *label,
                 const void *secret, size_t secret_len, int64_t now, int64_t *id)
{
    sqlite3_stmt *s;
    int64_t uid;
    int rc;

    if (secret_len > STORE_SECRET_MAX)
        return STORE_ERR;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_user_ensure_locked(st, user, now, &uid) != STORE_OK)
        goto fail;
    if ((s = store_stmt(st, S_FACTOR_ADD)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, uid);
    store_bind_text(s, 2, kind);
    store_bind_text(s, 3, label ? label : "");
    if (secret != NULL)
        sqlite3_bind_blob(s, 4, secret, (int)secret_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 5, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "factor_add");
        goto fail;
    }
    if (id != NULL)
        *id = sqlite3_last_insert_rowid(st->db);
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_factor_count(struct store *st, const char *user, int *count)
{
    sqlite3_stmt *s = store_stmt(st, S_FACTOR_COUNT);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int(s, 0);
    store_done(s);
    if (rc != SQLITE_ROW) {
        store_log_error(st, "factor_count");
        return STORE_ERR;
    }
    return STORE_OK;
}

static void
store_read_factor(sqlite3_stmt *s, struct store_factor *f)
{
    const void *blob = sqlite3_column_blob(s, 3);
    int n = sqlite3_column_bytes(s, 3);

    memset(f, 0, sizeof(*f));
    f->id = sqlite3_column_int64(s, 0);
    store_col_text(s, 1, f->kind, sizeof(f->kind));
    store_col_text(s, 2, f->label, sizeof(f->label));
    if (blob != NULL && n > 0 && (size_t)n <= sizeof(f->secret)) {
        memcpy(f->secret, blob, (size_t)n);
        f->secret_len = (size_t)n;
    }
    f->created = sqlite3_column_int64(s, 4);
    f->last_used = sqlite3_column_int64(s, 5);
    store_col_text(s, 6, f->subject, sizeof(f->subject));
    store_col_text(s, 7, f->user, sizeof(f->user));
}

int
store_factor_get(struct store *st, const char *user, const char *kind,
                 struct store_factor *out)
{
    sqlite3_stmt *s = store_stmt(st, S_FACTOR_GET);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, kind);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        store_read_factor(s, out);
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "factor_get");
    return STORE_ERR;
}

/* Calls cb for each factor row that statement id yields for key. */
static int
store_factor_rows(struct store *st, enum store_stmt_id id, const char *key, const char *what,
                  store_factor_cb cb, void *arg)
{
    sqlite3_stmt *s = store_stmt(st, id);
    struct store_factor f;
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, key);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_read_factor(s, &f);
        if (cb(arg, &f) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    store_done(s);
    OPENSSL_cleanse(&f, sizeof(f));
    if (rc != SQLITE_DONE) {
        store_log_error(st, what);
        return STORE_ERR;
    }
    return STORE_OK;
}

int
store_factor_list(struct store *st, const char *user, store_factor_cb cb, void *arg)
{
    return store_factor_rows(st, S_FACTOR_LIST, user, "factor_list", cb, arg);
}

int
store_factor_remove(struct store *st, const char *user, const char *kind, int *removed)
{
    sqlite3_stmt *s;
    int rc;

    *removed = 0;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_FACTOR_REMOVE)) == NULL)
        goto fail;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, kind);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "factor_remove");
        goto fail;
    }
    *removed = sqlite3_changes(st->db);
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_factor_set_secret(struct store *st, int64_t factor_id, const void *secret,
                        size_t secret_len, int64_t now)
{
    sqlite3_stmt *s;
    int rc, changed;

    if (secret_len > STORE_SECRET_MAX)
        return STORE_ERR;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_FACTOR_SET_SECRET)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, factor_id);
    sqlite3_bind_blob(s, 2, secret, (int)secret_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    changed = sqlite3_changes(st->db);
    if (changed == 0) {
        store_rollback(st, 1);
        return STORE_NOTFOUND;
    }
    if ((s = store_stmt(st, S_TOTP_FORGET)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, factor_id);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    return store_commit(st, 1);

fail:
    store_log_error(st, "factor_set_secret");
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_factor_touch(struct store *st, int64_t factor_id, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_FACTOR_TOUCH);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, factor_id);
    sqlite3_bind_int64(s, 2, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "factor_touch");
        return STORE_ERR;
    }
    st->local_changes++;
    return STORE_OK;
}

int
store_totp_use(struct store *st, int64_t factor_id, int64_t step)
{
    sqlite3_stmt *s;
    int rc, changed;

    if (store_begin(st, 0) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_TOTP_USE)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, factor_id);
    sqlite3_bind_int64(s, 2, step);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        /* A foreign-key failure: the factor is gone. */
        int ext = sqlite3_extended_errcode(st->db);
        store_rollback(st, 0);
        if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            return STORE_NOTFOUND;
        store_log_error(st, "totp_use");
        return STORE_ERR;
    }
    changed = sqlite3_changes(st->db);
    if (changed == 0) {
        store_rollback(st, 0);
        return STORE_CONFLICT;
    }
    if ((s = store_stmt(st, S_TOTP_PRUNE)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, factor_id);
    sqlite3_bind_int64(s, 2, step - STORE_TOTP_KEEP_STEPS);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "totp_prune");
        goto fail;
    }
    /* Durable enough: the used step must survive a crash only as long as the
     * code is valid (90 s), and WAL with synchronous=NORMAL is consistent. */
    return store_commit(st, 0);

fail:
    store_rollback(st, 0);
    return STORE_ERR;
}

/* --- app passwords ------------------------------------------------------ */

int
store_apppw_add(struct store *st, const char *user, const char *name, unsigned scope,
                const char *locator, const char *hash, int64_t now, int64_t expires,
                int64_t *id)
{
    sqlite3_stmt *s;
    int64_t uid;
    int rc;

    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_user_ensure_locked(st, user, now, &uid) != STORE_OK)
        goto fail;
    if ((s = store_stmt(st, S_APPPW_ADD)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, uid);
    store_bind_text(s, 2, name);
    sqlite3_bind_int64(s, 3, (int64_t)scope);
    store_bind_text(s, 4, locator);
    store_bind_text(s, 5, hash);
    sqlite3_bind_int64(s, 6, now);
    if (expires > 0)
        sqlite3_bind_int64(s, 7, expires);
    else
        sqlite3_bind_null(s, 7);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "apppw_add");
        goto fail;
    }
    if (id != NULL)
        *id = sqlite3_last_insert_rowid(st->db);
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

static void
store_read_apppw(sqlite3_stmt *s, struct store_apppw *a)
{
    memset(a, 0, sizeof(*a));
    a->id = sqlite3_column_int64(s, 0);
    store_col_text(s, 1, a->user, sizeof(a->user));
    store_col_text(s, 2, a->name, sizeof(a->name));
    a->scope = (unsigned)sqlite3_column_int64(s, 3);
    store_col_text(s, 4, a->locator, sizeof(a->locator));
    store_col_text(s, 5, a->hash, sizeof(a->hash));
    a->created = sqlite3_column_int64(s, 6);
    a->expires = sqlite3_column_int64(s, 7);
    a->last_used = sqlite3_column_int64(s, 8);
    store_col_text(s, 9, a->last_addr, sizeof(a->last_addr));
    store_col_text(s, 10, a->last_proto, sizeof(a->last_proto));
}

/* Runs a one-row app password query already bound. */
static int
store_apppw_one(struct store *st, sqlite3_stmt *s, struct store_apppw *out, const char *what)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW)
        store_read_apppw(s, out);
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, what);
    return STORE_ERR;
}

int
store_apppw_find(struct store *st, const char *user, const char *locator,
                 struct store_apppw *out)
{
    sqlite3_stmt *s = store_stmt(st, S_APPPW_FIND);

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, locator);
    return store_apppw_one(st, s, out, "apppw_find");
}

int
store_apppw_get(struct store *st, int64_t id, struct store_apppw *out)
{
    sqlite3_stmt *s = store_stmt(st, S_APPPW_GET);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    return store_apppw_one(st, s, out, "apppw_get");
}

int
store_apppw_list(struct store *st, const char *user, store_apppw_cb cb, void *arg)
{
    sqlite3_stmt *s = store_stmt(st, S_APPPW_LIST);
    struct store_apppw a;
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_read_apppw(s, &a);
        if (cb(arg, &a) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "apppw_list");
        return STORE_ERR;
    }
    return STORE_OK;
}

/* Runs a durable DELETE bound with the user (and an id); *removed rows. */
static int
store_delete(struct store *st, enum store_stmt_id id, const char *user, int64_t row,
             int *removed)
{
    sqlite3_stmt *s;
    int rc;

    *removed = 0;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, id)) == NULL)
        goto fail;
    store_bind_text(s, 1, user);
    if (id == S_APPPW_REVOKE || id == S_DEV_REVOKE)
        sqlite3_bind_int64(s, 2, row);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "delete");
        goto fail;
    }
    *removed = sqlite3_changes(st->db);
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_apppw_revoke(struct store *st, const char *user, int64_t id)
{
    int removed;
    int r = store_delete(st, S_APPPW_REVOKE, user, id, &removed);

    if (r != STORE_OK)
        return r;
    return removed > 0 ? STORE_OK : STORE_NOTFOUND;
}

int
store_apppw_revoke_all(struct store *st, const char *user, int *removed)
{
    return store_delete(st, S_APPPW_REVOKE_ALL, user, 0, removed);
}

/* --- audit -------------------------------------------------------------- */

/* Binds and runs one audit insert (inside or outside a transaction). */
static int
store_audit_insert(struct store *st, int64_t now, const char *user, const char *event,
                   const char *detail, const char *addr)
{
    sqlite3_stmt *s = store_stmt(st, S_AUDIT_ADD);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, now);
    store_bind_text(s, 2, user && *user ? user : NULL);
    store_bind_text(s, 3, event);
    store_bind_text(s, 4, detail && *detail ? detail : NULL);
    store_bind_text(s, 5, addr && *addr ? addr : NULL);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "audit_add");
        return STORE_ERR;
    }
    return STORE_OK;
}

int
store_audit(struct store *st, int64_t now, const char *user, const char *event,
            const char *detail, const char *addr)
{
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_audit_insert(st, now, user, event, detail, addr) != STORE_OK) {
        store_rollback(st, 1);
        return STORE_ERR;
    }
    return store_commit(st, 1);
}

int
store_audit_list(struct store *st, const char *user, int limit, store_audit_cb cb, void *arg)
{
    sqlite3_stmt *s = store_stmt(st, user ? S_AUDIT_LIST_USER : S_AUDIT_LIST_ALL);
    struct store_audit_row r;
    int rc;

    if (s == NULL)
        return STORE_ERR;
    if (user != NULL)
        store_bind_text(s, 1, user);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        memset(&r, 0, sizeof(r));
        r.id = sqlite3_column_int64(s, 0);
        r.time = sqlite3_column_int64(s, 1);
        store_col_text(s, 2, r.user, sizeof(r.user));
        store_col_text(s, 3, r.event, sizeof(r.event));
        store_col_text(s, 4, r.detail, sizeof(r.detail));
        store_col_text(s, 5, r.addr, sizeof(r.addr));
        if (cb(arg, &r) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "audit_list");
        return STORE_ERR;
    }
    return STORE_OK;
}

/* --- batched bookkeeping ------------------------------------------------ */

/* A free slot at the end of the queue, flushing first if it is full. */
static struct store_batch_item *
store_batch_slot(struct store *st)
{
    struct store_batch_item *item;

    if (st->batch_len == STORE_BATCH_MAX && store_batch_flush(st) != STORE_OK) {
        /* The database refuses writes and the queue is full: drop the
         * oldest item rather than grow without bound. */
        log_warn("store event=batch_dropped count=1");
        memmove(st->batch, st->batch + 1, (st->batch_len - 1) * sizeof(*st->batch));
        st->batch_len--;
    }
    if (st->batch_len == st->batch_cap) {
        size_t cap = st->batch_cap ? st->batch_cap * 2 : 16;
        struct store_batch_item *nb;

        if (cap > STORE_BATCH_MAX)
            cap = STORE_BATCH_MAX;
        nb = realloc(st->batch, cap * sizeof(*nb));
        if (nb == NULL)
            return NULL;
        st->batch = nb;
        st->batch_cap = cap;
    }
    item = &st->batch[st->batch_len++];
    memset(item, 0, sizeof(*item));
    return item;
}

int
store_batch_apppw_used(struct store *st, int64_t id, int64_t now, const char *addr,
                       const char *proto)
{
    struct store_batch_item *item = store_batch_slot(st);

    if (item == NULL)
        return STORE_ERR;
    item->kind = BATCH_APPPW_USED;
    item->id = id;
    item->time = now;
    util_strlcpy(item->addr, addr ? addr : "", sizeof(item->addr));
    util_strlcpy(item->proto, proto ? proto : "", sizeof(item->proto));
    return STORE_OK;
}

int
store_batch_audit(struct store *st, int64_t now, const char *user, const char *event,
                  const char *detail, const char *addr)
{
    struct store_batch_item *item = store_batch_slot(st);

    if (item == NULL)
        return STORE_ERR;
    item->kind = BATCH_AUDIT;
    item->time = now;
    util_strlcpy(item->user, user ? user : "", sizeof(item->user));
    util_strlcpy(item->event, event, sizeof(item->event));
    util_strlcpy(item->detail, detail ? detail : "", sizeof(item->detail));
    util_strlcpy(item->addr, addr ? addr : "", sizeof(item->addr));
    return STORE_OK;
}

size_t
store_batch_pending(const struct store *st)
{
    return st->batch_len;
}

int
store_batch_flush(struct store *st)
{
    sqlite3_stmt *s;
    int rc;

    if (st->batch_len == 0)
        return STORE_OK;
    if (store_begin(st, 0) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < st->batch_len; i++) {
        struct store_batch_item *item = &st->batch[i];

        if (item->kind == BATCH_AUDIT) {
            if (store_audit_insert(st, item->time, item->user, item->event, item->detail,
                                   item->addr) != STORE_OK)
                goto fail;
            continue;
        }
        if ((s = store_stmt(st, S_APPPW_USED)) == NULL)
            goto fail;
        sqlite3_bind_int64(s, 1, item->id);
        sqlite3_bind_int64(s, 2, item->time);
        store_bind_text(s, 3, item->addr);
        store_bind_text(s, 4, item->proto);
        rc = sqlite3_step(s);
        store_done(s);
        if (rc != SQLITE_DONE) {
            store_log_error(st, "apppw_used");
            goto fail;
        }
    }
    if (store_commit(st, 0) != STORE_OK)
        return STORE_ERR;
    st->batch_len = 0;
    return STORE_OK;

fail:
    store_rollback(st, 0);
    return STORE_ERR;
}

/* --- web sessions ------------------------------------------------------- */

/* Runs a bound statement that changes rows; *changed rows (may be NULL). */
static int
store_exec_changes(struct store *st, sqlite3_stmt *s, const char *what, int *changed)
{
    int rc = sqlite3_step(s);

    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, what);
        return STORE_ERR;
    }
    if (changed != NULL)
        *changed = sqlite3_changes(st->db);
    st->local_changes++;
    return STORE_OK;
}

/* Inserts a row keyed by a token hash for a users row made if missing:
 * web sessions and trusted devices.  Durable. */
static int
store_token_row_add(struct store *st, enum store_stmt_id id,
                    const unsigned char hash[STORE_TOKEN_HASH_LEN], const char *user,
                    const char *label, const char *addr, int64_t now, int64_t expires,
                    int64_t *out_id)
{
    sqlite3_stmt *s;
    int64_t uid;
    int rc;

    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_user_ensure_locked(st, user, now, &uid) != STORE_OK)
        goto fail;
    if ((s = store_stmt(st, id)) == NULL)
        goto fail;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, uid);
    if (id == S_WS_ADD) {
        sqlite3_bind_int64(s, 3, now);
        sqlite3_bind_int64(s, 4, expires);
        store_bind_text(s, 5, addr);
    } else {
        store_bind_text(s, 3, label ? label : "");
        sqlite3_bind_int64(s, 4, now);
        sqlite3_bind_int64(s, 5, expires);
        store_bind_text(s, 6, addr);
    }
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "token_row_add");
        goto fail;
    }
    if (out_id != NULL)
        *out_id = sqlite3_last_insert_rowid(st->db);
    return store_commit(st, 1);

fail:
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_websession_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                     const char *user, int64_t now, int64_t expires, const char *addr,
                     int64_t *id)
{
    return store_token_row_add(st, S_WS_ADD, hash, user, NULL, addr, now, expires, id);
}

int
store_websession_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                     struct store_websession *out)
{
    sqlite3_stmt *s = store_stmt(st, S_WS_GET);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(s, 0);
        store_col_text(s, 1, out->user, sizeof(out->user));
        out->created = sqlite3_column_int64(s, 2);
        out->expires = sqlite3_column_int64(s, 3);
        out->last_seen = sqlite3_column_int64(s, 4);
        store_col_text(s, 5, out->addr, sizeof(out->addr));
    }
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "websession_get");
    return STORE_ERR;
}

int
store_websession_touch(struct store *st, int64_t id, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_WS_TOUCH);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    return store_exec_changes(st, s, "websession_touch", NULL);
}

int
store_websession_remove(struct store *st, int64_t id)
{
    sqlite3_stmt *s = store_stmt(st, S_WS_REMOVE);
    int changed = 0;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    if (store_exec_changes(st, s, "websession_remove", &changed) != STORE_OK)
        return STORE_ERR;
    return changed > 0 ? STORE_OK : STORE_NOTFOUND;
}

int
store_websession_prune(struct store *st, int64_t now, int64_t idle_before)
{
    sqlite3_stmt *s = store_stmt(st, S_WS_PRUNE);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, now);
    sqlite3_bind_int64(s, 2, idle_before);
    return store_exec_changes(st, s, "websession_prune", NULL);
}

/* --- challenges --------------------------------------------------------- */

int
store_challenge_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    const char *user, const char *kind, const void *data, size_t data_len,
                    const char *addr, int64_t now, int64_t expires, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_ADD);
    int r;

    if (s == NULL || data_len > STORE_CDATA_MAX)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    store_bind_text(s, 2, user);
    store_bind_text(s, 3, kind);
    if (data != NULL && data_len > 0)
        sqlite3_bind_blob(s, 4, data, (int)data_len, SQLITE_TRANSIENT);
    store_bind_text(s, 5, addr);
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_int64(s, 7, expires);
    r = store_exec_changes(st, s, "challenge_add", NULL);
    if (r == STORE_OK && id != NULL)
        *id = sqlite3_last_insert_rowid(st->db);
    return r;
}

/* Runs a bound one-row challenge query. */
static int
store_challenge_one(struct store *st, sqlite3_stmt *s, struct store_challenge *out)
{
    int rc = sqlite3_step(s);

    if (rc == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(s, 4);
        int n = sqlite3_column_bytes(s, 4);

        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(s, 0);
        store_col_text(s, 1, out->user, sizeof(out->user));
        store_col_text(s, 2, out->kind, sizeof(out->kind));
        store_col_text(s, 3, out->state, sizeof(out->state));
        if (blob != NULL && n > 0 && (size_t)n <= sizeof(out->data)) {
            memcpy(out->data, blob, (size_t)n);
            out->data_len = (size_t)n;
        }
        store_col_text(s, 5, out->addr, sizeof(out->addr));
        out->created = sqlite3_column_int64(s, 6);
        out->expires = sqlite3_column_int64(s, 7);
        out->attempts = sqlite3_column_int(s, 8);
    }
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "challenge_get");
    return STORE_ERR;
}

int
store_challenge_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    struct store_challenge *out)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_GET);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    return store_challenge_one(st, s, out);
}

int
store_challenge_find(struct store *st, const char *user, const char *kind,
                     struct store_challenge *out)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_FIND);

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, kind);
    return store_challenge_one(st, s, out);
}

int
store_challenge_set_data(struct store *st, int64_t id, const void *data, size_t len)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_SET_DATA);
    int changed = 0;

    if (s == NULL || len > STORE_CDATA_MAX)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    if (data != NULL && len > 0)
        sqlite3_bind_blob(s, 2, data, (int)len, SQLITE_TRANSIENT);
    if (store_exec_changes(st, s, "challenge_set_data", &changed) != STORE_OK)
        return STORE_ERR;
    return changed > 0 ? STORE_OK : STORE_NOTFOUND;
}

int
store_challenge_fail(struct store *st, int64_t id, int *attempts)
{
    sqlite3_stmt *s;
    int rc;

    if (store_begin(st, 0) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_CH_FAIL)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    if ((s = store_stmt(st, S_CH_ATTEMPTS)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *attempts = sqlite3_column_int(s, 0);
    store_done(s);
    if (rc != SQLITE_ROW) {
        store_rollback(st, 0);
        return rc == SQLITE_DONE ? STORE_NOTFOUND : STORE_ERR;
    }
    return store_commit(st, 0);

fail:
    store_log_error(st, "challenge_fail");
    store_rollback(st, 0);
    return STORE_ERR;
}

int
store_challenge_consume(struct store *st, int64_t id, int64_t now, int max_attempts)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_CONSUME);
    int changed = 0;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    sqlite3_bind_int(s, 3, max_attempts);
    if (store_exec_changes(st, s, "challenge_consume", &changed) != STORE_OK)
        return STORE_ERR;
    return changed > 0 ? STORE_OK : STORE_CONFLICT;
}

int
store_challenge_remove_kind(struct store *st, const char *user, const char *kind)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_REMOVE_KIND);

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, kind);
    return store_exec_changes(st, s, "challenge_remove_kind", NULL);
}

int
store_challenge_prune(struct store *st, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_CH_PRUNE);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, now);
    return store_exec_changes(st, s, "challenge_prune", NULL);
}

/* --- trusted devices ---------------------------------------------------- */

int
store_device_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                 const char *user, const char *label, const char *addr, int64_t now,
                 int64_t expires, int64_t *id)
{
    return store_token_row_add(st, S_DEV_ADD, hash, user, label, addr, now, expires, id);
}

static void
store_read_device(sqlite3_stmt *s, struct store_device *d)
{
    memset(d, 0, sizeof(*d));
    d->id = sqlite3_column_int64(s, 0);
    store_col_text(s, 1, d->user, sizeof(d->user));
    store_col_text(s, 2, d->label, sizeof(d->label));
    d->created = sqlite3_column_int64(s, 3);
    d->expires = sqlite3_column_int64(s, 4);
    d->last_used = sqlite3_column_int64(s, 5);
    store_col_text(s, 6, d->last_addr, sizeof(d->last_addr));
}

int
store_device_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                 struct store_device *out)
{
    sqlite3_stmt *s = store_stmt(st, S_DEV_GET);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        store_read_device(s, out);
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "device_get");
    return STORE_ERR;
}

int
store_device_touch(struct store *st, int64_t id, int64_t now, const char *addr)
{
    sqlite3_stmt *s = store_stmt(st, S_DEV_TOUCH);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    store_bind_text(s, 3, addr);
    return store_exec_changes(st, s, "device_touch", NULL);
}

int
store_device_list(struct store *st, const char *user, store_device_cb cb, void *arg)
{
    sqlite3_stmt *s = store_stmt(st, S_DEV_LIST);
    struct store_device d;
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_read_device(s, &d);
        if (cb(arg, &d) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    store_done(s);
    if (rc != SQLITE_DONE) {
        store_log_error(st, "device_list");
        return STORE_ERR;
    }
    return STORE_OK;
}

int
store_device_revoke(struct store *st, const char *user, int64_t id)
{
    int removed;
    int r = store_delete(st, S_DEV_REVOKE, user, id, &removed);

    if (r != STORE_OK)
        return r;
    return removed > 0 ? STORE_OK : STORE_NOTFOUND;
}

int
store_device_revoke_all(struct store *st, const char *user, int *removed)
{
    return store_delete(st, S_DEV_REVOKE_ALL, user, 0, removed);
}

/* --- WeChat: bindings, scenes, mini-program sessions --------------------- */

int
store_wechat_bind(struct store *st, const struct store_wechat_binding *b, int64_t now,
                  int64_t *id)
{
    sqlite3_stmt *s;
    struct store_factor f;
    int64_t uid;
    int rc, r;

    if (b->secret_len > STORE_SECRET_MAX)
        return STORE_ERR;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    /* Inside the write transaction: of two phones confirming at once only
     * one answers the scene, and the binding, the answer and the grant's
     * use stand or fall together. */
    if (b->scene_id > 0) {
        r = store_scene_answer(st, b->scene_id, "confirm", b->openid, now);
        if (r == STORE_ERR)
            goto fail;
        if (r != STORE_OK) {
            store_rollback(st, 1);
            return STORE_GONE;
        }
    }
    if (b->grant_id > 0) {
        r = store_challenge_consume(st, b->grant_id, now, b->grant_max_attempts);
        if (r == STORE_ERR)
            goto fail;
        if (r != STORE_OK) {
            store_rollback(st, 1);
            return STORE_GONE;
        }
    }
    r = store_factor_get(st, b->user, "wechat", &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r == STORE_ERR)
        goto fail;
    if (r == STORE_OK && !b->replace) {
        store_rollback(st, 1);
        return STORE_CONFLICT;
    }
    if (r == STORE_NOTFOUND && b->replace) {
        store_rollback(st, 1);
        return STORE_NOTFOUND;
    }
    if (store_user_ensure_locked(st, b->user, now, &uid) != STORE_OK)
        goto fail;
    if ((s = store_stmt(st, S_WX_BIND_REMOVE)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, uid);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE || (s = store_stmt(st, S_WX_BIND_ADD)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, uid);
    store_bind_text(s, 2, b->label ? b->label : "");
    sqlite3_bind_blob(s, 3, b->secret, (int)b->secret_len, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, now);
    store_bind_text(s, 5, b->openid);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    if (id != NULL)
        *id = sqlite3_last_insert_rowid(st->db);
    return store_commit(st, 1);

fail:
    store_log_error(st, "wechat_bind");
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_wechat_list(struct store *st, const char *openid, store_factor_cb cb, void *arg)
{
    return store_factor_rows(st, S_WX_LIST, openid, "wechat_list", cb, arg);
}

int
store_scene_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                const struct store_scene *sc, int64_t *id)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_ADD);
    int r;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    store_bind_text(s, 2, sc->user);
    store_bind_text(s, 3, sc->purpose);
    if (sc->challenge_id > 0)
        sqlite3_bind_int64(s, 4, sc->challenge_id);
    store_bind_text(s, 5, sc->addr);
    if (sc->number > 0)
        sqlite3_bind_int(s, 6, sc->number);
    sqlite3_bind_int64(s, 7, sc->created);
    sqlite3_bind_int64(s, 8, sc->expires);
    r = store_exec_changes(st, s, "scene_add", NULL);
    if (r == STORE_OK && id != NULL)
        *id = sqlite3_last_insert_rowid(st->db);
    return r;
}

int
store_scene_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                struct store_scene *out)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_GET);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(s, 0);
        store_col_text(s, 1, out->user, sizeof(out->user));
        store_col_text(s, 2, out->purpose, sizeof(out->purpose));
        out->challenge_id = sqlite3_column_int64(s, 3);
        store_col_text(s, 4, out->addr, sizeof(out->addr));
        out->number = sqlite3_column_int(s, 5);
        out->created = sqlite3_column_int64(s, 6);
        out->expires = sqlite3_column_int64(s, 7);
        store_col_text(s, 8, out->answer, sizeof(out->answer));
        store_col_text(s, 9, out->openid, sizeof(out->openid));
        out->used = sqlite3_column_int(s, 10);
    }
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "scene_get");
    return STORE_ERR;
}

int
store_scene_answer(struct store *st, int64_t id, const char *answer, const char *openid,
                   int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_ANSWER);
    int changed = 0, r;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    store_bind_text(s, 2, answer);
    store_bind_text(s, 3, openid);
    sqlite3_bind_int64(s, 4, now);
    r = store_exec_changes(st, s, "scene_answer", &changed);
    if (r != STORE_OK)
        return r;
    return changed == 1 ? STORE_OK : STORE_CONFLICT;
}

int
store_scene_remove(struct store *st, int64_t id)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_REMOVE);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    return store_exec_changes(st, s, "scene_remove", NULL);
}

int
store_scene_use(struct store *st, int64_t id)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_USE);
    int changed = 0, r;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, id);
    r = store_exec_changes(st, s, "scene_use", &changed);
    if (r != STORE_OK)
        return r;
    return changed == 1 ? STORE_OK : STORE_CONFLICT;
}

int
store_scene_prune(struct store *st, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_SCENE_PRUNE);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, now);
    return store_exec_changes(st, s, "scene_prune", NULL);
}

int
store_mpsession_add(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    const char *openid, int64_t now, int64_t expires)
{
    sqlite3_stmt *s = store_stmt(st, S_MPS_ADD);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    store_bind_text(s, 2, openid);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, expires);
    return store_exec_changes(st, s, "mpsession_add", NULL);
}

int
store_mpsession_get(struct store *st, const unsigned char hash[STORE_TOKEN_HASH_LEN],
                    int64_t now, char *openid, size_t openid_len)
{
    sqlite3_stmt *s = store_stmt(st, S_MPS_GET);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_blob(s, 1, hash, STORE_TOKEN_HASH_LEN, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, now);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        store_col_text(s, 0, openid, openid_len);
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "mpsession_get");
    return STORE_ERR;
}

int
store_mpsession_prune(struct store *st, int64_t now)
{
    sqlite3_stmt *s = store_stmt(st, S_MPS_PRUNE);

    if (s == NULL)
        return STORE_ERR;
    sqlite3_bind_int64(s, 1, now);
    return store_exec_changes(st, s, "mpsession_prune", NULL);
}

/* --- recovery codes (issue 4) -------------------------------------------- */

int
store_recovery_replace(struct store *st, const char *user, const char *const *locators,
                       const char *const *hashes, int n, int64_t now)
{
    sqlite3_stmt *s;
    int64_t uid;
    int rc;

    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if (store_user_ensure_locked(st, user, now, &uid) != STORE_OK)
        goto fail;
    /* The old set goes in the same transaction: never two sets, never none
     * half-written. */
    if ((s = store_stmt(st, S_RC_DELETE)) == NULL)
        goto fail;
    store_bind_text(s, 1, user);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    for (int i = 0; i < n; i++) {
        if ((s = store_stmt(st, S_RC_ADD)) == NULL)
            goto fail;
        sqlite3_bind_int64(s, 1, uid);
        store_bind_text(s, 2, locators[i]);
        store_bind_text(s, 3, hashes[i]);
        sqlite3_bind_int64(s, 4, now);
        rc = sqlite3_step(s);
        store_done(s);
        if (rc != SQLITE_DONE)
            goto fail;
    }
    return store_commit(st, 1);

fail:
    store_log_error(st, "recovery_replace");
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_recovery_find(struct store *st, const char *user, const char *locator,
                    struct store_recovery *out)
{
    sqlite3_stmt *s = store_stmt(st, S_RC_FIND);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    store_bind_text(s, 2, locator);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        out->id = sqlite3_column_int64(s, 0);
        store_col_text(s, 1, out->locator, sizeof(out->locator));
        store_col_text(s, 2, out->hash, sizeof(out->hash));
        out->created = sqlite3_column_int64(s, 3);
    }
    store_done(s);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE)
        return STORE_NOTFOUND;
    store_log_error(st, "recovery_find");
    return STORE_ERR;
}

int
store_recovery_use(struct store *st, int64_t id, int64_t now)
{
    sqlite3_stmt *s;
    int rc, changed;

    /* Durable: a code used for a sign-in must stay used after a crash. */
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_RC_USE)) == NULL)
        goto fail;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    changed = sqlite3_changes(st->db);
    if (changed == 0) {
        store_rollback(st, 1);
        return STORE_CONFLICT;
    }
    return store_commit(st, 1);

fail:
    store_log_error(st, "recovery_use");
    store_rollback(st, 1);
    return STORE_ERR;
}

int
store_recovery_count(struct store *st, const char *user, int *total, int *left,
                     int64_t *created)
{
    sqlite3_stmt *s = store_stmt(st, S_RC_COUNT);
    int rc;

    if (s == NULL)
        return STORE_ERR;
    store_bind_text(s, 1, user);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (total != NULL)
            *total = sqlite3_column_int(s, 0);
        if (left != NULL)
            *left = sqlite3_column_int(s, 1);
        if (created != NULL)
            *created = sqlite3_column_int64(s, 2);
    }
    store_done(s);
    if (rc != SQLITE_ROW) {
        store_log_error(st, "recovery_count");
        return STORE_ERR;
    }
    return STORE_OK;
}

int
store_recovery_clear(struct store *st, const char *user, int *removed)
{
    sqlite3_stmt *s;
    int rc;

    *removed = 0;
    if (store_begin(st, 1) != STORE_OK)
        return STORE_ERR;
    if ((s = store_stmt(st, S_RC_DELETE)) == NULL)
        goto fail;
    store_bind_text(s, 1, user);
    rc = sqlite3_step(s);
    store_done(s);
    if (rc != SQLITE_DONE)
        goto fail;
    *removed = sqlite3_changes(st->db);
    return store_commit(st, 1);

fail:
    store_log_error(st, "recovery_clear");
    store_rollback(st, 1);
    return STORE_ERR;
}
