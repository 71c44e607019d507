/* test_linereader - bounded line reads, whole and one byte at a time */
#include <stdlib.h>

#include "lib/linereader.h"
#include "test.h"

struct lr_result {
	int kind;	/* 1 line, -1 too long */
	const char *text;
	int bare_lf;
};

/* run - feed input in pieces of step bytes (0: all at once), collect every result */
static size_t run(const char *input, size_t len, size_t max, size_t step, struct lr_result *out,
		  size_t outmax, char texts[][64])
{
	struct linereader lr;
	struct evbuffer *in = evbuffer_new();
	buf line;
	size_t n = 0, pos = 0;
	linereader_init(&lr, max);
	buf_init(&line, 0);
	while (pos < len || step == 0) {
		size_t chunk = step == 0 ? len : (len - pos < step ? len - pos : step);
		evbuffer_add(in, input + pos, chunk);
		pos += chunk;
		for (;;) {
			bool bare;
			int r = linereader_read(&lr, in, &line, &bare);
			if (r == 0)
				break;
			if (n < outmax) {
				out[n].kind = r;
				snprintf(texts[n], 64, "%s", r == 1 ? buf_cstr(&line) : "");
				out[n].text = texts[n];
				out[n].bare_lf = r == 1 ? bare : 0;
			}
			n++;
		}
		if (step == 0)
			break;
	}
	buf_free(&line);
	evbuffer_free(in);
	return n;
}

static void check_all_steps(const char *input, size_t max, const struct lr_result *want,
			    size_t nwant)
{
	size_t len = strlen(input);
	for (size_t step = 0; step <= 3; step++) {
		struct lr_result got[16];
		char texts[16][64];
		size_t n = run(input, len, max, step, got, 16, texts);
		CHECK(n == nwant);
		for (size_t i = 0; i < n && i < nwant; i++) {
			CHECK(got[i].kind == want[i].kind);
			CHECK_STREQ(got[i].text, want[i].text);
			CHECK(got[i].bare_lf == want[i].bare_lf);
		}
	}
}

static void test_simple_lines(void)
{
	static const struct lr_result want[] = {
		{ 1, "EHLO a", 0 }, { 1, "NOOP", 1 }, { 1, "", 0 }, { 1, "x\r", 0 },
	};
	check_all_steps("EHLO a\r\nNOOP\n\r\nx\r\r\npartial", 64, want, 4);
}

static void test_too_long_then_in_sync(void)
{
	/* max 8: "12345678901234\r\n" is too long and reported once; "OK" follows */
	static const struct lr_result want[] = { { -1, "", 0 }, { 1, "OK", 0 } };
	check_all_steps("12345678901234\r\nOK\r\n", 8, want, 2);
}

static void test_exact_limit(void)
{
	/* "123456\r\n" is 8 bytes: fits a limit of 8; "1234567\r\n" does not */
	static const struct lr_result want[] = { { 1, "123456", 0 }, { -1, "", 0 }, { 1, "a", 0 } };
	check_all_steps("123456\r\n1234567\r\na\r\n", 8, want, 3);
}

static void test_very_long_line(void)
{
	size_t len = 100000;
	char *big = malloc(len + 8);
	memset(big, 'A', len);
	memcpy(big + len, "\r\nQUIT\r\n", 8);
	struct lr_result got[8];
	char texts[8][64];
	size_t n = run(big, len + 8, 512, 0, got, 8, texts);
	CHECK(n == 2);
	CHECK(got[0].kind == -1);
	CHECK(got[1].kind == 1);
	CHECK_STREQ(got[1].text, "QUIT");
	n = run(big, len + 8, 512, 4093, got, 8, texts);
	CHECK(n == 2 && got[0].kind == -1 && got[1].kind == 1);
	free(big);
}

static void test_nul_bytes_kept(void)
{
	struct linereader lr;
	struct evbuffer *in = evbuffer_new();
	buf line;
	bool bare;
	linereader_init(&lr, 64);
	buf_init(&line, 0);
	evbuffer_add(in, "a\0b\r\n", 5);
	CHECK(linereader_read(&lr, in, &line, &bare) == 1);
	CHECK(line.len == 3 && line.data[1] == '\0');
	buf_free(&line);
	evbuffer_free(in);
}

TEST_MAIN(TEST(test_simple_lines), TEST(test_too_long_then_in_sync), TEST(test_exact_limit),
	  TEST(test_very_long_line), TEST(test_nul_bytes_kept))
