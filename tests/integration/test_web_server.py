"""The web endpoint's HTTP layer through the real binary: /healthz and
/metrics, the embedded static pages, security headers, status codes for
unknown paths and methods, HEAD, keep-alive, the cleartext listener, and
the login counter moving after an IMAP login through the proxy.

Clients: python's http.client + ssl (verifying the test certificate), raw
sockets for malformed input, and curl.
"""
import http.client
import json
import re
import socket
import ssl
import subprocess

import pytest

from helpers import imaps
from mfagate import Mfagate

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@pytest.fixture(scope="module")
def web(tmp_path_factory, dovecot, certdir):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-web")), dovecot, certdir,
                 listen=Mfagate.WEB_LISTEN)
    mg.start()
    yield mg
    mg.stop()


def https(mg, ctx):
    return http.client.HTTPSConnection("127.0.0.1", mg.ports["https"], context=ctx, timeout=10)


def plain(mg):
    return http.client.HTTPConnection("127.0.0.1", mg.ports["http"], timeout=10)


def get(conn, method, path, headers=None, body=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r, r.read()


def check_security_headers(r, tls):
    assert r.getheader("Content-Security-Policy") == CSP
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert r.getheader("Referrer-Policy") == "no-referrer"
    assert r.getheader("X-Frame-Options") == "DENY"
    if tls:
        assert r.getheader("Strict-Transport-Security") == "max-age=31536000"
    else:
        assert r.getheader("Strict-Transport-Security") is None
    assert r.getheader("Content-Length") is not None


def raw_exchange(port, data, ctx=None):
    """Sends data, reads until the server closes; the bytes it sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if ctx is not None:
        s = ctx.wrap_socket(s, server_hostname="localhost")
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def metric(text, name_and_labels):
    m = re.search(r"^%s (\S+)$" % re.escape(name_and_labels), text, re.M)
    assert m, "%s not in /metrics" % name_and_labels
    return float(m.group(1))


def test_healthz_over_https(web, tls_ctx):
    c = https(web, tls_ctx)
    r, body = get(c, "GET", "/healthz")
    assert r.status == 200 and body == b"ok\n"
    assert r.getheader("Content-Length") == "3"
    assert r.getheader("Cache-Control") == "no-store"
    check_security_headers(r, tls=True)
    c.close()


def test_healthz_over_http_listener(web):
    c = plain(web)
    r, body = get(c, "GET", "/healthz")
    assert r.status == 200 and body == b"ok\n"
    check_security_headers(r, tls=False)
    c.close()


def test_keep_alive_and_head(web, tls_ctx):
    c = https(web, tls_ctx)
    r, body = get(c, "GET", "/")
    sock = c.sock
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/html; charset=utf-8"
    assert b"mfagate" in body and b"/app.js" in body
    assert r.getheader("Cache-Control") == "no-cache"
    etag = r.getheader("ETag")
    assert etag and etag.startswith('"')
    check_security_headers(r, tls=True)

    r2, body2 = get(c, "HEAD", "/")
    assert c.sock is sock, "the connection was not kept alive"
    assert r2.status == 200 and body2 == b""
    assert r2.getheader("Content-Length") == str(len(body))

    r3, body3 = get(c, "GET", "/index.html", headers={"If-None-Match": etag})
    assert r3.status == 304 and body3 == b""
    assert c.sock is sock
    c.close()


@pytest.mark.parametrize("path,ctype", [
    ("/app.css", "text/css; charset=utf-8"),
    ("/app.js", "text/javascript; charset=utf-8"),
    ("/index.html", "text/html; charset=utf-8"),
])
def test_static_content_types(web, tls_ctx, path, ctype):
    c = https(web, tls_ctx)
    r, body = get(c, "GET", path + "?lang=en")
    assert r.status == 200 and len(body) > 0
    assert r.getheader("Content-Type") == ctype
    c.close()


def test_not_found_and_method_not_allowed(web, tls_ctx):
    c = https(web, tls_ctx)
    r, body = get(c, "GET", "/api/no-such-thing")
    assert r.status == 404
    assert r.getheader("Content-Type") == "application/json; charset=utf-8"
    assert r.getheader("Cache-Control") == "no-store"
    assert json.loads(body)["error"] == "not_found"
    check_security_headers(r, tls=True)

    r, body = get(c, "GET", "/no-such-page.html")
    assert r.status == 404

    r, body = get(c, "POST", "/healthz", body=b"x")
    assert r.status == 405
    assert r.getheader("Allow") == "GET, HEAD"
    assert json.loads(body)["error"] == "method_not_allowed"

    r, body = get(c, "DELETE", "/index.html")
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"

    # An API route that exists only as POST (web/API.md).
    r, body = get(c, "GET", "/api/login")
    assert r.status == 405
    assert "POST" in r.getheader("Allow")
    assert r.getheader("Content-Type") == "application/json; charset=utf-8"
    json.loads(body)
    c.close()


def test_bad_input(web, tls_ctx):
    out = raw_exchange(web.ports["http"], b"\x01\x02garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out[:80]
    assert b"\r\nConnection: close\r\n" in out
    out = raw_exchange(web.ports["https"], b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", tls_ctx)
    assert out.startswith(b"HTTP/1.1 501 "), out[:80]
    out = raw_exchange(web.ports["http"],
                       b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 "), out[:80]
    out = raw_exchange(web.ports["http"],
                       b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 "), out[:80]


def test_pipelined_and_connection_close(web):
    out = raw_exchange(web.ports["http"],
                       b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"HEAD /app.css HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                       b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    statuses = re.findall(rb"^HTTP/1.1 (\d+) ", out, re.M)
    assert statuses == [b"200", b"200", b"404"], out


def test_lang(web, tls_ctx):
    c = https(web, tls_ctx)
    r, body = get(c, "GET", "/api/lang", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert r.status == 200 and json.loads(body) == {"lang": "en"}
    r, body = get(c, "GET", "/api/lang", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert json.loads(body) == {"lang": "zh"}
    r, body = get(c, "GET", "/api/lang?lang=zh", headers={"Accept-Language": "en"})
    assert json.loads(body) == {"lang": "zh"}
    c.close()


def test_metrics_login_counter_moves(web, tls_ctx, dovecot):
    key = 'mfagate_logins_total{protocol="imap",result="ok",how="passthrough"}'
    c = https(web, tls_ctx)
    r, body = get(c, "GET", "/metrics")
    assert r.status == 200
    assert r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE mfagate_logins_total counter" in text
    assert "# TYPE mfagate_auth_seconds histogram" in text
    assert "# HELP mfagate_connections_total " in text
    before = metric(text, key)
    auth_before = metric(text, 'mfagate_auth_seconds_count{protocol="imap"}')
    conns_before = metric(text, 'mfagate_connections_total{protocol="imaps"}'
                          .replace("imaps", "imap"))

    m = imaps(web, tls_ctx)
    typ, _ = m.login("alice", dovecot.users["alice"])
    assert typ == "OK"
    m.logout()

    r, body = get(c, "GET", "/metrics")
    text = body.decode()
    assert metric(text, key) == before + 1
    assert metric(text, 'mfagate_auth_seconds_count{protocol="imap"}') == auth_before + 1
    assert metric(text, 'mfagate_connections_total{protocol="imap"}') >= conns_before + 1
    assert metric(text, 'mfagate_connections_total{protocol="https"}') >= 1
    assert metric(text, 'mfagate_http_requests_total{code="2xx"}') >= 1
    assert 'mfagate_challenges_total{result="ok"}' in text
    assert 'mfagate_backend_errors_total{protocol="imap"}' in text
    c.close()


def test_curl(web, cafile):
    url = web.web_url("/healthz")
    cp = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", cafile, "-D", "-",
                         "--resolve", "localhost:%d:127.0.0.1" % web.ports["https"],
                         url.replace("127.0.0.1", "localhost")],
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    # (text=True turns CRLF into LF)
    assert cp.stdout.startswith("HTTP/1.1 200 OK\n"), cp.stdout
    assert "strict-transport-security: max-age=31536000" in cp.stdout.lower()
    assert cp.stdout.endswith("\n\nok\n")
    # HEAD of a static page and keep-alive over two URLs in one curl run.
    cp = subprocess.run(["curl", "-sS", "-k", "--http1.1", "-I", web.web_url("/app.js")],
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert "content-type: text/javascript; charset=utf-8" in cp.stdout.lower()
    cp = subprocess.run(["curl", "-sS", "-k", "--http1.1", "-v", "-o", "/dev/null",
                         "-o", "/dev/null", web.web_url("/healthz"), web.web_url("/")],
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert "Re-using existing connection" in cp.stderr or "Reusing existing" in cp.stderr, \
        cp.stderr


def test_request_log_has_no_query(web, tls_ctx):
    c = https(web, tls_ctx)
    get(c, "GET", "/healthz?code=123456&password=secretpw")
    c.close()
    log = web.log_text()
    line = [l for l in log.splitlines() if "path=/healthz" in l][-1]
    assert re.search(r"http=\d+ method=GET path=/healthz status=200 ms=\d+ addr=127\.0\.0\.1",
                     line), line
    assert "123456" not in log and "secretpw" not in log
