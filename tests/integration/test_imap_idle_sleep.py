"""An idling IMAP session lets go of its account's SQLite connection (store_sleep): the worker
holds no descriptor on the account's index.db while every session of that account idles, and
takes it back for as long as it needs it: a change made by another session (APPEND, STORE,
EXPUNGE) still reaches the idler at once, and after DONE the session goes on as before. This
is what keeps an idle connection at a few kB instead of a few hundred (docs/performance.md).
One worker, so that every session of the test is in the process whose descriptors we read."""
import os
import time

import pytest

from imap_raw import ALICE, ALICE_PW, BOB, LOOPBACK_OK, RawIMAP, nums
from test_imap_concurrent import IDLE_BOUND, connect_with_pid, idle_done, idle_start, wait_for


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK, workers=1)


def index_fds(pid, user):
    """Descriptors of process pid open on user's index.db (and its -wal / -shm)."""
    local, domain = user.split("@")
    tail = f"/mail/{domain}/{local}/index.db"
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(tail) or target.endswith(tail + "-wal") or target.endswith(tail + "-shm"):
            n += 1
    return n


def wait_fds(pid, user, want, bound=5.0):
    deadline = time.monotonic() + bound
    while True:
        n = index_fds(pid, user)
        if (n == 0) == (want == 0):
            return n
        assert time.monotonic() < deadline, f"{user}: {n} index.db descriptors in {pid}, wanted {'none' if want == 0 else 'some'}"
        time.sleep(0.02)


def append_cmd(msg):
    return f"APPEND INBOX {{{len(msg.encode())}+}}\r\n{msg}"


def other_session(inst, pid, text):
    """A second BOB session in the same worker runs one command, then logs out (its store
    closes: the idler's own sleep is then the only thing that decides)."""
    c = connect_with_pid(inst)
    assert c.pid == pid
    c.ok("SELECT INBOX")
    c.ok(text)
    c.ok("LOGOUT")
    c.close()


def test_idle_session_releases_index_and_still_sees_changes(inst):
    c = connect_with_pid(inst)
    pid = c.pid
    for i in range(3):
        c.ok(append_cmd(f"Subject: m{i}\r\n\r\nbody\r\n"))
    c.ok("SELECT INBOX")
    assert wait_fds(pid, BOB, want=1) > 0        # awake: the connection is open
    tag = idle_start(c)
    wait_fds(pid, BOB, want=0)                   # idling: let go

    # new mail through another session: EXISTS at once, and the idler sleeps again
    other_session(inst, pid, append_cmd("Subject: new\r\n\r\nnew body\r\n"))
    wait_for(c, rb"\* 4 EXISTS$", IDLE_BOUND, "EXISTS")
    wait_fds(pid, BOB, want=0)

    # a flag change and an expunge made by another session
    other_session(inst, pid, "STORE 2 +FLAGS (\\Flagged)")
    line, _, _ = wait_for(c, rb"\* 2 FETCH \(.*\\Flagged", IDLE_BOUND, "FETCH FLAGS")
    other_session(inst, pid, "STORE 1 +FLAGS (\\Deleted)")
    wait_for(c, rb"\* 1 FETCH \(.*\\Deleted", IDLE_BOUND, "FETCH FLAGS")
    other_session(inst, pid, "EXPUNGE")
    wait_for(c, rb"\* 1 EXPUNGE$", IDLE_BOUND, "EXPUNGE")
    wait_fds(pid, BOB, want=0)

    # DONE: awake again and everything works on the same view
    idle_done(c, tag)
    assert wait_fds(pid, BOB, want=1) > 0
    u, t = c.cmd("FETCH 1:* (UID FLAGS)")
    assert b"OK" in t, c.text()
    fetched = [line for line in u if b" FETCH " in line]
    assert len(fetched) == 3, u
    assert b"\\Flagged" in fetched[0], u
    u, t = c.cmd("UID SEARCH SUBJECT new")
    assert nums(u[0], "SEARCH") == [4], u
    c.ok("LOGOUT")
    c.close()
    wait_fds(pid, BOB, want=0)


def test_idle_without_selected_mailbox_and_two_accounts(inst):
    """IDLE in the authenticated state sleeps too; an account whose sessions all idle holds
    nothing while another account's active session keeps its own connection."""
    a = connect_with_pid(inst)
    b = RawIMAP(inst.ports["imap"])
    b.login(ALICE, ALICE_PW)
    b.ok("SELECT INBOX")
    tag = idle_start(a)
    wait_fds(a.pid, BOB, want=0)
    assert index_fds(a.pid, ALICE) > 0
    idle_done(a, tag)
    a.ok("SELECT INBOX")
    assert index_fds(a.pid, BOB) > 0
    tag = idle_start(a)
    wait_fds(a.pid, BOB, want=0)
    # the session ends while asleep (LOGOUT is not allowed in IDLE: close the socket)
    a.close()
    b.ok("LOGOUT")
    b.close()
    wait_fds(a.pid, ALICE, want=0)


NOINOTIFY_USER = "tern-noinotify"   # a run user of this test's own, whose inotify we use up

HOG = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
n = 0
while libc.inotify_init1(0) >= 0:
    n += 1
print(n, ctypes.get_errno(), flush=True)
sys.stdin.read()                     # hold them until the test closes our stdin
"""


@pytest.fixture
def inotify_used_up():
    """Every inotify instance NOINOTIFY_USER may have (fs.inotify.max_user_instances) taken
    by another process of that user, as a Dovecot of the same run user did to us once."""
    import pwd
    import resource
    import subprocess
    import sys
    try:
        pwd.getpwnam(NOINOTIFY_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        NOINOTIFY_USER], check=True)
    limit = int(open("/proc/sys/fs/inotify/max_user_instances").read())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert limit + 64 <= hard, f"max_user_instances {limit} is beyond what one process can hold ({hard})"

    def raise_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    hog = subprocess.Popen([sys.executable, "-c", HOG], user=NOINOTIFY_USER, stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, preexec_fn=raise_nofile, text=True)
    try:
        n, errno_ = hog.stdout.readline().split()
        assert int(errno_) == 24, f"inotify_init1 failed with errno {errno_}, not EMFILE"
        yield int(n)
    finally:
        hog.stdin.close()
        hog.wait(timeout=10)


def test_idle_polls_without_inotify(tern_factory, inotify_used_up):
    """No inotify for the run user: IDLE still reports new mail, flag changes and expunges
    (a timer polls the sessions that have no watch), within the usual bound."""
    inst = tern_factory(settings=LOOPBACK_OK, workers=1, user=NOINOTIFY_USER)
    assert "IDLE polls every" in inst.log_text(), inst.log_text()[-2000:]
    a = connect_with_pid(inst)
    b = connect_with_pid(inst)
    a.ok(append_cmd("Subject: one\r\n\r\nbody\r\n"))
    a.ok("SELECT INBOX")
    b.ok("SELECT INBOX")
    tag = idle_start(b)
    a.ok(append_cmd("Subject: two\r\n\r\nbody\r\n"))
    wait_for(b, rb"\* 2 EXISTS$", IDLE_BOUND, "EXISTS")
    a.ok("STORE 1 +FLAGS (\\Deleted)")
    wait_for(b, rb"\* 1 FETCH \(.*\\Deleted", IDLE_BOUND, "FETCH FLAGS")
    a.ok("EXPUNGE")
    wait_for(b, rb"\* 1 EXPUNGE$", IDLE_BOUND, "EXPUNGE")
    idle_done(b, tag)
    u, _ = b.cmd("UID SEARCH ALL")
    assert nums(u[0], "SEARCH") == [2], u
    a.close()
    b.close()
