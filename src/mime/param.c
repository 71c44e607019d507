/* mime_param - Content-Type / Content-Disposition parameters with RFC 2231 */
#include "mime/param.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"
#include "mime/encword.h"

#define MAX_SEGMENTS 1000

/* RFC 2045 tspecials plus blanks and controls end a token */
static bool is_token_char(unsigned char c)
{
	return c > ' ' && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* skip_cfws - blanks and (nested) comments. *unclosed remembers where an unterminated
 * comment began: a later comment is then taken to run to the end too, so that input such
 * as "a (; a (; a (" costs linear time rather than a scan to the end per parameter. */
static size_t skip_cfws(const char *s, size_t len, size_t i, size_t *unclosed)
{
	int depth = 0;
	size_t open = 0;
	while (i < len) {
		char c = s[i];
		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(') {
			if (i >= *unclosed)
				return len;
			depth = 1;
			open = i;
		} else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			break;
		}
		i++;
	}
	if (depth > 0 && open < *unclosed)
		*unclosed = open;
	return i;
}

static size_t token_end(const char *s, size_t len, size_t i)
{
	while (i < len && is_token_char((unsigned char)s[i]))
		i++;
	return i;
}

static char *lower_dup(const char *s, size_t n)
{
	char *r = xstrndup(s, n);
	for (char *p = r; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

struct segment {
	char *name;	/* base name, lowercase */
	unsigned index;	/* continuation number; 0 without one */
	bool extended;	/* "*" at the end: charset'lang' (index 0) and %XX */
	bool numbered;
	size_t order;	/* position in the header: the first of duplicates wins */
	char *value;	/* raw value (unquoted) */
};

/* value_parse - a quoted string, token, or (tolerated) anything up to ";" from s[i]. */
static size_t value_parse(const char *s, size_t len, size_t i, buf *v, size_t *unclosed)
{
	if (i < len && s[i] == '"') {
		i++;
		while (i < len && s[i] != '"') {
			if (s[i] == '\\' && i + 1 < len)
				i++;
			buf_putc(v, s[i]);
			i++;
		}
		return i < len ? i + 1 : i;
	}
	/* an unquoted value with blanks: "name=a b.pdf" is meant as one value, but
	 * "charset=utf-8 format=flowed" is two parameters missing their ";", and
	 * "charset=us-ascii (comment)" is a token and a comment. Decided before scanning to
	 * the next ";" so that a long run of such parameters costs linear time. */
	size_t t = token_end(s, len, i);
	size_t k = skip_cfws(s, len, t, unclosed);
	size_t e = t;
	if (t > i && (k >= len || s[k] == ';')) {
		e = t;
	} else {
		bool next_param = false;
		if (t > i && k < len && k > t) {
			size_t t2 = token_end(s, len, k);
			size_t k2 = skip_cfws(s, len, t2, unclosed);
			next_param = t2 > k && k2 < len && s[k2] == '=';
		}
		if (!next_param) {
			e = i;
			while (e < len && s[e] != ';')
				e++;
		}
	}
	while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t'))
		e--;
	buf_append(v, s + i, e - i);
	return e;
}

static void percent_decode(const char *s, buf *out)
{
	for (; *s; s++) {
		int h, l;
		if (*s == '%' && (h = strnum_hexdigit(s[1])) >= 0 && (l = strnum_hexdigit(s[2])) >= 0) {
			buf_putc(out, (char)(h * 16 + l));
			s += 2;
		} else {
			buf_putc(out, *s);
		}
	}
}

static int seg_cmp(const void *a, const void *b)
{
	const struct segment *x = a, *y = b;
	int r = strcmp(x->name, y->name);
	if (r != 0)
		return r;
	if (x->index != y->index)
		return x->index < y->index ? -1 : 1;
	/* "filename*=" (RFC 2231, UTF-8) is preferred over a plain "filename=" fallback */
	if (x->extended != y->extended)
		return x->extended ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

struct ordered {
	struct mime_param p;
	size_t order;
};

static int ordered_cmp(const void *a, const void *b)
{
	const struct ordered *x = a, *y = b;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* assemble - join the segments of one parameter (sorted, same name) into a UTF-8 value. */
static char *assemble(struct segment *seg, size_t n)
{
	buf raw, out;
	buf_init(&raw, 0);
	buf_init(&out, 0);
	char charset[65] = "";
	for (size_t i = 0; i < n; i++) {
		if (seg[i].index != i)
			break;	/* a gap: RFC 2231 says the rest is not part of the value */
		const char *v = seg[i].value;
		if (seg[i].extended) {
			if (i == 0) {
				const char *q1 = strchr(v, '\'');
				const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
				if (q2) {
					size_t cl = (size_t)(q1 - v);
					if (cl < sizeof(charset)) {
						memcpy(charset, v, cl);
						charset[cl] = '\0';
					}
					v = q2 + 1;
				}
			}
			percent_decode(v, &raw);
		} else {
			buf_puts(&raw, v);
		}
	}
	const char *r = raw.data ? raw.data : "";
	if (charset[0] == '\0' || mime_charset_to_utf8(charset, r, raw.len, &out) != 0) {
		buf_reset(&out);
		mime_utf8_sanitize(r, raw.len, &out);
	}
	char *res = xstrdup(out.data ? out.data : "");
	buf_free(&raw);
	buf_free(&out);
	return res;
}

int mime_content_parse(const char *s, size_t len, bool with_subtype, unsigned max_params,
		       struct mime_content *c)
{
	memset(c, 0, sizeof(*c));
	if (max_params == 0)
		max_params = 64;
	int rc = 0;
	size_t unclosed_at = SIZE_MAX, *unclosed = &unclosed_at;
	size_t i = skip_cfws(s, len, 0, unclosed);
	size_t t = token_end(s, len, i);
	if (t > i) {
		if (with_subtype) {
			size_t k = skip_cfws(s, len, t, unclosed);
			if (k < len && s[k] == '/') {
				size_t st = skip_cfws(s, len, k + 1, unclosed);
				size_t ste = token_end(s, len, st);
				if (ste > st) {
					c->type = lower_dup(s + i, t - i);
					c->subtype = lower_dup(s + st, ste - st);
					t = ste;
				}
			}
		} else {
			c->type = lower_dup(s + i, t - i);
		}
	}
	i = t;
	/* parameters */
	struct segment *segs = NULL;
	size_t nseg = 0, aseg = 0;
	buf v;
	buf_init(&v, 0);
	while (i < len) {
		/* skip to a parameter name; stray junk (a bad type, "; ;") is passed over */
		i = skip_cfws(s, len, i, unclosed);
		if (i < len && s[i] == ';') {
			i++;
			continue;
		}
		size_t ns = i, ne = token_end(s, len, i);
		size_t k = skip_cfws(s, len, ne, unclosed);
		if (ne == ns || k >= len || s[k] != '=') {
			/* not "name=": skip to the next ";" */
			while (i < len && s[i] != ';')
				i++;
			continue;
		}
		k = skip_cfws(s, len, k + 1, unclosed);
		buf_reset(&v);
		i = value_parse(s, len, k, &v, unclosed);
		if (nseg >= MAX_SEGMENTS) {
			rc = -1;
			continue;
		}
		/* RFC 2231 decoration: name*, name*N, name*N* */
		struct segment sg = { 0 };
		size_t nl = ne - ns;
		const char *star = memchr(s + ns, '*', nl);
		if (star) {
			size_t bl = (size_t)(star - (s + ns));
			const char *rest = star + 1;
			size_t rl = nl - bl - 1;
			if (rl > 0 && rest[rl - 1] == '*') {
				sg.extended = true;
				rl--;
			}
			uint64_t idx = 0;
			if (rl == 0 && bl > 0) {
				sg.extended = true;
				nl = bl;
			} else if (bl > 0 && strnum_u64(rest, rl, MAX_SEGMENTS, &idx) == 0) {
				sg.index = (unsigned)idx;
				sg.numbered = true;
				nl = bl;
			} else {
				sg.extended = false;	/* a literal '*' in an odd name */
			}
		}
		sg.order = nseg;
		sg.name = lower_dup(s + ns, nl);
		sg.value = xstrdup(v.data ? v.data : "");
		if (nseg == aseg) {
			aseg = aseg ? aseg * 2 : 8;
			segs = xreallocarray(segs, aseg, sizeof(*segs));
		}
		segs[nseg++] = sg;
	}
	buf_free(&v);
	if (nseg > 1)
		qsort(segs, nseg, sizeof(*segs), seg_cmp);
	size_t nparams = 0;
	struct ordered *out = NULL;
	for (size_t a = 0; a < nseg;) {
		size_t b = a + 1;
		while (b < nseg && strcmp(segs[a].name, segs[b].name) == 0)
			b++;
		/* duplicates of one index: keep the first after sorting */
		size_t w = a + 1;
		size_t first = segs[a].order;
		for (size_t r = a; r < b; r++)
			if (segs[r].order < first)
				first = segs[r].order;
		for (size_t r = a + 1; r < b; r++) {
			if (segs[r].index == segs[w - 1].index) {
				free(segs[r].name);
				free(segs[r].value);
			} else {
				segs[w++] = segs[r];
			}
		}
		if (nparams >= max_params) {
			rc = -1;
		} else {
			char *val;
			if (w - a == 1 && !segs[a].extended) {
				if (strcmp(segs[a].name, "boundary") == 0 ||
				    strstr(segs[a].value, "=?") == NULL) {
					val = xstrdup(segs[a].value);
				} else {
					buf o;
					buf_init(&o, 0);
					mime_encword_decode(segs[a].value, strlen(segs[a].value), &o);
					val = xstrdup(o.data ? o.data : "");
					buf_free(&o);
				}
			} else {
				val = assemble(segs + a, w - a);
			}
			out = xreallocarray(out, nparams + 1, sizeof(*out));
			out[nparams].p.name = xstrdup(segs[a].name);
			out[nparams].p.value = val;
			out[nparams].order = first;
			nparams++;
		}
		for (size_t r = a; r < w; r++) {
			free(segs[r].name);
			free(segs[r].value);
		}
		a = b;
	}
	/* parameters come out in the order the header gave them */
	if (nparams > 1)
		qsort(out, nparams, sizeof(*out), ordered_cmp);
	if (nparams > 0) {
		c->params = xreallocarray(NULL, nparams, sizeof(*c->params));
		for (size_t k = 0; k < nparams; k++)
			c->params[k] = out[k].p;
	}
	free(out);
	c->nparams = (unsigned)nparams;
	free(segs);
	return rc;
}

void mime_content_free(struct mime_content *c)
{
	free(c->type);
	free(c->subtype);
	for (unsigned i = 0; i < c->nparams; i++) {
		free(c->params[i].name);
		free(c->params[i].value);
	}
	free(c->params);
	memset(c, 0, sizeof(*c));
}

const char *mime_param_get(const struct mime_param *params, unsigned n, const char *name)
{
	for (unsigned i = 0; i < n; i++)
		if (strcmp(params[i].name, name) == 0)
			return params[i].value;
	return NULL;
}
