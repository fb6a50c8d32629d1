/*
 * scanhub.c - cross-worker wakeups for QR scenes (scanhub.h).
 *
 * Locking: hub->lock guards the member list; each member's inbox has its
 * own lock, so a notify holds the hub lock only to walk the list.  A member
 * leaves under the hub lock, so no notify touches it afterwards.
 */
#include "web/scanhub.h"

#include <stdlib.h>
#include <string.h>

struct scanhub_member {
    struct scanhub *hub;
    uv_async_t async;
    scanhub_cb cb;
    void *arg;
    uv_mutex_t lock;              /* guards the inbox */
    unsigned char inbox[SCANHUB_INBOX][STORE_TOKEN_HASH_LEN];
    size_t n;
    int overflow;
    struct scanhub_member *next;
};

struct scanhub {
    uv_mutex_t lock;
    struct scanhub_member *members;
};

int
scanhub_new(struct scanhub **out)
{
    struct scanhub *hub = calloc(1, sizeof(*hub));

    *out = NULL;
    if (hub == NULL)
        return UV_ENOMEM;
    if (uv_mutex_init(&hub->lock) != 0) {
        free(hub);
        return UV_ENOMEM;
    }
    *out = hub;
    return 0;
}

void
scanhub_free(struct scanhub *hub)
{
    if (hub == NULL)
        return;
    uv_mutex_destroy(&hub->lock);
    free(hub);
}

static void
scanhub_on_async(uv_async_t *h)
{
    struct scanhub_member *m = h->data;
    unsigned char batch[SCANHUB_INBOX][STORE_TOKEN_HASH_LEN];
    size_t n;
    int all;

    uv_mutex_lock(&m->lock);
    n = m->n;
    all = m->overflow;
    memcpy(batch, m->inbox, n * STORE_TOKEN_HASH_LEN);
    m->n = 0;
    m->overflow = 0;
    uv_mutex_unlock(&m->lock);
    if ((n > 0 || all) && m->cb != NULL)
        m->cb(m->arg, (const unsigned char(*)[STORE_TOKEN_HASH_LEN])batch, n, all);
}

int
scanhub_join(struct scanhub *hub, uv_loop_t *loop, scanhub_cb cb, void *arg,
             struct scanhub_member **out)
{
    struct scanhub_member *m = calloc(1, sizeof(*m));
    int r;

    *out = NULL;
    if (m == NULL)
        return UV_ENOMEM;
    if (uv_mutex_init(&m->lock) != 0) {
        free(m);
        return UV_ENOMEM;
    }
    r = uv_async_init(loop, &m->async, scanhub_on_async);
    if (r != 0) {
        uv_mutex_destroy(&m->lock);
        free(m);
        return r;
    }
    m->async.data = m;
    m->hub = hub;
    m->cb = cb;
    m->arg = arg;
    uv_mutex_lock(&hub->lock);
    m->next = hub->members;
    hub->members = m;
    uv_mutex_unlock(&hub->lock);
    *out = m;
    return 0;
}

static void
scanhub_member_closed(uv_handle_t *h)
{
    struct scanhub_member *m = h->data;

    uv_mutex_destroy(&m->lock);
    free(m);
}

void
scanhub_leave(struct scanhub_member *m)
{
    struct scanhub *hub;

    if (m == NULL)
        return;
    hub = m->hub;
    uv_mutex_lock(&hub->lock);
    for (struct scanhub_member **p = &hub->members; *p != NULL; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    uv_mutex_unlock(&hub->lock);
    m->cb = NULL;
    uv_close((uv_handle_t *)&m->async, scanhub_member_closed);
}

void
scanhub_notify(struct scanhub *hub, const unsigned char hash[STORE_TOKEN_HASH_LEN])
{
    if (hub == NULL)
        return;
    uv_mutex_lock(&hub->lock);
    for (struct scanhub_member *m = hub->members; m != NULL; m = m->next) {
        uv_mutex_lock(&m->lock);
        if (m->n < SCANHUB_INBOX)
            memcpy(m->inbox[m->n++], hash, STORE_TOKEN_HASH_LEN);
        else
            m->overflow = 1;
        uv_mutex_unlock(&m->lock);
        uv_async_send(&m->async);
    }
    uv_mutex_unlock(&hub->lock);
}
