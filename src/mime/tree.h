/* mime_tree - the MIME structure of a message held in memory (or mmap'd): every part with
 * its offsets, sizes and line counts, and the Content-* fields IMAP BODYSTRUCTURE needs
 * (RFC 3501 7.4.2). Parts are stored in pre-order (a part before its children, children in
 * order) in one array; part 0 is the message itself.
 *
 * Parsing never fails: broken input gives a tree that describes the bytes as well as can
 * be done. Boundaries are recognised only at the start of a line, as "--" boundary, then an
 * optional "--", then nothing but blanks; a part ends at the first line with its own
 * boundary (so a multipart missing its close delimiter ends where its parent's next
 * boundary is). A multipart without boundary parameter, without any boundary line, or past
 * the depth limit is a leaf (flag MIME_PART_MULTIPART clear; IMAP shows such a part as a
 * single body). A part without Content-Type is text/plain; charset=us-ascii (message/rfc822
 * inside multipart/digest). message/rfc822 (and message/global) with a 7bit/8bit/binary
 * encoding has one child: the enclosed message.
 *
 * Offsets and sizes are in bytes of the input as it is (CRLF or bare LF); header_bare_lf
 * and body_bare_lf count LFs without CR so that a caller can give CRLF-normalised sizes
 * (size + bare_lf). A multipart child's body excludes the line end before the next boundary
 * (RFC 2046 5.1.1). */
#ifndef TERN_MIME_TREE_H
#define TERN_MIME_TREE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "lib/buf.h"
#include "mime/param.h"

#define MIME_NO_PART UINT32_MAX

/* hard ceilings for the caller's limits, whatever they ask for */
#define MIME_MAX_DEPTH_CEILING 200
#define MIME_MAX_PARTS_CEILING 100000

struct mime_limits {
	unsigned max_depth;		/* nesting levels below the message (root = depth 0) */
	unsigned max_parts;		/* parts in the tree, root included */
	size_t max_header_size;		/* per part; fields beyond are ignored */
	unsigned max_header_fields;	/* per part */
	unsigned max_params;		/* per Content-Type / Content-Disposition */
};

/* mime_limits_default - depth 50, 5000 parts, 256 KiB and 2000 fields per header, 64 params */
void mime_limits_default(struct mime_limits *lim);

enum mime_part_flags {
	MIME_PART_MULTIPART = 1u << 0,		/* children are the multipart's body parts (>= 1) */
	MIME_PART_MESSAGE = 1u << 1,		/* exactly one child: the enclosed message */
	MIME_PART_DEFAULT_TYPE = 1u << 2,	/* no usable Content-Type: the default was used */
	MIME_PART_NO_CLOSE_BOUNDARY = 1u << 3,	/* multipart without "--boundary--" */
	MIME_PART_HEADER_LIMIT = 1u << 4,	/* header too big or too many fields: truncated */
	MIME_PART_DEPTH_LIMIT = 1u << 5,	/* children not parsed: too deep */
	MIME_PART_COUNT_LIMIT = 1u << 6,	/* children dropped: too many parts */
	MIME_PART_PARAM_LIMIT = 1u << 7,	/* parameters dropped */
	MIME_PART_NO_HEADER_END = 1u << 8,	/* header without a blank line after it */
};
#define MIME_PART_ALL_FLAGS 0x1ffu

struct mime_part {
	uint32_t parent;	/* index, MIME_NO_PART for the root */
	uint32_t first_child;	/* index or MIME_NO_PART */
	uint32_t next_sibling;	/* index or MIME_NO_PART */
	uint32_t nchildren;
	uint32_t depth;		/* 0 for the root */
	uint32_t flags;		/* enum mime_part_flags */

	uint64_t header_offset;	/* start of the part's header in the message */
	uint64_t header_size;	/* header including the blank line after it */
	uint64_t body_offset;	/* = header_offset + header_size */
	uint64_t body_size;
	uint64_t header_bare_lf, body_bare_lf;
	uint64_t body_lines;	/* LFs in the body, plus one for a last line without LF */

	char *type, *subtype;	/* lowercase; never NULL */
	struct mime_param *params;	/* Content-Type parameters, names lowercase */
	uint32_t nparams;
	char *id;		/* Content-ID, raw (unfolded, trimmed); NULL if absent */
	char *description;	/* Content-Description, raw (encoded words not decoded) */
	char *encoding;		/* Content-Transfer-Encoding token, lowercase; NULL if absent */
	char *location;		/* Content-Location, raw */
	char *md5;		/* Content-MD5, raw */
	char *disposition;	/* Content-Disposition token, lowercase; NULL if absent */
	struct mime_param *disp_params;
	uint32_t ndisp_params;
	char **language;	/* Content-Language tags in order */
	uint32_t nlanguage;
};

/* The summary of a message: the fields of its own header (part 0) that IMAP ENVELOPE is
 * made of (RFC 9051 7.5.2) and that header searches usually look at - Date, Subject, From,
 * Sender, Reply-To, To, Cc, Bcc, In-Reply-To, Message-ID - copied byte for byte, in their
 * order, each with its folded lines and its line end. Parsed as a header block
 * (mime_headers_parse) it gives exactly the fields of those names, with the same values,
 * that the whole header gives, so a cached tree can answer ENVELOPE and SEARCH FROM/SUBJECT/
 * ... without the message file. It is made only when that is certain: the header was parsed
 * whole within the tree's limits and within MIME_SUMMARY_MAX_HEADER bytes and
 * MIME_SUMMARY_MAX_FIELDS fields (below the limits ENVELOPE and SEARCH parse a header
 * with), and every summary field ends with a line end. */
#define MIME_SUMMARY_MAX_HEADER (64 * 1024)
#define MIME_SUMMARY_MAX_FIELDS 1000

/* mime_summary_field - is the field name[0..len) one of the summary's (ASCII
 * case-insensitive)? */
bool mime_summary_field(const char *name, size_t len);

struct mime_tree {
	struct mime_part *parts;	/* count entries, pre-order; owned by the tree */
	uint32_t count;
	uint64_t msg_size;		/* length of the message the tree describes */
	char *summary;			/* summary_len bytes (NUL-terminated, may hold NULs) of
					   the summary fields, see above; NULL when none could be
					   made; "" when the header has none of them */
	size_t summary_len;
};

/* mime_tree_parse - the tree of data[0..len). Never fails (limits only cut the tree and
 * set flags); the result is owned by the caller: mime_tree_free. Strings are copies: the
 * tree does not refer to data. lim NULL = defaults. */
struct mime_tree *mime_tree_parse(const char *data, size_t len, const struct mime_limits *lim);
void mime_tree_free(struct mime_tree **tree);

/* mime_tree_serialize - append a compact, versioned encoding of the tree to out.
 * 0 or -1 (out full). */
int mime_tree_serialize(const struct mime_tree *tree, buf *out);

/* mime_tree_deserialize - rebuild a tree from blob[0..len) made by mime_tree_serialize
 * for a message of msg_size bytes. Every count, length and offset is checked (offsets
 * within msg_size, children inside their parent's body, pre-order structure), so corrupt
 * or stale input yields NULL with *error_r (static string), never a bad tree. max_parts
 * (0 = MIME_MAX_PARTS_CEILING) bounds the work. The tree is the caller's: mime_tree_free. */
struct mime_tree *mime_tree_deserialize(const void *blob, size_t len, uint64_t msg_size,
					unsigned max_parts, const char **error_r);

/* mime_tree_describe - append a one-line-per-part text dump (for tests and debugging):
 * "<section> <type>/<subtype> h=<off>+<size> b=<off>+<size> l=<lines> f=<flags hex>". */
int mime_tree_describe(const struct mime_tree *tree, buf *out);

/* mime_part_param - the Content-Type parameter name of part p, or NULL. */
const char *mime_part_param(const struct mime_part *p, const char *name);

#endif
