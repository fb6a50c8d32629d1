/*
 * scanhub.h - wakes the long-polls waiting on a QR scene, on whatever
 * worker they are, when a phone's answer is recorded on any worker.
 *
 * One hub per process (in struct web_shared); each web worker joins it with
 * a uv_async_t on its own loop.  scanhub_notify(hash) puts the scene's hash
 * in every member's inbox and wakes them; a member's callback then runs on
 * its own loop with the hashes that arrived, and re-reads those scenes from
 * the store.  Nothing polls the database.  The inbox is bounded: when it
 * overflows, the callback is told to re-check every waiter instead.
 */
#ifndef MFA_SCANHUB_H
#define MFA_SCANHUB_H

#include <stddef.h>

#include <uv.h>

#include "auth/store.h"

#define SCANHUB_INBOX 64

struct scanhub;
struct scanhub_member;

/* On the member's loop: n hashes (all = 1: too many arrived, check all). */
typedef void (*scanhub_cb)(void *arg, const unsigned char (*hashes)[STORE_TOKEN_HASH_LEN],
                           size_t n, int all);

int scanhub_new(struct scanhub **out);
/* After every member has left. */
void scanhub_free(struct scanhub *hub);

/* On the loop's thread: joins hub; cb(arg, ...) runs on loop. */
int scanhub_join(struct scanhub *hub, uv_loop_t *loop, scanhub_cb cb, void *arg,
                 struct scanhub_member **out);
/*
 * On the member's loop thread: leaves the hub (no callback after this) and
 * closes the async handle; the member is freed once the loop has run.
 */
void scanhub_leave(struct scanhub_member *m);

/* From any thread: wakes every member for this scene. */
void scanhub_notify(struct scanhub *hub, const unsigned char hash[STORE_TOKEN_HASH_LEN]);

#endif
