"""A lost or corrupt index.db: with the server stopped, an account's index.db is deleted (or
overwritten with garbage); at the next start the index is rebuilt from the Maildir. IMAP
SELECT shows every message (INBOX and a folder) under a new UIDVALIDITY (RFC 3501 §2.3.1.1:
the UIDs could not be kept), whole; POP3 lists them too; and new mail is delivered."""
import imaplib
import os
import poplib

import pytest

import rely
from rely import th

BOB = "bob@example.test"
N_INBOX = 30
N_FOLDER = 8
EMPTY_FOLDERS = 12


def imap_login(inst):
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(BOB, th.USERS[BOB])
    return c


def uid_map(c, name):
    """{uid: token} of a mailbox."""
    typ, data = c.select(name, readonly=True)
    assert typ == "OK", (name, data)
    out = {}
    if int(data[0]):
        typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (X-Rely-Token)])")
        for item in data:
            if isinstance(item, tuple):
                uid = int(item[0].split(b"UID ")[1].split()[0])
                out[uid] = rely.check_copy(item[1] + b"\r\n")[0]
    return out


def all_uidvalidities(c):
    """{mailbox: UIDVALIDITY} of every mailbox (LIST, then STATUS)."""
    typ, data = c.list()
    assert typ == "OK", data
    out = {}
    for line in data:
        name = line.decode().rsplit(" ", 1)[1].strip('"')
        typ, st = c.status(f'"{name}"', "(UIDVALIDITY)")
        assert typ == "OK", st
        out[name] = int(st[0].decode().rsplit("UIDVALIDITY ", 1)[1].rstrip(")"))
    return out


def mailbox_state(c, name):
    """(uidvalidity, {token: body ok}) of a mailbox, read through IMAP."""
    typ, data = c.select(name, readonly=True)
    assert typ == "OK", (name, data)
    exists = int(data[0])
    uidvalidity = int(c.response("UIDVALIDITY")[1][0])
    toks = {}
    if exists:
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        for item in data:
            if isinstance(item, tuple):
                tok, ok = rely.check_copy(item[1])
                assert tok not in toks, f"{tok} shown twice in {name}"
                toks[tok] = ok
    assert len(toks) == exists, (name, exists, len(toks))
    return uidvalidity, toks


def pop3_tokens(inst):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=th.IO_TIMEOUT)
    try:
        p.user(BOB)
        p.pass_(th.USERS[BOB])
        n, _ = p.stat()
        toks = set()
        for i in range(1, n + 1):
            _, lines, _ = p.retr(i)
            tok, ok = rely.check_copy(b"\r\n".join(lines) + b"\r\n")
            assert ok, f"POP3 message {i} corrupt"
            toks.add(tok)
        return n, toks
    finally:
        p.quit()


@pytest.mark.parametrize("damage", ["deleted", "garbage", "garbage_keep_wal"])
def test_index_rebuilt_from_maildir(tern_factory, damage, capsys):
    inst = tern_factory(workers=1, settings=dict(rely.BASE_SETTINGS))
    inbox = []
    with inst.smtp() as s:
        for _ in range(N_INBOX):
            tok = th.token()
            s.sendmail("sender@example.net", [BOB], rely.payload(tok, 1200, to=BOB))
            inbox.append(tok)
    folder = []
    c = imap_login(inst)
    try:
        assert c.create("Archive2")[0] == "OK"
        # Folders made in a burst get UIDVALIDITYs ahead of the clock (each one above the
        # last): a rebuild seconds later must still not hand any of them its old value.
        for i in range(EMPTY_FOLDERS):
            assert c.create(f"Burst{i:02d}")[0] == "OK"
        for _ in range(N_FOLDER):
            tok = th.token()
            typ, data = c.append("Archive2", r"(\Seen)", None, rely.payload(tok, 900, to=BOB))
            assert typ == "OK", data
            folder.append(tok)
        uv_inbox, toks = mailbox_state(c, "INBOX")
        assert set(toks) == set(inbox)
        # Move half of INBOX from new/ to cur/ with flags, as a client's reading does.
        c.select("INBOX")
        assert c.store("1:10", "+FLAGS", r"(\Seen)")[0] == "OK"
        uv_folder, _ = mailbox_state(c, "Archive2")
        uids_before = uid_map(c, "INBOX")
        uvs_before = all_uidvalidities(c)
    finally:
        c.logout()
    inst.stop()

    idx = inst.maildir(BOB) / "index.db"
    assert idx.exists()
    if damage == "deleted":
        for suffix in ("", "-wal", "-shm"):
            p = idx.with_name("index.db" + suffix)
            if p.exists():
                p.unlink()
    else:
        size = max(idx.stat().st_size, 8192)
        idx.write_bytes(os.urandom(size))
        if damage == "garbage":
            for suffix in ("-wal", "-shm"):
                p = idx.with_name("index.db" + suffix)
                if p.exists():
                    p.unlink()

    inst.start()
    c = imap_login(inst)
    try:
        uv2_inbox, toks = mailbox_state(c, "INBOX")
        assert set(toks) == set(inbox), \
            f"INBOX after rebuild: missing {set(inbox) - set(toks)}, extra {set(toks) - set(inbox)}"
        assert all(toks.values()), "a message is corrupt after the rebuild"
        uv2_folder, ftoks = mailbox_state(c, "Archive2")
        assert set(ftoks) == set(folder), \
            f"Archive2 after rebuild: missing {set(folder) - set(ftoks)}"
        uids_after = uid_map(c, "INBOX")
        if damage == "garbage_keep_wal" and uv2_inbox == uv_inbox:
            # The WAL held every page the index needed: it was not rebuilt. Then the UIDs
            # must be the same ones (RFC 3501 §2.3.1.1).
            assert uids_after == uids_before, "UIDs changed under the same UIDVALIDITY"
            rebuilt = "no (the WAL had it all)"
        else:
            assert uv2_inbox != uv_inbox, "INBOX kept its UIDVALIDITY though it was rebuilt"
            assert uv2_folder != uv_folder, "Archive2 kept its UIDVALIDITY"
            # Every mailbox (the special-use ones made at the first login too, all in the
            # same second as the others) gets one it never had.
            uvs_after = all_uidvalidities(c)
            assert set(uvs_after) == set(uvs_before), (uvs_before, uvs_after)
            same = {n: v for n, v in uvs_after.items() if uvs_before[n] == v}
            assert not same, f"mailboxes that kept their UIDVALIDITY after the rebuild: " \
                f"{same} (before {uvs_before})"
            rebuilt = "yes"
        # \Seen lives in the Maildir file names too: it survives.
        c.select("INBOX", readonly=True)
        typ, data = c.search(None, "SEEN")
        seen = len(data[0].split())
    finally:
        c.logout()
    n, ptoks = pop3_tokens(inst)
    assert n == N_INBOX and ptoks == set(inbox)
    # New mail still arrives, into the rebuilt index.
    tok = th.token()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", [BOB], rely.payload(tok, 500, to=BOB))
    inst.wait_message(BOB, tok)
    c = imap_login(inst)
    try:
        _, toks = mailbox_state(c, "INBOX")
        assert tok in toks and len(toks) == N_INBOX + 1
    finally:
        c.logout()
    with capsys.disabled():
        print(f"\n[reliability index {damage}] inbox={len(inbox)} folder={len(folder)} "
              f"uidvalidity {uv_inbox}->{uv2_inbox} rebuilt={rebuilt} seen_kept={seen}/10")
