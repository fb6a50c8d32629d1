/*
 * log.c - the logging sink.  Owns the output descriptor, the level and each
 * thread's line buffer; owns nothing else.  See log.h.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/*
 * A buffered thread's pending lines.  At most PIPE_BUF bytes, so that one
 * write(2) of whole lines stays atomic on a pipe (journald) as well as on
 * an O_APPEND file: lines from different threads never interleave.
 */
#define LOG_BUF_MAX 4096

/* Set once at start-up, before any worker thread exists, then only read. */
static enum log_level log_min_level = LOG_INFO;
static int log_fd = 2;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

/* Per thread: not shared, so no lock. */
struct log_thread {
    int buffered;
    int due;                     /* buf holds a line that is not lazy */
    size_t len;
    time_t stamp_sec;            /* the second stamp[] was made for */
    char stamp[32];              /* "ts=YYYY-MM-DDTHH:MM:SS" */
    size_t stamp_len;
    char buf[LOG_BUF_MAX];
};

static _Thread_local struct log_thread log_thread;

void
log_init(enum log_level min_level, int fd)
{
    log_min_level = min_level;
    log_fd = fd;
}

int
log_level_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(log_level_names) / sizeof(log_level_names[0])); i++)
        if (strcmp(name, log_level_names[i]) == 0)
            return i;
    return -1;
}

int
log_enabled(enum log_level level)
{
    return level >= log_min_level;
}

void
log_flush(void)
{
    struct log_thread *t = &log_thread;

    if (t->len == 0)
        return;
    t->due = 0;
    /* Nothing sensible to do if the log cannot be written. */
    if (write(log_fd, t->buf, t->len) < 0) {
        t->len = 0;
        return;
    }
    t->len = 0;
}

enum log_pending
log_pending(void)
{
    const struct log_thread *t = &log_thread;

    if (t->len == 0)
        return LOG_PENDING_NONE;
    return t->due ? LOG_PENDING_NOW : LOG_PENDING_LAZY;
}

void
log_set_buffered(int on)
{
    log_flush();
    log_thread.buffered = on;
}

static void
log_vmsg(enum log_level level, int lazy, const char *fmt, va_list ap)
{
    struct log_thread *t = &log_thread;
    char line[2048];
    struct timeval tv;
    size_t n;
    int r;

    gettimeofday(&tv, NULL);
    /* The date part changes once a second: format it once a second. */
    if (t->stamp_len == 0 || t->stamp_sec != tv.tv_sec) {
        struct tm tm;

        gmtime_r(&tv.tv_sec, &tm);
        t->stamp_len = strftime(t->stamp, sizeof(t->stamp), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        t->stamp_sec = tv.tv_sec;
    }
    memcpy(line, t->stamp, t->stamp_len);
    n = t->stamp_len;
    /* ".mmmZ level=NAME ", by hand: a snprintf per line for this costs more. */
    {
        int ms = (int)(tv.tv_usec / 1000);
        const char *name = log_level_names[level];
        size_t nl = strlen(name);

        line[n++] = '.';
        line[n++] = (char)('0' + ms / 100);
        line[n++] = (char)('0' + ms / 10 % 10);
        line[n++] = (char)('0' + ms % 10);
        memcpy(line + n, "Z level=", 8);
        n += 8;
        memcpy(line + n, name, nl);
        n += nl;
        line[n++] = ' ';
    }
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (r < 0)
        r = 0;
    n += (size_t)r;
    /* A line that did not fit is cut, and still ends with a newline. */
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (!t->buffered || level >= LOG_WARN) {
        /* Unbuffered, or worth seeing at once: after what came before. */
        log_flush();
        if (write(log_fd, line, n) < 0)
            return;
        return;
    }
    if (t->len + n > sizeof(t->buf))
        log_flush();
    memcpy(t->buf + t->len, line, n);
    t->len += n;
    if (!lazy)
        t->due = 1;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < log_min_level)
        return;
    va_start(ap, fmt);
    log_vmsg(level, 0, fmt, ap);
    va_end(ap);
}

void
log_msg_lazy(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < log_min_level)
        return;
    va_start(ap, fmt);
    log_vmsg(level, 1, fmt, ap);
    va_end(ap);
}
