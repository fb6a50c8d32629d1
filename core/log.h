/*
 * log.h - one line per event, key=value, to stderr (or a file).
 *
 * Every line starts with a timestamp and the level; the caller writes the
 * rest as key=value pairs, session id first.  A line is written with a single
 * write(2), so lines from different worker threads never interleave.  Never
 * pass a password, a code or a token to these functions.
 */
#ifndef MFA_LOG_H
#define MFA_LOG_H

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

/* Sets the lowest level written and the output descriptor (2 by default). */
void log_init(enum log_level min_level, int fd);

/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
