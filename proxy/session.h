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
#include "proxy/pop3_parse.h"
#include "proxy/proxy.h"

enum session_state {
    SESSION_PREAUTH = 0,
    SESSION_AUTH,
    SESSION_BACKEND,
    SESSION_RELAY,
};

struct session;

/* Where a SASL exchange stands (AUTHENTICATE / AUTH, any protocol). */
enum session_sasl {
    SESSION_SASL_NONE = 0,
    SESSION_SASL_PLAIN,          /* waiting for the PLAIN response */
    SESSION_SASL_LOGIN_USER,     /* waiting for the LOGIN user name */
    SESSION_SASL_LOGIN_PASS,     /* waiting for the LOGIN password */
};

/*
 * What a protocol plugs in.  The session drives the login (decision,
 * backend connection, refusal delay); the protocol says things in its own
 * words and runs its own backend dialog.
 */
struct session_proto {
    const char *name;                      /* "imap", for logs */
    enum config_proto proto;
    /* Sends the greeting (queued until TLS is up on implicit-TLS ports). */
    void (*greet)(struct session *s);
    /* Client bytes in PREAUTH. */
    void (*client_read)(struct session *s, const char *data, size_t len);
    /* A backend login attempt begins: reset the backend dialog. */
    void (*backend_start)(struct session *s);
    /* The backend connection is up (after implicit TLS if configured, or
     * after a backend STARTTLS the protocol asked for). */
    void (*backend_up)(struct session *s);
    /* Backend bytes during the login dialog. */
    void (*backend_read)(struct session *s, const char *data, size_t len);
    /* Replies to the login in progress: */
    void (*login_refused)(struct session *s);     /* the one generic refusal */
    void (*login_unavailable)(struct session *s); /* temporary: backend or store down */
    void (*login_succeeded)(struct session *s);   /* logged in at the backend */
    /* A SASL continuation with this base64 challenge ("" for none). */
    void (*sasl_prompt)(struct session *s, const char *challenge);
    /* A SASL response that ends the exchange: a negative enum sasl_status. */
    void (*sasl_failed)(struct session *s, int why);
    /* Pre-auth time is up, or the server is stopping: say goodbye. */
    void (*bye)(struct session *s, const char *why);
    /* The session is being freed: free the protocol's own state. */
    void (*release)(struct session *s);
};

struct imap_session {
    /* Only while before login: a parser is ~16 KiB, idle relays keep none. */
    struct imap_parser *parser;
    char tag[IMAP_TAG_MAX + 1];            /* of the login in progress */
    int backend_step;                      /* backend login dialog step */
    char *caps;                            /* the backend's post-login capabilities */
};

struct pop3_session {
    struct pop3_parser *parser;            /* only before login */
    char user[AUTH_USER_MAX];              /* from USER, until PASS */
    int backend_step;
};

struct smtp_preauth;

struct smtp_session {
    struct smtp_preauth *pre;              /* parser and backend replies, before login */
    char helo[256];                        /* the client's EHLO/HELO name, "" until given */
    int esmtp;                             /* it said EHLO (not HELO) */
    int backend_step;
    int backend_tls;                       /* the backend connection is encrypted */
    int xclient_sent;
    char *mail;                            /* inbound: the MAIL command to replay */
    size_t mail_len;
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
    int inbound;                           /* SMTP without AUTH, relayed as it is */
    int client_paused;                     /* reads stopped for backpressure */
    int client_eof;                        /* the client's EOF came during the login */
    int backend_paused;
    /* The last bytes the client sent while relayed (for session_client_said_bye). */
    char client_tail[16];
    unsigned char client_tail_len;

    char addr[64];                         /* client address, for logs and the backend */
    int port;
    uint64_t started_ms;
    uint64_t last_activity_ms;
    uint64_t login_started_ms;
    int ncommands;                         /* pre-auth commands so far */
    enum session_sasl sasl;

    /* The login in progress; pass is wiped once the backend has answered. */
    char user[AUTH_USER_MAX];
    char logname[64];                      /* user, made safe for logs (util_log_safe) */
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
    /* The protocol read an answer while another one, to a command sent in
     * the same write, is still due: session_backend_lines acknowledges at
     * once if it is not in the same read (conn_ack_now). */
    int backend_answer_due;

    union {
        struct imap_session imap;
        struct pop3_session pop3;
        struct smtp_session smtp;
    } u;
};

/* The protocols. */
extern const struct session_proto imap_session_proto;
extern const struct session_proto pop3_session_proto;
extern const struct session_proto smtp_session_proto;

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

/*
 * Starts a login with these credentials: the decision, then the backend.
 * Pauses client reads until it is over.  A name the decision cannot take is
 * refused like any other failure.
 */
void session_login(struct session *s, const char *user, size_t ulen, const char *pass,
                   size_t plen);

/*
 * Starts a SASL exchange for mech (PLAIN or LOGIN), with an initial response
 * if ir is not NULL ("=" is an empty one).  Returns -1 if the mechanism is
 * not supported (the protocol replies), else 0: the exchange goes on through
 * sasl_prompt / sasl_failed / session_login.
 */
int session_sasl_start(struct session *s, const char *mech, const char *ir, size_t irlen);

/*
 * SMTP without AUTH (another server delivering mail): connects to the
 * inbound backend; the protocol's backend dialog replays what it must and
 * calls session_inbound_ok().
 */
void session_inbound(struct session *s);
void session_inbound_ok(struct session *s);

/* A SASL response line from the client. */
void session_sasl_line(struct session *s, const char *line, size_t len);

/* Keeps client bytes that came behind a login command, for after it. */
void session_keep_pending(struct session *s, const char *data, size_t len);

/* Starts TLS toward the backend (STARTTLS); backend_up follows again. */
void session_backend_starttls(struct session *s);

/* Sends bytes to the backend. */
void session_backend_send(struct session *s, const char *data, size_t len);

/*
 * The SASL PLAIN response (base64, NUL-terminated) that logs the login in
 * progress in at the backend: as the user through the master user for an
 * app password (authzid = user, authcid = master), with the client's own
 * credentials for a passthrough.  Returns its length, or -1.  The caller
 * wipes out when done.
 */
int session_backend_plain(struct session *s, char *out, size_t cap);

/* The backend attempt failed (down, slow, confused): a temporary error to
 * the client, who may try again. */
void session_backend_fail(struct session *s, const char *why);

/* The backend refused the client's own credentials (passthrough). */
void session_backend_refused(struct session *s);

/* The backend accepted the login: the protocol's success reply, then relay
 * (kept client bytes go first). */
void session_login_ok(struct session *s);

/*
 * Splits backend bytes into lines for the login dialog.  For each complete
 * line (CRLF stripped, NUL-terminated), calls fn; fn returns 0 to go on, 1
 * when the dialog is over (the bytes after that line are relayed to the
 * client), -1 when it failed (the rest is dropped).  Returns fn's last
 * answer, or 0 if more bytes are needed.
 */
int session_backend_lines(struct session *s, const char *data, size_t len,
                          int (*fn)(struct session *s, char *line, size_t len));

/* The server is stopping: a session still before login says goodbye. */
void session_shutdown(struct session *s);

/* The grace period is over. */
void session_abort(struct session *s);

/* The one generic refusal text's reason, for logs: nothing secret. */
const char *session_how_name(enum auth_result how);

#endif
