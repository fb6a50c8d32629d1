/*
 * test_scanhub.c - cross-worker wakeups for QR scenes (web/scanhub.c): two
 * threads, each with its own uv loop, join one hub; a notify from the main
 * thread or from either loop wakes both with the scene's hash; a member
 * that left is never called again, even with hashes still in its inbox;
 * an overflowing inbox says "check all"; and the loops close cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "web/scanhub.h"

#define HLEN STORE_TOKEN_HASH_LEN
#define KEEP 256
#define WAIT_NS (10ull * 1000 * 1000 * 1000)

enum cmd { CMD_NONE, CMD_NOOP, CMD_NOTIFY, CMD_LEAVE, CMD_BLOCK, CMD_BLOCK_LEAVE, CMD_STOP };

struct worker {
    uv_thread_t tid;
    uv_loop_t loop;
    uv_async_t cmd_async;
    struct scanhub *hub;
    struct scanhub_member *m;
    int join_rc;
    int close_rc;

    uv_mutex_t lock;          /* guards everything below */
    uv_cond_t cond;
    enum cmd cmd;
    unsigned char cmd_hash[HLEN];
    int acks;                 /* commands done (1 = started) */
    int calls;                /* callbacks */
    int calls_all;            /* callbacks with all = 1 */
    size_t got;               /* hashes received */
    unsigned char hashes[KEEP][HLEN];
    uv_sem_t inside, release; /* CMD_BLOCK */
};

struct fx {
    struct scanhub *hub;
    struct worker w[2];
};

static void
hash_of(int k, unsigned char h[HLEN])
{
    memset(h, 0, HLEN);
    h[0] = (unsigned char)k;
    h[1] = (unsigned char)(k >> 8);
    h[HLEN - 1] = 0x5a;
}

static void
on_hub(void *arg, const unsigned char (*hashes)[STORE_TOKEN_HASH_LEN], size_t n, int all)
{
    struct worker *w = arg;

    uv_mutex_lock(&w->lock);
    w->calls++;
    if (all)
        w->calls_all++;
    for (size_t i = 0; i < n; i++) {
        if (w->got < KEEP)
            memcpy(w->hashes[w->got], hashes[i], HLEN);
        w->got++;
    }
    uv_cond_broadcast(&w->cond);
    uv_mutex_unlock(&w->lock);
}

static void
on_cmd(uv_async_t *h)
{
    struct worker *w = h->data;
    unsigned char hash[HLEN];
    enum cmd c;

    uv_mutex_lock(&w->lock);
    c = w->cmd;
    w->cmd = CMD_NONE;
    memcpy(hash, w->cmd_hash, HLEN);
    uv_mutex_unlock(&w->lock);
    if (c == CMD_NONE)
        return;

    switch (c) {
    case CMD_NOTIFY:
        scanhub_notify(w->hub, hash);
        break;
    case CMD_BLOCK:
    case CMD_BLOCK_LEAVE:
        uv_sem_post(&w->inside);
        uv_sem_wait(&w->release);
        if (c == CMD_BLOCK_LEAVE) {
            scanhub_leave(w->m);
            w->m = NULL;
        }
        break;
    case CMD_LEAVE:
        scanhub_leave(w->m);
        w->m = NULL;
        break;
    case CMD_STOP:
        scanhub_leave(w->m);   /* NULL is fine */
        w->m = NULL;
        uv_close((uv_handle_t *)&w->cmd_async, NULL);
        break;
    default:
        break;
    }
    uv_mutex_lock(&w->lock);
    w->acks++;
    uv_cond_broadcast(&w->cond);
    uv_mutex_unlock(&w->lock);
}

static void
worker_main(void *arg)
{
    struct worker *w = arg;

    w->close_rc = -1;
    if (uv_loop_init(&w->loop) != 0)
        return;
    w->join_rc = scanhub_join(w->hub, &w->loop, on_hub, w, &w->m);
    uv_async_init(&w->loop, &w->cmd_async, on_cmd);
    w->cmd_async.data = w;
    uv_mutex_lock(&w->lock);
    w->acks = 1;
    uv_cond_broadcast(&w->cond);
    uv_mutex_unlock(&w->lock);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    w->close_rc = uv_loop_close(&w->loop);
}

/* Waits until *field >= n (under w->lock); 0, or -1 on timeout. */
static int
wait_for(struct worker *w, const void *field, int is_size, size_t n)
{
    int r = 0;

    uv_mutex_lock(&w->lock);
    for (;;) {
        size_t v = is_size ? *(const size_t *)field : (size_t) * (const int *)field;

        if (v >= n)
            break;
        if (uv_cond_timedwait(&w->cond, &w->lock, WAIT_NS) != 0) {
            r = -1;
            break;
        }
    }
    uv_mutex_unlock(&w->lock);
    return r;
}

#define WAIT_ACKS(w, n) wait_for((w), &(w)->acks, 0, (size_t)(n))
#define WAIT_GOT(w, n) wait_for((w), &(w)->got, 1, (size_t)(n))
#define WAIT_CALLS_ALL(w, n) wait_for((w), &(w)->calls_all, 0, (size_t)(n))

static int
snap_int(struct worker *w, const int *field)
{
    int v;

    uv_mutex_lock(&w->lock);
    v = *field;
    uv_mutex_unlock(&w->lock);
    return v;
}

static size_t
snap_got(struct worker *w)
{
    size_t v;

    uv_mutex_lock(&w->lock);
    v = w->got;
    uv_mutex_unlock(&w->lock);
    return v;
}

/* Sends a command without waiting; returns the ack count to wait for. */
static int
send_cmd(struct worker *w, enum cmd c, int hash_k)
{
    int want;

    uv_mutex_lock(&w->lock);
    w->cmd = c;
    hash_of(hash_k, w->cmd_hash);
    want = w->acks + 1;
    uv_mutex_unlock(&w->lock);
    uv_async_send(&w->cmd_async);
    return want;
}

/* Sends a command and waits for it to be done. */
static void
run_cmd(struct worker *w, enum cmd c, int hash_k)
{
    int want = send_cmd(w, c, hash_k);

    assert_int_equal(WAIT_ACKS(w, want), 0);
}

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || scanhub_new(&f->hub) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        struct worker *w = &f->w[i];

        w->hub = f->hub;
        w->join_rc = -1;
        if (uv_mutex_init(&w->lock) != 0 || uv_cond_init(&w->cond) != 0 ||
            uv_sem_init(&w->inside, 0) != 0 || uv_sem_init(&w->release, 0) != 0)
            return -1;
        if (uv_thread_create(&w->tid, worker_main, w) != 0)
            return -1;
        if (WAIT_ACKS(w, 1) != 0 || w->join_rc != 0 || w->m == NULL)
            return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    for (int i = 0; i < 2; i++) {
        struct worker *w = &f->w[i];

        send_cmd(w, CMD_STOP, 0);
        uv_thread_join(&w->tid);
        assert_int_equal(w->close_rc, 0);
        uv_sem_destroy(&w->inside);
        uv_sem_destroy(&w->release);
        uv_cond_destroy(&w->cond);
        uv_mutex_destroy(&w->lock);
    }
    scanhub_free(f->hub);
    free(f);
    return 0;
}

static void
test_notify_from_main(void **state)
{
    struct fx *f = *state;
    unsigned char h[HLEN];

    hash_of(1, h);
    scanhub_notify(f->hub, h);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(WAIT_GOT(&f->w[i], 1), 0);
        assert_memory_equal(f->w[i].hashes[0], h, HLEN);
        assert_int_equal(snap_int(&f->w[i], &f->w[i].calls_all), 0);
    }

    /* More, in order. */
    for (int k = 2; k <= 5; k++) {
        hash_of(k, h);
        scanhub_notify(f->hub, h);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(WAIT_GOT(&f->w[i], 5), 0);
        for (int k = 1; k <= 5; k++) {
            hash_of(k, h);
            assert_memory_equal(f->w[i].hashes[k - 1], h, HLEN);
        }
        assert_int_equal(snap_int(&f->w[i], &f->w[i].calls_all), 0);
    }
    /* A NULL hub is a no-op. */
    scanhub_notify(NULL, h);
}

static void
test_notify_from_loop(void **state)
{
    struct fx *f = *state;
    unsigned char h[HLEN];

    /* From worker 0's loop: both, itself included, wake. */
    run_cmd(&f->w[0], CMD_NOTIFY, 7);
    hash_of(7, h);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(WAIT_GOT(&f->w[i], 1), 0);
        assert_memory_equal(f->w[i].hashes[0], h, HLEN);
    }
    /* And from worker 1's. */
    run_cmd(&f->w[1], CMD_NOTIFY, 8);
    hash_of(8, h);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(WAIT_GOT(&f->w[i], 2), 0);
        assert_memory_equal(f->w[i].hashes[1], h, HLEN);
    }
}

static void
test_leave(void **state)
{
    struct fx *f = *state;
    unsigned char h[HLEN];

    run_cmd(&f->w[1], CMD_LEAVE, 0);
    hash_of(9, h);
    scanhub_notify(f->hub, h);
    assert_int_equal(WAIT_GOT(&f->w[0], 1), 0);
    assert_memory_equal(f->w[0].hashes[0], h, HLEN);
    /* A round trip through worker 1's loop: nothing came. */
    run_cmd(&f->w[1], CMD_NOOP, 0);
    run_cmd(&f->w[1], CMD_NOOP, 0);
    assert_int_equal(snap_int(&f->w[1], &f->w[1].calls), 0);
    /* Its loop notifying still reaches worker 0. */
    run_cmd(&f->w[1], CMD_NOTIFY, 10);
    assert_int_equal(WAIT_GOT(&f->w[0], 2), 0);
    assert_int_equal(snap_int(&f->w[1], &f->w[1].calls), 0);
}

static void
test_leave_with_pending(void **state)
{
    struct fx *f = *state;
    struct worker *w = &f->w[0];
    unsigned char h[HLEN];
    int want;

    /* Worker 0 busy: the hash waits in its inbox; then it leaves. */
    want = send_cmd(w, CMD_BLOCK_LEAVE, 0);
    uv_sem_wait(&w->inside);
    hash_of(11, h);
    scanhub_notify(f->hub, h);
    assert_int_equal(WAIT_GOT(&f->w[1], 1), 0);
    uv_sem_post(&w->release);
    assert_int_equal(WAIT_ACKS(w, want), 0);
    run_cmd(w, CMD_NOOP, 0);
    run_cmd(w, CMD_NOOP, 0);
    assert_int_equal(snap_int(w, &w->calls), 0);
    assert_int_equal(snap_got(w), 0);
}

static void
test_overflow(void **state)
{
    struct fx *f = *state;
    struct worker *w = &f->w[0];
    unsigned char h[HLEN];
    const int extra = 6;
    int want;

    want = send_cmd(w, CMD_BLOCK, 0);
    uv_sem_wait(&w->inside);
    for (int k = 0; k < SCANHUB_INBOX + extra; k++) {
        hash_of(100 + k, h);
        scanhub_notify(f->hub, h);
    }
    uv_sem_post(&w->release);
    assert_int_equal(WAIT_ACKS(w, want), 0);
    assert_int_equal(WAIT_CALLS_ALL(w, 1), 0);
    run_cmd(w, CMD_NOOP, 0);

    /* The first SCANHUB_INBOX kept, in order, and "check all". */
    uv_mutex_lock(&w->lock);
    assert_int_equal(w->calls, 1);
    assert_int_equal(w->calls_all, 1);
    assert_int_equal(w->got, SCANHUB_INBOX);
    for (int k = 0; k < SCANHUB_INBOX; k++) {
        hash_of(100 + k, h);
        assert_memory_equal(w->hashes[k], h, HLEN);
    }
    uv_mutex_unlock(&w->lock);

    /* The other worker was not blocked: it got every hash, or was told to
     * check all. */
    assert_int_equal(wait_for(&f->w[1], &f->w[1].got, 1, 1), 0);
    run_cmd(&f->w[1], CMD_NOOP, 0);
    {
        size_t got = snap_got(&f->w[1]);
        int all = snap_int(&f->w[1], &f->w[1].calls_all);

        assert_true(got == (size_t)(SCANHUB_INBOX + extra) || all > 0);
    }

    /* The overflow is reset: the next notify is one hash, not "all". */
    hash_of(999, h);
    scanhub_notify(f->hub, h);
    assert_int_equal(WAIT_GOT(w, SCANHUB_INBOX + 1), 0);
    uv_mutex_lock(&w->lock);
    assert_int_equal(w->calls, 2);
    assert_int_equal(w->calls_all, 1);
    assert_memory_equal(w->hashes[SCANHUB_INBOX], h, HLEN);
    uv_mutex_unlock(&w->lock);
}

static void
test_join_leave_alone(void **state)
{
    struct scanhub *hub;
    struct scanhub_member *m;
    uv_loop_t loop;
    unsigned char h[HLEN];

    (void)state;
    assert_int_equal(scanhub_new(&hub), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(scanhub_join(hub, &loop, on_hub, NULL, &m), 0);
    hash_of(1, h);
    scanhub_notify(hub, h);   /* pending; the member leaves before the loop runs */
    scanhub_leave(m);
    scanhub_leave(NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);  /* on_hub(NULL, ...) would crash */
    assert_int_equal(uv_loop_close(&loop), 0);
    scanhub_notify(hub, h);   /* no members */
    scanhub_free(hub);
    scanhub_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notify_from_main, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_from_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
        cmocka_unit_test(test_join_leave_alone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
