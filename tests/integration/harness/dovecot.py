#!/usr/bin/python3
"""A standalone Dovecot 2.3 for tests and the demo.

    dc = Dovecot("/some/fresh/dir")      # writes nothing yet
    dc.start()                            # writes dovecot.conf, starts dovecot -F
    dc.ports["imap"], dc.ports["pop3"], dc.ports["submission"]
    dc.stop(); dc.start()                 # same ports, same mail
    dc.close()                            # stop + remove the short base_dir

Everything lives in the given directory (config, passwd-files, maildirs, state,
the log `dovecot.log`, the SMTP sink's messages) except base_dir, which holds
Dovecot's UNIX sockets and must be short (sun_path is 108 bytes; pytest's
tmp_path is not), so it is a fresh /tmp/dc-XXXXXX removed by close().  The
system /etc/dovecot is never read, and nothing listens beyond 127.0.0.1.

Facts this config relies on (Dovecot 2.3.19, measured here):

- Users alice/alicepw, bob/bobpw, carol/carolpw ({PLAIN} passwd-file), and a
  master user (`mfagate`, random secret) in a second passdb with
  `master = yes` and `pass = yes`, `auth_master_user_separator = *`: then
  AUTHENTICATE PLAIN with authzid=alice, authcid=mfagate works, as does
  `LOGIN alice*mfagate SECRET`.
- `login_trusted_networks = 127.0.0.0/8`: Dovecot takes the client address
  from IMAP `ID ("x-originating-ip" ...)` (logged as rip=...) and from XCLIENT.
- Running as root: mail processes run as the system user `mail` (the
  passwd-file entries carry its uid/gid; first_valid_uid/last_valid_uid are
  narrowed to it); the maildirs are chown'ed to it; auth runs as
  default_internal_user `dovecot`, login processes as default_login_user
  `dovenull`.  So the files must be reachable by those users: the directory is
  made 0755 and every ancestor that lacks the "other" execute bit gets it
  (traverse only, no listing; pytest's /tmp/pytest-of-root is 0700).
- Failed logins must not stall later ones (every proxied login comes from
  127.0.0.1): `auth_failure_delay = 0` is valid in 2.3 (a time setting; 0
  answers failures at once instead of after 2 s), and the per-address auth
  penalty (anvil, 2..15 s after failures from one IP) is switched off by making
  anvil's `anvil-auth-penalty` listener unusable (`mode = 0`): the auth
  process then cannot reach it and skips the penalty.
- Speed: login processes serve many connections (`service_count = 0`,
  `process_min_avail`), imap/pop3 processes are reused, auth cache on.
- Submission relays to a small local SMTP sink (smtpsink.py) running in this
  Python process; its messages land in DIR/sink/.
- Opt-in `haproxy=True`: imap, pop3 and submission each get a second
  inet_listener with `haproxy = yes` on its own port (ports["imap_haproxy"],
  ["pop3_haproxy"], ["submission_haproxy"]) and `haproxy_trusted_networks =
  127.0.0.0/8`.  Such a listener expects a HAProxy PROXY header (v1 or v2)
  as the first bytes of every connection; Dovecot then logs the header's
  source as rip=... (and its destination as lip=...).  Without a header it
  greets nobody and drops the connection after `haproxy_timeout` (3 s by
  default; the `haproxy_timeout` argument sets it).  proxy_v2_header() builds
  a v2 header.  The normal listeners stay as they are.

Also a program for the demo:
    dovecot.py --dir DIR [--imap-port N ...] [--master-password S]
prints DOVECOT_*=... lines (also written to DIR/ports.env) and runs until
SIGINT/SIGTERM.
"""
import argparse
import grp
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtpsink import SmtpSink  # noqa: E402

DOVECOT_BIN = os.environ.get("DOVECOT_BIN", "/usr/sbin/dovecot")

DEFAULT_USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}
MASTER_USER = "mfagate"


def free_ports(n, host="127.0.0.1"):
    """n distinct TCP ports that were free a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def make_traversable(path):
    """Gives `path` and all its ancestors the o+x bit if they lack it."""
    path = os.path.abspath(path)
    while True:
        st = os.stat(path)
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


# The 12-byte signature that opens every PROXY protocol v2 header.
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2_header(src=None, dst=None, command="PROXY"):
    """A HAProxy PROXY protocol v2 header (bytes).  src and dst are (address,
    port) pairs, both IPv4 or both IPv6 (TCP over that family); command
    "LOCAL" (src/dst ignored) says that the connection is the proxy's own
    (a health check): the receiver keeps the real peer address."""
    if command == "LOCAL":
        return PROXY_V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    sa, da = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if sa.version != da.version:
        raise ValueError("source and destination of different families")
    fam = 0x11 if sa.version == 4 else 0x21          # TCP over IPv4 / IPv6
    body = sa.packed + da.packed + struct.pack("!HH", src[1], dst[1])
    return PROXY_V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def wait_greeting(host, port, prefix, timeout, first=b""):
    """Connects, sends `first` (if any), reads one line; True if it starts
    with prefix."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            if first:
                s.sendall(first)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return data.startswith(prefix)
    except OSError:
        return False


class DovecotError(RuntimeError):
    pass


class Dovecot:
    """One Dovecot instance in its own directory, on free loopback ports."""

    PROTOCOLS = ("imap", "pop3", "submission")
    # With haproxy=True: the port names of the PROXY-protocol listeners.
    HAPROXY_PORTS = tuple(p + "_haproxy" for p in PROTOCOLS)

    def __init__(self, directory, users=None, master_password=None,
                 ports=None, extra_conf="", sink=True, host="127.0.0.1",
                 haproxy=False, haproxy_timeout=None):
        self.dir = os.path.abspath(directory)
        self.host = host
        self.haproxy = bool(haproxy)
        self.haproxy_timeout = haproxy_timeout   # e.g. "3 secs"; None: Dovecot's
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.master_user = MASTER_USER
        self.master_password = master_password or secrets.token_hex(12)
        self.extra_conf = extra_conf
        self.ports = dict(ports or {})
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.master_password_file = os.path.join(self.dir, "master-password")
        self.base_dir = None
        self.proc = None
        self.sink = None
        self._want_sink = sink
        self._prepared = False

    # -- setup ------------------------------------------------------------

    def _ids(self):
        """(mail uid, mail gid, internal user, login user) for this run."""
        if os.geteuid() == 0:
            pw = pwd.getpwnam("mail")
            return pw.pw_uid, pw.pw_gid, "dovecot", "dovenull"
        me = pwd.getpwuid(os.geteuid()).pw_name
        return os.geteuid(), os.getegid(), me, me

    def _prepare(self):
        if self._prepared:
            return
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        make_traversable(self.dir)
        uid, gid, internal, _ = self._ids()
        for sub in ("state", "home"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(os.path.join(self.dir, "home"), 0o755)
        for user in self.users:
            home = os.path.join(self.dir, "home", user)
            os.makedirs(home, exist_ok=True)
            if os.geteuid() == 0:
                for root, dirs, files in os.walk(home):
                    os.chown(root, uid, gid)
                    for f in files:
                        os.chown(os.path.join(root, f), uid, gid)
            os.chmod(home, 0o700)
        auth_gid = grp.getgrnam(internal).gr_gid if os.geteuid() == 0 else -1
        self._write_secret("users", "".join(
            "%s:{PLAIN}%s:%d:%d::%s::\n"
            % (u, p, uid, gid, os.path.join(self.dir, "home", u))
            for u, p in self.users.items()), auth_gid)
        self._write_secret("master-users", "%s:{PLAIN}%s\n"
                           % (self.master_user, self.master_password), auth_gid)
        self._write_secret("master-password", self.master_password + "\n", -1)
        if not self.ports:
            self.ports = dict(zip(self.PROTOCOLS, free_ports(len(self.PROTOCOLS))))
        if self.haproxy:
            missing = [p for p in self.HAPROXY_PORTS if p not in self.ports]
            taken = set(self.ports.values())
            extra = [p for p in free_ports(len(missing) + len(taken))
                     if p not in taken][:len(missing)]
            self.ports.update(zip(missing, extra))
        if self._want_sink and self.sink is None:
            self.sink = SmtpSink(os.path.join(self.dir, "sink")).start()
        self.base_dir = tempfile.mkdtemp(prefix="dc-", dir="/tmp")
        os.chmod(self.base_dir, 0o755)
        link = os.path.join(self.dir, "run")
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(self.base_dir, link)
        with open(self.conf_path, "w") as f:
            f.write(self.config_text())
        self._prepared = True

    def _write_secret(self, name, text, gid):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        if gid >= 0:
            os.chown(path, 0, gid)
            os.chmod(path, 0o640)
        else:
            os.chmod(path, 0o600)

    def config_text(self):
        uid, gid, internal, login = self._ids()
        d = self.dir
        chroot = "" if os.geteuid() != 0 else "login"
        sink_port = self.sink.port if self.sink else 25
        hp = self._haproxy_conf()
        return f"""\
# Written by tests/integration/harness/dovecot.py; standalone (no
# /etc/dovecot). Loopback only, high ports, its own base_dir and state_dir.
base_dir = {self.base_dir}
state_dir = {d}/state
instance_name = dovecot-test-{os.path.basename(self.base_dir)}
protocols = imap pop3 submission
listen = {self.host}
shutdown_clients = yes

log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
verbose_proctitle = yes

ssl = no
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.0/8 ::1/128
auth_mechanisms = plain login
auth_master_user_separator = *
auth_cache_size = 10M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 0
# Failed logins must not stall the next ones (all proxied logins come from
# 127.0.0.1): no 2 s failure delay, and no per-address penalty (below).
auth_failure_delay = 0

default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}

mail_location = maildir:~/Maildir
mail_max_userip_connections = 10000
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
}}

passdb {{
  driver = passwd-file
  master = yes
  pass = yes
  args = scheme=PLAIN {d}/master-users
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}

hostname = localhost
postmaster_address = postmaster@localhost
submission_relay_host = 127.0.0.1
submission_relay_port = {sink_port}
submission_relay_connect_timeout = 5 secs
{hp["global"]}
service imap-login {{
  chroot = {chroot}
  inet_listener imap {{
    address = {self.host}
    port = {self.ports["imap"]}
  }}
{hp["imap"]}  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
  vsz_limit = 1G
}}
service pop3-login {{
  chroot = {chroot}
  inet_listener pop3 {{
    address = {self.host}
    port = {self.ports["pop3"]}
  }}
{hp["pop3"]}  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 1
  client_limit = 1000
  vsz_limit = 1G
}}
service submission-login {{
  chroot = {chroot}
  inet_listener submission {{
    address = {self.host}
    port = {self.ports["submission"]}
  }}
{hp["submission"]}  service_count = 0
  client_limit = 1000
  vsz_limit = 1G
}}
service imap {{
  service_count = 1000
  process_limit = 1024
}}
service pop3 {{
  service_count = 1000
  process_limit = 1024
}}
service submission {{
  process_limit = 1024
}}
service anvil {{
  # No per-address auth penalty: the auth process cannot open this socket.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 10000
}}
protocol pop3 {{
  mail_max_userip_connections = 10000
}}
{self.extra_conf}
"""

    def _haproxy_conf(self):
        """Config fragments for haproxy=True (all empty otherwise): "global",
        and one extra inet_listener per protocol."""
        out = {"global": "", "imap": "", "pop3": "", "submission": ""}
        if not self.haproxy:
            return out
        out["global"] = ("# PROXY protocol (v1/v2) on the *_haproxy listeners below.\n"
                         "haproxy_trusted_networks = 127.0.0.0/8\n")
        if self.haproxy_timeout:
            out["global"] += "haproxy_timeout = %s\n" % self.haproxy_timeout
        for proto in self.PROTOCOLS:
            out[proto] = ("  inet_listener %s_haproxy {\n"
                          "    address = %s\n"
                          "    port = %d\n"
                          "    haproxy = yes\n"
                          "  }\n" % (proto, self.host, self.ports[proto + "_haproxy"]))
        return out

    # -- run --------------------------------------------------------------

    def start(self, timeout=20.0):
        if self.running():
            return self
        self._prepare()
        with open(self.conf_path, "w") as f:  # the sink port may differ
            f.write(self.config_text())
        check = subprocess.run([DOVECOT_BIN, "-c", self.conf_path, "-n"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise DovecotError("dovecot rejects %s:\n%s"
                               % (self.conf_path, check.stderr))
        # Dovecot's own stderr (before its log is open) goes to the log too.
        err = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [DOVECOT_BIN, "-F", "-c", self.conf_path],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True)
        finally:
            err.close()
        deadline = time.monotonic() + timeout
        wanted = {"imap": b"* OK", "pop3": b"+OK", "submission": b"220"}
        checks = [(proto, prefix, b"") for proto, prefix in wanted.items()]
        if self.haproxy:
            # These greet only after a PROXY header: a LOCAL one (no address).
            local = proxy_v2_header(command="LOCAL")
            checks += [(proto + "_haproxy", prefix, local) for proto, prefix in wanted.items()]
        for proto, prefix, first in checks:
            while not wait_greeting(self.host, self.ports[proto], prefix, 2.0, first):
                if self.proc.poll() is not None:
                    raise DovecotError("dovecot exited with %s:\n%s"
                                       % (self.proc.returncode, self.log_tail()))
                if time.monotonic() > deadline:
                    self.stop()
                    raise DovecotError("dovecot: %s port %d not ready after %.0fs:\n%s"
                                       % (proto, self.ports[proto], timeout,
                                          self.log_tail()))
                time.sleep(0.05)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM, wait up to `timeout`, then SIGKILL the process group."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Dovecot's children are in the process group that start() made; none
        # may outlive the master and keep a listening socket.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._port_open("imap"):
            time.sleep(0.05)
        return proc.returncode

    def _port_open(self, proto):
        try:
            socket.create_connection((self.host, self.ports[proto]), 0.5).close()
            return True
        except OSError:
            return False

    def close(self):
        self.stop()
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None
            self._prepared = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # -- logs ---------------------------------------------------------------

    def log_text(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5.0, since=0):
        """Waits until the log (from byte offset `since`) matches; the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text()[since:])
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError("dovecot log has no /%s/ after %.1fs; tail:\n%s"
                                     % (pattern, timeout, self.log_tail()))
            time.sleep(0.05)

    def log_mark(self, timeout=5.0):
        """A log offset after which no line of an earlier login can appear:
        fails one login for a unique name and waits for imap-login's line
        about it (one imap-login process serves all, so its lines are in
        order).  Use as `since=` / to slice log_text()."""
        name = "mark-" + secrets.token_hex(4)
        try:
            with socket.create_connection((self.host, self.ports["imap"]), timeout) as s:
                s.settimeout(timeout)
                f = s.makefile("rwb")
                f.readline()
                f.write(b"m LOGIN " + name.encode() + b" x\r\nq LOGOUT\r\n")
                f.flush()
                while f.readline():
                    pass
        except OSError:
            pass
        return self.wait_log(r"imap-login: [^\n]*user=<%s>[^\n]*\n" % name, timeout).end()

    def log_size(self):
        try:
            return len(self.log_text())
        except OSError:
            return 0

    def env_lines(self):
        return [
            "DOVECOT_HOST=%s" % self.host,
            "DOVECOT_IMAP_PORT=%d" % self.ports["imap"],
            "DOVECOT_POP3_PORT=%d" % self.ports["pop3"],
            "DOVECOT_SUBMISSION_PORT=%d" % self.ports["submission"],
            "DOVECOT_SINK_PORT=%d" % (self.sink.port if self.sink else 0),
            "DOVECOT_MASTER_USER=%s" % self.master_user,
            "DOVECOT_MASTER_PASSWORD_FILE=%s" % self.master_password_file,
            "DOVECOT_LOG=%s" % self.log_path,
            "DOVECOT_PID=%d" % (self.proc.pid if self.proc else 0),
        ] + ["DOVECOT_%s_PORT=%d" % (name.upper(), self.ports[name])
             for name in self.HAPROXY_PORTS if self.haproxy]


def main():
    ap = argparse.ArgumentParser(
        description="Run a standalone Dovecot on loopback ports until SIGINT/SIGTERM.")
    ap.add_argument("--dir", required=True, help="its directory (created)")
    ap.add_argument("--imap-port", type=int, default=0)
    ap.add_argument("--pop3-port", type=int, default=0)
    ap.add_argument("--submission-port", type=int, default=0)
    ap.add_argument("--master-password",
                    help="default: the one in DIR/master-password, else random")
    ap.add_argument("--haproxy", action="store_true",
                    help="also PROXY-protocol listeners (DOVECOT_*_HAPROXY_PORT)")
    args = ap.parse_args()

    directory = os.path.abspath(args.dir)
    mpw = args.master_password
    mfile = os.path.join(directory, "master-password")
    if mpw is None and os.path.exists(mfile):
        with open(mfile) as f:
            mpw = f.read().strip() or None
    chosen = [args.imap_port, args.pop3_port, args.submission_port]
    frees = iter(free_ports(chosen.count(0)))
    ports = {p: (v or next(frees)) for p, v in zip(Dovecot.PROTOCOLS, chosen)}

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    dc = Dovecot(directory, master_password=mpw, ports=ports, haproxy=args.haproxy)
    try:
        dc.start()
        lines = dc.env_lines()
        with open(os.path.join(directory, "ports.env.tmp"), "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(os.path.join(directory, "ports.env.tmp"),
                  os.path.join(directory, "ports.env"))
        print("\n".join(lines), flush=True)
        while not stop.is_set():
            if not dc.running():
                print("dovecot exited; log tail:\n" + dc.log_tail(), file=sys.stderr)
                return 1
            stop.wait(0.5)
        return 0
    finally:
        dc.close()
        try:
            os.unlink(os.path.join(directory, "ports.env"))
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    sys.exit(main())
