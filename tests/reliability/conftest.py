"""Fixtures of the reliability suite: the integration suite's own (tern_factory: fresh
instances per test, stopped and checked for sanitizer reports at teardown; log tails attached
to failures), loaded from tests/integration/conftest.py rather than copied, plus `sink` (an
SMTP server standing in for the remote) and `tmpfs` (a small mounted tmpfs, unmounted after
the test's instances are stopped)."""
import importlib.util
import os

import pytest

import rely  # puts tests/integration on sys.path

_spec = importlib.util.spec_from_file_location(
    "integration_conftest", str(rely._INTEGRATION / "conftest.py"))
_ic = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_ic)

_binary_present = _ic._binary_present
tern_factory = _ic.tern_factory
pytest_runtest_makereport = _ic.pytest_runtest_makereport
provision_users = _ic.provision_users


@pytest.fixture
def sink():
    s = rely.Sink()
    yield s
    s.close()


@pytest.fixture
def tmpfs_factory():
    """make(size) -> a mounted rely.Tmpfs; all unmounted at teardown. Request it before
    tern_factory so that it is torn down after the instances on it are stopped."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = []

    def make(size):
        t = rely.Tmpfs(size)
        made.append(t)
        return t

    yield make
    for t in made:
        t.unmount()
