/*
 * scene.c - QR scenes of the WeChat factor: ids, hashes and the rules of
 * scene.h.
 */
#include "auth/scene.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "auth/keys.h"

static const char scene_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

int
scene_text_ok(const char *text)
{
    size_t n;

    if (text == NULL)
        return 0;
    for (n = 0; text[n] != '\0'; n++) {
        char c = text[n];
        if (n >= SCENE_LEN ||
            !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return 0;
    }
    return n == SCENE_LEN;
}

int
scene_hash(const struct keys *keys, const char *text, unsigned char hash[STORE_TOKEN_HASH_LEN])
{
    unsigned char buf[6 + SCENE_LEN];
    unsigned int len = 0;

    if (!scene_text_ok(text))
        return -1;
    /* Its own label, so a scene id never hashes like a cookie token. */
    memcpy(buf, "scene:", 6);
    memcpy(buf + 6, text, SCENE_LEN);
    if (HMAC(EVP_sha256(), keys->token, KEYS_LEN, buf, sizeof(buf), hash, &len) == NULL ||
        len != STORE_TOKEN_HASH_LEN)
        return -1;
    return 0;
}

int
scene_create(struct store *st, const struct keys *keys, struct store_scene *sc, int64_t now,
             int64_t ttl, char text[SCENE_LEN + 1])
{
    unsigned char rnd[SCENE_LEN], hash[STORE_TOKEN_HASH_LEN];
    size_t i = 0;
    int r = STORE_ERR;

    /* 62 symbols: take bytes below 248 (= 4 * 62) so every symbol is as likely. */
    while (i < SCENE_LEN) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            goto done;
        for (size_t j = 0; j < sizeof(rnd) && i < SCENE_LEN; j++)
            if (rnd[j] < 248)
                text[i++] = scene_alphabet[rnd[j] % 62];
    }
    text[SCENE_LEN] = '\0';
    if (scene_hash(keys, text, hash) != 0)
        goto done;
    sc->created = now;
    sc->expires = now + ttl;
    sc->answer[0] = '\0';
    sc->openid[0] = '\0';
    sc->used = 0;
    r = store_scene_add(st, hash, sc, &sc->id);

done:
    OPENSSL_cleanse(rnd, sizeof(rnd));
    if (r != STORE_OK)
        OPENSSL_cleanse(text, SCENE_LEN + 1);
    return r;
}

int
scene_open(struct store *st, const struct keys *keys, const char *text, struct store_scene *out)
{
    unsigned char hash[STORE_TOKEN_HASH_LEN];
    int r;

    memset(out, 0, sizeof(*out));
    if (scene_hash(keys, text, hash) != 0)
        return SCENE_GONE;
    r = store_scene_get(st, hash, out);
    return r == STORE_NOTFOUND ? SCENE_GONE : r;
}

enum scene_state
scene_state(const struct store_scene *sc, int64_t now)
{
    if (sc->used)
        return SCENE_USED;
    if (strcmp(sc->answer, "deny") == 0)
        return SCENE_DENIED;
    if (strcmp(sc->answer, SCENE_FAIL) == 0)
        return SCENE_FAILED;
    if (sc->answer[0] != '\0')
        return SCENE_APPROVED;
    return sc->expires <= now ? SCENE_EXPIRED : SCENE_PENDING;
}

const char *
scene_state_name(enum scene_state s)
{
    switch (s) {
    case SCENE_PENDING:
        return "pending";
    case SCENE_APPROVED:
        return "approved";
    case SCENE_DENIED:
        return "denied";
    case SCENE_EXPIRED:
        return "expired";
    case SCENE_USED:
        return "used";
    case SCENE_FAILED:
        return "failed";
    }
    return "expired";
}

static int
scene_is_bind(const struct store_scene *sc)
{
    return strcmp(sc->purpose, SCENE_BIND) == 0 || strcmp(sc->purpose, SCENE_REBIND) == 0;
}

int
scene_may_answer(const struct store_scene *sc, const char *openid, const char *bound_openid)
{
    if (scene_is_bind(sc))
        return 0;
    if (openid == NULL || *openid == '\0' || bound_openid == NULL ||
        strcmp(openid, bound_openid) != 0)
        return SCENE_WRONG_ACCOUNT;
    return 0;
}

int
scene_check_answer(const struct store_scene *sc, const char *answer, int picked,
                   const char **stored)
{
    int signin = strcmp(sc->purpose, SCENE_SIGNIN) == 0;

    *stored = NULL;
    if (answer == NULL)
        return SCENE_BAD_ANSWER;
    if (strcmp(answer, "deny") == 0) {
        *stored = "deny";
        return 0;
    }
    if (signin ? (strcmp(answer, "trust") != 0 && strcmp(answer, "temporary") != 0)
               : strcmp(answer, "confirm") != 0)
        return SCENE_BAD_ANSWER;
    /* Number matching: a wrong pick is a no, so guessing costs the request. */
    *stored = (sc->number > 0 && picked != sc->number) ? "deny" : answer;
    return 0;
}

void
scene_numbers(const struct store_scene *sc, int out[3])
{
    /* A small generator seeded by the row: the same choice on every fetch. */
    uint32_t x = (uint32_t)sc->id * 2654435761u ^ (uint32_t)sc->number * 40503u ^ 0x9e3779b9u;
    int other[2], n = 0, pos;

    x ^= x >> 15;
    pos = (int)(x % 3);
    while (n < 2) {
        int c;

        x = x * 1103515245u + 12345u;
        c = 10 + (int)((x >> 8) % 90);
        if (c != sc->number && (n == 0 || c != other[0]))
            other[n++] = c;
    }
    for (int i = 0, k = 0; i < 3; i++)
        out[i] = i == pos ? sc->number : other[k++];
}

int
scene_answer(struct store *st, const struct store_scene *sc, const char *answer,
             const char *openid, int64_t now)
{
    int r = store_scene_answer(st, sc->id, answer, openid, now);

    return r == STORE_CONFLICT ? SCENE_ANSWERED : r;
}
