/*
 * websession.h - signed-in browser sessions (web/API.md "Sessions"): the
 * mfa_session cookie is a random token (auth/token.h) kept only as its
 * keyed hash; a session ends 12 hours after its last use or 7 days after it
 * began, whichever comes first, or at sign-out.  The CSRF token is derived
 * from the session token (HMAC with keys.token), so it is tied to the
 * session, needs no storage and changes with every new session.
 *
 * No uv.h: runs on whatever thread owns the store connection.
 */
#ifndef MFA_WEBSESSION_H
#define MFA_WEBSESSION_H

#include <stdint.h>

#include "auth/store.h"
#include "auth/token.h"

struct keys;

#define WEBSESSION_IDLE_S (12 * 3600)
#define WEBSESSION_MAX_S (7 * 86400)
/* last_seen is written at most this often per session (fewer writes). */
#define WEBSESSION_TOUCH_S 60

struct websession {
    int64_t id;
    char user[STORE_NAME_MAX];
    char csrf[TOKEN_TEXT_LEN + 1];
};

/*
 * Starts a session for user (creating the users row); the cookie value into
 * token.  STORE_OK or a negative STORE_* code.
 */
int websession_create(struct store *st, const struct keys *keys, const char *user,
                      const char *addr, int64_t now, char token[TOKEN_TEXT_LEN + 1],
                      struct websession *out);

/*
 * The live session of a cookie value.  STORE_NOTFOUND for a malformed,
 * unknown or expired token (an expired row is deleted).  Moves the idle
 * expiry on.
 */
int websession_lookup(struct store *st, const struct keys *keys, const char *token,
                      int64_t now, struct websession *out);

/* 0 if csrf (the X-CSRF-Token header, may be NULL) belongs to the session
 * token (compared in constant time); -1 otherwise. */
int websession_csrf_check(const struct keys *keys, const char *token, const char *csrf);

/* Sign-out. */
int websession_end(struct store *st, int64_t id);

#endif
