"""The WeChat factor (web/API.md "WeChat", issue 5) over real HTTPS: the
browser's side (bind, sign-in by scan, by the mini program's code, by a
pushed request; the long-poll) and the mini program's /api/mp/ routes,
against a real mfagate whose [wechat] api_base is a local stand-in for
WeChat's server API (tests/wechat_standin.py through harness/wechat.py).

One stand-in and one mfagate (fresh database, qr = wxacode, push on) for
the module, in front of a Dovecot of its own whose users are one per test,
so tests do not depend on each other's order.  Servers configured otherwise
(link QR without push, WeChat unreachable, no [wechat]) are made by the test
that needs them.  The stand-in's failures are cleared before every test.
Each phone is a distinct WeChat account (openid) with its own bearer token.
"""
import base64
import http.client
import json
import os
import re
import secrets
import sqlite3
import sys
import threading
import time

import pytest

from dovecot import Dovecot
from helpers import wait_until
from mfagate import REPO_ROOT, Mfagate
from test_web_api import LISTEN, Browser, wrong_code
from wechat import DEFAULT_TEMPLATE, WechatStandin

sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
import phone_sim  # noqa: E402  (the mini program's code: RFC 6238, as the phone does)

SCENE_RX = re.compile(r"^[A-Za-z0-9]{32}$")
B32_RX = re.compile(r"^[A-Z2-7]+=*$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WXACODE = "/wxa/getwxacodeunlimit"
CODE2SESSION = "/sns/jscode2session"
TOKEN = "/cgi-bin/token"
SUBSCRIBE = "/cgi-bin/message/subscribe/send"
PAGE = "pages/confirm/confirm"          # [wechat] page, the default
MP_SESSION_S = 30 * 86400
SCENE_TTL_S = 300

# One mailbox per test (and a few spare), in a Dovecot of this module's own.
USERS = {name: name + "-pw" for name in (
    "wxbind", "wxrace", "wxwrong", "wxscan", "wxcode", "wxpush", "wxlink",
    "wxdown", "wxqrfail", "wxtoken", "wxbearer", "wxoff", "wxabort", "wxrebind",
    "wxflags")}


# ---- fixtures -----------------------------------------------------------

@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    d = Dovecot(str(tmp_path_factory.mktemp("dovecot-wx")), users=USERS)
    d.start()
    yield d
    d.close()


@pytest.fixture(scope="module")
def wx_module(tmp_path_factory):
    s = WechatStandin(str(tmp_path_factory.mktemp("wechat-standin"))).start()
    yield s
    s.stop()


@pytest.fixture
def wx(wx_module):
    """The module's stand-in with no failure switched on and empty logs."""
    wx_module.reset()
    yield wx_module
    wx_module.fail("none")


@pytest.fixture(scope="module")
def web(tmp_path_factory, dc, certdir, wx_module):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-wx")), dc, certdir, listen=LISTEN,
                 overrides={"wechat": wx_module.config()})
    mg.start()
    mg.secrets_seen = []     # code secrets and codes handed out, for the log check
    yield mg
    mg.stop()
    log = mg.log_text()
    for word in [wx_module.secret] + list(USERS.values()) + mg.secrets_seen:
        assert word not in log, word
    # Nor a scene: whoever holds a bind scene may answer it.  The access log
    # keeps its first characters only.
    assert "/api/scan/" in log and "/api/mp/requests/" in log
    leaked = re.findall(r"/api/(?:scan|mp/requests)/[A-Za-z0-9]{16,}", log)
    assert leaked == [], leaked[:3]


# ---- clients ------------------------------------------------------------

class Phone:
    """The mini program of one WeChat account: a bearer token for /api/mp/."""

    def __init__(self, mg, ctx, wx, openid=None):
        self.mg = mg
        self.port = mg.ports["https"]
        self.ctx = ctx
        self.wx = wx
        self.openid = openid or "oWX" + secrets.token_hex(8)
        self.token = None

    def request(self, method, path, body=None, raw=None, auth=True, headers=None,
                timeout=30):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)
        h = {"Host": "mail.example.test:%d" % self.port}
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read()
        finally:
            conn.close()
        ctype = resp.headers.get("Content-Type", "")
        obj = json.loads(text) if text and ctype.startswith("application/json") else text
        return resp.status, obj

    def login(self):
        code = self.wx.mint_code(self.openid)
        st, obj = self.request("POST", "/api/mp/login", {"code": code}, auth=False)
        assert st == 200, (st, obj)
        assert set(obj) == {"token", "expires_in"}, obj
        assert len(obj["token"]) >= 32 and obj["expires_in"] == MP_SESSION_S, obj
        self.token = obj["token"]
        # Neither the wx.login code nor the bearer may reach the log.
        getattr(self.mg, "secrets_seen", []).extend([code, self.token])
        return self

    def accounts(self):
        st, obj = self.request("GET", "/api/mp/accounts")
        assert st == 200, (st, obj)
        return obj["accounts"]

    def show(self, scene):
        return self.request("GET", "/api/mp/requests/" + scene)

    def answer(self, scene, answer, number=None):
        body = {"answer": answer}
        if number is not None:
            body["number"] = number
        return self.request("POST", "/api/mp/requests/" + scene, body)


def browser_in(mg, ctx, user):
    """A browser signed in with the password alone (no factor yet)."""
    b = Browser(mg, ctx)
    me = b.signed_in(user, USERS[user])
    assert me["user"] == user and me["factors"] == [], me
    return b


def wait(b, scene):
    """GET /api/scan/<scene>/wait; only for scenes already decided (or a
    thread), as a pending one is held up to 25 s."""
    st, obj = b.request("GET", "/api/scan/%s/wait" % scene)
    assert st == 200, (st, obj)
    return obj


def check_png_qr(obj):
    assert "qr_svg" not in obj, obj
    prefix = "data:image/png;base64,"
    assert obj["qr_img"].startswith(prefix), obj["qr_img"][:60]
    raw = base64.b64decode(obj["qr_img"][len(prefix):], validate=True)
    assert raw.startswith(PNG_MAGIC) and len(raw) > 100


def check_scene(obj, number=False):
    assert SCENE_RX.match(obj["scene"]), obj
    assert SCENE_TTL_S - 5 <= obj["expires_in"] <= SCENE_TTL_S, obj
    assert ("number" in obj) == number, obj


def begin_bind(b):
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 200, (st, obj)
    check_scene(obj)
    return obj


def bind(mg, b, phone, user):
    """Binds user's WeChat to phone (begin on the page, confirm on the phone)."""
    scene = begin_bind(b)["scene"]
    st, obj = phone.answer(scene, "confirm")
    assert st == 200 and obj == {"ok": True}, (st, obj)
    assert wait(b, scene) == {"state": "approved", "answer": "confirm"}
    acc = [a for a in phone.accounts() if a["mailbox"] == user]
    assert len(acc) == 1, acc
    mg.secrets_seen.append(acc[0]["secret"])
    return acc[0]["secret"]


def second_factor(mg, ctx, user, methods=("wechat",)):
    """A fresh browser past the password: (browser, challenge, login answer)."""
    b = Browser(mg, ctx)
    st, obj = b.login(user, USERS[user])
    assert st == 200 and obj["state"] == "second_factor", (st, obj)
    assert obj["methods"] == list(methods), obj
    assert "mfa_session" not in b.cookies
    return b, obj["challenge"], obj


def scan(b, challenge):
    st, obj = b.request("POST", "/api/login/scan", {"challenge": challenge})
    assert st == 200, (st, obj)
    check_scene(obj)
    return obj


def random_scene():
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))


def db(mg):
    return sqlite3.connect(os.path.join(mg.dir, "state", "mfagate.db"), timeout=10)


def scene_rows(mg, user):
    with db(mg) as c:
        return c.execute("SELECT count(*) FROM scenes WHERE user_name = ?", (user,)).fetchone()[0]


# ---- /api/mp/login and the bearer ---------------------------------------

def test_mp_login_codes(web, wx, tls_ctx):
    phone = Phone(web, tls_ctx, wx).login()
    assert phone.accounts() == []
    call = wx.calls(path=CODE2SESSION)[-1]
    assert call["errcode"] == 0 and call["params"]["secret"] == "***", call
    assert call["params"]["appid"] == wx.appid and \
        call["params"]["grant_type"] == "authorization_code", call
    # Two logins of one account: two sessions, both good.
    other = Phone(web, tls_ctx, wx, openid=phone.openid).login()
    assert other.token != phone.token
    assert other.accounts() == [] and phone.accounts() == []

    # An invalid code: WeChat says 40029 -> 401 bad_code.
    anon = Phone(web, tls_ctx, wx)
    never = secrets.token_hex(16)
    st, obj = anon.request("POST", "/api/mp/login", {"code": never})
    assert st == 401 and obj["error"] == "bad_code", (st, obj)
    assert wx.calls(path=CODE2SESSION)[-1]["errcode"] == 40029
    # A used one (40163): the same.
    used = wx.mint_code("oWXused" + secrets.token_hex(4))
    st, obj = anon.request("POST", "/api/mp/login", {"code": used})
    assert st == 200, (st, obj)
    st, obj = anon.request("POST", "/api/mp/login", {"code": used})
    assert st == 401 and obj["error"] == "bad_code", (st, obj)
    assert wx.calls(path=CODE2SESSION)[-1]["errcode"] == 40163
    # One WeChat could never take (a space): refused without asking WeChat.
    n = len(wx.calls(path=CODE2SESSION))
    st, obj = anon.request("POST", "/api/mp/login", {"code": "a b"})
    assert st == 401 and obj["error"] == "bad_code", (st, obj)
    assert len(wx.calls(path=CODE2SESSION)) == n

    # WeChat's rate limit (45011) -> 503 wechat_unavailable; then fine again.
    wx.fail("ratelimit", count=1, path=CODE2SESSION)
    st, obj = anon.request("POST", "/api/mp/login", {"code": wx.mint_code(anon.openid)})
    assert st == 503 and obj["error"] == "wechat_unavailable", (st, obj)
    assert wx.calls(path=CODE2SESSION)[-1]["errcode"] == 45011
    for mode in ("busy", "http500", "badjson"):
        wx.fail(mode, count=1, path=CODE2SESSION)
        st, obj = anon.request("POST", "/api/mp/login", {"code": wx.mint_code(anon.openid)})
        assert st == 503 and obj["error"] == "wechat_unavailable", (mode, st, obj)
    anon.login()
    assert anon.accounts() == []

    # Malformed requests: 400 (415 for a body that is not JSON by type).
    for raw in (b"", b"{", b"[1]", b"{\"code\": 5}", b"{}", b"{\"code\": \"\"}",
                json.dumps({"code": "x" * 129}).encode(), b"{\"code\": null}"):
        st, obj = anon.request("POST", "/api/mp/login", raw=raw, auth=False)
        assert st == 400 and obj["error"] == "bad_request", (raw, st, obj)
    st, obj = anon.request("POST", "/api/mp/login", raw=b"code=abc", auth=False,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 415, (st, obj)


def test_mp_bearer(web, wx, tls_ctx):
    phone = Phone(web, tls_ctx, wx).login()
    good = phone.token
    paths = (("GET", "/api/mp/accounts", None),
             ("GET", "/api/mp/requests/" + random_scene(), None),
             ("POST", "/api/mp/requests/" + random_scene(), {"answer": "deny"}))
    for header in (None, "", "Bearer", "Bearer ", "Bearer " + "A" * 43, "Bearer garbage",
                   "Basic " + good, "Bearer " + good[:-1], "Bearer " + good + "x",
                   "Token " + good):
        for method, path, body in paths:
            h = {} if header is None else {"Authorization": header}
            st, obj = phone.request(method, path, body, auth=False, headers=h)
            assert st == 401 and obj["error"] == "not_signed_in", (header, path, st, obj)
    # The scheme is case-insensitive (RFC 7235).
    st, obj = phone.request("GET", "/api/mp/accounts", auth=False,
                            headers={"Authorization": "bearer " + good})
    assert st == 200, (st, obj)
    # Expired: the session's expiry moved into the past in the database.
    with db(web) as c:
        n = c.execute("UPDATE mp_sessions SET expires = ? WHERE openid = ?",
                      (int(time.time()) - 1, phone.openid)).rowcount
    assert n == 1
    for method, path, body in paths:
        st, obj = phone.request(method, path, body)
        assert st == 401 and obj["error"] == "not_signed_in", (path, st, obj)
    # A new wx.login gets a new session.
    phone.login()
    assert phone.accounts() == []


# ---- bind ---------------------------------------------------------------

def test_bind_flow(web, wx, tls_ctx):
    user = "wxbind"
    b = browser_in(web, tls_ctx, user)
    st, me = b.me()
    assert me["wechat"] is True and me["push"] is True, me
    phone = Phone(web, tls_ctx, wx).login()
    stranger = Phone(web, tls_ctx, wx).login()

    t0 = time.time()
    obj = begin_bind(b)
    scene = obj["scene"]
    check_png_qr(obj)
    # The image is WeChat's mini-program code for this scene and page.
    call = wx.calls(path=WXACODE)[-1]
    assert call["errcode"] == 0 and call["params"]["access_token"] == "***", call
    assert call["body"]["scene"] == scene and call["body"]["page"] == PAGE, call
    assert call["body"]["check_path"] is False, call

    # The phone sees what it is asked.
    st, req = phone.show(scene)
    assert st == 200, (st, req)
    assert req["kind"] == "bind" and req["mailbox"] == user, req
    assert req["addr"] == "127.0.0.1" and req["state"] == "pending", req
    assert t0 - 2 <= req["time"] <= time.time() + 1, req
    assert req["expires"] - req["time"] == SCENE_TTL_S, req
    assert "numbers" not in req, req

    # Answers a bind does not take: 400, and nothing recorded.
    for bad in ({"answer": "maybe"}, {"answer": "trust"}, {"answer": "temporary"},
                {"answer": "CONFIRM"}):
        st, obj = phone.request("POST", "/api/mp/requests/" + scene, bad)
        assert st == 400 and obj["error"] == "bad_answer", (bad, st, obj)
    for raw in (b"{}", b"{\"answer\": 1}", b"{", b"{\"answer\": \"" + b"x" * 17 + b"\"}"):
        st, obj = phone.request("POST", "/api/mp/requests/" + scene, raw=raw)
        assert st == 400 and obj["error"] == "bad_request", (raw, st, obj)
    assert phone.show(scene)[1]["state"] == "pending"

    # The page waits (long-poll); the phone's confirm wakes it at once.
    got = {}

    def waiter():
        got["t"] = time.monotonic()
        got["obj"] = wait(b, scene)
        got["t"] = time.monotonic() - got["t"]

    th = threading.Thread(target=waiter, daemon=True)
    th.start()
    time.sleep(0.5)          # the wait is in place (it lasts up to 25 s otherwise)
    st, obj = phone.answer(scene, "confirm")
    assert st == 200 and obj == {"ok": True}, (st, obj)
    th.join(20)
    assert not th.is_alive(), "the wait was not woken by the answer"
    assert got["obj"] == {"state": "approved", "answer": "confirm"}, got
    assert got["t"] < 5, got
    # Once decided, every wait answers at once.
    assert wait(b, scene) == {"state": "approved", "answer": "confirm"}

    # The phone now holds the mailbox with its code secret.
    accounts = phone.accounts()
    assert len(accounts) == 1, accounts
    acc = accounts[0]
    assert acc["mailbox"] == user and B32_RX.match(acc["secret"]), acc
    assert len(base64.b32decode(acc["secret"] + "=" * (-len(acc["secret"]) % 8))) >= 16
    assert (acc["digits"], acc["period"], acc["algorithm"]) == (6, 30, "SHA1"), acc
    web.secrets_seen.append(acc["secret"])
    assert stranger.accounts() == []
    st, me = b.me()
    assert [f["kind"] for f in me["factors"]] == ["wechat"], me

    # Answered once: any further answer is 409 answered.
    for again in ("confirm", "deny"):
        st, obj = phone.answer(scene, again)
        assert st == 409 and obj["error"] == "answered", (again, st, obj)
    st, obj = stranger.answer(scene, "confirm")
    assert st == 409 and obj["error"] == "answered", (st, obj)
    assert [a["mailbox"] for a in phone.accounts()] == [user]
    assert stranger.accounts() == []

    # Unknown scenes: 410 expired for the phone, "expired" for the page.
    for s in (random_scene(), "short", scene[:-1] + ("A" if scene[-1] != "A" else "B")):
        st, obj = phone.show(s)
        assert st == 410 and obj["error"] == "expired", (s, st, obj)
        st, obj = phone.answer(s, "confirm")
        assert st == 410 and obj["error"] == "expired", (s, st, obj)
    assert wait(b, random_scene()) == {"state": "expired"}
    st, obj = b.request("GET", "/api/scan/%s/wait" % "short")
    assert st == 404, (st, obj)

    # Bound: a second bind needs a change grant; the sign-in asks for WeChat.
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 409 and obj["error"] == "already_bound", (st, obj)
    _, _, login = second_factor(web, tls_ctx, user)
    assert login["push"] is True, login


def test_bind_two_scenes_two_phones(web, wx, tls_ctx):
    """Two bind QRs open at once, confirmed by two WeChat accounts: the
    first binds, the second gets 409 already_bound and its page's scene
    says failed (API.md: nothing bound, the page learns it)."""
    user = "wxrace"
    b = browser_in(web, tls_ctx, user)
    a = Phone(web, tls_ctx, wx).login()
    c = Phone(web, tls_ctx, wx).login()
    # A bind declined on the phone: nothing bound.
    declined = begin_bind(b)["scene"]
    assert a.answer(declined, "deny") == (200, {"ok": True})
    assert wait(b, declined) == {"state": "denied"}
    assert a.accounts() == [] and b.me()[1]["factors"] == []
    first, second = begin_bind(b)["scene"], begin_bind(b)["scene"]
    st, obj = a.answer(first, "confirm")
    assert st == 200, (st, obj)
    st, req = c.show(second)
    assert st == 200 and req["kind"] == "bind" and req["mailbox"] == user, (st, req)
    st, obj = c.answer(second, "confirm")
    assert st == 409 and obj["error"] == "already_bound", (st, obj)
    assert wait(b, second) == {"state": "failed"}
    assert [x["mailbox"] for x in a.accounts()] == [user]
    assert c.accounts() == []
    st, obj = c.answer(second, "confirm")
    assert st == 409 and obj["error"] == "answered", (st, obj)


# ---- sign-in ------------------------------------------------------------

def test_rebind_grant_good_once(web, wx, tls_ctx):
    """A rebind (图 3-6): verified with the bound WeChat, the change grant
    makes QR codes until one of them binds; that binding uses it up, so a
    second QR made with it binds nothing (410 expired, page: failed) and a
    new begin with it is refused."""
    user = "wxrebind"
    b = browser_in(web, tls_ctx, user)
    old, new, late = (Phone(web, tls_ctx, wx).login() for _ in range(3))
    bind(web, b, old, user)
    st, obj = b.request("POST", "/api/verify/begin", {"purpose": "change", "kind": "wechat"})
    assert st == 200 and "wechat" in obj["methods"], (st, obj)
    challenge = obj["challenge"]
    st, obj = b.request("POST", "/api/verify/scan", {"challenge": challenge})
    assert st == 200, (st, obj)
    check_scene(obj)
    verify_scene = obj["scene"]
    # The new account may not answer the verification of the old one.
    st, obj = new.answer(verify_scene, "confirm")
    assert st == 403 and obj["error"] == "wrong_account", (st, obj)
    assert old.answer(verify_scene, "confirm") == (200, {"ok": True})
    assert wait(b, verify_scene) == {"state": "approved", "answer": "confirm"}
    st, obj = b.request("POST", "/api/verify",
                        {"challenge": challenge, "method": "wechat", "scene": verify_scene})
    assert st == 200 and obj["ok"] is True, (st, obj)
    grant = obj["grant"]
    # Two QR codes from one grant (the page refreshed its QR).
    scenes = []
    for _ in range(2):
        st, obj = b.request("POST", "/api/factors/wechat/begin", {"grant": grant})
        assert st == 200, (st, obj)
        check_scene(obj)
        scenes.append(obj["scene"])
    st, req = new.show(scenes[0])
    assert st == 200 and req["kind"] == "bind" and req["mailbox"] == user, (st, req)
    assert new.answer(scenes[0], "confirm") == (200, {"ok": True})
    assert wait(b, scenes[0]) == {"state": "approved", "answer": "confirm"}
    # The grant is used up: the second QR binds nothing.
    st, obj = late.answer(scenes[1], "confirm")
    assert st == 410 and obj["error"] == "expired", (st, obj)
    assert wait(b, scenes[1]) == {"state": "failed"}
    st, obj = b.request("POST", "/api/factors/wechat/begin", {"grant": grant})
    assert st == 403 and obj["error"] == "verification_required", (st, obj)
    assert [x["mailbox"] for x in new.accounts()] == [user]
    assert old.accounts() == [] and late.accounts() == []
    # A verification scene is no bind scene: its approval is spent, and a
    # grant-less begin is refused now that WeChat is bound.
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 409 and obj["error"] == "already_bound", (st, obj)


def test_me_and_login_flags(web, wx, tls_ctx):
    """The page learns from /api/me whether WeChat can be bound here and
    from the sign-in's second step whether a request can be pushed."""
    user = "wxflags"
    b = browser_in(web, tls_ctx, user)
    st, me = b.me()
    assert st == 200 and me["wechat"] is True and me["push"] is True, me
    bind(web, b, Phone(web, tls_ctx, wx).login(), user)
    _, _, obj = second_factor(web, tls_ctx, user)
    assert obj["push"] is True, obj


def test_wrong_account(web, wx, tls_ctx):
    user = "wxwrong"
    owner = Phone(web, tls_ctx, wx).login()
    other = Phone(web, tls_ctx, wx).login()
    bind(web, browser_in(web, tls_ctx, user), owner, user)

    b, challenge, _ = second_factor(web, tls_ctx, user)
    scene = scan(b, challenge)["scene"]
    st, obj = other.show(scene)
    assert st == 403 and obj["error"] == "wrong_account", (st, obj)
    for answer in ("trust", "temporary", "deny", "maybe"):
        st, obj = other.answer(scene, answer)
        assert st == 403 and obj["error"] == "wrong_account", (answer, st, obj)
    assert other.accounts() == []
    # Still pending: the right phone sees and answers it.
    st, req = owner.show(scene)
    assert st == 200 and req["state"] == "pending", (st, req)
    assert req["kind"] == "signin" and req["mailbox"] == user, req
    st, obj = owner.answer(scene, "temporary")
    assert st == 200 and obj == {"ok": True}, (st, obj)
    assert wait(b, scene) == {"state": "approved", "answer": "temporary"}
    st, obj = b.request("POST", "/api/login/verify",
                        {"challenge": challenge, "method": "wechat", "scene": scene})
    assert st == 200 and obj["state"] == "ok", (st, obj)
    st, me = b.me()
    assert st == 200 and me["user"] == user, me


def test_signin_by_scan(web, wx, tls_ctx):
    user = "wxscan"
    phone = Phone(web, tls_ctx, wx).login()
    bind(web, browser_in(web, tls_ctx, user), phone, user)

    # trust: the device cookie, whatever the page's trust flag says.
    b1, ch1, login = second_factor(web, tls_ctx, user)
    assert login["push"] is True
    obj = scan(b1, ch1)
    check_png_qr(obj)
    scene = obj["scene"]
    st, req = phone.show(scene)
    assert st == 200 and req["kind"] == "signin" and req["mailbox"] == user, (st, req)
    assert "numbers" not in req, req
    st, obj = b1.request("POST", "/api/login/verify",
                         {"challenge": ch1, "method": "wechat", "scene": scene})
    assert st == 409 and obj["error"] == "pending", (st, obj)
    st, obj = phone.answer(scene, "confirm")
    assert st == 400 and obj["error"] == "bad_answer", (st, obj)
    st, obj = phone.answer(scene, "trust")
    assert st == 200 and obj == {"ok": True}, (st, obj)
    assert wait(b1, scene) == {"state": "approved", "answer": "trust"}
    st, obj = b1.request("POST", "/api/login/verify",
                         {"challenge": ch1, "method": "wechat", "scene": scene,
                          "trust": False})
    assert st == 200 and obj["state"] == "ok", (st, obj)
    assert "mfa_session" in b1.cookies and "mfa_device" in b1.cookies, b1.cookies
    assert b1.me()[1]["user"] == user
    assert wait(b1, scene) == {"state": "used"}
    # Used once: not again, neither on the phone nor for another sign-in.
    st, obj = phone.show(scene)
    assert st == 410 and obj["error"] == "expired", (st, obj)
    b2, ch2, _ = second_factor(web, tls_ctx, user)
    st, obj = b2.request("POST", "/api/login/verify",
                         {"challenge": ch2, "method": "wechat", "scene": scene})
    assert st == 410 and obj["error"] == "expired", (st, obj)

    # The trusted browser signs in with the password alone.
    b3 = Browser(web, tls_ctx)
    b3.cookies["mfa_device"] = b1.cookies["mfa_device"]
    st, obj = b3.login(user, USERS[user])
    assert st == 200 and obj["state"] == "ok", (st, obj)

    # temporary: no device cookie, even when the page asks for trust.
    scene = scan(b2, ch2)["scene"]
    st, obj = phone.answer(scene, "temporary")
    assert st == 200, (st, obj)
    assert wait(b2, scene) == {"state": "approved", "answer": "temporary"}
    st, obj = b2.request("POST", "/api/login/verify",
                         {"challenge": ch2, "method": "wechat", "scene": scene,
                          "trust": True})
    assert st == 200 and obj["state"] == "ok", (st, obj)
    assert "mfa_session" in b2.cookies and "mfa_device" not in b2.cookies, b2.cookies
    assert b2.me()[1]["user"] == user

    # deny: the page learns it, and the verify step refuses.
    b4, ch4, _ = second_factor(web, tls_ctx, user)
    scene = scan(b4, ch4)["scene"]
    st, obj = phone.answer(scene, "deny")
    assert st == 200, (st, obj)
    assert wait(b4, scene) == {"state": "denied"}
    st, obj = b4.request("POST", "/api/login/verify",
                         {"challenge": ch4, "method": "wechat", "scene": scene})
    assert st == 403 and obj["error"] == "denied", (st, obj)
    assert "mfa_session" not in b4.cookies
    # A scene belongs to its own challenge.
    b5, ch5, _ = second_factor(web, tls_ctx, user)
    scene = scan(b5, ch5)["scene"]
    assert phone.answer(scene, "temporary")[0] == 200
    st, obj = b5.request("POST", "/api/login/verify",
                         {"challenge": ch4, "method": "wechat", "scene": scene})
    assert st == 410 and obj["error"] == "expired", (st, obj)
    st, obj = b5.request("POST", "/api/login/verify",
                         {"challenge": ch5, "method": "wechat", "scene": scene})
    assert st == 200 and obj["state"] == "ok", (st, obj)


def test_signin_by_code(web, wx, tls_ctx):
    user = "wxcode"
    phone = Phone(web, tls_ctx, wx).login()
    bind(web, browser_in(web, tls_ctx, user), phone, user)
    [acc] = phone.accounts()
    secret = acc["secret"]

    b, ch, _ = second_factor(web, tls_ctx, user)
    bad = wrong_code(secret)
    st, obj = b.request("POST", "/api/login/verify",
                        {"challenge": ch, "method": "wechat", "code": bad, "trust": True})
    assert st == 401 and obj["error"] == "bad_code" and obj["attempts_left"] == 4, (st, obj)
    assert "mfa_session" not in b.cookies
    code, left = phone_sim.totp(secret)
    if left < 3:                       # about to roll over: take the next one
        time.sleep(left + 0.5)
        code, _ = phone_sim.totp(secret)
    web.secrets_seen.append(code)
    st, obj = b.request("POST", "/api/login/verify",
                        {"challenge": ch, "method": "wechat", "code": code, "trust": True})
    assert st == 200 and obj["state"] == "ok", (st, obj)
    assert "mfa_session" in b.cookies and "mfa_device" in b.cookies, b.cookies
    assert b.me()[1]["user"] == user
    # A code is good once.
    b2, ch2, _ = second_factor(web, tls_ctx, user)
    st, obj = b2.request("POST", "/api/login/verify",
                         {"challenge": ch2, "method": "wechat", "code": code})
    assert st == 401 and obj["error"] == "bad_code", (st, obj)
    # The code is this binding's, not a TOTP factor's.
    st, obj = b2.request("POST", "/api/login/verify",
                         {"challenge": ch2, "method": "totp", "code": bad})
    assert st == 401 and obj["error"] == "bad_code", (st, obj)
    assert "mfa_session" not in b2.cookies


def test_push(web, wx, tls_ctx):
    user = "wxpush"
    phone = Phone(web, tls_ctx, wx).login()
    bind(web, browser_in(web, tls_ctx, user), phone, user)

    def push(b, ch):
        st, obj = b.request("POST", "/api/login/push", {"challenge": ch})
        assert st == 200, (st, obj)
        check_scene(obj, number=True)
        assert 10 <= obj["number"] <= 99, obj
        assert "qr_img" not in obj and "qr_svg" not in obj, obj
        return obj["scene"], obj["number"]

    def message_for(scene):
        def find():
            return [m for m in wx.messages()
                    if phone_sim.scene_from_text(m.get("page", "")) == scene]
        [msg] = wait_until(find, 10, 0.05, "the subscribe message")
        return msg

    b, ch, login = second_factor(web, tls_ctx, user)
    assert login["push"] is True, login
    scene, number = push(b, ch)
    msg = message_for(scene)
    assert msg["touser"] == phone.openid and msg["template_id"] == DEFAULT_TEMPLATE, msg
    assert msg["page"] == "%s?scene=%s" % (PAGE, scene), msg
    call = wx.calls(path=SUBSCRIBE)[-1]
    assert call["errcode"] == 0 and call["params"]["access_token"] == "***", call

    st, req = phone.show(scene)
    assert st == 200 and req["kind"] == "signin" and req["mailbox"] == user, (st, req)
    nums = req["numbers"]
    assert len(nums) == 3 and len(set(nums)) == 3 and number in nums, (number, req)
    assert all(isinstance(n, int) and 10 <= n <= 99 for n in nums), nums
    assert phone.show(scene)[1]["numbers"] == nums     # the same choice every time
    # Another WeChat account may not even look.
    st, obj = Phone(web, tls_ctx, wx).login().show(scene)
    assert st == 403 and obj["error"] == "wrong_account", (st, obj)

    # A wrong pick denies the request.
    wrong = [n for n in nums if n != number][0]
    st, obj = phone.answer(scene, "trust", number=wrong)
    assert st == 200 and obj == {"ok": True}, (st, obj)
    assert wait(b, scene) == {"state": "denied"}
    st, obj = b.request("POST", "/api/login/verify",
                        {"challenge": ch, "method": "wechat", "scene": scene})
    assert st == 403 and obj["error"] == "denied", (st, obj)
    st, obj = phone.answer(scene, "trust", number=number)
    assert st == 409 and obj["error"] == "answered", (st, obj)

    # No number at all: a no as well.
    scene, number = push(b, ch)
    message_for(scene)
    st, obj = phone.answer(scene, "temporary")
    assert st == 200, (st, obj)
    assert wait(b, scene) == {"state": "denied"}

    # The right pick signs in.
    scene, number = push(b, ch)
    message_for(scene)
    st, obj = phone.answer(scene, "temporary", number=number)
    assert st == 200, (st, obj)
    assert wait(b, scene) == {"state": "approved", "answer": "temporary"}
    st, obj = b.request("POST", "/api/login/verify",
                        {"challenge": ch, "method": "wechat", "scene": scene})
    assert st == 200 and obj["state"] == "ok", (st, obj)
    assert "mfa_device" not in b.cookies
    assert b.me()[1]["user"] == user

    # The user refused the subscribe messages (43101): the page still gets
    # its number; the request just goes unanswered.
    wx.refuse(phone.openid)
    b2, ch2, _ = second_factor(web, tls_ctx, user)
    scene, number = push(b2, ch2)
    wait_until(lambda: any(c["errcode"] == 43101 and c["body"]["touser"] == phone.openid
                           for c in wx.calls(path=SUBSCRIBE)), 10, 0.05, "the refused send")
    assert not [m for m in wx.messages() if scene in m.get("page", "")]
    assert phone.show(scene)[1]["state"] == "pending"


# ---- QR modes, push off, WeChat down ------------------------------------

def test_link_qr_and_push_off(make_mfagate, dc, wx, tls_ctx):
    user = "wxlink"
    mg = make_mfagate(overrides={"wechat": wx.config(qr="link", template_id=None)},
                      backend=dc, listen=LISTEN)
    b = browser_in(mg, tls_ctx, user)
    st, me = b.me()
    assert me["wechat"] is True and me["push"] is False, me
    n = len(wx.calls(path=WXACODE))
    obj = begin_bind(b)
    assert "qr_img" not in obj, obj
    assert obj["qr_svg"].startswith("<svg") and obj["qr_svg"].rstrip().endswith("</svg>"), \
        obj["qr_svg"][:80]
    assert len(wx.calls(path=WXACODE)) == n       # made here, WeChat not asked
    phone = Phone(mg, tls_ctx, wx).login()
    assert phone.answer(obj["scene"], "confirm") == (200, {"ok": True})
    assert wait(b, obj["scene"]) == {"state": "approved", "answer": "confirm"}

    b2, ch, login = second_factor(mg, tls_ctx, user)
    assert login["push"] is False, login
    st, obj = b2.request("POST", "/api/login/push", {"challenge": ch})
    assert st == 404 and obj["error"] == "push_off", (st, obj)
    assert wx.messages() == []
    obj = scan(b2, ch)
    assert "qr_img" not in obj and obj["qr_svg"].startswith("<svg"), obj
    assert len(wx.calls(path=WXACODE)) == n
    assert phone.answer(obj["scene"], "trust") == (200, {"ok": True})
    st, obj2 = b2.request("POST", "/api/login/verify",
                          {"challenge": ch, "method": "wechat", "scene": obj["scene"]})
    assert st == 200 and obj2["state"] == "ok", (st, obj2)


def test_qr_failure_keeps_nothing(web, wx, tls_ctx):
    """WeChat refusing the mini-program code: 503, and the scene it was
    asked for is not kept (API.md: "nothing is kept"), so a phone cannot
    answer it -- a bind scene nobody was shown would otherwise bind any
    WeChat account that confirms it.  (Fails while web/api_scan.c makes the
    scene before asking WeChat for its QR and leaves it on failure.)"""
    user = "wxqrfail"
    b = browser_in(web, tls_ctx, user)
    phone = Phone(web, tls_ctx, wx).login()
    for mode in ("ratelimit", "http500"):
        wx.fail(mode, count=1, path=WXACODE)
        st, obj = b.request("POST", "/api/factors/wechat/begin", {})
        assert st == 503 and obj["error"] == "wechat_unavailable", (mode, st, obj)
        call = wx.calls(path=WXACODE)[-1]
        lost = call["body"]["scene"]
        st, obj = phone.show(lost)
        assert st == 410 and obj["error"] == "expired", (mode, st, obj)
        st, obj = phone.answer(lost, "confirm")
        assert st == 410 and obj["error"] == "expired", (mode, st, obj)
    assert phone.accounts() == []
    assert scene_rows(web, user) == 0
    # WeChat back: the next begin works.
    obj = begin_bind(b)
    check_png_qr(obj)
    assert scene_rows(web, user) == 1


def test_wechat_unreachable(make_mfagate, dc, tls_ctx, tmp_path):
    user = "wxdown"
    down = WechatStandin(str(tmp_path / "standin-down")).start()
    try:
        mg = make_mfagate(overrides={"wechat": down.config(timeout="1s")},
                          backend=dc, listen=LISTEN)
        b = browser_in(mg, tls_ctx, user)
        phone = Phone(mg, tls_ctx, down)
        # WeChat not answering within [wechat] timeout.
        down.fail("hang", count=1, path=CODE2SESSION)
        code = down.mint_code(phone.openid)
        t0 = time.monotonic()
        st, obj = phone.request("POST", "/api/mp/login", {"code": code})
        assert st == 503 and obj["error"] == "wechat_unavailable", (st, obj)
        assert time.monotonic() - t0 < 5
        down.fail("none")
        code = down.mint_code(phone.openid)
    finally:
        down.stop()
    # Stopped altogether: connection refused.
    st, obj = phone.request("POST", "/api/mp/login", {"code": code})
    assert st == 503 and obj["error"] == "wechat_unavailable", (st, obj)
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 503 and obj["error"] == "wechat_unavailable", (st, obj)
    st, me = b.me()
    assert me["factors"] == [], me
    # "Nothing is kept" (API.md): no scene behind the QR that never was.
    assert scene_rows(mg, user) == 0


def test_expired_token_retried_once(web, wx, tls_ctx):
    user = "wxtoken"
    b = browser_in(web, tls_ctx, user)
    check_png_qr(begin_bind(b))            # a token is cached now
    for invalid in (False, True):
        wx.reset()
        wx.expire_tokens(invalid=invalid)
        obj = begin_bind(b)
        check_png_qr(obj)
        calls = [c for c in wx.calls() if c["path"] in (WXACODE, TOKEN)]
        assert [(c["path"], c["errcode"]) for c in calls] == [
            (WXACODE, 40001 if invalid else 42001), (TOKEN, 0), (WXACODE, 0)], calls
        assert calls[-1]["body"]["scene"] == obj["scene"]
    # Once only: a token refused twice in a row is WeChat being unavailable.
    wx.reset()
    wx.fail("badtoken", count=2, path=WXACODE)
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 503 and obj["error"] == "wechat_unavailable", (st, obj)
    assert [c["errcode"] for c in wx.calls(path=WXACODE)] == [40001, 40001]
    # One refusal is retried.
    wx.reset()
    wx.fail("badtoken", count=1, path=WXACODE)
    check_png_qr(begin_bind(b))
    assert [c["errcode"] for c in wx.calls(path=WXACODE)] == [40001, 0]


def test_wechat_off(make_mfagate, dc, tls_ctx):
    mg = make_mfagate(backend=dc, listen=LISTEN)
    b = browser_in(mg, tls_ctx, "wxoff")
    st, me = b.me()
    assert me["wechat"] is False and me["push"] is False, me
    st, obj = b.request("POST", "/api/factors/wechat/begin", {})
    assert st == 404 and obj["error"] == "wechat_off", (st, obj)
    phone = Phone(mg, tls_ctx, None)
    phone.token = "A" * 43
    for method, path, body in (("POST", "/api/mp/login", {"code": "abc"}),
                               ("GET", "/api/mp/accounts", None),
                               ("GET", "/api/mp/requests/" + random_scene(), None),
                               ("POST", "/api/mp/requests/" + random_scene(),
                                {"answer": "deny"}),
                               ("GET", "/api/scan/%s/wait" % random_scene(), None)):
        st, obj = phone.request(method, path, body)
        assert st == 404 and obj["error"] == "wechat_off", (path, st, obj)


def test_wechat_call_outlived_by_client_and_server(make_mfagate, dc, tls_ctx, tmp_path):
    """A WeChat call still under way when the client goes away (the job is
    cancelled) or the server stops (the request is answered 503
    shutting_down): no crash, no leak (the ASan build checks), clean exit."""
    slow = WechatStandin(str(tmp_path / "standin-slow")).start()
    try:
        mg = make_mfagate(overrides={"wechat": slow.config(timeout="10s")},
                          backend=dc, listen=LISTEN)
        b = browser_in(mg, tls_ctx, "wxabort")
        phone = Phone(mg, tls_ctx, slow)

        def started(path, n):
            wait_until(lambda: len(slow.calls(path=path)) >= n, 10, 0.05, "the call to " + path)

        def send_and_leave(path, body, headers):
            conn = http.client.HTTPSConnection("127.0.0.1", mg.ports["https"],
                                               context=tls_ctx, timeout=10)
            h = {"Host": "mail.example.test", "Content-Type": "application/json"}
            h.update(headers)
            conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
            return conn

        # The client goes away while WeChat has not answered.
        slow.fail("hang", count=10, path=CODE2SESSION)
        conn = send_and_leave("/api/mp/login", {"code": slow.mint_code(phone.openid)}, {})
        started(CODE2SESSION, 1)
        conn.close()
        slow.fail("hang", count=10, path=WXACODE)
        conn = send_and_leave("/api/factors/wechat/begin", {},
                              {"Cookie": "; ".join("%s=%s" % kv for kv in b.cookies.items()),
                               "X-CSRF-Token": b.csrf})
        started(WXACODE, 1)
        conn.close()
        time.sleep(0.3)
        slow.fail("none")            # lets the hung answers go (to nobody)
        phone.login()                # the server goes on
        check_png_qr(begin_bind(b))

        # The server stops while a login and a begin wait for WeChat.
        slow.fail("hang", count=10)
        got = {}

        def call(name, fn):
            try:
                got[name] = fn()
            except Exception as e:     # noqa: BLE001  (reported below)
                got[name] = e

        n_login, n_qr = len(slow.calls(path=CODE2SESSION)), len(slow.calls(path=WXACODE))
        code = slow.mint_code(phone.openid)
        threads = [
            threading.Thread(target=call, daemon=True, args=(
                "login", lambda: phone.request("POST", "/api/mp/login", {"code": code},
                                               auth=False))),
            threading.Thread(target=call, daemon=True, args=(
                "begin", lambda: b.request("POST", "/api/factors/wechat/begin", {})))]
        for th in threads:
            th.start()
        started(CODE2SESSION, n_login + 1)
        started(WXACODE, n_qr + 1)
        t0 = time.monotonic()
        mg.stop()                    # exit status 0, no sanitizer report
        assert time.monotonic() - t0 < 8
        for th in threads:
            th.join(10)
        for name in ("login", "begin"):
            st, obj = got[name]
            assert st == 503 and obj["error"] == "shutting_down", (name, got[name])
    finally:
        slow.fail("none")
        slow.stop()
