/* smtp_parser - SMTP command lines and the DATA/BDAT byte stream, without I/O.
 * Pure functions over bytes so they can be unit-tested and fuzzed; the session in
 * smtp/server.c owns the policy (which command is allowed when). */
#ifndef TERN_SMTP_PARSER_H
#define TERN_SMTP_PARSER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
};

/* smtp_verb_parse - split a command line (no CRLF) into its verb (case-insensitive) and
 * *args_r pointing past the single space after it ("" when there are none). A verb must be
 * followed by SP or end of line: "MAILX" is unknown. */
enum smtp_verb smtp_verb_parse(const char *line, size_t len, const char **args_r);
/* A line with a NUL byte anywhere in line[0..len) is SMTP_VERB_UNKNOWN with *args_r "" (the
 * argument parsers take NUL-terminated text and must not see a shortened line). */

/* An ESMTP parameter "KEYWORD[=value]" (RFC 5321 §4.1.2 esmtp-param). */
struct smtp_param {
	char *keyword;		/* upper-cased */
	char *value;		/* NULL when there is no "=" */
};

/* A reverse- or forward-path. */
struct smtp_path {
	bool null;		/* "<>" */
	char *address;		/* "local@domain" as given (source route dropped, local part
				   kept with its quotes), NULL for null; domain lower-cased */
	char *localpart;	/* the local part, quotes removed and quoted-pairs unescaped */
	char *domain;		/* lower case, NULL for "<postmaster>" */
	bool utf8;		/* contains non-ASCII (needs SMTPUTF8) */
};

struct smtp_path_args {
	struct smtp_path path;
	struct smtp_param *params;
	size_t n_params;
};

/* smtp_parse_mail_from - parse the arguments of MAIL ("FROM:<path> [params]").
 * smtp_parse_rcpt_to - parse the arguments of RCPT ("TO:<path> [params]"); "<Postmaster>"
 * without a domain is accepted (RFC 5321 §4.1.1.3).
 * Accepts a space after the colon (common client habit), source routes ("<@a,@b:u@d>",
 * ignored as RFC 5321 §4.1.2 says), quoted local parts, address literals ("[1.2.3.4]",
 * "[IPv6:…]"), UTF-8 in local part and domain (utf8 set). Limits: local part 64 octets,
 * domain 255, path 256 (RFC 5321 §4.5.3.1), at most 16 parameters.
 * Returns 0, or -1 with *error_r (static text fit for a 501 reply). Free with
 * smtp_path_args_free. */
int smtp_parse_mail_from(const char *args, struct smtp_path_args *r, const char **error_r);
int smtp_parse_rcpt_to(const char *args, struct smtp_path_args *r, const char **error_r);
/* Details of the grammar accepted: spaces (only SP) may follow the colon, separate parameters
 * and trail the line; a domain is dot-separated labels of letters, digits and inner hyphens
 * (UTF-8 allowed, no trailing dot); an address literal is "[IPv4]" or "[IPv6:…]" (no other
 * tags); UTF-8 must be well formed (RFC 3629) and is allowed in atoms, quoted strings (RFC 6531
 * qtextSMTP) and labels, not in parameters. An address literal is lower-cased like a domain
 * ("[ipv6:::1]"). The limits count octets as sent: the path from "<" to ">", the local part
 * with its quotes. On -1, *r is left empty (smtp_path_args_free is still safe). */
void smtp_path_args_free(struct smtp_path_args *r);

/* smtp_parse_domain_arg - validate the argument of HELO/EHLO: a domain or address literal.
 * 0 or -1 with *error_r. */
int smtp_parse_helo(const char *args, const char **error_r);

/* smtp_parse_bdat - "size [LAST]"; 0 or -1 with *error_r. */
int smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r, const char **error_r);

/* The message stream of DATA (dot-stuffed, ended by CRLF.CRLF) or BDAT (raw).
 * Only <CRLF>.<CRLF> ends DATA: a bare LF or bare CR before or after the dot never does
 * (SMTP smuggling). Bare CR and bare LF anywhere in the text are recorded in bare_eol so
 * the session can refuse the message; they never start a new line for the purpose of the
 * terminator or dot-unstuffing. Lines longer than max_line octets (with CRLF) set
 * line_too_long. The data at the very start counts as the start of a line. */
enum smtp_data_mode { SMTP_DATA_DOT, SMTP_DATA_RAW };

struct smtp_data_parser {
	enum smtp_data_mode mode;
	int state;		/* private */
	size_t max_line;
	size_t line_len;	/* private */
	bool bare_eol;		/* a CR not followed by LF, or an LF not preceded by CR */
	bool line_too_long;
	uint64_t lines;		/* lines seen (for statistics) */
	char held[2];		/* private: output owed from an earlier feed (see smtp_data_held) */
	unsigned char n_held;	/* private */
};

void smtp_data_init(struct smtp_data_parser *p, enum smtp_data_mode mode, size_t max_line);
/* smtp_data_feed - consume in[0..inlen): append the message bytes to out (room for inlen
 * bytes is enough: output never exceeds input) and set *outlen_r; *consumed_r is how much of
 * in was used. Returns 1 when DOT mode saw the terminator (consumed stops right after its
 * LF; the terminator itself is not output, the CRLF before it is), else 0 (all consumed).
 * In RAW mode returns 0 always and only tracks bare_eol / line_too_long; call
 * smtp_data_finish_raw at the end of the last chunk. */
int smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t inlen, char *out,
		   size_t *outlen_r, size_t *consumed_r);
/* More on smtp_data_feed: out may be NULL (the output is discarded, e.g. to skip a refused
 * message up to its terminator) or equal to in (unstuffing in place). Line lengths run from
 * one CRLF to the next, counting every octet received (a stuffing dot too); "lines" counts
 * CRLF-ended lines, not the terminator. RAW output is the input unchanged. After returning 1
 * the parser stays done (further feeds consume nothing and return 1); smtp_data_init starts
 * the next message.
 * Why bytes can be held: ".\r" at the start of a line outputs nothing until the next octet
 * decides; if that is not LF, the CR and that octet are both due, one more than the feed's
 * input. To keep output <= input, DOT mode then holds one byte back and emits it at the start
 * of the next feed. When the terminator is seen nothing is held, so a complete message never
 * misses a byte; only a caller comparing partial output (tests, fuzzers) needs smtp_data_held.
 * smtp_data_held - copy the held-back output bytes (at most 2) to out; returns their count. */
size_t smtp_data_held(const struct smtp_data_parser *p, char out[2]);
/* smtp_data_finish_raw - end of the BDAT LAST chunk: a trailing bare CR counts as bare_eol. */
void smtp_data_finish_raw(struct smtp_data_parser *p);

#endif
