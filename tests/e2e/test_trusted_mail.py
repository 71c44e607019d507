"""Mail that is trusted, end to end (issue "Mail that is trusted"): three tern hosts and the
suite's dnsmasq serving SPF, DMARC and DKIM key records.

- origin.test (127.0.0.20): signs what its users submit (keys from `tern dkim generate`).
- fwd.test (127.0.0.21): checks SPF/DKIM/DMARC/ARC; an alias forwards to final.test with an
  SRS0 sender and an ARC seal made by its queue runner (keys for fwd.test).
- final.test (127.0.0.22): checks again; its own SRS is off, so what it cannot deliver
  bounces straight to the SRS0 address of fwd.test; it trusts fwd.test as an ARC sealer
  (`arc_trusted_sealers`).

Every host sends from its own address (`[queue] source_ip`), which the SPF records name.
"""
import email
import email.policy
import imaplib
import re
import smtplib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_harness as eh  # noqa: E402
import dkim_tools  # noqa: E402  (tests/integration, on the path through e2e_harness)

import dkim  # noqa: E402  (python3-dkim)

SENDER = "sender@origin.test"
RCPT = "rcpt@fwd.test"
LIST = "list@fwd.test"            # alias on fwd.test -> user@final.test
BOUNCE_LIST = "away@fwd.test"     # alias on fwd.test -> gone@final.test
GONE = "gone@final.test"          # alias on final.test -> nobody@nowhere.test (NXDOMAIN)
FINAL = "user@final.test"


def _host(own_hosts, name, users, **kw):
    return own_hosts(name, users=users, start=False,
                     queue={"source_ip": eh.ADDR[name]}, **kw)


def _keys(host, domain):
    r = host.cli("dkim", "generate", domain)
    assert r.returncode == 0, r
    recs = dkim_tools.records_from_list(r.stdout)
    assert len(recs) == 2, r.stdout  # RSA and Ed25519
    return recs


@pytest.fixture
def trio(own_hosts, dns_extra):
    origin = _host(own_hosts, "origin", [SENDER])
    fwd = _host(own_hosts, "fwd", [RCPT], roles=("smtp", "submission", "pop3", "imaps"))
    final = _host(own_hosts, "final", [FINAL],
                  extra_config="[inbound]\nsrs = no\narc_trusted_sealers = fwd.test\n")
    records = {}
    records.update(_keys(origin, "origin.test"))
    records.update(_keys(fwd, "fwd.test"))
    for h, alias, target in ((fwd, LIST, FINAL), (fwd, BOUNCE_LIST, GONE),
                             (final, GONE, "nobody@nowhere.test")):
        r = h.cli("alias", "add", alias, target)
        assert r.returncode == 0, r
    txt = dict(records)
    txt.update({
        "origin.test": f"v=spf1 ip4:{eh.ADDR['origin']} -all",
        "_dmarc.origin.test": "v=DMARC1; p=reject",
        "fwd.test": f"v=spf1 ip4:{eh.ADDR['fwd']} -all",
        "final.test": f"v=spf1 ip4:{eh.ADDR['final']} -all",
        # quar.test: nobody may send for it (SPF -all), its policy quarantines
        "quar.test": "v=spf1 -all",
        "_dmarc.quar.test": "v=DMARC1; p=quarantine",
        # plain.test: mail from the test client (127.0.0.1) passes SPF, nothing is signed
        "plain.test": "v=spf1 ip4:127.0.0.1 -all",
        "_dmarc.plain.test": "v=DMARC1; p=reject",
    })
    dns_extra(*(dkim_tools.txt_line(n, t) for n, t in txt.items()))
    for h in (origin, fwd, final):
        h.start()
    return origin, fwd, final, records


def our_authres(data, authserv_id):
    """The value of the topmost Authentication-Results field naming authserv_id, unfolded."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    for v in msg.get_all("Authentication-Results") or []:
        v = re.sub(r"\s+", " ", v).strip()
        if v.split(";", 1)[0].strip().lower() == authserv_id:
            return v
    raise AssertionError(f"no Authentication-Results of {authserv_id} in:\n"
                         f"{data[:3000].decode('utf-8', 'replace')}")


def result(ar, method):
    """{method: [resinfo, ...]} style: every resinfo of method in an A-R value."""
    return [r.strip() for r in ar.split(";")[1:] if r.strip().startswith(method + "=")]


def submit_and_wait(origin, rcpt, host, mailbox, via, policy=email.policy.compat32):
    """origin's SENDER submits a new message to rcpt; wait until mailbox on host holds it:
    (its bytes, parsed with policy)."""
    tok = eh.token()
    origin.submit(SENDER, [rcpt], eh.make_message(tok, SENDER, rcpt))
    data = eh.wait_mail(host, mailbox, tok, sender_host=via)[0].read_bytes()
    return data, email.message_from_bytes(data, policy=policy)


def test_signed_mail_passes_everything(trio):
    origin, fwd, _final, _records = trio
    data, _msg = submit_and_wait(origin, RCPT, fwd, RCPT, origin)
    ar = our_authres(data, "mx.fwd.test")
    assert result(ar, "spf") == [f"spf=pass smtp.mailfrom={SENDER}"], ar
    dk = result(ar, "dkim")
    assert len(dk) == 2 and all(d.startswith("dkim=pass ") and "header.d=origin.test" in d
                                for d in dk), ar
    assert {re.search(r"header\.a=(\S+)", d).group(1) for d in dk} == {
        "rsa-sha256", "ed25519-sha256"}, ar
    assert result(ar, "dmarc")[0].startswith("dmarc=pass (p=reject dis=none)"), ar
    assert result(ar, "arc") == ["arc=none"], ar


def test_forged_from_with_reject_policy_is_refused(trio):
    _origin, fwd, _final, _records = trio
    tok = eh.token()
    msg = eh.make_message(tok, "ceo@origin.test", RCPT)
    with fwd.smtp() as s:   # from 127.0.0.1: not in origin.test's SPF record, no signature
        s.ehlo()
        s.mail("ceo@origin.test")
        assert s.rcpt(RCPT)[0] == 250
        code, resp = s.data(msg)
    assert code == 550 and resp.startswith(b"5.7.1"), (code, resp)
    assert b"origin.test" in resp
    assert fwd.find_messages(RCPT, tok, ("tmp", "new", "cur")) == []
    assert "dmarc=fail" in fwd.log_tail(40) and "action=reject" in fwd.log_tail(40)


def test_forged_from_with_quarantine_policy_goes_to_junk(trio):
    _origin, fwd, _final, _records = trio
    tok = eh.token()
    msg = eh.make_message(tok, "boss@quar.test", RCPT)
    with fwd.smtp() as s:
        s.ehlo()
        s.mail("boss@quar.test")
        assert s.rcpt(RCPT)[0] == 250
        code, resp = s.data(msg)
    assert code == 250, (code, resp)
    imap = imaplib.IMAP4_SSL(fwd.addr, fwd.ports["imaps"], ssl_context=eh.tls_context(),
                             timeout=eh.IO_TIMEOUT)
    try:
        imap.login(RCPT, eh.password_for(RCPT))
        typ, _ = imap.select("Junk", readonly=True)
        assert typ == "OK"
        typ, data = imap.search(None, "SUBJECT", tok)
        found = data[0].split()
        assert typ == "OK" and len(found) == 1, data
        typ, data = imap.fetch(found[0], "(BODY.PEEK[HEADER])")
        header = data[0][1]
        ar = our_authres(header, "mx.fwd.test")
        assert result(ar, "spf")[0].startswith("spf=fail"), ar
        assert result(ar, "dmarc")[0].startswith("dmarc=fail (p=quarantine dis=quarantine)"), ar
        typ, _ = imap.select("INBOX", readonly=True)
        assert typ == "OK"
        typ, data = imap.search(None, "SUBJECT", tok)
        assert typ == "OK" and data[0].split() == [], "also in INBOX"
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_forward_keeps_dkim_and_is_arc_sealed(trio):
    origin, fwd, final, records = trio
    data, msg = submit_and_wait(origin, LIST, final, FINAL, fwd)
    # the envelope sender was rewritten by fwd.test (SRS0, decodable to ours)
    rp = msg["Return-Path"]
    assert re.fullmatch(r"<SRS0=[A-Za-z0-9]{8}=[A-Za-z0-9]{2}=origin\.test=sender@fwd\.test>",
                        rp), rp
    ar = our_authres(data, "mx.final.test")
    assert result(ar, "spf")[0].startswith("spf=pass smtp.mailfrom=SRS0="), ar
    dk = result(ar, "dkim")
    assert len(dk) == 2 and all(d.startswith("dkim=pass ") and "header.d=origin.test" in d
                                for d in dk), ar
    assert result(ar, "dmarc")[0].startswith("dmarc=pass"), ar
    assert result(ar, "arc") == [
        f"arc=pass (i=1 d=fwd.test) smtp.remote-ip={eh.ADDR['fwd']} header.oldest-pass=0"], ar
    # the seal is fwd.test's, instance 1, and carries fwd.test's results
    seal = re.sub(r"\s+", "", msg["ARC-Seal"])
    assert "i=1;" in seal and "cv=none;" in seal and "d=fwd.test;" in seal, seal
    aar = re.sub(r"\s+", " ", msg["ARC-Authentication-Results"])
    assert aar.startswith("i=1; mx.fwd.test;") and "dkim=pass" in aar and \
        "dmarc=pass" in aar and "spf=pass" in aar, aar
    assert "DKIM-Signature" in msg and all("d=fwd.test" not in s for s in
                                           msg.get_all("DKIM-Signature")), \
        "a forwarded copy gets no DKIM signature of the forwarder"
    # and an independent verifier agrees
    cv, results, comment = dkim.arc_verify(data, dnsfunc=dkim_tools.dnsfunc_for(records))
    assert cv == dkim.CV_Pass, (cv, results, comment)
    assert "arc: sealed for fwd.test" in fwd.log_tail(200)


def test_bounce_from_final_reaches_original_sender(trio):
    origin, fwd, final, _records = trio
    # final.test takes the copy for gone@ (SRS0 sender of fwd.test), cannot forward it to
    # nowhere.test (NXDOMAIN) and bounces to the SRS0 address; fwd.test decodes it
    _bounce, msg = submit_and_wait(origin, BOUNCE_LIST, origin, SENDER, final,
                                   policy=email.policy.default)
    assert msg["Return-Path"] == "<>"
    assert msg.get_content_type() == "multipart/report"
    assert "MAILER-DAEMON@mx.final.test" in str(msg["From"])
    rcpts = eh.dsn_recipients(msg)
    assert any("nobody@nowhere.test" in str(g["Final-Recipient"]) and
               str(g["Action"]).strip() == "failed" for g in rcpts), rcpts
    # final.test sent it to the SRS0 address, which fwd.test's runner relayed to the sender;
    # a runner logs status=sent after the peer's 250, so the line may follow the delivery
    eh.wait_until(lambda: any("status=sent" in ln for ln in fwd.delivery_lines(SENDER)),
                  10, lambda: fwd.log_tail(60))
    eh.wait_until(lambda: any("SRS0=" in ln and "status=sent" in ln and "relay=local" not in ln
                              for ln in final.log_since(0).splitlines()),
                  10, lambda: final.log_tail(60))


def test_trusted_sealer_overrides_dmarc_fail(trio):
    """Unsigned mail whose DMARC passed at fwd.test on SPF alone fails DMARC at final.test
    (SPF is now fwd.test's, unaligned; no DKIM): p=reject would refuse it, but the chain
    sealed by fwd.test passes and final.test trusts that sealer (RFC 8617 §7.2.1)."""
    _origin, fwd, final, _records = trio
    tok = eh.token()
    with fwd.smtp() as s:
        s.ehlo()
        s.mail("news@plain.test")
        assert s.rcpt(LIST)[0] == 250
        code, resp = s.data(eh.make_message(tok, "news@plain.test", LIST))
    assert code == 250, (code, resp)
    data = eh.wait_mail(final, FINAL, tok, sender_host=fwd)[0].read_bytes()
    assert result(our_authres(data, "mx.fwd.test"), "dmarc")[0].startswith("dmarc=pass"), data
    ar = our_authres(data, "mx.final.test")
    assert result(ar, "dkim") == ["dkim=none"], ar
    assert result(ar, "dmarc")[0].startswith(
        "dmarc=fail (p=reject dis=none, local policy: ARC sealed by fwd.test)"), ar
    assert result(ar, "arc")[0].startswith("arc=pass (i=1 d=fwd.test)"), ar
    assert "arc_override=yes" in final.log_tail(60)
