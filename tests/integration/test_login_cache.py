"""The cache of successful logins (auth/login): a repeated login is answered without hashing,
and a password changed or a user deleted by `tern user` in another process ends the cached
login at once (the cache keeps the stored hash it saw and compares it with tern.db's)."""
import smtplib

import tern_harness as th
from tern_harness import assert_reply

ALICE = "alice@example.test"
NEW_PW = "brand-new-Password-9"


def _login(inst, user, pw):
    """SMTP AUTH over loopback plaintext: (code, text)."""
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], local_hostname="c.example.net",
                      timeout=th.IO_TIMEOUT) as s:
        s.ehlo()
        try:
            return s.login(user, pw)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, e.smtp_error


def test_cached_login_ends_with_passwd_and_del(tern_factory):
    # one worker: the second login meets the first one's cache entry
    inst = tern_factory(workers=1, settings={"allow_plaintext_auth_loopback": "yes",
                                             "debug": "yes"})
    assert _login(inst, ALICE, th.USERS[ALICE])[0] == 235
    assert "answered from the cache" not in inst.log_text()
    assert _login(inst, ALICE, th.USERS[ALICE])[0] == 235
    assert inst.log_text().count("answered from the cache") == 1
    # a wrong password is never answered from the cache
    assert_reply(_login(inst, ALICE, "not-the-password"), 535, "5.7.8")

    r = inst.cli("user", "passwd", ALICE, stdin=NEW_PW + "\n")
    assert r.returncode == 0, r
    assert_reply(_login(inst, ALICE, th.USERS[ALICE]), 535, "5.7.8")
    assert _login(inst, ALICE, NEW_PW)[0] == 235
    assert _login(inst, ALICE, NEW_PW)[0] == 235
    assert inst.log_text().count("answered from the cache") == 2

    r = inst.cli("user", "del", ALICE)
    assert r.returncode == 0, r
    assert_reply(_login(inst, ALICE, NEW_PW), 535, "5.7.8")
    assert inst.log_text().count("answered from the cache") == 2
