"""What the server does to the messages it carries (issue 9, as Postfix's cleanup does):
Date: and Message-ID: added on submission only; Bcc:, Resent-Bcc: and a sender's Return-Path:
removed on every role, in the delivered file and in relayed mail; NOTIFY=SUCCESS reports
(Action: delivered locally, relayed to a next hop without DSN); RFC 6533 reports for
SMTPUTF8 messages; `tern queue bounce` reports the message's last real error.

Relayed mail goes to a tiny SMTP peer (smtp_sink.py; no DSN offered) through [routes]."""
import email
import email.policy
import email.utils
import re
import socket
import time

import pytest

import tern_harness as th
from smtp_sink import relay_peer
from tern_harness import HOSTNAME, assert_reply, check_delivered, make_message, token

ALICE = "alice@example.test"
BOB = "bob@example.test"
RELAY_DOMAIN = "relay.test"


@pytest.fixture(scope="module")
def peer():
    """EHLO without DSN; RCPT to reject-* gets 550, defer-* 451 (with a text naming the
    recipient)"""
    p = relay_peer()
    yield p
    p.close()


@pytest.fixture(scope="module")
def inst(tmp_path_factory, peer):
    from conftest import _teardown, provision_users, _LIVE
    i = th.TernInstance(tmp_path_factory.mktemp("tern-cleanup"),
                        extra_config=f"[routes]\n{RELAY_DOMAIN} = 127.0.0.1:{peer.port}\n")
    _LIVE.append(i)
    provision_users(i)
    i.start()
    yield i
    _teardown(i)


def headers_of(data):
    """The header block of a message (bytes), CRLF."""
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def stored_message(path):
    """The delivered file without our Return-Path and Received."""
    return th.split_delivered(path.read_bytes())[2]


def submit(inst, rcpts, msg, mail_options=(), rcpt_options=()):
    with inst.submission_login() as s:
        refused = s.sendmail(ALICE, rcpts, msg, mail_options=list(mail_options),
                             rcpt_options=list(rcpt_options))
        assert refused == {}


def bare_message(tok, to=BOB, extra=b"", body=None):
    """A message without Date: and Message-ID:, the way a careless client sends it."""
    head = f"From: <{ALICE}>\r\nTo: <{to}>\r\nSubject: test {tok}\r\n".encode() + extra
    return head + b"\r\n" + (body or f"Body of {tok}.\r\n".encode())


# -- Date and Message-ID ----------------------------------------------------------------

@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_submission_gets_date_and_message_id(inst, role):
    tok = token()
    msg = bare_message(tok)
    with inst.smtp(role) as s:
        s.ehlo()
        if role == "submission":
            s.starttls(context=th.tls_context())
            s.ehlo()
        s.login(ALICE, th.USERS[ALICE])
        assert s.sendmail(ALICE, [BOB], msg) == {}
    stored = stored_message(inst.wait_message(BOB, tok)[0])
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    date = parsed["Date"]
    assert date is not None, stored[:500]
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                        r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}", str(date)), date
    when = email.utils.parsedate_to_datetime(str(date))
    assert abs(when.timestamp() - time.time()) < 300, date
    assert when.utcoffset().total_seconds() == time.localtime().tm_gmtoff, date
    mid = str(parsed["Message-ID"])
    assert re.fullmatch(r"<[^<>@\s]+@" + re.escape(HOSTNAME) + ">", mid), mid
    # in the header block, before the separator; the rest is untouched
    head, body = stored.split(b"\r\n\r\n", 1)
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: " in head
    assert body == f"Body of {tok}.\r\n".encode()
    assert stored.startswith(msg.split(b"\r\n\r\n")[0] + b"\r\n")


def test_submission_message_ids_differ(inst):
    toks = [token(), token()]
    for tok in toks:
        submit(inst, [BOB], bare_message(tok))
    ids = []
    for tok in toks:
        stored = stored_message(inst.wait_message(BOB, tok)[0])
        ids.append(email.message_from_bytes(stored)["Message-ID"])
    assert ids[0] != ids[1], ids


def test_submission_with_date_and_message_id_unchanged(inst):
    tok = token()
    msg = make_message(tok, sender=ALICE, to=BOB,
                       extra_headers=b"date: Tue, 02 Jan 2024 10:00:00 +0100\r\n")
    submit(inst, [BOB], msg)
    check_delivered(inst.wait_message(BOB, tok)[0], ALICE, msg, with_proto="ESMTPSA")


def test_mx_message_unchanged(inst):
    tok = token()
    msg = bare_message(tok)
    with inst.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    check_delivered(inst.wait_message(BOB, tok)[0], "sender@example.net", msg)


def test_submission_without_separator(inst):
    """A message that is all header and body text without an empty line between: the
    added fields stay in the header block."""
    tok = token()
    msg = f"Subject: test {tok}\r\nthis line is no header field\r\n".encode()
    submit(inst, [BOB], msg)
    stored = stored_message(inst.wait_message(BOB, tok)[0])
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Date"] is not None and parsed["Message-ID"] is not None, stored
    assert parsed.get_content().startswith("this line is no header field"), stored


# -- Bcc, Resent-Bcc, Return-Path --------------------------------------------------------

NASTY = (b"Bcc: hidden1@example.net,\r\n hidden2@example.net,\r\n\thidden3@example.net\r\n"
         b"RESENT-bcc : hidden4@example.net\r\n"
         b"Return-Path: <forged@example.net>\r\n"
         b"X-Keep: yes\r\n"
         b"bcc: hidden5@example.net,\r\n  hidden6@example.net\r\n")
BODY_BCC = b"Bcc: this line is in the body and stays\r\nReturn-Path: so does this\r\n"


def check_cleaned(message, tok):
    head = headers_of(message)
    low = head.lower()
    assert b"bcc" not in low and b"hidden" not in low, head
    assert b"return-path" not in low, head
    assert b"X-Keep: yes\r\n" in head
    assert f"Subject: test {tok}".encode() in head
    assert message.endswith(b"\r\n\r\n" + BODY_BCC), message[-300:]


@pytest.mark.parametrize("role", ["smtp", "submission"])
def test_bcc_and_return_path_removed_local(inst, role):
    tok = token()
    msg = bare_message(tok, extra=NASTY, body=BODY_BCC)
    if role == "smtp":
        with inst.smtp() as s:
            assert s.sendmail("sender@example.net", [BOB], msg) == {}
        sender = "sender@example.net"
    else:
        submit(inst, [BOB], msg)
        sender = ALICE
    data = inst.wait_message(BOB, tok)[0].read_bytes()
    # exactly one Return-Path, ours, first
    assert data.startswith(f"Return-Path: <{sender}>\r\n".encode()), data[:200]
    assert headers_of(data).lower().count(b"return-path:") == 1, headers_of(data)
    check_cleaned(th.split_delivered(data)[2], tok)


def test_bcc_folded_last_field(inst):
    tok = token()
    msg = bare_message(tok, extra=b"Bcc: a@example.net,\r\n b@example.net\r\n", body=b"x\r\n")
    with inst.smtp() as s:
        assert s.sendmail("sender@example.net", [BOB], msg) == {}
    stored = stored_message(inst.wait_message(BOB, tok)[0])
    assert stored == msg.replace(b"Bcc: a@example.net,\r\n b@example.net\r\n", b""), stored


def test_bcc_removed_in_relayed_mail(inst, peer):
    tok = token()
    rcpt = f"someone-{tok}@{RELAY_DOMAIN}"
    submit(inst, [rcpt], bare_message(tok, to=rcpt, extra=NASTY, body=BODY_BCC))
    sender, rcpts, data = peer.wait(tok)
    assert rcpts == [rcpt]
    check_cleaned(data, tok)
    assert not data.startswith(b"Return-Path"), data[:200]
    head = headers_of(data)
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head, head


# -- success reports ---------------------------------------------------------------------

def find_report(inst, needle, action, timeout=30):
    """The report in alice's mailbox about needle whose Action is action, parsed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in inst.find_messages(ALICE, needle):
            data = p.read_bytes()
            if b"multipart/report" in data and f"Action: {action}".encode() in data:
                # a report has our Return-Path, and no Received (it was made here)
                body = data.split(b"\r\n", 1)[1]
                return data, email.message_from_bytes(body, policy=email.policy.default)
        time.sleep(0.2)
    raise AssertionError(f"no {action} report about {needle} for {ALICE}:\n"
                         f"{inst.log_tail(40)}")


def status_fields(msg, kind="message/delivery-status"):
    parts = [p for p in msg.walk() if p.get_content_type() == kind]
    assert parts, [p.get_content_type() for p in msg.walk()]
    return parts[0]


def per_recipient(status_part):
    """The per-recipient field blocks of a delivery-status part, as dicts."""
    payload = status_part.get_payload()
    if isinstance(payload, list):   # email parses message/delivery-status into blocks
        return [{k.lower(): str(v) for k, v in b.items()} for b in payload[1:]]
    text = payload if isinstance(payload, str) else payload.decode()
    blocks = [b for b in re.split(r"\r?\n\r?\n", text.strip()) if b.strip()][1:]
    out = []
    for b in blocks:
        d = {}
        for line in re.split(r"\r?\n(?![ \t])", b):
            k, _, v = line.partition(":")
            d[k.strip().lower()] = " ".join(v.split())
        out.append(d)
    return out


def test_success_report_local_delivery(inst):
    tok = token()
    msg = make_message(tok, sender=ALICE, to=BOB)
    submit(inst, [BOB], msg, mail_options=["RET=FULL", f"ENVID=env-{tok}"],
           rcpt_options=["NOTIFY=SUCCESS", f"ORCPT=rfc822;orig-{tok}@example.test"])
    inst.wait_message(BOB, tok)
    data, rep = find_report(inst, tok, "delivered")
    assert rep.get_content_type() == "multipart/report"
    assert rep.get_param("report-type") == "delivery-status"
    assert str(rep["Subject"]) == "Successful Mail Delivery Report"
    assert data.startswith(b"Return-Path: <>\r\n"), data[:100]
    rcpts = per_recipient(status_fields(rep))
    assert len(rcpts) == 1, rcpts
    assert rcpts[0]["action"] == "delivered"
    assert rcpts[0]["status"].startswith("2."), rcpts
    assert rcpts[0]["final-recipient"] == f"rfc822; {BOB}"
    assert rcpts[0]["original-recipient"] == f"rfc822; orig-{tok}@example.test"
    assert f"Original-Envelope-Id: env-{tok}".encode() in data
    # a success report returns the header only, even with RET=FULL (RFC 3461 6.2)
    types = [p.get_content_type() for p in rep.walk()]
    assert "text/rfc822-headers" in types and "message/rfc822" not in types, types


def test_no_success_report_without_notify(inst):
    tok = token()
    submit(inst, [BOB], make_message(tok, sender=ALICE, to=BOB))
    inst.wait_message(BOB, tok)
    time.sleep(1.5)
    assert not [p for p in inst.find_messages(ALICE, tok)
                if b"multipart/report" in p.read_bytes()]


def test_relayed_report_when_next_hop_has_no_dsn(inst, peer):
    tok = token()
    rcpt = f"far-{tok}@{RELAY_DOMAIN}"
    submit(inst, [rcpt], make_message(tok, sender=ALICE, to=rcpt),
           rcpt_options=["NOTIFY=SUCCESS,FAILURE"])
    peer.wait(tok)
    data, rep = find_report(inst, tok, "relayed")
    assert rep.get_param("report-type") == "delivery-status"
    rcpts = per_recipient(status_fields(rep))
    assert rcpts[0]["action"] == "relayed", rcpts
    assert rcpts[0]["final-recipient"] == f"rfc822; {rcpt}"
    assert rcpts[0]["remote-mta"] == "dns; 127.0.0.1", rcpts


# -- RFC 6533 reports ----------------------------------------------------------------------

def test_utf8_bounce_uses_global_types(inst, peer):
    tok = token()
    rcpt = f"reject-{tok}@{RELAY_DOMAIN}"
    msg = (f"From: Jörg <{ALICE}>\r\nTo: <{rcpt}>\r\nSubject: Grüße {tok}\r\n"
           f"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <{tok}@x>\r\n\r\n"
           f"Körper {tok}\r\n").encode()
    with inst.submission_login() as s:
        assert s.sendmail(ALICE, [rcpt], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    data, rep = find_report(inst, tok, "failed")
    types = [p.get_content_type() for p in rep.walk()]
    assert "message/global-delivery-status" in types, types
    assert "message/global-headers" in types, types
    assert "message/delivery-status" not in types and "text/rfc822-headers" not in types
    assert rep.get_param("report-type") == "delivery-status"
    text = data.split(b"Content-Type: message/global-delivery-status", 1)[1]
    text = text.split(b"Content-Type: message/global-headers", 1)[0]
    assert b"Action: failed" in text and b"Status: 5.1.1" in text, text
    returned = data.split(b"Content-Type: message/global-headers", 1)[1]
    assert f"Subject: Grüße {tok}".encode() in returned, returned[:500]


def test_ascii_bounce_keeps_classic_types(inst, peer):
    tok = token()
    rcpt = f"reject-{tok}@{RELAY_DOMAIN}"
    submit(inst, [rcpt], make_message(tok, sender=ALICE, to=rcpt))
    data, rep = find_report(inst, tok, "failed")
    types = [p.get_content_type() for p in rep.walk()]
    assert "message/delivery-status" in types and "text/rfc822-headers" in types, types


# -- tern queue bounce -------------------------------------------------------------------

def test_queue_bounce_reports_last_error(inst, peer):
    tok = token()
    rcpt = f"defer-{tok}@{RELAY_DOMAIN}"
    submit(inst, [rcpt], make_message(tok, sender=ALICE, to=rcpt))
    deadline = time.monotonic() + 30
    while True:
        out = inst.queue_list()
        if f"peer says {tok}" in out:
            break
        assert time.monotonic() < deadline, f"no deferral recorded:\n{out}"
        time.sleep(0.2)
    qid = None
    for line in out.splitlines():
        if line and not line[0].isspace():
            qid = line.split()[0]
        elif rcpt in line:
            break
    assert qid, out
    r = inst.cli("queue", "bounce", qid)
    assert r.returncode == 0, r
    inst.cli("queue", "flush")
    data, rep = find_report(inst, tok, "failed")
    text = data.decode("utf-8", "replace")
    assert "administrator" in text, text[:3000]
    assert f"peer says {tok}" in text, text[:3000]
    rcpts = per_recipient(status_fields(rep))
    assert f"peer says {tok}" in rcpts[0]["diagnostic-code"], rcpts
