/*
 * qr.h - a QR code (libqrencode) drawn as a small SVG document, for the
 * otpauth:// URI of a TOTP binding.  Pure: no I/O, no uv.h.
 */
#ifndef MFA_QR_H
#define MFA_QR_H

/* The SVG text of text's QR code (error correction M, 4-module quiet
 * zone), malloc'ed into *out.  0, or -1 (too long, no memory). */
int qr_svg(const char *text, char **out);

#endif
