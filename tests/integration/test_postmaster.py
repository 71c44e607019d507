"""RCPT TO:<postmaster> (no domain, any case) and postmaster@ each local domain are always
accepted, without AUTH, on the smtp role (RFC 5321 §4.5.1), even when no user or alias of
that name exists: they go to the `postmaster` key's address, else to postmaster@ the first
domain, else to the oldest user."""
import tern_harness as th
from tern_harness import make_message, token

ALICE = "alice@example.test"    # added first by the fixtures: the oldest user
BOB = "bob@example.test"

FORMS = ("<postmaster>", "<PostMaster>", "<postmaster@example.test>",
         "<POSTMASTER@Other.Test>")


def deliver_to_postmaster(inst, form):
    tok = token()
    with inst.raw("smtp") as c:
        assert c.cmd("MAIL FROM:<someone@elsewhere.example>")[0] == 250
        code, lines = c.cmd(f"RCPT TO:{form}")
        assert code == 250, (form, code, lines)
        assert c.cmd("DATA")[0] == 354
        c.send(make_message(tok, to="postmaster@example.test") + b".\r\n")
        assert c.read_reply()[0] == 250
    return tok


def test_postmaster_defaults_to_the_oldest_user(tern_factory):
    inst = tern_factory()
    for form in FORMS:
        inst.wait_message(ALICE, deliver_to_postmaster(inst, form))
    assert inst.find_messages(BOB, "postmaster@") == []
    # a postmaster@ the first domain that exists (an alias) is used for all domains' postmaster
    assert inst.cli("alias", "add", "postmaster@example.test", BOB).returncode == 0
    inst.wait_message(BOB, deliver_to_postmaster(inst, "<postmaster@other.test>"))
    inst.wait_message(BOB, deliver_to_postmaster(inst, "<postmaster>"))
    # other unknown local parts are still unknown
    with inst.raw("smtp") as c:
        assert c.cmd("MAIL FROM:<someone@elsewhere.example>")[0] == 250
        assert c.cmd("RCPT TO:<postmasterx@example.test>")[0] == 550
        assert c.cmd("RCPT TO:<abuse@example.test>")[0] == 550


def test_postmaster_key(tern_factory):
    inst = tern_factory(settings={"postmaster": "Bob@Example.test"})
    for form in FORMS:
        inst.wait_message(BOB, deliver_to_postmaster(inst, form))
    assert inst.find_messages(ALICE, "postmaster@") == []


def test_postmaster_key_must_be_an_address(tern_factory):
    inst = tern_factory(start=False, provision=False, settings={"postmaster": "bob"})
    r = inst.cli("user", "list")
    assert r.returncode != 0 and "postmaster" in r.stderr, r
