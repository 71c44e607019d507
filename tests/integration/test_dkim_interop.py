"""DKIM against tools we did not write.

- Mail submitted with AUTH to a remote address leaves tern signed twice (RSA and Ed25519,
  keys from `tern dkim generate`, loaded by the root master for the unprivileged runner);
  the receiving sink checks both signatures with python3-dkim, opendkim-testmsg checks them
  against a dnsmasq on port 53 (through a private /etc/resolv.conf in a mount namespace),
  and `tern dkim verify` agrees.
- Mail from outside that an alias forwards is not signed; a bounce the runner makes for a
  remote sender is.
- Messages signed by python3-dkim (RSA, Ed25519, l=, simple/simple) verify in tern
  (`tern dkim verify`, keys from dnsmasq); a changed one fails. opendkim-testmsg signs with
  rsa-sha1 only: tern parses its signature and refuses the algorithm (RFC 8301).
- `tern dkim check` finds published records matching, and a wrong one not; keys generated
  after the start sign after SIGHUP."""
import os
import random
import re
import shutil
import subprocess
import uuid

import dkim
import pytest

import tern_harness as th
from dkim_tools import (Dnsmasq, dnsfunc_for, ed25519_keypair, records_from_list, rsa_keypair,
                        tern_verify)
from smtp_sink import Sink

ALICE = "alice@example.test"
RELAY = "relay.test"


@pytest.fixture(scope="module")
def sink():
    s = Sink()
    yield s
    s.close()


@pytest.fixture(scope="module")
def signer(tmp_path_factory, sink):
    """A started tern with DKIM keys for example.test and a route to the sink."""
    from conftest import _LIVE, _teardown, provision_users
    i = th.TernInstance(tmp_path_factory.mktemp("tern-dkim"),
                        extra_config=f"[routes]\n{RELAY} = 127.0.0.1:{sink.port}\n")
    _LIVE.append(i)
    provision_users(i)
    r = i.cli("dkim", "generate", "example.test", "--selector", "s1")
    assert r.returncode == 0, r
    i.records = records_from_list(r.stdout)
    assert set(i.records) == {"s1-rsa._domainkey.example.test", "s1-ed._domainkey.example.test"}
    assert r.stdout.count(" IN TXT ") == 2
    # keys are root's: 0700 directory next to the config file, 0600 files
    kdir = i.base / "dkim"
    assert (kdir / "example.test" / "s1-rsa.pem").stat().st_mode & 0o777 == 0o600
    assert kdir.stat().st_mode & 0o777 == 0o700
    r = i.cli("alias", "add", "fwd@example.test", f"dest@{RELAY}")
    assert r.returncode == 0, r
    r = i.cli("alias", "add", "bouncer@example.test", f"reject-x@{RELAY}")
    assert r.returncode == 0, r
    i.start()
    yield i
    _teardown(i)


def message(tok, sender=ALICE, to=f"someone@{RELAY}"):
    return (f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: dkim {tok}\r\n"
            f"Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{tok}@example.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"Hello  {tok}\r\n.leading dot\r\n\r\n\r\n").encode()


def signatures(data):
    return [ln for ln in data.split(b"\r\n") if ln.lower().startswith(b"dkim-signature:")]


def py_verify_all(data, records):
    """python3-dkim's verdict for each signature, top first."""
    out = []
    for k in range(len(signatures(data))):
        try:
            out.append(dkim.DKIM(data).verify(idx=k, dnsfunc=dnsfunc_for(records)))
        except dkim.ValidationError:
            out.append(False)
    return out


def resolv_ns_addr():
    return f"127.{random.randint(64, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def opendkim_verify(tmp_path, data, records):
    """Run opendkim-testmsg (verify mode) on data, resolving through a dnsmasq on port 53 of
    a private loopback address named by a private /etc/resolv.conf. Returns (rc, stderr)."""
    assert shutil.which("opendkim-testmsg"), "opendkim-tools missing (scripts/deps.sh)"
    addr = resolv_ns_addr()
    dns = Dnsmasq(tmp_path / f"dns-{addr}", records, addr=addr, port=53).start()
    try:
        rc = tmp_path / "resolv.conf"
        rc.write_text(f"nameserver {addr}\noptions attempts:1 timeout:2\n")
        p = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount --bind {rc} /etc/resolv.conf && exec opendkim-testmsg"],
                           input=data, capture_output=True, timeout=60)
        return p.returncode, p.stderr.decode("utf-8", "replace")
    finally:
        dns.stop()


# -- tern signs ----------------------------------------------------------------------------

def test_submitted_mail_is_signed_and_verifies(signer, sink, tmp_path):
    tok = uuid.uuid4().hex[:12]
    with signer.submission_login() as s:
        assert s.sendmail(ALICE, [f"someone@{RELAY}"], message(tok)) == {}
    _sender, _rcpts, data = sink.wait(tok.encode())
    sigs = signatures(data)
    assert len(sigs) == 2, data[:2000]
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"a=rsa-sha256" in head and b"a=ed25519-sha256" in head
    assert b"c=relaxed/relaxed" in head and b"l=" not in head.replace(b"h=", b"")
    assert b"h=from:from:" in head  # From oversigned
    assert b" t=" in head
    # the sink's verifier: python3-dkim, each signature on its own
    assert py_verify_all(data, signer.records) == [True, True]
    # a changed body fails with it
    assert py_verify_all(data.replace(b"leading dot", b"leading dog"), signer.records) == [False, False]
    # opendkim verifies the whole message (every signature) against the DNS
    rc, err = opendkim_verify(tmp_path, data.replace(b"\r\n", b"\n"), signer.records)
    assert rc == 0, err
    rc, err = opendkim_verify(tmp_path, data.replace(b"Hello", b"Jello").replace(b"\r\n", b"\n"),
                              signer.records)
    assert rc != 0


def test_forwarded_outside_mail_is_not_signed(signer, sink):
    tok = uuid.uuid4().hex[:12]
    with signer.smtp("smtp") as s:
        assert s.sendmail(ALICE, ["fwd@example.test"], message(tok, to="fwd@example.test")) == {}
    _s, _r, data = sink.wait(tok.encode())
    assert signatures(data) == []


def test_bounce_to_remote_sender_is_signed(signer, sink):
    tok = uuid.uuid4().hex[:12]
    with signer.smtp("smtp") as s:
        s.sendmail(f"sender@{RELAY}", ["bouncer@example.test"],
                   message(tok, sender=f"sender@{RELAY}", to="bouncer@example.test"))
    # the bounce comes back to the sink with the null sender, from our MAILER-DAEMON
    _s, _r, bounce = sink.wait(tok.encode(), sender="")
    assert b"MAILER-DAEMON@mx.example.test" in bounce
    assert len(signatures(bounce)) == 2
    assert py_verify_all(bounce, signer.records) == [True, True]


def test_tern_verifies_its_own(signer, sink, tmp_path):
    tok = uuid.uuid4().hex[:12]
    with signer.submission_login() as s:
        s.sendmail(ALICE, [f"someone@{RELAY}"], message(tok))
    _s, _r, data = sink.wait(tok.encode())
    dns = Dnsmasq(tmp_path / "dns", signer.records, port=signer.dns_port).start()
    try:
        rc, lines = tern_verify(signer, data)
        assert rc == 0 and len(lines) == 2, lines
        assert all(ln.startswith("dkim=pass header.d=example.test") for ln in lines), lines
    finally:
        dns.stop()


def test_dkim_check_compares_with_dns(signer, tmp_path):
    recs = dict(signer.records)
    dns = Dnsmasq(tmp_path / "dns", recs, port=signer.dns_port).start()
    try:
        r = signer.cli("dkim", "check", "example.test")
        assert r.returncode == 0, r
        assert r.stdout.count("ok ") == 2
    finally:
        dns.stop()
    recs["s1-ed._domainkey.example.test"] = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    del recs["s1-rsa._domainkey.example.test"]
    dns = Dnsmasq(tmp_path / "dns2", recs, port=signer.dns_port).start()
    try:
        r = signer.cli("dkim", "check", "example.test")
        assert r.returncode == 1, r
        assert "MISMATCH s1-ed" in r.stdout and "MISSING s1-rsa" in r.stdout
    finally:
        dns.stop()


# -- others sign, tern verifies --------------------------------------------------------------

@pytest.fixture(scope="module")
def verifier(tmp_path_factory):
    """A configured (not started) tern for `tern dkim verify`, its DNS a dnsmasq with the
    keys python3-dkim and opendkim sign with."""
    tmp = tmp_path_factory.mktemp("tern-dkimv")
    i = th.TernInstance(tmp)
    rsa_pem, rsa_pub, rsa_path = rsa_keypair(tmp)
    ed_seed, ed_pub = ed25519_keypair()
    i.keys = {"rsa": rsa_pem, "ed": ed_seed, "rsa_path": rsa_path}
    i.records = {
        "py-rsa._domainkey.py.test": f"v=DKIM1; k=rsa; p={rsa_pub}",
        "py-ed._domainkey.py.test": f"v=DKIM1; k=ed25519; p={ed_pub}",
        "od._domainkey.od.test": f"v=DKIM1; k=rsa; p={rsa_pub}",
    }
    dns = Dnsmasq(tmp / "dns", i.records, port=i.dns_port).start()
    yield i
    dns.stop()
    i.cleanup()


PLAIN = (b"From: Bob <bob@py.test>\r\nTo: alice@example.test\r\nSubject: from python\r\n"
         b"Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMessage-ID: <p1@py.test>\r\n\r\n"
         b"Hi  there. \r\n\r\nLine two\r\n")


@pytest.mark.parametrize("alg,canon,length", [
    ("rsa", (b"relaxed", b"relaxed"), False),
    ("rsa", (b"simple", b"simple"), False),
    ("ed", (b"relaxed", b"relaxed"), False),
    ("ed", (b"relaxed", b"simple"), False),
    ("rsa", (b"relaxed", b"relaxed"), True),
])
def test_python_signed_verifies_in_tern(verifier, alg, canon, length):
    sel = f"py-{alg}".encode()
    sig = dkim.sign(PLAIN, sel, b"py.test", verifier.keys[alg], canonicalize=canon,
                    signature_algorithm=b"rsa-sha256" if alg == "rsa" else b"ed25519-sha256",
                    length=length)
    msg = sig + PLAIN
    assert dkim.verify(msg, dnsfunc=dnsfunc_for(verifier.records))  # the tool agrees
    rc, lines = tern_verify(verifier, msg)
    assert rc == 0 and len(lines) == 1 and lines[0].startswith("dkim=pass header.d=py.test"), lines
    if length:
        assert "l=" in lines[0]
        # text added after the signed length is still a pass, and said so
        rc, lines = tern_verify(verifier, msg + b"added later\r\n")
        assert rc == 0 and "pass" in lines[0], lines
    # one changed header byte fails
    rc, lines = tern_verify(verifier, msg.replace(b"from python", b"from pythoN"))
    assert rc == 1 and lines[0].startswith("dkim=fail"), lines


def test_opendkim_signed_is_parsed_and_its_rsa_sha1_refused(verifier, tmp_path):
    assert shutil.which("opendkim-testmsg"), "opendkim-tools missing (scripts/deps.sh)"
    plain = PLAIN.replace(b"py.test", b"od.test")
    p = subprocess.run(["opendkim-testmsg", "-C", "-d", "od.test", "-s", "od", "-k",
                        str(verifier.keys["rsa_path"])], input=plain, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    signed = p.stdout
    assert signed.lower().startswith(b"dkim-signature:")
    # opendkim-testmsg 2.11 signs with rsa-sha1 only (no option to choose), which RFC 8301
    # forbids verifiers to accept: tern parses the whole signature and refuses it for that
    assert b"a=rsa-sha1" in signed
    rc, lines = tern_verify(verifier, signed)
    assert rc == 1 and lines == [
        "dkim=permerror header.d=od.test header.s=od header.a=rsa-sha1 header.b="
        + re.sub(rb"\s", b"", re.search(rb"[;\s]b=([^;]+)", signed).group(1))[:8].decode()
        + " (rsa-sha1 is not accepted (RFC 8301))"], lines


def test_unsigned_is_none(verifier):
    rc, lines = tern_verify(verifier, PLAIN)
    assert rc == 1 and lines == ["dkim=none"]


def test_sighup_loads_new_keys(signer, sink):
    """Keys made after the start sign after SIGHUP (the master rereads them as root and
    restarts the queue runner)."""
    import signal
    import time
    r = signer.cli("dkim", "generate", "other.test", "--algorithm", "ed25519", "--selector", "hup")
    assert r.returncode == 0, r
    records = dict(signer.records, **records_from_list(r.stdout))
    os.kill(signer.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "reloaded: 3 dkim signing keys" not in signer.log_text():
        assert time.monotonic() < deadline, signer.log_tail()
        time.sleep(0.1)  # poll interval; the log line is the readiness signal
    tok = uuid.uuid4().hex[:12]
    with signer.submission_login() as s:
        assert s.sendmail(ALICE, [f"someone@{RELAY}"],
                          message(tok).replace(b"<alice@example.test>", b"<alice@other.test>")) == {}
    _s, _r, data = sink.wait(tok.encode())
    sigs = signatures(data)
    assert len(sigs) == 1 and b"d=other.test" in data and b"s=hup" in data, data[:1500]
    assert py_verify_all(data, records) == [True]
