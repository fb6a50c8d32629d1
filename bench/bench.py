#!/usr/bin/python3
"""bench.py - mfagate beside its peers, on one machine, in one interleaved run.

Run through bench/run.sh (it raises the fd limit and builds the programs).
Sets up on loopback, in bench/results/work/run-*/ (--out DIR: DIR/work/run-*/):

  - a tuned Dovecot 2.3 (IMAP, POP3 and submission; master user, login
    processes serving many clients, reused imap/pop3/submission processes,
    auth cache, no failure delay/penalty, TLS 1.3 + X25519 with the bench
    certificate on its imaps port and for STARTTLS/STLS; submission relays
    to fastback's SMTP mode);
  - mfa-fastback three times (IMAP, POP3, SMTP), backends that accept any
    login at once;
  - mfagate twice (in front of Dovecot; in front of fastback), each with
    IMAP, POP3 and SMTP, 2 workers;
  - nginx's mail proxy (Debian nginx + libnginx-mod-mail), 2 workers, one
    server block per backend (IMAP and POP3; no SMTP), auth_http answered by
    a static location of the same nginx (Auth-Status OK + Auth-Server/Auth-Port);

then runs the scenarios of bench/README.md, target after target inside each
cell (rotated from repeat to repeat), and writes bench/results/RESULTS.md
(or --out DIR)
(+ results.jsonl, + plots when gnuplot is there).  Every server started here
is stopped on exit, whatever the exit.
"""
import argparse
import grp
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

# Fixed loopback ports in a quiet range; checked free before anything starts.
PORTS = {
    "dovecot_imap": 30110, "dovecot_imaps": 30111,
    "dovecot_pop3": 30112, "dovecot_submission": 30113,
    # Dovecot's listeners that take a PROXY protocol header (haproxy = yes).
    "dovecot_imap_pp": 30114, "dovecot_pop3_pp": 30115, "dovecot_submission_pp": 30116,
    "fastback": 30120, "fastback_pop3": 30121, "fastback_smtp": 30122,
    "mfa_d_imap": 30130, "mfa_d_imaps": 30131,
    "mfa_f_imap": 30132, "mfa_f_imaps": 30133, "mfa_f_pop3": 30134, "mfa_f_smtp": 30135,
    "mfa_d_pop3": 30136, "mfa_d_smtp": 30137,
    "ngx_d_imap": 30140, "ngx_d_imaps": 30141,
    "ngx_f_imap": 30142, "ngx_f_imaps": 30143, "ngx_f_pop3": 30144,
    "ngx_d_pop3": 30145,
    "ngx_auth": 30149,
    # mfagate in front of Dovecot with forward_client_addr = proxy.
    "mfa_p_imap": 30150, "mfa_p_imaps": 30151, "mfa_p_pop3": 30152, "mfa_p_smtp": 30153,
}
HOST = "127.0.0.1"
WORKERS = 2
NUSERS = 200          # u000..u199 in Dovecot
NWARM = 64            # u000..u063: warm app passwords / account passwords
NCOLD = 136           # u064..u199: cold app passwords
BIG_MB = 16           # the message fetched in the relay test


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Proc:
    """A server we started, in its own process group."""

    def __init__(self, name, argv, logpath, cwd=None, env=None):
        self.name = name
        self.argv = argv
        self.logpath = logpath
        self.cwd = cwd
        self.env = env
        self.p = None

    def start(self):
        out = open(self.logpath, "ab")
        try:
            self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                                      start_new_session=True)
        finally:
            out.close()
        return self

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def stop(self, timeout=10):
        p, self.p = self.p, None
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # children (dovecot's, nginx's)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def port_open(port):
    try:
        socket.create_connection((HOST, port), 0.3).close()
        return True
    except OSError:
        return False


def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc is not None and not proc.alive():
            raise RuntimeError("%s exited; see %s" % (proc.name, proc.logpath))
        if time.monotonic() > deadline:
            raise RuntimeError("%s: port %d not open after %ds" % (
                proc.name if proc else "?", port, timeout))
        time.sleep(0.05)


def make_traversable(path):
    path = os.path.abspath(path)
    while True:
        st = os.stat(path)
        if not st.st_mode & 0o001:
            os.chmod(path, (st.st_mode & 0o7777) | 0o001)
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


class Bench:
    def __init__(self, args):
        self.a = args
        self.quick = args.quick
        self.repeats = 1 if args.quick else args.repeats
        self.dur = args.duration or (3.0 if args.quick else 6.0)
        self.warm = 1.0
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.work = os.path.join(os.path.abspath(args.out), "work", "run-" + stamp)
        os.makedirs(self.work, exist_ok=True)
        self.loadgen = args.loadgen
        self.fastback_bin = args.fastback
        self.hog_bin = args.hog or os.path.join(os.path.dirname(args.loadgen), "mfa-hog")
        self.mfagate_bin = args.mfagate
        self.procs = {}
        self.results = []
        self.jsonl = os.path.join(self.work, "results.jsonl")
        self.master_pw = "benchmaster-" + os.urandom(6).hex()
        self.t_start = time.time()

    # -- setup ---------------------------------------------------------------

    def check_ports(self):
        busy = [p for p in PORTS.values() if port_open(p)]
        if busy:
            raise SystemExit("bench: ports already in use: %s" % busy)

    def make_cert(self):
        self.cert = os.path.join(self.work, "bench.crt")
        self.key = os.path.join(self.work, "bench.key")
        subprocess.run(["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-sha256", "-subj",
                        "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        os.chmod(self.key, 0o600)

    def users(self):
        return ["u%03d" % i for i in range(NUSERS)]

    def setup_dovecot(self):
        d = os.path.join(self.work, "dovecot")
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        make_traversable(d)
        mail = pwd.getpwnam("mail")
        uid, gid = mail.pw_uid, mail.pw_gid
        auth_gid = grp.getgrnam("dovecot").gr_gid
        home = os.path.join(d, "home")
        os.makedirs(home, exist_ok=True)
        os.chmod(home, 0o755)
        lines = []
        for u in self.users():
            h = os.path.join(home, u)
            os.makedirs(h, exist_ok=True)
            os.chown(h, uid, gid)
            os.chmod(h, 0o700)
            lines.append("%s:{PLAIN}pw-%s-acct:%d:%d::%s::\n" % (u, u, uid, gid, h))
        # The relay test's big message, in u000's INBOX.
        cur = os.path.join(home, "u000", "Maildir", "cur")
        os.makedirs(cur, exist_ok=True)
        for sub in ("new", "tmp"):
            os.makedirs(os.path.join(home, "u000", "Maildir", sub), exist_ok=True)
        msg = os.path.join(cur, "1700000000.big.bench:2,S")
        with open(msg, "wb") as f:
            f.write(b"From: bench@localhost\r\nTo: u000@localhost\r\nSubject: big\r\n"
                    b"Message-ID: <big@bench>\r\nDate: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n")
            line = (b"x" * 74) + b"\r\n"
            f.write(line * (BIG_MB * 1024 * 1024 // len(line)))
        for root, dirs, files in os.walk(os.path.join(home, "u000")):
            os.chown(root, uid, gid)
            for fn in files:
                os.chown(os.path.join(root, fn), uid, gid)
        for name, text in (("users", "".join(lines)),
                           ("master-users", "mfagate:{PLAIN}%s\n" % self.master_pw)):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            os.chown(p, 0, auth_gid)
            os.chmod(p, 0o640)
        self.base_dir = tempfile.mkdtemp(prefix="mfb-", dir="/tmp")
        os.chmod(self.base_dir, 0o755)
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        conf = os.path.join(d, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(DOVECOT_CONF.format(
                base_dir=self.base_dir, d=d, uid=uid, gid=gid, host=HOST,
                imap=PORTS["dovecot_imap"], imaps=PORTS["dovecot_imaps"],
                pop3=PORTS["dovecot_pop3"], submission=PORTS["dovecot_submission"],
                imap_pp=PORTS["dovecot_imap_pp"], pop3_pp=PORTS["dovecot_pop3_pp"],
                submission_pp=PORTS["dovecot_submission_pp"],
                relay=PORTS["fastback_smtp"], cert=self.cert, key=self.key,
                inst=os.path.basename(self.base_dir)))
        self.dovecot_conf = conf
        r = subprocess.run(["/usr/sbin/dovecot", "-c", conf, "-n"], capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError("dovecot rejects its config:\n" + r.stderr)

    def start_dovecot(self):
        d = os.path.dirname(self.dovecot_conf)
        p = Proc("dovecot", ["/usr/sbin/dovecot", "-F", "-c", self.dovecot_conf],
                 os.path.join(d, "dovecot.out")).start()
        self.procs["dovecot"] = p
        for k in sorted(PORTS):
            if k.startswith("dovecot_"):
                wait_port(PORTS[k], p)

    def start_fastback(self):
        for name, proto in (("fastback", "imap"), ("fastback_pop3", "pop3"),
                            ("fastback_smtp", "smtp")):
            p = Proc(name, [self.fastback_bin, str(PORTS[name]), HOST, proto],
                     os.path.join(self.work, name + ".log")).start()
            self.procs[name] = p
            wait_port(PORTS[name], p)

    def mfagate_conf(self, name, backend_port, imap, imaps, state, cache_entries=10000,
                     more_listen="", more_backend="", forward="yes"):
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "mfagate.conf")
        with open(conf, "w") as f:
            f.write(MFAGATE_CONF.format(workers=WORKERS, state=state, cert=self.cert,
                                        key=self.key, host=HOST, imap=imap, imaps=imaps,
                                        backend=backend_port, master_pw=self.master_pw,
                                        cache_entries=cache_entries,
                                        log_level=self.a.mfagate_log_level,
                                        more_listen=more_listen, more_backend=more_backend,
                                        forward=forward))
        os.chmod(conf, 0o600)
        return conf

    def setup_mfagate(self):
        self.state = os.path.join(self.work, "mfagate-state")
        self.mconf = {
            # In front of Dovecot: IMAP, POP3, and SMTP to its submission
            # service (scenario 7; Dovecot relays to fastback's SMTP mode,
            # which also takes mfagate's unauthenticated sessions).
            "mfa_d": self.mfagate_conf(
                "mfa_d", PORTS["dovecot_imap"], PORTS["mfa_d_imap"], PORTS["mfa_d_imaps"],
                self.state,
                more_listen="pop3 = %s:%d\nsmtp = %s:%d\n" % (
                    HOST, PORTS["mfa_d_pop3"], HOST, PORTS["mfa_d_smtp"]),
                more_backend="pop3 = %d\nsmtp = %d\nsmtp_inbound = %d\n" % (
                    PORTS["dovecot_pop3"], PORTS["dovecot_submission"],
                    PORTS["fastback_smtp"])),
            # The fastback instance also speaks POP3 and SMTP (scenario 7),
            # to fastback's POP3 and SMTP modes.
            "mfa_f": self.mfagate_conf(
                "mfa_f", PORTS["fastback"], PORTS["mfa_f_imap"], PORTS["mfa_f_imaps"],
                self.state + "-f",
                more_listen="pop3 = %s:%d\nsmtp = %s:%d\n" % (
                    HOST, PORTS["mfa_f_pop3"], HOST, PORTS["mfa_f_smtp"]),
                more_backend="pop3 = %d\nsmtp = %d\nsmtp_inbound = %d\n" % (
                    PORTS["fastback_pop3"], PORTS["fastback_smtp"], PORTS["fastback_smtp"])),
            # In front of Dovecot's haproxy listeners, the client's address in
            # a PROXY v2 header instead of ID / XCLIENT (no inbound SMTP here).
            "mfa_p": self.mfagate_conf(
                "mfa_p", PORTS["dovecot_imap_pp"], PORTS["mfa_p_imap"], PORTS["mfa_p_imaps"],
                self.state + "-p", forward="proxy",
                more_listen="pop3 = %s:%d\nsmtp = %s:%d\n" % (
                    HOST, PORTS["mfa_p_pop3"], HOST, PORTS["mfa_p_smtp"]),
                more_backend="pop3 = %d\nsmtp = %d\n" % (
                    PORTS["dovecot_pop3_pp"], PORTS["dovecot_submission_pp"])),
        }
        # App passwords: warm ones for u000..u063, cold ones for the rest.
        log("creating %d app passwords (argon2id each)" % NUSERS)
        self.apppw = {}
        for u in self.users():
            r = subprocess.run([self.mfagate_bin, "app-password", "create", "-c",
                                self.mconf["mfa_d"], u, "--name", "bench", "--json"],
                               capture_output=True, text=True, check=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("{")][0]
            self.apppw[u] = json.loads(line)["password"].replace(" ", "")
        # The other instances share the keys and passwords: copies of the store.
        for suffix in ("-f", "-p"):
            shutil.copytree(self.state, self.state + suffix, dirs_exist_ok=True)
        users = self.users()
        self.lists = {}

        def write(name, rows):
            p = os.path.join(self.work, name + ".users")
            with open(p, "w") as f:
                f.write("".join("%s %s %s\n" % r for r in rows))
            self.lists[name] = p

        write("app_warm", [(u, self.apppw[u], "app") for u in users[:NWARM]])
        write("app_cold", [(u, self.apppw[u], "app") for u in users[NWARM:]])
        write("account", [(u, "pw-%s-acct" % u, "account") for u in users[:NWARM]])
        write("wrong", [(u, "not-the-password", "wrong") for u in users[:4]])
        write("big", [("u000", self.apppw["u000"], "app")])
        write("big_acct", [("u000", "pw-u000-acct", "account")])

    def start_mfagate(self, name):
        old = self.procs.pop(name, None)
        if old is not None:
            old.stop()
        conf = self.mconf[name]
        p = Proc(name, [self.mfagate_bin, "serve", "-c", conf],
                 os.path.join(os.path.dirname(conf), "mfagate.log"),
                 cwd=os.path.dirname(conf)).start()
        self.procs[name] = p
        for k in sorted(PORTS):
            if k.startswith(name + "_"):
                wait_port(PORTS[k], p)

    def setup_nginx(self):
        d = os.path.join(self.work, "nginx")
        os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
        self.nginx_conf = os.path.join(d, "nginx.conf")
        with open(self.nginx_conf, "w") as f:
            f.write(NGINX_CONF.format(d=d, workers=WORKERS, host=HOST, cert=self.cert,
                                      key=self.key, **PORTS))
        r = subprocess.run(["nginx", "-t", "-c", self.nginx_conf, "-p", d, "-e",
                            os.path.join(d, "error.log")], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx rejects its config:\n" + r.stderr)

    def start_nginx(self):
        old = self.procs.pop("nginx", None)
        if old is not None:
            old.stop()
        d = os.path.dirname(self.nginx_conf)
        p = Proc("nginx", ["nginx", "-c", self.nginx_conf, "-p", d, "-e",
                           os.path.join(d, "error.log"), "-g", "daemon off;"],
                 os.path.join(d, "nginx.out")).start()
        self.procs["nginx"] = p
        for k in sorted(PORTS):
            if k.startswith("ngx_"):
                wait_port(PORTS[k], p)

    def stop_all(self):
        for name in list(self.procs):
            self.procs.pop(name).stop()
        if getattr(self, "base_dir", None):
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- running the generator -------------------------------------------------

    def target(self, name, tls, proto="imap"):
        """(port, watch list, users list) for a target name."""
        implicit = tls == "implicit"
        if proto == "pop3" and name == "nginx-fast":
            return (PORTS["ngx_f_pop3"], [("proxy", "nginx"), ("backend", "fastback_pop3")],
                    "account")
        if proto in ("pop3", "smtp") and name == "mfagate-fast":
            return (PORTS["mfa_f_" + proto], [("proxy", "mfa_f"), ("backend", "fastback_" + proto)],
                    "app_warm")
        # POP3 and SMTP against Dovecot (pop3 service; submission, which
        # relays to fastback's SMTP mode).  No nginx for SMTP: it logs in to
        # an SMTP backend only through XCLIENT, which Dovecot's submission
        # does not take as a login.
        if proto in ("pop3", "smtp") and not implicit:
            relay = [("relay", "fastback_smtp")] if proto == "smtp" else []
            if name == "direct":
                return (PORTS["dovecot_pop3" if proto == "pop3" else "dovecot_submission"],
                        [("dovecot", "dovecot")] + relay, "account")
            if name == "nginx" and proto == "pop3":
                return (PORTS["ngx_d_pop3"], [("proxy", "nginx"), ("dovecot", "dovecot")],
                        "account")
            if name in ("mfagate", "mfagate-pp"):
                inst = "mfa_d" if name == "mfagate" else "mfa_p"
                return (PORTS[inst + "_" + proto], [("proxy", inst), ("dovecot", "dovecot")]
                        + relay, "app_warm")
        if proto != "imap":
            raise KeyError("%s/%s" % (name, proto))
        if name == "direct":
            return (PORTS["dovecot_imaps" if implicit else "dovecot_imap"],
                    [("dovecot", "dovecot")], "account")
        if name == "nginx":
            return (PORTS["ngx_d_imaps" if implicit else "ngx_d_imap"],
                    [("proxy", "nginx"), ("dovecot", "dovecot")], "account")
        if name in ("mfagate", "mfagate-pp"):
            inst = "mfa_d" if name == "mfagate" else "mfa_p"
            return (PORTS[inst + ("_imaps" if implicit else "_imap")],
                    [("proxy", inst), ("dovecot", "dovecot")], "app_warm")
        if name == "nginx-fast":
            return (PORTS["ngx_f_imaps" if implicit else "ngx_f_imap"],
                    [("proxy", "nginx"), ("backend", "fastback")], "account")
        if name == "mfagate-fast":
            return (PORTS["mfa_f_imaps" if implicit else "mfa_f_imap"],
                    [("proxy", "mfa_f"), ("backend", "fastback")], "app_warm")
        raise KeyError(name)

    def gen_argv(self, scen, cell, name, tls="plain", conc=1, duration=None, warmup=None,
                 users=None, extra=(), proto="imap"):
        port, watches, ulist = self.target(name, tls, proto)
        argv = [self.loadgen, "--port", str(port), "--proto", proto, "--tls", tls,
                "--concurrency", str(conc),
                "--duration", str(duration if duration is not None else self.dur),
                "--warmup", str(warmup if warmup is not None else self.warm),
                "--users", self.lists[users or ulist], "--timeout", "10000",
                "--label", "%s/%s/%s" % (scen, cell, name), "--quiet"]
        for label, proc in watches:
            argv += ["--watch", "%s=%d" % (label, self.procs[proc].pid)]
        return argv + list(extra)

    def run_gen(self, scen, cell, name, rep, **kw):
        argv = self.gen_argv(scen, cell, name, **kw)
        timeout = kw.get("duration", self.dur) + kw.get("warmup", self.warm) + 60
        return self.finish(subprocess.Popen(argv, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True),
                           scen, cell, name, rep, timeout)

    def finish(self, p, scen, cell, name, rep, timeout):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        lines = [x for x in out.splitlines() if x.startswith("{")]
        if not lines:
            log("  %s/%s/%s: no result (%s)" % (scen, cell, name, err.strip()[-300:]))
            return None
        r = json.loads(lines[-1])
        r.update({"scenario": scen, "cell": cell, "target": name, "repeat": rep})
        self.results.append(r)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(r) + "\n")
        srv = r.get("servers", {})
        extra = " ".join("%s=%.0fus" % (k, v["cpu_us_per_login"]) for k, v in srv.items()
                         if r["mode"] == "login")
        if r["mode"] == "idle":
            extra = " ".join("%s=%.1fkB/sess(pss)" % (k, v["pss_kb_per_session"])
                             for k, v in srv.items())
        if r["mode"] == "fetch":
            extra = "%.1f MB/s" % r["fetch_mb_s"]
        log("  %-26s rep%d %7.1f/s p50 %.2f p99 %.2f ms err %d gen %.0f%% %s" % (
            "%s/%s/%s" % (scen, cell, name), rep, r["rate"], r["p50_ms"], r["p99_ms"],
            r["errors"], r["gen_cpu_pct"], extra))
        return r

    def rotated(self, names, rep):
        k = rep % len(names)
        return names[k:] + names[:k]

    # -- scenarios ---------------------------------------------------------------

    def concurrencies(self):
        return [1, 16, 64] + ([] if self.quick else [256])

    def s1_backend_bound(self, rep):
        for tls in ("plain", "implicit"):
            for c in self.concurrencies():
                for name in self.rotated(["direct", "nginx", "mfagate", "mfagate-pp"], rep):
                    self.run_gen("1-backend", "%s-c%d" % (tls, c), name, rep, tls=tls, conc=c)

    def s2_proxy_bound(self, rep):
        for tls in ("plain", "implicit"):
            for c in self.concurrencies():
                for name in self.rotated(["nginx-fast", "mfagate-fast"], rep):
                    self.run_gen("2-proxy", "%s-c%d" % (tls, c), name, rep, tls=tls, conc=c)

    def s3_cold_warm(self, rep):
        ncold = NCOLD
        # (a) warm: every password verified at least once already.
        self.start_mfagate("mfa_d")
        self.run_gen("3-kdf", "prime", "mfagate", rep, conc=4, duration=30, warmup=0,
                     users="app_warm", extra=["--once"])
        self.run_gen("3-kdf", "warm-c16", "mfagate", rep, conc=16)
        # (b) cold: a restart empties the verification cache, so each of the
        # cold passwords costs one argon2id run.
        self.start_mfagate("mfa_d")
        self.run_gen("3-kdf", "cold-c16", "mfagate", rep, conc=16, duration=30, warmup=0,
                     users="app_cold", extra=["--once"])
        # (c) warm open loop alone, then (d) the same beside a cold stream.
        rate_w = self.a.warm_rate
        rate_c = max(5.0, ncold / (self.dur + 1))
        self.start_mfagate("mfa_d")
        self.run_gen("3-kdf", "prime", "mfagate", rep, conc=4, duration=30, warmup=0,
                     users="app_warm", extra=["--once"])
        alone = self.run_gen("3-kdf", "warm-open-alone", "mfagate", rep, conc=64, warmup=0.5,
                             extra=["--rate", str(rate_w)])
        argv_w = self.gen_argv("3-kdf", "warm-open-with-cold", "mfagate", conc=64,
                               warmup=0.5, extra=["--rate", str(rate_w)])
        argv_c = self.gen_argv("3-kdf", "cold-open-beside-warm", "mfagate", conc=64,
                               warmup=0.5, users="app_cold",
                               extra=["--rate", "%.1f" % rate_c, "--once"])
        pw = subprocess.Popen(argv_w, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pc = subprocess.Popen(argv_c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.finish(pw, "3-kdf", "warm-open-with-cold", "mfagate", rep, self.dur + 60)
        cold = self.finish(pc, "3-kdf", "cold-open-beside-warm", "mfagate", rep, self.dur + 60)
        # (e) the same warm stream beside mfa-hog: pure CPU work at the cold
        # stream's rate and CPU per check, scheduled like the KDF thread, in
        # its own process: what any background work of that duty cycle costs
        # the warm tail here, without argon2id's memory traffic or the cold
        # logins' work at Dovecot.
        # CPU per cold check: mfagate's CPU during the cold run less what
        # the warm stream took alone in as much time.
        cpu_ms = 30.0
        try:
            warm_s = alone["servers"]["proxy"]["cpu_s"] / alone["seconds"]
            c = cold["servers"]["proxy"]
            cpu_ms = max(1.0, (c["cpu_s"] - warm_s * cold["seconds"]) / cold["ok"] * 1e3)
        except (TypeError, KeyError, ZeroDivisionError):
            pass
        hog = subprocess.Popen([self.hog_bin, "%.1f" % rate_c, "%.1f" % (self.dur + 1.0),
                                "%.1f" % cpu_ms], stderr=subprocess.PIPE, text=True)
        self.run_gen("3-kdf", "warm-open-with-hog", "mfagate", rep, conc=64, warmup=0.5,
                     extra=["--rate", str(rate_w)])
        log("  %s" % hog.communicate(timeout=60)[1].strip())

    def s4_tls(self, rep):
        for resume in (False, True):
            cell = "implicit-c16-%s" % ("resumed" if resume else "full")
            for name in self.rotated(["nginx-fast", "mfagate-fast"], rep):
                r = self.run_gen("4-tls", cell, name, rep, tls="implicit", conc=16,
                                 extra=["--resume"] if resume else [])
                if r and resume and r["tls_resumed"] < 0.9 * max(1, r["ok"]):
                    log("  note: %s resumed only %d of %d" % (name, r["tls_resumed"], r["ok"]))

    def s5_memory(self, rep):
        # The proxy holds two descriptors per session and cannot raise the
        # limit it inherits (this container's hard limit may be 20000).
        import resource
        fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        big = min(10000, (fds - 500) // 2 // 1000 * 1000)
        sizes = [1000] + ([] if self.quick or self.a.no_10k or big <= 1000 else [big])
        for n in sizes:
            for tls in ("plain", "implicit"):
                for name in self.rotated(["nginx-fast", "mfagate-fast"], rep):
                    # Fresh processes: a delta on a warm heap would hide growth.
                    if name == "nginx-fast":
                        self.start_nginx()
                    else:
                        self.start_mfagate("mfa_f")
                    # Logins first: mfagate's verification cache warm (and
                    # what argon2id leaves behind already in the baseline),
                    # and both proxies' heaps past their first-use growth,
                    # so that the ramp measures sessions only.
                    self.run_gen("5-memory", "prime", name, rep, tls=tls, conc=4, duration=30,
                                 warmup=0, extra=["--count", str(16 * NWARM)])
                    time.sleep(0.3)
                    self.run_gen("5-memory", "%s-%d" % (tls, n), name, rep, tls=tls, conc=n,
                                 duration=max(20, n / 500 + 15), warmup=0,
                                 extra=["--mode", "idle", "--rate", "2000",
                                        "--timeout", "30000"])

    def s6_relay(self, rep):
        for tls in ("plain", "implicit"):
            for name in self.rotated(["direct", "nginx", "mfagate"], rep):
                users = "big" if name == "mfagate" else "big_acct"
                self.run_gen("6-relay", "%s-c2" % tls, name, rep, tls=tls, conc=2,
                             users=users, extra=["--mode", "fetch"])

    def s7_protocols(self, rep):
        # POP3 and SMTP logins (AUTH PLAIN, one round trip) in front of
        # fastback, cleartext and with STARTTLS/STLS, and IMAP with STARTTLS.
        # nginx cannot log in to an SMTP backend without XCLIENT trust of its
        # own, so SMTP is mfagate alone (its CPU per login against its IMAP
        # figure).
        for proto, tlss, names in (("imap", ("starttls",), ["nginx-fast", "mfagate-fast"]),
                                   ("pop3", ("plain", "starttls"), ["nginx-fast", "mfagate-fast"]),
                                   ("smtp", ("plain", "starttls"), ["mfagate-fast"])):
            for tls in tlss:
                for name in self.rotated(names, rep):
                    self.run_gen("7-proto", "%s-%s-c16" % (proto, tls), name, rep, tls=tls,
                                 conc=16, proto=proto)
        # The same against Dovecot: its pop3 service (direct, nginx, mfagate)
        # and its submission service (direct, mfagate; Dovecot relays to
        # fastback's SMTP mode).
        for proto, names in (("pop3", ["direct", "nginx", "mfagate", "mfagate-pp"]),
                             ("smtp", ["direct", "mfagate", "mfagate-pp"])):
            for tls in ("plain", "starttls"):
                for name in self.rotated(names, rep):
                    self.run_gen("7-proto", "%s-dovecot-%s-c16" % (proto, tls), name, rep,
                                 tls=tls, conc=16, proto=proto)

    def openssl_speed(self):
        out = {}
        for alg in ("ecdhx25519", "ecdsap256"):
            r = subprocess.run(["openssl", "speed", "-seconds", "1" if self.quick else "3",
                                "-mr", alg], capture_output=True, text=True)
            for line in r.stdout.splitlines():
                # +F5:<n>:<bits>:<ops/s>  (ECDH)   +F4:<n>:<bits>:<sign/s>:<verify/s> (ECDSA)
                parts = line.split(":")
                if line.startswith("+F5:") and alg == "ecdhx25519":
                    out["x25519_ops"] = float(parts[3])
                if line.startswith("+F4:") and alg == "ecdsap256":
                    out["ecdsa_sign"] = float(parts[3])
                    out["ecdsa_verify"] = float(parts[4])
        if "x25519_ops" in out and "ecdsa_sign" in out:
            # TLS 1.3 server, per handshake: one X25519 key generation + one
            # derivation (about one op each), and, when full, one ECDSA signature.
            full_us = 2e6 / out["x25519_ops"] + 1e6 / out["ecdsa_sign"]
            res_us = 2e6 / out["x25519_ops"]
            out.update({"full_us": full_us, "resumed_us": res_us,
                        "full_per_core": 1e6 / full_us, "resumed_per_core": 1e6 / res_us})
        self.speed = out
        log("openssl speed: %s" % json.dumps(out))
        with open(self.jsonl, "a") as f:
            f.write(json.dumps({"scenario": "meta", "speed": out, "quick": self.quick,
                                "repeats": self.repeats, "duration": self.dur}) + "\n")

    # -- the whole run -------------------------------------------------------------

    def run(self):
        self.check_ports()
        self.make_cert()
        self.setup_dovecot()
        self.setup_mfagate()
        self.setup_nginx()
        self.start_dovecot()
        self.start_fastback()
        self.start_mfagate("mfa_d")
        self.start_mfagate("mfa_f")
        self.start_mfagate("mfa_p")
        self.start_nginx()
        if self.a.serve:
            log("serving for %ds: ports %s; pids %s; users in %s" % (
                self.a.serve, json.dumps(PORTS),
                {k: v.pid for k, v in self.procs.items()}, self.work))
            time.sleep(self.a.serve)
            self.elapsed = time.time() - self.t_start
            return
        self.openssl_speed()
        only = set(self.a.only.split(",")) if self.a.only else None
        plan = [("1", self.s1_backend_bound), ("2", self.s2_proxy_bound),
                ("3", self.s3_cold_warm), ("4", self.s4_tls), ("6", self.s6_relay),
                ("7", self.s7_protocols)]
        # Warm everything once (Dovecot's auth cache, its indexes, page cache).
        for name in ("direct", "nginx", "mfagate", "mfagate-pp", "nginx-fast", "mfagate-fast"):
            # mfagate: each warm app password verified once (argon2id), so
            # that no measured run pays for it.
            once = name.startswith("mfagate")
            self.run_gen("0-prime", "plain-c4", name, 0, conc=4, duration=30 if once else 1.5,
                         warmup=0, extra=["--once"] if once else [])
        self.run_gen("0-prime", "fetch", "direct", 0, conc=1, duration=1, warmup=0,
                     users="big_acct", extra=["--mode", "fetch"])
        for rep in range(self.repeats):
            log("=== repeat %d of %d" % (rep + 1, self.repeats))
            for key, fn in plan:
                if only is None or key in only:
                    fn(rep)
        if only is None or "5" in only:
            log("=== memory (one repeat: deterministic enough)")
            self.s5_memory(0)
        self.elapsed = time.time() - self.t_start


# ---------------------------------------------------------------------------
# Report

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Report:
    def __init__(self, bench):
        self.b = bench
        self.rs = [r for r in bench.results if r["scenario"] not in ("0-prime", "meta")
                   and r["cell"] != "prime"]

    def pick(self, scen, cell, target):
        return [r for r in self.rs if r["scenario"] == scen and r["cell"] == cell
                and r["target"] == target]

    def m(self, scen, cell, target, key, server=None):
        rows = self.pick(scen, cell, target)
        if server:
            return med([r["servers"].get(server, {}).get(key) for r in rows])
        return med([r.get(key) for r in rows])

    @staticmethod
    def f(x, fmt="%.1f"):
        return "–" if x is None else fmt % x

    def ratio(self, a, b):
        if a is None or b is None or b == 0:
            return "–"
        return "%.2f×" % (a / b)

    def machine(self):
        b = self.b
        cpu = "?"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        cpu = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        def ver(cmd):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True)
                return (r.stdout + r.stderr).strip().splitlines()[0]
            except Exception:
                return "?"
        h = subprocess.run(["sha256sum", b.mfagate_bin], capture_output=True, text=True)
        return {
            "mfagate": "%s (sha256 %s…)" % (b.mfagate_bin, h.stdout[:12]),
            "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "nginx": ver(["nginx", "-v"]), "dovecot": ver(["/usr/sbin/dovecot", "--version"]),
            "openssl": ver(["openssl", "version"]),
            "loadavg": open("/proc/loadavg").read().split()[:3],
        }

    def markdown(self):
        b = self.b
        out = []
        mc = self.machine()
        gen_bound = [r for r in self.rs if r.get("gen_bound")]
        out.append("# mfagate benchmark results\n")
        out.append("Run %s, %s mode (%d repeat%s, %.0f s measured per run after %.0f s warm-up), "
                   "%.1f minutes in all. Medians over repeats.\n" % (
                       time.strftime("%Y-%m-%d %H:%M"), "quick" if b.quick else "full",
                       b.repeats, "" if b.repeats == 1 else "s", b.dur, b.warm,
                       b.elapsed / 60))
        out.append("Machine: %s, %s cores, Linux %s; %s; %s; %s. Load average at the end: %s. "
                   "Generator, proxies and backends share these cores.\n" % (
                       mc["cpu"], mc["cores"], mc["kernel"], mc["nginx"],
                       "Dovecot " + mc["dovecot"], mc["openssl"], " ".join(mc["loadavg"])))
        out.append("mfagate %s: %d workers, log_level=%s; nginx: %d workers. "
                   "TLS 1.3, X25519, one ECDSA P-256 certificate for all.\n" % (
                       mc["mfagate"], WORKERS, b.a.mfagate_log_level, WORKERS))
        if gen_bound:
            out.append("**Generator-bound runs** (its own CPU > 85%% of a core; their rates are "
                       "lower bounds): %s\n" % ", ".join(sorted(set(
                           "%s/%s/%s" % (r["scenario"], r["cell"], r["target"])
                           for r in gen_bound))))

        # Targets summary first.
        out.append("## Targets\n")
        out.append("| target | measured | goal | met |")
        out.append("|---|---|---|---|")
        for row in self.targets():
            out.append("| %s | %s | %s | %s |" % row)
        out.append("")

        # 1
        out.append("## 1. Backend-bound: direct Dovecot vs nginx vs mfagate (app password, warm)\n")
        out.append("logins/s (connect + [TLS] + greeting + LOGIN + LOGOUT, closed loop); p99 ms; "
                   "proxy CPU µs per login; Dovecot CPU µs per login.\n")
        out.append("| tls | conc | direct /s | nginx /s | mfagate /s | mfagate÷nginx | "
                   "mfagate÷direct | p99 direct | p99 nginx | p99 mfagate | CPU µs/login nginx | "
                   "CPU µs/login mfagate | Dovecot µs/login (via mfagate) | errors |")
        out.append("|---" * 14 + "|")
        for tls in ("plain", "implicit"):
            for c in b.concurrencies():
                cell = "%s-c%d" % (tls, c)
                rd = self.m("1-backend", cell, "direct", "rate")
                rn = self.m("1-backend", cell, "nginx", "rate")
                rm = self.m("1-backend", cell, "mfagate", "rate")
                errs = sum(r["errors"] for r in self.rs if r["scenario"] == "1-backend"
                           and r["cell"] == cell)
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |"
                           % (tls, c, self.f(rd), self.f(rn), self.f(rm), self.ratio(rm, rn),
                              self.ratio(rm, rd),
                              self.f(self.m("1-backend", cell, "direct", "p99_ms"), "%.2f"),
                              self.f(self.m("1-backend", cell, "nginx", "p99_ms"), "%.2f"),
                              self.f(self.m("1-backend", cell, "mfagate", "p99_ms"), "%.2f"),
                              self.f(self.m("1-backend", cell, "nginx", "cpu_us_per_login",
                                            "proxy"), "%.0f"),
                              self.f(self.m("1-backend", cell, "mfagate", "cpu_us_per_login",
                                            "proxy"), "%.0f"),
                              self.f(self.m("1-backend", cell, "mfagate", "cpu_us_per_login",
                                            "dovecot"), "%.0f"), errs))
        out.append("")
        out.append("### 1b. mfagate with `forward_client_addr = proxy`\n")
        out.append("The same cells through a second mfagate that gives Dovecot the client's "
                   "address in a PROXY protocol v2 header (Dovecot's `haproxy = yes` "
                   "listener) instead of `ID` - no command, no answer to wait for. nginx "
                   "forwards no address at all (its best case).\n")
        out.append("| tls | conc | mfagate (ID) /s | mfagate (PROXY) /s | PROXY÷nginx | "
                   "PROXY÷direct | CPU µs/login ID | CPU µs/login PROXY | Dovecot µs/login ID | "
                   "Dovecot µs/login PROXY | p99 PROXY | errors |")
        out.append("|---" * 12 + "|")
        for tls in ("plain", "implicit"):
            for c in b.concurrencies():
                cell = "%s-c%d" % (tls, c)
                rp = self.m("1-backend", cell, "mfagate-pp", "rate")
                if rp is None:
                    continue
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    tls, c, self.f(self.m("1-backend", cell, "mfagate", "rate")), self.f(rp),
                    self.ratio(rp, self.m("1-backend", cell, "nginx", "rate")),
                    self.ratio(rp, self.m("1-backend", cell, "direct", "rate")),
                    self.f(self.m("1-backend", cell, "mfagate", "cpu_us_per_login", "proxy"), "%.0f"),
                    self.f(self.m("1-backend", cell, "mfagate-pp", "cpu_us_per_login", "proxy"),
                           "%.0f"),
                    self.f(self.m("1-backend", cell, "mfagate", "cpu_us_per_login", "dovecot"),
                           "%.0f"),
                    self.f(self.m("1-backend", cell, "mfagate-pp", "cpu_us_per_login", "dovecot"),
                           "%.0f"),
                    self.f(self.m("1-backend", cell, "mfagate-pp", "p99_ms"), "%.2f"),
                    sum(x["errors"] for x in self.pick("1-backend", cell, "mfagate-pp"))))
        out.append("")

        # 2
        out.append("## 2. Proxy-bound: nginx vs mfagate in front of mfa-fastback\n")
        out.append("| tls | conc | nginx /s | mfagate /s | rate ratio | nginx CPU µs/login | "
                   "mfagate CPU µs/login | CPU ratio (goal ≤ 0.67) | p99 nginx | p99 mfagate | "
                   "generator CPU % | errors |")
        out.append("|---" * 12 + "|")
        for tls in ("plain", "implicit"):
            for c in b.concurrencies():
                cell = "%s-c%d" % (tls, c)
                rn = self.m("2-proxy", cell, "nginx-fast", "rate")
                rm = self.m("2-proxy", cell, "mfagate-fast", "rate")
                cn = self.m("2-proxy", cell, "nginx-fast", "cpu_us_per_login", "proxy")
                cm = self.m("2-proxy", cell, "mfagate-fast", "cpu_us_per_login", "proxy")
                g = med([r["gen_cpu_pct"] for r in self.rs if r["scenario"] == "2-proxy"
                         and r["cell"] == cell])
                errs = sum(r["errors"] for r in self.rs if r["scenario"] == "2-proxy"
                           and r["cell"] == cell)
                out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    tls, c, self.f(rn), self.f(rm), self.ratio(rm, rn), self.f(cn, "%.0f"),
                    self.f(cm, "%.0f"), self.ratio(cm, cn),
                    self.f(self.m("2-proxy", cell, "nginx-fast", "p99_ms"), "%.2f"),
                    self.f(self.m("2-proxy", cell, "mfagate-fast", "p99_ms"), "%.2f"),
                    self.f(g, "%.0f"), errs))
        out.append("")

        # 3
        out.append("## 3. App-password checks: cold (argon2id) vs warm (verification cache)\n")
        out.append("| run | logins/s | p50 ms | p90 ms | p99 ms | p99.9 ms | mfagate CPU µs/login | "
                   "errors |")
        out.append("|---" * 8 + "|")
        for cell in ("warm-c16", "cold-c16", "warm-open-alone", "warm-open-with-cold",
                     "cold-open-beside-warm", "warm-open-with-hog"):
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                cell, self.f(self.m("3-kdf", cell, "mfagate", "rate")),
                self.f(self.m("3-kdf", cell, "mfagate", "p50_ms"), "%.2f"),
                self.f(self.m("3-kdf", cell, "mfagate", "p90_ms"), "%.2f"),
                self.f(self.m("3-kdf", cell, "mfagate", "p99_ms"), "%.2f"),
                self.f(self.m("3-kdf", cell, "mfagate", "p999_ms"), "%.2f"),
                self.f(self.m("3-kdf", cell, "mfagate", "cpu_us_per_login", "proxy"), "%.0f"),
                sum(r["errors"] for r in self.pick("3-kdf", cell, "mfagate"))))
        out.append("\nOpen-loop runs: warm logins at %.0f/s (latency from when each was due); "
                   "the cold stream offers each of %d never-verified passwords once. "
                   "`warm-open-with-hog`: the warm stream beside `mfa-hog`, pure CPU work "
                   "at the cold stream's rate and CPU per check, scheduled like the KDF "
                   "thread (nice 19, 0.1 ms slice) in a process of its own: the tail any "
                   "background work of that duty cycle costs here (its CPU column is "
                   "mfagate's, without the hog's).\n"
                   % (b.a.warm_rate, NCOLD))

        # 4
        sp = getattr(b, "speed", {})
        out.append("## 4. TLS: full vs resumed handshakes (implicit TLS, fastback, concurrency 16)\n")
        out.append("| handshake | nginx /s | mfagate /s | nginx CPU µs/login | mfagate CPU µs/login | "
                   "resumed share (mfagate) | openssl-speed crypto µs/handshake | crypto share of mfagate CPU |")
        out.append("|---" * 8 + "|")
        for kind in ("full", "resumed"):
            cell = "implicit-c16-%s" % kind
            cm = self.m("4-tls", cell, "mfagate-fast", "cpu_us_per_login", "proxy")
            crypto = sp.get("%s_us" % kind)
            rows = self.pick("4-tls", cell, "mfagate-fast")
            share = med([r["tls_resumed"] / r["ok"] for r in rows if r["ok"]])
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                kind, self.f(self.m("4-tls", cell, "nginx-fast", "rate")),
                self.f(self.m("4-tls", cell, "mfagate-fast", "rate")),
                self.f(self.m("4-tls", cell, "nginx-fast", "cpu_us_per_login", "proxy"), "%.0f"),
                self.f(cm, "%.0f"), self.f(share, "%.2f"), self.f(crypto, "%.0f"),
                self.f(crypto / cm * 100 if crypto and cm else None, "%.0f%%")))
        if sp:
            out.append("\n`openssl speed` on this machine, one core: X25519 %.0f op/s, ECDSA P-256 "
                       "sign %.0f/s, verify %.0f/s → server-side crypto ceiling %.0f full or %.0f "
                       "resumed handshakes/s per core (2 X25519 + 1 sign, or 2 X25519).\n" % (
                           sp.get("x25519_ops", 0), sp.get("ecdsa_sign", 0),
                           sp.get("ecdsa_verify", 0), sp.get("full_per_core", 0),
                           sp.get("resumed_per_core", 0)))

        # 5
        out.append("## 5. Memory per idle logged-in session (fastback behind)\n")
        out.append("PSS (and RSS) growth of the proxy's processes divided by sessions held.\n")
        out.append("| sessions | tls | nginx kB/session PSS (RSS) | mfagate kB/session PSS (RSS) | "
                   "ratio (goal ≤ 0.8) | held nginx | held mfagate |")
        out.append("|---" * 7 + "|")
        for r0 in sorted({(r["cell"]) for r in self.rs if r["scenario"] == "5-memory"},
                         key=lambda c: (int(c.split("-")[1]), c)):
            tls, n = r0.split("-")
            pn = self.m("5-memory", r0, "nginx-fast", "pss_kb_per_session", "proxy")
            pm = self.m("5-memory", r0, "mfagate-fast", "pss_kb_per_session", "proxy")
            rn = self.m("5-memory", r0, "nginx-fast", "rss_kb_per_session", "proxy")
            rm = self.m("5-memory", r0, "mfagate-fast", "rss_kb_per_session", "proxy")
            out.append("| %s | %s | %s (%s) | %s (%s) | %s | %s | %s |" % (
                n, tls, self.f(pn), self.f(rn), self.f(pm), self.f(rm), self.ratio(pm, pn),
                self.f(self.m("5-memory", r0, "nginx-fast", "held"), "%.0f"),
                self.f(self.m("5-memory", r0, "mfagate-fast", "held"), "%.0f")))
        out.append("")

        # 6
        out.append("## 6. Relay: FETCH of a %d MB message, 2 sessions\n" % BIG_MB)
        out.append("| tls | direct MB/s | nginx MB/s | mfagate MB/s | mfagate÷nginx | "
                   "nginx CPU s/GB | mfagate CPU s/GB |")
        out.append("|---" * 7 + "|")
        for tls in ("plain", "implicit"):
            cell = "%s-c2" % tls
            vals = [self.m("6-relay", cell, t, "fetch_mb_s") for t in ("direct", "nginx", "mfagate")]

            def cpu_per_gb(t):
                rows = self.pick("6-relay", cell, t)
                return med([r["servers"]["proxy"]["cpu_s"] / (r["fetch_mb_s"] * r["seconds"] / 1e3)
                            for r in rows if r["fetch_mb_s"] > 0 and "proxy" in r["servers"]])
            out.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                tls, self.f(vals[0]), self.f(vals[1]), self.f(vals[2]), self.ratio(vals[2], vals[1]),
                self.f(cpu_per_gb("nginx"), "%.2f"), self.f(cpu_per_gb("mfagate"), "%.2f")))
        out.append("")
        out.append("## 7. POP3, SMTP (and IMAP STARTTLS) logins, c=16\n")
        out.append("AUTH PLAIN with the initial response (IMAP: LOGIN); `starttls`: STLS / "
                   "STARTTLS first. SMTP: no nginx (it needs XCLIENT trust to log in to an "
                   "SMTP backend).\n")
        out.append("### In front of mfa-fastback\n")
        out.append("| proto | tls | nginx /s | mfagate /s | nginx CPU µs/login | "
                   "mfagate CPU µs/login | CPU ratio | p99 nginx | p99 mfagate | errors |")
        out.append("|---" * 10 + "|")
        for proto, tlss in (("imap", ("starttls",)), ("pop3", ("plain", "starttls")),
                            ("smtp", ("plain", "starttls"))):
            for tls in tlss:
                cell = "%s-%s-c16" % (proto, tls)
                cn = self.m("7-proto", cell, "nginx-fast", "cpu_us_per_login", "proxy")
                cm = self.m("7-proto", cell, "mfagate-fast", "cpu_us_per_login", "proxy")
                errs = sum(r["errors"] for r in self.rs if r["scenario"] == "7-proto"
                           and r["cell"] == cell)
                out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    proto, tls, self.f(self.m("7-proto", cell, "nginx-fast", "rate")),
                    self.f(self.m("7-proto", cell, "mfagate-fast", "rate")),
                    self.f(cn, "%.0f"), self.f(cm, "%.0f"), self.ratio(cm, cn),
                    self.f(self.m("7-proto", cell, "nginx-fast", "p99_ms"), "%.2f"),
                    self.f(self.m("7-proto", cell, "mfagate-fast", "p99_ms"), "%.2f"), errs))
        out.append("")
        out.append("### Against Dovecot\n")
        out.append("Dovecot's pop3 service, and its submission service (which relays to "
                   "fastback's SMTP mode). Direct and nginx: account passwords; mfagate: warm "
                   "app passwords, master login at Dovecot. Proxy CPU and Dovecot CPU (its "
                   "whole process tree) µs per login; with `starttls`, Dovecot does the TLS only "
                   "when direct (the proxies speak cleartext to it).\n")
        out.append("`mfagate`: the client's address by `XCLIENT` (`forward_client_addr = yes`); "
                   "`mfagate-pp`: by a PROXY v2 header to Dovecot's `haproxy = yes` listeners "
                   "(`forward_client_addr = proxy`). nginx forwards no address.\n")
        out.append("| proto | tls | target | logins/s | ÷ direct | ÷ nginx | proxy CPU µs/login | "
                   "Dovecot µs/login | p99 ms | errors |")
        out.append("|---" * 10 + "|")
        for proto in ("pop3", "smtp"):
            for tls in ("plain", "starttls"):
                cell = "%s-dovecot-%s-c16" % (proto, tls)
                rd = self.m("7-proto", cell, "direct", "rate")
                rn = self.m("7-proto", cell, "nginx", "rate")
                for t in ("direct", "nginx", "mfagate", "mfagate-pp"):
                    rows = self.pick("7-proto", cell, t)
                    if not rows:
                        continue
                    r = self.m("7-proto", cell, t, "rate")
                    out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                        proto, tls, t, self.f(r),
                        "" if t == "direct" else self.ratio(r, rd),
                        "" if t in ("direct", "nginx") else self.ratio(r, rn),
                        self.f(self.m("7-proto", cell, t, "cpu_us_per_login", "proxy"), "%.0f"),
                        self.f(self.m("7-proto", cell, t, "cpu_us_per_login", "dovecot"), "%.0f"),
                        self.f(self.m("7-proto", cell, t, "p99_ms"), "%.2f"),
                        sum(x["errors"] for x in rows)))
        out.append("")
        out.append("Raw: every run's JSON line is in `results.jsonl` beside this file.\n")
        return "\n".join(out)

    def targets(self):
        rows = []
        b = self.b

        def verdict(ok):
            return "–" if ok is None else ("yes" if ok else "**no**")
        # proxy-bound CPU/login ≤ 0.67× nginx (worst cell over plain/TLS at c=16,64)
        ratios = []
        for tls in ("plain", "implicit"):
            for c in (16, 64):
                cell = "%s-c%d" % (tls, c)
                cn = self.m("2-proxy", cell, "nginx-fast", "cpu_us_per_login", "proxy")
                cm = self.m("2-proxy", cell, "mfagate-fast", "cpu_us_per_login", "proxy")
                if cn and cm:
                    ratios.append((cm / cn, cell))
        if ratios:
            worst = max(ratios)
            rows.append(("proxy-bound CPU/login vs nginx", "%.2f× (worst: %s; best %.2f×)" % (
                worst[0], worst[1], min(ratios)[0]), "≤ 0.67×", verdict(worst[0] <= 0.67)))
        for target, how in (("mfagate", ""), ("mfagate-pp", " (PROXY header)")):
            rn_, rd_ = [], []
            for tls in ("plain", "implicit"):
                for c in b.concurrencies():
                    cell = "%s-c%d" % (tls, c)
                    rd = self.m("1-backend", cell, "direct", "rate")
                    rn = self.m("1-backend", cell, "nginx", "rate")
                    rm = self.m("1-backend", cell, target, "rate")
                    if rm and rn:
                        rn_.append((rm / rn, cell))
                    if rm and rd:
                        rd_.append((rm / rd, cell))
            if rn_:
                w = min(rn_)
                rows.append(("backend-bound rate vs nginx" + how, "%.2f× (worst: %s)" % w,
                             "≥ 1.0×", verdict(w[0] >= 1.0)))
            if rd_:
                w = min(rd_)
                rows.append(("backend-bound rate vs direct Dovecot" + how,
                             "%.2f× (worst: %s)" % w, "≥ 0.9×", verdict(w[0] >= 0.9)))
        a = self.m("3-kdf", "warm-open-alone", "mfagate", "p99_ms")
        w = self.m("3-kdf", "warm-open-with-cold", "mfagate", "p99_ms")
        if a and w:
            h = self.m("3-kdf", "warm-open-with-hog", "mfagate", "p99_ms")
            rows.append(("warm p99 while cold checks run", "%.2f ms vs %.2f ms alone (%+.0f%%)%s" % (
                w, a, (w / a - 1) * 100,
                "; beside a CPU hog alone: %.2f ms (%+.0f%%)" % (h, (h / a - 1) * 100) if h else ""),
                "within +10%", verdict(w <= 1.1 * a)))
        mem = []
        for cell in {r["cell"] for r in self.rs if r["scenario"] == "5-memory"}:
            pn = self.m("5-memory", cell, "nginx-fast", "pss_kb_per_session", "proxy")
            pm = self.m("5-memory", cell, "mfagate-fast", "pss_kb_per_session", "proxy")
            if pn and pm:
                mem.append((pm / pn, cell))
        if mem:
            w = max(mem)
            rows.append(("memory per idle session vs nginx", "%.2f× (worst: %s)" % w, "≤ 0.8×",
                         verdict(w[0] <= 0.8)))
        rel = []
        for tls in ("plain", "implicit"):
            cell = "%s-c2" % tls
            n = self.m("6-relay", cell, "nginx", "fetch_mb_s")
            mm = self.m("6-relay", cell, "mfagate", "fetch_mb_s")
            if n and mm:
                rel.append((mm / n, cell))
        if rel:
            w = min(rel)
            rows.append(("relay MB/s vs nginx", "%.2f× (worst: %s)" % w, "≥ 1.0×",
                         verdict(w[0] >= 1.0)))
        return rows

    def plots(self, outdir):
        if shutil.which("gnuplot") is None:
            return []
        made = []
        b = self.b
        for scen, names, title in (("1-backend", ["direct", "nginx", "mfagate"],
                                    "backend-bound logins/s (Dovecot)"),
                                   ("2-proxy", ["nginx-fast", "mfagate-fast"],
                                    "proxy-bound logins/s (fastback)")):
            dat = os.path.join(b.work, scen + ".dat")
            with open(dat, "w") as f:
                for tls in ("plain", "implicit"):
                    for c in b.concurrencies():
                        cell = "%s-c%d" % (tls, c)
                        f.write("%s-%d %s\n" % (tls, c, " ".join(
                            self.f(self.m(scen, cell, n, "rate"), "%.1f").replace("–", "0")
                            for n in names)))
            for term, ext in (("pngcairo size 900,500", "png"), ("svg size 900,500", "svg")):
                path = os.path.join(outdir, "%s.%s" % (scen, ext))
                cols = ", ".join("'%s' using %d:xtic(1) title '%s'" % (dat, i + 2, n)
                                 for i, n in enumerate(names))
                script = ("set terminal %s; set output '%s'; set style data histograms; "
                          "set style fill solid 0.8; set boxwidth 0.9; set key top left; "
                          "set ylabel 'logins/s'; set title '%s'; set yrange [0:*]; plot %s\n"
                          % (term, path, title, cols))
                r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
                if r.returncode == 0:
                    made.append(path)
        return made


DOVECOT_CONF = """\
# Written by bench/bench.py: the tuned Dovecot every target uses.
base_dir = {base_dir}
state_dir = {d}/state
instance_name = mfabench-{inst}
protocols = imap pop3 submission
listen = {host}
shutdown_clients = yes
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
log_timestamp = "%Y-%m-%d %H:%M:%S "

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.3
ssl_curve_list = X25519
disable_plaintext_auth = no
login_trusted_networks = 127.0.0.0/8
haproxy_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
auth_master_user_separator = *
auth_cache_size = 10M
auth_cache_ttl = 1 hour
auth_cache_negative_ttl = 0
auth_failure_delay = 0

default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 100000
mail_fsync = never

# Submission relays to fastback's SMTP mode (scenario 7 only logs in; the
# relay connection is opened at login all the same).
hostname = localhost
submission_relay_host = {host}
submission_relay_port = {relay}
submission_relay_trusted = no
submission_relay_ssl = no

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

service imap-login {{
  chroot = login
  inet_listener imap {{
    address = {host}
    port = {imap}
  }}
  inet_listener imap_haproxy {{
    address = {host}
    port = {imap_pp}
    haproxy = yes
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 20000
  vsz_limit = 1G
}}
service imap {{
  service_count = 1000
  process_limit = 2048
  client_limit = 1
  vsz_limit = 1G
}}
service pop3-login {{
  chroot = login
  inet_listener pop3 {{
    address = {host}
    port = {pop3}
  }}
  inet_listener pop3_haproxy {{
    address = {host}
    port = {pop3_pp}
    haproxy = yes
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 20000
  vsz_limit = 1G
}}
service pop3 {{
  service_count = 1000
  process_limit = 2048
  client_limit = 1
  vsz_limit = 1G
}}
service submission-login {{
  chroot = login
  inet_listener submission {{
    address = {host}
    port = {submission}
  }}
  inet_listener submission_haproxy {{
    address = {host}
    port = {submission_pp}
    haproxy = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 20000
  vsz_limit = 1G
}}
service submission {{
  service_count = 1000
  process_limit = 2048
  client_limit = 1
  vsz_limit = 1G
}}
service auth {{
  client_limit = 20000
}}
service anvil {{
  client_limit = 20000
  # No per-address auth penalty: the auth process cannot open this socket.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
default_process_limit = 2048
default_client_limit = 20000
protocol imap {{
  mail_max_userip_connections = 100000
}}
protocol pop3 {{
  mail_max_userip_connections = 100000
}}
"""

MFAGATE_CONF = """\
; Written by bench/bench.py.
[server]
workers = {workers}
state_dir = {state}
allow_plaintext_auth = yes
log_level = {log_level}

[tls]
cert = {cert}
key = {key}

[listen]
imap = {host}:{imap}
imaps = {host}:{imaps}
{more_listen}
[backend]
host = {host}
imap = {backend}
{more_backend}imap_tls = no
master_user = mfagate
master_password = {master_pw}
forward_client_addr = {forward}

[limits]
preauth_timeout = 60s
idle_timeout = 30m
backend_timeout = 10s
shutdown_grace = 1s

[auth]
cache_ttl = 10m
cache_entries = {cache_entries}
fail_lockout = 1000
"""

NGINX_CONF = """\
# Written by bench/bench.py: nginx's mail proxy, best case.
load_module /usr/lib/nginx/modules/ngx_mail_module.so;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{
  worker_connections 30000;
}}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  server {{
    listen {host}:{ngx_auth};
    keepalive_requests 100000;
    location = /dovecot {{
      add_header Auth-Status OK;
      add_header Auth-Server {host};
      add_header Auth-Port {dovecot_imap};
      return 204;
    }}
    location = /fastback {{
      add_header Auth-Status OK;
      add_header Auth-Server {host};
      add_header Auth-Port {fastback};
      return 204;
    }}
    location = /dovecot_pop3 {{
      add_header Auth-Status OK;
      add_header Auth-Server {host};
      add_header Auth-Port {dovecot_pop3};
      return 204;
    }}
    location = /fastback_pop3 {{
      add_header Auth-Status OK;
      add_header Auth-Server {host};
      add_header Auth-Port {fastback_pop3};
      return 204;
    }}
  }}
}}
mail {{
  ssl_certificate {cert};
  ssl_certificate_key {key};
  ssl_protocols TLSv1.3;
  ssl_ecdh_curve X25519;
  ssl_session_tickets on;
  imap_auth login plain;
  imap_capabilities IMAP4rev1 SASL-IR LITERAL+ ID IDLE;
  proxy on;
  proxy_pass_error_message on;
  server {{
    protocol imap;
    listen {host}:{ngx_d_imap};
    starttls on;
    auth_http {host}:{ngx_auth}/dovecot;
  }}
  server {{
    protocol imap;
    listen {host}:{ngx_d_imaps} ssl;
    auth_http {host}:{ngx_auth}/dovecot;
  }}
  server {{
    protocol imap;
    listen {host}:{ngx_f_imap};
    starttls on;
    auth_http {host}:{ngx_auth}/fastback;
  }}
  server {{
    protocol imap;
    listen {host}:{ngx_f_imaps} ssl;
    auth_http {host}:{ngx_auth}/fastback;
  }}
  server {{
    protocol pop3;
    listen {host}:{ngx_d_pop3};
    starttls on;
    pop3_auth plain;
    auth_http {host}:{ngx_auth}/dovecot_pop3;
  }}
  server {{
    protocol pop3;
    listen {host}:{ngx_f_pop3};
    starttls on;
    pop3_auth plain;
    auth_http {host}:{ngx_auth}/fastback_pop3;
  }}
}}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, 3 s runs, no 256/10k")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=0, help="measured seconds per run")
    ap.add_argument("--only", default="", help="scenarios to run, e.g. 1,2 (default: all)")
    ap.add_argument("--no-10k", action="store_true", help="skip 10k idle sessions")
    ap.add_argument("--warm-rate", type=float, default=300.0,
                    help="scenario 3: open-loop warm logins/s")
    ap.add_argument("--mfagate-log-level", default="info")
    ap.add_argument("--loadgen", default="")
    ap.add_argument("--fastback", default="")
    ap.add_argument("--hog", default="", help="mfa-hog (default: beside --loadgen)")
    ap.add_argument("--mfagate", default="")
    ap.add_argument("--serve", type=int, default=0,
                    help="set up, start every server, wait this many seconds, stop (for profiling)")
    ap.add_argument("--report-only", nargs="+", metavar="JSONL",
                    help="only rebuild RESULTS.md from these results.jsonl files")
    ap.add_argument("--drop", default="",
                    help="with --report-only: scenarios (e.g. 5-memory) taken from the last file only")
    ap.add_argument("--elapsed", type=float, default=0, help="with --report-only: minutes, for the header")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--out", default=RESULTS,
                    help="where RESULTS.md, results.jsonl and the plots go (default: bench/results)")
    args = ap.parse_args()
    out = args.out

    b = Bench(args)
    if args.report_only:
        # Rebuild the report from earlier runs' JSON lines (later lines of a
        # cell replace nothing: all are medians together, so merge whole
        # scenarios, e.g. a full run plus a re-run of --only 5).
        for path in args.report_only:
            for line in open(path):
                r = json.loads(line)
                if r.get("scenario") == "meta":
                    b.speed = r.get("speed", {})
                    b.quick, b.repeats, b.dur = r["quick"], r["repeats"], r["duration"]
                    continue
                if args.drop and r["scenario"] in args.drop.split(",") and \
                        path != args.report_only[-1]:
                    continue
                b.results.append(r)
        b.elapsed = args.elapsed * 60
        with open(b.jsonl, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in b.results))
        b.jsonl = os.path.join(out, "results.jsonl.new")
        with open(b.jsonl, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in b.results))
        args.serve = 0
        rep = Report(b)
        md = rep.markdown()
        plots = rep.plots(out)
        if plots:
            md += "\nPlots: " + ", ".join("`%s`" % os.path.basename(p) for p in plots) + "\n"
        with open(os.path.join(out, "RESULTS.md"), "w") as f:
            f.write(md)
        os.replace(b.jsonl, os.path.join(out, "results.jsonl"))
        shutil.rmtree(b.work, ignore_errors=True)
        print(md)
        return

    def on_signal(sig, frame):
        raise SystemExit("bench: signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        b.run()
    finally:
        b.stop_all()
        if not hasattr(b, "elapsed"):
            b.elapsed = time.time() - b.t_start
        if not args.keep:
            # Keep the logs and configs; drop the mail store and the big message.
            shutil.rmtree(os.path.join(b.work, "dovecot", "home"), ignore_errors=True)
    if args.serve:
        return
    rep = Report(b)
    md = rep.markdown()
    os.makedirs(out, exist_ok=True)
    plots = rep.plots(out)
    if plots:
        md += "\nPlots: " + ", ".join("`%s`" % os.path.basename(p) for p in plots) + "\n"
    path = os.path.join(out, "RESULTS.md")
    with open(path, "w") as f:
        f.write(md)
    shutil.copy(b.jsonl, os.path.join(out, "results.jsonl"))
    print(md)
    log("wrote %s (work dir %s)" % (path, b.work))


if __name__ == "__main__":
    main()
