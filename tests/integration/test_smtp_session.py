"""Session details beyond the basics: tolerant EHLO names, STARTTLS injection, SIGHUP."""
import os
import signal
import time

from tern_harness import (HOSTNAME, RawSMTP, assert_reply, children_of, make_message,
                          tls_context, token)


def test_ehlo_name_with_underscore_and_trailing_dot_accepted(server):
    # RFC 5321 §4.1.4: a poor EHLO name is no reason to refuse mail.
    for name in ("MY_PC", "host.example.", "[127.0.0.1]"):
        with server.raw(ehlo=False) as c:
            # EHLO replies carry no enhanced code (RFC 2034 §3)
            code, lines = c.cmd(f"EHLO {name}")
            assert code == 250, lines
    with server.raw(ehlo=False) as c:
        assert_reply(c.cmd("EHLO"), 501, "5.5.4")
        assert_reply(c.cmd("EHLO bad\x01name"), 501, "5.5.4")
        assert_reply(c.cmd("EHLO two words"), 501, "5.5.4")


def test_starttls_discards_pipelined_plaintext(server):
    # RFC 3207 §4.2 / CVE-2011-0411: commands sent in clear after STARTTLS, in the same
    # packet, must not be executed inside the TLS session.
    c = RawSMTP("127.0.0.1", server.ports["submission"])
    try:
        c.read_reply()
        assert c.cmd("EHLO client.example")[0] == 250
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert_reply(c.read_reply(), 220)
        assert not c.buf, f"bytes after the STARTTLS reply: {c.buf!r}"
        c.sock = tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
        # Had the injected RSET run, its "250 2.0.0 Ok" would come before EHLO's reply.
        code, lines = c.cmd("EHLO client.example")
        assert code == 250 and "Hello" in lines[0], lines
        assert any("AUTH" in l for l in lines), lines
    finally:
        c.close()


def test_sighup_replaces_workers_and_keeps_serving(tern_factory):
    inst = tern_factory()
    before = set(children_of(inst.pid))
    os.kill(inst.pid, signal.SIGHUP)
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline:
        after = set(children_of(inst.pid))
        if len(after - before) >= 2 and len(after) == len(before):
            break
        time.sleep(0.05)
    assert len(after - before) >= 2, f"workers not replaced: before {before} after {after}"
    tok = token()
    s = inst.smtp()
    s.sendmail("sender@example.net", ["bob@example.test"], make_message(tok))
    s.quit()
    assert inst.wait_message("bob@example.test", tok)
