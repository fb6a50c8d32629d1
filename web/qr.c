/*
 * qr.c - QR codes as SVG (qr.h).  libqrencode makes the module matrix; this
 * file draws each dark run of a row as one horizontal path segment, so a
 * 2 KiB URI gives a few KiB of SVG that the page can inline.
 */
#include "web/qr.h"

#include <stdlib.h>

#include <qrencode.h>

#include "core/strbuf.h"

#define QR_QUIET 4

int
qr_svg(const char *text, char **out)
{
    QRcode *qr;
    struct strbuf b;
    int w, size;

    *out = NULL;
    qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (qr == NULL)
        return -1;
    if (strbuf_init(&b, 4096) != 0) {
        QRcode_free(qr);
        return -1;
    }
    w = qr->width;
    size = w + 2 * QR_QUIET;
    strbuf_printf(&b,
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
                strbuf_printf(&b, "M%d %dh%dv1h-%dz", x + QR_QUIET, y + QR_QUIET, run, run);
                x += run;
            } else {
                x++;
            }
        }
    }
    strbuf_printf(&b, "\"/></svg>");
    QRcode_free(qr);
    *out = strbuf_take(&b, NULL);
    return *out != NULL ? 0 : -1;
}
