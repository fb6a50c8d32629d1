/*
 * test_store.c - auth/store.c: migrations (idempotent, two connections),
 * users rows only where they belong, app password and factor CRUD, ids never
 * reused, batched bookkeeping invisible until flushed and then written in
 * one go, data_version moving on other connections' commits, the audit list,
 * the database file mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "auth_test_util.h"
#include "core/log.h"

struct fx {
    char dir[PATH_MAX];
    struct config cfg;
    struct store *a, *b;   /* two connections, as two workers or CLI + server */
};

static int
setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (f == NULL || tu_mkdtemp(f->dir, sizeof(f->dir)) != 0)
        return -1;
    tu_config(&f->cfg, f->dir);
    f->a = tu_store(&f->cfg);
    f->b = tu_store(&f->cfg);
    if (f->a == NULL || f->b == NULL)
        return -1;
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *f = *state;

    store_close(f->a);
    store_close(f->b);
    tu_rmtree(f->dir);
    free(f);
    return 0;
}

static void
test_migrate_idempotent(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 16];
    struct stat sb;
    int v = -1;

    assert_int_equal(store_schema_version(f->a, &v), STORE_OK);
    assert_int_equal(v, STORE_SCHEMA_VERSION);
    assert_int_equal(store_migrate(f->a), STORE_OK);
    assert_int_equal(store_migrate(f->b), STORE_OK);
    assert_int_equal(store_schema_version(f->b, &v), STORE_OK);
    assert_int_equal(v, STORE_SCHEMA_VERSION);

    assert_int_equal(store_path(f->dir, path, sizeof(path)), STORE_OK);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(store_path(f->dir, path, 8), STORE_ERR);
}

static void
test_no_user_row_from_lookups(void **state)
{
    struct fx *f = *state;
    struct store_apppw a;
    int64_t id;
    int n = -1;

    assert_int_equal(store_factor_count(f->a, "mallory", &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_apppw_find(f->a, "mallory", "abcd", &a), STORE_NOTFOUND);
    assert_int_equal(store_user_id(f->a, "mallory", &id), STORE_NOTFOUND);

    assert_int_equal(store_user_ensure(f->a, "carol", 5, &id), STORE_OK);
    int64_t again;
    assert_int_equal(store_user_ensure(f->b, "carol", 6, &again), STORE_OK);
    assert_int_equal(again, id);
}

static int
count_apppw(void *arg, const struct store_apppw *a)
{
    (*(int *)arg)++;
    return 0;
}

static void
test_apppw_crud(void **state)
{
    struct fx *f = *state;
    struct store_apppw a;
    int64_t id1, id2, id3, uid;
    int n = 0, removed = -1;

    assert_int_equal(store_apppw_add(f->a, "alice", "Phone", 1 | 4, "ab12", "$h1", 100, 0, &id1),
                     STORE_OK);
    assert_int_equal(store_user_id(f->b, "alice", &uid), STORE_OK);
    assert_int_equal(store_apppw_add(f->a, "alice", "Laptop", 7, "cd34", "$h2", 101, 5000, &id2),
                     STORE_OK);
    assert_true(id2 > id1);

    assert_int_equal(store_apppw_find(f->b, "alice", "cd34", &a), STORE_OK);
    assert_int_equal(a.id, id2);
    assert_string_equal(a.user, "alice");
    assert_string_equal(a.name, "Laptop");
    assert_int_equal(a.scope, 7);
    assert_string_equal(a.hash, "$h2");
    assert_int_equal(a.created, 101);
    assert_int_equal(a.expires, 5000);
    assert_int_equal(a.last_used, 0);
    assert_string_equal(a.last_addr, "");
    assert_int_equal(store_apppw_find(f->b, "bob", "cd34", &a), STORE_NOTFOUND);
    assert_int_equal(store_apppw_find(f->b, "alice", "zzzz", &a), STORE_NOTFOUND);

    assert_int_equal(store_apppw_get(f->b, id1, &a), STORE_OK);
    assert_string_equal(a.name, "Phone");
    assert_int_equal(a.expires, 0);

    assert_int_equal(store_apppw_list(f->b, "alice", count_apppw, &n), STORE_OK);
    assert_int_equal(n, 2);

    /* Only the owner revokes. */
    assert_int_equal(store_apppw_revoke(f->b, "bob", id2), STORE_NOTFOUND);
    assert_int_equal(store_apppw_revoke(f->b, "alice", id2), STORE_OK);
    assert_int_equal(store_apppw_get(f->a, id2, &a), STORE_NOTFOUND);
    assert_int_equal(store_apppw_revoke(f->b, "alice", id2), STORE_NOTFOUND);

    /* The newest id was deleted; the next one is still new. */
    assert_int_equal(store_apppw_add(f->a, "alice", "Tablet", 1, "ef56", "$h3", 102, 0, &id3),
                     STORE_OK);
    assert_true(id3 > id2);

    assert_int_equal(store_apppw_revoke_all(f->a, "alice", &removed), STORE_OK);
    assert_int_equal(removed, 2);
    n = 0;
    assert_int_equal(store_apppw_list(f->b, "alice", count_apppw, &n), STORE_OK);
    assert_int_equal(n, 0);
}

static int
collect_factor(void *arg, const struct store_factor *fa)
{
    char *kinds = arg;

    strcat(kinds, fa->kind);
    strcat(kinds, ";");
    return 0;
}

static void
test_factor_crud(void **state)
{
    struct fx *f = *state;
    struct store_factor fa;
    char kinds[64] = "";
    int64_t id;
    int n = -1, removed = -1;

    assert_int_equal(store_factor_add(f->a, "alice", "totp", "app", "\x00\x01\x02", 3, 10, &id),
                     STORE_OK);
    assert_int_equal(store_factor_add(f->a, "alice", "wechat", "", NULL, 0, 11, NULL), STORE_OK);
    /* A kind the schema does not know is refused. */
    assert_int_equal(store_factor_add(f->a, "alice", "sms", "", NULL, 0, 11, NULL), STORE_ERR);
    assert_int_equal(store_factor_count(f->b, "alice", &n), STORE_OK);
    assert_int_equal(n, 2);

    assert_int_equal(store_factor_get(f->b, "alice", "totp", &fa), STORE_OK);
    assert_int_equal(fa.id, id);
    assert_int_equal(fa.secret_len, 3);
    assert_memory_equal(fa.secret, "\x00\x01\x02", 3);
    assert_string_equal(fa.label, "app");
    assert_int_equal(fa.created, 10);
    assert_int_equal(store_factor_get(f->b, "alice", "email", &fa), STORE_NOTFOUND);

    assert_int_equal(store_factor_touch(f->a, id, 77), STORE_OK);
    assert_int_equal(store_factor_get(f->b, "alice", "totp", &fa), STORE_OK);
    assert_int_equal(fa.last_used, 77);

    assert_int_equal(store_factor_list(f->b, "alice", collect_factor, kinds), STORE_OK);
    assert_string_equal(kinds, "totp;wechat;");

    assert_int_equal(store_factor_remove(f->b, "alice", "totp", &removed), STORE_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(store_factor_remove(f->b, "alice", "totp", &removed), STORE_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(store_factor_count(f->a, "alice", &n), STORE_OK);
    assert_int_equal(n, 1);
}

struct audit_seen {
    int count;
    char events[512];
};

static int
collect_audit(void *arg, const struct store_audit_row *r)
{
    struct audit_seen *s = arg;

    s->count++;
    if (strlen(s->events) + strlen(r->event) + 2 < sizeof(s->events)) {
        strcat(s->events, r->event);
        strcat(s->events, ";");
    }
    return 0;
}

static void
test_batch_flush(void **state)
{
    struct fx *f = *state;
    struct store_apppw a;
    struct audit_seen seen = {0, ""};
    int64_t id, v1, v2;

    assert_int_equal(store_apppw_add(f->a, "alice", "Phone", 7, "ab12", "$h", 100, 0, &id),
                     STORE_OK);
    assert_int_equal(store_data_version(f->b, &v1), STORE_OK);

    assert_int_equal(store_batch_apppw_used(f->a, id, 200, "192.0.2.7", "imap"), STORE_OK);
    assert_int_equal(store_batch_audit(f->a, 200, "alice", "login_ok", "proto=imap", "192.0.2.7"),
                     STORE_OK);
    assert_int_equal(store_batch_audit(f->a, 201, "nobody", "login_fail", NULL, NULL), STORE_OK);
    assert_int_equal(store_batch_pending(f->a), 3);

    /* Nothing is visible before the flush. */
    assert_int_equal(store_apppw_get(f->b, id, &a), STORE_OK);
    assert_int_equal(a.last_used, 0);
    assert_int_equal(store_audit_list(f->b, NULL, 10, collect_audit, &seen), STORE_OK);
    assert_int_equal(seen.count, 0);

    assert_int_equal(store_batch_flush(f->a), STORE_OK);
    assert_int_equal(store_batch_pending(f->a), 0);
    /* One transaction: the other connection's data_version moved. */
    assert_int_equal(store_data_version(f->b, &v2), STORE_OK);
    assert_true(v2 != v1);

    assert_int_equal(store_apppw_get(f->b, id, &a), STORE_OK);
    assert_int_equal(a.last_used, 200);
    assert_string_equal(a.last_addr, "192.0.2.7");
    assert_string_equal(a.last_proto, "imap");
    assert_int_equal(store_audit_list(f->b, NULL, 10, collect_audit, &seen), STORE_OK);
    assert_int_equal(seen.count, 2);
    assert_string_equal(seen.events, "login_ok;login_fail;");
    /* No users row for a name that was only audited. */
    assert_int_equal(store_user_id(f->b, "nobody", &id), STORE_NOTFOUND);

    /* An older use does not overwrite a newer one. */
    assert_int_equal(store_batch_apppw_used(f->a, a.id, 150, "198.51.100.1", "pop3"), STORE_OK);
    assert_int_equal(store_batch_flush(f->a), STORE_OK);
    assert_int_equal(store_apppw_get(f->b, a.id, &a), STORE_OK);
    assert_int_equal(a.last_used, 200);
    assert_string_equal(a.last_proto, "imap");

    /* An empty flush is a no-op. */
    assert_int_equal(store_batch_flush(f->a), STORE_OK);
}

static void
test_batch_bound(void **state)
{
    struct fx *f = *state;
    struct audit_seen seen = {0, ""};

    /* Past the bound, queuing flushes by itself. */
    for (int i = 0; i < STORE_BATCH_MAX + 5; i++)
        assert_int_equal(store_batch_audit(f->a, i, "u", "e", NULL, NULL), STORE_OK);
    assert_true(store_batch_pending(f->a) <= STORE_BATCH_MAX);
    assert_int_equal(store_batch_pending(f->a), 5);
    assert_int_equal(store_batch_flush(f->a), STORE_OK);
    assert_int_equal(store_audit_list(f->b, "u", 0, collect_audit, &seen), STORE_OK);
    assert_int_equal(seen.count, STORE_BATCH_MAX + 5);
}

static void
test_data_version(void **state)
{
    struct fx *f = *state;
    int64_t a1, a2, a3, b1, b2;

    assert_int_equal(store_data_version(f->a, &a1), STORE_OK);
    assert_int_equal(store_data_version(f->a, &a2), STORE_OK);
    assert_int_equal(a1, a2);  /* nothing changed */
    assert_int_equal(store_data_version(f->b, &b1), STORE_OK);
    assert_int_equal(store_audit(f->b, 1, "x", "e", NULL, NULL), STORE_OK);
    assert_int_equal(store_data_version(f->a, &a3), STORE_OK);
    assert_true(a3 != a2);     /* another connection committed */
    assert_int_equal(store_data_version(f->b, &b2), STORE_OK);
    assert_true(b2 != b1);     /* and its own commits count too */
}

static void
test_audit_list(void **state)
{
    struct fx *f = *state;
    struct audit_seen seen = {0, ""};

    for (int i = 0; i < 5; i++) {
        char ev[8];

        snprintf(ev, sizeof(ev), "e%d", i);
        assert_int_equal(store_audit(f->a, 100 + i, i % 2 ? "bob" : "alice", ev, "d", "a"),
                         STORE_OK);
    }
    assert_int_equal(store_audit_list(f->b, "alice", 0, collect_audit, &seen), STORE_OK);
    assert_string_equal(seen.events, "e0;e2;e4;");
    memset(&seen, 0, sizeof(seen));
    /* The newest two, oldest first. */
    assert_int_equal(store_audit_list(f->b, NULL, 2, collect_audit, &seen), STORE_OK);
    assert_string_equal(seen.events, "e3;e4;");
}

struct writer {
    const struct config *cfg;
    int index;
    int failures;
};

/* One worker thread with its own connection, writing as a worker does. */
/*
 * Regression: opening a second connection in this process must not drop
 * the first one's POSIX locks.  It did once, when store_open() pre-created
 * the file with open()+close(): another process (the CLI) closing its own
 * connection then found no locks, checkpointed and deleted the WAL under
 * the server, whose writes from then on went to a deleted file.
 */
static void
test_other_process_keeps_our_wal(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 16], wal[PATH_MAX + 32];
    struct store *c;
    struct stat sb;
    pid_t pid;
    int status;

    assert_int_equal(store_path(f->dir, path, sizeof(path)), STORE_OK);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    /* f->a and f->b are open; a third connection comes and goes. */
    c = tu_store(&f->cfg);
    assert_non_null(c);
    store_close(c);
    assert_int_equal(store_audit(f->a, 1, "x", "before", NULL, NULL), STORE_OK);

    /* Another process, as the CLI would be: a fresh SQLite (not a fork of
     * ours, which would share our SQLite's memory) opens and closes. */
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("sqlite3", "sqlite3", path, "SELECT count(*) FROM audit;", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    /* Our connections still hold the WAL: it must still be there. */
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(store_audit(f->a, 3, "x", "after", NULL, NULL), STORE_OK);
}

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    struct store *st = tu_store(w->cfg);
    char user[32];

    if (st == NULL) {
        w->failures++;
        return NULL;
    }
    snprintf(user, sizeof(user), "user%d", w->index);
    for (int i = 0; i < 50; i++) {
        int64_t id = 0;

        if (store_apppw_add(st, user, "n", 7, "abcd", "$h", i, 0, &id) != STORE_OK)
            w->failures++;
        for (int j = 0; j < 10; j++)
            if (store_batch_audit(st, i, user, "login_ok", NULL, NULL) != STORE_OK ||
                store_batch_apppw_used(st, id, i, "a", "imap") != STORE_OK)
                w->failures++;
        if (store_batch_flush(st) != STORE_OK)
            w->failures++;
    }
    store_close(st);
    return NULL;
}

static void
test_threads_each_with_a_connection(void **state)
{
    struct fx *f = *state;
    struct writer w[4];
    pthread_t t[4];
    struct audit_seen seen = {0, ""};
    int n;

    for (int i = 0; i < 4; i++) {
        w[i] = (struct writer){&f->cfg, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].failures, 0);
    }
    for (int i = 0; i < 4; i++) {
        char user[32];

        snprintf(user, sizeof(user), "user%d", i);
        n = 0;
        assert_int_equal(store_apppw_list(f->a, user, count_apppw, &n), STORE_OK);
        assert_int_equal(n, 50);
    }
    assert_int_equal(store_audit_list(f->a, NULL, 0, collect_audit, &seen), STORE_OK);
    assert_int_equal(seen.count, 4 * 50 * 10);
}

int
main(void)
{
    log_init(LOG_WARN, 2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_user_row_from_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apppw_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_factor_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_flush, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_each_with_a_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process_keeps_our_wal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
