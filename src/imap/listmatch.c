/* imap/listmatch - LIST wildcards (see listmatch.h) */
#include "imap/listmatch.h"

#include <string.h>
#include <strings.h>

/* inbox_prefix - s starts with "INBOX" in any case, followed by the end or the delimiter */
static bool inbox_prefix(const char *s, char delim)
{
	return strncasecmp(s, "INBOX", 5) == 0 && (s[5] == '\0' || s[5] == delim);
}

void imap_list_pattern(const char *reference, const char *pattern, char delim, buf *out)
{
	buf_reset(out);
	buf_puts(out, reference);
	buf_puts(out, pattern);
	if (inbox_prefix(out->data != NULL ? out->data : "", delim))
		memcpy(out->data, "INBOX", 5);
}

int imap_list_pattern_check(const char *pattern, struct imap_list_budget *used,
			    const char **error_r)
{
	size_t len = strlen(pattern), wild = 0;
	for (const char *p = pattern; *p != '\0'; p++)
		wild += *p == '*' || *p == '%';
	used->bytes += len;
	used->wildcards += wild;
	used->patterns++;
	if (used->patterns > IMAP_LIST_MAX_PATTERNS) {
		*error_r = "Too many mailbox patterns";
		return -1;
	}
	if (used->bytes > IMAP_LIST_MAX_PATTERN) {
		*error_r = "Mailbox pattern too long";
		return -1;
	}
	if (used->wildcards > IMAP_LIST_MAX_WILDCARDS) {
		*error_r = "Too many wildcards in the mailbox pattern";
		return -1;
	}
	return 0;
}

/* match_from - dynamic programming over (pattern position, name position), from the ends:
 * O(|pattern| * |name|) whatever the wildcards, with two rows of |name| + 1 flags */
static bool match_from(const char *p, const char *n, char delim)
{
	size_t pl = strlen(p), nl = strlen(n), literal = 0;
	for (size_t i = 0; i < pl; i++)
		literal += p[i] != '*' && p[i] != '%';
	/* each character that is not a wildcard matches one of the name's; a pattern that
	 * passed imap_list_pattern_check may have grown in mUTF-7 decoding, but not twofold */
	if (nl > IMAP_LIST_MAX_NAME || literal > nl || pl > 2 * IMAP_LIST_MAX_PATTERN)
		return false;
	bool row[IMAP_LIST_MAX_NAME + 2], next[IMAP_LIST_MAX_NAME + 2];
	/* next = row for pattern position pl: only the empty rest of the name matches */
	for (size_t j = 0; j <= nl; j++)
		next[j] = j == nl;
	for (size_t i = pl; i-- > 0;) {
		for (size_t j = nl + 1; j-- > 0;) {
			char c = p[i];
			if (c == '*')
				row[j] = next[j] || (j < nl && row[j + 1]);
			else if (c == '%')
				row[j] = next[j] || (j < nl && n[j] != delim && row[j + 1]);
			else
				row[j] = j < nl && n[j] == c && next[j + 1];
		}
		memcpy(next, row, (nl + 1) * sizeof(bool));
	}
	return next[0];
}

bool imap_list_match(const char *pattern, const char *name, char delim)
{
	/* INBOX is matched case-insensitively: compare with the name's INBOX spelled out */
	if (inbox_prefix(name, delim) && inbox_prefix(pattern, delim))
		return match_from(pattern + 5, name + 5, delim);
	return match_from(pattern, name, delim);
}
