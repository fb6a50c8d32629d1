/*
 * scene.h - the QR scenes of the WeChat factor (web/API.md, "WeChat"): a
 * random id a web page shows as a QR code and a phone answers.  32
 * characters of [A-Za-z0-9] (WeChat's limit for a mini-program code's
 * scene), single use, minutes long, kept in the store by the keyed hash of
 * the id only.
 *
 * The rules, in one place: which answers fit which purpose, who may answer
 * (for everything but a bind, only the WeChat account bound to the
 * mailbox), number matching for a pushed request, and what the waiting page
 * is told.  No uv.h.
 */
#ifndef MFA_SCENE_H
#define MFA_SCENE_H

#include <stddef.h>
#include <stdint.h>

#include "auth/store.h"

struct keys;

#define SCENE_LEN 32
#define SCENE_TTL_S 300

/* Purposes. */
#define SCENE_BIND "bind"          /* bind a first WeChat account */
#define SCENE_REBIND "rebind"      /* change: bind another in place of the old */
#define SCENE_SIGNIN "signin"
#define SCENE_UNBIND "unbind"
#define SCENE_CHANGE "change"      /* verify before a change */

/* Outcomes beyond STORE_*. */
#define SCENE_GONE (-30)           /* unknown, expired, or not a scene id */
#define SCENE_WRONG_ACCOUNT (-31)  /* answered by a WeChat account not bound */
#define SCENE_BAD_ANSWER (-32)     /* an answer this purpose does not take */
#define SCENE_ANSWERED (-33)       /* answered already */
#define SCENE_FAIL "fail"          /* the answer recorded when a confirmed bind fails */

/* What the waiting page is told. */
enum scene_state {
    SCENE_PENDING,
    SCENE_APPROVED,
    SCENE_DENIED,
    SCENE_EXPIRED,
    SCENE_USED,
    SCENE_FAILED,          /* confirmed, but the binding could not be made */
};

/* 1 if text is a well-formed scene id. */
int scene_text_ok(const char *text);

/* The keyed hash of a scene id; -1 if text is not one. */
int scene_hash(const struct keys *keys, const char *text, unsigned char hash[STORE_TOKEN_HASH_LEN]);

/*
 * A new scene for sc (user, purpose, challenge_id, addr, number set by the
 * caller; times set here from now and ttl): its id into text.  STORE_OK or
 * STORE_ERR.
 */
int scene_create(struct store *st, const struct keys *keys, struct store_scene *sc, int64_t now,
                 int64_t ttl, char text[SCENE_LEN + 1]);

/* The scene of text, expired or not: STORE_OK, SCENE_GONE or STORE_ERR. */
int scene_open(struct store *st, const struct keys *keys, const char *text,
               struct store_scene *out);

/* The page's view of sc at now. */
enum scene_state scene_state(const struct store_scene *sc, int64_t now);
const char *scene_state_name(enum scene_state s);

/*
 * May openid answer sc?  For a bind, anyone (the QR is shown only to the
 * signed-in owner); otherwise only the account bound to sc's user
 * (bound_openid, "" when none): 0 or SCENE_WRONG_ACCOUNT.
 */
int scene_may_answer(const struct store_scene *sc, const char *openid, const char *bound_openid);

/*
 * Checks an answer for sc's purpose: "trust"/"temporary"/"deny" for a
 * sign-in, "confirm"/"deny" for the rest.  For a pushed request (number
 * set), picked must equal it, or the answer becomes "deny".  *stored = the
 * answer to record.  0 or SCENE_BAD_ANSWER.
 */
int scene_check_answer(const struct store_scene *sc, const char *answer, int picked,
                       const char **stored);

/*
 * The three two-digit numbers a phone offers for a pushed request: one is
 * sc->number, the order and the others fixed per scene (derived from its
 * id), so every fetch shows the same choice.
 */
void scene_numbers(const struct store_scene *sc, int out[3]);

/* Records an answer once (before expiry): STORE_OK, SCENE_ANSWERED, STORE_ERR. */
int scene_answer(struct store *st, const struct store_scene *sc, const char *answer,
                 const char *openid, int64_t now);

#endif
