/*
 * test_cli.c - the operator's subcommands (auth/cli.c, DESIGN.md 8): exit
 * codes, the password as the last line, the JSON object, list, revoke,
 * totp enroll (URI last, secret that opens from the store), factor list and
 * remove, audit rows for every change, usage errors.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/cli.h"
#include "auth/totp.h"
#include "auth_test_util.h"
#include "core/log.h"

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    char out[16384];
    char err[4096];
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static void
slurp(int fd, char *buf, size_t size)
{
    ssize_t n;
    size_t len = 0;

    lseek(fd, 0, SEEK_SET);
    while (len + 1 < size && (n = read(fd, buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

/* Runs one command line (space-separated words, no quoting) with stdout and
 * stderr captured into f->out and f->err; returns the exit code. */
static int
run(struct fx *f, const char *line)
{
    char copy[1024], *argv[32], *save = NULL, tmpl_o[PATH_MAX + 16], tmpl_e[PATH_MAX + 16];
    int argc = 0, r, so, se, fo, fe;

    snprintf(copy, sizeof(copy), "%s", line);
    for (char *w = strtok_r(copy, " ", &save); w && argc < 31; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    /* Words may hold spaces written as '~'. */
    for (int i = 0; i < argc; i++)
        for (char *c = argv[i]; *c; c++)
            if (*c == '~')
                *c = ' ';

    snprintf(tmpl_o, sizeof(tmpl_o), "%s/out-XXXXXX", f->dir);
    snprintf(tmpl_e, sizeof(tmpl_e), "%s/err-XXXXXX", f->dir);
    fo = mkstemp(tmpl_o);
    fe = mkstemp(tmpl_e);
    assert_true(fo >= 0 && fe >= 0);
    fflush(stdout);
    fflush(stderr);
    so = dup(1);
    se = dup(2);
    dup2(fo, 1);
    dup2(fe, 2);
    r = auth_cli_main(&f->cfg, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    slurp(fo, f->out, sizeof(f->out));
    slurp(fe, f->err, sizeof(f->err));
    close(fo);
    close(fe);
    unlink(tmpl_o);
    unlink(tmpl_e);
    return r;
}

/* The last line of f->out (without its newline) into line. */
static void
last_line(struct fx *f, char *line, size_t size)
{
    size_t len = strlen(f->out);
    const char *start;

    assert_true(len > 0);
    assert_int_equal(f->out[len - 1], '\n');
    len--;
    start = f->out + len;
    while (start > f->out && start[-1] != '\n')
        start--;
    assert_true((size_t)(f->out + len - start) < size);
    memcpy(line, start, (size_t)(f->out + len - start));
    line[f->out + len - start] = '\0';
}

static int
is_shown_password(const char *s)
{
    char pw[APPPW_LEN + 1];

    return strlen(s) == APPPW_SHOWN_LEN && s[4] == ' ' && s[9] == ' ' && s[14] == ' ' &&
           apppw_normalize(s, strlen(s), pw) == 0;
}

/* Does the shown password verify against the user's stored row? */
static int64_t
stored_id_of(struct fx *f, const char *user, const char *shown)
{
    struct keys k;
    struct store *st = tu_store(&f->cfg);
    struct store_apppw row;
    char pw[APPPW_LEN + 1], loc[APPPW_LOCATOR_LEN + 1], err[256];
    int64_t id = -1;

    assert_non_null(st);
    assert_int_equal(keys_load_or_create(f->dir, &k, err, sizeof(err)), 0);
    assert_int_equal(apppw_normalize(shown, strlen(shown), pw), 0);
    assert_int_equal(apppw_locator(k.locator, user, pw, loc), 0);
    if (store_apppw_find(st, user, loc, &row) == STORE_OK &&
        apppw_verify(k.pepper, pw, row.hash) == 0)
        id = row.id;
    store_close(st);
    keys_wipe(&k);
    return id;
}

static void
test_apppw_create_text(void **state)
{
    struct fx *f = *state;
    char line[128];
    int64_t id;

    assert_int_equal(run(f, "app-password create Alice --name Phone"), 0);
    last_line(f, line, sizeof(line));
    assert_true(is_shown_password(line));
    /* Stored under the normalized name, verifiable, never in plain text. */
    id = stored_id_of(f, "alice", line);
    assert_true(id > 0);
    assert_non_null(strstr(f->out, "scope=imap,pop3,smtp"));

    assert_int_equal(run(f, "app-password list alice"), 0);
    assert_non_null(strstr(f->out, "Phone"));
    assert_non_null(strstr(f->out, "imap,pop3,smtp"));
    assert_null(strstr(f->out, line));
}

static void
test_apppw_create_json(void **state)
{
    struct fx *f = *state;
    char pw[APPPW_SHOWN_LEN + 1];
    const char *p;

    assert_int_equal(run(f, "app-password create bob --name My~\"Mail\"\\app --scope smtp,imap "
                            "--expires-days 30 --json"),
                     0);
    /* One object, one line, escaped properly. */
    assert_int_equal(strncmp(f->out, "{\"id\":", 6), 0);
    assert_non_null(strstr(f->out, "\"name\":\"My \\\"Mail\\\"\\\\app\""));
    assert_non_null(strstr(f->out, "\"scope\":\"imap,smtp\""));
    p = strstr(f->out, "\"password\":\"");
    assert_non_null(p);
    memcpy(pw, p + 12, APPPW_SHOWN_LEN);
    pw[APPPW_SHOWN_LEN] = '\0';
    assert_true(is_shown_password(pw));
    assert_string_equal(p + 12 + APPPW_SHOWN_LEN, "\"}\n");
    assert_true(stored_id_of(f, "bob", pw) > 0);

    assert_int_equal(run(f, "app-password list bob --json"), 0);
    assert_int_equal(f->out[0], '[');
    assert_non_null(strstr(f->out, "\"scope\":\"imap,smtp\""));
    assert_non_null(strstr(f->out, "\"last_used\":null"));
    assert_null(strstr(f->out, "\"expires\":null")); /* it has one */
}

static void
test_apppw_revoke(void **state)
{
    struct fx *f = *state;
    char line[128], cmd[128];
    int64_t id;

    assert_int_equal(run(f, "app-password create carol --name A"), 0);
    last_line(f, line, sizeof(line));
    id = stored_id_of(f, "carol", line);
    assert_true(id > 0);
    assert_int_equal(run(f, "app-password create carol --name B"), 0);
    assert_int_equal(run(f, "app-password create carol --name C"), 0);

    /* Somebody else's id, or a missing one: an error. */
    snprintf(cmd, sizeof(cmd), "app-password revoke dave %lld", (long long)id);
    assert_int_equal(run(f, cmd), 1);
    assert_int_equal(run(f, "app-password revoke carol 999999"), 1);
    snprintf(cmd, sizeof(cmd), "app-password revoke carol %lld", (long long)id);
    assert_int_equal(run(f, cmd), 0);
    assert_int_equal(stored_id_of(f, "carol", line), -1);
    assert_int_equal(run(f, "app-password revoke carol --all"), 0);
    assert_non_null(strstr(f->out, "Revoked 2 app passwords"));
    assert_int_equal(run(f, "app-password list carol --json"), 0);
    assert_string_equal(f->out, "[]\n");

    assert_int_equal(run(f, "audit carol"), 0);
    assert_non_null(strstr(f->out, "apppw_create"));
    assert_non_null(strstr(f->out, "apppw_revoke"));
    assert_non_null(strstr(f->out, "all count=2"));
}

static void
test_totp_enroll_and_factors(void **state)
{
    struct fx *f = *state;
    char line[512], err[256];
    unsigned char from_uri[64], opened[64];
    const char *sec;
    size_t n, m;
    struct keys k;
    struct store *st;
    struct store_factor fa;

    assert_int_equal(run(f, "totp enroll erin@example.com"), 0);
    last_line(f, line, sizeof(line));
    assert_int_equal(strncmp(line, "otpauth://totp/mfagate:erin%40example.com?secret=", 49), 0);
    assert_non_null(strstr(line, "&issuer=mfagate&algorithm=SHA1&digits=6&period=30"));
    /* The base32 secret is on an earlier line, and the store holds it
     * sealed for this user. */
    sec = line + 49;
    char b32[64];
    snprintf(b32, sizeof(b32), "%.*s", (int)(strchr(sec, '&') - sec), sec);
    assert_non_null(strstr(f->out, b32));
    assert_int_equal(totp_base32_decode(b32, from_uri, sizeof(from_uri), &n), 0);
    assert_int_equal(n, TOTP_SECRET_LEN);
    st = tu_store(&f->cfg);
    assert_non_null(st);
    assert_int_equal(keys_load_or_create(f->dir, &k, err, sizeof(err)), 0);
    assert_int_equal(store_factor_get(st, "erin@example.com", "totp", &fa), STORE_OK);
    assert_memory_not_equal(fa.secret + 13, from_uri, n);
    assert_int_equal(totp_open(k.totp, "erin@example.com", fa.secret, fa.secret_len, opened,
                               sizeof(opened), &m),
                     0);
    assert_int_equal(m, n);
    assert_memory_equal(opened, from_uri, n);
    store_close(st);
    keys_wipe(&k);

    /* Bound once only. */
    assert_int_equal(run(f, "totp enroll erin@example.com"), 1);
    assert_non_null(strstr(f->err, "already"));

    assert_int_equal(run(f, "factor list erin@example.com"), 0);
    assert_non_null(strstr(f->out, "totp"));
    assert_int_equal(run(f, "factor remove erin@example.com sms"), 1);
    assert_int_equal(run(f, "factor remove erin@example.com wechat"), 1);
    assert_int_equal(run(f, "factor remove erin@example.com totp"), 0);
    assert_int_equal(run(f, "factor remove erin@example.com totp"), 1);
    assert_int_equal(run(f, "factor list erin@example.com"), 0);
    assert_null(strstr(f->out, "totp"));

    assert_int_equal(run(f, "audit erin@example.com"), 0);
    assert_non_null(strstr(f->out, "factor_bind"));
    assert_non_null(strstr(f->out, "factor_remove"));
    assert_int_equal(run(f, "audit"), 0);
    assert_non_null(strstr(f->out, "factor_bind"));
}

static void
test_unknown_user_lists_nothing_and_stays_unknown(void **state)
{
    struct fx *f = *state;
    struct store *st;
    int64_t id;

    assert_int_equal(run(f, "app-password list nobody --json"), 0);
    assert_string_equal(f->out, "[]\n");
    assert_int_equal(run(f, "factor list nobody"), 0);
    st = tu_store(&f->cfg);
    assert_int_equal(store_user_id(st, "nobody", &id), STORE_NOTFOUND);
    store_close(st);
}

static void
test_usage_and_errors(void **state)
{
    struct fx *f = *state;

    assert_int_equal(auth_cli_main(&f->cfg, 0, NULL), 2);
    assert_int_equal(run(f, "frobnicate"), 2);
    assert_int_equal(run(f, "app-password"), 2);
    assert_int_equal(run(f, "app-password create alice"), 2);           /* no --name */
    assert_int_equal(run(f, "app-password create --name x"), 2);        /* no user */
    assert_int_equal(run(f, "app-password create alice --name x --bogus"), 2);
    assert_int_equal(run(f, "app-password revoke alice"), 2);           /* neither */
    assert_int_equal(run(f, "app-password revoke alice 3 --all"), 2);   /* both */
    assert_int_equal(run(f, "totp enroll"), 2);
    assert_int_equal(run(f, "factor remove alice"), 2);
    assert_int_equal(run(f, "app-password create alice --name x --scope imap,web"), 1);
    assert_int_equal(run(f, "app-password create alice --name x --expires-days 0"), 1);
    assert_int_equal(run(f, "app-password create alice --name x --expires-days -3"), 1);
    assert_int_equal(run(f, "app-password create a*b --name x"), 1);
    assert_int_equal(run(f, "app-password revoke alice abc"), 1);
    assert_non_null(strstr(f->err, "ID"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_apppw_create_text),
        T(test_apppw_create_json),
        T(test_apppw_revoke),
        T(test_totp_enroll_and_factors),
        T(test_unknown_user_lists_nothing_and_stays_unknown),
        T(test_usage_and_errors),
    };
    log_init(LOG_WARN, 2);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
