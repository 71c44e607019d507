/* mime_hdrfilter - a streaming filter over the top-level header block of a message: drops
 * fields by name (with their folded continuation lines) and adds fields that are missing,
 * at the end of the header block. Memory is bounded: only the start of a line, until its
 * field name and colon are seen (at most MIME_HDRFILTER_NAME_MAX octets), is held back;
 * everything else passes straight to the output callback. The body is never looked at.
 *
 * The header block ends at the first line that is empty, or that is neither a field
 * ("name:" with printable ASCII names, blanks allowed before the colon) nor a continuation
 * (a line starting with a blank, after a field). Fields to add go just before that line;
 * when it is not the empty line (a message without a header/body separator), an empty line
 * is added after them (also when there are none), so that every reader sees the header end
 * where the filter did: a reader that skips lines that are no field (mime/header.c) must not
 * find a Bcc after such a line that the filter took for body. Lines end at LF (a CR before it is
 * part of the line), so bare LF input is filtered the same way. */
#ifndef TERN_MIME_HDRFILTER_H
#define TERN_MIME_HDRFILTER_H
#include <stdbool.h>
#include <stddef.h>

#define MIME_HDRFILTER_NAME_MAX 998
#define MIME_HDRFILTER_ADD_MAX 4

typedef void mime_hdrfilter_emit_fn(void *ctx, const void *p, size_t n);

struct mime_hdrfilter {
	/* set by mime_hdrfilter_init */
	const char *const *drop;		/* NULL-terminated names, case-insensitive */
	const char *add[MIME_HDRFILTER_ADD_MAX];	/* whole fields "Name: value\r\n" */
	bool add_seen[MIME_HDRFILTER_ADD_MAX];	/* a field of that name is in the message */
	size_t n_add;
	mime_hdrfilter_emit_fn *emit;
	void *ctx;
	/* state */
	int state;
	bool in_field;		/* a field line was seen (continuations belong to it) */
	bool field_dropped;	/* the field the next continuation line belongs to is dropped */
	bool name_blank;	/* blanks after the name: only more blanks or ':' may follow */
	size_t dropped;		/* fields dropped so far */
	size_t plen;
	char pending[MIME_HDRFILTER_NAME_MAX + 2];
};

/* mime_hdrfilter_init - drop: NULL-terminated list of field names to remove (may be NULL;
 * the strings must outlive the filter). add: n_add (at most MIME_HDRFILTER_ADD_MAX) whole
 * fields with their CRLF, each added when the message has no field of its name (the text
 * before its ':'); copied by pointer, so they must outlive the filter. */
void mime_hdrfilter_init(struct mime_hdrfilter *f, const char *const *drop,
			 const char *const *add, size_t n_add, mime_hdrfilter_emit_fn *emit,
			 void *ctx);
/* mime_hdrfilter_feed - filter n more octets of the message; output goes to emit. */
void mime_hdrfilter_feed(struct mime_hdrfilter *f, const void *p, size_t n);
/* mime_hdrfilter_finish - the message is complete: emit what is held back and the fields
 * to add when the header block had not ended yet (a message that is all header). */
void mime_hdrfilter_finish(struct mime_hdrfilter *f);

#endif
