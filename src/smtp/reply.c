/* smtp/reply - parse SMTP server replies line by line */
#include "smtp/reply.h"

#include <stdio.h>
#include <string.h>

#include "lib/xmalloc.h"

void smtp_reply_parser_init(struct smtp_reply_parser *p, size_t max_lines, size_t max_text)
{
	memset(p, 0, sizeof(*p));
	p->max_lines = max_lines ? max_lines : SMTP_REPLY_MAX_LINES;
	p->max_text = max_text ? max_text : p->max_lines * SMTP_REPLY_MAX_LINE;
	buf_init(&p->reply.text, p->max_text);
}

void smtp_reply_parser_free(struct smtp_reply_parser *p)
{
	buf_free(&p->reply.text);
}

/* digits - count of decimal digits at s[0..len), at most max+1 looked at */
static size_t digits(const char *s, size_t len, size_t max)
{
	size_t n = 0;
	while (n < len && n <= max && s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

/* smtp_reply_is_enhanced - RFC 3463 class.subject.detail at the start of s */
bool smtp_reply_is_enhanced(const char *s, size_t len, char cls, size_t *codelen_r)
{
	if (len < 5 || s[0] != cls || s[1] != '.')
		return false;
	size_t pos = 2, n = digits(s + pos, len - pos, 3);
	if (n == 0 || n > 3 || pos + n >= len || s[pos + n] != '.')
		return false;
	pos += n + 1;
	n = digits(s + pos, len - pos, 3);
	if (n == 0 || n > 3)
		return false;
	pos += n;
	if (pos < len && s[pos] != ' ')
		return false;
	*codelen_r = pos;
	return true;
}

/* reply_start - forget the previous reply before the first line of a new one */
static void reply_start(struct smtp_reply_parser *p, int code)
{
	buf_reset(&p->reply.text);
	p->reply.code = code;
	p->reply.enhanced[0] = '\0';
	p->reply.n_lines = 0;
}

/* smtp_reply_parse_line - check one line's grammar, add its text to the reply */
int smtp_reply_parse_line(struct smtp_reply_parser *p, const char *line, size_t len,
			  const char **error_r)
{
	bool was_in_reply = p->in_reply;
	/* Whatever happens, a bad line ends the reply: the next line starts afresh. */
	p->in_reply = false;
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' ||
	    line[2] < '0' || line[2] > '9' || (len > 3 && line[3] != ' ' && line[3] != '-')) {
		*error_r = "not a reply line";
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		*error_r = "NUL byte in reply";
		return -1;
	}
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (!was_in_reply) {
		reply_start(p, code);
	} else if (code != p->reply.code) {
		*error_r = "reply code changed within a multi-line reply";
		return -1;
	}
	if (p->reply.n_lines >= p->max_lines) {
		*error_r = "too many reply lines";
		return -1;
	}
	const char *text = len > 4 ? line + 4 : "";
	size_t textlen = len > 4 ? len - 4 : 0;
	size_t elen;
	if (p->reply.n_lines == 0 && smtp_reply_is_enhanced(text, textlen, line[0], &elen))
		snprintf(p->reply.enhanced, sizeof(p->reply.enhanced), "%.*s", (int)elen, text);
	if ((p->reply.n_lines > 0 && buf_putc(&p->reply.text, '\n') < 0) ||
	    buf_append(&p->reply.text, text, textlen) < 0) {
		*error_r = "reply text too long";
		return -1;
	}
	p->reply.n_lines++;
	if (len > 3 && line[3] == '-') {
		p->in_reply = true;
		return 0;
	}
	return 1;
}

/* smtp_reply_oneline - lines joined by spaces, unprintable bytes escaped, cut at max */
char *smtp_reply_oneline(const struct smtp_reply *r, size_t max)
{
	buf out;
	const char *t = r->text.data ? r->text.data : "";
	buf_init(&out, 0);
	buf_printf(&out, "%03d", r->code);
	if (r->text.len > 0)
		buf_putc(&out, ' ');
	for (size_t i = 0; i < r->text.len; i++) {
		if (max > 3 && out.len >= max - 3) {
			buf_puts(&out, "...");
			break;
		}
		unsigned char ch = (unsigned char)t[i];
		/* A continuation line repeats the enhanced code; keep it, it is short. */
		if (ch == '\n')
			buf_putc(&out, ' ');
		else if (ch < 0x20 || ch >= 0x7f)
			buf_printf(&out, "\\x%02x", ch);
		else
			buf_putc(&out, (char)ch);
	}
	char *s = xstrdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}
