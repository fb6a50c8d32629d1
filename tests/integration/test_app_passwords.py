"""Second factor on, account password off; app passwords on.

bob gets a TOTP factor (module fixture, this module's own mfagate state);
alice and carol keep none.  Tests run in file order; `revoke --all` is last.
"""
import json
import re
import time

import pytest

from helpers import (APP_PASSWORD_RX, app_password, imaps, list_entry, logged_in,
                     login_refusal, totp_enroll, wait_until)
from mfagate import GENERIC_REFUSAL, last_line
from rawimap import RawImap, b64, login_line


@pytest.fixture(scope="module")
def bob_totp(mfagate):
    return totp_enroll(mfagate, "bob")


def test_totp_enroll_prints_uri_and_lists_factor(mfagate, bob_totp):
    assert re.match(r"otpauth://totp/[^?]*bob[^?]*\?", bob_totp), bob_totp
    assert re.search(r"[?&]secret=[A-Z2-7]{16,}", bob_totp), bob_totp
    out = mfagate.cli("factor", "list", "bob").stdout
    assert "totp" in out.lower(), out


def test_account_password_refused_once_a_factor_is_bound(mfagate, tls_ctx, bob_totp):
    assert login_refusal(mfagate, tls_ctx, "bob", "bobpw") == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "bob", "bobpw", starttls=True) == GENERIC_REFUSAL
    # One text for every refusal: nobody learns who has a factor.
    assert login_refusal(mfagate, tls_ctx, "nosuchuser", "bobpw") == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "alice", "wrongpw") == GENERIC_REFUSAL
    with RawImap.connect(mfagate.ports["imaps"], tls=tls_ctx) as c:
        _, tagged = c.cmd("a1 AUTHENTICATE PLAIN " + b64("\0bob\0bobpw"), timeout=20)
        assert tagged == "a1 " + GENERIC_REFUSAL
        c.send("a2 AUTHENTICATE LOGIN\r\n")
        c.expect_continuation()
        c.send(b64("bob") + "\r\n")
        c.expect_continuation()
        c.send(b64("bobpw") + "\r\n")
        assert c.read_response("a2", timeout=20)[1] == "a2 " + GENERIC_REFUSAL
    # A user without a factor is unaffected.
    c = logged_in(mfagate, tls_ctx, "alice", "alicepw")
    c.logout()


def test_app_password_create_and_login_everywhere(mfagate, tls_ctx, bob_totp):
    cp = mfagate.cli("app-password", "create", "bob", "--name", "Foxmail")
    pw = last_line(cp.stdout)
    assert APP_PASSWORD_RX.match(pw), cp.stdout
    for typed in (pw, pw.replace(" ", "")):
        for starttls in (False, True):
            c = logged_in(mfagate, tls_ctx, "bob", typed, starttls=starttls)
            assert c.select("INBOX")[0] == "OK"
            c.logout()
    c = imaps(mfagate, tls_ctx)
    assert c.authenticate("PLAIN", lambda _: b"\0bob\0" + pw.encode())[0] == "OK"
    c.logout()
    # The account password still does not work, and a near miss does not either.
    assert login_refusal(mfagate, tls_ctx, "bob", "bobpw") == GENERIC_REFUSAL
    wrong = pw[:-1] + ("A" if pw[-1] != "A" else "B")
    assert login_refusal(mfagate, tls_ctx, "bob", wrong) == GENERIC_REFUSAL
    # ...nor for another user.
    assert login_refusal(mfagate, tls_ctx, "carol", pw) == GENERIC_REFUSAL


def test_json_create_and_list_with_last_used(mfagate, tls_ctx, bob_totp):
    ident, pw = app_password(mfagate, "bob", "Thunderbird")
    assert APP_PASSWORD_RX.match(pw) or re.fullmatch(r"[A-Za-z0-9]{16}", pw), pw
    text = mfagate.cli("app-password", "list", "bob").stdout
    assert "Thunderbird" in text and str(ident) in text, text
    entry = list_entry(mfagate, "bob", ident)
    assert entry is not None and entry.get("name") == "Thunderbird", entry
    assert "127.0.0.1" not in json.dumps(entry), entry       # never used yet
    c = logged_in(mfagate, tls_ctx, "bob", pw)
    c.logout()
    entry = wait_until(lambda: (lambda e: e if e and "127.0.0.1" in json.dumps(e) else None)(
        list_entry(mfagate, "bob", ident)), 10, 0.3, "last use (address) in list --json")
    assert "imap" in json.dumps(entry).lower(), entry
    text = mfagate.cli("app-password", "list", "bob").stdout
    assert "Thunderbird" in text and "127.0.0.1" in text, text


def test_revoke_refuses_and_ends_open_sessions(mfagate, tls_ctx, bob_totp):
    ident, pw = app_password(mfagate, "bob", "Revoked")
    keep_id, keep_pw = app_password(mfagate, "bob", "Kept")
    # Warm the verification cache, and keep one session open.
    logged_in(mfagate, tls_ctx, "bob", pw).logout()
    live = RawImap.connect(mfagate.ports["imaps"], tls=tls_ctx)
    other = RawImap.connect(mfagate.ports["imaps"], tls=tls_ctx)
    try:
        assert live.cmd(login_line("l1", "bob", pw), timeout=20)[1].startswith("l1 OK")
        assert live.cmd("s1 SELECT INBOX")[1].startswith("s1 OK")
        assert other.cmd(login_line("l1", "bob", keep_pw), timeout=20)[1].startswith("l1 OK")
        assert other.cmd("s1 SELECT INBOX")[1].startswith("s1 OK")

        mfagate.cli("app-password", "revoke", "bob", str(ident))
        t0 = time.monotonic()
        # Refused at once (the cache entry dies with the password).
        assert login_refusal(mfagate, tls_ctx, "bob", pw) == GENERIC_REFUSAL
        assert list_entry(mfagate, "bob", ident) is None
        # The open session is ended within a few seconds...
        live.read_until_eof(8)
        assert time.monotonic() - t0 < 8
        # ...and the other password's session is not.
        assert other.cmd("n1 NOOP")[1].startswith("n1 OK")
        c = logged_in(mfagate, tls_ctx, "bob", keep_pw)
        c.logout()
    finally:
        live.close()
        other.close()


def test_scope_limits_protocols(mfagate, tls_ctx, bob_totp):
    _, pop_pw = app_password(mfagate, "bob", "pop only", scope="pop3")
    assert login_refusal(mfagate, tls_ctx, "bob", pop_pw) == GENERIC_REFUSAL
    assert login_refusal(mfagate, tls_ctx, "bob", pop_pw, starttls=True) == GENERIC_REFUSAL
    ident, imap_pw = app_password(mfagate, "bob", "imap only", scope="imap")
    c = logged_in(mfagate, tls_ctx, "bob", imap_pw)
    c.logout()
    entry = list_entry(mfagate, "bob", ident)
    assert "imap" in json.dumps(entry.get("scope")).lower(), entry


def test_app_password_works_for_user_without_factor(mfagate, tls_ctx):
    _, pw = app_password(mfagate, "carol", "Phone")
    c = logged_in(mfagate, tls_ctx, "carol", pw)
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    c = logged_in(mfagate, tls_ctx, "carol", "carolpw")      # passthrough still
    c.logout()


def test_audit_shows_enrollment_and_creation(mfagate, bob_totp):
    def rows():
        out = mfagate.cli("audit", "bob").stdout
        return out if re.search(r"totp", out, re.I) and \
            re.search(r"app[-_ ]?p(?:ass)?w", out, re.I) else None
    out = wait_until(rows, 10, 0.3, "audit rows for totp enrollment and app-password creation")
    assert "bob" in out
    assert "alice" not in mfagate.cli("audit", "bob").stdout


def test_revoke_all(mfagate, tls_ctx, bob_totp):
    _, pw1 = app_password(mfagate, "bob", "one")
    _, pw2 = app_password(mfagate, "bob", "two")
    logged_in(mfagate, tls_ctx, "bob", pw1).logout()
    mfagate.cli("app-password", "revoke", "bob", "--all")
    for pw in (pw1, pw2):
        assert login_refusal(mfagate, tls_ctx, "bob", pw) == GENERIC_REFUSAL
    cp = mfagate.cli("app-password", "list", "bob", "--json")
    listed = json.loads(cp.stdout)
    assert not any(name in json.dumps(listed) for name in ('"one"', '"two"', "Foxmail")), listed
    # carol's passwords are untouched by bob's --all
    _, pw = app_password(mfagate, "carol", "Tablet")
    logged_in(mfagate, tls_ctx, "carol", pw).logout()
