/*
 * mailer.h - short outbound e-mail (verification codes) over SMTP, sent with
 * libcurl's multi interface on a worker's uv loop: one uv_poll per socket
 * curl opens, one uv_timer for curl's timeouts, curl_multi_socket_action,
 * completion from curl_multi_info_read.  Nothing here blocks the loop.
 *
 * One mailer per web worker, used only on that worker's loop thread.
 * Nothing here logs a message body, and addresses are logged masked.
 */
#ifndef MFA_MAILER_H
#define MFA_MAILER_H

#include <stddef.h>

#include <uv.h>

struct mailer;
struct mailer_job;

#define MAILER_ADDR_MAX 254          /* RFC 5321 path limit, less the brackets */

/* Outcomes passed to a callback (besides 0, sent). */
#define MAILER_EFAILED (-1)          /* the relay refused, or could not be reached */
#define MAILER_ETIMEDOUT (-2)        /* no answer in time */
#define MAILER_ECANCELED (-3)        /* the mailer closed before the job ended */

/* Called once on the loop: 0 when the relay accepted the message. */
typedef void (*mailer_cb)(void *arg, int status);

/*
 * A mailer on loop that sends through relay ("smtp://host[:port]" or
 * "smtps://host[:port]") as from, each transfer limited to timeout_ms.
 * 0, or a negative uv-style error (UV_EINVAL for a bad relay or from).
 */
int mailer_new(uv_loop_t *loop, const char *relay, const char *from, long timeout_ms,
               struct mailer **out);

/*
 * 0 if addr is usable as a recipient: 3..MAILER_ADDR_MAX bytes, exactly
 * one '@' with text on both sides, no control characters (CR, LF ...),
 * spaces, '<', '>', '(', ')', ',', ';', '"' or '\'; else -1.
 */
int mailer_addr_ok(const char *addr);

/* "j***@example.com" for "jane@example.com" (first character kept). */
void mailer_mask(const char *addr, char *out, size_t outlen);

/*
 * Builds the message (headers: From, To, Subject (RFC 2047 when not
 * ASCII), Date, Message-ID, MIME-Version, Content-Type text/plain;
 * charset=utf-8, Content-Transfer-Encoding 8bit; CRLF lines) into a
 * malloc'ed string.  Exposed for tests.  NULL on a bad address or no memory.
 */
char *mailer_format(const char *from, const char *to, const char *subject, const char *body,
                    size_t *len);

/*
 * Starts sending; cb(arg, status) follows on the loop, never from inside
 * this call.  *job (may be NULL) names the transfer for mailer_cancel until
 * cb runs.  0, or UV_EINVAL (bad address), UV_ENOMEM, UV_ECANCELED (closing).
 */
int mailer_send(struct mailer *m, const char *to, const char *subject, const char *body,
                mailer_cb cb, void *arg, struct mailer_job **job);

/* Ends a transfer at once; its callback is not called. */
void mailer_cancel(struct mailer_job *job);

/*
 * Cancels every transfer (their callbacks get MAILER_ECANCELED) and closes
 * the poll and timer handles; the loop must run for them to close.  Later
 * sends fail.
 */
void mailer_close(struct mailer *m);

/* Frees the mailer after mailer_close and a loop run (NULL is fine). */
void mailer_free(struct mailer *m);

/* Number of transfers under way (for tests). */
int mailer_active(const struct mailer *m);

#endif
