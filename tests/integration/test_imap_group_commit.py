"""IMAP's write commands sync off the event loop: APPEND's fsync of the message file, its
rename into new/ and the fsync of new/, and EXPUNGE's commit (the index WAL's fdatasync), run
on the worker's sync threads; the session waits for them, the worker's other sessions do not.

The LD_PRELOAD shim of test_smtp_group_commit (reused, not copied) makes every fsync and
fdatasync of a regular file take SLOW seconds. With the syncs on the loop, a NOOP on another
session of the same worker (workers = 1) waited SLOW seconds; now it is answered at once,
and the slowed command is still answered only after its syncs (it takes at least SLOW)."""
import imaplib
import os
import socket
import threading
import time

import pytest

import tern_harness as th
from test_smtp_group_commit import SLOW, shim  # noqa: F401  (the shim is a fixture)

# serial: timing (fsyncs slowed to a known length, a NOOP answered within a bound)
pytestmark = pytest.mark.serial

USER = "alice@example.test"
PASSWORD = th.USERS[USER]
MESSAGE = (b"From: a@example.test\r\nTo: alice@example.test\r\nSubject: slow\r\n\r\n"
           b"a body\r\n")


def slow_instance(tern_factory, shim):  # noqa: F811
    asan = os.environ.get("ASAN_OPTIONS", "")
    return tern_factory(workers=1,
                        settings={"allow_plaintext_auth_loopback": "yes"},
                        env={"LD_PRELOAD": str(shim),
                             "ASAN_OPTIONS": asan + ":verify_asan_link_order=0"})


def login(inst):
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(USER, PASSWORD)
    return c


def probe_while(probe, t):
    """Run thread t; meanwhile time NOOPs on the probe session: the worst wait."""
    worst = 0.0
    t.start()
    while t.is_alive():
        t0 = time.monotonic()
        typ, _ = probe.noop()
        assert typ == "OK"
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.02)
    t.join()
    return worst


def timed(results, key, fn):
    def run():
        t0 = time.monotonic()
        results[key] = fn()
        results[key + "_s"] = time.monotonic() - t0
    return threading.Thread(target=run)


def warm_up(inst):
    """Two logged-in sessions with INBOX selected; the index exists (its creation and the
    first open sync on the loop, as in SMTP's test), one message appended and expunged."""
    writer, probe = login(inst), login(inst)
    for c in (writer, probe):
        assert c.select("INBOX")[0] == "OK"
    assert writer.append("INBOX", None, None, MESSAGE)[0] == "OK"
    writer.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
    assert writer.expunge()[0] == "OK"
    probe.noop()
    return writer, probe


@pytest.mark.no_valgrind
def test_loop_answers_while_an_append_syncs(tern_factory, shim):  # noqa: F811
    inst = slow_instance(tern_factory, shim)
    writer, probe = warm_up(inst)
    results = {}
    worst = probe_while(probe, timed(results, "append",
                                     lambda: writer.append("INBOX", None, None, MESSAGE)))
    typ, data = results["append"]
    assert typ == "OK" and b"APPENDUID" in data[0], results
    # the shim really slowed the message file's fsync, and the OK came after it...
    assert results["append_s"] >= SLOW, results
    # ...and the other session of the same worker did not wait for it
    assert worst < SLOW / 2, f"a NOOP waited {worst:.3f} s for another session's APPEND"
    # durable and indexed: the other session sees it (EXISTS at a NOOP, then in a SEARCH)
    probe.noop()
    typ, data = probe.search(None, "ALL")
    assert typ == "OK" and data[0].split(), data
    writer.logout()
    probe.logout()


@pytest.mark.no_valgrind
def test_loop_answers_while_an_expunge_syncs(tern_factory, shim):  # noqa: F811
    inst = slow_instance(tern_factory, shim)
    writer, probe = warm_up(inst)
    assert writer.append("INBOX", None, None, MESSAGE)[0] == "OK"
    assert writer.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
    files_before = inst.mailbox_files(USER)
    assert files_before
    results = {}
    worst = probe_while(probe, timed(results, "expunge", writer.expunge))
    typ, data = results["expunge"]
    assert typ == "OK" and data and data[0] is not None, results    # "* 1 EXPUNGE"
    assert results["expunge_s"] >= SLOW, results    # its commit's WAL sync was slowed
    assert worst < SLOW / 2, f"a NOOP waited {worst:.3f} s for another session's EXPUNGE"
    # the file went after the commit was durable, before the OK
    assert not inst.mailbox_files(USER), inst.mailbox_files(USER)
    probe.noop()
    typ, data = probe.search(None, "ALL")
    assert typ == "OK" and data == [b""], data
    writer.logout()
    probe.logout()


@pytest.mark.no_valgrind
def test_client_gone_while_append_syncs(tern_factory, shim):  # noqa: F811
    """A connection that drops while its APPEND is on a thread, and a server stopped while
    another is: no crash, nothing leaked (the ASan build checks at the stop), and the worker
    goes on serving."""
    inst = slow_instance(tern_factory, shim)
    writer, probe = warm_up(inst)
    writer.logout()

    def append_and_drop():
        s = socket.create_connection(("127.0.0.1", inst.ports["imap"]), timeout=th.IO_TIMEOUT)
        f = s.makefile("rb")
        assert f.readline().startswith(b"* OK")
        s.sendall(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
        while not f.readline().startswith(b"a OK"):
            pass
        s.sendall(b"b APPEND INBOX {%d+}\r\n" % len(MESSAGE) + MESSAGE + b"\r\n")
        return s, f

    s, f = append_and_drop()
    s.close()
    # the worker serves the probe meanwhile and afterwards
    t0 = time.monotonic()
    assert probe.noop()[0] == "OK"
    assert time.monotonic() - t0 < SLOW / 2
    time.sleep(SLOW * 1.5)      # the dropped APPEND's sync ends
    assert probe.noop()[0] == "OK"
    # stopped while an APPEND is on a thread: the teardown's sanitizer check covers it
    s, f = append_and_drop()
    time.sleep(0.1)
    probe.logout()
    inst.stop()
    s.close()
    assert inst.sanitizer_reports() == []
