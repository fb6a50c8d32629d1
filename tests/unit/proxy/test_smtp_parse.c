/*
 * test_smtp_parse.c - the pre-auth SMTP parser, the backend reply reader and
 * the EHLO keyword collector (proxy/smtp_parse.c).
 *
 * Most tests go through expect_parse() (or expect_reply()), which feeds an
 * input whole, then split at every possible point, then one byte at a time,
 * and checks that each way yields the same transcript of events as the one
 * expected. A transcript has one line per event:
 *   "OK <COMMAND> [arg] [arg2]"       (as many [..] as nargs; BDAT adds
 *                                      " size=N last=L")
 *   "ERR <COMMAND or NONE> <error>"   (SMTP_INVALID)
 *   "BYE <error>"                     (SMTP_ERROR)
 * and, for replies, "<code><'-' or ' '><lineno> [text]", "INVALID <error>",
 * "BYE <error>".
 * The command driver acts like the session where the parser expects it to:
 * after AUTH without an initial response it calls smtp_parser_expect_line
 * (once for PLAIN, twice for LOGIN; once after AUTH LOGIN with an initial
 * response), unless a SASL line is "*".
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

#include "proxy/smtp_parse.h"

#define TRANSCRIPT_MAX 65536

static const char *const command_names[] = {
    [SMTP_CMD_NONE] = "NONE",
    [SMTP_CMD_EHLO] = "EHLO",
    [SMTP_CMD_HELO] = "HELO",
    [SMTP_CMD_STARTTLS] = "STARTTLS",
    [SMTP_CMD_AUTH] = "AUTH",
    [SMTP_CMD_MAIL] = "MAIL",
    [SMTP_CMD_RCPT] = "RCPT",
    [SMTP_CMD_DATA] = "DATA",
    [SMTP_CMD_BDAT] = "BDAT",
    [SMTP_CMD_RSET] = "RSET",
    [SMTP_CMD_NOOP] = "NOOP",
    [SMTP_CMD_QUIT] = "QUIT",
    [SMTP_CMD_HELP] = "HELP",
    [SMTP_CMD_VRFY] = "VRFY",
    [SMTP_CMD_EXPN] = "EXPN",
    [SMTP_CMD_XCLIENT] = "XCLIENT",
    [SMTP_CMD_SASL_LINE] = "SASL",
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
assert_inside(const struct smtp_parser *p, const char *s, size_t len)
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
};

/* Feeds in[0..len) in the chunks that cuts[] (sorted, 0 < cut < len) delimits. */
static void
run(const struct driver *d, const char *in, size_t len, const size_t *cuts, size_t ncuts,
    char *out)
{
    static char again[TRANSCRIPT_MAX];
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
                again[0] = '\0';
                assert_int_equal(d->feed(p, in + pos, end - pos, &consumed, again), 2);
                assert_int_equal(consumed, 0);
                free(p);
                return;
            }
            /* Each event uses at least one byte, so a session cannot spin. */
            assert_true(consumed >= 1);
        }
        start = end;
    }
    free(p);
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
    struct smtp_parser p;
    int sasl_lines; /* SASL lines the session still expects */
};

static void *
cmd_make(void)
{
    struct cmd_run *r = malloc(sizeof(*r));

    assert_non_null(r);
    smtp_parser_init(&r->p, test_max_line);
    r->sasl_lines = 0;
    return r;
}

/* The raw line: inside the parser, ending in CRLF, NUL-terminated. */
static void
check_raw(const struct smtp_parser *p)
{
    assert_true(p->rawlen >= 2);
    assert_inside(p, p->raw, p->rawlen);
    assert_memory_equal(p->raw + p->rawlen - 2, "\r\n", 2);
}

static int
cmd_feed(void *v, const char *buf, size_t len, size_t *consumed, char *out)
{
    struct cmd_run *r = v;
    struct smtp_parser *p = &r->p;
    enum smtp_status st = smtp_parse(p, buf, len, consumed);

    switch (st) {
    case SMTP_AGAIN:
        return 0;
    case SMTP_ERROR:
        assert_non_null(p->error);
        append(out, "BYE %s\n", p->error);
        return 2;
    case SMTP_INVALID:
        assert_non_null(p->error);
        assert_int_equal(p->nargs, 0);
        assert_string_equal(p->arg, "");
        assert_string_equal(p->arg2, "");
        check_raw(p);
        append(out, "ERR %s %s\n", command_names[p->cmd], p->error);
        r->sasl_lines = 0;
        return 1;
    case SMTP_OK:
        assert_null(p->error);
        assert_true(p->nargs >= 0 && p->nargs <= 2);
        check_raw(p);
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
        if (p->cmd == SMTP_CMD_BDAT)
            append(out, " size=%llu last=%d", (unsigned long long)p->chunk_size,
                   p->chunk_last);
        append(out, "\n");
        if (p->cmd == SMTP_CMD_AUTH)
            r->sasl_lines = (strcasecmp(p->arg, "LOGIN") == 0 ? 2 : 1) - (p->nargs - 1);
        else if (p->cmd == SMTP_CMD_SASL_LINE)
            r->sasl_lines = strcmp(p->arg, "*") == 0 ? 0 : r->sasl_lines - 1;
        if (r->sasl_lines > 0)
            smtp_parser_expect_line(p);
        return 1;
    }
    fail();
    return 2;
}

static const struct driver cmd_driver = {cmd_make, cmd_feed};

#define expect_parse(in, expected) expect_n(&cmd_driver, (in), sizeof(in) - 1, (expected))
#define expect_parse_n(in, len, expected) expect_n(&cmd_driver, (in), (len), (expected))

/* ---- replies ---- */

static void *
reply_make(void)
{
    struct smtp_reply *r = malloc(sizeof(*r));

    assert_non_null(r);
    smtp_reply_init(r, test_max_line);
    return r;
}

static int
reply_feed(void *v, const char *buf, size_t len, size_t *consumed, char *out)
{
    struct smtp_reply *r = v;
    enum smtp_status st = smtp_reply_parse(r, buf, len, consumed);

    switch (st) {
    case SMTP_AGAIN:
        return 0;
    case SMTP_ERROR:
        assert_non_null(r->error);
        append(out, "BYE %s\n", r->error);
        return 2;
    case SMTP_INVALID:
        assert_non_null(r->error);
        append(out, "INVALID %s\n", r->error);
        return 1;
    case SMTP_OK:
        assert_null(r->error);
        assert_true(r->code >= 200 && r->code <= 559);
        assert_true(r->text >= r->line && r->text + r->textlen < r->line + sizeof(r->line));
        assert_int_equal(r->text[r->textlen], '\0');
        append(out, "%d%c%d", r->code, r->last ? ' ' : '-', r->lineno);
        append_arg(out, r->text, r->textlen);
        append(out, "\n");
        return 1;
    }
    fail();
    return 2;
}

static const struct driver reply_driver = {reply_make, reply_feed};

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
    expect_parse("EHLO client.example.org\r\n", "OK EHLO [client.example.org]\n");
    expect_parse("HELO [192.0.2.1]\r\n", "OK HELO [[192.0.2.1]]\n");
    expect_parse("STARTTLS\r\n", "OK STARTTLS\n");
    expect_parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
                 "OK AUTH [PLAIN] [AGFsaWNlAHNlY3JldA==]\n");
    expect_parse("MAIL FROM:<a@example.org>\r\n", "OK MAIL [a@example.org]\n");
    expect_parse("RCPT TO:<b@example.net>\r\n", "OK RCPT [b@example.net]\n");
    expect_parse("DATA\r\n", "OK DATA\n");
    expect_parse("BDAT 0 LAST\r\n", "OK BDAT [0] [LAST] size=0 last=1\n");
    expect_parse("RSET\r\n", "OK RSET\n");
    expect_parse("NOOP\r\n", "OK NOOP\n");
    expect_parse("QUIT\r\n", "OK QUIT\n");
    expect_parse("HELP\r\n", "OK HELP\n");
    expect_parse("VRFY postmaster\r\n", "OK VRFY [postmaster]\n");
    expect_parse("EXPN staff\r\n", "OK EXPN [staff]\n");
    expect_parse("XCLIENT ADDR=192.0.2.1 NAME=[UNAVAILABLE]\r\n",
                 "OK XCLIENT [ADDR=192.0.2.1 NAME=[UNAVAILABLE]]\n");
    /* Names are case-insensitive, and so is "FROM:"; arguments keep their case. */
    expect_parse("ehlo Client\r\nhelo X\r\nStartTls\r\nmail from:<A@B>\r\nrcpt to:<C@D>\r\n"
                 "data\r\nrset\r\nnoop\r\nquit\r\nhelp me\r\nvrfy U\r\nexpn L\r\nxclient A=1\r\n",
                 "OK EHLO [Client]\nOK HELO [X]\nOK STARTTLS\nOK MAIL [A@B]\nOK RCPT [C@D]\n"
                 "OK DATA\nOK RSET\nOK NOOP\nOK QUIT\nOK HELP [me]\nOK VRFY [U]\nOK EXPN [L]\n"
                 "OK XCLIENT [A=1]\n");
}

static void
test_results_and_consumed(void **state)
{
    struct smtp_parser p;
    size_t used;
    const char in[] = "EHLO x\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<c@d>\r\nDATA\r\n";
    size_t off = 0;

    smtp_parser_init(&p, 0);
    assert_int_equal(p.max_line, SMTP_LINE_CAP);
    /* PIPELINING: one command per call, each consuming its line only. */
    assert_int_equal(smtp_parse(&p, in, sizeof(in) - 1, &used), SMTP_OK);
    assert_int_equal(used, 8);
    assert_int_equal(p.cmd, SMTP_CMD_EHLO);
    assert_int_equal(p.nargs, 1);
    assert_string_equal(p.arg, "x");
    assert_int_equal(p.arglen, 1);
    assert_int_equal(p.rawlen, 8);
    assert_memory_equal(p.raw, "EHLO x\r\n", 8);
    off += used;
    assert_int_equal(smtp_parse(&p, in + off, sizeof(in) - 1 - off, &used), SMTP_OK);
    assert_int_equal(used, strlen("MAIL FROM:<a@b> SIZE=10\r\n"));
    assert_int_equal(p.cmd, SMTP_CMD_MAIL);
    assert_int_equal(p.nargs, 2);
    assert_string_equal(p.arg, "a@b");
    assert_string_equal(p.arg2, "SIZE=10");
    assert_int_equal(p.arg2len, 7);
    off += used;
    assert_int_equal(smtp_parse(&p, in + off, sizeof(in) - 1 - off, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_RCPT);
    assert_string_equal(p.arg, "c@d");
    off += used;
    assert_int_equal(smtp_parse(&p, in + off, sizeof(in) - 1 - off, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_DATA);
    assert_int_equal(p.nargs, 0);
    assert_string_equal(p.arg, "");
    off += used;
    assert_int_equal(off, sizeof(in) - 1);

    /* INVALID consumes the whole bad line and keeps which command it was. */
    assert_int_equal(smtp_parse(&p, "DATA now\r\nQUIT\r\n", 16, &used), SMTP_INVALID);
    assert_int_equal(used, 10);
    assert_int_equal(p.cmd, SMTP_CMD_DATA);
    assert_string_equal(p.error, "Unexpected arguments");
    assert_memory_equal(p.raw, "DATA now\r\n", 11);
    assert_int_equal(smtp_parse(&p, "FOO\r\n", 5, &used), SMTP_INVALID);
    assert_int_equal(p.cmd, SMTP_CMD_NONE);
    assert_string_equal(p.error, "Command not recognized");

    /* Empty input: nothing to do; a partial line: all of it consumed. */
    assert_int_equal(smtp_parse(&p, "", 0, &used), SMTP_AGAIN);
    assert_int_equal(used, 0);
    assert_int_equal(smtp_parse(&p, "QU", 2, &used), SMTP_AGAIN);
    assert_int_equal(used, 2);
    assert_int_equal(smtp_parse(&p, "IT\r\nRSET\r\n", 10, &used), SMTP_OK);
    assert_int_equal(used, 4);
    assert_int_equal(p.cmd, SMTP_CMD_QUIT);
    assert_memory_equal(p.raw, "QUIT\r\n", 7);
}

static void
test_pipelined(void **state)
{
    expect_parse("EHLO mx.example.org\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                 "RCPT TO:<c@example.net> NOTIFY=NEVER\r\nDATA\r\n",
                 "OK EHLO [mx.example.org]\nOK MAIL [a@example.org]\nOK RCPT [b@example.net]\n"
                 "OK RCPT [c@example.net] [NOTIFY=NEVER]\nOK DATA\n");
    /* Errors in the middle do not disturb what follows. */
    expect_parse("FOO\r\nMAIL TO:<x>\r\nRSET x\r\n\r\nNOOP\r\n",
                 "ERR NONE Command not recognized\nERR MAIL Syntax: MAIL FROM:<address>\n"
                 "ERR RSET Unexpected arguments\nERR NONE Empty command\nOK NOOP\n");
}

static void
test_ehlo_helo(void **state)
{
    expect_parse("EHLO  spaced.example  \r\n", "OK EHLO [spaced.example]\n");
    expect_parse("EHLO [IPv6:2001:db8::1]\r\n", "OK EHLO [[IPv6:2001:db8::1]]\n");
    /* Extra words are kept, as Postfix keeps them. */
    expect_parse("HELO a b\r\n", "OK HELO [a b]\n");
    expect_parse("EHLO b\xc3\xbc" "cher.example\r\n", "OK EHLO [b\\xc3\\xbccher.example]\n");
    expect_parse("EHLO\r\n", "ERR EHLO Syntax: EHLO hostname\n");
    expect_parse("EHLO   \r\n", "ERR EHLO Syntax: EHLO hostname\n");
    expect_parse("HELO\r\n", "ERR HELO Syntax: HELO hostname\n");
    expect_parse("EHLO a\tb\r\n", "ERR EHLO Invalid domain\n");
    expect_parse("EHLO a\x1b[0m\r\n", "ERR EHLO Invalid domain\n");
    expect_parse("EHLOx\r\n", "ERR NONE Command not recognized\n");
}

static void
test_mail(void **state)
{
    expect_parse("MAIL FROM:<>\r\n", "OK MAIL []\n");
    expect_parse("MAIL FROM:<> BODY=8BITMIME\r\n", "OK MAIL [] [BODY=8BITMIME]\n");
    expect_parse("MAIL FROM:<a@b.c> SIZE=12345 BODY=8BITMIME SMTPUTF8  \r\n",
                 "OK MAIL [a@b.c] [SIZE=12345 BODY=8BITMIME SMTPUTF8]\n");
    expect_parse("MAIL FROM:<@relay.example:a@b.c>\r\n", "OK MAIL [@relay.example:a@b.c]\n");
    expect_parse("MAIL FROM:<j\xc3\xbcrgen@b\xc3\xbc.example> SMTPUTF8\r\n",
                 "OK MAIL [j\\xc3\\xbcrgen@b\\xc3\\xbc.example] [SMTPUTF8]\n");
    /* Tolerated as by Postfix: a SP after "FROM:", no brackets, extra SPs. */
    expect_parse("MAIL FROM: <a@b>\r\n", "OK MAIL [a@b]\n");
    expect_parse("MAIL FROM:a@b SIZE=1\r\n", "OK MAIL [a@b] [SIZE=1]\n");
    expect_parse("MAIL  from:<a@b>\r\n", "OK MAIL [a@b]\n");
    /* Missing or malformed "FROM:" and paths. */
    expect_parse("MAIL\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL <a@b>\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL FROM <a@b>\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL TO:<a@b>\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL FROM:\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL FROM:<a@b\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL FROM:<a@b>x\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAIL FROM:<a\x01@b>\r\n", "ERR MAIL Syntax: MAIL FROM:<address>\n");
    expect_parse("MAILFROM:<a@b>\r\n", "ERR NONE Command not recognized\n");
}

static void
test_mail_raw_exact(void **state)
{
    struct smtp_parser p;
    size_t used;
    static const char line[] = "mAiL FrOm:<Alice@Example.ORG>  SIZE=100 \xc3\xa9 \r\n";
    static const char lf[] = "MAIL FROM:<> BODY=7BIT\n";

    smtp_parser_init(&p, 0);
    assert_int_equal(smtp_parse(&p, line, sizeof(line) - 1, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_MAIL);
    /* Byte for byte, case and spaces included. */
    assert_int_equal(p.rawlen, sizeof(line) - 1);
    assert_memory_equal(p.raw, line, sizeof(line));
    assert_string_equal(p.arg, "Alice@Example.ORG");
    assert_string_equal(p.arg2, "SIZE=100 \xc3\xa9");

    /* A bare LF's line is replayed with CRLF. */
    assert_int_equal(smtp_parse(&p, lf, sizeof(lf) - 1, &used), SMTP_OK);
    assert_int_equal(used, sizeof(lf) - 1);
    assert_int_equal(p.rawlen, sizeof(lf));
    assert_memory_equal(p.raw, "MAIL FROM:<> BODY=7BIT\r\n", sizeof(lf) + 1);
    assert_int_equal(p.arglen, 0);
    assert_string_equal(p.arg, "");
    assert_int_equal(p.nargs, 2);

    /* The raw line is kept when MAIL is invalid, too, split or not. */
    assert_int_equal(smtp_parse(&p, "MAIL ", 5, &used), SMTP_AGAIN);
    assert_int_equal(smtp_parse(&p, "TO:<x>\r\nQUIT\r\n", 14, &used), SMTP_INVALID);
    assert_int_equal(used, 8);
    assert_int_equal(p.cmd, SMTP_CMD_MAIL);
    assert_int_equal(p.rawlen, 13);
    assert_memory_equal(p.raw, "MAIL TO:<x>\r\n", 14);
}

static void
test_rcpt(void **state)
{
    expect_parse("RCPT TO:<Postmaster>\r\n", "OK RCPT [Postmaster]\n");
    expect_parse("RCPT TO:<a@b> NOTIFY=SUCCESS ORCPT=rfc822;a@b\r\n",
                 "OK RCPT [a@b] [NOTIFY=SUCCESS ORCPT=rfc822;a@b]\n");
    expect_parse("RCPT TO:<>\r\n", "ERR RCPT Syntax: RCPT TO:<address>\n");
    expect_parse("RCPT FROM:<a@b>\r\n", "ERR RCPT Syntax: RCPT TO:<address>\n");
    expect_parse("RCPT\r\n", "ERR RCPT Syntax: RCPT TO:<address>\n");
}

static void
test_auth(void **state)
{
    expect_parse("AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nQUIT\r\n",
                 "OK AUTH [PLAIN]\nOK SASL [AGFsaWNlAHNlY3JldA==]\nOK QUIT\n");
    expect_parse("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nQUIT\r\n",
                 "OK AUTH [PLAIN] [AGFsaWNlAHNlY3JldA==]\nOK QUIT\n");
    /* "=" is the empty initial response (RFC 4954): kept as is. */
    expect_parse("AUTH PLAIN =\r\nQUIT\r\n", "OK AUTH [PLAIN] [=]\nOK QUIT\n");
    expect_parse("auth login\r\nYWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
                 "OK AUTH [login]\nOK SASL [YWxpY2U=]\nOK SASL [c2VjcmV0]\nOK QUIT\n");
    expect_parse("AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\nQUIT\r\n",
                 "OK AUTH [LOGIN] [YWxpY2U=]\nOK SASL [c2VjcmV0]\nOK QUIT\n");
    /* "*" cancels; a SASL line is raw: empty, command-like, CR, NUL. */
    expect_parse("AUTH LOGIN\r\n*\r\nQUIT\r\n", "OK AUTH [LOGIN]\nOK SASL [*]\nOK QUIT\n");
    expect_parse("AUTH PLAIN\r\n\r\n", "OK AUTH [PLAIN]\nOK SASL []\n");
    expect_parse("AUTH PLAIN\nMAIL FROM:<>\n", "OK AUTH [PLAIN]\nOK SASL [MAIL FROM:<>]\n");
    expect_parse("AUTH PLAIN\r\na\rb\0c\r\n", "OK AUTH [PLAIN]\nOK SASL [a\\x0db\\x00c]\n");
    /* Malformed. */
    expect_parse("AUTH\r\n", "ERR AUTH Syntax: AUTH mechanism [initial-response]\n");
    expect_parse("AUTH \r\n", "ERR AUTH Syntax: AUTH mechanism [initial-response]\n");
    expect_parse("AUTH PLAIN = x\r\n", "ERR AUTH Too many arguments\n");
    expect_parse("AUTH PL@IN\r\n", "ERR AUTH Invalid mechanism name\n");
    expect_parse("AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", "ERR AUTH Invalid mechanism name\n");
    expect_parse("AUTH PLAIN AG!s\r\nQUIT\r\n", "ERR AUTH Invalid initial response\nOK QUIT\n");
    expect_parse("AUTH  PLAIN  =  \r\n", "OK AUTH [PLAIN] [=]\n");
}

static void
test_expect_line_direct(void **state)
{
    struct smtp_parser p;
    size_t used;

    smtp_parser_init(&p, 10);
    smtp_parser_expect_line(&p);
    assert_int_equal(smtp_parse(&p, "0123456789\r\n", 12, &used), SMTP_OK);
    assert_int_equal(used, 12);
    assert_int_equal(p.cmd, SMTP_CMD_SASL_LINE);
    assert_int_equal(p.nargs, 1);
    assert_int_equal(p.arglen, 10);
    assert_string_equal(p.arg, "0123456789");
    /* One line only: the next is a command. */
    assert_int_equal(smtp_parse(&p, "NOOP\r\n", 6, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_NOOP);

    smtp_parser_expect_line(&p);
    assert_int_equal(smtp_parse(&p, "0123456789A\r\n", 13, &used), SMTP_ERROR);
    assert_string_equal(p.error, "Line too long");
    assert_int_equal(used, 10);
}

static void
test_bdat(void **state)
{
    /* The chunk's bytes look like commands: they must not be parsed. */
    expect_parse("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
                 "OK BDAT [6] [LAST] size=6 last=1\nOK NOOP\n");
    expect_parse("BDAT 8\r\nRSET\r\n\r\nbdat 3 last\r\nx\nyNOOP\n",
                 "OK BDAT [8] size=8 last=0\nOK BDAT [3] [last] size=3 last=1\nOK NOOP\n");
    expect_parse("BDAT 0\r\nNOOP\r\n", "OK BDAT [0] size=0 last=0\nOK NOOP\n");
    expect_parse("BDAT 1234567890123456789\r\nxyz", "OK BDAT [1234567890123456789] size=1234567890123456789 last=0\n");
    /* A size that cannot be read: what follows cannot be told from commands. */
    expect_parse("BDAT\r\nNOOP\r\n", "BYE Bad BDAT chunk size\n");
    expect_parse("BDAT x\r\nNOOP\r\n", "BYE Bad BDAT chunk size\n");
    expect_parse("BDAT -1\r\nNOOP\r\n", "BYE Bad BDAT chunk size\n");
    expect_parse("BDAT 12345678901234567890\r\nNOOP\r\n", "BYE Bad BDAT chunk size\n");
    expect_parse("BDAT 5 FIRST\r\nNOOP\r\n", "BYE Bad BDAT end marker\n");
    expect_parse("BDAT 5 LAST x\r\nNOOP\r\n", "BYE Bad BDAT chunk size\n");
}

static void
test_no_arguments_allowed(void **state)
{
    expect_parse("STARTTLS x\r\n", "ERR STARTTLS Unexpected arguments\n");
    expect_parse("DATA x\r\n", "ERR DATA Unexpected arguments\n");
    expect_parse("RSET x\r\n", "ERR RSET Unexpected arguments\n");
    expect_parse("QUIT x\r\n", "ERR QUIT Unexpected arguments\n");
    expect_parse("STARTTLS   \r\n", "OK STARTTLS\n");
    /* Free text is allowed after NOOP and HELP, required after VRFY/EXPN/XCLIENT. */
    expect_parse("NOOP hello there\r\n", "OK NOOP [hello there]\n");
    expect_parse("HELP  MAIL \r\n", "OK HELP [MAIL]\n");
    expect_parse("VRFY\r\n", "ERR VRFY Missing argument\n");
    expect_parse("EXPN \r\n", "ERR EXPN Missing argument\n");
    expect_parse("XCLIENT\r\n", "ERR XCLIENT Missing argument\n");
}

static void
test_line_endings(void **state)
{
    expect_parse("NOOP\n", "OK NOOP\n");
    expect_parse("EHLO a\nMAIL FROM:<b>\n", "OK EHLO [a]\nOK MAIL [b]\n");
    /* A bare CR inside a line is invalid, wherever it is; the line is skipped. */
    expect_parse("NOOP\rQUIT\r\nRSET\r\n", "ERR NONE CR without LF\nOK RSET\n");
    expect_parse("MAIL FROM:<a\r>\r\nRSET\r\n", "ERR NONE CR without LF\nOK RSET\n");
    expect_parse("NOOP\r\r\nRSET\r\n", "ERR NONE CR without LF\nOK RSET\n");
    expect_parse("\r\r\n", "ERR NONE CR without LF\n");
    /* A lone CR at the end of the input waits for what follows. */
    expect_parse("NOOP\r", "");
}

static void
test_nul(void **state)
{
    expect_parse("NO\0OP\r\nRSET\r\n", "ERR NONE NUL in line\nOK RSET\n");
    expect_parse("MAIL FROM:<a\0@b>\r\nRSET\r\n", "ERR NONE NUL in line\nOK RSET\n");
    expect_parse("EHLO a\0\n", "ERR NONE NUL in line\n");
}

static void
test_line_too_long(void **state)
{
    char in[400];

    /* With setup_small_limits: max_line 40, CRLF not counted. */
    memset(in, 0, sizeof(in));
    strcpy(in, "NOOP ");
    memset(in + 5, 'x', 35);
    strcpy(in + 40, "\r\n");
    expect_parse_n(in, strlen(in), "OK NOOP [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]\n");
    strcpy(in + 40, "x\r\n");
    expect_parse_n(in, strlen(in), "BYE Line too long\n");
    memset(in + 5, 'x', 300);
    expect_parse_n(in, 305, "BYE Line too long\n");
    memcpy(in, "FOO ", 4);
    expect_parse_n(in, 305, "BYE Line too long\n");
    memset(in, '\r', 200);
    expect_parse_n(in, 200, "BYE Line too long\n");
    /* Earlier pipelined lines are reported first. */
    strcpy(in, "RSET\r\n");
    memset(in + 6, 'x', 41);
    expect_parse_n(in, 47, "OK RSET\nBYE Line too long\n");
    /* BDAT chunk bytes are no line: a long chunk is fine. */
    strcpy(in, "BDAT 100\r\n");
    memset(in + 10, 'x', 100);
    strcpy(in + 110, "QUIT\r\n");
    expect_parse_n(in, 116, "OK BDAT [100] size=100 last=0\nOK QUIT\n");

    {
        struct smtp_parser p;
        size_t used;

        smtp_parser_init(&p, 4);
        assert_int_equal(smtp_parse(&p, "QUITX\r\n", 7, &used), SMTP_ERROR);
        assert_int_equal(used, 4);
        assert_int_equal(smtp_parse(&p, "X\r\n", 3, &used), SMTP_ERROR);
        assert_int_equal(used, 0);
        smtp_parser_reset(&p);
        assert_int_equal(smtp_parse(&p, "QUIT\r\n", 6, &used), SMTP_OK);
    }
}

static void
test_unknown_commands(void **state)
{
    expect_parse("FOO\r\n", "ERR NONE Command not recognized\n");
    expect_parse("ETRN example.org\r\nNOOP\r\n", "ERR NONE Command not recognized\nOK NOOP\n");
    expect_parse("GET / HTTP/1.1\r\n", "ERR NONE Command not recognized\n");
    expect_parse("STARTTLSX\r\n", "ERR NONE Command not recognized\n");
    expect_parse("\r\n", "ERR NONE Empty command\n");
    expect_parse(" NOOP\r\n", "ERR NONE Missing command\n");
    expect_parse("NOOP\tx\r\n", "ERR NONE Command not recognized\n");
}

static void
test_reset(void **state)
{
    struct smtp_parser p;
    size_t used;
    static const char secret[] = "AGFsaWNlAHNlY3JldA==";

    smtp_parser_init(&p, 0);
    assert_int_equal(smtp_parse(&p, "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", 33, &used), SMTP_OK);
    assert_non_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    /* STARTTLS with a command injected behind it. */
    assert_int_equal(smtp_parse(&p, "STARTTLS\r\nMAIL FROM:<evil>", 26, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_STARTTLS);
    assert_int_equal(used, 10);
    /* The next line wiped the credentials. */
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));

    /* A session that did not drop the rest at once: partial state. */
    assert_int_equal(smtp_parse(&p, "MAIL FROM:<evil>", 16, &used), SMTP_AGAIN);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "EHLO x\r\n", 8, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_EHLO);
    assert_memory_equal(p.raw, "EHLO x\r\n", 9);

    /* A chunk being skipped is forgotten. */
    assert_int_equal(smtp_parse(&p, "BDAT 100\r\n", 10, &used), SMTP_OK);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "NOOP\r\n", 6, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_NOOP);

    /* A pending CR and a bad line are forgotten. */
    assert_int_equal(smtp_parse(&p, "NOOP\r", 5, &used), SMTP_AGAIN);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "x\r\n", 3, &used), SMTP_INVALID);
    assert_int_equal(smtp_parse(&p, "A\0", 2, &used), SMTP_AGAIN);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "RSET\r\n", 6, &used), SMTP_OK);

    /* An expected SASL line is forgotten. */
    smtp_parser_expect_line(&p);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "NOOP\r\n", 6, &used), SMTP_OK);
    assert_int_equal(p.cmd, SMTP_CMD_NOOP);

    /* An ERROR is forgotten. */
    assert_int_equal(smtp_parse(&p, "BDAT x\r\n", 8, &used), SMTP_ERROR);
    smtp_parser_reset(&p);
    assert_int_equal(smtp_parse(&p, "NOOP\r\n", 6, &used), SMTP_OK);

    /* A partial AUTH line is wiped by the reset. */
    assert_int_equal(smtp_parse(&p, "AUTH PLAIN AGFsaWNlAHNlY3JldA==", 31, &used), SMTP_AGAIN);
    smtp_parser_reset(&p);
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    assert_int_equal(p.cmd, SMTP_CMD_NONE);
    assert_int_equal(p.rawlen, 0);
}

static void
test_arena_holds_the_limits(void **state)
{
    struct smtp_parser *p = malloc(sizeof(*p));
    char *in = malloc(SMTP_LINE_CAP + 8);
    size_t used, half = (SMTP_LINE_CAP - 12) / 2;

    assert_non_null(p);
    assert_non_null(in);
    smtp_parser_init(p, 1000000);
    assert_int_equal(p->max_line, SMTP_LINE_CAP);
    /* A MAIL line of the cap, half path, half parameters. */
    memcpy(in, "MAIL FROM:<", 11);
    memset(in + 11, 'a', half);
    in[11 + half] = '>';
    in[12 + half] = ' ';
    memset(in + 13 + half, 'p', SMTP_LINE_CAP - 13 - half);
    memcpy(in + SMTP_LINE_CAP, "\r\n", 2);
    assert_int_equal(smtp_parse(p, in, SMTP_LINE_CAP + 2, &used), SMTP_OK);
    assert_int_equal(used, SMTP_LINE_CAP + 2);
    assert_int_equal(p->rawlen, SMTP_LINE_CAP + 2);
    assert_memory_equal(p->raw, in, SMTP_LINE_CAP + 2);
    assert_int_equal(p->arglen, half);
    assert_int_equal(p->arg2len, SMTP_LINE_CAP - 13 - half);
    assert_inside(p, p->arg2, p->arg2len);

    /* An AUTH line of the cap (RFC 4954: 12288). */
    memcpy(in, "AUTH PLAIN ", 11);
    memset(in + 11, 'A', SMTP_LINE_CAP - 11);
    assert_int_equal(smtp_parse(p, in, SMTP_LINE_CAP + 2, &used), SMTP_OK);
    assert_int_equal(p->arg2len, SMTP_LINE_CAP - 11);
    /* One byte more is too long. */
    in[SMTP_LINE_CAP] = 'A';
    assert_int_equal(smtp_parse(p, in, SMTP_LINE_CAP + 2, &used), SMTP_ERROR);
    free(in);
    free(p);
}

/* ---- the backend's replies ---- */

static void
test_reply_lines(void **state)
{
    expect_reply("220 mx.example.org ESMTP Postfix\r\n", "220 0 [mx.example.org ESMTP Postfix]\n");
    expect_reply("250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
                 "250-0 [mx.example.org]\n250-1 [PIPELINING]\n250-2 [SIZE 10240000]\n"
                 "250 3 [8BITMIME]\n");
    /* A SASL challenge, empty and not. */
    expect_reply("334 \r\n334 VXNlcm5hbWU6\r\n334\r\n", "334 0 []\n334 0 [VXNlcm5hbWU6]\n334 0 []\n");
    /* Replies one after another; a code alone; bare LF; "250-" with no text. */
    expect_reply("250 OK\r\n354 go\n250-\n250\n", "250 0 [OK]\n354 0 [go]\n250-0 []\n250 1 []\n");
    expect_reply("535 5.7.8 Error: authentication failed\r\n",
                 "535 0 [5.7.8 Error: authentication failed]\n");
    expect_reply("421 4.3.2 Service shutting down\r\n", "421 0 [4.3.2 Service shutting down]\n");
}

static void
test_reply_malformed(void **state)
{
    expect_reply("25\r\n250 ok\r\n", "INVALID Malformed reply code\n250 0 [ok]\n");
    expect_reply("abc\r\n", "INVALID Malformed reply code\n");
    expect_reply("250x\r\n", "INVALID Malformed reply\n");
    expect_reply("2500\r\n", "INVALID Malformed reply\n");
    expect_reply("\r\n", "INVALID Malformed reply code\n");
    expect_reply("199 x\r\n", "INVALID Malformed reply code\n");
    expect_reply("600 x\r\n", "INVALID Malformed reply code\n");
    expect_reply("260 x\r\n", "INVALID Malformed reply code\n");
    expect_reply("25a x\r\n", "INVALID Malformed reply code\n");
    expect_reply(" 250 x\r\n", "INVALID Malformed reply code\n");
    /* A continuation with another code; what follows starts a new reply. */
    expect_reply("250-a\r\n251 b\r\n252 c\r\n",
                 "250-0 [a]\nINVALID Inconsistent reply code\n252 0 [c]\n");
    expect_reply("250-a\r\n250 b\r\n251 c\r\n", "250-0 [a]\n250 1 [b]\n251 0 [c]\n");
    expect_reply("250 a\rb\r\n250 c\r\n", "INVALID CR without LF\n250 0 [c]\n");
    expect_reply("250 a\0b\r\n250 c\r\n", "INVALID NUL in line\n250 0 [c]\n");
}

static void
test_reply_limits(void **state)
{
    struct smtp_reply *r = malloc(sizeof(*r));
    char in[300];
    size_t used;

    assert_non_null(r);
    /* With setup_small_limits: max_line 40. */
    memset(in, 'x', sizeof(in));
    memcpy(in, "250 ", 4);
    memcpy(in + 40, "\r\n", 2);
    expect_n(&reply_driver, in, 42, "250 0 [xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx]\n");
    in[40] = 'x';
    expect_n(&reply_driver, in, 300, "BYE Reply line too long\n");

    smtp_reply_init(r, 0);
    assert_int_equal(r->max_line, SMTP_REPLY_LINE_CAP);
    smtp_reply_init(r, 1000000);
    assert_int_equal(r->max_line, SMTP_REPLY_LINE_CAP);
    /* SMTP_REPLY_MAX_LINES lines in one reply at most. */
    for (int i = 0; i < SMTP_REPLY_MAX_LINES - 1; i++) {
        assert_int_equal(smtp_reply_parse(r, "250-x\r\n", 7, &used), SMTP_OK);
        assert_int_equal(r->lineno, i);
    }
    assert_int_equal(smtp_reply_parse(r, "250 x\r\n", 7, &used), SMTP_OK);
    assert_int_equal(r->lineno, SMTP_REPLY_MAX_LINES - 1);
    assert_true(r->last);
    for (int i = 0; i < SMTP_REPLY_MAX_LINES - 1; i++)
        assert_int_equal(smtp_reply_parse(r, "250-x\r\n", 7, &used), SMTP_OK);
    assert_int_equal(smtp_reply_parse(r, "250-x\r\n", 7, &used), SMTP_ERROR);
    assert_string_equal(r->error, "Reply too long");
    assert_int_equal(smtp_reply_parse(r, "250 x\r\n", 7, &used), SMTP_ERROR);
    assert_int_equal(used, 0);
    free(r);
}

/* Feeds in to a fresh reply reader in chunks of step bytes, collecting EHLO keywords. */
static void
collect_ehlo(const char *in, size_t step, struct smtp_ehlo *e)
{
    struct smtp_reply r;
    size_t pos = 0, used, len = strlen(in);

    smtp_reply_init(&r, 0);
    smtp_ehlo_init(e);
    while (pos < len) {
        size_t end = pos + step < len ? pos + step : len;

        while (pos < end) {
            enum smtp_status st = smtp_reply_parse(&r, in + pos, end - pos, &used);

            pos += used;
            if (st == SMTP_OK)
                smtp_ehlo_add(e, &r);
            else
                assert_int_equal(st, SMTP_AGAIN);
        }
    }
}

static void
test_ehlo_keywords(void **state)
{
    static const char postfix[] =
        "250-mx.example.org\r\n"
        "250-pipelining\r\n"
        "250-SIZE 10240000\r\n"
        "250-VRFY\r\n"
        "250-ETRN\r\n"
        "250-StartTLS\r\n"
        "250-AUTH PLAIN login XOAUTH2\r\n"
        "250-AUTH=PLAIN LOGIN\r\n"
        "250-ENHANCEDSTATUSCODES\r\n"
        "250-8BITMIME\r\n"
        "250-DSN\r\n"
        "250-SMTPUTF8\r\n"
        "250-CHUNKING\r\n"
        "250 XCLIENT NAME ADDR PROTO HELO login destaddr\r\n";
    struct smtp_ehlo e;

    for (size_t step = 1; step <= sizeof(postfix); step++) {
        collect_ehlo(postfix, step, &e);
        assert_int_equal(e.ext, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_STARTTLS
                                    | SMTP_EXT_AUTH | SMTP_EXT_ENHANCEDSTATUSCODES
                                    | SMTP_EXT_8BITMIME | SMTP_EXT_DSN | SMTP_EXT_SMTPUTF8
                                    | SMTP_EXT_CHUNKING | SMTP_EXT_XCLIENT);
        assert_int_equal(e.auth, SMTP_AUTH_PLAIN | SMTP_AUTH_LOGIN | SMTP_AUTH_OTHER);
        assert_int_equal(e.xclient, SMTP_XCLIENT_NAME | SMTP_XCLIENT_ADDR | SMTP_XCLIENT_PROTO
                                        | SMTP_XCLIENT_HELO | SMTP_XCLIENT_LOGIN
                                        | SMTP_XCLIENT_DESTADDR);
        assert_true(e.size == 10240000);
    }

    /* The greeting line is no keyword, even when it looks like one. */
    collect_ehlo("250-PIPELINING\r\n250 SIZE\r\n", 1000, &e);
    assert_int_equal(e.ext, SMTP_EXT_SIZE);
    assert_true(e.size == 0);
    /* Other codes are no EHLO answer; HELO's one-line answer has nothing. */
    collect_ehlo("220-mx\r\n220-PIPELINING\r\n220 STARTTLS\r\n", 1000, &e);
    assert_int_equal(e.ext, 0);
    collect_ehlo("250 mx.example.org\r\n", 1000, &e);
    assert_int_equal(e.ext, 0);
    /* A keyword must match whole; SIZE values past 64 bits saturate. */
    collect_ehlo("250-mx\r\n250-PIPELININGX\r\n250-AUTHX PLAIN\r\n"
                 "250 SIZE 99999999999999999999999\r\n", 1000, &e);
    assert_int_equal(e.ext, SMTP_EXT_SIZE);
    assert_int_equal(e.auth, 0);
    assert_true(e.size == UINT64_MAX);
    collect_ehlo("250-mx\r\n250 SIZE 12x\r\n", 1000, &e);
    assert_true(e.size == 0);
    /* AUTH with no mechanism. */
    collect_ehlo("250-mx\r\n250 AUTH\r\n", 1000, &e);
    assert_int_equal(e.ext, SMTP_EXT_AUTH);
    assert_int_equal(e.auth, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_commands, setup_default_limits),
        cmocka_unit_test_setup(test_results_and_consumed, setup_default_limits),
        cmocka_unit_test_setup(test_pipelined, setup_default_limits),
        cmocka_unit_test_setup(test_ehlo_helo, setup_default_limits),
        cmocka_unit_test_setup(test_mail, setup_default_limits),
        cmocka_unit_test_setup(test_mail_raw_exact, setup_default_limits),
        cmocka_unit_test_setup(test_rcpt, setup_default_limits),
        cmocka_unit_test_setup(test_auth, setup_default_limits),
        cmocka_unit_test_setup(test_expect_line_direct, setup_default_limits),
        cmocka_unit_test_setup(test_bdat, setup_default_limits),
        cmocka_unit_test_setup(test_no_arguments_allowed, setup_default_limits),
        cmocka_unit_test_setup(test_line_endings, setup_default_limits),
        cmocka_unit_test_setup(test_nul, setup_default_limits),
        cmocka_unit_test_setup(test_line_too_long, setup_small_limits),
        cmocka_unit_test_setup(test_unknown_commands, setup_default_limits),
        cmocka_unit_test_setup(test_reset, setup_default_limits),
        cmocka_unit_test_setup(test_arena_holds_the_limits, setup_default_limits),
        cmocka_unit_test_setup(test_reply_lines, setup_default_limits),
        cmocka_unit_test_setup(test_reply_malformed, setup_default_limits),
        cmocka_unit_test_setup(test_reply_limits, setup_small_limits),
        cmocka_unit_test_setup(test_ehlo_keywords, setup_default_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
