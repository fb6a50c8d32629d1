/*
 * wechat.c - WeChat's server API over libcurl on the worker loops (wechat.h).
 *
 * What it owns: the process-wide struct wechat_shared (settings copied from
 * the config, the access-token cache behind a mutex, the list of workers
 * to wake), and per worker a struct wechat (a curl_uv, a uv_async, the
 * jobs).  What it does not: scenes, bindings and sessions (auth/, the API
 * files); the QR of a plain link (web/qr.c).
 *
 * The access token.  WeChat's GET /cgi-bin/token is used rather than POST
 * /cgi-bin/stable_token: every fetch returns a fresh token good for
 * expires_in (7200 s) while the previous one stays valid for 5 more
 * minutes, so refreshing ahead of expiry is simple (calls in flight with
 * the old token still work), whereas stable_token hands back the *same*
 * token until it nearly expires and forcing a new one is limited to a few
 * times a day.  (jscode2session carries the secret in its query anyway.)
 * The cost: two processes sharing one appid fetch tokens on their own and
 * may push each other's out of their grace; one mfagate per appid.
 *
 * One refresh at a time: a job that needs a token takes it under the
 * mutex.  If there is none (or it is near expiry) and nobody is fetching,
 * this worker becomes the fetcher; other jobs, on any worker, wait and the
 * fetch's end wakes every waiting worker through its uv_async.  A job that
 * WeChat answers with 40001/42001/40014 drops the token (if it is still the
 * one it used) and goes round once more.
 *
 * Secrets: the AppSecret and the tokens travel in query strings, as
 * WeChat's API wants.  So URLs are built in buffers that are wiped after
 * curl copied them, logs name the path only, and curl's verbose output and
 * error buffer are never turned on.  Responses (session_key among them)
 * are wiped before they are freed.
 */
#include "web/wechat.h"

#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include "conf/config.h"
#include "core/log.h"
#include "core/util.h"
#include "web/curl_uv.h"

#define WECHAT_TOKEN_MAX 512
#define WECHAT_JSON_MAX (64 * 1024)       /* a JSON answer */
#define WECHAT_IMAGE_MAX (1024 * 1024)    /* a mini-program code (280 px: ~40 KB) */
#define WECHAT_REFRESH_AHEAD_MS (5 * 60 * 1000)
#define WECHAT_REFRESH_RETRY_MS (30 * 1000)
#define WECHAT_URL_MAX 2048

/* WeChat's errcodes that this file acts on. */
#define WX_SYSTEM_BUSY (-1)
#define WX_INVALID_TOKEN 40001
#define WX_INVALID_CODE 40029
#define WX_BAD_TOKEN_FORMAT 40014
#define WX_CODE_USED 40163
#define WX_TOKEN_EXPIRED 42001
#define WX_USER_REFUSED 43101
#define WX_USER_BLOCKED 43104
#define WX_MINUTE_QUOTA 45009
#define WX_RATE_LIMIT 45011

struct wechat_shared {
    /* Settings, immutable after wechat_shared_new. */
    char appid[64];
    char secret[CONFIG_SECRET_MAX];
    char api_base[512];
    int qr;
    char page[128];
    char env_version[16];
    const char *miniprogram_state;    /* subscribe/send's name for env_version */
    char template_id[128];
    char keys[3][64];                 /* template fields: mailbox, addr, time */
    long timeout_ms;
    char ca[PATH_MAX];

    /* The token cache and the workers, under mu. */
    pthread_mutex_t mu;
    char token[WECHAT_TOKEN_MAX];     /* "" = none */
    uint64_t token_expires;           /* ms (uv_hrtime): no use after this */
    uint64_t token_refresh_at;        /* ms: fetch a new one from then on */
    int refreshing;                   /* a worker is fetching one */
    uint64_t gen;                     /* counts the fetches that ended */
    int last_status;                  /* how the last one ended */
    long last_errcode;
    long fetches;                     /* fetches started */
    struct wechat *workers;           /* to wake when a fetch ends */
};

enum wechat_kind {
    WECHAT_K_SESSION = 0,   /* sns/jscode2session */
    WECHAT_K_WXACODE,       /* wxa/getwxacodeunlimit */
    WECHAT_K_SUBSCRIBE,     /* cgi-bin/message/subscribe/send */
    WECHAT_K_TOKEN,         /* cgi-bin/token (the worker's own job) */
};

static const char *const wechat_paths[] = {
    [WECHAT_K_SESSION] = "/sns/jscode2session",
    [WECHAT_K_WXACODE] = "/wxa/getwxacodeunlimit",
    [WECHAT_K_SUBSCRIBE] = "/cgi-bin/message/subscribe/send",
    [WECHAT_K_TOKEN] = "/cgi-bin/token",
};

enum wechat_state {
    WECHAT_S_NEW = 0,
    WECHAT_S_WAIT_TOKEN,    /* queued until a fetch ends (w->wake) */
    WECHAT_S_HTTP,          /* a curl transfer is under way */
};

struct wechat {
    uv_loop_t *loop;
    struct wechat_shared *sh;
    struct curl_uv *cu;
    uv_async_t wake;                  /* a token fetch ended (any worker's) */
    int wake_ref;                     /* wake keeps the loop alive (jobs wait) */
    int closing;
    struct wechat_job *jobs;          /* the callers' jobs */
    int njobs;
    struct wechat_job *token_job;     /* this worker's token fetch, if any */
    int waiting;                      /* under sh->mu: wake this worker */
    struct wechat *prev, *next;       /* in sh->workers, under sh->mu */
};

struct wechat_job {
    struct wechat *w;
    enum wechat_kind kind;
    enum wechat_state state;
    struct curl_uv_xfer xfer;         /* xfer.easy: NULL unless a transfer runs */
    struct curl_slist *headers;
    char *body;                       /* the JSON to POST (NULL for GET) */
    char *query;                      /* a GET's query, secrets in it (wiped) */
    unsigned char *resp;              /* the answer, up to resp_max bytes */
    size_t resp_len, resp_cap, resp_max;
    char token[WECHAT_TOKEN_MAX];     /* the token this call uses */
    uint64_t gen;                     /* sh->gen when it began to wait */
    int retried;                      /* went round once for a bad token */
    uint64_t started;                 /* ms, for the log */
    wechat_cb cb;
    void *arg;
    struct wechat_job *prev, *next;
};

static uint64_t
wechat_now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* --- the shared part ----------------------------------------------------- */

int
wechat_shared_new(const struct config *cfg, struct wechat_shared **out)
{
    struct wechat_shared *sh;
    char keys[sizeof(cfg->wechat_template_keys)], *save = NULL, *tok;
    int i = 0;

    *out = NULL;
    if (cfg->wechat_appid[0] == '\0')
        return 0;
    if (cfg->wechat_secret[0] == '\0')
        return UV_EINVAL;
    if (curl_uv_global_init() != 0)
        return UV_ENOMEM;
    sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return UV_ENOMEM;
    if (pthread_mutex_init(&sh->mu, NULL) != 0) {
        free(sh);
        return UV_ENOMEM;
    }
    snprintf(sh->appid, sizeof(sh->appid), "%s", cfg->wechat_appid);
    snprintf(sh->secret, sizeof(sh->secret), "%s", cfg->wechat_secret);
    snprintf(sh->api_base, sizeof(sh->api_base), "%s", cfg->wechat_api_base);
    sh->qr = cfg->wechat_qr;
    snprintf(sh->page, sizeof(sh->page), "%s", cfg->wechat_page);
    snprintf(sh->env_version, sizeof(sh->env_version), "%s", cfg->wechat_env_version);
    if (strcmp(sh->env_version, "develop") == 0)
        sh->miniprogram_state = "developer";
    else if (strcmp(sh->env_version, "trial") == 0)
        sh->miniprogram_state = "trial";
    else
        sh->miniprogram_state = "formal";
    snprintf(sh->template_id, sizeof(sh->template_id), "%s", cfg->wechat_template_id);
    snprintf(keys, sizeof(keys), "%s", cfg->wechat_template_keys);
    for (tok = strtok_r(keys, ",", &save); tok != NULL && i < 3;
         tok = strtok_r(NULL, ",", &save), i++)
        snprintf(sh->keys[i], sizeof(sh->keys[i]), "%s", strcmp(tok, "-") == 0 ? "" : tok);
    sh->timeout_ms = cfg->wechat_timeout_ms > 0 ? (long)cfg->wechat_timeout_ms : 5000;
    snprintf(sh->ca, sizeof(sh->ca), "%s", cfg->wechat_ca);
    *out = sh;
    return 0;
}

void
wechat_shared_free(struct wechat_shared *sh)
{
    if (sh == NULL)
        return;
    pthread_mutex_destroy(&sh->mu);
    OPENSSL_cleanse(sh, sizeof(*sh));
    free(sh);
}

const char *
wechat_qr_mode(const struct wechat_shared *sh)
{
    return sh != NULL && sh->qr == CONFIG_WECHAT_QR_LINK ? "link" : "wxacode";
}

int
wechat_push_enabled(const struct wechat_shared *sh)
{
    return sh != NULL && sh->template_id[0] != '\0';
}

long
wechat_token_fetches(const struct wechat_shared *sh)
{
    long n;

    pthread_mutex_lock((pthread_mutex_t *)&sh->mu);
    n = sh->fetches;
    pthread_mutex_unlock((pthread_mutex_t *)&sh->mu);
    return n;
}

/* Under sh->mu: wakes every worker with jobs waiting for a token. */
static void
wechat_wake_waiters(struct wechat_shared *sh)
{
    for (struct wechat *o = sh->workers; o != NULL; o = o->next) {
        if (o->waiting) {
            o->waiting = 0;
            uv_async_send(&o->wake);
        }
    }
}

/* --- jobs ---------------------------------------------------------------- */

static void wechat_token_fetch(struct wechat *w);
static int wechat_http_start(struct wechat_job *j);

static void
wechat_job_unlink(struct wechat_job *j)
{
    struct wechat *w = j->w;

    if (j->kind == WECHAT_K_TOKEN) {
        if (w->token_job == j)
            w->token_job = NULL;
        return;
    }
    if (j->prev != NULL)
        j->prev->next = j->next;
    else if (w->jobs == j)
        w->jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
    w->njobs--;
}

/* Ends j's transfer, if one runs, and forgets its answer. */
static void
wechat_job_reset(struct wechat_job *j)
{
    if (j->xfer.easy != NULL) {
        curl_uv_remove(&j->xfer);
        curl_easy_cleanup(j->xfer.easy);
        j->xfer.easy = NULL;
    }
    curl_slist_free_all(j->headers);
    j->headers = NULL;
    if (j->resp != NULL) {
        OPENSSL_cleanse(j->resp, j->resp_len);
        free(j->resp);
    }
    j->resp = NULL;
    j->resp_len = j->resp_cap = 0;
}

static void
wechat_job_free(struct wechat_job *j)
{
    wechat_job_unlink(j);
    wechat_job_reset(j);
    if (j->query != NULL) {
        OPENSSL_cleanse(j->query, strlen(j->query));
        free(j->query);
    }
    if (j->body != NULL) {
        OPENSSL_cleanse(j->body, strlen(j->body));
        free(j->body);
    }
    OPENSSL_cleanse(j->token, sizeof(j->token));
    free(j);
}

/*
 * Ends a caller's job with r: unlinks and frees it first (so that the
 * callback may start new jobs or close w), keeping the answer bytes alive
 * for the callback, then wipes them.
 */
static void
wechat_job_finish(struct wechat_job *j, struct wechat_result *r)
{
    unsigned char *resp = j->resp;
    size_t resp_len = j->resp_len;
    wechat_cb cb = j->cb;
    void *arg = j->arg;

    j->resp = NULL;
    j->resp_len = 0;
    wechat_job_free(j);
    cb(arg, r);
    if (resp != NULL) {
        OPENSSL_cleanse(resp, resp_len);
        free(resp);
    }
}

static void
wechat_job_fail(struct wechat_job *j, int status, long errcode)
{
    struct wechat_result r;

    memset(&r, 0, sizeof(r));
    r.status = status;
    r.errcode = errcode;
    wechat_job_finish(j, &r);
}

/* The loop keeps running while jobs wait for another worker's fetch. */
static void
wechat_wake_ref(struct wechat *w, int on)
{
    if (on && !w->wake_ref)
        uv_ref((uv_handle_t *)&w->wake);
    else if (!on && w->wake_ref)
        uv_unref((uv_handle_t *)&w->wake);
    w->wake_ref = on;
}

/*
 * Gives j the current token: 1 when j->token is set (and the call can
 * go), 0 when j waits for a fetch to end (this worker starts it if nobody
 * else is fetching).  A token near expiry is still handed out while a
 * fetch for the next one runs.
 */
static int
wechat_token_take(struct wechat_job *j)
{
    struct wechat *w = j->w;
    struct wechat_shared *sh = w->sh;
    uint64_t now = wechat_now_ms();
    int ok, fetch = 0;

    pthread_mutex_lock(&sh->mu);
    if (sh->token[0] != '\0' && now < sh->token_expires) {
        memcpy(j->token, sh->token, sizeof(j->token));
        ok = 1;
        if (now >= sh->token_refresh_at && !sh->refreshing && w->token_job == NULL)
            fetch = sh->refreshing = 1;
    } else {
        ok = 0;
        if (j->state != WECHAT_S_WAIT_TOKEN)
            j->gen = sh->gen;
        j->state = WECHAT_S_WAIT_TOKEN;
        w->waiting = 1;
        if (!sh->refreshing)
            fetch = sh->refreshing = 1;
    }
    if (fetch)
        sh->fetches++;
    pthread_mutex_unlock(&sh->mu);
    if (!ok)
        wechat_wake_ref(w, 1);
    if (fetch)
        wechat_token_fetch(w);
    return ok;
}

/*
 * A fetch ended (status 0 with token and expires_in, or an error): store
 * the outcome and wake every waiting worker, this one included (its
 * waiting jobs go on from the uv_async callback, never from here).
 */
static void
wechat_token_fetched(struct wechat *w, int status, long errcode, const char *token,
                     long expires_in)
{
    struct wechat_shared *sh = w->sh;
    uint64_t now = wechat_now_ms();

    pthread_mutex_lock(&sh->mu);
    sh->refreshing = 0;
    sh->gen++;
    sh->last_status = status;
    sh->last_errcode = errcode;
    if (status == 0) {
        uint64_t life = (uint64_t)expires_in * 1000;

        snprintf(sh->token, sizeof(sh->token), "%s", token);
        sh->token_expires = now + life;
        sh->token_refresh_at =
            now + (life > 2 * WECHAT_REFRESH_AHEAD_MS ? life - WECHAT_REFRESH_AHEAD_MS
                                                      : life / 2);
    } else if (sh->token[0] != '\0') {
        /* A refresh ahead of expiry failed: the token still works; try
         * again in a while rather than on every call. */
        sh->token_refresh_at = now + WECHAT_REFRESH_RETRY_MS;
    }
    wechat_wake_waiters(sh);
    pthread_mutex_unlock(&sh->mu);
}

/*
 * This worker gives up fetching (closing): another worker with waiting
 * jobs takes over when woken, without counting this as a failure.
 */
static void
wechat_token_abandon(struct wechat *w)
{
    struct wechat_shared *sh = w->sh;

    pthread_mutex_lock(&sh->mu);
    sh->refreshing = 0;
    wechat_wake_waiters(sh);
    pthread_mutex_unlock(&sh->mu);
}

/*
 * The uv_async callback: a fetch ended somewhere.  Each waiting job starts
 * with the new token, or fails with the fetch's outcome if a fetch ended
 * without one since it began to wait, or waits on (taking over the fetch
 * if its fetcher went away).  Callbacks may cancel jobs or close w, so
 * the list is walked again from its head after each one.
 */
static void
wechat_wake_cb(uv_async_t *h)
{
    struct wechat *w = h->data;
    struct wechat_shared *sh = w->sh;
    int progress = 1;

    while (progress && !w->closing) {
        int status = 0, have;
        long errcode = 0;
        uint64_t gen, now = wechat_now_ms();

        progress = 0;
        pthread_mutex_lock(&sh->mu);
        have = sh->token[0] != '\0' && now < sh->token_expires;
        gen = sh->gen;
        status = sh->last_status;
        errcode = sh->last_errcode;
        pthread_mutex_unlock(&sh->mu);
        for (struct wechat_job *j = w->jobs; j != NULL; j = j->next) {
            if (j->state != WECHAT_S_WAIT_TOKEN)
                continue;
            if (have) {
                if (wechat_token_take(j) && wechat_http_start(j) != 0)
                    wechat_job_fail(j, WECHAT_EUNAVAILABLE, 0);
                progress = 1;
                break;
            }
            if (j->gen != gen && status != 0) {
                wechat_job_fail(j, status, errcode);
                progress = 1;
                break;
            }
        }
    }
    if (w->closing)
        return;
    /* Whatever still waits asks again: a fetcher that went away is replaced. */
    {
        int any = 0;

        for (struct wechat_job *j = w->jobs; j != NULL; j = j->next) {
            if (j->state == WECHAT_S_WAIT_TOKEN) {
                any = 1;
                if (wechat_token_take(j)) {
                    /* A token came between the two looks: go round again. */
                    uv_async_send(&w->wake);
                    break;
                }
            }
        }
        if (!any)
            wechat_wake_ref(w, 0);
    }
}

/* --- HTTP ---------------------------------------------------------------- */

static size_t
wechat_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct wechat_job *j = arg;
    size_t n = size * nmemb;

    if (n > j->resp_max - j->resp_len)
        return 0;    /* too big: the transfer fails (CURLE_WRITE_ERROR) */
    if (j->resp_len + n > j->resp_cap) {
        size_t cap = j->resp_cap ? j->resp_cap : 4096;
        unsigned char *p;

        while (cap < j->resp_len + n)
            cap *= 2;
        if (cap > j->resp_max)
            cap = j->resp_max;
        p = malloc(cap);
        if (p == NULL)
            return 0;
        if (j->resp != NULL) {
            memcpy(p, j->resp, j->resp_len);
            OPENSSL_cleanse(j->resp, j->resp_len);
            free(j->resp);
        }
        j->resp = p;
        j->resp_cap = cap;
    }
    memcpy(j->resp + j->resp_len, data, n);
    j->resp_len += n;
    return n;
}

/*
 * Starts j's HTTP call: GET base+path?query, or POST base+path?access_token
 * with the JSON body.  0, or -1 (no memory, closing).
 */
static int
wechat_http_start(struct wechat_job *j)
{
    struct wechat *w = j->w;
    struct wechat_shared *sh = w->sh;
    char url[WECHAT_URL_MAX];
    CURL *e;
    int n, rc = -1;

    wechat_job_reset(j);
    if (w->closing)
        return -1;
    if (j->body != NULL) {
        char *tok = curl_easy_escape(NULL, j->token, 0);

        if (tok == NULL)
            return -1;
        n = snprintf(url, sizeof(url), "%s%s?access_token=%s", sh->api_base,
                     wechat_paths[j->kind], tok);
        OPENSSL_cleanse(tok, strlen(tok));
        curl_free(tok);
    } else {
        n = snprintf(url, sizeof(url), "%s%s?%s", sh->api_base, wechat_paths[j->kind],
                     j->query);
    }
    if (n < 0 || (size_t)n >= sizeof(url))
        goto done;
    e = curl_easy_init();
    if (e == NULL)
        goto done;
    if (j->body != NULL) {
        j->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (j->headers != NULL)
            j->headers = curl_slist_append(j->headers, "Expect:");
    }
    j->resp_max = j->kind == WECHAT_K_WXACODE ? WECHAT_IMAGE_MAX : WECHAT_JSON_MAX;
    if ((j->body != NULL && j->headers == NULL) ||
        curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
        /* Never: it would print the URLs, secrets and all. */
        curl_easy_setopt(e, CURLOPT_VERBOSE, 0L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        /* A cancel while a name is resolved must not wait for the resolver. */
        curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, sh->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, sh->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, "mfagate") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)j->resp_max) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wechat_write) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, j) != CURLE_OK ||
        (sh->ca[0] != '\0' && curl_easy_setopt(e, CURLOPT_CAINFO, sh->ca) != CURLE_OK) ||
        (j->body != NULL &&
         (curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers) != CURLE_OK ||
          curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body)) != CURLE_OK ||
          curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body) != CURLE_OK))) {
        curl_easy_cleanup(e);
        goto done;
    }
    if (curl_uv_add(w->cu, &j->xfer, e) != 0) {
        curl_easy_cleanup(e);
        goto done;
    }
    j->state = WECHAT_S_HTTP;
    j->started = wechat_now_ms();
    rc = 0;
done:
    OPENSSL_cleanse(url, sizeof(url));
    return rc;
}

/* WeChat's errcode -> WECHAT_E*. */
static int
wechat_map_errcode(long errcode)
{
    switch (errcode) {
    case 0:
        return 0;
    case WX_INVALID_CODE:
    case WX_CODE_USED:
        return WECHAT_EBADCODE;
    case WX_RATE_LIMIT:
    case WX_MINUTE_QUOTA:
        return WECHAT_ERATELIMIT;
    case WX_USER_REFUSED:
    case WX_USER_BLOCKED:
        return WECHAT_EDENIED;
    case WX_SYSTEM_BUSY:
        return WECHAT_EUNAVAILABLE;
    default:
        return WECHAT_EFAILED;
    }
}

static int
wechat_token_errcode(long errcode)
{
    return errcode == WX_INVALID_TOKEN || errcode == WX_TOKEN_EXPIRED ||
           errcode == WX_BAD_TOKEN_FORMAT;
}

static const char *
wechat_status_name(int status)
{
    switch (status) {
    case 0:
        return "ok";
    case WECHAT_EUNAVAILABLE:
        return "unavailable";
    case WECHAT_EBADCODE:
        return "bad_code";
    case WECHAT_ERATELIMIT:
        return "rate_limited";
    case WECHAT_EDENIED:
        return "denied";
    case WECHAT_ECANCELED:
        return "canceled";
    default:
        return "failed";
    }
}

/* One line per call: the path, never the URL. */
static void
wechat_log(struct wechat_job *j, int status, long http, long errcode, CURLcode cc)
{
    long ms = (long)(wechat_now_ms() - j->started);
    const char *path = wechat_paths[j->kind];

    if (status == 0)
        log_debug("wechat event=call path=%s status=ok http=%ld ms=%ld", path, http, ms);
    else if (cc != CURLE_OK)
        log_warn("wechat event=call path=%s status=%s error=\"%s\" ms=%ld", path,
                 wechat_status_name(status), curl_easy_strerror(cc), ms);
    else if (errcode == 40013 || errcode == 40125 || errcode == 40164 || errcode == 40037 ||
             errcode == 41030)
        /* The configuration is wrong: appid, secret, IP whitelist, template, page. */
        log_error("wechat event=call path=%s status=%s http=%ld errcode=%ld ms=%ld", path,
                  wechat_status_name(status), http, errcode, ms);
    else
        log_info("wechat event=call path=%s status=%s http=%ld errcode=%ld ms=%ld", path,
                 wechat_status_name(status), http, errcode, ms);
}

/* The token fetch's answer: {"access_token","expires_in"} or {"errcode"}. */
static void
wechat_token_done(struct wechat_job *j, CURLcode cc, long http, cJSON *json)
{
    struct wechat *w = j->w;
    int status = WECHAT_EUNAVAILABLE;
    long errcode = 0, expires_in = 7200;
    const char *token = NULL;

    if (cc == CURLE_OK && http / 100 == 2 && cJSON_IsObject(json)) {
        cJSON *ec = cJSON_GetObjectItemCaseSensitive(json, "errcode");
        cJSON *at = cJSON_GetObjectItemCaseSensitive(json, "access_token");
        cJSON *ex = cJSON_GetObjectItemCaseSensitive(json, "expires_in");

        if (cJSON_IsNumber(ec))
            errcode = (long)ec->valuedouble;
        if (errcode != 0) {
            status = wechat_map_errcode(errcode);
        } else if (cJSON_IsString(at) && at->valuestring[0] != '\0' &&
                   strlen(at->valuestring) < WECHAT_TOKEN_MAX) {
            token = at->valuestring;
            if (cJSON_IsNumber(ex) && ex->valuedouble >= 1 && ex->valuedouble <= 86400)
                expires_in = (long)ex->valuedouble;
            status = 0;
        }
    }
    wechat_log(j, status, http, errcode, cc);
    wechat_token_fetched(w, status, errcode, token, expires_in);
}

/* Wipes every string of a parsed answer (a token, a session_key) before it goes. */
static void
wechat_json_wipe(cJSON *item)
{
    for (; item != NULL; item = item->next) {
        if (item->valuestring != NULL)
            OPENSSL_cleanse(item->valuestring, strlen(item->valuestring));
        wechat_json_wipe(item->child);
    }
}

/*
 * A caller's call answered: the result from the answer, or once more with
 * a new token when WeChat says the token is bad.
 */
static void
wechat_call_done(struct wechat_job *j, CURLcode cc, long http, cJSON *json,
                 const char *ctype)
{
    struct wechat_shared *sh = j->w->sh;
    struct wechat_result r;
    long errcode = 0;

    memset(&r, 0, sizeof(r));
    r.status = WECHAT_EUNAVAILABLE;
    if (cc != CURLE_OK || http / 100 != 2)
        goto out;
    if (j->kind == WECHAT_K_WXACODE && ctype != NULL && strncmp(ctype, "image/", 6) == 0 &&
        j->resp_len > 0) {
        size_t n = strcspn(ctype, "; ");

        r.status = 0;
        r.body = j->resp;
        r.body_len = j->resp_len;
        snprintf(r.content_type, sizeof(r.content_type), "%.*s",
                 (int)(n < sizeof(r.content_type) ? n : sizeof(r.content_type) - 1), ctype);
        goto out;
    }
    if (!cJSON_IsObject(json))
        goto out;
    {
        cJSON *ec = cJSON_GetObjectItemCaseSensitive(json, "errcode");

        if (cJSON_IsNumber(ec))
            errcode = (long)ec->valuedouble;
    }
    r.errcode = errcode;
    if (errcode != 0 && wechat_token_errcode(errcode) && j->kind != WECHAT_K_SESSION &&
        !j->retried) {
        /* Drop the token if nobody has replaced it yet, and go round once. */
        wechat_log(j, WECHAT_EFAILED, http, errcode, cc);
        pthread_mutex_lock(&sh->mu);
        if (strcmp(sh->token, j->token) == 0)
            sh->token[0] = '\0';
        pthread_mutex_unlock(&sh->mu);
        j->retried = 1;
        wechat_job_reset(j);
        j->state = WECHAT_S_NEW;
        if (wechat_token_take(j) && wechat_http_start(j) != 0)
            wechat_job_fail(j, WECHAT_EUNAVAILABLE, 0);
        return;
    }
    if (errcode != 0) {
        r.status = wechat_map_errcode(errcode);
        goto out;
    }
    if (j->kind == WECHAT_K_SESSION) {
        cJSON *oid = cJSON_GetObjectItemCaseSensitive(json, "openid");

        if (!cJSON_IsString(oid) || oid->valuestring[0] == '\0' ||
            strlen(oid->valuestring) >= sizeof(r.openid))
            goto out;
        snprintf(r.openid, sizeof(r.openid), "%s", oid->valuestring);
    } else if (j->kind == WECHAT_K_WXACODE) {
        goto out;    /* neither an image nor an error */
    }
    r.status = 0;
out:
    wechat_log(j, r.status, http, errcode, cc);
    wechat_job_finish(j, &r);
}

/* curl_uv's done callback: a transfer of one of this worker's jobs ended. */
static void
wechat_done(struct curl_uv_xfer *x, CURLcode cc)
{
    struct wechat_job *j = (struct wechat_job *)((char *)x - offsetof(struct wechat_job, xfer));
    long http = 0;
    char *ct = NULL, ctype[64] = "";
    cJSON *json = NULL;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &http);
    if (curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
        snprintf(ctype, sizeof(ctype), "%s", ct);
    /* The transfer is over: its connection goes back to curl's cache now. */
    curl_uv_remove(&j->xfer);
    curl_easy_cleanup(j->xfer.easy);
    j->xfer.easy = NULL;
    if (cc == CURLE_OK && j->resp_len > 0 && strncmp(ctype, "image/", 6) != 0)
        json = cJSON_ParseWithLength((const char *)j->resp, j->resp_len);
    if (j->kind == WECHAT_K_TOKEN) {
        wechat_token_done(j, cc, http, json);
        wechat_job_free(j);
    } else {
        wechat_call_done(j, cc, http, json, ctype);
    }
    if (json != NULL) {
        wechat_json_wipe(json);
        cJSON_Delete(json);
    }
}

/* Starts this worker's token fetch (sh->refreshing is already set for it). */
static void
wechat_token_fetch(struct wechat *w)
{
    struct wechat_shared *sh = w->sh;
    struct wechat_job *j = calloc(1, sizeof(*j));
    char *appid = NULL, *secret = NULL;
    size_t n;

    if (j == NULL)
        goto fail;
    j->w = w;
    j->kind = WECHAT_K_TOKEN;
    appid = curl_easy_escape(NULL, sh->appid, 0);
    secret = curl_easy_escape(NULL, sh->secret, 0);
    if (appid == NULL || secret == NULL)
        goto fail;
    n = strlen(appid) + strlen(secret) + 64;
    j->query = malloc(n);
    if (j->query == NULL)
        goto fail;
    snprintf(j->query, n, "grant_type=client_credential&appid=%s&secret=%s", appid, secret);
    w->token_job = j;
    if (wechat_http_start(j) != 0) {
        w->token_job = NULL;
        goto fail;
    }
    OPENSSL_cleanse(secret, strlen(secret));
    curl_free(secret);
    curl_free(appid);
    return;
fail:
    if (secret != NULL) {
        OPENSSL_cleanse(secret, strlen(secret));
        curl_free(secret);
    }
    curl_free(appid);
    if (j != NULL)
        wechat_job_free(j);
    log_warn("wechat event=token_fetch status=unavailable error=\"cannot start\"");
    /* The waiting jobs fail from the uv_async callback, never on this stack. */
    wechat_token_fetched(w, WECHAT_EUNAVAILABLE, 0, NULL, 0);
}

/* --- the worker's client ------------------------------------------------- */

static void
wechat_freed_on_close(uv_handle_t *h)
{
    free(h->data);
}

int
wechat_new(uv_loop_t *loop, struct wechat_shared *sh, struct wechat **out)
{
    struct wechat *w;
    int rc;

    *out = NULL;
    if (sh == NULL)
        return UV_EINVAL;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    w->loop = loop;
    w->sh = sh;
    /* The async first: it is what can fail (an eventfd); curl_uv_new fails
     * only before it has a handle, and then w goes when wake has closed. */
    rc = uv_async_init(loop, &w->wake, wechat_wake_cb);
    if (rc != 0) {
        free(w);
        return rc;
    }
    w->wake.data = w;
    rc = curl_uv_new(loop, wechat_done, 0, &w->cu);
    if (rc != 0) {
        uv_close((uv_handle_t *)&w->wake, wechat_freed_on_close);
        return rc;
    }
    uv_unref((uv_handle_t *)&w->wake);
    pthread_mutex_lock(&sh->mu);
    w->next = sh->workers;
    if (sh->workers != NULL)
        sh->workers->prev = w;
    sh->workers = w;
    pthread_mutex_unlock(&sh->mu);
    *out = w;
    return 0;
}

void
wechat_close(struct wechat *w)
{
    struct wechat_shared *sh;

    if (w == NULL || w->closing)
        return;
    sh = w->sh;
    w->closing = 1;
    pthread_mutex_lock(&sh->mu);
    if (w->prev != NULL)
        w->prev->next = w->next;
    else if (sh->workers == w)
        sh->workers = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->waiting = 0;
    pthread_mutex_unlock(&sh->mu);
    if (w->token_job != NULL) {
        wechat_job_free(w->token_job);
        wechat_token_abandon(w);
    }
    while (w->jobs != NULL)
        wechat_job_fail(w->jobs, WECHAT_ECANCELED, 0);
    curl_uv_close(w->cu);
    uv_close((uv_handle_t *)&w->wake, NULL);
}

void
wechat_free(struct wechat *w)
{
    if (w == NULL)
        return;
    if (!w->closing)
        wechat_close(w);
    curl_uv_free(w->cu);
    free(w);
}

int
wechat_active(const struct wechat *w)
{
    return w->njobs;
}

void
wechat_cancel(struct wechat_job *j)
{
    struct wechat *w;
    int any = 0;

    if (j == NULL || j->kind == WECHAT_K_TOKEN)
        return;
    w = j->w;
    wechat_job_free(j);
    /* The loop need not stay up for a wake nobody waits for any more. */
    for (struct wechat_job *o = w->jobs; o != NULL; o = o->next)
        any |= o->state == WECHAT_S_WAIT_TOKEN;
    if (!any && !w->closing)
        wechat_wake_ref(w, 0);
}

/* A new caller's job on w, linked in; NULL when closing or out of memory. */
static struct wechat_job *
wechat_job_new(struct wechat *w, enum wechat_kind kind, wechat_cb cb, void *arg)
{
    struct wechat_job *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return NULL;
    j->w = w;
    j->kind = kind;
    j->cb = cb;
    j->arg = arg;
    j->next = w->jobs;
    if (w->jobs != NULL)
        w->jobs->prev = j;
    w->jobs = j;
    w->njobs++;
    return j;
}

/* Starts a job that needs the access token; 0 or a uv error (j freed). */
static int
wechat_job_go(struct wechat_job *j, struct wechat_job **jobp)
{
    if (wechat_token_take(j) && wechat_http_start(j) != 0) {
        wechat_job_free(j);
        return UV_ENOMEM;
    }
    if (jobp != NULL)
        *jobp = j;
    return 0;
}

/* 1 if s is 1..max bytes of printable ASCII without spaces. */
static int
wechat_printable(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

int
wechat_code2session(struct wechat *w, const char *js_code, wechat_cb cb, void *arg,
                    struct wechat_job **jobp)
{
    struct wechat_shared *sh = w->sh;
    struct wechat_job *j;
    char *appid = NULL, *secret = NULL, *code = NULL;
    size_t n;
    int rc = UV_ENOMEM;

    if (jobp != NULL)
        *jobp = NULL;
    if (w->closing)
        return UV_ECANCELED;
    if (js_code == NULL || !wechat_printable(js_code, 128))
        return UV_EINVAL;
    j = wechat_job_new(w, WECHAT_K_SESSION, cb, arg);
    if (j == NULL)
        return UV_ENOMEM;
    appid = curl_easy_escape(NULL, sh->appid, 0);
    secret = curl_easy_escape(NULL, sh->secret, 0);
    code = curl_easy_escape(NULL, js_code, 0);
    if (appid == NULL || secret == NULL || code == NULL)
        goto fail;
    n = strlen(appid) + strlen(secret) + strlen(code) + 96;
    j->query = malloc(n);
    if (j->query == NULL)
        goto fail;
    snprintf(j->query, n, "appid=%s&secret=%s&js_code=%s&grant_type=authorization_code",
             appid, secret, code);
    if (wechat_http_start(j) != 0)
        goto fail;
    if (jobp != NULL)
        *jobp = j;
    rc = 0;
    j = NULL;
fail:
    if (secret != NULL)
        OPENSSL_cleanse(secret, strlen(secret));
    if (code != NULL)
        OPENSSL_cleanse(code, strlen(code));
    curl_free(appid);
    curl_free(secret);
    curl_free(code);
    if (j != NULL)
        wechat_job_free(j);
    return rc;
}

/* WeChat's scene alphabet: [A-Za-z0-9] and !#$&'()*+,/:;=?@-._~ */
static int
wechat_scene_ok(const char *scene)
{
    size_t n = strlen(scene);

    if (n == 0 || n > WECHAT_SCENE_MAX)
        return 0;
    for (; *scene; scene++) {
        unsigned char c = (unsigned char)*scene;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (c != 0 && strchr("!#$&'()*+,/:;=?@-._~", c) != NULL)))
            return 0;
    }
    return 1;
}

int
wechat_wxacode(struct wechat *w, const char *scene, wechat_cb cb, void *arg,
               struct wechat_job **jobp)
{
    struct wechat_shared *sh = w->sh;
    struct wechat_job *j;
    cJSON *o;

    if (jobp != NULL)
        *jobp = NULL;
    if (w->closing)
        return UV_ECANCELED;
    if (scene == NULL || !wechat_scene_ok(scene))
        return UV_EINVAL;
    j = wechat_job_new(w, WECHAT_K_WXACODE, cb, arg);
    if (j == NULL)
        return UV_ENOMEM;
    o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "scene", scene) == NULL ||
        cJSON_AddStringToObject(o, "page", sh->page) == NULL ||
        cJSON_AddFalseToObject(o, "check_path") == NULL ||
        cJSON_AddStringToObject(o, "env_version", sh->env_version) == NULL ||
        cJSON_AddNumberToObject(o, "width", 280) == NULL ||
        (j->body = cJSON_PrintUnformatted(o)) == NULL) {
        cJSON_Delete(o);
        wechat_job_free(j);
        return UV_ENOMEM;
    }
    cJSON_Delete(o);
    return wechat_job_go(j, jobp);
}

/* Copies at most max UTF-8 characters of s (not cutting one) into out. */
static void
wechat_cut_utf8(const char *s, size_t max, char *out, size_t outlen)
{
    size_t i = 0, chars = 0;

    while (s[i] != '\0' && chars < max) {
        size_t len = 1;

        while (((unsigned char)s[i + len] & 0xC0) == 0x80)
            len++;
        if (i + len >= outlen)
            break;
        i += len;
        chars++;
    }
    memcpy(out, s, i);
    out[i] = '\0';
}

/*
 * The value of template field key for text, within WeChat's limits for
 * the field's type (the name's letters): thing 20 characters;
 * character_string and letter 32 of ASCII (others become '*'); number 32
 * digits; anything else 20 characters.
 */
static void
wechat_field_value(const char *key, const char *text, char *out, size_t outlen)
{
    if (strncmp(key, "character_string", 16) == 0 || strncmp(key, "letter", 6) == 0) {
        size_t i;

        for (i = 0; text[i] != '\0' && i < 32 && i + 1 < outlen; i++) {
            unsigned char c = (unsigned char)text[i];
            out[i] = c > ' ' && c < 0x7f ? (char)c : '*';
        }
        out[i] = '\0';
    } else if (strncmp(key, "number", 6) == 0) {
        size_t o = 0;

        for (size_t i = 0; text[i] != '\0' && o < 32 && o + 1 < outlen; i++)
            if (text[i] >= '0' && text[i] <= '9')
                out[o++] = text[i];
        out[o] = '\0';
    } else {
        wechat_cut_utf8(text, 20, out, outlen);
    }
}

int
wechat_subscribe_send(struct wechat *w, const char *openid, const char *page,
                      const char *mailbox, const char *addr, int64_t when, wechat_cb cb,
                      void *arg, struct wechat_job **jobp)
{
    struct wechat_shared *sh = w->sh;
    struct wechat_job *j;
    cJSON *o, *data;
    char texts[3][128], value[128];
    time_t t;
    struct tm tm;

    if (jobp != NULL)
        *jobp = NULL;
    if (w->closing)
        return UV_ECANCELED;
    if (sh->template_id[0] == '\0')
        return UV_ENOTSUP;
    if (openid == NULL || !wechat_printable(openid, WECHAT_OPENID_MAX - 1) || page == NULL ||
        !wechat_printable(page, 512) || mailbox == NULL || addr == NULL)
        return UV_EINVAL;
    /* The time as China shows it (UTC+8, no daylight saving): "2024年5月1日 15:01". */
    t = (time_t)when + 8 * 3600;
    if (gmtime_r(&t, &tm) == NULL)
        return UV_EINVAL;
    snprintf(texts[0], sizeof(texts[0]), "%s", mailbox);
    snprintf(texts[1], sizeof(texts[1]), "%s", addr);
    snprintf(texts[2], sizeof(texts[2]), "%d\xe5\xb9\xb4%d\xe6\x9c\x88%d\xe6\x97\xa5 %02d:%02d",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min);
    j = wechat_job_new(w, WECHAT_K_SUBSCRIBE, cb, arg);
    if (j == NULL)
        return UV_ENOMEM;
    o = cJSON_CreateObject();
    if (o == NULL || cJSON_AddStringToObject(o, "touser", openid) == NULL ||
        cJSON_AddStringToObject(o, "template_id", sh->template_id) == NULL ||
        cJSON_AddStringToObject(o, "page", page) == NULL ||
        cJSON_AddStringToObject(o, "miniprogram_state", sh->miniprogram_state) == NULL ||
        cJSON_AddStringToObject(o, "lang", "zh_CN") == NULL ||
        (data = cJSON_AddObjectToObject(o, "data")) == NULL)
        goto nomem;
    for (int i = 0; i < 3; i++) {
        cJSON *field;

        if (sh->keys[i][0] == '\0')
            continue;
        if (i == 2)    /* time: already in WeChat's format */
            util_strlcpy(value, texts[i], sizeof(value));
        else
            wechat_field_value(sh->keys[i], texts[i], value, sizeof(value));
        field = cJSON_AddObjectToObject(data, sh->keys[i]);
        if (field == NULL || cJSON_AddStringToObject(field, "value", value) == NULL)
            goto nomem;
    }
    j->body = cJSON_PrintUnformatted(o);
    if (j->body == NULL)
        goto nomem;
    cJSON_Delete(o);
    return wechat_job_go(j, jobp);
nomem:
    cJSON_Delete(o);
    wechat_job_free(j);
    return UV_ENOMEM;
}
