/*
 * util.h - small helpers every folder uses: slices, array sizes,
 * container_of, clocks, random bytes, constant-time compare.
 *
 * Pure: no uv.h, no I/O beyond the clocks and OpenSSL's CSPRNG.
 */
#ifndef MFA_UTIL_H
#define MFA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifndef container_of
#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

/* A borrowed byte range; says nothing about ownership or termination. */
typedef struct {
    const char *base;
    size_t len;
} slice_t;

#define SLICE_LIT(s) ((slice_t){(s), sizeof(s) - 1})

/* Milliseconds of a monotonic clock, for deadlines. */
uint64_t util_now_ms(void);

/* Seconds since the epoch, for what is stored and shown. */
int64_t util_wall_time(void);

/* Fills buf from OpenSSL's CSPRNG; 0 or -1. */
int util_random_bytes(void *buf, size_t len);

/* Constant-time equality of two equal-length byte ranges. */
int util_ct_equal(const void *a, const void *b, size_t len);

/*
 * SHA-256 of len bytes into out (32 bytes); 0 or -1.  Thread-safe.  Unlike
 * OpenSSL 3's SHA256(), which looks the algorithm up again on every call
 * (a locked method-store search), it fetches it once per process.
 */
int util_sha256(const void *data, size_t len, unsigned char out[32]);

/* Lower-case hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void util_hex_encode(const void *in, size_t len, char *out);

/*
 * Copies a name (a user name, say: checked, but it may still hold spaces,
 * quotes or bytes a terminal would act on) into buf for a key=value log
 * line: every such byte becomes '?'.  Cut to buflen - 1 bytes.  Returns buf.
 */
const char *util_log_safe(const char *in, char *buf, size_t buflen);

/* Copies src into dst (size dst_size), always NUL-terminating; 0, or -1 if cut. */
int util_strlcpy(char *dst, const char *src, size_t dst_size);

#endif
