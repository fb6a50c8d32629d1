/*
 * keys.h - the server key and the keys derived from it.
 *
 * The server key is 32 random bytes in <state_dir>/server.key (mode 0600),
 * outside the database, so that a stolen database alone verifies nothing.
 * Every use gets its own subkey, derived with HMAC-SHA256(server key, label).
 */
#ifndef MFA_KEYS_H
#define MFA_KEYS_H

#include <stddef.h>

#define KEYS_LEN 32

struct keys {
    unsigned char pepper[KEYS_LEN];    /* argon2id secret for app passwords */
    unsigned char cache[KEYS_LEN];     /* verification cache entry keys */
    unsigned char locator[KEYS_LEN];   /* app password locator prefix */
    unsigned char totp[KEYS_LEN];      /* AES-256-GCM for TOTP secrets */
    unsigned char token[KEYS_LEN];     /* hashing session/device tokens */
};

/*
 * Creates state_dir (0700) if missing, creates the key file (0600) if
 * missing, reads it and derives the subkeys.  0, or -1 with a message in err.
 */
int keys_load_or_create(const char *state_dir, struct keys *out, char *err, size_t errlen);

/* Wipes the keys. */
void keys_wipe(struct keys *k);

#endif
