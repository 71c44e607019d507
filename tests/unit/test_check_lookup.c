/* test_check_lookup - `tern check`'s helpers without DNS: reverse names (in-addr.arpa and
 * the ip6.arpa nibble order), which addresses are private, name and address comparison, and
 * how DNS text is shown (control bytes, quotes, long records). */
#include <stdlib.h>
#include <string.h>

#include "cli/check_private.h"
#include "test.h"

static void test_reverse_name(void)
{
	unsigned char b[16];
	int fam;
	char *r = check_reverse_name("192.0.2.45", b, &fam);
	CHECK_STREQ(r, "45.2.0.192.in-addr.arpa");
	CHECK(fam == AF_INET && b[0] == 192 && b[3] == 45);
	free(r);
	r = check_reverse_name("2001:db8::567:89ab", b, &fam);
	/* RFC 3596 §2.5's example */
	CHECK_STREQ(r, "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	CHECK(fam == AF_INET6);
	free(r);
	static const char *const bad[] = { "", "mx.example.org", "192.0.2", "192.0.2.256",
					   "1.2.3.4 ", "::g", "[::1]", "1.2.3.4/32" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(check_reverse_name(bad[i], b, &fam) == NULL);
}

static void test_private(void)
{
	static const char *const priv[] = { "127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255",
					    "192.168.1.1", "169.254.0.1", "100.64.0.1",
					    "100.127.255.255", "0.0.0.0", "::1", "::", "fc00::1",
					    "fd12::1", "fe80::1", "::ffff:10.0.0.1", "not an address" };
	static const char *const pub[] = { "192.0.2.1", "8.8.8.8", "172.15.255.255", "172.32.0.1",
					   "100.63.255.255", "100.128.0.1", "2001:db8::1",
					   "2a00:1450::1", "::ffff:8.8.8.8", "fec0::1" };
	for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++) {
		if (!check_is_private(priv[i]))
			fprintf(stderr, "  public? %s\n", priv[i]);
		CHECK(check_is_private(priv[i]));
	}
	for (size_t i = 0; i < sizeof(pub) / sizeof(pub[0]); i++) {
		if (check_is_private(pub[i]))
			fprintf(stderr, "  private? %s\n", pub[i]);
		CHECK(!check_is_private(pub[i]));
	}
}

static void test_compare(void)
{
	CHECK(check_same_name("MX.Example.ORG", "mx.example.org."));
	CHECK(check_same_name("mx.example.org.", "mx.example.org"));
	CHECK(!check_same_name("mx.example.org", "mx.example.org.."));
	CHECK(!check_same_name("mx.example.org", "mx.example.or"));
	CHECK(check_same_name("", "."));	/* both the root */
	CHECK(check_same_name("", ""));
	CHECK(check_same_addr("2001:db8::1", "2001:0db8:0:0::0001"));
	CHECK(check_same_addr("127.0.0.1", "127.0.0.1"));
	CHECK(!check_same_addr("127.0.0.1", "::ffff:127.0.0.1"));
	CHECK(!check_same_addr("127.0.0.1", "127.0.0.2"));
	CHECK(!check_same_addr("x", "x"));
}

static void test_shown(void)
{
	char *s = check_shown("v=spf1 -all");
	CHECK_STREQ(s, "\"v=spf1 -all\"");
	free(s);
	s = check_shown("a\"b\\c\n\x01\x7f\xff");
	CHECK_STREQ(s, "\"a\\042b\\134c\\012\\001\\177\\377\"");
	free(s);
	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	s = check_shown(big);
	CHECK(strlen(s) == 300 + 2 + 3 && strcmp(s + 301, "...\"") == 0);
	free(s);
	s = check_shown("");
	CHECK_STREQ(s, "\"\"");
	free(s);
}

TEST_MAIN(TEST(test_reverse_name), TEST(test_private), TEST(test_compare), TEST(test_shown))
