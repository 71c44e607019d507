"""SMTP under SIGKILL: concurrent senders push a few thousand messages (local recipients, and
remote ones that leave through the queue for a sink) while the master and its children are
killed at random moments and restarted. Every message that got a 250 must be in its mailbox
or at the remote, whole (its body checksum matches); duplicates are allowed and counted."""
import imaplib
import os
import random
import smtplib
import threading
import time

import rely
from rely import th

BOB = "bob@example.test"
ALICE = "alice@example.test"
LOCALS = (BOB, ALICE)
N_MESSAGES = int(os.environ.get("RELY_SMTP_MESSAGES", "2000"))
N_SENDERS = int(os.environ.get("RELY_SMTP_SENDERS", "8"))


class Msg:
    __slots__ = ("tok", "rcpts", "data", "acked", "tries")

    def __init__(self, tok, rcpts, data):
        self.tok, self.rcpts, self.data = tok, rcpts, data
        self.acked = False
        self.tries = 0


class Sender(threading.Thread):
    """Sends its messages one after the other, each until it is acknowledged: a failure
    (refused connection, dropped connection, 4xx) means "not acknowledged, send again"."""

    def __init__(self, inst, role, msgs, stats):
        super().__init__(daemon=True)
        self.inst, self.role, self.msgs, self.stats = inst, role, msgs, stats
        self.error = None

    def connect(self):
        if self.role == "submission":
            s = self.inst.smtp("submission")
            s.ehlo()
            s.login(ALICE, th.USERS[ALICE])
            return s
        return self.inst.smtp("smtp")

    def run(self):
        s = None
        try:
            for m in self.msgs:
                while not self.stats["stop"].is_set():
                    m.tries += 1
                    try:
                        if s is None:
                            s = self.connect()
                        refused = s.sendmail("sender@example.net" if self.role == "smtp"
                                             else ALICE, m.rcpts, m.data)
                        assert not refused, refused
                        m.acked = True
                        with self.stats["lock"]:
                            self.stats["acked"] += 1
                        break
                    except (smtplib.SMTPException, OSError) as e:
                        with self.stats["lock"]:
                            self.stats["failures"] += 1
                            self.stats["last_error"] = repr(e)
                        try:
                            if s is not None:
                                s.close()
                        except OSError:
                            pass
                        s = None
                        time.sleep(0.05)
        except BaseException as e:
            self.error = e
        finally:
            if s is not None:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass


def imap_count(inst, user):
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    try:
        c.login(user, th.USERS[user])
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK", data
        return int(data[0])
    finally:
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_smtp_sigkill_under_load(tern_factory, sink, capsys):
    seed = int(os.environ.get("RELY_SEED", str(time.time_ns() % 10**9)))
    rng = random.Random(seed)
    seed_note = f"RELY_SEED={seed}"
    inst = tern_factory(workers=2, settings=dict(rely.BASE_SETTINGS),
                        extra_config=rely.relay_config(sink))
    t0 = time.monotonic()
    # The load: half the senders on `smtp` (local recipients only, no relaying there), half
    # on `submission` with AUTH (local, remote, and both in one transaction).
    senders, msgs = [], []
    per = N_MESSAGES // N_SENDERS
    for i in range(N_SENDERS):
        role = "smtp" if i % 2 == 0 else "submission"
        mine = []
        for _ in range(per):
            tok = th.token()
            kind = rng.random() if role == "submission" else 0.0
            if kind < 0.5:
                rcpts = [rng.choice(LOCALS)]
            elif kind < 0.8:
                rcpts = [f"r{rng.randrange(50)}@{rely.REMOTE_DOMAIN}"]
            else:
                rcpts = [rng.choice(LOCALS), f"r{rng.randrange(50)}@{rely.REMOTE_DOMAIN}"]
            size = 70000 if rng.random() < 0.03 else rng.randrange(200, 6000)
            mine.append(Msg(tok, rcpts, rely.payload(tok, size, to=rcpts[0], rng=rng)))
        msgs.extend(mine)
        senders.append(Sender(inst, role, mine, None))
    stats = rely.new_stats(acked=0)
    for s in senders:
        s.stats = stats
    total = len(msgs)
    killer = rely.Killer(inst, rely.make_plan(rng, total, groups=6, masters=1, workers=2,
                                                  runners=2),
                         lambda: stats["acked"], rng)
    rely.run_load(senders, killer, stats)
    send_time = time.monotonic() - t0
    acked = [m for m in msgs if m.acked]
    assert len(acked) == total, f"{total - len(acked)} never acknowledged; {stats}"
    assert killer.counts["group"] >= 5, killer.counts

    # Remote mail leaves through the queue: wait until every acknowledged remote message has
    # arrived (the runner retries deferred mail after retry_min = 1 s).
    want_remote = {m.tok for m in acked if any(r.endswith("@" + rely.REMOTE_DOMAIN)
                                               for r in m.rcpts)}

    def remote_done():
        with sink.lock:
            return want_remote.issubset(sink.received.keys())
    try:
        rely.wait_until(remote_done, 120, "the queue to deliver every remote message")
    except AssertionError:
        with sink.lock:
            missing = sorted(want_remote - set(sink.received))
        raise AssertionError(f"{len(missing)} acknowledged remote messages never arrived "
                             f"(first: {missing[:5]}); queue:\n{inst.queue_list()[:3000]}")

    # Every acknowledged local copy is in its Maildir, whole; nothing anywhere is corrupt.
    lost, corrupt, dup_local = [], [], 0
    boxes = {addr: rely.scan_mailbox(inst, addr) for addr in LOCALS}
    for addr, found in boxes.items():
        for tok, oks in found.items():
            if not all(oks):
                corrupt.append((addr, tok, oks))
    for m in acked:
        for r in m.rcpts:
            if r in LOCALS:
                oks = boxes[r].get(m.tok, [])
                if not any(oks):
                    lost.append((r, m.tok))
                dup_local += max(0, len(oks) - 1)
    with sink.lock:
        for tok, oks in sink.received.items():
            if not all(oks):
                corrupt.append(("sink", tok, oks))
        dup_remote = sum(len(v) - 1 for v in sink.received.values())
    # The index agrees with the files: IMAP shows every message of the Maildir.
    for addr in LOCALS:
        files = sum(len(v) for v in boxes[addr].values())
        assert imap_count(inst, addr) == files, f"IMAP EXISTS differs from the files of {addr}"
    elapsed = time.monotonic() - t0
    with capsys.disabled():
        print(f"\n[reliability smtp] messages={total} acknowledged={len(acked)} "
              f"attempts={sum(m.tries for m in msgs)} failed_attempts={stats['failures']} "
              f"kills={killer.counts} local_copies={sum(len(v) for b in boxes.values() for v in b.values())} "
              f"remote_copies={sink.total()} duplicates_local={dup_local} "
              f"duplicates_remote={dup_remote} lost={len(lost)} corrupt={len(corrupt)} "
              f"send_time={send_time:.1f}s total_time={elapsed:.1f}s ({seed_note})")
    assert not corrupt, f"corrupt copies: {corrupt[:10]}"
    assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:10]}"
