#!/usr/bin/python3
"""phone_sim.py - a command-line stand-in for the WeChat mini program
(邮箱安全助手, web/miniprogram/), over the same /api/mp/ API (web/API.md,
"The mini program").  Python 3 standard library only.

  phone_sim.py --base https://127.0.0.1:10443 --cafile certs/server.crt --code WXCODE login
  phone_sim.py --base ... login --standin URL --openid OID   (stand-in only, below)
  phone_sim.py --base ... accounts              mailbox, current code, seconds left
  phone_sim.py --base ... show SCENE            the request behind a scanned QR (and
                                                the numbers offered, if pushed)
  phone_sim.py --base ... answer SCENE trust|temporary|deny|confirm [--number N]
  phone_sim.py inbox --standin URL [--openid OID]   requests pushed to this phone
  phone_sim.py scan-url URL                     the scene in a scanned link / path

The bearer token is kept in a state file (--state, default
$MFAGATE_PHONE_STATE or ~/.mfagate-phone.json, mode 0600).  With --code, a
missing token or a 401 leads to one login with that code and one retry, as
the mini program does with wx.login.  SCENE may also be a scanned link.
Options may come before or after the command.

A pushed request (the web page's "send to my WeChat") shows a two-digit
number on the page; the phone offers three ("show" prints them) and the
answer must name the one on the page: answer SCENE trust|temporary --number N.
A wrong number denies the request.  Without --number, an answer other than
deny to a pushed request is refused here (exit 2), not sent.

Only with tests/wechat_standin.py (the local stand-in for WeChat's server
API that the tests and scripts/demo.sh run; never real WeChat):
  --standin URL (or $MFAGATE_PHONE_STANDIN) with --openid OID (or
  $MFAGATE_PHONE_OPENID): the phone is the WeChat user OID.  Its wx.login
  codes are minted by the stand-in (POST /_standin/code) whenever a login
  is needed, so --code is not needed; the openid is kept in the state file.
  inbox lists the subscribe messages the stand-in got for that openid
  (GET /_standin/messages), which is how a pushed request reaches the phone:
  one line per message, oldest first, the scene then the message's fields.
On a real phone the code comes from wx.login and the push from WeChat.

Exit status: 0 done; 1 the server (mfagate or the stand-in) said no (error
code on stderr); 2 usage or not a scene; 3 mfagate or the stand-in not
reachable.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import ssl
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SCENE_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")


class ApiError(Exception):
    def __init__(self, code, status=0, message=""):
        super().__init__(message or code)
        self.code, self.status, self.message = code, status, message or code


# ---- scenes (same rules as web/miniprogram/lib/scene.js) ----------------

def _is_scene(s):
    return isinstance(s, str) and bool(SCENE_RE.match(s))


def _query_scene(query):
    for part in query.split("&"):
        k, eq, v = part.partition("=")
        try:
            if urllib.parse.unquote_plus(k, errors="strict") == "scene":
                v = urllib.parse.unquote_plus(v, errors="strict")
                return v if _is_scene(v) else None
        except UnicodeDecodeError:
            return None
    return None


def scene_from_text(text):
    """The scene in a scanned https://HOST/mp?scene=X link or a mini-program
    code's path pages/...?scene=X; None for anything else."""
    if not isinstance(text, str):
        return None
    t = text.strip()
    m = re.match(r"^/?pages/[A-Za-z0-9_/-]+\?([^#]*)$", t)
    if m:
        return _query_scene(m.group(1))
    m = re.match(r"^https://([^/?#@\s]+)/mp/?\?([^#\s]*)(#\S*)?$", t, re.I)
    if m:
        return _query_scene(m.group(2))
    return None


def scene_arg(arg):
    """A SCENE argument: a bare scene, or a link / path holding one."""
    if _is_scene(arg):
        return arg
    return scene_from_text(arg)


# ---- codes (RFC 6238, SHA-1) --------------------------------------------

def totp(secret_b32, now=None, digits=6, period=30):
    s = re.sub(r"[\s=-]", "", secret_b32).upper()
    key = base64.b32decode(s + "=" * (-len(s) % 8))
    t = int(time.time() if now is None else now)
    h = hmac.new(key, struct.pack(">Q", t // period), hashlib.sha1).digest()
    o = h[19] & 0x0F
    code = (struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % (10 ** digits)
    return str(code).zfill(digits), period - t % period


# ---- the client ---------------------------------------------------------

def _http_json(method, url, body=None, headers=None, timeout=10, ctx=None, what=None):
    """One JSON request; (status, parsed body or None).  ApiError("network")
    if the host cannot be reached."""
    data = None
    hdrs = {"Accept": "application/json"}
    hdrs.update(headers or {})
    if method != "GET":
        data = json.dumps(body or {}).encode()
        hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ApiError("network", 0, "cannot reach %s: %s" % (what or url, reason))
    try:
        doc = json.loads(raw.decode("utf-8")) if raw else None
    except ValueError:
        doc = None
    return status, doc


class Standin:
    """The control API of tests/wechat_standin.py (the stand-in for WeChat's
    server API): what WeChat itself does for a real phone."""

    def __init__(self, base, timeout=10):
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.ctx = ssl.create_default_context() if self.base.startswith("https:") else None

    def _call(self, method, path, body=None):
        status, doc = _http_json(method, self.base + path, body, timeout=self.timeout,
                                 ctx=self.ctx, what="the WeChat stand-in at " + self.base)
        if status != 200 or not isinstance(doc, dict):
            err = doc.get("error") if isinstance(doc, dict) else None
            raise ApiError("standin", status, "the WeChat stand-in said %s%s" % (
                "HTTP %d" % status, ": %s" % err if err else ""))
        return doc

    def mint_code(self, openid):
        """A wx.login code for openid (single use, 5 minutes)."""
        doc = self._call("POST", "/_standin/code", {"openid": openid})
        if not isinstance(doc.get("code"), str) or not doc["code"]:
            raise ApiError("standin", 200, "the WeChat stand-in gave no code")
        return doc["code"]

    def messages(self, openid=None):
        """The subscribe messages sent (to openid only, if given), oldest first."""
        msgs = self._call("GET", "/_standin/messages").get("messages")
        if not isinstance(msgs, list):
            raise ApiError("standin", 200, "the WeChat stand-in gave no message list")
        return [m for m in msgs if isinstance(m, dict)
                and (openid is None or m.get("touser") == openid)]


def message_scene(msg):
    """The scene a subscribe message opens (its page is
    pages/confirm/confirm?scene=<scene>), or None."""
    page = msg.get("page") if isinstance(msg, dict) else None
    return scene_from_text(page) if isinstance(page, str) else None


class Phone:
    def __init__(self, base, cafile=None, state=None, code=None, timeout=10,
                 standin=None, openid=None):
        self.base = base.rstrip("/")
        self.state_path = state
        self.code = code
        self.timeout = timeout
        self.standin = standin      # a Standin that mints codes for openid
        self.openid = openid
        self.ctx = None
        if self.base.startswith("https:"):
            self.ctx = ssl.create_default_context(cafile=cafile)

    # token storage
    def _load(self):
        try:
            with open(self.state_path) as f:
                st = json.load(f)
        except (OSError, ValueError, TypeError):
            return {}
        return st if isinstance(st, dict) else {}

    def token(self):
        st = self._load()
        if st.get("base") != self.base or not st.get("token"):
            return None
        if self.openid and st.get("openid") and st["openid"] != self.openid:
            return None         # another WeChat user's token
        if st.get("expires_at") and st["expires_at"] <= time.time():
            return None
        return st["token"]

    def _save(self, token, expires_in, openid=None):
        st = {"base": self.base, "token": token}
        if openid:
            st["openid"] = openid
        if isinstance(expires_in, (int, float)) and expires_in > 0:
            st["expires_at"] = time.time() + max(expires_in - 60, 1)
        fd = os.open(self.state_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(st, f)

    def _forget(self):
        try:
            os.unlink(self.state_path)
        except OSError:
            pass

    def _raw(self, method, path, body=None, token=None):
        headers = {"Authorization": "Bearer " + token} if token else None
        return _http_json(method, self.base + path, body, headers, self.timeout, self.ctx,
                          what=self.base)

    @staticmethod
    def _error(status, doc):
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return ApiError(doc["error"], status, doc.get("message") or doc["error"])
        return ApiError("server", status, "HTTP %d" % status)

    def can_login(self):
        return bool(self.code or (self.standin and self.openid))

    def login(self, code=None):
        code = code or self.code
        openid = None
        if not code and self.standin and self.openid:
            code, openid = self.standin.mint_code(self.openid), self.openid
        if not code:
            raise ApiError("no_code", 0, "not logged in; pass --code WXCODE "
                           "(or, with the WeChat stand-in, --standin URL --openid OID)")
        status, doc = self._raw("POST", "/api/mp/login", {"code": code})
        if status != 200:
            raise self._error(status, doc)
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str) or not doc["token"]:
            raise ApiError("server", status, "login answer without a token")
        self._save(doc["token"], doc.get("expires_in"), openid or self.openid)
        return doc

    def call(self, method, path, body=None):
        tok = self.token()
        relogged = False
        if not tok:
            self.login()
            tok, relogged = self.token(), True
        status, doc = self._raw(method, path, body, tok)
        if status == 401 and not relogged and self.can_login():
            self._forget()
            self.login()
            status, doc = self._raw(method, path, body, self.token())
        if status == 401:
            self._forget()
        if not 200 <= status <= 299:
            raise self._error(status, doc)
        return doc

    def accounts(self):
        doc = self.call("GET", "/api/mp/accounts")
        if not isinstance(doc, dict) or not isinstance(doc.get("accounts"), list):
            raise ApiError("server", 200, "accounts answer without a list")
        return doc["accounts"]

    def show(self, scene):
        return self.call("GET", "/api/mp/requests/" + scene)

    def answer(self, scene, answer, number=None):
        body = {"answer": answer}
        if number is not None:
            body["number"] = number
        doc = self.call("POST", "/api/mp/requests/" + scene, body)
        if not isinstance(doc, dict) or doc.get("ok") is not True:
            raise ApiError("server", 200, "answer not acknowledged")
        return doc


def _state_openid(path):
    """The openid a state file was logged in as (with --standin --openid)."""
    try:
        with open(path) as f:
            st = json.load(f)
    except (OSError, ValueError, TypeError):
        return None
    v = st.get("openid") if isinstance(st, dict) else None
    return v if isinstance(v, str) and v else None


def _fmt_time(t):
    if not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def _numbers(doc):
    """The numbers a pushed request offers, or None for a scanned one."""
    nums = doc.get("numbers") if isinstance(doc, dict) else None
    if isinstance(nums, list) and nums and all(isinstance(n, int) for n in nums):
        return nums
    return None


def _message_line(msg):
    """inbox: the scene, then the message's fields as WeChat would show them."""
    fields = []
    data = msg.get("data")
    if isinstance(data, dict):
        for k, v in data.items():
            val = v.get("value") if isinstance(v, dict) else v
            fields.append("%s=%s" % (k, val))
    return "%s\t%s" % (message_scene(msg) or "-", " ".join(fields) or "-")


# Options accepted before or after the command (argparse.SUPPRESS: a value
# given before the command is not reset by the command's own defaults).
_OPTIONS = [
    (("--base",), dict(help="mfagate's web origin, e.g. https://127.0.0.1:10443")),
    (("--cafile",), dict(help="CA / self-signed certificate to trust (PEM)")),
    (("--code",), dict(help="the wx.login code to log in with (a test WeChat stand-in's code)")),
    (("--standin",), dict(help="the WeChat stand-in's URL (tests/wechat_standin.py; never real "
                               "WeChat); default $MFAGATE_PHONE_STANDIN")),
    (("--openid",), dict(help="with --standin: the WeChat user this phone is; default "
                              "$MFAGATE_PHONE_OPENID, or the one kept in the state file")),
    (("--state",), dict(help="token file (default $MFAGATE_PHONE_STATE or ~/.mfagate-phone.json)")),
    (("--json",), dict(action="store_true", help="print the server's JSON")),
    (("--time",), dict(type=float, help="accounts: compute codes at this epoch second")),
    (("--timeout",), dict(type=float, help="seconds per request (default 10)")),
]


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    for names, kw in _OPTIONS:
        common.add_argument(*names, default=argparse.SUPPRESS, **kw)
    p = argparse.ArgumentParser(prog="phone_sim.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], parents=[common],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("login", parents=[common], help="log in (wx.login code -> token)")
    sub.add_parser("accounts", parents=[common], help="bound mailboxes and their codes")
    s = sub.add_parser("show", parents=[common], help="the request behind a scene")
    s.add_argument("scene")
    s = sub.add_parser("answer", parents=[common], help="answer a request")
    s.add_argument("scene")
    s.add_argument("answer", choices=["trust", "temporary", "deny", "confirm"])
    s.add_argument("--number", type=int, default=argparse.SUPPRESS,
                   help="a pushed request: the number the web page shows")
    sub.add_parser("inbox", parents=[common],
                   help="requests pushed to this phone (the WeChat stand-in's messages)")
    s = sub.add_parser("scan-url", parents=[common], help="the scene in a scanned link")
    s.add_argument("url")
    return p


def main(argv=None):
    p = _parser()
    a = p.parse_args(argv)
    env = os.environ
    defaults = {
        "base": None, "cafile": None, "code": None, "json": False, "time": None,
        "timeout": 10.0, "number": None,
        "standin": env.get("MFAGATE_PHONE_STANDIN") or None,
        "openid": env.get("MFAGATE_PHONE_OPENID") or None,
        "state": env.get("MFAGATE_PHONE_STATE") or os.path.expanduser("~/.mfagate-phone.json"),
    }
    for k, v in defaults.items():
        if not hasattr(a, k):
            setattr(a, k, v)

    if a.cmd == "scan-url":
        sc = scene_from_text(a.url)
        if not sc:
            print("error: not a Mail Security Assistant QR code", file=sys.stderr)
            return 2
        print(sc)
        return 0

    standin = Standin(a.standin, a.timeout) if a.standin else None
    try:
        if a.cmd == "inbox":
            if standin is None:
                p.error("inbox needs --standin URL (the WeChat stand-in) or $MFAGATE_PHONE_STANDIN")
            openid = a.openid or _state_openid(a.state)
            if not openid:
                p.error("inbox needs --openid OID (or a state file from login --openid)")
            msgs = standin.messages(openid)
            if a.json:
                print(json.dumps({"openid": openid, "messages": msgs}, ensure_ascii=False))
            else:
                for m in msgs:
                    print(_message_line(m))
            return 0

        if not a.base:
            p.error("--base is required for " + a.cmd)
        if a.openid and not standin and a.cmd == "login" and not a.code:
            p.error("--openid needs --standin URL (it mints the login code)")
        # With the stand-in, the phone is a WeChat user: --openid, or the one
        # its state file was logged in as (for a login again after a 401).
        openid = a.openid or (_state_openid(a.state) if standin else None)
        phone = Phone(a.base, a.cafile, a.state, a.code, a.timeout,
                      standin=standin if openid else None, openid=openid)
        if a.cmd == "login":
            doc = phone.login()
            print("logged in%s; token kept in %s (expires in %s s)" % (
                " as WeChat user " + openid if openid else "", a.state, doc.get("expires_in")))
        elif a.cmd == "accounts":
            accts = phone.accounts()
            if a.json:
                print(json.dumps({"accounts": accts}, ensure_ascii=False))
            for acct in accts:
                alg = str(acct.get("algorithm") or "SHA1").upper()
                if alg != "SHA1":
                    line = "%s\t-\tunsupported algorithm %s" % (acct.get("mailbox"), alg)
                else:
                    code, left = totp(acct["secret"], a.time, int(acct.get("digits") or 6),
                                      int(acct.get("period") or 30))
                    line = "%s\t%s\t%ds" % (acct.get("mailbox"), code, left)
                if not a.json:
                    print(line)
        elif a.cmd in ("show", "answer"):
            sc = scene_arg(a.scene)
            if not sc:
                print("error: not a scene: %r" % a.scene, file=sys.stderr)
                return 2
            if a.cmd == "show":
                doc = phone.show(sc)
                if a.json:
                    print(json.dumps(doc, ensure_ascii=False))
                else:
                    nums = _numbers(doc)
                    print("kind=%s mailbox=%s addr=%s time=%s expires=%s%s" % (
                        doc.get("kind"), doc.get("mailbox"), doc.get("addr"),
                        _fmt_time(doc.get("time")), _fmt_time(doc.get("expires")),
                        " numbers=" + ",".join(str(n) for n in nums) if nums else ""))
            else:
                if a.number is None and a.answer != "deny":
                    # A pushed request without a number would be a wrong pick
                    # (a denial): ask for it instead.
                    nums = _numbers(phone.show(sc))
                    if nums:
                        print("error: a pushed request: add --number N, the number the web "
                              "page shows (one of %s)" % ", ".join(str(n) for n in nums),
                              file=sys.stderr)
                        return 2
                phone.answer(sc, a.answer, a.number)
                print("ok")
    except ApiError as e:
        print("error: %s%s: %s" % (e.code, " (HTTP %d)" % e.status if e.status else "", e.message),
              file=sys.stderr)
        return 3 if e.code == "network" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
