"""An authenticated client may use as MAIL FROM only its own address, its aliases and the
senders listed for it with `tern user senders` (sender_login_match, on by default, like
Postfix's reject_sender_login_mismatch): anything else is `553 5.7.1`; the null sender
stays allowed. Submission over STARTTLS with smtplib, as a mail client does."""
import smtplib

import tern_harness as th
from tern_harness import make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"


def mail_from(inst, sender, user=ALICE):
    """MAIL FROM sender after logging in as user; the reply code (the transaction is reset)."""
    s = inst.submission_login(user)
    try:
        code, msg = s.mail(sender)
        return code, msg.decode()
    finally:
        s.quit()


def send_as(inst, sender, user=ALICE, to=BOB, header_from=None):
    """A whole submission as user with MAIL FROM sender (and From: header_from, default
    the sender); waits for the delivery."""
    tok = token()
    s = inst.submission_login(user)
    try:
        s.sendmail(sender, [to], make_message(tok, sender=header_from or sender or user, to=to))
    finally:
        s.quit()
    inst.wait_message(to, tok)


def data_refused(inst, header_from, sender=ALICE, user=ALICE):
    """Submit with this From: header; the SMTPDataError's (code, text)."""
    s = inst.submission_login(user)
    try:
        s.sendmail(sender, [BOB], make_message(token(), sender=header_from))
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.close()
    raise AssertionError(f"From: {header_from} accepted")


def test_own_address_aliases_and_listed_senders(tern_factory):
    inst = tern_factory()
    # its own address, in any case, and the null sender
    send_as(inst, ALICE)
    send_as(inst, ALICE, header_from=BOB)     # the From: check is off by default
    assert mail_from(inst, "Alice@Example.TEST")[0] == 250
    send_as(inst, "")
    # another local user, a foreign address, an unknown local one: refused
    for other in (BOB, "someone@elsewhere.example", "nobody@example.test",
                  "alice@other.test"):
        code, msg = mail_from(inst, other)
        assert code == 553 and msg.startswith("5.7.1"), (other, code, msg)
    try:
        s = inst.submission_login(ALICE)
        s.sendmail(BOB, [BOB], make_message(token(), sender=BOB))
        raise AssertionError("sendmail as bob succeeded")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 553
    finally:
        s.close()
    assert "sender denied user=alice@example.test from=<bob@example.test>" in inst.log_text()
    # an alias of hers (alone or among other targets) is hers; bob's is not
    assert inst.cli("alias", "add", "a.liddell@example.test", ALICE).returncode == 0
    assert inst.cli("alias", "add", "team@example.test", ALICE, BOB).returncode == 0
    assert inst.cli("alias", "add", "robert@example.test", BOB).returncode == 0
    send_as(inst, "a.liddell@example.test")
    assert mail_from(inst, "team@example.test")[0] == 250
    assert mail_from(inst, "team@example.test", user=BOB)[0] == 250
    assert mail_from(inst, "robert@example.test")[0] == 553
    # exceptions per user: addresses and whole domains, taken at once by the running server
    r = inst.cli("user", "senders", ALICE, "Alice@Elsewhere.example", "@lists.example.test")
    assert r.returncode == 0, r
    shown = inst.cli("user", "senders", ALICE)
    assert shown.stdout.split() == ["alice@elsewhere.example", "@lists.example.test"], shown
    send_as(inst, "alice@elsewhere.example")
    assert mail_from(inst, "announce@lists.example.test")[0] == 250
    assert mail_from(inst, "alice@elsewhere.example", user=BOB)[0] == 553
    assert mail_from(inst, BOB)[0] == 553
    assert inst.cli("user", "senders", ALICE, "none").returncode == 0
    assert inst.cli("user", "senders", ALICE).stdout == ""
    assert mail_from(inst, "alice@elsewhere.example")[0] == 553
    # bad input to the CLI
    assert inst.cli("user", "senders", ALICE, "not an address").returncode != 0
    assert inst.cli("user", "senders", "ghost@example.test", "x@y.example").returncode != 0


def test_switch_off_allows_any_sender(tern_factory):
    inst = tern_factory(settings={"sender_login_match": "no"})
    send_as(inst, BOB)
    send_as(inst, "someone@elsewhere.example")


def test_unauthenticated_smtp_is_not_affected(tern_factory):
    """Mail from outside on port 25 is not a login: its MAIL FROM is not checked here."""
    inst = tern_factory()
    tok = token()
    with inst.smtp() as s:
        s.sendmail("someone@elsewhere.example", [BOB], make_message(tok))
    inst.wait_message(BOB, tok)


def test_from_header_check(tern_factory):
    inst = tern_factory(settings={"sender_login_match_header": "yes"})
    assert inst.cli("alias", "add", "a.liddell@example.test", ALICE).returncode == 0
    send_as(inst, ALICE)
    send_as(inst, ALICE, header_from="a.liddell@example.test")
    send_as(inst, "", header_from=ALICE)
    for other in (BOB, "someone@elsewhere.example", f"{ALICE}>, <{BOB}", "undisclosed"):
        code, text = data_refused(inst, other)
        assert code == 550 and text.startswith("5.7.1"), (other, code, text)
    # the session goes on: the next message is fine
    send_as(inst, ALICE)
    assert "header_from=<bob@example.test>" in inst.log_text()
