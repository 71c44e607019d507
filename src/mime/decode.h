/* mime_decode - tolerant Content-Transfer-Encoding decoders (base64, quoted-printable).
 * Unlike lib/base64 (strict, for SASL) these accept what real mail contains: characters
 * outside the alphabet are skipped, padding may be missing or appear mid-stream, hex may be
 * lowercase, a bad "=" escape is kept literally, trailing blanks before a line end are
 * dropped. Decoding never fails on input; the only error is a full output buffer. */
#ifndef TERN_MIME_DECODE_H
#define TERN_MIME_DECODE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"

/* Incremental base64: feed any split of the input; the result does not depend on it. */
struct mime_base64_state {
	uint32_t acc;	/* collected bits */
	unsigned n;	/* alphabet characters collected in acc (0..3) */
};

void mime_base64_init(struct mime_base64_state *st);
/* mime_base64_more - decode in[0..len) and append to out. 0, or -1 when out is full (out
 * then holds a prefix of the result). */
int mime_base64_more(struct mime_base64_state *st, const char *in, size_t len, buf *out);
/* mime_base64_end - flush a final group that lacked its padding. 0 or -1 (out full). */
int mime_base64_end(struct mime_base64_state *st, buf *out);
/* mime_base64_decode - the whole of in[0..len) at once. 0 or -1 (out full). */
int mime_base64_decode(const char *in, size_t len, buf *out);

/* mime_qp_decode - quoted-printable in[0..len) appended to out. Line ends are kept as they
 * are in the input (CRLF or LF); soft breaks ("=" + optional blanks + line end) vanish.
 * header_q: RFC 2047 "Q" encoding ('_' is a space, no line structure). 0 or -1 (out full). */
int mime_qp_decode(const char *in, size_t len, bool header_q, buf *out);

#endif
