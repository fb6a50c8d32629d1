/*
 * api_email.c - the backup e-mail factor (web/API.md): sending 6-digit
 * codes through the worker's mailer, binding an address (begin -> code by
 * mail -> confirm), codes for a sign-in (/api/login/email-code) and for the
 * fresh verification before unbind/change (/api/verify/email-code), and
 * checking such a code.  Account recovery by the backup address
 * ([web] email_factor = recovery) is api_recovery.c's; it makes and checks
 * its codes with api_email_code_new / api_email_code_ok.
 *
 * A code is never stored or logged: a challenge keeps HMAC-SHA256(keys.token,
 * "email-code" | salt | code) with a random salt, written only once the
 * relay accepted the message, so a failed send leaves nothing behind.
 * Codes are compared in constant time; the challenge that holds one is
 * used up by the first right code and locked after 5 wrong ones.  Addresses
 * appear masked ("j***@example.com") in responses and logs.
 *
 * Layout of the code part of a challenge's data (sign-in and verification
 * challenges keep their own data before it, then a NUL):
 *   'e' | salt[16] | hmac[32] | sent (int64, big-endian)
 * A pending binding (kind email_enroll, one per user) holds:
 *   mode ('b' bind, 'c' change) | salt[16] | hmac[32] | address
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "auth/account.h"
#include "auth/auth.h"
#include "auth/challenge.h"
#include "auth/keys.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"
#include "web/mailer.h"

#define EMAIL_ENROLL "email_enroll"
#define EMAIL_SALT 16
#define EMAIL_MAC 32
#define EMAIL_PART (1 + EMAIL_SALT + EMAIL_MAC + 8)
#define EMAIL_ADDR_MAX (STORE_LABEL_MAX - 1)   /* it becomes the factor's label */
#define EMAIL_RESEND_S 20                      /* at most one code per this long */

enum api_mail_what { MAIL_BIND, MAIL_SIGNIN, MAIL_VERIFY };

/* --- codes -------------------------------------------------------------- */

static void
email_mac(const struct keys *k, const unsigned char salt[EMAIL_SALT], const char *code,
          unsigned char out[EMAIL_MAC])
{
    unsigned char in[10 + EMAIL_SALT + 8];
    unsigned int len = EMAIL_MAC;
    size_t n = strlen(code) > 8 ? 8 : strlen(code);

    memcpy(in, "email-code", 10);
    memcpy(in + 10, salt, EMAIL_SALT);
    memcpy(in + 10 + EMAIL_SALT, code, n);
    if (HMAC(EVP_sha256(), k->token, KEYS_LEN, in, 10 + EMAIL_SALT + n, out, &len) == NULL)
        RAND_bytes(out, EMAIL_MAC);    /* matches nothing */
    OPENSSL_cleanse(in, sizeof(in));
}

/* A uniform 6-digit code and its salted MAC; 0 or -1. */
static int
email_new_code(const struct keys *k, char code[7], unsigned char salt[EMAIL_SALT],
               unsigned char mac[EMAIL_MAC])
{
    uint32_t v;

    do {
        if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
            return -1;
    } while (v >= 4294000000u);    /* 4294 * 10^6: no modulo bias */
    snprintf(code, 7, "%06u", (unsigned)(v % 1000000u));
    if (RAND_bytes(salt, EMAIL_SALT) != 1)
        return -1;
    email_mac(k, salt, code, mac);
    OPENSSL_cleanse(&v, sizeof(v));
    return 0;
}

static int
email_code_matches(const struct keys *k, const unsigned char *salt, const unsigned char *mac,
                   const char *code)
{
    unsigned char want[EMAIL_MAC];
    int ok;

    if (strlen(code) != 6 || strspn(code, "0123456789") != 6)
        return 0;
    email_mac(k, salt, code, want);
    ok = CRYPTO_memcmp(want, mac, EMAIL_MAC) == 0;
    OPENSSL_cleanse(want, sizeof(want));
    return ok;
}

/* Where a challenge's own data ends (its first NUL, or its end). */
static size_t
email_prefix_len(const struct store_challenge *ch)
{
    const unsigned char *nul = memchr(ch->data, 0, ch->data_len);

    return nul != NULL ? (size_t)(nul - ch->data) : ch->data_len;
}

/* The code part of a challenge, or NULL if no code was sent for it. */
static const unsigned char *
email_part(const struct store_challenge *ch)
{
    size_t p = email_prefix_len(ch);

    if (p + 1 + EMAIL_PART != ch->data_len || ch->data[p + 1] != 'e')
        return NULL;
    return ch->data + p + 1;
}

static int64_t
email_sent(const unsigned char *part)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | part[1 + EMAIL_SALT + EMAIL_MAC + i];
    return (int64_t)v;
}

size_t
api_challenge_kind_len(const struct store_challenge *ch)
{
    return email_prefix_len(ch);
}

static int
email_mode_recovery(struct web_worker *ww)
{
    return ww->cfg->email_factor == CONFIG_EMAIL_RECOVERY;
}

int
api_email_offered(struct web_worker *ww)
{
    return !email_mode_recovery(ww);
}

static int
email_relay_ok(struct web_worker *ww, struct http_request *req)
{
    struct api_worker *aw = ww->api;

    if (aw->mailer == NULL) {
        http_respond_error(req, 503, "mail_unavailable",
                           "Codes by e-mail are not set up on this server.");
        return -1;
    }
    return 0;
}

int
api_check_email_code(struct web_worker *ww, struct http_request *req,
                     const struct store_challenge *ch, const char *code)
{
    const unsigned char *part;
    struct store_factor f;
    int r;

    if (email_mode_recovery(ww)) {
        http_respond_error(req, 403, "not_offered",
                           "On this server the backup e-mail cannot be used to verify.");
        return -1;
    }
    part = email_part(ch);
    if (part == NULL) {
        http_respond_error(req, 409, "no_code_sent", "Ask for a code by e-mail first.");
        return -1;
    }
    r = store_factor_get(api_store(ww), ch->user, "email", &f);
    if (r != STORE_OK && r != STORE_NOTFOUND) {
        api_reply_store_error(req);
        return -1;
    }
    if (r == STORE_NOTFOUND ||
        !email_code_matches(api_keys(ww), part + 1, part + 1 + EMAIL_SALT, code)) {
        OPENSSL_cleanse(&f, sizeof(f));
        return ACCOUNT_BAD_CODE;
    }
    store_factor_touch(api_store(ww), f.id, api_now());
    OPENSSL_cleanse(&f, sizeof(f));
    return STORE_OK;
}

/* --- sending ------------------------------------------------------------ */

struct api_mail {
    struct api_pending p;
    struct mailer_job *job;
    enum api_mail_what what;
    int64_t ch_id;                 /* MAIL_SIGNIN/VERIFY: where the code goes */
    unsigned char data[STORE_CDATA_MAX];
    size_t data_len;
    int64_t ttl;                   /* seconds the code is good for */
    int has_grant;                 /* MAIL_BIND of a change: used up on success */
    struct store_challenge grant;
    char user[AUTH_USER_MAX];
    char masked[MAILER_ADDR_MAX + 8];
};

static void
api_mail_release(struct api_pending *p)
{
    struct api_mail *am = container_of(p, struct api_mail, p);

    OPENSSL_cleanse(am, sizeof(*am));
    free(am);
}

static void
api_mail_stop(struct api_pending *p)
{
    struct api_mail *am = container_of(p, struct api_mail, p);

    if (am->job != NULL) {
        mailer_cancel(am->job);
        am->job = NULL;
    }
}

/* The relay took the message: keep the code's MAC, then answer. */
static void
api_mail_store(struct web_worker *ww, struct http_request *req, struct api_mail *am)
{
    struct store *st = api_store(ww);
    char token[TOKEN_TEXT_LEN + 1], lu[AUTH_USER_MAX];
    int r;
    cJSON *o;

    if (am->has_grant && challenge_consume(st, &am->grant, api_now()) != STORE_OK) {
        http_respond_error(req, 403, "verification_required",
                           "Please verify with your current factor first.");
        return;
    }
    if (am->what == MAIL_BIND) {
        r = store_challenge_remove_kind(st, am->user, EMAIL_ENROLL);
        if (r == STORE_OK)
            r = challenge_create(st, api_keys(ww), am->user, EMAIL_ENROLL, am->data,
                                 am->data_len, req->peer, api_now(), am->ttl, token, NULL);
        OPENSSL_cleanse(token, sizeof(token));
    } else {
        r = store_challenge_set_data(st, am->ch_id, am->data, am->data_len);
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=email_code_sent user=%s to=%s what=%s",
             (unsigned long long)req->id, util_log_safe(am->user, lu, sizeof(lu)), am->masked,
             am->what == MAIL_BIND ? "bind" : am->what == MAIL_SIGNIN ? "signin" : "verify");
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "sent_to", am->masked);
    cJSON_AddNumberToObject(o, "expires_in", (double)am->ttl);
    api_reply(req, 200, o, NULL);
}

static void
api_mail_done(void *arg, int status)
{
    struct api_mail *am = arg;
    struct http_request *req;

    am->job = NULL;
    req = api_pending_take(&am->p);
    if (req == NULL)
        return;
    if (status == 0)
        api_mail_store(am->p.aw->ww, req, am);
    else if (status == MAILER_ECANCELED)
        http_respond_error(req, 503, "shutting_down", "The server is restarting.");
    else
        http_respond_error(req, 502, "mail_failed",
                           "The code could not be sent: the mail relay refused the message "
                           "or cannot be reached. Nothing was changed; please try again later.");
    api_pending_end(&am->p);
}

/*
 * Sends code to addr and answers req when the relay has spoken; am (filled
 * by the caller except the pending fields) is owned from here on.
 */
static void
api_mail_start(struct web_worker *ww, struct http_request *req, struct api_mail *am,
               const char *addr, const char *code)
{
    struct api_worker *aw = ww->api;
    char subject[128], body[1024];
    int minutes = (int)((am->ttl + 59) / 60), r;

    snprintf(subject, sizeof(subject), "邮箱验证码 / Verification code");
    snprintf(body, sizeof(body),
             "您的验证码是 %s（%d 分钟内有效）。\n"
             "如果这不是您本人的操作，请忽略本邮件，不要把验证码告诉任何人。\n"
             "\n"
             "Your verification code is %s (valid %d minutes).\n"
             "If you did not ask for it, ignore this message and do not share the code.\n",
             code, minutes, code, minutes);
    mailer_mask(addr, am->masked, sizeof(am->masked));
    r = mailer_send(aw->mailer, addr, subject, body, api_mail_done, am, &am->job);
    OPENSSL_cleanse(body, sizeof(body));
    if (r != 0) {
        if (r == UV_EINVAL)
            http_respond_error(req, 400, "bad_address", "This is not a usable e-mail address.");
        else
            http_respond_error(req, 502, "mail_failed",
                               "The code could not be sent. Please try again later.");
        api_mail_release(&am->p);    /* never started: still ours */
        return;
    }
    api_pending_start(aw, &am->p, req, api_mail_stop, api_mail_release);
}

/*
 * A code for the challenge ch (sign-in or verification) to the user's bound
 * address: keeps ch's own data in front of the code part.
 */
static void
api_mail_for_challenge(struct web_worker *ww, struct http_request *req,
                       const struct store_challenge *ch, enum api_mail_what what)
{
    const unsigned char *old = email_part(ch);
    unsigned char salt[EMAIL_SALT], mac[EMAIL_MAC];
    size_t plen = email_prefix_len(ch);
    struct store_factor f;
    struct api_mail *am;
    int64_t now = api_now();
    char code[7];
    int r;

    if (old != NULL && now - email_sent(old) < EMAIL_RESEND_S && now >= email_sent(old)) {
        http_respond_error(req, 429, "too_soon",
                           "A code was sent a moment ago. Please wait before asking again.");
        return;
    }
    r = store_factor_get(api_store(ww), ch->user, "email", &f);
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 404, "not_bound", "No backup e-mail address is bound.");
        return;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    am = calloc(1, sizeof(*am));
    if (am == NULL || plen + 1 + EMAIL_PART > sizeof(am->data) ||
        email_new_code(api_keys(ww), code, salt, mac) != 0) {
        free(am);
        OPENSSL_cleanse(&f, sizeof(f));
        api_reply_store_error(req);
        return;
    }
    am->what = what;
    am->ch_id = ch->id;
    am->ttl = ch->expires - now > 60 ? ch->expires - now : 60;
    util_strlcpy(am->user, ch->user, sizeof(am->user));
    memcpy(am->data, ch->data, plen);
    am->data[plen] = 0;
    am->data[plen + 1] = 'e';
    memcpy(am->data + plen + 2, salt, EMAIL_SALT);
    memcpy(am->data + plen + 2 + EMAIL_SALT, mac, EMAIL_MAC);
    for (int i = 0; i < 8; i++) {
        unsigned char *t = am->data + plen + 2 + EMAIL_SALT + EMAIL_MAC;
        t[i] = (unsigned char)((uint64_t)now >> (56 - 8 * i));
    }
    am->data_len = plen + 1 + EMAIL_PART;
    api_mail_start(ww, req, am, f.label, code);
    OPENSSL_cleanse(code, sizeof(code));
    OPENSSL_cleanse(&f, sizeof(f));
}

/* POST /api/login/email-code {"challenge"} */
void
api_login_email_code(struct web_worker *ww, struct http_request *req)
{
    struct store_challenge ch;
    const char *challenge;
    cJSON *body;
    int r;

    memset(&ch, 0, sizeof(ch));
    if (api_body(req, &body) != 0)
        return;
    if (api_str(req, body, "challenge", 64, 1, &challenge) != 0)
        goto done;
    if (!api_email_offered(ww)) {
        http_respond_error(req, 403, "not_offered",
                           "On this server the backup e-mail cannot be used to sign in.");
        goto done;
    }
    if (email_relay_ok(ww, req) != 0)
        goto done;
    r = challenge_open(api_store(ww), api_keys(ww), challenge, CHALLENGE_SIGNIN, api_now(), &ch);
    if (r == CHALLENGE_GONE) {
        http_respond_error(req, 410, "expired", "This sign-in has expired. Please start again.");
        goto done;
    }
    if (r == CHALLENGE_LOCKED) {
        http_respond_error(req, 429, "too_many_attempts",
                           "Too many wrong codes. Please start again later.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    api_mail_for_challenge(ww, req, &ch, MAIL_SIGNIN);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    cJSON_Delete(body);
}

/* POST /api/verify/email-code {"challenge"} (signed in) */
void
api_verify_email_code(struct web_worker *ww, struct http_request *req)
{
    struct store_challenge ch;
    struct api_session s;
    const char *challenge;
    cJSON *body = NULL;
    int r;

    memset(&ch, 0, sizeof(ch));
    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (api_str(req, body, "challenge", 64, 1, &challenge) != 0)
        goto done;
    if (!api_email_offered(ww)) {
        http_respond_error(req, 403, "not_offered",
                           "On this server the backup e-mail cannot be used to verify.");
        goto done;
    }
    if (email_relay_ok(ww, req) != 0)
        goto done;
    r = challenge_open(api_store(ww), api_keys(ww), challenge, NULL, api_now(), &ch);
    if (r == STORE_OK &&
        ((strcmp(ch.kind, CHALLENGE_UNBIND) != 0 && strcmp(ch.kind, CHALLENGE_CHANGE) != 0) ||
         strcmp(ch.user, s.ws.user) != 0))
        r = CHALLENGE_GONE;
    if (r == CHALLENGE_GONE) {
        http_respond_error(req, 410, "expired", "This verification has expired. Start again.");
        goto done;
    }
    if (r == CHALLENGE_LOCKED) {
        http_respond_error(req, 429, "too_many_attempts", "Too many wrong codes.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    api_mail_for_challenge(ww, req, &ch, MAIL_VERIFY);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
    cJSON_Delete(body);
    api_session_done(&s);
}

/* --- binding ------------------------------------------------------------ */

void
api_email_begin(struct web_worker *ww, struct http_request *req, struct api_session *s,
                cJSON *body)
{
    struct store *st = api_store(ww);
    unsigned char salt[EMAIL_SALT], mac[EMAIL_MAC];
    const char *address, *grant = NULL;
    struct store_challenge old, gch;
    struct store_factor f;
    struct api_mail *am;
    size_t alen;
    char code[7];
    int r, mode = 'b';

    if (api_str(req, body, "address", EMAIL_ADDR_MAX, 1, &address) != 0 ||
        api_str(req, body, "grant", 64, 0, &grant) < 0)
        return;
    if (mailer_addr_ok(address) != 0) {
        http_respond_error(req, 400, "bad_address",
                           "Enter one e-mail address such as name@example.com.");
        return;
    }
    if (email_relay_ok(ww, req) != 0)
        return;
    r = store_challenge_find(st, s->ws.user, EMAIL_ENROLL, &old);
    if (r == STORE_OK && old.expires > api_now() && api_now() - old.created < EMAIL_RESEND_S &&
        api_now() >= old.created) {
        OPENSSL_cleanse(&old, sizeof(old));
        http_respond_error(req, 429, "too_soon",
                           "A code was sent a moment ago. Please wait before asking again.");
        return;
    }
    OPENSSL_cleanse(&old, sizeof(old));
    r = store_factor_get(st, s->ws.user, "email", &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r != STORE_OK && r != STORE_NOTFOUND) {
        api_reply_store_error(req);
        return;
    }
    if (r == STORE_OK) {
        if (grant == NULL) {
            http_respond_error(req, 409, "already_bound",
                               "A backup e-mail address is already bound. Use Change.");
            return;
        }
        /* Checked now, used up only once the code went out. */
        if (api_open_grant(ww, req, s, grant, "change", "email", &gch) != 0)
            return;
        mode = 'c';
    }
    am = calloc(1, sizeof(*am));
    if (am != NULL && mode == 'c') {
        am->has_grant = 1;
        am->grant = gch;
        OPENSSL_cleanse(&gch, sizeof(gch));
    }
    alen = strlen(address);
    if (am == NULL || 1 + EMAIL_SALT + EMAIL_MAC + alen > sizeof(am->data) ||
        email_new_code(api_keys(ww), code, salt, mac) != 0) {
        if (am != NULL)
            OPENSSL_cleanse(am, sizeof(*am));
        free(am);
        OPENSSL_cleanse(&gch, sizeof(gch));
        api_reply_store_error(req);
        return;
    }
    am->what = MAIL_BIND;
    am->ttl = CHALLENGE_ENROLL_TTL_S;
    util_strlcpy(am->user, s->ws.user, sizeof(am->user));
    am->data[0] = (unsigned char)mode;
    memcpy(am->data + 1, salt, EMAIL_SALT);
    memcpy(am->data + 1 + EMAIL_SALT, mac, EMAIL_MAC);
    memcpy(am->data + 1 + EMAIL_SALT + EMAIL_MAC, address, alen);
    am->data_len = 1 + EMAIL_SALT + EMAIL_MAC + alen;
    api_mail_start(ww, req, am, address, code);
    OPENSSL_cleanse(code, sizeof(code));
}

void
api_email_confirm(struct web_worker *ww, struct http_request *req, struct api_session *s,
                  cJSON *body)
{
    struct store *st = api_store(ww);
    char address[EMAIL_ADDR_MAX + 1], masked[MAILER_ADDR_MAX + 8], lu[AUTH_USER_MAX];
    char detail[STORE_DETAIL_MAX];
    struct store_challenge ch;
    struct store_factor f;
    const char *code;
    int64_t now = api_now(), id = 0;
    int r, left = 0, removed = 0;
    size_t alen;
    cJSON *o;

    memset(&ch, 0, sizeof(ch));
    if (api_code(req, body, &code) != 0)
        return;
    if (api_enrollment_open(req, st, s->ws.user, EMAIL_ENROLL, now, &ch) != 0)
        goto done;
    if (ch.data_len <= 1 + EMAIL_SALT + EMAIL_MAC ||
        ch.data_len - (1 + EMAIL_SALT + EMAIL_MAC) > EMAIL_ADDR_MAX) {
        api_reply_store_error(req);
        goto done;
    }
    alen = ch.data_len - (1 + EMAIL_SALT + EMAIL_MAC);
    memcpy(address, ch.data + 1 + EMAIL_SALT + EMAIL_MAC, alen);
    address[alen] = '\0';
    if (!email_code_matches(api_keys(ww), ch.data + 1, ch.data + 1 + EMAIL_SALT, code)) {
        if (challenge_wrong(st, &ch, &left) != STORE_OK) {
            api_reply_store_error(req);
            goto done;
        }
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "bad_code");
        cJSON_AddStringToObject(o, "message", "Wrong code.");
        cJSON_AddNumberToObject(o, "attempts_left", left);
        api_reply(req, 401, o, NULL);
        goto done;
    }
    if (challenge_consume(st, &ch, now) != STORE_OK) {
        http_respond_error(req, 410, "expired", "Please start the binding again.");
        goto done;
    }
    r = store_factor_get(st, s->ws.user, "email", &f);
    OPENSSL_cleanse(&f, sizeof(f));
    if (r == STORE_OK && ch.data[0] != 'c') {
        http_respond_error(req, 409, "already_bound",
                           "A backup e-mail address is already bound.");
        goto done;
    }
    if (r == STORE_OK)
        r = store_factor_remove(st, s->ws.user, "email", &removed);
    else if (r == STORE_NOTFOUND)
        r = STORE_OK;
    if (r == STORE_OK)
        r = store_factor_add(st, s->ws.user, "email", address, NULL, 0, now, &id);
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    snprintf(detail, sizeof(detail), "kind=email id=%lld via=web", (long long)id);
    if (store_audit(st, now, s->ws.user, removed ? "factor_change" : "factor_bind", detail,
                    req->peer) != STORE_OK)
        log_warn("web id=%llx event=audit_lost", (unsigned long long)req->id);
    mailer_mask(address, masked, sizeof(masked));
    log_info("web id=%llx event=factor_bound user=%s kind=email factor=%lld to=%s",
             (unsigned long long)req->id, util_log_safe(s->ws.user, lu, sizeof(lu)),
             (long long)id, masked);
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddStringToObject(o, "label", masked);
    api_reply(req, 200, o, NULL);

done:
    OPENSSL_cleanse(&ch, sizeof(ch));
}

/* --- codes for api_recovery.c (api_priv.h) ------------------------------ */

int
api_email_code_new(const struct keys *k, char code[7], unsigned char salt[16],
                   unsigned char mac[32])
{
    _Static_assert(EMAIL_SALT == 16 && EMAIL_MAC == 32, "api_priv.h's sizes");
    return email_new_code(k, code, salt, mac);
}

int
api_email_code_ok(const struct keys *k, const unsigned char salt[16], const unsigned char mac[32],
                  const char *code)
{
    return email_code_matches(k, salt, mac, code);
}

/* --- the worker's mailer ------------------------------------------------ */

int
api_email_init(struct web_worker *ww)
{
    struct api_worker *aw = ww->api;
    const struct config *cfg = ww->cfg;
    int rc;

    if (cfg->mail_relay[0] == '\0')
        return 0;
    rc = mailer_new(ww->loop, cfg->mail_relay, cfg->mail_from, 30000, &aw->mailer);
    if (rc != 0)
        log_error("web event=init_failed what=mailer error=\"%s\"", uv_strerror(rc));
    return rc;
}
