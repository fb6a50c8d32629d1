/*
 * account.c - account changes shared by the CLI and the web (account.h).
 * Owns their order (durable before shown, audited after) and the
 * side-effects that belong together (last factor gone -> trusted devices
 * gone).  Owns no I/O beyond the store.
 */
#include "auth/account.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"
#include "auth/recovery.h"
#include "core/log.h"

#define ACCOUNT_PICK_TRIES 16

size_t
account_utf8_len(const unsigned char *s)
{
    size_t n;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    /* No overlong forms, no surrogates, nothing past U+10FFFF. */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

int
account_apppw_name_ok(const char *name)
{
    if (name == NULL || *name == '\0' || strlen(name) > ACCOUNT_NAME_MAX)
        return -1;
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        size_t n = account_utf8_len(p);

        if (n == 0 || *p < 0x20 || *p == 0x7f)
            return -1;
        p += n;
    }
    return 0;
}

/* An audit row now; a lost one is logged, not fatal (the change is made). */
static void
account_audit(struct store *st, int64_t now, const char *user, const char *event,
              const char *detail, const char *addr)
{
    if (store_audit(st, now, user, event, detail, addr) != STORE_OK)
        log_warn("account event=audit_lost what=%s", event);
}

int
account_apppw_pick(struct store *st, const struct keys *keys, const char *user,
                   char pw[APPPW_LEN + 1], char locator[APPPW_LOCATOR_LEN + 1])
{
    struct store_apppw existing;

    for (int tries = 0; tries < ACCOUNT_PICK_TRIES; tries++) {
        int f;

        if (apppw_generate(pw) != 0 || apppw_locator(keys->locator, user, pw, locator) != 0)
            return STORE_ERR;
        f = store_apppw_find(st, user, locator, &existing);
        if (f == STORE_NOTFOUND)
            return STORE_OK;
        if (f != STORE_OK)
            return STORE_ERR;
    }
    OPENSSL_cleanse(pw, APPPW_LEN + 1);
    return STORE_CONFLICT;
}

int
account_apppw_save(struct store *st, const char *user, const char *name, unsigned scope,
                   const char *locator, const char *hash, int64_t now, int64_t expires,
                   const char *via, const char *addr, int64_t *id)
{
    char scope_text[32], detail[STORE_DETAIL_MAX];
    int64_t days = expires > 0 ? (expires - now + 86399) / 86400 : 0;
    int r;

    /* Durable before it is shown. */
    r = store_apppw_add(st, user, name, scope, locator, hash, now, expires, id);
    if (r != STORE_OK)
        return r;
    apppw_scope_format(scope, scope_text, sizeof(scope_text));
    snprintf(detail, sizeof(detail), "id=%lld scope=%s expires_days=%lld via=%s",
             (long long)*id, scope_text, (long long)days, via);
    account_audit(st, now, user, "apppw_create", detail, addr);
    return STORE_OK;
}

int
account_apppw_revoke(struct store *st, const char *user, int64_t id, const char *via,
                     const char *addr, int64_t now, int *removed)
{
    char detail[STORE_DETAIL_MAX];
    int r;

    *removed = 0;
    if (id > 0) {
        r = store_apppw_revoke(st, user, id);
        if (r != STORE_OK)
            return r;
        *removed = 1;
        snprintf(detail, sizeof(detail), "id=%lld via=%s", (long long)id, via);
    } else {
        r = store_apppw_revoke_all(st, user, removed);
        if (r != STORE_OK)
            return r;
        snprintf(detail, sizeof(detail), "all count=%d via=%s", *removed, via);
    }
    account_audit(st, now, user, "apppw_revoke", detail, addr);
    return STORE_OK;
}

int
account_totp_secret(const char *user, unsigned char secret[TOTP_SECRET_LEN], char b32[64],
                    char uri[TOTP_URI_MAX])
{
    if (totp_generate_secret(secret) != 0 ||
        totp_base32_encode(secret, TOTP_SECRET_LEN, 0, b32, 64) != 0 ||
        totp_uri(user, secret, TOTP_SECRET_LEN, uri, TOTP_URI_MAX) != 0) {
        OPENSSL_cleanse(secret, TOTP_SECRET_LEN);
        return -1;
    }
    return 0;
}

int
account_totp_bind(struct store *st, const struct keys *keys, const char *user,
                  const unsigned char *secret, size_t len, int64_t step, const char *via,
                  const char *addr, int64_t now, int64_t *id)
{
    unsigned char sealed[TOTP_SEALED_MAX];
    struct store_factor f;
    char detail[STORE_DETAIL_MAX];
    size_t sealed_len = 0;
    int r;

    r = store_factor_get(st, user, "totp", &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r == STORE_OK)
        return STORE_CONFLICT;
    if (r != STORE_NOTFOUND)
        return r;
    if (totp_seal(keys->totp, user, secret, len, sealed, sizeof(sealed), &sealed_len) != 0)
        return STORE_ERR;
    r = store_factor_add(st, user, "totp", "authenticator app", sealed, sealed_len, now, id);
    OPENSSL_cleanse(sealed, sizeof(sealed));
    if (r != STORE_OK)
        return r;
    if (step >= 0)
        store_totp_use(st, *id, step);
    snprintf(detail, sizeof(detail), "kind=totp id=%lld via=%s", (long long)*id, via);
    account_audit(st, now, user, "factor_bind", detail, addr);
    return STORE_OK;
}

int
account_totp_replace(struct store *st, const struct keys *keys, const char *user,
                     const unsigned char *secret, size_t len, int64_t step, const char *via,
                     const char *addr, int64_t now, int64_t *id)
{
    unsigned char sealed[TOTP_SEALED_MAX];
    struct store_factor f;
    char detail[STORE_DETAIL_MAX];
    size_t sealed_len = 0;
    int r;

    r = store_factor_get(st, user, "totp", &f);
    if (r == STORE_OK)
        *id = f.id;
    OPENSSL_cleanse(&f, sizeof(f));
    if (r != STORE_OK)
        return r;
    if (totp_seal(keys->totp, user, secret, len, sealed, sizeof(sealed), &sealed_len) != 0)
        return STORE_ERR;
    r = store_factor_set_secret(st, *id, sealed, sealed_len, now);
    OPENSSL_cleanse(sealed, sizeof(sealed));
    if (r != STORE_OK)
        return r;
    if (step >= 0)
        store_totp_use(st, *id, step);
    snprintf(detail, sizeof(detail), "kind=totp id=%lld via=%s", (long long)*id, via);
    account_audit(st, now, user, "factor_change", detail, addr);
    return STORE_OK;
}

int
account_totp_check_secret(const unsigned char *secret, size_t len, const char *code,
                          int64_t now, int64_t *step)
{
    if (code == NULL || strlen(code) != TOTP_DIGITS)
        return ACCOUNT_BAD_CODE;
    if (totp_verify(secret, len, now, code, TOTP_DIGITS, TOTP_WINDOW, step) != 0)
        return ACCOUNT_BAD_CODE;
    return STORE_OK;
}

int
account_totp_check(struct store *st, const struct keys *keys, const char *user,
                   const char *code, int64_t now)
{
    return account_code_check(st, keys, user, "totp", code, now);
}

int
account_code_check(struct store *st, const struct keys *keys, const char *user,
                   const char *kind, const char *code, int64_t now)
{
    unsigned char secret[TOTP_SEALED_MAX];
    struct store_factor f;
    size_t len = 0;
    int64_t step = 0;
    int r;

    r = store_factor_get(st, user, kind, &f);
    if (r == STORE_NOTFOUND)
        return ACCOUNT_NO_FACTOR;
    if (r != STORE_OK)
        return r;
    if (totp_open(keys->totp, user, f.secret, f.secret_len, secret, sizeof(secret), &len) != 0) {
        log_error("account event=totp_unreadable factor=%lld", (long long)f.id);
        r = STORE_ERR;
        goto done;
    }
    r = account_totp_check_secret(secret, len, code, now, &step);
    if (r != STORE_OK)
        goto done;
    /* A code is good once: a replay, or an older code after a newer one, is wrong. */
    r = store_totp_use(st, f.id, step);
    if (r == STORE_CONFLICT || r == STORE_NOTFOUND)
        r = ACCOUNT_BAD_CODE;
    if (r == STORE_OK)
        store_factor_touch(st, f.id, now);

done:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(&f, sizeof(f));
    return r;
}

int
account_factor_remove(struct store *st, const char *user, const char *kind, const char *via,
                      const char *addr, int64_t now, int *removed, int *left, int *devices)
{
    char detail[STORE_DETAIL_MAX];
    int n = 0, l = -1, d = 0, r;

    r = store_factor_remove(st, user, kind, &n);
    if (r != STORE_OK)
        return r;
    if (removed != NULL)
        *removed = n;
    if (n == 0)
        return STORE_NOTFOUND;
    if (store_factor_count(st, user, &l) != STORE_OK)
        l = -1;
    /* With no factor left a trusted device means nothing; when a factor is
     * bound again, every browser must prove it anew. */
    if (l == 0 && store_device_revoke_all(st, user, &d) != STORE_OK)
        log_warn("account event=device_revoke_failed");
    /* Recovery codes stand in for a factor: with none left they go too. */
    if (l == 0 && recovery_clear(st, user, "last_factor", addr, now, NULL) != STORE_OK)
        log_warn("account event=recovery_clear_failed");
    if (left != NULL)
        *left = l;
    if (devices != NULL)
        *devices = d;
    snprintf(detail, sizeof(detail), "kind=%s count=%d left=%d devices=%d via=%s", kind, n, l,
             d, via);
    account_audit(st, now, user, "factor_remove", detail, addr);
    return STORE_OK;
}
