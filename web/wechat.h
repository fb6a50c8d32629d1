/*
 * wechat.h - WeChat's server API (the mini program's side of mfagate):
 * sns/jscode2session (a wx.login code -> openid), the access token,
 * wxa/getwxacodeunlimit (a mini-program code carrying a scene) and
 * message/subscribe/send (push a confirm request), over libcurl's multi
 * interface on a worker's uv loop (web/curl_uv.c).  Nothing here blocks a
 * loop.
 *
 * Two levels:
 * - struct wechat_shared: one per process, thread-safe.  The [wechat]
 *   settings and the access-token cache that every worker uses: refreshed
 *   ahead of expiry, one refresh at a time across all workers (the others'
 *   calls queue and are woken by uv_async when it ends), invalidated and
 *   refreshed once when WeChat says a token is bad or expired.
 * - struct wechat: one per web worker, used on its loop thread only.  It
 *   owns the curl multi handle and the jobs.
 *
 * The secret and the tokens never reach a log: only URL paths are logged,
 * and curl's own verbose and error output is never enabled.
 */
#ifndef MFA_WECHAT_H
#define MFA_WECHAT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct config;

struct wechat_shared;  /* process-wide, thread-safe: config + access-token cache */
struct wechat;         /* one per web worker, used on its loop thread only */
struct wechat_job;     /* one call under way */

#define WECHAT_OPENID_MAX 128
#define WECHAT_SCENE_MAX 32    /* WeChat's limit for getwxacodeunlimit's scene */

/* Outcomes in wechat_result.status (besides 0). */
#define WECHAT_EUNAVAILABLE (-1)  /* connect failure, timeout, HTTP 5xx, bad JSON, no token */
#define WECHAT_EBADCODE (-2)      /* 40029 invalid js_code, 40163 code already used */
#define WECHAT_ERATELIMIT (-3)    /* 45011 (and 45009, daily quota) */
#define WECHAT_EDENIED (-4)       /* 43101 the user refused subscribe messages, 43104 ... */
#define WECHAT_EFAILED (-5)       /* any other errcode WeChat sent */
#define WECHAT_ECANCELED (-6)     /* wechat_close ran before the job ended */

struct wechat_result {
    int status;              /* 0, or one of WECHAT_E* above */
    long errcode;            /* WeChat's, when it sent one (else 0) */
    char openid[WECHAT_OPENID_MAX];       /* code2session: the user's openid */
    const unsigned char *body;            /* wxacode: the image bytes, valid */
    size_t body_len;                      /*   during the callback only */
    char content_type[64];               /* wxacode: "image/jpeg" / "image/png" */
};

/* Called once per job, always later on the loop, never inside the starting call. */
typedef void (*wechat_cb)(void *arg, const struct wechat_result *r);

/*
 * The process's WeChat state from cfg ([wechat]).  *out is NULL (and 0 is
 * returned) when WeChat is off (no appid).  0, or UV_ENOMEM / UV_EINVAL.
 * It copies what it needs: cfg may go after this returns.  Free it after
 * every struct wechat that uses it.
 */
int wechat_shared_new(const struct config *cfg, struct wechat_shared **out);
void wechat_shared_free(struct wechat_shared *sh);

/* "wxacode" or "link" ([wechat] qr). */
const char *wechat_qr_mode(const struct wechat_shared *sh);

/* 1 when [wechat] template_id is set (wechat_subscribe_send may be used). */
int wechat_push_enabled(const struct wechat_shared *sh);

/* How many access tokens were fetched so far (for tests and /metrics). */
long wechat_token_fetches(const struct wechat_shared *sh);

/* A worker's client on loop; 0, or UV_ENOMEM / a uv error. */
int wechat_new(uv_loop_t *loop, struct wechat_shared *sh, struct wechat **out);

/*
 * Cancels every job (their callbacks get WECHAT_ECANCELED, on this call's
 * stack) and closes the handles; the loop must run for them to close.
 * Later calls fail with UV_ECANCELED.
 */
void wechat_close(struct wechat *w);

/* Frees w after wechat_close and a loop run (NULL is fine). */
void wechat_free(struct wechat *w);

/*
 * The calls.  Each returns 0 and later calls cb(arg, result) exactly once
 * on the loop (unless the job is canceled), or returns an error and never
 * calls cb: UV_EINVAL (a bad argument), UV_ENOMEM, UV_ECANCELED (closing),
 * UV_ENOTSUP (wechat_subscribe_send without a template_id).  *job (may be
 * NULL) names the call for wechat_cancel until cb runs.
 *
 * Each HTTP exchange is limited to [wechat] timeout.  A call that needs a
 * token may first wait for its fetch (one more timeout) and, told the token
 * is bad, fetch and try once more: at most about 4 timeouts in all.
 */

/* sns/jscode2session: js_code (from wx.login, 1..128 printable ASCII) -> openid. */
int wechat_code2session(struct wechat *w, const char *js_code, wechat_cb cb, void *arg,
                        struct wechat_job **job);

/*
 * wxa/getwxacodeunlimit with [wechat] page and env_version, check_path
 * false, width 280: an image carrying scene (1..WECHAT_SCENE_MAX of WeChat's
 * allowed characters: [A-Za-z0-9!#$&'()*+,/:;=?@._~-]).
 */
int wechat_wxacode(struct wechat *w, const char *scene, wechat_cb cb, void *arg,
                   struct wechat_job **job);

/*
 * message/subscribe/send to openid with [wechat] template_id: page is what
 * a tap opens ("pages/confirm/confirm?scene=..."), and the template's
 * fields ([wechat] template_keys, in this order) carry mailbox, addr (the
 * browser's address) and time (Unix seconds, shown in China time).  Never
 * the number to match: the phone must learn it from the page, not from the
 * message.  Values are cut to WeChat's limits per field type (thing 20
 * characters, character_string 32 ...).
 */
int wechat_subscribe_send(struct wechat *w, const char *openid, const char *page,
                          const char *mailbox, const char *addr, int64_t time, wechat_cb cb,
                          void *arg, struct wechat_job **job);

/* Ends a job at once; its callback is not called.  NULL is fine. */
void wechat_cancel(struct wechat_job *job);

/* Jobs under way on w (for tests). */
int wechat_active(const struct wechat *w);

#endif
