/*
 * test_wechat.c - web/wechat.c through its real libcurl code against
 * tests/wechat_standin.py (a local stand-in for WeChat's server API), run
 * as a subprocess for the whole group: code2session (ok, invalid code,
 * used code); one token for many calls; a token WeChat calls expired
 * (42001) or invalid (40001) -> one refresh and one retry; two workers on
 * two threads sharing one wechat_shared -> exactly one token fetch; rate
 * limit; HTTP 500 and bad JSON; WeChat down or hanging -> unavailable
 * within the timeout; the mini-program code's image; the subscribe message's
 * body; cancel and close; callbacks never inside the starting call; and no
 * secret or token in the logs.  Every loop test ends with
 * uv_loop_close(loop) == 0.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#include "conf/config.h"
#include "core/log.h"
#include "web/wechat.h"

#define APPID "wxstandin00000001"
#define SECRET "standin-secret"
#define TEMPLATE "tmpl-standin-1"

static char tmpdir[128];
static char logpath[256];
static pid_t standin_pid;
static int standin_port;

/* ---- the stand-in ---- */

static int
standin_start(void)
{
    const char *src = getenv("MFA_SOURCE_DIR");
    char script[1024], portfile[256], buf[32];
    FILE *f;

    if (src == NULL)
        return -1;
    snprintf(script, sizeof(script), "%s/tests/wechat_standin.py", src);
    snprintf(portfile, sizeof(portfile), "%s/port", tmpdir);
    standin_pid = fork();
    if (standin_pid < 0)
        return -1;
    if (standin_pid == 0) {
        int devnull = open("/dev/null", O_RDWR);

        dup2(devnull, 1);
        execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file", portfile,
              "--appid", APPID, "--secret", SECRET, "--template-id", TEMPLATE, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        f = fopen(portfile, "r");
        if (f != NULL) {
            if (fgets(buf, sizeof(buf), f) != NULL)
                standin_port = atoi(buf);
            fclose(f);
            if (standin_port > 0)
                return 0;
        }
        usleep(50 * 1000);
    }
    return -1;
}

static void
standin_stop(void)
{
    if (standin_pid > 0) {
        kill(standin_pid, SIGTERM);
        waitpid(standin_pid, NULL, 0);
        standin_pid = 0;
    }
}

struct membuf {
    char *p;
    size_t len;
};

static size_t
membuf_write(char *data, size_t size, size_t n, void *arg)
{
    struct membuf *b = arg;
    char *p = realloc(b->p, b->len + size * n + 1);

    if (p == NULL)
        return 0;
    b->p = p;
    memcpy(b->p + b->len, data, size * n);
    b->len += size * n;
    b->p[b->len] = '\0';
    return size * n;
}

/* A blocking call to the stand-in's control API (the test thread, not a loop). */
static cJSON *
control(const char *method, const char *path, const char *body)
{
    CURL *e = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    struct membuf b = {NULL, 0};
    char url[256];
    cJSON *j;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", standin_port, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, membuf_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body != NULL ? body : "{}");
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_cleanup(e);
    curl_slist_free_all(h);
    assert_non_null(b.p);
    j = cJSON_Parse(b.p);
    free(b.p);
    assert_non_null(j);
    return j;
}

static void
control_ok(const char *path, const char *body)
{
    cJSON_Delete(control("POST", path, body));
}

static void
mint_code(const char *openid, char *out, size_t outlen)
{
    char body[128];
    cJSON *j;

    snprintf(body, sizeof(body), "{\"openid\":\"%s\"}", openid);
    j = control("POST", "/_standin/code", body);
    snprintf(out, outlen, "%s", cJSON_GetObjectItem(j, "code")->valuestring);
    cJSON_Delete(j);
}

/* How many calls the stand-in saw to path (NULL: all). */
static int
count_calls(const char *path)
{
    cJSON *j = control("GET", "/_standin/calls", NULL), *c;
    int n = 0;

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "calls"))
        if (path == NULL || strcmp(cJSON_GetObjectItem(c, "path")->valuestring, path) == 0)
            n++;
    cJSON_Delete(j);
    return n;
}

/* ---- loop helpers ---- */

struct res {
    int calls;
    int status;
    long errcode;
    char openid[WECHAT_OPENID_MAX];
    char ctype[64];
    size_t body_len;
    unsigned char head[8];
    int in_start;          /* set around the starting call */
    int called_in_start;
};

static void
on_result(void *arg, const struct wechat_result *r)
{
    struct res *x = arg;

    x->calls++;
    if (x->in_start)
        x->called_in_start = 1;
    x->status = r->status;
    x->errcode = r->errcode;
    snprintf(x->openid, sizeof(x->openid), "%s", r->openid);
    snprintf(x->ctype, sizeof(x->ctype), "%s", r->content_type);
    x->body_len = r->body_len;
    if (r->body != NULL && r->body_len >= 8)
        memcpy(x->head, r->body, 8);
}

static void
on_never(void *arg, const struct wechat_result *r)
{
    (void)r;
    fail_msg("callback of a canceled job ran (%s)", (const char *)arg);
}

static void
run_until(uv_loop_t *loop, struct res *r, int n, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;
    int done;

    for (;;) {
        done = 1;
        for (int i = 0; i < n; i++)
            done &= r[i].calls > 0;
        if (done || uv_now(loop) >= end)
            break;
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
}

static void
tick_cb(uv_timer_t *t)
{
    (void)t;
}

static void
run_for(uv_loop_t *loop, int ms)
{
    uv_timer_t t;

    uv_timer_init(loop, &t);
    /* From now, not from the loop's last run: a timer already due would
     * fire before the poll, which then waits on the other handles alone. */
    uv_update_time(loop);
    uv_timer_start(&t, tick_cb, (uint64_t)ms, 0);
    while (uv_is_active((uv_handle_t *)&t))
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static struct config *
make_config(const char *base, long timeout_ms, const char *template_id)
{
    struct config *cfg = malloc(sizeof(*cfg));

    config_defaults(cfg);
    snprintf(cfg->wechat_appid, sizeof(cfg->wechat_appid), APPID);
    snprintf(cfg->wechat_secret, sizeof(cfg->wechat_secret), SECRET);
    if (base != NULL)
        snprintf(cfg->wechat_api_base, sizeof(cfg->wechat_api_base), "%s", base);
    else
        snprintf(cfg->wechat_api_base, sizeof(cfg->wechat_api_base), "http://127.0.0.1:%d",
                 standin_port);
    cfg->wechat_timeout_ms = (uint64_t)timeout_ms;
    if (template_id != NULL)
        snprintf(cfg->wechat_template_id, sizeof(cfg->wechat_template_id), "%s", template_id);
    return cfg;
}

/* A loop, a shared part and one client on the stand-in. */
struct fixture {
    uv_loop_t loop;
    struct config *cfg;
    struct wechat_shared *sh;
    struct wechat *w;
};

static void
fx_open(struct fixture *fx, const char *base, long timeout_ms)
{
    control_ok("/_standin/reset", NULL);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->cfg = make_config(base, timeout_ms, TEMPLATE);
    assert_int_equal(wechat_shared_new(fx->cfg, &fx->sh), 0);
    assert_non_null(fx->sh);
    assert_int_equal(wechat_new(&fx->loop, fx->sh, &fx->w), 0);
}

static void
fx_close(struct fixture *fx)
{
    wechat_close(fx->w);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    wechat_free(fx->w);
    wechat_shared_free(fx->sh);
    free(fx->cfg);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void
start_wxacode(struct fixture *fx, const char *scene, struct res *r)
{
    r->in_start = 1;
    assert_int_equal(wechat_wxacode(fx->w, scene, on_result, r, NULL), 0);
    r->in_start = 0;
}

/* ---- tests ---- */

static void
test_off_and_modes(void **state)
{
    struct config *cfg = make_config(NULL, 5000, NULL);
    struct wechat_shared *sh = (void *)1;

    cfg->wechat_appid[0] = '\0';
    assert_int_equal(wechat_shared_new(cfg, &sh), 0);
    assert_null(sh);
    snprintf(cfg->wechat_appid, sizeof(cfg->wechat_appid), APPID);
    assert_int_equal(wechat_shared_new(cfg, &sh), 0);
    assert_string_equal(wechat_qr_mode(sh), "wxacode");
    assert_int_equal(wechat_push_enabled(sh), 0);
    wechat_shared_free(sh);
    cfg->wechat_qr = CONFIG_WECHAT_QR_LINK;
    snprintf(cfg->wechat_template_id, sizeof(cfg->wechat_template_id), "t");
    assert_int_equal(wechat_shared_new(cfg, &sh), 0);
    assert_string_equal(wechat_qr_mode(sh), "link");
    assert_int_equal(wechat_push_enabled(sh), 1);
    wechat_shared_free(sh);
    free(cfg);
}

static void
test_code2session(void **state)
{
    struct fixture fx;
    struct res r[3];
    char code[64];

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    mint_code("oAlice01", code, sizeof(code));
    r[0].in_start = 1;
    assert_int_equal(wechat_code2session(fx.w, code, on_result, &r[0], NULL), 0);
    r[0].in_start = 0;
    assert_int_equal(r[0].calls, 0);
    assert_int_equal(wechat_active(fx.w), 1);
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].called_in_start, 0);
    assert_int_equal(r[0].status, 0);
    assert_string_equal(r[0].openid, "oAlice01");

    /* The same code again: used (40163); a code never minted: invalid (40029). */
    assert_int_equal(wechat_code2session(fx.w, code, on_result, &r[1], NULL), 0);
    assert_int_equal(wechat_code2session(fx.w, "nosuchcode", on_result, &r[2], NULL), 0);
    run_until(&fx.loop, &r[1], 2, 5000);
    assert_int_equal(r[1].status, WECHAT_EBADCODE);
    assert_int_equal(r[1].errcode, 40163);
    assert_string_equal(r[1].openid, "");
    assert_int_equal(r[2].status, WECHAT_EBADCODE);
    assert_int_equal(r[2].errcode, 40029);

    /* Bad arguments are refused at once, without a callback. */
    assert_int_equal(wechat_code2session(fx.w, "", on_result, &r[0], NULL), UV_EINVAL);
    assert_int_equal(wechat_code2session(fx.w, "a b", on_result, &r[0], NULL), UV_EINVAL);
    assert_int_equal(wechat_active(fx.w), 0);
    assert_int_equal(wechat_token_fetches(fx.sh), 0);    /* no token needed */
    fx_close(&fx);
}

static void
test_wrong_secret(void **state)
{
    struct fixture fx;
    struct res r[2];
    char code[64];

    memset(r, 0, sizeof(r));
    control_ok("/_standin/reset", NULL);
    assert_int_equal(uv_loop_init(&fx.loop), 0);
    fx.cfg = make_config(NULL, 5000, TEMPLATE);
    snprintf(fx.cfg->wechat_secret, sizeof(fx.cfg->wechat_secret), "wrong");
    assert_int_equal(wechat_shared_new(fx.cfg, &fx.sh), 0);
    assert_int_equal(wechat_new(&fx.loop, fx.sh, &fx.w), 0);
    mint_code("oBob", code, sizeof(code));
    assert_int_equal(wechat_code2session(fx.w, code, on_result, &r[0], NULL), 0);
    start_wxacode(&fx, "s1", &r[1]);
    run_until(&fx.loop, r, 2, 5000);
    assert_int_equal(r[0].status, WECHAT_EFAILED);
    assert_int_equal(r[0].errcode, 40125);
    /* The token fetch failed the same way; the waiting call gets it. */
    assert_int_equal(r[1].status, WECHAT_EFAILED);
    assert_int_equal(r[1].errcode, 40125);
    assert_int_equal(r[1].called_in_start, 0);
    fx_close(&fx);
}

static void
test_wxacode_one_token(void **state)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    struct fixture fx;
    struct res r[5];
    cJSON *calls, *c, *body;

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    for (int i = 0; i < 3; i++)
        start_wxacode(&fx, i == 0 ? "Scene0123456789abcdefABCDEF01234" : "s", &r[i]);
    assert_int_equal(wechat_active(fx.w), 3);
    run_until(&fx.loop, r, 3, 5000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].status, 0);
        assert_int_equal(r[i].called_in_start, 0);
        assert_string_equal(r[i].ctype, "image/png");
        assert_true(r[i].body_len > 100);
        assert_memory_equal(r[i].head, png_sig, 8);
    }
    /* Later calls reuse the token. */
    start_wxacode(&fx, "later1", &r[3]);
    start_wxacode(&fx, "later2", &r[4]);
    run_until(&fx.loop, &r[3], 2, 5000);
    assert_int_equal(r[3].status, 0);
    assert_int_equal(r[4].status, 0);
    assert_int_equal(count_calls("/cgi-bin/token"), 1);
    assert_int_equal(wechat_token_fetches(fx.sh), 1);
    assert_int_equal(count_calls("/wxa/getwxacodeunlimit"), 5);

    /* What was asked for: the scene, the page, check_path false, env_version, width. */
    calls = control("GET", "/_standin/calls", NULL);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(calls, "calls")) {
        if (strcmp(cJSON_GetObjectItem(c, "path")->valuestring, "/wxa/getwxacodeunlimit"))
            continue;
        body = cJSON_GetObjectItem(c, "body");
        assert_string_equal(cJSON_GetObjectItem(body, "page")->valuestring,
                            "pages/confirm/confirm");
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(body, "check_path")));
        assert_string_equal(cJSON_GetObjectItem(body, "env_version")->valuestring, "release");
        assert_int_equal(cJSON_GetObjectItem(body, "width")->valueint, 280);
        assert_non_null(cJSON_GetObjectItem(body, "scene")->valuestring);
    }
    cJSON_Delete(calls);

    /* Scenes WeChat would refuse are refused here. */
    assert_int_equal(wechat_wxacode(fx.w, "", on_result, &r[0], NULL), UV_EINVAL);
    assert_int_equal(wechat_wxacode(fx.w, "Scene0123456789abcdefABCDEF012345", on_result, &r[0],
                                    NULL), UV_EINVAL);
    assert_int_equal(wechat_wxacode(fx.w, "a%20b", on_result, &r[0], NULL), UV_EINVAL);
    fx_close(&fx);
}

/* The stand-in forgets or expires its tokens: one refresh, one retry. */
static void
expire_case(int invalid)
{
    struct fixture fx;
    struct res r[3];

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    start_wxacode(&fx, "first", &r[0]);
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].status, 0);
    control_ok("/_standin/expire_tokens", invalid ? "{\"invalid\":true}" : "{}");
    start_wxacode(&fx, "second", &r[1]);
    start_wxacode(&fx, "third", &r[2]);
    run_until(&fx.loop, &r[1], 2, 5000);
    assert_int_equal(r[1].status, 0);
    assert_int_equal(r[2].status, 0);
    /* Two calls hit the dead token, yet only one new token was fetched. */
    assert_int_equal(count_calls("/cgi-bin/token"), 2);
    assert_int_equal(count_calls("/wxa/getwxacodeunlimit"), 5);
    fx_close(&fx);
}

static void
test_token_expired(void **state)
{
    expire_case(0);
}

static void
test_token_invalid(void **state)
{
    expire_case(1);
}

/* A token still bad after the refresh: the call fails, no third round. */
static void
test_token_bad_twice(void **state)
{
    struct fixture fx;
    struct res r[1];

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    control_ok("/_standin/fail", "{\"mode\":\"badtoken\",\"count\":2,"
                                 "\"path\":\"/wxa/getwxacodeunlimit\"}");
    start_wxacode(&fx, "bad", &r[0]);
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].status, WECHAT_EFAILED);
    assert_int_equal(r[0].errcode, 40001);
    assert_int_equal(count_calls("/wxa/getwxacodeunlimit"), 2);
    assert_int_equal(count_calls("/cgi-bin/token"), 2);
    fx_close(&fx);
}

/* ---- two workers ---- */

struct worker {
    pthread_t thread;
    struct wechat_shared *sh;
    pthread_barrier_t *barrier;
    struct res r[3];
    int rc;
};

static void *
worker_main(void *arg)
{
    struct worker *wk = arg;
    uv_loop_t loop;
    struct wechat *w;
    char scene[16];

    uv_loop_init(&loop);
    wk->rc = wechat_new(&loop, wk->sh, &w);
    pthread_barrier_wait(wk->barrier);
    for (int i = 0; i < 3 && wk->rc == 0; i++) {
        snprintf(scene, sizeof(scene), "t%lu-%d", (unsigned long)(uintptr_t)wk & 0xffff, i);
        wk->rc = wechat_wxacode(w, scene, on_result, &wk->r[i], NULL);
    }
    {
        uint64_t end = uv_now(&loop) + 8000;
        while (uv_now(&loop) < end &&
               (wk->r[0].calls == 0 || wk->r[1].calls == 0 || wk->r[2].calls == 0)) {
            uv_run(&loop, UV_RUN_ONCE);
            uv_update_time(&loop);
        }
    }
    wechat_close(w);
    uv_run(&loop, UV_RUN_DEFAULT);
    wechat_free(w);
    if (uv_loop_close(&loop) != 0)
        wk->rc = -1000;
    return NULL;
}

static void
test_two_workers_one_fetch(void **state)
{
    struct config *cfg = make_config(NULL, 5000, NULL);
    struct wechat_shared *sh;
    pthread_barrier_t barrier;
    struct worker wk[2];

    /* Hold the token call up a little so that both workers ask during it. */
    control_ok("/_standin/reset", NULL);
    control_ok("/_standin/fail", "{\"mode\":\"slow\",\"count\":1,\"path\":\"/cgi-bin/token\"}");
    assert_int_equal(wechat_shared_new(cfg, &sh), 0);
    pthread_barrier_init(&barrier, NULL, 2);
    memset(wk, 0, sizeof(wk));
    for (int i = 0; i < 2; i++) {
        wk[i].sh = sh;
        wk[i].barrier = &barrier;
        assert_int_equal(pthread_create(&wk[i].thread, NULL, worker_main, &wk[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(wk[i].thread, NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(wk[i].rc, 0);
        for (int k = 0; k < 3; k++) {
            assert_int_equal(wk[i].r[k].calls, 1);
            assert_int_equal(wk[i].r[k].status, 0);
        }
    }
    assert_int_equal(count_calls("/cgi-bin/token"), 1);
    assert_int_equal(count_calls("/wxa/getwxacodeunlimit"), 6);
    assert_int_equal(wechat_token_fetches(sh), 1);
    pthread_barrier_destroy(&barrier);
    wechat_shared_free(sh);
    free(cfg);
}

/* Both workers wait while the token call hangs; the one fetching closes;
 * the other takes the fetch over. */
static void
test_fetcher_closes(void **state)
{
    struct config *cfg = make_config(NULL, 5000, NULL);
    struct wechat_shared *sh;
    uv_loop_t la, lb;
    struct wechat *a, *b;
    struct res ra, rb;

    control_ok("/_standin/reset", NULL);
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    assert_int_equal(wechat_shared_new(cfg, &sh), 0);
    uv_loop_init(&la);
    uv_loop_init(&lb);
    assert_int_equal(wechat_new(&la, sh, &a), 0);
    assert_int_equal(wechat_new(&lb, sh, &b), 0);
    control_ok("/_standin/fail", "{\"mode\":\"hang\",\"count\":1,\"path\":\"/cgi-bin/token\"}");
    assert_int_equal(wechat_wxacode(a, "fa", on_result, &ra, NULL), 0);   /* a fetches */
    assert_int_equal(wechat_wxacode(b, "fb", on_result, &rb, NULL), 0);   /* b waits */
    run_for(&la, 200);
    run_for(&lb, 50);
    assert_int_equal(count_calls("/cgi-bin/token"), 1);
    assert_int_equal(rb.calls, 0);
    wechat_close(a);
    assert_int_equal(ra.calls, 1);
    assert_int_equal(ra.status, WECHAT_ECANCELED);
    run_until(&lb, &rb, 1, 5000);
    assert_int_equal(rb.status, 0);
    assert_int_equal(count_calls("/cgi-bin/token"), 2);
    uv_run(&la, UV_RUN_DEFAULT);
    wechat_free(a);
    wechat_close(b);
    uv_run(&lb, UV_RUN_DEFAULT);
    wechat_free(b);
    assert_int_equal(uv_loop_close(&la), 0);
    assert_int_equal(uv_loop_close(&lb), 0);
    control_ok("/_standin/reset", NULL);    /* lets the hung handler go */
    wechat_shared_free(sh);
    free(cfg);
}

/* ---- failures ---- */

static void
test_rate_limit_and_errors(void **state)
{
    struct fixture fx;
    struct res r[4];
    char code[64];

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    control_ok("/_standin/fail", "{\"mode\":\"ratelimit\",\"count\":1,"
                                 "\"path\":\"/wxa/getwxacodeunlimit\"}");
    start_wxacode(&fx, "rl", &r[0]);
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].status, WECHAT_ERATELIMIT);
    assert_int_equal(r[0].errcode, 45011);

    control_ok("/_standin/fail", "{\"mode\":\"http500\",\"count\":1}");
    start_wxacode(&fx, "h5", &r[1]);
    run_until(&fx.loop, &r[1], 1, 5000);
    assert_int_equal(r[1].status, WECHAT_EUNAVAILABLE);

    control_ok("/_standin/fail", "{\"mode\":\"badjson\",\"count\":1}");
    mint_code("oCarol", code, sizeof(code));
    assert_int_equal(wechat_code2session(fx.w, code, on_result, &r[2], NULL), 0);
    run_until(&fx.loop, &r[2], 1, 5000);
    assert_int_equal(r[2].status, WECHAT_EUNAVAILABLE);

    control_ok("/_standin/fail", "{\"mode\":\"busy\",\"count\":1}");
    start_wxacode(&fx, "busy", &r[3]);
    run_until(&fx.loop, &r[3], 1, 5000);
    assert_int_equal(r[3].status, WECHAT_EUNAVAILABLE);
    assert_int_equal(r[3].errcode, -1);
    fx_close(&fx);
}

static void
test_unavailable(void **state)
{
    struct fixture fx;
    struct res r[2];
    char base[64];
    uint64_t t0;
    int fd, port;
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    /* Nothing listening: refused at once. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
    memset(r, 0, sizeof(r));
    fx_open(&fx, base, 1000);
    start_wxacode(&fx, "down", &r[0]);
    assert_int_equal(wechat_code2session(fx.w, "abc", on_result, &r[1], NULL), 0);
    run_until(&fx.loop, r, 2, 5000);
    assert_int_equal(r[0].status, WECHAT_EUNAVAILABLE);
    assert_int_equal(r[0].called_in_start, 0);
    assert_int_equal(r[1].status, WECHAT_EUNAVAILABLE);
    fx_close(&fx);

    /* WeChat accepts and never answers: unavailable after the timeout. */
    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 700);
    control_ok("/_standin/fail", "{\"mode\":\"hang\",\"count\":5}");
    t0 = uv_hrtime();
    start_wxacode(&fx, "hang", &r[0]);
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].status, WECHAT_EUNAVAILABLE);
    assert_true((uv_hrtime() - t0) / 1000000 >= 600);
    assert_true((uv_hrtime() - t0) / 1000000 < 2500);
    fx_close(&fx);
    control_ok("/_standin/reset", NULL);
}

/* ---- subscribe messages ---- */

static void
test_subscribe_send(void **state)
{
    struct fixture fx;
    struct res r[2];
    cJSON *m, *msg, *data;
    const char *mailbox = "a-rather-long-mailbox-name@example.com";

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    r[0].in_start = 1;
    assert_int_equal(wechat_subscribe_send(fx.w, "oDave01", "pages/confirm/confirm?scene=abc",
                                           mailbox, "203.0.113.7", 1714546860,
                                           on_result, &r[0], NULL), 0);
    r[0].in_start = 0;
    run_until(&fx.loop, r, 1, 5000);
    assert_int_equal(r[0].status, 0);
    assert_int_equal(r[0].called_in_start, 0);
    m = control("GET", "/_standin/messages", NULL);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "messages")), 1);
    msg = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "messages"), 0);
    assert_string_equal(cJSON_GetObjectItem(msg, "touser")->valuestring, "oDave01");
    assert_string_equal(cJSON_GetObjectItem(msg, "template_id")->valuestring, TEMPLATE);
    assert_string_equal(cJSON_GetObjectItem(msg, "page")->valuestring,
                        "pages/confirm/confirm?scene=abc");
    assert_string_equal(cJSON_GetObjectItem(msg, "miniprogram_state")->valuestring, "formal");
    assert_string_equal(cJSON_GetObjectItem(msg, "lang")->valuestring, "zh_CN");
    data = cJSON_GetObjectItem(msg, "data");
    /* character_string: at most 32 characters. */
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(data, "character_string1"), "value")->valuestring,
        "a-rather-long-mailbox-name@examp");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(data, "character_string2"), "value")->valuestring,
        "203.0.113.7");
    /* 1714546860 is 2024-05-01 07:01 UTC, 15:01 in China. */
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(data, "time3"), "value")->valuestring,
        "2024\xe5\xb9\xb4" "5\xe6\x9c\x88" "1\xe6\x97\xa5 15:01");
    /* Three fields only: never the number to match, or the message would
     * give the answer away to a user who approves without looking. */
    assert_int_equal(cJSON_GetArraySize(data), 3);
    cJSON_Delete(m);

    /* A user who refused the messages: denied (43101). */
    control_ok("/_standin/refuse", "{\"openid\":\"oEve\"}");
    assert_int_equal(wechat_subscribe_send(fx.w, "oEve", "pages/confirm/confirm?scene=x", "e@x",
                                           "::1", 0, on_result, &r[1], NULL), 0);
    run_until(&fx.loop, &r[1], 1, 5000);
    assert_int_equal(r[1].status, WECHAT_EDENIED);
    assert_int_equal(r[1].errcode, 43101);
    assert_int_equal(wechat_subscribe_send(fx.w, "bad openid", "p", "m", "a", 0, on_result,
                                           &r[1], NULL), UV_EINVAL);
    fx_close(&fx);

    /* Without a template_id there is no push. */
    {
        struct config *cfg = make_config(NULL, 5000, NULL);
        struct wechat_shared *sh;
        struct wechat *w;
        uv_loop_t loop;

        uv_loop_init(&loop);
        assert_int_equal(wechat_shared_new(cfg, &sh), 0);
        assert_int_equal(wechat_new(&loop, sh, &w), 0);
        assert_int_equal(wechat_subscribe_send(w, "oX", "p", "m", "a", 0, on_result, &r[0],
                                               NULL), UV_ENOTSUP);
        wechat_close(w);
        uv_run(&loop, UV_RUN_DEFAULT);
        wechat_free(w);
        wechat_shared_free(sh);
        free(cfg);
        assert_int_equal(uv_loop_close(&loop), 0);
    }
}

/* ---- cancel and close ---- */

static void
test_cancel(void **state)
{
    struct fixture fx;
    struct wechat_job *j1, *j2, *j3;
    struct res r;
    char code[64];

    memset(&r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    /* Two waiting for the token, one over HTTP; c2 then hangs over HTTP. */
    control_ok("/_standin/fail", "{\"mode\":\"hang\",\"count\":1,"
                                 "\"path\":\"/wxa/getwxacodeunlimit\"}");
    assert_int_equal(wechat_wxacode(fx.w, "c1", on_never, "c1", &j1), 0);
    assert_int_equal(wechat_wxacode(fx.w, "c2", on_never, "c2", &j2), 0);
    mint_code("oFrank", code, sizeof(code));
    assert_int_equal(wechat_code2session(fx.w, code, on_never, "c3", &j3), 0);
    assert_int_equal(wechat_active(fx.w), 3);
    wechat_cancel(j1);
    wechat_cancel(j3);
    assert_int_equal(wechat_active(fx.w), 1);
    for (int i = 0; i < 400 && count_calls("/wxa/getwxacodeunlimit") == 0; i++)
        run_for(&fx.loop, 5);
    assert_int_equal(count_calls("/wxa/getwxacodeunlimit"), 1);
    wechat_cancel(j2);
    assert_int_equal(wechat_active(fx.w), 0);
    run_for(&fx.loop, 100);
    control_ok("/_standin/reset", NULL);
    /* The client still works after cancels. */
    start_wxacode(&fx, "after", &r);
    run_until(&fx.loop, &r, 1, 5000);
    assert_int_equal(r.status, 0);
    fx_close(&fx);
}

static void
test_close_with_jobs(void **state)
{
    struct fixture fx;
    struct res r[3];

    memset(r, 0, sizeof(r));
    fx_open(&fx, NULL, 5000);
    control_ok("/_standin/fail", "{\"mode\":\"hang\",\"count\":3}");
    start_wxacode(&fx, "x1", &r[0]);
    start_wxacode(&fx, "x2", &r[1]);
    assert_int_equal(wechat_code2session(fx.w, "whatever", on_result, &r[2], NULL), 0);
    run_for(&fx.loop, 100);
    wechat_close(fx.w);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, WECHAT_ECANCELED);
    }
    assert_int_equal(wechat_wxacode(fx.w, "late", on_result, &r[0], NULL), UV_ECANCELED);
    assert_int_equal(wechat_code2session(fx.w, "late", on_result, &r[0], NULL), UV_ECANCELED);
    fx_close(&fx);    /* a second close is fine */
    control_ok("/_standin/reset", NULL);
}

/* Closing the client from inside a callback. */
static struct wechat *close_me;

static void
on_close_inside(void *arg, const struct wechat_result *r)
{
    (*(int *)arg)++;
    wechat_close(close_me);
}

static void
test_close_inside_callback(void **state)
{
    struct fixture fx;
    int n = 0;
    struct res other;

    memset(&other, 0, sizeof(other));
    fx_open(&fx, NULL, 5000);
    close_me = fx.w;
    assert_int_equal(wechat_code2session(fx.w, "nosuch", on_close_inside, &n, NULL), 0);
    control_ok("/_standin/fail", "{\"mode\":\"hang\",\"count\":1,\"path\":\"/cgi-bin/token\"}");
    start_wxacode(&fx, "other", &other);
    for (int i = 0; i < 500 && n == 0; i++)
        uv_run(&fx.loop, UV_RUN_ONCE);
    assert_int_equal(n, 1);
    assert_int_equal(other.calls, 1);
    assert_int_equal(other.status, WECHAT_ECANCELED);
    fx_close(&fx);
    control_ok("/_standin/reset", NULL);
}

/* Nothing logged holds the secret or a token. */
static void
test_logs_clean(void **state)
{
    FILE *f = fopen(logpath, "r");
    char line[2048];
    int lines = 0;

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        lines++;
        if (strstr(line, SECRET) != NULL || strstr(line, "access_token") != NULL ||
            strstr(line, "secret=") != NULL || strstr(line, "session_key") != NULL)
            fail_msg("log line leaks: %s", line);
    }
    fclose(f);
    assert_true(lines > 5);
}

static int
group_setup(void **state)
{
    int fd;

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/mfa-wechat-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(logpath, sizeof(logpath), "%s/log", tmpdir);
    fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0)
        return -1;
    log_init(LOG_DEBUG, fd);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return standin_start();
}

static int
group_teardown(void **state)
{
    char cmd[256];

    standin_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_and_modes),
        cmocka_unit_test(test_code2session),
        cmocka_unit_test(test_wrong_secret),
        cmocka_unit_test(test_wxacode_one_token),
        cmocka_unit_test(test_token_expired),
        cmocka_unit_test(test_token_invalid),
        cmocka_unit_test(test_token_bad_twice),
        cmocka_unit_test(test_two_workers_one_fetch),
        cmocka_unit_test(test_fetcher_closes),
        cmocka_unit_test(test_rate_limit_and_errors),
        cmocka_unit_test(test_unavailable),
        cmocka_unit_test(test_subscribe_send),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_jobs),
        cmocka_unit_test(test_close_inside_callback),
        cmocka_unit_test(test_logs_clean),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
