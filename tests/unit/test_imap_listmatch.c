/* test_imap_listmatch - LIST patterns: '*', '%', references, INBOX case, hostile patterns. */
#include <string.h>
#include <time.h>

#include "imap/listmatch.h"
#include "test.h"

static bool m(const char *pattern, const char *name)
{
	return imap_list_match(pattern, name, '/');
}

static void test_wildcards(void)
{
	CHECK(m("*", "INBOX"));
	CHECK(m("*", "a/b/c"));
	CHECK(m("%", "a"));
	CHECK(!m("%", "a/b"));
	CHECK(m("a/%", "a/b"));
	CHECK(!m("a/%", "a/b/c"));
	CHECK(m("a/*", "a/b/c"));
	CHECK(!m("a/*", "a"));
	CHECK(m("a*", "a"));
	CHECK(m("a*", "abc/d"));
	CHECK(!m("a%", "abc/d"));
	CHECK(m("%/%", "a/b"));
	CHECK(m("*b", "a/b"));
	CHECK(m("%b", "ab"));
	CHECK(!m("%b", "a/b"));
	CHECK(m("Sent", "Sent"));
	CHECK(!m("Sent", "sent"));
	CHECK(!m("Sent", "Sent/x"));
	CHECK(m("inbox", "INBOX"));		/* INBOX in any case */
	CHECK(m("InBoX/%", "INBOX/x"));
	CHECK(!m("inboxx", "INBOX"));
	CHECK(m("**%%*", "a/b"));
	CHECK(!m("", "a"));
	/* many wildcard runs: still polynomial (this would take ages with backtracking) */
	char hostile[200];
	strcpy(hostile, "");
	for (int i = 0; i < 40; i++)
		strcat(hostile, "%a");
	CHECK(!m(hostile, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
	char many[100] = "";
	for (int i = 0; i < 15; i++)
		strcat(many, "%a");
	CHECK(!m(many, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
	CHECK(m(many, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

static void test_reference(void)
{
	buf b;
	buf_init(&b, 0);
	imap_list_pattern("", "*", '/', &b);
	CHECK_STREQ(buf_cstr(&b), "*");
	imap_list_pattern("a/", "%", '/', &b);
	CHECK_STREQ(buf_cstr(&b), "a/%");
	imap_list_pattern("inbox/", "x", '/', &b);
	CHECK_STREQ(buf_cstr(&b), "INBOX/x");
	imap_list_pattern("Inbox", "", '/', &b);
	CHECK_STREQ(buf_cstr(&b), "INBOX");
	buf_free(&b);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* fill - n copies of unit (then a NUL) into out */
static void fill(char *out, const char *unit, size_t n)
{
	size_t ul = strlen(unit);
	for (size_t i = 0; i < n; i++)
		memcpy(out + i * ul, unit, ul);
	out[n * ul] = '\0';
}

static void test_limits(void)
{
	static char pat[4096];
	struct imap_list_budget used = { 0 };
	const char *err = NULL;
	/* the largest allowed pattern: 1024 bytes, 32 wildcards */
	memset(pat, 'a', IMAP_LIST_MAX_PATTERN);
	pat[IMAP_LIST_MAX_PATTERN] = '\0';
	for (size_t i = 0; i < IMAP_LIST_MAX_WILDCARDS; i++)
		pat[i * 3] = i % 2 ? '*' : '%';
	CHECK(imap_list_pattern_check(pat, &used, &err) == 0);
	/* a byte more, or a wildcard more: refused */
	used = (struct imap_list_budget){ 0 };
	strcat(pat, "a");
	CHECK(imap_list_pattern_check(pat, &used, &err) == -1 && strstr(err, "long"));
	used = (struct imap_list_budget){ 0 };
	fill(pat, "*", IMAP_LIST_MAX_WILDCARDS + 1);
	CHECK(imap_list_pattern_check(pat, &used, &err) == -1 && strstr(err, "wildcards"));
	/* the matcher itself takes no pattern of more than twice the limit */
	fill(pat, "*", 2 * IMAP_LIST_MAX_PATTERN);
	CHECK(m(pat, "a"));
	strcat(pat, "*");
	CHECK(!m(pat, "a"));
	/* the limits hold for the patterns of one command together */
	used = (struct imap_list_budget){ 0 };
	fill(pat, "%", 20);
	CHECK(imap_list_pattern_check(pat, &used, &err) == 0);
	CHECK(imap_list_pattern_check(pat, &used, &err) == -1);
	used = (struct imap_list_budget){ 0 };
	for (size_t i = 0; i < IMAP_LIST_MAX_PATTERNS; i++)
		CHECK(imap_list_pattern_check("x", &used, &err) == 0);
	CHECK(imap_list_pattern_check("x", &used, &err) == -1 && strstr(err, "patterns"));
}

/* nasty patterns that a backtracking matcher takes exponential time on: every one is
 * answered (right) within a fraction of a second even under the sanitizers */
static void test_nasty_patterns(void)
{
	static char pat[4096], name[4096];
	double t0 = now_s();
	/* "%a%a...%a" (32 wildcards) against "aaa...ab": no match, many ways to try */
	fill(pat, "%a", IMAP_LIST_MAX_WILDCARDS);
	memset(name, 'a', IMAP_LIST_MAX_NAME - 1);
	strcpy(name + IMAP_LIST_MAX_NAME - 1, "b");
	for (int i = 0; i < 20; i++)
		CHECK(!m(pat, name));
	name[IMAP_LIST_MAX_NAME - 1] = 'a';
	CHECK(m(pat, name));
	/* "*a*a...*a" against delimiters: '*' crosses them, '%' does not */
	fill(pat, "*a", IMAP_LIST_MAX_WILDCARDS);
	fill(name, "a/", 500);
	name[999] = '\0';	/* "a/a/.../a" */
	for (int i = 0; i < 20; i++)
		CHECK(m(pat, name));
	fill(pat, "%a", IMAP_LIST_MAX_WILDCARDS);
	CHECK(!m(pat, name));
	/* long literal runs between wildcards: 1024 bytes against a 1024-byte name */
	memset(pat, 'a', IMAP_LIST_MAX_PATTERN);
	pat[IMAP_LIST_MAX_PATTERN] = '\0';
	for (size_t i = 0; i < IMAP_LIST_MAX_WILDCARDS; i++)
		pat[i * 31] = '*';
	memset(name, 'a', IMAP_LIST_MAX_NAME);
	name[IMAP_LIST_MAX_NAME] = '\0';
	for (int i = 0; i < 20; i++)
		CHECK(m(pat, name));
	name[IMAP_LIST_MAX_NAME - 1] = 'b';
	CHECK(!m(pat, name));
	/* more characters to match than the name has: no work at all */
	name[10] = '\0';
	CHECK(!m(pat, name));
	double took = now_s() - t0;
	if (took > 5.0)
		fprintf(stderr, "nasty patterns took %.2f s\n", took);
	CHECK(took < 5.0);
}

TEST_MAIN(TEST(test_wildcards), TEST(test_reference), TEST(test_limits),
	  TEST(test_nasty_patterns))
