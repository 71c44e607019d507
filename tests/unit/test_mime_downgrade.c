/* test_mime_downgrade - 8-bit messages made 7-bit: bytes, headers, round trips */
#include <stdlib.h>
#include <unistd.h>

#include "mime/decode.h"
#include "mime/downgrade.h"
#include "mime/tree.h"
#include "test.h"

/* run - downgrade text; return the output (caller frees) and the result code */
static char *run(const char *text, int *r_out, size_t *len_r)
{
	char path[] = "/tmp/tern-dg-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	*r_out = mime_downgrade_7bit(text, strlen(text), fd);
	off_t n = lseek(fd, 0, SEEK_END);
	char *out = calloc(1, (size_t)n + 1);
	if (pread(fd, out, (size_t)n, 0) != n)
		abort();
	close(fd);
	*len_r = (size_t)n;
	return out;
}

static bool all_7bit(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return false;
	return true;
}

static void test_qp_round_trip(void)
{
	static const char *const inputs[] = {
		"", "plain\r\n", "caf\xc3\xa9 =x=\r\n", "trailing space \r\nand tab\t\r\n",
		"a very long line with \xc3\xa9 accents that goes on and on and on and on and on and on and on\r\n",
		"no newline at end \xe2\x82\xac", "=3D literal\r\n.dot line\r\n",
	};
	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		buf enc, dec;
		buf_init(&enc, 0);
		buf_init(&dec, 0);
		mime_qp_encode(inputs[i], strlen(inputs[i]), &enc);
		CHECK(all_7bit(enc.data ? enc.data : "", enc.len));
		/* no encoded line longer than 76 */
		size_t col = 0;
		for (size_t k = 0; k < enc.len; k++) {
			col = enc.data[k] == '\n' ? 0 : col + 1;
			CHECK(col <= 77);
		}
		mime_qp_decode(enc.data ? enc.data : "", enc.len, false, &dec);
		CHECK(dec.len == strlen(inputs[i]) && memcmp(dec.data ? dec.data : "", inputs[i], dec.len) == 0);
		buf_free(&enc);
		buf_free(&dec);
	}
}

static void test_single_part(void)
{
	int r;
	size_t n;
	char *out = run("From: a@b.example\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
			"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n", &r, &n);
	CHECK(r == 0);
	CHECK(all_7bit(out, n));
	CHECK(strstr(out, "Content-Transfer-Encoding: quoted-printable\r\n") != NULL);
	CHECK(strstr(out, "8bit") == NULL);
	CHECK(strstr(out, "MIME-Version: 1.0\r\n") != NULL);
	CHECK(strstr(out, "caf=C3=A9\r\n") != NULL);
	CHECK(strncmp(out, "From: a@b.example\r\nSubject: hi\r\n", 32) == 0);
	free(out);
}

static void test_multipart_with_binary_attachment(void)
{
	const char *msg =
		"From: a@b.example\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"XX\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
		"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nna\xc3\xafve\r\n"
		"--XX\r\nContent-Type: application/octet-stream\r\n\r\n\x01\xff\xfe\x80\r\n"
		"--XX\r\nContent-Type: text/plain\r\n\r\nascii only\r\n--XX--\r\n";
	int r;
	size_t n;
	char *out = run(msg, &r, &n);
	CHECK(r == 0);
	CHECK(all_7bit(out, n));
	CHECK(strstr(out, "Content-Transfer-Encoding: 7bit\r\n") != NULL);	/* the container */
	CHECK(strstr(out, "na=C3=AFve") != NULL);
	CHECK(strstr(out, "Content-Transfer-Encoding: base64\r\n") != NULL);
	CHECK(strstr(out, "Af/+gA==") != NULL);
	CHECK(strstr(out, "ascii only\r\n--XX--") != NULL);
	/* the result still parses as the same tree shape */
	struct mime_tree *t = mime_tree_parse(out, n, NULL);
	CHECK(t->count == 4);
	mime_tree_free(&t);
	free(out);
}

static void test_8bit_header_cannot(void)
{
	int r;
	size_t n;
	char *out = run("Subject: caf\xc3\xa9\r\n\r\nbody \xc3\xa9\r\n", &r, &n);
	CHECK(r == 1);
	free(out);
}

TEST_MAIN(TEST(test_qp_round_trip), TEST(test_single_part),
	  TEST(test_multipart_with_binary_attachment), TEST(test_8bit_header_cannot))
