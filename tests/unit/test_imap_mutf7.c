/* test_imap_mutf7 - modified UTF-7 mailbox names both ways, and what a strict decoder
 * refuses. */
#include <stdlib.h>
#include <string.h>

#include "imap/mutf7.h"
#include "lib/buf.h"
#include "test.h"

static void both_ways(const char *utf8, const char *mutf7)
{
	buf b;
	buf_init(&b, 0);
	CHECK(imap_utf8_to_mutf7(utf8, &b) == 0);
	CHECK_STREQ(buf_cstr(&b), mutf7);
	buf_reset(&b);
	CHECK(imap_mutf7_to_utf8(mutf7, &b) == 0);
	CHECK_STREQ(buf_cstr(&b), utf8);
	buf_free(&b);
}

static void test_round_trips(void)
{
	both_ways("INBOX", "INBOX");
	both_ways("", "");
	both_ways("a&b", "a&-b");
	both_ways("&", "&-");
	/* RFC 3501 5.1.3's example */
	both_ways("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		  "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
	both_ways("Entw\xc3\xbc" "rfe", "Entw&APw-rfe");
	both_ways("caf\xc3\xa9s", "caf&AOk-s");
	both_ways("\xc3\xa9\xc3\xa9", "&AOkA6Q-");
	both_ways("\xf0\x9f\x98\x80", "&2D3eAA-");		/* U+1F600: a surrogate pair */
	both_ways("Gel\xc3\xb6scht/&x", "Gel&APY-scht/&-x");
}

static void test_refused(void)
{
	const char *bad_mutf7[] = {
		"&", "&AOk", "a&AOk", "&Jjo!-", "&-&",
		"&AGE-",		/* encodes 'a': printable ASCII must be direct */
		"&AAA-",		/* NUL */
		"&AOkA6Q",		/* no closing '-' */
		"&AOk-&AOk-",		/* two adjacent runs: canonical is one */
		"&AOl-",		/* non-zero padding bits */
		"&2D0-",		/* lone high surrogate */
		"&3gA-",		/* lone low surrogate */
		"&--",			/* "&-" then "-": fine? no: "&-" is '&', then '-' is ASCII */
		"caf\xc3\xa9",		/* 8-bit in a modified UTF-7 name */
		"a\tb",
	};
	for (size_t i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
		buf b;
		buf_init(&b, 0);
		int r = imap_mutf7_to_utf8(bad_mutf7[i], &b);
		if (strcmp(bad_mutf7[i], "&--") == 0) {
			CHECK(r == 0 && strcmp(buf_cstr(&b), "&-") == 0);
		} else if (r != -1) {
			fprintf(stderr, "accepted \"%s\"\n", bad_mutf7[i]);
			CHECK(0);
		}
		buf_free(&b);
	}
	const char *bad_utf8[] = { "\xc3", "\xc0\xaf", "\xed\xa0\x80", "a\xff" };
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		buf b;
		buf_init(&b, 0);
		CHECK(imap_utf8_to_mutf7(bad_utf8[i], &b) == -1);
		buf_free(&b);
	}
}

TEST_MAIN(TEST(test_round_trips), TEST(test_refused))
