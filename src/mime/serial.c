/* mime_serial - the tree as a compact byte string (cached by the store) and back.
 * Layout (version 2): "TMT" 0x02, varint msg_size, varint count, then per part in
 * pre-order: varint parent+1 (0 for the root), flags, header_offset, header_size,
 * body_size, header_bare_lf, body_bare_lf, body_lines, str type, str subtype, params,
 * nstr id, description, encoding, location, md5, disposition, params, varint nlanguage +
 * str each; after the parts, nbytes summary. varint = LEB128 (at most 10 bytes); str =
 * varint len + bytes (no NUL); nstr = varint (len + 1, 0 for NULL) + bytes; nbytes = nstr
 * that may hold NULs; params = varint n + (str name, str value) each. Version 1 (no
 * summary) is refused like any other unknown version: the store parses such a message
 * again and caches it anew. */
#include <stdlib.h>
#include <string.h>

#include "lib/xmalloc.h"
#include "mime/tree.h"

#define SERIAL_VERSION 2
#define MAX_STRING (1u << 20)

static int put_varint(buf *out, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;
	do {
		b[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			b[n] |= 0x80;
		n++;
	} while (v);
	return buf_append(out, b, n);
}

static int put_str(buf *out, const char *s)
{
	size_t n = strlen(s);
	return put_varint(out, n) < 0 || buf_append(out, s, n) < 0 ? -1 : 0;
}

static int put_nstr(buf *out, const char *s)
{
	if (s == NULL)
		return put_varint(out, 0);
	size_t n = strlen(s);
	return put_varint(out, (uint64_t)n + 1) < 0 || buf_append(out, s, n) < 0 ? -1 : 0;
}

static int put_params(buf *out, const struct mime_param *ps, uint32_t n)
{
	if (put_varint(out, n) < 0)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (put_str(out, ps[i].name) < 0 || put_str(out, ps[i].value) < 0)
			return -1;
	return 0;
}

int mime_tree_serialize(const struct mime_tree *t, buf *out)
{
	static const char magic[4] = { 'T', 'M', 'T', SERIAL_VERSION };
	if (buf_append(out, magic, 4) < 0 || put_varint(out, t->msg_size) < 0 ||
	    put_varint(out, t->count) < 0)
		return -1;
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		uint64_t nums[] = { p->parent == MIME_NO_PART ? 0 : (uint64_t)p->parent + 1,
				    p->flags,
				    p->header_offset,
				    p->header_size,
				    p->body_size,
				    p->header_bare_lf,
				    p->body_bare_lf,
				    p->body_lines };
		for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
			if (put_varint(out, nums[k]) < 0)
				return -1;
		if (put_str(out, p->type) < 0 || put_str(out, p->subtype) < 0 ||
		    put_params(out, p->params, p->nparams) < 0 || put_nstr(out, p->id) < 0 ||
		    put_nstr(out, p->description) < 0 || put_nstr(out, p->encoding) < 0 ||
		    put_nstr(out, p->location) < 0 || put_nstr(out, p->md5) < 0 ||
		    put_nstr(out, p->disposition) < 0 ||
		    put_params(out, p->disp_params, p->ndisp_params) < 0 ||
		    put_varint(out, p->nlanguage) < 0)
			return -1;
		for (uint32_t k = 0; k < p->nlanguage; k++)
			if (put_str(out, p->language[k]) < 0)
				return -1;
	}
	if (t->summary == NULL)
		return put_varint(out, 0);
	if (put_varint(out, (uint64_t)t->summary_len + 1) < 0)
		return -1;
	return buf_append(out, t->summary, t->summary_len);
}

struct reader {
	const unsigned char *p, *end;
	const char *error;
};

static bool fail(struct reader *r, const char *why)
{
	if (r->error == NULL)
		r->error = why;
	return false;
}

static bool get_varint(struct reader *r, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned shift = 0; shift < 64; shift += 7) {
		if (r->p >= r->end)
			return fail(r, "truncated");
		unsigned char b = *r->p++;
		if (shift == 63 && (b & 0x7e))
			return fail(r, "number overflow");
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = x;
			return true;
		}
	}
	return fail(r, "number too long");
}

/* get_bytes - a string of n bytes as a fresh C string; NULs are refused. */
static bool get_bytes(struct reader *r, uint64_t n, char **s)
{
	if (n > MAX_STRING || n > (uint64_t)(r->end - r->p))
		return fail(r, "bad string length");
	if (memchr(r->p, '\0', n) != NULL)
		return fail(r, "NUL in string");
	*s = xstrndup((const char *)r->p, n);
	r->p += n;
	return true;
}

static bool get_str(struct reader *r, char **s)
{
	uint64_t n;
	return get_varint(r, &n) && get_bytes(r, n, s);
}

static bool get_nstr(struct reader *r, char **s)
{
	uint64_t n;
	if (!get_varint(r, &n))
		return false;
	if (n == 0) {
		*s = NULL;
		return true;
	}
	return get_bytes(r, n - 1, s);
}

/* get_count - a count whose elements take at least min_size bytes each. */
static bool get_count(struct reader *r, uint64_t min_size, uint32_t *n)
{
	uint64_t v;
	if (!get_varint(r, &v))
		return false;
	if (v > UINT32_MAX || v > (uint64_t)(r->end - r->p) / min_size)
		return fail(r, "bad count");
	*n = (uint32_t)v;
	return true;
}

static bool get_params(struct reader *r, struct mime_param **ps, uint32_t *n)
{
	if (!get_count(r, 2, n))
		return false;
	if (*n == 0)
		return true;
	*ps = xcalloc(*n, sizeof(**ps));
	for (uint32_t i = 0; i < *n; i++)
		if (!get_str(r, &(*ps)[i].name) || !get_str(r, &(*ps)[i].value))
			return false;
	return true;
}

/* check_structure - part i (just read) fits its parent: pre-order, inside its body. */
static bool check_structure(struct reader *r, struct mime_tree *t, uint32_t *last_child,
			    uint32_t i, uint64_t parent1)
{
	struct mime_part *p = &t->parts[i];
	if (p->header_size > t->msg_size || p->header_offset > t->msg_size - p->header_size)
		return fail(r, "header outside the message");
	p->body_offset = p->header_offset + p->header_size;
	if (p->body_size > t->msg_size - p->body_offset)
		return fail(r, "body outside the message");
	if (p->header_bare_lf > p->header_size || p->body_bare_lf > p->body_size ||
	    p->body_lines > p->body_size || p->body_bare_lf > p->body_lines)
		return fail(r, "bad line counts");
	if (i == 0) {
		if (parent1 != 0)
			return fail(r, "root with a parent");
		p->parent = MIME_NO_PART;
		return true;
	}
	if (parent1 == 0 || parent1 > i)
		return fail(r, "bad parent");
	uint32_t par = (uint32_t)(parent1 - 1);
	/* pre-order: the parent is the previous part or one of its ancestors */
	uint32_t a = i - 1;
	while (a != par && a != MIME_NO_PART)
		a = t->parts[a].parent;
	if (a != par)
		return fail(r, "not in pre-order");
	struct mime_part *pp = &t->parts[par];
	if (!(pp->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)))
		return fail(r, "children under a leaf");
	if ((pp->flags & MIME_PART_MESSAGE) && pp->nchildren > 0)
		return fail(r, "message with two children");
	uint64_t lo = pp->body_offset, hi = pp->body_offset + pp->body_size;
	if (p->header_offset < lo || p->body_offset + p->body_size > hi)
		return fail(r, "child outside its parent");
	if (pp->depth + 1 > MIME_MAX_DEPTH_CEILING)
		return fail(r, "too deep");
	if (pp->first_child != MIME_NO_PART) {
		/* siblings in order, not overlapping */
		const struct mime_part *prev = &t->parts[last_child[par]];
		if (p->header_offset < prev->body_offset + prev->body_size)
			return fail(r, "overlapping siblings");
		t->parts[last_child[par]].next_sibling = i;
	} else {
		pp->first_child = i;
	}
	last_child[par] = i;
	p->parent = par;
	p->depth = pp->depth + 1;
	pp->nchildren++;
	return true;
}

struct mime_tree *mime_tree_deserialize(const void *blob, size_t len, uint64_t msg_size,
					unsigned max_parts, const char **error_r)
{
	struct reader r = { blob, (const unsigned char *)blob + len, NULL };
	if (max_parts == 0 || max_parts > MIME_MAX_PARTS_CEILING)
		max_parts = MIME_MAX_PARTS_CEILING;
	if (len < 4 || memcmp(blob, "TMT", 3) != 0) {
		*error_r = "not a MIME tree";
		return NULL;
	}
	if (((const unsigned char *)blob)[3] != SERIAL_VERSION) {
		*error_r = "unknown MIME tree version";
		return NULL;
	}
	r.p += 4;
	struct mime_tree *t = xcalloc(1, sizeof(*t));
	uint32_t *last_child = NULL;
	uint64_t size;
	uint32_t count;
	if (!get_varint(&r, &size) || !get_count(&r, 12, &count))
		goto bad;
	if (size != msg_size) {
		fail(&r, "message size differs");
		goto bad;
	}
	if (count == 0 || count > max_parts) {
		fail(&r, "bad part count");
		goto bad;
	}
	t->msg_size = size;
	t->parts = xcalloc(count, sizeof(*t->parts));
	last_child = xcalloc(count, sizeof(*last_child));
	for (uint32_t i = 0; i < count; i++) {
		struct mime_part *p = &t->parts[i];
		p->first_child = p->next_sibling = MIME_NO_PART;
		p->parent = MIME_NO_PART;
		t->count = i + 1;	/* so that mime_tree_free releases what was read */
		uint64_t parent1, flags;
		if (!get_varint(&r, &parent1) || !get_varint(&r, &flags) ||
		    !get_varint(&r, &p->header_offset) || !get_varint(&r, &p->header_size) ||
		    !get_varint(&r, &p->body_size) || !get_varint(&r, &p->header_bare_lf) ||
		    !get_varint(&r, &p->body_bare_lf) || !get_varint(&r, &p->body_lines))
			goto bad;
		if (flags & ~(uint64_t)MIME_PART_ALL_FLAGS) {
			fail(&r, "unknown flags");
			goto bad;
		}
		if ((flags & MIME_PART_MULTIPART) && (flags & MIME_PART_MESSAGE)) {
			fail(&r, "contradictory flags");
			goto bad;
		}
		p->flags = (uint32_t)flags;
		if (!get_str(&r, &p->type) || !get_str(&r, &p->subtype) ||
		    !get_params(&r, &p->params, &p->nparams) || !get_nstr(&r, &p->id) ||
		    !get_nstr(&r, &p->description) || !get_nstr(&r, &p->encoding) ||
		    !get_nstr(&r, &p->location) || !get_nstr(&r, &p->md5) ||
		    !get_nstr(&r, &p->disposition) ||
		    !get_params(&r, &p->disp_params, &p->ndisp_params) ||
		    !get_count(&r, 1, &p->nlanguage))
			goto bad;
		if (p->nlanguage > 0) {
			p->language = xcalloc(p->nlanguage, sizeof(char *));
			for (uint32_t k = 0; k < p->nlanguage; k++)
				if (!get_str(&r, &p->language[k]))
					goto bad;
		}
		if (!check_structure(&r, t, last_child, i, parent1))
			goto bad;
	}
	/* the summary: raw header bytes (NULs allowed), never more than the header */
	uint64_t sl;
	if (!get_varint(&r, &sl))
		goto bad;
	if (sl > 0) {
		sl--;
		if (sl > t->parts[0].header_size || sl > (uint64_t)(r.end - r.p)) {
			fail(&r, "bad summary length");
			goto bad;
		}
		t->summary = xmalloc((size_t)sl + 1);
		memcpy(t->summary, r.p, (size_t)sl);
		t->summary[sl] = '\0';
		t->summary_len = (size_t)sl;
		r.p += sl;
	}
	if (r.p != r.end) {
		fail(&r, "trailing bytes");
		goto bad;
	}
	/* containers must have what their flags promise */
	for (uint32_t i = 0; i < count; i++) {
		const struct mime_part *p = &t->parts[i];
		if (((p->flags & MIME_PART_MULTIPART) && p->nchildren == 0) ||
		    ((p->flags & MIME_PART_MESSAGE) && p->nchildren != 1)) {
			fail(&r, "container without children");
			goto bad;
		}
	}
	free(last_child);
	return t;
bad:
	free(last_child);
	*error_r = r.error ? r.error : "corrupt MIME tree";
	mime_tree_free(&t);
	return NULL;
}
