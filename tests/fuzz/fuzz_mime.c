/* fuzz_mime - libFuzzer target for mime/: the full tree parse (default and tiny limits)
 * with its structural promises checked (the summary gives every summary field the values
 * the whole header gives), the serialise -> deserialise -> serialise round
 * trip (bytes must agree), the deserialiser on the raw input as a corrupt blob, and every
 * field parser (headers whole vs. byte at a time, addresses, dates, encoded words,
 * Content-Type, base64, quoted-printable). Any broken promise aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lib/buf.h"
#include "mime/mime.h"
#include "../unit/summary_check.h"

static void check_tree(const struct mime_tree *t, uint64_t len, const struct mime_limits *lim)
{
	FUZZ_ASSERT(t->count >= 1 && t->msg_size == len);
	if (lim)
		FUZZ_ASSERT(t->count <= lim->max_parts || lim->max_parts == 0);
	FUZZ_ASSERT(t->parts[0].header_offset == 0);
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		FUZZ_ASSERT(p->type && p->subtype);
		FUZZ_ASSERT(p->body_offset == p->header_offset + p->header_size);
		FUZZ_ASSERT(p->body_offset + p->body_size <= len);
		FUZZ_ASSERT(p->body_bare_lf <= p->body_lines && p->body_lines <= p->body_size);
		if (lim)
			FUZZ_ASSERT(p->depth <= lim->max_depth);
		uint32_t n = 0, prev = MIME_NO_PART;
		for (uint32_t c = p->first_child; c != MIME_NO_PART; c = t->parts[c].next_sibling) {
			FUZZ_ASSERT(c > i && c < t->count && t->parts[c].parent == i);
			const struct mime_part *ch = &t->parts[c];
			FUZZ_ASSERT(ch->header_offset >= p->body_offset);
			FUZZ_ASSERT(ch->body_offset + ch->body_size <= p->body_offset + p->body_size);
			if (prev != MIME_NO_PART)
				FUZZ_ASSERT(ch->header_offset >=
					    t->parts[prev].body_offset + t->parts[prev].body_size);
			prev = c;
			n++;
		}
		FUZZ_ASSERT(n == p->nchildren);
		if (p->flags & MIME_PART_MESSAGE)
			FUZZ_ASSERT(n == 1);
		else if (p->flags & MIME_PART_MULTIPART)
			FUZZ_ASSERT(n >= 1);
		else
			FUZZ_ASSERT(n == 0);
	}
}

static void round_trip(const struct mime_tree *t)
{
	buf a, b;
	buf_init(&a, 0);
	buf_init(&b, 0);
	FUZZ_ASSERT(mime_tree_serialize(t, &a) == 0);
	const char *err = NULL;
	struct mime_tree *t2 = mime_tree_deserialize(a.data, a.len, t->msg_size, 0, &err);
	if (t2 == NULL)
		fprintf(stderr, "deserialize: %s\n", err);
	FUZZ_ASSERT(t2 != NULL);
	check_tree(t2, t->msg_size, NULL);
	FUZZ_ASSERT(mime_tree_serialize(t2, &b) == 0);
	FUZZ_ASSERT(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	mime_tree_free(&t2);
	buf_free(&a);
	buf_free(&b);
}

static void fields(const char *s, size_t n)
{
	buf out;
	buf_init(&out, 0);
	mime_encword_decode(s, n, &out);
	buf_reset(&out);
	mime_base64_decode(s, n, &out);
	buf_reset(&out);
	mime_qp_decode(s, n, n & 1, &out);
	buf_free(&out);

	struct mime_address *l;
	unsigned cnt;
	mime_address_list_parse(s, n, 50, &l, &cnt);
	FUZZ_ASSERT(cnt <= 50);
	for (unsigned i = 0; i < cnt; i++)
		FUZZ_ASSERT(l[i].kind != MIME_ADDR_MAILBOX || l[i].mailbox != NULL);
	mime_address_list_free(&l, cnt);

	time_t t;
	int tz;
	if (mime_date_parse(s, n, &t, &tz) == 0)
		FUZZ_ASSERT(tz >= -24 * 60 && tz <= 24 * 60);

	struct mime_content c;
	mime_content_parse(s, n, true, 8, &c);
	FUZZ_ASSERT(c.nparams <= 8);
	mime_content_free(&c);

	/* headers: whole and byte at a time agree */
	if (n <= 4096) {
		struct mime_header_limits lim = { 2048, 20 };
		struct mime_headers h1, h2;
		const char *err;
		mime_headers_init(&h1);
		mime_headers_init(&h2);
		int r1 = mime_headers_parse(&h1, s, n, true, &lim, &err);
		int r2 = 0;
		for (size_t k = 0; k <= n && r2 == 0; k++)
			r2 = mime_headers_parse(&h2, s, k, k == n, &lim, &err);
		FUZZ_ASSERT(r1 == r2);
		if (r1 == 1) {
			FUZZ_ASSERT(h1.size == h2.size && h1.count == h2.count);
			FUZZ_ASSERT(h1.size == mime_header_block_end(s, n, NULL));
			FUZZ_ASSERT(h1.count == 0 ||
				    memcmp(h1.fields, h2.fields, h1.count * sizeof(*h1.fields)) == 0);
		}
		mime_headers_free(&h1);
		mime_headers_free(&h2);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct mime_tree *t = mime_tree_parse(s, size, NULL);
	struct mime_limits def;
	mime_limits_default(&def);
	check_tree(t, size, &def);
	FUZZ_ASSERT(summary_faithful(t, s));
	round_trip(t);
	mime_tree_free(&t);

	if (size > 0) {
		/* tiny limits chosen by the first byte */
		struct mime_limits lim = { data[0] & 7, 1 + (data[0] >> 3 & 7), 64 + data[0] * 4,
					   1 + (data[0] & 15), 1 + (data[0] >> 4) };
		t = mime_tree_parse(s + 1, size - 1, &lim);
		check_tree(t, size - 1, &lim);
		FUZZ_ASSERT(summary_faithful(t, s + 1));
		round_trip(t);
		mime_tree_free(&t);
	}

	/* the input as a (corrupt) serialised tree */
	const char *err = NULL;
	for (uint64_t msg_size = 0; msg_size < 3; msg_size++) {
		uint64_t ms = msg_size == 2 ? 1u << 20 : msg_size * 100;
		t = mime_tree_deserialize(data, size, ms, 0, &err);
		if (t) {
			check_tree(t, ms, NULL);
			round_trip(t);
			mime_tree_free(&t);
		} else {
			FUZZ_ASSERT(err != NULL);
		}
	}
	fields(s, size);
	return 0;
}
