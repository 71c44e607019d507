#!/usr/bin/env python3
"""bench/pop3_client.py - the load generator of bench/pop3.sh (Python standard library only).

  pop3_client.py retr --port P --user U --password W --mode one|pipe [--batch 50]
      Log in (USER/PASS), LIST, then RETR every message once, in order:
        one   send "RETR n", read the whole reply, then the next command;
        pipe  write --batch RETR commands in one send, then read their replies, next batch.
      Every reply must be +OK and carry exactly as many octets (after undoing the
      dot-stuffing) as LIST announced for that message; anything else is a failure.
      Then QUIT (nothing is deleted). Prints one line of JSON:
        {"messages": N, "octets": B, "seconds": S, "login_seconds": L}
      where seconds covers the RETRs only (from the first command written to the last reply
      read), login_seconds the greeting, USER/PASS and LIST, and client_cpu the CPU time this
      client spent during the RETRs (close to seconds: the client, not the server, was the
      limit).

  pop3_client.py logins --port P --users-file F --password W
      For each line (user name) of F in turn: log in, STAT, QUIT; one session at a time.

  pop3_client.py idle --port P --users-file F --password W
      Open one connection per line (user name) of F, log each in and check STAT; print
      "READY <n>" and wait, holding the sessions open and idle, until standard input has a
      line or closes; then QUIT them all and print "DONE".

Exit status 0 on success; 1 with a message on stderr on any protocol error, short or long
message, unexpected reply, timeout or closed connection.
"""

import argparse
import json
import socket
import sys
import time

TERM = b"\r\n.\r\n"


class Pop3Error(Exception):
    pass


class Conn:
    """A POP3 connection with its own receive buffer (no per-line Python overhead)."""

    def __init__(self, host, port, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _compact(self):
        """Drop what was consumed; only between replies (it moves every index)."""
        if self.pos > (1 << 20):
            del self.buf[: self.pos]
            self.pos = 0

    def _fill(self):
        try:
            data = self.sock.recv(1 << 18)
        except socket.timeout:
            raise Pop3Error("timed out waiting for the server") from None
        if not data:
            raise Pop3Error("connection closed by the server")
        self.buf += data

    def line(self):
        """One CRLF-terminated line, without the CRLF."""
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                ln = bytes(self.buf[self.pos : i])
                self.pos = i + 2
                return ln
            self._fill()

    def status(self, what):
        self._compact()
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise Pop3Error("%s: %r" % (what, ln[:200]))
        return ln

    def multiline_octets(self):
        """The body of a multi-line reply whose status line was just read: returns the octet
        count after undoing byte-stuffing (RFC 1939 section 3), consuming the terminator."""
        start = self.pos
        scan = start
        while True:
            if self.buf[start : start + 3] == b".\r\n":	# empty body
                self.pos = start + 3
                return 0
            if len(self.buf) - start >= 3:
                end = self.buf.find(TERM, max(start, scan))
                if end >= 0:
                    break
                scan = max(start, len(self.buf) - 4)
            self._fill()
        stop = end + 2	# the body keeps the CRLF of its last line
        stuffed = self.buf.count(b"\r\n..", start, stop)
        if self.buf[start : start + 2] == b"..":
            stuffed += 1
        self.pos = end + 5
        return stop - start - stuffed

    def multiline_lines(self):
        """The lines of a multi-line reply (LIST, UIDL), un-stuffed."""
        out = []
        while True:
            ln = self.line()
            if ln == b".":
                return out
            out.append(ln[1:] if ln.startswith(b"..") else ln)


def login(c, user, password):
    c.status("greeting")
    c.send(b"USER %s\r\n" % user.encode())
    c.status("USER")
    c.send(b"PASS %s\r\n" % password.encode())
    c.status("PASS")


def cmd_retr(a):
    t0 = time.perf_counter()
    c = Conn(a.host, a.port, a.timeout)
    login(c, a.user, a.password)
    c.send(b"LIST\r\n")
    c.status("LIST")
    sizes = []
    for ln in c.multiline_lines():
        parts = ln.split()
        if len(parts) < 2:
            raise Pop3Error("LIST: bad line %r" % ln[:200])
        num, size = int(parts[0]), int(parts[1])
        if num != len(sizes) + 1:
            raise Pop3Error("LIST: message %d out of order (expected %d)" % (num, len(sizes) + 1))
        sizes.append(size)
    if a.expect is not None and len(sizes) != a.expect:
        raise Pop3Error("LIST: %d messages, expected %d" % (len(sizes), a.expect))
    if not sizes:
        raise Pop3Error("LIST: the maildrop is empty")
    t1 = time.perf_counter()
    c1 = time.process_time()
    n = len(sizes)
    octets = 0

    def check(i):
        nonlocal octets
        c.status("RETR %d" % (i + 1))
        got = c.multiline_octets()
        if got != sizes[i]:
            raise Pop3Error("RETR %d: %d octets, LIST said %d" % (i + 1, got, sizes[i]))
        octets += got

    if a.mode == "one":
        for i in range(n):
            c.send(b"RETR %d\r\n" % (i + 1))
            check(i)
    else:
        for b in range(0, n, a.batch):
            idx = range(b, min(b + a.batch, n))
            c.send(b"".join(b"RETR %d\r\n" % (i + 1) for i in idx))
            for i in idx:
                check(i)
    t2 = time.perf_counter()
    c2 = time.process_time()
    c.send(b"QUIT\r\n")
    c.status("QUIT")
    c.close()
    print(json.dumps({"messages": n, "octets": octets, "seconds": round(t2 - t1, 6),
                      "login_seconds": round(t1 - t0, 6), "client_cpu": round(c2 - c1, 6)}))


def read_users(path):
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip()]


def cmd_logins(a):
    for u in read_users(a.users_file):
        c = Conn(a.host, a.port, a.timeout)
        try:
            login(c, u, a.password)
            c.send(b"STAT\r\n")
            c.status("STAT (%s)" % u)
            c.send(b"QUIT\r\n")
            c.status("QUIT (%s)" % u)
        finally:
            c.close()


def cmd_idle(a):
    users = read_users(a.users_file)
    conns = []
    try:
        for u in users:
            c = Conn(a.host, a.port, a.timeout)
            conns.append(c)
            login(c, u, a.password)
            c.send(b"STAT\r\n")
            c.status("STAT (%s)" % u)
        print("READY %d" % len(conns), flush=True)
        sys.stdin.readline()
        for c in conns:
            c.send(b"QUIT\r\n")
        for c in conns:
            c.status("QUIT")
    finally:
        for c in conns:
            c.close()
    print("DONE", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("retr", "idle", "logins"):
        s = sub.add_parser(name)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--password", required=True)
        s.add_argument("--timeout", type=float, default=30.0, help="seconds per socket read")
        if name == "retr":
            s.add_argument("--user", required=True)
            s.add_argument("--mode", choices=("one", "pipe"), required=True)
            s.add_argument("--batch", type=int, default=50)
            s.add_argument("--expect", type=int, default=None, help="messages LIST must show")
        else:
            s.add_argument("--users-file", required=True)
    a = p.parse_args()
    try:
        {"retr": cmd_retr, "idle": cmd_idle, "logins": cmd_logins}[a.cmd](a)
    except (Pop3Error, OSError, ValueError) as e:
        print("pop3_client: %s: %s" % (a.cmd, e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
