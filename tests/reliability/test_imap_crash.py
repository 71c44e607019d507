"""IMAP under SIGKILL: clients APPEND, STORE flags and EXPUNGE while the server is killed at
random moments (whole group, restarted; or one worker). Afterwards every APPEND that got OK is
there under the UID its APPENDUID named (UIDVALIDITY unchanged), every STORE that got OK is
kept, every EXPUNGE that got OK stays expunged. Unacknowledged operations are retried, so an
APPEND may leave a duplicate: counted and printed."""
import imaplib
import os
import random
import re
import threading
import time

import rely
from rely import th

BOB = "bob@example.test"
N_CLIENTS = int(os.environ.get("RELY_IMAP_CLIENTS", "3"))
N_APPENDS = int(os.environ.get("RELY_IMAP_APPENDS", "150"))   # per client

APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
FETCH_RE = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")
TOKEN_RE = re.compile(rb"X-Rely-Token: ([0-9a-f]+)", re.I)


class Failed(Exception):
    pass


class Client(threading.Thread):
    """One IMAP client. Its own messages only: APPEND a new one, now and then set or clear
    \\Flagged (and a keyword) on one of its earlier ones, now and then expunge one. Each
    operation is repeated (on a new connection if need be) until it gets OK."""

    def __init__(self, inst, rng, stats):
        super().__init__(daemon=True)
        self.inst, self.rng, self.stats = inst, rng, stats
        self.c = None
        self.error = None
        self.appended = {}          # uid -> token (APPEND acknowledged)
        self.flagged = {}           # uid -> last acknowledged \Flagged state
        self.expunged = set()       # uids whose EXPUNGE was acknowledged
        self.uidvalidities = set()
        self.tries = 0

    def conn(self):
        if self.c is None:
            c = imaplib.IMAP4("127.0.0.1", self.inst.ports["imap"], timeout=th.IO_TIMEOUT)
            try:
                c.login(BOB, th.USERS[BOB])
                typ, data = c.select("INBOX")
                if typ != "OK":
                    raise Failed(f"SELECT {data}")
            except BaseException:
                self.drop(c)
                raise
            self.c = c
        return self.c

    def drop(self, c=None):
        c = c or self.c
        self.c = None
        if c is not None:
            try:
                c.shutdown()
            except (imaplib.IMAP4.error, OSError):
                pass

    def until_ok(self, op):
        while True:
            if self.stats["stop"].is_set():
                raise Failed("the test stopped the load")
            self.tries += 1
            try:
                return op(self.conn())
            except (imaplib.IMAP4.error, OSError, EOFError, Failed) as e:
                with self.stats["lock"]:
                    self.stats["failures"] += 1
                    self.stats["last_error"] = repr(e)[:200]
                self.drop()
                time.sleep(0.05)

    def do_append(self, tok, data):
        def op(c):
            typ, resp = c.append("INBOX", None, None, data)
            if typ != "OK":
                raise Failed(f"APPEND {resp}")
            m = APPENDUID_RE.search(resp[-1] or b"")
            assert m, f"no APPENDUID in {resp}"
            return int(m.group(1)), int(m.group(2))
        uidvalidity, uid = self.until_ok(op)
        self.uidvalidities.add(uidvalidity)
        assert uid not in self.appended, f"UID {uid} given twice"
        self.appended[uid] = tok

    def do_store(self, uid, on):
        def op(c):
            typ, resp = c.uid("STORE", str(uid), "+FLAGS.SILENT" if on else "-FLAGS.SILENT",
                              r"(\Flagged $Rely)")
            if typ != "OK":
                raise Failed(f"STORE {resp}")
        self.until_ok(op)
        self.flagged[uid] = on

    def do_expunge(self, uid):
        def op(c):
            typ, resp = c.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            if typ != "OK":
                raise Failed(f"STORE \\Deleted {resp}")
            typ, resp = c.uid("EXPUNGE", str(uid))
            if typ != "OK":
                raise Failed(f"UID EXPUNGE {resp}")
        self.until_ok(op)
        self.expunged.add(uid)

    def run(self):
        try:
            for _ in range(N_APPENDS):
                tok = th.token()
                size = 90000 if self.rng.random() < 0.05 else self.rng.randrange(300, 4000)
                self.do_append(tok, rely.payload(tok, size, to=BOB, rng=self.rng))
                with self.stats["lock"]:
                    self.stats["appends"] += 1
                live = [u for u in self.appended if u not in self.expunged]
                if live and self.rng.random() < 0.4:
                    uid = self.rng.choice(live)
                    self.do_store(uid, not self.flagged.get(uid, False))
                    with self.stats["lock"]:
                        self.stats["stores"] += 1
                if len(live) > 3 and self.rng.random() < 0.2:
                    self.do_expunge(self.rng.choice(live))
                    with self.stats["lock"]:
                        self.stats["expunges"] += 1
        except BaseException as e:
            self.error = e
        finally:
            self.drop()


def final_state(inst):
    """{uid: (token, flags)} of INBOX, and its UIDVALIDITY."""
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    try:
        c.login(BOB, th.USERS[BOB])
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        typ, uv = c.response("UIDVALIDITY")
        uidvalidity = int(uv[0])
        typ, data = c.uid("FETCH", "1:*",
                          "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-Rely-Token)])")
        assert typ == "OK", data
        state = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            m = FETCH_RE.search(item[0])
            t = TOKEN_RE.search(item[1])
            assert m, item
            state[int(m.group(1))] = (t.group(1).decode() if t else None,
                                      m.group(2).decode().split())
        return state, uidvalidity
    finally:
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_imap_sigkill_append_store_expunge(tern_factory, capsys):
    seed = int(os.environ.get("RELY_SEED", str(time.time_ns() % 10**9)))
    rng = random.Random(seed)
    inst = tern_factory(workers=2, settings=dict(rely.BASE_SETTINGS))
    t0 = time.monotonic()
    stats = rely.new_stats(appends=0, stores=0, expunges=0)
    clients = [Client(inst, random.Random(rng.random()), stats) for _ in range(N_CLIENTS)]
    total = N_CLIENTS * N_APPENDS
    killer = rely.Killer(inst, rely.make_plan(rng, total, groups=5, workers=3, runners=0),
                         lambda: stats["appends"], rng)
    rely.run_load(clients, killer, stats)
    assert killer.counts["group"] >= 5, killer.counts
    # One more kill with nothing in flight, so that what was acknowledged last must come
    # back from disk too.
    killer.kill("group")

    state, uidvalidity = final_state(inst)
    seen_uv = set().union(*(c.uidvalidities for c in clients))
    assert seen_uv == {uidvalidity}, \
        f"UIDVALIDITY changed under the clients: APPENDUID gave {seen_uv}, now {uidvalidity}"
    lost, resurrected, flags_lost, wrong = [], [], [], []
    for c in clients:
        for uid, tok in c.appended.items():
            if uid in c.expunged:
                if uid in state:
                    resurrected.append(uid)
                continue
            if uid not in state:
                lost.append((uid, tok))
                continue
            if state[uid][0] != tok:
                wrong.append((uid, tok, state[uid][0]))
            if uid in c.flagged:
                has = "\\Flagged" in state[uid][1] and "$Rely" in state[uid][1]
                if has != c.flagged[uid]:
                    flags_lost.append((uid, c.flagged[uid], state[uid][1]))
    known = {uid for c in clients for uid in c.appended}
    extra = [uid for uid in state if uid not in known]
    per_token = {}
    for uid, (tok, _) in state.items():
        per_token.setdefault(tok, []).append(uid)
    duplicates = sum(len(v) - 1 for v in per_token.values())
    files = rely.scan_mailbox(inst, BOB)
    corrupt = [(tok, oks) for tok, oks in files.items() if not all(oks)]
    n_files = sum(len(v) for v in files.values())
    with capsys.disabled():
        print(f"\n[reliability imap] appends_ok={stats['appends']} stores_ok={stats['stores']} "
              f"expunges_ok={stats['expunges']} attempts={sum(c.tries for c in clients)} "
              f"failed_attempts={stats['failures']} kills={killer.counts} "
              f"messages_now={len(state)} files={n_files} duplicates={duplicates} "
              f"unacknowledged_extra={len(extra)} lost={len(lost)} "
              f"resurrected={len(resurrected)} flags_lost={len(flags_lost)} "
              f"corrupt={len(corrupt)} time={time.monotonic() - t0:.1f}s (RELY_SEED={seed})")
    assert not lost, f"acknowledged APPENDs missing: {lost[:10]}"
    assert not wrong, f"UIDs showing another message: {wrong[:10]}"
    assert not resurrected, f"acknowledged EXPUNGEs undone: {resurrected[:10]}"
    assert not flags_lost, f"acknowledged STOREs lost (uid, wanted, now): {flags_lost[:10]}"
    assert not corrupt, f"corrupt message files: {corrupt[:10]}"
    assert n_files == len(state), f"{n_files} files in the Maildir, {len(state)} in IMAP"
    # Only retried APPENDs may add messages nobody was told about: each one is a duplicate.
    tokens = {tok for c in clients for tok in c.appended.values()}
    assert all(state[u][0] in tokens for u in extra), \
        f"messages that no APPEND of the test sent: {extra[:10]}"
