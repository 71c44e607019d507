"""IMAP APPEND against a real tern: inline and streamed (> 64 KiB) literals, synchronising
and LITERAL+ ones, flags and INTERNALDATE, APPENDUID, TRYCREATE, TOOBIG, EXISTS in a session
that has the mailbox selected, and a client that goes away mid-literal."""
import imaplib
import os
import re
import socket
import time

import pytest

import tern_harness as th

USER = "alice@example.test"
PASSWORD = th.USERS[USER]
LIMIT = 1024 * 1024   # max_message_size of the instance


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import provision_users, _teardown
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-append"),
                           settings={"allow_plaintext_auth_loopback": "yes",
                                     "max_message_size": str(LIMIT)})
    provision_users(inst)
    inst.start()
    yield inst
    _teardown(inst)


def login(srv):
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(USER, PASSWORD)
    return c


class Raw:
    """A bare IMAP connection: exact bytes out, lines and literals in."""

    def __init__(self, srv):
        self.sock = socket.create_connection(("127.0.0.1", srv.ports["imap"]),
                                             timeout=th.IO_TIMEOUT)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"* OK")
        self.n = 0
        self.cmd(f'LOGIN "{USER}" "{PASSWORD}"')

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        line = self.f.readline()
        assert line, "connection closed"
        return line

    def response(self, tag):
        """Lines (literals inlined) up to the tagged one; returns (untagged, tagged)."""
        lines = []
        while True:
            line = self.readline()
            m = re.search(rb"~?\{(\d+)\}\r\n$", line)
            while m:
                line += self.f.read(int(m.group(1)))
                more = self.readline()
                line += more
                m = re.search(rb"~?\{(\d+)\}\r\n$", more)
            if line.startswith(tag.encode() + b" "):
                return lines, line
            lines.append(line)

    def cmd(self, text):
        self.n += 1
        tag = f"r{self.n}"
        self.send(f"{tag} {text}\r\n".encode())
        return self.response(tag)

    def close(self):
        self.f.close()
        self.sock.close()


def message(tok, body_size=200, lf=False):
    line = f"line of {tok}\r\n"
    body = (line * (body_size // len(line) + 1))[:body_size]
    msg = (f"From: a@example.test\r\nTo: {USER}\r\nSubject: {tok}\r\n"
           f"Message-ID: <{tok}@example.test>\r\n\r\n{body}\r\n")
    if lf:
        msg = msg.replace("\r\n", "\n")
    return msg.encode()


def uids_with(c, tok):
    typ, data = c.uid("SEARCH", None, "SUBJECT", tok)
    assert typ == "OK", data
    return data[0].split()


def test_small_append_with_flags_and_date(srv):
    c = login(srv)
    tok = th.token()
    msg = message(tok)
    typ, data = c.append("INBOX", r"(\Flagged $Work)", '"05-Mar-2021 10:11:12 +0100"', msg)
    assert typ == "OK", data
    m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
    assert m, data
    uid = m.group(2).decode()
    c.select("INBOX")
    typ, data = c.uid("FETCH", uid, "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
    assert typ == "OK", data
    head = data[0][0]
    assert b"\\Flagged" in head and b"$Work" in head and b"\\Seen" not in head
    assert b'INTERNALDATE "05-Mar-2021 09:11:12 +0000"' in head
    assert f"RFC822.SIZE {len(msg)}".encode() in head
    assert data[0][1] == msg
    # UIDVALIDITY of APPENDUID is the mailbox's
    typ, st = c.status("INBOX", "(UIDVALIDITY)")
    assert m.group(1) in st[0]
    c.logout()


@pytest.mark.parametrize("sync", [True, False])
def test_large_append_streamed(srv, sync):
    """Over the 64 KiB inline limit: the literal is streamed into the store."""
    tok = th.token()
    msg = message(tok, body_size=300 * 1024)
    r = Raw(srv)
    if sync:
        r.send(f"a1 APPEND INBOX (\\Seen) {{{len(msg)}}}\r\n".encode())
        assert r.readline().startswith(b"+ ")
        r.send(msg)
        time.sleep(0.05)
        r.send(b"\r\n")
    else:
        r.send(f"a1 APPEND INBOX (\\Seen) {{{len(msg)}+}}\r\n".encode() + msg[:1000])
        time.sleep(0.05)
        r.send(msg[1000:] + b"\r\n")
    _, tagged = r.response("a1")
    assert b"OK [APPENDUID" in tagged, tagged
    uid = re.search(rb"APPENDUID \d+ (\d+)", tagged).group(1).decode()
    r.cmd("SELECT INBOX")
    lines, tagged = r.cmd(f"UID FETCH {uid} (FLAGS RFC822.SIZE BODY.PEEK[])")
    assert tagged.startswith(b"r3 OK"), tagged
    got = lines[0]
    assert b"\\Seen" in got and f"RFC822.SIZE {len(msg)}".encode() in got
    assert msg in got
    r.close()


def test_append_pipelined_after_nonsync_literal(srv):
    """LITERAL+ with the next command in the same packet."""
    tok = th.token()
    msg = message(tok, body_size=100 * 1024)
    r = Raw(srv)
    r.send(f"a1 APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\na2 NOOP\r\n")
    _, t1 = r.response("a1")
    _, t2 = r.response("a2")
    assert b"OK [APPENDUID" in t1 and t2.startswith(b"a2 OK")
    r.close()
    c = login(srv)
    c.select("INBOX")
    assert len(uids_with(c, tok)) == 1
    c.logout()


def test_trycreate(srv):
    c = login(srv)
    typ, data = c.append("NoSuchFolder", None, None, message(th.token()))
    assert typ == "NO" and b"[TRYCREATE]" in data[0], data
    c.logout()
    # streamed
    r = Raw(srv)
    r.send(b"a1 APPEND NoSuchFolder {100000}\r\n")
    _, tagged = r.response("a1")   # refused before the client sends anything
    assert b"NO [TRYCREATE]" in tagged, tagged
    lines, tagged = r.cmd("NOOP")
    assert tagged.startswith(b"r2 OK")
    r.close()


def test_append_to_other_folder(srv):
    c = login(srv)
    c.create("Archive")
    tok = th.token()
    typ, data = c.append("Archive", None, None, message(tok))
    assert typ == "OK", data
    c.select("Archive")
    assert len(uids_with(c, tok)) == 1
    c.logout()


def test_toobig(srv):
    r = Raw(srv)
    # synchronising: refused before the bytes are sent, session goes on
    r.send(f"a1 APPEND INBOX {{{LIMIT + 1}}}\r\n".encode())
    _, tagged = r.response("a1")
    assert b"NO [TOOBIG]" in tagged, tagged
    lines, tagged = r.cmd("NOOP")
    assert tagged.startswith(b"r2 OK")
    r.close()
    c = login(srv)
    tok = th.token()
    typ, data = c.append("INBOX", None, None, message(tok, body_size=LIMIT + 10))
    assert typ == "NO" and b"[TOOBIG]" in data[0], data
    c.select("INBOX")
    assert uids_with(c, tok) == []
    c.logout()


def test_append_seen_as_exists_in_selected_sessions(srv):
    a = login(srv)
    b = login(srv)
    a.select("INBOX")
    typ, data = b.select("INBOX")
    before = int(data[0])
    tok = th.token()
    typ, data = a.append("INBOX", None, None, message(tok))
    assert typ == "OK"
    # the appending session learns it before APPEND's tagged OK
    exists = a.untagged_responses.get("EXISTS")
    assert exists and int(exists[-1]) == before + 1, a.untagged_responses
    # the other at its next commands (the session core may send the update just after the
    # tagged OK of the first one)
    b.noop()
    b.noop()
    exists = b.untagged_responses.get("EXISTS")
    assert exists and int(exists[-1]) == before + 1
    a.logout()
    b.logout()


def test_bare_lf_message_served_as_crlf(srv):
    c = login(srv)
    tok = th.token()
    r = Raw(srv)
    msg = message(tok, lf=True)
    r.send(f"a1 APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b"\r\n")
    _, tagged = r.response("a1")
    assert b"OK [APPENDUID" in tagged
    uid = re.search(rb"APPENDUID \d+ (\d+)", tagged).group(1).decode()
    r.close()
    c.select("INBOX")
    typ, data = c.uid("FETCH", uid, "(RFC822.SIZE BODY.PEEK[])")
    crlf = msg.replace(b"\n", b"\r\n")
    assert data[0][1] == crlf
    assert f"RFC822.SIZE {len(crlf)}".encode() in data[0][0]
    c.logout()


def test_disconnect_mid_literal_leaves_nothing(srv):
    tok = th.token()
    msg = message(tok, body_size=400 * 1024)
    tmp = srv.maildir(USER) / "tmp"
    r = Raw(srv)
    r.send(f"a1 APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg[:200 * 1024])
    # the server is writing the message into tmp/ ...
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(tmp.iterdir()):
        time.sleep(0.02)
    assert any(tmp.iterdir()), "no temporary file while the literal streams"
    r.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(tmp.iterdir()):
        time.sleep(0.05)
    assert list(tmp.iterdir()) == []
    assert srv.find_messages(USER, tok) == []
    c = login(srv)
    c.select("INBOX")
    assert uids_with(c, tok) == []
    c.logout()


def test_bad_line_after_streamed_literal_aborts(srv):
    tok = th.token()
    msg = message(tok, body_size=100 * 1024)
    r = Raw(srv)
    r.send(f"a1 APPEND INBOX {{{len(msg)}+}}\r\n".encode() + msg + b" junk (\r\n")
    _, tagged = r.response("a1")
    assert b" BAD" in tagged, tagged
    lines, tagged = r.cmd("NOOP")
    assert tagged.startswith(b"r2 OK")
    r.close()
    assert srv.find_messages(USER, tok) == []
    assert list((srv.maildir(USER) / "tmp").iterdir()) == []


def test_bad_append_syntax(srv):
    r = Raw(srv)
    for args in ("INBOX (\\Bogus) {5}", 'INBOX "not a date" {5}', "INBOX (\\Recent) {5}"):
        r.n += 1
        tag = f"r{r.n}"
        r.send(f"{tag} APPEND {args}\r\n".encode())
        line = r.readline()
        if line.startswith(b"+"):
            r.send(b"hello\r\n")
            _, tagged = r.response(tag)
        else:
            tagged = line
        assert b" BAD" in tagged, (args, tagged)
    r.close()


def test_toobig_nonsync_closes(srv):
    """A LITERAL+ message over the limit is already on its way: NO [TOOBIG], then the
    server hangs up rather than read megabytes it will throw away (RFC 7888 §4)."""
    r = Raw(srv)
    r.send(f"a1 APPEND INBOX {{{LIMIT * 4}+}}\r\n".encode())
    line = r.readline()
    assert line.startswith(b"a1 NO [TOOBIG]"), line
    assert r.readline().startswith(b"* BYE")
    assert r.f.readline() == b""
    r.close()
