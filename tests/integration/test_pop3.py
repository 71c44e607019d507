"""POP3 (RFC 1939, 2449, 2595, 5034) with Python's poplib, curl and fetchmail."""
import base64
import os
import poplib
import shutil
import socket
import subprocess
import time

import pytest

import tern_harness as th
from tern_harness import make_message, tls_context, token

BOB = "bob@example.test"
BOB_PW = th.USERS[BOB]


def deliver(inst, tok, body=None, to=BOB):
    msg = make_message(tok, to=to, body=body)
    s = inst.smtp()
    s.sendmail("sender@example.net", [to], msg)
    s.quit()
    return msg


def pop_stls(inst):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=th.IO_TIMEOUT)
    p.stls(context=tls_context())
    return p


def login(inst, user=BOB, pw=BOB_PW):
    p = pop_stls(inst)
    p.user(user)
    p.pass_(pw)
    return p


@pytest.fixture
def inst(tern_factory):
    """A fresh instance per test: POP3 tests delete mail."""
    return tern_factory()


def retr_bytes(p, n):
    resp, lines, octets = p.retr(n)
    return b"\r\n".join(lines) + b"\r\n", octets


def test_capa_before_and_after_stls(inst):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=th.IO_TIMEOUT)
    caps = p.capa()
    for c in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS",
              "IMPLEMENTATION"):
        assert c in caps, caps
    # no password may be offered in clear: USER and SASL appear once TLS is up
    assert "USER" not in caps and "SASL" not in caps, caps
    p.stls(context=tls_context())
    caps = p.capa()
    assert "STLS" not in caps
    assert "USER" in caps and "PLAIN" in caps["SASL"] and "LOGIN" in caps["SASL"], caps
    p.quit()


def test_plaintext_login_refused_before_tls(inst):
    p = poplib.POP3("127.0.0.1", inst.ports["pop3"], timeout=th.IO_TIMEOUT)
    with pytest.raises(poplib.error_proto) as e:
        p.user(BOB)
        p.pass_(BOB_PW)
    assert b"TLS" in e.value.args[0]
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{BOB}\0{BOB_PW}".encode()).decode())
    p.quit()


def test_stat_list_retr_exact_sizes_and_bytes(inst):
    toks = [token() for _ in range(3)]
    sent = [deliver(inst, t, body=b"line one\r\n.starts with a dot\r\n..two dots\r\n")
            for t in toks]
    p = login(inst)
    count, total = p.stat()
    assert count == 3
    files = sorted(inst.mailbox_files(BOB), key=lambda f: f.name)
    assert total == sum(f.stat().st_size for f in files)
    resp, listing, _ = p.list()
    sizes = {int(a): int(b) for a, b in (l.split() for l in listing)}
    for i in range(1, 4):
        data, octets = retr_bytes(p, i)
        assert len(data) == sizes[i], "LIST size must equal the bytes RETR sends"
        # poplib undoes byte-stuffing: what we get is the stored file, trace headers and all
        assert any(data == f.read_bytes() for f in files)
        assert data.endswith(sent[i - 1])
    p.quit()


def test_list_single_and_errors(inst):
    deliver(inst, token())
    p = login(inst)
    assert p.list(1).startswith(b"+OK 1 ")
    for bad in ("2", "0", "x", "-1", "99999999999999999999"):
        with pytest.raises(poplib.error_proto):
            p.list(bad)
    with pytest.raises(poplib.error_proto):
        p._shortcmd("FROB")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("TOP 1")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("TOP 1 x")
    p.quit()


def test_top(inst):
    deliver(inst, token(), body=b"b1\r\n.b2\r\nb3\r\nb4\r\n")
    p = login(inst)
    resp, lines, _ = p.top(1, 2)
    i = lines.index(b"")
    assert lines[i + 1:] == [b"b1", b".b2"]
    assert any(l.startswith(b"Subject: ") for l in lines[:i])
    resp, lines, _ = p.top(1, 0)
    assert lines[-1] == b"" and lines.count(b"") == 1
    p.quit()


def test_dele_takes_effect_only_at_quit_and_rset(inst):
    for _ in range(3):
        deliver(inst, token())
    p = login(inst)
    p.dele(1)
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    with pytest.raises(poplib.error_proto):
        p.dele(1)
    assert p.stat()[0] == 2
    p.rset()
    assert p.stat()[0] == 3
    p.dele(2)
    assert len(inst.mailbox_files(BOB)) == 3, "nothing is deleted before QUIT"
    p.quit()
    assert len(inst.mailbox_files(BOB)) == 2
    p = login(inst)
    assert p.stat()[0] == 2
    p.quit()


def test_dropped_connection_deletes_nothing(inst):
    for _ in range(2):
        deliver(inst, token())
    p = login(inst)
    p.dele(1)
    p.dele(2)
    p.sock.close()
    p = None
    # a new login must find both (it also waits for the old session's lock to go)
    deadline = time.monotonic() + 10
    while True:
        try:
            p = login(inst)
            break
        except poplib.error_proto as e:
            assert b"IN-USE" in e.args[0] and time.monotonic() < deadline
            time.sleep(0.05)
    assert p.stat()[0] == 2
    p.quit()
    assert len(inst.mailbox_files(BOB)) == 2


def test_in_use(inst):
    deliver(inst, token())
    p1 = login(inst)
    with pytest.raises(poplib.error_proto) as e:
        login(inst)
    assert b"[IN-USE]" in e.value.args[0]
    p1.quit()
    p2 = login(inst)
    p2.quit()


def test_new_mail_does_not_renumber_session(inst):
    deliver(inst, token())
    p = login(inst)
    deliver(inst, token())
    assert p.stat()[0] == 1
    with pytest.raises(poplib.error_proto):
        p.retr(2)
    p.quit()
    p = login(inst)
    assert p.stat()[0] == 2
    p.quit()


def test_uidl_stable_and_never_reused(inst):
    for _ in range(3):
        deliver(inst, token())
    p = login(inst)
    first = dict(l.split() for l in p.uidl()[1])
    assert len(set(first.values())) == 3
    assert all(0x21 <= c <= 0x7e for v in first.values() for c in v)
    assert p.uidl(2).split()[2] == first[b"2"]
    p.dele(3)
    p.quit()
    deliver(inst, token())
    p = login(inst)
    second = dict(l.split() for l in p.uidl()[1])
    assert second[b"1"] == first[b"1"] and second[b"2"] == first[b"2"]
    assert second[b"3"] not in first.values(), "a deleted message's UIDL was reused"
    p.quit()


def test_wrong_password_and_auth_mechanisms(inst):
    p = pop_stls(inst)
    p.user(BOB)
    with pytest.raises(poplib.error_proto) as e:
        p.pass_("wrong")
    assert b"[AUTH]" in e.value.args[0]
    p.quit()
    # AUTH PLAIN with an initial response (SASL-IR)
    p = pop_stls(inst)
    ir = base64.b64encode(f"\0{BOB}\0{BOB_PW}".encode()).decode()
    assert p._shortcmd("AUTH PLAIN " + ir).startswith(b"+OK")
    p.quit()
    # AUTH LOGIN step by step
    p = pop_stls(inst)
    assert p._shortcmd("AUTH LOGIN").startswith(b"+ ")
    assert p._shortcmd(base64.b64encode(BOB.encode()).decode()).startswith(b"+ ")
    assert p._shortcmd(base64.b64encode(BOB_PW.encode()).decode()).startswith(b"+OK")
    p.quit()


def test_pop3s_implicit_tls(inst):
    deliver(inst, token())
    p = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=tls_context(),
                        timeout=th.IO_TIMEOUT)
    p.user(BOB)
    p.pass_(BOB_PW)
    assert p.stat()[0] == 1
    p.quit()


def test_pipelining(inst):
    deliver(inst, token())
    deliver(inst, token())
    sock = tls_context().wrap_socket(
        socket.create_connection(("127.0.0.1", inst.ports["pop3s"]), timeout=th.IO_TIMEOUT),
        server_hostname=th.HOSTNAME)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"+OK")
    sock.sendall(f"USER {BOB}\r\nPASS {BOB_PW}\r\nSTAT\r\nLIST 2\r\nNOOP\r\nQUIT\r\n".encode())
    replies = [f.readline() for _ in range(6)]
    assert [r[:3] for r in replies] == [b"+OK"] * 6, replies
    assert replies[2].startswith(b"+OK 2 ")
    sock.close()


def test_bad_input_keeps_serving(inst):
    deliver(inst, token())
    sock = socket.create_connection(("127.0.0.1", inst.ports["pop3"]), timeout=th.IO_TIMEOUT)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(b"\x00\xff\xfe\r\n" + b"A" * 10000 + b"\r\nSTAT\r\nRETR 1\r\nNOOP\r\n")
    for _ in range(5):
        assert f.readline().startswith(b"-ERR")
    sock.close()
    p = login(inst)
    assert p.stat()[0] == 1
    p.quit()


def test_large_message_streams(inst):
    big = b"".join(b"%08d %s\r\n" % (i, b"x" * 90) for i in range(8000))  # ~800 KB
    tok = token()
    deliver(inst, tok, body=big)
    p = login(inst)
    data, octets = retr_bytes(p, 1)
    assert big in data
    assert len(data) == p.stat()[1]
    p.quit()


def test_lf_only_file_dropped_into_new_is_served_as_crlf(inst):
    deliver(inst, token())  # creates the Maildir
    new = inst.maildir(BOB) / "new"
    raw = b"From: x@example.org\nSubject: dropped\n\nhello\n.dot\n"
    (new / "1700000000.dropped.host").write_bytes(raw)
    p = login(inst)
    count, total = p.stat()
    assert count == 2
    resp, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    bodies = [retr_bytes(p, i)[0] for i in (1, 2)]
    dropped = [b for b in bodies if b"Subject: dropped" in b][0]
    assert dropped == raw.replace(b"\n", b"\r\n")
    assert sorted(sizes) == sorted(len(b) for b in bodies)
    p.quit()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_pop3_and_pop3s(inst):
    tok = token()
    deliver(inst, tok)
    for url in (f"pop3://127.0.0.1:{inst.ports['pop3']}/1",
                f"pop3s://127.0.0.1:{inst.ports['pop3s']}/1"):
        args = ["curl", "-sS", "-k", "--user", f"{BOB}:{BOB_PW}", url]
        if url.startswith("pop3://"):
            args.insert(1, "--ssl-reqd")
        r = subprocess.run(args, capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert tok.encode() in r.stdout
    # LIST over curl
    r = subprocess.run(["curl", "-sS", "-k", "--ssl-reqd", "--user", f"{BOB}:{BOB_PW}",
                        f"pop3://127.0.0.1:{inst.ports['pop3']}/"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"1 "), r


def _fetchmail(inst, tmp_path, keep):
    out = tmp_path / f"fetched-{keep}.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 service {inst.ports['pop3']} protocol pop3 uidl\n"
        f"  user '{BOB}' password '{BOB_PW}' is nobody here\n"
        f"  sslproto TLS1.2+ no sslcertck {'keep' if keep else 'nokeep'} fetchall\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n")
    os.chmod(rc, 0o600)
    env = dict(os.environ, HOME=str(tmp_path), FETCHMAILHOME=str(tmp_path))
    r = subprocess.run(["fetchmail", "-f", str(rc), "-v", "--nodetach", "--nosyslog"],
                       capture_output=True, timeout=60, env=env)
    return r, out


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail not installed")
def test_fetchmail_keep_then_delete(inst, tmp_path):
    toks = [token() for _ in range(2)]
    for t in toks:
        deliver(inst, t)
    r, out = _fetchmail(inst, tmp_path, keep=True)
    assert r.returncode == 0, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    text = out.read_bytes()
    assert all(t.encode() in text for t in toks)
    assert len(inst.mailbox_files(BOB)) == 2, "keep must leave the mail on the server"
    out.unlink()
    r, out = _fetchmail(inst, tmp_path, keep=False)
    assert r.returncode == 0, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    text = out.read_bytes()
    assert all(t.encode() in text for t in toks)
    assert len(inst.mailbox_files(BOB)) == 0, "nokeep must delete the mail at QUIT"
