"""A tiny SMTP server on 127.0.0.1 standing in for a remote MX: it keeps (sender, recipients,
data) of every message, dot-unstuffed. Tests route a domain to it with [routes].

Recipients: reject-* get 550; with defer_once, once-* get 451 the first time they are seen;
with defer_prefix, defer-* get 451 every time, the reply naming the recipient. A test that
needs another policy subclasses Sink and overrides rcpt_reply. No DSN is offered."""
import re
import socketserver
import threading
import time


class _Handler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        sink = self.server.sink
        self.reply(f"220 {sink.name} ESMTP")
        sender, rcpts = None, []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").strip()
            verb = cmd[:4].upper()
            if verb == "EHLO":
                ehlo = [sink.name] + list(sink.extensions)
                self.wfile.write("".join(f"250-{x}\r\n" for x in ehlo[:-1]).encode()
                                 + f"250 {ehlo[-1]}\r\n".encode())
            elif verb == "HELO":
                self.reply(f"250 {sink.name}")
            elif verb == "MAIL":
                sender, rcpts = re.search(r"<([^>]*)>", cmd).group(1), []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                addr = re.search(r"<([^>]*)>", cmd).group(1)
                with sink.lock:
                    seen = sink.rcpt_seen.get(addr, 0)
                    sink.rcpt_seen[addr] = seen + 1
                refusal = sink.rcpt_reply(addr, seen)
                if refusal:
                    self.reply(refusal)
                else:
                    rcpts.append(addr)
                    self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:   # RFC 2920 3.1: a pipelined DATA after no accepted RCPT
                    self.reply("554 5.5.1 No valid recipients")
                    continue
                self.reply("354 go ahead")
                data = b""
                while True:
                    chunk = self.rfile.readline()
                    if not chunk or chunk == b".\r\n":
                        break
                    data += chunk[1:] if chunk.startswith(b".") else chunk
                with sink.lock:
                    sink.messages.append((sender, list(rcpts), data))
                self.reply(sink.kept_reply)
            elif verb == "RSET":
                sender, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            else:
                self.reply("250 2.0.0 Ok")


class Sink:
    """SMTP on 127.0.0.1:port; messages is a list of (sender, rcpts, data) under lock."""

    def __init__(self, name="sink.relay.test", extensions=("8BITMIME", "PIPELINING"),
                 kept_reply="250 2.0.0 Ok: kept", reject_text="no such user",
                 defer_once=False, defer_prefix=False):
        self.name = name
        self.extensions = extensions
        self.kept_reply = kept_reply
        self.reject_text = reject_text
        self.defer_once = defer_once
        self.defer_prefix = defer_prefix
        self.lock = threading.Lock()
        self.messages = []
        self.rcpt_seen = {}     # address -> RCPTs seen before this one
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def rcpt_reply(self, addr, seen):
        """The refusal for RCPT TO:<addr> (seen: how many times it came before), or None."""
        if addr.startswith("reject-"):
            return f"550 5.1.1 <{addr}>: {self.reject_text}"
        if self.defer_once and addr.startswith("once-") and seen == 0:
            return "451 4.3.0 sink busy, try again later please"
        if self.defer_prefix and addr.startswith("defer-"):
            return f"451 4.2.0 <{addr}>: mailbox busy, peer says {addr[6:]}"
        return None

    def wait(self, needle, timeout=60, sender=None):
        """The first message holding needle (str or bytes; and from sender, when given)."""
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if needle in m[2] and (sender is None or m[0] == sender):
                        return m
            time.sleep(0.1)  # poll interval
        raise AssertionError(f"the sink never got a message with {needle!r}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def relay_peer():
    """The next hop of test_smtp_cleanup and test_spf_inbound: peer.relay.test with SMTPUTF8,
    no DSN; reject-* get 550, defer-* 451 naming the recipient."""
    return Sink(name="peer.relay.test", extensions=("8BITMIME", "SMTPUTF8", "PIPELINING"),
                reject_text="no such user here (peer)", defer_prefix=True)
