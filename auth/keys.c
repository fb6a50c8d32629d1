/*
 * keys.c - the server key file and the subkeys derived from it (keys.h).
 *
 * Owns <state_dir> creation and <state_dir>/server.key; owns nothing in the
 * database.  The key file is written under a temporary name (O_EXCL, 0600),
 * fsynced, then published with link(2), which fails if the name exists: two
 * processes starting at once both end up with the one key, and no reader
 * ever sees a half-written file.
 */
#include "auth/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/util.h"

#define KEYS_FILE "server.key"

static void
keys_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* mkdir -p, with 0700 for every folder it creates. */
static int
keys_mkdirs(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat sb;
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        keys_err(err, errlen, "state_dir: bad path");
        return -1;
    }
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            keys_err(err, errlen, "%s: cannot create: %s", path, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        keys_err(err, errlen, "%s: not a folder", dir);
        return -1;
    }
    return 0;
}

/* Writes a fresh key under a temporary name and links it into place. */
static int
keys_create(const char *dir, const char *path, char *err, size_t errlen)
{
    unsigned char key[KEYS_LEN];
    char tmp[4096];
    int fd = -1, r = -1, dfd;

    if (snprintf(tmp, sizeof(tmp), "%s/.%s.%ld", dir, KEYS_FILE, (long)getpid()) >=
        (int)sizeof(tmp)) {
        keys_err(err, errlen, "%s: path too long", dir);
        return -1;
    }
    if (util_random_bytes(key, sizeof(key)) != 0) {
        keys_err(err, errlen, "no random bytes");
        goto fail;
    }
    unlink(tmp); /* a leftover of ours from a crash */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        keys_err(err, errlen, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (fchmod(fd, 0600) != 0 || write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) ||
        fsync(fd) != 0) {
        keys_err(err, errlen, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (link(tmp, path) != 0 && errno != EEXIST) {
        keys_err(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    /* EEXIST: another process won the race; its key is the key. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    r = 0;

fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    OPENSSL_cleanse(key, sizeof(key));
    return r;
}

/* Reads the key file, refusing one that others could read. */
static int
keys_read(const char *path, unsigned char key[KEYS_LEN], char *err, size_t errlen)
{
    struct stat sb;
    ssize_t n;
    int fd, r = -1;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        keys_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        keys_err(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        keys_err(err, errlen, "%s: readable by group or others (mode %03o); chmod 600 it",
                 path, (unsigned)(sb.st_mode & 0777));
        goto fail;
    }
    if (sb.st_size != KEYS_LEN) {
        keys_err(err, errlen, "%s: must be %d bytes", path, KEYS_LEN);
        goto fail;
    }
    n = read(fd, key, KEYS_LEN);
    if (n != KEYS_LEN) {
        keys_err(err, errlen, "%s: short read", path);
        goto fail;
    }
    r = 0;

fail:
    close(fd);
    return r;
}

/* out = HMAC-SHA256(master, label). */
static int
keys_derive(const unsigned char master[KEYS_LEN], const char *label, unsigned char out[KEYS_LEN])
{
    unsigned int len = KEYS_LEN;

    if (HMAC(EVP_sha256(), master, KEYS_LEN, (const unsigned char *)label, strlen(label), out,
             &len) == NULL || len != KEYS_LEN)
        return -1;
    return 0;
}

int
keys_load_or_create(const char *state_dir, struct keys *out, char *err, size_t errlen)
{
    unsigned char master[KEYS_LEN];
    char path[4096];
    int r = -1;

    memset(out, 0, sizeof(*out));
    if (keys_mkdirs(state_dir, err, errlen) != 0)
        return -1;
    if (snprintf(path, sizeof(path), "%s/%s", state_dir, KEYS_FILE) >= (int)sizeof(path)) {
        keys_err(err, errlen, "%s: path too long", state_dir);
        return -1;
    }
    if (access(path, F_OK) != 0 && keys_create(state_dir, path, err, errlen) != 0)
        return -1;
    if (keys_read(path, master, err, errlen) != 0)
        goto fail;
    /* Labels are versioned so that a later change of use gets new keys. */
    if (keys_derive(master, "mfagate apppw pepper v1", out->pepper) != 0 ||
        keys_derive(master, "mfagate verification cache v1", out->cache) != 0 ||
        keys_derive(master, "mfagate apppw locator v1", out->locator) != 0 ||
        keys_derive(master, "mfagate totp secret v1", out->totp) != 0 ||
        keys_derive(master, "mfagate token hash v1", out->token) != 0) {
        keys_err(err, errlen, "key derivation failed");
        keys_wipe(out);
        goto fail;
    }
    r = 0;

fail:
    OPENSSL_cleanse(master, sizeof(master));
    return r;
}

void
keys_wipe(struct keys *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}
