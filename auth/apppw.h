/*
 * apppw.h - app passwords as values: generating, showing, normalizing,
 * hashing (argon2id with the server pepper), verifying, the locator, and
 * the scope bitmask.
 *
 * Pure: no uv.h, no store, no clock.  The KDF calls are slow by design; the
 * caller decides where they run (the libuv thread pool, or the CLI).
 */
#ifndef MFA_APPPW_H
#define MFA_APPPW_H

#include <stddef.h>
#include <stdint.h>

#define APPPW_LEN 16            /* characters of [A-Za-z0-9] */
#define APPPW_SHOWN_LEN 19      /* "GdGn eAF6 iFvU g6rB" */
#define APPPW_LOCATOR_LEN 4     /* hex characters */
#define APPPW_HASH_MAX 192      /* = STORE_HASH_MAX */
#define APPPW_SALT_LEN 16
#define APPPW_TAG_LEN 32        /* argon2id output */
#define APPPW_KEY_LEN 32        /* pepper and locator keys (= KEYS_LEN) */

#define APPPW_MISMATCH (-2)     /* apppw_verify: well formed, wrong password */

enum apppw_scope {
    APPPW_SCOPE_IMAP = 1,
    APPPW_SCOPE_POP3 = 2,
    APPPW_SCOPE_SMTP = 4,
    APPPW_SCOPE_ALL = 7,
};

/* argon2id cost, from the config. */
struct apppw_params {
    uint32_t memory_kib;
    uint32_t passes;
    uint32_t lanes;
};

/* A new password: APPPW_LEN characters, NUL-terminated, no modulo bias. */
int apppw_generate(char out[APPPW_LEN + 1]);

/* The password as shown once: four groups of four, NUL-terminated. */
void apppw_format(const char *pw, char out[APPPW_SHOWN_LEN + 1]);

/*
 * The password typed by a client, as the APPPW_LEN characters it stands for:
 * single spaces are allowed between groups of four, nothing else.  0, or -1
 * for anything that is not an app password (the caller then treats it as an
 * account password).
 */
int apppw_normalize(const char *in, size_t len, char out[APPPW_LEN + 1]);

/*
 * The encoded hash of a normalized password:
 * "$argon2id$v=19$m=<kib>,t=<passes>,p=<lanes>$<salt b64>$<tag b64>", with a
 * fresh random salt and pepper as argon2's secret input.  0 or -1.
 */
int apppw_hash(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
               const char *pw, char *out, size_t outlen);

/*
 * 0 if pw matches the encoded hash (compared in constant time),
 * APPPW_MISMATCH if it does not, -1 if the encoding is malformed or the KDF
 * failed.
 */
int apppw_verify(const unsigned char pepper[APPPW_KEY_LEN], const char *pw, const char *encoded);

/*
 * The locator stored beside the hash: the first APPPW_LOCATOR_LEN hex digits
 * of HMAC-SHA256(key, user ":" pw).  Not secret; it picks the one row worth
 * a KDF run.  0 or -1.
 */
int apppw_locator(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *pw,
                  char out[APPPW_LOCATOR_LEN + 1]);

/* HMAC-SHA256(key, user ":" pw) into out (32 bytes): the locator's source,
 * and the verification cache's key (with keys.cache).  0 or -1. */
int apppw_mac(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *pw,
              unsigned char out[32]);

/* "imap,pop3,smtp" (any non-empty subset, any order) into a bitmask; 0 or -1. */
int apppw_scope_parse(const char *s, unsigned *out);

/* A bitmask as "imap,pop3,smtp" (the set bits, in that order). */
void apppw_scope_format(unsigned scope, char *out, size_t outlen);

#endif
