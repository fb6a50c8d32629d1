/*
 * log.c - the logging sink.  Owns the output descriptor and the level; owns
 * nothing else.  See log.h.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Set once at start-up, before any worker thread exists, then only read. */
static enum log_level log_min_level = LOG_INFO;
static int log_fd = 2;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

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

void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    size_t n;
    int r;
    va_list ap;

    if (level < log_min_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03dZ level=%s ", (int)(tv.tv_usec / 1000),
                 log_level_names[level]);
    if (r > 0)
        n += (size_t)r;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r < 0)
        r = 0;
    n += (size_t)r;
    /* A line that did not fit is cut, and still ends with a newline. */
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line keeps lines whole across threads. */
    if (write(log_fd, line, n) < 0)
        return;
}
