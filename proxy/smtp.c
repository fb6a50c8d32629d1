/*
 * smtp.c - the SMTP half of a proxied session: the pre-auth dialog (EHLO,
 * HELO, STARTTLS, AUTH PLAIN/LOGIN, RSET, NOOP, QUIT, ...; RFC 5321, 3207,
 * 4954, 2920) driven by the sans-I/O parser in smtp_parse.c, and two
 * backend dialogs:
 *
 *  - submission (after AUTH): connect to [backend] smtp, read the greeting,
 *    EHLO with the client's own EHLO name, STARTTLS if configured, XCLIENT
 *    with the client's address where offered, AUTH PLAIN (as the user
 *    through the master user for an app password, with the client's own
 *    credentials for a passthrough), then 235 to the client and relay;
 *  - inbound (MAIL FROM without AUTH: another server delivering mail, if
 *    [smtp] unauthenticated = relay): connect to [backend] smtp_inbound,
 *    replay the client's EHLO/HELO (XCLIENT first where offered), then the
 *    MAIL command verbatim, and relay: the backend answers the MAIL itself.
 *
 * Bytes, timers and connections are session.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/log.h"
#include "core/util.h"
#include "proxy/sasl.h"
#include "proxy/session.h"
#include "proxy/smtp_parse.h"

/* The one refusal text (DESIGN.md 2.3), with RFC 4954's code. */
#define SMTP_REFUSAL "535 5.7.8 Authentication failed. " \
                     "With two-factor verification on, use a client-specific password."

enum smtp_backend_step {
    SMTP_B_GREETING = 0,      /* waiting for 220 */
    SMTP_B_EHLO,              /* sent EHLO/HELO, collecting the answer */
    SMTP_B_STARTTLS,          /* sent STARTTLS, waiting for 220 */
    SMTP_B_TLS,               /* TLS handshake under way */
    SMTP_B_XCLIENT,           /* sent XCLIENT, waiting for the new 220 */
    SMTP_B_AUTH,              /* sent AUTH PLAIN, waiting for 235 */
};

/* The pre-auth state that only exists before login (some 27 KiB). */
struct smtp_preauth {
    struct smtp_parser parser;
    struct smtp_reply reply;        /* the backend's replies during login */
    struct smtp_ehlo ehlo;          /* what the backend's EHLO announced */
};

static struct smtp_parser *
smtp_parser(struct session *s)
{
    return &s->u.smtp.pre->parser;
}

static int
smtp_auth_allowed(const struct session *s)
{
    return s->tls || s->pw->cfg->allow_plaintext_auth;
}

static void
smtp_greet(struct session *s)
{
    s->u.smtp.pre = malloc(sizeof(*s->u.smtp.pre));
    if (s->u.smtp.pre == NULL) {
        session_close(s);
        return;
    }
    smtp_parser_init(&s->u.smtp.pre->parser, s->pw->cfg->max_line);
    session_printf(s, "220 %s ESMTP ready\r\n", s->pw->sh->hostname);
}

static void
smtp_bye(struct session *s, const char *why)
{
    session_printf(s, "421 4.4.2 %s %s\r\n", s->pw->sh->hostname, why);
}

/* ---- login replies ---- */

static void
smtp_login_refused(struct session *s)
{
    session_printf(s, SMTP_REFUSAL "\r\n");
}

static void
smtp_login_unavailable(struct session *s)
{
    if (s->inbound)
        session_printf(s, "451 4.4.1 Service temporarily unavailable, try again later.\r\n");
    else
        session_printf(s, "454 4.7.0 Temporary authentication failure, try again later.\r\n");
}

static void
smtp_login_succeeded(struct session *s)
{
    session_printf(s, "235 2.7.0 Authentication successful\r\n");
    free(s->u.smtp.pre);
    s->u.smtp.pre = NULL;
}

static void
smtp_sasl_prompt(struct session *s, const char *challenge)
{
    smtp_parser_expect_line(smtp_parser(s));
    session_printf(s, "334 %s\r\n", challenge);
}

static void
smtp_sasl_failed(struct session *s, int why)
{
    switch (why) {
    case SASL_CANCELLED:
        session_printf(s, "501 5.7.0 Authentication cancelled.\r\n");
        break;
    case SASL_AUTHZID:
        session_printf(s, "535 5.7.8 The authorization identity must be empty or the same as "
                          "the authentication identity.\r\n");
        break;
    default:
        session_printf(s, "501 5.5.2 Invalid SASL response.\r\n");
        break;
    }
}

/* ---- the pre-auth dialog ---- */

static void
smtp_ehlo_reply(struct session *s)
{
    const struct proxy_worker *pw = s->pw;
    unsigned ext = pw->smtp_ext_known ? pw->smtp_ext
                                      : SMTP_EXT_8BITMIME | SMTP_EXT_ENHANCEDSTATUSCODES;
    char buf[512];
    int n;

    /* The extensions are the backend's (learnt from its last EHLO on this
     * worker), less what the proxy itself handles: STARTTLS and AUTH. */
    n = snprintf(buf, sizeof(buf), "250-%s\r\n250-PIPELINING\r\n", pw->sh->hostname);
    if ((ext & SMTP_EXT_SIZE) && pw->smtp_size > 0)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250-SIZE %" PRIu64 "\r\n",
                      pw->smtp_size);
    if (ext & SMTP_EXT_8BITMIME)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250-8BITMIME\r\n");
    if (ext & SMTP_EXT_SMTPUTF8)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250-SMTPUTF8\r\n");
    if (!s->tls)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250-STARTTLS\r\n");
    if (smtp_auth_allowed(s))
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250-AUTH PLAIN LOGIN\r\n");
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "250 ENHANCEDSTATUSCODES\r\n");
    session_send(s, buf, (size_t)n);
}

/* MAIL without AUTH: an inbound delivery, relayed or refused by config. */
static void
smtp_mail_unauthenticated(struct session *s, const struct smtp_parser *p)
{
    if (!s->pw->cfg->smtp_unauth_relay) {
        session_printf(s, "530 5.7.0 Authentication required.\r\n");
        return;
    }
    free(s->u.smtp.mail);
    s->u.smtp.mail = malloc(p->rawlen);
    if (s->u.smtp.mail == NULL) {
        session_close(s);
        return;
    }
    memcpy(s->u.smtp.mail, p->raw, p->rawlen);
    s->u.smtp.mail_len = p->rawlen;
    log_info("session=%" PRIu64 " event=inbound helo=\"%s\" addr=%s", s->id, s->u.smtp.helo,
             s->addr);
    session_inbound(s);
}

/* Acts on one parsed command.  Returns 1 if the rest of the input must be
 * dropped (STARTTLS, QUIT), else 0. */
static int
smtp_command(struct session *s)
{
    struct smtp_parser *p = smtp_parser(s);

    if (p->cmd == SMTP_CMD_SASL_LINE) {
        session_sasl_line(s, p->arg, p->arglen);
        return 0;
    }
    switch (p->cmd) {
    case SMTP_CMD_EHLO:
    case SMTP_CMD_HELO:
        if (p->arglen >= sizeof(s->u.smtp.helo)) {
            session_printf(s, "501 5.5.4 Domain name too long.\r\n");
            break;
        }
        memcpy(s->u.smtp.helo, p->arg, p->arglen + 1);
        s->u.smtp.esmtp = p->cmd == SMTP_CMD_EHLO;
        if (s->u.smtp.esmtp)
            smtp_ehlo_reply(s);
        else
            session_printf(s, "250 %s\r\n", s->pw->sh->hostname);
        break;
    case SMTP_CMD_STARTTLS:
        if (s->tls) {
            session_printf(s, "503 5.5.1 TLS is already active.\r\n");
            break;
        }
        session_printf(s, "220 2.0.0 Ready to start TLS\r\n");
        session_starttls(s);
        /* Forget everything from before TLS (the client must EHLO again),
         * and drop what was pipelined behind STARTTLS (command injection). */
        smtp_parser_reset(p);
        s->u.smtp.helo[0] = '\0';
        s->ncommands = 0;
        return 1;
    case SMTP_CMD_AUTH:
        if (s->u.smtp.helo[0] == '\0' || !s->u.smtp.esmtp) {
            session_printf(s, "503 5.5.1 Send EHLO first.\r\n");
            break;
        }
        if (!smtp_auth_allowed(s)) {
            session_printf(s, "538 5.7.11 Encryption required for requested authentication "
                              "mechanism.\r\n");
            break;
        }
        if (session_sasl_start(s, p->arg, p->nargs >= 2 ? p->arg2 : NULL,
                               p->nargs >= 2 ? p->arg2len : 0) != 0)
            session_printf(s, "504 5.5.4 Unsupported authentication mechanism.\r\n");
        break;
    case SMTP_CMD_MAIL:
        if (s->u.smtp.helo[0] == '\0') {
            session_printf(s, "503 5.5.1 Send HELO/EHLO first.\r\n");
            break;
        }
        smtp_mail_unauthenticated(s, p);
        break;
    case SMTP_CMD_RCPT:
    case SMTP_CMD_DATA:
    case SMTP_CMD_BDAT:
        session_printf(s, "503 5.5.1 Send MAIL first.\r\n");
        break;
    case SMTP_CMD_RSET:
    case SMTP_CMD_NOOP:
        session_printf(s, "250 2.0.0 OK\r\n");
        break;
    case SMTP_CMD_QUIT:
        session_printf(s, "221 2.0.0 Bye\r\n");
        session_close(s);
        return 1;
    case SMTP_CMD_HELP:
        session_printf(s, "214 2.0.0 See RFC 5321.\r\n");
        break;
    case SMTP_CMD_VRFY:
        session_printf(s, "252 2.5.2 Cannot VRFY user, but will accept the message.\r\n");
        break;
    default:
        session_printf(s, "502 5.5.1 Command not implemented.\r\n");
        break;
    }
    return 0;
}

static void
smtp_client_read(struct session *s, const char *data, size_t len)
{
    struct smtp_parser *p;
    const struct config *cfg = s->pw->cfg;

    if (s->u.smtp.pre == NULL)
        return;
    p = smtp_parser(s);
    while (len > 0 && !s->closing && s->state == SESSION_PREAUTH) {
        size_t used = 0;
        enum smtp_status st = smtp_parse(p, data, len, &used);

        data += used;
        len -= used;
        switch (st) {
        case SMTP_AGAIN:
            break;
        case SMTP_ERROR:
            log_info("session=%" PRIu64 " event=protocol_error error=\"%s\"", s->id, p->error);
            session_printf(s, "500 5.5.6 %s\r\n", p->error);
            session_close(s);
            return;
        case SMTP_INVALID:
        case SMTP_OK:
            if (p->cmd != SMTP_CMD_SASL_LINE && ++s->ncommands > cfg->max_preauth_commands) {
                session_printf(s, "421 4.7.0 Too many commands before authentication.\r\n");
                session_close(s);
                return;
            }
            if (st == SMTP_INVALID) {
                s->sasl = SESSION_SASL_NONE;
                if (p->cmd == SMTP_CMD_NONE)
                    session_printf(s, "500 5.5.2 %s\r\n", p->error);
                else
                    session_printf(s, "501 5.5.4 %s\r\n", p->error);
                break;
            }
            if (smtp_command(s))
                return;
            break;
        }
    }
    /* A login or a relay is being set up: what came behind waits for it. */
    if (len > 0 && !s->closing)
        session_keep_pending(s, data, len);
}

/* ---- the backend dialogs ---- */

static void
smtp_backend_start(struct session *s)
{
    s->u.smtp.backend_step = SMTP_B_GREETING;
    s->u.smtp.backend_tls = 0;
    s->u.smtp.xclient_sent = 0;
    smtp_reply_init(&s->u.smtp.pre->reply, 0);
}

static void
smtp_backend_ehlo(struct session *s)
{
    char line[300];
    int n;

    /* The backend sees the client's own EHLO name (Received: headers). */
    n = snprintf(line, sizeof(line), "%s %s\r\n", s->u.smtp.esmtp ? "EHLO" : "HELO",
                 s->u.smtp.helo);
    smtp_ehlo_init(&s->u.smtp.pre->ehlo);
    s->u.smtp.backend_step = SMTP_B_EHLO;
    session_backend_send(s, line, (size_t)n);
}

static void
smtp_backend_up(struct session *s)
{
    if (s->u.smtp.backend_step == SMTP_B_TLS) {
        s->u.smtp.backend_tls = 1;
        smtp_backend_ehlo(s);    /* RFC 3207: forget the pre-TLS EHLO */
    }
}

/* XCLIENT with what the backend accepts of the client's identity. */
static int
smtp_backend_xclient(struct session *s)
{
    const struct smtp_ehlo *e = &s->u.smtp.pre->ehlo;
    char line[400];
    int n;

    if (s->pw->cfg->forward_client_addr != CONFIG_FORWARD_COMMAND || s->u.smtp.xclient_sent ||
        !(e->ext & SMTP_EXT_XCLIENT) || !(e->xclient & SMTP_XCLIENT_ADDR))
        return 0;
    n = snprintf(line, sizeof(line), "XCLIENT ADDR=%s", s->addr);
    if (e->xclient & SMTP_XCLIENT_PORT)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " PORT=%d", s->port);
    if ((e->xclient & SMTP_XCLIENT_HELO) && strchr(s->u.smtp.helo, ' ') == NULL)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " HELO=%s", s->u.smtp.helo);
    n += snprintf(line + n, sizeof(line) - (size_t)n, "\r\n");
    s->u.smtp.xclient_sent = 1;
    s->u.smtp.backend_step = SMTP_B_XCLIENT;
    session_backend_send(s, line, (size_t)n);
    return 1;
}

static void
smtp_backend_auth(struct session *s)
{
    char b64[2048], line[2100];
    int n;

    n = session_backend_plain(s, b64, sizeof(b64));
    if (n < 0) {
        session_backend_fail(s, "credentials too long");
        return;
    }
    n = snprintf(line, sizeof(line), "AUTH PLAIN %s\r\n", b64);
    OPENSSL_cleanse(b64, sizeof(b64));
    s->u.smtp.backend_step = SMTP_B_AUTH;
    session_backend_send(s, line, (size_t)n);
    OPENSSL_cleanse(line, sizeof(line));
}

/* The inbound relay is ready: the MAIL command verbatim, then bytes both
 * ways; the backend answers the MAIL itself. */
static void
smtp_inbound_go(struct session *s)
{
    session_backend_send(s, s->u.smtp.mail, s->u.smtp.mail_len);
    session_inbound_ok(s);
    /* A relay keeps no pre-login state (callers touch none after this). */
    free(s->u.smtp.pre);
    s->u.smtp.pre = NULL;
    free(s->u.smtp.mail);
    s->u.smtp.mail = NULL;
}

/* The backend's EHLO answer is complete: what comes next. */
static void
smtp_backend_ehlo_done(struct session *s)
{
    const struct smtp_ehlo *e = &s->u.smtp.pre->ehlo;
    struct proxy_worker *pw = s->pw;

    if (s->inbound) {
        if (!smtp_backend_xclient(s))
            smtp_inbound_go(s);
        return;
    }
    if (s->pw->cfg->backend_tls[CONFIG_PROTO_SMTP] == CONFIG_TLS_STARTTLS &&
        !s->u.smtp.backend_tls) {
        s->u.smtp.backend_step = SMTP_B_STARTTLS;
        session_backend_send(s, "STARTTLS\r\n", 10);
        return;
    }
    /* What this worker tells clients in its own EHLO from now on. */
    pw->smtp_ext_known = 1;
    pw->smtp_ext = e->ext;
    pw->smtp_size = e->size;
    if (smtp_backend_xclient(s))
        return;
    smtp_backend_auth(s);
}

/* One backend reply line; returns 1 when the dialog is over, -1 failed. */
static int
smtp_backend_reply(struct session *s, const struct smtp_reply *r)
{
    switch (s->u.smtp.backend_step) {
    case SMTP_B_GREETING:
    case SMTP_B_XCLIENT:
        if (!r->last)
            return 0;
        if (r->code != 220) {
            if (s->u.smtp.backend_step == SMTP_B_XCLIENT && r->code >= 500) {
                /* Not trusted for XCLIENT: go on without the address. */
                log_warn("session=%" PRIu64 " event=backend_xclient_refused code=%d", s->id,
                         r->code);
                if (s->inbound) {
                    smtp_inbound_go(s);
                    return 1;
                }
                smtp_backend_auth(s);
                return 0;
            }
            session_backend_fail(s, "bad greeting");
            return -1;
        }
        smtp_backend_ehlo(s);
        return 0;
    case SMTP_B_EHLO:
        if (r->code != 250) {
            session_backend_fail(s, "EHLO refused");
            return -1;
        }
        smtp_ehlo_add(&s->u.smtp.pre->ehlo, r);
        if (!r->last)
            return 0;
        smtp_backend_ehlo_done(s);
        return s->state == SESSION_RELAY ? 1 : 0;
    case SMTP_B_STARTTLS:
        if (!r->last)
            return 0;
        if (r->code != 220) {
            session_backend_fail(s, "STARTTLS refused");
            return -1;
        }
        s->u.smtp.backend_step = SMTP_B_TLS;
        session_backend_starttls(s);
        return 0;
    case SMTP_B_TLS:
        return 0;
    case SMTP_B_AUTH:
        break;
    }
    if (!r->last)
        return 0;
    if (r->code == 235) {
        session_login_ok(s);
        return 1;
    }
    if (r->code == 334) {
        /* A backend that ignored the initial response asks for it. */
        char b64[2048];
        int n = session_backend_plain(s, b64, sizeof(b64) - 2);

        if (n < 0) {
            session_backend_fail(s, "credentials too long");
            return -1;
        }
        memcpy(b64 + n, "\r\n", 2);
        session_backend_send(s, b64, (size_t)n + 2);
        OPENSSL_cleanse(b64, sizeof(b64));
        return 0;
    }
    if (r->code >= 400 && r->code < 500) {
        session_backend_fail(s, "temporary failure");
        return -1;
    }
    session_backend_refused(s);
    return -1;
}

static void
smtp_backend_read(struct session *s, const char *data, size_t len)
{
    struct smtp_reply *r = &s->u.smtp.pre->reply;

    while (len > 0) {
        size_t used = 0;
        enum smtp_status st = smtp_reply_parse(r, data, len, &used);
        int rc;

        data += used;
        len -= used;
        if (st == SMTP_AGAIN)
            return;
        if (st != SMTP_OK) {
            session_backend_fail(s, r->error ? r->error : "bad reply");
            return;
        }
        rc = smtp_backend_reply(s, r);
        if (rc == 1) {
            /* Whatever followed is the client's (the relay has begun). */
            if (len > 0)
                session_send(s, data, len);
            return;
        }
        if (rc < 0 || s->closing || s->state != SESSION_BACKEND)
            return;
    }
}

static void
smtp_release(struct session *s)
{
    free(s->u.smtp.pre);
    free(s->u.smtp.mail);
}

const struct session_proto smtp_session_proto = {
    .name = "smtp",
    .proto = CONFIG_PROTO_SMTP,
    .greet = smtp_greet,
    .client_read = smtp_client_read,
    .backend_start = smtp_backend_start,
    .backend_up = smtp_backend_up,
    .backend_read = smtp_backend_read,
    .login_refused = smtp_login_refused,
    .login_unavailable = smtp_login_unavailable,
    .login_succeeded = smtp_login_succeeded,
    .sasl_prompt = smtp_sasl_prompt,
    .sasl_failed = smtp_sasl_failed,
    .bye = smtp_bye,
    .release = smtp_release,
};
