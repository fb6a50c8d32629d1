/*
 * pop3_parse.c - the resumable line reader behind pop3_parse() and
 * pop3_reply_parse(); see pop3_parse.h.
 *
 * POP3 has no literals and no quoting: every command is one line. So the
 * parser reads a whole line into its arena first, one byte at a time and
 * bounded by max_line, and only then looks at it. This keeps the resumable
 * part tiny (a position, whether a CR is pending, and why the line is
 * already known to be bad) and makes the answer the same wherever the
 * input was split. A bad line is reported at its LF, so that it has been
 * consumed whole by then and the next call starts at a command; only a line
 * over max_line is reported at once, as there is no end to wait for.
 *
 * It owns no policy beyond syntax and limits: whether USER is allowed on a
 * cleartext port, or STLS twice, is the session's call.
 */
#include "proxy/pop3_parse.h"

#include <string.h>
#include <strings.h>

#include "proxy/sasl.h"

enum pop3_parse_state {
    ST_LINE_START = 0, /* before the first byte of a command line */
    ST_LINE,           /* in a command line */
    ST_SASL_START,     /* before the first byte of a SASL line */
    ST_SASL,           /* in a SASL line */
    ST_DEAD,           /* after POP3_ERROR */
};

/* Outcomes of pop3_parse_read. */
enum {
    LR_MORE = 0, /* the input ended inside the line */
    LR_LINE,     /* the line is complete (its LF was consumed) */
    LR_TOO_LONG, /* the line is longer than its limit */
};

/* Arity of each command, counted in words after the name. */
static const struct {
    const char *name;
    enum pop3_command cmd;
    int min_args, max_args;
} pop3_parse_commands[] = {
    {"CAPA", POP3_CMD_CAPA, 0, 0},
    {"STLS", POP3_CMD_STLS, 0, 0},
    {"USER", POP3_CMD_USER, 1, 1},
    {"PASS", POP3_CMD_PASS, 1, 1}, /* the rest of the line: see pop3_parse_line */
    {"AUTH", POP3_CMD_AUTH, 0, 2},
    {"APOP", POP3_CMD_APOP, 2, 2},
    {"NOOP", POP3_CMD_NOOP, 0, 0},
    {"QUIT", POP3_CMD_QUIT, 0, 0},
};

/* TRANSACTION-state commands (RFC 1939 section 5): a clearer error. */
static const char *const pop3_parse_later_commands[] = {
    "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL", "LAST",
};

/* The byte that stays NUL for absent arguments. */
#define POP3_EMPTY(p) ((p)->arena + sizeof((p)->arena) - 1)

/*
 * Reads bytes of a line into store (at most max of them, CRLF not counted
 * and not stored) until its LF. A bare CR is a byte of the line; it and a
 * NUL make *bad say why the line is invalid. *used is how many bytes were
 * consumed; with LR_TOO_LONG, the byte that overflowed is not.
 */
static int
pop3_parse_read(int *cr_pending, const char **bad, size_t *line_len, size_t max,
                char *store, const unsigned char *s, size_t len, size_t *used)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];

        if (c == '\n') {
            *cr_pending = 0;
            *used = i + 1;
            return LR_LINE;
        }
        if (*cr_pending) {
            /* The CR before c did not end the line. */
            *cr_pending = 0;
            if (*line_len >= max) {
                *used = i;
                return LR_TOO_LONG;
            }
            store[(*line_len)++] = '\r';
            if (*bad == NULL)
                *bad = "CR without LF";
        }
        if (c == '\r') {
            *cr_pending = 1;
            continue;
        }
        if (*line_len >= max) {
            *used = i;
            return LR_TOO_LONG;
        }
        if (c == '\0' && *bad == NULL)
            *bad = "NUL in line";
        store[(*line_len)++] = (char)c;
    }
    *used = len;
    return LR_MORE;
}

/* Wipes what the last line left (it may hold a password) and the results. */
static void
pop3_parse_clear(struct pop3_parser *p)
{
    volatile char *v = p->arena;

    for (size_t i = 0; i < p->arena_used; i++)
        v[i] = 0;
    p->arena_used = 0;
    p->line_len = 0;
    p->cr_pending = 0;
    p->bad = NULL;
    p->cmd = POP3_CMD_NONE;
    p->nargs = 0;
    p->arg = p->arg2 = POP3_EMPTY(p);
    p->arglen = p->arg2len = 0;
    p->error = NULL;
}

static enum pop3_status
pop3_parse_invalid(struct pop3_parser *p, const char *msg)
{
    p->error = msg;
    p->nargs = 0;
    p->arg = p->arg2 = POP3_EMPTY(p);
    p->arglen = p->arg2len = 0;
    return POP3_INVALID;
}

/* A word of a command: no control character (8-bit bytes are fine). */
static int
pop3_parse_is_word(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/*
 * Parses the complete line in arena[0..line_len), NUL-terminated. The
 * arguments are cut out of it in place: the SP after each becomes a NUL.
 */
static enum pop3_status
pop3_parse_line(struct pop3_parser *p)
{
    char *s = p->arena;
    size_t n = p->line_len, w = 0, i, nwords = 0;
    size_t wstart[3], wlen[3];
    int min_args = 0, max_args = 0;

    if (p->bad)
        return pop3_parse_invalid(p, p->bad);
    if (n == 0)
        return pop3_parse_invalid(p, "Empty command");
    while (w < n && s[w] != ' ')
        w++;
    if (w == 0)
        return pop3_parse_invalid(p, "Missing command");

    for (i = 0; i < sizeof(pop3_parse_commands) / sizeof(pop3_parse_commands[0]); i++) {
        if (strlen(pop3_parse_commands[i].name) == w
            && strncasecmp(s, pop3_parse_commands[i].name, w) == 0) {
            p->cmd = pop3_parse_commands[i].cmd;
            min_args = pop3_parse_commands[i].min_args;
            max_args = pop3_parse_commands[i].max_args;
            break;
        }
    }
    if (p->cmd == POP3_CMD_NONE) {
        for (i = 0; i < sizeof(pop3_parse_later_commands) / sizeof(pop3_parse_later_commands[0]); i++)
            if (strlen(pop3_parse_later_commands[i]) == w
                && strncasecmp(s, pop3_parse_later_commands[i], w) == 0)
                return pop3_parse_invalid(p, "Command not permitted before authentication");
        return pop3_parse_invalid(p, "Unknown command");
    }

    if (p->cmd == POP3_CMD_PASS) {
        /* Everything after one SP, spaces included (RFC 1939 section 7). */
        if (w + 1 >= n)
            return pop3_parse_invalid(p, "Missing argument");
        p->arg = s + w + 1;
        p->arglen = n - w - 1;
        p->nargs = 1;
        return POP3_OK;
    }

    /* Words separated by runs of SP; trailing SPs are no word. */
    i = w;
    for (;;) {
        while (i < n && s[i] == ' ')
            i++;
        if (i == n)
            break;
        if (nwords == (size_t)max_args)
            return pop3_parse_invalid(p, max_args == 0 ? "Unexpected arguments"
                                                       : "Too many arguments");
        wstart[nwords] = i;
        while (i < n && s[i] != ' ')
            i++;
        wlen[nwords] = i - wstart[nwords];
        if (!pop3_parse_is_word(s + wstart[nwords], wlen[nwords]))
            return pop3_parse_invalid(p, "Syntax error");
        nwords++;
    }
    if (nwords < (size_t)min_args)
        return pop3_parse_invalid(p, min_args == 1 ? "Missing argument" : "Missing arguments");

    if (p->cmd == POP3_CMD_AUTH) {
        if (nwords >= 1 && !sasl_is_mech(s + wstart[0], wlen[0]))
            return pop3_parse_invalid(p, "Invalid mechanism name");
        if (nwords == 2 && !sasl_is_b64(s + wstart[1], wlen[1]))
            return pop3_parse_invalid(p, "Invalid initial response");
    }

    for (i = 0; i < nwords; i++)
        s[wstart[i] + wlen[i]] = '\0';
    p->nargs = (int)nwords;
    if (nwords >= 1) {
        p->arg = s + wstart[0];
        p->arglen = wlen[0];
    }
    if (nwords >= 2) {
        p->arg2 = s + wstart[1];
        p->arg2len = wlen[1];
    }
    return POP3_OK;
}

void
pop3_parser_init(struct pop3_parser *p, size_t max_line)
{
    memset(p, 0, sizeof(*p));
    p->max_line = (max_line == 0 || max_line > POP3_LINE_CAP) ? POP3_LINE_CAP : max_line;
    p->arg = p->arg2 = POP3_EMPTY(p);
    p->state = ST_LINE_START;
}

void
pop3_parser_reset(struct pop3_parser *p)
{
    /* Wipe everything the arena ever held, not only the last line. */
    p->arena_used = sizeof(p->arena);
    pop3_parse_clear(p);
    p->state = ST_LINE_START;
}

void
pop3_parser_expect_line(struct pop3_parser *p)
{
    p->state = ST_SASL_START;
}

enum pop3_status
pop3_parse(struct pop3_parser *p, const char *buf, size_t len, size_t *consumed)
{
    size_t used = 0;
    int r, sasl;

    *consumed = 0;
    if (p->state == ST_DEAD)
        return POP3_ERROR;
    if (len == 0)
        return POP3_AGAIN;

    if (p->state == ST_LINE_START || p->state == ST_SASL_START) {
        pop3_parse_clear(p);
        p->state = p->state == ST_LINE_START ? ST_LINE : ST_SASL;
    }
    r = pop3_parse_read(&p->cr_pending, &p->bad, &p->line_len, p->max_line, p->arena,
                        (const unsigned char *)buf, len, &used);
    /* What the arena holds now must be wiped before the next line. */
    p->arena_used = p->line_len + 1;
    *consumed = used;
    if (r == LR_MORE)
        return POP3_AGAIN;
    if (r == LR_TOO_LONG) {
        p->error = "Line too long";
        p->state = ST_DEAD;
        return POP3_ERROR;
    }

    sasl = p->state == ST_SASL;
    p->state = ST_LINE_START;
    p->arena[p->line_len] = '\0';
    if (sasl) {
        p->cmd = POP3_CMD_SASL_LINE;
        p->arg = p->arena;
        p->arglen = p->line_len;
        p->nargs = 1;
        return POP3_OK;
    }
    return pop3_parse_line(p);
}

/* ---- the backend's side ---- */

void
pop3_reply_init(struct pop3_reply *r, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->max_line = (max_line == 0 || max_line > POP3_REPLY_LINE_CAP) ? POP3_REPLY_LINE_CAP
                                                                    : max_line;
    r->text = r->line;
    r->state = ST_LINE_START;
}

/*
 * Whether line (n bytes) is the status indicator st alone or followed by a
 * SP; *text is then what follows that SP.
 */
static int
pop3_reply_is(const char *line, size_t n, const char *st, size_t *text)
{
    size_t k = strlen(st);

    if (n < k || strncasecmp(line, st, k) != 0 || (n > k && line[k] != ' '))
        return 0;
    *text = n > k ? k + 1 : k;
    return 1;
}

enum pop3_status
pop3_reply_parse(struct pop3_reply *r, const char *buf, size_t len, size_t *consumed)
{
    size_t used = 0, t = 0;
    int res;

    *consumed = 0;
    if (r->state == ST_DEAD)
        return POP3_ERROR;
    if (len == 0)
        return POP3_AGAIN;

    if (r->state == ST_LINE_START) {
        r->line_len = 0;
        r->cr_pending = 0;
        r->bad = NULL;
        r->kind = POP3_REPLY_NONE;
        r->text = r->line;
        r->textlen = 0;
        r->error = NULL;
        r->state = ST_LINE;
    }
    res = pop3_parse_read(&r->cr_pending, &r->bad, &r->line_len, r->max_line, r->line,
                          (const unsigned char *)buf, len, &used);
    *consumed = used;
    if (res == LR_MORE)
        return POP3_AGAIN;
    if (res == LR_TOO_LONG) {
        r->error = "Reply line too long";
        r->state = ST_DEAD;
        return POP3_ERROR;
    }
    r->state = ST_LINE_START;
    r->line[r->line_len] = '\0';
    if (r->bad) {
        r->error = r->bad;
        return POP3_INVALID;
    }

    if (pop3_reply_is(r->line, r->line_len, "+OK", &t))
        r->kind = POP3_REPLY_OK;
    else if (pop3_reply_is(r->line, r->line_len, "-ERR", &t))
        r->kind = POP3_REPLY_ERR;
    else if (pop3_reply_is(r->line, r->line_len, "+", &t))
        r->kind = POP3_REPLY_CONT;
    else
        r->kind = POP3_REPLY_LINE;
    r->text = r->line + t;
    r->textlen = r->line_len - t;
    return POP3_OK;
}
