/*
 * metrics.h - process-wide counters for /metrics (Prometheus text format
 * 0.0.4): connections by protocol, logins by protocol, result and how they
 * were decided, an auth latency histogram, backend errors, HTTP responses by
 * status class and second-factor challenges.
 *
 * Every function here may be called from any worker thread: the counters are
 * C11 atomics updated with relaxed ordering (a scrape is a snapshot of
 * independent counters, never a consistent cut across them).  They are the
 * one deliberate exception to "no mutable globals": a counter that every
 * worker adds to and one scrape reads is what a metric is.
 *
 * Pure bookkeeping: no uv.h, no I/O.
 */
#ifndef MFA_METRICS_H
#define MFA_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* The first three equal enum config_proto (imap, pop3, smtp). */
enum metrics_proto {
    METRICS_IMAP = 0,
    METRICS_POP3,
    METRICS_SMTP,
    METRICS_HTTP,    /* web endpoint, cleartext listener */
    METRICS_HTTPS,   /* web endpoint, TLS listener */
    METRICS_WEB,     /* sign-ins on the web pages (logins only) */
    METRICS_PROTO_COUNT,
};

enum metrics_result {
    METRICS_OK = 0,
    METRICS_REFUSED,
    METRICS_UNAVAILABLE,   /* backend down or slow, store failure */
    METRICS_RESULT_COUNT,
};

/* A connection was accepted / has closed (drives _total and _open). */
void metrics_conn_open(int proto);
void metrics_conn_close(int proto);

/*
 * A login ended: proto (enum metrics_proto), result (enum metrics_result),
 * how it was decided, and how long the decision took in milliseconds (the
 * auth latency histogram, by protocol).  how, for the mail protocols:
 * "apppw", "passthrough", "refused", "tempfail"; for METRICS_WEB: "password"
 * (no factor bound), "device" (a trusted browser), "totp", "email",
 * "recovery", "wechat" (the second factor that signed in), "refused".  Any
 * other label, or one of the other side's, counts as "other".
 */
void metrics_login(int proto, int result, const char *how, uint64_t ms);

/* The backend could not be reached or failed during a login. */
void metrics_backend_error(int proto);

/* An HTTP response was sent with this status (counted by class 1xx..5xx). */
void metrics_http_response(int status);

/* A second-factor challenge was answered: ok != 0 for a right code/confirmation. */
void metrics_challenge(int ok);

/*
 * Renders every metric in the Prometheus text format into a new
 * NUL-terminated buffer (*out, free() it) of *len bytes.  0 or -1 (no memory).
 */
int metrics_render(char **out, size_t *len);

/* Sets every counter back to zero (tests only). */
void metrics_reset(void);

#endif
