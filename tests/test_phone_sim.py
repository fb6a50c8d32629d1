"""Tests of tests/phone_sim.py against a small stdlib fake of /api/mp/
(web/API.md, "The mini program") over HTTPS with a self-signed certificate
made by certs/mkcert.sh, and the real WeChat stand-in (tests/wechat_standin.py,
in this process) for --standin/--openid and inbox.  The fake only exists to
drive the simulator's code paths; the end-to-end path is in the browser tests
(tests/browser/tests/wechat-*.test.mjs) and scripts/demo.sh.

    /usr/bin/python3 -m pytest -q tests/test_phone_sim.py
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SIM = os.path.join(HERE, "phone_sim.py")
sys.path.insert(0, HERE)
import phone_sim  # noqa: E402
import wechat_standin  # noqa: E402

RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


class Fake:
    def __init__(self):
        self.tokens, self.issued, self.wechat_down = set(), 0, False
        self.scenes, self.log = {}, []
        self.standin = None                     # a StandIn: login asks it, as mfagate does
        self.token_openid = {}
        self.accounts = [{"mailbox": "alice@example.com", "secret": RFC_SECRET,
                          "digits": 6, "period": 30, "algorithm": "SHA1"}]


def make_handler(fake):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, obj):
            b = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            self.wfile.write(b)

        def _handle(self, method):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            body = {}
            if method == "POST":
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    return self._send(415, {"error": "unsupported_media_type"})
                body = json.loads(raw) if raw else {}
            auth = self.headers.get("Authorization")
            fake.log.append((method, self.path, auth, body))
            if self.path == "/api/mp/login" and method == "POST":
                if fake.wechat_down:
                    return self._send(503, {"error": "wechat_unavailable", "message": "WeChat down"})
                if body.get("code") == "bad":
                    return self._send(401, {"error": "bad_code", "message": "invalid code"})
                openid = None
                if fake.standin is not None:    # jscode2session, as mfagate asks WeChat
                    q = urllib.parse.urlencode({
                        "appid": wechat_standin.DEFAULT_APPID, "secret": wechat_standin.DEFAULT_SECRET,
                        "js_code": body.get("code", ""), "grant_type": "authorization_code"})
                    with urllib.request.urlopen("%s/sns/jscode2session?%s" % (
                            standin_base(fake.standin), q), timeout=10) as r:
                        openid = json.loads(r.read()).get("openid")
                    if not openid:
                        return self._send(401, {"error": "bad_code", "message": "invalid code"})
                fake.issued += 1
                tok = "tok%d" % fake.issued
                fake.tokens.add(tok)
                fake.token_openid[tok] = openid
                return self._send(200, {"token": tok, "expires_in": 7200})
            if not auth or not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
                return self._send(401, {"error": "unauthorized"})
            if self.path == "/api/mp/accounts" and method == "GET":
                return self._send(200, {"accounts": fake.accounts})
            if self.path.startswith("/api/mp/requests/"):
                sc = fake.scenes.get(self.path.rsplit("/", 1)[1])
                if not sc or sc.get("answered"):
                    return self._send(410, {"error": "expired", "message": "expired"})
                if sc.get("owner") == "other":
                    return self._send(403, {"error": "wrong_account", "message": "other account"})
                if method == "GET":
                    doc = {k: sc[k] for k in ("kind", "mailbox", "addr", "time", "expires")}
                    if sc.get("number"):
                        doc["numbers"] = sc["numbers"]
                    return self._send(200, doc)
                ok = ["trust", "temporary", "deny"] if sc["kind"] == "signin" else ["confirm", "deny"]
                if body.get("answer") not in ok:
                    return self._send(400, {"error": "bad_request"})
                # number matching (a pushed request): a wrong pick denies
                wrong = sc.get("number") and body.get("number") != sc["number"]
                sc["answered"] = "deny" if wrong else body["answer"]
                return self._send(200, {"ok": True})
            return self._send(404, {"error": "not_found"})

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")
    return H


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    subprocess.run(["bash", os.path.join(ROOT, "certs", "mkcert.sh"), str(d)], check=True,
                   stdout=subprocess.DEVNULL)
    return str(d / "server.crt"), str(d / "server.key")


@pytest.fixture
def fake(cert):
    f = Fake()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(f))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    f.base = "https://127.0.0.1:%d" % srv.server_address[1]
    f.cafile = cert[0]
    yield f
    srv.shutdown()
    srv.server_close()


def standin_base(s):
    return "http://127.0.0.1:%d" % s.port


@pytest.fixture
def standin(fake):
    s = wechat_standin.StandIn().start()
    fake.standin = s
    yield s
    s.stop()


def push_message(s, openid, scene, octet=42):
    """A subscribe message through the stand-in's WeChat API, as mfagate sends it."""
    base = standin_base(s)
    q = urllib.parse.urlencode({"grant_type": "client_credential",
                                "appid": wechat_standin.DEFAULT_APPID,
                                "secret": wechat_standin.DEFAULT_SECRET})
    with urllib.request.urlopen(base + "/cgi-bin/token?" + q, timeout=10) as r:
        tok = json.loads(r.read())["access_token"]
    body = {"touser": openid, "template_id": "tpl", "page": "pages/confirm/confirm?scene=" + scene,
            "miniprogram_state": "formal", "lang": "zh_CN",
            "data": {"character_string1": {"value": "alice@example.com"},
                     "character_string2": {"value": "203.0.113.%d" % octet}}}
    req = urllib.request.Request(base + "/cgi-bin/message/subscribe/send?access_token=" + tok,
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["errcode"] == 0


def sim(fake, tmp_path, *args, code="wx1", env=None):
    cmd = [sys.executable, SIM, "--base", fake.base, "--cafile", fake.cafile,
           "--state", str(tmp_path / "phone.json")]
    if code:
        cmd += ["--code", code]
    e = {k: v for k, v in os.environ.items() if not k.startswith("MFAGATE_PHONE_")}
    e.update(env or {})
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, env=e)


def scene(fake, kind, **kw):
    sid = "Sc%d%s" % (len(fake.scenes) + 1, kind)
    now = int(time.time())
    fake.scenes[sid] = dict(kind=kind, mailbox="alice@example.com", addr="203.0.113.7",
                            time=now - 3, expires=now + 300, **kw)
    return sid


def test_totp_rfc6238_vectors():
    for t, code in [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"),
                    (2000000000, "69279037"), (20000000000, "65353130")]:
        assert phone_sim.totp(RFC_SECRET, t, digits=8)[0] == code
        assert phone_sim.totp(RFC_SECRET, t)[0] == code[2:]
    assert phone_sim.totp(RFC_SECRET, 59) == ("287082", 1)


def test_scan_url():
    for text, want in [("https://mail.example.com/mp?scene=Ab12", "Ab12"),
                       ("https://127.0.0.1:10443/mp/?x=1&scene=Zz9", "Zz9"),
                       ("pages/confirm/confirm?scene=Wx7", "Wx7"),
                       ("http://mail.example.com/mp?scene=Ab12", None),
                       ("https://mail.example.com/login?scene=Ab12", None),
                       ("https://h/mp?scene=" + "a" * 33, None),
                       ("https://h/mp?scene=a-b", None),
                       ("Ab12", None)]:
        assert phone_sim.scene_from_text(text) == want, text
    r = subprocess.run([sys.executable, SIM, "scan-url", "https://h.example/mp?scene=Q1"],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "Q1\n")
    r = subprocess.run([sys.executable, SIM, "scan-url", "https://h.example/x"],
                       capture_output=True, text=True)
    assert r.returncode == 2


def test_login_and_accounts(fake, tmp_path):
    r = sim(fake, tmp_path, "login")
    assert r.returncode == 0, r.stderr
    assert "tok1" not in r.stdout                       # no secrets printed
    st = tmp_path / "phone.json"
    assert oct(st.stat().st_mode & 0o777) == "0o600"
    assert json.loads(st.read_text())["token"] == "tok1"
    assert fake.log[0] == ("POST", "/api/mp/login", None, {"code": "wx1"})
    r = sim(fake, tmp_path, "--time", "59", "accounts", code=None)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "alice@example.com\t287082\t1s\n"
    assert fake.log[-1] == ("GET", "/api/mp/accounts", "Bearer tok1", {})


def test_show_and_answers(fake, tmp_path):
    for kind, answers in [("signin", ["trust", "temporary", "deny"]),
                          ("unbind", ["confirm", "deny"]), ("change", ["confirm", "deny"]),
                          ("bind", ["confirm", "deny"])]:
        for ans in answers:
            sid = scene(fake, kind)
            r = sim(fake, tmp_path, "show", sid)
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith("kind=%s mailbox=alice@example.com addr=203.0.113.7 " % kind)
            r = sim(fake, tmp_path, "answer", "https://x.example/mp?scene=" + sid, ans)
            assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
            assert fake.log[-1][:2] == ("POST", "/api/mp/requests/" + sid)
            assert fake.log[-1][3] == {"answer": ans}
            assert fake.scenes[sid]["answered"] == ans
    # one login for all of it
    assert sum(1 for l in fake.log if l[1] == "/api/mp/login") == 1


def test_errors(fake, tmp_path):
    sid = scene(fake, "signin")
    fake.scenes[sid]["answered"] = "deny"
    r = sim(fake, tmp_path, "show", sid)
    assert r.returncode == 1 and "expired" in r.stderr and "410" in r.stderr
    sid = scene(fake, "signin", owner="other")
    r = sim(fake, tmp_path, "answer", sid, "trust")
    assert r.returncode == 1 and "wrong_account" in r.stderr
    r = sim(fake, tmp_path, "show", "not/a/scene")
    assert r.returncode == 2
    r = sim(fake, tmp_path, "login", code="bad")
    assert r.returncode == 1 and "bad_code" in r.stderr
    fake.wechat_down = True
    (tmp_path / "phone.json").unlink()
    r = sim(fake, tmp_path, "accounts")
    assert r.returncode == 1 and "wechat_unavailable" in r.stderr


def test_relogin_once_on_401(fake, tmp_path):
    assert sim(fake, tmp_path, "login").returncode == 0
    fake.tokens.clear()                                  # the server forgot the token
    fake.log.clear()
    r = sim(fake, tmp_path, "accounts")
    assert r.returncode == 0, r.stderr
    assert [(l[0], l[1], l[2]) for l in fake.log] == [
        ("GET", "/api/mp/accounts", "Bearer tok1"),
        ("POST", "/api/mp/login", None),
        ("GET", "/api/mp/accounts", "Bearer tok2")]
    # without --code: no login to fall back on, the 401 is reported
    fake.tokens.clear()
    r = sim(fake, tmp_path, "accounts", code=None)
    assert r.returncode == 1 and "unauthorized" in r.stderr


def test_unreachable_and_untrusted(fake, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = subprocess.run([sys.executable, SIM, "--base", "https://127.0.0.1:%d" % port,
                        "--state", str(tmp_path / "p.json"), "--code", "x", "login"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "network" in r.stderr
    # without --cafile the self-signed certificate is not trusted
    r = subprocess.run([sys.executable, SIM, "--base", fake.base, "--state", str(tmp_path / "p.json"),
                        "--code", "x", "login"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in r.stderr


def pushed(fake, number=42, numbers=(17, 42, 88)):
    return scene(fake, "signin", number=number, numbers=list(numbers))


def test_pushed_request_number(fake, tmp_path):
    sid = pushed(fake)
    r = sim(fake, tmp_path, "show", sid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kind=signin mailbox=alice@example.com ")
    assert r.stdout.rstrip("\n").endswith(" numbers=17,42,88")
    r = sim(fake, tmp_path, "--json", "show", sid)
    assert json.loads(r.stdout)["numbers"] == [17, 42, 88]
    # a scanned request offers no numbers
    r = sim(fake, tmp_path, "show", scene(fake, "signin"))
    assert r.returncode == 0 and "numbers=" not in r.stdout
    # without --number: refused here, nothing sent (it would be a denial)
    n = len(fake.log)
    r = sim(fake, tmp_path, "answer", sid, "temporary")
    assert r.returncode == 2
    assert "--number" in r.stderr and "17, 42, 88" in r.stderr
    assert [l[0] for l in fake.log[n:]] == ["GET"]
    assert "answered" not in fake.scenes[sid]
    # the number on the page (the option after the command, or before)
    r = sim(fake, tmp_path, "answer", sid, "temporary", "--number", "42")
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    assert fake.log[-1][:2] == ("POST", "/api/mp/requests/" + sid)
    assert fake.log[-1][3] == {"answer": "temporary", "number": 42}
    assert fake.scenes[sid]["answered"] == "temporary"
    sid = pushed(fake)
    r = sim(fake, tmp_path, "answer", "--number=42", sid, "trust")
    assert r.returncode == 0, r.stderr
    assert fake.log[-1][3] == {"answer": "trust", "number": 42}
    # a wrong number is sent as picked: the server denies
    sid = pushed(fake)
    r = sim(fake, tmp_path, "answer", sid, "trust", "--number", "17")
    assert r.returncode == 0, r.stderr
    assert fake.log[-1][3] == {"answer": "trust", "number": 17}
    assert fake.scenes[sid]["answered"] == "deny"
    # deny needs no number, and asks nothing first
    sid = pushed(fake)
    n = len(fake.log)
    r = sim(fake, tmp_path, "answer", sid, "deny")
    assert r.returncode == 0, r.stderr
    assert [(l[0], l[3]) for l in fake.log[n:]] == [("POST", {"answer": "deny"})]
    r = sim(fake, tmp_path, "answer", sid, "trust", "--number", "x")
    assert r.returncode == 2


def test_standin_login_and_inbox(fake, standin, tmp_path):
    sb = standin_base(standin)
    r = sim(fake, tmp_path, "login", "--standin", sb, "--openid", "o-alice", code=None)
    assert r.returncode == 0, r.stderr
    assert "o-alice" in r.stdout
    st = json.loads((tmp_path / "phone.json").read_text())
    assert st["openid"] == "o-alice" and fake.token_openid[st["token"]] == "o-alice"
    # the code was minted by the stand-in and used once by the login
    codes = [c for c in standin.state.calls if c["path"] == "/sns/jscode2session"]
    assert len(codes) == 1 and codes[0]["errcode"] == 0
    assert fake.log[-1][3]["code"] == codes[0]["params"]["js_code"]

    r = sim(fake, tmp_path, "inbox", code=None, env={"MFAGATE_PHONE_STANDIN": sb})
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    push_message(standin, "o-alice", "ScA1", 42)
    push_message(standin, "o-bob", "ScB1", 17)
    push_message(standin, "o-alice", "ScA2", 55)
    # the openid kept by the login; the stand-in from the environment
    r = sim(fake, tmp_path, "inbox", code=None, env={"MFAGATE_PHONE_STANDIN": sb})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split("\t")[0] for l in lines] == ["ScA1", "ScA2"]
    assert "character_string1=alice@example.com" in lines[0] and "character_string2=203.0.113.55" in lines[1]
    r = sim(fake, tmp_path, "inbox", "--standin", sb, "--openid", "o-bob", code=None)
    assert r.stdout.split("\t")[0] == "ScB1"
    r = sim(fake, tmp_path, "--json", "--standin", sb, "inbox", code=None)
    doc = json.loads(r.stdout)
    assert doc["openid"] == "o-alice"
    assert [m["page"] for m in doc["messages"]] == ["pages/confirm/confirm?scene=ScA1",
                                                    "pages/confirm/confirm?scene=ScA2"]
    # the inbox's scene is what show / answer take (also as the message's page)
    sid = pushed(fake)
    r = sim(fake, tmp_path, "answer", "pages/confirm/confirm?scene=" + sid, "temporary",
            "--number", "42", "--standin", sb, code=None)
    assert r.returncode == 0, r.stderr

    # the server forgot the token: one new login with a fresh minted code
    fake.tokens.clear()
    n = len(fake.log)
    r = sim(fake, tmp_path, "accounts", "--standin", sb, code=None)
    assert r.returncode == 0, r.stderr
    assert [l[1] for l in fake.log[n:]] == ["/api/mp/accounts", "/api/mp/login", "/api/mp/accounts"]
    st = json.loads((tmp_path / "phone.json").read_text())
    assert st["openid"] == "o-alice" and fake.token_openid[st["token"]] == "o-alice"
    # another openid with the same state file: a login as that user, not alice's token
    r = sim(fake, tmp_path, "accounts", "--standin", sb, "--openid", "o-bob", code=None)
    assert r.returncode == 0, r.stderr
    st = json.loads((tmp_path / "phone.json").read_text())
    assert st["openid"] == "o-bob" and fake.token_openid[st["token"]] == "o-bob"


def test_standin_errors(fake, standin, tmp_path):
    sb = standin_base(standin)
    r = sim(fake, tmp_path, "inbox", "--openid", "o-a", code=None)
    assert r.returncode == 2 and "--standin" in r.stderr
    r = sim(fake, tmp_path, "inbox", "--standin", sb, code=None)      # no openid anywhere
    assert r.returncode == 2 and "--openid" in r.stderr
    r = sim(fake, tmp_path, "login", "--openid", "o-a", code=None)
    assert r.returncode == 2 and "--standin" in r.stderr
    r = sim(fake, tmp_path, "login", "--standin", sb, "--openid", "bad openid!", code=None)
    assert r.returncode == 1 and "stand-in" in r.stderr
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    down = "http://127.0.0.1:%d" % port
    r = sim(fake, tmp_path, "inbox", "--standin", down, "--openid", "o-a", code=None)
    assert r.returncode == 3 and "stand-in" in r.stderr
    r = sim(fake, tmp_path, "login", "--standin", down, "--openid", "o-a", code=None)
    assert r.returncode == 3 and "stand-in" in r.stderr
