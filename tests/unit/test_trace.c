/* test_trace - the trace journal's lines: escaping on write, parsing on read, nasty values
 * that must not forge a field or a line, the day files and their pruning. */
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "test.h"

static size_t fmt(char *out, size_t cap, const char *qid, const char *event, const char *f, ...)
	__attribute__((format(printf, 5, 6)));
static size_t fmt(char *out, size_t cap, const char *qid, const char *event, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	size_t n = trace_format(out, cap, 1764504478, 123456, qid, event, f, ap);
	va_end(ap);
	return n;
}

static void test_plain_line(void)
{
	char line[TRACE_LINE_MAX];
	size_t n = fmt(line, sizeof(line), "QID1", "stored", "user=%s uid=%u size=%llu n=%zu d=%d",
		       "bob@example.test", 7u, 12345678901ULL, (size_t)3, -2);
	CHECK_STREQ(line, "2025-11-30T12:07:58.123456Z QID1 stored user=bob@example.test uid=7 "
			  "size=12345678901 n=3 d=-2\n");
	CHECK(n == strlen(line));
	struct trace_line l;
	CHECK(trace_parse_line(line, n, &l) == 0);
	CHECK_STREQ(l.time, "2025-11-30T12:07:58.123456Z");
	CHECK_STREQ(l.qid, "QID1");
	CHECK_STREQ(l.event, "stored");
	CHECK(l.n == 5);
	CHECK_STREQ(trace_get(&l, "user"), "bob@example.test");
	CHECK_STREQ(trace_get(&l, "size"), "12345678901");
	CHECK(trace_get(&l, "nope") == NULL);
	trace_line_free(&l);
	/* no qid: "-" */
	n = fmt(line, sizeof(line), NULL, "seen", "user=%s", "a");
	CHECK(trace_parse_line(line, n, &l) == 0);
	CHECK(l.qid == NULL);
	trace_line_free(&l);
}

/* hostile values round-trip and never add a field, a word or a line */
static void test_nasty_values(void)
{
	static const char *const nasty[] = {
		"<a b=c@x>",
		"x\r\n2026-01-01T00:00:00.000000Z FORGED stored user=evil uid=1",
		"x\ny",
		"=",
		"%",
		"%0A",
		"%zz",
		"a=b=c",
		" leading and trailing ",
		"\t\x01\x1b[31m\x7f",
		"caf\xc3\xa9 \xff\xfe",
		"",
		"user=evil",
	};
	for (size_t i = 0; i < sizeof(nasty) / sizeof(nasty[0]); i++) {
		char line[TRACE_LINE_MAX];
		size_t n = fmt(line, sizeof(line), nasty[i], nasty[i], "msgid=%s helo=%s",
			       nasty[i], nasty[i]);
		CHECK(line[n - 1] == '\n');
		CHECK(memchr(line, '\n', n - 1) == NULL);
		CHECK(memchr(line, '\r', n) == NULL);
		/* exactly 5 words: TIME QID EVENT msgid= helo= */
		size_t spaces = 0;
		for (size_t k = 0; k < n; k++)
			spaces += line[k] == ' ';
		CHECK(spaces == 4);
		struct trace_line l;
		if (nasty[i][0] == '\0') {
			/* an empty event is no event: the line is refused on reading */
			CHECK(trace_parse_line(line, n, &l) == -1);
			continue;
		}
		CHECK(trace_parse_line(line, n, &l) == 0);
		CHECK_STREQ(l.qid, nasty[i]);
		CHECK_STREQ(l.event, nasty[i]);
		CHECK(l.n == 2);
		CHECK_STREQ(trace_get(&l, "msgid"), nasty[i]);
		CHECK_STREQ(trace_get(&l, "helo"), nasty[i]);
		CHECK(trace_get(&l, "user") == NULL);
		trace_line_free(&l);
	}
}

/* a value longer than a line is cut at a whole %XX; the line stays a line */
static void test_long_value(void)
{
	char *big = xmalloc(3 * TRACE_LINE_MAX);
	for (size_t i = 0; i < 3 * TRACE_LINE_MAX - 1; i++)
		big[i] = i % 3 == 0 ? ' ' : 'a';
	big[3 * TRACE_LINE_MAX - 1] = '\0';
	char line[TRACE_LINE_MAX];
	size_t n = fmt(line, sizeof(line), "Q", "received", "msgid=%s after=%s", big, "x");
	CHECK(n <= TRACE_LINE_MAX);
	CHECK(line[n - 1] == '\n');
	struct trace_line l;
	CHECK(trace_parse_line(line, n, &l) == 0);
	CHECK(trace_get(&l, "msgid") != NULL && strlen(trace_get(&l, "msgid")) > 1000);
	trace_line_free(&l);
	/* a small buffer: still one parsable line */
	char small[80];
	n = fmt(small, sizeof(small), "Q", "received", "msgid=%s", big);
	CHECK(n <= sizeof(small) && small[n - 1] == '\n');
	CHECK(trace_parse_line(small, n, &l) == 0);
	trace_line_free(&l);
	free(big);
}

/* lines a writer never makes are refused */
static void test_bad_lines(void)
{
	static const char *const bad[] = {
		"",
		"\n",
		"2025-11-30T12:07:58.123456Z Q",
		"2025-11-30T12:07:58.123456Z Q ev novalue",
		"2025-11-30T12:07:58.123456Z Q ev =v",
		"2025-11-30 12:07:58 Q ev k=v",
		"garbage garbage garbage",
		"2025-11-30T12:07:58.123456Z Q ev k=%4",
		"2025-11-30T12:07:58.123456Z Q ev k=%G1",
		"2025-11-30T12:07:58.123456Z Q ev k=a\tb",
		"2025-11-30T12:07:58.123456Z Q ev k=\xc3\xa9",
		"2025-11-30T12:07:58.123456Z Q ev k=a=b",
		"2025-11-30T12:07:58.123456Z Q%zz ev k=v",
		"2025-11-30T12:07:58.123456Z Q ev k=v\nX",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct trace_line l;
		if (trace_parse_line(bad[i], strlen(bad[i]), &l) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
			trace_line_free(&l);
		}
	}
	/* a NUL inside the line */
	struct trace_line l;
	static const char nul[] = "2025-11-30T12:07:58.123456Z Q ev k=a\0b";
	CHECK(trace_parse_line(nul, sizeof(nul) - 1, &l) == -1);
	/* %00 ends the value (values are C strings) */
	static const char z[] = "2025-11-30T12:07:58.123456Z Q ev k=ab%00cd";
	CHECK(trace_parse_line(z, sizeof(z) - 1, &l) == 0);
	CHECK_STREQ(trace_get(&l, "k"), "ab");
	trace_line_free(&l);
}

/* byte-at-a-time cuts of a good line never crash and are either refused or a prefix */
static void test_every_prefix(void)
{
	char line[TRACE_LINE_MAX];
	size_t n = fmt(line, sizeof(line), "Q1", "attempt", "to=%s reply=%s", "a b@c",
		       "451 4.3.0 try=later");
	for (size_t k = 0; k <= n; k++) {
		struct trace_line l;
		if (trace_parse_line(line, k, &l) == 0)
			trace_line_free(&l);
	}
}

/* events go to data_dir/trace/YYYY-MM-DD; pruning removes only old journal files */
static void test_files_and_prune(void)
{
	char tmpl[] = "/tmp/test_trace.XXXXXX";
	char *dd = mkdtemp(tmpl);
	CHECK(dd != NULL);
	if (dd == NULL)
		return;
	trace_init(dd, 7);
	CHECK(trace_on);
	trace_event("QA", "received", "msgid=%s", "<x y@z>");
	trace_event("QA", "stored", "user=%s uid=%u", "bob", 3u);
	char *dir = trace_dir(dd);
	char **files = trace_files(dir);
	CHECK(files != NULL && files[0] != NULL && files[1] == NULL);
	if (files != NULL && files[0] != NULL) {
		FILE *f = fopen(files[0], "r");
		char buf[512];
		int lines = 0;
		while (f != NULL && fgets(buf, sizeof(buf), f) != NULL) {
			struct trace_line l;
			CHECK(trace_parse_line(buf, strlen(buf), &l) == 0);
			CHECK_STREQ(l.qid, "QA");
			trace_line_free(&l);
			lines++;
		}
		if (f != NULL)
			fclose(f);
		CHECK(lines == 2);
		struct stat st;
		CHECK(stat(files[0], &st) == 0 && (st.st_mode & 0777) == 0600);
		for (size_t i = 0; files[i]; i++)
			free(files[i]);
	}
	free(files);
	/* old days and foreign names */
	static const char *const names[] = { "2020-01-01", "2020-01-02", "notes.txt",
					     "2020-13-01x" };
	for (size_t i = 0; i < 4; i++) {
		char *p = xasprintf("%s/%s", dir, names[i]);
		FILE *f = fopen(p, "w");
		if (f)
			fclose(f);
		free(p);
	}
	CHECK(trace_prune(dir, 7, time(NULL)) == 2);
	files = trace_files(dir);
	size_t n = 0;
	while (files != NULL && files[n] != NULL)
		free(files[n++]);
	free(files);
	CHECK(n == 1);	/* today's */
	char *keep = xasprintf("%s/notes.txt", dir);
	CHECK(access(keep, F_OK) == 0);
	unlink(keep);
	free(keep);
	keep = xasprintf("%s/2020-13-01x", dir);
	unlink(keep);
	free(keep);
	/* off: no event, no file */
	trace_init(dd, 0);
	CHECK(!trace_on);
	TRACE("QB", "received", "x=%s", "y");
	CHECK(trace_prune(dir, 1, time(NULL) + 2 * 86400) == 1);
	files = trace_files(dir);
	CHECK(files != NULL && files[0] == NULL);
	free(files);
	rmdir(dir);
	rmdir(dd);
	free(dir);
}

TEST_MAIN(TEST(test_plain_line), TEST(test_nasty_values), TEST(test_long_value),
	  TEST(test_bad_lines), TEST(test_every_prefix), TEST(test_files_and_prune))
