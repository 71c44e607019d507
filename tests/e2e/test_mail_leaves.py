"""Issue 4, "Mail leaves": outbound delivery end to end.

Alice's host (alice.test, 127.0.0.2) takes her mail on submission (STARTTLS + AUTH), queues
it, finds the MX of the recipient's domain in a private dnsmasq and delivers it with SMTP to
the recipient's host (bob.test on 127.0.0.3, carol.test + two.test on 127.0.0.4, or a fake
peer written with asyncio); Bob reads it over POP3. Failures become deferrals visible in
`tern queue list`, or RFC 3464 bounces in Alice's Maildir.

 1  test_alice_to_bob_read_over_pop3         submission -> MX -> SMTP -> POP3
 2  test_receiver_down_deferred_then_flush   deferral, queue list, `tern queue flush ID`
 3  test_unknown_remote_user_bounces_5_1_1   DSN 5.1.1
 3b test_no_bounce_for_null_sender           a <> message that fails is dropped, no DSN
 4  test_nxdomain_bounces_5_1_2              DSN 5.1.2
 5  test_null_mx_bounces_5_1_10              DSN 5.1.10 (RFC 7505)
 6  test_second_mx_when_first_is_down        MX preference order, fallback
 7  test_three_recipients_two_domains        one copy per mailbox
 8  test_misbehaving_remote[...]             garbage, hangup, close after RCPT, 451/550 to DATA
 8b test_multiline_replies                   multi-line replies: sent, and a multi-line 550
 9  test_sigkill_sender_mid_delivery         SIGKILL + restart: nothing lost, at most one dup
10  test_queue_bounce_and_delete             `tern queue bounce ID`, `tern queue delete ID`
11  test_deferred_message_expires            max_queue_lifetime -> DSN, queue empty
12a test_runner_survives_second_sigterm      a second SIGTERM does not cut the runner's cleanup
12b test_idle_runner_stops_promptly          an idle host stops within 3 s of SIGTERM
"""
import os
import re
import signal
import time

import pytest

import e2e_harness as eh
from e2e_harness import (DELIVERY_TIMEOUT, dsn_check, explain, make_message, token,
                         wait_gone, wait_mail, wait_queue, wait_until)

ALICE = "alice@alice.test"
BOB = "bob@bob.test"
ROBERT = "robert@bob.test"
CAROL = "carol@carol.test"
DAVE = "dave@two.test"


# ---- helpers ----------------------------------------------------------------------------------

def log_re(addr):
    """The runner's Postfix-style line for addr (commas between fields tolerated)."""
    return re.compile(rf"to=<{re.escape(addr)}>,? relay=(?P<relay>\S+?),? (?:.*\s)?"
                      rf"delay=(?P<delay>\S+?),? (?:.*\s)?dsn=(?P<dsn>\d\.\d{{1,3}}\.\d{{1,3}}),? "
                      rf"status=(?P<status>sent|deferred|bounced)\b(?P<rest>.*)$")


def wait_logged(host, mark, addr, status, dsn=None, relay_ip=None, timeout=15):
    """Wait for a runner line for addr with status (and dsn, relay [ip]:port) since mark."""
    rx = log_re(addr)

    def find():
        for ln in host.log_since(mark).splitlines():
            m = rx.search(ln)
            if not m or m["status"] != status:
                continue
            if dsn is not None and m["dsn"] != dsn:
                continue
            if relay_ip is not None and f"[{relay_ip}]:{host.mx_port}" not in m["relay"]:
                continue
            return m
        return None

    def describe():
        lines = [ln for ln in host.log_since(mark).splitlines() if f"<{addr}>" in ln]
        want = (f"to=<{addr}> relay=...{f'[{relay_ip}]:{host.mx_port}' if relay_ip else ''} "
                f"delay=... dsn={dsn or 'X.Y.Z'} status={status} (...)")
        return (f"expected a log line `{want}` in {host.name}'s log since the test began; "
                f"lines naming <{addr}>:\n  " + "\n  ".join(lines or ["(none)"]) +
                f"\n--- log tail:\n{host.log_tail(30)}")

    return wait_until(find, timeout, describe)


def wait_deferred(host, qid, rcpt, timeout=DELIVERY_TIMEOUT, min_attempts=1):
    """Wait until rcpt of qid is state=deferred with attempts >= min_attempts and a
    last_error; return its queue entry."""
    def ok(q):
        r = q.get(qid, {}).get("rcpts", {}).get(rcpt)
        return bool(r and r["state"] == "deferred" and (r["attempts"] or 0) >= min_attempts
                    and r["last_error"])

    q = wait_queue(host, ok, timeout,
                   f"expected message {qid} in the queue of {host.name} with <{rcpt}> "
                   f"state=deferred attempts>={min_attempts} last_error=<reason>")
    return q[qid]["rcpts"][rcpt]


def find_dsn(host, addr, tok, timeout=DELIVERY_TIMEOUT, sender_host=None):
    """Wait for the bounce about message tok in addr's Maildir on host; return its bytes."""
    files = wait_until(
        lambda: [p for p in host.find_messages(addr, tok)
                 if b"multipart/report" in p.read_bytes()],
        timeout,
        lambda: explain(sender_host or host,
                        f"expected a delivery status notification (multipart/report) about "
                        f"message {tok} in {addr}'s Maildir {host.maildir(addr)}; files there: "
                        f"{[p.name for p in host.mailbox_files(addr, ('tmp', 'new', 'cur'))]}"))
    assert len(files) == 1, f"{len(files)} bounces about {tok}: {[str(p) for p in files]}"
    return files[0].read_bytes()


def check_bounce(data, rcpt, status, diag_contains=None, to=ALICE):
    """data (a delivered Maildir file) is an RFC 3464 report saying rcpt failed with status.
    status is an exact code ("5.1.1") or a class prefix ("5.", "4.")."""
    assert data.startswith(b"Return-Path: <>\r\n"), \
        f"a bounce must be sent with the null sender; file starts: {data[:200]!r}"
    try:
        summary = dsn_check.check_dsn(data)
    except AssertionError as e:
        raise AssertionError(f"bounce is not a valid RFC 3464 report: {e}\n--- bounce:\n"
                             f"{data[:4000].decode('utf-8', 'replace')}") from None
    msg = summary.msg
    shown = data[:4000].decode("utf-8", "replace")
    assert msg.get_content_type() == "multipart/report", shown
    assert msg.get_param("report-type") == "delivery-status", shown
    assert to in str(msg["To"]), f"bounce To: is {msg['To']!r}, expected {to}\n{shown}"
    groups = [r for r in summary.recipients
              if str(r["Final-Recipient"]).lower().replace(" ", "") == f"rfc822;{rcpt}".lower()]
    assert groups, (f"no per-recipient block with Final-Recipient: rfc822; {rcpt}; blocks: "
                    f"{[dict(r.items()) for r in summary.recipients]}\n{shown}")
    r = groups[0]
    assert str(r["Action"]).lower() == "failed", f"Action: {r['Action']!r}\n{shown}"
    st = str(r["Status"])
    if status.endswith("."):
        assert st.startswith(status), f"Status: {st!r}, expected {status}x.x\n{shown}"
    else:
        assert st == status, f"Status: {st!r}, expected {status}\n{shown}"
    if diag_contains is not None:
        diag = str(r["Diagnostic-Code"] or "")
        assert diag_contains in diag, \
            f"Diagnostic-Code {diag!r} does not contain {diag_contains!r}\n{shown}"
    return r


def submit(host, user, rcpts, tok, sender=None, conn=None):
    msg = make_message(tok, user if sender is None else (sender or "nobody@nowhere.invalid"),
                       rcpts)
    return host.submit(user, rcpts, msg, sender=sender, conn=conn), msg


def queue_cmd_ok(host, *args):
    r = host.queue_cmd(*args)
    assert r.returncode == 0, f"`tern queue {' '.join(args)}` failed on {host.name}: {r!r}"
    return r


def delete_quietly(host, qid):
    try:
        host.queue_cmd("delete", qid)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def send_and_expect(alice, bob, tok=None):
    """The queue still works: a normal Alice -> Bob message is delivered."""
    tok = tok or token()
    qid, _ = submit(alice, ALICE, [BOB], tok)
    wait_mail(bob, BOB, tok, sender_host=alice)
    wait_gone(alice, qid)


# ---- 1: submission -> MX -> SMTP -> POP3 ------------------------------------------------------

def test_alice_to_bob_read_over_pop3(alice, bob):
    """(1) Alice submits over 587 (STARTTLS + AUTH) to bob@bob.test; Bob reads it over POP3."""
    tok = token()
    mark = alice.log_mark()
    qid, msg = submit(alice, ALICE, [BOB], tok)

    def fetch():
        return [m for m in bob.pop3_messages(BOB) if tok.encode() in m]

    got = wait_until(fetch, DELIVERY_TIMEOUT, lambda: explain(
        alice, f"expected Bob to read message {tok} (queue id {qid} on alice) over POP3 on "
               f"{bob.addr}:{bob.ports['pop3']}",
        extra=f"--- log tail of bob:\n{bob.log_tail(20)}"), interval=0.25)
    assert len(got) == 1, f"Bob has {len(got)} copies of {tok}"
    data = got[0]
    assert data.endswith(msg), (f"Bob's copy does not end with the submitted message\n"
                                f"sent: {msg!r}\ngot:  {data[-len(msg) - 100:]!r}")
    assert data.startswith(f"Return-Path: <{ALICE}>\r\n".encode()), data[:200]
    head = data[:len(data) - len(msg)].decode("utf-8", "replace")
    received = re.findall(r"^Received: .*?(?=^\S|\Z)", head, flags=re.M | re.S)
    assert len(received) >= 2, f"expected Received: by bob and by alice, got header:\n{head}"
    assert "by mx.bob.test" in received[0], received
    assert any("by mx.alice.test" in r for r in received[1:]), received
    wait_gone(alice, qid)
    m = wait_logged(alice, mark, BOB, "sent", relay_ip=bob.addr)
    assert m["dsn"].startswith("2."), m.group(0)


# ---- 2: deferral and flush -----------------------------------------------------------------------

def test_receiver_down_deferred_then_flush(own_hosts):
    """(2) The receiver is down: the message is deferred (queue list: state=deferred,
    attempts >= 1, last_error); once it is up, `tern queue flush ID` delivers it at once
    although the sender's next retry is 5 minutes away."""
    later = own_hosts("later", users=["lee@later.test"], start=False)
    patient = own_hosts("patient", users=["pat@patient.test"],
                        queue={"retry_min": "300", "retry_max": "300"})
    tok = token()
    mark = patient.log_mark()
    qid, msg = submit(patient, "pat@patient.test", ["lee@later.test"], tok)
    r = wait_deferred(patient, qid, "lee@later.test")
    print(f"deferred entry: {r['line']}")
    wait_logged(patient, mark, "lee@later.test", "deferred", relay_ip=later.addr)

    later.start()
    mark = patient.log_mark()
    queue_cmd_ok(patient, "flush", qid)
    files = wait_mail(later, "lee@later.test", tok, timeout=20, sender_host=patient)
    assert files[0].read_bytes().endswith(msg)
    wait_gone(patient, qid, timeout=10)
    wait_logged(patient, mark, "lee@later.test", "sent", relay_ip=later.addr)


# ---- 3-5: bounces ----------------------------------------------------------------------------

def test_unknown_remote_user_bounces_5_1_1(alice, bob):
    """(3) Bob's host refuses an unknown user (550 5.1.1): Alice gets an RFC 3464 bounce."""
    tok = token()
    mark = alice.log_mark()
    qid, _ = submit(alice, ALICE, ["nosuch@bob.test"], tok)
    data = find_dsn(alice, ALICE, tok)
    check_bounce(data, "nosuch@bob.test", "5.1.1", diag_contains="550")
    wait_gone(alice, qid)
    wait_logged(alice, mark, "nosuch@bob.test", "bounced", dsn="5.1.1", relay_ip=bob.addr)


def test_no_bounce_for_null_sender(alice, bob):
    """(3b) A message with the null sender that bounces is dropped: no DSN anywhere."""
    tok_null, tok_ref = token(), token()
    mark = alice.log_mark()
    qid_null, _ = submit(alice, ALICE, ["nosuch-null@bob.test"], tok_null, sender="")
    # A reference bounce sent after it: once it is there, a bounce for the first would be too.
    qid_ref, _ = submit(alice, ALICE, ["nosuch-ref@bob.test"], tok_ref)
    find_dsn(alice, ALICE, tok_ref)
    wait_logged(alice, mark, "nosuch-null@bob.test", "bounced", dsn="5.1.1")
    wait_gone(alice, qid_null)
    wait_gone(alice, qid_ref)
    found = eh.th.files_containing(alice.data_dir / "mail", tok_null)
    assert not found, f"a bounce was made for a null-sender message: {[str(p) for p in found]}"
    q = alice.queue()
    nulls = [qid for qid, m in q.items() if "<>" in m["line"]]
    assert not nulls, explain(alice, f"null-sender messages left in the queue: {nulls}")


def test_nxdomain_bounces_5_1_2(alice):
    """(4) The recipient's domain does not exist (NXDOMAIN): bounce 5.1.2."""
    tok = token()
    mark = alice.log_mark()
    qid, _ = submit(alice, ALICE, ["someone@nowhere.test"], tok)
    data = find_dsn(alice, ALICE, tok)
    check_bounce(data, "someone@nowhere.test", "5.1.2")
    wait_gone(alice, qid)
    wait_logged(alice, mark, "someone@nowhere.test", "bounced", dsn="5.1.2")


def test_null_mx_bounces_5_1_10(alice):
    """(5) The recipient's domain has a null MX (RFC 7505): bounce 5.1.10."""
    tok = token()
    mark = alice.log_mark()
    qid, _ = submit(alice, ALICE, ["someone@nullmx.test"], tok)
    data = find_dsn(alice, ALICE, tok)
    check_bounce(data, "someone@nullmx.test", "5.1.10")
    wait_gone(alice, qid)
    wait_logged(alice, mark, "someone@nullmx.test", "bounced", dsn="5.1.10")


# ---- 6-7: MX order, several recipients --------------------------------------------------------

def test_second_mx_when_first_is_down(alice, carol):
    """(6) two.test: MX 10 (127.0.0.6) refuses connections, MX 20 (carol's host) takes it."""
    tok = token()
    mark = alice.log_mark()
    qid, msg = submit(alice, ALICE, [DAVE], tok)
    files = wait_mail(carol, DAVE, tok, sender_host=alice)
    assert len(files) == 1
    assert files[0].read_bytes().endswith(msg)
    wait_gone(alice, qid)
    wait_logged(alice, mark, DAVE, "sent", relay_ip=carol.addr)


def test_three_recipients_two_domains(alice, bob, carol):
    """(7) One message to bob@ and robert@bob.test and carol@carol.test: one copy each."""
    tok = token()
    rcpts = [BOB, ROBERT, CAROL]
    mark = alice.log_mark()
    qid, msg = submit(alice, ALICE, rcpts, tok)
    for host, addr in ((bob, BOB), (bob, ROBERT), (carol, CAROL)):
        wait_mail(host, addr, tok, sender_host=alice)
    wait_gone(alice, qid)   # nothing left to deliver: the counts below are final
    for host, addr in ((bob, BOB), (bob, ROBERT), (carol, CAROL)):
        files = host.find_messages(addr, tok)
        assert len(files) == 1, f"{addr} got {len(files)} copies: {[str(p) for p in files]}"
        assert files[0].read_bytes().endswith(msg), f"{addr}'s copy differs"
        wait_logged(alice, mark, addr, "sent", relay_ip=host.addr)


# ---- 8: misbehaving remote servers --------------------------------------------------------------

MISBEHAVIOURS = [
    # mode, expected outcome, text expected in last_error / Diagnostic-Code
    pytest.param("garbage", "deferred", None, id="garbage-greeting"),
    pytest.param("hangup", "deferred", None, id="closes-without-banner"),
    pytest.param("rcptclose", "deferred", None, id="closes-after-rcpt"),
    pytest.param("data451", "deferred", "451", id="451-to-data"),
    pytest.param("data550", "bounced", "550", id="550-to-data"),
]


@pytest.mark.parametrize("mode,outcome,text", MISBEHAVIOURS)
def test_misbehaving_remote(net, alice, bob, mode, outcome, text):
    """(8) A fake remote MX misbehaves: a clear deferral (state=deferred, reason in
    last_error) or a bounce, and the queue keeps working (a later message to Bob goes out).
    (A peer that never answers is not tested: the runner's timeouts are RFC-long.)"""
    fake = net.fake_server(mode, mode)
    rcpt = f"user@{mode}.test"
    tok = token()
    mark = alice.log_mark()
    qid, _ = submit(alice, ALICE, [rcpt], tok)
    try:
        if outcome == "deferred":
            r = wait_deferred(alice, qid, rcpt)
            print(f"{mode}: {r['line']}")
            assert fake.connections >= 1, f"the runner never connected to the fake {mode} peer"
            if text:
                assert text in r["last_error"], explain(
                    alice, f"expected {text!r} in last_error of <{rcpt}>: {r['line']}")
            wait_logged(alice, mark, rcpt, "deferred", relay_ip=fake.addr)
        else:
            data = find_dsn(alice, ALICE, tok)
            check_bounce(data, rcpt, "5.", diag_contains=text)
            wait_gone(alice, qid)
            wait_logged(alice, mark, rcpt, "bounced", relay_ip=fake.addr)
    finally:
        delete_quietly(alice, qid)
    wait_gone(alice, qid, timeout=10, what=f"`tern queue delete {qid}` did not remove it")
    send_and_expect(alice, bob)


def test_multiline_replies(net, alice, bob):
    """(8b) A peer using multi-line replies for every command: the message is sent; a
    multi-line 550 to RCPT gives a 5.1.1 bounce."""
    fake = net.fake_server("multiline", "multiline")
    tok_ok, tok_rej = token(), token()
    mark = alice.log_mark()
    qid_ok, msg = submit(alice, ALICE, ["ok@multiline.test"], tok_ok)
    qid_rej, _ = submit(alice, ALICE, ["reject@multiline.test"], tok_rej)
    try:
        wait_until(lambda: fake.count(tok_ok) >= 1, DELIVERY_TIMEOUT, lambda: explain(
            alice, f"expected the multi-line peer to receive {tok_ok}",
            extra=f"--- peer transcript:\n{fake.transcript_tail(40)}"))
        wait_gone(alice, qid_ok)
        assert any(d.endswith(msg) for d in fake.all_data()), \
            f"the peer got different bytes: {fake.all_data()!r}"
        wait_logged(alice, mark, "ok@multiline.test", "sent", relay_ip=fake.addr)
        data = find_dsn(alice, ALICE, tok_rej)
        check_bounce(data, "reject@multiline.test", "5.1.1", diag_contains="does not exist")
        wait_gone(alice, qid_rej)
    finally:
        delete_quietly(alice, qid_ok)
        delete_quietly(alice, qid_rej)
    assert fake.count(tok_ok) == 1, f"{fake.count(tok_ok)} copies at the peer"
    send_and_expect(alice, bob)


# ---- 9: SIGKILL during delivery -----------------------------------------------------------------

def test_sigkill_sender_mid_delivery(net, own_hosts):
    """(9) 20 messages go to a slow sink (0.3 s before each 250 to the message); the whole
    sending host is SIGKILLed mid-delivery, restarted and flushed: every message arrives at
    least once and at most twice, and the queue ends empty."""
    sink = net.fake_server("sink", "sink", data_delay=0.3)
    crash = own_hosts("crash", users=["al@crash.test"])
    toks, qids = [], []
    s = crash.submission_login("al@crash.test")
    try:
        for i in range(20):
            tok = token()
            qid, _ = submit(crash, "al@crash.test", [f"u{i}@sink.test"], tok, conn=s)
            toks.append(tok)
            qids.append(qid)
    finally:
        s.quit()

    wait_until(lambda: sink.in_flight >= 1 and len(sink.messages) >= 2, DELIVERY_TIMEOUT,
               lambda: explain(crash, f"expected deliveries to the sink to be under way "
                                      f"(delivered {len(sink.messages)}, in flight "
                                      f"{sink.in_flight})",
                               extra=f"--- sink transcript:\n{sink.transcript_tail(30)}"),
               interval=0.02)
    crash.signal_group(signal.SIGKILL)
    delivered_at_kill = len(sink.messages)
    crash.kill()
    print(f"killed with {delivered_at_kill} of 20 delivered, {sink.in_flight} in flight")
    assert delivered_at_kill < 20, "all 20 were delivered before the kill: nothing was tested"

    # Dead host: every message is either at the sink or still in the queue.
    wait_until(lambda: sink.in_flight == 0, 10, lambda: "sink connections did not close")
    q = crash.queue()
    lost = [(t, qid) for t, qid in zip(toks, qids) if sink.count(t) == 0 and qid not in q]
    assert not lost, explain(crash, f"after SIGKILL these (token, qid) are neither at the "
                                    f"sink nor in the queue: {lost}")

    crash.start()
    queue_cmd_ok(crash, "flush")
    wait_until(lambda: all(sink.count(t) >= 1 for t in toks), 60, lambda: explain(
        crash, f"expected all 20 messages at the sink after restart + flush; missing: "
               f"{[(t, qid) for t, qid in zip(toks, qids) if sink.count(t) == 0]}",
        extra=f"--- sink transcript:\n{sink.transcript_tail(30)}"))
    wait_queue(crash, lambda q: not q, 30, "expected the queue to end empty")
    counts = {t: sink.count(t) for t in toks}
    dups = {t: c for t, c in counts.items() if c > 1}
    print(f"duplicates after the kill: {len(dups)} {dups}")
    assert all(1 <= c <= 2 for c in counts.values()), f"copies per message: {counts}"
    wait_until(lambda: not crash.spool_queue_files(), 10,
               lambda: f"spool/queue files left with an empty queue: "
                       f"{crash.spool_queue_files()}")


# ---- 10-11: admin commands, expiry ------------------------------------------------------------

def test_queue_bounce_and_delete(alice):
    """(10) Two messages deferred (dead.test's only MX refuses connections): `tern queue
    bounce A` returns A to Alice at once; `tern queue delete B` drops B without a bounce."""
    tok_a, tok_b = token(), token()
    qid_a, _ = submit(alice, ALICE, ["x@dead.test"], tok_a)
    qid_b, _ = submit(alice, ALICE, ["y@dead.test"], tok_b)
    try:
        wait_deferred(alice, qid_a, "x@dead.test")
        wait_deferred(alice, qid_b, "y@dead.test")
        queue_cmd_ok(alice, "bounce", qid_a)
        data = find_dsn(alice, ALICE, tok_a, timeout=15)
        # An administrative bounce: Action failed, any 4.x.x/5.x.x status.
        r = check_bounce(data, "x@dead.test", "4." if b"Status: 4." in data else "5.")
        print(f"admin bounce: Status {r['Status']} Diagnostic-Code {r['Diagnostic-Code']}")
        wait_gone(alice, qid_a, timeout=10)
        queue_cmd_ok(alice, "delete", qid_b)
        wait_gone(alice, qid_b, timeout=10)
    finally:
        delete_quietly(alice, qid_a)
        delete_quietly(alice, qid_b)
    # The retry interval is 1-2 s: give a wrongly surviving copy time to bounce.
    time.sleep(2.5)
    found = eh.th.files_containing(alice.data_dir / "mail", tok_b)
    assert not found, f"a deleted message was bounced: {[str(p) for p in found]}"


def test_deferred_message_expires(own_hosts):
    """(11) A message deferred for longer than max_queue_lifetime (4 s here) bounces
    (Action: failed) and leaves the queue."""
    exp = own_hosts("expiry", users=["ed@expiry.test"], queue={"max_queue_lifetime": "4"})
    tok = token()
    t0 = time.monotonic()
    qid, _ = submit(exp, "ed@expiry.test", ["z@dead.test"], tok)
    data = find_dsn(exp, "ed@expiry.test", tok, timeout=30)
    elapsed = time.monotonic() - t0
    assert elapsed >= 3.5, f"bounced after {elapsed:.1f}s, before max_queue_lifetime (4 s)"
    r = check_bounce(data, "z@dead.test", "4." if b"Status: 4." in data else "5.",
                     to="ed@expiry.test")
    print(f"expiry bounce: Status {r['Status']} Diagnostic-Code {r['Diagnostic-Code']}")
    wait_gone(exp, qid, timeout=10)


# ---- 12: the runner and SIGTERM ---------------------------------------------------------------

def runner_pid(host, mark=0):
    """The queue runner's pid, from its `tern/queue[PID]:` log lines since mark."""
    pids = re.findall(r"tern/queue\[(\d+)\]", host.log_since(mark))
    return int(pids[-1]) if pids else None


def runner_up(host):
    """Make the runner of a fresh host log one attempt (x@dead.test is deferred at once),
    so it has certainly installed its signal handlers; then empty the queue. Returns its pid."""
    mark = host.log_mark()
    user = f"{host.name[:3]}@{host.domains[0]}"
    qid, _ = submit(host, user, ["x@dead.test"], token())
    wait_logged(host, mark, "x@dead.test", "deferred")
    queue_cmd_ok(host, "delete", qid)
    wait_gone(host, qid, timeout=10)
    pid = runner_pid(host, mark)
    assert pid, explain(host, "no `tern/queue[PID]` line in the log")
    return pid


def test_runner_survives_second_sigterm(own_hosts):
    """(12a) SIGTERM to the master, then a second SIGTERM straight to the queue runner (as
    `kill` of the whole group or a service manager sends): the runner finishes its cleanup
    and is not reported "killed by signal 15"."""
    h = own_hosts("expiry", users=["exp@expiry.test"])
    pid = runner_up(h)
    mark = h.log_mark()
    os.kill(h.pid, signal.SIGTERM)
    wait_until(lambda: "stopping" in h.log_since(mark), 10,
               lambda: f"the master did not log `stopping`:\n{h.log_tail(10)}")
    time.sleep(0.3)  # let the master's own SIGTERM reach the runner first
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # already gone: nothing to cut short
    rc = h.proc.wait(30)
    text = h.log_since(mark)
    assert rc == 0, f"tern serve exited {rc}:\n{text}"
    assert f"queue runner {pid} killed by signal" not in text, (
        f"a second SIGTERM killed the queue runner during its cleanup (libevent restores "
        f"SIG_DFL when the SIGTERM event is freed after signal(SIGTERM, SIG_IGN)?); log:\n"
        f"{text}")


def test_idle_runner_stops_promptly(own_hosts):
    """(12b) With nothing in flight, SIGTERM stops the whole host (runner included) within
    a few seconds: a restart of the server is not held up by an idle queue runner."""
    h = own_hosts("expiry", users=["exp@expiry.test"])
    pid = runner_up(h)
    mark = h.log_mark()
    t0 = time.monotonic()
    os.kill(h.pid, signal.SIGTERM)
    rc = h.proc.wait(30)
    took = time.monotonic() - t0
    text = h.log_since(mark)
    assert rc == 0, f"tern serve exited {rc}:\n{text}"
    assert f"queue runner {pid} killed by signal" not in text, text
    assert took < 3, (f"an idle host took {took:.1f}s to stop after SIGTERM (the runner waits "
                      f"out its whole grace period with no delivery in flight?); log:\n{text}")
