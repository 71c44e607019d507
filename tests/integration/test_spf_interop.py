"""SPF interop: tern's SPF result for mail from an unauthenticated client on the smtp role
(read from the Authentication-Results field of the delivered message) must equal pyspf's
(Debian python3-spf, spf.check2) for the same client address, sender and HELO, both asking
the same dnsmasq. The table covers every mechanism and modifier, macros, includes and
redirects, the DNS-mechanism and void-lookup limits, ptr, ip6, exists and permerrors."""
import re
import smtplib

import pytest
import spf

import tern_harness as th
from dnszone import Dnsmasq, use_for_pyspf

# pyspf asks dnspython through its deprecated query()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIENT = "127.0.0.5"
RCPT = "bob@example.test"

ZONE = [
    'txt-record=pass-ip4.test,"v=spf1 ip4:127.0.0.0/24 -all"',
    'txt-record=fail-ip4.test,"v=spf1 ip4:10.0.0.0/8 -all"',
    'txt-record=softfail.test,"v=spf1 ~all"',
    'txt-record=neutral.test,"v=spf1 ?all"',
    "host-record=norecord.test,10.9.9.9",
    'txt-record=norecord.test,"some other text"',
    'txt-record=include.test,"v=spf1 include:inc-target.test -all"',
    'txt-record=inc-target.test,"v=spf1 ip4:127.0.0.5 -all"',
    'txt-record=include-fail.test,"v=spf1 include:fail-ip4.test ~all"',
    'txt-record=include-none.test,"v=spf1 include:norecord.test -all"',
    'txt-record=redirect.test,"v=spf1 redirect=pass-ip4.test"',
    'txt-record=redirect-none.test,"v=spf1 redirect=norecord.test"',
    'txt-record=a-mech.test,"v=spf1 a:host.a-mech.test/24 -all"',
    "host-record=host.a-mech.test,127.0.0.99",
    'txt-record=mx-mech.test,"v=spf1 mx -all"',
    "mx-host=mx-mech.test,mx1.mx-mech.test,10",
    "host-record=mx1.mx-mech.test,127.0.0.5",
    'txt-record=mx-cidr.test,"v=spf1 mx:mx-mech.test/30 -all"',
    'txt-record=ptr-mech.test,"v=spf1 ptr -all"',
    "ptr-record=5.0.0.127.in-addr.arpa,h5.ptr-mech.test",
    "host-record=h5.ptr-mech.test,127.0.0.5",
    'txt-record=ptr-other.test,"v=spf1 ptr:elsewhere.test -all"',
    'txt-record=exists.test,"v=spf1 exists:%{ir}.%{l}.ex.exists.test -all"',
    "host-record=5.0.0.127.user.ex.exists.test,127.0.0.2",
    'txt-record=exists-no.test,"v=spf1 exists:%{l}.nothing.exists-no.test -all"',
    'txt-record=macro-inc.test,"v=spf1 include:%{o}._spf.%{d2} -all"',
    'txt-record=macro-inc.test._spf.macro-inc.test,"v=spf1 ip4:%{i}"',
    'txt-record=macro-ok.test,"v=spf1 include:%{o}._spf.%{d2} -all"',
    'txt-record=macro-ok.test._spf.macro-ok.test,"v=spf1 ip4:127.0.0.5"',
    'txt-record=too-many.test,"v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test '
    'a:h4.many.test a:h5.many.test a:h6.many.test a:h7.many.test a:h8.many.test '
    'a:h9.many.test a:h10.many.test a:h11.many.test +all"',
    'txt-record=ten.test,"v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test '
    'a:h4.many.test a:h5.many.test a:h6.many.test a:h7.many.test a:h8.many.test '
    'a:h9.many.test a:h10.many.test +all"',
    'txt-record=void.test,"v=spf1 a:v1.void.test a:v2.void.test a:v3.void.test +all"',
    'txt-record=void-two.test,"v=spf1 a:v1.void.test a:v2.void.test +all"',
    'txt-record=syntax.test,"v=spf1 foo -all"',
    'txt-record=badip.test,"v=spf1 ip4:127.0.0.300 -all"',
    'txt-record=two.test,"v=spf1 -all"',
    'txt-record=two.test,"v=spf1 +all"',
    'txt-record=ip6.test,"v=spf1 ip6:::1 ip6:2001:db8::/32 ip4:127.0.0.5 -all"',
    'txt-record=ip6-only.test,"v=spf1 ip6:::/0 -all"',
    'txt-record=mx-many.test,"v=spf1 mx -all"',
    'txt-record=exp.test,"v=spf1 -all exp=explain.exp.test"',
    'txt-record=explain.exp.test,"%{i} is not one of %{d}\'s hosts"',
    'txt-record=upper.test,"V=SPF1 IP4:127.0.0.5 -ALL"',
    'txt-record=helo.test,"v=spf1 a -all"',
    "host-record=helo.test,127.0.0.5",
    'txt-record=split.test,"v=spf1 ip4:10.1.1.1 ","ip4:127.0.0.5 -all"',
]
ZONE += [
    'txt-record=a6.test,"v=spf1 a:h6.a6.test//64 -all"',
    "host-record=h6.a6.test,::2",
    'txt-record=mx6.test,"v=spf1 mx -all"',
    "mx-host=mx6.test,m.mx6.test,5",
    "host-record=m.mx6.test,127.0.0.1,::1",
    'txt-record=ptr6.test,"v=spf1 ptr -all"',
    'txt-record=exists6.test,"v=spf1 exists:%{ir}.%{v}.e.exists6.test -all"',
    "host-record=" + ".".join(reversed("0" * 31 + "1")) + ".ip6.e.exists6.test,127.0.0.2",
    'txt-record=v4only.test,"v=spf1 ip4:127.0.0.0/8 a:h1.many.test -all"',
]
# ::1 reversed, nibble by nibble (RFC 3596)
V6_NIBBLES = ".".join(reversed("0" * 31 + "1"))
ZONE.append(f"ptr-record={V6_NIBBLES}.ip6.arpa,h.ptr6.test")
ZONE.append("host-record=h.ptr6.test,::1")
ZONE += [f"host-record=h{i}.many.test,10.0.1.{i}" for i in range(1, 12)]
ZONE += [f"mx-host=mx-many.test,m{i}.mx-many.test,{i}" for i in range(1, 12)]
ZONE += [f"host-record=m{i}.mx-many.test,127.0.0.5" for i in range(1, 12)]

# (sender, helo); "" sender: the HELO identity is checked
CASES = [
    ("a@pass-ip4.test", "client.test"),
    ("a@fail-ip4.test", "client.test"),
    ("a@softfail.test", "client.test"),
    ("a@neutral.test", "client.test"),
    ("a@norecord.test", "client.test"),
    ("a@nxdomain.test", "client.test"),
    ("a@include.test", "client.test"),
    ("a@include-fail.test", "client.test"),
    ("a@include-none.test", "client.test"),
    ("a@redirect.test", "client.test"),
    ("a@redirect-none.test", "client.test"),
    ("a@a-mech.test", "client.test"),
    ("a@mx-mech.test", "client.test"),
    ("a@mx-cidr.test", "client.test"),
    ("a@ptr-mech.test", "client.test"),
    ("a@ptr-other.test", "client.test"),
    ("user@exists.test", "client.test"),
    ("user@exists-no.test", "client.test"),
    ("a@macro-inc.test", "client.test"),
    ("a@macro-ok.test", "client.test"),
    ("a@too-many.test", "client.test"),
    ("a@ten.test", "client.test"),
    ("a@void.test", "client.test"),
    ("a@void-two.test", "client.test"),
    ("a@syntax.test", "client.test"),
    ("a@badip.test", "client.test"),
    ("a@two.test", "client.test"),
    ("a@ip6.test", "client.test"),
    ("a@ip6-only.test", "client.test"),
    ("a@mx-many.test", "client.test"),
    ("a@exp.test", "client.test"),
    ("a@upper.test", "client.test"),
    ("a@split.test", "client.test"),
    ("", "helo.test"),
]


CASES6 = [
    ("a@ip6.test", "client.test"),
    ("a@ip6-only.test", "client.test"),
    ("a@pass-ip4.test", "client.test"),
    ("a@a6.test", "client.test"),
    ("a@mx6.test", "client.test"),
    ("a@ptr6.test", "client.test"),
    ("a@exists6.test", "client.test"),
    ("a@v4only.test", "client.test"),
    ("a@include.test", "client.test"),
]


class TernOnV6(th.TernInstance):
    """The smtp listener on [::1]: the client's address is IPv6."""

    def config_text(self):
        return super().config_text().replace(f"smtp = 127.0.0.1:{self.ports['smtp']}",
                                             f"smtp = [::1]:{self.ports['smtp']}")

    def _probe(self, role, port):
        if role != "smtp":
            return super()._probe(role, port)
        try:
            with smtplib.SMTP("::1", port, timeout=2):
                return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def dns_and_tern(tmp_path_factory):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"), ZONE).start()
    inst = th.TernInstance(tmp_path_factory.mktemp("tern-spf"))
    try:
        inst.add_user(RCPT, "pw-bob-123")
        inst.dns_port = d.port
        inst.write_config()
        inst.start()
        yield d, inst
    finally:
        try:
            inst.stop()
            reports = inst.sanitizer_reports()
        finally:
            inst.cleanup()
            d.stop()
    assert not reports, inst.log_tail(100)


def tern_spf(inst, sender, helo, client=CLIENT):
    tok = th.token()
    msg = th.make_message(tok, sender=sender or "postmaster@" + helo, to=RCPT)
    host = "::1" if ":" in client else "127.0.0.1"
    with smtplib.SMTP(host, inst.ports["smtp"], local_hostname=helo,
                      source_address=(client, 0), timeout=th.IO_TIMEOUT) as s:
        s.sendmail(sender, [RCPT], msg)
    data = inst.wait_message(RCPT, tok)[0].read_bytes()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    ar = re.search(r"^Authentication-Results: mx\.example\.test;(.*?)(?=^\S)", head + "\r\nX",
                   re.M | re.S)
    assert ar, head
    m = re.search(r"\bspf=(\w+)", ar.group(1))
    return m.group(1), ar.group(1)


def test_spf_results_agree_with_pyspf(dns_and_tern):
    d, inst = dns_and_tern
    use_for_pyspf(d.port)
    rows, disagree = [], []
    for sender, helo in CASES:
        theirs, _exp = spf.check2(i=CLIENT, s=sender, h=helo)
        ours, field = tern_spf(inst, sender, helo)
        rows.append(f"{sender or '<> helo=' + helo:28} pyspf={theirs:10} tern={ours}")
        if theirs != ours:
            disagree.append(f"{sender} helo={helo}: pyspf={theirs} tern={ours} ({field!r})")
    print("\n".join(rows))
    assert not disagree, "\n".join(disagree)
    # the table exercises every result
    results = {r.split("tern=")[1] for r in rows}
    assert results >= {"pass", "fail", "softfail", "neutral", "none", "permerror"}, results


def test_spf_results_agree_with_pyspf_ipv6(tmp_path_factory):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq6"), ZONE).start()
    inst = TernOnV6(tmp_path_factory.mktemp("tern-spf6"))
    try:
        inst.add_user(RCPT, "pw-bob-123")
        inst.dns_port = d.port
        inst.write_config()
        inst.start()
        use_for_pyspf(d.port)
        rows, disagree = [], []
        for sender, helo in CASES6:
            theirs, _exp = spf.check2(i="::1", s=sender, h=helo)
            ours, field = tern_spf(inst, sender, helo, client="::1")
            rows.append(f"{sender:28} pyspf={theirs:10} tern={ours}")
            if theirs != ours:
                disagree.append(f"{sender}: pyspf={theirs} tern={ours} ({field!r})")
        print("\n".join(rows))
        assert not disagree, "\n".join(disagree)
        assert {r.split("tern=")[1] for r in rows} >= {"pass", "fail"}
    finally:
        try:
            inst.stop()
            reports = inst.sanitizer_reports()
        finally:
            inst.cleanup()
            d.stop()
    assert not reports, inst.log_tail(100)
