/* test_mime - the MIME tree: the hand-written corpus (tests/mime-corpus, *.eml against
 * *.expected), Content-* fields, every limit, nasty input (NULs, 8-bit garbage, endless
 * folding, 2 MB of headers, boundaries that are prefixes of others or sit inside lines),
 * every prefix of every corpus message, and the serialised form (round trips; truncated,
 * bit-flipped and stale blobs refused). */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "mime/mime.h"
#include "summary_check.h"
#include "test.h"

#define CORPUS "tests/mime-corpus"

/* check_tree - the structural promises of tree.h hold for a tree of a len-byte message. */
static void check_tree(const struct mime_tree *t, size_t len)
{
	CHECK(t != NULL && t->count >= 1);
	if (t == NULL)
		return;
	CHECK(t->msg_size == len);
	CHECK(t->parts[0].parent == MIME_NO_PART && t->parts[0].header_offset == 0);
	CHECK(t->parts[0].body_offset + t->parts[0].body_size == len);
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		CHECK(p->type != NULL && p->subtype != NULL);
		CHECK(p->body_offset == p->header_offset + p->header_size);
		CHECK(p->body_offset + p->body_size <= len);
		CHECK(p->body_lines <= p->body_size && p->body_bare_lf <= p->body_lines);
		uint32_t n = 0, prev = MIME_NO_PART;
		for (uint32_t c = p->first_child; c != MIME_NO_PART; c = t->parts[c].next_sibling) {
			CHECK(c > i && c < t->count);
			if (c <= i || c >= t->count)
				break;
			const struct mime_part *ch = &t->parts[c];
			CHECK(ch->parent == i && ch->depth == p->depth + 1);
			CHECK(ch->header_offset >= p->body_offset);
			CHECK(ch->body_offset + ch->body_size <= p->body_offset + p->body_size);
			if (prev != MIME_NO_PART)
				CHECK(ch->header_offset >= t->parts[prev].body_offset +
								   t->parts[prev].body_size);
			prev = c;
			n++;
		}
		CHECK(n == p->nchildren);
		if (p->flags & MIME_PART_MESSAGE)
			CHECK(p->nchildren == 1);
		if (p->flags & MIME_PART_MULTIPART)
			CHECK(p->nchildren >= 1);
		if (!(p->flags & (MIME_PART_MESSAGE | MIME_PART_MULTIPART)))
			CHECK(p->nchildren == 0);
	}
}

/* check_summary - the promise of tree.h about the summary (summary_check.h) */
static void check_summary(const struct mime_tree *t, const char *data)
{
	if (t != NULL)
		CHECK(summary_faithful(t, data));
}

/* round_trip - serialise, deserialise, serialise again: identical bytes and dump. */
static void round_trip(const struct mime_tree *t)
{
	buf a, b, da, db;
	buf_init(&a, 0);
	buf_init(&b, 0);
	buf_init(&da, 0);
	buf_init(&db, 0);
	CHECK(mime_tree_serialize(t, &a) == 0);
	const char *err = NULL;
	struct mime_tree *t2 = mime_tree_deserialize(a.data, a.len, t->msg_size, 0, &err);
	CHECK(t2 != NULL);
	if (t2) {
		check_tree(t2, t->msg_size);
		CHECK(mime_tree_serialize(t2, &b) == 0);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		mime_tree_describe(t, &da);
		mime_tree_describe(t2, &db);
		CHECK_STREQ(buf_cstr(&da), buf_cstr(&db));
		for (uint32_t i = 0; i < t->count; i++) {
			CHECK(t->parts[i].first_child == t2->parts[i].first_child);
			CHECK(t->parts[i].next_sibling == t2->parts[i].next_sibling);
		}
	}
	/* a stale cache entry (the message changed size) is refused */
	CHECK(mime_tree_deserialize(a.data, a.len, t->msg_size + 1, 0, &err) == NULL);
	CHECK_STREQ(err, "message size differs");
	mime_tree_free(&t2);
	buf_free(&a);
	buf_free(&b);
	buf_free(&da);
	buf_free(&db);
}

static struct mime_tree *parse_str(const char *s, const struct mime_limits *lim)
{
	struct mime_tree *t = mime_tree_parse(s, strlen(s), lim);
	check_tree(t, strlen(s));
	check_summary(t, s);
	return t;
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
	for (size_t i = 0; i < n; i++) {
		int fails_before = test_failed_checks;
		char *path = xasprintf("%s/%s.eml", CORPUS, names[i]);
		char *epath = xasprintf("%s/%s.expected", CORPUS, names[i]);
		char *msg = NULL, *exp = NULL;
		size_t mlen = 0, elen = 0;
		CHECK(fs_read_file(path, 1 << 24, &msg, &mlen) == 0);
		CHECK(fs_read_file(epath, 1 << 20, &exp, &elen) == 0);
		if (msg && exp) {
			exp = xrealloc(exp, elen + 1);
			exp[elen] = '\0';
			struct mime_tree *t = mime_tree_parse(msg, mlen, NULL);
			check_tree(t, mlen);
			check_summary(t, msg);
			buf dump;
			buf_init(&dump, 0);
			mime_tree_describe(t, &dump);
			CHECK_STREQ(buf_cstr(&dump), exp);
			round_trip(t);
			mime_tree_free(&t);
			/* every prefix: no crash, a bounded and consistent tree */
			size_t step = mlen > 5000 ? mlen / 97 : 1;
			for (size_t k = 0; k < mlen; k += step) {
				t = mime_tree_parse(msg, k, NULL);
				check_tree(t, k);
				check_summary(t, msg);
				mime_tree_free(&t);
			}
			buf_free(&dump);
		}
		if (test_failed_checks != fails_before)
			fprintf(stderr, "  corpus %s\n", names[i]);
		free(msg);
		free(exp);
		free(path);
		free(epath);
		free(names[i]);
	}
}

static void test_fields(void)
{
	char *msg;
	size_t len;
	CHECK(fs_read_file(CORPUS "/03-mixed-attach.eml", 1 << 20, &msg, &len) == 0);
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	CHECK(t->count == 3);
	const struct mime_part *root = &t->parts[0], *a = &t->parts[2];
	CHECK(root->flags == MIME_PART_MULTIPART);
	CHECK_STREQ(mime_part_param(root, "boundary"), "----=_Part_0_123.456");
	CHECK(root->encoding == NULL && root->disposition == NULL && root->id == NULL);
	CHECK_STREQ(a->type, "application");
	CHECK_STREQ(a->subtype, "pdf");
	CHECK_STREQ(mime_part_param(a, "name"), "report.pdf");
	CHECK_STREQ(a->encoding, "base64");
	CHECK_STREQ(a->disposition, "attachment");
	CHECK(a->ndisp_params == 2);
	CHECK_STREQ(mime_param_get(a->disp_params, a->ndisp_params, "filename"), "report.pdf");
	CHECK_STREQ(a->id, "<part1@example.org>");
	CHECK_STREQ(a->description, "The report");
	CHECK(a->nlanguage == 2);
	if (a->nlanguage == 2) {
		CHECK_STREQ(a->language[0], "en");
		CHECK_STREQ(a->language[1], "de");
	}
	CHECK_STREQ(a->location, "http://example.org/r.pdf");
	CHECK_STREQ(a->md5, "Q2hlY2sgSW50ZWdyaXR5IQ==");
	/* the body is exactly the base64 text, which decodes */
	buf dec;
	buf_init(&dec, 0);
	CHECK(mime_base64_decode(msg + a->body_offset, a->body_size, &dec) == 0);
	CHECK(dec.len == 9 && memcmp(dec.data, "%PDF-1.4\n", 9) == 0);
	buf_free(&dec);
	mime_tree_free(&t);
	CHECK(t == NULL);
	free(msg);

	/* the default type, and one in a digest */
	t = parse_str("Subject: x\r\n\r\nbody", NULL);
	CHECK_STREQ(t->parts[0].type, "text");
	CHECK_STREQ(mime_part_param(&t->parts[0], "charset"), "us-ascii");
	CHECK(t->parts[0].flags == MIME_PART_DEFAULT_TYPE);
	mime_tree_free(&t);
	/* an invalid Content-Type is the default too */
	t = parse_str("Content-Type: garbage\r\n\r\nbody", NULL);
	CHECK_STREQ(t->parts[0].subtype, "plain");
	CHECK(t->parts[0].flags & MIME_PART_DEFAULT_TYPE);
	mime_tree_free(&t);
	/* the first Content-Type wins, encoding is lowercased and cut at comments */
	t = parse_str("Content-type: text/html\r\nContent-Type: image/png\r\n"
		      "Content-Transfer-Encoding: BASE64 (yes)\r\nContent-Language: (c) fr\r\n\r\n", NULL);
	CHECK_STREQ(t->parts[0].subtype, "html");
	CHECK_STREQ(t->parts[0].encoding, "base64");
	CHECK(t->parts[0].nlanguage == 1 && strcmp(t->parts[0].language[0], "fr") == 0);
	round_trip(t);
	mime_tree_free(&t);
}

/* multipart structure details: offsets around boundaries */
static void test_boundaries(void)
{
	/* empty parts, preamble, transport padding after the delimiter */
	const char *m = "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
			"--b \t\r\n\r\n\r\n--b\r\n--b--  \r\nepilogue";
	struct mime_tree *t = parse_str(m, NULL);
	CHECK(t->count == 3);
	CHECK(t->parts[0].flags == MIME_PART_MULTIPART);
	if (t->count == 3) {
		/* first part: header "\r\n" then an empty body */
		CHECK(t->parts[1].header_size == 2 && t->parts[1].body_size == 0);
		/* second part: nothing at all between the delimiters */
		CHECK(t->parts[2].header_size == 0 && t->parts[2].body_size == 0);
		CHECK(t->parts[2].flags & MIME_PART_NO_HEADER_END);
	}
	mime_tree_free(&t);
	/* the delimiter at the very end, without line end */
	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--", NULL);
	CHECK(t->count == 2 && t->parts[0].flags == MIME_PART_MULTIPART);
	CHECK(t->parts[1].body_size == 1);
	mime_tree_free(&t);
	/* a boundary inside a line, and a longer one starting with it, do not count */
	t = parse_str("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx --b\n--bb\n--b-\n--b--\n", NULL);
	CHECK(t->count == 2);
	CHECK(t->parts[1].body_size == strlen("x --b\n--bb\n--b-"));
	mime_tree_free(&t);
	/* inner part without close delimiter ends at the outer one */
	t = parse_str("Content-Type: multipart/mixed; boundary=o\n\n--o\n"
		      "Content-Type: multipart/alternative; boundary=i\n\n--i\n\nA\n--o\n\nB\n--o--\n",
		      NULL);
	CHECK(t->count == 4);
	if (t->count == 4) {
		CHECK(t->parts[1].flags == (MIME_PART_MULTIPART | MIME_PART_NO_CLOSE_BOUNDARY));
		CHECK(t->parts[2].depth == 2 && t->parts[2].body_size == 1);
		CHECK(t->parts[3].depth == 1);
	}
	mime_tree_free(&t);
	/* no boundary parameter / empty boundary: a leaf */
	t = parse_str("Content-Type: multipart/mixed\n\n--\n\nx\n", NULL);
	CHECK(t->count == 1 && t->parts[0].flags == 0);
	mime_tree_free(&t);
	t = parse_str("Content-Type: multipart/mixed; boundary=\"\"\n\n--\n\nx\n", NULL);
	CHECK(t->count == 1);
	mime_tree_free(&t);
	/* message/rfc822 with base64 encoding is a leaf; with 8bit it has a child */
	t = parse_str("Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\n"
		      "Subject: in\n\nbody\n", NULL);
	CHECK(t->count == 2 && t->parts[0].flags == MIME_PART_MESSAGE);
	CHECK(t->parts[1].header_offset == t->parts[0].body_offset);
	mime_tree_free(&t);
	/* line counts and bare LFs */
	t = parse_str("A: b\n\r\none\r\ntwo\nthree", NULL);
	CHECK(t->parts[0].header_bare_lf == 1 && t->parts[0].body_lines == 3);
	CHECK(t->parts[0].body_bare_lf == 1);
	mime_tree_free(&t);
}

static void test_limits(void)
{
	struct mime_limits lim;
	char *msg;
	size_t len;
	/* depth */
	CHECK(fs_read_file(CORPUS "/13-deep.eml", 1 << 20, &msg, &len) == 0);
	mime_limits_default(&lim);
	lim.max_depth = 3;
	struct mime_tree *t = mime_tree_parse(msg, len, &lim);
	check_tree(t, len);
	CHECK(t->count == 4);
	CHECK(t->parts[3].depth == 3 && (t->parts[3].flags & MIME_PART_DEPTH_LIMIT));
	CHECK(!(t->parts[3].flags & MIME_PART_MULTIPART));
	round_trip(t);
	mime_tree_free(&t);
	lim.max_depth = 0;
	t = mime_tree_parse(msg, len, &lim);
	CHECK(t->count == 1 && t->parts[0].flags == MIME_PART_DEPTH_LIMIT);
	mime_tree_free(&t);
	/* a caller's huge depth is capped at the ceiling */
	lim.max_depth = 1000000;
	lim.max_parts = 1000000;
	buf deep;
	buf_init(&deep, 0);
	for (int i = 0; i < 1000; i++)
		buf_puts(&deep, "Content-Type: message/rfc822\n\n");
	t = mime_tree_parse(deep.data, deep.len, &lim);
	check_tree(t, deep.len);
	check_summary(t, deep.data);
	CHECK(t->count == MIME_MAX_DEPTH_CEILING + 1);
	round_trip(t);
	mime_tree_free(&t);
	buf_free(&deep);
	free(msg);

	/* part count */
	CHECK(fs_read_file(CORPUS "/03-mixed-attach.eml", 1 << 20, &msg, &len) == 0);
	mime_limits_default(&lim);
	lim.max_parts = 2;
	t = mime_tree_parse(msg, len, &lim);
	check_tree(t, len);
	CHECK(t->count == 2 && (t->parts[0].flags & MIME_PART_COUNT_LIMIT));
	CHECK(t->parts[0].flags & MIME_PART_MULTIPART);
	round_trip(t);
	mime_tree_free(&t);
	lim.max_parts = 1;
	t = mime_tree_parse(msg, len, &lim);
	CHECK(t->count == 1 && t->parts[0].flags == MIME_PART_COUNT_LIMIT);
	mime_tree_free(&t);
	free(msg);
	/* 100000 empty parts against the default limit */
	buf many;
	buf_init(&many, 0);
	buf_puts(&many, "Content-Type: multipart/mixed; boundary=x\n\n");
	for (int i = 0; i < 100000; i++)
		buf_puts(&many, "--x\n");
	mime_limits_default(&lim);
	t = mime_tree_parse(many.data, many.len, &lim);
	check_tree(t, many.len);
	check_summary(t, many.data);
	CHECK(t->count == lim.max_parts);
	mime_tree_free(&t);
	buf_free(&many);

	/* header size and field count: the rest of the header is skipped, the body found */
	buf h;
	buf_init(&h, 0);
	for (int i = 0; i < 100; i++)
		buf_printf(&h, "X-%d: %s\r\n", i, "0123456789");
	buf_puts(&h, "Content-Type: text/html\r\n\r\nbody");
	mime_limits_default(&lim);
	lim.max_header_size = 500;
	t = mime_tree_parse(h.data, h.len, &lim);
	check_tree(t, h.len);
	check_summary(t, h.data);
	CHECK(t->parts[0].flags & MIME_PART_HEADER_LIMIT);
	CHECK_STREQ(t->parts[0].subtype, "plain");	/* Content-Type was past the limit */
	CHECK(t->parts[0].body_size == 4);
	mime_tree_free(&t);
	mime_limits_default(&lim);
	lim.max_header_fields = 10;
	t = mime_tree_parse(h.data, h.len, &lim);
	CHECK(t->parts[0].flags & MIME_PART_HEADER_LIMIT);
	CHECK(t->parts[0].body_size == 4);
	mime_tree_free(&t);
	mime_limits_default(&lim);
	t = mime_tree_parse(h.data, h.len, &lim);
	CHECK(t->parts[0].flags == 0);
	CHECK_STREQ(t->parts[0].subtype, "html");
	mime_tree_free(&t);
	buf_free(&h);
	/* parameters */
	buf_init(&h, 0);
	buf_puts(&h, "Content-Type: text/plain");
	for (int i = 0; i < 200; i++)
		buf_printf(&h, "; p%d=%d", i, i);
	buf_puts(&h, "\n\nx");
	t = mime_tree_parse(h.data, h.len, NULL);
	CHECK(t->parts[0].flags & MIME_PART_PARAM_LIMIT);
	CHECK(t->parts[0].nparams == 64);
	round_trip(t);
	mime_tree_free(&t);
	buf_free(&h);
}

static uint32_t rng_state = 12345;
static uint32_t rng(void)
{
	rng_state = rng_state * 1103515245u + 12345u;
	return rng_state >> 8;
}

static void test_nasty(void)
{
	/* 2 MB of headers (one endless folded field, then many fields) */
	buf big;
	buf_init(&big, 0);
	buf_puts(&big, "Subject: start");
	while (big.len < 1024 * 1024)
		buf_puts(&big, "\r\n folded again and again");
	buf_puts(&big, "\r\n");
	while (big.len < 2 * 1024 * 1024)
		buf_puts(&big, "X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
	buf_puts(&big, "Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n");
	struct mime_tree *t = mime_tree_parse(big.data, big.len, NULL);
	check_tree(t, big.len);
	CHECK(t->count == 1 && (t->parts[0].flags & MIME_PART_HEADER_LIMIT));
	CHECK(t->parts[0].body_size == strlen("--q\r\n\r\nx\r\n--q--\r\n"));
	round_trip(t);
	mime_tree_free(&t);
	/* the same without any blank line: all header */
	big.len -= strlen("Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nx\r\n--q--\r\n");
	t = mime_tree_parse(big.data, big.len, NULL);
	check_tree(t, big.len);
	CHECK(t->parts[0].header_size == big.len && t->parts[0].body_size == 0);
	mime_tree_free(&t);
	buf_free(&big);

	/* NULs everywhere */
	static const char nul[] = "Content-Type: multipart/mixed; bound\0ary=a\0\n\n--a\0\n\0\n--a--\n";
	t = mime_tree_parse(nul, sizeof(nul) - 1, NULL);
	check_tree(t, sizeof(nul) - 1);
	round_trip(t);
	mime_tree_free(&t);
	static const char nul2[] = "Content-Type: multipart/mixed; boundary=a\n\n--a\nContent-Type: te\0xt/plain\n\n\0\0\n--a--\n";
	t = mime_tree_parse(nul2, sizeof(nul2) - 1, NULL);
	check_tree(t, sizeof(nul2) - 1);
	CHECK(t->count == 2);
	round_trip(t);
	mime_tree_free(&t);

	/* random garbage and random mutations of a real message */
	char *msg;
	size_t len;
	CHECK(fs_read_file(CORPUS "/04-nested-rfc822.eml", 1 << 20, &msg, &len) == 0);
	char *m = xmalloc(len);
	static const char alphabet[] = "-\r\n:;=\" \tab\x80\xff\0";
	for (int round = 0; round < 3000; round++) {
		memcpy(m, msg, len);
		int flips = 1 + (int)(rng() % 8);
		for (int k = 0; k < flips; k++)
			m[rng() % len] = alphabet[rng() % (sizeof(alphabet) - 1)];
		t = mime_tree_parse(m, len, NULL);
		check_tree(t, len);
		check_summary(t, m);
		round_trip(t);
		mime_tree_free(&t);
	}
	for (int round = 0; round < 300; round++) {
		size_t n = rng() % 2000;
		for (size_t k = 0; k < n; k++)
			m[k % len] = (char)rng();
		t = mime_tree_parse(m, n < len ? n : len, NULL);
		check_tree(t, n < len ? n : len);
		check_summary(t, m);
		mime_tree_free(&t);
	}
	free(m);
	free(msg);
}

static void test_serial_corrupt(void)
{
	char *msg;
	size_t len;
	CHECK(fs_read_file(CORPUS "/04-nested-rfc822.eml", 1 << 20, &msg, &len) == 0);
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	buf a;
	buf_init(&a, 0);
	CHECK(mime_tree_serialize(t, &a) == 0);
	const char *err;
	/* every truncation fails */
	for (size_t n = 0; n < a.len; n++) {
		err = NULL;
		CHECK(mime_tree_deserialize(a.data, n, len, 0, &err) == NULL);
		CHECK(err != NULL);
	}
	/* trailing bytes */
	char *longer = xmalloc(a.len + 1);
	memcpy(longer, a.data, a.len);
	longer[a.len] = 0;
	CHECK(mime_tree_deserialize(longer, a.len + 1, len, 0, &err) == NULL);
	CHECK_STREQ(err, "trailing bytes");
	free(longer);
	/* version and magic; version 1 (before the summary) is refused: the store parses the
	 * message again */
	a.data[3] = 3;
	CHECK(mime_tree_deserialize(a.data, a.len, len, 0, &err) == NULL);
	CHECK_STREQ(err, "unknown MIME tree version");
	a.data[3] = 1;
	CHECK(mime_tree_deserialize(a.data, a.len, len, 0, &err) == NULL);
	CHECK_STREQ(err, "unknown MIME tree version");
	a.data[3] = 2;
	/* part limit */
	CHECK(mime_tree_deserialize(a.data, a.len, len, 3, &err) == NULL);
	CHECK_STREQ(err, "bad part count");
	/* every byte changed to several values: refused, or a tree that keeps the promises */
	char *c = xmalloc(a.len);
	static const unsigned char vals[] = { 0, 1, 2, 3, 0x7f, 0x80, 0xff, 'a' };
	unsigned accepted = 0;
	for (size_t i = 0; i < a.len; i++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(c, a.data, a.len);
			if ((unsigned char)c[i] == vals[v])
				continue;
			c[i] = (char)vals[v];
			struct mime_tree *t2 = mime_tree_deserialize(c, a.len, len, 0, &err);
			if (t2) {
				accepted++;
				check_tree(t2, len);
				round_trip(t2);
				mime_tree_free(&t2);
			}
		}
	}
	CHECK(accepted > 0);	/* string bytes and counts can change harmlessly */
	free(c);
	/* hand-made hostile blobs */
	static const struct {
		const char *blob;
		size_t len;
		const char *err;
	} bad[] = {
		{ "XYZ\2", 4, "not a MIME tree" },
		{ "TMT\2\x05\xff\xff\xff\xff\x0f", 10, "bad count" },
		{ "TMT\2\x05\x00", 6, "bad part count" },
		{ "TMT\2\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 15, "number too long" },
		{ "TMT\2\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 14, "number overflow" },
		/* a one-part tree of a 5-byte message whose 1-byte header holds a 2-byte summary */
		{ "TMT\2\x05\x01\x00\x00\x00\x01\x04\x00\x00\x01\x04text\x05plain\x00"
		  "\x00\x00\x00\x00\x00\x00\x00\x00\x03" "ab", 37, "bad summary length" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK(mime_tree_deserialize(bad[i].blob, bad[i].len, 5, 0, &err) == NULL);
		CHECK_STREQ(err, bad[i].err);
	}
	buf_free(&a);
	mime_tree_free(&t);
	free(msg);
}

/* test_summary - the fields kept for ENVELOPE and SEARCH without the file (tree.h) */
static void test_summary(void)
{
	for (size_t i = 0; i < sizeof(summary_names) / sizeof(summary_names[0]); i++) {
		CHECK(mime_summary_field(summary_names[i], strlen(summary_names[i])));
		char *lower = xstrdup(summary_names[i]);
		for (char *q = lower; *q; q++)
			*q = (char)(*q >= 'A' && *q <= 'Z' ? *q + 32 : *q);
		CHECK(mime_summary_field(lower, strlen(lower)));
		free(lower);
	}
	static const char *const not[] = { "Received", "X-Subject", "Subjec", "Subjects",
					   "Content-Type", "References", "" };
	for (size_t i = 0; i < sizeof(not) / sizeof(not[0]); i++)
		CHECK(!mime_summary_field(not[i], strlen(not[i])));
	CHECK(mime_summary_field("Date: x", 4));	/* the length counts, not a NUL */

	static const struct {
		const char *msg;
		const char *summary;	/* NULL: none */
	} cases[] = {
		{ "Received: x\r\nFrom: a@b\r\nSubject: hi\r\n there\r\nX-A: 1\r\nTo: c@d\r\n\r\nbody\r\n",
		  "From: a@b\r\nSubject: hi\r\n there\r\nTo: c@d\r\n" },
		/* repeated fields, odd case, blanks before the colon: all kept, in order */
		{ "SUBJECT: one\r\nsubject : two\r\nCC: x\r\n\r\n",
		  "SUBJECT: one\r\nsubject : two\r\nCC: x\r\n" },
		/* a line without a colon (an mbox From_ line) is not a field */
		{ "From someone Mon Jan  1\r\nDate: 1 Jan 2024\r\n\r\n", "Date: 1 Jan 2024\r\n" },
		{ "From: a\nTo: b\n\nbody", "From: a\nTo: b\n" },
		{ "X-Only: 1\r\n\r\nbody", "" },
		{ "", "" },
		/* all header: the last field has no line end */
		{ "Subject: x", NULL },
		{ "Subject: x\r", NULL },
		{ "From: a\r\nX-B: y", "From: a\r\n" },
		/* an enclosed message's header is not the message's */
		{ "Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n", "" },
		{ "Message-ID: <1@x>\r\nIn-Reply-To: <0@x>\r\nReply-To: r@x\r\nSender: s@x\r\nBcc: b@x\r\n\r\n",
		  "Message-ID: <1@x>\r\nIn-Reply-To: <0@x>\r\nReply-To: r@x\r\nSender: s@x\r\nBcc: b@x\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mime_tree *t = parse_str(cases[i].msg, NULL);
		if (cases[i].summary == NULL) {
			CHECK(t->summary == NULL);
		} else {
			CHECK(t->summary != NULL);
			if (t->summary != NULL)
				CHECK_STREQ(t->summary, cases[i].summary);
			CHECK(t->summary_len == strlen(cases[i].summary));
		}
		round_trip(t);
		mime_tree_free(&t);
	}
	/* NULs are kept (the serialised form carries them) */
	static const char nul[] = "Subject: a\0b\r\nX: y\r\n\r\nbody";
	struct mime_tree *t = mime_tree_parse(nul, sizeof(nul) - 1, NULL);
	CHECK(t->summary != NULL && t->summary_len == 14 && memcmp(t->summary, nul, 14) == 0);
	check_summary(t, nul);
	round_trip(t);
	mime_tree_free(&t);
	/* a header over MIME_SUMMARY_MAX_HEADER bytes or MIME_SUMMARY_MAX_FIELDS fields, or
	 * one cut by the tree's limits: no summary */
	buf big;
	buf_init(&big, 0);
	buf_puts(&big, "Subject: s\r\nX-Pad: ");
	while (big.len < MIME_SUMMARY_MAX_HEADER)
		buf_puts(&big, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	buf_puts(&big, "\r\n\r\nbody");
	t = mime_tree_parse(big.data, big.len, NULL);
	CHECK(t->summary == NULL);
	mime_tree_free(&t);
	buf_reset(&big);
	for (int i = 0; i <= MIME_SUMMARY_MAX_FIELDS; i++)
		buf_printf(&big, "X-%d: 1\r\n", i);
	buf_puts(&big, "Subject: s\r\n\r\n");
	t = mime_tree_parse(big.data, big.len, NULL);
	CHECK(t->summary == NULL && !(t->parts[0].flags & MIME_PART_HEADER_LIMIT));
	mime_tree_free(&t);
	buf_reset(&big);
	for (int i = 0; i < MIME_SUMMARY_MAX_FIELDS - 1; i++)
		buf_printf(&big, "X-%d: 1\r\n", i);
	buf_puts(&big, "Subject: s\r\n\r\n");
	t = mime_tree_parse(big.data, big.len, NULL);
	CHECK(t->summary != NULL && t->summary != NULL && strcmp(t->summary, "Subject: s\r\n") == 0);
	check_summary(t, big.data);
	mime_tree_free(&t);
	buf_free(&big);
	struct mime_limits lim;
	mime_limits_default(&lim);
	lim.max_header_fields = 2;
	t = parse_str("From: a\r\nTo: b\r\nSubject: c\r\n\r\n", &lim);
	CHECK((t->parts[0].flags & MIME_PART_HEADER_LIMIT) && t->summary == NULL);
	mime_tree_free(&t);
}

TEST_MAIN(TEST(test_corpus), TEST(test_fields), TEST(test_boundaries), TEST(test_limits),
	  TEST(test_nasty), TEST(test_serial_corrupt), TEST(test_summary))
