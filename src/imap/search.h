/* imap/search - SEARCH programs (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 MODSEQ,
 * RFC 5182 "$"): parsed from the command's arguments into a tree of keys, and matched
 * against one message at a time.
 *
 * Text keys (BCC, BODY, CC, FROM, HEADER, SUBJECT, TEXT, TO) match substrings of decoded
 * text, case-insensitively for all of Unicode: header values are unfolded and their encoded
 * words decoded (RFC 2047); BODY and TEXT look into every text part (and text in enclosed
 * messages), Content-Transfer-Encoding undone and the charset converted to UTF-8. Both
 * sides are lower-cased through the C.UTF-8 locale's towlower (independent of the
 * process's locale), and ß folds to "ss" as in Unicode full case folding. Date keys compare days: BEFORE/ON/SINCE the INTERNALDATE's UTC day,
 * SENT* the Date: field's own day (its zone's calendar), as RFC 9051 says "disregarding
 * time and timezone". */
#ifndef TERN_IMAP_SEARCH_H
#define TERN_IMAP_SEARCH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "imap/parser.h"
#include "lib/buf.h"

struct mime_tree;

enum imap_search_op {
	IMAP_SK_ALL,
	IMAP_SK_AND,		/* children (a parenthesised list, or the top level) */
	IMAP_SK_OR,		/* children[0] or children[1] */
	IMAP_SK_NOT,		/* children[0] */
	IMAP_SK_FLAGS_SET,	/* every bit of flags set (ANSWERED, SEEN, ... RECENT, NEW) */
	IMAP_SK_FLAGS_CLEAR,	/* every bit of flags clear (UNSEEN, OLD, ...) */
	IMAP_SK_KEYWORD,	/* str set (case-insensitive) */
	IMAP_SK_UNKEYWORD,
	IMAP_SK_SEQSET,		/* set, message sequence numbers */
	IMAP_SK_UIDSET,		/* set, UIDs */
	IMAP_SK_LARGER,		/* num */
	IMAP_SK_SMALLER,
	IMAP_SK_BEFORE,		/* day: days since the epoch */
	IMAP_SK_ON,
	IMAP_SK_SINCE,
	IMAP_SK_SENTBEFORE,
	IMAP_SK_SENTON,
	IMAP_SK_SENTSINCE,
	IMAP_SK_HEADER,		/* header (field name), str (folded needle) */
	IMAP_SK_BODY,		/* str */
	IMAP_SK_TEXT,		/* str */
	IMAP_SK_MODSEQ,		/* num: MODSEQ >= num */
};

struct imap_search_key {
	enum imap_search_op op;
	struct imap_search_key *children;
	size_t n_children;
	uint32_t flags;			/* store_flag bits */
	char *header;			/* HEADER's field name; FROM etc. set it too */
	char *str;			/* needle, lower-cased UTF-8; keyword as given */
	uint64_t num;
	int64_t day;
	struct imap_seqset set;
};

#define IMAP_SEARCH_MAX_DEPTH 32	/* nested NOT/OR/lists */
#define IMAP_SEARCH_MAX_KEYS 1000

/* imap_search_parse - the search keys args[0..n) (CHARSET already taken off by the caller)
 * into a tree (an AND of the keys; caller frees with imap_search_free). 0, or -1 with
 * *error_r (static) for an unknown key, a missing or bad argument, too many keys or too
 * deep a nesting (the command answers BAD). */
int imap_search_parse(const struct imap_arg *args, size_t n, struct imap_search_key **root_r,
		      const char **error_r);
void imap_search_free(struct imap_search_key **root);

/* What matching a tree needs beyond the index: the header, or the whole message. */
enum imap_search_need {
	IMAP_SEARCH_NEED_INDEX = 0,
	IMAP_SEARCH_NEED_HEADER = 1,
	IMAP_SEARCH_NEED_BODY = 2,
};
unsigned imap_search_needs(const struct imap_search_key *root);
/* imap_search_uses_saved - the tree refers to "$" (SEARCHRES). */
bool imap_search_uses_saved(const struct imap_search_key *root);
/* imap_search_uses_modseq - the tree has a MODSEQ key (anywhere, NOT MODSEQ too): the
 * response then carries the highest MODSEQ found (RFC 7162 §3.1.5). */
bool imap_search_uses_modseq(const struct imap_search_key *root);

/* imap_search_headers_within - every header field the tree's keys look at (HEADER and
 * FROM, SUBJECT, ...: their field; SENTBEFORE/ON/SINCE: Date) is one for which
 * field(name, len) is true, so that a header block holding just those fields (a MIME
 * tree's summary) matches as the whole header would. */
bool imap_search_headers_within(const struct imap_search_key *root,
				bool (*field)(const char *name, size_t len));

struct imap_search_msg {
	uint32_t seq, uid;
	uint32_t flags;			/* store_flag bits, STORE_F_RECENT included */
	const char *keywords;		/* space-separated */
	uint64_t size;
	int64_t internal_date;
	uint64_t modseq;
	/* needed only when imap_search_needs says so: the message (CRLF), its tree;
	 * for NEED_HEADER data may hold just the header block */
	const char *data;
	size_t len;
	const struct mime_tree *tree;
};

struct imap_search_ctx {
	uint32_t max_seq, max_uid;	/* what "*" stands for */
	const uint32_t *saved_uids;	/* "$": the saved result (ascending UIDs), may be NULL */
	size_t n_saved;
	size_t max_text;		/* decoded text searched per message (0: 16 MiB) */
};

/* imap_search_match - does message m match the tree? */
bool imap_search_match(const struct imap_search_key *root, const struct imap_search_msg *m,
		       const struct imap_search_ctx *ctx);

/* imap_search_fold - append the lower-cased form of UTF-8 text (invalid bytes read as
 * Windows-1252) to out: what text keys compare. */
void imap_search_fold(const char *s, size_t len, buf *out);

/* imap_date_parse - "1-Feb-1994" (RFC 9051 date-text) to days since the epoch. 0 or -1. */
int imap_date_parse(const char *s, int64_t *day_r);

#endif
