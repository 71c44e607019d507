"""Helpers for the DKIM/ARC tests: a private dnsmasq serving TXT records (on dnszone's
runner), key records from `tern dkim list`, keys for python3-dkim. The SMTP sink is
smtp_sink.py."""
import base64
import re
import subprocess
from pathlib import Path

import dnszone


def txt_line(name, text):
    """A dnsmasq txt-record line, the text cut into 255-byte strings."""
    parts = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return f"txt-record={name}," + ",".join(f'"{p}"' for p in parts)


class Dnsmasq(dnszone.Dnsmasq):
    """dnsmasq serving TXT records {name: text} on addr:port (dnszone.Dnsmasq)."""

    def __init__(self, base_dir, records, addr="127.0.0.1", port=None):
        super().__init__(base_dir, [txt_line(n, t) for n, t in dict(records).items()],
                         addr=addr, port=port, local=("test", "com", "net"))


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
