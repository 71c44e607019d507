/* imap/datetime - IMAP date-time (RFC 9051 date-time: "17-Jul-1996 02:44:25 -0700"), for
 * INTERNALDATE in FETCH and the date of APPEND. */
#ifndef TERN_IMAP_DATETIME_H
#define TERN_IMAP_DATETIME_H
#include <stdint.h>
#include "lib/buf.h"

/* imap_datetime_append - append t (unix time) as a quoted date-time in UTC ("+0000"). */
int imap_datetime_append(buf *out, int64_t t);
/* imap_datetime_parse - parse date-time (without the quotes; the day may be " 7" or "7"):
 * unix time in *t_r. 0, or -1 for anything malformed or out of range. */
int imap_datetime_parse(const char *s, int64_t *t_r);

#endif
