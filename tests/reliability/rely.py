"""rely - helpers of the reliability suite: crash tests, full disks, lost indexes.

Built on tests/integration/tern_harness.py (TernInstance, children_of, group_members, ...):

- payload(): a message whose body carries a unique token and a SHA-256 of the body in its
  header, so any copy found anywhere (Maildir file, sink) can be checked for truncation or
  corruption; check_copy() does that check on stored bytes.
- Sink: a threaded SMTP server on loopback standing in for "the remote": it records each
  message it acknowledged (token, checksum ok), can be made slow, and signals when a DATA
  transfer is in progress so that a test can kill the queue runner mid-delivery.
- Killer: a thread that SIGKILLs the whole process group (then restarts it) or one child at
  moments chosen by progress (so that the kills fall inside the load whatever the machine's
  speed), and records what it did.
- runner_pid()/worker_pids(): tell the children apart (the runner holds spool/runner.sock).
- Tmpfs: a small tmpfs mounted on a temp dir (unmounted in teardown, lazily if busy).
"""
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_INTEGRATION = _HERE.parent / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

import tern_harness as th  # noqa: E402

sys.path.insert(0, str(_HERE.parent / "e2e"))
from e2e_harness import wait_until as _e2e_wait_until  # noqa: E402

REMOTE_DOMAIN = "remote.test"
TOKEN_RE = re.compile(rb"^X-Rely-Token: ([0-9a-f]+)\r?$", re.M)
SUM_RE = re.compile(rb"^X-Rely-Sum: ([0-9a-f]+)\r?$", re.M)


# -- messages --------------------------------------------------------------------------------
def payload(tok, size, sender="sender@example.net", to="bob@example.test", rng=random):
    """An RFC 5322 message (CRLF) of about `size` body bytes; the body's SHA-256 is in the
    header. Body lines are base64-like text: no line starts with a dot."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    lines = [f"token {tok}"]
    left = size
    while left > 0:
        n = min(76, left)
        lines.append("".join(rng.choice(alphabet) for _ in range(n)))
        left -= n + 2
    body = ("\r\n".join(lines) + "\r\n").encode()
    head = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: rely {tok}\r\n"
            f"Date: Mon, 30 Nov 2026 09:00:00 +0000\r\n"
            f"Message-ID: <{tok}@client.example.net>\r\n"
            f"X-Rely-Token: {tok}\r\nX-Rely-Sum: {hashlib.sha256(body).hexdigest()}\r\n")
    return head.encode() + b"\r\n" + body


def check_copy(data):
    """(token, ok) for stored or received message bytes; token None when there is none.
    ok: the body after the header is exactly the one whose checksum the header names."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        m = TOKEN_RE.search(data)
        return (m.group(1).decode() if m else None), False
    head, body = data[:end + 2], data[end + 4:]
    t, s = TOKEN_RE.search(head), SUM_RE.search(head)
    if t is None:
        return None, False
    return t.group(1).decode(), s is not None and \
        hashlib.sha256(body).hexdigest() == s.group(1).decode()


def scan_mailbox(inst, addr, subdirs=("new", "cur")):
    """{token: [ok, ok, ...]} over every file in addr's Maildir INBOX (a file that vanishes
    under us, moved new/ -> cur/, is read at its new place)."""
    found = {}
    for p in inst.mailbox_files(addr, subdirs):
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue
        tok, ok = check_copy(data)
        found.setdefault(tok, []).append(ok)
    return found


# -- the remote: a threaded SMTP sink --------------------------------------------------------
class Sink:
    """An SMTP server on 127.0.0.1:<free port>. `received[token]` lists one checksum result
    per message acknowledged with 250. `delay_reply` seconds are waited after the final dot
    before the 250 (only while `slow` is true); `in_data` is set while a DATA transfer is
    under way and `data_done` after the last byte arrived, before the reply."""

    def __init__(self, host="127.0.0.1"):
        self.host = host
        self.lock = threading.Lock()
        self.received = {}
        self.sessions = 0
        self.active = 0         # sessions open now
        self.aborted = 0
        self.slow = False
        self.delay_reply = 0.0
        self.read_delay = 0.0   # sleep between reads of DATA while slow
        # A message whose sender went away before the sink read all of it is not accepted
        # (the kernel may have buffered the whole of it: the sink looks for the FIN).
        self.drop_if_peer_gone = False
        self.in_data = threading.Event()
        self.data_done = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.stopping = False
        self.threads = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def total(self):
        with self.lock:
            return sum(len(v) for v in self.received.values())

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        with self.lock:
            self.sessions += 1
            self.active += 1
        c.settimeout(60)
        f = c.makefile("rb")
        try:
            c.sendall(b"220 sink.remote.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    c.sendall(b"250-sink.remote.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                              b"250 SIZE 52428800\r\n" if verb == b"EHLO" else b"250 sink\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    self.in_data.set()
                    data = self._read_data(f)
                    if data is None:
                        with self.lock:
                            self.aborted += 1
                        return
                    self.data_done.set()
                    if self.slow and self.delay_reply:
                        time.sleep(self.delay_reply)
                    if self.drop_if_peer_gone and self._peer_gone(c):
                        with self.lock:
                            self.aborted += 1
                        return
                    c.sendall(b"250 2.0.0 accepted\r\n")
                    tok, ok = check_copy(data)
                    with self.lock:
                        self.received.setdefault(tok, []).append(ok)
                    self.in_data.clear()
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    c.sendall(b"250 2.0.0 ok\r\n")
                else:
                    c.sendall(b"502 5.5.1 not here\r\n")
        except OSError:
            with self.lock:
                self.aborted += 1
        finally:
            self.in_data.clear()
            with self.lock:
                self.active -= 1
            try:
                f.close()
                c.close()
            except OSError:
                pass

    @staticmethod
    def _peer_gone(c):
        c.setblocking(False)
        try:
            return c.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            c.setblocking(True)
            c.settimeout(60)

    def _read_data(self, f):
        """The message up to CRLF.CRLF, dot-unstuffed; None when the peer went away."""
        out = []
        while True:
            if self.slow and self.read_delay:
                time.sleep(self.read_delay)
            line = f.readline()
            if not line:
                return None
            if line == b".\r\n":
                return b"".join(out)
            if line.startswith(b"."):
                line = line[1:]
            out.append(line)

    def close(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


# -- instances -------------------------------------------------------------------------------
def relay_config(sink, retry_min=1):
    """extra_config routing REMOTE_DOMAIN to the sink; the [queue] keys of the test."""
    return (f"[queue]\nretry_min = {retry_min}\nretry_max = 2\n"
            f"[routes]\n{REMOTE_DOMAIN} = {sink.host}:{sink.port}\n")


BASE_SETTINGS = {"allow_plaintext_auth_loopback": "yes"}


def runner_pid(inst):
    """PID of the queue runner: the child holding spool/runner.sock bound."""
    path = str(inst.data_dir / "spool" / "runner.sock")
    inodes = set()
    try:
        for ln in Path("/proc/net/unix").read_text().splitlines()[1:]:
            parts = ln.split()
            if len(parts) >= 8 and parts[7] == path:
                inodes.add(parts[6])
    except OSError:
        return None
    for pid in th.children_of(inst.pid) if inst.pid else []:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return pid
        except OSError:
            continue
    return None


def worker_pids(inst):
    r = runner_pid(inst)
    return [p for p in (th.children_of(inst.pid) if inst.pid else []) if p != r]


def kill_pid(pid, sig=9):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def restart(inst, attempts=3):
    """Start a killed instance again (the ports may take a moment to be free)."""
    for i in range(attempts):
        try:
            inst.start()
            return
        except th.TernError:
            inst.kill() if inst.proc else None
            if i == attempts - 1:
                raise


class Killer(threading.Thread):
    """Kills at progress thresholds: `plan` is a list of (threshold, action) with action
    'group' (SIGKILL the process group, restart, wait until ready), 'master' (SIGKILL the
    master alone, wait for its children to finish and exit, restart), 'worker' or 'runner'
    (SIGKILL one child; the master restarts it). progress() returns the current count."""

    def __init__(self, inst, plan, progress, rng, lock=None):
        super().__init__(daemon=True)
        self.inst = inst
        self.plan = sorted(plan)
        self.progress = progress
        self.rng = rng
        self.done = threading.Event()
        self.stop_now = threading.Event()
        self.counts = {"group": 0, "master": 0, "worker": 0, "runner": 0}
        self.error = None
        self.downtime = 0.0
        self.lock = lock or threading.Lock()

    def run(self):
        try:
            for threshold, action in self.plan:
                while self.progress() < threshold:
                    if self.stop_now.wait(0.02):
                        return
                time.sleep(self.rng.uniform(0, 0.15))   # not always right at an ack
                self.kill(action)
        except BaseException as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()

    def kill(self, action):
        with self.lock:
            if action == "group":
                t0 = time.monotonic()
                self.inst.kill()
                restart(self.inst)
                self.downtime += time.monotonic() - t0
            elif action == "master":
                # The master alone: its children get SIGTERM (PR_SET_PDEATHSIG), finish
                # the transactions in flight and exit; then a new master starts.
                t0 = time.monotonic()
                kill_pid(self.inst.pid)
                self.inst.proc.wait(10)
                self.inst.proc = None
                self.inst.wait_group_gone(timeout=20)
                self.inst.signal_group(9)       # stragglers past shutdown_timeout
                self.inst.wait_group_gone()
                restart(self.inst)
                self.downtime += time.monotonic() - t0
            else:
                pid = runner_pid(self.inst) if action == "runner" else None
                if action == "worker":
                    ws = worker_pids(self.inst)
                    pid = self.rng.choice(ws) if ws else None
                if pid is None or not kill_pid(pid):
                    return
            self.counts[action] += 1


def make_plan(rng, total, groups=6, masters=0, workers=2, runners=2, lo=0.05, hi=0.9):
    """Kill thresholds spread at random over [lo, hi] of the total progress."""
    acts = (["group"] * groups + ["master"] * masters + ["worker"] * workers +
            ["runner"] * runners)
    return [(int(total * rng.uniform(lo, hi)), a) for a in acts]


def run_load(threads, killer, stats, timeout=240):
    """Start the load threads and the killer; wait for the threads (each must end without
    an error of its own), then stop the killer and check that it had no error either. On a
    failure the threads are told to stop (stats["stop"]) and the killer is waited for, so
    that nothing keeps restarting or connecting while the fixtures clean up."""
    for t in threads:
        t.start()
    killer.start()
    try:
        for t in threads:
            t.join(timeout=timeout)
            assert not t.is_alive(), f"load thread still running; {stats}"
            assert t.error is None, t.error
        killer.stop_now.set()
        killer.join(timeout=60)
        assert killer.error is None, killer.error
        assert not killer.is_alive(), "the killer is stuck"
    finally:
        stats["stop"].set()
        killer.stop_now.set()
        killer.join(timeout=60)
        for t in threads:
            t.join(timeout=10)


def new_stats(**counters):
    """Shared counters of a load: a lock, a stop event, failures and the last error."""
    return dict(lock=threading.Lock(), stop=threading.Event(), failures=0, last_error=None,
                **counters)


def wait_until(pred, timeout, what, interval=0.1):
    """e2e_harness.wait_until with a fixed description."""
    return _e2e_wait_until(pred, timeout, lambda: f"still waiting for {what}", interval)


# -- a small tmpfs ---------------------------------------------------------------------------
class Tmpfs:
    """A tmpfs of `size` mounted on a fresh dir under /tmp (world-traversable, so that the
    server's dropped children reach it)."""

    def __init__(self, size):
        import tempfile
        self.dir = Path(tempfile.mkdtemp(prefix="tern-tmpfs-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                            str(self.dir)], capture_output=True, text=True)
        if r.returncode != 0:
            os.rmdir(self.dir)
            raise OSError(f"mount tmpfs: {r.stderr.strip()}")
        self.mounted = True

    def free(self):
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0, name="filler"):
        """Write a root-owned filler file until only `leave` bytes are free; its path."""
        p = self.dir / name
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = b"\0" * 65536
            while True:
                want = self.free() - leave
                if want <= 0:
                    break
                try:
                    os.write(fd, chunk[:min(len(chunk), want)])
                except OSError:
                    break
            os.fsync(fd)
        finally:
            os.close(fd)
        return p

    def unmount(self):
        if not self.mounted:
            return
        r = subprocess.run(["umount", str(self.dir)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(self.dir)], capture_output=True)
        self.mounted = False
        try:
            os.rmdir(self.dir)
        except OSError:
            pass
