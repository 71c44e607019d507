"""Failed-login budgets beyond one address, and the cap on password checks in flight.

- Failures for one account from many client addresses (each from its own 127.0.2.x, so no
  per-address record ever grows) are slowed once the account's own allowance
  (login_free_failures_account) is spent.
- The right password is never held longer than the first step (500 ms) before its check:
  neither by the account's record (a fresh address) nor by the record of an address others
  are attacking from (a user behind a shared NAT address).
- Over login_max_inflight checks in flight (over all workers) a login is refused at once
  with the protocol's temporary failure (SMTP 454 4.7.0, POP3 -ERR [SYS/TEMP], IMAP
  NO [UNAVAILABLE]) instead of joining a queue without bound; once they end, logins work.
"""
import base64
import poplib
import smtplib
import threading
import time

import pytest

import tern_harness as th
from imap_raw import RawIMAP

BOB = "bob@example.test"
BOB_PW = th.USERS[BOB]
FIRST_STEP = 0.5


def smtp_auth(inst, pw, source="127.0.0.1", user=BOB):
    """AUTH PLAIN on submission from source; returns (code, seconds for the AUTH alone)."""
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], timeout=60,
                      source_address=(source, 0)) as s:
        s.ehlo()
        ir = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
        t0 = time.monotonic()
        code, _ = s.docmd("AUTH", "PLAIN " + ir)
        return code, time.monotonic() - t0


# delays measured against a first step of 500 ms: hashing under memcheck takes longer
pytestmark = pytest.mark.no_valgrind


def test_account_failures_from_many_addresses_are_slowed(tern_factory):
    inst = tern_factory(users={BOB: BOB_PW},
                        settings={"allow_plaintext_auth_loopback": "yes",
                                  "login_free_failures_account": "3"})
    times = []
    for i in range(7):
        code, dt = smtp_auth(inst, "wrong-password", source=f"127.0.2.{i + 1}")
        assert code == 535, code
        times.append(dt)
    # three failures are free; the 4th goes at hashing speed (it makes the count exceed 3);
    # then 500 ms, 1 s, 2 s, however many addresses the attempts come from (lower bounds
    # only: hashing under ASan on a loaded machine takes 0.1-0.5 s on its own)
    assert times[4] >= 0.45 and times[5] >= 0.95 and times[6] >= 1.95, times
    # the account now asks 4 s of a failure: the right password from a fresh address is
    # answered within the first step (plus its hash, measured by the free attempts)
    code, dt = smtp_auth(inst, BOB_PW, source="127.0.3.1")
    assert code == 235
    assert dt < FIRST_STEP + max(times[:4]) + 0.8, (dt, times)
    # ...while a wrong one from another fresh address still serves the whole delay
    code, dt = smtp_auth(inst, "wrong-again", source="127.0.3.2")
    assert code == 535
    assert dt >= 3.95, dt


def test_right_password_behind_an_attacked_address(tern_factory):
    inst = tern_factory(users={BOB: BOB_PW},
                        settings={"allow_plaintext_auth_loopback": "yes",
                                  "login_free_failures_ip": "2"})
    nat = "127.0.4.1"
    times = []
    for i in range(6):     # spraying other accounts from the shared address
        code, dt = smtp_auth(inst, "guess", source=nat, user=f"nobody{i}@example.test")
        assert code == 535
        times.append(dt)
    assert times[3] >= 0.45 and times[5] >= 1.95, times     # the address is throttled
    # it now asks 4 s of a failure; bob's right password goes after the first step
    code, dt = smtp_auth(inst, BOB_PW, source=nat)
    assert code == 235
    assert dt < FIRST_STEP + max(times[:3]) + 0.8, (dt, times)


def pop3_login(inst, pw):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=30)
    try:
        p.user(BOB)
        return p.pass_(pw).decode()
    except poplib.error_proto as e:
        return e.args[0].decode()
    finally:
        p.close()


def imap_login(inst, pw):
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        _, t = c.cmd(f'LOGIN "{BOB}" "{pw}"', timeout=30)
        return t.decode()
    finally:
        c.close()


def test_inflight_cap_refuses_cleanly(tern_factory):
    inst = tern_factory(users={BOB: BOB_PW}, workers=1,
                        settings={"allow_plaintext_auth_loopback": "yes", "debug": "yes",
                                  "login_free_failures_account": "0",
                                  "login_max_inflight": "2"})
    # make every further failure for bob last 4 s: 0, 0.5, 1, 2 s of delay on the way
    for i in range(4):
        assert smtp_auth(inst, "wrong", source=f"127.0.5.{i + 1}")[0] == 535
    entered = inst.log_text().count("state cmd -> auth")
    results = {}

    def holder(i):
        results[i] = smtp_auth(inst, "wrong", source=f"127.0.6.{i + 1}")

    holders = [threading.Thread(target=holder, args=(i,)) for i in range(2)]
    t0 = time.monotonic()
    for t in holders:
        t.start()
    # both checks are in flight once their sessions are suspended in AUTH (the debug log's
    # state change comes right after the check started)
    deadline = time.monotonic() + 10
    while inst.log_text().count("state cmd -> auth") < entered + 2:
        assert time.monotonic() < deadline, inst.log_tail()
        time.sleep(0.02)
    code, dt = smtp_auth(inst, BOB_PW)
    assert code == 454 and dt < 1.0, (code, dt)
    assert pop3_login(inst, BOB_PW).startswith("-ERR [SYS/TEMP]")
    assert "NO [UNAVAILABLE]" in imap_login(inst, BOB_PW)
    assert time.monotonic() - t0 < 3.5     # all of it while both holders were in flight
    for t in holders:
        t.join(60)
    assert results == {0: (535, results[0][1]), 1: (535, results[1][1])}
    assert "login refused" in inst.log_text() and "login_max_inflight" in inst.log_text()
    # the cap counts checks, not history: with the holders done, logins work again
    assert smtp_auth(inst, BOB_PW)[0] == 235
    assert pop3_login(inst, BOB_PW).startswith("+OK")
