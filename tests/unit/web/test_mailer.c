/*
 * test_mailer.c - web/mailer.c on a real uv loop against a tiny SMTP server
 * in a thread of this test (blocking sockets): a message delivered with its
 * headers and CRLF lines; a relay that is down, one that refuses the
 * recipient, one that never answers (timeout); cancelling a transfer;
 * closing the mailer with a transfer under way.  Each loop test ends with
 * uv_loop_close(loop) == 0.  Then the address checks, masking and format.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "web/mailer.h"

/* ---- the test SMTP server ---- */

enum srv_mode { SRV_OK, SRV_REFUSE_RCPT, SRV_SILENT };

struct srv {
    int lfd, port;
    enum srv_mode mode;
    pthread_t thread;
    char data[8192];            /* the DATA received (dot-unstuffed not needed) */
    size_t data_len;
    char rcpt[256], from[256];
    volatile int stop;
};

static int
srv_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    char c;

    while (n + 1 < len) {
        ssize_t r = recv(fd, &c, 1, 0);
        if (r <= 0)
            return -1;
        buf[n++] = c;
        if (c == '\n')
            break;
    }
    buf[n] = '\0';
    return (int)n;
}

static void
srv_say(int fd, const char *s)
{
    ssize_t r = send(fd, s, strlen(s), MSG_NOSIGNAL);
    (void)r;
}

static void *
srv_main(void *arg)
{
    struct srv *s = arg;
    char line[1024];
    int fd = accept(s->lfd, NULL, NULL);

    if (fd < 0)
        return NULL;
    if (s->mode == SRV_SILENT) {
        /* Accept and say nothing until the client leaves. */
        while (recv(fd, line, sizeof(line), 0) > 0)
            ;
        close(fd);
        return NULL;
    }
    srv_say(fd, "220 test ESMTP\r\n");
    while (srv_line(fd, line, sizeof(line)) > 0) {
        if (strncasecmp(line, "EHLO", 4) == 0) {
            srv_say(fd, "250-test\r\n250 8BITMIME\r\n");
        } else if (strncasecmp(line, "HELO", 4) == 0) {
            srv_say(fd, "250 test\r\n");
        } else if (strncasecmp(line, "MAIL FROM:", 10) == 0) {
            snprintf(s->from, sizeof(s->from), "%.*s", (int)strcspn(line + 10, "\r\n"),
                     line + 10);
            srv_say(fd, "250 ok\r\n");
        } else if (strncasecmp(line, "RCPT TO:", 8) == 0) {
            snprintf(s->rcpt, sizeof(s->rcpt), "%.*s", (int)strcspn(line + 8, "\r\n"),
                     line + 8);
            srv_say(fd, s->mode == SRV_REFUSE_RCPT ? "550 5.1.1 no such user\r\n" : "250 ok\r\n");
        } else if (strncasecmp(line, "DATA", 4) == 0) {
            srv_say(fd, "354 go\r\n");
            while (srv_line(fd, line, sizeof(line)) > 0 && strcmp(line, ".\r\n") != 0) {
                size_t n = strlen(line);
                if (s->data_len + n < sizeof(s->data)) {
                    memcpy(s->data + s->data_len, line, n);
                    s->data_len += n;
                }
            }
            s->data[s->data_len] = '\0';
            srv_say(fd, "250 queued\r\n");
        } else if (strncasecmp(line, "QUIT", 4) == 0) {
            srv_say(fd, "221 bye\r\n");
            break;
        } else {
            srv_say(fd, "250 ok\r\n");
        }
    }
    close(fd);
    return NULL;
}

static void
srv_start(struct srv *s, enum srv_mode mode)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);

    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 4), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &len), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void
srv_join(struct srv *s)
{
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->lfd);
}

/* A port with nothing listening. */
static int
dead_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- loop helpers ---- */

struct result {
    int calls;
    int status;
};

static void
on_done(void *arg, int status)
{
    struct result *r = arg;

    r->calls++;
    r->status = status;
}

static void
run_until(uv_loop_t *loop, struct result *r, int ms)
{
    uint64_t end = uv_now(loop) + (uint64_t)ms;

    while (r->calls == 0 && uv_now(loop) < end) {
        uv_run(loop, UV_RUN_ONCE);
        uv_update_time(loop);
    }
}

/* A short loop run: a timer keeps uv_run from returning at once. */
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
    uv_timer_start(&t, tick_cb, (uint64_t)ms, 0);
    uv_run(loop, UV_RUN_ONCE);
    while (uv_is_active((uv_handle_t *)&t))
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);    /* the close callback; curl's handles stay */
}

static void
finish(uv_loop_t *loop, struct mailer *m)
{
    mailer_close(m);
    uv_run(loop, UV_RUN_DEFAULT);
    mailer_free(m);
    assert_int_equal(uv_loop_close(loop), 0);
}

static const char *SUBJECT = "邮箱验证码 / Verification code";
static const char *BODY = "您的验证码是 123456（10 分钟内有效）。\n"
                          "Your verification code is 123456 (valid 10 minutes).\n"
                          ".a line that starts with a dot\n";

/* ---- tests ---- */

static void
test_send_ok(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    struct srv s;
    struct result r = {0, 99};
    char url[64];

    srv_start(&s, SRV_OK);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 5000, &m), 0);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, NULL), 0);
    assert_int_equal(r.calls, 0);    /* never from inside mailer_send */
    assert_int_equal(mailer_active(m), 1);
    run_until(&loop, &r, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 0);
    assert_int_equal(mailer_active(m), 0);
    finish(&loop, m);
    srv_join(&s);
    assert_string_equal(s.from, "<mfagate@example.org>");
    assert_string_equal(s.rcpt, "<jane@example.com>");
    assert_non_null(strstr(s.data, "From: <mfagate@example.org>\r\n"));
    assert_non_null(strstr(s.data, "To: <jane@example.com>\r\n"));
    assert_non_null(strstr(s.data, "Subject: =?UTF-8?B?"));
    assert_non_null(strstr(s.data, "\r\nDate: "));
    assert_non_null(strstr(s.data, "\r\nMessage-ID: <"));
    assert_non_null(strstr(s.data, "@example.org>\r\n"));
    assert_non_null(strstr(s.data, "\r\nMIME-Version: 1.0\r\n"));
    assert_non_null(strstr(s.data, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(s.data, "\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"));
    assert_non_null(strstr(s.data, "Your verification code is 123456 (valid 10 minutes).\r\n"));
    assert_non_null(strstr(s.data, "您的验证码是 123456"));
    /* Dot-stuffed on the wire (this server does not unstuff). */
    assert_non_null(strstr(s.data, "\r\n..a line that starts"));
    /* Every LF is part of a CRLF. */
    for (size_t i = 0; i < s.data_len; i++)
        if (s.data[i] == '\n')
            assert_true(i > 0 && s.data[i - 1] == '\r');
}

static void
test_relay_down(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    struct result r = {0, 99};
    char url[64];

    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", dead_port());
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 5000, &m), 0);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, NULL), 0);
    run_until(&loop, &r, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, MAILER_EFAILED);
    finish(&loop, m);
}

static void
test_recipient_refused(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    struct srv s;
    struct result r = {0, 99};
    char url[64];

    srv_start(&s, SRV_REFUSE_RCPT);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 5000, &m), 0);
    assert_int_equal(mailer_send(m, "nobody@example.com", SUBJECT, BODY, on_done, &r, NULL), 0);
    run_until(&loop, &r, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, MAILER_EFAILED);
    finish(&loop, m);
    srv_join(&s);
    assert_int_equal(s.data_len, 0);
}

static void
test_timeout(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    struct srv s;
    struct result r = {0, 99};
    char url[64];

    srv_start(&s, SRV_SILENT);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 300, &m), 0);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, NULL), 0);
    run_until(&loop, &r, 5000);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, MAILER_ETIMEDOUT);
    finish(&loop, m);
    srv_join(&s);
}

static void
test_cancel(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    struct mailer_job *job = NULL;
    uint64_t t0;
    struct srv s;
    struct result r = {0, 99};
    char url[64];

    srv_start(&s, SRV_SILENT);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 5000, &m), 0);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, &job), 0);
    assert_non_null(job);
    run_for(&loop, 100);             /* connected, waiting for a greeting */
    assert_int_equal(r.calls, 0);
    t0 = uv_hrtime();
    mailer_cancel(job);
    /* No blocking goodbye (QUIT) to a server that does not answer. */
    assert_true(uv_hrtime() - t0 < 500 * 1000000ULL);
    assert_int_equal(mailer_active(m), 0);
    run_for(&loop, 50);
    assert_int_equal(r.calls, 0);    /* a cancelled transfer calls nobody */
    finish(&loop, m);
    srv_join(&s);
}

static void
test_close_with_transfer(void **state)
{
    uint64_t t0;
    uv_loop_t loop;
    struct mailer *m;
    struct srv s;
    struct result r = {0, 99};
    char url[64];

    srv_start(&s, SRV_SILENT);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, url, "mfagate@example.org", 5000, &m), 0);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, NULL), 0);
    run_for(&loop, 100);
    t0 = uv_hrtime();
    mailer_close(m);
    assert_true(uv_hrtime() - t0 < 500 * 1000000ULL);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, MAILER_ECANCELED);
    assert_int_equal(mailer_send(m, "jane@example.com", SUBJECT, BODY, on_done, &r, NULL),
                     UV_ECANCELED);
    uv_run(&loop, UV_RUN_DEFAULT);
    mailer_free(m);
    assert_int_equal(uv_loop_close(&loop), 0);
    srv_join(&s);
}

static void
test_addresses_and_format(void **state)
{
    uv_loop_t loop;
    struct mailer *m;
    char buf[64], *msg;
    size_t len = 0;

    assert_int_equal(mailer_addr_ok("jane@example.com"), 0);
    assert_int_equal(mailer_addr_ok("j@x"), 0);
    assert_int_equal(mailer_addr_ok("jane.example.com"), -1);
    assert_int_equal(mailer_addr_ok("jane@@example.com"), -1);
    assert_int_equal(mailer_addr_ok("ja@ne@example.com"), -1);
    assert_int_equal(mailer_addr_ok("@example.com"), -1);
    assert_int_equal(mailer_addr_ok("jane@"), -1);
    assert_int_equal(mailer_addr_ok("jane@example.com\r\nRCPT TO:<x@y>"), -1);
    assert_int_equal(mailer_addr_ok("jane@example.com\n"), -1);
    assert_int_equal(mailer_addr_ok("jane doe@example.com"), -1);
    assert_int_equal(mailer_addr_ok("<jane@example.com>"), -1);
    mailer_mask("jane@example.com", buf, sizeof(buf));
    assert_string_equal(buf, "j***@example.com");
    mailer_mask("张三@example.com", buf, sizeof(buf));
    assert_string_equal(buf, "张***@example.com");
    mailer_mask("x@y", buf, sizeof(buf));
    assert_string_equal(buf, "x***@y");

    msg = mailer_format("a@b.c", "d@e.f", "Plain subject", "line1\nline2", &len);
    assert_non_null(msg);
    assert_int_equal(strlen(msg), len);
    assert_non_null(strstr(msg, "Subject: Plain subject\r\n"));
    assert_non_null(strstr(msg, "\r\n\r\nline1\r\nline2\r\n"));
    free(msg);
    /* A long non-ASCII subject: folded encoded words of at most 75 characters. */
    msg = mailer_format("a@b.c", "d@e.f",
                        "验证码验证码验证码验证码验证码验证码验证码验证码 / a long subject", "b",
                        &len);
    assert_non_null(msg);
    {
        const char *p = strstr(msg, "Subject: ") + 9, *end = strstr(p, "\r\nDate: ");
        int words = 0;
        while (p < end) {
            const char *q = strstr(p, "?=");
            assert_true(strncmp(p, "=?UTF-8?B?", 10) == 0);
            assert_true(q - p + 2 <= 75);
            words++;
            p = q + 2;
            if (p < end) {
                assert_true(strncmp(p, "\r\n ", 3) == 0);
                p += 3;
            }
        }
        assert_true(words >= 2);
    }
    free(msg);
    assert_null(mailer_format("a@b.c", "d@e.f\r\nBcc: x@y", "s", "b", &len));
    assert_null(mailer_format("a@b.c", "d@e.f", "s\r\nBcc: x@y", "b", &len));

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(mailer_new(&loop, "http://x", "a@b.c", 1000, &m), UV_EINVAL);
    assert_int_equal(mailer_new(&loop, "smtp://127.0.0.1:1", "nobody", 1000, &m), UV_EINVAL);
    assert_int_equal(mailer_new(&loop, "smtp://127.0.0.1:1", "a@b.c", 1000, &m), 0);
    assert_int_equal(mailer_send(m, "bad\naddr@x", "s", "b", on_done, NULL, NULL), UV_EINVAL);
    assert_int_equal(mailer_send(m, "no-at-sign", "s", "b", on_done, NULL, NULL), UV_EINVAL);
    assert_int_equal(mailer_active(m), 0);
    finish(&loop, m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_ok),
        cmocka_unit_test(test_relay_down),
        cmocka_unit_test(test_recipient_refused),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_close_with_transfer),
        cmocka_unit_test(test_addresses_and_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
