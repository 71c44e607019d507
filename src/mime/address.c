/* mime_address - RFC 5322 address lists for ENVELOPE */
#include "mime/address.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"

enum tok_type { T_ATOM, T_QUOTED, T_COMMENT, T_LITERAL, T_SPECIAL, T_END };

struct tok {
	enum tok_type type;
	char c;		/* the special character */
	size_t start, end;	/* span in the input */
	bool space_before;
};

struct lexer {
	const char *s;
	size_t len, i;
};

static bool is_special(char c)
{
	return strchr("()<>[]:;@\\,.\"", c) != NULL && c != '\0';
}

/* lex - next token. Comments are returned (a name may come from one). */
static struct tok lex(struct lexer *lx)
{
	struct tok t = { .type = T_END };
	size_t i = lx->i;
	while (i < lx->len && (lx->s[i] == ' ' || lx->s[i] == '\t' || lx->s[i] == '\r' ||
			       lx->s[i] == '\n' || lx->s[i] == '\0')) {
		i++;
		t.space_before = true;
	}
	t.start = i;
	if (i >= lx->len) {
		lx->i = i;
		t.end = i;
		return t;
	}
	char c = lx->s[i];
	if (c == '"' || c == '(' || c == '[') {
		char close = c == '"' ? '"' : c == '(' ? ')' : ']';
		int depth = 1;
		i++;
		while (i < lx->len) {
			if (lx->s[i] == '\\' && i + 1 < lx->len) {
				i += 2;
				continue;
			}
			if (c == '(' && lx->s[i] == '(')
				depth++;
			else if (lx->s[i] == close && --depth == 0)
				break;
			i++;
		}
		t.type = c == '"' ? T_QUOTED : c == '(' ? T_COMMENT : T_LITERAL;
		t.end = i < lx->len ? i + 1 : i;
	} else if (is_special(c)) {
		t.type = T_SPECIAL;
		t.c = c;
		t.end = i + 1;
	} else {
		while (i < lx->len && !is_special(lx->s[i]) && lx->s[i] != ' ' && lx->s[i] != '\t' &&
		       lx->s[i] != '\r' && lx->s[i] != '\n' && lx->s[i] != '\0')
			i++;
		t.type = T_ATOM;
		t.end = i;
	}
	lx->i = t.end;
	return t;
}

/* tok_text - append the token's meaning: quoted strings and comments lose their
 * delimiters and backslashes. */
static void tok_text(const struct lexer *lx, const struct tok *t, buf *out)
{
	const char *s = lx->s;
	if (t->type == T_QUOTED || t->type == T_COMMENT) {
		size_t e = t->end;
		char close = t->type == T_QUOTED ? '"' : ')';
		if (e > t->start + 1 && s[e - 1] == close)
			e--;
		for (size_t i = t->start + 1; i < e; i++) {
			if (s[i] == '\\' && i + 1 < e)
				i++;
			if (s[i] != '\0')
				buf_putc(out, s[i]);
		}
	} else {
		for (size_t i = t->start; i < t->end; i++)
			if (s[i] != '\0')
				buf_putc(out, s[i]);
	}
}

struct parser {
	struct lexer lx;
	struct tok cur;
	struct mime_address *list;
	unsigned count, max;
	bool full;
	buf comment;	/* the last comment seen in the current address */
};

static void advance(struct parser *p)
{
	for (;;) {
		p->cur = lex(&p->lx);
		if (p->cur.type != T_COMMENT)
			return;
		buf_reset(&p->comment);
		tok_text(&p->lx, &p->cur, &p->comment);
	}
}

static bool at_special(const struct parser *p, char c)
{
	return p->cur.type == T_SPECIAL && p->cur.c == c;
}

static char *buf_take(buf *b)
{
	char *r = xstrdup(b->data ? b->data : "");
	buf_reset(b);
	return r;
}

static struct mime_address *add(struct parser *p, enum mime_address_kind kind)
{
	if (p->count >= p->max) {
		p->full = true;
		return NULL;
	}
	p->list = xreallocarray(p->list, p->count + 1, sizeof(*p->list));
	struct mime_address *a = &p->list[p->count++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	return a;
}

/* parse_dotted - words and dots up to a stop character (local part or domain); blanks
 * and comments between them vanish (obs-local-part, obs-domain). */
static void parse_dotted(struct parser *p, buf *out, const char *stops)
{
	while (p->cur.type != T_END) {
		if (p->cur.type == T_SPECIAL && strchr(stops, p->cur.c))
			break;
		if (p->cur.type == T_SPECIAL && p->cur.c != '.')
			break;
		if (p->cur.type == T_LITERAL) {
			/* domain literal kept with its brackets */
			buf_append(out, p->lx.s + p->cur.start, p->cur.end - p->cur.start);
		} else {
			tok_text(&p->lx, &p->cur, out);
		}
		advance(p);
	}
}

/* parse_angle - after "<": [route ":"] local "@" domain ">". */
static void parse_angle(struct parser *p, char *name)
{
	buf route, local, host;
	buf_init(&route, 0);
	buf_init(&local, 0);
	buf_init(&host, 0);
	advance(p);
	if (at_special(p, '@')) {
		/* obsolete route: "@a,@b:" */
		while (at_special(p, '@') || at_special(p, ',')) {
			bool at = at_special(p, '@');
			if (route.len > 0 || !at)
				buf_putc(&route, at ? '@' : ',');
			else
				buf_putc(&route, '@');
			advance(p);
			if (at)
				parse_dotted(p, &route, ",:>");
		}
		if (at_special(p, ':'))
			advance(p);
	}
	parse_dotted(p, &local, "@>,;");
	bool have_host = false;
	if (at_special(p, '@')) {
		advance(p);
		parse_dotted(p, &host, ">,;");
		have_host = true;
	}
	/* skip to ">" (junk inside the brackets is dropped) */
	while (p->cur.type != T_END && !at_special(p, '>') && !at_special(p, ','))
		advance(p);
	if (at_special(p, '>'))
		advance(p);
	struct mime_address *a = add(p, MIME_ADDR_MAILBOX);
	if (a == NULL) {
		free(name);
	} else {
		a->name = name;
		a->route = route.len ? buf_take(&route) : NULL;
		a->mailbox = buf_take(&local);
		a->host = have_host ? buf_take(&host) : NULL;
	}
	buf_free(&route);
	buf_free(&local);
	buf_free(&host);
}

/* parse_mailbox_or_group - one element of the list; in_group: a ":" cannot start another
 * group. Returns with cur at ",", ";" or the end. */
static void parse_element(struct parser *p, bool in_group)
{
	buf phrase;
	buf_init(&phrase, 0);
	buf_reset(&p->comment);
	size_t words = 0;
	size_t first = p->cur.start;
	/* a phrase: words (atoms, quoted strings, dots) up to "<", ":", "@", "," or ";" */
	while (p->cur.type == T_ATOM || p->cur.type == T_QUOTED || at_special(p, '.') ||
	       p->cur.type == T_LITERAL) {
		if (words > 0 && p->cur.space_before)
			buf_putc(&phrase, ' ');
		tok_text(&p->lx, &p->cur, &phrase);
		words++;
		advance(p);
	}
	if (at_special(p, '<')) {
		char *name = words > 0 ? buf_take(&phrase) : NULL;
		buf_free(&phrase);
		parse_angle(p, name);
		/* a comment after the address may give the name */
		while (p->cur.type != T_END && !at_special(p, ',') && !at_special(p, ';'))
			advance(p);
		return;
	}
	if (at_special(p, ':') && !in_group) {
		struct mime_address *a = add(p, MIME_ADDR_GROUP_START);
		if (a)
			a->mailbox = buf_take(&phrase);
		buf_free(&phrase);
		advance(p);
		for (;;) {
			while (at_special(p, ','))
				advance(p);
			if (p->cur.type == T_END || at_special(p, ';'))
				break;
			parse_element(p, true);
			if (p->full)
				return;
		}
		if (at_special(p, ';'))
			advance(p);
		if (add(p, MIME_ADDR_GROUP_END) == NULL)
			return;
		return;
	}
	/* an addr-spec: the words were its local part, re-read without phrase spacing */
	if (words > 0 || at_special(p, '@')) {
		buf local, host;
		buf_init(&local, 0);
		buf_init(&host, 0);
		p->lx.i = first;
		advance(p);
		parse_dotted(p, &local, "@,;<:");
		bool have_host = false;
		if (at_special(p, '@')) {
			advance(p);
			parse_dotted(p, &host, ",;<>:");
			have_host = true;
		}
		/* "@" alone is junk, not an address */
		struct mime_address *a =
			local.len == 0 && host.len == 0 ? NULL : add(p, MIME_ADDR_MAILBOX);
		if (a) {
			a->mailbox = buf_take(&local);
			a->host = have_host ? buf_take(&host) : NULL;
			if (p->comment.len > 0)
				a->name = buf_take(&p->comment);
		}
		buf_free(&local);
		buf_free(&host);
	}
	buf_free(&phrase);
	/* junk up to the next element */
	while (p->cur.type != T_END && !at_special(p, ',') && !(in_group && at_special(p, ';'))) {
		if (at_special(p, ';') && !in_group) {
			advance(p);
			continue;
		}
		advance(p);
	}
}

int mime_address_list_parse(const char *s, size_t len, unsigned max,
			    struct mime_address **list_r, unsigned *count_r)
{
	struct parser p = { .lx = { s, len, 0 }, .max = max ? max : 1000 };
	buf_init(&p.comment, 0);
	advance(&p);
	while (p.cur.type != T_END && !p.full) {
		if (at_special(&p, ',') || at_special(&p, ';') || at_special(&p, '>')) {
			advance(&p);
			continue;
		}
		size_t before = p.lx.i;
		parse_element(&p, false);
		if (p.lx.i == before && p.cur.type != T_END && !at_special(&p, ','))
			advance(&p);	/* guarantee progress on junk */
	}
	buf_free(&p.comment);
	*list_r = p.list;
	*count_r = p.count;
	return p.full ? -1 : 0;
}

void mime_address_list_free(struct mime_address **list, unsigned count)
{
	if (*list == NULL)
		return;
	for (unsigned i = 0; i < count; i++) {
		free((*list)[i].name);
		free((*list)[i].route);
		free((*list)[i].mailbox);
		free((*list)[i].host);
	}
	free(*list);
	*list = NULL;
}
