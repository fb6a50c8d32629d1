/*
 * curl_uv.c - libcurl's multi interface on a uv loop (curl_uv.h).
 *
 * It owns the multi handle, one uv_timer, a uv_poll per socket curl asks
 * to watch, and the list of sockets curl opened (so that the ones of an
 * ended transfer, or all at close, can be shut down without touching a
 * descriptor another thread may have reused).  It owns no transfer: those
 * are the owner's (mailer.c, wechat.c).
 */
#include "web/curl_uv.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CURL_UV_FDS_MAX 128

/* A socket curl opened (and has not closed yet), and the transfer using it. */
struct curl_uv_fd {
    curl_socket_t fd;
    CURL *easy;
};

/* One watched socket; freed by its poll handle's close callback. */
struct curl_uv_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    struct curl_uv *cu;
    struct curl_uv_sock *prev, *next;
};

struct curl_uv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    curl_uv_done_cb done;
    int flags;
    int closing;
    struct curl_uv_sock *socks;       /* the watched sockets */
    struct curl_uv_fd fds[CURL_UV_FDS_MAX];
    int nfds;
};

static pthread_once_t curl_uv_once = PTHREAD_ONCE_INIT;
static int curl_uv_global_rc;

static void
curl_uv_global_once(void)
{
    curl_uv_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int
curl_uv_global_init(void)
{
    pthread_once(&curl_uv_once, curl_uv_global_once);
    return curl_uv_global_rc;
}

/* Shuts down the sockets of easy (NULL: all of them); see the header. */
static void
curl_uv_fds_shutdown(struct curl_uv *cu, CURL *easy)
{
    for (int i = 0; i < cu->nfds; i++) {
        if (easy == NULL || cu->fds[i].easy == easy) {
            shutdown(cu->fds[i].fd, SHUT_RDWR);
            cu->fds[i].easy = NULL;
        }
    }
}

static curl_socket_t
curl_uv_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct curl_uv_xfer *x = clientp;
    struct curl_uv *cu = x->cu;
    curl_socket_t fd;

    if (cu->nfds >= CURL_UV_FDS_MAX)
        return CURL_SOCKET_BAD;
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd == CURL_SOCKET_BAD)
        return fd;
    cu->fds[cu->nfds].fd = fd;
    cu->fds[cu->nfds].easy = x->easy;
    cu->nfds++;
    return fd;
}

static int
curl_uv_close_socket(void *clientp, curl_socket_t fd)
{
    struct curl_uv *cu = clientp;

    for (int i = 0; i < cu->nfds; i++) {
        if (cu->fds[i].fd == fd) {
            cu->fds[i] = cu->fds[--cu->nfds];
            break;
        }
    }
    return close(fd);
}

/* Hands the transfers curl has finished to the owner. */
static void
curl_uv_check_done(struct curl_uv *cu)
{
    CURLMsg *msg;
    int left;

    while (!cu->closing && (msg = curl_multi_info_read(cu->multi, &left)) != NULL) {
        struct curl_uv_xfer *x = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x == NULL)
            continue;
        cu->done(x, msg->data.result);
    }
}

static void
curl_uv_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
curl_uv_sock_close(struct curl_uv *cu, struct curl_uv_sock *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else if (cu->socks == s)
        cu->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, curl_uv_sock_closed);
}

static void
curl_uv_poll_cb(uv_poll_t *h, int status, int events)
{
    struct curl_uv_sock *s = h->data;
    struct curl_uv *cu = s->cu;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(cu->multi, s->fd, flags, &running);
    curl_uv_check_done(cu);
}

static int
curl_uv_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_uv *cu = userp;
    struct curl_uv_sock *s = socketp;
    int events = 0;

    /* A cached connection now serves this transfer. */
    for (int i = 0; i < cu->nfds; i++)
        if (cu->fds[i].fd == fd && what != CURL_POLL_REMOVE)
            cu->fds[i].easy = easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(cu->multi, fd, NULL);
            curl_uv_sock_close(cu, s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->fd = fd;
        s->cu = cu;
        if (uv_poll_init_socket(cu->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        s->next = cu->socks;
        if (cu->socks != NULL)
            cu->socks->prev = s;
        cu->socks = s;
        curl_multi_assign(cu->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, curl_uv_poll_cb);
    return 0;
}

static void
curl_uv_timer_fired(uv_timer_t *t)
{
    struct curl_uv *cu = t->data;
    int running;

    curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curl_uv_check_done(cu);
}

static int
curl_uv_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curl_uv *cu = userp;

    if (timeout_ms < 0)
        uv_timer_stop(&cu->timer);
    else
        uv_timer_start(&cu->timer, curl_uv_timer_fired, (uint64_t)timeout_ms, 0);
    return 0;
}

int
curl_uv_new(uv_loop_t *loop, curl_uv_done_cb done, int flags, struct curl_uv **out)
{
    struct curl_uv *cu;
    int rc;

    *out = NULL;
    if (curl_uv_global_init() != 0)
        return UV_ENOMEM;
    cu = calloc(1, sizeof(*cu));
    if (cu == NULL)
        return UV_ENOMEM;
    cu->loop = loop;
    cu->done = done;
    cu->flags = flags;
    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        free(cu);
        return UV_ENOMEM;
    }
    rc = uv_timer_init(loop, &cu->timer);
    if (rc != 0) {
        curl_multi_cleanup(cu->multi);
        free(cu);
        return rc;
    }
    cu->timer.data = cu;
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, curl_uv_socket_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, curl_uv_timer_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    *out = cu;
    return 0;
}

int
curl_uv_add(struct curl_uv *cu, struct curl_uv_xfer *x, CURL *easy)
{
    if (cu->closing)
        return UV_ECANCELED;
    x->cu = cu;
    x->easy = easy;
    if (curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, curl_uv_open_socket) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, x) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, curl_uv_close_socket) != CURLE_OK ||
        curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cu) != CURLE_OK ||
        curl_multi_add_handle(cu->multi, easy) != CURLM_OK) {
        x->cu = NULL;
        x->easy = NULL;
        return UV_ENOMEM;
    }
    return 0;
}

void
curl_uv_remove(struct curl_uv_xfer *x)
{
    struct curl_uv *cu = x->cu;

    if (cu == NULL || x->easy == NULL)
        return;
    if (cu->flags & CURL_UV_SHUTDOWN_ON_END)
        curl_uv_fds_shutdown(cu, x->easy);
    if (cu->multi != NULL)
        curl_multi_remove_handle(cu->multi, x->easy);
    x->cu = NULL;
}

int
curl_uv_closing(const struct curl_uv *cu)
{
    return cu->closing;
}

void
curl_uv_close(struct curl_uv *cu)
{
    if (cu == NULL || cu->closing)
        return;
    cu->closing = 1;
    uv_timer_stop(&cu->timer);
    /* Connections curl keeps for reuse go now, without a wait (an SMTP
     * QUIT, a TLS close_notify), their polls with them. */
    curl_uv_fds_shutdown(cu, NULL);
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    while (cu->socks != NULL)
        curl_uv_sock_close(cu, cu->socks);
    uv_close((uv_handle_t *)&cu->timer, NULL);
}

void
curl_uv_free(struct curl_uv *cu)
{
    if (cu == NULL)
        return;
    if (!cu->closing)
        curl_uv_close(cu);
    free(cu);
}
