/* fuzz_linereader - libFuzzer target for lib/linereader.c.
 * Input: byte 0 sets the line limit (1..64, or 998 when its top bit is set), byte 1 how
 * many chunk lengths follow (0..15), then those lengths (bytes), then the stream. The
 * stream is appended to an evbuffer chunk by chunk (the rest in one go), the reader drained
 * after each append. The events it produces (lines with their bare-LF flag, "too long")
 * must equal those of a reference split of the whole stream: a line ending in LF that is at
 * most max bytes long with its line end is a line (a CR before the LF removed), a longer
 * one is one "too long", and a final unterminated run of at least max bytes is "too long".
 * Nothing may be left in the evbuffer but the unterminated tail. */
#include <string.h>

#include <event2/buffer.h>

#include "fuzz.h"
#include "lib/linereader.h"

static void ev_line(buf *t, const char *p, size_t n, bool bare)
{
	buf_printf(t, "L%c%zu:", bare ? 'n' : 'r', n);
	buf_append(t, p, n);
	buf_putc(t, '\n');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = data[0] & 0x80 ? 998 : (size_t)(data[0] % 64) + 1;
	size_t nchunks = data[1] % 16, pos = 2;
	size_t chunk[16];
	for (size_t i = 0; i < nchunks; i++)
		chunk[i] = pos < size ? data[pos++] : 0;
	const char *s = (const char *)data + pos;
	size_t len = size - pos;

	buf got, want, line;
	buf_init(&got, 0);
	buf_init(&want, 0);
	buf_init(&line, 0);

	/* the reader, fed in chunks */
	struct linereader lr;
	linereader_init(&lr, max);
	struct evbuffer *in = evbuffer_new();
	size_t off = 0;
	for (size_t i = 0; i <= nchunks; i++) {
		size_t n = i < nchunks ? chunk[i] : len;
		if (n > len - off)
			n = len - off;
		evbuffer_add(in, s + off, n);
		off += n;
		for (;;) {
			bool bare = false;
			int r = linereader_read(&lr, in, &line, &bare);
			FUZZ_ASSERT(r >= -1 && r <= 1);
			if (r == 0)
				break;
			if (r < 0) {
				buf_puts(&got, "T\n");
				continue;
			}
			FUZZ_ASSERT(line.len < max);
			FUZZ_ASSERT(line.data[line.len] == '\0');
			ev_line(&got, line.data, line.len, bare);
		}
	}
	FUZZ_ASSERT(off == len);

	/* the reference */
	size_t start = 0;
	for (;;) {
		const char *lf = memchr(s + start, '\n', len - start);
		if (lf == NULL) {
			if (len - start >= max)
				buf_puts(&want, "T\n");
			break;
		}
		size_t n = (size_t)(lf - (s + start)) + 1;
		if (n > max) {
			buf_puts(&want, "T\n");
		} else {
			size_t l = n - 1;
			bool cr = l > 0 && s[start + l - 1] == '\r';
			ev_line(&want, s + start, cr ? l - 1 : l, !cr);
		}
		start += n;
	}
	FUZZ_ASSERT(got.len == want.len && (got.len == 0 || memcmp(got.data, want.data, got.len) == 0));

	/* what stays buffered is at most the unterminated tail, shorter than max */
	size_t left = evbuffer_get_length(in);
	FUZZ_ASSERT(left < max && memchr(s + len - left, '\n', left) == NULL);

	evbuffer_free(in);
	buf_free(&got);
	buf_free(&want);
	buf_free(&line);
	return 0;
}
