/*
 * api_scan.c - the browser's side of the WeChat factor (web/API.md,
 * "WeChat"): the routes that make a QR scene (bind, sign-in, push,
 * verification before unbind/change), the long-poll that waits for the
 * phone's answer, and the check of an approved scene at the verify step.
 *
 * A scene's QR is either a mini-program code fetched from WeChat
 * (wechat_wxacode, asynchronous) or a plain QR of https://HOST/mp?scene=
 * made here.  Waits sit in the worker's pending list; scanhub wakes them
 * when any worker records an answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/keys.h"
#include "auth/scene.h"
#include "core/codec.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/qr.h"
#include "web/scanhub.h"
#include "web/wechat.h"

#define API_WAIT_MS 25000          /* one long-poll at most */

/* --- making a scene ----------------------------------------------------- */

struct api_qr {
    struct api_pending p;
    struct wechat_job *job;
    char scene[SCENE_LEN + 1];
    int64_t scene_id;
    int64_t expires;
    int number;
    int shown;                     /* the page got the QR; else the scene goes */
};

static void
api_scene_reply(struct http_request *req, const char *scene, int64_t expires_in, int number,
                const char *svg, const char *img)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "scene", scene);
    cJSON_AddNumberToObject(o, "expires_in", (double)(expires_in > 0 ? expires_in : 0));
    if (number > 0)
        cJSON_AddNumberToObject(o, "number", number);
    if (svg != NULL)
        cJSON_AddStringToObject(o, "qr_svg", svg);
    if (img != NULL)
        cJSON_AddStringToObject(o, "qr_img", img);
    api_reply(req, 200, o, NULL);
}

static void
api_wechat_unavailable(struct http_request *req)
{
    http_respond_error(req, 503, "wechat_unavailable",
                       "WeChat cannot be reached. Use another method or try again later.");
}

static void
api_qr_release(struct api_pending *p)
{
    struct api_qr *q = container_of(p, struct api_qr, p);

    /* No QR, no scene: nobody may answer what the page never showed. */
    if (!q->shown && store_scene_remove(api_store(q->p.aw->ww), q->scene_id) != STORE_OK)
        log_warn("web event=scene_left what=remove_failed");
    OPENSSL_cleanse(q, sizeof(*q));
    free(q);
}

static void
api_qr_stop(struct api_pending *p)
{
    struct api_qr *q = container_of(p, struct api_qr, p);

    wechat_cancel(q->job);
    q->job = NULL;
}

static void
api_qr_done(void *arg, const struct wechat_result *r)
{
    struct api_qr *q = arg;
    struct http_request *req;
    char *url = NULL;
    size_t cap, n;

    q->job = NULL;
    req = api_pending_take(&q->p);
    if (req == NULL)
        return;
    if (r->status != 0 || r->body_len == 0 ||
        strncmp(r->content_type, "image/", 6) != 0) {
        log_warn("web id=%llx event=wechat_unavailable what=wxacode status=%d errcode=%ld",
                 (unsigned long long)req->id, r->status, r->errcode);
        api_wechat_unavailable(req);
        api_pending_end(&q->p);
        return;
    }
    cap = strlen("data:;base64,") + strlen(r->content_type) + (r->body_len + 2) / 3 * 4 + 1;
    url = malloc(cap);
    if (url == NULL) {
        api_reply_store_error(req);
        api_pending_end(&q->p);
        return;
    }
    n = (size_t)snprintf(url, cap, "data:%s;base64,", r->content_type);
    if (codec_b64_encode(r->body, r->body_len, url + n, cap - n) < 0) {
        api_reply_store_error(req);
    } else {
        api_scene_reply(req, q->scene, q->expires - api_now(), q->number, NULL, url);
        q->shown = 1;
    }
    free(url);
    api_pending_end(&q->p);
}

/* Makes the scene sc and answers with it and its QR. */
static void
api_scene_start(struct web_worker *ww, struct http_request *req, struct store_scene *sc)
{
    struct api_worker *aw = ww->api;
    char text[SCENE_LEN + 1], host[256], url[512], lu[AUTH_USER_MAX];
    struct api_qr *q;
    char *svg = NULL;
    int r;

    util_strlcpy(sc->addr, req->peer, sizeof(sc->addr));
    if (scene_create(api_store(ww), api_keys(ww), sc, api_now(),
                     (int64_t)(ww->cfg->wechat_scene_ttl_ms / 1000), text) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=scene user=%s purpose=%s push=%d", (unsigned long long)req->id,
             util_log_safe(sc->user, lu, sizeof(lu)), sc->purpose, sc->number > 0);
    if (ww->cfg->wechat_qr == CONFIG_WECHAT_QR_LINK) {
        api_host(ww, req, host, sizeof(host));
        snprintf(url, sizeof(url), "https://%s/mp?scene=%s", host, text);
        if (qr_svg(url, &svg) != 0) {
            store_scene_remove(api_store(ww), sc->id);
            api_reply_store_error(req);
            return;
        }
        api_scene_reply(req, text, sc->expires - api_now(), sc->number, svg, NULL);
        free(svg);
        return;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        store_scene_remove(api_store(ww), sc->id);
        api_reply_store_error(req);
        return;
    }
    memcpy(q->scene, text, sizeof(q->scene));
    q->scene_id = sc->id;
    q->expires = sc->expires;
    q->number = sc->number;
    r = wechat_wxacode(aw->wechat, text, api_qr_done, q, &q->job);
    if (r != 0) {
        store_scene_remove(api_store(ww), sc->id);
        OPENSSL_cleanse(q, sizeof(*q));
        free(q);
        api_wechat_unavailable(req);
        return;
    }
    api_pending_start(aw, &q->p, req, api_qr_stop, api_qr_release);
}

/* (api_priv.h) 404 wechat_off unless [wechat] is on. */
int
api_wechat_on(struct web_worker *ww, struct http_request *req)
{
    struct api_worker *aw = ww->api;

    if (aw->wechat != NULL)
        return 0;
    http_respond_error(req, 404, "wechat_off", "WeChat is not set up on this server.");
    return -1;
}

/* The openid of the user's WeChat binding into out: 0, or -1 after 404/500. */
static int
api_wechat_binding(struct web_worker *ww, struct http_request *req, const char *user, char *out,
                   size_t outlen)
{
    struct store_factor f;
    int r = store_factor_get(api_store(ww), user, "wechat", &f);

    if (r == STORE_OK)
        util_strlcpy(out, f.subject, outlen);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 404, "not_bound", "WeChat is not bound.");
        return -1;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return -1;
    }
    return 0;
}

/* POST /api/factors/wechat/begin {"grant"?} (api_factors.c dispatches here). */
void
api_wechat_begin(struct web_worker *ww, struct http_request *req, struct api_session *s,
                 cJSON *body)
{
    struct store_scene sc;
    struct store_challenge ch;
    const char *grant = NULL;
    int bound;

    if (api_wechat_on(ww, req) != 0 || api_str(req, body, "grant", 64, 0, &grant) < 0)
        return;
    memset(&sc, 0, sizeof(sc));
    util_strlcpy(sc.user, s->ws.user, sizeof(sc.user));
    {
        struct store_factor f;
        int r = store_factor_get(api_store(ww), s->ws.user, "wechat", &f);

        OPENSSL_cleanse(&f, sizeof(f));
        if (r != STORE_OK && r != STORE_NOTFOUND) {
            api_reply_store_error(req);
            return;
        }
        bound = r == STORE_OK;
    }
    if (bound) {
        if (grant == NULL) {
            http_respond_error(req, 409, "already_bound", "WeChat is already bound. Use Change.");
            return;
        }
        /* The grant is used up by the binding it allows (api_mp_bind), so a
         * refreshed QR may send it again until then. */
        if (api_open_grant(ww, req, s, grant, "change", "wechat", &ch) != 0)
            return;
        sc.challenge_id = ch.id;
        OPENSSL_cleanse(&ch, sizeof(ch));
        util_strlcpy(sc.purpose, SCENE_REBIND, sizeof(sc.purpose));
    } else {
        util_strlcpy(sc.purpose, SCENE_BIND, sizeof(sc.purpose));
    }
    api_scene_start(ww, req, &sc);
}

/* The challenge of a scan or push request: sign-in (signin = 1) or an
 * unbind/change verification of the session's user. */
static int
api_scan_challenge(struct web_worker *ww, struct http_request *req, cJSON *body, int signin,
                   const struct api_session *s, struct store_challenge *ch)
{
    const char *token;
    int r;

    if (api_str(req, body, "challenge", 64, 1, &token) != 0)
        return -1;
    r = challenge_open(api_store(ww), api_keys(ww), token, signin ? CHALLENGE_SIGNIN : NULL,
                       api_now(), ch);
    if (r == STORE_OK && !signin &&
        ((strcmp(ch->kind, CHALLENGE_UNBIND) != 0 && strcmp(ch->kind, CHALLENGE_CHANGE) != 0) ||
         strcmp(ch->user, s->ws.user) != 0))
        r = CHALLENGE_GONE;
    if (r == CHALLENGE_GONE) {
        http_respond_error(req, 410, "expired", "This sign-in has expired. Please start again.");
        return -1;
    }
    if (r == CHALLENGE_LOCKED) {
        http_respond_error(req, 429, "too_many_attempts", "Too many wrong codes.");
        return -1;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return -1;
    }
    return 0;
}

static void
api_push_sent(void *arg, const struct wechat_result *r)
{
    (void)arg;
    if (r->status != 0 && r->status != WECHAT_ECANCELED)
        log_warn("web event=wechat_push_failed status=%d errcode=%ld", r->status, r->errcode);
}

static void
api_scan_make(struct web_worker *ww, struct http_request *req, int signin, int push)
{
    struct api_worker *aw = ww->api;
    char openid[STORE_SUBJECT_MAX], page[256];
    struct store_challenge ch;
    struct store_scene sc;
    struct api_session s;
    int have_session = 0;
    cJSON *body = NULL;

    memset(&ch, 0, sizeof(ch));
    if (api_wechat_on(ww, req) != 0)
        return;
    if (!signin) {
        if (api_session(ww, req, &s) != 0)
            return;
        have_session = 1;
    }
    if (api_body(req, &body) != 0 ||
        api_scan_challenge(ww, req, body, signin, have_session ? &s : NULL, &ch) != 0 ||
        api_wechat_binding(ww, req, ch.user, openid, sizeof(openid)) != 0)
        goto done;
    memset(&sc, 0, sizeof(sc));
    util_strlcpy(sc.user, ch.user, sizeof(sc.user));
    util_strlcpy(sc.purpose, signin ? SCENE_SIGNIN : ch.kind, sizeof(sc.purpose));
    sc.challenge_id = ch.id;
    if (push) {
        unsigned char b;
        char text[SCENE_LEN + 1];

        if (!wechat_push_enabled(ww->sh->wechat)) {
            http_respond_error(req, 404, "push_off", "Requests cannot be sent to WeChat here.");
            goto done;
        }
        if (RAND_bytes(&b, 1) != 1) {
            api_reply_store_error(req);
            goto done;
        }
        sc.number = 10 + b % 90;
        util_strlcpy(sc.addr, req->peer, sizeof(sc.addr));
        if (scene_create(api_store(ww), api_keys(ww), &sc, api_now(),
                         (int64_t)(ww->cfg->wechat_scene_ttl_ms / 1000), text) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        snprintf(page, sizeof(page), "%s?scene=%s", ww->cfg->wechat_page, text);
        if (wechat_subscribe_send(aw->wechat, openid, page, sc.user, sc.addr, sc.created,
                                  api_push_sent, NULL, NULL) != 0) {
            store_scene_remove(api_store(ww), sc.id);
            api_wechat_unavailable(req);
            goto done;
        }
        /* The page shows the number and waits; a failed send shows as no answer. */
        api_scene_reply(req, text, sc.expires - api_now(), sc.number, NULL, NULL);
        goto done;
    }
    api_scene_start(ww, req, &sc);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    cJSON_Delete(body);
    if (have_session)
        api_session_done(&s);
}

void
api_login_scan(struct web_worker *ww, struct http_request *req)
{
    api_scan_make(ww, req, 1, 0);
}

void
api_login_push(struct web_worker *ww, struct http_request *req)
{
    api_scan_make(ww, req, 1, 1);
}

void
api_verify_scan(struct web_worker *ww, struct http_request *req)
{
    api_scan_make(ww, req, 0, 0);
}

/* --- the verify step ---------------------------------------------------- */

int
api_scene_verify(struct web_worker *ww, struct http_request *req, const cJSON *body,
                 const char *method, const struct store_challenge *ch, char *answer,
                 size_t answer_len)
{
    struct store_scene sc;
    const char *text;
    int r;

    if (strcmp(method, "wechat") != 0 ||
        cJSON_GetObjectItemCaseSensitive(body, "scene") == NULL)
        return 0;
    if (api_str(req, body, "scene", SCENE_LEN, 1, &text) != 0)
        return -1;
    r = scene_open(api_store(ww), api_keys(ww), text, &sc);
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        return -1;
    }
    /* A rebind scene's challenge is its grant: never a verification. */
    if (r != STORE_OK || sc.challenge_id != ch->id || strcmp(sc.user, ch->user) != 0 ||
        strcmp(sc.purpose, SCENE_BIND) == 0 || strcmp(sc.purpose, SCENE_REBIND) == 0) {
        http_respond_error(req, 410, "expired", "This QR code has expired. Please start again.");
        return -1;
    }
    switch (scene_state(&sc, api_now())) {
    case SCENE_PENDING:
        http_respond_error(req, 409, "pending", "Not answered on the phone yet.");
        return -1;
    case SCENE_DENIED:
        http_respond_error(req, 403, "denied", "The request was declined on the phone.");
        return -1;
    case SCENE_APPROVED:
        break;
    default:
        http_respond_error(req, 410, "expired", "This QR code has expired. Please start again.");
        return -1;
    }
    if (store_scene_use(api_store(ww), sc.id) != STORE_OK) {
        http_respond_error(req, 410, "expired", "This QR code has expired. Please start again.");
        return -1;
    }
    util_strlcpy(answer, sc.answer, answer_len);
    return 1;
}

/* --- waiting ------------------------------------------------------------ */

struct api_wait {
    struct api_pending p;
    uv_timer_t timer;
    unsigned char hash[STORE_TOKEN_HASH_LEN];
    char scene[SCENE_LEN + 1];
};

static void
api_wait_closed(uv_handle_t *h)
{
    struct api_wait *w = h->data;

    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

/* The timer is the job: a wait stops by stopping it. */
static void
api_wait_stop(struct api_pending *p)
{
    uv_timer_stop(&container_of(p, struct api_wait, p)->timer);
}

static void
api_wait_release(struct api_pending *p)
{
    struct api_wait *w = container_of(p, struct api_wait, p);

    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, api_wait_closed);
}

static void
api_wait_state_reply(struct http_request *req, const struct store_scene *sc, enum scene_state st)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddStringToObject(o, "state", scene_state_name(st));
    if (st == SCENE_APPROVED)
        cJSON_AddStringToObject(o, "answer", sc->answer);
    api_reply(req, 200, o, NULL);
}

/* Answers the wait if its scene is decided (or force): 1 answered, 0 not. */
static int
api_wait_check(struct web_worker *ww, struct api_wait *w, int force)
{
    struct store_scene sc;
    enum scene_state st;
    int r = scene_open(api_store(ww), api_keys(ww), w->scene, &sc);

    if (r == STORE_ERR) {
        if (!force)
            return 0;
        api_reply_store_error(w->p.req);
        return 1;
    }
    st = r == STORE_OK ? scene_state(&sc, api_now()) : SCENE_EXPIRED;
    if (st == SCENE_PENDING && !force)
        return 0;
    api_wait_state_reply(w->p.req, &sc, st);
    return 1;
}

static void
api_wait_timer(uv_timer_t *t)
{
    struct api_wait *w = t->data;
    struct web_worker *ww = w->p.aw->ww;

    api_wait_check(ww, w, 1);
    w->p.req = NULL;          /* answered: gone */
    api_pending_end(&w->p);
}

/* scanhub: answers arrived (on any worker) for these scenes. */
void
api_scan_wake(void *arg, const unsigned char (*hashes)[STORE_TOKEN_HASH_LEN], size_t n, int all)
{
    struct api_worker *aw = arg;
    struct api_pending *p, *next;

    for (p = aw->pending; p != NULL; p = next) {
        struct api_wait *w = container_of(p, struct api_wait, p);
        int hit = all;

        next = p->next;
        if (p->release != api_wait_release || p->req == NULL)
            continue;
        for (size_t i = 0; i < n && !hit; i++)
            hit = CRYPTO_memcmp(hashes[i], w->hash, STORE_TOKEN_HASH_LEN) == 0;
        if (hit && api_wait_check(aw->ww, w, 0)) {
            w->p.req = NULL;  /* answered: gone */
            api_pending_end(&w->p);
        }
    }
}

/* GET /api/scan/<scene>/wait */
void
api_scan_wait(struct web_worker *ww, struct http_request *req)
{
    struct api_worker *aw = ww->api;
    const char *rest = req->path + strlen("/api/scan/");
    struct store_scene sc;
    struct api_wait *w;
    int64_t left_ms;
    enum scene_state st;
    int r;

    if (api_wechat_on(ww, req) != 0)
        return;
    if (strlen(rest) != SCENE_LEN + strlen("/wait") || strcmp(rest + SCENE_LEN, "/wait") != 0) {
        http_respond_error(req, 404, "not_found", "No such resource.");
        return;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        api_reply_store_error(req);
        return;
    }
    memcpy(w->scene, rest, SCENE_LEN);
    r = scene_open(api_store(ww), api_keys(ww), w->scene, &sc);
    if (r == STORE_ERR) {
        free(w);
        api_reply_store_error(req);
        return;
    }
    st = r == STORE_OK ? scene_state(&sc, api_now()) : SCENE_EXPIRED;
    if (st != SCENE_PENDING || aw->stopping) {
        free(w);
        api_wait_state_reply(req, &sc, st);
        return;
    }
    scene_hash(api_keys(ww), w->scene, w->hash);
    left_ms = (sc.expires - api_now()) * 1000 + 500;
    if (left_ms > API_WAIT_MS)
        left_ms = API_WAIT_MS;
    uv_timer_init(ww->loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, api_wait_timer, (uint64_t)left_ms, 0);
    api_pending_start(aw, &w->p, req, api_wait_stop, api_wait_release);
}
