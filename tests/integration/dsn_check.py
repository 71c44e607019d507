"""dsn_check - does a delivery status notification parse as RFC 3464 with Python's email package?

check_dsn(data) raises AssertionError naming the first problem and otherwise returns a summary
(the parsed message, its parts, per-message and per-recipient field groups). As a script:
`python3 dsn_check.py FILE...` checks each file and exits 1 if any fails.
"""
import email
import email.policy
import re
import sys
from dataclasses import dataclass, field

ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}
STATUS_RE = re.compile(r"^[245]\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$")
THIRD_TYPES = {"message/rfc822", "text/rfc822-headers",
               "message/global", "message/global-headers"}     # RFC 6533 for UTF-8


@dataclass
class DsnSummary:
    msg: object
    parts: list
    per_message: object
    recipients: list = field(default_factory=list)

    @property
    def actions(self):
        return [str(r["Action"]) for r in self.recipients]

    @property
    def third_type(self):
        return self.parts[2].get_content_type() if len(self.parts) > 2 else None


def check_raw_lines(data: bytes):
    """Every line ends in CRLF and is at most 998 octets (RFC 5322 2.1.1)."""
    assert data.endswith(b"\r\n"), "the report does not end with CRLF"
    for n, line in enumerate(data.split(b"\r\n")[:-1], 1):
        assert b"\n" not in line, f"line {n} has a bare LF: {line[:80]!r}"
        assert b"\r" not in line, f"line {n} has a bare CR: {line[:80]!r}"
        assert len(line) <= 998, f"line {n} is {len(line)} octets long"


def check_dsn(data: bytes) -> DsnSummary:
    """Parse one composed report and check its RFC 3464 structure."""
    check_raw_lines(data)
    msg = email.message_from_bytes(data, policy=email.policy.default)
    # Defects inside the returned message are the sender's, not the report's.
    for part in [msg] + (msg.get_payload() if msg.is_multipart() else []):
        assert not part.defects, f"{part.get_content_type()} part: defects {part.defects}"
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert msg[name], f"no {name} field"
    assert "MAILER-DAEMON@" in str(msg["From"]), msg["From"]
    assert str(msg["Auto-Submitted"]) == "auto-replied", msg["Auto-Submitted"]
    assert msg.is_multipart(), "the report is not multipart"
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")

    parts = msg.get_payload()
    assert len(parts) in (2, 3), f"{len(parts)} parts"
    text = parts[0]
    assert text.get_content_type() == "text/plain", text.get_content_type()
    assert "This is the mail system at host" in text.get_content(), text.get_content()[:200]

    status = parts[1]
    assert status.get_content_type() in ("message/delivery-status",
                                         "message/global-delivery-status"), \
        status.get_content_type()
    groups = status.get_payload()
    if status.get_content_type() == "message/global-delivery-status":
        # email parses only message/delivery-status into field groups: split it here
        raw = data.split(b"message/global-delivery-status", 1)[1].split(b"\r\n\r\n", 1)[1]
        raw = raw.split(b"\r\n--" + msg.get_boundary().encode(), 1)[0]
        groups = [email.message_from_bytes(b, policy=email.policy.default)
                  for b in re.split(rb"\r\n\r\n", raw.strip(b"\r\n")) if b.strip()]
    assert isinstance(groups, list) and len(groups) >= 2, \
        f"delivery-status has {len(groups) if isinstance(groups, list) else 'no'} field groups"
    per_message = groups[0]
    assert str(per_message["Reporting-MTA"]).startswith("dns;"), per_message["Reporting-MTA"]
    assert per_message["Final-Recipient"] is None, "a recipient field in the per-message group"
    for i, rcpt in enumerate(groups[1:], 1):
        final = rcpt["Final-Recipient"]
        assert final and ";" in str(final), f"recipient {i}: Final-Recipient {final!r}"
        assert str(rcpt["Action"]).lower() in ACTIONS, f"recipient {i}: Action {rcpt['Action']!r}"
        assert STATUS_RE.match(str(rcpt["Status"])), f"recipient {i}: Status {rcpt['Status']!r}"
        if rcpt["Diagnostic-Code"] is not None:
            assert ";" in str(rcpt["Diagnostic-Code"]), rcpt["Diagnostic-Code"]
        for name, value in rcpt.items():
            assert str(value).isascii(), f"recipient {i}: {name} is not ASCII: {value!r}"

    if len(parts) == 3:
        third = parts[2]
        assert third.get_content_type() in THIRD_TYPES, third.get_content_type()
        if third.get_content_type() in ("message/rfc822", "message/global"):
            inner = third.get_payload()
            assert isinstance(inner, list) and len(inner) == 1, "message/rfc822 holds no message"
            assert len(inner[0].keys()) > 0, "the returned message has no header fields"
        elif third.get_content_type() == "message/global-headers":
            inner = third.get_payload()
            assert isinstance(inner, list) and len(inner[0].keys()) > 0, "no returned header"
        else:
            content = third.get_content()
            assert re.match(r"^[!-9;-~]+:", content), f"not a header: {content[:80]!r}"
    return DsnSummary(msg=msg, parts=parts, per_message=per_message, recipients=groups[1:])


def main(argv):
    failed = 0
    for path in argv[1:]:
        try:
            with open(path, "rb") as f:
                s = check_dsn(f.read())
            print(f"ok   {path}: {s.actions} {s.third_type}")
        except AssertionError as e:
            failed += 1
            print(f"FAIL {path}: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
