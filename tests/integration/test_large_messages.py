"""Big messages through the relay: byte-exact both ways."""
from helpers import (app_password, append_uid, fetch_body, imaps, logged_in,
                     make_message, sha256)

MiB = 1024 * 1024


def test_append_and_fetch_10_mib(mfagate, tls_ctx):
    msg = make_message(10 * MiB, "ten mebibytes")
    assert len(msg) >= 10 * MiB - 4096
    c = imaps(mfagate, tls_ctx, timeout=60)
    assert c.login("carol", "carolpw")[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    typ, data = c.append("INBOX", None, None, msg)       # a {n} literal
    assert typ == "OK", data
    uid = append_uid(data)
    body = fetch_body(c, uid)
    assert len(body) == len(msg)
    assert sha256(body) == sha256(msg)
    c.logout()


def test_append_1_mib_with_app_password_over_starttls(mfagate, tls_ctx):
    _, pw = app_password(mfagate, "bob", "Big client")
    msg = make_message(1 * MiB, "one mebibyte")
    c = logged_in(mfagate, tls_ctx, "bob", pw, starttls=True)
    assert c.select("INBOX")[0] == "OK"
    typ, data = c.append("INBOX", None, None, msg)
    assert typ == "OK", data
    uid = append_uid(data)
    assert sha256(fetch_body(c, uid)) == sha256(msg)
    c.logout()
    # and again from a fresh IMAPS session (a cache hit this time)
    c = logged_in(mfagate, tls_ctx, "bob", pw)
    c.select("INBOX", readonly=True)
    assert sha256(fetch_body(c, uid)) == sha256(msg)
    c.logout()
