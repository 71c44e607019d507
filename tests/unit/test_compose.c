/* test_compose - the message composer: encoded words, RFC 2231, line lengths, boundaries */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/utf8.h"
#include "mime/compose.h"
#include "mime/decode.h"
#include "mime/downgrade.h"
#include "mime/encword.h"
#include "test.h"

/* max_line - the longest line (without CRLF) of s; *bare_r set when a lone LF or CR occurs */
static size_t max_line(const char *s, size_t len, int *bare_r)
{
	size_t best = 0, cur = 0;
	*bare_r = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
			if (cur > best)
				best = cur;
			cur = 0;
			i++;
		} else if (s[i] == '\r' || s[i] == '\n') {
			*bare_r = 1;
		} else {
			cur++;
		}
	}
	return cur > best ? cur : best;
}

/* header_value - the unfolded value of header name in msg (fresh), or NULL */
static char *header_value(const char *msg, const char *name)
{
	size_t nl = strlen(name);
	const char *p = msg;
	while (*p && !(p[0] == '\r' && p[1] == '\n')) {
		const char *eol = strstr(p, "\r\n");
		if (!strncasecmp(p, name, nl) && p[nl] == ':') {
			buf v;
			buf_init(&v, 0);
			const char *q = p + nl + 1;
			while (*q == ' ')
				q++;
			for (;;) {
				const char *e = strstr(q, "\r\n");
				buf_append(&v, q, (size_t)(e - q));
				if (e[2] != ' ' && e[2] != '\t')
					break;
				q = e + 2;
			}
			buf_cstr(&v);
			return v.data ? v.data : strdup("");
		}
		p = eol + 2;
	}
	return NULL;
}

static void test_encword_split_utf8(void)
{
	/* 30 two-byte and 20 three-byte and 10 four-byte characters: words must end on
	 * character boundaries and decode back to the input */
	buf in, out, dec;
	buf_init(&in, 0);
	buf_init(&out, 0);
	buf_init(&dec, 0);
	for (int i = 0; i < 30; i++)
		buf_puts(&in, "\xc3\xa9");	/* é */
	for (int i = 0; i < 20; i++)
		buf_puts(&in, "\xe2\x82\xac");	/* € */
	for (int i = 0; i < 10; i++)
		buf_puts(&in, "\xf0\x9f\x90\xa6");	/* 🐦 */
	buf_puts(&in, " tail");
	CHECK(mime_encword_encode(in.data, in.len, 67, &out) == 0);
	const char *p = buf_cstr(&out);
	int words = 0;
	size_t first_len = 0;
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);
		CHECK(wl <= 75);
		if (words == 0)
			first_len = wl;
		CHECK(!strncmp(p, "=?UTF-8?B?", 10));
		CHECK(!strncmp(p + wl - 2, "?=", 2));
		/* each word alone decodes to valid UTF-8: no character is split */
		buf one;
		buf_init(&one, 0);
		mime_base64_decode(p + 10, wl - 12, &one);
		CHECK(utf8_valid(one.data, one.len));
		buf_free(&one);
		words++;
		p += wl;
		if (*p == ' ')
			p++;
	}
	CHECK(words >= 4);
	CHECK(first_len <= 67);
	CHECK(mime_encword_decode(out.data, out.len, &dec) == 0);
	CHECK(dec.len == in.len && !memcmp(dec.data, in.data, in.len));
	buf_free(&in);
	buf_free(&out);
	buf_free(&dec);
}

static void test_qp_round_trip(void)
{
	static const char *const cases[] = {
		"plain ascii\n",
		"caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e\n",
		"trailing blanks   \nand tab\t\n",
		"a=b ==\n",
		"no final newline",
		"",
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		buf enc, dec, want;
		buf_init(&enc, 0);
		buf_init(&dec, 0);
		buf_init(&want, 0);
		const char *s = cases[c];
		mime_qp_encode(s, strlen(s), &enc);
		int bare;
		CHECK(max_line(enc.data ? enc.data : "", enc.len, &bare) <= 76);
		CHECK(!bare);
		mime_qp_decode(enc.data ? enc.data : "", enc.len, false, &dec);
		for (const char *p = s; *p; p++)
			*p == '\n' ? buf_puts(&want, "\r\n") : buf_putc(&want, *p);
		CHECK(dec.len == want.len && (want.len == 0 || !memcmp(dec.data, want.data, want.len)));
		buf_free(&enc);
		buf_free(&dec);
		buf_free(&want);
	}
	/* a long line with blanks at every position a soft break may fall on */
	buf in, enc, dec;
	buf_init(&in, 0);
	buf_init(&enc, 0);
	buf_init(&dec, 0);
	for (int i = 0; i < 3000; i++)
		buf_putc(&in, i % 7 == 0 ? ' ' : i % 11 == 0 ? '=' : (i % 13 == 0 ? '\xc3' : 'x'));
	for (size_t i = 0; i < in.len; i++)	/* make the 0xc3 bytes valid é */
		if (in.data[i] == '\xc3' && i + 1 < in.len)
			in.data[i + 1] = '\xa9';
	mime_qp_encode(in.data, in.len, &enc);
	int bare;
	CHECK(max_line(enc.data, enc.len, &bare) <= 76);
	mime_qp_decode(enc.data, enc.len, false, &dec);
	CHECK(dec.len == in.len && !memcmp(dec.data, in.data, in.len));
	/* no line of the encoding ends with a blank (it would be lost) */
	CHECK(strstr(buf_cstr(&enc), " \r\n") == NULL);
	buf_free(&in);
	buf_free(&enc);
	buf_free(&dec);
}

static void test_base64_lines(void)
{
	unsigned char data[1000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	buf out, dec;
	buf_init(&out, 0);
	buf_init(&dec, 0);
	mime_base64_encode_lines((const char *)data, sizeof(data), &out);
	const char *p = buf_cstr(&out);
	size_t lines = 0;
	while (*p) {
		const char *e = strstr(p, "\r\n");
		CHECK(e != NULL);
		if (e == NULL)
			break;
		lines++;
		if (e[2] != '\0')
			CHECK(e - p == 76);
		else
			CHECK(e - p <= 76);
		p = e + 2;
	}
	CHECK(lines == (sizeof(data) + 56) / 57);
	mime_base64_decode(out.data, out.len, &dec);
	CHECK(dec.len == sizeof(data) && !memcmp(dec.data, data, sizeof(data)));
	buf_free(&out);
	buf_free(&dec);
}

static void test_address(void)
{
	char *a, *n;
	const char *err;
	CHECK(mime_compose_address("bob@example.org", &a, &n, &err) == 0);
	CHECK_STREQ(a, "bob@example.org");
	CHECK(n == NULL);
	free(a);
	CHECK(mime_compose_address("Jos\xc3\xa9 M. <jose@example.org>", &a, &n, &err) == 0);
	CHECK_STREQ(a, "jose@example.org");
	CHECK_STREQ(n, "Jos\xc3\xa9 M.");
	free(a);
	free(n);
	CHECK(mime_compose_address("\"Doe, \\\"J\\\"\" <j@x.org>", &a, &n, &err) == 0);
	CHECK_STREQ(n, "Doe, \"J\"");
	free(a);
	free(n);
	static const char *const bad[] = { "nobody", "@x.org", "a@", "a b@x.org", "A <a@x.org",
					   "a@x.org>", "a@x.org\r\nBcc: evil@x.org", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(mime_compose_address(bad[i], &a, &n, &err) == -1);
	}
}

static void test_guess_type(void)
{
	static const unsigned char png[] = "\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
	CHECK_STREQ(mime_guess_type("x.bin", png, sizeof(png) - 1), "image/png");
	CHECK_STREQ(mime_guess_type("photo.JPG", (const unsigned char *)"\xff\xd8\xff\xe0", 4),
		    "image/jpeg");
	CHECK_STREQ(mime_guess_type("notes.txt", (const unsigned char *)"h\xc3\xa9llo\n", 7),
		    "text/plain; charset=utf-8");
	CHECK_STREQ(mime_guess_type("data.csv", (const unsigned char *)"a,b\n", 4),
		    "text/csv; charset=utf-8");
	/* a .txt that is not UTF-8 text is not labelled as such */
	CHECK_STREQ(mime_guess_type("x.txt", (const unsigned char *)"\0\1\2\xff", 4),
		    "application/octet-stream");
	CHECK_STREQ(mime_guess_type("report.pdf", (const unsigned char *)"zz\0", 3),
		    "application/pdf");
	CHECK_STREQ(mime_guess_type("noext", (const unsigned char *)"\0\xff", 2),
		    "application/octet-stream");
}

/* compose_one - a message with every kind of part */
static char *compose_one(const char *text, const char *unique, const char *const *extra,
			 size_t n_extra, char **error_r, size_t *len_r)
{
	static unsigned char bin[5000];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (unsigned char)(i * 31 + 7);
	const char *to[] = { "Bob <bob@example.org>", "carol@example.org" };
	const char *cc[] = { "Dan\xc3\xa9 Dupr\xc3\xa9 <dan@example.org>" };
	struct mime_attachment att[] = {
		{ "r\xc3\xa9sum\xc3\xa9 \xe2\x80\x94 version tr\xc3\xa8s longue du document "
		  "annuel.txt",
		  NULL, (const unsigned char *)"caf\xc3\xa9\n", 6 },
		{ "blob.bin", NULL, bin, sizeof(bin) },
	};
	struct mime_compose m = {
		.from = "Alice Liddell <alice@example.org>",
		.to = to,
		.n_to = 2,
		.cc = cc,
		.n_cc = 1,
		.subject = "R\xc3\xa9sum\xc3\xa9 of the na\xc3\xafve caf\xc3\xa9 meeting \xe2\x80\x94 "
			   "with a rather long subject line that needs folding",
		.headers = extra,
		.n_headers = n_extra,
		.text = text,
		.text_len = strlen(text),
		.html = "<p>caf\xc3\xa9</p>\n",
		.html_len = strlen("<p>caf\xc3\xa9</p>\n"),
		.attachments = att,
		.n_attachments = 2,
		.date = 1700000000,
		.tz_minutes = 90,
		.unique = unique,
	};
	buf out;
	buf_init(&out, 0);
	if (mime_compose(&m, &out, error_r) < 0) {
		buf_free(&out);
		return NULL;
	}
	*len_r = out.len;
	buf_cstr(&out);
	return out.data;
}

static void test_compose_structure(void)
{
	char *err = NULL;
	size_t len;
	buf text;
	buf_init(&text, 0);
	buf_puts(&text, "Hello Bob,\n\nna\xc3\xafve text.\n");
	for (int i = 0; i < 1500; i++)	/* one line longer than 998 octets */
		buf_putc(&text, 'z');
	buf_puts(&text, "\n");
	const char *extra[] = { "X-Mailer: tern", "X-Note: \xc3\xa0 bient\xc3\xb4t" };
	char *msg = compose_one(buf_cstr(&text), "1700000000.abc123", extra, 2, &err, &len);
	CHECK(msg != NULL);
	if (msg == NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		buf_free(&text);
		return;
	}
	int bare;
	CHECK(max_line(msg, len, &bare) <= 998);
	CHECK(!bare);
	CHECK(strlen(msg) == len);
	CHECK(!strncmp(msg, "Date: Tue, 14 Nov 2023 23:43:20 +0130\r\n", 39));
	CHECK(strstr(msg, "\r\nMIME-Version: 1.0\r\n") != NULL);
	CHECK(strstr(msg, "\r\nMessage-ID: <1700000000.abc123@example.org>\r\n") != NULL);
	CHECK(strstr(msg, "Content-Type: multipart/mixed;") != NULL);
	CHECK(strstr(msg, "Content-Type: multipart/alternative;") != NULL);
	/* the alternative (text first) comes before the attachments */
	CHECK(strstr(msg, "multipart/alternative") < strstr(msg, "Content-Disposition"));
	CHECK(strstr(msg, "text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
			  "quoted-printable") != NULL);
	CHECK(strstr(msg, "filename*0*=utf-8''r%C3%A9sum%C3%A9") != NULL);
	CHECK(strstr(msg, "filename*1*=") != NULL);
	CHECK(strstr(msg, "filename=\"blob.bin\"") != NULL);
	CHECK(strstr(msg, "Content-Type: application/octet-stream;\r\n name=\"blob.bin\"") != NULL);
	/* the subject decodes back exactly; its encoded words fit lines of 76 */
	char *subj = header_value(msg, "Subject");
	buf dec;
	buf_init(&dec, 0);
	mime_encword_decode(subj, strlen(subj), &dec);
	CHECK_STREQ(buf_cstr(&dec), "R\xc3\xa9sum\xc3\xa9 of the na\xc3\xafve caf\xc3\xa9 meeting "
				     "\xe2\x80\x94 with a rather long subject line that needs folding");
	free(subj);
	buf_reset(&dec);
	char *hdrs_end = strstr(msg, "\r\n\r\n");
	CHECK(max_line(msg, (size_t)(hdrs_end - msg), &bare) <= 76);
	char *cc = header_value(msg, "Cc");
	mime_encword_decode(cc, strlen(cc), &dec);
	CHECK_STREQ(buf_cstr(&dec), "Dan\xc3\xa9 Dupr\xc3\xa9 <dan@example.org>");
	free(cc);
	buf_reset(&dec);
	char *x = header_value(msg, "X-Note");
	mime_encword_decode(x, strlen(x), &dec);
	CHECK_STREQ(buf_cstr(&dec), "\xc3\xa0 bient\xc3\xb4t");
	free(x);
	buf_free(&dec);
	/* base64 bodies: 76 columns */
	const char *b = strstr(msg, "name=\"blob.bin\"");
	b = b ? strstr(b, "\r\n\r\n") : NULL;
	CHECK(b != NULL);
	if (b != NULL) {
		b += 4;
		const char *e = strstr(b, "\r\n");
		CHECK(e - b == 76);
	}
	free(msg);
	buf_free(&text);
}

static void test_boundary_avoids_content(void)
{
	/* the text holds the boundaries the composer would pick first: it must move on */
	const char *text = "--=_U_0_mix\n--=_U_0_alt\n=_U_1 too\n";
	char *err = NULL;
	size_t len;
	char *msg = compose_one(text, "U", NULL, 0, &err, &len);
	CHECK(msg != NULL);
	if (msg == NULL) {
		free(err);
		return;
	}
	CHECK(strstr(msg, "boundary=\"=_U_0_") == NULL);
	CHECK(strstr(msg, "boundary=\"=_U_1_") == NULL);
	CHECK(strstr(msg, "boundary=\"=_U_2_mix\"") != NULL);
	CHECK(strstr(msg, "boundary=\"=_U_2_alt\"") != NULL);
	/* each boundary's delimiter line appears only where the composer put it */
	size_t n = 0;
	for (const char *p = msg; (p = strstr(p, "\r\n--=_U_2_mix")) != NULL; p++)
		n++;
	CHECK(n == 4);	/* alternative, two attachments, close */
	free(msg);
}

static void test_bcc_and_bad_headers(void)
{
	static const char *const refused[] = { "Bcc: hidden@example.org", "bcc:x@y.org",
					       "Content-Type: text/html", "Subject: twice",
					       "X-Bad: a\r\nBcc: x@y.org", "No colon",
					       "Bad Name: v" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		char *err = NULL;
		size_t len;
		const char *extra[] = { refused[i] };
		char *msg = compose_one("hi\n", "U", extra, 1, &err, &len);
		CHECK(msg == NULL);
		CHECK(err != NULL);
		free(msg);
		free(err);
	}
	/* and without them no Bcc anywhere */
	char *err = NULL;
	size_t len;
	char *msg = compose_one("hi\n", "U", NULL, 0, &err, &len);
	CHECK(msg != NULL && strcasestr(msg, "\nBcc:") == NULL);
	free(msg);
}

static void test_simple_7bit(void)
{
	const char *to[] = { "bob@example.org" };
	struct mime_compose m = {
		.from = "alice@example.org", .to = to, .n_to = 1, .subject = "Hello",
		.text = "line one\r\nline two\n.dot\n", .text_len = 24, .date = 0,
		.unique = "u1",
	};
	buf out;
	buf_init(&out, 0);
	char *err = NULL;
	CHECK(mime_compose(&m, &out, &err) == 0);
	const char *s = buf_cstr(&out);
	CHECK(strstr(s, "Subject: Hello\r\n") != NULL);
	CHECK(strstr(s, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
			"7bit\r\n\r\nline one\r\nline two\r\n.dot\r\n") != NULL);
	CHECK(strstr(s, "multipart") == NULL);
	/* invalid UTF-8 text is refused */
	m.text = "\xff\xfe";
	m.text_len = 2;
	buf_reset(&out);
	CHECK(mime_compose(&m, &out, &err) == -1);
	free(err);
	/* a subject with "=?" is encoded, so that it reads back as typed */
	m.text = "x";
	m.text_len = 1;
	m.subject = "=?utf-8?q?not_a_word?=";
	buf_reset(&out);
	CHECK(mime_compose(&m, &out, &err) == 0);
	CHECK(strstr(buf_cstr(&out), "Subject: =?UTF-8?B?") != NULL);
	buf_free(&out);
}

TEST_MAIN(TEST(test_encword_split_utf8), TEST(test_qp_round_trip), TEST(test_base64_lines),
	  TEST(test_address), TEST(test_guess_type), TEST(test_compose_structure),
	  TEST(test_boundary_avoids_content), TEST(test_bcc_and_bad_headers),
	  TEST(test_simple_7bit))
