/* mime_header - RFC 5322 header blocks */
#include "mime/header.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xmalloc.h"

void mime_headers_init(struct mime_headers *h)
{
	memset(h, 0, sizeof(*h));
}

void mime_headers_free(struct mime_headers *h)
{
	free(h->fields);
	mime_headers_init(h);
}

void mime_headers_reset(struct mime_headers *h)
{
	h->count = 0;
	h->size = 0;
	h->bare_lf = 0;
	h->complete = false;
}

/* add_field - split one unfolded-on-disk field [off, off+size) into name and value; a line
 * without a colon (or with an empty name) is tolerated and skipped. */
static int add_field(struct mime_headers *h, const char *data, size_t off, size_t size,
		     const struct mime_header_limits *lim, const char **error_r)
{
	const char *f = data + off;
	size_t n = 0;
	while (n < size && f[n] != ':' && f[n] != '\n')
		n++;
	if (n == size || f[n] != ':')
		return 0;
	size_t name_len = n;
	while (name_len > 0 && (f[name_len - 1] == ' ' || f[name_len - 1] == '\t'))
		name_len--;
	if (name_len == 0)
		return 0;
	for (size_t i = 0; i < name_len; i++)
		if ((unsigned char)f[i] <= ' ' || (unsigned char)f[i] >= 127)
			return 0;	/* not a field name: skip the line */
	if (lim && lim->max_fields && h->count >= lim->max_fields) {
		*error_r = "too many header fields";
		return -1;
	}
	if (h->count == h->alloc) {
		h->alloc = h->alloc ? h->alloc * 2 : 16;
		h->fields = xreallocarray(h->fields, h->alloc, sizeof(*h->fields));
	}
	size_t vend = size;
	if (vend > n + 1 && f[vend - 1] == '\n')
		vend--;
	if (vend > n + 1 && f[vend - 1] == '\r')
		vend--;
	struct mime_header_field *hf = &h->fields[h->count++];
	hf->offset = off;
	hf->size = size;
	hf->name_len = name_len;
	hf->value_offset = off + n + 1;
	hf->value_len = vend - (n + 1);
	return 0;
}

int mime_headers_parse(struct mime_headers *h, const char *data, size_t len, bool eof,
		       const struct mime_header_limits *lim, const char **error_r)
{
	if (h->complete)
		return 1;
	size_t pos = h->size;	/* start of the next field: everything before is done */
	for (;;) {
		if (pos >= len) {
			if (!eof)
				return 0;
			h->complete = true;
			return 1;
		}
		/* the blank line ending the block */
		if (data[pos] == '\n' || (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n')) {
			size_t n = data[pos] == '\n' ? 1 : 2;
			if (lim && lim->max_size && pos + n > lim->max_size) {
				*error_r = "header too large";
				return -1;
			}
			if (n == 1)
				h->bare_lf++;
			h->size = pos + n;
			h->complete = true;
			return 1;
		}
		if (data[pos] == '\r' && pos + 1 == len && !eof)
			return 0;
		/* find the end of this field: its line and every continuation line */
		size_t e = pos, bare = 0;
		bool have_end = false;
		for (;;) {
			const char *lf = memchr(data + e, '\n', len - e);
			if (lf == NULL) {
				if (lim && lim->max_size && len > lim->max_size) {
					*error_r = "header too large";
					return -1;
				}
				if (!eof)
					return 0;
				e = len;
				have_end = true;
				break;
			}
			size_t l = (size_t)(lf - data);
			if (l == e || data[l - 1] != '\r')
				bare++;
			e = l + 1;
			if (lim && lim->max_size && e > lim->max_size) {
				*error_r = "header too large";
				return -1;
			}
			if (e == len) {
				if (!eof)
					return 0;	/* a continuation may follow */
				have_end = true;
				break;
			}
			if (data[e] != ' ' && data[e] != '\t') {
				have_end = true;
				break;
			}
		}
		(void)have_end;
		if (add_field(h, data, pos, e - pos, lim, error_r) < 0)
			return -1;
		h->bare_lf += bare;
		pos = h->size = e;
	}
}

size_t mime_header_block_end(const char *data, size_t len, size_t *bare_lf_r)
{
	size_t pos = 0, bare = 0;
	while (pos < len) {
		if (data[pos] == '\n') {
			bare++;
			pos++;
			break;
		}
		if (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n') {
			pos += 2;
			break;
		}
		const char *lf = memchr(data + pos, '\n', len - pos);
		if (lf == NULL) {
			pos = len;
			break;
		}
		size_t l = (size_t)(lf - data);
		if (data[l - 1] != '\r')
			bare++;
		pos = l + 1;
	}
	if (bare_lf_r)
		*bare_lf_r = bare;
	return pos;
}

bool mime_header_name_is(const struct mime_header_field *f, const char *data, const char *name)
{
	size_t n = strlen(name);
	return f->name_len == n && strncasecmp(data + f->offset, name, n) == 0;
}

int mime_headers_find(const struct mime_headers *h, const char *data, const char *name,
		      unsigned from)
{
	for (unsigned i = from; i < h->count; i++)
		if (mime_header_name_is(&h->fields[i], data, name))
			return (int)i;
	return -1;
}

int mime_header_unfold(const char *v, size_t len, buf *out)
{
	size_t start = out->len;
	size_t i = 0;
	while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
		i++;
	size_t seg = i;
	for (; i < len; i++) {
		if (v[i] == '\r' || v[i] == '\n') {
			if (buf_append(out, v + seg, i - seg) < 0)
				return -1;
			seg = i + 1;
		}
	}
	if (buf_append(out, v + seg, len - seg) < 0)
		return -1;
	while (out->len > start && (out->data[out->len - 1] == ' ' || out->data[out->len - 1] == '\t'))
		out->len--;
	if (out->data)
		out->data[out->len] = '\0';
	return 0;
}
