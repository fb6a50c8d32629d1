"""A byte-level IMAP client for tests that need to see exact lines.

imaplib hides continuations, literals and pipelining; this does not:

    c = RawImap.connect(port, tls=ctx)          # reads the greeting
    untagged, tagged = c.cmd("a1 LOGIN alice alicepw")
    c.send(b"a STARTTLS\\r\\nb CAPABILITY\\r\\n"); c.readline(); c.starttls(ctx)
"""
import base64
import imaplib
import socket
import ssl
import time

# imaplib does not know ID (RFC 2971); teach it for tests that use imaplib.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))


def client_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


class Eof(Exception):
    pass


class RawImap:
    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.greeting = None
        self.transcript = []

    @classmethod
    def connect(cls, port, tls=None, host="127.0.0.1", timeout=10.0,
                source=None, greet=True):
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=host)
        c = cls(sock, timeout)
        if greet:
            c.greeting = c.readline()
        return c

    # -- bytes ----------------------------------------------------------------

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.transcript.append(b"C: " + data)
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no data in time; have %r" % self.buf[-200:])
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Eof("connection closed; unread %r" % self.buf[-200:])
        self.buf += chunk

    def readline(self, timeout=None):
        """One line including CRLF (bytes)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\n")
        line += b"\n"
        self.transcript.append(b"S: " + line)
        return line

    def read_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, tag, timeout=None):
        """Reads lines (with literals) until the tagged one: (untagged, tagged)
        as lists/str without CRLF; literal data is inlined into the line."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        untagged = []
        t = tag.encode() + b" "
        while True:
            line = self.readline(max(0.001, deadline - time.monotonic()))
            while line.endswith(b"}\r\n") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-3].rstrip(b"+"))
                line = line + self.read_exact(n, max(0.001, deadline - time.monotonic()))
                line += self.readline(max(0.001, deadline - time.monotonic()))
            if line.startswith(t):
                return untagged, line.rstrip(b"\r\n").decode("utf-8", "replace")
            untagged.append(line.rstrip(b"\r\n").decode("utf-8", "replace"))

    def cmd(self, line, timeout=None):
        """Sends `line` (its first word is the tag) and reads the response."""
        tag = line.split(" ", 1)[0]
        self.send(line + "\r\n")
        return self.read_response(tag, timeout)

    def expect_continuation(self, timeout=None):
        line = self.readline(timeout)
        if not line.startswith(b"+"):
            raise AssertionError("expected a continuation, got %r" % line)
        return line

    def quiet_for(self, seconds):
        """Returns whatever arrived within `seconds` (b"" if nothing); EOF -> None."""
        deadline = time.monotonic() + seconds
        got = self.buf
        self.buf = b""
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return got
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(65536)
                if not chunk:
                    return got if got else None
                got += chunk
        except (socket.timeout, TimeoutError):
            return got

    def read_until_eof(self, timeout):
        """Everything until the peer closes; raises if it does not within timeout."""
        deadline = time.monotonic() + timeout
        data = self.buf
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("connection still open after %.1fs; got %r"
                                     % (timeout, data[-300:]))
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
                return data
            if not chunk:
                return data
            data += chunk

    def starttls(self, ctx, host="127.0.0.1"):
        assert self.buf == b"", "unread bytes before TLS: %r" % self.buf
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=host)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def login_line(tag, user, password):
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "%s LOGIN %s %s" % (tag, q(user), q(password))
