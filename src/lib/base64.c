/* base64 - RFC 4648 encoding and strict decoding (for SASL) */
#include "lib/base64.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_value - the 6-bit value of an alphabet character, or -1 for anything else
 * (including '=', NUL, whitespace and 8-bit bytes). */
static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* base64_encode - encode in chunks through a small stack buffer; on a full out the
 * partial output is taken back so out is unchanged. */
int base64_encode(const void *in, size_t len, buf *out)
{
	const unsigned char *p = in;
	size_t start = out->len;
	char chunk[256];	/* a multiple of 4 */
	size_t n = 0;

	for (size_t i = 0; i < len; i += 3) {
		size_t left = len - i;
		uint32_t v = (uint32_t)p[i] << 16;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		chunk[n++] = b64_alphabet[(v >> 18) & 63];
		chunk[n++] = b64_alphabet[(v >> 12) & 63];
		chunk[n++] = left > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
		chunk[n++] = left > 2 ? b64_alphabet[v & 63] : '=';
		if (n == sizeof(chunk)) {
			if (buf_append(out, chunk, n) < 0)
				goto full;
			n = 0;
		}
	}
	if (buf_append(out, chunk, n) < 0)
		goto full;
	return 0;
full:
	out->len = start;
	if (out->data != NULL)
		out->data[start] = '\0';
	return -1;
}

/* base64_decode - strict: the length must be a multiple of 4, '=' may only be the last one
 * or two characters of the text, and the unused bits before the padding must be zero, so
 * that every byte string has exactly one accepted encoding. On an error, whatever was already
 * appended is wiped and taken back; decoded bytes pass through a stack buffer that is wiped
 * afterwards too (the data is often a password). */
int base64_decode(const char *text, size_t len, buf *out)
{
	const unsigned char *t = (const unsigned char *)text;
	size_t start = out->len;
	unsigned char chunk[192];	/* a multiple of 3 */
	size_t n = 0;
	int ret = 0;

	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int a = b64_value(t[i]), b = b64_value(t[i + 1]);
		int c = b64_value(t[i + 2]), d = b64_value(t[i + 3]);
		size_t pad = 0;

		if (a < 0 || b < 0)
			goto bad;
		if (last && t[i + 2] == '=' && t[i + 3] == '=') {
			if ((b & 15) != 0)
				goto bad;
			pad = 2;
		} else if (last && c >= 0 && t[i + 3] == '=') {
			if ((c & 3) != 0)
				goto bad;
			pad = 1;
		} else if (c < 0 || d < 0) {
			goto bad;
		}
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12;
		if (pad < 2)
			v |= (uint32_t)c << 6;
		if (pad < 1)
			v |= (uint32_t)d;
		chunk[n++] = (unsigned char)(v >> 16);
		if (pad < 2)
			chunk[n++] = (unsigned char)(v >> 8);
		if (pad < 1)
			chunk[n++] = (unsigned char)v;
		if (n == sizeof(chunk)) {
			if (buf_append(out, chunk, n) < 0)
				goto bad;
			n = 0;
		}
	}
	if (buf_append(out, chunk, n) < 0)
		goto bad;
	goto done;
bad:
	/* take back anything appended so far, wiping it */
	if (out->data != NULL) {
		explicit_bzero(out->data + start, out->len - start);
		out->len = start;
		out->data[start] = '\0';
	}
	ret = -1;
done:
	explicit_bzero(chunk, sizeof(chunk));
	return ret;
}
