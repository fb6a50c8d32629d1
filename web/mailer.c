/*
 * mailer.c - SMTP with libcurl's multi interface on a uv loop (mailer.h).
 *
 * The loop glue (a uv_poll per socket, one uv_timer,
 * curl_multi_socket_action, curl_multi_info_read) is web/curl_uv.c's, shared
 * with web/wechat.c; this file builds the messages and owns the transfers.
 */
#include "web/mailer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "web/curl_uv.h"

struct mailer {
    uv_loop_t *loop;
    struct curl_uv *cu;           /* the multi handle on the loop */
    int closing;
    long timeout_ms;
    char relay[512];
    char from[MAILER_ADDR_MAX + 1];
    struct mailer_job *jobs;
    int njobs;
};

struct mailer_job {
    struct mailer *m;
    struct curl_uv_xfer xfer;     /* xfer.easy: the transfer, NULL before it starts */
    struct curl_slist *rcpt;
    char *msg;
    size_t len, off;
    mailer_cb cb;
    void *arg;
    char masked[MAILER_ADDR_MAX + 8];
    struct mailer_job *prev, *next;
};

/* --- addresses and the message ------------------------------------------ */

int
mailer_addr_ok(const char *addr)
{
    size_t n = strlen(addr), at = 0, ats = 0;

    if (n < 3 || n > MAILER_ADDR_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c <= ' ' || c == 0x7f || strchr("<>(),;\"\\[]", c) != NULL)
            return -1;
        if (c == '@') {
            ats++;
            at = i;
        }
    }
    if (ats != 1 || at == 0 || at + 1 == n)
        return -1;
    return 0;
}

void
mailer_mask(const char *addr, char *out, size_t outlen)
{
    const char *at = strchr(addr, '@');
    size_t first = 1;

    if (outlen == 0)
        return;
    if (at == NULL || at == addr) {
        snprintf(out, outlen, "***");
        return;
    }
    /* Keep the whole first UTF-8 character. */
    while (first < (size_t)(at - addr) && ((unsigned char)addr[first] & 0xC0) == 0x80)
        first++;
    snprintf(out, outlen, "%.*s***%s", (int)first, addr, at);
}

static int
mailer_is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

/* Appends to a growing buffer; -1 on no memory. */
struct mailer_buf {
    char *p;
    size_t len, cap;
};

static int
mailer_put(struct mailer_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int
mailer_puts(struct mailer_buf *b, const char *s)
{
    return mailer_put(b, s, strlen(s));
}

/*
 * The subject as RFC 2047 encoded words ("=?UTF-8?B?...?=") if not ASCII:
 * at most 45 bytes of text per word (72 characters with the wrapping, under
 * the 75 allowed), cut between UTF-8 characters, one per folded line.
 */
static int
mailer_put_subject(struct mailer_buf *b, const char *subject)
{
    const unsigned char *p = (const unsigned char *)subject;
    size_t left = strlen(subject);
    unsigned char enc[64];
    int first = 1;

    if (mailer_is_ascii(subject))
        return mailer_puts(b, subject);
    if (left > 600)
        left = 600;
    while (left > 0) {
        size_t n = left > 45 ? 45 : left;

        while (n < left && n > 1 && (p[n] & 0xC0) == 0x80)
            n--;
        EVP_EncodeBlock(enc, p, (int)n);
        if ((!first && mailer_puts(b, "\r\n ")) || mailer_puts(b, "=?UTF-8?B?") ||
            mailer_puts(b, (const char *)enc) || mailer_puts(b, "?="))
            return -1;
        first = 0;
        p += n;
        left -= n;
    }
    return 0;
}

char *
mailer_format(const char *from, const char *to, const char *subject, const char *body,
              size_t *len)
{
    struct mailer_buf b = {NULL, 0, 0};
    unsigned char rnd[12];
    char line[512], date[64];
    const char *domain = strchr(from, '@');
    time_t now = time(NULL);
    struct tm tm;
    int bad = 0;

    if (mailer_addr_ok(from) != 0 || mailer_addr_ok(to) != 0)
        return NULL;
    for (const char *p = subject; *p; p++)
        if (*p == '\r' || *p == '\n')
            return NULL;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    snprintf(line, sizeof(line), "From: <%s>\r\nTo: <%s>\r\nSubject: ", from, to);
    bad |= mailer_puts(&b, line);
    bad |= mailer_put_subject(&b, subject);
    snprintf(line, sizeof(line),
             "\r\nDate: %s\r\nMessage-ID: <%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x.%lld%s>"
             "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8"
             "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
             date, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8],
             rnd[9], rnd[10], rnd[11], (long long)now, domain);
    bad |= mailer_puts(&b, line);
    /* The body with CRLF line ends (bare LF or CR become CRLF). */
    for (const char *p = body; *p && !bad; p++) {
        if (*p == '\r') {
            if (p[1] == '\n')
                p++;
            bad |= mailer_put(&b, "\r\n", 2);
        } else if (*p == '\n') {
            bad |= mailer_put(&b, "\r\n", 2);
        } else {
            bad |= mailer_put(&b, p, 1);
        }
    }
    if (!bad && (b.len < 2 || memcmp(b.p + b.len - 2, "\r\n", 2) != 0))
        bad |= mailer_put(&b, "\r\n", 2);
    if (bad) {
        if (b.p != NULL)
            OPENSSL_cleanse(b.p, b.len);
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* --- jobs --------------------------------------------------------------- */

/*
 * libcurl says goodbye to an SMTP server with QUIT and waits for the answer
 * *blocking* (smtp_disconnect), for up to the transfer's timeout, whenever
 * it closes a connection it does not consider dead: on removing an
 * unfinished transfer, on evicting a cached connection, and in
 * curl_multi_cleanup.  So the curl_uv under the mailer shuts a transfer's
 * sockets down when it ends (CURL_UV_SHUTDOWN_ON_END): that QUIT then fails
 * at once, and the connection is closed without a wait.  (The message has
 * been accepted or given up on by then; each message gets its own
 * connection.)
 */
static void
mailer_job_free(struct mailer_job *j)
{
    struct mailer *m = j->m;

    if (j->prev != NULL)
        j->prev->next = j->next;
    else if (m->jobs == j)
        m->jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    m->njobs--;
    if (j->xfer.easy != NULL) {
        curl_uv_remove(&j->xfer);
        curl_easy_cleanup(j->xfer.easy);
    }
    curl_slist_free_all(j->rcpt);
    if (j->msg != NULL) {
        OPENSSL_cleanse(j->msg, j->len);   /* it holds a code */
        free(j->msg);
    }
    free(j);
}

static size_t
mailer_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct mailer_job *j = arg;
    size_t n = size * nitems, left = j->len - j->off;

    if (n > left)
        n = left;
    memcpy(buf, j->msg + j->off, n);
    j->off += n;
    return n;
}

/* A transfer ended (curl_uv's done callback): log it, free it, tell the caller. */
static void
mailer_done(struct curl_uv_xfer *x, CURLcode result)
{
    struct mailer_job *j = (struct mailer_job *)((char *)x - offsetof(struct mailer_job, xfer));
    mailer_cb cb = j->cb;
    void *arg = j->arg;
    long code = 0;
    int status;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (result == CURLE_OK) {
        status = 0;
        log_info("mail event=sent to=%s", j->masked);
    } else {
        status = result == CURLE_OPERATION_TIMEDOUT ? MAILER_ETIMEDOUT : MAILER_EFAILED;
        log_warn("mail event=send_failed to=%s error=\"%s\" smtp=%ld", j->masked,
                 curl_easy_strerror(result), code);
    }
    mailer_job_free(j);
    cb(arg, status);
}

/* --- the mailer --------------------------------------------------------- */

int
mailer_new(uv_loop_t *loop, const char *relay, const char *from, long timeout_ms,
           struct mailer **out)
{
    struct mailer *m;
    int rc;

    *out = NULL;
    if ((strncmp(relay, "smtp://", 7) != 0 && strncmp(relay, "smtps://", 8) != 0) ||
        strlen(relay) >= sizeof(m->relay) || mailer_addr_ok(from) != 0)
        return UV_EINVAL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return UV_ENOMEM;
    m->loop = loop;
    m->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    snprintf(m->relay, sizeof(m->relay), "%s", relay);
    snprintf(m->from, sizeof(m->from), "%s", from);
    rc = curl_uv_new(loop, mailer_done, CURL_UV_SHUTDOWN_ON_END, &m->cu);
    if (rc != 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int
mailer_send(struct mailer *m, const char *to, const char *subject, const char *body,
            mailer_cb cb, void *arg, struct mailer_job **jobp)
{
    struct mailer_job *j;
    char path[MAILER_ADDR_MAX + 3];
    CURL *e;

    if (jobp != NULL)
        *jobp = NULL;
    if (m->closing)
        return UV_ECANCELED;
    if (mailer_addr_ok(to) != 0)
        return UV_EINVAL;
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return UV_ENOMEM;
    j->m = m;
    j->cb = cb;
    j->arg = arg;
    mailer_mask(to, j->masked, sizeof(j->masked));
    j->next = m->jobs;
    if (m->jobs != NULL)
        m->jobs->prev = j;
    m->jobs = j;
    m->njobs++;
    j->msg = mailer_format(m->from, to, subject, body, &j->len);
    snprintf(path, sizeof(path), "<%s>", to);
    j->rcpt = curl_slist_append(NULL, path);
    e = curl_easy_init();
    if (j->msg == NULL || j->rcpt == NULL || e == NULL) {
        if (e != NULL)
            curl_easy_cleanup(e);
        mailer_job_free(j);
        return UV_ENOMEM;
    }
    snprintf(path, sizeof(path), "<%s>", m->from);
    if (curl_easy_setopt(e, CURLOPT_URL, m->relay) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps") != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_MAIL_FROM, path) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_MAIL_RCPT, j->rcpt) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_READFUNCTION, mailer_read) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_READDATA, j) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->len) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
        /* A cancel while a name is resolved must not wait for the
         * resolver thread. */
        curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, m->timeout_ms) != CURLE_OK ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, m->timeout_ms) != CURLE_OK) {
        curl_easy_cleanup(e);
        mailer_job_free(j);
        return UV_EINVAL;
    }
    if (curl_uv_add(m->cu, &j->xfer, e) != 0) {
        curl_easy_cleanup(e);
        mailer_job_free(j);
        return UV_ENOMEM;
    }
    if (jobp != NULL)
        *jobp = j;
    return 0;
}

void
mailer_cancel(struct mailer_job *j)
{
    if (j != NULL)
        mailer_job_free(j);
}

int
mailer_active(const struct mailer *m)
{
    return m->njobs;
}

void
mailer_close(struct mailer *m)
{
    if (m == NULL || m->closing)
        return;
    m->closing = 1;
    while (m->jobs != NULL) {
        struct mailer_job *j = m->jobs;
        mailer_cb cb = j->cb;
        void *arg = j->arg;

        /* Removing the handle makes curl close its sockets (CURL_POLL_REMOVE). */
        mailer_job_free(j);
        cb(arg, MAILER_ECANCELED);
    }
    curl_uv_close(m->cu);
}

void
mailer_free(struct mailer *m)
{
    if (m == NULL)
        return;
    if (!m->closing)
        mailer_close(m);
    curl_uv_free(m->cu);
    free(m);
}
