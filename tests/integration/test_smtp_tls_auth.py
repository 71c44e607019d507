"""Submission (587, STARTTLS + AUTH) and submissions (465, implicit TLS): TLS, SASL PLAIN and
LOGIN with and without initial response, refusal before TLS, wrong passwords, relay policy,
queueing of remote recipients, swaks."""
import base64
import shutil
import smtplib
import subprocess
import time

import pytest

import tern_harness as th
from tern_harness import USERS, assert_reply, check_delivered, make_message, token

# A message submitted without Date: gets one from the server (test_smtp_cleanup.py); these
# tests compare stored bytes with sent ones, so they send a complete message.
SUBMIT_DATE = b"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n"

ALICE = "alice@example.test"
BOB = "bob@example.test"


def ehlo_keywords(lines):
    kw = {}
    for line in lines[1:]:
        parts = line.split(None, 1)
        kw[parts[0].upper()] = parts[1] if len(parts) > 1 else ""
    return kw


def test_submission_ehlo_before_and_after_tls(server):
    with server.raw("submission") as c:
        code, lines = c.cmd("EHLO client.example.net")
        kw = ehlo_keywords(lines)
        assert "STARTTLS" in kw, lines
        assert "AUTH" not in kw, f"AUTH advertised before TLS on 587: {lines}"
        c.starttls()
        code, lines = c.cmd("EHLO client.example.net")
        assert code == 250, lines
        kw = ehlo_keywords(lines)
        assert "STARTTLS" not in kw, f"STARTTLS advertised after TLS: {lines}"
        mechs = kw.get("AUTH", "").upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, f"AUTH PLAIN LOGIN not advertised: {lines}"
        for ext in ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "CHUNKING"):
            assert ext in kw, f"{ext} missing after TLS: {lines}"
        # A second STARTTLS inside TLS is refused.
        code, lines = c.cmd("STARTTLS")
        assert 500 <= code < 600, f"STARTTLS inside TLS: {code} {lines}"


def test_submissions_ehlo(server):
    with server.raw("submissions", ehlo=False) as c:
        code, lines = c.cmd("EHLO client.example.net")
        assert code == 250, lines
        kw = ehlo_keywords(lines)
        assert "STARTTLS" not in kw, f"STARTTLS advertised on implicit TLS port: {lines}"
        mechs = kw.get("AUTH", "").upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, lines


@pytest.mark.parametrize("role", ["submission", "smtp"])
def test_auth_refused_before_tls(server, role):
    with server.raw(role) as c:
        user, pw = ALICE, USERS[ALICE]
        code, lines = c.cmd("AUTH PLAIN " + th.auth_plain_b64(user, pw))
        assert 500 <= code < 600, f"AUTH PLAIN before TLS on {role}: {code} {lines}"
        assert code != 235
        assert_reply((code, lines), "5xx")
        code, lines = c.cmd("AUTH LOGIN")
        assert 500 <= code < 600, f"AUTH LOGIN before TLS on {role}: {code} {lines}"
        # Not authenticated: relaying is still refused.
        code, lines = c.cmd("MAIL FROM:<alice@example.test>")
        if code == 250:
            code, lines = c.cmd("RCPT TO:<remote@elsewhere.test>")
        assert 500 <= code < 600, f"relay after refused AUTH: {code} {lines}"


def _auth(s, mech, user, password, initial):
    s.user, s.password = user, password
    obj = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
    return s.auth(mech, obj, initial_response_ok=initial)


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "challenge"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_auth_mechanisms_on_587(server, mech, initial):
    tok = token()
    msg = make_message(tok, sender=ALICE, to=BOB, extra_headers=SUBMIT_DATE)
    with server.smtp("submission") as s:
        s.ehlo()
        s.starttls(context=th.tls_context())
        s.ehlo()
        code, resp = _auth(s, mech, ALICE, USERS[ALICE], initial)
        assert_reply((code, resp), 235, "2.7.0")
        assert s.sendmail(ALICE, [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], ALICE, msg, with_proto="ESMTPSA")


def test_smtplib_login_587(server):
    tok = token()
    msg = make_message(tok, sender=ALICE, to=BOB, extra_headers=SUBMIT_DATE)
    with server.submission_login() as s:
        assert s.sendmail(ALICE, [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], ALICE, msg, with_proto="ESMTPSA")


def test_raw_auth_plain_after_starttls(server):
    """Byte-level: AUTH PLAIN with an empty initial response ("=") -> 334, then the blob."""
    with server.raw("submission") as c:
        c.starttls()
        assert c.cmd("EHLO client.example.net")[0] == 250
        code, lines = c.cmd("AUTH PLAIN")
        assert code == 334, lines
        assert_reply(c.cmd(th.auth_plain_b64(BOB, USERS[BOB])), 235, "2.7.0")
        code, lines = c.cmd("AUTH PLAIN " + th.auth_plain_b64(BOB, USERS[BOB]))
        assert_reply((code, lines), 503, "5.5.1")


def test_auth_cancel(server):
    with server.raw("submission") as c:
        c.starttls()
        assert c.cmd("EHLO client.example.net")[0] == 250
        code, lines = c.cmd("AUTH LOGIN")
        assert code == 334, lines
        assert base64.b64decode(lines[0]).lower().startswith(b"user"), lines
        code, lines = c.cmd("*")
        assert_reply((code, lines), 501)
        # Still not authenticated
        code, lines = c.cmd("MAIL FROM:<alice@example.test>")
        if code == 250:
            code, lines = c.cmd("RCPT TO:<remote@elsewhere.test>")
        assert 500 <= code < 600, (code, lines)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password(server, mech):
    with server.smtp("submission") as s:
        s.ehlo()
        s.starttls(context=th.tls_context())
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            _auth(s, mech, ALICE, "not-the-password", True)
        assert_reply((ei.value.smtp_code, ei.value.smtp_error), 535, "5.7.8")
        # Unknown user: the same answer, no user enumeration.
        with pytest.raises(smtplib.SMTPAuthenticationError) as ei:
            _auth(s, mech, "nobody-here@example.test", "whatever", True)
        assert_reply((ei.value.smtp_code, ei.value.smtp_error), 535, "5.7.8")
        # And the right one still works on the same connection.
        code, resp = _auth(s, mech, ALICE, USERS[ALICE], True)
        assert code == 235, resp


def test_submissions_implicit_tls(server):
    tok = token()
    msg = make_message(tok, sender=ALICE, to=BOB, extra_headers=SUBMIT_DATE)
    with server.smtp("submissions") as s:
        code, _ = s.ehlo()
        assert code == 250
        assert not s.has_extn("starttls")
        s.login(ALICE, USERS[ALICE])
        assert s.sendmail(ALICE, [BOB], msg) == {}
    check_delivered(server.wait_message(BOB, tok)[0], ALICE, msg, with_proto="ESMTPSA")


def test_relay_refused_on_587_without_auth(server):
    with server.raw("submission") as c:
        c.starttls()
        assert c.cmd("EHLO client.example.net")[0] == 250
        code, lines = c.cmd("MAIL FROM:<alice@example.test>")
        if code == 250:
            assert_reply(c.cmd("RCPT TO:<remote@elsewhere.test>"), 554, "5.7.1")
        else:
            assert_reply((code, lines), 530, "5.7.0")
    with server.raw("submission") as c:  # and without TLS either
        code, lines = c.cmd("MAIL FROM:<alice@example.test>")
        if code == 250:
            assert_reply(c.cmd("RCPT TO:<remote@elsewhere.test>"), 554, "5.7.1")
        else:
            assert_reply((code, lines), "5xx")


def parse_queue_list(text):
    """[(header_line, [recipient lines])] from `tern queue list`."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if entries:
                entries[-1][1].append(line)
        else:
            entries.append((line, []))
    return entries


def queued_entry(inst, sender, rcpt, timeout=20):
    """Poll `tern queue list` until an entry from sender to <rcpt> appears; return it."""
    deadline = time.monotonic() + timeout
    while True:
        out = inst.queue_list()
        for head, rcpts in parse_queue_list(out):
            if sender in head and any(f"<{rcpt}>" in r for r in rcpts):
                return head, rcpts, out
        if time.monotonic() > deadline:
            raise AssertionError(f"no queue entry from {sender} to <{rcpt}> in "
                                 f"`tern queue list`:\n{out}")
        time.sleep(0.1)


def test_submission_remote_recipient_queued(server):
    tok = token()
    remote = f"remote-{tok}@elsewhere.test"
    msg = make_message(tok, sender=ALICE, to=f"{remote}, {BOB}", extra_headers=SUBMIT_DATE)
    with server.submission_login() as s:
        assert s.sendmail(ALICE, [remote, BOB], msg) == {}
    head, rcpts, out = queued_entry(server, ALICE, remote)
    assert head.split()[0], out
    assert not any(f"<{BOB}>" in r for r in rcpts), f"local recipient left in queue:\n{out}"
    check_delivered(server.wait_message(BOB, tok)[0], ALICE, msg, with_proto="ESMTPSA")


def _swaks(args):
    r = subprocess.run(["swaks"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace")


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
@pytest.mark.parametrize("mode,mech", [("starttls", "PLAIN"), ("starttls", "LOGIN"),
                                       ("implicit", "PLAIN")])
def test_swaks_auth(server, mode, mech):
    tok = token()
    if mode == "starttls":
        conn = ["-tls", "--server", f"127.0.0.1:{server.ports['submission']}"]
    else:
        conn = ["--tls-on-connect", "--server", f"127.0.0.1:{server.ports['submissions']}"]
    rc, out = _swaks(conn + ["--auth", mech, "--auth-user", ALICE,
                             "--auth-password", USERS[ALICE], "--from", ALICE, "--to", BOB,
                             "--helo", "client.example.net",
                             "--header", f"Subject: swaks {tok}", "--body", f"body {tok}"])
    assert rc == 0, f"swaks exit {rc}:\n{out}"
    files = server.wait_message(BOB, tok)
    rp, received, body = th.split_delivered(files[0].read_bytes())
    assert rp == f"Return-Path: <{ALICE}>".encode()
    assert "with ESMTPSA" in th.unfold(received), received
    assert f"Subject: swaks {tok}".encode() in body


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed")
def test_swaks_wrong_password(server):
    rc, out = _swaks(["-tls", "--server", f"127.0.0.1:{server.ports['submission']}",
                      "--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", "wrong",
                      "--from", ALICE, "--to", BOB])
    assert rc != 0, out
    assert "535 5.7.8" in out, out


def test_auth_plain_authzid_impersonation_refused(server):
    """AUTH PLAIN with alice's credentials but authzid bob must not log in as bob."""
    blob = base64.b64encode(f"{BOB}\0{ALICE}\0{USERS[ALICE]}".encode()).decode()
    with server.raw("submissions") as c:
        code, lines = c.cmd("AUTH PLAIN " + blob)
        if code == 235:
            # Accepted as alice (authzid ignored) would be wrong too: tell which.
            pytest.fail(f"AUTH PLAIN with authzid={BOB} authcid={ALICE} accepted: {lines}")
        assert 500 <= code < 600, (code, lines)
        # Same identity in both fields is fine.
        blob = base64.b64encode(f"{ALICE}\0{ALICE}\0{USERS[ALICE]}".encode()).decode()
        assert_reply(c.cmd("AUTH PLAIN " + blob), 235, "2.7.0")


@pytest.mark.parametrize("blob", ["!!!notbase64", "AGFsaWNl", "=", "AA=="],
                         ids=["junk", "no-password", "empty", "nul-only"])
def test_auth_malformed_responses(server, blob):
    with server.raw("submissions") as c:
        code, lines = c.cmd("AUTH PLAIN " + blob)
        if code == 334:  # "=" is an empty initial response: the server may ask again
            code, lines = c.cmd("*")
        assert 500 <= code < 600, f"malformed AUTH PLAIN {blob!r}: {code} {lines}"
        assert_reply((code, lines), "5xx")
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("AUTH PLAIN " + th.auth_plain_b64(ALICE, USERS[ALICE])),
                     235, "2.7.0")


def test_mail_before_auth_then_auth_refused_mid_transaction(server):
    with server.raw("submissions") as c:
        code, lines = c.cmd("MAIL FROM:<alice@example.test>")
        if code != 250:
            return  # the server insists on AUTH first: also fine
        code, lines = c.cmd("AUTH PLAIN " + th.auth_plain_b64(ALICE, USERS[ALICE]))
        assert_reply((code, lines), 503, "5.5.1")
