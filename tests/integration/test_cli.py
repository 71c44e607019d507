"""The command line: usage, exit codes, config errors with FILE:LINE, user and alias
management seen through SMTP."""
import os
import signal
import smtplib
import subprocess
import tempfile

import pytest

import tern_harness as th
from tern_harness import USERS, assert_reply, check_delivered, make_message, run_tern, token

ALICE = "alice@example.test"
BOB = "bob@example.test"


def test_help_exit_0():
    r = run_tern(["--help"])
    assert r.returncode == 0, r
    out = (r.stdout + r.stderr).lower()
    assert "usage" in out, r
    for cmd in ("serve", "user", "queue"):
        assert cmd in out, f"`{cmd}` not in --help output: {r!r}"


def test_unknown_command_exit_64():
    r = run_tern(["bogus"])
    assert r.returncode == 64, r
    assert r.stderr.strip(), f"no message for an unknown command: {r!r}"


def serve_expect_failure(conf, timeout=30):
    """`tern serve -c conf` must exit on its own; returns (status, stderr)."""
    p = subprocess.Popen([th.TERN_BIN, "serve", "-c", str(conf)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail(f"tern serve with a bad config did not exit within {timeout}s")
    return p.returncode, err.decode("utf-8", "replace")


@pytest.mark.parametrize("bad_line", ["no_such_key = 1", "workers = lots",
                                      "max_message_size = -5", "smtp_max_line = 12abc",
                                      "this line has no equals sign"])
def test_bad_config_reports_file_and_line(tern_factory, bad_line):
    inst = tern_factory(start=False, provision=False)
    text = inst.config_text().splitlines()
    # Put the bad line at a known position (line 4) among the valid top-level keys.
    text.insert(3, bad_line)
    inst.conf.write_text("\n".join(text) + "\n")
    rc, err = serve_expect_failure(inst.conf)
    assert rc != 0, f"`{bad_line}` accepted; stderr: {err}"
    assert f"{inst.conf}:4:" in err, f"stderr does not name {inst.conf}:4: {err!r}"
    # Other commands read the same config and fail the same way.
    r = inst.cli("user", "list")
    assert r.returncode != 0, r
    assert f"{inst.conf}:4:" in r.stderr, r


def test_bad_value_in_section_reports_line(tern_factory):
    inst = tern_factory(start=False, provision=False)
    lines = inst.config_text().splitlines()
    idx = lines.index("[listen]")
    lines.insert(idx + 1, "smtp = 127.0.0.1:99999")
    inst.conf.write_text("\n".join(lines) + "\n")
    rc, err = serve_expect_failure(inst.conf)
    assert rc != 0, err
    assert f"{inst.conf}:{idx + 2}:" in err, err


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.conf"
    r = run_tern(["user", "list", "-c", str(missing)])
    assert r.returncode != 0, r
    assert str(missing) in r.stderr, r


def test_user_add_outside_domains_exit_65(tern_factory):
    inst = tern_factory(start=False)
    r = inst.cli("user", "add", "mallory@elsewhere.test", stdin="pw-12345678\n")
    assert r.returncode == 65, r
    assert r.stderr.strip(), f"no message: {r!r}"
    r = inst.cli("alias", "add", "x@elsewhere.test", ALICE)
    assert r.returncode == 65, r
    lst = inst.cli("user", "list")
    assert lst.returncode == 0, lst
    assert "mallory" not in lst.stdout


def test_user_list_shows_users(tern_factory):
    inst = tern_factory(start=False)
    r = inst.cli("user", "list")
    assert r.returncode == 0, r
    for addr in (ALICE, BOB):
        assert addr in r.stdout, f"{addr} missing from `tern user list`: {r!r}"
    # Adding the same user again fails and leaves one entry.
    again = inst.cli("user", "add", ALICE, stdin="other-password\n")
    assert again.returncode != 0, again
    r = inst.cli("user", "list")
    assert r.stdout.count(ALICE) == 1, r


def _login(inst, user, pw):
    with inst.smtp("submissions") as s:
        s.ehlo()
        try:
            code, resp = s.login(user, pw)
        except smtplib.SMTPAuthenticationError as e:
            return e.smtp_code, e.smtp_error
        return code, resp


def test_user_passwd_then_login(tern_factory):
    inst = tern_factory()
    assert _login(inst, ALICE, USERS[ALICE])[0] == 235
    r = inst.cli("user", "passwd", ALICE, stdin="brand-new-Password-9\n")
    assert r.returncode == 0, r
    assert_reply(_login(inst, ALICE, USERS[ALICE]), 535, "5.7.8")
    code, resp = _login(inst, ALICE, "brand-new-Password-9")
    assert code == 235, (code, resp)
    # Other users are untouched.
    assert _login(inst, BOB, USERS[BOB])[0] == 235


def test_user_del(tern_factory):
    inst = tern_factory()
    r = inst.cli("user", "del", BOB)
    assert r.returncode == 0, r
    assert BOB not in inst.cli("user", "list").stdout
    with inst.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{BOB}>"), 550, "5.1.1")
    assert_reply(_login(inst, BOB, USERS[BOB]), 535, "5.7.8")


def test_alias_delivers_to_target(tern_factory):
    inst = tern_factory()
    r = inst.cli("alias", "add", "postmaster@example.test", ALICE, BOB)
    assert r.returncode == 0, r
    tok = token()
    msg = make_message(tok, to="postmaster@example.test")
    with inst.smtp() as s:
        assert s.sendmail("sender@example.net", ["postmaster@example.test"], msg) == {}
    for rcpt in (ALICE, BOB):
        check_delivered(inst.wait_message(rcpt, tok)[0], "sender@example.net", msg)


def test_dev_instance_as_root_under_closed_parent(tmp_path):
    """Root's development instance runs its children as nobody (or tern): a clone under a
    directory closed to others (/root is 0700) cannot hold their data, so it moves to
    /var/lib/tern-dev/<the clone's path>, for serve and the user commands alike."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (CI and the developers' machines run as root)")
    closed = tmp_path / "closed"
    clone = closed / "tern"
    clone.mkdir(parents=True)
    os.chmod(closed, 0o700)
    flat = "/var/lib/tern-dev/" + str(clone).lstrip("/").replace("/", "_")
    open_dir = None
    try:
        r = subprocess.run([th.TERN_BIN, "user", "add", "x@localhost"], cwd=clone,
                           input="a password\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r
        assert os.path.exists(os.path.join(flat, "tern.db")), r
        assert not (clone / "tern-data").exists(), "data left where the children cannot reach it"
        r = subprocess.run([th.TERN_BIN, "user", "list"], cwd=clone, capture_output=True,
                           text=True, timeout=60)
        assert "x@localhost" in r.stdout, r
        # a directory the unprivileged user can reach keeps ./tern-data (pytest's own
        # directories are closed to others, so this one is made in /tmp)
        open_dir = tempfile.mkdtemp(prefix="tern-open-", dir="/tmp")
        os.chmod(open_dir, 0o755)
        r = subprocess.run([th.TERN_BIN, "user", "add", "y@localhost"], cwd=open_dir,
                           input="a password\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r
        assert os.path.exists(os.path.join(open_dir, "tern-data", "tern.db")), r
    finally:
        subprocess.run(["rm", "-rf", flat])
        if open_dir is not None:
            subprocess.run(["rm", "-rf", open_dir])
