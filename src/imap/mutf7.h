/* imap/mutf7 - mailbox names in modified UTF-7 (RFC 3501 §5.1.3), the form IMAP4rev1
 * clients use; the store keeps names in UTF-8 (what IMAP4rev2 and UTF8=ACCEPT use). */
#ifndef TERN_IMAP_MUTF7_H
#define TERN_IMAP_MUTF7_H
#include "lib/buf.h"

/* imap_utf8_to_mutf7 - append the modified UTF-7 form of the UTF-8 string in. 0, or -1 for
 * invalid UTF-8 (or out full). */
int imap_utf8_to_mutf7(const char *in, buf *out);
/* imap_mutf7_to_utf8 - append the UTF-8 form of the modified UTF-7 string in. Strict: -1
 * for a bare '&' run without '-', bytes outside printable ASCII, base64 that encodes
 * printable ASCII or a NUL, bad padding bits, unpaired surrogates, or adjacent encoded runs
 * (all non-canonical: two names must never map to one mailbox). */
int imap_mutf7_to_utf8(const char *in, buf *out);

#endif
