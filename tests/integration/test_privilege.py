"""Hardening, privilege: what the run user (a compromised worker) can plant in the data dir it
owns must not lead root anywhere.

- TLS: the master (root) loads its key only through directories and links only root controls;
  a symlink to a root-only key planted by the run user is refused at start and at SIGHUP, and
  that key is never served (checked with the certificate the server presents).
- CLI as root (`tern user add`, `tern queue list`) works as the data dir's owner and refuses
  planted symlinks with a clear message; nothing appears where the links point.
- Modes: files 0600, directories 0700, a data dir open to others is tightened at start.
"""
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import tern_harness as th
from tern_harness import make_message, token

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

PLANTED_CN = "planted.secret.example"


@pytest.fixture
def root_only_pair():
    """A key and certificate (CN planted.secret.example) in a root-only directory outside
    every data dir: the kind of key the run user must never get served."""
    d = Path(tempfile.mkdtemp(prefix="tern-secret-", dir="/tmp"))
    os.chmod(d, 0o700)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-subj", f"/CN={PLANTED_CN}", "-days", "2"],
                   check=True, capture_output=True)
    os.chmod(d / "key.pem", 0o600)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def served_cert(inst, role="imaps"):
    """DER of the certificate the server presents on an implicit-TLS port."""
    with socket.create_connection(("127.0.0.1", inst.ports[role]), timeout=10) as s:
        with th.tls_context().wrap_socket(s, server_hostname=th.HOSTNAME) as t:
            return t.getpeercert(binary_form=True)


def pem_der(path):
    return ssl.PEM_cert_to_DER_cert(Path(path).read_text())


def wait_log(inst, pattern, count=1, timeout=20):
    """Wait until pattern (regex) occurs count times in the log; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        text = inst.log_text()
        if len(re.findall(pattern, text)) >= count:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count}x {pattern!r} in the log:\n{inst.log_tail(40)}")
        time.sleep(0.05)


def reload_and_wait(inst):
    """SIGHUP the master; wait for its answer (reloaded, or the refusal) in the log."""
    pat = r"reloaded: certificate|reload: TLS:"
    before = len(re.findall(pat, inst.log_text()))
    os.kill(inst.pid, signal.SIGHUP)
    return wait_log(inst, pat, before + 1)


def wait_new_workers(inst, old_kids):
    """After a successful reload: new workers (with the reloaded context) are accepting."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kids = th.children_of(inst.pid)
        if len([k for k in kids if k not in old_kids]) >= 2:
            inst.wait_ready()
            return
        time.sleep(0.05)
    raise AssertionError("no new workers after SIGHUP")


# ---- TLS material ------------------------------------------------------------------------

def test_tls_pair_lives_outside_the_data_dir(root_tern):
    """The self-signed pair is made in root's [tls] dir (next to the config file), not in the
    data dir the run user owns; it is root's and the key is 0600."""
    inst, _ = root_tern()
    assert not (inst.data_dir / "tls").exists()
    for name in ("cert.pem", "key.pem"):
        st = os.stat(inst.tls_dir / name)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600, (name, oct(st.st_mode))
    st = os.stat(inst.tls_dir)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    assert served_cert(inst) == pem_der(inst.tls_dir / "cert.pem")


def test_planted_tls_symlink_in_data_dir_never_served(root_tern, as_run_user, root_only_pair):
    """The audit's attack: the run user puts `tls` -> a root-only key's directory into the
    data dir (renaming any tls/ there away). Neither SIGHUP nor a restart serves that key."""
    inst, kids = root_tern()
    original = served_cert(inst)
    planted = pem_der(root_only_pair / "cert.pem")
    assert original != planted
    tls = inst.data_dir / "tls"
    if tls.exists():
        as_run_user(["mv", str(tls), str(inst.data_dir / "tls.old")])
    as_run_user(["ln", "-s", str(root_only_pair), str(tls)])
    assert os.path.islink(tls)
    reload_and_wait(inst)
    wait_new_workers(inst, kids)
    for role in ("imaps", "pop3s", "submissions"):
        assert served_cert(inst, role) != planted, f"{role} serves the planted key"
        assert served_cert(inst, role) == original
    inst.stop()
    inst.start()
    assert served_cert(inst) == original
    assert str(root_only_pair) not in inst.log_text()


@pytest.mark.parametrize("where", ["cert_key", "dir"])
def test_tls_in_a_directory_of_the_run_user_refused(root_tern, as_run_user, root_only_pair,
                                                     where):
    """TLS files configured in a directory the run user owns (an easy mistake: a path inside
    the data dir) are refused at start, even when what the links reach is root's."""
    inst, _ = root_tern(start=False)
    userdir = inst.data_dir.parent / "certs"     # the run user's, next to the data dir
    userdir.mkdir()
    os.chown(userdir, pwd.getpwnam("nobody").pw_uid, -1)
    if where == "cert_key":
        for name in ("cert.pem", "key.pem"):
            as_run_user(["ln", "-s", str(root_only_pair / name), str(userdir / name)])
        inst.extra_config = f"[tls]\ncert = {userdir}/cert.pem\nkey = {userdir}/key.pem\n"
    else:
        as_run_user(["ln", "-s", str(root_only_pair), str(userdir / "tls")])
        inst.extra_config = f"[tls]\ndir = {userdir}/tls\n"
    inst.write_config()
    with pytest.raises(th.TernError):
        inst.start(timeout=15)
    log = inst.log_text()
    assert re.search(r"TLS: .*certs: is not owned by root", log), log[-2000:]


def test_reload_refuses_tls_dir_given_away(root_tern, root_only_pair):
    """An admin gives the tls dir to the run user by mistake, who swaps the files for links
    to a root-only pair: SIGHUP refuses (logged) and keeps serving the old certificate.
    (The test's tls dir sits in root's 0700 tmp dir, so root plays the run user here and
    gives it the links.)"""
    inst, _ = root_tern()
    original = served_cert(inst)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(inst.tls_dir, nobody, -1)
    for name in ("cert.pem", "key.pem"):
        os.unlink(inst.tls_dir / name)
        os.symlink(root_only_pair / name, inst.tls_dir / name)
        os.lchown(inst.tls_dir / name, nobody, -1)
    log = reload_and_wait(inst)
    assert re.search(r"reload: TLS: .*tls: is not owned by root.*keeping the old certificate",
                     log), log[-2000:]
    assert served_cert(inst) == original


def test_tls_pair_through_root_symlinks_loads(root_tern, root_only_pair, tmp_path):
    """Links that only root could make are followed (Let's Encrypt's live/ -> ../archive/):
    the configured pair loads and is served."""
    base = Path(tempfile.mkdtemp(prefix="tern-le-", dir="/tmp"))
    try:
        (base / "archive").mkdir()
        (base / "live").mkdir()
        for name in ("cert.pem", "key.pem"):
            shutil.copy(root_only_pair / name, base / "archive" / (name + ".1"))
            os.symlink(f"../archive/{name}.1", base / "live" / name)
        os.symlink(str(base / "live"), base / "current")      # an absolute link as well
        inst, _ = root_tern(start=False)
        inst.extra_config = f"[tls]\ncert = {base}/current/cert.pem\nkey = {base}/current/key.pem\n"
        inst.write_config()
        inst.start()
        assert served_cert(inst) == pem_der(root_only_pair / "cert.pem")
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ---- the CLI as root ---------------------------------------------------------------------

def stopped_instance(root_tern):
    """An instance that ran once (the data dir is the run user's) and is stopped again."""
    inst, _ = root_tern()
    with inst.smtp() as s:     # leaves spool/queue.db behind via the queue runner's start
        s.noop()
    inst.stop()
    return inst


@pytest.mark.parametrize("planted,command", [
    ("tern.db-wal", ("user", "add", "new@example.test")),
    ("tern.db-shm", ("alias", "add", "al@example.test", "bob@example.test")),
    ("spool", ("queue", "list")),
    ("spool/queue.db-wal", ("queue", "list")),
])
def test_cli_refuses_planted_symlinks(root_tern, as_run_user, planted, command):
    """The run user plants a symlink in its data dir pointing into a root-only directory;
    `tern ...` run as root refuses with a clear message and creates nothing there."""
    inst = stopped_instance(root_tern)
    target_dir = Path(tempfile.mkdtemp(prefix="tern-target-", dir="/tmp"))
    try:
        os.chmod(target_dir, 0o700)
        link = inst.data_dir / planted
        if link.exists() or link.is_symlink():
            as_run_user(["mv", str(link), str(link) + ".old"])
        target = target_dir if planted == "spool" else target_dir / "victim"
        as_run_user(["ln", "-s", str(target), str(link)])
        r = inst.cli(*command, stdin="a-Password-1\n")
        assert list(target_dir.iterdir()) == [], \
            f"root created {list(target_dir.iterdir())} through the planted link"
        assert r.returncode != 0, r
        assert "symbolic link" in r.stderr and "refusing" in r.stderr, r
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)


def test_cli_as_root_works_as_the_data_dir_owner(root_tern):
    """Root's CLI becomes the data dir's owner: what it creates there is the run user's, not
    root's (a root-owned file in the run user's tree is one the server cannot write)."""
    inst = stopped_instance(root_tern)
    nobody = pwd.getpwnam("nobody").pw_uid
    shutil.rmtree(inst.data_dir / "spool")
    assert inst.cli("queue", "list").returncode == 0
    inst.add_user("carol@example.test", "carol-Secret-4")
    made = [inst.data_dir / "spool", inst.data_dir / "spool" / "queue.db",
            inst.data_dir / "tern.db"]
    made += [p for p in (inst.data_dir / "spool").rglob("*")]
    for p in made:
        assert os.lstat(p).st_uid == nobody, f"{p} belongs to uid {os.lstat(p).st_uid}"


# ---- modes -------------------------------------------------------------------------------

def loose_modes(root):
    """Files and directories under root (and root) that others may read, write or enter."""
    bad = []
    for p in [Path(root)] + list(Path(root).rglob("*")):
        st = os.lstat(p)
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & 0o077:
            bad.append(f"{p} {oct(stat.S_IMODE(st.st_mode))}")
    return bad


def test_modes_private_after_start_and_use(root_tern):
    """A data dir made 0755 beforehand is tightened to 0700 at start (with a log line); the
    databases, mail files and folders made by the CLI, delivery and IMAP are 0600/0700."""
    inst, _ = root_tern(start=False, provision=False)
    inst.data_dir.mkdir(mode=0o755)
    os.chmod(inst.data_dir, 0o755)
    os.chmod(inst.data_dir.parent, 0o755)
    inst.add_user("bob@example.test", th.USERS["bob@example.test"])
    inst.start()
    assert stat.S_IMODE(os.stat(inst.data_dir).st_mode) == 0o700
    assert re.search(r"data_dir \S+ was mode 0755 \(open to others\): now 0700",
                     inst.log_text())
    tok = token()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", ["bob@example.test"], make_message(tok))
    inst.wait_message("bob@example.test", tok)
    import imaplib
    with imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"],
                           ssl_context=th.tls_context()) as im:
        im.login("bob@example.test", th.USERS["bob@example.test"])
        assert im.create("Projects")[0] == "OK"
        assert im.append("Projects", None, None, make_message(token()))[0] == "OK"
        im.select("INBOX")
        im.logout()
    inst.add_user("dave@example.test", "dave-Secret-5")
    for p in (inst.data_dir / "tern.db", inst.data_dir / "spool" / "queue.db",
              inst.maildir("bob@example.test") / "index.db",
              inst.maildir("bob@example.test") / ".Projects"):
        assert p.exists(), p
    assert loose_modes(inst.data_dir) == []
    inst.stop()
    assert loose_modes(inst.data_dir) == []


def test_start_does_not_chown_a_hard_link_to_roots_file(root_tern):
    """At start the master gives databases made by root's commands to the run user. A name
    there that is a hard link to a file of root's (plantable where fs.protected_hardlinks is
    0; root makes it here) must not hand that file over."""
    inst = stopped_instance(root_tern)
    secret_dir = Path(tempfile.mkdtemp(prefix="tern-secret-", dir=str(inst.data_dir.parent)))
    try:
        secret = secret_dir / "shadow"
        secret.write_text("root's\n")
        os.chmod(secret, 0o600)
        wal = inst.data_dir / "tern.db-wal"
        if wal.exists():
            wal.unlink()
        os.link(secret, wal)
        try:    # the workers cannot use a WAL of root's: no banner; the master is what counts
            inst.start(timeout=5)
        except th.TernError:
            pass
        wait_log(inst, r"ready: 2 workers")
        st = os.stat(secret)
        assert st.st_uid == 0, f"the master gave root's file to uid {st.st_uid}"
        assert "not a plain file of its own" in inst.log_text()
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
