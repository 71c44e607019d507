"""A mailbox whose index another process holds locked must not turn a message into a 4xx
after other local recipients already have it (the client would retry and they would get it
twice): the busy recipient is queued and delivered locally by the queue runner."""
import sqlite3
import time

import tern_harness as th
from tern_harness import make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"


def test_busy_mailbox_is_queued_not_duplicated(tern_factory):
    inst = tern_factory(extra_config="[queue]\nretry_min = 1\nretry_max = 2\n")
    inst.flush(BOB)                      # bob's Maildir and index.db exist now
    index = inst.maildir(BOB) / "index.db"
    assert index.exists()
    lock = sqlite3.connect(str(index), isolation_level=None, timeout=5)
    lock.execute("BEGIN IMMEDIATE")      # another process writing bob's index, for long
    tok = token()
    try:
        t0 = time.monotonic()
        with inst.smtp() as s:
            refused = s.sendmail("sender@example.net", [ALICE, BOB],
                                 make_message(tok, to=ALICE))
        assert refused == {}, refused
        # answered within the store's short busy timeout, not after 10 s
        assert time.monotonic() - t0 < 5
        assert len(inst.wait_message(ALICE, tok)) == 1
        assert "queued for a retry" in inst.log_text()
        # (no look into bob's new/ here: the runner's retry links the file there before it
        # waits for the index lock, and unlinks it again if the wait fails; only the index
        # row makes it delivered. The counts below are what matters: exactly once each.)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # the runner delivers it to bob once the lock is gone (retry_min 1 s)
    assert len(inst.wait_message(BOB, tok, timeout=30)) == 1
    time.sleep(0.5)
    assert len(inst.find_messages(ALICE, tok)) == 1
    assert len(inst.find_messages(BOB, tok)) == 1
    log = inst.log_text()
    assert f"to=<{BOB}>, relay=local" in log or f"to=<{BOB}> relay=local" in log, log[-3000:]
