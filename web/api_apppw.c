/*
 * api_apppw.c - client-specific passwords (list, create, delete one, clear
 * all), trusted devices (list, revoke) and recent sign-ins for the
 * signed-in user (web/API.md).  A new password is hashed (argon2id) on the
 * libuv thread pool, never on the loop; a revocation also ends the mail
 * sessions of this worker that use it at once (auth_live_check), and the
 * other workers' within their watch tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/account.h"
#include "auth/apppw.h"
#include "auth/auth.h"
#include "auth/keys.h"
#include "core/log.h"
#include "core/util.h"
#include "web/api_priv.h"

/* --- list --------------------------------------------------------------- */

static int
api_apppw_row(void *arg, const struct store_apppw *a)
{
    cJSON *o = cJSON_CreateObject();
    char scope[32];

    apppw_scope_format(a->scope, scope, sizeof(scope));
    cJSON_AddNumberToObject(o, "id", (double)a->id);
    cJSON_AddStringToObject(o, "name", a->name);
    cJSON_AddStringToObject(o, "scope", scope);
    api_add_time(o, "created", a->created);
    api_add_time(o, "expires", a->expires);
    api_add_time(o, "last_used", a->last_used);
    api_add_opt(o, "last_addr", a->last_addr);
    api_add_opt(o, "last_proto", a->last_proto);
    cJSON_AddItemToArray(arg, o);
    return 0;
}

void
api_apppw_list(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    cJSON *arr;

    if (api_session(ww, req, &s) != 0)
        return;
    arr = cJSON_CreateArray();
    if (arr == NULL || store_apppw_list(api_store(ww), s.ws.user, api_apppw_row, arr) != STORE_OK) {
        cJSON_Delete(arr);
        api_reply_store_error(req);
    } else {
        api_reply(req, 200, arr, NULL);
    }
    api_session_done(&s);
}

/* --- create ------------------------------------------------------------- */

struct api_apppw_job {
    struct api_kdf k;
    char user[STORE_NAME_MAX];
    char name[ACCOUNT_NAME_MAX + 1];
    char pw[APPPW_LEN + 1];
    char locator[APPPW_LOCATOR_LEN + 1];
    char hash[APPPW_HASH_MAX];
};

static void
api_apppw_release(struct api_pending *p)
{
    struct api_apppw_job *j = container_of(p, struct api_apppw_job, k.p);

    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

/* On the thread pool: touches nothing but the job. */
static int
api_apppw_run(struct api_kdf *k)
{
    struct api_apppw_job *j = container_of(k, struct api_apppw_job, k);

    return apppw_hash(&k->params, k->pepper, j->pw, j->hash, sizeof(j->hash));
}

/* The client is still there (else the password is not stored). */
static void
api_apppw_done(struct api_kdf *k, struct http_request *req, int rc)
{
    struct api_apppw_job *j = container_of(k, struct api_apppw_job, k);
    struct web_worker *ww = k->p.aw->ww;
    char shown[APPPW_SHOWN_LEN + 1], lu[STORE_NAME_MAX];
    int64_t id = 0;
    cJSON *o;

    if (rc != 0) {
        log_error("web id=%llx event=apppw_hash_failed", (unsigned long long)req->id);
        api_reply_store_error(req);
        return;
    }
    if (account_apppw_save(api_store(ww), j->user, j->name, APPPW_SCOPE_ALL, j->locator, j->hash,
                           api_now(), 0, "web", req->peer, &id) != STORE_OK) {
        api_reply_store_error(req);
        return;
    }
    log_info("web id=%llx event=apppw_created user=%s apppw=%lld", (unsigned long long)req->id,
             util_log_safe(j->user, lu, sizeof(lu)), (long long)id);
    apppw_format(j->pw, shown);
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "name", j->name);
    cJSON_AddStringToObject(o, "scope", "imap,pop3,smtp");
    cJSON_AddStringToObject(o, "password", shown);
    api_reply(req, 200, o, NULL);
    OPENSSL_cleanse(shown, sizeof(shown));
}

void
api_apppw_create(struct web_worker *ww, struct http_request *req)
{
    struct api_apppw_job *j = NULL;
    struct api_session s;
    const char *name;
    cJSON *body = NULL;
    int r;

    if (api_session(ww, req, &s) != 0)
        return;
    if (api_body(req, &body) != 0)
        goto done;
    if (api_str(req, body, "name", API_STR_MAX, 1, &name) != 0)
        goto done;
    if (account_apppw_name_ok(name) != 0) {
        http_respond_error(req, 400, "bad_name", "The name must be 1 to 64 bytes of text.");
        goto done;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        api_reply_store_error(req);
        goto done;
    }
    r = account_apppw_pick(api_store(ww), api_keys(ww), s.ws.user, j->pw, j->locator);
    if (r == STORE_CONFLICT) {
        http_respond_error(req, 409, "too_many", "Too many client-specific passwords.");
        goto done;
    }
    if (r != STORE_OK) {
        api_reply_store_error(req);
        goto done;
    }
    util_strlcpy(j->user, s.ws.user, sizeof(j->user));
    util_strlcpy(j->name, name, sizeof(j->name));
    /* The hash is short: it finishes on its own. */
    if (api_kdf_start(ww, req, &j->k, api_apppw_run, api_apppw_done, api_apppw_release) != 0) {
        api_reply_store_error(req);
        goto done;
    }
    j = NULL;

done:
    if (j != NULL)
        api_apppw_release(&j->k.p);
    cJSON_Delete(body);
    api_session_done(&s);
}

/* --- revoke ------------------------------------------------------------- */

static void
api_apppw_revoked(struct web_worker *ww, struct http_request *req, const char *user,
                  int64_t id, int removed)
{
    char lu[STORE_NAME_MAX];
    cJSON *o;

    /* This worker's sessions end now; the others' at their next watch tick. */
    if (auth_live_check(ww->auth) != 0)
        log_warn("web id=%llx event=live_check_failed", (unsigned long long)req->id);
    log_info("web id=%llx event=apppw_revoked user=%s apppw=%lld count=%d",
             (unsigned long long)req->id, util_log_safe(user, lu, sizeof(lu)), (long long)id,
             removed);
    o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    cJSON_AddNumberToObject(o, "removed", removed);
    api_reply(req, 200, o, NULL);
}

void
api_apppw_delete(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    int64_t id;
    int removed = 0, r;

    if (api_path_id(req, "/api/app-passwords/", &id) != 0) {
        http_respond_error(req, 404, "not_found", "No such client-specific password.");
        return;
    }
    if (api_session(ww, req, &s) != 0)
        return;
    r = account_apppw_revoke(api_store(ww), s.ws.user, id, "web", req->peer, api_now(),
                             &removed);
    if (r == STORE_NOTFOUND)
        http_respond_error(req, 404, "not_found", "No such client-specific password.");
    else if (r != STORE_OK)
        api_reply_store_error(req);
    else
        api_apppw_revoked(ww, req, s.ws.user, id, removed);
    api_session_done(&s);
}

void
api_apppw_clear(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    int removed = 0;

    if (api_session(ww, req, &s) != 0)
        return;
    if (account_apppw_revoke(api_store(ww), s.ws.user, 0, "web", req->peer, api_now(),
                             &removed) != STORE_OK)
        api_reply_store_error(req);
    else
        api_apppw_revoked(ww, req, s.ws.user, 0, removed);
    api_session_done(&s);
}

/* --- trusted devices ---------------------------------------------------- */

struct api_devices_ctx {
    cJSON *arr;
    int64_t current;
};

static int
api_device_row(void *arg, const struct store_device *d)
{
    struct api_devices_ctx *c = arg;
    cJSON *o;

    if (d->expires <= api_now())
        return 0;
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)d->id);
    cJSON_AddStringToObject(o, "label", d->label);
    api_add_time(o, "created", d->created);
    api_add_time(o, "expires", d->expires);
    api_add_time(o, "last_used", d->last_used);
    api_add_opt(o, "last_addr", d->last_addr);
    cJSON_AddBoolToObject(o, "current", d->id == c->current);
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

void
api_devices_list(struct web_worker *ww, struct http_request *req)
{
    struct api_devices_ctx c = {NULL, 0};
    char device[TOKEN_TEXT_LEN + 1];
    unsigned char hash[TOKEN_HASH_LEN];
    struct store_device d;
    struct api_session s;

    if (api_session(ww, req, &s) != 0)
        return;
    /* Which one is this browser? */
    if (http_cookie(req, API_DEVICE_COOKIE, device, sizeof(device)) == 0 &&
        token_hash(api_keys(ww)->token, device, strlen(device), hash) == 0 &&
        store_device_get(api_store(ww), hash, &d) == STORE_OK && strcmp(d.user, s.ws.user) == 0)
        c.current = d.id;
    OPENSSL_cleanse(device, sizeof(device));
    c.arr = cJSON_CreateArray();
    if (c.arr == NULL ||
        store_device_list(api_store(ww), s.ws.user, api_device_row, &c) != STORE_OK) {
        cJSON_Delete(c.arr);
        api_reply_store_error(req);
    } else {
        api_reply(req, 200, c.arr, NULL);
    }
    api_session_done(&s);
}

void
api_devices_delete(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    char detail[64];
    int64_t id;
    int r;

    if (api_path_id(req, "/api/devices/", &id) != 0) {
        http_respond_error(req, 404, "not_found", "No such device.");
        return;
    }
    if (api_session(ww, req, &s) != 0)
        return;
    r = store_device_revoke(api_store(ww), s.ws.user, id);
    if (r == STORE_NOTFOUND) {
        http_respond_error(req, 404, "not_found", "No such device.");
    } else if (r != STORE_OK) {
        api_reply_store_error(req);
    } else {
        snprintf(detail, sizeof(detail), "id=%lld via=web", (long long)id);
        store_audit(api_store(ww), api_now(), s.ws.user, "device_revoke", detail, req->peer);
        log_info("web id=%llx event=device_revoked device=%lld", (unsigned long long)req->id,
                 (long long)id);
        api_reply_ok(req);
    }
    api_session_done(&s);
}

/* --- sign-ins ----------------------------------------------------------- */

#define API_SIGNINS_MAX 50
#define API_SIGNINS_SCAN 500

/* The value of key in a "k=v k=v" detail into out ("" if absent). */
static void
api_detail_get(const char *detail, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = detail;

    out[0] = '\0';
    while (p != NULL && *p) {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
            const char *v = p + klen + 1;
            size_t n = strcspn(v, " ");

            if (n >= outlen)
                n = outlen - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return;
        }
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
}

static int
api_signin_row(void *arg, const struct store_audit_row *r)
{
    char proto[16], how[24], reason[32];
    cJSON *o;
    int ok = strcmp(r->event, "login_ok") == 0;

    if (!ok && strcmp(r->event, "login_fail") != 0)
        return 0;
    api_detail_get(r->detail, "proto", proto, sizeof(proto));
    api_detail_get(r->detail, "how", how, sizeof(how));
    api_detail_get(r->detail, "reason", reason, sizeof(reason));
    o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "time", (double)r->time);
    api_add_opt(o, "addr", r->addr);
    api_add_opt(o, "proto", proto);
    api_add_opt(o, "method", how);
    cJSON_AddStringToObject(o, "result", ok ? "ok" : "fail");
    api_add_opt(o, "reason", reason);
    /* Rows come oldest first: newest first on the page. */
    cJSON_InsertItemInArray(arg, 0, o);
    return 0;
}

void
api_signins(struct web_worker *ww, struct http_request *req)
{
    struct api_session s;
    cJSON *arr;

    if (api_session(ww, req, &s) != 0)
        return;
    /* Queued login rows are written first, so the list is up to date. */
    store_batch_flush(api_store(ww));
    arr = cJSON_CreateArray();
    if (arr == NULL || store_audit_list(api_store(ww), s.ws.user, API_SIGNINS_SCAN,
                                        api_signin_row, arr) != STORE_OK) {
        cJSON_Delete(arr);
        api_reply_store_error(req);
    } else {
        while (cJSON_GetArraySize(arr) > API_SIGNINS_MAX)
            cJSON_DeleteItemFromArray(arr, API_SIGNINS_MAX);
        api_reply(req, 200, arr, NULL);
    }
    api_session_done(&s);
}
