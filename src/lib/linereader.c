/* linereader - bounded line reads from a libevent input buffer */
#include "lib/linereader.h"

void linereader_init(struct linereader *lr, size_t max)
{
	lr->max = max;
	lr->skipping = false;
}

int linereader_read(struct linereader *lr, struct evbuffer *in, buf *line, bool *bare_lf_r)
{
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return 0;
		/* Look for the LF only within what a valid line may span. */
		struct evbuffer_ptr end;
		if (evbuffer_ptr_set(in, &end, avail < lr->max ? avail : lr->max,
				     EVBUFFER_PTR_SET) < 0)
			return 0;
		struct evbuffer_ptr lf = evbuffer_search_range(in, "\n", 1, NULL, &end);
		if (lr->skipping) {
			if (lf.pos < 0) {
				evbuffer_drain(in, avail < lr->max ? avail : lr->max);
				continue;
			}
			evbuffer_drain(in, (size_t)lf.pos + 1);
			lr->skipping = false;
			continue;
		}
		if (lf.pos < 0) {
			if (avail < lr->max)
				return 0;
			/* max bytes and no LF: too long. Drop what we have, skip the rest. */
			evbuffer_drain(in, lr->max);
			lr->skipping = true;
			return -1;
		}
		size_t n = (size_t)lf.pos + 1;
		buf_reset(line);
		char *p = (char *)evbuffer_pullup(in, (ssize_t)n);
		size_t len = n - 1;
		bool cr = len > 0 && p[len - 1] == '\r';
		if (cr)
			len--;
		if (buf_append(line, p, len) < 0) {
			evbuffer_drain(in, n);
			return -1;
		}
		evbuffer_drain(in, n);
		*bare_lf_r = !cr;
		return 1;
	}
}
