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

enum imap_sasl_step {
    IMAP_SASL_NONE = 0,
    IMAP_SASL_PLAIN,          /* waiting for the PLAIN response */
    IMAP_SASL_LOGIN_USER,     /* waiting for the LOGIN user name */
    IMAP_SASL_LOGIN_PASS,     /* waiting for the LOGIN password */
};

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

/* ---- login ---- */

static void
imap_refuse_now(struct session *s)
{
    session_printf(s, "%s " IMAP_REFUSAL "\r\n", s->u.imap.tag);
    session_resume_preauth(s);
}

/* Refuses the login in progress after the refusal delay. */
static void
imap_refuse(struct session *s)
{
    log_info("session=%" PRIu64 " event=login proto=imap user=%s addr=%s how=%s result=refused",
             s->id, s->user, s->addr, session_how_name(s->how));
    session_after_refusal_delay(s, imap_refuse_now);
}

/*
 * Takes the credentials of a LOGIN or AUTHENTICATE and starts the decision.
 * A name the decision cannot take (empty, too long, control characters) is
 * refused like any other failure.
 */
static void
imap_login(struct session *s, const char *user, size_t ulen, const char *pass, size_t plen)
{
    s->login_started_ms = util_now_ms();
    s->how = AUTH_REFUSED;
    s->state = SESSION_AUTH;
    if (auth_normalize_user(s->pw->cfg, user, ulen, s->user) != 0 || plen == 0 ||
        plen >= sizeof(s->pass) || memchr(pass, '\0', plen) != NULL) {
        util_strlcpy(s->user, "-", sizeof(s->user));
        conn_read_stop(&s->client);
        imap_refuse(s);
        return;
    }
    memcpy(s->pass, pass, plen);
    s->pass[plen] = '\0';
    session_auth_start(s);
}

static void
imap_sasl_plain(struct session *s, const char *b64, size_t len)
{
    char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
    int rc;

    s->u.imap.sasl_step = IMAP_SASL_NONE;
    rc = sasl_plain_decode(b64, len, user, sizeof(user), pass, sizeof(pass));
    switch (rc) {
    case SASL_OK:
        imap_login(s, user, strlen(user), pass, strlen(pass));
        break;
    case SASL_CANCELLED:
        session_printf(s, "%s BAD Authentication cancelled.\r\n", s->u.imap.tag);
        break;
    case SASL_AUTHZID:
        /* Never pass an authorization identity on: at the backend, with
         * master users, it would mean impersonation. */
        log_info("session=%" PRIu64 " event=login proto=imap addr=%s result=authzid_refused",
                 s->id, s->addr);
        session_printf(s, "%s NO [AUTHORIZATIONFAILED] The authorization identity must be "
                          "empty or the same as the authentication identity.\r\n",
                       s->u.imap.tag);
        break;
    default:
        session_printf(s, "%s BAD Invalid SASL PLAIN response.\r\n", s->u.imap.tag);
        break;
    }
    OPENSSL_cleanse(pass, sizeof(pass));
}

static void
imap_sasl_line(struct session *s, const char *line, size_t len)
{
    char buf[AUTH_PASS_MAX];
    int rc;

    switch (s->u.imap.sasl_step) {
    case IMAP_SASL_PLAIN:
        imap_sasl_plain(s, line, len);
        return;
    case IMAP_SASL_LOGIN_USER:
        rc = sasl_login_decode(line, len, buf, sizeof(buf), 1);
        if (rc == SASL_OK) {
            if (auth_normalize_user(s->pw->cfg, buf, strlen(buf), s->user) != 0)
                util_strlcpy(s->user, "", sizeof(s->user));
            s->u.imap.sasl_step = IMAP_SASL_LOGIN_PASS;
            imap_parser_expect_line(s->u.imap.parser);
            session_printf(s, "+ UGFzc3dvcmQ6\r\n");    /* "Password:" */
            return;
        }
        break;
    case IMAP_SASL_LOGIN_PASS:
        rc = sasl_login_decode(line, len, buf, sizeof(buf), 0);
        if (rc == SASL_OK) {
            char user[AUTH_USER_MAX];

            s->u.imap.sasl_step = IMAP_SASL_NONE;
            util_strlcpy(user, s->user, sizeof(user));
            imap_login(s, user, strlen(user), buf, strlen(buf));
            OPENSSL_cleanse(buf, sizeof(buf));
            return;
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        break;
    default:
        return;
    }
    s->u.imap.sasl_step = IMAP_SASL_NONE;
    if (rc == SASL_CANCELLED)
        session_printf(s, "%s BAD Authentication cancelled.\r\n", s->u.imap.tag);
    else
        session_printf(s, "%s BAD Invalid SASL LOGIN response.\r\n", s->u.imap.tag);
}

static void
imap_authenticate(struct session *s, const struct imap_parser *p)
{
    const char *mech = p->args[0];

    if (strcasecmp(mech, "PLAIN") == 0) {
        if (p->nargs >= 2) {
            /* SASL-IR; "=" is an empty initial response. */
            if (strcmp(p->args[1], "=") == 0)
                imap_sasl_plain(s, "", 0);
            else
                imap_sasl_plain(s, p->args[1], p->arglen[1]);
            return;
        }
        s->u.imap.sasl_step = IMAP_SASL_PLAIN;
        imap_parser_expect_line(s->u.imap.parser);
        session_printf(s, "+ \r\n");
    } else if (strcasecmp(mech, "LOGIN") == 0) {
        if (p->nargs >= 2) {
            s->u.imap.sasl_step = IMAP_SASL_LOGIN_USER;
            imap_sasl_line(s, p->args[1], p->arglen[1]);
            return;
        }
        s->u.imap.sasl_step = IMAP_SASL_LOGIN_USER;
        imap_parser_expect_line(s->u.imap.parser);
        session_printf(s, "+ VXNlcm5hbWU6\r\n");    /* "Username:" */
    } else {
        session_printf(s, "%s NO [CANNOT] Unsupported authentication mechanism.\r\n",
                       p->tag);
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
        imap_sasl_line(s, p->args[0], p->arglen[0]);
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
            imap_login(s, p->args[0], p->arglen[0], p->args[1], p->arglen[1]);
        else
            imap_authenticate(s, p);
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
                s->u.imap.sasl_step = IMAP_SASL_NONE;
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

static void
imap_auth_done(struct session *s, const struct auth_outcome *o)
{
    switch (o->result) {
    case AUTH_APPPW:
    case AUTH_PASSTHROUGH:
        s->u.imap.backend_step = IMAP_B_GREETING;
        session_backend_connect(s);
        break;
    case AUTH_REFUSED:
        imap_refuse(s);
        break;
    case AUTH_TEMPFAIL:
        log_warn("session=%" PRIu64 " event=login proto=imap user=%s result=tempfail", s->id,
                 s->user);
        session_printf(s, "%s NO [UNAVAILABLE] Temporary authentication failure, "
                          "try again later.\r\n", s->u.imap.tag);
        session_resume_preauth(s);
        break;
    }
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
    int n, len = 0;

    if (cfg->forward_client_addr) {
        /* Dovecot takes these from a trusted network (login_trusted_networks),
         * so its logs and its per-address penalties see the real client. */
        n = snprintf(out, sizeof(out),
                     IMAP_BTAG_ID " ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" "
                     "\"%d\" \"x-session-ext-id\" \"mfagate-%" PRIx64 "\")\r\n",
                     s->addr, s->port, s->id);
        len = n;
    }
    if (s->how == AUTH_APPPW)
        n = sasl_plain_encode(s->user, cfg->master_user, cfg->master_password, b64,
                              sizeof(b64));
    else
        n = sasl_plain_encode("", s->user, s->pass, b64, sizeof(b64));
    if (n < 0) {
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
    OPENSSL_cleanse(b64, sizeof(b64));
    s->u.imap.backend_step = IMAP_B_LOGIN;
    /* ID and AUTHENTICATE leave in one write. */
    session_backend_send(s, out, (size_t)len);
    OPENSSL_cleanse(out, sizeof(out));
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
imap_backend_down(struct session *s)
{
    session_printf(s, "%s NO [UNAVAILABLE] Backend unavailable, try again later.\r\n",
                   s->u.imap.tag);
    session_resume_preauth(s);
}

static void
imap_login_ok(struct session *s, char *line)
{
    size_t clen = 0;
    char *caps = imap_cap_code(line, &clen);

    log_info("session=%" PRIu64 " event=login proto=imap user=%s addr=%s how=%s result=ok "
             "ms=%" PRIu64, s->id, s->user, s->addr, session_how_name(s->how),
             util_now_ms() - s->login_started_ms);
    auth_report(s->pw->auth, CONFIG_PROTO_IMAP, s->user, s->addr, s->how, 1);
    if (caps != NULL)
        session_printf(s, "%s OK [CAPABILITY %.*s] Logged in\r\n", s->u.imap.tag, (int)clen,
                       caps);
    else
        session_printf(s, "%s OK Logged in\r\n", s->u.imap.tag);
    free(s->u.imap.parser);
    s->u.imap.parser = NULL;
    free(s->u.imap.caps);
    s->u.imap.caps = NULL;
    session_relay_start(s);
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

        if (s->how == AUTH_APPPW)
            n = sasl_plain_encode(s->user, s->pw->cfg->master_user,
                                  s->pw->cfg->master_password, b64, sizeof(b64) - 2);
        else
            n = sasl_plain_encode("", s->user, s->pass, b64, sizeof(b64) - 2);
        if (n < 0) {
            session_backend_fail(s, "credentials too long");
            return -1;
        }
        memcpy(b64 + n, "\r\n", 2);
        session_backend_send(s, b64, (size_t)n + 2);
        OPENSSL_cleanse(b64, sizeof(b64));
        return 0;
    }
    if (strncmp(line, ltag, strlen(ltag)) != 0)
        return 0;
    line += strlen(ltag);
    if (strncasecmp(line, "OK", 2) == 0) {
        imap_login_ok(s, line);
        return 1;
    }
    /* NO or BAD. */
    if (strstr(line, "[UNAVAILABLE]") != NULL || s->how == AUTH_APPPW) {
        /* A refused master login is the admin's problem, not the user's. */
        if (s->how == AUTH_APPPW)
            log_error("session=%" PRIu64 " event=master_login_refused user=%s "
                      "hint=\"check [backend] master_user and the backend's master passdb\"",
                      s->id, s->user);
        session_backend_fail(s, "backend refused");
        return -1;
    }
    auth_report(s->pw->auth, CONFIG_PROTO_IMAP, s->user, s->addr, s->how, 0);
    session_backend_close(s);
    imap_refuse(s);
    return -1;
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
    .auth_done = imap_auth_done,
    .backend_up = imap_backend_up,
    .backend_read = imap_backend_read,
    .backend_down = imap_backend_down,
    .bye = imap_bye,
};
