"""POP3 through mfagate: greeting, CAPA, STLS, USER/PASS and AUTH in their
forms, the second factor and client-specific passwords, a 10 MiB RETR, STLS
injection, backend down, client address forwarding (XCLIENT), curl.

This module's mfagate has a fresh state: alice and carol never get a factor
(passthrough to Dovecot); bob gets a TOTP factor half-way (the `bob_totp`
fixture), so tests run in file order.
"""
import imaplib
import poplib
import re
import socket
import subprocess
import time

import pytest

from helpers import app_password, make_message, sha256, totp_enroll
from mfagate import POP3_REFUSAL
from rawmail import RawPop3, b64

MiB = 1024 * 1024
PLAINTEXT_REFUSED = "-ERR [AUTH] Plaintext authentication disallowed"


def pop3s_raw(mg, ctx, **kw):
    return RawPop3.connect(mg.ports["pop3s"], tls=ctx, **kw)


def pop3_stls_raw(mg, ctx):
    c = RawPop3.connect(mg.ports["pop3"])
    assert c.cmd("STLS").startswith("+OK"), c.transcript
    c.starttls(ctx)
    return c


def capa(c):
    status = c.cmd("CAPA")
    assert status.startswith("+OK"), status
    return {l.upper() for l in c.multiline()}


def logged_in_ok(c):
    """The session is logged in at Dovecot: STAT answers +OK n size."""
    st = c.cmd("STAT", timeout=20)
    assert re.match(r"\+OK \d+ \d+$", st), st


def not_logged_in(c):
    st = c.cmd("STAT")
    assert st.startswith("-ERR"), st


def user_pass(c, user, password, timeout=20):
    """USER + PASS; the PASS answer."""
    assert c.cmd("USER " + user) == "+OK"
    return c.cmd("PASS " + password, timeout=timeout)


def poplib_ssl(mg, ctx, timeout=20):
    return poplib.POP3_SSL("127.0.0.1", mg.ports["pop3s"], context=ctx, timeout=timeout)


def poplib_stls(mg, ctx, timeout=20):
    p = poplib.POP3("127.0.0.1", mg.ports["pop3"], timeout=timeout)
    p.stls(context=ctx)
    return p


def curl(*args, text=True):
    return subprocess.run(["curl", "-sS", "--max-time", "30"] + list(args),
                          capture_output=True, text=text, stdin=subprocess.DEVNULL)


# -- greeting, CAPA, STLS ----------------------------------------------------------

def test_greeting_on_both_ports(mfagate, tls_ctx):
    for c in (RawPop3.connect(mfagate.ports["pop3"]), pop3s_raw(mfagate, tls_ctx)):
        with c:
            assert c.greeting.startswith(b"+OK"), c.greeting
            assert c.greeting.endswith(b"\r\n")
            assert c.cmd("QUIT").startswith("+OK")
            c.read_until_eof(5)


def test_capa_before_and_after_stls(mfagate, tls_ctx):
    with RawPop3.connect(mfagate.ports["pop3"]) as c:
        caps = capa(c)
        assert "STLS" in caps, caps
        assert "USER" not in caps, caps
        assert not any(w.startswith("SASL") for w in caps), caps
        assert c.cmd("STLS") == "+OK Begin TLS negotiation now."
        c.starttls(tls_ctx)
        caps = capa(c)
        assert "STLS" not in caps, caps
        assert "USER" in caps, caps
        sasl = [w for w in caps if w.startswith("SASL")]
        assert len(sasl) == 1 and {"PLAIN", "LOGIN"} <= set(sasl[0].split()[1:]), caps
        assert c.cmd("STLS").startswith("-ERR")          # not twice
    with pop3s_raw(mfagate, tls_ctx) as c:
        caps = capa(c)
        assert "STLS" not in caps and "USER" in caps, caps


def test_user_pass_and_auth_refused_before_stls(mfagate, tls_ctx):
    with RawPop3.connect(mfagate.ports["pop3"]) as c:
        assert c.cmd("USER alice").startswith(PLAINTEXT_REFUSED)
        assert c.cmd("PASS alicepw").startswith("-ERR")
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw")).startswith(PLAINTEXT_REFUSED)
        assert c.cmd("AUTH LOGIN").startswith(PLAINTEXT_REFUSED)
        not_logged_in(c)
        # still usable: upgrade and log in
        assert c.cmd("STLS").startswith("+OK")
        c.starttls(tls_ctx)
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."
        logged_in_ok(c)


def test_plaintext_auth_when_allowed(make_mfagate):
    mg = make_mfagate(overrides={"server": {"allow_plaintext_auth": "yes"}}, listen=("pop3",))
    with RawPop3.connect(mg.ports["pop3"]) as c:
        caps = capa(c)
        assert "USER" in caps and "STLS" in caps, caps
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."
        logged_in_ok(c)


# -- logging in (no second factor: passthrough) -------------------------------------

def test_alice_pop3s_and_stls_poplib(mfagate, tls_ctx):
    for p in (poplib_ssl(mfagate, tls_ctx), poplib_stls(mfagate, tls_ctx)):
        assert p.user("alice").startswith(b"+OK")
        assert p.pass_("alicepw").startswith(b"+OK")
        count, size = p.stat()
        assert count >= 0 and size >= 0
        assert p.quit().startswith(b"+OK")


def test_user_and_pass_pipelined_in_one_packet(mfagate, tls_ctx):
    with pop3s_raw(mfagate, tls_ctx) as c:
        c.send(b"USER alice\r\nPASS alicepw\r\nSTAT\r\n")   # one write
        assert c.line() == "+OK"
        assert c.line(20) == "+OK Logged in."
        # the STAT behind the PASS went to Dovecot once logged in
        assert re.match(r"\+OK \d+ \d+$", c.line(20)), c.transcript
        assert c.cmd("QUIT").startswith("+OK")


def test_auth_plain_initial_response(mfagate, tls_ctx):
    with pop3s_raw(mfagate, tls_ctx) as c:
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw"), timeout=20) == "+OK Logged in."
        logged_in_ok(c)


def test_auth_plain_with_continuation(mfagate, tls_ctx):
    with pop3s_raw(mfagate, tls_ctx) as c:
        c.send("AUTH PLAIN\r\n")
        assert c.readline() == b"+ \r\n"
        assert c.cmd(b64("\0alice\0alicepw"), timeout=20) == "+OK Logged in."
        logged_in_ok(c)


def test_auth_login(mfagate, tls_ctx):
    with pop3_stls_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        assert c.readline() == b"+ VXNlcm5hbWU6\r\n"          # "Username:"
        c.send(b64("alice") + "\r\n")
        assert c.readline() == b"+ UGFzc3dvcmQ6\r\n"          # "Password:"
        assert c.cmd(b64("alicepw"), timeout=20) == "+OK Logged in."
        logged_in_ok(c)


def test_auth_cancelled(mfagate, tls_ctx):
    with pop3s_raw(mfagate, tls_ctx) as c:
        c.send("AUTH PLAIN\r\n")
        assert c.readline().startswith(b"+ ")
        assert c.cmd("*").startswith("-ERR")
        not_logged_in(c)
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."


def test_auth_authzid_different_is_refused(mfagate, tls_ctx):
    with pop3s_raw(mfagate, tls_ctx) as c:
        r = c.cmd("AUTH PLAIN " + b64("alice\0bob\0bobpw"), timeout=20)
        assert r.startswith("-ERR"), r
        assert "Logged in" not in r
        not_logged_in(c)
        c.send("AUTH PLAIN\r\n")
        assert c.readline().startswith(b"+ ")
        r = c.cmd(b64("carol\0alice\0alicepw"), timeout=20)
        assert r.startswith("-ERR"), r
        not_logged_in(c)
        # the same connection can still log in properly
        assert c.cmd("AUTH PLAIN " + b64("alice\0alice\0alicepw"), timeout=20) \
            == "+OK Logged in."
        logged_in_ok(c)


def test_client_address_forwarded_with_xclient(mfagate, dovecot, tls_ctx):
    off = dovecot.log_size()
    # mfagate's own backend connection comes from 127.0.0.1, so rip=127.0.0.2
    # in Dovecot's log proves that the address was forwarded.
    with pop3s_raw(mfagate, tls_ctx, source="127.0.0.2") as c:
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."
        logged_in_ok(c)
        assert c.cmd("QUIT").startswith("+OK")
    dovecot.wait_log(r"pop3-login: (?:Info: )?Login: user=<alice>[^\n]*rip=127\.0\.0\.2",
                     since=off)


def test_xclient_and_auth_answers_do_not_wait_for_a_delayed_ack(mfagate, tls_ctx):
    # XCLIENT and AUTH leave in one write.  Dovecot's pop3-login sends its two
    # answers as separate small segments with Nagle's algorithm on, so the
    # second waits until the first is acknowledged; Linux delays that ACK by
    # 40 ms in a request/response rhythm unless mfagate acknowledges at once.
    # This is not a speed measurement: it catches that 40 ms stall, which hit
    # every other login (a normal login here takes about a millisecond).
    waits = []
    for _ in range(12):
        with pop3s_raw(mfagate, tls_ctx) as c:
            assert c.cmd("USER alice") == "+OK"
            t0 = time.monotonic()
            assert c.cmd("PASS alicepw", timeout=20) == "+OK Logged in."
            waits.append(time.monotonic() - t0)
            assert c.cmd("QUIT").startswith("+OK")
    stalled = [w for w in waits if w >= 0.038]
    assert len(stalled) <= 1, ["%.1f ms" % (w * 1e3) for w in waits]


def test_stls_injection_is_discarded(mfagate, tls_ctx):
    with RawPop3.connect(mfagate.ports["pop3"]) as c:
        c.send(b"STLS\r\nCAPA\r\n")                       # one packet
        assert c.line() == "+OK Begin TLS negotiation now."
        assert c.quiet_for(0.3) == b""                     # nothing in cleartext
        c.starttls(tls_ctx)
        late = c.quiet_for(1.5)
        assert late == b"", "reply to the injected CAPA over TLS: %r" % late
        caps = capa(c)
        assert "USER" in caps, caps


def test_stls_injection_of_login_is_discarded(mfagate, tls_ctx):
    with RawPop3.connect(mfagate.ports["pop3"]) as c:
        c.send(b"STLS\r\nUSER alice\r\nPASS alicepw\r\n")
        assert c.line().startswith("+OK")
        c.starttls(tls_ctx)
        assert c.quiet_for(1.0) == b""
        # USER was forgotten: PASS alone is refused, and nothing is logged in
        assert c.cmd("PASS alicepw").startswith("-ERR")
        not_logged_in(c)


def test_retr_10_mib_byte_exact(mfagate, dovecot, tls_ctx):
    msg = make_message(10 * MiB, "pop3 ten mebibytes")
    assert len(msg) >= 10 * MiB - 4096
    # Put it into carol's INBOX at Dovecot directly.
    im = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=60)
    im.login("carol", "carolpw")
    typ, data = im.append("INBOX", None, None, msg)
    assert typ == "OK", data
    im.logout()
    p = poplib_ssl(mfagate, tls_ctx, timeout=60)
    p.user("carol")
    assert p.pass_("carolpw").startswith(b"+OK")
    _, listing, _ = p.list()
    nums = [int(l.split()[0]) for l in listing if int(l.split()[1]) == len(msg)]
    assert nums, listing
    got = None
    for n in nums:                       # the one with our hash
        resp, lines, octets = p.retr(n)
        assert resp.startswith(b"+OK")
        body = b"\r\n".join(lines) + b"\r\n"     # poplib strips CRLF and dot-unstuffs
        if sha256(body) == sha256(msg):
            got = body
            break
    assert got is not None and len(got) == len(msg)
    p.quit()


# -- backend down ------------------------------------------------------------------

def test_backend_stopped_gives_sys_temp_and_stays_usable(fresh_dovecot, make_mfagate, tls_ctx):
    mg = make_mfagate(backend=fresh_dovecot, listen=("pop3s",))
    with pop3s_raw(mg, tls_ctx) as c:
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."
    fresh_dovecot.stop()
    with pop3s_raw(mg, tls_ctx) as c:
        t = time.monotonic()
        r = user_pass(c, "alice", "alicepw", timeout=15)
        elapsed = time.monotonic() - t
        assert r.startswith("-ERR [SYS/TEMP]"), r
        assert elapsed < 8, elapsed    # a stopped backend refuses at once: no waiting
        t = time.monotonic()
        r = c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw"), timeout=15)
        assert r.startswith("-ERR [SYS/TEMP]"), r
        assert time.monotonic() - t < 5 + 3
        assert "USER" in capa(c)                          # still usable
        fresh_dovecot.start()
        # the same connection logs in now that the backend is back
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."
        logged_in_ok(c)


def test_backend_black_hole_times_out_cleanly(make_mfagate, tls_ctx):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                             # accepts in the kernel, never speaks
    try:
        mg = make_mfagate(overrides={"backend": {"pop3": hole.getsockname()[1]},
                                     "limits": {"backend_timeout": "2s"}},
                          listen=("pop3s",))
        with pop3s_raw(mg, tls_ctx) as c:
            t = time.monotonic()
            r = c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw"), timeout=15)
            elapsed = time.monotonic() - t
            assert r.startswith("-ERR [SYS/TEMP]"), r
            assert 1.5 <= elapsed < 2 + 3, elapsed       # it waited for the greeting
            assert "USER" in capa(c)
    finally:
        hole.close()


# -- second factor: bob ------------------------------------------------------------

@pytest.fixture(scope="module")
def bob_totp(mfagate):
    return totp_enroll(mfagate, "bob")


@pytest.fixture(scope="module")
def bob_pw(mfagate, bob_totp):
    return app_password(mfagate, "bob", "POP3 client")[1]


def test_account_password_refused_with_the_generic_text(mfagate, tls_ctx, bob_totp):
    with pop3s_raw(mfagate, tls_ctx) as c:
        assert user_pass(c, "bob", "bobpw") == POP3_REFUSAL
        not_logged_in(c)
        assert c.cmd("AUTH PLAIN " + b64("\0bob\0bobpw"), timeout=20) == POP3_REFUSAL
        # One text for every refusal: nobody learns who has a factor.
        assert user_pass(c, "nosuchuser", "bobpw") == POP3_REFUSAL
        assert user_pass(c, "alice", "wrongpw") == POP3_REFUSAL
        not_logged_in(c)
    with pop3_stls_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        c.readline()
        c.send(b64("bob") + "\r\n")
        c.readline()
        assert c.cmd(b64("bobpw"), timeout=20) == POP3_REFUSAL
    # a user without a factor is unaffected
    with pop3s_raw(mfagate, tls_ctx) as c:
        assert user_pass(c, "alice", "alicepw") == "+OK Logged in."


def test_app_password_with_and_without_spaces(mfagate, tls_ctx, bob_pw):
    assert re.fullmatch(r"(?:[A-Za-z0-9]{4} ){3}[A-Za-z0-9]{4}", bob_pw), bob_pw
    for typed in (bob_pw, bob_pw.replace(" ", "")):
        p = poplib_ssl(mfagate, tls_ctx)
        p.user("bob")
        assert p.pass_(typed).startswith(b"+OK")
        p.stat()
        p.quit()
        p = poplib_stls(mfagate, tls_ctx)
        p.user("bob")
        assert p.pass_(typed).startswith(b"+OK")
        p.quit()
    with pop3s_raw(mfagate, tls_ctx) as c:
        assert c.cmd("AUTH PLAIN " + b64("\0bob\0" + bob_pw), timeout=20) == "+OK Logged in."
        logged_in_ok(c)
    with pop3s_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        c.readline()
        c.send(b64("bob") + "\r\n")
        c.readline()
        assert c.cmd(b64(bob_pw.replace(" ", "")), timeout=20) == "+OK Logged in."
        logged_in_ok(c)


def test_imap_only_password_refused_on_pop3(mfagate, tls_ctx, bob_totp):
    _, pw = app_password(mfagate, "bob", "IMAP only", scope="imap")
    with pop3s_raw(mfagate, tls_ctx) as c:
        assert user_pass(c, "bob", pw) == POP3_REFUSAL
        not_logged_in(c)


def test_curl_pop3s_listing_with_app_password(mfagate, dovecot, cafile, bob_pw):
    msg = make_message(3000, "for curl pop3")
    im = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=20)
    im.login("bob", "bobpw")
    assert im.append("INBOX", None, None, msg)[0] == "OK"
    im.logout()
    url = "pop3s://127.0.0.1:%d/" % mfagate.ports["pop3s"]
    cp = curl("--cacert", cafile, url, "-u", "bob:" + bob_pw)
    assert cp.returncode == 0, cp.stderr
    listing = [l.split() for l in cp.stdout.splitlines() if l.strip()]
    assert listing and all(len(x) == 2 and x[0].isdigit() and x[1].isdigit()
                           for x in listing), cp.stdout
    nums = [x[0] for x in listing if int(x[1]) == len(msg)]
    assert nums, (len(msg), cp.stdout)
    bodies = [curl("--cacert", cafile, url + n, "-u", "bob:" + bob_pw, text=False)
              for n in nums]
    assert any(b.returncode == 0 and sha256(b.stdout) == sha256(msg) for b in bodies)
    # the account password does not open it
    cp = curl("--cacert", cafile, url, "-u", "bob:bobpw")
    assert cp.returncode == 67, (cp.returncode, cp.stderr)      # login denied
