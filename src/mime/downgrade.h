/* mime_downgrade - turn an 8-bit message into a 7-bit one for a server without 8BITMIME
 * (RFC 6152 §3: "convert the message to 7 bit"): each leaf body with 8-bit bytes is
 * re-encoded (text: quoted-printable, anything else: base64) and its
 * Content-Transfer-Encoding field replaced; containers marked 8bit/binary become 7bit. */
#ifndef TERN_MIME_DOWNGRADE_H
#define TERN_MIME_DOWNGRADE_H
#include <stddef.h>
#include "lib/buf.h"

/* mime_downgrade_7bit - write the 7-bit form of data[0..len) to out_fd (CRLF line ends).
 * Returns 0 when written, 1 when the message cannot be downgraded (8-bit bytes in a
 * header, which only RFC 2047 could fix and never for addresses, or in a preamble or
 * epilogue), -1 on a write error. After 1 or -1, out_fd holds a partial copy: discard it. */
int mime_downgrade_7bit(const char *data, size_t len, int out_fd);

/* mime_qp_encode / mime_base64_encode_lines - the encoders (CRLF line ends, lines of at
 * most 76 characters); also used by mime/compose. Append to out. */
void mime_qp_encode(const char *in, size_t len, buf *out);
void mime_base64_encode_lines(const char *in, size_t len, buf *out);

#endif
