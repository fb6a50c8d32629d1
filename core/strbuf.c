/*
 * strbuf.c - see strbuf.h.
 */
#include "core/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int
strbuf_init(struct strbuf *b, size_t cap)
{
    b->len = 0;
    b->cap = cap > 0 ? cap : 256;
    b->failed = 0;
    b->p = malloc(b->cap);
    if (b->p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p[0] = '\0';
    return 0;
}

void
strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        char *np;

        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        /* Too small: grow, then format again. */
        np = realloc(b->p, b->cap * 2 + (size_t)n);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = b->cap * 2 + (size_t)n;
    }
}

char *
strbuf_take(struct strbuf *b, size_t *len)
{
    char *p = b->p;

    if (b->failed) {
        free(p);
        p = NULL;
    } else if (len != NULL) {
        *len = b->len;
    }
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
    return p;
}
