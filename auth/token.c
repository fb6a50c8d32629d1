/*
 * token.c - random web tokens and their keyed hashes (token.h).  Owns the
 * token format; what a token opens is the store's and the callers' business.
 */
#include "auth/token.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/codec.h"
#include "core/util.h"

int
token_b64url(const unsigned char *in, size_t len, char *out, size_t cap)
{
    char tmp[256];
    int n, j = 0;

    if (CODEC_B64_ENCODED_LEN(len) + 1 > sizeof(tmp))
        return -1;
    n = codec_b64_encode(in, len, tmp, sizeof(tmp));
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        char c = tmp[i];

        if (c == '=')
            break;
        if ((size_t)j + 1 >= cap) {
            OPENSSL_cleanse(tmp, sizeof(tmp));
            return -1;
        }
        out[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
    }
    out[j] = '\0';
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return j;
}

/* HMAC-SHA256(key, a [":" b]) into out. */
static int
token_mac(const unsigned char key[TOKEN_KEY_LEN], const char *a, const char *b,
          unsigned char out[TOKEN_HASH_LEN])
{
    unsigned char buf[256];
    size_t alen = strlen(a), blen = b ? strlen(b) : 0, n = alen;
    unsigned int outlen = 0;
    int r = -1;

    if (alen + 1 + blen > sizeof(buf))
        return -1;
    memcpy(buf, a, alen);
    if (b != NULL) {
        buf[n++] = ':';
        memcpy(buf + n, b, blen);
        n += blen;
    }
    if (HMAC(EVP_sha256(), key, TOKEN_KEY_LEN, buf, n, out, &outlen) != NULL &&
        outlen == TOKEN_HASH_LEN)
        r = 0;
    OPENSSL_cleanse(buf, sizeof(buf));
    return r;
}

int
token_new(const unsigned char key[TOKEN_KEY_LEN], char text[TOKEN_TEXT_LEN + 1],
          unsigned char hash[TOKEN_HASH_LEN])
{
    unsigned char raw[TOKEN_BYTES];
    int r = -1;

    if (util_random_bytes(raw, sizeof(raw)) == 0 &&
        token_b64url(raw, sizeof(raw), text, TOKEN_TEXT_LEN + 1) == TOKEN_TEXT_LEN &&
        token_mac(key, text, NULL, hash) == 0)
        r = 0;
    OPENSSL_cleanse(raw, sizeof(raw));
    if (r != 0)
        OPENSSL_cleanse(text, TOKEN_TEXT_LEN + 1);
    return r;
}

int
token_hash(const unsigned char key[TOKEN_KEY_LEN], const char *text, size_t len,
           unsigned char hash[TOKEN_HASH_LEN])
{
    char copy[TOKEN_TEXT_LEN + 1];
    int r;

    if (text == NULL || len != TOKEN_TEXT_LEN)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    r = token_mac(key, copy, NULL, hash);
    OPENSSL_cleanse(copy, sizeof(copy));
    return r;
}

int
token_derive(const unsigned char key[TOKEN_KEY_LEN], const char *label, const char *text,
             char out[TOKEN_TEXT_LEN + 1])
{
    unsigned char mac[TOKEN_HASH_LEN];
    int r = -1;

    if (token_mac(key, label, text, mac) == 0 &&
        token_b64url(mac, sizeof(mac), out, TOKEN_TEXT_LEN + 1) == TOKEN_TEXT_LEN)
        r = 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    return r;
}
