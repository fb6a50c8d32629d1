"""IDLE outlives the pre-auth timeout; the pre-auth timeout itself works."""
import time

import pytest

from helpers import imaps
from mfagate import Mfagate
from rawimap import RawImap


@pytest.fixture(scope="module")
def short_mg(tmp_path_factory, dovecot, certdir):
    mg = Mfagate(str(tmp_path_factory.mktemp("mfagate-idle")), dovecot, certdir,
                 overrides={"limits": {"preauth_timeout": "2s"}})
    mg.start()
    yield mg
    mg.stop()


def test_idle_survives_preauth_timeout_and_sees_exists(short_mg, tls_ctx):
    with RawImap.connect(short_mg.ports["imaps"], tls=tls_ctx) as c:
        assert c.cmd("l LOGIN alice alicepw", timeout=20)[1].startswith("l OK")
        assert c.cmd("s SELECT INBOX")[1].startswith("s OK")
        c.send("i IDLE\r\n")
        c.expect_continuation()
        quiet = c.quiet_for(5.0)                    # > 2 s preauth_timeout
        assert quiet is not None, "IDLE session closed"
        assert b"BYE" not in quiet, quiet
        other = imaps(short_mg, tls_ctx)
        other.login("alice", "alicepw")
        other.append("INBOX", None, None, b"Subject: wake up\r\n\r\nidle test\r\n")
        other.logout()
        deadline = time.monotonic() + 5
        while True:
            line = c.readline(max(0.01, deadline - time.monotonic()))
            if line.startswith(b"* ") and line.rstrip().endswith(b"EXISTS"):
                break
        c.send("DONE\r\n")
        assert c.read_response("i")[1].startswith("i OK")
        assert c.cmd("n NOOP")[1].startswith("n OK")


def test_preauth_timeout_closes_idle_unauthenticated(short_mg, tls_ctx):
    with RawImap.connect(short_mg.ports["imaps"], tls=tls_ctx) as c:
        t = time.monotonic()
        data = c.read_until_eof(2 + 5)
        assert time.monotonic() - t >= 1.0
        assert data == b"" or b"BYE" in data, data


def test_preauth_timeout_on_cleartext_too(short_mg):
    with RawImap.connect(short_mg.ports["imap"]) as c:
        c.read_until_eof(2 + 5)
