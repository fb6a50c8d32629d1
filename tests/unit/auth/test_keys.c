/*
 * test_keys.c - the server key file (auth/keys.c): created 0600 in a 0700
 * folder made on demand, reloaded to the same keys, refused when others
 * could read it or when it has the wrong size; subkeys distinct.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "auth_test_util.h"

static void
test_create_and_reload(void **state)
{
    char root[PATH_MAX], dir[PATH_MAX + 32], file[PATH_MAX + 64], err[256];
    struct keys a, b;
    struct stat sb;

    assert_int_equal(tu_mkdtemp(root, sizeof(root)), 0);
    snprintf(dir, sizeof(dir), "%s/var/state", root);  /* two missing levels */
    snprintf(file, sizeof(file), "%s/server.key", dir);

    assert_int_equal(keys_load_or_create(dir, &a, err, sizeof(err)), 0);
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(file, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, KEYS_LEN);

    /* Reloading gives the same keys. */
    assert_int_equal(keys_load_or_create(dir, &b, err, sizeof(err)), 0);
    assert_memory_equal(&a, &b, sizeof(a));

    /* Every use has its own subkey. */
    assert_memory_not_equal(a.pepper, a.cache, KEYS_LEN);
    assert_memory_not_equal(a.pepper, a.locator, KEYS_LEN);
    assert_memory_not_equal(a.pepper, a.totp, KEYS_LEN);
    assert_memory_not_equal(a.cache, a.locator, KEYS_LEN);
    assert_memory_not_equal(a.totp, a.token, KEYS_LEN);

    keys_wipe(&b);
    {
        static const unsigned char zero[sizeof(struct keys)];
        assert_memory_equal(&b, zero, sizeof(b));
    }
    keys_wipe(&a);
    tu_rmtree(root);
}

static void
test_other_state_dir_other_keys(void **state)
{
    char r1[PATH_MAX], r2[PATH_MAX], err[256];
    struct keys a, b;

    assert_int_equal(tu_mkdtemp(r1, sizeof(r1)), 0);
    assert_int_equal(tu_mkdtemp(r2, sizeof(r2)), 0);
    assert_int_equal(keys_load_or_create(r1, &a, err, sizeof(err)), 0);
    assert_int_equal(keys_load_or_create(r2, &b, err, sizeof(err)), 0);
    assert_memory_not_equal(a.pepper, b.pepper, KEYS_LEN);
    tu_rmtree(r1);
    tu_rmtree(r2);
}

static void
test_refuses_readable_key(void **state)
{
    char root[PATH_MAX], file[PATH_MAX + 32], err[256] = "";
    struct keys k;

    assert_int_equal(tu_mkdtemp(root, sizeof(root)), 0);
    assert_int_equal(keys_load_or_create(root, &k, err, sizeof(err)), 0);
    snprintf(file, sizeof(file), "%s/server.key", root);

    assert_int_equal(chmod(file, 0640), 0);
    assert_int_equal(keys_load_or_create(root, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "readable"));

    assert_int_equal(chmod(file, 0604), 0);
    assert_int_equal(keys_load_or_create(root, &k, err, sizeof(err)), -1);

    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(keys_load_or_create(root, &k, err, sizeof(err)), 0);
    tu_rmtree(root);
}

static void
test_refuses_wrong_size(void **state)
{
    char root[PATH_MAX], file[PATH_MAX + 32], err[256] = "";
    struct keys k;
    FILE *f;

    assert_int_equal(tu_mkdtemp(root, sizeof(root)), 0);
    snprintf(file, sizeof(file), "%s/server.key", root);
    f = fopen(file, "w");
    assert_non_null(f);
    fputs("short", f);
    fclose(f);
    assert_int_equal(chmod(file, 0600), 0);
    assert_int_equal(keys_load_or_create(root, &k, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "32 bytes"));
    tu_rmtree(root);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_reload),
        cmocka_unit_test(test_other_state_dir_other_keys),
        cmocka_unit_test(test_refuses_readable_key),
        cmocka_unit_test(test_refuses_wrong_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
