/*
 * pop3.c - the POP3 half of a proxied session: the pre-auth dialog (CAPA,
 * STLS, USER/PASS, AUTH PLAIN/LOGIN, QUIT; RFC 1939, 2449, 2595, 5034)
 * driven by the sans-I/O parser in pop3_parse.c, and the login dialog with
 * the backend.  Bytes, timers and connections are session.c's.
 *
 * Backend login: read the greeting; STLS if configured; pass the client's
 * address with XCLIENT (Dovecot's login_trusted_networks); AUTH PLAIN with
 * an initial response (as the user through the master user for an app
 * password, with the client's own credentials for a passthrough); then the
 * client's pending PASS/AUTH gets +OK.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/log.h"
#include "core/util.h"
#include "proxy/pop3_parse.h"
#include "proxy/sasl.h"
#include "proxy/session.h"

/* The one refusal text (DESIGN.md 2.3), with RFC 3206's AUTH code. */
#define POP3_REFUSAL "-ERR [AUTH] Authentication failed. " \
                     "With two-factor verification on, use a client-specific password."

enum pop3_backend_step {
    POP3_B_GREETING = 0,      /* waiting for "+OK" */
    POP3_B_STLS,              /* sent STLS, waiting for +OK */
    POP3_B_TLS,               /* TLS handshake under way */
    POP3_B_XCLIENT,           /* sent XCLIENT + AUTH: XCLIENT's answer first */
    POP3_B_CAPA,              /* sent CAPA + AUTH after a PROXY header: CAPA's +OK first */
    POP3_B_CAPA_LIST,         /* CAPA's lines, up to "." */
    POP3_B_AUTH,              /* waiting for AUTH's answer */
};

static struct pop3_parser *
pop3_parser(struct session *s)
{
    return s->u.pop3.parser;
}

static int
pop3_auth_allowed(const struct session *s)
{
    return s->tls || s->pw->cfg->allow_plaintext_auth;
}

static void
pop3_greet(struct session *s)
{
    s->u.pop3.parser = malloc(sizeof(struct pop3_parser));
    if (s->u.pop3.parser == NULL) {
        session_close(s);
        return;
    }
    pop3_parser_init(s->u.pop3.parser, s->pw->cfg->max_line);
    session_printf(s, "+OK Ready.\r\n");
}

static void
pop3_bye(struct session *s, const char *why)
{
    session_printf(s, "-ERR %s\r\n", why);
}

/* ---- login replies ---- */

static void
pop3_login_refused(struct session *s)
{
    session_printf(s, POP3_REFUSAL "\r\n");
}

static void
pop3_login_unavailable(struct session *s)
{
    session_printf(s, "-ERR [SYS/TEMP] Service temporarily unavailable, try again later.\r\n");
}

static void
pop3_login_succeeded(struct session *s)
{
    session_printf(s, "+OK Logged in.\r\n");
    free(s->u.pop3.parser);
    s->u.pop3.parser = NULL;
}

static void
pop3_sasl_prompt(struct session *s, const char *challenge)
{
    pop3_parser_expect_line(pop3_parser(s));
    session_printf(s, "+ %s\r\n", challenge);
}

static void
pop3_sasl_failed(struct session *s, int why)
{
    switch (why) {
    case SASL_CANCELLED:
        session_printf(s, "-ERR Authentication cancelled.\r\n");
        break;
    case SASL_AUTHZID:
        session_printf(s, "-ERR [AUTH] The authorization identity must be empty or the same "
                          "as the authentication identity.\r\n");
        break;
    default:
        session_printf(s, "-ERR Invalid SASL response.\r\n");
        break;
    }
}

/* ---- the pre-auth dialog ---- */

static void
pop3_capa(struct session *s)
{
    int auth = pop3_auth_allowed(s);

    /* What the backend (Dovecot) offers after login, plus the login
     * methods the proxy itself takes. */
    session_printf(s, "+OK Capability list follows\r\n"
                      "CAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
                      "%s%s%s.\r\n",
                   s->tls ? "" : "STLS\r\n", auth ? "USER\r\n" : "",
                   auth ? "SASL PLAIN LOGIN\r\n" : "");
}

/* Acts on one parsed command.  Returns 1 if the rest of the input must be
 * dropped (STLS, QUIT), else 0. */
static int
pop3_command(struct session *s)
{
    struct pop3_parser *p = pop3_parser(s);

    if (p->cmd == POP3_CMD_SASL_LINE) {
        session_sasl_line(s, p->arg, p->arglen);
        return 0;
    }
    switch (p->cmd) {
    case POP3_CMD_CAPA:
        pop3_capa(s);
        break;
    case POP3_CMD_QUIT:
        session_printf(s, "+OK Logging out.\r\n");
        session_close(s);
        return 1;
    case POP3_CMD_STLS:
        if (s->tls) {
            session_printf(s, "-ERR TLS is already active.\r\n");
            break;
        }
        session_printf(s, "+OK Begin TLS negotiation now.\r\n");
        session_starttls(s);
        /* Forget everything from before TLS, and drop what was pipelined
         * behind STLS (command injection). */
        pop3_parser_reset(p);
        s->u.pop3.user[0] = '\0';
        s->ncommands = 0;
        return 1;
    case POP3_CMD_USER:
        if (!pop3_auth_allowed(s)) {
            session_printf(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                              "(SSL/TLS) connections.\r\n");
            break;
        }
        if (p->arglen >= sizeof(s->u.pop3.user)) {
            session_printf(s, "-ERR User name too long.\r\n");
            break;
        }
        memcpy(s->u.pop3.user, p->arg, p->arglen + 1);
        session_printf(s, "+OK\r\n");
        break;
    case POP3_CMD_PASS:
        if (!pop3_auth_allowed(s)) {
            session_printf(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                              "(SSL/TLS) connections.\r\n");
            break;
        }
        if (s->u.pop3.user[0] == '\0') {
            session_printf(s, "-ERR No user name given: USER first.\r\n");
            break;
        }
        session_login(s, s->u.pop3.user, strlen(s->u.pop3.user), p->arg, p->arglen);
        s->u.pop3.user[0] = '\0';
        break;
    case POP3_CMD_AUTH:
        if (p->nargs == 0) {
            /* RFC 5034: AUTH without a mechanism lists them. */
            session_printf(s, "+OK\r\n%s.\r\n", pop3_auth_allowed(s) ? "PLAIN\r\nLOGIN\r\n" : "");
            break;
        }
        if (!pop3_auth_allowed(s)) {
            session_printf(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                              "(SSL/TLS) connections.\r\n");
            break;
        }
        if (session_sasl_start(s, p->arg, p->nargs >= 2 ? p->arg2 : NULL,
                               p->nargs >= 2 ? p->arg2len : 0) != 0)
            session_printf(s, "-ERR Unsupported authentication mechanism.\r\n");
        break;
    case POP3_CMD_APOP:
        session_printf(s, "-ERR APOP is not supported: use USER/PASS or AUTH.\r\n");
        break;
    case POP3_CMD_NOOP:
        session_printf(s, "-ERR Log in first.\r\n");
        break;
    default:
        session_printf(s, "-ERR Unknown command.\r\n");
        break;
    }
    return 0;
}

static void
pop3_client_read(struct session *s, const char *data, size_t len)
{
    struct pop3_parser *p = pop3_parser(s);
    const struct config *cfg = s->pw->cfg;

    if (p == NULL)
        return;
    while (len > 0 && !s->closing && s->state == SESSION_PREAUTH) {
        size_t used = 0;
        enum pop3_status st = pop3_parse(p, data, len, &used);

        data += used;
        len -= used;
        switch (st) {
        case POP3_AGAIN:
            break;
        case POP3_ERROR:
            log_info("session=%" PRIu64 " event=protocol_error error=\"%s\"", s->id, p->error);
            pop3_bye(s, p->error);
            session_close(s);
            return;
        case POP3_INVALID:
        case POP3_OK:
            if (p->cmd != POP3_CMD_SASL_LINE && ++s->ncommands > cfg->max_preauth_commands) {
                pop3_bye(s, "Too many commands before authentication.");
                session_close(s);
                return;
            }
            if (st == POP3_INVALID) {
                s->sasl = SESSION_SASL_NONE;
                session_printf(s, "-ERR %s\r\n", p->error);
                break;
            }
            if (pop3_command(s))
                return;
            break;
        }
    }
    /* A login is under way: what came behind it waits until it is over. */
    if (len > 0 && !s->closing)
        session_keep_pending(s, data, len);
}

/* ---- the backend dialog ---- */

static void
pop3_backend_send_login(struct session *s)
{
    char b64[2048], out[2400];
    int n, len = 0;

    if (s->pw->cfg->forward_client_addr == CONFIG_FORWARD_COMMAND) {
        /* Dovecot takes these from a trusted network (login_trusted_networks). */
        len = snprintf(out, sizeof(out), "XCLIENT ADDR=%s PORT=%d SESSION=mfagate-%" PRIx64 "\r\n",
                       s->addr, s->port, s->id);
        s->u.pop3.backend_step = POP3_B_XCLIENT;
    } else if (s->pw->cfg->forward_client_addr == CONFIG_FORWARD_PROXY) {
        /*
         * A server that does not expect the PROXY header reads it as
         * commands and answers -ERR to them, ahead of AUTH's answer, which
         * would read as a refusal.  CAPA's +OK in front of AUTH says the
         * header was taken (in the same write: no round trip more).
         */
        len = snprintf(out, sizeof(out), "CAPA\r\n");
        s->u.pop3.backend_step = POP3_B_CAPA;
    } else {
        s->u.pop3.backend_step = POP3_B_AUTH;
    }
    n = session_backend_plain(s, b64, sizeof(b64));
    if (n < 0) {
        session_backend_fail(s, "credentials too long");
        return;
    }
    len += snprintf(out + len, sizeof(out) - (size_t)len, "AUTH PLAIN %s\r\n", b64);
    OPENSSL_cleanse(b64, sizeof(b64));
    /* XCLIENT (or CAPA) and AUTH leave in one write; the answers come in order. */
    session_backend_send(s, out, (size_t)len);
    OPENSSL_cleanse(out, sizeof(out));
}

static void
pop3_backend_up(struct session *s)
{
    if (s->u.pop3.backend_step == POP3_B_TLS)
        pop3_backend_send_login(s);    /* no new greeting after STLS */
}

static int
pop3_backend_line(struct session *s, char *line, size_t len)
{
    int ok = strncasecmp(line, "+OK", 3) == 0;

    switch (s->u.pop3.backend_step) {
    case POP3_B_GREETING:
        if (!ok) {
            session_backend_fail(s, "bad greeting");
            return -1;
        }
        if (s->pw->cfg->backend_tls[CONFIG_PROTO_POP3] == CONFIG_TLS_STARTTLS) {
            s->u.pop3.backend_step = POP3_B_STLS;
            session_backend_send(s, "STLS\r\n", 6);
            return 0;
        }
        pop3_backend_send_login(s);
        return 0;
    case POP3_B_STLS:
        if (!ok) {
            session_backend_fail(s, "STLS refused");
            return -1;
        }
        s->u.pop3.backend_step = POP3_B_TLS;
        session_backend_starttls(s);
        return 0;
    case POP3_B_TLS:
        return 0;
    case POP3_B_XCLIENT:
        /* A backend that does not trust us refuses XCLIENT; the login
         * still goes on, only without the client's address. */
        if (!ok)
            log_warn("session=%" PRIu64 " event=backend_xclient_refused", s->id);
        s->u.pop3.backend_step = POP3_B_AUTH;
        s->backend_answer_due = 1;      /* AUTH's, sent with XCLIENT */
        return 0;
    case POP3_B_CAPA:
        if (!ok) {
            log_warn("session=%" PRIu64 " event=backend_proxy_header_refused", s->id);
            session_backend_fail(s, "PROXY header not taken");
            return -1;
        }
        s->u.pop3.backend_step = POP3_B_CAPA_LIST;
        return 0;
    case POP3_B_CAPA_LIST:
        if (strcmp(line, ".") == 0) {
            s->u.pop3.backend_step = POP3_B_AUTH;
            s->backend_answer_due = 1;      /* AUTH's, sent with CAPA */
        }
        return 0;
    case POP3_B_AUTH:
        break;
    }
    if (ok) {
        session_login_ok(s);
        return 1;
    }
    if (strncasecmp(line, "-ERR [SYS/TEMP]", 15) == 0 ||
        strncasecmp(line, "-ERR [IN-USE]", 13) == 0) {
        session_backend_fail(s, "backend unavailable");
        return -1;
    }
    session_backend_refused(s);
    return -1;
}

static void
pop3_backend_read(struct session *s, const char *data, size_t len)
{
    session_backend_lines(s, data, len, pop3_backend_line);
}

static void
pop3_backend_start(struct session *s)
{
    s->u.pop3.backend_step = POP3_B_GREETING;
}

static void
pop3_release(struct session *s)
{
    free(s->u.pop3.parser);
    OPENSSL_cleanse(s->u.pop3.user, sizeof(s->u.pop3.user));
}

const struct session_proto pop3_session_proto = {
    .name = "pop3",
    .proto = CONFIG_PROTO_POP3,
    .greet = pop3_greet,
    .client_read = pop3_client_read,
    .backend_start = pop3_backend_start,
    .backend_up = pop3_backend_up,
    .backend_read = pop3_backend_read,
    .login_refused = pop3_login_refused,
    .login_unavailable = pop3_login_unavailable,
    .login_succeeded = pop3_login_succeeded,
    .sasl_prompt = pop3_sasl_prompt,
    .sasl_failed = pop3_sasl_failed,
    .bye = pop3_bye,
    .release = pop3_release,
};
