/*
 * main.c - argv -> config -> workers.  The only file that sees every part
 * of mfagate: it wires the configuration, the state (keys, database), the
 * proxy's and the web endpoint's worker parts and the command-line tools
 * together, and owns the main thread's loop (signals, the shutdown grace
 * period).
 */
#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "auth/auth.h"
#include "auth/cli.h"
#include "auth/keys.h"
#include "conf/config.h"
#include "core/log.h"
#include "core/tls.h"
#include "core/worker.h"
#include "proxy/proxy.h"
#include "web/web.h"

#define MAIN_DEFAULT_CONFIG "conf/mfagate.conf"

/* What every worker thread shares: read-only once the workers run. */
struct main_shared {
    const struct config *cfg;
    const struct keys *keys;
    struct auth_shared *auth;
    struct proxy_shared proxy;
    struct web_shared web;
};

/*
 * One worker's parts: the auth context (one store connection per worker),
 * shared by the parts that serve on its loop.  The worker ends when every
 * part has stopped.
 */
struct main_worker {
    struct worker *w;
    struct auth_ctx *auth;
    struct proxy_worker *proxy;
    struct web_worker *web;
    int running;                /* parts not yet stopped */
    int stopping;
};

/* The main thread's loop state while serving. */
struct main_state {
    uv_loop_t *loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t grace;
    uv_async_t ended;
    struct worker *workers;
    int nworkers;
    const struct config *cfg;
    struct tls_slot *tls;
    int stopping;
};

/* A part has nothing left open: when all have, the worker's loop may end. */
static void
main_worker_part_stopped(void *arg)
{
    struct main_worker *mw = arg;

    if (--mw->running > 0)
        return;
    if (mw->auth != NULL) {
        auth_ctx_free(mw->auth);
        mw->auth = NULL;
    }
    worker_release(mw->w);
}

static int
main_worker_init(struct worker *w)
{
    const struct main_shared *ms = w->shared;
    struct main_worker *mw;
    int rc;

    mw = calloc(1, sizeof(*mw));
    if (mw == NULL)
        return UV_ENOMEM;
    mw->w = w;
    w->data = mw;
    rc = auth_ctx_new(&w->loop, ms->cfg, ms->keys, ms->auth, &mw->auth);
    if (rc != 0) {
        log_error("worker=%d event=auth_init_failed", w->id);
        return rc < 0 ? rc : -1;
    }
    rc = proxy_worker_start(w, &ms->proxy, mw->auth, &mw->proxy);
    if (rc != 0)
        return rc;
    return web_worker_start(w, &ms->web, mw->auth, &mw->web);
}

static void
main_worker_stop(struct worker *w)
{
    struct main_worker *mw = w->data;

    if (mw == NULL) {
        worker_release(w);
        return;
    }
    if (mw->stopping)
        return;
    mw->stopping = 1;
    /* One count for this function, so no part finishes the worker early. */
    mw->running = 3;
    if (mw->proxy != NULL)
        proxy_worker_stop(mw->proxy, main_worker_part_stopped, mw);
    else
        mw->running--;
    if (mw->web != NULL)
        web_worker_stop(mw->web, main_worker_part_stopped, mw);
    else
        mw->running--;
    main_worker_part_stopped(mw);
}

static void
main_worker_abort(struct worker *w)
{
    struct main_worker *mw = w->data;

    if (mw != NULL && mw->proxy != NULL)
        proxy_worker_abort(mw->proxy);
    if (mw != NULL && mw->web != NULL)
        web_worker_abort(mw->web);
}

static void
main_worker_cleanup(struct worker *w)
{
    struct main_worker *mw = w->data;

    if (mw == NULL)
        return;
    if (mw->web != NULL)
        web_worker_free(mw->web);
    if (mw->proxy != NULL)
        proxy_worker_free(mw->proxy);
    free(mw);
    w->data = NULL;
}

static const struct worker_hooks main_worker_hooks = {
    .init = main_worker_init,
    .stop = main_worker_stop,
    .abort = main_worker_abort,
    .cleanup = main_worker_cleanup,
};

static void
main_usage(FILE *out)
{
    fprintf(out,
            "usage: mfagate COMMAND [-c FILE] ...\n"
            "\n"
            "  serve        [-c FILE]            run in the foreground\n"
            "  check-config [-c FILE]            exit 0, or print file:line: what is wrong\n"
            "  app-password create [-c FILE] USER --name NAME [--scope imap,pop3,smtp]\n"
            "                      [--expires-days N] [--json]\n"
            "  app-password list   [-c FILE] USER [--json]\n"
            "  app-password revoke [-c FILE] USER (ID | --all)\n"
            "  totp enroll  [-c FILE] USER       bind a third-party OTP factor\n"
            "  factor list  [-c FILE] USER\n"
            "  factor remove [-c FILE] USER KIND\n"
            "  audit        [-c FILE] [USER]\n"
            "\n"
            "FILE defaults to " MAIN_DEFAULT_CONFIG ".\n");
}

static void
main_close_all(struct main_state *ms)
{
    uv_close((uv_handle_t *)&ms->sigterm, NULL);
    uv_close((uv_handle_t *)&ms->sigint, NULL);
    uv_close((uv_handle_t *)&ms->sighup, NULL);
    uv_close((uv_handle_t *)&ms->grace, NULL);
    uv_close((uv_handle_t *)&ms->ended, NULL);
}

static void
main_ended_cb(uv_async_t *h)
{
    struct main_state *ms = h->data;

    if (workers_done(ms->workers, ms->nworkers) == ms->nworkers)
        main_close_all(ms);
}

static void
main_grace_cb(uv_timer_t *t)
{
    struct main_state *ms = t->data;

    log_info("event=shutdown_grace_over");
    workers_command(ms->workers, ms->nworkers, WORKER_CMD_ABORT);
}

static void
main_signal_cb(uv_signal_t *h, int signum)
{
    struct main_state *ms = h->data;

    if (signum == SIGHUP) {
        char err[512];

        /* Certificates are renewed while the server runs; everything else
         * in the configuration needs a restart (listeners are bound once). */
        SSL_CTX *ctx = ms->tls == NULL ? NULL
                                       : tls_server_ctx_new(ms->cfg->tls_cert, ms->cfg->tls_key,
                                                            err, sizeof(err));

        if (ms->tls == NULL)
            return;
        if (ctx != NULL) {
            tls_slot_set(ms->tls, ctx);
            log_info("event=reload what=tls_certificate result=ok note=\"other settings "
                     "need a restart\"");
        } else {
            log_error("event=reload what=tls_certificate result=failed error=\"%s\"", err);
        }
        return;
    }
    if (ms->stopping) {
        /* A second signal: do not wait for the grace period. */
        workers_command(ms->workers, ms->nworkers, WORKER_CMD_ABORT);
        return;
    }
    ms->stopping = 1;
    log_info("event=shutdown signal=%d grace_ms=%llu", signum,
             (unsigned long long)ms->cfg->shutdown_grace_ms);
    workers_command(ms->workers, ms->nworkers, WORKER_CMD_STOP);
    uv_timer_start(&ms->grace, main_grace_cb, ms->cfg->shutdown_grace_ms, 0);
}

/*
 * Drops root after the listeners are bound: the state folder is handed to
 * the user first, so that the database stays writable.
 */
static int
main_drop_privileges(const struct config *cfg)
{
    struct passwd *pw;

    if (cfg->user[0] == '\0')
        return 0;
    pw = getpwnam(cfg->user);
    if (pw == NULL) {
        log_error("event=drop_privileges user=%s error=\"no such user\"", cfg->user);
        return -1;
    }
    if (getuid() != 0)
        return 0;
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        log_error("event=drop_privileges user=%s error=\"%s\"", cfg->user, strerror(errno));
        return -1;
    }
    return 0;
}

/* Hands the state folder and its files to [server] user (if set, as root). */
static void
main_chown_state(const struct config *cfg)
{
    static const char *const files[] = {"", "/server.key", "/mfagate.db", "/mfagate.db-wal",
                                        "/mfagate.db-shm"};
    struct passwd *pw;
    char path[PATH_MAX + 32];

    if (cfg->user[0] == '\0' || getuid() != 0 || (pw = getpwnam(cfg->user)) == NULL)
        return;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", cfg->state_dir, files[i]);
        if (chown(path, pw->pw_uid, pw->pw_gid) != 0 && errno != ENOENT)
            log_warn("event=chown path=%s error=\"%s\"", path, strerror(errno));
    }
}

/* The server context for every TLS listener, in a slot SIGHUP can refill. */
static struct tls_slot *
main_tls_slot(const struct config *cfg, char *err, size_t errlen)
{
    struct tls_slot *slot;
    SSL_CTX *ctx = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, errlen);

    if (ctx == NULL)
        return NULL;
    slot = malloc(sizeof(*slot));
    if (slot == NULL || tls_slot_init(slot, ctx) != 0) {
        free(slot);
        SSL_CTX_free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    return slot;
}

static int
main_serve(const struct config *cfg)
{
    struct main_state ms;
    struct main_shared shared;
    struct keys keys;
    char err[1024];
    int rc, status = 1;

    memset(&ms, 0, sizeof(ms));
    memset(&shared, 0, sizeof(shared));
    signal(SIGPIPE, SIG_IGN);
    /*
     * argon2id allocates ~19 MiB per check on the thread pool; with glibc's
     * dynamic mmap threshold those blocks end up in per-thread arenas and
     * stay resident (measured: RSS 10 -> 113 MB after a few cold checks).
     * A fixed threshold keeps large blocks mmap'ed and gives them back.
     */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    if (auth_init_state(cfg, &keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "mfagate: %s\n", err);
        return 1;
    }
    main_chown_state(cfg);
    shared.cfg = cfg;
    shared.keys = &keys;
    if (auth_shared_new(cfg, &shared.auth) != 0) {
        fprintf(stderr, "mfagate: cannot start the KDF threads\n");
        keys_wipe(&keys);
        return 1;
    }
    if (cfg->tls_cert[0] != '\0') {
        ms.tls = main_tls_slot(cfg, err, sizeof(err));
        if (ms.tls == NULL) {
            fprintf(stderr, "mfagate: %s: [tls] %s\n", cfg->path, err);
            goto out;
        }
    }
    if (proxy_shared_init(&shared.proxy, cfg, ms.tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "mfagate: %s\n", err);
        goto out;
    }
    if (web_shared_init(&shared.web, cfg, &keys, ms.tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "mfagate: %s\n", err);
        goto out;
    }

    ms.loop = uv_default_loop();
    ms.cfg = cfg;
    ms.nworkers = cfg->workers;
    ms.workers = calloc((size_t)cfg->workers, sizeof(*ms.workers));
    if (ms.workers == NULL)
        goto out;
    uv_signal_init(ms.loop, &ms.sigterm);
    uv_signal_init(ms.loop, &ms.sigint);
    uv_signal_init(ms.loop, &ms.sighup);
    uv_timer_init(ms.loop, &ms.grace);
    uv_async_init(ms.loop, &ms.ended, main_ended_cb);
    ms.sigterm.data = ms.sigint.data = ms.sighup.data = &ms;
    ms.grace.data = ms.ended.data = &ms;
    uv_signal_start(&ms.sigterm, main_signal_cb, SIGTERM);
    uv_signal_start(&ms.sigint, main_signal_cb, SIGINT);
    uv_signal_start(&ms.sighup, main_signal_cb, SIGHUP);

    rc = workers_start(ms.workers, ms.nworkers, &main_worker_hooks, &shared, &ms.ended);
    if (rc != 0) {
        fprintf(stderr, "mfagate: could not start: %s\n", uv_strerror(rc));
        main_close_all(&ms);
        uv_run(ms.loop, UV_RUN_DEFAULT);
        goto out;
    }
    if (main_drop_privileges(cfg) != 0) {
        workers_command(ms.workers, ms.nworkers, WORKER_CMD_ABORT);
        workers_join(ms.workers, ms.nworkers);
        main_close_all(&ms);
        uv_run(ms.loop, UV_RUN_DEFAULT);
        goto out;
    }
    log_info("event=started workers=%d", cfg->workers);
    uv_run(ms.loop, UV_RUN_DEFAULT);
    workers_join(ms.workers, ms.nworkers);
    log_info("event=stopped");
    status = 0;

out:
    if (ms.loop != NULL)
        uv_loop_close(ms.loop);
    free(ms.workers);
    web_shared_free(&shared.web);
    proxy_shared_free(&shared.proxy);
    auth_shared_free(shared.auth);
    if (ms.tls != NULL) {
        tls_slot_free(ms.tls);
        free(ms.tls);
    }
    keys_wipe(&keys);
    return status;
}

/*
 * Takes "-c FILE" / "--config FILE" / "--config=FILE" out of argv (it may
 * stand anywhere after the command); returns the new argc.
 */
static int
main_take_config(int argc, char **argv, const char **path)
{
    int out = 0;

    for (int i = 0; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            *path = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            *path = argv[i] + 9;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

int
main(int argc, char **argv)
{
    const char *path = MAIN_DEFAULT_CONFIG;
    struct config *cfg;
    char err[1024];
    int rc;

    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        main_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("mfagate 0.1.0\n");
        return 0;
    }
    argc = main_take_config(argc - 1, argv + 1, &path);
    argv = argv + 1;

    cfg = malloc(sizeof(*cfg));
    if (cfg == NULL)
        return 1;
    if (config_load(path, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        free(cfg);
        return 1;
    }
    log_init((enum log_level)cfg->log_level, 2);

    if (strcmp(argv[0], "check-config") == 0) {
        if (argc != 1) {
            main_usage(stderr);
            rc = 2;
        } else if (cfg->tls_cert[0] != '\0') {
            /* The certificate and key must load and match, as serve needs them. */
            SSL_CTX *ctx = tls_server_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));

            if (ctx == NULL) {
                fprintf(stderr, "%s: [tls] %s\n", path, err);
                rc = 1;
            } else {
                SSL_CTX_free(ctx);
                printf("%s: ok\n", path);
                rc = 0;
            }
        } else {
            printf("%s: ok\n", path);
            rc = 0;
        }
    } else if (strcmp(argv[0], "serve") == 0) {
        rc = argc == 1 ? main_serve(cfg) : 2;
        if (rc == 2)
            main_usage(stderr);
    } else if (strcmp(argv[0], "app-password") == 0 || strcmp(argv[0], "totp") == 0 ||
               strcmp(argv[0], "factor") == 0 || strcmp(argv[0], "audit") == 0) {
        rc = auth_cli_main(cfg, argc, argv);
    } else {
        fprintf(stderr, "mfagate: unknown command \"%s\"\n", argv[0]);
        main_usage(stderr);
        rc = 2;
    }
    free(cfg);
    return rc;
}
