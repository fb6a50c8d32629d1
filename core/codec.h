/*
 * codec.h - byte encodings shared by the protocol cores: standard base64
 * (RFC 4648 section 4, with padding), strict on input.
 *
 * Pure: no I/O, no allocation, no global state. It knows nothing about SASL
 * or IMAP; proxy/sasl.c gives the decoded bytes their meaning.
 */
#ifndef MFA_CODEC_H
#define MFA_CODEC_H

#include <stddef.h>

/* Characters needed to encode n bytes, without the NUL. */
#define CODEC_B64_ENCODED_LEN(n) ((((n) + 2) / 3) * 4)

/* Upper bound of the bytes that a base64 text of n characters decodes to. */
#define CODEC_B64_DECODED_MAX(n) (((n) / 4) * 3)

/*
 * Standard base64 (RFC 4648 section 4) with padding. Returns the output
 * length, or -1 if cap is too small. out is NUL-terminated (cap counts the
 * NUL).
 */
int codec_b64_encode(const void *in, size_t len, char *out, size_t cap);

/*
 * Strict decode: rejects characters outside the alphabet, wrong padding,
 * whitespace, a length that is not a multiple of 4, and non-zero bits in the
 * last character before the padding (non-canonical encodings). Returns the
 * decoded length or -1. out is NUL-terminated too (cap counts it). An empty
 * input decodes to 0 bytes.
 */
int codec_b64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

#endif
