/*
 * strbuf.h - a growing, NUL-terminated text buffer for output built piece by
 * piece (the /metrics page, SVG QR codes).  A failed allocation is sticky:
 * later appends do nothing and strbuf_take() returns NULL, so callers check
 * once at the end.
 */
#ifndef MFA_STRBUF_H
#define MFA_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *p;
    size_t len;
    size_t cap;
    int failed;
};

/* Starts an empty buffer with room for cap bytes; 0 or -1. */
int strbuf_init(struct strbuf *b, size_t cap);

void strbuf_printf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The text (the caller frees it) and its length, or NULL if anything failed
 * (the buffer is freed then).  The buffer is empty afterwards. */
char *strbuf_take(struct strbuf *b, size_t *len);

#endif
