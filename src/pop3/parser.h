/* pop3_parser - POP3 command lines and arguments, without I/O (unit-tested and fuzzed). */
#ifndef TERN_POP3_PARSER_H
#define TERN_POP3_PARSER_H
#include <stddef.h>
#include <stdint.h>

#define POP3_MAX_ARGS 2

struct pop3_command_line {
	char verb[5];			/* upper-cased, NUL-terminated (RFC 1939: 3-4 chars) */
	const char *args[POP3_MAX_ARGS];	/* pointers into the line (not NUL-terminated) */
	size_t args_len[POP3_MAX_ARGS];
	size_t n_args;			/* POP3_MAX_ARGS + 1: there were more */
	char *rest;			/* everything after "VERB ", NUL-terminated (PASS and
					   AUTH take it whole: a password may hold spaces) */
};

/* pop3_command_parse - split line[0..len) (line[len] must be writable: it is set to NUL):
 * a verb of 3 or 4 letters, then arguments separated by single spaces. NUL bytes, a bad
 * verb or an empty argument (two spaces, trailing space) are errors. 0 or -1 with
 * *error_r (static text). */
int pop3_command_parse(char *line, size_t len, struct pop3_command_line *cmd,
		       const char **error_r);

/* pop3_number_parse - argument i as a message number or line count: decimal digits only
 * (no sign, no spaces), at most max. 0 or -1 (also when the argument is absent). */
int pop3_number_parse(const struct pop3_command_line *cmd, size_t i, uint64_t max,
		      uint64_t *n_r);

#endif
