"""Connection floods: the total cap, the per-worker cap, fair eviction, the reserve descriptor.

The audit: under 1024 descriptors, 2,200 idle connections from 44 addresses made new clients
time out (`accept: Too many open files` in a loop). Here tern runs under a 1024:1024
descriptor limit while 3,000 idle connections come from 60 loopback addresses
(127.0.1.1-60: Linux routes all of 127/8 to lo); every one of them must get a line (the
greeting, or `421 4.7.0`), and a new client must still deliver a message.
"""
import contextlib
import errno
import os
import resource
import selectors
import smtplib
import socket
import time

import pytest

import tern_harness as th

pytestmark = [pytest.mark.timeout(120),
              # thousands of connections to a server 20-50x slower: meaningless
              pytest.mark.no_valgrind]


def start_limited(inst, nofile, monkeypatch):
    """Start tern under RLIMIT_NOFILE nofile:nofile (prlimit execs it: same pid), and give
    this process room for thousands of client sockets."""
    wrapper = inst.base / "tern-limited"
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile={nofile}:{nofile} {th.TERN_BIN} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setattr(th, "TERN_BIN", str(wrapper))
    inst.start()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 4000
    return inst


def worker_pids(inst):
    return [p for p in th.children_of(inst.pid)]


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Flood:
    """Many idle client sockets, each bound to a source address; collects the first line
    every socket receives."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.got = {}       # socket -> bytes received so far

    def connect(self, src, n):
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((src, 0))
            s.setblocking(False)
            r = s.connect_ex(("127.0.0.1", self.port))
            assert r in (0, errno.EINPROGRESS), os.strerror(r)
            self.socks.append(s)
            self.got[s] = b""
            self.sel.register(s, selectors.EVENT_READ)

    def pump(self, timeout):
        """Read what arrived, for up to timeout seconds or until every socket has a line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.waiting():
            for key, _ in self.sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    self.got[s] += data
                else:
                    self.got[s] += b"<EOF>"
                    self.sel.unregister(s)

    def run(self, net, n_addrs, per_addr, settle):
        """Connect per_addr sockets from each of net.1 .. net.n_addrs, then read until every
        socket has its first line or settle seconds passed."""
        for i in range(1, n_addrs + 1):
            self.connect(f"{net}.{i}", per_addr)
            self.pump(0.05)
        self.pump(settle)
        return self

    def firsts(self):
        return [self.got[s].split(b"\r\n", 1)[0] for s in self.socks]

    def count(self, prefix):
        return sum(1 for f in self.firsts() if f.startswith(prefix))

    def waiting(self):
        return [s for s in self.socks if b"\n" not in self.got[s] and b"<EOF>" not in self.got[s]]

    def close(self):
        for s in self.socks:
            with contextlib.suppress(Exception):
                self.sel.unregister(s)
            s.close()
        self.sel.close()


def deliver(inst, tok):
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=15) as c:
        c.ehlo("honest.example.net")
        msg = th.make_message(tok)
        c.sendmail("sender@example.net", ["bob@example.test"], msg)
    inst.wait_message("bob@example.test", tok, timeout=15)


def test_idle_flood_leaves_room_for_a_new_client(tern_factory, monkeypatch):
    """3,000 idle connections from 60 addresses under 1024 descriptors: every one gets a
    line (220, or 421 4.7.0 when over a cap), none hangs, the server never runs out of
    descriptors, and a new client still delivers over SMTP."""
    inst = tern_factory(start=False, settings={"max_connections_per_ip": "50"})
    start_limited(inst, 1024, monkeypatch)
    t0 = time.monotonic()
    flood = Flood(inst.ports["smtp"])
    try:
        flood.run("127.0.1", 60, 50, settle=20)
        hung = flood.waiting()
        greeted, refused = flood.count(b"220 "), flood.count(b"421 4.7.0")
        # a greeted socket may be told 421 later: its place went to a newcomer
        evicted = sum(1 for s in flood.socks
                      if flood.got[s].startswith(b"220 ") and b"\r\n421 4.7.0" in flood.got[s])
        elapsed = time.monotonic() - t0
        print(f"flood: {len(flood.socks)} connections, greeted {greeted}, refused {refused}, "
              f"evicted later {evicted}, hung {len(hung)}, {elapsed:.1f}s")
        assert not hung, f"{len(hung)} of 3000 connections got nothing (first: " \
                         f"{hung[0].getsockname()})"
        assert greeted + refused == 3000, set(flood.firsts())
        # 60 x 50 is far more than 1024 descriptors hold: 2 workers x (1024 - 64) / 2
        held = sum(1 for s in flood.socks if flood.got[s].startswith(b"220 ")
                   and b"421" not in flood.got[s] and b"<EOF>" not in flood.got[s])
        print(f"held after the flood: {held}")
        assert held <= 960
        assert refused + evicted >= 3000 - 960
        fds = [open_fds(p) for p in worker_pids(inst)]
        print(f"descriptors per child now: {fds}")

        tok = th.token()
        t1 = time.monotonic()
        deliver(inst, tok)
        print(f"new client delivered in {time.monotonic() - t1:.2f}s during the flood")
    finally:
        flood.close()
    log = inst.log_text()
    assert "Too many open files" not in log
    assert "server full" in log
    # once the flood is gone, everything works as before
    deliver(inst, th.token())


def test_out_of_descriptors_refuses_instead_of_hanging(tern_factory, monkeypatch):
    """A per-worker cap set above what the descriptor limit holds: when accept fails with
    EMFILE, the reserve descriptor answers each waiting client 421 (no silence), the
    worker does not spin on the listener, and it accepts again once sessions end."""
    inst = tern_factory(start=False, workers=1,
                        settings={"max_connections_per_ip": "1000",
                                  "max_connections_per_worker": "5000"})
    start_limited(inst, 256, monkeypatch)
    flood = Flood(inst.ports["smtp"])
    try:
        flood.run("127.0.2", 8, 50, settle=15)
        hung = flood.waiting()
        greeted, refused = flood.count(b"220 "), flood.count(b"421 4.7.0")
        print(f"EMFILE flood: greeted {greeted}, refused {refused}, hung {len(hung)}")
        assert not hung, f"{len(hung)} connections got nothing"
        assert refused > 100 and greeted > 100

        # while descriptors stay exhausted, more clients keep coming: no busy loop
        workers = worker_pids(inst)     # the worker and the queue runner

        def cpu(pid):
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

        before = {p: cpu(p) for p in workers}
        more = Flood(inst.ports["smtp"])
        try:
            for _ in range(10):
                more.connect("127.0.2.20", 2)
                more.pump(0.25)
            more.pump(3)
            assert not more.waiting()
            assert all(more.got[s].startswith(b"421 4.7.0") for s in more.socks)
        finally:
            more.close()
        used = max(cpu(p) - before[p] for p in workers)
        print(f"worker CPU while out of descriptors: {used:.2f}s in ~5.5s")
        assert used < 1.5
    finally:
        flood.close()
    assert "out of descriptors" in inst.log_text()
    # the idle sessions are gone: the listener is back
    deadline = time.monotonic() + 10
    while True:
        c = socket.create_connection(("127.0.0.1", inst.ports["smtp"]), timeout=10)
        line = c.makefile("rb").readline()
        c.close()
        if line.startswith(b"220 ") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert line.startswith(b"220 "), line
    deliver(inst, th.token())
