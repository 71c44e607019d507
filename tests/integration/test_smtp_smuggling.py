"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA. A body with a bare-LF/bare-CR "terminator"
followed by a second transaction must yield exactly one reply, the message must be refused
(bare LF/CR), and the smuggled transaction must never run."""
import socket

import pytest

import tern_harness as th
from tern_harness import assert_reply, make_message, token

BOB = "bob@example.test"

VARIANTS = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
}


def parse_replies(data):
    """Split raw reply bytes into [(code, [lines])], asserting they are well-formed."""
    replies = []
    cur = []
    for line in data.split(b"\r\n"):
        if not line:
            continue
        assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r} in {data!r}"
        cur.append(line)
        if line[3:4] != b"-":
            replies.append((int(line[:3]), [ln[4:].decode("utf-8", "replace") for ln in cur]))
            cur = []
    assert not cur, f"unterminated multi-line reply in {data!r}"
    return replies


@pytest.mark.parametrize("fake_end", list(VARIANTS.values()), ids=list(VARIANTS.keys()))
def test_smuggling_variant(server, fake_end):
    tok = token()
    smuggled_tok = token()
    head = make_message(tok, body=b"")
    data = (head + f"first part {tok}".encode() + fake_end
            + b"MAIL FROM:<evil@x>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
            + f"smuggled {smuggled_tok}\r\n".encode()
            + b"\r\n.\r\n")
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        code, lines = c.cmd("DATA")
        assert code == 354, lines
        c.send(data)
        code, lines = c.read_reply()
        c.send(b"QUIT\r\n")
        rest = c.read_until_eof(30)
    after = parse_replies(rest)
    # Exactly one reply to the whole data; after it only QUIT's 221.
    assert [r[0] for r in after] == [221], (
        f"extra replies after the data reply {code} {lines}: {after} "
        f"(smuggled commands were executed)")
    server.flush(BOB)
    hits = [p for p in server.all_delivered_files() if smuggled_tok.encode() in p.read_bytes()]
    for p in hits:
        d = p.read_bytes()
        assert not d.startswith(b"Return-Path: <evil@x>"), f"smuggled message delivered: {p}"
        assert not th.split_delivered(d)[2].startswith(b"smuggled"), \
            f"smuggled text delivered as a message of its own: {p}"
    # The contract: a message with a bare LF or bare CR is refused (5xx) after the real end.
    assert 500 <= code < 600, f"message with bare LF/CR accepted: {code} {lines}"
    assert_reply((code, lines), "5xx")
    assert hits == [], f"refused message was delivered anyway: {hits}"
    th.assert_no_trace(server, smuggled_tok)


@pytest.mark.parametrize("bare", [b"\n", b"\r"], ids=["bareLF", "bareCR"])
def test_bare_eol_in_body_refused(server, bare):
    """A bare LF/CR anywhere in the text (no fake terminator) is refused too."""
    tok = token()
    msg = make_message(tok, body=b"line one" + bare + b"line two\r\n")
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        code, lines = c.read_reply()
        assert 500 <= code < 600, f"bare EOL accepted: {code} {lines}"
        # The session stays usable.
        assert_reply(c.cmd("NOOP"), 250)
    server.flush(BOB)
    assert server.find_messages(BOB, tok) == []
    th.assert_no_trace(server, tok)


def test_dot_lf_does_not_end_data(server):
    """'.\\n' right after CRLF must not terminate DATA: a following CRLF.CRLF does, and the
    text in between is not run as commands."""
    tok = token()
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(make_message(tok) + b".\nNOOP\r\nNOOP\r\n.\r\n")
        code, lines = c.read_reply()
        c.send(b"QUIT\r\n")
        after = parse_replies(c.read_until_eof(30))
    assert [r[0] for r in after] == [221], f"data ended early: {code} {lines} then {after}"
    assert 500 <= code < 600, (code, lines)


def test_bdat_with_embedded_terminators_is_data(server):
    """Under BDAT the bytes are counted, not scanned: CRLF.CRLF and commands inside a chunk
    are message text (stored exactly)."""
    tok = token()
    msg = make_message(tok, body=f"{tok}\r\n.\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<{BOB}>\r\n"
                                 f"DATA\r\nstill the same message\r\n")
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert_reply(c.read_reply(), 250)
        c.send(b"QUIT\r\n")
        after = parse_replies(c.read_until_eof(30))
    assert [r[0] for r in after] == [221], after
    files = server.wait_message(BOB, tok)
    assert len(files) == 1
    th.check_delivered(files[0], "sender@example.net", msg)


def _send_bytewise(c, data):
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        c.sock.sendall(data[i:i + 1])


def test_data_byte_at_a_time(server):
    """The DATA parser is resumable: dot-stuffing and the terminator split over single-byte
    segments still give the exact message."""
    tok = token()
    head = make_message(tok, body=b"")
    wire = head + f"{tok}\r\n...x\r\n..\r\n.y\r\n".encode() + b".\r\n"
    expected = head + f"{tok}\r\n..x\r\n.\r\ny\r\n".encode()
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        _send_bytewise(c, wire)
        assert_reply(c.read_reply(), 250)
        # A smuggling attempt split the same way is still refused as a whole.
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        _send_bytewise(c, b"Subject: x\r\n\r\nhi\n.\nMAIL FROM:<evil@x>\r\n\r\n.\r\n")
        code, lines = c.read_reply()
        c.send(b"QUIT\r\n")
        after = parse_replies(c.read_until_eof(30))
    assert [r[0] for r in after] == [221], (code, lines, after)
    assert 500 <= code < 600, (code, lines)
    th.check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", expected)


def test_bdat_byte_at_a_time(server):
    tok = token()
    msg = make_message(tok, body=f"{tok}\r\n.\r\n")
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        _send_bytewise(c, f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert_reply(c.read_reply(), 250)
    th.check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)
