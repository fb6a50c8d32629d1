/*
 * imap_parse.c - the resumable byte loop behind imap_parse(); see
 * imap_parse.h.
 *
 * The parser reads one byte at a time (literal data in bulk) and keeps all
 * its state in struct imap_parser, so that input may be split anywhere. What
 * it keeps (the tag, LOGIN's and AUTHENTICATE's arguments, a SASL line) is
 * copied into the parser's arena; nothing points into the caller's buffer.
 *
 * An invalid command is reported as soon as it is seen, and the rest of its
 * line is then skipped. The skipping still watches for a non-synchronizing
 * literal "{n+}" at the end of the line and skips its n bytes too, so that
 * literal data is never taken for commands (nginx's history shows this is
 * where mail parsers go wrong). A synchronizing "{n}" there just ends the
 * line: the client waits for a "+" that does not come.
 *
 * It owns no policy beyond syntax and limits: whether a command is allowed
 * now (STARTTLS twice, LOGIN on a cleartext port) is the session's call.
 */
#include "proxy/imap_parse.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

enum imap_parse_state {
    ST_LINE_START = 0, /* before the first byte of a command */
    ST_TAG,            /* in the tag */
    ST_CMD,            /* in the command name */
    ST_SEP,            /* after a token: SP, CRLF or ')' as the grammar allows */
    ST_VALUE_START,    /* first byte of a value of kind vkind */
    ST_ATOM,           /* in an atom-like value (atom, mechanism, base64, NIL) */
    ST_QUOTED,         /* in a quoted string */
    ST_QUOTED_ESC,     /* after a backslash in a quoted string */
    ST_LIT_SIZE,       /* in "{123" */
    ST_LIT_PLUS,       /* after "{123+" */
    ST_LIT_END,        /* after "}", expecting CRLF */
    ST_LITERAL,        /* in literal data, lit_left bytes to go */
    ST_CR,             /* after a CR: LF resumes cr_state, anything else is bad */
    ST_SKIP,           /* skipping the rest of an invalid line */
    ST_SKIP_LITERAL,   /* skipping a {n+} literal of an invalid line */
    ST_SASL_START,     /* before the first byte of a SASL line */
    ST_SASL,           /* in a SASL line */
    ST_DEAD,           /* after IMAP_ERROR */
};

/* Kinds of value, each with its own first bytes and characters. */
enum imap_parse_vkind {
    VK_ASTRING = 1,    /* atom, quoted or literal (LOGIN) */
    VK_MECH,           /* a SASL mechanism name */
    VK_B64,            /* a SASL initial response: base64 or "=" */
    VK_ID_PARAMS,      /* NIL or "(" */
    VK_ID_FIELD_OR_END,/* right after "(": a string or ")" */
    VK_STRING,         /* quoted or literal (ID field) */
    VK_NSTRING,        /* quoted, literal or NIL (ID value) */
};

/* Grammar steps of ID; LOGIN and AUTHENTICATE count their arguments. */
enum {
    ID_STEP_START = 0,
    ID_STEP_AFTER_FIELD,
    ID_STEP_AFTER_VALUE,
    ID_STEP_DONE,
};

/* States of the "{n+}" detector while skipping. */
enum {
    SK_NONE = 0,
    SK_DIGITS,   /* after "{" and maybe digits */
    SK_PLUS,     /* after "{n+" */
    SK_NONSYNC,  /* after "{n+}" */
    SK_NONSYNC_CR,
};

static const struct {
    const char *name;
    enum imap_command cmd;
} imap_parse_commands[] = {
    {"CAPABILITY", IMAP_CMD_CAPABILITY},
    {"NOOP", IMAP_CMD_NOOP},
    {"LOGOUT", IMAP_CMD_LOGOUT},
    {"STARTTLS", IMAP_CMD_STARTTLS},
    {"ID", IMAP_CMD_ID},
    {"LOGIN", IMAP_CMD_LOGIN},
    {"AUTHENTICATE", IMAP_CMD_AUTHENTICATE},
};

/* Commands that exist, but only after authentication: a clearer error. */
static const char *const imap_parse_later_commands[] = {
    "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
    "UNSUBSCRIBE", "LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE",
    "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID", "IDLE",
    "ENABLE", "NAMESPACE", "UNSELECT", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA",
    "GETACL", "SETACL", "MYRIGHTS", "LISTRIGHTS", "DELETEACL", "GETMETADATA",
    "SETMETADATA", "COMPRESS", "NOTIFY", "SORT", "THREAD",
};

/* ---- character classes (RFC 9051 section 9) ---- */

/* ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]. */
static int
imap_parse_is_atom_char(unsigned char c)
{
    if (c <= 0x1f || c >= 0x7f)
        return 0;
    switch (c) {
    case '(': case ')': case '{': case ' ': case '%': case '*':
    case '"': case '\\': case ']':
        return 0;
    }
    return 1;
}

/* A tag: astring-char (ATOM-CHAR or "]") except "+". */
static int
imap_parse_is_tag_char(unsigned char c)
{
    return (imap_parse_is_atom_char(c) || c == ']') && c != '+';
}

/*
 * An astring's atom. 8-bit bytes are allowed beyond the RFC, as servers
 * allow them, because real clients send UTF-8 user names unquoted.
 */
static int
imap_parse_is_astring_char(unsigned char c)
{
    return imap_parse_is_atom_char(c) || c == ']' || c >= 0x80;
}

static int
imap_parse_is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

/* Whether c may continue the atom-like value of kind vkind. */
static int
imap_parse_atom_accepts(int vkind, unsigned char c)
{
    switch (vkind) {
    case VK_ASTRING:
        return imap_parse_is_astring_char(c);
    case VK_B64:
        return imap_parse_is_b64_char(c);
    default: /* VK_MECH, and NIL in VK_ID_PARAMS / VK_NSTRING */
        return imap_parse_is_atom_char(c);
    }
}

/* ---- arena and results ---- */

/* Wipes what the last command left (it may hold a password). */
static void
imap_parse_clear(struct imap_parser *p)
{
    explicit_bzero(p->arena, p->arena_used);
    p->arena_used = 0;
    p->tag[0] = '\0';
    p->tag_len = 0;
    p->cmd = IMAP_CMD_NONE;
    p->nargs = 0;
    memset(p->args, 0, sizeof(p->args));
    memset(p->arglen, 0, sizeof(p->arglen));
    p->error = NULL;
    p->step = 0;
    p->line_len = 0;
    p->word_len = 0;
    p->id_pairs = 0;
    p->sasl_cr = 0;
    p->cr_pending = 0;
}

/* Appends n bytes to the value being read; 0 or -1 if the arena is full. */
static int
imap_parse_put(struct imap_parser *p, const void *data, size_t n)
{
    /* One byte stays free for each value's NUL. */
    if (n > sizeof(p->arena) - 1 - p->arena_used)
        return -1;
    memcpy(p->arena + p->arena_used, data, n);
    p->arena_used += n;
    return 0;
}

/* Fills args[] from the arena offsets, just before results are returned. */
static void
imap_parse_publish(struct imap_parser *p)
{
    for (int i = 0; i < p->nargs; i++)
        p->args[i] = p->arena + p->argoff[i];
}

/*
 * Counts line byte c against max_line; 0 or -1. The CRLF that ends a line
 * is not counted, so a CR is counted only once the next byte shows that it
 * was not the end (a bare CR is still a byte of the line).
 */
static int
imap_parse_count(struct imap_parser *p, unsigned char c)
{
    size_t add;

    if (c == '\n') {
        p->cr_pending = 0;
        return 0;
    }
    add = (c != '\r') + (p->cr_pending != 0);
    p->cr_pending = c == '\r';
    p->line_len += add;
    return p->line_len > p->max_line ? -1 : 0;
}

/* ---- outcomes ---- */

static enum imap_status
imap_parse_fail(struct imap_parser *p, const char *msg)
{
    p->error = msg;
    p->state = ST_DEAD;
    p->nargs = 0;
    return IMAP_ERROR;
}

static void imap_parse_skip_byte(struct imap_parser *p, unsigned char c);

/*
 * Reports the current command as invalid because of byte c, which is
 * consumed: if it is the LF, the line is over; otherwise the rest of the
 * line is skipped, c included (it may be the "{" of a literal).
 */
static enum imap_status
imap_parse_invalid(struct imap_parser *p, unsigned char c, const char *msg)
{
    p->error = msg;
    p->nargs = 0;
    if (c == '\n') {
        p->state = ST_LINE_START;
    } else {
        p->state = ST_SKIP;
        p->skip_lit = SK_NONE;
        imap_parse_skip_byte(p, c);
    }
    return IMAP_INVALID;
}

static enum imap_status
imap_parse_done(struct imap_parser *p)
{
    imap_parse_publish(p);
    p->state = ST_LINE_START;
    return IMAP_OK;
}

/* ---- values ---- */

/*
 * Starts a value of kind vkind after a SP. Kept values become args[]; the
 * grammar moves to next_step once the value is complete.
 */
static void
imap_parse_begin_value(struct imap_parser *p, int vkind, int keep, int next_step)
{
    p->vkind = vkind;
    p->keep = keep;
    p->next_step = next_step;
    p->cur_off = p->arena_used;
    p->word_len = 0;
    p->state = ST_VALUE_START;
}

/* Ends the value being read; 0 or -1 (the arena is full). */
static int
imap_parse_end_value(struct imap_parser *p)
{
    if (p->keep) {
        if (p->nargs >= IMAP_MAX_ARGS || p->arena_used >= sizeof(p->arena))
            return -1;
        p->argoff[p->nargs] = p->cur_off;
        p->arglen[p->nargs] = p->arena_used - p->cur_off;
        p->arena[p->arena_used++] = '\0';
        p->nargs++;
    }
    p->step = p->next_step;
    p->state = ST_SEP;
    return 0;
}

/* Stores one byte of an atom or quoted string. */
static int
imap_parse_value_byte(struct imap_parser *p, unsigned char c)
{
    if (p->word_len < sizeof(p->word))
        p->word[p->word_len] = (char)c;
    if (p->word_len <= sizeof(p->word))
        p->word_len++;
    return p->keep ? imap_parse_put(p, &c, 1) : 0;
}

static int
imap_parse_word_is(const struct imap_parser *p, const char *s)
{
    size_t n = strlen(s);

    return p->word_len == n && strncasecmp(p->word, s, n) == 0;
}

/* ---- skipping an invalid line ---- */

/*
 * Skips byte c of an invalid line, never an LF (imap_parse_step handles
 * that), while watching for "{n+}" followed by the line's end.
 */
static void
imap_parse_skip_byte(struct imap_parser *p, unsigned char c)
{
    if (c == '{') {
        p->skip_lit = SK_DIGITS;
        p->lit_size = 0;
        p->lit_digits = 0;
        return;
    }
    switch (p->skip_lit) {
    case SK_DIGITS:
        if (c >= '0' && c <= '9') {
            if (p->lit_size <= p->max_literal)
                p->lit_size = p->lit_size * 10 + (c - '0');
            p->lit_digits++;
        } else if (c == '+' && p->lit_digits > 0) {
            p->skip_lit = SK_PLUS;
        } else {
            p->skip_lit = SK_NONE;
        }
        break;
    case SK_PLUS:
        p->skip_lit = c == '}' ? SK_NONSYNC : SK_NONE;
        break;
    case SK_NONSYNC:
        p->skip_lit = c == '\r' ? SK_NONSYNC_CR : SK_NONE;
        break;
    default:
        p->skip_lit = SK_NONE;
        break;
    }
}

/* ---- the grammar between tokens ---- */

/*
 * Byte c follows a complete token (the command name or a value): it must be
 * a SP before the next value, the line's end, or ")" in ID, as the
 * command's grammar says at this step.
 */
static enum imap_status
imap_parse_sep(struct imap_parser *p, unsigned char c)
{
    const char *bad = c == '\n' ? "Missing arguments" : "Syntax error";

    switch (p->cmd) {
    case IMAP_CMD_CAPABILITY:
    case IMAP_CMD_NOOP:
    case IMAP_CMD_LOGOUT:
    case IMAP_CMD_STARTTLS:
        if (c == '\n')
            return imap_parse_done(p);
        if (c == ' ')
            bad = "Unexpected arguments";
        break;

    case IMAP_CMD_LOGIN:
        if (p->step < 2 && c == ' ') {
            imap_parse_begin_value(p, VK_ASTRING, 1, p->step + 1);
            return IMAP_AGAIN;
        }
        if (p->step == 2 && c == '\n')
            return imap_parse_done(p);
        if (p->step == 2 && c == ' ')
            bad = "Too many arguments";
        break;

    case IMAP_CMD_AUTHENTICATE:
        if (p->step == 0 && c == ' ') {
            imap_parse_begin_value(p, VK_MECH, 1, 1);
            return IMAP_AGAIN;
        }
        if (p->step == 1 && c == ' ') {
            imap_parse_begin_value(p, VK_B64, 1, 2);
            return IMAP_AGAIN;
        }
        if (p->step >= 1 && c == '\n')
            return imap_parse_done(p);
        if (p->step == 2 && c == ' ')
            bad = "Too many arguments";
        break;

    case IMAP_CMD_ID:
        switch (p->step) {
        case ID_STEP_START:
            if (c == ' ') {
                imap_parse_begin_value(p, VK_ID_PARAMS, 0, ID_STEP_DONE);
                return IMAP_AGAIN;
            }
            break;
        case ID_STEP_AFTER_FIELD:
            if (c == ' ') {
                imap_parse_begin_value(p, VK_NSTRING, 0, ID_STEP_AFTER_VALUE);
                return IMAP_AGAIN;
            }
            break;
        case ID_STEP_AFTER_VALUE:
            if (c == ' ') {
                if (++p->id_pairs >= IMAP_ID_MAX_PAIRS)
                    return imap_parse_invalid(p, c, "Too many ID fields");
                imap_parse_begin_value(p, VK_STRING, 0, ID_STEP_AFTER_FIELD);
                return IMAP_AGAIN;
            }
            if (c == ')') {
                p->step = ID_STEP_DONE;
                return IMAP_AGAIN;
            }
            break;
        case ID_STEP_DONE:
            if (c == '\n')
                return imap_parse_done(p);
            break;
        }
        break;

    default:
        break;
    }
    return imap_parse_invalid(p, c, bad);
}

/*
 * The first byte c of a value. Returns IMAP_AGAIN with *used = 0 when c
 * must be read again in the state just entered.
 */
static enum imap_status
imap_parse_value_start(struct imap_parser *p, unsigned char c, int *used)
{
    if (c == '\n')
        return imap_parse_invalid(p, c, "Missing arguments");

    switch (p->vkind) {
    case VK_ID_PARAMS:
        if (c == '(') {
            p->vkind = VK_ID_FIELD_OR_END;
            return IMAP_AGAIN;
        }
        break;
    case VK_ID_FIELD_OR_END:
        if (c == ')') {
            p->step = ID_STEP_DONE;
            p->state = ST_SEP;
            return IMAP_AGAIN;
        }
        p->vkind = VK_STRING;
        p->next_step = ID_STEP_AFTER_FIELD;
        *used = 0;
        return IMAP_AGAIN;
    case VK_ASTRING:
    case VK_STRING:
    case VK_NSTRING:
        if (c == '"') {
            p->state = ST_QUOTED;
            return IMAP_AGAIN;
        }
        if (c == '{') {
            p->lit_size = 0;
            p->lit_digits = 0;
            p->lit_nonsync = 0;
            p->state = ST_LIT_SIZE;
            return IMAP_AGAIN;
        }
        break;
    default:
        break;
    }

    /* An atom-like value: VK_STRING has none. */
    if (p->vkind != VK_STRING && imap_parse_atom_accepts(p->vkind, c)) {
        p->state = ST_ATOM;
        *used = 0;
        return IMAP_AGAIN;
    }
    return imap_parse_invalid(p, c, "Syntax error");
}

/* Ends an atom-like value; c, the byte after it, is read again in ST_SEP. */
static enum imap_status
imap_parse_end_atom(struct imap_parser *p, unsigned char c, int *used)
{
    /* In ID, an atom must be NIL. */
    if ((p->vkind == VK_ID_PARAMS || p->vkind == VK_NSTRING)
        && !imap_parse_word_is(p, "NIL"))
        return imap_parse_invalid(p, c, "Syntax error");
    if (imap_parse_end_value(p) < 0)
        return imap_parse_fail(p, "Command too long");
    *used = 0;
    return IMAP_AGAIN;
}

/* The LF after "{n}" or "{n+}": the literal's data starts. */
static enum imap_status
imap_parse_literal_start(struct imap_parser *p, unsigned char c)
{
    if (p->lit_size > p->max_literal) {
        if (p->lit_nonsync)
            return imap_parse_fail(p, "Literal too big");
        /* The client waits for "+" and will not send the data. */
        return imap_parse_invalid(p, c, "Literal too big");
    }
    if (p->keep && p->lit_size > sizeof(p->arena) - 1 - p->arena_used)
        return imap_parse_fail(p, "Command too long");
    p->lit_left = p->lit_size;
    p->state = ST_LITERAL;
    return p->lit_nonsync ? IMAP_AGAIN : IMAP_CONTINUE;
}

/* The command name is complete; c (SP or LF) is read again in ST_SEP. */
static enum imap_status
imap_parse_command_name(struct imap_parser *p, unsigned char c, int *used)
{
    size_t i;

    if (p->word_len == 0)
        return imap_parse_invalid(p, c, "Missing command");
    for (i = 0; i < sizeof(imap_parse_commands) / sizeof(imap_parse_commands[0]); i++) {
        if (imap_parse_word_is(p, imap_parse_commands[i].name)) {
            p->cmd = imap_parse_commands[i].cmd;
            p->step = 0;
            p->state = ST_SEP;
            *used = 0;
            return IMAP_AGAIN;
        }
    }
    for (i = 0; i < sizeof(imap_parse_later_commands) / sizeof(imap_parse_later_commands[0]); i++)
        if (imap_parse_word_is(p, imap_parse_later_commands[i]))
            return imap_parse_invalid(p, c, "Command not permitted before authentication");
    return imap_parse_invalid(p, c, "Unknown command");
}

/*
 * One byte c in a line state. Returns IMAP_AGAIN to go on, anything else to
 * return to the caller. *used is 1 if c was consumed, 0 if the state
 * changed and c must be read again.
 */
static enum imap_status
imap_parse_step(struct imap_parser *p, unsigned char c, int *used)
{
    *used = 1;

    /* A CR may end the line: decide when the next byte shows. */
    if (c == '\r') {
        switch (p->state) {
        case ST_TAG:
        case ST_CMD:
        case ST_SEP:
        case ST_VALUE_START:
        case ST_ATOM:
        case ST_LIT_END:
            p->cr_state = p->state;
            p->state = ST_CR;
            return IMAP_AGAIN;
        default:
            break;
        }
    }

    switch (p->state) {
    case ST_CR:
        if (c == '\n') {
            p->state = p->cr_state;
            *used = 0;
            return IMAP_AGAIN;
        }
        return imap_parse_invalid(p, c, "CR without LF");

    case ST_TAG:
        if (c == '\n')
            return imap_parse_invalid(p, c, p->tag_len == 0 ? "Empty command"
                                                            : "Missing command");
        if (c == ' ') {
            if (p->tag_len == 0)
                return imap_parse_invalid(p, c, "Missing tag");
            p->state = ST_CMD;
            p->word_len = 0;
            return IMAP_AGAIN;
        }
        if (!imap_parse_is_tag_char(c) || p->tag_len == IMAP_TAG_MAX) {
            const char *msg = p->tag_len == IMAP_TAG_MAX ? "Tag too long" : "Invalid tag";

            p->tag_len = 0;
            p->tag[0] = '\0';
            return imap_parse_invalid(p, c, msg);
        }
        p->tag[p->tag_len++] = (char)c;
        p->tag[p->tag_len] = '\0';
        return IMAP_AGAIN;

    case ST_CMD:
        if (c == ' ' || c == '\n')
            return imap_parse_command_name(p, c, used);
        if (!imap_parse_is_atom_char(c))
            return imap_parse_invalid(p, c, "Invalid command name");
        if (p->word_len < sizeof(p->word))
            p->word[p->word_len] = (char)c;
        if (p->word_len <= sizeof(p->word))
            p->word_len++;
        return IMAP_AGAIN;

    case ST_SEP:
        return imap_parse_sep(p, c);

    case ST_VALUE_START:
        return imap_parse_value_start(p, c, used);

    case ST_ATOM:
        if (!imap_parse_atom_accepts(p->vkind, c))
            return imap_parse_end_atom(p, c, used);
        if (imap_parse_value_byte(p, c) < 0)
            return imap_parse_fail(p, "Command too long");
        return IMAP_AGAIN;

    case ST_QUOTED:
        if (c == '"') {
            if (imap_parse_end_value(p) < 0)
                return imap_parse_fail(p, "Command too long");
            return IMAP_AGAIN;
        }
        if (c == '\\') {
            p->state = ST_QUOTED_ESC;
            return IMAP_AGAIN;
        }
        if (c == '\r' || c == '\n')
            return imap_parse_invalid(p, c, "Unterminated quoted string");
        if (c == '\0')
            return imap_parse_invalid(p, c, "NUL in quoted string");
        if (imap_parse_value_byte(p, c) < 0)
            return imap_parse_fail(p, "Command too long");
        return IMAP_AGAIN;

    case ST_QUOTED_ESC:
        if (c != '"' && c != '\\')
            return imap_parse_invalid(p, c, c == '\n' ? "Unterminated quoted string"
                                                      : "Bad escape in quoted string");
        p->state = ST_QUOTED;
        if (imap_parse_value_byte(p, c) < 0)
            return imap_parse_fail(p, "Command too long");
        return IMAP_AGAIN;

    case ST_LIT_SIZE:
        if (c >= '0' && c <= '9') {
            /* Saturate: any size above max_literal is refused alike. */
            if (p->lit_size <= p->max_literal)
                p->lit_size = p->lit_size * 10 + (c - '0');
            p->lit_digits++;
            return IMAP_AGAIN;
        }
        if (p->lit_digits > 0 && (c == '+' || c == '}')) {
            p->lit_nonsync = c == '+';
            p->state = c == '+' ? ST_LIT_PLUS : ST_LIT_END;
            return IMAP_AGAIN;
        }
        return imap_parse_invalid(p, c, "Bad literal");

    case ST_LIT_PLUS:
        if (c != '}')
            return imap_parse_invalid(p, c, "Bad literal");
        p->state = ST_LIT_END;
        return IMAP_AGAIN;

    case ST_LIT_END:
        if (c != '\n')
            return imap_parse_invalid(p, c, "Missing CRLF after literal size");
        return imap_parse_literal_start(p, c);

    case ST_SKIP:
        if (c != '\n') {
            imap_parse_skip_byte(p, c);
            return IMAP_AGAIN;
        }
        if (p->skip_lit == SK_NONSYNC || p->skip_lit == SK_NONSYNC_CR) {
            if (p->lit_size > p->max_literal)
                return imap_parse_fail(p, "Literal too big");
            p->lit_left = p->lit_size;
            p->skip_lit = SK_NONE;
            p->state = ST_SKIP_LITERAL;
            return IMAP_AGAIN;
        }
        p->state = ST_LINE_START;
        return IMAP_AGAIN;

    case ST_SASL:
        if (c == '\n') {
            p->sasl_cr = 0;
            if (imap_parse_end_value(p) < 0)
                return imap_parse_fail(p, "Command too long");
            return imap_parse_done(p);
        }
        if (p->sasl_cr) {
            /* A CR inside the line is data (base64 decoding refuses it). */
            p->sasl_cr = 0;
            if (imap_parse_put(p, "\r", 1) < 0)
                return imap_parse_fail(p, "Command too long");
        }
        if (c == '\r') {
            p->sasl_cr = 1;
            return IMAP_AGAIN;
        }
        if (imap_parse_put(p, &c, 1) < 0)
            return imap_parse_fail(p, "Command too long");
        return IMAP_AGAIN;

    default:
        /* ST_LITERAL and the others are handled by imap_parse itself. */
        return imap_parse_fail(p, "Internal parser error");
    }
}

void
imap_parser_init(struct imap_parser *p, size_t max_line, size_t max_literal)
{
    /*
     * Everything but the arena: it is only ever read below arena_used, and
     * zeroing its 16 KiB cost more than the rest of a connection's parsing.
     */
    memset(p, 0, offsetof(struct imap_parser, arena));
    p->max_line = (max_line == 0 || max_line > IMAP_LINE_CAP) ? IMAP_LINE_CAP : max_line;
    p->max_literal = (max_literal == 0 || max_literal > IMAP_LITERAL_CAP)
                         ? IMAP_LITERAL_CAP : max_literal;
    p->state = ST_LINE_START;
}

void
imap_parser_wipe(struct imap_parser *p)
{
    imap_parse_clear(p);
}

void
imap_parser_reset(struct imap_parser *p)
{
    /* Wipe everything the arena ever held, not only the last command. */
    p->arena_used = sizeof(p->arena);
    imap_parse_clear(p);
    p->state = ST_LINE_START;
    p->skip_lit = SK_NONE;
    p->lit_left = 0;
    p->lit_size = 0;
}

void
imap_parser_expect_line(struct imap_parser *p)
{
    if (p->state != ST_DEAD)
        p->state = ST_SASL_START;
}

enum imap_status
imap_parse(struct imap_parser *p, const char *buf, size_t len, size_t *consumed)
{
    const unsigned char *s = (const unsigned char *)buf;
    enum imap_status st;
    size_t i = 0, n;
    int used;

    *consumed = 0;
    if (p->state == ST_DEAD)
        return IMAP_ERROR;

    while (i < len) {
        /* Literal data goes in bulk, and is not counted as line bytes. */
        if (p->state == ST_LITERAL || p->state == ST_SKIP_LITERAL) {
            n = len - i;
            if (n > p->lit_left)
                n = (size_t)p->lit_left;
            if (p->state == ST_LITERAL && p->keep
                && imap_parse_put(p, s + i, n) < 0) {
                *consumed = i;
                return imap_parse_fail(p, "Command too long");
            }
            i += n;
            p->lit_left -= n;
            if (p->lit_left == 0) {
                if (p->state == ST_SKIP_LITERAL) {
                    /* The invalid line goes on after its literal. */
                    p->state = ST_SKIP;
                    p->skip_lit = SK_NONE;
                } else if (imap_parse_end_value(p) < 0) {
                    *consumed = i;
                    return imap_parse_fail(p, "Command too long");
                }
            }
            continue;
        }

        if (p->state == ST_LINE_START) {
            imap_parse_clear(p);
            p->state = ST_TAG;
        } else if (p->state == ST_SASL_START) {
            imap_parse_clear(p);
            p->cmd = IMAP_CMD_SASL_LINE;
            p->keep = 1;
            p->next_step = 0;
            p->cur_off = 0;
            p->state = ST_SASL;
        }

        if (imap_parse_count(p, s[i]) < 0) {
            *consumed = i;
            return imap_parse_fail(p, "Line too long");
        }

        do {
            st = imap_parse_step(p, s[i], &used);
        } while (st == IMAP_AGAIN && !used);
        i++;
        if (st != IMAP_AGAIN) {
            /* IMAP_ERROR leaves the byte that caused it unconsumed. */
            *consumed = st == IMAP_ERROR ? i - 1 : i;
            return st;
        }
    }
    *consumed = i;
    return IMAP_AGAIN;
}
