"""imap_raw - a byte-exact IMAP client for the IMAP integration tests.

imaplib hides what the server sent (and has no IDLE), so the tests that check exact
responses, pipelining, literals, malformed input or IDLE use RawIMAP: send bytes, read
lines with a timeout, run one tagged command and get back its untagged lines and the
tagged completion. Every read has a deadline: a test never hangs on a silent server.
"""
import base64
import imaplib
import smtplib
import socket
import ssl
import time

import tern_harness as th

BOB = "bob@example.test"
BOB_PW = th.USERS[BOB]
ALICE = "alice@example.test"
ALICE_PW = th.USERS[ALICE]
LOOPBACK_OK = {"allow_plaintext_auth_loopback": "yes"}


class RawIMAP:
    """A socket that speaks IMAP lines. `transcript` keeps everything both ways (C: / S:)."""

    def __init__(self, port, tls=False, timeout=10.0, greeting=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            self.sock = th.tls_context().wrap_socket(self.sock, server_hostname=th.HOSTNAME)
        self.timeout = timeout
        self.buf = b""
        self.transcript = []
        self.n = 0
        self.greeting = self.readline() if greeting else None

    # -- bytes ---------------------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        shown = data.decode("utf-8", "replace").rstrip("\r\n")
        if len(shown) > 300:
            shown = shown[:200] + f"...({len(data)} bytes)"
        self.transcript.append("C: " + shown)
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete line from the server; unread {self.buf!r}\n"
                               + self.text())
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError(f"no complete line from the server; unread {self.buf!r}\n"
                               + self.text()) from None
        if not chunk:
            raise EOFError(f"connection closed by the server; unread {self.buf!r}\n" + self.text())
        self.buf += chunk

    def readline(self, timeout=None):
        """One line without its CRLF (bytes)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        self.transcript.append("S: " + line.decode("utf-8", "replace"))
        return line

    def read_bytes(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        self.transcript.append("S: " + data.decode("utf-8", "replace"))
        return data

    def maybe_line(self, timeout):
        """A line if one comes within timeout, else None."""
        try:
            return self.readline(timeout)
        except TimeoutError:
            return None

    def read_until_eof(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        data = b""
        while time.monotonic() < deadline:
            if self.buf:
                data += self.buf
                self.buf = b""
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
        self.transcript.append("S: " + data.decode("utf-8", "replace"))
        return data

    # -- commands ------------------------------------------------------------------------
    def tag(self):
        self.n += 1
        return f"t{self.n}"

    def read_response(self, tag, timeout=None):
        """Lines up to the tagged completion of tag: (untagged [bytes], tagged bytes)."""
        untagged = []
        t = tag.encode()
        while True:
            line = self.readline(timeout)
            if line.startswith(t + b" "):
                return untagged, line
            untagged.append(line)

    def cmd(self, text, timeout=None):
        """Send 'TAG text' and read to its tagged line: (untagged, tagged)."""
        tag = self.tag()
        self.send(f"{tag} {text}\r\n")
        return self.read_response(tag, timeout)

    def ok(self, text, timeout=None):
        """cmd() that must end in OK; returns the untagged lines."""
        untagged, tagged = self.cmd(text, timeout)
        status = tagged.split(b" ", 2)[1] if b" " in tagged else b""
        assert status == b"OK", f"{text!r} -> {tagged!r}\n{self.text()}"
        return untagged

    def login(self, user=BOB, pw=BOB_PW):
        return self.ok(f'LOGIN "{user}" "{pw}"')

    def text(self):
        return "\n".join(self.transcript[-60:])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def status_of(tagged):
    """b't3 NO [TRYCREATE] ...' -> 'NO'"""
    parts = tagged.split(b" ", 2)
    return parts[1].decode() if len(parts) > 1 else ""


def imap(inst, user=BOB, pw=BOB_PW):
    """An imaplib client logged in over plain loopback (instance with LOOPBACK_OK)."""
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(user, pw)
    return c


def imaps(inst, user=BOB, pw=BOB_PW):
    c = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    c.login(user, pw)
    return c


def raw_login(inst, user=BOB, pw=BOB_PW, timeout=10.0):
    c = RawIMAP(inst.ports["imap"], timeout=timeout)
    c.login(user, pw)
    return c


def deliver(inst, to=BOB, subject=None, body=None, sender="sender@example.net",
            extra_headers=b""):
    """Deliver one message over SMTP and wait for the file; returns the token in it."""
    tok = th.token()
    msg = th.make_message(tok, sender=sender, to=to, subject=subject, body=body,
                          extra_headers=extra_headers)
    with inst.smtp() as s:
        s.sendmail(sender, [to], msg)
    inst.wait_message(to, tok)
    return tok


def deliver_raw(inst, msg, to=BOB, sender="sender@example.net"):
    """Deliver exact bytes (msg must carry a unique marker the caller waits for)."""
    with inst.smtp() as s:
        s.sendmail(sender, [to], msg)


def plain_ir(user, pw):
    return base64.b64encode(f"\0{user}\0{pw}".encode()).decode()


def nums(line, word):
    """b'* SEARCH 1 2 3' -> [1, 2, 3] for word SEARCH."""
    parts = line.decode().split()
    assert parts[0] == "*" and parts[1].upper() == word, line
    return [int(x) for x in parts[2:]]
