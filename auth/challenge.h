/*
 * challenge.h - short-lived, single-use tokens that stand for a step in a
 * flow (web/API.md): the second factor of a sign-in, the fresh verification
 * before an unbind or a change, the grant that verification yields, a
 * pending TOTP enrollment.  Kept in the store's challenges table by the
 * keyed hash of their token; each has a kind, a user, an expiry, a count of
 * wrong codes and at most CHALLENGE_MAX_DATA bytes of data.
 *
 * Rules: a challenge is used at most once (store_challenge_consume is
 * atomic); after CHALLENGE_MAX_ATTEMPTS wrong codes it accepts nothing more;
 * an expired or used one is gone for good.
 *
 * No uv.h.
 */
#ifndef MFA_CHALLENGE_H
#define MFA_CHALLENGE_H

#include <stddef.h>
#include <stdint.h>

#include "auth/store.h"
#include "auth/token.h"

struct keys;

#define CHALLENGE_TTL_S 300           /* sign-in, verification, grant: 5 minutes */
#define CHALLENGE_ENROLL_TTL_S 600    /* a pending TOTP enrollment: 10 minutes */
#define CHALLENGE_MAX_ATTEMPTS 5
#define CHALLENGE_MAX_DATA STORE_CDATA_MAX

/* Kinds. */
#define CHALLENGE_SIGNIN "signin"
#define CHALLENGE_UNBIND "unbind"       /* data: the factor kind to unbind */
#define CHALLENGE_CHANGE "change"       /* data: the factor kind to change */
#define CHALLENGE_GRANT "grant"         /* data: "unbind:<kind>" or "change:<kind>" */
#define CHALLENGE_TOTP_ENROLL "totp_enroll" /* data: the sealed secret; one per user */

/* Outcomes beyond STORE_*. */
#define CHALLENGE_GONE (-10)     /* unknown, expired, used, or another kind */
#define CHALLENGE_LOCKED (-11)   /* too many wrong codes */

/*
 * A new challenge of kind for user; its token into token.  STORE_OK or
 * STORE_ERR.
 */
int challenge_create(struct store *st, const struct keys *keys, const char *user,
                     const char *kind, const void *data, size_t data_len, const char *addr,
                     int64_t now, int64_t ttl, char token[TOKEN_TEXT_LEN + 1], int64_t *id);

/*
 * The pending challenge of this token and kind (NULL kind: any).
 * CHALLENGE_GONE, CHALLENGE_LOCKED, STORE_ERR or STORE_OK.
 */
int challenge_open(struct store *st, const struct keys *keys, const char *token,
                   const char *kind, int64_t now, struct store_challenge *out);

/* One more wrong code for ch; *left = how many tries remain (0: locked). */
int challenge_wrong(struct store *st, struct store_challenge *ch, int *left);

/* Uses ch up: STORE_OK once, CHALLENGE_GONE for every later or late call. */
int challenge_consume(struct store *st, const struct store_challenge *ch, int64_t now);

#endif
