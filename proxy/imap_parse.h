/*
 * imap_parse.h - the sans-I/O parser of IMAP commands before authentication
 * (RFC 3501/9051, with RFC 7888 LITERAL+, RFC 4959 SASL-IR, RFC 2971 ID).
 *
 * It owns the syntax of what a client may send before it is logged in:
 * tags, the pre-auth command names, atoms, quoted strings, literals, and the
 * lines of a SASL exchange. It does not own what the commands mean (the
 * session does), the SASL payloads (proxy/sasl.c) nor any I/O: it is fed
 * bytes and answers with one event at a time. No uv.h, no sockets, no clocks,
 * no allocation; all its memory is inside struct imap_parser.
 */
#ifndef MFA_IMAP_PARSE_H
#define MFA_IMAP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define IMAP_TAG_MAX 64
#define IMAP_MAX_ARGS 8

/*
 * Ceilings of the limits given to imap_parser_init(), which sizes the
 * parser's arena: it holds one line of max_line bytes plus the two literals
 * of a LOGIN (LOGIN is the only command whose literals are kept).
 */
#define IMAP_LINE_CAP 8192
#define IMAP_LITERAL_CAP 8192
#define IMAP_ARENA_SIZE (IMAP_LINE_CAP + 2 * IMAP_LITERAL_CAP + IMAP_MAX_ARGS + 1)

/* RFC 2971: "not more than 30 field-value pairs". */
#define IMAP_ID_MAX_PAIRS 30

enum imap_status {
    IMAP_OK = 0,   /* one whole command parsed; results in the parser until the next call */
    IMAP_AGAIN,    /* all input consumed, need more bytes */
    IMAP_CONTINUE, /* a synchronizing literal {n}: send "+ ..." then feed more */
    IMAP_INVALID,  /* a bad command: reply "<tag> BAD <p->error>" (or "* BAD" if no tag); the parser skips the rest of that line by itself */
    IMAP_ERROR,    /* cannot go on (line too long, oversized non-synchronizing literal, ...): "* BYE <p->error>" and close */
};

enum imap_command {
    IMAP_CMD_NONE = 0,
    IMAP_CMD_CAPABILITY,
    IMAP_CMD_NOOP,
    IMAP_CMD_LOGOUT,
    IMAP_CMD_STARTTLS,
    IMAP_CMD_ID,
    IMAP_CMD_LOGIN,
    IMAP_CMD_AUTHENTICATE,
    IMAP_CMD_SASL_LINE, /* a SASL continuation response line (see imap_parser_expect_line) */
};

/*
 * One parser per connection. Results after IMAP_OK:
 *   CAPABILITY, NOOP, LOGOUT, STARTTLS: nargs 0.
 *   LOGIN: nargs 2, user and password (atom, quoted or literal).
 *   AUTHENTICATE: nargs 1 (mechanism) or 2 (+ initial response, base64
 *     characters or "=", not yet decoded).
 *   ID: nargs 0 (the syntax is checked, the pairs are not kept).
 *   SASL_LINE: nargs 1, the line without its CRLF, tag "".
 * After IMAP_INVALID: tag (maybe ""), cmd (IMAP_CMD_NONE if the name was
 * not a pre-auth command) and error; nargs is 0.
 *
 * The arguments point into the parser's arena: do not copy the struct
 * between a result and its use. Passwords stay in the arena until the next
 * line starts or imap_parser_reset(), which wipe it.
 */
struct imap_parser {
    /* results: valid after IMAP_OK/IMAP_INVALID until the next imap_parse call */
    char tag[IMAP_TAG_MAX + 1];   /* "" if none could be read */
    enum imap_command cmd;
    int nargs;
    char *args[IMAP_MAX_ARGS];    /* NUL-terminated copies inside the parser's own arena */
    size_t arglen[IMAP_MAX_ARGS]; /* lengths (a literal may contain NUL: check with arglen) */
    const char *error;            /* static text for BAD/BYE */

    /* limits, as clamped by imap_parser_init */
    size_t max_line;    /* bytes of a command's lines, literal data not counted, CRLF not counted */
    size_t max_literal; /* bytes of one literal */

    /* private resumable state; see imap_parse.c */
    int state;          /* enum imap_parse_state */
    int cr_state;       /* the state that saw a CR, resumed if LF follows */
    int step;           /* position in the command's grammar */
    int next_step;      /* step after the value being read */
    int vkind;          /* kind of value being read */
    int keep;           /* whether the value being read goes to the arena */
    int id_pairs;       /* ID field-value pairs so far */
    int lit_nonsync;    /* the literal being announced is {n+} */
    int lit_digits;     /* digits of its size so far */
    int skip_lit;       /* detector of "{n+}" at the end of a skipped line */
    int sasl_cr;        /* a CR is pending in a SASL line */
    int cr_pending;     /* the last line byte was a CR, not yet counted */
    size_t line_len;    /* counted against max_line */
    size_t tag_len;
    size_t word_len;
    char word[16];      /* a command name, or an atom that must be NIL */
    uint64_t lit_size;  /* saturates above max_literal */
    uint64_t lit_left;  /* literal bytes still to read (or to skip) */
    size_t arena_used;
    size_t argoff[IMAP_MAX_ARGS];
    size_t cur_off;     /* where the value being read starts */
    char arena[IMAP_ARENA_SIZE];
};

/*
 * Prepares p. max_line and max_literal of 0, or above IMAP_LINE_CAP /
 * IMAP_LITERAL_CAP, are taken as those caps.
 */
void imap_parser_init(struct imap_parser *p, size_t max_line, size_t max_literal);

/* Forgets everything (after STARTTLS): the next byte starts a new command. */
void imap_parser_reset(struct imap_parser *p);
/* Wipes what the last command left in the arena (maybe a password): before free(). */
void imap_parser_wipe(struct imap_parser *p);

/*
 * The next line is a SASL response: imap_parse returns IMAP_OK with cmd
 * IMAP_CMD_SASL_LINE and args[0] = the line without CRLF (bounded by
 * max_line). Call it at a line boundary, i.e. after IMAP_OK. It does not
 * revive a parser after IMAP_ERROR.
 */
void imap_parser_expect_line(struct imap_parser *p);

/*
 * Feeds bytes. *consumed = how many bytes were used (<= len). The parser
 * copies what it keeps into its arena, so consumed bytes can be dropped by
 * the caller; call again with the rest after acting on OK/CONTINUE/INVALID.
 * IMAP_AGAIN always consumes all of len; OK, CONTINUE and INVALID consume at
 * least one byte. IMAP_ERROR is final: later calls return it again, consume
 * nothing, until imap_parser_reset().
 */
enum imap_status imap_parse(struct imap_parser *p, const char *buf, size_t len,
                            size_t *consumed);

#endif
