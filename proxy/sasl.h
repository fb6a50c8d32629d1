/*
 * sasl.h - the SASL messages that the proxy reads from clients and writes to
 * backends: PLAIN (RFC 4616) and the LOGIN mechanism's two prompts, both
 * base64-wrapped as IMAP, POP3 and SMTP carry them.
 *
 * Pure: no I/O, no allocation. It owns the decoding and the policy on names
 * (an authorization identity different from the authentication identity is
 * refused, and so are CR, LF and NUL in names, DESIGN.md section 2). It does
 * not know which protocol carried the message, nor what the names are worth:
 * that is auth/'s decision.
 */
#ifndef MFA_SASL_H
#define MFA_SASL_H

#include <stddef.h>

/*
 * The largest decoded SASL message handled, in bytes. Longer messages are
 * SASL_TOO_LONG: no real authzid + authcid + password comes near it.
 */
#define SASL_MAX_DECODED 3072

enum sasl_status {
    SASL_OK = 0,
    SASL_MALFORMED = -1, /* bad base64, missing or extra NULs, empty names */
    SASL_AUTHZID = -2,   /* authzid differs from authcid */
    SASL_TOO_LONG = -3,  /* longer than an output buffer or SASL_MAX_DECODED */
    SASL_BAD_CHARS = -4, /* CR, LF or NUL in a name */
    SASL_CANCELLED = -5, /* the client sent "*" */
};

/*
 * Decodes a base64 PLAIN response "authzid\0authcid\0passwd". authzid must
 * be empty or equal (byte for byte) to authcid. user/pass NUL-terminated;
 * user lengths >= 1, and so is the password's (RFC 4616: passwd = 1*SAFE).
 * "*" is SASL_CANCELLED; "=" (an empty SASL-IR) decodes to nothing and so is
 * SASL_MALFORMED. On any failure user and pass are left empty (wiped).
 */
int sasl_plain_decode(const char *b64, size_t len, char *user, size_t usercap,
                      char *pass, size_t passcap);

/*
 * Decodes one base64 AUTH LOGIN response (user or password) into out,
 * NUL-terminated. "*" -> SASL_CANCELLED; "" or "=" decode to an empty string,
 * which is SASL_MALFORMED for a user. A user must not contain CR/LF/NUL
 * (SASL_BAD_CHARS); a password must not contain NUL (SASL_MALFORMED: it could
 * not be passed on). Returns SASL_OK or a negative sasl_status; on failure out
 * is left empty (wiped).
 */
int sasl_login_decode(const char *b64, size_t len, char *out, size_t cap,
                      int is_user);

/*
 * Encodes "authzid\0authcid\0pass" as base64 for the backend login (authzid
 * may be NULL or "" for none). Returns the length or -1 (cap too small, or
 * the message is longer than SASL_MAX_DECODED). out is NUL-terminated.
 */
int sasl_plain_encode(const char *authzid, const char *authcid,
                      const char *pass, char *out, size_t cap);

/* A SASL mechanism name (RFC 4422 section 3.1): 1..SASL_MECH_MAX of
 * [A-Za-z0-9-_]. */
#define SASL_MECH_MAX 20
int sasl_is_mech(const char *s, size_t n);

/* An initial response on a command line: one or more base64 characters, or
 * "=" alone for an empty one (RFC 4959, 5034, 4954).  Decoding checks the
 * rest. */
int sasl_is_b64(const char *s, size_t n);

#endif
