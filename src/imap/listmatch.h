/* imap/listmatch - LIST / LSUB mailbox patterns (RFC 9051 §6.3.9): "*" matches any run of
 * characters, "%" any run without the hierarchy delimiter; the reference name is prefixed to
 * the pattern. INBOX matches case-insensitively, as its name is. */
#ifndef TERN_IMAP_LISTMATCH_H
#define TERN_IMAP_LISTMATCH_H
#include <stdbool.h>
#include "lib/buf.h"

/* imap_list_pattern - the pattern to match: reference and pattern joined (a reference that
 * does not end in the delimiter gets none added, as the RFC leaves the joining to the
 * server and Dovecot joins them this way); "INBOX" at the start in any case becomes
 * "INBOX". Appended to out. */
void imap_list_pattern(const char *reference, const char *pattern, char delim, buf *out);
#define IMAP_LIST_MAX_NAME 1024		/* longer names never match */

/* imap_list_match - does name match pattern? Time O(|pattern| * |name|), whatever the
 * wildcards (a pattern of many '%' cannot make it exponential). */
bool imap_list_match(const char *pattern, const char *name, char delim);
#endif
