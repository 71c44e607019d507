"""`tern read`: list, show, save, delete, move and folders over IMAP (imaps, STARTTLS) and
POP3 (pop3s), against messages composed by Python's email package and sent by mutt."""
import email.utils
import imaplib
import os
import poplib
import shutil
import struct
import subprocess
import zlib
from email.message import EmailMessage
from email.headerregistry import Address
from pathlib import Path

import pytest

import tern_harness as th

BOB = "bob@example.test"
BOB_PW = th.USERS[BOB]
ALICE = "alice@example.test"
ALICE_PW = th.USERS[ALICE]

EX_USAGE, EX_DATAERR, EX_NOHOST, EX_PROTOCOL, EX_NOPERM = 64, 65, 68, 76, 77

SUBJECT = "Grüße aus Köln — ünïcødé"
TEXT = "Hallo Bob,\nhier ist der Text mit Umlauten: äöü ß, und ein Euro: €.\n"
RFC2231_NAME = "Straße über Ölfeld.txt"
HOSTILE_NAME = "../../etc/x"


def png_bytes():
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\0" + bytes([x * 16 % 256, 0, 255 - x * 16 % 256]) * 16 for x in range(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def compose(tok):
    """The test message: UTF-8 subject, accented display name, QP text, HTML alternative,
    a PNG, 200 KB of random bytes, an RFC 2231 name and a hostile name."""
    m = EmailMessage()
    m["From"] = Address("Jörg Müller", "joerg", "example.net")
    m["To"] = Address("Bob", "bob", "example.test")
    m["Subject"] = f"{SUBJECT} {tok}"
    m["Date"] = email.utils.formatdate(localtime=True)
    m.set_content(TEXT + f"token {tok}\n", cte="quoted-printable")
    m.add_alternative(f"<html><body><p>HTML {tok}</p></body></html>", subtype="html")
    files = {
        "picture.png": png_bytes(),
        "random.bin": os.urandom(200 * 1024),
        RFC2231_NAME: "Inhalt mit ä\n".encode("utf-8"),
        HOSTILE_NAME: b"must stay inside DIR\n",
    }
    m.add_attachment(files["picture.png"], maintype="image", subtype="png",
                     filename="picture.png")
    m.add_attachment(files["random.bin"], maintype="application", subtype="octet-stream",
                     filename="random.bin")
    m.add_attachment(files[RFC2231_NAME], maintype="text", subtype="plain",
                     filename=RFC2231_NAME)
    m.add_attachment(files[HOSTILE_NAME], maintype="application",
                     subtype="octet-stream", filename=HOSTILE_NAME)
    assert "filename*=" in m.as_string()  # Python wrote the RFC 2231 form
    return m.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), files


def deliver(inst, data, tok, to=BOB):
    with inst.smtp() as s:
        s.sendmail("joerg@example.net", [to], data)
    inst.wait_message(to, tok.encode())


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """An empty HOME: no client.conf of the machine's user interferes."""
    return tmp_path_factory.mktemp("home")


def tern_read(inst, home, *args, proto="imap", tls="implicit", user=BOB, pw=BOB_PW,
              insecure=True, server=None):
    port = {("imap", "implicit"): "imaps", ("imap", "starttls"): "imap",
            ("imap", "none"): "imap", ("pop3", "implicit"): "pop3s",
            ("pop3", "starttls"): "pop3", ("pop3", "none"): "pop3"}[(proto, tls)]
    env = dict(os.environ, HOME=str(home), TERN_PASSWORD=pw)
    env.pop("XDG_CONFIG_HOME", None)
    argv = ["read", "--protocol", proto, "--server",
            server or f"127.0.0.1:{inst.ports[port]}", "--tls", tls, "--user", user]
    if insecure:
        argv.append("--insecure")
    return th.run_tern(argv + list(args), env=env)


def find_number(result, tok):
    assert result.returncode == 0, result
    for line in result.stdout.splitlines():
        if tok in line:
            return line.split("\t")[0], line
    raise AssertionError(f"{tok} not listed: {result!r}")


@pytest.fixture(scope="module")
def composed(server):
    tok = th.token()
    data, files = compose(tok)
    deliver(server, data, tok)
    return tok, files


def check_list_show_save(server, home, tmp_path, tok, files, proto, tls):
    r = tern_read(server, home, "list", proto=proto, tls=tls)
    n, line = find_number(r, tok)
    cols = line.split("\t")
    assert cols[2] == "Jörg Müller", line
    assert cols[3] == f"{SUBJECT} {tok}", line
    assert int(cols[4]) > 200 * 1024, line
    assert len(cols[1]) == 16 and cols[1][4] == "-", line  # YYYY-MM-DD HH:MM

    r = tern_read(server, home, "show", n, proto=proto, tls=tls)
    assert r.returncode == 0, r
    out = r.stdout
    assert "From: Jörg Müller <joerg@example.net>" in out, out
    assert f"Subject: {SUBJECT} {tok}" in out, out
    assert "To: Bob <bob@example.test>" in out, out
    assert TEXT in out, out                       # QP and UTF-8 decoded, text/plain chosen
    assert "<p>" not in out and f"HTML {tok}" not in out, out
    assert "picture.png  image/png  %d bytes" % len(files["picture.png"]) in out, out
    assert "random.bin  application/octet-stream  204800 bytes" in out, out
    assert RFC2231_NAME in out, out

    d = tmp_path / f"save-{proto}-{tls}"
    r = tern_read(server, home, "save", n, str(d), proto=proto, tls=tls)
    assert r.returncode == 0, r
    saved = {p.name: p.read_bytes() for p in d.iterdir()}
    assert saved["picture.png"] == files["picture.png"]
    assert saved["random.bin"] == files["random.bin"]
    assert saved[RFC2231_NAME] == files[RFC2231_NAME]
    hostile = [k for k in saved if k not in ("picture.png", "random.bin", RFC2231_NAME)]
    assert len(hostile) == 1, saved.keys()
    assert "/" not in hostile[0] and not hostile[0].startswith(".") and ".." not in hostile[0]
    assert saved[hostile[0]] == files[HOSTILE_NAME]
    assert not (tmp_path / "etc").exists() and not (d.parent.parent / "etc").exists()

    # a second save never replaces: "name (2).ext"
    r = tern_read(server, home, "save", n, str(d), proto=proto, tls=tls)
    assert r.returncode == 0, r
    assert (d / "picture (2).png").read_bytes() == files["picture.png"]
    assert (d / "random (2).bin").read_bytes() == files["random.bin"]


def test_imaps_list_show_save(server, home, tmp_path, composed):
    tok, files = composed
    check_list_show_save(server, home, tmp_path, tok, files, "imap", "implicit")


def test_imap_starttls_list_show_save(server, home, tmp_path, composed):
    tok, files = composed
    check_list_show_save(server, home, tmp_path, tok, files, "imap", "starttls")


def test_pop3s_list_show_save(server, home, tmp_path, composed):
    tok, files = composed
    check_list_show_save(server, home, tmp_path, tok, files, "pop3", "implicit")


def test_imap_show_marks_seen_list_does_not(server, home):
    tok = th.token()
    data, _ = compose(tok)
    deliver(server, data, tok)
    r = tern_read(server, home, "list")
    n, line = find_number(r, tok)
    assert "\\Seen" not in line
    assert tern_read(server, home, "save", n, str(home / ("s" + tok))).returncode == 0
    n, line = find_number(tern_read(server, home, "list"), tok)
    assert "\\Seen" not in line, line            # save uses EXAMINE and BODY.PEEK
    assert tern_read(server, home, "show", n).returncode == 0
    n, line = find_number(tern_read(server, home, "list"), tok)
    assert "\\Seen" in line, line


def test_html_only_message_is_shown_as_text(server, home):
    tok = th.token()
    m = EmailMessage()
    m["From"] = "html@example.net"
    m["To"] = BOB
    m["Subject"] = f"html {tok}"
    m.set_content(f"<html><head><style>p {{color: red}}</style><title>T</title></head>"
                  f"<body><p>First &amp; para {tok}</p><p>Second&nbsp;one &lt;ok&gt; "
                  f"&#233;&#x20AC;</p><script>alert(1)</script><ul><li>one<li>two</ul>"
                  f"</body></html>", subtype="html", charset="iso-8859-1",
                  cte="quoted-printable")
    deliver(server, m.as_bytes().replace(b"\n", b"\r\n"), tok)
    n, _ = find_number(tern_read(server, home, "list"), tok)
    r = tern_read(server, home, "show", n)
    assert r.returncode == 0, r
    body = r.stdout.split("\n\n", 1)[1]
    assert f"First & para {tok}\n\nSecond one <ok> é€\n\n* one\n* two\n" in body, body
    assert "color" not in body and "alert" not in body and "<" not in body.replace("<ok>", "")


def test_folders_lists_special_use(server, home):
    r = tern_read(server, home, "folders")
    assert r.returncode == 0, r
    flags = {line.split("\t")[0]: line for line in r.stdout.splitlines()}
    assert "INBOX" in flags, r.stdout
    for name, flag in (("Sent", "\\Sent"), ("Trash", "\\Trash"), ("Drafts", "\\Drafts"),
                       ("Junk", "\\Junk")):
        assert name in flags and flag in flags[name], r.stdout


def imap_login(inst, user=ALICE, pw=ALICE_PW):
    c = imaplib.IMAP4_SSL("127.0.0.1", inst.ports["imaps"], ssl_context=th.tls_context())
    c.login(user, pw)
    return c


def imap_tokens(inst, folder, user=ALICE, pw=ALICE_PW):
    c = imap_login(inst, user, pw)
    typ, _ = c.select(folder, readonly=True)
    assert typ == "OK"
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    c.logout()
    return b"".join(x[1] for x in data if isinstance(x, tuple)).decode()


def simple(tok, to=ALICE):
    return th.make_message(tok, to=to)


def test_imap_delete_and_move(server, home):
    toks = [th.token() for _ in range(3)]
    for t in toks:
        with server.smtp() as s:
            s.sendmail("x@example.net", [ALICE], simple(t))
        server.wait_message(ALICE, t.encode())
    kw = dict(user=ALICE, pw=ALICE_PW)
    n, _ = find_number(tern_read(server, home, "list", **kw), toks[0])
    r = tern_read(server, home, "delete", n, **kw)
    assert r.returncode == 0, r
    inbox = imap_tokens(server, "INBOX")
    assert toks[0] not in inbox and toks[1] in inbox and toks[2] in inbox

    n, _ = find_number(tern_read(server, home, "list", **kw), toks[1])
    r = tern_read(server, home, "move", n, "Trash", **kw)
    assert r.returncode == 0, r
    assert toks[1] not in imap_tokens(server, "INBOX")
    assert toks[1] in imap_tokens(server, "Trash")
    r = tern_read(server, home, "--folder", "Trash", "list", **kw)
    find_number(r, toks[1])

    # move to a folder that does not exist: a clear error, the message stays
    n, _ = find_number(tern_read(server, home, "list", **kw), toks[2])
    r = tern_read(server, home, "move", n, "NoSuchFolder", **kw)
    assert r.returncode != 0 and "NoSuchFolder" in r.stderr, r
    assert toks[2] in imap_tokens(server, "INBOX")


def test_pop3_delete(tern_factory, home):
    inst = tern_factory()
    toks = [th.token() for _ in range(2)]
    for t in toks:
        with inst.smtp() as s:
            s.sendmail("x@example.net", [BOB], simple(t, to=BOB))
        inst.wait_message(BOB, t.encode())
    n, _ = find_number(tern_read(inst, home, "list", proto="pop3"), toks[0])
    r = tern_read(inst, home, "delete", n, proto="pop3")
    assert r.returncode == 0, r
    p = poplib.POP3_SSL("127.0.0.1", inst.ports["pop3s"], context=th.tls_context())
    p.user(BOB)
    p.pass_(BOB_PW)
    assert p.stat()[0] == 1
    _, lines, _ = p.retr(1)
    assert toks[1].encode() in b"\n".join(lines)
    p.quit()


def test_pop3_has_no_folders_or_move(server, home):
    r = tern_read(server, home, "folders", proto="pop3")
    assert r.returncode == EX_USAGE and "IMAP only" in r.stderr, r
    r = tern_read(server, home, "move", "1", "Trash", proto="pop3")
    assert r.returncode == EX_USAGE and "IMAP only" in r.stderr, r


def test_errors(server, home):
    r = tern_read(server, home, "list", pw="wrong-password")
    assert r.returncode == EX_NOPERM and "login failed" in r.stderr, r
    r = tern_read(server, home, "list", proto="pop3", pw="wrong-password")
    assert r.returncode == EX_NOPERM and "login failed" in r.stderr, r
    r = tern_read(server, home, "list", server="no-such-host.invalid:993")
    assert r.returncode == EX_NOHOST and "unknown server" in r.stderr, r
    r = tern_read(server, home, "list", insecure=False)
    assert r.returncode == EX_PROTOCOL and "certificate verification failed" in r.stderr, r
    r = tern_read(server, home, "list", proto="pop3", tls="starttls", insecure=False)
    assert r.returncode == EX_PROTOCOL and "certificate" in r.stderr, r
    r = tern_read(server, home, "show", "99999")
    assert r.returncode == EX_DATAERR and "no message 99999" in r.stderr, r
    r = tern_read(server, home, "show", "99999", proto="pop3")
    assert r.returncode == EX_DATAERR and "no message 99999" in r.stderr, r
    r = tern_read(server, home, "show", "x")
    assert r.returncode == EX_USAGE, r
    r = tern_read(server, home, "--folder", "NoSuch", "list")
    assert r.returncode != 0 and "NoSuch" in r.stderr, r


def test_client_conf_defaults(server, tmp_path):
    home = tmp_path / "h"
    (home / ".config" / "tern").mkdir(parents=True)
    (home / ".config" / "tern" / "client.conf").write_text(
        f"# defaults\nserver = 127.0.0.1:{server.ports['pop3s']}\nprotocol = pop3\n"
        f"tls = implicit\nuser = {BOB}\nfrom = Bob <{BOB}>  # tern send's key: the file is shared\n")
    env = dict(os.environ, HOME=str(home), TERN_PASSWORD=BOB_PW)
    r = th.run_tern(["read", "--insecure", "list"], env=env)
    assert r.returncode == 0, r
    pwfile = tmp_path / "pw"
    pwfile.write_text(BOB_PW + "\n")
    env.pop("TERN_PASSWORD")
    r = th.run_tern(["read", "--insecure", "--password-file", str(pwfile), "list"], env=env)
    assert r.returncode == 0, r


@pytest.mark.skipif(shutil.which("mutt") is None, reason="mutt is not installed")
def test_mutt_message_shown_and_saved(server, home, tmp_path):
    tok = th.token()
    mhome = tmp_path / "mutthome"
    mhome.mkdir()
    cert = server.tls_dir / "cert.pem"
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(
        f'set smtp_url="smtp://alice%40example.test@127.0.0.1:{server.ports["submission"]}/"\n'
        f'set smtp_pass="{ALICE_PW}"\n'
        'set ssl_starttls=yes\nset ssl_force_tls=yes\nset ssl_verify_host=no\n'
        f'set certificate_file="{cert}"\n'
        'set from="alice@example.test"\nset realname="Älice Ünderwood"\nset use_from=yes\n'
        'set charset="utf-8"\nset send_charset="utf-8"\nset record=""\n'
        f'set folder="{mhome}"\nset spoolfile="{mhome}/spool"\nset tmpdir="{mhome}"\n')
    attach = tmp_path / "daten.bin"
    attach.write_bytes(os.urandom(50000))
    body = f"Body from mutt {tok}: grüße\n"
    r = subprocess.run(["mutt", "-n", "-F", str(muttrc), "-s", f"mutt {tok} über",
                        "-a", str(attach), "--", BOB], input=body.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                       env=dict(os.environ, HOME=str(mhome), TERM="dumb"))
    assert r.returncode == 0, (r.stdout, r.stderr)
    server.wait_message(BOB, tok.encode())
    n, line = find_number(tern_read(server, home, "list"), tok)
    assert f"mutt {tok} über" in line and "Älice Ünderwood" in line, line
    r = tern_read(server, home, "show", n)
    assert r.returncode == 0, r
    assert body in r.stdout and "daten.bin  application/octet-stream  50000 bytes" in r.stdout, r
    d = tmp_path / "saved"
    r = tern_read(server, home, "save", n, str(d))
    assert r.returncode == 0, r
    assert (d / "daten.bin").read_bytes() == attach.read_bytes()


def local_non_loopback_ip():
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source address
        ip = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if ip.startswith("127.") else ip


def test_no_password_in_clear_to_another_host(home):
    """--tls none to a server that is not loopback: refused before any password is sent."""
    import socket
    import threading
    ip = local_non_loopback_ip()
    if ip is None:
        pytest.skip("no non-loopback address on this machine")
    lsock = socket.socket()
    lsock.bind((ip, 0))
    lsock.listen(1)
    lsock.settimeout(30)
    seen = []

    def serve():
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            f = conn.makefile("rwb")
            f.write(b"* OK fake IMAP\r\n")
            f.flush()
            for line in f:
                seen.append(line)
                tag = line.split(b" ", 1)[0]
                if b"CAPABILITY" in line.upper():
                    f.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                else:
                    f.write(tag + b" OK done\r\n")
                f.flush()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    env = dict(os.environ, HOME=str(home), TERN_PASSWORD="do-not-send-me")
    r = th.run_tern(["read", "--server", f"{ip}:{lsock.getsockname()[1]}", "--tls", "none",
                     "--user", BOB, "list"], env=env)
    t.join(10)
    lsock.close()
    assert r.returncode == EX_USAGE and "refusing to send a password" in r.stderr, r
    assert not any(b"AUTHENTICATE" in x or b"LOGIN" in x or b"do-not-send" in x for x in seen)


def test_imap_literals_that_look_like_responses(home):
    """A fake server whose literals contain what looks like tagged and untagged responses,
    parentheses and quotes: only the announced byte count is literal data."""
    import socket
    import threading
    header = (b"Subject: t5 OK tricky ) ( \"quote\r\nFrom: \"Evil\" <e@x.test>\r\n"
              b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n")
    body = (b"From: e@x.test\r\nSubject: lit\r\n\r\nline one\r\nt6 OK not the end\r\n"
            b"* 1 FETCH (BODY[] {3}\r\n)\r\n")
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    lsock.settimeout(30)

    def serve_one(conn):
        with conn:
            f = conn.makefile("rwb")
            f.write(b"* OK fake\r\n")
            f.flush()
            for line in f:
                tag, rest = line.rstrip(b"\r\n").split(b" ", 1)
                cmd = rest.upper()
                out = b""
                if cmd.startswith(b"CAPABILITY"):
                    out = b"* CAPABILITY IMAP4rev1 LITERAL+\r\n"
                elif cmd.startswith(b"SELECT") or cmd.startswith(b"EXAMINE"):
                    out = b"* 1 EXISTS\r\n* FLAGS (\\Seen)\r\n"
                elif cmd.startswith(b"FETCH 1:*"):
                    out = (b"* 1 FETCH (UID 7 FLAGS (\\Seen $Junk) RFC822.SIZE 99 "
                           b"BODY[HEADER.FIELDS (DATE FROM SUBJECT)] {%d}\r\n" % len(header)
                           + header + b")\r\n")
                elif cmd.startswith(b"FETCH 1 (UID)"):
                    out = b"* 1 FETCH (UID 7)\r\n"
                elif cmd.startswith(b"UID FETCH 7"):
                    out = b"* 1 FETCH (UID 7 BODY[] {%d}\r\n" % len(body) + body + b")\r\n"
                f.write(out + tag + b" OK done\r\n")
                f.flush()
                if cmd.startswith(b"LOGOUT"):
                    return

    def serve():
        for _ in range(2):
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            serve_one(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    env = dict(os.environ, HOME=str(home), TERN_PASSWORD="pw", TZ="UTC")
    base = ["read", "--server", f"127.0.0.1:{lsock.getsockname()[1]}", "--tls", "none",
            "--user", "u"]
    r = th.run_tern(base + ["list"], env=env)
    assert r.returncode == 0, r
    assert r.stdout == ('1\t2024-01-01 10:00\tEvil\tt5 OK tricky ) ( "quote\t99\t'
                        '\\Seen $Junk\n'), r
    r = th.run_tern(base + ["show", "1"], env=env)
    t.join(10)
    lsock.close()
    assert r.returncode == 0, r
    assert "line one\nt6 OK not the end\n* 1 FETCH (BODY[] {3}\n)\n" in r.stdout, r
