"""Runs the mfagate binary for tests: config, serve, stop, CLI.

    mg = Mfagate(dir, dovecot, certdir, overrides={"limits": {"preauth_timeout": "2s"}})
    mg.start()                        # writes DIR/mfagate.conf, runs `mfagate serve -c`
    mg.ports["imaps"], mg.ports["imap"], ["pop3s"], ["pop3"], ["smtps"], ["smtp"]
    mg.cli("app-password", "create", "bob", "--name", "Foxmail").stdout
    mg.stop()                         # SIGTERM; asserts exit status 0 and a clean log

The binary is $MFAGATE_BIN (relative paths are relative to the repository
root), default <repo>/build/mfagate.  Its stderr goes to DIR/mfagate.log.
Every stop() and every cli() call fails the test if the output holds an
AddressSanitizer / LeakSanitizer / UndefinedBehaviorSanitizer report, so the
same tests catch memory errors when run against the ASan+UBSan build.
"""
import os
import re
import signal
import socket
import subprocess
import time

from dovecot import free_ports

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

SANITIZER_RX = re.compile(
    r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
    r"UndefinedBehaviorSanitizer|SUMMARY: AddressSanitizer|"
    r"WARNING: ThreadSanitizer|AddressSanitizer:DEADLYSIGNAL")

# Commands whose sub-command is a second word: `-c FILE` goes after it.
TWO_WORD = {"app-password", "totp", "factor"}

GENERIC_REFUSAL = ("NO [AUTHENTICATIONFAILED] Authentication failed. "
                   "With two-factor verification on, use a client-specific password.")
POP3_REFUSAL = ("-ERR [AUTH] Authentication failed. "
                "With two-factor verification on, use a client-specific password.")
SMTP_REFUSAL = ("535 5.7.8 Authentication failed. "
                "With two-factor verification on, use a client-specific password.")


def mfagate_bin():
    path = os.environ.get("MFAGATE_BIN", "build/mfagate")
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def sanitizer_env(env=None):
    env = dict(os.environ if env is None else env)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:"
                   "strict_string_checks=1:detect_stack_use_after_return=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


def check_sanitizer_output(text, what):
    m = SANITIZER_RX.search(text or "")
    if m:
        start = max(0, m.start() - 200)
        raise AssertionError("sanitizer report in %s:\n%s" % (what, text[start:start + 6000]))


class MfagateError(RuntimeError):
    pass


class Mfagate:
    """One mfagate server with its own directory, config and ports."""

    # Every mail listener; pass listen=(...) for fewer.
    DEFAULT_LISTEN = ("imaps", "imap", "pop3s", "pop3", "smtps", "smtp")
    # The web endpoint as well: "https" (TLS, the [tls] pair) and "http"
    # (cleartext, as behind a TLS-terminating reverse proxy).
    WEB_LISTEN = DEFAULT_LISTEN + ("https", "http")

    def __init__(self, directory, dovecot, certdir, overrides=None,
                 listen=DEFAULT_LISTEN, master_password_file=False, binary=None):
        self.dir = os.path.abspath(directory)
        os.makedirs(self.dir, exist_ok=True)
        self.dovecot = dovecot
        self.cert = os.path.join(certdir, "server.crt")
        self.key = os.path.join(certdir, "server.key")
        self.bin = binary or mfagate_bin()
        self.conf_path = os.path.join(self.dir, "mfagate.conf")
        self.log_path = os.path.join(self.dir, "mfagate.log")
        self.ports = dict(zip(listen, free_ports(len(listen))))
        self.overrides = overrides or {}
        self.master_password_file = master_password_file
        self.proc = None
        self.returncode = None
        self.write_config()

    # -- config -------------------------------------------------------------

    def sections(self):
        dc = self.dovecot
        backend = {
            "host": "127.0.0.1",
            "imap": str(dc.ports["imap"]),
            "pop3": str(dc.ports["pop3"]),
            "smtp": str(dc.ports["submission"]),
            "imap_tls": "no",
            "pop3_tls": "no",
            "smtp_tls": "no",
            "master_user": dc.master_user,
        }
        # Inbound mail (SMTP without AUTH) goes straight to the backend's
        # SMTP sink, the stand-in for the MTA on port 25.
        if getattr(dc, "sink", None) is not None:
            backend["smtp_inbound"] = str(dc.sink.port)
        if self.master_password_file:
            backend["master_password_file"] = dc.master_password_file
        else:
            backend["master_password"] = dc.master_password
        backend["forward_client_addr"] = "yes"
        secs = {
            "server": {"workers": "2", "state_dir": "./state",
                       "allow_plaintext_auth": "no", "log_level": "info"},
            "tls": {"cert": self.cert, "key": self.key},
            "listen": {k: "127.0.0.1:%d" % p for k, p in self.ports.items()},
            "backend": backend,
            "smtp": {"unauthenticated": "relay"},
            "limits": {"preauth_timeout": "60s", "idle_timeout": "30m",
                       "backend_timeout": "10s", "shutdown_grace": "5s",
                       "max_line": "8192", "max_literal": "8192",
                       "max_preauth_commands": "32"},
            "auth": {"argon2_memory_kib": "19456", "argon2_passes": "2",
                     "argon2_lanes": "1", "cache_ttl": "10m",
                     "cache_entries": "10000", "fail_lockout": "20",
                     "fail_lockout_time": "5m"},
        }
        for sec, kv in self.overrides.items():
            d = secs.setdefault(sec, {})
            for k, v in kv.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = str(v)
        return secs

    def config_text(self):
        out = ["; written by tests/integration/harness/mfagate.py"]
        for sec, kv in self.sections().items():
            out.append("[%s]" % sec)
            out.extend("%s = %s" % (k, v) for k, v in kv.items())
            out.append("")
        return "\n".join(out)

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())
        os.chmod(self.conf_path, 0o600)

    def web_url(self, path="/", tls=True):
        """URL of path on the https (tls=True) or http listener."""
        scheme = "https" if tls else "http"
        return "%s://127.0.0.1:%d%s" % (scheme, self.ports[scheme], path)

    # -- serve --------------------------------------------------------------

    def start(self, timeout=20.0):
        if not os.access(self.bin, os.X_OK):
            raise MfagateError("no mfagate binary at %s (build it, or set MFAGATE_BIN)"
                               % self.bin)
        self.write_config()
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([self.bin, "serve", "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         env=sanitizer_env(), start_new_session=True)
        finally:
            log.close()
        self.returncode = None
        deadline = time.monotonic() + timeout
        for name, port in self.ports.items():
            while True:
                if self.proc.poll() is not None:
                    self.returncode = self.proc.returncode
                    raise MfagateError("mfagate exited with %s during start:\n%s"
                                       % (self.proc.returncode, self.log_tail()))
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise MfagateError("mfagate: %s port %d not accepting after %.0fs:\n%s"
                                       % (name, port, timeout, self.log_tail()))
                time.sleep(0.05)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; the status, or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=None, expect_rc=0, check_log=True):
        """SIGTERM, wait (grace + slack), SIGKILL after that; checks status and log."""
        proc = self.proc
        if proc is None:
            return self.returncode
        if timeout is None:
            timeout = _seconds(self.sections()["limits"].get("shutdown_grace", "5s")) + 10
        killed = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                killed = True
                self.kill()
        self.returncode = proc.returncode
        self.proc = None
        if check_log:
            check_sanitizer_output(self.log_text(), self.log_path)
        if killed:
            raise AssertionError("mfagate did not exit within %.0fs of SIGTERM; log tail:\n%s"
                                 % (timeout, self.log_tail()))
        if expect_rc is not None and self.returncode != expect_rc:
            raise AssertionError("mfagate exited with %s, expected %s; log tail:\n%s"
                                 % (self.returncode, expect_rc, self.log_tail()))
        return self.returncode

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is None:
            self.stop()
        else:
            try:
                self.stop()
            except AssertionError:
                pass

    # -- CLI ----------------------------------------------------------------

    def argv(self, *args, conf=None):
        args = [str(a) for a in args]
        n = 2 if args and args[0] in TWO_WORD else 1
        return [self.bin] + args[:n] + ["-c", conf or self.conf_path] + args[n:]

    def cli(self, *args, check=True, timeout=60, conf=None, input=None):
        """Runs `mfagate ARGS` with this config; a CompletedProcess (text)."""
        if not os.access(self.bin, os.X_OK):
            raise MfagateError("no mfagate binary at %s" % self.bin)
        argv = self.argv(*args, conf=conf)
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            cwd=self.dir, env=sanitizer_env(), input=input,
                            stdin=None if input is not None else subprocess.DEVNULL)
        check_sanitizer_output(cp.stderr, "stderr of %s" % " ".join(argv))
        if check and cp.returncode != 0:
            raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s"
                                 % (" ".join(argv), cp.returncode, cp.stdout, cp.stderr))
        return cp

    # -- logs ---------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


def last_line(text):
    lines = [l for l in (text or "").splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


def _seconds(text):
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        return 5.0
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
