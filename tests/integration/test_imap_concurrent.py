"""Several IMAP sessions on one mailbox, on a server with two worker processes: changes made
by one session (EXPUNGE, STORE) or by SMTP delivery reach the others at their next command
and, in IDLE (RFC 2177), right away. Sessions are placed in both workers on purpose (the
server log names the worker pid of each connection)."""
import re
import time

import pytest

import tern_harness as th
from imap_raw import BOB, LOOPBACK_OK, RawIMAP, deliver, nums, status_of

IDLE_BOUND = 5.0   # seconds from a change to the idling client's untagged response (typically 6-16 ms; generous for a loaded CI machine: without the wake-up it never comes)

CONNECT_RE = re.compile(r"tern/smtpd\[(\d+)\]: (i[0-9a-f]+\.\d+): connect from \S+ role=imap")


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK, workers=2)


def connect_with_pid(inst, timeout=10):
    """A logged-in RawIMAP and the pid of the worker that serves it: connections are
    opened one at a time, so the newest 'connect' line of the log is this one."""
    seen = len(CONNECT_RE.findall(inst.log_text()))
    c = RawIMAP(inst.ports["imap"])
    deadline = time.monotonic() + timeout
    while True:
        found = CONNECT_RE.findall(inst.log_text())
        if len(found) > seen:
            assert len(found) == seen + 1, found[seen:]
            pid = int(found[-1][0])
            break
        assert time.monotonic() < deadline, "no connect line in the log"
        time.sleep(0.02)
    c.login()
    c.pid = pid
    return c


def sessions_in_two_workers(inst, want=2, max_tries=16):
    """`want` sessions, the first two in different worker processes."""
    first = connect_with_pid(inst)
    spare = []
    second = None
    for _ in range(max_tries):
        c = connect_with_pid(inst)
        if c.pid != first.pid:
            second = c
            break
        spare.append(c)
    assert second is not None, f"all {max_tries + 1} connections went to worker {first.pid}"
    out = [first, second]
    while len(out) < want and spare:
        out.append(spare.pop())
    while len(out) < want:
        out.append(connect_with_pid(inst))
    for c in spare:
        c.close()
    return out


def expunge_numbers(lines):
    return [int(x.split()[1]) for x in lines if re.match(rb"\* \d+ EXPUNGE$", x)]


def apply_expunges(uids, seqs):
    uids = list(uids)
    for s in seqs:
        assert 1 <= s <= len(uids), (s, uids)
        del uids[s - 1]
    return uids


def uid_search(c):
    u = c.ok("UID SEARCH ALL")
    return nums([x for x in u if x.startswith(b"* SEARCH")][0], "SEARCH")


def test_expunge_seen_by_other_session_in_other_worker(inst):
    for _ in range(6):
        deliver(inst)
    a, b, c3 = sessions_in_two_workers(inst, want=3)
    print(f"workers: a={a.pid} b={b.pid} c={c3.pid}")
    try:
        for s in (a, b, c3):
            u = s.ok("SELECT INBOX")
            assert b"* 6 EXISTS" in u, s.text()
        a.ok("STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
        u = a.ok("EXPUNGE")
        assert apply_expunges(range(1, 7), expunge_numbers(u)) == [1, 3, 6], a.text()
        # the others learn at their next command, with numbers valid as each is sent
        for s in (b, c3):
            u = s.ok("NOOP")
            exp = expunge_numbers(u)
            assert len(exp) == 3, s.text()
            assert apply_expunges([1, 2, 3, 4, 5, 6], exp) == [1, 3, 6], (exp, s.text())
            # flags of the expunged messages were set too: FETCHes (if any) name live numbers
            for x in u:
                m = re.match(rb"\* (\d+) FETCH", x)
                assert not m or int(m.group(1)) <= 3, s.text()
            assert uid_search(s) == [1, 3, 6], s.text()
        # a third session's flag change reaches both others
        c3.ok("STORE 2 +FLAGS (\\Flagged)")
        for s in (a, b):
            u = s.ok("NOOP")
            assert any(re.match(rb"\* 2 FETCH \(.*FLAGS \(.*\\Flagged", x) for x in u), s.text()
        # SEARCH may not carry EXPUNGE (RFC 9051 §7.5.1): it waits for the next NOOP
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        u = b.ok("SEARCH ALL")
        assert not expunge_numbers(u), b.text()
        # numbers stay as the client knows them; the expunged message may drop out
        assert nums([x for x in u if x.startswith(b"* SEARCH")][0], "SEARCH") in \
            ([1, 2, 3], [2, 3]), b.text()
        u = b.ok("NOOP")
        assert expunge_numbers(u) == [1], b.text()
    finally:
        for s in (a, b, c3):
            s.close()


def test_new_mail_seen_at_noop(inst):
    deliver(inst)
    a, b = sessions_in_two_workers(inst)
    try:
        a.ok("SELECT INBOX")
        b.ok("EXAMINE INBOX")
        deliver(inst)
        deliver(inst)
        for s in (a, b):
            u = s.ok("NOOP")
            assert b"* 3 EXISTS" in u, s.text()
        assert uid_search(a) == [1, 2, 3]
    finally:
        a.close()
        b.close()


def test_changes_seen_after_quiet_commands(inst):
    """A session's sync asks the index only after a change was announced (store/notify.h):
    commands that find nothing announced answer from the view. Every kind of change, made in
    the same worker, in the other worker or by SMTP delivery, must still show at the next
    command after any number of quiet ones."""
    for _ in range(3):
        deliver(inst)
    a, b, c = sessions_in_two_workers(inst, want=3)
    print(f"workers: a={a.pid} b={b.pid} c={c.pid}")
    watchers = [s for s in (b, c) if s.pid != a.pid] + [s for s in (b, c) if s.pid == a.pid]
    try:
        for s in (a, b, c):
            assert b"* 3 EXISTS" in s.ok("SELECT INBOX"), s.text()

        def quiet(s):
            for cmd in ("NOOP", "FETCH 1:* (FLAGS)", "SEARCH ALL", "NOOP"):
                u = s.ok(cmd)
                assert not any(re.match(rb"\* \d+ (EXISTS|EXPUNGE)|\* \d+ FETCH \(FLAGS", x)
                               for x in u if not cmd.startswith("FETCH")), s.text()

        for s in watchers:
            quiet(s)
        a.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
        for s in watchers:
            u = s.ok("NOOP")
            assert any(re.match(rb"\* 2 FETCH \(.*FLAGS \(.*\\Flagged", x) for x in u), s.text()
            quiet(s)
        deliver(inst)
        for s in watchers:
            assert b"* 4 EXISTS" in s.ok("NOOP"), s.text()
            quiet(s)
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        for s in watchers:
            assert expunge_numbers(s.ok("NOOP")) == [1], s.text()
            quiet(s)
        # a change made by one of the watchers reaches the other one and the changer
        watchers[0].ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        for s in (a, watchers[1]):
            u = s.ok("NOOP")
            assert any(re.match(rb"\* 1 FETCH \(.*FLAGS \(.*\\Seen", x) for x in u), s.text()
    finally:
        for s in (a, b, c):
            s.close()


def idle_start(c):
    tag = c.tag()
    c.send(f"{tag} IDLE\r\n")
    line = c.readline()
    assert line.startswith(b"+"), c.text()
    return tag


def wait_for(c, pattern, bound, what):
    """Read untagged lines until one matches pattern; returns (line, seconds, lines)."""
    t0 = time.monotonic()
    lines = []
    while True:
        left = bound + 3 - (time.monotonic() - t0)   # read a bit past the bound to report it
        assert left > 0, f"no {what} within {bound + 3:.1f}s in IDLE\n{c.text()}"
        line = c.maybe_line(left)
        assert line is not None, f"no {what} within {bound + 3:.1f}s in IDLE\n{c.text()}"
        lines.append(line)
        if re.match(pattern, line):
            return line, time.monotonic() - t0, lines


def idle_done(c, tag):
    c.send("DONE\r\n")
    u, t = c.read_response(tag)
    assert status_of(t) == "OK", c.text()
    return u


@pytest.mark.parametrize("placement", ["other-worker", "same-session-worker"])
def test_idle_exists_fetch_expunge(inst, placement):
    for _ in range(3):
        deliver(inst)
    a, b = sessions_in_two_workers(inst)
    if placement == "same-session-worker":
        # b in the same worker as a
        b.close()
        for _ in range(16):
            b = connect_with_pid(inst)
            if b.pid == a.pid:
                break
            b.close()
        assert b.pid == a.pid
    try:
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        tag = idle_start(b)
        # nothing happens: nothing is sent
        assert b.maybe_line(0.5) is None, b.text()

        # 1. new mail over SMTP: "* 4 EXISTS"
        t0 = time.monotonic()
        deliver_nowait(inst)
        line, _, _ = wait_for(b, rb"\* 4 EXISTS$", IDLE_BOUND, "EXISTS")
        latency = time.monotonic() - t0
        print(f"[{placement}] IDLE EXISTS latency after SMTP end of data: {latency * 1000:.0f} ms")
        assert latency <= IDLE_BOUND + 1, f"EXISTS after {latency:.2f}s (bound {IDLE_BOUND}s)"

        # 2. a flag stored by the other session: "* 2 FETCH (FLAGS (... \Flagged ...))"
        t0 = time.monotonic()
        a.ok("NOOP")
        a.ok("STORE 2 +FLAGS (\\Flagged)")
        line, dt, _ = wait_for(b, rb"\* 2 FETCH \(.*FLAGS \(", IDLE_BOUND, "FETCH FLAGS")
        print(f"[{placement}] IDLE FETCH latency: {dt * 1000:.0f} ms")
        assert b"\\Flagged" in line, b.text()
        assert dt <= IDLE_BOUND, f"FETCH after {dt:.2f}s"

        # 3. the other session expunges message 1: "* 1 EXPUNGE"
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        a.ok("EXPUNGE")
        line, dt, lines = wait_for(b, rb"\* 1 EXPUNGE$", IDLE_BOUND, "EXPUNGE")
        print(f"[{placement}] IDLE EXPUNGE latency: {dt * 1000:.0f} ms")
        assert dt <= IDLE_BOUND, f"EXPUNGE after {dt:.2f}s"

        u = idle_done(b, tag)
        assert not expunge_numbers(u), b.text()   # reported once, not again
        assert uid_search(b) == [2, 3, 4], b.text()
        assert latency <= IDLE_BOUND, f"EXISTS after {latency:.2f}s (bound {IDLE_BOUND}s)"
    finally:
        a.close()
        b.close()


def deliver_nowait(inst):
    tok = th.token()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", [BOB], th.make_message(tok))
    return tok


def test_idle_done_and_commands_after(inst):
    with RawIMAP(inst.ports["imap"]) as c:
        c.login()
        # IDLE in the authenticated state is allowed; DONE ends it with a tagged OK
        tag = idle_start(c)
        assert idle_done(c, tag) == [], c.text()
        c.ok("SELECT INBOX")
        tag = idle_start(c)
        c.send("done\r\n")   # case-insensitive
        u, t = c.read_response(tag)
        assert status_of(t) == "OK", c.text()
        # anything but DONE: BAD, and the session goes on
        tag = idle_start(c)
        c.send("NOOP\r\n")
        u, t = c.read_response(tag)
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        c.ok("LOGOUT")


def test_idle_mail_to_other_mailbox_not_reported(inst):
    a, b = sessions_in_two_workers(inst)
    try:
        a.ok("CREATE Other")
        b.ok("SELECT INBOX")
        tag = idle_start(b)
        a.ok("SELECT INBOX")
        deliver(inst)
        wait_for(b, rb"\* 1 EXISTS$", IDLE_BOUND, "EXISTS")
        line = b.maybe_line(1.0)
        assert line in (None, b"* 1 RECENT"), b.text()
        # copying into another mailbox does not show in the selected one
        u = a.ok("NOOP")
        assert b"* 1 EXISTS" in u, a.text()
        a.ok("COPY 1 Other")
        assert b.maybe_line(1.0) is None, b.text()
        idle_done(b, tag)
    finally:
        a.close()
        b.close()
