/* test_base64 - RFC 4648 vectors, strict decoding, caps, round trips */
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "test.h"

static const struct {
	const char *plain;
	const char *encoded;
} vectors[] = {
	{ "", "" },
	{ "f", "Zg==" },
	{ "fo", "Zm8=" },
	{ "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" },
	{ "fooba", "Zm9vYmE=" },
	{ "foobar", "Zm9vYmFy" },
	{ "Username:", "VXNlcm5hbWU6" },
	{ "Password:", "UGFzc3dvcmQ6" },
};

static void test_vectors(void)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		buf b;
		buf_init(&b, 0);
		CHECK(base64_encode(vectors[i].plain, strlen(vectors[i].plain), &b) == 0);
		CHECK_STREQ(buf_cstr(&b), vectors[i].encoded);
		buf_reset(&b);
		CHECK(base64_decode(vectors[i].encoded, strlen(vectors[i].encoded), &b) == 0);
		CHECK(b.len == strlen(vectors[i].plain));
		CHECK_STREQ(buf_cstr(&b), vectors[i].plain);
		buf_free(&b);
	}
}

static void test_binary_round_trip(void)
{
	unsigned char in[1000];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	/* every length, so every padding case and the chunk boundaries are crossed */
	for (size_t len = 0; len <= sizeof(in); len += (len < 300 ? 1 : 97)) {
		buf e, d;
		buf_init(&e, 0);
		buf_init(&d, 0);
		CHECK(base64_encode(in, len, &e) == 0);
		CHECK(e.len == (len + 2) / 3 * 4);
		CHECK(base64_decode(e.data ? e.data : "", e.len, &d) == 0);
		CHECK(d.len == len);
		CHECK(len == 0 || memcmp(d.data, in, len) == 0);
		buf_free(&e);
		buf_free(&d);
	}
}

static void test_decode_invalid(void)
{
	static const char *const bad[] = {
		"Zg",		/* no padding */
		"Zg=",		/* short padding */
		"Zg===",	/* too much */
		"Z===",		/* three pad chars */
		"====",
		"=Zg=",
		"Zg==Zg==",	/* padding in the middle */
		"Zm9v\r\n",	/* whitespace */
		"Zm 9v",
		" Zm9v",
		"Zm9v\n",
		"Zm9-",		/* base64url alphabet */
		"Zm9_",
		"Zh==",		/* non-zero bits before the padding */
		"Zm9=",
		"Zm8=Zm8=",
		"Zm\x80v",
		"A",
		"AB=C",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf b;
		buf_init(&b, 0);
		buf_puts(&b, "keep");
		int r = base64_decode(bad[i], strlen(bad[i]), &b);
		if (r != -1)
			fprintf(stderr, "accepted bad input #%zu\n", i);
		CHECK(r == -1);
		CHECK_STREQ(buf_cstr(&b), "keep");	/* out unchanged */
		CHECK(b.len == 4);
		buf_free(&b);
	}
	/* an embedded NUL in the text is an error, not the end of it */
	buf b;
	buf_init(&b, 0);
	CHECK(base64_decode("Zm9v\0Zm9v", 9, &b) == -1);
	CHECK(base64_decode("Zm\0v", 4, &b) == -1);
	CHECK(b.len == 0);
	buf_free(&b);
}

static void test_decoded_nul(void)
{
	buf b;
	buf_init(&b, 0);
	CHECK(base64_decode("AGJvYgBwdw==", 12, &b) == 0);	/* "\0bob\0pw" */
	CHECK(b.len == 7);
	CHECK(memcmp(b.data, "\0bob\0pw", 7) == 0);
	buf_free(&b);
}

static void test_caps(void)
{
	buf b;
	buf_init(&b, 3);
	CHECK(base64_decode("Zm9v", 4, &b) == 0);		/* exactly fits */
	CHECK(b.len == 3);
	buf_reset(&b);
	CHECK(base64_decode("Zm9vYg==", 8, &b) == -1);		/* one byte too many */
	CHECK(b.len == 0);
	buf_free(&b);

	/* a long decode crossing chunk boundaries that hits the cap late */
	char text[4 * 200 + 1];
	for (size_t i = 0; i < 200; i++)
		memcpy(text + 4 * i, "QUFB", 4);			/* "AAA" */
	text[800] = '\0';
	buf_init(&b, 599);
	CHECK(base64_decode(text, 800, &b) == -1);
	CHECK(b.len == 0);
	buf_free(&b);
	buf_init(&b, 600);
	CHECK(base64_decode(text, 800, &b) == 0);
	CHECK(b.len == 600);
	buf_free(&b);

	buf_init(&b, 7);
	CHECK(base64_encode("foobar", 6, &b) == -1);		/* needs 8 */
	CHECK(b.len == 0);
	CHECK(base64_encode("fooba", 5, &b) == -1);
	CHECK(base64_encode("foo", 3, &b) == 0);
	CHECK_STREQ(buf_cstr(&b), "Zm9v");
	buf_free(&b);

	/* a long encode hitting the cap after several chunks leaves out as it was */
	unsigned char big[600];
	memset(big, 'A', sizeof(big));
	buf_init(&b, 799);
	buf_puts(&b, "x");
	CHECK(base64_encode(big, sizeof(big), &b) == -1);
	CHECK_STREQ(buf_cstr(&b), "x");
	buf_free(&b);
}

TEST_MAIN(TEST(test_vectors), TEST(test_binary_round_trip), TEST(test_decode_invalid),
	  TEST(test_decoded_nul), TEST(test_caps))
