/*
 * api_factors.c - the signed-in user's page data and second factors
 * (web/API.md "The signed-in user"): GET /api/me, binding a TOTP factor
 * (begin -> secret, otpauth URI, QR; confirm with one code), the fresh
 * verification before unbind/change (verify/begin -> verify -> a grant),
 * and unbinding.  The backup e-mail's begin/confirm are in api_email.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/keys.h"
#include "auth/totp.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/mailer.h"
#include "web/qr.h"
#include "web/wechat.h"

/* The first byte of a pending enrollment's data: a new binding or a change. */
#define ENROLL_BIND 'b'
#define ENROLL_CHANGE 'c'

/* --- GET /api/me -------------------------------------------------------- */

static int
api_me_factor(void *arg, const struct store_factor *f)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "kind", f->kind);
    if (strcmp(f->kind, "email") == 0) {
        char masked[MAILER_ADDR_MAX + 8];

        mailer_mask(f->label, masked, sizeof(masked));
        cJSON_AddStringToObject(o, "label", masked);
    } else {
        cJSON_AddStringToObject(o, "label", f->label);
    }
    api_add_time(o, "created", f->created);
    api_add_time(o, "last_used", f->last_used);
    cJSON_AddItemToArray(arg, o);
    return 0;
}

/* The port of a listener's first address, or 0 if it is off. */
static int
api_listener_port(const struct config *cfg, int idx)
{
    const struct config_listener *l = &cfg->listeners[idx];
    const struct sockaddr_storage *ss;

    if (l->naddrs <= 0)
        return 0;
    ss = &l->addrs[0].ss;
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static void
api_add_port(cJSON *o, const char *name, int port)
{
    if (port > 0)
        cJSON_AddNumberToObject(o, name, port);
    else
        cJSON_AddNullToObject(o, name);
}

/* (api_priv.h) The Host header without its port, or the host name. */
void
api_host(struct web_worker *ww, const struct http_request *req, char *out, size_t outlen)
{
    const char *h = http_header(req, "Host");
    size_t n = 0;

    if (h != NULL && h[0] == '[') {
        const char *end = strchr(h, ']');
        if (end != NULL && (size_t)(end - h) + 2 <= outlen) {
            n = (size_t)(end - h) + 1;
            memcpy(out, h, n);
            out[n] = '\0';
            for (size_t i = 1; i + 1 < n; i++)
                if (!(strchr("0123456789abcdefABCDEF:.", out[i])))
                    goto fallback;
            return;
        }
        goto fallback;
    }
    if (h != NULL) {
        for (; h[n] && h[n] != ':' && n + 1 < outlen; n++) {
            char c = h[n];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.'))
                goto fallback;
            out[n] = c;
        }
        out[n] = '\0';
        if (n > 0 && (h[n] == '\0' || h[n] == ':'))
            return;
    }
fallback:
    util_strlcpy(out, ww->sh->hostname, outlen);
}

void
api_me(struct web_worker *ww, struct http_request *req)
{
    const struct config *cfg = ww->cfg;
    struct api_session s;
    char host[256];
    cJSON *o, *factors, *settings, *proto;
    static const struct {
        const char *name;
        int ssl, plain;
    } protos[] = {
        {"imap", CONFIG_L_IMAPS, CONFIG_L_IMAP},
        {"pop3", CONFIG_L_POP3S, CONFIG_L_POP3},
        {"smtp", CONFIG_L_SMTPS, CONFIG_L_SMTP},
    };

    if (api_session(ww, req, &s) != 0)
        return;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "user", s.ws.user);
    cJSON_AddStringToObject(o, "csrf", s.ws.csrf);
    factors = cJSON_AddArrayToObject(o, "factors");
    if (store_factor_list(api_store(ww), s.ws.user, api_me_factor, factors) != STORE_OK) {
        cJSON_Delete(o);
        api_session_done(&s);
        api_reply_store_error(req);
        return;
    }
    /* What the page may offer: WeChat binding, and push beside the scan. */
    cJSON_AddBoolToObject(o, "wechat", ww->sh->wechat != NULL);
    cJSON_AddBoolToObject(o, "push", wechat_push_enabled(ww->sh->wechat));
    api_host(ww, req, host, sizeof(host));
    settings = cJSON_AddObjectToObject(o, "settings");
    for (size_t i = 0; i < ARRAY_SIZE(protos); i++) {
        proto = cJSON_AddObjectToObject(settings, protos[i].name);
        cJSON_AddStringToObject(proto, "host", host);
        api_add_port(proto, "ssl_port", api_listener_port(cfg, protos[i].ssl));
        api_add_port(proto, "port", api_listener_port(cfg, protos[i].plain));
    }
    api_reply(req, 200, o, NULL);
    api_session_done(&s);
}

/* --- grants ------------------------------------------------------------- */

/* (api_priv.h) 403 for a grant missing, expired, another user's or purpose. */
int
api_open_grant(struct web_worker *ww, struct http_request *req, const struct api_session *s,
               const char *grant, const char *purpose, const char *kind,
               struct store_challenge *ch)
{
    char want[64];
    int r;

    snprintf(want, sizeof(want), "%s:%s", purpose, kind);
    r = challenge_open(api_store(ww), api_keys(ww), grant, CHALLENGE_GRANT, api_now(), ch);
    if (r == STORE_OK &&
        (strcmp(ch->user, s->ws.user) != 0 || ch->data_len != strlen(want) ||
         memcmp(ch->data, want, ch->data_len) != 0))
        r = CHALLENGE_GONE;
    if (r == STORE_OK)
        return 0;
    if (r == STORE_ERR)
        api_reply_store_error(req);
    else
        http_respond_error(req, 403, "verification_required",
                           "Please verify with your current factor first.");
    return -1;
}

/* (api_priv.h) as api_open_grant, and uses the grant up. */
int
api_use_grant(struct web_worker *ww, struct http_request *req, const struct api_session *s,
              const char *grant, const char *purpose, const char *kind)
{
    struct store_challenge ch;
    int r = api_open_grant(ww, req, s, grant, purpose, kind, &ch);

    if (r == 0) {
        r = challenge_consume(api_store(ww), &ch, api_now());
        if (r == STORE_ERR)
            api_reply_store_error(req);
        else if (r != STORE_OK)
            http_respond_error(req, 403, "verification_required",
                               "Please verify with your current factor first.");
        r = r == STORE_OK ? 0 : -1;
    }
    OPENSSL_cleanse(&ch, sizeof(ch));
    return r;
}

/* --- TOTP binding ------------------------------------------------------- */

static void
api_totp_begin(struct web_worker *ww, struct http_request *req, struct api_session *s,
               cJSON *body)
{
    struct store *st = api_store(ww);
    unsigned char secret[TOTP_SECRET_LEN], data[1 + TOTP_SEALED_MAX];
    char b32[64], uri[TOTP_URI_MAX], token[TOKEN_TEXT_LEN + 1], lu[AUTH_USER_MAX];
    struct store_factor f;
    const char *grant = NULL;
    size_t sealed_len = 0;
    char *svg = NULL;
    int r, mode = ENROLL_BIND;
    cJSON *o;

    if (api_str(req, body, "grant", 64, 0, &grant) < 0)
        return;
    r = store_factor_get(st, s->ws.user, "totp", &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r != STORE_OK && r != STORE_NOTFOUND) {
        api_reply_store_error(req);
        return;
    }
    if (r == STORE_OK) {
        if (grant == NULL) {
            http_respond_error(req, 409, "already_bound",
                               "An authenticator app is already bound. Use Change.");
            return;
        }
        if (api_use_grant(ww, req, s, grant, "change", "totp") != 0)
            return;
        mode = ENROLL_CHANGE;
    }
    if (account_totp_secret(s->ws.user, secret, b32, uri) != 0 ||
        totp_seal(api_keys(ww)->totp, s->ws.user, secret, sizeof(secret), data + 1,
                  sizeof(data) - 1, &sealed_len) != 0 ||
        qr_svg(uri, &svg) != 0) {
        api_reply_store_error(req);
        goto done;
    }
    data[0] = (unsigned char)mode;
    /* One pending enrollment per user: a new begin replaces the old. */
    if (store_challenge_remove_kind(st, s->ws.user, CHALLENGE_TOTP_ENROLL) != STORE_OK ||
        challenge_create(st, api_keys(ww), s->ws.user, CHALLENGE_TOTP_ENROLL, data,
                         1 + sealed_len, req->peer, api_now(), CHALLENGE_ENROLL_TTL_S, token,
                         NULL) != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    log_info("web id=%llx event=totp_begin user=%s mode=%s", (unsigned long long)req->id,
             util_log_safe(s->ws.user, lu, sizeof(lu)), mode == ENROLL_BIND ? "bind" : "change");
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "secret", b32);
    cJSON_AddStringToObject(o, "otpauth", uri);
    cJSON_AddStringToObject(o, "qr_svg", svg);
    api_reply(req, 200, o, NULL);

done:
    free(svg);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(data, sizeof(data));
    OPENSSL_cleanse(b32, sizeof(b32));
    OPENSSL_cleanse(uri, sizeof(uri));
    OPENSSL_cleanse(token, sizeof(token));
}

static void
api_totp_confirm(struct web_worker *ww, struct http_request *req, struct api_session *s,
                 cJSON *body)
{
    struct store *st = api_store(ww);
    unsigned char secret[TOTP_SEALED_MAX];
    struct store_challenge ch;
    char lu[AUTH_USER_MAX];
    const char *code;
    size_t len = 0;
    int64_t step = -1, id = 0, now = api_now();
    int r, left = 0;
    cJSON *o;

    if (api_code(req, body, &code) != 0)
        return;
    if (api_enrollment_open(req, st, s->ws.user, CHALLENGE_TOTP_ENROLL, now, &ch) != 0)
        goto done;
    if (ch.data_len < 2 ||
        totp_open(api_keys(ww)->totp, s->ws.user, ch.data + 1, ch.data_len - 1, secret,
                  sizeof(secret), &len) != 0) {
        api_reply_store_error(req);
        goto done;
    }
    if (account_totp_check_secret(secret, len, code, now, &step) != STORE_OK) {
        if (challenge_wrong(st, &ch, &left) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "bad_code");
        cJSON_AddStringToObject(o, "message", "Wrong code.");
        cJSON_AddNumberToObject(o, "attempts_left", left);
        api_reply(req, 401, o, NULL);
        goto done;
    }
    if (challenge_consume(st, &ch, now) != STORE_OK) {
        http_respond_error(req, 410, "expired", "Please start the binding again.");
        goto done;
    }
    if (ch.data[0] == ENROLL_CHANGE)
        r = account_totp_replace(st, api_keys(ww), s->ws.user, secret, len, step, "web",
                                 req->peer, now, &id);
    else
        r = account_totp_bind(st, api_keys(ww), s->ws.user, secret, len, step, "web", req->peer,
                              now, &id);
    if (r == STORE_CONFLICT) {
        http_respond_error(req, 409, "already_bound", "An authenticator app is already bound.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    log_info("web id=%llx event=factor_bound user=%s kind=totp factor=%lld",
             (unsigned long long)req->id, util_log_safe(s->ws.user, lu, sizeof(lu)),
             (long long)id);
    api_reply_ok(req);

done:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(&ch, sizeof(ch));
}

static void
api_unbind(struct web_worker *ww, struct http_request *req, struct api_session *s,
           cJSON *body, const char *kind)
{
    char lu[AUTH_USER_MAX];
    const char *grant;
    int removed = 0, left = 0, devices = 0, r;
    cJSON *o;

    if (api_str(req, body, "grant", 64, 1, &grant) != 0)
        return;
    if (api_use_grant(ww, req, s, grant, "unbind", kind) != 0)
        return;
    r = account_factor_remove(api_store(ww), s->ws.user, kind, "web", req->peer, api_now(),
                              &removed, &left, &devices);
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 404, "not_bound", "This method is not bound.");
        return;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=factor_removed user=%s kind=%s left=%d devices_revoked=%d",
             (unsigned long long)req->id, util_log_safe(s->ws.user, lu, sizeof(lu)), kind, left,
             devices);
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddNumberToObject(o, "left", left);
    api_reply(req, 200, o, NULL);
}

/* POST /api/factors/<kind>/<action> */
void
api_factors_post(struct web_worker *ww, struct http_request *req)
{
    const char *rest = req->path + strlen("/api/factors/");
    char kind[16] = "", action[16] = "";
    const char *slash = strchr(rest, '/');
    struct api_session s;
    cJSON *body = NULL;

    if (slash == NULL || (size_t)(slash - rest) >= sizeof(kind) ||
        strlen(slash + 1) >= sizeof(action) || strchr(slash + 1, '/') != NULL) {
        http_respond_error(req, 404, "not_found", "No such resource.");
        return;
    }
    memcpy(kind, rest, (size_t)(slash - rest));
    util_strlcpy(action, slash + 1, sizeof(action));
    if ((strcmp(kind, "totp") != 0 && strcmp(kind, "email") != 0 &&
         strcmp(kind, "wechat") != 0) ||
        (strcmp(action, "begin") != 0 && strcmp(action, "confirm") != 0 &&
         strcmp(action, "unbind") != 0)) {
        http_respond_error(req, 404, "not_found", "No such resource.");
        return;
    }
    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (strcmp(action, "unbind") == 0)
        api_unbind(ww, req, &s, body, kind);
    else if (strcmp(kind, "email") == 0 && strcmp(action, "begin") == 0)
        api_email_begin(ww, req, &s, body);
    else if (strcmp(kind, "email") == 0)
        api_email_confirm(ww, req, &s, body);
    else if (strcmp(kind, "wechat") == 0 && strcmp(action, "begin") == 0)
        api_wechat_begin(ww, req, &s, body);
    else if (strcmp(kind, "totp") != 0)
        http_respond_error(req, 404, "not_found", "No such resource.");
    else if (strcmp(action, "begin") == 0)
        api_totp_begin(ww, req, &s, body);
    else
        api_totp_confirm(ww, req, &s, body);

done:
    cJSON_Delete(body);
    api_session_done(&s);
}

/* --- fresh verification ------------------------------------------------- */

void
api_verify_begin(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    const char *purpose, *kind;
    char token[TOKEN_TEXT_LEN + 1];
    struct store_factor f;
    struct api_session s;
    cJSON *body = NULL, *o = NULL, *methods;
    int count = 0, r;

    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (api_str(req, body, "purpose", 16, 1, &purpose) != 0 ||
        api_str(req, body, "kind", 16, 1, &kind) != 0)
        goto done;
    if (strcmp(purpose, CHALLENGE_UNBIND) != 0 && strcmp(purpose, CHALLENGE_CHANGE) != 0) {
        http_respond_error(req, 400, "bad_request", "\"purpose\" must be unbind or change.");
        goto done;
    }
    r = store_factor_get(st, s.ws.user, kind, &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 404, "not_bound", "This method is not bound.");
        goto done;
    }
    o = cJSON_CreateObject();
    methods = cJSON_CreateArray();
    cJSON_AddItemToObject(o, "methods", methods);
    if (r != STORE_OK || api_methods(ww, s.ws.user, methods, &count) != STORE_OK ||
        challenge_create(st, api_keys(ww), s.ws.user, purpose, kind, strlen(kind), req->peer,
                         api_now(), CHALLENGE_TTL_S, token, NULL) != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    cJSON_AddStringToObject(o, "challenge", token);
    api_reply(req, 200, o, NULL);
    o = NULL;
    OPENSSL_cleanse(token, sizeof(token));

done:
    cJSON_Delete(o);
    cJSON_Delete(body);
    api_session_done(&s);
}

void
api_verify(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    const char *challenge, *method, *code;
    char token[TOKEN_TEXT_LEN + 1], data[64], answer[16];
    struct store_challenge ch;
    struct api_session s;
    cJSON *body = NULL, *o;
    int left = 0, r;

    memset(&ch, 0, sizeof(ch));
    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (api_str(req, body, "challenge", 64, 1, &challenge) != 0 ||
        api_str(req, body, "method", 16, 1, &method) != 0)
        goto done;
    r = challenge_open(st, api_keys(ww), challenge, NULL, api_now(), &ch);
    if (r == STORE_OK &&
        ((strcmp(ch.kind, CHALLENGE_UNBIND) != 0 && strcmp(ch.kind, CHALLENGE_CHANGE) != 0) ||
         strcmp(ch.user, s.ws.user) != 0 || api_challenge_kind_len(&ch) == 0 ||
         api_challenge_kind_len(&ch) >= STORE_KIND_MAX))
        r = CHALLENGE_GONE;
    if (r == CHALLENGE_GONE) {
        http_respond_error(req, 410, "expired", "This verification has expired. Start again.");
        goto done;
    }
    if (r == CHALLENGE_LOCKED) {
        http_respond_error(req, 429, "too_many_attempts", "Too many wrong codes.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    r = api_scene_verify(ww, req, body, method, &ch, answer, sizeof(answer));
    if (r < 0)
        goto done;
    if (r == 1) {
        r = STORE_OK;      /* confirmed on the phone */
    } else {
        if (api_code(req, body, &code) != 0)
            goto done;
        r = api_check_code(ww, req, &ch, method, code);
    }
    if (r < 0 && r != ACCOUNT_BAD_CODE)
        goto done;
    if (r == ACCOUNT_BAD_CODE) {
        if (challenge_wrong(st, &ch, &left) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "bad_code");
        cJSON_AddStringToObject(o, "message", "Wrong code.");
        cJSON_AddNumberToObject(o, "attempts_left", left);
        api_reply(req, 401, o, NULL);
        goto done;
    }
    if (challenge_consume(st, &ch, api_now()) != STORE_OK) {
        http_respond_error(req, 410, "expired", "This verification has expired. Start again.");
        goto done;
    }
    snprintf(data, sizeof(data), "%s:%.*s", ch.kind, (int)api_challenge_kind_len(&ch),
             (const char *)ch.data);
    if (challenge_create(st, api_keys(ww), s.ws.user, CHALLENGE_GRANT, data, strlen(data),
                         req->peer, api_now(), CHALLENGE_TTL_S, token, NULL) != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddStringToObject(o, "grant", token);
    api_reply(req, 200, o, NULL);
    OPENSSL_cleanse(token, sizeof(token));

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    cJSON_Delete(body);
    api_session_done(&s);
}
