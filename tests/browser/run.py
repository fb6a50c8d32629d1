#!/usr/bin/python3
"""Runs the browser tests: a real Dovecot and mfagate (the integration
harness), then headless Chromium driven by playwright-core from node's
built-in test runner (tests/browser/tests/*.test.mjs).

    python3 tests/browser/run.py                 # every test file
    python3 tests/browser/run.py otp apppw       # files whose name contains a word
    MFAGATE_BIN=build-ui/mfagate python3 tests/browser/run.py

Needs: the mfagate binary ($MFAGATE_BIN, default build/mfagate), Dovecot,
/usr/bin/chromium ($CHROMIUM) and tests/browser/node_modules (npm ci
--prefix tests/browser; scripts/setup.sh does both).

Two servers are started: the one the tests use, and a second one whose
backend port is closed (MFA_DEAD_URL), for the "backend unavailable" screen.
Screenshots go to tests/browser/out/<test>/ (gitignored).  The last line is
a summary "browser tests: N passed, N failed"; the exit status is node's
(0 only if every test passed), or 1 if a server did not start or stop
cleanly.  On failure the servers' directories are kept and their log tails
printed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration", "harness"))

from dovecot import Dovecot, free_ports  # noqa: E402
from mfagate import Mfagate  # noqa: E402
from smtpsink import SmtpSink  # noqa: E402
try:  # the stand-in for WeChat's server API (issue 5)
    import wechat as wechat_harness  # noqa: E402
except ImportError:
    wechat_harness = None

# One user per test file (a TOTP code is good once per user, and trusted
# devices are per user), so the files can run in parallel.
USERS = {name: "%s-pass-42" % name for name in (
    "una", "otto", "tess", "pam", "lin", "eli", "dee", "erin", "vic",
    # wechat-*.test.mjs
    "wbind", "wtrust", "wtemp", "wcode", "wdeny", "wexp", "wunscan", "wuncode",
    "wrebind", "wdown", "wpush")}

# The mail listeners as well as https: the client-specific password is tried
# over IMAPS, and the settings table shows every port.
LISTEN = ("imaps", "imap", "pop3s", "pop3", "smtps", "smtp", "https")


def node_version(node):
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
        return tuple(int(x) for x in out.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError):
        return (0, 0)


class WechatServers:
    """WeChat for the browser tests (issue 5): the stand-in for WeChat's
    server API (tests/wechat_standin.py through harness/wechat.py), whose
    [wechat] section the main mfagate gets; and, when WeChat test files run,
    two more https-only servers: one with its own stand-in that
    wechat-down switches off (the others keep theirs), and one with a short
    scene lifetime for wechat-expired, if the binary takes [wechat]
    scene_ttl.  Without harness/wechat.py, nothing (WeChat stays off)."""

    SHORT_TTL = "8s"

    def __init__(self, work, dc, certdir, extra):
        self.work, self.dc, self.certdir, self.extra = work, dc, certdir, extra
        self.wx = self.wx_down = None
        self.mg_down = self.mg_short = None

    def _standin(self, name):
        return wechat_harness.WechatStandin(os.path.join(self.work, name)).start()

    def start(self):
        """Starts the main stand-in; the overrides for the main mfagate."""
        if wechat_harness is None:
            return {}
        self.wx = self._standin("wechat")
        return {"wechat": self.wx.config(qr="wxacode")}

    def start_extra(self):
        if self.wx is None or not self.extra:
            return
        self.wx_down = self._standin("wechat-down")
        self.mg_down = Mfagate(os.path.join(self.work, "mfagate-wxdown"), self.dc, self.certdir,
                               listen=("https",),
                               overrides={"wechat": self.wx_down.config(qr="wxacode")})
        self.mg_down.start()
        short = Mfagate(os.path.join(self.work, "mfagate-short"), self.dc, self.certdir,
                        listen=("https",),
                        overrides={"wechat": self.wx.config(qr="wxacode",
                                                            scene_ttl=self.SHORT_TTL)})
        if short.cli("check-config", check=False).returncode == 0:
            self.mg_short = short.start()
        else:
            print("run.py: this mfagate has no [wechat] scene_ttl: wechat-expired waits "
                  "out the default scene lifetime (5 minutes)", flush=True)

    def env(self):
        e = {}
        if self.wx is not None:
            e["MFA_WECHAT_STANDIN"] = self.wx.base
        if self.mg_down is not None:
            e["MFA_WXDOWN_URL"] = self.mg_down.web_url("").rstrip("/")
            e["MFA_WXDOWN_STANDIN"] = self.wx_down.base
        if self.mg_short is not None:
            e["MFA_SHORT_URL"] = self.mg_short.web_url("").rstrip("/")
            e["MFA_SHORT_TTL"] = self.SHORT_TTL
        return e

    def servers(self):
        return (self.mg_down, self.mg_short)

    def stop(self):
        for wx in (self.wx, self.wx_down):
            if wx is not None:
                wx.stop()


def main(argv):
    words = [a for a in argv if not a.startswith("-")]
    node = shutil.which("node") or "/usr/bin/node"
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        print("run.py: no Chromium at %s (apt-get install chromium, or set CHROMIUM)" % chromium)
        return 1
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        print("run.py: tests/browser/node_modules is missing (npm ci --prefix tests/browser)")
        return 1

    test_dir = os.path.join(HERE, "tests")
    files = sorted(f for f in os.listdir(test_dir) if f.endswith(".test.mjs"))
    if words:
        files = [f for f in files if any(w in f for w in words)]
    if not files:
        print("run.py: no test file matches %s" % " ".join(words))
        return 1

    work = tempfile.mkdtemp(prefix="mfa-browser-")
    certdir = os.path.join(work, "certs")
    subprocess.run(["bash", os.path.join(REPO, "certs", "mkcert.sh"), certdir],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)

    dc = Dovecot(os.path.join(work, "dovecot"), users=USERS)
    # mfagate's [mail] relay: e-mail codes land as files the tests read.
    mail_dir = os.path.join(work, "mail")
    sink = SmtpSink(mail_dir).start()
    mg = mg_dead = None
    wechat = WechatServers(work, dc, certdir,
                           extra=any(f.startswith("wechat-") for f in files))
    ok = False
    rc = 1
    counts = {"pass": 0, "fail": 0}
    try:
        dc.start()
        overrides = {"mail": {"relay": "smtp://127.0.0.1:%d" % sink.port,
                              "from": "mfagate@example.test"}}
        overrides.update(wechat.start())
        mg = Mfagate(os.path.join(work, "mfagate"), dc, certdir, listen=LISTEN,
                     overrides=overrides)
        mg.start()
        wechat.start_extra()
        # Nothing listens on this port: every backend login fails to connect.
        dead_port = free_ports(1)[0]
        mg_dead = Mfagate(os.path.join(work, "mfagate-dead"), dc, certdir, listen=("https",),
                          overrides={"backend": {"imap": dead_port, "pop3": dead_port,
                                                 "smtp": dead_port}})
        mg_dead.start()
        out_dir = os.path.join(HERE, "out")
        os.makedirs(out_dir, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "MFA_BASE_URL": mg.web_url("").rstrip("/"),
            "MFA_DEAD_URL": mg_dead.web_url("").rstrip("/"),
            "MFA_PORTS": json.dumps(mg.ports),
            "MFA_USERS": json.dumps(USERS),
            "MFA_OUT_DIR": out_dir,
            "MFA_CHROMIUM": chromium,
            "MFA_CAFILE": os.path.join(certdir, "server.crt"),
            "MFA_MAIL_DIR": mail_dir,
            "MFA_PHONE_SIM": os.path.join(REPO, "tests", "phone_sim.py"),
        })
        env.update(wechat.env())
        cmd = [node, "--test", "--test-reporter=spec", "--test-reporter-destination=stdout"]
        if node_version(node) >= (20, 10):
            # One Chromium per test file; files use different users.
            cmd.insert(2, "--test-concurrency=" + os.environ.get("MFA_BROWSER_JOBS", "3"))
        cmd += [os.path.join(test_dir, f) for f in files]
        print("run.py: %s" % " ".join(cmd[:5] + files), flush=True)
        proc = subprocess.Popen(cmd, cwd=HERE, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            sys.stdout.write(line)
            m = re.match(r"^\S*\s*(pass|fail) (\d+)\s*$", line.strip())
            if m:
                counts[m.group(1)] = int(m.group(2))
        rc = proc.wait()
        ok = rc == 0
    finally:
        for server in (mg, mg_dead) + wechat.servers():
            if server is None:
                continue
            try:
                server.stop()
            except AssertionError as e:
                print("run.py: mfagate did not stop cleanly: %s" % e)
                ok, rc = False, rc or 1
        wechat.stop()
        dc.close()
        sink.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            if mg is not None:
                print("\n--- mfagate log tail (%s)\n%s" % (mg.log_path, mg.log_tail(60)))
            print("run.py: servers' files kept in %s" % work)
    print("browser tests: %d passed, %d failed" % (counts["pass"], counts["fail"]))
    return 0 if ok else (rc or 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
