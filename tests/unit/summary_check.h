/* summary_check - the promise of mime/tree.h about a tree's summary, for the unit test and
 * the fuzz target: parsed as a header block, the summary gives every summary field the
 * values (unfolded, in order) that the whole header gives, and nothing else. */
#ifndef TERN_TEST_SUMMARY_CHECK_H
#define TERN_TEST_SUMMARY_CHECK_H
#include <stdbool.h>
#include <string.h>

#include "lib/buf.h"
#include "mime/header.h"
#include "mime/tree.h"

static const char *const summary_names[] = { "Date", "Subject", "From", "Sender", "Reply-To",
					      "To", "Cc", "Bcc", "In-Reply-To", "Message-ID" };

/* summary_values - the unfolded values of the fields called name in the header block
 * data[0..len) (no limits), each followed by a NUL; *others_r: fields that are not
 * summary fields */
static inline void summary_values(const char *data, size_t len, const char *name, buf *out,
				  unsigned *others_r)
{
	struct mime_headers h;
	const char *err;
	mime_headers_init(&h);
	mime_headers_parse(&h, data, len, true, NULL, &err);
	for (int i = mime_headers_find(&h, data, name, 0); i >= 0;
	     i = mime_headers_find(&h, data, name, (unsigned)i + 1)) {
		mime_header_unfold(data + h.fields[i].value_offset, h.fields[i].value_len, out);
		buf_append(out, "", 1);
	}
	*others_r = 0;
	for (unsigned i = 0; i < h.count; i++)
		if (!mime_summary_field(data + h.fields[i].offset, h.fields[i].name_len))
			(*others_r)++;
	mime_headers_free(&h);
}

/* summary_faithful - the tree of data has no summary, or one that keeps the promise */
static inline bool summary_faithful(const struct mime_tree *t, const char *data)
{
	if (t->summary == NULL)
		return true;
	if (t->summary[t->summary_len] != '\0' || t->summary_len > t->parts[0].header_size)
		return false;
	bool ok = true;
	for (size_t i = 0; i < sizeof(summary_names) / sizeof(summary_names[0]) && ok; i++) {
		buf a, b;
		unsigned others_a, others_b;
		buf_init(&a, 0);
		buf_init(&b, 0);
		summary_values(data, (size_t)t->parts[0].header_size, summary_names[i], &a,
			       &others_a);
		summary_values(t->summary, t->summary_len, summary_names[i], &b, &others_b);
		ok = others_b == 0 && a.len == b.len &&
		     (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
		buf_free(&a);
		buf_free(&b);
	}
	return ok;
}
#endif
