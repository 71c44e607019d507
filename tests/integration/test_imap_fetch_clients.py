"""Real clients that read mail over IMAP: curl fetching one message by UID, fetchmail over
IMAP (imaps and STARTTLS; keep / delete), mbsync (isync) pulling a Maildir and syncing both
ways with flags. curl, fetchmail and isync come from scripts/deps.sh."""
import os
import shutil
import subprocess

import pytest

import tern_harness as th
from imap_raw import BOB, BOB_PW, LOOPBACK_OK, deliver, raw_login


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK)


def test_curl_fetch_by_uid_exact_bytes(inst):
    tok = deliver(inst)
    stored = inst.find_messages(BOB, tok)[0].read_bytes()
    p = subprocess.run(["curl", "-sS", "-k", "--max-time", "30", "-u", f"{BOB}:{BOB_PW}",
                        f"imaps://127.0.0.1:{inst.ports['imaps']}/INBOX;UID=1"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == stored, (p.stdout[:300], stored[:300])
    # curl FETCHes BODY[]: that sets \Seen
    with raw_login(inst) as c:
        c.ok("EXAMINE INBOX")
        u = c.ok("SEARCH SEEN")
        assert u[-1] == b"* SEARCH 1", c.text()


def fetchmail(inst, tmp_path, *extra, ssl=True):
    out = tmp_path / "mbox"
    rc = tmp_path / "fetchmailrc"
    port = inst.ports["imaps"] if ssl else inst.ports["imap"]
    rc.write_text(
        f'poll 127.0.0.1 with proto IMAP port {port}\n'
        f'  user "{BOB}" there with password "{BOB_PW}" is "{os.environ.get("USER", "root")}" here\n'
        f'  {"ssl" if ssl else "sslproto TLS1.2+"} no sslcertck\n'
        f'  mda "/bin/sh -c \'cat >> {out}\'"\n')
    rc.chmod(0o600)
    p = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog", "-v",
                        "--idfile", str(tmp_path / "ids"), *extra],
                       capture_output=True, timeout=120,
                       env=dict(os.environ, HOME=str(tmp_path)))
    return p, out


def test_fetchmail_imaps_keep_then_delete(inst, tmp_path):
    toks = [deliver(inst) for _ in range(3)]
    p, out = fetchmail(inst, tmp_path, "--keep", "--all")
    assert p.returncode == 0, (p.stdout.decode()[-3000:], p.stderr.decode()[-3000:])
    data = out.read_bytes()
    assert all(t.encode() in data for t in toks), data[:500]
    assert len(inst.mailbox_files(BOB)) == 3
    out.unlink()
    p, out = fetchmail(inst, tmp_path, "--all")   # fetch and delete (STORE \Deleted, EXPUNGE)
    assert p.returncode == 0, (p.stdout.decode()[-3000:], p.stderr.decode()[-3000:])
    assert all(t.encode() in out.read_bytes() for t in toks)
    with raw_login(inst) as c:
        st = c.ok("STATUS INBOX (MESSAGES)")
        assert b"MESSAGES 0" in st[0], c.text()


def test_fetchmail_imap_starttls(inst, tmp_path):
    tok = deliver(inst)
    p, out = fetchmail(inst, tmp_path, "--keep", ssl=False)
    assert p.returncode == 0, (p.stdout.decode()[-3000:], p.stderr.decode()[-3000:])
    assert tok.encode() in out.read_bytes()


def mbsyncrc(inst, tmp_path, sync):
    local = tmp_path / "Mail"
    local.mkdir(exist_ok=True)
    rc = tmp_path / "mbsyncrc"
    rc.write_text(
        "IMAPAccount tern\nHost 127.0.0.1\n"
        f"Port {inst.ports['imaps']}\nUser {BOB}\nPass {BOB_PW}\n"
        # the server's own self-signed certificate, trusted as itself
        f"SSLType IMAPS\nCertificateFile {inst.tls_dir}/cert.pem\nSystemCertificates no\n\n"
        "IMAPStore tern-remote\nAccount tern\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n"
        f"Channel tern\nFar :tern-remote:\nNear :local:\nPatterns *\nCreate Near\nSync {sync}\n"
        f"SyncState *\n")
    return rc, local


def mbsync(rc):
    p = subprocess.run(["mbsync", "-c", str(rc), "-a", "-V"], capture_output=True, timeout=120)
    assert p.returncode == 0, (p.stdout.decode()[-3000:], p.stderr.decode()[-3000:])


def test_mbsync_pull(inst, tmp_path):
    assert shutil.which("mbsync"), "isync missing: add it to scripts/deps.sh"
    toks = [deliver(inst) for _ in range(2)]
    rc, local = mbsyncrc(inst, tmp_path, "Pull")
    mbsync(rc)
    got = b"".join(f.read_bytes() for f in (local / "INBOX").rglob("*") if f.is_file())
    assert all(t.encode() in got for t in toks)
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()


def test_mbsync_both_ways_with_flags(inst, tmp_path):
    """mbsync syncs INBOX both ways: a flag set on either side reaches the other, and a
    message written into the local Maildir is uploaded (APPEND)."""
    toks = [deliver(inst) for _ in range(2)]
    rc, local = mbsyncrc(inst, tmp_path, "All")
    mbsync(rc)
    inbox = local / "INBOX"
    files = {f: f.read_bytes() for f in (inbox / "cur").iterdir()} | \
        {f: f.read_bytes() for f in (inbox / "new").iterdir()}
    first = next(f for f, data in files.items() if toks[0].encode() in data)
    # locally: the first message read (Maildir flag S), and a new message in new/
    cur = inbox / "cur"
    name = first.name.split(":2,")[0] + ":2,S"
    os.rename(first, cur / name)
    up = th.token()
    (inbox / "new" / f"1700000000.up{os.getpid()}.local").write_bytes(
        th.make_message(up, sender="me@example.test", to=BOB))
    # on the server: the second message flagged
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        lines = c.ok("UID SEARCH ALL")
        uids = [int(x) for x in lines[0].split()[2:]]
        c.ok(f"UID STORE {uids[1]} +FLAGS (\\Flagged)")
    mbsync(rc)
    with raw_login(inst) as c:
        c.ok("SELECT INBOX")
        flags = b"".join(c.ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
        assert c.ok(f"SEARCH SUBJECT {up}")[0].split()[2:], c.text()     # uploaded
        seen = c.ok(f"SEARCH SEEN SUBJECT {toks[0]}")[0].split()[2:]
        assert seen, (flags, c.text())                                    # local \Seen went up
    flagged = [f for d in ("cur", "new") for f in (inbox / d).iterdir()
               if toks[1].encode() in f.read_bytes()]
    assert flagged and ":2," in flagged[0].name and "F" in flagged[0].name.split(":2,")[1], \
        [f.name for f in flagged]                                         # \Flagged came down
