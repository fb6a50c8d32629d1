/*
 * api.c - the JSON API under /api/ (web/API.md): the route table, the
 * per-worker state, the helpers every handler uses, and sign-in (password
 * checked by the backend, then the second factor, trusted devices,
 * sessions, sign-out).  Factors and verification are in api_factors.c;
 * client-specific passwords, devices and sign-ins in api_apppw.c.
 *
 * Every handler answers exactly once.  Nothing here logs a password, a
 * code, a token or a cookie; log lines start with the request id.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/device.h"
#include "auth/keys.h"
#include "auth/ratelimit.h"
#include "auth/recovery.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/metrics.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/backend_check.h"
#include "web/mailer.h"
#include "web/scanhub.h"
#include "web/wechat.h"

const struct web_route api_routes[] = {
    {"POST", "/api/login", 0, api_login},
    {"POST", "/api/login/verify", 0, api_login_verify},
    {"POST", "/api/login/scan", 0, api_login_scan},
    {"POST", "/api/login/push", 0, api_login_push},
    {"POST", "/api/verify/scan", 0, api_verify_scan},
    {"GET", "/api/scan/", 1, api_scan_wait},
    {"POST", "/api/mp/login", 0, api_mp_login},
    {"GET", "/api/mp/accounts", 0, api_mp_accounts},
    {"GET", "/api/mp/requests/", 1, api_mp_request_get},
    {"POST", "/api/mp/requests/", 1, api_mp_request_post},
    {"POST", "/api/login/email-code", 0, api_login_email_code},
    {"POST", "/api/logout", 0, api_logout},
    {"GET", "/api/me", 0, api_me},
    {"POST", "/api/verify/begin", 0, api_verify_begin},
    {"POST", "/api/verify", 0, api_verify},
    {"POST", "/api/verify/email-code", 0, api_verify_email_code},
    {"GET", "/api/recovery", 0, api_recovery_info},
    {"POST", "/api/recovery/begin", 0, api_recovery_begin},
    {"POST", "/api/recovery/confirm", 0, api_recovery_confirm},
    {"POST", "/api/recovery/finish", 0, api_recovery_finish},
    {"GET", "/api/recovery-codes", 0, api_recovery_codes_get},
    {"POST", "/api/recovery-codes", 0, api_recovery_codes_post},
    {"POST", "/api/factors/", 1, api_factors_post},
    {"GET", "/api/app-passwords", 0, api_apppw_list},
    {"POST", "/api/app-passwords", 0, api_apppw_create},
    {"POST", "/api/app-passwords/clear", 0, api_apppw_clear},
    {"DELETE", "/api/app-passwords/", 1, api_apppw_delete},
    {"GET", "/api/devices", 0, api_devices_list},
    {"DELETE", "/api/devices/", 1, api_devices_delete},
    {"GET", "/api/signins", 0, api_signins},
};
const size_t api_nroutes = ARRAY_SIZE(api_routes);

/* --- helpers ------------------------------------------------------------ */

struct store *
api_store(struct web_worker *ww)
{
    return auth_ctx_store(ww->auth);
}

const struct keys *
api_keys(struct web_worker *ww)
{
    return ww->sh->keys;
}

int64_t
api_now(void)
{
    return util_wall_time();
}

int
api_enrollment_open(struct http_request *req, struct store *st, const char *user,
                    const char *kind, int64_t now, struct store_challenge *ch)
{
    int r = store_challenge_find(st, user, kind, ch);

    if (r == STORE_NOTFOUND || (r == STORE_OK && ch->expires <= now)) {
        http_respond_error(req, 410, "expired", "Please start the binding again.");
        return -1;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return -1;
    }
    if (ch->attempts >= CHALLENGE_MAX_ATTEMPTS) {
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many wrong codes. Please start the binding again.");
        return -1;
    }
    return 0;
}

void
api_reply(struct http_request *req, int status, cJSON *json, const char *extra_headers)
{
    char *text = cJSON_PrintUnformatted(json);

    cJSON_Delete(json);
    if (text == NULL) {
        http_respond_error(req, 500, "internal", "Internal error.");
        return;
    }
    http_respond_json(req, status, text, extra_headers);
    /* Replies may carry a new app password or a TOTP secret. */
    OPENSSL_cleanse(text, strlen(text));
    cJSON_free(text);
}

void
api_reply_ok(struct http_request *req)
{
    http_respond_json(req, 200, "{\"ok\":true}", NULL);
}

void
api_reply_store_error(struct http_request *req)
{
    http_respond_error(req, 500, "internal", "Internal error. Please try again later.");
}

void
api_add_time(cJSON *obj, const char *name, int64_t t)
{
    if (t == 0)
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddNumberToObject(obj, name, (double)t);
}

void
api_add_opt(cJSON *obj, const char *name, const char *s)
{
    if (s == NULL || *s == '\0')
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddStringToObject(obj, name, s);
}

int
api_body(struct http_request *req, cJSON **out)
{
    const char *ct = http_header(req, "Content-Type");
    const char *end = NULL;
    cJSON *root;

    *out = NULL;
    if (req->body_len == 0) {
        *out = cJSON_CreateObject();
        if (*out == NULL) {
            api_reply_store_error(req);
            return -1;
        }
        return 0;
    }
    /* Only JSON: a cross-site HTML form cannot send this type without a
     * CORS preflight, which this server never grants. */
    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        http_respond_error(req, 415, "unsupported_media_type",
                           "Send the request body as application/json.");
        return -1;
    }
    /* The body is NUL-terminated (http.h): parse through that NUL, and
     * require that the object ends exactly at the body's end. */
    root = cJSON_ParseWithLengthOpts(req->body, req->body_len + 1, &end, 1);
    if (root == NULL || !cJSON_IsObject(root) || end != req->body + req->body_len) {
        cJSON_Delete(root);
        http_respond_error(req, 400, "bad_request", "The request body is not a JSON object.");
        return -1;
    }
    *out = root;
    return 0;
}

int
api_str(struct http_request *req, const cJSON *obj, const char *name, size_t max, int required,
        const char **out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    char msg[128];
    size_t len;

    *out = NULL;
    if (item == NULL || cJSON_IsNull(item)) {
        if (!required)
            return 1;
        snprintf(msg, sizeof(msg), "\"%s\" is missing.", name);
        goto bad;
    }
    if (!cJSON_IsString(item) || item->valuestring == NULL) {
        snprintf(msg, sizeof(msg), "\"%s\" must be a string.", name);
        goto bad;
    }
    len = strlen(item->valuestring);
    if (len == 0 || len > max) {
        snprintf(msg, sizeof(msg), "\"%s\" must be 1 to %zu bytes.", name, max);
        goto bad;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)item->valuestring[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, sizeof(msg), "\"%s\" holds control characters.", name);
            goto bad;
        }
    }
    *out = item->valuestring;
    return 0;

bad:
    http_respond_error(req, 400, "bad_request", msg);
    return -1;
}

int
api_bool(struct http_request *req, const cJSON *obj, const char *name, int *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);

    *out = 0;
    if (item == NULL || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsBool(item)) {
        http_respond_error(req, 400, "bad_request", "A true/false field has another type.");
        return -1;
    }
    *out = cJSON_IsTrue(item) ? 1 : 0;
    return 0;
}

int
api_code(struct http_request *req, const cJSON *obj, const char **out)
{
    const char *code;

    if (api_str(req, obj, "code", 16, 1, &code) != 0)
        return -1;
    *out = code;
    return 0;
}

int
api_path_id(const struct http_request *req, const char *prefix, int64_t *id)
{
    const char *p = req->path + strlen(prefix);
    int64_t v = 0;

    if (strncmp(req->path, prefix, strlen(prefix)) != 0 || *p == '\0' || strlen(p) > 18)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0)
        return -1;
    *id = v;
    return 0;
}

int
api_session(struct web_worker *ww, struct http_request *req, struct api_session *s)
{
    int r;

    memset(s, 0, sizeof(*s));
    if (http_cookie(req, API_SESSION_COOKIE, s->token, sizeof(s->token)) != 0) {
        http_respond_error(req, 401, "not_signed_in", "Please sign in.");
        return -1;
    }
    r = websession_lookup(api_store(ww), api_keys(ww), s->token, api_now(), &s->ws);
    if (r == STORE_NOTFOUND) {
        api_session_done(s);
        http_respond_error(req, 401, "not_signed_in", "Please sign in.");
        return -1;
    }
    if (r != STORE_OK) {
        api_session_done(s);
        api_reply_store_error(req);
        return -1;
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
        websession_csrf_check(api_keys(ww), s->token, http_header(req, "X-CSRF-Token")) != 0) {
        log_info("web id=%llx event=csrf_refused path=%s", (unsigned long long)req->id,
                 req->path);
        api_session_done(s);
        http_respond_error(req, 403, "csrf", "The request lacks this session's CSRF token.");
        return -1;
    }
    return 0;
}

void
api_session_done(struct api_session *s)
{
    OPENSSL_cleanse(s, sizeof(*s));
}

struct api_methods_ctx {
    cJSON *arr;
    int count;
    int email;                     /* e-mail codes may sign in / verify */
    int wechat;                    /* [wechat] is on */
};

static int
api_methods_row(void *arg, const struct store_factor *f)
{
    struct api_methods_ctx *m = arg;

    /* Only kinds that can verify here. */
    if (strcmp(f->kind, "totp") == 0 || (m->email && strcmp(f->kind, "email") == 0) ||
        (m->wechat && strcmp(f->kind, "wechat") == 0)) {
        cJSON_AddItemToArray(m->arr, cJSON_CreateString(f->kind));
        m->count++;
    }
    return 0;
}

int
api_methods(struct web_worker *ww, const char *user, cJSON *arr, int *count)
{
    struct api_methods_ctx m = {arr, 0, api_email_offered(ww),
                                ((struct api_worker *)ww->api)->wechat != NULL};
    int r = store_factor_list(api_store(ww), user, api_methods_row, &m);
    int left = 0;

    /* Unused recovery codes verify too (api_recovery.c). */
    if (r == STORE_OK)
        r = store_recovery_count(api_store(ww), user, NULL, &left, NULL);
    if (r == STORE_OK && left > 0) {
        cJSON_AddItemToArray(arr, cJSON_CreateString("recovery"));
        m.count++;
    }
    *count = m.count;
    return r;
}

int
api_check_code(struct web_worker *ww, struct http_request *req, const struct store_challenge *ch,
               const char *method, const char *code)
{
    int r;

    if (strcmp(method, "totp") == 0 || strcmp(method, "wechat") == 0) {
        /* wechat: the mini program's code, a TOTP of the binding's own secret */
        r = account_code_check(api_store(ww), api_keys(ww), ch->user, method, code, api_now());
        if (r == ACCOUNT_NO_FACTOR)
            r = ACCOUNT_BAD_CODE;
        if (r != STORE_OK && r != ACCOUNT_BAD_CODE) {
            api_reply_store_error(req);
            return -1;
        }
    } else if (strcmp(method, "email") == 0) {
        r = api_check_email_code(ww, req, ch, code);
        if (r != STORE_OK && r != ACCOUNT_BAD_CODE)
            return r;    /* answered already */
    } else if (strcmp(method, "recovery") == 0) {
        r = api_recovery_check(ww, req, ch, code);
        if (r != STORE_OK && r != ACCOUNT_BAD_CODE)
            return r;    /* answered, or under way (the handler runs again) */
    } else {
        http_respond_error(req, 400, "bad_request",
                           "\"method\" must be \"totp\", \"email\" or \"recovery\".");
        return -1;
    }
    metrics_challenge(r == STORE_OK);
    return r;
}

/* --- pending work (api_priv.h) ------------------------------------------ */

static void
api_pending_remove(struct api_pending *p)
{
    struct api_worker *aw = p->aw;

    if (p->prev != NULL)
        p->prev->next = p->next;
    else if (aw->pending == p)
        aw->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Lets go of the request: it is answered next, or gone. */
static void
api_pending_detach(struct api_pending *p)
{
    if (p->req != NULL) {
        p->req->on_abort = NULL;
        p->req->user = NULL;
        p->req = NULL;
    }
}

/* req->on_abort: the client went away; req is freed when this returns. */
static void
api_pending_abort(struct http_request *req)
{
    struct api_pending *p = req->user;

    p->req = NULL;
    if (p->stop == NULL)
        return;    /* the job's callback ends p */
    p->stop(p);
    api_pending_end(p);
}

/* Worker stop: answer now rather than wait for the job. */
static void
api_pending_cancel(struct api_pending *p)
{
    struct http_request *req = p->req;

    if (p->stop == NULL) {
        api_pending_remove(p);    /* finishes by itself (thread pool work) */
        return;
    }
    p->stop(p);
    if (req != NULL) {
        api_pending_detach(p);
        http_respond_error(req, 503, "shutting_down", "The server is restarting.");
    }
    api_pending_end(p);
}

void
api_pending_start(struct api_worker *aw, struct api_pending *p, struct http_request *req,
                  void (*stop)(struct api_pending *p), void (*release)(struct api_pending *p))
{
    p->aw = aw;
    p->req = req;
    p->stop = stop;
    p->release = release;
    p->prev = NULL;
    p->next = aw->pending;
    if (aw->pending != NULL)
        aw->pending->prev = p;
    aw->pending = p;
    req->user = p;
    req->on_abort = api_pending_abort;
}

struct http_request *
api_pending_take(struct api_pending *p)
{
    struct http_request *req = p->req;

    if (req == NULL) {
        api_pending_end(p);
        return NULL;
    }
    api_pending_remove(p);
    api_pending_detach(p);
    return req;
}

void
api_pending_end(struct api_pending *p)
{
    api_pending_remove(p);
    api_pending_detach(p);
    p->release(p);
}

/* On the thread pool: touches nothing but the job. */
static void
api_kdf_work(uv_work_t *w)
{
    struct api_kdf *k = container_of(w, struct api_kdf, work);

    k->rc = k->run(k);
    OPENSSL_cleanse(k->pepper, sizeof(k->pepper));
}

static void
api_kdf_done(uv_work_t *w, int status)
{
    struct api_kdf *k = container_of(w, struct api_kdf, work);
    struct http_request *req = api_pending_take(&k->p);

    if (req == NULL)
        return;
    k->done(k, req, status != 0 ? -1 : k->rc);
    api_pending_end(&k->p);
}

int
api_kdf_start(struct web_worker *ww, struct http_request *req, struct api_kdf *k,
              int (*run)(struct api_kdf *k),
              void (*done)(struct api_kdf *k, struct http_request *req, int rc),
              void (*release)(struct api_pending *p))
{
    const struct config *cfg = ww->cfg;

    k->params.memory_kib = cfg->argon2_memory_kib;
    k->params.passes = cfg->argon2_passes;
    k->params.lanes = cfg->argon2_lanes;
    memcpy(k->pepper, api_keys(ww)->pepper, sizeof(k->pepper));
    k->run = run;
    k->done = done;
    if (uv_queue_work(ww->loop, &k->work, api_kdf_work, api_kdf_done) != 0)
        return -1;
    api_pending_start(ww->api, &k->p, req, NULL, release);
    return 0;
}

/* --- cookies ------------------------------------------------------------ */

static void
api_cookie(char *out, size_t outlen, const struct http_request *req, const char *name,
           const char *value, long max_age)
{
    char age[48] = "";

    if (max_age >= 0)
        snprintf(age, sizeof(age), "; Max-Age=%ld", max_age);
    snprintf(out, outlen, "Set-Cookie: %s=%s; Path=/; HttpOnly%s; SameSite=Strict%s\r\n", name,
             value, req->tls ? "; Secure" : "", age);
}

/* --- sign-in ------------------------------------------------------------ */

struct api_login {
    struct api_pending p;
    struct backend_check *bc;
    char user[AUTH_USER_MAX];
};

/* A signed-in answer: the session cookie (+ the device cookie). */
static void
api_signed_in(struct web_worker *ww, struct http_request *req, const char *user, const char *how,
              const char *device_token, int device_days)
{
    char token[TOKEN_TEXT_LEN + 1], headers[512], lu[AUTH_USER_MAX], detail[64];
    struct websession ws;
    size_t n;
    cJSON *o;

    if (websession_create(api_store(ww), api_keys(ww), user, req->peer, api_now(), token,
                          &ws) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    api_cookie(headers, sizeof(headers), req, API_SESSION_COOKIE, token, -1);
    if (device_token != NULL) {
        n = strlen(headers);
        api_cookie(headers + n, sizeof(headers) - n, req, API_DEVICE_COOKIE, device_token,
                   (long)device_days * 86400);
    }
    /* A second factor proved: a pending account recovery is not wanted. */
    if (strcmp(how, "password") != 0 && strcmp(how, "device") != 0)
        api_recovery_signed_in(ww, req, user);
    snprintf(detail, sizeof(detail), "proto=web how=%s", how);
    if (store_batch_audit(api_store(ww), api_now(), user, "login_ok", detail, req->peer) !=
        STORE_OK)
        log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
    metrics_login(METRICS_WEB, METRICS_OK, how, 0);
    log_info("web id=%llx event=signin user=%s addr=%s how=%s session=%lld",
             (unsigned long long)req->id, util_log_safe(user, lu, sizeof(lu)), req->peer, how,
             (long long)ws.id);
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "state", "ok");
    cJSON_AddStringToObject(o, "user", user);
    api_reply(req, 200, o, headers);
    OPENSSL_cleanse(token, sizeof(token));
    OPENSSL_cleanse(headers, sizeof(headers));
    OPENSSL_cleanse(&ws, sizeof(ws));
}

static void
api_login_audit_fail(struct web_worker *ww, struct http_request *req, const char *user,
                     const char *reason)
{
    char detail[96], lu[AUTH_USER_MAX];

    metrics_login(METRICS_WEB, METRICS_REFUSED, "refused", 0);
    snprintf(detail, sizeof(detail), "proto=web how=password reason=%s", reason);
    if (store_batch_audit(api_store(ww), api_now(), user, "login_fail", detail, req->peer) !=
        STORE_OK)
        log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
    log_info("web id=%llx event=signin_failed user=%s addr=%s reason=%s",
             (unsigned long long)req->id, util_log_safe(user, lu, sizeof(lu)), req->peer, reason);
}

static void
api_login_release(struct api_pending *p)
{
    struct api_login *l = container_of(p, struct api_login, p);

    OPENSSL_cleanse(l, sizeof(*l));
    free(l);
}

static void
api_login_stop(struct api_pending *p)
{
    struct api_login *l = container_of(p, struct api_login, p);

    if (l->bc != NULL) {
        backend_check_cancel(l->bc);
        l->bc = NULL;
    }
}

/* The password was right: straight in, or on to the second factor. */
static void
api_login_password_ok(struct web_worker *ww, struct http_request *req, const char *user)
{
    struct store *st = api_store(ww);
    char device[TOKEN_TEXT_LEN + 1], token[TOKEN_TEXT_LEN + 1], lu[AUTH_USER_MAX];
    cJSON *o, *methods;
    int count = 0, nfactors = 0;

    ratelimit_success(user);
    if (store_factor_count(st, user, &nfactors) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    if (nfactors == 0) {
        api_signed_in(ww, req, user, "password", NULL, 0);
        return;
    }
    if (http_cookie(req, API_DEVICE_COOKIE, device, sizeof(device)) == 0 &&
        device_check(st, api_keys(ww), device, user, req->peer, api_now()) == STORE_OK) {
        OPENSSL_cleanse(device, sizeof(device));
        api_signed_in(ww, req, user, "device", NULL, 0);
        return;
    }
    OPENSSL_cleanse(device, sizeof(device));
    o = cJSON_CreateObject();
    methods = cJSON_CreateArray();
    if (o == NULL || methods == NULL || api_methods(ww, user, methods, &count) != STORE_OK) {
        cJSON_Delete(o);
        cJSON_Delete(methods);
        api_reply_store_error(req);
        return;
    }
    if (!api_email_offered(ww)) {
        /* [web] email_factor = recovery: a backup e-mail is no sign-in
         * factor; with nothing else bound the password is enough (even
         * with recovery codes, which are no factor of their own). */
        struct store_factor f;
        int r = store_factor_get(st, user, "email", &f);

        OPENSSL_cleanse(&f, sizeof(f));
        if (r == STORE_OK && nfactors == 1) {
            cJSON_Delete(o);
            cJSON_Delete(methods);
            api_signed_in(ww, req, user, "password", NULL, 0);
            return;
        }
    }
    if (count == 0) {
        /* Only kinds this server cannot check yet (WeChat): no way in here. */
        cJSON_Delete(o);
        cJSON_Delete(methods);
        http_respond_error(req, 409, "no_method",
                           "No verification method of this account works on this page.");
        return;
    }
    if (challenge_create(st, api_keys(ww), user, CHALLENGE_SIGNIN, NULL, 0, req->peer, api_now(),
                         CHALLENGE_TTL_S, token, NULL) != STORE_OK) {
        cJSON_Delete(o);
        cJSON_Delete(methods);
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=second_factor user=%s addr=%s", (unsigned long long)req->id,
             util_log_safe(user, lu, sizeof(lu)), req->peer);
    cJSON_AddStringToObject(o, "state", "second_factor");
    cJSON_AddStringToObject(o, "challenge", token);
    cJSON_AddItemToObject(o, "methods", methods);
    cJSON_AddBoolToObject(o, "push", wechat_push_enabled(ww->sh->wechat));
    api_reply(req, 200, o, NULL);
    OPENSSL_cleanse(token, sizeof(token));
}

static void
api_login_checked(void *arg, enum backend_check_result result)
{
    struct api_login *l = arg;
    struct web_worker *ww = l->p.aw->ww;
    const struct config *cfg = ww->cfg;
    struct http_request *req;

    l->bc = NULL;
    req = api_pending_take(&l->p);    /* answered below: req is gone after that */
    if (req == NULL)
        return;
    switch (result) {
    case BACKEND_CHECK_OK:
        api_login_password_ok(ww, req, l->user);
        break;
    case BACKEND_CHECK_REFUSED:
        ratelimit_fail(l->user, util_now_ms(), cfg->fail_lockout, cfg->fail_lockout_ms);
        api_login_audit_fail(ww, req, l->user, "password");
        http_respond_error(req, 401, "bad_credentials", "Wrong account or password.");
        break;
    case BACKEND_CHECK_UNAVAILABLE:
        log_warn("web id=%llx event=backend_unavailable what=login",
                 (unsigned long long)req->id);
        http_respond_error(req, 503, "backend_unavailable",
                           "The mail server cannot be reached. Please try again later.");
        break;
    }
    api_pending_end(&l->p);
}

void
api_login(struct web_worker *ww, struct http_request *req)
{
    struct api_worker *aw = ww->api;
    const struct config *cfg = ww->cfg;
    const char *user, *pass;
    struct api_login *l = NULL;
    struct backend_check_client client;
    struct sockaddr_storage local;
    uint64_t until = 0;
    int failures = 0, r;
    cJSON *body;

    if (api_body(req, &body) != 0)
        return;
    /* The tree holds its own copy of the password: wipe the raw body now. */
    OPENSSL_cleanse(req->body, req->body_len);
    if (api_str(req, body, "user", AUTH_USER_MAX - 1, 1, &user) != 0 ||
        api_str(req, body, "password", AUTH_PASS_MAX - 1, 1, &pass) != 0)
        goto done;
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        api_reply_store_error(req);
        goto done;
    }
    if (auth_normalize_user(cfg, user, strlen(user), l->user) != 0) {
        http_respond_error(req, 401, "bad_credentials", "Wrong account or password.");
        goto done;
    }
    if (ratelimit_check(l->user, util_now_ms(), &failures, &until)) {
        api_login_audit_fail(ww, req, l->user, "lockout");
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many failed sign-ins. Please try again later.");
        goto done;
    }
    client.addr = req->peer;
    client.port = req->peer_port;
    client.local = NULL;
    if (cfg->forward_client_addr == CONFIG_FORWARD_PROXY && http_local_addr(req, &local) == 0)
        client.local = (const struct sockaddr *)&local;
    r = backend_check_start(ww->loop, cfg, (const struct sockaddr *)&ww->sh->backend_imap,
                            aw->tls_client, l->user, pass, &client, api_login_checked, l,
                            &l->bc);
    if (r != 0) {
        if (r == UV_EINVAL) {
            http_respond_error(req, 401, "bad_credentials", "Wrong account or password.");
        } else {
            http_respond_error(req, 503, "backend_unavailable",
                               "The mail server cannot be reached. Please try again later.");
        }
        goto done;
    }
    api_pending_start(aw, &l->p, req, api_login_stop, api_login_release);
    l = NULL;

done:
    if (l != NULL) {
        OPENSSL_cleanse(l, sizeof(*l));
        free(l);
    }
    /* The password lives in the parsed tree: wipe it before freeing. */
    {
        cJSON *pw = cJSON_GetObjectItemCaseSensitive(body, "password");
        if (cJSON_IsString(pw) && pw->valuestring != NULL)
            OPENSSL_cleanse(pw->valuestring, strlen(pw->valuestring));
    }
    cJSON_Delete(body);
}

/* A device label from the User-Agent: printable ASCII, cut short. */
static void
api_device_label(const struct http_request *req, char *out, size_t outlen)
{
    const char *ua = http_header(req, "User-Agent");
    size_t i = 0;

    if (ua == NULL)
        ua = "";
    for (; ua[i] && i + 1 < outlen; i++)
        out[i] = (ua[i] >= 0x20 && ua[i] < 0x7f) ? ua[i] : '?';
    out[i] = '\0';
}

void
api_login_verify(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    const struct config *cfg = ww->cfg;
    const char *challenge, *method, *code;
    char device[TOKEN_TEXT_LEN + 1], label[DEVICE_LABEL_MAX], lu[AUTH_USER_MAX], answer[16];
    struct store_challenge ch;
    uint64_t until;
    int trust = 0, failures, left = 0, r;
    cJSON *body, *o;

    if (api_body(req, &body) != 0)
        return;
    if (api_str(req, body, "challenge", 64, 1, &challenge) != 0 ||
        api_str(req, body, "method", 16, 1, &method) != 0 ||
        api_bool(req, body, "trust", &trust) != 0)
        goto done;
    r = challenge_open(st, api_keys(ww), challenge, CHALLENGE_SIGNIN, api_now(), &ch);
    if (r == CHALLENGE_GONE) {
        http_respond_error(req, 410, "expired", "This sign-in has expired. Please start again.");
        goto done;
    }
    if (r == CHALLENGE_LOCKED ||
        (r == STORE_OK && ratelimit_check(ch.user, util_now_ms(), &failures, &until))) {
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many wrong codes. Please start again later.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    /* A scan answered on the phone: the phone's answer decides trust. */
    r = api_scene_verify(ww, req, body, method, &ch, answer, sizeof(answer));
    if (r < 0)
        goto done;
    if (r == 1) {
        trust = strcmp(answer, "trust") == 0;
        r = STORE_OK;
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
        ratelimit_fail(ch.user, util_now_ms(), cfg->fail_lockout, cfg->fail_lockout_ms);
        {
            char detail[96];
            snprintf(detail, sizeof(detail), "proto=web how=%s reason=code", method);
            store_batch_audit(st, api_now(), ch.user, "login_fail", detail, req->peer);
        }
        log_info("web id=%llx event=bad_code user=%s addr=%s left=%d",
                 (unsigned long long)req->id, util_log_safe(ch.user, lu, sizeof(lu)), req->peer,
                 left);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "bad_code");
        cJSON_AddStringToObject(o, "message", "Wrong code.");
        cJSON_AddNumberToObject(o, "attempts_left", left);
        api_reply(req, 401, o, NULL);
        goto done;
    }
    if (challenge_consume(st, &ch, api_now()) != STORE_OK) {
        http_respond_error(req, 410, "expired", "This sign-in has expired. Please start again.");
        goto done;
    }
    ratelimit_success(ch.user);
    if (trust) {
        api_device_label(req, label, sizeof(label));
        if (device_trust(st, api_keys(ww), ch.user, label, req->peer, api_now(),
                         ww->cfg->device_days, device, NULL) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        api_signed_in(ww, req, ch.user, method, device, ww->cfg->device_days);
        OPENSSL_cleanse(device, sizeof(device));
    } else {
        api_signed_in(ww, req, ch.user, method, NULL, 0);
    }

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    cJSON_Delete(body);
}

void
api_logout(struct web_worker *ww, struct http_request *req)
{
    char headers[256];
    struct api_session s;

    if (api_session(ww, req, &s) != 0)
        return;
    if (websession_end(api_store(ww), s.ws.id) == STORE_ERR) {
        api_session_done(&s);
        api_reply_store_error(req);
        return;
    }
    store_batch_audit(api_store(ww), api_now(), s.ws.user, "logout", "proto=web", req->peer);
    log_info("web id=%llx event=signout session=%lld", (unsigned long long)req->id,
             (long long)s.ws.id);
    api_cookie(headers, sizeof(headers), req, API_SESSION_COOKIE, "", 0);
    http_respond_json(req, 200, "{\"ok\":true}", headers);
    api_session_done(&s);
}

/* --- the worker --------------------------------------------------------- */

int
api_worker_init(struct web_worker *ww)
{
    struct api_worker *aw = calloc(1, sizeof(*aw));
    const struct config *cfg = ww->cfg;
    char err[256];

    ww->api = aw;
    if (aw == NULL)
        return UV_ENOMEM;
    aw->ww = ww;
    if (cfg->backend_tls[CONFIG_PROTO_IMAP] != CONFIG_TLS_NO) {
        aw->tls_client = tls_client_ctx_new(cfg->backend_tls_verify, cfg->backend_ca, err,
                                            sizeof(err));
        if (aw->tls_client == NULL) {
            log_error("web event=init_failed what=backend_tls err=\"%s\"", err);
            return -1;
        }
    }
    /* Old rows of the web tables go at start; challenges also as new ones come. */
    store_challenge_prune(api_store(ww), api_now());
    store_websession_prune(api_store(ww), api_now(), api_now() - WEBSESSION_IDLE_S);
    store_scene_prune(api_store(ww), api_now());
    store_mpsession_prune(api_store(ww), api_now());
    if (ww->sh->wechat != NULL) {
        int r = wechat_new(ww->loop, ww->sh->wechat, &aw->wechat);
        if (r == 0)
            r = scanhub_join(ww->sh->scanhub, ww->loop, api_scan_wake, aw, &aw->hub);
        if (r != 0) {
            log_error("web event=init_failed what=wechat err=%s", uv_strerror(r));
            return r;
        }
    }
    return api_email_init(ww);
}

void
api_worker_stop(struct web_worker *ww)
{
    struct api_worker *aw = ww->api;

    if (aw == NULL)
        return;
    aw->stopping = 1;
    while (aw->pending != NULL)
        api_pending_cancel(aw->pending);
    /* Transfers were cancelled with their requests; close polls and timer. */
    mailer_close(aw->mailer);
    wechat_close(aw->wechat);
    scanhub_leave(aw->hub);
    aw->hub = NULL;
}

void
api_worker_free(struct web_worker *ww)
{
    struct api_worker *aw = ww->api;

    if (aw == NULL)
        return;
    api_worker_stop(ww);
    mailer_free(aw->mailer);
    wechat_free(aw->wechat);
    SSL_CTX_free(aw->tls_client);
    free(aw);
    ww->api = NULL;
}
