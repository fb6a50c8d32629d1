/*
 * totp.c - RFC 6238 codes, RFC 4648 base32, otpauth:// URIs and sealed
 * secrets (totp.h).  Owns no storage and no clock.
 */
#include "auth/totp.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/util.h"

#define TOTP_SEAL_VERSION 1

static const char totp_b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

int64_t
totp_step(int64_t now)
{
    /* Floor division, so that times before 1970 would not round up. */
    return now >= 0 ? now / TOTP_PERIOD : -((-now + TOTP_PERIOD - 1) / TOTP_PERIOD);
}

int
totp_hotp(const unsigned char *key, size_t keylen, uint64_t counter, int digits,
          uint32_t *code)
{
    static const uint32_t mod[] = {1000000, 10000000, 100000000};
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    uint32_t bin;
    int off;

    if (digits < 6 || digits > 8)
        return -1;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    if (HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &maclen) == NULL ||
        maclen != 20)
        return -1;
    /* RFC 4226 5.3 dynamic truncation. */
    off = mac[19] & 0x0f;
    bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
          (uint32_t)mac[off + 2] << 8 | (uint32_t)mac[off + 3];
    *code = bin % mod[digits - 6];
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int
totp_verify(const unsigned char *key, size_t keylen, int64_t now, const char *code,
            int digits, int window, int64_t *step)
{
    int64_t base = totp_step(now), found = 0;
    char want[16];
    int matched = 0;

    if (digits < 6 || digits > 8 || window < 0 || window > 10 || strlen(code) != (size_t)digits)
        return -1;
    for (int i = 0; i < digits; i++)
        if (code[i] < '0' || code[i] > '9')
            return -1;
    /* No early exit: each candidate step costs the same. */
    for (int64_t s = base - window; s <= base + window; s++) {
        uint32_t c;

        if (s < 0 || totp_hotp(key, keylen, (uint64_t)s, digits, &c) != 0)
            continue;
        snprintf(want, sizeof(want), "%0*u", digits, (unsigned)c);
        if (util_ct_equal(want, code, (size_t)digits) && !matched) {
            matched = 1;
            found = s;
        }
    }
    OPENSSL_cleanse(want, sizeof(want));
    if (!matched)
        return -1;
    *step = found;
    return 0;
}

int
totp_base32_encode(const unsigned char *in, size_t len, int pad, char *out, size_t outlen)
{
    size_t need = (len + 4) / 5 * 8, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (!pad)
        need = (len * 8 + 4) / 5;
    if (outlen < need + 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = totp_b32[(acc >> bits) & 31];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = totp_b32[(acc << (5 - bits)) & 31];
    while (pad && o % 8 != 0)
        out[o++] = '=';
    out[o] = '\0';
    return 0;
}

int
totp_base32_decode(const char *in, unsigned char *out, size_t outmax, size_t *outlen)
{
    uint32_t acc = 0;
    int bits = 0, padding = 0;
    size_t o = 0;

    for (; *in; in++) {
        char c = *in;
        const char *p;

        if (c == ' ')
            continue;
        if (c == '=') {
            padding = 1;
            continue;
        }
        if (padding)
            return -1; /* data after padding */
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        p = strchr(totp_b32, c);
        if (c == '\0' || p == NULL)
            return -1;
        acc = acc << 5 | (uint32_t)(p - totp_b32);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o == outmax)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    *outlen = o;
    return 0;
}

/* Percent-encodes everything but RFC 3986's unreserved characters. */
static int
totp_urlencode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= outlen)
                return -1;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

int
totp_uri(const char *user, const unsigned char *secret, size_t secret_len, char *out,
         size_t outlen)
{
    char b32[128], euser[3 * 256 + 1];
    int n, r = -1;

    if (strlen(user) > 256 || totp_urlencode(user, euser, sizeof(euser)) != 0 ||
        totp_base32_encode(secret, secret_len, 0, b32, sizeof(b32)) != 0)
        goto fail;
    n = snprintf(out, outlen,
                 "otpauth://totp/mfagate:%s?secret=%s&issuer=mfagate&algorithm=SHA1"
                 "&digits=%d&period=%d",
                 euser, b32, TOTP_DIGITS, TOTP_PERIOD);
    if (n < 0 || (size_t)n >= outlen)
        goto fail;
    r = 0;

fail:
    OPENSSL_cleanse(b32, sizeof(b32));
    return r;
}

int
totp_generate_secret(unsigned char out[TOTP_SECRET_LEN])
{
    return util_random_bytes(out, TOTP_SECRET_LEN);
}

int
totp_seal(const unsigned char key[TOTP_KEY_LEN], const char *user,
          const unsigned char *secret, size_t len, unsigned char *out, size_t outmax,
          size_t *outlen)
{
    EVP_CIPHER_CTX *c = NULL;
    unsigned char *nonce = out + 1, *ct = out + 1 + TOTP_NONCE_LEN;
    int n, r = -1;

    if (len == 0 || len > 64 || outmax < 1 + TOTP_NONCE_LEN + len + TOTP_GCM_TAG_LEN)
        return -1;
    out[0] = TOTP_SEAL_VERSION;
    if (util_random_bytes(nonce, TOTP_NONCE_LEN) != 0)
        return -1;
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return -1;
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, TOTP_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(c, NULL, NULL, key, nonce) != 1 ||
        EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)user, (int)strlen(user)) != 1 ||
        EVP_EncryptUpdate(c, ct, &n, secret, (int)len) != 1 ||
        EVP_EncryptFinal_ex(c, ct + n, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TOTP_GCM_TAG_LEN, ct + len) != 1)
        goto fail;
    *outlen = 1 + TOTP_NONCE_LEN + len + TOTP_GCM_TAG_LEN;
    r = 0;

fail:
    EVP_CIPHER_CTX_free(c);
    return r;
}

int
totp_open(const unsigned char key[TOTP_KEY_LEN], const char *user, const unsigned char *in,
          size_t len, unsigned char *out, size_t outmax, size_t *outlen)
{
    EVP_CIPHER_CTX *c = NULL;
    const unsigned char *nonce = in + 1, *ct = in + 1 + TOTP_NONCE_LEN;
    unsigned char tag[TOTP_GCM_TAG_LEN];
    size_t ctlen;
    int n, r = -1;

    if (len <= 1 + TOTP_NONCE_LEN + TOTP_GCM_TAG_LEN || in[0] != TOTP_SEAL_VERSION)
        return -1;
    ctlen = len - 1 - TOTP_NONCE_LEN - TOTP_GCM_TAG_LEN;
    if (ctlen > outmax)
        return -1;
    memcpy(tag, ct + ctlen, sizeof(tag));
    c = EVP_CIPHER_CTX_new();
    if (c == NULL)
        return -1;
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, TOTP_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(c, NULL, NULL, key, nonce) != 1 ||
        EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)user, (int)strlen(user)) != 1 ||
        EVP_DecryptUpdate(c, out, &n, ct, (int)ctlen) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TOTP_GCM_TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(c, out + n, &n) != 1) {
        /* Authentication failed: never hand out unauthenticated bytes. */
        OPENSSL_cleanse(out, ctlen);
        goto fail;
    }
    *outlen = ctlen;
    r = 0;

fail:
    EVP_CIPHER_CTX_free(c);
    return r;
}
