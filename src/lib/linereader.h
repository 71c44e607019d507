/* linereader - bounded line reads from a libevent input buffer.
 * A line ends at LF; a CR right before it is removed. A line longer than max (counting its
 * line end) is reported once as "too long", then skipped up to its LF so the reader stays in
 * sync with the protocol. */
#ifndef TERN_LINEREADER_H
#define TERN_LINEREADER_H
#include <stdbool.h>
#include <stddef.h>
#include <event2/buffer.h>
#include "lib/buf.h"

struct linereader {
	size_t max;
	bool skipping;	/* inside the tail of an overlong line */
};

void linereader_init(struct linereader *lr, size_t max);
/* linereader_read - 1: a line is in *line (reset first, NUL-terminated, without CRLF, may
 * contain NUL bytes: use line->len), *bare_lf_r tells whether it ended in LF alone;
 * 0: no complete line yet (input kept); -1: the line was too long (reported once). */
int linereader_read(struct linereader *lr, struct evbuffer *in, buf *line, bool *bare_lf_r);
/* linereader_skipping - true inside the tail of an overlong line (its LF not seen yet). */
static inline bool linereader_skipping(const struct linereader *lr)
{
	return lr->skipping;
}

#endif
