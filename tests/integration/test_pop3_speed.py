"""POP3 speed work (issue 12): RETR of a large file already in POP3 form goes out through
sendfile on a plain connection (a small one is copied into the output whole), an idle
logged-in session holds no connection to the index, and a download opens message files from
a list loaded once, without the index per RETR."""
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
    # the first RETR loads the file list and the store sleeps again at once: a download
    # holds no index connection either
    assert index_fds(w) == 0, "the store stayed awake during a download"
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


def strace_worker(inst, w, calls):
    """strace of the worker w (these system calls), started; returns (process, log path)"""
    log = Path(inst.base) / f"strace-{token()}.out"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", f"trace={calls}", "-o", str(log),
                               "-p", str(w)], stderr=subprocess.DEVNULL)
    time.sleep(1)                      # strace attaches (no readiness signal to wait on)
    return tracer, log


@pytest.mark.no_valgrind
def test_retr_after_the_first_needs_no_index(tern_factory):
    inst = tern_factory(workers=1, settings=LOOPBACK)
    toks = drop(inst, 6)
    p = plain_login(inst)
    w = worker_pid(inst)
    tracer, log = strace_worker(inst, w, "openat,open,fcntl,pread64,read,readv,recvfrom")
    try:
        p.retr(1)                      # loads the list
        got = [b"\r\n".join(p.retr(n)[1]) for n in range(2, 7)]
        p.noop()
    finally:
        tracer.terminate()
        tracer.wait(timeout=10)
    text = log.read_text()
    assert "RETR 2" in text, text[:3000]
    text = text[text.index("RETR 2"):]  # from the second RETR on
    # SQLite's read transaction takes and drops a WAL read lock (fcntl F_SETLK) and reads
    # index.db pages; a RETR from the list does neither
    assert "F_SETLK" not in text, f"a RETR locked the index:\n{text[:3000]}"
    assert "index.db" not in text, text[:3000]
    assert text.count("cur/") >= 5, text[:3000]    # one open of each message file
    for n, g in zip(range(2, 7), got):
        assert toks[n - 1].encode() in g
    p.quit()


def cur_file(inst, tok):
    """the path of the cur/ file holding token tok"""
    cur = Path(inst.maildir(BOB)) / "cur"
    for f in cur.iterdir():
        if tok.encode() in f.read_bytes():
            return f
    raise AssertionError(f"no file with {tok}")


def test_retr_of_a_file_renamed_or_removed_mid_session(tern_factory):
    inst = tern_factory(workers=1, settings=LOOPBACK)
    toks = drop(inst, 4)
    p = plain_login(inst)
    p.retr(1)                          # the list holds the names as they were
    # another program sets a flag: the file gets a new name; RETR finds it through the index
    f = cur_file(inst, toks[1])
    f.rename(str(f) + "S" if ":2," in f.name else str(f) + ":2,S")
    lines = p.retr(2)[1]
    assert b"\r\n".join(lines) + b"\r\n" == make_message(toks[1], to=BOB, body=b"line\r\n")
    # gone altogether: -ERR, and the session goes on
    cur_file(inst, toks[2]).unlink()
    with pytest.raises(poplib.error_proto) as e:
        p.retr(3)
    assert b"-ERR" in e.value.args[0]
    with pytest.raises(poplib.error_proto):
        p.top(3, 0)
    assert toks[3].encode() in b"\r\n".join(p.retr(4)[1])
    assert p.noop().startswith(b"+OK")
    assert p.stat()[0] == 4
    p.quit()


def test_retr_and_top_exact_for_files_not_in_pop3_form(tern_factory):
    """LF ends, lines starting with dots, no final newline, a lone CR: RETR and TOP give the
    CRLF, byte-stuffed form (poplib undoes the stuffing), with the size LIST announced"""
    inst = tern_factory(workers=1, settings=LOOPBACK)
    drop(inst, 1)                      # makes the Maildir
    new = Path(inst.maildir(BOB)) / "new"
    st = Path(inst.data_dir).stat()
    raws = [b"Subject: lf\n\n.dot\n..two\nplain\n",
            b"Subject: crlf dots\r\n\r\n.dot\r\nx\r\n",
            b"Subject: no end\r\n\r\nlast line",
            b"Subject: mixed\r\n\r\na\nb\r\n.c\n",
            b"Subject: cr\r\n\r\na\rb\r\n"]
    for i, raw in enumerate(raws):
        f = new / f"{int(time.time())}.form{i}_{token()}.host"
        f.write_bytes(raw)
        os.chown(f, st.st_uid, st.st_gid)
    p = plain_login(inst)
    sizes = {int(l.split()[0]): int(l.split()[1]) for l in p.list()[1]}
    for n in range(2, 2 + len(raws)):
        lines = p.retr(n)[1]
        served = b"\r\n".join(lines) + b"\r\n"
        raw = next(r for r in raws if r.split(b"\n")[0].rstrip(b"\r") == lines[0])
        want = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not want.endswith(b"\r\n"):
            want += b"\r\n"
        assert served == want, (n, served, want)
        if raw.endswith(b"\n"):
            assert sizes[n] == len(want)       # the size LIST gave is what RETR sent
        top = p.top(n, 1)[1]
        head, _, body = want.partition(b"\r\n\r\n")
        assert b"\r\n".join(top) + b"\r\n" == head + b"\r\n\r\n" + body.split(b"\r\n")[0] + b"\r\n"
    p.quit()


def test_list_and_uidl_of_a_large_maildrop_streamed(tern_factory):
    """LIST and UIDL go out in pieces (more than one 16 KiB step here), whole and in order,
    leaving out deleted messages; the session goes on after them"""
    inst = tern_factory(workers=1, settings=LOOPBACK)
    n = 1500
    drop(inst, n)
    p = plain_login(inst)
    p.dele(7)
    resp, listing, octets = p.list()
    assert resp.startswith(b"+OK")
    nums = [int(l.split()[0]) for l in listing]
    assert nums == [i for i in range(1, n + 1) if i != 7]
    sizes = [int(l.split()[1]) for l in listing]
    assert all(s > 0 for s in sizes)
    resp, uidl, octets = p.uidl()
    assert octets > 16384              # more than one piece
    ids = [l.split() for l in uidl]
    assert [int(a) for a, _ in ids] == nums
    assert len({u for _, u in ids}) == n - 1       # unique
    assert p.stat() == (n - 1, sum(sizes))
    assert p.list(8).startswith(b"+OK 8 ")
    p.quit()
