/*
 * recovery.c - one-time recovery codes (recovery.h).  Owns the alphabet,
 * the shown and accepted shapes, the KDF input, making a set with distinct
 * locators, and the order of using a code (find, verify, use, audit).
 * Owns no I/O beyond the store and OpenSSL's CSPRNG; the KDF runs where
 * the caller calls it.
 */
#include "auth/recovery.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/keys.h"
#include "core/log.h"
#include "core/util.h"

/* Crockford's base32: no i, l, o, u. */
static const char recovery_alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

/*
 * The KDF input.  The argon2id code, the hash format and its limits are
 * apppw.c's, whose KDF takes exactly APPPW_LEN bytes: a code goes in as
 * this six-byte tag followed by its ten characters.  The tag also keeps a
 * recovery code's hash and locator apart from any app password's.
 */
#define RECOVERY_TAG "rcode:"
#define RECOVERY_TAG_LEN 6
_Static_assert(RECOVERY_TAG_LEN + RECOVERY_LEN == APPPW_LEN,
               "a recovery code's KDF input is exactly one app password long");
_Static_assert(sizeof(recovery_alphabet) - 1 == 32, "32 symbols: 5 bits each, no bias");

/* A set is drawn again when two of its codes share a locator; with 16-bit
 * locators and ten codes that happens about once in 1500 sets. */
#define RECOVERY_SET_TRIES 64

static void
recovery_input(const char *code, char out[APPPW_LEN + 1])
{
    memcpy(out, RECOVERY_TAG, RECOVERY_TAG_LEN);
    memcpy(out + RECOVERY_TAG_LEN, code, RECOVERY_LEN);
    out[APPPW_LEN] = '\0';
}

int
recovery_generate(char out[RECOVERY_LEN + 1])
{
    unsigned char rnd[RECOVERY_LEN];

    if (util_random_bytes(rnd, sizeof(rnd)) != 0) {
        OPENSSL_cleanse(out, RECOVERY_LEN + 1);
        return -1;
    }
    /* 256 is a multiple of 32: the low five bits are uniform. */
    for (size_t i = 0; i < RECOVERY_LEN; i++)
        out[i] = recovery_alphabet[rnd[i] & 31];
    out[RECOVERY_LEN] = '\0';
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return 0;
}

void
recovery_format(const char *code, char out[RECOVERY_SHOWN_LEN + 1])
{
    memcpy(out, code, RECOVERY_GROUP);
    out[RECOVERY_GROUP] = '-';
    memcpy(out + RECOVERY_GROUP + 1, code + RECOVERY_GROUP, RECOVERY_LEN - RECOVERY_GROUP);
    out[RECOVERY_SHOWN_LEN] = '\0';
}

/* The symbol a typed character stands for, or 0 if none. */
static char
recovery_symbol(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        c = (unsigned char)(c - 'A' + 'a');
    if (c == 'o')
        return '0';
    if (c == 'i' || c == 'l')
        return '1';
    if (c == 'u' || c == '\0')
        return 0;
    return strchr(recovery_alphabet, c) != NULL ? (char)c : 0;
}

int
recovery_normalize(const char *in, size_t len, char out[RECOVERY_LEN + 1])
{
    size_t n = 0, i = 0;
    int sep = 0;

    if (len > RECOVERY_TYPED_MAX)
        goto fail;
    while (len > 0 && in[len - 1] == ' ')
        len--;
    while (i < len && in[i] == ' ')
        i++;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        char sym;

        if (c == '-' || c == ' ') {
            /* One separator, only between the two groups. */
            if (sep || n != RECOVERY_GROUP)
                goto fail;
            sep = 1;
            continue;
        }
        sym = recovery_symbol(c);
        if (sym == 0 || n == RECOVERY_LEN)
            goto fail;
        out[n++] = sym;
    }
    if (n != RECOVERY_LEN)
        goto fail;
    out[n] = '\0';
    return 0;

fail:
    OPENSSL_cleanse(out, RECOVERY_LEN + 1);
    return -1;
}

int
recovery_locator(const unsigned char key[APPPW_KEY_LEN], const char *user, const char *code,
                 char out[APPPW_LOCATOR_LEN + 1])
{
    char input[APPPW_LEN + 1];
    int r;

    recovery_input(code, input);
    r = apppw_locator(key, user, input, out);
    OPENSSL_cleanse(input, sizeof(input));
    return r;
}

int
recovery_hash(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
              const char *code, char *out, size_t outlen)
{
    char input[APPPW_LEN + 1];
    int r;

    recovery_input(code, input);
    r = apppw_hash(p, pepper, input, out, outlen);
    OPENSSL_cleanse(input, sizeof(input));
    return r;
}

int
recovery_verify(const unsigned char pepper[APPPW_KEY_LEN], const char *code,
                const char *encoded)
{
    char input[APPPW_LEN + 1];
    int r;

    if (strlen(code) != RECOVERY_LEN)
        return -1;
    recovery_input(code, input);
    r = apppw_verify(pepper, input, encoded);
    OPENSSL_cleanse(input, sizeof(input));
    return r;
}

int
recovery_set_new(const struct keys *keys, const char *user, struct recovery_set *set)
{
    memset(set, 0, sizeof(*set));
    for (int tries = 0; tries < RECOVERY_SET_TRIES; tries++) {
        int i, dup = 0;

        for (i = 0; i < RECOVERY_COUNT && !dup; i++) {
            if (recovery_generate(set->codes[i]) != 0 ||
                recovery_locator(keys->locator, user, set->codes[i], set->locators[i]) != 0) {
                recovery_set_wipe(set);
                return -1;
            }
            /* Distinct locators: a typed code then names at most one row,
             * so checking it costs at most one KDF run. */
            for (int j = 0; j < i; j++)
                if (strcmp(set->locators[i], set->locators[j]) == 0)
                    dup = 1;
        }
        if (!dup)
            return 0;
    }
    recovery_set_wipe(set);
    return -1;
}

int
recovery_hash_set(const struct apppw_params *p, const unsigned char pepper[APPPW_KEY_LEN],
                  struct recovery_set *set)
{
    for (int i = 0; i < RECOVERY_COUNT; i++)
        if (recovery_hash(p, pepper, set->codes[i], set->hashes[i], sizeof(set->hashes[i])) != 0)
            return -1;
    return 0;
}

int
recovery_set_save(struct store *st, const char *user, const struct recovery_set *set,
                  int64_t now, const char *via, const char *addr)
{
    const char *locators[RECOVERY_COUNT], *hashes[RECOVERY_COUNT];
    char detail[STORE_DETAIL_MAX];
    int r;

    for (int i = 0; i < RECOVERY_COUNT; i++) {
        if (set->hashes[i][0] != '$')
            return STORE_ERR;    /* not hashed: never store a code as it is */
        locators[i] = set->locators[i];
        hashes[i] = set->hashes[i];
    }
    /* Durable before the codes are shown. */
    r = store_recovery_replace(st, user, locators, hashes, RECOVERY_COUNT, now);
    if (r != STORE_OK)
        return r;
    snprintf(detail, sizeof(detail), "count=%d via=%s", RECOVERY_COUNT, via);
    if (store_audit(st, now, user, "recovery_codes", detail, addr) != STORE_OK)
        log_warn("recovery event=audit_lost what=recovery_codes");
    return STORE_OK;
}

void
recovery_set_wipe(struct recovery_set *set)
{
    OPENSSL_cleanse(set, sizeof(*set));
}

int
recovery_lookup(struct store *st, const struct keys *keys, const char *user, const char *typed,
                char code[RECOVERY_LEN + 1], struct store_recovery *row)
{
    char locator[APPPW_LOCATOR_LEN + 1];

    memset(row, 0, sizeof(*row));
    if (typed == NULL || recovery_normalize(typed, strlen(typed), code) != 0)
        return STORE_NOTFOUND;
    if (recovery_locator(keys->locator, user, code, locator) != 0)
        return STORE_ERR;
    return store_recovery_find(st, user, locator, row);
}

int
recovery_use(struct store *st, const char *user, int64_t id, const char *what,
             const char *addr, int64_t now, int *left)
{
    char detail[STORE_DETAIL_MAX];
    int l = -1, r;

    r = store_recovery_use(st, id, now);
    if (r != STORE_OK)
        return r;
    if (store_recovery_count(st, user, NULL, &l, NULL) != STORE_OK)
        l = -1;
    if (left != NULL)
        *left = l;
    snprintf(detail, sizeof(detail), "id=%lld for=%s left=%d", (long long)id, what, l);
    if (store_audit(st, now, user, "recovery_code_used", detail, addr) != STORE_OK)
        log_warn("recovery event=audit_lost what=recovery_code_used");
    return STORE_OK;
}

int
recovery_clear(struct store *st, const char *user, const char *why, const char *addr,
               int64_t now, int *removed)
{
    char detail[STORE_DETAIL_MAX];
    int n = 0, r;

    r = store_recovery_clear(st, user, &n);
    if (removed != NULL)
        *removed = n;
    if (r != STORE_OK || n == 0)
        return r;
    snprintf(detail, sizeof(detail), "count=%d why=%s", n, why);
    if (store_audit(st, now, user, "recovery_codes_clear", detail, addr) != STORE_OK)
        log_warn("recovery event=audit_lost what=recovery_codes_clear");
    return STORE_OK;
}
