"""Tests of tests/wechat_standin.py, the local stand-in for WeChat's server
API, through tests/integration/harness/wechat.py (as a subprocess, the way
pytest and the browser runner use it): WeChat's documented answers and
error codes, and the control API.

    /usr/bin/python3 -m pytest -q tests/test_wechat_standin.py
"""
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration", "harness"))
sys.path.insert(0, HERE)
from wechat import WechatStandin  # noqa: E402
import wechat_standin  # noqa: E402


@pytest.fixture(scope="module")
def wx(tmp_path_factory):
    s = WechatStandin(str(tmp_path_factory.mktemp("wx")))
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _reset(wx):
    wx.reset()


def get(wx, path, **params):
    url = wx.base + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def post(wx, path, body, **params):
    url = wx.base + path + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def session(wx, code, appid=None, secret=None):
    _, _, body = get(wx, "/sns/jscode2session", appid=appid or wx.appid,
                     secret=secret or wx.secret, js_code=code,
                     grant_type="authorization_code")
    return json.loads(body)


def token(wx):
    _, _, body = get(wx, "/cgi-bin/token", grant_type="client_credential", appid=wx.appid,
                     secret=wx.secret)
    return json.loads(body)


def test_jscode2session(wx):
    code = wx.mint_code("oAlice")
    r = session(wx, code)
    assert r["openid"] == "oAlice" and r["session_key"]
    assert session(wx, code)["errcode"] == 40163          # single use
    assert session(wx, "never-minted")["errcode"] == 40029
    assert session(wx, wx.mint_code("oA"), appid="wxother")["errcode"] == 40013
    assert session(wx, wx.mint_code("oA"), secret="nope")["errcode"] == 40125


def test_code_expires_in_process():
    """The importable form: codes live 5 minutes (moved back here, not waited for)."""
    s = wechat_standin.StandIn().start()
    try:
        class W:
            base = "http://127.0.0.1:%d" % s.port
            appid, secret = wechat_standin.DEFAULT_APPID, wechat_standin.DEFAULT_SECRET
        w = WechatStandin.__new__(WechatStandin)
        w.port = s.port
        code = w.mint_code("oLate")
        with s.state.lock:
            s.state.codes[code]["expires"] = time.time() - 1
        assert session(W, code)["errcode"] == 40029
    finally:
        s.stop()


def test_token_and_wxacode(wx):
    t = token(wx)
    assert t["expires_in"] == 7200 and len(t["access_token"]) > 20
    st, headers, body = post(wx, "/wxa/getwxacodeunlimit",
                             {"scene": "abc123", "page": "pages/confirm/confirm",
                              "check_path": False, "env_version": "release", "width": 280},
                             access_token=t["access_token"])
    assert st == 200 and headers["Content-Type"] == "image/png"
    assert headers["X-Standin-Scene"] == "abc123"
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    calls = wx.calls("/wxa/getwxacodeunlimit")
    assert len(calls) == 1 and calls[0]["params"]["access_token"] == "***"
    assert calls[0]["body"]["scene"] == "abc123"
    # The secret never shows in the call log.
    assert all(c["params"].get("secret") in (None, "***") for c in wx.calls())


def test_wxacode_errors(wx):
    tok = token(wx)["access_token"]
    ok = {"scene": "s", "page": "pages/confirm/confirm", "check_path": False}
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", ok)[2])["errcode"] == 41001
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", ok,
                           access_token="forged")[2])["errcode"] == 40001
    bad = dict(ok, scene="x" * 33)
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", bad,
                           access_token=tok)[2])["errcode"] == 40169
    checked = dict(ok, check_path=True)
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", checked,
                           access_token=tok)[2])["errcode"] == 41030
    wx.expire_tokens()
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", ok,
                           access_token=tok)[2])["errcode"] == 42001
    wx.expire_tokens(invalid=True)
    assert json.loads(post(wx, "/wxa/getwxacodeunlimit", ok,
                           access_token=tok)[2])["errcode"] == 40001
    # A new token works again.
    assert post(wx, "/wxa/getwxacodeunlimit", ok,
                access_token=token(wx)["access_token"])[0] == 200


def test_subscribe_send(wx):
    tok = token(wx)["access_token"]
    msg = {"touser": "oBob", "template_id": wx.template_id,
           "page": "pages/confirm/confirm?scene=abc", "miniprogram_state": "formal",
           "lang": "zh_CN", "data": {"thing1": {"value": "bob@example.com"},
                                     "time3": {"value": "2024年5月1日 15:01"}}}
    st, _, body = post(wx, "/cgi-bin/message/subscribe/send", msg, access_token=tok)
    assert st == 200 and json.loads(body) == {"errcode": 0, "errmsg": "ok"}
    assert wx.messages() == [msg]
    assert json.loads(post(wx, "/cgi-bin/message/subscribe/send",
                           dict(msg, template_id="other"), access_token=tok)[2])["errcode"] == 40037
    long_thing = dict(msg, data={"thing1": {"value": "x" * 21}})
    assert json.loads(post(wx, "/cgi-bin/message/subscribe/send", long_thing,
                           access_token=tok)[2])["errcode"] == 47003
    wx.refuse("oBob")
    assert json.loads(post(wx, "/cgi-bin/message/subscribe/send", msg,
                           access_token=tok)[2])["errcode"] == 43101
    assert len(wx.messages()) == 1


def test_failure_modes(wx):
    wx.fail("ratelimit", count=2, path="/cgi-bin/token")
    assert token(wx)["errcode"] == 45011
    assert session(wx, wx.mint_code("oC")).get("openid") == "oC"   # other paths unaffected
    assert token(wx)["errcode"] == 45011
    assert "access_token" in token(wx)                               # count used up
    wx.fail("http500")
    with pytest.raises(urllib.error.HTTPError) as e:
        token(wx)
    assert e.value.code == 500
    wx.fail("badjson")
    with pytest.raises(ValueError):
        token(wx)
    wx.fail("hang")
    t0 = time.time()
    with pytest.raises((socket.timeout, TimeoutError, urllib.error.URLError)):
        urllib.request.urlopen(wx.base + "/cgi-bin/token?grant_type=client_credential",
                               timeout=0.5)
    assert time.time() - t0 < 5
    wx.reset()          # lets the hung request go
    assert "access_token" in token(wx)


def test_command_line_prints_port(tmp_path):
    import subprocess
    port_file = tmp_path / "p"
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "wechat_standin.py"),
                          "--port", "0", "--port-file", str(port_file)],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("port=")
        for _ in range(100):
            if port_file.exists():
                break
            time.sleep(0.05)
        assert int(port_file.read_text()) == int(line.strip().split("=")[1])
    finally:
        p.terminate()
        p.wait(10)
