"""Fixtures for the end-to-end suite (issue 4, "Mail leaves"): several tern hosts on
127.0.0.X talking SMTP to each other, with MX records from a private dnsmasq.

- `net` (session): dnsmasq, the shared SMTP port P, the fake-peer thread and a `host()`
  factory; every process it starts is stopped in its finalizer.
- `alice`, `bob`, `carol` (session): the standard hosts alice.test (sender), bob.test and
  carol.test + two.test, started once and shared; tests that need to stop or kill a host
  make their own with `net.host(...)` (stopped when the test ends).
A failing test gets the log tails of every live host, the dnsmasq log and the transcripts of
the fake peers attached to its report; a sanitizer report in a host's log fails the test
that stopped it.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_harness as eh  # noqa: E402

_LIVE = []       # hosts started and not yet torn down
_FAKES = []      # fake peers of the current test
_DNS = []


class Net:
    def __init__(self, tmp_factory):
        self.tmp_factory = tmp_factory
        self.dns = eh.Dnsmasq(tmp_factory.mktemp("dnsmasq"))
        self.dns.start()
        _DNS.append(self.dns)
        self.port = eh.shared_port(list(eh.ADDR.values()))
        self.fake = eh.FakeNet()

    def host(self, name, domains=None, users=(), start=True, queue=None, **kw):
        """A MailHost called name at ADDR[name] serving domains (default NAME.test), with
        users added before it starts. Torn down by whoever owns it (see fixtures)."""
        domains = domains or [f"{name}.test"]
        h = eh.MailHost(self.tmp_factory.mktemp(f"host-{name}"), name, eh.ADDR[name], domains,
                        self.port, self.dns.port, queue=queue, **kw)
        _LIVE.append(h)
        try:
            h.add_users(*users)
            if start:
                h.start()
        except BaseException:
            teardown_host(h, check=False)
            raise
        return h

    def fake_server(self, name, mode, **kw):
        srv = self.fake.serve(eh.ADDR[name], self.port, mode, name=name, **kw)
        _FAKES.append(srv)
        return srv

    def close(self):
        self.fake.close()
        self.dns.stop()
        if self.dns in _DNS:
            _DNS.remove(self.dns)


def teardown_host(h, check=True):
    try:
        h.stop()
    finally:
        if h in _LIVE:
            _LIVE.remove(h)
        h.cleanup()
    if check:
        found = h.sanitizer_reports()
        if found:
            pytest.fail(f"sanitizer report(s) {found} in the log of {h.name} "
                        f"({h.log_path}):\n{h.log_tail(120)}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.path.exists(eh.th.TERN_BIN):
        pytest.exit(f"tern binary not found at {eh.th.TERN_BIN}; build it with "
                    f"`make build/asan/tern` or set TERN_BIN", returncode=2)


@pytest.fixture(scope="session")
def net(tmp_path_factory):
    n = Net(tmp_path_factory)
    yield n
    n.close()


def _session_host(net, name, domains, users):
    h = net.host(name, domains=domains, users=users)
    yield h
    teardown_host(h)


@pytest.fixture(scope="session")
def alice(net):
    yield from _session_host(net, "alice", ["alice.test"], ["alice@alice.test"])


@pytest.fixture(scope="session")
def bob(net):
    yield from _session_host(net, "bob", ["bob.test"], ["bob@bob.test", "robert@bob.test"])


@pytest.fixture(scope="session")
def carol(net):
    yield from _session_host(net, "carol", ["carol.test", "two.test"],
                             ["carol@carol.test", "dave@two.test"])


@pytest.fixture
def own_hosts(net):
    """hosts(...) -> net.host(...) for hosts stopped at the end of this test."""
    made = []

    def make(*a, **kw):
        h = net.host(*a, **kw)
        made.append(h)
        return h

    yield make
    errors = []
    for h in made:
        try:
            teardown_host(h)
        except BaseException as e:  # noqa: BLE001 - tear down all, report the first
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def dns_extra(net):
    """dns_extra(*lines): the suite's dnsmasq also serves these option lines (txt-record=
    ...) until the end of this test; dnsmasq restarts on the same port each time."""
    added = []

    def add(*lines):
        added.extend(lines)
        net.dns.set_extra(added)

    yield add
    if added:
        net.dns.set_extra([])


@pytest.fixture(autouse=True)
def _fakes_stopped():
    yield
    while _FAKES:
        _FAKES.pop().stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for h in list(_LIVE):
            rep.sections.append((f"log tail of {h.name} {h.addr} ({h.log_path})",
                                 h.log_tail(60)))
        for srv in list(_FAKES):
            rep.sections.append((f"transcript of fake peer {srv.name} {srv.addr}:{srv.port}",
                                 srv.transcript_tail(60)))
        for d in _DNS:
            rep.sections.append((f"dnsmasq log ({d.log_path})", d.log_tail(30)))
