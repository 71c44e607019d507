"""/metrics (src/lib/metrics.c): the counters, gauges and histograms move by the right amounts
when mail flows (smtplib on the MX and submission roles, local delivery, relay to a sink,
a bounce and a deferral through [routes]), when clients log in (poplib, imaplib: one good
password, one bad) and while an IMAP session idles; Prometheus's own parser and linter
(`promtool check metrics`) accepts the scrape; and no counter goes down when the master
restarts a worker or the queue runner killed with SIGKILL.
Scraped with curl, as an operator would."""
import imaplib
import os
import poplib
import signal
import smtplib
import socket
import subprocess
import time
from email.message import EmailMessage

import pytest

import tern_harness as th
from smtp_sink import Sink

RELAY = "relay.test"    # routed to the sink
DEAD = "dead.test"      # routed to a port where nothing listens: deferred
ALICE = "alice@example.test"
BOB = "bob@example.test"


def scrape(inst):
    """The text of one GET /metrics with curl (fails the test on any HTTP error)."""
    p = subprocess.run(["curl", "-sS", "--fail", "--max-time", str(int(th.IO_TIMEOUT)),
                        f"http://127.0.0.1:{inst.ports['metrics']}/metrics"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=th.IO_TIMEOUT + 30)
    assert p.returncode == 0, f"curl /metrics: {p.stderr.decode()}"
    return p.stdout.decode()


def parse(text):
    """{series: value} of the sample lines ("name{labels} value")."""
    m = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        m[series] = float(value)
    return m


def metrics(inst):
    return parse(scrape(inst))


def wait_for(inst, pred, what, timeout=None):
    """Scrape until pred(metrics) holds (the runner delivers in the background)."""
    deadline = time.monotonic() + (timeout or th.scaled(30))
    while True:
        m = metrics(inst)
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached; last scrape:\n"
                                 + "\n".join(f"{k} {v}" for k, v in m.items() if v))
        time.sleep(0.1)  # poll interval


def diff(before, after):
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def promtool_check(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, f"promtool: {p.stdout.decode()} {p.stderr.decode()}"
    assert p.stdout.strip() == b"" and p.stderr.strip() == b"", (p.stdout, p.stderr)


def message(frm, to, subject):
    m = EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m.set_content(f"{subject}\n")
    return m


def submit(inst, to, subject):
    """A message over submission: STARTTLS, AUTH, one transaction."""
    with smtplib.SMTP("127.0.0.1", inst.ports["submission"], timeout=th.IO_TIMEOUT) as s:
        s.starttls(context=th.tls_context())
        s.login(ALICE, th.USERS[ALICE])
        s.send_message(message(ALICE, to, subject))


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


LOOP = "loop.test"      # routed to the instance's own smtp port (STARTTLS, then 5xx)


def metrics_instance(tern_factory, sink, **kw):
    inst = tern_factory(start=False, **kw)
    inst.ports["metrics"] = th.free_port()
    inst.extra_config = (f"[routes]\n{RELAY} = 127.0.0.1:{sink.port}\n"
                         f"{DEAD} = 127.0.0.1:{th.free_port()}\n"
                         f"{LOOP} = 127.0.0.1:{inst.ports['smtp']}\n")
    inst.write_config()
    inst.start()
    return inst


def series(name, **labels):
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def test_counters_move_with_mail_and_logins(tern_factory, sink):
    inst = metrics_instance(tern_factory, sink)
    first = scrape(inst)
    promtool_check(first)
    b = parse(first)

    # the MX role: one message to a local user, delivered at once
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
        s.send_message(message("someone@remote.example", ALICE, "mx"))
    # ... and one in BDAT chunks
    with th.RawSMTP("127.0.0.1", inst.ports["smtp"]) as c:
        assert c.read_reply()[0] == 220
        assert c.cmd("EHLO chunky.example")[0] == 250
        assert c.cmd("MAIL FROM:<someone@remote.example>")[0] == 250
        assert c.cmd(f"RCPT TO:<{ALICE}>")[0] == 250
        a, z = b"Subject: chunks\r\n\r\nfirst ", b"and last\r\n"
        c.send(f"BDAT {len(a)}\r\n".encode() + a)
        assert c.read_reply()[0] == 250
        c.send(f"BDAT {len(z)} LAST\r\n".encode() + z)
        assert c.read_reply()[0] == 250
        assert c.cmd("QUIT")[0] == 221
    # submission: relayed to the sink, bounced by it (reject-...), deferred (nothing listens)
    submit(inst, f"friend@{RELAY}", "relayed")
    submit(inst, f"reject-x@{RELAY}", "bounced")
    submit(inst, f"nobody@{DEAD}", "deferred")
    sink.wait(b"relayed")
    m = wait_for(inst, lambda m: m["tern_recipients_relayed_total"] >= b["tern_recipients_relayed_total"] + 1
                 and m["tern_recipients_bounced_total"] >= b["tern_recipients_bounced_total"] + 1
                 and m["tern_recipients_deferred_total"] >= b["tern_recipients_deferred_total"] + 1
                 and m["tern_recipients_delivered_local_total"]
                 >= b["tern_recipients_delivered_local_total"] + 3
                 and m['tern_queue_recipients{state="deferred"}'] >= 1,
                 "relay, bounce and deferral counted")
    d = diff(b, m)
    assert d.get(series("tern_messages_received_total", protocol="smtp")) == 2, d
    assert d.get(series("tern_messages_received_total", protocol="submission")) == 3, d
    assert d.get("tern_recipients_relayed_total") == 1, d
    assert d.get("tern_recipients_bounced_total") == 1, d
    assert d.get("tern_recipients_deferred_total") == 1, d
    # alice's two messages, and the bounce report to alice (the sender), delivered locally
    assert d.get("tern_recipients_delivered_local_total") == 3, d
    assert d.get(series("tern_sessions_total", protocol="smtp")) == 2, d
    assert d.get(series("tern_sessions_total", protocol="submission")) == 3, d
    assert d.get(series("tern_logins_total", protocol="submission", result="ok")) == 3, d
    assert d.get(series("tern_tls_handshakes_total", direction="inbound", result="ok")) == 3, d
    # every final outcome is observed once: 3 local + 1 relayed + 1 bounced
    assert d.get("tern_delivery_delay_seconds_count") == 5, d
    assert d.get('tern_delivery_delay_seconds_bucket{le="+Inf"}') == 5, d
    # five transactions, MAIL to the reply after the data (DATA or the last BDAT)
    assert d.get("tern_smtp_transaction_seconds_count") == 5, d
    assert 0 < d.get("tern_smtp_transaction_seconds_sum", 0) < th.scaled(60), d
    assert m["tern_queue_messages"] >= 1 and m['tern_queue_recipients{state="deferred"}'] == 1, m
    assert m['tern_connections{protocol="smtp"}'] == 0
    assert m['tern_connections{protocol="submission"}'] == 0

    # POP3 over implicit TLS: one good login, one bad
    b = m
    p = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=th.tls_context(),
                        timeout=th.IO_TIMEOUT)
    p.user(ALICE)
    p.pass_(th.USERS[ALICE])
    assert p.stat()[0] >= 3
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=th.tls_context(),
                        timeout=th.IO_TIMEOUT)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong password")
    p.quit()
    # IMAP over implicit TLS: one bad login, then a good one that idles
    i = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    with pytest.raises(imaplib.IMAP4.error):
        i.login(BOB, "wrong password")
    i.logout()
    i = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    i.login(BOB, th.USERS[BOB])
    i.select("INBOX")
    tag = i._new_tag().decode()
    i.send(f"{tag} IDLE\r\n".encode())
    assert i.readline().startswith(b"+")
    m = wait_for(inst, lambda m: m["tern_imap_idle_sessions"] == 1, "IDLE counted")
    assert m['tern_connections{protocol="imap"}'] == 1, m
    i.send(b"DONE\r\n")
    while not i.readline().startswith(tag.encode()):
        pass
    m = metrics(inst)
    assert m["tern_imap_idle_sessions"] == 0, m
    i.logout()
    m = wait_for(inst, lambda m: m['tern_connections{protocol="imap"}'] == 0, "IMAP closed")
    d = diff(b, m)
    assert d.get(series("tern_sessions_total", protocol="pop3")) == 2, d
    assert d.get(series("tern_sessions_total", protocol="imap")) == 2, d
    assert d.get(series("tern_logins_total", protocol="pop3", result="ok")) == 1, d
    assert d.get(series("tern_logins_total", protocol="pop3", result="failed")) == 1, d
    assert d.get(series("tern_logins_total", protocol="imap", result="ok")) == 1, d
    assert d.get(series("tern_logins_total", protocol="imap", result="failed")) == 1, d
    assert d.get(series("tern_tls_handshakes_total", direction="inbound", result="ok")) == 4, d
    assert series("tern_tls_handshakes_total", direction="inbound", result="failed") not in d

    # a client that opens an implicit-TLS port and sends garbage: a failed handshake
    with socket.create_connection(("127.0.0.1", inst.ports["imaps"]), timeout=th.IO_TIMEOUT) as c:
        c.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
    m = wait_for(inst, lambda m: m['tern_connections{protocol="imap"}'] == 0, "closed")
    assert diff(b, m).get(series("tern_tls_handshakes_total", direction="inbound",
                                 result="failed")) == 1

    text = scrape(inst)
    promtool_check(text)
    assert "# TYPE tern_delivery_delay_seconds histogram" in text


def worker_pids(inst):
    """The master's live children: the workers (they log as smtpd[PID] when they start) and
    the others (the queue runner)."""
    log = inst.log_text()
    kids = set(th.children_of(inst.pid))
    workers = {p for p in kids if f"smtpd[{p}]" in log}
    return workers, kids - workers


def test_counters_survive_killed_worker_and_runner(tern_factory, sink):
    """SIGKILL one worker (while it holds a session) and the queue runner: the master
    restarts them; no total goes down, the dead worker's open session is no longer
    counted, and the new processes count on."""
    inst = metrics_instance(tern_factory, sink, workers=1)
    for n in range(3):
        with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
            s.send_message(message("someone@remote.example", ALICE, f"before {n}"))
    submit(inst, f"friend@{RELAY}", "relayed before")
    sink.wait(b"relayed before")
    wait_for(inst, lambda m: m["tern_recipients_relayed_total"] == 1, "relayed")
    held = smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT)
    held.ehlo("held.example")
    before = wait_for(inst, lambda m: m['tern_connections{protocol="smtp"}'] == 1, "held")
    assert before["tern_processes"] == 2, before
    assert before['tern_messages_received_total{protocol="smtp"}'] == 3, before

    workers, runner = worker_pids(inst)
    assert len(workers) == 1 and len(runner) == 1, (workers, runner)
    for pid in workers | runner:
        os.kill(pid, signal.SIGKILL)
    # the master reaps and restarts them (the scrape is served by the worker: it fails or
    # waits while there is none)
    deadline = time.monotonic() + th.scaled(30)
    while True:
        new_workers, new_runner = worker_pids(inst)
        if (len(new_workers) == 1 and len(new_runner) == 1 and not new_workers & workers
                and not new_runner & runner):
            break
        assert time.monotonic() < deadline, "worker and runner not restarted"
        time.sleep(0.05)  # poll interval
    with pytest.raises((smtplib.SMTPServerDisconnected, OSError)):
        held.noop()
    after = wait_for(inst, lambda m: m["tern_processes"] == 2, "restarted processes counted")
    went_down = {k: (before[k], after.get(k)) for k in before
                 if (k.endswith("_total") or "_bucket" in k or k.endswith("_count"))
                 and after.get(k, -1) < before[k]}
    assert not went_down, went_down
    assert after['tern_messages_received_total{protocol="smtp"}'] == 3, after
    assert after["tern_recipients_relayed_total"] == 1, after
    assert after["tern_recipients_delivered_local_total"] == 3, after
    assert after['tern_sessions_total{protocol="smtp"}'] == before['tern_sessions_total{protocol="smtp"}']
    # what the dead worker held open is gone with it
    assert after['tern_connections{protocol="smtp"}'] == 0, after

    # the new worker and runner go on from there
    with smtplib.SMTP("127.0.0.1", inst.ports["smtp"], timeout=th.IO_TIMEOUT) as s:
        s.send_message(message("someone@remote.example", ALICE, "after"))
    submit(inst, f"friend@{RELAY}", "relayed after")
    sink.wait(b"relayed after")
    m = wait_for(inst, lambda m: m["tern_recipients_relayed_total"] == 2, "relayed after")
    assert m['tern_messages_received_total{protocol="smtp"}'] == 4, m
    assert m['tern_messages_received_total{protocol="submission"}'] == 2, m
    assert m["tern_recipients_delivered_local_total"] == 4, m
    assert m["tern_delivery_delay_seconds_count"] == 6, m
    promtool_check(scrape(inst))


def test_outbound_tls_handshake(tern_factory, sink):
    """The queue's client handshakes: mail routed to our own MX port goes over STARTTLS
    (one outbound and one inbound handshake), is refused there (no relaying) and bounced."""
    inst = metrics_instance(tern_factory, sink)
    b = metrics(inst)
    submit(inst, f"someone@{LOOP}", "loop")
    m = wait_for(inst, lambda m: m["tern_recipients_bounced_total"] == 1
                 and m["tern_recipients_delivered_local_total"] == 1, "bounced to the sender")
    d = diff(b, m)
    assert d.get(series("tern_tls_handshakes_total", direction="outbound", result="ok")) == 1, d
    assert series("tern_tls_handshakes_total", direction="outbound", result="failed") not in d
    # submission's STARTTLS and the runner's, both answered by us
    assert d.get(series("tern_tls_handshakes_total", direction="inbound", result="ok")) == 2, d
    assert d.get(series("tern_sessions_total", protocol="smtp")) == 1, d
    assert "tern_recipients_relayed_total" not in d
