"""Requests that once crashed or swamped a worker: malformed QRESYNC parameters, sequence
sets that repeat one range thousands of times, FETCH item lists of thousands of items; and
a FETCH 1:* of an empty mailbox, which clients send routinely and must not count as an error."""
import time

import pytest

from imap_raw import LOOPBACK_OK, deliver, raw_login


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    import conftest
    import tern_harness as th
    inst = th.TernInstance(tmp_path_factory.mktemp("hostile"), settings=LOOPBACK_OK)
    conftest.provision_users(inst)
    inst.start()
    yield inst
    conftest._teardown(inst)


def status_of(tagged):
    return tagged.split(b" ", 2)[1].decode()


def test_qresync_parameters_of_the_wrong_type(srv):
    with raw_login(srv) as c:
        c.ok("ENABLE QRESYNC")
        for bad in ("((1) 2)", "(1 (2))", "(() ())"):
            _, t = c.cmd(f"SELECT INBOX (QRESYNC {bad})")
            assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")                          # the session (and its worker) lives on
    with raw_login(srv) as c2:                # and so does everyone else's
        c2.ok("SELECT INBOX")


def test_repeated_ranges_cost_one_range(srv):
    for _ in range(5):
        deliver(srv)
    with raw_login(srv) as c:
        c.ok("SELECT INBOX")
        n = int(next(l for l in c.ok("STATUS INBOX (MESSAGES)")).split(b"MESSAGES ")[1][:-1])
        big = ",".join(["1:*"] * 12000)          # ~48 KB of one command line
        t0 = time.monotonic()
        lines = c.ok(f"FETCH {big} (UID)", timeout=30)
        assert len([l for l in lines if b" FETCH " in l]) == n, c.text()[-2000:]
        lines = c.ok(f"UID FETCH {big} (UID)", timeout=30)
        assert len([l for l in lines if b" FETCH " in l]) == n
        assert time.monotonic() - t0 < 10


def test_fetch_item_list_is_bounded(srv):
    deliver(srv)
    with raw_login(srv) as c:
        c.ok("SELECT INBOX")
        items = " ".join(["BODY.PEEK[TEXT]"] * 1000)
        _, t = c.cmd(f"FETCH 1 ({items})")
        assert status_of(t) == "BAD" and b"Too many" in t, t
        c.ok("FETCH 1 (UID FLAGS BODY.PEEK[HEADER] BODY.PEEK[TEXT])")


def test_fetch_all_of_an_empty_mailbox(srv):
    with raw_login(srv) as c:
        c.ok("CREATE Empty")
        c.ok("SELECT Empty")
        for _ in range(30):                    # more than max_bad_commands (20)
            assert c.ok("FETCH 1:* (FLAGS)") == []
        c.ok("UID FETCH 1:* (FLAGS)")
        _, t = c.cmd("FETCH 1 (FLAGS)")        # an explicit number is still out of range
        assert status_of(t) == "BAD"
        c.ok("DELETE Empty")
