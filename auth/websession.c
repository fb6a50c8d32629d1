/*
 * websession.c - browser sessions on the store (websession.h).  Owns the
 * expiry rules and the CSRF derivation; the cookie's attributes are web/'s.
 */
#include "auth/websession.h"

#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"
#include "core/util.h"

/* The CSRF token of a session token. */
static int
websession_csrf(const struct keys *keys, const char *token, char out[TOKEN_TEXT_LEN + 1])
{
    return token_derive(keys->token, "csrf", token, out);
}

int
websession_create(struct store *st, const struct keys *keys, const char *user,
                  const char *addr, int64_t now, char token[TOKEN_TEXT_LEN + 1],
                  struct websession *out)
{
    unsigned char hash[TOKEN_HASH_LEN];
    int r;

    memset(out, 0, sizeof(*out));
    if (token_new(keys->token, token, hash) != 0)
        return STORE_ERR;
    r = store_websession_add(st, hash, user, now, now + WEBSESSION_MAX_S, addr, &out->id);
    if (r == STORE_OK && websession_csrf(keys, token, out->csrf) != 0)
        r = STORE_ERR;
    if (r != STORE_OK) {
        OPENSSL_cleanse(token, TOKEN_TEXT_LEN + 1);
        return r;
    }
    util_strlcpy(out->user, user, sizeof(out->user));
    return STORE_OK;
}

int
websession_lookup(struct store *st, const struct keys *keys, const char *token, int64_t now,
                  struct websession *out)
{
    unsigned char hash[TOKEN_HASH_LEN];
    struct store_websession row;
    int r;

    memset(out, 0, sizeof(*out));
    if (token == NULL || token_hash(keys->token, token, strlen(token), hash) != 0)
        return STORE_NOTFOUND;
    r = store_websession_get(st, hash, &row);
    if (r != STORE_OK)
        return r;
    if (row.expires <= now || row.last_seen + WEBSESSION_IDLE_S <= now) {
        store_websession_remove(st, row.id);
        return STORE_NOTFOUND;
    }
    if (now - row.last_seen >= WEBSESSION_TOUCH_S && store_websession_touch(st, row.id, now) != STORE_OK)
        return STORE_ERR;
    if (websession_csrf(keys, token, out->csrf) != 0)
        return STORE_ERR;
    out->id = row.id;
    util_strlcpy(out->user, row.user, sizeof(out->user));
    return STORE_OK;
}

int
websession_csrf_check(const struct keys *keys, const char *token, const char *csrf)
{
    char want[TOKEN_TEXT_LEN + 1];
    int ok;

    if (token == NULL || csrf == NULL || strlen(csrf) != TOKEN_TEXT_LEN ||
        websession_csrf(keys, token, want) != 0)
        return -1;
    ok = util_ct_equal(want, csrf, TOKEN_TEXT_LEN);
    OPENSSL_cleanse(want, sizeof(want));
    return ok ? 0 : -1;
}

int
websession_end(struct store *st, int64_t id)
{
    return store_websession_remove(st, id);
}
