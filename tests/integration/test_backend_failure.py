"""Backend down, or a black hole: a clean NO [UNAVAILABLE] in bounded time."""
import socket
import time

import pytest

from rawimap import RawImap, login_line


def unavailable(c, tag, user="alice", password="alicepw", bound=8.0):
    t = time.monotonic()
    _, tagged = c.cmd(login_line(tag, user, password), timeout=bound + 5)
    elapsed = time.monotonic() - t
    assert tagged.startswith(tag + " NO [UNAVAILABLE]"), tagged
    assert elapsed < bound, elapsed
    return elapsed


def test_backend_stopped_then_started(fresh_dovecot, make_mfagate, tls_ctx):
    mg = make_mfagate(backend=fresh_dovecot)
    with RawImap.connect(mg.ports["imaps"], tls=tls_ctx) as c:
        assert c.cmd("l LOGIN alice alicepw", timeout=20)[1].startswith("l OK")
    fresh_dovecot.stop()
    with RawImap.connect(mg.ports["imaps"], tls=tls_ctx) as c:
        unavailable(c, "l1", bound=5 + 3)
        assert c.cmd("n1 NOOP")[1].startswith("n1 OK")
        untagged, tagged = c.cmd("o1 LOGOUT")
        assert any(l.startswith("* BYE") for l in untagged) and tagged.startswith("o1 OK")
        c.read_until_eof(5)
    waiting = RawImap.connect(mg.ports["imaps"], tls=tls_ctx)
    try:
        unavailable(waiting, "l1", bound=5 + 3)
        fresh_dovecot.start()
        # the same connection logs in now that the backend is back
        assert waiting.cmd("l2 LOGIN alice alicepw", timeout=20)[1].startswith("l2 OK")
        assert waiting.cmd("s2 SELECT INBOX")[1].startswith("s2 OK")
    finally:
        waiting.close()
    with RawImap.connect(mg.ports["imap"]) as c:
        assert c.cmd("t STARTTLS")[1].startswith("t OK")


# proxy: the PROXY header is written before the connect completes (queued),
# and that write meets the refusal too.
@pytest.mark.parametrize("forward", ["yes", "proxy"])
def test_backend_closed_port(make_mfagate, tls_ctx, forward):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                   # nothing listens here now
    mg = make_mfagate(overrides={"backend": {"imap": port, "forward_client_addr": forward}})
    with RawImap.connect(mg.ports["imaps"], tls=tls_ctx) as c:
        unavailable(c, "l1", bound=5 + 3)
        assert c.cmd("n1 NOOP")[1].startswith("n1 OK")


def test_backend_black_hole(make_mfagate, tls_ctx):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)                             # accepts in the kernel, never speaks
    try:
        mg = make_mfagate(overrides={"backend": {"imap": hole.getsockname()[1]},
                                     "limits": {"backend_timeout": "2s"}})
        with RawImap.connect(mg.ports["imaps"], tls=tls_ctx) as c:
            elapsed = unavailable(c, "l1", bound=2 + 3)
            assert elapsed >= 1.5, elapsed      # it did wait for the greeting
            assert c.cmd("n1 NOOP")[1].startswith("n1 OK")
    finally:
        hole.close()
