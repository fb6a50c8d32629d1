/*
 * codec.c - base64 (RFC 4648 section 4); see codec.h.
 *
 * It owns only the encoding: what the bytes mean (SASL messages, keys) is
 * the caller's business.
 */
#include "core/codec.h"

#include <limits.h>
#include <stdint.h>

static const char codec_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The value of one alphabet character, or -1 (the pad '=' is not one). */
static int
codec_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int
codec_b64_encode(const void *in, size_t len, char *out, size_t cap)
{
    const unsigned char *s = in;
    size_t need, o = 0, i;
    uint32_t v;

    /* The length is returned as an int, so bound it before any arithmetic. */
    if (len > ((size_t)INT_MAX / 4) * 3 - 3)
        return -1;
    need = CODEC_B64_ENCODED_LEN(len);
    if (cap < need + 1)
        return -1;

    for (i = 0; i + 3 <= len; i += 3) {
        v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = codec_b64_alphabet[(v >> 18) & 63];
        out[o++] = codec_b64_alphabet[(v >> 12) & 63];
        out[o++] = codec_b64_alphabet[(v >> 6) & 63];
        out[o++] = codec_b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        v = (uint32_t)s[i] << 16;
        out[o++] = codec_b64_alphabet[(v >> 18) & 63];
        out[o++] = codec_b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        out[o++] = codec_b64_alphabet[(v >> 18) & 63];
        out[o++] = codec_b64_alphabet[(v >> 12) & 63];
        out[o++] = codec_b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return (int)o;
}

int
codec_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0, i, pad = 0, need;
    int a, b, c, d;

    if (cap == 0 || len % 4 != 0 || len > (size_t)INT_MAX)
        return -1;
    if (len > 0 && s[len - 1] == '=')
        pad = s[len - 2] == '=' ? 2 : 1;
    need = len / 4 * 3 - pad;
    if (cap < need + 1)
        return -1;

    for (i = 0; i < len; i += 4) {
        int last = (i + 4 == len);

        a = codec_b64_value(s[i]);
        b = codec_b64_value(s[i + 1]);
        if (a < 0 || b < 0)
            return -1;
        if (last && pad == 2) {
            /* "xx==": the low four bits of the second character are unused. */
            if (s[i + 2] != '=' || (b & 0x0f) != 0)
                return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            break;
        }
        c = codec_b64_value(s[i + 2]);
        if (c < 0)
            return -1;
        if (last && pad == 1) {
            /* "xxx=": the low two bits of the third character are unused. */
            if ((c & 0x03) != 0)
                return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            out[o++] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
            break;
        }
        d = codec_b64_value(s[i + 3]);
        if (d < 0)
            return -1;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        out[o++] = (unsigned char)((b & 0x0f) << 4 | c >> 2);
        out[o++] = (unsigned char)((c & 0x03) << 6 | d);
    }
    out[o] = '\0';
    return (int)o;
}
