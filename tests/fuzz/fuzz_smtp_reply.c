/* fuzz_smtp_reply - libFuzzer target for smtp/reply.c.
 * The input is split into lines at LF (a CR before it removed, as the line reader does) and
 * fed to a parser whose limits come from the first two bytes. Every complete reply must obey
 * the contract (code range, limits, no NUL in the text, a well-formed enhanced code), and
 * its one-line form must be printable and bounded. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "smtp/reply.h"

/* check_reply - a complete reply obeys the header's promises */
static void check_reply(const struct smtp_reply_parser *p)
{
	const struct smtp_reply *r = &p->reply;
	size_t elen;

	FUZZ_ASSERT(r->code >= 200 && r->code <= 559);
	FUZZ_ASSERT(r->code % 100 / 10 <= 5);
	FUZZ_ASSERT(r->n_lines >= 1 && r->n_lines <= p->max_lines);
	FUZZ_ASSERT(r->text.len <= p->max_text);
	FUZZ_ASSERT(r->text.data != NULL && strlen(r->text.data) == r->text.len);
	if (r->enhanced[0] != '\0') {
		FUZZ_ASSERT(smtp_reply_is_enhanced(r->enhanced, strlen(r->enhanced),
						   (char)('0' + r->code / 100), &elen));
		FUZZ_ASSERT(elen == strlen(r->enhanced));
		FUZZ_ASSERT(strncmp(r->text.data, r->enhanced, elen) == 0);
	}
	size_t max = 20 + (size_t)(r->text.len % 50);
	char *one = smtp_reply_oneline(r, max);
	FUZZ_ASSERT(strlen(one) <= max + 4 * 1 + 3);
	for (const char *c = one; *c; c++)
		FUZZ_ASSERT(*c >= 0x20 && *c < 0x7f);
	free(one);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply_parser p;
	size_t max_lines = size > 0 ? data[0] % 8 : 0;
	size_t max_text = size > 1 ? (size_t)data[1] * 4 : 0;
	size_t pos = size > 2 ? 2 : size;

	smtp_reply_parser_init(&p, max_lines, max_text);
	while (pos < size) {
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t end = nl ? (size_t)(nl - data) : size;
		size_t len = end - pos;
		if (len > 0 && data[pos + len - 1] == '\r')
			len--;
		char *line = malloc(len + 1);
		memcpy(line, data + pos, len);
		line[len] = '\0';
		const char *err = NULL;
		int r = smtp_reply_parse_line(&p, line, len, &err);
		FUZZ_ASSERT(r >= -1 && r <= 1);
		if (r == -1)
			FUZZ_ASSERT(err != NULL && err[0] != '\0');
		if (r == 1)
			check_reply(&p);
		free(line);
		pos = end + 1;
	}
	smtp_reply_parser_free(&p);
	return 0;
}
