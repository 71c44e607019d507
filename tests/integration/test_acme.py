"""ACME (RFC 8555) against pebble, Let's Encrypt's test CA (Debian package `pebble`), on
loopback.

- Issuance: tern starts with its self-signed certificate and `[tls] acme` pointing at pebble;
  its ACME child answers pebble's http-01 challenges (files in [tls] acme_challenge_dir that
  tern's own http role serves on pebble's httpPort), gets a certificate for the host name and the
  mta-sts./autoconfig. names of both domains, and the master reloads: a client that trusts only
  pebble's root (Python's ssl, cafile) then verifies tern's certificate, with the host name, on
  SMTP (STARTTLS), POP3 (pop3s and STLS) and IMAP (imaps). A second check finds the
  certificate good and orders nothing.
- Renewal: pebble issues certificates that live one hour (certificateValidityPeriod), less
  than the 30 days before expiry at which tern renews, so every check renews: a new serial is
  served on new connections while an SMTP session opened before the renewal finishes its
  transaction on the old one.
- Failure: with the CA down (tern restarted with a certificate due for renewal), the
  certificate served stays the same, the log says why and when the next attempt is.
- A key and chain that do not match at start (a crash between the two renames of a renewal):
  tern starts on a new self-signed pair and the CA's certificate follows.
- badNonce: pebble rejecting 30% of nonces: tern retries once with the fresh nonce
  (RFC 8555 §6.5) and still gets its certificate.

DNS: pebble resolves tern's names through a private dnsmasq (dnszone.py) mapping them to
127.0.0.1.
"""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

import tern_harness as th
from dnszone import Dnsmasq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

NAMES = [th.HOSTNAME] + [f"{p}.{d}" for d in th.DOMAINS for p in ("mta-sts", "autoconfig")]
ISSUE_TIMEOUT = th.scaled(90)


class Pebble:
    """pebble on 127.0.0.1 with a throwaway HTTPS certificate (Debian's package ships none)."""

    def __init__(self, base, dns_port, http_port, validity=None, env=None):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = th.free_port()
        self.mgmt_port = th.free_port()
        self.http_port = http_port
        self.dns_port = dns_port
        self.validity = validity
        self.env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self.env.update(env or {})
        self.proc = None
        self.log_path = self.base / "pebble.log"
        self.tls_cert = self.base / "pebble-cert.pem"   # trusted by tern: acme_ca_file
        self.tls_key = self.base / "pebble-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(self.tls_key),
                        "-out", str(self.tls_cert), "-subj", "/CN=pebble.localhost",
                        "-days", "2", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True)

    @property
    def directory(self):
        return f"https://127.0.0.1:{self.port}/dir"

    def start(self, timeout=30):
        conf = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": str(self.tls_cert), "privateKey": str(self.tls_key),
            "httpPort": self.http_port, "tlsPort": th.free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        if self.validity:
            conf["pebble"]["certificateValidityPeriod"] = self.validity
        cfile = self.base / "pebble.json"
        cfile.write_text(json.dumps(conf))
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["pebble", "-config", str(cfile),
                                      "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        logf.close()
        ctx = ssl.create_default_context(cafile=str(self.tls_cert))
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.directory, context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise th.TernError(f"pebble did not start: {th.tail(self.log_path)}")
            time.sleep(0.05)  # poll interval

    def root_pem(self):
        """The root that pebble's issued chains lead to (management interface)."""
        ctx = ssl.create_default_context(cafile=str(self.tls_cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.mgmt_port}/roots/0",
                                    context=ctx, timeout=10) as r:
            return r.read().decode()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


class AcmeTern(th.TernInstance):
    """A TernInstance whose [tls] section carries the acme keys."""

    acme_lines = ()

    def config_text(self):
        text = super().config_text()
        return text.replace("[tls]\n", "[tls]\n" + "".join(f"{l}\n" for l in self.acme_lines), 1)


@pytest.fixture
def acme_env(tmp_path):
    """make(validity=None, pebble_env=None, check_interval=3600) -> (tern, pebble): dnsmasq,
    pebble, and tern (root, user nobody) with [tls] acme and its http role on pebble's
    httpPort, which serves the challenges."""
    made = []
    chal = Path(tempfile.mkdtemp(prefix="tern-acme-", dir="/tmp"))
    os.chmod(chal, 0o755)   # the workers (nobody) read it: a root 0755 path from /
    chal_dir = chal / "challenges"

    def make(validity=None, pebble_env=None, check_interval=3600):
        dns = Dnsmasq(tmp_path / "dns", [f"host-record={n},127.0.0.1" for n in NAMES]).start()
        made.append(dns)
        http_port = th.free_port()
        pebble = Pebble(tmp_path / "pebble", dns.port, http_port, validity, pebble_env)
        pebble.start()
        made.append(pebble)
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}
        inst = AcmeTern(tmp_path / "tern", user="nobody", env=env)
        inst.ports["http"] = http_port
        inst.acme_lines = (f"acme = {pebble.directory}", "acme_email = postmaster@example.test",
                           f"acme_ca_file = {pebble.tls_cert}",
                           f"acme_challenge_dir = {chal_dir}",
                           f"acme_check_interval = {check_interval}")
        inst.write_config()
        made.append(inst)
        inst.add_user("alice@example.test", th.USERS["alice@example.test"])
        inst.start()
        return inst, pebble

    yield make
    for thing in reversed(made):
        thing.stop()
        if isinstance(thing, th.TernInstance):
            thing.cleanup()
            found = thing.sanitizer_reports()
            assert not found, f"sanitizer reports {found}: {thing.log_tail(80)}"
            vg = thing.valgrind_reports()
            assert not vg, f"valgrind reports:\n{thing.valgrind_text(vg)}"
    shutil.rmtree(chal, ignore_errors=True)


def wait_log(inst, pattern, count=1, timeout=ISSUE_TIMEOUT):
    """The log's matches of pattern once there are count of them (polling the log)."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, inst.log_text())
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count}x /{pattern}/ in the log after {timeout}s:\n"
                                 f"{inst.log_tail(60)}")
        time.sleep(0.1)  # poll interval


def trusting(root_pem):
    """A client context that trusts pebble's root and nothing else, checking host names."""
    ctx = ssl.create_default_context(cadata=root_pem)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def _smtp_reply(sock):
    while True:
        line = _read_line(sock)
        if line[3:4] != b"-":
            return line


def tls_session(inst, role, ctx, name=th.HOSTNAME):
    """A TLS socket to role, verified against ctx with name: STARTTLS on smtp, STLS on pop3,
    implicit TLS on pop3s/imaps/submissions. ssl.SSLCertVerificationError when it fails."""
    sock = socket.create_connection(("127.0.0.1", inst.ports[role]), timeout=th.IO_TIMEOUT)
    try:
        if role in ("smtp", "submission"):
            assert _smtp_reply(sock).startswith(b"220")
            sock.sendall(b"EHLO client.example.net\r\n")
            assert _smtp_reply(sock).startswith(b"250")
            sock.sendall(b"STARTTLS\r\n")
            assert _smtp_reply(sock).startswith(b"220")
        elif role == "pop3":
            assert _read_line(sock).startswith(b"+OK")
            sock.sendall(b"STLS\r\n")
            assert _read_line(sock).startswith(b"+OK")
        elif role == "imap":
            assert _read_line(sock).startswith(b"* OK")
            sock.sendall(b"a STARTTLS\r\n")
            assert _read_line(sock).startswith(b"a OK")
        return ctx.wrap_socket(sock, server_hostname=name)
    except BaseException:
        sock.close()
        raise


def served_serial(inst, ctx, role="imaps"):
    with tls_session(inst, role, ctx) as t:
        return t.getpeercert()["serialNumber"]


def wait_verified(inst, ctx, role="imaps", not_serial=None, timeout=ISSUE_TIMEOUT):
    """The serial of the first verified certificate served on role (other than not_serial):
    after a reload, new workers take over the listeners within moments."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            serial = served_serial(inst, ctx, role)
            if serial != not_serial:
                return serial
            last = f"still serial {serial}"
        except (ssl.SSLError, OSError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"no verified certificate on {role}: {last}\n"
                                 f"{inst.log_tail(60)}")
        time.sleep(0.1)  # poll interval


def test_issue_and_verify_on_smtp_pop3_imap(acme_env):
    inst, pebble = acme_env()
    ctx = trusting(pebble.root_pem())
    wait_log(inst, r"acme: new certificate serial=(\w+)")
    wait_log(inst, r"reloaded: certificate")
    serial = wait_verified(inst, ctx)
    for role in ("smtp", "submission", "pop3", "pop3s", "imap", "imaps", "submissions"):
        with tls_session(inst, role, ctx) as t:
            cert = t.getpeercert()
            assert cert["serialNumber"] == serial, role
            sans = {v for k, v in cert["subjectAltName"] if k == "DNS"}
            assert sans == set(NAMES), (role, sans)
    # every name verifies, and a name not in the certificate does not
    for name in NAMES:
        tls_session(inst, "imaps", ctx, name=name).close()
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_session(inst, "imaps", ctx, name="other.example.test").close()
    # the keys are root's alone; no challenge file is left behind
    for f in ("key.pem", "acme-account.pem"):
        st = os.stat(inst.tls_dir / f)
        assert st.st_uid == 0 and st.st_mode & 0o077 == 0, (f, oct(st.st_mode))
    chal = Path(re.search(r"acme_challenge_dir = (\S+)", inst.conf.read_text()).group(1))
    assert chal.stat().st_uid == 0 and chal.stat().st_mode & 0o777 == 0o755
    assert list(chal.iterdir()) == []


def test_good_certificate_is_not_renewed(acme_env):
    inst, pebble = acme_env(check_interval=2)
    wait_log(inst, r"acme: new certificate serial=")
    wait_log(inst, r"acme: certificate good until \S+ for all 5 names", count=2)
    assert len(re.findall(r"acme: new certificate", inst.log_text())) == 1


@pytest.mark.no_valgrind  # the old session must finish within shutdown_timeout of a reload
def test_renewal_new_serial_old_session_lives(acme_env):
    # one-hour certificates, renewed 30 days before expiry: every check renews
    inst, pebble = acme_env(validity=3600, check_interval=4)
    ctx = trusting(pebble.root_pem())
    first = wait_log(inst, r"acme: new certificate serial=(\w+)")[0]
    serial1 = wait_verified(inst, ctx)
    # a transaction open on the current certificate, across the renewal
    old = tls_session(inst, "smtp", ctx)
    old.sendall(b"EHLO client.example.net\r\n")
    assert _smtp_reply(old).startswith(b"250")
    old.sendall(b"MAIL FROM:<someone@example.net>\r\n")
    assert _smtp_reply(old).startswith(b"250")
    old.sendall(b"RCPT TO:<alice@example.test>\r\n")
    assert _smtp_reply(old).startswith(b"250")
    serials = wait_log(inst, r"acme: new certificate serial=(\w+)", count=2)
    assert serials[1] != first
    serial2 = wait_verified(inst, ctx, not_serial=serial1)
    assert serial2 != serial1
    # the old session is still on its TLS session and finishes its transaction
    old.sendall(b"DATA\r\n")
    assert _smtp_reply(old).startswith(b"354")
    old.sendall(b"Subject: across a renewal\r\n\r\nbody\r\n.\r\n")
    assert _smtp_reply(old).startswith(b"250")
    old.close()
    inst.wait_message("alice@example.test", b"across a renewal")


def test_ca_down_keeps_certificate_and_says_why(acme_env):
    # one-hour certificates: due again at the next check, which the restart makes at once
    inst, pebble = acme_env(validity=3600)
    ctx = trusting(pebble.root_pem())
    wait_log(inst, r"acme: new certificate serial=")
    serial = wait_verified(inst, ctx)
    inst.stop()
    pebble.stop()
    inst.start()
    found = wait_log(inst, r"acme: no new certificate, keeping the current one: ([^\n]+)")
    assert re.search(r"/dir: .*Couldn't connect to server", found[-1]), found[-1]
    wait_log(inst, r"acme: attempt 1 failed; next attempt in 60 s")
    assert served_serial(inst, ctx) == serial
    assert served_serial(inst, ctx, "pop3s") == serial
    assert served_serial(inst, ctx, "smtp") == serial


@pytest.mark.no_valgrind  # repeated runs until one gets through 30% of rejected nonces
def test_bad_nonce_is_retried(acme_env):
    inst, pebble = acme_env(pebble_env={"PEBBLE_WFE_NONCEREJECT": "30"}, check_interval=2)
    wait_log(inst, r"the CA refused the nonce \(badNonce\): retrying once")
    wait_log(inst, r"acme: new certificate serial=", timeout=th.scaled(120))
    ctx = trusting(pebble.root_pem())
    wait_verified(inst, ctx)


def test_mismatched_pair_at_start_recovers(acme_env):
    """A crash between the two renames of a renewal leaves a new key with the old chain: tern
    still starts (on a fresh self-signed pair, logged) and the CA's certificate follows."""
    inst, pebble = acme_env()
    ctx = trusting(pebble.root_pem())
    wait_log(inst, r"acme: new certificate serial=")
    serial = wait_verified(inst, ctx)
    inst.stop()
    key = inst.tls_dir / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", str(key)], check=True, capture_output=True)
    os.chmod(key, 0o600)
    inst.start()
    assert "[tls] acme: starting with a new self-signed certificate" in inst.log_text()
    wait_log(inst, r"acme: new certificate serial=", count=2)
    assert wait_verified(inst, ctx, not_serial=serial) != serial
