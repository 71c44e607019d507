/* html - HTML to plain text for reading mail */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "client/html.h"
#include "lib/utf8.h"

struct emit {
	buf *out;
	size_t start;		/* where our text begins in out */
	unsigned newlines;	/* line ends at the end of the output so far */
	bool space;		/* a blank is pending before the next text */
};

/* put_utf8 - a decoded character reference; what is no character becomes U+FFFD */
static void put_utf8(buf *b, uint32_t cp)
{
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	utf8_append(b, cp);
}

/* text - visible text: a pending blank first (not at a line start) */
static void emit_text(struct emit *e, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (e->space && e->newlines == 0 && e->out->len > e->start)
		buf_putc(e->out, ' ');
	e->space = false;
	buf_append(e->out, s, n);
	e->newlines = 0;
}

/* breaks - make sure the output ends with at least n line ends (none at the very start) */
static void emit_breaks(struct emit *e, unsigned n)
{
	e->space = false;
	if (e->out->len == e->start)
		return;
	while (e->newlines < n) {
		buf_putc(e->out, '\n');
		e->newlines++;
	}
}

static const struct {
	const char *name;
	uint32_t cp;
} entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "apos", '\'' },
	{ "nbsp", 0xa0 }, { "copy", 0xa9 }, { "reg", 0xae }, { "trade", 0x2122 },
	{ "mdash", 0x2014 }, { "ndash", 0x2013 }, { "hellip", 0x2026 }, { "euro", 0x20ac },
	{ "pound", 0xa3 }, { "yen", 0xa5 }, { "cent", 0xa2 }, { "sect", 0xa7 }, { "deg", 0xb0 },
	{ "laquo", 0xab }, { "raquo", 0xbb }, { "lsquo", 0x2018 }, { "rsquo", 0x2019 },
	{ "ldquo", 0x201c }, { "rdquo", 0x201d }, { "bull", 0x2022 }, { "middot", 0xb7 },
	{ "times", 0xd7 }, { "divide", 0xf7 }, { "shy", 0xad }, { "zwnj", 0x200c },
	{ "eacute", 0xe9 }, { "egrave", 0xe8 }, { "agrave", 0xe0 }, { "aacute", 0xe1 },
	{ "uuml", 0xfc }, { "ouml", 0xf6 }, { "auml", 0xe4 }, { "Uuml", 0xdc }, { "Ouml", 0xd6 },
	{ "Auml", 0xc4 }, { "szlig", 0xdf }, { "ccedil", 0xe7 }, { "ntilde", 0xf1 },
};

/* entity - decode the reference at s[0..n) starting with '&' into out; returns its
 * length, or 0 when it is not one (the '&' is then text) */
static size_t entity(const char *s, size_t n, buf *out)
{
	size_t i = 1;
	uint32_t cp = 0;
	if (i < n && s[i] == '#') {
		i++;
		bool hex = i < n && (s[i] == 'x' || s[i] == 'X');
		if (hex)
			i++;
		size_t digits = 0;
		while (i < n && (hex ? isxdigit((unsigned char)s[i]) : isdigit((unsigned char)s[i]))) {
			unsigned d = isdigit((unsigned char)s[i]) ? (unsigned)(s[i] - '0')
				     : (unsigned)(tolower((unsigned char)s[i]) - 'a' + 10);
			if (cp <= 0x10ffff)
				cp = cp * (hex ? 16 : 10) + d;
			i++;
			digits++;
		}
		if (digits == 0)
			return 0;
		if (i < n && s[i] == ';')
			i++;
		put_utf8(out, cp == 0xa0 ? ' ' : cp);
		return i;
	}
	size_t start = i;
	while (i < n && i - start < 10 && isalnum((unsigned char)s[i]))
		i++;
	size_t len = i - start;
	for (size_t k = 0; k < sizeof(entities) / sizeof(entities[0]); k++) {
		if (strlen(entities[k].name) == len && memcmp(entities[k].name, s + start, len) == 0) {
			if (i < n && s[i] == ';')
				i++;
			put_utf8(out, entities[k].cp == 0xa0 ? ' ' : entities[k].cp);
			return i;
		}
	}
	return 0;
}

/* tag_name - the lowercase name of the tag at s (after '<' and an optional '/') */
static size_t tag_name(const char *s, size_t n, char *name, size_t namesz)
{
	size_t i = 0;
	while (i < n && i + 1 < namesz && isalnum((unsigned char)s[i])) {
		name[i] = (char)tolower((unsigned char)s[i]);
		i++;
	}
	name[i] = '\0';
	return i;
}

static bool name_in(const char *name, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(name, *list))
			return true;
	return false;
}

/* skip_to_close - from p, the position after "</name ...>", or n */
static size_t skip_to_close(const char *s, size_t n, size_t p, const char *name)
{
	size_t nl = strlen(name);
	for (; p + 2 + nl <= n; p++) {
		if (s[p] == '<' && s[p + 1] == '/' && strncasecmp(s + p + 2, name, nl) == 0) {
			const char *gt = memchr(s + p, '>', n - p);
			return gt ? (size_t)(gt - s) + 1 : n;
		}
	}
	return n;
}

void html_to_text(const char *s, size_t n, buf *out)
{
	static const char *const para[] = { "p", "div", "h1", "h2", "h3", "h4", "h5", "h6",
					    "blockquote", "table", "ul", "ol", "pre", "hr",
					    "section", "article", "header", "footer", "dl", NULL };
	static const char *const line[] = { "br", "tr", "li", "dt", "dd", "address", NULL };
	static const char *const hidden[] = { "script", "style", "head", "title", NULL };
	struct emit e = { .out = out, .start = out->len };
	bool pre = false;
	buf text;
	buf_init(&text, 0);
	size_t i = 0;
	while (i < n) {
		char c = s[i];
		if (c == '<') {
			if (i + 3 < n && !strncmp(s + i, "<!--", 4)) {
				const char *end = memmem(s + i + 4, n - i - 4, "-->", 3);
				i = end ? (size_t)(end - s) + 3 : n;
				continue;
			}
			bool closing = i + 1 < n && s[i + 1] == '/';
			size_t ns = i + 1 + (closing ? 1 : 0);
			char name[16];
			size_t nl = tag_name(s + ns, n - ns, name, sizeof(name));
			if (nl == 0 && !(ns < n && (s[ns] == '!' || s[ns] == '?'))) {
				emit_text(&e, "<", 1);	/* a lone '<' is text */
				i++;
				continue;
			}
			/* find the tag's end, skipping quoted attribute values */
			size_t j = ns + nl;
			char q = 0;
			while (j < n && (q || s[j] != '>')) {
				if (q && s[j] == q)
					q = 0;
				else if (!q && (s[j] == '"' || s[j] == '\''))
					q = s[j];
				j++;
			}
			i = j < n ? j + 1 : n;
			if (!closing && name_in(name, hidden)) {
				i = skip_to_close(s, n, i, name);
				continue;
			}
			if (!strcmp(name, "pre"))
				pre = !closing;
			if (!strcmp(name, "li") && !closing) {
				emit_breaks(&e, 1);
				emit_text(&e, "* ", 2);
				e.space = false;
			} else if (name_in(name, para)) {
				emit_breaks(&e, 2);
			} else if (name_in(name, line)) {
				if (!strcmp(name, "br") && e.out->len > e.start && e.newlines < 2) {
					buf_putc(e.out, '\n');
					e.newlines++;
					e.space = false;
				} else {
					emit_breaks(&e, 1);
				}
			} else if ((!strcmp(name, "td") || !strcmp(name, "th")) && closing) {
				e.space = true;
			}
			continue;
		}
		if (c == '&') {
			buf_reset(&text);
			size_t used = entity(s + i, n - i, &text);
			if (used > 0) {
				emit_text(&e, text.data, text.len);
				i += used;
				continue;
			}
			emit_text(&e, "&", 1);
			i++;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f') {
			if (pre) {
				if (c == '\n') {
					/* not before the first text: no leading blank line */
					if (e.out->len > e.start) {
						buf_putc(e.out, '\n');
						e.newlines++;
					}
				} else if (c != '\r') {
					buf_putc(e.out, c);
					e.newlines = 0;
				}
			} else {
				e.space = true;
			}
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && s[j] != '<' && s[j] != '&' && s[j] != ' ' && s[j] != '\t' &&
		       s[j] != '\r' && s[j] != '\n' && s[j] != '\f')
			j++;
		emit_text(&e, s + i, j - i);
		i = j;
	}
	buf_free(&text);
	/* trailing blanks and line ends off, then exactly one line end */
	while (out->len > e.start && (out->data[out->len - 1] == '\n' ||
				      out->data[out->len - 1] == ' '))
		out->len--;
	if (out->data)
		out->data[out->len] = '\0';
	if (out->len > e.start)
		buf_putc(out, '\n');
}
