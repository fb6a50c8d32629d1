/*
 * loadgen.c - mfa-loadgen, the benchmark's load generator (bench/README.md).
 *
 * One libuv loop drives many client sessions against one mail server: IMAP,
 * POP3 or SMTP, one line function per protocol (imap_line, pop3_line,
 * smtp_line).  Each session: TCP connect (TCP_NODELAY), optional TLS
 * (implicit or STARTTLS/STLS, TLS 1.3 + X25519, optional session
 * resumption), greeting, [SMTP: EHLO], login (IMAP LOGIN; POP3 and SMTP
 * AUTH PLAIN with the initial response: one round trip each), then per
 * mode: LOGOUT/QUIT (login), stay (idle), or, IMAP only, SELECT + FETCH in
 * a loop (fetch).
 *
 * Load is closed-loop (--concurrency sessions, each starts the next when it
 * ends) or open-loop (--rate: login i is due at t0 + i/rate; its latency is
 * measured from when it was due, so a server that falls behind shows it in
 * the percentiles instead of slowing the generator down).
 *
 * Owns no server: it only reads /proc for the processes named with --watch
 * (CPU: utime+stime+cutime+cstime summed over the process tree; memory:
 * RSS and PSS summed over the tree).  Server replies are parsed here, simply
 * and bounded (a line longer than LG_LINE_MAX is a protocol error); the
 * proxy's parsers are client-command parsers and are not reused.
 *
 * Output: a human-readable summary, then one line of JSON (the last line).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <uv.h>

#define LG_LINE_MAX 8192
#define LG_WATCH_MAX 8
#define LG_READ_BUF (64 * 1024)
#define LG_TICKETS 256

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

enum lg_tls { LG_TLS_PLAIN = 0, LG_TLS_IMPLICIT, LG_TLS_STARTTLS };
enum lg_mode { LG_MODE_LOGIN = 0, LG_MODE_IDLE, LG_MODE_FETCH };
enum lg_proto { LG_IMAP = 0, LG_POP3, LG_SMTP };
enum lg_kind { LG_KIND_APP = 0, LG_KIND_ACCOUNT, LG_KIND_WRONG };

/* Where a session is; also the second half of an error's name. */
enum lg_state {
    ST_CONNECT = 0,
    ST_TLS,
    ST_GREETING,
    ST_EHLO,
    ST_STARTTLS,
    ST_LOGIN,
    ST_LOGOUT,
    ST_HOLD,
    ST_SELECT,
    ST_FETCH,
    ST_COUNT
};
static const char *const state_names[ST_COUNT] = {
    "connect", "tls", "greeting", "ehlo", "starttls", "login", "logout", "hold", "select",
    "fetch",
};

/* What went wrong; counted per (kind, state). */
enum lg_err {
    E_CONNECT = 0,  /* connect() failed */
    E_TLS,          /* handshake or record error */
    E_EOF,          /* the server closed or reset */
    E_TIMEOUT,      /* --timeout passed in this state */
    E_REFUSED,      /* NO to credentials that should work */
    E_BAD,          /* BAD or an unexpected reply */
    E_ACCEPTED,     /* OK to a password listed as wrong */
    E_PROTO,        /* a reply line too long or not parseable */
    E_COUNT
};
static const char *const err_names[E_COUNT] = {
    "connect", "tls", "eof", "timeout", "refused", "bad", "wrong_accepted", "proto",
};

struct cred {
    char *user, *pass;
    enum lg_kind kind;
};

struct watch {
    char label[32];
    int pid;
    double cpu0_s, cpu1_s;
    double rss0_kb, pss0_kb, rss1_kb, pss1_kb;
    int nproc;
};

struct opts {
    const char *host;
    int port;
    const char *proto;
    enum lg_proto p;
    enum lg_tls tls;
    int resume;
    int concurrency;
    double duration_s;
    double warmup_s;
    long count;
    double rate;
    enum lg_mode mode;
    int once;
    int timeout_ms;
    double hold_s;
    const char *label;
    const char *mailbox;
    int quiet;
};

struct session {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_timer_t timer;
    int handles;
    enum lg_state state;
    SSL *ssl;
    BIO *rbio, *wbio;
    const struct cred *cred;
    uint64_t t_due;       /* ns: when this login was due (open loop) or started */
    uint64_t t_state;     /* ns: when the current state began */
    int recording;        /* started inside the measured window */
    int finished;         /* counted once */
    int starttls_done;
    size_t lit;           /* literal bytes still to skip */
    size_t linelen;
    char line[LG_LINE_MAX];
};

struct stats {
    uint64_t started, ok, refused_expected, done_logouts;
    uint64_t err[E_COUNT][ST_COUNT];
    uint64_t tls_full, tls_resumed;
    uint64_t fetches, fetch_bytes;
    uint32_t *lat_us;     /* successful logins, microseconds */
    size_t nlat, caplat;
};

/* The generator is one loop and one run: its state is this one struct. */
static struct {
    struct opts o;
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    SSL_CTX *ctx;
    /* Tickets received, newest last, for --resume.  TLS 1.3 tickets are
     * single-use (OpenSSL's client retires one once it resumed), so each
     * new connection takes its own, as a pool of real clients would. */
    SSL_SESSION *saved[LG_TICKETS];
    int nsaved;
    struct cred *creds;
    size_t ncreds, next_cred;
    struct watch watch[LG_WATCH_MAX];
    int nwatch;
    struct stats st;
    uv_timer_t tick;
    uint64_t t0, t_rec, t_end_ns, t_stop;
    uint64_t next_due;    /* open loop: ns */
    int active, held, held_at_sample, stopping, recording;
    int window_closed;    /* the measured time is over: later completions do not count */
    struct rusage ru0, ru1;
    uint64_t sys0_busy, sys0_total, sys1_busy, sys1_total;
    double mem_sampled;
    char readbuf[LG_READ_BUF];
} G;

static void session_start(uint64_t due);
static void session_end(struct session *s);
static void session_fail(struct session *s, enum lg_err e);
static void maybe_finish(void);

/* ---- small helpers ---------------------------------------------------- */

static uint64_t
now_ns(void)
{
    return uv_hrtime();
}

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "mfa-loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- /proc: CPU and memory of a process tree --------------------------- */

/* The parent pid and CPU seconds of pid from /proc/pid/stat; 0 or -1. */
static int
proc_stat(int pid, int *ppid, double *cpu_s)
{
    char path[64], buf[1024], *p;
    unsigned long ut, st;
    long cut, cst;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
    if (p == NULL)
        return -1;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime */
    if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld", ppid, &ut,
               &st, &cut, &cst) != 5)
        return -1;
    *cpu_s = (double)(ut + st + (unsigned long)cut + (unsigned long)cst) /
             (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* Reads "Key:  N kB" from a /proc file. */
static double
proc_kb(const char *path, const char *key)
{
    char line[256];
    size_t klen = strlen(key);
    double v = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtod(line + klen + 1, NULL);
            break;
        }
    }
    fclose(f);
    return v;
}

/*
 * Sums CPU (and memory) over root and all its descendants.  A child that
 * exited and was reaped is in its parent's cutime/cstime, so summing
 * utime+stime+cutime+cstime over the live tree counts every process once.
 */
static void
tree_sample(int root, double *cpu_s, double *rss_kb, double *pss_kb, int *nproc)
{
    int pids[8192], ppids[8192], n = 0;
    double cpus[8192];
    char in[8192];
    DIR *d = opendir("/proc");
    struct dirent *e;

    *cpu_s = *pss_kb = 0;
    if (rss_kb != NULL)
        *rss_kb = 0;
    *nproc = 0;
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL && n < 8192) {
        int pid, ppid;
        double c;

        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid = atoi(e->d_name);
        if (proc_stat(pid, &ppid, &c) == 0) {
            pids[n] = pid;
            ppids[n] = ppid;
            cpus[n] = c;
            n++;
        }
    }
    closedir(d);
    memset(in, 0, sizeof(in));
    for (int i = 0; i < n; i++)
        if (pids[i] == root)
            in[i] = 1;
    /* Grow the set until no process joins (trees are shallow). */
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (int j = 0; j < n; j++)
                if (in[j] && pids[j] == ppids[i]) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    for (int i = 0; i < n; i++) {
        char path[64];

        if (!in[i])
            continue;
        *cpu_s += cpus[i];
        (*nproc)++;
        if (rss_kb != NULL) {
            snprintf(path, sizeof(path), "/proc/%d/status", pids[i]);
            *rss_kb += proc_kb(path, "VmRSS");
            snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pids[i]);
            *pss_kb += proc_kb(path, "Pss");
        }
    }
}

static void
sys_cpu(uint64_t *busy, uint64_t *total)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");

    *busy = *total = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
        for (int i = 0; i < 8; i++)
            *total += v[i];
        *busy = *total - v[3] - v[4];
    }
    fclose(f);
}

static void
sample_all(int end, int mem)
{
    for (int i = 0; i < G.nwatch; i++) {
        struct watch *w = &G.watch[i];
        double cpu, rss, pss;

        tree_sample(w->pid, &cpu, mem ? &rss : NULL, &pss, &w->nproc);
        if (end) {
            w->cpu1_s = cpu;
            if (mem) {
                w->rss1_kb = rss;
                w->pss1_kb = pss;
            }
        } else {
            w->cpu0_s = cpu;
            if (mem) {
                w->rss0_kb = rss;
                w->pss0_kb = pss;
            }
        }
    }
    if (end) {
        getrusage(RUSAGE_SELF, &G.ru1);
        sys_cpu(&G.sys1_busy, &G.sys1_total);
    } else {
        getrusage(RUSAGE_SELF, &G.ru0);
        sys_cpu(&G.sys0_busy, &G.sys0_total);
    }
}

/* ---- credentials -------------------------------------------------------- */

/* Loads "user password [app|account|wrong]" lines; # starts a comment. */
static void
creds_load(const char *path, enum lg_kind dflt)
{
    char line[1024];
    FILE *f = fopen(path, "r");

    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    while (fgets(line, sizeof(line), f) != NULL) {
        char *u, *p, *k, *save = NULL;
        struct cred *c;

        if (line[0] == '#')
            continue;
        u = strtok_r(line, " \t\r\n", &save);
        p = strtok_r(NULL, " \t\r\n", &save);
        k = strtok_r(NULL, " \t\r\n", &save);
        if (u == NULL || p == NULL)
            continue;
        G.creds = realloc(G.creds, (G.ncreds + 1) * sizeof(*G.creds));
        if (G.creds == NULL)
            die("out of memory");
        c = &G.creds[G.ncreds++];
        c->user = strdup(u);
        c->pass = strdup(p);
        c->kind = dflt;
        if (k != NULL)
            c->kind = strcmp(k, "wrong") == 0     ? LG_KIND_WRONG
                      : strcmp(k, "account") == 0 ? LG_KIND_ACCOUNT
                                                  : LG_KIND_APP;
        if (c->user == NULL || c->pass == NULL)
            die("out of memory");
    }
    fclose(f);
}

/* ---- stats ------------------------------------------------------------- */

static void
lat_add(uint64_t ns)
{
    if (G.st.nlat == G.st.caplat) {
        G.st.caplat = G.st.caplat ? G.st.caplat * 2 : 65536;
        G.st.lat_us = realloc(G.st.lat_us, G.st.caplat * sizeof(*G.st.lat_us));
        if (G.st.lat_us == NULL)
            die("out of memory");
    }
    G.st.lat_us[G.st.nlat++] = (uint32_t)(ns / 1000 > UINT32_MAX ? UINT32_MAX : ns / 1000);
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double
pct_ms(double p)
{
    size_t i;

    if (G.st.nlat == 0)
        return 0;
    i = (size_t)(p / 100.0 * (double)G.st.nlat);
    if (i >= G.st.nlat)
        i = G.st.nlat - 1;
    return G.st.lat_us[i] / 1000.0;
}

/* ---- session I/O -------------------------------------------------------- */

struct wreq {
    uv_write_t req;
    char data[];
};

static void
on_written(uv_write_t *req, int status)
{
    free(container_of(req, struct wreq, req));
}

static int
raw_send(struct session *s, const char *data, size_t len)
{
    struct wreq *w;
    uv_buf_t b;

    if (len == 0)
        return 0;
    w = malloc(sizeof(*w) + len);
    if (w == NULL)
        return UV_ENOMEM;
    memcpy(w->data, data, len);
    b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0) {
        free(w);
        return -1;
    }
    return 0;
}

/* Sends what OpenSSL queued in the write BIO, in one write. */
static int
tls_flush(struct session *s)
{
    char buf[16384 + 512];
    int n;

    while ((n = BIO_read(s->wbio, buf, sizeof(buf))) > 0)
        if (raw_send(s, buf, (size_t)n) != 0)
            return -1;
    return 0;
}

static int
send_text(struct session *s, const char *text, size_t len)
{
    if (s->ssl != NULL && SSL_is_init_finished(s->ssl)) {
        if (SSL_write(s->ssl, text, (int)len) <= 0)
            return -1;
        return tls_flush(s);
    }
    return raw_send(s, text, len);
}

static void
set_state(struct session *s, enum lg_state st)
{
    s->state = st;
    s->t_state = now_ns();
    if (G.o.timeout_ms > 0 && st != ST_HOLD)
        uv_timer_again(&s->timer);
    else if (st == ST_HOLD)
        uv_timer_stop(&s->timer);
}

/* IMAP quoted string (RFC 3501): backslash-escape quote and backslash. */
static size_t
imap_quote(char *out, size_t cap, const char *in)
{
    size_t n = 0;

    if (cap < 3)
        return 0;
    out[n++] = '"';
    for (; *in != '\0' && n + 3 < cap; in++) {
        if (*in == '"' || *in == '\\')
            out[n++] = '\\';
        out[n++] = *in;
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

static void
imap_send_login(struct session *s)
{
    char u[600], p[600], cmd[1300];
    int n;

    imap_quote(u, sizeof(u), s->cred->user);
    imap_quote(p, sizeof(p), s->cred->pass);
    n = snprintf(cmd, sizeof(cmd), "b LOGIN %s %s\r\n", u, p);
    set_state(s, ST_LOGIN);
    if (send_text(s, cmd, (size_t)n) != 0)
        session_fail(s, E_EOF);
}

static void
login_succeeded(struct session *s)
{
    uint64_t t = now_ns();

    if (s->recording && !G.window_closed) {
        G.st.ok++;
        lat_add(t - s->t_due);
        if (s->ssl != NULL) {
            if (SSL_session_reused(s->ssl))
                G.st.tls_resumed++;
            else
                G.st.tls_full++;
        }
    }
}

static void tls_begin(struct session *s);

/*
 * One complete server line (CRLF stripped) in the session's state.
 * Returns 0, or -1 when the session ended.
 */
static int
imap_line(struct session *s, const char *line, size_t len)
{
    int tagged_ok = 0, tagged_no = 0;

    if (len >= 4 && line[1] == ' ' && line[0] != '*' && line[0] != '+') {
        tagged_ok = strncasecmp(line + 2, "OK", 2) == 0;
        tagged_no = strncasecmp(line + 2, "NO", 2) == 0;
    }
    switch (s->state) {
    case ST_GREETING:
        if (len < 4 || strncasecmp(line, "* OK", 4) != 0) {
            session_fail(s, E_BAD);
            return -1;
        }
        if (G.o.tls == LG_TLS_STARTTLS && !s->starttls_done) {
            set_state(s, ST_STARTTLS);
            if (send_text(s, "a STARTTLS\r\n", 12) != 0) {
                session_fail(s, E_EOF);
                return -1;
            }
            return 0;
        }
        imap_send_login(s);
        return 0;
    case ST_STARTTLS:
        if (line[0] == '*')
            return 0;
        if (line[0] != 'a' || !tagged_ok) {
            session_fail(s, E_BAD);
            return -1;
        }
        s->starttls_done = 1;
        tls_begin(s);
        return s->ssl == NULL ? -1 : 1; /* 1: drop what follows in this read */
    case ST_LOGIN:
        if (line[0] == '*' || line[0] != 'b')
            return 0;
        if (tagged_ok) {
            if (s->cred->kind == LG_KIND_WRONG) {
                session_fail(s, E_ACCEPTED);
                return -1;
            }
            login_succeeded(s);
            switch (G.o.mode) {
            case LG_MODE_LOGIN:
                set_state(s, ST_LOGOUT);
                if (send_text(s, "c LOGOUT\r\n", 10) != 0) {
                    session_end(s);
                    return -1;
                }
                return 0;
            case LG_MODE_IDLE:
                set_state(s, ST_HOLD);
                G.held++;
                maybe_finish();
                return 0;
            case LG_MODE_FETCH: {
                char cmd[300];
                int n = snprintf(cmd, sizeof(cmd), "d SELECT %s\r\n", G.o.mailbox);

                set_state(s, ST_SELECT);
                if (send_text(s, cmd, (size_t)n) != 0) {
                    session_fail(s, E_EOF);
                    return -1;
                }
                return 0;
            }
            }
        }
        if (tagged_no && s->cred->kind == LG_KIND_WRONG) {
            if (s->recording)
                G.st.refused_expected++;
            session_end(s);
            return -1;
        }
        session_fail(s, tagged_no ? E_REFUSED : E_BAD);
        return -1;
    case ST_LOGOUT:
        if (line[0] == 'c') {
            if (s->recording)
                G.st.done_logouts++;
            session_end(s);
            return -1;
        }
        return 0;
    case ST_SELECT:
    case ST_FETCH:
        /* Untagged data, and the tail of a FETCH after its literal (")"). */
        if (line[0] != 'd' && line[0] != 'e')
            return 0;
        if (!tagged_ok) {
            session_fail(s, E_BAD);
            return -1;
        }
        if (s->state == ST_FETCH && G.recording && !G.window_closed)
            G.st.fetches++;
        if (G.stopping) {
            session_end(s);
            return -1;
        }
        set_state(s, ST_FETCH);
        if (send_text(s, "e FETCH 1 BODY.PEEK[]\r\n", 23) != 0) {
            session_fail(s, E_EOF);
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

/* SASL PLAIN initial response: base64("\0" user "\0" pass). */
static size_t
sasl_plain(char *out, size_t cap, const char *user, const char *pass)
{
    unsigned char raw[1200];
    size_t ul = strlen(user), pl = strlen(pass), n = ul + pl + 2;

    if (n > sizeof(raw) || cap < 4 * ((n + 2) / 3) + 1)
        return 0;
    raw[0] = '\0';
    memcpy(raw + 1, user, ul);
    raw[1 + ul] = '\0';
    memcpy(raw + 2 + ul, pass, pl);
    return (size_t)EVP_EncodeBlock((unsigned char *)out, raw, (int)n);
}

/* POP3 AUTH PLAIN or SMTP AUTH PLAIN, with the initial response: one round trip. */
static void
auth_plain_send(struct session *s)
{
    char b64[1700], cmd[1800];
    int n;

    if (sasl_plain(b64, sizeof(b64), s->cred->user, s->cred->pass) == 0) {
        session_fail(s, E_PROTO);
        return;
    }
    n = snprintf(cmd, sizeof(cmd), "AUTH PLAIN %s\r\n", b64);
    set_state(s, ST_LOGIN);
    if (send_text(s, cmd, (size_t)n) != 0)
        session_fail(s, E_EOF);
}

/* After login in a protocol without FETCH: log out, or hold. */
static int
login_done_simple(struct session *s, const char *quit)
{
    login_succeeded(s);
    if (G.o.mode == LG_MODE_IDLE) {
        set_state(s, ST_HOLD);
        G.held++;
        maybe_finish();
        return 0;
    }
    set_state(s, ST_LOGOUT);
    if (send_text(s, quit, strlen(quit)) != 0) {
        session_end(s);
        return -1;
    }
    return 0;
}

/* A refusal: expected for a wrong password, else an error. */
static int
login_refused(struct session *s)
{
    if (s->cred->kind == LG_KIND_WRONG) {
        if (s->recording)
            G.st.refused_expected++;
        session_end(s);
        return -1;
    }
    session_fail(s, E_REFUSED);
    return -1;
}

/* One POP3 server line: greeting, [STLS], AUTH PLAIN, QUIT. */
static int
pop3_line(struct session *s, const char *line, size_t len)
{
    int ok = len >= 3 && strncmp(line, "+OK", 3) == 0;
    int err = len >= 4 && strncmp(line, "-ERR", 4) == 0;

    switch (s->state) {
    case ST_GREETING:
        if (!ok) {
            session_fail(s, E_BAD);
            return -1;
        }
        if (G.o.tls == LG_TLS_STARTTLS && !s->starttls_done) {
            set_state(s, ST_STARTTLS);
            if (send_text(s, "STLS\r\n", 6) != 0) {
                session_fail(s, E_EOF);
                return -1;
            }
            return 0;
        }
        auth_plain_send(s);
        return 0;
    case ST_STARTTLS:
        if (!ok) {
            session_fail(s, E_BAD);
            return -1;
        }
        s->starttls_done = 1;
        tls_begin(s);
        return s->ssl == NULL ? -1 : 1;
    case ST_LOGIN:
        if (ok) {
            if (s->cred->kind == LG_KIND_WRONG) {
                session_fail(s, E_ACCEPTED);
                return -1;
            }
            return login_done_simple(s, "QUIT\r\n");
        }
        if (err)
            return login_refused(s);
        session_fail(s, E_BAD);
        return -1;
    case ST_LOGOUT:
        if (s->recording)
            G.st.done_logouts++;
        session_end(s);
        return -1;
    default:
        return 0;
    }
}

/* One SMTP server line: 220 greeting, EHLO, [STARTTLS, EHLO], AUTH PLAIN, QUIT. */
static int
smtp_line(struct session *s, const char *line, size_t len)
{
    int code = len >= 3 && isdigit((unsigned char)line[0]) ? atoi(line) : 0;
    int last = len == 3 || (len > 3 && line[3] == ' ');

    if (!last)
        return 0; /* a continuation line of a multi-line reply */
    switch (s->state) {
    case ST_GREETING:
        if (code != 220) {
            session_fail(s, E_BAD);
            return -1;
        }
        set_state(s, ST_EHLO);
        if (send_text(s, "EHLO loadgen.invalid\r\n", 22) != 0) {
            session_fail(s, E_EOF);
            return -1;
        }
        return 0;
    case ST_EHLO:
        if (code != 250) {
            session_fail(s, E_BAD);
            return -1;
        }
        if (G.o.tls == LG_TLS_STARTTLS && !s->starttls_done) {
            set_state(s, ST_STARTTLS);
            if (send_text(s, "STARTTLS\r\n", 10) != 0) {
                session_fail(s, E_EOF);
                return -1;
            }
            return 0;
        }
        auth_plain_send(s);
        return 0;
    case ST_STARTTLS:
        if (code != 220) {
            session_fail(s, E_BAD);
            return -1;
        }
        s->starttls_done = 1;
        tls_begin(s);
        return s->ssl == NULL ? -1 : 1;
    case ST_LOGIN:
        if (code == 235) {
            if (s->cred->kind == LG_KIND_WRONG) {
                session_fail(s, E_ACCEPTED);
                return -1;
            }
            return login_done_simple(s, "QUIT\r\n");
        }
        if (code == 535)
            return login_refused(s);
        session_fail(s, code >= 400 ? E_REFUSED : E_BAD);
        return -1;
    case ST_LOGOUT:
        if (s->recording)
            G.st.done_logouts++;
        session_end(s);
        return -1;
    default:
        return 0;
    }
}

/* What to send once a STARTTLS handshake is done. */
static void
after_starttls(struct session *s)
{
    switch (G.o.p) {
    case LG_IMAP:
        imap_send_login(s);
        break;
    case LG_POP3:
        auth_plain_send(s);
        break;
    case LG_SMTP:
        /* RFC 3207: the client forgets what it knew and says EHLO again. */
        set_state(s, ST_EHLO);
        if (send_text(s, "EHLO loadgen.invalid\r\n", 22) != 0)
            session_fail(s, E_EOF);
        break;
    }
}

static int
proto_line(struct session *s, const char *line, size_t len)
{
    switch (G.o.p) {
    case LG_POP3:
        return pop3_line(s, line, len);
    case LG_SMTP:
        return smtp_line(s, line, len);
    default:
        return imap_line(s, line, len);
    }
}

/* A line ending in {N} announces N literal bytes that follow. */
static size_t
literal_len(const char *line, size_t len)
{
    size_t i;
    unsigned long long v = 0;

    if (len < 3 || line[len - 1] != '}')
        return 0;
    i = len - 2;
    if (line[i] == '+')
        i--;
    while (i > 0 && isdigit((unsigned char)line[i]))
        i--;
    if (line[i] != '{')
        return 0;
    v = strtoull(line + i + 1, NULL, 10);
    return (size_t)v;
}

/* Plaintext from the server: literals skipped (and counted), lines dispatched. */
static void
on_plain(struct session *s, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl;
        size_t take;

        if (s->lit > 0) {
            take = len < s->lit ? len : s->lit;
            s->lit -= take;
            if (G.recording && !G.window_closed)
                G.st.fetch_bytes += take;
            data += take;
            len -= take;
            continue;
        }
        nl = memchr(data, '\n', len);
        take = nl != NULL ? (size_t)(nl - data) + 1 : len;
        if (s->linelen + take > sizeof(s->line) - 1) {
            session_fail(s, E_PROTO);
            return;
        }
        memcpy(s->line + s->linelen, data, take);
        s->linelen += take;
        data += take;
        len -= take;
        if (nl != NULL) {
            size_t l = s->linelen - 1;
            int r;

            if (l > 0 && s->line[l - 1] == '\r')
                l--;
            s->line[l] = '\0';
            s->linelen = 0;
            s->lit = G.o.p == LG_IMAP ? literal_len(s->line, l) : 0;
            r = proto_line(s, s->line, l);
            if (r != 0)
                return; /* ended, or STARTTLS: nothing after it counts */
        }
    }
}

static void
tls_pump(struct session *s)
{
    char buf[16384];
    int n;

    if (!SSL_is_init_finished(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);

        if (tls_flush(s) != 0) {
            session_fail(s, E_EOF);
            return;
        }
        if (r <= 0) {
            int e = SSL_get_error(s->ssl, r);

            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                session_fail(s, E_TLS);
            return;
        }
        if (s->starttls_done)
            after_starttls(s);
        else
            set_state(s, ST_GREETING);
    }
    for (;;) {
        n = SSL_read(s->ssl, buf, sizeof(buf));
        if (n <= 0) {
            int e = SSL_get_error(s->ssl, n);

            if (tls_flush(s) != 0) {
                session_fail(s, E_EOF);
                return;
            }
            if (e == SSL_ERROR_ZERO_RETURN)
                session_fail(s, E_EOF);
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                session_fail(s, E_TLS);
            return;
        }
        on_plain(s, buf, (size_t)n);
        if (s->finished)
            return;
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* One loop, one read at a time: all sessions share one buffer. */
    *buf = uv_buf_init(G.readbuf, sizeof(G.readbuf));
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct session *s = container_of((uv_tcp_t *)stream, struct session, tcp);

    if (nread == 0 || s->finished)
        return;
    if (nread < 0) {
        if (s->state == ST_LOGOUT) {
            if (s->recording)
                G.st.done_logouts++;
            session_end(s);
        } else {
            session_fail(s, E_EOF);
        }
        return;
    }
    if (s->ssl != NULL) {
        if (BIO_write(s->rbio, buf->base, (int)nread) != (int)nread) {
            session_fail(s, E_TLS);
            return;
        }
        tls_pump(s);
    } else {
        on_plain(s, buf->base, (size_t)nread);
    }
}

static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    if (G.nsaved == LG_TICKETS) {
        SSL_SESSION_free(G.saved[0]);
        memmove(&G.saved[0], &G.saved[1], sizeof(G.saved[0]) * (LG_TICKETS - 1));
        G.nsaved--;
    }
    G.saved[G.nsaved++] = sess;
    return 1; /* we keep the reference */
}

static void
tls_begin(struct session *s)
{
    s->ssl = SSL_new(G.ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->ssl == NULL || s->rbio == NULL || s->wbio == NULL) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        s->ssl = NULL;
        session_fail(s, E_TLS);
        return;
    }
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_connect_state(s->ssl);
    if (G.o.resume && G.nsaved > 0) {
        SSL_SESSION *t = G.saved[--G.nsaved];

        SSL_set_session(s->ssl, t);
        SSL_SESSION_free(t);
    }
    set_state(s, ST_TLS);
    tls_pump(s);
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct session *s = container_of(req, struct session, creq);

    if (s->finished)
        return;
    if (status != 0) {
        session_fail(s, E_CONNECT);
        return;
    }
    uv_tcp_nodelay(&s->tcp, 1);
    if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0) {
        session_fail(s, E_CONNECT);
        return;
    }
    if (G.o.tls == LG_TLS_IMPLICIT)
        tls_begin(s);
    else
        set_state(s, ST_GREETING);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct session *s = h->data;

    if (--s->handles == 0) {
        if (s->ssl != NULL) {
            /* Closed as if after close_notify: OpenSSL would otherwise mark
             * the session (our saved ticket) not resumable. */
            SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            SSL_free(s->ssl);
        }
        free(s);
    }
}

static void
session_close(struct session *s)
{
    if (s->state == ST_HOLD)
        G.held--;
    G.active--;
    s->tcp.data = s;
    s->timer.data = s;
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
}

/* The session ended as it should; start the next one (closed loop). */
static void
session_end(struct session *s)
{
    if (s->finished)
        return;
    s->finished = 1;
    session_close(s);
    if (G.o.rate <= 0 && !G.stopping && G.o.mode == LG_MODE_LOGIN)
        session_start(now_ns());
    maybe_finish();
}

static void
session_fail(struct session *s, enum lg_err e)
{
    if (s->finished)
        return;
    if (s->recording || G.recording)
        G.st.err[e][s->state]++;
    session_end(s);
}

static void
on_timeout(uv_timer_t *t)
{
    struct session *s = container_of(t, struct session, timer);

    session_fail(s, E_TIMEOUT);
}

static int
out_of_work(void)
{
    if (G.o.count > 0 && G.st.started >= (uint64_t)G.o.count)
        return 1;
    if (G.o.once && G.next_cred >= G.ncreds)
        return 1;
    return 0;
}

static void
session_start(uint64_t due)
{
    struct session *s;

    if (G.stopping || out_of_work())
        return;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        die("out of memory");
    s->cred = &G.creds[G.next_cred++ % G.ncreds];
    s->t_due = due;
    s->recording = G.recording;
    if (s->recording)
        G.st.started++;
    G.active++;
    s->handles = 2;
    uv_tcp_init(G.loop, &s->tcp);
    uv_timer_init(G.loop, &s->timer);
    s->tcp.data = s;
    s->timer.data = s;
    if (G.o.timeout_ms > 0)
        uv_timer_start(&s->timer, on_timeout, (uint64_t)G.o.timeout_ms,
                       (uint64_t)G.o.timeout_ms);
    s->state = ST_CONNECT;
    s->t_state = now_ns();
    if (uv_tcp_connect(&s->creq, &s->tcp, (struct sockaddr *)&G.addr, on_connect) != 0)
        session_fail(s, E_CONNECT);
}

/* ---- the run ------------------------------------------------------------ */

static void
close_walk(uv_handle_t *h, void *arg)
{
    struct session *s = h->data;

    if (h == (uv_handle_t *)&G.tick || uv_is_closing(h))
        return;
    if (s != NULL && h->type == UV_TCP && !s->finished) {
        s->finished = 1;
        session_close(s);
    }
}

static void
stop_all(void)
{
    if (!uv_is_closing((uv_handle_t *)&G.tick))
        uv_close((uv_handle_t *)&G.tick, NULL);
    uv_walk(G.loop, close_walk, NULL);
}

/* Ends the run when nothing is left to do. */
static void
maybe_finish(void)
{
    if (G.o.mode == LG_MODE_IDLE) {
        if (!G.stopping && (long)G.st.started >= G.o.concurrency && G.active == G.held &&
            G.mem_sampled == 0) {
            G.mem_sampled = 1; /* the tick samples after a settle second */
            G.t_stop = now_ns() + 1000000000ULL;
        }
        return;
    }
    if ((G.stopping || out_of_work()) && G.active == 0) {
        if (G.t_end_ns == 0) {
            G.t_end_ns = now_ns();
            G.window_closed = 1;
            sample_all(1, 0);
        }
        stop_all();
    }
}

static void
begin_recording(void)
{
    G.recording = 1;
    G.t_rec = now_ns();
    sample_all(0, G.o.mode == LG_MODE_IDLE);
}

static void
on_tick(uv_timer_t *t)
{
    uint64_t now = now_ns();

    if (!G.recording && now >= G.t0 + (uint64_t)(G.o.warmup_s * 1e9))
        begin_recording();
    if (G.o.mode == LG_MODE_IDLE) {
        /* Ramp: up to concurrency sessions, at --rate per second. */
        while (!G.stopping && G.active < G.o.concurrency && G.next_due <= now &&
               (long)G.st.started < G.o.concurrency) {
            session_start(now);
            G.next_due += (uint64_t)(1e9 / (G.o.rate > 0 ? G.o.rate : 2000));
        }
        if (G.mem_sampled == 1 && now >= G.t_stop) {
            G.mem_sampled = 2;
            G.t_end_ns = now;
            G.held_at_sample = G.held;
            sample_all(1, 1);
            G.stopping = 1;
            stop_all();
            return;
        }
        if (!G.stopping && now >= G.t0 + (uint64_t)((G.o.duration_s + G.o.warmup_s) * 1e9)) {
            /* Ramp did not complete in time: sample what is held. */
            G.t_end_ns = now;
            G.held_at_sample = G.held;
            sample_all(1, 1);
            G.mem_sampled = 2;
            G.stopping = 1;
            stop_all();
        }
        return;
    }
    if (!G.stopping && G.o.duration_s > 0 &&
        now >= G.t0 + (uint64_t)((G.o.duration_s + G.o.warmup_s) * 1e9)) {
        /* The window closes now; in-flight logins finish but do not count. */
        G.stopping = 1;
        G.window_closed = 1;
        G.t_stop = now;
        G.t_end_ns = now;
        sample_all(1, 0);
    }
    if (G.stopping) {
        /* In-flight sessions get their timeout to finish, then are dropped. */
        if (G.active == 0 ||
            now >= G.t_stop + (uint64_t)G.o.timeout_ms * 1000000ULL + 1000000000ULL)
            stop_all();
        return;
    }
    if (G.o.rate > 0) {
        while (G.next_due <= now && G.active < G.o.concurrency && !out_of_work()) {
            session_start(G.next_due);
            G.next_due += (uint64_t)(1e9 / G.o.rate);
        }
    }
    maybe_finish();
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: mfa-loadgen --port N [options]\n"
            "  --host A              server address (default 127.0.0.1)\n"
            "  --proto imap          imap, pop3 (AUTH PLAIN) or smtp (EHLO, AUTH PLAIN)\n"
            "  --tls MODE            plain | implicit | starttls (default plain)\n"
            "  --resume              offer the last TLS session ticket (resumption)\n"
            "  --concurrency N       sessions in flight (default 1)\n"
            "  --duration S          measured seconds (default 10)\n"
            "  --warmup S            unmeasured seconds first (default 0)\n"
            "  --count N             stop after N logins instead\n"
            "  --rate R              open loop: R logins/s (default: closed loop)\n"
            "  --users FILE          'user password [app|account|wrong]' lines (repeatable)\n"
            "  --once                use each listed credential once, then stop\n"
            "  --mode M              login | idle | fetch (default login)\n"
            "  --mailbox NAME        fetch mode: mailbox to SELECT (default INBOX)\n"
            "  --timeout MS          per-state timeout (default 10000)\n"
            "  --watch LABEL=PID     report CPU/memory of this process tree (repeatable)\n"
            "  --label TEXT          copied into the JSON line\n"
            "  --quiet               only the JSON line\n");
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, 0, 'H'},        {"port", 1, 0, 'p'},     {"proto", 1, 0, 'P'},
        {"tls", 1, 0, 't'},         {"resume", 0, 0, 'r'},   {"concurrency", 1, 0, 'c'},
        {"duration", 1, 0, 'd'},    {"warmup", 1, 0, 'w'},   {"count", 1, 0, 'n'},
        {"rate", 1, 0, 'R'},        {"users", 1, 0, 'u'},    {"once", 0, 0, 'o'},
        {"mode", 1, 0, 'm'},        {"mailbox", 1, 0, 'b'},  {"timeout", 1, 0, 'T'},
        {"watch", 1, 0, 'W'},       {"label", 1, 0, 'l'},    {"quiet", 0, 0, 'q'},
        {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    int ch;

    G.o.host = "127.0.0.1";
    G.o.proto = "imap";
    G.o.concurrency = 1;
    G.o.duration_s = 10;
    G.o.timeout_ms = 10000;
    G.o.label = "";
    G.o.mailbox = "INBOX";
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'H': G.o.host = optarg; break;
        case 'p': G.o.port = atoi(optarg); break;
        case 'P': G.o.proto = optarg; break;
        case 't':
            if (strcmp(optarg, "plain") == 0)
                G.o.tls = LG_TLS_PLAIN;
            else if (strcmp(optarg, "implicit") == 0)
                G.o.tls = LG_TLS_IMPLICIT;
            else if (strcmp(optarg, "starttls") == 0)
                G.o.tls = LG_TLS_STARTTLS;
            else
                usage();
            break;
        case 'r': G.o.resume = 1; break;
        case 'c': G.o.concurrency = atoi(optarg); break;
        case 'd': G.o.duration_s = atof(optarg); break;
        case 'w': G.o.warmup_s = atof(optarg); break;
        case 'n': G.o.count = atol(optarg); break;
        case 'R': G.o.rate = atof(optarg); break;
        case 'u': creds_load(optarg, LG_KIND_APP); break;
        case 'o': G.o.once = 1; break;
        case 'm':
            if (strcmp(optarg, "login") == 0)
                G.o.mode = LG_MODE_LOGIN;
            else if (strcmp(optarg, "idle") == 0)
                G.o.mode = LG_MODE_IDLE;
            else if (strcmp(optarg, "fetch") == 0)
                G.o.mode = LG_MODE_FETCH;
            else
                usage();
            break;
        case 'b': G.o.mailbox = optarg; break;
        case 'T': G.o.timeout_ms = atoi(optarg); break;
        case 'W': {
            char *eq = strchr(optarg, '=');

            if (eq == NULL || G.nwatch == LG_WATCH_MAX)
                usage();
            snprintf(G.watch[G.nwatch].label, sizeof(G.watch[0].label), "%.*s",
                     (int)(eq - optarg), optarg);
            G.watch[G.nwatch].pid = atoi(eq + 1);
            G.nwatch++;
            break;
        }
        case 'l': G.o.label = optarg; break;
        case 'q': G.o.quiet = 1; break;
        default: usage();
        }
    }
    if (G.o.port <= 0 || G.o.concurrency <= 0 || G.ncreds == 0)
        usage();
    if (strcmp(G.o.proto, "imap") == 0)
        G.o.p = LG_IMAP;
    else if (strcmp(G.o.proto, "pop3") == 0)
        G.o.p = LG_POP3;
    else if (strcmp(G.o.proto, "smtp") == 0)
        G.o.p = LG_SMTP;
    else
        die("protocol %s: imap, pop3 or smtp", G.o.proto);
    if (G.o.p != LG_IMAP && G.o.mode == LG_MODE_FETCH)
        die("--mode fetch is IMAP only");
}

static void
setup_tls(void)
{
    G.ctx = SSL_CTX_new(TLS_client_method());
    if (G.ctx == NULL || !SSL_CTX_set_min_proto_version(G.ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set1_groups_list(G.ctx, "X25519"))
        die("TLS setup failed");
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(G.ctx, on_new_session);
}

/* Prints a JSON string value (labels and names are plain ASCII here). */
static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static void
report(void)
{
    double secs = (double)(G.t_end_ns - G.t_rec) / 1e9;
    double self_cpu = (double)(G.ru1.ru_utime.tv_sec - G.ru0.ru_utime.tv_sec) +
                      (double)(G.ru1.ru_stime.tv_sec - G.ru0.ru_stime.tv_sec) +
                      (double)(G.ru1.ru_utime.tv_usec - G.ru0.ru_utime.tv_usec) / 1e6 +
                      (double)(G.ru1.ru_stime.tv_usec - G.ru0.ru_stime.tv_usec) / 1e6;
    double self_pct = secs > 0 ? 100.0 * self_cpu / secs : 0;
    double sys_pct = G.sys1_total > G.sys0_total
                         ? 100.0 * (double)(G.sys1_busy - G.sys0_busy) /
                               (double)(G.sys1_total - G.sys0_total)
                         : 0;
    double rate = secs > 0 ? (double)G.st.ok / secs : 0;
    double mbps = secs > 0 ? (double)G.st.fetch_bytes / secs / 1e6 : 0;
    uint64_t errs = 0;
    int bound = self_pct > 85.0;
    const char *tls = G.o.tls == LG_TLS_PLAIN ? "plain" : G.o.tls == LG_TLS_IMPLICIT ? "implicit"
                                                                                    : "starttls";
    const char *mode = G.o.mode == LG_MODE_LOGIN ? "login" : G.o.mode == LG_MODE_IDLE ? "idle"
                                                                                     : "fetch";
    int first;

    qsort(G.st.lat_us, G.st.nlat, sizeof(*G.st.lat_us), cmp_u32);
    for (int e = 0; e < E_COUNT; e++)
        for (int s = 0; s < ST_COUNT; s++)
            errs += G.st.err[e][s];

    if (!G.o.quiet) {
        printf("%s %s %s%s c=%d%s: %.2f s measured\n", G.o.label, G.o.proto, tls,
               G.o.resume ? "+resume" : "", G.o.concurrency, G.o.rate > 0 ? " open-loop" : "",
               secs);
        printf("  logins ok %" PRIu64 " (%.1f/s), refused as expected %" PRIu64
               ", errors %" PRIu64 "\n",
               G.st.ok, rate, G.st.refused_expected, errs);
        printf("  latency ms p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f\n", pct_ms(50),
               pct_ms(90), pct_ms(99), pct_ms(99.9), pct_ms(100));
        if (G.st.tls_full + G.st.tls_resumed > 0)
            printf("  tls full %" PRIu64 " resumed %" PRIu64 "\n", G.st.tls_full,
                   G.st.tls_resumed);
        if (G.o.mode == LG_MODE_FETCH)
            printf("  fetched %" PRIu64 " messages, %.1f MB/s\n", G.st.fetches, mbps);
        for (int e = 0; e < E_COUNT; e++)
            for (int s = 0; s < ST_COUNT; s++)
                if (G.st.err[e][s])
                    printf("  error %s@%s: %" PRIu64 "\n", err_names[e], state_names[s],
                           G.st.err[e][s]);
        for (int i = 0; i < G.nwatch; i++) {
            struct watch *w = &G.watch[i];
            double cpu = w->cpu1_s - w->cpu0_s;

            printf("  %s (pid %d, %d procs): cpu %.2f s = %.1f%% of a core, %.1f us/login", w->label,
                   w->pid, w->nproc, cpu, secs > 0 ? 100 * cpu / secs : 0,
                   G.st.ok ? 1e6 * cpu / (double)G.st.ok : 0);
            if (G.o.mode == LG_MODE_IDLE)
                printf(", rss %.0f->%.0f kB, pss %.0f->%.0f kB, %.1f kB/session (pss)",
                       w->rss0_kb, w->rss1_kb, w->pss0_kb, w->pss1_kb,
                       G.held_at_sample ? (w->pss1_kb - w->pss0_kb) / G.held_at_sample : 0);
            printf("\n");
        }
        printf("  generator cpu %.1f%% of a core%s; machine busy %.0f%%\n", self_pct,
               bound ? " -- THE GENERATOR WAS THE BOTTLENECK" : "", sys_pct);
    }
    printf("{\"label\":");
    json_str(G.o.label);
    printf(",\"proto\":\"%s\",\"tls\":\"%s\",\"resume\":%d,\"mode\":\"%s\",\"concurrency\":%d,"
           "\"target_rate\":%.1f,\"seconds\":%.3f,\"started\":%" PRIu64 ",\"ok\":%" PRIu64
           ",\"refused_expected\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"rate\":%.2f,"
           "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,"
           "\"tls_full\":%" PRIu64 ",\"tls_resumed\":%" PRIu64 ",\"fetches\":%" PRIu64
           ",\"fetch_mb_s\":%.2f,\"held\":%d,\"gen_cpu_pct\":%.1f,\"gen_bound\":%s,"
           "\"machine_busy_pct\":%.1f,\"errors_by_kind\":{",
           G.o.proto, tls, G.o.resume, mode, G.o.concurrency, G.o.rate, secs, G.st.started,
           G.st.ok, G.st.refused_expected, errs, rate, pct_ms(50), pct_ms(90), pct_ms(99),
           pct_ms(99.9), pct_ms(100), G.st.tls_full, G.st.tls_resumed, G.st.fetches, mbps,
           G.held_at_sample, self_pct, bound ? "true" : "false", sys_pct);
    first = 1;
    for (int e = 0; e < E_COUNT; e++)
        for (int s = 0; s < ST_COUNT; s++)
            if (G.st.err[e][s]) {
                printf("%s\"%s@%s\":%" PRIu64, first ? "" : ",", err_names[e], state_names[s],
                       G.st.err[e][s]);
                first = 0;
            }
    printf("},\"servers\":{");
    for (int i = 0; i < G.nwatch; i++) {
        struct watch *w = &G.watch[i];
        double cpu = w->cpu1_s - w->cpu0_s;

        printf("%s", i ? "," : "");
        json_str(w->label);
        printf(":{\"pid\":%d,\"procs\":%d,\"cpu_s\":%.3f,\"cpu_us_per_login\":%.1f,"
               "\"rss0_kb\":%.0f,\"rss1_kb\":%.0f,\"pss0_kb\":%.0f,\"pss1_kb\":%.0f,"
               "\"pss_kb_per_session\":%.2f,\"rss_kb_per_session\":%.2f}",
               w->pid, w->nproc, cpu, G.st.ok ? 1e6 * cpu / (double)G.st.ok : 0, w->rss0_kb,
               w->rss1_kb, w->pss0_kb, w->pss1_kb,
               G.held_at_sample ? (w->pss1_kb - w->pss0_kb) / G.held_at_sample : 0,
               G.held_at_sample ? (w->rss1_kb - w->rss0_kb) / G.held_at_sample : 0);
    }
    printf("}}\n");
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&G.addr;

    signal(SIGPIPE, SIG_IGN);
    parse_args(argc, argv);
    if (uv_ip4_addr(G.o.host, G.o.port, sin) != 0)
        die("bad address %s", G.o.host);
    setup_tls();
    G.loop = uv_default_loop();
    uv_timer_init(G.loop, &G.tick);
    G.t0 = now_ns();
    G.next_due = G.t0;
    if (G.o.warmup_s <= 0)
        begin_recording();
    if (G.o.rate <= 0 && G.o.mode == LG_MODE_LOGIN)
        for (int i = 0; i < G.o.concurrency; i++)
            session_start(G.t0);
    if (G.o.mode == LG_MODE_FETCH)
        for (int i = 0; i < G.o.concurrency; i++)
            session_start(G.t0);
    uv_timer_start(&G.tick, on_tick, 1, 1);
    uv_run(G.loop, UV_RUN_DEFAULT);
    if (G.t_end_ns == 0) {
        G.t_end_ns = now_ns();
        sample_all(1, 0);
    }
    report();
    uv_loop_close(G.loop);
    while (G.nsaved > 0)
        SSL_SESSION_free(G.saved[--G.nsaved]);
    SSL_CTX_free(G.ctx);
    return 0;
}
