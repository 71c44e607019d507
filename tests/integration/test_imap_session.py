"""IMAP session layer (RFC 9051/3501): greeting, CAPABILITY, STARTTLS and LOGINDISABLED,
LOGIN, AUTHENTICATE PLAIN (SASL-IR and continuation), imaps, ID, ENABLE, NAMESPACE, NOOP,
LOGOUT, state checks, bad-command limit, pipelining, literals and malformed input.
Clients: Python's imaplib and a raw socket (imap_raw.RawIMAP) where bytes matter."""
import imaplib
import ssl

import pytest

import tern_harness as th
from imap_raw import (BOB, BOB_PW, LOOPBACK_OK, RawIMAP, imap, plain_ir, raw_login,
                      status_of)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One instance for the read-only session tests; plaintext LOGIN allowed on loopback."""
    import conftest
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-imap-session"), settings=LOOPBACK_OK)
    conftest._LIVE.append(inst)
    try:
        conftest.provision_users(inst)
        inst.start()
    except BaseException:
        conftest._teardown_quiet(inst)
        raise
    yield inst
    conftest._teardown(inst)


def caps_of(line):
    """b'* CAPABILITY A B' or b't1 OK [CAPABILITY A B] ...' -> {'A', 'B'} (upper case)"""
    text = line.decode()
    if "[CAPABILITY " in text:
        text = text.split("[CAPABILITY ", 1)[1].split("]", 1)[0]
    else:
        assert text.upper().startswith("* CAPABILITY "), text
        text = text[len("* CAPABILITY "):]
    return {c.upper() for c in text.split()}


def capability(c):
    untagged = c.ok("CAPABILITY")
    lines = [u for u in untagged if u.upper().startswith(b"* CAPABILITY ")]
    assert len(lines) == 1, c.text()
    return caps_of(lines[0])


def test_greeting_and_capability(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        assert c.greeting.startswith(b"* OK"), c.greeting
        caps = capability(c)
        for cap in ("IMAP4REV1", "IMAP4REV2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE",
                    "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
                    "LIST-EXTENDED", "LIST-STATUS", "ESEARCH", "SEARCHRES", "CONDSTORE",
                    "QRESYNC", "STARTTLS"):
            assert cap in caps, (cap, caps)
        # loopback plaintext is allowed on this instance: mechanisms offered
        assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps, caps
        c.login()
        after = capability(c)
        assert "STARTTLS" not in after and not any(x.startswith("AUTH=") for x in after), after
        assert "IMAP4REV1" in after


def test_logindisabled_until_starttls(tern_factory):
    """Without allow_plaintext_auth_loopback a cleartext session may not send a password."""
    inst = tern_factory()
    with RawIMAP(inst.ports["imap"]) as c:
        caps = capability(c)
        assert "LOGINDISABLED" in caps and "STARTTLS" in caps, caps
        assert not any(x.startswith("AUTH=") for x in caps), caps
        u, t = c.cmd(f'LOGIN "{BOB}" "{BOB_PW}"')
        assert status_of(t) == "NO" and b"[PRIVACYREQUIRED]" in t, c.text()
        u, t = c.cmd(f"AUTHENTICATE PLAIN {plain_ir(BOB, BOB_PW)}")
        assert status_of(t) == "NO" and b"[PRIVACYREQUIRED]" in t, c.text()
        c.ok("NOOP")
    # imaplib's STARTTLS, then the capabilities change and LOGIN works
    m = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    assert "LOGINDISABLED" in m.capabilities
    m.starttls(ssl_context=th.tls_context())
    assert "LOGINDISABLED" not in m.capabilities and "STARTTLS" not in m.capabilities, \
        m.capabilities
    assert "AUTH=PLAIN" in m.capabilities, m.capabilities
    typ, data = m.login(BOB, BOB_PW)
    assert typ == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK"
    m.logout()


def test_starttls_twice_refused_and_pipelined_plaintext_dropped(tern_factory):
    inst = tern_factory()
    with RawIMAP(inst.ports["imap"]) as c:
        # a command pipelined behind STARTTLS was sent in clear: it must be dropped
        c.send("a STARTTLS\r\nb CAPABILITY\r\n")
        line = c.readline()
        assert line.startswith(b"a OK"), c.text()
        assert c.buf == b"", f"bytes after the STARTTLS OK in clear: {c.buf!r}"
        c.sock = th.tls_context().wrap_socket(c.sock, server_hostname=th.HOSTNAME)
        u, t = c.cmd("NOOP")
        assert status_of(t) == "OK" and not any(x.startswith(b"b ") for x in u), c.text()
        u, t = c.cmd("STARTTLS")
        assert status_of(t) == "BAD", c.text()
        c.login()


def test_login_good_and_bad(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.ports["imap"], timeout=th.IO_TIMEOUT)
    with pytest.raises(imaplib.IMAP4.error) as e:
        m.login(BOB, "not-the-password")
    assert "AUTHENTICATIONFAILED" in str(e.value), e.value
    typ, data = m.login(BOB, BOB_PW)
    assert typ == "OK"
    # the OK of LOGIN carries the new capabilities (RFC 9051 §6.2.3)
    assert b"[CAPABILITY " in data[0], data
    m.logout()
    # an unknown user fails the same way (no user enumeration)
    with RawIMAP(srv.ports["imap"]) as c:
        u, t = c.cmd('LOGIN "nobody-here@example.test" "x"')
        assert status_of(t) == "NO" and b"[AUTHENTICATIONFAILED]" in t, c.text()


def test_login_utf8_user(srv):
    """A user name with 8-bit characters, sent as a literal (RFC 9051 allows UTF-8 strings)."""
    if "jörg@example.test" in srv.user_errors:
        pytest.fail(f"user jörg not created: {srv.user_errors['jörg@example.test']!r}")
    user = "jörg@example.test".encode()
    pw = th.USERS["jörg@example.test"].encode()
    with RawIMAP(srv.ports["imap"]) as c:
        c.send(b"a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(user), user, len(pw), pw))
        u, t = c.read_response("a")
        assert status_of(t) == "OK", c.text()


def test_too_many_auth_failures_bye(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        tagged = []
        for i in range(3):
            u, t = c.cmd(f'LOGIN "{BOB}" "wrong{i}"')
            tagged.append(t)
        assert all(status_of(t) == "NO" for t in tagged), c.text()
        rest = c.read_until_eof(5)
        assert rest.startswith(b"* BYE"), c.text()


def test_authenticate_plain_sasl_ir(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        u, t = c.cmd(f"AUTHENTICATE PLAIN {plain_ir(BOB, BOB_PW)}")
        assert status_of(t) == "OK", c.text()
        c.ok("SELECT INBOX")


def test_authenticate_plain_continuation(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        line = c.readline()
        assert line.startswith(b"+"), c.text()
        c.send(plain_ir(BOB, BOB_PW) + "\r\n")
        u, t = c.read_response("a")
        assert status_of(t) == "OK", c.text()
        c.ok("NOOP")


def test_authenticate_cancel_and_bad_response(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        c.send("a AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send("*\r\n")  # the client cancels (RFC 9051 §6.2.2)
        u, t = c.read_response("a")
        assert status_of(t) == "BAD", c.text()
        c.send("b AUTHENTICATE PLAIN\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send(plain_ir(BOB, "wrong") + "\r\n")
        u, t = c.read_response("b")
        assert status_of(t) == "NO", c.text()
        u, t = c.cmd("AUTHENTICATE X-UNKNOWN-MECH")
        assert status_of(t) in ("NO", "BAD"), c.text()
        c.login()


def test_imaps_implicit_tls(srv):
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    assert "STARTTLS" not in m.capabilities, m.capabilities
    assert "AUTH=PLAIN" in m.capabilities and "LOGINDISABLED" not in m.capabilities
    assert isinstance(m.sock, ssl.SSLSocket)
    m.login(BOB, BOB_PW)
    typ, data = m.list()
    assert typ == "OK" and any(b"INBOX" in d for d in data), data
    m.logout()


def test_id(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        u = c.ok('ID ("name" "pytest" "version" "1")')
        assert len(u) == 1 and u[0].startswith(b"* ID ("), c.text()
        assert b'"name"' in u[0]
        u = c.ok("ID NIL")
        assert u[0].startswith(b"* ID "), c.text()
        u, t = c.cmd("ID")
        assert status_of(t) == "BAD", c.text()


def test_enable(srv):
    with raw_login(srv) as c:
        u = c.ok("ENABLE CONDSTORE X-NOT-A-CAPABILITY utf8=accept")
        assert len(u) == 1, c.text()
        enabled = {x.upper() for x in u[0].decode().split()[2:]}
        assert enabled == {"CONDSTORE", "UTF8=ACCEPT"}, c.text()
        # already on: not listed again (RFC 5161 §3.2)
        u = c.ok("ENABLE CONDSTORE")
        assert u == [b"* ENABLED"], c.text()
        # CONDSTORE on: SELECT reports HIGHESTMODSEQ, STORE answers carry MODSEQ
        u = c.ok("SELECT INBOX")
        assert any(b"[HIGHESTMODSEQ " in x for x in u), c.text()
    with RawIMAP(srv.ports["imap"]) as c:
        u, t = c.cmd("ENABLE CONDSTORE")  # only once authenticated
        assert status_of(t) == "BAD", c.text()


def test_namespace_noop(srv):
    with raw_login(srv) as c:
        u = c.ok("NAMESPACE")
        assert u == [b'* NAMESPACE (("" "/")) NIL NIL'], c.text()
        assert c.ok("NOOP") == []
        c.ok("SELECT INBOX")
        c.ok("NOOP")
        c.ok("CHECK")


def test_logout_bye_then_ok_then_close(srv):
    with raw_login(srv) as c:
        c.send("z LOGOUT\r\n")
        assert c.readline().startswith(b"* BYE"), c.text()
        assert c.readline().startswith(b"z OK"), c.text()
        assert c.read_until_eof(5) == b"", c.text()


def test_unknown_command_and_wrong_state(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        u, t = c.cmd("XYZZY")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("SELECT INBOX")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("LIST \"\" *")
        assert status_of(t) == "BAD", c.text()
        c.login()
        u, t = c.cmd("FETCH 1 FLAGS")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("STORE 1 +FLAGS (\\Seen)")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("EXPUNGE")
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd(f'LOGIN "{BOB}" "{BOB_PW}"')  # already logged in
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("UID")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")


def test_too_many_bad_commands_bye(tern_factory):
    inst = tern_factory(settings=dict(LOOPBACK_OK, imap_max_bad_commands="5"))
    with RawIMAP(inst.ports["imap"]) as c:
        for i in range(5):
            u, t = c.cmd(f"BOGUS{i}")
            assert status_of(t) == "BAD", c.text()
        c.send("x BOGUS\r\n")
        rest = c.read_until_eof(5)
        assert b"* BYE" in rest, c.text()
        assert rest.rstrip().endswith(b"]") or b"BYE" in rest.splitlines()[-1], c.text()


def test_pipelined_commands_answered_in_order(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        # LOGIN runs off the event loop: what follows it must wait for its answer
        c.send(f'a NOOP\r\nb CAPABILITY\r\nc LOGIN "{BOB}" "{BOB_PW}"\r\n'
               'd SELECT INBOX\r\ne LIST "" INBOX\r\nf UNSELECT\r\ng LOGOUT\r\n')
        data = c.read_until_eof(15)
        tagged = [ln.split(b" ", 2)[:2] for ln in data.split(b"\r\n")
                  if ln and not ln.startswith(b"*")]
        assert tagged == [[t, b"OK"] for t in (b"a", b"b", b"c", b"d", b"e", b"f", b"g")], \
            data.decode(errors="replace")
        # untagged data sits between the right tagged lines
        assert data.index(b"* CAPABILITY") < data.index(b"b OK")
        assert data.index(b"c OK") < data.index(b"EXISTS") < data.index(b"d OK")
        assert data.index(b'* LIST') > data.index(b"d OK")


def test_synchronising_literal(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        user, pw = BOB.encode(), BOB_PW.encode()
        c.send(b"a LOGIN {%d}\r\n" % len(user))
        cont = c.readline()
        assert cont.startswith(b"+"), c.text()
        c.send(user + b" {%d}\r\n" % len(pw))
        assert c.readline().startswith(b"+"), c.text()
        c.send(pw + b"\r\n")
        u, t = c.read_response("a")
        assert status_of(t) == "OK", c.text()
        # a {5} literal as a mailbox name
        c.send(b"b CREATE {5}\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send(b"lit-5\r\n")
        u, t = c.read_response("b")
        assert status_of(t) == "OK", c.text()
        u = c.ok('LIST "" lit-5')
        assert len(u) == 1 and u[0].endswith(b"lit-5"), c.text()


def test_literal_plus_login(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        c.send(b"a LOGIN {16+}\r\nbob@example.test {12+}\r\nbob-Secret-2\r\n")
        line = c.readline()
        # no continuation request for a non-synchronising literal
        assert line.startswith(b"a OK"), c.text()


def test_malformed_input_bad_and_session_goes_on(srv):
    with raw_login(srv) as c:
        u, t = c.cmd("STATUS INBOX (MESSAGES")  # unbalanced parenthesis
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        u, t = c.cmd("STATUS INBOX MESSAGES)")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        c.send(b"c SELECT INB\xc3\xa4X\r\n")  # 8-bit byte in an atom
        u, t = c.read_response("c")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        c.send(b'd SELECT "unterminated\r\n')
        u, t = c.read_response("d")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")
        # a synchronising literal over the limit is refused before it is sent
        c.send(b"e CREATE {999999999}\r\n")
        line = c.readline()
        assert line.startswith(b"e BAD"), c.text()
        c.ok("NOOP")
        # the literal's bytes were never sent, so the next line is a new command
        u = c.ok("SELECT INBOX")
        assert any(x.endswith(b"EXISTS") for x in u), c.text()
        c.ok("LOGOUT")


def test_empty_and_tagless_lines(srv):
    with RawIMAP(srv.ports["imap"]) as c:
        c.send(b"\r\n")
        line = c.readline()
        assert line.startswith(b"* BAD") or line.startswith(b"BAD"), c.text()
        c.send(b"notag\r\n")
        line = c.readline()
        assert b"BAD" in line, c.text()
        c.ok("NOOP")


def test_large_literal_outside_append_refused_with_answer(srv):
    """A literal over the inline limit (64 KiB) but under APPENDLIMIT is only streamed for
    APPEND: any other command, and APPEND before login, gets a tagged BAD at once (not
    silence, and for {n} no continuation), and the session stays in sync."""
    big = 70000
    with RawIMAP(srv.ports["imap"]) as c:
        c.send(f"a1 LOGIN {{{big}}}\r\n")
        line = c.readline()
        assert line.startswith(b"a1 BAD"), c.text()
        c.ok("NOOP")
        c.send(f"a2 APPEND INBOX {{{big}}}\r\n")
        assert c.readline().startswith(b"a2 BAD"), c.text()
        c.ok("NOOP")
        # non-synchronising: its bytes come anyway and are skipped
        c.send(f"a3 LOGIN {{{big}+}}\r\n".encode() + b"x" * big + b" y\r\n")
        assert c.readline().startswith(b"a3 BAD"), c.text()
        c.ok("NOOP")
        c.login()
        c.ok("SELECT INBOX")
        c.send(f"a4 SEARCH SUBJECT {{{big}}}\r\n")
        assert c.readline().startswith(b"a4 BAD"), c.text()
        c.send(f"a5 SEARCH SUBJECT {{{big}+}}\r\n".encode() + b"x" * big + b"\r\n")
        assert c.readline().startswith(b"a5 BAD"), c.text()
        c.ok("NOOP")


def test_parser_limits_nesting_and_arguments(srv):
    with raw_login(srv) as c:
        c.ok("SELECT INBOX")
        u, t = c.cmd("SEARCH " + "(" * 40 + "ALL" + ")" * 40)
        assert status_of(t) == "BAD", c.text()
        u, t = c.cmd("SEARCH " + "NOT " * 20000 + "ALL")
        assert status_of(t) == "BAD", c.text()
        c.send(b"x1 NOOP " + b"A" * 70000 + b"\r\n")   # over the 64 KiB line limit
        u, t = c.read_response("x1")
        assert status_of(t) == "BAD", c.text()
        c.ok("NOOP")


def test_authenticate_login_mechanism(srv):
    """AUTH=LOGIN is advertised: username and password as two continuation rounds."""
    import base64
    with RawIMAP(srv.ports["imap"]) as c:
        c.send("a AUTHENTICATE LOGIN\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send(base64.b64encode(BOB.encode()).decode() + "\r\n")
        assert c.readline().startswith(b"+"), c.text()
        c.send(base64.b64encode(BOB_PW.encode()).decode() + "\r\n")
        u, t = c.read_response("a")
        assert status_of(t) == "OK", c.text()
        c.ok("SELECT INBOX")
