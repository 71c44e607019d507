#!/usr/bin/env python3
"""bench/relay_client.py - the load generator of bench/relay.sh (Python standard library only).

  relay_client.py --port P --user U --password W --from F --to T
                  [--messages 5000] [--sessions 20] [--size 10240] [--tls] [--timeout 60]
                  [--tag TEXT] [--no-auth]

Opens --sessions SMTP connections to 127.0.0.1:P (tern's submission port) at once, each:
greeting, EHLO, (with --tls: STARTTLS, EHLO again), AUTH PLAIN with an initial response, then
messages until --messages have been handed out over all sessions, then QUIT. smtp-source
cannot do this: it has no AUTH, and relaying needs an authenticated session. --no-auth skips
AUTH: pointed at smtp-sink, it shows how fast the client alone can go on this machine.

Each message is one transaction, pipelined as the server's PIPELINING allows (RFC 2920):
"MAIL FROM / RCPT TO / DATA" in one write, their three replies, then the message and the
final dot, then its reply. The message has a few headers (a unique Message-ID, X-Bench-Seq)
and a body of --size bytes in 78-character lines. Every reply must be the expected one
(220, 250, 235, 354, 250); anything else, a timeout or a closed connection is a failure.

Prints one line of JSON:
  {"messages": N, "sessions": S, "start_ns": T0, "first_ns": TM, "last_ns": T1, "seconds": S,
   "auth_seconds": A}
where start_ns is the wall clock (CLOCK_REALTIME, as `date +%s%N`) just before the first
connection, first_ns when the first MAIL FROM was written, last_ns just after the last
message's 250, seconds = (last_ns - start_ns) / 1e9, and auth_seconds the longest time a
session took from connect to 235 (AUTH done).

Exit status 0 on success; 1 with a message on stderr on any error.
"""

import argparse
import asyncio
import base64
import json
import ssl
import sys
import time


class SmtpError(Exception):
    pass


async def read_reply(reader, timeout):
    """One (possibly multi-line) reply: (code, text of the last line)."""
    lines = []
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise SmtpError("connection closed by the server" +
                            (f" after {lines[-1]!r}" if lines else ""))
        if len(line) < 4 or not line[:3].isdigit():
            raise SmtpError(f"malformed reply line {line!r}")
        lines.append(line)
        if line[3:4] != b"-":
            return int(line[:3]), b"".join(lines).decode("utf-8", "replace").rstrip()


async def expect(reader, code, what, timeout):
    got, text = await read_reply(reader, timeout)
    if got != code:
        raise SmtpError(f"{what}: expected {code}, got {text!r}")
    return text


def make_body(size):
    """size bytes of 78-character lines (CRLF included in the count), no line starts with '.'"""
    line = (b"La de da de da " * 6)[:76] + b"\r\n"
    n, rest = divmod(size, len(line))
    body = line * n
    if rest >= 3:
        body += b"x" * (rest - 2) + b"\r\n"
    return body


class Shared:
    def __init__(self, total):
        self.total = total
        self.next = 0	# next message number to hand out
        self.done = 0
        self.first_ns = 0	# the first MAIL FROM written
        self.last_ns = 0
        self.max_auth = 0.0


async def session(args, shared, body, ctx, sid):
    t_conn = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", args.port, limit=1 << 16), args.timeout)
    try:
        to = args.timeout
        await expect(reader, 220, "greeting", to)
        writer.write(b"EHLO bench-client.example.org\r\n")
        ehlo = await expect(reader, 250, "EHLO", to)
        if args.tls:
            if "STARTTLS" not in ehlo.upper():
                raise SmtpError("the server does not offer STARTTLS")
            writer.write(b"STARTTLS\r\n")
            await expect(reader, 220, "STARTTLS", to)
            await asyncio.wait_for(writer.start_tls(ctx), to)
            writer.write(b"EHLO bench-client.example.org\r\n")
            ehlo = await expect(reader, 250, "EHLO after STARTTLS", to)
        if "PIPELINING" not in ehlo.upper():
            raise SmtpError("the server does not offer PIPELINING")
        if not args.no_auth:
            cred = base64.b64encode(b"\0" + args.user.encode() + b"\0" + args.password.encode())
            writer.write(b"AUTH PLAIN " + cred + b"\r\n")
            await expect(reader, 235, "AUTH PLAIN", to)
        shared.max_auth = max(shared.max_auth, time.monotonic() - t_conn)

        envelope = (f"MAIL FROM:<{args.sender}> SIZE={len(body) + 300}\r\n"
                    f"RCPT TO:<{args.to}>\r\nDATA\r\n").encode()
        while shared.next < shared.total:
            seq = shared.next
            shared.next += 1
            head = (f"From: <{args.sender}>\r\nTo: <{args.to}>\r\n"
                    f"Subject: relay bench {seq}\r\n"
                    f"Message-ID: <{args.tag}.{seq}@bench-client.example.org>\r\n"
                    f"X-Bench-Seq: {seq}\r\n\r\n").encode()
            if not shared.first_ns:
                shared.first_ns = time.time_ns()
            writer.write(envelope)
            await expect(reader, 250, f"message {seq}: MAIL FROM", to)
            await expect(reader, 250, f"message {seq}: RCPT TO", to)
            await expect(reader, 354, f"message {seq}: DATA", to)
            writer.write(head + body + b".\r\n")	# one send
            await expect(reader, 250, f"message {seq}: end of data", to)
            shared.done += 1
            shared.last_ns = time.time_ns()
        writer.write(b"QUIT\r\n")
        await expect(reader, 221, "QUIT", to)
    except (SmtpError, OSError, asyncio.TimeoutError, ssl.SSLError) as e:
        what = "timeout" if isinstance(e, asyncio.TimeoutError) else str(e)
        raise SmtpError(f"session {sid}: {what}") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


async def run(args):
    body = make_body(args.size)
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE	# tern's self-signed certificate
    shared = Shared(args.messages)
    start_ns = time.time_ns()
    tasks = [asyncio.create_task(session(args, shared, body, ctx, i))
             for i in range(args.sessions)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0] if isinstance(errors[0], SmtpError) else SmtpError(repr(errors[0]))
    if shared.done != args.messages:
        raise SmtpError(f"{shared.done} messages accepted, expected {args.messages}")
    return {
        "messages": shared.done,
        "sessions": args.sessions,
        "start_ns": start_ns,
        "first_ns": shared.first_ns,
        "last_ns": shared.last_ns,
        "seconds": round((shared.last_ns - start_ns) / 1e9, 3),
        "auth_seconds": round(shared.max_auth, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--from", dest="sender", required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--tls", action="store_true", help="STARTTLS before AUTH")
    ap.add_argument("--timeout", type=float, default=60, help="seconds per reply")
    ap.add_argument("--tag", default="bench", help="Message-ID prefix")
    ap.add_argument("--no-auth", action="store_true",
                    help="skip AUTH (to measure the client alone against smtp-sink)")
    args = ap.parse_args()
    try:
        res = asyncio.run(run(args))
    except SmtpError as e:
        print(f"relay_client: {e}", file=sys.stderr)
        return 1
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
