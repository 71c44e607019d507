#!/usr/bin/env python3
"""imap_wake - IDLE wake-up latency: one connection idles on INBOX, a second one APPENDs a
small message to the same INBOX; the time from the APPEND's last byte written to the
"* n EXISTS" read on the idling connection, COUNT times. Plain IMAP, LOGIN, standard library.

Prints one line per delivery on stderr with --verbose, and at the end on stdout:
    n COUNT p50_ms A p99_ms B max_ms C
Exit 1 on any NO/BAD, a lost connection, or an EXISTS that does not come within --timeout."""
import argparse
import re
import select
import socket
import sys
import time

MSG = (b"From: wake@example.org\r\nTo: bench1@example.test\r\nSubject: wake-up test\r\n"
       b"Message-ID: <wake-%d@example.org>\r\n\r\nA message for the IDLE wake-up measure.\r\n")


class Conn:
    def __init__(self, port, timeout):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.tag = 0
        self.line()  # greeting

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise RuntimeError("connection closed")
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln.decode("utf-8", "replace")

    def send(self, data):
        self.s.sendall(data)

    def command(self, text, literal=None):
        self.tag += 1
        t = f"w{self.tag}"
        untagged = []
        if literal is None:
            self.send(f"{t} {text}\r\n".encode())
        else:
            self.send(f"{t} {text} {{{len(literal)}}}\r\n".encode())
            ln = self.line()
            if not ln.startswith("+"):
                raise RuntimeError(f"{text}: no continuation: {ln}")
            self.send(literal + b"\r\n")
        while True:
            ln = self.line()
            if ln.startswith(t + " "):
                if not ln[len(t) + 1:].startswith("OK"):
                    raise RuntimeError(f"{text} -> {ln}")
                return untagged
            untagged.append(ln)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    idler = Conn(a.port, a.timeout)
    idler.command(f'LOGIN "{a.user}" "{a.password}"')
    exists = None
    for ln in idler.command("SELECT INBOX"):
        m = re.match(r"\* (\d+) EXISTS", ln)
        if m:
            exists = int(m.group(1))
    if exists is None:
        raise RuntimeError("SELECT gave no EXISTS")
    appender = Conn(a.port, a.timeout)
    appender.command(f'LOGIN "{a.user}" "{a.password}"')

    idler.send(b"i IDLE\r\n")
    ln = idler.line()
    if not ln.startswith("+"):
        raise RuntimeError(f"IDLE refused: {ln}")
    lat = []
    for k in range(a.count):
        msg = MSG % k
        appender.tag += 1
        t = f"w{appender.tag}"
        appender.send(f"{t} APPEND INBOX {{{len(msg)}}}\r\n".encode())
        ln = appender.line()
        if not ln.startswith("+"):
            raise RuntimeError(f"APPEND: no continuation: {ln}")
        appender.send(msg + b"\r\n")
        t0 = time.perf_counter()
        got, replied = False, False
        while not got or not replied:
            # the EXISTS on the idling connection, and the APPEND's own tagged reply
            # (a NO ends the measure at once instead of waiting for an EXISTS in vain)
            ready = [c for c in (idler, appender) if b"\r\n" in c.buf]
            if not ready:
                r, _, _ = select.select([c.s for c in (idler, appender)], [], [], a.timeout)
                if not r:
                    raise RuntimeError("timed out waiting for EXISTS or the APPEND reply")
                ready = [c for c in (idler, appender) if c.s in r]
            for c in ready:
                ln = c.line()
                if c is idler:
                    m = re.match(r"\* (\d+) EXISTS", ln)
                    if m and int(m.group(1)) > exists and not got:
                        exists = int(m.group(1))
                        lat.append((time.perf_counter() - t0) * 1000)
                        got = True
                elif ln.startswith(t + " "):
                    if not ln[len(t) + 1:].startswith("OK"):
                        raise RuntimeError(f"APPEND -> {ln}")
                    replied = True
        if a.verbose:
            print(f"{k}: {lat[-1]:.3f} ms", file=sys.stderr)
        time.sleep(0.02)
    idler.send(b"DONE\r\n")
    while not idler.line().startswith("i "):
        pass
    lat.sort()
    n = len(lat)
    print(f"n {n} p50_ms {lat[n // 2]:.2f} p99_ms {lat[min(n - 1, int(n * 0.99))]:.2f} "
          f"max_ms {lat[-1]:.2f}")


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, OSError) as e:
        print(f"error: {e}")
        sys.exit(1)
