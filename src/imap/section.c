/* imap/section - FETCH sections: parse, resolve, filter (see section.h) */
#include "imap/section.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/strnum.h"
#include "lib/xmalloc.h"
#include "mime/header.h"
#include "mime/tree.h"

static const struct {
	const char *prefix;
	enum imap_section_item item;
} items[] = {
	{ "BODY.PEEK[", IMAP_ITEM_BODY_PEEK },	 { "BODY[", IMAP_ITEM_BODY },
	{ "BINARY.PEEK[", IMAP_ITEM_BINARY_PEEK }, { "BINARY.SIZE[", IMAP_ITEM_BINARY_SIZE },
	{ "BINARY[", IMAP_ITEM_BINARY },
};

void imap_section_free(struct imap_section *sec)
{
	for (size_t i = 0; i < sec->n_fields; i++)
		free(sec->fields[i]);
	free(sec->fields);
	memset(sec, 0, sizeof(*sec));
}

/* parse_fields - " (name name ...)" after HEADER.FIELDS[.NOT]: names are atoms or quoted
 * strings of printable ASCII other than ':' (RFC 5322 field names) */
static int parse_fields(const char **sp, struct imap_section *sec)
{
	const char *s = *sp;
	if (*s++ != ' ' || *s++ != '(')
		return -1;
	for (;;) {
		char name[256];
		size_t n = 0;
		bool quoted = *s == '"';
		if (quoted)
			s++;
		while (*s != '\0' && (quoted ? *s != '"' : (*s != ' ' && *s != ')'))) {
			unsigned char c = (unsigned char)*s;
			if (c <= ' ' || c >= 0x7f || c == ':' || n + 1 >= sizeof(name))
				return -1;
			name[n++] = (char)toupper(c);
			s++;
		}
		if (quoted && *s++ != '"')
			return -1;
		if (n == 0 || sec->n_fields == IMAP_SECTION_MAX_FIELDS)
			return -1;
		name[n] = '\0';
		sec->fields = xreallocarray(sec->fields, sec->n_fields + 1, sizeof(char *));
		sec->fields[sec->n_fields++] = xstrdup(name);
		if (*s == ')')
			break;
		if (*s++ != ' ')
			return -1;
	}
	*sp = s + 1;
	return 0;
}

/* parse_number - a part number or a partial's figure; advances *sp */
static int parse_number(const char **sp, uint64_t max, bool nonzero, uint64_t *v_r)
{
	const char *s = *sp;
	size_t n = strspn(s, "0123456789");
	if (n == 0 || (n > 1 && s[0] == '0') || strnum_u64(s, n, max, v_r) < 0 ||
	    (nonzero && *v_r == 0))
		return -1;
	*sp = s + n;
	return 0;
}

int imap_section_parse(const char *atom, struct imap_section *sec, const char **error_r)
{
	memset(sec, 0, sizeof(*sec));
	const char *s = NULL;
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]) && s == NULL; i++) {
		size_t l = strlen(items[i].prefix);
		if (strncasecmp(atom, items[i].prefix, l) == 0) {
			sec->item = items[i].item;
			s = atom + l;
		}
	}
	if (s == NULL)
		return 0;
	bool binary = sec->item >= IMAP_ITEM_BINARY;
	/* part numbers */
	while (*s >= '0' && *s <= '9') {
		uint64_t v;
		if (sec->n_part == IMAP_SECTION_MAX_PARTS ||
		    parse_number(&s, UINT32_MAX, true, &v) < 0)
			goto bad;
		sec->part[sec->n_part++] = (uint32_t)v;
		if (*s != '.') {
			if (*s != ']')
				goto bad;	/* "1HEADER" */
			break;
		}
		s++;
		if (*s < '0' || *s > '9') {
			if (*s == ']')
				goto bad;	/* "1.]" */
			break;			/* a section-text follows */
		}
	}
	if (*s != ']') {
		if (binary)	/* section-binary: part numbers only */
			goto bad;
		static const struct {
			const char *name;
			enum imap_section_text text;
		} texts[] = {
			{ "HEADER.FIELDS.NOT", IMAP_SECTION_HEADER_FIELDS_NOT },
			{ "HEADER.FIELDS", IMAP_SECTION_HEADER_FIELDS },
			{ "HEADER", IMAP_SECTION_HEADER },
			{ "TEXT", IMAP_SECTION_TEXT },
			{ "MIME", IMAP_SECTION_MIME },
		};
		size_t k;
		for (k = 0; k < sizeof(texts) / sizeof(texts[0]); k++) {
			size_t l = strlen(texts[k].name);
			if (strncasecmp(s, texts[k].name, l) == 0 &&
			    (s[l] == ']' || s[l] == ' ')) {
				sec->text = texts[k].text;
				s += l;
				break;
			}
		}
		if (k == sizeof(texts) / sizeof(texts[0]))
			goto bad;
		if (sec->text == IMAP_SECTION_MIME && sec->n_part == 0)
			goto bad;	/* MIME must follow a part number */
		if (sec->text == IMAP_SECTION_HEADER_FIELDS ||
		    sec->text == IMAP_SECTION_HEADER_FIELDS_NOT) {
			if (parse_fields(&s, sec) < 0)
				goto bad;
		}
		if (*s != ']')
			goto bad;
	}
	s++;	/* ']' */
	if (*s == '<') {
		if (sec->item == IMAP_ITEM_BINARY_SIZE)
			goto bad;
		s++;
		if (parse_number(&s, UINT32_MAX, false, &sec->offset) < 0 || *s++ != '.' ||
		    parse_number(&s, UINT32_MAX, true, &sec->length) < 0 || *s++ != '>')
			goto bad;
		sec->partial = true;
	}
	if (*s != '\0')
		goto bad;
	return 1;
bad:
	imap_section_free(sec);
	*error_r = "Invalid FETCH section";
	return -1;
}

int imap_section_name(const struct imap_section *sec, buf *out)
{
	static const char *const names[] = { "BODY", "BODY", "BINARY", "BINARY", "BINARY.SIZE" };
	static const char *const texts[] = { "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT",
					     "TEXT", "MIME" };
	int r = buf_printf(out, "%s[", names[sec->item]);
	for (size_t i = 0; i < sec->n_part; i++)
		r |= buf_printf(out, "%s%u", i > 0 ? "." : "", sec->part[i]);
	if (sec->text != IMAP_SECTION_ALL)
		r |= buf_printf(out, "%s%s", sec->n_part > 0 ? "." : "", texts[sec->text]);
	if (sec->n_fields > 0) {
		r |= buf_puts(out, " (");
		for (size_t i = 0; i < sec->n_fields; i++)
			r |= buf_printf(out, "%s\"%s\"", i > 0 ? " " : "", sec->fields[i]);
		r |= buf_putc(out, ')');
	}
	r |= buf_putc(out, ']');
	if (sec->partial)
		r |= buf_printf(out, "<%llu>", (unsigned long long)sec->offset);
	return r < 0 ? -1 : 0;
}

/* child - the n-th (1-based) child of part idx, or MIME_NO_PART */
static uint32_t child(const struct mime_tree *t, uint32_t idx, uint32_t n)
{
	uint32_t c = t->parts[idx].first_child;
	while (c != MIME_NO_PART && --n > 0)
		c = t->parts[c].next_sibling;
	return c;
}

static bool is_multipart(const struct mime_part *p)
{
	return (p->flags & MIME_PART_MULTIPART) && p->first_child != MIME_NO_PART;
}

static bool is_message(const struct mime_part *p)
{
	return (p->flags & MIME_PART_MESSAGE) && p->first_child != MIME_NO_PART;
}

void imap_section_resolve(const struct imap_section *sec, const struct mime_tree *t,
			  struct imap_section_range *r)
{
	memset(r, 0, sizeof(*r));
	r->kind = IMAP_SECTION_EMPTY;
	if (t->count == 0)
		return;
	/* msg: the message whose parts the next number counts; cur: the part reached */
	uint32_t msg = 0, cur = 0;
	bool msg_is_message = true;	/* the root, or a message/rfc822's enclosed message */
	for (size_t i = 0; i < sec->n_part; i++) {
		const struct mime_part *m = &t->parts[msg];
		if (is_multipart(m)) {
			cur = child(t, msg, sec->part[i]);
			if (cur == MIME_NO_PART)
				return;
		} else if (sec->part[i] == 1 && msg_is_message) {
			cur = msg;	/* a single-part message's part 1 is its body */
		} else {
			return;		/* a leaf part has no sub-parts */
		}
		/* numbers after a message/rfc822 part count the enclosed message's parts */
		msg_is_message = is_message(&t->parts[cur]);
		msg = msg_is_message ? t->parts[cur].first_child : cur;
	}
	const struct mime_part *p = &t->parts[cur];
	r->encoding = p->encoding;
	r->leaf = !is_multipart(p) && !is_message(p);
	switch (sec->text) {
	case IMAP_SECTION_ALL:
		if (sec->n_part == 0) {
			r->offset = 0;
			r->size = t->msg_size;
		} else {
			r->offset = p->body_offset;
			r->size = p->body_size;
		}
		r->kind = IMAP_SECTION_BYTES;
		return;
	case IMAP_SECTION_MIME:
		r->offset = p->header_offset;
		r->size = p->header_size;
		r->kind = IMAP_SECTION_BYTES;
		return;
	default:
		break;
	}
	/* HEADER, HEADER.FIELDS[.NOT], TEXT: of the message itself or an enclosed message */
	const struct mime_part *m = p;
	if (sec->n_part > 0) {
		if (!is_message(p))
			return;
		m = &t->parts[p->first_child];
	}
	if (sec->text == IMAP_SECTION_TEXT) {
		r->offset = m->body_offset;
		r->size = m->body_size;
		r->kind = IMAP_SECTION_BYTES;
	} else {
		r->offset = m->header_offset;
		r->size = m->header_size;
		r->kind = sec->text == IMAP_SECTION_HEADER ? IMAP_SECTION_BYTES : IMAP_SECTION_FILTER;
	}
}

int imap_header_filter(const struct imap_section *sec, const char *hdr, size_t len, buf *out)
{
	struct mime_headers h;
	const char *err;
	mime_headers_init(&h);
	mime_headers_parse(&h, hdr, len, true, NULL, &err);
	bool want_listed = sec->text == IMAP_SECTION_HEADER_FIELDS;
	int r = 0;
	size_t end = 0;
	for (unsigned i = 0; i < h.count; i++) {
		const struct mime_header_field *f = &h.fields[i];
		bool listed = false;
		for (size_t k = 0; k < sec->n_fields && !listed; k++)
			listed = mime_header_name_is(f, hdr, sec->fields[k]);
		if (listed == want_listed)
			r |= buf_append(out, hdr + f->offset, f->size);
		end = f->offset + f->size;
	}
	/* the blank line that ends the block, when there is one */
	if (h.complete && h.size > end && h.size <= len)
		r |= buf_append(out, hdr + end, h.size - end);
	mime_headers_free(&h);
	return r < 0 ? -1 : 0;
}

void imap_partial(const struct imap_section *sec, uint64_t size, uint64_t *start_r,
		  uint64_t *n_r)
{
	if (!sec->partial) {
		*start_r = 0;
		*n_r = size;
		return;
	}
	*start_r = sec->offset < size ? sec->offset : size;
	uint64_t left = size - *start_r;
	*n_r = sec->length < left ? sec->length : left;
}
