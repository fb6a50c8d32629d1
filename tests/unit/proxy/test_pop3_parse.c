/*
 * test_pop3_parse.c - the pre-auth POP3 parser and the backend reply
 * classifier (proxy/pop3_parse.c).
 *
 * Most tests go through expect_parse() (or expect_reply()), which feeds an
 * input whole, then split at every possible point, then one byte at a time,
 * and checks that each way yields the same transcript of events as the one
 * expected. A transcript has one line per event:
 *   "OK <COMMAND> [arg] [arg2]"       (as many [..] as nargs)
 *   "ERR <COMMAND or NONE> <error>"   (POP3_INVALID)
 *   "BYE <error>"                     (POP3_ERROR)
 * and, for replies, "<KIND> [text]", "INVALID <error>", "BYE <error>".
 * The command driver acts like the session where the parser expects it to:
 * after AUTH with a mechanism and no initial response it calls
 * pop3_parser_expect_line (once for PLAIN, twice for LOGIN; once after AUTH
 * LOGIN with an initial response), unless a SASL line is "*".
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "proxy/pop3_parse.h"

#define TRANSCRIPT_MAX 65536

static const char *const command_names[] = {
    [POP3_CMD_NONE] = "NONE",
    [POP3_CMD_CAPA] = "CAPA",
    [POP3_CMD_STLS] = "STLS",
    [POP3_CMD_USER] = "USER",
    [POP3_CMD_PASS] = "PASS",
    [POP3_CMD_AUTH] = "AUTH",
    [POP3_CMD_APOP] = "APOP",
    [POP3_CMD_NOOP] = "NOOP",
    [POP3_CMD_QUIT] = "QUIT",
    [POP3_CMD_SASL_LINE] = "SASL",
};

static const char *const kind_names[] = {
    [POP3_REPLY_NONE] = "NONE",
    [POP3_REPLY_OK] = "+OK",
    [POP3_REPLY_ERR] = "-ERR",
    [POP3_REPLY_CONT] = "+",
    [POP3_REPLY_LINE] = "LINE",
};

/* The max_line of the parsers that the drivers make (0: the cap). */
static size_t test_max_line;

static void
append(char *out, const char *fmt, ...)
{
    size_t n = strlen(out);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out + n, TRANSCRIPT_MAX - n, fmt, ap);
    va_end(ap);
}

/* Appends " [arg]" with bytes outside printable ASCII as \xNN. */
static void
append_arg(char *out, const char *arg, size_t len)
{
    append(out, " [");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)arg[i];

        if (c >= 0x20 && c < 0x7f)
            append(out, "%c", c);
        else
            append(out, "\\x%02x", c);
    }
    append(out, "]");
}

/* Whether s (NUL-terminated at s[len]) lies inside the parser. */
static void
assert_inside(const struct pop3_parser *p, const char *s, size_t len)
{
    assert_non_null(s);
    assert_true(s >= p->arena && s + len < p->arena + sizeof(p->arena));
    assert_int_equal(s[len], '\0');
}

/* ---- the generic driver: one input, every split ---- */

/*
 * A parser under test: make a fresh one, feed it one chunk (returning 0 on
 * AGAIN, 1 on an event, 2 on a final error), free it.
 */
struct driver {
    void *(*make)(void);
    int (*feed)(void *p, const char *buf, size_t len, size_t *consumed, char *out);
    void (*drop)(void *p);
};

/* Feeds in[0..len) in the chunks that cuts[] (sorted, 0 < cut < len) delimits. */
static void
run(const struct driver *d, const char *in, size_t len, const size_t *cuts, size_t ncuts,
    char *out)
{
    void *p = d->make();
    size_t start = 0, pos, consumed;

    out[0] = '\0';
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;

        pos = start;
        for (;;) {
            int ev = d->feed(p, in + pos, end - pos, &consumed, out);

            assert_true(consumed <= end - pos);
            pos += consumed;
            if (ev == 0) {
                /* AGAIN uses everything it was given. */
                assert_int_equal(pos, end);
                break;
            }
            if (ev == 2) {
                /* Final: asked again, the same answer and nothing used. */
                static char again[TRANSCRIPT_MAX];

                again[0] = '\0';
                assert_int_equal(d->feed(p, in + pos, end - pos, &consumed, again), 2);
                assert_int_equal(consumed, 0);
                d->drop(p);
                return;
            }
            /* Each event uses at least one byte, so a session cannot spin. */
            assert_true(consumed >= 1);
        }
        start = end;
    }
    d->drop(p);
}

/* Checks that in gives expected whole, split at every point, and byte by byte. */
static void
expect_n(const struct driver *d, const char *in, size_t len, const char *expected)
{
    static char got[TRANSCRIPT_MAX];
    size_t *cuts = malloc((len + 1) * sizeof(*cuts));

    assert_non_null(cuts);
    run(d, in, len, NULL, 0, got);
    if (strcmp(got, expected) != 0)
        fail_msg("whole:\n%s\nexpected:\n%s", got, expected);
    for (size_t k = 1; k < len; k++) {
        cuts[0] = k;
        run(d, in, len, cuts, 1, got);
        if (strcmp(got, expected) != 0)
            fail_msg("split at %zu:\n%s\nexpected:\n%s", k, got, expected);
    }
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    run(d, in, len, cuts, len > 0 ? len - 1 : 0, got);
    if (strcmp(got, expected) != 0)
        fail_msg("byte at a time:\n%s\nexpected:\n%s", got, expected);
    free(cuts);
}

/* ---- commands ---- */

struct cmd_run {
    struct pop3_parser p;
    int sasl_lines; /* SASL lines the session still expects */
};

static void *
cmd_make(void)
{
    struct cmd_run *r = malloc(sizeof(*r));

    assert_non_null(r);
    pop3_parser_init(&r->p, test_max_line);
    r->sasl_lines = 0;
    return r;
}

static int
cmd_feed(void *v, const char *buf, size_t len, size_t *consumed, char *out)
{
    struct cmd_run *r = v;
    struct pop3_parser *p = &r->p;
    enum pop3_status st = pop3_parse(p, buf, len, consumed);

    switch (st) {
    case POP3_AGAIN:
        return 0;
    case POP3_ERROR:
        assert_non_null(p->error);
        append(out, "BYE %s\n", p->error);
        return 2;
    case POP3_INVALID:
        assert_non_null(p->error);
        assert_int_equal(p->nargs, 0);
        assert_int_equal(p->arglen, 0);
        assert_int_equal(p->arg2len, 0);
        assert_string_equal(p->arg, "");
        assert_string_equal(p->arg2, "");
        append(out, "ERR %s %s\n", command_names[p->cmd], p->error);
        r->sasl_lines = 0;
        return 1;
    case POP3_OK:
        assert_null(p->error);
        assert_true(p->nargs >= 0 && p->nargs <= 2);
        append(out, "OK %s", command_names[p->cmd]);
        if (p->nargs >= 1) {
            assert_inside(p, p->arg, p->arglen);
            append_arg(out, p->arg, p->arglen);
        } else {
            assert_string_equal(p->arg, "");
        }
        if (p->nargs >= 2) {
            assert_inside(p, p->arg2, p->arg2len);
            append_arg(out, p->arg2, p->arg2len);
        } else {
            assert_string_equal(p->arg2, "");
        }
        append(out, "\n");
        if (p->cmd == POP3_CMD_AUTH && p->nargs >= 1)
            r->sasl_lines = (strcasecmp(p->arg, "LOGIN") == 0 ? 2 : 1) - (p->nargs - 1);
        else if (p->cmd == POP3_CMD_SASL_LINE)
            r->sasl_lines = strcmp(p->arg, "*") == 0 ? 0 : r->sasl_lines - 1;
        if (r->sasl_lines > 0)
            pop3_parser_expect_line(p);
        return 1;
    }
    fail();
    return 2;
}

static void
cmd_drop(void *v)
{
    free(v);
}

static const struct driver cmd_driver = {cmd_make, cmd_feed, cmd_drop};

#define expect_parse(in, expected) expect_n(&cmd_driver, (in), sizeof(in) - 1, (expected))
#define expect_parse_n(in, len, expected) expect_n(&cmd_driver, (in), (len), (expected))

/* ---- replies ---- */

static void *
reply_make(void)
{
    struct pop3_reply *r = malloc(sizeof(*r));

    assert_non_null(r);
    pop3_reply_init(r, test_max_line);
    return r;
}

static int
reply_feed(void *v, const char *buf, size_t len, size_t *consumed, char *out)
{
    struct pop3_reply *r = v;
    enum pop3_status st = pop3_reply_parse(r, buf, len, consumed);

    switch (st) {
    case POP3_AGAIN:
        return 0;
    case POP3_ERROR:
        assert_non_null(r->error);
        append(out, "BYE %s\n", r->error);
        return 2;
    case POP3_INVALID:
        assert_non_null(r->error);
        append(out, "INVALID %s\n", r->error);
        return 1;
    case POP3_OK:
        assert_null(r->error);
        assert_true(r->text >= r->line && r->text + r->textlen < r->line + sizeof(r->line));
        assert_int_equal(r->text[r->textlen], '\0');
        append(out, "%s", kind_names[r->kind]);
        append_arg(out, r->text, r->textlen);
        append(out, "\n");
        return 1;
    }
    fail();
    return 2;
}

static const struct driver reply_driver = {reply_make, reply_feed, cmd_drop};

#define expect_reply(in, expected) expect_n(&reply_driver, (in), sizeof(in) - 1, (expected))

static int
setup_default_limits(void **state)
{
    test_max_line = 0;
    return 0;
}

static int
setup_small_limits(void **state)
{
    test_max_line = 40;
    return 0;
}

/* ---- the commands ---- */

static void
test_commands(void **state)
{
    expect_parse("CAPA\r\n", "OK CAPA\n");
    expect_parse("STLS\r\n", "OK STLS\n");
    expect_parse("USER alice\r\n", "OK USER [alice]\n");
    expect_parse("PASS secret\r\n", "OK PASS [secret]\n");
    expect_parse("AUTH\r\n", "OK AUTH\n");
    expect_parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                 "OK AUTH [PLAIN] [AGFsaWNlAHNlY3JldA==]\n");
    expect_parse("APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n",
                 "OK APOP [alice] [c4c9334bac560ecc979e58001b3e22fb]\n");
    expect_parse("NOOP\r\n", "OK NOOP\n");
    expect_parse("QUIT\r\n", "OK QUIT\n");
    /* Names are case-insensitive; arguments keep their case. */
    expect_parse("capa\r\nStLs\r\nuser Alice\r\npAsS SeCrEt\r\nauth plain\r\nAGFsaWNlAHNlY3JldA==\r\n"
                 "apop A B\r\nnoop\r\nquit\r\n",
                 "OK CAPA\nOK STLS\nOK USER [Alice]\nOK PASS [SeCrEt]\nOK AUTH [plain]\n"
                 "OK SASL [AGFsaWNlAHNlY3JldA==]\nOK APOP [A] [B]\nOK NOOP\nOK QUIT\n");
}

static void
test_results_and_consumed(void **state)
{
    struct pop3_parser p;
    size_t used;
    const char in[] = "USER alice\r\nPASS my secret\r\n";

    pop3_parser_init(&p, 0);
    assert_int_equal(p.max_line, POP3_LINE_CAP);
    /* Clients send USER and PASS in one packet: one command per call. */
    assert_int_equal(pop3_parse(&p, in, sizeof(in) - 1, &used), POP3_OK);
    assert_int_equal(used, strlen("USER alice\r\n"));
    assert_int_equal(p.cmd, POP3_CMD_USER);
    assert_int_equal(p.nargs, 1);
    assert_int_equal(p.arglen, 5);
    assert_string_equal(p.arg, "alice");
    assert_int_equal(p.arg2len, 0);
    assert_string_equal(p.arg2, "");
    assert_null(p.error);

    assert_int_equal(pop3_parse(&p, in + used, sizeof(in) - 1 - used, &used), POP3_OK);
    assert_int_equal(used, strlen("PASS my secret\r\n"));
    assert_int_equal(p.cmd, POP3_CMD_PASS);
    assert_string_equal(p.arg, "my secret");
    assert_int_equal(p.arglen, 9);

    /* INVALID consumes the whole bad line, and keeps which command it was. */
    assert_int_equal(pop3_parse(&p, "USER a b\r\nNOOP\r\n", 16, &used), POP3_INVALID);
    assert_int_equal(used, 10);
    assert_int_equal(p.cmd, POP3_CMD_USER);
    assert_string_equal(p.error, "Too many arguments");
    assert_int_equal(p.nargs, 0);
    assert_int_equal(pop3_parse(&p, "NOOP\r\n", 6, &used), POP3_OK);
    assert_int_equal(p.cmd, POP3_CMD_NOOP);
    assert_int_equal(p.nargs, 0);
    assert_string_equal(p.arg, "");

    /* Empty input: nothing to do; a partial line: all of it consumed. */
    assert_int_equal(pop3_parse(&p, "", 0, &used), POP3_AGAIN);
    assert_int_equal(used, 0);
    assert_int_equal(pop3_parse(&p, "QU", 2, &used), POP3_AGAIN);
    assert_int_equal(used, 2);
    assert_int_equal(pop3_parse(&p, "IT\r\nCAPA\r\n", 10, &used), POP3_OK);
    assert_int_equal(used, 4);
    assert_int_equal(p.cmd, POP3_CMD_QUIT);
}

static void
test_user_pass_pipelined(void **state)
{
    expect_parse("USER alice\r\nPASS secret\r\n", "OK USER [alice]\nOK PASS [secret]\n");
    expect_parse("CAPA\r\nUSER alice@example.com\r\nPASS pw\r\nQUIT\r\n",
                 "OK CAPA\nOK USER [alice@example.com]\nOK PASS [pw]\nOK QUIT\n");
    /* Errors in the middle do not disturb what follows. */
    expect_parse("FOO\r\nUSER\r\nUSER bob\r\n\r\nPASS x\r\n",
                 "ERR NONE Unknown command\nERR USER Missing argument\nOK USER [bob]\n"
                 "ERR NONE Empty command\nOK PASS [x]\n");
}

static void
test_pass_exact(void **state)
{
    /* The rest of the line after one SP, byte for byte. */
    expect_parse("PASS correct horse battery staple\r\n",
                 "OK PASS [correct horse battery staple]\n");
    expect_parse("PASS  lead and trail  \r\n", "OK PASS [ lead and trail  ]\n");
    expect_parse("PASS \r\n", "ERR PASS Missing argument\n");
    expect_parse("PASS  \r\n", "OK PASS [ ]\n");
    expect_parse("PASS\r\n", "ERR PASS Missing argument\n");
    /* 8-bit bytes, a tab, other control characters, quotes. */
    expect_parse("PASS p\xc3\xa4ss\xff\x80w\r\n", "OK PASS [p\\xc3\\xa4ss\\xff\\x80w]\n");
    expect_parse("PASS a\tb\x01\x7f\"{}\\\r\n", "OK PASS [a\\x09b\\x01\\x7f\"{}\\]\n");
    /* Not a NUL, nor a bare CR. */
    expect_parse("PASS a\0b\r\nNOOP\r\n", "ERR NONE NUL in line\nOK NOOP\n");
    expect_parse("PASS a\rb\r\nNOOP\r\n", "ERR NONE CR without LF\nOK NOOP\n");
    /* A bare LF ends it; the CR before an LF is no part of it. */
    expect_parse("PASS x y\nNOOP\r\n", "OK PASS [x y]\nOK NOOP\n");
    /* "PASSWORD" is no PASS. */
    expect_parse("PASSx y\r\n", "ERR NONE Unknown command\n");

    /* Direct: the password's bytes and length. */
    {
        struct pop3_parser p;
        size_t used;
        const char in[] = "PASS \xe5\xaf\x86 \xe7\xa0\x81 \r\n";

        pop3_parser_init(&p, 0);
        assert_int_equal(pop3_parse(&p, in, sizeof(in) - 1, &used), POP3_OK);
        assert_int_equal(p.arglen, 8);
        assert_memory_equal(p.arg, "\xe5\xaf\x86 \xe7\xa0\x81 ", 9);
    }
}

static void
test_auth(void **state)
{
    /* No argument: list the mechanisms (RFC 5034 section 4). */
    expect_parse("AUTH\r\nNOOP\r\n", "OK AUTH\nOK NOOP\n");
    expect_parse("AUTH \r\n", "OK AUTH\n");
    /* Without an initial response: one SASL line for PLAIN. */
    expect_parse("AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nNOOP\r\n",
                 "OK AUTH [PLAIN]\nOK SASL [AGFsaWNlAHNlY3JldA==]\nOK NOOP\n");
    /* With one, the next line is a command. */
    expect_parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nNOOP\r\n",
                 "OK AUTH [PLAIN] [AGFsaWNlAHNlY3JldA==]\nOK NOOP\n");
    /* "=" is the empty initial response: kept as is, decoded later. */
    expect_parse("AUTH PLAIN =\r\nNOOP\r\n", "OK AUTH [PLAIN] [=]\nOK NOOP\n");
    /* LOGIN: two lines, or one after the user as initial response. */
    expect_parse("AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
                 "OK AUTH [LOGIN]\nOK SASL [YWxpY2U=]\nOK SASL [c2VjcmV0]\nOK QUIT\n");
    expect_parse("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
                 "OK AUTH [LOGIN] [YWxpY2U=]\nOK SASL [c2VjcmV0]\nOK QUIT\n");
    /* "*" cancels; the next line is a command again. */
    expect_parse("AUTH PLAIN\r\n*\r\nQUIT\r\n", "OK AUTH [PLAIN]\nOK SASL [*]\nOK QUIT\n");
    /* A SASL line is raw: empty, command-like, CR and NUL inside are data. */
    expect_parse("AUTH PLAIN\r\n\r\n", "OK AUTH [PLAIN]\nOK SASL []\n");
    expect_parse("AUTH PLAIN\nQUIT\n", "OK AUTH [PLAIN]\nOK SASL [QUIT]\n");
    expect_parse("AUTH PLAIN\r\nab\rcd\r\r\n", "OK AUTH [PLAIN]\nOK SASL [ab\\x0dcd\\x0d]\n");
    expect_parse("AUTH PLAIN\r\nab\0cd \r\n", "OK AUTH [PLAIN]\nOK SASL [ab\\x00cd ]\n");
    /* Mechanism names and initial responses are checked. */
    expect_parse("AUTH PL@IN\r\n", "ERR AUTH Invalid mechanism name\n");
    expect_parse("AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", "ERR AUTH Invalid mechanism name\n");
    expect_parse("AUTH ABCDEFGHIJ-KLMNOP_RS\r\n", "OK AUTH [ABCDEFGHIJ-KLMNOP_RS]\n");
    /* Other mechanisms are syntax too; refusing them is the session's. */
    expect_parse("AUTH SCRAM-SHA-256\r\nbiws\r\n", "OK AUTH [SCRAM-SHA-256]\nOK SASL [biws]\n");
}

static void
test_auth_malformed(void **state)
{
    expect_parse("AUTH PLAIN AG!s\r\nNOOP\r\n", "ERR AUTH Invalid initial response\nOK NOOP\n");
    expect_parse("AUTH PLAIN = x\r\nNOOP\r\n", "ERR AUTH Too many arguments\nOK NOOP\n");
    expect_parse("AUTH PLAIN \"AGFs\"\r\n", "ERR AUTH Invalid initial response\n");
    /* Extra spaces between words are tolerated. */
    expect_parse("AUTH  PLAIN   =  \r\n", "OK AUTH [PLAIN] [=]\n");
}

static void
test_expect_line_direct(void **state)
{
    struct pop3_parser p;
    size_t used;

    pop3_parser_init(&p, 10);
    pop3_parser_expect_line(&p);
    /* max_line 10: ten bytes fit, CRLF not counted. */
    assert_int_equal(pop3_parse(&p, "0123456789\r\n", 12, &used), POP3_OK);
    assert_int_equal(used, 12);
    assert_int_equal(p.cmd, POP3_CMD_SASL_LINE);
    assert_int_equal(p.nargs, 1);
    assert_int_equal(p.arglen, 10);
    assert_string_equal(p.arg, "0123456789");
    /* One line only: the next is a command. */
    assert_int_equal(pop3_parse(&p, "NOOP\r\n", 6, &used), POP3_OK);
    assert_int_equal(p.cmd, POP3_CMD_NOOP);

    pop3_parser_expect_line(&p);
    assert_int_equal(pop3_parse(&p, "0123456789A\r\n", 13, &used), POP3_ERROR);
    assert_string_equal(p.error, "Line too long");
    assert_int_equal(used, 10);

    /* Ten bytes and a CR that turns out bare: eleven line bytes. */
    pop3_parser_init(&p, 10);
    pop3_parser_expect_line(&p);
    assert_int_equal(pop3_parse(&p, "0123456789\rx\r\n", 14, &used), POP3_ERROR);
}

static void
test_line_endings(void **state)
{
    expect_parse("CAPA\n", "OK CAPA\n");
    expect_parse("USER a\nPASS b\n", "OK USER [a]\nOK PASS [b]\n");
    expect_parse("CAPA\r\nNOOP\nQUIT\r\n", "OK CAPA\nOK NOOP\nOK QUIT\n");
    /* A bare CR inside a line is invalid, wherever it is; the line is skipped. */
    expect_parse("CAPA\rNOOP\r\nQUIT\r\n", "ERR NONE CR without LF\nOK QUIT\n");
    expect_parse("\rCAPA\r\nQUIT\r\n", "ERR NONE CR without LF\nOK QUIT\n");
    expect_parse("USER a\rb\r\nQUIT\r\n", "ERR NONE CR without LF\nOK QUIT\n");
    /* CR CR LF: the first CR is bare. */
    expect_parse("CAPA\r\r\nQUIT\r\n", "ERR NONE CR without LF\nOK QUIT\n");
    /* A lone CR at the end of the input waits for what follows. */
    expect_parse("CAPA\r", "");
}

static void
test_nul(void **state)
{
    expect_parse("CA\0PA\r\nNOOP\r\n", "ERR NONE NUL in line\nOK NOOP\n");
    expect_parse("\0\r\nNOOP\r\n", "ERR NONE NUL in line\nOK NOOP\n");
    expect_parse("USER al\0ice\r\nNOOP\r\n", "ERR NONE NUL in line\nOK NOOP\n");
    expect_parse("CAPA\0\n", "ERR NONE NUL in line\n");
}

static void
test_line_too_long(void **state)
{
    char in[400];

    /* With setup_small_limits: max_line 40, CRLF not counted. */
    memset(in, 0, sizeof(in));
    strcpy(in, "PASS ");
    memset(in + 5, 'p', 35);
    strcpy(in + 40, "\r\n");
    expect_parse_n(in, strlen(in), "OK PASS [ppppppppppppppppppppppppppppppppppp]\n");
    strcpy(in + 40, "\n");
    expect_parse_n(in, strlen(in), "OK PASS [ppppppppppppppppppppppppppppppppppp]\n");
    strcpy(in + 40, "p\r\n");
    expect_parse_n(in, strlen(in), "BYE Line too long\n");
    /* No LF at all. */
    memset(in + 5, 'p', 300);
    expect_parse_n(in, 305, "BYE Line too long\n");
    /* An invalid line too long is still too long. */
    memcpy(in, "FOO ", 4);
    expect_parse_n(in, 305, "BYE Line too long\n");
    /* CRs count when they are not the line's end. */
    memset(in, '\r', 200);
    expect_parse_n(in, 200, "BYE Line too long\n");
    /* Earlier good lines are reported first. */
    strcpy(in, "NOOP\r\n");
    memset(in + 6, 'x', 41);
    expect_parse_n(in, 47, "OK NOOP\nBYE Line too long\n");

    /* The ERROR is final; the byte that overflowed is not consumed. */
    {
        struct pop3_parser p;
        size_t used;

        pop3_parser_init(&p, 4);
        assert_int_equal(pop3_parse(&p, "CAPAX\r\n", 7, &used), POP3_ERROR);
        assert_int_equal(used, 4);
        assert_int_equal(pop3_parse(&p, "X\r\n", 3, &used), POP3_ERROR);
        assert_int_equal(used, 0);
        assert_int_equal(pop3_parse(&p, "CAPA\r\n", 6, &used), POP3_ERROR);
        pop3_parser_reset(&p);
        assert_int_equal(pop3_parse(&p, "CAPA\r\n", 6, &used), POP3_OK);
    }
}

static void
test_unknown_commands(void **state)
{
    expect_parse("FOO\r\n", "ERR NONE Unknown command\n");
    expect_parse("FOO bar baz\r\nNOOP\r\n", "ERR NONE Unknown command\nOK NOOP\n");
    expect_parse("CAPAX\r\n", "ERR NONE Unknown command\n");
    expect_parse("CAP\r\n", "ERR NONE Unknown command\n");
    expect_parse("\xc3\xa4\r\n", "ERR NONE Unknown command\n");
    expect_parse("UTF8\r\n", "ERR NONE Unknown command\n");
    /* TRANSACTION-state commands. */
    expect_parse("STAT\r\n", "ERR NONE Command not permitted before authentication\n");
    expect_parse("retr 1\r\nNOOP\r\n",
                 "ERR NONE Command not permitted before authentication\nOK NOOP\n");
    expect_parse("TOP 1 10\r\n", "ERR NONE Command not permitted before authentication\n");
    /* Empty lines and a leading SP. */
    expect_parse("\r\n", "ERR NONE Empty command\n");
    expect_parse("\n\nNOOP\n", "ERR NONE Empty command\nERR NONE Empty command\nOK NOOP\n");
    expect_parse(" CAPA\r\n", "ERR NONE Missing command\n");
    /* Only SP separates: a tab is part of the name. */
    expect_parse("USER\talice\r\n", "ERR NONE Unknown command\n");
}

static void
test_arity(void **state)
{
    expect_parse("USER\r\n", "ERR USER Missing argument\n");
    expect_parse("USER \r\n", "ERR USER Missing argument\n");
    expect_parse("USER a b\r\n", "ERR USER Too many arguments\n");
    expect_parse("USER a\x01\r\n", "ERR USER Syntax error\n");
    expect_parse("USER a\x7f\r\n", "ERR USER Syntax error\n");
    expect_parse("USER a\tb\r\n", "ERR USER Syntax error\n");
    expect_parse("CAPA x\r\n", "ERR CAPA Unexpected arguments\n");
    expect_parse("STLS x\r\n", "ERR STLS Unexpected arguments\n");
    expect_parse("NOOP x\r\n", "ERR NOOP Unexpected arguments\n");
    expect_parse("QUIT now\r\n", "ERR QUIT Unexpected arguments\n");
    expect_parse("APOP\r\n", "ERR APOP Missing arguments\n");
    expect_parse("APOP alice\r\n", "ERR APOP Missing arguments\n");
    expect_parse("APOP a b c\r\n", "ERR APOP Too many arguments\n");
    expect_parse("AUTH PLAIN = x\r\n", "ERR AUTH Too many arguments\n");
    /* Sloppy spacing is tolerated: extra SPs, trailing SPs. */
    expect_parse("CAPA \r\n", "OK CAPA\n");
    expect_parse("QUIT   \r\n", "OK QUIT\n");
    expect_parse("USER  alice  \r\n", "OK USER [alice]\n");
    expect_parse("APOP  a   b \r\n", "OK APOP [a] [b]\n");
    /* 8-bit names are fine. */
    expect_parse("USER j\xc3\xbcrgen\r\n", "OK USER [j\\xc3\\xbcrgen]\n");
}

static void
test_reset(void **state)
{
    struct pop3_parser p;
    size_t used;
    static const char secret[] = "hunter2secret";

    pop3_parser_init(&p, 0);
    assert_int_equal(pop3_parse(&p, "PASS hunter2secret\r\n", 20, &used), POP3_OK);
    assert_non_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    assert_int_equal(pop3_parse(&p, "STLS\r\nUSER inj", 14, &used), POP3_OK);
    assert_int_equal(p.cmd, POP3_CMD_STLS);
    assert_int_equal(used, 6);
    /* The next line wiped the password. */
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));

    /* A session that did not drop the rest at once: partial state. */
    assert_int_equal(pop3_parse(&p, "USER inj", 8, &used), POP3_AGAIN);
    pop3_parser_reset(&p);
    assert_int_equal(pop3_parse(&p, "ected\r\n", 7, &used), POP3_INVALID);
    assert_int_equal(p.cmd, POP3_CMD_NONE);
    assert_int_equal(pop3_parse(&p, "CAPA\r\n", 6, &used), POP3_OK);

    /* A pending CR and a bad line are forgotten. */
    assert_int_equal(pop3_parse(&p, "CAPA\r", 5, &used), POP3_AGAIN);
    pop3_parser_reset(&p);
    assert_int_equal(pop3_parse(&p, "x\r\nQUIT\r\n", 9, &used), POP3_INVALID);
    assert_string_equal(p.error, "Unknown command");
    assert_int_equal(pop3_parse(&p, "A\0", 2, &used), POP3_AGAIN);
    pop3_parser_reset(&p);
    assert_int_equal(pop3_parse(&p, "CAPA\r\n", 6, &used), POP3_OK);

    /* An expected SASL line is forgotten. */
    pop3_parser_expect_line(&p);
    pop3_parser_reset(&p);
    assert_int_equal(pop3_parse(&p, "NOOP\r\n", 6, &used), POP3_OK);
    assert_int_equal(p.cmd, POP3_CMD_NOOP);

    /* A partial password is wiped by the reset. */
    assert_int_equal(pop3_parse(&p, "PASS hunter2secret", 18, &used), POP3_AGAIN);
    assert_non_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    pop3_parser_reset(&p);
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    assert_int_equal(p.cmd, POP3_CMD_NONE);
    assert_int_equal(p.nargs, 0);
}

static void
test_arena_holds_the_limits(void **state)
{
    struct pop3_parser *p = malloc(sizeof(*p));
    char *in = malloc(POP3_LINE_CAP + 8);
    size_t used;

    assert_non_null(p);
    assert_non_null(in);
    pop3_parser_init(p, 1000000);
    assert_int_equal(p->max_line, POP3_LINE_CAP);
    memcpy(in, "PASS ", 5);
    memset(in + 5, 'p', POP3_LINE_CAP - 5);
    memcpy(in + POP3_LINE_CAP, "\r\n", 2);
    assert_int_equal(pop3_parse(p, in, POP3_LINE_CAP + 2, &used), POP3_OK);
    assert_int_equal(used, POP3_LINE_CAP + 2);
    assert_int_equal(p->arglen, POP3_LINE_CAP - 5);
    assert_int_equal(p->arg[p->arglen], '\0');

    /* A SASL line of the cap. */
    pop3_parser_expect_line(p);
    memset(in, 'A', POP3_LINE_CAP);
    assert_int_equal(pop3_parse(p, in, POP3_LINE_CAP + 2, &used), POP3_OK);
    assert_int_equal(p->arglen, POP3_LINE_CAP);
    assert_string_equal(p->arg2, "");
    /* One more is too long. */
    pop3_parser_expect_line(p);
    in[POP3_LINE_CAP] = 'A';
    assert_int_equal(pop3_parse(p, in, POP3_LINE_CAP + 2, &used), POP3_ERROR);
    free(in);
    free(p);
}

/* ---- the backend's replies ---- */

static void
test_reply_kinds(void **state)
{
    expect_reply("+OK Dovecot ready.\r\n", "+OK [Dovecot ready.]\n");
    expect_reply("+OK\r\n", "+OK []\n");
    expect_reply("+OK \r\n", "+OK []\n");
    expect_reply("-ERR [AUTH] Authentication failed.\r\n",
                 "-ERR [[AUTH] Authentication failed.]\n");
    expect_reply("-ERR\r\n", "-ERR []\n");
    expect_reply("+ \r\n", "+ []\n");
    expect_reply("+\r\n", "+ []\n");
    expect_reply("+ eHl6\r\n", "+ [eHl6]\n");
    /* Case-insensitive indicators. */
    expect_reply("+ok fine\r\n-err no\r\n", "+OK [fine]\n-ERR [no]\n");
    /* Anything else is a line of a multi-line answer, or malformed. */
    expect_reply("+OK\r\nTOP\r\nUSER\r\nSASL PLAIN\r\n..x\r\n.\r\n",
                 "+OK []\nLINE [TOP]\nLINE [USER]\nLINE [SASL PLAIN]\nLINE [..x]\nLINE [.]\n");
    expect_reply("+OKAY\r\n", "LINE [+OKAY]\n");
    expect_reply("-ERROR\r\n", "LINE [-ERROR]\n");
    expect_reply("+x\r\n", "LINE [+x]\n");
    expect_reply("\r\n", "LINE []\n");
    /* Bare LF; several replies in one buffer. */
    expect_reply("+OK a\n-ERR b\n+ c\n", "+OK [a]\n-ERR [b]\n+ [c]\n");
}

static void
test_reply_malformed(void **state)
{
    char in[300];

    expect_reply("+OK a\rb\r\n+OK c\r\n", "INVALID CR without LF\n+OK [c]\n");
    expect_reply("+OK a\0b\r\n+OK c\r\n", "INVALID NUL in line\n+OK [c]\n");
    /* With setup_small_limits: max_line 40. */
    memset(in, 'x', sizeof(in));
    memcpy(in, "+OK ", 4);
    memcpy(in + 40, "\r\n", 2);
    expect_n(&reply_driver, in, 42, "+OK [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]\n");
    /* Forty bytes and a CR: nothing yet, the CR may end the line. */
    expect_n(&reply_driver, in, 41, "");
    in[40] = 'x';
    expect_n(&reply_driver, in, 300, "BYE Reply line too long\n");

    {
        struct pop3_reply r;
        size_t used;

        pop3_reply_init(&r, 0);
        assert_int_equal(r.max_line, POP3_REPLY_LINE_CAP);
        pop3_reply_init(&r, 1000000);
        assert_int_equal(r.max_line, POP3_REPLY_LINE_CAP);
        pop3_reply_init(&r, 3);
        assert_int_equal(pop3_reply_parse(&r, "+OK\r\n", 5, &used), POP3_OK);
        assert_int_equal(used, 5);
        assert_int_equal(pop3_reply_parse(&r, "-ERR\r\n", 6, &used), POP3_ERROR);
        assert_int_equal(used, 3);
        assert_int_equal(pop3_reply_parse(&r, "+OK\r\n", 5, &used), POP3_ERROR);
        assert_int_equal(used, 0);
        pop3_reply_init(&r, 3);
        assert_int_equal(pop3_reply_parse(&r, "+OK\r\n", 5, &used), POP3_OK);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_commands, setup_default_limits),
        cmocka_unit_test_setup(test_results_and_consumed, setup_default_limits),
        cmocka_unit_test_setup(test_user_pass_pipelined, setup_default_limits),
        cmocka_unit_test_setup(test_pass_exact, setup_default_limits),
        cmocka_unit_test_setup(test_auth, setup_default_limits),
        cmocka_unit_test_setup(test_auth_malformed, setup_default_limits),
        cmocka_unit_test_setup(test_expect_line_direct, setup_default_limits),
        cmocka_unit_test_setup(test_line_endings, setup_default_limits),
        cmocka_unit_test_setup(test_nul, setup_default_limits),
        cmocka_unit_test_setup(test_line_too_long, setup_small_limits),
        cmocka_unit_test_setup(test_unknown_commands, setup_default_limits),
        cmocka_unit_test_setup(test_arity, setup_default_limits),
        cmocka_unit_test_setup(test_reset, setup_default_limits),
        cmocka_unit_test_setup(test_arena_holds_the_limits, setup_default_limits),
        cmocka_unit_test_setup(test_reply_kinds, setup_default_limits),
        cmocka_unit_test_setup(test_reply_malformed, setup_small_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
