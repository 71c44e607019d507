/* imap/write - quoted strings and literals for responses (see write.h) */
#include "imap/write.h"

#include <string.h>
#include <strings.h>

#include "lib/utf8.h"

#define QUOTED_MAX 1024		/* longer strings go out as literals */

bool imap_utf8_valid(const char *str, size_t len)
{
	return utf8_valid(str, len);
}

/* quotable - can s[0..len) be a quoted string? */
static bool quotable(const char *s, size_t len, bool utf8)
{
	if (len > QUOTED_MAX)
		return false;
	bool eight = false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\0')
			return false;
		if (c >= 0x80)
			eight = true;
	}
	return !eight || (utf8 && imap_utf8_valid(s, len));
}

/* write_literal_no_nul - a literal, NULs (which IMAP never carries) replaced by U+FFFD */
static int write_literal_no_nul(buf *out, const char *s, size_t len)
{
	size_t nuls = 0;
	for (size_t i = 0; i < len; i++)
		nuls += s[i] == '\0';
	if (buf_printf(out, "{%zu}\r\n", len + 2 * nuls) < 0)
		return -1;
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\0')
			continue;
		if (buf_append(out, s + start, i - start) < 0 || buf_puts(out, "\xef\xbf\xbd") < 0)
			return -1;
		start = i + 1;
	}
	return buf_append(out, s + start, len - start);
}

int imap_write_string(buf *out, const char *s, size_t len, bool utf8)
{
	if (memchr(s, '\0', len) != NULL)
		return write_literal_no_nul(out, s, len);
	if (!quotable(s, len, utf8)) {
		if (buf_printf(out, "{%zu}\r\n", len) < 0)
			return -1;
		return buf_append(out, s, len);
	}
	if (buf_putc(out, '"') < 0)
		return -1;
	size_t start = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '"' && s[i] != '\\')
			continue;
		if (buf_append(out, s + start, i - start) < 0 || buf_putc(out, '\\') < 0)
			return -1;
		start = i;
	}
	if (buf_append(out, s + start, len - start) < 0)
		return -1;
	return buf_putc(out, '"');
}

int imap_write_nstring(buf *out, const char *s, bool utf8)
{
	if (s == NULL)
		return buf_puts(out, "NIL");
	return imap_write_string(out, s, strlen(s), utf8);
}

/* is_atom - ATOM-CHARs only (no specials, wildcards, quoted-specials, resp-specials) */
static bool is_atom(const char *s)
{
	if (*s == '\0' || strcasecmp(s, "NIL") == 0)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= ' ' || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

int imap_write_astring(buf *out, const char *s, bool utf8)
{
	if (is_atom(s))
		return buf_puts(out, s);
	return imap_write_string(out, s, strlen(s), utf8);
}
