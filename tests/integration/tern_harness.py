"""tern_harness - start a real `tern serve` on loopback and talk to it.

Each TernInstance owns a data dir, a config file and free ports; start() waits until every
listener answers with a banner (never a fixed sleep), stop() sends SIGTERM to the process
group and SIGKILL after a deadline. Helpers read Maildir files and split off the trace
headers the server prepends, so tests can compare delivered bytes with sent bytes exactly.
"""
import base64
import os
import re
import signal
import smtplib
import socket
import ssl
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

TERN_BIN = os.environ.get("TERN_BIN", "/work/main/build/asan/tern")
HOSTNAME = "mx.example.test"
DOMAINS = ("example.test", "other.test")
# TERN_VALGRIND=1 (`make valgrind`): `tern serve` runs under valgrind memcheck, one log per
# process (vg.PID.log in the instance dir); at teardown valgrind_reports() reads them.
VALGRIND = os.environ.get("TERN_VALGRIND", "") not in ("", "0")
VALGRIND_EXIT = 97          # valgrind's exit status for a process with errors
VALGRIND_SUPP = Path(__file__).resolve().parent.parent / "valgrind.supp"
# Valgrind slows the server 20-50x: every wait on the server is multiplied by this.
TIMEOUT_SCALE = float(os.environ.get("TERN_TIMEOUT_SCALE", "10" if VALGRIND else "1"))


def scaled(seconds):
    """A wait on the server, stretched under valgrind (TERN_TIMEOUT_SCALE)."""
    return seconds * TIMEOUT_SCALE


# ASan builds start slowly and everything is slower under the sanitizer.
READY_TIMEOUT = scaled(float(os.environ.get("TERN_READY_TIMEOUT", "20")))
IO_TIMEOUT = scaled(float(os.environ.get("TERN_IO_TIMEOUT", "30")))
CLI_TIMEOUT = 60

USERS = {
    "alice@example.test": "alice-Secret-1",
    "bob@example.test": "bob-Secret-2",
    "jörg@example.test": "jörg-Secret-3",
}

# A log line on stderr (src/lib/log.h): RFC 3339 UTC timestamp with milliseconds, level, tag.
LOG_LINE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                         r"(debug|info|warning|error|fatal) tern/[a-z]+\[\d+\]: ")

SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",  # UBSan
)


def token():
    """A short unique marker to find one test's message in a shared mailbox."""
    return uuid.uuid4().hex[:16]


# Ports for servers the tests start (and "dead" ports where nothing must listen) come from
# a slot of PORT_SLOT ports that this process holds alone, below the kernel's ephemeral
# range (32768-60999) which bind-to-0 and every client connection use. A process claims
# the first slot whose lock file (PORT_LOCK_DIR/slot-N) it can flock and keeps the lock
# until it exits, so no other pytest-xdist worker of the run, no other test run on the
# machine using this harness, and no client socket can take a port between the time it is
# picked here and the time tern binds it. Each pick is tried with bind() first (TCP and UDP:
# a port busy either way, e.g. in TIME_WAIT, is skipped), walking round the slot. Should
# every slot be taken, ports come from bind-to-0 as before (and TernInstance.start() picks
# again when tern finds a port taken).
PORT_BASE = 20000
PORT_SLOT = 380             # 32 slots: 20000-32159
PORT_SLOTS = 32
PORT_LOCK_DIR = "/tmp/tern-test-ports"

_port_slot = None           # (first port, lock file object) once claimed; (None, None): none
_port_next = 0


def _claim_slot():
    global _port_slot
    if _port_slot is not None:
        return _port_slot[0]
    import fcntl
    try:
        os.makedirs(PORT_LOCK_DIR, exist_ok=True)
        os.chmod(PORT_LOCK_DIR, 0o1777)
    except OSError:
        pass
    for n in range(PORT_SLOTS):
        try:
            f = open(os.path.join(PORT_LOCK_DIR, f"slot-{n}"), "a")
        except OSError:
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _port_slot = (PORT_BASE + n * PORT_SLOT, f)   # f stays open: the lock is held
        return _port_slot[0]
    _port_slot = (None, None)
    return None


def _port_free(port, kinds=(socket.SOCK_STREAM, socket.SOCK_DGRAM)):
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _pick_port(kind):
    global _port_next
    lo = _claim_slot()
    if lo is None:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(PORT_SLOT):
        port = lo + _port_next
        _port_next = (_port_next + 1) % PORT_SLOT
        if _port_free(port):
            return port
    raise TernError(f"no free port in {lo}-{lo + PORT_SLOT - 1}")


def free_port():
    """A TCP port on 127.0.0.1 that is free now and that no other test process will pick."""
    return _pick_port(socket.SOCK_STREAM)


def free_udp_port():
    """A UDP port on 127.0.0.1, picked like free_port()."""
    return _pick_port(socket.SOCK_DGRAM)


def tls_context():
    """A client context for the server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def tail(path, n=60):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return f"(no log: {e})"
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


class TernError(Exception):
    pass


def valgrind_command(log_dir):
    """The valgrind prefix of `tern serve`: memcheck on the master and every child it forks,
    one log file per process. Leaks that count as errors: definite and indirect ("possibly
    lost" and "still reachable" are listed in the log, not failed on)."""
    cmd = ["valgrind", "--tool=memcheck", f"--error-exitcode={VALGRIND_EXIT}",
           "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
           "--errors-for-leak-kinds=definite,indirect", "--trace-children=yes",
           "--child-silent-after-fork=no", "--num-callers=30",
           f"--log-file={log_dir}/vg.%p.log"]
    if VALGRIND_SUPP.exists():
        cmd.append(f"--suppressions={VALGRIND_SUPP}")
    extra = os.environ.get("TERN_VALGRIND_ARGS", "")  # e.g. --track-origins=yes
    return cmd + extra.split()


_VG_SUMMARY = re.compile(r"ERROR SUMMARY: ([\d,]+) errors")
_VG_KILLED = re.compile(r"(?:worker|queue runner) (\d+) killed by signal 9\b")


def valgrind_log_problems(paths, killed_pids=(), all_killed=False):
    """[(path, why)] for valgrind logs with errors, or cut short (no ERROR SUMMARY: the
    process was killed before memcheck's exit checks) unless its pid is in killed_pids or
    all_killed (a test SIGKILLed it on purpose)."""
    problems = []
    for path in sorted(paths):
        try:
            text = Path(path).read_text("utf-8", "replace")
        except OSError as e:
            problems.append((path, f"unreadable: {e}"))
            continue
        m = _VG_SUMMARY.search(text)
        if m is None:
            pid = re.search(r"vg\.(\d+)\.log$", str(path))
            if not all_killed and not (pid and int(pid.group(1)) in killed_pids):
                problems.append((path, "no ERROR SUMMARY: the process did not exit (killed?)"))
        elif int(m.group(1).replace(",", "")) != 0:
            problems.append((path, m.group(0)))
    return problems


class CliResult:
    def __init__(self, args, proc):
        self.args = args
        self.returncode = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "replace")
        self.stderr = proc.stderr.decode("utf-8", "replace")

    def __repr__(self):
        return (f"<tern {' '.join(self.args)}: exit {self.returncode}\n"
                f"stdout: {self.stdout!r}\nstderr: {self.stderr!r}>")


def run_tern(args, stdin=None, timeout=CLI_TIMEOUT, env=None):
    """Run the tern binary with args; returns a CliResult (never raises on exit status)."""
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    proc = subprocess.run([TERN_BIN] + list(args), input=stdin if stdin is not None else b"",
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          env=env)
    return CliResult(list(args), proc)


class TernInstance:
    """One `tern serve` with its own data dir, config file and ports."""

    def __init__(self, base_dir, extra_config="", user=None, workers=2, env=None,
                 data_dir=None, settings=None):
        self.base = Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.owned_dirs = []
        if os.geteuid() == 0 and user is None:
            # tern refuses to keep root in its children: run them as an unprivileged user.
            user = os.environ.get("TERN_TEST_USER", "nobody")
        if data_dir:
            self.data_dir = Path(data_dir)
        elif user:
            # pytest's tmp_path sits under a 0700 directory of root's that the dropped
            # children could not reach: put the data dir in a world-traversable place.
            d = Path(tempfile.mkdtemp(prefix="tern-data-", dir="/tmp"))
            os.chmod(d, 0o755)
            self.owned_dirs.append(d)
            self.data_dir = d / "data"
            (self.base / "data").symlink_to(self.data_dir)  # easy to find next to the log
        else:
            self.data_dir = self.base / "data"
        self.user = user
        self.conf = self.base / "tern.conf"
        # the self-signed pair: [tls] dir defaults to the config file's directory + /tls
        self.tls_dir = self.base / "tls"
        self.log_path = self.base / "tern.log"
        self.ports = {
            "smtp": free_port(),
            "submission": free_port(),
            "submissions": free_port(),
            "pop3": free_port(),
            "pop3s": free_port(),
            "imap": free_port(),
            "imaps": free_port(),
        }
        # Nothing listens here: DNS lookups and outbound delivery fail temporarily, so
        # remote mail stays in the queue where the tests can see it.
        self.dns_port = free_udp_port()
        self.mx_port = free_port()
        self.settings = {
            "hostname": HOSTNAME,
            "data_dir": str(self.data_dir),
            "domains": " ".join(DOMAINS),
            "workers": str(workers),
            "max_message_size": "1048576",
            "smtp_max_line": "2048",
            "smtp_max_text_line": "16384",
            "smtp_max_recipients": "100",
            "smtp_max_bad_commands": "20",
            "max_connections_per_ip": "100",
            "smtp_timeout_command": "300",
            "smtp_timeout_data": "180",
            "shutdown_timeout": "10",
        }
        if user:
            self.settings["user"] = user
        if settings:
            self.settings.update(settings)
        self.extra_config = extra_config
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None
        self.pgid = None
        self.starts = 0
        self.last_exit = None
        self.killed = False     # SIGKILLed on purpose (kill()): valgrind logs are cut short
        self.write_config()

    # -- configuration and CLI ----------------------------------------------------------
    def config_text(self):
        lines = [f"{k} = {v}" for k, v in self.settings.items()]
        lines.append(self.extra_config)
        lines.append("[listen]")
        for role, port in self.ports.items():
            lines.append(f"{role} = 127.0.0.1:{port}")
        lines.append("[tls]")
        lines.append("# no cert/key: self-signed pair generated in tls/ next to this file")
        lines.append("[dns]")
        lines.append(f"servers = 127.0.0.1:{self.dns_port}")
        lines.append("[queue]")
        lines.append(f"mx_port = {self.mx_port}")
        return "\n".join(lines) + "\n"

    def write_config(self):
        self.conf.write_text(self.config_text(), encoding="utf-8")

    def cli(self, *args, stdin=None, timeout=CLI_TIMEOUT):
        """Run `tern ARGS -c CONF`."""
        return run_tern(list(args) + ["-c", str(self.conf)], stdin=stdin, timeout=timeout,
                        env=self.env)

    def add_user(self, addr, password):
        r = self.cli("user", "add", addr, stdin=password + "\n")
        if r.returncode != 0:
            raise TernError(f"user add {addr} failed: {r!r}")
        return r

    def queue_list(self):
        r = self.cli("queue", "list")
        if r.returncode != 0:
            raise TernError(f"queue list failed: {r!r}")
        return r.stdout

    # -- process control ----------------------------------------------------------------
    def start(self, timeout=READY_TIMEOUT):
        """Start `tern serve` and wait until every listener answers. free_port() picks
        from this process's own range, but a process that does not use it may still take
        a port before tern binds it; then the ports are picked again, twice."""
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once(timeout)
            except TernError:
                with open(self.log_path, "rb") as f:
                    f.seek(log_start)
                    lost_port = b"Address already in use" in f.read()
                if not lost_port or self.running() or attempt == 2:
                    raise
                self.proc = None
                for role in self.ports:
                    self.ports[role] = free_port()
                self.write_config()

    def _start_once(self, timeout):
        if not os.path.exists(TERN_BIN):
            raise TernError(f"tern binary not found at {TERN_BIN} (set TERN_BIN)")
        self.starts += 1
        logf = open(self.log_path, "ab")
        logf.write(f"\n===== start #{self.starts} at {time.strftime('%T')} =====\n".encode())
        logf.flush()
        try:
            cmd = [TERN_BIN, "serve", "-c", str(self.conf)]
            if VALGRIND:
                cmd = valgrind_command(self.base) + cmd
            self.proc = subprocess.Popen(cmd,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True, env=self.env)
        finally:
            logf.close()
        self.pgid = self.proc.pid  # start_new_session: the master leads its own group
        self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _probe(self, role, port):
        """True when the listener answers with its banner: 220 (SMTP), +OK (POP3) or * OK (IMAP), over TLS
        on the implicit-TLS roles."""
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=scaled(2))
        except OSError:
            return False
        try:
            if role in ("submissions", "pop3s", "imaps", "https"):
                sock = tls_context().wrap_socket(sock, server_hostname=HOSTNAME)
            sock.settimeout(scaled(5))
            if role in ("http", "https", "metrics"):
                # the HTTP role: any answer to a request (a 404 for /) is readiness
                sock.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
                data = b""
                while b"\n" not in data:
                    chunk = sock.recv(512)
                    if not chunk:
                        return False
                    data += chunk
                return data.startswith(b"HTTP/1.")
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(512)
                if not chunk:
                    return False
                data += chunk
            banner = (b"+OK" if role.startswith("pop3") else b"* OK" if role.startswith("imap")
                      else b"220")
            if not data.startswith(banner):
                return False
            # Log out and wait for the server to close: the probe's session must be over
            # (its per-IP connection count released) before a test starts, also when the
            # server is slow (valgrind).
            try:
                sock.sendall(b"p LOGOUT\r\n" if role.startswith("imap") else b"QUIT\r\n")
                while sock.recv(512):
                    pass
            except (OSError, ssl.SSLError):
                pass
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise TernError(
                    f"tern serve exited with status {self.proc.returncode} before it was "
                    f"ready; log tail:\n{self.log_tail()}")
            for role, port in list(pending.items()):
                if self._probe(role, port):
                    del pending[role]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TernError(
                    f"tern serve not ready after {timeout}s; no banner on "
                    f"{', '.join(f'{r}={p}' for r, p in pending.items())}; log tail:\n"
                    f"{self.log_tail()}")
            time.sleep(0.05)  # poll interval, not a readiness assumption

    def signal_group(self, sig):
        if self.pgid is None:
            return
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=None):
        """SIGTERM to the process group, wait, SIGKILL on timeout. Returns the exit status."""
        if timeout is None:
            timeout = scaled(30)
        if self.proc is None:
            return self.last_exit
        if self.proc.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.proc.wait(10)
        self.last_exit = self.proc.returncode
        self.proc = None
        # Children that outlived the master must not leak into other tests.
        self.stragglers = group_members(self.pgid)
        self.signal_group(signal.SIGKILL)
        self.wait_group_gone()
        return self.last_exit

    def kill(self):
        """SIGKILL the whole process group (master and children) and reap the master."""
        if self.proc is None:
            return
        self.killed = True
        self.signal_group(signal.SIGKILL)
        self.proc.wait(10)
        self.last_exit = self.proc.returncode
        self.proc = None
        self.wait_group_gone()

    def wait_group_gone(self, timeout=10):
        """Wait until no process of the (former) group is left, so ports are free."""
        pgid = self.pgid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not group_members(pgid):
                return
            time.sleep(0.05)

    def cleanup(self):
        """Remove data dirs made outside tmp_path (after stop)."""
        for d in self.owned_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self.owned_dirs = []

    def log_tail(self, n=60):
        return tail(self.log_path, n)

    def log_text(self):
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_reports(self):
        text = self.log_text()
        return [p for p in SANITIZER_PATTERNS if p in text]

    def valgrind_reports(self):
        """Under TERN_VALGRIND: [(log path, why)] for every process of this instance whose
        memcheck log shows errors or leaks, or that was cut short without a reason (a child
        the master reports killed by signal 9, or kill() of the whole group, is a reason)."""
        if not VALGRIND:
            return []
        killed = {int(p) for p in _VG_KILLED.findall(self.log_text())}
        return valgrind_log_problems(self.base.glob("vg.*.log"), killed, self.killed)

    def valgrind_text(self, problems, limit=12000):
        """The logs named in problems, for a failure message (cut to limit characters)."""
        out = []
        for path, why in problems:
            out.append(f"----- {path}: {why}")
            out.append(tail(path, 200))
        text = "\n".join(out)
        return text if len(text) <= limit else text[:limit] + "\n[...]"

    # -- mailboxes ----------------------------------------------------------------------
    def maildir(self, addr):
        local, domain = addr.rsplit("@", 1)
        return self.data_dir / "mail" / domain / local

    def mailbox_files(self, addr, subdirs=("new", "cur")):
        files = []
        for sub in subdirs:
            d = self.maildir(addr) / sub
            if d.is_dir():
                files.extend(sorted(p for p in d.iterdir() if p.is_file()))
        return files

    def find_messages(self, addr, needle, subdirs=("new", "cur")):
        """Files in addr's Maildir whose bytes contain needle."""
        if isinstance(needle, str):
            needle = needle.encode()
        out = []
        for p in self.mailbox_files(addr, subdirs):
            try:
                if needle in p.read_bytes():
                    out.append(p)
            except FileNotFoundError:
                pass
        return out

    def wait_message(self, addr, needle, count=1, timeout=20):
        """Poll until addr's Maildir holds `count` files containing needle; return them."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_messages(addr, needle)
            if len(found) >= count:
                # Let a short moment pass to see that no extra copy appears.
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no message with {needle!r} for {addr} after {timeout}s "
                    f"(found {len(found)}; files in {self.maildir(addr)}: "
                    f"{[str(p) for p in self.mailbox_files(addr, ('tmp', 'new', 'cur'))]})")
            time.sleep(0.05)

    def flush(self, addr="bob@example.test"):
        """Deliver a marker to addr on a new connection and wait for it, so whatever an
        earlier session would have delivered has had its chance to arrive."""
        tok = token()
        with self.smtp() as s:
            s.sendmail("marker@example.net", [addr], make_message(tok, to=addr))
        self.wait_message(addr, tok)

    def all_delivered_files(self):
        root = self.data_dir / "mail"
        if not root.is_dir():
            return []
        return [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur", "tmp")]

    # -- SMTP clients -------------------------------------------------------------------
    def smtp(self, role="smtp"):
        """A connected smtplib client: plain on smtp/submission, TLS on submissions."""
        port = self.ports[role]
        if role == "submissions":
            return smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.example.net",
                                    timeout=IO_TIMEOUT, context=tls_context())
        return smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.net",
                            timeout=IO_TIMEOUT)

    def submission_login(self, user="alice@example.test", password=None):
        """587: EHLO, STARTTLS, EHLO, AUTH (smtplib login). Returns the client."""
        s = self.smtp("submission")
        s.ehlo()
        s.starttls(context=tls_context())
        s.ehlo()
        s.login(user, password if password is not None else USERS[user])
        return s

    def raw(self, role="smtp", ehlo=True):
        """A RawSMTP connected to role, banner read, EHLO sent when asked."""
        c = RawSMTP("127.0.0.1", self.ports[role], tls=(role == "submissions"))
        code, lines = c.read_reply()
        assert code == 220, (code, lines)
        if ehlo:
            code, lines = c.cmd("EHLO client.example.net")
            assert code == 250, (code, lines)
        return c


def group_members(pgid):
    """PIDs of live (non-zombie) processes in process group pgid."""
    if pgid is None:
        return []
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        state, pg = rest[0], int(rest[2])
        if pg == pgid and state != "Z":
            pids.append(int(d))
    return pids


def children_of(pid):
    """Direct children of pid, from /proc/*/stat."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == pid and rest[0] != "Z":
            kids.append(int(d))
    return kids


class RawSMTP:
    """A byte-exact SMTP client over a socket: send what you like, read replies in order."""

    def __init__(self, host, port, tls=False, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls:
            self.sock = tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed by server; unread: {self.buf!r}")
        self.buf += chunk

    def read_line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def read_reply(self):
        """One (possibly multi-line) reply: (code, [text lines as str])."""
        lines = []
        while True:
            line = self.read_line()
            if len(line) < 3 or not line[:3].isdigit():
                raise AssertionError(f"malformed reply line {line!r}")
            code = int(line[:3])
            sep = line[3:4]
            lines.append(line[4:].decode("utf-8", "replace"))
            if sep != b"-":
                return code, lines

    def cmd(self, line):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.read_reply()

    def starttls(self):
        code, lines = self.cmd("STARTTLS")
        assert code == 220, (code, lines)
        assert not self.buf, f"bytes after STARTTLS reply: {self.buf!r}"
        self.sock = tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)

    def read_until_eof(self, timeout=IO_TIMEOUT):
        """All remaining bytes until the server closes (or timeout)."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return data

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def reply_text(lines):
    return " / ".join(lines)


ENH_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(\s|$)")


def assert_reply(got, code, enhanced=None):
    """got is (code, lines) from RawSMTP or (code, bytes) from smtplib. Assert the basic code
    and that the text starts with an enhanced status code (the given one if any) whose class
    matches the basic code."""
    gcode, text = got
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(text, list):
        first = text[0] if text else ""
        alltext = reply_text(text)
    else:
        first = text.split("\n")[0]
        alltext = text
    shown = f"{gcode} {alltext}"
    if isinstance(code, int):
        assert gcode == code, f"expected {code}, server replied: {shown!r}"
    else:  # a class such as "5xx"
        assert str(gcode)[0] == code[0], f"expected {code}, server replied: {shown!r}"
    m = ENH_RE.match(first)
    assert m, f"no enhanced status code in reply: {shown!r}"
    assert m.group(1) == str(gcode)[0], f"enhanced code class differs: {shown!r}"
    if enhanced:
        assert first.startswith(enhanced + " ") or first == enhanced, \
            f"expected enhanced code {enhanced}, server replied: {shown!r}"


def auth_plain_b64(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode("utf-8")).decode()


def split_delivered(data):
    """Split a delivered Maildir file into (return_path_line, received_header, message).
    The file must be "Return-Path: <...>\\r\\n", then (mail from other MTAs, the smtp role)
    our own "Authentication-Results: HOSTNAME; ..." field, which is skipped, then
    "Received: ..." with continuation lines starting with SP/HT, all CRLF-terminated, then
    the message bytes."""
    assert data.startswith(b"Return-Path: "), f"file does not start with Return-Path: {data[:200]!r}"
    end = data.index(b"\r\n")
    return_path = data[:end]
    rest = data[end + 2:]
    ours = b"Authentication-Results: " + HOSTNAME.encode() + b";"
    if rest.startswith(ours):
        pos = rest.index(b"\r\n") + 2
        while rest[pos:pos + 1] in (b" ", b"\t"):
            pos = rest.index(b"\r\n", pos) + 2
        rest = rest[pos:]
    assert rest.startswith(b"Received: "), f"second header is not Received: {rest[:200]!r}"
    pos = rest.index(b"\r\n") + 2
    while rest[pos:pos + 1] in (b" ", b"\t"):
        pos = rest.index(b"\r\n", pos) + 2
    received = rest[:pos]
    assert b"\n" not in received.replace(b"\r\n", b""), f"bare LF in Received: {received!r}"
    return return_path, received, rest[pos:]


def unfold(header):
    return re.sub(rb"\r\n[ \t]+", b" ", header).rstrip(b"\r\n").decode("utf-8", "replace")


def check_delivered(path, sender, message, with_proto=None):
    """Assert the file at path is exactly the trace headers + message. Returns Received."""
    data = Path(path).read_bytes()
    rp, received, body = split_delivered(data)
    assert rp == b"Return-Path: <" + sender.encode("utf-8") + b">", rp
    rec = unfold(received)
    assert f"by {HOSTNAME}" in rec, f"Received does not name 'by {HOSTNAME}': {rec!r}"
    if with_proto:
        assert re.search(r"\bwith " + re.escape(with_proto) + r"\b", rec), \
            f"Received does not say 'with {with_proto}': {rec!r}"
    assert body == message, (
        f"stored message differs from sent message\nsent:   {message[:400]!r}\n"
        f"stored: {body[:400]!r}")
    return rec


def make_message(tok, sender="sender@example.net", to="bob@example.test", subject=None,
                 body=None, extra_headers=b""):
    """A small RFC 5322 message as CRLF bytes, carrying tok in Subject and body."""
    subject = subject or f"test {tok}"
    if body is None:
        body = f"Hello, this is message {tok}.\r\nSecond line.\r\n".encode()
    if isinstance(body, str):
        body = body.encode("utf-8")
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{tok}@client.example.net>\r\n").encode("utf-8")
    return head + extra_headers + b"\r\n" + body


def files_containing(root, needle):
    """Every file under root whose bytes contain needle."""
    if isinstance(needle, str):
        needle = needle.encode()
    out = []
    for p in Path(root).rglob("*"):
        try:
            if p.is_file() and needle in p.read_bytes():
                out.append(p)
        except OSError:
            pass
    return out


def assert_no_trace(inst, needle, timeout=5):
    """A refused or aborted message leaves no file anywhere in the data dir (spool temp
    files included). Polls briefly: the server may clean up a moment after replying."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        found = files_containing(inst.data_dir, needle)
        if not found:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"refused/aborted message {needle!r} left on disk: "
                                 f"{[str(p) for p in found]}")
        time.sleep(0.1)
