/*
 * ratelimit.c - the process-wide failure table (ratelimit.h).  Owns the
 * table and its mutex; nothing else.
 */
#include "auth/ratelimit.h"

#include <pthread.h>
#include <string.h>

#include <openssl/sha.h>

#include "core/util.h"

/* Slots probed from a user's home slot before one is evicted. */
#define RATELIMIT_PROBES 8

struct ratelimit_slot {
    unsigned char key[16];     /* SHA-256 prefix of the user name; 0 = free */
    int failures;
    uint64_t last_ms;          /* time of the last failure */
    uint64_t until_ms;         /* locked out until; 0 = not locked */
};

/* The shared table: every access holds ratelimit_lock. */
static pthread_mutex_t ratelimit_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ratelimit_slot ratelimit_table[RATELIMIT_SLOTS];

static void
ratelimit_key(const char *user, unsigned char key[16])
{
    unsigned char md[SHA256_DIGEST_LENGTH];

    /* Twice per login: util_sha256 skips OpenSSL 3's per-call algorithm fetch. */
    if (util_sha256(user, strlen(user), md) != 0)
        SHA256((const unsigned char *)user, strlen(user), md);
    memcpy(key, md, 16);
    /* An all-zero key marks a free slot; keep real keys distinct from it. */
    key[0] |= 1;
}

static size_t
ratelimit_home(const unsigned char key[16])
{
    return ((size_t)key[1] << 8 | key[2]) % RATELIMIT_SLOTS;
}

/* Whether slot a is a better eviction victim than b at now_ms. */
static int
ratelimit_better_victim(const struct ratelimit_slot *a, const struct ratelimit_slot *b,
                        uint64_t now_ms)
{
    int alocked = a->until_ms > now_ms, blocked = b->until_ms > now_ms;

    if (alocked != blocked)
        return !alocked;            /* forget an unlocked user first */
    return a->last_ms < b->last_ms; /* then the one that failed longest ago */
}

/* The user's slot, or NULL; with create, a slot for it (evicting). */
static struct ratelimit_slot *
ratelimit_find(const unsigned char key[16], int create, uint64_t now_ms)
{
    static const unsigned char zero[16];
    size_t home = ratelimit_home(key);
    struct ratelimit_slot *free_slot = NULL, *victim = NULL;

    for (size_t i = 0; i < RATELIMIT_PROBES; i++) {
        struct ratelimit_slot *s = &ratelimit_table[(home + i) % RATELIMIT_SLOTS];

        if (memcmp(s->key, key, 16) == 0)
            return s;
        if (memcmp(s->key, zero, 16) == 0) {
            if (free_slot == NULL)
                free_slot = s;
        } else if (victim == NULL || ratelimit_better_victim(s, victim, now_ms)) {
            victim = s;
        }
    }
    if (!create)
        return NULL;
    if (free_slot != NULL)
        victim = free_slot;
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->key, key, 16);
    return victim;
}

int
ratelimit_check(const char *user, uint64_t now_ms, int *failures, uint64_t *until_ms)
{
    unsigned char key[16];
    struct ratelimit_slot *s;
    int locked = 0;

    ratelimit_key(user, key);
    *failures = 0;
    *until_ms = 0;
    pthread_mutex_lock(&ratelimit_lock);
    s = ratelimit_find(key, 0, now_ms);
    if (s != NULL) {
        if (s->until_ms != 0 && s->until_ms <= now_ms) {
            /* The lockout ran out: a fresh start. */
            memset(s, 0, sizeof(*s));
        } else {
            *failures = s->failures;
            if (s->until_ms != 0) {
                locked = 1;
                *until_ms = s->until_ms;
            }
        }
    }
    pthread_mutex_unlock(&ratelimit_lock);
    return locked;
}

int
ratelimit_fail(const char *user, uint64_t now_ms, int lockout, uint64_t lockout_ms)
{
    unsigned char key[16];
    struct ratelimit_slot *s;
    int n = 0;

    ratelimit_key(user, key);
    pthread_mutex_lock(&ratelimit_lock);
    s = ratelimit_find(key, 1, now_ms);
    if (s != NULL) {
        if (s->failures < 1000000)
            s->failures++;
        s->last_ms = now_ms;
        if (lockout > 0 && s->failures >= lockout && s->until_ms == 0)
            s->until_ms = now_ms + lockout_ms;
        n = s->failures;
    }
    pthread_mutex_unlock(&ratelimit_lock);
    return n;
}

void
ratelimit_success(const char *user)
{
    unsigned char key[16];
    struct ratelimit_slot *s;

    ratelimit_key(user, key);
    pthread_mutex_lock(&ratelimit_lock);
    s = ratelimit_find(key, 0, 0);
    if (s != NULL)
        memset(s, 0, sizeof(*s));
    pthread_mutex_unlock(&ratelimit_lock);
}

void
ratelimit_reset(void)
{
    pthread_mutex_lock(&ratelimit_lock);
    memset(ratelimit_table, 0, sizeof(ratelimit_table));
    pthread_mutex_unlock(&ratelimit_lock);
}
