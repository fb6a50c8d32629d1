/*
 * device.h - trusted browsers ("confirm and trust this device"): a random
 * token in the mfa_device cookie, kept as its keyed hash, bound to one user,
 * valid for [web] device_days (30 by default).  A trusted browser skips the second
 * factor at sign-in; the password is still checked.  Listing and revoking
 * go through store_device_*; account_factor_remove revokes them all when
 * the last factor goes.
 *
 * No uv.h.
 */
#ifndef MFA_DEVICE_H
#define MFA_DEVICE_H

#include <stdint.h>

#include "auth/store.h"
#include "auth/token.h"

struct keys;

/* The default of [web] device_days; tests use it too. */
#define DEVICE_DAYS_DEFAULT 30
#define DEVICE_LABEL_MAX 96

/* Trusts a new device for user for days; its cookie value into token. */
int device_trust(struct store *st, const struct keys *keys, const char *user,
                 const char *label, const char *addr, int64_t now, int days,
                 char token[TOKEN_TEXT_LEN + 1], int64_t *id);

/*
 * STORE_OK if token (a cookie value, may be NULL) is a live trusted device of
 * user (its last use is recorded), else STORE_NOTFOUND (or STORE_ERR).
 */
int device_check(struct store *st, const struct keys *keys, const char *token,
                 const char *user, const char *addr, int64_t now);

#endif
