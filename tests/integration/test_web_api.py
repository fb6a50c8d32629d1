"""The JSON API of the web endpoint (web/API.md) over real HTTPS.

One mfagate with an https listener in front of the shared Dovecot; each
test uses its own browser (a cookie jar kept by hand) and, where it binds
factors, its own user, so the tests do not depend on each other's order
except where a docstring says so.  TOTP codes are computed here (RFC 6238)
from the secret the API hands out.
"""
import base64
import hashlib
import hmac
import http.client
import imaplib
import json
import re
import signal
import struct
import time
import urllib.parse

import pytest

from dovecot import free_ports
from helpers import APP_PASSWORD_RX, imaps, logged_in, login_refusal
from mfagate import GENERIC_REFUSAL, Mfagate

LISTEN = ("imaps", "imap", "https")


def totp(secret_b32, t=None, step_offset=0):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    counter = int((time.time() if t is None else t) // 30) + step_offset
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000
    return "%06d" % code


def wrong_code(secret_b32):
    good = {totp(secret_b32, step_offset=d) for d in (-1, 0, 1)}
    for n in range(1000000):
        c = "%06d" % ((123457 + n * 7919) % 1000000)
        if c not in good:
            return c


class Browser:
    """An HTTPS client with a cookie jar and the CSRF header of its session."""

    def __init__(self, mg, ctx):
        self.port = mg.ports["https"]
        self.ctx = ctx
        self.cookies = {}
        self.csrf = None
        self.last_set_cookies = []

    def request(self, method, path, body=None, csrf=True, headers=None, raw=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=30)
        h = {"Host": "mail.example.test:%d" % self.port}
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if csrf and self.csrf and method in ("POST", "DELETE"):
            h["X-CSRF-Token"] = self.csrf
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        text = resp.read()
        self.last_set_cookies = resp.headers.get_all("Set-Cookie") or []
        for sc in self.last_set_cookies:
            first, _, attrs = sc.partition(";")
            name, _, value = first.strip().partition("=")
            attrs_l = attrs.lower()
            assert "httponly" in attrs_l and "secure" in attrs_l, sc
            assert "samesite=strict" in attrs_l and "path=/" in attrs_l, sc
            if "max-age=0" in attrs_l.replace(" ", "") or value == "":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        conn.close()
        ctype = resp.headers.get("Content-Type", "")
        obj = json.loads(text) if text and ctype.startswith("application/json") else text
        return resp.status, obj

    def login(self, user, password):
        return self.request("POST", "/api/login", {"user": user, "password": password})

    def me(self):
        st, obj = self.request("GET", "/api/me")
        if st == 200:
            self.csrf = obj["csrf"]
        return st, obj

    def signed_in(self, user, password):
        st, obj = self.login(user, password)
        assert st == 200 and obj["state"] == "ok", (st, obj)
        st, me = self.me()
        assert st == 200, me
        return me

    def bind_totp(self, used=None):
        used = set() if used is None else used
        st, obj = self.request("POST", "/api/factors/totp/begin", {})
        assert st == 200, obj
        assert obj["otpauth"].startswith("otpauth://totp/"), obj
        assert obj["qr_svg"].startswith("<svg"), obj["qr_svg"][:80]
        secret = obj["secret"]
        assert urllib.parse.parse_qs(urllib.parse.urlparse(obj["otpauth"]).query)["secret"] == [secret]
        st, obj = self.request("POST", "/api/factors/totp/confirm",
                               {"code": fresh_code(secret, used)})
        assert st == 200 and obj == {"ok": True}, (st, obj)
        return secret


def fresh_code(secret, used):
    """A code the server will still take: a code is good once, and never one
    older than the last accepted, so each call takes the oldest step of the
    window (now-1 .. now+1) above the last one used, waiting if needed."""
    while True:
        now = int(time.time() // 30)
        last = max(used) if used else now - 2
        for step in (now - 1, now, now + 1):
            if step > last:
                # A step about to leave the window might be late: skip it.
                if step == now - 1 and time.time() % 30 > 20:
                    continue
                used.add(step)
                return totp(secret, t=step * 30)
        time.sleep(max(0.2, 30 - time.time() % 30 + 0.1))


@pytest.fixture(scope="module")
def web(tmp_path_factory, dovecot, certdir):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-web")), dovecot, certdir, listen=LISTEN)
    mg.start()
    yield mg
    mg.stop()
    log = mg.log_text()
    for secret_word in ("alicepw", "bobpw", "carolpw"):
        assert secret_word not in log


@pytest.fixture
def browser(web, tls_ctx):
    return Browser(web, tls_ctx)


def test_signin_without_factor_me_and_logout(web, browser):
    st, obj = browser.login("Alice", "alicepw")
    assert st == 200 and obj == {"state": "ok", "user": "alice"}, obj
    assert "mfa_session" in browser.cookies
    st, me = browser.me()
    assert st == 200, me
    assert me["user"] == "alice" and me["factors"] == []
    # No [wechat] here: the page neither offers binding it nor pushing.
    assert me["wechat"] is False and me["push"] is False, me
    assert len(me["csrf"]) == 43 and me["csrf"] != browser.cookies["mfa_session"]
    imap = me["settings"]["imap"]
    assert imap == {"host": "mail.example.test", "ssl_port": web.ports["imaps"],
                    "port": web.ports["imap"]}, me["settings"]
    assert me["settings"]["pop3"]["ssl_port"] is None
    # Sign-out needs the CSRF token, then ends the session for good.
    token = browser.cookies["mfa_session"]
    st, obj = browser.request("POST", "/api/logout", csrf=False)
    assert st == 403 and obj["error"] == "csrf", obj
    st, obj = browser.request("POST", "/api/logout")
    assert st == 200, obj
    assert "mfa_session" not in browser.cookies
    browser.cookies["mfa_session"] = token
    assert browser.request("GET", "/api/me")[0] == 401


def test_bad_password_and_bad_input(web, browser):
    st, obj = browser.login("alice", "wrong")
    assert st == 401 and obj["error"] == "bad_credentials", obj
    st, obj = browser.login("nosuchuser", "wrong")
    assert st == 401 and obj["error"] == "bad_credentials", obj
    assert "mfa_session" not in browser.cookies
    st, obj = browser.request("POST", "/api/login", {"user": 1, "password": "x"})
    assert st == 400 and obj["error"] == "bad_request", obj
    st, obj = browser.request("POST", "/api/login", {"user": "alice"})
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/login", raw=b"[1,2]")
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/login", raw=b"{\"user\": ")
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/login", {"user": "a" * 300, "password": "x"})
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/login", raw=b"user=alice",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 415, obj
    assert browser.request("GET", "/api/me")[0] == 401
    assert browser.request("GET", "/api/app-passwords")[0] == 401


def test_csrf_required_on_every_change(web, browser):
    browser.signed_in("alice", "alicepw")
    for method, path, body in (("POST", "/api/app-passwords", {"name": "x"}),
                               ("POST", "/api/app-passwords/clear", None),
                               ("DELETE", "/api/app-passwords/1", None),
                               ("DELETE", "/api/devices/1", None),
                               ("POST", "/api/factors/totp/begin", {}),
                               ("POST", "/api/verify/begin", {"purpose": "unbind",
                                                              "kind": "totp"})):
        st, obj = browser.request(method, path, body, csrf=False)
        assert st == 403 and obj["error"] == "csrf", (path, st, obj)
        st, obj = browser.request(method, path, body, csrf=False,
                                  headers={"X-CSRF-Token": "A" * 43})
        assert st == 403 and obj["error"] == "csrf", (path, st, obj)


def test_app_passwords_create_use_delete_clear(web, browser, tls_ctx):
    browser.signed_in("alice", "alicepw")
    st, obj = browser.request("POST", "/api/app-passwords", {"name": ""})
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/app-passwords", {"name": "x" * 65})
    assert st == 400, obj
    st, obj = browser.request("POST", "/api/app-passwords", {"name": 5})
    assert st == 400, obj
    st, created = browser.request("POST", "/api/app-passwords", {"name": "Foxmail 邮箱"})
    assert st == 200, created
    assert created["name"] == "Foxmail 邮箱" and APP_PASSWORD_RX.match(created["password"])
    # Usable at once through the proxy.
    c = logged_in(web, tls_ctx, "alice", created["password"])
    assert c.select("INBOX")[0] == "OK"
    st, listed = browser.request("GET", "/api/app-passwords")
    assert st == 200
    entry = [e for e in listed if e["id"] == created["id"]][0]
    assert entry["name"] == "Foxmail 邮箱" and entry["scope"] == "imap,pop3,smtp"
    assert isinstance(entry["created"], (int, float))
    assert "password" not in entry
    # Delete: refused from then on, and the live session ends.
    st, obj = browser.request("DELETE", "/api/app-passwords/%d" % created["id"])
    assert st == 200, obj
    deadline = time.monotonic() + 10
    ended = False
    while time.monotonic() < deadline:
        try:
            c.noop()
            time.sleep(0.2)
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            ended = True
            break
    assert ended, "the live IMAP session survived the revocation"
    assert browser.request("DELETE", "/api/app-passwords/%d" % created["id"])[0] == 404
    # With no factor, an unknown app password is just a wrong account password.
    with pytest.raises(imaplib.IMAP4.error):
        logged_in(web, tls_ctx, "alice", created["password"])
    # Clear all.
    pws = [browser.request("POST", "/api/app-passwords", {"name": "n%d" % i})[1]["password"]
           for i in range(2)]
    st, obj = browser.request("POST", "/api/app-passwords/clear")
    assert st == 200 and obj["removed"] == 2, obj
    assert browser.request("GET", "/api/app-passwords")[1] == []
    for pw in pws:
        with pytest.raises(imaplib.IMAP4.error):
            logged_in(web, tls_ctx, "alice", pw)


def test_totp_flow_trust_devices_verify_unbind(web, tls_ctx):
    """bob: bind TOTP, second factor at sign-in, trust, devices, unbind."""
    # Codes are single-use steps, so this flow may wait for the clock: give
    # it more than the suite's default per-test alarm.
    signal.alarm(300)
    used = set()
    b1 = Browser(web, tls_ctx)
    b1.signed_in("bob", "bobpw")
    secret = b1.bind_totp(used)
    st, me = b1.me()
    assert [f["kind"] for f in me["factors"]] == ["totp"]
    # Never two.
    st, obj = b1.request("POST", "/api/factors/totp/begin", {})
    assert st == 409, obj
    # Once bound, the account password no longer opens IMAP.
    assert login_refusal(web, tls_ctx, "bob", "bobpw") == GENERIC_REFUSAL

    # Sign-in now asks for the second factor; a temporary sign-in is not remembered.
    b2 = Browser(web, tls_ctx)
    st, obj = b2.login("bob", "bobpw")
    assert st == 200 and obj["state"] == "second_factor" and obj["methods"] == ["totp"], obj
    assert obj["push"] is False, obj
    assert "mfa_session" not in b2.cookies
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": obj["challenge"],
                                                        "method": "totp",
                                                        "code": fresh_code(secret, used),
                                                        "trust": False})
    assert st == 200 and obj["state"] == "ok", obj
    assert "mfa_session" in b2.cookies and "mfa_device" not in b2.cookies
    st, obj = b2.login("bob", "bobpw")
    assert obj["state"] == "second_factor", obj

    # Trusted: the next sign-in of this browser skips the second factor.
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": obj["challenge"],
                                                        "method": "totp",
                                                        "code": fresh_code(secret, used),
                                                        "trust": True})
    assert st == 200, obj
    assert "mfa_device" in b2.cookies
    assert any("mfa_device" in c and "Max-Age=2592000" in c for c in b2.last_set_cookies)
    del b2.cookies["mfa_session"]
    st, obj = b2.login("bob", "bobpw")
    assert st == 200 and obj["state"] == "ok", obj
    # ...but not for another user, nor without the password.
    st, obj = b2.login("bob", "wrong")
    assert st == 401
    b2.me()
    st, devices = b2.request("GET", "/api/devices")
    assert st == 200 and len(devices) == 1 and devices[0]["current"] is True, devices

    # A code is good once: the same code again is wrong.
    b3 = Browser(web, tls_ctx)
    st, ch3 = b3.login("bob", "bobpw")
    code = fresh_code(secret, used)
    st, obj = b3.request("POST", "/api/login/verify", {"challenge": ch3["challenge"],
                                                        "method": "totp", "code": code})
    assert st == 200, obj
    b4 = Browser(web, tls_ctx)
    st, ch = b4.login("bob", "bobpw")
    st, obj = b4.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                        "method": "totp", "code": code})
    assert st == 401 and obj["error"] == "bad_code", obj
    # A used challenge is gone (410), and so is an unknown one.
    st, obj = b3.request("POST", "/api/login/verify", {"challenge": ch3["challenge"],
                                                        "method": "totp", "code": code})
    assert st == 410 and obj["error"] == "expired", obj
    st, obj = b3.request("POST", "/api/login/verify", {"challenge": "A" * 43,
                                                        "method": "totp", "code": code})
    assert st == 410 and obj["error"] == "expired", obj

    # Revoke the trusted device: the browser must verify again.
    st, obj = b2.request("DELETE", "/api/devices/%d" % devices[0]["id"])
    assert st == 200, obj
    assert b2.request("GET", "/api/devices")[1] == []
    del b2.cookies["mfa_session"]
    st, obj = b2.login("bob", "bobpw")
    assert obj["state"] == "second_factor", obj
    # Trust it again, for the unbind check below.
    st, obj = b2.request("POST", "/api/login/verify", {"challenge": obj["challenge"],
                                                        "method": "totp",
                                                        "code": fresh_code(secret, used),
                                                        "trust": True})
    assert st == 200, obj
    b2.me()

    # Unbind needs a fresh verification and a single-use grant.
    st, obj = b2.request("POST", "/api/factors/totp/unbind", {"grant": "A" * 43})
    assert st == 403, obj
    st, obj = b2.request("POST", "/api/verify/begin", {"purpose": "unbind", "kind": "totp"})
    assert st == 200 and obj["methods"] == ["totp"], obj
    vch = obj["challenge"]
    st, obj = b2.request("POST", "/api/verify", {"challenge": vch, "method": "totp",
                                                  "code": wrong_code(secret)})
    assert st == 401 and obj["attempts_left"] == 4, obj
    st, obj = b2.request("POST", "/api/verify", {"challenge": vch, "method": "totp",
                                                  "code": fresh_code(secret, used)})
    assert st == 200 and obj["ok"] is True, obj
    grant = obj["grant"]
    st, obj = b2.request("POST", "/api/factors/totp/unbind", {"grant": grant})
    assert st == 200 and obj["left"] == 0, obj
    st, obj = b2.request("POST", "/api/factors/totp/unbind", {"grant": grant})
    assert st == 403, obj
    # The last factor went: every trusted device went with it, and the
    # account password works for mail again.
    assert b2.request("GET", "/api/devices")[1] == []
    c = logged_in(web, tls_ctx, "bob", "bobpw")
    c.logout()


def metrics_value(web, tls_ctx, name):
    conn = http.client.HTTPSConnection("127.0.0.1", web.ports["https"], context=tls_ctx,
                                       timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    assert m, name
    return int(m.group(1))


def test_wrong_codes_then_429(web, tls_ctx):
    """carol: five wrong codes use the challenge up (and /metrics counts them)."""
    failed = 'mfagate_challenges_total{result="failed"}'
    web_ok = 'mfagate_logins_total{protocol="web",result="ok",how="password"}'
    failed_before = metrics_value(web, tls_ctx, failed)
    b = Browser(web, tls_ctx)
    b.signed_in("carol", "carolpw")
    assert metrics_value(web, tls_ctx, web_ok) >= 1
    secret = b.bind_totp()
    st, ch = b.login("carol", "carolpw")
    assert ch["state"] == "second_factor", ch
    bad = wrong_code(secret)
    for left in (4, 3, 2, 1, 0):
        st, obj = b.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                           "method": "totp", "code": bad})
        assert st == 401 and obj == {"error": "bad_code", "message": obj["message"],
                                     "attempts_left": left}, obj
    st, obj = b.request("POST", "/api/login/verify", {"challenge": ch["challenge"],
                                                       "method": "totp", "code": totp(secret)})
    assert st == 429 and obj["error"] == "too_many_attempts", obj
    assert metrics_value(web, tls_ctx, failed) == failed_before + 5
    # No [mail] relay here: e-mail codes are off, said clearly (never a fake success).
    st, obj = b.request("POST", "/api/login/email-code", {"challenge": ch["challenge"]})
    assert st == 503 and obj["error"] == "mail_unavailable", obj


def test_signins_list(web, browser):
    browser.signed_in("alice", "alicepw")
    browser.login("alice", "wrong-for-the-list")
    browser.me()
    st, rows = browser.request("GET", "/api/signins")
    assert st == 200 and len(rows) <= 50, rows
    web_rows = [r for r in rows if r["proto"] == "web"]
    assert any(r["result"] == "ok" for r in web_rows), rows
    assert any(r["result"] == "fail" for r in web_rows), rows
    assert rows[0]["time"] >= rows[-1]["time"]
    assert all(r["addr"] == "127.0.0.1" for r in web_rows), rows
    assert {"time", "addr", "proto", "method", "result"} <= set(rows[0])


def test_backend_down_is_503(make_mfagate, dovecot, tls_ctx):
    (port,) = free_ports(1)
    mg = make_mfagate(overrides={"backend": {"imap": str(port)}}, listen=LISTEN)
    b = Browser(mg, tls_ctx)
    st, obj = b.login("alice", "alicepw")
    assert st == 503 and obj["error"] == "backend_unavailable", obj
