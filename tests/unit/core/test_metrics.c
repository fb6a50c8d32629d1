/*
 * test_metrics.c - core/metrics.c's login labels: the web's sign-ins are
 * counted by how the person got in (password, device, totp, email,
 * recovery, wechat), the mail protocols' by the proxy's decision; a label
 * outside a protocol's set is "other", and each protocol renders only its
 * own labels.  (The rest of the text format is covered in test_http.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

/* The value of one logins_total row, or -1 if the row is not rendered. */
static long
logins(const char *text, const char *proto, const char *result, const char *how)
{
    char key[160];
    const char *p;

    snprintf(key, sizeof(key), "mfagate_logins_total{protocol=\"%s\",result=\"%s\",how=\"%s\"} ",
             proto, result, how);
    p = strstr(text, key);
    return p != NULL ? strtol(p + strlen(key), NULL, 10) : -1;
}

static char *
render(void)
{
    char *text;
    size_t len;

    assert_int_equal(metrics_render(&text, &len), 0);
    assert_int_equal(strlen(text), len);
    return text;
}

static void
test_web_labels(void **state)
{
    static const char *const hows[] = {"password", "device", "totp", "email", "recovery",
                                       "wechat"};
    char *text;

    metrics_reset();
    for (size_t i = 0; i < sizeof(hows) / sizeof(hows[0]); i++)
        for (size_t n = 0; n <= i; n++)
            metrics_login(METRICS_WEB, METRICS_OK, hows[i], 0);
    metrics_login(METRICS_WEB, METRICS_REFUSED, "refused", 0);
    text = render();
    for (size_t i = 0; i < sizeof(hows) / sizeof(hows[0]); i++) {
        assert_int_equal(logins(text, "web", "ok", hows[i]), (long)i + 1);
        assert_int_equal(logins(text, "web", "refused", hows[i]), 0);
        /* Not a mail protocol's label. */
        assert_int_equal(logins(text, "imap", "ok", hows[i]), -1);
    }
    assert_int_equal(logins(text, "web", "refused", "refused"), 1);
    assert_int_equal(logins(text, "web", "ok", "other"), 0);
    /* The proxy's labels are not rendered for the web. */
    assert_int_equal(logins(text, "web", "ok", "apppw"), -1);
    assert_int_equal(logins(text, "web", "ok", "passthrough"), -1);
    free(text);
}

static void
test_unknown_and_foreign_labels_are_other(void **state)
{
    char *text;

    metrics_reset();
    metrics_login(METRICS_WEB, METRICS_OK, "apppw", 0);        /* the proxy's */
    metrics_login(METRICS_WEB, METRICS_OK, "carrier-pigeon", 0);
    metrics_login(METRICS_WEB, METRICS_OK, NULL, 0);
    metrics_login(METRICS_IMAP, METRICS_OK, "totp", 0);        /* the web's */
    metrics_login(METRICS_IMAP, METRICS_OK, "apppw", 0);
    metrics_login(METRICS_POP3, METRICS_UNAVAILABLE, "tempfail", 0);
    metrics_login(METRICS_HTTPS, METRICS_OK, "password", 0);   /* no logins: rendered nowhere */
    text = render();
    assert_int_equal(logins(text, "web", "ok", "other"), 3);
    assert_int_equal(logins(text, "imap", "ok", "other"), 1);
    assert_int_equal(logins(text, "imap", "ok", "apppw"), 1);
    assert_int_equal(logins(text, "pop3", "unavailable", "tempfail"), 1);
    assert_int_equal(logins(text, "https", "ok", "password"), -1);
    assert_int_equal(logins(text, "https", "ok", "other"), -1);
    /* The histogram counts every login of a protocol whatever its label. */
    assert_non_null(strstr(text, "mfagate_auth_seconds_count{protocol=\"web\"} 3\n"));
    assert_non_null(strstr(text, "mfagate_auth_seconds_count{protocol=\"imap\"} 2\n"));
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_web_labels),
        cmocka_unit_test(test_unknown_and_foreign_labels_are_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
