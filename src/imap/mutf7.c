/* imap/mutf7 - modified UTF-7 <-> UTF-8 (see mutf7.h) */
#include "imap/mutf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* utf8_next - decode one code point at *sp; -1 when invalid */
static int32_t utf8_next(const unsigned char **sp)
{
	const unsigned char *s = *sp;
	uint32_t c = s[0], cp, min;
	int n;
	if (c < 0x80) {
		*sp = s + 1;
		return (int32_t)c;
	} else if (c >= 0xc2 && c <= 0xdf) {
		n = 1, cp = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2, cp = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3, cp = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	for (int i = 1; i <= n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*sp = s + n + 1;
	return (int32_t)cp;
}

/* flush_bits - write the pending 16-bit units as modified base64 */
static int put_unit(buf *out, uint32_t unit, uint32_t *bits, int *nbits)
{
	*bits = *bits << 16 | unit;
	*nbits += 16;
	int r = 0;
	while (*nbits >= 6) {
		*nbits -= 6;
		r |= buf_putc(out, b64[(*bits >> *nbits) & 0x3f]);
	}
	return r;
}

int imap_utf8_to_mutf7(const char *in, buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	int r = 0;
	while (*s != '\0') {
		if (*s >= 0x20 && *s <= 0x7e) {
			r |= *s == '&' ? buf_puts(out, "&-") : buf_putc(out, (char)*s);
			s++;
			continue;
		}
		/* a run of characters outside printable ASCII */
		r |= buf_putc(out, '&');
		uint32_t bits = 0;
		int nbits = 0;
		while (*s != '\0' && (*s < 0x20 || *s > 0x7e)) {
			int32_t cp = utf8_next(&s);
			if (cp <= 0)	/* invalid, or NUL (cannot happen in a C string) */
				return -1;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				r |= put_unit(out, 0xd800 | (uint32_t)(cp >> 10), &bits, &nbits);
				r |= put_unit(out, 0xdc00 | (uint32_t)(cp & 0x3ff), &bits, &nbits);
			} else {
				r |= put_unit(out, (uint32_t)cp, &bits, &nbits);
			}
		}
		if (nbits > 0)
			r |= buf_putc(out, b64[(bits << (6 - nbits)) & 0x3f]);
		r |= buf_putc(out, '-');
	}
	return r < 0 ? -1 : 0;
}

static int b64_value(unsigned char c)
{
	const char *p = c != '\0' ? strchr(b64, c) : NULL;
	return p != NULL ? (int)(p - b64) : -1;
}

/* put_utf8 - append code point cp as UTF-8 */
static int put_utf8(buf *out, uint32_t cp)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | cp >> 6), t[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | cp >> 12), t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		t[0] = (char)(0xf0 | cp >> 18), t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), t[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	}
	return buf_append(out, t, n);
}

int imap_mutf7_to_utf8(const char *in, buf *out)
{
	const unsigned char *s = (const unsigned char *)in;
	bool after_run = false;
	while (*s != '\0') {
		if (*s < 0x20 || *s > 0x7e)
			return -1;
		if (*s != '&') {
			if (buf_putc(out, (char)*s++) < 0)
				return -1;
			after_run = false;
			continue;
		}
		s++;
		if (*s == '-') {	/* "&-" is '&' */
			s++;
			if (buf_putc(out, '&') < 0)
				return -1;
			after_run = false;
			continue;
		}
		if (after_run)		/* "&AOk-&AOk-" must have been one run */
			return -1;
		uint32_t bits = 0, high = 0;
		int nbits = 0, units = 0;
		for (; *s != '-'; s++) {
			int v = b64_value(*s);
			if (v < 0)
				return -1;
			bits = bits << 6 | (uint32_t)v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			uint32_t unit = (bits >> nbits) & 0xffff;
			units++;
			if (high != 0) {
				if (unit < 0xdc00 || unit > 0xdfff)
					return -1;
				if (put_utf8(out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00)) < 0)
					return -1;
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				high = unit;
			} else if ((unit >= 0xdc00 && unit <= 0xdfff) || (unit >= 0x20 && unit <= 0x7e) ||
				   unit == 0) {
				return -1;	/* lone low surrogate, printable ASCII, NUL */
			} else if (put_utf8(out, unit) < 0) {
				return -1;
			}
		}
		/* the leftover bits must be fewer than 6 and zero; a run holds something */
		if (units == 0 || high != 0 || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0)
			return -1;
		s++;	/* '-' */
		after_run = true;
	}
	return 0;
}
