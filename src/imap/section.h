/* imap/section - FETCH body sections (RFC 9051 §6.4.5): parsing the item
 * "BODY[1.2.HEADER.FIELDS (From To)]<0.100>" (and BODY.PEEK, BINARY, BINARY.PEEK,
 * BINARY.SIZE) and finding the bytes it names in a message through its MIME tree.
 *
 * Offsets are those of the tree: a caller that serves CRLF-normalised bytes parses the tree
 * from those bytes, so that ranges, sizes and partial fetches all count served octets. */
#ifndef TERN_IMAP_SECTION_H
#define TERN_IMAP_SECTION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"

struct mime_tree;

#define IMAP_SECTION_MAX_PARTS 32	/* numbers in "1.2.3..." */
#define IMAP_SECTION_MAX_FIELDS 100	/* names in HEADER.FIELDS (...) */

enum imap_section_item {
	IMAP_ITEM_BODY,			/* BODY[...]: sets \Seen */
	IMAP_ITEM_BODY_PEEK,
	IMAP_ITEM_BINARY,		/* RFC 3516: decoded content; sets \Seen */
	IMAP_ITEM_BINARY_PEEK,
	IMAP_ITEM_BINARY_SIZE,
};

enum imap_section_text {
	IMAP_SECTION_ALL,		/* BODY[] or BODY[1.2]: the whole message or part */
	IMAP_SECTION_HEADER,
	IMAP_SECTION_HEADER_FIELDS,
	IMAP_SECTION_HEADER_FIELDS_NOT,
	IMAP_SECTION_TEXT,
	IMAP_SECTION_MIME,
};

struct imap_section {
	enum imap_section_item item;
	uint32_t part[IMAP_SECTION_MAX_PARTS];
	size_t n_part;
	enum imap_section_text text;
	char **fields;			/* HEADER.FIELDS names as given (upper-cased) */
	size_t n_fields;
	bool partial;
	uint64_t offset, length;	/* <offset.length> */
};

/* imap_section_parse - parse a FETCH item atom (as imap/parser delivers it, the bracket
 * part included). 1: it is a section item, *sec filled (free with imap_section_free);
 * 0: not a section item (e.g. "FLAGS"); -1: a malformed section, *error_r (static). */
int imap_section_parse(const char *atom, struct imap_section *sec, const char **error_r);
void imap_section_free(struct imap_section *sec);

/* imap_section_name - append the item's name as the response shows it: "BODY[1.MIME]",
 * "BODY[HEADER.FIELDS (FROM TO)]<0>" (PEEK is dropped; a partial fetch shows its origin
 * only). 0 or -1 (out full). */
int imap_section_name(const struct imap_section *sec, buf *out);

enum imap_section_kind {
	IMAP_SECTION_BYTES,		/* the range as it is */
	IMAP_SECTION_FILTER,		/* a header block to pass through imap_header_filter */
	IMAP_SECTION_EMPTY,		/* nothing: no such part (an empty string, as Dovecot) */
};
struct imap_section_range {
	enum imap_section_kind kind;
	uint64_t offset, size;		/* in the message the tree describes */
	const char *encoding;		/* the part's Content-Transfer-Encoding (BINARY), or NULL */
	bool leaf;			/* the part is not multipart or message (BINARY needs one) */
};
/* imap_section_resolve - which bytes of the message sec names. */
void imap_section_resolve(const struct imap_section *sec, const struct mime_tree *tree,
			  struct imap_section_range *range_r);

/* imap_header_filter - append the fields of the header block hdr[0..len) whose names are
 * (HEADER.FIELDS) or are not (HEADER.FIELDS.NOT) in sec->fields, then the blank line that
 * ends the block if it has one. 0 or -1 (out full). */
int imap_header_filter(const struct imap_section *sec, const char *hdr, size_t len, buf *out);

/* imap_partial - apply <offset.length> to a text of size bytes: the [start, start+n) to
 * send. Without partial, the whole text. */
void imap_partial(const struct imap_section *sec, uint64_t size, uint64_t *start_r,
		  uint64_t *n_r);

#endif
