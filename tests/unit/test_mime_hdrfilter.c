/* test_mime_hdrfilter - the streaming header filter: Bcc/Resent-Bcc/Return-Path dropped with
 * their continuation lines, Date/Message-ID added when missing, the body never touched; every
 * case is also fed one byte at a time and must give the same output. */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/hdrfilter.h"
#include "test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const drop[] = { "Bcc", "Resent-Bcc", "Return-Path", NULL };
static const char *const add[] = { "Date: D\r\n", "Message-ID: <M@h>\r\n" };

static void emit(void *ctx, const void *p, size_t n)
{
	buf_append(ctx, p, n);
}

/* run - filter in with chunks of step octets (0: all at once); the result as a string */
static char *run(const char *in, size_t len, size_t step, size_t n_add)
{
	struct mime_hdrfilter f;
	buf out;
	buf_init(&out, 0);
	mime_hdrfilter_init(&f, drop, add, n_add, emit, &out);
	if (step == 0)
		step = len ? len : 1;
	for (size_t i = 0; i < len; i += step)
		mime_hdrfilter_feed(&f, in + i, len - i < step ? len - i : step);
	mime_hdrfilter_finish(&f);
	char *s = strdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}

static const struct {
	const char *in, *out;	/* out with both fields to add offered */
} cases[] = {
	/* nothing to do but add */
	{ "Subject: a\r\n\r\nbody\r\n",
	  "Subject: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nbody\r\n" },
	/* present ones are kept as they are, in any case */
	{ "DATE: x\r\nmessage-id: <y>\r\n\r\nb\r\n", "DATE: x\r\nmessage-id: <y>\r\n\r\nb\r\n" },
	{ "Date : x\r\n\r\n", "Date : x\r\nMessage-ID: <M@h>\r\n\r\n" },
	/* Bcc and friends dropped, folded lines with them, any case, blanks before the colon */
	{ "To: a\r\nBcc: b,\r\n c,\r\n\td\r\nSubject: s\r\n\r\nx\r\n",
	  "To: a\r\nSubject: s\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nx\r\n" },
	{ "bCC : b\r\nRESENT-BCC: c\r\n  more\r\nreturn-path: <evil>\r\nTo: a\r\n\r\n",
	  "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\n" },
	/* a folded Bcc last in the header block */
	{ "To: a\r\nBcc: b,\r\n c\r\n\r\nBcc: body\r\n",
	  "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nBcc: body\r\n" },
	/* an empty Bcc; names that only start like Bcc stay */
	{ "Bcc:\r\nBccX: 1\r\nX-Bcc: 2\r\n\r\n",
	  "BccX: 1\r\nX-Bcc: 2\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\n" },
	/* "Bcc:" in the body, after a continuation-looking body line: untouched */
	{ "To: a\r\n\r\n Bcc: x\r\nBcc: y\r\n",
	  "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\n Bcc: x\r\nBcc: y\r\n" },
	/* bare LF line ends */
	{ "To: a\nBcc: b\n c\n\nBcc: d\n", "To: a\nDate: D\r\nMessage-ID: <M@h>\r\n\nBcc: d\n" },
	/* no header/body separator: the block ends at the first line that is no field */
	{ "To: a\r\nBcc: b\r\nhello world\r\nBcc: c\r\n",
	  "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nhello world\r\nBcc: c\r\n" },
	{ "To: a\r\n: no name\r\n", "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\n: no name\r\n" },
	{ "hello\r\n", "Date: D\r\nMessage-ID: <M@h>\r\n\r\nhello\r\n" },
	{ " indented\r\nBcc: x\r\n", "Date: D\r\nMessage-ID: <M@h>\r\n\r\n indented\r\nBcc: x\r\n" },
	{ "\r\nBcc: x\r\n", "Date: D\r\nMessage-ID: <M@h>\r\n\r\nBcc: x\r\n" },
	/* all header, no body; the last line without its line end */
	{ "To: a\r\n", "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n" },
	{ "To: a", "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n" },
	{ "To: a\r\nBcc: b", "To: a\r\nDate: D\r\nMessage-ID: <M@h>\r\n" },
	{ "", "Date: D\r\nMessage-ID: <M@h>\r\n" },
	/* a CR that is not a line end, 8-bit names */
	{ "\rx: y\r\n", "Date: D\r\nMessage-ID: <M@h>\r\n\r\n\rx: y\r\n" },
	{ "T\xc3\xb6: y\r\n\r\n", "Date: D\r\nMessage-ID: <M@h>\r\n\r\nT\xc3\xb6: y\r\n\r\n" },
};

static void test_cases(void)
{
	for (size_t i = 0; i < N(cases); i++) {
		size_t len = strlen(cases[i].in);
		for (size_t step = 0; step <= 3; step++) {
			char *out = run(cases[i].in, len, step, 2);
			if (strcmp(out, cases[i].out) != 0)
				fprintf(stderr, "case %zu step %zu\n", i, step);
			CHECK_STREQ(out, cases[i].out);
			free(out);
		}
	}
}

/* without fields to add (the MX role) the dropping happens, and a header that ends at a line
 * that is no field still gets its empty line: mime/header.c skips such a line and would
 * read the Bcc after it as a field (found by fuzz_hdrfilter) */
static void test_drop_only(void)
{
	char *out = run("To: a\r\nBcc: b\r\nhello\r\n", 22, 1, 0);
	CHECK_STREQ(out, "To: a\r\n\r\nhello\r\n");
	free(out);
	out = run("To: a\r\nhello\r\nBcc: c\r\n\r\n", 24, 1, 0);
	CHECK_STREQ(out, "To: a\r\n\r\nhello\r\nBcc: c\r\n\r\n");
	free(out);
	out = run(" x\r\nBcc: c\r\n\r\n", 14, 0, 0);
	CHECK_STREQ(out, "\r\n x\r\nBcc: c\r\n\r\n");
	free(out);
	out = run("To: a\r\nSubject: s\r\n\r\nBody\r\n", 27, 0, 0);
	CHECK_STREQ(out, "To: a\r\nSubject: s\r\n\r\nBody\r\n");
	free(out);
}

/* a very long field line passes without being held; a very long "name" without a colon
 * ends the header block once it is longer than any name can be */
static void test_long_lines(void)
{
	size_t n = 200000;
	char *in = malloc(n + 64);
	memcpy(in, "Subject: ", 9);
	memset(in + 9, 'x', n);
	memcpy(in + 9 + n, "\r\nBcc: b\r\n\r\n", 13);
	char *out = run(in, strlen(in), 4096, 0);
	CHECK(strlen(out) == 9 + n + 4);
	CHECK(strstr(out, "Bcc") == NULL);
	free(out);
	/* a long folded Bcc is dropped whole */
	memcpy(in, "Bcc: ", 5);
	for (size_t i = 5; i < n; i++)
		in[i] = i % 70 == 0 ? '\n' : i % 70 == 69 ? '\r' : i % 70 == 1 ? ' ' : 'b';
	memcpy(in + n, "\r\nTo: a\r\n\r\n", 12);
	out = run(in, strlen(in), 1000, 0);
	CHECK_STREQ(out, "To: a\r\n\r\n");
	free(out);
	memset(in, 'n', n);
	memcpy(in + n, ": v\r\n\r\n", 8);
	out = run(in, strlen(in), 7, 2);
	CHECK(strncmp(out, "Date: D\r\nMessage-ID: <M@h>\r\n\r\nnnn", 33) == 0);
	CHECK(strlen(out) == n + 7 + 30);
	free(out);
	free(in);
}

TEST_MAIN(TEST(test_cases), TEST(test_drop_only), TEST(test_long_lines))
