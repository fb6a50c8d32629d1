/*
 * config.c - INI file -> struct config.
 *
 * Parsing is inih's (Debian's libinih: small, long-lived, and it reports the
 * line of the first error, which is what "file:line: what is wrong" needs).
 * This file owns the table of known keys, the defaults, the value parsers and
 * the final checks; it owns no state beyond the struct it fills.
 */
#include "conf/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

/* What the inih callback needs while it runs over one file. */
struct config_parse {
    struct config *cfg;
    char msg[512];                    /* the first error's text */
    int failed;
    char master_password_file[PATH_MAX];
    char wechat_secret_file[PATH_MAX];
};

typedef int (*config_setter)(struct config_parse *cp, const char *value, void *field,
                             size_t size);

struct config_key {
    const char *section;
    const char *name;
    config_setter set;
    size_t offset;                    /* into struct config */
    size_t size;                      /* of the field, for strings */
};

static void config_fail(struct config_parse *cp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
config_fail(struct config_parse *cp, const char *fmt, ...)
{
    va_list ap;

    if (cp->failed)
        return;
    cp->failed = 1;
    va_start(ap, fmt);
    vsnprintf(cp->msg, sizeof(cp->msg), fmt, ap);
    va_end(ap);
}

static int
config_parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcasecmp(v, "on") ||
        !strcmp(v, "1"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcasecmp(v, "off") ||
             !strcmp(v, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

/* "60s", "30m", "2h", "1d", "1500ms" or bare seconds -> milliseconds. */
static int
config_parse_duration(const char *s, uint64_t *out_ms)
{
    char *end;
    unsigned long long v;
    uint64_t mult;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 86400 * 1000;
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out_ms = v * mult;
    return 0;
}

static int
config_parse_long(const char *v, long min, long max, long *out)
{
    char *end;
    long n;

    if (*v == '\0')
        return -1;
    errno = 0;
    n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

/*
 * Resolves a path relative to the configuration file's folder; absolute
 * paths and "" are kept as they are.
 */
static int
config_resolve_path(const struct config *cfg, const char *v, char *out, size_t outlen)
{
    size_t vlen = strlen(v), dlen = 0;

    if (v[0] != '\0' && v[0] != '/')
        dlen = strlen(cfg->dir) + 1;
    if (dlen + vlen >= outlen)
        return -1;
    if (dlen > 0) {
        memcpy(out, cfg->dir, dlen - 1);
        out[dlen - 1] = '/';
    }
    memcpy(out + dlen, v, vlen + 1);
    return 0;
}

static int
set_bool(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (config_parse_bool(v, field) < 0) {
        config_fail(cp, "expected yes or no, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int
set_string(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (strlen(v) >= size) {
        config_fail(cp, "value too long (at most %zu bytes)", size - 1);
        return -1;
    }
    memcpy(field, v, strlen(v) + 1);
    return 0;
}

static int
set_path(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (config_resolve_path(cp->cfg, v, field, size) < 0) {
        config_fail(cp, "path too long");
        return -1;
    }
    return 0;
}

static int
set_workers(struct config_parse *cp, const char *v, void *field, size_t size)
{
    long n;

    if (config_parse_long(v, 1, 256, &n) < 0) {
        config_fail(cp, "workers must be a number from 1 to 256, got \"%s\"", v);
        return -1;
    }
    *(int *)field = (int)n;
    return 0;
}

/* [auth] kdf_threads: 0 (as many as suits the cores) or 1 to CONFIG_KDF_THREADS_MAX. */
static int
set_kdf_threads(struct config_parse *cp, const char *v, void *field, size_t size)
{
    long n;

    if (config_parse_long(v, 0, CONFIG_KDF_THREADS_MAX, &n) < 0) {
        config_fail(cp, "kdf_threads must be a number from 0 (automatic) to %d, got \"%s\"",
                    CONFIG_KDF_THREADS_MAX, v);
        return -1;
    }
    *(int *)field = (int)n;
    return 0;
}

static int
set_port(struct config_parse *cp, const char *v, void *field, size_t size)
{
    long n;

    if (config_parse_long(v, 1, 65535, &n) < 0) {
        config_fail(cp, "expected a port from 1 to 65535, got \"%s\"", v);
        return -1;
    }
    *(int *)field = (int)n;
    return 0;
}

static int
set_count(struct config_parse *cp, const char *v, void *field, size_t size)
{
    long n;

    if (config_parse_long(v, 1, INT_MAX, &n) < 0) {
        config_fail(cp, "expected a positive number, got \"%s\"", v);
        return -1;
    }
    *(int *)field = (int)n;
    return 0;
}

static int
set_u32(struct config_parse *cp, const char *v, void *field, size_t size)
{
    long n;

    if (config_parse_long(v, 1, UINT32_MAX > LONG_MAX ? LONG_MAX : (long)UINT32_MAX, &n) < 0) {
        config_fail(cp, "expected a positive number, got \"%s\"", v);
        return -1;
    }
    *(uint32_t *)field = (uint32_t)n;
    return 0;
}

static int
set_size(struct config_parse *cp, const char *v, void *field, size_t size)
{
    char *end;
    unsigned long long n;
    unsigned long long mult = 1;

    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || v[0] == '-') {
        config_fail(cp, "expected a size such as 8192, 64k or 1m, got \"%s\"", v);
        return -1;
    }
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    if (*end != '\0' || n == 0 || n > (1ULL << 30) / mult) {
        config_fail(cp, "expected a size such as 8192, 64k or 1m, got \"%s\"", v);
        return -1;
    }
    *(size_t *)field = (size_t)(n * mult);
    return 0;
}

static int
set_duration(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (config_parse_duration(v, field) < 0) {
        config_fail(cp, "expected a duration such as 30s, 10m or 2h, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int
set_tls_mode(struct config_parse *cp, const char *v, void *field, size_t size)
{
    enum config_tls_mode *m = field;

    if (!strcasecmp(v, "no"))
        *m = CONFIG_TLS_NO;
    else if (!strcasecmp(v, "starttls"))
        *m = CONFIG_TLS_STARTTLS;
    else if (!strcasecmp(v, "yes"))
        *m = CONFIG_TLS_YES;
    else {
        config_fail(cp, "expected no, starttls or yes, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int
set_forward(struct config_parse *cp, const char *v, void *field, size_t size)
{
    enum config_forward *f = field;
    int on;

    if (!strcasecmp(v, "proxy"))
        *f = CONFIG_FORWARD_PROXY;
    else if (config_parse_bool(v, &on) == 0)
        *f = on ? CONFIG_FORWARD_COMMAND : CONFIG_FORWARD_NO;
    else {
        config_fail(cp, "expected yes, proxy or no, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int
set_log_level(struct config_parse *cp, const char *v, void *field, size_t size)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, names[i])) {
            *(int *)field = i;
            return 0;
        }
    }
    config_fail(cp, "expected debug, info, warn or error, got \"%s\"", v);
    return -1;
}

static int
set_unauth(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (!strcasecmp(v, "relay"))
        *(int *)field = 1;
    else if (!strcasecmp(v, "reject"))
        *(int *)field = 0;
    else {
        config_fail(cp, "expected relay or reject, got \"%s\"", v);
        return -1;
    }
    return 0;
}

static int
set_relay(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (*v != '\0' && strncasecmp(v, "smtp://", 7) != 0 && strncasecmp(v, "smtps://", 8) != 0) {
        config_fail(cp, "expected an smtp:// or smtps:// URL (or nothing), got \"%s\"", v);
        return -1;
    }
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            config_fail(cp, "the relay URL holds a space or control character");
            return -1;
        }
    }
    if (*v != '\0' && v[(v[4] == 's' || v[4] == 'S') ? 8 : 7] == '\0') {
        config_fail(cp, "the relay URL names no host");
        return -1;
    }
    return set_string(cp, v, field, size);
}

static int
set_mail_from(struct config_parse *cp, const char *v, void *field, size_t size)
{
    const char *at = strchr(v, '@');

    if (at == NULL || at == v || at[1] == '\0' || strchr(at + 1, '@') != NULL) {
        config_fail(cp, "expected an address with one @, got \"%s\"", v);
        return -1;
    }
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || strchr("<>(),;\"\\[]", *p) != NULL) {
            config_fail(cp, "the address holds a character an address cannot hold");
            return -1;
        }
    }
    return set_string(cp, v, field, size);
}

static int
set_email_factor(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (!strcasecmp(v, "second_factor"))
        *(int *)field = CONFIG_EMAIL_SECOND_FACTOR;
    else if (!strcasecmp(v, "recovery"))
        *(int *)field = CONFIG_EMAIL_RECOVERY;
    else {
        config_fail(cp, "expected second_factor or recovery, got \"%s\"", v);
        return -1;
    }
    return 0;
}

int
config_parse_addr(const char *text, struct config_addr *out)
{
    char host[64];
    const char *colon, *hs, *he;
    long port;
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

    memset(out, 0, sizeof(*out));
    if (text[0] == '[') {
        hs = text + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return -1;
        colon = he + 1;
    } else {
        hs = text;
        colon = strrchr(text, ':');
        if (colon == NULL)
            return -1;
        he = colon;
    }
    if (he - hs <= 0 || (size_t)(he - hs) >= sizeof(host))
        return -1;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    if (text[0] != '[' && strchr(host, ':') != NULL)
        return -1;    /* an IPv6 address needs brackets: [::1]:993 */
    if (config_parse_long(colon + 1, 1, 65535, &port) < 0)
        return -1;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
    } else {
        return -1;
    }
    snprintf(out->text, sizeof(out->text), "%s", text);
    return 0;
}

/* A [listen] value: "" (off) or a comma-separated list of addresses. */
static int
set_listen(struct config_parse *cp, const char *v, void *field, size_t size)
{
    struct config_listener *l = field;
    char buf[512], *save = NULL, *tok;

    l->naddrs = 0;
    if (strlen(v) >= sizeof(buf)) {
        config_fail(cp, "value too long");
        return -1;
    }
    strcpy(buf, v);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*tok))
            tok++;
        for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);)
            *--e = '\0';
        if (*tok == '\0')
            continue;
        if (l->naddrs == CONFIG_MAX_ADDRS) {
            config_fail(cp, "at most %d addresses per listener", CONFIG_MAX_ADDRS);
            return -1;
        }
        if (config_parse_addr(tok, &l->addrs[l->naddrs]) < 0) {
            config_fail(cp, "expected a numeric address such as 127.0.0.1:993 or [::1]:993, "
                            "got \"%s\"", tok);
            return -1;
        }
        l->naddrs++;
    }
    return 0;
}

static int
set_master_password_file(struct config_parse *cp, const char *v, void *field, size_t size)
{
    return set_path(cp, v, cp->master_password_file, sizeof(cp->master_password_file));
}

/* [wechat] appid: WeChat's AppID ("wx" and 16 hex digits), or "" for off. */
static int
set_wechat_appid(struct config_parse *cp, const char *v, void *field, size_t size)
{
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-') {
            config_fail(cp, "expected an AppID of letters and digits (such as "
                            "wx0123456789abcdef), got \"%s\"", v);
            return -1;
        }
    }
    return set_string(cp, v, field, size);
}

/* Something sent to WeChat as it is: no spaces, no control characters. */
static int
set_wechat_token_text(struct config_parse *cp, const char *v, void *field, size_t size)
{
    for (const char *p = v; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '"' || *p == '\\') {
            config_fail(cp, "the value holds a space, quote, backslash or control character");
            return -1;
        }
    }
    return set_string(cp, v, field, size);
}

static int
set_wechat_secret_file(struct config_parse *cp, const char *v, void *field, size_t size)
{
    return set_path(cp, v, cp->wechat_secret_file, sizeof(cp->wechat_secret_file));
}

/* [wechat] api_base: an http:// or https:// URL of a host, no path. */
static int
set_wechat_api_base(struct config_parse *cp, const char *v, void *field, size_t size)
{
    size_t n = strlen(v), skip;
    const char *host;

    if (strncasecmp(v, "https://", 8) == 0)
        skip = 8;
    else if (strncasecmp(v, "http://", 7) == 0)
        skip = 7;
    else {
        config_fail(cp, "expected an https:// (or http://) URL, got \"%s\"", v);
        return -1;
    }
    host = v + skip;
    while (n > skip && v[n - 1] == '/')
        n--;    /* a trailing slash is dropped: paths are appended */
    if (n == skip || *host == '/') {
        config_fail(cp, "the api_base URL names no host");
        return -1;
    }
    for (const char *p = v; p < v + n; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '?' || *p == '#' || *p == '@') {
            config_fail(cp, "the api_base URL holds a space, control character, '?', '#' "
                            "or '@'");
            return -1;
        }
    }
    if (n >= size) {
        config_fail(cp, "value too long (at most %zu bytes)", size - 1);
        return -1;
    }
    memcpy(field, v, n);
    ((char *)field)[n] = '\0';
    return 0;
}

static int
set_wechat_qr(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (!strcasecmp(v, "wxacode"))
        *(int *)field = CONFIG_WECHAT_QR_WXACODE;
    else if (!strcasecmp(v, "link"))
        *(int *)field = CONFIG_WECHAT_QR_LINK;
    else {
        config_fail(cp, "expected wxacode or link, got \"%s\"", v);
        return -1;
    }
    return 0;
}

/* A mini-program page: "pages/confirm/confirm", no leading '/', no query. */
static int
set_wechat_page(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (*v == '\0' || *v == '/') {
        config_fail(cp, "expected a page path such as pages/confirm/confirm (no leading /), "
                        "got \"%s\"", v);
        return -1;
    }
    for (const char *p = v; *p; p++) {
        if (!isalnum((unsigned char)*p) && strchr("/_-.", *p) == NULL) {
            config_fail(cp, "the page may hold letters, digits, '/', '_', '-' and '.' "
                            "only (parameters go in the scene), got \"%s\"", v);
            return -1;
        }
    }
    return set_string(cp, v, field, size);
}

static int
set_wechat_env_version(struct config_parse *cp, const char *v, void *field, size_t size)
{
    if (strcmp(v, "release") != 0 && strcmp(v, "trial") != 0 && strcmp(v, "develop") != 0) {
        config_fail(cp, "expected release, trial or develop, got \"%s\"", v);
        return -1;
    }
    return set_string(cp, v, field, size);
}

/*
 * [wechat] template_keys: the subscribe template's field names for the
 * mailbox, the browser's address and the time, in that order; "-" leaves
 * one out.  A name is a WeChat field type and a number ("thing1",
 * "character_string2", "time3").  No field for the number to match: the
 * message must not give it away.
 */
static int
set_wechat_template_keys(struct config_parse *cp, const char *v, void *field, size_t size)
{
    char buf[256], *save = NULL, *tok;
    int n = 0;

    if (strlen(v) >= sizeof(buf) || strlen(v) >= size) {
        config_fail(cp, "value too long");
        return -1;
    }
    strcpy(buf, v);
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const char *p = tok;

        while (isspace((unsigned char)*p))
            p++;
        n++;
        if (p[0] == '-' && (p[1] == '\0' || isspace((unsigned char)p[1])))
            continue;
        if (!islower((unsigned char)*p))
            goto bad;
        while (islower((unsigned char)*p) || *p == '_')
            p++;
        if (!isdigit((unsigned char)*p))
            goto bad;
        while (isdigit((unsigned char)*p))
            p++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            goto bad;
    }
    if (n != 3)
        goto bad;
    /* Stored without spaces: "thing1,-,time3". */
    {
        char *o = field;
        for (const char *p = v; *p; p++)
            if (!isspace((unsigned char)*p))
                *o++ = *p;
        *o = '\0';
    }
    return 0;
bad:
    config_fail(cp, "expected three template fields (mailbox, address, time) such "
                    "as thing1,character_string2,time3, \"-\" for none, got \"%s\"",
                v);
    return -1;
}

/* [wechat] timeout: a duration from 100ms to 2m (the browser waits on it). */
static int
set_wechat_timeout(struct config_parse *cp, const char *v, void *field, size_t size)
{
    uint64_t ms;

    if (config_parse_duration(v, &ms) < 0 || ms < 100 || ms > 120000) {
        config_fail(cp, "expected a duration from 100ms to 2m such as 5s, got \"%s\"", v);
        return -1;
    }
    *(uint64_t *)field = ms;
    return 0;
}

/* [wechat] scene_ttl: how long a QR scene lives, 5s to 30m. */
static int
set_wechat_scene_ttl(struct config_parse *cp, const char *v, void *field, size_t size)
{
    uint64_t ms;

    (void)size;
    if (config_parse_duration(v, &ms) < 0 || ms < 5000 || ms > 1800000) {
        config_fail(cp, "expected a duration from 5s to 30m such as 5m, got \"%s\"", v);
        return -1;
    }
    *(uint64_t *)field = ms;
    return 0;
}

#define F(member) offsetof(struct config, member), sizeof(((struct config *)0)->member)
#define L(i) offsetof(struct config, listeners) + (i) * sizeof(struct config_listener), 0


static const struct config_key config_keys[] = {
    {"server", "workers", set_workers, F(workers)},
    {"server", "state_dir", set_path, F(state_dir)},
    {"server", "user", set_string, F(user)},
    {"server", "allow_plaintext_auth", set_bool, F(allow_plaintext_auth)},
    {"server", "log_level", set_log_level, F(log_level)},
    {"server", "lowercase_usernames", set_bool, F(lowercase_usernames)},
    {"tls", "cert", set_path, F(tls_cert)},
    {"tls", "key", set_path, F(tls_key)},
    {"listen", "imaps", set_listen, L(CONFIG_L_IMAPS)},
    {"listen", "imap", set_listen, L(CONFIG_L_IMAP)},
    {"listen", "pop3s", set_listen, L(CONFIG_L_POP3S)},
    {"listen", "pop3", set_listen, L(CONFIG_L_POP3)},
    {"listen", "smtps", set_listen, L(CONFIG_L_SMTPS)},
    {"listen", "smtp", set_listen, L(CONFIG_L_SMTP)},
    {"listen", "https", set_listen, L(CONFIG_L_HTTPS)},
    {"listen", "http", set_listen, L(CONFIG_L_HTTP)},
    {"backend", "host", set_string, F(backend_host)},
    {"backend", "imap", set_port, offsetof(struct config, backend_port) + CONFIG_PROTO_IMAP * sizeof(int), 0},
    {"backend", "pop3", set_port, offsetof(struct config, backend_port) + CONFIG_PROTO_POP3 * sizeof(int), 0},
    {"backend", "smtp", set_port, offsetof(struct config, backend_port) + CONFIG_PROTO_SMTP * sizeof(int), 0},
    {"backend", "imap_tls", set_tls_mode, offsetof(struct config, backend_tls) + CONFIG_PROTO_IMAP * sizeof(enum config_tls_mode), 0},
    {"backend", "pop3_tls", set_tls_mode, offsetof(struct config, backend_tls) + CONFIG_PROTO_POP3 * sizeof(enum config_tls_mode), 0},
    {"backend", "smtp_tls", set_tls_mode, offsetof(struct config, backend_tls) + CONFIG_PROTO_SMTP * sizeof(enum config_tls_mode), 0},
    {"backend", "smtp_inbound", set_port, F(backend_smtp_inbound)},
    {"backend", "tls_verify", set_bool, F(backend_tls_verify)},
    {"backend", "ca", set_path, F(backend_ca)},
    {"backend", "master_user", set_string, F(master_user)},
    {"backend", "master_password", set_string, F(master_password)},
    {"backend", "master_password_file", set_master_password_file, 0, 0},
    {"backend", "forward_client_addr", set_forward, F(forward_client_addr)},
    {"smtp", "unauthenticated", set_unauth, F(smtp_unauth_relay)},
    {"limits", "preauth_timeout", set_duration, F(preauth_timeout_ms)},
    {"limits", "idle_timeout", set_duration, F(idle_timeout_ms)},
    {"limits", "backend_timeout", set_duration, F(backend_timeout_ms)},
    {"limits", "shutdown_grace", set_duration, F(shutdown_grace_ms)},
    {"limits", "max_line", set_size, F(max_line)},
    {"limits", "max_literal", set_size, F(max_literal)},
    {"limits", "max_preauth_commands", set_count, F(max_preauth_commands)},
    {"limits", "relay_buffer", set_size, F(relay_high_water)},
    {"auth", "argon2_memory_kib", set_u32, F(argon2_memory_kib)},
    {"auth", "argon2_passes", set_u32, F(argon2_passes)},
    {"auth", "argon2_lanes", set_u32, F(argon2_lanes)},
    {"auth", "kdf_threads", set_kdf_threads, F(kdf_threads)},
    {"auth", "cache_ttl", set_duration, F(cache_ttl_ms)},
    {"auth", "cache_entries", set_u32, F(cache_entries)},
    {"auth", "refusal_delay", set_duration, F(refusal_delay_ms)},
    {"auth", "fail_delay_after", set_count, F(fail_delay_after)},
    {"auth", "fail_lockout", set_count, F(fail_lockout)},
    {"auth", "fail_lockout_time", set_duration, F(fail_lockout_ms)},
    {"mail", "relay", set_relay, F(mail_relay)},
    {"mail", "from", set_mail_from, F(mail_from)},
    {"web", "device_days", set_count, F(device_days)},
    {"web", "email_factor", set_email_factor, F(email_factor)},
    {"web", "recovery_wait", set_duration, F(recovery_wait_ms)},
    {"wechat", "appid", set_wechat_appid, F(wechat_appid)},
    {"wechat", "secret", set_wechat_token_text, F(wechat_secret)},
    {"wechat", "secret_file", set_wechat_secret_file, 0, 0},
    {"wechat", "api_base", set_wechat_api_base, F(wechat_api_base)},
    {"wechat", "qr", set_wechat_qr, F(wechat_qr)},
    {"wechat", "page", set_wechat_page, F(wechat_page)},
    {"wechat", "env_version", set_wechat_env_version, F(wechat_env_version)},
    {"wechat", "template_id", set_wechat_token_text, F(wechat_template_id)},
    {"wechat", "template_keys", set_wechat_template_keys, F(wechat_template_keys)},
    {"wechat", "timeout", set_wechat_timeout, F(wechat_timeout_ms)},
    {"wechat", "scene_ttl", set_wechat_scene_ttl, F(wechat_scene_ttl_ms)},
    {"wechat", "ca", set_path, F(wechat_ca)},
};

#undef F
#undef L

/* The inih callback: one key = value line. Returns 0 on error (inih's way). */
static int
config_handler(void *user, const char *section, const char *name, const char *value)
{
    struct config_parse *cp = user;
    const struct config_key *k;

    if (cp->failed)
        return 1;    /* the first error is the one reported */
    if (name == NULL)
        return 1;    /* a bare section header */
    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
        k = &config_keys[i];
        if (strcmp(k->section, section) != 0 || strcmp(k->name, name) != 0)
            continue;
        if (k->set(cp, value, (char *)cp->cfg + k->offset, k->size) == 0)
            return 1;
        if (strstr(cp->msg, name) == NULL && strlen(name) + 3 < sizeof(cp->msg)) {
            /* "key: message", for a message that does not name its key. */
            size_t nl = strlen(name), ml = strlen(cp->msg);

            if (nl + 2 + ml >= sizeof(cp->msg))
                ml = sizeof(cp->msg) - nl - 3;
            memmove(cp->msg + nl + 2, cp->msg, ml);
            cp->msg[nl + 2 + ml] = '\0';
            memcpy(cp->msg, name, nl);
            memcpy(cp->msg + nl, ": ", 2);
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
        if (strcmp(config_keys[i].section, section) == 0) {
            config_fail(cp, "unknown key \"%s\" in [%s]", name, section);
            return 0;
        }
    }
    config_fail(cp, "unknown section [%s]", section);
    return 0;
}

void
config_defaults(struct config *cfg)
{
    static const struct {
        const char *key;
        enum config_proto proto;
        int tls;
    } listeners[CONFIG_L_COUNT] = {
        [CONFIG_L_IMAPS] = {"imaps", CONFIG_PROTO_IMAP, 1},
        [CONFIG_L_IMAP] = {"imap", CONFIG_PROTO_IMAP, 0},
        [CONFIG_L_POP3S] = {"pop3s", CONFIG_PROTO_POP3, 1},
        [CONFIG_L_POP3] = {"pop3", CONFIG_PROTO_POP3, 0},
        [CONFIG_L_SMTPS] = {"smtps", CONFIG_PROTO_SMTP, 1},
        [CONFIG_L_SMTP] = {"smtp", CONFIG_PROTO_SMTP, 0},
        [CONFIG_L_HTTPS] = {"https", CONFIG_PROTO_HTTP, 1},
        [CONFIG_L_HTTP] = {"http", CONFIG_PROTO_HTTP, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->workers = cores > 0 ? (int)(cores > 256 ? 256 : cores) : 1;
    snprintf(cfg->dir, sizeof(cfg->dir), ".");
    snprintf(cfg->state_dir, sizeof(cfg->state_dir), "./var");
    cfg->log_level = 1;    /* info */
    cfg->lowercase_usernames = 1;
    for (int i = 0; i < CONFIG_L_COUNT; i++) {
        cfg->listeners[i].key = listeners[i].key;
        cfg->listeners[i].proto = listeners[i].proto;
        cfg->listeners[i].implicit_tls = listeners[i].tls;
    }
    snprintf(cfg->backend_host, sizeof(cfg->backend_host), "127.0.0.1");
    cfg->backend_port[CONFIG_PROTO_IMAP] = 143;
    cfg->backend_port[CONFIG_PROTO_POP3] = 110;
    cfg->backend_port[CONFIG_PROTO_SMTP] = 587;
    cfg->backend_smtp_inbound = 25;
    cfg->backend_tls_verify = 1;
    cfg->forward_client_addr = CONFIG_FORWARD_COMMAND;
    cfg->smtp_unauth_relay = 1;
    cfg->preauth_timeout_ms = 60 * 1000;
    cfg->idle_timeout_ms = 30 * 60 * 1000;
    cfg->backend_timeout_ms = 10 * 1000;
    cfg->shutdown_grace_ms = 30 * 1000;
    cfg->max_line = 8192;
    cfg->max_literal = 8192;
    cfg->max_preauth_commands = 32;
    cfg->relay_high_water = 256 * 1024;
    /* OWASP ASVS 5.0 minimum for argon2id: 19 MiB, 2 passes, 1 lane. */
    cfg->argon2_memory_kib = 19456;
    cfg->argon2_passes = 2;
    cfg->argon2_lanes = 1;
    cfg->cache_ttl_ms = 10 * 60 * 1000;
    cfg->cache_entries = 10000;
    /* Dovecot's auth_failure_delay: refusals by the proxy take as long as
     * refusals by the backend, so timing does not tell them apart. */
    cfg->refusal_delay_ms = 2000;
    cfg->fail_delay_after = 3;
    cfg->fail_lockout = 20;
    cfg->fail_lockout_ms = 5 * 60 * 1000;
    cfg->device_days = 30;
    /* E-mail codes are off until [mail] relay names the MTA. */
    snprintf(cfg->mail_from, sizeof(cfg->mail_from), "mfagate@localhost");
    cfg->email_factor = CONFIG_EMAIL_SECOND_FACTOR;
    cfg->recovery_wait_ms = 24ULL * 3600 * 1000;
    /* WeChat is off until [wechat] appid is set. */
    snprintf(cfg->wechat_api_base, sizeof(cfg->wechat_api_base), "https://api.weixin.qq.com");
    cfg->wechat_qr = CONFIG_WECHAT_QR_WXACODE;
    snprintf(cfg->wechat_page, sizeof(cfg->wechat_page), "pages/confirm/confirm");
    snprintf(cfg->wechat_env_version, sizeof(cfg->wechat_env_version), "release");
    /* The mailbox and the address as character_string (32 characters of
     * letters, digits and symbols: an address fits, where thing allows 20). */
    snprintf(cfg->wechat_template_keys, sizeof(cfg->wechat_template_keys),
             "character_string1,character_string2,time3");
    cfg->wechat_timeout_ms = 5000;
    cfg->wechat_scene_ttl_ms = 300000;
}

/* Reads the first line of a secret file, without its newline. */
static int
config_read_secret(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL)
        return -1;
    if (fgets(out, (int)outlen, f) == NULL) {
        fclose(f);
        return -1;
    }
    fclose(f);
    n = strcspn(out, "\r\n");
    out[n] = '\0';
    return n > 0 ? 0 : -1;
}

int
config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct config_parse cp;
    const char *slash;
    int line, any = 0;

    config_defaults(cfg);
    memset(&cp, 0, sizeof(cp));
    cp.cfg = cfg;
    if (snprintf(cfg->path, sizeof(cfg->path), "%s", path) >= (int)sizeof(cfg->path)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(cfg->dir, sizeof(cfg->dir), ".");
    else if (slash == path)
        snprintf(cfg->dir, sizeof(cfg->dir), "/");
    else
        snprintf(cfg->dir, sizeof(cfg->dir), "%.*s", (int)(slash - path), path);
    /* The state_dir default is relative to the file, like every path. */
    config_resolve_path(cfg, "../var", cfg->state_dir, sizeof(cfg->state_dir));

    /* Indented lines are keys, not continuations; values may be empty. */
    ini_allow_multiline = false;
    line = ini_parse(path, config_handler, &cp);
    if (line == -1) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, line,
                 cp.failed ? cp.msg : "syntax error (expected [section] or key = value)");
        return -1;
    }
    if (cp.master_password_file[0] != '\0' &&
        config_read_secret(cp.master_password_file, cfg->master_password,
                           sizeof(cfg->master_password)) < 0) {
        snprintf(err, errlen, "%s: master_password_file %s: cannot read a password from it",
                 path, cp.master_password_file);
        return -1;
    }

    if (cp.wechat_secret_file[0] != '\0' &&
        config_read_secret(cp.wechat_secret_file, cfg->wechat_secret,
                           sizeof(cfg->wechat_secret)) < 0) {
        snprintf(err, errlen, "%s: [wechat] secret_file %s: cannot read a secret from it",
                 path, cp.wechat_secret_file);
        return -1;
    }

    /* Checks that span keys. */
    for (int i = 0; i < CONFIG_L_COUNT; i++) {
        if (cfg->listeners[i].naddrs == 0)
            continue;
        any = 1;
        if (cfg->listeners[i].proto != CONFIG_PROTO_HTTP || cfg->listeners[i].implicit_tls) {
            /* Every mail listener offers TLS (implicit or STARTTLS). */
            if (cfg->tls_cert[0] == '\0' || cfg->tls_key[0] == '\0') {
                snprintf(err, errlen, "%s: [tls] cert and key are needed by [listen] %s", path,
                         cfg->listeners[i].key);
                return -1;
            }
        }
    }
    if (!any) {
        snprintf(err, errlen, "%s: [listen] has no listener set", path);
        return -1;
    }
    if (cfg->master_user[0] == '\0' || cfg->master_password[0] == '\0') {
        snprintf(err, errlen, "%s: [backend] master_user and master_password "
                              "(or master_password_file) are required", path);
        return -1;
    }
    /* Whether the certificate and key load is checked where they are used
     * (serve, check-config), so that the admin commands, which need neither,
     * also run for users who cannot read the key. */
    if (cfg->wechat_appid[0] != '\0' && cfg->wechat_secret[0] == '\0') {
        snprintf(err, errlen, "%s: [wechat] appid needs secret (or secret_file)", path);
        return -1;
    }
    if (cfg->argon2_memory_kib < 8 * cfg->argon2_lanes) {
        snprintf(err, errlen, "%s: [auth] argon2_memory_kib must be at least 8 per lane", path);
        return -1;
    }
    return 0;
}
