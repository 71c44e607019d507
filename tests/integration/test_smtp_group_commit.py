"""Group commit: a message's fsyncs run on the worker's sync threads, not on its event loop.

An LD_PRELOAD shim makes every fsync and fdatasync of a regular file (the spool file, SQLite's files) take SLOW seconds, as
on a busy disk. With the fsyncs on the loop (before the sync threads), every other session of
the worker waited for them: a NOOP took SLOW seconds, and N concurrent messages took N x SLOW.
Now the loop answers at once and the N fsyncs overlap."""
import os
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
