/*
 * account.h - the changes to a user's account that both the operator's CLI
 * (auth/cli.c) and the web API (web/api*.c) make, written once: creating
 * and revoking app passwords, binding a TOTP factor, checking a TOTP code
 * once, removing a factor (and, with the last one, every trusted device).
 * Each change leaves an audit row naming where it came from (via=cli|web).
 *
 * No uv.h.  The one slow step, apppw_hash (argon2id), is left to the caller
 * between account_apppw_pick and account_apppw_save, so that the web runs
 * it on the libuv thread pool and the CLI inline.
 */
#ifndef MFA_ACCOUNT_H
#define MFA_ACCOUNT_H

#include <stddef.h>
#include <stdint.h>

#include "auth/apppw.h"
#include "auth/store.h"
#include "auth/totp.h"

struct keys;

#define ACCOUNT_NAME_MAX 64          /* bytes of an app password name */
#define ACCOUNT_BAD_CODE (-20)       /* a wrong, malformed or reused code */
#define ACCOUNT_NO_FACTOR (-21)      /* the user has no factor of that kind */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
size_t account_utf8_len(const unsigned char *s);

/* 0 if name is 1..ACCOUNT_NAME_MAX bytes of printable UTF-8, else -1. */
int account_apppw_name_ok(const char *name);

/*
 * A new app password for user, with a locator no other of the user's
 * passwords has (so a login runs the KDF at most once).  STORE_OK,
 * STORE_CONFLICT (no free locator found: far too many passwords) or
 * STORE_ERR.
 */
int account_apppw_pick(struct store *st, const struct keys *keys, const char *user,
                       char pw[APPPW_LEN + 1], char locator[APPPW_LOCATOR_LEN + 1]);

/* Stores (durably) an app password hashed by the caller, and audits it. */
int account_apppw_save(struct store *st, const char *user, const char *name, unsigned scope,
                       const char *locator, const char *hash, int64_t now, int64_t expires,
                       const char *via, const char *addr, int64_t *id);

/* Revokes one (id > 0) or all (id == 0) of the user's app passwords and
 * audits it; *removed = how many.  STORE_NOTFOUND for an id not theirs. */
int account_apppw_revoke(struct store *st, const char *user, int64_t id, const char *via,
                         const char *addr, int64_t now, int *removed);

/* A fresh TOTP secret with its base32 text and otpauth:// URI. */
int account_totp_secret(const char *user, unsigned char secret[TOTP_SECRET_LEN],
                        char b32[64], char uri[TOTP_URI_MAX]);

/*
 * Binds secret as the user's TOTP factor (sealed under keys.totp) and
 * audits it.  STORE_CONFLICT if the user already has one.  If step >= 0 it
 * is recorded as used at once (the code that confirmed the binding).
 */
int account_totp_bind(struct store *st, const struct keys *keys, const char *user,
                      const unsigned char *secret, size_t len, int64_t step, const char *via,
                      const char *addr, int64_t now, int64_t *id);

/*
 * Changes the user's TOTP factor to secret (the "change" flow: the old
 * authenticator stops working at once, nothing else changes), and audits
 * it.  STORE_NOTFOUND if there is none to change.  step as above.
 */
int account_totp_replace(struct store *st, const struct keys *keys, const char *user,
                         const unsigned char *secret, size_t len, int64_t step,
                         const char *via, const char *addr, int64_t now, int64_t *id);

/*
 * Checks code against the user's TOTP factor at now, and uses its step up:
 * STORE_OK, ACCOUNT_BAD_CODE (wrong, or already used), ACCOUNT_NO_FACTOR or
 * STORE_ERR.
 */
int account_totp_check(struct store *st, const struct keys *keys, const char *user,
                       const char *code, int64_t now);

/*
 * As account_totp_check for the user's factor of kind ("totp", or "wechat":
 * the mini program's code, a TOTP of the binding's own secret).
 */
int account_code_check(struct store *st, const struct keys *keys, const char *user,
                       const char *kind, const char *code, int64_t now);

/* Checks code against a secret not yet bound; the matched step into *step. */
int account_totp_check_secret(const unsigned char *secret, size_t len, const char *code,
                              int64_t now, int64_t *step);

/*
 * Removes the user's factors of kind and audits it; when none is left,
 * revokes every trusted device too.  *removed, *left, *devices (may be
 * NULL).  STORE_NOTFOUND if the user had no such factor.
 */
int account_factor_remove(struct store *st, const char *user, const char *kind,
                          const char *via, const char *addr, int64_t now, int *removed,
                          int *left, int *devices);

#endif
