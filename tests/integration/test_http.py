"""The HTTP role (src/http, evhttp): /metrics on its own listener; ACME HTTP-01 challenges,
MTA-STS and mail client autoconfiguration on http and https. Driven with curl and urllib."""
import os
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

import tern_harness as th


def http_instance(tern_factory, roles=("http", "https", "metrics"), **kw):
    """An instance with the HTTP listeners added (free ports) besides the mail ones."""
    inst = tern_factory(start=False, **kw)
    for r in roles:
        inst.ports[r] = th.free_port()
    inst.write_config()
    inst.start()
    return inst


def get(inst, role, path, host="localhost", method="GET", data=None, headers=None):
    """(status, headers, body) of one request over plain HTTP (urllib)."""
    url = f"http://127.0.0.1:{inst.ports[role]}{path}"
    req = urllib.request.Request(url, method=method, data=data)
    req.add_header("Host", host)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=th.IO_TIMEOUT) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "30", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    return p


def test_metrics_route(tern_factory):
    inst = http_instance(tern_factory)
    st, h, body = get(inst, "metrics", "/metrics")
    assert st == 200
    assert h["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"tern_up 1" in body or b"# TYPE" in body
    # with curl too, and only /metrics there
    p = curl("-i", f"http://127.0.0.1:{inst.ports['metrics']}/metrics")
    assert p.returncode == 0 and b"version=0.0.4" in p.stdout
    assert get(inst, "metrics", "/")[0] == 404
    assert get(inst, "metrics", "/.well-known/mta-sts.txt", host="mta-sts.example.test")[0] == 404
    # not on the public listeners
    assert get(inst, "http", "/metrics")[0] == 404


def test_metrics_port_alone_is_loopback(tern_factory):
    """`metrics = PORT` (no address) binds 127.0.0.1:PORT."""
    inst = tern_factory(start=False)
    port = inst.ports["metrics"] = th.free_port()
    full = inst.config_text
    inst.config_text = lambda: full().replace(f"metrics = 127.0.0.1:{port}", f"metrics = {port}")
    inst.write_config()
    assert f"\nmetrics = {port}\n" in inst.conf.read_text()
    inst.start()
    st, h, _ = get(inst, "metrics", "/metrics")
    assert st == 200
    assert f"metrics on 127.0.0.1:{port}" in inst.log_text()


@pytest.fixture
def challenge_dir():
    """A challenge directory the dropped workers can reach (pytest's tmp_path is root's
    0700): a fresh one in /tmp, which tern creates itself (root's, 0755) at start."""
    import shutil
    import tempfile
    parent = tempfile.mkdtemp(prefix="tern-acme-", dir="/tmp")
    os.chmod(parent, 0o755)
    yield os.path.join(parent, "acme-challenge")
    shutil.rmtree(parent, ignore_errors=True)


def _acme_instance(tern_factory, challenge_dir, roles):
    inst = tern_factory(start=False)
    for r in roles:
        inst.ports[r] = th.free_port()
    full = inst.config_text
    inst.config_text = lambda: full().replace(
        "[tls]\n", f"[tls]\nacme_challenge_dir = {challenge_dir}\n", 1)
    inst.write_config()
    inst.start()
    return inst


def test_acme_challenge(tern_factory, challenge_dir):
    inst = _acme_instance(tern_factory, challenge_dir, ("http",))
    st = os.stat(challenge_dir)
    assert st.st_uid == os.geteuid() and (st.st_mode & 0o777) == 0o755
    tok = "AbC-_09xyz" * 4
    keyauth = tok + ".thumbprint_-XYZ"
    with open(os.path.join(challenge_dir, tok), "w") as f:
        f.write(keyauth)
    os.chmod(os.path.join(challenge_dir, tok), 0o644)
    # any Host (the CA asks for the name being validated)
    for host in ("mx.example.test", "autoconfig.other.test", "unknown.invalid"):
        st_, h, body = get(inst, "http", "/.well-known/acme-challenge/" + tok, host=host)
        assert st_ == 200 and body == keyauth.encode()
        assert h["Content-Type"] == "application/octet-stream"
    p = curl(f"http://127.0.0.1:{inst.ports['http']}/.well-known/acme-challenge/{tok}")
    assert p.returncode == 0 and p.stdout == keyauth.encode()
    # HEAD: the headers, no body
    st_, h, body = get(inst, "http", "/.well-known/acme-challenge/" + tok, method="HEAD")
    assert st_ == 200 and body == b""
    # absent token, odd tokens, traversal: 404
    secret = os.path.join(os.path.dirname(challenge_dir), "secret")
    with open(secret, "w") as f:
        f.write("do not serve")
    os.chmod(secret, 0o644)
    for bad in ("nosuchtoken", "", "..%2Fsecret", "../secret", "%2e%2e/secret", "a.b",
                tok + "%00", "x" * 257, tok + "/", "%41bC", ".", ".."):
        st_, _, body = get(inst, "http", "/.well-known/acme-challenge/" + bad)
        assert st_ in (400, 404), (bad, st_)
        assert b"do not serve" not in body
    # a raw request with a path curl would normalise
    with socket.create_connection(("127.0.0.1", inst.ports["http"]), timeout=10) as s:
        s.sendall(b"GET /.well-known/acme-challenge/../secret HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.") and b" 404 " in data.split(b"\r\n")[0]
    # a symlink in the directory is not followed
    link = "Linked_token"
    os.symlink(secret, os.path.join(challenge_dir, link))
    assert get(inst, "http", "/.well-known/acme-challenge/" + link)[0] == 404
    # a file over 4 KiB is not served
    big = "Big_token"
    with open(os.path.join(challenge_dir, big), "w") as f:
        f.write("x" * 5000)
    os.chmod(os.path.join(challenge_dir, big), 0o644)
    assert get(inst, "http", "/.well-known/acme-challenge/" + big)[0] == 404
    # a method other than GET/HEAD
    assert get(inst, "http", "/.well-known/acme-challenge/" + tok, method="POST",
               data=b"x")[0] in (404, 405)
    assert get(inst, "http", "/.well-known/acme-challenge/" + tok, method="PUT",
               data=b"x")[0] in (405, 501)


# -- client autoconfiguration ------------------------------------------------------------

MIX_DROP = ("imap", "pop3s", "submissions")     # a mix: imaps + pop3 + submission remain


def mixed_instance(tern_factory):
    """http + https, and of the mail roles only imaps, pop3 (STARTTLS), submission
    (STARTTLS) and smtp."""
    inst = tern_factory(start=False)
    for r in MIX_DROP:
        del inst.ports[r]
    for r in ("http", "https"):
        inst.ports[r] = th.free_port()
    inst.write_config()
    inst.start()
    return inst


def servers(root, tag):
    """{type: [(hostname, port, socketType, username, authentication)]} of the clientConfig"""
    out = {}
    for s in root.iter(tag):
        out.setdefault(s.get("type"), []).append(tuple(
            s.findtext(k) for k in ("hostname", "port", "socketType", "username",
                                    "authentication")))
    return out


def test_thunderbird_autoconfig(tern_factory):
    import xml.etree.ElementTree as ET
    inst = mixed_instance(tern_factory)
    p = inst.ports
    for role, path, host in (
            ("http", "/mail/config-v1.1.xml?emailaddress=alice%40example.test",
             "autoconfig.example.test"),
            ("http", "/mail/config-v1.1.xml", "autoconfig.example.test"),
            ("http", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=alice%40example.test",
             "example.test"),
            ("http", "/.well-known/autoconfig/mail/config-v1.1.xml", "EXAMPLE.test:80")):
        st, h, body = get(inst, role, path, host=host)
        assert st == 200, (path, host, body)
        assert h["Content-Type"].startswith("application/xml")
        root = ET.fromstring(body)
        assert root.tag == "clientConfig" and root.get("version") == "1.1"
        providers = root.findall("emailProvider")
        assert len(providers) == 1 and providers[0].get("id") == "example.test"
        assert [d.text for d in providers[0].findall("domain")] == ["example.test"]
        assert providers[0].findtext("displayName")
        inc = servers(providers[0], "incomingServer")
        out = servers(providers[0], "outgoingServer")
        user = ("%EMAILADDRESS%", "password-cleartext")
        assert inc == {
            "imap": [(th.HOSTNAME, str(p["imaps"]), "SSL") + user],
            "pop3": [(th.HOSTNAME, str(p["pop3"]), "STARTTLS") + user],
        }, inc
        assert out == {"smtp": [(th.HOSTNAME, str(p["submission"]), "STARTTLS") + user]}, out
        # no port of a role not configured, and never port 25 (smtp is for other servers)
        for s in providers[0]:
            assert s.findtext("port") not in (str(p["smtp"]),)
    # the other domain, over https with curl, trusting the server's certificate
    r = curl("--cacert", str(inst.tls_dir / "cert.pem"), "-H", "Host: autoconfig.other.test",
             f"https://127.0.0.1:{p['https']}/mail/config-v1.1.xml")
    assert r.returncode == 0, r.stderr
    assert ET.fromstring(r.stdout).find("emailProvider").get("id") == "other.test"
    # unknown domains: 404
    for path, host in (("/mail/config-v1.1.xml", "autoconfig.unknown.test"),
                       ("/mail/config-v1.1.xml?emailaddress=a%40unknown.test",
                        "autoconfig.example.test"),
                       ("/mail/config-v1.1.xml?emailaddress=not-an-address",
                        "autoconfig.example.test"),
                       ("/mail/config-v1.1.xml?emailaddress=a%00%40example.test",
                        "autoconfig.example.test"),
                       ("/.well-known/autoconfig/mail/config-v1.1.xml", "unknown.test"),
                       ("/mail/config-v1.1.xml", "")):
        assert get(inst, "http", path, host=host)[0] == 404, (path, host)


def test_outlook_autodiscover(tern_factory):
    import xml.etree.ElementTree as ET
    inst = mixed_instance(tern_factory)
    p = inst.ports
    body = ('<?xml version="1.0" encoding="utf-8"?>\r\n'
            '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
            'requestschema/2006">\r\n<Request>\r\n'
            '<EMailAddress>bob@example.test</EMailAddress>\r\n'
            '<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/'
            'outlook/responseschema/2006a</AcceptableResponseSchema>\r\n'
            '</Request>\r\n</Autodiscover>\r\n').encode()
    st, h, resp = get(inst, "http", "/Autodiscover/Autodiscover.xml",
                      host="autodiscover.example.test", method="POST", data=body,
                      headers={"Content-Type": "text/xml"})
    assert st == 200, resp
    assert h["Content-Type"].startswith("application/xml")
    root = ET.fromstring(resp)
    ns = {"a": "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006",
          "o": "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"}
    assert root.tag == "{%s}Autodiscover" % ns["a"]
    acct = root.find("o:Response/o:Account", ns)
    assert acct.findtext("o:AccountType", namespaces=ns) == "email"
    assert acct.findtext("o:Action", namespaces=ns) == "settings"
    protos = {pr.findtext("o:Type", namespaces=ns): pr for pr in acct.findall("o:Protocol", ns)}
    assert set(protos) == {"IMAP", "POP3", "SMTP"}
    want = {"IMAP": (p["imaps"], "SSL"), "POP3": (p["pop3"], "TLS"),
            "SMTP": (p["submission"], "TLS")}
    for t, (port, enc) in want.items():
        pr = protos[t]
        assert pr.findtext("o:Server", namespaces=ns) == th.HOSTNAME
        assert pr.findtext("o:Port", namespaces=ns) == str(port)
        assert pr.findtext("o:Encryption", namespaces=ns) == enc
        assert pr.findtext("o:LoginName", namespaces=ns) == "bob@example.test"
    # with curl too (lower-case path)
    r = curl("-X", "POST", "--data-binary", body.decode(), "-H", "Content-Type: text/xml",
             f"http://127.0.0.1:{p['http']}/autodiscover/autodiscover.xml")
    assert r.returncode == 0 and b"<Type>IMAP</Type>" in r.stdout
    # no address, a bad one, a foreign domain, a body over the limit
    bad = body.replace(b"bob@example.test", b"bob@unknown.test")
    assert get(inst, "http", "/autodiscover/autodiscover.xml", method="POST", data=bad)[0] == 404
    assert get(inst, "http", "/autodiscover/autodiscover.xml", method="POST",
               data=b"<Request></Request>")[0] == 400
    evil = body.replace(b"bob@example.test", b"<x>bob@example.test")
    assert get(inst, "http", "/autodiscover/autodiscover.xml", method="POST", data=evil)[0] == 400
    big = body + b" " * 20000
    assert get(inst, "http", "/autodiscover/autodiscover.xml", method="POST",
               data=big)[0] == 413
    # GET is not how autodiscover is asked
    assert get(inst, "http", "/autodiscover/autodiscover.xml")[0] == 404


def test_apple_mobileconfig(tern_factory):
    import plistlib
    inst = mixed_instance(tern_factory)
    p = inst.ports
    st, h, body = get(inst, "http", "/apple/tern.mobileconfig?emailaddress=alice%40example.test")
    assert st == 200
    assert h["Content-Type"] == "application/x-apple-aspen-config"
    pl = plistlib.loads(body)
    assert pl["PayloadType"] == "Configuration" and pl["PayloadVersion"] == 1
    (mail,) = pl["PayloadContent"]
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAddress"] == "alice@example.test"
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["IncomingMailServerHostName"] == th.HOSTNAME
    assert mail["IncomingMailServerPortNumber"] == p["imaps"]
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerPortNumber"] == p["submission"]
    assert mail["IncomingMailServerUsername"] == "alice@example.test"
    # the same address, the same profile identity (a reinstall replaces it)
    assert plistlib.loads(get(inst, "http", "/apple/tern.mobileconfig?emailaddress="
                              "alice%40example.test")[2])["PayloadUUID"] == pl["PayloadUUID"]
    for q in ("", "?emailaddress=a%40unknown.test", "?emailaddress=%3Cx%3E%40example.test",
              "?other=1"):
        assert get(inst, "http", "/apple/tern.mobileconfig" + q)[0] == 404, q


# -- MTA-STS -----------------------------------------------------------------------------

def test_mta_sts_policy(tern_factory):
    inst = tern_factory(start=False, settings={"mta_sts_mode": "enforce",
                                               "mta_sts_max_age": "86400"})
    for r in ("http", "https"):
        inst.ports[r] = th.free_port()
    inst.write_config()
    inst.start()
    want = (f"version: STSv1\r\nmode: enforce\r\nmx: {th.HOSTNAME}\r\n"
            f"max_age: 86400\r\n").encode()
    # over https, verifying the server's certificate (it names 127.0.0.1)
    r = curl("--cacert", str(inst.tls_dir / "cert.pem"), "-D", "-",
             "-H", "Host: mta-sts.example.test",
             f"https://127.0.0.1:{inst.ports['https']}/.well-known/mta-sts.txt")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    ctype = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-type:")]
    assert ctype == [b"Content-Type: text/plain"], ctype
    assert body == want
    # the other domain, over http (for testing), urllib
    st, h, body = get(inst, "http", "/.well-known/mta-sts.txt", host="mta-sts.other.test")
    assert st == 200 and h["Content-Type"] == "text/plain" and body == want
    # not for a domain of others, nor without the mta-sts. label
    for host in ("mta-sts.unknown.test", "example.test", "mx.example.test", ""):
        assert get(inst, "http", "/.well-known/mta-sts.txt", host=host)[0] == 404, host


def test_mta_sts_default_mode(tern_factory):
    inst = http_instance(tern_factory, roles=("http",))
    st, _, body = get(inst, "http", "/.well-known/mta-sts.txt", host="mta-sts.example.test")
    assert st == 200
    assert body == (f"version: STSv1\r\nmode: testing\r\nmx: {th.HOSTNAME}\r\n"
                    f"max_age: 604800\r\n").encode()


# -- limits and hostile clients ------------------------------------------------------------

def raw_request(port, data, timeout=10):
    """Send data, read until the server closes (or timeout); the bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def test_oversize_headers_rejected(tern_factory):
    inst = http_instance(tern_factory, roles=("http", "metrics"))
    for role in ("http", "metrics"):
        big = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        out = raw_request(inst.ports[role], big)
        assert out == b"" or out.split(b"\r\n")[0].split(b" ")[1] in (b"400", b"413"), out[:200]
        assert b"tern_up" not in out
        long_line = b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        out = raw_request(inst.ports[role], long_line)
        assert out == b"" or out.split(b"\r\n")[0].split(b" ")[1] in (b"400", b"413", b"414")
    # and the listener still serves
    assert get(inst, "metrics", "/metrics")[0] == 200


@pytest.mark.no_valgrind
def test_slow_client_does_not_block(tern_factory):
    """Clients that send half a request and stall hold no worker: another client is served at
    once, and the stalled ones are closed after http_timeout."""
    import time
    inst = tern_factory(start=False, workers=1, settings={"http_timeout": "2",
                                                         "max_connections_per_ip": "25"})
    inst.ports["http"] = th.free_port()
    inst.write_config()
    inst.start()
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", inst.ports["http"]), timeout=30)
        s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.exa")
        slow.append(s)
    t0 = time.monotonic()
    st, _, body = get(inst, "http", "/.well-known/mta-sts.txt", host="mta-sts.example.test")
    assert st == 200 and body.startswith(b"version: STSv1")
    assert time.monotonic() - t0 < 1.5
    # the stalled ones are cut after the timeout (2 s), without an answer to a request
    t0 = time.monotonic()
    for s in slow:
        s.settimeout(th.scaled(20))
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        assert b"version: STSv1" not in data
        s.close()
    assert time.monotonic() - t0 < th.scaled(15)
    # and their places in max_connections_per_ip (25) are free again: 20 more are served
    held = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", inst.ports["http"]), timeout=th.scaled(10))
        s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n")
        data = b""
        while b"max_age" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        held.append(s)
    for s in held:
        s.close()



def connect_from(port, src):
    """A TCP connection to 127.0.0.1:port from the loopback address src."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(th.scaled(10))
    s.connect(("127.0.0.1", port))
    return s


def served(s):
    """True when a keep-alive MTA-STS request on s is answered 200 (the connection stays
    open); False when the server closed it instead."""
    try:
        s.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n"
                  b"Host: mta-sts.example.test\r\n\r\n")
        data = b""
        while b"max_age" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        return False
    return data.startswith(b"HTTP/1.1 200")


def test_connections_per_ip(tern_factory):
    """max_connections_per_ip holds for HTTP connections too (counted with the mail roles'):
    one more from the same address is closed at once, another address is served, and a
    closed connection frees its place."""
    import time
    inst = tern_factory(start=False, settings={"max_connections_per_ip": "3"})
    inst.ports["http"] = th.free_port()
    inst.write_config()
    inst.start()
    port = inst.ports["http"]

    held = [connect_from(port, "127.0.0.2") for _ in range(3)]
    assert all(served(s) for s in held)      # keep-alive: still open and counted
    extra = connect_from(port, "127.0.0.2")
    assert not served(extra)
    extra.close()
    assert "http: refused 127.0.0.2" in inst.log_text()
    other = connect_from(port, "127.0.0.3")
    assert served(other)
    other.close()
    held.pop().close()
    deadline = time.monotonic() + th.scaled(10)
    while True:     # the server frees the place when it sees the close
        s = connect_from(port, "127.0.0.2")
        ok = served(s)
        s.close()
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert ok
    for s in held:
        s.close()


def test_connections_per_worker(tern_factory):
    """A worker holds at most max_connections_per_worker HTTP connections (counted apart
    from its sessions): one more is closed at once, whatever its address."""
    inst = tern_factory(start=False, workers=1, settings={"max_connections_per_worker": "3"})
    inst.ports["http"] = th.free_port()
    inst.write_config()
    inst.start()
    port = inst.ports["http"]

    held = [connect_from(port, f"127.0.0.{i}") for i in (2, 3, 4)]
    assert all(served(s) for s in held)
    extra = connect_from(port, "127.0.0.5")
    assert not served(extra)
    extra.close()
    assert "max_connections_per_worker" in inst.log_text()
    # a mail session is not refused for it: the caps are counted apart
    with inst.smtp() as smtp:
        assert smtp.noop()[0] == 250
    for s in held:
        s.close()
