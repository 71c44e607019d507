"""Helpers for the DKIM/ARC tests: a private dnsmasq serving TXT records, an SMTP sink that
keeps what it receives, key records from `tern dkim list`, keys for python3-dkim."""
import base64
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import tern_harness as th


def find_dnsmasq():
    for p in ("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("dnsmasq")


def dns_answers(addr, port, name, timeout=0.2):
    """True when a UDP query for name's TXT gets any reply from addr:port."""
    q = struct.pack(">HHHHHH", 0x4343, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", 16, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, (addr, port))
            return s.recv(4096)[:2] == q[:2]
        except OSError:
            return False


def txt_line(name, text):
    """A dnsmasq txt-record line, the text cut into 255-byte strings."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return f"txt-record={name}," + ",".join(f'"{p}"' for p in parts)


class Dnsmasq:
    """dnsmasq serving records {name: text} on addr:port (port 53 on a 127.x address for
    tools that read /etc/resolv.conf, which has no port)."""

    def __init__(self, base_dir, records, addr="127.0.0.1", port=None):
        self.base = Path(base_dir)
        self.base.mkdir(parents=True, exist_ok=True)
        self.records = dict(records)
        self.addr = addr
        self.port = port or th.free_udp_port()
        self.proc = None

    def start(self, timeout=10):
        binary = find_dnsmasq()
        assert binary, "dnsmasq is not installed (scripts/deps.sh installs dnsmasq-base)"
        conf = self.base / "dnsmasq.conf"
        lines = ["no-resolv", "no-hosts", "local=/test/", "local=/com/", "local=/net/"]
        lines += [txt_line(n, t) for n, t in self.records.items()]
        conf.write_text("\n".join(lines) + "\n")
        argv = [binary, "--keep-in-foreground", f"--conf-file={conf}", f"--port={self.port}",
                f"--listen-address={self.addr}", "--bind-interfaces", "--pid-file="]
        if os.geteuid() == 0:
            argv.append("--user=root")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dnsmasq exited with {self.proc.returncode}")
            if dns_answers(self.addr, self.port, "probe.test"):
                return self
            time.sleep(0.05)  # poll interval; readiness is the answer above
        raise AssertionError("dnsmasq did not answer")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None


def records_from_list(text):
    """{"sel._domainkey.dom": "v=DKIM1; ..."} from `tern dkim list` (or generate) output."""
    recs = {}
    for line in text.splitlines():
        m = re.match(r'^(\S+)\. IN TXT (.*)$', line)
        if m:
            recs[m.group(1)] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    return recs


def dnsfunc_for(records):
    """A python3-dkim dnsfunc answering from records (names without the final dot)."""
    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        return records.get(name.rstrip("."), "").encode() or None
    return dnsfunc


def rsa_keypair(tmp):
    """(PEM private key bytes, base64 DER public key) made by openssl."""
    key = Path(tmp) / "rsa.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return key.read_bytes(), base64.b64encode(der).decode(), key


def ed25519_keypair():
    """(base64 seed as python3-dkim wants it, base64 public key), made by PyNaCl."""
    import nacl.signing
    sk = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(sk)), base64.b64encode(bytes(sk.verify_key)).decode()


def tern_verify(inst, message):
    """`tern dkim verify` on message: (exit status, [result lines])."""
    r = inst.cli("dkim", "verify", stdin=message)
    return r.returncode, [ln for ln in r.stdout.splitlines() if ln.startswith("dkim=")]
