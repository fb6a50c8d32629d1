/*
 * config.h - the configuration: one immutable struct per generation.
 *
 * config_load() parses the INI file into a struct config; nothing changes it
 * afterwards.  A reload (SIGHUP) builds a new one and swaps it in.  Relative
 * paths are resolved against the folder of the file.  Unknown sections and
 * keys are errors, reported as "file:line: what is wrong".
 *
 * This folder depends on nothing else of mfagate.
 */
#ifndef MFA_CONFIG_H
#define MFA_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONFIG_MAX_ADDRS 4     /* addresses per listener key */
#define CONFIG_NAME_MAX 256    /* user names, host names */
#define CONFIG_SECRET_MAX 256  /* the master password */
#define CONFIG_KDF_THREADS_MAX 64  /* [auth] kdf_threads */

enum config_tls_mode {
    CONFIG_TLS_NO = 0,    /* cleartext */
    CONFIG_TLS_STARTTLS,  /* cleartext, then STARTTLS/STLS */
    CONFIG_TLS_YES,       /* implicit TLS */
};

/* [backend] forward_client_addr: how the backend learns the client's address. */
enum config_forward {
    CONFIG_FORWARD_NO = 0,
    CONFIG_FORWARD_COMMAND,   /* yes: IMAP ID x-originating-ip, POP3/SMTP XCLIENT */
    CONFIG_FORWARD_PROXY,     /* proxy: a PROXY protocol v2 header (core/proxyhdr.h) */
};

enum config_proto {
    CONFIG_PROTO_IMAP = 0,
    CONFIG_PROTO_POP3,
    CONFIG_PROTO_SMTP,
    CONFIG_PROTO_HTTP,
};

/* One listening address, resolved at load time (numeric hosts only). */
struct config_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[80];        /* as written, e.g. "127.0.0.1:10993" */
};

/* One listener key of [listen]: a protocol, TLS or not, and its addresses. */
struct config_listener {
    const char *key;                  /* "imaps", "imap", ... */
    enum config_proto proto;
    int implicit_tls;                 /* 1 for imaps/pop3s/smtps/https */
    int naddrs;
    struct config_addr addrs[CONFIG_MAX_ADDRS];
};

enum config_listener_index {
    CONFIG_L_IMAPS = 0,
    CONFIG_L_IMAP,
    CONFIG_L_POP3S,
    CONFIG_L_POP3,
    CONFIG_L_SMTPS,
    CONFIG_L_SMTP,
    CONFIG_L_HTTPS,
    CONFIG_L_HTTP,
    CONFIG_L_COUNT,
};

struct config {
    char path[PATH_MAX];              /* the file as given */
    char dir[PATH_MAX];               /* its folder, for relative paths */

    /* [server] */
    int workers;                      /* default: number of cores */
    char state_dir[PATH_MAX];
    char user[CONFIG_NAME_MAX];       /* drop privileges to this user; "" = don't */
    int allow_plaintext_auth;
    int log_level;                    /* enum log_level */
    int lowercase_usernames;          /* default yes, like Dovecot's %Lu */

    /* [tls] */
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];

    /* [listen] */
    struct config_listener listeners[CONFIG_L_COUNT];

    /* [backend] */
    char backend_host[CONFIG_NAME_MAX];
    int backend_port[3];              /* by enum config_proto: imap, pop3, smtp */
    enum config_tls_mode backend_tls[3];
    int backend_smtp_inbound;         /* port for unauthenticated SMTP */
    int backend_tls_verify;           /* verify the backend's certificate */
    char backend_ca[PATH_MAX];        /* CA file for that; "" = system store */
    char master_user[CONFIG_NAME_MAX];
    char master_password[CONFIG_SECRET_MAX];
    enum config_forward forward_client_addr;  /* default CONFIG_FORWARD_COMMAND */

    /* [smtp] */
    int smtp_unauth_relay;            /* 1 = relay, 0 = reject */

    /* [limits] (milliseconds and counts) */
    uint64_t preauth_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t backend_timeout_ms;
    uint64_t shutdown_grace_ms;
    size_t max_line;                  /* pre-auth command line, bytes */
    size_t max_literal;               /* pre-auth literal, bytes */
    int max_preauth_commands;
    size_t relay_high_water;          /* backpressure: bytes queued */

    /* [auth] */
    uint32_t argon2_memory_kib;
    uint32_t argon2_passes;
    uint32_t argon2_lanes;
    uint64_t cache_ttl_ms;            /* verification cache entry lifetime */
    uint32_t cache_entries;           /* the whole process */
    int kdf_threads;                  /* argon2id threads; 0: min(4, cores - 1), at least 1 */
    uint64_t refusal_delay_ms;        /* a refused login takes at least this long */
    int fail_delay_after;             /* consecutive failures before delays */
    int fail_lockout;                 /* consecutive failures that lock out */
    uint64_t fail_lockout_ms;         /* how long a lockout lasts */

    /* [mail] (verification codes by e-mail) */
    char mail_relay[512];             /* smtp:// or smtps:// URL; "" = e-mail codes off */
    char mail_from[CONFIG_NAME_MAX];  /* envelope and header sender */

    /* [web] */
    int device_days;                  /* how long "trust this device" lasts */
    int email_factor;                 /* enum config_email_factor */
    uint64_t recovery_wait_ms;        /* recovery: wait before a lost factor goes */

    /* [wechat] (the mini program; web/wechat.c) */
    char wechat_appid[64];            /* "" = WeChat off */
    char wechat_secret[CONFIG_SECRET_MAX];  /* the AppSecret (or from secret_file) */
    char wechat_api_base[512];        /* http(s)://host[:port], no trailing slash */
    int wechat_qr;                    /* enum config_wechat_qr */
    char wechat_page[128];            /* the page a mini-program code opens */
    char wechat_env_version[16];      /* release | trial | develop */
    char wechat_template_id[128];     /* subscribe message template; "" = no push */
    char wechat_template_keys[256];   /* its fields for mailbox,addr,time */
    uint64_t wechat_timeout_ms;       /* one call to WeChat, connect included */
    uint64_t wechat_scene_ttl_ms;     /* a QR scene's life (default 5 minutes) */
    char wechat_ca[PATH_MAX];         /* CA file for api_base; "" = system store */
};

enum config_wechat_qr {
    CONFIG_WECHAT_QR_WXACODE = 0,     /* WeChat's mini-program code (getwxacodeunlimit) */
    CONFIG_WECHAT_QR_LINK,            /* a plain QR of https://HOST/mp?scene=... */
};

enum config_email_factor {
    CONFIG_EMAIL_SECOND_FACTOR = 0,   /* a code by e-mail signs in (the manual) */
    CONFIG_EMAIL_RECOVERY,            /* only recovery after a wait (NIST 800-63B rev. 4) */
};

/*
 * Fills *cfg with the defaults, then applies the file at path.  On error,
 * writes "file:line: message" (NUL-terminated) into err and returns -1.
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Fills *cfg with the defaults only (for tests and tools). */
void config_defaults(struct config *cfg);

/*
 * Parses "host:port" or "[v6]:port" with a numeric host into *out; 0 or -1.
 */
int config_parse_addr(const char *text, struct config_addr *out);

#endif
