/*
 * web_static.h - the files of web/static/, embedded into the binary at
 * build time by web/static_embed.cmake (which writes web_static.c in the
 * build folder).  Read-only data: no I/O at run time, nothing to install.
 */
#ifndef MFA_WEB_STATIC_H
#define MFA_WEB_STATIC_H

#include <stddef.h>

struct web_static_file {
    const char *path;           /* URL path, "/index.html", "/img/logo.png" */
    const char *content_type;   /* from the file's extension */
    const unsigned char *data;  /* followed by a NUL (not counted in len) */
    size_t len;
    const char *etag;           /* "\"<16 hex digits of SHA-256>\"" */
};

extern const struct web_static_file web_static_files[];
extern const size_t web_static_nfiles;

#endif
