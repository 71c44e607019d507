"""The DSN ESMTP extension (RFC 3461): NOTIFY, RET, ENVID and ORCPT are advertised,
accepted, carried through the queue, and honoured in the bounce."""
import re
import time

import e2e_harness as eh
from test_mail_leaves import ALICE, check_bounce, find_dsn, make_message, token, wait_gone

ALICE_PW = eh.password_for(ALICE)


BODY_LINE = "a body line that only RET=FULL brings back"


def submit_dsn(alice, rcpt, tok, mail_opts=(), rcpt_opts=()):
    s = alice.submission_login(ALICE)
    try:
        assert "dsn" in s.esmtp_features, f"DSN not advertised: {s.esmtp_features}"
        code, resp = s.mail(ALICE, list(mail_opts))
        assert code == 250, (code, resp)
        code, resp = s.rcpt(rcpt, list(rcpt_opts))
        assert code == 250, (code, resp)
        code, resp = s.data(make_message(tok, ALICE, [rcpt], body=BODY_LINE + "\r\n"))
        assert code == 250, (code, resp)
    finally:
        s.quit()
    return re.search(rb"queued as (\S+)", resp).group(1).decode()


def test_bad_dsn_parameters_refused(alice):
    s = alice.submission_login(ALICE)
    try:
        assert s.mail(ALICE, ["RET=MAYBE"])[0] == 501
        assert s.mail(ALICE, ["ENVID=has space+"])[0] == 501
        assert s.mail(ALICE, ["RET=HDRS", "ENVID=abc+2B1"])[0] == 250
        assert s.rcpt("x@bob.test", ["NOTIFY=SOMETIMES"])[0] == 501
        assert s.rcpt("x@bob.test", ["ORCPT=nosemicolon"])[0] == 501
        assert s.rcpt("x@bob.test", ["FROB=1"])[0] == 555
        assert s.rcpt("x@bob.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x+40bob.test"])[0] == 250
    finally:
        s.rset()
        s.quit()


def test_orcpt_envid_and_ret_full_in_bounce(alice, bob):
    tok = token()
    qid = submit_dsn(alice, "nosuch-dsn@bob.test", tok,
                     mail_opts=["RET=FULL", "ENVID=env+2Bid-" + tok],
                     rcpt_opts=["NOTIFY=FAILURE", "ORCPT=rfc822;Original+40bob.test"])
    data = find_dsn(alice, ALICE, tok)
    check_bounce(data, "nosuch-dsn@bob.test", "5.1.1")
    text = data.decode("utf-8", "replace")
    assert "Original-Envelope-Id: env+2Bid-" in text or f"env+id-{tok}" in text, text[:3000]
    assert re.search(r"Original-Recipient: rfc822;\s*Original@bob\.test", text), text[:3000]
    # RET=FULL: the whole message comes back as message/rfc822, its body included
    returned = text.split("message/rfc822", 1)
    assert len(returned) == 2, f"no message/rfc822 part with RET=FULL:\n{text[:3000]}"
    assert BODY_LINE in returned[1], f"the returned message lacks its body:\n{text[:3000]}"
    wait_gone(alice, qid)


def test_notify_never_means_no_bounce(alice, bob):
    tok_never, tok_ref = token(), token()
    qid = submit_dsn(alice, "nosuch-never@bob.test", tok_never, rcpt_opts=["NOTIFY=NEVER"])
    wait_gone(alice, qid)
    # a reference bounce sent after it: once it is there, one for NEVER would be too
    submit_dsn(alice, "nosuch-ref2@bob.test", tok_ref)
    find_dsn(alice, ALICE, tok_ref)
    found = eh.th.files_containing(alice.data_dir / "mail", tok_never)
    assert not found, f"a bounce was sent despite NOTIFY=NEVER: {[str(p) for p in found]}"


def test_delay_warning_sent_once(own_hosts):
    """delay_warning_time: when a message is still deferred after it, the sender gets one
    RFC 3464 report with Action: delayed (not a bounce); the message stays queued."""
    # dead.test's MX (127.0.0.6) never answers
    warner = own_hosts("warner", users=["wes@warner.test"],
                       queue={"retry_min": "1", "retry_max": "1", "delay_warning_time": "2",
                              "max_queue_lifetime": "600"})
    tok = token()
    qid = None
    s = warner.submission_login("wes@warner.test")
    try:
        s.mail("wes@warner.test")
        s.rcpt("sam@dead.test")
        code, resp = s.data(make_message(tok, "wes@warner.test", ["sam@dead.test"]))
        assert code == 250, resp
        qid = re.search(rb"queued as (\S+)", resp).group(1).decode()
    finally:
        s.quit()
    data = find_dsn(warner, "wes@warner.test", tok, timeout=30)
    text = data.decode("utf-8", "replace")
    assert re.search(r"Action:\s*delayed", text, re.I), text[:3000]
    assert "Will-Retry-Until" in text, text[:3000]
    # more retries go by, but no second notice; the message is still queued
    time.sleep(3)
    assert len([p for p in warner.find_messages("wes@warner.test", tok)
                if b"multipart/report" in p.read_bytes()]) == 1
    assert qid in warner.queue(), warner.queue_cmd("list").stdout
