"""`tern send`: compose with attachments and submit over STARTTLS/implicit TLS with AUTH.

A message with a UTF-8 subject, an accented display name, a text file with a non-ASCII name,
a PNG and 1 MB of random bytes goes to a To, a Cc and a Bcc; each gets it, Python's email
package reads everything back exactly, and the Bcc is in no header. Failures (unreadable
attachment, unknown or closed server, certificate not trusted, bad password, refused
recipient) give a clear message, their sysexits code, and deliver nothing."""
import email
import email.policy
import os
import shutil
import struct
import subprocess
import zlib

import pytest

import tern_harness as th

ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@example.test"
DAVE = "dave@example.test"
USERS = {ALICE: th.USERS[ALICE], BOB: th.USERS[BOB], CAROL: "carol-Secret-4",
         DAVE: "dave-Secret-5"}

EX_USAGE, EX_NOINPUT, EX_NOUSER, EX_NOHOST, EX_UNAVAILABLE = 64, 66, 67, 68, 69
EX_PROTOCOL, EX_NOPERM = 76, 77


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import provision_users, _teardown
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-send"),
                           settings={"max_message_size": str(8 * 1024 * 1024)})
    provision_users(inst, USERS)
    inst.start()
    yield inst
    _teardown(inst)


def png_bytes(w=3, h=2):
    """A small valid PNG (RGB, 8 bit)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
    raw = b"".join(b"\x00" + b"".join(bytes((x * 80 % 256, y * 120 % 256, 200))
                                       for x in range(w)) for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def send(srv, tmp_path, args, body="Hello.\n", password=None, role="submission", tls=None,
         insecure=True):
    env = dict(os.environ, HOME=str(tmp_path), TERN_PASSWORD=password or USERS[ALICE])
    env.pop("XDG_CONFIG_HOME", None)
    cmd = [th.TERN_BIN, "send", "--server", f"127.0.0.1:{srv.ports[role]}",
           "--user", ALICE]
    if tls:
        cmd += ["--tls", tls]
    if insecure:
        cmd.append("--insecure")
    cmd += args
    return subprocess.run(cmd, input=body.encode("utf-8"), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=th.CLI_TIMEOUT, env=env)


def header_block(data):
    return data.split(b"\r\n\r\n", 1)[0]


def assert_nothing_delivered(srv, tok):
    for who in (BOB, CAROL, DAVE):
        srv.flush(who)
        assert srv.find_messages(who, tok) == [], f"{who} got the message {tok}"


def test_send_everything_to_to_cc_bcc(srv, tmp_path):
    tok = th.token()
    subject = f"Réunion « café » — naïve 日本語 ☕ {tok} with a subject long enough to fold"
    files = tmp_path / "files"
    files.mkdir()
    text_name = "résumé été — notes.txt"
    (files / text_name).write_bytes("Grüße aus Köln\nligne 2\n".encode("utf-8"))
    png = png_bytes()
    (files / "pixel.png").write_bytes(png)
    rand = os.urandom(1024 * 1024)
    (files / "random.bin").write_bytes(rand)
    body = f"Bonjour Bob,\n\nvoici le café {tok}.\n" + "x" * 1200 + "\n"
    r = send(srv, tmp_path, [
        "--from", f"Alice Lidéll <{ALICE}>", "--to", f"Bob Bücher <{BOB}>", "--cc", CAROL,
        "--bcc", DAVE, "--subject", subject, "--header", "X-Tern-Test: oui",
        "--attach", str(files / text_name), str(files / "pixel.png"),
        str(files / "random.bin")], body=body)
    assert r.returncode == 0, r.stderr.decode()
    for who in (BOB, CAROL, DAVE):
        paths = srv.wait_message(who, tok)
        assert len(paths) == 1, (who, paths)
        data = paths[0].read_bytes()
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert str(msg["Subject"]) == subject
        assert msg["From"].addresses[0].display_name == "Alice Lidéll"
        assert msg["From"].addresses[0].addr_spec == ALICE
        assert msg["To"].addresses[0].display_name == "Bob Bücher"
        assert str(msg["Cc"]) == CAROL
        assert msg["X-Tern-Test"] == "oui"
        assert msg["Message-ID"] and msg["Date"] and msg["MIME-Version"] == "1.0"
        assert msg.get_content_type() == "multipart/mixed"
        text = msg.get_body(preferencelist=("plain",))
        assert text.get_content().replace("\r\n", "\n") == body  # CRLF on the wire
        atts = {p.get_filename(): p for p in msg.iter_attachments()}
        assert set(atts) == {text_name, "pixel.png", "random.bin"}, list(atts)
        assert atts[text_name].get_content_type() == "text/plain"
        assert atts[text_name].get_payload(decode=True) == (files / text_name).read_bytes()
        assert atts["pixel.png"].get_content_type() == "image/png"
        assert atts["pixel.png"].get_payload(decode=True) == png
        assert atts["random.bin"].get_content_type() == "application/octet-stream"
        assert atts["random.bin"].get_payload(decode=True) == rand
        # the Bcc is in no header: no Bcc field, and bob's and carol's copies never name dave
        assert "Bcc" not in msg
        _, _, sent = th.split_delivered(data)
        assert DAVE.encode() not in sent, f"the message as sent names the Bcc ({who})"
        if who != DAVE:
            assert DAVE.encode() not in data, f"{who}'s copy names the Bcc"
        # no line over 998 octets, base64 in 76 columns
        for line in data.split(b"\r\n"):
            assert len(line) <= 998


def test_send_implicit_tls_and_html(srv, tmp_path):
    tok = th.token()
    html = tmp_path / "body.html"
    html.write_text(f"<p>Hallo <b>{tok}</b> – grüß dich</p>\n", encoding="utf-8")
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--subject", f"html {tok}",
                             "--html", str(html)],
             body=f"Hallo {tok}\n", role="submissions", tls="implicit")
    assert r.returncode == 0, r.stderr.decode()
    data = srv.wait_message(BOB, tok)[0].read_bytes()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(preferencelist=("html",)).get_content().replace("\r\n", "\n") == \
        html.read_text("utf-8")
    assert msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n") == \
        f"Hallo {tok}\n"


def test_dry_run_prints_and_sends_nothing(srv, tmp_path):
    tok = th.token()
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--bcc", DAVE, "--subject", tok,
                             "--dry-run"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout
    assert b"Subject: " + tok.encode() in out and DAVE.encode() not in out
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["To"] == BOB and "Bcc" not in msg
    assert_nothing_delivered(srv, tok)


def test_certificate_not_trusted_without_insecure(srv, tmp_path):
    tok = th.token()
    for role, tls in (("submission", "starttls"), ("submissions", "implicit")):
        r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--subject", tok],
                 role=role, tls=tls, insecure=False)
        err = r.stderr.decode()
        assert r.returncode == EX_PROTOCOL, (r.returncode, err)
        assert "certificate verification failed" in err and "--insecure" in err, err
        assert "nothing was sent" in err, err
    assert_nothing_delivered(srv, tok)


def test_bad_password(srv, tmp_path):
    tok = th.token()
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--subject", tok],
             password="wrong-password")
    err = r.stderr.decode()
    assert r.returncode == EX_NOPERM, (r.returncode, err)
    assert "authentication failed" in err and "535" in err, err
    assert_nothing_delivered(srv, tok)


def test_unreadable_attachment(srv, tmp_path):
    tok = th.token()
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--subject", tok,
                             "--attach", str(tmp_path / "no-such-file.pdf")])
    err = r.stderr.decode()
    assert r.returncode == EX_NOINPUT, (r.returncode, err)
    assert "no-such-file.pdf" in err and "No such file" in err, err
    assert_nothing_delivered(srv, tok)


def test_unknown_server(srv, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), TERN_PASSWORD="x")
    r = subprocess.run([th.TERN_BIN, "send", "--server", "no-such-host.invalid:587",
                        "--user", ALICE, "--from", ALICE, "--to", BOB],
                       input=b"hi\n", capture_output=True, env=env, timeout=th.CLI_TIMEOUT)
    err = r.stderr.decode()
    assert r.returncode == EX_NOHOST, (r.returncode, err)
    assert "no-such-host.invalid" in err, err


def test_closed_port(srv, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), TERN_PASSWORD="x")
    r = subprocess.run([th.TERN_BIN, "send", "--server", f"127.0.0.1:{th.free_port()}",
                        "--user", ALICE, "--from", ALICE, "--to", BOB],
                       input=b"hi\n", capture_output=True, env=env, timeout=th.CLI_TIMEOUT)
    err = r.stderr.decode()
    assert r.returncode == EX_UNAVAILABLE, (r.returncode, err)
    assert "Connection refused" in err, err


def test_no_password_in_clear(srv, tmp_path):
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB], tls="none")
    err = r.stderr.decode()
    assert r.returncode == EX_USAGE, (r.returncode, err)
    assert "unencrypted" in err, err


def test_refused_recipient_sends_to_nobody(srv, tmp_path):
    """All or nothing: one unknown recipient and the others do not get it either."""
    tok = th.token()
    r = send(srv, tmp_path, ["--from", ALICE, "--to", BOB, "--cc", "nobody@example.test",
                             "--subject", tok])
    err = r.stderr.decode()
    assert r.returncode == EX_NOUSER, (r.returncode, err)
    assert "nobody@example.test" in err and "nothing was sent" in err, err
    assert_nothing_delivered(srv, tok)


def test_client_conf_defaults(srv, tmp_path):
    tok = th.token()
    conf = tmp_path / ".config" / "tern"
    conf.mkdir(parents=True)
    (conf / "client.conf").write_text(
        f"server = 127.0.0.1:{srv.ports['submission']}\ntls = starttls\nuser = {ALICE}\n"
        f"from = Alice <{ALICE}>\nprotocol = imap  # tern read's key: the file is shared\n",
        encoding="utf-8")
    env = dict(os.environ, HOME=str(tmp_path), TERN_PASSWORD=USERS[ALICE])
    env.pop("XDG_CONFIG_HOME", None)
    r = subprocess.run([th.TERN_BIN, "send", "--insecure", "--to", BOB, "--subject", tok],
                       input=b"hi\n", capture_output=True, env=env, timeout=th.CLI_TIMEOUT)
    assert r.returncode == 0, r.stderr.decode()
    srv.wait_message(BOB, tok)


def run_mutt(maildir, muttrc, keys):
    """mutt on a pty (it needs a terminal), keys pushed, then it quits."""
    cmd = f"mutt -n -F {muttrc} -f {maildir} -e 'push \"{keys}<quit>\"'"
    env = dict(os.environ, LANG="C.UTF-8", TERM="xterm")
    subprocess.run(["script", "-qec", cmd, "/dev/null"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env, timeout=30)


@pytest.mark.skipif(shutil.which("mutt") is None or shutil.which("script") is None,
                    reason="mutt or script(1) not installed")
def test_mutt_reads_what_tern_sends(srv, tmp_path):
    tok = th.token()
    subject = f"Réunion — naïve café ☕ {tok}"
    att = tmp_path / "données été.bin"
    blob = os.urandom(50000)
    att.write_bytes(blob)
    r = send(srv, tmp_path, ["--from", f"Alice Lidéll <{ALICE}>", "--to", BOB,
                             "--subject", subject, "--attach", str(att)],
             body=f"Grüße {tok}\n")
    assert r.returncode == 0, r.stderr.decode()
    delivered = srv.wait_message(BOB, tok)[0]
    md = tmp_path / "md"
    for sub in ("new", "cur", "tmp"):
        (md / sub).mkdir(parents=True)
    shutil.copy(delivered, md / "new" / "1.tern")
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(f"set mbox_type=Maildir\nset folder={md}\nset spoolfile={md}\n"
                      "set pipe_decode=yes\nset wait_key=no\nset charset=utf-8\n"
                      "set weed=no\nset move=no\n", encoding="utf-8")
    out = tmp_path / "piped.txt"
    run_mutt(md, muttrc, f"<pipe-message>cat > {out}<enter>")
    shown = out.read_text("utf-8")
    unfolded = shown.split("\n\n", 1)[0].replace("\n ", " ")
    assert f"Subject: {subject}" in unfolded, shown[:800]
    assert f"From: Alice Lidéll <{ALICE}>" in unfolded, shown[:800]
    assert f"Grüße {tok}" in shown
    saved = tmp_path / "saved.bin"
    run_mutt(md, muttrc, f"<view-attachments><last-entry><save-entry><kill-line>{saved}<enter>"
                         "<exit>")
    assert saved.read_bytes() == blob


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_sent_message_read_back_with_tern_read(srv, tmp_path, proto):
    """The loop closed with our own two ends: what `tern send` composed (UTF-8 subject,
    accented name, a text file with a non-ASCII name, a PNG, 300 kB of random bytes) is
    listed, shown and saved byte-identical by `tern read`, over imaps and pop3s."""
    from test_read import tern_read, find_number
    tok = th.token()
    subject = f"Grüße aus Köln ☕ {tok}"
    files = tmp_path / "files"
    files.mkdir()
    originals = {"notes – été.txt": "Zeile 1: Äpfel\nligne 2: crème\n".encode("utf-8"),
                 "pixel.png": png_bytes(), "random.bin": os.urandom(300 * 1024)}
    for name, data in originals.items():
        (files / name).write_bytes(data)
    body = f"Hallo Bob,\n\nanbei die Dateien ({tok}). Schöne Grüße\n"
    r = send(srv, tmp_path, ["--from", f"Älice Lidéll <{ALICE}>", "--to", BOB, "--subject",
                             subject, "--attach", *(str(files / n) for n in originals)],
             body=body)
    assert r.returncode == 0, r.stderr.decode()
    srv.wait_message(BOB, tok)
    home = tmp_path / "home"
    home.mkdir()
    tls = "implicit"
    n, line = find_number(tern_read(srv, home, "list", proto=proto, tls=tls), tok)
    cols = line.split("\t")
    assert cols[2] == "Älice Lidéll" and cols[3] == subject, line
    r = tern_read(srv, home, "show", n, proto=proto, tls=tls)
    assert r.returncode == 0, r
    assert f"Subject: {subject}" in r.stdout and f"From: Älice Lidéll <{ALICE}>" in r.stdout, r
    assert body.strip() in r.stdout, r.stdout
    assert "pixel.png  image/png  %d bytes" % len(originals["pixel.png"]) in r.stdout, r.stdout
    assert "random.bin  application/octet-stream  %d bytes" % (300 * 1024) in r.stdout, r.stdout
    d = tmp_path / "saved"
    r = tern_read(srv, home, "save", n, str(d), proto=proto, tls=tls)
    assert r.returncode == 0, r
    assert {p.name: p.read_bytes() for p in d.iterdir()} == originals
