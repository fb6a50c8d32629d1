/*
 * backend_check.c - an account password checked by an IMAP login at the
 * backend (backend_check.h).  Owns one connection and one timer per check
 * and the small IMAP dialog; owns no HTTP and no decision (web/api_*.c
 * decide what a result means).
 *
 * Lifetime: the struct lives until both the conn and the timer are closed.
 * The result is delivered once, from a read/connect/timer callback, before
 * the close starts; a cancel only forgets the callback.
 */
#include "web/backend_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "core/conn.h"
#include "core/log.h"
#include "core/proxyhdr.h"
#include "core/util.h"
#include "proxy/sasl.h"

#define BC_LINE_MAX 8192
#define BC_USER_MAX 256
#define BC_PASS_MAX 256

enum bc_step {
    BC_CONNECT = 0,
    BC_GREETING,
    BC_STARTTLS,      /* sent "W0 STARTTLS" */
    BC_TLS,           /* handshake under way */
    BC_LOGIN,         /* sent ID + AUTHENTICATE, waiting for W2's reply */
    BC_DONE,
};

struct backend_check {
    struct conn conn;
    uv_timer_t timer;
    int handles;                      /* open handles; freed at 0 */
    enum bc_step step;
    const struct config *cfg;
    SSL_CTX *tls_client;
    backend_check_cb cb;
    void *arg;
    int reported;
    int sasl_ir;                      /* the greeting offered SASL-IR */
    char user[BC_USER_MAX];
    char pass[BC_PASS_MAX];
    char client_addr[64];
    char line[BC_LINE_MAX];
    size_t line_len;
};

const char *
backend_check_result_name(enum backend_check_result r)
{
    switch (r) {
    case BACKEND_CHECK_OK:
        return "ok";
    case BACKEND_CHECK_REFUSED:
        return "refused";
    case BACKEND_CHECK_UNAVAILABLE:
        return "unavailable";
    }
    return "?";
}

static void
bc_release(struct backend_check *bc)
{
    if (--bc->handles > 0)
        return;
    OPENSSL_cleanse(bc, sizeof(*bc));
    free(bc);
}

static void
bc_timer_closed(uv_handle_t *h)
{
    bc_release(container_of((uv_timer_t *)h, struct backend_check, timer));
}

static void
bc_conn_closed(struct conn *c)
{
    bc_release(c->data);
}

/* Delivers the result once, then ends the connection (politely if it is up). */
static void
bc_finish(struct backend_check *bc, enum backend_check_result r, const char *why)
{
    backend_check_cb cb = bc->cb;

    if (bc->step == BC_DONE)
        return;
    OPENSSL_cleanse(bc->pass, sizeof(bc->pass));
    if (r != BACKEND_CHECK_OK)
        log_debug("backend_check result=%s why=%s", backend_check_result_name(r), why);
    if (r == BACKEND_CHECK_UNAVAILABLE) {
        conn_abort(&bc->conn);
    } else {
        conn_write(&bc->conn, "W3 LOGOUT\r\n", 11);
        conn_close(&bc->conn);
    }
    bc->step = BC_DONE;
    uv_timer_stop(&bc->timer);
    uv_close((uv_handle_t *)&bc->timer, bc_timer_closed);
    bc->cb = NULL;
    if (cb != NULL)
        cb(bc->arg, r);
}

static void
bc_timeout(uv_timer_t *t)
{
    bc_finish(container_of(t, struct backend_check, timer), BACKEND_CHECK_UNAVAILABLE,
              "timeout");
}

/* Sends the client's address and the login in one write. */
static void
bc_send_login(struct backend_check *bc)
{
    char b64[2048], out[2600];
    int n, len = 0;

    if (bc->cfg->forward_client_addr == CONFIG_FORWARD_COMMAND && bc->client_addr[0] != '\0') {
        n = snprintf(out, sizeof(out),
                     "W1 ID (\"x-originating-ip\" \"%s\" \"x-session-ext-id\" \"mfagate-web\")\r\n",
                     bc->client_addr);
        if (n < 0 || (size_t)n >= sizeof(out)) {
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "id");
            return;
        }
        len = n;
    }
    if (sasl_plain_encode("", bc->user, bc->pass, b64, sizeof(b64)) < 0) {
        bc_finish(bc, BACKEND_CHECK_REFUSED, "too_long");
        return;
    }
    if (bc->sasl_ir)
        n = snprintf(out + len, sizeof(out) - (size_t)len, "W2 AUTHENTICATE PLAIN %s\r\n", b64);
    else
        n = snprintf(out + len, sizeof(out) - (size_t)len, "W2 AUTHENTICATE PLAIN\r\n");
    OPENSSL_cleanse(b64, sizeof(b64));
    len += n;
    bc->step = BC_LOGIN;
    if (conn_write(&bc->conn, out, (size_t)len) != 0)
        bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "write");
    OPENSSL_cleanse(out, sizeof(out));
    if (bc->sasl_ir)
        OPENSSL_cleanse(bc->pass, sizeof(bc->pass));
}

static void
bc_tls_done(struct conn *c, int status)
{
    struct backend_check *bc = c->data;

    if (status != 0) {
        bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "tls");
        return;
    }
    if (bc->step == BC_TLS) {
        /* After STARTTLS there is no new greeting, and the pre-TLS
         * capabilities are not to be trusted. */
        bc->sasl_ir = 0;
        bc_send_login(bc);
    }
}

static int
bc_has_cap(const char *line, const char *cap)
{
    const char *p = strstr(line, "[CAPABILITY ");
    size_t n = strlen(cap);

    if (p == NULL)
        return 0;
    for (p += 12; *p && *p != ']';) {
        if (strncasecmp(p, cap, n) == 0 && (p[n] == ' ' || p[n] == ']'))
            return 1;
        p = strchr(p, ' ');
        if (p == NULL)
            break;
        p++;
    }
    return 0;
}

static void
bc_line(struct backend_check *bc, char *line)
{
    switch (bc->step) {
    case BC_GREETING:
        if (strncmp(line, "* OK", 4) != 0) {
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "greeting");
            return;
        }
        bc->sasl_ir = bc_has_cap(line, "SASL-IR");
        if (bc->cfg->backend_tls[CONFIG_PROTO_IMAP] == CONFIG_TLS_STARTTLS) {
            bc->step = BC_STARTTLS;
            conn_write(&bc->conn, "W0 STARTTLS\r\n", 13);
            return;
        }
        bc_send_login(bc);
        return;
    case BC_STARTTLS:
        if (line[0] == '*')
            return;
        if (strncmp(line, "W0 OK", 5) != 0) {
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "starttls");
            return;
        }
        bc->step = BC_TLS;
        if (conn_tls_client(&bc->conn, bc->tls_client, bc->cfg->backend_host, bc_tls_done) != 0)
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "tls");
        return;
    case BC_LOGIN:
        if (line[0] == '+' && !bc->sasl_ir && bc->pass[0] != '\0') {
            char b64[2048];

            if (sasl_plain_encode("", bc->user, bc->pass, b64, sizeof(b64)) < 0) {
                bc_finish(bc, BACKEND_CHECK_REFUSED, "too_long");
                return;
            }
            OPENSSL_cleanse(bc->pass, sizeof(bc->pass));
            conn_write(&bc->conn, b64, strlen(b64));
            conn_write(&bc->conn, "\r\n", 2);
            OPENSSL_cleanse(b64, sizeof(b64));
            return;
        }
        if (strncmp(line, "W2 ", 3) != 0)
            return;       /* untagged data, W1's reply */
        if (strncmp(line + 3, "OK", 2) == 0)
            bc_finish(bc, BACKEND_CHECK_OK, "ok");
        else if (strncmp(line + 3, "NO", 2) == 0 && strstr(line, "[UNAVAILABLE]") == NULL)
            bc_finish(bc, BACKEND_CHECK_REFUSED, "no");
        else
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "login_reply");
        return;
    default:
        return;
    }
}

static void
bc_read(struct conn *c, const char *data, size_t len)
{
    struct backend_check *bc = c->data;

    for (size_t i = 0; i < len && bc->step != BC_DONE; i++) {
        char ch = data[i];

        if (ch == '\n') {
            if (bc->line_len > 0 && bc->line[bc->line_len - 1] == '\r')
                bc->line_len--;
            bc->line[bc->line_len] = '\0';
            bc->line_len = 0;
            bc_line(bc, bc->line);
            continue;
        }
        if (bc->line_len + 1 >= sizeof(bc->line)) {
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "line_too_long");
            return;
        }
        bc->line[bc->line_len++] = ch;
    }
}

static void
bc_error(struct conn *c, int status)
{
    bc_finish(c->data, BACKEND_CHECK_UNAVAILABLE, "closed");
}

static void
bc_connected(struct conn *c, int status)
{
    struct backend_check *bc = c->data;

    if (status != 0) {
        bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "connect");
        return;
    }
    bc->step = BC_GREETING;
    if (bc->cfg->backend_tls[CONFIG_PROTO_IMAP] == CONFIG_TLS_YES) {
        if (conn_tls_client(c, bc->tls_client, bc->cfg->backend_host, bc_tls_done) != 0)
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "tls");
        return;
    }
    if (conn_read_start(c) != 0)
        bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "read");
}

int
backend_check_start(uv_loop_t *loop, const struct config *cfg, const struct sockaddr *addr,
                    SSL_CTX *tls_client, const char *user, const char *pass,
                    const struct backend_check_client *client, backend_check_cb cb,
                    void *arg, struct backend_check **out)
{
    struct backend_check *bc;
    int r;

    *out = NULL;
    if (strlen(user) >= BC_USER_MAX || strlen(pass) >= BC_PASS_MAX)
        return UV_EINVAL;
    if (cfg->backend_tls[CONFIG_PROTO_IMAP] != CONFIG_TLS_NO && tls_client == NULL)
        return UV_EINVAL;
    bc = calloc(1, sizeof(*bc));
    if (bc == NULL)
        return UV_ENOMEM;
    bc->cfg = cfg;
    bc->tls_client = tls_client;
    bc->cb = cb;
    bc->arg = arg;
    util_strlcpy(bc->user, user, sizeof(bc->user));
    util_strlcpy(bc->pass, pass, sizeof(bc->pass));
    util_strlcpy(bc->client_addr, client->addr ? client->addr : "", sizeof(bc->client_addr));
    /* A client address that would break out of the quoted string is left out. */
    if (strpbrk(bc->client_addr, "\"\\\r\n") != NULL)
        bc->client_addr[0] = '\0';
    if ((r = uv_timer_init(loop, &bc->timer)) != 0) {
        OPENSSL_cleanse(bc, sizeof(*bc));
        free(bc);
        return r;
    }
    bc->handles = 1;
    bc->conn.data = bc;
    bc->conn.on_read = bc_read;
    bc->conn.on_error = bc_error;
    bc->conn.on_close = bc_conn_closed;
    if ((r = conn_init(loop, &bc->conn)) != 0) {
        OPENSSL_cleanse(bc->pass, sizeof(bc->pass));
        bc->step = BC_DONE;
        uv_close((uv_handle_t *)&bc->timer, bc_timer_closed);
        return r;
    }
    bc->handles++;
    uv_timer_start(&bc->timer, bc_timeout, cfg->backend_timeout_ms ? cfg->backend_timeout_ms : 10000, 0);
    if ((r = conn_connect(&bc->conn, addr, bc_connected)) != 0) {
        bc->cb = NULL;
        bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "connect");
        return r;
    }
    if (cfg->forward_client_addr == CONFIG_FORWARD_PROXY) {
        /* The header leaves first (queued until the connect completes). */
        unsigned char hdr[PROXYHDR_V2_MAX];
        int n = proxyhdr_v2_text(bc->client_addr, client->port, client->local, hdr,
                                 sizeof(hdr));

        if (n < 0 || (r = conn_write(&bc->conn, hdr, (size_t)n)) != 0) {
            bc->cb = NULL;
            bc_finish(bc, BACKEND_CHECK_UNAVAILABLE, "write");
            return r != 0 ? r : UV_EINVAL;
        }
    }
    *out = bc;
    return 0;
}

void
backend_check_cancel(struct backend_check *bc)
{
    if (bc == NULL)
        return;
    bc->cb = NULL;
    if (bc->step != BC_DONE) {
        OPENSSL_cleanse(bc->pass, sizeof(bc->pass));
        bc->step = BC_DONE;
        conn_abort(&bc->conn);
        uv_timer_stop(&bc->timer);
        uv_close((uv_handle_t *)&bc->timer, bc_timer_closed);
    }
}
