/*
 * worker.h - N threads, one libuv loop each.
 *
 * The worker knows nothing of mail or HTTP: what runs on a loop is plugged
 * in through worker_hooks (proxy/ and web/ provide them; core/main.c wires
 * them).  The main thread talks to a worker only through its uv_async
 * handle and an atomic command word; a worker tells the main thread that its
 * loop has ended through a callback the main thread's loop receives.
 */
#ifndef MFA_WORKER_H
#define MFA_WORKER_H

#include <stdatomic.h>
#include <uv.h>

struct worker;

enum worker_cmd {
    WORKER_CMD_NONE = 0,
    WORKER_CMD_STOP = 1,     /* stop accepting; let sessions finish */
    WORKER_CMD_ABORT = 2,    /* the grace period is over: close everything */
};

struct worker_hooks {
    /*
     * Runs on the worker thread before its loop: opens listeners, per-worker
     * state.  0 or a negative code (then the process exits with an error).
     */
    int (*init)(struct worker *w);
    /* Stop accepting; when nothing is left, call worker_release(w). */
    void (*stop)(struct worker *w);
    /* Close every session now; worker_release(w) follows when all closed. */
    void (*abort)(struct worker *w);
    /* Runs on the worker thread after its loop has ended: frees w->data. */
    void (*cleanup)(struct worker *w);
};

struct worker {
    int id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;               /* wakes the loop for a command */
    uv_prepare_t log_flush;         /* writes the iteration's log lines before polling */
    uv_timer_t log_timer;           /* writes lazy log lines within LOG_LAZY_MS */
    atomic_int cmd;                 /* enum worker_cmd bits, set by main */
    const struct worker_hooks *hooks;
    void *shared;                   /* what all workers share (read-only) */
    void *data;                     /* the hooks' per-worker state */
    int init_status;
    uv_sem_t *ready;                /* posted after init, success or not */
    uv_async_t *ended;              /* main's: sent when the loop has ended */
    uv_mutex_t lock;                /* guards released against workers_command */
    int released;                   /* the async handle is closed */
    atomic_int done;                /* the loop has ended */
};

/*
 * Starts n worker threads and waits until each has run hooks->init.  Returns
 * 0, or the first init error (the threads that started are stopped).  ended
 * is a uv_async_t on the caller's loop, sent each time a worker's loop ends.
 */
int workers_start(struct worker *ws, int n, const struct worker_hooks *hooks, void *shared,
                  uv_async_t *ended);

/* Sends a command to every worker. */
void workers_command(struct worker *ws, int n, enum worker_cmd cmd);

/* How many workers' loops have ended. */
int workers_done(struct worker *ws, int n);

/* Waits for every worker thread to end. */
void workers_join(struct worker *ws, int n);

/* Called on the worker's thread when nothing more will run: lets its loop end. */
void worker_release(struct worker *w);

#endif
