/*
 * token.h - the random tokens of the web side (session and device cookies,
 * challenge ids, grants): 32 bytes from OpenSSL's CSPRNG, shown as 43
 * base64url characters, and kept only as HMAC-SHA256(keys.token, token), so
 * that a stolen database opens no session.
 *
 * Pure: no uv.h, no store.
 */
#ifndef MFA_TOKEN_H
#define MFA_TOKEN_H

#include <stddef.h>

#define TOKEN_BYTES 32
#define TOKEN_TEXT_LEN 43       /* base64url without padding */
#define TOKEN_HASH_LEN 32       /* = STORE_TOKEN_HASH_LEN */
#define TOKEN_KEY_LEN 32        /* = KEYS_LEN */

/* A new token as text, and its hash.  0 or -1 (no random bytes). */
int token_new(const unsigned char key[TOKEN_KEY_LEN], char text[TOKEN_TEXT_LEN + 1],
              unsigned char hash[TOKEN_HASH_LEN]);

/*
 * The hash of a token the client sent.  -1 if text is not TOKEN_TEXT_LEN
 * base64url characters (so nothing else is ever looked up).
 */
int token_hash(const unsigned char key[TOKEN_KEY_LEN], const char *text, size_t len,
               unsigned char hash[TOKEN_HASH_LEN]);

/*
 * A value derived from a token for another use (label says which: "csrf"),
 * as base64url text: HMAC-SHA256(key, label ":" token).  0 or -1.
 */
int token_derive(const unsigned char key[TOKEN_KEY_LEN], const char *label, const char *text,
                 char out[TOKEN_TEXT_LEN + 1]);

/* base64url without padding of len bytes into out (cap with the NUL); length or -1. */
int token_b64url(const unsigned char *in, size_t len, char *out, size_t cap);

#endif
