/* mime_encword - RFC 2047 encoded words and charset conversion */
#include "mime/encword.h"

#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "mime/decode.h"

#define MAX_ENCWORD_TEXT 2048

/* cp1252 0x80..0x9f as Unicode; 0 for the five undefined positions (then U+FFFD). */
static const unsigned short cp1252_high[32] = {
	0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
	0x2039, 0x0152, 0, 0x017d, 0, 0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013,
	0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
};

static int put_utf8(buf *out, unsigned cp)
{
	char o[3];
	if (cp < 0x80) {
		o[0] = (char)cp;
		return buf_append(out, o, 1);
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return buf_append(out, o, 2);
	}
	o[0] = (char)(0xe0 | (cp >> 12));
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return buf_append(out, o, 3);
}

/* utf8_seq_len - length of the valid UTF-8 sequence at s[0..len), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	size_t n;
	unsigned min;
	unsigned cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2; min = 0x80; cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3; min = 0x800; cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4; min = 0x10000; cp = c & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

int mime_utf8_sanitize(const char *in, size_t len, buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0, start = 0;
	while (i < len) {
		if (s[i] >= 0x20 && s[i] < 0x80) {
			i++;
			continue;
		}
		size_t n = s[i] ? utf8_seq_len(s + i, len - i) : 0;
		if (n > 0) {
			i += n;
			continue;
		}
		if (buf_append(out, in + start, i - start) < 0)
			return -1;
		if (s[i] != 0) {
			unsigned cp = s[i];
			if (cp >= 0x80 && cp < 0xa0)
				cp = cp1252_high[cp - 0x80] ? cp1252_high[cp - 0x80] : 0xfffd;
			if (put_utf8(out, cp) < 0)
				return -1;
		}
		start = ++i;
	}
	return buf_append(out, in + start, len - start);
}

/* charset_alias - the name to give iconv: supersets that real senders mean. */
static const char *charset_alias(const char *cs)
{
	static const struct {
		const char *name, *iconv;
	} aliases[] = {
		{ "us-ascii", "WINDOWS-1252" },	 { "ascii", "WINDOWS-1252" },
		{ "iso-8859-1", "WINDOWS-1252" }, { "latin1", "WINDOWS-1252" },
		{ "gb2312", "GB18030" },	 { "gbk", "GB18030" },
		{ "x-gbk", "GB18030" },		 { "ks_c_5601-1987", "CP949" },
		{ "iso-8859-8-i", "ISO-8859-8" }, { "x-sjis", "SHIFT_JIS" },
		{ "shift-jis", "SHIFT_JIS" },	 { "utf8", "UTF-8" },
		{ "unicode-1-1-utf-8", "UTF-8" },
	};
	for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
		if (strcasecmp(cs, aliases[i].name) == 0)
			return aliases[i].iconv;
	return cs;
}

int mime_charset_to_utf8(const char *charset, const char *in, size_t len, buf *out)
{
	const char *cs = charset_alias(charset);
	if (strcasecmp(cs, "UTF-8") == 0)
		return mime_utf8_sanitize(in, len, out) < 0 ? -1 : 0;
	/* iconv would accept names such as "char" or "" as the locale's charset */
	if (cs[0] == '\0' || strlen(cs) > 40 || strcasecmp(cs, "char") == 0 ||
	    strcasecmp(cs, "wchar_t") == 0 || strchr(cs, '/') != NULL)
		return 1;
	iconv_t cd = iconv_open("UTF-8", cs);
	if (cd == (iconv_t)-1)
		return 1;
	char *ip = (char *)in;	/* iconv's prototype lacks const */
	size_t ileft = len;
	char obuf[1024];
	int rc = 0;
	while (ileft > 0) {
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		size_t r = iconv(cd, &ip, &ileft, &op, &oleft);
		int err = errno;
		size_t got = sizeof(obuf) - oleft;
		/* iconv output is UTF-8 but may carry NULs: sanitize drops them */
		if (got && mime_utf8_sanitize(obuf, got, out) < 0) {
			rc = -1;
			break;
		}
		if (r != (size_t)-1)
			break;
		if (err == E2BIG)
			continue;
		/* EILSEQ or EINVAL (a truncated sequence at the end): replace one byte */
		if (put_utf8(out, 0xfffd) < 0) {
			rc = -1;
			break;
		}
		ip++;
		ileft--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	if (rc == 0) {
		/* flush shift state (ISO-2022-JP returns to ASCII) */
		char *op = obuf;
		size_t oleft = sizeof(obuf);
		iconv(cd, NULL, NULL, &op, &oleft);
		if (sizeof(obuf) - oleft && mime_utf8_sanitize(obuf, sizeof(obuf) - oleft, out) < 0)
			rc = -1;
	}
	iconv_close(cd);
	return rc;
}

struct encword {
	size_t start, end;	/* the whole "=?...?=" in the input */
	const char *charset;	/* into the input, not NUL-terminated */
	size_t charset_len;	/* without a "*lang" suffix */
	char enc;		/* 'B' or 'Q' */
	const char *text;
	size_t text_len;
};

/* parse_encword - an encoded word starting at in[i] ("=?"), or false. */
static bool parse_encword(const char *in, size_t len, size_t i, struct encword *w)
{
	size_t p = i + 2;
	size_t cs = p;
	while (p < len && p - cs <= 64 && in[p] != '?' && (unsigned char)in[p] > ' ' &&
	       in[p] != '"' && (unsigned char)in[p] < 127)
		p++;
	if (p >= len || in[p] != '?' || p == cs || p - cs > 64)
		return false;
	w->charset = in + cs;
	w->charset_len = p - cs;
	const char *star = memchr(w->charset, '*', w->charset_len);
	if (star)
		w->charset_len = (size_t)(star - w->charset);
	if (w->charset_len == 0)
		return false;
	p++;
	if (p + 1 >= len || in[p + 1] != '?')
		return false;
	char e = in[p];
	if (e == 'b' || e == 'B')
		w->enc = 'B';
	else if (e == 'q' || e == 'Q')
		w->enc = 'Q';
	else
		return false;
	p += 2;
	size_t t = p;
	/* the text runs to "?="; blanks are not allowed in it, so a stray "=?" cannot
	 * swallow the rest of the header, and its length is capped (RFC 2047 says 75 for
	 * the whole word; broken senders go further) so that many "=?" cost linear time */
	while (p + 1 < len && !(in[p] == '?' && in[p + 1] == '=')) {
		if (in[p] == ' ' || in[p] == '\t' || p - t > MAX_ENCWORD_TEXT)
			return false;
		p++;
	}
	if (p + 1 >= len)
		return false;
	w->text = in + t;
	w->text_len = p - t;
	w->start = i;
	w->end = p + 2;
	return true;
}

struct pending {
	buf bytes;		/* decoded bytes of the joined words */
	char charset[65];
	size_t raw_start, raw_end;	/* the words in the input, kept if the charset is unknown */
	bool active;
};

static int pending_flush(struct pending *pd, const char *in, buf *out)
{
	if (!pd->active)
		return 0;
	pd->active = false;
	int r = mime_charset_to_utf8(pd->charset, pd->bytes.data ? pd->bytes.data : "",
				     pd->bytes.len, out);
	buf_reset(&pd->bytes);
	if (r == 1)
		return mime_utf8_sanitize(in + pd->raw_start, pd->raw_end - pd->raw_start, out);
	return r;
}

int mime_encword_decode(const char *in, size_t len, buf *out)
{
	struct pending pd = { .active = false };
	buf_init(&pd.bytes, 0);
	int rc = 0;
	size_t i = 0, text_start = 0;
	while (i < len) {
		struct encword w;
		if (!(in[i] == '=' && i + 1 < len && in[i + 1] == '?' &&
		      parse_encword(in, len, i, &w))) {
			i++;
			continue;
		}
		/* text between the previous word and this one: blanks only joins the words */
		bool only_blanks = true;
		for (size_t j = text_start; j < i; j++)
			if (in[j] != ' ' && in[j] != '\t' && in[j] != '\r' && in[j] != '\n')
				only_blanks = false;
		bool same = pd.active && w.charset_len == strlen(pd.charset) &&
			    strncasecmp(pd.charset, w.charset, w.charset_len) == 0;
		if (!(pd.active && only_blanks && same)) {
			/* blanks between two encoded words vanish even when the charsets differ */
			bool adjacent = pd.active && only_blanks;
			if (pending_flush(&pd, in, out) < 0 ||
			    (!adjacent && mime_utf8_sanitize(in + text_start, i - text_start, out) < 0)) {
				rc = -1;
				break;
			}
			memcpy(pd.charset, w.charset, w.charset_len);
			pd.charset[w.charset_len] = '\0';
			pd.raw_start = w.start;
			pd.active = true;
		}
		pd.raw_end = w.end;
		int r = w.enc == 'B' ? mime_base64_decode(w.text, w.text_len, &pd.bytes)
				     : mime_qp_decode(w.text, w.text_len, true, &pd.bytes);
		if (r < 0) {
			rc = -1;
			break;
		}
		i = text_start = w.end;
	}
	if (rc == 0 && (pending_flush(&pd, in, out) < 0 ||
			mime_utf8_sanitize(in + text_start, len - text_start, out) < 0))
		rc = -1;
	buf_free(&pd.bytes);
	return rc;
}
