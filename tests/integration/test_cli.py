"""The operator's interface: check-config, serve's signals, state_dir."""
import os
import signal
import socket
import stat
import time

import pytest

from rawimap import RawImap


def conf_with(mg, tmp_path, name, section, line):
    """A copy of mg's config with `line` added as the first line of [section];
    (path, line number of the added line)."""
    out, lineno = [], None
    for text in mg.config_text().splitlines():
        out.append(text)
        if text.strip() == "[%s]" % section:
            out.append(line)
            lineno = len(out)
    assert lineno, section
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path, lineno


def replaced(mg, tmp_path, name, section, key, value):
    out, lineno, cur = [], None, None
    for text in mg.config_text().splitlines():
        s = text.strip()
        if s.startswith("["):
            cur = s[1:-1]
        elif cur == section and s.split("=", 1)[0].strip() == key:
            text = "%s = %s" % (key, value)
            lineno = len(out) + 1
        out.append(text)
    assert lineno, (section, key)
    path = str(tmp_path / name)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path, lineno


def test_check_config_good(make_mfagate):
    mg = make_mfagate(start=False)
    cp = mg.cli("check-config", check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)


def test_check_config_master_password_file(make_mfagate):
    mg = make_mfagate(start=False, master_password_file=True)
    cp = mg.cli("check-config", check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)


@pytest.mark.parametrize("section,line", [
    ("limits", "no_such_key = 1"),
    ("server", "wrokers = 2"),
    ("backend", "imap_tsl = no"),
])
def test_check_config_reports_file_and_line(make_mfagate, tmp_path, section, line):
    mg = make_mfagate(start=False)
    path, lineno = conf_with(mg, tmp_path, "bad.conf", section, line)
    cp = mg.cli("check-config", conf=path, check=False)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert "%s:%d:" % (path, lineno) in cp.stdout + cp.stderr, (cp.stdout, cp.stderr)


def test_check_config_unknown_section(make_mfagate, tmp_path):
    mg = make_mfagate(start=False)
    path = str(tmp_path / "sec.conf")
    text = mg.config_text() + "\n[nonsense]\nkey = value\n"
    with open(path, "w") as f:
        f.write(text)
    cp = mg.cli("check-config", conf=path, check=False)
    assert cp.returncode == 1
    assert path + ":" in cp.stdout + cp.stderr


@pytest.mark.parametrize("section,key,value", [
    ("listen", "imaps", "127.0.0.1:99999"),
    ("listen", "imap", "127.0.0.1:http"),
    ("backend", "imap", "70000"),
    ("backend", "pop3", "-1"),
    ("backend", "imap_tls", "maybe"),
    ("limits", "preauth_timeout", "soon"),
    ("server", "allow_plaintext_auth", "perhaps"),
])
def test_check_config_bad_value(make_mfagate, tmp_path, section, key, value):
    mg = make_mfagate(start=False)
    path, lineno = replaced(mg, tmp_path, "port.conf", section, key, value)
    cp = mg.cli("check-config", conf=path, check=False)
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert "%s:%d:" % (path, lineno) in cp.stdout + cp.stderr, (cp.stdout, cp.stderr)


def test_serve_refuses_bad_config(make_mfagate, tmp_path):
    import subprocess
    mg = make_mfagate(start=False)
    path, _ = conf_with(mg, tmp_path, "bad.conf", "server", "bogus = 1")
    cp = subprocess.run([mg.bin, "serve", "-c", path], capture_output=True, text=True,
                        timeout=20, stdin=subprocess.DEVNULL)
    assert cp.returncode != 0
    assert path + ":" in cp.stdout + cp.stderr


def test_state_dir_created_private(make_mfagate):
    mg = make_mfagate()
    st = os.stat(os.path.join(mg.dir, "state"))
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)


def test_sigterm_idle_server_exits_0(make_mfagate):
    mg = make_mfagate()
    t = time.monotonic()
    mg.signal(signal.SIGTERM)
    assert mg.wait(10) == 0, mg.log_tail()
    assert time.monotonic() - t < 5


def test_sigterm_with_open_session_exits_0_after_grace(make_mfagate, tls_ctx):
    mg = make_mfagate(overrides={"limits": {"shutdown_grace": "2s"}})
    with RawImap.connect(mg.ports["imaps"], tls=tls_ctx) as c:
        assert c.cmd("l LOGIN alice alicepw", timeout=20)[1].startswith("l OK")
        assert c.cmd("s SELECT INBOX")[1].startswith("s OK")
        t = time.monotonic()
        mg.signal(signal.SIGTERM)
        # stops accepting at once
        deadline = time.monotonic() + 3
        while True:
            try:
                socket.create_connection(("127.0.0.1", mg.ports["imaps"]), 0.5).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "still accepting after SIGTERM"
            time.sleep(0.05)
        # the open session may go on during the grace period
        assert c.cmd("n NOOP")[1].startswith("n OK")
        rc = mg.wait(2 + 8)
        assert rc == 0, (rc, mg.log_tail())
        assert time.monotonic() - t < 2 + 8
        c.read_until_eof(3)
