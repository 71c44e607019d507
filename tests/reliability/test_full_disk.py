"""A full disk: the data dir is a small tmpfs that a filler file fills up to a few bytes or
pages. SMTP answers 452 4.3.1 and nothing half-written shows in a mailbox or the
queue; a message that was accepted is whole; when space returns, service resumes (a new
message is accepted, delivered locally and through the queue). IMAP APPEND on a full disk
answers NO without leaving a partial message."""
import imaplib
import smtplib
import time


import rely
from rely import th

BOB = "bob@example.test"
ALICE = "alice@example.test"
SIZE = "24m"


def smtp_send(inst, rcpts, data):
    """(code, text) of the end of DATA (or of the first refusal) on a fresh submission
    session: 250 on success."""
    with inst.submission_login() as s:
        try:
            refused = s.sendmail(ALICE, rcpts, data)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            return code, text.decode()
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error.decode()
        assert not refused, refused
        return 250, "ok"


def check_no_partial(inst, tok):
    """No file in the data dir (queue, spool, Maildir tmp/) holds tok, except whole copies in
    a mailbox's new/ or cur/: a local recipient may get a message that is then refused for
    the others (the queue could not take them) - at-least-once, the client sends it again.
    SQLite's own files are left out: a transaction that failed may leave its pages, never
    committed, in a WAL file; what the index shows is checked through IMAP. So is the trace
    journal (data_dir/trace/): it names a refused message on purpose (`tern trace`). Returns
    the number of whole mailbox copies."""
    needle = tok.encode()
    deadline = time.monotonic() + 5
    while True:
        found, whole = [], 0
        for p in inst.data_dir.rglob("*"):
            if p.name.endswith((".db", ".db-wal", ".db-shm", ".db-journal")):
                continue
            if p.parent.name == "trace" and p.parent.parent == inst.data_dir:
                continue
            try:
                if not (p.is_file() and needle in p.read_bytes()):
                    continue
            except OSError:
                continue
            if p.parent.name in ("new", "cur") and rely.check_copy(p.read_bytes())[1]:
                whole += 1
            else:
                found.append(str(p))
        if not found:
            return whole
        assert time.monotonic() < deadline, f"refused message {tok} left on disk: {found}"
        time.sleep(0.1)


def test_smtp_full_disk(tmpfs_factory, tern_factory, sink, capsys):
    fs = tmpfs_factory(SIZE)
    inst = tern_factory(workers=1, data_dir=fs.dir / "data",
                        settings=dict(rely.BASE_SETTINGS), extra_config=rely.relay_config(sink))
    remote = f"far@{rely.REMOTE_DOMAIN}"
    # A first message makes the mailbox, its index and the queue's files exist.
    tok0 = th.token()
    assert smtp_send(inst, [BOB, remote], rely.payload(tok0, 2000, to=BOB))[0] == 250
    inst.wait_message(BOB, tok0)
    rely.wait_until(lambda: tok0 in sink.received, 30, "the first remote delivery")

    accepted, refused, codes = [], [], {}
    local_anyway = 0
    filler = None
    for leave in (0, 4096, 12288, 65536, 200000):
        for size in (1500, 150000):
            if filler is not None:
                filler.unlink()
            filler = fs.fill(leave)
            tok = th.token()
            code, text = smtp_send(inst, [BOB, remote], rely.payload(tok, size, to=BOB))
            codes.setdefault(code, []).append(text)
            if code == 250:
                accepted.append(tok)
                continue
            # RFC 3463 4.3.1: mail system full (452: insufficient system storage)
            assert code == 452 and text.startswith("4.3.1"), \
                f"leave={leave} size={size}: {code} {text}"
            refused.append(tok)
            local_anyway += check_no_partial(inst, tok)
    assert refused, f"the full disk never refused a message: {codes}"
    assert inst.mailbox_files(BOB, ("tmp",)) == [], "half-written files left in tmp/"

    # Space returns: service resumes without a restart.
    filler.unlink()
    tok1 = th.token()
    code, text = smtp_send(inst, [BOB, remote], rely.payload(tok1, 5000, to=BOB))
    assert code == 250, f"no service after space returned: {code} {text}"
    accepted.append(tok1)
    for tok in accepted:
        files = inst.wait_message(BOB, tok, timeout=30)
        assert all(rely.check_copy(p.read_bytes())[1] for p in files), f"{tok} is corrupt"
    rely.wait_until(lambda: all(t in sink.received for t in accepted), 60,
                    "every accepted message to reach the remote")
    with sink.lock:
        assert all(all(sink.received[t]) for t in accepted)
        assert not any(t in sink.received for t in refused), "a refused message left"
    for tok in refused:
        check_no_partial(inst, tok)
    n_files = len(inst.mailbox_files(BOB))
    # The index shows what the Maildir holds: nothing refused, everything accepted.
    c = imap_login(inst)
    try:
        typ, data = c.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) == n_files == len(accepted) + 1 + local_anyway, \
            (data, n_files, len(accepted), local_anyway)
    finally:
        c.logout()
    with capsys.disabled():
        print(f"\n[reliability full disk smtp] accepted_while_full={len(accepted) - 1} "
              f"refused={len(refused)} refused_but_delivered_locally={local_anyway} replies={ {c: t[:1] for c, t in codes.items()} }")


def imap_login(inst):
    c = imaplib.IMAP4("127.0.0.1", inst.ports["imap"], timeout=th.IO_TIMEOUT)
    c.login(BOB, th.USERS[BOB])
    return c


def test_imap_append_full_disk(tmpfs_factory, tern_factory, capsys):
    fs = tmpfs_factory(SIZE)
    inst = tern_factory(workers=1, data_dir=fs.dir / "data", settings=dict(rely.BASE_SETTINGS))
    c = imap_login(inst)
    try:
        tok0 = th.token()
        typ, data = c.append("INBOX", None, None, rely.payload(tok0, 2000, to=BOB))
        assert typ == "OK", data
        typ, data = c.select("INBOX")
        assert typ == "OK" and int(data[0]) == 1, data
        results = []
        filler = None
        for leave in (0, 8192, 65536):
            for size in (1500, 150000):
                if filler is not None:
                    filler.unlink()
                filler = fs.fill(leave)
                tok = th.token()
                typ, data = c.append("INBOX", None, None, rely.payload(tok, size, to=BOB))
                results.append((leave, size, typ, data[-1]))
                if typ != "OK":
                    assert typ == "NO", (typ, data)
                    check_no_partial(inst, tok)
        assert any(r[2] == "NO" for r in results), f"the full disk never refused: {results}"
        assert inst.mailbox_files(BOB, ("tmp",)) == [], "half-written files left in tmp/"
        typ, data = c.noop()
        filler.unlink()
        tok1 = th.token()
        typ, data = c.append("INBOX", None, None, rely.payload(tok1, 5000, to=BOB))
        assert typ == "OK", f"no APPEND after space returned: {data}"
        typ, data = c.select("INBOX")
        n_ok = 2 + sum(1 for r in results if r[2] == "OK")
        assert typ == "OK" and int(data[0]) == n_ok, (data, results)
        files = rely.scan_mailbox(inst, BOB)
        assert sum(len(v) for v in files.values()) == n_ok
        assert all(all(v) for v in files.values()), "a stored message is corrupt"
    finally:
        try:
            c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
    with capsys.disabled():
        print("\n[reliability full disk imap] " +
              " ".join(f"leave={lv}/size={sz}:{typ}" for lv, sz, typ, _ in results) +
              f" first_no={next((d for _, _, t, d in results if t == 'NO'), b'')!r}")
