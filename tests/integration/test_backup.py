"""`tern backup DIR` of a running server under mail traffic, restored into a fresh data dir
(docs/operations.md, "Backing up", "Restoring").

Before the backup: mail for bob (some of it moved to a folder, some flagged \\Seen, some
expunged) and for alice. While `tern backup` runs, two SMTP clients keep delivering and an
IMAP client keeps expunging a set of bob's messages meant to go. The copy (`cp -a`, as the
restore procedure says) becomes the data dir of a new instance, which must start, serve every
message acknowledged before the backup began, whole (IMAP for bob's INBOX and folder, POP3
for alice), with the flags it had, never a message expunged before the backup, no message
twice, and take new mail.
"""
import imaplib
import os
import poplib
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import tern_harness as th

BOB = "bob@example.test"
ALICE = "alice@example.test"


def imap(inst, user=BOB):
    c = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    c.login(user, th.USERS[user])
    return c


def send(inst, tok, to):
    with inst.smtp() as s:
        s.sendmail("sender@example.net", [to], th.make_message(tok, to=to))


def uid_of(c, tok):
    typ, data = c.uid("SEARCH", None, "HEADER", "Message-ID", f"<{tok}@")
    assert typ == "OK", data
    uids = data[0].split()
    return uids


def tokens_in(c, mailbox):
    """{token: (flags, whole message bytes)} of a mailbox, over IMAP."""
    typ, data = c.select(f'"{mailbox}"', readonly=True)
    assert typ == "OK", (mailbox, data)
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        meta, body = item
        m = re.search(rb"Message-ID: <([0-9a-f]+)@", body)
        assert m, body[:300]
        tok = m.group(1).decode()
        assert tok not in out, f"{tok} twice in {mailbox}"
        out[tok] = (re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode(), body)
    return out


class Traffic:
    """SMTP senders and an IMAP expunger running until stop(); records what was acknowledged
    (with the time) and what was expunged"""

    def __init__(self, inst, doomed):
        self.inst, self.doomed = inst, list(doomed)
        self.acked = []         # (time acknowledged, token, recipient)
        self.expunged = []
        self.errors = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.sender, args=(to,))
                        for to in (BOB, ALICE)]
        self.threads.append(threading.Thread(target=self.expunger))

    def sender(self, to):
        try:
            while not self.stopping.is_set():
                tok = th.token()
                send(self.inst, tok, to)
                self.acked.append((time.monotonic(), tok, to))
        except Exception as e:  # reported by stop()
            self.errors.append(e)

    def expunger(self):
        try:
            c = imap(self.inst)
            c.select("INBOX")
            for tok in self.doomed:
                if self.stopping.is_set():
                    break
                uids = uid_of(c, tok)
                c.uid("STORE", b",".join(uids), "+FLAGS.SILENT", r"(\Deleted)")
                c.expunge()
                self.expunged.append((time.monotonic(), tok))
            c.logout()
        except Exception as e:
            self.errors.append(e)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(th.scaled(60))
        assert not self.errors, self.errors


def test_backup_under_traffic_restores(tern_factory, tmp_path):
    inst = tern_factory()
    # before the backup: 40 for bob, 10 for alice
    bob = [th.token() for _ in range(40)]
    alice = [th.token() for _ in range(10)]
    for tok in bob:
        send(inst, tok, BOB)
    for tok in alice:
        send(inst, tok, ALICE)
    inst.wait_message(BOB, bob[-1])
    inst.wait_message(ALICE, alice[-1])
    c = imap(inst)
    c.create("Archive")
    c.select("INBOX")
    for tok in bob[:5]:                     # moved to a folder
        u = uid_of(c, tok)[0]
        assert c.uid("COPY", u, "Archive")[0] == "OK"
        c.uid("STORE", u, "+FLAGS.SILENT", r"(\Deleted)")
    for tok in bob[5:8]:                    # expunged before the backup: must stay away
        c.uid("STORE", uid_of(c, tok)[0], "+FLAGS.SILENT", r"(\Deleted)")
    c.expunge()
    for tok in bob[8:16]:                   # read: \Seen must survive
        c.uid("STORE", uid_of(c, tok)[0], "+FLAGS.SILENT", r"(\Seen)")
    c.logout()
    doomed = bob[30:40]                     # expunged while the backup runs
    moved, gone, seen = bob[:5], bob[5:8], bob[8:16]

    traffic = Traffic(inst, doomed)
    traffic.start()
    while len(traffic.acked) < 10:          # traffic is flowing
        assert not traffic.errors, traffic.errors
        time.sleep(0.01)
    # the data dir's owner (the CLI becomes it) must be able to reach the backup directory
    outer = Path(tempfile.mkdtemp(prefix="tern-backup-", dir="/tmp"))
    os.chmod(outer, 0o755)
    inst.owned_dirs.append(outer)
    dest = outer / "backup"
    started = time.monotonic()
    r = inst.cli("backup", str(dest))
    finished = time.monotonic()
    while len([a for a in traffic.acked if a[0] > finished]) < 4:   # and goes on after
        assert not traffic.errors, traffic.errors
        time.sleep(0.01)
    traffic.stop()
    assert r.returncode == 0, r
    assert re.match(r"backup: .*: tern\.db, \d+ queued message\(s\), 2 account\(s\), \d+ file",
                    r.stdout), r.stdout
    print(r.stdout.strip(), f"({finished - started:.2f} s)")
    acked_before = [(tok, to) for t, tok, to in traffic.acked if t < started]
    expunged_before = {tok for t, tok in traffic.expunged if t < started}
    assert acked_before, "no traffic before the backup"

    # restore, as docs/operations.md says: the copy (owner kept) becomes a new data dir
    inst.stop()
    base = Path(tempfile.mkdtemp(prefix="tern-restore-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        data = base / "data"
        subprocess.run(["cp", "-a", str(dest), str(data)], check=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", f"{inst.user}:", str(data)], check=True)
        os.chmod(data, 0o700)
        new = tern_factory(provision=False, data_dir=str(data))
        c = imap(new)
        inbox = tokens_in(c, "INBOX")
        archive = tokens_in(c, "Archive")
        c.logout()
        want_inbox = set(bob[8:30]) | {tok for tok, to in acked_before if to == BOB}
        want_inbox -= expunged_before
        missing = want_inbox - set(inbox)
        assert not missing, f"{len(missing)} acknowledged message(s) lost: {sorted(missing)[:5]}"
        assert set(moved) <= set(archive) and not set(moved) & set(inbox)
        assert not set(gone) & (set(inbox) | set(archive)), "an expunged message came back"
        for tok in seen:
            assert "\\Seen" in inbox[tok][0], f"{tok}: flags {inbox[tok][0]!r}"
        for tok, (flags, body) in list(inbox.items()) + list(archive.items()):
            assert body.endswith(f"Hello, this is message {tok}.\r\nSecond line.\r\n".encode()), \
                f"{tok}: not whole"
        pop = poplib.POP3_SSL("127.0.0.1", new.ports["pop3s"], context=th.tls_context(),
                              timeout=th.IO_TIMEOUT)
        try:
            pop.user(ALICE)
            pop.pass_(th.USERS[ALICE])
            count, _ = pop.stat()
            got = set()
            for i in range(1, count + 1):
                body = b"\r\n".join(pop.retr(i)[1])
                got.add(re.search(rb"Message-ID: <([0-9a-f]+)@", body).group(1).decode())
        finally:
            pop.quit()
        want_alice = set(alice) | {tok for tok, to in acked_before if to == ALICE}
        assert want_alice <= got, f"lost for alice: {sorted(want_alice - got)[:5]}"
        assert len(got) == count, "a message twice in alice's mailbox"
        # and the restored server takes new mail
        tok = th.token()
        send(new, tok, BOB)
        new.wait_message(BOB, tok)
        new.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_backup_refuses_a_non_empty_dir(tern_factory, tmp_path):
    inst = tern_factory(start=False)
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "something").write_text("x")
    r = inst.cli("backup", str(dest))
    assert r.returncode == 1 and "is not empty" in r.stderr, r
    r = inst.cli("backup")
    assert r.returncode == 64, r
