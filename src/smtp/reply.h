/* smtp_reply - SMTP server replies (RFC 5321 §4.2), single- and multi-line, without I/O.
 * The SMTP client reads lines with a linereader (which bounds each line) and feeds them here
 * one at a time; this parser bounds the number of lines and the total text, checks the
 * grammar ("ddd-text" ... "ddd text", the same code on every line) and picks out the
 * enhanced status code (RFC 3463) of the first line. Replies come from untrusted servers:
 * everything is checked, nothing is trusted to be printable. */
#ifndef TERN_SMTP_REPLY_H
#define TERN_SMTP_REPLY_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define SMTP_REPLY_MAX_LINE 512		/* default line limit, with CRLF (RFC 5321 §4.5.3.1.5) */
#define SMTP_REPLY_MAX_LINES 100	/* default line count limit (EHLO lists are ~15) */

struct smtp_reply {
	int code;		/* 200..599 (first digit 2-5, second 0-5) */
	char enhanced[16];	/* "5.1.1" from the first line when its class matches the code,
				   else "" */
	size_t n_lines;
	buf text;		/* each line's text after "ddd-" / "ddd " (enhanced code kept),
				   joined with "\n"; NUL-terminated (buf_cstr), no NUL inside */
};

struct smtp_reply_parser {
	size_t max_lines;	/* 0: SMTP_REPLY_MAX_LINES */
	size_t max_text;	/* cap of reply.text; 0: max_lines * SMTP_REPLY_MAX_LINE */
	bool in_reply;		/* private: continuation lines seen, the last line is owed */
	struct smtp_reply reply;	/* the reply being built / the last complete one */
};

/* smtp_reply_parser_init - an empty parser with the caller's limits. Free with
 * smtp_reply_parser_free. */
void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_lines, size_t max_text);
void smtp_reply_parser_free(struct smtp_reply_parser *p);

/* smtp_reply_parse_line - feed one line line[0..len) without its CRLF (it may contain NUL
 * bytes: they are an error). Returns 1 when the line ended a reply: p->reply holds it and
 * stays valid until the next call; 0 when more lines are expected; -1 on a bad line, with
 * *error_r a static description ("not a reply line", "reply code changed within a
 * multi-line reply", "too many reply lines", "reply text too long", "NUL byte in reply").
 * After 1 or -1 the next line starts a new reply. */
int smtp_reply_parse_line(struct smtp_reply_parser *p, const char *line, size_t len,
			  const char **error_r);

/* smtp_reply_oneline - the reply as one printable line for results and logs:
 * "550 5.1.1 User unknown" (lines joined with a space, control and non-ASCII bytes as \xNN,
 * cut to about max bytes with "..."). Caller frees. */
char *smtp_reply_oneline(const struct smtp_reply *r, size_t max);

/* smtp_reply_is_enhanced - s[0..len) starts with an enhanced status code of class cls
 * ('2', '4', '5'): "c.ddd.ddd" (1-3 digits each, no leading zero required) followed by SP or
 * the end; its length goes to *codelen_r. */
bool smtp_reply_is_enhanced(const char *s, size_t len, char cls, size_t *codelen_r);

#endif
