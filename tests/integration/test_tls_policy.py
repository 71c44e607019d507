"""Hardening, TLS: every TLS port (implicit: submissions, pop3s, imaps; STARTTLS: smtp,
submission, pop3, imap) speaks TLS 1.2 and 1.3 only, with Mozilla's "intermediate" suites for
TLS 1.2 in the client's order, no renegotiation; the self-signed certificate names the
addresses the server listens on. Checked with openssl s_client and Python's ssl.

The refusals can fail: a control server (openssl s_server willing to speak TLS 1.0/1.1 and
the CBC suite) proves that the client invocations used here do offer what is refused."""
import shutil
import socket
import ssl
import subprocess
import time

import pytest

import tern_harness as th

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

IMPLICIT = ("submissions", "pop3s", "imaps")
STARTTLS = {"smtp": "smtp", "submission": "smtp", "pop3": "pop3", "imap": "imap"}
ALL_ROLES = IMPLICIT + tuple(STARTTLS)
# a client that will speak old protocols if the server does (Debian's default security
# level would refuse them on the client side: a refusal must be the server's)
OLD_OK = ["-cipher", "DEFAULT:@SECLEVEL=0"]
CBC = "ECDHE-ECDSA-AES128-SHA"     # in OpenSSL's default list, not in Mozilla intermediate


def s_client(port, role, *args, stdin=b"", timeout=30):
    """Run openssl s_client against 127.0.0.1:port (with -starttls for STARTTLS roles);
    (returncode, output text)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
            th.HOSTNAME]
    if role in STARTTLS:
        argv += ["-starttls", STARTTLS[role]]
    argv += list(args)
    p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def negotiated(out):
    """(protocol, cipher) from s_client's summary, or None when no handshake completed. The
    "New, <version>, Cipher is <suite>" line gives the suite (and names the suite's version,
    not the connection's); the SSL-Session block's Protocol line, printed at once for TLS
    1.2 and below (TLS 1.3: only after a session ticket), gives the protocol."""
    new = proto = None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("New, ") and "Cipher is" in line:
            new = line
        elif line.startswith("Protocol  :"):
            proto = line.split(":", 1)[1].strip()
    if new is None:
        return None
    cipher = new.split("Cipher is", 1)[1].strip()
    if cipher == "(NONE)":
        return None
    return proto or new.split(",")[1].strip(), cipher


def refused_by_server(out):
    """No handshake, and not because our own client would not offer the protocol. (Implicit
    TLS ports answer with a protocol_version alert; after STARTTLS the connection is closed
    without one.)"""
    return (negotiated(out) is None and "no protocols available" not in out
            and ("alert protocol version" in out or "unexpected eof" in out))


@pytest.fixture(scope="module")
def control_port(tmp_path_factory):
    """openssl s_server that accepts TLS 1.0 and up with every suite (security level 0)."""
    d = tmp_path_factory.mktemp("tls-control")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem"), "-subj", "/CN=control", "-days", "1"],
                   check=True, capture_output=True)
    port = th.free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                             str(d / "c.pem"), "-key", str(d / "k.pem"), "-cipher",
                             "ALL:@SECLEVEL=0", "-www"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.mark.parametrize("flag,proto", [("-tls1", "TLSv1"), ("-tls1_1", "TLSv1.1")])
def test_control_client_can_speak_old_tls(control_port, flag, proto):
    """The client side of the refusal tests below is able to negotiate what they refuse."""
    rc, out = s_client(control_port, "control", flag, *OLD_OK)
    assert negotiated(out) is not None and negotiated(out)[0] == proto, out[-1500:]
    rc, out = s_client(control_port, "control", "-tls1_2", "-cipher", CBC)
    assert negotiated(out) == ("TLSv1.2", CBC), out[-1500:]


@pytest.mark.parametrize("role", ALL_ROLES)
def test_tls12_and_tls13_only(server, role, control_port):
    port = server.ports[role]
    for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        rc, out = s_client(port, role, flag)
        got = negotiated(out)
        assert got is not None and got[0] == proto, f"{role} {flag}:\n{out[-1500:]}"
    for flag in ("-tls1_1", "-tls1"):
        rc, out = s_client(port, role, flag, *OLD_OK)
        assert negotiated(out) is None, f"{role} accepted {flag}:\n{out[-1500:]}"
        assert refused_by_server(out), f"{role} {flag}:\n{out[-1500:]}"


@pytest.mark.parametrize("role", ("submissions", "smtp", "imap"))
def test_tls12_suites_intermediate_in_client_order(server, role, control_port):
    port = server.ports[role]
    # a CBC suite with SHA-1 MAC that OpenSSL's defaults would take
    rc, out = s_client(port, role, "-tls1_2", "-cipher", CBC)
    assert negotiated(out) is None, f"{role} accepted {CBC}:\n{out[-1500:]}"
    # the client's preference wins (OpenSSL's server order would pick AES-256-GCM first)
    rc, out = s_client(port, role, "-tls1_2", "-cipher",
                       "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384")
    assert negotiated(out) == ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305"), out[-1500:]
    rc, out = s_client(port, role, "-tls1_2")
    got = negotiated(out)
    assert got is not None and ("GCM" in got[1] or "CHACHA20" in got[1]), out[-1500:]


def test_no_renegotiation(server):
    """A client asking for a TLS 1.2 renegotiation is refused."""
    port = server.ports["imaps"]
    p = subprocess.Popen(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        # wait for the greeting, then ask for a renegotiation ("R" on a line of its own)
        out = b""
        deadline = time.monotonic() + 20
        while b"* OK" not in out and time.monotonic() < deadline:
            out += p.stdout.read1(4096)
        assert b"* OK" in out, out[-1500:]
        p.stdin.write(b"R\n")
        p.stdin.flush()
        p.stdin.write(b"a NOOP\n")
        p.stdin.flush()
        rest, _ = p.communicate(timeout=20)
        out += rest
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode("utf-8", "replace")
    assert "RENEGOTIATING" in text, text[-1500:]
    assert "no renegotiation" in text, text[-1500:]


def test_selfsigned_names_listen_addresses(server):
    """Verified against itself, the development certificate is valid for the address the
    client connected to (IP SAN) and for the host name."""
    cert = server.tls_dir / "cert.pem"
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and f"DNS:{th.HOSTNAME}" in text, text
    ctx = ssl.create_default_context(cafile=str(cert))
    assert ctx.check_hostname
    for name in ("127.0.0.1", th.HOSTNAME):
        with socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                assert t.version() in ("TLSv1.2", "TLSv1.3")
    with socket.create_connection(("127.0.0.1", server.ports["imaps"]), timeout=10) as s:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(s, server_hostname="127.0.0.2")
