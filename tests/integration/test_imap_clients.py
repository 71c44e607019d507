"""Real IMAP clients we did not write against tern: curl (imap:// with STARTTLS, imaps://)
listing mailboxes, searching, examining, and Python's imaplib for a whole session. curl is
installed by scripts/deps.sh. (Clients that need FETCH come once FETCH is implemented.)"""
import imaplib
import re
import shutil
import subprocess

import pytest

import tern_harness as th
from imap_raw import ALICE, ALICE_PW, BOB, BOB_PW, LOOPBACK_OK, deliver

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    import conftest
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-imap-clients"), settings=LOOPBACK_OK)
    conftest._LIVE.append(inst)
    try:
        conftest.provision_users(inst)
        inst.start()
        for _ in range(3):
            deliver(inst)
    except BaseException:
        conftest._teardown_quiet(inst)
        raise
    yield inst
    conftest._teardown(inst)


def curl(url, *args, user=BOB, pw=BOB_PW):
    assert CURL, "curl missing: scripts/deps.sh installs it"
    p = subprocess.run([CURL, "-sS", "--max-time", "30", "-k", "-u", f"{user}:{pw}", *args, url],
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def listed(out):
    names = []
    for line in out.splitlines():
        m = re.match(r'^\* LIST \(([^)]*)\) "/" (.+?)\r?$', line)
        if m:
            names.append(m.group(2).strip('"'))
    return names


def test_curl_imaps_list(srv):
    rc, out, err = curl(f"imaps://127.0.0.1:{srv.ports['imaps']}/")
    assert rc == 0, (rc, out, err)
    assert set(listed(out)) >= {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}, out


def test_curl_imap_starttls_list(srv):
    """--ssl-reqd on imap://: curl upgrades with STARTTLS before it authenticates."""
    rc, out, err = curl(f"imap://127.0.0.1:{srv.ports['imap']}/", "--ssl-reqd", "-v")
    assert rc == 0, (rc, out, err)
    assert "STARTTLS" in err, err[-2000:]
    assert "INBOX" in listed(out), out


def test_curl_imap_starttls_required_by_server(tern_factory):
    """Without the loopback exception the server offers LOGINDISABLED: curl with STARTTLS
    works, curl without TLS cannot log in."""
    inst = tern_factory()
    url = f"imap://127.0.0.1:{inst.ports['imap']}/"
    rc, out, err = curl(url, "--ssl-reqd")
    assert rc == 0 and "INBOX" in listed(out), (rc, out, err)
    rc, out, err = curl(url)
    assert rc != 0 and "INBOX" not in listed(out), (rc, out, err)


def test_curl_search(srv):
    rc, out, err = curl(f"imaps://127.0.0.1:{srv.ports['imaps']}/INBOX?ALL")
    assert rc == 0, (rc, out, err)
    assert out.strip() == "* SEARCH 1 2 3", out
    rc, out, err = curl(f"imaps://127.0.0.1:{srv.ports['imaps']}/INBOX?SUBJECT%20nothing-like-it")
    assert rc == 0 and out.strip() == "* SEARCH", (rc, out, err)


def test_curl_custom_requests(srv):
    base = f"imaps://127.0.0.1:{srv.ports['imaps']}/"
    rc, out, err = curl(base + "INBOX", "-X", "EXAMINE INBOX")
    assert rc == 0 and "* 3 EXISTS" in out and "[PERMANENTFLAGS ()]" in out, (rc, out, err)
    rc, out, err = curl(base, "-X", "STATUS INBOX (MESSAGES UIDNEXT)")
    assert rc == 0 and "MESSAGES 3" in out and "UIDNEXT 4" in out, (rc, out, err)
    rc, out, err = curl(base, "-X", "CREATE curl-made")
    assert rc == 0, (rc, out, err)
    rc, out, err = curl(base, "-X", 'LIST "" curl-made')
    assert listed(out) == ["curl-made"], out
    # a wrong password: curl reports the login failure (exit 67)
    rc, out, err = curl(base, pw="wrong")
    assert rc == 67, (rc, out, err)


def test_imaplib_session(srv):
    """imaplib end to end on imaps: select, search, store, copy, expunge, status."""
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.ports["imaps"], ssl_context=th.tls_context(),
                          timeout=th.IO_TIMEOUT)
    m.login(ALICE, ALICE_PW)
    deliver(srv, to=ALICE)
    deliver(srv, to=ALICE)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"], data
    typ, data = m.search(None, "ALL")
    assert data == [b"1 2"], data
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "OK", data
    typ, data = m.uid("SEARCH", None, "SEEN")
    assert data == [b"1"], data
    typ, data = m.copy("2", "Archive")
    assert typ == "OK", data
    typ, data = m.status("Archive", "(MESSAGES)")
    assert b"MESSAGES 1" in data[0], data
    m.store("1:2", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert typ == "OK" and data in ([b"2", b"1"], [b"1", b"1"]), data
    typ, data = m.create("imaplib/child")
    assert typ == "OK", data
    typ, data = m.list('""', "imaplib*")
    assert len(data) == 2, data
    m.close()
    m.logout()
