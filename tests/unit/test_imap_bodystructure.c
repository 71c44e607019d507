/* test_imap_bodystructure - ENVELOPE / BODY / BODYSTRUCTURE and the response string writer.
 * Each tests/mime-corpus/NAME.eml gives NAME.imap byte for byte: three lines, "ENVELOPE ...",
 * "BODYSTRUCTURE ...", "BODY ...". The .imap files are checked against Dovecot, started as
 * an oracle, by tests/integration/test_imap_oracle.py (which says where and why they may
 * differ). TERN_UPDATE_IMAP_GOLDEN=1 rewrites them: check the diff against Dovecot then. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/bodystructure.h"
#include "imap/write.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "mime/tree.h"
#include "test.h"

#define CORPUS "tests/mime-corpus"

/* check_summary_envelope - ENVELOPE made from the tree's summary (what FETCH does with a
 * cached tree) is ENVELOPE made from the whole header, with and without UTF-8 */
static void check_summary_envelope(const struct mime_tree *t, const char *msg, size_t hlen)
{
	if (t->summary == NULL)
		return;
	for (int utf8 = 0; utf8 <= 1; utf8++) {
		buf a, b;
		buf_init(&a, 0);
		buf_init(&b, 0);
		CHECK(imap_envelope_write(&a, msg, hlen, utf8) == 0);
		CHECK(imap_envelope_write(&b, t->summary, t->summary_len, utf8) == 0);
		CHECK_STREQ(buf_cstr(&a), buf_cstr(&b));
		buf_free(&a);
		buf_free(&b);
	}
}

/* describe - the three lines for message msg[0..len) */
static void describe(const char *msg, size_t len, buf *out)
{
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	size_t hlen = t->count > 0 ? (size_t)t->parts[0].header_size : len;
	check_summary_envelope(t, msg, hlen);
	buf_puts(out, "ENVELOPE ");
	CHECK(imap_envelope_write(out, msg, hlen, false) == 0);
	buf_puts(out, "\nBODYSTRUCTURE ");
	CHECK(imap_bodystructure_write(out, t, msg, len, true, false) == 0);
	buf_puts(out, "\nBODY ");
	CHECK(imap_bodystructure_write(out, t, msg, len, false, false) == 0);
	buf_putc(out, '\n');
	mime_tree_free(&t);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_corpus(void)
{
	DIR *d = opendir(CORPUS);
	CHECK(d != NULL);
	if (d == NULL)
		return;
	char *names[256];
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 256) {
		size_t l = strlen(e->d_name);
		if (l > 4 && strcmp(e->d_name + l - 4, ".eml") == 0)
			names[n++] = xstrndup(e->d_name, l - 4);
	}
	closedir(d);
	qsort(names, n, sizeof(names[0]), name_cmp);
	CHECK(n >= 17);
	bool update = getenv("TERN_UPDATE_IMAP_GOLDEN") != NULL;
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s.eml", CORPUS, names[i]);
		char *gpath = xasprintf("%s/%s.imap", CORPUS, names[i]);
		char *msg = NULL, *golden = NULL;
		size_t mlen = 0, glen = 0;
		CHECK(fs_read_file(path, 1 << 24, &msg, &mlen) == 0);
		buf out;
		buf_init(&out, 0);
		if (msg != NULL)
			describe(msg, mlen, &out);
		if (update) {
			FILE *f = fopen(gpath, "wb");
			CHECK(f != NULL && fwrite(out.data, 1, out.len, f) == out.len);
			if (f != NULL)
				fclose(f);
		}
		CHECK(fs_read_file(gpath, 1 << 24, &golden, &glen) == 0);
		if (golden != NULL && (glen != out.len || memcmp(golden, out.data, glen) != 0)) {
			fprintf(stderr, "corpus %s: got\n%s", names[i], buf_cstr(&out));
			CHECK(0);
		}
		buf_free(&out);
		free(msg);
		free(golden);
		free(path);
		free(gpath);
		free(names[i]);
	}
}

static void check_string(const char *in, size_t len, bool utf8, const char *want)
{
	buf b;
	buf_init(&b, 0);
	CHECK(imap_write_string(&b, in, len, utf8) == 0);
	CHECK_STREQ(buf_cstr(&b), want);
	buf_free(&b);
}

static void test_strings(void)
{
	check_string("abc", 3, false, "\"abc\"");
	check_string("", 0, false, "\"\"");
	check_string("a\"b\\c", 5, false, "\"a\\\"b\\\\c\"");
	check_string("a\r\nb", 4, false, "{4}\r\na\r\nb");
	check_string("caf\xc3\xa9", 5, false, "{5}\r\ncaf\xc3\xa9");
	check_string("caf\xc3\xa9", 5, true, "\"caf\xc3\xa9\"");
	check_string("caf\xe9", 4, true, "{4}\r\ncaf\xe9");	/* not UTF-8: a literal */
	check_string("a\0b", 3, false, "{5}\r\na\xef\xbf\xbd" "b");
	char big[2000];
	memset(big, 'x', sizeof(big));
	buf b;
	buf_init(&b, 0);
	imap_write_string(&b, big, sizeof(big), false);
	CHECK(strncmp(buf_cstr(&b), "{2000}\r\n", 8) == 0 && b.len == 2008);
	buf_reset(&b);
	imap_write_nstring(&b, NULL, false);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "INBOX", false);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "NIL", false);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "a b", false);
	buf_putc(&b, ' ');
	imap_write_astring(&b, "", false);
	CHECK_STREQ(buf_cstr(&b), "NIL INBOX \"NIL\" \"a b\" \"\"");
	buf_free(&b);
	CHECK(imap_utf8_valid("\xf0\x9f\x98\x80", 4));
	CHECK(!imap_utf8_valid("\xc0\xaf", 2));		/* overlong */
	CHECK(!imap_utf8_valid("\xed\xa0\x80", 3));	/* surrogate */
	CHECK(!imap_utf8_valid("\xe2\x82", 2));		/* cut short */
}

static void check_envelope(const char *hdr, const char *want)
{
	buf b;
	buf_init(&b, 0);
	CHECK(imap_envelope_write(&b, hdr, strlen(hdr), false) == 0);
	CHECK_STREQ(buf_cstr(&b), want);
	buf_free(&b);
	/* the same from the summary of the message's tree */
	char *msg = xasprintf("%sbody\r\n", hdr);
	struct mime_tree *t = mime_tree_parse(msg, strlen(msg), NULL);
	CHECK(t->summary != NULL);
	check_summary_envelope(t, msg, (size_t)t->parts[0].header_size);
	mime_tree_free(&t);
	free(msg);
}

static void test_envelope(void)
{
	check_envelope("", "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	/* Sender and Reply-To default to From, also when present but empty */
	check_envelope("From: A <a@x>\r\nSender:\r\nSubject:  hi \r\n there\r\n\r\n",
		       "(NIL \"hi  there\" ((\"A\" NIL \"a\" \"x\")) ((\"A\" NIL \"a\" \"x\")) "
		       "((\"A\" NIL \"a\" \"x\")) NIL NIL NIL NIL NIL)");
	check_envelope("To: team: a@x, \"B \\\"q\\\"\" <b@y>;, c@z\r\nCc: <@r1,@r2:d@w>\r\n\r\n",
		       "(NIL NIL NIL NIL NIL ((NIL NIL \"team\" NIL)(NIL NIL \"a\" \"x\")"
		       "(\"B \\\"q\\\"\" NIL \"b\" \"y\")(NIL NIL NIL NIL)(NIL NIL \"c\" \"z\")) "
		       "((NIL \"@r1,@r2\" \"d\" \"w\")) NIL NIL NIL)");
	/* the first of repeated fields; raw encoded words; In-Reply-To and Message-ID */
	check_envelope("Subject: =?utf-8?q?x?=\r\nSubject: second\r\nIn-Reply-To: <p@x>\r\n"
		       "Message-ID: <m@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
		       "(\"Mon, 1 Jan 2024 10:00:00 +0000\" \"=?utf-8?q?x?=\" NIL NIL NIL NIL NIL "
		       "NIL \"<p@x>\" \"<m@x>\")");
	/* fields among others, folded, without colon, 8-bit, bare LF */
	check_envelope("Received: from x\r\n by y\r\nFrom x Mon\r\nFrom: =?utf-8?q?J?= <j@x>\r\n"
		       "X-Spam: 1\r\nTo: a@x,\r\n\tb@y\r\nSubject: caf\xc3\xa9\r\nreply-to : r@z\r\n\r\n",
		       "(NIL {5}\r\ncaf\xc3\xa9 ((\"=?utf-8?q?J?=\" NIL \"j\" \"x\")) ((\"=?utf-8?q?J?=\" NIL \"j\" \"x\")) "
		       "((NIL NIL \"r\" \"z\")) ((NIL NIL \"a\" \"x\")(NIL NIL \"b\" \"y\")) NIL NIL NIL NIL)");
	check_envelope("Subject: lf\nMessage-ID: <a@b>\n\n",
		       "(NIL \"lf\" NIL NIL NIL NIL NIL NIL NIL \"<a@b>\")");
}

TEST_MAIN(TEST(test_corpus), TEST(test_strings), TEST(test_envelope))
