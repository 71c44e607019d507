"""Delivery status notifications seen by an independent MIME parser.

The C unit test binary test_dsn composes its reports (failed and delayed, 1 and 3 recipients,
headers only and full, a hostile diagnostic, a bare-LF original, boundary-like lines, non-ASCII
addresses, a 300 KB original); with TERN_DSN_WRITE_DIR set it also writes each one there as
NAME.eml. Here every file must parse with Python's email package as RFC 3464 multipart/report.
The binary comes from TERN_UNIT_DIR (default: build/asan/unit under the repository root);
`make test` builds it before pytest runs.
"""
import os
import subprocess
from pathlib import Path

import pytest

import dsn_check

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = Path(os.environ.get("TERN_UNIT_DIR") or REPO / "build" / "asan" / "unit")
TEST_DSN = UNIT_DIR / "test_dsn"

EXPECTED = {
    "failed_headers_only", "three_rcpts_full", "delayed_only", "success",
    "hostile_diagnostic", "lf_only_full", "lf_only_headers", "boundary_like_lines",
    "large_streamed", "offset_8bit", "non_ascii", "long_address", "no_original",
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{name: bytes} of every report the unit test binary composed."""
    if not TEST_DSN.is_file() or not os.access(TEST_DSN, os.X_OK):
        pytest.skip(f"unit test binary {TEST_DSN} not built: run `make build/asan/unit/test_dsn` "
                    f"or set TERN_UNIT_DIR")
    out = tmp_path_factory.mktemp("dsn")
    env = dict(os.environ, TERN_DSN_WRITE_DIR=str(out))
    r = subprocess.run([str(TEST_DSN)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{TEST_DSN} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    found = {p.stem: p.read_bytes() for p in sorted(out.glob("*.eml"))}
    assert found, f"{TEST_DSN} wrote no reports into {out}"
    return found


def test_all_expected_reports_written(reports):
    missing = EXPECTED - set(reports)
    assert not missing, f"reports not written: {sorted(missing)}"


def test_every_report_parses(reports):
    problems = []
    for name, data in sorted(reports.items()):
        try:
            dsn_check.check_dsn(data)
        except AssertionError as e:
            problems.append(f"{name}: {e}")
    assert not problems, "\n".join(problems)


def test_failed_headers_only(reports):
    s = dsn_check.check_dsn(reports["failed_headers_only"])
    assert str(s.msg["Subject"]) == "Undelivered Mail Returned to Sender"
    assert s.actions == ["failed"]
    rcpt = s.recipients[0]
    assert str(rcpt["Final-Recipient"]) == "rfc822; bob@example.org"
    assert str(rcpt["Status"]) == "5.1.1"
    assert str(rcpt["Remote-MTA"]) == "dns; mx.example.org"
    assert str(rcpt["Diagnostic-Code"]).startswith("smtp; 550 5.1.1 <bob@example.org>:")
    assert str(s.per_message["X-Queue-ID"]) == "4Fq2Xy7Zk1"
    assert s.third_type == "text/rfc822-headers"
    headers = s.parts[2].get_content()
    assert "Subject: lunch on friday" in headers
    assert "Shall we meet" not in headers


def test_three_recipients_full(reports):
    s = dsn_check.check_dsn(reports["three_rcpts_full"])
    assert s.actions == ["failed", "failed", "delayed"]
    assert [str(r["Status"]) for r in s.recipients] == ["5.1.1", "5.2.2", "4.4.1"]
    assert str(s.recipients[1]["Original-Recipient"]) == "rfc822; carol@example.net"
    assert s.recipients[2]["Will-Retry-Until"] is not None
    assert str(s.per_message["Original-Envelope-Id"]) == "QQ314159"
    assert s.third_type == "message/rfc822"
    inner = s.parts[2].get_payload()[0]
    assert str(inner["Subject"]) == "lunch on friday"
    assert "Shall we meet at noon?" in inner.get_content()


def test_delayed(reports):
    s = dsn_check.check_dsn(reports["delayed_only"])
    assert str(s.msg["Subject"]) == "Delayed Mail (still being retried)"
    assert s.actions == ["delayed"]
    assert s.recipients[0]["Will-Retry-Until"] is not None
    assert "THIS IS A WARNING ONLY" in s.parts[0].get_content()
    # RET=FULL, but a delay report returns the header only (RFC 3461 6.2)
    assert s.third_type == "text/rfc822-headers"


def test_hostile_diagnostic_contained(reports):
    s = dsn_check.check_dsn(reports["hostile_diagnostic"])
    for part in s.msg.walk():
        assert part["X-Injected"] is None and part["X-Evil"] is None
    for rcpt in s.recipients:
        assert rcpt["X-Injected"] is None
    diag = str(s.recipients[0]["Diagnostic-Code"])
    assert diag.startswith("smtp; 550 5.7.1 bad X-Injected: yes")
    assert len(diag) <= len("smtp; ") + 1000 + 2 and diag.endswith("...")
    assert not any(ord(c) < 32 for c in diag)
    assert s.actions == ["failed", "failed"]


def test_bare_lf_original_made_crlf(reports):
    full = dsn_check.check_dsn(reports["lf_only_full"])
    inner = full.parts[2].get_payload()[0]
    assert str(inner["Subject"]) == "bare LF"
    assert "line one" in inner.get_content()
    hdrs = dsn_check.check_dsn(reports["lf_only_headers"])
    assert hdrs.parts[2].get_content().replace("\r\n", "\n").rstrip("\n") == \
        "From: a@example.test\nSubject: bare LF"


def test_boundary_like_lines(reports):
    s = dsn_check.check_dsn(reports["boundary_like_lines"])
    assert len(s.parts) == 3
    inner = s.parts[2].get_payload()[0]
    assert "--=_tern_dsn_" in inner.as_string()


def test_non_ascii_addresses(reports):
    s = dsn_check.check_dsn(reports["non_ascii"])
    assert str(s.msg["To"]) == "jörg@example.test"
    assert s.parts[0].get_content_charset() == "utf-8"
    assert "<jörg@example.test>:" in s.parts[0].get_content()
    assert str(s.recipients[0]["Final-Recipient"]) == "utf-8; j\\x{F6}rg@example.test"
    assert str(s.recipients[1]["Final-Recipient"]) == "rfc822; bad+FF+01@example.test"


def test_large_original(reports):
    s = dsn_check.check_dsn(reports["large_streamed"])
    inner = s.parts[2].get_payload()[0]
    assert str(inner["Subject"]) == "large"
    assert len(reports["large_streamed"]) > 300000


def test_without_original(reports):
    s = dsn_check.check_dsn(reports["no_original"])
    assert len(s.parts) == 2
