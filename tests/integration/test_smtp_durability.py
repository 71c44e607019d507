"""Durability and process control: a vanishing client leaves nothing behind, SIGKILL right after
a 250 loses nothing (local delivery and queued remote mail), SIGTERM exits 0 in time."""
import signal
import socket
import struct
import time

import pytest

import tern_harness as th
from tern_harness import assert_reply, check_delivered, make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_vanishes_mid_data(tern_factory, how):
    inst = tern_factory()
    tok = token()
    c = inst.raw()
    assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
    assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 250)
    assert c.cmd("DATA")[0] == 354
    c.send(make_message(tok, body=f"{tok}\r\n".encode() + b"partial line\r\n" * 2000
                        + b"no end"))
    if how == "rst":
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    # A later transaction goes through, so the aborted session has been dealt with.
    inst.flush(BOB)
    md = inst.maildir(BOB)
    assert inst.find_messages(BOB, tok, subdirs=("tmp", "new", "cur")) == [], \
        f"aborted message in {md}: {inst.mailbox_files(BOB, ('tmp', 'new', 'cur'))}"
    assert inst.mailbox_files(BOB, ("tmp",)) == [], "files left in Maildir tmp/"
    assert f"{tok}" not in inst.queue_list()
    # The spool copy of the aborted message is removed as well.
    th.assert_no_trace(inst, tok, timeout=10)


def test_sigkill_after_250_local_delivery(tern_factory):
    inst = tern_factory()
    msgs = []
    with inst.raw() as c:
        for i in range(5):
            tok = token()
            msg = make_message(tok, body=f"{tok} message {i}\r\n")
            msgs.append((tok, msg))
            # Whole transaction in one write, so the 250 arrives as fast as possible.
            c.send(b"MAIL FROM:<sender@example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
            assert_reply(c.read_reply(), 250)
            assert_reply(c.read_reply(), 250)
            assert c.read_reply()[0] == 354
            c.send(msg + b".\r\n")
            assert_reply(c.read_reply(), 250)
        inst.kill()  # SIGKILL the whole group right after the last 250
    inst.start()
    for tok, msg in msgs:
        files = inst.wait_message(BOB, tok, timeout=30)
        check_delivered(files[0], "sender@example.net", msg)
        assert files[0].parent.name in ("new", "cur")


def test_sigkill_after_250_remote_queued(tern_factory):
    inst = tern_factory()
    tok = token()
    remote = f"remote-{tok}@elsewhere.test"
    msg = make_message(tok, sender=ALICE, to=remote)
    with inst.submission_login() as s:
        assert s.sendmail(ALICE, [remote], msg) == {}
        inst.kill()
    inst.start()
    deadline = time.monotonic() + 30
    while True:
        out = inst.queue_list()
        if f"<{remote}>" in out:
            break
        assert time.monotonic() < deadline, \
            f"message to <{remote}> lost after SIGKILL; `tern queue list`:\n{out}"
        time.sleep(0.1)
    entry = [ln for ln in out.splitlines() if ln and ln[0] not in " \t"]
    assert any(ALICE in ln for ln in entry), f"sender not listed:\n{out}"


@pytest.mark.parametrize("target", ["master", "group"])
def test_sigterm_exits_zero(tern_factory, target):
    shutdown_timeout = 5
    inst = tern_factory(settings={"shutdown_timeout": str(shutdown_timeout)})
    # An idle client and one in the middle of a transaction must not hold the exit.
    idle = inst.raw()
    busy = inst.raw()
    assert_reply(busy.cmd("MAIL FROM:<sender@example.net>"), 250)
    start = time.monotonic()
    pgid = inst.pgid
    if target == "master":
        inst.proc.send_signal(signal.SIGTERM)
    else:
        inst.signal_group(signal.SIGTERM)
    slack = 10  # ASan exit handlers are slow
    try:
        rc = inst.proc.wait(shutdown_timeout + slack)
    except Exception:
        pytest.fail(f"master did not exit within {shutdown_timeout}+{slack}s of SIGTERM")
    elapsed = time.monotonic() - start
    left = th.group_members(pgid)
    idle.close()
    busy.close()
    assert rc == 0, f"master exit status {rc} after SIGTERM"
    assert left == [], f"processes left after the master exited: {left}"
    assert elapsed < shutdown_timeout + slack
    # Listeners are closed.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", inst.ports["smtp"]), timeout=2).close()


def test_restart_after_sigterm_keeps_mail(tern_factory):
    inst = tern_factory()
    tok = token()
    msg = make_message(tok)
    with inst.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    inst.wait_message(BOB, tok)
    assert inst.stop() == 0
    inst.start()
    files = inst.wait_message(BOB, tok)
    assert len(files) == 1
    check_delivered(files[0], "sender@example.net", msg)
