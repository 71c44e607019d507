/* mime_downgrade - 8-bit message to 7-bit for servers without 8BITMIME */
#include "mime/downgrade.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "mime/tree.h"

static bool has_8bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80 || p[i] == '\0')
			return true;
	return false;
}

void mime_qp_encode(const char *in, size_t len, buf *out)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t col = 0;
	size_t i = 0;
	while (i < len) {
		/* one line at a time: CRLF or LF ends it */
		size_t end = i;
		while (end < len && in[end] != '\n')
			end++;
		size_t stop = end;
		if (stop > i && in[stop - 1] == '\r')
			stop--;
		col = 0;
		for (size_t k = i; k < stop; k++) {
			unsigned char c = (unsigned char)in[k];
			bool last = k + 1 == stop;
			char enc[4];
			size_t el;
			if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
				enc[0] = (char)c;
				el = 1;
			} else {
				enc[0] = '=';
				enc[1] = hex[c >> 4];
				enc[2] = hex[c & 15];
				el = 3;
			}
			if (col + el > 75) {
				buf_append(out, "=\r\n", 3);	/* soft line break */
				col = 0;
			}
			buf_append(out, enc, el);
			col += el;
		}
		if (end < len)
			buf_append(out, "\r\n", 2);
		i = end < len ? end + 1 : end;
	}
}

void mime_base64_encode_lines(const char *in, size_t len, buf *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)(unsigned char)in[i + 1] << 8;
		if (i + 2 < len)
			v |= (unsigned char)in[i + 2];
		char q[4] = { tab[(v >> 18) & 63], tab[(v >> 12) & 63],
			      i + 1 < len ? tab[(v >> 6) & 63] : '=', i + 2 < len ? tab[v & 63] : '=' };
		buf_append(out, q, 4);
		col += 4;
		if (col >= 76) {
			buf_append(out, "\r\n", 2);
			col = 0;
		}
	}
	if (col > 0 || len == 0)
		buf_append(out, "\r\n", 2);
}

/* rewrite_header - the header without its Content-Transfer-Encoding field (and its
 * continuation lines), with "Content-Transfer-Encoding: cte" before the blank line, and
 * MIME-Version added at the top level when missing */
static void rewrite_header(const char *h, size_t n, const char *cte, bool root, buf *out)
{
	bool skipping = false, saw_mime_version = false;
	size_t i = 0;
	while (i < n) {
		size_t end = i;
		while (end < n && h[end] != '\n')
			end++;
		size_t ll = (end < n ? end + 1 : end) - i;
		const char *line = h + i;
		bool blank = ll <= 2 && (line[0] == '\n' || (line[0] == '\r' && ll == 2));
		if (blank)
			break;
		bool cont = line[0] == ' ' || line[0] == '\t';
		if (!cont)
			skipping = ll >= 26 && strncasecmp(line, "Content-Transfer-Encoding:", 26) == 0;
		if (!cont && ll >= 13 && strncasecmp(line, "MIME-Version:", 13) == 0)
			saw_mime_version = true;
		if (!skipping)
			buf_append(out, line, ll);
		i += ll;
	}
	if (root && !saw_mime_version)
		buf_puts(out, "MIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Transfer-Encoding: %s\r\n\r\n", cte);
}

/* An edit: replace data[start, start+len) with text. */
struct edit {
	uint64_t start, len;
	buf text;
};

int mime_downgrade_7bit(const char *data, size_t len, int out_fd)
{
	struct mime_tree *t = mime_tree_parse(data, len, NULL);
	struct edit *edits = xcalloc(t->count * 2 + 1, sizeof(*edits));
	size_t ne = 0;
	int r = 0;
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		if (has_8bit(data + p->header_offset, p->header_size)) {
			r = 1;	/* 8-bit header: cannot be made 7-bit here */
			goto out;
		}
		bool container = p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE);
		const char *cte = NULL;
		if (container) {
			if (p->encoding != NULL && (!strcmp(p->encoding, "8bit") ||
						    !strcmp(p->encoding, "binary")))
				cte = "7bit";
		} else if (has_8bit(data + p->body_offset, p->body_size)) {
			cte = !strcmp(p->type, "text") ? "quoted-printable" : "base64";
		}
		if (cte == NULL)
			continue;
		struct edit *e = &edits[ne++];
		e->start = p->header_offset;
		e->len = p->header_size;
		buf_init(&e->text, 0);
		rewrite_header(data + p->header_offset, p->header_size, cte, i == 0, &e->text);
		if (container)
			continue;
		e = &edits[ne++];
		e->start = p->body_offset;
		e->len = p->body_size;
		buf_init(&e->text, 0);
		if (cte[0] == 'q')
			mime_qp_encode(data + p->body_offset, p->body_size, &e->text);
		else
			mime_base64_encode_lines(data + p->body_offset, p->body_size, &e->text);
		/* a multipart child's body excludes the CRLF before the next boundary: keep it so */
		if (p->parent != MIME_NO_PART && e->text.len >= 2 &&
		    memcmp(e->text.data + e->text.len - 2, "\r\n", 2) == 0 &&
		    (p->body_size == 0 || data[p->body_offset + p->body_size - 1] != '\n'))
			e->text.len -= 2;
	}
	/* pre-order parts give edits in increasing, non-overlapping order. What is copied as
	 * it is (preambles, epilogues, unparsed parts) must be 7-bit already: else give up. */
	uint64_t pos = 0;
	for (size_t k = 0; k <= ne && r == 0; k++) {
		uint64_t start = k < ne ? edits[k].start : len;
		if (start < pos)
			continue;	/* defensive: never overlap */
		if (has_8bit(data + pos, start - pos)) {
			r = 1;
			break;
		}
		if (fs_write_all(out_fd, data + pos, start - pos) < 0 ||
		    (k < ne && fs_write_all(out_fd, edits[k].text.data, edits[k].text.len) < 0))
			r = -1;
		if (k < ne)
			pos = edits[k].start + edits[k].len;
	}
out:
	for (size_t k = 0; k < ne; k++)
		buf_free(&edits[k].text);
	free(edits);
	mime_tree_free(&t);
	return r;
}
