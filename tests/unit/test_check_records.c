/* test_check_records - the MTA-STS (RFC 8461 §3.1) and TLS-RPT (RFC 8460 §3) TXT record
 * checks of `tern check`: valid records, the discard rule, and nasty inputs (empty, missing
 * and repeated fields, bad ids and URIs, control bytes, long names, huge records). */
#include <stdlib.h>
#include <string.h>

#include "cli/check_records.h"
#include "test.h"

static int sts(const char *txt)
{
	const char *err = NULL;
	int r = mtasts_record_check(txt, &err);
	if (r < 0 && (err == NULL || err[0] == '\0'))
		return -2;	/* an error must say why */
	return r;
}

static int rpt(const char *txt)
{
	const char *err = NULL;
	int r = tlsrpt_record_check(txt, &err);
	if (r < 0 && (err == NULL || err[0] == '\0'))
		return -2;
	return r;
}

static void test_mtasts_valid(void)
{
	static const char *const good[] = {
		"v=STSv1; id=20160831085700Z;",	/* RFC 8461 §3.1's example */
		"v=STSv1; id=20160831085700Z",
		"v=STSv1;id=1",
		"v=STSv1 ;\tid=abcDEF123 ; ",
		"v=STSv1; id=12345678901234567890123456789012",	/* 32 */
		"v=STSv1; ext_1.a-b=some!value; id=x",
		"v=STSv1; id=x; a=%7e~",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(mtasts_is_record(good[i]));
		if (sts(good[i]) != 0)
			fprintf(stderr, "  rejected: %s\n", good[i]);
		CHECK(sts(good[i]) == 0);
	}
}

static void test_mtasts_invalid(void)
{
	static const char *const bad[] = {
		"", "v=STSv1", "v=STSv1;", "v=STSv1; ;", "v=STSv1; id=", "v=STSv1; id",
		"v=STSv1; id=123456789012345678901234567890123",	/* 33 */
		"v=STSv1; id=2016-08-31", "v=STSv1; id=abc def", "v=STSv1; id=a; id=b",
		"v=STSv1 id=1", "v=STSv1; id=1; v=STSv1", "v=STSv1; id=1; =x", "v=STSv1; id=1; x=",
		"v=STSv1; id=1; x==y", "v=STSv1; id=1; _x=y", "v=STSv1; id=1; x=a\x01", "v=STSv1; id=\x7f",
		"v=STSv1; id=é", "v=STSv1; id=1;; x=y", "v=STSv1; id=1; x=y z",
		"v=STSv1; id=1; abcdefghijabcdefghijabcdefghijabc=1",	/* a 33-char name */
		"V=STSv1; id=1", "v=STSv2; id=1", "v=STSv10; id=1", "id=1; v=STSv1",
		" v=STSv1; id=1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sts(bad[i]) != -1)
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(sts(bad[i]) == -1);
	}
	/* which records a sender keeps before counting (RFC 8461 §3.1) */
	CHECK(mtasts_is_record("v=STSv1"));
	CHECK(mtasts_is_record("v=STSv1;garbage"));
	CHECK(!mtasts_is_record("v=STSv10; id=1"));
	CHECK(!mtasts_is_record("v=spf1 -all"));
	CHECK(!mtasts_is_record(""));
}

static void test_tlsrpt_valid(void)
{
	static const char *const good[] = {
		"v=TLSRPTv1; rua=mailto:reports@example.com",
		"v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt",
		"v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/x;",
		"v=TLSRPTv1; rua=mailto:a@example.com , mailto:b@example.org ; ext=1",
		"v=TLSRPTv1; rua=MAILTO:a@b",
		"v=TLSRPTv1; rua=mailto:tlsrpt@example.com?subject=x=y",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK(tlsrpt_is_record(good[i]));
		if (rpt(good[i]) != 0)
			fprintf(stderr, "  rejected: %s\n", good[i]);
		CHECK(rpt(good[i]) == 0);
	}
}

static void test_tlsrpt_invalid(void)
{
	static const char *const bad[] = {
		"", "v=TLSRPTv1", "v=TLSRPTv1;", "v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=ftp://x",
		"v=TLSRPTv1; rua=http://insecure.example", "v=TLSRPTv1; rua=mailto:",
		"v=TLSRPTv1; rua=mailto:nobody", "v=TLSRPTv1; rua=mailto:@example.com",
		"v=TLSRPTv1; rua=mailto:a@", "v=TLSRPTv1; rua=https://", "v=TLSRPTv1; rua=https:///x",
		"v=TLSRPTv1; rua=mailto:a@b,", "v=TLSRPTv1; rua=,mailto:a@b",
		"v=TLSRPTv1; rua=mailto:a@b,,mailto:c@d", "v=TLSRPTv1; rua=mailto:a@b mailto:c@d",
		"v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d", "v=TLSRPTv1; ruf=mailto:a@b",
		"v=TLSRPTv1; rua=mailto:a\x01@b", "v=TLSRPTv2; rua=mailto:a@b",
		"rua=mailto:a@b; v=TLSRPTv1", "v=TLSRPTv1 rua=mailto:a@b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (rpt(bad[i]) != -1)
			fprintf(stderr, "  accepted: %s\n", bad[i]);
		CHECK(rpt(bad[i]) == -1);
	}
	CHECK(tlsrpt_is_record("v=TLSRPTv1 ;"));
	CHECK(!tlsrpt_is_record("v=TLSRPTv10"));
	CHECK(!tlsrpt_is_record("v=STSv1; id=1"));
}

/* huge_inputs - a long record is checked in one pass and fails or passes cleanly */
static void test_huge_inputs(void)
{
	size_t n = 1 << 20;
	char *s = malloc(n + 64);
	strcpy(s, "v=STSv1; id=1; x=");
	size_t l = strlen(s);
	memset(s + l, 'a', n);
	s[l + n] = '\0';
	CHECK(sts(s) == 0);
	memset(s + 8, 'b', n);	/* one endless field name */
	s[8 + n] = '\0';
	CHECK(sts(s) == -1);
	strcpy(s, "v=TLSRPTv1; rua=mailto:a@b");
	l = strlen(s);
	for (size_t i = 0; i + 12 < n; i += 12)
		memcpy(s + l + i, ",mailto:c@d", 11), s[l + i + 11] = ' ';
	s[l + n - 20] = '\0';
	CHECK(rpt(s) == 0 || rpt(s) == -1);	/* ends wherever the copy stopped: no crash */
	memset(s, ';', n);
	s[n] = '\0';
	CHECK(sts(s) == -1 && rpt(s) == -1);
	free(s);
}

TEST_MAIN(TEST(test_mtasts_valid), TEST(test_mtasts_invalid), TEST(test_tlsrpt_valid),
	  TEST(test_tlsrpt_invalid), TEST(test_huge_inputs))
