/*
 * fastback.c - mfa-fastback, a minimal fast IMAP (or POP3, or SMTP) backend
 * for the benchmark.
 *
 * IMAP: it greets, accepts any login (LOGIN with quoted strings or literals, as
 * nginx sends it; AUTHENTICATE PLAIN with SASL-IR or a continuation, as
 * mfagate sends it through its master user), answers ID, NOOP, CAPABILITY,
 * SELECT and LOGOUT, and says OK to anything else.  POP3: +OK to
 * everything (XCLIENT, AUTH PLAIN with an initial response, USER/PASS),
 * QUIT closes.  SMTP: EHLO offers XCLIENT and AUTH PLAIN, XCLIENT answers
 * with a new 220, AUTH with 235, QUIT closes, anything else is 250.
 * With it behind a proxy,
 * the proxy's own ceiling shows instead of Dovecot's.  One thread, one loop,
 * a fixed small buffer per connection: many idle sessions cost it little.
 *
 * Not a mail server: it checks no password and stores nothing.  Loopback
 * benchmarking only.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#define FB_LINE_MAX 4096

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

struct client {
    uv_tcp_t tcp;
    int closing;
    int want_sasl;        /* the next line is an AUTHENTICATE PLAIN response */
    char tag[64];         /* of the AUTHENTICATE waiting for its response */
    size_t lit;           /* literal bytes still to take into the line */
    size_t len;
    char line[FB_LINE_MAX];
};

enum fb_proto { FB_IMAP = 0, FB_POP3, FB_SMTP };

/* Set once from argv before the loop runs. */
static enum fb_proto fb_proto = FB_IMAP;
static char readbuf[64 * 1024];
static const char greeting[] =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN] fastback ready\r\n";
static const char caps[] = "IMAP4rev1 SASL-IR LITERAL+ ID IDLE ENABLE";

struct wreq {
    uv_write_t req;
    int close_after;
    char data[];
};

static void
on_closed(uv_handle_t *h)
{
    free(container_of((uv_tcp_t *)h, struct client, tcp));
}

static void
client_close(struct client *c)
{
    if (!c->closing) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
}

static void
on_written(uv_write_t *req, int status)
{
    struct wreq *w = container_of(req, struct wreq, req);

    if (w->close_after || status != 0)
        client_close(container_of((uv_tcp_t *)req->handle, struct client, tcp));
    free(w);
}

static void
reply(struct client *c, int close_after, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
reply(struct client *c, int close_after, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;
    struct wreq *w;
    uv_buf_t b;

    if (c->closing)
        return;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf))
        n = (int)sizeof(buf) - 1;
    w = malloc(sizeof(*w) + (size_t)n);
    if (w == NULL) {
        client_close(c);
        return;
    }
    w->close_after = close_after;
    memcpy(w->data, buf, (size_t)n);
    b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(w);
        client_close(c);
    }
}

/* One POP3 command line. */
static void
pop3_command(struct client *c, char *line)
{
    if (strncasecmp(line, "QUIT", 4) == 0)
        reply(c, 1, "+OK bye\r\n");
    else if (strncasecmp(line, "CAPA", 4) == 0)
        reply(c, 0, "+OK\r\nUSER\r\nSASL PLAIN\r\nXCLIENT\r\n.\r\n");
    else if (strncasecmp(line, "AUTH", 4) == 0 && strchr(line + 5, ' ') == NULL)
        reply(c, 0, "+ \r\n"); /* no initial response: the next line is it */
    else
        reply(c, 0, "+OK done\r\n");
}

/* One SMTP command line. */
static void
smtp_command(struct client *c, char *line)
{
    if (strncasecmp(line, "EHLO", 4) == 0)
        reply(c, 0, "250-fastback\r\n250-PIPELINING\r\n250-XCLIENT ADDR PORT HELO\r\n"
                    "250-AUTH PLAIN\r\n250 8BITMIME\r\n");
    else if (strncasecmp(line, "XCLIENT", 7) == 0)
        reply(c, 0, "220 fastback ESMTP\r\n");
    else if (strncasecmp(line, "AUTH", 4) == 0)
        reply(c, 0, "235 2.7.0 ok\r\n");
    else if (strncasecmp(line, "QUIT", 4) == 0)
        reply(c, 1, "221 2.0.0 bye\r\n");
    else if (strncasecmp(line, "DATA", 4) == 0)
        reply(c, 0, "354 go ahead\r\n");
    else
        reply(c, 0, "250 2.0.0 ok\r\n");
}

/* One complete command line (literals already folded in). */
static void
command(struct client *c, char *line)
{
    if (fb_proto == FB_POP3) {
        pop3_command(c, line);
        return;
    }
    if (fb_proto == FB_SMTP) {
        smtp_command(c, line);
        return;
    }
    char *tag = line, *cmd, *sp;

    if (c->want_sasl) {
        c->want_sasl = 0;
        if (strcmp(line, "*") == 0)
            reply(c, 0, "%s BAD Cancelled\r\n", c->tag);
        else
            reply(c, 0, "%s OK [CAPABILITY %s] Logged in\r\n", c->tag, caps);
        return;
    }
    sp = strchr(line, ' ');
    if (sp == NULL) {
        reply(c, 0, "* BAD Missing command\r\n");
        return;
    }
    *sp = '\0';
    cmd = sp + 1;
    sp = strchr(cmd, ' ');
    if (sp != NULL)
        *sp = '\0';
    if (strlen(tag) >= sizeof(c->tag))
        tag[sizeof(c->tag) - 1] = '\0';
    if (strcasecmp(cmd, "LOGIN") == 0) {
        reply(c, 0, "%s OK [CAPABILITY %s] Logged in\r\n", tag, caps);
    } else if (strcasecmp(cmd, "AUTHENTICATE") == 0) {
        /* "PLAIN <initial response>" answers at once; "PLAIN" alone asks. */
        char *mech = sp != NULL ? sp + 1 : "";
        char *ir = strchr(mech, ' ');

        if (ir != NULL) {
            reply(c, 0, "%s OK [CAPABILITY %s] Logged in\r\n", tag, caps);
        } else {
            snprintf(c->tag, sizeof(c->tag), "%s", tag);
            c->want_sasl = 1;
            reply(c, 0, "+ \r\n");
        }
    } else if (strcasecmp(cmd, "ID") == 0) {
        reply(c, 0, "* ID NIL\r\n%s OK ID completed\r\n", tag);
    } else if (strcasecmp(cmd, "CAPABILITY") == 0) {
        reply(c, 0, "* CAPABILITY %s\r\n%s OK done\r\n", caps, tag);
    } else if (strcasecmp(cmd, "SELECT") == 0 || strcasecmp(cmd, "EXAMINE") == 0) {
        reply(c, 0, "* 0 EXISTS\r\n* 0 RECENT\r\n%s OK [READ-WRITE] selected\r\n", tag);
    } else if (strcasecmp(cmd, "LOGOUT") == 0) {
        reply(c, 1, "* BYE fastback\r\n%s OK Logout completed\r\n", tag);
    } else if (strcasecmp(cmd, "STARTTLS") == 0) {
        reply(c, 0, "%s NO no TLS here\r\n", tag);
    } else {
        reply(c, 0, "%s OK done\r\n", tag);
    }
}

/* A line ending in {N} or {N+}: N literal bytes follow; 0 if none. */
static size_t
literal_len(const char *line, size_t len, int *plus)
{
    size_t i;

    *plus = 0;
    if (len < 3 || line[len - 1] != '}')
        return 0;
    i = len - 2;
    if (line[i] == '+') {
        *plus = 1;
        i--;
    }
    while (i > 0 && line[i] >= '0' && line[i] <= '9')
        i--;
    if (line[i] != '{')
        return 0;
    return (size_t)strtoul(line + i + 1, NULL, 10);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    *buf = uv_buf_init(readbuf, sizeof(readbuf));
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct client *c = container_of((uv_tcp_t *)stream, struct client, tcp);
    const char *p = buf->base;
    size_t left;

    if (nread < 0) {
        client_close(c);
        return;
    }
    left = (size_t)nread;
    while (left > 0 && !c->closing) {
        if (c->lit > 0) {
            size_t take = left < c->lit ? left : c->lit;

            if (c->len + take >= sizeof(c->line)) {
                client_close(c);
                return;
            }
            memcpy(c->line + c->len, p, take);
            c->len += take;
            c->lit -= take;
            p += take;
            left -= take;
            continue;
        }
        const char *nl = memchr(p, '\n', left);
        size_t take = nl != NULL ? (size_t)(nl - p) + 1 : left;

        if (c->len + take >= sizeof(c->line)) {
            reply(c, 1, "* BYE line too long\r\n");
            return;
        }
        memcpy(c->line + c->len, p, take);
        c->len += take;
        p += take;
        left -= take;
        if (nl != NULL) {
            size_t l = c->len - 1;
            int plus;
            size_t n;

            if (l > 0 && c->line[l - 1] == '\r')
                l--;
            c->line[l] = '\0';
            n = fb_proto == FB_IMAP ? literal_len(c->line, l, &plus) : 0;
            if (n > 0 && n < sizeof(c->line) - l - 2) {
                /* Keep the line; the literal's bytes join it, then the rest. */
                c->len = l;
                c->lit = n;
                if (!plus)
                    reply(c, 0, "+ go ahead\r\n");
                continue;
            }
            c->len = 0;
            command(c, c->line);
        }
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct client *c;

    if (status != 0)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        client_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (fb_proto == FB_POP3)
        reply(c, 0, "+OK fastback ready\r\n");
    else if (fb_proto == FB_SMTP)
        reply(c, 0, "220 fastback ESMTP\r\n");
    else
        reply(c, 0, "%s", greeting);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void
on_signal(uv_signal_t *h, int sig)
{
    uv_stop(h->loop);
}

int
main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_signal_t sterm, sint;
    struct sockaddr_in addr;
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    int port = argc > 1 ? atoi(argv[1]) : 0;
    int r;

    if (argc > 3 && strcmp(argv[3], "pop3") == 0)
        fb_proto = FB_POP3;
    else if (argc > 3 && strcmp(argv[3], "smtp") == 0)
        fb_proto = FB_SMTP;
    else if (argc > 3 && strcmp(argv[3], "imap") != 0)
        port = 0;
    if (port <= 0) {
        fprintf(stderr, "usage: mfa-fastback PORT [ADDRESS [imap|pop3|smtp]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_ip4_addr(host, port, &addr);
    uv_tcp_init(loop, &server);
    if ((r = uv_tcp_bind(&server, (struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&server, 4096, on_connection)) != 0) {
        fprintf(stderr, "mfa-fastback: %s:%d: %s\n", host, port, uv_strerror(r));
        return 1;
    }
    uv_signal_init(loop, &sterm);
    uv_signal_init(loop, &sint);
    uv_signal_start(&sterm, on_signal, SIGTERM);
    uv_signal_start(&sint, on_signal, SIGINT);
    fprintf(stderr, "mfa-fastback: listening on %s:%d\n", host, port);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
