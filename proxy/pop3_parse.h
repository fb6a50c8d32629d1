/*
 * pop3_parse.h - the sans-I/O parser of POP3 commands before authentication
 * (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), and the
 * classifier of the backend's POP3 reply lines.
 *
 * It owns the syntax of what a client may send before it is logged in: the
 * command names, their arguments, and the lines of a SASL exchange. It does
 * not own what the commands mean (the session does), the SASL payloads
 * (proxy/sasl.c) nor any I/O: it is fed bytes and answers with one event at
 * a time. No uv.h, no sockets, no clocks, no allocation; all its memory is
 * inside struct pop3_parser (and struct pop3_reply).
 */
#ifndef MFA_POP3_PARSE_H
#define MFA_POP3_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Ceiling of the max_line given to pop3_parser_init(). RFC 2449 bounds a
 * command line to 255 octets, but RFC 5034 lifts that bound for AUTH and its
 * responses: a SASL PLAIN response of sasl.h's SASL_MAX_DECODED bytes is
 * 4096 base64 characters.
 */
#define POP3_LINE_CAP 8192

/*
 * The arena holds one line, NUL-terminated; its arguments are cut out of it
 * in place, and one byte at its end stays "" for absent arguments.
 */
#define POP3_ARENA_SIZE (POP3_LINE_CAP + 8)

/* The longest SASL mechanism name (RFC 4422 section 3.1). */
#define POP3_MECH_MAX 20             /* = SASL_MECH_MAX */

/* Ceiling of a backend reply line (RFC 2449: 512 octets with the CRLF). */
#define POP3_REPLY_LINE_CAP 4096

/* Same values and meanings as enum imap_status (no CONTINUE in POP3). */
enum pop3_status {
    POP3_OK = 0,  /* one whole line parsed; results in the parser until the next call */
    POP3_AGAIN,   /* all input consumed, need more bytes */
    POP3_INVALID, /* a bad line, consumed whole: reply "-ERR <p->error>" */
    POP3_ERROR,   /* cannot go on (line too long): "-ERR <p->error>" and close */
};

enum pop3_command {
    POP3_CMD_NONE = 0,
    POP3_CMD_CAPA,
    POP3_CMD_STLS,
    POP3_CMD_USER,
    POP3_CMD_PASS,
    POP3_CMD_AUTH,
    POP3_CMD_APOP,      /* reported so that the session can refuse it by name */
    POP3_CMD_NOOP,      /* a TRANSACTION command, harmless before login */
    POP3_CMD_QUIT,
    POP3_CMD_SASL_LINE, /* a SASL continuation response line (see pop3_parser_expect_line) */
};

/*
 * One parser per connection. Results after POP3_OK:
 *   CAPA, STLS, NOOP, QUIT: nargs 0.
 *   USER: nargs 1, the name (one word: no SP, no control character).
 *   PASS: nargs 1, everything after "PASS" and one SP, byte for byte
 *     (spaces, 8-bit bytes and control characters other than NUL kept;
 *     RFC 1939 section 7 lets a server read spaces as part of it).
 *   AUTH: nargs 0 (list the mechanisms), 1 (mechanism) or 2 (+ initial
 *     response, base64 characters or "=" for an empty one, not decoded).
 *   APOP: nargs 2, name and digest.
 *   SASL_LINE: nargs 1, the line without its CRLF. Nothing in it is
 *     refused here: a CR or NUL in it is data, which base64 decoding refuses.
 * Words (the command, USER's name, AUTH's and APOP's arguments) may be
 * separated by more than one SP, and trailing SPs are ignored, as clients
 * are sloppy; PASS is the exception, as its argument may begin or end with
 * spaces.
 * After POP3_INVALID: cmd (POP3_CMD_NONE if the name was not a known
 * command) and error; nargs is 0.
 *
 * arg and arg2 are never NULL: absent arguments are "". They point into the
 * parser's arena, NUL-terminated: do not copy the struct between a result
 * and its use. A password stays in the arena until the next line starts or
 * pop3_parser_reset(), which wipe it.
 */
struct pop3_parser {
    /* results: valid after POP3_OK/POP3_INVALID until the next pop3_parse call */
    enum pop3_command cmd;
    int nargs;          /* 0, 1 or 2 */
    char *arg;          /* the first argument, or "" */
    size_t arglen;
    char *arg2;         /* the second argument, or "" */
    size_t arg2len;
    const char *error;  /* static text for -ERR, after INVALID/ERROR */

    /* limit, as clamped by pop3_parser_init */
    size_t max_line;    /* bytes of a line, CRLF not counted */

    /* private resumable state; see pop3_parse.c */
    int state;          /* enum pop3_parse_state */
    int cr_pending;     /* the last byte was a CR: the line's end, or bare */
    const char *bad;    /* why the line being read is invalid, or NULL */
    size_t line_len;    /* bytes of the line so far (at arena[0]) */
    size_t arena_used;  /* bytes to wipe before the next line */
    char arena[POP3_ARENA_SIZE];
};

/* Prepares p. A max_line of 0, or above POP3_LINE_CAP, is taken as the cap. */
void pop3_parser_init(struct pop3_parser *p, size_t max_line);

/* Forgets everything (after STLS): the next byte starts a new command. */
void pop3_parser_reset(struct pop3_parser *p);

/*
 * The next line is a SASL response: pop3_parse returns POP3_OK with cmd
 * POP3_CMD_SASL_LINE and arg = the line without CRLF (bounded by max_line).
 * Call it at a line boundary, i.e. after POP3_OK.
 */
void pop3_parser_expect_line(struct pop3_parser *p);

/*
 * Feeds bytes. *consumed = how many bytes were used (<= len). The parser
 * copies what it keeps into its arena, so consumed bytes can be dropped by
 * the caller; call again with the rest after acting on OK/INVALID (a client
 * may send USER and PASS in one packet). POP3_AGAIN always consumes all of
 * len; OK and INVALID consume the line up to its LF included. POP3_ERROR is
 * final: later calls return it again, consume nothing, until
 * pop3_parser_reset().
 */
enum pop3_status pop3_parse(struct pop3_parser *p, const char *buf, size_t len,
                            size_t *consumed);

/* ---- the backend's side ---- */

enum pop3_reply_kind {
    POP3_REPLY_NONE = 0,
    POP3_REPLY_OK,   /* "+OK" [SP text] */
    POP3_REPLY_ERR,  /* "-ERR" [SP text] */
    POP3_REPLY_CONT, /* "+" [SP text]: a SASL challenge (RFC 5034) */
    POP3_REPLY_LINE, /* any other line: a line of a multi-line answer ("." ends
                        one; a leading "." is stuffed), or a malformed status */
};

/*
 * Reads the backend's reply lines one at a time. After POP3_OK: kind and
 * text (after the status indicator and one SP; for POP3_REPLY_LINE the
 * whole line), NUL-terminated in r. The status indicators are matched
 * case-insensitively.
 * After POP3_INVALID (a NUL or a bare CR in the line, consumed): error.
 * POP3_ERROR (line too long) is final until pop3_reply_init().
 */
struct pop3_reply {
    /* results: valid after POP3_OK until the next pop3_reply_parse call */
    enum pop3_reply_kind kind;
    const char *text;
    size_t textlen;
    const char *error;

    size_t max_line;    /* as clamped by pop3_reply_init */

    /* private */
    int state;
    int cr_pending;
    const char *bad;
    size_t line_len;
    char line[POP3_REPLY_LINE_CAP + 1];
};

/* Prepares r. A max_line of 0, or above POP3_REPLY_LINE_CAP, is the cap. */
void pop3_reply_init(struct pop3_reply *r, size_t max_line);

/* Feeds bytes; *consumed as for pop3_parse. */
enum pop3_status pop3_reply_parse(struct pop3_reply *r, const char *buf, size_t len,
                                  size_t *consumed);

#endif
