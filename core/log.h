/*
 * log.h - one line per event, key=value, to stderr (or a file).
 *
 * Every line starts with a timestamp and the level; the caller writes the
 * rest as key=value pairs, session id first.  Lines are written whole, by a
 * single write(2) each, or - on a worker loop's thread, which buffers - a
 * few whole lines (at most 4 KiB) at a time, once per loop iteration before
 * the loop waits for I/O; warnings and errors are written at once.  Lazy
 * lines (log_info_lazy: the proxy's lines for every session) may wait up
 * to LOG_LAZY_MS, or until the buffer fills or another line is written:
 * at a high login rate one write then carries a dozen sessions.  Lines
 * from different threads therefore never interleave.  Never pass a
 * password, a code or a token to these functions.
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

/*
 * The calling thread keeps its lines (on) until log_flush(), a full buffer
 * or a warning; off flushes.  For threads that run a loop and call
 * log_flush() every iteration (core/worker.c).
 */
void log_set_buffered(int on);
/* Writes the calling thread's kept lines. */
void log_flush(void);

/* How long a buffering thread may keep lazy lines (see the top). */
#define LOG_LAZY_MS 50

enum log_pending {
    LOG_PENDING_NONE = 0,
    LOG_PENDING_LAZY,        /* only lazy lines: a flush within LOG_LAZY_MS will do */
    LOG_PENDING_NOW,         /* a regular line: flush before the loop waits */
};
/* What the calling thread keeps (core/worker.c decides when to flush). */
enum log_pending log_pending(void);
/* Whether lines of this level are written at all (skip costly arguments). */
int log_enabled(enum log_level level);

/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The same, but the line may wait in a buffering thread's buffer (above). */
void log_msg_lazy(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_info_lazy(...) log_msg_lazy(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
