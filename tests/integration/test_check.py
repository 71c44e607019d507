"""`tern check` against a private dnsmasq (tests/integration/dnszone.py):

- a complete zone for example.test (MX -> the host name, its A 127.0.0.1 where tern listens,
  the PTR back, SPF, the DKIM records `tern dkim generate` printed, DMARC, MTA-STS, TLS-RPT,
  mta-sts. and autoconfig. names on a certificate that names them): every check ok but one
  warning, the self-signed certificate; exit status 1;
- a broken zone for other.test checked by a server named mx2.example.test (an address it does
  not listen on, a PTR naming another host, a missing PTR, MX elsewhere, two SPF records, a
  DKIM record holding another key and one missing, no DMARC, invalid MTA-STS and TLS-RPT):
  each problem is an error line with the record to publish; exit status 2;
- without --private-ok the loopback address and the smtp port other than 25 are warned about;
- a broken configuration file: the FILE:LINE error and exit status 2;
- DNS that does not answer: errors, not a hang;
- certificates from a private CA (SSL_CERT_FILE): a full chain is all ok (exit 0); a missing
  intermediate, expiry soon, other names, expired;
- run as the data owner: the root-only key and DKIM keys are warnings ("run as root");
- smtp on 0.0.0.0: a host address no interface has is a NAT warning, not an error."""
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import tern_harness as th
from dkim_tools import records_from_list
from dnszone import Dnsmasq

HOST = th.HOSTNAME          # mx.example.test
HOST2 = "mx2.example.test"


def txt_line(name, text):
    """A dnsmasq txt-record= line, the text cut into 255-byte strings."""
    parts = ",".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))
    return f"txt-record={name},{parts}"


def make_cert(d):
    """A self-signed certificate naming the host and the example.test policy hosts."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "90", "-subj", f"/CN={HOST}",
                    "-addext", f"subjectAltName=DNS:{HOST},DNS:mta-sts.example.test,"
                    "DNS:autoconfig.example.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


def lines_of(r):
    print(r.stdout)     # shown when the test fails
    out = [ln for ln in r.stdout.splitlines() if ln.strip()]
    return out[:-1], out[-1]          # the checks, and the summary


def by_level(lines, level):
    return [ln for ln in lines if ln.split()[0] == level]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("check")
    cert, key = make_cert(base)
    good = th.TernInstance(base / "good", extra_config=f"[tls]\ncert = {cert}\nkey = {key}\n")
    bad = th.TernInstance(base / "bad", settings={"hostname": HOST2})
    dns = None
    try:
        r = good.cli("dkim", "generate", "example.test", "--selector", "s1")
        assert r.returncode == 0, r
        recs = records_from_list(r.stdout)
        r = bad.cli("dkim", "generate", "other.test", "--selector", "s2")
        assert r.returncode == 0, r
        bad_recs = records_from_list(r.stdout)
        assert set(recs) == {"s1-rsa._domainkey.example.test", "s1-ed._domainkey.example.test"}
        zone = [
            # example.test: complete
            f"mx-host=example.test,{HOST},10",
            f"host-record={HOST},127.0.0.1",                 # A, and the PTR back
            'txt-record=example.test,"v=spf1 mx -all"',
            'txt-record=_dmarc.example.test,"v=DMARC1; p=quarantine; '
            'rua=mailto:postmaster@example.test"',
            'txt-record=_mta-sts.example.test,"v=STSv1; id=20261130120000Z;"',
            'txt-record=_smtp._tls.example.test,"v=TLSRPTv1; rua=mailto:tlsrpt@example.test"',
            f"cname=mta-sts.example.test,{HOST}",
            f"cname=autoconfig.example.test,{HOST}",
            "host-record=mta-sts.other.test,192.0.2.80",     # a web server elsewhere
            # other.test: broken, served by mx2.example.test
            f"address=/{HOST2}/127.0.0.9",                   # not ours, and no PTR
            f"address=/{HOST2}/127.0.0.1",                   # ours, PTR names mx.example.test
            f"address=/{HOST2}/127.0.0.10",                  # PTR names a host that is not there
            "ptr-record=10.0.0.127.in-addr.arpa,ghost.test",
            "mx-host=other.test,mx.elsewhere.test,10",
            'txt-record=other.test,"v=spf1 mx -all"',
            'txt-record=other.test,"v=spf1 ip4:192.0.2.1 -all"',
            # the Ed25519 selector publishes example.test's key; the RSA one is missing
            txt_line("s2-ed._domainkey.other.test", recs["s1-ed._domainkey.example.test"]),
            'txt-record=_mta-sts.other.test,"v=STSv1; id=not-valid!"',
            'txt-record=_smtp._tls.other.test,"v=TLSRPTv1; rua=ftp://reports.other.test"',
        ]
        zone += [txt_line(n, t) for n, t in recs.items()]
        dns = Dnsmasq(base / "dns", zone).start()
        for inst in (good, bad):
            inst.dns_port = dns.port
            inst.write_config()
        good.start()          # makes the data dir as `tern serve` does
        yield good, bad, recs, bad_recs, dns
    finally:
        good.stop()
        good.cleanup()
        bad.cleanup()
        if dns is not None:
            dns.stop()


def test_complete_zone_is_ok(env):
    good, _, recs, _, _ = env
    r = good.cli("check", "example.test", "--private-ok")
    checks, summary = lines_of(r)
    errors, warnings = by_level(checks, "error"), by_level(checks, "warning")
    assert errors == [], r
    # the only warning: the test's certificate is self-signed (what to do is said)
    assert len(warnings) == 1 and "tls  the certificate is self-signed" in warnings[0], r
    assert "[tls] cert and key" in warnings[0]
    assert r.returncode == 1, r
    oks = "\n".join(by_level(checks, "ok"))
    for needle in (f"example.test  MX 10 {HOST} points here",
                   f"{HOST}  has address 127.0.0.1, which this server listens on",
                   f"{HOST}  PTR of 127.0.0.1 is {HOST}, which resolves back to 127.0.0.1",
                   'example.test  SPF "v=spf1 mx -all" authorises',
                   "example.test  DKIM s1-rsa._domainkey.example.test publishes our rsa key",
                   "example.test  DKIM s1-ed._domainkey.example.test publishes our ed25519 key",
                   "example.test  DMARC", "p=quarantine",
                   'example.test  MTA-STS "v=STSv1; id=20261130120000Z;"',
                   'example.test  TLS-RPT "v=TLSRPTv1; rua=mailto:tlsrpt@example.test"',
                   f"tls  the certificate names {HOST}",
                   "tls  the certificate names mta-sts.example.test",
                   "tls  the certificate names autoconfig.example.test",
                   "tls  the certificate is valid until",
                   "config  data dir", "config  dkim_dir"):
        assert needle in oks, (needle, r)
    assert summary.endswith("1 warning(s), 0 error(s)"), summary


def test_broken_zone_reports_each_problem(env):
    _, bad, recs, bad_recs, _ = env
    r = bad.cli("check", "other.test", "--private-ok")
    checks, summary = lines_of(r)
    errors = "\n".join(by_level(checks, "error"))
    expected = [
        f"error    {HOST2}  has address 127.0.0.9, which this server does not listen on",
        f"error    {HOST2}  PTR of 127.0.0.1 is {HOST} (it resolves back to the address), "
        f"not {HOST2}",
        f"publish  1.0.0.127.in-addr.arpa. PTR {HOST2}.",
        f"error    {HOST2}  PTR of 127.0.0.9 missing",
        f"publish  9.0.0.127.in-addr.arpa. PTR {HOST2}.",
        f"error    {HOST2}  PTR of 127.0.0.10 is ghost.test (not even forward-confirmed), "
        f"not {HOST2}",
        f"error    other.test  MX points elsewhere (10 mx.elsewhere.test), not to {HOST2}: "
        f"publish  other.test. MX 10 {HOST2}.",
        "error    other.test  SPF: 2 records",
        'publish  other.test. TXT "v=spf1 mx -all"',
        "error    other.test  DMARC missing: publish  _dmarc.other.test. TXT "
        '"v=DMARC1; p=quarantine; rua=mailto:postmaster@other.test"',
        'error    other.test  MTA-STS "v=STSv1; id=not-valid!" is invalid '
        "(id= must be 1 to 32 letters and digits): publish  _mta-sts.other.test. TXT "
        '"v=STSv1; id=',
        'error    other.test  TLS-RPT "v=TLSRPTv1; rua=ftp://reports.other.test" is invalid',
        'publish  _smtp._tls.other.test. TXT "v=TLSRPTv1; rua=mailto:postmaster@other.test"',
    ]
    for needle in expected:
        assert needle in errors, (needle, r)
    # the policy host is another server's: its certificate is not ours to check
    assert "ok       other.test  mta-sts.other.test leads to another server (192.0.2.80)" \
        in r.stdout, r
    # DKIM: the published key is another one, the other selector missing; both with the
    # exact record (the real p= of our keys, cut into 255-byte strings as dkim generate does)
    ed = [ln for ln in checks if "s2-ed._domainkey.other.test differs" in ln]
    rsa = [ln for ln in checks if "s2-rsa._domainkey.other.test missing" in ln]
    assert len(ed) == 1 and ed[0].startswith("error"), r
    assert len(rsa) == 1 and rsa[0].startswith("error"), r
    for line, sel in ((ed[0], "s2-ed"), (rsa[0], "s2-rsa")):
        published = records_from_list(line.split("publish  ", 1)[1])
        assert published == {f"{sel}._domainkey.other.test":
                             bad_recs[f"{sel}._domainkey.other.test"]}, line
    assert r.returncode == 2, r
    assert summary.endswith(f"{len(by_level(checks, 'error'))} error(s)"), summary


def test_public_server_warnings(env):
    """Without --private-ok: 127.0.0.1 cannot be reached from outside, and other servers
    connect to port 25."""
    good = env[0]
    r = good.cli("check", "example.test")
    warnings = "\n".join(by_level(lines_of(r)[0], "warning"))
    assert f"{HOST}  has address 127.0.0.1, a private or loopback address" in warnings, r
    assert f"[listen] smtp is on port {good.ports['smtp']}" in warnings, r
    assert r.returncode == 1, r


def test_unknown_domain_and_every_domain(env):
    good = env[0]
    r = good.cli("check", "nowhere.test", "--private-ok")
    print(r.stdout)
    assert "error    nowhere.test  is not one of the configured domains" in r.stdout, r
    assert "error    nowhere.test  MX missing (the domain does not exist)" in r.stdout, r
    assert r.returncode == 2
    # without DOMAIN: every configured domain (example.test and other.test)
    r = good.cli("check", "--private-ok")
    assert f"ok       example.test  MX 10 {HOST} points here" in r.stdout, r
    assert f"error    other.test  MX points elsewhere (10 mx.elsewhere.test), not to {HOST}" \
        in r.stdout, r
    assert r.returncode == 2


def test_broken_config_file(tmp_path):
    conf = tmp_path / "tern.conf"
    conf.write_text(f"hostname = {HOST}\ndata_dir = {tmp_path}/data\ndomains = example.test\n"
                    "\n[listen]\nsmtp = 127.0.0.1:nope\n")
    r = th.run_tern(["check", "-c", str(conf)])
    assert r.returncode == 2, r
    assert r.stdout.startswith(f"error    config  {conf}:6: "), r
    r = th.run_tern(["check", "-c", str(tmp_path / "missing.conf")])
    assert r.returncode == 2 and "error    config  " in r.stdout, r
    r = th.run_tern(["check", "--bogus"])
    assert r.returncode == 64, r


def test_dns_not_answering(tmp_path):
    """A resolver that never answers: each lookup fails after its timeout, reported as an
    error; the command ends."""
    inst = th.TernInstance(tmp_path / "t")      # its [dns] port has no server
    try:
        r = inst.cli("check", "example.test", "--private-ok", timeout=300)
        assert r.returncode == 2, r
        assert f"error    {HOST}  A/AAAA lookup failed" in r.stdout, r
        assert "error    example.test  MX lookup failed" in r.stdout, r
    finally:
        inst.cleanup()


# ---- certificates from a private CA (the system store is replaced by SSL_CERT_FILE) ----------

def _ca_pki(d):
    """A root CA, an intermediate and a function issuing leaves under the intermediate."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, ca, days, sans=(), start=None):
        start = start or now - datetime.timedelta(days=1)
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(s) for s in sans]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def pem(c):
        return c.public_bytes(serialization.Encoding.PEM)

    root_key, mid_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = cert("Test Root", root_key, "Test Root", root_key, True, 3650)
    mid = cert("Test Intermediate", mid_key, "Test Root", root_key, True, 3650)
    (d / "root.pem").write_bytes(pem(root))

    def leaf(tag, sans, days=90, start=None, with_chain=True):
        k = ec.generate_private_key(ec.SECP256R1())
        c = cert(HOST, k, "Test Intermediate", mid_key, False, days, sans, start)
        cp, kp = d / f"{tag}-cert.pem", d / f"{tag}-key.pem"
        cp.write_bytes(pem(c) + (pem(mid) if with_chain else b""))
        kp.write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        kp.chmod(0o600)
        return cp, kp

    return d / "root.pem", leaf, now


def check_with_cert(good, tmp_path, cert, key, root):
    """`tern check example.test` with good's configuration but another certificate, and root
    as the only trusted CA."""
    text = good.conf.read_text()
    text = "\n".join(f"cert = {cert}" if ln.startswith("cert = ") else
                     f"key = {key}" if ln.startswith("key = ") else ln
                     for ln in text.splitlines()) + "\n"
    conf = good.base / f"tern-{cert.stem}.conf"     # next to good's: the same dkim and tls dirs
    conf.write_text(text)
    env = dict(good.env, SSL_CERT_FILE=str(root), SSL_CERT_DIR=str(tmp_path))
    r = th.run_tern(["check", "example.test", "--private-ok", "-c", str(conf)], env=env)
    print(r.stdout)
    return r


def test_ca_signed_certificate(env, tmp_path):
    import datetime
    good = env[0]
    root, leaf, now = _ca_pki(tmp_path)
    names = [HOST, "mta-sts.example.test", "autoconfig.example.test"]
    # a leaf with its intermediate in the file: everything ok, exit 0
    r = check_with_cert(good, tmp_path, *leaf("full", names), root)
    assert "ok       tls  the certificate chain verifies against the system's CAs" in r.stdout
    assert r.returncode == 0, r
    assert r.stdout.splitlines()[-1].endswith("0 warning(s), 0 error(s)"), r
    # the intermediate left out of the file: the chain does not verify
    r = check_with_cert(good, tmp_path, *leaf("bare", names, with_chain=False), root)
    assert "error    tls  the certificate chain does not verify" in r.stdout, r
    assert "intermediate certificate missing" in r.stdout and r.returncode == 2, r
    # expiring in five days, and naming neither the host nor the policy hosts
    r = check_with_cert(good, tmp_path, *leaf("soon", ["other.name.test"], days=6), root)
    # five days less the seconds since the leaf was made: 4 or 5 as the clocks fall
    assert re.search(r"warning  tls  the certificate expires in [45] day\(s\)", r.stdout), r
    assert f"error    tls  the certificate does not name {HOST} (it names: other.name.test)" \
        in r.stdout, r
    assert "error    tls  the certificate does not name mta-sts.example.test" in r.stdout, r
    assert "warning  tls  the certificate does not name autoconfig.example.test" in r.stdout, r
    assert r.returncode == 2
    # expired yesterday
    r = check_with_cert(good, tmp_path, *leaf("old", names, days=30,
                                               start=now - datetime.timedelta(days=31)), root)
    assert "error    tls  the certificate expired on" in r.stdout and r.returncode == 2, r


def test_as_the_data_owner(tmp_path_factory):
    """Run by the data dir's owner (not root): the root-only TLS key and DKIM keys are
    warnings that say to run it as root, not errors; the rest is checked."""
    if os.geteuid() != 0:
        pytest.fail("this test becomes the data owner from root (make test runs as root)")
    d = Path(tempfile.mkdtemp(prefix="tern-check-", dir="/tmp"))
    try:
        d.chmod(0o755)
        (d / "tls").mkdir(mode=0o700)
        (d / "data").mkdir(mode=0o700)
        os.chown(d / "data", pwd.getpwnam("nobody").pw_uid, -1)
        cert, key = make_cert(d / "tls")
        conf = d / "tern.conf"
        conf.write_text(f"hostname = {HOST}\ndata_dir = {d}/data\ndomains = example.test\n"
                        "user = nobody\n[listen]\nsmtp = 127.0.0.1:25\n[dns]\n"
                        f"servers = 127.0.0.1:{th.free_udp_port()}\n")
        conf.chmod(0o644)
        r = th.run_tern(["dkim", "generate", "example.test", "-c", str(conf)])
        assert r.returncode == 0, r
        # the binary where nobody may run it (a clone in root's home is not)
        binary = d / "tern"
        shutil.copy(th.TERN_BIN, binary)
        binary.chmod(0o755)
        p = subprocess.run(["runuser", "-u", "nobody", "--", str(binary), "check",
                            "example.test", "-c", str(conf)], capture_output=True, text=True,
                           timeout=th.CLI_TIMEOUT)
        print(p.stdout, p.stderr)
        assert f"ok       config  data dir {d}/data: owner uid" in p.stdout
        assert f"warning  tls  certificate: {cert}: Permission denied (run tern check as root" \
            in p.stdout
        assert "warning  config  DKIM keys: " in p.stdout and "run tern check as root" in p.stdout
        assert "error    config" not in p.stdout and "error    tls" not in p.stdout
        # as root the same files check out
        r = th.run_tern(["check", "example.test", "-c", str(conf)])
        assert "ok       tls  certificate " in r.stdout and " load and match" in r.stdout, r
        assert "DKIM keys" not in r.stdout, r
    finally:
        shutil.rmtree(d)


def test_wildcard_listener_and_nat(env):
    """With smtp on 0.0.0.0 an address none of the interfaces has may be forwarded by a NAT:
    a warning, not an error; the addresses of the interfaces count as ours."""
    bad = env[1]
    text = "\n".join(f"smtp = 0.0.0.0:{bad.ports['smtp']}" if ln.startswith("smtp = ") else ln
                     for ln in bad.conf.read_text().splitlines()) + "\n"
    conf = bad.base / "tern-wildcard.conf"
    conf.write_text(text)
    r = th.run_tern(["check", "other.test", "--private-ok", "-c", str(conf)], env=bad.env)
    print(r.stdout)
    assert f"warning  {HOST2}  has address 127.0.0.9, which none of this host's interfaces " \
        "has: right only if it is forwarded here (NAT)" in r.stdout, r
    assert f"ok       {HOST2}  has address 127.0.0.1, which this server listens on" in r.stdout
    assert "does not listen on" not in r.stdout, r
