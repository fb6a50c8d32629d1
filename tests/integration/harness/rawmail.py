"""Byte-level POP3 and SMTP clients for tests that need exact replies.

poplib and smtplib retry, hide continuations and cannot pipeline; these do
not.  Both are RawImap (connect, send, readline, starttls, quiet_for,
read_until_eof) plus each protocol's reply shape:

    c = RawPop3.connect(port, tls=ctx)       # reads the greeting
    c.cmd("USER alice")                       # "+OK" (one line, str, no CRLF)
    c.multiline()                             # the lines after "+OK" up to "."

    c = RawSmtp.connect(port)                 # reads the 220 greeting
    code, lines = c.cmd("EHLO client.example")   # 250, ["client.example", ...]
"""
from rawimap import RawImap, b64  # noqa: F401


class RawPop3(RawImap):
    def line(self, timeout=None):
        return self.readline(timeout).rstrip(b"\r\n").decode("utf-8", "replace")

    def cmd(self, line, timeout=None):
        """Sends one command line; its status line (str, no CRLF)."""
        self.send(line + "\r\n")
        return self.line(timeout)

    def multiline(self, timeout=None):
        """The lines of a multi-line response up to the "." (dot-unstuffed)."""
        out = []
        while True:
            line = self.line(timeout)
            if line == ".":
                return out
            out.append(line[1:] if line.startswith(".") else line)


class RawSmtp(RawImap):
    def reply(self, timeout=None):
        """One (possibly multi-line) reply: (code, [text of each line])."""
        texts = []
        while True:
            line = self.readline(timeout).rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise AssertionError("not an SMTP reply line: %r" % line)
            texts.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), texts

    def reply_line(self, timeout=None):
        """A one-line reply exactly as sent (str, no CRLF)."""
        line = self.readline(timeout).rstrip(b"\r\n").decode("utf-8", "replace")
        assert line[3:4] != "-", "multi-line reply: %r" % line
        return line

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n")
        return self.reply(timeout)

    def ehlo(self, name="client.example", timeout=None):
        """EHLO; the set of extension keywords (upper case)."""
        code, texts = self.cmd("EHLO " + name, timeout)
        assert code == 250, (code, texts)
        return {t.split(" ", 1)[0].upper() for t in texts[1:]}, texts


def dot_stuff(data):
    """A message (CRLF lines) as sent after DATA, with the final dot line."""
    lines = data.split(b"\r\n")
    body = b"\r\n".join((b"." + l) if l.startswith(b".") else l for l in lines)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"
