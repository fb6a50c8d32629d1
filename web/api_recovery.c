/*
 * api_recovery.c - the ways back into an account whose factor is lost
 * (web/API.md "Recovery codes" and "Backup e-mail"):
 *
 *  - one-time recovery codes: making a set (GET/POST /api/recovery-codes,
 *    argon2id on the libuv thread pool) and checking a code at the second
 *    step of a sign-in or of a verification (method "recovery");
 *  - account recovery by the backup e-mail when [web] email_factor =
 *    recovery: begin (a code by mail) -> confirm (the waiting period
 *    starts, the address is told) -> after [web] recovery_wait, finish (a
 *    second code by mail) -> every factor but the e-mail goes, with the
 *    trusted devices and the recovery codes.  Any sign-in with a second
 *    factor meanwhile cancels it (api_recovery_signed_in).
 *
 * Checking a recovery code takes one argon2id run, which must not run on
 * the loop.  The sign-in and verification handlers (api.c, api_factors.c)
 * check codes synchronously through api_check_code, so a code is checked
 * the way nginx runs a phase handler that must wait: the first pass finds
 * the one row the code's locator names and queues the KDF, and the handler
 * returns without answering; when the KDF is done, the handler runs again
 * from the top, and this time api_recovery_check answers from the result
 * kept in api_worker.rc_answer (for that request and challenge only, and
 * only during that call).  Everything before the check in those handlers
 * is a read, so running them twice changes nothing twice.
 *
 * No code, address or token is ever logged; addresses are logged masked.
 * The recovery challenges live in the challenges table (kinds below),
 * found by user and kind; their tokens are never handed out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/account.h"
#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/keys.h"
#include "auth/ratelimit.h"
#include "auth/recovery.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/mailer.h"

/* Challenge kinds of an account recovery by e-mail. */
#define RC_KIND_CODE "recovery"          /* begun: a code was mailed (10 minutes) */
#define RC_KIND_WAIT "recovery_wait"     /* confirmed: waiting, then finishing */

#define RC_SALT 16
#define RC_MAC 32
#define RC_PART (RC_SALT + RC_MAC + 8)   /* salt | mac | sent (int64 big-endian) */
#define RC_CODE_TTL_S 600                /* an e-mailed code is good this long */
#define RC_RESEND_S 20                   /* at most one code per this long */
#define RC_FINISH_WINDOW_S (72 * 3600)   /* after the wait, this long to finish */
#define RC_MAX_KINDS 8

/* What the KDF found, for the handler's second run (api_priv.h). */
struct api_rc_answer {
    struct http_request *req;
    int64_t ch_id;
    int64_t row_id;
    int ok;
};

static const char *
rc_lu(const char *user, char *buf, size_t len)
{
    return util_log_safe(user, buf, len);
}

/* --- recovery codes: GET / POST /api/recovery-codes ----------------------- */

void
api_recovery_codes_get(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    int total = 0, left = 0;
    int64_t created = 0;
    cJSON *o;

    if (api_session(ww, req, &s) != 0)
        return;
    if (store_recovery_count(api_store(ww), s.ws.user, &total, &left, &created) != STORE_OK) {
        api_reply_store_error(req);
    } else {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "total", total);
        cJSON_AddNumberToObject(o, "left", left);
        api_add_time(o, "created", created);
        api_reply(req, 200, o, NULL);
    }
    api_session_done(&s);
}

struct api_rc_make {
    struct api_kdf k;
    char user[STORE_NAME_MAX];
    struct recovery_set set;
};

static void
api_rc_make_release(struct api_pending *p)
{
    struct api_rc_make *j = container_of(p, struct api_rc_make, k.p);

    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

/* On the thread pool: touches nothing but the job. */
static int
api_rc_make_run(struct api_kdf *k)
{
    struct api_rc_make *j = container_of(k, struct api_rc_make, k);

    return recovery_hash_set(&k->params, k->pepper, &j->set);
}

/* The client is still there (else the set is not stored). */
static void
api_rc_make_done(struct api_kdf *k, struct http_request *req, int rc)
{
    struct api_rc_make *j = container_of(k, struct api_rc_make, k);
    struct web_worker *ww = k->p.aw->ww;
    char shown[RECOVERY_SHOWN_LEN + 1], lu[STORE_NAME_MAX];
    cJSON *o, *codes;

    if (rc != 0) {
        log_error("web id=%llx event=recovery_hash_failed", (unsigned long long)req->id);
        api_reply_store_error(req);
        return;
    }
    if (recovery_set_save(api_store(ww), j->user, &j->set, api_now(), "web", req->peer) !=
        STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=recovery_codes_created user=%s count=%d",
             (unsigned long long)req->id, rc_lu(j->user, lu, sizeof(lu)), RECOVERY_COUNT);
    o = cJSON_CreateObject();
    codes = cJSON_AddArrayToObject(o, "codes");
    for (int i = 0; i < RECOVERY_COUNT; i++) {
        recovery_format(j->set.codes[i], shown);
        cJSON_AddItemToArray(codes, cJSON_CreateString(shown));
    }
    OPENSSL_cleanse(shown, sizeof(shown));
    /* api_reply wipes the printed text; the tree's strings are wiped here. */
    {
        char *text = cJSON_PrintUnformatted(o);
        cJSON *c;

        cJSON_ArrayForEach(c, codes) OPENSSL_cleanse(c->valuestring, strlen(c->valuestring));
        cJSON_Delete(o);
        if (text == NULL) {
            api_reply_store_error(req);
        } else {
            http_respond_json(req, 200, text, NULL);
            OPENSSL_cleanse(text, strlen(text));
            cJSON_free(text);
        }
    }
}

void
api_recovery_codes_post(struct web_worker *ww, struct http_request *req)
{
    struct api_rc_make *j = NULL;
    struct api_session s;
    cJSON *body = NULL;
    int nfactors = 0;

    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (store_factor_count(api_store(ww), s.ws.user, &nfactors) != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    /* Codes stand in for a lost factor: without one they would be a way
     * in of their own, and unbinding the last factor deletes them anyway. */
    if (nfactors == 0) {
        http_respond_error(req, 409, "no_factor",
                           "Bind a verification method first; recovery codes stand in for it.");
        goto done;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL || recovery_set_new(api_keys(ww), s.ws.user, &j->set) != 0) {
        api_reply_store_error(req);
        goto done;
    }
    util_strlcpy(j->user, s.ws.user, sizeof(j->user));
    /* Ten hashes: they finish on their own. */
    if (api_kdf_start(ww, req, &j->k, api_rc_make_run, api_rc_make_done,
                      api_rc_make_release) != 0) {
        api_reply_store_error(req);
        goto done;
    }
    j = NULL;

done:
    if (j != NULL)
        api_rc_make_release(&j->k.p);
    cJSON_Delete(body);
    api_session_done(&s);
}

/* --- checking a code at a second step ----------------------------------- */

struct api_rc_check {
    struct api_kdf k;
    web_handler again;             /* the handler to run once more */
    int64_t ch_id;
    int64_t row_id;
    char code[RECOVERY_LEN + 1];
    char hash[APPPW_HASH_MAX];
};

static void
api_rc_check_release(struct api_pending *p)
{
    struct api_rc_check *j = container_of(p, struct api_rc_check, k.p);

    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

/* On the thread pool: 0 right, 1 wrong, -1 failed. */
static int
api_rc_check_run(struct api_kdf *k)
{
    struct api_rc_check *j = container_of(k, struct api_rc_check, k);
    int r = recovery_verify(k->pepper, j->code, j->hash);

    OPENSSL_cleanse(j->code, sizeof(j->code));
    return r;
}

/* The client is still there (else the code stays unused). */
static void
api_rc_check_done(struct api_kdf *k, struct http_request *req, int rc)
{
    struct api_rc_check *j = container_of(k, struct api_rc_check, k);
    struct api_worker *aw = k->p.aw;
    struct api_rc_answer ans;

    if (rc == -1) {
        log_error("web id=%llx event=recovery_verify_failed", (unsigned long long)req->id);
        api_reply_store_error(req);
    } else if (aw->stopping) {
        http_respond_error(req, 503, "shutting_down", "The server is restarting.");
    } else {
        ans.req = req;
        ans.ch_id = j->ch_id;
        ans.row_id = j->row_id;
        ans.ok = rc == 0;
        aw->rc_answer = &ans;
        j->again(aw->ww, req);
        aw->rc_answer = NULL;
    }
}

int
api_recovery_check(struct web_worker *ww, struct http_request *req,
                   const struct store_challenge *ch, const char *typed)
{
    struct api_worker *aw = ww->api;
    struct store *st = api_store(ww);
    struct api_rc_answer *ans = aw->rc_answer;
    struct store_recovery row;
    struct api_rc_check *j;
    char code[RECOVERY_LEN + 1], lu[STORE_NAME_MAX];
    int r, left = 0;

    if (ans != NULL && ans->req == req && ans->ch_id == ch->id) {
        /* The second run: the KDF has spoken. */
        aw->rc_answer = NULL;
        if (!ans->ok)
            return ACCOUNT_BAD_CODE;
        r = recovery_use(st, ch->user, ans->row_id, ch->kind, req->peer, api_now(), &left);
        if (r == STORE_CONFLICT)
            return ACCOUNT_BAD_CODE;    /* another request used it a moment ago */
        if (r != STORE_OK) {
            api_reply_store_error(req);
            return -1;
        }
        log_info("web id=%llx event=recovery_code_used user=%s for=%s left=%d",
                 (unsigned long long)req->id, rc_lu(ch->user, lu, sizeof(lu)), ch->kind, left);
        return STORE_OK;
    }
    r = recovery_lookup(st, api_keys(ww), ch->user, typed, code, &row);
    if (r == STORE_NOTFOUND)
        return ACCOUNT_BAD_CODE;       /* no unused code has its locator: no KDF */
    if (r != STORE_OK) {
        OPENSSL_cleanse(code, sizeof(code));
        api_reply_store_error(req);
        return -1;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        OPENSSL_cleanse(code, sizeof(code));
        OPENSSL_cleanse(&row, sizeof(row));
        api_reply_store_error(req);
        return -1;
    }
    j->again = strcmp(ch->kind, CHALLENGE_SIGNIN) == 0 ? api_login_verify : api_verify;
    j->ch_id = ch->id;
    j->row_id = row.id;
    memcpy(j->code, code, sizeof(j->code));
    util_strlcpy(j->hash, row.hash, sizeof(j->hash));
    OPENSSL_cleanse(code, sizeof(code));
    OPENSSL_cleanse(&row, sizeof(row));
    /* One hash: it finishes on its own. */
    if (api_kdf_start(ww, req, &j->k, api_rc_check_run, api_rc_check_done,
                      api_rc_check_release) != 0) {
        api_rc_check_release(&j->k.p);
        api_reply_store_error(req);
        return -1;
    }
    return -1;    /* under way: the handler runs again with the answer */
}

/* --- account recovery by e-mail: helpers -------------------------------- */

/* A mail that nobody waits for (the answer went out already). */
struct api_rc_note {
    char masked[MAILER_ADDR_MAX + 8];
    char what[16];
};

static void
api_rc_note_sent(void *arg, int status)
{
    struct api_rc_note *n = arg;

    if (status != 0 && status != MAILER_ECANCELED)
        log_warn("web event=recovery_mail_failed what=%s to=%s status=%d", n->what, n->masked,
                 status);
    else if (status == 0)
        log_info("web event=recovery_mail_sent what=%s to=%s", n->what, n->masked);
    free(n);
}

static void
api_rc_note(struct web_worker *ww, const char *to, const char *what, const char *subject,
            const char *body)
{
    struct api_worker *aw = ww->api;
    struct api_rc_note *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return;
    mailer_mask(to, n->masked, sizeof(n->masked));
    util_strlcpy(n->what, what, sizeof(n->what));
    if (aw->mailer == NULL ||
        mailer_send(aw->mailer, to, subject, body, api_rc_note_sent, n, NULL) != 0) {
        log_warn("web event=recovery_mail_failed what=%s to=%s", what, n->masked);
        free(n);
    }
}

/* The mail with a code, in both languages (as api_email.c's). */
static void
api_rc_code_text(char *body, size_t len, const char *code, int minutes, const char *why_zh,
                 const char *why_en)
{
    snprintf(body, len,
             "%s\n您的验证码是 %s（%d 分钟内有效）。\n"
             "如果这不是您本人的操作，请忽略本邮件，不要把验证码告诉任何人。\n"
             "\n"
             "%s\nYour verification code is %s (valid %d minutes).\n"
             "If you did not ask for it, ignore this message and do not share the code.\n",
             why_zh, code, minutes, why_en, code, minutes);
}

static void
api_rc_time(int64_t t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, len, "%Y-%m-%d %H:%M UTC", &tm) == 0)
        snprintf(out, len, "%lld", (long long)t);
}

/* A code part: a fresh code (into code) with its salted MAC, sent now. */
static int
api_rc_part_new(struct web_worker *ww, char code[7], unsigned char part[RC_PART], int64_t now)
{
    if (api_email_code_new(api_keys(ww), code, part, part + RC_SALT) != 0)
        return -1;
    for (int i = 0; i < 8; i++)
        part[RC_SALT + RC_MAC + i] = (unsigned char)((uint64_t)now >> (56 - 8 * i));
    return 0;
}

static int64_t
api_rc_part_sent(const unsigned char part[RC_PART])
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | part[RC_SALT + RC_MAC + i];
    return (int64_t)v;
}

static int
api_rc_part_ok(struct web_worker *ww, const unsigned char part[RC_PART], const char *code)
{
    return api_email_code_ok(api_keys(ww), part, part + RC_SALT, code);
}

/*
 * The checks every recovery route starts with: the mode, the relay, the
 * body's user (normalized into user) and the failure counter.  0, or -1
 * after answering.
 */
static int
api_rc_open(struct web_worker *ww, struct http_request *req, cJSON *body,
            char user[AUTH_USER_MAX])
{
    const char *name;
    uint64_t until = 0;
    int failures = 0;

    if (ww->cfg->email_factor != CONFIG_EMAIL_RECOVERY) {
        http_respond_error(req, 403, "not_offered",
                           "On this server the backup e-mail signs in by itself; "
                           "no account recovery is needed.");
        return -1;
    }
    if (((struct api_worker *)ww->api)->mailer == NULL) {
        http_respond_error(req, 503, "mail_unavailable",
                           "Codes by e-mail are not set up on this server.");
        return -1;
    }
    if (api_str(req, body, "user", AUTH_USER_MAX - 1, 1, &name) != 0)
        return -1;
    if (auth_normalize_user(ww->cfg, name, strlen(name), user) != 0) {
        http_respond_error(req, 400, "bad_request", "This is not an account name.");
        return -1;
    }
    if (ratelimit_check(user, util_now_ms(), &failures, &until)) {
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many failed attempts. Please try again later.");
        return -1;
    }
    return 0;
}

/* One more failure of user, counted as a failed sign-in, and audited. */
static void
api_rc_fail(struct web_worker *ww, struct http_request *req, const char *user, const char *step)
{
    const struct config *cfg = ww->cfg;
    char detail[64];

    ratelimit_fail(user, util_now_ms(), cfg->fail_lockout, cfg->fail_lockout_ms);
    snprintf(detail, sizeof(detail), "step=%s reason=code", step);
    store_batch_audit(api_store(ww), api_now(), user, "recovery_fail", detail, req->peer);
}

/*
 * Whether user can recover by e-mail: an address bound (into addr) and a
 * factor besides it (with the address alone, the password signs in).
 */
static int
api_rc_eligible(struct store *st, const char *user, char *addr, size_t addrlen)
{
    struct store_factor f;
    int n = 0, r;

    r = store_factor_get(st, user, "email", &f);
    if (r == STORE_OK)
        util_strlcpy(addr, f.label, addrlen);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r != STORE_OK)
        return r;
    if (store_factor_count(st, user, &n) != STORE_OK)
        return STORE_ERR;
    return n >= 2 ? STORE_OK : STORE_NOTFOUND;
}

/*
 * A masked address that looks like one, for a name that has none: stable
 * for the name (a keyed hash), so that asking twice shows the same.
 */
static void
api_rc_decoy(struct web_worker *ww, const char *user, char *out, size_t outlen)
{
    static const char *const domains[] = {"gmail.com", "outlook.com", "qq.com", "163.com",
                                          "126.com", "yahoo.com", "hotmail.com", "icloud.com"};
    unsigned char mac[32];
    unsigned int len = sizeof(mac);
    char in[AUTH_USER_MAX + 16];
    int n = snprintf(in, sizeof(in), "recovery-decoy:%s", user);

    if (n < 0 || HMAC(EVP_sha256(), api_keys(ww)->token, KEYS_LEN, (const unsigned char *)in,
                      (size_t)n, mac, &len) == NULL)
        memset(mac, 0, sizeof(mac));
    snprintf(out, outlen, "%c***@%s", 'a' + mac[0] % 26, domains[mac[1] % 8]);
}

/* Removes the user's pending recovery challenges; 1 if there were any. */
static int
api_rc_drop(struct store *st, const char *user)
{
    struct store_challenge ch;
    int any = store_challenge_find(st, user, RC_KIND_WAIT, &ch) == STORE_OK ||
              store_challenge_find(st, user, RC_KIND_CODE, &ch) == STORE_OK;

    OPENSSL_cleanse(&ch, sizeof(ch));
    if (any) {
        store_challenge_remove_kind(st, user, RC_KIND_WAIT);
        store_challenge_remove_kind(st, user, RC_KIND_CODE);
    }
    return any;
}

/* --- GET /api/recovery ----------------------------------------------------- */

/* What the sign-in page needs to offer "lost your phone?": whether this
 * server recovers accounts by e-mail, and how long it makes people wait. */
void
api_recovery_info(struct web_worker *ww, struct http_request *req)
{
    cJSON *o = cJSON_CreateObject();

    cJSON_AddBoolToObject(o, "by_email", ww->cfg->email_factor == CONFIG_EMAIL_RECOVERY &&
                                             ((struct api_worker *)ww->api)->mailer != NULL);
    cJSON_AddNumberToObject(o, "wait", (double)(ww->cfg->recovery_wait_ms / 1000));
    api_reply(req, 200, o, NULL);
}

/* --- POST /api/recovery/begin {"user"} ------------------------------------- */

void
api_recovery_begin(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    char user[AUTH_USER_MAX], addr[STORE_LABEL_MAX], masked[MAILER_ADDR_MAX + 8];
    char code[7], body_text[1024], token[TOKEN_TEXT_LEN + 1], lu[AUTH_USER_MAX];
    unsigned char part[RC_PART];
    struct store_challenge old;
    int64_t now = api_now();
    cJSON *body, *o;
    int r;

    memset(&old, 0, sizeof(old));
    if (api_body(req, &body) != 0)
        return;
    if (api_rc_open(ww, req, body, user) != 0)
        goto done;
    r = api_rc_eligible(st, user, addr, sizeof(addr));
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        goto done;
    }
    if (r == STORE_NOTFOUND) {
        /* Nobody, or nothing to recover: the same answer, and no mail. */
        api_rc_decoy(ww, user, masked, sizeof(masked));
        log_info("web id=%llx event=recovery_begin user=%s sent=no",
                 (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)));
        goto answer;
    }
    mailer_mask(addr, masked, sizeof(masked));
    r = store_challenge_find(st, user, RC_KIND_CODE, &old);
    if (r == STORE_OK && old.expires > now && now >= old.created &&
        now - old.created < RC_RESEND_S) {
        /* A code went out a moment ago: none again, and the same answer
         * (a 429 here would tell that the name exists). */
        log_info("web id=%llx event=recovery_begin user=%s sent=recent",
                 (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)));
        goto answer;
    }
    if (api_rc_part_new(ww, code, part, now) != 0 ||
        store_challenge_remove_kind(st, user, RC_KIND_CODE) != STORE_OK ||
        challenge_create(st, api_keys(ww), user, RC_KIND_CODE, part, sizeof(part), req->peer,
                         now, RC_CODE_TTL_S, token, NULL) != STORE_OK) {
        OPENSSL_cleanse(code, sizeof(code));
        api_reply_store_error(req);
        goto done;
    }
    OPENSSL_cleanse(token, sizeof(token));
    /*
     * The answer does not wait for the relay: waiting would make a name
     * with an address answer slower than one without.  A refused message
     * is logged; the person asks again.
     */
    api_rc_code_text(body_text, sizeof(body_text), code, RC_CODE_TTL_S / 60,
                     "有人请求通过备用邮箱恢复您的邮箱帐号（找回丢失的二次验证方式）。",
                     "Someone asked to recover your mail account through this backup address "
                     "(a lost verification method).");
    api_rc_note(ww, addr, "code", "帐号恢复验证码 / Account recovery code", body_text);
    OPENSSL_cleanse(body_text, sizeof(body_text));
    OPENSSL_cleanse(code, sizeof(code));
    store_batch_audit(st, now, user, "recovery_begin", "via=web", req->peer);
    log_info("web id=%llx event=recovery_begin user=%s sent=yes to=%s",
             (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)), masked);

answer:
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sent_to", masked);
    cJSON_AddNumberToObject(o, "expires_in", RC_CODE_TTL_S);
    api_reply(req, 200, o, NULL);

done:
    OPENSSL_cleanse(&old, sizeof(old));
    OPENSSL_cleanse(addr, sizeof(addr));
    cJSON_Delete(body);
}

/* --- POST /api/recovery/confirm {"user","code"} ---------------------------- */

void
api_recovery_confirm(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    char user[AUTH_USER_MAX], addr[STORE_LABEL_MAX], lu[AUTH_USER_MAX], token[TOKEN_TEXT_LEN + 1];
    char when[48], ready[48], text[2048], detail[96];
    struct store_challenge ch, wait;
    int64_t now = api_now(), wait_s = (int64_t)(ww->cfg->recovery_wait_ms / 1000);
    int64_t created, expires;
    const char *code;
    int r, left = 0, ok = 0;
    cJSON *body, *o;

    memset(&ch, 0, sizeof(ch));
    memset(&wait, 0, sizeof(wait));
    if (api_body(req, &body) != 0)
        return;
    if (api_rc_open(ww, req, body, user) != 0 || api_code(req, body, &code) != 0)
        goto done;
    r = store_challenge_find(st, user, RC_KIND_CODE, &ch);
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        goto done;
    }
    /* Every failure answers alike (nothing pending, expired, locked,
     * wrong), so that this route tells nobody which names exist. */
    if (r == STORE_OK && ch.expires > now && ch.attempts < CHALLENGE_MAX_ATTEMPTS &&
        ch.data_len == RC_PART) {
        ok = api_rc_part_ok(ww, ch.data, code);
        if (!ok && challenge_wrong(st, &ch, &left) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
    }
    if (ok && challenge_consume(st, &ch, now) != STORE_OK)
        ok = 0;
    if (!ok) {
        api_rc_fail(ww, req, user, "confirm");
        log_info("web id=%llx event=recovery_bad_code user=%s step=confirm",
                 (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)));
        http_respond_error(req, 401, "bad_code",
                           "Wrong or expired code. After 5 wrong codes, start again.");
        goto done;
    }
    r = api_rc_eligible(st, user, addr, sizeof(addr));
    if (r != STORE_OK) {
        if (r == STORE_ERR)
            api_reply_store_error(req);
        else
            http_respond_error(req, 409, "nothing_to_recover",
                               "This account has no verification method to recover.");
        goto done;
    }
    /* A recovery already waiting keeps its time: asking again never makes
     * the wait shorter, nor longer. */
    r = store_challenge_find(st, user, RC_KIND_WAIT, &wait);
    if (r == STORE_OK && wait.expires > now) {
        created = wait.created;
        expires = wait.expires;
    } else {
        created = now;
        expires = now + wait_s + RC_FINISH_WINDOW_S;
        if (store_challenge_remove_kind(st, user, RC_KIND_WAIT) != STORE_OK ||
            challenge_create(st, api_keys(ww), user, RC_KIND_WAIT, NULL, 0, req->peer, now,
                             wait_s + RC_FINISH_WINDOW_S, token, NULL) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        OPENSSL_cleanse(token, sizeof(token));
        snprintf(detail, sizeof(detail), "wait_s=%lld via=web", (long long)wait_s);
        if (store_audit(st, now, user, "recovery_start", detail, req->peer) != STORE_OK)
            log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
        api_rc_time(now, when, sizeof(when));
        api_rc_time(created + wait_s, ready, sizeof(ready));
        snprintf(text, sizeof(text),
                 "帐号 %s 的恢复请求已确认（%s，来自 %s）。\n"
                 "%s 之后，可以移除该帐号除备用邮箱以外的所有二次验证方式，并撤销所有受信任设备。\n"
                 "如果这不是您本人的操作：请用密码和现有的二次验证方式（或恢复码）登录一次，"
                 "恢复请求即被取消；然后请修改密码。\n"
                 "\n"
                 "A recovery of the account %s was confirmed (%s, from %s).\n"
                 "After %s, every verification method of the account except this backup "
                 "address can be removed, and every trusted device revoked.\n"
                 "If this was not you: sign in once with your password and a current "
                 "verification method (or a recovery code); that cancels the recovery. "
                 "Then change your password.\n",
                 user, when, req->peer, ready, user, when, req->peer, ready);
        api_rc_note(ww, addr, "notice", "帐号恢复等待中 / Account recovery pending", text);
        log_info("web id=%llx event=recovery_waiting user=%s wait_s=%lld",
                 (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)), (long long)wait_s);
    }
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddNumberToObject(o, "ready_at", (double)(created + wait_s));
    cJSON_AddNumberToObject(o, "expires", (double)expires);
    api_reply(req, 200, o, NULL);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    OPENSSL_cleanse(&wait, sizeof(wait));
    OPENSSL_cleanse(addr, sizeof(addr));
    cJSON_Delete(body);
}

/* --- POST /api/recovery/finish {"user","code"?} ---------------------------- */

/* Sending the finishing code: the answer waits for the relay. */
struct api_rc_send {
    struct api_pending p;
    struct mailer_job *job;
    int64_t ch_id;
    unsigned char part[RC_PART];
    int64_t ttl;
    char user[AUTH_USER_MAX];
    char masked[MAILER_ADDR_MAX + 8];
};

static void
api_rc_send_release(struct api_pending *p)
{
    struct api_rc_send *s = container_of(p, struct api_rc_send, p);

    OPENSSL_cleanse(s, sizeof(*s));
    free(s);
}

static void
api_rc_send_stop(struct api_pending *p)
{
    struct api_rc_send *s = container_of(p, struct api_rc_send, p);

    if (s->job != NULL) {
        mailer_cancel(s->job);
        s->job = NULL;
    }
}

static void
api_rc_send_done(void *arg, int status)
{
    struct api_rc_send *s = arg;
    struct web_worker *ww = s->p.aw->ww;
    struct http_request *req;
    char lu[AUTH_USER_MAX];
    cJSON *o;

    s->job = NULL;
    req = api_pending_take(&s->p);
    if (req == NULL)
        return;
    if (status == MAILER_ECANCELED) {
        http_respond_error(req, 503, "shutting_down", "The server is restarting.");
    } else if (status != 0) {
        http_respond_error(req, 502, "mail_failed",
                           "The code could not be sent: the mail relay refused the message or "
                           "cannot be reached. Nothing was changed; please try again later.");
    } else if (store_challenge_set_data(api_store(ww), s->ch_id, s->part, sizeof(s->part)) !=
               STORE_OK) {
        /* Kept only once the relay took it: a failed send leaves nothing. */
        api_reply_store_error(req);
    } else {
        log_info("web id=%llx event=recovery_finish_code_sent user=%s to=%s",
                 (unsigned long long)req->id, rc_lu(s->user, lu, sizeof(lu)), s->masked);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sent_to", s->masked);
        cJSON_AddNumberToObject(o, "expires_in", (double)s->ttl);
        api_reply(req, 200, o, NULL);
    }
    api_pending_end(&s->p);
}

/* Mails the code that finishes the recovery of ch (a waiting challenge). */
static void
api_rc_finish_send(struct web_worker *ww, struct http_request *req,
                   const struct store_challenge *ch, const char *addr, int64_t now)
{
    struct api_worker *aw = ww->api;
    char code[7], text[1024];
    struct api_rc_send *s;
    int r;

    if (ch->data_len == RC_PART && now >= api_rc_part_sent(ch->data) &&
        now - api_rc_part_sent(ch->data) < RC_RESEND_S) {
        http_respond_error(req, 429, "too_soon",
                           "A code was sent a moment ago. Please wait before asking again.");
        return;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || api_rc_part_new(ww, code, s->part, now) != 0) {
        free(s);
        api_reply_store_error(req);
        return;
    }
    s->ch_id = ch->id;
    s->ttl = ch->expires - now < RC_CODE_TTL_S ? ch->expires - now : RC_CODE_TTL_S;
    util_strlcpy(s->user, ch->user, sizeof(s->user));
    mailer_mask(addr, s->masked, sizeof(s->masked));
    api_rc_code_text(text, sizeof(text), code, (int)((s->ttl + 59) / 60),
                     "用这个验证码完成帐号恢复：除备用邮箱以外的二次验证方式将被移除。",
                     "Use this code to finish the account recovery: every verification method "
                     "except this backup address will be removed.");
    r = mailer_send(aw->mailer, addr, "完成帐号恢复 / Finish the account recovery", text,
                    api_rc_send_done, s, &s->job);
    OPENSSL_cleanse(text, sizeof(text));
    OPENSSL_cleanse(code, sizeof(code));
    if (r != 0) {
        OPENSSL_cleanse(s, sizeof(*s));
        free(s);
        http_respond_error(req, 502, "mail_failed",
                           "The code could not be sent. Please try again later.");
        return;
    }
    api_pending_start(aw, &s->p, req, api_rc_send_stop, api_rc_send_release);
}

struct api_rc_kinds {
    char kinds[RC_MAX_KINDS][STORE_KIND_MAX];
    int n;
};

static int
api_rc_kind_row(void *arg, const struct store_factor *f)
{
    struct api_rc_kinds *k = arg;

    if (strcmp(f->kind, "email") == 0 || k->n == RC_MAX_KINDS)
        return 0;
    for (int i = 0; i < k->n; i++)
        if (strcmp(k->kinds[i], f->kind) == 0)
            return 0;
    util_strlcpy(k->kinds[k->n++], f->kind, STORE_KIND_MAX);
    return 0;
}

/* The right finishing code: the lost factors go. */
static void
api_rc_finish_do(struct web_worker *ww, struct http_request *req, const char *user,
                 const char *addr, int64_t now)
{
    struct store *st = api_store(ww);
    struct api_rc_kinds k;
    char detail[STORE_DETAIL_MAX], list[96] = "", lu[AUTH_USER_MAX], text[1536];
    int devices = 0, codes = 0, removed;
    cJSON *o, *arr;

    memset(&k, 0, sizeof(k));
    if (store_factor_list(st, user, api_rc_kind_row, &k) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    for (int i = 0; i < k.n; i++) {
        if (account_factor_remove(st, user, k.kinds[i], "recovery", req->peer, now, &removed,
                                  NULL, NULL) == STORE_ERR) {
            api_reply_store_error(req);
            return;
        }
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "",
                 k.kinds[i]);
    }
    if (store_device_revoke_all(st, user, &devices) != STORE_OK ||
        recovery_clear(st, user, "account_recovery", req->peer, now, &codes) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    api_rc_drop(st, user);
    snprintf(detail, sizeof(detail), "removed=%s devices=%d codes=%d via=web",
             list[0] ? list : "-", devices, codes);
    if (store_audit(st, now, user, "recovery_finish", detail, req->peer) != STORE_OK)
        log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
    log_info("web id=%llx event=recovery_finished user=%s removed=%s devices_revoked=%d",
             (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)), list[0] ? list : "-",
             devices);
    snprintf(text, sizeof(text),
             "帐号 %s 已通过备用邮箱恢复：其他二次验证方式已移除，受信任设备已全部撤销。\n"
             "现在可以只用密码登录，然后重新绑定二次验证方式。\n"
             "\n"
             "The account %s was recovered through this backup address: its other "
             "verification methods were removed and every trusted device revoked.\n"
             "Sign in with the password, then bind a verification method again.\n",
             user, user);
    api_rc_note(ww, addr, "finished", "帐号已恢复 / Account recovered", text);
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    arr = cJSON_AddArrayToObject(o, "removed");
    for (int i = 0; i < k.n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(k.kinds[i]));
    cJSON_AddNumberToObject(o, "devices", devices);
    api_reply(req, 200, o, NULL);
}

void
api_recovery_finish(struct web_worker *ww, struct http_request *req)
{
    struct store *st = api_store(ww);
    char user[AUTH_USER_MAX], addr[STORE_LABEL_MAX], lu[AUTH_USER_MAX];
    struct store_challenge ch;
    int64_t now = api_now(), wait_s = (int64_t)(ww->cfg->recovery_wait_ms / 1000);
    const char *code = NULL;
    int r, left = 0;
    cJSON *body, *o;

    memset(&ch, 0, sizeof(ch));
    if (api_body(req, &body) != 0)
        return;
    if (api_rc_open(ww, req, body, user) != 0 ||
        api_str(req, body, "code", 16, 0, &code) < 0)
        goto done;
    r = store_challenge_find(st, user, RC_KIND_WAIT, &ch);
    if (r == STORE_ERR) {
        api_reply_store_error(req);
        goto done;
    }
    if (r == STORE_NOTFOUND || ch.expires <= now) {
        http_respond_error(req, 410, "expired",
                           "No account recovery is waiting. Start again with a code by e-mail.");
        goto done;
    }
    if (now < ch.created + wait_s) {
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "too_early");
        cJSON_AddStringToObject(o, "message", "The waiting period has not ended yet.");
        cJSON_AddNumberToObject(o, "ready_at", (double)(ch.created + wait_s));
        api_reply(req, 409, o, NULL);
        goto done;
    }
    if (ch.attempts >= CHALLENGE_MAX_ATTEMPTS) {
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many wrong codes. Please start the recovery again.");
        goto done;
    }
    r = api_rc_eligible(st, user, addr, sizeof(addr));
    if (r != STORE_OK) {
        /* The address was unbound meanwhile (by someone who could verify):
         * nothing to send a code to, and nothing to recover. */
        if (r == STORE_ERR) {
            api_reply_store_error(req);
        } else {
            api_rc_drop(st, user);
            http_respond_error(req, 410, "expired", "No account recovery is waiting.");
        }
        goto done;
    }
    if (code == NULL) {
        api_rc_finish_send(ww, req, &ch, addr, now);
        goto done;
    }
    if (ch.data_len != RC_PART) {
        http_respond_error(req, 409, "no_code_sent", "Ask for a code by e-mail first.");
        goto done;
    }
    if (now - api_rc_part_sent(ch.data) >= RC_CODE_TTL_S) {
        http_respond_error(req, 410, "code_expired", "This code has expired. Ask for a new one.");
        goto done;
    }
    if (!api_rc_part_ok(ww, ch.data, code)) {
        if (challenge_wrong(st, &ch, &left) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        api_rc_fail(ww, req, user, "finish");
        log_info("web id=%llx event=recovery_bad_code user=%s step=finish left=%d",
                 (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)), left);
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "bad_code");
        cJSON_AddStringToObject(o, "message", "Wrong code.");
        cJSON_AddNumberToObject(o, "attempts_left", left);
        api_reply(req, 401, o, NULL);
        goto done;
    }
    if (challenge_consume(st, &ch, now) != STORE_OK) {
        http_respond_error(req, 410, "expired", "No account recovery is waiting.");
        goto done;
    }
    api_rc_finish_do(ww, req, user, addr, now);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    OPENSSL_cleanse(addr, sizeof(addr));
    cJSON_Delete(body);
}

/* --- a sign-in with a second factor ------------------------------------ */

void
api_recovery_signed_in(struct web_worker *ww, struct http_request *req, const char *user)
{
    struct store *st = api_store(ww);
    char lu[AUTH_USER_MAX];

    /* Whoever just proved a factor does not need the account recovered;
     * if it was not them who asked, this is how they stop it. */
    if (!api_rc_drop(st, user))
        return;
    if (store_audit(st, api_now(), user, "recovery_cancel", "by=signin", req->peer) != STORE_OK)
        log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
    log_info("web id=%llx event=recovery_cancelled user=%s by=signin",
             (unsigned long long)req->id, rc_lu(user, lu, sizeof(lu)));
}
