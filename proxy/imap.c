/*
 * imap.c - the IMAP half of a proxied session: what the proxy says before
 * login (the pre-auth dialog, driven by the sans-I/O parser in
 * imap_parse.c) and the login dialog with the backend.  Bytes, timers and
 * connections are session.c's.
 *
 * Backend login (DESIGN.md 2.4): read the greeting; STARTTLS if configured;
 * pass the client's address with ID (Dovecot's login_trusted_networks);
 * AUTHENTICATE PLAIN - as the user through the master user for an app
 * password (authzid = user, authcid = master), with the client's own
 * credentials for a passthrough; then answer the client's pending command
 * with its own tag and the backend's post-login capabilities.
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

/* The tags the proxy uses toward the backend. */
#define IMAP_BTAG_STARTTLS "M0"
#define IMAP_BTAG_ID "M1"
#define IMAP_BTAG_LOGIN "M2"

/* The one refusal text (DESIGN.md 2.3): it must not tell who has a factor. */
#define IMAP_REFUSAL "NO [AUTHENTICATIONFAILED] Authentication failed. " \
                     "With two-factor verification on, use a client-specific password."

enum imap_backend_step {
    IMAP_B_GREETING = 0,      /* waiting for "* OK" */
    IMAP_B_STARTTLS,          /* sent STARTTLS, waiting for OK */
    IMAP_B_TLS,               /* TLS handshake under way */
    IMAP_B_LOGIN,             /* sent ID + AUTHENTICATE, waiting for the tagged reply */
};

static int
imap_auth_allowed(const struct session *s)
{
    return s->tls || s->pw->cfg->allow_plaintext_auth;
}

static void
imap_capabilities(const struct session *s, char *out, size_t outlen)
{
    snprintf(out, outlen, "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE%s%s",
             s->tls ? "" : " STARTTLS",
             imap_auth_allowed(s) ? " AUTH=PLAIN AUTH=LOGIN" : " LOGINDISABLED");
}

static void
imap_greet(struct session *s)
{
    char caps[256];

    s->u.imap.parser = malloc(sizeof(*s->u.imap.parser));
    if (s->u.imap.parser == NULL) {
        session_close(s);
        return;
    }
    imap_parser_init(s->u.imap.parser, s->pw->cfg->max_line, s->pw->cfg->max_literal);
    imap_capabilities(s, caps, sizeof(caps));
    session_printf(s, "* OK [CAPABILITY %s] Ready.\r\n", caps);
}

static void
imap_bye(struct session *s, const char *why)
{
    session_printf(s, "* BYE %s\r\n", why);
}

/* ---- login replies ---- */

static void
imap_login_refused(struct session *s)
{
    session_printf(s, "%s " IMAP_REFUSAL "\r\n", s->u.imap.tag);
}

static void
imap_login_unavailable(struct session *s)
{
    session_printf(s, "%s NO [UNAVAILABLE] Service temporarily unavailable, try again later.\r\n",
                   s->u.imap.tag);
}

static void
imap_sasl_prompt(struct session *s, const char *challenge)
{
    imap_parser_expect_line(s->u.imap.parser);
    session_printf(s, "+ %s\r\n", challenge);
}

static void
imap_sasl_failed(struct session *s, int why)
{
    switch (why) {
    case SASL_CANCELLED:
        session_printf(s, "%s BAD Authentication cancelled.\r\n", s->u.imap.tag);
        break;
    case SASL_AUTHZID:
        /* Never pass an authorization identity on: at the backend, with
         * master users, it would mean impersonation. */
        session_printf(s, "%s NO [AUTHORIZATIONFAILED] The authorization identity must be "
                          "empty or the same as the authentication identity.\r\n",
                       s->u.imap.tag);
        break;
    default:
        session_printf(s, "%s BAD Invalid SASL response.\r\n", s->u.imap.tag);
        break;
    }
}

/* Acts on one parsed command.  Returns 1 if the rest of the input must be
 * dropped (STARTTLS), else 0. */
static int
imap_command(struct session *s)
{
    struct imap_parser *p = s->u.imap.parser;
    char caps[256];

    if (p->cmd == IMAP_CMD_SASL_LINE) {
        session_sasl_line(s, p->args[0], p->arglen[0]);
        return 0;
    }
    util_strlcpy(s->u.imap.tag, p->tag, sizeof(s->u.imap.tag));
    switch (p->cmd) {
    case IMAP_CMD_CAPABILITY:
        imap_capabilities(s, caps, sizeof(caps));
        session_printf(s, "* CAPABILITY %s\r\n%s OK Pre-login capabilities listed, "
                          "post-login capabilities have more.\r\n", caps, p->tag);
        break;
    case IMAP_CMD_NOOP:
        session_printf(s, "%s OK NOOP completed.\r\n", p->tag);
        break;
    case IMAP_CMD_LOGOUT:
        session_printf(s, "* BYE Logging out\r\n%s OK Logout completed.\r\n", p->tag);
        session_close(s);
        return 1;
    case IMAP_CMD_ID:
        session_printf(s, "* ID NIL\r\n%s OK ID completed.\r\n", p->tag);
        break;
    case IMAP_CMD_STARTTLS:
        if (s->tls) {
            session_printf(s, "%s BAD TLS is already active.\r\n", p->tag);
            break;
        }
        session_printf(s, "%s OK Begin TLS negotiation now.\r\n", p->tag);
        session_starttls(s);
        /* Forget everything from before TLS; what the client pipelined
         * behind STARTTLS is dropped (STARTTLS command injection). */
        imap_parser_reset(p);
        s->ncommands = 0;
        return 1;
    case IMAP_CMD_LOGIN:
    case IMAP_CMD_AUTHENTICATE:
        if (!imap_auth_allowed(s)) {
            session_printf(s, "%s NO [PRIVACYREQUIRED] Plaintext authentication disallowed "
                              "on non-secure (SSL/TLS) connections.\r\n", p->tag);
            break;
        }
        if (p->cmd == IMAP_CMD_LOGIN)
            session_login(s, p->args[0], p->arglen[0], p->args[1], p->arglen[1]);
        else if (session_sasl_start(s, p->args[0], p->nargs >= 2 ? p->args[1] : NULL,
                                    p->nargs >= 2 ? p->arglen[1] : 0) != 0)
            session_printf(s, "%s NO [CANNOT] Unsupported authentication mechanism.\r\n",
                           p->tag);
        break;
    default:
        session_printf(s, "%s BAD Unknown command.\r\n", p->tag);
        break;
    }
    return 0;
}

static void
imap_client_read(struct session *s, const char *data, size_t len)
{
    struct imap_parser *p = s->u.imap.parser;
    const struct config *cfg = s->pw->cfg;

    if (p == NULL)
        return;

    while (len > 0 && !s->closing && s->state == SESSION_PREAUTH) {
        size_t used = 0;
        enum imap_status st = imap_parse(p, data, len, &used);

        data += used;
        len -= used;
        switch (st) {
        case IMAP_AGAIN:
            break;
        case IMAP_CONTINUE:
            session_printf(s, "+ Ready for literal data\r\n");
            break;
        case IMAP_ERROR:
            log_info("session=%" PRIu64 " event=protocol_error error=\"%s\"", s->id, p->error);
            imap_bye(s, p->error);
            session_close(s);
            return;
        case IMAP_INVALID:
        case IMAP_OK:
            if (p->cmd != IMAP_CMD_SASL_LINE && ++s->ncommands > cfg->max_preauth_commands) {
                imap_bye(s, "Too many commands before authentication.");
                session_close(s);
                return;
            }
            if (st == IMAP_INVALID) {
                s->sasl = SESSION_SASL_NONE;
                session_printf(s, "%s BAD %s\r\n", p->tag[0] ? p->tag : "*", p->error);
                break;
            }
            if (imap_command(s))
                return;    /* STARTTLS or LOGOUT: the rest is dropped */
            break;
        }
    }
    /* A login is under way: what came behind it waits until it is over. */
    if (len > 0 && !s->closing)
        session_keep_pending(s, data, len);
}

/* ---- the backend dialog ---- */

/* Does a capability list (space-separated, case-insensitive) have cap? */
static int
imap_has_cap(const char *list, const char *cap)
{
    size_t n = strlen(cap);

    for (const char *p = list; p && *p;) {
        while (*p == ' ')
            p++;
        if (strncasecmp(p, cap, n) == 0 && (p[n] == ' ' || p[n] == ']' || p[n] == '\0'))
            return 1;
        p = strchr(p, ' ');
    }
    return 0;
}

/* The text of a "[CAPABILITY ...]" response code in line, or NULL. */
static char *
imap_cap_code(char *line, size_t *len)
{
    char *start = strstr(line, "[CAPABILITY ");
    char *end;

    if (start == NULL)
        return NULL;
    start += strlen("[CAPABILITY ");
    end = strchr(start, ']');
    if (end == NULL)
        return NULL;
    *len = (size_t)(end - start);
    return start;
}

static void
imap_backend_send_login(struct session *s)
{
    const struct config *cfg = s->pw->cfg;
    char b64[2048], out[2600];
    int n, blen, len = 0;

    if (cfg->forward_client_addr == CONFIG_FORWARD_COMMAND) {
        /* Dovecot takes these from a trusted network (login_trusted_networks),
         * so its logs and its per-address penalties see the real client. */
        n = snprintf(out, sizeof(out),
                     IMAP_BTAG_ID " ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" "
                     "\"%d\" \"x-session-ext-id\" \"mfagate-%" PRIx64 "\")\r\n",
                     s->addr, s->port, s->id);
        len = n;
    }
    blen = session_backend_plain(s, b64, sizeof(b64));
    if (blen < 0) {
        session_backend_fail(s, "credentials too long");
        return;
    }
    if (s->u.imap.caps != NULL && imap_has_cap(s->u.imap.caps, "SASL-IR"))
        n = snprintf(out + len, sizeof(out) - (size_t)len,
                     IMAP_BTAG_LOGIN " AUTHENTICATE PLAIN %s\r\n", b64);
    else
        n = snprintf(out + len, sizeof(out) - (size_t)len,
                     IMAP_BTAG_LOGIN " AUTHENTICATE PLAIN\r\n");
    len += n;
    /* Only what was written held credentials (the buffers are 4.6 kB). */
    OPENSSL_cleanse(b64, (size_t)blen + 1);
    s->u.imap.backend_step = IMAP_B_LOGIN;
    /* ID and AUTHENTICATE leave in one write. */
    session_backend_send(s, out, (size_t)len);
    OPENSSL_cleanse(out, (size_t)len < sizeof(out) ? (size_t)len + 1 : sizeof(out));
}

static void
imap_backend_up(struct session *s)
{
    /* After a backend STARTTLS the server sends no new greeting. */
    if (s->u.imap.backend_step == IMAP_B_TLS) {
        free(s->u.imap.caps);
        s->u.imap.caps = NULL;    /* pre-TLS capabilities are not to be trusted */
        imap_backend_send_login(s);
    }
}

static void
imap_login_succeeded(struct session *s)
{
    if (s->u.imap.caps != NULL)
        session_printf(s, "%s OK [CAPABILITY %s] Logged in\r\n", s->u.imap.tag,
                       s->u.imap.caps);
    else
        session_printf(s, "%s OK Logged in\r\n", s->u.imap.tag);
    /* What only the pre-auth dialog needed; its arena still holds the
     * LOGIN arguments. */
    if (s->u.imap.parser != NULL)
        imap_parser_wipe(s->u.imap.parser);
    free(s->u.imap.parser);
    s->u.imap.parser = NULL;
    free(s->u.imap.caps);
    s->u.imap.caps = NULL;
}

static int
imap_backend_line(struct session *s, char *line, size_t len)
{
    const char *ltag = IMAP_BTAG_LOGIN " ";
    size_t clen;
    char *caps;

    switch (s->u.imap.backend_step) {
    case IMAP_B_GREETING:
        if (strncasecmp(line, "* OK", 4) != 0) {
            log_warn("session=%" PRIu64 " event=backend_bad_greeting", s->id);
            session_backend_fail(s, "bad greeting");
            return -1;
        }
        caps = imap_cap_code(line, &clen);
        if (caps != NULL) {
            s->u.imap.caps = strndup(caps, clen);
        }
        if (s->pw->cfg->backend_tls[CONFIG_PROTO_IMAP] == CONFIG_TLS_STARTTLS) {
            s->u.imap.backend_step = IMAP_B_STARTTLS;
            session_backend_send(s, IMAP_BTAG_STARTTLS " STARTTLS\r\n", 13);
            return 0;
        }
        imap_backend_send_login(s);
        return 0;
    case IMAP_B_STARTTLS:
        if (line[0] == '*')
            return 0;
        if (strncasecmp(line, IMAP_BTAG_STARTTLS " OK", 5) != 0) {
            log_warn("session=%" PRIu64 " event=backend_starttls_refused", s->id);
            session_backend_fail(s, "STARTTLS refused");
            return -1;
        }
        s->u.imap.backend_step = IMAP_B_TLS;
        session_backend_starttls(s);
        return 0;
    case IMAP_B_TLS:
        return 0;
    case IMAP_B_LOGIN:
        break;
    }

    /* IMAP_B_LOGIN: untagged data and the ID reply are not the client's. */
    if (line[0] == '+') {
        char b64[2048];
        int n;

        n = session_backend_plain(s, b64, sizeof(b64) - 2);
        if (n < 0) {
            session_backend_fail(s, "credentials too long");
            return -1;
        }
        memcpy(b64 + n, "\r\n", 2);
        session_backend_send(s, b64, (size_t)n + 2);
        OPENSSL_cleanse(b64, sizeof(b64));
        return 0;
    }
    if (strncmp(line, ltag, strlen(ltag)) != 0) {
        if (strncmp(line, IMAP_BTAG_ID " ", strlen(IMAP_BTAG_ID " ")) == 0)
            s->backend_answer_due = 1;  /* AUTHENTICATE's, sent with ID */
        return 0;
    }
    line += strlen(ltag);
    if (strncasecmp(line, "OK", 2) == 0) {
        /* The client is told the post-login capabilities, not the greeting's. */
        free(s->u.imap.caps);
        s->u.imap.caps = NULL;
        caps = imap_cap_code(line, &clen);
        if (caps != NULL)
            s->u.imap.caps = strndup(caps, clen);
        session_login_ok(s);
        return 1;
    }
    /* NO or BAD: a temporary failure at the backend is not a refusal. */
    if (strstr(line, "[UNAVAILABLE]") != NULL) {
        session_backend_fail(s, "backend unavailable");
        return -1;
    }
    session_backend_refused(s);
    return -1;
}

static void
imap_backend_start(struct session *s)
{
    s->u.imap.backend_step = IMAP_B_GREETING;
    free(s->u.imap.caps);
    s->u.imap.caps = NULL;
}

static void
imap_release(struct session *s)
{
    free(s->u.imap.caps);
    if (s->u.imap.parser != NULL)
        imap_parser_wipe(s->u.imap.parser);
    free(s->u.imap.parser);
}

static void
imap_backend_read(struct session *s, const char *data, size_t len)
{
    session_backend_lines(s, data, len, imap_backend_line);
}

const struct session_proto imap_session_proto = {
    .name = "imap",
    .proto = CONFIG_PROTO_IMAP,
    .greet = imap_greet,
    .client_read = imap_client_read,
    .backend_start = imap_backend_start,
    .backend_up = imap_backend_up,
    .backend_read = imap_backend_read,
    .login_refused = imap_login_refused,
    .login_unavailable = imap_login_unavailable,
    .login_succeeded = imap_login_succeeded,
    .sasl_prompt = imap_sasl_prompt,
    .sasl_failed = imap_sasl_failed,
    .bye = imap_bye,
    .release = imap_release,
};
