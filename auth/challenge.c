/*
 * challenge.c - the rules of single-use challenges (challenge.h) over the
 * store's challenges table.  Owns expiry, the attempt limit and single use;
 * what a code is checked against is account.c's.
 */
#include "auth/challenge.h"

#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"

int
challenge_create(struct store *st, const struct keys *keys, const char *user,
                 const char *kind, const void *data, size_t data_len, const char *addr,
                 int64_t now, int64_t ttl, char token[TOKEN_TEXT_LEN + 1], int64_t *id)
{
    unsigned char hash[TOKEN_HASH_LEN];
    int r;

    if (data_len > CHALLENGE_MAX_DATA || token_new(keys->token, token, hash) != 0)
        return STORE_ERR;
    /* Expired rows of anybody go as new ones come: the table stays small. */
    store_challenge_prune(st, now);
    r = store_challenge_add(st, hash, user, kind, data, data_len, addr, now, now + ttl, id);
    if (r != STORE_OK)
        OPENSSL_cleanse(token, TOKEN_TEXT_LEN + 1);
    return r;
}

int
challenge_open(struct store *st, const struct keys *keys, const char *token, const char *kind,
               int64_t now, struct store_challenge *out)
{
    unsigned char hash[TOKEN_HASH_LEN];
    int r;

    memset(out, 0, sizeof(*out));
    if (token == NULL || token_hash(keys->token, token, strlen(token), hash) != 0)
        return CHALLENGE_GONE;
    r = store_challenge_get(st, hash, out);
    if (r == STORE_NOTFOUND)
        return CHALLENGE_GONE;
    if (r != STORE_OK)
        return r;
    if ((kind != NULL && strcmp(out->kind, kind) != 0) || strcmp(out->state, "pending") != 0 ||
        out->expires <= now)
        return CHALLENGE_GONE;
    if (out->attempts >= CHALLENGE_MAX_ATTEMPTS)
        return CHALLENGE_LOCKED;
    return STORE_OK;
}

int
challenge_wrong(struct store *st, struct store_challenge *ch, int *left)
{
    int attempts = CHALLENGE_MAX_ATTEMPTS, r;

    r = store_challenge_fail(st, ch->id, &attempts);
    if (r != STORE_OK) {
        *left = 0;
        return r;
    }
    ch->attempts = attempts;
    *left = attempts >= CHALLENGE_MAX_ATTEMPTS ? 0 : CHALLENGE_MAX_ATTEMPTS - attempts;
    return STORE_OK;
}

int
challenge_consume(struct store *st, const struct store_challenge *ch, int64_t now)
{
    int r = store_challenge_consume(st, ch->id, now, CHALLENGE_MAX_ATTEMPTS);

    return r == STORE_CONFLICT ? CHALLENGE_GONE : r;
}
