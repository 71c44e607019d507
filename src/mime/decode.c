/* mime_decode - tolerant base64 and quoted-printable decoding */
#include "mime/decode.h"

#include <string.h>

#include "lib/strnum.h"

static const signed char b64_value[256] = {
	['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
	['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
	['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
	['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
	['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
	['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
	['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
	['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
	['/'] = 64,
};	/* value + 1; 0 = not in the alphabet */

void mime_base64_init(struct mime_base64_state *st)
{
	st->acc = 0;
	st->n = 0;
}

/* b64_flush - emit what a partial group holds (2 chars -> 1 byte, 3 -> 2); a lone
 * character carries too few bits and is dropped. */
static int b64_flush(struct mime_base64_state *st, buf *out)
{
	unsigned char o[2];
	size_t n = 0;
	if (st->n == 2) {
		o[0] = (unsigned char)(st->acc >> 4);
		n = 1;
	} else if (st->n == 3) {
		o[0] = (unsigned char)(st->acc >> 10);
		o[1] = (unsigned char)(st->acc >> 2);
		n = 2;
	}
	st->acc = 0;
	st->n = 0;
	return n ? buf_append(out, o, n) : 0;
}

int mime_base64_more(struct mime_base64_state *st, const char *in, size_t len, buf *out)
{
	unsigned char o[192];
	size_t on = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '=') {
			/* padding ends a group; some senders concatenate encoded blocks, so
			 * decoding goes on after it */
			if (on && buf_append(out, o, on) < 0)
				return -1;
			on = 0;
			if (b64_flush(st, out) < 0)
				return -1;
			continue;
		}
		int v = b64_value[c];
		if (v == 0)
			continue;
		st->acc = (st->acc << 6) | (uint32_t)(v - 1);
		if (++st->n == 4) {
			o[on++] = (unsigned char)(st->acc >> 16);
			o[on++] = (unsigned char)(st->acc >> 8);
			o[on++] = (unsigned char)st->acc;
			st->acc = 0;
			st->n = 0;
			if (on + 3 > sizeof(o)) {
				if (buf_append(out, o, on) < 0)
					return -1;
				on = 0;
			}
		}
	}
	return on ? buf_append(out, o, on) : 0;
}

int mime_base64_end(struct mime_base64_state *st, buf *out)
{
	return b64_flush(st, out);
}

int mime_base64_decode(const char *in, size_t len, buf *out)
{
	struct mime_base64_state st;
	mime_base64_init(&st);
	if (mime_base64_more(&st, in, len, out) < 0)
		return -1;
	return mime_base64_end(&st, out);
}

int mime_qp_decode(const char *in, size_t len, bool header_q, buf *out)
{
	size_t i = 0;
	while (i < len) {
		/* one line: [i, eol) with its line end [eol, next) */
		const char *lf = header_q ? NULL : memchr(in + i, '\n', len - i);
		size_t next = lf ? (size_t)(lf - in) + 1 : len;
		size_t eol = lf ? (size_t)(lf - in) : len;
		if (lf && eol > i && in[eol - 1] == '\r')
			eol--;
		/* trailing blanks were added in transport: RFC 2045 6.7 (3) */
		size_t end = eol;
		if (!header_q)
			while (end > i && (in[end - 1] == ' ' || in[end - 1] == '\t'))
				end--;
		bool soft = false;
		size_t start = i;
		for (size_t j = i; j < end; j++) {
			unsigned char c = (unsigned char)in[j];
			if (c == '_' && header_q) {
				if (buf_append(out, in + start, j - start) < 0 || buf_putc(out, ' ') < 0)
					return -1;
				start = j + 1;
			} else if (c == '=') {
				if (buf_append(out, in + start, j - start) < 0)
					return -1;
				if (j + 1 == end) {	/* soft line break (or "=" at the very end) */
					soft = true;
					start = end;
					break;
				}
				int h = j + 2 < end ? strnum_hexdigit((unsigned char)in[j + 1]) : -1;
				int l = h >= 0 ? strnum_hexdigit((unsigned char)in[j + 2]) : -1;
				if (h >= 0 && l >= 0) {
					if (buf_putc(out, (char)(h * 16 + l)) < 0)
						return -1;
					j += 2;
					start = j + 1;
				} else {
					/* not an escape: keep the "=" as it is */
					start = j;
				}
				if (start == j) {
					if (buf_putc(out, '=') < 0)
						return -1;
					start = j + 1;
				}
			}
		}
		if (buf_append(out, in + start, end - start) < 0)
			return -1;
		if (!soft && next > eol && buf_append(out, in + eol, next - eol) < 0)
			return -1;
		i = next;
	}
	return 0;
}
