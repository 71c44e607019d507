/* fuzz_dsn - libFuzzer target for outbound/dsn.c: the bounce, delay and success reports
 * built from what remote servers and clients chose (diagnostics, addresses, ORCPT, ENVID,
 * the original message).
 * Input: byte 0 (bits 0-1: recipients 1..3; bit 2: RET=FULL; bit 3: arrival date; bit 4:
 * no original; bit 5: the original after 70,000 octets of padding lines, so that it spans
 * read chunks), byte 1 (two bits of action per recipient), then NUL-separated fields:
 * reporting MTA, envelope sender, ENVID, queue id, and per recipient final recipient,
 * ORCPT, status, remote MTA, diagnostic, note; what follows the last field is the original.
 * Checked, when the report is made: every line ends in LF after a CR; before the original,
 * no line holds another CR or is longer than 998 octets, and the top header is 7-bit (for an ASCII envelope sender); the report parses as
 * multipart/report with exactly 2 or 3 parts (the boundary never occurs in the original),
 * the second holding one Final-Recipient per recipient. dsn_original_contains finds any
 * piece of the original without line ends (across chunks too). A failure has an error. */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "mime/header.h"
#include "mime/tree.h"
#include "outbound/dsn.h"

#define PAD 70000

static int tmpfd(void)
{
	char path[] = "/tmp/fuzz-dsn-XXXXXX";
	int fd = mkstemp(path);
	FUZZ_ASSERT(fd >= 0);
	unlink(path);
	return fd;
}

static char *read_all(int fd, size_t *len_r)
{
	off_t n = lseek(fd, 0, SEEK_END);
	FUZZ_ASSERT(n >= 0);
	char *p = malloc((size_t)n + 1);
	FUZZ_ASSERT(pread(fd, p, (size_t)n, 0) == n);
	p[n] = '\0';
	*len_r = (size_t)n;
	return p;
}

static void check_report(const char *m, size_t len, size_t n_rcpts, bool with_orig,
			 bool ascii_sender)
{
	/* the parts before the original: where the third part's body starts, or the end */
	struct mime_tree *t = mime_tree_parse(m, len, NULL);
	const struct mime_part *top = &t->parts[0];
	FUZZ_ASSERT(strcmp(top->type, "multipart") == 0 && strcmp(top->subtype, "report") == 0);
	FUZZ_ASSERT(top->nchildren == (with_orig ? 3u : 2u));
	uint32_t c1 = top->first_child, c2 = t->parts[c1].next_sibling;
	uint32_t c3 = with_orig ? t->parts[c2].next_sibling : MIME_NO_PART;
	size_t own = c3 != MIME_NO_PART ? (size_t)t->parts[c3].body_offset : len;

	for (size_t start = 0; start < len;) {
		const char *lf = memchr(m + start, '\n', len - start);
		FUZZ_ASSERT(lf != NULL);
		size_t n = (size_t)(lf - (m + start)) + 1;
		FUZZ_ASSERT(n >= 2 && m[start + n - 2] == '\r');
		/* the original passes as it is (a bare CR stays, lines may be long) */
		if (start < own)
			FUZZ_ASSERT(n <= 1000 && memchr(m + start, '\r', n - 2) == NULL);
		if (start < top->header_size && ascii_sender)
			for (size_t i = 0; i < n; i++)
				FUZZ_ASSERT((unsigned char)m[start + i] < 0x80 && m[start + i] != '\0');
		start += n;
	}

	/* the status part: one Final-Recipient per recipient */
	const struct mime_part *st = &t->parts[c2];
	FUZZ_ASSERT(strcmp(st->type, "message") == 0);
	size_t finals = 0;
	const char *b = m + st->body_offset, *end = b + st->body_size;
	for (const char *p = b; p < end; p++) {
		if ((p == b || p[-1] == '\n') && (size_t)(end - p) >= 16 &&
		    memcmp(p, "Final-Recipient:", 16) == 0)
			finals++;
	}
	FUZZ_ASSERT(finals == n_rcpts);
	for (const char *p = b; p < end; p++)
		FUZZ_ASSERT((unsigned char)*p < 0x80);
	mime_tree_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned flags = data[0], actions = data[1];
	size_t n_rcpts = (flags & 3) % 3 + 1;
	size_t n_fields = 4 + 6 * n_rcpts;
	const char *fields[4 + 6 * 3];
	char *copy = malloc(size);
	memcpy(copy, data + 2, size - 2);
	copy[size - 2] = '\0';
	size_t pos = 0, rest = size - 2;
	for (size_t i = 0; i < n_fields; i++) {
		fields[i] = copy + pos;
		size_t l = strnlen(copy + pos, rest - pos);
		pos = pos + l < rest ? pos + l + 1 : rest;
	}
	const char *orig = (const char *)data + 2 + pos;
	size_t orig_len = rest - pos;

	struct dsn_rcpt rc[3];
	for (size_t i = 0; i < n_rcpts; i++) {
		const char *const *f = fields + 4 + 6 * i;
		rc[i] = (struct dsn_rcpt){
			.final_rcpt = f[0],
			.orig_rcpt = f[1][0] ? f[1] : NULL,
			.action = (enum dsn_action)((actions >> (2 * i)) & 3),
			.status = f[2][0] ? f[2] : NULL,
			.remote_mta = f[3][0] ? f[3] : NULL,
			.diagnostic = f[4][0] ? f[4] : NULL,
			.note = f[5][0] ? f[5] : NULL,
			.last_attempt = flags & 8 ? 1700000000 : 0,
			.will_retry_until = flags & 8 ? 1700400000 : 0,
		};
	}
	struct dsn_report r = {
		.reporting_mta = fields[0],
		.envelope_sender = fields[1],
		.envid = fields[2][0] ? fields[2] : NULL,
		.arrival = flags & 8 ? 1699990000 : 0,
		.queue_id = fields[3][0] ? fields[3] : NULL,
		.return_full = flags & 4,
		.rcpts = rc,
		.n_rcpts = n_rcpts,
	};

	int orig_fd = -1;
	uint64_t off = 0;
	bool with_orig = !(flags & 16);
	if (with_orig) {
		orig_fd = tmpfd();
		/* as in the spool: the original starts after our Return-Path */
		FUZZ_ASSERT(write(orig_fd, "Return-Path: <a@b>\r\n", 20) == 20);
		off = 20;
		if (flags & 32) {
			static char pad[PAD];
			if (pad[0] == '\0')
				for (size_t i = 0; i < PAD; i++)
					pad[i] = i % 50 == 49 ? '\n' : i % 50 == 48 ? '\r' : 'x';
			FUZZ_ASSERT(write(orig_fd, pad, PAD) == PAD);
		}
		FUZZ_ASSERT(write(orig_fd, orig, orig_len) == (ssize_t)orig_len);
	}
	uint64_t osize = (flags & 32 ? PAD : 0) + orig_len;
	int out_fd = tmpfd();
	char *err = NULL;
	int ret = dsn_compose(out_fd, &r, orig_fd, off, osize, &err);
	FUZZ_ASSERT(ret == 0 || ret == -1);
	if (ret < 0) {
		FUZZ_ASSERT(err != NULL && err[0] != '\0');
		free(err);
	} else {
		size_t len;
		char *m = read_all(out_fd, &len);
		bool ascii = true;
		for (const char *c = r.envelope_sender; *c; c++)
			ascii = ascii && (unsigned char)*c < 0x80;
		check_report(m, len, n_rcpts, with_orig, ascii);
		free(m);
	}
	close(out_fd);

	/* a piece of the original without line ends is found */
	if (with_orig && orig_len > 0) {
		size_t a = data[1] % orig_len, b = a;
		while (b < orig_len && b - a < 40 && orig[b] != '\r' && orig[b] != '\n' && orig[b] != '\0')
			b++;
		if (b > a) {
			char *needle = strndup(orig + a, b - a);
			bool found = false;
			err = NULL;
			FUZZ_ASSERT(dsn_original_contains(orig_fd, off, osize, false, needle, &found,
							  &err) == 0);
			FUZZ_ASSERT(found);
			free(needle);
		}
	}
	if (orig_fd >= 0)
		close(orig_fd);
	free(copy);
	return 0;
}
