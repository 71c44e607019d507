/* test_read - the pieces of `tern read` that take hostile input: HTML to text, attachment
 * file names, and creating files that never escape their directory or replace one */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/filename.h"
#include "client/html.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "test.h"

static char *html(const char *in)
{
	buf b;
	buf_init(&b, 0);
	html_to_text(in, strlen(in), &b);
	buf_append(&b, "", 0);
	return b.data;
}

static const struct {
	const char *in, *out;
} html_cases[] = {
	{ "", "" },
	{ "plain text", "plain text\n" },
	{ "<p>one</p><p>two</p>", "one\n\ntwo\n" },
	{ "a<br>b<br/>c", "a\nb\nc\n" },
	{ "a<br><br><br><br>b", "a\n\nb\n" },			/* at most one empty line */
	{ "  lots   of\n\n  blanks  ", "lots of blanks\n" },
	{ "&amp;&lt;&gt;&quot;&apos;&nbsp;x", "&<>\"' x\n" },
	{ "&#233;&#xe9;&#X20AC;&euro;", "\xc3\xa9\xc3\xa9\xe2\x82\xac\xe2\x82\xac\n" },
	{ "&#0;&#xD800;&#99999999;", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\n" },
	{ "AT&T & co &unknown; &", "AT&T & co &unknown; &\n" },
	{ "<html><head><title>T</title><style>p{}</style></head><body>x</body></html>", "x\n" },
	{ "<script>if (a < b) alert(1)</script>shown", "shown\n" },
	{ "<SCRIPT type=\"x\">bad()</SCRIPT>ok", "ok\n" },
	{ "a<!-- <p>hidden</p> -->b", "ab\n" },
	{ "<ul><li>one<li>two</ul>after", "* one\n* two\n\nafter\n" },
	{ "<a href=\"x>y\" title='>'>link</a> text", "link text\n" },
	{ "1 < 2 and 3 > 2", "1 < 2 and 3 > 2\n" },
	{ "<pre>  keep\n    this</pre>", "  keep\n    this\n" },
	{ "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc\n" },
	{ "<h1>Title</h1>text<div>block</div>", "Title\n\ntext\n\nblock\n" },
	{ "<p>unclosed <b", "unclosed\n" },
	{ "<p>\xc3\xa4\xc3\xb6</p>", "\xc3\xa4\xc3\xb6\n" },
};

static void test_html_to_text(void)
{
	for (size_t i = 0; i < sizeof(html_cases) / sizeof(html_cases[0]); i++) {
		char *got = html(html_cases[i].in);
		if (strcmp(got, html_cases[i].out) != 0)
			fprintf(stderr, "case %zu: %s\n", i, html_cases[i].in);
		CHECK_STREQ(got, html_cases[i].out);
		free(got);
	}
}

static void test_html_byte_at_a_time_prefixes(void)
{
	/* every prefix of a tricky document is handled without reading past its end */
	const char *doc = "<p a='x'>&#x20AC;&amp<!-- c --><script>x</script><li>y</p>";
	size_t n = strlen(doc);
	for (size_t len = 0; len <= n; len++) {
		char *copy = xstrndup(doc, len);
		buf b;
		buf_init(&b, 0);
		html_to_text(copy, len, &b);
		buf_free(&b);
		free(copy);
	}
	CHECK(1);
}

static char *safe(const char *in)
{
	buf b;
	buf_init(&b, 0);
	filename_sanitize(in, "fallback", &b);
	buf_append(&b, "", 0);
	return b.data;
}

static const struct {
	const char *in, *out;
} name_cases[] = {
	{ "report.pdf", "report.pdf" },
	{ "Stra\xc3\x9f" "e \xc3\xbc" "ber.txt", "Stra\xc3\x9f" "e \xc3\xbc" "ber.txt" },
	{ "../../etc/x", "_._etc_x" },
	{ "..", "fallback" },
	{ ".", "fallback" },
	{ "", "fallback" },
	{ "...", "fallback" },
	{ ".bashrc", "bashrc" },
	{ "/etc/passwd", "_etc_passwd" },
	{ "a\\b\\..\\c", "a_b_._c" },
	{ "x..y", "x.y" },
	{ "name.", "name" },
	{ " spaced ", "spaced" },
	{ "a\x01" "b\x1b[31mc\x7f", "a_b_[31mc_" },
	{ "c1\xc2\x9b" "x", "c1_x" },			/* U+009B CSI */
	{ "bad\xff\xfeutf8", "bad__utf8" },
	{ "over\xc0\xafslash", "over__slash" },		/* overlong '/' */
	{ "line\nbreak", "line_break" },
};

static void test_filename_sanitize(void)
{
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		char *got = safe(name_cases[i].in);
		CHECK_STREQ(got, name_cases[i].out);
		CHECK(strchr(got, '/') == NULL && got[0] != '.' && strstr(got, "..") == NULL);
		free(got);
	}
}

static void test_filename_long(void)
{
	/* 300 two-byte characters and an extension: cut on a character boundary, ext kept */
	buf in;
	buf_init(&in, 0);
	for (int i = 0; i < 300; i++)
		buf_puts(&in, "\xc3\xa4");
	buf_puts(&in, ".pdf");
	char *got = safe(buf_cstr(&in));
	size_t n = strlen(got);
	CHECK(n <= FILENAME_MAX_BYTES);
	CHECK(n > 4 && strcmp(got + n - 4, ".pdf") == 0);
	CHECK(((unsigned char)got[n - 5] & 0xc0) == 0x80);	/* the last ä is whole */
	CHECK(((unsigned char)got[n - 6] & 0xe0) == 0xc0);
	free(got);
	/* a cut that lands in blanks: they go too, as at the end of any name (found
	 * by fuzz_names) */
	buf_reset(&in);
	buf_puts(&in, "a");
	for (int i = 0; i < 250; i++)
		buf_puts(&in, " ");
	buf_puts(&in, "b");
	got = safe(buf_cstr(&in));
	CHECK_STREQ(got, "a");
	free(got);
	buf_reset(&in);
	buf_puts(&in, "report");
	for (int i = 0; i < 250; i++)
		buf_puts(&in, " ");
	buf_puts(&in, "x.pdf");
	got = safe(buf_cstr(&in));
	CHECK_STREQ(got, "report.pdf");
	free(got);
	buf_free(&in);
}

static void test_filename_create(void)
{
	char tmpl[] = "/tmp/test_read.XXXXXX";
	CHECK(mkdtemp(tmpl) != NULL);
	int dfd = open(tmpl, O_RDONLY | O_DIRECTORY);
	CHECK(dfd >= 0);
	char *used = NULL;
	int fd = filename_create(dfd, "a.txt", &used);
	CHECK(fd >= 0);
	CHECK_STREQ(used, "a.txt");
	close(fd);
	free(used);
	fd = filename_create(dfd, "a.txt", &used);
	CHECK(fd >= 0);
	CHECK_STREQ(used, "a (2).txt");
	close(fd);
	free(used);
	fd = filename_create(dfd, "a.txt", &used);
	CHECK_STREQ(used, "a (3).txt");
	close(fd);
	free(used);
	fd = filename_create(dfd, "noext", &used);
	close(fd);
	free(used);
	fd = filename_create(dfd, "noext", &used);
	CHECK_STREQ(used, "noext (2)");
	close(fd);
	free(used);

	/* a symlink planted under the name is never followed: the next name is used */
	CHECK(symlinkat("/tmp/test_read-target-should-not-exist", dfd, "link.bin") == 0);
	fd = filename_create(dfd, "link.bin", &used);
	CHECK(fd >= 0);
	CHECK_STREQ(used, "link (2).bin");
	CHECK(access("/tmp/test_read-target-should-not-exist", F_OK) < 0);
	close(fd);
	free(used);

	const char *names[] = { "a.txt", "a (2).txt", "a (3).txt", "noext", "noext (2)",
				"link.bin", "link (2).bin" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		CHECK(unlinkat(dfd, names[i], 0) == 0);
	close(dfd);
	CHECK(rmdir(tmpl) == 0);
}

TEST_MAIN(TEST(test_html_to_text), TEST(test_html_byte_at_a_time_prefixes),
	  TEST(test_filename_sanitize), TEST(test_filename_long), TEST(test_filename_create))
