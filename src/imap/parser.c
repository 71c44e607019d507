/* imap/parser - incremental IMAP command reader (see parser.h) */
#include "imap/parser.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"

const struct imap_parser_limits imap_parser_default_limits = {
	.max_line = 64 * 1024,
	.max_inline_literal = 64 * 1024,
	.max_literal_total = 1024 * 1024,
	.max_literal = 50 * 1024 * 1024,
	.max_depth = 32,
	.max_args = 10000,
};

enum pstate {
	S_TAG,			/* reading the tag */
	S_NAME,			/* reading the command name */
	S_SEP,			/* after a token: SP, ')' or the line end */
	S_ARG,			/* after SP: a token must start */
	S_LIST_FIRST,		/* after '(': a token or ')' */
	S_ATOM,
	S_QUOTED,
	S_QUOTED_ESC,
	S_TILDE,		/* '~' read: '{' must follow */
	S_LIT_HDR,		/* digits of {n} */
	S_LIT_PLUS,		/* '+' read: '}' must follow */
	S_LIT_CR,		/* '}' read: CRLF must follow */
	S_LIT_LF,
	S_LIT_DATA,
	S_CR,			/* CR at the line end: LF must follow */
	S_DONE,			/* a command is ready */
	S_STREAM_WAIT,		/* a large literal: the caller decides */
	S_SKIP_LINE,		/* after an error: to the end of the line */
	S_SKIP_LITERAL,		/* after an error: a literal's bytes */
};

struct frame {
	struct imap_arg *items;
	size_t n, cap;
};

struct imap_parser {
	struct imap_parser_limits lim;
	enum pstate state;
	struct imap_command cmd;
	char *tag, *name;

	struct frame *stack;		/* stack[0]: the command's arguments */
	size_t depth;			/* lists open */
	size_t n_args;			/* arguments so far, all levels */
	size_t line_len;		/* bytes outside literals */
	size_t literal_total;

	buf tok;			/* the token being read (tag, name, atom, quoted) */
	size_t bracket;			/* '[' open inside an atom */

	uint64_t lit_size, lit_left;
	bool lit_sync, lit_binary, lit_digits;
	char *lit_data;
	size_t lit_len;

	const char *error;
	char *error_tag;
	bool fatal;
	bool failed;			/* the partial command is kept for the caller to read */
	char skip_tail[32];		/* the end of a skipped line: "{n+}" means bytes follow */
	size_t skip_tail_len;
};

static char *xmemdup0(const void *p, size_t n)
{
	char *s = xmalloc(n + 1);
	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = xcalloc(1, sizeof(*p));
	p->lim = limits != NULL ? *limits : imap_parser_default_limits;
	if (p->lim.max_depth == 0)
		p->lim.max_depth = 1;
	p->stack = xcalloc(p->lim.max_depth + 1, sizeof(*p->stack));
	buf_init(&p->tok, 0);
	p->state = S_TAG;
	return p;
}

/* args_free - arguments may hold a password (LOGIN, SASL-IR): wiped before they go */
static void args_free(struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (a[i].str != NULL)
			explicit_bzero(a[i].str, a[i].len);
		free(a[i].str);
		args_free(a[i].list, a[i].n_list);
	}
	free(a);
}

/* clear_command - drop the tag, name and every argument (the limits stay) */
static void clear_command(struct imap_parser *p)
{
	for (size_t d = 0; d <= p->depth; d++) {
		args_free(p->stack[d].items, p->stack[d].n);
		memset(&p->stack[d], 0, sizeof(p->stack[d]));
	}
	p->depth = 0;
	p->n_args = 0;
	p->line_len = 0;
	p->literal_total = 0;
	free(p->tag);
	free(p->name);
	p->tag = p->name = NULL;
	memset(&p->cmd, 0, sizeof(p->cmd));
	if (p->tok.data != NULL)
		explicit_bzero(p->tok.data, p->tok.cap);
	buf_reset(&p->tok);
	p->bracket = 0;
	if (p->lit_data != NULL)
		explicit_bzero(p->lit_data, p->lit_len);
	free(p->lit_data);
	p->lit_data = NULL;
	p->lit_len = 0;
	p->failed = false;
}

void imap_parser_reset(struct imap_parser *p)
{
	clear_command(p);
	p->state = S_TAG;
}

void imap_parser_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;
	if (p == NULL)
		return;
	clear_command(p);
	free(p->stack);
	buf_free(&p->tok);
	free(p->error_tag);
	free(p);
	*pp = NULL;
}

const struct imap_command *imap_parser_command(const struct imap_parser *p)
{
	return &p->cmd;
}

const char *imap_parser_error(const struct imap_parser *p)
{
	return p->error != NULL ? p->error : "";
}

const char *imap_parser_error_tag(const struct imap_parser *p)
{
	return p->error_tag;
}

bool imap_parser_fatal(const struct imap_parser *p)
{
	return p->fatal;
}

uint64_t imap_parser_literal_size(const struct imap_parser *p)
{
	return p->lit_size;
}

bool imap_parser_literal_sync(const struct imap_parser *p)
{
	return p->lit_sync;
}

bool imap_parser_literal_binary(const struct imap_parser *p)
{
	return p->lit_binary;
}

/* sync_command - make p->cmd show what has been read */
static void sync_command(struct imap_parser *p)
{
	p->cmd.tag = p->tag;
	p->cmd.name = p->name;
	p->cmd.args = p->stack[0].items;
	p->cmd.n_args = p->stack[0].n;
}

/* fail - record an error; next, skip to the end of the line (unless the caller says the
 * line has ended already) */
static enum imap_parse_result fail(struct imap_parser *p, const char *why, enum pstate next)
{
	p->error = why;
	p->failed = true;
	free(p->error_tag);
	p->error_tag = p->tag != NULL ? xstrdup(p->tag) : NULL;
	sync_command(p);
	p->state = next;
	p->skip_tail_len = 0;
	return IMAP_PARSE_ERROR;
}

/* push_arg - append an argument to the innermost open list; NULL when over max_args */
static struct imap_arg *push_arg(struct imap_parser *p, enum imap_arg_type type)
{
	if (p->n_args >= p->lim.max_args)
		return NULL;
	struct frame *f = &p->stack[p->depth];
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 4;
		f->items = xreallocarray(f->items, f->cap, sizeof(*f->items));
	}
	struct imap_arg *a = &f->items[f->n++];
	memset(a, 0, sizeof(*a));
	a->type = type;
	p->n_args++;
	return a;
}

/* finish_token - the atom or quoted string in tok becomes an argument (or the tag/name) */
static bool finish_token(struct imap_parser *p, enum imap_arg_type type)
{
	struct imap_arg *a = push_arg(p, type);
	if (a == NULL)
		return false;
	a->len = p->tok.len;
	a->str = xmemdup0(p->tok.data != NULL ? p->tok.data : "", p->tok.len);
	buf_reset(&p->tok);
	return true;
}

static bool is_tag_char(unsigned char c)
{
	/* ASTRING-CHAR except "+": CHAR except atom-specials, but ']' allowed */
	return c > ' ' && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' &&
	       c != '*' && c != '"' && c != '\\' && c != '+';
}

static bool is_name_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* is_atom_char - what an argument atom may hold: any CHAR but SP, CTL, '(', ')', '{', '"'
 * ('\\' for flags, '*' and '%' for patterns and sequence sets, ']' as ASTRING-CHAR) */
static bool is_atom_char(unsigned char c)
{
	return c > ' ' && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

/* end_line - CRLF (or a bare LF) at the end of the command */
static enum imap_parse_result end_line(struct imap_parser *p)
{
	if (p->depth > 0)
		return fail(p, "Unbalanced parentheses", S_TAG);
	sync_command(p);
	p->state = S_DONE;
	return IMAP_PARSE_COMMAND;
}

/* literal_done - all n bytes are in: the literal becomes an argument */
static void literal_done(struct imap_parser *p)
{
	struct imap_arg *a = push_arg(p, IMAP_ARG_LITERAL);	/* room checked at the header */
	a->literal8 = p->lit_binary;
	a->len = p->lit_len;
	p->lit_data[p->lit_len] = '\0';
	a->str = p->lit_data;
	p->lit_data = NULL;
	p->lit_len = 0;
	p->state = S_SEP;
}

/* literal_header_done - "{n}CRLF" read: decide what happens to the n bytes */
static enum imap_parse_result literal_header_done(struct imap_parser *p)
{
	uint64_t n = p->lit_size;
	/* a synchronising literal we refuse is never sent: the command simply ends here */
	enum pstate after_refusal = p->lit_sync ? S_TAG : S_SKIP_LITERAL;
	p->lit_left = n;
	if (n > p->lim.max_literal) {
		if (!p->lit_sync)
			p->fatal = true;
		return fail(p, "Literal too large", after_refusal);
	}
	if (n > p->lim.max_inline_literal) {
		if (p->depth > 0)
			return fail(p, "Literal too large here", after_refusal);
		sync_command(p);
		p->state = S_STREAM_WAIT;
		return IMAP_PARSE_LITERAL_STREAM;
	}
	if (p->literal_total + n > p->lim.max_literal_total)
		return fail(p, "Too much literal data in one command", after_refusal);
	if (p->n_args >= p->lim.max_args)
		return fail(p, "Too many arguments", after_refusal);
	p->literal_total += (size_t)n;
	p->lit_data = xmalloc((size_t)n + 1);
	p->lit_len = 0;
	p->state = S_LIT_DATA;
	if (n == 0)
		literal_done(p);
	return p->lit_sync ? IMAP_PARSE_CONTINUE : IMAP_PARSE_MORE;
}

void imap_parser_stream_done(struct imap_parser *p)
{
	if (p->state != S_STREAM_WAIT)
		return;
	struct imap_arg *a = push_arg(p, IMAP_ARG_LITERAL);
	if (a == NULL) {
		fail(p, "Too many arguments", S_SKIP_LINE);
		return;
	}
	a->literal8 = p->lit_binary;
	a->streamed = true;
	a->stream_size = p->lit_size;
	p->state = S_SEP;
}

void imap_parser_stream_reject(struct imap_parser *p)
{
	if (p->state != S_STREAM_WAIT)
		return;
	bool sync = p->lit_sync;
	clear_command(p);
	if (sync) {
		p->state = S_TAG;
	} else {
		p->lit_left = p->lit_size;
		p->skip_tail_len = 0;
		p->state = S_SKIP_LITERAL;
	}
}

/* skip_tail_literal - the bytes of the non-synchronising literal that ends the skipped
 * line ("{n+}"), or 0 (a synchronising literal is not sent: the client waits for "+") */
static uint64_t skip_tail_literal(const struct imap_parser *p)
{
	size_t n = p->skip_tail_len;
	const char *t = p->skip_tail;
	if (n > 0 && t[n - 1] == '\r')
		n--;
	if (n < 4 || t[n - 1] != '}' || t[n - 2] != '+')
		return 0;
	size_t i = n - 2;
	uint64_t v = 0, mul = 1;
	size_t digits = 0;
	while (i > 0 && t[i - 1] >= '0' && t[i - 1] <= '9' && digits < 19) {
		v += (uint64_t)(t[i - 1] - '0') * mul;
		mul *= 10;
		digits++;
		i--;
	}
	if (digits == 0 || i == 0 || t[i - 1] != '{')
		return 0;
	return v;
}

/* fail_at - an error at byte c: skip the rest of the line unless c ended it */
static enum imap_parse_result fail_at(struct imap_parser *p, const char *why, unsigned char c)
{
	return fail(p, why, c == '\n' ? S_TAG : S_SKIP_LINE);
}

/* open_list - '(' read */
static enum imap_parse_result open_list(struct imap_parser *p)
{
	if (p->depth >= p->lim.max_depth)
		return fail(p, "Too deeply nested", S_SKIP_LINE);
	if (push_arg(p, IMAP_ARG_LIST) == NULL)
		return fail(p, "Too many arguments", S_SKIP_LINE);
	p->depth++;
	memset(&p->stack[p->depth], 0, sizeof(p->stack[p->depth]));
	p->state = S_LIST_FIRST;
	return IMAP_PARSE_MORE;
}

/* close_list - ')' read: the innermost list's items move into its argument */
static enum imap_parse_result close_list(struct imap_parser *p)
{
	if (p->depth == 0)
		return fail(p, "Unbalanced parentheses", S_SKIP_LINE);
	struct frame *f = &p->stack[p->depth];
	struct frame *parent = &p->stack[p->depth - 1];
	struct imap_arg *list = &parent->items[parent->n - 1];
	list->list = f->items;
	list->n_list = f->n;
	memset(f, 0, sizeof(*f));
	p->depth--;
	p->state = S_SEP;
	return IMAP_PARSE_MORE;
}

/* token_start - the first byte of an argument (after SP or '(') */
static enum imap_parse_result token_start(struct imap_parser *p, unsigned char c)
{
	switch (c) {
	case '(':
		return open_list(p);
	case '"':
		p->state = S_QUOTED;
		return IMAP_PARSE_MORE;
	case '~':
		p->state = S_TILDE;
		return IMAP_PARSE_MORE;
	case '{':
		p->lit_binary = false;
		goto literal;
	default:
		break;
	}
	if (c >= 0x80)
		return fail(p, "8-bit byte in an atom", S_SKIP_LINE);
	if (!is_atom_char(c))
		return fail_at(p, "Bad argument", c);
	buf_putc(&p->tok, (char)c);
	if (c == '[')
		p->bracket = 1;
	p->state = S_ATOM;
	return IMAP_PARSE_MORE;
literal:
	p->lit_size = 0;
	p->lit_sync = true;
	p->lit_digits = false;
	p->state = S_LIT_HDR;
	return IMAP_PARSE_MORE;
}

/* after_token - a byte right after a complete argument, the tag's name, or a list */
static enum imap_parse_result after_token(struct imap_parser *p, unsigned char c)
{
	switch (c) {
	case ' ':
		p->state = S_ARG;
		return IMAP_PARSE_MORE;
	case ')':
		return close_list(p);
	case '\r':
		p->state = S_CR;
		return IMAP_PARSE_MORE;
	case '\n':
		return end_line(p);
	default:
		return fail(p, "Missing space between arguments", S_SKIP_LINE);
	}
}

/* step - one byte of the command outside literal data */
static enum imap_parse_result step(struct imap_parser *p, unsigned char c)
{
	if (p->state != S_SKIP_LINE && ++p->line_len > p->lim.max_line)
		return fail_at(p, "Command line too long", c);

	switch (p->state) {
	case S_TAG:
		if (c == ' ') {
			if (p->tok.len == 0)
				return fail(p, "Missing tag", S_SKIP_LINE);
			p->tag = xmemdup0(p->tok.data, p->tok.len);
			buf_reset(&p->tok);
			p->state = S_NAME;
			return IMAP_PARSE_MORE;
		}
		if (is_tag_char(c)) {
			buf_putc(&p->tok, (char)c);
			return IMAP_PARSE_MORE;
		}
		if (c != '\r' && c != '\n')
			return fail_at(p, "Bad tag", c);
		if (p->tok.len == 0)
			return fail_at(p, "Empty line", c);
		p->tag = xmemdup0(p->tok.data, p->tok.len);	/* "a1" alone: answer a1 BAD */
		return fail_at(p, "Missing command", c);
	case S_NAME:
		if (is_name_char(c)) {
			buf_putc(&p->tok, (char)c);
			return IMAP_PARSE_MORE;
		}
		if (p->tok.len == 0)
			return fail_at(p, "Missing command", c);
		if (c != ' ' && c != '\r' && c != '\n')
			return fail(p, "Bad command name", S_SKIP_LINE);
		p->name = xmemdup0(p->tok.data, p->tok.len);
		buf_reset(&p->tok);
		sync_command(p);
		return after_token(p, c);
	case S_SEP:
		return after_token(p, c);
	case S_ARG:
		if (c == '\r' || c == '\n')	/* a trailing space: tolerated */
			return after_token(p, c);
		if (c == ')')
			return fail(p, "Space before ')'", S_SKIP_LINE);
		return token_start(p, c);
	case S_LIST_FIRST:
		if (c == ')')
			return close_list(p);
		if (c == ' ')
			return fail(p, "Space after '('", S_SKIP_LINE);
		return token_start(p, c);
	case S_ATOM:
		if (p->bracket > 0) {
			if (c == '\r' || c == '\n')
				return fail_at(p, "Unterminated [", c);
			if (c < ' ' || c >= 0x7f)
				return fail(p, "Bad byte inside []", S_SKIP_LINE);
			if (c == '[')
				p->bracket++;
			else if (c == ']')
				p->bracket--;
			buf_putc(&p->tok, (char)c);
			return IMAP_PARSE_MORE;
		}
		if (c == '[') {
			p->bracket = 1;
			buf_putc(&p->tok, (char)c);
			return IMAP_PARSE_MORE;
		}
		if (is_atom_char(c)) {
			buf_putc(&p->tok, (char)c);
			return IMAP_PARSE_MORE;
		}
		if (c >= 0x80)
			return fail(p, "8-bit byte in an atom", S_SKIP_LINE);
		if (!finish_token(p, IMAP_ARG_ATOM))
			return fail_at(p, "Too many arguments", c);
		return after_token(p, c);
	case S_QUOTED:
		if (c == '"') {
			if (!finish_token(p, IMAP_ARG_QUOTED))
				return fail(p, "Too many arguments", S_SKIP_LINE);
			p->state = S_SEP;
		} else if (c == '\\') {
			p->state = S_QUOTED_ESC;
		} else if (c == '\r' || c == '\n' || c == '\0') {
			return fail_at(p, "Unterminated quoted string", c);
		} else {
			buf_putc(&p->tok, (char)c);
		}
		return IMAP_PARSE_MORE;
	case S_QUOTED_ESC:
		if (c != '"' && c != '\\')
			return fail_at(p, "Bad escape in a quoted string", c);
		buf_putc(&p->tok, (char)c);
		p->state = S_QUOTED;
		return IMAP_PARSE_MORE;
	case S_TILDE:
		if (c != '{')
			return fail_at(p, "Bad literal8", c);
		p->lit_binary = true;
		p->lit_size = 0;
		p->lit_sync = true;
		p->lit_digits = false;
		p->state = S_LIT_HDR;
		return IMAP_PARSE_MORE;
	case S_LIT_HDR:
		if (c >= '0' && c <= '9') {
			if (p->lit_size > (UINT64_MAX - 9) / 10)
				return fail(p, "Literal size too large", S_SKIP_LINE);
			p->lit_size = p->lit_size * 10 + (uint64_t)(c - '0');
			p->lit_digits = true;
			return IMAP_PARSE_MORE;
		}
		if (!p->lit_digits || (c != '}' && c != '+'))
			return fail_at(p, "Bad literal size", c);
		if (c == '+') {
			p->lit_sync = false;
			p->state = S_LIT_PLUS;
		} else {
			p->state = S_LIT_CR;
		}
		return IMAP_PARSE_MORE;
	case S_LIT_PLUS:
		if (c != '}')
			return fail_at(p, "Bad literal size", c);
		p->state = S_LIT_CR;
		return IMAP_PARSE_MORE;
	case S_LIT_CR:
		if (c == '\r') {
			p->state = S_LIT_LF;
			return IMAP_PARSE_MORE;
		}
		if (c == '\n')
			return literal_header_done(p);
		return fail(p, "A literal must end its line", S_SKIP_LINE);
	case S_LIT_LF:
		if (c != '\n')
			return fail(p, "A literal must end its line", S_SKIP_LINE);
		return literal_header_done(p);
	case S_CR:
		if (c != '\n')
			return fail(p, "CR without LF", S_SKIP_LINE);
		return end_line(p);
	case S_SKIP_LINE:
		if (c == '\n') {
			uint64_t n = skip_tail_literal(p);
			p->skip_tail_len = 0;
			if (n > 0) {
				p->lit_left = n;
				p->state = S_SKIP_LITERAL;
			} else {
				p->state = S_TAG;
			}
		} else {
			if (p->skip_tail_len == sizeof(p->skip_tail)) {
				memmove(p->skip_tail, p->skip_tail + 1, sizeof(p->skip_tail) - 1);
				p->skip_tail_len--;
			}
			p->skip_tail[p->skip_tail_len++] = (char)c;
		}
		return IMAP_PARSE_MORE;
	case S_LIT_DATA:
	case S_SKIP_LITERAL:
	case S_DONE:
	case S_STREAM_WAIT:
		break;
	}
	return IMAP_PARSE_MORE;
}

enum imap_parse_result imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
					size_t *used_r)
{
	const unsigned char *d = data;
	size_t i = 0;
	*used_r = 0;
	if (p->state == S_DONE)
		return IMAP_PARSE_COMMAND;
	if (p->state == S_STREAM_WAIT)
		return IMAP_PARSE_LITERAL_STREAM;
	/* what an error left behind (readable until this feed) goes now */
	if (p->failed)
		clear_command(p);

	while (i < len) {
		if (p->state == S_LIT_DATA) {
			size_t take = len - i;
			if (take > p->lit_left)
				take = (size_t)p->lit_left;
			if (!p->lit_binary && memchr(d + i, '\0', take) != NULL) {
				*used_r = i;
				return fail(p, "NUL byte in a literal (use literal8)",
					    S_SKIP_LITERAL);
			}
			memcpy(p->lit_data + p->lit_len, d + i, take);
			p->lit_len += take;
			p->lit_left -= take;
			i += take;
			if (p->lit_left == 0)
				literal_done(p);
			continue;
		}
		if (p->state == S_SKIP_LITERAL) {
			size_t take = len - i;
			if (take > p->lit_left)
				take = (size_t)p->lit_left;
			p->lit_left -= take;
			i += take;
			if (p->lit_left == 0)
				p->state = S_SKIP_LINE;
			continue;
		}
		enum imap_parse_result r = step(p, d[i++]);
		if (r != IMAP_PARSE_MORE) {
			*used_r = i;
			return r;
		}
	}
	*used_r = len;
	return IMAP_PARSE_MORE;
}

/* ---- helpers for command handlers ---- */

bool imap_arg_is_atom(const struct imap_arg *a, const char *s)
{
	return a != NULL && a->type == IMAP_ARG_ATOM && strcasecmp(a->str, s) == 0;
}

bool imap_arg_is_astring(const struct imap_arg *a)
{
	return a != NULL && (a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_QUOTED ||
			     (a->type == IMAP_ARG_LITERAL && !a->streamed));
}

bool imap_arg_is_nil(const struct imap_arg *a)
{
	return imap_arg_is_atom(a, "NIL");
}

/* seq_number - nz-number or "*" at *sp; advances it. 0, or -1 */
static int seq_number(const char **sp, uint32_t *v_r)
{
	const char *s = *sp;
	if (*s == '*') {
		*v_r = IMAP_SEQ_STAR;
		*sp = s + 1;
		return 0;
	}
	if (*s < '1' || *s > '9')
		return -1;
	uint64_t v = 0;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX - 1)	/* UINT32_MAX is "*" */
			return -1;
		s++;
	}
	*v_r = (uint32_t)v;
	*sp = s;
	return 0;
}

int imap_seqset_parse(const char *s, size_t max_ranges, struct imap_seqset *set,
		      const char **error_r)
{
	memset(set, 0, sizeof(*set));
	if (strcmp(s, "$") == 0) {
		set->saved = true;
		return 0;
	}
	size_t cap = 0;
	for (;;) {
		uint32_t a, b;
		if (seq_number(&s, &a) < 0)
			goto bad;
		b = a;
		if (*s == ':') {
			s++;
			if (seq_number(&s, &b) < 0)
				goto bad;
		}
		if (set->n == max_ranges) {
			*error_r = "Too many ranges in the sequence set";
			imap_seqset_free(set);
			return -1;
		}
		if (set->n == cap) {
			cap = cap ? cap * 2 : 4;
			set->ranges = xreallocarray(set->ranges, cap, sizeof(*set->ranges));
		}
		set->ranges[set->n].first = a < b ? a : b;
		set->ranges[set->n].last = a < b ? b : a;
		set->n++;
		if (*s == '\0')
			return 0;
		if (*s != ',')
			goto bad;
		s++;
	}
bad:
	*error_r = "Invalid sequence set";
	imap_seqset_free(set);
	return -1;
}

bool imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint32_t a = set->ranges[i].first == IMAP_SEQ_STAR ? star : set->ranges[i].first;
		uint32_t b = set->ranges[i].last == IMAP_SEQ_STAR ? star : set->ranges[i].last;
		if ((v >= a && v <= b) || (v >= b && v <= a))
			return true;
	}
	return false;
}

/* cmp_range - ranges by their first end (the first member) */
static int cmp_range(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

void imap_seqset_normalize(struct imap_seqset *set, uint32_t star)
{
	for (size_t i = 0; i < set->n; i++) {
		uint32_t a = set->ranges[i].first == IMAP_SEQ_STAR ? star : set->ranges[i].first;
		uint32_t b = set->ranges[i].last == IMAP_SEQ_STAR ? star : set->ranges[i].last;
		set->ranges[i].first = a < b ? a : b;
		set->ranges[i].last = a < b ? b : a;
	}
	/* sorted, then merged */
	if (set->n > 1)
		qsort(set->ranges, set->n, sizeof(*set->ranges), cmp_range);
	size_t m = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (m > 0 && set->ranges[i].first <= set->ranges[m - 1].last + (uint64_t)1) {
			if (set->ranges[i].last > set->ranges[m - 1].last)
				set->ranges[m - 1].last = set->ranges[i].last;
			continue;
		}
		set->ranges[m++] = set->ranges[i];
	}
	set->n = m;
}

void imap_seqset_free(struct imap_seqset *set)
{
	free(set->ranges);
	memset(set, 0, sizeof(*set));
}
