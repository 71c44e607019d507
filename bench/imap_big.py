#!/usr/bin/env python3
"""imap_big.py - time single big IMAP commands on one connection (bench/imap_big.sh).

    imap_big.py --port PORT --user USER --password PW [--timeout S] [--server-pid PID] COMMAND...

Logs in (LOGIN, plain TCP), then sends each COMMAND in turn, one at a time, and prints one
JSON line per command, LOGIN first:
    {"cmd": ..., "seconds": wall time from the first byte sent to the tagged reply's last
     byte, "client_cpu": this process's CPU time over the same span, "bytes": response bytes,
     "exists": N of "* N EXISTS" (SELECT), "fetch": FETCH responses, "seen": those with \\Seen,
     "hits": numbers in "* SEARCH" responses, "server_cpu": with --server-pid, the CPU time
     (user + system, /proc/PID/stat) that PID and every process below it used over the
     command, read just before the command is sent and just after its reply}
then LOGOUT. A raw socket, not imaplib: the response is only scanned for the tagged line
while it arrives, and counted once complete, so the client's CPU time stays a small part of
the wall time (printed so that this can be checked). Responses with literals are not
expected (none of the commands used asks for message data). Exit 1 on a reply other than
OK, a lost connection or the timeout."""
import argparse
import json
import os
import socket
import sys
import time


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root):
    """CPU seconds (utime + stime) of root and every process below it, alive now"""
    kids, cpu = {}, {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                w = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(w[1]), []).append(int(p))
        cpu[int(p)] = int(w[11]) + int(w[12])
    todo, total = [root], 0
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0)
        todo.extend(kids.get(p, []))
    return total / TICK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds for one command")
    ap.add_argument("--server-pid", type=int, help="report the CPU time of this process tree")
    ap.add_argument("commands", nargs="+")
    a = ap.parse_args()

    sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()

    def read_greeting():
        while b"\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("connection closed before the greeting")
            buf.extend(chunk)
        line, _, rest = bytes(buf).partition(b"\r\n")
        del buf[:]
        buf.extend(rest)
        if not line.startswith(b"* OK"):
            raise SystemExit(f"greeting: {line!r}")

    def command(n, text):
        tag = b"t%d" % n
        s0 = tree_cpu(a.server_pid) if a.server_pid else None
        c0, t0 = time.process_time(), time.perf_counter()
        sock.sendall(tag + b" " + text.encode() + b"\r\n")
        # the tagged line: at the start of the response or after a CRLF, ended by a CRLF
        first = tag + b" "
        needle = b"\r\n" + first
        pos = 0
        start = -1
        while True:
            if start < 0:
                i = buf.find(needle, pos)
                if buf.startswith(first):
                    start = 0
                elif i >= 0:
                    start = i + 2
                else:
                    pos = max(0, len(buf) - len(needle))
            if start >= 0:
                end = buf.find(b"\r\n", start)
                if end >= 0:
                    break
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit(f"{text}: connection closed")
            buf.extend(chunk)
        t1, c1 = time.perf_counter(), time.process_time()
        s1 = tree_cpu(a.server_pid) if a.server_pid else None
        tagged = bytes(buf[start:end])
        body = bytes(buf[:start])
        del buf[: end + 2]
        if not tagged.startswith(first + b"OK"):
            raise SystemExit(f"{text} -> {tagged.decode(errors='replace')}")
        out = {"cmd": text, "seconds": round(t1 - t0, 4), "client_cpu": round(c1 - c0, 4),
               "bytes": len(body) + len(tagged) + 2}
        if s0 is not None:
            out["server_cpu"] = round(s1 - s0, 2)
        # counted after the clock stopped
        exists = fetch = seen = hits = 0
        for line in body.split(b"\r\n"):
            if not line.startswith(b"* "):
                continue
            w = line.split(b" ", 3)
            if len(w) >= 3 and w[2] == b"EXISTS":
                exists = int(w[1])
            elif len(w) >= 3 and w[2] == b"FETCH":
                fetch += 1
                seen += b"\\Seen" in line
            elif w[1] == b"SEARCH":
                hits += len(line.split()) - 2
        if text.upper().startswith("SELECT") or text.upper().startswith("EXAMINE"):
            out["exists"] = exists
        if fetch:
            out["fetch"], out["seen"] = fetch, seen
        if "SEARCH" in text.upper():
            out["hits"] = hits
        print(json.dumps(out), flush=True)

    read_greeting()
    n = 1
    command(n, f'LOGIN "{a.user}" "{a.password}"')
    for text in a.commands:
        n += 1
        command(n, text)
    sock.sendall(b"z LOGOUT\r\n")
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
