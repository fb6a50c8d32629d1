/*
 * util.c - see util.h.
 */
#include "core/util.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

uint64_t
util_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t
util_wall_time(void)
{
    return (int64_t)time(NULL);
}

int
util_random_bytes(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int
util_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

/* Fetched once, kept for the life of the process, shared by every thread. */
static EVP_MD *util_sha256_md;
static pthread_once_t util_sha256_once = PTHREAD_ONCE_INIT;

static void
util_sha256_fetch(void)
{
    util_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int
util_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;

    pthread_once(&util_sha256_once, util_sha256_fetch);
    if (EVP_Digest(data, len, out, &n,
                   util_sha256_md != NULL ? util_sha256_md : EVP_sha256(), NULL) != 1 ||
        n != 32)
        return -1;
    return 0;
}

void
util_hex_encode(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0xf];
    }
    out[2 * len] = '\0';
}

const char *
util_log_safe(const char *in, char *buf, size_t buflen)
{
    size_t i = 0;

    for (; in[i] != '\0' && i + 1 < buflen; i++) {
        unsigned char c = (unsigned char)in[i];

        buf[i] = (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) ? '?' : (char)c;
    }
    buf[i] = '\0';
    return buf;
}

int
util_strlcpy(char *dst, const char *src, size_t dst_size)
{
    size_t n = strlen(src);

    if (dst_size == 0)
        return -1;
    if (n >= dst_size) {
        memcpy(dst, src, dst_size - 1);
        dst[dst_size - 1] = '\0';
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}
