/* imap/mutf7 - modified UTF-7 <-> UTF-8 (see mutf7.h) */
#include "imap/mutf7.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lib/utf8.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

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
			uint32_t cp;
			size_t len = utf8_decode(s, strnlen((const char *)s, 4), &cp);
			if (len == 0)
				return -1;
			s += len;
			if (cp >= 0x10000) {
				cp -= 0x10000;
				r |= put_unit(out, 0xd800 | (cp >> 10), &bits, &nbits);
				r |= put_unit(out, 0xdc00 | (cp & 0x3ff), &bits, &nbits);
			} else {
				r |= put_unit(out, cp, &bits, &nbits);
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
				if (utf8_append(out, 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00)) < 0)
					return -1;
				high = 0;
			} else if (unit >= 0xd800 && unit <= 0xdbff) {
				high = unit;
			} else if ((unit >= 0xdc00 && unit <= 0xdfff) || (unit >= 0x20 && unit <= 0x7e) ||
				   unit == 0) {
				return -1;	/* lone low surrogate, printable ASCII, NUL */
			} else if (utf8_append(out, unit) < 0) {
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
