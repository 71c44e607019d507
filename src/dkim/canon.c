/* dkim_canon - the header split and the canonicalisations (RFC 6376 §3.4, §3.7) */
#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/parse.h"
#include "lib/xmalloc.h"

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* line_end - the end of the line starting at p (the index of its '\n', or len) */
static size_t line_end(const char *msg, size_t len, size_t p)
{
	const char *nl = memchr(msg + p, '\n', len - p);
	return nl ? (size_t)(nl - msg) : len;
}

/* content_end - a line's content end: the '\r' before '\n' excluded */
static size_t content_end(const char *msg, size_t start, size_t nl)
{
	return nl > start && msg[nl - 1] == '\r' ? nl - 1 : nl;
}

int dkim_header_split(const char *msg, size_t len, size_t max_fields, struct dkim_header *h)
{
	size_t p = 0, cap = 0;
	int cut = 0;
	h->f = NULL;
	h->n = 0;
	h->body_off = len;
	while (p < len) {
		size_t nl = line_end(msg, len, p);
		size_t ce = content_end(msg, p, nl);
		if (ce == p) {	/* the empty line */
			h->body_off = nl < len ? nl + 1 : len;
			return cut;
		}
		/* a field: this line and its continuation lines */
		size_t start = p, end = ce;
		p = nl < len ? nl + 1 : len;
		while (p < len && is_wsp(msg[p])) {
			nl = line_end(msg, len, p);
			end = content_end(msg, p, nl);
			p = nl < len ? nl + 1 : len;
		}
		if (h->n == max_fields) {
			cut = 1;
			continue;
		}
		if (h->n == cap) {
			cap = cap ? 2 * cap : 32;
			h->f = xreallocarray(h->f, cap, sizeof(*h->f));
		}
		struct dkim_field *f = &h->f[h->n++];
		f->start = msg + start;
		f->len = end - start;
		const char *colon = memchr(f->start, ':', f->len);
		if (colon == NULL) {
			f->name_len = f->len;
		} else {
			size_t nlen = (size_t)(colon - f->start);
			while (nlen > 0 && is_wsp(f->start[nlen - 1]))
				nlen--;
			f->name_len = nlen;
		}
	}
	return cut;
}

bool dkim_field_is(const struct dkim_field *f, const char *name)
{
	size_t l = strlen(name);
	return f->name_len == l && f->name_len < f->len && strncasecmp(f->start, name, l) == 0;
}

void dkim_canon_header(enum dkim_canon c, const char *text, size_t len, buf *out)
{
	if (c == DKIM_CANON_SIMPLE) {
		/* as it is, with every line end made CRLF (we may have read LF-only text) */
		for (size_t i = 0; i < len; i++) {
			if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r'))
				buf_putc(out, '\r');
			buf_putc(out, text[i]);
		}
		buf_puts(out, "\r\n");
		return;
	}
	const char *colon = memchr(text, ':', len);
	size_t nlen = colon ? (size_t)(colon - text) : len;
	while (nlen > 0 && is_wsp(text[nlen - 1]))
		nlen--;
	for (size_t i = 0; i < nlen; i++)
		buf_putc(out, (char)tolower((unsigned char)text[i]));
	buf_putc(out, ':');
	if (colon != NULL) {
		/* unfold, runs of WSP to one SP, none at the start or the end */
		bool space = false, any = false;
		for (size_t i = (size_t)(colon - text) + 1; i < len; i++) {
			char ch = text[i];
			if (ch == '\r' || ch == '\n')
				continue;
			if (is_wsp(ch)) {
				space = true;
				continue;
			}
			if (space && any)
				buf_putc(out, ' ');
			space = false;
			any = true;
			buf_putc(out, ch);
		}
	}
	buf_puts(out, "\r\n");
}

/* The canonical body goes to a sink: a hash (with a length limit) or a buffer. */
struct sink {
	EVP_MD_CTX *md;
	buf *out;
	uint64_t limit, hashed, total;
	size_t staged;		/* bytes in stage not yet hashed: one digest call per 16 KiB,
				   not one per word */
	char stage[16384];
};

static void sink_flush(struct sink *k)
{
	if (k->staged > 0)
		EVP_DigestUpdate(k->md, k->stage, k->staged);
	k->staged = 0;
}

static void sink_put(struct sink *k, const char *p, size_t n)
{
	k->total += n;
	if (k->out != NULL)
		buf_append(k->out, p, n);
	if (k->md != NULL && k->hashed < k->limit) {
		uint64_t room = k->limit - k->hashed;
		size_t take = (uint64_t)n < room ? n : (size_t)room;
		if (k->staged + take > sizeof(k->stage))
			sink_flush(k);
		if (take > sizeof(k->stage)) {
			EVP_DigestUpdate(k->md, p, take);
		} else {
			memcpy(k->stage + k->staged, p, take);
			k->staged += take;
		}
		k->hashed += take;
	}
}

/* body_canon - feed the canonical body to k: line by line, empty lines held back until a
 * non-empty one follows (trailing empty lines vanish) */
static void body_canon(enum dkim_canon c, const char *body, size_t len, struct sink *k)
{
	size_t p = 0, empties = 0;
	bool any = false;
	while (p < len) {
		size_t nl = line_end(body, len, p);
		size_t ce = content_end(body, p, nl);
		size_t s = p, e = ce;
		p = nl < len ? nl + 1 : len;
		if (c == DKIM_CANON_RELAXED)
			while (e > s && is_wsp(body[e - 1]))
				e--;
		if (e == s) {
			empties++;
			continue;
		}
		for (; empties > 0; empties--)
			sink_put(k, "\r\n", 2);
		any = true;
		if (c == DKIM_CANON_SIMPLE) {
			sink_put(k, body + s, e - s);
		} else {
			size_t i = s;
			while (i < e) {
				size_t j = i;
				while (j < e && !is_wsp(body[j]))
					j++;
				sink_put(k, body + i, j - i);
				if (j < e) {
					sink_put(k, " ", 1);
					while (j < e && is_wsp(body[j]))
						j++;
				}
				i = j;
			}
		}
		sink_put(k, "\r\n", 2);
	}
	if (!any && c == DKIM_CANON_SIMPLE)
		sink_put(k, "\r\n", 2);
}

int dkim_body_hash(enum dkim_canon c, const char *body, size_t len, uint64_t limit,
		   unsigned char out[32], uint64_t *canon_len_r)
{
	struct sink *k = xcalloc(1, sizeof(*k));
	k->limit = limit;
	k->md = EVP_MD_CTX_new();
	int ok = 0;
	if (k->md != NULL && EVP_DigestInit_ex(k->md, EVP_sha256(), NULL) == 1) {
		body_canon(c, body, len, k);
		sink_flush(k);
		unsigned int n = 0;
		ok = EVP_DigestFinal_ex(k->md, out, &n) == 1 && n == 32;
	}
	EVP_MD_CTX_free(k->md);
	*canon_len_r = k->total;
	free(k);
	return ok ? 0 : -1;
}

void dkim_body_canon(enum dkim_canon c, const char *body, size_t len, buf *out)
{
	struct sink *k = xcalloc(1, sizeof(*k));
	k->out = out;
	body_canon(c, body, len, k);
	free(k);
}

void dkim_header_hash_input(const struct dkim_header *h, const struct dkim_sig *sig,
			    const char *sig_field, size_t sig_len, size_t value_off, buf *out)
{
	/* each h= name takes the last instance not used yet (§5.4.2); a name with none left
	 * adds nothing (the "nonexistent header field" of §3.5) */
	bool *used = xcalloc(h->n ? h->n : 1, sizeof(bool));
	for (size_t i = 0; i < sig->n_h; i++) {
		for (size_t j = h->n; j-- > 0;) {
			if (!used[j] && dkim_field_is(&h->f[j], sig->h[i])) {
				used[j] = true;
				dkim_canon_header(sig->canon_h, h->f[j].start, h->f[j].len, out);
				break;
			}
		}
	}
	free(used);
	/* the signature field with b='s value removed, canonicalised, without its CRLF */
	buf tmp;
	buf_init(&tmp, 0);
	size_t bs = value_off + sig->b_raw_start, be = value_off + sig->b_raw_end;
	buf_append(&tmp, sig_field, bs);
	buf_append(&tmp, sig_field + be, sig_len - be);
	size_t before = out->len;
	dkim_canon_header(sig->canon_h, tmp.data, tmp.len, out);
	if (out->len >= before + 2)
		out->len -= 2;
	if (out->data != NULL)
		out->data[out->len] = '\0';
	buf_free(&tmp);
}
