#!/usr/bin/python3
"""A tiny SMTP receiver that stores every message it accepts as a file.

Dovecot's submission service cannot run without a relay
(`submission_relay_host`); this sink is that relay in tests and in the demo.
It speaks just enough ESMTP for Dovecot (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT; 8BITMIME and SIZE advertised, parameters ignored) and writes each
message to DIR/<n>.eml: two kinds of envelope lines, then the message
exactly as received (dot-unstuffed):

    X-Sink-Mail-From: <a@b>
    X-Sink-Rcpt-To: <c@d>            (one per recipient)
    ...message...

With xclient=True it also plays a Postfix that trusts its client for
XCLIENT (advertised as `XCLIENT NAME ADDR PORT PROTO HELO`): an XCLIENT
command gets a new 220 greeting, and the session's messages are stored with
one more envelope line first, `X-Sink-Xclient: ADDR=... PORT=...` (the
command's arguments as sent).

Standard library only (aiosmtpd is not packaged here).  Use it in-process:

    sink = SmtpSink(dir); sink.start(); ...; sink.messages(); sink.stop()

or as a program:  smtpsink.py --dir DIR [--port N]  (prints "port=N").
"""
import argparse
import os
import signal
import socket
import socketserver
import sys
import threading
import time

MAX_MESSAGE = 64 * 1024 * 1024


class _Handler(socketserver.StreamRequestHandler):
    timeout = 300

    def _reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        self._reply("220 smtpsink ESMTP ready")
        mail_from, rcpts, xclient = None, [], None
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb == "EHLO":
                self.wfile.write(b"250-smtpsink\r\n250-8BITMIME\r\n"
                                 b"250-SIZE %d\r\n250-PIPELINING\r\n" % MAX_MESSAGE)
                if sink.xclient:
                    self.wfile.write(b"250-XCLIENT NAME ADDR PORT PROTO HELO\r\n")
                self.wfile.write(b"250 ENHANCEDSTATUSCODES\r\n")
                self.wfile.flush()
            elif verb == "XCLIENT" and sink.xclient:
                # Postfix: the session starts over with a new greeting.
                xclient, mail_from, rcpts = arg, None, []
                self._reply("220 smtpsink ESMTP ready")
            elif verb == "HELO":
                self._reply("250 smtpsink")
            elif verb == "MAIL":
                mail_from, rcpts = _path(arg), []
                self._reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if mail_from is None:
                    self._reply("503 5.5.1 MAIL first")
                else:
                    rcpts.append(_path(arg))
                    self._reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self._reply("503 5.5.1 RCPT first")
                    continue
                self._reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                if data is None:
                    return
                sink.store(mail_from, rcpts, data, xclient)
                self._reply("250 2.0.0 Ok: queued")
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self._reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self._reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self._reply("221 2.0.0 Bye")
                return
            else:
                self._reply("502 5.5.2 Command not recognized")

    def _read_data(self):
        chunks, size = [], 0
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw:
                return None
            if raw in (b".\r\n", b".\n"):
                return b"".join(chunks)
            if raw.startswith(b"."):
                raw = raw[1:]
            size += len(raw)
            if size <= MAX_MESSAGE:
                chunks.append(raw)


def _path(arg):
    # "FROM:<a@b> SIZE=12" -> "<a@b>"
    _, _, rest = arg.partition(":")
    return rest.strip().split(" ", 1)[0]


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SmtpSink:
    def __init__(self, directory, host="127.0.0.1", port=0, xclient=False):
        self.dir = os.path.abspath(directory)
        self.xclient = xclient
        os.makedirs(self.dir, exist_ok=True)
        self._server = _Server((host, port), _Handler)
        self._server.sink = self
        self.host, self.port = self._server.server_address[:2]
        self._lock = threading.Lock()
        self._count = 0
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="smtpsink", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def store(self, mail_from, rcpts, data, xclient=None):
        with self._lock:
            self._count += 1
            n = self._count
        head = "X-Sink-Xclient: %s\r\n" % xclient if xclient is not None else ""
        head += "X-Sink-Mail-From: %s\r\n" % mail_from
        head += "".join("X-Sink-Rcpt-To: %s\r\n" % r for r in rcpts)
        tmp = os.path.join(self.dir, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(head.encode() + data)
        os.rename(tmp, os.path.join(self.dir, "%d.eml" % n))

    def messages(self):
        """The stored messages (bytes, envelope header lines included), oldest first."""
        names = sorted((f for f in os.listdir(self.dir) if f.endswith(".eml")),
                       key=lambda f: int(f.split(".")[0]))
        out = []
        for name in names:
            with open(os.path.join(self.dir, name), "rb") as f:
                out.append(f.read())
        return out

    def wait_messages(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            time.sleep(0.05)
        raise TimeoutError("smtpsink: %d message(s) after %.0fs, wanted %d"
                           % (len(self.messages()), timeout, count))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    sink = SmtpSink(args.dir, args.host, args.port).start()
    print("port=%d" % sink.port, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    sink.stop()


if __name__ == "__main__":
    sys.exit(main())
