"""Small helpers shared by the integration tests."""
import base64
import hashlib
import imaplib
import json
import os
import re
import time

import rawimap  # noqa: F401  (teaches imaplib the ID command)
from mfagate import last_line

APP_PASSWORD_RX = re.compile(r"^[A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4} [A-Za-z0-9]{4}$")


def imaps(mg, ctx, timeout=15):
    return imaplib.IMAP4_SSL("127.0.0.1", mg.ports["imaps"], ssl_context=ctx,
                             timeout=timeout)


def imap_starttls(mg, ctx, timeout=15):
    c = imaplib.IMAP4("127.0.0.1", mg.ports["imap"], timeout=timeout)
    c.starttls(ssl_context=ctx)
    return c


def logged_in(mg, ctx, user, password, starttls=False):
    c = imap_starttls(mg, ctx) if starttls else imaps(mg, ctx)
    typ, _ = c.login(user, password)
    assert typ == "OK"
    return c


def login_refusal(mg, ctx, user, password, starttls=False):
    """The tagged line a LOGIN gets, via a raw client (exact bytes)."""
    with rawimap.RawImap.connect(mg.ports["imap" if starttls else "imaps"],
                                 tls=None if starttls else ctx) as c:
        if starttls:
            _, tagged = c.cmd("s STARTTLS")
            assert tagged.startswith("s OK"), tagged
            c.starttls(ctx)
        _, tagged = c.cmd(rawimap.login_line("l1", user, password), timeout=20)
        return tagged[len("l1 "):]


def totp_enroll(mg, user):
    cp = mg.cli("totp", "enroll", user)
    uri = last_line(cp.stdout)
    assert uri.startswith("otpauth://totp/"), cp.stdout
    return uri


def app_password(mg, user, name, scope=None, extra=()):
    """Creates one with --json: (id, password as printed)."""
    args = ["app-password", "create", user, "--name", name, "--json"]
    if scope:
        args += ["--scope", scope]
    cp = mg.cli(*args, *extra)
    obj = json.loads(last_line(cp.stdout))
    assert {"id", "name", "scope", "password"} <= set(obj), obj
    return obj["id"], obj["password"]


def find_by_id(obj, ident):
    """The dict with "id" == ident anywhere inside parsed JSON, else None."""
    if isinstance(obj, dict):
        if "id" in obj and str(obj["id"]) == str(ident):
            return obj
        children = obj.values()
    elif isinstance(obj, list):
        children = obj
    else:
        return None
    for child in children:
        found = find_by_id(child, ident)
        if found is not None:
            return found
    return None


def list_entry(mg, user, ident):
    cp = mg.cli("app-password", "list", user, "--json")
    return find_by_id(json.loads(cp.stdout), ident)


def wait_until(pred, timeout, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("%s not met within %.1fs" % (what, timeout))
        time.sleep(interval)


def make_message(size, subject="test"):
    """A valid RFC 5322 message of about `size` bytes, CRLF lines only."""
    head = ("From: pytest <pytest@localhost>\r\nTo: x <x@localhost>\r\n"
            "Subject: %s\r\nMessage-ID: <%s@localhost>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            % (subject, os.urandom(8).hex())).encode()
    raw = os.urandom(max(0, (size - len(head)) * 3 // 4))
    body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    return head + body


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def append_uid(resp):
    """UID from an APPEND response's [APPENDUID v uid]."""
    text = b" ".join(x for x in resp if isinstance(x, bytes)).decode()
    m = re.search(r"APPENDUID \d+ (\d+)", text)
    assert m, text
    return m.group(1)


def fetch_body(c, uid):
    typ, data = c.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", data
    for item in data:
        if isinstance(item, tuple):
            return item[1]
    raise AssertionError("no body in %r" % (data[:2],))


def sink_find(sink, marker, timeout=15.0):
    """The one message in the SMTP sink that contains `marker` (bytes),
    waiting up to `timeout` for it; fails if none or several hold it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in sink.messages() if marker in m]
        if len(found) == 1:
            return found[0]
        assert len(found) < 2, "%d sink messages hold %r" % (len(found), marker)
        if time.monotonic() > deadline:
            raise AssertionError("no sink message holds %r after %.0fs (%d messages)"
                                 % (marker, timeout, len(sink.messages())))
        time.sleep(0.05)


def sink_parts(stored):
    """A stored sink message: (MAIL FROM path, [RCPT paths], message bytes)."""
    mail_from, rcpts, rest = None, [], stored
    while True:
        line, sep, tail = rest.partition(b"\r\n")
        if line.startswith(b"X-Sink-Xclient: "):
            pass
        elif line.startswith(b"X-Sink-Mail-From: "):
            mail_from = line[len(b"X-Sink-Mail-From: "):].decode()
        elif line.startswith(b"X-Sink-Rcpt-To: "):
            rcpts.append(line[len(b"X-Sink-Rcpt-To: "):].decode())
        else:
            return mail_from, rcpts, rest
        rest = tail


def sink_xclient(stored):
    """The XCLIENT arguments a stored sink message came with, as a dict, or None."""
    line = stored.split(b"\r\n", 1)[0]
    if not line.startswith(b"X-Sink-Xclient: "):
        return None
    return dict(w.split("=", 1) for w in line[len(b"X-Sink-Xclient: "):].decode().split())


def body_of(message):
    """What follows the header block of a message (bytes)."""
    _, sep, body = message.partition(b"\r\n\r\n")
    assert sep, "no header/body separator"
    return body


def unique_marker(prefix="m"):
    return ("%s-%s" % (prefix, os.urandom(6).hex())).encode()
