"""A private dnsmasq on 127.0.0.1:PORT serving a `.test` zone given as dnsmasq option lines
(txt-record=, host-record=, mx-host=, ptr-record=). Names under .test that the zone does not
define are NXDOMAIN (local=/test/); nothing is forwarded anywhere. Ready when it answers."""
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import tern_harness as th


def find_dnsmasq():
    for p in ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/usr/local/sbin/dnsmasq"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("dnsmasq")


def dns_answers(addr, port, name, timeout=0.2):
    """True when one UDP query for name (A) gets any reply from addr:port."""
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (addr, port))
            return s.recv(4096)[:2] == q[:2]
        except OSError:
            return False


class Dnsmasq:
    """The one dnsmasq runner of the tests (integration and e2e). zone: dnsmasq option lines;
    local: the domains answered here alone (NXDOMAIN for what the zone lacks); port: a fixed
    one (e.g. 53 on a 127.x address for tools that read /etc/resolv.conf), else a free one,
    tried again when another process takes it first. start() returns once it answers."""

    def __init__(self, base_dir, zone, addr="127.0.0.1", port=None,
                 local=("test", "127.in-addr.arpa", "ip6.arpa")):
        self.base = Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.zone = list(zone)
        self.addr = addr
        self.fixed_port = port
        self.local = tuple(local)
        self.proc = None
        self.port = None
        self.conf = self.base / "dnsmasq.conf"
        self.log_path = self.base / "dnsmasq.log"

    def conf_lines(self):
        return (["no-resolv", "no-hosts"] + [f"local=/{d}/" for d in self.local]
                + self.zone)

    def pick_port(self):
        return th.free_udp_port()

    def start(self, timeout=10, port=None):
        binary = find_dnsmasq()
        if binary is None:
            raise th.TernError("dnsmasq is not installed (scripts/deps.sh installs it)")
        self.conf.write_text("\n".join(self.conf_lines()) + "\n")
        port = port or self.fixed_port
        last = ""
        for _ in range(1 if port else 5):  # a free port taken before dnsmasq binds it
            self.port = port or self.pick_port()
            argv = [binary, "--keep-in-foreground", f"--conf-file={self.conf}",
                    f"--port={self.port}", f"--listen-address={self.addr}", "--bind-interfaces",
                    "--pid-file=", f"--log-facility={self.log_path}", "--log-queries"]
            if os.geteuid() == 0:
                argv.append("--user=root")
            with open(self.base / "dnsmasq.stderr", "ab") as errf:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf,
                                             stderr=errf, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if dns_answers(self.addr, self.port, "probe.test"):  # waits up to 0.2 s
                    return self
            last = th.tail(self.base / "dnsmasq.stderr", 20) + "\n" + th.tail(self.log_path, 20)
            self.stop()
        raise th.TernError(f"dnsmasq did not answer; its output:\n{last}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self, n=40):
        return th.tail(self.log_path, n)


def use_for_pyspf(port):
    """Point pyspf (through dnspython's default resolver) at 127.0.0.1:port."""
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = 5
    dns.resolver.default_resolver = r
