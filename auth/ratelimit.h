/*
 * ratelimit.h - consecutive login failures per user, shared by every worker
 * of the process.
 *
 * This is the one mutable global of auth/: a fixed-size table behind one
 * mutex (DESIGN.md 1 and 6 allow "a small, explicitly locked table").  It is
 * bounded (RATELIMIT_SLOTS entries); users are keyed by a SHA-256 prefix of
 * the normalized name.  When the table is full, the least recently failed
 * entry that is not locked out is forgotten.  It is per process: a restart
 * forgets it, and the CLI has its own (unused) copy.
 */
#ifndef MFA_RATELIMIT_H
#define MFA_RATELIMIT_H

#include <stdint.h>

#define RATELIMIT_SLOTS 4096

/*
 * The user's state at now_ms: returns 1 if locked out (until *until_ms), 0
 * if not; *failures = consecutive failures so far (0 when unknown).  A
 * lockout that has run out is cleared here.
 */
int ratelimit_check(const char *user, uint64_t now_ms, int *failures, uint64_t *until_ms);

/* One more failure; at `lockout` failures (if > 0) the user is locked out
 * for lockout_ms.  Returns the count after this failure. */
int ratelimit_fail(const char *user, uint64_t now_ms, int lockout, uint64_t lockout_ms);

/* A success: the user's count goes back to zero. */
void ratelimit_success(const char *user);

/* Forgets everything (tests). */
void ratelimit_reset(void);

#endif
