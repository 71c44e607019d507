"""Session details beyond the basics: tolerant EHLO names, STARTTLS injection, SIGHUP."""
import os
import signal
import time

import pytest

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


def _worker_rss_kb(inst, field="VmRSS"):
    """Resident memory of the master's children, summed (VmHWM: their peaks)."""
    total = 0
    for pid in children_of(inst.pid):
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                total += int(line.split()[1])
    return total


def test_client_that_never_reads_cannot_grow_memory(tern_factory):
    # Each EHLO reply is ~200 bytes; a client pipelining EHLOs and never reading must be
    # stopped by back-pressure (we pause input when 64 KiB of output waits), not buffered.
    inst = tern_factory()
    before = _worker_rss_kb(inst)
    c = RawSMTP("127.0.0.1", inst.ports["smtp"])
    sock = c.sock
    sock.setblocking(False)
    chunk = b"EHLO a\r\n" * 8192
    sent, deadline = 0, time.monotonic() + 4
    while time.monotonic() < deadline and sent < 64 * 1024 * 1024:
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
    time.sleep(0.5)
    grown = _worker_rss_kb(inst) - before
    sock.close()
    # Without back-pressure every accepted EHLO costs ~25x its size in queued replies.
    assert sent < 32 * 1024 * 1024, f"server kept reading: {sent} bytes accepted"
    assert grown < 40 * 1024, f"workers grew by {grown} kB after {sent} bytes of EHLO"


def test_bad_bdat_size_closes_instead_of_reading_chunk_as_commands(server):
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        c.send(b"BDAT 57\tLAST\r\nRSET\r\nMAIL FROM:<evil@x.example>\r\n")
        data = c.read_until_eof()
    text = data.decode(errors="replace") if isinstance(data, bytes) else "\n".join(data)
    assert "501 5.5.4" in text and "421 4.5.0" in text, text
    assert "250" not in text, f"chunk bytes were run as commands: {text!r}"


def test_rcpt_between_bdat_chunks_refused(server):
    with server.raw() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        c.send(b"BDAT 4\r\nabcd")
        assert_reply(c.read_reply(), 250)
        assert_reply(c.cmd("RCPT TO:<alice@example.test>"), 503, "5.5.1")
        assert_reply(c.cmd("RSET"), 250)


def test_bdat_after_helo_refused(server):
    with server.raw(ehlo=False) as c:
        assert c.cmd("HELO client.example")[0] == 250
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 250)
        assert_reply(c.cmd("RCPT TO:<bob@example.test>"), 250)
        assert_reply(c.cmd("BDAT 4 LAST"), 503, "5.5.1")


def test_bare_lf_command_refused(server):
    with server.raw() as c:
        c.send(b"NOOP\n")
        assert_reply(c.read_reply(), 500, "5.5.2")
        assert_reply(c.cmd("NOOP"), 250)


def test_sweep_does_not_follow_symlinked_incoming(tern_factory, tmp_path):
    # The run user owns spool/; if it (or a compromised worker) swaps spool/incoming for a
    # symlink, the start-up sweep must not delete what the link points to.
    inst = tern_factory()
    inst.stop()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    incoming = inst.data_dir / "spool" / "incoming"
    os.rename(incoming, inst.data_dir / "spool" / "incoming.old")
    os.symlink(victim, incoming)
    inst.start()
    assert (victim / "precious").exists(), "start-up sweep followed the symlink"


@pytest.mark.no_valgrind  # VmHWM under memcheck counts its shadow memory, not the worker's
def test_50mb_message_does_not_grow_the_worker_by_50mb(tern_factory):
    # DATA streams into the spool file through fixed buffers. ASan's quarantine would keep
    # freed chunks alive and hide that, so this instance runs with a small one.
    inst = tern_factory(settings={"max_message_size": str(60 * 1024 * 1024), "workers": "1"},
                        env={"ASAN_OPTIONS": "quarantine_size_mb=4:detect_leaks=1"})
    before = _worker_rss_kb(inst, "VmHWM")
    line = b"x" * 998 + b"\r\n"
    body = line * (50 * 1024 * 1024 // len(line))
    tok = token()
    msg = make_message(tok, body=body)
    s = inst.smtp()
    s.sendmail("sender@example.net", ["bob@example.test"], msg)
    peak = _worker_rss_kb(inst, "VmHWM")
    s.quit()
    assert inst.wait_message("bob@example.test", tok)
    assert peak - before < 20 * 1024, f"worker RSS grew {peak - before} kB for a 50 MB message"
