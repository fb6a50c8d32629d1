/*
 * test_imap_parse.c - the pre-auth IMAP parser (proxy/imap_parse.c).
 *
 * Most tests go through expect_parse(), which feeds an input whole, then
 * split at every possible point, then one byte at a time, and checks that
 * each way yields the same transcript of events as the one expected. A
 * transcript has one line per event:
 *   "OK <tag> <COMMAND> [arg] [arg]"   (tag "-" for SASL lines)
 *   "CONTINUE"
 *   "BAD <tag or *> <error>"
 *   "BYE <error>"
 * The driver acts like the session where the parser expects it to: after
 * AUTHENTICATE without an initial response it calls imap_parser_expect_line
 * (once for PLAIN, twice for LOGIN), unless a SASL line is "*".
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

#include "proxy/imap_parse.h"

#define TRANSCRIPT_MAX 65536

static const char *const command_names[] = {
    [IMAP_CMD_NONE] = "NONE",
    [IMAP_CMD_CAPABILITY] = "CAPABILITY",
    [IMAP_CMD_NOOP] = "NOOP",
    [IMAP_CMD_LOGOUT] = "LOGOUT",
    [IMAP_CMD_STARTTLS] = "STARTTLS",
    [IMAP_CMD_ID] = "ID",
    [IMAP_CMD_LOGIN] = "LOGIN",
    [IMAP_CMD_AUTHENTICATE] = "AUTHENTICATE",
    [IMAP_CMD_SASL_LINE] = "SASL",
};

/* Limits of the parser used by expect_parse (0: the caps). */
static size_t test_max_line, test_max_literal;

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

/* Records one event, and checks what every result must satisfy. */
static void
record(struct imap_parser *p, enum imap_status st, char *out)
{
    switch (st) {
    case IMAP_OK:
        assert_true(p->nargs >= 0 && p->nargs <= IMAP_MAX_ARGS);
        append(out, "OK %s %s", p->cmd == IMAP_CMD_SASL_LINE ? "-" : p->tag,
               command_names[p->cmd]);
        for (int i = 0; i < p->nargs; i++) {
            /* Every argument is NUL-terminated inside the parser. */
            assert_int_equal(p->args[i][p->arglen[i]], '\0');
            assert_true(p->args[i] >= p->arena
                        && p->args[i] + p->arglen[i] < p->arena + sizeof(p->arena));
            append_arg(out, p->args[i], p->arglen[i]);
        }
        append(out, "\n");
        break;
    case IMAP_CONTINUE:
        append(out, "CONTINUE\n");
        break;
    case IMAP_INVALID:
        assert_non_null(p->error);
        assert_int_equal(p->nargs, 0);
        append(out, "BAD %s %s\n", p->tag[0] ? p->tag : "*", p->error);
        break;
    case IMAP_ERROR:
        assert_non_null(p->error);
        append(out, "BYE %s\n", p->error);
        break;
    case IMAP_AGAIN:
        break;
    }
}

/*
 * Feeds in[0..len) to a fresh parser in the chunks that cuts[] delimits
 * (sorted positions, 0 < cut < len), acting on each event like a session.
 */
static void
run(const char *in, size_t len, const size_t *cuts, size_t ncuts, char *out)
{
    static struct imap_parser parser;
    struct imap_parser *p = &parser;
    size_t start = 0, pos = 0, consumed;
    int sasl_lines = 0;

    imap_parser_init(p, test_max_line, test_max_literal);
    out[0] = '\0';
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;

        pos = start;
        for (;;) {
            enum imap_status st = imap_parse(p, in + pos, end - pos, &consumed);

            assert_true(consumed <= end - pos);
            pos += consumed;
            record(p, st, out);
            if (st == IMAP_AGAIN) {
                assert_int_equal(pos, end);
                break;
            }
            if (st == IMAP_ERROR) {
                /* Final: asked again, the same answer and nothing used. */
                assert_int_equal(imap_parse(p, in + pos, end - pos, &consumed), IMAP_ERROR);
                assert_int_equal(consumed, 0);
                return;
            }
            /* Each event uses at least one byte, so a session cannot spin. */
            assert_true(consumed >= 1);
            if (st == IMAP_OK && p->cmd == IMAP_CMD_AUTHENTICATE && p->nargs == 1)
                sasl_lines = strcasecmp(p->args[0], "LOGIN") == 0 ? 2 : 1;
            else if (st == IMAP_OK && p->cmd == IMAP_CMD_AUTHENTICATE)
                sasl_lines = strcasecmp(p->args[0], "LOGIN") == 0 ? 1 : 0;
            else if (st == IMAP_OK && p->cmd == IMAP_CMD_SASL_LINE)
                sasl_lines = (p->arglen[0] == 1 && p->args[0][0] == '*') ? 0 : sasl_lines - 1;
            if (st == IMAP_OK && sasl_lines > 0)
                imap_parser_expect_line(p);
        }
        start = end;
    }
}

/*
 * Checks that in (len bytes) gives the transcript expected whole, split at
 * every point, and one byte at a time.
 */
static void
expect_parse_n(const char *in, size_t len, const char *expected)
{
    static char got[TRANSCRIPT_MAX];
    static size_t cuts[4096];

    assert_true(len < sizeof(cuts) / sizeof(cuts[0]));
    run(in, len, NULL, 0, got);
    assert_string_equal(got, expected);
    for (size_t k = 1; k < len; k++) {
        cuts[0] = k;
        run(in, len, cuts, 1, got);
        if (strcmp(got, expected) != 0)
            fail_msg("split at %zu:\n%s\nexpected:\n%s", k, got, expected);
    }
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    run(in, len, cuts, len > 0 ? len - 1 : 0, got);
    if (strcmp(got, expected) != 0)
        fail_msg("byte at a time:\n%s\nexpected:\n%s", got, expected);
}

#define expect_parse(in, expected) expect_parse_n((in), sizeof(in) - 1, (expected))

static int
setup_default_limits(void **state)
{
    test_max_line = 0;
    test_max_literal = 0;
    return 0;
}

static int
setup_small_limits(void **state)
{
    test_max_line = 100;
    test_max_literal = 20;
    return 0;
}

/* ---- the commands ---- */

static void
test_commands(void **state)
{
    expect_parse("a CAPABILITY\r\n", "OK a CAPABILITY\n");
    expect_parse("b noop\r\n", "OK b NOOP\n");
    expect_parse("c LogOut\r\n", "OK c LOGOUT\n");
    expect_parse("d STARTTLS\r\n", "OK d STARTTLS\n");
    expect_parse("e ID NIL\r\n", "OK e ID\n");
    expect_parse("f LOGIN alice secret\r\n", "OK f LOGIN [alice] [secret]\n");
    expect_parse("g AUTHENTICATE PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n",
                 "OK g AUTHENTICATE [PLAIN]\nOK - SASL [AGFsaWNlAHNlY3JldA==]\n");
    expect_parse("h authenticate login\r\nYWxpY2U=\r\nc2VjcmV0\r\ni NOOP\r\n",
                 "OK h AUTHENTICATE [login]\nOK - SASL [YWxpY2U=]\nOK - SASL [c2VjcmV0]\n"
                 "OK i NOOP\n");
}

static void
test_results_and_consumed(void **state)
{
    struct imap_parser p;
    size_t used;
    const char in[] = "a1 LOGIN {3+}\r\na\0b \"x\"\r\nb NOOP\r\n";

    imap_parser_init(&p, 0, 0);
    assert_int_equal(imap_parse(&p, in, sizeof(in) - 1, &used), IMAP_OK);
    /* The first command's bytes exactly: the LF is the last one used. */
    assert_int_equal(used, strlen("a1 LOGIN {3+}\r\n") + 3 + strlen(" \"x\"\r\n"));
    assert_string_equal(p.tag, "a1");
    assert_int_equal(p.cmd, IMAP_CMD_LOGIN);
    assert_int_equal(p.nargs, 2);
    /* A literal may hold a NUL: arglen tells. */
    assert_int_equal(p.arglen[0], 3);
    assert_memory_equal(p.args[0], "a\0b", 4);
    assert_int_equal(p.arglen[1], 1);
    assert_string_equal(p.args[1], "x");
    assert_null(p.error);

    assert_int_equal(imap_parse(&p, in + used, sizeof(in) - 1 - used, &used), IMAP_OK);
    assert_int_equal(p.cmd, IMAP_CMD_NOOP);
    assert_int_equal(p.nargs, 0);
    assert_string_equal(p.tag, "b");

    /* An INVALID keeps the tag and what command it was. */
    assert_int_equal(imap_parse(&p, "c LOGIN x y z\r\n", 15, &used), IMAP_INVALID);
    assert_string_equal(p.tag, "c");
    assert_int_equal(p.cmd, IMAP_CMD_LOGIN);
    assert_int_equal(p.nargs, 0);
    assert_string_equal(p.error, "Too many arguments");
    /* Reported at the bad byte; the rest of the line is skipped next. */
    assert_int_equal(used, strlen("c LOGIN x y "));
    assert_int_equal(imap_parse(&p, "z\r\n", 3, &used), IMAP_AGAIN);
    assert_int_equal(used, 3);
    assert_int_equal(imap_parse(&p, "d NOOP\n", 7, &used), IMAP_OK);
    assert_string_equal(p.tag, "d");

    /* Empty input: nothing to do. */
    assert_int_equal(imap_parse(&p, "", 0, &used), IMAP_AGAIN);
    assert_int_equal(used, 0);
}

/* ---- values ---- */

static void
test_atoms_and_quoted(void **state)
{
    expect_parse("a LOGIN \"al ice\" \"p\\\"w\\\\d\"\r\n",
                 "OK a LOGIN [al ice] [p\"w\\d]\n");
    /* "]" is an astring-char; "+" too. */
    expect_parse("a LOGIN a]b+c x\r\n", "OK a LOGIN [a]b+c] [x]\n");
    /* Empty quoted strings are syntax; refusing them is the session's. */
    expect_parse("a LOGIN \"\" \"\"\r\n", "OK a LOGIN [] []\n");
    /* 8-bit in quoted strings and in atoms. */
    expect_parse("a LOGIN \"j\xc3\xbcrgen\" p\xc3\xa4ss\r\n",
                 "OK a LOGIN [j\\xc3\\xbcrgen] [p\\xc3\\xa4ss]\n");
    /* Mixed forms. */
    expect_parse("a LOGIN \"alice\" {6}\r\nsecret\r\n",
                 "CONTINUE\nOK a LOGIN [alice] [secret]\n");
    /* Atom specials end an atom where the grammar has no place for them. */
    expect_parse("a LOGIN al(ice x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN al%ice x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN al*ice x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN al\"ice x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN alice\"x\"\r\n", "BAD a Syntax error\n");
}

static void
test_literals_sync(void **state)
{
    expect_parse("a LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
                 "CONTINUE\nCONTINUE\nOK a LOGIN [alice] [secret]\n");
    /* Any byte in a literal: CR, LF, NUL, quotes, braces. */
    expect_parse("a LOGIN {9}\r\na\r\nb\0\"{}\" x\r\n",
                 "CONTINUE\nOK a LOGIN [a\\x0d\\x0ab\\x00\"{}\"] [x]\n");
    /* Empty literals, and a bare LF after the size. */
    expect_parse("a LOGIN {0}\n {0}\r\n\r\n", "CONTINUE\nCONTINUE\nOK a LOGIN [] []\n");
    /* Leading zeros are digits like others. */
    expect_parse("a LOGIN {005}\r\nalice x\r\n", "CONTINUE\nOK a LOGIN [alice] [x]\n");
}

static void
test_literals_nonsync(void **state)
{
    expect_parse("a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n", "OK a LOGIN [alice] [secret]\n");
    expect_parse("a LOGIN {0+}\r\n {1+}\nx\n", "OK a LOGIN [] [x]\n");
    /* LITERAL+ with everything pipelined in one buffer. */
    expect_parse("a LOGIN {5+}\r\nalice secret\r\nb NOOP\r\nc LOGIN x {3+}\r\nabc\r\n",
                 "OK a LOGIN [alice] [secret]\nOK b NOOP\nOK c LOGIN [x] [abc]\n");
}

static void
test_literal_syntax(void **state)
{
    expect_parse("a LOGIN {}\r\nb NOOP\r\n", "BAD a Bad literal\nOK b NOOP\n");
    expect_parse("a LOGIN {+}\r\nb NOOP\r\n", "BAD a Bad literal\nOK b NOOP\n");
    expect_parse("a LOGIN {5x}\r\nb NOOP\r\n", "BAD a Bad literal\nOK b NOOP\n");
    expect_parse("a LOGIN {5++}\r\nb NOOP\r\n", "BAD a Bad literal\nOK b NOOP\n");
    expect_parse("a LOGIN {5}x\r\nb NOOP\r\n", "BAD a Missing CRLF after literal size\nOK b NOOP\n");
    expect_parse("a LOGIN {5\r\nb NOOP\r\n", "BAD a Bad literal\nOK b NOOP\n");
    expect_parse("a LOGIN {5}\rb NOOP\r\n", "BAD a CR without LF\n");
    /* A literal where the grammar has none. */
    expect_parse("a AUTHENTICATE {5}\r\nb NOOP\r\n", "BAD a Syntax error\nOK b NOOP\n");
    expect_parse("a AUTHENTICATE PLAIN {5+}\r\nb NOO\r\nc NOOP\r\n", "BAD a Syntax error\nOK c NOOP\n");
}

static void
test_literal_size_limits(void **state)
{
    /* With setup_small_limits: max_literal 20. */
    expect_parse("a LOGIN {20}\r\n01234567890123456789 x\r\n",
                 "CONTINUE\nOK a LOGIN [01234567890123456789] [x]\n");
    expect_parse("a LOGIN {20+}\r\n01234567890123456789 x\r\n",
                 "OK a LOGIN [01234567890123456789] [x]\n");
    /* Synchronizing: the client will not send it; the line ends there. */
    expect_parse("a LOGIN {21}\r\nb NOOP\r\n", "BAD a Literal too big\nOK b NOOP\n");
    expect_parse("a LOGIN x {21}\r\nb NOOP\r\n", "BAD a Literal too big\nOK b NOOP\n");
    /* Non-synchronizing: the data is coming and cannot be told from commands. */
    expect_parse("a LOGIN {21+}\r\n012345678901234567890 x\r\n", "BYE Literal too big\n");
    /* Sizes far past any integer. */
    expect_parse("a LOGIN {99999999999999999999999999999999}\r\nb NOOP\r\n",
                 "BAD a Literal too big\nOK b NOOP\n");
    expect_parse("a LOGIN {18446744073709551616+}\r\nb NOOP\r\n", "BYE Literal too big\n");
    expect_parse("a LOGIN {18446744073709551615}\r\nb NOOP\r\n",
                 "BAD a Literal too big\nOK b NOOP\n");
}

static void
test_sasl_ir(void **state)
{
    expect_parse("a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\nb NOOP\r\n",
                 "OK a AUTHENTICATE [PLAIN] [AGFsaWNlAHNlY3JldA==]\nOK b NOOP\n");
    /* "=" is the empty initial response (RFC 4959). */
    expect_parse("a AUTHENTICATE PLAIN =\r\nb NOOP\r\n",
                 "OK a AUTHENTICATE [PLAIN] [=]\nOK b NOOP\n");
    /* LOGIN with the user as initial response: one more line, the password. */
    expect_parse("a AUTHENTICATE LOGIN YWxpY2U=\r\nc2VjcmV0\r\n",
                 "OK a AUTHENTICATE [LOGIN] [YWxpY2U=]\nOK - SASL [c2VjcmV0]\n");
    expect_parse("a AUTHENTICATE PLAIN AG!s\r\nb NOOP\r\n", "BAD a Syntax error\nOK b NOOP\n");
    expect_parse("a AUTHENTICATE PLAIN \"AGFs\"\r\nb NOOP\r\n", "BAD a Syntax error\nOK b NOOP\n");
    expect_parse("a AUTHENTICATE PLAIN = x\r\n", "BAD a Too many arguments\n");
    expect_parse("a AUTHENTICATE PLAIN \r\n", "BAD a Missing arguments\n");
    expect_parse("a AUTHENTICATE\r\n", "BAD a Missing arguments\n");
    expect_parse("a AUTHENTICATE \"PLAIN\"\r\n", "BAD a Syntax error\n");
    expect_parse("a AUTHENTICATE PL]AIN\r\n", "BAD a Syntax error\n");
}

static void
test_expect_line(void **state)
{
    /* "*" cancels; the next line is a command again. */
    expect_parse("a AUTHENTICATE PLAIN\r\n*\r\nb NOOP\r\n",
                 "OK a AUTHENTICATE [PLAIN]\nOK - SASL [*]\nOK b NOOP\n");
    /* An empty response, a bare LF, and a line that looks like a command. */
    expect_parse("a AUTHENTICATE PLAIN\r\n\r\n", "OK a AUTHENTICATE [PLAIN]\nOK - SASL []\n");
    expect_parse("a AUTHENTICATE PLAIN\nAGFs\n", "OK a AUTHENTICATE [PLAIN]\nOK - SASL [AGFs]\n");
    expect_parse("a AUTHENTICATE PLAIN\r\nb LOGOUT {5+}\r\n",
                 "OK a AUTHENTICATE [PLAIN]\nOK - SASL [b LOGOUT {5+}]\n");
    /* Only the CR before the LF ends the line; others are data. */
    expect_parse("a AUTHENTICATE PLAIN\r\nab\rcd\r\r\n",
                 "OK a AUTHENTICATE [PLAIN]\nOK - SASL [ab\\x0dcd\\x0d]\n");
    expect_parse("a AUTHENTICATE PLAIN\r\nab\0cd\r\n",
                 "OK a AUTHENTICATE [PLAIN]\nOK - SASL [ab\\x00cd]\n");
}

static void
test_expect_line_direct(void **state)
{
    struct imap_parser p;
    size_t used;

    imap_parser_init(&p, 10, 0);
    imap_parser_expect_line(&p);
    /* max_line 10: ten bytes fit, CRLF not counted. */
    assert_int_equal(imap_parse(&p, "0123456789\r\n", 12, &used), IMAP_OK);
    assert_int_equal(used, 12);
    assert_int_equal(p.cmd, IMAP_CMD_SASL_LINE);
    assert_int_equal(p.nargs, 1);
    assert_string_equal(p.tag, "");
    assert_int_equal(p.arglen[0], 10);
    assert_string_equal(p.args[0], "0123456789");
    /* One line only: the next is a command. */
    assert_int_equal(imap_parse(&p, "a NOOP\r\n", 8, &used), IMAP_OK);
    assert_int_equal(p.cmd, IMAP_CMD_NOOP);

    imap_parser_expect_line(&p);
    assert_int_equal(imap_parse(&p, "0123456789A\r\n", 13, &used), IMAP_ERROR);
    assert_string_equal(p.error, "Line too long");

    /* Ten bytes and a CR that turns out bare: eleven line bytes. */
    imap_parser_init(&p, 10, 0);
    imap_parser_expect_line(&p);
    assert_int_equal(imap_parse(&p, "0123456789\rx\r\n", 14, &used), IMAP_ERROR);
}

static void
test_pipelined(void **state)
{
    expect_parse("a CAPABILITY\r\nb NOOP\r\nc ID NIL\r\nd LOGIN u p\r\ne LOGOUT\r\n",
                 "OK a CAPABILITY\nOK b NOOP\nOK c ID\nOK d LOGIN [u] [p]\nOK e LOGOUT\n");
    /* Errors in the middle do not disturb what follows. */
    expect_parse("a FOO\r\nb NOOP x\r\nc NOOP\r\n\r\nd NOOP\r\n",
                 "BAD a Unknown command\nBAD b Unexpected arguments\nOK c NOOP\n"
                 "BAD * Empty command\nOK d NOOP\n");
}

static void
test_line_endings(void **state)
{
    expect_parse("a NOOP\n", "OK a NOOP\n");
    expect_parse("a LOGIN x y\nb LOGIN \"x\" {1+}\ny\n",
                 "OK a LOGIN [x] [y]\nOK b LOGIN [x] [y]\n");
    expect_parse("a NOOP\r\nb NOOP\nc NOOP\r\n", "OK a NOOP\nOK b NOOP\nOK c NOOP\n");
    /* A bare CR inside a line is invalid, wherever it is. */
    expect_parse("a NOOP\rb NOOP\r\nc NOOP\r\n", "BAD a CR without LF\nOK c NOOP\n");
    expect_parse("a\rb NOOP\r\nc NOOP\r\n", "BAD a CR without LF\nOK c NOOP\n");
    expect_parse("a LOGIN x\ry z\r\nc NOOP\r\n", "BAD a CR without LF\nOK c NOOP\n");
    expect_parse("a LOGIN x \ry\r\nc NOOP\r\n", "BAD a CR without LF\nOK c NOOP\n");
    /* CR CR LF: the first CR is bare. */
    expect_parse("a NOOP\r\r\nc NOOP\r\n", "BAD a CR without LF\nOK c NOOP\n");
}

/* ---- malformed lines ---- */

static void
test_tags(void **state)
{
    char in[200], want[200];

    expect_parse(" NOOP\r\nb NOOP\r\n", "BAD * Missing tag\nOK b NOOP\n");
    expect_parse("\r\nb NOOP\r\n", "BAD * Empty command\nOK b NOOP\n");
    expect_parse("\nb NOOP\r\n", "BAD * Empty command\nOK b NOOP\n");
    expect_parse("a\r\n", "BAD a Missing command\n");
    expect_parse("a \r\n", "BAD a Missing command\n");
    expect_parse("a  NOOP\r\n", "BAD a Missing command\n");
    /* Not astring-chars, and "+" (continuation). */
    expect_parse("a+b NOOP\r\nc NOOP\r\n", "BAD * Invalid tag\nOK c NOOP\n");
    expect_parse("+ NOOP\r\nc NOOP\r\n", "BAD * Invalid tag\nOK c NOOP\n");
    expect_parse("* NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a(b NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a%b NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a\"b NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a\\b NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a\x01 NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("\x80 NOOP\r\n", "BAD * Invalid tag\n");
    expect_parse("a\0 NOOP\r\nc NOOP\r\n", "BAD * Invalid tag\nOK c NOOP\n");
    /* "{" in a tag: the rest is skipped, with a literal at its end. */
    expect_parse("a{3+}\r\nabc\r\nc NOOP\r\n", "BAD * Invalid tag\nOK c NOOP\n");
    /* Allowed: "]", and punctuation that is no special. */
    expect_parse("a]1.-_!#$&'=~ NOOP\r\n", "OK a]1.-_!#$&'=~ NOOP\n");

    /* IMAP_TAG_MAX bytes fit; one more does not. */
    memset(in, 't', IMAP_TAG_MAX);
    strcpy(in + IMAP_TAG_MAX, " NOOP\r\n");
    memset(want, 't', IMAP_TAG_MAX);
    strcpy(want, "OK ");
    memset(want + 3, 't', IMAP_TAG_MAX);
    strcpy(want + 3 + IMAP_TAG_MAX, " NOOP\n");
    expect_parse_n(in, strlen(in), want);
    memset(in, 't', IMAP_TAG_MAX + 1);
    strcpy(in + IMAP_TAG_MAX + 1, " NOOP\r\nb NOOP\r\n");
    expect_parse_n(in, strlen(in), "BAD * Tag too long\nOK b NOOP\n");
}

static void
test_quoted_errors(void **state)
{
    expect_parse("a LOGIN \"alice\r\nb NOOP\r\n", "BAD a Unterminated quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"alice\nb NOOP\r\n", "BAD a Unterminated quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"al\\ice\" x\r\nb NOOP\r\n",
                 "BAD a Bad escape in quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"al\\\r\nb NOOP\r\n", "BAD a Bad escape in quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"al\\\nb NOOP\r\n", "BAD a Unterminated quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"al\rice\" x\r\nb NOOP\r\n",
                 "BAD a Unterminated quoted string\nOK b NOOP\n");
    expect_parse("a LOGIN \"al\0ice\" x\r\nb NOOP\r\n", "BAD a NUL in quoted string\nOK b NOOP\n");
}

static void
test_nul(void **state)
{
    expect_parse("a LOGIN al\0ice x\r\nb NOOP\r\n", "BAD a Syntax error\nOK b NOOP\n");
    expect_parse("a NO\0OP\r\nb NOOP\r\n", "BAD a Invalid command name\nOK b NOOP\n");
    expect_parse("a NOOP\0\r\nb NOOP\r\n", "BAD a Invalid command name\nOK b NOOP\n");
    expect_parse("a LOGIN x y\0\r\nb NOOP\r\n", "BAD a Syntax error\nOK b NOOP\n");
}

static void
test_line_too_long(void **state)
{
    char in[400];

    /* With setup_small_limits: max_line 100, CRLF not counted. */
    memset(in, 0, sizeof(in));
    strcpy(in, "a LOGIN u ");
    memset(in + 10, 'p', 90);
    strcpy(in + 100, "\r\n");
    expect_parse_n(in, strlen(in), "OK a LOGIN [u] [pppppppppppppppppppppppppppppppppppppppppppppp"
                                   "pppppppppppppppppppppppppppppppppppppppppppp]\n");
    strcpy(in + 100, "p\r\n");
    expect_parse_n(in, strlen(in), "BYE Line too long\n");
    /* No LF at all. */
    memset(in + 10, 'p', 300);
    expect_parse_n(in, 310, "BYE Line too long\n");
    /* While skipping an invalid line. */
    memcpy(in, "a FOO ", 6);
    expect_parse_n(in, 310, "BAD a Unknown command\nBYE Line too long\n");
    /* CRs count when they are not the line's end. */
    memset(in, '\r', 200);
    expect_parse_n(in, 200, "BAD * CR without LF\nBYE Line too long\n");
    /* Literal headers count across a command's lines; the data does not. */
    expect_parse("a LOGIN {20+}\r\n01234567890123456789 {20+}\r\n01234567890123456789\r\n",
                 "OK a LOGIN [01234567890123456789] [01234567890123456789]\n");
}

static void
test_unknown_commands(void **state)
{
    expect_parse("a FOO\r\n", "BAD a Unknown command\n");
    expect_parse("a SELECT INBOX\r\nb NOOP\r\n",
                 "BAD a Command not permitted before authentication\nOK b NOOP\n");
    expect_parse("a uid fetch 1:* (FLAGS)\r\n",
                 "BAD a Command not permitted before authentication\n");
    expect_parse("a CAPABILITYX\r\n", "BAD a Unknown command\n");
    expect_parse("a AUTHENTICATEAUTHENTICATE\r\n", "BAD a Unknown command\n");
    expect_parse("a X-Y{\r\nb NOOP\r\n", "BAD a Invalid command name\nOK b NOOP\n");
}

static void
test_skip_nonsync_literal(void **state)
{
    /*
     * The literal's bytes look like commands: they must not be parsed. After
     * the literal, the command's line goes on until its own CRLF.
     */
    expect_parse("a SELECT {10+}\r\nb NOOP\r\n\r\n\r\nc NOOP\r\n",
                 "BAD a Command not permitted before authentication\nOK c NOOP\n");
    /* The line goes on after the literal, maybe with another one. */
    expect_parse("a APPEND INBOX {8+}\r\nb NOOP\r\n more {6+}\nx NOOP\r\nc NOOP\r\n",
                 "BAD a Command not permitted before authentication\nOK c NOOP\n");
    /* Bare LF, and a CR inside the literal data. */
    expect_parse("a FOO {3+}\n\r\r\r\nc NOOP\r\n", "BAD a Unknown command\nOK c NOOP\n");
    /* What follows the literal on its line is still skipped. */
    expect_parse("a FOO {3+}\r\nabcb NOOP\r\nc NOOP\r\n", "BAD a Unknown command\nOK c NOOP\n");
    /* Zero-length. */
    expect_parse("a FOO {0+}\r\n\r\nc NOOP\r\n", "BAD a Unknown command\nOK c NOOP\n");
    /* Invalid known commands skip literals alike. */
    expect_parse("a NOOP {7+}\r\nb FOO\r\n\r\nc NOOP\r\n", "BAD a Unexpected arguments\nOK c NOOP\n");
    expect_parse("a LOGIN x y {7+}\r\nb FOO\r\n\r\nc NOOP\r\n",
                 "BAD a Too many arguments\nOK c NOOP\n");
    expect_parse("a ID NIL {7+}\r\nb FOO\r\n\r\nc NOOP\r\n", "BAD a Syntax error\nOK c NOOP\n");
    /* A synchronizing literal simply ends the line. */
    expect_parse("a SELECT {5}\r\nb NOOP\r\n",
                 "BAD a Command not permitted before authentication\nOK b NOOP\n");
    /* Only at the line's end: elsewhere "{5+}" is text. */
    expect_parse("a FOO {5+} x\r\nb NOOP\r\n", "BAD a Unknown command\nOK b NOOP\n");
    expect_parse("a FOO {5+}x\r\nb NOOP\r\n", "BAD a Unknown command\nOK b NOOP\n");
    expect_parse("a FOO {5+}\r\r\nb NOOP\r\n", "BAD a Unknown command\nOK b NOOP\n");
    /* The skip follows the last "{" only. */
    expect_parse("a FOO {x{3+}\r\nabc\r\nb NOOP\r\n", "BAD a Unknown command\nOK b NOOP\n");
}

static void
test_skip_literal_limits(void **state)
{
    /* With setup_small_limits: max_literal 20. */
    expect_parse("a FOO {20+}\r\n01234567890123456789\r\nb NOOP\r\n",
                 "BAD a Unknown command\nOK b NOOP\n");
    expect_parse("a FOO {21+}\r\n012345678901234567890\r\nb NOOP\r\n",
                 "BAD a Unknown command\nBYE Literal too big\n");
    expect_parse("a FOO {99999999999999999999999+}\r\n", "BAD a Unknown command\nBYE Literal too big\n");
    expect_parse("a FOO {21}\r\nb NOOP\r\n", "BAD a Unknown command\nOK b NOOP\n");
}

static void
test_no_arguments_allowed(void **state)
{
    expect_parse("a CAPABILITY x\r\nb NOOP\r\n", "BAD a Unexpected arguments\nOK b NOOP\n");
    expect_parse("a NOOP \r\n", "BAD a Unexpected arguments\n");
    expect_parse("a LOGOUT ()\r\n", "BAD a Unexpected arguments\n");
    expect_parse("a STARTTLS {3}\r\nb NOOP\r\n", "BAD a Unexpected arguments\nOK b NOOP\n");
    expect_parse("a CAPABILITY(\r\n", "BAD a Invalid command name\n");
}

static void
test_login_arguments(void **state)
{
    expect_parse("a LOGIN a b c\r\n", "BAD a Too many arguments\n");
    expect_parse("a LOGIN alice\r\n", "BAD a Missing arguments\n");
    expect_parse("a LOGIN\r\n", "BAD a Missing arguments\n");
    expect_parse("a LOGIN alice \r\n", "BAD a Missing arguments\n");
    expect_parse("a LOGIN  alice x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN alice  x\r\n", "BAD a Syntax error\n");
    expect_parse("a LOGIN alice x \r\n", "BAD a Too many arguments\n");
    expect_parse("a LOGIN NIL NIL\r\n", "OK a LOGIN [NIL] [NIL]\n");
    /* Three literals: the third is refused before any "+". */
    expect_parse("a LOGIN {1}\r\nx {1}\r\ny {1}\r\nz\r\nb NOOP\r\n",
                 "CONTINUE\nCONTINUE\nBAD a Too many arguments\nBAD z Missing command\nOK b NOOP\n");
}

static void
test_id(void **state)
{
    expect_parse("a ID NIL\r\n", "OK a ID\n");
    expect_parse("a id nil\r\n", "OK a ID\n");
    expect_parse("a ID ()\r\n", "OK a ID\n");
    expect_parse("a ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n", "OK a ID\n");
    expect_parse("a ID (\"name\" {3}\r\nabc \"os\" \"x\\\"y\")\r\nb NOOP\r\n",
                 "CONTINUE\nOK a ID\nOK b NOOP\n");
    expect_parse("a ID ({4+}\r\nname {3+}\r\na)c)\r\n", "OK a ID\n");
    expect_parse("a ID (\"x\" nil)\r\n", "OK a ID\n");
}

static void
test_id_malformed(void **state)
{
    expect_parse("a ID\r\n", "BAD a Missing arguments\n");
    expect_parse("a ID \r\n", "BAD a Missing arguments\n");
    expect_parse("a ID FOO\r\n", "BAD a Syntax error\n");
    expect_parse("a ID NILL\r\n", "BAD a Syntax error\n");
    expect_parse("a ID \"NIL\"\r\n", "BAD a Syntax error\n");
    expect_parse("a ID NIL x\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\r\n", "BAD a Missing arguments\n");
    expect_parse("a ID (\"name\")\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\"name\" \"x\"\r\n", "BAD a Missing arguments\n");
    expect_parse("a ID (\"name\" \"x\" )\r\n", "BAD a Syntax error\n");
    expect_parse("a ID ( \"name\" \"x\")\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (name \"x\")\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (NIL \"x\")\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\"name\" xyz)\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\"a\" \"b\")x\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\"a\" \"b\") \r\n", "BAD a Syntax error\n");
    expect_parse("a ID ((\"a\" \"b\"))\r\n", "BAD a Syntax error\n");
    expect_parse("a ID ()()\r\n", "BAD a Syntax error\n");
    expect_parse("a ID (\"a\" \"b\"\"c\" \"d\")\r\n", "BAD a Syntax error\n");
}

static void
test_id_pairs_limit(void **state)
{
    char in[1024], *s;

    s = in + sprintf(in, "a ID (");
    for (int i = 0; i < IMAP_ID_MAX_PAIRS; i++)
        s += sprintf(s, "%s\"k%d\" \"v\"", i ? " " : "", i);
    strcpy(s, ")\r\n");
    expect_parse_n(in, strlen(in), "OK a ID\n");
    sprintf(s, " \"k\" \"v\")\r\nb NOOP\r\n");
    expect_parse_n(in, strlen(in), "BAD a Too many ID fields\nOK b NOOP\n");
}

static void
test_arena_holds_the_limits(void **state)
{
    /* Caps: a line of IMAP_LINE_CAP bytes and two literals of IMAP_LITERAL_CAP. */
    size_t cap = strlen("a LOGIN {4096+}\r\n") + IMAP_LITERAL_CAP + 64 + IMAP_LINE_CAP;
    char *in = malloc(cap), *s = in;
    struct imap_parser *p = malloc(sizeof(*p));
    size_t used, head;

    assert_non_null(in);
    assert_non_null(p);
    s += sprintf(s, "a LOGIN {%d+}\r\n", IMAP_LITERAL_CAP);
    memset(s, 'u', IMAP_LITERAL_CAP);
    s += IMAP_LITERAL_CAP;
    head = (size_t)sprintf(s, " {%d}\r\n", IMAP_LITERAL_CAP);
    s += head;
    memset(s, 'p', IMAP_LITERAL_CAP);
    s += IMAP_LITERAL_CAP;
    memcpy(s, "\r\n", 2);
    s += 2;

    imap_parser_init(p, 0, 0);
    assert_int_equal(p->max_line, IMAP_LINE_CAP);
    assert_int_equal(p->max_literal, IMAP_LITERAL_CAP);
    assert_int_equal(imap_parse(p, in, (size_t)(s - in), &used), IMAP_CONTINUE);
    assert_int_equal(imap_parse(p, in + used, (size_t)(s - in) - used, &used), IMAP_OK);
    assert_int_equal(p->arglen[0], IMAP_LITERAL_CAP);
    assert_int_equal(p->arglen[1], IMAP_LITERAL_CAP);

    /* A quoted string filling the line, then a literal: still OK. */
    s = in + sprintf(in, "a LOGIN \"");
    memset(s, 'q', IMAP_LINE_CAP - 20);
    s += IMAP_LINE_CAP - 20;
    s += sprintf(s, "\" {%d+}\r\n", IMAP_LITERAL_CAP);
    memset(s, 'p', IMAP_LITERAL_CAP);
    s += IMAP_LITERAL_CAP;
    memcpy(s, "\r\n", 2);
    s += 2;
    assert_int_equal(imap_parse(p, in, (size_t)(s - in), &used), IMAP_OK);
    assert_int_equal(used, (size_t)(s - in));
    assert_int_equal(p->arglen[0], IMAP_LINE_CAP - 20);

    /* Limits above the caps are clamped to them. */
    imap_parser_init(p, 1000000, 1000000);
    assert_int_equal(p->max_line, IMAP_LINE_CAP);
    assert_int_equal(p->max_literal, IMAP_LITERAL_CAP);
    free(p);
    free(in);
}

static void
test_reset_after_starttls(void **state)
{
    struct imap_parser p;
    size_t used;
    static const char secret[] = "hunter2secret";

    imap_parser_init(&p, 0, 0);
    assert_int_equal(imap_parse(&p, "a LOGIN x hunter2secret\r\n", 25, &used), IMAP_OK);
    assert_int_equal(imap_parse(&p, "s STARTTLS\r\nb LOGIN {5+}\r\nal", 29, &used), IMAP_OK);
    assert_int_equal(p.cmd, IMAP_CMD_STARTTLS);
    assert_int_equal(used, 12);
    /* A session that did not drop the rest at once: partial state. */
    assert_int_equal(imap_parse(&p, "b LOGIN {5+}\r\nal", 16, &used), IMAP_AGAIN);
    imap_parser_reset(&p);
    /* The rest of the literal is no longer expected: a command is. */
    assert_int_equal(imap_parse(&p, "c NOOP\r\n", 8, &used), IMAP_OK);
    assert_string_equal(p.tag, "c");
    assert_int_equal(p.cmd, IMAP_CMD_NOOP);

    /* Partial skip and SASL states are forgotten too. */
    assert_int_equal(imap_parse(&p, "d FOO {5+}\r\nab", 14, &used), IMAP_INVALID);
    imap_parser_reset(&p);
    assert_int_equal(imap_parse(&p, "e NOOP\r\n", 8, &used), IMAP_OK);
    assert_string_equal(p.tag, "e");
    imap_parser_expect_line(&p);
    imap_parser_reset(&p);
    assert_int_equal(imap_parse(&p, "f NOOP\r\n", 8, &used), IMAP_OK);
    assert_int_equal(p.cmd, IMAP_CMD_NOOP);

    /* An ERROR is forgotten by a reset as well, and only by a reset. */
    assert_int_equal(imap_parse(&p, "g LOGIN {999999+}\r\n", 19, &used), IMAP_ERROR);
    imap_parser_expect_line(&p);
    assert_int_equal(imap_parse(&p, "x\r\n", 3, &used), IMAP_ERROR);
    assert_int_equal(used, 0);
    imap_parser_reset(&p);
    assert_int_equal(imap_parse(&p, "h NOOP\r\n", 8, &used), IMAP_OK);

    /* No password is left behind in the arena. */
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
    assert_int_equal(imap_parse(&p, "a LOGIN x hunter2secret\r\n", 25, &used), IMAP_OK);
    imap_parser_reset(&p);
    assert_null(memmem(p.arena, sizeof(p.arena), secret, sizeof(secret) - 1));
}

static void
test_next_line_wipes_password(void **state)
{
    struct imap_parser p;
    size_t used;

    imap_parser_init(&p, 0, 0);
    assert_int_equal(imap_parse(&p, "a LOGIN x hunter2secret\r\n", 25, &used), IMAP_OK);
    assert_non_null(memmem(p.arena, sizeof(p.arena), "hunter2secret", 13));
    assert_int_equal(imap_parse(&p, "b NOOP\r\n", 8, &used), IMAP_OK);
    assert_null(memmem(p.arena, sizeof(p.arena), "hunter2secret", 13));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_commands, setup_default_limits),
        cmocka_unit_test_setup(test_results_and_consumed, setup_default_limits),
        cmocka_unit_test_setup(test_atoms_and_quoted, setup_default_limits),
        cmocka_unit_test_setup(test_literals_sync, setup_default_limits),
        cmocka_unit_test_setup(test_literals_nonsync, setup_default_limits),
        cmocka_unit_test_setup(test_literal_syntax, setup_default_limits),
        cmocka_unit_test_setup(test_literal_size_limits, setup_small_limits),
        cmocka_unit_test_setup(test_sasl_ir, setup_default_limits),
        cmocka_unit_test_setup(test_expect_line, setup_default_limits),
        cmocka_unit_test_setup(test_expect_line_direct, setup_default_limits),
        cmocka_unit_test_setup(test_pipelined, setup_default_limits),
        cmocka_unit_test_setup(test_line_endings, setup_default_limits),
        cmocka_unit_test_setup(test_tags, setup_default_limits),
        cmocka_unit_test_setup(test_quoted_errors, setup_default_limits),
        cmocka_unit_test_setup(test_nul, setup_default_limits),
        cmocka_unit_test_setup(test_line_too_long, setup_small_limits),
        cmocka_unit_test_setup(test_unknown_commands, setup_default_limits),
        cmocka_unit_test_setup(test_skip_nonsync_literal, setup_default_limits),
        cmocka_unit_test_setup(test_skip_literal_limits, setup_small_limits),
        cmocka_unit_test_setup(test_no_arguments_allowed, setup_default_limits),
        cmocka_unit_test_setup(test_login_arguments, setup_default_limits),
        cmocka_unit_test_setup(test_id, setup_default_limits),
        cmocka_unit_test_setup(test_id_malformed, setup_default_limits),
        cmocka_unit_test_setup(test_id_pairs_limit, setup_default_limits),
        cmocka_unit_test_setup(test_arena_holds_the_limits, setup_default_limits),
        cmocka_unit_test_setup(test_reset_after_starttls, setup_default_limits),
        cmocka_unit_test_setup(test_next_line_wipes_password, setup_default_limits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
