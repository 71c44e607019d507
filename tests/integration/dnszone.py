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


def _ask(port, name, timeout=0.2):
    q = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            return s.recv(4096)[:2] == q[:2]
        except OSError:
            return False


class Dnsmasq:
    def __init__(self, base_dir, zone):
        self.base = Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.zone = list(zone)
        self.proc = None
        self.port = None
        self.log_path = self.base / "dnsmasq.log"

    def start(self, timeout=10):
        binary = find_dnsmasq()
        if binary is None:
            raise th.TernError("dnsmasq is not installed (scripts/deps.sh installs it)")
        conf = self.base / "dnsmasq.conf"
        conf.write_text("no-resolv\nno-hosts\nlocal=/test/\nlocal=/127.in-addr.arpa/\n"
                        "local=/ip6.arpa/\n"
                        + "\n".join(self.zone) + "\n")
        for _ in range(5):
            self.port = th.free_udp_port()
            argv = [binary, "--keep-in-foreground", f"--conf-file={conf}", f"--port={self.port}",
                    "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
                    f"--log-facility={self.log_path}", "--log-queries"]
            if os.geteuid() == 0:
                argv.append("--user=root")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ask(self.port, "probe.test"):
                    return self
            self.stop()
        raise th.TernError(f"dnsmasq did not answer: {th.tail(self.log_path, 20)}")

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


def use_for_pyspf(port):
    """Point pyspf (through dnspython's default resolver) at 127.0.0.1:port."""
    import dns.resolver
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = 5
    dns.resolver.default_resolver = r
