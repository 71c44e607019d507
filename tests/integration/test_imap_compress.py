"""IMAP COMPRESS=DEFLATE (RFC 4978) against a real tern: the capability after login, the
command's refusals (before login, unknown mechanism, a second COMPRESS), and a session that
goes on compressed over plain loopback and over imaps: SELECT, FETCH of a multi-KB message
compared with its file, IDLE woken by a delivery, a large streamed APPEND, commands the client
pipelined behind COMPRESS, a decompression bomb, and a corrupt stream that ends the
connection (and only that one).

Neither imaplib nor RawIMAP speaks COMPRESS: after the tagged OK the tests put a
DeflateSocket (raw deflate both ways, zlib wbits -15, a sync flush after each send) in place
of the socket."""
import imaplib
import io
import re
import socket
import ssl
import time
import zlib

import pytest

import tern_harness as th
from imap_raw import (BOB, BOB_PW, LOOPBACK_OK, RawIMAP, deliver, imap, imaps, raw_login,
                      status_of)

# imaplib refuses commands it does not know
imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class DeflateSocket:
    """The socket side of a compressed IMAP connection: what is sent is deflated and
    sync-flushed, what is received is inflated. Counts the bytes on the wire."""

    def __init__(self, sock):
        self.sock = sock
        self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        self.pending = b""      # inflated, not yet returned by recv
        self.wire_in = 0
        self.wire_out = 0
        self.plain_in = 0

    def compress(self, data):
        return self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)

    def sendall(self, data):
        self.send_raw(self.compress(data))

    def send_raw(self, data):
        self.wire_out += len(data)
        self.sock.sendall(data)

    def feed(self, wire):
        """Inflate bytes already read from the wire (e.g. buffered behind the OK)."""
        self.wire_in += len(wire)
        out = self.inflate.decompress(wire)
        self.plain_in += len(out)
        return out

    def recv(self, n):
        while not self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b""
            self.pending = self.feed(chunk)   # a bare flush marker inflates to nothing
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def settimeout(self, t):
        self.sock.settimeout(t)

    def shutdown(self, how):
        self.sock.shutdown(how)

    def close(self):
        self.sock.close()


class _InflatedFile(io.RawIOBase):
    """What imaplib reads (its .file) once the connection is compressed."""

    def __init__(self, ds):
        self.ds = ds

    def readable(self):
        return True

    def readinto(self, b):
        data = self.ds.recv(len(b))
        b[:len(data)] = data
        return len(data)


def compress_raw(c):
    """COMPRESS DEFLATE on a RawIMAP; from its OK on, c speaks deflate."""
    u, t = c.cmd("COMPRESS DEFLATE")
    assert status_of(t) == "OK", c.text()
    ds = DeflateSocket(c.sock)
    c.buf = ds.feed(c.buf) if c.buf else b""
    c.sock = ds
    return ds


def compress_imaplib(m):
    """COMPRESS DEFLATE on a logged-in imaplib client, then swap its socket and file."""
    typ, data = m._simple_command("COMPRESS", "DEFLATE")
    assert typ == "OK", data
    ds = DeflateSocket(m.sock)
    m.sock = ds
    m.file = io.BufferedReader(_InflatedFile(ds))
    return ds


def fetch_literal(c, command):
    """Send a FETCH whose response carries one literal; returns (literal, tagged line)."""
    tag = c.tag()
    c.send(f"{tag} {command}\r\n")
    data = None
    while True:
        line = c.readline()
        if line.startswith(tag.encode() + b" "):
            return data, line
        m = re.search(rb"\{(\d+)\}$", line)
        if m and data is None:
            data = c.read_bytes(int(m.group(1)))


def big_body(tok, size):
    """About size bytes of mail-like text (compressible, not trivially so), CRLF lines."""
    lines = []
    n = 0
    i = 0
    while n < size:
        line = f"{tok} line {i:07d}: the quick brown fox {i * 7919 % 100003} jumps\r\n"
        lines.append(line)
        n += len(line)
        i += 1
    return "".join(lines).encode()


def caps_in(text):
    return {c.upper() for c in text.split()}


@pytest.fixture
def srv(tern_factory):
    """An instance of the test's own (one worker: quicker to start under ASan); plaintext
    LOGIN on loopback, messages up to 8 MB."""
    return tern_factory(workers=1,
                        settings={**LOOPBACK_OK, "max_message_size": str(8 * 1024 * 1024)})


def test_capability_only_after_login(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        u = c.ok("CAPABILITY")
        assert "COMPRESS=DEFLATE" not in caps_in(u[0].decode()), c.text()
        u, t = c.cmd(f'LOGIN "{BOB}" "{BOB_PW}"')
        assert status_of(t) == "OK", c.text()
        code = t.decode().split("[CAPABILITY ", 1)[1].split("]", 1)[0]
        assert "COMPRESS=DEFLATE" in caps_in(code), t
        u = c.ok("CAPABILITY")
        assert "COMPRESS=DEFLATE" in caps_in(u[0].decode()), c.text()


def test_refusals_before_and_after(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        # not authenticated: refused, and nothing changes on the wire
        u, t = c.cmd("COMPRESS DEFLATE")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        c.login()
        for bad in ("COMPRESS", "COMPRESS GZIP", "COMPRESS DEFLATE DEFLATE"):
            u, t = c.cmd(bad)
            assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")            # still in clear: nothing was turned on
        ds = compress_raw(c)
        c.ok("NOOP")
        u, t = c.cmd("COMPRESS DEFLATE")
        assert status_of(t) == "NO" and b"[COMPRESSIONACTIVE]" in t, c.text()
        c.ok("NOOP")
        assert ds.wire_in > 0 and ds.plain_in > 0


def test_plain_select_fetch_pipelined_logout(srv):
    tok = deliver(srv, body=big_body("fetchme", 40 * 1024))
    stored = srv.find_messages(BOB, tok)[0].read_bytes()
    assert len(stored) > 40 * 1024
    with raw_login(srv) as c:
        # COMPRESS and, in the same packet, a command already compressed: the server has
        # both in its buffer when it switches
        ds = DeflateSocket(c.sock)
        c.send(b"p1 COMPRESS DEFLATE\r\n" + ds.compress(b"p2 NOOP\r\n"))
        ok = c.readline()
        assert ok.startswith(b"p1 OK"), c.text()
        c.buf = ds.feed(c.buf) if c.buf else b""
        c.sock = ds
        u, t = c.read_response("p2")
        assert status_of(t) == "OK", c.text()

        c.ok("SELECT INBOX")
        u = c.ok(f"UID SEARCH HEADER Message-ID {tok}")
        uid = int(u[-1].split()[-1])
        data, t = fetch_literal(c, f"UID FETCH {uid} BODY.PEEK[]")
        assert status_of(t) == "OK", c.text()
        assert data == stored
        # it was compressed: far fewer bytes came over the wire than were read
        assert ds.wire_in < ds.plain_in / 3, (ds.wire_in, ds.plain_in)

        u, t = c.cmd("LOGOUT")
        assert status_of(t) == "OK" and any(x.startswith(b"* BYE") for x in u), c.text()


def test_idle_wakes_while_compressed(srv):
    with raw_login(srv) as c:
        compress_raw(c)
        c.ok("SELECT INBOX")
        tag = c.tag()
        c.send(f"{tag} IDLE\r\n")
        assert c.readline().startswith(b"+"), c.text()
        assert c.maybe_line(0.3) is None, c.text()
        deliver(srv)
        line = c.readline(timeout=10)
        assert re.match(rb"\* \d+ EXISTS$", line), c.text()
        c.send("DONE\r\n")
        u, t = c.read_response(tag)
        assert status_of(t) == "OK", c.text()


def test_large_append_and_fetch_back(srv):
    """A 3 MB APPEND (streamed into the store) and its FETCH, both compressed: the inflated
    input is many times the input watermark, the FETCH many times the output's."""
    tok = th.token()
    msg = (f"From: <bob@example.test>\r\nSubject: big {tok}\r\n"
           f"Message-ID: <{tok}@example.test>\r\n\r\n").encode() + big_body(tok, 3 * 1024 * 1024)
    with raw_login(srv) as c:
        ds = compress_raw(c)
        tag = c.tag()
        c.send(f"{tag} APPEND INBOX {{{len(msg)}}}\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send(msg + b"\r\n")
        u, t = c.read_response(tag, timeout=60)
        assert status_of(t) == "OK", c.text()
        uid = int(re.search(rb"\[APPENDUID \d+ (\d+)\]", t).group(1))
        assert ds.wire_out < len(msg) / 3, (ds.wire_out, len(msg))
        c.ok("EXAMINE INBOX")
        data, t = fetch_literal(c, f"UID FETCH {uid} BODY.PEEK[]")
        assert status_of(t) == "OK", c.text()
        assert data == msg
    assert srv.find_messages(BOB, f"Subject: big {tok}")[0].read_bytes() == msg


def test_imaps_with_imaplib(srv):
    """imaplib over implicit TLS: compression goes above TLS."""
    tok = deliver(srv, body=big_body("overtls", 20 * 1024))
    stored = srv.find_messages(BOB, tok)[0].read_bytes()
    m = imaps(srv)
    ds = compress_imaplib(m)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", tok)
    assert typ == "OK"
    uid = data[0].split()[-1].decode()
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK"
    assert data[0][1] == stored
    msg = (f"Subject: appended over tls {tok}\r\n\r\n").encode() + big_body(tok, 300 * 1024)
    typ, data = m.append("INBOX", None, None, msg)
    assert typ == "OK", data
    typ, data = m.noop()
    assert typ == "OK"
    assert ds.wire_in < ds.plain_in and ds.wire_out < len(msg) / 3
    m.logout()
    assert srv.find_messages(BOB, f"appended over tls {tok}")[0].read_bytes() == msg


def test_starttls_then_compress(srv):
    """STARTTLS (the TLS filter over the socket), then COMPRESS over that."""
    deliver(srv)
    with RawIMAP(srv.ports["imap"]) as c:
        c.ok("STARTTLS")
        c.sock = th.tls_context().wrap_socket(c.sock, server_hostname=th.HOSTNAME)
        c.login()
        ds = compress_raw(c)
        u = c.ok("SELECT INBOX")
        assert any(x.endswith(b" EXISTS") for x in u), c.text()
        data, t = fetch_literal(c, "FETCH 1 BODY.PEEK[]")
        assert status_of(t) == "OK" and data, c.text()
        u, t = c.cmd("LOGOUT")
        assert status_of(t) == "OK", c.text()
        assert ds.plain_in > 0


def test_plain_with_imaplib(srv):
    deliver(srv)
    m = imap(srv)
    compress_imaplib(m)
    typ, _ = m.select("INBOX")
    assert typ == "OK"
    typ, data = m.uid("SEARCH", None, "ALL")
    assert typ == "OK" and data[0].split()
    typ, data = m._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and data[0].startswith(b"[COMPRESSIONACTIVE]"), (typ, data)
    m.logout()


def test_decompression_bomb_stays_in_sync(srv):
    """32 MB of one overlong line from 32 KB on the wire: the server reads it within its
    input limit, refuses the line and goes on with the next command."""
    with raw_login(srv) as c:
        ds = compress_raw(c)
        c.sock.send_raw(ds.deflate.compress(b"b1 NOOP ") + ds.deflate.flush(zlib.Z_SYNC_FLUSH))
        chunk = b"x" * (1024 * 1024)
        for _ in range(32):
            c.sock.send_raw(ds.deflate.compress(chunk))
        c.sock.send_raw(ds.deflate.compress(b"\r\nb2 NOOP\r\n") +
                        ds.deflate.flush(zlib.Z_SYNC_FLUSH))
        assert ds.wire_out < 256 * 1024, ds.wire_out
        lines = []
        deadline = time.monotonic() + 60
        while True:
            line = c.readline(timeout=max(1, deadline - time.monotonic()))
            lines.append(line)
            if line.startswith(b"b2 ") or line.startswith(b"* BYE"):
                break
        assert any(x.startswith(b"b1 BAD") or x.startswith(b"* BAD") for x in lines), c.text()
        assert lines[-1].startswith(b"b2 OK"), c.text()
        c.ok("NOOP")


def _wait_eof(sock, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
    return False


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "imaps"])
def test_corrupt_stream_ends_only_that_connection(srv, tls):
    if tls:
        c = RawIMAP(srv.ports["imaps"], tls=True)
        c.login()
    else:
        c = raw_login(srv)
    other = raw_login(srv)
    try:
        ds = compress_raw(c)
        c.ok("NOOP")
        # 0xff: a final block of the reserved type 3 - invalid whatever follows
        ds.send_raw(b"\xff" * 64 + b"t9 NOOP\r\n")
        assert _wait_eof(ds.sock, 10), "the server kept a connection with a corrupt stream"
        # the server lives on: the other session and new ones work
        other.ok("NOOP")
        with raw_login(srv) as n:
            n.ok("NOOP")
        deadline = time.monotonic() + 5
        while "bad deflate stream" not in srv.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "bad deflate stream" in srv.log_text(), srv.log_tail(40)
    finally:
        c.close()
        other.close()
