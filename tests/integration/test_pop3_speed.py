"""POP3 speed work (issue 12): RETR of a large file already in POP3 form goes out through
sendfile on a plain connection (a small one is copied into the output whole), and an idle
logged-in session holds no connection to the index."""
import os
import poplib
import subprocess
import time
from pathlib import Path

import pytest

import tern_harness as th
from tern_harness import make_message, token

BOB = "bob@example.test"
LOOPBACK = {"allow_plaintext_auth_loopback": "yes"}


def drop(inst, n, body=b"line\r\n"):
    """n messages written straight into bob's Maildir new/ (picked up at the next open), so
    no SMTP delivery leaves an index handle open in a worker"""
    st = Path(inst.data_dir).stat()    # the run user's
    md = Path(inst.maildir(BOB))
    for d in (md.parent.parent, md.parent, md, md / "new", md / "cur", md / "tmp"):
        if not d.exists():
            d.mkdir(mode=0o700)
            os.chown(d, st.st_uid, st.st_gid)
    new = md / "new"
    toks = []
    for i in range(n):
        tok = token()
        f = new / f"{int(time.time())}.drop{i}_{tok}.host"
        f.write_bytes(make_message(tok, to=BOB, body=body))
        os.chown(f, st.st_uid, st.st_gid)
        toks.append(tok)
    return toks


def worker_pid(inst):
    """the process serving our (one) POP3 connection"""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"sport = :{inst.ports['pop3']}"],
                         capture_output=True, text=True).stdout
    pids = {int(x.split(",")[0]) for x in out.split("pid=")[1:]}
    assert len(pids) == 1, out
    return pids.pop()


def index_fds(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/index.db"):
                n += 1
        except OSError:
            pass
    return n


def plain_login(inst):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=th.IO_TIMEOUT)
    p.user(BOB)
    p.pass_(th.USERS[BOB])
    return p


def test_idle_session_lets_go_of_the_index(tern_factory):
    inst = tern_factory(workers=1, settings=LOOPBACK)
    drop(inst, 5)
    p = plain_login(inst)
    w = worker_pid(inst)
    assert p.stat()[0] == 5
    assert index_fds(w) == 0, "a logged-in idle POP3 session keeps index.db open"
    resp, lines, _ = p.retr(1)
    assert resp.startswith(b"+OK")
    assert index_fds(w) > 0           # awake for the download
    deadline = time.monotonic() + th.scaled(10)
    while index_fds(w) > 0:            # and asleep again 2 s after it
        assert time.monotonic() < deadline, "the store stayed awake after the download"
        time.sleep(0.2)
    p.dele(2)
    p.quit()                           # the QUIT wakes it to expunge
    p = plain_login(inst)
    assert p.stat()[0] == 4
    p.quit()


@pytest.mark.no_valgrind
def test_retr_large_plain_goes_out_through_sendfile(tern_factory):
    inst = tern_factory(workers=1, settings=LOOPBACK)
    # > 256 KiB: sendfile; small: copied into the output whole; with dots: streamed
    bodies = (b"plain line of a big message\r\n" * 10000, b"small\r\n" * 30,
              b"plain\r\n.dotted line\r\n..two\r\n")
    sent = [make_message(tok, to=BOB, body=b) for b in bodies
            for tok in drop(inst, 1, body=b)]
    p = plain_login(inst)
    w = worker_pid(inst)
    log = Path(inst.base) / "strace.out"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=sendfile", "-o", str(log),
                               "-p", str(w)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)                  # strace attaches (no readiness signal to wait on)
        got = []
        for n in (1, 2, 3):
            _, lines, _ = p.retr(n)
            got.append(b"\r\n".join(lines) + b"\r\n")
        p.quit()
    finally:
        tracer.terminate()
        tracer.wait(timeout=10)
    text = log.read_text()
    assert "sendfile(" in text, f"RETR did not use sendfile:\n{text[:2000]}"
    # each arrives whole and exact (the dotted one stuffed by us, unstuffed by poplib)
    assert sorted(got) == sorted(sent)
