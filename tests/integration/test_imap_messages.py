"""IMAP commands on messages delivered over SMTP: STORE (flags, .SILENT, keywords,
UNCHANGEDSINCE), SEARCH (keys, charsets, UID SEARCH, ESEARCH, SEARCHRES), COPY and MOVE
(UIDPLUS COPYUID), EXPUNGE / UID EXPUNGE, CLOSE and UNSELECT. Raw sockets, so that the
exact untagged responses are checked."""
import re
import time

import pytest

import tern_harness as th
from imap_raw import BOB, LOOPBACK_OK, RawIMAP, deliver, deliver_raw, nums, raw_login, status_of


def msg(tok, subject, body, sender="sender@example.net", extra=b""):
    head = (f"From: {sender}\r\nTo: <{BOB}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{tok}@client.example.net>\r\n").encode()
    return head + extra + b"\r\n" + body


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK)


@pytest.fixture
def five(inst):
    """Five messages for bob (UIDs 1..5), delivered in order."""
    toks = [deliver(inst) for _ in range(5)]
    return inst, toks


def search(c, text):
    u = c.ok(text)
    lines = [x for x in u if x.startswith(b"* SEARCH")]
    assert len(lines) == 1, c.text()
    return nums(lines[0], "SEARCH")


def fetch_flags(lines):
    """{seq: set(flags)} from '* n FETCH (FLAGS (...) ...)' lines."""
    out = {}
    for x in lines:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", x)
        if m:
            # \Recent belongs to this session (it selected first) and is not stored
            out[int(m.group(1))] = set(m.group(2).decode().split()) - {"\\Recent"}
    return out


# ---- STORE ---------------------------------------------------------------------------

def test_store_flags(five):
    inst, _ = five
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        u = c.ok("STORE 1:2 +FLAGS (\\Seen \\Flagged)")
        assert fetch_flags(u) == {1: {"\\Seen", "\\Flagged"}, 2: {"\\Seen", "\\Flagged"}}, c.text()
        u = c.ok("STORE 2 -FLAGS (\\Flagged)")
        assert fetch_flags(u) == {2: {"\\Seen"}}, c.text()
        u = c.ok("STORE 3 FLAGS (\\Answered \\Draft)")
        assert fetch_flags(u) == {3: {"\\Answered", "\\Draft"}}, c.text()
        u = c.ok("STORE 3 FLAGS ()")
        assert fetch_flags(u) == {3: set()}, c.text()
        # .SILENT: no FETCH for the changed messages
        u = c.ok("STORE 4:5 +FLAGS.SILENT (\\Deleted)")
        assert not any(b"FETCH" in x for x in u), c.text()
        # UID STORE answers with the UID
        u = c.ok("UID STORE 4 -FLAGS (\\Deleted)")
        assert any(re.match(rb"\* 4 FETCH \(.*UID 4", x) for x in u), c.text()
        assert search(c, "SEARCH DELETED") == [5], c.text()
        assert search(c, "SEARCH FLAGGED") == [1], c.text()
        assert search(c, "SEARCH SEEN") == [1, 2], c.text()
        assert search(c, "SEARCH UNSEEN") == [3, 4, 5], c.text()
        assert search(c, "SEARCH ANSWERED") == [], c.text()
        # \Recent cannot be stored; unknown system flags are errors
        u, t = c.cmd("STORE 1 +FLAGS (\\Recent)")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("STORE 1 +FLAGS (\\Bogus)")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("STORE 9 +FLAGS (\\Seen)")
        assert status_of(t) in ("BAD", "NO"), c.text()
    # the flags are permanent: a new session sees them
    with raw_login(inst) as c:
        c.ok("EXAMINE INBOX")
        assert search(c, "SEARCH SEEN") == [1, 2]
        assert search(c, "SEARCH DELETED") == [5]


def test_store_keywords(five):
    inst, _ = five
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        u = c.ok("STORE 1 +FLAGS ($Label1 Work)")
        assert fetch_flags(u) == {1: {"$Label1", "Work"}}, c.text()
        c.ok("STORE 2 +FLAGS (work)")
        assert search(c, "SEARCH KEYWORD Work") == [1, 2] or \
            search(c, "SEARCH KEYWORD Work") == [1], c.text()
        assert search(c, "SEARCH KEYWORD $Label1") == [1], c.text()
        assert search(c, "SEARCH UNKEYWORD $Label1") == [2, 3, 4, 5], c.text()
        u = c.ok("STORE 1 -FLAGS ($Label1)")
        assert fetch_flags(u) == {1: {"Work"}}, c.text()
        u, t = c.cmd("STORE 1 +FLAGS (bad]kw)")
        assert status_of(t) == "BAD", c.text()
    with raw_login(inst) as c:
        # FLAGS on SELECT lists the keywords in use; PERMANENTFLAGS allows new ones
        u = c.ok("SELECT INBOX")
        flags = [x for x in u if x.startswith(b"* FLAGS")][0]
        assert b"Work" in flags, c.text()
        perm = [x for x in u if b"PERMANENTFLAGS" in x][0]
        assert b"\\*" in perm, c.text()


def test_store_unchangedsince_modified(five):
    inst, _ = five
    with raw_login(inst) as c:
        c.ok("ENABLE CONDSTORE")
        c.ok("SELECT INBOX")
        # seq 1 becomes UID 2 so sequence numbers and UIDs differ
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        u = c.ok("STORE 1 +FLAGS (\\Seen)")
        m = re.search(rb"\* 1 FETCH \(.*UID 2.*MODSEQ \((\d+)\)", b"\n".join(u))
        assert m, c.text()
        modseq = int(m.group(1))
        # unchanged since modseq: the store goes through and reports the new MODSEQ
        u = c.ok(f"STORE 1 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Flagged)")
        m2 = re.search(rb"\* 1 FETCH \(.*MODSEQ \((\d+)\)", b"\n".join(u))
        assert m2 and int(m2.group(1)) > modseq, c.text()
        # now it changed since modseq: refused with MODIFIED, and nothing stored
        u, t = c.cmd(f"STORE 1:2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Answered)")
        assert status_of(t) == "OK", c.text()
        code = re.search(rb"\[MODIFIED ([0-9:,]+)\]", t)
        assert code, c.text()
        # RFC 7162 §3.1.3: message sequence numbers for STORE (UIDs only for UID STORE)
        assert code.group(1) == b"1", c.text()
        assert search(c, "SEARCH ANSWERED") == [2], c.text()
        u, t = c.cmd(f"UID STORE 2:3 (UNCHANGEDSINCE {modseq}) -FLAGS (\\Seen)")
        code = re.search(rb"\[MODIFIED ([0-9:,]+)\]", t)
        assert code and code.group(1) in (b"2,3", b"2:3"), c.text()   # both changed after modseq
        u, t = c.cmd("STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)")
        assert status_of(t) == "BAD", c.text()


# ---- SEARCH --------------------------------------------------------------------------

@pytest.fixture
def corpus(inst):
    """Four messages with known headers, bodies and sizes."""
    t = [th.token() for _ in range(4)]
    deliver_raw(inst, msg(t[0], "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=",
                          b"Der B=C3=A4r tanzt im Regen.\r\n" + t[0].encode() + b"\r\n",
                          sender='"=?UTF-8?Q?Ren=C3=A9e_=C3=85ngstr=C3=B6m?=" <renee@example.net>',
                          extra=b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                b"Content-Transfer-Encoding: quoted-printable\r\n"))
    inst.wait_message(BOB, t[0])
    deliver_raw(inst, msg(t[1], "Quarterly REPORT", b"numbers " + t[1].encode() + b"\r\n" +
                          b"x" * 6000 + b"\r\n", sender="Carol <carol@example.org>"))
    inst.wait_message(BOB, t[1])
    deliver_raw(inst, msg(t[2], "lunch?", b"Shall we have lunch? " + t[2].encode() + b"\r\n",
                          sender="dave@example.org",
                          extra=b"X-Custom: Hello-Header\r\n"))
    inst.wait_message(BOB, t[2])
    deliver_raw(inst, msg(t[3], "Re: Quarterly report", b"Sounds good.\r\n" +
                          t[3].encode() + b"\r\n", sender="Carol <carol@example.org>"))
    inst.wait_message(BOB, t[3])
    return inst, t


def test_search_keys(corpus):
    inst, t = corpus
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        assert search(c, "SEARCH ALL") == [1, 2, 3, 4]
        assert search(c, "SEARCH FROM carol") == [2, 4], c.text()
        assert search(c, "SEARCH FROM CAROL@EXAMPLE.ORG") == [2, 4], c.text()
        assert search(c, "SEARCH SUBJECT quarterly") == [2, 4], c.text()
        assert search(c, 'SEARCH SUBJECT "re: QUART"') == [4], c.text()
        assert search(c, "SEARCH HEADER X-Custom hello-header") == [3], c.text()
        assert search(c, 'SEARCH HEADER X-Custom ""') == [3], c.text()
        assert search(c, "SEARCH TO bob@example.test") == [1, 2, 3, 4], c.text()
        assert search(c, f"SEARCH BODY {t[2]}") == [3], c.text()
        assert search(c, "SEARCH BODY LUNCH") == [3], c.text()
        assert search(c, "SEARCH BODY quarterly") == [], c.text()   # only in the header
        assert search(c, "SEARCH TEXT quarterly") == [2, 4], c.text()
        assert search(c, "SEARCH TEXT dave") == [3], c.text()
        assert search(c, "SEARCH LARGER 5000") == [2], c.text()
        assert search(c, "SEARCH SMALLER 5000") == [1, 3, 4], c.text()
        assert search(c, "SEARCH SINCE 1-Jan-2020") == [1, 2, 3, 4], c.text()
        assert search(c, "SEARCH SINCE 1-Jan-2099") == [], c.text()
        assert search(c, "SEARCH BEFORE 1-Jan-2020") == [], c.text()
        today = time.strftime("%d-%b-%Y", time.gmtime())
        assert len(search(c, f"SEARCH ON {today}")) >= 3, c.text()
        assert search(c, "SEARCH 2:3") == [2, 3], c.text()
        assert search(c, "SEARCH UID 3:*") == [3, 4], c.text()
        assert search(c, "SEARCH OR FROM dave SUBJECT lunch") == [3], c.text()
        assert search(c, "SEARCH OR FROM dave LARGER 5000") == [2, 3], c.text()
        assert search(c, "SEARCH NOT FROM carol") == [1, 3], c.text()
        assert search(c, "SEARCH (FROM carol SUBJECT re:) NEW") == [4], c.text()
        assert search(c, "SEARCH FROM carol NOT SUBJECT re:") == [2], c.text()
        assert search(c, "UID SEARCH SUBJECT quarterly") == [2, 4], c.text()
        c.ok("STORE 1 +FLAGS (\\Seen)")
        assert search(c, "SEARCH SEEN SUBJECT quarterly") == [], c.text()
        assert search(c, "SEARCH UNSEEN") == [2, 3, 4], c.text()
        u, t2 = c.cmd("SEARCH BOGUSKEY")
        assert status_of(t2) == "BAD", c.text()
        u, t2 = c.cmd("SEARCH SINCE 32-Foo-2020")
        assert status_of(t2) == "BAD", c.text()
        u, t2 = c.cmd("SEARCH OR FROM x")
        assert status_of(t2) == "BAD", c.text()


def test_search_non_ascii(corpus):
    inst, t = corpus
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        # RFC 2047 encoded-words are decoded for SUBJECT/FROM; QP bodies for BODY
        for key, want in ((b"SUBJECT", "Köln"), (b"SUBJECT", "grüße"),
                          (b"FROM", "Ångström"), (b"BODY", "Bär tanzt")):
            lit = want.encode()
            c.send(b"u1 SEARCH CHARSET UTF-8 " + key + b" {%d+}\r\n" % len(lit) + lit + b"\r\n")
            u, tg = c.read_response("u1")
            assert status_of(tg) == "OK", c.text()
            assert nums([x for x in u if x.startswith(b"* SEARCH")][0], "SEARCH") == [1], \
                (key, want, c.text())
        # case-insensitive beyond ASCII (RFC 9051 §6.4.4)
        lit = "KÖLN".encode()
        c.send(b"u2 SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n" % len(lit) + lit + b"\r\n")
        u, tg = c.read_response("u2")
        assert nums([x for x in u if x.startswith(b"* SEARCH")][0], "SEARCH") == [1], c.text()
        u, tg = c.cmd("SEARCH CHARSET KOI8-R SUBJECT x")
        assert status_of(tg) == "NO" and b"[BADCHARSET" in tg, c.text()
        assert search(c, "SEARCH CHARSET US-ASCII SUBJECT lunch") == [3], c.text()


def test_esearch_return(corpus):
    inst, t = corpus
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        u = c.ok("SEARCH RETURN (MIN MAX COUNT ALL) FROM carol")
        assert len(u) == 1, c.text()
        tag = c.transcript[-1].split()[1]
        assert u[0] == f'* ESEARCH (TAG "{tag}") MIN 2 MAX 4 COUNT 2 ALL 2,4'.encode(), c.text()
        u = c.ok("SEARCH RETURN (COUNT) ALL")
        assert u[0].endswith(b" COUNT 4"), c.text()
        u = c.ok("UID SEARCH RETURN (MIN MAX) ALL")
        assert b" UID MIN 1 MAX 4" in u[0], c.text()
        u = c.ok("SEARCH RETURN () 2:4")
        assert u[0].endswith(b" ALL 2:4"), c.text()
        # nothing matched: no MIN/MAX/ALL, COUNT 0
        u = c.ok("SEARCH RETURN (MIN MAX COUNT ALL) FROM nobody-at-all")
        assert u[0].endswith(b"COUNT 0") and b"MIN" not in u[0] and b"ALL" not in u[0], c.text()
        u, tg = c.cmd("SEARCH RETURN (BOGUS) ALL")
        assert status_of(tg) == "BAD", c.text()


def test_searchres_save(corpus):
    inst, t = corpus
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        u = c.ok("SEARCH RETURN (SAVE) FROM carol")
        assert u == [], c.text()   # SAVE alone: no ESEARCH response (RFC 5182 §2.4)
        c.ok("STORE $ +FLAGS (\\Flagged)")
        assert search(c, "SEARCH FLAGGED") == [2, 4], c.text()
        assert search(c, "UID SEARCH UID $") == [2, 4], c.text()
        assert search(c, "SEARCH $ SUBJECT re:") == [4], c.text()
        c.ok("COPY $ Archive")
        u = c.ok("SEARCH RETURN (SAVE MIN) SUBJECT lunch")
        assert u and b"MIN 3" in u[0], c.text()
        assert search(c, "SEARCH $") == [3], c.text()
        # the saved result follows expunges: message 3's UID goes away
        c.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        assert search(c, "SEARCH $") == [], c.text()
    with raw_login(inst) as c:
        st = c.ok("STATUS Archive (MESSAGES)")
        assert b"MESSAGES 2" in st[0], c.text()


# ---- COPY, MOVE, EXPUNGE -------------------------------------------------------------

def uidvalidity(c, name):
    u = c.ok(f"STATUS {name} (UIDVALIDITY UIDNEXT)")
    m = re.search(rb"UIDVALIDITY (\d+)", u[0])
    n = re.search(rb"UIDNEXT (\d+)", u[0])
    return int(m.group(1)), int(n.group(1))


def test_copy_copyuid(five):
    inst, _ = five
    with raw_login(inst) as c:
        uv, nxt = uidvalidity(c, "Archive")
        c.ok("SELECT INBOX")
        u, t = c.cmd("COPY 2:3,5 Archive")
        assert status_of(t) == "OK", c.text()
        m = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", t)
        assert m, c.text()
        assert int(m.group(1)) == uv, c.text()
        assert m.group(2) == b"2:3,5", c.text()
        assert m.group(3) == f"{nxt}:{nxt + 2}".encode(), c.text()
        # the source keeps them; no EXPUNGE
        assert not any(b"EXPUNGE" in x for x in u), c.text()
        assert search(c, "SEARCH ALL") == [1, 2, 3, 4, 5]
        u, t = c.cmd("UID COPY 4 Archive")
        m = re.search(rb"\[COPYUID \d+ 4 (\d+)\]", t)
        assert m and int(m.group(1)) == nxt + 3, c.text()
        # flags travel with the copy
        c.ok("STORE 1 +FLAGS (\\Flagged)")
        c.ok("COPY 1 Archive")
        c.ok("SELECT Archive")
        assert search(c, "SEARCH ALL") == [1, 2, 3, 4, 5], c.text()
        assert search(c, "SEARCH FLAGGED") == [5], c.text()
        assert search(c, "SEARCH RECENT") == [1, 2, 3, 4, 5], c.text()


def test_copy_to_missing_mailbox_trycreate(five):
    inst, _ = five
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        for cmd in ("COPY 1 NoSuchBox", "MOVE 1 NoSuchBox", "UID COPY 1 NoSuchBox"):
            u, t = c.cmd(cmd)
            assert status_of(t) == "NO" and b"[TRYCREATE]" in t, c.text()
        assert search(c, "SEARCH ALL") == [1, 2, 3, 4, 5]
        u, t = c.cmd("COPY 1:9 Archive")  # beyond the last message
        assert status_of(t) in ("BAD", "NO"), c.text()


def test_move_copyuid_and_expunge(five):
    inst, _ = five
    with raw_login(inst) as c:
        uv, nxt = uidvalidity(c, "Trash")
        c.ok("SELECT INBOX")
        u, t = c.cmd("MOVE 2,4 Trash")
        assert status_of(t) == "OK", c.text()
        # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs
        assert u[0].startswith(b"* OK [COPYUID "), c.text()
        m = re.match(rb"\* OK \[COPYUID (\d+) (\S+) (\S+)\]", u[0])
        assert int(m.group(1)) == uv and m.group(2) == b"2,4", c.text()
        assert m.group(3) == f"{nxt}:{nxt + 1}".encode(), c.text()
        exp = [int(x.split()[1]) for x in u if x.endswith(b"EXPUNGE")]
        remaining = apply_expunges([1, 2, 3, 4, 5], exp)
        assert remaining == [1, 3, 5], (exp, c.text())
        assert search(c, "UID SEARCH ALL") == [1, 3, 5], c.text()
        u = c.ok("UID MOVE 5 Trash")
        exp = [int(x.split()[1]) for x in u if x.endswith(b"EXPUNGE")]
        assert exp == [3], c.text()
        st = c.ok("STATUS Trash (MESSAGES)")
        assert b"MESSAGES 3" in st[0], c.text()
    with raw_login(inst) as c:
        c.ok("EXAMINE INBOX")
        u, t = c.cmd("MOVE 1 Trash")
        assert status_of(t) == "NO" and b"[READ-ONLY]" in t, c.text()


def apply_expunges(uids, seqs):
    """Apply '* n EXPUNGE' in order, each number as of the moment it was sent."""
    uids = list(uids)
    for s in seqs:
        assert 1 <= s <= len(uids), (s, uids)
        del uids[s - 1]
    return uids


def test_expunge_several_numbers(inst):
    for _ in range(7):
        deliver(inst)
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 2,3,5,7 +FLAGS.SILENT (\\Deleted)")
        u = c.ok("EXPUNGE")
        exp = [int(x.split()[1]) for x in u if x.endswith(b"EXPUNGE")]
        assert len(exp) == 4, c.text()
        assert apply_expunges([1, 2, 3, 4, 5, 6, 7], exp) == [1, 4, 6], (exp, c.text())
        assert search(c, "UID SEARCH ALL") == [1, 4, 6], c.text()
        assert search(c, "SEARCH ALL") == [1, 2, 3], c.text()
        # nothing \Deleted: no EXPUNGE responses
        assert c.ok("EXPUNGE") == [], c.text()


def test_uid_expunge_only_the_set(inst):
    for _ in range(4):
        deliver(inst)
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        u = c.ok("UID EXPUNGE 2:4")   # 2 and 3 deleted; 4 is not
        exp = [int(x.split()[1]) for x in u if x.endswith(b"EXPUNGE")]
        assert apply_expunges([1, 2, 3, 4], exp) == [1, 4], (exp, c.text())
        assert search(c, "UID SEARCH DELETED") == [1], c.text()
        u, t = c.cmd("UID EXPUNGE")
        assert status_of(t) == "BAD", c.text()


def test_close_expunges_silently_unselect_does_not(inst):
    for _ in range(3):
        deliver(inst)
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        u = c.ok("UNSELECT")
        assert u == [], c.text()
        st = c.ok("STATUS INBOX (MESSAGES DELETED)")
        assert b"MESSAGES 3" in st[0] and b"DELETED 1" in st[0], c.text()
        c.ok("SELECT INBOX")
        c.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        u = c.ok("CLOSE")
        assert u == [], c.text()   # no EXPUNGE responses (RFC 9051 §6.4.1)
        st = c.ok("STATUS INBOX (MESSAGES DELETED)")
        assert b"MESSAGES 1" in st[0] and b"DELETED 0" in st[0], c.text()
        u, t = c.cmd("NOOP")
        assert status_of(t) == "OK"
        u, t = c.cmd("SEARCH ALL")  # no mailbox selected any more
        assert status_of(t) == "BAD", c.text()
        # CLOSE after EXAMINE expunges nothing
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXAMINE INBOX")
        c.ok("CLOSE")
        st = c.ok("STATUS INBOX (MESSAGES)")
        assert b"MESSAGES 1" in st[0], c.text()


def test_own_store_not_repeated_at_noop(five):
    """A session's own flag changes are answered by its STORE, not again at the next NOOP;
    another session's changes are."""
    inst, _ = five
    with raw_login(inst) as a, raw_login(inst) as b:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        a.ok("STORE 1 +FLAGS (\\Seen)")
        a.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        assert a.ok("NOOP") == [], a.text()
        u = b.ok("NOOP")
        assert set(fetch_flags(u)) == {1, 2}, b.text()
        assert b.ok("NOOP") == [], b.text()


def test_searchres_save_with_min_max(corpus):
    """RFC 9051 §6.4.4.1 (RFC 5182): SAVE with MIN and/or MAX but neither ALL nor COUNT
    saves only the MIN/MAX messages; with ALL or COUNT, everything found."""
    inst, t = corpus
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        c.ok("SEARCH RETURN (SAVE MIN) ALL")
        assert search(c, "SEARCH $") == [1], c.text()
        c.ok("SEARCH RETURN (SAVE MAX) ALL")
        assert search(c, "SEARCH $") == [4], c.text()
        c.ok("SEARCH RETURN (SAVE MIN MAX) ALL")
        assert search(c, "SEARCH $") == [1, 4], c.text()
        c.ok("SEARCH RETURN (SAVE MIN MAX) SUBJECT lunch")
        assert search(c, "SEARCH $") == [3], c.text()
        c.ok("SEARCH RETURN (SAVE MIN COUNT) ALL")
        assert search(c, "SEARCH $") == [1, 2, 3, 4], c.text()
        c.ok("UID SEARCH RETURN (SAVE MAX) FROM carol")
        assert search(c, "UID SEARCH UID $") == [4], c.text()
