"""e2e_harness - several tern hosts, a DNS server and fake SMTP peers on loopback.

Built on tests/integration/tern_harness.py (TernInstance, run_tern, RawSMTP, dsn_check):

- Dnsmasq: a private dnsmasq on 127.0.0.1:PORT serving the `.test` zone of the suite (MX and
  host records; `local=/test/` makes every other name under .test NXDOMAIN). Ready when it
  answers a raw UDP query, never after a sleep.
- MailHost: a `tern serve` listening on its own loopback address (127.0.0.2, .3, ...) with
  smtp on a port P shared by every host and fake peer, so `[queue] mx_port = P` reaches any
  of them; its config points `[dns] servers` at the dnsmasq.
- FakeNet / FakeSMTP: asyncio SMTP peers in a background thread (a sink that counts messages,
  and servers that misbehave on purpose), recording a transcript for failure reports.
- Queue helpers: parse `tern queue list`, wait for a queue state with a deadline, and fail
  with the queue listing and log tail in the message.
"""
import asyncio
import email
import email.policy
import email.utils
import os
import poplib
import re
import smtplib
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_INTEGRATION = _HERE.parent / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

import dnszone  # noqa: E402
import tern_harness as th  # noqa: E402
from tern_harness import (TernError, TernInstance, RawSMTP, run_tern, tail, tls_context,  # noqa: E402,F401
                          token)
import dsn_check  # noqa: E402,F401

IO_TIMEOUT = th.IO_TIMEOUT
DELIVERY_TIMEOUT = float(os.environ.get("TERN_E2E_DELIVERY_TIMEOUT", "30"))

# Loopback addresses of the suite (Linux routes all of 127/8 to lo).
ADDR = {
    "alice": "127.0.0.2",      # alice.test: the sending host
    "bob": "127.0.0.3",        # bob.test
    "carol": "127.0.0.4",      # carol.test and two.test (second MX of two.test)
    "dead": "127.0.0.6",       # first MX of two.test and only MX of dead.test: nothing listens
    "sink": "127.0.0.7",       # sink.test: asyncio sink for the SIGKILL test
    "later": "127.0.0.8",      # later.test: a host started late (deferral test)
    "patient": "127.0.0.9",    # patient.test: a sender with long retry delays
    "garbage": "127.0.0.10",   # garbage.test: fake peer answering garbage
    "hangup": "127.0.0.11",    # hangup.test: fake peer closing at once
    "rcptclose": "127.0.0.12", # rcptclose.test: closes after RCPT
    "data451": "127.0.0.13",   # data451.test: 451 to DATA
    "data550": "127.0.0.14",   # data550.test: 550 to DATA
    "multiline": "127.0.0.15", # multiline.test: multi-line replies everywhere
    "crash": "127.0.0.16",     # crash.test: the sender killed with SIGKILL
    "expiry": "127.0.0.17",    # expiry.test: a sender with a short max_queue_lifetime
    "warner": "127.0.0.18",    # warner.test: a sender with delay_warning_time set
    "seven": "127.0.0.19",     # seven.test: fake peer without 8BITMIME
    "origin": "127.0.0.20",    # origin.test: a DKIM-signing sender (test_trusted_mail)
    "fwd": "127.0.0.21",       # fwd.test: a receiver that forwards (SRS, ARC)
    "final": "127.0.0.22",     # final.test: where the forwarded copy ends
}

ZONE = [
    "no-resolv",
    "no-hosts",
    "local=/test/",
    "mx-host=alice.test,mx.alice.test,10",
    f"host-record=mx.alice.test,{ADDR['alice']}",
    "mx-host=bob.test,mx.bob.test,10",
    f"host-record=mx.bob.test,{ADDR['bob']}",
    "mx-host=carol.test,mx.carol.test,10",
    f"host-record=mx.carol.test,{ADDR['carol']}",
    # two.test: the preferred MX (10) is down, the second (20) is carol's host.
    "mx-host=two.test,mx1.two.test,10",
    "mx-host=two.test,mx2.two.test,20",
    f"host-record=mx1.two.test,{ADDR['dead']}",
    f"host-record=mx2.two.test,{ADDR['carol']}",
    "mx-host=dead.test,mx.dead.test,10",
    f"host-record=mx.dead.test,{ADDR['dead']}",
    "mx-host=nullmx.test,.,0",
    # nowhere.test: no record at all -> NXDOMAIN (local=/test/)
]
for _name in ("sink", "later", "patient", "garbage", "hangup", "rcptclose", "data451",
              "data550", "multiline", "crash", "expiry", "warner", "seven", "origin", "fwd",
              "final"):
    ZONE.append(f"mx-host={_name}.test,mx.{_name}.test,10")
    ZONE.append(f"host-record=mx.{_name}.test,{ADDR[_name]}")

PASSWORDS = {}  # addr -> password, filled by MailHost.add_users


def password_for(addr):
    return PASSWORDS.setdefault(addr, f"pw-{addr.split('@')[0]}-Secret-9")


# ---- ports ------------------------------------------------------------------------------------

def port_free_on(addr, port, kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def free_port_on(addr):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def shared_port(addrs):
    """A TCP port free right now on every address in addrs (the suite's SMTP port P)."""
    for _ in range(200):
        p = free_port_on("127.0.0.1")
        if all(port_free_on(a, p) for a in addrs):
            return p
    raise RuntimeError(f"no port free on all of {addrs}")


def free_udp_tcp_port():
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            p = u.getsockname()[1]
            if port_free_on("127.0.0.1", p):
                return p
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


# ---- waiting --------------------------------------------------------------------------------

def wait_until(pred, timeout, describe, interval=0.1):
    """Poll pred() until it returns a true value (returned) or timeout; then raise an
    AssertionError with describe() (a string explaining what was expected and what is)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s: {describe()}")
        time.sleep(interval)


# ---- dnsmasq --------------------------------------------------------------------------------

class Dnsmasq(dnszone.Dnsmasq):
    """The test network's DNS (dnszone.Dnsmasq): ZONE on a port free for UDP and TCP."""

    def __init__(self, base_dir, zone=ZONE):
        super().__init__(base_dir, zone, local=())   # ZONE says no-resolv, local=/test/
        self.extra = []

    def conf_lines(self):
        return self.zone + self.extra

    def pick_port(self):
        return free_udp_tcp_port()

    def set_extra(self, lines):
        """Serve the zone plus `lines` (dnsmasq option lines: txt-record=..., etc.) from now
        on. dnsmasq reads its zone only when it starts, so it is restarted on the same port
        (the hosts' `[dns] servers` stays right); returns once it answers again."""
        self.extra = list(lines)
        port = self.port
        self.stop()
        self.start(port=port)


# ---- tern hosts -----------------------------------------------------------------------------

QUEUE_DEFAULTS = {"retry_min": "1", "retry_max": "2", "max_queue_lifetime": "30"}


class MailHost(TernInstance):
    """A tern host on its own loopback address, serving `domains`, resolving with `dns`."""

    def __init__(self, base_dir, name, addr, domains, smtp_port, dns_port, queue=None,
                 roles=("smtp", "submission", "pop3"), workers=1, **kw):
        self.name = name
        self.addr = addr
        self.domains = list(domains)
        self.smtp_port = smtp_port
        self.queue_settings = dict(QUEUE_DEFAULTS)
        if queue:
            self.queue_settings.update(queue)
        self.roles = roles
        self.hostname = f"mx.{self.domains[0]}"
        settings = {"hostname": self.hostname, "domains": " ".join(self.domains)}
        settings.update(kw.pop("settings", {}) or {})
        super().__init__(base_dir, workers=workers, settings=settings, **kw)
        # Replace the 127.0.0.1 ports picked by TernInstance with ours.
        self.ports = {}
        for role in roles:
            self.ports[role] = smtp_port if role == "smtp" else free_port_on(addr)
        self.dns_port = dns_port
        self.mx_port = smtp_port
        self.write_config()

    def config_text(self):
        lines = [f"{k} = {v}" for k, v in self.settings.items()]
        lines.append(self.extra_config)
        lines.append("[listen]")
        for role, port in getattr(self, "ports", {}).items():
            lines.append(f"{role} = {self.addr}:{port}")
        lines.append("[tls]")
        lines.append("[dns]")
        lines.append(f"servers = 127.0.0.1:{getattr(self, 'dns_port', 53)}")
        lines.append("[queue]")
        lines.append(f"mx_port = {getattr(self, 'mx_port', 25)}")
        for k, v in self.queue_settings.items():
            lines.append(f"{k} = {v}")
        return "\n".join(lines) + "\n"

    def __repr__(self):
        return f"<MailHost {self.name} {self.addr} {self.domains}>"

    # -- users ---------------------------------------------------------------------------
    def add_users(self, *addrs):
        for a in addrs:
            self.add_user(a, password_for(a))

    # -- network clients on our address -----------------------------------------------------
    def _probe(self, role, port):
        try:
            sock = socket.create_connection((self.addr, port), timeout=2)
        except OSError:
            return False
        try:
            if role in ("submissions", "pop3s", "imaps"):
                sock = tls_context().wrap_socket(sock, server_hostname=self.hostname)
            sock.settimeout(5)
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
            try:
                sock.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def smtp(self, role="smtp"):
        return smtplib.SMTP(self.addr, self.ports[role], local_hostname="client.e2e.test",
                            timeout=IO_TIMEOUT)

    def submission_login(self, user, password=None):
        s = self.smtp("submission")
        s.ehlo()
        s.starttls(context=tls_context())
        s.ehlo()
        s.login(user, password if password is not None else password_for(user))
        return s

    def submit(self, user, rcpts, msg, sender=None, conn=None):
        """Submit msg on 587 (STARTTLS + AUTH as user) from sender (default user; "" for
        the null sender) to rcpts. Returns the queue id from "250 ... queued as QID"."""
        own = conn is None
        s = conn or self.submission_login(user)
        try:
            code, resp = s.mail(user if sender is None else sender)
            assert code == 250, f"MAIL FROM refused by {self.name}: {code} {resp!r}"
            for r in rcpts:
                code, resp = s.rcpt(r)
                assert code == 250, f"RCPT TO:<{r}> refused by {self.name}: {code} {resp!r}"
            code, resp = s.data(msg)
            assert code == 250, f"DATA refused by {self.name}: {code} {resp!r}"
        finally:
            if own:
                try:
                    s.quit()
                except (smtplib.SMTPException, OSError):
                    pass
        m = re.search(rb"queued as (\S+)", resp)
        assert m, f"no queue id in the DATA reply of {self.name}: {resp!r}"
        return m.group(1).decode()

    def pop3(self, user, password=None):
        p = poplib.POP3(self.addr, self.ports["pop3"], timeout=IO_TIMEOUT)
        p.stls(context=tls_context())
        p.user(user)
        p.pass_(password if password is not None else password_for(user))
        return p

    def pop3_messages(self, user):
        """Every message in user's mailbox over POP3 (STLS, USER/PASS), nothing deleted."""
        p = self.pop3(user)
        try:
            count, _ = p.stat()
            out = []
            for n in range(1, count + 1):
                _, lines, _ = p.retr(n)
                out.append(b"\r\n".join(lines) + b"\r\n")
            return out
        finally:
            try:
                p.quit()
            except (poplib.error_proto, OSError):
                pass

    # -- logs ------------------------------------------------------------------------------
    def log_mark(self):
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, mark):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def delivery_lines(self, addr, mark=0):
        """Runner lines `to=<addr> relay=... status=...` logged since mark."""
        needle = f"to=<{addr}>"
        return [ln for ln in self.log_since(mark).splitlines()
                if needle in ln and "status=" in ln and "relay=local" not in ln]

    # -- queue -----------------------------------------------------------------------------
    def queue(self):
        return parse_queue(self.queue_list())

    def queue_cmd(self, *args):
        return self.cli("queue", *args)

    def spool_queue_files(self):
        d = self.data_dir / "spool" / "queue"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir())


def parse_queue(text):
    """`tern queue list` output -> {qid: {"line": str, "rcpts": {addr: {...}}}}.
    A recipient entry has state, attempts (int) and last_error (str or None), plus "line"."""
    msgs = {}
    cur = None
    for line in text.splitlines():
        if not line.strip() or line.strip() == "queue is empty":
            continue
        if not line[0].isspace():
            qid = line.split()[0]
            cur = msgs[qid] = {"line": line, "rcpts": {}}
            continue
        m = re.match(r"\s+<([^>]*)>(.*)$", line)
        if not m or cur is None:
            continue
        rest = m.group(2)
        st = re.search(r"\bstate=(\S+)", rest)
        at = re.search(r"\battempts=(\d+)", rest)
        le = re.search(r"\blast_error=(.*)$", rest)
        cur["rcpts"][m.group(1)] = {
            "state": st.group(1) if st else None,
            "attempts": int(at.group(1)) if at else None,
            "last_error": le.group(1).strip() if le else None,
            "line": line,
        }
    return msgs


def explain(host, what, extra="", log_lines=40):
    """A failure message: what was expected, the host's queue and log tail."""
    try:
        q = host.queue_list()
    except Exception as e:  # noqa: BLE001 - show whatever we can
        q = f"(queue list failed: {e})"
    return (f"{what}\n--- `tern queue list` on {host.name}:\n{q.rstrip()}\n"
            f"--- log tail of {host.name} ({host.log_path}):\n{host.log_tail(log_lines)}"
            + (f"\n{extra}" if extra else ""))


def wait_queue(host, pred, timeout, what):
    """Poll host's queue until pred(parsed_queue) is true; return the parsed queue."""
    box = {}

    def check():
        box["q"] = host.queue()
        return pred(box["q"])

    wait_until(check, timeout, lambda: explain(host, what), interval=0.2)
    return box["q"]


def wait_gone(host, qid, timeout=DELIVERY_TIMEOUT, what=None):
    return wait_queue(host, lambda q: qid not in q, timeout,
                      what or f"expected message {qid} to leave the queue of {host.name}")


# ---- messages and mailboxes -----------------------------------------------------------------

def make_message(tok, sender, to, subject=None, body=None):
    subject = subject or f"e2e {tok}"
    if body is None:
        body = f"Hello, this is message {tok}.\r\nSecond line.\r\n.dot line\r\n"
    to_hdr = to if isinstance(to, str) else ", ".join(to)
    # a complete header (Date and Message-ID): submission adds what is missing, and the
    # tests compare the delivered bytes with these
    date = email.utils.formatdate(localtime=False, usegmt=False)
    return (f"From: <{sender}>\r\nTo: {to_hdr}\r\nSubject: {subject}\r\n"
            f"Date: {date}\r\nMessage-ID: <{tok}@client.e2e.test>\r\n\r\n{body}").encode()


def wait_mail(host, addr, needle, timeout=DELIVERY_TIMEOUT, count=1, sender_host=None):
    """Poll addr's Maildir on host until `count` files contain needle; return them."""
    if isinstance(needle, str):
        needle = needle.encode()

    def describe():
        files = host.mailbox_files(addr, ("tmp", "new", "cur"))
        s = (f"expected {count} message(s) containing {needle!r} in {addr}'s Maildir on "
             f"{host.name} ({host.maildir(addr)}); it holds {len(files)} file(s), "
             f"{len(host.find_messages(addr, needle))} matching")
        if sender_host is not None:
            return explain(sender_host, s, extra=f"--- log tail of {host.name}:\n"
                                                 f"{host.log_tail(20)}")
        return s + f"\n--- log tail of {host.name}:\n{host.log_tail(30)}"

    return wait_until(lambda: (lambda f: f if len(f) >= count else None)(
        host.find_messages(addr, needle)), timeout, describe)


def parse_mail(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def dsn_recipients(msg):
    """The per-recipient field groups of a parsed multipart/report message."""
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            groups = part.get_payload()
            return groups[1:]
        if part.get_content_type() == "message/global-delivery-status":
            # RFC 6533: email parses it as one message; its body holds the recipient groups
            body = part.get_payload()[0].get_payload()
            return [email.message_from_string(b, policy=email.policy.default)
                    for b in re.split(r"\r?\n\r?\n", body.strip()) if b.strip()]
    return []


# ---- fake SMTP peers ------------------------------------------------------------------------

class FakeNet:
    """An asyncio loop in a daemon thread hosting FakeSMTP servers."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-smtp",
                                       daemon=True)
        self.thread.start()
        self.servers = []

    def call(self, coro, timeout=15):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, addr, port, mode, **kw):
        srv = FakeSMTP(self, addr, port, mode, **kw)
        self.call(srv._start())
        self.servers.append(srv)
        return srv

    def close(self):
        for srv in list(self.servers):
            srv.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class FakeSMTP:
    """A scripted SMTP server. Modes:
    sink       normal server; sleeps data_delay before the 250 after DATA
    garbage    answers the connection and every line with non-SMTP text
    hangup     closes every connection at once, without a banner
    rcptclose  normal until RCPT, closes the connection at DATA
    data451    451 4.3.0 to DATA
    data550    550 5.7.1 to DATA
    multiline  multi-line replies everywhere; RCPT of reject@... gets a multi-line 550
    seven      a normal sink that does not offer 8BITMIME (the sender must downgrade)
    """

    def __init__(self, net, addr, port, mode, data_delay=0.0, name=None):
        self.net, self.addr, self.port, self.mode = net, addr, port, mode
        self.data_delay = data_delay
        self.name = name or f"fake-{mode}"
        self.hostname = f"mx.{mode}.fake"
        self.messages = []          # (mail_from, [rcpts], data bytes), one per 250 to DATA
        self.connections = 0
        self.in_flight = 0
        self.transcript = []
        self.lock = threading.Lock()
        self.server = None
        self.writers = set()

    def log(self, line):
        with self.lock:
            self.transcript.append(f"{time.strftime('%T')} {line}")
            if len(self.transcript) > 4000:
                del self.transcript[:1000]

    def transcript_tail(self, n=40):
        with self.lock:
            return "\n".join(self.transcript[-n:])

    def count(self, needle):
        if isinstance(needle, str):
            needle = needle.encode()
        with self.lock:
            return sum(1 for m in self.messages if needle in m[2])

    def all_data(self):
        with self.lock:
            return [m[2] for m in self.messages]

    async def _start(self):
        self.server = await asyncio.start_server(self._session, self.addr, self.port,
                                                 reuse_address=True)

    def stop(self):
        if self.server is None:
            return
        try:
            self.net.call(self._stop())
        except Exception:  # noqa: BLE001 - best effort in finalizers
            pass
        if self in self.net.servers:
            self.net.servers.remove(self)

    async def _stop(self):
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()
        self.server = None

    async def _session(self, reader, writer):
        self.connections += 1
        self.writers.add(writer)
        peer = writer.get_extra_info("peername")
        self.log(f"connect from {peer}")
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError,
                asyncio.LimitOverrunError) as e:
            self.log(f"session ended: {e!r}")
        finally:
            self.writers.discard(writer)
            self.log("close")
            writer.close()

    async def _send(self, writer, text):
        for ln in text.split("\r\n")[:-1]:
            self.log(f"S: {ln}")
        writer.write(text.encode())
        await writer.drain()

    async def _readline(self, reader):
        line = await asyncio.wait_for(reader.readline(), 120)
        if line:
            self.log(f"C: {line[:200].decode('latin-1').rstrip()}")
        return line

    async def _converse(self, reader, writer):
        mode = self.mode
        send = lambda text: self._send(writer, text)  # noqa: E731
        if mode == "hangup":
            return
        if mode == "garbage":
            await send("Hello? This is not an SMTP server, just garbage\r\n")
            while await self._readline(reader):
                await send("what?? <garbage>\r\n")
            return
        ml = mode == "multiline"
        if ml:
            await send(f"220-{self.hostname} ESMTP fake\r\n220-second banner line\r\n"
                       f"220 third banner line\r\n")
        else:
            await send(f"220 {self.hostname} ESMTP fake\r\n")
        sender, rcpts = None, []
        while True:
            line = await self._readline(reader)
            if not line:
                return
            cmd = line.decode("latin-1").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                ext = ["SIZE 10485760", "ENHANCEDSTATUSCODES"]
                if mode != "seven":
                    ext.insert(1, "8BITMIME")
                if ml:
                    ext += ["PIPELINING", "X-UNKNOWN-EXTENSION with args", "HELP"]
                lines = [f"{self.hostname} greets you"] + ext
                await send("".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n")
            elif verb == "HELO":
                await send(f"250 {self.hostname}\r\n")
            elif verb == "MAIL":
                m = re.search(r"<([^>]*)>", cmd)
                sender, rcpts = (m.group(1) if m else cmd), []
                await send("250-2.1.0 Sender\r\n250 2.1.0 ok\r\n" if ml else "250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                m = re.search(r"<([^>]*)>", cmd)
                addr = m.group(1) if m else cmd
                if ml and addr.lower().startswith("reject@"):
                    await send("550-5.1.1 The mailbox <reject> does not exist here,\r\n"
                               "550-5.1.1 and this reply spans\r\n"
                               "550 5.1.1 three lines\r\n")
                else:
                    rcpts.append(addr)
                    await send("250-2.1.5 Recipient\r\n250 2.1.5 ok\r\n" if ml
                               else "250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if mode == "rcptclose":
                    self.log("(closing the connection at DATA)")
                    return
                if mode == "data451":
                    await send("451 4.3.0 Fake temporary failure at DATA\r\n")
                    continue
                if mode == "data550":
                    await send("550 5.7.1 Fake permanent refusal at DATA\r\n")
                    continue
                if not rcpts:
                    await send("503 5.5.1 No valid recipients\r\n")
                    continue
                await send("354 End data with <CR><LF>.<CR><LF>\r\n")
                self.in_flight += 1
                try:
                    chunks = []
                    while True:
                        ln = await asyncio.wait_for(reader.readline(), 120)
                        if not ln:
                            self.log("EOF inside DATA")
                            return
                        if ln == b".\r\n":
                            break
                        chunks.append(ln[1:] if ln.startswith(b".") else ln)
                    data = b"".join(chunks)
                    self.log(f"(message of {len(data)} bytes)")
                    if self.data_delay:
                        await asyncio.sleep(self.data_delay)
                    with self.lock:
                        self.messages.append((sender, list(rcpts), data))
                    await send("250-2.0.0 Accepted\r\n250 2.0.0 Ok: queued as FAKE\r\n" if ml
                               else "250 2.0.0 Ok: queued as FAKE\r\n")
                finally:
                    self.in_flight -= 1
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                await send("250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                await send("250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                await send("221 2.0.0 Bye\r\n")
                return
            else:
                await send("502 5.5.2 Command not implemented\r\n")
