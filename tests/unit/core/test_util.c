/*
 * test_util.c - core/util.c and core/strbuf.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/strbuf.h"
#include "core/util.h"

/* A name cannot forge key=value pairs or terminal sequences in a log line. */
static void
test_log_safe(void **state)
{
    char buf[16];

    assert_string_equal(util_log_safe("bob", buf, sizeof(buf)), "bob");
    assert_string_equal(util_log_safe("a b=c\"d\\e", buf, sizeof(buf)), "a?b?c?d?e");
    assert_string_equal(util_log_safe("x\x1b[2Jy\x7f\xc3\xa9", buf, sizeof(buf)), "x?[2Jy???");
    assert_string_equal(util_log_safe("0123456789abcdefghij", buf, sizeof(buf)),
                        "0123456789abcde");
    assert_string_equal(util_log_safe("", buf, sizeof(buf)), "");
}

static void
test_strbuf_grows_and_takes(void **state)
{
    struct strbuf b;
    size_t len = 0;
    char *out;

    assert_int_equal(strbuf_init(&b, 4), 0);
    for (int i = 0; i < 1000; i++)
        strbuf_printf(&b, "%d,", i % 10);
    strbuf_printf(&b, "%s", "end");
    out = strbuf_take(&b, &len);
    assert_non_null(out);
    assert_int_equal(len, 2003);
    assert_int_equal(strlen(out), len);
    assert_memory_equal(out, "0,1,2,", 6);
    assert_string_equal(out + 2000, "end");
    free(out);
    assert_null(b.p);
}

static void
test_strbuf_failed_is_sticky(void **state)
{
    struct strbuf b;

    assert_int_equal(strbuf_init(&b, 8), 0);
    strbuf_printf(&b, "ok");
    b.failed = 1;    /* as after a failed realloc */
    strbuf_printf(&b, "more");
    assert_null(strbuf_take(&b, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_safe),
        cmocka_unit_test(test_strbuf_grows_and_takes),
        cmocka_unit_test(test_strbuf_failed_is_sticky),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
