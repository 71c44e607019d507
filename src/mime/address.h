/* mime_address - RFC 5322 address lists (From, To, Cc, …) split the way IMAP ENVELOPE
 * wants them (RFC 3501 7.4.2): each mailbox as (name, route, mailbox, host), groups as a
 * start marker (mailbox = group name) and an end marker. Tolerated (RFC 5322 4.4 and the
 * wild): route addresses "<@a,@b:u@h>", CFWS between local-part atoms, a comment used as
 * the name ("u@h (Name)"), a bare local part without host, a missing ">", unquoted dots
 * and specials in display names, empty list elements, junk (skipped up to the next ","). */
#ifndef TERN_MIME_ADDRESS_H
#define TERN_MIME_ADDRESS_H
#include <stddef.h>

enum mime_address_kind {
	MIME_ADDR_MAILBOX,
	MIME_ADDR_GROUP_START,	/* mailbox holds the group's display name */
	MIME_ADDR_GROUP_END,	/* every string NULL */
};

struct mime_address {
	enum mime_address_kind kind;
	char *name;	/* display name, unquoted, encoded words NOT decoded; NULL if none */
	char *route;	/* obsolete source route "@a,@b"; NULL if none */
	char *mailbox;	/* local part (unquoted); "" for "<>" */
	char *host;	/* domain; NULL when the address has none */
};

/* mime_address_list_parse - parse the unfolded value s[0..len). At most max addresses
 * (group markers count; 0 = 1000) are returned in *list_r (caller frees with
 * mime_address_list_free) and their number in *count_r (may be 0, *list_r then NULL).
 * Returns 0, or -1 when the list was cut at max. Unclosed groups get their end marker. */
int mime_address_list_parse(const char *s, size_t len, unsigned max,
			    struct mime_address **list_r, unsigned *count_r);
void mime_address_list_free(struct mime_address **list, unsigned count);

#endif
