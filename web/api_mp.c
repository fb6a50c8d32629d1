/*
 * api_mp.c - the mini program's API (web/API.md, "The mini program"):
 * sign-in with a wx.login code (jscode2session through web/wechat.c), the
 * mailboxes bound to this WeChat account with their code secrets, and the
 * requests behind scanned or pushed scenes, which the phone answers.
 *
 * The session is a bearer token (random, stored hashed, 30 days), never a
 * cookie: no CSRF check applies.  An answer is recorded once (atomic in the
 * store) and wakes the waiting browser on every worker (scanhub).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/keys.h"
#include "auth/scene.h"
#include "auth/token.h"
#include "auth/totp.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/scanhub.h"
#include "web/wechat.h"

#define API_MP_SESSION_S (30 * 86400)

/* The bearer's openid: 0, or -1 after answering 401 (or 500). */
static int
api_mp_session(struct web_worker *ww, struct http_request *req, char *openid, size_t len)
{
    const char *h = http_header(req, "Authorization");
    unsigned char hash[TOKEN_HASH_LEN];
    int r;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 ||
        token_hash(api_keys(ww)->token, h + 7, strlen(h + 7), hash) != 0) {
        http_respond_error(req, 401, "not_signed_in", "Please sign in again.");
        return -1;
    }
    r = store_mpsession_get(api_store(ww), hash, api_now(), openid, len);
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 401, "not_signed_in", "Please sign in again.");
        return -1;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return -1;
    }
    return 0;
}

/* --- POST /api/mp/login ------------------------------------------------- */

struct api_mp_login {
    struct api_pending p;
    struct wechat_job *job;
};

static void
api_mp_login_release(struct api_pending *p)
{
    free(container_of(p, struct api_mp_login, p));
}

static void
api_mp_login_stop(struct api_pending *p)
{
    struct api_mp_login *l = container_of(p, struct api_mp_login, p);

    wechat_cancel(l->job);
    l->job = NULL;
}

static void
api_mp_login_done(void *arg, const struct wechat_result *r)
{
    struct api_mp_login *l = arg;
    struct web_worker *ww = l->p.aw->ww;
    char token[TOKEN_TEXT_LEN + 1];
    unsigned char hash[TOKEN_HASH_LEN];
    struct http_request *req;
    cJSON *o;

    l->job = NULL;
    req = api_pending_take(&l->p);
    if (req == NULL)
        return;
    if (r->status == WECHAT_EBADCODE) {
        http_respond_error(req, 401, "bad_code", "The WeChat login code is not valid.");
    } else if (r->status != 0 || r->openid[0] == '\0') {
        log_warn("web id=%llx event=wechat_unavailable what=code2session status=%d errcode=%ld",
                 (unsigned long long)req->id, r->status, r->errcode);
        http_respond_error(req, 503, "wechat_unavailable",
                           "WeChat cannot be reached. Please try again later.");
    } else if (token_new(api_keys(ww)->token, token, hash) != 0 ||
               store_mpsession_add(api_store(ww), hash, r->openid, api_now(),
                                   api_now() + API_MP_SESSION_S) != STORE_OK) {
        api_reply_store_error(req);
    } else {
        log_info("web id=%llx event=mp_signin addr=%s", (unsigned long long)req->id, req->peer);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "token", token);
        cJSON_AddNumberToObject(o, "expires_in", API_MP_SESSION_S);
        api_reply(req, 200, o, NULL);
    }
    OPENSSL_cleanse(token, sizeof(token));
    api_pending_end(&l->p);
}

void
api_mp_login(struct web_worker *ww, struct http_request *req)
{
    struct api_worker *aw = ww->api;
    struct api_mp_login *l;
    const char *code;
    cJSON *body;
    int r;

    if (api_wechat_on(ww, req) != 0 || api_body(req, &body) != 0)
        return;
    if (api_str(req, body, "code", 128, 1, &code) != 0)
        goto done;
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        api_reply_store_error(req);
        goto done;
    }
    r = wechat_code2session(aw->wechat, code, api_mp_login_done, l, &l->job);
    if (r != 0) {
        free(l);
        if (r == UV_EINVAL)
            http_respond_error(req, 401, "bad_code", "The WeChat login code is not valid.");
        else
            http_respond_error(req, 503, "wechat_unavailable",
                               "WeChat cannot be reached. Please try again later.");
        goto done;
    }
    api_pending_start(aw, &l->p, req, api_mp_login_stop, api_mp_login_release);

done:
    cJSON_Delete(body);
}

/* --- GET /api/mp/accounts ----------------------------------------------- */

struct api_mp_accounts {
    struct web_worker *ww;
    cJSON *arr;
    int failed;
};

static int
api_mp_account_row(void *arg, const struct store_factor *f)
{
    struct api_mp_accounts *a = arg;
    unsigned char secret[TOTP_SEALED_MAX];
    char b32[128];
    size_t len = 0;
    cJSON *o;

    if (totp_open(api_keys(a->ww)->totp, f->user, f->secret, f->secret_len, secret,
                  sizeof(secret), &len) != 0 ||
        totp_base32_encode(secret, len, 0, b32, sizeof(b32)) < 0) {
        log_error("web event=mp_secret_unreadable factor=%lld", (long long)f->id);
        a->failed = 1;
        OPENSSL_cleanse(secret, sizeof(secret));
        return 1;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mailbox", f->user);
    cJSON_AddStringToObject(o, "secret", b32);
    cJSON_AddNumberToObject(o, "digits", TOTP_DIGITS);
    cJSON_AddNumberToObject(o, "period", TOTP_PERIOD);
    cJSON_AddStringToObject(o, "algorithm", "SHA1");
    cJSON_AddItemToArray(a->arr, o);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(b32, sizeof(b32));
    return 0;
}

void
api_mp_accounts(struct web_worker *ww, struct http_request *req)
{
    char openid[STORE_SUBJECT_MAX];
    struct api_mp_accounts a = {ww, NULL, 0};
    cJSON *o;

    if (api_wechat_on(ww, req) != 0 || api_mp_session(ww, req, openid, sizeof(openid)) != 0)
        return;
    o = cJSON_CreateObject();
    a.arr = cJSON_AddArrayToObject(o, "accounts");
    if (a.arr == NULL || store_wechat_list(api_store(ww), openid, api_mp_account_row, &a) !=
                             STORE_OK || a.failed) {
        cJSON_Delete(o);
        api_reply_store_error(req);
        return;
    }
    api_reply(req, 200, o, NULL);
}

/* --- /api/mp/requests/<scene> ------------------------------------------- */

/*
 * The scene of the path, checked for this openid: 0, or -1 after answering
 * 404/410/403/500.
 */
static int
api_mp_scene(struct web_worker *ww, struct http_request *req, const char *openid,
             struct store_scene *sc)
{
    const char *text = req->path + strlen("/api/mp/requests/");
    struct store_factor f;
    int r;

    r = scene_open(api_store(ww), api_keys(ww), text, sc);
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        return -1;
    }
    if (r != STORE_OK || sc->expires <= api_now() || sc->used) {
        http_respond_error(req, 410, "expired", "This request has expired.");
        return -1;
    }
    r = store_factor_get(api_store(ww), sc->user, "wechat", &f);
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        return -1;
    }
    r = scene_may_answer(sc, openid, r == STORE_OK ? f.subject : "");
    OPENSSL_cleanse(&f, sizeof(f));
    if (r != 0) {
        http_respond_error(req, 403, "wrong_account",
                           "This mailbox is bound to another WeChat account.");
        return -1;
    }
    return 0;
}

static const char *
api_mp_kind(const struct store_scene *sc)
{
    return strcmp(sc->purpose, SCENE_REBIND) == 0 ? "bind" : sc->purpose;
}

void
api_mp_request_get(struct web_worker *ww, struct http_request *req)
{
    char openid[STORE_SUBJECT_MAX];
    struct store_scene sc;
    cJSON *o, *nums;
    int n[3];

    if (api_wechat_on(ww, req) != 0 || api_mp_session(ww, req, openid, sizeof(openid)) != 0 ||
        api_mp_scene(ww, req, openid, &sc) != 0)
        return;
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", api_mp_kind(&sc));
    cJSON_AddStringToObject(o, "mailbox", sc.user);
    cJSON_AddStringToObject(o, "addr", sc.addr);
    cJSON_AddNumberToObject(o, "time", (double)sc.created);
    cJSON_AddNumberToObject(o, "expires", (double)sc.expires);
    cJSON_AddStringToObject(o, "state", scene_state_name(scene_state(&sc, api_now())));
    if (sc.number > 0) {
        scene_numbers(&sc, n);
        nums = cJSON_CreateIntArray(n, 3);
        cJSON_AddItemToObject(o, "numbers", nums);
    }
    api_reply(req, 200, o, NULL);
}

/*
 * A bind scene confirmed: the binding, the answer and (for a rebind) the
 * use of the change grant, in one transaction.  If the binding cannot be
 * made (bound or unbound meanwhile, grant used or expired), the scene is
 * answered SCENE_FAIL so the waiting page says so.  STORE_OK, SCENE_ANSWERED,
 * STORE_CONFLICT / STORE_NOTFOUND (the binding changed meanwhile),
 * STORE_GONE (the grant is used up or expired) or STORE_ERR.
 */
static int
api_mp_bind(struct web_worker *ww, struct http_request *req, const struct store_scene *sc,
            const char *openid)
{
    struct store *st = api_store(ww);
    unsigned char secret[TOTP_SECRET_LEN], sealed[TOTP_SEALED_MAX];
    char b32[64], uri[TOTP_URI_MAX], detail[STORE_DETAIL_MAX], lu[AUTH_USER_MAX];
    int replace = strcmp(sc->purpose, SCENE_REBIND) == 0;
    struct store_wechat_binding b;
    int64_t id = 0;
    int r;

    memset(&b, 0, sizeof(b));
    if (account_totp_secret(sc->user, secret, b32, uri) != 0 ||
        totp_seal(api_keys(ww)->totp, sc->user, secret, sizeof(secret), sealed, sizeof(sealed),
                  &b.secret_len) != 0) {
        r = STORE_ERR;
        goto done;
    }
    b.user = sc->user;
    b.openid = openid;
    b.label = "WeChat";
    b.secret = sealed;
    b.replace = replace;
    b.scene_id = sc->id;
    b.grant_id = replace ? sc->challenge_id : 0;
    b.grant_max_attempts = CHALLENGE_MAX_ATTEMPTS;
    r = store_wechat_bind(st, &b, api_now(), &id);
    if (r == STORE_GONE || r == STORE_CONFLICT || r == STORE_NOTFOUND) {
        /* Nothing changed.  Gone: the scene was answered (or expired) --
         * then this answer fails too -- or the grant is used up. */
        int a = scene_answer(st, sc, SCENE_FAIL, openid, api_now());

        if (a != STORE_OK)
            r = a == SCENE_ANSWERED ? SCENE_ANSWERED : STORE_ERR;
    }
    if (r == STORE_OK) {
        snprintf(detail, sizeof(detail), "kind=wechat id=%lld via=web%s", (long long)id,
                 replace ? " change=1" : "");
        store_audit(st, api_now(), sc->user, "factor_bind", detail, req->peer);
        log_info("web id=%llx event=factor_bound user=%s kind=wechat factor=%lld",
                 (unsigned long long)req->id, util_log_safe(sc->user, lu, sizeof(lu)),
                 (long long)id);
    }

done:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(sealed, sizeof(sealed));
    OPENSSL_cleanse(b32, sizeof(b32));
    OPENSSL_cleanse(uri, sizeof(uri));
    return r;
}

void
api_mp_request_post(struct web_worker *ww, struct http_request *req)
{
    char openid[STORE_SUBJECT_MAX], lu[AUTH_USER_MAX];
    unsigned char hash[STORE_TOKEN_HASH_LEN];
    const char *answer, *stored;
    struct store_scene sc;
    const cJSON *num;
    cJSON *body = NULL;
    int picked = 0, r;

    if (api_wechat_on(ww, req) != 0 || api_mp_session(ww, req, openid, sizeof(openid)) != 0 ||
        api_mp_scene(ww, req, openid, &sc) != 0 || api_body(req, &body) != 0 ||
        api_str(req, body, "answer", 16, 1, &answer) != 0)
        goto done;
    num = cJSON_GetObjectItemCaseSensitive(body, "number");
    if (num != NULL && cJSON_IsNumber(num))
        picked = num->valueint;
    if (sc.answer[0] != '\0') {
        http_respond_error(req, 409, "answered", "This request has been answered already.");
        goto done;
    }
    if (scene_check_answer(&sc, answer, picked, &stored) != 0) {
        http_respond_error(req, 400, "bad_answer", "This answer does not fit the request.");
        goto done;
    }
    if ((strcmp(sc.purpose, SCENE_BIND) == 0 || strcmp(sc.purpose, SCENE_REBIND) == 0) &&
        strcmp(stored, "confirm") == 0)
        r = api_mp_bind(ww, req, &sc, openid);
    else
        r = scene_answer(api_store(ww), &sc, stored, openid, api_now());
    if (r == SCENE_ANSWERED) {
        http_respond_error(req, 409, "answered", "This request has been answered already.");
        goto done;
    }
    /* Answered (or failed): the waiting page learns it at once. */
    if (r != STORE_ERR &&
        scene_hash(api_keys(ww), req->path + strlen("/api/mp/requests/"), hash) == 0)
        scanhub_notify(ww->sh->scanhub, hash);
    if (r == STORE_CONFLICT || r == STORE_NOTFOUND) {
        http_respond_error(req, 409, "already_bound",
                           "This mailbox's WeChat binding changed meanwhile.");
        goto done;
    }
    if (r == STORE_GONE) {
        http_respond_error(req, 410, "expired",
                           "The verification for this change has expired. Please start again.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    log_info("web id=%llx event=scene_answered user=%s purpose=%s answer=%s",
             (unsigned long long)req->id, util_log_safe(sc.user, lu, sizeof(lu)), sc.purpose,
             stored);
    api_reply_ok(req);

done:
    cJSON_Delete(body);
}
