"""Real IMAP clients we did not write, scripted against a running tern over imaps:

- offlineimap (offlineimap3) syncs an account with a local Maildir: down (messages delivered
  over SMTP and APPENDed with flags), up (a flag changed and a message added locally), and a
  message expunged on the server disappears locally on the next sync.
- mutt, driven through tmux (send-keys / capture-pane), opens the INBOX, reads a message,
  flags one, saves one to Archive, deletes one and syncs; the server is checked with imaplib.

The clients trust the server's self-signed certificate as itself (offlineimap by its SHA-256
fingerprint, mutt through a pre-seeded certificate_file). Both are installed by
scripts/deps.sh; a missing client fails the test. Every wait polls with a deadline.
"""
import hashlib
import os
import re
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

import tern_harness as th
from imap_raw import BOB, BOB_PW, LOOPBACK_OK, deliver, imaps

CLIENT_TIMEOUT = 60     # one client run; they take a few seconds
SCREEN_TIMEOUT = 40     # one step in mutt: a deadline for loaded machines, not a delay


@pytest.fixture
def inst(tern_factory):
    return tern_factory(settings=LOOPBACK_OK)


def need(tool, package):
    path = shutil.which(tool)
    assert path, f"{tool} missing: scripts/deps.sh installs it (Debian package {package})"
    return path


def server_cert_pem(inst):
    """The certificate the server presents on imaps (what the clients are told to trust)."""
    return ssl.get_server_certificate(("127.0.0.1", inst.ports["imaps"]))


def uids_flags(m, mailbox="INBOX"):
    """{uid: (set of flags, whole message bytes)} of mailbox, read with imaplib (EXAMINE)."""
    typ, data = m.select(mailbox, readonly=True)
    assert typ == "OK", data
    typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK", data
    out = {}
    for item in data:
        if not isinstance(item, tuple):
            continue
        head = item[0].decode()
        uid = int(re.search(r"UID (\d+)", head).group(1))
        flags = set(re.search(r"FLAGS \(([^)]*)\)", head).group(1).split())
        out[uid] = (flags, item[1])
    return out


def with_token(msgs, tok):
    found = [(uid, fl, body) for uid, (fl, body) in msgs.items() if tok.encode() in body]
    assert len(found) == 1, (tok, {u: (f, b[:120]) for u, (f, b) in msgs.items()})
    return found[0]


def append(inst, tok, flags="", mailbox="INBOX"):
    m = imaps(inst)
    try:
        typ, data = m.append(mailbox, flags, None,
                             th.make_message(tok, sender="me@example.test", to=BOB))
        assert typ == "OK", data
    finally:
        m.logout()


# -- offlineimap -------------------------------------------------------------------------

class OfflineIMAP:
    """One offlineimap account (bob on tern, over imaps) with a local Maildir under tmp."""

    def __init__(self, inst, tmp):
        need("offlineimap", "offlineimap3")
        self.tmp = Path(tmp)
        self.local = self.tmp / "Mail"
        self.rc = self.tmp / "offlineimaprc"
        der = ssl.PEM_cert_to_DER_cert(server_cert_pem(inst))
        fp = hashlib.sha256(der).hexdigest()
        self.rc.write_text(
            "[general]\naccounts = tern\n"
            f"metadata = {self.tmp}/meta\n"
            "ui = basic\n\n"
            "[Account tern]\nlocalrepository = local\nremoterepository = remote\n\n"
            f"[Repository local]\ntype = Maildir\nlocalfolders = {self.local}\n\n"
            "[Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\n"
            f"remoteport = {inst.ports['imaps']}\n"
            f"remoteuser = {BOB}\nremotepass = {BOB_PW}\n"
            # imaps, the self-signed certificate pinned by its fingerprint
            f"ssl = yes\nstarttls = no\ncert_fingerprint = {fp}\n"
            "folderfilter = lambda f: f in ['INBOX', 'Archive', 'Projects']\n"
            "maxconnections = 1\n")
        self.runs = 0

    def sync(self):
        """One full sync; fails the test unless offlineimap reports success."""
        self.runs += 1
        log = self.tmp / f"offlineimap-{self.runs}.log"
        p = subprocess.run(["offlineimap", "-c", str(self.rc), "-o", "-1", "-u", "basic",
                            "-d", "imap", "-l", str(log)],
                           capture_output=True, timeout=CLIENT_TIMEOUT,
                           env=dict(os.environ, HOME=str(self.tmp)))
        out = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        trace = th.tail(log, 120)
        assert p.returncode == 0 and "ERROR" not in out, \
            f"offlineimap run {self.runs} exit {p.returncode}:\n{out[-4000:]}\n" \
            f"--- imap trace ({log}) ---\n{trace}"
        return out

    def files(self, folder="INBOX"):
        d = self.local / folder
        return [f for sub in ("new", "cur") if (d / sub).is_dir()
                for f in sorted((d / sub).iterdir()) if f.is_file()]

    def file_with(self, tok, folder="INBOX"):
        found = [f for f in self.files(folder) if tok.encode() in f.read_bytes()]
        assert len(found) == 1, (tok, [f.name for f in self.files(folder)])
        return found[0]


def maildir_flags(path):
    name = path.name
    return set(name.split(":2,", 1)[1]) if ":2," in name else set()


def test_offlineimap_sync_down_up_and_expunge(inst, tmp_path):
    smtp_tok = deliver(inst)
    flagged_tok = th.token()
    append(inst, flagged_tok, flags="(\\Flagged \\Seen)")
    archived_tok = th.token()
    append(inst, archived_tok, flags="(\\Answered)", mailbox="Archive")
    oi = OfflineIMAP(inst, tmp_path)

    # 1. a fresh sync down: every message arrives with its bytes and its flags
    oi.sync()
    m = imaps(inst)
    server = uids_flags(m)
    f = oi.file_with(smtp_tok)
    # offlineimap keeps local files with LF line ends; otherwise the bytes are the server's
    assert f.read_bytes() == with_token(server, smtp_tok)[2].replace(b"\r\n", b"\n"), f
    assert maildir_flags(f) == set(), f.name
    f = oi.file_with(flagged_tok)
    assert maildir_flags(f) == {"F", "S"}, f.name
    a = oi.file_with(archived_tok, "Archive")
    assert maildir_flags(a) == {"R"}, a.name
    assert len(oi.files()) == 2 and len(oi.files("Archive")) == 1, \
        (oi.files(), oi.files("Archive"))

    # 2. local changes go up: the SMTP message read and flagged, the APPENDed one unflagged,
    # a new message written into the local INBOX
    f = oi.file_with(smtp_tok)
    base = f.name.split(":2,")[0]
    os.rename(f, oi.local / "INBOX" / "cur" / (base + ":2,FS"))
    f = oi.file_with(flagged_tok)
    os.rename(f, f.with_name(f.name.split(":2,")[0] + ":2,S"))
    up_tok = th.token()
    up_bytes = th.make_message(up_tok, sender="me@example.test", to=BOB)
    (oi.local / "INBOX" / "new" / f"1700000000.up{os.getpid()}.localhost").write_bytes(up_bytes)
    # and a folder made locally, with a message in it: created on the server
    proj_tok = th.token()
    for sub in ("cur", "new", "tmp"):
        (oi.local / "Projects" / sub).mkdir(parents=True)
    (oi.local / "Projects" / "cur" / f"1700000001.pr{os.getpid()}.localhost:2,S").write_bytes(
        th.make_message(proj_tok, sender="me@example.test", to=BOB))
    oi.sync()
    server = uids_flags(m)
    assert len(server) == 3, {u: (fl, b[:100]) for u, (fl, b) in server.items()}
    assert with_token(server, smtp_tok)[1] == {"\\Seen", "\\Flagged"}, server
    assert with_token(server, flagged_tok)[1] == {"\\Seen"}, server
    uid_up, fl_up, body_up = with_token(server, up_tok)
    # uploaded unchanged: with UIDPLUS the APPENDUID tells offlineimap the new UID (without
    # it offlineimap would add an X-OfflineIMAP header to find the message again)
    assert body_up == up_bytes and fl_up == set(), (fl_up, body_up)
    # the uploaded local file now carries its server UID
    assert re.search(rf",U={uid_up}[,:]", oi.file_with(up_tok).name), oi.file_with(up_tok).name
    projects = uids_flags(m, "Projects")
    assert len(projects) == 1 and with_token(projects, proj_tok)[1] == {"\\Seen"}, projects

    # 3. expunged on the server: gone locally after the next sync; the rest stays
    uid_gone = with_token(server, smtp_tok)[0]
    m.select("INBOX")
    typ, data = m.uid("STORE", str(uid_gone), "+FLAGS", "(\\Deleted)")
    assert typ == "OK", data
    typ, data = m.expunge()
    assert typ == "OK", data
    m.logout()
    oi.sync()
    assert not any(smtp_tok.encode() in f.read_bytes() for f in oi.files()), \
        [f.name for f in oi.files()]
    assert len(oi.files()) == 2, [f.name for f in oi.files()]
    oi.file_with(flagged_tok)
    oi.file_with(up_tok)
    oi.file_with(archived_tok, "Archive")
    oi.file_with(proj_tok, "Projects")


# -- mutt through tmux -------------------------------------------------------------------

class MuttTmux:
    """mutt in a detached tmux session of its own (its own tmux server socket too)."""

    def __init__(self, inst, tmp):
        need("mutt", "mutt")
        need("tmux", "tmux")
        self.tmp = Path(tmp)
        self.sock = str(self.tmp / "tmux.sock")
        self.name = f"mutt{os.getpid()}"
        certs = self.tmp / "certificates"
        certs.write_text(server_cert_pem(inst))
        self.debug = self.tmp / ".muttdebug0"
        self.rc = self.tmp / "muttrc"
        self.rc.write_text(
            f'set imap_user="{BOB}"\nset imap_pass="{BOB_PW}"\n'
            f'set folder="imaps://127.0.0.1:{inst.ports["imaps"]}/"\n'
            'set spoolfile="+INBOX"\n'
            # the server's self-signed certificate is trusted because it is in this file
            f'set certificate_file="{certs}"\nset ssl_verify_host=no\n'
            'set ssl_starttls=no\nset imap_passive=yes\n'
            'unset header_cache\nunset message_cachedir\nset record=""\n'
            'set sort=mailbox-order\nset index_format="%4C %Z [%s]"\n'
            'set move=no\nset mark_old=no\nset confirmappend=no\nset confirmcreate=no\n'
            'set delete=yes\nset quit=yes\nset wait_key=no\nset beep=no\n'
            'set pager_index_lines=0\n'
            # look for new mail every second, over IDLE
            'set imap_idle=yes\nset mail_check=1\nset timeout=1\n'
            # the index line of a message reads "  12 D! [test TOKEN]"; the status line
            # is recognisable as such
            'set help=no\nset status_format="-STATUS- %f [%M/%m]"\n')

    def tmux(self, *args, check=True):
        p = subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, timeout=20)
        if check:
            assert p.returncode == 0, (args, p.stderr.decode())
        return p.stdout.decode("utf-8", "replace")

    def start(self):
        env = f"HOME={self.tmp} TERM=screen LANG=C.UTF-8"
        self.tmux("new-session", "-d", "-s", self.name, "-x", "160", "-y", "40",
                  f"env {env} mutt -n -d 2 -F {self.rc}")

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", self.name, check=False)

    def keys(self, *keys):
        self.tmux("send-keys", "-t", self.name, *keys)

    def literal(self, text):
        self.tmux("send-keys", "-t", self.name, "-l", text)

    def wait(self, predicate, what, timeout=SCREEN_TIMEOUT):
        """Poll the screen until predicate(screen) holds; returns the screen."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.screen()
            if predicate(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError(f"mutt: no {what} after {timeout}s; screen:\n{s}\n"
                                     f"--- mutt debug log ---\n{self.debug_tail()}")
            time.sleep(0.05)   # poll interval

    def wait_text(self, text, timeout=SCREEN_TIMEOUT):
        return self.wait(lambda s: text in s, repr(text), timeout)

    def alive(self):
        p = subprocess.run(["tmux", "-S", self.sock, "has-session", "-t", self.name],
                           capture_output=True, timeout=20)
        return p.returncode == 0

    def wait_exit(self, timeout=SCREEN_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"mutt did not quit after {timeout}s; screen:\n"
                                     f"{self.screen()}\n--- debug ---\n{self.debug_tail()}")
            time.sleep(0.05)

    def debug_tail(self):
        return th.tail(self.debug, 80)

    def index_line(self, screen, tok):
        """The index line of the message with tok, or None when the index does not show it."""
        lines = [ln for ln in screen.splitlines() if f"[test {tok}]" in ln]
        return lines[0] if lines else None

    def index_flags(self, screen, tok):
        """The status flags column (%Z) of tok's index line: 'D', '!', 'N'..."""
        return (self.index_line(screen, tok) or "").split("[test ")[0]

    def kill(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True,
                       timeout=20)


@pytest.fixture
def mutt(inst, tmp_path):
    mt = MuttTmux(inst, tmp_path)
    yield mt
    mt.kill()


def test_mutt_read_flag_save_delete(inst, mutt):
    toks = [deliver(inst) for _ in range(5)]
    read_tok, flag_tok, move_tok, new_folder_tok, del_tok = toks
    m = imaps(inst)
    before = uids_flags(m)
    m.logout()
    mutt.start()
    # the index lists the five messages
    mutt.wait(lambda s: all(f"[test {t}]" in s for t in toks) and "-STATUS-" in s,
              "index with the five messages")

    def goto(tok):
        """Put the cursor on the message with tok in its subject (mutt's search)."""
        mutt.keys("/")
        mutt.wait_text("Search for:")
        mutt.literal(tok)
        mutt.keys("Enter")
        mutt.wait(lambda s: "Search for:" not in s, "search done")

    # read one: the pager shows its body, back in the index it is no longer new
    goto(read_tok)
    mutt.keys("Enter")
    mutt.wait_text(f"Hello, this is message {read_tok}.")
    mutt.keys("i")
    mutt.wait(lambda s: "-STATUS-" in s and mutt.index_line(s, read_tok) is not None,
              "index after the pager")
    # flag one
    goto(flag_tok)
    mutt.keys("F")
    mutt.wait(lambda s: "!" in mutt.index_flags(s, flag_tok), "flag mark")
    # save (move) one to Archive: the copy is made, the original is marked deleted
    goto(move_tok)
    mutt.keys("s")
    mutt.wait_text("Save to mailbox")
    mutt.keys("C-u")
    mutt.literal("=Archive")
    mutt.keys("Enter")
    mutt.wait(lambda s: "D" in mutt.index_flags(s, move_tok), "saved mark")
    # save one to a folder that does not exist yet: mutt creates it
    goto(new_folder_tok)
    mutt.keys("s")
    mutt.wait_text("Save to mailbox")
    mutt.keys("C-u")
    mutt.literal("=Projects/mutt")
    mutt.keys("Enter")
    mutt.wait(lambda s: "D" in mutt.index_flags(s, new_folder_tok), "saved mark")
    # delete one
    goto(del_tok)
    mutt.keys("d")
    mutt.wait(lambda s: "D" in mutt.index_flags(s, del_tok), "delete mark")
    # sync: flags stored, deleted messages expunged and gone from the index
    mutt.keys("$")
    mutt.wait(lambda s: all(mutt.index_line(s, t) is None
                            for t in (del_tok, move_tok, new_folder_tok)) and "-STATUS-" in s,
              "index without the deleted messages")
    # new mail while the INBOX is open shows up in the index
    late_tok = deliver(inst)
    mutt.wait(lambda s: mutt.index_line(s, late_tok) is not None, "the new message")
    mutt.keys("q")
    mutt.wait_exit()

    m = imaps(inst)
    try:
        inbox = uids_flags(m)
        assert len(inbox) == 3, {u: (f, b[:100]) for u, (f, b) in inbox.items()}
        assert with_token(inbox, read_tok)[1] == {"\\Seen"}, inbox
        assert with_token(inbox, flag_tok)[1] == {"\\Flagged"}, inbox
        assert with_token(inbox, late_tok)[1] == set(), inbox
        # the saved copies are the originals, byte for byte
        archive = uids_flags(m, "Archive")
        assert len(archive) == 1, archive
        assert with_token(archive, move_tok)[2] == with_token(before, move_tok)[2], archive
        made = uids_flags(m, "Projects/mutt")
        assert len(made) == 1, made
        assert with_token(made, new_folder_tok)[2] == with_token(before, new_folder_tok)[2]
    finally:
        m.logout()
