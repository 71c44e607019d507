/* fuzz_imap_fetch - libFuzzer target for what IMAP FETCH and SEARCH make of a message and
 * of item arguments: imap/bodystructure.c, imap/section.c, imap/datetime.c, the date and
 * fold helpers of imap/search.c.
 * Input: a first line (up to LF) and a message (the rest).
 * - ENVELOPE, BODY and BODYSTRUCTURE of the message (UTF-8 allowed or not) must each be
 *   one well-formed parenthesised list in the response syntax: quoted strings 7-bit unless
 *   UTF-8 is allowed, no CR, LF or NUL outside literals, no NUL in literals.
 * - The first line as a FETCH item: a section that parses must name itself, resolve inside
 *   the message, and a HEADER.FIELDS(.NOT) filter must give a subset of the header block.
 * - The first line as an IMAP date-time: a parsed time must print and parse back to itself;
 *   as a SEARCH date; through imap_search_fold (valid UTF-8 out). */
#include <string.h>

#include "fuzz.h"
#include "imap/bodystructure.h"
#include "imap/datetime.h"
#include "imap/search.h"
#include "imap/section.h"
#include "lib/utf8.h"
#include "mime/header.h"
#include "mime/tree.h"

/* A reader of the response syntax FETCH items use (RFC 9051 §9): lists of quoted strings,
 * literals, atoms (NIL, numbers) and lists, separated by one SP; in a body-type-mpart the
 * parts follow each other without one (")("). pos moves past what was read; false on
 * anything malformed. */
struct rd {
	const char *s;
	size_t len, pos;
	bool utf8;
	int depth;
};

static bool rd_value(struct rd *r);

static bool rd_list(struct rd *r)
{
	if (r->pos >= r->len || r->s[r->pos] != '(' || ++r->depth > 1000)
		return false;
	r->pos++;
	bool first = true;
	while (r->pos < r->len && r->s[r->pos] != ')') {
		if (!first) {
			if (r->s[r->pos] == ' ')
				r->pos++;
			else if (!(r->s[r->pos] == '(' && r->s[r->pos - 1] == ')'))
				return false;
		}
		if (!rd_value(r))
			return false;
		first = false;
	}
	if (r->pos >= r->len)
		return false;
	r->pos++;
	r->depth--;
	return true;
}

static bool rd_value(struct rd *r)
{
	if (r->pos >= r->len)
		return false;
	char c = r->s[r->pos];
	if (c == '(')
		return rd_list(r);
	if (c == '"') {
		for (r->pos++; r->pos < r->len; r->pos++) {
			unsigned char q = (unsigned char)r->s[r->pos];
			if (q == '"') {
				r->pos++;
				return true;
			}
			if (q == '\\') {
				r->pos++;
				if (r->pos >= r->len || (r->s[r->pos] != '"' && r->s[r->pos] != '\\'))
					return false;
				continue;
			}
			if (q == '\r' || q == '\n' || q == '\0' || (q >= 0x80 && !r->utf8))
				return false;
		}
		return false;
	}
	if (c == '{') {
		char *end;
		unsigned long n = strtoul(r->s + r->pos + 1, &end, 10);
		if ((size_t)(end - r->s) + 3 > r->len || end[0] != '}' || end[1] != '\r' ||
		    end[2] != '\n')
			return false;
		size_t at = (size_t)(end - r->s) + 3;
		if (n > r->len - at || memchr(r->s + at, '\0', n) != NULL)
			return false;
		r->pos = at + n;
		return true;
	}
	/* an atom: NIL or a number */
	size_t start = r->pos;
	while (r->pos < r->len) {
		unsigned char a = (unsigned char)r->s[r->pos];
		if (a <= ' ' || a >= 0x7f || strchr("(){%*\"\\]", a) != NULL)
			break;
		r->pos++;
	}
	return r->pos > start;
}

/* check_list - item is exactly one well-formed list */
static void check_list(const buf *item, bool utf8)
{
	struct rd r = { item->data, item->len, 0, utf8, 0 };
	bool ok = rd_list(&r);
	if (!ok || r.pos != item->len)
		fprintf(stderr, "malformed at %zu of %zu: %.*s\n", r.pos, item->len, (int)item->len,
			item->data);
	FUZZ_ASSERT(ok && r.pos == item->len);
}

static void check_message(const char *msg, size_t len)
{
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	buf out;
	buf_init(&out, 0);
	for (int utf8 = 0; utf8 <= 1; utf8++) {
		buf_reset(&out);
		FUZZ_ASSERT(imap_envelope_write(&out, msg, t->parts[0].header_size, utf8) == 0);
		check_list(&out, utf8);
		for (int ext = 0; ext <= 1; ext++) {
			buf_reset(&out);
			FUZZ_ASSERT(imap_bodystructure_write(&out, t, msg, len, ext, utf8) == 0);
			check_list(&out, utf8);
		}
	}
	buf_free(&out);
	mime_tree_free(&t);
}

static void check_section(const char *item, const char *msg, size_t len)
{
	struct imap_section sec;
	const char *err = NULL;
	int r = imap_section_parse(item, &sec, &err);
	if (r < 0)
		FUZZ_ASSERT(err != NULL);
	if (r != 1)
		return;
	buf name;
	buf_init(&name, 0);
	FUZZ_ASSERT(imap_section_name(&sec, &name) == 0 && name.len > 0);
	FUZZ_ASSERT(sec.n_part <= IMAP_SECTION_MAX_PARTS && sec.n_fields <= IMAP_SECTION_MAX_FIELDS);
	struct mime_tree *t = mime_tree_parse(msg, len, NULL);
	struct imap_section_range rg;
	imap_section_resolve(&sec, t, &rg);
	if (rg.kind != IMAP_SECTION_EMPTY) {
		FUZZ_ASSERT(rg.offset <= len && rg.size <= len - rg.offset);
		if (rg.kind == IMAP_SECTION_FILTER) {
			FUZZ_ASSERT(sec.text == IMAP_SECTION_HEADER_FIELDS ||
				    sec.text == IMAP_SECTION_HEADER_FIELDS_NOT);
			buf f;
			buf_init(&f, 0);
			FUZZ_ASSERT(imap_header_filter(&sec, msg + rg.offset, (size_t)rg.size, &f) == 0);
			FUZZ_ASSERT(f.len <= rg.size);
			buf_free(&f);
		}
	}
	uint64_t start, n;
	imap_partial(&sec, rg.size, &start, &n);
	FUZZ_ASSERT(start <= rg.size && n <= rg.size - start);
	if (sec.partial)
		FUZZ_ASSERT(n <= sec.length);
	mime_tree_free(&t);
	imap_section_free(&sec);
	buf_free(&name);
}

static void check_dates(const char *s)
{
	int64_t t;
	if (imap_datetime_parse(s, &t) == 0) {
		buf out;
		buf_init(&out, 0);
		FUZZ_ASSERT(imap_datetime_append(&out, t) == 0);
		FUZZ_ASSERT(out.len == 28 && out.data[0] == '"' && out.data[27] == '"');
		out.data[27] = '\0';
		int64_t t2;
		FUZZ_ASSERT(imap_datetime_parse(out.data + 1, &t2) == 0 && t2 == t);
		buf_free(&out);
	}
	int64_t day;
	if (imap_date_parse(s, &day) == 0)
		FUZZ_ASSERT(day > -800000 && day < 4000000);
	buf f;
	buf_init(&f, 0);
	imap_search_fold(s, strlen(s), &f);
	FUZZ_ASSERT(utf8_valid(f.data ? f.data : "", f.len));
	buf_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	const char *nl = memchr(s, '\n', size);
	size_t ilen = nl ? (size_t)(nl - s) : size;
	char *item = malloc(ilen + 1);
	memcpy(item, s, ilen);
	item[ilen] = '\0';
	const char *msg = nl ? nl + 1 : s + size;
	size_t mlen = size - (size_t)(msg - s);

	check_dates(item);
	check_section(item, msg, mlen);
	check_message(msg, mlen);
	free(item);
	return 0;
}
