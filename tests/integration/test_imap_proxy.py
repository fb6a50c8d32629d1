"""IMAP through mfagate: greeting, STARTTLS, LOGIN/AUTHENTICATE in all their
forms, pre-auth limits, STARTTLS injection, client address forwarding.

Users here have no second factor (this module's mfagate has a fresh state),
so every login is a passthrough to Dovecot.
"""
import imaplib
import re
import subprocess
import time

import pytest

from helpers import (append_uid, fetch_body, imap_starttls, imaps, login_refusal,
                     make_message, sha256)
from mfagate import GENERIC_REFUSAL
from rawimap import RawImap, b64, login_line

TLS_GREETING = ("* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE "
                "AUTH=PLAIN AUTH=LOGIN] ")


def caps_of(lines):
    """Capability words from `* CAPABILITY ...` lines or a `[CAPABILITY ...]` code."""
    words = set()
    for line in lines:
        m = re.search(r"(?:^\* CAPABILITY|\[CAPABILITY)\s+([^\]\r\n]*)", line)
        if m:
            words |= set(m.group(1).upper().split())
    return words


def tls_client(mg, ctx):
    return RawImap.connect(mg.ports["imaps"], tls=ctx)


def ok(tagged, tag):
    assert tagged.startswith(tag + " OK"), tagged


# -- greeting and capabilities -------------------------------------------------

def test_greeting_and_capability_on_tls(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        assert c.greeting.decode().startswith(TLS_GREETING), c.greeting
        assert c.greeting.endswith(b"\r\n")
        untagged, tagged = c.cmd("c1 CAPABILITY")
        ok(tagged, "c1")
        caps = caps_of(untagged)
        assert {"IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN", "SASL-IR", "LITERAL+",
                "ID", "IDLE"} <= caps, caps
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps
        _, tagged = c.cmd("n1 NOOP")
        ok(tagged, "n1")
        untagged, tagged = c.cmd("o1 LOGOUT")
        assert any(l.startswith("* BYE") for l in untagged)
        ok(tagged, "o1")


def test_cleartext_port_refuses_auth_before_starttls(mfagate, tls_ctx):
    with RawImap.connect(mfagate.ports["imap"]) as c:
        assert c.greeting.startswith(b"* OK")
        untagged, tagged = c.cmd("c1 CAPABILITY")
        ok(tagged, "c1")
        for caps in (caps_of(untagged), caps_of([c.greeting.decode()]) or None):
            if caps is None:
                continue
            assert "STARTTLS" in caps and "LOGINDISABLED" in caps, caps
            assert not any(w.startswith("AUTH=") for w in caps), caps
        _, tagged = c.cmd("l1 LOGIN alice alicepw")
        assert tagged.startswith("l1 NO"), tagged
        _, tagged = c.cmd("a1 AUTHENTICATE PLAIN " + b64("\0alice\0alicepw"))
        assert tagged.split()[1] in ("NO", "BAD"), tagged
        _, tagged = c.cmd("s1 SELECT INBOX")
        assert tagged.startswith("s1 BAD"), tagged
        # Still usable: upgrade and log in.
        _, tagged = c.cmd("t1 STARTTLS")
        ok(tagged, "t1")
        c.starttls(tls_ctx)
        untagged, tagged = c.cmd("c2 CAPABILITY")
        ok(tagged, "c2")
        caps = caps_of(untagged)
        assert "AUTH=PLAIN" in caps and "AUTH=LOGIN" in caps, caps
        assert "STARTTLS" not in caps and "LOGINDISABLED" not in caps, caps
        _, tagged = c.cmd("l2 LOGIN alice alicepw", timeout=20)
        ok(tagged, "l2")
        _, tagged = c.cmd("s2 SELECT INBOX")
        ok(tagged, "s2")


def test_plaintext_auth_when_allowed(make_mfagate):
    mg = make_mfagate(overrides={"server": {"allow_plaintext_auth": "yes"}})
    with RawImap.connect(mg.ports["imap"]) as c:
        assert "LOGINDISABLED" not in caps_of(c.cmd("c1 CAPABILITY")[0])
        _, tagged = c.cmd("l1 LOGIN alice alicepw", timeout=20)
        ok(tagged, "l1")
        ok(c.cmd("s1 SELECT INBOX")[1], "s1")


def test_starttls_twice_and_after_tls_is_refused(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        _, tagged = c.cmd("t1 STARTTLS")
        assert tagged.split()[1] in ("NO", "BAD"), tagged
        ok(c.cmd("n1 NOOP")[1], "n1")


# -- logging in (imaplib) ------------------------------------------------------

def test_login_imaps_select_fetch_append(mfagate, tls_ctx):
    c = imaps(mfagate, tls_ctx)
    typ, data = c.login("alice", "alicepw")
    assert typ == "OK"
    typ, data = c.select("INBOX")
    assert typ == "OK"
    msg = make_message(4000, "imaps append")
    typ, data = c.append("INBOX", r"(\Seen)", None, msg)
    assert typ == "OK", data
    uid = append_uid(data)
    assert fetch_body(c, uid) == msg
    typ, data = c.uid("SEARCH", None, "SUBJECT", '"imaps append"')
    assert typ == "OK" and uid.encode() in data[0].split()
    typ, data = c.uid("FETCH", uid, "(FLAGS)")
    assert b"\\Seen" in data[0]
    assert c.logout()[0] == "BYE"


def test_login_starttls(mfagate, tls_ctx):
    c = imap_starttls(mfagate, tls_ctx)
    assert c.login("alice", "alicepw")[0] == "OK"
    assert c.select("INBOX", readonly=True)[0] == "OK"
    assert c.noop()[0] == "OK"
    c.logout()


def test_authenticate_plain_imaplib(mfagate, tls_ctx):
    for c in (imaps(mfagate, tls_ctx), imap_starttls(mfagate, tls_ctx)):
        typ, _ = c.authenticate("PLAIN", lambda _: b"\0alice\0alicepw")
        assert typ == "OK"
        assert c.select("INBOX")[0] == "OK"
        c.logout()


def test_post_login_capabilities_come_from_backend(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        untagged, tagged = c.cmd("l1 LOGIN alice alicepw", timeout=20)
        ok(tagged, "l1")
        caps = caps_of(untagged + [tagged])
        # Dovecot's post-login set has these; the pre-login set does not.
        assert {"UIDPLUS", "MOVE", "NAMESPACE"} <= caps, (untagged, tagged)


def test_wrong_password_and_unknown_user_get_the_generic_text(mfagate, tls_ctx):
    assert login_refusal(mfagate, tls_ctx, "alice", "wrong") == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "nosuchuser", "x") == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "alice", "wrong", starttls=True) == GENERIC_REFUSAL
    with tls_client(mfagate, tls_ctx) as c:
        _, tagged = c.cmd("a1 AUTHENTICATE PLAIN " + b64("\0nosuchuser\0x"), timeout=20)
        assert tagged == "a1 " + GENERIC_REFUSAL
        ok(c.cmd("n1 NOOP")[1], "n1")     # still usable after a refusal
        ok(c.cmd("l1 LOGIN alice alicepw", timeout=20)[1], "l1")


# -- LOGIN with literals, AUTHENTICATE variants (raw) --------------------------

def test_login_with_sync_literals(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("l1 LOGIN {5}\r\n")
        c.expect_continuation()
        c.send("alice {7}\r\n")
        c.expect_continuation()
        c.send("alicepw\r\n")
        ok(c.read_response("l1", timeout=20)[1], "l1")
        ok(c.cmd("s1 SELECT INBOX")[1], "s1")


def test_login_with_literal_plus(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("l1 LOGIN {5+}\r\nalice {7+}\r\nalicepw\r\n")
        untagged, tagged = c.read_response("l1", timeout=20)
        ok(tagged, "l1")
        assert not any(l.startswith("+") for l in untagged), untagged


def test_login_quoted_with_literal_password(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send('l1 LOGIN "alice" {7}\r\n')
        c.expect_continuation()
        c.send("alicepw\r\n")
        ok(c.read_response("l1", timeout=20)[1], "l1")


def test_literal_over_max_literal_is_refused(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("l1 LOGIN alice {100000}\r\n")
        line = c.readline(10)
        assert not line.startswith(b"+"), line
        assert line.startswith(b"l1 BAD") or line.startswith(b"l1 NO") or \
            line.startswith(b"* BYE"), line


def test_authenticate_plain_sasl_ir(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        ok(c.cmd("a1 AUTHENTICATE PLAIN " + b64("\0alice\0alicepw"), timeout=20)[1], "a1")
        ok(c.cmd("s1 SELECT INBOX")[1], "s1")


def test_authenticate_plain_with_continuation(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        c.expect_continuation()
        c.send(b64("\0alice\0alicepw") + "\r\n")
        ok(c.read_response("a1", timeout=20)[1], "a1")


def test_authenticate_cancelled(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("a1 AUTHENTICATE PLAIN\r\n")
        c.expect_continuation()
        c.send("*\r\n")
        _, tagged = c.read_response("a1")
        assert tagged.split()[1] in ("NO", "BAD"), tagged
        ok(c.cmd("n1 NOOP")[1], "n1")


def test_authenticate_login(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        c.send("a1 AUTHENTICATE LOGIN\r\n")
        c.expect_continuation()
        c.send(b64("alice") + "\r\n")
        c.expect_continuation()
        c.send(b64("alicepw") + "\r\n")
        ok(c.read_response("a1", timeout=20)[1], "a1")
        ok(c.cmd("s1 SELECT INBOX")[1], "s1")


def test_sasl_plain_authzid_different_is_refused(mfagate, dovecot, tls_ctx):
    off = dovecot.log_mark()
    with tls_client(mfagate, tls_ctx) as c:
        _, tagged = c.cmd("a1 AUTHENTICATE PLAIN " + b64("alice\0bob\0bobpw"), timeout=20)
        assert tagged.startswith("a1 NO"), tagged
        _, tagged = c.cmd("s1 SELECT INBOX")
        assert tagged.startswith("s1 BAD"), tagged      # not logged in
        c.send("a2 AUTHENTICATE PLAIN\r\n")
        c.expect_continuation()
        c.send(b64("carol\0bob\0bobpw") + "\r\n")
        assert c.read_response("a2", timeout=20)[1].startswith("a2 NO")
    end = dovecot.log_mark()
    log = dovecot.log_text()[off:end]
    assert not re.search(r"Login: user=<(alice|carol)>", log), log


def test_sasl_plain_authzid_same_as_authcid_is_fine(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        ok(c.cmd("a1 AUTHENTICATE PLAIN " + b64("alice\0alice\0alicepw"), timeout=20)[1], "a1")


def test_nul_or_crlf_in_names_refused(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        _, tagged = c.cmd("a1 AUTHENTICATE PLAIN " + b64("\0ali\rce\0alicepw"), timeout=20)
        assert tagged.split()[1] in ("NO", "BAD"), tagged
        c.send("a2 AUTHENTICATE LOGIN\r\n")
        c.expect_continuation()
        c.send(b64("ali\0ce") + "\r\n")
        line = c.readline(20)
        if line.startswith(b"+"):            # asked for the password anyway
            c.send(b64("alicepw") + "\r\n")
            line = c.readline(20)
        assert line.startswith(b"a2 NO") or line.startswith(b"a2 BAD"), line
        c.send(b"a3 LOGIN {6+}\r\nali\nce alicepw\r\n")
        _, tagged = c.read_response("a3", timeout=20)
        assert tagged.split()[1] in ("NO", "BAD"), tagged
        _, tagged = c.cmd("s1 SELECT INBOX")
        assert tagged.startswith("s1 BAD"), tagged       # none of them logged in


# -- pre-auth limits and junk ---------------------------------------------------

def test_preauth_select_is_bad(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        for i, line in enumerate(("SELECT INBOX", "FETCH 1 BODY[]", "APPEND INBOX {3}",
                                  "IDLE", "LIST \"\" *")):
            _, tagged = c.cmd("x%d %s" % (i, line))
            assert tagged.startswith("x%d BAD" % i), tagged
        ok(c.cmd("n1 NOOP")[1], "n1")


def test_garbage_lines_are_bad(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        for i, junk in enumerate(["FOOBAR", "LOGIN", 'LOGIN "unterminated',
                                  "LOGIN onlyuser", "AUTHENTICATE",
                                  "AUTHENTICATE FOO", "\x01\x02\x7f junk"]):
            c.send("g%d %s\r\n" % (i, junk))
            line = c.readline().decode("latin-1")
            # a tagged BAD/NO, or (for a line whose tag is unreadable) * BAD
            assert re.match(r"(g%d (BAD|NO)|\* BAD)" % i, line), (junk, line)
        # a line that is not even "tag SP command"
        c.send("garbage\r\n")
        line = c.readline()
        assert line.startswith(b"* BAD") or line.startswith(b"garbage BAD"), line
        ok(c.cmd("n1 NOOP")[1], "n1")


def test_too_long_line_gets_bye_and_close(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        try:
            c.send("x1 LOGIN alice " + "a" * 20000 + "\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = c.read_until_eof(10)
        assert b"* BYE" in data, data


def test_too_many_preauth_commands(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        bye_at = None
        for i in range(1, 41):
            c.send("n%d NOOP\r\n" % i)
            line = c.readline()
            if line.startswith(b"* BYE"):
                bye_at = i
                break
            assert line.startswith(b"n%d OK" % i), line
        assert bye_at is not None, "no BYE after 40 pre-auth commands"
        assert 30 <= bye_at <= 34, bye_at
        c.read_until_eof(5)


# -- STARTTLS injection ---------------------------------------------------------

def test_starttls_discards_pipelined_commands(mfagate, tls_ctx):
    with RawImap.connect(mfagate.ports["imap"]) as c:
        c.send(b"a STARTTLS\r\nb CAPABILITY\r\n")       # one packet
        line = c.readline()
        assert line.startswith(b"a OK"), line
        extra = c.quiet_for(0.3)                        # nothing in cleartext either
        assert extra == b"", extra
        c.starttls(tls_ctx)
        late = c.quiet_for(1.5)
        assert late == b"", "response to the injected command over TLS: %r" % late
        untagged, tagged = c.cmd("c CAPABILITY")
        ok(tagged, "c")
        assert not any(l.startswith("b ") for l in untagged)
        ok(c.cmd(login_line("l", "alice", "alicepw"), timeout=20)[1], "l")


def test_starttls_injection_of_login_is_discarded(mfagate, tls_ctx, dovecot):
    off = dovecot.log_mark()
    with RawImap.connect(mfagate.ports["imap"]) as c:
        c.send(b"a STARTTLS\r\nb LOGIN alice alicepw\r\n")
        assert c.readline().startswith(b"a OK")
        c.starttls(tls_ctx)
        assert c.quiet_for(1.0) == b""
        _, tagged = c.cmd("s SELECT INBOX")
        assert tagged.startswith("s BAD"), tagged        # not logged in
    end = dovecot.log_mark()
    assert "Login: user=<alice>" not in dovecot.log_text()[off:end]


# -- ID and client address forwarding ------------------------------------------

def test_id_before_login_and_address_forwarded(mfagate, dovecot, tls_ctx):
    off = dovecot.log_size()
    # Connect from 127.0.0.2: mfagate's own backend connection comes from
    # 127.0.0.1, so rip=127.0.0.2 in Dovecot's log proves the forwarding.
    with RawImap.connect(mfagate.ports["imaps"], tls=tls_ctx, source="127.0.0.2") as c:
        untagged, tagged = c.cmd('i1 ID ("name" "pytest" "version" "1")')
        ok(tagged, "i1")
        assert any(l.startswith("* ID ") for l in untagged), untagged
        ok(c.cmd("l1 LOGIN alice alicepw", timeout=20)[1], "l1")
        ok(c.cmd("s1 SELECT INBOX")[1], "s1")
    dovecot.wait_log(r"imap-login: (?:Info: )?Login: user=<alice>[^\n]*rip=127\.0\.0\.2", since=off)


def test_id_nil(mfagate, tls_ctx):
    with tls_client(mfagate, tls_ctx) as c:
        untagged, tagged = c.cmd("i1 ID NIL")
        ok(tagged, "i1")
        assert any(l.startswith("* ID ") for l in untagged), untagged


# -- real clients: curl -----------------------------------------------------------

def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_curl_imaps_and_starttls(mfagate, cafile, tls_ctx):
    p = mfagate.ports
    cp = curl("--cacert", cafile, "imaps://127.0.0.1:%d/INBOX" % p["imaps"],
              "-u", "alice:alicepw")
    assert cp.returncode == 0, cp.stderr
    assert "INBOX" in cp.stdout
    cp = curl("--cacert", cafile, "--ssl-reqd", "imap://127.0.0.1:%d/INBOX" % p["imap"],
              "-u", "alice:alicepw")
    assert cp.returncode == 0, cp.stderr
    assert "INBOX" in cp.stdout
    # fetch a message by UID
    c = imaps(mfagate, tls_ctx)
    c.login("alice", "alicepw")
    msg = make_message(2000, "for curl")
    uid = append_uid(c.append("INBOX", None, None, msg)[1])
    c.logout()
    cp = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", cafile,
                         "imaps://127.0.0.1:%d/INBOX;UID=%s" % (p["imaps"], uid),
                         "-u", "alice:alicepw"], capture_output=True)
    assert cp.returncode == 0, cp.stderr
    assert sha256(cp.stdout) == sha256(msg)
    cp = curl("--cacert", cafile, "imaps://127.0.0.1:%d/INBOX" % p["imaps"],
              "-u", "alice:wrong")
    assert cp.returncode == 67, (cp.returncode, cp.stderr)     # login denied
