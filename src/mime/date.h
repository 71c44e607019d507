/* mime_date - RFC 5322 3.3 date-time to Unix time, tolerant of the obsolete syntax (4.3:
 * two- and three-digit years, alphabetic zones, military zones read as +0000) and common
 * breakage: missing weekday or seconds, a wrong weekday (ignored), missing zone (+0000),
 * comments, "GMT+0100", ISO 8601 "2024-01-31T10:00:00Z" and asctime "Wed Jan 31 10:00:00 2024". */
#ifndef TERN_MIME_DATE_H
#define TERN_MIME_DATE_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* mime_date_parse - parse s[0..len). *time_r: seconds since the epoch (UTC);
 * *tz_minutes_r: the zone's offset east of UTC in minutes (may be NULL).
 * 0, or -1 when no date could be made out (outputs unchanged). */
int mime_date_parse(const char *s, size_t len, time_t *time_r, int *tz_minutes_r);

#endif
