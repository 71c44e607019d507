"""Limits: message size (SIZE= at MAIL and at end of data), recipients per transaction,
command line length, bad-command count, garbage and binary input."""
import random
import socket
import time

import tern_harness as th
from tern_harness import assert_reply, check_delivered, make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"
MAX_SIZE = 1048576


def test_size_param_at_mail(server):
    with server.raw() as c:
        assert_reply(c.cmd(f"MAIL FROM:<sender@example.net> SIZE={MAX_SIZE * 2}"), 552, "5.3.4")
        # Far beyond any integer type: still a clean 552 (or 501), never accepted.
        code, lines = c.cmd("MAIL FROM:<sender@example.net> SIZE=99999999999999999999999999")
        assert code in (552, 501), (code, lines)
        assert_reply((code, lines), "5xx")
        assert_reply(c.cmd("MAIL FROM:<sender@example.net> SIZE=1000"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)


def test_oversized_at_end_of_data(server):
    tok = token()
    line = b"x" * 998 + b"\r\n"
    body = f"{tok}\r\n".encode() + line * (MAX_SIZE // len(line) + 100)
    msg = make_message(tok, body=body)
    assert len(msg) > MAX_SIZE
    with server.smtp() as s:
        s.ehlo()
        # smtp.mail() without SIZE=, so the limit can only be found while reading the data.
        assert s.mail("sender@example.net")[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, resp = s.data(msg)
        assert_reply((code, resp), 552, "5.3.4")
        # The session goes on.
        assert s.noop()[0] == 250
        tok2 = token()
        small = make_message(tok2)
        assert s.sendmail("sender@example.net", [BOB], small) == {}
    server.wait_message(BOB, tok2)
    assert server.find_messages(BOB, tok, subdirs=("tmp", "new", "cur")) == []
    th.assert_no_trace(server, tok)


def test_large_message_below_limit_stored_exactly(server):
    tok = token()
    rnd = random.Random(1)
    lines = []
    size = 0
    while size < 900_000:
        n = rnd.randint(0, 990)
        ln = bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz .,;:-=") for _ in range(n))
        if rnd.random() < 0.05:
            ln = b"." + ln  # leading dots get stuffed by smtplib and must be unstuffed
        lines.append(ln + b"\r\n")
        size += n + 2
    msg = make_message(tok, body=f"{tok}\r\n".encode() + b"".join(lines))
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)


def test_too_many_recipients(server):
    with server.submission_login() as s:
        assert s.mail(ALICE)[0] == 250
        for i in range(100):
            code, resp = s.rcpt(f"r{i}@elsewhere.test")
            assert code == 250, (i, code, resp)
        assert_reply(s.rcpt("r100@elsewhere.test"), 452, "4.5.3")
        assert_reply(s.rcpt(BOB), 452, "4.5.3")
        assert s.rset()[0] == 250


def test_overlong_command_line(server):
    tok = token()
    msg = make_message(tok)
    with server.raw() as c:
        assert_reply(c.cmd("NOOP " + "x" * 3000), 500, "5.5.2")
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        # The tail of an overlong line must not be taken as a command: it says RSET.
        c.send(b"RCPT TO:<" + b"a" * 4000 + b"@example.test> RSET\r\n")
        assert_reply(c.read_reply(), 500, "5.5.2")
        # Very long (bigger than any socket buffer read) and then the transaction goes on.
        c.send(b"X" * 200_000 + b"\r\n")
        assert_reply(c.read_reply(), 500, "5.5.2")
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250)
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)


def test_command_line_limit_boundary(server):
    """smtp_max_line = 2048 counts the CRLF: 2048 bytes are fine, 2049 are too long."""
    with server.raw() as c:
        ok = b"NOOP " + b"y" * (2048 - 5 - 2) + b"\r\n"
        assert len(ok) == 2048
        c.send(ok)
        assert_reply(c.read_reply(), 250)
        bad = b"NOOP " + b"y" * (2048 - 5 - 1) + b"\r\n"
        assert len(bad) == 2049
        c.send(bad)
        assert_reply(c.read_reply(), 500, "5.5.2")
        assert_reply(c.cmd("NOOP"), 250)


def test_too_many_bad_commands_421(server):
    with server.raw() as c:
        c.send(b"XYZZY\r\n" * 30)
        data = c.read_until_eof(30)
    lines = [ln for ln in data.split(b"\r\n") if ln]
    codes = [int(ln[:3]) for ln in lines]
    assert codes, "no reply to 30 bad commands"
    assert codes[-1] == 421, f"connection not closed with 421; replies: {lines}"
    assert 5 <= len(codes) <= 22, f"closed after an unexpected number of replies: {lines}"
    assert all(code == 500 for code in codes[:-1]), lines
    assert lines[-1].startswith(b"421 4."), f"421 without enhanced code: {lines[-1]!r}"


def test_garbage_and_binary_input(server):
    rnd = random.Random(20240501)
    junk_lines = []
    for i in range(12):
        n = rnd.randint(1, 300)
        ln = bytes(rnd.choice([b for b in range(256) if b not in (10, 13)]) for _ in range(n))
        if i % 3 == 0:
            ln = b"\x00" + ln
        if i % 4 == 1:
            ln = ln[:5] + b"\x00\x00" + ln[5:]
        junk_lines.append(ln)
    with server.raw() as c:
        c.send(b"".join(ln + b"\r\n" for ln in junk_lines))
        for ln in junk_lines:
            code, lines = c.read_reply()
            assert 500 <= code < 600, f"junk {ln[:40]!r} answered {code} {lines}"
        assert_reply(c.cmd("NOOP"), 250)
        # A NUL inside an otherwise valid command is refused too.
        code, lines = c.cmd(b"MAIL FROM:<a\x00b@example.net>")
        assert 500 <= code < 600, (code, lines)
        # Raw binary without any line end, then the client goes away.
        c.send(bytes(rnd.randrange(256) for _ in range(5000)))
    # Another client is served normally.
    tok = token()
    msg = make_message(tok)
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)


def test_tls_garbage_on_submissions(server):
    """Plaintext and junk on the implicit-TLS port must not hurt the server."""
    with socket.create_connection(("127.0.0.1", server.ports["submissions"]), timeout=10) as s:
        s.sendall(b"EHLO plaintext\r\n" + bytes(range(256)) * 20)
        try:
            while s.recv(4096):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
    with server.smtp("submissions") as s:
        assert s.ehlo()[0] == 250


def test_idle_timeout(tern_factory):
    """smtp_timeout_command: an idle client is dropped (with a 421 if anything is said)."""
    inst = tern_factory(settings={"smtp_timeout_command": "2"})
    with inst.raw() as c:
        start = time.monotonic()
        data = c.read_until_eof(30)
        elapsed = time.monotonic() - start
    assert elapsed < 15, f"idle connection kept for {elapsed:.1f}s with a 2 s timeout"
    assert elapsed >= 1.5, f"closed after {elapsed:.1f}s, before the 2 s timeout"
    if data:
        assert data.startswith(b"421 4."), f"timeout reply: {data!r}"


def test_text_line_limit(server):
    """smtp_max_text_line = 16384 incl. CRLF: a 16384-byte line is fine, 16385 is refused
    (5xx after the end of data) and the session goes on."""
    tok = token()
    ok_line = b"a" * (16384 - 2) + b"\r\n"
    msg = make_message(tok, body=f"{tok}\r\n".encode() + ok_line)
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)
    tok2 = token()
    bad = make_message(tok2, body=f"{tok2}\r\n".encode() + b"b" * (16385 - 2) + b"\r\n")
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(bad + b".\r\n")
        code, lines = c.read_reply()
        assert 500 <= code < 600, f"overlong text line accepted: {code} {lines}"
        assert_reply((code, lines), "5xx")
        assert_reply(c.cmd("NOOP"), 250)
    assert server.find_messages(BOB, tok2) == []
    th.assert_no_trace(server, tok2)


def test_auth_failures_per_session_421(server):
    """smtp_max_auth_failures (default 3): repeated failures end the session with 421."""
    with server.raw("submissions") as c:
        replies = []
        for i in range(6):
            try:
                code, lines = c.cmd("AUTH PLAIN " + th.auth_plain_b64(
                    f"guess{i}@example.test", "wrong"))
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            replies.append((code, lines))
            if code == 421:
                break
    codes = [r[0] for r in replies]
    assert 421 in codes, f"no 421 after {len(codes)} failed AUTH attempts: {replies}"
    assert all(code == 535 for code in codes[:-1]), replies
    assert_reply(replies[-1], 421)


def test_max_connections_per_ip(tern_factory):
    inst = tern_factory(settings={"max_connections_per_ip": "3"})
    held = [inst.raw() for _ in range(3)]
    try:
        extra = th.RawSMTP("127.0.0.1", inst.ports["smtp"])
        try:
            code, lines = extra.read_reply()
            assert_reply((code, lines), 421, "4.7.0")
            assert extra.read_until_eof(10) == b""
        finally:
            extra.close()
        # Once one is closed, a new connection is served again (counts are released).
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            c = th.RawSMTP("127.0.0.1", inst.ports["smtp"])
            code, lines = c.read_reply()
            c.close()
            if code == 220 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert code == 220, f"connection count not released: {code} {lines}"
    finally:
        for c in held:
            c.close()


def _exact_size_message(tok, size):
    head = make_message(tok, body=b"")
    line = b"m" * 998 + b"\r\n"
    body = bytearray()
    while len(head) + len(body) + len(line) <= size:
        body += line
    rest = size - len(head) - len(body)
    assert rest != 1  # a lone "\r" or "\n" would be a bare EOL
    if rest:
        body += b"r" * (rest - 2) + b"\r\n"
    msg = head + bytes(body)
    assert len(msg) == size
    return msg


def test_message_size_boundary(server):
    """max_message_size = 1048576: a message of exactly that many bytes is accepted and
    stored exactly; one byte more is refused with 552 5.3.4."""
    tok = token()
    msg = _exact_size_message(tok, MAX_SIZE)
    with server.smtp() as s:
        s.ehlo()
        assert s.mail("sender@example.net", [f"SIZE={MAX_SIZE}"])[0] == 250
        assert s.rcpt(BOB)[0] == 250
        code, resp = s.data(msg)
        assert code == 250, f"message of exactly max_message_size refused: {code} {resp}"
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)
    tok2 = token()
    msg2 = _exact_size_message(tok2, MAX_SIZE + 2)  # +1 cannot end in CRLF
    with server.smtp() as s:
        s.ehlo()
        assert s.mail("sender@example.net")[0] == 250
        assert s.rcpt(BOB)[0] == 250
        assert_reply(s.data(msg2), 552, "5.3.4")
    th.assert_no_trace(server, tok2)


def test_bdat_oversized_stays_in_sync(server):
    """A BDAT chunk over the limit: 552 5.3.4, the chunk's bytes are consumed (not run as
    commands), and the session goes on."""
    tok = token()
    big = f"{tok}\r\n".encode() + b"RSET\r\nQUIT\r\n" * ((MAX_SIZE // 12) + 10)
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(f"BDAT {len(big)} LAST\r\n".encode() + big)
        assert_reply(c.read_reply(), 552, "5.3.4")
        assert_reply(c.cmd("NOOP"), 250)
        tok2 = token()
        msg = make_message(tok2)
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert_reply(c.read_reply(), 250)
    check_delivered(server.wait_message(BOB, tok2)[0], "sender@example.net", msg)
    th.assert_no_trace(server, tok)
