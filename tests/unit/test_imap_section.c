/* test_imap_section - FETCH section items: parsing (valid and malformed), the names
 * responses carry, which bytes a section names in real corpus messages, HEADER.FIELDS
 * filtering and partial ranges. */
#include <stdlib.h>
#include <string.h>

#include "imap/section.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "mime/tree.h"
#include "test.h"

static void check_name(const char *atom, const char *name)
{
	struct imap_section sec;
	const char *err;
	int r = imap_section_parse(atom, &sec, &err);
	if (r != 1) {
		fprintf(stderr, "refused: %s\n", atom);
		CHECK(0);
		return;
	}
	buf b;
	buf_init(&b, 0);
	imap_section_name(&sec, &b);
	CHECK_STREQ(buf_cstr(&b), name);
	buf_free(&b);
	imap_section_free(&sec);
}

static void test_parse(void)
{
	check_name("BODY[]", "BODY[]");
	check_name("body.peek[]", "BODY[]");
	check_name("BODY[1.2.3]", "BODY[1.2.3]");
	check_name("BODY[HEADER]<0.100>", "BODY[HEADER]<0>");
	check_name("BODY.PEEK[1.MIME]", "BODY[1.MIME]");
	check_name("BODY[3.HEADER.FIELDS (From \"To\" x-y)]",
		   "BODY[3.HEADER.FIELDS (\"FROM\" \"TO\" \"X-Y\")]");
	check_name("BODY[HEADER.FIELDS.NOT (Received)]<10.5>",
		   "BODY[HEADER.FIELDS.NOT (\"RECEIVED\")]<10>");
	check_name("BODY[2.TEXT]", "BODY[2.TEXT]");
	check_name("BINARY[1]", "BINARY[1]");
	check_name("BINARY.PEEK[1.2]<0.10>", "BINARY[1.2]<0>");
	check_name("BINARY.SIZE[1]", "BINARY.SIZE[1]");
	check_name("BINARY[]", "BINARY[]");

	struct imap_section sec;
	const char *err;
	CHECK(imap_section_parse("FLAGS", &sec, &err) == 0);
	CHECK(imap_section_parse("BODY", &sec, &err) == 0);
	CHECK(imap_section_parse("BODYSTRUCTURE", &sec, &err) == 0);
	const char *bad[] = {
		"BODY[", "BODY[]]", "BODY[1HEADER]", "BODY[1.2x]", "BODY[0]", "BODY[01]", "BODY[1.]", "BODY[.1]", "BODY[MIME]",
		"BODY[HEADER.FIELDS]", "BODY[HEADER.FIELDS ()]", "BODY[HEADER.FIELDS (A:B)]",
		"BODY[HEADER.FIELDS (a b]", "BODY[TEXTX]", "BODY[]<1>", "BODY[]<1.0>",
		"BODY[]<1.2", "BODY[]<a.2>", "BODY[]x", "BINARY[TEXT]", "BINARY[1.MIME]",
		"BINARY.SIZE[1]<0.1>", "BODY[4294967296]", "BODY[]<4294967296.1>",
		"BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28."
		"29.30.31.32.33]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (imap_section_parse(bad[i], &sec, &err) != -1) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
			imap_section_free(&sec);
		}
	}
}

/* text_of - the bytes section atom names in msg (filtered for HEADER.FIELDS) */
static char *text_of(const char *msg, size_t len, const struct mime_tree *t, const char *atom)
{
	struct imap_section sec;
	const char *err;
	CHECK(imap_section_parse(atom, &sec, &err) == 1);
	struct imap_section_range r;
	imap_section_resolve(&sec, t, &r);
	buf b;
	buf_init(&b, 0);
	if (r.kind == IMAP_SECTION_BYTES) {
		CHECK(r.offset + r.size <= len);
		buf_append(&b, msg + r.offset, (size_t)r.size);
	} else if (r.kind == IMAP_SECTION_FILTER) {
		imap_header_filter(&sec, msg + r.offset, (size_t)r.size, &b);
	} else {
		buf_puts(&b, "<empty>");
	}
	uint64_t start, n;
	imap_partial(&sec, b.len, &start, &n);
	char *s = strndup(buf_cstr(&b) + start, (size_t)n);
	buf_free(&b);
	imap_section_free(&sec);
	return s;
}

static void check_text(const char *msg, size_t len, const struct mime_tree *t, const char *atom,
		       const char *want)
{
	char *got = text_of(msg, len, t, atom);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "%s:\n", atom);
	CHECK_STREQ(got, want);
	free(got);
}

static void test_resolve_nested(void)
{
	char *msg;
	size_t len;
	CHECK(fs_read_file("tests/mime-corpus/04-nested-rfc822.eml", 1 << 20, &msg, &len) == 0);
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	/* multipart/mixed: 1 text/plain, 2 message/rfc822 holding multipart/alternative */
	check_text(msg, len, t, "BODY[1]", "see below");
	check_text(msg, len, t, "BODY[1.MIME]", "Content-Type: text/plain\r\n\r\n");
	check_text(msg, len, t, "BODY[2.HEADER]", "From: orig@example.org\r\nSubject: original\r\n"
		   "Content-Type: multipart/alternative; boundary=inner\r\n\r\n");
	check_text(msg, len, t, "BODY[2.HEADER.FIELDS (SUBJECT)]", "Subject: original\r\n\r\n");
	check_text(msg, len, t, "BODY[2.HEADER.FIELDS.NOT (SUBJECT)]",
		   "From: orig@example.org\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n");
	check_text(msg, len, t, "BODY[2.1]", "inner text");
	check_text(msg, len, t, "BODY[2.2]", "<b>inner</b>");
	check_text(msg, len, t, "BODY[2.2.MIME]", "Content-Type: text/html\r\n\r\n");
	check_text(msg, len, t, "BODY[2.2]<3.5>", "inner");
	check_text(msg, len, t, "BODY[2.2]<100.5>", "");
	check_text(msg, len, t, "BODY[3]", "<empty>");
	check_text(msg, len, t, "BODY[1.HEADER]", "<empty>");	/* not a message/rfc822 */
	check_text(msg, len, t, "BODY[1.1]", "<empty>");
	char *whole = text_of(msg, len, t, "BODY[]");
	CHECK(strlen(whole) == len);
	free(whole);
	char *text = text_of(msg, len, t, "BODY[TEXT]");
	CHECK(strncmp(text, "--outer\r\n", 9) == 0);
	free(text);
	struct imap_section sec;
	const char *err;
	struct imap_section_range r;
	CHECK(imap_section_parse("BINARY[2]", &sec, &err) == 1);
	imap_section_resolve(&sec, t, &r);
	CHECK(!r.leaf);		/* BINARY of a message/rfc822 part: refused by the caller */
	imap_section_free(&sec);
	CHECK(imap_section_parse("BINARY[2.1]", &sec, &err) == 1);
	imap_section_resolve(&sec, t, &r);
	CHECK(r.leaf && r.kind == IMAP_SECTION_BYTES);
	imap_section_free(&sec);
	mime_tree_free(&t);
	free(msg);
}

static void test_resolve_single(void)
{
	const char *msg = "From: a@x\r\nSubject: s\r\n\r\nbody\r\n";
	size_t len = strlen(msg);
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	check_text(msg, len, t, "BODY[1]", "body\r\n");	/* part 1 of a single-part message */
	check_text(msg, len, t, "BODY[TEXT]", "body\r\n");
	check_text(msg, len, t, "BODY[1.MIME]", "From: a@x\r\nSubject: s\r\n\r\n");
	check_text(msg, len, t, "BODY[2]", "<empty>");
	check_text(msg, len, t, "BODY[HEADER.FIELDS (X-NONE)]", "\r\n");
	check_text(msg, len, t, "BODY[]<0.4>", "From");
	mime_tree_free(&t);
	/* no blank line: none is added */
	msg = "From: a@x\r\nSubject: s\r\n";
	len = strlen(msg);
	t = mime_tree_parse(msg, len, NULL);
	check_text(msg, len, t, "BODY[HEADER.FIELDS (SUBJECT)]", "Subject: s\r\n");
	mime_tree_free(&t);
}

TEST_MAIN(TEST(test_parse), TEST(test_resolve_nested), TEST(test_resolve_single))
