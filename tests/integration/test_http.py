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
