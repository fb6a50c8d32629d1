#!/usr/bin/python3
"""phone_sim.py - a command-line stand-in for the WeChat mini program
(邮箱安全助手, web/miniprogram/), over the same /api/mp/ API (web/API.md,
"The mini program").  Python 3 standard library only.

  phone_sim.py --base https://127.0.0.1:10443 --cafile certs/server.crt --code WXCODE login
  phone_sim.py --base ... accounts              mailbox, current code, seconds left
  phone_sim.py --base ... show SCENE            the request behind a scanned QR
  phone_sim.py --base ... answer SCENE trust|temporary|deny|confirm
  phone_sim.py scan-url URL                     the scene in a scanned link / path

The bearer token is kept in a state file (--state, default
$MFAGATE_PHONE_STATE or ~/.mfagate-phone.json, mode 0600).  With --code, a
missing token or a 401 leads to one login with that code and one retry, as
the mini program does with wx.login.  SCENE may also be a scanned link.

Exit status: 0 done; 1 the server said no (error code on stderr);
2 usage or not a scene; 3 mfagate not reachable.
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

class Phone:
    def __init__(self, base, cafile=None, state=None, code=None, timeout=10):
        self.base = base.rstrip("/")
        self.state_path = state
        self.code = code
        self.timeout = timeout
        self.ctx = None
        if self.base.startswith("https:"):
            self.ctx = ssl.create_default_context(cafile=cafile)

    # token storage
    def _load(self):
        try:
            with open(self.state_path) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return {}
        return st if isinstance(st, dict) else {}

    def token(self):
        st = self._load()
        if st.get("base") != self.base or not st.get("token"):
            return None
        if st.get("expires_at") and st["expires_at"] <= time.time():
            return None
        return st["token"]

    def _save(self, token, expires_in):
        st = {"base": self.base, "token": token}
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
        data = None
        headers = {"Accept": "application/json"}
        if method != "GET":
            data = json.dumps(body or {}).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = "Bearer " + token
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.ctx) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError("network", 0, "cannot reach %s: %s" % (self.base, reason))
        try:
            doc = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            doc = None
        return status, doc

    @staticmethod
    def _error(status, doc):
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            return ApiError(doc["error"], status, doc.get("message") or doc["error"])
        return ApiError("server", status, "HTTP %d" % status)

    def login(self, code=None):
        code = code or self.code
        if not code:
            raise ApiError("no_code", 0, "not logged in; pass --code WXCODE")
        status, doc = self._raw("POST", "/api/mp/login", {"code": code})
        if status != 200:
            raise self._error(status, doc)
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str) or not doc["token"]:
            raise ApiError("server", status, "login answer without a token")
        self._save(doc["token"], doc.get("expires_in"))
        return doc

    def call(self, method, path, body=None):
        tok = self.token()
        relogged = False
        if not tok:
            self.login()
            tok, relogged = self.token(), True
        status, doc = self._raw(method, path, body, tok)
        if status == 401 and not relogged and self.code:
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

    def answer(self, scene, answer):
        doc = self.call("POST", "/api/mp/requests/" + scene, {"answer": answer})
        if not isinstance(doc, dict) or doc.get("ok") is not True:
            raise ApiError("server", 200, "answer not acknowledged")
        return doc


def _fmt_time(t):
    if not isinstance(t, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t))


def main(argv=None):
    default_state = os.environ.get("MFAGATE_PHONE_STATE") or os.path.expanduser("~/.mfagate-phone.json")
    p = argparse.ArgumentParser(prog="phone_sim.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", help="mfagate's web origin, e.g. https://127.0.0.1:10443")
    p.add_argument("--cafile", help="CA / self-signed certificate to trust (PEM)")
    p.add_argument("--code", help="the wx.login code to log in with (a test WeChat stand-in's code)")
    p.add_argument("--state", default=default_state, help="token file (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the server's JSON")
    p.add_argument("--time", type=float, help="accounts: compute codes at this epoch second")
    p.add_argument("--timeout", type=float, default=10)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("login")
    sub.add_parser("accounts")
    s = sub.add_parser("show"); s.add_argument("scene")
    s = sub.add_parser("answer"); s.add_argument("scene")
    s.add_argument("answer", choices=["trust", "temporary", "deny", "confirm"])
    s = sub.add_parser("scan-url"); s.add_argument("url")
    a = p.parse_args(argv)

    if a.cmd == "scan-url":
        sc = scene_from_text(a.url)
        if not sc:
            print("error: not a Mail Security Assistant QR code", file=sys.stderr)
            return 2
        print(sc)
        return 0

    if not a.base:
        p.error("--base is required for " + a.cmd)
    phone = Phone(a.base, a.cafile, a.state, a.code, a.timeout)
    try:
        if a.cmd == "login":
            doc = phone.login()
            print("logged in; token kept in %s (expires in %s s)" % (a.state, doc.get("expires_in")))
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
                    print("kind=%s mailbox=%s addr=%s time=%s expires=%s" % (
                        doc.get("kind"), doc.get("mailbox"), doc.get("addr"),
                        _fmt_time(doc.get("time")), _fmt_time(doc.get("expires"))))
            else:
                phone.answer(sc, a.answer)
                print("ok")
    except ApiError as e:
        print("error: %s%s: %s" % (e.code, " (HTTP %d)" % e.status if e.status else "", e.message),
              file=sys.stderr)
        return 3 if e.code == "network" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
