"""Group commit: a message's fsyncs run on the worker's sync threads, not on its event loop.

An LD_PRELOAD shim makes every fsync and fdatasync of a regular file (the spool file, SQLite's files) take SLOW seconds, as
on a busy disk. With the fsyncs on the loop (before the sync threads), every other session of
the worker waited for them: a NOOP took SLOW seconds, and N concurrent messages took N x SLOW.
Now the loop answers at once and the N fsyncs overlap."""
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import tern_harness as th
from tern_harness import assert_reply, make_message, token

# serial: run apart from the parallel (xdist) run, on a machine to themselves (timing: fsyncs slowed to a known length, bounds on how long messages take)
pytestmark = pytest.mark.serial

BOB = "bob@example.test"
SLOW = 0.6

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static int slow(int fd)
{
	/* a regular file: the spool file (directories are not slowed). /proc/self/fd cannot
	 * tell the path: the workers dropped root and are not dumpable */
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

static int delayed(int fd, const char *name)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
	if (slow(fd)) {
		struct timespec ts = { 0, %d * 1000000L };
		nanosleep(&ts, NULL);
	}
	return real(fd);
}

int fsync(int fd) { return delayed(fd, "fsync"); }
int fdatasync(int fd) { return delayed(fd, "fdatasync"); }	/* SQLite's commits */
"""


@pytest.fixture(scope="module")
def shim():
    d = Path(tempfile.mkdtemp(prefix="tern-shim-", dir="/tmp"))
    os.chmod(d, 0o755)      # the workers run as nobody
    src = d / "slowsync.c"
    src.write_text(SHIM.replace("%d", str(int(SLOW * 1000))))
    lib = d / "slowsync.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src), "-ldl"],
                   check=True)
    os.chmod(lib, 0o755)
    yield lib
    subprocess.run(["rm", "-rf", str(d)])


def slow_instance(tern_factory, shim):
    asan = os.environ.get("ASAN_OPTIONS", "")
    inst = tern_factory(workers=1, env={"LD_PRELOAD": str(shim),
                                        "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"})
    # the first delivery opens (and may create) bob's index: SQLite's own syncs, not timed
    send(inst, token(), {})
    return inst


def send(inst, tok, results):
    t0 = time.monotonic()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", [BOB], make_message(tok, body=f"{tok}\r\n"))
    results[tok] = time.monotonic() - t0


def probe_while(inst, t):
    """Run thread t; meanwhile time NOOPs on another session of the worker: the worst wait."""
    worst = 0.0
    with inst.raw() as probe:
        t.start()
        while t.is_alive():
            t0 = time.monotonic()
            assert_reply(probe.cmd("NOOP"), 250)
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.02)
        t.join()
    return worst


@pytest.mark.no_valgrind
def test_loop_answers_while_a_message_syncs(tern_factory, shim):
    inst = slow_instance(tern_factory, shim)
    results = {}
    tok = token()
    worst = probe_while(inst, threading.Thread(target=send, args=(inst, tok, results)))
    # the shim really slowed the message's fsync...
    assert results[tok] >= SLOW, results
    # ...and the other session of the same worker did not wait for it
    assert worst < SLOW / 2, f"a NOOP waited {worst:.3f} s for another session's fsync"
    inst.wait_message(BOB, tok)


@pytest.mark.no_valgrind
def test_concurrent_messages_share_the_wait(tern_factory, shim):
    inst = slow_instance(tern_factory, shim)
    n = 6
    toks = [token() for _ in range(n)]
    results = {}
    threads = [threading.Thread(target=send, args=(inst, tok, results)) for tok in toks]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    assert len(results) == n
    # one after the other they would take n x SLOW; side by side about one SLOW
    assert took < n * SLOW / 2, f"{n} messages took {took:.2f} s with {SLOW} s fsyncs"
    for tok in toks:
        inst.wait_message(BOB, tok)


@pytest.mark.no_valgrind
def test_relayed_message_queued_off_the_loop(tern_factory, shim):
    """A relayed message: its spool fsync, queue directory fsync and queue.db commit (the WAL's
    fsync, slowed too) run on a sync thread; the other session is served meanwhile."""
    inst = slow_instance(tern_factory, shim)
    tok = token()
    remote = f"remote-{tok}@elsewhere.test"
    alice = "alice@example.test"
    took = {}

    def submit():
        with inst.submission_login() as s:
            t0 = time.monotonic()
            assert s.sendmail(alice, [remote], make_message(tok, sender=alice, to=remote)) == {}
            took["s"] = time.monotonic() - t0

    worst = probe_while(inst, threading.Thread(target=submit))
    assert took["s"] >= 2 * SLOW, took     # the spool file's and queue.db's fsyncs
    assert worst < SLOW / 2, f"a NOOP waited {worst:.3f} s for another session's commit"
    assert f"<{remote}>" in inst.queue_list()


@pytest.mark.no_valgrind
def test_concurrent_relayed_messages_share_one_queue_commit(tern_factory, shim):
    """N relayed messages at once on one worker: their queue.db rows go in one transaction
    (one slowed WAL sync for the batch), not one each. Before, every sync thread committed
    its own message through its own connection, one after the other behind queue.db's write
    lock: the commits alone took n x SLOW."""
    # A resolver that never answers: the queue runner's attempts wait on DNS for the whole
    # test, so none of its own queue.db commits (slowed too) mixes into the timing.
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    try:
        asan = os.environ.get("ASAN_OPTIONS", "")
        inst = tern_factory(start=False, workers=1,
                            env={"LD_PRELOAD": str(shim),
                                 "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"})
        inst.dns_port = blackhole.getsockname()[1]
        inst.write_config()
        inst.start()
        alice = "alice@example.test"
        n = 8       # the worker's sync threads (WORKER_SYNC_THREADS): all at once
        toks = [token() for _ in range(n + 1)]
        clients = [inst.submission_login() for _ in range(n + 1)]
        try:
            # the first opens the writer's queue.db connection: not timed
            warm = f"remote-{toks[0]}@elsewhere.test"
            clients[0].sendmail(alice, [warm], make_message(toks[0], sender=alice, to=warm))
            took = {}
            gate = threading.Barrier(n + 1)

            def submit(i):
                remote = f"remote-{toks[i]}@elsewhere.test"
                msg = make_message(toks[i], sender=alice, to=remote)
                gate.wait()
                clients[i].sendmail(alice, [remote], msg)
                took[i] = time.monotonic()

            threads = [threading.Thread(target=submit, args=(i,)) for i in range(1, n + 1)]
            for t in threads:
                t.start()
            gate.wait()
            t0 = time.monotonic()
            for t in threads:
                t.join()
            assert len(took) == n, took
            total = max(took.values()) - t0
        finally:
            for c in clients:
                c.quit()
        # the spool files' fsyncs overlap (one SLOW), then the queue.db commits: one batch,
        # or two when the first message's commit had begun before the others arrived: about
        # 3 x SLOW (1.8 s measured). One transaction each: n x SLOW more (5.9 s measured).
        assert total < 5 * SLOW, \
            f"{n} relayed messages took {total:.2f} s with {SLOW} s syncs"
        listing = inst.queue_list()
        for tok in toks:
            assert f"<remote-{tok}@elsewhere.test>" in listing
    finally:
        blackhole.close()
