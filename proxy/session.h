/*
 * session.h - one client connection through the proxy, protocol-neutral.
 *
 * A session owns its client connection, the backend connection of the
 * current login attempt (if any), two timers (the state's deadline and the
 * refusal delay) and the credentials of a login in progress.  It is freed
 * when every one of those handles has closed.  The protocol (imap.c, later
 * pop3.c and smtp.c) plugs in through struct session_proto and keeps its
 * own state in the union at the end.
 *
 * States:
 *   PREAUTH  the proxy speaks the protocol itself; the parser is fed
 *   AUTH     the auth decision runs (client reads paused)
 *   BACKEND  logging in at the backend (client reads paused)
 *   RELAY    bytes flow both ways unchanged
 */
#ifndef MFA_SESSION_H
#define MFA_SESSION_H

#include <stdint.h>

#include "auth/auth.h"
#include "core/conn.h"
#include "proxy/imap_parse.h"
#include "proxy/proxy.h"

enum session_state {
    SESSION_PREAUTH = 0,
    SESSION_AUTH,
    SESSION_BACKEND,
    SESSION_RELAY,
};

struct session;

struct session_proto {
    const char *name;                      /* "imap", for logs */
    enum config_proto proto;
    /* Sends the greeting (queued until TLS is up on implicit-TLS ports). */
    void (*greet)(struct session *s);
    /* Client bytes in PREAUTH. */
    void (*client_read)(struct session *s, const char *data, size_t len);
    /* The decision for the login in s->user / s->pass. */
    void (*auth_done)(struct session *s, const struct auth_outcome *o);
    /* The backend connection is up (after implicit TLS if configured). */
    void (*backend_up)(struct session *s);
    /* Backend bytes during the login dialog. */
    void (*backend_read)(struct session *s, const char *data, size_t len);
    /* The login attempt failed for want of a backend: tell the client. */
    void (*backend_down)(struct session *s);
    /* Pre-auth time is up, or the server is stopping: say goodbye. */
    void (*bye)(struct session *s, const char *why);
};

struct imap_session {
    /* Only while before login: a parser is ~16 KiB, idle relays keep none. */
    struct imap_parser *parser;
    char tag[IMAP_TAG_MAX + 1];            /* of the login in progress */
    int sasl_step;                         /* AUTHENTICATE continuation step */
    int backend_step;                      /* backend login dialog step */
    char *caps;                            /* the backend's post-login capabilities */
};

struct session {
    struct session *prev, *next;           /* the worker's list */
    struct proxy_worker *pw;
    const struct session_proto *proto;
    const struct config_listener *listener;
    uint64_t id;
    enum session_state state;

    struct conn client;
    struct conn *backend;                  /* the current attempt, or NULL */
    uv_timer_t timer;                      /* the state's deadline */
    uv_timer_t delay;                      /* refusal padding */
    void (*delayed)(struct session *s);    /* what runs when delay fires */
    int handles;                           /* open handles, the session included */
    int closing;
    int tls;                               /* the client side is encrypted */
    int client_paused;                     /* reads stopped for backpressure */
    int backend_paused;

    char addr[64];                         /* client address, for logs and the backend */
    int port;
    uint64_t started_ms;
    uint64_t last_activity_ms;
    uint64_t login_started_ms;
    int ncommands;                         /* pre-auth commands so far */

    /* The login in progress; pass is wiped once the backend has answered. */
    char user[AUTH_USER_MAX];
    char pass[AUTH_PASS_MAX];
    struct auth_pending *auth;
    enum auth_result how;
    int64_t apppw_id;
    struct auth_live live;
    int live_added;

    /* Client bytes that came behind a login command: replayed afterwards. */
    char *pending;
    size_t pending_len;
    /* Backend bytes of the login dialog not yet split into lines. */
    char *bbuf;
    size_t bbuf_len;

    union {
        struct imap_session imap;
    } u;
};

/* The protocols. */
extern const struct session_proto imap_session_proto;

/* The protocol a listener serves, or NULL if this build has none for it. */
const struct session_proto *session_proto_for(enum config_proto proto);

/* Accepts a connection from listener l; the session greets by itself. */
void session_accept(struct proxy_listener *l);

/* Sends bytes / a formatted line to the client. */
void session_send(struct session *s, const char *data, size_t len);
void session_printf(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Graceful close: queued replies go out first.  Idempotent. */
void session_close(struct session *s);

/* Starts TLS on the client side (STARTTLS).  Anything read behind the
 * command must be dropped by the caller. */
void session_starttls(struct session *s);

/* Starts the auth decision for s->user / s->pass; pauses client reads. */
void session_auth_start(struct session *s);

/* Keeps client bytes that came behind a login command, for after it. */
void session_keep_pending(struct session *s, const char *data, size_t len);

/* Back to PREAUTH after a failed or refused login: resumes reads and feeds
 * what was kept. */
void session_resume_preauth(struct session *s);

/* Runs fn after the refusal delay (at least [auth] refusal_delay since the
 * login began, so every refusal takes about as long). */
void session_after_refusal_delay(struct session *s, void (*fn)(struct session *s));

/* Connects to the backend for s->proto; backend_up or backend_down follows. */
void session_backend_connect(struct session *s);

/* Starts TLS toward the backend (STARTTLS); backend_up follows again. */
void session_backend_starttls(struct session *s);

/* Sends bytes to the backend. */
void session_backend_send(struct session *s, const char *data, size_t len);

/* Ends the backend attempt without a word to the client (a refused login). */
void session_backend_close(struct session *s);

/* Gives up the backend attempt (closing it) and calls backend_down. */
void session_backend_fail(struct session *s, const char *why);

/*
 * Splits backend bytes into lines for the login dialog.  For each complete
 * line (CRLF stripped, NUL-terminated), calls fn; fn returns 0 to go on, 1
 * when the dialog is over (the bytes after that line are relayed to the
 * client), -1 when it failed (the rest is dropped).  Returns fn's last
 * answer, or 0 if more bytes are needed.
 */
int session_backend_lines(struct session *s, const char *data, size_t len,
                          int (*fn)(struct session *s, char *line, size_t len));

/* The login succeeded: relay from now on (kept client bytes go first). */
void session_relay_start(struct session *s);

/* The server is stopping: a session still before login says goodbye. */
void session_shutdown(struct session *s);

/* The grace period is over. */
void session_abort(struct session *s);

/* The one generic refusal text's reason, for logs: nothing secret. */
const char *session_how_name(enum auth_result how);

#endif
