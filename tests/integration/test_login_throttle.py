"""The failed-login throttle holds on every way in (SMTP AUTH PLAIN and LOGIN, POP3 USER/PASS
and AUTH, IMAP LOGIN and AUTHENTICATE): after the free failures for one (address, account),
the next wrong password is answered only after a delay (500 ms, doubling). Each check runs
in a fresh instance so that the counts of one do not leak into another."""
import base64
import poplib
import smtplib
import time

import pytest

import tern_harness as th
from imap_raw import RawIMAP

# serial: run apart from the parallel (xdist) run, on a machine to themselves (timing: throttle delays of 500 ms, doubling)
pytestmark = pytest.mark.serial

BOB = "bob@example.test"
FREE = 2            # login_free_failures (default)


def smtp_plain(inst, pw):
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], timeout=30) as s:
        s.ehlo()
        s.user, s.password = BOB, pw
        return s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{BOB}\0{pw}".encode()).decode())[0]


def smtp_login(inst, pw):
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], timeout=30) as s:
        s.ehlo()
        s.docmd("AUTH", "LOGIN")
        s.docmd(base64.b64encode(BOB.encode()).decode())
        return s.docmd(base64.b64encode(pw.encode()).decode())[0]


def pop3_pass(inst, pw):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=30)
    try:
        p.user(BOB)
        p.pass_(pw)
        return "+OK"
    except poplib.error_proto as e:
        return e.args[0][:4].decode()
    finally:
        p.close()


def pop3_auth(inst, pw):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=30)
    try:
        r = p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{BOB}\0{pw}".encode()).decode())
        return r[:3].decode()
    except poplib.error_proto as e:
        return e.args[0][:4].decode()
    finally:
        p.close()


def imap_login(inst, pw):
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        _, t = c.cmd(f'LOGIN "{BOB}" "{pw}"', timeout=30)
        return t.split(b" ", 2)[1].decode()
    finally:
        c.close()


def imap_authenticate(inst, pw):
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        ir = base64.b64encode(f"\0{BOB}\0{pw}".encode()).decode()
        _, t = c.cmd(f"AUTHENTICATE PLAIN {ir}", timeout=30)
        return t.split(b" ", 2)[1].decode()
    finally:
        c.close()


PATHS = {
    "smtp-plain": (smtp_plain, 535),
    "smtp-login": (smtp_login, 535),
    "pop3-pass": (pop3_pass, "-ERR"),
    "pop3-auth": (pop3_auth, "-ERR"),
    "imap-login": (imap_login, "NO"),
    "imap-authenticate": (imap_authenticate, "NO"),
}


@pytest.mark.no_valgrind  # a free attempt must take < 0.45 s: yescrypt under memcheck takes longer
@pytest.mark.parametrize("path", sorted(PATHS))
def test_failures_are_throttled(tern_factory, path):
    inst = tern_factory(users={BOB: th.USERS[BOB]},
                        settings={"allow_plaintext_auth_loopback": "yes"})
    attempt, refused = PATHS[path]
    times = []
    for _ in range(FREE + 3):
        t0 = time.monotonic()
        assert attempt(inst, "wrong-password") == refused
        times.append(time.monotonic() - t0)
    # after FREE recorded failures the next attempt still goes at hashing speed (it is
    # the one that makes the count exceed FREE); the ones after wait 500 ms, then 1 s
    # (relative to the free attempts: hashing alone takes 0.1-0.7 s under ASan on a loaded
    # machine, so a fixed bound fails without any delay)
    assert times[FREE] < max(times[:FREE]) + 0.3, (path, times)
    assert times[FREE + 1] >= 0.45 and times[FREE + 2] >= 0.9, (path, times)
    # the right password still works afterwards (after its own delay)
    right = {"smtp-plain": 235, "smtp-login": 235, "pop3-pass": "+OK", "pop3-auth": "+OK",
             "imap-login": "OK", "imap-authenticate": "OK"}[path]
    assert attempt(inst, th.USERS[BOB]) == right, path
