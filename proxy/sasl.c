/*
 * sasl.c - SASL PLAIN and LOGIN messages; see sasl.h.
 *
 * Every decoded message passes through one stack buffer that is wiped before
 * returning, since it holds a password. Nothing here decides whether the
 * credentials are good.
 */
#include "proxy/sasl.h"

#include <string.h>

#include "core/codec.h"

/* Wipes a secret; explicit_bzero is a store the compiler cannot drop. */
static void
sasl_wipe(void *p, size_t n)
{
    explicit_bzero(p, n);
}

/* Whether a name contains CR, LF or NUL. */
static int
sasl_bad_name(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 1;
    return 0;
}

/*
 * Decodes b64 into buf (cap SASL_MAX_DECODED + 1). Handles the two
 * conventions that are not base64 text: "*" (cancel) and "=" (empty).
 * Returns the decoded length or a negative sasl_status.
 */
static int
sasl_decode(const char *b64, size_t len, unsigned char *buf, size_t cap)
{
    size_t pad;
    int n;

    if (len == 1 && b64[0] == '*')
        return SASL_CANCELLED;
    if (len == 1 && b64[0] == '=') {
        buf[0] = '\0';
        return 0;
    }
    if (len % 4 != 0)
        return SASL_MALFORMED;
    /* Tell "too long" from "not base64" before decoding. */
    pad = (len > 0 && b64[len - 1] == '=') + (len > 1 && b64[len - 2] == '=');
    if (CODEC_B64_DECODED_MAX(len) - pad > cap - 1)
        return SASL_TOO_LONG;
    n = codec_b64_decode(b64, len, buf, cap);
    return n < 0 ? SASL_MALFORMED : n;
}

int
sasl_plain_decode(const char *b64, size_t len, char *user, size_t usercap,
                  char *pass, size_t passcap)
{
    unsigned char buf[SASL_MAX_DECODED + 1];
    const unsigned char *zid, *cid, *pw, *nul1, *nul2, *end;
    size_t zidlen, cidlen, pwlen;
    int n, rc;

    if (usercap > 0)
        user[0] = '\0';
    if (passcap > 0)
        pass[0] = '\0';

    n = sasl_decode(b64, len, buf, sizeof(buf));
    if (n < 0)
        return n;
    end = buf + n;

    zid = buf;
    nul1 = memchr(zid, '\0', (size_t)(end - zid));
    if (nul1 == NULL) {
        rc = SASL_MALFORMED;
        goto fail;
    }
    cid = nul1 + 1;
    nul2 = memchr(cid, '\0', (size_t)(end - cid));
    if (nul2 == NULL) {
        rc = SASL_MALFORMED;
        goto fail;
    }
    pw = nul2 + 1;
    zidlen = (size_t)(nul1 - zid);
    cidlen = (size_t)(nul2 - cid);
    pwlen = (size_t)(end - pw);

    /*
     * A third NUL cannot be told apart from a NUL in a name or in the
     * password; RFC 4616 allows neither.
     */
    if (memchr(pw, '\0', pwlen) != NULL || cidlen == 0 || pwlen == 0) {
        rc = SASL_MALFORMED;
        goto fail;
    }
    /*
     * An authzid other than the authcid would become impersonation at a
     * backend with master users: it never goes further than here.
     */
    if (zidlen != 0 && (zidlen != cidlen || memcmp(zid, cid, cidlen) != 0)) {
        rc = SASL_AUTHZID;
        goto fail;
    }
    if (sasl_bad_name(cid, cidlen)) {
        rc = SASL_BAD_CHARS;
        goto fail;
    }
    if (cidlen + 1 > usercap || pwlen + 1 > passcap) {
        rc = SASL_TOO_LONG;
        goto fail;
    }
    memcpy(user, cid, cidlen);
    user[cidlen] = '\0';
    memcpy(pass, pw, pwlen);
    pass[pwlen] = '\0';
    sasl_wipe(buf, sizeof(buf));
    return SASL_OK;

fail:
    sasl_wipe(buf, sizeof(buf));
    return rc;
}

int
sasl_login_decode(const char *b64, size_t len, char *out, size_t cap,
                  int is_user)
{
    unsigned char buf[SASL_MAX_DECODED + 1];
    int n, rc;

    if (cap > 0)
        out[0] = '\0';
    if (len == 0) {
        /* An empty line: the empty string. */
        n = 0;
        buf[0] = '\0';
    } else {
        n = sasl_decode(b64, len, buf, sizeof(buf));
        if (n < 0)
            return n;
    }

    if (is_user) {
        if (n == 0) {
            rc = SASL_MALFORMED;
            goto fail;
        }
        if (sasl_bad_name(buf, (size_t)n)) {
            rc = SASL_BAD_CHARS;
            goto fail;
        }
    } else if (memchr(buf, '\0', (size_t)n) != NULL) {
        rc = SASL_MALFORMED;
        goto fail;
    }
    if ((size_t)n + 1 > cap) {
        rc = SASL_TOO_LONG;
        goto fail;
    }
    memcpy(out, buf, (size_t)n);
    out[n] = '\0';
    sasl_wipe(buf, sizeof(buf));
    return SASL_OK;

fail:
    sasl_wipe(buf, sizeof(buf));
    return rc;
}

int
sasl_plain_encode(const char *authzid, const char *authcid, const char *pass,
                  char *out, size_t cap)
{
    unsigned char buf[SASL_MAX_DECODED];
    size_t zl, cl, pl, n;
    int rc;

    if (authzid == NULL)
        authzid = "";
    zl = strlen(authzid);
    cl = strlen(authcid);
    pl = strlen(pass);
    if (zl > sizeof(buf) || cl > sizeof(buf) || pl > sizeof(buf)
        || zl + cl + pl + 2 > sizeof(buf))
        return -1;

    n = 0;
    memcpy(buf + n, authzid, zl);
    n += zl;
    buf[n++] = '\0';
    memcpy(buf + n, authcid, cl);
    n += cl;
    buf[n++] = '\0';
    memcpy(buf + n, pass, pl);
    n += pl;

    rc = codec_b64_encode(buf, n, out, cap);
    sasl_wipe(buf, n);
    return rc;
}

int
sasl_is_mech(const char *s, size_t n)
{
    if (n == 0 || n > SASL_MECH_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

int
sasl_is_b64(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '='))
            return 0;
    }
    return n > 0;
}
