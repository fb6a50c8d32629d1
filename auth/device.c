/*
 * device.c - trusted devices on the store (device.h).  Owns their token
 * and lifetime rules; the cookie's attributes are web/'s.
 */
#include "auth/device.h"

#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"

int
device_trust(struct store *st, const struct keys *keys, const char *user, const char *label,
             const char *addr, int64_t now, int days, char token[TOKEN_TEXT_LEN + 1],
             int64_t *id)
{
    unsigned char hash[TOKEN_HASH_LEN];
    int r;

    if (days <= 0 || token_new(keys->token, token, hash) != 0)
        return STORE_ERR;
    r = store_device_add(st, hash, user, label, addr, now, now + (int64_t)days * 86400, id);
    if (r != STORE_OK)
        OPENSSL_cleanse(token, TOKEN_TEXT_LEN + 1);
    return r;
}

int
device_check(struct store *st, const struct keys *keys, const char *token, const char *user,
             const char *addr, int64_t now)
{
    unsigned char hash[TOKEN_HASH_LEN];
    struct store_device d;
    int r;

    if (token == NULL || token_hash(keys->token, token, strlen(token), hash) != 0)
        return STORE_NOTFOUND;
    r = store_device_get(st, hash, &d);
    if (r != STORE_OK)
        return r;
    /* Another user's device cookie counts for nothing here. */
    if (strcmp(d.user, user) != 0 || d.expires <= now)
        return STORE_NOTFOUND;
    store_device_touch(st, d.id, now, addr);
    return STORE_OK;
}
