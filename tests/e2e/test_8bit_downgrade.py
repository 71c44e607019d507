"""A server without 8BITMIME never gets 8-bit data (RFC 6152): the message is converted to
quoted-printable/base64 when its headers allow, else it bounces with 5.6.3."""
import email
import email.policy

from test_mail_leaves import (ALICE, check_bounce, find_dsn, submit, token, wait_gone,
                              wait_until)


def submit_raw(alice, rcpt, raw):
    s = alice.submission_login(ALICE)
    try:
        s.mail(ALICE, ["BODY=8BITMIME"])
        s.rcpt(rcpt)
        code, resp = s.data(raw)
        assert code == 250, resp
    finally:
        s.quit()


def test_8bit_body_converted_for_7bit_server(net, alice):
    fake = net.fake_server("seven", "sink")
    fake.mode = "seven"
    tok = token()
    body = "Grüße aus Köln, ça va? €\r\n"
    raw = (f"From: <{ALICE}>\r\nTo: <u@seven.test>\r\nSubject: {tok}\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\n" + body).encode("utf-8")
    submit_raw(alice, "u@seven.test", raw)
    wait_until(lambda: [m for m in fake.messages if tok.encode() in m[2]], 30,
               lambda: f"the 7-bit peer got nothing; transcript: {fake.transcript[-20:]}")
    data = [m for m in fake.messages if tok.encode() in m[2]][0][2]
    assert all(b < 0x80 for b in data), "8-bit bytes reached a server without 8BITMIME"
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Content-Transfer-Encoding"].lower() == "quoted-printable", data[:500]
    assert msg.get_content().replace("\r\n", "\n") == body.replace("\r\n", "\n"), \
        msg.get_content()


def test_8bit_header_bounces_5_6_3(net, alice):
    fake = net.fake_server("seven", "sink")
    fake.mode = "seven"
    tok = token()
    raw = (f"From: <{ALICE}>\r\nTo: <u@seven.test>\r\nSubject: Grüße {tok}\r\n\r\n"
           "body\r\n").encode("utf-8")
    submit_raw(alice, "u@seven.test", raw)
    data = find_dsn(alice, ALICE, tok)
    check_bounce(data, "u@seven.test", "5.6.3")
