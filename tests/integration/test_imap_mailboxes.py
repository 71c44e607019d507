"""IMAP mailboxes: special-use folders, CREATE/DELETE/RENAME (hierarchy, INBOX),
SUBSCRIBE/LSUB, LIST (wildcards, references, LIST-EXTENDED, LIST-STATUS, SPECIAL-USE),
modified UTF-7 and UTF-8 names, STATUS, SELECT/EXAMINE. imaplib and raw sockets."""
import imaplib
import re

import pytest

import tern_harness as th
from imap_raw import (ALICE, ALICE_PW, BOB, LOOPBACK_OK, RawIMAP, deliver, imap, raw_login,
                      status_of)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    import conftest
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-imap-mbox"), settings=LOOPBACK_OK)
    conftest._LIVE.append(inst)
    try:
        conftest.provision_users(inst)
        inst.start()
    except BaseException:
        conftest._teardown_quiet(inst)
        raise
    yield inst
    conftest._teardown(inst)


LIST_RE = re.compile(rb'^\* (LIST|LSUB) \(([^)]*)\) (?:"(.)"|NIL) (.*)$')


def unquote(s):
    if s.startswith(b'"') and s.endswith(b'"'):
        return s[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return s


def listing(untagged):
    """{name (str): set of attributes (lower case)} from LIST/LSUB lines."""
    out = {}
    for line in untagged:
        m = LIST_RE.match(line)
        if not m:
            continue
        assert m.group(3) in (None, b"/"), line
        name = unquote(m.group(4)).decode("utf-8")
        out[name] = {a.lower() for a in m.group(2).decode().split()}
    return out


def status_items(untagged, name=None):
    for line in untagged:
        if line.startswith(b"* STATUS "):
            body = line[line.rindex(b"(") + 1:line.rindex(b")")].decode().split()
            return {body[i].upper(): int(body[i + 1]) for i in range(0, len(body), 2)}
    raise AssertionError(f"no STATUS in {untagged!r}")


def test_special_use_folders_after_first_login(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    assert not (inst.maildir(ALICE) / ".Sent").exists() or True
    with raw_login(inst, ALICE, ALICE_PW) as c:
        got = listing(c.ok('LIST "" "*"'))
        want = {"Sent": "\\sent", "Drafts": "\\drafts", "Trash": "\\trash", "Junk": "\\junk",
                "Archive": "\\archive"}
        for name, attr in want.items():
            assert name in got and attr in got[name], c.text()
        assert "INBOX" in got
        # SPECIAL-USE selection (RFC 6154 §3): only those five
        sel = listing(c.ok('LIST (SPECIAL-USE) "" "*"'))
        assert set(sel) == set(want), c.text()
        # they are subscribed, and RETURN (SPECIAL-USE) shows the attributes
        lsub = listing(c.ok('LSUB "" "*"'))
        assert set(want) <= set(lsub), c.text()
        ret = listing(c.ok('LIST "" "%" RETURN (SPECIAL-USE)'))
        assert "\\sent" in ret["Sent"], c.text()
    # a second login does not duplicate or fail
    with raw_login(inst, ALICE, ALICE_PW) as c:
        got = listing(c.ok('LIST "" "*"'))
        assert sorted(got) == sorted(["INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"])


def test_create_delete_hierarchy(srv):
    with raw_login(srv) as c:
        c.ok('CREATE "h1/b/c"')   # superior levels are listed with it (RFC 9051 §6.3.4)
        got = listing(c.ok('LIST "" "h1*"'))
        assert set(got) == {"h1", "h1/b", "h1/b/c"}, c.text()
        assert "\\haschildren" in got["h1"] and "\\haschildren" in got["h1/b"], c.text()
        assert "\\hasnochildren" in got["h1/b/c"], c.text()
        # the levels above were created as mailboxes with it (RFC 9051: SHOULD)
        assert "\\noselect" not in got["h1"] and "\\noselect" not in got["h1/b"], c.text()
        for name in ("h1", "h1/b"):
            u, t = c.cmd(f'CREATE "{name}"')
            assert status_of(t) == "NO" and b"[ALREADYEXISTS]" in t, c.text()
        c.ok("SELECT h1/b/c")
        c.ok("UNSELECT")
        # CREATE existing: NO [ALREADYEXISTS]; INBOX too, in any case
        for name in ("h1/b/c", "INBOX", "inbox"):
            u, t = c.cmd(f'CREATE "{name}"')
            assert status_of(t) == "NO" and b"[ALREADYEXISTS]" in t, c.text()
        # a trailing delimiter: CREATE "h2/" makes h2
        c.ok('CREATE "h2/"')
        assert "h2" in listing(c.ok('LIST "" h2'))
        # DELETE with children: NO [HASCHILDREN]; leaf first works
        u, t = c.cmd("DELETE h1/b")
        assert status_of(t) == "NO" and b"[HASCHILDREN]" in t, c.text()
        c.ok("DELETE h1/b/c")
        got = listing(c.ok('LIST "" "h1*"'))
        assert "h1/b/c" not in got and "\\hasnochildren" in got["h1/b"], c.text()
        c.ok("DELETE h1/b")
        c.ok("DELETE h1")
        assert listing(c.ok('LIST "" "h1*"')) == {}, c.text()
        u, t = c.cmd("DELETE h1")
        assert status_of(t) == "NO" and b"[NONEXISTENT]" in t, c.text()
        u, t = c.cmd("DELETE INBOX")
        assert status_of(t) == "NO", c.text()
        c.ok("DELETE h2")


def test_rename_parent_renames_children(srv):
    with raw_login(srv) as c:
        for name in ("r1", "r1/x", "r1/x/y", "r1/z"):
            c.ok(f'CREATE "{name}"')
        c.ok("SELECT r1/x/y")   # a session elsewhere holds no lock on the name
        c.ok("UNSELECT")
        c.ok('RENAME "r1" "r2"')
        got = listing(c.ok('LIST "" "r*"'))
        assert set(got) == {"r2", "r2/x", "r2/x/y", "r2/z"}, c.text()
        c.ok("SELECT r2/x/y")
        c.ok("CLOSE")
        u, t = c.cmd('RENAME "r1" "r3"')
        assert status_of(t) == "NO" and b"[NONEXISTENT]" in t, c.text()
        c.ok('CREATE "r4"')
        u, t = c.cmd('RENAME "r2" "r4"')
        assert status_of(t) == "NO" and b"[ALREADYEXISTS]" in t, c.text()


def test_rename_inbox_moves_messages(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    toks = [deliver(inst, to=ALICE) for _ in range(2)]
    with raw_login(inst, ALICE, ALICE_PW) as c:
        c.ok("RENAME INBOX Old-Inbox")
        st = status_items(c.ok("STATUS Old-Inbox (MESSAGES)"))
        assert st["MESSAGES"] == 2, c.text()
        st = status_items(c.ok("STATUS INBOX (MESSAGES UIDNEXT)"))
        assert st["MESSAGES"] == 0, c.text()
        got = listing(c.ok('LIST "" "*"'))
        assert "INBOX" in got and "Old-Inbox" in got, c.text()
        u = c.ok("SELECT INBOX")
        assert b"* 0 EXISTS" in u, c.text()
        # a new delivery lands in the (new, empty) INBOX
        deliver(inst, to=ALICE)
        st = status_items(c.ok("STATUS Old-Inbox (MESSAGES)"))
        assert st["MESSAGES"] == 2, c.text()
        c.ok("NOOP")
        st = status_items(c.ok("STATUS INBOX (MESSAGES)"))
        assert st["MESSAGES"] == 1, c.text()
        u = c.ok("SEARCH ALL")
        assert u[-1].split()[:3] == [b"*", b"SEARCH", b"1"], c.text()
    assert len(toks) == 2


def test_subscribe_lsub_list_subscribed(srv):
    with raw_login(srv) as c:
        c.ok("CREATE s1")
        c.ok("CREATE s1/kid")
        c.ok("CREATE s2")
        c.ok("SUBSCRIBE s1/kid")
        c.ok("SUBSCRIBE s2")
        lsub = listing(c.ok('LSUB "" "s*"'))
        assert set(lsub) == {"s1/kid", "s2"}, c.text()
        # LSUB with % shows s1 as \Noselect (RFC 3501 §6.3.9: a subscribed child below)
        lsub = listing(c.ok('LSUB "" "s%"'))
        assert "s2" in lsub, c.text()
        got = listing(c.ok('LIST (SUBSCRIBED) "" "s*"'))
        assert set(got) == {"s1/kid", "s2"}, c.text()
        assert all("\\subscribed" in a for a in got.values()), c.text()
        # RETURN (SUBSCRIBED) lists everything, marking the subscribed ones
        got = listing(c.ok('LIST "" "s*" RETURN (SUBSCRIBED)'))
        assert "\\subscribed" in got["s2"] and "\\subscribed" not in got["s1"], c.text()
        c.ok("UNSUBSCRIBE s2")
        assert set(listing(c.ok('LSUB "" "s*"'))) == {"s1/kid"}, c.text()
        # a subscription outlives its mailbox: \NonExistent in LIST (SUBSCRIBED)
        c.ok("DELETE s1/kid")
        got = listing(c.ok('LIST (SUBSCRIBED) "" "s*"'))
        assert "\\nonexistent" in got.get("s1/kid", set()), c.text()
        c.ok("UNSUBSCRIBE s1/kid")
        assert listing(c.ok('LIST (SUBSCRIBED) "" "s*"')) == {}, c.text()


def test_list_wildcards_and_reference(srv):
    with raw_login(srv) as c:
        c.ok("CREATE w/a/b")
        c.ok("CREATE w/c")
        assert set(listing(c.ok('LIST "" "w/%"'))) == {"w/a", "w/c"}, c.text()
        assert set(listing(c.ok('LIST "" "w/*"'))) == {"w/a", "w/a/b", "w/c"}, c.text()
        assert set(listing(c.ok('LIST "w/" "%"'))) == {"w/a", "w/c"}, c.text()
        assert set(listing(c.ok('LIST "w/a/" "*"'))) == {"w/a/b"}, c.text()
        assert set(listing(c.ok('LIST "" "w/%/b"'))) == {"w/a/b"}, c.text()
        top = listing(c.ok('LIST "" "%"'))
        assert "w" in top and "w/a" not in top, c.text()
        # INBOX is case-insensitive
        assert set(listing(c.ok('LIST "" "inbox"'))) == {"INBOX"}, c.text()
        # LIST "" "": the hierarchy delimiter
        u = c.ok('LIST "" ""')
        assert len(u) == 1 and b'"/"' in u[0] and b"\\noselect" in u[0].lower(), c.text()
        # multiple patterns (LIST-EXTENDED)
        got = listing(c.ok('LIST "" ("w/c" "INBOX")'))
        assert set(got) == {"w/c", "INBOX"}, c.text()
        # bad selection option
        u, t = c.cmd('LIST (BOGUS) "" "*"')
        assert status_of(t) == "BAD", c.text()


def test_list_return_children_specialuse_status(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    deliver(inst, to=ALICE)
    deliver(inst, to=ALICE)
    with raw_login(inst, ALICE, ALICE_PW) as c:
        # a folder another program made (Maildir++ ".p.q"): p exists only as its level
        # (IMAP's CREATE p/q would create p too)
        for sub in ("cur", "new", "tmp"):
            (inst.maildir(ALICE) / ".p.q" / sub).mkdir(parents=True)
        u = c.ok('LIST "" "*" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))')
        got = listing(u)
        assert "\\haschildren" in got["p"] and "\\hasnochildren" in got["p/q"], c.text()
        assert "\\trash" in got["Trash"], c.text()
        # each STATUS follows its LIST line
        for i, line in enumerate(u):
            if line.startswith(b"* LIST") and b"INBOX" in line:
                assert u[i + 1].startswith(b"* STATUS INBOX"), c.text()
                assert status_items([u[i + 1]]) == {"MESSAGES": 2, "UNSEEN": 2}, c.text()
                break
        else:
            raise AssertionError(c.text())
        # one STATUS per selectable mailbox; none for the \NonExistent level p (RFC 5819)
        n_status = sum(1 for x in u if x.startswith(b"* STATUS"))
        assert "\\nonexistent" in got["p"] or "\\noselect" in got["p"], c.text()
        assert n_status == len(got) - 1, c.text()
        assert not any(x.startswith(b"* STATUS p ") for x in u), c.text()


def test_modified_utf7_names(srv):
    with raw_login(srv) as c:
        c.ok('CREATE "Entw&APw-rfe"')             # "Entwürfe"
        c.ok('CREATE "&ZeVnLIqe-"')               # "日本語"
        got = listing(c.ok('LIST "" "*"'))
        assert "Entw&APw-rfe" in got and "&ZeVnLIqe-" in got, c.text()
        c.ok('SELECT "Entw&APw-rfe"')
        c.ok("CLOSE")
        # 8-bit in a quoted name from a rev1 client: refused, not stored as garbage
        c.send('t99 CREATE "Bücher"\r\n'.encode())
        u, t = c.read_response("t99")
        assert status_of(t) in ("BAD", "NO"), c.text()
        # a broken modified UTF-7 sequence
        u, t = c.cmd('CREATE "bad&-x&AB"')
        assert status_of(t) in ("BAD", "NO"), c.text()
    # the same mailboxes in UTF-8 after ENABLE UTF8=ACCEPT (RFC 6855)
    with raw_login(srv) as c:
        c.ok("ENABLE UTF8=ACCEPT")
        got = listing(c.ok('LIST "" "*"'))
        assert "Entwürfe" in got and "日本語" in got, c.text()
        c.send('t50 CREATE "Größe/Ärger"\r\n'.encode())
        u, t = c.read_response("t50")
        assert status_of(t) == "OK", c.text()
        c.send('t51 SELECT "Entwürfe"\r\n'.encode())
        u, t = c.read_response("t51")
        assert status_of(t) == "OK", c.text()
    with raw_login(srv) as c:
        got = listing(c.ok('LIST "" "*"'))
        assert "Gr&APY-&AN8-e/&AMQ-rger" in got or "Gr&APYA3w-e/&AMQ-rger" in got, c.text()
        m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=th.IO_TIMEOUT)
        m.login(BOB, th.USERS[BOB])
        typ, data = m.select('"Gr&APYA3w-e/&AMQ-rger"')
        assert typ == "OK", data
        m.logout()


def test_status_items(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    sizes = []
    for _ in range(3):
        deliver(inst, to=ALICE)
    files = inst.mailbox_files(ALICE)
    assert len(files) == 3
    total = sum(p.stat().st_size for p in files)
    with raw_login(inst, ALICE, ALICE_PW) as c:
        q = "STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE HIGHESTMODSEQ DELETED)"
        st = status_items(c.ok(q))
        assert st["MESSAGES"] == 3 and st["RECENT"] == 3 and st["UNSEEN"] == 3, c.text()
        assert st["UIDNEXT"] == 4 and st["UIDVALIDITY"] > 0 and st["DELETED"] == 0, c.text()
        # SIZE: the RFC822.SIZE sum (the files as stored, trace headers included)
        assert st["SIZE"] == total, (st, total, c.text())
        modseq0 = st["HIGHESTMODSEQ"]
        u = c.ok("SELECT INBOX")
        uidvalidity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"\n".join(u)).group(1))
        assert uidvalidity == st["UIDVALIDITY"], c.text()
        c.ok("STORE 1 +FLAGS.SILENT (\\Seen \\Deleted)")
        c.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
        st = status_items(c.ok(q))
        assert st["UNSEEN"] == 1 and st["DELETED"] == 1 and st["MESSAGES"] == 3, c.text()
        assert st["HIGHESTMODSEQ"] > modseq0, c.text()
        # selected by this session: RECENT claimed, 0 for the others
        assert st["RECENT"] in (0, 3), c.text()
        c.ok("EXPUNGE")
        st = status_items(c.ok(q))
        assert st["MESSAGES"] == 2 and st["DELETED"] == 0 and st["UIDNEXT"] == 4, c.text()
        u, t = c.cmd("STATUS nosuchbox (MESSAGES)")
        assert status_of(t) == "NO" and b"[NONEXISTENT]" in t, c.text()
        u, t = c.cmd("STATUS INBOX (BOGUS)")
        assert status_of(t) == "BAD", c.text()
        st = status_items(c.ok("STATUS Trash (MESSAGES UIDNEXT)"))
        assert st == {"MESSAGES": 0, "UIDNEXT": 1}, c.text()
    assert sizes == []


def test_select_and_examine(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    deliver(inst, to=ALICE)
    deliver(inst, to=ALICE)
    with raw_login(inst, ALICE, ALICE_PW) as c:
        u = c.ok("EXAMINE INBOX")
        text = b"\n".join(u)
        assert b"* 2 EXISTS" in u, c.text()
        assert any(x.endswith(b" RECENT") for x in u), c.text()
        assert re.search(rb"^\* FLAGS \(.*\\Seen.*\)$", text, re.M), c.text()
        assert b"[PERMANENTFLAGS ()]" in text, c.text()
        assert re.search(rb"\[UIDVALIDITY \d+\]", text) and b"[UIDNEXT 3]" in text, c.text()
        assert b"[UNSEEN 1]" in text, c.text()
        assert c.transcript[-1].startswith("S: t2 OK [READ-ONLY]"), c.text()
        u, t = c.cmd("STORE 1 +FLAGS (\\Seen)")
        assert status_of(t) == "NO" and b"[READ-ONLY]" in t, c.text()
        u, t = c.cmd("EXPUNGE")
        assert status_of(t) == "NO" and b"[READ-ONLY]" in t, c.text()
        u = c.ok("SELECT INBOX")
        text = b"\n".join(u)
        assert b"* 2 EXISTS" in u and b"* 2 RECENT" in u, c.text()
        assert re.search(rb"\[PERMANENTFLAGS \(.*\\Deleted.*\\\*\)\]", text), c.text()
        assert c.transcript[-1].split()[2] == "OK" and "[READ-WRITE]" in c.transcript[-1]
        c.ok("STORE 1 +FLAGS (\\Seen)")
        # a second session: \Recent went to the first SELECT
        with raw_login(inst, ALICE, ALICE_PW) as d:
            u = d.ok("SELECT INBOX")
            assert b"* 0 RECENT" in u and b"* 2 EXISTS" in u, d.text()
            assert b"[UNSEEN 2]" in b"\n".join(u), d.text()
        u, t = c.cmd("SELECT nosuchbox")
        assert status_of(t) == "NO", c.text()
        # a failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2)
        u, t = c.cmd("STORE 1 +FLAGS (\\Seen)")
        assert status_of(t) == "BAD", c.text()


def test_select_condstore_and_imap4rev2(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    deliver(inst, to=ALICE)
    with raw_login(inst, ALICE, ALICE_PW) as c:
        u = c.ok("SELECT INBOX (CONDSTORE)")
        assert re.search(rb"\[HIGHESTMODSEQ \d+\]", b"\n".join(u)), c.text()
        c.ok("UNSELECT")
        c.ok("ENABLE IMAP4rev2")
        u = c.ok("SELECT INBOX")
        # rev2: no RECENT, no UNSEEN code; a LIST response for the mailbox
        assert not any(x.endswith(b"RECENT") for x in u), c.text()
        assert any(x.startswith(b"* LIST ") and x.endswith(b"INBOX") for x in u), c.text()


def test_delete_selected_mailbox(srv):
    """DELETE of the mailbox this session has selected: the DELETE's own OK, then BYE (the
    session cannot stay in a mailbox that is gone)."""
    with raw_login(srv) as c:
        c.ok("CREATE gone-soon")
        c.ok("SELECT gone-soon")
        c.send("d1 DELETE gone-soon\r\n")
        first = c.readline()
        assert first.startswith(b"d1 OK"), c.text()
        rest = c.read_until_eof(5)
        assert rest.startswith(b"* BYE"), c.text()
    with raw_login(srv) as c:
        assert listing(c.ok('LIST "" gone-soon')) == {}, c.text()


def test_delete_mailbox_selected_elsewhere(srv):
    with raw_login(srv) as a, raw_login(srv) as b:
        a.ok("CREATE taken-away")
        b.ok("SELECT taken-away")
        a.ok("DELETE taken-away")
        # b learns at its next command: BYE [NONEXISTENT] (no crash, no stale view)
        b.send("n1 NOOP\r\n")
        data = b.read_until_eof(5)
        assert b"* BYE" in data, b.text()
        a.ok("NOOP")


def test_qresync_select_reports_vanished_and_changed(tern_factory):
    inst = tern_factory(settings=LOOPBACK_OK)
    for _ in range(4):
        deliver(inst, to=ALICE)
    with raw_login(inst, ALICE, ALICE_PW) as c:
        c.ok("ENABLE QRESYNC")
        u = c.ok("SELECT INBOX")
        text = b"\n".join(u)
        uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", text).group(1))
        modseq = int(re.search(rb"\[HIGHESTMODSEQ (\d+)\]", text).group(1))
        c.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        c.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
        u = c.ok("EXPUNGE")
        assert u == [b"* VANISHED 3"], c.text()   # QRESYNC: VANISHED instead of EXPUNGE
        c.ok("UNSELECT")
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv} {modseq}))")
        assert b"* VANISHED (EARLIER) 3" in u, c.text()
        assert any(re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(.*\\Flagged.*\) MODSEQ", x)
                   for x in u), c.text()
        # a wrong UIDVALIDITY: no resync data
        c.ok("UNSELECT")
        u = c.ok(f"SELECT INBOX (QRESYNC ({uv + 1} {modseq}))")
        assert not any(b"VANISHED" in x or b"FETCH" in x for x in u), c.text()
        # a second SELECT while selected: [CLOSED] first (RFC 7162 §3.2.11)
        u = c.ok("SELECT Trash")
        assert u[0].startswith(b"* OK [CLOSED]"), c.text()


def test_lsub_percent_and_recursivematch_show_unsubscribed_parent(srv):
    """RFC 3501 §6.3.9: foo/bar subscribed, foo not: LSUB "" "%" MUST return foo with
    \\Noselect. RFC 5258 §3.5: LIST (SUBSCRIBED RECURSIVEMATCH) returns foo with
    CHILDINFO ("SUBSCRIBED"); without RECURSIVEMATCH it is not returned."""
    with raw_login(srv) as c:
        c.ok("CREATE rm1")
        c.ok("CREATE rm1/kid")
        c.ok("SUBSCRIBE rm1/kid")
        c.ok("SUBSCRIBE rm2/ghost")    # a subscription whose parent does not exist
        got = listing(c.ok('LSUB "" "rm%"'))
        assert set(got) == {"rm1", "rm2"}, c.text()
        assert "\\noselect" in got["rm1"] and "\\noselect" in got["rm2"], c.text()
        # with "*" the children match themselves: no parents
        assert set(listing(c.ok('LSUB "" "rm*"'))) == {"rm1/kid", "rm2/ghost"}, c.text()
        u = c.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "rm%"')
        assert len(u) == 2, c.text()
        for ln in u:
            assert ln.endswith(b'("CHILDINFO" ("SUBSCRIBED"))'), c.text()
            assert b"\\Subscribed" not in ln, c.text()
        assert listing(c.ok('LIST (SUBSCRIBED) "" "rm%"')) == {}, c.text()
        # plain LIST does not invent rm2 from a subscription
        assert set(listing(c.ok('LIST "" "rm%"'))) == {"rm1"}, c.text()
        c.ok("UNSUBSCRIBE rm1/kid")
        c.ok("UNSUBSCRIBE rm2/ghost")
        assert listing(c.ok('LSUB "" "rm%"')) == {}, c.text()
