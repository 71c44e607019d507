"""`tern trace ID`: the story of one message from the trace journal (data_dir/trace).

A message relayed after one deferral (a sink that answers 451 to the first attempt and 250
to the second), a message delivered locally then read over IMAP (FETCH BODY[] sets \\Seen)
and downloaded and deleted over POP3, and a bounce whose DSN's queue id shows; lookup by
Message-ID; an unknown ID; a hostile Message-ID that must not forge a journal line."""
import imaplib
import json
import poplib
import re
import time

import pytest

import tern_harness as th
from smtp_sink import Sink

RELAY = "relay.test"


@pytest.fixture
def sink():
    """once-* recipients get 451 the first time, reject-* get 550"""
    s = Sink(kept_reply="250 2.0.0 Ok: kept by the sink", reject_text="no such user here",
             defer_once=True)
    yield s
    s.close()


@pytest.fixture
def inst(tern_factory, sink):
    return tern_factory(extra_config=f"[routes]\n{RELAY} = 127.0.0.1:{sink.port}\n"
                                     "[queue]\nretry_min = 1\nretry_max = 1\n")


def trace(inst, *args):
    return inst.cli("trace", *args)


def wait_trace(inst, ident, needle, timeout=30):
    """`tern trace ident` once its output holds needle (events land as things happen)."""
    deadline = time.monotonic() + th.scaled(timeout)
    while True:
        r = trace(inst, ident)
        if r.returncode == 0 and needle in r.stdout:
            return r.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"trace of {ident} never showed {needle!r}:\n{r!r}")
        time.sleep(0.2)  # poll: the runner writes its events when an attempt ends


def in_order(text, *needles):
    """Each needle appears in text, each after the one before; returns their lines."""
    pos, lines = 0, []
    for n in needles:
        i = text.find(n, pos)
        assert i >= 0, f"{n!r} missing after position {pos} in:\n{text}"
        start = text.rfind("\n", 0, i) + 1
        end = text.find("\n", i)
        lines.append(text[start:end if end >= 0 else len(text)])
        pos = i + len(n)
    return lines


def submit(inst, sender, rcpts, msg):
    """Submission with STARTTLS and AUTH as alice; the queue id from the 250."""
    s = inst.submission_login()
    try:
        s.mail(sender)
        for r in rcpts:
            code, _ = s.rcpt(r)
            assert code == 250
        code, resp = s.data(msg)
        assert code == 250, resp
    finally:
        s.quit()
    return re.search(rb"queued as (\S+)", resp).group(1).decode()


def read_over_imap(inst, tok):
    """bob reads the message carrying tok with FETCH BODY[] (which sets \\Seen); its UID"""
    im = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context())
    im.login("bob@example.test", th.USERS["bob@example.test"])
    im.select("INBOX")
    typ, data = im.uid("SEARCH", None, "SUBJECT", tok)
    uid = data[0].split()[-1].decode()
    typ, data = im.uid("FETCH", uid, "(BODY[])")
    assert typ == "OK" and tok.encode() in data[0][1]
    im.logout()
    return uid


def test_relayed_after_one_deferral(inst, sink):
    tok = th.token()
    msg = th.make_message(tok, sender="alice@example.test", to=f"once-{tok}@{RELAY}")
    qid = submit(inst, "alice@example.test", [f"once-{tok}@{RELAY}"], msg)
    out = wait_trace(inst, qid, "sent (2.0.0 250 2.0.0 Ok: kept by the sink)")
    lines = in_order(out,
                     "received on submission from client.example.net [127.0.0.1]",
                     f"recipient <once-{tok}@{RELAY}> (remote)",
                     "accepted: answered 250 2.0.0",
                     f"attempt 1 to <once-{tok}@{RELAY}> via 127.0.0.1[127.0.0.1]:",
                     "attempt 2 to",
                     "sent (2.0.0 250 2.0.0 Ok: kept by the sink)")
    assert "authenticated as alice@example.test" in lines[0]
    assert "TLS TLSv1." in lines[0] and "cipher " in lines[0], lines[0]
    assert f"from <alice@example.test>" in lines[0]
    assert f"Message-ID <{tok}@client.example.net>" in lines[0]
    assert "deferred (4.3.0 451 4.3.0 sink busy, try again later please)" in lines[3]
    assert all(qid in line for line in lines)
    # the same story by Message-ID, with or without the angle brackets
    assert trace(inst, f"<{tok}@client.example.net>").stdout == out
    assert trace(inst, f"{tok}@client.example.net").stdout == out
    # machine-readable
    r = trace(inst, qid, "--json")
    assert r.returncode == 0, r
    events = [json.loads(line) for line in r.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["received", "rcpt", "accepted"], kinds
    attempts = [e for e in events if e["event"] == "attempt"]
    assert [a["status"] for a in attempts] == ["deferred", "sent"]
    assert attempts[0]["reply"] == "451 4.3.0 sink busy, try again later please"
    assert events[0]["msgid"] == f"<{tok}@client.example.net>"
    assert events[0]["user"] == "alice@example.test"


def test_local_read_over_imap_and_pop3(inst):
    tok = th.token()
    msg = th.make_message(tok)
    with inst.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("sender@example.net")
        s.rcpt("bob@example.test")
        code, resp = s.data(msg)
    assert code == 250
    qid = re.search(rb"queued as (\S+)", resp).group(1).decode()
    inst.wait_message("bob@example.test", tok)
    # IMAP: FETCH BODY[] sets \Seen
    uid = read_over_imap(inst, tok)
    # the mailbox index says where it is now, and that it was read
    out = wait_trace(inst, qid, "read: \\Seen set by FETCH")
    assert f"now: in bob@example.test folder INBOX uid {uid}, flags: \\Seen\n" in out, out
    # POP3: RETR, then DELE committed at QUIT
    p = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=th.tls_context())
    p.user("bob@example.test")
    p.pass_(th.USERS["bob@example.test"])
    n = next(i + 1 for i in range(len(p.list()[1]))
             if tok.encode() in b"\n".join(p.retr(i + 1)[1]))
    p.dele(n)
    p.quit()
    out = wait_trace(inst, qid, "deleted over POP3")
    lines = in_order(out,
                     "received on smtp from client.example.net [127.0.0.1]",
                     "recipient <bob@example.test> (local)",
                     f"stored for bob@example.test in folder INBOX (uid {uid},",
                     "accepted: answered 250 2.0.0",
                     "read: \\Seen set by FETCH over IMAP, bob@example.test folder INBOX "
                     f"uid {uid}",
                     "downloaded over POP3 (RETR) by bob@example.test",
                     "deleted over POP3 (DELE, committed at QUIT) by bob@example.test")
    assert "no TLS, not authenticated" in lines[0]
    assert out.endswith(f"now: bob@example.test folder INBOX uid {uid}: no longer there "
                        "(expunged, moved or deleted)\n"), out
    # the reading happened after the storing, at a time the journal shows
    times = [line[:26] for line in lines]
    assert times == sorted(times), times
    assert trace(inst, f"<{tok}@client.example.net>").stdout == out


def test_bounce_shows_the_dsn_queue_id(inst, sink):
    tok = th.token()
    rcpt = f"reject-{tok}@{RELAY}"
    qid = submit(inst, "alice@example.test", [rcpt],
                 th.make_message(tok, sender="alice@example.test", to=rcpt))
    out = wait_trace(inst, qid, "stored for alice@example.test")
    lines = in_order(out,
                     f"attempt 1 to <{rcpt}> via 127.0.0.1",
                     "non-delivery report (DSN) to <alice@example.test> queued as ",
                     "created: non-delivery report about " + qid,
                     "stored for alice@example.test in folder INBOX")
    assert "bounced (5.1.1 550 5.1.1" in lines[0] and "no such user here" in lines[0]
    dsn_qid = lines[1].rsplit(" ", 1)[1]
    assert dsn_qid != qid
    assert lines[2].split()[2] == dsn_qid and lines[3].split()[2] == dsn_qid
    # the report's own story starts at its creation
    r = trace(inst, dsn_qid)
    assert r.returncode == 0, r
    in_order(r.stdout, "created: non-delivery report about " + qid,
             "stored for alice@example.test",
             "now: in alice@example.test folder INBOX uid ")
    assert r.stdout.endswith(", flags: (none: unread)\n"), r.stdout


def test_unknown_id(inst):
    r = trace(inst, "NOSUCHQUEUEID")
    assert r.returncode != 0
    assert "NOSUCHQUEUEID: no such message" in r.stderr
    r = trace(inst, "<nobody-sent-this@example.net>")
    assert r.returncode != 0 and "no such message" in r.stderr
    r = trace(inst)
    assert r.returncode != 0 and "needs a queue id or a Message-ID" in r.stderr


def test_hostile_message_id_forges_nothing(inst):
    tok = th.token()
    forged = f"FORGED{tok}"
    # folded, with spaces, '=', '%' and what would be a whole journal line after a newline
    mid = (f"<{tok} evil=1 %0A@x>\r\n 2026-01-01T00:00:00.000000Z {forged} stored "
           f"user=bob@example.test uidvalidity=1 uid=1 \x1b[31mred caf\u00e9 \xc2\x9b")
    msg = (f"From: <sender@example.net>\r\nTo: <bob@example.test>\r\nSubject: {tok}\r\n"
           f"Message-ID: {mid}\r\n\r\nhello\r\n").encode()
    msg = msg.replace("\xc2\x9b".encode(), b"\xc2\x9b\xff")  # a C1 control (CSI), a bad byte
    with inst.smtp() as s:
        s.ehlo("client.example.net")
        s.mail("sender@example.net")
        s.rcpt("bob@example.test")
        code, resp = s.data(msg)
    assert code == 250
    qid = re.search(rb"queued as (\S+)", resp).group(1).decode()
    out = wait_trace(inst, qid, "accepted")
    journal = "".join(p.read_text(errors="replace")
                      for p in sorted((inst.data_dir / "trace").iterdir()))
    for line in journal.splitlines():
        words = line.split(" ")
        assert words[1] != forged, line
        for w in words[3:]:
            assert "=" in w, line
    assert trace(inst, forged).returncode != 0
    # the whole value survives the escaping
    r = trace(inst, qid, "--json")
    ev = json.loads(r.stdout.splitlines()[0])
    assert ev["msgid"].startswith(f"<{tok} evil=1 %0A@x> 2026-01-01T00:00:00.000000Z {forged}")
    assert "user=bob@example.test" in ev["msgid"]
    assert "received on smtp" in out
    # the terminal sees no control byte: ESC, the C1 CSI and the bad byte are shown \xNN,
    # well-formed UTF-8 stays
    assert "\x1b" not in out and "\\x1b[31mred" in out
    assert "\u009b" not in out and "\\xc2\\x9b\\xff" in out
    assert "café" in out


def test_trace_off(tern_factory):
    inst = tern_factory(settings={"trace_days": "0"})
    tok = th.token()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", ["bob@example.test"], th.make_message(tok))
    inst.wait_message("bob@example.test", tok)
    assert not (inst.data_dir / "trace").exists()
    r = trace(inst, f"<{tok}@client.example.net>")
    assert r.returncode != 0 and "trace_days = 0" in r.stderr


def test_imap_store_move_expunge(inst):
    """STORE +FLAGS \\Seen, MOVE to another folder (followed to the new UID), EXPUNGE."""
    tok = th.token()
    with inst.smtp() as s:
        s.sendmail("sender@example.net", ["bob@example.test"], th.make_message(tok))
    inst.wait_message("bob@example.test", tok)
    im = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context())
    im.login("bob@example.test", th.USERS["bob@example.test"])
    im.select("INBOX")
    uid = im.uid("SEARCH", None, "SUBJECT", tok)[1][0].split()[-1].decode()
    assert im.uid("STORE", uid, "+FLAGS", "(\\Seen \\Flagged)")[0] == "OK"
    typ, data = im.uid("MOVE", uid, "Archive")
    assert typ == "OK", data
    im.select("Archive")
    new_uid = im.uid("SEARCH", None, "SUBJECT", tok)[1][0].split()[-1].decode()
    r = trace(inst, f"<{tok}@client.example.net>")
    assert f"now: in bob@example.test folder Archive uid {new_uid}, flags: \\Seen \\Flagged" \
        in r.stdout, r.stdout
    assert im.uid("STORE", new_uid, "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert im.expunge()[0] == "OK"
    im.logout()
    out = wait_trace(inst, f"<{tok}@client.example.net>", "expunged over IMAP")
    in_order(out, "stored for bob@example.test in folder INBOX",
             f"flags changed over IMAP (STORE): \\Seen set, \\Deleted not set; "
             f"bob@example.test folder INBOX uid {uid}",
             f"moved over IMAP from bob@example.test folder INBOX uid {uid} to folder Archive "
             f"uid {new_uid}",
             f"\\Deleted set; bob@example.test folder Archive uid {new_uid}",
             f"expunged over IMAP from bob@example.test folder Archive uid {new_uid}",
             f"now: bob@example.test folder INBOX uid {uid}: no longer there",
             f"now: bob@example.test folder Archive uid {new_uid}: no longer there")


def test_one_message_relayed_after_deferral_and_read(inst, sink):
    """The issue's case in one message: received, relayed after one deferral (its remote
    recipient) and read over IMAP (its local one), all in one story."""
    tok = th.token()
    remote = f"once-{tok}@{RELAY}"
    msg = th.make_message(tok, sender="alice@example.test", to=f"bob@example.test, {remote}")
    qid = submit(inst, "alice@example.test", ["bob@example.test", remote], msg)
    inst.wait_message("bob@example.test", tok)
    uid = read_over_imap(inst, tok)
    wait_trace(inst, qid, "sent (2.0.0 250 2.0.0 Ok: kept by the sink)")
    out = wait_trace(inst, qid, "read: \\Seen set by FETCH")
    in_order(out,
             "received on submission from client.example.net [127.0.0.1]",
             "recipient <bob@example.test> (local)",
             f"recipient <{remote}> (remote)",
             f"stored for bob@example.test in folder INBOX (uid {uid},",
             "accepted: answered 250 2.0.0")
    attempts = in_order(out, f"attempt 1 to <{remote}>", "attempt 2 to",
                        "sent (2.0.0 250 2.0.0 Ok: kept by the sink)")
    assert "deferred (4.3.0 451 4.3.0 sink busy" in attempts[0], attempts[0]
    assert f"read: \\Seen set by FETCH over IMAP, bob@example.test folder INBOX uid {uid}" in out
    assert f"now: in bob@example.test folder INBOX uid {uid}, flags: \\Seen\n" in out, out
