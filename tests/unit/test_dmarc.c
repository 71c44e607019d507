/* test_dmarc - the DMARC record parser (valid, invalid, defaults, §6.6.3's rua rule),
 * organisational domains from the Public Suffix List, alignment, and the decision (p, sp,
 * pct sampling). */
#include <stdlib.h>
#include <string.h>

#include "dmarc/dmarc.h"
#include "test.h"

static int parse(const char *txt, struct dmarc_record *r)
{
	char *err = NULL;
	int rc = dmarc_record_parse(txt, r, &err);
	free(err);
	return rc;
}

static void test_record(void)
{
	struct dmarc_record r;
	CHECK(parse("v=DMARC1; p=reject", &r) == 0);
	CHECK(r.p == DMARC_POLICY_REJECT && r.sp == DMARC_POLICY_REJECT && r.pct == 100 &&
	      !r.adkim_strict && !r.aspf_strict);
	CHECK(parse("v=DMARC1;p=quarantine;sp=none;pct=20;adkim=s;aspf=s;rua=mailto:x@y.z", &r) == 0);
	CHECK(r.p == DMARC_POLICY_QUARANTINE && r.sp == DMARC_POLICY_NONE && r.pct == 20 &&
	      r.adkim_strict && r.aspf_strict);
	CHECK(parse("v=DMARC1 ; p = none ; fo=1; ri=86400; unknown=tag;", &r) == 0);
	CHECK(r.p == DMARC_POLICY_NONE);
	CHECK(parse("v=DMARC1; P=Reject", &r) == 0 && r.p == DMARC_POLICY_REJECT);
	/* no valid p=, but rua=: p=none (RFC 7489 §6.6.3) */
	CHECK(parse("v=DMARC1; rua=mailto:d@example.com", &r) == 0 && r.p == DMARC_POLICY_NONE);
	CHECK(parse("v=DMARC1; p=bogus; rua=mailto:d@example.com", &r) == 0 &&
	      r.p == DMARC_POLICY_NONE);
	static const char *const bad[] = {
		"", "p=reject; v=DMARC1", "v=DMARC2; p=reject", "v=dmarc1; p=reject",
		"v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC1; p=reject; pct=101",
		"v=DMARC1; p=reject; pct=-1", "v=DMARC1; p=reject; pct=", "v=DMARC1; p=reject; adkim=x",
		"v=DMARC1; p=reject; aspf=relaxed", "v=DMARC1; p=reject; sp=maybe",
		"v=DMARC1; p=reject; p=none", "v=DMARC1; p=reject; novalue", "v=DMARC1; p=reject; =x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &r) != -1)
			fprintf(stderr, "  should not parse: '%s'\n", bad[i]);
		CHECK(parse(bad[i], &r) == -1);
	}
}

static void org(const char *d, const char *want)
{
	char *o = dmarc_org_domain(d);
	CHECK_STREQ(o, want);
	free(o);
}

/* from the Public Suffix List, not a list of our own */
static void test_org_domain(void)
{
	org("example.com", "example.com");
	org("mail.example.com", "example.com");
	org("a.b.c.Example.COM", "example.com");
	org("example.co.uk", "example.co.uk");
	org("mail.example.co.uk", "example.co.uk");
	org("foo.bar.example.com.au", "example.com.au");
	org("x.y.github.io", "y.github.io");	/* a private-section suffix */
	org("co.uk", "co.uk");			/* a public suffix itself */
	org("sender.test", "sender.test");	/* unknown TLD: the "*" rule */
	org("a.sender.test", "sender.test");
}

static void test_alignment(void)
{
	CHECK(dmarc_aligned("example.com", "EXAMPLE.com", true));
	CHECK(!dmarc_aligned("mail.example.com", "example.com", true));
	CHECK(dmarc_aligned("mail.example.com", "example.com", false));
	CHECK(dmarc_aligned("a.example.co.uk", "b.example.co.uk", false));
	CHECK(!dmarc_aligned("example.co.uk", "other.co.uk", false));
	CHECK(!dmarc_aligned("a.github.io", "b.github.io", false));
	CHECK(!dmarc_aligned(NULL, "example.com", false));
}

static void test_decide(void)
{
	struct dmarc_record r;
	enum dmarc_result res;
	enum dmarc_policy pub, dis;
	const char *dk[] = { "other.org", "mail.example.com" };
	struct dmarc_input in = { .from_domain = "example.com", .spf_pass = true,
				  .spf_domain = "bounce.example.com" };
	CHECK(parse("v=DMARC1; p=reject", &r) == 0);
	dmarc_decide(&in, &r, false, 0, &res, &pub, &dis);
	CHECK(res == DMARC_PASS && dis == DMARC_POLICY_NONE);		/* relaxed SPF */
	CHECK(parse("v=DMARC1; p=reject; aspf=s", &r) == 0);
	dmarc_decide(&in, &r, false, 0, &res, &pub, &dis);
	CHECK(res == DMARC_FAIL && pub == DMARC_POLICY_REJECT && dis == DMARC_POLICY_REJECT);
	in.dkim_pass_domains = dk;
	in.n_dkim = 2;
	dmarc_decide(&in, &r, false, 0, &res, &pub, &dis);
	CHECK(res == DMARC_PASS);					/* relaxed DKIM */
	in.n_dkim = 1;
	in.spf_pass = false;
	CHECK(parse("v=DMARC1; p=reject; sp=quarantine", &r) == 0);
	dmarc_decide(&in, &r, true, 0, &res, &pub, &dis);		/* found at org */
	CHECK(res == DMARC_FAIL && pub == DMARC_POLICY_QUARANTINE && dis == DMARC_POLICY_QUARANTINE);
	/* pct: inside the sample the policy, outside it the next less strict */
	CHECK(parse("v=DMARC1; p=reject; pct=30", &r) == 0);
	dmarc_decide(&in, &r, false, 29, &res, &pub, &dis);
	CHECK(dis == DMARC_POLICY_REJECT);
	dmarc_decide(&in, &r, false, 30, &res, &pub, &dis);
	CHECK(dis == DMARC_POLICY_QUARANTINE);
	CHECK(parse("v=DMARC1; p=quarantine; pct=0", &r) == 0);
	dmarc_decide(&in, &r, false, 0, &res, &pub, &dis);
	CHECK(res == DMARC_FAIL && dis == DMARC_POLICY_NONE);
	dmarc_decide(&in, NULL, false, 0, &res, &pub, &dis);
	CHECK(res == DMARC_NONE);
}

TEST_MAIN(TEST(test_record), TEST(test_org_domain), TEST(test_alignment), TEST(test_decide))
