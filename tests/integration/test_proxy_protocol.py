"""The client's address to the backend as a HAProxy PROXY protocol v2 header
([backend] forward_client_addr = proxy).

In proxy mode mfagate opens every backend connection (IMAP, POP3, SMTP
submission, the inbound SMTP relay and the web's password check) with a
binary PROXY v2 header: source = the client's address and port, destination
= the address and port of the mfagate listener the client reached.  It then
sends no IMAP ID and no XCLIENT.

The backend is a Dovecot of this module with `haproxy = yes` listeners
(harness/dovecot.py, haproxy=True) and extra logging, so that its log shows
what reached it:

- login_log_format_elements adds rport= and lport= to rip= and lip=: the
  header's four fields.  Every client here connects from 127.0.0.2 (or ::1),
  and mfagate's own backend connections come from 127.0.0.1 to Dovecot's
  *_haproxy port, so rip=127.0.0.2 with lport=<mfagate's port> can only
  come from the header.
- imap_id_log = * logs any ID ("ID sent: ..."), and mfagate's ID and POP3
  XCLIENT carry a session id `mfagate-...` that Dovecot logs as session=<...>;
  a filtered debug log shows any XCLIENT at submission-login ("command
  XCLIENT: New command").  test_dovecot_haproxy_listeners checks that these
  traces do appear when such commands are sent.

Misconfiguration (a header to a listener that does not expect one, or none to
one that does) must be a clean temporary failure in bounded time, with
mfagate staying up.
"""
import base64
import http.client
import imaplib
import json
import poplib
import re
import smtplib
import socket
import struct
import subprocess
import time

import pytest

from dovecot import PROXY_V2_SIGNATURE, Dovecot, proxy_v2_header
from helpers import app_password, make_message, sink_find, sink_parts, sink_xclient, \
    totp_enroll, unique_marker
from mfagate import Mfagate
from rawimap import RawImap, login_line
from rawmail import RawPop3, RawSmtp, b64, dot_stuff
import smtpsink
from smtpsink import SmtpSink

CLIENT = "127.0.0.2"        # mfagate itself reaches Dovecot from 127.0.0.1

DOVECOT_LOG_CONF = """\
# test_proxy_protocol.py: what reached Dovecot, in its log.
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l lport=%{lport} \
mpid=%e %c session=<%{session}>
imap_id_log = *
log_debug = category=smtp-server AND cmd_name=XCLIENT
"""

ID_TRACE = r"imap-login: (?:Info: )?ID sent:"
XCLIENT_TRACE = r"submission-login: (?:Debug: )?[^\n]*command XCLIENT: New command"
LOGIN_FIELDS = ("rip", "rport", "lip", "lport", "session")


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def hdc(tmp_path_factory):
    """A Dovecot with PROXY-protocol listeners (and its normal ones)."""
    dc = Dovecot(str(tmp_path_factory.mktemp("dovecot-haproxy")), haproxy=True,
                 extra_conf=DOVECOT_LOG_CONF)
    dc.start()
    yield dc
    dc.close()


def backend_ports(dc, imap="imap_haproxy", pop3="pop3_haproxy", smtp="submission_haproxy"):
    return {"imap": str(dc.ports[imap]), "pop3": str(dc.ports[pop3]),
            "smtp": str(dc.ports[smtp])}


def proxy_backend(dc, **ports):
    b = backend_ports(dc, **ports)
    b["forward_client_addr"] = "proxy"
    return b


def free_port6():
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("nothing accepts on [%s]:%d" % (host, port))
            time.sleep(0.05)


@pytest.fixture(scope="module")
def pmg(tmp_path_factory, hdc, certdir):
    """mfagate in proxy mode in front of hdc's haproxy listeners; imaps also
    listens on [::1] (pmg.v6_port), and there is an https listener."""
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-proxy")), hdc, certdir,
                 overrides={"backend": proxy_backend(hdc)},
                 listen=Mfagate.DEFAULT_LISTEN + ("https",))
    mg.v6_port = free_port6()
    mg.overrides["listen"] = {"imaps": "127.0.0.1:%d, [::1]:%d"
                                       % (mg.ports["imaps"], mg.v6_port)}
    mg.start()
    try:
        wait_port("::1", mg.v6_port)
        yield mg
    finally:
        mg.stop()


# -- clients bound to a source address ------------------------------------------------

class ImapsFrom(imaplib.IMAP4_SSL):
    """imaplib over TLS from a chosen source address."""

    def __init__(self, port, ctx, source, host="127.0.0.1", timeout=20):
        self._source = source
        super().__init__(host, port, ssl_context=ctx, timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class Pop3sFrom(poplib.POP3_SSL):
    def __init__(self, port, ctx, source, host="127.0.0.1", timeout=20):
        self._source = source
        super().__init__(host, port, context=ctx, timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


# -- Dovecot's log ---------------------------------------------------------------------

def login_fields(dc, proto, user, since, timeout=10.0):
    """The fields of the one `<proto>-login: Login: user=<user>` line logged
    after offset `since` (waits for it)."""
    rx = r"%s-login: (?:Info: )?Login: user=<%s>[^\n]*" % (proto, re.escape(user))
    line = dc.wait_log(rx, timeout=timeout, since=since).group(0)
    end = dc.log_mark()
    lines = re.findall(rx, dc.log_text()[since:end])
    assert len(lines) == 1, lines
    fields = dict(re.findall(r"\b(rip|rport|lip|lport|session)=<?([^,>\s]*)>?", line))
    assert set(LOGIN_FIELDS) <= set(fields), line
    return fields, dc.log_text()[since:end]


def assert_header_fields(fields, src, sport, dst, dport):
    got = (fields["rip"], fields["rport"], fields["lip"], fields["lport"])
    want = (src, str(sport), dst, str(dport))
    assert got == want, "Dovecot logged rip/rport/lip/lport %r, the client's PROXY " \
                        "header should have said %r (%r)" % (got, want, fields)


def assert_no_id_or_xclient(fields, text):
    assert not fields["session"].startswith("mfagate-"), \
        "session=<%s>: an ID / XCLIENT from mfagate reached Dovecot" % fields["session"]
    assert not re.search(ID_TRACE, text), re.search(ID_TRACE + r"[^\n]*", text).group(0)
    assert not re.search(XCLIENT_TRACE, text), re.search(XCLIENT_TRACE, text).group(0)


# -- the harness: Dovecot's PROXY listeners, and the traces this module relies on ------------

def test_dovecot_haproxy_listeners(hdc):
    """Checks the harness, not mfagate: a v2 header on a *_haproxy port sets
    rip/rport/lip/lport; an ID or XCLIENT leaves the traces looked for below."""
    off = hdc.log_size()
    hdr = proxy_v2_header(("127.0.0.9", 40009), ("127.0.0.1", 10993))
    with socket.create_connection(("127.0.0.1", hdc.ports["imap_haproxy"]), 5) as s:
        s.settimeout(5)
        s.sendall(hdr)
        f = s.makefile("rwb")
        assert f.readline().startswith(b"* OK")
        f.write(b'i ID ("x-session-ext-id" "mfagate-ctl")\r\na LOGIN alice alicepw\r\n')
        f.flush()
        while not f.readline().startswith(b"a "):
            pass
    fields, text = login_fields(hdc, "imap", "alice", off)
    assert_header_fields(fields, "127.0.0.9", 40009, "127.0.0.1", 10993)
    assert fields["session"] == "mfagate-ctl" and re.search(ID_TRACE, text), text

    off = hdc.log_size()
    hdr = proxy_v2_header(("::1", 40010), ("::1", 10465))
    with socket.create_connection(("127.0.0.1", hdc.ports["submission_haproxy"]), 5) as s:
        s.settimeout(5)
        s.sendall(hdr)
        f = s.makefile("rwb")
        assert f.readline().startswith(b"220")
        for cmd in (b"EHLO x", b"XCLIENT PORT=40011", b"EHLO x",
                    b"AUTH PLAIN " + base64.b64encode(b"\0alice\0alicepw")):
            f.write(cmd + b"\r\n")
            f.flush()
            while f.readline()[3:4] == b"-":
                pass
    fields, text = login_fields(hdc, "submission", "alice", off)
    assert_header_fields(fields, "::1", 40011, "::1", 10465)
    assert re.search(XCLIENT_TRACE, text), text

    # No header: the haproxy listener greets nobody and drops the connection.
    with socket.create_connection(("127.0.0.1", hdc.ports["pop3_haproxy"]), 10) as s:
        s.settimeout(10)
        assert s.recv(100) == b""


# -- the client's address reaches Dovecot, and nothing else does -------------------------

def test_imap_login_sends_the_client_address(pmg, hdc, tls_ctx):
    off = hdc.log_size()
    c = ImapsFrom(pmg.ports["imaps"], tls_ctx, CLIENT)
    try:
        sport = c.sock.getsockname()[1]
        assert c.login("alice", "alicepw")[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
    finally:
        c.logout()
    fields, text = login_fields(hdc, "imap", "alice", off)
    assert_header_fields(fields, CLIENT, sport, "127.0.0.1", pmg.ports["imaps"])
    assert_no_id_or_xclient(fields, text)


def test_imap_over_ipv6_sends_a_tcp6_header(pmg, hdc, tls_ctx):
    # mfagate reaches Dovecot over IPv4; rip=::1 / lip=::1 come from the header.
    off = hdc.log_size()
    with RawImap.connect(pmg.v6_port, tls=tls_ctx, host="::1", source="::1") as c:
        sport = c.sock.getsockname()[1]
        _, tagged = c.cmd("l LOGIN carol carolpw", timeout=20)
        assert tagged.startswith("l OK"), tagged
        assert c.cmd("s SELECT INBOX")[1].startswith("s OK")
    fields, text = login_fields(hdc, "imap", "carol", off)
    assert_header_fields(fields, "::1", sport, "::1", pmg.v6_port)
    assert_no_id_or_xclient(fields, text)


def test_imap_app_password_login_sends_the_client_address(pmg, hdc, tls_ctx):
    # A client-specific password: mfagate logs in with the master credentials.
    totp_enroll(pmg, "bob")
    _, pw = app_password(pmg, "bob", "proxy-protocol")
    off = hdc.log_size()
    c = ImapsFrom(pmg.ports["imaps"], tls_ctx, CLIENT)
    try:
        sport = c.sock.getsockname()[1]
        assert c.login("bob", pw)[0] == "OK"
        assert c.select("INBOX")[0] == "OK"
    finally:
        c.logout()
    fields, text = login_fields(hdc, "imap", "bob", off)
    assert_header_fields(fields, CLIENT, sport, "127.0.0.1", pmg.ports["imaps"])
    assert_no_id_or_xclient(fields, text)


def test_pop3_login_sends_the_client_address(pmg, hdc, tls_ctx):
    off = hdc.log_size()
    p = Pop3sFrom(pmg.ports["pop3s"], tls_ctx, CLIENT)
    try:
        sport = p.sock.getsockname()[1]
        p.user("alice")
        assert p.pass_("alicepw").startswith(b"+OK")
        p.stat()
    finally:
        p.quit()
    fields, text = login_fields(hdc, "pop3", "alice", off)
    assert_header_fields(fields, CLIENT, sport, "127.0.0.1", pmg.ports["pop3s"])
    assert_no_id_or_xclient(fields, text)


def test_smtp_submission_sends_the_client_address(pmg, hdc, tls_ctx):
    off = hdc.log_size()
    marker = unique_marker("proxy-v2")
    msg = make_message(3000, marker.decode())
    s = smtplib.SMTP_SSL("127.0.0.1", pmg.ports["smtps"], context=tls_ctx, timeout=30,
                         source_address=(CLIENT, 0))
    try:
        sport = s.sock.getsockname()[1]
        s.ehlo("client.example")
        s.user, s.password = "alice", "alicepw"
        code, text = s.auth("PLAIN", s.auth_plain)
        assert code == 235, (code, text)
        assert s.sendmail("alice@localhost", ["pp@example.com"], msg) == {}
    finally:
        s.quit()
    mail_from, rcpts, data = sink_parts(sink_find(hdc.sink, marker))
    assert (mail_from, rcpts) == ("<alice@localhost>", ["<pp@example.com>"])
    assert marker in data
    fields, text = login_fields(hdc, "submission", "alice", off)
    assert_header_fields(fields, CLIENT, sport, "127.0.0.1", pmg.ports["smtps"])
    assert_no_id_or_xclient(fields, text)


# -- the web's password check ------------------------------------------------------------

def web_login(mg, ctx, user, password, source=CLIENT):
    """POST /api/login from `source`: (status, JSON, client port)."""
    conn = http.client.HTTPSConnection("127.0.0.1", mg.ports["https"], context=ctx,
                                       timeout=30, source_address=(source, 0))
    try:
        conn.connect()
        sport = conn.sock.getsockname()[1]
        conn.request("POST", "/api/login",
                     body=json.dumps({"user": user, "password": password}).encode(),
                     headers={"Host": "mail.example.test:%d" % mg.ports["https"],
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, json.loads(body) if body else None, sport
    finally:
        conn.close()


def test_web_password_check_sends_the_client_address(pmg, hdc, tls_ctx):
    off = hdc.log_size()
    st, obj, sport = web_login(pmg, tls_ctx, "carol", "carolpw")
    assert st == 200 and obj == {"state": "ok", "user": "carol"}, (st, obj)
    fields, text = login_fields(hdc, "imap", "carol", off)
    assert_header_fields(fields, CLIENT, sport, "127.0.0.1", pmg.ports["https"])
    assert_no_id_or_xclient(fields, text)
    # A wrong password is still the backend's refusal, not an outage.
    st, obj, _ = web_login(pmg, tls_ctx, "carol", "not-carolpw")
    assert st == 401 and obj["error"] == "bad_credentials", (st, obj)


# -- the inbound relay ([backend] smtp_inbound) ------------------------------------------

class _ProxyV2SinkHandler(smtpsink._Handler):
    """The sink behind a PROXY v2 header (Postfix's smtpd_upstream_proxy_protocol):
    reads and records the header, then speaks SMTP; without one, hangs up."""
    timeout = 15

    def handle(self):
        sink = self.server.sink
        head = self.rfile.read(16)
        if len(head) < 16 or head[:12] != PROXY_V2_SIGNATURE:
            sink.headers.append({"error": "no PROXY v2 header", "first": head})
            return
        body = self.rfile.read(struct.unpack("!H", head[14:16])[0])
        rec = {"ver_cmd": head[12], "fam": head[13], "len": len(body)}
        if head[13] == 0x11 and len(body) >= 12:
            rec["src"] = (socket.inet_ntop(socket.AF_INET, body[0:4]),
                          struct.unpack("!H", body[8:10])[0])
            rec["dst"] = (socket.inet_ntop(socket.AF_INET, body[4:8]),
                          struct.unpack("!H", body[10:12])[0])
        elif head[13] == 0x21 and len(body) >= 36:
            rec["src"] = (socket.inet_ntop(socket.AF_INET6, body[0:16]),
                          struct.unpack("!H", body[32:34])[0])
            rec["dst"] = (socket.inet_ntop(socket.AF_INET6, body[16:32]),
                          struct.unpack("!H", body[34:36])[0])
        sink.headers.append(rec)
        super().handle()


def proxy_v2_sink(directory):
    # xclient=True: it offers XCLIENT, which mfagate must not use in proxy mode.
    sink = SmtpSink(directory, xclient=True)
    sink.headers = []
    sink._server.RequestHandlerClass = _ProxyV2SinkHandler
    return sink.start()


INBOUND = (b"From: <sender@remote.example>\r\nTo: <alice@localhost>\r\n"
           b"Subject: inbound %s\r\n\r\nA line.\r\n.a dot line\r\n")


def test_inbound_relay_sends_the_header(make_mfagate, hdc, tmp_path):
    mta = proxy_v2_sink(str(tmp_path / "mta"))
    try:
        backend = proxy_backend(hdc)
        backend["smtp_inbound"] = str(mta.port)
        mg = make_mfagate(overrides={"backend": backend}, backend=hdc, listen=("smtp",))
        marker = unique_marker("inbound-proxy")
        msg = INBOUND % marker
        with RawSmtp.connect(mg.ports["smtp"], source=CLIENT) as c:
            sport = c.sock.getsockname()[1]
            c.ehlo("mx.example.org")
            assert c.cmd("MAIL FROM:<sender@remote.example>", timeout=20)[0] == 250, \
                mta.headers
            assert c.cmd("RCPT TO:<alice@localhost>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(dot_stuff(msg))
            assert c.reply(20)[0] == 250
            assert c.cmd("QUIT")[0] == 221
        stored = sink_find(mta, marker)
        assert sink_xclient(stored) is None, stored[:200]
        assert sink_parts(stored)[2] == msg
        assert len(mta.headers) == 1, mta.headers
        h = mta.headers[0]
        assert (h["ver_cmd"], h["fam"]) == (0x21, 0x11), h       # v2 PROXY, TCP over IPv4
        assert h["src"] == (CLIENT, sport), h
        assert h["dst"] == ("127.0.0.1", mg.ports["smtp"]), h
    finally:
        mta.stop()


# -- misconfiguration: a clean temporary failure, and mfagate stays up ----------------------

def imap_try(mg, ctx, user="alice", password="alicepw", timeout=30):
    with RawImap.connect(mg.ports["imaps"], tls=ctx) as c:
        _, tagged = c.cmd(login_line("l1", user, password), timeout=timeout)
        after = c.cmd("n1 NOOP")[1] if not tagged.startswith("l1 OK") else None
        return tagged, after


def pop3_try(mg, ctx, user="alice", password="alicepw", timeout=30):
    with RawPop3.connect(mg.ports["pop3s"], tls=ctx) as c:
        r = c.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (user, password)), timeout=timeout)
        after = c.cmd("CAPA") if not r.startswith("+OK") else None
        return r, after


def smtp_try(mg, ctx, user="alice", password="alicepw", timeout=30):
    with RawSmtp.connect(mg.ports["smtps"], tls=ctx) as c:
        c.ehlo()
        c.send("AUTH PLAIN %s\r\n" % b64("\0%s\0%s" % (user, password)))
        r = c.reply_line(timeout)
        after = c.cmd("NOOP")[0] if not r.startswith("235") else None
        return r, after


TRY = {"imap": imap_try, "pop3": pop3_try, "smtp": smtp_try}
LOGGED_IN = {"imap": "l1 OK", "pop3": "+OK", "smtp": "235 "}
TEMPORARY = {"imap": "l1 NO [UNAVAILABLE]", "pop3": "-ERR [SYS/TEMP]", "smtp": "454 4.7.0 "}
STILL_USABLE = {"imap": lambda a: a.startswith("n1 OK"),
                "pop3": lambda a: a.startswith("+OK"),
                "smtp": lambda a: a == 250}


def expect_temporary(mg, ctx, proto, bound):
    t0 = time.monotonic()
    answer, after = TRY[proto](mg, ctx, timeout=bound + 10)
    elapsed = time.monotonic() - t0
    assert answer.startswith(TEMPORARY[proto]), \
        "%s: %r, expected %r...; mfagate log tail:\n%s" % (proto, answer, TEMPORARY[proto],
                                                         mg.log_tail(15))
    assert elapsed < bound, "%s: the temporary failure took %.1fs" % (proto, elapsed)
    assert STILL_USABLE[proto](after), (proto, after)
    assert mg.running(), mg.log_tail()


def expect_login(mg, ctx, proto):
    answer, _ = TRY[proto](mg, ctx)
    assert answer.startswith(LOGGED_IN[proto]), (proto, answer, mg.log_tail(15))


PORT_NAME = {"imap": "imap", "pop3": "pop3", "smtp": "submission"}


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_proxy_to_a_listener_without_haproxy_is_a_temporary_failure(make_mfagate, hdc,
                                                                   tls_ctx, proto):
    # `proto` goes to Dovecot's normal listener (it takes the header for
    # commands), the other two to the PROXY listeners, as they should.
    ports = {p: PORT_NAME[p] + "_haproxy" for p in TRY}
    ports[proto] = PORT_NAME[proto]
    mg = make_mfagate(overrides={"backend": proxy_backend(hdc, **ports),
                                 "limits": {"backend_timeout": "3s"}},
                      backend=hdc, listen=("imaps", "pop3s", "smtps"))
    expect_temporary(mg, tls_ctx, proto, bound=3 + 3)
    for other in TRY:
        if other != proto:
            expect_login(mg, tls_ctx, other)
    expect_temporary(mg, tls_ctx, proto, bound=3 + 3)     # again, same answer


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_no_header_to_a_haproxy_listener_is_a_temporary_failure(make_mfagate, hdc, tls_ctx,
                                                               proto):
    # forward_client_addr = yes (ID / XCLIENT) against a PROXY listener:
    # Dovecot waits for a header that never comes (its haproxy_timeout is 3 s).
    ports = {p: PORT_NAME[p] for p in TRY}
    ports[proto] = PORT_NAME[proto] + "_haproxy"
    backend = backend_ports(hdc, **ports)
    backend["forward_client_addr"] = "yes"
    mg = make_mfagate(overrides={"backend": backend, "limits": {"backend_timeout": "2s"}},
                      backend=hdc, listen=("imaps", "pop3s", "smtps"))
    expect_temporary(mg, tls_ctx, proto, bound=2 + 3)
    for other in TRY:
        if other != proto:
            expect_login(mg, tls_ctx, other)


# -- configuration ------------------------------------------------------------------------

def with_value(mg, tmp_path, value):
    """A copy of mg's config with [backend] forward_client_addr = value;
    (path, line number)."""
    out, lineno, cur = [], None, None
    for text in mg.config_text().splitlines():
        s = text.strip()
        if s.startswith("["):
            cur = s[1:-1]
        elif cur == "backend" and s.split("=", 1)[0].strip() == "forward_client_addr":
            text = "forward_client_addr = %s" % value
            lineno = len(out) + 1
        out.append(text)
    assert lineno
    path = str(tmp_path / ("fca-%s.conf" % value))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path, lineno


@pytest.mark.parametrize("value", ["yes", "no", "proxy"])
def test_config_accepts(make_mfagate, tmp_path, value):
    mg = make_mfagate(start=False)
    path, _ = with_value(mg, tmp_path, value)
    cp = mg.cli("check-config", conf=path, check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)


def test_config_refuses_other_values(make_mfagate, tmp_path):
    mg = make_mfagate(start=False)
    path, lineno = with_value(mg, tmp_path, "maybe")
    cp = mg.cli("check-config", conf=path, check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 1, (cp.returncode, out)
    assert "%s:%d:" % (path, lineno) in out and "forward_client_addr" in out, out
    try:
        cp = subprocess.run([mg.bin, "serve", "-c", path], capture_output=True, text=True,
                            timeout=20, stdin=subprocess.DEVNULL, cwd=mg.dir)
    except subprocess.TimeoutExpired:
        pytest.fail("mfagate serve started with forward_client_addr = maybe")
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, out
    assert "forward_client_addr" in out, out
