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
/* What one LIST / LSUB may ask for: every pattern is matched against every mailbox, so the
 * patterns of a command (each joined with the reference; RFC 5258 allows a list) have at most
 * IMAP_LIST_MAX_PATTERN bytes and IMAP_LIST_MAX_WILDCARDS '*' and '%' together, in at most
 * IMAP_LIST_MAX_PATTERNS patterns. Clients send one or a few short ones. */
#define IMAP_LIST_MAX_PATTERN 1024
#define IMAP_LIST_MAX_WILDCARDS 32
#define IMAP_LIST_MAX_PATTERNS 32

/* imap_list_pattern_check - is the joined pattern within the limits, with *used (bytes and
 * wildcards of the command's patterns before it; zero them for the first) counted so far?
 * Adds its own. 0, or -1 with *error_r (static): the command fails (NO [LIMIT]) rather
 * than match it against every mailbox. */
struct imap_list_budget {
	size_t bytes, wildcards, patterns;
};
int imap_list_pattern_check(const char *pattern, struct imap_list_budget *used,
			    const char **error_r);

/* imap_list_match - does name match pattern? Time O(|pattern| * |name|), whatever the
 * wildcards (a pattern of many '%' cannot make it exponential); a pattern longer than
 * 2 * IMAP_LIST_MAX_PATTERN matches nothing, and one with more characters to match than the
 * name has costs one pass over it. */
bool imap_list_match(const char *pattern, const char *name, char delim);
#endif
