"""SMTP through mfagate: greeting, EHLO, STARTTLS, AUTH PLAIN/LOGIN in their
forms, submission to Dovecot (which relays to the harness's SMTP sink),
inbound relay of unauthenticated sessions (straight to the sink, which
stands in for the MTA on port 25), STARTTLS injection, backend down, the
second factor and client-specific passwords, swaks and curl, 10 MiB.

This module's mfagate has a fresh state: alice and carol never get a factor
(passthrough to Dovecot); bob gets a TOTP factor half-way (the `bob_totp`
fixture), so tests run in file order.
"""
import os
import smtplib
import socket
import subprocess
import time

import pytest

from helpers import (app_password, body_of, make_message, sha256, sink_find, sink_parts,
                     sink_xclient, totp_enroll, unique_marker)
from mfagate import SMTP_REFUSAL
from rawmail import RawSmtp, b64, dot_stuff
from smtpsink import SmtpSink

MiB = 1024 * 1024
ENCRYPTION_REQUIRED = "538 5.7.11 "


def smtps_raw(mg, ctx, **kw):
    return RawSmtp.connect(mg.ports["smtps"], tls=ctx, **kw)


def starttls_raw(mg, ctx, ehlo=True):
    c = RawSmtp.connect(mg.ports["smtp"])
    c.ehlo()
    code, _ = c.cmd("STARTTLS")
    assert code == 220
    c.starttls(ctx)
    if ehlo:
        c.ehlo()
    return c


def auth_plain(c, user, password, authzid="", timeout=20):
    """AUTH PLAIN with an initial response; the reply line as sent."""
    c.send("AUTH PLAIN %s\r\n" % b64("%s\0%s\0%s" % (authzid, user, password)))
    return c.reply_line(timeout)


def smtplib_ssl(mg, ctx, timeout=30):
    return smtplib.SMTP_SSL("127.0.0.1", mg.ports["smtps"], context=ctx, timeout=timeout)


def smtplib_starttls(mg, ctx, timeout=30):
    s = smtplib.SMTP("127.0.0.1", mg.ports["smtp"], timeout=timeout)
    s.ehlo("client.example")
    s.starttls(context=ctx)
    s.ehlo("client.example")
    return s


def send_data(c, message, timeout=30):
    """DATA (after MAIL and RCPT) with `message`; the final reply."""
    code, texts = c.cmd("DATA")
    assert code == 354, (code, texts)
    c.send(dot_stuff(message))
    return c.reply(timeout)


def assert_submitted(sink, marker, message, mail_from, rcpts):
    """The message arrived at the sink through Dovecot submission, intact."""
    stored = sink_find(sink, marker)
    got_from, got_rcpts, data = sink_parts(stored)
    assert got_from == "<%s>" % mail_from, got_from
    assert got_rcpts == ["<%s>" % r for r in rcpts], got_rcpts
    # Dovecot may add trace headers; the message itself ends the data.
    assert data.endswith(message), (len(data), len(message))
    assert sha256(body_of(data)) == sha256(body_of(message))
    return data


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "30"] + list(args),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


# -- greeting, EHLO, STARTTLS --------------------------------------------------------

def test_greeting_on_both_ports(mfagate, tls_ctx):
    for c in (RawSmtp.connect(mfagate.ports["smtp"]), smtps_raw(mfagate, tls_ctx)):
        with c:
            assert c.greeting.startswith(b"220 "), c.greeting
            assert c.greeting.endswith(b"\r\n")
            assert c.cmd("NOOP")[0] == 250
            assert c.cmd("QUIT")[0] == 221
            c.read_until_eof(5)


def test_ehlo_before_and_after_starttls(mfagate, tls_ctx):
    with RawSmtp.connect(mfagate.ports["smtp"]) as c:
        ext, _ = c.ehlo()
        assert "STARTTLS" in ext and "PIPELINING" in ext, ext
        assert "AUTH" not in ext, ext
        code, _ = c.cmd("STARTTLS")
        assert code == 220
        c.starttls(tls_ctx)
        # RFC 3207: the pre-TLS EHLO is forgotten
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw"))[0] == 503
        ext, texts = c.ehlo()
        assert "STARTTLS" not in ext, ext
        auth = [t for t in texts if t.upper().startswith("AUTH ")]
        assert len(auth) == 1 and {"PLAIN", "LOGIN"} <= set(auth[0].upper().split()[1:]), texts
        assert c.cmd("STARTTLS")[0] == 503                # not twice
    with smtps_raw(mfagate, tls_ctx) as c:
        ext, _ = c.ehlo()
        assert "AUTH" in ext and "STARTTLS" not in ext, ext


def test_auth_before_starttls_refused(mfagate, tls_ctx):
    with RawSmtp.connect(mfagate.ports["smtp"]) as c:
        c.ehlo()
        r = auth_plain(c, "alice", "alicepw")
        assert r.startswith(ENCRYPTION_REQUIRED), r
        c.send("AUTH LOGIN\r\n")
        assert c.reply_line().startswith(ENCRYPTION_REQUIRED)
        # still usable: upgrade and authenticate
        assert c.cmd("STARTTLS")[0] == 220
        c.starttls(tls_ctx)
        c.ehlo()
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")


def test_plaintext_auth_when_allowed(make_mfagate):
    mg = make_mfagate(overrides={"server": {"allow_plaintext_auth": "yes"}}, listen=("smtp",))
    with RawSmtp.connect(mg.ports["smtp"]) as c:
        ext, _ = c.ehlo()
        assert "AUTH" in ext and "STARTTLS" in ext, ext
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")


# -- submission (no second factor: passthrough) ----------------------------------------

def test_alice_sends_over_smtps_and_starttls(mfagate, dovecot, tls_ctx):
    for make in (smtplib_ssl, smtplib_starttls):
        marker = unique_marker("alice")
        msg = make_message(5000, marker.decode())
        s = make(mfagate, tls_ctx)
        s.login("alice", "alicepw")
        refused = s.sendmail("alice@localhost", ["dave@example.com"], msg)
        assert refused == {}
        s.quit()
        assert_submitted(dovecot.sink, marker, msg, "alice@localhost", ["dave@example.com"])


def test_auth_plain_initial_response_continuation_and_login(mfagate, tls_ctx):
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        assert auth_plain(c, "alice", "alicepw") == "235 2.7.0 Authentication successful"
        # logged in at Dovecot: a second AUTH is its business, and it refuses
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0alicepw"))[0] == 503
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        c.send("AUTH PLAIN\r\n")
        assert c.readline() == b"334 \r\n"
        c.send(b64("\0alice\0alicepw") + "\r\n")
        assert c.reply_line(20).startswith("235 ")
        assert c.cmd("MAIL FROM:<alice@localhost>")[0] == 250
    with starttls_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        assert c.readline() == b"334 VXNlcm5hbWU6\r\n"          # "Username:"
        c.send(b64("alice") + "\r\n")
        assert c.readline() == b"334 UGFzc3dvcmQ6\r\n"          # "Password:"
        c.send(b64("alicepw") + "\r\n")
        assert c.reply_line(20).startswith("235 ")
        assert c.cmd("MAIL FROM:<alice@localhost>")[0] == 250


def test_auth_cancelled(mfagate, tls_ctx):
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        c.send("AUTH PLAIN\r\n")
        assert c.readline().startswith(b"334")
        c.send("*\r\n")
        assert c.reply_line().startswith("501 ")
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")


def test_auth_authzid_different_is_refused(mfagate, tls_ctx):
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        r = auth_plain(c, "bob", "bobpw", authzid="alice")
        assert r.startswith("535 "), r
        c.send("AUTH PLAIN\r\n")
        assert c.readline().startswith(b"334")
        c.send(b64("carol\0alice\0alicepw") + "\r\n")
        r = c.reply_line(20)
        assert r.startswith("535 "), r
        # neither logged in: the proxy still takes AUTH itself
        assert auth_plain(c, "alice", "alicepw", authzid="alice").startswith("235 ")


def test_pipelined_mail_rcpt_data_after_auth(mfagate, dovecot, tls_ctx):
    marker = unique_marker("pipe")
    msg = make_message(3000, marker.decode())
    with smtps_raw(mfagate, tls_ctx) as c:
        ext, _ = c.ehlo()
        assert "PIPELINING" in ext
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")
        c.send(b"MAIL FROM:<alice@localhost>\r\nRCPT TO:<pipe1@example.com>\r\n"
               b"RCPT TO:<pipe2@example.com>\r\nDATA\r\n")          # one packet
        assert c.reply(20)[0] == 250
        assert c.reply(20)[0] == 250
        assert c.reply(20)[0] == 250
        assert c.reply(20)[0] == 354
        c.send(dot_stuff(msg) + b"QUIT\r\n")
        assert c.reply(30)[0] == 250
        assert c.reply(10)[0] == 221
    assert_submitted(dovecot.sink, marker, msg, "alice@localhost",
                     ["pipe1@example.com", "pipe2@example.com"])


def test_client_address_forwarded_with_xclient(mfagate, dovecot, tls_ctx):
    off = dovecot.log_size()
    with smtps_raw(mfagate, tls_ctx, source="127.0.0.2") as c:
        c.ehlo()
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")
        assert c.cmd("QUIT")[0] == 221
    dovecot.wait_log(r"submission-login: (?:Info: )?Login: user=<alice>[^\n]*rip=127\.0\.0\.2",
                     since=off)


def test_curl_smtp_starttls_alice(mfagate, dovecot, cafile, tmp_path):
    marker = unique_marker("curl-starttls")
    msg = make_message(2000, marker.decode())
    path = tmp_path / "msg.eml"
    path.write_bytes(msg)
    cp = curl("--cacert", cafile, "--ssl-reqd",
              "smtp://127.0.0.1:%d/client.example" % mfagate.ports["smtp"],
              "-u", "alice:alicepw", "--mail-from", "alice@localhost",
              "--mail-rcpt", "erin@example.com", "-T", str(path))
    assert cp.returncode == 0, cp.stderr
    assert_submitted(dovecot.sink, marker, msg, "alice@localhost", ["erin@example.com"])


def test_10_mib_message_arrives_byte_exact(mfagate, dovecot, tls_ctx):
    marker = unique_marker("big")
    msg = make_message(10 * MiB, marker.decode())
    assert len(msg) >= 10 * MiB - 4096
    s = smtplib_ssl(mfagate, tls_ctx, timeout=60)
    s.login("carol", "carolpw")
    assert s.sendmail("carol@localhost", ["big@example.com"], msg) == {}
    s.quit()
    data = assert_submitted(dovecot.sink, marker, msg, "carol@localhost", ["big@example.com"])
    assert sha256(data[-len(msg):]) == sha256(msg)


# -- inbound: another server delivering without AUTH -------------------------------------

INBOUND_BODY = (b"Received: from mx.example.org\r\n"
                b"From: <sender@remote.example>\r\nTo: <alice@localhost>\r\n"
                b"Subject: inbound %s\r\n\r\n"
                b"A line.\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\n"
                b"tab\tand 8-bit \xc3\xa9t\xc3\xa9\r\n"
                b"%s\r\n")


def test_inbound_unauthenticated_session_relayed_unchanged(mfagate, dovecot):
    marker = unique_marker("inbound")
    msg = INBOUND_BODY % (marker, os.urandom(600).hex().encode())
    with RawSmtp.connect(mfagate.ports["smtp"]) as c:
        c.ehlo("mx.example.org")
        code, texts = c.cmd("MAIL FROM:<sender@remote.example>", timeout=20)
        assert code == 250, (code, texts)
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert c.cmd("RCPT TO:<carol@localhost>")[0] == 250
        code, texts = send_data(c, msg)
        assert code == 250, (code, texts)
        assert c.cmd("QUIT")[0] == 221
    stored = sink_find(dovecot.sink, marker)
    mail_from, rcpts, data = sink_parts(stored)
    assert mail_from == "<sender@remote.example>"
    assert rcpts == ["<alice@localhost>", "<carol@localhost>"]
    assert data == msg                                    # byte-exact


def test_inbound_pipelined_and_on_the_tls_port(mfagate, dovecot, tls_ctx):
    marker = unique_marker("inbound-tls")
    msg = INBOUND_BODY % (marker, b"x" * 100)
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo("mx.example.org")
        c.send(b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\n")
        assert c.reply(20)[0] == 250
        assert c.reply(20)[0] == 250
        assert c.reply(20)[0] == 354
        c.send(dot_stuff(msg))
        assert c.reply(20)[0] == 250
    _, _, data = sink_parts(sink_find(dovecot.sink, marker))
    assert data == msg


def test_inbound_helo_session_relayed(mfagate, dovecot):
    marker = unique_marker("inbound-helo")
    msg = INBOUND_BODY % (marker, b"old-style client")
    with RawSmtp.connect(mfagate.ports["smtp"]) as c:
        assert c.cmd("HELO old.example.org")[0] == 250
        assert c.cmd("MAIL FROM:<>", timeout=20)[0] == 250        # a bounce
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
        assert send_data(c, msg)[0] == 250
    mail_from, rcpts, data = sink_parts(sink_find(dovecot.sink, marker))
    assert (mail_from, rcpts) == ("<>", ["<alice@localhost>"])
    assert data == msg


def test_inbound_forwards_client_address_with_xclient(make_mfagate, tmp_path):
    # An MTA that trusts mfagate for XCLIENT (Postfix's
    # smtpd_authorized_xclient_hosts) learns the real client's address.
    mta = SmtpSink(str(tmp_path / "mta"), xclient=True).start()
    try:
        mg = make_mfagate(overrides={"backend": {"smtp_inbound": mta.port}}, listen=("smtp",))
        marker = unique_marker("inbound-xclient")
        msg = INBOUND_BODY % (marker, b"via xclient")
        with RawSmtp.connect(mg.ports["smtp"], source="127.0.0.2") as c:
            c.ehlo("mx.example.org")
            assert c.cmd("MAIL FROM:<sender@remote.example>", timeout=20)[0] == 250
            assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
            assert send_data(c, msg)[0] == 250
        stored = sink_find(mta, marker)
        xc = sink_xclient(stored)
        assert xc is not None, stored[:300]
        assert xc.get("ADDR") == "127.0.0.2", xc
        assert xc.get("HELO", "mx.example.org") == "mx.example.org", xc
        assert sink_parts(stored)[2] == msg
    finally:
        mta.stop()


def test_inbound_backend_down_is_a_temporary_failure(make_mfagate):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens here now
    mg = make_mfagate(overrides={"backend": {"smtp_inbound": port}}, listen=("smtp",))
    with RawSmtp.connect(mg.ports["smtp"]) as c:
        c.ehlo("mx.example.org")
        t = time.monotonic()
        code, texts = c.cmd("MAIL FROM:<sender@remote.example>", timeout=15)
        assert code == 451 and texts[0].startswith("4.4.1 "), (code, texts)
        assert time.monotonic() - t < 5 + 3
        assert c.cmd("NOOP")[0] == 250                    # still usable
        assert c.cmd("QUIT")[0] == 221


def test_inbound_rejected_when_configured(make_mfagate, dovecot, tls_ctx):
    mg = make_mfagate(overrides={"smtp": {"unauthenticated": "reject"}},
                      listen=("smtp", "smtps"))
    before = len(dovecot.sink.messages())
    with RawSmtp.connect(mg.ports["smtp"]) as c:
        c.ehlo("mx.example.org")
        code, texts = c.cmd("MAIL FROM:<sender@remote.example>", timeout=20)
        assert code == 530, (code, texts)
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 503
        assert c.cmd("NOOP")[0] == 250                    # still usable
    # authenticated submission still works on that server
    with smtps_raw(mg, tls_ctx) as c:
        c.ehlo()
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")
        assert c.cmd("MAIL FROM:<alice@localhost>")[0] == 250
    assert len(dovecot.sink.messages()) == before


def test_starttls_injection_is_discarded(mfagate, dovecot, tls_ctx):
    with RawSmtp.connect(mfagate.ports["smtp"]) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nMAIL FROM:<x@y>\r\n")        # one packet
        assert c.reply_line().startswith("220 ")
        assert c.quiet_for(0.3) == b""                     # nothing in cleartext
        c.starttls(tls_ctx)
        late = c.quiet_for(1.5)
        assert late == b"", "reply to the injected MAIL over TLS: %r" % late
        # the session starts over: EHLO is needed, then MAIL is new
        assert c.cmd("RCPT TO:<alice@localhost>")[0] == 503
        ext, _ = c.ehlo()
        assert "AUTH" in ext
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")


# -- backend down --------------------------------------------------------------------

def test_backend_stopped_gives_454_and_stays_usable(fresh_dovecot, make_mfagate, tls_ctx):
    mg = make_mfagate(backend=fresh_dovecot, listen=("smtps",))
    with smtps_raw(mg, tls_ctx) as c:
        c.ehlo()
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")
    fresh_dovecot.stop()
    with smtps_raw(mg, tls_ctx) as c:
        c.ehlo()
        t = time.monotonic()
        r = auth_plain(c, "alice", "alicepw", timeout=15)
        elapsed = time.monotonic() - t
        assert r.startswith("454 4.7.0 "), r
        assert elapsed < 8, elapsed    # a stopped backend refuses at once: no waiting
        assert c.cmd("NOOP")[0] == 250                    # still usable
        fresh_dovecot.start()
        # the same connection authenticates now that the backend is back
        assert auth_plain(c, "alice", "alicepw").startswith("235 ")
        assert c.cmd("MAIL FROM:<alice@localhost>")[0] == 250


def test_backend_black_hole_times_out_cleanly(make_mfagate, tls_ctx):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                             # accepts in the kernel, never speaks
    try:
        mg = make_mfagate(overrides={"backend": {"smtp": hole.getsockname()[1]},
                                     "limits": {"backend_timeout": "2s"}},
                          listen=("smtps",))
        with smtps_raw(mg, tls_ctx) as c:
            c.ehlo()
            t = time.monotonic()
            r = auth_plain(c, "alice", "alicepw", timeout=15)
            elapsed = time.monotonic() - t
            assert r.startswith("454 4.7.0 "), r
            assert 1.5 <= elapsed < 2 + 3, elapsed       # it waited for the greeting
            assert c.cmd("NOOP")[0] == 250
    finally:
        hole.close()


# -- second factor: bob ----------------------------------------------------------------

@pytest.fixture(scope="module")
def bob_totp(mfagate):
    return totp_enroll(mfagate, "bob")


@pytest.fixture(scope="module")
def bob_pw(mfagate, bob_totp):
    return app_password(mfagate, "bob", "SMTP client")[1]


def test_account_password_refused_with_the_generic_text(mfagate, tls_ctx, bob_totp):
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        assert auth_plain(c, "bob", "bobpw") == SMTP_REFUSAL
        # One text for every refusal: nobody learns who has a factor.
        assert auth_plain(c, "nosuchuser", "bobpw") == SMTP_REFUSAL
        assert auth_plain(c, "alice", "wrongpw") == SMTP_REFUSAL
    with starttls_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        c.readline()
        c.send(b64("bob") + "\r\n")
        c.readline()
        c.send(b64("bobpw") + "\r\n")
        assert c.reply_line(20) == SMTP_REFUSAL
    # smtplib sees it as an authentication error (one mechanism, no retry)
    s = smtplib_ssl(mfagate, tls_ctx)
    s.ehlo()
    s.user, s.password = "bob", "bobpw"
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        s.auth("PLAIN", s.auth_plain)
    assert e.value.smtp_code == 535
    assert e.value.smtp_error.decode() == SMTP_REFUSAL[4:]
    s.close()


def test_app_password_sends(mfagate, dovecot, tls_ctx, bob_pw):
    for typed, make in ((bob_pw, smtplib_ssl), (bob_pw.replace(" ", ""), smtplib_starttls)):
        marker = unique_marker("bob")
        msg = make_message(4000, marker.decode())
        s = make(mfagate, tls_ctx)
        s.login("bob", typed)
        assert s.sendmail("bob@localhost", ["frank@example.com"], msg) == {}
        s.quit()
        assert_submitted(dovecot.sink, marker, msg, "bob@localhost", ["frank@example.com"])
    with starttls_raw(mfagate, tls_ctx) as c:
        c.send("AUTH LOGIN\r\n")
        c.readline()
        c.send(b64("bob") + "\r\n")
        c.readline()
        c.send(b64(bob_pw) + "\r\n")
        assert c.reply_line(20).startswith("235 ")


def test_imap_only_password_refused_on_smtp(mfagate, tls_ctx, bob_totp):
    _, pw = app_password(mfagate, "bob", "IMAP only", scope="imap")
    with smtps_raw(mfagate, tls_ctx) as c:
        c.ehlo()
        assert auth_plain(c, "bob", pw) == SMTP_REFUSAL


def test_swaks_with_app_password(mfagate, dovecot, cafile, bob_pw):
    marker = unique_marker("swaks")
    cp = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % mfagate.ports["smtp"], "--tls",
         "--tls-verify", "--tls-ca-path", cafile,
         "--auth", "PLAIN", "--auth-user", "bob", "--auth-password", bob_pw.replace(" ", ""),
         "--from", "bob@localhost", "--to", "carol@example.com",
         "--header", "Subject: %s" % marker.decode(), "--body", "sent by swaks\n",
         "--timeout", "20"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr
    assert "STARTTLS" in cp.stdout
    stored = sink_find(dovecot.sink, marker)
    mail_from, rcpts, data = sink_parts(stored)
    assert mail_from == "<bob@localhost>" and rcpts == ["<carol@example.com>"]
    assert body_of(data).rstrip(b"\r\n") == b"sent by swaks"     # swaks adds blank lines
    # and over implicit TLS
    marker = unique_marker("swaks-tlsc")
    cp = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % mfagate.ports["smtps"], "--tlsc",
         "--auth", "LOGIN", "--auth-user", "bob", "--auth-password", bob_pw,
         "--from", "bob@localhost", "--to", "carol@example.com",
         "--header", "Subject: %s" % marker.decode(), "--timeout", "20"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr
    sink_find(dovecot.sink, marker)


def test_curl_smtps_upload_with_app_password(mfagate, dovecot, cafile, bob_pw, tmp_path):
    marker = unique_marker("curl-smtps")
    msg = make_message(20000, marker.decode())
    path = tmp_path / "msg.eml"
    path.write_bytes(msg)
    cp = curl("--cacert", cafile, "smtps://127.0.0.1:%d/client.example" % mfagate.ports["smtps"],
              "-u", "bob:" + bob_pw, "--mail-from", "bob@localhost",
              "--mail-rcpt", "carol@example.com", "-T", str(path))
    assert cp.returncode == 0, cp.stderr
    assert_submitted(dovecot.sink, marker, msg, "bob@localhost", ["carol@example.com"])
    cp = curl("--cacert", cafile, "smtps://127.0.0.1:%d/" % mfagate.ports["smtps"],
              "-u", "bob:bobpw", "--mail-from", "bob@localhost",
              "--mail-rcpt", "carol@example.com", "-T", str(path))
    assert cp.returncode == 67, (cp.returncode, cp.stderr)      # login denied
