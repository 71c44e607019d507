/* test_imap_datetime - INTERNALDATE output and APPEND date parsing. */
#include <string.h>

#include "imap/datetime.h"
#include "test.h"

static void test_format(void)
{
	buf b;
	buf_init(&b, 0);
	imap_datetime_append(&b, 0);
	CHECK_STREQ(buf_cstr(&b), "\"01-Jan-1970 00:00:00 +0000\"");
	buf_reset(&b);
	imap_datetime_append(&b, 837570265);	/* 17 Jul 1996 02:44:25 UTC */
	CHECK_STREQ(buf_cstr(&b), "\"17-Jul-1996 02:24:25 +0000\"");
	buf_free(&b);
}

static void test_parse(void)
{
	int64_t t;
	CHECK(imap_datetime_parse("17-Jul-1996 02:44:25 -0700", &t) == 0 && t == 837596665);
	CHECK(imap_datetime_parse(" 7-Jul-1996 02:44:25 +0000", &t) == 0 && t == 836707465);
	CHECK(imap_datetime_parse("7-jul-1996 02:44:25 +0000", &t) == 0 && t == 836707465);
	CHECK(imap_datetime_parse("01-Jan-1970 01:00:00 +0100", &t) == 0 && t == 0);
	const char *bad[] = { "", "17-Jul-1996", "17-Jul-1996 02:44:25", "17-Jul-1996 24:00:00 +0000",
			      "32-Jul-1996 02:44:25 +0000", "30-Feb-1996 02:44:25 +0000",
			      "17-Foo-1996 02:44:25 +0000", "17-Jul-96 02:44:25 +0000",
			      "17-Jul-1996 02:44:25 0000", "17-Jul-1996 02:44:25 +00000",
			      "017-Jul-1996 02:44:25 +0000", "17-Jul-1996 2:44:25 +0000" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (imap_datetime_parse(bad[i], &t) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
}

TEST_MAIN(TEST(test_format), TEST(test_parse))
