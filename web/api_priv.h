/*
 * api_priv.h - what the files of the JSON API (api.c, api_factors.c,
 * api_apppw.c) share: the per-worker state, request helpers (strict JSON
 * bodies, the signed-in session with its CSRF check), and responses.  Not
 * for use outside web/api*.c.
 */
#ifndef MFA_API_PRIV_H
#define MFA_API_PRIV_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <openssl/ssl.h>

#include "auth/apppw.h"
#include "auth/store.h"
#include "auth/token.h"
#include "auth/websession.h"
#include "web/web.h"

#define API_SESSION_COOKIE "mfa_session"
#define API_DEVICE_COOKIE "mfa_device"
#define API_STR_MAX 256            /* any string field of a request body */

struct api_pending;
struct api_rc_answer;
struct mailer;

/* api.c's per-worker state (ww->api). */
struct api_worker {
    struct web_worker *ww;
    SSL_CTX *tls_client;           /* for a backend with TLS; NULL otherwise */
    struct api_pending *pending;   /* requests waiting on the backend or the pool */
    struct mailer *mailer;         /* e-mail codes; NULL when [mail] relay is empty */
    struct api_rc_answer *rc_answer;  /* api_recovery.c: a KDF's answer, during a handler's
                                       * second run only */
    struct wechat *wechat;         /* NULL when [wechat] is off */
    struct scanhub_member *hub;    /* wakes scene waits (api_scan.c) */
    int stopping;
};

/* The signed-in caller of a request. */
struct api_session {
    struct websession ws;
    char token[TOKEN_TEXT_LEN + 1];
};

struct store *api_store(struct web_worker *ww);
const struct keys *api_keys(struct web_worker *ww);
int64_t api_now(void);

/*
 * The request's session: 0, or -1 after answering 401 not_signed_in, or 403
 * csrf for a POST/DELETE without the session's X-CSRF-Token.  The token is
 * wiped by api_session_done.
 */
int api_session(struct web_worker *ww, struct http_request *req, struct api_session *s);
void api_session_done(struct api_session *s);

/* The JSON object body of a POST: 0, or -1 after answering 400/415.  An
 * empty body is an empty object. */
int api_body(struct http_request *req, cJSON **out);

/*
 * A string member: 0 found (*out borrowed from the tree), 1 absent and not
 * required, -1 after answering 400 (wrong type, empty, longer than max bytes,
 * holding control characters, or absent and required).
 */
int api_str(struct http_request *req, const cJSON *obj, const char *name, size_t max,
            int required, const char **out);

/* An optional boolean member: 0 (*out set, default 0) or -1 after 400. */
int api_bool(struct http_request *req, const cJSON *obj, const char *name, int *out);

/* Answers with the JSON tree (and frees it); 500 if it cannot be printed. */
void api_reply(struct http_request *req, int status, cJSON *json, const char *extra_headers);

/* {"ok":true} */
void api_reply_ok(struct http_request *req);

/* 500 internal for a store error. */
void api_reply_store_error(struct http_request *req);

/* A time as a JSON number of seconds, or null when 0 ("never"). */
void api_add_time(cJSON *obj, const char *name, int64_t t);

/* A string member, or null when empty. */
void api_add_opt(cJSON *obj, const char *name, const char *s);

/*
 * The user's pending enrollment (kind) for a confirm step: 0 with *ch, or -1
 * after answering 410 (none or expired), 429 (too many wrong codes) or 500.
 */
int api_enrollment_open(struct http_request *req, struct store *st, const char *user,
                        const char *kind, int64_t now, struct store_challenge *ch);

/* A code field (6 digits); 0, or -1 after answering 400. */
int api_code(struct http_request *req, const cJSON *obj, const char **out);

/*
 * Checks a code of method ("totp" or "email") for the user of challenge ch
 * (an e-mail code lives in ch's data): STORE_OK, ACCOUNT_BAD_CODE, or -1
 * after answering (400, 403, 409, 500).
 */
int api_check_code(struct web_worker *ww, struct http_request *req,
                   const struct store_challenge *ch, const char *method, const char *code);

/* api_email.c: the e-mail code of ch, as api_check_code. */
int api_check_email_code(struct web_worker *ww, struct http_request *req,
                         const struct store_challenge *ch, const char *code);

/*
 * api_recovery.c: checks a recovery code for the user of challenge ch, as
 * api_check_code.  The KDF runs on the thread pool: the first call returns
 * -1 with the request taken over, and the handler (api_login_verify or
 * api_verify) is run again once the answer is in; that run gets STORE_OK
 * (the code is used up) or ACCOUNT_BAD_CODE.
 */
int api_recovery_check(struct web_worker *ww, struct http_request *req,
                       const struct store_challenge *ch, const char *code);

/* api_recovery.c: user signed in with a second factor; a pending account
 * recovery is cancelled. */
void api_recovery_signed_in(struct web_worker *ww, struct http_request *req, const char *user);

/* api_email.c: a new 6-digit code and its MAC with a fresh salt (0 or -1),
 * and whether code matches them (1 or 0, in constant time). */
int api_email_code_new(const struct keys *k, char code[7], unsigned char salt[16],
                       unsigned char mac[32]);
int api_email_code_ok(const struct keys *k, const unsigned char salt[16],
                      const unsigned char mac[32], const char *code);

/* 1 if a code by e-mail may sign in / verify ([web] email_factor). */
int api_email_offered(struct web_worker *ww);

/* The length of a challenge's own data (the factor kind of an unbind or a
 * change), before the code part an e-mail code adds. */
size_t api_challenge_kind_len(const struct store_challenge *ch);

/* The pending grant for "<purpose>:<kind>" of the session's user into *ch:
 * 0, or -1 after answering 403 (or 500). */
int api_open_grant(struct web_worker *ww, struct http_request *req, const struct api_session *s,
                   const char *grant, const char *purpose, const char *kind,
                   struct store_challenge *ch);

/* As api_open_grant, and uses the grant up: 0, or -1 after answering 403. */
int api_use_grant(struct web_worker *ww, struct http_request *req, const struct api_session *s,
                  const char *grant, const char *purpose, const char *kind);

/* The worker's mailer, when [mail] relay is set; 0 or an error. */
int api_email_init(struct web_worker *ww);
void api_email_begin(struct web_worker *ww, struct http_request *req, struct api_session *s,
                     cJSON *body);
void api_email_confirm(struct web_worker *ww, struct http_request *req, struct api_session *s,
                       cJSON *body);

/* The "methods" array of the factor kinds user has bound that can verify. */
int api_methods(struct web_worker *ww, const char *user, cJSON *arr, int *count);

/* The Host header without its port, if it looks like a host name or an
 * address; else the configured host name. */
void api_host(struct web_worker *ww, const struct http_request *req, char *out, size_t outlen);

/* The last path segment after prefix as a positive id; 0 or -1. */
int api_path_id(const struct http_request *req, const char *prefix, int64_t *id);

/*
 * Pending work of a request: an answer that waits on a job (a backend
 * check, a mail, a WeChat call, a timer, a hash on the thread pool).  The
 * owner embeds a struct api_pending, starts its job, then api_pending_start;
 * api.c keeps the worker's list and does the rest the same way for all:
 *
 *  - the job's callback calls api_pending_take first: it returns the request
 *    to answer (detached: req->on_abort and req->user are cleared, p is off
 *    the list), or NULL when the client went away, and then p is ended
 *    already (released: touch it no more).  After answering, the callback
 *    calls api_pending_end.  A request is gone once answered: a callback
 *    that answers without taking (api_scan.c's waits, which learn only by
 *    answering whether they are done) sets p->req = NULL right after.
 *  - the client goes away (req->on_abort, set by api_pending_start): p->req
 *    becomes NULL (the request is freed by http.c on return); with a stop,
 *    the job is stopped and p ended; without one, the job's callback comes
 *    later, takes NULL, and that ends p.
 *  - the worker stops (api_worker_stop): with a stop, the job is stopped, a
 *    waiting request is answered 503 shutting_down, and p ended; without
 *    one, p only leaves the list and its callback comes in its time.
 *
 * api_pending_end removes p from the list, detaches its request if any, and
 * calls release: the owner's memory belongs to p from api_pending_start on
 * and is freed by release only, exactly once.  Before api_pending_start
 * (a job that would not start) the owner frees it itself.
 */
struct api_pending {
    struct api_worker *aw;
    struct http_request *req;      /* NULL once the client went away or was answered */
    /* Stops the job, whose callback is then never called; NULL for a job
     * that cannot be stopped (thread pool work): its callback always comes. */
    void (*stop)(struct api_pending *p);
    /* Frees the owner (wiping what needs it); the last use of p. */
    void (*release)(struct api_pending *p);
    struct api_pending *prev, *next;
};

/* Waits for the job (started already) to answer req: onto aw's list, with
 * the generic req->on_abort; p is owned by the list from here. */
void api_pending_start(struct api_worker *aw, struct api_pending *p, struct http_request *req,
                       void (*stop)(struct api_pending *p),
                       void (*release)(struct api_pending *p));

/* In the job's callback: the request to answer, or NULL (p was ended). */
struct http_request *api_pending_take(struct api_pending *p);

/* The wait is over: off the list, the request (if any) detached, released. */
void api_pending_end(struct api_pending *p);

/*
 * A hash on the libuv thread pool for a request (api_apppw.c, api_recovery.c:
 * argon2id, which must not run on the loop).  The owner embeds a struct
 * api_kdf (as k) and gives run, which runs on the pool and touches nothing
 * but the owner (0, or -1 for a failure; any other value is the owner's),
 * and done, which answers on the loop when the client is still there, with
 * rc = run's value, or -1 when the pool failed.  The pool work cannot be
 * stopped: a client that went away or a worker stop leaves it to finish and
 * be released then, done being called only if the client is still there
 * (a password or a set of codes is never stored for nobody; a recovery code
 * stays unused).  api_pending_end follows done.
 */
struct api_kdf {
    struct api_pending p;
    uv_work_t work;
    struct apppw_params params;    /* the [auth] argon2 cost */
    unsigned char pepper[APPPW_KEY_LEN];  /* wiped on the pool once run returns */
    int (*run)(struct api_kdf *k);
    void (*done)(struct api_kdf *k, struct http_request *req, int rc);
    int rc;
};

/* Fills k's params and pepper and queues run; 0 (waiting, as after
 * api_pending_start), or -1 with nothing queued nor answered (the caller
 * still owns k). */
int api_kdf_start(struct web_worker *ww, struct http_request *req, struct api_kdf *k,
                  int (*run)(struct api_kdf *k),
                  void (*done)(struct api_kdf *k, struct http_request *req, int rc),
                  void (*release)(struct api_pending *p));

/* api_scan.c: the WeChat factor, browser side. */
/* 0 if [wechat] is on, else -1 after answering 404 wechat_off. */
int api_wechat_on(struct web_worker *ww, struct http_request *req);
void api_wechat_begin(struct web_worker *ww, struct http_request *req, struct api_session *s,
                      cJSON *body);
/*
 * For method "wechat" with a "scene" member: uses the scene approved on the
 * phone for ch: 1 (the phone's answer into answer), 0 when the request
 * carries no scene (check a code instead), -1 after answering (409 pending,
 * 403 denied, 410 expired).
 */
int api_scene_verify(struct web_worker *ww, struct http_request *req, const cJSON *body,
                     const char *method, const struct store_challenge *ch, char *answer,
                     size_t answer_len);
/* scanhub's callback: answers arrived for these scenes. */
void api_scan_wake(void *arg, const unsigned char (*hashes)[STORE_TOKEN_HASH_LEN], size_t n,
                   int all);

/* Route handlers. */
void api_login_scan(struct web_worker *ww, struct http_request *req);
void api_login_push(struct web_worker *ww, struct http_request *req);
void api_verify_scan(struct web_worker *ww, struct http_request *req);
void api_scan_wait(struct web_worker *ww, struct http_request *req);
void api_mp_login(struct web_worker *ww, struct http_request *req);
void api_mp_accounts(struct web_worker *ww, struct http_request *req);
void api_mp_request_get(struct web_worker *ww, struct http_request *req);
void api_mp_request_post(struct web_worker *ww, struct http_request *req);
void api_login(struct web_worker *ww, struct http_request *req);
void api_login_verify(struct web_worker *ww, struct http_request *req);
void api_login_email_code(struct web_worker *ww, struct http_request *req);
void api_logout(struct web_worker *ww, struct http_request *req);
void api_me(struct web_worker *ww, struct http_request *req);
void api_factors_post(struct web_worker *ww, struct http_request *req);
void api_verify_begin(struct web_worker *ww, struct http_request *req);
void api_verify(struct web_worker *ww, struct http_request *req);
void api_verify_email_code(struct web_worker *ww, struct http_request *req);
void api_recovery_begin(struct web_worker *ww, struct http_request *req);
void api_recovery_info(struct web_worker *ww, struct http_request *req);
void api_recovery_confirm(struct web_worker *ww, struct http_request *req);
void api_recovery_finish(struct web_worker *ww, struct http_request *req);
void api_recovery_codes_get(struct web_worker *ww, struct http_request *req);
void api_recovery_codes_post(struct web_worker *ww, struct http_request *req);
void api_apppw_list(struct web_worker *ww, struct http_request *req);
void api_apppw_create(struct web_worker *ww, struct http_request *req);
void api_apppw_delete(struct web_worker *ww, struct http_request *req);
void api_apppw_clear(struct web_worker *ww, struct http_request *req);
void api_devices_list(struct web_worker *ww, struct http_request *req);
void api_devices_delete(struct web_worker *ww, struct http_request *req);
void api_signins(struct web_worker *ww, struct http_request *req);

#endif
