/*
 * metrics.c - see metrics.h.  Owns the process-wide counters and their
 * rendering in the Prometheus text format; owns no I/O (web/ serves the text).
 */
#include "core/metrics.h"

#include "core/strbuf.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define METRICS_HOW_COUNT 11   /* metrics_hows[] below */
#define METRICS_NBUCKETS 12    /* upper bounds below, the last one +Inf */

static const char *const metrics_proto_names[METRICS_PROTO_COUNT] = {
    "imap", "pop3", "smtp", "http", "https", "web",
};
static const char *const metrics_result_names[METRICS_RESULT_COUNT] = {
    "ok", "refused", "unavailable",
};
/*
 * How a login was decided, and where each label applies: the mail
 * protocols' decisions (auth.c), or the web's sign-ins (how the person got
 * in: the password alone, a trusted browser, or the second factor used).
 * A label outside its protocol's set counts as "other", so every row that
 * is rendered adds up.
 */
#define HOW_MAIL 1
#define HOW_WEB 2
#define HOW_OTHER (METRICS_HOW_COUNT - 1)
static const struct {
    const char *name;
    int where;
} metrics_hows[METRICS_HOW_COUNT] = {
    {"apppw", HOW_MAIL},           {"passthrough", HOW_MAIL}, {"refused", HOW_MAIL | HOW_WEB},
    {"tempfail", HOW_MAIL},        {"password", HOW_WEB},     {"device", HOW_WEB},
    {"totp", HOW_WEB},             {"email", HOW_WEB},        {"recovery", HOW_WEB},
    {"wechat", HOW_WEB},           {"other", HOW_MAIL | HOW_WEB},
};
/* Upper bounds in milliseconds (le in seconds when rendered); 0 = +Inf. */
static const uint64_t metrics_bucket_ms[METRICS_NBUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 0,
};
static const char *const metrics_bucket_le[METRICS_NBUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
};

/* The counters (see the header for why they are globals). */
static atomic_uint_fast64_t metrics_conns_total[METRICS_PROTO_COUNT];
static atomic_int_fast64_t metrics_conns_open[METRICS_PROTO_COUNT];
static atomic_uint_fast64_t metrics_logins[METRICS_PROTO_COUNT][METRICS_RESULT_COUNT]
                                          [METRICS_HOW_COUNT];
/* Non-cumulative per bucket; rendering accumulates. */
static atomic_uint_fast64_t metrics_auth_bucket[METRICS_PROTO_COUNT][METRICS_NBUCKETS];
static atomic_uint_fast64_t metrics_auth_sum_ms[METRICS_PROTO_COUNT];
static atomic_uint_fast64_t metrics_backend_errors[METRICS_PROTO_COUNT];
static atomic_uint_fast64_t metrics_http[6];    /* by status / 100; 0 = other */
static atomic_uint_fast64_t metrics_challenges[2];

static int
metrics_proto_ok(int proto)
{
    return proto >= 0 && proto < METRICS_PROTO_COUNT;
}

void
metrics_conn_open(int proto)
{
    if (!metrics_proto_ok(proto))
        return;
    atomic_fetch_add_explicit(&metrics_conns_total[proto], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_conns_open[proto], 1, memory_order_relaxed);
}

void
metrics_conn_close(int proto)
{
    if (!metrics_proto_ok(proto))
        return;
    atomic_fetch_sub_explicit(&metrics_conns_open[proto], 1, memory_order_relaxed);
}

/* Which labels a protocol's logins use (0: it has no logins). */
static int
metrics_how_where(int proto)
{
    if (proto == METRICS_WEB)
        return HOW_WEB;
    if (proto == METRICS_IMAP || proto == METRICS_POP3 || proto == METRICS_SMTP)
        return HOW_MAIL;
    return 0;
}

static int
metrics_how_index(int proto, const char *how)
{
    int where = metrics_how_where(proto);

    for (int i = 0; how != NULL && i < HOW_OTHER; i++)
        if ((metrics_hows[i].where & where) && strcmp(how, metrics_hows[i].name) == 0)
            return i;
    return HOW_OTHER;
}

void
metrics_login(int proto, int result, const char *how, uint64_t ms)
{
    int b;

    if (!metrics_proto_ok(proto) || result < 0 || result >= METRICS_RESULT_COUNT)
        return;
    atomic_fetch_add_explicit(&metrics_logins[proto][result][metrics_how_index(proto, how)], 1,
                              memory_order_relaxed);
    for (b = 0; b < METRICS_NBUCKETS - 1; b++)
        if (ms <= metrics_bucket_ms[b])
            break;
    atomic_fetch_add_explicit(&metrics_auth_bucket[proto][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&metrics_auth_sum_ms[proto], ms, memory_order_relaxed);
}

void
metrics_backend_error(int proto)
{
    if (metrics_proto_ok(proto))
        atomic_fetch_add_explicit(&metrics_backend_errors[proto], 1, memory_order_relaxed);
}

void
metrics_http_response(int status)
{
    int cls = status / 100;

    if (cls < 1 || cls > 5)
        cls = 0;
    atomic_fetch_add_explicit(&metrics_http[cls], 1, memory_order_relaxed);
}

void
metrics_challenge(int ok)
{
    atomic_fetch_add_explicit(&metrics_challenges[ok ? 1 : 0], 1, memory_order_relaxed);
}

void
metrics_reset(void)
{
    for (int p = 0; p < METRICS_PROTO_COUNT; p++) {
        atomic_store(&metrics_conns_total[p], 0);
        atomic_store(&metrics_conns_open[p], 0);
        atomic_store(&metrics_auth_sum_ms[p], 0);
        atomic_store(&metrics_backend_errors[p], 0);
        for (int b = 0; b < METRICS_NBUCKETS; b++)
            atomic_store(&metrics_auth_bucket[p][b], 0);
        for (int r = 0; r < METRICS_RESULT_COUNT; r++)
            for (int h = 0; h < METRICS_HOW_COUNT; h++)
                atomic_store(&metrics_logins[p][r][h], 0);
    }
    for (size_t i = 0; i < ARRAY_SIZE(metrics_http); i++)
        atomic_store(&metrics_http[i], 0);
    atomic_store(&metrics_challenges[0], 0);
    atomic_store(&metrics_challenges[1], 0);
}

static void
metrics_head(struct strbuf *b, const char *name, const char *type, const char *help)
{
    strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t
metrics_get(atomic_uint_fast64_t *v)
{
    return (uint64_t)atomic_load_explicit(v, memory_order_relaxed);
}

int
metrics_render(char **out, size_t *len)
{
    static const char *const http_classes[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    struct strbuf b;

    *out = NULL;
    *len = 0;
    if (strbuf_init(&b, 8192) != 0)
        return -1;

    metrics_head(&b, "mfagate_connections_total", "counter", "Connections accepted.");
    for (int p = 0; p <= METRICS_HTTPS; p++)
        strbuf_printf(&b, "mfagate_connections_total{protocol=\"%s\"} %llu\n",
                      metrics_proto_names[p],
                      (unsigned long long)metrics_get(&metrics_conns_total[p]));
    metrics_head(&b, "mfagate_connections_open", "gauge", "Connections open now.");
    for (int p = 0; p <= METRICS_HTTPS; p++)
        strbuf_printf(&b, "mfagate_connections_open{protocol=\"%s\"} %lld\n",
                      metrics_proto_names[p],
                      (long long)atomic_load_explicit(&metrics_conns_open[p],
                                                       memory_order_relaxed));

    metrics_head(&b, "mfagate_logins_total", "counter",
                 "Logins by protocol, result and how they were decided.");
    for (int p = 0; p < METRICS_PROTO_COUNT; p++) {
        if (p == METRICS_HTTP || p == METRICS_HTTPS)
            continue;
        for (int r = 0; r < METRICS_RESULT_COUNT; r++)
            for (int h = 0; h < METRICS_HOW_COUNT; h++) {
                if (!(metrics_hows[h].where & metrics_how_where(p)))
                    continue;
                strbuf_printf(&b,
                              "mfagate_logins_total{protocol=\"%s\",result=\"%s\",how=\"%s\"} "
                              "%llu\n",
                              metrics_proto_names[p], metrics_result_names[r],
                              metrics_hows[h].name,
                              (unsigned long long)metrics_get(&metrics_logins[p][r][h]));
            }
    }

    metrics_head(&b, "mfagate_auth_seconds", "histogram",
                 "Time from credentials received to the login decision.");
    for (int p = 0; p < METRICS_PROTO_COUNT; p++) {
        uint64_t cum = 0;

        if (p == METRICS_HTTP || p == METRICS_HTTPS)
            continue;
        for (int k = 0; k < METRICS_NBUCKETS; k++) {
            cum += metrics_get(&metrics_auth_bucket[p][k]);
            strbuf_printf(&b, "mfagate_auth_seconds_bucket{protocol=\"%s\",le=\"%s\"} %llu\n",
                          metrics_proto_names[p], metrics_bucket_le[k],
                          (unsigned long long)cum);
        }
        uint64_t sum = metrics_get(&metrics_auth_sum_ms[p]);

        strbuf_printf(&b, "mfagate_auth_seconds_sum{protocol=\"%s\"} %llu.%03llu\n",
                      metrics_proto_names[p], (unsigned long long)(sum / 1000),
                      (unsigned long long)(sum % 1000));
        strbuf_printf(&b, "mfagate_auth_seconds_count{protocol=\"%s\"} %llu\n",
                      metrics_proto_names[p], (unsigned long long)cum);
    }

    metrics_head(&b, "mfagate_backend_errors_total", "counter",
                 "Backend connections or logins that failed (not refusals).");
    for (int p = 0; p <= METRICS_SMTP; p++)
        strbuf_printf(&b, "mfagate_backend_errors_total{protocol=\"%s\"} %llu\n",
                      metrics_proto_names[p],
                      (unsigned long long)metrics_get(&metrics_backend_errors[p]));

    metrics_head(&b, "mfagate_http_requests_total", "counter",
                 "HTTP responses sent, by status class.");
    for (int c = 1; c <= 5; c++)
        strbuf_printf(&b, "mfagate_http_requests_total{code=\"%s\"} %llu\n", http_classes[c],
                      (unsigned long long)metrics_get(&metrics_http[c]));

    metrics_head(&b, "mfagate_challenges_total", "counter",
                 "Second-factor challenges answered, by result.");
    strbuf_printf(&b, "mfagate_challenges_total{result=\"ok\"} %llu\n",
                  (unsigned long long)metrics_get(&metrics_challenges[1]));
    strbuf_printf(&b, "mfagate_challenges_total{result=\"failed\"} %llu\n",
                  (unsigned long long)metrics_get(&metrics_challenges[0]));

    *out = strbuf_take(&b, len);
    return *out != NULL ? 0 : -1;
}
