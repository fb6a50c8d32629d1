"""Runs tests/wechat_standin.py (a local stand-in for WeChat's server API) as
a subprocess for pytest and the browser runner, like the other harness
servers:

    wx = WechatStandin(dir)            # appid/secret/template_id may be given
    wx.start()                         # waits for its port file
    wx.base                            # "http://127.0.0.1:PORT", for [wechat] api_base
    wx.config()                        # {"appid","secret","api_base",...} for overrides
    code = wx.mint_code("oUser1")      # what wx.login gives the phone
    wx.expire_tokens(); wx.fail("ratelimit", count=1); wx.fail("none")
    wx.refuse("oUser1"); wx.messages(); wx.calls(path="/cgi-bin/token"); wx.reset()
    wx.stop()                          # SIGTERM, then waits

Its stdout and stderr go to DIR/wechat_standin.log.
"""
import json
import os
import signal
import subprocess
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.abspath(os.path.join(HERE, "..", "..", "wechat_standin.py"))

DEFAULT_APPID = "wxstandin00000001"
DEFAULT_SECRET = "standin-secret"
DEFAULT_TEMPLATE = "standin-template-1"


class WechatStandin:
    def __init__(self, directory, appid=DEFAULT_APPID, secret=DEFAULT_SECRET,
                 template_id=DEFAULT_TEMPLATE, python="/usr/bin/python3"):
        self.dir = directory
        self.appid, self.secret, self.template_id = appid, secret, template_id
        self.python = python
        self.proc = None
        self.port = None
        os.makedirs(directory, exist_ok=True)
        self.port_file = os.path.join(directory, "wechat_standin.port")
        self.log_path = os.path.join(directory, "wechat_standin.log")

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def config(self, **extra):
        """A [wechat] section pointing at this stand-in (for config overrides)."""
        c = {"appid": self.appid, "secret": self.secret, "api_base": self.base,
             "timeout": "3s"}
        if self.template_id:
            c["template_id"] = self.template_id
        c.update(extra)
        return c

    def start(self, timeout=10.0):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        cmd = [self.python, STANDIN, "--port", "0", "--port-file", self.port_file,
               "--appid", self.appid, "--secret", self.secret]
        if self.template_id:
            cmd += ["--template-id", self.template_id]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                with open(self.log_path, errors="replace") as f:
                    raise RuntimeError("wechat_standin did not start:\n" + f.read()[-2000:])
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- the control API --

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def mint_code(self, openid):
        return self._call("POST", "/_standin/code", {"openid": openid})["code"]

    def expire_tokens(self, invalid=False):
        self._call("POST", "/_standin/expire_tokens", {"invalid": invalid})

    def fail(self, mode, count=1, path=None):
        body = {"mode": mode, "count": count}
        if path:
            body["path"] = path
        self._call("POST", "/_standin/fail", body)

    def refuse(self, openid):
        self._call("POST", "/_standin/refuse", {"openid": openid})

    def messages(self):
        return self._call("GET", "/_standin/messages")["messages"]

    def calls(self, path=None):
        calls = self._call("GET", "/_standin/calls")["calls"]
        return [c for c in calls if path is None or c["path"] == path]

    def reset(self):
        self._call("POST", "/_standin/reset", {})
