/* test_dsn - delivery status notifications: MIME structure, required fields, folding, hostile
 * diagnostics, line end conversion, boundary choice, streaming of large originals.
 * With TERN_DSN_WRITE_DIR set, every composed report is also written there as NAME.eml for
 * tests/integration/test_dsn_format.py to parse with Python's email package. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "outbound/dsn.h"
#include "test.h"

#define T_ARRIVAL 1709280000	/* 2024-03-01 08:00:00 UTC */

struct part {
	const char *hdr;	/* the part's header lines, each with CRLF */
	size_t hdr_len;
	const char *body;	/* up to (not including) the CRLF before the next delimiter */
	size_t body_len;
};

struct parsed {
	char *data;
	size_t len;
	size_t top_hdr_len;	/* the message header, up to and including its last CRLF */
	char boundary[128];
	int n_delims;		/* lines "--B" */
	int n_close;		/* lines "--B--" */
	size_t n_parts;
	struct part parts[4];
};

/* temp_fd - an unlinked temporary file open for reading and writing. */
static int temp_fd(void)
{
	const char *dir = getenv("TMPDIR");
	char *path = xasprintf("%s/test_dsn.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd >= 0)
		unlink(path);
	free(path);
	return fd;
}

/* original_fd - a temp file holding prefix then data (the original starts after prefix). */
static int original_fd(const char *prefix, const char *data, size_t len)
{
	int fd = temp_fd();
	if (fd < 0)
		return -1;
	if (fs_write_all(fd, prefix, strlen(prefix)) < 0 || fs_write_all(fd, data, len) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* compose - run dsn_compose into a temp file and read it back; writes NAME.eml into
 * $TERN_DSN_WRITE_DIR when set and composing worked. Returns dsn_compose's result. */
static int compose(const char *name, const struct dsn_report *r, int orig_fd, uint64_t off,
		   uint64_t size, char **data_r, size_t *len_r, char **error_r)
{
	int fd = temp_fd();
	*data_r = NULL;
	*len_r = 0;
	*error_r = NULL;
	if (fd < 0)
		return -2;
	int ret = dsn_compose(fd, r, orig_fd, off, size, error_r);
	off_t end = lseek(fd, 0, SEEK_END);
	char *data = xmalloc((size_t)end + 1);
	ssize_t n = pread(fd, data, (size_t)end, 0);
	close(fd);
	if (n != end) {
		free(data);
		return -2;
	}
	data[end] = '\0';
	*data_r = data;
	*len_r = (size_t)end;
	const char *dir = getenv("TERN_DSN_WRITE_DIR");
	if (ret == 0 && dir != NULL && *dir != '\0') {
		char *path = xasprintf("%s/%s.eml", dir, name);
		if (fs_write_file_atomic(path, data, (size_t)end, 0644) < 0)
			fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
		free(path);
	}
	return ret;
}

/* find_crlf - the next CRLF at or after p, or NULL. */
static const char *find_crlf(const char *p, const char *end)
{
	const char *q = memmem(p, (size_t)(end - p), "\r\n", 2);
	return q;
}

/* parse - split a composed report on its boundary; counts delimiter lines exactly. */
static bool parse(char *data, size_t len, struct parsed *ps)
{
	memset(ps, 0, sizeof(*ps));
	ps->data = data;
	ps->len = len;
	const char *end = data + len;
	const char *hend = memmem(data, len, "\r\n\r\n", 4);
	if (hend == NULL)
		return false;
	ps->top_hdr_len = (size_t)(hend - data) + 2;
	const char *b = memmem(data, ps->top_hdr_len, "boundary=\"", 10);
	if (b == NULL)
		return false;
	b += 10;
	const char *q = memchr(b, '"', (size_t)(hend - b));
	if (q == NULL || (size_t)(q - b) >= sizeof(ps->boundary))
		return false;
	memcpy(ps->boundary, b, (size_t)(q - b));
	ps->boundary[q - b] = '\0';

	char delim[140], close_delim[140];
	snprintf(delim, sizeof(delim), "--%s", ps->boundary);
	snprintf(close_delim, sizeof(close_delim), "--%s--", ps->boundary);
	size_t dlen = strlen(delim), clen = strlen(close_delim);
	struct part *cur = NULL;
	const char *line = hend + 4;
	while (line < end) {
		const char *eol = find_crlf(line, end);
		const char *next = eol ? eol + 2 : end;
		size_t llen = (size_t)((eol ? eol : end) - line);
		bool is_delim = llen == dlen && memcmp(line, delim, dlen) == 0;
		bool is_close = llen == clen && memcmp(line, close_delim, clen) == 0;
		if (is_delim || is_close) {
			if (cur != NULL) {
				/* The CRLF before the delimiter belongs to it. */
				const char *body_end = line >= cur->body + 2 ? line - 2 : cur->body;
				cur->body_len = (size_t)(body_end - cur->body);
			}
			cur = NULL;
			if (is_delim) {
				ps->n_delims++;
				if (ps->n_parts < 4) {
					cur = &ps->parts[ps->n_parts++];
					cur->hdr = next;
					const char *ph = memmem(next, (size_t)(end - next), "\r\n\r\n", 4);
					if (next + 2 <= end && memcmp(next, "\r\n", 2) == 0) {
						cur->hdr_len = 0;
						cur->body = next + 2;
					} else if (ph != NULL) {
						cur->hdr_len = (size_t)(ph - next) + 2;
						cur->body = ph + 4;
					} else {
						return false;
					}
				}
			} else {
				ps->n_close++;
			}
		}
		line = next;
		if (cur != NULL && line < cur->body)
			line = cur->body;
	}
	return true;
}

/* get_field - the unfolded value of the first field name in hdr[0..len) into out. */
static bool get_field(const char *hdr, size_t len, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	const char *end = hdr + len, *p = hdr;
	while (p < end) {
		const char *eol = find_crlf(p, end);
		if (eol == NULL)
			eol = end;
		if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *v = p + nlen + 1;
			size_t o = 0;
			while (v < eol && *v == ' ')
				v++;
			for (;;) {
				while (v < eol && o < outsz - 1)
					out[o++] = *v++;
				/* a continuation line: the CRLF goes, the whitespace stays */
				if (eol + 2 < end && (eol[2] == ' ' || eol[2] == '\t')) {
					v = eol + 2;
					eol = find_crlf(v, end);
					if (eol == NULL)
						eol = end;
					continue;
				}
				break;
			}
			out[o] = '\0';
			return true;
		}
		p = eol + 2;
	}
	return false;
}

/* split_blocks - the blank-line separated field groups of a delivery-status body. */
static size_t split_blocks(const char *body, size_t len, const char *blk[], size_t blen[],
			   size_t max)
{
	size_t n = 0;
	const char *p = body, *end = body + len;
	while (p < end && n < max) {
		const char *sep = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		blk[n] = p;
		blen[n] = (size_t)((sep ? sep + 2 : end) - p);
		n++;
		p = sep ? sep + 4 : end;
	}
	return n;
}

/* lines_ok - every LF is preceded by CR, every CR followed by LF, no line over 998 octets. */
static bool lines_ok(const char *p, size_t len)
{
	size_t col = 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == '\n') {
			if (i == 0 || p[i - 1] != '\r')
				return false;
			col = 0;
		} else if (p[i] == '\r') {
			if (i + 1 >= len || p[i + 1] != '\n')
				return false;
		} else if (++col > 998) {
			return false;
		}
	}
	return true;
}

/* seven_bit_clean - printable US-ASCII, TAB and CRLF only. */
static bool seven_bit_clean(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x7f || (c < 0x20 && c != '\r' && c != '\n' && c != '\t'))
			return false;
	}
	return true;
}

static bool contains(const char *p, size_t len, const char *s)
{
	return memmem(p, len, s, strlen(s)) != NULL;
}

/* text_has - does the text part, its wrapped lines joined again, contain s? */
static bool text_has(const struct part *pt, const char *s)
{
	char *t = xmalloc(pt->body_len + 1);
	size_t o = 0;
	for (size_t i = 0; i < pt->body_len; i++) {
		if (i + 6 <= pt->body_len && memcmp(pt->body + i, "\r\n    ", 6) == 0) {
			t[o++] = ' ';
			i += 5;
			continue;
		}
		t[o++] = pt->body[i];
	}
	bool found = memmem(t, o, s, strlen(s)) != NULL;
	free(t);
	return found;
}

/* part_is - does the part's header carry this exact Content-Type line? */
static bool part_is(const struct part *pt, const char *content_type)
{
	char v[256];
	return get_field(pt->hdr, pt->hdr_len, "Content-Type", v, sizeof(v)) &&
	       strcmp(v, content_type) == 0;
}

/* check_structure - the checks every report must pass; returns the parsed result. */
static bool check_structure(char *data, size_t len, size_t want_parts, struct parsed *ps)
{
	char v[1024];
	bool ok = parse(data, len, ps);
	CHECK(ok);
	if (!ok)
		return false;
	CHECK(lines_ok(data, len));
	CHECK((size_t)ps->n_delims == want_parts);
	CHECK(ps->n_close == 1);
	CHECK(ps->n_parts == want_parts);
	CHECK(len >= strlen(ps->boundary) + 6 &&
	      memcmp(data + len - strlen(ps->boundary) - 6, "--", 2) == 0 &&
	      memcmp(data + len - 4, "--\r\n", 4) == 0);
	const char *h = data;
	size_t hl = ps->top_hdr_len;
	CHECK(get_field(h, hl, "From", v, sizeof(v)) &&
	      strcmp(v, "\"Mail Delivery System\" <MAILER-DAEMON@mx.tern.test>") == 0);
	CHECK(get_field(h, hl, "To", v, sizeof(v)));
	CHECK(get_field(h, hl, "Subject", v, sizeof(v)));
	CHECK(get_field(h, hl, "Date", v, sizeof(v)));
	CHECK(get_field(h, hl, "Message-ID", v, sizeof(v)) && v[0] == '<' &&
	      strstr(v, "@mx.tern.test>") != NULL);
	CHECK(get_field(h, hl, "Auto-Submitted", v, sizeof(v)) && strcmp(v, "auto-replied") == 0);
	CHECK(get_field(h, hl, "MIME-Version", v, sizeof(v)) && strcmp(v, "1.0") == 0);
	CHECK(get_field(h, hl, "Content-Type", v, sizeof(v)) &&
	      strncmp(v, "multipart/report; report-type=delivery-status;", 46) == 0);
	if (ps->n_parts < 2)
		return false;
	CHECK(part_is(&ps->parts[0], "text/plain; charset=us-ascii") ||
	      part_is(&ps->parts[0], "text/plain; charset=utf-8"));
	CHECK(part_is(&ps->parts[1], "message/delivery-status") ||
	      part_is(&ps->parts[1], "message/global-delivery-status"));
	CHECK(contains(ps->parts[0].body, ps->parts[0].body_len,
		       "This is the mail system at host mx.tern.test."));
	/* The delivery-status part is 7-bit and has the required per-message field. */
	CHECK(seven_bit_clean(ps->parts[1].body, ps->parts[1].body_len));
	CHECK(get_field(ps->parts[1].body, ps->parts[1].body_len, "Reporting-MTA", v, sizeof(v)) &&
	      strcmp(v, "dns; mx.tern.test") == 0);
	return !test_current_failed;
}

/* status_blocks - the per-message block and the per-recipient blocks of part 2. */
static size_t status_blocks(const struct parsed *ps, const char *blk[], size_t blen[], size_t max)
{
	return split_blocks(ps->parts[1].body, ps->parts[1].body_len, blk, blen, max);
}

static bool field_is(const char *blk, size_t len, const char *name, const char *want)
{
	char v[2048];
	if (!get_field(blk, len, name, v, sizeof(v))) {
		fprintf(stderr, "  field %s missing\n", name);
		return false;
	}
	if (strcmp(v, want) != 0) {
		fprintf(stderr, "  field %s: \"%s\" != \"%s\"\n", name, v, want);
		return false;
	}
	return true;
}

static bool has_field(const char *blk, size_t len, const char *name)
{
	char v[2048];
	return get_field(blk, len, name, v, sizeof(v));
}

static const char original_crlf[] =
	"Return-Path: <alice@example.test>\r\n"
	"From: Alice <alice@example.test>\r\n"
	"To: Bob <bob@example.org>\r\n"
	"Subject: lunch on friday\r\n"
	"Message-ID: <orig-1@example.test>\r\n"
	"\r\n"
	"Shall we meet at noon?\r\n"
	"-- \r\n"
	"Alice\r\n";

static struct dsn_rcpt rcpt_bob(void)
{
	return (struct dsn_rcpt){
		.final_rcpt = "bob@example.org",
		.action = DSN_FAILED,
		.status = "5.1.1",
		.remote_mta = "mx.example.org",
		.diagnostic = "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",
		.last_attempt = T_ARRIVAL + 60,
	};
}

static struct dsn_report report_for(const struct dsn_rcpt *rcpts, size_t n, bool full)
{
	return (struct dsn_report){
		.reporting_mta = "mx.tern.test",
		.envelope_sender = "alice@example.test",
		.arrival = T_ARRIVAL,
		.queue_id = "4Fq2Xy7Zk1",
		.return_full = full,
		.rcpts = rcpts,
		.n_rcpts = n,
	};
}

static void test_failed_headers_only(void)
{
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, false);
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("failed_headers_only", &r, fd, 0, strlen(original_crlf), &data, &len, &err) ==
	      0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[256];
		CHECK(get_field(data, ps.top_hdr_len, "Subject", v, sizeof(v)) &&
		      strcmp(v, "Undelivered Mail Returned to Sender") == 0);
		CHECK(get_field(data, ps.top_hdr_len, "To", v, sizeof(v)) &&
		      strcmp(v, "<alice@example.test>") == 0);
		CHECK(!contains(data, ps.top_hdr_len, "Content-Transfer-Encoding"));
		const struct part *p1 = &ps.parts[0];
		CHECK(contains(p1->body, p1->body_len, "could not be delivered"));
		CHECK(text_has(p1, "<bob@example.org>: host mx.example.org said: 550 5.1.1 "
				   "<bob@example.org>: Recipient address rejected: User unknown"));
		const char *blk[8];
		size_t blen[8];
		size_t nb = status_blocks(&ps, blk, blen, 8);
		CHECK(nb == 2);
		CHECK(field_is(blk[0], blen[0], "X-Queue-ID", "4Fq2Xy7Zk1"));
		CHECK(has_field(blk[0], blen[0], "Arrival-Date"));
		CHECK(!has_field(blk[0], blen[0], "Original-Envelope-Id"));
		if (nb == 2) {
			CHECK(!has_field(blk[1], blen[1], "Original-Recipient"));
			CHECK(field_is(blk[1], blen[1], "Final-Recipient", "rfc822; bob@example.org"));
			CHECK(field_is(blk[1], blen[1], "Action", "failed"));
			CHECK(field_is(blk[1], blen[1], "Status", "5.1.1"));
			CHECK(field_is(blk[1], blen[1], "Remote-MTA", "dns; mx.example.org"));
			CHECK(field_is(blk[1], blen[1], "Diagnostic-Code",
				       "smtp; 550 5.1.1 <bob@example.org>: Recipient address "
				       "rejected: User unknown"));
			CHECK(has_field(blk[1], blen[1], "Last-Attempt-Date"));
			CHECK(!has_field(blk[1], blen[1], "Will-Retry-Until"));
		}
		const struct part *p3 = &ps.parts[2];
		CHECK(part_is(p3, "text/rfc822-headers"));
		const char *want = "Return-Path: <alice@example.test>\r\n"
				   "From: Alice <alice@example.test>\r\n"
				   "To: Bob <bob@example.org>\r\n"
				   "Subject: lunch on friday\r\n"
				   "Message-ID: <orig-1@example.test>";
		CHECK(p3->body_len == strlen(want) && memcmp(p3->body, want, p3->body_len) == 0);
		CHECK(!contains(data, len, "Shall we meet"));
	}
	free(data);
	free(err);
	close(fd);
}

static void test_three_rcpts_full(void)
{
	struct dsn_rcpt rc[3] = { rcpt_bob(), rcpt_bob(), rcpt_bob() };
	rc[1].final_rcpt = "carol@example.net";
	rc[1].orig_rcpt = "rfc822;carol@example.net";
	rc[1].remote_mta = NULL;
	rc[1].diagnostic = NULL;
	rc[1].status = "5.2.2";
	rc[2].final_rcpt = "dave@example.com";
	rc[2].action = DSN_DELAYED;
	rc[2].status = "4.4.1";
	rc[2].remote_mta = "mx.example.com";
	rc[2].diagnostic = "connect to mx.example.com[192.0.2.7]:25: Connection timed out";
	rc[2].will_retry_until = T_ARRIVAL + 5 * 86400;
	struct dsn_report r = report_for(rc, 3, true);
	r.envid = "QQ314159";
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("three_rcpts_full", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[256];
		CHECK(get_field(data, ps.top_hdr_len, "Subject", v, sizeof(v)) &&
		      strcmp(v, "Undelivered Mail Returned to Sender") == 0);
		const struct part *p1 = &ps.parts[0];
		CHECK(text_has(p1, "<carol@example.net>: delivery failed (5.2.2: "
						       "mailbox full)"));
		CHECK(contains(p1->body, p1->body_len, "Delivery delayed (still being retried):"));
		CHECK(text_has(p1, "<dave@example.com>: connect to mx.example.com[192.0.2.7]:25: "
				   "Connection timed out"));
		const char *blk[8];
		size_t blen[8];
		size_t nb = status_blocks(&ps, blk, blen, 8);
		CHECK(nb == 4);
		CHECK(field_is(blk[0], blen[0], "Original-Envelope-Id", "QQ314159"));
		if (nb == 4) {
			CHECK(field_is(blk[1], blen[1], "Final-Recipient", "rfc822; bob@example.org"));
			CHECK(field_is(blk[2], blen[2], "Original-Recipient", "rfc822; carol@example.net"));
			CHECK(field_is(blk[2], blen[2], "Final-Recipient", "rfc822; carol@example.net"));
			CHECK(field_is(blk[2], blen[2], "Status", "5.2.2"));
			CHECK(!has_field(blk[2], blen[2], "Remote-MTA"));
			CHECK(!has_field(blk[2], blen[2], "Diagnostic-Code"));
			CHECK(field_is(blk[3], blen[3], "Action", "delayed"));
			CHECK(field_is(blk[3], blen[3], "Status", "4.4.1"));
			/* not a reply code: not labelled smtp */
			CHECK(field_is(blk[3], blen[3], "Diagnostic-Code",
				       "X-Tern; connect to mx.example.com[192.0.2.7]:25: Connection "
				       "timed out"));
			CHECK(has_field(blk[3], blen[3], "Will-Retry-Until"));
		}
		const struct part *p3 = &ps.parts[2];
		CHECK(part_is(p3, "message/rfc822"));
		CHECK(get_field(p3->hdr, p3->hdr_len, "Content-Description", v, sizeof(v)) &&
		      strcmp(v, "Undelivered Message") == 0);
		/* the whole original, its last CRLF taken by the delimiter */
		size_t olen = strlen(original_crlf) - 2;
		CHECK(p3->body_len == olen && memcmp(p3->body, original_crlf, olen) == 0);
	}
	free(data);
	free(err);
	close(fd);
}

static void test_delayed_only(void)
{
	struct dsn_rcpt rc = rcpt_bob();
	rc.action = DSN_DELAYED;
	rc.status = "4.7.1";
	rc.diagnostic = "451 4.7.1 <bob@example.org>: Recipient address rejected: greylisted";
	rc.will_retry_until = T_ARRIVAL + 5 * 86400;
	/* RET=FULL, but a delay report carries only the header (RFC 3461 6.2) */
	struct dsn_report r = report_for(&rc, 1, true);
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("delayed_only", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[256];
		CHECK(get_field(data, ps.top_hdr_len, "Subject", v, sizeof(v)) &&
		      strcmp(v, "Delayed Mail (still being retried)") == 0);
		const struct part *p1 = &ps.parts[0];
		CHECK(contains(p1->body, p1->body_len, "THIS IS A WARNING ONLY."));
		CHECK(contains(p1->body, p1->body_len, "It will be retried until"));
		CHECK(!contains(p1->body, p1->body_len, "I'm sorry"));
		const char *blk[4];
		size_t blen[4];
		CHECK(status_blocks(&ps, blk, blen, 4) == 2);
		CHECK(field_is(blk[1], blen[1], "Action", "delayed"));
		CHECK(field_is(blk[1], blen[1], "Status", "4.7.1"));
		CHECK(has_field(blk[1], blen[1], "Will-Retry-Until"));
		CHECK(part_is(&ps.parts[2], "text/rfc822-headers"));
		CHECK(!contains(data, len, "Shall we meet"));
	}
	free(data);
	free(err);
	close(fd);
}

static void test_success_report(void)
{
	struct dsn_rcpt rc = rcpt_bob();
	rc.action = DSN_DELIVERED;
	rc.status = "2.0.0";
	rc.diagnostic = "250 2.0.0 Ok: queued as 1234";
	struct dsn_rcpt rc2 = { .final_rcpt = "list@example.org", .action = DSN_EXPANDED };
	struct dsn_rcpt both[2] = { rc, rc2 };
	struct dsn_report r = report_for(both, 2, true);
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("success", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[256];
		CHECK(get_field(data, ps.top_hdr_len, "Subject", v, sizeof(v)) &&
		      strcmp(v, "Successful Mail Delivery Report") == 0);
		CHECK(text_has(&ps.parts[0],
			       "<bob@example.org>: delivery via mx.example.org: 250 2.0.0 Ok"));
		const char *blk[4];
		size_t blen[4];
		CHECK(status_blocks(&ps, blk, blen, 4) == 3);
		CHECK(field_is(blk[1], blen[1], "Action", "delivered"));
		CHECK(field_is(blk[2], blen[2], "Action", "expanded"));
		CHECK(field_is(blk[2], blen[2], "Status", "2.0.0"));
		CHECK(part_is(&ps.parts[2], "text/rfc822-headers"));
	}
	free(data);
	free(err);
	close(fd);
}

static void test_hostile_diagnostic(void)
{
	size_t dl = 5000;
	char *diag = xmalloc(dl + 200);
	int n = snprintf(diag, 200, "550 5.7.1 bad\r\nX-Injected: yes\r\n\r\n--fake\r\n\x01\x1b[31m"
				    "\xff\xfe ");
	memset(diag + n, 'A', dl);
	memcpy(diag + n + dl, " tail\r\n", 8);
	struct dsn_rcpt rc[2] = { rcpt_bob(), rcpt_bob() };
	rc[0].diagnostic = diag;
	rc[0].remote_mta = "evil.example\r\nX-Evil: 1";
	rc[1].final_rcpt = "eve@example.org";
	rc[1].diagnostic = "554 5.7.1 spaces and words repeated so that folding must happen "
			   "at some point because this reply goes on and on and on and on "
			   "and on and on and on and on and on and on and on and on and on";
	rc[1].status = "5.07.1";	/* malformed: replaced */
	struct dsn_report r = report_for(rc, 2, false);
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("hostile_diagnostic", &r, fd, 0, strlen(original_crlf), &data, &len, &err) ==
	      0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		CHECK(!contains(data, len, "\r\nX-Injected"));
		CHECK(!contains(data, len, "\r\nX-Evil"));
		CHECK(!contains(data, len, "\r\n--fake"));
		CHECK(seven_bit_clean(data, (size_t)(ps.parts[2].hdr - data)));
		const char *blk[4];
		size_t blen[4];
		CHECK(status_blocks(&ps, blk, blen, 4) == 3);
		char *v = xmalloc(8192);
		CHECK(get_field(blk[1], blen[1], "Diagnostic-Code", v, 8192));
		const char *head = "smtp; 550 5.7.1 bad X-Injected: yes --fake [31m?? AAAA";
		CHECK(strncmp(v, head, strlen(head)) == 0);
		CHECK(strlen(v) <= strlen("smtp; ") + DSN_DIAGNOSTIC_MAX + 2);	/* + 1 fold space */
		CHECK(strlen(v) > 3 && strcmp(v + strlen(v) - 3, "...") == 0);
		CHECK(strstr(v, "tail") == NULL);
		CHECK(get_field(blk[1], blen[1], "Remote-MTA", v, 8192) &&
		      strcmp(v, "dns; evil.exampleX-Evil:1") == 0);
		CHECK(field_is(blk[2], blen[2], "Status", "5.0.0"));
		/* folded at a space, unfolding gives the text back */
		CHECK(get_field(blk[2], blen[2], "Diagnostic-Code", v, 8192) &&
		      strcmp(v, "smtp; 554 5.7.1 spaces and words repeated so that folding must happen "
				"at some point because this reply goes on and on and on and on "
				"and on and on and on and on and on and on and on and on and on") ==
			      0);
		CHECK(contains(blk[2], blen[2], "\r\n "));
		free(v);
		/* the text part is wrapped as well */
		const struct part *p1 = &ps.parts[0];
		CHECK(contains(p1->body, p1->body_len, "\r\n    "));
	}
	free(data);
	free(err);
	free(diag);
	close(fd);
}

static void test_lf_only_original(void)
{
	static const char orig[] = "From: a@example.test\nSubject: bare LF\n\nline one\n"
				   "line two\r\nno newline at the end";
	static const char want_full[] = "From: a@example.test\r\nSubject: bare LF\r\n\r\nline one\r\n"
					"line two\r\nno newline at the end";
	static const char want_hdrs[] = "From: a@example.test\r\nSubject: bare LF";
	struct dsn_rcpt rc = rcpt_bob();
	for (int full = 0; full <= 1; full++) {
		struct dsn_report r = report_for(&rc, 1, full);
		int fd = original_fd("", orig, strlen(orig));
		char *data, *err;
		size_t len;
		struct parsed ps;
		CHECK(compose(full ? "lf_only_full" : "lf_only_headers", &r, fd, 0, strlen(orig),
			      &data, &len, &err) == 0);
		if (data != NULL && check_structure(data, len, 3, &ps)) {
			const struct part *p3 = &ps.parts[2];
			const char *want = full ? want_full : want_hdrs;
			CHECK(p3->body_len == strlen(want) && memcmp(p3->body, want, p3->body_len) == 0);
		}
		free(data);
		free(err);
		close(fd);
	}
}

static void test_boundary_like_lines(void)
{
	static const char orig[] = "From: a@example.test\r\n"
				   "Content-Type: multipart/mixed; boundary=\"=_tern_dsn_\"\r\n"
				   "\r\n"
				   "--=_tern_dsn_\r\n"
				   "--=_tern_dsn_00000000000000000000000000000000\r\n"
				   "--=_tern_dsn_ffffffffffffffffffffffffffffffff--\r\n"
				   "--\r\n"
				   "--=_tern_dsn_--\r\n";
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, true);
	int fd = original_fd("", orig, strlen(orig));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("boundary_like_lines", &r, fd, 0, strlen(orig), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		CHECK(strstr(orig, ps.boundary) == NULL);
		const struct part *p3 = &ps.parts[2];
		CHECK(p3->body_len == strlen(orig) - 2 && memcmp(p3->body, orig, p3->body_len) == 0);
	}
	free(data);
	free(err);
	close(fd);
}

static void test_original_contains(void)
{
	/* a needle across the first read chunk boundary (65536), another only in the body */
	size_t big = 200000;
	char *orig = xmalloc(big + 1);
	memset(orig, 'x', big);
	memcpy(orig, "Subject: big\n", 13);
	for (size_t i = 100; i < big; i += 77)
		orig[i] = '\n';
	orig[150] = '\n';
	orig[151] = '\n';		/* the header ends here */
	memcpy(orig + 65530, "NEEDLE-ACROSS", 13);
	memcpy(orig + 140, "IN-HEADER", 9);
	int fd = original_fd("junk before the original", orig, big);
	uint64_t off = strlen("junk before the original");
	char *err = NULL;
	bool found = false;
	CHECK(dsn_original_contains(fd, off, big, false, "NEEDLE-ACROSS", &found, &err) == 0 &&
	      found);
	CHECK(dsn_original_contains(fd, off, big, true, "NEEDLE-ACROSS", &found, &err) == 0 &&
	      !found);
	CHECK(dsn_original_contains(fd, off, big, true, "IN-HEADER", &found, &err) == 0 && found);
	CHECK(dsn_original_contains(fd, off, big, false, "junk", &found, &err) == 0 && !found);
	CHECK(dsn_original_contains(fd, off, 100, false, "NEEDLE", &found, &err) == 0 && !found);
	/* searched after LF -> CRLF conversion */
	CHECK(dsn_original_contains(fd, off, big, false, "big\r\n", &found, &err) == 0 && found);
	CHECK(dsn_original_contains(fd, off, big, false, "big\nx", &found, &err) == 0 && !found);
	/* the original is shorter than its stated size */
	CHECK(dsn_original_contains(fd, off, big + 10, false, "nowhere", &found, &err) == -1);
	CHECK(err != NULL && strstr(err, "truncated") != NULL);
	free(err);
	err = NULL;
	CHECK(dsn_original_contains(fd, off, big, false, "", &found, &err) == -1);
	free(err);
	free(orig);
	close(fd);
}

static void test_large_original_streamed(void)
{
	/* 300 KB of LF lines, and a CRLF whose CR ends the first 64 KB read */
	size_t big = 300000;
	char *orig = xmalloc(big + 1);
	for (size_t i = 0; i < big; i++)
		orig[i] = (char)('a' + i % 26);
	memcpy(orig, "Subject: large\n\n", 16);
	for (size_t i = 80; i < big; i += 80)
		orig[i] = '\n';
	orig[65535] = '\r';
	orig[65536] = '\n';
	orig[big - 1] = '\n';
	/* expected: every bare LF made CRLF */
	char *want = xmalloc(2 * big + 1);
	size_t wl = 0;
	for (size_t i = 0; i < big; i++) {
		if (orig[i] == '\n' && (i == 0 || orig[i - 1] != '\r'))
			want[wl++] = '\r';
		want[wl++] = orig[i];
	}
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, true);
	int fd = original_fd("", orig, big);
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("large_streamed", &r, fd, 0, big, &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		const struct part *p3 = &ps.parts[2];
		CHECK(part_is(p3, "message/rfc822"));
		CHECK(p3->body_len == wl - 2 && memcmp(p3->body, want, wl - 2) == 0);
	}
	free(data);
	free(err);
	free(want);
	free(orig);
	close(fd);
}

static void test_offset_and_8bit(void)
{
	static const char spool[] = "S alice@example.test\nR bob@example.org\n";
	static const char orig[] = "Subject: caf\xc3\xa9\r\n\r\nbody \xc3\xa9t\xc3\xa9\r\n";
	static const char after[] = "TRAILING SPOOL DATA\r\n";
	char *file = xasprintf("%s%s", orig, after);
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, true);
	int fd = original_fd(spool, file, strlen(file));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("offset_8bit", &r, fd, strlen(spool), strlen(orig), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[128];
		CHECK(!contains(data, len, "TRAILING"));
		CHECK(!contains(data, len, "R bob@"));
		CHECK(get_field(data, ps.top_hdr_len, "Content-Transfer-Encoding", v, sizeof(v)) &&
		      strcmp(v, "8bit") == 0);
		const struct part *p3 = &ps.parts[2];
		CHECK(get_field(p3->hdr, p3->hdr_len, "Content-Transfer-Encoding", v, sizeof(v)) &&
		      strcmp(v, "8bit") == 0);
		CHECK(p3->body_len == strlen(orig) - 2 && memcmp(p3->body, orig, p3->body_len) == 0);
		/* a UTF-8 header: RFC 6533's types (RET=FULL: message/global) */
		CHECK(part_is(&ps.parts[1], "message/global-delivery-status"));
		CHECK(part_is(p3, "message/global"));
	}
	free(data);
	free(err);
	free(file);
	close(fd);
}

static void test_non_ascii_addresses(void)
{
	struct dsn_rcpt rc[3] = { rcpt_bob(), rcpt_bob(), rcpt_bob() };
	rc[0].final_rcpt = "j\xc3\xb6rg@example.test";
	rc[0].orig_rcpt = "rfc822;j\xc3\xb6rg+x=y@example.test";
	rc[1].final_rcpt = "bad\xff\x01@example.test";	/* not UTF-8, a control */
	rc[1].orig_rcpt = "rfc822;bob+2Btag@example.org";	/* printable: as given */
	rc[2].final_rcpt = "plain@example.test";
	rc[2].orig_rcpt = "utf-8;j\\x{F6}rg@example.test";	/* RFC 6533 form: as given */
	struct dsn_report r = report_for(rc, 3, false);
	r.envelope_sender = "j\xc3\xb6rg@example.test";
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("non_ascii", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		char v[256];
		CHECK(get_field(data, ps.top_hdr_len, "To", v, sizeof(v)) &&
		      strcmp(v, "<j\xc3\xb6rg@example.test>") == 0);
		CHECK(part_is(&ps.parts[1], "message/global-delivery-status"));
		CHECK(part_is(&ps.parts[2], "message/global-headers"));
		CHECK(part_is(&ps.parts[0], "text/plain; charset=utf-8"));
		CHECK(contains(ps.parts[0].body, ps.parts[0].body_len, "<j\xc3\xb6rg@example.test>: "));
		CHECK(contains(ps.parts[0].body, ps.parts[0].body_len, "<bad??@example.test>: "));
		const char *blk[4];
		size_t blen[4];
		CHECK(status_blocks(&ps, blk, blen, 4) == 4);
		CHECK(field_is(blk[1], blen[1], "Final-Recipient", "utf-8; j\\x{F6}rg@example.test"));
		CHECK(field_is(blk[1], blen[1], "Original-Recipient",
			       "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@example.test"));
		CHECK(field_is(blk[2], blen[2], "Final-Recipient", "rfc822; bad+FF+01@example.test"));
		CHECK(field_is(blk[2], blen[2], "Original-Recipient", "rfc822; bob+2Btag@example.org"));
		CHECK(field_is(blk[3], blen[3], "Original-Recipient", "utf-8; j\\x{F6}rg@example.test"));
	}
	free(data);
	free(err);
	close(fd);
}

static void test_long_address(void)
{
	char *addr = xmalloc(3100);
	memset(addr, 'l', 3000);
	memcpy(addr + 3000, "@example.org", 13);
	struct dsn_rcpt rc = rcpt_bob();
	rc.final_rcpt = addr;
	rc.orig_rcpt = NULL;
	struct dsn_report r = report_for(&rc, 1, false);
	r.envelope_sender = addr;
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("long_address", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 3, &ps)) {
		const char *blk[4];
		size_t blen[4];
		char *v = xmalloc(4096);
		CHECK(status_blocks(&ps, blk, blen, 4) == 2);
		CHECK(get_field(blk[1], blen[1], "Final-Recipient", v, 4096) &&
		      strncmp(v, "rfc822; llll", 12) == 0 && strlen(v) <= DSN_ADDRESS_MAX + 40);
		free(v);
	}
	free(data);
	free(err);
	free(addr);
	close(fd);
}

static void test_no_original(void)
{
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, true);
	char *data, *err;
	size_t len;
	struct parsed ps;
	CHECK(compose("no_original", &r, -1, 0, 0, &data, &len, &err) == 0);
	if (data != NULL && check_structure(data, len, 2, &ps))
		CHECK(!contains(ps.parts[0].body, ps.parts[0].body_len, "attached below"));
	free(data);
	free(err);
}

static void test_errors(void)
{
	struct dsn_rcpt rc = rcpt_bob();
	struct dsn_report r = report_for(&rc, 1, true);
	int fd = original_fd("", original_crlf, strlen(original_crlf));
	char *data, *err;
	size_t len;

	r.envelope_sender = "";
	CHECK(compose("err", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == -1 &&
	      err != NULL && len == 0);
	free(data);
	free(err);
	r = report_for(&rc, 0, true);
	CHECK(compose("err", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == -1 &&
	      err != NULL);
	free(data);
	free(err);
	r = report_for(&rc, 1, true);
	r.reporting_mta = " ";
	CHECK(compose("err", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == -1 &&
	      err != NULL);
	free(data);
	free(err);
	struct dsn_rcpt bad = rcpt_bob();
	bad.action = (enum dsn_action)17;
	r = report_for(&bad, 1, true);
	CHECK(compose("err", &r, fd, 0, strlen(original_crlf), &data, &len, &err) == -1 &&
	      err != NULL);
	free(data);
	free(err);
	/* the original is shorter than the queue said */
	r = report_for(&rc, 1, true);
	CHECK(compose("err", &r, fd, 0, strlen(original_crlf) + 100, &data, &len, &err) == -1 &&
	      err != NULL && strstr(err, "truncated") != NULL);
	free(data);
	free(err);
	/* a write error */
	int pfd[2];
	signal(SIGPIPE, SIG_IGN);
	CHECK(pipe(pfd) == 0);
	close(pfd[0]);
	err = NULL;
	CHECK(dsn_compose(pfd[1], &r, fd, 0, strlen(original_crlf), &err) == -1 && err != NULL);
	free(err);
	close(pfd[1]);
	close(fd);
}

TEST_MAIN(TEST(test_failed_headers_only), TEST(test_three_rcpts_full), TEST(test_delayed_only),
	  TEST(test_success_report), TEST(test_hostile_diagnostic), TEST(test_lf_only_original),
	  TEST(test_boundary_like_lines), TEST(test_original_contains),
	  TEST(test_large_original_streamed), TEST(test_offset_and_8bit),
	  TEST(test_non_ascii_addresses), TEST(test_long_address), TEST(test_no_original),
	  TEST(test_errors))
