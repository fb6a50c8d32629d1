/*
 * totp.h - RFC 6238 time-based one-time codes (HMAC-SHA1, 30 s steps), the
 * RFC 4648 base32 that authenticator apps exchange secrets in, the
 * otpauth:// enrollment URI, and the sealing of secrets at rest
 * (AES-256-GCM under keys.totp, the user name as associated data, so a
 * sealed secret copied to another user's row does not open).
 *
 * Pure: no uv.h, no store.  The clock is a parameter.  Single use of a code
 * is the store's job (store_totp_use with the step totp_verify returns).
 */
#ifndef MFA_TOTP_H
#define MFA_TOTP_H

#include <stddef.h>
#include <stdint.h>

#define TOTP_SECRET_LEN 20      /* bytes, as RFC 4226 recommends (160 bits) */
#define TOTP_PERIOD 30          /* seconds per step */
#define TOTP_DIGITS 6
#define TOTP_WINDOW 1           /* steps accepted either side of now */
#define TOTP_KEY_LEN 32         /* = KEYS_LEN */
#define TOTP_NONCE_LEN 12
#define TOTP_GCM_TAG_LEN 16
/* A sealed secret: version byte, nonce, ciphertext, tag. */
#define TOTP_SEALED_MAX (1 + TOTP_NONCE_LEN + 64 + TOTP_GCM_TAG_LEN)
/* base32 of TOTP_SECRET_LEN bytes is 32 characters. */
#define TOTP_URI_MAX 1024

/* The time step of a wall-clock time: floor(now / TOTP_PERIOD). */
int64_t totp_step(int64_t now);

/* HOTP (RFC 4226) of counter with `digits` (6..8) digits; 0 or -1. */
int totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, int digits,
              uint32_t *code);

/*
 * Checks a typed code against the steps around now (+-window).  code must
 * be exactly `digits` decimal digits.  On a match returns 0 and the matched
 * step in *step (for store_totp_use); -1 otherwise.  Every candidate step is
 * computed and compared in constant time.
 */
int totp_verify(const unsigned char *key, size_t keylen, int64_t now, const char *code,
                int digits, int window, int64_t *step);

/* RFC 4648 base32 (upper case, with '=' padding if pad).  0, or -1 if out
 * (outlen bytes incl. NUL) is too small. */
int totp_base32_encode(const unsigned char *in, size_t len, int pad, char *out, size_t outlen);

/* Decodes base32 (either case, padding optional, spaces ignored) into out
 * (outmax bytes); *outlen = bytes written.  0 or -1. */
int totp_base32_decode(const char *in, unsigned char *out, size_t outmax, size_t *outlen);

/* otpauth://totp/mfagate:USER?secret=...&issuer=mfagate&algorithm=SHA1&digits=6&period=30
 * with USER percent-encoded.  0 or -1. */
int totp_uri(const char *user, const unsigned char *secret, size_t secret_len, char *out,
             size_t outlen);

/* TOTP_SECRET_LEN random bytes; 0 or -1. */
int totp_generate_secret(unsigned char out[TOTP_SECRET_LEN]);

/* Seals secret for user; *outlen bytes into out (outmax >= len + 29).  0 or -1. */
int totp_seal(const unsigned char key[TOTP_KEY_LEN], const char *user,
              const unsigned char *secret, size_t len, unsigned char *out, size_t outmax,
              size_t *outlen);

/* Opens what totp_seal made; -1 if it was tampered with, or is not user's. */
int totp_open(const unsigned char key[TOTP_KEY_LEN], const char *user, const unsigned char *in,
              size_t len, unsigned char *out, size_t outmax, size_t *outlen);

#endif
