/* imap/parser - the IMAP command reader: tags, atoms, quoted strings, synchronising and
 * non-synchronising literals (RFC 9051 §4.3, RFC 7888), literal8 (RFC 3516), nested
 * lists, with caller-set limits. Incremental: bytes are fed as they arrive and the parser
 * resumes at any byte boundary, so a client may stop anywhere.
 *
 * Tokens. A command is `tag SP name [SP args] CRLF`. Arguments are atoms, quoted strings,
 * literals and parenthesised lists of them. An atom may carry a bracketed part with spaces
 * and parentheses inside, as FETCH's `BODY[HEADER.FIELDS (From To)]<0.100>` and
 * `BODY.PEEK[1.2.MIME]` need: from a '[' inside an atom to its matching ']' everything but
 * CR, LF, NUL and 8-bit bytes belongs to the atom, which goes on after the ']'. The parser
 * does not interpret atoms: NIL, sequence sets, flags and search keys are the command
 * handlers' business (helpers below).
 *
 * Literals. `{n}` (synchronising) makes the parser return IMAP_PARSE_CONTINUE: the caller
 * sends a continuation request ("+ ...") and feeds on; `{n+}` (LITERAL+) and `{n-}`-less
 * forms do not. A literal up to limits.max_inline_literal is kept in the argument. A larger
 * one at the top level (APPEND's message) stops the parser with IMAP_PARSE_LITERAL_STREAM
 * before any of its bytes are read: the caller either streams the n bytes itself (from its
 * input, not through the parser) and then calls imap_parser_stream_done, or refuses with
 * imap_parser_stream_reject. A literal over limits.max_literal is refused before the client
 * sends it when it is synchronising; a non-synchronising one that large is a fatal error
 * (the client sends it anyway; RFC 7888 §4 allows closing the connection).
 *
 * Errors. On a syntax error or a limit the parser returns IMAP_PARSE_ERROR at once (the
 * caller answers "tag BAD reason", or "* BAD" when no tag was read) and then, as further
 * bytes are fed, skips the rest of that command line silently, including the bytes of any
 * non-synchronising literal it announced, before it reads the next command. No error makes
 * memory grow beyond the limits. */
#ifndef TERN_IMAP_PARSER_H
#define TERN_IMAP_PARSER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* also NIL, numbers, sequence sets, flags like \Seen */
	IMAP_ARG_QUOTED,
	IMAP_ARG_LITERAL,	/* literal or literal8 (see imap_arg.literal8) */
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	bool literal8;			/* ~{n}: may hold NUL bytes */
	bool streamed;			/* a literal the caller streamed: str is NULL */
	size_t len;			/* bytes of str (atom, quoted, literal) */
	char *str;			/* NUL-terminated (a literal8 may hold NULs too) */
	uint64_t stream_size;		/* streamed literal: its size */
	struct imap_arg *list;		/* IMAP_ARG_LIST: its elements */
	size_t n_list;
};

struct imap_command {
	const char *tag;		/* NULL until read */
	const char *name;		/* as sent; compare case-insensitively */
	struct imap_arg *args;
	size_t n_args;
};

struct imap_parser_limits {
	size_t max_line;		/* bytes of a command outside its literals */
	size_t max_inline_literal;	/* larger literals are streamed or refused */
	size_t max_literal_total;	/* all inline literal bytes of one command */
	uint64_t max_literal;		/* the largest literal accepted at all (APPENDLIMIT) */
	size_t max_depth;		/* list nesting */
	size_t max_args;		/* arguments of a command, lists' elements included */
};
/* defaults: 64 KiB line, 64 KiB inline literal, 1 MiB of inline literals, 50 MiB literal,
 * depth 32, 10,000 arguments */
extern const struct imap_parser_limits imap_parser_default_limits;

enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,		/* imap_parser_error(); skip mode follows */
	IMAP_PARSE_MORE = 0,		/* everything fed was used: feed more */
	IMAP_PARSE_COMMAND = 1,		/* a whole command: imap_parser_command() */
	IMAP_PARSE_CONTINUE = 2,	/* send "+ ..." for a synchronising literal, feed more */
	IMAP_PARSE_LITERAL_STREAM = 3,	/* a large top-level literal is next: accept or reject */
};

struct imap_parser;

/* imap_parser_new - a parser with these limits (NULL: the defaults). */
struct imap_parser *imap_parser_new(const struct imap_parser_limits *limits);
void imap_parser_free(struct imap_parser **p);

/* imap_parser_feed - parse data[0..len). *used_r is set to the bytes consumed, which is
 * less than len after any result but IMAP_PARSE_MORE: the caller handles the result and
 * feeds the rest. After IMAP_PARSE_COMMAND the command stays readable until
 * imap_parser_reset, which the caller must call before feeding again. */
enum imap_parse_result imap_parser_feed(struct imap_parser *p, const void *data, size_t len,
					size_t *used_r);

/* imap_parser_command - the command read so far: complete after IMAP_PARSE_COMMAND,
 * partial (tag, name, the arguments before the literal) after IMAP_PARSE_LITERAL_STREAM
 * or IMAP_PARSE_ERROR. Owned by the parser; valid until reset or the next feed. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);

/* imap_parser_reset - forget the command (after IMAP_PARSE_COMMAND, or to drop a partial
 * one). The parser expects a new command; it keeps its limits. Frees the arguments. */
void imap_parser_reset(struct imap_parser *p);

/* imap_parser_error - why the last IMAP_PARSE_ERROR happened (static text). */
const char *imap_parser_error(const struct imap_parser *p);
/* imap_parser_error_tag - the tag of the erroneous command, NULL when none was read (then
 * the answer is "* BAD"). Valid until the next feed. */
const char *imap_parser_error_tag(const struct imap_parser *p);
/* imap_parser_fatal - the error leaves no way to stay in sync (an oversized
 * non-synchronising literal): answer BYE and close. */
bool imap_parser_fatal(const struct imap_parser *p);

/* imap_parser_literal_size - the pending literal's size (after IMAP_PARSE_LITERAL_STREAM);
 * imap_parser_literal_sync - true when the client waits for "+" before sending it;
 * imap_parser_literal_binary - true for literal8 (~{n}). */
uint64_t imap_parser_literal_size(const struct imap_parser *p);
bool imap_parser_literal_sync(const struct imap_parser *p);
bool imap_parser_literal_binary(const struct imap_parser *p);

/* imap_parser_stream_done - the caller consumed the literal's bytes itself: the argument is
 * recorded as a streamed literal and parsing goes on with what follows it. */
void imap_parser_stream_done(struct imap_parser *p);
/* imap_parser_stream_reject - the caller refuses the literal (and answers the command NO or
 * BAD). A synchronising literal was never sent: the parser expects a new command. A
 * non-synchronising one is on its way: the parser skips its bytes and the rest of the line. */
void imap_parser_stream_reject(struct imap_parser *p);

/* ---- helpers for command handlers ---- */

/* imap_arg_is_atom - true when a is an atom equal to s, case-insensitively. */
bool imap_arg_is_atom(const struct imap_arg *a, const char *s);
/* imap_arg_is_string - true for an atom, quoted string or (inline) literal: an astring. */
bool imap_arg_is_astring(const struct imap_arg *a);
/* imap_arg_is_nil - the atom NIL. */
bool imap_arg_is_nil(const struct imap_arg *a);

/* A sequence set (RFC 9051 seq-number / seq-range / sequence-set): ranges with first <= last;
 * "*" is IMAP_SEQ_STAR, resolved by the caller against the mailbox. "$" (SEARCHRES,
 * RFC 5182) parses as saved = true with no ranges. */
#define IMAP_SEQ_STAR UINT32_MAX
struct imap_seqset {
	bool saved;
	size_t n;
	struct { uint32_t first, last; } *ranges;	/* caller frees with imap_seqset_free */
};
/* imap_seqset_parse - parse s (NUL-terminated) into *set: 0, or -1 with *error_r (static)
 * for empty parts, zero, numbers over 2^32-1, junk, or more than max_ranges ranges. "4:2"
 * becomes 2..4, "5:*" 5..STAR ("*:5" likewise). */
int imap_seqset_parse(const char *s, size_t max_ranges, struct imap_seqset *set,
		      const char **error_r);
void imap_seqset_free(struct imap_seqset *set);
/* imap_seqset_contains - is v in set, "*" standing for star (a range's ends in any order)? */
bool imap_seqset_contains(const struct imap_seqset *set, uint32_t v, uint32_t star);
/* imap_seqset_normalize - "*" replaced by star, each range's ends ordered, the ranges sorted
 * and overlapping or adjacent ones merged: afterwards set->ranges are ascending and disjoint
 * (what walks alongside another ascending list need). A "$" set is left alone. */
void imap_seqset_normalize(struct imap_seqset *set, uint32_t star);

#endif
