/* utf8 - decoding and encoding one code point of UTF-8 (RFC 3629): no overlong forms, no
 * surrogates, nothing above U+10FFFF. */
#ifndef TERN_UTF8_H
#define TERN_UTF8_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"

/* utf8_decode - the code point at s[0..len) (len >= 1): its length in bytes, with *cp_r set,
 * or 0 when the bytes there are not well-formed UTF-8 (*cp_r untouched). */
size_t utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_r);
/* utf8_append - append code point cp (<= U+10FFFF) as UTF-8. 0 or -1 (out full). */
int utf8_append(buf *out, uint32_t cp);
/* utf8_valid - s[0..len) is well-formed UTF-8 */
bool utf8_valid(const char *s, size_t len);

#endif
