/* mime_encword - RFC 2047 encoded words and charset conversion to UTF-8 (iconv).
 * Tolerant of what real mail does: adjacent encoded words are joined (the blanks between
 * them dropped, RFC 2047 6.2) and their bytes decoded together when the charset is the same
 * (so a character split over two words survives); encoded words glued to other text are
 * still decoded; an unknown charset leaves the encoded word as it was; lowercase "b"/"q";
 * RFC 2231 language suffixes ("=?utf-8*en?q?...?="). Raw 8-bit text outside encoded words
 * is kept when it is valid UTF-8 and read as Windows-1252 otherwise. NULs are dropped. */
#ifndef TERN_MIME_ENCWORD_H
#define TERN_MIME_ENCWORD_H
#include <stddef.h>
#include "lib/buf.h"

/* mime_encword_decode - decode the (unfolded) header text in[0..len) to UTF-8 appended to
 * out. 0, or -1 when out is full. */
int mime_encword_decode(const char *in, size_t len, buf *out);

/* mime_charset_to_utf8 - convert in[0..len) from charset to UTF-8 appended to out; bytes
 * invalid in the charset become U+FFFD (for UTF-8 itself they are read as Windows-1252:
 * mislabelled Latin-1 is far more common than real damage). Common aliases and supersets are applied
 * (us-ascii and iso-8859-1 are read as windows-1252, gb2312 as gb18030, ks_c_5601-1987 as
 * cp949). Returns 0, 1 when the charset is unknown (nothing appended), -1 when out is full. */
int mime_charset_to_utf8(const char *charset, const char *in, size_t len, buf *out);

/* mime_utf8_sanitize - append in[0..len) keeping valid UTF-8 and reading every other byte
 * as Windows-1252; NULs are dropped. 0 or -1 (out full). */
int mime_utf8_sanitize(const char *in, size_t len, buf *out);

#endif
