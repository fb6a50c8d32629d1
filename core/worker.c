/*
 * worker.c - see worker.h.  Owns the threads, their loops and the command
 * async handles; owns nothing that runs on the loops.
 */
#include "core/worker.h"

#include <string.h>

#include "core/log.h"
#include "core/util.h"

static void
worker_async_cb(uv_async_t *h)
{
    struct worker *w = container_of(h, struct worker, async);
    int cmd = atomic_exchange(&w->cmd, WORKER_CMD_NONE);

    /* ABORT implies STOP: a worker told to abort first stops accepting. */
    if (cmd & (WORKER_CMD_STOP | WORKER_CMD_ABORT))
        w->hooks->stop(w);
    if (cmd & WORKER_CMD_ABORT)
        w->hooks->abort(w);
}

static void
worker_log_timer_cb(uv_timer_t *t)
{
    (void)t;
    log_flush();
}

/*
 * Right before the loop waits for I/O: the lines of this iteration, in one
 * write; if they are all lazy (the proxy's per-session lines), within
 * LOG_LAZY_MS instead, so that a busy loop writes once per full buffer
 * rather than once per turn.
 */
static void
worker_log_flush_cb(uv_prepare_t *h)
{
    struct worker *w = container_of(h, struct worker, log_flush);

    switch (log_pending()) {
    case LOG_PENDING_NONE:
        break;
    case LOG_PENDING_LAZY:
        if (!uv_is_active((uv_handle_t *)&w->log_timer))
            uv_timer_start(&w->log_timer, worker_log_timer_cb, LOG_LAZY_MS, 0);
        break;
    case LOG_PENDING_NOW:
        log_flush();
        break;
    }
}

static void
worker_main(void *arg)
{
    struct worker *w = arg;
    int rc;

    log_set_buffered(1);
    w->init_status = w->hooks->init(w);
    uv_sem_post(w->ready);
    if (w->init_status != 0) {
        /* Let the hooks' half-made state close; the loop then ends. */
        w->hooks->stop(w);
        w->hooks->abort(w);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (!uv_is_closing((uv_handle_t *)&w->log_flush)) {
        uv_close((uv_handle_t *)&w->log_flush, NULL);
        uv_close((uv_handle_t *)&w->log_timer, NULL);
        uv_run(&w->loop, UV_RUN_NOWAIT);
    }
    if (w->hooks->cleanup != NULL)
        w->hooks->cleanup(w);
    log_set_buffered(0);
    rc = uv_loop_close(&w->loop);
    if (rc != 0)
        log_warn("worker=%d event=loop_close error=\"%s\"", w->id, uv_strerror(rc));
    atomic_store(&w->done, 1);
    uv_async_send(w->ended);
}

int
workers_start(struct worker *ws, int n, const struct worker_hooks *hooks, void *shared,
              uv_async_t *ended)
{
    uv_sem_t ready;
    int rc, started = 0, first_error = 0;

    rc = uv_sem_init(&ready, 0);
    if (rc != 0)
        return rc;
    for (int i = 0; i < n; i++) {
        struct worker *w = &ws[i];

        memset(w, 0, sizeof(*w));
        w->id = i;
        w->hooks = hooks;
        w->shared = shared;
        w->ready = &ready;
        w->ended = ended;
        atomic_init(&w->cmd, WORKER_CMD_NONE);
        atomic_init(&w->done, 0);
        rc = uv_mutex_init(&w->lock);
        if (rc != 0)
            break;
        rc = uv_loop_init(&w->loop);
        if (rc == 0) {
            rc = uv_async_init(&w->loop, &w->async, worker_async_cb);
            if (rc != 0)
                uv_loop_close(&w->loop);
        }
        if (rc == 0) {
            /* Never keeps the loop alive by itself. */
            uv_prepare_init(&w->loop, &w->log_flush);
            uv_prepare_start(&w->log_flush, worker_log_flush_cb);
            uv_unref((uv_handle_t *)&w->log_flush);
            uv_timer_init(&w->loop, &w->log_timer);
            uv_unref((uv_handle_t *)&w->log_timer);
        }
        if (rc == 0) {
            rc = uv_thread_create(&w->thread, worker_main, w);
            if (rc != 0) {
                uv_close((uv_handle_t *)&w->async, NULL);
                uv_close((uv_handle_t *)&w->log_flush, NULL);
                uv_close((uv_handle_t *)&w->log_timer, NULL);
                uv_run(&w->loop, UV_RUN_DEFAULT);
                uv_loop_close(&w->loop);
            }
        }
        if (rc != 0) {
            first_error = rc;
            break;
        }
        started++;
        uv_sem_wait(&ready);
        if (w->init_status != 0) {
            first_error = w->init_status;
            break;
        }
    }
    uv_sem_destroy(&ready);
    if (first_error != 0) {
        workers_command(ws, started, WORKER_CMD_ABORT);
        workers_join(ws, started);
    }
    return first_error;
}

void
workers_command(struct worker *ws, int n, enum worker_cmd cmd)
{
    for (int i = 0; i < n; i++) {
        uv_mutex_lock(&ws[i].lock);
        if (!ws[i].released) {
            atomic_fetch_or(&ws[i].cmd, (int)cmd);
            uv_async_send(&ws[i].async);
        }
        uv_mutex_unlock(&ws[i].lock);
    }
}

int
workers_done(struct worker *ws, int n)
{
    int done = 0;

    for (int i = 0; i < n; i++)
        done += atomic_load(&ws[i].done);
    return done;
}

void
workers_join(struct worker *ws, int n)
{
    for (int i = 0; i < n; i++) {
        uv_thread_join(&ws[i].thread);
        uv_mutex_destroy(&ws[i].lock);
    }
}

void
worker_release(struct worker *w)
{
    uv_mutex_lock(&w->lock);
    if (!w->released) {
        w->released = 1;
        uv_close((uv_handle_t *)&w->async, NULL);
        if (!uv_is_closing((uv_handle_t *)&w->log_flush)) {
            uv_close((uv_handle_t *)&w->log_flush, NULL);
            uv_close((uv_handle_t *)&w->log_timer, NULL);
        }
    }
    uv_mutex_unlock(&w->lock);
}
