/* mime_header - RFC 5322 header blocks: field splitting, unfolding, lookup.
 * Parsing is incremental: call mime_headers_parse again with the same start and a longer
 * len (the buffer may move between calls: fields are stored as offsets). Obsolete syntax is
 * tolerated: blanks before the colon (RFC 5322 4.5), lines without a colon (skipped, e.g. an
 * mbox "From " line), NULs and 8-bit bytes (kept), bare LF or CRLF line ends. */
#ifndef TERN_MIME_HEADER_H
#define TERN_MIME_HEADER_H
#include <stdbool.h>
#include <stddef.h>
#include "lib/buf.h"

struct mime_header_field {
	size_t offset;		/* of the field's first byte, from the start of the block */
	size_t size;		/* the whole field including its folded lines and line end */
	size_t name_len;	/* the name is at offset, blanks before ':' removed */
	size_t value_offset;	/* just after the colon */
	size_t value_len;	/* raw (still folded) value, without the final line end */
};

struct mime_header_limits {
	size_t max_size;	/* header block bytes, blank line included; 0 = no limit */
	unsigned max_fields;	/* fields stored; 0 = no limit */
};

struct mime_headers {
	struct mime_header_field *fields;	/* owned; mime_headers_free */
	unsigned count;
	unsigned alloc;
	size_t size;		/* bytes consumed; when complete, the block with its blank line */
	size_t bare_lf;		/* LFs without CR before them within size */
	bool complete;		/* the blank line (or the end of input) was reached */
};

void mime_headers_init(struct mime_headers *h);
/* mime_headers_free - release the field array; h can be reused after mime_headers_init. */
void mime_headers_free(struct mime_headers *h);
/* mime_headers_reset - forget the fields (keep the memory) to parse another block. */
void mime_headers_reset(struct mime_headers *h);

/* mime_headers_parse - parse the header block at data[0..len). eof: no more bytes will come
 * (a block without a blank line then ends at len).
 * Returns 1 when the block is complete (h->size is its size, blank line included), 0 when
 * more input is needed (only without eof), -1 when a limit was exceeded: *error_r (static
 * string) says which; h keeps the fields accepted before it and mime_header_block_end
 * finds where the block ends. */
int mime_headers_parse(struct mime_headers *h, const char *data, size_t len, bool eof,
		       const struct mime_header_limits *lim, const char **error_r);

/* mime_header_block_end - size of the header block at data[0..len) including the blank
 * line (len when there is none); *bare_lf_r (may be NULL) counts bare LFs in it. */
size_t mime_header_block_end(const char *data, size_t len, size_t *bare_lf_r);

/* mime_headers_find - index of the first field named name (ASCII case-insensitive) at or
 * after index from, or -1. data is the block the fields were parsed from. */
int mime_headers_find(const struct mime_headers *h, const char *data, const char *name,
		      unsigned from);

/* mime_header_name_is - does field f in data have this name (case-insensitive)? */
bool mime_header_name_is(const struct mime_header_field *f, const char *data,
			 const char *name);

/* mime_header_unfold - append the value v[0..len) unfolded (line ends removed, the
 * blanks after them kept), blanks at both ends trimmed. 0 or -1 (out full). */
int mime_header_unfold(const char *v, size_t len, buf *out);

#endif
