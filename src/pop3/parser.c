/* pop3_parser - POP3 command lines and arguments */
#include "pop3/parser.h"

#include <string.h>

#include "lib/strnum.h"

int pop3_command_parse(char *line, size_t len, struct pop3_command_line *cmd,
		       const char **error_r)
{
	memset(cmd, 0, sizeof(*cmd));
	if (memchr(line, '\0', len) != NULL) {
		*error_r = "NUL character in command";
		return -1;
	}
	size_t vl = 0;
	while (vl < len && line[vl] != ' ')
		vl++;
	if (vl < 3 || vl > 4) {
		*error_r = "Unknown command";
		return -1;
	}
	for (size_t i = 0; i < vl; i++) {
		char c = line[i];
		if (c >= 'a' && c <= 'z')
			c = (char)(c - 'a' + 'A');
		if (c < 'A' || c > 'Z') {
			*error_r = "Unknown command";
			return -1;
		}
		cmd->verb[i] = c;
	}
	cmd->verb[vl] = '\0';
	if (vl == len)
		return 0;
	char *p = line + vl + 1;
	char *end = line + len;
	*end = '\0';
	cmd->rest = p;
	while (p < end) {
		char *sp = memchr(p, ' ', (size_t)(end - p));
		char *stop = sp ? sp : end;
		if (stop == p) {
			*error_r = "Empty argument";
			return -1;
		}
		if (cmd->n_args == POP3_MAX_ARGS) {
			cmd->n_args = POP3_MAX_ARGS + 1;	/* "too many": rest is still valid */
			return 0;
		}
		cmd->args[cmd->n_args] = p;
		cmd->args_len[cmd->n_args++] = (size_t)(stop - p);
		if (sp != NULL && sp + 1 == end) {
			*error_r = "Empty argument";
			return -1;
		}
		p = sp ? sp + 1 : end;
	}
	return 0;
}

int pop3_number_parse(const struct pop3_command_line *cmd, size_t i, uint64_t max,
		      uint64_t *n_r)
{
	if (i >= cmd->n_args || i >= POP3_MAX_ARGS)
		return -1;
	return strnum_u64(cmd->args[i], cmd->args_len[i], max, n_r);
}
