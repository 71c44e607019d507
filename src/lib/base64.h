/* base64 - RFC 4648 encoding and strict decoding (for SASL) */
#ifndef TERN_BASE64_H
#define TERN_BASE64_H
#include <stddef.h>
#include "lib/buf.h"

/* base64_encode - append the encoding of in[0..len) to out; 0 or -1 when out is full. */
int base64_encode(const void *in, size_t len, buf *out);
/* base64_decode - strictly decode text[0..len) (padding required, no whitespace) and append
 * to out; 0 or -1 on bad input or a full out. */
int base64_decode(const char *text, size_t len, buf *out);

#endif
