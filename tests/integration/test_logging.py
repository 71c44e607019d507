"""Log lines: timestamps and levels on stderr, the journal's form, syslog (docs/configuration.md,
"Logging"; src/lib/log.h).

- stderr (default): every line `2026-11-30T12:00:00.123Z info tern/master[PID]: ...`, a
  warning as `warning`; `log_timestamps = no` leaves the timestamp out.
- stderr that is the systemd journal (JOURNAL_STREAM names it): `<6>info tern/...` without a
  timestamp (journald stamps lines itself and takes the priority from `<N>`).
- `log = syslog`: one datagram a line on the syslog socket, `<PRI>Mmm dd hh:mm:ss
  tern/master[PID]: ...` with PRI = facility (mail, or log_facility) + severity; a socket
  that is not there sends the lines to stderr instead.
- bad values stop startup with the file, line and key.
"""
import os
import re
import socket
import time

import pytest

import tern_harness as th

SYSLOG_RE = re.compile(r"^<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) "
                       r"tern/([a-z]+)\[(\d+)\]: (.*)$", re.S)


def tern_lines(inst):
    return [line for line in inst.log_text().splitlines() if "tern/" in line]


def test_stderr_lines_have_timestamp_and_level(tern_factory):
    inst = tern_factory(users={"bob@example.test": th.USERS["bob@example.test"]})
    # a warning: an unknown command is a debug line; a failed login on loopback without
    # TLS is refused; simplest: ask for a reload with a certificate that cannot load
    (inst.tls_dir / "cert.pem").write_text("not a certificate\n")
    mark = len(inst.log_text())
    os.kill(inst.pid, 1)    # SIGHUP
    deadline = time.monotonic() + th.scaled(20)
    while "keeping the old certificate" not in inst.log_text()[mark:]:
        assert time.monotonic() < deadline, inst.log_tail()
        time.sleep(0.05)
    lines = tern_lines(inst)
    bad = [line for line in lines if not th.LOG_LINE_RE.match(line)]
    assert lines and not bad, f"lines without timestamp and level: {bad[:5]}"
    warn = [line for line in lines if "keeping the old certificate" in line]
    assert re.search(r"Z warning tern/master\[\d+\]: reload: TLS: ", warn[0]), warn
    info = [line for line in lines if "ready:" in line]
    assert re.search(r"Z info tern/master\[\d+\]: ready: ", info[0]), info
    # the timestamp is now, in UTC
    stamp = time.strptime(info[0][:19], "%Y-%m-%dT%H:%M:%S")
    assert abs(time.mktime(stamp) - time.mktime(time.gmtime())) < 600


def test_no_timestamps(tern_factory):
    inst = tern_factory(provision=False, settings={"log_timestamps": "no"})
    lines = tern_lines(inst)
    assert lines
    bad = [line for line in lines if not re.match(r"^(info|warning) tern/[a-z]+\[\d+\]: ", line)]
    assert not bad, bad[:5]


def test_journal_stream_gets_priority_prefixes(tern_factory, tmp_path):
    """systemd sets JOURNAL_STREAM=dev:inode of the stderr it gives a service; the harness's
    log file stands in for it."""
    inst = tern_factory(start=False, provision=False)
    inst.log_path.touch()
    st = os.stat(inst.log_path)
    inst.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
    inst.start()
    lines = tern_lines(inst)
    assert lines
    bad = [line for line in lines if not re.match(r"^<[0-7]>[a-z]+ tern/[a-z]+\[\d+\]: ", line)]
    assert not bad, bad[:5]
    assert any(re.match(r"^<6>info tern/master\[\d+\]: ready: ", line) for line in lines)


def syslog_server(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    os.chmod(path, 0o666)   # the children run as another user when the tests run as root
    s.settimeout(th.scaled(10))
    return s


def read_until(sock, pred, timeout=20):
    got = []
    deadline = time.monotonic() + th.scaled(timeout)
    while time.monotonic() < deadline:
        try:
            d = sock.recv(65536).decode("utf-8", "replace")
        except socket.timeout:
            continue
        got.append(d)
        if pred(d):
            return got
    raise AssertionError(f"no expected datagram; got {got[-10:]}")


@pytest.mark.parametrize("facility,code", [(None, 2), ("local3", 19), ("daemon", 3)])
def test_syslog(tern_factory, facility, code):
    inst = tern_factory(start=False, users={"bob@example.test": th.USERS["bob@example.test"]})
    sock_path = inst.base / "log.sock"
    srv = syslog_server(sock_path)
    try:
        settings = {"log": "syslog", "syslog_socket": str(sock_path)}
        if facility:
            settings["log_facility"] = facility
        inst.settings.update(settings)
        inst.write_config()
        inst.start()
        got = read_until(srv, lambda d: "ready:" in d)
        # a line from a worker: a message delivered
        tok = th.token()
        with inst.smtp() as s:
            s.sendmail("a@example.net", ["bob@example.test"], th.make_message(tok))
        got += read_until(srv, lambda d: "tern/smtpd[" in d)
        (inst.tls_dir / "cert.pem").write_text("not a certificate\n")
        os.kill(inst.pid, 1)
        got += read_until(srv, lambda d: "keeping the old certificate" in d)
    finally:
        srv.close()
    for d in got:
        m = SYSLOG_RE.match(d)
        assert m, f"not a syslog datagram: {d!r}"
        pri = int(m.group(1))
        assert pri >> 3 == code, f"facility {pri >> 3}, expected {code}: {d!r}"
    ready = [d for d in got if "ready:" in d][0]
    m = SYSLOG_RE.match(ready)
    assert int(m.group(1)) & 7 == 6 and m.group(3) == "master" and m.group(5).startswith("ready:")
    assert int(m.group(4)) == inst.pid
    warn = [d for d in got if "keeping the old certificate" in d][0]
    m = SYSLOG_RE.match(warn)
    assert int(m.group(1)) & 7 == 4 and m.group(5).startswith("warning: reload: TLS: "), warn
    # nothing of it on stderr
    assert not [line for line in tern_lines(inst) if "ready:" in line]


def test_syslog_socket_missing_goes_to_stderr(tern_factory):
    inst = tern_factory(start=False, provision=False)
    inst.settings.update({"log": "syslog", "syslog_socket": str(inst.base / "nothing.sock")})
    inst.write_config()
    inst.start()
    lines = tern_lines(inst)
    assert any("nothing.sock" in line and " warning tern/master[" in line for line in lines), \
        lines[:5]
    assert any(th.LOG_LINE_RE.match(line) and "ready:" in line for line in lines), lines


@pytest.mark.parametrize("key,value,why", [
    ("log", "file", "expected stderr or syslog"),
    ("log_timestamps", "sometimes", "expected auto, yes or no"),
    ("log_facility", "kern", "expected mail, daemon, user or local0 to local7"),
    ("syslog_socket", "dev/log", "expected an absolute path"),
])
def test_bad_values(tern_factory, key, value, why):
    inst = tern_factory(start=False, provision=False)
    inst.settings[key] = value
    inst.write_config()
    r = inst.cli("user", "list")
    assert r.returncode != 0
    assert re.search(rf"tern\.conf:\d+: {key}: {why}", r.stderr), r.stderr
