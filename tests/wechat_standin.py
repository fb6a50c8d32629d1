#!/usr/bin/python3
"""A local stand-in for WeChat's server API (api.weixin.qq.com), for tests
and the demo.  Standard library only (http.server, threads).

It follows WeChat's documented requests and answers for what mfagate uses:

  GET  /sns/jscode2session?appid=&secret=&js_code=&grant_type=authorization_code
       -> {"openid","session_key"}       or {"errcode":40029,"errmsg":"invalid code"}
                                          (40163 code been used, 40013 invalid appid,
                                          40125 invalid appsecret)
  GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=
       -> {"access_token","expires_in":7200}   (every call a fresh token; the
          older ones stay valid, as WeChat's do for 5 minutes)
  POST /cgi-bin/stable_token {"grant_type","appid","secret","force_refresh"}
       -> the same, for completeness
  POST /wxa/getwxacodeunlimit?access_token=T {"scene","page","check_path","env_version","width"}
       -> a PNG (Content-Type image/png; X-Standin-Scene: the scene): a real QR
          code of "<page>?scene=<scene>" drawn with libqrencode through ctypes
          (mfagate links it already), or a blank PNG if that library is missing
  POST /cgi-bin/message/subscribe/send?access_token=T
       {"touser","template_id","page","miniprogram_state","lang","data":{...}}
       -> {"errcode":0,"errmsg":"ok"}    (40003 bad touser, 40037 bad template_id,
                                          47003 bad data, 43101 user refused)

Token errors on the two calls that need one: 41001 (missing), 40001 (unknown
or invalidated), 42001 (expired).  45011 (rate limit) when switched on.

A control API for tests, under /_standin/ (JSON in and out):

  POST /_standin/code {"openid"}                 -> {"code"}: a wx.login code,
                                                    single use, 5 minutes
  POST /_standin/expire_tokens {"invalid":false} -> tokens issued so far answer
                                                    42001 (or 40001 if invalid)
  POST /_standin/fail {"mode","count","path"?}   -> the next count API calls (to
       path only, if given) fail: mode "ratelimit" (45011), "busy" (-1),
       "http500", "hang" (no answer until reset or 60 s), "badjson", "badtoken"
       (40001 whatever the token), "slow" (answers after 0.4 s); "none" clears
  POST /_standin/refuse {"openid"}               -> that user refused subscribe
                                                    messages (43101)
  GET  /_standin/messages                        -> {"messages":[bodies sent]}
  GET  /_standin/calls                           -> {"calls":[{"method","path",
       "params","body","errcode","status"}]}  (secret and tokens shown as "***")
  POST /_standin/reset                           -> clears calls, messages, failures

Command line:
  wechat_standin.py [--host 127.0.0.1] [--port 0] [--port-file F]
                    [--appid wxstandin00000001] [--secret standin-secret]
                    [--template-id ID]
prints "port=N" once listening.  Importable: StandIn(...).start() / .stop().
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import re
import secrets
import signal
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_APPID = "wxstandin00000001"
DEFAULT_SECRET = "standin-secret"
CODE_LIFE = 300          # wx.login codes: 5 minutes
TOKEN_LIFE = 7200
SCENE_RX = re.compile(r"^[A-Za-z0-9!#$&'()*+,/:;=?@\-._~]{1,32}$")
OPENID_RX = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_BODY = 64 * 1024


# ---- a PNG of a QR code --------------------------------------------------

class _QRcode(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("width", ctypes.c_int),
                ("data", ctypes.POINTER(ctypes.c_ubyte))]


def _load_qrencode():
    for name in ("libqrencode.so.4", ctypes.util.find_library("qrencode")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.QRcode_encodeString.restype = ctypes.POINTER(_QRcode)
        lib.QRcode_encodeString.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                            ctypes.c_int, ctypes.c_int]
        lib.QRcode_free.argtypes = [ctypes.POINTER(_QRcode)]
        return lib
    return None


_QR = _load_qrencode()


def qr_modules(text):
    """The QR code of text as rows of booleans (True = dark), or None."""
    if _QR is None:
        return None
    # QR_ECLEVEL_M = 1, QR_MODE_8 = 2, case-sensitive
    code = _QR.QRcode_encodeString(text.encode(), 0, 1, 2, 1)
    if not code:
        return None
    try:
        w = code.contents.width
        data = code.contents.data
        return [[bool(data[y * w + x] & 1) for x in range(w)] for y in range(w)]
    finally:
        _QR.QRcode_free(code)


def png(rows, scale=4, border=4):
    """A greyscale PNG of rows (True = black), scaled, with a quiet zone."""
    if not rows:
        rows = [[False]]
    n = len(rows[0])
    size = (n + 2 * border) * scale
    raw = bytearray()
    blank = b"\xff" * size
    for _ in range(border * scale):
        raw += b"\x00" + blank
    for row in rows:
        line = bytearray(b"\xff" * (border * scale))
        for dark in row:
            line += (b"\x00" if dark else b"\xff") * scale
        line += b"\xff" * (border * scale)
        for _ in range(scale):
            raw += b"\x00" + line
    for _ in range(border * scale):
        raw += b"\x00" + blank

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
            + chunk(b"IEND", b""))


# ---- the stand-in's state ------------------------------------------------

class State:
    def __init__(self, appid, secret, template_id=None):
        self.appid, self.secret, self.template_id = appid, secret, template_id
        self.lock = threading.Lock()
        self.codes = {}        # code -> {"openid", "expires", "used"}
        self.tokens = {}       # token -> {"expires", "state": "ok"|"expired"|"invalid"}
        self.calls, self.messages = [], []
        self.refused = set()
        self.fail_mode, self.fail_count, self.fail_path = None, 0, None
        self.unhang = threading.Event()

    def take_failure(self, path):
        with self.lock:
            if self.fail_mode is None or self.fail_count <= 0:
                return None
            if self.fail_path and self.fail_path != path:
                return None
            self.fail_count -= 1
            mode = self.fail_mode
            if self.fail_count == 0:
                self.fail_mode = None
            return mode

    def new_token(self):
        tok = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[tok] = {"expires": time.time() + TOKEN_LIFE, "state": "ok"}
        return tok

    def check_token(self, tok):
        """0, or WeChat's errcode for this access_token."""
        if not tok:
            return 41001
        with self.lock:
            t = self.tokens.get(tok)
            if t is None or t["state"] == "invalid":
                return 40001
            if t["state"] == "expired" or time.time() >= t["expires"]:
                return 42001
        return 0


def _mask(params):
    out = {}
    for k, v in params.items():
        out[k] = "***" if k in ("secret", "access_token") else v
    return out


def make_handler(st):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "wechat-standin"

        def log_message(self, *a):
            pass

        # -- plumbing --

        def _send(self, status, body, ctype="application/json; charset=utf-8", headers=None):
            if isinstance(body, (dict, list)):
                body = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n < 0 or n > MAX_BODY:
                return None
            return self.rfile.read(n) if n else b""

        def _json_body(self):
            raw = self._body()
            try:
                v = json.loads(raw or b"{}")
            except ValueError:
                return None
            return v if isinstance(v, dict) else None

        def _record(self, path, params, body, errcode, status=200):
            with st.lock:
                st.calls.append({"method": self.command, "path": path,
                                 "params": _mask(params), "body": body,
                                 "errcode": errcode, "status": status,
                                 "time": time.time()})

        def _err(self, path, params, body, errcode, errmsg):
            self._record(path, params, body, errcode)
            self._send(200, {"errcode": errcode, "errmsg": errmsg})

        def _failure(self, path, params, body):
            """Plays a switched-on failure; True if it answered."""
            mode = st.take_failure(path)
            if mode is None:
                return False
            if mode == "ratelimit":
                self._err(path, params, body, 45011,
                          "api minute-quota reach limit  mustslower  retry next minute")
            elif mode == "slow":
                time.sleep(0.4)
                return False    # then answers as usual
            elif mode == "badtoken":
                self._err(path, params, body, 40001, "invalid credential, access_token is "
                          "invalid or not latest")
            elif mode == "busy":
                self._err(path, params, body, -1, "system error")
            elif mode == "http500":
                self._record(path, params, body, None, 500)
                self._send(500, b"internal error", "text/plain")
            elif mode == "badjson":
                self._record(path, params, body, None, 200)
                self._send(200, b"{not json", "application/json")
            elif mode == "hang":
                self._record(path, params, body, None, 0)
                st.unhang.wait(60)
                self.close_connection = True
            return True

        # -- routes --

        def do_GET(self):
            u = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
            if u.path == "/_standin/messages":
                with st.lock:
                    return self._send(200, {"messages": list(st.messages)})
            if u.path == "/_standin/calls":
                with st.lock:
                    return self._send(200, {"calls": list(st.calls)})
            if u.path == "/sns/jscode2session":
                return self._jscode2session(u.path, params)
            if u.path == "/cgi-bin/token":
                return self._token(u.path, params)
            self._send(404, {"errcode": 404, "errmsg": "not found"})

        def do_POST(self):
            u = urllib.parse.urlsplit(self.path)
            params = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
            if u.path.startswith("/_standin/"):
                return self._control(u.path)
            if u.path == "/cgi-bin/stable_token":
                body = self._json_body() or {}
                return self._token(u.path, {k: str(v) for k, v in body.items()}, {})
            if u.path == "/wxa/getwxacodeunlimit":
                return self._wxacode(u.path, params)
            if u.path == "/cgi-bin/message/subscribe/send":
                return self._subscribe(u.path, params)
            self._body()
            self._send(404, {"errcode": 404, "errmsg": "not found"})

        def _credentials(self, path, params, body):
            if params.get("appid") != st.appid:
                self._err(path, params, body, 40013, "invalid appid")
                return False
            if params.get("secret") != st.secret:
                self._err(path, params, body, 40125, "invalid appsecret")
                return False
            return True

        def _jscode2session(self, path, params):
            if self._failure(path, params, None):
                return
            if not self._credentials(path, params, None):
                return
            if params.get("grant_type") != "authorization_code":
                return self._err(path, params, None, 40002, "invalid grant_type")
            code = params.get("js_code", "")
            with st.lock:
                c = st.codes.get(code)
                if c is not None and c["used"]:
                    err = 40163
                elif c is None or time.time() >= c["expires"]:
                    err = 40029
                else:
                    c["used"], err = True, 0
            if err == 40163:
                return self._err(path, params, None, 40163, "code been used")
            if err:
                return self._err(path, params, None, 40029, "invalid code")
            self._record(path, params, None, 0)
            self._send(200, {"openid": c["openid"],
                             "session_key": secrets.token_urlsafe(16) + "=="})

        def _token(self, path, params, _unused=None):
            if self._failure(path, params, None):
                return
            if params.get("grant_type") != "client_credential":
                return self._err(path, params, None, 40002, "invalid grant_type")
            if not self._credentials(path, params, None):
                return
            tok = st.new_token()
            self._record(path, params, None, 0)
            self._send(200, {"access_token": tok, "expires_in": TOKEN_LIFE})

        def _needs_token(self, path, params, body):
            err = st.check_token(params.get("access_token"))
            if err:
                msg = {41001: "access_token missing", 40001: "invalid credential, "
                       "access_token is invalid or not latest", 42001: "access_token expired"}
                self._err(path, params, body, err, msg[err])
                return False
            return True

        def _wxacode(self, path, params):
            body = self._json_body()
            if self._failure(path, params, body):
                return
            if not self._needs_token(path, params, body):
                return
            if body is None:
                return self._err(path, params, body, 47001, "data format error")
            scene = body.get("scene")
            if not isinstance(scene, str) or not SCENE_RX.match(scene):
                return self._err(path, params, body, 40169, "invalid length for scene, "
                                 "or the data is not json string")
            page = body.get("page", "")
            if not isinstance(page, str) or page.startswith("/") or "?" in page:
                return self._err(path, params, body, 41030, "invalid page")
            if body.get("check_path", True) is not False and page:
                # The stand-in publishes nothing, so a checked page never exists.
                return self._err(path, params, body, 41030, "invalid page")
            env = body.get("env_version", "release")
            if env not in ("release", "trial", "develop"):
                return self._err(path, params, body, 40097, "invalid args")
            width = body.get("width", 430)
            if not isinstance(width, int) or not 280 <= width <= 1280:
                return self._err(path, params, body, 40097, "invalid args")
            rows = qr_modules("%s?scene=%s" % (page, scene))
            image = png(rows, scale=max(1, width // (len(rows or [0]) + 8)))
            self._record(path, params, body, 0)
            self._send(200, image, "image/png", {"X-Standin-Scene": scene})

        def _subscribe(self, path, params):
            body = self._json_body()
            if self._failure(path, params, body):
                return
            if not self._needs_token(path, params, body):
                return
            if body is None:
                return self._err(path, params, body, 47001, "data format error")
            touser = body.get("touser")
            if not isinstance(touser, str) or not OPENID_RX.match(touser):
                return self._err(path, params, body, 40003, "invalid openid")
            tid = body.get("template_id")
            if not isinstance(tid, str) or not tid or (st.template_id and tid != st.template_id):
                return self._err(path, params, body, 40037, "invalid template_id")
            data = body.get("data")
            if not isinstance(data, dict) or not data or not all(
                    isinstance(v, dict) and isinstance(v.get("value"), str) and v["value"]
                    for v in data.values()):
                return self._err(path, params, body, 47003, "argument invalid! data")
            for k, v in data.items():
                limit = 20 if k.startswith("thing") else 32
                if len(v["value"]) > limit:
                    return self._err(path, params, body, 47003,
                                     "argument invalid! data.%s.value" % k)
            if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
                return self._err(path, params, body, 47003, "invalid miniprogram_state")
            with st.lock:
                refused = touser in st.refused
            if refused:
                return self._err(path, params, body, 43101, "user refuse to accept the msg")
            with st.lock:
                st.messages.append(body)
            self._record(path, params, body, 0)
            self._send(200, {"errcode": 0, "errmsg": "ok"})

        def _control(self, path):
            body = self._json_body()
            if body is None:
                return self._send(400, {"error": "bad json"})
            if path == "/_standin/code":
                openid = body.get("openid")
                if not isinstance(openid, str) or not OPENID_RX.match(openid):
                    return self._send(400, {"error": "openid"})
                code = secrets.token_hex(16)  # like wx.login codes: never starts with "-"
                with st.lock:
                    st.codes[code] = {"openid": openid, "expires": time.time() + CODE_LIFE,
                                      "used": False}
                return self._send(200, {"code": code})
            if path == "/_standin/expire_tokens":
                state = "invalid" if body.get("invalid") else "expired"
                with st.lock:
                    for t in st.tokens.values():
                        t["state"] = state
                return self._send(200, {"ok": True})
            if path == "/_standin/fail":
                mode = body.get("mode", "none")
                if mode not in ("none", "ratelimit", "busy", "http500", "hang", "badjson",
                                "badtoken", "slow"):
                    return self._send(400, {"error": "mode"})
                with st.lock:
                    if mode == "none":
                        st.fail_mode, st.fail_count, st.fail_path = None, 0, None
                    else:
                        st.fail_mode = mode
                        st.fail_count = int(body.get("count", 1))
                        st.fail_path = body.get("path")
                    if mode == "hang":
                        st.unhang.clear()
                    else:
                        st.unhang.set()
                return self._send(200, {"ok": True})
            if path == "/_standin/refuse":
                with st.lock:
                    st.refused.add(str(body.get("openid")))
                return self._send(200, {"ok": True})
            if path == "/_standin/reset":
                with st.lock:
                    st.calls, st.messages = [], []
                    st.fail_mode, st.fail_count, st.fail_path = None, 0, None
                    st.refused = set()
                st.unhang.set()
                return self._send(200, {"ok": True})
            self._send(404, {"error": "no such control"})

    return Handler


class StandIn:
    """The stand-in in this process: StandIn().start(); .port; .stop()."""

    def __init__(self, host="127.0.0.1", port=0, appid=DEFAULT_APPID, secret=DEFAULT_SECRET,
                 template_id=None):
        self.state = State(appid, secret, template_id)
        self.server = ThreadingHTTPServer((host, port), make_handler(self.state))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.state.unhang.set()
        self.server.shutdown()
        self.server.server_close()


def main(argv=None):
    ap = argparse.ArgumentParser(description="A local stand-in for WeChat's server API.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--appid", default=DEFAULT_APPID)
    ap.add_argument("--secret", default=DEFAULT_SECRET)
    ap.add_argument("--template-id")
    a = ap.parse_args(argv)
    s = StandIn(a.host, a.port, a.appid, a.secret, a.template_id)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % s.port)
        os.rename(tmp, a.port_file)
    print("port=%d" % s.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    s.start()
    stop.wait()
    s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
