/*
 * auth_test_util.h - what the auth/ unit tests share: a throw-away state
 * folder, a config with small argon2 parameters, and adding app passwords
 * the way the CLI does.  Header-only (static functions), so that every
 * test_*.c stays one self-contained executable.
 */
#ifndef MFA_AUTH_TEST_UTIL_H
#define MFA_AUTH_TEST_UTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/apppw.h"
#include "auth/keys.h"
#include "auth/store.h"
#include "conf/config.h"

/* A fresh folder under TMPDIR; out has PATH_MAX bytes. */
static inline int
tu_mkdtemp(char *out, size_t outlen)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(out, outlen, "%s/mfa-auth-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(out) ? 0 : -1;
}

/* rm -rf dir (the test folders hold only files and folders). */
static inline void
tu_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 512];

    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
                continue;
            if (e->d_type == DT_DIR)
                tu_rmtree(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

/*
 * The fields auth/ reads, set explicitly (not config_defaults(): these
 * tests pin the values they depend on).  Small argon2 cost keeps them fast.
 */
static inline void
tu_config(struct config *cfg, const char *state_dir)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->state_dir, sizeof(cfg->state_dir), "%s", state_dir);
    cfg->lowercase_usernames = 1;
    cfg->argon2_memory_kib = 256;
    cfg->argon2_passes = 1;
    cfg->argon2_lanes = 1;
    cfg->cache_ttl_ms = 60 * 1000;
    cfg->cache_entries = 64;
    cfg->fail_delay_after = 0;
    cfg->fail_lockout = 10;
    cfg->fail_lockout_ms = 60 * 1000;
}

/* Opens a connection of its own to the test database. */
static inline struct store *
tu_store(const struct config *cfg)
{
    char path[PATH_MAX + 16];
    struct store *st = NULL;

    if (store_path(cfg->state_dir, path, sizeof(path)) != STORE_OK ||
        store_open(path, &st) != STORE_OK || store_migrate(st) != STORE_OK) {
        store_close(st);
        return NULL;
    }
    return st;
}

/*
 * Adds an app password for user as the CLI does; the new password (16
 * characters) into pw.  Returns its id, or -1.
 */
static inline int64_t
tu_add_apppw(struct store *st, const struct config *cfg, const struct keys *keys,
             const char *user, unsigned scope, int64_t expires, char pw[APPPW_LEN + 1])
{
    struct apppw_params p = {cfg->argon2_memory_kib, cfg->argon2_passes, cfg->argon2_lanes};
    char loc[APPPW_LOCATOR_LEN + 1], hash[APPPW_HASH_MAX];
    int64_t id = -1;

    if (apppw_generate(pw) != 0 || apppw_locator(keys->locator, user, pw, loc) != 0 ||
        apppw_hash(&p, keys->pepper, pw, hash, sizeof(hash)) != 0 ||
        store_apppw_add(st, user, "test", scope, loc, hash, (int64_t)time(NULL), expires, &id) != STORE_OK)
        return -1;
    return id;
}

#endif
