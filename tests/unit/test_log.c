/* test_log - the lock-free RFC 3339 timestamp against gmtime_r, facility names */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "lib/log.h"
#include "test.h"

static void test_stamp_vectors(void)
{
	char out[64];
	log_format_stamp(out, sizeof(out), 0, 0);
	CHECK_STREQ(out, "1970-01-01T00:00:00.000Z");
	log_format_stamp(out, sizeof(out), 951782400, 999999999);	/* a leap day */
	CHECK_STREQ(out, "2000-02-29T00:00:00.999Z");
	log_format_stamp(out, sizeof(out), 4107542399LL, 5000000);
	CHECK_STREQ(out, "2100-02-28T23:59:59.005Z");
	log_format_stamp(out, sizeof(out), -1, 0);
	CHECK_STREQ(out, "1969-12-31T23:59:59.000Z");
	/* a buffer too small is cut, never overrun */
	char small[8];
	memset(small, 'x', sizeof(small));
	CHECK(log_format_stamp(small, sizeof(small), 0, 0) == 7);
	CHECK(small[7] == '\0');
}

/* every 7919 seconds from 1960 to 2200 (leap years, centuries, month ends): as gmtime_r */
static void test_stamp_against_gmtime(void)
{
	int bad = 0;
	for (long long t = -315619200LL; t < 7258118400LL && bad < 5; t += 7919 * 97) {
		time_t tt = (time_t)t;
		struct tm tm;
		char want[64], got[64];
		gmtime_r(&tt, &tm);
		snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.123Z", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		log_format_stamp(got, sizeof(got), t, 123456789);
		if (strcmp(want, got) != 0) {
			fprintf(stderr, "t=%lld: %s != %s\n", t, got, want);
			bad++;
		}
	}
	CHECK(bad == 0);
}

static void test_facilities(void)
{
	int f = -1;
	CHECK(log_facility_parse("mail", &f) == 0 && f == LOG_MAIL);
	CHECK(log_facility_parse("local7", &f) == 0 && f == LOG_LOCAL7);
	CHECK(log_facility_parse("daemon", &f) == 0 && f == LOG_DAEMON);
	CHECK(log_facility_parse("kern", &f) < 0);
	CHECK(log_facility_parse("", &f) < 0);
	CHECK(log_facility_parse("MAIL", &f) < 0);
	CHECK(log_facility_parse("local8", &f) < 0);
}

TEST_MAIN(TEST(test_stamp_vectors), TEST(test_stamp_against_gmtime), TEST(test_facilities))
