"""Protocol details that reviews found wrong, one test (or a few) each: QRESYNC when the
expunge records the client needs were pruned (RFC 7162 §3.2.5, §3.2.6), SEARCH MODSEQ's
highest mod-sequence (§3.1.5, §3.1.10), STORE (UNCHANGEDSINCE 0) (§3.1.3), no \\Recent for
IMAP4rev2 (RFC 9051), BINARY of an unknown Content-Transfer-Encoding (RFC 3516 §4.3), the
RECENT count of EXAMINE (RFC 3501 §6.3.2), LIST patterns that are too long, EXPUNGE
numbers of thousands of messages, and a SEARCH BODY that lets the worker's other sessions
run. Raw sockets, so that exact responses are checked."""
import os
import re
import select
import time

import pytest

from imap_raw import BOB, LOOPBACK_OK, deliver, nums, raw_login, status_of

# store_settings.expunge_keep's default (src/store/store.h STORE_EXPUNGE_KEEP_DEFAULT): one
# expunge of more messages than this prunes every record it made
EXPUNGE_KEEP = 10000


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK)


def drop_messages(inst, count, addr=BOB, tag="drop", body=lambda i: f"body {i}\r\n"):
    """Write count messages straight into addr's Maildir new/ (as another delivery agent
    would; the next SELECT indexes them in file name order): much faster than SMTP for
    thousands. The Maildir must exist (deliver one message first)."""
    md = inst.maildir(addr)
    st = os.stat(md)
    for i in range(count):
        name = f"1700000000.M{i:07d}P{os.getpid()}.{tag}"
        tmp = md / "tmp" / name
        tmp.write_bytes(f"From: <s@example.net>\r\nTo: <{addr}>\r\nSubject: {tag} {i}\r\n"
                        f"Message-ID: <{tag}.{i}@example.net>\r\n\r\n{body(i)}".encode())
        os.chown(tmp, st.st_uid, st.st_gid)
        os.rename(tmp, md / "new" / name)


def select_state(lines):
    text = b"\n".join(lines)
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", text).group(1))
    modseq = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", text).group(1))
    return uv, modseq


def uid_set(text):
    """b'1,4:6' -> {1, 4, 5, 6}"""
    out = set()
    for part in text.decode().split(","):
        a, _, b = part.partition(":")
        lo, hi = sorted((int(a), int(b or a)))
        out.update(range(lo, hi + 1))
    return out


def vanished_earlier(lines):
    v = [x for x in lines if x.startswith(b"* VANISHED (EARLIER) ")]
    assert len(v) <= 1, lines
    return uid_set(v[0].split()[3]) if v else set()


# ---- 1. QRESYNC when the expunge records are gone ----------------------------------------

def test_qresync_after_expunge_records_were_pruned(inst):
    """UIDs 1-3 over SMTP, 4..EXPUNGE_KEEP+4 dropped in; one EXPUNGE of 1 and 4..N leaves no
    record (more than expunge_keep in one MODSEQ): a client that knew the mailbox before must
    still learn of every expunged UID it may know (RFC 7162 §3.2.5.1, §3.2.6 note)."""
    for _ in range(3):
        deliver(inst)
    n_drop = EXPUNGE_KEEP + 1
    drop_messages(inst, n_drop)
    last = 3 + n_drop
    with raw_login(inst, timeout=120) as c:
        c.ok("ENABLE QRESYNC")
        uv, known = select_state(c.ok("SELECT INBOX"))
        c.ok(f"UID STORE 1,4:{last} +FLAGS.SILENT (\\Deleted)", timeout=120)
        c.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
        u = c.ok(f"UID EXPUNGE 1,4:{last}", timeout=120)
        assert vanished_earlier(u) == set()
        c.ok("UNSELECT")
        gone = {1} | set(range(4, last + 1))

        # no known UIDs: 1:UIDNEXT-1
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known}))", timeout=120)
        assert vanished_earlier(u) == gone, c.text()[-3000:]
        assert any(re.match(rb"\* 1 FETCH \(UID 2 FLAGS \(\\Flagged\) MODSEQ \(\d+\)\)$", x)
                   for x in u), c.text()[-3000:]
        assert not any(b"FETCH (UID 3 " in x for x in u), c.text()[-3000:]
        c.ok("UNSELECT")

        # known UIDs: only those (and none at or above UIDNEXT); flag changes likewise
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known} 1,3:5,{last - 1}:{last + 50}))")
        assert vanished_earlier(u) == {1, 4, 5, last - 1, last}, c.text()[-3000:]
        assert not any(b" FETCH " in x for x in u), c.text()[-3000:]   # UID 2 not known
        c.ok("UNSELECT")

        # sequence match data (RFC 7162 §3.2.5.2): seq 1 = UID 2, seq 2 = UID 3 hold, so
        # the client knows of every expunge up to UID 3
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known} 1:{last} (1:2 2:3)))")
        assert vanished_earlier(u) == set(range(4, last + 1)), c.text()[-3000:]
        c.ok("UNSELECT")
        # a pair that does not hold (seq 1 is not UID 1) restricts nothing
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known} 1:{last} (1,2 1,3)))")
        assert vanished_earlier(u) == gone, c.text()[-3000:]

        # UID FETCH (CHANGEDSINCE VANISHED) in the selected mailbox: the same answer
        u = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")
        assert vanished_earlier(u) == gone, c.text()[-3000:]
        u = c.ok(f"UID FETCH 3:6,{last} (FLAGS) (CHANGEDSINCE {known} VANISHED)")
        assert vanished_earlier(u) == {4, 5, 6, last}, c.text()[-3000:]
        # many ranges: each odd UID on its own
        many = ",".join(str(x) for x in range(1, 12001, 2))
        t0 = time.monotonic()
        u = c.ok(f"UID FETCH {many} (FLAGS) (CHANGEDSINCE {known} VANISHED)", timeout=60)
        assert vanished_earlier(u) == {x for x in gone if x % 2 == 1}
        assert time.monotonic() - t0 < 10

        # syntax is checked before the mailbox is opened
        for bad in (f"({uv} {known} 1:x)", f"({uv} {known} 1 (1))", f"({uv} {known} (1 x))",
                    f"({uv} 0)", f"({uv} {known} 1 (1 2) 3)"):
            _, t = c.cmd(f"SELECT INBOX (QRESYNC {bad})")
            assert status_of(t) == "BAD", c.text()[-2000:]


def test_qresync_known_uids_with_records(inst):
    """With the records there, known UIDs still restrict VANISHED (EARLIER) and FETCH."""
    for _ in range(6):
        deliver(inst)
    with raw_login(inst) as c:
        c.ok("ENABLE QRESYNC")
        uv, known = select_state(c.ok("SELECT INBOX"))
        c.ok("STORE 1:6 +FLAGS.SILENT (\\Answered)")
        c.ok("UID STORE 2,5 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")
        c.ok("UNSELECT")
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known} 1:3))")
        assert vanished_earlier(u) == {2}, c.text()
        fetched = sorted(int(m.group(1)) for x in u
                         if (m := re.match(rb"\* \d+ FETCH \(UID (\d+) ", x)))
        assert fetched == [1, 3], c.text()
        c.ok("UNSELECT")
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {known}))")
        assert vanished_earlier(u) == {2, 5}, c.text()


# ---- 2. SEARCH MODSEQ: the highest MODSEQ of what was found ------------------------------

def modseqs(c):
    """{seq: MODSEQ} of the selected mailbox"""
    out = {}
    for x in c.ok("FETCH 1:* (MODSEQ)"):
        m = re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)\)", x)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


@pytest.fixture
def five(inst):
    """bob's INBOX with five messages (UIDs 1-5)"""
    for _ in range(5):
        deliver(inst)
    return inst


def test_search_modseq_reports_highest_modseq(five):
    with raw_login(five) as c:
        c.ok("SELECT INBOX")
        base = max(modseqs(c).values())
        c.ok("STORE 5 +FLAGS.SILENT (\\Seen)")
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")       # the later change: the highest
        ms = modseqs(c)
        assert base < ms[5] < ms[2], ms
        u = c.ok(f"SEARCH MODSEQ {base + 1}")
        assert u == [f"* SEARCH 2 5 (MODSEQ {ms[2]})".encode()], c.text()
        u = c.ok(f"UID SEARCH MODSEQ \"/flags/\\\\draft\" all {base + 1}")
        assert u == [f"* SEARCH 2 5 (MODSEQ {ms[2]})".encode()], c.text()
        # nothing found: no MODSEQ
        u = c.ok(f"SEARCH MODSEQ {ms[2] + 1}")
        assert u == [b"* SEARCH"], c.text()
        # a MODSEQ key anywhere counts (RFC 7162 example 16)
        u = c.ok(f"SEARCH OR NOT MODSEQ {base + 1} SEEN")
        assert u == [f"* SEARCH 1 3 4 5 (MODSEQ {max(ms[1], ms[3], ms[4], ms[5])})".encode()]
        # without MODSEQ in the keys, none
        assert c.ok("SEARCH FLAGGED") == [b"* SEARCH 2"], c.text()
        # ESEARCH (RFC 4731 §3.2): the MIN's or MAX's own when alone, else the highest
        tag = c.n + 1
        for ret, want in (("ALL", f"ALL 2,5 MODSEQ {ms[2]}"),
                          ("MIN", f"MIN 2 MODSEQ {ms[2]}"),
                          ("MAX", f"MAX 5 MODSEQ {ms[5]}"),
                          ("MIN MAX", f"MIN 2 MAX 5 MODSEQ {ms[2]}"),
                          ("MAX COUNT", f"MAX 5 COUNT 2 MODSEQ {ms[2]}")):
            u = c.ok(f"SEARCH RETURN ({ret}) MODSEQ {base + 1}")
            assert u == [f'* ESEARCH (TAG "t{tag}") {want}'.encode()], c.text()
            tag += 1
        u = c.ok(f"UID SEARCH RETURN (MIN) MODSEQ {base + 1}")
        assert u == [f'* ESEARCH (TAG "t{tag}") UID MIN 2 MODSEQ {ms[2]}'.encode()], c.text()
        tag += 1
        u = c.ok(f"SEARCH RETURN (COUNT) MODSEQ {ms[2] + 1}")
        assert u == [f'* ESEARCH (TAG "t{tag}") COUNT 0'.encode()], c.text()


# ---- 3. STORE (UNCHANGEDSINCE 0) ------------------------------------------------------

def test_store_unchangedsince_zero_changes_nothing(five):
    """Every message has a MODSEQ above 0: every one fails the test, is reported in
    [MODIFIED ...] (numbers for STORE, UIDs for UID STORE) and is left as it was (RFC 7162
    §3.1.3 example 8)."""
    with raw_login(five) as c:
        c.ok("SELECT INBOX")
        c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        c.ok("EXPUNGE")                          # numbers 1-4 are UIDs 2-5 now
        before = modseqs(c)
        u, t = c.cmd("STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
        assert status_of(t) == "OK", c.text()
        assert uid_set(re.search(rb"\[MODIFIED ([0-9:,]+)\]", t).group(1)) == {1, 2, 3}, t
        assert not any(b" FETCH " in x for x in u), c.text()
        u, t = c.cmd("UID STORE 3,5 (UNCHANGEDSINCE 0) FLAGS.SILENT ($MDNSent)")
        assert uid_set(re.search(rb"\[MODIFIED ([0-9:,]+)\]", t).group(1)) == {3, 5}, t
        assert not any(b" FETCH " in x for x in u), c.text()
        assert c.ok("SEARCH OR SEEN KEYWORD $MDNSent") == [b"* SEARCH"], c.text()
        assert modseqs(c) == before, c.text()
        # a UID that is not there is no failure
        u, t = c.cmd("UID STORE 99 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
        assert status_of(t) == "OK" and b"MODIFIED" not in t, c.text()


# ---- 4. IMAP4rev2: no \Recent, no RECENT ------------------------------------------------

def test_rev2_never_shows_recent(five):
    """RFC 9051 has no \\Recent: not in FETCH FLAGS of any kind (FETCH, STORE's answer, an
    unsolicited update, QRESYNC's changes) and no '* n RECENT', though the session did
    claim the messages (a rev1 session in its place sees \\Recent)."""
    inst = five
    with raw_login(inst) as a, raw_login(inst) as b:
        a.ok("ENABLE IMAP4rev2 QRESYNC")
        u = a.ok("SELECT INBOX")
        uv, known = select_state(u)
        seen = list(u)
        seen += a.ok("FETCH 1:* (FLAGS)")
        seen += a.ok("STORE 1 +FLAGS (\\Seen)")                      # solicited FETCH
        seen += a.ok("UID STORE 2 +FLAGS.SILENT (\\Answered)")
        b.ok("SELECT INBOX")
        b.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
        seen += a.ok("NOOP")                                         # unsolicited FETCH
        assert any(re.match(rb"\* 3 FETCH \(FLAGS \(\\Flagged\)", x) for x in seen), a.text()
        deliver(inst)
        seen += a.ok("NOOP")                                         # EXISTS, no RECENT
        assert b"* 6 EXISTS" in seen, a.text()
        seen += a.ok("FETCH 6 (FLAGS)")
        a.ok("UNSELECT")
        deliver(inst)                          # recent for a's next SELECT, which claims it
        u = a.ok(f"SELECT INBOX (QRESYNC ({uv} {known}))")
        assert any(re.match(rb"\* 7 FETCH \(UID 7 FLAGS \(\) MODSEQ", x) for x in u), a.text()
        seen += u
        assert not [x for x in seen if b"Recent" in x or b"RECENT" in x], a.text()
        # the same steps for rev1 do show \Recent (the claim works)
        deliver(inst)
        assert b"* 1 RECENT" in b.ok("NOOP"), b.text()
        u = b.ok("STORE 8 +FLAGS (\\Seen)")
        assert u == [b"* 8 FETCH (FLAGS (\\Seen \\Recent) UID 8)"], b.text()


# ---- 5. BINARY of an unknown Content-Transfer-Encoding ------------------------------------

def two_parts(tok, cte, body):
    return (f"From: <s@example.net>\r\nTo: <{BOB}>\r\nSubject: {tok}\r\n"
            f"Message-ID: <{tok}@example.net>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
            f"--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
            f"--b\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n--b--\r\n").encode()


def test_binary_unknown_cte_fails_the_fetch(inst):
    """RFC 3516 §4.3: the request fails with NO [UNKNOWN-CTE]. Messages before the one that
    cannot be decoded are answered completely; that one gets no (partial) response, none
    after it is answered, and \\Seen is set only on those whose content was sent."""
    for tok, cte, body in (("ok1", "base64", "aGVsbG8="), ("bad", "x-uuencode", "begin 644"),
                           ("ok2", "quoted-printable", "a=3Db")):
        th_tok = f"{tok}-{os.getpid()}"
        with inst.smtp() as s:
            s.sendmail("s@example.net", [BOB], two_parts(th_tok, cte, body))
        inst.wait_message(BOB, th_tok)
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        u, t = c.cmd("FETCH 1:3 (UID BINARY[2])")
        assert status_of(t) == "NO" and b"[UNKNOWN-CTE]" in t, c.text()
        fetches = [x for x in u if b" FETCH " in x]
        assert len(fetches) == 1 and fetches[0].startswith(b"* 1 FETCH (UID 1 BINARY[2] {5}"), \
            c.text()
        assert c.ok("SEARCH SEEN") == [b"* SEARCH 1"], c.text()
        # the item first: still no partial response, and no \Seen
        u, t = c.cmd("FETCH 2 (BINARY[2] UID)")
        assert status_of(t) == "NO" and b"[UNKNOWN-CTE]" in t, c.text()
        assert not any(b" FETCH " in x for x in u), c.text()
        u, t = c.cmd("FETCH 2 (BINARY.SIZE[2])")
        assert status_of(t) == "NO" and b"[UNKNOWN-CTE]" in t, c.text()
        assert c.ok("SEARCH SEEN") == [b"* SEARCH 1"], c.text()
        # what can be decoded still is; BODY[2] of the same part is served as it is
        u = c.ok("FETCH 3 (BINARY[2])")
        assert u[0].startswith(b"* 3 FETCH (BINARY[2] {3}"), c.text()
        u = c.ok("FETCH 2 (BODY.PEEK[2])")
        assert u[0].startswith(b"* 2 FETCH (BODY[2] {9}"), c.text()


# ---- 6. EXAMINE and \Recent ------------------------------------------------------------

def recent_count(lines):
    found = [int(m.group(1)) for x in lines if (m := re.match(rb"\* (\d+) RECENT$", x))]
    assert len(found) == 1, lines
    return found[0]


def test_examine_reports_recent_without_claiming(inst):
    """EXAMINE returns what SELECT does (RFC 3501 §6.3.2): the number of messages with
    \\Recent, which stay \\Recent for the next session that SELECTs (§2.3.2: "if the session
    is read-only, subsequent sessions will also see \\Recent set")."""
    for _ in range(3):
        deliver(inst)
    with raw_login(inst) as a, raw_login(inst) as b:
        assert recent_count(a.ok("EXAMINE INBOX")) == 3, a.text()
        assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2 3"], a.text()
        assert all(b"\\Recent" in x for x in a.ok("FETCH 1:3 (FLAGS)")), a.text()
        assert a.ok("STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 3)"], a.text()
        # new mail seen first by the read-only session: recent there, and still unclaimed
        deliver(inst)
        u = a.ok("NOOP")
        assert b"* 4 EXISTS" in u and recent_count(u) == 4, a.text()
        u = b.ok("SELECT INBOX")
        assert recent_count(u) == 4, b.text()
        assert b.ok("SEARCH RECENT") == [b"* SEARCH 1 2 3 4"], b.text()
        # claimed now: a third session sees none recent, in EXAMINE or SELECT
    with raw_login(inst) as c:
        assert recent_count(c.ok("EXAMINE INBOX")) == 0, c.text()
        assert recent_count(c.ok("SELECT INBOX")) == 0, c.text()


# ---- 7. LIST / LSUB patterns are bounded -------------------------------------------------

@pytest.mark.serial  # a 2 s bound on LIST
def test_list_patterns_are_bounded(inst):
    """Every pattern is matched against every mailbox: one that is too long (reference
    included), has too many wildcards, or too many patterns, fails the command at once."""
    with raw_login(inst) as c:
        c.ok("CREATE a/b")
        long_ = "a" * 1100
        for cmd in (f'LIST "" {long_}', f'LIST {long_} "*"', f'LSUB "" "*{long_}"',
                    'LIST "" "' + "%a" * 33 + '"', 'LSUB "" "' + "*" * 40 + '"',
                    'LIST "" (' + " ".join(["x%"] * 40) + ")",
                    'LIST "" (' + " ".join(["*" * 20] * 2) + ")"):
            t0 = time.monotonic()
            u, t = c.cmd(cmd)
            assert status_of(t) == "NO" and b"[LIMIT]" in t and u == [], c.text()[-1000:]
            assert time.monotonic() - t0 < 2
        # what clients send still works, a long reference with an empty pattern too
        assert b'* LIST (\\HasChildren) "/" a' in c.ok('LIST "" "%"'), c.text()
        assert c.ok('LIST "" "a/*"') == [b'* LIST (\\HasNoChildren) "/" a/b'], c.text()
        assert c.ok(f'LIST {long_} ""') == [b'* LIST (\\Noselect) "/" ""'], c.text()
        c.ok("NOOP")


# ---- 8. EXPUNGE of thousands of messages ---------------------------------------------------

def expunge_numbers(lines):
    return [int(x.split()[1]) for x in lines if re.match(rb"\* \d+ EXPUNGE$", x)]


def apply_expunges(uids, seqs):
    """The client's side: each '* n EXPUNGE' removes the message that is number n then."""
    uids = list(uids)
    for n in seqs:
        assert 1 <= n <= len(uids), (n, len(uids))
        del uids[n - 1]
    return uids


def test_expunge_of_thousands_numbers_exact(inst):
    """3,000 messages, of which runs and scattered ones are expunged: the session that
    expunges, a session that learns of it at its next command, and a QRESYNC session each
    end up with exactly the UIDs that are left, with the numbers sent highest first."""
    deliver(inst)
    drop_messages(inst, 2999)
    total = 3000
    gone = [u for u in range(1, total + 1)
            if u % 7 in (0, 3) or 1000 <= u <= 1500 or u in (1, 2, total)]
    left = [u for u in range(1, total + 1) if u not in set(gone)]
    with raw_login(inst, timeout=120) as a, raw_login(inst, timeout=120) as b, \
            raw_login(inst, timeout=120) as q:
        a.ok("SELECT INBOX", timeout=120)
        b.ok("SELECT INBOX", timeout=120)
        q.ok("ENABLE QRESYNC")
        q.ok("SELECT INBOX", timeout=120)
        # the \Deleted flags in pieces (one set of that many ranges is one command line)
        for k in range(0, len(gone), 500):
            a.ok("UID STORE " + ",".join(map(str, gone[k:k + 500])) + " +FLAGS.SILENT (\\Deleted)")
        u = a.ok("EXPUNGE", timeout=120)
        nums_a = expunge_numbers(u)
        # original numbers (UID = number here), highest first
        assert nums_a == sorted(gone, reverse=True), a.text()[-2000:]
        assert apply_expunges(range(1, total + 1), nums_a) == left
        u = b.ok("NOOP", timeout=120)
        assert expunge_numbers(u) == nums_a, b.text()[-2000:]
        assert nums(b.ok("UID SEARCH ALL")[0], "SEARCH") == left, b.text()[-2000:]
        u = q.ok("NOOP", timeout=120)
        v = [x for x in u if x.startswith(b"* VANISHED ")]
        assert len(v) == 1 and uid_set(v[0].split()[2]) == set(gone), q.text()[-2000:]
        # the views agree with the mailbox: numbers map to the UIDs that are left
        for c in (a, b, q):
            u = c.ok(f"FETCH 1,500,{len(left)} (UID)")
            got = [int(m.group(1)) for x in u if (m := re.search(rb"UID (\d+)", x))]
            assert got == [left[0], left[499], left[-1]], c.text()[-2000:]
            _, t = c.cmd(f"FETCH {len(left) + 1} (UID)")
            assert status_of(t) == "BAD", c.text()[-2000:]


# ---- 9. SEARCH BODY does not stall the worker ---------------------------------------------

def unread(sock):
    """Has the server sent something this side has not read yet? (Never waits: a socket
    with a timeout waits for data even for MSG_DONTWAIT.)"""
    return bool(select.select([sock], [], [], 0)[0])


def test_search_body_lets_other_sessions_run(tern_factory):
    """A SEARCH BODY over 2,000 messages of 24 KB (structures not cached yet) reads them a
    slice per event-loop turn: another session of the same worker (one worker) is answered
    meanwhile, the searching session's next command waits for the answer, and the answer
    gathers hits from every slice."""
    inst = tern_factory(settings=LOOPBACK_OK, workers=1)
    deliver(inst)
    n = 2000
    needle = {5, 250, 1999}
    filler = ("lorem ipsum dolor sit amet " * 30 + "\r\n") * 30
    drop_messages(inst, n - 1, body=lambda i: filler + (
        "the hidden needle word\r\n" if i + 2 in needle else "nothing here\r\n"))
    with raw_login(inst, timeout=300) as a, raw_login(inst, timeout=300) as b:
        a.ok("SELECT INBOX", timeout=300)
        b.ok("SELECT INBOX", timeout=300)
        a.send("s1 SEARCH BODY needle\r\ns2 NOOP\r\n")
        time.sleep(0.05)
        b.ok("NOOP", timeout=300)
        # b was answered while a's SEARCH was still reading: nothing of its answer yet
        assert a.buf == b"" and not unread(a.sock), a.text()
        u, t = a.read_response("s1", timeout=300)
        assert status_of(t) == "OK" and u == [b"* SEARCH 5 250 1999"], a.text()
        _, t = a.read_response("s2")                  # the pipelined command after it
        assert status_of(t) == "OK", a.text()
        # a client that goes away in the middle of a SEARCH: the job ends with the session
        gone = raw_login(inst, timeout=300)
        gone.ok("SELECT INBOX", timeout=300)
        gone.send("g1 SEARCH BODY nothing-like-this\r\n")
        time.sleep(0.05)
        gone.close()
        b.ok("NOOP")
        # the same once the structures are cached, and with the index alone (one go)
        assert a.ok("UID SEARCH TEXT needle", timeout=300) == [b"* SEARCH 5 250 1999"]
        assert a.ok("SEARCH RETURN (COUNT) UID 1:*") == [b'* ESEARCH (TAG "t4") COUNT 2000']
    # the server log has no sanitizer report (checked at teardown) and the worker lived on
    with raw_login(inst) as c:
        c.ok("EXAMINE INBOX")
