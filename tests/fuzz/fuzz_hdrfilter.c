/* fuzz_hdrfilter - libFuzzer target for mime/hdrfilter.c, the streaming filter that drops
 * fields (Bcc, Return-Path on submission) and adds missing ones (Date, Message-ID).
 * Input: byte 0 (bits 0-1: which fields are dropped and added; bits 2-7: a chunk size),
 * then the message. Checked: the output is the same whether the message is fed whole, one
 * byte at a time or in chunks; with nothing to drop or add the output is the input (but
 * for the empty line that ends a header block cut short by a line that is no field); a
 * dropped field is gone from the output's header block as mime/header.c reads it (the
 * reader the store and IMAP use), and each field to add is there; the output never grows by more than the added fields
 * and their separator. */
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "lib/buf.h"
#include "mime/header.h"
#include "mime/hdrfilter.h"

static void emit(void *ctx, const void *p, size_t n)
{
	buf_append(ctx, p, n);
}

static void run(const char *const *drop, const char *const *add, size_t n_add, const char *m,
		size_t len, size_t step, buf *out)
{
	struct mime_hdrfilter f;
	mime_hdrfilter_init(&f, drop, add, n_add, emit, out);
	for (size_t pos = 0; pos < len;) {
		size_t n = step == 0 || step > len - pos ? len - pos : step;
		mime_hdrfilter_feed(&f, m + pos, n);
		pos += n;
	}
	mime_hdrfilter_finish(&f);
}

/* count_fields - fields named name in the header block of out */
static unsigned count_fields(const buf *out, const char *name)
{
	struct mime_headers h;
	const char *err;
	mime_headers_init(&h);
	mime_headers_parse(&h, out->data ? out->data : "", out->len, true, NULL, &err);
	unsigned n = 0;
	for (unsigned i = 0; i < h.count; i++)
		n += mime_header_name_is(&h.fields[i], out->data, name);
	mime_headers_free(&h);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	static const char *const drop[] = { "Bcc", "Return-Path", NULL };
	static const char *const add[] = { "Date: Mon, 1 Jan 2024 00:30:00 +0100\r\n",
					   "Message-ID: <fuzz@example.org>\r\n" };
	unsigned flags = data[0];
	const char *const *d = flags & 1 ? drop : NULL;
	size_t n_add = flags & 2 ? 2 : 0;
	size_t step = (flags >> 2) + 1;
	const char *m = (const char *)data + 1;
	size_t len = size - 1;

	buf whole, bytes, chunks;
	buf_init(&whole, 0);
	buf_init(&bytes, 0);
	buf_init(&chunks, 0);
	run(d, add, n_add, m, len, 0, &whole);
	run(d, add, n_add, m, len, 1, &bytes);
	run(d, add, n_add, m, len, step, &chunks);
	FUZZ_ASSERT(whole.len == bytes.len && whole.len == chunks.len);
	FUZZ_ASSERT(whole.len == 0 || (memcmp(whole.data, bytes.data, whole.len) == 0 &&
				       memcmp(whole.data, chunks.data, whole.len) == 0));
	/* with nothing to drop or add: the input, or the input with the empty line inserted
	 * where a line that is no field ended the header block */
	if (d == NULL && n_add == 0) {
		FUZZ_ASSERT(whole.len == len || whole.len == len + 2);
		if (whole.len == len)
			FUZZ_ASSERT(len == 0 || memcmp(whole.data, m, len) == 0);
	}
	FUZZ_ASSERT(whole.len <= len + strlen(add[0]) + strlen(add[1]) + 2);
	if (d != NULL) {
		FUZZ_ASSERT(count_fields(&whole, "Bcc") == 0);
		FUZZ_ASSERT(count_fields(&whole, "Return-Path") == 0);
	}
	if (n_add > 0) {
		FUZZ_ASSERT(count_fields(&whole, "Date") >= 1);
		FUZZ_ASSERT(count_fields(&whole, "Message-ID") >= 1);
	}
	buf_free(&whole);
	buf_free(&bytes);
	buf_free(&chunks);
	return 0;
}
