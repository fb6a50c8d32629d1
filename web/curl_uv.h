/*
 * curl_uv.h - libcurl's multi interface driven by a uv loop, shared by
 * web/mailer.c (SMTP) and web/wechat.c (HTTPS).
 *
 * The pattern is curl's own multi-uv example: curl says which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll per socket) and when to be
 * called back (CURLMOPT_TIMERFUNCTION -> one uv_timer); both feed
 * curl_multi_socket_action, and finished transfers come out of
 * curl_multi_info_read and go to the owner's done callback.  Nothing here
 * blocks the loop.  Used on one loop thread only.
 *
 * The owner keeps its transfers: it embeds a struct curl_uv_xfer in each,
 * configures the easy handle (URL, options) and hands both to curl_uv_add.
 * It removes a transfer with curl_uv_remove (when done, or to cancel) and
 * then cleans the easy handle up itself.
 */
#ifndef MFA_CURL_UV_H
#define MFA_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

struct curl_uv;

/* One transfer, embedded in the owner's job (container_of to get it back). */
struct curl_uv_xfer {
    struct curl_uv *cu;
    CURL *easy;
};

/*
 * A transfer ended (result CURLE_OK or the error).  The owner calls
 * curl_uv_remove(x) (here or later) and owns the easy handle again.  The
 * callback may call curl_uv_close.
 */
typedef void (*curl_uv_done_cb)(struct curl_uv_xfer *x, CURLcode result);

/*
 * Flags for curl_uv_new.  CURL_UV_SHUTDOWN_ON_END shuts down a transfer's
 * sockets when it is removed (no connection reuse): libcurl ends an SMTP
 * connection with a QUIT it waits for *blocking*, and a socket already shut
 * down makes that wait end at once.
 */
#define CURL_UV_SHUTDOWN_ON_END 1

/*
 * curl_global_init, once per process (curl_uv_new calls it too; calling it
 * on the main thread before the workers start is better still).  0 or -1.
 */
int curl_uv_global_init(void);

/* 0, or UV_ENOMEM (also when curl_global_init failed), or a uv error. */
int curl_uv_new(uv_loop_t *loop, curl_uv_done_cb done, int flags, struct curl_uv **out);

/*
 * Starts x on easy: sets CURLOPT_PRIVATE and the open/close socket
 * callbacks (curl_uv keeps the list of sockets curl opened) and adds it to
 * the multi handle.  0, or UV_ENOMEM / UV_ECANCELED (closed).
 */
int curl_uv_add(struct curl_uv *cu, struct curl_uv_xfer *x, CURL *easy);

/* Takes x out of the multi handle (safe twice); x->easy is left to the owner. */
void curl_uv_remove(struct curl_uv_xfer *x);

/*
 * Ends everything: every transfer must have been removed.  Cached
 * connections are shut down and closed, the poll and timer handles
 * closed; the loop must run for them to close before curl_uv_free.
 */
void curl_uv_close(struct curl_uv *cu);

/* Frees cu after curl_uv_close and a loop run (NULL is fine). */
void curl_uv_free(struct curl_uv *cu);

/* 1 once curl_uv_close has run. */
int curl_uv_closing(const struct curl_uv *cu);

#endif
