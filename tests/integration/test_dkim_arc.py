"""ARC (RFC 8617) against python3-dkim: chains python3-dkim seals (dkim.arc_sign, one and two
hops) validate in tern (`tern dkim arc-verify`, keys from a dnsmasq), a changed message or
seal fails; tern's seals (`tern dkim arc-seal`, the arc_seal() the forwarding path calls) on
a fresh message and on top of python's chain validate with dkim.arc_verify, and in tern."""
import dkim
import pytest

import tern_harness as th
from dkim_tools import Dnsmasq, dnsfunc_for, records_from_list, rsa_keypair

MSG = (b"Authentication-Results: lists.py.test; spf=pass smtp.mailfrom=bob@py.test;"
       b" dkim=pass header.d=py.test\r\n"
       b"From: Bob <bob@py.test>\r\nTo: list@lists.py.test\r\nSubject: arc test\r\n"
       b"Date: Mon, 30 Nov 2026 09:00:00 +0000\r\nMessage-ID: <arc1@py.test>\r\n\r\n"
       b"Hello  list.\r\n")


@pytest.fixture(scope="module")
def arc(tmp_path_factory):
    """A configured tern with a key for forward.example.test, and a dnsmasq serving it and
    python's key."""
    tmp = tmp_path_factory.mktemp("tern-arc")
    i = th.TernInstance(tmp)
    r = i.cli("dkim", "generate", "forward.example.test", "--algorithm", "rsa",
              "--selector", "arc")
    assert r.returncode == 0, r
    rsa_pem, rsa_pub, _ = rsa_keypair(tmp)
    i.pykey = rsa_pem
    i.records = records_from_list(r.stdout)
    i.records["py._domainkey.lists.py.test"] = f"v=DKIM1; k=rsa; p={rsa_pub}"
    i.records["py2._domainkey.hop2.test"] = f"v=DKIM1; k=rsa; p={rsa_pub}"
    dns = Dnsmasq(tmp / "dns", i.records, port=i.dns_port).start()
    yield i
    dns.stop()
    i.cleanup()


def py_seal(msg, srv_id=b"lists.py.test", sel=b"py", dom=b"lists.py.test", key=None):
    fields = dkim.arc_sign(msg, sel, dom, key, srv_id)
    return b"".join(fields) + msg


def tern_arc(inst, msg):
    r = inst.cli("dkim", "arc-verify", stdin=msg)
    return r.returncode, r.stdout.strip()


def test_python_chain_validates_in_tern(arc):
    one = py_seal(MSG, key=arc.pykey)
    assert dkim.arc_verify(one, dnsfunc=dnsfunc_for(arc.records))[0] == dkim.CV_Pass
    rc, out = tern_arc(arc, one)
    assert rc == 0 and out.startswith("arc=pass instances=1 oldest-pass=0 header.d=lists.py.test"), out
    # a second hop
    two = py_seal(b"Authentication-Results: hop2.test; arc=pass\r\n" + one, srv_id=b"hop2.test",
                  sel=b"py2", dom=b"hop2.test", key=arc.pykey)
    assert dkim.arc_verify(two, dnsfunc=dnsfunc_for(arc.records))[0] == dkim.CV_Pass
    rc, out = tern_arc(arc, two)
    assert rc == 0 and out.startswith("arc=pass instances=2 oldest-pass=0"), out
    # the body changed after the first hop: AMS 1 fails, the chain still passes (the
    # newest AMS covers what hop 2 saw), oldest-pass says so
    changed = py_seal(b"Authentication-Results: hop2.test; arc=pass\r\n"
                      + one.replace(b"Hello  list.", b"Hello  LIST."),
                      srv_id=b"hop2.test", sel=b"py2", dom=b"hop2.test", key=arc.pykey)
    rc, out = tern_arc(arc, changed)
    assert rc == 0 and "oldest-pass=2" in out, out
    # the body changed after the last hop: the newest AMS fails: fail
    rc, out = tern_arc(arc, two.replace(b"Hello  list.", b"Hello  lisT."))
    assert rc == 1 and out.startswith("arc=fail"), out
    # a seal changed: fail
    rc, out = tern_arc(arc, two.replace(b"cv=pass", b"cv=none", 1))
    assert rc == 1 and out.startswith("arc=fail"), out
    # no chain
    rc, out = tern_arc(arc, MSG)
    assert rc == 1 and out.startswith("arc=none instances=0"), out


def tern_seal(inst, msg, cv=None):
    args = ["dkim", "arc-seal", "forward.example.test", "--authserv-id", "mx.example.test",
            "--results", "spf=pass smtp.mailfrom=bob@py.test; dkim=none"]
    if cv:
        args += ["--cv", cv]
    r = inst.cli(*args, stdin=msg)
    assert r.returncode == 0, r
    return r.stdout.encode()


def test_tern_seal_validates_in_python(arc):
    fields = tern_seal(arc, MSG)
    assert fields.startswith(b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=forward.example.test")
    assert b"\r\nARC-Message-Signature: i=1;" in fields
    assert b"\r\nARC-Authentication-Results: i=1; mx.example.test;" in fields
    sealed = fields + MSG
    cv, results, reason = dkim.arc_verify(sealed, dnsfunc=dnsfunc_for(arc.records))
    assert cv == dkim.CV_Pass, (results, reason)
    rc, out = tern_arc(arc, sealed)
    assert rc == 0 and out.startswith("arc=pass instances=1"), out
    # on top of python's chain: instance 2, cv=pass
    one = py_seal(MSG, key=arc.pykey)
    fields = tern_seal(arc, one)
    assert fields.startswith(b"ARC-Seal: i=2; a=rsa-sha256; cv=pass;")
    sealed = fields + one
    cv, results, reason = dkim.arc_verify(sealed, dnsfunc=dnsfunc_for(arc.records))
    assert cv == dkim.CV_Pass, (results, reason)
    rc, out = tern_arc(arc, sealed)
    assert rc == 0 and out.startswith("arc=pass instances=2"), out
    # python seals on top of ours: still a chain
    three = py_seal(b"Authentication-Results: hop2.test; arc=pass\r\n" + sealed,
                    srv_id=b"hop2.test", sel=b"py2", dom=b"hop2.test", key=arc.pykey)
    assert dkim.arc_verify(three, dnsfunc=dnsfunc_for(arc.records))[0] == dkim.CV_Pass
    rc, out = tern_arc(arc, three)
    assert rc == 0 and out.startswith("arc=pass instances=3"), out


def test_broken_chain_gets_a_fail_seal_once(arc):
    one = py_seal(MSG, key=arc.pykey)
    broken = one.replace(b"Hello  list.", b"Hello  l1st.")
    fields = tern_seal(arc, broken)  # our validation says fail
    assert b"cv=fail" in fields.split(b"\r\n")[0]
    sealed = fields + broken
    rc, out = tern_arc(arc, sealed)
    assert rc == 1 and out.startswith("arc=fail"), out
    assert dkim.arc_verify(sealed, dnsfunc=dnsfunc_for(arc.records))[0] != dkim.CV_Pass
    # a chain whose newest seal says cv=fail is not sealed again
    r = arc.cli("dkim", "arc-seal", "forward.example.test", "--authserv-id", "mx.example.test",
                "--results", "none", stdin=sealed)
    assert r.returncode == 0 and r.stdout == "", r
