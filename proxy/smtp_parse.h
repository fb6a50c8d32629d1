/*
 * smtp_parse.h - the sans-I/O parser of SMTP commands before authentication
 * (RFC 5321, RFC 3207 STARTTLS, RFC 4954 AUTH, RFC 2920 PIPELINING,
 * RFC 3030 BDAT), and the reader of the backend's SMTP replies with the
 * EHLO keywords they announce (RFC 1870 SIZE among them).
 *
 * It owns the syntax of what a client may send before it has authenticated:
 * the command names, the arguments the session needs, and the lines of a
 * SASL exchange. It does not own what the commands mean (the session does:
 * a MAIL without AUTH is an inbound delivery, relayed or refused), the SASL
 * payloads (proxy/sasl.c) nor any I/O: it is fed bytes and answers with one
 * event at a time, so a pipelined buffer is parsed one command per call. No
 * uv.h, no sockets, no clocks, no allocation; all its memory is inside
 * struct smtp_parser (and struct smtp_reply).
 */
#ifndef MFA_SMTP_PARSE_H
#define MFA_SMTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Ceiling of the max_line given to smtp_parser_init(). RFC 5321 section
 * 4.5.3.1.4 bounds a command line to 512 octets, but RFC 4954 section 4
 * lets an AUTH line with its initial response reach 12288.
 */
#define SMTP_LINE_CAP 12288

/*
 * The arena holds one line as received (with CRLF appended, for the raw
 * line), NUL-terminated copies of its arguments, and one byte at its end
 * that stays "" for absent arguments.
 */
#define SMTP_ARENA_SIZE (2 * SMTP_LINE_CAP + 16)

/* The longest SASL mechanism name (RFC 4422 section 3.1). */
#define SMTP_MECH_MAX 20             /* = SASL_MECH_MAX */

/* Ceiling of a backend reply line (RFC 5321: 512 octets with the CRLF). */
#define SMTP_REPLY_LINE_CAP 2048

/* Lines in one multi-line reply, at most (an EHLO answer has about 15). */
#define SMTP_REPLY_MAX_LINES 128

/* Same values and meanings as enum imap_status (no CONTINUE in SMTP). */
enum smtp_status {
    SMTP_OK = 0,  /* one whole line parsed; results in the parser until the next call */
    SMTP_AGAIN,   /* all input consumed, need more bytes */
    SMTP_INVALID, /* a bad line, consumed whole: reply 500 (cmd NONE) or 501 with p->error */
    SMTP_ERROR,   /* cannot go on (line too long, bad BDAT size): 421/500 with p->error, close */
};

enum smtp_command {
    SMTP_CMD_NONE = 0,
    SMTP_CMD_EHLO,
    SMTP_CMD_HELO,
    SMTP_CMD_STARTTLS,
    SMTP_CMD_AUTH,
    SMTP_CMD_MAIL,
    SMTP_CMD_RCPT,
    SMTP_CMD_DATA,
    SMTP_CMD_BDAT,
    SMTP_CMD_RSET,
    SMTP_CMD_NOOP,
    SMTP_CMD_QUIT,
    SMTP_CMD_HELP,
    SMTP_CMD_VRFY,
    SMTP_CMD_EXPN,
    SMTP_CMD_XCLIENT,   /* reported so that the session can refuse it by name */
    SMTP_CMD_SASL_LINE, /* a SASL continuation response line (see smtp_parser_expect_line) */
};

/*
 * One parser per connection. Results after SMTP_OK:
 *   every command: raw, the line exactly as received but for its end, which
 *     is always CRLF (a bare LF's line too), so it can be replayed to the
 *     backend verbatim.
 *   EHLO, HELO: nargs 1, the domain or address literal (the rest of the line
 *     without surrounding SPs; no control characters).
 *   STARTTLS, DATA, RSET, QUIT: nargs 0.
 *   AUTH: nargs 1 (mechanism) or 2 (+ initial response, base64 characters
 *     or "=" for an empty one, not decoded).
 *   MAIL: "MAIL FROM:<reverse-path> [params]"; arg = the path without its
 *     angle brackets ("" for the null path "<>"), arg2 = the parameters
 *     ("SIZE=1000 BODY=8BITMIME"); nargs 1 or 2. A SP after "FROM:" and an
 *     address without brackets are tolerated, as Postfix does.
 *   RCPT: the same for "RCPT TO:<forward-path> [params]".
 *   BDAT: nargs 1 or 2 ("LAST"); chunk_size and chunk_last. The parser
 *     then skips the chunk's chunk_size bytes by itself (RFC 3030 sends them
 *     without waiting for a reply), so chunk data is never taken for
 *     commands. A BDAT whose size cannot be read is SMTP_ERROR: the bytes
 *     that follow could not be told from commands.
 *   NOOP, HELP: nargs 0 or 1 (the rest of the line, free text).
 *   VRFY, EXPN, XCLIENT: nargs 1 (the rest of the line).
 *   SASL_LINE: nargs 1, the line without its CRLF. Nothing in it is
 *     refused here: a CR or NUL in it is data, which base64 decoding refuses.
 * After SMTP_INVALID: cmd (SMTP_CMD_NONE if the name was not a known
 * command: reply 500 5.5.2; else 501 5.5.4), error, and raw; nargs is 0.
 *
 * arg and arg2 are never NULL: absent arguments are "". Everything points
 * into the parser's arena, NUL-terminated: do not copy the struct between a
 * result and its use. Credentials stay in the arena until the next line
 * starts or smtp_parser_reset(), which wipe it.
 */
struct smtp_parser {
    /* results: valid after SMTP_OK/SMTP_INVALID until the next smtp_parse call */
    enum smtp_command cmd;
    int nargs;          /* 0, 1 or 2 */
    char *arg;          /* the first argument, or "" */
    size_t arglen;
    char *arg2;         /* the second argument, or "" */
    size_t arg2len;
    char *raw;          /* the whole line, ending in CRLF */
    size_t rawlen;      /* with the CRLF */
    uint64_t chunk_size;/* BDAT: the chunk's size */
    int chunk_last;     /* BDAT: the LAST marker was given */
    const char *error;  /* static text for the 5xx reply, after INVALID/ERROR */

    /* limit, as clamped by smtp_parser_init */
    size_t max_line;    /* bytes of a line, CRLF not counted */

    /* private resumable state; see smtp_parse.c */
    int state;          /* enum smtp_parse_state */
    int cr_pending;     /* the last byte was a CR: the line's end, or bare */
    const char *bad;    /* why the line being read is invalid, or NULL */
    size_t line_len;    /* bytes of the line so far (at arena[0]) */
    size_t arena_used;  /* bytes to wipe before the next line */
    uint64_t chunk_left;/* BDAT bytes still to skip */
    char arena[SMTP_ARENA_SIZE];
};

/* Prepares p. A max_line of 0, or above SMTP_LINE_CAP, is taken as the cap. */
void smtp_parser_init(struct smtp_parser *p, size_t max_line);

/* Forgets everything (after STARTTLS): the next byte starts a new command. */
void smtp_parser_reset(struct smtp_parser *p);

/*
 * The next line is a SASL response: smtp_parse returns SMTP_OK with cmd
 * SMTP_CMD_SASL_LINE and arg = the line without CRLF (bounded by max_line).
 * Call it at a line boundary, i.e. after SMTP_OK.
 */
void smtp_parser_expect_line(struct smtp_parser *p);

/*
 * Feeds bytes. *consumed = how many bytes were used (<= len). The parser
 * copies what it keeps into its arena, so consumed bytes can be dropped by
 * the caller; call again with the rest after acting on OK/INVALID (with
 * PIPELINING, a buffer holds several commands). SMTP_AGAIN always consumes
 * all of len; OK and INVALID consume the line up to its LF included.
 * SMTP_ERROR is final: later calls return it again, consume nothing, until
 * smtp_parser_reset().
 */
enum smtp_status smtp_parse(struct smtp_parser *p, const char *buf, size_t len,
                            size_t *consumed);

/* ---- the backend's side ---- */

/*
 * Reads the backend's reply lines one at a time ("250-PIPELINING",
 * "250 SIZE 10240000", "334 xyz", "250" alone). After SMTP_OK: code, last
 * (whether the line ends its reply: "ddd " or "ddd" rather than "ddd-"),
 * lineno within the reply, and text (after "ddd " or "ddd-"),
 * NUL-terminated in r.
 * After SMTP_INVALID (the line is consumed; the reply under way is
 * forgotten): error. Malformed: a code that is not three digits [2-5][0-5]
 * [0-9], a fourth byte other than SP or "-", a continuation line whose code
 * differs, a NUL or a bare CR.
 * SMTP_ERROR (a line over max_line, a reply of more than
 * SMTP_REPLY_MAX_LINES lines) is final until smtp_reply_init().
 */
struct smtp_reply {
    /* results: valid after SMTP_OK until the next smtp_reply_parse call */
    int code;           /* 200..559 */
    int last;           /* 1 if this line ends the reply */
    int lineno;         /* 0 for the first line of a reply */
    const char *text;
    size_t textlen;
    const char *error;

    size_t max_line;    /* as clamped by smtp_reply_init */

    /* private */
    int state;
    int cr_pending;
    const char *bad;
    size_t line_len;
    int cont_code;      /* the code of a multi-line reply under way, or 0 */
    int cont_lines;     /* its lines so far */
    char line[SMTP_REPLY_LINE_CAP + 1];
};

/* Prepares r. A max_line of 0, or above SMTP_REPLY_LINE_CAP, is the cap. */
void smtp_reply_init(struct smtp_reply *r, size_t max_line);

/* Feeds bytes; *consumed as for smtp_parse. */
enum smtp_status smtp_reply_parse(struct smtp_reply *r, const char *buf, size_t len,
                                  size_t *consumed);

/* EHLO keywords (RFC 5321 section 4.1.1.1), as bits of smtp_ehlo.ext. */
#define SMTP_EXT_PIPELINING    0x0001u
#define SMTP_EXT_SIZE          0x0002u
#define SMTP_EXT_STARTTLS      0x0004u
#define SMTP_EXT_AUTH          0x0008u
#define SMTP_EXT_XCLIENT       0x0010u
#define SMTP_EXT_8BITMIME      0x0020u
#define SMTP_EXT_SMTPUTF8      0x0040u
#define SMTP_EXT_CHUNKING      0x0080u
#define SMTP_EXT_ENHANCEDSTATUSCODES 0x0100u
#define SMTP_EXT_DSN           0x0200u
#define SMTP_EXT_BINARYMIME    0x0400u

/* SASL mechanisms after AUTH (or the old "AUTH="), as bits of smtp_ehlo.auth. */
#define SMTP_AUTH_PLAIN        0x01u
#define SMTP_AUTH_LOGIN        0x02u
#define SMTP_AUTH_OTHER        0x04u

/* Postfix's XCLIENT attributes, as bits of smtp_ehlo.xclient. */
#define SMTP_XCLIENT_NAME      0x01u
#define SMTP_XCLIENT_ADDR      0x02u
#define SMTP_XCLIENT_PORT      0x04u
#define SMTP_XCLIENT_PROTO     0x08u
#define SMTP_XCLIENT_HELO      0x10u
#define SMTP_XCLIENT_LOGIN     0x20u
#define SMTP_XCLIENT_DESTADDR  0x40u
#define SMTP_XCLIENT_DESTPORT  0x80u

/* What a backend's EHLO answer announced; keywords and values case-insensitive. */
struct smtp_ehlo {
    unsigned ext;       /* SMTP_EXT_* */
    unsigned auth;      /* SMTP_AUTH_* */
    unsigned xclient;   /* SMTP_XCLIENT_* */
    uint64_t size;      /* SIZE's limit in bytes; 0: none given (saturates) */
};

void smtp_ehlo_init(struct smtp_ehlo *e);

/*
 * Adds what the reply line just parsed into r announces. Call it after each
 * SMTP_OK of the EHLO answer: it ignores the first line (the greeting
 * domain), lines of another code than 250, and keywords it does not know.
 */
void smtp_ehlo_add(struct smtp_ehlo *e, const struct smtp_reply *r);

#endif
