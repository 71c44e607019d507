"""The inbound pipeline end to end, on the smtp role from an unauthenticated client, with a
private dnsmasq serving SPF and DMARC records: Authentication-Results with spf=pass/fail and
dmarc; a forged From with SPF fail and p=reject refused 550 5.7.1 at the end of data;
p=quarantine delivered into Junk (read with imaplib); forged A-R fields claiming our
authserv-id removed, others kept; several From domains refused; submission untouched; SRS:
an alias forwarding to a remote sink gets an SRS0 sender (locals keep the original), a bounce
to that address reaches the original sender, forged and expired SRS addresses get 550."""
import base64
import hashlib
import hmac
import imaplib
import re
import smtplib
import subprocess
import time

import dkim

import pytest

import tern_harness as th
from dnszone import Dnsmasq
from smtp_sink import relay_peer

CLIENT = "127.0.0.5"
BOB = "bob@example.test"
ALICE = "alice@example.test"
SECRET = "a test secret for srs, long enough"

ZONE = [
    'txt-record=good.test,"v=spf1 ip4:127.0.0.5 -all"',
    'txt-record=_dmarc.good.test,"v=DMARC1; p=reject"',
    'txt-record=bad.test,"v=spf1 ip4:10.0.0.1 -all"',
    'txt-record=explained.test,"v=spf1 -all exp=why.explained.test"',
    'txt-record=why.explained.test,"%{i} may not send for %{d}"',
    'txt-record=reject.test,"v=spf1 -all"',
    'txt-record=_dmarc.reject.test,"v=DMARC1; p=reject"',
    'txt-record=quarantine.test,"v=spf1 -all"',
    'txt-record=_dmarc.quarantine.test,"v=DMARC1; p=quarantine"',
    'txt-record=_dmarc.orgpol.test,"v=DMARC1; p=none; sp=reject"',
    "host-record=probe.test,127.0.0.1",
    # DKIM decides: SPF fails for signed.test, DMARC p=reject passes only through an aligned
    # DKIM signature (the key record is added below, made when the module loads)
    'txt-record=signed.test,"v=spf1 -all"',
    'txt-record=_dmarc.signed.test,"v=DMARC1; p=reject"',
]


def _dkim_key():
    """An RSA key (PEM) and its key record's p= value (1024 bits: one TXT string)."""
    pem = subprocess.run(["openssl", "genrsa", "1024"], check=True, capture_output=True,
                         timeout=60).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem,
                         check=True, capture_output=True, timeout=60).stdout
    return pem, base64.b64encode(der).decode()


DKIM_PEM, DKIM_P = _dkim_key()
ZONE.append(f'txt-record=sel._domainkey.signed.test,"v=DKIM1; k=rsa; p={DKIM_P}"')


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), ZONE).start()
    peer = relay_peer()
    inst = th.TernInstance(
        tmp_path_factory.mktemp("tern-inbound"),
        extra_config=f"[inbound]\nsrs_secret = {SECRET}\nsrs_max_age = 10\n"
                     f"[routes]\nsender.test = 127.0.0.1:{peer.port}\n"
                     f"remote.test = 127.0.0.1:{peer.port}\n")
    try:
        for u in (BOB, ALICE):
            inst.add_user(u, "pw-" + u.split("@")[0] + "-123")
        r = inst.cli("alias", "add", "fwd@example.test", ALICE, "dave@remote.test")
        assert r.returncode == 0, r
        r = inst.cli("alias", "add", "gone@example.test", "reject-erin@remote.test")
        assert r.returncode == 0, r
        inst.dns_port = d.port
        inst.write_config()
        inst.start()
        yield inst, peer
    finally:
        try:
            inst.stop()
            reports = inst.sanitizer_reports()
        finally:
            inst.cleanup()
            peer.close()
            d.stop()
    assert not reports, inst.log_tail(100)


def send(inst, sender, rcpts, msg, helo="client.test"):
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], local_hostname=helo,
                      source_address=(CLIENT, 0), timeout=th.IO_TIMEOUT) as s:
        return s.sendmail(sender, rcpts, msg)


def header_of(path):
    return path.read_bytes().split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")


def authres_fields(head):
    """Every Authentication-Results field, unfolded, in order."""
    return [th.unfold(m.group(0).encode()) for m in
            re.finditer(r"^Authentication-Results:.*?(?=\r\n\S|\Z)", head, re.M | re.S)]


def test_spf_pass_and_dmarc_pass(env):
    inst, _ = env
    tok = th.token()
    send(inst, "news@good.test", [BOB], th.make_message(tok, sender="news@good.test"))
    head = header_of(inst.wait_message(BOB, tok)[0])
    ar = authres_fields(head)
    assert len(ar) == 1, head
    assert ar[0].startswith("Authentication-Results: mx.example.test;"), ar
    assert "spf=pass smtp.mailfrom=news@good.test" in ar[0], ar
    assert "dkim=none" in ar[0], ar
    assert "dmarc=pass (p=reject dis=none) header.from=good.test" in ar[0], ar
    # on top: right after our Return-Path, above our Received
    lines = head.split("\r\n")
    assert lines[0].startswith("Return-Path:") and lines[1].startswith("Authentication-Results:")


def test_spf_fail_without_dmarc_is_delivered(env):
    inst, _ = env
    tok = th.token()
    send(inst, "x@bad.test", [BOB], th.make_message(tok, sender="x@bad.test"))
    ar = authres_fields(header_of(inst.wait_message(BOB, tok)[0]))
    assert "spf=fail smtp.mailfrom=x@bad.test" in ar[0], ar
    assert "dmarc=none header.from=bad.test" in ar[0], ar


def test_forged_from_with_reject_policy_is_refused(env):
    inst, _ = env
    tok = th.token()
    msg = th.make_message(tok, sender="ceo@reject.test")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(inst, "ceo@reject.test", [BOB], msg)
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1"), e.value
    # and with an SPF pass for another domain: DMARC still fails (not aligned)
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(inst, "news@good.test", [BOB], th.make_message(tok, sender="ceo@reject.test"))
    assert e.value.smtp_code == 550
    # a subdomain without a record of its own gets the organisational domain's sp=
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(inst, "x@bad.test", [BOB], th.make_message(tok, sender="x@mail.orgpol.test"))
    assert e.value.smtp_code == 550
    time.sleep(0.5)
    assert not inst.find_messages(BOB, tok)


def test_quarantine_lands_in_junk(env):
    inst, _ = env
    tok = th.token()
    send(inst, "ceo@quarantine.test", [BOB], th.make_message(tok, sender="ceo@quarantine.test"))
    imap = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context())
    try:
        imap.login(BOB, "pw-bob-123")
        deadline = time.monotonic() + 20
        found = []
        while time.monotonic() < deadline and not found:
            typ, _ = imap.select("Junk")
            assert typ == "OK"
            typ, data = imap.search(None, "SUBJECT", tok)
            found = data[0].split()
            if not found:
                time.sleep(0.2)
        assert found, "not in Junk"
        typ, data = imap.fetch(found[0], "(BODY.PEEK[HEADER])")
        assert b"dmarc=fail (p=quarantine dis=quarantine) header.from=quarantine.test" in \
            data[0][1].replace(b"\r\n\t", b" ")
        typ, data = imap.list('""', "Junk")
        assert b"\\Junk" in data[0], data
        imap.select("INBOX")
        typ, data = imap.search(None, "SUBJECT", tok)
        assert data[0].split() == []
    finally:
        imap.logout()


def test_forged_authres_removed(env):
    inst, _ = env
    tok = th.token()
    extra = (b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=ceo@good.test;\r\n"
             b"\tdmarc=pass header.from=good.test\r\n"
             b"Authentication-Results: other.example; dkim=pass header.d=x.example\r\n"
             b"authentication-results: (comment) MX.EXAMPLE.TEST ; dkim=pass\r\n")
    msg = th.make_message(tok, sender="x@bad.test", extra_headers=extra)
    send(inst, "x@bad.test", [BOB], msg)
    head = header_of(inst.wait_message(BOB, tok)[0])
    ar = authres_fields(head)
    ours = [a for a in ar if re.match(r"Authentication-Results: mx\.example\.test;", a, re.I)]
    assert len(ours) == 1 and "spf=fail" in ours[0], ar
    assert any("other.example" in a for a in ar), ar
    assert "MX.EXAMPLE.TEST" not in head and "ceo@good.test" not in head, head
    # the rest of the message is as sent
    assert head.endswith(f"Message-ID: <{tok}@client.example.net>\r\n"
                         "Authentication-Results: other.example; dkim=pass header.d=x.example")


def test_several_from_domains_refused(env):
    inst, _ = env
    tok = th.token()
    msg = th.make_message(tok, sender="news@good.test").replace(
        b"From: <news@good.test>", b"From: <news@good.test>, <x@bad.test>")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(inst, "news@good.test", [BOB], msg)
    assert e.value.smtp_code == 550 and b"6.6.1" in e.value.smtp_error


def test_submission_gets_no_checks(env):
    inst, _ = env
    tok = th.token()
    extra = (b"Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\r\n"
             b"Authentication-Results: elsewhere.test; spf=pass\r\n")
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], timeout=th.IO_TIMEOUT) as s:
        s.starttls(context=th.tls_context())
        s.login(ALICE, "pw-alice-123")
        s.sendmail(ALICE, [BOB], th.make_message(tok, sender="ceo@reject.test",
                                                 extra_headers=extra))
    head = header_of(inst.wait_message(BOB, tok)[0])
    # not checked (no field of ours), but a field in our name is not let through either
    assert authres_fields(head) == ["Authentication-Results: elsewhere.test; spf=pass"], head


def srs_address(sender_local, sender_domain, days_ago=0):
    """An SRS0 address as tern makes it, computed here independently (auth/srs.h)."""
    key = hashlib.sha256(SECRET.encode()).digest()
    day = (int(time.time()) // 86400 - days_ago) % 1024
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    tt = b32[(day >> 5) & 31] + b32[day & 31]
    mac = hmac.new(key, f"{tt}={sender_domain}={sender_local}".lower().encode(),
                   hashlib.sha256).digest()
    hh = base64.b32encode(mac[:5]).decode()
    return f"SRS0={hh}={tt}={sender_domain}={sender_local}@example.test"


def test_srs_forwarding_and_bounce(env):
    inst, peer = env
    tok = th.token()
    msg = th.make_message(tok, sender="carol@sender.test", to="fwd@example.test")
    send(inst, "carol@sender.test", ["fwd@example.test", BOB], msg)
    # the local copies keep the original sender
    for rcpt in (ALICE, BOB):
        data = inst.wait_message(rcpt, tok)[0].read_bytes()
        assert data.startswith(b"Return-Path: <carol@sender.test>\r\n"), data[:100]
    # the forwarded copy carries the SRS sender, computed the same way here
    mail_from, rcpts, data = peer.wait(tok)
    want = srs_address("carol", "sender.test")
    assert mail_from.upper() == want.upper(), (mail_from, want)
    assert rcpts == ["dave@remote.test"]
    assert b"Authentication-Results: mx.example.test;" in data
    # a bounce to the SRS address goes back to carol (as a remote recipient: relayed)
    btok = th.token()
    bounce = th.make_message(btok, sender="MAILER-DAEMON@remote.test", to=want)
    send(inst, "", [want], bounce, helo="mx.remote.test")
    mail_from, rcpts, data = peer.wait(btok)
    assert rcpts == ["carol@sender.test"], rcpts
    assert mail_from == "", mail_from


def test_srs_forged_and_expired_refused(env):
    inst, _ = env
    good = srs_address("carol", "sender.test", days_ago=3)
    forged = good.replace("=carol@", "=mallory@")
    expired = srs_address("carol", "sender.test", days_ago=11)	# srs_max_age = 10
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
        s.ehlo("mx.remote.test")
        s.mail("")
        assert s.rcpt(good)[0] == 250
        for addr in (forged, expired, good.replace("SRS0=", "SRS0=X")):
            code, text = s.rcpt(addr)
            assert code == 550 and text.startswith(b"5.7.1"), (addr, code, text)
        s.rset()


def test_bdat_and_pipelined_commands_wait_for_the_checks(env):
    """CHUNKING: the verdict comes at BDAT LAST; commands pipelined behind the message are
    answered after it, in order."""
    inst, _ = env
    tok = th.token()
    msg = th.make_message(tok, sender="ceo@reject.test")
    ok = th.make_message(tok + "b", sender="news@good.test")
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], local_hostname="client.test",
                      source_address=(CLIENT, 0), timeout=th.IO_TIMEOUT) as s:
        s.ehlo()
        assert s.mail("ceo@reject.test")[0] == 250
        assert s.rcpt(BOB)[0] == 250
        s.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg + b"NOOP\r\n")
        code, text = s.getreply()
        assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        assert s.getreply()[0] == 250          # the NOOP
        assert s.mail("news@good.test")[0] == 250
        assert s.rcpt(BOB)[0] == 250
        s.send(f"BDAT {len(ok)} LAST\r\n".encode() + ok)
        assert s.getreply()[0] == 250
    head = header_of(inst.wait_message(BOB, tok + "b")[0])
    assert "spf=pass" in authres_fields(head)[0]


def test_srs_forward_refused_bounces_to_the_original_sender(env):
    """The remote end refuses the forwarded copy: our queue runner's bounce goes to the SRS
    sender, which the same router decodes, so the report reaches the original sender."""
    inst, peer = env
    tok = th.token()
    send(inst, "carol@sender.test", ["gone@example.test"],
         th.make_message(tok, sender="carol@sender.test", to="gone@example.test"))
    mail_from, rcpts, data = peer.wait(tok)
    assert rcpts == ["carol@sender.test"], (mail_from, rcpts)
    assert mail_from == "", mail_from
    assert b"reject-erin@remote.test" in data and b"multipart/report" in data
    # the refused copy had the SRS sender: the bounce went through the decoder
    assert "forwarded copies queued as" in inst.log_text()
    assert re.search(r"forwarded copies queued as \S+ from=<" +
                     re.escape(srs_address("carol", "sender.test")) + ">", inst.log_text())


def test_spf_reject_fail_option(env, tmp_path):
    """spf_reject_fail = yes: an SPF fail is refused by itself (no DMARC record needed), with
    the domain's exp= text; softfail, none and pass are not."""
    inst, _ = env
    strict = th.TernInstance(tmp_path / "strict",
                             extra_config="[inbound]\nspf_reject_fail = yes\n")
    try:
        strict.add_user(BOB, "pw-bob-123")
        strict.dns_port = inst.dns_port
        strict.write_config()
        strict.start()
        tok = th.token()
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(strict, "x@bad.test", [BOB], th.make_message(tok, sender="x@bad.test"))
        assert e.value.smtp_code == 550 and b"5.7.1 SPF fail for bad.test" in e.value.smtp_error
        with pytest.raises(smtplib.SMTPDataError) as e:
            send(strict, "x@explained.test", [BOB], th.make_message(tok, sender="x@explained.test"))
        assert b"127.0.0.5 may not send for explained.test" in e.value.smtp_error, e.value
        send(strict, "news@good.test", [BOB], th.make_message(tok, sender="news@good.test"))
        assert strict.wait_message(BOB, tok)
    finally:
        try:
            strict.stop()
            reports = strict.sanitizer_reports()
        finally:
            strict.cleanup()
    assert not reports, strict.log_tail(100)


def _signed(tok):
    msg = th.make_message(tok, sender="boss@signed.test")
    sig = dkim.sign(msg, b"sel", b"signed.test", DKIM_PEM,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + msg


def test_dkim_aligned_signature_passes_dmarc_despite_spf_fail(env):
    """A message signed by python3-dkim for its From domain: tern's verifier finds the key
    in the DNS, A-R says dkim=pass, and DMARC (p=reject) passes through DKIM alone."""
    inst, _ = env
    tok = th.token()
    send(inst, "boss@signed.test", [BOB], _signed(tok))
    ar = authres_fields(header_of(inst.wait_message(BOB, tok)[0]))
    assert "spf=fail smtp.mailfrom=boss@signed.test" in ar[0], ar
    assert "dkim=pass" in ar[0] and "header.d=signed.test" in ar[0], ar
    assert "dmarc=pass" in ar[0] and "header.from=signed.test" in ar[0], ar


def test_dkim_broken_signature_is_refused_by_dmarc(env):
    """The same message changed after signing: dkim=fail, and p=reject refuses it."""
    inst, _ = env
    tok = th.token()
    msg = _signed(tok).replace(b"Second line.", b"Second line, changed.")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(inst, "boss@signed.test", [BOB], msg)
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.1"), e.value
