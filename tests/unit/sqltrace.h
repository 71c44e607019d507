/* sqltrace.h - for tests: record the SQL statements that code under test runs on every
 * SQLite connection opened after sqltrace_install() (an auto extension sets a trace on each
 * new connection), one per line, so a test can count what an open costs. */
#ifndef TERN_TEST_SQLTRACE_H
#define TERN_TEST_SQLTRACE_H
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static char sqltrace_log[65536];
static size_t sqltrace_len;

static int sqltrace_cb(unsigned type, void *ctx, void *stmt, void *sql)
{
	(void)ctx;
	(void)stmt;
	if (type == SQLITE_TRACE_STMT && sqltrace_len < sizeof(sqltrace_log)) {
		int n = snprintf(sqltrace_log + sqltrace_len, sizeof(sqltrace_log) - sqltrace_len,
				 "%s\n", (const char *)sql);
		if (n > 0)
			sqltrace_len += (size_t)n;
		if (sqltrace_len > sizeof(sqltrace_log))
			sqltrace_len = sizeof(sqltrace_log);
	}
	return 0;
}

static int sqltrace_entry(sqlite3 *db, char **error_r, const void *api)
{
	(void)error_r;
	(void)api;
	sqlite3_trace_v2(db, SQLITE_TRACE_STMT, sqltrace_cb, NULL);
	return SQLITE_OK;
}

/* sqltrace_install - trace connections opened from now on (also in forked children). */
static inline void sqltrace_install(void)
{
	sqlite3_auto_extension((void (*)(void))sqltrace_entry);
}

/* sqltrace_reset - forget what was recorded. */
static inline void sqltrace_reset(void)
{
	sqltrace_len = 0;
	sqltrace_log[0] = '\0';
}

/* sqltrace_count - how many recorded statements begin with prefix (leading blanks skipped). */
static inline int sqltrace_count(const char *prefix)
{
	int n = 0;
	size_t plen = strlen(prefix);
	for (const char *p = sqltrace_log; p < sqltrace_log + sqltrace_len;) {
		const char *nl = memchr(p, '\n', (size_t)(sqltrace_log + sqltrace_len - p));
		const char *end = nl != NULL ? nl : sqltrace_log + sqltrace_len;
		const char *s = p;
		while (s < end && (*s == ' ' || *s == '\t'))
			s++;
		if ((size_t)(end - s) >= plen && strncmp(s, prefix, plen) == 0)
			n++;
		p = end + 1;
	}
	return n;
}

/* sqltrace_lines - how many statements were recorded. */
static inline int sqltrace_lines(void)
{
	return sqltrace_count("");
}
#endif
