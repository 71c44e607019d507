/* fuzz_imap_parser - libFuzzer target for imap/parser.c.
 * The input is fed to the command reader whole, one byte at a time, and split at a point
 * taken from its first byte, with small limits so that every limit is reached; the three
 * event traces (results, tags, argument shapes) must agree, and every argument must obey
 * the contract. The input also goes through imap_seqset_parse, and through the modified
 * UTF-7 decoder: what it accepts must encode back to the same bytes (canonical form), and
 * what the encoder makes of valid UTF-8 must decode back. As a FETCH item it goes through
 * imap_section_parse; a section it accepts must name and resolve within a sample message.
 * Every command read is also taken as a SEARCH program and, when valid, matched against
 * the sample message.
 * Any disagreement aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "imap/mutf7.h"
#include "imap/parser.h"
#include "imap/search.h"
#include "imap/section.h"
#include "mime/tree.h"
#include "lib/buf.h"

static const char sample[] =
	"From: =?utf-8?q?J=C3=B6rg?= <j@x>\r\nDate: Mon, 1 Jan 2024 00:30:00 +0100\r\n"
	"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
	"Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZQ==\r\n--b\r\n"
	"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n\r\ntwo\r\n--b--\r\n";

/* search_sample - the command's arguments as a SEARCH program, matched against sample */
static void search_sample(const struct imap_command *c)
{
	struct imap_search_key *k;
	const char *err;
	if (imap_search_parse(c->args, c->n_args, &k, &err) < 0) {
		FUZZ_ASSERT(err != NULL);
		return;
	}
	struct mime_tree *t = mime_tree_parse(sample, sizeof(sample) - 1, NULL);
	struct imap_search_msg m = { .seq = 1, .uid = 5, .keywords = "a b", .size = 10,
				     .data = sample, .len = sizeof(sample) - 1, .tree = t };
	uint32_t saved[] = { 5 };
	struct imap_search_ctx ctx = { .max_seq = 3, .max_uid = 9, .saved_uids = saved,
				       .n_saved = 1 };
	(void)imap_search_match(k, &m, &ctx);
	(void)imap_search_needs(k);
	mime_tree_free(&t);
	imap_search_free(&k);
}

static const struct imap_parser_limits fuzz_limits = {
	.max_line = 200,
	.max_inline_literal = 16,
	.max_literal_total = 40,
	.max_literal = 64,
	.max_depth = 4,
	.max_args = 24,
};

/* trace_args - append the shape of the arguments, checking the contract */
static void trace_args(buf *t, const struct imap_arg *a, size_t n, size_t depth)
{
	FUZZ_ASSERT(depth <= fuzz_limits.max_depth);
	for (size_t i = 0; i < n; i++) {
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_QUOTED:
			FUZZ_ASSERT(a[i].str != NULL && strlen(a[i].str) == a[i].len);
			FUZZ_ASSERT(a[i].len <= fuzz_limits.max_line);
			if (a[i].type == IMAP_ARG_ATOM)
				FUZZ_ASSERT(a[i].len > 0);
			buf_printf(t, "%c%zu:", a[i].type == IMAP_ARG_ATOM ? 'a' : 'q', a[i].len);
			buf_append(t, a[i].str, a[i].len);
			break;
		case IMAP_ARG_LITERAL:
			if (a[i].streamed) {
				FUZZ_ASSERT(a[i].str == NULL && depth == 0);
				FUZZ_ASSERT(a[i].stream_size > fuzz_limits.max_inline_literal &&
					    a[i].stream_size <= fuzz_limits.max_literal);
				buf_printf(t, "s%llu", (unsigned long long)a[i].stream_size);
				break;
			}
			FUZZ_ASSERT(a[i].len <= fuzz_limits.max_inline_literal);
			if (!a[i].literal8)
				FUZZ_ASSERT(memchr(a[i].str, '\0', a[i].len) == NULL);
			buf_printf(t, "l%zu:", a[i].len);
			buf_append(t, a[i].str, a[i].len);
			break;
		case IMAP_ARG_LIST:
			buf_putc(t, '(');
			trace_args(t, a[i].list, a[i].n_list, depth + 1);
			buf_putc(t, ')');
			break;
		}
		buf_putc(t, ' ');
	}
}

/* run - feed in pieces of at most step bytes (0: all); a streamed literal is accepted when
 * its size is even and skipped by the "session" itself */
static void run(const uint8_t *data, size_t size, size_t step, buf *t)
{
	struct imap_parser *p = imap_parser_new(&fuzz_limits);
	size_t pos = 0;
	uint64_t stream_left = 0;
	while (pos < size) {
		size_t n = step == 0 || step > size - pos ? size - pos : step;
		if (stream_left > 0) {
			size_t take = n < stream_left ? n : (size_t)stream_left;
			pos += take;
			stream_left -= take;
			if (stream_left == 0)
				imap_parser_stream_done(p);
			continue;
		}
		size_t used;
		enum imap_parse_result r = imap_parser_feed(p, data + pos, n, &used);
		FUZZ_ASSERT(used <= n);
		pos += used;
		const struct imap_command *c = imap_parser_command(p);
		switch (r) {
		case IMAP_PARSE_MORE:
			FUZZ_ASSERT(used == n);
			break;
		case IMAP_PARSE_COMMAND:
			FUZZ_ASSERT(c->tag != NULL && c->name != NULL && c->tag[0] && c->name[0]);
			buf_printf(t, "C %s %s ", c->tag, c->name);
			trace_args(t, c->args, c->n_args, 0);
			buf_putc(t, '\n');
			if (step == 0)
				search_sample(c);
			imap_parser_reset(p);
			break;
		case IMAP_PARSE_CONTINUE:
			buf_puts(t, "+\n");
			break;
		case IMAP_PARSE_LITERAL_STREAM: {
			uint64_t ls = imap_parser_literal_size(p);
			FUZZ_ASSERT(ls > fuzz_limits.max_inline_literal && ls <= fuzz_limits.max_literal);
			buf_printf(t, "S %llu\n", (unsigned long long)ls);
			if (ls % 2 == 0) {
				stream_left = ls;
			} else {
				imap_parser_stream_reject(p);
			}
			break;
		}
		case IMAP_PARSE_ERROR:
			buf_printf(t, "E %s %s\n", imap_parser_error_tag(p) ? imap_parser_error_tag(p)
									      : "*",
				   imap_parser_error(p));
			if (imap_parser_fatal(p))
				pos = size;
			break;
		}
	}
	imap_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	buf whole, bytes, split;
	buf_init(&whole, 0);
	buf_init(&bytes, 0);
	buf_init(&split, 0);
	run(data, size, 0, &whole);
	run(data, size, 1, &bytes);
	run(data, size, size > 0 ? (size_t)data[0] % 17 + 1 : 1, &split);
	FUZZ_ASSERT(whole.len == bytes.len && whole.len == split.len);
	FUZZ_ASSERT(whole.len == 0 || (memcmp(whole.data, bytes.data, whole.len) == 0 &&
				       memcmp(whole.data, split.data, whole.len) == 0));
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&split);

	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct imap_seqset set;
	const char *err;
	if (imap_seqset_parse(s, 8, &set, &err) == 0) {
		FUZZ_ASSERT(set.saved ? set.n == 0 : set.n >= 1 && set.n <= 8);
		for (size_t i = 0; i < set.n; i++)
			FUZZ_ASSERT(set.ranges[i].first >= 1 &&
				    set.ranges[i].first <= set.ranges[i].last);
		imap_seqset_free(&set);
	}
	buf u, m;
	buf_init(&u, 0);
	buf_init(&m, 0);
	if (imap_mutf7_to_utf8(s, &u) == 0) {
		FUZZ_ASSERT(imap_utf8_to_mutf7(buf_cstr(&u), &m) == 0);
		FUZZ_ASSERT(strcmp(buf_cstr(&m), s) == 0);
	}
	buf_reset(&u);
	buf_reset(&m);
	if (imap_utf8_to_mutf7(s, &m) == 0) {
		FUZZ_ASSERT(imap_mutf7_to_utf8(buf_cstr(&m), &u) == 0);
		FUZZ_ASSERT(strcmp(buf_cstr(&u), s) == 0);
	}
	buf_free(&u);
	buf_free(&m);

	struct imap_section sec;
	if (imap_section_parse(s, &sec, &err) == 1) {
		buf name;
		buf_init(&name, 0);
		FUZZ_ASSERT(imap_section_name(&sec, &name) == 0 && name.len > 0);
		buf_free(&name);
		struct mime_tree *t = mime_tree_parse(sample, sizeof(sample) - 1, NULL);
		struct imap_section_range r;
		imap_section_resolve(&sec, t, &r);
		if (r.kind != IMAP_SECTION_EMPTY)
			FUZZ_ASSERT(r.offset + r.size <= sizeof(sample) - 1);
		uint64_t start, n;
		imap_partial(&sec, r.size, &start, &n);
		FUZZ_ASSERT(start + n <= r.size);
		mime_tree_free(&t);
		imap_section_free(&sec);
	}
	free(s);
	return 0;
}
