/*
 * session.c - the protocol-neutral half of a proxied mail session: accept,
 * TLS, timers, the auth decision, the backend connection, the relay and the
 * close lifecycle.  The protocol half (imap.c) decides what is said.
 *
 * Lifetime: the session counts its open handles (client connection, two
 * timers, the backend connection of the current attempt) plus one for
 * itself while not closing; each close callback takes one off, and the last
 * frees the session.  Nothing frees a session but session_unref().
 */
#include "proxy/session.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/proxyhdr.h"
#include "core/util.h"
#include "proxy/sasl.h"

#define SESSION_BBUF_MAX (64 * 1024)   /* one backend line during login */
#define SESSION_PENDING_MAX (256 * 1024)
/*
 * During the login the client stays read (stopping and restarting the read
 * watcher costs two or three epoll_ctl calls per login); what it pipelines
 * is kept, and only past this much are its reads paused.
 */
#define SESSION_PENDING_PAUSE (16 * 1024)

static void session_client_read(struct conn *c, const char *data, size_t len);
static void session_relay_backend_read(struct conn *c, const char *data, size_t len);
static void session_backend_connect(struct session *s);
static void session_relay_start(struct session *s);

static void
session_unref(struct session *s)
{
    if (--s->handles > 0)
        return;
    s->proto->release(s);
    free(s->pending);
    free(s->bbuf);
    OPENSSL_cleanse(s->pass, sizeof(s->pass));
    proxy_session_gone(s->pw, s);
    free(s);
}

static void
session_handle_closed(uv_handle_t *h)
{
    struct session *s = h->data;

    session_unref(s);
}

static void
session_client_closed(struct conn *c)
{
    struct session *s = c->data;

    log_info_lazy("session=%" PRIu64 " event=close proto=%s addr=%s in=%" PRIu64
                  " out=%" PRIu64 " secs=%.1f", s->id, s->proto->name, s->addr, c->bytes_in,
                  c->bytes_out, (double)(util_now_ms() - s->started_ms) / 1000.0);
    metrics_conn_close((int)s->proto->proto);
    session_unref(s);
}

static void
session_backend_closed(struct conn *c)
{
    struct session *s = c->data;

    if (s->backend == c)
        s->backend = NULL;
    free(c);
    session_unref(s);
}

/* Lets the backend connection of this attempt go; its close callback frees it. */
static void
session_backend_drop(struct session *s, int graceful)
{
    struct conn *b = s->backend;

    if (b == NULL)
        return;
    s->backend = NULL;
    free(s->bbuf);
    s->bbuf = NULL;
    s->bbuf_len = 0;
    if (graceful)
        conn_close(b);
    else
        conn_abort(b);
}

static void
session_forget_secret(struct session *s)
{
    OPENSSL_cleanse(s->pass, sizeof(s->pass));
}

void
session_close(struct session *s)
{
    if (s->closing)
        return;
    s->closing = 1;
    if (s->auth != NULL) {
        auth_cancel(s->auth);
        s->auth = NULL;
    }
    if (s->live_added) {
        auth_live_remove(s->pw->auth, &s->live);
        s->live_added = 0;
    }
    session_forget_secret(s);
    uv_timer_stop(&s->timer);
    uv_timer_stop(&s->delay);
    uv_close((uv_handle_t *)&s->timer, session_handle_closed);
    uv_close((uv_handle_t *)&s->delay, session_handle_closed);
    session_backend_drop(s, 1);
    conn_close(&s->client);
    session_unref(s);    /* the session's own reference */
}

void
session_abort(struct session *s)
{
    if (s->backend != NULL)
        conn_abort(s->backend);
    conn_abort(&s->client);
    session_close(s);
}

void
session_send(struct session *s, const char *data, size_t len)
{
    if (s->closing)
        return;
    if (conn_write(&s->client, data, len) < 0)
        session_close(s);
}

void
session_printf(struct session *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    session_send(s, line, (size_t)n);
}

const char *
session_how_name(enum auth_result how)
{
    switch (how) {
    case AUTH_APPPW:
        return "apppw";
    case AUTH_PASSTHROUGH:
        return "passthrough";
    case AUTH_REFUSED:
        return "refused";
    case AUTH_TEMPFAIL:
        return "tempfail";
    }
    return "?";
}

/* ---- timers ---- */

static void
session_timer_cb(uv_timer_t *t)
{
    struct session *s = t->data;
    uint64_t now = util_now_ms();
    const struct config *cfg = s->pw->cfg;

    switch (s->state) {
    case SESSION_PREAUTH:
    case SESSION_AUTH:
        log_info("session=%" PRIu64 " event=timeout state=preauth", s->id);
        s->proto->bye(s, "Disconnected for inactivity.");
        session_close(s);
        break;
    case SESSION_BACKEND:
        log_warn("session=%" PRIu64 " event=backend_timeout", s->id);
        session_backend_fail(s, "timeout");
        break;
    case SESSION_RELAY:
        /* Reads refresh last_activity_ms; the timer only checks it. */
        if (now - s->last_activity_ms >= cfg->idle_timeout_ms) {
            log_info("session=%" PRIu64 " event=timeout state=relay", s->id);
            session_close(s);
        } else {
            uv_timer_start(&s->timer, session_timer_cb,
                           cfg->idle_timeout_ms - (now - s->last_activity_ms), 0);
        }
        break;
    }
}

/* The pre-auth deadline runs from the connection's start, not per command. */
static void
session_preauth_timer(struct session *s)
{
    uint64_t elapsed = util_now_ms() - s->started_ms;
    uint64_t limit = s->pw->cfg->preauth_timeout_ms;

    uv_timer_start(&s->timer, session_timer_cb, elapsed >= limit ? 0 : limit - elapsed, 0);
}

static void
session_delay_cb(uv_timer_t *t)
{
    struct session *s = t->data;
    void (*fn)(struct session *) = s->delayed;

    s->delayed = NULL;
    if (fn != NULL && !s->closing)
        fn(s);
}

/* Runs fn after the refusal delay: at least [auth] refusal_delay since the
 * login began, so that every refusal takes about as long. */
static void
session_after_refusal_delay(struct session *s, void (*fn)(struct session *s))
{
    uint64_t elapsed = util_now_ms() - s->login_started_ms;
    uint64_t want = s->pw->cfg->refusal_delay_ms;

    s->delayed = fn;
    uv_timer_start(&s->delay, session_delay_cb, elapsed >= want ? 0 : want - elapsed, 0);
}

/* ---- client side ---- */

static void
session_client_error(struct conn *c, int status)
{
    struct session *s = c->data;

    if (status == UV_EOF && (s->state == SESSION_AUTH || s->state == SESSION_BACKEND)) {
        /* A client may half-close right after its login command: the
         * login still gets its answer, then the session ends (as it did
         * when reads were paused during the login). */
        s->client_eof = 1;
        return;
    }
    if (status != UV_EOF)
        log_info("session=%" PRIu64 " event=client_error error=\"%s\"", s->id,
                 uv_strerror(status));
    session_close(s);
}

static void
session_client_drain(struct conn *c, int status)
{
    struct session *s = c->data;

    /* The client took what the backend sent: read the backend again. */
    if (s->state == SESSION_RELAY && s->backend_paused && s->backend != NULL) {
        s->backend_paused = 0;
        conn_read_start(s->backend);
    }
}

static void
session_client_tls_done(struct conn *c, int status)
{
    struct session *s = c->data;

    if (status < 0) {
        log_info("session=%" PRIu64 " event=tls_failed addr=%s", s->id, s->addr);
        session_abort(s);
    }
}

void
session_accept(struct proxy_listener *l)
{
    struct proxy_worker *pw = l->pw;
    struct session *s;
    int rc;

    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return;
    s->pw = pw;
    s->listener = l->conf;
    s->id = ((uint64_t)pw->w->id << 48) | ++pw->next_id;
    s->proto = session_proto_for(l->conf->proto);
    s->started_ms = util_now_ms();
    s->last_activity_ms = s->started_ms;

    rc = conn_init(&pw->w->loop, &s->client);
    if (rc != 0) {
        free(s);
        return;
    }
    s->client.data = s;
    s->client.on_read = session_client_read;
    s->client.on_error = session_client_error;
    s->client.on_drain = session_client_drain;
    s->client.on_close = session_client_closed;
    uv_timer_init(&pw->w->loop, &s->timer);
    uv_timer_init(&pw->w->loop, &s->delay);
    s->timer.data = s;
    s->delay.data = s;
    s->handles = 4;    /* the client connection, two timers, the session itself */
    proxy_session_add(pw, s);
    rc = conn_accept((uv_stream_t *)&l->tcp, &s->client);
    if (rc != 0) {
        log_info("event=accept_failed error=\"%s\"", uv_strerror(rc));
        session_abort(s);
        return;
    }
    metrics_conn_open((int)s->proto->proto);
    conn_peer_addr(&s->client, s->addr, sizeof(s->addr), &s->port);
    conn_set_low_water(&s->client, pw->cfg->relay_high_water / 4, pw->cfg->relay_high_water);
    log_info_lazy("session=%" PRIu64 " event=connect proto=%s listener=%s addr=%s port=%d",
                  s->id, s->proto->name, l->conf->key, s->addr, s->port);

    if (l->conf->implicit_tls) {
        session_starttls(s);
        if (s->closing)
            return;
    }
    session_preauth_timer(s);
    s->proto->greet(s);
    if (conn_read_start(&s->client) != 0)
        session_close(s);
}

void
session_starttls(struct session *s)
{
    SSL_CTX *ctx = tls_slot_get(s->pw->sh->tls_server);
    int rc = ctx != NULL ? conn_tls_server(&s->client, ctx, session_client_tls_done) : -1;

    SSL_CTX_free(ctx);    /* the SSL object holds its own reference */
    if (rc != 0) {
        session_abort(s);
        return;
    }
    s->tls = 1;
}

void
session_keep_pending(struct session *s, const char *data, size_t len)
{
    char *p;

    if (len == 0)
        return;
    if (s->pending_len + len > SESSION_PENDING_MAX) {
        log_info("session=%" PRIu64 " event=pipelined_too_much", s->id);
        session_close(s);
        return;
    }
    p = realloc(s->pending, s->pending_len + len);
    if (p == NULL) {
        session_close(s);
        return;
    }
    memcpy(p + s->pending_len, data, len);
    s->pending = p;
    s->pending_len += len;
}

/* Keeps the last bytes the client sent in the relay (a chunk may end a line). */
static void
session_client_tail(struct session *s, const char *data, size_t len)
{
    size_t keep = sizeof(s->client_tail), old = s->client_tail_len;

    if (len >= keep) {
        memcpy(s->client_tail, data + len - keep, keep);
        s->client_tail_len = (unsigned char)keep;
        return;
    }
    if (old + len > keep) {
        memmove(s->client_tail, s->client_tail + (old + len - keep), keep - len);
        old = keep - len;
    }
    memcpy(s->client_tail + old, data, len);
    s->client_tail_len = (unsigned char)(old + len);
}

/*
 * Did the client's input end with its protocol's goodbye (IMAP "tag
 * LOGOUT", POP3 and SMTP "QUIT"), nothing after it?  Then, once the
 * backend has answered and closed, the client has nothing more to say.
 */
static int
session_client_said_bye(const struct session *s)
{
    const char *t = s->client_tail;
    size_t n = s->client_tail_len;

    if (s->proto->proto == CONFIG_PROTO_IMAP)
        return n >= 9 && strncasecmp(t + n - 9, " LOGOUT\r\n", 9) == 0;
    /* "QUIT" is the whole line: after a LF, or it was all the relay saw
     * (n == 6: the tail is not full, so nothing came before it). */
    return n >= 6 && strncasecmp(t + n - 6, "QUIT\r\n", 6) == 0 &&
           (n == 6 || t[n - 7] == '\n');
}

static void
session_client_read(struct conn *c, const char *data, size_t len)
{
    struct session *s = c->data;

    if (s->closing)
        return;
    switch (s->state) {
    case SESSION_PREAUTH:
        s->proto->client_read(s, data, len);
        break;
    case SESSION_AUTH:
    case SESSION_BACKEND:
        /* Kept until the login is over; session_resume_preauth and
         * session_relay_start resume reads if they were paused here. */
        session_keep_pending(s, data, len);
        if (!s->closing && s->pending_len > SESSION_PENDING_PAUSE)
            conn_read_stop(&s->client);
        break;
    case SESSION_RELAY:
        s->last_activity_ms = util_now_ms();
        if (s->backend == NULL)
            return;
        session_client_tail(s, data, len);
        if (conn_write(s->backend, data, len) < 0) {
            session_close(s);
            return;
        }
        if (conn_write_queued(s->backend) > s->pw->cfg->relay_high_water) {
            s->client_paused = 1;
            conn_read_stop(&s->client);
        }
        break;
    }
}

/* Back to PREAUTH after a failed or refused login: resumes reads and feeds
 * what was kept. */
static void
session_resume_preauth(struct session *s)
{
    char *kept = s->pending;
    size_t kept_len = s->pending_len;

    if (s->closing)
        return;
    session_forget_secret(s);
    s->state = SESSION_PREAUTH;
    s->inbound = 0;
    session_preauth_timer(s);
    s->pending = NULL;
    s->pending_len = 0;
    if (kept_len > 0)
        s->proto->client_read(s, kept, kept_len);
    free(kept);
    if (!s->closing && s->state == SESSION_PREAUTH) {
        if (s->client_eof)
            session_close(s);
        else
            conn_read_start(&s->client);
    }
}

/* ---- the login ---- */

static void
session_refuse_now(struct session *s)
{
    s->proto->login_refused(s);
    session_resume_preauth(s);
}

/* Refuses the login in progress, after the refusal delay. */
static void
session_refuse(struct session *s)
{
    log_info_lazy("session=%" PRIu64 " event=login proto=%s user=%s addr=%s how=%s "
                  "result=refused", s->id, s->proto->name, s->logname, s->addr,
                  session_how_name(s->how));
    metrics_login((int)s->proto->proto, METRICS_REFUSED, session_how_name(s->how),
                  util_now_ms() - s->login_started_ms);
    session_after_refusal_delay(s, session_refuse_now);
}

static void
session_unavailable(struct session *s)
{
    s->proto->login_unavailable(s);
    session_resume_preauth(s);
}

static void
session_auth_cb(void *arg, const struct auth_outcome *o)
{
    struct session *s = arg;

    s->auth = NULL;
    s->how = o->result;
    s->apppw_id = o->apppw_id;
    /* The decision may have normalized the name; the backend sees that one. */
    util_strlcpy(s->user, o->user, sizeof(s->user));
    util_log_safe(s->user, s->logname, sizeof(s->logname));
    switch (o->result) {
    case AUTH_APPPW:
    case AUTH_PASSTHROUGH:
        session_backend_connect(s);
        break;
    case AUTH_REFUSED:
        session_refuse(s);
        break;
    case AUTH_TEMPFAIL:
        log_warn("session=%" PRIu64 " event=login proto=%s user=%s result=tempfail", s->id,
                 s->proto->name, s->logname);
        session_unavailable(s);
        break;
    }
}

void
session_login(struct session *s, const char *user, size_t ulen, const char *pass, size_t plen)
{
    int rc;

    s->login_started_ms = util_now_ms();
    s->how = AUTH_REFUSED;
    s->state = SESSION_AUTH;
    if (auth_normalize_user(s->pw->cfg, user, ulen, s->user) != 0 || plen == 0 ||
        plen >= sizeof(s->pass) || memchr(pass, '\0', plen) != NULL) {
        util_strlcpy(s->user, "-", sizeof(s->user));
        util_strlcpy(s->logname, "-", sizeof(s->logname));
        session_refuse(s);
        return;
    }
    util_log_safe(s->user, s->logname, sizeof(s->logname));
    memcpy(s->pass, pass, plen);
    s->pass[plen] = '\0';
    rc = auth_check(s->pw->auth, s->proto->proto, s->user, s->pass, s->addr, session_auth_cb,
                    s, &s->auth);
    if (rc != 0) {
        s->auth = NULL;
        s->how = AUTH_TEMPFAIL;
        log_warn("session=%" PRIu64 " event=login proto=%s result=tempfail error=\"%s\"", s->id,
                 s->proto->name, uv_strerror(rc));
        session_unavailable(s);
    }
}

/* ---- SASL (PLAIN and LOGIN, the same in every protocol) ---- */

static void
session_sasl_plain(struct session *s, const char *b64, size_t len)
{
    char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
    int rc;

    s->sasl = SESSION_SASL_NONE;
    rc = sasl_plain_decode(b64, len, user, sizeof(user), pass, sizeof(pass));
    if (rc == SASL_OK) {
        session_login(s, user, strlen(user), pass, strlen(pass));
    } else {
        if (rc == SASL_AUTHZID)
            log_info("session=%" PRIu64 " event=login proto=%s addr=%s result=authzid_refused",
                     s->id, s->proto->name, s->addr);
        s->proto->sasl_failed(s, rc);
    }
    OPENSSL_cleanse(pass, sizeof(pass));
}

int
session_sasl_start(struct session *s, const char *mech, const char *ir, size_t irlen)
{
    if (strcasecmp(mech, "PLAIN") == 0) {
        if (ir != NULL) {
            /* "=" is an empty initial response (RFC 4959, 5034, 4954). */
            if (irlen == 1 && ir[0] == '=')
                irlen = 0;
            session_sasl_plain(s, ir, irlen);
            return 0;
        }
        s->sasl = SESSION_SASL_PLAIN;
        s->proto->sasl_prompt(s, "");
        return 0;
    }
    if (strcasecmp(mech, "LOGIN") == 0) {
        s->sasl = SESSION_SASL_LOGIN_USER;
        if (ir != NULL)
            session_sasl_line(s, ir, irlen);
        else
            s->proto->sasl_prompt(s, "VXNlcm5hbWU6");    /* "Username:" */
        return 0;
    }
    return -1;
}

void
session_sasl_line(struct session *s, const char *line, size_t len)
{
    char buf[AUTH_PASS_MAX];
    int rc = SASL_MALFORMED;

    switch (s->sasl) {
    case SESSION_SASL_NONE:
        return;
    case SESSION_SASL_PLAIN:
        session_sasl_plain(s, line, len);
        return;
    case SESSION_SASL_LOGIN_USER:
        rc = sasl_login_decode(line, len, buf, sizeof(buf), 1);
        if (rc != SASL_OK)
            break;
        /* Kept as given; session_login normalizes (or refuses) it. */
        util_strlcpy(s->user, buf, sizeof(s->user));
        s->sasl = SESSION_SASL_LOGIN_PASS;
        s->proto->sasl_prompt(s, "UGFzc3dvcmQ6");    /* "Password:" */
        return;
    case SESSION_SASL_LOGIN_PASS:
        rc = sasl_login_decode(line, len, buf, sizeof(buf), 0);
        if (rc != SASL_OK)
            break;
        {
            char user[AUTH_USER_MAX];

            s->sasl = SESSION_SASL_NONE;
            util_strlcpy(user, s->user, sizeof(user));
            session_login(s, user, strlen(user), buf, strlen(buf));
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        return;
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    s->sasl = SESSION_SASL_NONE;
    s->proto->sasl_failed(s, rc);
}

/* ---- the backend ---- */

static void
session_backend_error(struct conn *c, int status)
{
    struct session *s = c->data;

    if (c != s->backend)
        return;
    if (s->state == SESSION_RELAY) {
        /* The backend ended the session (LOGOUT, its own timeout, a crash):
         * what it sent last still reaches the client.  After the client's
         * own LOGOUT/QUIT it will send nothing more: close without
         * lingering for its FIN (a loop wake-up and a read per session). */
        if (status == UV_EOF && session_client_said_bye(s))
            conn_peer_done(&s->client);
        session_close(s);
        return;
    }
    log_warn("session=%" PRIu64 " event=backend_error error=\"%s\"", s->id,
             uv_strerror(status));
    session_backend_fail(s, uv_strerror(status));
}

static void
session_backend_read(struct conn *c, const char *data, size_t len)
{
    struct session *s = c->data;

    if (c != s->backend || s->closing)
        return;
    if (s->state == SESSION_RELAY) {
        session_relay_backend_read(c, data, len);
        return;
    }
    s->proto->backend_read(s, data, len);
}

static void
session_backend_drain(struct conn *c, int status)
{
    struct session *s = c->data;

    if (c == s->backend && s->state == SESSION_RELAY && s->client_paused) {
        s->client_paused = 0;
        conn_read_start(&s->client);
    }
}

static void
session_backend_tls_done(struct conn *c, int status)
{
    struct session *s = c->data;

    if (c != s->backend)
        return;
    if (status < 0) {
        log_warn("session=%" PRIu64 " event=backend_tls_failed", s->id);
        session_backend_fail(s, "TLS handshake failed");
        return;
    }
    s->proto->backend_up(s);
}

static void
session_backend_connected(struct conn *c, int status)
{
    struct session *s = c->data;
    /* The inbound MTA is reached in cleartext, as mail servers reach it. */
    enum config_tls_mode mode =
        s->inbound ? CONFIG_TLS_NO : s->pw->cfg->backend_tls[s->proto->proto];

    if (c != s->backend)
        return;
    if (status != 0) {
        log_warn("session=%" PRIu64 " event=backend_connect_failed error=\"%s\"", s->id,
                 uv_strerror(status));
        session_backend_fail(s, uv_strerror(status));
        return;
    }
    if (conn_read_start(c) != 0) {
        session_backend_fail(s, "read failed");
        return;
    }
    if (mode == CONFIG_TLS_YES) {
        if (conn_tls_client(c, s->pw->sh->tls_client, NULL, session_backend_tls_done) != 0)
            session_backend_fail(s, "TLS setup failed");
        return;
    }
    s->proto->backend_up(s);
}

/*
 * forward_client_addr = proxy: the PROXY v2 header leaves first, before the
 * greeting and before any TLS (queued until the connect completes): the
 * client's address, and the address of ours that it connected to.
 */
static void
session_backend_proxyhdr(struct session *s)
{
    struct sockaddr_storage local;
    unsigned char hdr[PROXYHDR_V2_MAX];
    int len = sizeof(local), n;

    if (uv_tcp_getsockname(&s->client.tcp, (struct sockaddr *)&local, &len) != 0)
        memset(&local, 0, sizeof(local));
    n = proxyhdr_v2_text(s->addr, s->port, (const struct sockaddr *)&local, hdr, sizeof(hdr));
    if (n < 0 || conn_write(s->backend, hdr, (size_t)n) < 0)
        session_backend_fail(s, "write failed");
}

static void
session_backend_connect(struct session *s)
{
    struct conn *b;
    const struct sockaddr *addr =
        (const struct sockaddr *)(s->inbound ? &s->pw->sh->backend_inbound
                                             : &s->pw->sh->backend[s->proto->proto]);

    /* The inbound MTA is reached in cleartext (see session_backend_connected). */
    enum config_tls_mode mode =
        s->inbound ? CONFIG_TLS_NO : s->pw->cfg->backend_tls[s->proto->proto];

    s->state = SESSION_BACKEND;
    s->backend_answer_due = 0;
    s->proto->backend_start(s);
    uv_timer_start(&s->timer, session_timer_cb, s->pw->cfg->backend_timeout_ms, 0);
    b = calloc(1, sizeof(*b));
    if (b == NULL || conn_init(&s->pw->w->loop, b) != 0) {
        free(b);
        session_backend_fail(s, "out of memory");
        return;
    }
    b->data = s;
    b->on_read = session_backend_read;
    b->on_error = session_backend_error;
    b->on_drain = session_backend_drain;
    b->on_close = session_backend_closed;
    s->backend = b;
    s->handles++;
    conn_set_low_water(b, s->pw->cfg->relay_high_water / 4, s->pw->cfg->relay_high_water);
    /* Implicit TLS: we speak first.  Otherwise the backend greets first, and
     * its greeting is what says the connection is up. */
    if ((mode == CONFIG_TLS_YES ? conn_connect(b, addr, session_backend_connected)
                                : conn_connect_greeted(b, addr, session_backend_connected)) != 0) {
        session_backend_fail(s, "connect failed");
        return;
    }
    if (s->pw->cfg->forward_client_addr == CONFIG_FORWARD_PROXY)
        session_backend_proxyhdr(s);
}

void
session_backend_starttls(struct session *s)
{
    if (conn_tls_client(s->backend, s->pw->sh->tls_client, NULL, session_backend_tls_done) != 0)
        session_backend_fail(s, "TLS setup failed");
}

void
session_backend_send(struct session *s, const char *data, size_t len)
{
    if (s->backend == NULL)
        return;
    if (conn_write(s->backend, data, len) < 0)
        session_backend_fail(s, "write failed");
}

int
session_backend_plain(struct session *s, char *out, size_t cap)
{
    const struct config *cfg = s->pw->cfg;

    if (s->how == AUTH_APPPW)
        return sasl_plain_encode(s->user, cfg->master_user, cfg->master_password, out, cap);
    return sasl_plain_encode("", s->user, s->pass, out, cap);
}

void
session_backend_fail(struct session *s, const char *why)
{
    if (s->closing)
        return;
    log_warn("session=%" PRIu64 " event=backend_failed proto=%s user=%s error=\"%s\"", s->id,
             s->proto->name, s->logname, why);
    metrics_backend_error((int)s->proto->proto);
    if (!s->inbound)
        metrics_login((int)s->proto->proto, METRICS_UNAVAILABLE, session_how_name(s->how),
                      util_now_ms() - s->login_started_ms);
    session_backend_drop(s, 0);
    uv_timer_stop(&s->timer);
    session_unavailable(s);
}

void
session_backend_refused(struct session *s)
{
    if (s->how == AUTH_APPPW) {
        /* A refused master login is the admin's problem, not the user's. */
        log_error("session=%" PRIu64 " event=master_login_refused proto=%s user=%s "
                  "hint=\"check [backend] master_user and the backend's master passdb\"",
                  s->id, s->proto->name, s->logname);
        session_backend_fail(s, "master login refused");
        return;
    }
    auth_report(s->pw->auth, s->proto->proto, s->user, s->addr, s->how, 0);
    session_backend_drop(s, 1);
    uv_timer_stop(&s->timer);
    session_refuse(s);
}

void
session_inbound(struct session *s)
{
    s->inbound = 1;
    s->how = AUTH_PASSTHROUGH;
    s->login_started_ms = util_now_ms();
    session_backend_connect(s);
}

void
session_inbound_ok(struct session *s)
{
    log_info("session=%" PRIu64 " event=relay proto=%s addr=%s inbound=1 ms=%" PRIu64, s->id,
             s->proto->name, s->addr, util_now_ms() - s->login_started_ms);
    session_relay_start(s);
}

void
session_login_ok(struct session *s)
{
    log_info_lazy("session=%" PRIu64 " event=login proto=%s user=%s addr=%s how=%s result=ok "
                  "ms=%" PRIu64, s->id, s->proto->name, s->logname, s->addr,
                  session_how_name(s->how), util_now_ms() - s->login_started_ms);
    metrics_login((int)s->proto->proto, METRICS_OK, session_how_name(s->how),
                  util_now_ms() - s->login_started_ms);
    auth_report(s->pw->auth, s->proto->proto, s->user, s->addr, s->how, 1);
    s->proto->login_succeeded(s);
    session_relay_start(s);
}

int
session_backend_lines(struct session *s, const char *data, size_t len,
                      int (*fn)(struct session *s, char *line, size_t len))
{
    size_t start = 0;
    int rc = 0;
    char *nb;

    if (s->bbuf_len + len > SESSION_BBUF_MAX) {
        log_warn("session=%" PRIu64 " event=backend_line_too_long", s->id);
        return -1;
    }
    nb = realloc(s->bbuf, s->bbuf_len + len + 1);
    if (nb == NULL)
        return -1;
    s->bbuf = nb;
    memcpy(s->bbuf + s->bbuf_len, data, len);
    s->bbuf_len += len;

    while (rc == 0) {
        char *lf = memchr(s->bbuf + start, '\n', s->bbuf_len - start);
        size_t end, n;

        if (lf == NULL)
            break;
        end = (size_t)(lf - s->bbuf);
        n = end - start;
        if (n > 0 && s->bbuf[start + n - 1] == '\r')
            n--;
        s->bbuf[start + n] = '\0';
        rc = fn(s, s->bbuf + start, n);
        start = end + 1;
        if (s->closing || s->bbuf == NULL)
            return rc == 0 ? -1 : rc;
    }
    if (rc == 1) {
        /* The dialog is over; whatever followed is the client's. */
        if (start < s->bbuf_len)
            session_send(s, s->bbuf + start, s->bbuf_len - start);
        free(s->bbuf);
        s->bbuf = NULL;
        s->bbuf_len = 0;
        return 1;
    }
    memmove(s->bbuf, s->bbuf + start, s->bbuf_len - start);
    s->bbuf_len -= start;
    if (rc == 0 && s->backend_answer_due && s->backend != NULL) {
        /* Measured with Dovecot's POP3 (XCLIENT + AUTH): without this the
         * AUTH answer waited 40 ms for our delayed ACK on most logins. */
        conn_ack_now(s->backend);
    }
    s->backend_answer_due = 0;
    return rc;
}

/* ---- relay ---- */

static void
session_relay_backend_read(struct conn *c, const char *data, size_t len)
{
    struct session *s = c->data;

    s->last_activity_ms = util_now_ms();
    if (conn_write(&s->client, data, len) < 0) {
        session_close(s);
        return;
    }
    if (conn_write_queued(&s->client) > s->pw->cfg->relay_high_water) {
        s->backend_paused = 1;
        conn_read_stop(c);
    }
}

static void
session_live_revoked(struct auth_live *node)
{
    struct session *s = container_of(node, struct session, live);

    log_info("session=%" PRIu64 " event=revoked user=%s", s->id, s->logname);
    session_close(s);    /* which takes the node off the context's list */
}

static void
session_relay_start(struct session *s)
{
    const struct config *cfg = s->pw->cfg;

    session_forget_secret(s);
    s->state = SESSION_RELAY;
    s->last_activity_ms = util_now_ms();
    uv_timer_start(&s->timer, session_timer_cb, cfg->idle_timeout_ms, 0);
    if (s->how == AUTH_APPPW) {
        s->live.apppw_id = s->apppw_id;
        s->live.revoked = session_live_revoked;
        auth_live_add(s->pw->auth, &s->live);
        s->live_added = 1;
    }
    if (s->pending_len > 0) {
        session_client_tail(s, s->pending, s->pending_len);
        session_backend_send(s, s->pending, s->pending_len);
        free(s->pending);
        s->pending = NULL;
        s->pending_len = 0;
    }
    if (s->closing)
        return;
    if (s->client_eof)
        session_close(s);
    else
        conn_read_start(&s->client);
}

void
session_shutdown(struct session *s)
{
    if (s->state == SESSION_RELAY)
        return;    /* logged-in sessions may go on for the grace period */
    s->proto->bye(s, "Server shutting down.");
    session_close(s);
}
