"""The harness itself, against Dovecot directly (no mfagate involved).

If these fail, the other modules' failures say nothing about mfagate.
"""
import imaplib
import os
import poplib
import smtplib
import socket
import subprocess
import time

from mfagate import REPO_ROOT
from rawimap import RawImap, b64


def test_mkcert_is_idempotent_and_valid(tmp_path, cafile):
    script = os.path.join(REPO_ROOT, "certs", "mkcert.sh")
    subprocess.run(["bash", script, str(tmp_path)], check=True, capture_output=True)
    crt = (tmp_path / "server.crt").read_bytes()
    cp = subprocess.run(["bash", script, str(tmp_path)], check=True,
                        capture_output=True, text=True)
    assert "nothing to do" in cp.stdout
    assert (tmp_path / "server.crt").read_bytes() == crt
    assert (tmp_path / "server.key").stat().st_mode & 0o077 == 0
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "server.crt"),
                           "-noout", "-text"], check=True, capture_output=True,
                          text=True).stdout
    assert "prime256v1" in text or "P-256" in text
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text


def test_dovecot_login_and_master_user(dovecot):
    c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
    assert c.login("alice", "alicepw")[0] == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
    secret = dovecot.master_password.encode()
    assert c.authenticate("PLAIN", lambda _: b"bob\0mfagate\0" + secret)[0] == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
    assert c.login("carol*mfagate", dovecot.master_password)[0] == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
    try:
        c.authenticate("PLAIN", lambda _: b"bob\0mfagate\0wrong")
        raise AssertionError("wrong master password accepted")
    except imaplib.IMAP4.error:
        pass
    c.logout()


def test_dovecot_takes_client_address_from_id(dovecot):
    off = dovecot.log_size()
    with RawImap.connect(dovecot.ports["imap"]) as c:
        untagged, tagged = c.cmd('i1 ID ("x-originating-ip" "10.1.2.3")')
        assert tagged.startswith("i1 OK")
        _, tagged = c.cmd("l1 AUTHENTICATE PLAIN " + b64("\0alice\0alicepw"))
        assert tagged.startswith("l1 OK"), tagged
    dovecot.wait_log(r"Login: user=<alice>, method=PLAIN, rip=10\.1\.2\.3", since=off)


def test_dovecot_failed_logins_do_not_stall(dovecot):
    for _ in range(3):
        c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
        t = time.monotonic()
        try:
            c.login("alice", "wrong")
        except imaplib.IMAP4.error:
            pass
        assert time.monotonic() - t < 1.5
        c.logout()
    c = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
    t = time.monotonic()
    c.login("alice", "alicepw")
    assert time.monotonic() - t < 1.0
    c.logout()


def test_dovecot_idle_sees_append(dovecot):
    with RawImap.connect(dovecot.ports["imap"]) as c:
        assert c.cmd("l LOGIN alice alicepw")[1].startswith("l OK")
        assert c.cmd("s SELECT INBOX")[1].startswith("s OK")
        c.send("i IDLE\r\n")
        c.expect_continuation()
        other = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=10)
        other.login("alice", "alicepw")
        other.append("INBOX", None, None, b"Subject: idle\r\n\r\nhi\r\n")
        other.logout()
        line = c.readline(5)
        assert line.startswith(b"* ") and line.rstrip().endswith(b"EXISTS"), line
        c.send("DONE\r\n")
        assert c.read_response("i")[1].startswith("i OK")


def test_dovecot_pop3_and_submission_to_sink(dovecot):
    p = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=10)
    p.user("bob*mfagate")
    assert p.pass_(dovecot.master_password).startswith(b"+OK")
    p.quit()
    before = len(dovecot.sink.messages())
    s = smtplib.SMTP("127.0.0.1", dovecot.ports["submission"], timeout=10)
    s.login("carol", "carolpw")
    s.sendmail("carol@localhost", ["someone@example.com"],
               b"Subject: via submission\r\n\r\nhello\r\n")
    s.quit()
    msgs = dovecot.sink.wait_messages(before + 1)
    assert b"X-Sink-Rcpt-To: <someone@example.com>" in msgs[-1]
    assert b"Subject: via submission" in msgs[-1]


def test_dovecot_stop_and_start_again(fresh_dovecot):
    port = fresh_dovecot.ports["imap"]
    fresh_dovecot.stop()
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        raise AssertionError("port still open after stop()")
    except ConnectionRefusedError:
        pass
    fresh_dovecot.start()
    c = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    assert c.login("alice", "alicepw")[0] == "OK"
    c.logout()
