/*
 * smtp_parse.c - the resumable line reader behind smtp_parse() and
 * smtp_reply_parse(), and the EHLO keyword collector; see smtp_parse.h.
 *
 * SMTP commands are single lines, so the parser reads a whole line into its
 * arena first, one byte at a time and bounded by max_line, and only then
 * looks at it: the resumable part is tiny (a position, whether a CR is
 * pending, why the line is already known to be bad, BDAT bytes to skip),
 * and the answer is the same wherever the input was split. The line stays
 * in the arena as received, so that MAIL can be replayed to the backend
 * byte for byte; the arguments are copies placed after it.
 *
 * A bad line is reported at its LF, so that it has been consumed whole and
 * the next call starts at the next pipelined command. Only two things end
 * the conversation at once: a line over max_line (no end to wait for), and
 * a BDAT whose size cannot be read (its chunk's bytes would be taken for
 * commands: the same hazard as IMAP's literals after an invalid command).
 *
 * It owns no policy beyond syntax and limits: whether AUTH is allowed before
 * STARTTLS, or MAIL without AUTH, is the session's call.
 */
#include "proxy/smtp_parse.h"

#include <string.h>
#include <strings.h>

#include "proxy/sasl.h"

enum smtp_parse_state {
    ST_LINE_START = 0, /* before the first byte of a command line */
    ST_LINE,           /* in a command line */
    ST_SASL_START,     /* before the first byte of a SASL line */
    ST_SASL,           /* in a SASL line */
    ST_CHUNK,          /* skipping a BDAT chunk, chunk_left bytes to go */
    ST_DEAD,           /* after SMTP_ERROR */
};

/* Outcomes of smtp_parse_read. */
enum {
    LR_MORE = 0, /* the input ended inside the line */
    LR_LINE,     /* the line is complete (its LF was consumed) */
    LR_TOO_LONG, /* the line is longer than its limit */
};

static const struct {
    const char *name;
    enum smtp_command cmd;
} smtp_parse_commands[] = {
    {"EHLO", SMTP_CMD_EHLO},
    {"HELO", SMTP_CMD_HELO},
    {"STARTTLS", SMTP_CMD_STARTTLS},
    {"AUTH", SMTP_CMD_AUTH},
    {"MAIL", SMTP_CMD_MAIL},
    {"RCPT", SMTP_CMD_RCPT},
    {"DATA", SMTP_CMD_DATA},
    {"BDAT", SMTP_CMD_BDAT},
    {"RSET", SMTP_CMD_RSET},
    {"NOOP", SMTP_CMD_NOOP},
    {"QUIT", SMTP_CMD_QUIT},
    {"HELP", SMTP_CMD_HELP},
    {"VRFY", SMTP_CMD_VRFY},
    {"EXPN", SMTP_CMD_EXPN},
    {"XCLIENT", SMTP_CMD_XCLIENT},
};

/* The byte that stays NUL for absent arguments. */
#define SMTP_EMPTY(p) ((p)->arena + sizeof((p)->arena) - 1)

/* The largest BDAT size read: 19 digits always fit in a uint64_t. */
#define SMTP_CHUNK_DIGITS_MAX 19

/*
 * Reads bytes of a line into store (at most max of them, CRLF not counted
 * and not stored) until its LF. A bare CR is a byte of the line; it and a
 * NUL make *bad say why the line is invalid. *used is how many bytes were
 * consumed; with LR_TOO_LONG, the byte that overflowed is not.
 */
static int
smtp_parse_read(int *cr_pending, const char **bad, size_t *line_len, size_t max,
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

/* ---- arena and results ---- */

static void
smtp_parse_clear_results(struct smtp_parser *p)
{
    p->cmd = SMTP_CMD_NONE;
    p->nargs = 0;
    p->arg = p->arg2 = SMTP_EMPTY(p);
    p->arglen = p->arg2len = 0;
    p->raw = SMTP_EMPTY(p);
    p->rawlen = 0;
    p->chunk_size = 0;
    p->chunk_last = 0;
    p->error = NULL;
}

/* Wipes what the last line left (it may hold a password) and the results. */
static void
smtp_parse_clear(struct smtp_parser *p)
{
    volatile char *v = p->arena;

    for (size_t i = 0; i < p->arena_used; i++)
        v[i] = 0;
    p->arena_used = 0;
    p->line_len = 0;
    p->cr_pending = 0;
    p->bad = NULL;
    smtp_parse_clear_results(p);
}

/*
 * Copies n bytes after what the arena holds, NUL-terminated, and returns the
 * copy. The arena is sized so that a line's arguments always fit (they are
 * disjoint parts of the line): running out is a bug, hence no error path.
 */
static char *
smtp_parse_copy(struct smtp_parser *p, const char *s, size_t n)
{
    char *d = p->arena + p->arena_used;

    if (n + 1 > sizeof(p->arena) - 1 - p->arena_used)
        return SMTP_EMPTY(p); /* cannot happen: see SMTP_ARENA_SIZE */
    memcpy(d, s, n);
    d[n] = '\0';
    p->arena_used += n + 1;
    return d;
}

static void
smtp_parse_set_arg(struct smtp_parser *p, int i, const char *s, size_t n)
{
    char *d = smtp_parse_copy(p, s, n);

    if (d == SMTP_EMPTY(p))
        n = 0;
    if (i == 0) {
        p->arg = d;
        p->arglen = n;
    } else {
        p->arg2 = d;
        p->arg2len = n;
    }
    p->nargs = i + 1;
}

static enum smtp_status
smtp_parse_invalid(struct smtp_parser *p, const char *msg)
{
    p->error = msg;
    p->nargs = 0;
    p->arg = p->arg2 = SMTP_EMPTY(p);
    p->arglen = p->arg2len = 0;
    p->chunk_size = 0;
    p->chunk_last = 0;
    return SMTP_INVALID;
}

static enum smtp_status
smtp_parse_fail(struct smtp_parser *p, const char *msg)
{
    p->error = msg;
    p->nargs = 0;
    p->state = ST_DEAD;
    return SMTP_ERROR;
}

/* ---- pieces of a line ---- */

/* Whether s[0..n) has no control character (8-bit bytes are fine). */
static int
smtp_parse_no_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Trims SPs around s[0..*n); returns the new start. */
static const char *
smtp_parse_trim(const char *s, size_t *n)
{
    while (*n > 0 && s[0] == ' ') {
        s++;
        (*n)--;
    }
    while (*n > 0 && s[*n - 1] == ' ')
        (*n)--;
    return s;
}

/*
 * Splits s[0..n) into at most max words separated by runs of SP. Returns
 * the number of words, or max + 1 if there are more.
 */
static size_t
smtp_parse_words(const char *s, size_t n, size_t max, const char **w, size_t *wl)
{
    size_t i = 0, k = 0;

    for (;;) {
        while (i < n && s[i] == ' ')
            i++;
        if (i == n)
            return k;
        if (k == max)
            return max + 1;
        w[k] = s + i;
        while (i < n && s[i] != ' ')
            i++;
        wl[k] = (size_t)(s + i - w[k]);
        k++;
    }
}

/*
 * MAIL and RCPT: rest is what follows the command name; kw is "FROM:" or
 * "TO:". arg = the path without brackets, arg2 = the parameters.
 */
static enum smtp_status
smtp_parse_path(struct smtp_parser *p, const char *rest, size_t n, const char *kw,
                const char *syntax)
{
    size_t k = strlen(kw), pn, qn;
    const char *path, *q;

    rest = smtp_parse_trim(rest, &n);
    if (n < k || strncasecmp(rest, kw, k) != 0)
        return smtp_parse_invalid(p, syntax);
    rest += k;
    n -= k;
    /* "MAIL FROM: <a>": not RFC 5321, but common and accepted by Postfix. */
    while (n > 0 && rest[0] == ' ') {
        rest++;
        n--;
    }
    if (n == 0)
        return smtp_parse_invalid(p, syntax);
    if (rest[0] == '<') {
        q = memchr(rest, '>', n);
        if (q == NULL)
            return smtp_parse_invalid(p, syntax);
        path = rest + 1;
        pn = (size_t)(q - path);
        q++;
        if (q < rest + n && *q != ' ')
            return smtp_parse_invalid(p, syntax);
    } else {
        /* A path without brackets, as Postfix tolerates. */
        path = rest;
        q = memchr(rest, ' ', n);
        if (q == NULL)
            q = rest + n;
        pn = (size_t)(q - path);
    }
    if (!smtp_parse_no_ctl(path, pn) || (pn == 0 && p->cmd == SMTP_CMD_RCPT))
        return smtp_parse_invalid(p, syntax);
    qn = (size_t)(rest + n - q);
    q = smtp_parse_trim(q, &qn);
    smtp_parse_set_arg(p, 0, path, pn);
    if (qn > 0)
        smtp_parse_set_arg(p, 1, q, qn);
    return SMTP_OK;
}

/* "BDAT" SP chunk-size [SP "LAST"] (RFC 3030); anything else is final. */
static enum smtp_status
smtp_parse_bdat(struct smtp_parser *p, const char *rest, size_t n)
{
    const char *w[2];
    size_t wl[2], k = smtp_parse_words(rest, n, 2, w, wl);
    uint64_t size = 0;

    if (k < 1 || k > 2 || wl[0] > SMTP_CHUNK_DIGITS_MAX)
        return smtp_parse_fail(p, "Bad BDAT chunk size");
    for (size_t i = 0; i < wl[0]; i++) {
        if (w[0][i] < '0' || w[0][i] > '9')
            return smtp_parse_fail(p, "Bad BDAT chunk size");
        size = size * 10 + (uint64_t)(w[0][i] - '0');
    }
    if (k == 2 && !(wl[1] == 4 && strncasecmp(w[1], "LAST", 4) == 0))
        return smtp_parse_fail(p, "Bad BDAT end marker");
    smtp_parse_set_arg(p, 0, w[0], wl[0]);
    if (k == 2)
        smtp_parse_set_arg(p, 1, w[1], wl[1]);
    p->chunk_size = size;
    p->chunk_last = k == 2;
    p->chunk_left = size;
    if (size > 0)
        p->state = ST_CHUNK;
    return SMTP_OK;
}

/*
 * Parses the complete line in arena[0..line_len), which is already raw
 * (with CRLF). The arguments are copied after it.
 */
static enum smtp_status
smtp_parse_line(struct smtp_parser *p)
{
    const char *s = p->arena, *rest, *t, *w[2];
    size_t n = p->line_len, i, c, rn, tn, wl[2], k;

    if (p->bad)
        return smtp_parse_invalid(p, p->bad);
    if (n == 0)
        return smtp_parse_invalid(p, "Empty command");
    for (c = 0; c < n && s[c] != ' '; c++)
        ;
    if (c == 0)
        return smtp_parse_invalid(p, "Missing command");
    for (i = 0; i < sizeof(smtp_parse_commands) / sizeof(smtp_parse_commands[0]); i++) {
        if (strlen(smtp_parse_commands[i].name) == c
            && strncasecmp(s, smtp_parse_commands[i].name, c) == 0) {
            p->cmd = smtp_parse_commands[i].cmd;
            break;
        }
    }
    if (p->cmd == SMTP_CMD_NONE)
        return smtp_parse_invalid(p, "Command not recognized");

    rest = s + c;
    rn = n - c;
    tn = rn;
    t = smtp_parse_trim(rest, &tn);

    switch (p->cmd) {
    case SMTP_CMD_EHLO:
    case SMTP_CMD_HELO:
        if (tn == 0)
            return smtp_parse_invalid(p, p->cmd == SMTP_CMD_EHLO ? "Syntax: EHLO hostname"
                                                                 : "Syntax: HELO hostname");
        if (!smtp_parse_no_ctl(t, tn))
            return smtp_parse_invalid(p, "Invalid domain");
        smtp_parse_set_arg(p, 0, t, tn);
        return SMTP_OK;

    case SMTP_CMD_STARTTLS:
    case SMTP_CMD_DATA:
    case SMTP_CMD_RSET:
    case SMTP_CMD_QUIT:
        if (tn > 0)
            return smtp_parse_invalid(p, "Unexpected arguments");
        return SMTP_OK;

    case SMTP_CMD_AUTH:
        k = smtp_parse_words(rest, rn, 2, w, wl);
        if (k == 0)
            return smtp_parse_invalid(p, "Syntax: AUTH mechanism [initial-response]");
        if (k > 2)
            return smtp_parse_invalid(p, "Too many arguments");
        if (!sasl_is_mech(w[0], wl[0]))
            return smtp_parse_invalid(p, "Invalid mechanism name");
        if (k == 2 && !sasl_is_b64(w[1], wl[1]))
            return smtp_parse_invalid(p, "Invalid initial response");
        smtp_parse_set_arg(p, 0, w[0], wl[0]);
        if (k == 2)
            smtp_parse_set_arg(p, 1, w[1], wl[1]);
        return SMTP_OK;

    case SMTP_CMD_MAIL:
        return smtp_parse_path(p, rest, rn, "FROM:", "Syntax: MAIL FROM:<address>");

    case SMTP_CMD_RCPT:
        return smtp_parse_path(p, rest, rn, "TO:", "Syntax: RCPT TO:<address>");

    case SMTP_CMD_BDAT:
        return smtp_parse_bdat(p, rest, rn);

    case SMTP_CMD_NOOP:
    case SMTP_CMD_HELP:
        if (tn > 0)
            smtp_parse_set_arg(p, 0, t, tn);
        return SMTP_OK;

    case SMTP_CMD_VRFY:
    case SMTP_CMD_EXPN:
    case SMTP_CMD_XCLIENT:
        if (tn == 0)
            return smtp_parse_invalid(p, "Missing argument");
        smtp_parse_set_arg(p, 0, t, tn);
        return SMTP_OK;

    default:
        return smtp_parse_invalid(p, "Command not recognized");
    }
}

void
smtp_parser_init(struct smtp_parser *p, size_t max_line)
{
    memset(p, 0, sizeof(*p));
    p->max_line = (max_line == 0 || max_line > SMTP_LINE_CAP) ? SMTP_LINE_CAP : max_line;
    smtp_parse_clear_results(p);
    p->state = ST_LINE_START;
}

void
smtp_parser_reset(struct smtp_parser *p)
{
    /* Wipe everything the arena ever held, not only the last line. */
    p->arena_used = sizeof(p->arena);
    smtp_parse_clear(p);
    p->chunk_left = 0;
    p->state = ST_LINE_START;
}

void
smtp_parser_expect_line(struct smtp_parser *p)
{
    p->state = ST_SASL_START;
}

enum smtp_status
smtp_parse(struct smtp_parser *p, const char *buf, size_t len, size_t *consumed)
{
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0, used = 0;
    int r, sasl;

    *consumed = 0;
    if (p->state == ST_DEAD)
        return SMTP_ERROR;

    /* A BDAT chunk's bytes are skipped in bulk, and are no line. */
    if (p->state == ST_CHUNK) {
        i = len < p->chunk_left ? len : (size_t)p->chunk_left;
        p->chunk_left -= i;
        if (p->chunk_left == 0)
            p->state = ST_LINE_START;
    }
    if (i == len) {
        *consumed = len;
        return SMTP_AGAIN;
    }

    if (p->state == ST_LINE_START || p->state == ST_SASL_START) {
        smtp_parse_clear(p);
        p->state = p->state == ST_LINE_START ? ST_LINE : ST_SASL;
    }
    r = smtp_parse_read(&p->cr_pending, &p->bad, &p->line_len, p->max_line, p->arena,
                        s + i, len - i, &used);
    /* What the arena holds now must be wiped before the next line. */
    p->arena_used = p->line_len;
    *consumed = i + used;
    if (r == LR_MORE)
        return SMTP_AGAIN;
    if (r == LR_TOO_LONG)
        return smtp_parse_fail(p, "Line too long");

    sasl = p->state == ST_SASL;
    p->state = ST_LINE_START;
    /* The raw line, always ending in CRLF, then the argument copies. */
    memcpy(p->arena + p->line_len, "\r\n", 3);
    p->arena_used = p->line_len + 3;
    p->raw = p->arena;
    p->rawlen = p->line_len + 2;
    if (sasl) {
        p->cmd = SMTP_CMD_SASL_LINE;
        smtp_parse_set_arg(p, 0, p->arena, p->line_len);
        return SMTP_OK;
    }
    return smtp_parse_line(p);
}

/* ---- the backend's side ---- */

void
smtp_reply_init(struct smtp_reply *r, size_t max_line)
{
    memset(r, 0, sizeof(*r));
    r->max_line = (max_line == 0 || max_line > SMTP_REPLY_LINE_CAP) ? SMTP_REPLY_LINE_CAP
                                                                    : max_line;
    r->text = r->line;
    r->state = ST_LINE_START;
}

static enum smtp_status
smtp_reply_invalid(struct smtp_reply *r, const char *msg)
{
    r->error = msg;
    r->code = 0;
    r->last = 0;
    r->lineno = 0;
    r->cont_code = 0;
    r->cont_lines = 0;
    return SMTP_INVALID;
}

enum smtp_status
smtp_reply_parse(struct smtp_reply *r, const char *buf, size_t len, size_t *consumed)
{
    const char *l = r->line;
    size_t used = 0, n;
    int res, code;

    *consumed = 0;
    if (r->state == ST_DEAD)
        return SMTP_ERROR;
    if (len == 0)
        return SMTP_AGAIN;

    if (r->state == ST_LINE_START) {
        r->line_len = 0;
        r->cr_pending = 0;
        r->bad = NULL;
        r->code = 0;
        r->last = 0;
        r->lineno = 0;
        r->text = r->line;
        r->textlen = 0;
        r->error = NULL;
        r->state = ST_LINE;
    }
    res = smtp_parse_read(&r->cr_pending, &r->bad, &r->line_len, r->max_line, r->line,
                          (const unsigned char *)buf, len, &used);
    *consumed = used;
    if (res == LR_MORE)
        return SMTP_AGAIN;
    if (res == LR_TOO_LONG) {
        r->error = "Reply line too long";
        r->state = ST_DEAD;
        return SMTP_ERROR;
    }
    r->state = ST_LINE_START;
    r->line[r->line_len] = '\0';
    n = r->line_len;
    if (r->bad)
        return smtp_reply_invalid(r, r->bad);

    /* Reply-code = %x32-35 %x30-35 %x30-39 (RFC 5321 section 4.2). */
    if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '5' || l[2] < '0'
        || l[2] > '9')
        return smtp_reply_invalid(r, "Malformed reply code");
    if (n > 3 && l[3] != ' ' && l[3] != '-')
        return smtp_reply_invalid(r, "Malformed reply");
    code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (r->cont_code != 0 && code != r->cont_code)
        return smtp_reply_invalid(r, "Inconsistent reply code");

    r->code = code;
    r->last = n == 3 || l[3] == ' ';
    r->lineno = r->cont_lines;
    r->text = l + (n > 3 ? 4 : 3);
    r->textlen = n > 3 ? n - 4 : 0;
    if (r->last) {
        r->cont_code = 0;
        r->cont_lines = 0;
    } else {
        if (r->cont_lines + 1 >= SMTP_REPLY_MAX_LINES) {
            r->error = "Reply too long";
            r->state = ST_DEAD;
            return SMTP_ERROR;
        }
        r->cont_code = code;
        r->cont_lines++;
    }
    return SMTP_OK;
}

/* ---- EHLO keywords ---- */

static const struct {
    const char *name;
    unsigned bit;
} smtp_ehlo_keywords[] = {
    {"PIPELINING", SMTP_EXT_PIPELINING},
    {"SIZE", SMTP_EXT_SIZE},
    {"STARTTLS", SMTP_EXT_STARTTLS},
    {"AUTH", SMTP_EXT_AUTH},
    {"XCLIENT", SMTP_EXT_XCLIENT},
    {"8BITMIME", SMTP_EXT_8BITMIME},
    {"SMTPUTF8", SMTP_EXT_SMTPUTF8},
    {"CHUNKING", SMTP_EXT_CHUNKING},
    {"ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCEDSTATUSCODES},
    {"DSN", SMTP_EXT_DSN},
    {"BINARYMIME", SMTP_EXT_BINARYMIME},
}, smtp_ehlo_xclient_attrs[] = {
    {"NAME", SMTP_XCLIENT_NAME},
    {"ADDR", SMTP_XCLIENT_ADDR},
    {"PORT", SMTP_XCLIENT_PORT},
    {"PROTO", SMTP_XCLIENT_PROTO},
    {"HELO", SMTP_XCLIENT_HELO},
    {"LOGIN", SMTP_XCLIENT_LOGIN},
    {"DESTADDR", SMTP_XCLIENT_DESTADDR},
    {"DESTPORT", SMTP_XCLIENT_DESTPORT},
};

static int
smtp_ehlo_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

void
smtp_ehlo_init(struct smtp_ehlo *e)
{
    memset(e, 0, sizeof(*e));
}

void
smtp_ehlo_add(struct smtp_ehlo *e, const struct smtp_reply *r)
{
    const char *s = r->text, *w;
    size_t n = r->textlen, i = 0, kl, wl;
    unsigned bit = 0;

    if (r->code != 250 || r->lineno == 0)
        return;
    /* The keyword ends at SP, or at "=" in the old "AUTH=PLAIN LOGIN". */
    while (i < n && s[i] != ' ' && s[i] != '=')
        i++;
    kl = i;
    for (size_t k = 0; k < sizeof(smtp_ehlo_keywords) / sizeof(smtp_ehlo_keywords[0]); k++)
        if (smtp_ehlo_is(s, kl, smtp_ehlo_keywords[k].name))
            bit = smtp_ehlo_keywords[k].bit;
    if (bit == 0)
        return;
    e->ext |= bit;

    /* The parameters, separated by SPs (and the "=" above). */
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '='))
            i++;
        if (i == n)
            break;
        w = s + i;
        while (i < n && s[i] != ' ')
            i++;
        wl = (size_t)(s + i - w);

        if (bit == SMTP_EXT_AUTH) {
            if (smtp_ehlo_is(w, wl, "PLAIN"))
                e->auth |= SMTP_AUTH_PLAIN;
            else if (smtp_ehlo_is(w, wl, "LOGIN"))
                e->auth |= SMTP_AUTH_LOGIN;
            else
                e->auth |= SMTP_AUTH_OTHER;
        } else if (bit == SMTP_EXT_XCLIENT) {
            for (size_t k = 0;
                 k < sizeof(smtp_ehlo_xclient_attrs) / sizeof(smtp_ehlo_xclient_attrs[0]); k++)
                if (smtp_ehlo_is(w, wl, smtp_ehlo_xclient_attrs[k].name))
                    e->xclient |= smtp_ehlo_xclient_attrs[k].bit;
        } else if (bit == SMTP_EXT_SIZE) {
            uint64_t v = 0;

            /* Digits only; a value past UINT64_MAX saturates. */
            for (size_t k = 0; k < wl; k++) {
                if (w[k] < '0' || w[k] > '9') {
                    v = 0;
                    break;
                }
                if (v > (UINT64_MAX - 9) / 10)
                    v = UINT64_MAX;
                else
                    v = v * 10 + (uint64_t)(w[k] - '0');
            }
            e->size = v;
            break;
        }
    }
}
