/* mime_tree - the MIME structure of a message */
#include "mime/tree.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xmalloc.h"
#include "mime/header.h"

void mime_limits_default(struct mime_limits *lim)
{
	lim->max_depth = 50;
	lim->max_parts = 5000;
	lim->max_header_size = 256 * 1024;
	lim->max_header_fields = 2000;
	lim->max_params = 64;
}

struct parse_ctx {
	const char *data;
	size_t len;
	struct mime_limits lim;
	struct mime_tree *tree;
	uint32_t alloc;
	uint32_t *last_child;	/* per part, for O(1) linking */
	struct mime_headers hdr;
	buf val;
};

/* new_part - append a part under parent (MIME_NO_PART for the root); the caller has
 * checked the part limit. Returns its index. */
static uint32_t new_part(struct parse_ctx *c, uint32_t parent)
{
	struct mime_tree *t = c->tree;
	if (t->count == c->alloc) {
		c->alloc = c->alloc ? c->alloc * 2 : 8;
		t->parts = xreallocarray(t->parts, c->alloc, sizeof(*t->parts));
		c->last_child = xreallocarray(c->last_child, c->alloc, sizeof(*c->last_child));
	}
	uint32_t i = t->count++;
	struct mime_part *p = &t->parts[i];
	memset(p, 0, sizeof(*p));
	p->parent = parent;
	p->first_child = p->next_sibling = MIME_NO_PART;
	c->last_child[i] = MIME_NO_PART;
	if (parent != MIME_NO_PART) {
		struct mime_part *pp = &t->parts[parent];
		p->depth = pp->depth + 1;
		if (pp->first_child == MIME_NO_PART)
			pp->first_child = i;
		else
			t->parts[c->last_child[parent]].next_sibling = i;
		c->last_child[parent] = i;
		pp->nchildren++;
	}
	return i;
}

/* count_lines - LFs and bare LFs in data[start..end), plus a last line without LF. */
static void count_lines(const char *data, size_t start, size_t end, uint64_t *lines_r,
			uint64_t *bare_r)
{
	uint64_t lines = 0, bare = 0;
	size_t pos = start;
	while (pos < end) {
		const char *lf = memchr(data + pos, '\n', end - pos);
		if (lf == NULL) {
			lines++;
			break;
		}
		size_t l = (size_t)(lf - data);
		lines++;
		if (l == start || data[l - 1] != '\r')
			bare++;
		pos = l + 1;
	}
	*lines_r = lines;
	*bare_r = bare;
}

static char *unfolded_copy(struct parse_ctx *c, const struct mime_header_field *f)
{
	buf_reset(&c->val);
	mime_header_unfold(c->data + f->value_offset, f->value_len,
			   &c->val);
	return xstrdup(c->val.data ? c->val.data : "");
}

static void set_default_type(struct mime_part *p, bool digest)
{
	p->flags |= MIME_PART_DEFAULT_TYPE;
	if (digest) {
		p->type = xstrdup("message");
		p->subtype = xstrdup("rfc822");
		return;
	}
	p->type = xstrdup("text");
	p->subtype = xstrdup("plain");
	p->params = xmalloc(sizeof(*p->params));
	p->params[0].name = xstrdup("charset");
	p->params[0].value = xstrdup("us-ascii");
	p->nparams = 1;
}

/* split_language - Content-Language: comma-separated tags (RFC 3282), comments dropped. */
static void split_language(struct mime_part *p, const char *v)
{
	const char *s = v;
	while (*s && p->nlanguage < 32) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		if (*s == '(') {
			int depth = 0;
			do {
				if (*s == '(')
					depth++;
				else if (*s == ')')
					depth--;
				s++;
			} while (*s && depth > 0);
			continue;
		}
		size_t n = strcspn(s, " \t,(");
		if (n == 0)
			break;
		p->language = xreallocarray(p->language, p->nlanguage + 1, sizeof(char *));
		p->language[p->nlanguage++] = xstrndup(s, n);
		s += n;
	}
}

bool mime_summary_field(const char *name, size_t len)
{
	static const char *const fields[] = { "Date", "Subject", "From", "Sender", "Reply-To",
					      "To", "Cc", "Bcc", "In-Reply-To", "Message-ID" };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strlen(fields[i]) == len && strncasecmp(fields[i], name, len) == 0)
			return true;
	return false;
}

/* make_summary - the summary (tree.h) of the root header d[0..hsize), whose fields are
 * c->hdr; left NULL when it could not be faithful */
static void make_summary(struct parse_ctx *c, const char *d, size_t hsize)
{
	if (hsize > MIME_SUMMARY_MAX_HEADER || c->hdr.count > MIME_SUMMARY_MAX_FIELDS)
		return;
	buf sum;
	buf_init(&sum, 0);
	for (unsigned k = 0; k < c->hdr.count; k++) {
		const struct mime_header_field *f = &c->hdr.fields[k];
		if (!mime_summary_field(d + f->offset, f->name_len))
			continue;
		/* the last field of a header cut off at the end of the message may lack its
		 * line end: another field after it would run into it */
		if (f->size == 0 || d[f->offset + f->size - 1] != '\n') {
			buf_free(&sum);
			return;
		}
		buf_append(&sum, d + f->offset, f->size);
	}
	c->tree->summary_len = sum.len;
	c->tree->summary = sum.data != NULL ? sum.data : xstrdup("");	/* NUL-terminated */
}

/* part_headers - parse the header at data[start..end) of part i and fill in its fields;
 * returns the header size. */
static size_t part_headers(struct parse_ctx *c, uint32_t i, size_t start, size_t end,
			   bool digest)
{
	const char *d = c->data + start;
	size_t n = end - start;
	struct mime_header_limits hl = { c->lim.max_header_size, c->lim.max_header_fields };
	const char *err;
	size_t hsize, bare;
	mime_headers_reset(&c->hdr);
	struct mime_part *p = &c->tree->parts[i];
	if (mime_headers_parse(&c->hdr, d, n, true, &hl, &err) < 0) {
		p->flags |= MIME_PART_HEADER_LIMIT;
		hsize = mime_header_block_end(d, n, &bare);
	} else {
		hsize = c->hdr.size;
		bare = c->hdr.bare_lf;
		if (i == 0)
			make_summary(c, d, hsize);
	}
	bool blank = hsize > 0 && d[hsize - 1] == '\n' &&
		     (hsize == 1 || d[hsize - 2] == '\n' ||
		      (d[hsize - 2] == '\r' && (hsize == 2 || d[hsize - 3] == '\n')));
	if (!blank)
		p->flags |= MIME_PART_NO_HEADER_END;
	p->header_size = hsize;
	p->header_bare_lf = bare;

	bool have_ct = false, have_cd = false;
	for (unsigned k = 0; k < c->hdr.count; k++) {
		struct mime_header_field f = c->hdr.fields[k];
		f.value_offset += start;	/* make it relative to c->data */
		const char *name = d + c->hdr.fields[k].offset;
		if (f.name_len < 8 || strncasecmp(name, "content-", 8) != 0)
			continue;
		const char *rest = name + 8;
		size_t rl = f.name_len - 8;
#define IS(s) (rl == sizeof(s) - 1 && strncasecmp(rest, s, rl) == 0)
		if (IS("type") && !have_ct) {
			have_ct = true;
			buf_reset(&c->val);
			mime_header_unfold(c->data + f.value_offset, f.value_len, &c->val);
			struct mime_content ct;
			if (mime_content_parse(c->val.data ? c->val.data : "", c->val.len, true,
					       c->lim.max_params, &ct) < 0)
				p->flags |= MIME_PART_PARAM_LIMIT;
			if (ct.type == NULL) {
				mime_content_free(&ct);
				continue;
			}
			p->type = ct.type;
			p->subtype = ct.subtype;
			p->params = ct.params;
			p->nparams = ct.nparams;
		} else if (IS("disposition") && !have_cd) {
			have_cd = true;
			buf_reset(&c->val);
			mime_header_unfold(c->data + f.value_offset, f.value_len, &c->val);
			struct mime_content cd;
			if (mime_content_parse(c->val.data ? c->val.data : "", c->val.len, false,
					       c->lim.max_params, &cd) < 0)
				p->flags |= MIME_PART_PARAM_LIMIT;
			if (cd.type == NULL) {
				mime_content_free(&cd);
				continue;
			}
			p->disposition = cd.type;
			p->disp_params = cd.params;
			p->ndisp_params = cd.nparams;
		} else if (IS("transfer-encoding") && p->encoding == NULL) {
			char *v = unfolded_copy(c, &f);
			size_t tl = strcspn(v, " \t(;");
			v[tl] = '\0';
			for (char *q = v; *q; q++)
				if (*q >= 'A' && *q <= 'Z')
					*q = (char)(*q - 'A' + 'a');
			if (tl == 0)
				free(v);
			else
				p->encoding = v;
		} else if (IS("id") && p->id == NULL) {
			p->id = unfolded_copy(c, &f);
		} else if (IS("description") && p->description == NULL) {
			p->description = unfolded_copy(c, &f);
		} else if (IS("location") && p->location == NULL) {
			p->location = unfolded_copy(c, &f);
		} else if (IS("md5") && p->md5 == NULL) {
			p->md5 = unfolded_copy(c, &f);
		} else if (IS("language") && p->language == NULL) {
			char *v = unfolded_copy(c, &f);
			split_language(p, v);
			free(v);
		}
#undef IS
	}
	if (p->type == NULL)
		set_default_type(p, digest);
	return hsize;
}

/* boundary_line - does the line at data[pos..end) delimit boundary b? *close_r: it is the
 * close delimiter; *next_r: the start of the following line. */
static bool boundary_line(const struct parse_ctx *c, size_t pos, size_t end, const char *b,
			  size_t blen, bool *close_r, size_t *next_r)
{
	const char *d = c->data;
	if (end - pos < blen + 2 || d[pos] != '-' || d[pos + 1] != '-' ||
	    memcmp(d + pos + 2, b, blen) != 0)
		return false;
	size_t i = pos + 2 + blen;
	bool close = false;
	if (i + 1 < end && d[i] == '-' && d[i + 1] == '-') {
		close = true;
		i += 2;
	}
	/* only blanks may follow: "--abc" is not a delimiter for boundary "ab" */
	while (i < end && (d[i] == ' ' || d[i] == '\t' || d[i] == '\r'))
		i++;
	if (i < end && d[i] != '\n')
		return false;
	*close_r = close;
	*next_r = i < end ? i + 1 : end;
	return true;
}

/* find_boundary - first delimiter line at or after pos (a line start) before end. */
static bool find_boundary(const struct parse_ctx *c, size_t pos, size_t end, const char *b,
			  size_t blen, size_t *line_r, bool *close_r, size_t *next_r)
{
	while (pos < end) {
		if (boundary_line(c, pos, end, b, blen, close_r, next_r)) {
			*line_r = pos;
			return true;
		}
		const char *lf = memchr(c->data + pos, '\n', end - pos);
		if (lf == NULL)
			break;
		pos = (size_t)(lf - c->data) + 1;
	}
	return false;
}

static void parse_entity(struct parse_ctx *c, size_t start, size_t end, uint32_t parent,
			 bool digest);

/* parse_multipart - the body parts of multipart i, whose body is data[start..end). */
static void parse_multipart(struct parse_ctx *c, uint32_t i, size_t start, size_t end,
			    const char *b, bool digest)
{
	size_t blen = strlen(b);
	size_t line, next;
	bool close;
	if (!find_boundary(c, start, end, b, blen, &line, &close, &next)) {
		c->tree->parts[i].flags |= MIME_PART_NO_CLOSE_BOUNDARY;
		return;	/* all preamble: a leaf */
	}
	bool closed = false;
	while (!close) {
		size_t cstart = next, cend, nline, nnext;
		bool nclose, found = find_boundary(c, cstart, end, b, blen, &nline, &nclose, &nnext);
		if (found) {
			/* the line end before a delimiter belongs to the delimiter */
			cend = nline;
			if (cend > cstart && c->data[cend - 1] == '\n') {
				cend--;
				if (cend > cstart && c->data[cend - 1] == '\r')
					cend--;
			}
		} else {
			cend = end;
		}
		if (c->tree->count >= c->lim.max_parts) {
			c->tree->parts[i].flags |= MIME_PART_COUNT_LIMIT;
			closed = true;	/* not known, and not a fault to report */
			break;
		}
		parse_entity(c, cstart, cend, i, digest);
		if (!found)
			break;
		close = nclose;
		next = nnext;
		if (close)
			closed = true;
	}
	if (close)
		closed = true;
	if (!closed)
		c->tree->parts[i].flags |= MIME_PART_NO_CLOSE_BOUNDARY;
	if (c->tree->parts[i].nchildren > 0)
		c->tree->parts[i].flags |= MIME_PART_MULTIPART;
}

/* parse_entity - one part (header + body) at data[start..end) under parent. */
static void parse_entity(struct parse_ctx *c, size_t start, size_t end, uint32_t parent,
			 bool digest)
{
	uint32_t i = new_part(c, parent);
	c->tree->parts[i].header_offset = start;
	size_t hsize = part_headers(c, i, start, end, digest);
	struct mime_part *p = &c->tree->parts[i];
	p->body_offset = start + hsize;
	p->body_size = end - p->body_offset;
	count_lines(c->data, p->body_offset, end, &p->body_lines, &p->body_bare_lf);
	bool deeper_ok = p->depth + 1 <= c->lim.max_depth;
	if (strcmp(p->type, "multipart") == 0) {
		const char *b = mime_part_param(p, "boundary");
		if (b == NULL || b[0] == '\0')
			return;
		if (!deeper_ok) {
			p->flags |= MIME_PART_DEPTH_LIMIT;
			return;
		}
		/* the string lives in the params array, which does not move with parts */
		parse_multipart(c, i, p->body_offset, end, b, strcmp(p->subtype, "digest") == 0);
	} else if (strcmp(p->type, "message") == 0 &&
		   (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0) &&
		   (p->encoding == NULL || strcmp(p->encoding, "7bit") == 0 ||
		    strcmp(p->encoding, "8bit") == 0 || strcmp(p->encoding, "binary") == 0)) {
		if (!deeper_ok) {
			p->flags |= MIME_PART_DEPTH_LIMIT;
			return;
		}
		if (c->tree->count >= c->lim.max_parts) {
			p->flags |= MIME_PART_COUNT_LIMIT;
			return;
		}
		size_t bo = p->body_offset;
		parse_entity(c, bo, end, i, false);
		c->tree->parts[i].flags |= MIME_PART_MESSAGE;
	}
}

struct mime_tree *mime_tree_parse(const char *data, size_t len, const struct mime_limits *lim)
{
	struct parse_ctx c;
	memset(&c, 0, sizeof(c));
	c.data = data;
	c.len = len;
	if (lim)
		c.lim = *lim;
	else
		mime_limits_default(&c.lim);
	if (c.lim.max_depth > MIME_MAX_DEPTH_CEILING)
		c.lim.max_depth = MIME_MAX_DEPTH_CEILING;
	if (c.lim.max_parts == 0 || c.lim.max_parts > MIME_MAX_PARTS_CEILING)
		c.lim.max_parts = c.lim.max_parts == 0 ? 1 : MIME_MAX_PARTS_CEILING;
	c.tree = xcalloc(1, sizeof(*c.tree));
	c.tree->msg_size = len;
	mime_headers_init(&c.hdr);
	buf_init(&c.val, 0);
	parse_entity(&c, 0, len, MIME_NO_PART, false);
	mime_headers_free(&c.hdr);
	buf_free(&c.val);
	free(c.last_child);
	return c.tree;
}

static void free_params(struct mime_param *ps, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(ps[i].name);
		free(ps[i].value);
	}
	free(ps);
}

void mime_tree_free(struct mime_tree **tree)
{
	struct mime_tree *t = *tree;
	if (t == NULL)
		return;
	for (uint32_t i = 0; i < t->count; i++) {
		struct mime_part *p = &t->parts[i];
		free(p->type);
		free(p->subtype);
		free_params(p->params, p->nparams);
		free(p->id);
		free(p->description);
		free(p->encoding);
		free(p->location);
		free(p->md5);
		free(p->disposition);
		free_params(p->disp_params, p->ndisp_params);
		for (uint32_t k = 0; k < p->nlanguage; k++)
			free(p->language[k]);
		free(p->language);
	}
	free(t->parts);
	free(t->summary);
	free(t);
	*tree = NULL;
}

const char *mime_part_param(const struct mime_part *p, const char *name)
{
	return mime_param_get(p->params, p->nparams, name);
}

int mime_tree_describe(const struct mime_tree *t, buf *out)
{
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		if (buf_printf(out, "%*s%s/%s h=%llu+%llu b=%llu+%llu l=%llu f=%x\n",
			       (int)p->depth * 2, "", p->type, p->subtype,
			       (unsigned long long)p->header_offset,
			       (unsigned long long)p->header_size,
			       (unsigned long long)p->body_offset, (unsigned long long)p->body_size,
			       (unsigned long long)p->body_lines, (unsigned)p->flags) < 0)
			return -1;
	}
	return 0;
}
