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
