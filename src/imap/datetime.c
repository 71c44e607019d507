/* imap/datetime - date-time for INTERNALDATE and APPEND (see datetime.h) */
#include "imap/datetime.h"

#include <string.h>
#include <strings.h>
#include <time.h>

#include "lib/strnum.h"

static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
				     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

int imap_datetime_append(buf *out, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (gmtime_r(&tt, &tm) == NULL)
		return buf_puts(out, "\"01-Jan-1970 00:00:00 +0000\"");
	return buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday,
			  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* num - exactly n digits at s, at most max */
static int num(const char *s, size_t n, uint64_t max, int *v_r)
{
	uint64_t v;
	if (strnum_u64(s, n, max, &v) < 0)
		return -1;
	*v_r = (int)v;
	return 0;
}

int imap_datetime_parse(const char *s, int64_t *t_r)
{
	/* "dd-Mon-yyyy hh:mm:ss +zzzz", day possibly " d" or "d" */
	if (*s == ' ')
		s++;
	size_t dl = strspn(s, "0123456789");
	int day, year, hh, mm, ss, zh, zm;
	if (dl < 1 || dl > 2 || num(s, dl, 31, &day) < 0 || day == 0 || s[dl] != '-')
		return -1;
	s += dl + 1;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(s, months[i], 3) == 0)
			mon = i;
	if (mon < 0 || s[3] != '-')
		return -1;
	s += 4;
	if (strlen(s) != 19 || s[4] != ' ' || s[7] != ':' || s[10] != ':' || s[13] != ' ' ||
	    (s[14] != '+' && s[14] != '-'))
		return -1;
	if (num(s, 4, 9999, &year) < 0 || num(s + 5, 2, 23, &hh) < 0 || num(s + 8, 2, 59, &mm) < 0 ||
	    num(s + 11, 2, 60, &ss) < 0 || num(s + 15, 2, 99, &zh) < 0 || num(s + 17, 2, 59, &zm) < 0)
		return -1;
	struct tm tm = { .tm_mday = day, .tm_mon = mon, .tm_year = year - 1900, .tm_hour = hh,
			 .tm_min = mm, .tm_sec = ss };
	time_t t = timegm(&tm);
	if (tm.tm_mday != day || tm.tm_mon != mon)	/* 31-Feb */
		return -1;
	int64_t zone = (int64_t)(zh * 60 + zm) * 60;
	*t_r = (int64_t)t - (s[14] == '+' ? zone : -zone);
	return 0;
}
