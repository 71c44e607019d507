"""IMAP FETCH / UID FETCH against a real tern: every item (UID FLAGS INTERNALDATE
RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE BODY[section]<partial> BODY.PEEK RFC822*
BINARY[.PEEK|.SIZE] MODSEQ, the macros), the MIME corpus, \\Seen handling (BODY[] sets it,
BODY.PEEK[] and EXAMINE do not), an empty mailbox, a message expunged by another session,
CHANGEDSINCE / VANISHED (EARLIER), and a 5 MB message streamed with back-pressure."""
import glob
import imaplib
import os
import re
import socket
import time

import pytest

import tern_harness as th


def parse_imap(data, pos=0):
    """IMAP data (atoms - with a bracketed part as in BODY[HEADER.FIELDS (A B)] -, quoted
    strings, literals, lists) up to the end or an unmatched ')': (list, pos); NIL is None."""
    out = []
    atom = re.compile(rb"(?:[^ ()\[\r\n]|\[[^\]]*\])+")
    while pos < len(data):
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif c == b"(":
            sub, pos = parse_imap(data, pos + 1)
            out.append(sub)
        elif c == b")":
            return out, pos + 1
        elif c == b'"':
            pos += 1
            s = bytearray()
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                s += data[pos:pos + 1]
                pos += 1
            out.append(bytes(s))
            pos += 1
        elif c in (b"{", b"~"):
            if c == b"~":
                pos += 1
            end = data.index(b"}", pos)
            n = int(data[pos + 1:end].rstrip(b"+"))
            pos = end + 1
            pos += 2 if data[pos:pos + 2] == b"\r\n" else 1
            out.append(data[pos:pos + n])
            pos += n
        else:
            m = atom.match(data, pos)
            out.append(None if m.group(0) == b"NIL" else m.group(0))
            pos = m.end()
    return out, pos

USER = "bob@example.test"
PASSWORD = th.USERS[USER]
CORPUS = os.path.join(os.path.dirname(__file__), "..", "mime-corpus")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import provision_users, _teardown
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-fetch"),
                           settings={"allow_plaintext_auth_loopback": "yes",
                                     "max_message_size": str(16 * 1024 * 1024)})
    provision_users(inst)
    inst.start()
    yield inst
    _teardown(inst)


class Raw:
    """A bare IMAP connection: exact bytes out, responses (literals inlined) in."""

    def __init__(self, srv, user=USER):
        self.sock = socket.create_connection(("127.0.0.1", srv.ports["imap"]),
                                             timeout=th.IO_TIMEOUT)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"* OK")
        self.n = 0
        _, t = self.cmd(f'LOGIN "{user}" "{th.USERS[user]}"')
        assert b" OK" in t

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        line = self.f.readline()
        assert line, "connection closed"
        return line

    def response(self, tag):
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
        tag = f"f{self.n}"
        self.send(f"{tag} {text}\r\n".encode())
        return self.response(tag)

    def append(self, mailbox, data, flags=""):
        self.n += 1
        tag = f"f{self.n}"
        lit = "~" if b"\0" in data else ""
        self.send(f"{tag} APPEND {mailbox} {flags}{lit}{{{len(data)}}}\r\n".encode())
        line = self.readline()
        assert line.startswith(b"+"), line
        self.send(data + b"\r\n")
        _, t = self.response(tag)
        m = re.search(rb"APPENDUID \d+ (\d+)", t)
        assert m, t
        return int(m.group(1))

    def close(self):
        self.f.close()
        self.sock.close()


def fetch_items(line):
    """'* n FETCH (K V K V ...)' -> dict of item name (upper) -> parsed value."""
    m = re.match(rb"\* (\d+) FETCH ", line)
    assert m, line
    parsed, _ = parse_imap(line[m.end():])
    lst = parsed[0]
    out = {}
    for i in range(0, len(lst), 2):
        out[lst[i].upper()] = lst[i + 1]
    return int(m.group(1)), out


def msg(tok, body="hello\r\n", extra=""):
    return (f"From: Sender <s@example.test>\r\nTo: {USER}\r\nSubject: {tok}\r\n"
            f"Date: Mon, 1 Feb 2021 10:00:00 +0000\r\nMessage-ID: <{tok}@x>\r\n{extra}\r\n"
            f"{body}").encode()


@pytest.fixture
def box(srv):
    """A fresh folder selected on a raw connection: (raw, name)."""
    r = Raw(srv)
    name = "F" + th.token()
    _, t = r.cmd(f"CREATE {name}")
    assert b" OK" in t
    yield r, name
    r.close()


def test_corpus_structures(srv, box):
    r, name = box
    files = sorted(glob.glob(os.path.join(CORPUS, "*.eml")))
    uids = {}
    for f in files:
        uids[f] = r.append(name, open(f, "rb").read())
    r.cmd(f"SELECT {name}")
    for f in files:
        expected = {}
        text = open(f[:-4] + ".imap", "rb").read()
        for line in re.split(rb"\r?\n(?=(?:ENVELOPE|BODYSTRUCTURE|BODY) )", text):
            parsed, _ = parse_imap(line)
            expected[parsed[0]] = parsed[1]
        lines, t = r.cmd(f"UID FETCH {uids[f]} (ENVELOPE BODYSTRUCTURE BODY RFC822.SIZE)")
        assert b"OK" in t, t
        _, items = fetch_items(lines[0])
        for k in (b"ENVELOPE", b"BODYSTRUCTURE", b"BODY"):
            assert items[k] == expected[k], (os.path.basename(f), k)
        # RFC822.SIZE counts served (CRLF) octets, whatever the file holds
        raw = open(f, "rb").read()
        served = len(re.sub(rb"(?<!\r)\n", b"\r\n", raw))
        assert int(items[b"RFC822.SIZE"]) == served
        assert int(items[b"UID"]) == uids[f]


def test_sections(srv, box):
    r, name = box
    data = open(os.path.join(CORPUS, "03-mixed-attach.eml"), "rb").read()
    uid = r.append(name, data)
    r.cmd(f"SELECT {name}")
    header, body = data.split(b"\r\n\r\n", 1)
    header += b"\r\n\r\n"
    lines, t = r.cmd(f"UID FETCH {uid} (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] "
                     "BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2]<0.10> BODY.PEEK[1]<4.1000> "
                     "BODY.PEEK[HEADER.FIELDS (Subject To)] "
                     "BODY.PEEK[HEADER.FIELDS.NOT (Subject To From Content-Type)] "
                     "BODY.PEEK[3] BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1]<0.3>)")
    assert t.startswith(b"f") and b" OK " in t, t
    _, it = fetch_items(lines[0])
    assert it[b"BODY[]"] == data
    assert it[b"BODY[HEADER]"] == header
    assert it[b"BODY[TEXT]"] == body
    assert it[b"BODY[1]"] == b"See attached."
    assert it[b"BODY[1.MIME]"] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert it[b"BODY[2]<0>"] == b"JVBERi0xLj"
    assert it[b"BODY[1]<4>"] == b"attached."
    # the section names carry the field list
    raw = lines[0]
    m = re.search(rb'BODY\[HEADER\.FIELDS \("SUBJECT" "TO"\)\] \{(\d+)\}\r\n', raw)
    assert m, raw[:400]
    got = raw[m.end():m.end() + int(m.group(1))]
    assert got == b"To: b@example.org\r\nSubject: report\r\n\r\n"
    m = re.search(rb'BODY\[HEADER\.FIELDS\.NOT \([^)]*\)\] \{(\d+)\}\r\n', raw)
    assert m
    got = raw[m.end():m.end() + int(m.group(1))]
    assert got == b"MIME-Version: 1.0\r\n\r\n"
    assert it[b"BODY[3]"] == b""        # no such part
    assert it[b"BINARY[2]"] == b"%PDF-1.4\n"
    assert int(it[b"BINARY.SIZE[2]"]) == 9
    assert it[b"BINARY[1]<0>"] == b"See"
    # quoted-printable, decoded
    uid2 = r.append(name, open(os.path.join(CORPUS, "02-alternative.eml"), "rb").read())
    lines, t = r.cmd(f"UID FETCH {uid2} (BINARY.PEEK[1] BINARY.SIZE[1] BODY.PEEK[1])")
    _, it = fetch_items(lines[0])
    assert it[b"BINARY[1]"] == "Grüße".encode()
    assert int(it[b"BINARY.SIZE[1]"]) == len("Grüße".encode())
    assert it[b"BODY[1]"] == b"Gr=C3=BC=C3=9Fe"


def test_binary_nul_and_unknown_cte(srv, box):
    r, name = box
    body = b"QUJDAERFRg==\r\n"   # "ABC\0DEF"
    m1 = msg("b64", body=body.decode(), extra="Content-Transfer-Encoding: base64\r\n")
    m2 = msg("x", body="zzzz\r\n", extra="Content-Transfer-Encoding: x-uuencode\r\n")
    u1 = r.append(name, m1)
    u2 = r.append(name, m2)
    r.cmd(f"SELECT {name}")
    lines, t = r.cmd(f"UID FETCH {u1} (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert b" OK " in t
    assert b"BINARY[1] ~{7}\r\nABC\0DEF" in lines[0]
    assert b"BINARY.SIZE[1] 7" in lines[0]
    lines, t = r.cmd(f"UID FETCH {u2} BINARY.PEEK[1]")
    assert b"NO [UNKNOWN-CTE]" in t, t
    lines, t = r.cmd(f"UID FETCH {u2} BODY.PEEK[1]")
    assert b" OK " in t and b"zzzz" in lines[0]


def test_simple_items_and_macros(srv, box):
    r, name = box
    tok = th.token()
    m = msg(tok)
    r.send(f'a1 APPEND {name} (\\Flagged kw1) "14-Jul-2020 08:09:10 +0200" {{{len(m)}+}}\r\n'
           .encode() + m + b"\r\n")
    _, t = r.response("a1")
    assert b"APPENDUID" in t
    r.cmd(f"SELECT {name}")
    lines, t = r.cmd("FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
    seq, it = fetch_items(lines[0])
    assert seq == 1
    assert set(it[b"FLAGS"]) >= {b"\\Flagged", b"kw1"}
    assert it[b"INTERNALDATE"] == b"14-Jul-2020 06:09:10 +0000"
    assert int(it[b"RFC822.SIZE"]) == len(m)
    env = it[b"ENVELOPE"]
    assert env[0] == b"Mon, 1 Feb 2021 10:00:00 +0000" and env[1] == tok.encode()
    assert env[2] == [[b"Sender", None, b"s", b"example.test"]]
    assert env[9] == f"<{tok}@x>".encode()
    for macro, keys in (("FAST", {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE"}),
                        ("ALL", {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE"}),
                        ("FULL", {b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE",
                                  b"BODY"})):
        lines, t = r.cmd(f"FETCH 1 {macro}")
        assert b" OK " in t
        assert set(fetch_items(lines[0])[1]) == keys, macro
    # UID FETCH always carries UID
    lines, t = r.cmd("UID FETCH 1:* FLAGS")
    assert b"UID " in lines[0]
    # RFC822.HEADER does not set \Seen; RFC822.TEXT does
    lines, t = r.cmd("FETCH 1 RFC822.HEADER")
    _, it = fetch_items(lines[0])
    assert it[b"RFC822.HEADER"] == m.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert b"FLAGS" not in it
    lines, t = r.cmd("FETCH 1 RFC822.TEXT")
    _, it = fetch_items(lines[0])
    assert it[b"RFC822.TEXT"] == b"hello\r\n" and b"\\Seen" in it[b"FLAGS"]
    lines, t = r.cmd("FETCH 1 RFC822")
    assert fetch_items(lines[0])[1][b"RFC822"] == m


def test_seen_flag(srv, box):
    r, name = box
    for i in range(3):
        r.append(name, msg(f"seen{i}"))
    # EXAMINE: BODY[] does not set \Seen
    r.cmd(f"EXAMINE {name}")
    lines, t = r.cmd("FETCH 1 BODY[]")
    assert b" OK " in t
    _, it = fetch_items(lines[0])
    assert b"FLAGS" not in it
    r.cmd(f"SELECT {name}")
    lines, _ = r.cmd("FETCH 1:3 FLAGS")
    assert all(b"\\Seen" not in l for l in lines)
    lines, _ = r.cmd("FETCH 1 BODY.PEEK[]")
    assert b"FLAGS" not in fetch_items(lines[0])[1]
    lines, _ = r.cmd("FETCH 1 FLAGS")
    assert b"\\Seen" not in lines[0]
    # BODY[] sets it and says so in the same response
    lines, _ = r.cmd("FETCH 2 BODY[TEXT]")
    _, it = fetch_items(lines[0])
    assert b"\\Seen" in it[b"FLAGS"]
    # BINARY[] too
    lines, _ = r.cmd("FETCH 3 BINARY[1]")
    assert b"\\Seen" in fetch_items(lines[0])[1][b"FLAGS"]
    # and it is stored: another session sees it
    o = Raw(srv)
    o.cmd(f"EXAMINE {name}")
    lines, _ = o.cmd("FETCH 1:3 FLAGS")
    flags = [b"\\Seen" in l for l in lines]
    assert flags == [False, True, True]
    o.close()
    # already seen: no FLAGS again
    lines, _ = r.cmd("FETCH 2 BODY[TEXT]")
    assert b"FLAGS" not in fetch_items(lines[0])[1]


def test_empty_mailbox_and_errors(srv, box):
    r, name = box
    r.cmd(f"SELECT {name}")
    lines, t = r.cmd("UID FETCH 1:* (FLAGS BODY.PEEK[])")
    assert lines == [] and b" OK " in t
    lines, t = r.cmd("FETCH 1 FLAGS")
    assert b" BAD " in t
    r.append(name, msg("one"))
    r.cmd("NOOP")
    lines, t = r.cmd("FETCH 5 FLAGS")
    assert b" BAD " in t
    for bad in ("FETCH 1 (FLAGS BOGUS)", "FETCH 1 BODY[HEADER.FIELDS]", "FETCH 1",
                "FETCH x FLAGS", "FETCH 1 BODY[1]<5>", "FETCH 1 ()",
                "FETCH 1 FLAGS (CHANGEDSINCE x)"):
        lines, t = r.cmd(bad)
        assert b" BAD " in t, bad


def test_expunged_by_other_session(srv, box):
    r, name = box
    for i in range(3):
        r.append(name, msg(f"exp{i}"))
    r.cmd(f"SELECT {name}")
    o = Raw(srv)
    o.cmd(f"SELECT {name}")
    o.cmd("STORE 2 +FLAGS.SILENT (\\Deleted)")
    _, t = o.cmd("EXPUNGE")
    assert b" OK " in t
    o.close()
    lines, t = r.cmd("FETCH 1:3 (UID BODY.PEEK[HEADER.FIELDS (Subject)])")
    assert t.startswith(b"f") and b" NO " in t, t
    fetched = [fetch_items(l)[0] for l in lines if b" FETCH " in l]
    assert fetched == [1, 3]
    # rev2 clients get the response code
    r.cmd("ENABLE IMAP4rev2")
    o = Raw(srv)
    o.cmd(f"SELECT {name}")
    o.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    o.cmd("EXPUNGE")
    o.close()
    lines, t = r.cmd("FETCH 1 FLAGS")
    assert b"NO [EXPUNGEISSUED]" in t, t
    # the expunge is reported afterwards
    lines, t = r.cmd("NOOP")
    lines2, _ = r.cmd("NOOP")
    assert any(b"EXPUNGE" in l or b"VANISHED" in l for l in lines + lines2)


def test_changedsince_modseq_vanished(srv, box):
    r, name = box
    for i in range(4):
        r.append(name, msg(f"cs{i}"))
    r.cmd("ENABLE QRESYNC")
    lines, t = r.cmd(f"SELECT {name}")
    lines, _ = r.cmd("FETCH 1:* MODSEQ")
    mods = {fetch_items(l)[0]: int(fetch_items(l)[1][b"MODSEQ"][0]) for l in lines}
    assert len(mods) == 4
    high = max(mods.values())
    o = Raw(srv)
    o.cmd(f"SELECT {name}")
    o.cmd("STORE 2 +FLAGS.SILENT (\\Flagged)")
    o.cmd("STORE 4 +FLAGS.SILENT (\\Deleted)")
    o.cmd("EXPUNGE")
    o.close()
    # UID 4 is gone; the FETCH below may not report it as EXPUNGE (sequence numbers)
    lines, t = r.cmd(f"UID FETCH 1:3 (FLAGS) (CHANGEDSINCE {high})")
    assert b" OK " in t, t
    got = [fetch_items(l) for l in lines if b" FETCH " in l]
    assert len(got) == 1
    seq, it = got[0]
    assert int(it[b"UID"]) == 2 and b"\\Flagged" in it[b"FLAGS"]
    assert int(it[b"MODSEQ"][0]) > high
    lines, t = r.cmd(f"UID FETCH 1:10 (FLAGS) (CHANGEDSINCE {high} VANISHED)")
    assert b" OK " in t, t
    # (unsolicited updates owed from before may come first)
    assert b"* VANISHED (EARLIER) 4\r\n" in lines, lines
    mine = lines[lines.index(b"* VANISHED (EARLIER) 4\r\n"):]
    assert len(mine) == 2 and b"UID 2 " in mine[1] and b"MODSEQ" in mine[1], mine
    # VANISHED without QRESYNC-style use is refused
    lines, t = r.cmd(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {high} VANISHED)")
    assert b" BAD " in t


def worker_pid(srv):
    pids = re.findall(r"\[(\d+)\]: i[0-9a-f]+\.\d+: login user=" + re.escape(USER),
                      srv.log_text())
    return int(pids[-1])


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_large_message_streamed(srv, box):
    r, name = box
    tok = th.token()
    line = (tok * 4 + "\r\n").encode()
    big = msg(tok, body=(line * (5 * 1024 * 1024 // len(line) + 1)).decode())
    uid = r.append(name, big)
    r.cmd(f"SELECT {name}")
    pid = worker_pid(srv)
    before = rss_kb(pid)
    # ask for it twice and do not read: the server must stop when the socket is full
    # instead of queueing 10 MB in memory
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    r.send(f"z1 UID FETCH {uid} (BODY.PEEK[] BODY.PEEK[TEXT])\r\n".encode())
    time.sleep(1.5)
    grown = rss_kb(pid) - before
    lines, t = r.response("z1")
    assert b" OK " in t
    _, it = fetch_items(lines[0])
    assert it[b"BODY[]"] == big
    assert it[b"BODY[TEXT]"] == big.split(b"\r\n\r\n", 1)[1]
    assert grown < 4 * 1024, f"worker grew by {grown} kB while the client did not read"
    # partial of a large message
    lines, t = r.cmd(f"UID FETCH {uid} BODY.PEEK[]<{len(big) - 10}.100>")
    assert fetch_items(lines[0])[1][f"BODY[]<{len(big) - 10}>".encode()] == big[-10:]


def test_lf_message(srv, box):
    """A file with bare LFs (dropped into the Maildir by another program) is served as
    CRLF, sections counted in served octets."""
    r, name = box
    tok = th.token()
    lf = (f"From: x@example.test\nSubject: {tok}\nContent-Type: multipart/mixed; "
          f"boundary=b\n\n--b\nContent-Type: text/plain\n\nfirst\nline\n--b--\n").encode()
    uid = r.append(name, lf)
    r.cmd(f"SELECT {name}")
    crlf = lf.replace(b"\n", b"\r\n")
    lines, t = r.cmd(f"UID FETCH {uid} (RFC822.SIZE BODY.PEEK[] BODY.PEEK[1] "
                     "BODY.PEEK[1.MIME] BODY.PEEK[]<2.5>)")
    _, it = fetch_items(lines[0])
    assert int(it[b"RFC822.SIZE"]) == len(crlf)
    assert it[b"BODY[]"] == crlf
    assert it[b"BODY[1]"] == b"first\r\nline"
    assert it[b"BODY[1.MIME]"] == b"Content-Type: text/plain\r\n\r\n"
    assert it[b"BODY[]<2>"] == crlf[2:7]


def test_imaplib_fetch(srv):
    """An ordinary client: imaplib over plain loopback."""
    c = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(USER, PASSWORD)
    tok = th.token()
    m = msg(tok)
    typ, _ = c.append("INBOX", None, None, m)
    assert typ == "OK"
    c.select("INBOX")
    typ, data = c.uid("SEARCH", None, "SUBJECT", tok)
    uid = data[0].split()[-1]
    typ, data = c.uid("FETCH", uid, "(RFC822)")
    assert typ == "OK" and data[0][1] == m
    c.logout()


def test_many_messages_paused_and_resumed(srv, box):
    """300 messages (more than one batch of structures) fetched by a client that does not
    read at first: the FETCH pauses between messages and completes once it reads."""
    r, name = box
    pad = "x" * 2000 + "\r\n"
    n = 300
    for i in range(n):
        m = msg(f"many{i}", body=pad * 4)
        r.send(f"p{i} APPEND {name} {{{len(m)}+}}\r\n".encode() + m + b"\r\n")
    for i in range(n):
        _, t = r.response(f"p{i}")
        assert b" OK " in t
    r.cmd(f"SELECT {name}")
    r.send(b"m1 FETCH 1:* (UID ENVELOPE BODY.PEEK[TEXT])\r\n")
    time.sleep(1)
    lines, t = r.response("m1")
    assert b" OK " in t, t
    got = [fetch_items(l) for l in lines if b" FETCH " in l]
    assert [seq for seq, _ in got] == list(range(1, n + 1))
    for seq, it in got:
        assert it[b"ENVELOPE"][1] == f"many{seq - 1}".encode()
        assert it[b"BODY[TEXT]"] == (pad * 4).encode()
