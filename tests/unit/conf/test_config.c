/*
 * test_config.c - conf/config.c: defaults, every kind of value, and that
 * every mistake is reported as file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"

static char test_dir[256];

/* Writes text to <test_dir>/name and returns the path (static buffer). */
static const char *
write_file(const char *name, const char *text)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", test_dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A minimal valid file, with extra lines appended. */
static const char *
write_conf(const char *extra)
{
    static char text[4096];

    write_file("c.crt", "x");
    write_file("c.key", "x");
    snprintf(text, sizeof(text),
             "[tls]\ncert = c.crt\nkey = c.key\n"
             "[listen]\nimaps = 127.0.0.1:10993\n"
             "[backend]\nmaster_user = m\nmaster_password = s\n%s",
             extra);
    return write_file("t.conf", text);
}

static int
setup(void **state)
{
    snprintf(test_dir, sizeof(test_dir), "/tmp/mfa-conf-XXXXXX");
    assert_non_null(mkdtemp(test_dir));
    return 0;
}

static int
teardown(void **state)
{
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", test_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
test_defaults(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));

    config_defaults(cfg);
    assert_true(cfg->workers >= 1);
    assert_int_equal(cfg->backend_port[CONFIG_PROTO_IMAP], 143);
    assert_int_equal(cfg->backend_port[CONFIG_PROTO_SMTP], 587);
    assert_int_equal(cfg->preauth_timeout_ms, 60000);
    assert_int_equal(cfg->idle_timeout_ms, 30 * 60000);
    assert_int_equal(cfg->argon2_memory_kib, 19456);
    assert_int_equal(cfg->argon2_passes, 2);
    assert_int_equal(cfg->allow_plaintext_auth, 0);
    assert_int_equal(cfg->smtp_unauth_relay, 1);
    assert_int_equal(cfg->device_days, 30);
    assert_string_equal(cfg->mail_relay, "");
    assert_string_equal(cfg->mail_from, "mfagate@localhost");
    assert_int_equal(cfg->email_factor, CONFIG_EMAIL_SECOND_FACTOR);
    assert_int_equal(cfg->recovery_wait_ms, 24ULL * 3600 * 1000);
    assert_int_equal(cfg->forward_client_addr, CONFIG_FORWARD_COMMAND);
    assert_string_equal(cfg->listeners[CONFIG_L_IMAPS].key, "imaps");
    assert_int_equal(cfg->listeners[CONFIG_L_IMAPS].naddrs, 0);
    free(cfg);
}

/* yes (ID / XCLIENT), no, and proxy (a PROXY v2 header); the booleans' spellings too. */
static void
test_forward_client_addr(void **state)
{
    static const struct {
        const char *v;
        enum config_forward want;
    } cases[] = {
        {"yes", CONFIG_FORWARD_COMMAND}, {"on", CONFIG_FORWARD_COMMAND},
        {"no", CONFIG_FORWARD_NO},       {"false", CONFIG_FORWARD_NO},
        {"proxy", CONFIG_FORWARD_PROXY}, {"PROXY", CONFIG_FORWARD_PROXY},
    };
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512], line[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(line, sizeof(line), "forward_client_addr = %s\n", cases[i].v);
        assert_int_equal(config_load(write_conf(line), cfg, err, sizeof(err)), 0);
        assert_int_equal(cfg->forward_client_addr, cases[i].want);
    }
    free(cfg);
}

static void
test_minimal_and_relative_paths(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512], want[600];
    const char *path = write_conf("");

    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    snprintf(want, sizeof(want), "%s/c.crt", test_dir);
    assert_string_equal(cfg->tls_cert, want);
    /* state_dir defaults to ../var beside the file, like the example. */
    snprintf(want, sizeof(want), "%s/../var", test_dir);
    assert_string_equal(cfg->state_dir, want);
    assert_int_equal(cfg->listeners[CONFIG_L_IMAPS].naddrs, 1);
    assert_int_equal(ntohs(((struct sockaddr_in *)&cfg->listeners[CONFIG_L_IMAPS].addrs[0].ss)
                               ->sin_port), 10993);
    free(cfg);
}

static void
test_values(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512];
    const char *path = write_conf(
        "[server]\nworkers = 3\nallow_plaintext_auth = yes\nstate_dir = /tmp/x ; comment\n"
        "user =\n"
        "[listen]\nsmtps = 127.0.0.1:10994, [::1]:10465\n"
        "[backend]\nimap_tls = starttls\nsmtp_tls = yes\nimap = 1143\n"
        "[smtp]\nunauthenticated = reject\n"
        "[limits]\npreauth_timeout = 5s\nidle_timeout = 2h\nbackend_timeout = 1500ms\n"
        "max_literal = 64k\nrelay_buffer = 1m\n"
        "[auth]\ncache_ttl = 1m\nrefusal_delay = 0\nkdf_threads = 2\n"
        "[web]\ndevice_days = 7\nemail_factor = recovery\nrecovery_wait = 2h\n"
        "[mail]\nrelay = smtps://mx.example.com:465\nfrom = codes@example.com\n");

    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->workers, 3);
    assert_int_equal(cfg->allow_plaintext_auth, 1);
    assert_string_equal(cfg->state_dir, "/tmp/x");
    assert_string_equal(cfg->user, "");
    assert_int_equal(cfg->listeners[CONFIG_L_SMTPS].naddrs, 2);
    assert_int_equal(cfg->listeners[CONFIG_L_SMTPS].addrs[1].ss.ss_family, AF_INET6);
    assert_int_equal(cfg->backend_tls[CONFIG_PROTO_IMAP], CONFIG_TLS_STARTTLS);
    assert_int_equal(cfg->backend_tls[CONFIG_PROTO_SMTP], CONFIG_TLS_YES);
    assert_int_equal(cfg->backend_tls[CONFIG_PROTO_POP3], CONFIG_TLS_NO);
    assert_int_equal(cfg->backend_port[CONFIG_PROTO_IMAP], 1143);
    assert_int_equal(cfg->smtp_unauth_relay, 0);
    assert_int_equal(cfg->preauth_timeout_ms, 5000);
    assert_int_equal(cfg->idle_timeout_ms, 2 * 3600 * 1000);
    assert_int_equal(cfg->backend_timeout_ms, 1500);
    assert_int_equal(cfg->max_literal, 64 * 1024);
    assert_int_equal(cfg->relay_high_water, 1024 * 1024);
    assert_int_equal(cfg->cache_ttl_ms, 60000);
    assert_int_equal(cfg->refusal_delay_ms, 0);
    assert_int_equal(cfg->kdf_threads, 2);
    assert_int_equal(cfg->device_days, 7);
    assert_int_equal(cfg->email_factor, CONFIG_EMAIL_RECOVERY);
    assert_int_equal(cfg->recovery_wait_ms, 2 * 3600 * 1000);
    assert_string_equal(cfg->mail_relay, "smtps://mx.example.com:465");
    assert_string_equal(cfg->mail_from, "codes@example.com");
    free(cfg);
}

/* Each bad line must be reported with the file name and its line number. */
static void
expect_error_at(const char *extra, int extra_line, const char *needle)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512], want[600];
    const char *path = write_conf(extra);

    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    /* write_conf puts 8 lines before the extra text. */
    snprintf(want, sizeof(want), "%s:%d: ", path, 8 + extra_line);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want prefix \"%s\"", err, want);
    if (strstr(err, needle) == NULL)
        fail_msg("got \"%s\", want it to mention \"%s\"", err, needle);
    free(cfg);
}

static void
test_errors_have_file_and_line(void **state)
{
    expect_error_at("[server]\nworkerz = 2\n", 2, "unknown key");
    expect_error_at("[nosuch]\nx = 1\n", 2, "unknown section");
    expect_error_at("[backend]\nimap = 70000\n", 2, "port");
    expect_error_at("[auth]\nkdf_threads = 65\n", 2, "kdf_threads");
    expect_error_at("[auth]\nkdf_threads = -1\n", 2, "kdf_threads");
    expect_error_at("[backend]\n\nimap = abc\n", 3, "port");
    expect_error_at("[server]\nallow_plaintext_auth = maybe\n", 2, "yes or no");
    expect_error_at("[limits]\npreauth_timeout = 5 minutes\n", 2, "duration");
    expect_error_at("[listen]\nimap = localhost:143\n", 2, "numeric address");
    expect_error_at("[listen]\nimap = 127.0.0.1\n", 2, "numeric address");
    expect_error_at("[backend]\nimap_tls = sometimes\n", 2, "starttls");
    expect_error_at("[backend]\nforward_client_addr = haproxy\n", 2, "yes, proxy or no");
    expect_error_at("[server]\nthis line is not a key\n", 2, "syntax");
    expect_error_at("[limits]\nmax_line = 0\n", 2, "size");
    expect_error_at("[smtp]\nunauthenticated = maybe\n", 2, "relay or reject");
    expect_error_at("[mail]\nrelay = http://127.0.0.1:25\n", 2, "smtp://");
    expect_error_at("[mail]\nrelay = smtp://\n", 2, "no host");
    expect_error_at("[mail]\nfrom = nobody\n", 2, "one @");
    expect_error_at("[mail]\nfrom = a@b@c\n", 2, "one @");
    expect_error_at("[mail]\nfrom = <a@b>\n", 2, "cannot hold");
    expect_error_at("[web]\nemail_factor = sometimes\n", 2, "second_factor or recovery");
    expect_error_at("[web]\nrecovery_wait = soon\n", 2, "duration");
    expect_error_at("[wechat]\nappid = wx 12\n", 2, "AppID");
    expect_error_at("[wechat]\nsecret = a b\n", 2, "space");
    expect_error_at("[wechat]\napi_base = ftp://x\n", 2, "https://");
    expect_error_at("[wechat]\napi_base = https://\n", 2, "no host");
    expect_error_at("[wechat]\napi_base = https://h/?a=b\n", 2, "'?'");
    expect_error_at("[wechat]\nqr = svg\n", 2, "wxacode or link");
    expect_error_at("[wechat]\npage = /pages/x\n", 2, "no leading /");
    expect_error_at("[wechat]\npage = pages/x?a=1\n", 2, "scene");
    expect_error_at("[wechat]\nenv_version = beta\n", 2, "release, trial or develop");
    expect_error_at("[wechat]\ntemplate_keys = thing1,time3\n", 2, "three template fields");
    expect_error_at("[wechat]\ntemplate_keys = thing1,2,time3\n", 2, "three template fields");
    /* A fourth field (the number to match) would give the answer away. */
    expect_error_at("[wechat]\ntemplate_keys = thing1,thing2,time3,number4\n", 2,
                    "three template fields");
    expect_error_at("[wechat]\ntimeout = 0\n", 2, "100ms to 2m");
    expect_error_at("[wechat]\ntimeout = 1h\n", 2, "100ms to 2m");
    expect_error_at("[wechat]\nsecret_fil = x\n", 2, "unknown key");
}

static void
test_wechat(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512];
    const char *path;

    /* Off by default, with WeChat's documented defaults. */
    path = write_conf("");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->wechat_appid, "");
    assert_string_equal(cfg->wechat_api_base, "https://api.weixin.qq.com");
    assert_int_equal(cfg->wechat_qr, CONFIG_WECHAT_QR_WXACODE);
    assert_string_equal(cfg->wechat_page, "pages/confirm/confirm");
    assert_string_equal(cfg->wechat_env_version, "release");
    assert_string_equal(cfg->wechat_template_id, "");
    assert_int_equal(cfg->wechat_timeout_ms, 5000);
    assert_string_equal(cfg->wechat_ca, "");

    path = write_conf("[wechat]\nappid = wx0123456789abcdef\nsecret = s3cr3t\n"
                      "api_base = http://127.0.0.1:8080/\nqr = link\npage = pages/a/b\n"
                      "env_version = develop\ntemplate_id = T-1_x\n"
                      "template_keys = thing1, -, time3\ntimeout = 1500ms\n"
                      "ca = wx-ca.pem\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->wechat_appid, "wx0123456789abcdef");
    assert_string_equal(cfg->wechat_secret, "s3cr3t");
    assert_string_equal(cfg->wechat_api_base, "http://127.0.0.1:8080");
    assert_int_equal(cfg->wechat_qr, CONFIG_WECHAT_QR_LINK);
    assert_string_equal(cfg->wechat_page, "pages/a/b");
    assert_string_equal(cfg->wechat_env_version, "develop");
    assert_string_equal(cfg->wechat_template_id, "T-1_x");
    assert_string_equal(cfg->wechat_template_keys, "thing1,-,time3");
    assert_int_equal(cfg->wechat_timeout_ms, 1500);
    assert_non_null(strstr(cfg->wechat_ca, "/wx-ca.pem"));

    /* secret_file, like [backend] master_password_file. */
    write_file("wx.secret", "fromfile\n");
    path = write_conf("[wechat]\nappid = wx1\nsecret_file = wx.secret\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->wechat_secret, "fromfile");
    path = write_conf("[wechat]\nappid = wx1\nsecret_file = nosuch.secret\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "secret_file"));

    /* An appid without a secret is an error; a secret without appid is off. */
    path = write_conf("[wechat]\nappid = wx1\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "needs secret"));
    path = write_conf("[wechat]\nappid =\nsecret = x\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->wechat_appid, "");
    free(cfg);
}

static void
test_cross_key_checks(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512];
    const char *path;

    path = write_file("nolisten.conf", "[backend]\nmaster_user = m\nmaster_password = s\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no listener"));

    path = write_file("nomaster.conf", "[tls]\ncert = c.crt\nkey = c.key\n"
                                       "[listen]\nimaps = 127.0.0.1:1\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "master_user"));

    path = write_file("nocert.conf", "[listen]\nimap = 127.0.0.1:1\n"
                                     "[backend]\nmaster_user = m\nmaster_password = s\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cert"));

    assert_int_equal(config_load("/nonexistent/x.conf", cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open"));
    free(cfg);
}

static void
test_master_password_file(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[512];
    const char *path;

    write_file("c.crt", "x");
    write_file("c.key", "x");
    write_file("master.pass", "s3cret\n");
    path = write_file("mp.conf", "[tls]\ncert = c.crt\nkey = c.key\n"
                                 "[listen]\nimaps = 127.0.0.1:1\n"
                                 "[backend]\nmaster_user = m\nmaster_password_file = master.pass\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg->master_password, "s3cret");

    write_file("empty.pass", "\n");
    path = write_file("mp2.conf", "[tls]\ncert = c.crt\nkey = c.key\n"
                                  "[listen]\nimaps = 127.0.0.1:1\n"
                                  "[backend]\nmaster_user = m\nmaster_password_file = empty.pass\n");
    assert_int_equal(config_load(path, cfg, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "master_password_file"));
    free(cfg);
}

static void
test_example_config_parses(void **state)
{
    struct config *cfg = malloc(sizeof(*cfg));
    char err[1024], path[1024];
    const char *src = getenv("MFA_SOURCE_DIR");

    assert_non_null(src);
    snprintf(path, sizeof(path), "%s/conf/mfagate.conf", src);
    if (config_load(path, cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(cfg->listeners[CONFIG_L_SMTPS].naddrs, 2);
    assert_int_equal(cfg->listeners[CONFIG_L_IMAPS].naddrs, 1);
    assert_int_equal(cfg->refusal_delay_ms, 2000);
    assert_int_equal(cfg->kdf_threads, 0);    /* automatic */
    free(cfg);
}

static void
test_parse_addr(void **state)
{
    struct config_addr a;

    assert_int_equal(config_parse_addr("127.0.0.1:993", &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(config_parse_addr("[::1]:993", &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(config_parse_addr("::1:993", &a), -1);
    assert_int_equal(config_parse_addr("127.0.0.1:0", &a), -1);
    assert_int_equal(config_parse_addr("127.0.0.1:65536", &a), -1);
    assert_int_equal(config_parse_addr(":993", &a), -1);
    assert_int_equal(config_parse_addr("[::1]993", &a), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_minimal_and_relative_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_client_addr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_have_file_and_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_key_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_master_password_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wechat, setup, teardown),
        cmocka_unit_test(test_example_config_parses),
        cmocka_unit_test(test_parse_addr),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
