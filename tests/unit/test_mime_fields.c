/* test_mime_fields - the field-level MIME parsers: transfer decoding, header blocks (whole
 * and byte at a time), encoded words, Content-Type parameters (RFC 2231), addresses, dates */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "mime/mime.h"
#include "test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- base64 / quoted-printable ---- */

static const struct {
	const char *in, *out;
} b64_cases[] = {
	{ "", "" },
	{ "Zm9vYmFy", "foobar" },
	{ "Zm9vYg==", "foob" },
	{ "Zm9vYg", "foob" },			/* missing padding */
	{ "Zm9v\r\nYmFy\r\n", "foobar" },	/* line breaks */
	{ "Zm9v YmFy", "foobar" },		/* blanks */
	{ "Zm9v*!YmFy", "foobar" },		/* junk skipped */
	{ "Zg==Zm8=", "ffo" },			/* concatenated blocks */
	{ "Z", "" },				/* a lone character carries no byte */
	{ "Zm8", "fo" },
	{ "=====", "" },
};

static void test_base64(void)
{
	for (size_t i = 0; i < N(b64_cases); i++) {
		buf b;
		buf_init(&b, 0);
		CHECK(mime_base64_decode(b64_cases[i].in, strlen(b64_cases[i].in), &b) == 0);
		CHECK_STREQ(buf_cstr(&b), b64_cases[i].out);
		/* byte at a time gives the same */
		buf b2;
		buf_init(&b2, 0);
		struct mime_base64_state st;
		mime_base64_init(&st);
		for (const char *p = b64_cases[i].in; *p; p++)
			CHECK(mime_base64_more(&st, p, 1, &b2) == 0);
		CHECK(mime_base64_end(&st, &b2) == 0);
		CHECK_STREQ(buf_cstr(&b2), b64_cases[i].out);
		buf_free(&b);
		buf_free(&b2);
	}
	/* a full output buffer is the only error */
	buf b;
	buf_init(&b, 3);
	CHECK(mime_base64_decode("Zm9vYmFy", 8, &b) == -1);
	buf_free(&b);
}

static const struct {
	const char *in, *out;
	bool q;
} qp_cases[] = {
	{ "plain", "plain", false },
	{ "a=3Db", "a=b", false },
	{ "caf=c3=a9", "caf\xc3\xa9", false },		/* lowercase hex */
	{ "soft=\r\nbreak", "softbreak", false },
	{ "soft=\nbreak", "softbreak", false },
	{ "soft= \t\r\nbreak", "softbreak", false },	/* blanks after "=" */
	{ "trail   \r\nnext", "trail\r\nnext", false },	/* trailing blanks dropped */
	{ "lf  \nx", "lf\nx", false },
	{ "bad=zz", "bad=zz", false },			/* not an escape: kept */
	{ "end=", "end", false },
	{ "end=4", "end=4", false },
	{ "a_b=20c", "a b c", true },			/* RFC 2047 Q */
	{ "a_b", "a_b", false },
	{ "100%=\r\n", "100%", false },
};

static void test_qp(void)
{
	for (size_t i = 0; i < N(qp_cases); i++) {
		buf b;
		buf_init(&b, 0);
		CHECK(mime_qp_decode(qp_cases[i].in, strlen(qp_cases[i].in), qp_cases[i].q, &b) == 0);
		CHECK_STREQ(buf_cstr(&b), qp_cases[i].out);
		buf_free(&b);
	}
}

/* ---- header blocks ---- */

static const struct {
	const char *in;
	int rc;
	unsigned count;
	size_t size;
	const char *first_name, *first_value; /* unfolded */
} hdr_cases[] = {
	{ "A: 1\r\nB: 2\r\n\r\nbody", 1, 2, 14, "A", "1" },
	{ "A: 1\nB: 2\n\nbody", 1, 2, 11, "A", "1" },
	{ "Subject: a\r\n b\r\n\tc\r\n\r\n", 1, 1, 22, "Subject", "a b\tc" },
	{ "Subject  : obs\r\n\r\n", 1, 1, 18, "Subject", "obs" },	/* blank before colon */
	{ "From nobody Mon\r\nA: 1\r\n\r\n", 1, 1, 25, "A", "1" },	/* mbox line skipped */
	{ "\r\nbody", 1, 0, 2, NULL, NULL },
	{ "\nbody", 1, 0, 1, NULL, NULL },
	{ "A: 1\r\nB: 2", 1, 2, 10, "A", "1" },				/* no blank line */
	{ "X: a\0b\r\n\r\n", 1, 1, 10, "X", "a" },				/* NUL kept raw */
	{ "A:\r\n\r\n", 1, 1, 6, "A", "" },
	{ ": novalue\r\nB: 2\r\n\r\n", 1, 1, 19, "B", "2" },		/* empty name */
};

static void check_hdr(size_t i, struct mime_headers *h, const char *in, int rc)
{
	int fails_before = test_failed_checks;
	CHECK(rc == hdr_cases[i].rc);
	CHECK(h->count == hdr_cases[i].count);
	CHECK(h->size == hdr_cases[i].size);
	if (hdr_cases[i].first_name && h->count > 0) {
		const struct mime_header_field *f = &h->fields[0];
		CHECK(mime_header_name_is(f, in, hdr_cases[i].first_name));
		buf v;
		buf_init(&v, 0);
		CHECK(mime_header_unfold(in + f->value_offset, f->value_len, &v) == 0);
		CHECK_STREQ(buf_cstr(&v), hdr_cases[i].first_value);
		buf_free(&v);
	}
	if (test_failed_checks != fails_before)
		fprintf(stderr, "  header case %zu\n", i);
}

static void test_headers(void)
{
	for (size_t i = 0; i < N(hdr_cases); i++) {
		const char *in = hdr_cases[i].in;
		size_t len = strlen(in);
		if (i == 8)
			len = 10;	/* the case with a NUL */
		struct mime_headers h;
		const char *err = NULL;
		mime_headers_init(&h);
		int rc = mime_headers_parse(&h, in, len, true, NULL, &err);
		check_hdr(i, &h, in, rc);
		/* byte at a time: 0 until the block is complete, then the same result */
		mime_headers_free(&h);
		mime_headers_init(&h);
		rc = 0;
		for (size_t n = 0; n <= len && rc == 0; n++)
			rc = mime_headers_parse(&h, in, n, n == len, NULL, &err);
		check_hdr(i, &h, in, rc);
		CHECK(mime_header_block_end(in, len, NULL) == hdr_cases[i].size);
		mime_headers_free(&h);
	}
}

static void test_header_find(void)
{
	const char *in = "To: a\r\nsubject: one\r\nX: y\r\nSUBJECT: two\r\n\r\n";
	struct mime_headers h;
	const char *err;
	mime_headers_init(&h);
	CHECK(mime_headers_parse(&h, in, strlen(in), true, NULL, &err) == 1);
	int i = mime_headers_find(&h, in, "Subject", 0);
	CHECK(i == 1);
	CHECK(mime_headers_find(&h, in, "Subject", (unsigned)i + 1) == 3);
	CHECK(mime_headers_find(&h, in, "Subject", 4) == -1);
	CHECK(mime_headers_find(&h, in, "Cc", 0) == -1);
	mime_headers_free(&h);
}

static void test_header_limits(void)
{
	const struct mime_header_limits lim = { 100, 3 };
	const char *err = NULL;
	struct mime_headers h;
	/* too many fields */
	const char *many = "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	mime_headers_init(&h);
	CHECK(mime_headers_parse(&h, many, strlen(many), true, &lim, &err) == -1);
	CHECK_STREQ(err, "too many header fields");
	CHECK(h.count == 3);
	mime_headers_free(&h);
	/* endless folding: one field over the size limit, whole and byte at a time */
	buf big;
	buf_init(&big, 0);
	buf_puts(&big, "Subject: x");
	for (int i = 0; i < 50; i++)
		buf_puts(&big, "\r\n folded");
	buf_puts(&big, "\r\n\r\n");
	err = NULL;
	mime_headers_init(&h);
	CHECK(mime_headers_parse(&h, big.data, big.len, true, &lim, &err) == -1);
	CHECK_STREQ(err, "header too large");
	mime_headers_free(&h);
	mime_headers_init(&h);
	int rc = 0;
	size_t n;
	for (n = 0; n <= big.len && rc == 0; n++)
		rc = mime_headers_parse(&h, big.data, n, n == big.len, &lim, &err);
	CHECK(rc == -1);
	CHECK(n <= 102);	/* noticed as soon as the limit was passed */
	mime_headers_free(&h);
	/* exactly at the limit is fine */
	const struct mime_header_limits lim2 = { 14, 0 };
	mime_headers_init(&h);
	CHECK(mime_headers_parse(&h, "A: 1\r\nB: 2\r\n\r\n", 14, true, &lim2, &err) == 1);
	mime_headers_free(&h);
	mime_headers_init(&h);
	CHECK(mime_headers_parse(&h, "A: 1\r\nB: 2\r\n\r\n", 14, false, &(struct mime_header_limits){ 13, 0 }, &err) == -1);
	mime_headers_free(&h);
	buf_free(&big);
}

/* ---- encoded words ---- */

static const struct {
	const char *in, *out;
} ew_cases[] = {
	{ "plain text", "plain text" },
	{ "=?UTF-8?B?R3LDvMOfZQ==?=", "Gr\xc3\xbc\xc3\x9f" "e" },
	{ "=?utf-8?q?caf=C3=A9?=", "caf\xc3\xa9" },
	{ "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
	{ "=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=", "ab" },		/* joined */
	{ "=?iso-8859-1?q?a?=\t  =?iso-8859-2?q?b?=", "ab" },		/* blanks dropped */
	{ "=?iso-8859-1?q?a?= x =?iso-8859-1?q?b?=", "a x b" },
	{ "(=?ISO-8859-1?Q?a_b?=)", "(a b)" },
	{ "=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=", "\xe2\x82\xac" },	/* euro split in two */
	{ "=?x-unknown?q?raw?= text", "=?x-unknown?q?raw?= text" },	/* unknown charset */
	{ "=?utf-8?x?bad?=", "=?utf-8?x?bad?=" },			/* bad encoding */
	{ "=?utf-8?q?no end", "=?utf-8?q?no end" },
	{ "=?utf-8*en?q?lang?=", "lang" },				/* RFC 2231 language */
	{ "re:=?utf-8?q?glued?=", "re:glued" },
	{ "=?koi8-r?B?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
	{ "=?ISO-2022-JP?B?GyRCJEIkaRsoQg==?=", "\xe3\x81\xa2\xe3\x82\x89" },
	{ "=?windows-1252?Q?=80?=", "\xe2\x82\xac" },
	{ "=?us-ascii?q?=E9?=", "\xc3\xa9" },				/* 8-bit in us-ascii */
	{ "raw \xe9t\xe9", "raw \xc3\xa9t\xc3\xa9" },			/* raw latin-1 */
	{ "raw \xc3\xa9", "raw \xc3\xa9" },				/* raw UTF-8 kept */
	{ "=?utf-8?q?bad=FF?=", "bad\xc3\xbf" },			/* invalid UTF-8: cp1252 */
	{ "=?iso-2022-jp?B?GyRC?=x", "x" },			/* shift without text */
	{ "=?euc-jp?q?=A4=FF=FF?=", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
	{ "=?utf-8?q?nul=00x?=", "nulx" },
	{ "=?shift_jis?B?gqA=?=", "\xe3\x81\x82" },
};

static void test_encword(void)
{
	for (size_t i = 0; i < N(ew_cases); i++) {
		int fails_before = test_failed_checks;
		buf b;
		buf_init(&b, 0);
		CHECK(mime_encword_decode(ew_cases[i].in, strlen(ew_cases[i].in), &b) == 0);
		CHECK_STREQ(buf_cstr(&b), ew_cases[i].out);
		if (test_failed_checks != fails_before)
			fprintf(stderr, "  encword case %zu\n", i);
		buf_free(&b);
	}
}

/* ---- Content-Type / Disposition ---- */

static const struct {
	const char *in;
	bool ct;
	const char *type, *subtype;
	const char *params; /* "name=value|name=value" */
} ct_cases[] = {
	{ "text/plain", true, "text", "plain", "" },
	{ "Text/HTML; Charset=\"UTF-8\"", true, "text", "html", "charset=UTF-8" },
	{ "text/plain; charset=us-ascii (Plain text)", true, "text", "plain", "charset=us-ascii" },
	{ "text / plain ; format = flowed", true, "text", "plain", "format=flowed" },
	{ "multipart/mixed; boundary=\"=_a\\\"b\"", true, "multipart", "mixed", "boundary==_a\"b" },
	{ "text", true, NULL, NULL, "" },
	{ "", true, NULL, NULL, "" },
	{ "text/plain; charset=utf-8 format=flowed", true, "text", "plain",
	  "charset=utf-8|format=flowed" },		/* missing ";" */
	{ "application/pdf; name=my report.pdf", true, "application", "pdf",
	  "name=my report.pdf" },			/* unquoted blanks */
	{ "text/plain; charset=\"unterminated", true, "text", "plain", "charset=unterminated" },
	{ "text/plain; a=1; a=2", true, "text", "plain", "a=1" },	/* first wins */
	{ "text/plain; ;; junk; b=2", true, "text", "plain", "b=2" },
	{ "application/x; name*=utf-8''%E2%82%AC.txt", true, "application", "x",
	  "name=\xe2\x82\xac.txt" },
	{ "application/x; name*=iso-8859-1'fr'caf%E9", true, "application", "x",
	  "name=caf\xc3\xa9" },
	{ "application/x; name*1=\"b\"; name*0=\"a\"; name*2=c", true, "application", "x",
	  "name=abc" },					/* continuations out of order */
	{ "application/x; name*0*=utf-8''%C3; name*1*=%A9", true, "application", "x",
	  "name=\xc3\xa9" },				/* encoded split character */
	{ "application/x; name*0=a; name*2=c", true, "application", "x", "name=a" },	/* gap */
	{ "application/x; name=\"plain.txt\"; name*=utf-8''better.txt", true, "application",
	  "x", "name=better.txt" },			/* RFC 2231 preferred */
	{ "application/x; name=\"=?UTF-8?B?R3LDvMOfZQ==?=.txt\"", true, "application", "x",
	  "name=Gr\xc3\xbc\xc3\x9f" "e.txt" },	/* encoded word in a value */
	{ "multipart/mixed; boundary=\"=?x?q?y?=\"", true, "multipart", "mixed",
	  "boundary==?x?q?y?=" },			/* boundary never decoded */
	{ "application/x; name*=unknown-cs''%E9", true, "application", "x", "name=\xc3\xa9" },
	{ "attachment; filename=\"a.txt\"; size=10", false, "attachment", NULL,
	  "filename=a.txt|size=10" },
	{ "INLINE", false, "inline", NULL, "" },
	{ "; filename=x", false, NULL, NULL, "filename=x" },
};

static void params_str(const struct mime_content *c, buf *out)
{
	for (unsigned i = 0; i < c->nparams; i++)
		buf_printf(out, "%s%s=%s", i ? "|" : "", c->params[i].name, c->params[i].value);
}

static void test_content_type(void)
{
	for (size_t i = 0; i < N(ct_cases); i++) {
		int fails_before = test_failed_checks;
		struct mime_content c;
		CHECK(mime_content_parse(ct_cases[i].in, strlen(ct_cases[i].in), ct_cases[i].ct, 0,
					 &c) == 0);
		if (ct_cases[i].type)
			CHECK_STREQ(c.type, ct_cases[i].type);
		else
			CHECK(c.type == NULL);
		if (ct_cases[i].subtype)
			CHECK_STREQ(c.subtype, ct_cases[i].subtype);
		else
			CHECK(c.subtype == NULL);
		buf b;
		buf_init(&b, 0);
		params_str(&c, &b);
		CHECK_STREQ(buf_cstr(&b), ct_cases[i].params);
		if (test_failed_checks != fails_before)
			fprintf(stderr, "  content case %zu: %s\n", i, buf_cstr(&b));
		buf_free(&b);
		mime_content_free(&c);
	}
}

static void test_param_limit(void)
{
	buf in;
	buf_init(&in, 0);
	buf_puts(&in, "text/plain");
	for (int i = 0; i < 100; i++)
		buf_printf(&in, "; p%d=v", i);
	struct mime_content c;
	CHECK(mime_content_parse(in.data, in.len, true, 10, &c) == -1);
	CHECK(c.nparams == 10);
	CHECK_STREQ(mime_param_get(c.params, c.nparams, "p0"), "v");
	mime_content_free(&c);
	/* thousands of continuations stay bounded */
	buf_reset(&in);
	buf_puts(&in, "text/plain");
	for (int i = 0; i < 3000; i++)
		buf_printf(&in, "; n*%d=x", i);
	CHECK(mime_content_parse(in.data, in.len, true, 10, &c) == -1);
	const char *v = mime_param_get(c.params, c.nparams, "n");
	CHECK(v != NULL && strlen(v) == 1000);
	mime_content_free(&c);
	buf_free(&in);
}

/* ---- addresses ---- */

static const struct {
	const char *in;
	const char *out;	/* "name|route|mailbox|host;" per entry, "-" for NULL, G/E markers */
} addr_cases[] = {
	{ "alice@example.org", "-|-|alice|example.org;" },
	{ "Alice <alice@example.org>", "Alice|-|alice|example.org;" },
	{ "\"Doe, John\" <j@x.org>, b@y", "Doe, John|-|j|x.org;-|-|b|y;" },
	{ "=?utf-8?q?J=C3=B6rg?= <j@x>", "=?utf-8?q?J=C3=B6rg?=|-|j|x;" },
	{ "j@x (John Doe)", "John Doe|-|j|x;" },
	{ "John (middle) Doe <j@x>", "John Doe|-|j|x;" },
	{ "<@a.org,@b.org:u@h.org>", "-|@a.org,@b.org|u|h.org;" },
	{ "team: a@x, B <b@y>;, c@z",
	  "G:team;-|-|a|x;B|-|b|y;E;-|-|c|z;" },
	{ "undisclosed-recipients:;", "G:undisclosed-recipients;E;" },
	{ "group: a@x", "G:group;-|-|a|x;E;" },		/* unclosed group */
	{ "root", "-|-|root|-;" },
	{ "<>", "-|-||-;" },
	{ "a . b @ c . d", "-|-|a.b|c.d;" },			/* obs CFWS in addr-spec */
	{ "\"odd local\"@x", "-|-|odd local|x;" },
	{ "u@[192.0.2.1]", "-|-|u|[192.0.2.1];" },
	{ "Mr. Smith <s@x>", "Mr. Smith|-|s|x;" },		/* obs-phrase dot */
	{ "Broken <b@x", "Broken|-|b|x;" },			/* missing ">" */
	{ ",,, a@b ,,", "-|-|a|b;" },
	{ "", "" },
	{ "@@@ <> ;; ::", "" },
	{ "A <a@x> junk, b@y", "A|-|a|x;-|-|b|y;" },
};

static void addr_str(const struct mime_address *l, unsigned n, buf *out)
{
	for (unsigned i = 0; i < n; i++) {
		if (l[i].kind == MIME_ADDR_GROUP_START)
			buf_printf(out, "G:%s;", l[i].mailbox);
		else if (l[i].kind == MIME_ADDR_GROUP_END)
			buf_puts(out, "E;");
		else
			buf_printf(out, "%s|%s|%s|%s;", l[i].name ? l[i].name : "-",
				   l[i].route ? l[i].route : "-", l[i].mailbox,
				   l[i].host ? l[i].host : "-");
	}
}

static void test_addresses(void)
{
	for (size_t i = 0; i < N(addr_cases); i++) {
		int fails_before = test_failed_checks;
		struct mime_address *l;
		unsigned n;
		CHECK(mime_address_list_parse(addr_cases[i].in, strlen(addr_cases[i].in), 0, &l,
					      &n) == 0);
		buf b;
		buf_init(&b, 0);
		addr_str(l, n, &b);
		CHECK_STREQ(buf_cstr(&b), addr_cases[i].out);
		if (test_failed_checks != fails_before)
			fprintf(stderr, "  address case %zu\n", i);
		buf_free(&b);
		mime_address_list_free(&l, n);
		CHECK(l == NULL);
	}
	/* the limit */
	buf in;
	buf_init(&in, 0);
	for (int i = 0; i < 50; i++)
		buf_printf(&in, "u%d@x, ", i);
	struct mime_address *l;
	unsigned n;
	CHECK(mime_address_list_parse(in.data, in.len, 10, &l, &n) == -1);
	CHECK(n == 10);
	mime_address_list_free(&l, n);
	buf_free(&in);
}

/* ---- dates ---- */

static const struct {
	const char *in;
	long long t;
	int tz;
	int rc;
} date_cases[] = {
	{ "Mon, 1 Jan 2024 10:00:00 +0100", 1704099600, 60, 0 },
	{ "1 Jan 2024 09:00:00 +0000", 1704099600, 0, 0 },
	{ "Mon, 01 Jan 2024 04:00 -0500", 1704099600, -300, 0 },	/* no seconds */
	{ "Tue, 1 Jan 2024 09:00:00 GMT", 1704099600, 0, 0 },		/* wrong weekday */
	{ "1 Jan 24 09:00:00 UT", 1704099600, 0, 0 },			/* 2-digit year */
	{ "1 Jan 99 09:00:00 +0000", 915181200, 0, 0 },
	{ "1 Jan 124 09:00:00 +0000", 1704099600, 0, 0 },		/* 3-digit year */
	{ "Mon, 1 Jan 2024 01:00:00 PST", 1704099600, -480, 0 },
	{ "Mon, 1 Jan 2024 09:00:00 Z", 1704099600, 0, 0 },		/* military */
	{ "Mon, 1 Jan 2024 09:00:00", 1704099600, 0, 0 },		/* no zone */
	{ "Mon, 1 Jan 2024 10:00:00 +0100 (CET)", 1704099600, 60, 0 },
	{ "Mon,1 Jan 2024 10:00:00 GMT+0100", 1704099600, 60, 0 },
	{ "2024-01-01T10:00:00+01:00", 1704099600, 60, 0 },
	{ "2024-01-01 09:00:00Z", 1704099600, 0, 0 },
	{ "Mon Jan  1 09:00:00 2024", 1704099600, 0, 0 },		/* asctime */
	{ "Thu, 29 Feb 2024 23:59:60 +0000", 1709251200, 0, 0 },	/* leap second */
	{ "Sat, 1 Jan 1970 00:00:00 +0000", 0, 0, 0 },
	{ "garbage", 0, 0, -1 },
	{ "", 0, 0, -1 },
	{ "32 Jan 2024 10:00:00", 0, 0, -1 },
	{ "1 Foo 2024 10:00:00", 0, 0, -1 },
	{ "1 Jan 2024 25:00:00", 0, 0, -1 },
	{ "1 Jan 2024", 0, 0, -1 },
};

static void test_dates(void)
{
	for (size_t i = 0; i < N(date_cases); i++) {
		int fails_before = test_failed_checks;
		time_t t = 12345;
		int tz = 999;
		int rc = mime_date_parse(date_cases[i].in, strlen(date_cases[i].in), &t, &tz);
		CHECK(rc == date_cases[i].rc);
		if (rc == 0) {
			CHECK((long long)t == date_cases[i].t);
			CHECK(tz == date_cases[i].tz);
		} else {
			CHECK(t == 12345 && tz == 999);
		}
		if (test_failed_checks != fails_before)
			fprintf(stderr, "  date case %zu: %lld %d\n", i, (long long)t, tz);
	}
}

/* ---- inputs built to make a careless parser quadratic: each must finish at once ---- */

static void repeat(buf *b, const char *prefix, const char *unit, size_t total)
{
	buf_reset(b);
	buf_puts(b, prefix);
	while (b->len < total)
		buf_puts(b, unit);
}

static void test_linear_time(void)
{
	buf in, out;
	buf_init(&in, 0);
	buf_init(&out, 0);
	const size_t n = 256 * 1024;
	repeat(&in, "", "=?a?q?a", n);
	CHECK(mime_encword_decode(in.data, in.len, &out) == 0);
	CHECK(out.len == in.len);	/* nothing decodable: kept */
	static const char *const ct_units[] = { "; a (", "a=b c=d ", "; x=\"", "((((", "; n*1*=%" };
	for (size_t i = 0; i < N(ct_units); i++) {
		repeat(&in, "text/plain", ct_units[i], n);
		struct mime_content c;
		mime_content_parse(in.data, in.len, true, 0, &c);
		CHECK(c.nparams <= 64);
		mime_content_free(&c);
	}
	static const char *const addr_units[] = { "a (", "\"", "<", "a:", "@", ",", "a.", "(" };
	for (size_t i = 0; i < N(addr_units); i++) {
		repeat(&in, "", addr_units[i], n);
		struct mime_address *l;
		unsigned cnt;
		mime_address_list_parse(in.data, in.len, 0, &l, &cnt);
		CHECK(cnt <= 1000);
		mime_address_list_free(&l, cnt);
	}
	repeat(&in, "Mon, ", "1 (", n);
	time_t t;
	CHECK(mime_date_parse(in.data, in.len, &t, NULL) == -1);
	buf_reset(&out);
	repeat(&in, "", "=\r\n", n);
	CHECK(mime_qp_decode(in.data, in.len, false, &out) == 0 && out.len == 0);
	buf_free(&in);
	buf_free(&out);
}

TEST_MAIN(TEST(test_linear_time), TEST(test_base64), TEST(test_qp), TEST(test_headers), TEST(test_header_find),
	  TEST(test_header_limits), TEST(test_encword), TEST(test_content_type),
	  TEST(test_param_limit), TEST(test_addresses), TEST(test_dates))
