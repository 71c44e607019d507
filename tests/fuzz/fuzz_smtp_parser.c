/* fuzz_smtp_parser - libFuzzer target for smtp/parser.c.
 * The input goes (as a NUL-terminated copy) through every command-argument parser, whose
 * results are checked against the contract's limits, and through the DATA/BDAT stream
 * machine, fed whole, split at a point taken from the first byte, and one byte at a time:
 * all must agree. A round trip checks that dot-stuffing the input as a message and feeding
 * it back gives the message. Any disagreement aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "smtp/parser.h"

/* check_path_args - a successful MAIL/RCPT parse obeys the contract. */
static void check_path_args(const struct smtp_path_args *a)
{
	const struct smtp_path *p = &a->path;

	FUZZ_ASSERT(a->n_params <= 16);
	FUZZ_ASSERT(a->n_params == 0 || a->params != NULL);
	for (size_t i = 0; i < a->n_params; i++) {
		const char *k = a->params[i].keyword;

		FUZZ_ASSERT(k != NULL && k[0] != '\0');
		for (const char *c = k; *c; c++)
			FUZZ_ASSERT((*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-');
		for (size_t j = 0; j < i; j++)
			FUZZ_ASSERT(strcmp(k, a->params[j].keyword) != 0);
		if (a->params[i].value != NULL) {
			FUZZ_ASSERT(a->params[i].value[0] != '\0');
			for (const char *c = a->params[i].value; *c; c++)
				FUZZ_ASSERT(*c > ' ' && *c < 127 && *c != '=');
		}
	}
	if (p->null) {
		FUZZ_ASSERT(p->address == NULL && p->localpart == NULL && p->domain == NULL);
		return;
	}
	FUZZ_ASSERT(p->address != NULL && p->localpart != NULL);
	FUZZ_ASSERT(strlen(p->address) <= 254);
	FUZZ_ASSERT(strlen(p->localpart) <= 64);
	if (p->domain != NULL) {
		size_t dl = strlen(p->domain), al = strlen(p->address);

		FUZZ_ASSERT(dl > 0 && dl <= 255 && al > dl);
		/* the address ends in "@" + domain */
		FUZZ_ASSERT(p->address[al - dl - 1] == '@' &&
			    strcmp(p->address + al - dl, p->domain) == 0);
		for (const char *c = p->domain; *c; c++)
			FUZZ_ASSERT(!(*c >= 'A' && *c <= 'Z'));
	} else {
		FUZZ_ASSERT(strcmp(p->address, p->localpart) == 0 && strlen(p->address) == 10);
	}
	for (const char *c = p->address; *c; c++) {
		FUZZ_ASSERT((unsigned char)*c >= 32 && *c != 127);
		if ((unsigned char)*c >= 0x80)
			FUZZ_ASSERT(p->utf8);
	}
}

/* fuzz_commands - every argument parser on s; no crash, and results within the limits. */
static void fuzz_commands(const char *s, size_t len)
{
	struct smtp_path_args a;
	const char *args = NULL, *err = NULL;
	uint64_t bsize;
	bool last;
	enum smtp_verb v = smtp_verb_parse(s, len, &args);

	FUZZ_ASSERT(args != NULL);
	FUZZ_ASSERT(*args == '\0' || (args > s && args <= s + len && args[-1] == ' '));
	if (v == SMTP_VERB_UNKNOWN)
		FUZZ_ASSERT(*args == '\0');
	if (smtp_parse_mail_from(s, &a, &err) == 0)
		check_path_args(&a);
	else
		FUZZ_ASSERT(err != NULL && a.path.address == NULL && a.params == NULL);
	smtp_path_args_free(&a);
	if (smtp_parse_rcpt_to(s, &a, &err) == 0) {
		check_path_args(&a);
		FUZZ_ASSERT(!a.path.null);
	}
	smtp_path_args_free(&a);
	if (smtp_parse_mail_from(args, &a, &err) == 0)
		check_path_args(&a);
	smtp_path_args_free(&a);
	if (smtp_parse_rcpt_to(args, &a, &err) == 0)
		check_path_args(&a);
	smtp_path_args_free(&a);
	if (smtp_parse_helo(s, &err) == 0)
		FUZZ_ASSERT(s[0] != '\0' && s[0] != ' ');
	(void)smtp_parse_helo(args, &err);
	if (smtp_parse_bdat(s, &bsize, &last, &err) == 0)
		FUZZ_ASSERT(bsize <= UINT64_MAX / 2);
	(void)smtp_parse_bdat(args, &bsize, &last, &err);
}

struct run {
	int ret;
	size_t consumed;
	buf out;
	bool bare_eol, line_too_long;
	uint64_t lines;
};

/* run_feed - feed in[0..len) in chunks ending at cuts[] (each chunk and its output buffer
 * allocated to exactly its size); output plus held bytes go to r->out. */
static void run_feed(const uint8_t *in, size_t len, enum smtp_data_mode mode, size_t max_line,
		     const size_t *cuts, size_t ncuts, struct run *r)
{
	struct smtp_data_parser p;
	size_t pos = 0;

	smtp_data_init(&p, mode, max_line);
	memset(r, 0, sizeof(*r));
	buf_init(&r->out, 0);
	for (size_t k = 0; k <= ncuts && r->ret == 0; k++) {
		size_t end = k < ncuts && cuts != NULL ? cuts[k] : len;
		size_t n = end - pos, outlen, consumed;
		char *chunk = xmalloc(n), *out = xmalloc(n);

		memcpy(chunk, in + pos, n);
		r->ret = smtp_data_feed(&p, chunk, n, out, &outlen, &consumed);
		FUZZ_ASSERT(r->ret == 0 || r->ret == 1);
		FUZZ_ASSERT(outlen <= n && consumed <= n);
		FUZZ_ASSERT(r->ret == 1 || consumed == n);
		if (mode == SMTP_DATA_RAW)
			FUZZ_ASSERT(r->ret == 0 && outlen == n && memcmp(out, chunk, n) == 0);
		buf_append(&r->out, out, outlen);
		r->consumed += consumed;
		pos = end;
		free(chunk);
		free(out);
	}
	if (r->ret == 0) {
		char held[2];

		buf_append(&r->out, held, smtp_data_held(&p, held));
		if (mode == SMTP_DATA_RAW)
			smtp_data_finish_raw(&p);
	} else {
		char held[2];

		FUZZ_ASSERT(smtp_data_held(&p, held) == 0);
	}
	r->bare_eol = p.bare_eol;
	r->line_too_long = p.line_too_long;
	r->lines = p.lines;
}

static void run_same(const struct run *a, const struct run *b)
{
	FUZZ_ASSERT(a->ret == b->ret);
	FUZZ_ASSERT(a->consumed == b->consumed);
	FUZZ_ASSERT(a->bare_eol == b->bare_eol);
	FUZZ_ASSERT(a->line_too_long == b->line_too_long);
	FUZZ_ASSERT(a->lines == b->lines);
	FUZZ_ASSERT(a->out.len == b->out.len);
	FUZZ_ASSERT(a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0);
}

/* fuzz_data - whole vs split vs bytewise feeding must agree. */
static void fuzz_data(const uint8_t *data, size_t size, enum smtp_data_mode mode,
		      size_t max_line)
{
	struct run whole, split, bytes;
	size_t cut = size > 0 ? data[0] % (size + 1) : 0;

	run_feed(data, size, mode, max_line, NULL, 0, &whole);
	run_feed(data, size, mode, max_line, &cut, 1, &split);
	run_same(&whole, &split);
	if (size <= 256) {
		size_t *cuts = xmalloc((size + 1) * sizeof(*cuts));

		for (size_t k = 1; k < size; k++)
			cuts[k - 1] = k;
		run_feed(data, size, mode, max_line, cuts, size ? size - 1 : 0, &bytes);
		run_same(&whole, &bytes);
		buf_free(&bytes.out);
		free(cuts);
	}
	if (whole.ret == 1) {
		/* it ended with CRLF.CRLF (or the message was empty) */
		const uint8_t *e = data + whole.consumed;

		FUZZ_ASSERT(whole.consumed >= 3 && memcmp(e - 3, ".\r\n", 3) == 0);
		FUZZ_ASSERT(whole.consumed == 3 || memcmp(e - 5, "\r\n", 2) == 0);
	}
	buf_free(&whole.out);
	buf_free(&split.out);
}

/* fuzz_roundtrip - the input as message text: dot-stuff it (after CRLF and at the start, the
 * same line starts as the parser's), end it, and feed it back: out comes the text. */
static void fuzz_roundtrip(const uint8_t *data, size_t size)
{
	buf wire, want;
	struct run r;
	size_t cut = size > 0 ? data[0] % (size + 1) : 0;

	buf_init(&wire, 0);
	buf_init(&want, 0);
	for (size_t i = 0; i < size; i++) {
		/* CR LF ends a line wherever it occurs, even after a bare CR */
		bool bol = i == 0 || (i >= 2 && data[i - 2] == '\r' && data[i - 1] == '\n');

		if (bol && data[i] == '.')
			buf_putc(&wire, '.');
		buf_putc(&wire, (char)data[i]);
	}
	buf_append(&want, data, size);
	if (!(size >= 2 && data[size - 2] == '\r' && data[size - 1] == '\n') && size > 0) {
		buf_puts(&wire, "\r\n");
		buf_puts(&want, "\r\n");
	}
	buf_puts(&wire, ".\r\n");
	run_feed((const uint8_t *)wire.data, wire.len, SMTP_DATA_DOT, 0, &cut, 1, &r);
	FUZZ_ASSERT(r.ret == 1);
	FUZZ_ASSERT(r.consumed == wire.len);
	FUZZ_ASSERT(r.out.len == want.len);
	FUZZ_ASSERT(want.len == 0 || memcmp(r.out.data, want.data, want.len) == 0);
	buf_free(&r.out);
	buf_free(&wire);
	buf_free(&want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = xmalloc(size + 1);
	size_t max_line = size > 1 ? data[1] % 32 : 0;

	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_commands(s, size);
	free(s);

	fuzz_data(data, size, SMTP_DATA_DOT, max_line);
	fuzz_data(data, size, SMTP_DATA_RAW, max_line);
	fuzz_data(data, size, SMTP_DATA_DOT, 0);
	fuzz_roundtrip(data, size);
	return 0;
}
