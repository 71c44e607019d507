"""SMTP on the "smtp" port (25): banner, EHLO, delivery to Maildir byte for byte, dot-stuffing,
8BITMIME, SMTPUTF8, BDAT/CHUNKING, PIPELINING, recipient policy, command sequencing."""
import shutil
import subprocess
import threading

import pytest

import tern_harness as th
from tern_harness import assert_reply, check_delivered, make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"
JORG = "jörg@example.test"


def ehlo_keywords(lines):
    """EHLO reply lines (after the first) -> {KEYWORD: params}."""
    kw = {}
    for line in lines[1:]:
        parts = line.split(None, 1)
        kw[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
    return kw


def test_banner_and_ehlo(server):
    c = th.RawSMTP("127.0.0.1", server.ports["smtp"])
    try:
        code, lines = c.read_reply()
        assert code == 220
        assert lines[0].startswith(f"{th.HOSTNAME} ESMTP"), lines
        code, lines = c.cmd("EHLO client.example.net")
        assert code == 250, lines
        assert lines[0].split()[0] == th.HOSTNAME, lines
        kw = ehlo_keywords(lines)
        for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS", "SMTPUTF8",
                    "CHUNKING"):
            assert ext in kw, f"{ext} not advertised on port 25: {lines}"
        assert kw.get("SIZE") == "1048576", f"SIZE not advertised as 1048576: {lines}"
        assert "AUTH" not in kw, f"AUTH advertised on plaintext port 25: {lines}"
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("QUIT"), 221)
    finally:
        c.close()


def test_delivery_exact_bytes(server):
    tok = token()
    msg = make_message(tok, sender="sender@example.net", to=BOB)
    with server.smtp() as s:
        s.ehlo()
        refused = s.sendmail("sender@example.net", [BOB], msg)
        assert refused == {}
    files = server.wait_message(BOB, tok)
    assert len(files) == 1, files
    check_delivered(files[0], "sender@example.net", msg, with_proto="ESMTP")
    assert files[0].parent.name == "new"


def test_null_sender_delivery(server):
    tok = token()
    msg = make_message(tok, sender="MAILER-DAEMON@example.net", to=BOB)
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250)
    files = server.wait_message(BOB, tok)
    check_delivered(files[0], "", msg)


def test_several_recipients_one_file_each(server):
    tok = token()
    msg = make_message(tok, to=f"{ALICE}, {BOB}")
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [ALICE, BOB], msg) == {}
    for rcpt in (ALICE, BOB):
        files = server.wait_message(rcpt, tok)
        assert len(files) == 1, f"{rcpt}: {files}"
        check_delivered(files[0], "sender@example.net", msg)


def test_duplicate_recipient_delivered_once(server):
    """The same recipient twice in one transaction gets one copy, not two."""
    tok = token()
    msg = make_message(tok)
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB, BOB], msg) == {}
    server.wait_message(BOB, tok)
    server.flush(BOB)
    files = server.find_messages(BOB, tok)
    assert len(files) == 1, f"{len(files)} copies: {files}"
    check_delivered(files[0], "sender@example.net", msg)


def test_dot_stuffing_smtplib(server):
    """smtplib stuffs leading dots; the stored message must have them undone."""
    tok = token()
    body = (f"{tok}\r\n..x\r\n.\r\n.hidden\r\n...\r\nnot.a.dot\r\n . \r\n.").encode() + b"\r\n"
    msg = make_message(tok, body=body)
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    files = server.wait_message(BOB, tok)
    check_delivered(files[0], "sender@example.net", msg)


def test_dot_stuffing_raw(server):
    """Our own stuffing on the wire: '...x' -> '..x', '..' -> '.', ' .' untouched."""
    tok = token()
    head = make_message(tok, body=b"")
    wire = head + f"{tok}\r\n...x\r\n..\r\n .\r\n..\r\n".encode() + b".\r\n"
    expected = head + f"{tok}\r\n..x\r\n.\r\n .\r\n.\r\n".encode()
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        code, lines = c.cmd("DATA")
        assert code == 354, lines
        c.send(wire)
        assert_reply(c.read_reply(), 250)
    files = server.wait_message(BOB, tok)
    check_delivered(files[0], "sender@example.net", expected)


def test_8bitmime_body(server):
    tok = token()
    body = ("Grüße aus Köln, ½ € — " + tok + "\r\n").encode("utf-8") + b"latin1: \xe9\xe8\r\n"
    msg = make_message(tok, body=body,
                       extra_headers=b"MIME-Version: 1.0\r\n"
                                     b"Content-Type: text/plain; charset=utf-8\r\n"
                                     b"Content-Transfer-Encoding: 8bit\r\n")
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("8bitmime")
        assert s.sendmail("sender@example.net", [BOB], msg, mail_options=["BODY=8BITMIME"]) == {}
    files = server.wait_message(BOB, tok)
    check_delivered(files[0], "sender@example.net", msg)


def test_smtputf8_address(server):
    if JORG in getattr(server, "user_errors", {}):
        pytest.fail(f"`tern user add {JORG}` failed: {server.user_errors[JORG]!r}")
    tok = token()
    sender = "sénder@exämple.net"
    msg = (f"From: Sénder <{sender}>\r\nTo: Jörg <{JORG}>\r\nSubject: Grüße {tok}\r\n"
           f"Message-ID: <{tok}@client.example.net>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\nHallo Jörg, {tok}\r\n").encode()
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        assert s.sendmail(sender, [JORG], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    files = server.wait_message(JORG, tok)
    check_delivered(files[0], sender, msg)


def test_utf8_address_without_smtputf8_refused(server):
    """A non-ASCII address without SMTPUTF8 on MAIL must not be accepted silently."""
    with server.raw() as c:
        c.send("MAIL FROM:<sénder@example.net>\r\n".encode())
        code, lines = c.read_reply()
        if code == 250:
            code, lines = c.cmd(f"RCPT TO:<{JORG}>".encode())
        assert 500 <= code < 600, f"UTF-8 address accepted without SMTPUTF8: {code} {lines}"


def test_bdat_chunks(server):
    tok = token()
    msg = make_message(tok, body=f"{tok}\r\n.leading dot stays\r\n.\r\n..\r\nend\r\n")
    a, b = msg[:57], msg[57:]
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(f"BDAT {len(a)}\r\n".encode() + a)
        assert_reply(c.read_reply(), 250)
        c.send(f"BDAT {len(b)} LAST\r\n".encode() + b)
        assert_reply(c.read_reply(), 250)
        # A second transaction: one chunk, then an empty LAST chunk.
        tok2 = token()
        msg2 = make_message(tok2, body=f"{tok2}\r\nbinary-ish \x01\x02 ok\r\n")
        assert_reply(c.cmd("MAIL FROM:<sender2@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(f"BDAT {len(msg2)}\r\n".encode() + msg2)
        assert_reply(c.read_reply(), 250)
        assert_reply(c.cmd("BDAT 0 LAST"), 250)
        # A third, pipelined in a single write (RFC 3030 allows BDAT pipelining).
        tok3 = token()
        msg3 = make_message(tok3)
        c.send(b"MAIL FROM:<sender3@example.net>\r\nRCPT TO:<" + BOB.encode() + b">\r\n"
               + b"BDAT 10\r\n" + msg3[:10]
               + f"BDAT {len(msg3) - 10} LAST\r\n".encode() + msg3[10:])
        for _ in range(4):
            assert_reply(c.read_reply(), 250)
        assert_reply(c.cmd("QUIT"), 221)
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)
    check_delivered(server.wait_message(BOB, tok2)[0], "sender2@example.net", msg2)
    check_delivered(server.wait_message(BOB, tok3)[0], "sender3@example.net", msg3)


def test_bdat_then_data_refused(server):
    """After BDAT has started a message, DATA in the same transaction is a bad sequence."""
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        c.send(b"BDAT 5\r\nHello")
        assert_reply(c.read_reply(), 250)
        assert_reply(c.cmd("DATA"), 503, "5.5.1")
        assert_reply(c.cmd("RSET"), 250)


def test_pipelining(server):
    tok = token()
    msg = make_message(tok, to=f"{ALICE}, {BOB}")
    with server.raw() as c:
        c.send(b"MAIL FROM:<pipe@example.net>\r\n"
               b"RCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nosuchuser@example.test>\r\n"
               b"RCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        assert_reply(c.read_reply(), 250)
        assert_reply(c.read_reply(), 250)
        assert_reply(c.read_reply(), 550, "5.1.1")
        assert_reply(c.read_reply(), 250)
        code, lines = c.read_reply()
        assert code == 354, lines
        # Message, terminator and the next commands in one write as well.
        c.send(msg + b".\r\nNOOP\r\nQUIT\r\n")
        assert_reply(c.read_reply(), 250)
        assert_reply(c.read_reply(), 250)
        assert_reply(c.read_reply(), 221)
    for rcpt in (ALICE, BOB):
        check_delivered(server.wait_message(rcpt, tok)[0], "pipe@example.net", msg)
    assert not server.maildir("nosuchuser@example.test").exists()


def test_unknown_user(server):
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("RCPT TO:<nosuchuser@example.test>"), 550, "5.1.1")
        assert_reply(c.cmd("RCPT TO:<nosuchuser@other.test>"), 550, "5.1.1")
        # An accepted recipient after the refused one still works.
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)


def test_relay_refused_on_port25(server):
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("RCPT TO:<remote@elsewhere.test>"), 554, "5.7.1")
        # Source-routed and percent hacks must not open a relay either.
        code, lines = c.cmd("RCPT TO:<@example.test:remote@elsewhere.test>")
        assert 500 <= code < 600, f"source-routed relay accepted: {code} {lines}"
        code, lines = c.cmd("RCPT TO:<remote%elsewhere.test@example.test>")
        assert 500 <= code < 600, f"percent-hack relay accepted: {code} {lines}"
    assert "elsewhere.test" not in server.queue_list()


def test_sequence_and_syntax_errors(server):
    with server.raw() as c:
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
        assert_reply(c.cmd("DATA"), 503, "5.5.1")
        assert_reply(c.cmd("XYZZY"), 500, "5.5.1")
        assert_reply(c.cmd("MAILX FROM:<a@example.net>"), 500, "5.5.1")
        code, lines = c.cmd("MAIL FROM:bogus")
        assert code == 501, lines
        assert_reply((code, lines), 501)
        code, lines = c.cmd("MAIL FROM:<unterminated@example.net")
        assert_reply((code, lines), 501)
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("MAIL FROM:<again@example.net>"), 503, "5.5.1")
        code, lines = c.cmd("RCPT TO:bob@example.test")
        assert_reply((code, lines), 501)
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 503, "5.5.1")
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("QUIT"), 221)
        assert c.read_until_eof(10) == b""


def test_data_before_rcpt(server):
    """Contract: DATA after MAIL but before any RCPT is a bad sequence, 503 5.5.1.
    (RFC 5321 section 3.3 also allows 554 "no valid recipients"; the contract asks for 503.)"""
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("DATA"), 503, "5.5.1")
        # BDAT likewise: the chunk is read and discarded, the answer is a 5xx.
        c.send(b"BDAT 5 LAST\r\nHello")
        code, lines = c.read_reply()
        assert 500 <= code < 600, (code, lines)
        assert_reply(c.cmd("NOOP"), 250)


def test_every_reply_has_enhanced_code(server):
    """All replies except the greeting and EHLO/HELO carry an RFC 2034 code."""
    with server.raw() as c:
        for cmd in ("NOOP", "RSET", "VRFY bob@example.test", "EXPN staff", "HELP",
                    "MAIL FROM:<sender@example.net>", "RCPT TO:<bob@example.test>", "RSET",
                    "XYZZY", "MAIL FROM:<>", "QUIT"):
            _assert_enhanced(c.cmd(cmd), cmd)


def _assert_enhanced(got, cmd):
    code, lines = got
    m = th.ENH_RE.match(lines[0])
    assert m, f"reply to {cmd!r} has no enhanced status code: {code} {lines}"
    assert m.group(1) == str(code)[0], f"class mismatch for {cmd!r}: {code} {lines}"


def test_domain_is_case_insensitive(server):
    tok = token()
    msg = make_message(tok)
    with server.smtp() as s:
        assert s.sendmail("sender@example.net", ["bob@EXAMPLE.Test"], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg)


def test_concurrent_clients(server):
    """Twenty clients at once, each delivering one message; all arrive intact."""
    toks = [token() for _ in range(20)]
    msgs = {t: make_message(t, body=f"{t}\r\n".encode() + b"z" * 5000 + b"\r\n") for t in toks}
    errors = []

    def send(t):
        try:
            with server.smtp() as s:
                s.sendmail(f"c-{t}@example.net", [ALICE], msgs[t])
        except Exception as e:  # collected and reported below
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=send, args=(t,)) for t in toks]
    for th_ in threads:
        th_.start()
    for th_ in threads:
        th_.join(60)
    assert not errors, errors
    for t in toks:
        files = server.wait_message(ALICE, t)
        assert len(files) == 1
        check_delivered(files[0], f"c-{t}@example.net", msgs[t])


def test_helo_then_mail(server):
    with server.raw(ehlo=False) as c:
        code, lines = c.cmd("HELO client.example.net")
        assert code == 250, lines
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        code, lines = c.cmd("EHLO")
        assert code == 501, f"EHLO without a domain accepted: {code} {lines}"


def test_starttls_on_port25(server):
    tok = token()
    msg = make_message(tok)
    with server.smtp() as s:
        s.ehlo()
        assert s.has_extn("starttls")
        code, _ = s.starttls(context=th.tls_context())
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS advertised again after TLS"
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], "sender@example.net", msg,
                    with_proto="ESMTPS")


def test_starttls_discards_pipelined_plaintext(server):
    """Commands sent in plaintext after STARTTLS (before the handshake) must be discarded
    (CVE-2011-0411 class): injecting RSET/MAIL must not yield extra replies inside TLS."""
    c = th.RawSMTP("127.0.0.1", server.ports["smtp"])
    try:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO client.example.net")[0] == 250
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\n")
        code, lines = c.read_reply()
        if code != 220:
            # Refusing STARTTLS with pipelined data is also safe.
            assert 400 <= code < 600, (code, lines)
            return
        c.sock = th.tls_context().wrap_socket(c.sock, server_hostname=th.HOSTNAME)
        c.buf = b""
        code, lines = c.cmd("EHLO client.example.net")
        assert code == 250, f"first reply inside TLS is not the EHLO reply: {code} {lines}"
        # If the injected MAIL had been kept, this MAIL is a bad sequence (503).
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
    finally:
        c.close()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_port25(server):
    tok = token()
    r = subprocess.run(["swaks", "--to", BOB, "--server", f"127.0.0.1:{server.ports['smtp']}",
                        "--from", "swaks@example.net", "--helo", "client.example.net",
                        "--header", f"Subject: swaks {tok}", "--body", f"swaks body {tok}"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, f"swaks exit {r.returncode}:\n{out}"
    files = server.wait_message(BOB, tok)
    data = files[0].read_bytes()
    rp, received, body = th.split_delivered(data)
    assert rp == b"Return-Path: <swaks@example.net>"
    assert f"Subject: swaks {tok}".encode() in body
    assert f"swaks body {tok}".encode() in body


def test_rset_discards_bdat_message(server):
    tok = token()
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        part = make_message(tok)
        c.send(f"BDAT {len(part)}\r\n".encode() + part)
        assert_reply(c.read_reply(), 250)
        assert_reply(c.cmd("RSET"), 250)
        # The transaction is gone: a BDAT LAST now is a bad sequence.
        c.send(b"BDAT 3 LAST\r\nabc")
        code, lines = c.read_reply()
        assert_reply((code, lines), 503, "5.5.1")
    th.assert_no_trace(server, tok)
    assert server.find_messages(BOB, tok) == []


@pytest.mark.parametrize("helo", [b"bad\x01name.example", "\u00e9t\u00e9.example".encode(),
                                  b"\xff\xfe.example", b"[300.1.1.1]", b"a..b", b"x" * 300],
                         ids=["ctrl", "utf8", "bad-utf8", "bad-literal", "empty-label",
                              "long"])
def test_helo_junk_not_in_received(server, helo):
    """A strange EHLO argument is either refused (501) or ends up in Received: without
    control characters or invalid UTF-8; it never breaks the header."""
    tok = token()
    msg = make_message(tok)
    with server.raw(ehlo=False) as c:
        c.send(b"EHLO " + helo + b"\r\n")
        code, lines = c.read_reply()
        if code != 250:
            assert code == 501, (code, lines)
            return
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
        assert c.cmd("DATA")[0] == 354
        c.send(msg + b".\r\n")
        assert_reply(c.read_reply(), 250)
    f = server.wait_message(BOB, tok)[0]
    rp, received, body = th.split_delivered(f.read_bytes())
    assert body == msg
    flat = received.replace(b"\r\n\t", b"").replace(b"\r\n ", b"")[:-2]
    # Control characters never; UTF-8 (a U-label HELO, RFC 6531) only as valid UTF-8.
    assert all(ch >= 32 and ch != 127 or ch == 9 for ch in flat), \
        f"control bytes in Received: {received!r}"
    try:
        flat.decode("utf-8")
    except UnicodeDecodeError:
        pytest.fail(f"EHLO {helo!r} accepted (250) and copied into Received: as invalid "
                    f"UTF-8: {received!r}")
    assert all(len(ln) <= 998 for ln in received.split(b"\r\n")), received


@pytest.mark.parametrize("addr", [b"\xff\xfe@example.net", b"j\xc3rg@example.net",
                                  b"user@\xc0\xaf.example"],
                         ids=["ff-fe", "truncated", "overlong"])
def test_invalid_utf8_address_refused(server, addr):
    """RFC 6531 addresses are UTF-8: invalid sequences are a syntax error (5xx), also with
    SMTPUTF8, and never reach Return-Path."""
    with server.raw() as c:
        c.send(b"MAIL FROM:<" + addr + b"> SMTPUTF8\r\n")
        code, lines = c.read_reply()
        assert 500 <= code < 600, f"MAIL FROM with invalid UTF-8 {addr!r} accepted: {code} {lines}"
        assert_reply(c.cmd("MAIL FROM:<sender@example.net> SMTPUTF8"), 250)
        c.send(b"RCPT TO:<bob\xff@example.test>\r\n")
        code, lines = c.read_reply()
        assert 500 <= code < 600, f"RCPT TO with invalid UTF-8 accepted: {code} {lines}"
