"""The ways back into an account whose factor is lost (web/API.md "Recovery
codes" and "Backup e-mail"), over real HTTPS: one-time recovery codes at
the second step of a sign-in and of a verification, and the account
recovery by the backup e-mail with its waiting period ([web] email_factor =
recovery), the codes read from the messages the harness's SMTP sink stored.

One mfagate (fresh database) for the module, in recovery mode with a short
recovery_wait; each test has its own user.
"""
import re
import time

import pytest

from mfagate import Mfagate
from smtpsink import SmtpSink
from test_web_api import LISTEN, Browser, fresh_code, metrics_value

CODE_RX = re.compile(rb"Your verification code is (\d{6}) \(valid (\d+) minutes\)")
RC_RX = re.compile(r"^[0-9a-hjkmnp-tv-z]{5}-[0-9a-hjkmnp-tv-z]{5}$")
WAIT = 4   # [web] recovery_wait, seconds


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    s = SmtpSink(str(tmp_path_factory.mktemp("mailsink"))).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory, dovecot, certdir, sink):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-recovery")), dovecot, certdir,
                 listen=LISTEN,
                 overrides={"mail": {"relay": "smtp://127.0.0.1:%d" % sink.port,
                                     "from": "mfagate@example.test"},
                            "web": {"email_factor": "recovery",
                                    "recovery_wait": "%ds" % WAIT}})
    mg.start()
    mg.codes_seen = []    # recovery codes handed out, for the log check
    yield mg
    mg.stop()
    log = mg.log_text()
    # Never a recovery code, an e-mailed code or a password in the log.
    for code in mg.codes_seen:
        assert code not in log and code.replace("-", "") not in log, code
    for msg in sink.messages():
        m = CODE_RX.search(msg)
        if m:
            assert m.group(1).decode() not in log
    for word in ("alicepw", "bobpw", "carolpw", "carol.backup", "bob.backup"):
        assert word not in log


def mails_to(sink, addr):
    return [m for m in sink.messages() if ("X-Sink-Rcpt-To: <%s>" % addr).encode() in m]


def wait_mail(sink, addr, n, timeout=10):
    """Message number n (1-based) to addr."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = mails_to(sink, addr)
        if len(msgs) >= n:
            return msgs[n - 1]
        time.sleep(0.05)
    raise TimeoutError("no message %d to %s" % (n, addr))


def code_of(msg):
    m = CODE_RX.search(msg)
    assert m, msg[-600:]
    return m.group(1).decode()


def wrong6(code):
    return "%06d" % ((int(code) + 1) % 1000000)


def bind_email(b, sink, addr):
    n = len(mails_to(sink, addr))
    st, obj = b.request("POST", "/api/factors/email/begin", {"address": addr})
    assert st == 200, obj
    st, obj = b.request("POST", "/api/factors/email/confirm",
                        {"code": code_of(wait_mail(sink, addr, n + 1))})
    assert st == 200, obj


def new_codes(b):
    st, obj = b.request("POST", "/api/recovery-codes", {})
    assert st == 200, obj
    codes = obj["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    assert all(RC_RX.match(c) for c in codes), codes
    return codes


def verify_login(b, challenge, method, code, trust=False):
    return b.request("POST", "/api/login/verify", {"challenge": challenge, "method": method,
                                                    "code": code, "trust": trust})


def signins_until(b, want, timeout=5):
    """The sign-in list once a row satisfies want: audit rows of sign-ins are
    batched and written about once a second (auth.c's flush timer)."""
    deadline = time.time() + timeout
    while True:
        st, rows = b.request("GET", "/api/signins")
        assert st == 200, rows
        if any(want(r) for r in rows) or time.time() > deadline:
            return rows
        time.sleep(0.2)


def test_recovery_codes(web, tls_ctx):
    """alice: make a set, sign in with a code once (not twice), wrong codes
    count toward the challenge's limit, a new set replaces the old, a code
    verifies an unbind, and the last factor takes the codes with it."""
    b = Browser(web, tls_ctx)
    assert b.request("GET", "/api/recovery-codes")[0] == 401
    b.signed_in("alice", "alicepw")
    st, obj = b.request("GET", "/api/recovery-codes")
    assert st == 200 and obj == {"total": 0, "left": 0, "created": None}, obj
    st, obj = b.request("POST", "/api/recovery-codes", {})
    assert st == 409 and obj["error"] == "no_factor", obj
    used = set()
    secret = b.bind_totp(used)
    st, obj = b.request("POST", "/api/recovery-codes", {}, csrf=False)
    assert st == 403 and obj["error"] == "csrf", obj
    codes = new_codes(b)
    web.codes_seen.extend(codes)
    st, obj = b.request("GET", "/api/recovery-codes")
    assert st == 200 and obj["total"] == 10 and obj["left"] == 10, obj
    assert abs(obj["created"] - time.time()) < 60, obj

    # Sign-in: offered; a wrong one and a malformed one count as wrong codes.
    b2 = Browser(web, tls_ctx)
    st, ch = b2.login("alice", "alicepw")
    assert st == 200 and ch["methods"] == ["totp", "recovery"], ch
    st, obj = verify_login(b2, ch["challenge"], "recovery", "00000-00000")
    assert st == 401 and obj["error"] == "bad_code" and obj["attempts_left"] == 4, obj
    st, obj = verify_login(b2, ch["challenge"], "recovery", "hello")
    assert st == 401 and obj["attempts_left"] == 3, obj
    # Typed in capitals without the dash: fine.
    st, obj = verify_login(b2, ch["challenge"], "recovery", codes[0].replace("-", "").upper())
    assert st == 200 and obj["state"] == "ok", obj
    assert "mfa_session" in b2.cookies and "mfa_device" not in b2.cookies
    st, obj = b2.request("GET", "/api/recovery-codes")
    assert st == 200 and obj["left"] == 9, obj

    # Single use.
    b3 = Browser(web, tls_ctx)
    st, ch = b3.login("alice", "alicepw")
    st, obj = verify_login(b3, ch["challenge"], "recovery", codes[0])
    assert st == 401 and obj["attempts_left"] == 4, obj
    st, obj = verify_login(b3, ch["challenge"], "recovery", codes[1], trust=True)
    assert st == 200 and "mfa_device" in b3.cookies, obj

    # Five wrong codes lock the challenge, a right code included after.
    b4 = Browser(web, tls_ctx)
    st, ch = b4.login("alice", "alicepw")
    for left in (4, 3, 2, 1, 0):
        st, obj = verify_login(b4, ch["challenge"], "recovery", "zzzzz-zzzz%d" % left)
        assert st == 401 and obj["attempts_left"] == left, obj
    st, obj = verify_login(b4, ch["challenge"], "recovery", codes[2])
    assert st == 429, obj
    st, obj = b.request("GET", "/api/recovery-codes")
    assert obj["left"] == 8, obj

    # /metrics and the sign-in list name the method.
    assert metrics_value(web, tls_ctx,
                         'mfagate_logins_total{protocol="web",result="ok",how="recovery"}') >= 2
    def recovery_ok(r):
        return r["proto"] == "web" and r["method"] == "recovery" and r["result"] == "ok"
    rows = signins_until(b, recovery_ok)
    assert any(recovery_ok(r) for r in rows), rows

    # A new set replaces the old one.
    codes2 = new_codes(b)
    web.codes_seen.extend(codes2)
    assert not set(codes2) & set(codes)
    b5 = Browser(web, tls_ctx)
    st, ch = b5.login("alice", "alicepw")
    st, obj = verify_login(b5, ch["challenge"], "recovery", codes[3])
    assert st == 401, obj
    st, obj = b.request("GET", "/api/recovery-codes")
    assert obj["total"] == 10 and obj["left"] == 10, obj

    # A code verifies an unbind too; the last factor takes the codes along.
    st, v = b.request("POST", "/api/verify/begin", {"purpose": "unbind", "kind": "totp"})
    assert st == 200 and v["methods"] == ["totp", "recovery"], v
    st, obj = b.request("POST", "/api/verify", {"challenge": v["challenge"],
                                                "method": "recovery", "code": "zzzzz-zzzzz"})
    assert st == 401 and obj["attempts_left"] == 4, obj
    st, obj = b.request("POST", "/api/verify", {"challenge": v["challenge"],
                                                "method": "recovery", "code": codes2[0]})
    assert st == 200 and obj["grant"], obj
    st, obj = b.request("POST", "/api/factors/totp/unbind", {"grant": obj["grant"]})
    assert st == 200 and obj["left"] == 0, obj
    st, obj = b.request("GET", "/api/recovery-codes")
    assert st == 200 and obj == {"total": 0, "left": 0, "created": None}, obj
    st, obj = Browser(web, tls_ctx).login("alice", "alicepw")
    assert st == 200 and obj["state"] == "ok", obj
    assert secret  # (bound with it above)


def test_email_recovery(web, sink, tls_ctx):
    """carol lost her authenticator: begin -> code -> confirm -> the wait
    (the address is told) -> finish with a second code -> only the e-mail
    is left, trusted devices revoked, codes gone; password alone signs in."""
    addr = "carol.backup@example.com"
    b = Browser(web, tls_ctx)
    b.signed_in("carol", "carolpw")
    used = set()
    secret = b.bind_totp(used)
    bind_email(b, sink, addr)
    web.codes_seen.extend(new_codes(b))
    # A trusted browser, to see it revoked at the end.
    t = Browser(web, tls_ctx)
    st, ch = t.login("carol", "carolpw")
    assert ch["methods"] == ["totp", "recovery"], ch   # the e-mail is no sign-in method here
    st, obj = verify_login(t, ch["challenge"], "totp", fresh_code(secret, used), trust=True)
    assert st == 200 and "mfa_device" in t.cookies, obj
    st, devices = b.request("GET", "/api/devices")
    assert len(devices) == 1, devices

    anon = Browser(web, tls_ctx)
    st, obj = anon.request("GET", "/api/recovery")
    assert st == 200 and obj == {"by_email": True, "wait": WAIT}, obj
    n = len(mails_to(sink, addr))
    st, obj = anon.request("POST", "/api/recovery/begin", {"user": "Carol"})
    assert st == 200 and obj == {"sent_to": "c***@example.com", "expires_in": 600}, obj
    msg = wait_mail(sink, addr, n + 1)
    assert b"Someone asked to recover your mail account" in msg, msg[-500:]
    code = code_of(msg)
    # Asked again at once: the same answer, no second mail.
    st, obj2 = anon.request("POST", "/api/recovery/begin", {"user": "carol"})
    assert st == 200 and obj2 == obj, obj2
    time.sleep(0.5)
    assert len(mails_to(sink, addr)) == n + 1

    st, obj = anon.request("POST", "/api/recovery/confirm", {"user": "carol",
                                                             "code": wrong6(code)})
    assert st == 401 and obj["error"] == "bad_code", obj
    wrong_body = obj
    t0 = time.time()
    st, obj = anon.request("POST", "/api/recovery/confirm", {"user": "carol", "code": code})
    assert st == 200 and obj["ok"] is True, obj
    assert t0 + WAIT - 2 <= obj["ready_at"] <= t0 + WAIT + 2, obj
    assert obj["expires"] > obj["ready_at"], obj
    ready_at = obj["ready_at"]
    notice = wait_mail(sink, addr, n + 2)
    assert b"A recovery of the account carol was confirmed" in notice, notice[-800:]
    assert not CODE_RX.search(notice)
    # The code was good once.
    st, obj = anon.request("POST", "/api/recovery/confirm", {"user": "carol", "code": code})
    assert st == 401 and obj == wrong_body, obj

    # Too early.
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol"})
    assert st == 409 and obj["error"] == "too_early" and obj["ready_at"] == ready_at, obj
    time.sleep(max(0, ready_at - time.time()) + 1.2)
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol", "code": "123456"})
    assert st == 409 and obj["error"] == "no_code_sent", obj
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol"})
    assert st == 200 and obj["sent_to"] == "c***@example.com" and obj["expires_in"] == 600, obj
    msg = wait_mail(sink, addr, n + 3)
    assert b"Use this code to finish the account recovery" in msg
    code = code_of(msg)
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol"})
    assert st == 429 and obj["error"] == "too_soon", obj
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol",
                                                            "code": wrong6(code)})
    assert st == 401 and obj["error"] == "bad_code" and obj["attempts_left"] == 4, obj
    # Nothing changed yet.
    st, me = b.me()
    assert sorted(f["kind"] for f in me["factors"]) == ["email", "totp"], me
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol", "code": code})
    assert st == 200 and obj == {"ok": True, "removed": ["totp"], "devices": 1}, obj
    assert b"was recovered through this backup address" in wait_mail(sink, addr, n + 4)

    st, me = b.me()
    assert [(f["kind"], f["label"]) for f in me["factors"]] == [("email", "c***@example.com")]
    assert b.request("GET", "/api/devices")[1] == []
    st, obj = b.request("GET", "/api/recovery-codes")
    assert obj["total"] == 0, obj
    # The trusted browser is trusted no more, and no second step is left.
    st, obj = Browser(web, tls_ctx).login("carol", "carolpw")
    assert st == 200 and obj["state"] == "ok", obj
    # Over: nothing waits.
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "carol", "code": code})
    assert st == 410 and obj["error"] == "expired", obj
    st, rows = b.request("GET", "/api/signins")
    assert st == 200


def test_who_exists_is_not_told(web, sink, tls_ctx):
    """begin and confirm answer alike for a name without an address (bob,
    nobody) as for one with; no mail goes out for them."""
    anon = Browser(web, tls_ctx)
    count = len(sink.messages())
    for user in ("nobody", "bob"):
        st, obj = anon.request("POST", "/api/recovery/begin", {"user": user})
        assert st == 200 and set(obj) == {"sent_to", "expires_in"}, obj
        assert re.match(r"^[a-z]\*\*\*@[a-z0-9.]+\.[a-z]+$", obj["sent_to"]), obj
        assert obj["expires_in"] == 600, obj
        # Stable for the name.
        st, obj2 = anon.request("POST", "/api/recovery/begin", {"user": user})
        assert obj2 == obj, (obj, obj2)
        st, obj = anon.request("POST", "/api/recovery/confirm", {"user": user,
                                                                 "code": "123456"})
        assert st == 401 and obj == {"error": "bad_code",
                                     "message": obj["message"]}, obj
        st, obj = anon.request("POST", "/api/recovery/finish", {"user": user})
        assert st == 410, obj
    time.sleep(0.5)
    assert len(sink.messages()) == count
    st, obj = anon.request("POST", "/api/recovery/begin", {"user": "bad*name"})
    assert st == 400, obj
    st, obj = anon.request("POST", "/api/recovery/begin", {})
    assert st == 400, obj


def test_signin_with_a_factor_cancels(web, sink, tls_ctx):
    """bob still has his authenticator: signing in with it cancels a
    recovery that somebody (with his mailbox) started."""
    addr = "bob.backup@example.com"
    b = Browser(web, tls_ctx)
    b.signed_in("bob", "bobpw")
    used = set()
    secret = b.bind_totp(used)
    bind_email(b, sink, addr)
    anon = Browser(web, tls_ctx)
    n = len(mails_to(sink, addr))
    st, obj = anon.request("POST", "/api/recovery/begin", {"user": "bob"})
    assert st == 200 and obj["sent_to"] == "b***@example.com", obj
    code = code_of(wait_mail(sink, addr, n + 1))
    st, obj = anon.request("POST", "/api/recovery/confirm", {"user": "bob", "code": code})
    assert st == 200, obj
    ready_at = obj["ready_at"]
    # A sign-in with the password alone does not cancel (there is none);
    # with the authenticator it does.
    b2 = Browser(web, tls_ctx)
    st, ch = b2.login("bob", "bobpw")
    st, obj = verify_login(b2, ch["challenge"], "totp", fresh_code(secret, used))
    assert st == 200, obj
    time.sleep(max(0, ready_at - time.time()) + 1.2)
    st, obj = anon.request("POST", "/api/recovery/finish", {"user": "bob"})
    assert st == 410 and obj["error"] == "expired", obj
    st, me = b.me()
    assert sorted(f["kind"] for f in me["factors"]) == ["email", "totp"], me
    assert "recovery_cancelled" in web.log_text()
