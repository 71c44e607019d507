/* fuzz_pop3_parser - POP3 command lines: parse, then check what came back is inside the line */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *line = malloc(size + 1);
	memcpy(line, data, size);
	struct pop3_command_line c;
	const char *err;
	if (pop3_command_parse(line, size, &c, &err) == 0) {
		size_t n = c.n_args < POP3_MAX_ARGS ? c.n_args : POP3_MAX_ARGS;
		for (size_t i = 0; i < n; i++) {
			if (c.args[i] < line || c.args[i] + c.args_len[i] > line + size ||
			    c.args_len[i] == 0)
				abort();
			uint64_t v;
			(void)pop3_number_parse(&c, i, UINT32_MAX, &v);
		}
		if (strlen(c.verb) < 3 || (c.rest != NULL && strlen(c.rest) > size))
			abort();
	} else if (err == NULL) {
		abort();
	}
	free(line);
	return 0;
}
