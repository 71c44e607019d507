"""`make install` and the systemd unit (docs/operations.md).

`make install DESTDIR=tmp PREFIX=/usr` must lay out the binary, the unit, the sample config,
the TLS and data directories with the right modes, never overwrite an existing config, and
`make uninstall` must take back what it put down but the config and the data. Then the
installed unit's own ExecStart line (read from the installed tern.service, with the DESTDIR
binary and a test config) runs the server as systemd would start it: as root, restricted to
the unit's CapabilityBoundingSet with NoNewPrivileges (setpriv), LimitNOFILE and UMask, with a
NOTIFY_SOCKET (Type=notify: READY=1 only once it accepts connections); a message goes in
over SMTP and comes back over POP3; the unit's ExecReload command reloads it (RELOADING=1,
then READY=1) and it still serves (IMAP); SIGTERM to the master alone (KillMode=mixed,
STOPPING=1) stops everything, which needs CAP_KILL in the bounding set. `systemd-analyze
verify` must accept the unit.
"""
import imaplib
import os
import poplib
import re
import resource
import shlex
import signal
import smtplib
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

import tern_harness as th

REPO = Path(__file__).resolve().parents[2]


def make(*args, destdir, prefix="/usr"):
    # a fresh make, as an operator would run it: not the sub-make of `make test` (whose
    # MAKEFLAGS carry its variables and jobserver)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *args,
                        f"DESTDIR={destdir}"] + ([f"PREFIX={prefix}"] if prefix else []),
                       env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout.decode()[-4000:]}"
    return r.stdout.decode()


def mode(path):
    return stat.S_IMODE(path.lstat().st_mode)


def unit_service(path):
    """The [Service] section of a unit file: {key: [values]} (a key may repeat)."""
    keys, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section == "Service":
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    out = make("install", destdir=dest)
    return dest, out


def test_layout_and_modes(installed):
    dest, out = installed
    expect = {
        "usr/sbin/tern": (stat.S_IFREG, 0o755),
        "lib/systemd/system/tern.service": (stat.S_IFREG, 0o644),
        "etc/tern/tern.conf": (stat.S_IFREG, 0o600),
        "etc/tern/tls": (stat.S_IFDIR, 0o700),
        "etc/tern/acme-challenge": (stat.S_IFDIR, 0o755),
        "var/lib/tern": (stat.S_IFDIR, 0o700),
        "usr/share/doc/tern/operations.md": (stat.S_IFREG, 0o644),
        "usr/share/doc/tern/configuration.md": (stat.S_IFREG, 0o644),
        "usr/share/man/man8/tern.8": (stat.S_IFREG, 0o644),
    }
    for rel, (kind, m) in expect.items():
        p = dest / rel
        assert p.exists(), f"{rel} not installed; make said:\n{out}"
        assert stat.S_IFMT(p.lstat().st_mode) == kind, f"{rel}: wrong file type"
        assert mode(p) == m, f"{rel}: mode {mode(p):o}, expected {m:o}"
    # the binary is the one we built, and runs
    r = subprocess.run([str(dest / "usr/sbin/tern"), "version"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, r.stdout
    # run-time paths in the unit and the config are the real ones, not DESTDIR's
    unit = (dest / "lib/systemd/system/tern.service").read_text()
    conf = (dest / "etc/tern/tern.conf").read_text()
    assert not re.search(r"@[A-Z]+@", unit) and str(dest) not in unit
    assert "ExecStart=/usr/sbin/tern serve -c /etc/tern/tern.conf" in unit
    assert "ReadWritePaths=/var/lib/tern /etc/tern/tls /etc/tern/acme-challenge" in unit
    assert re.search(r"^data_dir = /var/lib/tern$", conf, re.M)
    assert not re.search(r"@[A-Z]+@", conf) and str(dest) not in conf
    # the sample config loads (every key it sets is a real one), with its data dir moved
    # out of the real /var/lib
    probe = dest / "probe.conf"
    probe.write_text(re.sub(r"^data_dir = .*$", f"data_dir = {dest}/probe-data", conf,
                            flags=re.M))
    r = subprocess.run([str(dest / "usr/sbin/tern"), "user", "list", "-c", str(probe)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, r.stdout


def test_reinstall_keeps_config_and_uninstall(tmp_path):
    dest = tmp_path / "d"
    make("install", destdir=dest)
    conf = dest / "etc/tern/tern.conf"
    conf.write_text(conf.read_text() + "\n# the operator's own edit\n")
    edited = conf.read_bytes()
    out = make("install", destdir=dest)
    assert conf.read_bytes() == edited, "make install overwrote an existing tern.conf"
    assert (dest / "etc/tern/tern.conf.sample").is_file(), out
    assert mode(dest / "etc/tern/tern.conf.sample") == 0o600
    make("uninstall", destdir=dest)
    for gone in ("usr/sbin/tern", "lib/systemd/system/tern.service", "usr/share/man/man8/tern.8",
                 "etc/tern/tern.conf.sample", "usr/share/doc/tern"):
        assert not (dest / gone).exists(), f"uninstall left {gone}"
    assert conf.read_bytes() == edited, "uninstall must keep the configuration"
    assert (dest / "var/lib/tern").is_dir(), "uninstall must keep the data"


def test_default_prefix_and_variables(tmp_path):
    """PREFIX defaults to /usr/local (the unit in /usr/local/lib/systemd/system, which systemd
    reads); SBINDIR, SYSCONFDIR and LOCALSTATEDIR move what they name, in the files too."""
    dest = tmp_path / "a"
    make("install", destdir=dest, prefix=None)
    unit = (dest / "usr/local/lib/systemd/system/tern.service").read_text()
    assert (dest / "usr/local/sbin/tern").is_file()
    assert "ExecStart=/usr/local/sbin/tern serve -c /etc/tern/tern.conf" in unit
    dest = tmp_path / "b"
    make("install", "SBINDIR=/opt/tern/bin", "SYSCONFDIR=/opt/etc", "LOCALSTATEDIR=/srv",
         destdir=dest)
    unit = (dest / "lib/systemd/system/tern.service").read_text()
    assert (dest / "opt/tern/bin/tern").is_file() and (dest / "srv/tern").is_dir()
    assert "ExecStart=/opt/tern/bin/tern serve -c /opt/etc/tern/tern.conf" in unit
    assert "ReadWritePaths=/srv/tern /opt/etc/tern/tls /opt/etc/tern/acme-challenge" in unit
    conf = (dest / "opt/etc/tern/tern.conf").read_text()
    assert re.search(r"^data_dir = /srv/tern$", conf, re.M)


def test_systemd_analyze_verify(installed, tmp_path):
    """systemd-analyze checks every directive, that the commands exist and that the man page
    named in Documentation= is there: the unit with its binary path pointed at the DESTDIR copy
    (the only change) must pass without a word."""
    dest, _ = installed
    text = (dest / "lib/systemd/system/tern.service").read_text()
    copy = tmp_path / "tern.service"
    copy.write_text(text.replace("ExecStart=/usr/sbin/tern",
                                 f"ExecStart={dest}/usr/sbin/tern"))
    # Documentation=man:tern(8): verify runs man(1), which finds the installed page here
    env = dict(os.environ, MANPATH=str(dest / "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60, env=env)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "tern.service" not in out, f"systemd-analyze has remarks:\n{out}"


def unit_command(dest, inst, svc):
    """ExecStart as an argv, with the DESTDIR binary and the test's config file"""
    argv = shlex.split(svc["ExecStart"][0])
    assert argv[0] == "/usr/sbin/tern" and argv[1:] == ["serve", "-c", "/etc/tern/tern.conf"]
    return [str(dest / "usr/sbin/tern"), "serve", "-c", str(inst.conf)]


def sandbox_prefix(svc):
    """setpriv doing what the unit's CapabilityBoundingSet and NoNewPrivileges do (the
    bounding set can only be cut by root: as another user, NoNewPrivileges alone)"""
    assert svc["NoNewPrivileges"] == ["yes"]
    caps = svc["CapabilityBoundingSet"][0].split()
    assert caps and all(c.startswith("CAP_") for c in caps)
    pre = ["setpriv", "--no-new-privs"]
    if os.geteuid() == 0:
        pre += ["--inh-caps=-all",
                "--bounding-set=-all," + ",".join("+" + c[4:].lower() for c in caps)]
    return pre + ["--"]


def notify_listener(path):
    """The service manager's end of $NOTIFY_SOCKET"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(th.scaled(30))
    return s


def notified(sock, want):
    """The next notification, which must hold every line of want"""
    msg = sock.recv(4096).decode()
    lines = msg.split("\n")
    for w in want:
        assert w in lines, f"expected {w!r}, got {msg!r}"
    return lines


def start_as_unit(inst, argv, svc):
    nofile = int(svc["LimitNOFILE"][0])
    umask = int(svc["UMask"][0], 8)

    def limits():
        # LimitNOFILE (as far as this machine lets us: a container may cap the hard limit)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        n = nofile if hard == resource.RLIM_INFINITY else min(nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
        os.umask(umask)

    with open(inst.log_path, "ab") as logf:
        inst.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                     start_new_session=True, env=inst.env, preexec_fn=limits)
    inst.pgid = inst.proc.pid


def wait_log(inst, needle, since, timeout=30):
    deadline = time.monotonic() + th.scaled(timeout)
    while time.monotonic() < deadline:
        if needle in inst.log_text()[since:]:
            return
        assert inst.running(), f"tern exited; log:\n{inst.log_tail()}"
        time.sleep(0.05)
    raise AssertionError(f"no {needle!r} in the log:\n{inst.log_tail()}")


def send(inst, tok):
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
        s.sendmail("someone@example.net", ["bob@example.test"],
                   th.make_message(tok, to="bob@example.test"))


def test_installed_unit_serves_and_reloads(installed, tern_factory):
    dest, _ = installed
    svc = unit_service(dest / "lib/systemd/system/tern.service")
    assert svc["Type"] == ["notify"] and svc["KillMode"] == ["mixed"]
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}
    inst = tern_factory(start=False, env=env)
    notify = notify_listener(str(inst.base / "notify.sock"))
    inst.env["NOTIFY_SOCKET"] = str(inst.base / "notify.sock")
    argv = sandbox_prefix(svc) + unit_command(dest, inst, svc)
    start_as_unit(inst, argv, svc)
    notified(notify, ["READY=1"])
    # ready means ready: the first connection gets its banner (systemd starts what is
    # ordered after tern.service at this moment)
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
        assert s.noop()[0] == 250
    inst.wait_ready()
    if os.geteuid() == 0:
        kids = th.children_of(inst.proc.pid)
        assert kids, "no children"
        for k in kids:  # the children run as the config's `user`, not root
            assert os.stat(f"/proc/{k}").st_uid != 0, f"child {k} runs as root"

    tok = th.token()
    send(inst, tok)
    inst.wait_message("bob@example.test", tok)
    pop = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    try:
        pop.user("bob@example.test")
        pop.pass_(th.USERS["bob@example.test"])
        count, _ = pop.stat()
        assert count == 1
        _, lines, _ = pop.retr(1)
        assert any(tok.encode() in line for line in lines)
    finally:
        pop.quit()

    # systemctl reload: the unit's ExecReload, with $MAINPID the master's pid
    mark = len(inst.log_text())
    reload_cmd = [a.replace("$MAINPID", str(inst.proc.pid))
                  for a in shlex.split(svc["ExecReload"][0])]
    assert reload_cmd[0] == "/bin/kill"
    subprocess.run(reload_cmd, check=True, timeout=30)
    lines = notified(notify, ["RELOADING=1"])
    assert any(re.fullmatch(r"MONOTONIC_USEC=\d+", x) for x in lines), lines
    notified(notify, ["READY=1"])
    wait_log(inst, "new workers started", mark)
    assert inst.running()
    tok2 = th.token()
    send(inst, tok2)
    inst.wait_message("bob@example.test", tok2)
    imap = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context(),
                             timeout=th.IO_TIMEOUT)
    try:
        imap.login("bob@example.test", th.USERS["bob@example.test"])
        imap.select("INBOX")
        for t in (tok, tok2):
            typ, data = imap.search(None, "BODY", t)
            assert typ == "OK" and data[0].split(), f"message {t} not found over IMAP"
    finally:
        imap.logout()

    # systemctl stop with KillMode=mixed: SIGTERM to the master alone; it must be able to
    # stop its children (which run as another user: CAP_KILL) and exit 0
    inst.proc.send_signal(signal.SIGTERM)
    notified(notify, ["STOPPING=1"])
    notify.close()
    assert inst.proc.wait(th.scaled(60)) == 0, inst.log_tail()
    deadline = time.monotonic() + th.scaled(10)
    while th.group_members(inst.pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not th.group_members(inst.pgid), "children outlived the master"
    inst.proc = None
    # every line the installed server wrote has a timestamp and a level
    text = inst.log_text()
    served = [line for line in text.splitlines() if "tern/" in line]
    assert served
    bad = [line for line in served
           if not th.LOG_LINE_RE.match(line)]
    assert not bad, f"lines without timestamp and level: {bad[:5]}"


def test_notify_abstract_socket(tern_factory):
    """$NOTIFY_SOCKET may name an abstract socket ('@name', as systemd does in containers)"""
    name = f"tern-test-notify-{th.token()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(th.scaled(30))
    try:
        inst = tern_factory(provision=False, env={"NOTIFY_SOCKET": "@" + name})
        assert "READY=1" in s.recv(4096).decode().split("\n")
        inst.stop()
        assert "STOPPING=1" in s.recv(4096).decode().split("\n")
    finally:
        s.close()
