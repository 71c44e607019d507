/* mime/compose - build a MIME message: headers, encoded words, QP/base64, multiparts */
#include "mime/compose.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/utf8.h"
#include "lib/xmalloc.h"
#include "mime/downgrade.h"

#define FOLD_AT 76		/* header lines are folded to this many characters */
#define TOKEN_MAX 900		/* an unbreakable header token; 998 is the hard limit */
#define EW_MAX 75		/* RFC 2047 §2: an encoded word's length */
#define PARAM_CHUNK 60		/* an RFC 2231 continuation's value */
#define SEVENBIT_LINE 998	/* RFC 5322 §2.1.1 */

/* ---- encodings ----------------------------------------------------------------------- */

/* utf8_len_at - the length of the character at s[0..len) (1 for a stray byte) */
static size_t utf8_len_at(const char *s, size_t len)
{
	uint32_t cp;
	size_t n = utf8_decode((const unsigned char *)s, len, &cp);
	return n ? n : 1;
}

/* mime_encword_encode - B words of whole characters: 4 base64 characters carry 3 bytes */
int mime_encword_encode(const char *text, size_t len, size_t first_room, buf *out)
{
	static const char pre[] = "=?UTF-8?B?", post[] = "?=";
	size_t overhead = sizeof(pre) - 1 + sizeof(post) - 1;
	size_t room = first_room >= 16 && first_room < EW_MAX ? first_room : EW_MAX;
	size_t i = 0;
	bool first = true;
	if (len == 0)
		return 0;
	while (i < len) {
		size_t max_bytes = (room - overhead) / 4 * 3, n = 0;
		while (i + n < len) {
			size_t cl = utf8_len_at(text + i + n, len - i - n);
			if (n + cl > max_bytes)
				break;
			n += cl;
		}
		if (n == 0)	/* cannot happen with room >= 16, but never loop forever */
			n = utf8_len_at(text + i, len - i);
		if ((!first && buf_putc(out, ' ') < 0) || buf_puts(out, pre) < 0 ||
		    base64_encode(text + i, n, out) < 0 || buf_puts(out, post) < 0)
			return -1;
		i += n;
		first = false;
		room = EW_MAX;
	}
	return 0;
}

/* ---- content types ------------------------------------------------------------------- */

/* text_like - valid UTF-8 without NULs or control characters other than blanks/line ends */
static bool text_like(const unsigned char *d, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((d[i] < 0x20 && d[i] != '\t' && d[i] != '\n' && d[i] != '\r' && d[i] != '\f') ||
		    d[i] == 0x7f)
			return false;
	return utf8_valid((const char *)d, len);
}

/* mime_guess_type - magic numbers first (they do not lie about what a program will open),
 * then the extension, then "is it text?" */
const char *mime_guess_type(const char *filename, const unsigned char *d, size_t len)
{
	static const struct {
		const char *magic;
		size_t off, len;
		const char *type;
	} magic[] = {
		{ "\x89PNG\r\n\x1a\n", 0, 8, "image/png" },
		{ "\xff\xd8\xff", 0, 3, "image/jpeg" },
		{ "GIF87a", 0, 6, "image/gif" },
		{ "GIF89a", 0, 6, "image/gif" },
		{ "WEBP", 8, 4, "image/webp" },
		{ "%PDF-", 0, 5, "application/pdf" },
		{ "\x1f\x8b", 0, 2, "application/gzip" },
		{ "BZh", 0, 3, "application/x-bzip2" },
		{ "\xfd" "7zXZ", 0, 5, "application/x-xz" },
		{ "7z\xbc\xaf\x27\x1c", 0, 6, "application/x-7z-compressed" },
		{ "%!PS", 0, 4, "application/postscript" },
		{ "OggS", 0, 4, "audio/ogg" },
		{ "ID3", 0, 3, "audio/mpeg" },
		{ "ftyp", 4, 4, "video/mp4" },
	};
	static const struct {
		const char *ext, *type;
		bool text;
	} exts[] = {
		{ "txt", "text/plain", true },	{ "text", "text/plain", true },
		{ "log", "text/plain", true },	{ "md", "text/markdown", true },
		{ "csv", "text/csv", true },	{ "html", "text/html", true },
		{ "htm", "text/html", true },	{ "ics", "text/calendar", true },
		{ "css", "text/css", true },	{ "json", "application/json", false },
		{ "xml", "application/xml", false },
		{ "svg", "image/svg+xml", false },
		{ "pdf", "application/pdf", false },
		{ "png", "image/png", false },	{ "jpg", "image/jpeg", false },
		{ "jpeg", "image/jpeg", false },	{ "gif", "image/gif", false },
		{ "webp", "image/webp", false },	{ "zip", "application/zip", false },
		{ "gz", "application/gzip", false },
		{ "tar", "application/x-tar", false },
		{ "doc", "application/msword", false },
		{ "xls", "application/vnd.ms-excel", false },
		{ "docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
		  false },
		{ "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", false },
		{ "pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation",
		  false },
		{ "odt", "application/vnd.oasis.opendocument.text", false },
		{ "ods", "application/vnd.oasis.opendocument.spreadsheet", false },
		{ "mp3", "audio/mpeg", false },	{ "wav", "audio/wav", false },
		{ "mp4", "video/mp4", false },
	};
	static const char *const text_types[] = {
		"text/plain; charset=utf-8", "text/plain; charset=utf-8",
		"text/plain; charset=utf-8", "text/markdown; charset=utf-8",
		"text/csv; charset=utf-8", "text/html; charset=utf-8", "text/html; charset=utf-8",
		"text/calendar; charset=utf-8", "text/css; charset=utf-8",
	};
	for (size_t i = 0; i < sizeof(magic) / sizeof(magic[0]); i++)
		if (len >= magic[i].off + magic[i].len &&
		    !memcmp(d + magic[i].off, magic[i].magic, magic[i].len))
			return magic[i].type;
	const char *dot = filename ? strrchr(filename, '.') : NULL;
	bool text = text_like(d, len);
	if (dot != NULL && dot[1] != '\0') {
		for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
			if (strcasecmp(dot + 1, exts[i].ext) != 0)
				continue;
			if (!exts[i].text)
				return exts[i].type;
			/* a text type only with a charset we can vouch for */
			if (text)
				return text_types[i];
			break;
		}
	}
	return text ? "text/plain; charset=utf-8" : "application/octet-stream";
}

/* ---- headers ------------------------------------------------------------------------- */

static bool is_ascii(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			if (*s != '\t')
				return true;
	return false;
}

/* fold_header - write the unfolded header line s[0..len) with CRLF, folded before blanks so
 * lines stay within FOLD_AT where a blank allows (a break is made only before a blank that
 * is followed by a non-blank, so no line is all white space) */
static int fold_header(buf *out, const char *s, size_t len)
{
	size_t start = 0, cand = 0;
	for (size_t i = 1; i <= len; i++) {
		bool at_end = i == len;
		bool is_cand = !at_end && s[i] == ' ' && i + 1 < len && s[i + 1] != ' ' &&
			       s[i + 1] != '\t';
		if (!is_cand && !at_end)
			continue;
		if (i - start > FOLD_AT && cand > start) {
			if (buf_append(out, s + start, cand - start) < 0 ||
			    buf_puts(out, "\r\n") < 0)
				return -1;
			start = cand;
		}
		if (is_cand)
			cand = i;
	}
	if (buf_append(out, s + start, len - start) < 0 || buf_puts(out, "\r\n") < 0)
		return -1;
	return 0;
}

/* longest_token - the longest run without a blank */
static size_t longest_token(const char *s)
{
	size_t best = 0, cur = 0;
	for (; *s; s++) {
		cur = (*s == ' ' || *s == '\t') ? 0 : cur + 1;
		if (cur > best)
			best = cur;
	}
	return best;
}

/* unstructured - an unstructured header value: as it is when that is ASCII, foldable and
 * free of "=?" (which a reader would take for an encoded word); else all encoded words */
static int put_unstructured(buf *line, const char *value, size_t name_len)
{
	size_t len = strlen(value);
	if (is_ascii(value, len) && strstr(value, "=?") == NULL && longest_token(value) <= TOKEN_MAX)
		return buf_puts(line, value);
	return mime_encword_encode(value, len, FOLD_AT - name_len - 2, line);
}

static bool atext_phrase(const char *s)
{
	static const char specials[] = "()<>[]:;@\\,.\"";
	if (*s == '\0' || *s == ' ')
		return false;
	for (const char *p = s; *p; p++)
		if (strchr(specials, *p) != NULL || (*p == ' ' && (p[1] == ' ' || p[1] == '\0')))
			return false;
	return true;
}

/* put_mailbox - "name <addr>" with the name as atoms, a quoted string or encoded words */
static int put_mailbox(buf *line, const char *in, size_t col, char **error_r)
{
	char *addr, *name;
	const char *err;
	if (mime_compose_address(in, &addr, &name, &err) < 0) {
		*error_r = xasprintf("bad address \"%s\": %s", in, err);
		return -1;
	}
	int r = 0;
	if (name != NULL && name[0] != '\0') {
		size_t nl = strlen(name);
		if (!is_ascii(name, nl)) {
			r |= mime_encword_encode(name, nl, FOLD_AT - col, line);
		} else if (atext_phrase(name)) {
			r |= buf_puts(line, name);
		} else {
			r |= buf_putc(line, '"');
			for (const char *p = name; *p; p++) {
				if (*p == '"' || *p == '\\')
					r |= buf_putc(line, '\\');
				r |= buf_putc(line, *p);
			}
			r |= buf_putc(line, '"');
		}
		r |= buf_printf(line, " <%s>", addr);
	} else {
		r |= buf_puts(line, addr);
	}
	free(addr);
	free(name);
	if (r < 0)
		*error_r = xstrdup("out of space");
	return r < 0 ? -1 : 0;
}

/* put_address_header - "To: a, b" folded */
static int put_address_header(buf *out, const char *hname, const char *const *list, size_t n,
			      char **error_r)
{
	if (n == 0)
		return 0;
	buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s: ", hname);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_puts(&line, ", ");
		/* the folder moves an encoded word that does not fit to a line of its own */
		size_t col = line.len < FOLD_AT ? line.len : 1;
		if (put_mailbox(&line, list[i], col, error_r) < 0) {
			buf_free(&line);
			return -1;
		}
	}
	int r = fold_header(out, line.data, line.len);
	buf_free(&line);
	if (r < 0)
		*error_r = xstrdup("out of space");
	return r;
}

/* written_by_us - headers the composer writes (or must never write: Bcc) */
static bool written_by_us(const char *name, size_t len)
{
	static const char *const ours[] = { "Date", "From", "To", "Cc", "Bcc", "Subject",
					    "Message-ID", "MIME-Version", "Resent-Bcc" };
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		if (strlen(ours[i]) == len && !strncasecmp(name, ours[i], len))
			return true;
	return len >= 8 && !strncasecmp(name, "Content-", 8);
}

/* put_extra_header - "Name: value" from the caller, checked */
static int put_extra_header(buf *out, const char *h, char **error_r)
{
	const char *colon = strchr(h, ':');
	if (colon == NULL || colon == h) {
		*error_r = xasprintf("header \"%s\": expected \"Name: value\"", h);
		return -1;
	}
	size_t nlen = (size_t)(colon - h);
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)h[i] <= 32 || (unsigned char)h[i] >= 127) {
			*error_r = xasprintf("header \"%.*s\": invalid name", (int)nlen, h);
			return -1;
		}
	if (written_by_us(h, nlen)) {
		*error_r = xasprintf("header \"%.*s\" cannot be given with --header (use the "
				     "option for it; Bcc is never written)", (int)nlen, h);
		return -1;
	}
	const char *value = colon + 1;
	while (*value == ' ' || *value == '\t')
		value++;
	if (has_ctl(value)) {
		*error_r = xasprintf("header \"%.*s\": control characters in the value", (int)nlen,
				     h);
		return -1;
	}
	if (!utf8_valid(value, strlen(value))) {
		*error_r = xasprintf("header \"%.*s\": the value is not UTF-8", (int)nlen, h);
		return -1;
	}
	buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%.*s: ", (int)nlen, h);
	int r = put_unstructured(&line, value, nlen);
	if (r == 0)
		r = fold_header(out, line.data, line.len);
	buf_free(&line);
	if (r < 0)
		*error_r = xstrdup("out of space");
	return r;
}

/* ---- addresses ----------------------------------------------------------------------- */

static char *trim_dup(const char *s, size_t len)
{
	while (len > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return xstrndup(s, len);
}

int mime_compose_address(const char *in, char **addr_r, char **name_r, const char **error_r)
{
	*addr_r = *name_r = NULL;
	if (has_ctl(in) || strchr(in, '\t') != NULL) {
		*error_r = "control characters";
		return -1;
	}
	size_t len = strlen(in);
	while (len > 0 && in[len - 1] == ' ')
		len--;
	char *addr, *name = NULL;
	if (len > 0 && in[len - 1] == '>') {
		const char *lt = NULL;
		for (size_t i = len; i-- > 0;)
			if (in[i] == '<') {
				lt = in + i;
				break;
			}
		if (lt == NULL) {
			*error_r = "'>' without '<'";
			return -1;
		}
		addr = trim_dup(lt + 1, (size_t)(in + len - 1 - (lt + 1)));
		name = trim_dup(in, (size_t)(lt - in));
		size_t nl = strlen(name);
		if (nl >= 2 && name[0] == '"' && name[nl - 1] == '"') {
			/* a quoted string: drop the quotes and the backslashes */
			size_t o = 0;
			for (size_t i = 1; i + 1 < nl; i++) {
				if (name[i] == '\\' && i + 2 < nl)
					i++;
				name[o++] = name[i];
			}
			name[o] = '\0';
		}
		if (name[0] == '\0') {
			free(name);
			name = NULL;
		}
	} else {
		addr = trim_dup(in, len);
	}
	const char *at = strrchr(addr, '@');
	const char *why = NULL;
	if (at == NULL || at == addr || at[1] == '\0')
		why = "expected local-part@domain";
	else if (strlen(addr) > TOKEN_MAX)
		why = "too long";
	for (const char *p = addr; why == NULL && *p; p++)
		if (*p == ' ' || *p == '<' || *p == '>' || *p == ',' || *p == '"' || *p == '(' ||
		    *p == ')')
			why = "unexpected character in the address";
	if (why == NULL && name != NULL && !utf8_valid(name, strlen(name)))
		why = "the display name is not UTF-8";
	if (why != NULL) {
		free(addr);
		free(name);
		*error_r = why;
		return -1;
	}
	*addr_r = addr;
	*name_r = name;
	return 0;
}

/* ---- parts --------------------------------------------------------------------------- */

struct leaf {
	buf head;	/* the part's Content-* headers, each with CRLF */
	buf body;	/* the encoded body, ending with CRLF (or empty) */
};

/* needs_qp - text that 7bit cannot carry as it is: 8-bit bytes, control characters, a bare
 * CR, or a line longer than 998 octets */
static bool needs_qp(const char *s, size_t len)
{
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '\n') {
			col = 0;
			continue;
		}
		if (ch == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue;
		if (ch >= 0x80 || (ch < 0x20 && ch != '\t') || ch == 0x7f)
			return true;
		if (++col > SEVENBIT_LINE)
			return true;
	}
	return false;
}

/* text_leaf - a text/SUBTYPE part, 7bit or quoted-printable */
static int text_leaf(struct leaf *l, const char *subtype, const char *s, size_t len,
		     char **error_r)
{
	if (!utf8_valid(s, len)) {
		*error_r = xasprintf("the %s part is not valid UTF-8", subtype);
		return -1;
	}
	bool qp = needs_qp(s, len);
	buf_printf(&l->head, "Content-Type: text/%s; charset=utf-8\r\n"
		   "Content-Transfer-Encoding: %s\r\n", subtype, qp ? "quoted-printable" : "7bit");
	if (qp) {
		mime_qp_encode(s, len, &l->body);
	} else {
		for (size_t i = 0; i < len; i++) {
			if (s[i] == '\r')
				continue;
			if (s[i] == '\n')
				buf_puts(&l->body, "\r\n");
			else
				buf_putc(&l->body, s[i]);
		}
	}
	if (l->body.len > 0 && (l->body.len < 2 || memcmp(l->body.data + l->body.len - 2, "\r\n", 2)))
		buf_puts(&l->body, "\r\n");
	return 0;
}

/* put_filename_param - ";\r\n name=..." : a plain quoted value when short and simple, else
 * RFC 2231 utf-8'' percent-encoding in continuations of PARAM_CHUNK characters */
static void put_filename_param(buf *out, const char *pname, const char *value)
{
	static const char attr_ok[] = "!#$&+-.^_`|~";
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(value);
	bool simple = len > 0 && len <= PARAM_CHUNK;
	for (size_t i = 0; simple && i < len; i++) {
		unsigned char ch = (unsigned char)value[i];
		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			simple = false;
	}
	if (simple) {
		buf_printf(out, ";\r\n %s=\"%s\"", pname, value);
		return;
	}
	buf enc;
	buf_init(&enc, 0);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)value[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    (ch != 0 && strchr(attr_ok, ch) != NULL)) {
			buf_putc(&enc, (char)ch);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };
			buf_append(&enc, e, 3);
		}
	}
	const char *p = enc.data ? enc.data : "";
	size_t left = enc.len, part = 0;
	if (left <= PARAM_CHUNK) {
		buf_printf(out, ";\r\n %s*=utf-8''%s", pname, p);
	} else {
		while (left > 0) {
			size_t n = left < PARAM_CHUNK ? left : PARAM_CHUNK;
			/* never split a %XX escape */
			if (n < left) {
				if (n >= 1 && p[n - 1] == '%')
					n -= 1;
				else if (n >= 2 && p[n - 2] == '%')
					n -= 2;
			}
			buf_printf(out, ";\r\n %s*%zu*=%s%.*s", pname, part, part == 0 ? "utf-8''" : "",
				   (int)n, p);
			p += n;
			left -= n;
			part++;
		}
	}
	buf_free(&enc);
}

static void attachment_leaf(struct leaf *l, const struct mime_attachment *a)
{
	const char *type = a->content_type ? a->content_type
					   : mime_guess_type(a->filename, a->data, a->len);
	buf_printf(&l->head, "Content-Type: %s", type);
	put_filename_param(&l->head, "name", a->filename);
	buf_puts(&l->head, "\r\nContent-Disposition: attachment");
	put_filename_param(&l->head, "filename", a->filename);
	buf_puts(&l->head, "\r\nContent-Transfer-Encoding: base64\r\n");
	mime_base64_encode_lines((const char *)a->data, a->len, &l->body);
}

static bool leaves_contain(const struct leaf *ls, size_t n, const char *needle)
{
	size_t nl = strlen(needle);
	for (size_t i = 0; i < n; i++)
		if ((ls[i].body.len && memmem(ls[i].body.data, ls[i].body.len, needle, nl)) ||
		    (ls[i].head.len && memmem(ls[i].head.data, ls[i].head.len, needle, nl)))
			return true;
	return false;
}

/* put_multipart - "multipart/SUB" header into head, the parts into body */
static void put_multipart(buf *head, buf *body, const char *sub, const char *boundary,
			  const struct leaf *parts, size_t n)
{
	buf_printf(head, "Content-Type: multipart/%s;\r\n boundary=\"%s\"\r\n", sub, boundary);
	buf_puts(body, "This is a multi-part message in MIME format.\r\n");
	for (size_t i = 0; i < n; i++) {
		buf_printf(body, "\r\n--%s\r\n", boundary);
		buf_append(body, parts[i].head.data, parts[i].head.len);
		buf_puts(body, "\r\n");
		buf_append(body, parts[i].body.data, parts[i].body.len);
	}
	buf_printf(body, "\r\n--%s--\r\n", boundary);
}

static void leaf_free(struct leaf *l)
{
	buf_free(&l->head);
	buf_free(&l->body);
}

/* ---- the message --------------------------------------------------------------------- */

static bool unique_ok(const char *u)
{
	if (u == NULL || *u == '\0' || strlen(u) > 100)
		return false;
	for (; *u; u++)
		if (!((*u >= 'a' && *u <= 'z') || (*u >= 'A' && *u <= 'Z') ||
		      (*u >= '0' && *u <= '9') || *u == '.'))
			return false;
	return true;
}

static int put_date(buf *out, time_t t, int tz)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	time_t local = t + (time_t)tz * 60;
	if (gmtime_r(&local, &tm) == NULL)
		return -1;
	int a = tz < 0 ? -tz : tz;
	return buf_printf(out, "Date: %s, %02d %s %04d %02d:%02d:%02d %c%02d%02d\r\n",
			  days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
			  tm.tm_hour, tm.tm_min, tm.tm_sec, tz < 0 ? '-' : '+', a / 60, a % 60);
}

int mime_compose(const struct mime_compose *m, buf *out, char **error_r)
{
	*error_r = NULL;
	if (!unique_ok(m->unique)) {
		*error_r = xstrdup("internal: bad unique string");
		return -1;
	}
	if (m->tz_minutes < -24 * 60 || m->tz_minutes > 24 * 60) {
		*error_r = xstrdup("internal: bad time zone");
		return -1;
	}
	char *from_addr, *from_name;
	const char *err;
	if (m->from == NULL || mime_compose_address(m->from, &from_addr, &from_name, &err) < 0) {
		*error_r = xasprintf("bad From address \"%s\": %s", m->from ? m->from : "",
				     m->from ? err : "missing");
		return -1;
	}
	const char *domain = strrchr(from_addr, '@') + 1;

	buf h;
	buf_init(&h, 0);
	int r = put_date(&h, m->date, m->tz_minutes);
	const char *from_list[1] = { m->from };
	if (r == 0)
		r = put_address_header(&h, "From", from_list, 1, error_r);
	if (r == 0)
		r = put_address_header(&h, "To", m->to, m->n_to, error_r);
	if (r == 0)
		r = put_address_header(&h, "Cc", m->cc, m->n_cc, error_r);
	if (r == 0 && m->subject != NULL) {
		if (has_ctl(m->subject) || !utf8_valid(m->subject, strlen(m->subject))) {
			*error_r = xstrdup("the subject has control characters or is not UTF-8");
			r = -1;
		} else {
			buf line;
			buf_init(&line, 0);
			buf_puts(&line, "Subject: ");
			r = put_unstructured(&line, m->subject, strlen("Subject"));
			if (r == 0)
				r = fold_header(&h, line.data, line.len);
			buf_free(&line);
		}
	}
	if (r == 0)
		r = buf_printf(&h, "Message-ID: <%s@%s>\r\n", m->unique, domain);
	for (size_t i = 0; r == 0 && i < m->n_headers; i++)
		r = put_extra_header(&h, m->headers[i], error_r);
	if (r == 0)
		r = buf_puts(&h, "MIME-Version: 1.0\r\n");
	free(from_addr);
	free(from_name);

	/* leaves: text, [html], attachments */
	size_t n_leaves = 1 + (m->html ? 1 : 0) + m->n_attachments;
	struct leaf *lv = xcalloc(n_leaves, sizeof(*lv));
	for (size_t i = 0; i < n_leaves; i++) {
		buf_init(&lv[i].head, 0);
		buf_init(&lv[i].body, 0);
	}
	if (r == 0)
		r = text_leaf(&lv[0], "plain", m->text ? m->text : "", m->text ? m->text_len : 0,
			      error_r);
	if (r == 0 && m->html)
		r = text_leaf(&lv[1], "html", m->html, m->html_len, error_r);
	size_t first_att = m->html ? 2 : 1;
	for (size_t i = 0; r == 0 && i < m->n_attachments; i++) {
		const char *fn = m->attachments[i].filename;
		if (fn == NULL || *fn == '\0' || has_ctl(fn) || strchr(fn, '\t') ||
		    !utf8_valid(fn, strlen(fn))) {
			*error_r = xasprintf("attachment %zu: the file name is empty, not UTF-8 or "
					     "has control characters", i + 1);
			r = -1;
			break;
		}
		attachment_leaf(&lv[first_att + i], &m->attachments[i]);
	}

	/* a boundary stem that occurs nowhere in the parts (nested ones add a suffix) */
	char stem[160] = "";
	for (unsigned n = 0; r == 0; n++) {
		snprintf(stem, sizeof(stem), "=_%s_%u", m->unique, n);
		if (!leaves_contain(lv, n_leaves, stem))
			break;
		if (n == 10000) {
			*error_r = xstrdup("internal: no boundary found");
			r = -1;
		}
	}

	if (r == 0) {
		char balt[200], bmix[200];
		snprintf(balt, sizeof(balt), "%s_alt", stem);
		snprintf(bmix, sizeof(bmix), "%s_mix", stem);
		struct leaf first;
		buf_init(&first.head, 0);
		buf_init(&first.body, 0);
		if (m->html) {
			put_multipart(&first.head, &first.body, "alternative", balt, lv, 2);
		} else {
			buf_append(&first.head, lv[0].head.data, lv[0].head.len);
			buf_append(&first.body, lv[0].body.data, lv[0].body.len);
		}
		r |= buf_append(out, h.data, h.len);
		if (m->n_attachments == 0) {
			r |= buf_append(out, first.head.data, first.head.len);
			r |= buf_puts(out, "\r\n");
			r |= buf_append(out, first.body.data, first.body.len);
		} else {
			/* mixed: the text (or alternative) first, then the attachments */
			struct leaf *mix = xcalloc(1 + m->n_attachments, sizeof(*mix));
			mix[0] = first;
			for (size_t i = 0; i < m->n_attachments; i++)
				mix[1 + i] = lv[first_att + i];
			buf mh, mb;
			buf_init(&mh, 0);
			buf_init(&mb, 0);
			put_multipart(&mh, &mb, "mixed", bmix, mix, 1 + m->n_attachments);
			free(mix);
			r |= buf_append(out, mh.data, mh.len);
			r |= buf_puts(out, "\r\n");
			r |= buf_append(out, mb.data, mb.len);
			buf_free(&mh);
			buf_free(&mb);
		}
		leaf_free(&first);
	}
	for (size_t i = 0; i < n_leaves; i++)
		leaf_free(&lv[i]);
	free(lv);
	buf_free(&h);
	if (r < 0 && *error_r == NULL)
		*error_r = xstrdup("out of space");
	return r < 0 ? -1 : 0;
}
