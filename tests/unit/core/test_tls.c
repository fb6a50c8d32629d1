/*
 * test_tls.c - core/tls.c and the TLS side of core/conn.c on loopback:
 * handshake and echo (TLS 1.3 and 1.2), the greeting queued before the
 * handshake leaving with the session tickets, a TLS 1.1 client refused,
 * session resumption, certificate verification, the STARTTLS switch, and
 * closes and aborts in awkward places.  The certificate is made at test time
 * (EC P-256, self-signed) in a temporary folder.
 */
#include "tests/unit/core/conn_test_peer.h"

#include <stdio.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/tls.h"

static const char greeting[] = "* OK [CAPABILITY IMAP4rev1] mfagate ready\r\n";
#define GREETING_LEN (sizeof(greeting) - 1)

struct tls_fixture {
    char dir[64];
    char cert[128], key[128], key2[128];
    SSL_CTX *sctx;     /* the server context under test */
    SSL_CTX *cctx;     /* client, verify off */
};
static struct tls_fixture fx;

/* Writes a self-signed EC P-256 certificate for "localhost" and its key. */
static void
make_cert(const char *cert_path, const char *key_path, const char *key2_path)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    EVP_PKEY *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    FILE *f;

    assert_non_null(pkey);
    assert_non_null(other);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, pkey), 1);
    name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"localhost", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, name), 1);
    {
        /* Modern verifiers check subjectAltName, not the CN. */
        X509V3_CTX v3;
        X509_EXTENSION *ext;

        X509V3_set_ctx_nodb(&v3);
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, pkey, EVP_sha256()) > 0);

    f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    f = fopen(key2_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, other, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
    EVP_PKEY_free(other);
}

static int
group_setup(void **state)
{
    char err[256];

    snprintf(fx.dir, sizeof(fx.dir), "/tmp/mfa-tls-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.cert, sizeof(fx.cert), "%s/cert.pem", fx.dir);
    snprintf(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
    snprintf(fx.key2, sizeof(fx.key2), "%s/other.pem", fx.dir);
    make_cert(fx.cert, fx.key, fx.key2);
    fx.sctx = tls_server_ctx_new(fx.cert, fx.key, err, sizeof(err));
    if (fx.sctx == NULL)
        fail_msg("server ctx: %s", err);
    fx.cctx = tls_client_ctx_new(0, NULL, err, sizeof(err));
    if (fx.cctx == NULL)
        fail_msg("client ctx: %s", err);
    return 0;
}

static int
group_teardown(void **state)
{
    SSL_CTX_free(fx.sctx);
    SSL_CTX_free(fx.cctx);
    unlink(fx.cert);
    unlink(fx.key);
    unlink(fx.key2);
    rmdir(fx.dir);
    return 0;
}

/* ---- one TLS connection: greeting, then an echo of echo_len bytes ---- */

struct tls_run {
    /* in */
    SSL_CTX *cctx;
    const char *sni;
    SSL_SESSION *session;     /* offered by the client, may be NULL */
    size_t echo_len;
    /* out */
    struct tpeer srv, cli;
    struct tserver ts;
    int cli_rx_at_hs;         /* bytes the client had when its handshake completed */
    uint64_t srv_writes_at_greeting;
    int cli_reused, srv_reused;
    int version;
    SSL_SESSION *session_out; /* the client's session after the exchange */
    char *payload;
};

static void
run_srv_accept(struct tpeer *p)
{
    struct tls_run *r = p->ctx;

    assert_int_equal(conn_tls_server(&p->c, fx.sctx, tp_on_hs), 0);
    assert_int_equal(conn_is_tls(&p->c), 1);
    assert_int_equal(conn_tls_server(&p->c, fx.sctx, tp_on_hs), UV_EALREADY);
    /* Written before the handshake: must arrive after it, with the tickets. */
    assert_int_equal(conn_write(&p->c, greeting, GREETING_LEN), 0);
    assert_true(conn_write_queued(&p->c) >= GREETING_LEN);
    (void)r;
}

static void
run_srv_hs(struct tpeer *p, int status)
{
    struct tls_run *r = p->ctx;

    if (status < 0) {
        conn_close(&p->c);
        return;
    }
    r->srv_reused = SSL_session_reused(conn_ssl(&p->c));
    p->echo = 1;
}

static void
run_cli_connected(struct tpeer *p)
{
    struct tls_run *r = p->ctx;

    if (r->session != NULL)
        assert_int_equal(conn_tls_client_session(&p->c, r->cctx, r->sni, r->session, tp_on_hs), 0);
    else
        assert_int_equal(conn_tls_client(&p->c, r->cctx, r->sni, tp_on_hs), 0);
}

static void
run_cli_hs(struct tpeer *p, int status)
{
    struct tls_run *r = p->ctx;

    r->cli_rx_at_hs = (int)p->rx_len;
    if (status < 0) {
        conn_close(&p->c);
        return;
    }
    r->cli_reused = SSL_session_reused(conn_ssl(&p->c));
    r->version = SSL_version(conn_ssl(&p->c));
}

static void
run_cli_read(struct tpeer *p, const char *data, size_t len)
{
    struct tls_run *r = p->ctx;

    if (p->rx_len - len < GREETING_LEN && p->rx_len >= GREETING_LEN) {
        r->srv_writes_at_greeting = r->srv.c.uv_writes;
        assert_memory_equal(p->rx, greeting, GREETING_LEN);
        /* In uneven pieces, so that records and writes do not line up. */
        for (size_t off = 0; off < r->echo_len;) {
            size_t n = r->echo_len - off < 70001 ? r->echo_len - off : 70001;

            assert_int_equal(conn_write(&p->c, r->payload + off, n), 0);
            off += n;
        }
    }
    if (p->rx_len == GREETING_LEN + r->echo_len) {
        r->session_out = SSL_get1_session(conn_ssl(&p->c));
        conn_close(&p->c);
    }
}

static void
tls_run(struct tls_run *r)
{
    uv_loop_t loop;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 30000);
    tp_init(&r->srv, "server");
    tp_init(&r->cli, "client");
    r->srv.ctx = r->cli.ctx = r;
    r->payload = malloc(r->echo_len + 1);
    assert_non_null(r->payload);
    tp_fill(r->payload, r->echo_len, 3);
    r->srv.hook_hs = run_srv_hs;
    r->cli.hook_hs = run_cli_hs;
    r->cli.hook_connect = run_cli_connected;
    r->cli.hook_read = run_cli_read;
    memset(&r->ts, 0, sizeof(r->ts));
    r->ts.peers[0] = &r->srv;
    r->ts.close_after = 1;
    r->ts.on_accept = run_srv_accept;
    ts_listen(&loop, &r->ts, 1);
    tp_connect(&loop, &r->cli, r->ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r->srv.closed, 1);
    assert_int_equal(r->cli.closed, 1);
    tp_loop_finish(&loop);
}

static void
tls_run_free(struct tls_run *r)
{
    tp_free(&r->srv);
    tp_free(&r->cli);
    free(r->payload);
    SSL_SESSION_free(r->session_out);
}

/* Both directions byte-exact, the greeting first and with the tickets. */
static void
check_echo(struct tls_run *r)
{
    assert_int_equal(r->cli.hs_status, 0);
    assert_int_equal(r->srv.hs_status, 0);
    assert_int_equal(r->cli.hs_calls, 1);
    assert_int_equal(r->srv.hs_calls, 1);
    assert_int_equal(r->cli_rx_at_hs, 0);
    assert_int_equal(r->srv.rx_len, r->echo_len);
    assert_memory_equal(r->srv.rx, r->payload, r->echo_len);
    assert_int_equal(r->cli.rx_len, GREETING_LEN + r->echo_len);
    assert_memory_equal(r->cli.rx + GREETING_LEN, r->payload, r->echo_len);
    /*
     * The server wrote its handshake flight, then one uv_write holding
     * the tickets (1.3) or its Finished (1.2) and the greeting.
     */
    assert_int_equal(r->srv_writes_at_greeting, 2);
    /* Closed by close_notify: the server saw UV_EOF once. */
    assert_int_equal(r->srv.eof, 1);
    assert_int_equal(r->cli.errs, 0);
    assert_int_equal(r->srv.c.bytes_in, r->echo_len);
    assert_int_equal(r->srv.c.bytes_out, GREETING_LEN + r->echo_len);
}

static void
test_tls13_echo_1mib(void **state)
{
    struct tls_run r = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 1024 * 1024};

    tls_run(&r);
    check_echo(&r);
    assert_int_equal(r.version, TLS1_3_VERSION);
    assert_int_equal(r.cli_reused, 0);
    tls_run_free(&r);
}

static void
test_tls12_echo(void **state)
{
    char err[256];
    SSL_CTX *c12 = tls_client_ctx_new(0, NULL, err, sizeof(err));
    struct tls_run r = {.sni = NULL, .echo_len = 100000};

    assert_non_null(c12);
    assert_int_equal(SSL_CTX_set_max_proto_version(c12, TLS1_2_VERSION), 1);
    r.cctx = c12;
    tls_run(&r);
    check_echo(&r);
    assert_int_equal(r.version, TLS1_2_VERSION);
    tls_run_free(&r);
    SSL_CTX_free(c12);
}

/* A second client offers the first one's session and resumes. */
static void
test_resumption(void **state)
{
    struct tls_run a = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 1000};
    struct tls_run b = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 1000};

    tls_run(&a);
    check_echo(&a);
    assert_non_null(a.session_out);
    assert_int_equal(SSL_SESSION_is_resumable(a.session_out), 1);
    b.session = a.session_out;
    tls_run(&b);
    check_echo(&b);
    assert_int_equal(b.cli_reused, 1);
    assert_int_equal(b.srv_reused, 1);
    tls_run_free(&a);
    tls_run_free(&b);
}

/* verify on: the right name passes, a wrong name fails the handshake. */
static void
test_verify(void **state)
{
    char err[256];
    SSL_CTX *v = tls_client_ctx_new(1, fx.cert, err, sizeof(err));
    struct tls_run ok = {.sni = "localhost", .echo_len = 10};
    struct tls_run ip = {.sni = "127.0.0.1", .echo_len = 10};
    struct tls_run bad = {.sni = "mail.example.org", .echo_len = 10};

    assert_non_null(v);
    ok.cctx = ip.cctx = bad.cctx = v;
    tls_run(&ok);
    check_echo(&ok);
    tls_run(&ip);
    check_echo(&ip);
    tls_run(&bad);
    assert_true(bad.cli.hs_status < 0);
    assert_true(bad.srv.hs_status < 0);
    assert_int_equal(bad.srv.rx_len, 0);
    assert_int_equal(bad.cli.rx_len, 0);
    tls_run_free(&ok);
    tls_run_free(&ip);
    tls_run_free(&bad);
    SSL_CTX_free(v);
}

/* A client that speaks at most TLS 1.1 is refused by the server. */
static void
test_tls11_refused(void **state)
{
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    struct tls_run r = {.sni = "localhost", .echo_len = 10};

    assert_non_null(old);
    /* OpenSSL 3 allows TLS 1.1 only at security level 0. */
    SSL_CTX_set_security_level(old, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(old, "DEFAULT:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(old, TLS1_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION), 1);
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    r.cctx = old;
    tls_run(&r);
    assert_int_equal(r.srv.hs_calls, 1);
    assert_true(r.srv.hs_status < 0);
    assert_int_equal(r.cli.hs_calls, 1);
    assert_true(r.cli.hs_status < 0);
    assert_int_equal(r.cli.rx_len, 0); /* the queued greeting never leaves */
    tls_run_free(&r);
    SSL_CTX_free(old);
}

static void
test_ctx_errors(void **state)
{
    char err[256] = "";

    assert_null(tls_server_ctx_new("/nonexistent/cert.pem", fx.key, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_null(tls_server_ctx_new(fx.cert, fx.key2, err, sizeof(err)));
    assert_non_null(strstr(err, "key"));
    assert_null(tls_client_ctx_new(1, "/nonexistent/ca.pem", err, sizeof(err)));
    assert_int_equal(ERR_peek_error(), 0);
}

/* ---- STARTTLS: plaintext, the command with junk behind it, then TLS ---- */

static void
st_srv_accept(struct tpeer *p)
{
    assert_int_equal(conn_read_start(&p->c), 0);
    assert_int_equal(conn_write(&p->c, "* OK plain\r\n", 12), 0);
}

static void
st_srv_read(struct tpeer *p, const char *data, size_t len)
{
    if (conn_is_tls(&p->c))
        return; /* echoed by tp_on_read */
    assert_true(p->rx_len >= 10);
    assert_memory_equal(p->rx, "STARTTLS\r\n", 10);
    assert_int_equal(conn_write(&p->c, "OK begin\r\n", 10), 0);
    assert_int_equal(conn_tls_server(&p->c, fx.sctx, tp_on_hs), 0);
    /* The session's duty: what was pipelined behind STARTTLS is dropped. */
    p->rx_len = 0;
    p->echo = 1;
}

static void
st_cli_read(struct tpeer *p, const char *data, size_t len)
{
    if (!conn_is_tls(&p->c)) {
        if (p->rx_len == 12) {
            assert_memory_equal(p->rx, "* OK plain\r\n", 12);
            /* An injection attempt rides in the same segment. */
            assert_int_equal(conn_write(&p->c, "STARTTLS\r\nA1 LOGIN x y\r\n", 24), 0);
        } else if (p->rx_len == 22) {
            assert_memory_equal(p->rx + 12, "OK begin\r\n", 10);
            assert_int_equal(conn_tls_client(&p->c, fx.cctx, "localhost", tp_on_hs), 0);
            p->rx_len = 0;
        }
        return;
    }
    if (p->rx_len == 14) {
        assert_memory_equal(p->rx, "A2 NOOP via tls", 14);
        conn_close(&p->c);
    }
}

static void
st_cli_hs(struct tpeer *p, int status)
{
    assert_int_equal(status, 0);
    assert_int_equal(conn_write(&p->c, "A2 NOOP via tls", 14), 0);
}

static void
test_starttls(void **state)
{
    uv_loop_t loop;
    struct tserver ts = {0};
    struct tpeer srv, cli;

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    tp_init(&srv, "server");
    tp_init(&cli, "client");
    srv.hook_read = st_srv_read;
    cli.hook_read = st_cli_read;
    cli.hook_hs = st_cli_hs;
    ts.peers[0] = &srv;
    ts.close_after = 1;
    ts.on_accept = st_srv_accept;
    ts_listen(&loop, &ts, 1);
    tp_connect(&loop, &cli, ts.port);

    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(srv.hs_status, 0);
    assert_int_equal(srv.hs_calls, 1);
    assert_int_equal(cli.hs_calls, 1);
    assert_int_equal(srv.rx_len, 14);
    assert_memory_equal(srv.rx, "A2 NOOP via tls", 14);
    assert_int_equal(srv.eof, 1);
    assert_int_equal(srv.closed, 1);
    assert_int_equal(cli.closed, 1);
    tp_free(&srv);
    tp_free(&cli);
    tp_loop_finish(&loop);
}

/* ---- closes in awkward places ---- */

/* The server closes right after starting TLS, before any handshake byte. */
static void
hs_srv_close_accept(struct tpeer *p)
{
    assert_int_equal(conn_tls_server(&p->c, fx.sctx, tp_on_hs), 0);
    assert_int_equal(conn_write(&p->c, greeting, GREETING_LEN), 0);
    conn_close(&p->c);
}

static void
hs_cli_connect(struct tpeer *p)
{
    assert_int_equal(conn_tls_client(&p->c, fx.cctx, "localhost", tp_on_hs), 0);
}

/* The client closes right after sending its ClientHello. */
static void
hs_cli_connect_close(struct tpeer *p)
{
    assert_int_equal(conn_tls_client(&p->c, fx.cctx, "localhost", tp_on_hs), 0);
    conn_close(&p->c);
}

static void
hs_srv_accept(struct tpeer *p)
{
    assert_int_equal(conn_tls_server(&p->c, fx.sctx, tp_on_hs), 0);
}

static void
run_pair(void (*srv_accept)(struct tpeer *), void (*cli_connect)(struct tpeer *),
         struct tpeer *srv, struct tpeer *cli)
{
    uv_loop_t loop;
    struct tserver ts = {0};

    assert_int_equal(uv_loop_init(&loop), 0);
    tp_guard_start(&loop, 20000);
    ts.peers[0] = srv;
    ts.close_after = 1;
    ts.on_accept = srv_accept;
    ts_listen(&loop, &ts, 1);
    cli->hook_connect = cli_connect;
    tp_connect(&loop, cli, ts.port);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(srv->closed, 1);
    assert_int_equal(cli->closed, 1);
    tp_loop_finish(&loop);
}

static void
test_close_during_handshake(void **state)
{
    struct tpeer srv, cli;

    tp_init(&srv, "server");
    tp_init(&cli, "client");
    run_pair(hs_srv_close_accept, hs_cli_connect, &srv, &cli);
    assert_int_equal(srv.hs_calls, 0); /* the owner gave it up: no callback */
    assert_int_equal(cli.hs_calls, 1);
    assert_true(cli.hs_status < 0);
    assert_int_equal(cli.rx_len, 0);
    tp_free(&srv);
    tp_free(&cli);

    tp_init(&srv, "server");
    tp_init(&cli, "client");
    run_pair(hs_srv_accept, hs_cli_connect_close, &srv, &cli);
    assert_int_equal(cli.hs_calls, 0);
    assert_int_equal(srv.hs_calls, 1);
    assert_true(srv.hs_status < 0);
    tp_free(&srv);
    tp_free(&cli);
}

/* The server aborts from on_read while more records wait in the engine. */
static void
ab_srv_read(struct tpeer *p, const char *data, size_t len)
{
    conn_abort(&p->c);
    conn_close(&p->c);
    assert_int_equal(conn_write(&p->c, "x", 1), UV_EPIPE);
}

static void
ab_cli_hs(struct tpeer *p, int status)
{
    char *buf = calloc(1, 200000);

    assert_int_equal(status, 0);
    assert_int_equal(conn_write(&p->c, buf, 200000), 0);
    free(buf);
}

static void
test_abort_in_tls_read(void **state)
{
    struct tpeer srv, cli;

    tp_init(&srv, "server");
    tp_init(&cli, "client");
    srv.hook_read = ab_srv_read;
    cli.hook_hs = ab_cli_hs;
    run_pair(hs_srv_accept, hs_cli_connect, &srv, &cli);
    assert_int_equal(srv.hs_status, 0);
    assert_true(srv.rx_len > 0 && srv.rx_len <= CONN_READ_BUF); /* one chunk, then nothing */
    assert_int_equal(cli.errs, 1);
    tp_free(&srv);
    tp_free(&cli);
}

/* Closing right after a large TLS write: all of it, then close_notify. */
#define TLS_CLOSE_LEN (2 * 1024 * 1024)

static void
cl_srv_hs(struct tpeer *p, int status)
{
    char *buf = malloc(TLS_CLOSE_LEN);

    assert_int_equal(status, 0);
    tp_fill(buf, TLS_CLOSE_LEN, 9);
    assert_int_equal(conn_write(&p->c, buf, TLS_CLOSE_LEN), 0);
    free(buf);
    conn_close(&p->c);
}

static void
test_tls_close_delivers_all(void **state)
{
    struct tpeer srv, cli;
    char *want = malloc(TLS_CLOSE_LEN);

    tp_init(&srv, "server");
    tp_init(&cli, "client");
    srv.hook_hs = cl_srv_hs;
    run_pair(hs_srv_accept, hs_cli_connect, &srv, &cli);
    assert_int_equal(cli.hs_status, 0);
    assert_int_equal(cli.rx_len, TLS_CLOSE_LEN);
    tp_fill(want, TLS_CLOSE_LEN, 9);
    assert_memory_equal(cli.rx, want, TLS_CLOSE_LEN);
    assert_int_equal(cli.eof, 1);
    assert_int_equal(cli.errs, 1);
    free(want);
    tp_free(&srv);
    tp_free(&cli);
}

/*
 * SIGHUP's reload: a new server context put in the slot keeps the ticket
 * keys, so a client resumes the session it had before the reload; and the
 * slot hands out references that outlive a swap.
 */
static void
test_slot_reload_keeps_tickets(void **state)
{
    struct tls_run a = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 100};
    struct tls_run b = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 100};
    struct tls_run c = {.cctx = fx.cctx, .sni = "localhost", .echo_len = 100};
    struct tls_slot slot;
    SSL_CTX *saved = fx.sctx, *held, *fresh, *unrelated;
    char err[256];

    SSL_CTX_up_ref(saved);
    assert_int_equal(tls_slot_init(&slot, saved), 0);
    fx.sctx = tls_slot_get(&slot);
    tls_run(&a);
    check_echo(&a);
    held = fx.sctx;                      /* a reference taken before the swap */

    fresh = tls_server_ctx_new(fx.cert, fx.key, err, sizeof(err));
    assert_non_null(fresh);
    tls_slot_set(&slot, fresh);
    fx.sctx = tls_slot_get(&slot);
    assert_ptr_equal(fx.sctx, fresh);
    b.session = a.session_out;
    tls_run(&b);
    check_echo(&b);
    assert_int_equal(b.srv_reused, 1);   /* the old ticket still opens */
    SSL_CTX_free(fx.sctx);

    /* A context that did not inherit the keys does not resume: the check
     * above would fail without the copy. */
    unrelated = tls_server_ctx_new(fx.cert, fx.key, err, sizeof(err));
    assert_non_null(unrelated);
    fx.sctx = unrelated;
    c.session = a.session_out;
    tls_run(&c);
    check_echo(&c);
    assert_int_equal(c.srv_reused, 0);
    SSL_CTX_free(unrelated);

    SSL_CTX_free(held);                  /* still valid after the swap */
    tls_slot_free(&slot);
    fx.sctx = saved;
    tls_run_free(&a);
    tls_run_free(&b);
    tls_run_free(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_tls13_echo_1mib),
        cmocka_unit_test(test_tls12_echo),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_slot_reload_keeps_tickets),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_starttls),
        cmocka_unit_test(test_close_during_handshake),
        cmocka_unit_test(test_abort_in_tls_read),
        cmocka_unit_test(test_tls_close_delivers_all),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
