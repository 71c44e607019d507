/* fuzz_dkim_sig - libFuzzer target for dkim/parse.c: the DKIM-Signature, ARC-Seal,
 * ARC-Message-Signature and key record parsers, and the header split, both header
 * canonicalisations and the hash input of a parsed signature, on the same bytes.
 * Contract checks: tag values lie inside the input, b= offsets are ordered and inside the
 * value, h= is bounded and holds "from", the header split covers the message in order.
 * Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/parse.h"

#define FUZZ_ASSERT(cond)                                                               \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                 \
			abort();                                                        \
		}                                                                       \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sig(const char *s, size_t len, const struct dkim_sig *sig, int rc)
{
	if (rc < 0)
		return;
	FUZZ_ASSERT(sig->d != NULL && sig->s != NULL && sig->b8 != NULL);
	FUZZ_ASSERT(sig->b_raw_start <= sig->b_raw_end && sig->b_raw_end <= len);
	FUZZ_ASSERT(sig->b.len > 0);
	(void)s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct dkim_tag tags[DKIM_MAX_TAGS];
	size_t n = 0;
	const char *err = NULL;
	if (dkim_tags_parse(s, size, tags, DKIM_MAX_TAGS, &n, &err) == 0) {
		FUZZ_ASSERT(n <= DKIM_MAX_TAGS);
		for (size_t i = 0; i < n; i++) {
			FUZZ_ASSERT(tags[i].value >= s && tags[i].value + tags[i].vlen <= s + size);
			FUZZ_ASSERT(tags[i].raw_start <= tags[i].raw_end && tags[i].raw_end <= size);
		}
	} else {
		FUZZ_ASSERT(err != NULL);
	}

	struct dkim_sig sig;
	int rc = dkim_sig_parse(s, size, &sig, &err);
	check_sig(s, size, &sig, rc);
	if (rc == 0) {
		bool from = false;
		FUZZ_ASSERT(sig.n_h > 0 && sig.n_h <= DKIM_MAX_SIGNED_HEADERS);
		for (size_t i = 0; i < sig.n_h; i++)
			from |= strcasecmp(sig.h[i], "from") == 0;
		FUZZ_ASSERT(from);
		FUZZ_ASSERT(sig.bh.len == 32 || sig.bh.len == 20);
		/* the hash input of this signature over a small fixed message */
		static const char msg[] = "From: a@b.test\r\nTo: c@d.test\r\n\r\nbody\r\n";
		struct dkim_header h;
		dkim_header_split(msg, sizeof(msg) - 1, 10, &h);
		buf field, out;
		buf_init(&field, 0);
		buf_init(&out, 0);
		buf_puts(&field, "DKIM-Signature:");
		buf_append(&field, s, size);
		dkim_header_hash_input(&h, &sig, field.data, field.len, 15, &out);
		free(h.f);
		buf_free(&field);
		buf_free(&out);
	}
	dkim_sig_free(&sig);
	for (int ams = 0; ams < 2; ams++) {
		rc = dkim_arc_sig_parse(s, size, ams, &sig, &err);
		check_sig(s, size, &sig, rc);
		FUZZ_ASSERT(rc < 0 || (sig.instance >= 1 && sig.instance <= 50));
		dkim_sig_free(&sig);
	}

	struct dkim_keyrec k;
	if (dkim_keyrec_parse(s, size, &k, &err) == 0)
		FUZZ_ASSERT(k.revoked == (k.p.len == 0));
	dkim_keyrec_free(&k);

	/* the same bytes as a message: fields in order, inside, canonicalised */
	struct dkim_header h;
	dkim_header_split(s, size, 50, &h);
	FUZZ_ASSERT(h.n <= 50 && h.body_off <= size);
	const char *prev = s;
	buf out;
	buf_init(&out, 0);
	for (size_t i = 0; i < h.n; i++) {
		FUZZ_ASSERT(h.f[i].start >= prev && h.f[i].start + h.f[i].len <= s + size);
		FUZZ_ASSERT(h.f[i].name_len <= h.f[i].len);
		prev = h.f[i].start + h.f[i].len;
		dkim_canon_header(DKIM_CANON_RELAXED, h.f[i].start, h.f[i].len, &out);
		dkim_canon_header(DKIM_CANON_SIMPLE, h.f[i].start, h.f[i].len, &out);
	}
	buf_reset(&out);
	dkim_body_canon(DKIM_CANON_RELAXED, s + h.body_off, size - h.body_off, &out);
	FUZZ_ASSERT(out.len == 0 || (out.len >= 2 && memcmp(out.data + out.len - 2, "\r\n", 2) == 0));
	buf_free(&out);
	free(h.f);
	return 0;
}
