/* test_spf - the SPF record parser (valid and invalid records, every mechanism and modifier,
 * CIDR forms, limits of the syntax) and macro expansion (the examples of RFC 7208 §7.4, IPv6,
 * URL escaping, truncation, invalid macros). Evaluation against DNS is checked against pyspf
 * by tests/integration/test_spf_interop.py. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "spf/spf.h"
#include "test.h"

static int parses(const char *txt)
{
	struct spf_record r;
	char *err = NULL;
	int rc = spf_record_parse(txt, &r, &err);
	if (rc == 0)
		spf_record_free(&r);
	else
		free(err);
	return rc;
}

static void test_record_valid(void)
{
	static const char *const ok[] = {
		"v=spf1",
		"v=spf1 -all",
		"V=SPF1 +ALL",
		"v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ?all",
		"v=spf1 ip6:2001:db8::/32 ip6:::1 ~all",
		"v=spf1 a mx ptr -all",
		"v=spf1 a:example.com a/24 a//64 a:example.com/24//64 mx:mail.example.com/28",
		"v=spf1 include:_spf.example.com exists:%{i}.bl.example.com -all",
		"v=spf1 redirect=_spf.example.com",
		"v=spf1 -all exp=explain._spf.%{d}",
		"v=spf1 ptr:example.com -all",
		"v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d}",
		"v=spf1 unknown-mod=anything%{d} -all",
		"v=spf1 a:foo.example.com.",
		"v=spf1  -all  ",
		"v=spf1 a:%{d}",
		"v=spf1 include:foo.1example",
		"v=spf1 ip4:0.0.0.0/0",
		"v=spf1 ip6:::/0",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (parses(ok[i]) != 0)
			fprintf(stderr, "  should parse: %s\n", ok[i]);
		CHECK(parses(ok[i]) == 0);
	}
}

static void test_record_invalid(void)
{
	static const char *const bad[] = {
		"v=spf1 foo",				/* unknown mechanism */
		"v=spf1 all:x",
		"v=spf1 include",			/* needs a domain-spec */
		"v=spf1 include:",
		"v=spf1 exists",
		"v=spf1 ip4:192.0.2.300",
		"v=spf1 ip4:192.0.2.0/33",
		"v=spf1 ip4:192.0.2.0/024",		/* leading zero */
		"v=spf1 ip6:2001:db8::/129",
		"v=spf1 ip6:192.0.2.1",
		"v=spf1 ip4",
		"v=spf1 a:1.2.3.4",			/* toplabel all digits */
		"v=spf1 a:example.com/33",
		"v=spf1 a//129",
		"v=spf1 a:example",			/* no "." toplabel */
		"v=spf1 redirect=a.com redirect=b.com",	/* duplicate modifier */
		"v=spf1 exp=a.com exp=b.com",
		"v=spf1 a:%{x}.example.com",		/* bad macro letter */
		"v=spf1 a:%{d0}.example.com",		/* zero transformer */
		"v=spf1 a:%{d.example.com",		/* unterminated */
		"v=spf1 a:%.example.com",
		"v=spf1 exists:%{c}.example.com",	/* c only in exp */
		"v=spf1 -",
		"v=spf1 =foo",
		"v=spf1 mx:",
		"v=spf10",
		"spf1 -all",
		"v=spf1 ip4:192.0.2.1/",
		"v=spf1 a:exa mple.com",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parses(bad[i]) != -1)
			fprintf(stderr, "  should not parse: %s\n", bad[i]);
		CHECK(parses(bad[i]) == -1);
	}
}

static void test_record_fields(void)
{
	struct spf_record r;
	char *err = NULL;
	CHECK(spf_record_parse("v=spf1 -ip4:192.0.2.0/24 ~a:ex.com/16//48 ?mx include:i.test "
			       "redirect=r.test exp=e.test", &r, &err) == 0);
	CHECK(r.n_mechs == 4);
	CHECK(r.mechs[0].type == SPF_IP4 && r.mechs[0].qualifier == '-' && r.mechs[0].cidr4 == 24);
	CHECK(r.mechs[0].addr[0] == 192 && r.mechs[0].addr[2] == 2);
	CHECK(r.mechs[1].type == SPF_A && r.mechs[1].qualifier == '~' && r.mechs[1].cidr4 == 16 &&
	      r.mechs[1].cidr6 == 48);
	CHECK_STREQ(r.mechs[1].domain_spec, "ex.com");
	CHECK(r.mechs[2].type == SPF_MX && r.mechs[2].qualifier == '?' &&
	      r.mechs[2].domain_spec == NULL && r.mechs[2].cidr4 == 32 && r.mechs[2].cidr6 == 128);
	CHECK(r.mechs[3].type == SPF_INCLUDE && r.mechs[3].qualifier == '+');
	CHECK_STREQ(r.redirect, "r.test");
	CHECK_STREQ(r.exp, "e.test");
	spf_record_free(&r);
	CHECK(spf_record_is_spf("v=spf1"));
	CHECK(spf_record_is_spf("v=spf1 -all"));
	CHECK(!spf_record_is_spf("v=spf10"));
	CHECK(!spf_record_is_spf("v=spf2.0/pra"));
}

static struct spf_macro_ctx ctx4(void)
{
	struct spf_macro_ctx c = { .sender = "strong-bad@email.example.com",
				   .domain = "email.example.com", .helo = "mx.example.org",
				   .receiver = "mx.example.net", .family = AF_INET, .now = 1000 };
	inet_pton(AF_INET, "192.0.2.3", c.ip);
	return c;
}

static void expect(const struct spf_macro_ctx *c, const char *spec, bool exp, const char *want)
{
	char *out = NULL, *err = NULL;
	int rc = spf_macro_expand(spec, c, exp, false, &out, &err);
	CHECK(rc == 0);
	if (rc == 0) {
		if (strcmp(out, want) != 0)
			fprintf(stderr, "  %s\n", spec);
		CHECK_STREQ(out, want);
	}
	free(out);
	free(err);
}

/* RFC 7208 §7.4, every example */
static void test_macro_rfc_examples(void)
{
	struct spf_macro_ctx c = ctx4();
	expect(&c, "%{s}", false, "strong-bad@email.example.com");
	expect(&c, "%{o}", false, "email.example.com");
	expect(&c, "%{d}", false, "email.example.com");
	expect(&c, "%{d4}", false, "email.example.com");
	expect(&c, "%{d3}", false, "email.example.com");
	expect(&c, "%{d2}", false, "example.com");
	expect(&c, "%{d1}", false, "com");
	expect(&c, "%{dr}", false, "com.example.email");
	expect(&c, "%{d2r}", false, "example.email");
	expect(&c, "%{l}", false, "strong-bad");
	expect(&c, "%{l-}", false, "strong.bad");
	expect(&c, "%{lr}", false, "strong-bad");
	expect(&c, "%{lr-}", false, "bad.strong");
	expect(&c, "%{l1r-}", false, "strong");
	expect(&c, "%{ir}.%{v}._spf.%{d2}", false, "3.2.0.192.in-addr._spf.example.com");
	expect(&c, "%{lr-}.lp._spf.%{d2}", false, "bad.strong.lp._spf.example.com");
	expect(&c, "%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", false,
	       "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
	expect(&c, "%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", false,
	       "3.2.0.192.in-addr.strong.lp._spf.example.com");
	expect(&c, "%{d2}.trusted-domains.example.net", false,
	       "example.com.trusted-domains.example.net");
	struct spf_macro_ctx c6 = c;
	c6.family = AF_INET6;
	memset(c6.ip, 0, sizeof(c6.ip));
	inet_pton(AF_INET6, "2001:db8::cb01", c6.ip);
	expect(&c6, "%{ir}.%{v}._spf.%{d2}", false,
	       "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
}

static void test_macro_more(void)
{
	struct spf_macro_ctx c = ctx4();
	expect(&c, "%%%_%-", false, "% %20");
	expect(&c, "%{h}", false, "mx.example.org");
	expect(&c, "%{p}", false, "unknown");
	expect(&c, "%{c} %{r} %{t}", true, "192.0.2.3 mx.example.net 1000");
	expect(&c, "%{S}", false, "strong-bad%40email.example.com");	/* URL-escaped */
	expect(&c, "%{i}", false, "192.0.2.3");
	expect(&c, "%{l+-}", false, "strong.bad");
	struct spf_macro_ctx c6 = c;
	c6.family = AF_INET6;
	inet_pton(AF_INET6, "2001:db8::cb01", c6.ip);
	expect(&c6, "%{c}", true, "2001:db8::cb01");
	expect(&c6, "%{v}", false, "ip6");
	/* c, r, t only in explanations */
	char *out = NULL, *err = NULL;
	CHECK(spf_macro_expand("%{c}", &c, false, false, &out, &err) == -1);
	free(err);
	err = NULL;
	CHECK(spf_macro_expand("%{z}", &c, true, false, &out, &err) == -1);
	free(err);
	err = NULL;
	CHECK(spf_macro_expand("%", &c, false, false, &out, &err) == -1);
	free(err);
	err = NULL;
	/* a domain over 253 octets is cut from the left, whole labels at a time */
	char lp[80];
	memset(lp, 'a', 60);
	lp[60] = '\0';
	char sender[400];
	snprintf(sender, sizeof(sender), "%s.%s.%s.%s.%s@x.example", lp, lp, lp, lp, lp);
	c.sender = sender;
	CHECK(spf_macro_expand("%{l}.example.com", &c, false, true, &out, &err) == 0);
	CHECK(strlen(out) <= 253);
	CHECK(strncmp(out, "aaaa", 4) == 0 && strstr(out, ".example.com") != NULL);
	free(out);
}

TEST_MAIN(TEST(test_record_valid), TEST(test_record_invalid), TEST(test_record_fields),
	  TEST(test_macro_rfc_examples), TEST(test_macro_more))
