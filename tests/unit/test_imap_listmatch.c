/* test_imap_listmatch - LIST patterns: '*', '%', references, INBOX case, hostile patterns. */
#include <string.h>

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

TEST_MAIN(TEST(test_wildcards), TEST(test_reference))
