/* mime_hdrfilter - drop and add fields of a streamed header block (see hdrfilter.h) */
#include "mime/hdrfilter.h"

#include <string.h>
#include <strings.h>

enum {
	HF_LINE_START,	/* at the start of a header line */
	HF_CR_START,	/* a line began with CR: the empty line if LF follows */
	HF_NAME,	/* reading a field name; the line is held in pending */
	HF_KEEP,	/* passing the rest of a kept field line */
	HF_DROP,	/* discarding the rest of a dropped field line */
	HF_BODY,	/* the header block is over: everything passes */
};

void mime_hdrfilter_init(struct mime_hdrfilter *f, const char *const *drop,
			 const char *const *add, size_t n_add, mime_hdrfilter_emit_fn *emit,
			 void *ctx)
{
	memset(f, 0, sizeof(*f));
	f->drop = drop;
	if (n_add > MIME_HDRFILTER_ADD_MAX)
		n_add = MIME_HDRFILTER_ADD_MAX;
	for (size_t i = 0; i < n_add; i++)
		f->add[i] = add[i];
	f->n_add = n_add;
	f->emit = emit;
	f->ctx = ctx;
	f->state = HF_LINE_START;
}

/* emit_additions - the header block ends here: the fields the message lacks, and an empty
 * line when the block does not end with one (separator false). That empty line is added
 * even when nothing else is: without it, a reader that skips a line that is no field (as
 * mime/header.c does) would take the fields after it (a Bcc, a Return-Path) for header
 * fields that were never filtered. */
static void emit_additions(struct mime_hdrfilter *f, bool separator)
{
	for (size_t i = 0; i < f->n_add; i++)
		if (!f->add_seen[i])
			f->emit(f->ctx, f->add[i], strlen(f->add[i]));
	if (!separator)
		f->emit(f->ctx, "\r\n", 2);
	f->state = HF_BODY;
}

/* name_is - is the name name[0..len) equal to want (case-insensitive)? */
static bool name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* field_named - the held line is "name<blanks>:"; drop it or keep it */
static void field_named(struct mime_hdrfilter *f)
{
	size_t len = f->plen - 1;	/* without ':' */
	while (len > 0 && (f->pending[len - 1] == ' ' || f->pending[len - 1] == '\t'))
		len--;
	f->in_field = true;
	for (size_t i = 0; f->drop != NULL && f->drop[i] != NULL; i++) {
		if (name_is(f->pending, len, f->drop[i])) {
			f->dropped++;
			f->plen = 0;
			f->state = HF_DROP;
			return;
		}
	}
	for (size_t i = 0; i < f->n_add; i++) {
		const char *colon = strchr(f->add[i], ':');
		if (colon != NULL && (size_t)(colon - f->add[i]) == len &&
		    strncasecmp(f->pending, f->add[i], len) == 0)
			f->add_seen[i] = true;
	}
	f->emit(f->ctx, f->pending, f->plen);
	f->plen = 0;
	f->state = HF_KEEP;
}

/* not_a_field - the held line is body text: the header block ended before it */
static void not_a_field(struct mime_hdrfilter *f)
{
	emit_additions(f, false);
	if (f->plen > 0)
		f->emit(f->ctx, f->pending, f->plen);
	f->plen = 0;
}

void mime_hdrfilter_feed(struct mime_hdrfilter *f, const void *data, size_t n)
{
	const char *p = data, *end = p + n;
	while (p < end) {
		switch (f->state) {
		case HF_BODY:
			f->emit(f->ctx, p, (size_t)(end - p));
			return;
		case HF_KEEP:
		case HF_DROP: {
			const char *lf = memchr(p, '\n', (size_t)(end - p));
			const char *stop = lf != NULL ? lf + 1 : end;
			if (f->state == HF_KEEP)
				f->emit(f->ctx, p, (size_t)(stop - p));
			if (lf != NULL) {
				f->field_dropped = f->state == HF_DROP;
				f->state = HF_LINE_START;
			}
			p = stop;
			break;
		}
		case HF_LINE_START: {
			char c = *p;
			if (c == ' ' || c == '\t') {
				if (!f->in_field) {
					not_a_field(f);	/* a message starting with a blank */
					break;
				}
				/* a continuation: same fate as the field it continues */
				f->state = f->field_dropped ? HF_DROP : HF_KEEP;
				break;
			}
			if (c == '\r') {
				f->pending[0] = c;
				f->plen = 1;
				f->state = HF_CR_START;
				p++;
			} else if (c == '\n') {
				emit_additions(f, true);
			} else {
				f->plen = 0;
				f->name_blank = false;
				f->state = HF_NAME;
			}
			break;
		}
		case HF_CR_START:
			if (*p == '\n') {
				f->plen = 0;
				emit_additions(f, true);
				f->emit(f->ctx, "\r", 1);
			} else {
				not_a_field(f);
			}
			break;
		case HF_NAME: {
			char c = *p;
			if (c == ':') {
				if (f->plen == 0) {
					not_a_field(f);
					break;
				}
				f->pending[f->plen++] = c;
				p++;
				field_named(f);
			} else if (c == ' ' || c == '\t') {
				if (f->plen == 0) {
					not_a_field(f);
					break;
				}
				f->name_blank = true;
				f->pending[f->plen++] = c;
				p++;
			} else if (c > 32 && c < 127 && !f->name_blank) {
				f->pending[f->plen++] = c;
				p++;
			} else {
				not_a_field(f);
				break;
			}
			if (f->state == HF_NAME && f->plen >= MIME_HDRFILTER_NAME_MAX)
				not_a_field(f);
			break;
		}
		}
	}
}

void mime_hdrfilter_finish(struct mime_hdrfilter *f)
{
	switch (f->state) {
	case HF_BODY:
		return;
	case HF_KEEP:
		/* the last field has no line end: end it before adding fields after it */
		for (size_t i = 0; i < f->n_add; i++)
			if (!f->add_seen[i]) {
				f->emit(f->ctx, "\r\n", 2);
				break;
			}
		emit_additions(f, true);
		return;
	case HF_NAME:
	case HF_CR_START:
		not_a_field(f);
		return;
	default:	/* at a line start, or in a dropped field */
		emit_additions(f, true);
		return;
	}
}
