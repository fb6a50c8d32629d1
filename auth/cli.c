/*
 * cli.c - the operator's subcommands (cli.h, DESIGN.md 8): app passwords,
 * TOTP enrollment, factors, the audit log.  Owns argument parsing and the
 * text and JSON output of those commands; every change it makes is written
 * through store.h and leaves an audit row.  Runs in its own process, with
 * its own store connection, while the server may be running.
 */
#include "auth/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/apppw.h"
#include "auth/auth.h"
#include "auth/keys.h"
#include "auth/store.h"
#include "auth/totp.h"
#include "core/util.h"

#define CLI_OK 0
#define CLI_ERROR 1
#define CLI_USAGE 2

#define CLI_MAX_EXPIRES_DAYS 3650
#define CLI_AUDIT_DEFAULT 100

/* What every subcommand works with. */
struct cli {
    const struct config *cfg;
    struct keys keys;
    struct store *st;
    int json;
};

static int
cli_usage(void)
{
    fputs("usage:\n"
          "  mfagate app-password create [-c FILE] USER --name NAME [--scope imap,pop3,smtp]"
          " [--expires-days N] [--json]\n"
          "  mfagate app-password list   [-c FILE] USER [--json]\n"
          "  mfagate app-password revoke [-c FILE] USER (ID | --all)\n"
          "  mfagate totp enroll [-c FILE] USER\n"
          "  mfagate factor list   [-c FILE] USER\n"
          "  mfagate factor remove [-c FILE] USER KIND   (KIND: totp, email, wechat)\n"
          "  mfagate audit [-c FILE] [USER] [--limit N]\n",
          stderr);
    return CLI_USAGE;
}

static int
cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("mfagate: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_ERROR;
}

static void
cli_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (t == 0 || gmtime_r(&tt, &tm) == NULL) {
        util_strlcpy(out, "-", outlen);
        return;
    }
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A JSON string literal: quotes, backslashes and controls escaped, invalid
 * UTF-8 replaced by U+FFFD. */
static void
cli_json_str(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', f);
    while (*p) {
        size_t n = account_utf8_len(p);

        if (n == 0) {
            fputs("\\ufffd", f);
            p++;
        } else if (*p == '"' || *p == '\\') {
            fputc('\\', f);
            fputc(*p++, f);
        } else if (*p < 0x20 || *p == 0x7f) {
            fprintf(f, "\\u%04x", *p++);
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
    fputc('"', f);
}

/* A JSON string, or null for an empty one. */
static void
cli_json_opt(FILE *f, const char *s)
{
    if (s == NULL || *s == '\0')
        fputs("null", f);
    else
        cli_json_str(f, s);
}

/* Text for a terminal: control bytes shown as '?'. */
static void
cli_text(FILE *f, const char *s)
{
    if (s == NULL || *s == '\0') {
        fputc('-', f);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        fputc(*p < 0x20 || *p == 0x7f ? '?' : *p, f);
}

static int
cli_user(const struct cli *c, const char *arg, char out[AUTH_USER_MAX])
{
    if (auth_normalize_user(c->cfg, arg, strlen(arg), out) != 0) {
        cli_error("bad user name");
        return -1;
    }
    return 0;
}

/* A non-negative decimal no larger than max; 0 or -1. */
static int
cli_number(const char *s, long long max, long long *out)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = v;
    return 0;
}

/* --- app-password ------------------------------------------------------- */

static int
cli_apppw_create(struct cli *c, int argc, char **argv)
{
    const char *user_arg = NULL, *name = NULL, *scope_arg = NULL;
    struct apppw_params params;
    char user[AUTH_USER_MAX], pw[APPPW_LEN + 1] = "", shown[APPPW_SHOWN_LEN + 1];
    char locator[APPPW_LOCATOR_LEN + 1], hash[APPPW_HASH_MAX], scope_text[32];
    unsigned scope = APPPW_SCOPE_ALL;
    long long days = 0;
    int64_t id = 0, now = util_wall_time(), expires = 0;
    int r = CLI_ERROR, g;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--scope") == 0 && i + 1 < argc) {
            scope_arg = argv[++i];
        } else if (strcmp(argv[i], "--expires-days") == 0 && i + 1 < argc) {
            if (cli_number(argv[++i], CLI_MAX_EXPIRES_DAYS, &days) != 0 || days == 0)
                return cli_error("--expires-days: a number of days from 1 to %d",
                                 CLI_MAX_EXPIRES_DAYS);
        } else if (strcmp(argv[i], "--json") == 0) {
            c->json = 1;
        } else if (argv[i][0] != '-' && user_arg == NULL) {
            user_arg = argv[i];
        } else {
            return cli_usage();
        }
    }
    if (user_arg == NULL || name == NULL)
        return cli_usage();
    if (cli_user(c, user_arg, user) != 0)
        return CLI_ERROR;
    if (account_apppw_name_ok(name) != 0)
        return cli_error("--name: 1 to %d bytes of printable UTF-8 text", ACCOUNT_NAME_MAX);
    if (scope_arg != NULL && apppw_scope_parse(scope_arg, &scope) != 0)
        return cli_error("--scope: a comma-separated list of imap, pop3, smtp");
    if (days > 0)
        expires = now + (int64_t)days * 86400;

    g = account_apppw_pick(c->st, &c->keys, user, pw, locator);
    if (g == STORE_CONFLICT) {
        cli_error("could not pick a password; too many app passwords for %s?", user);
        goto done;
    }
    if (g != STORE_OK) {
        cli_error("could not pick a password (no random bytes, or a database error)");
        goto done;
    }
    params.memory_kib = c->cfg->argon2_memory_kib;
    params.passes = c->cfg->argon2_passes;
    params.lanes = c->cfg->argon2_lanes;
    if (apppw_hash(&params, c->keys.pepper, pw, hash, sizeof(hash)) != 0) {
        cli_error("hashing failed (check argon2_* in the configuration)");
        goto done;
    }
    if (account_apppw_save(c->st, user, name, scope, locator, hash, now, expires, "cli", NULL,
                           &id) != STORE_OK) {
        cli_error("database error (see the log)");
        goto done;
    }
    apppw_scope_format(scope, scope_text, sizeof(scope_text));
    apppw_format(pw, shown);
    if (c->json) {
        printf("{\"id\":%lld,\"name\":", (long long)id);
        cli_json_str(stdout, name);
        printf(",\"scope\":\"%s\",\"password\":\"%s\"}\n", scope_text, shown);
    } else {
        char when[32];

        cli_time(expires, when, sizeof(when));
        printf("Created app password %lld for %s: name=\"", (long long)id, user);
        cli_text(stdout, name);
        printf("\" scope=%s expires=%s\n", scope_text, expires ? when : "never");
        printf("It is shown only this once. Use it instead of the account password in the "
               "mail client:\n%s\n",
               shown);
    }
    r = fflush(stdout) == 0 ? CLI_OK : CLI_ERROR;

done:
    OPENSSL_cleanse(pw, sizeof(pw));
    OPENSSL_cleanse(shown, sizeof(shown));
    OPENSSL_cleanse(hash, sizeof(hash));
    return r;
}

struct cli_list {
    const struct cli *c;
    int count;
};

static int
cli_apppw_list_row(void *arg, const struct store_apppw *a)
{
    struct cli_list *l = arg;
    char scope[32], created[32], used[32], expires[32];

    apppw_scope_format(a->scope, scope, sizeof(scope));
    cli_time(a->created, created, sizeof(created));
    cli_time(a->last_used, used, sizeof(used));
    cli_time(a->expires, expires, sizeof(expires));
    if (l->c->json) {
        printf("%s{\"id\":%lld,\"name\":", l->count ? "," : "", (long long)a->id);
        cli_json_str(stdout, a->name);
        printf(",\"scope\":\"%s\",\"created\":\"%s\",\"expires\":", scope, created);
        cli_json_opt(stdout, a->expires ? expires : NULL);
        fputs(",\"last_used\":", stdout);
        cli_json_opt(stdout, a->last_used ? used : NULL);
        fputs(",\"last_addr\":", stdout);
        cli_json_opt(stdout, a->last_addr);
        fputs(",\"last_proto\":", stdout);
        cli_json_opt(stdout, a->last_proto);
        fputc('}', stdout);
    } else {
        printf("%-6lld %-15s %-20s %-20s %-20s ", (long long)a->id, scope, created, used,
               a->expires ? expires : "never");
        cli_text(stdout, a->last_addr);
        fputc(' ', stdout);
        cli_text(stdout, a->last_proto);
        fputc(' ', stdout);
        cli_text(stdout, a->name);
        fputc('\n', stdout);
    }
    l->count++;
    return 0;
}

static int
cli_apppw_list(struct cli *c, int argc, char **argv)
{
    const char *user_arg = NULL;
    char user[AUTH_USER_MAX];
    struct cli_list l = {c, 0};

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            c->json = 1;
        else if (argv[i][0] != '-' && user_arg == NULL)
            user_arg = argv[i];
        else
            return cli_usage();
    }
    if (user_arg == NULL)
        return cli_usage();
    if (cli_user(c, user_arg, user) != 0)
        return CLI_ERROR;
    if (c->json)
        fputc('[', stdout);
    else
        printf("%-6s %-15s %-20s %-20s %-20s %s\n", "ID", "SCOPE", "CREATED", "LAST_USED",
               "EXPIRES", "LAST_ADDR LAST_PROTO NAME");
    if (store_apppw_list(c->st, user, cli_apppw_list_row, &l) != STORE_OK) {
        if (c->json)
            fputs("]\n", stdout);
        return cli_error("database error (see the log)");
    }
    if (c->json)
        fputs("]\n", stdout);
    return fflush(stdout) == 0 ? CLI_OK : CLI_ERROR;
}

static int
cli_apppw_revoke(struct cli *c, int argc, char **argv)
{
    const char *user_arg = NULL, *id_arg = NULL;
    char user[AUTH_USER_MAX];
    int all = 0, removed = 0, r;
    long long id = 0;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (argv[i][0] != '-' && user_arg == NULL)
            user_arg = argv[i];
        else if (argv[i][0] != '-' && id_arg == NULL)
            id_arg = argv[i];
        else
            return cli_usage();
    }
    if (user_arg == NULL || all == (id_arg != NULL))
        return cli_usage();
    if (cli_user(c, user_arg, user) != 0)
        return CLI_ERROR;
    if (!all && cli_number(id_arg, INT64_MAX, &id) != 0)
        return cli_error("ID: a number (see app-password list)");
    r = account_apppw_revoke(c->st, user, all ? 0 : (int64_t)id, "cli", NULL,
                             util_wall_time(), &removed);
    if (r == STORE_NOTFOUND)
        return cli_error("%s has no app password %lld", user, id);
    if (r != STORE_OK)
        return cli_error("database error (see the log)");
    if (all)
        printf("Revoked %d app password%s of %s.\n", removed, removed == 1 ? "" : "s", user);
    else
        printf("Revoked app password %lld of %s.\n", id, user);
    return CLI_OK;
}

/* --- totp and factors --------------------------------------------------- */

static int
cli_totp_enroll(struct cli *c, int argc, char **argv)
{
    unsigned char secret[TOTP_SECRET_LEN];
    char user[AUTH_USER_MAX], b32[64], uri[TOTP_URI_MAX];
    int64_t id = 0;
    int r = CLI_ERROR, g;

    if (argc != 1 || argv[0][0] == '-')
        return cli_usage();
    if (cli_user(c, argv[0], user) != 0)
        return CLI_ERROR;
    if (account_totp_secret(user, secret, b32, uri) != 0)
        return cli_error("could not make a secret");
    /* The admin binds without a confirming code: no step is used yet. */
    g = account_totp_bind(c->st, &c->keys, user, secret, sizeof(secret), -1, "cli", NULL,
                          util_wall_time(), &id);
    if (g == STORE_CONFLICT) {
        cli_error("%s already has a TOTP factor; remove it first "
                  "(mfagate factor remove %s totp)",
                  user, user);
        goto done;
    }
    if (g != STORE_OK) {
        cli_error("database error (see the log)");
        goto done;
    }
    printf("Bound a TOTP factor (id %lld) for %s. From now on, mail clients need an app "
           "password.\n",
           (long long)id, user);
    printf("Secret (enter it by hand, or scan the URI below as a QR code):\n%s\n", b32);
    printf("%s\n", uri);
    r = fflush(stdout) == 0 ? CLI_OK : CLI_ERROR;

done:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(b32, sizeof(b32));
    OPENSSL_cleanse(uri, sizeof(uri));
    return r;
}

static int
cli_factor_row(void *arg, const struct store_factor *f)
{
    struct cli_list *l = arg;
    char created[32], used[32];

    cli_time(f->created, created, sizeof(created));
    cli_time(f->last_used, used, sizeof(used));
    printf("%-6lld %-7s %-20s %-20s ", (long long)f->id, f->kind, created, used);
    cli_text(stdout, f->label);
    fputc('\n', stdout);
    l->count++;
    return 0;
}

static int
cli_factor(struct cli *c, int argc, char **argv)
{
    char user[AUTH_USER_MAX];
    struct cli_list l = {c, 0};
    int removed = 0, left = 0, r;

    if (argc == 2 && strcmp(argv[0], "list") == 0) {
        if (cli_user(c, argv[1], user) != 0)
            return CLI_ERROR;
        printf("%-6s %-7s %-20s %-20s %s\n", "ID", "KIND", "CREATED", "LAST_USED", "LABEL");
        if (store_factor_list(c->st, user, cli_factor_row, &l) != STORE_OK)
            return cli_error("database error (see the log)");
        return CLI_OK;
    }
    if (argc != 3 || strcmp(argv[0], "remove") != 0)
        return cli_usage();
    if (cli_user(c, argv[1], user) != 0)
        return CLI_ERROR;
    if (strcmp(argv[2], "totp") != 0 && strcmp(argv[2], "email") != 0 &&
        strcmp(argv[2], "wechat") != 0)
        return cli_error("KIND: totp, email or wechat");
    r = account_factor_remove(c->st, user, argv[2], "cli", NULL, util_wall_time(), &removed,
                              &left, NULL);
    if (r == STORE_NOTFOUND)
        return cli_error("%s has no %s factor", user, argv[2]);
    if (r != STORE_OK)
        return cli_error("database error (see the log)");
    printf("Removed %d %s factor%s of %s.%s\n", removed, argv[2], removed == 1 ? "" : "s", user,
           left == 0 ? " No factor is left: the account password works for mail again." : "");
    return CLI_OK;
}

/* --- audit -------------------------------------------------------------- */

static int
cli_audit_row(void *arg, const struct store_audit_row *r)
{
    struct cli_list *l = arg;
    char when[32];

    cli_time(r->time, when, sizeof(when));
    printf("%s ", when);
    cli_text(stdout, r->user);
    printf(" %s ", r->event);
    cli_text(stdout, r->addr);
    fputc(' ', stdout);
    cli_text(stdout, r->detail);
    fputc('\n', stdout);
    l->count++;
    return 0;
}

static int
cli_audit(struct cli *c, int argc, char **argv)
{
    const char *user_arg = NULL;
    char user[AUTH_USER_MAX];
    struct cli_list l = {c, 0};
    long long limit = CLI_AUDIT_DEFAULT;

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            if (cli_number(argv[++i], 1000000, &limit) != 0 || limit == 0)
                return cli_error("--limit: a number from 1 to 1000000");
        } else if (argv[i][0] != '-' && user_arg == NULL) {
            user_arg = argv[i];
        } else {
            return cli_usage();
        }
    }
    if (user_arg != NULL && cli_user(c, user_arg, user) != 0)
        return CLI_ERROR;
    if (store_audit_list(c->st, user_arg ? user : NULL, (int)limit, cli_audit_row, &l) !=
        STORE_OK)
        return cli_error("database error (see the log)");
    return CLI_OK;
}

/* --- dispatch ----------------------------------------------------------- */

static int
cli_open(struct cli *c)
{
    char err[512], path[4096];

    if (keys_load_or_create(c->cfg->state_dir, &c->keys, err, sizeof(err)) != 0)
        return cli_error("%s", err);
    if (store_path(c->cfg->state_dir, path, sizeof(path)) != STORE_OK ||
        store_open(path, &c->st) != STORE_OK || store_migrate(c->st) != STORE_OK)
        return cli_error("cannot open the database in %s (see the log)", c->cfg->state_dir);
    return CLI_OK;
}

int
auth_cli_main(const struct config *cfg, int argc, char **argv)
{
    struct cli c;
    int r;

    if (argc < 1)
        return cli_usage();
    memset(&c, 0, sizeof(c));
    c.cfg = cfg;
    /* Check the shape before touching the state folder. */
    if (strcmp(argv[0], "app-password") == 0 || strcmp(argv[0], "totp") == 0 ||
        strcmp(argv[0], "factor") == 0) {
        if (argc < 2)
            return cli_usage();
    } else if (strcmp(argv[0], "audit") != 0) {
        return cli_usage();
    }
    if ((r = cli_open(&c)) != CLI_OK)
        goto done;
    if (strcmp(argv[0], "app-password") == 0) {
        if (strcmp(argv[1], "create") == 0)
            r = cli_apppw_create(&c, argc - 2, argv + 2);
        else if (strcmp(argv[1], "list") == 0)
            r = cli_apppw_list(&c, argc - 2, argv + 2);
        else if (strcmp(argv[1], "revoke") == 0)
            r = cli_apppw_revoke(&c, argc - 2, argv + 2);
        else
            r = cli_usage();
    } else if (strcmp(argv[0], "totp") == 0) {
        r = strcmp(argv[1], "enroll") == 0 ? cli_totp_enroll(&c, argc - 2, argv + 2)
                                           : cli_usage();
    } else if (strcmp(argv[0], "factor") == 0) {
        r = cli_factor(&c, argc - 1, argv + 1);
    } else {
        r = cli_audit(&c, argc - 1, argv + 1);
    }

done:
    store_close(c.st);
    keys_wipe(&c.keys);
    return r;
}
