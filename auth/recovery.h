/*
 * recovery.h - one-time recovery codes: the way back in when the phone is
 * lost.  A user has one set of RECOVERY_COUNT codes, shown once when made;
 * making a new set replaces the old one; each code signs in (or verifies
 * an unbind/change) once.
 *
 * A code is RECOVERY_LEN characters of Crockford's base32 alphabet (digits
 * and lower-case letters without i, l, o, u: nothing to misread), shown as
 * two groups of five ("7kq3m-x9a2p"), 50 bits.  Typed back, it is accepted
 * with or without the dash (or a space), in any case, and with o, i, l read
 * as 0, 1, 1.
 *
 * At rest codes are kept like app passwords (DESIGN.md 4): argon2id with
 * the server pepper, salted per code, beside a non-secret locator (the
 * first hex digits of HMAC(keys.locator, user ":" code)) that picks the one
 * row worth a KDF run; the codes of a set have distinct locators.  The KDF
 * is left to the caller (recovery_hash_set, recovery_verify), so that the
 * web runs it on the libuv thread pool; everything else here is quick.
 *
 * No uv.h.
 */
#ifndef MFA_RECOVERY_H
#define MFA_RECOVERY_H

#include <stddef.h>
#include <stdint.h>

#include "auth/apppw.h"
#include "auth/store.h"

struct keys;

#define RECOVERY_COUNT 10          /* codes in a set */
#define RECOVERY_LEN 10            /* characters of a code */
#define RECOVERY_GROUP 5           /* shown as two groups of five */
#define RECOVERY_SHOWN_LEN 11      /* "7kq3m-x9a2p" */
#define RECOVERY_TYPED_MAX 32      /* longest text recovery_normalize reads */

#define RECOVERY_MISMATCH APPPW_MISMATCH

/* A new code: RECOVERY_LEN characters, NUL-terminated, uniform.  0 or -1. */
int recovery_generate(char out[RECOVERY_LEN + 1]);

/* A code as shown: "xxxxx-xxxxx". */
void recovery_format(const char *code, char out[RECOVERY_SHOWN_LEN + 1]);

/*
 * What a person typed, as the code it stands for (lower case, no dash): 0,
 * or -1 if it is not a recovery code (wrong length, another character).
 * One '-' or ' ' is allowed between the two groups; surrounding spaces are
 * ignored.
 */
int recovery_normalize(const char *in, size_t len, char out[RECOVERY_LEN + 1]);

/* The locator of a normalized code for user.  0 or -1. */
int recovery_locator(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *code,
                     char out[APPPW_LOCATOR_LEN + 1]);

/* The encoded argon2id hash of a normalized code (slow).  0 or -1. */
int recovery_hash(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
                  const char *code, char *out, size_t outlen);

/*
 * 0 if the normalized code matches the encoded hash, RECOVERY_MISMATCH if
 * not, -1 if the hash is malformed (slow: one KDF run).
 */
int recovery_verify(const unsigned char pepper[APPPW_KEY_LEN], const char *code,
                    const char *encoded);

/* A new set in the making: codes (secret; wiped by recovery_set_wipe),
 * their locators and, after recovery_hash_set, their hashes. */
struct recovery_set {
    char codes[RECOVERY_COUNT][RECOVERY_LEN + 1];
    char locators[RECOVERY_COUNT][APPPW_LOCATOR_LEN + 1];
    char hashes[RECOVERY_COUNT][APPPW_HASH_MAX];
};

/* Fills set with RECOVERY_COUNT fresh codes of distinct locators for user
 * (quick).  0 or -1. */
int recovery_set_new(const struct keys *keys, const char *user, struct recovery_set *set);

/* Hashes every code of set (slow: RECOVERY_COUNT KDF runs).  0 or -1. */
int recovery_hash_set(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
                      struct recovery_set *set);

/*
 * Stores the hashed set in place of the user's old one (durably) and
 * audits it ("recovery_codes", via and the client address).  STORE_OK or
 * STORE_ERR.
 */
int recovery_set_save(struct store *st, const char *user, const struct recovery_set *set,
                      int64_t now, const char *via, const char *addr);

void recovery_set_wipe(struct recovery_set *set);

/*
 * The first step of checking a typed code: normalizes it into code and
 * finds the user's unused code of its locator into *row.  STORE_OK (then
 * recovery_verify(code, row->hash) decides), STORE_NOTFOUND (not a code,
 * or no unused code has its locator: wrong, no KDF needed) or STORE_ERR.
 */
int recovery_lookup(struct store *st, const struct keys *keys, const char *user,
                    const char *typed, char code[RECOVERY_LEN + 1], struct store_recovery *row);

/*
 * The last step, once recovery_verify said yes: uses the code up and audits
 * it ("recovery_code_used", for what: "signin", "unbind", "change").
 * STORE_OK, STORE_CONFLICT (used meanwhile by another request) or
 * STORE_ERR; *left (may be NULL) = unused codes after this one.
 */
int recovery_use(struct store *st, const char *user, int64_t id, const char *what,
                 const char *addr, int64_t now, int *left);

/*
 * Deletes the user's codes (the last factor was unbound, or an account
 * recovery finished) and audits it if there were any; *removed may be NULL.
 */
int recovery_clear(struct store *st, const char *user, const char *why, const char *addr,
                   int64_t now, int *removed);

#endif
