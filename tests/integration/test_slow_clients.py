"""Slow clients: a command line must end within line_timeout of its first byte, a DATA,
BDAT, literal or RETR must keep up transfer_min_rate (after a grace of line_timeout), and
before login the idle timeout and the number of commands are smaller.

The audit: a client sending one byte every 5 seconds was never dropped, since the timeout
only measured the silence between reads. Here the bytes come once a second with
line_timeout = 3: every protocol must drop such a client about 3 s after its first byte,
and an honest client that is slow but finishes its lines and messages must not be.
"""
import smtplib
import socket
import time

import pytest

import tern_harness as th
from imap_raw import BOB, BOB_PW, LOOPBACK_OK

pytestmark = [pytest.mark.timeout(120),
              # deadlines of a few seconds against a server 20-50x slower
              pytest.mark.no_valgrind]

LINE_TIMEOUT = 3
SLACK = 2.5             # timers, the sanitizer build, a loaded machine


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    import conftest
    yield from conftest.module_instance(
        tmp_path_factory, "tern-slow", settings=dict(LOOPBACK_OK, line_timeout=str(LINE_TIMEOUT)))


class Client:
    """A raw socket that reads lines and can trickle bytes."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def line(self, timeout=10):
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def send(self, data):
        self.s.sendall(data)

    def trickle(self, data, interval=1.0, give_up=LINE_TIMEOUT + 8):
        """Send data one byte per interval until the server closes; returns (seconds from
        the first byte to the close, everything the server sent meanwhile) or fails."""
        t0 = time.monotonic()
        got = b""
        for i in range(len(data)):
            if time.monotonic() - t0 > give_up:
                break
            try:
                self.s.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0, self.buf + got
            end = time.monotonic() + interval
            while time.monotonic() < end:
                self.s.settimeout(max(0.01, end - time.monotonic()))
                try:
                    d = self.s.recv(4096)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    d = b""
                if not d:
                    return time.monotonic() - t0, self.buf + got
                got += d
        pytest.fail(f"still connected {time.monotonic() - t0:.1f}s after the first trickled "
                    f"byte; server sent {got!r}")

    def close(self):
        self.s.close()


def expect_dropped(elapsed, got, text):
    print(f"dropped {elapsed:.2f}s after the first trickled byte: {got!r}")
    assert text in got, got
    assert LINE_TIMEOUT - 0.5 <= elapsed <= LINE_TIMEOUT + SLACK, elapsed


def smtp_transaction(c):
    assert c.line().startswith(b"220 ")
    for cmd, code in ((b"EHLO slow.example.net", b"250 "), (b"MAIL FROM:<s@example.net>", b"250 "),
                      (b"RCPT TO:<bob@example.test>", b"250 ")):
        c.send(cmd + b"\r\n")
        ln = c.line()
        while ln[3:4] == b"-":
            ln = c.line()
        assert ln.startswith(code), (cmd, ln)


@pytest.mark.parametrize("role", ["smtp", "submission", "pop3", "imap", "imap-authenticated"])
def test_trickled_command_line_is_dropped(slow, role):
    port = slow.ports[role.split("-")[0]]
    c = Client(port)
    try:
        greeting = c.line()
        if role.startswith("imap"):
            assert greeting.startswith(b"* OK")
            if role == "imap-authenticated":
                c.send(f"a1 LOGIN {BOB} {BOB_PW}\r\n".encode())
                assert c.line().startswith(b"a1 OK"), "login"
            elapsed, got = c.trickle(b"a2 NOOP and a long way to go\r\n")
            expect_dropped(elapsed, got, b"* BYE Too slow")
        elif role == "pop3":
            assert greeting.startswith(b"+OK")
            elapsed, got = c.trickle(b"USER bob@example.test and more\r\n")
            expect_dropped(elapsed, got, b"-ERR Too slow")
        else:
            assert greeting.startswith(b"220 ")
            elapsed, got = c.trickle(b"EHLO slowloris.example.net\r\n")
            expect_dropped(elapsed, got, b"421 4.4.2 Too slow")
    finally:
        c.close()
    assert "too slow from 127.0.0.1" in slow.log_text()


def test_trickled_data_is_dropped(slow):
    tok = th.token()
    c = Client(slow.ports["smtp"])
    try:
        smtp_transaction(c)
        c.send(b"DATA\r\n")
        assert c.line().startswith(b"354")
        elapsed, got = c.trickle(f"Subject: {tok}\r\n\r\nbody body body\r\n".encode())
        expect_dropped(elapsed, got, b"421 4.4.2 Too slow")
    finally:
        c.close()
    th.assert_no_trace(slow, tok, timeout=2)


def test_trickled_bdat_is_dropped(slow):
    c = Client(slow.ports["smtp"])
    try:
        smtp_transaction(c)
        c.send(b"BDAT 100 LAST\r\n")
        elapsed, got = c.trickle(b"x" * 100)
        expect_dropped(elapsed, got, b"421 4.4.2 Too slow")
    finally:
        c.close()


def test_trickled_imap_literal_is_dropped(slow):
    c = Client(slow.ports["imap"])
    try:
        assert c.line().startswith(b"* OK")
        c.send(f"a1 LOGIN {BOB} {BOB_PW}\r\n".encode())
        assert c.line().startswith(b"a1 OK")
        c.send(b"a2 APPEND INBOX {200}\r\n")
        assert c.line().startswith(b"+ ")
        elapsed, got = c.trickle(b"Subject: slow\r\n\r\n" + b"y" * 180)
        expect_dropped(elapsed, got, b"* BYE Too slow")
    finally:
        c.close()


def test_honest_slow_client_is_served(slow):
    """Every line takes ~1.2 s (three pieces), the whole session far longer than
    line_timeout, and a 40 KB message body takes ~4 s: nothing is dropped, the message is
    delivered. The same for an IMAP APPEND whose literal comes slowly."""
    tok = th.token()
    c = Client(slow.ports["smtp"])
    t0 = time.monotonic()

    def slow_cmd(text, code):
        data = text.encode() + b"\r\n"
        third = len(data) // 3
        for piece in (data[:third], data[third:2 * third], data[2 * third:]):
            c.send(piece)
            time.sleep(0.6)
        ln = c.line()
        while ln[3:4] == b"-":
            ln = c.line()
        assert ln.startswith(code), (text, ln)

    try:
        assert c.line().startswith(b"220 ")
        slow_cmd("EHLO honest.example.net", b"250")
        slow_cmd("NOOP", b"250")
        slow_cmd("MAIL FROM:<s@example.net>", b"250")
        slow_cmd("RCPT TO:<bob@example.test>", b"250")
        slow_cmd("DATA", b"354")
        body = (f"Subject: {tok}\r\n\r\n" + ("z" * 78 + "\r\n") * 500).encode()
        step = len(body) // 20
        for i in range(0, len(body), step):
            c.send(body[i:i + step])
            time.sleep(0.2)
        c.send(b".\r\n")
        assert c.line(timeout=20).startswith(b"250 "), "message accepted"
        slow_cmd("QUIT", b"221")
    finally:
        c.close()
    assert time.monotonic() - t0 > 3 * LINE_TIMEOUT
    slow.wait_message("bob@example.test", tok)

    c = Client(slow.ports["imap"])
    try:
        assert c.line().startswith(b"* OK")
        c.send(f"a1 LOGIN {BOB} {BOB_PW}\r\n".encode())
        assert c.line().startswith(b"a1 OK")
        msg = b"Subject: slow append\r\n\r\n" + b"w" * 20000 + b"\r\n"
        c.send(b"a2 APPEND INBOX {%d}\r\n" % len(msg))
        assert c.line().startswith(b"+ ")
        step = len(msg) // 10
        for i in range(0, len(msg), step):
            c.send(msg[i:i + step])
            time.sleep(0.45)
        c.send(b"\r\n")
        ln = c.line(timeout=20)
        while ln.startswith(b"*"):
            ln = c.line(timeout=20)
        assert ln.startswith(b"a2 OK"), ln
    finally:
        c.close()


def test_limits_before_login(tern_factory):
    """login_timeout: before login, POP3, IMAP and submission sessions idle for at most
    that long; port 25 keeps its command timeout; logged-in sessions keep theirs.
    max_commands_before_login: one command more closes the session."""
    inst = tern_factory(settings=dict(LOOPBACK_OK, login_timeout="2",
                                      max_commands_before_login="5"))

    def idle_until_closed(role, max_wait):
        c = Client(inst.ports[role])
        c.line()
        t0 = time.monotonic()
        got = b""
        c.s.settimeout(max_wait)
        try:
            while True:
                d = c.s.recv(4096)
                if not d:
                    return time.monotonic() - t0, got
                got += d
        except socket.timeout:
            return None, got
        finally:
            c.close()

    for role, text in (("imap", b"* BYE"), ("pop3", b"-ERR"), ("submission", b"421 4.4.2")):
        elapsed, got = idle_until_closed(role, 8)
        assert elapsed is not None and 1.5 <= elapsed <= 2 + SLACK, (role, elapsed)
        assert text in got, (role, got)
    # port 25 has no login: its timeout stays smtp_timeout_command (300 s)
    elapsed, _ = idle_until_closed("smtp", 4)
    assert elapsed is None

    # logged in, the long timeout again
    c = Client(inst.ports["imap"])
    try:
        c.line()
        c.send(f"a1 LOGIN {BOB} {BOB_PW}\r\n".encode())
        assert c.line().startswith(b"a1 OK")
        time.sleep(3.5)
        c.send(b"a2 NOOP\r\n")
        assert c.line().startswith(b"a2 OK")
        # and the session's command cap is the large one now
        for i in range(10):
            c.send(b"n%d NOOP\r\n" % i)
            assert c.line().startswith(b"n%d OK" % i)
    finally:
        c.close()

    # the same for POP3
    c = Client(inst.ports["pop3"])
    try:
        c.line()
        c.send(f"USER {BOB}\r\n".encode())
        assert c.line().startswith(b"+OK")
        c.send(f"PASS {BOB_PW}\r\n".encode())
        assert c.line().startswith(b"+OK")
        time.sleep(3.5)
        for i in range(10):
            c.send(b"NOOP\r\n")
            assert c.line().startswith(b"+OK"), i
    finally:
        c.close()

    c = Client(inst.ports["imap"])
    try:
        c.line()
        for i in range(5):
            c.send(b"c%d NOOP\r\n" % i)
            assert c.line().startswith(b"c%d OK" % i)
        c.send(b"c5 NOOP\r\n")
        assert c.line() == b"* BYE Too many commands"
    finally:
        c.close()
    assert "too many commands from 127.0.0.1 before login" in inst.log_text()


def test_slow_reader_is_dropped(tern_factory):
    """A POP3 RETR or an IMAP FETCH of a large message to a client that reads 1 KB a
    second, far below transfer_min_rate: dropped once the bytes sent no longer pay for the
    time taken. A client that reads at full speed gets the whole message. The message is
    larger than the kernel's socket buffers (tcp_wmem allows 4 MB), or the server would be
    done with it before the client's slowness mattered."""
    inst = tern_factory(settings=dict(LOOPBACK_OK, line_timeout=str(LINE_TIMEOUT),
                                      transfer_min_rate="1000000",
                                      max_message_size=str(16 << 20)))
    tok = th.token()
    body = ("r" * 998 + "\r\n") * 6000       # ~6 MB
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=30) as s:
        s.sendmail("s@example.net", ["bob@example.test"],
                   f"Subject: {tok}\r\n\r\n{body}".encode())
    inst.wait_message("bob@example.test", tok)

    def slow_read(c, limit):
        """Read 1 KB a second until the server has given up on this session: logged it as
        too slow and ended it (the kernel may still hold bytes for the client, which is no
        longer the server's business). (seconds, bytes read) or (None, bytes read)."""
        import re
        t0 = time.monotonic()
        n = len(c.buf)
        before = inst.log_text().count("too slow from")
        while time.monotonic() - t0 < limit:
            log = inst.log_text()
            m = re.findall(r"(\S+): too slow from", log)
            if len(m) > before and f"{m[-1]}: disconnect from" in log:
                return time.monotonic() - t0, n
            c.s.settimeout(limit)
            try:
                d = c.s.recv(1024)
            except ConnectionResetError:
                d = b""
            if not d:
                return time.monotonic() - t0, n
            n += len(d)
            time.sleep(1.0)
        return None, n

    def small_window(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        c = Client.__new__(Client)
        c.s, c.buf = s, b""
        return c

    def pop3_retr(c):
        c.line()
        c.send(f"USER {BOB}\r\n".encode())
        c.line()
        c.send(f"PASS {BOB_PW}\r\n".encode())
        assert c.line().startswith(b"+OK")
        c.send(b"RETR 1\r\n")

    def imap_fetch(c):
        c.line()
        c.send(f"a1 LOGIN {BOB} {BOB_PW}\r\na2 SELECT INBOX\r\n".encode())
        ln = c.line()
        while not ln.startswith(b"a2 "):
            ln = c.line()
        assert ln.startswith(b"a2 OK"), ln
        c.send(b"a3 FETCH 1 BODY.PEEK[]\r\n")

    for role, request in (("pop3", pop3_retr), ("imap", imap_fetch)):
        c = small_window(inst.ports[role])
        try:
            request(c)
            elapsed, n = slow_read(c, 30)
            print(f"{role} slow reader dropped after {elapsed}s with {n} bytes")
            assert elapsed is not None and n < len(body), (role, elapsed, n)
        finally:
            c.close()
    assert inst.log_text().count("too slow from 127.0.0.1") >= 2

    # readers at full speed are served
    import imaplib
    import poplib
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=30)
    p.user(BOB)
    p.pass_(BOB_PW)
    resp, lines, octets = p.retr(1)
    assert octets > len(body)
    p.quit()
    m = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=30)
    m.login(BOB, BOB_PW)
    m.select("INBOX")
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and len(data[0][1]) > len(body)
    m.logout()
