"""The queue runner killed mid-delivery: a slow remote is receiving the message (or has all
of it and not yet answered) when the runner (alone, or with the whole server) is SIGKILLed.
After the restart the message is delivered, whole; a second copy is allowed and counted."""
import time

import pytest

import rely
from rely import th

ALICE = "alice@example.test"


@pytest.mark.parametrize("target", ["runner", "group"])
@pytest.mark.parametrize("moment", ["receiving", "before_reply"])
def test_runner_killed_mid_delivery(tern_factory, sink, capsys, target, moment):
    inst = tern_factory(workers=1, settings=dict(rely.BASE_SETTINGS),
                        extra_config=rely.relay_config(sink))
    sink.slow = True
    if moment == "receiving":
        sink.read_delay = 0.03          # 200 lines: about 6 s of transfer
        sink.drop_if_peer_gone = True
    else:
        sink.delay_reply = 3.0
    tok = th.token()
    rcpt = f"slow@{rely.REMOTE_DOMAIN}"
    with inst.submission_login() as s:
        s.sendmail(ALICE, [rcpt], rely.payload(tok, 200 * 78, sender=ALICE, to=rcpt))
    event = sink.in_data if moment == "receiving" else sink.data_done
    assert event.wait(60), "the runner never started sending the message"
    time.sleep(0.3 if moment == "receiving" else 0.5)
    assert sink.in_data.is_set(), "the transfer ended before the kill"
    pid = rely.runner_pid(inst)
    assert pid is not None, "no queue runner found"
    if target == "runner":
        assert rely.kill_pid(pid)
        # dead, its socket closed, before the sink may go on reading at full speed
        rely.wait_until(lambda: pid not in th.group_members(inst.pgid), 10,
                        "the killed runner to be gone")
    else:
        inst.kill()
    sink.slow = False                   # the next attempt goes through at full speed
    if target == "group":
        rely.restart(inst)
    rely.wait_until(lambda: any(sink.received.get(tok, [])), 90,
                    f"message {tok} to arrive after the runner was killed")
    # The queue lets go of it: no recipient left (a second copy may still be under way).
    rely.wait_until(lambda: rcpt not in inst.queue_list(), 60, "the queue to empty")
    # The interrupted session ends (its delayed 250 goes out, or it sees the sender gone)
    # before the copies are counted.
    rely.wait_until(lambda: sink.active == 0, 30, "the sink's sessions to end")
    with sink.lock:
        copies = list(sink.received.get(tok, []))
        aborted = sink.aborted
    with capsys.disabled():
        print(f"\n[reliability runner {target}/{moment}] copies={len(copies)} "
              f"duplicates={len(copies) - 1} aborted_transfers={aborted}")
    assert all(copies), f"a delivered copy is corrupt: {copies}"
