"""No credential ever reaches the log, even with debug = yes (which logs every reply and
unknown commands): SASL exchanges completed, aborted and failed, and the line a client
sends after aborting one (a password sent as a line of its own), on SMTP (AUTH PLAIN and
LOGIN), POP3 (USER/PASS, AUTH PLAIN and LOGIN) and IMAP (LOGIN with quoted strings and
literals, AUTHENTICATE PLAIN and LOGIN).

The whole log is searched for the passwords, their base64 forms and the base64 of the
PLAIN messages, and for every 12-character piece of those (a logger that cuts lines short
would leak a prefix)."""
import base64
import socket
import time

import tern_harness as th
from imap_raw import RawIMAP

BOB = "bob@example.test"


def b64(s):
    return base64.b64encode(s.encode()).decode()


def plain(user, pw):
    return b64(f"\0{user}\0{pw}")


class Lines:
    """A line-oriented client for SMTP and POP3 (replies are read to their last line)."""

    def __init__(self, port, smtp):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.smtp = smtp
        self.buf = b""
        self.reply()

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def reply(self):
        line = self.line()
        while self.smtp and len(line) > 3 and line[3] == "-":
            line = self.line()
        return line

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


def secrets_of(user, pws):
    out = []
    for pw in pws:
        out += [pw, b64(pw), plain(user, pw), b64(f"{user}\0{user}\0{pw}")]
    return out


def pieces(s, n=12):
    return {s[i:i + n] for i in range(0, max(1, len(s) - n + 1))}


def smtp_exchanges(inst, good, bad):
    c = Lines(inst.ports["submission"], smtp=True)
    try:
        assert c.cmd("EHLO client.example.net").startswith("250")
        assert c.cmd("AUTH PLAIN " + plain(BOB, bad)).startswith("535")
        # aborted PLAIN, then the credentials as a line of their own
        assert c.cmd("AUTH PLAIN").startswith("334")
        assert c.cmd("*").startswith("501")
        assert c.cmd(plain(BOB, good)).startswith("500")
        # aborted LOGIN after the user name; then the password line
        assert c.cmd("AUTH LOGIN").startswith("334")
        assert c.cmd(b64(BOB)).startswith("334")
        assert c.cmd("*").startswith("501")
        assert c.cmd(b64(good)).startswith("500")
        # wrong, then right, with LOGIN
        assert c.cmd("AUTH LOGIN " + b64(BOB)).startswith("334")
        assert c.cmd(b64(bad)).startswith("535")
        assert c.cmd("AUTH PLAIN").startswith("334")
        assert c.cmd(plain(BOB, good)).startswith("235")
        assert c.cmd("QUIT").startswith("221")
    finally:
        c.close()


def pop3_exchanges(inst, good, bad):
    c = Lines(inst.ports["pop3"], smtp=False)
    try:
        assert c.cmd(f"USER {BOB}").startswith("+OK")
        assert c.cmd(f"PASS {bad}").startswith("-ERR")
        assert c.cmd("AUTH PLAIN").startswith("+")
        assert c.cmd("*").startswith("-ERR")
        assert c.cmd(plain(BOB, good)).startswith("-ERR")
        assert c.cmd("AUTH LOGIN").startswith("+")
        assert c.cmd(b64(BOB)).startswith("+")
        assert c.cmd("*").startswith("-ERR")
        c.cmd(b64(good))
    finally:
        c.close()
    c = Lines(inst.ports["pop3"], smtp=False)
    try:
        assert c.cmd("AUTH PLAIN " + plain(BOB, bad)).startswith("-ERR")
        assert c.cmd("AUTH LOGIN").startswith("+")
        assert c.cmd(b64(BOB)).startswith("+")
        assert c.cmd(b64(good)).startswith("+OK")
        assert c.cmd("QUIT").startswith("+OK")
    finally:
        c.close()
    c = Lines(inst.ports["pop3"], smtp=False)
    try:
        assert c.cmd(f"USER {BOB}").startswith("+OK")
        assert c.cmd(f"PASS {good}").startswith("+OK")
        assert c.cmd("QUIT").startswith("+OK")
    finally:
        c.close()


def imap_exchanges(inst, good, bad):
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        assert b" NO " in c.cmd(f'LOGIN "{BOB}" "{bad}"')[1]
        # a literal password
        tag = c.tag()
        c.send(f'{tag} LOGIN "{BOB}" {{{len(bad)}}}\r\n')
        assert c.readline().startswith(b"+")
        c.send(bad + "\r\n")
        assert b" NO " in c.read_response(tag)[1]
        # aborted AUTHENTICATE, then the credentials as a line of their own
        tag = c.tag()
        c.send(f"{tag} AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+")
        c.send("*\r\n")
        assert b" BAD " in c.read_response(tag)[1]
        c.send(plain(BOB, good) + "\r\n")
        assert b"BAD" in c.readline()
        tag = c.tag()
        c.send(f"{tag} AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64(BOB) + "\r\n")
        assert c.readline().startswith(b"+")
        c.send("*\r\n")
        assert b" BAD " in c.read_response(tag)[1]
        c.send(b64(good) + "\r\n")
        assert b"BAD" in c.readline()
    finally:
        c.close()
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        assert b" NO " in c.cmd("AUTHENTICATE PLAIN " + plain(BOB, bad))[1]
        tag = c.tag()
        c.send(f'{tag} LOGIN "{BOB}" {{{len(good)}+}}\r\n{good}\r\n')
        assert b" OK " in c.read_response(tag)[1]
        c.cmd("LOGOUT")
    finally:
        c.close()
    c = RawIMAP(inst.ports["imap"], timeout=30)
    try:
        tag = c.tag()
        c.send(f"{tag} AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64(BOB) + "\r\n")
        assert c.readline().startswith(b"+")
        c.send(b64(good) + "\r\n")
        assert b" OK " in c.read_response(tag)[1]
        c.cmd("LOGOUT")
    finally:
        c.close()


def test_no_credentials_in_the_debug_log(tern_factory):
    tok = th.token()
    good, bad = f"Right-{tok}-pw", f"Wrong-{tok}-pw"
    inst = tern_factory(users={BOB: good, "alice@example.test": th.USERS["alice@example.test"]},
                        settings={"debug": "yes", "allow_plaintext_auth_loopback": "yes",
                                  "login_free_failures": "100",
                                  "login_free_failures_ip": "100",
                                  "login_free_failures_account": "100",
                                  "smtp_max_auth_failures": "10",
                                  "pop3_max_auth_failures": "10"})
    smtp_exchanges(inst, good, bad)
    pop3_exchanges(inst, good, bad)
    imap_exchanges(inst, good, bad)
    inst.flush()    # a marker delivered: everything before it has been logged
    log = inst.log_text()
    assert "unknown command" in log or "> 500" in log    # debug was on
    leaks = [p for s in secrets_of(BOB, [good, bad]) for p in pieces(s) if p in log]
    assert not leaks, leaks
