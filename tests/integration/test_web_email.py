"""The backup e-mail factor (web/API.md) over real HTTPS, with the
harness's SMTP sink as mfagate's [mail] relay: codes are read from the
messages the sink stored.

One mfagate (fresh database) per module for the main flows; the relay-down
and recovery-mode cases start their own.
"""
import re
import signal

import pytest

from dovecot import free_ports
from mfagate import Mfagate
from smtpsink import SmtpSink
from test_web_api import Browser, LISTEN

CODE_RX = re.compile(rb"Your verification code is (\d{6}) \(valid (\d+) minutes\)")


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    s = SmtpSink(str(tmp_path_factory.mktemp("mailsink"))).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory, dovecot, certdir, sink):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-email")), dovecot, certdir, listen=LISTEN,
                 overrides={"mail": {"relay": "smtp://127.0.0.1:%d" % sink.port,
                                     "from": "mfagate@example.test"}})
    mg.start()
    yield mg
    mg.stop()
    log = mg.log_text()
    # Never a code, a password or an address's full local part in the log.
    for msg in sink.messages():
        m = CODE_RX.search(msg)
        if m:
            assert m.group(1).decode() not in log
    for word in ("alicepw", "bobpw", "carolpw", "alice.backup", "carol.backup"):
        assert word not in log


def last_code(sink, count, to):
    msgs = sink.wait_messages(count)
    msg = msgs[count - 1]
    assert ("X-Sink-Rcpt-To: <%s>" % to).encode() in msg, msg[:300]
    head, _, body = msg.partition(b"\r\n\r\n")
    for h in (b"\r\nFrom: <mfagate@example.test>\r\n", b"\r\nTo: <%s>\r\n" % to.encode(),
              b"\r\nSubject: ", b"\r\nDate: ", b"\r\nMessage-ID: <", b"\r\nMIME-Version: 1.0\r\n",
              b"\r\nContent-Type: text/plain; charset=utf-8\r\n",
              b"\r\nContent-Transfer-Encoding: 8bit"):
        assert h in head + b"\r\n", (h, head)
    assert "您的验证码是".encode() in body
    m = CODE_RX.search(body)
    assert m, body
    return m.group(1).decode()


def wrong(code):
    return "%06d" % ((int(code) + 1) % 1000000)


def test_bind_signin_trust_temporary_unbind(web, sink, tls_ctx):
    """alice: bind a backup e-mail, sign in with e-mail codes (temporary and
    trusted), codes are single use, unbind after a fresh e-mail verification."""
    signal.alarm(200)
    addr = "alice.backup@example.com"
    b = Browser(web, tls_ctx)
    b.signed_in("alice", "alicepw")
    n = len(sink.messages())

    # Bad input first: no code is sent.
    for bad in ("no-at-sign", "a@b@c", "x@y\r\nBcc: z@w", " @x"):
        st, obj = b.request("POST", "/api/factors/email/begin", {"address": bad})
        assert st == 400, (bad, st, obj)
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": "123456"})
    assert st == 410, obj

    st, obj = b.request("POST", "/api/factors/email/begin", {"address": addr})
    assert st == 200 and obj["sent_to"] == "a***@example.com" and obj["expires_in"] == 600, obj
    n += 1
    code = last_code(sink, n, addr)
    # Not bound before the code is confirmed.
    st, me = b.me()
    assert me["factors"] == [], me
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": wrong(code)})
    assert st == 401 and obj["error"] == "bad_code" and obj["attempts_left"] == 4, obj
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": code})
    assert st == 200 and obj["ok"] is True and obj["label"] == "a***@example.com", obj
    # Single use.
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": code})
    assert st == 410, obj
    st, me = b.me()
    assert [(f["kind"], f["label"]) for f in me["factors"]] == [("email", "a***@example.com")]
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": addr})
    assert st == 409 and obj["error"] == "already_bound", obj

    # Sign-in: e-mail offered; temporary first.
    b2 = Browser(web, tls_ctx)
    st, ch = b2.login("alice", "alicepw")
    assert st == 200 and ch["state"] == "second_factor" and ch["methods"] == ["email"], ch
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "email", "code": "123456"})
    assert st == 409 and obj["error"] == "no_code_sent", obj
    st, obj = b2.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 200 and obj["sent_to"] == "a***@example.com", obj
    assert 60 <= obj["expires_in"] <= 300, obj
    n += 1
    code = last_code(sink, n, addr)
    # At most one code per short while.
    st, obj = b2.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 429 and obj["error"] == "too_soon", obj
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "email", "code": code,
                                                        "trust": False})
    assert st == 200 and obj["state"] == "ok", obj
    assert "mfa_session" in b2.cookies and "mfa_device" not in b2.cookies
    # The code and its challenge are used up.
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "email", "code": code})
    assert st == 410, obj

    # Trusted: the next sign-in of this browser skips the second factor.
    st, ch = b2.login("alice", "alicepw")
    assert ch["state"] == "second_factor", ch
    st, obj = b2.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 200, obj
    n += 1
    code = last_code(sink, n, addr)
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "email", "code": code,
                                                        "trust": True})
    assert st == 200 and "mfa_device" in b2.cookies, obj
    st, obj = b2.login("alice", "alicepw")
    assert st == 200 and obj["state"] == "ok", obj

    # Unbind needs a fresh verification by e-mail.
    st, obj = b.request("POST", "/api/factors/email/unbind", {"grant": "x" * 43})
    assert st == 403 and obj["error"] == "verification_required", obj
    st, v = b.request("POST", "/api/verify/begin", {"purpose": "unbind", "kind": "email"})
    assert st == 200 and v["methods"] == ["email"], v
    st, obj = b.request("POST", "/api/verify/email-code", {"challenge": v["challenge"]})
    assert st == 200 and obj["sent_to"] == "a***@example.com", obj
    n += 1
    code = last_code(sink, n, addr)
    st, obj = b.request("POST", "/api/verify", {"challenge": v["challenge"], "method": "email",
                                                "code": wrong(code)})
    assert st == 401 and obj["attempts_left"] == 4, obj
    st, obj = b.request("POST", "/api/verify", {"challenge": v["challenge"], "method": "email",
                                                "code": code})
    assert st == 200 and obj["ok"] is True, obj
    st, obj = b.request("POST", "/api/factors/email/unbind", {"grant": obj["grant"]})
    assert st == 200 and obj == {"ok": True, "left": 0}, obj
    st, me = b.me()
    assert me["factors"] == [], me
    # The last factor gone: trusted devices went with it; password alone now.
    b3 = Browser(web, tls_ctx)
    st, obj = b3.login("alice", "alicepw")
    assert st == 200 and obj["state"] == "ok", obj


def test_wrong_codes_count_then_locked(web, sink, tls_ctx):
    """carol: five wrong e-mail codes lock the sign-in challenge."""
    addr = "carol.backup@example.com"
    b = Browser(web, tls_ctx)
    b.signed_in("carol", "carolpw")
    n = len(sink.messages())
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": addr})
    assert st == 200, obj
    n += 1
    code = last_code(sink, n, addr)
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": code})
    assert st == 200, obj

    b2 = Browser(web, tls_ctx)
    st, ch = b2.login("carol", "carolpw")
    st, obj = b2.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 200, obj
    n += 1
    code = last_code(sink, n, addr)
    for left in (4, 3, 2, 1, 0):
        st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                            "method": "email",
                                                            "code": wrong(code)})
        assert st == 401 and obj["error"] == "bad_code" and obj["attempts_left"] == left, obj
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "email", "code": code})
    assert st == 429 and obj["error"] == "too_many_attempts", obj
    st, obj = b2.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 429, obj
    assert "mfa_session" not in b2.cookies


def test_recovery_only_in_recovery_mode(web, tls_ctx):
    """Here the e-mail signs in by itself: no account recovery by e-mail
    (test_web_recovery.py has the recovery mode)."""
    b = Browser(web, tls_ctx)
    st, obj = b.request("GET", "/api/recovery")
    assert st == 200 and obj["by_email"] is False, obj
    for route in ("begin", "confirm", "finish"):
        st, obj = b.request("POST", "/api/recovery/" + route, {"user": "alice",
                                                               "code": "123456"})
        assert st == 403 and obj["error"] == "not_offered", (route, obj)


def test_relay_down_is_502_and_nothing_bound(make_mfagate, tls_ctx):
    dead = free_ports(1)[0]
    mg = make_mfagate(overrides={"mail": {"relay": "smtp://127.0.0.1:%d" % dead}}, listen=LISTEN)
    b = Browser(mg, tls_ctx)
    b.signed_in("bob", "bobpw")
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": "bob@example.com"})
    assert st == 502 and obj["error"] == "mail_failed" and obj["message"], obj
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": "123456"})
    assert st == 410, obj
    st, me = b.me()
    assert me["factors"] == [], me
    st, obj = b.login("bob", "bobpw")
    assert st == 200 and obj["state"] == "ok", obj


def test_no_relay_is_503(make_mfagate, tls_ctx):
    mg = make_mfagate(listen=LISTEN)
    b = Browser(mg, tls_ctx)
    b.signed_in("bob", "bobpw")
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": "bob@example.com"})
    assert st == 503 and obj["error"] == "mail_unavailable", obj


def test_recovery_mode_email_is_no_signin_method(make_mfagate, tls_ctx, tmp_path):
    sink = SmtpSink(str(tmp_path / "sink")).start()
    try:
        mg = make_mfagate(overrides={"mail": {"relay": "smtp://127.0.0.1:%d" % sink.port},
                                     "web": {"email_factor": "recovery"}}, listen=LISTEN)
        b = Browser(mg, tls_ctx)
        b.signed_in("bob", "bobpw")
        st, obj = b.request("POST", "/api/factors/email/begin", {"address": "bob.r@example.com"})
        assert st == 200, obj
        msgs = sink.wait_messages(1)
        code = CODE_RX.search(msgs[0]).group(1).decode()
        st, obj = b.request("POST", "/api/factors/email/confirm", {"code": code})
        assert st == 200, obj
        # A recovery address is no second factor: the password alone signs in.
        b2 = Browser(mg, tls_ctx)
        st, obj = b2.login("bob", "bobpw")
        assert st == 200 and obj["state"] == "ok", obj
        st, obj = b2.request("POST", "/api/login/email-code", {"challenge": "x" * 43})
        assert st == 403 and obj["error"] == "not_offered", obj
    finally:
        sink.stop()


def test_change_address_after_fresh_verification(web, sink, tls_ctx):
    """alice again (after the first test unbound hers): bind, then change the
    address; the grant is used up only when the new code went out."""
    old, new = "alice.old@example.com", "zed.new@example.net"
    b = Browser(web, tls_ctx)
    b.signed_in("alice", "alicepw")
    n = len(sink.messages())
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": old})
    assert st == 200, obj
    n += 1
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": last_code(sink, n, old)})
    assert st == 200, obj

    st, v = b.request("POST", "/api/verify/begin", {"purpose": "change", "kind": "email"})
    assert st == 200, v
    st, obj = b.request("POST", "/api/verify/email-code", {"challenge": v["challenge"]})
    assert st == 200, obj
    n += 1
    st, obj = b.request("POST", "/api/verify", {"challenge": v["challenge"], "method": "email",
                                                "code": last_code(sink, n, old)})
    assert st == 200, obj
    grant = obj["grant"]
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": new, "grant": grant})
    assert st == 200 and obj["sent_to"] == "z***@example.net", obj
    n += 1
    code = last_code(sink, n, new)
    # The grant went with that code.
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": new, "grant": grant})
    assert st in (403, 429), obj
    st, obj = b.request("POST", "/api/factors/email/confirm", {"code": code})
    assert st == 200 and obj["label"] == "z***@example.net", obj
    st, me = b.me()
    assert [(f["kind"], f["label"]) for f in me["factors"]] == [("email", "z***@example.net")]


class SilentRelay:
    """Accepts SMTP connections and never answers (a hung MTA)."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_client_leaves_or_server_stops_while_sending(make_mfagate, tls_ctx):
    import http.client
    import json
    import socket
    import threading
    relay = SilentRelay()
    try:
        mg = make_mfagate(overrides={"mail": {"relay": "smtp://127.0.0.1:%d" % relay.port}},
                          listen=LISTEN)
        b = Browser(mg, tls_ctx)
        b.signed_in("bob", "bobpw")
        hdrs = {"Cookie": "; ".join("%s=%s" % kv for kv in b.cookies.items()),
                "X-CSRF-Token": b.csrf, "Content-Type": "application/json"}
        body = json.dumps({"address": "bob@example.com"})
        # The browser gives up while the relay is silent: the send is cancelled.
        conn = http.client.HTTPSConnection("127.0.0.1", mg.ports["https"], context=tls_ctx,
                                           timeout=1)
        conn.request("POST", "/api/factors/email/begin", body=body, headers=hdrs)
        with pytest.raises((socket.timeout, TimeoutError)):
            conn.getresponse()
        conn.close()
        st, me = b.me()
        assert st == 200 and me["factors"] == [], me
        # The server stops while a send waits: a clear 503, then a clean exit.
        out = {}

        def waiter():
            c = http.client.HTTPSConnection("127.0.0.1", mg.ports["https"], context=tls_ctx,
                                            timeout=30)
            try:
                c.request("POST", "/api/factors/email/begin", body=body, headers=hdrs)
                r = c.getresponse()
                out["status"], out["body"] = r.status, r.read()
            except OSError as e:
                out["error"] = e
            c.close()

        t = threading.Thread(target=waiter)
        t.start()
        import time
        time.sleep(1.0)
        mg.stop()
        t.join(30)
        assert out.get("status") == 503 and b"shutting_down" in out.get("body", b""), out
        assert "email_code_sent" not in mg.log_text()
    finally:
        relay.close()
