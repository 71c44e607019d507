/* imap/write - IMAP response syntax: strings as quoted strings or literals, NIL, atoms.
 * A string goes out quoted when it can be (no CR, LF or NUL, not too long, and no 8-bit
 * byte unless the session enabled UTF8=ACCEPT / IMAP4rev2 with valid UTF-8), else as a
 * literal "{n}\r\n" followed by its bytes (RFC 9051 §4.3). */
#ifndef TERN_IMAP_WRITE_H
#define TERN_IMAP_WRITE_H
#include <stdbool.h>
#include <stddef.h>
#include "lib/buf.h"

/* imap_write_string - append s[0..len) as a quoted string or a literal. utf8: 8-bit UTF-8
 * may be quoted. 0, or -1 when out is full. */
int imap_write_string(buf *out, const char *s, size_t len, bool utf8);
/* imap_write_nstring - NIL for NULL, else as imap_write_string (NUL-terminated s). */
int imap_write_nstring(buf *out, const char *s, bool utf8);
/* imap_write_astring - an atom when s is a non-empty atom that is not NIL, else a string. */
int imap_write_astring(buf *out, const char *s, bool utf8);
/* imap_utf8_valid - s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
bool imap_utf8_valid(const char *s, size_t len);

#endif
