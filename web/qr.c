/*
 * qr.c - QR codes as SVG (qr.h).  libqrencode makes the module matrix; this
 * file draws each dark run of a row as one horizontal path segment, so a
 * 2 KiB URI gives a few KiB of SVG that the page can inline.
 */
#include "web/qr.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>

#define QR_QUIET 4

struct qr_buf {
    char *p;
    size_t len, cap;
    int failed;
};

static void
qr_printf(struct qr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
qr_printf(struct qr_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
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
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

int
qr_svg(const char *text, char **out)
{
    QRcode *qr;
    struct qr_buf b = {NULL, 0, 4096, 0};
    int w, size;

    *out = NULL;
    qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL)
        return -1;
    b.p = malloc(b.cap);
    if (b.p == NULL) {
        QRcode_free(qr);
        return -1;
    }
    w = qr->width;
    size = w + 2 * QR_QUIET;
    qr_printf(&b,
              "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
              "width=\"%d\" height=\"%d\" shape-rendering=\"crispEdges\">"
              "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
              size, size, size * 4, size * 4, size, size);
    for (int y = 0; y < w; y++) {
        for (int x = 0; x < w;) {
            int run = 0;

            while (x + run < w && (qr->data[y * w + x + run] & 1))
                run++;
            if (run > 0) {
                qr_printf(&b, "M%d %dh%dv1h-%dz", x + QR_QUIET, y + QR_QUIET, run, run);
                x += run;
            } else {
                x++;
            }
        }
    }
    qr_printf(&b, "\"/></svg>");
    QRcode_free(qr);
    if (b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    return 0;
}
