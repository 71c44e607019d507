/* imap/bodystructure - the ENVELOPE, BODY and BODYSTRUCTURE of a message (RFC 9051 §7.5.2,
 * RFC 3501 §7.4.2) from its bytes and its MIME tree (mime/tree.h), the way Dovecot and
 * the clients that grew up with it expect them:
 * - strings are raw header text, unfolded and trimmed (encoded words are not decoded);
 * - sizes are CRLF-normalised octets, line counts are the tree's;
 * - a part without Content-Type is text/plain with ("charset" "us-ascii"); a missing
 *   Content-Transfer-Encoding is "7bit";
 * - message/rfc822 (or message/global) with an enclosed message carries its ENVELOPE, its
 *   BODYSTRUCTURE and its lines; an encoded one (base64) is a basic part;
 * - Sender and Reply-To default to From when absent or empty. */
#ifndef TERN_IMAP_BODYSTRUCTURE_H
#define TERN_IMAP_BODYSTRUCTURE_H
#include <stdbool.h>
#include <stddef.h>
#include "lib/buf.h"

struct mime_tree;

/* imap_envelope_write - append the ENVELOPE of the header block header[0..len) (the
 * blank line may be included). utf8: the session may receive UTF-8 in quoted strings.
 * 0, or -1 when out is full. */
int imap_envelope_write(buf *out, const char *header, size_t len, bool utf8);

/* imap_bodystructure_write - append BODYSTRUCTURE (extended) or BODY (!extended) of the
 * message msg[0..len) whose tree is tree. 0, or -1 when out is full. */
int imap_bodystructure_write(buf *out, const struct mime_tree *tree, const char *msg, size_t len,
			     bool extended, bool utf8);

#endif
