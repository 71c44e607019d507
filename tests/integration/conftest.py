"""Fixtures for the integration suite: real `tern serve` instances on loopback.

- `server`: one instance per test module (users alice, bob, jörg) for read-only SMTP tests.
- `tern_factory`: a callable making fresh per-test instances (for kill/restart/reconfig tests).
A failing test gets the log tail of every live instance attached to its report; an instance
whose log shows a sanitizer report, or (TERN_VALGRIND=1) whose valgrind logs show errors or
leaks, fails the test that owned it at teardown.
"""
import itertools
import os
import pwd
import subprocess
import time

import pytest

import tern_harness as th

_LIVE = []          # instances started and not yet torn down
_counter = itertools.count(1)


def provision_users(inst, users=None):
    """Create the standard users before start. A user the server refuses (e.g. the UTF-8
    one) is recorded in inst.user_errors so the test that needs it can fail with the reason."""
    inst.user_errors = {}
    for addr, pw in (users or th.USERS).items():
        r = inst.cli("user", "add", addr, stdin=pw + "\n")
        if r.returncode != 0:
            inst.user_errors[addr] = r
    for addr in ("alice@example.test", "bob@example.test"):
        if addr in inst.user_errors and (users is None or addr in users):
            raise th.TernError(f"cannot create {addr}: {inst.user_errors[addr]!r}")


def _teardown(inst):
    try:
        inst.stop()
    finally:
        if inst in _LIVE:
            _LIVE.remove(inst)
        inst.cleanup()
    found = inst.sanitizer_reports()
    if found:
        pytest.fail(f"sanitizer report(s) {found} in tern log {inst.log_path}:\n"
                    f"{inst.log_tail(120)}", pytrace=False)
    vg = inst.valgrind_reports()
    if vg:
        pytest.fail(f"valgrind report(s) {[why for _, why in vg]}:\n{inst.valgrind_text(vg)}",
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    if not os.path.exists(th.TERN_BIN):
        pytest.exit(f"tern binary not found at {th.TERN_BIN}; build it with "
                    f"`make build/asan/tern` or set TERN_BIN", returncode=2)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A started instance shared by the tests of one module."""
    yield from module_instance(tmp_path_factory, "tern-module")


def _teardown_quiet(inst):
    try:
        inst.stop()
    finally:
        if inst in _LIVE:
            _LIVE.remove(inst)
        inst.cleanup()


@pytest.fixture
def tern_factory(tmp_path):
    """make(start=True, users=None, **TernInstance kwargs) -> a fresh instance of this test."""
    made = []

    def make(start=True, users=None, provision=True, **kw):
        inst = th.TernInstance(tmp_path / f"tern{next(_counter)}", **kw)
        made.append(inst)
        _LIVE.append(inst)
        if provision:
            provision_users(inst, users)
        if start:
            inst.start()
        return inst

    yield make
    errors = []
    for inst in made:
        try:
            _teardown(inst)
        except BaseException as e:  # collect, report all
            errors.append(e)
    if errors:
        raise errors[0]


# A child that switched user cannot be inspected by LeakSanitizer (it is no longer
# dumpable): tests that run tern as root with a run user turn leak checks off.
NO_LEAKS_ENV = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}


@pytest.fixture
def root_tern(tern_factory):
    """start(**kw) -> (instance, children): tern started as root with `user = nobody`, once
    its two workers and the queue runner are forked. Root only."""
    if os.geteuid() != 0:
        pytest.skip("needs root")

    def start(**kw):
        env = dict(NO_LEAKS_ENV)
        env.update(kw.pop("env", {}) or {})
        inst = tern_factory(user="nobody", env=env, **kw)
        if not kw.get("start", True):
            return inst, []
        deadline = time.monotonic() + 20
        while True:
            kids = th.children_of(inst.proc.pid)
            if len(kids) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(kids) >= 3, f"expected >= 3 children (2 workers + queue runner), got {kids}"
        return inst, kids

    return start


@pytest.fixture
def as_run_user():
    """run(argv, user="nobody") -> CompletedProcess: a command as an unprivileged user with
    no supplementary groups, to do what a compromised worker could. Root only."""
    if os.geteuid() != 0:
        pytest.skip("needs root")

    def run(argv, user="nobody", check=True):
        pw = pwd.getpwnam(user)
        return subprocess.run(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              check=check, timeout=30)

    return run


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A no_valgrind test (latency bounds, floods) is also serial: it runs apart from the
    parallel run (`-m "not serial"` with pytest-xdist, then `-m serial`; see the Makefile).
    tryfirst: the mark is added before -m selects."""
    for item in items:
        if item.get_closest_marker("no_valgrind") and not item.get_closest_marker("serial"):
            item.add_marker(pytest.mark.serial)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for inst in list(_LIVE):
            rep.sections.append((f"tern log tail ({inst.log_path})", inst.log_tail(80)))


def module_instance(tmp_path_factory, name, **kw):
    """A generator for a module-scoped fixture: a started instance (standard users) made
    with TernInstance(**kw), torn down (and checked for sanitizer reports) after the
    module. Use: `yield from conftest.module_instance(tmp_path_factory, "tern-x", ...)`."""
    inst = th.TernInstance(tmp_path_factory.mktemp(name), **kw)
    _LIVE.append(inst)
    try:
        provision_users(inst)
        inst.start()
    except BaseException:
        _teardown_quiet(inst)
        raise
    yield inst
    _teardown(inst)
