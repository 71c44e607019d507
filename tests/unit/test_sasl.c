/* test_sasl - PLAIN and LOGIN exchanges, limits, cancel and hostile bytes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sasl.h"
#include "lib/base64.h"
#include "lib/buf.h"
#include "test.h"

/* b64 - base64 of n bytes into a static-ish caller buffer (freed by the caller). */
static char *b64(const void *p, size_t n)
{
	buf b;
	buf_init(&b, 0);
	if (base64_encode(p, n, &b) < 0)
		return NULL;
	char *s = strdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

/* plain_once - run PLAIN with the given decoded message as initial response. */
static int plain_once(const void *msg, size_t n, struct sasl_state *s, const char **err)
{
	const char *ch;
	char *text = b64(msg, n);
	sasl_begin(s, SASL_PLAIN);
	int r = sasl_step(s, text, &ch, err);
	free(text);
	return r;
}

static void test_mech_parse(void)
{
	enum sasl_mech m;
	CHECK(sasl_mech_parse("PLAIN", &m) == 0 && m == SASL_PLAIN);
	CHECK(sasl_mech_parse("plain", &m) == 0 && m == SASL_PLAIN);
	CHECK(sasl_mech_parse("Login", &m) == 0 && m == SASL_LOGIN);
	CHECK(sasl_mech_parse("CRAM-MD5", &m) == -1);
	CHECK(sasl_mech_parse("", &m) == -1);
	CHECK(sasl_mech_parse("PLAINX", &m) == -1);
	CHECK(sasl_mech_parse("PLAI", &m) == -1);
}

static void test_plain_valid(void)
{
	struct sasl_state s;
	const char *err;

	CHECK(plain_once("\0bob@example.org\0s3cret", 23, &s, &err) == 1);
	CHECK_STREQ(s.authcid, "bob@example.org");
	CHECK_STREQ(s.password, "s3cret");
	sasl_free(&s);
	CHECK(s.authcid == NULL && s.password == NULL);

	/* authzid equal to authcid is allowed */
	CHECK(plain_once("bob\0bob\0pw", 10, &s, &err) == 1);
	CHECK_STREQ(s.authcid, "bob");
	CHECK_STREQ(s.password, "pw");
	sasl_free(&s);

	/* the RFC 4616 example, and UTF-8 in names and passwords */
	CHECK(plain_once("\0tim\0tanstaaftanstaaf", 21, &s, &err) == 1);
	CHECK_STREQ(s.password, "tanstaaftanstaaf");
	sasl_free(&s);
	CHECK(plain_once("\0j\xc3\xb6rg\0p\xc3\xa4ss w0rd", 17, &s, &err) == 1);
	CHECK_STREQ(s.authcid, "j\xc3\xb6rg");
	CHECK_STREQ(s.password, "p\xc3\xa4ss w0rd");
	sasl_free(&s);

	/* without an initial response: an empty challenge, then the message */
	const char *ch;
	sasl_begin(&s, SASL_PLAIN);
	CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
	CHECK_STREQ(ch, "");
	CHECK(sasl_step(&s, "AGJvYgBwdw==", &ch, &err) == 1);
	CHECK_STREQ(s.authcid, "bob");
	CHECK_STREQ(s.password, "pw");
	/* the exchange is over: more input is an error, and the result stays */
	CHECK(sasl_step(&s, "AGJvYgBwdw==", &ch, &err) == -1);
	CHECK_STREQ(s.authcid, "bob");
	sasl_free(&s);
	sasl_free(&s);	/* twice is harmless */
}

static void test_plain_invalid(void)
{
	static const struct {
		const char *msg;
		size_t len;
	} bad[] = {
		{ "", 0 },			/* empty */
		{ "bob", 3 },			/* no NUL */
		{ "\0bob", 4 },			/* one NUL */
		{ "\0bob\0", 5 },		/* empty password */
		{ "\0\0pw", 4 },		/* empty authcid */
		{ "\0bob\0pa\0ss", 11 },	/* NUL in the password */
		{ "\0bob\0pw\0", 8 },		/* trailing NUL */
		{ "alice\0bob\0pw", 12 },	/* authzid differs */
		{ "Bob\0bob\0pw", 10 },		/* ... also in case only */
		{ "bob \0bob\0pw", 11 },
		{ "\0b\rob\0pw", 8 },		/* control characters in the name */
		{ "\0bob\n\0pw", 8 },
		{ "\0bob\x7f\0pw", 8 },
		{ "\0\x01\0pw", 5 },
		{ "\0\0\0", 3 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sasl_state s;
		const char *err = NULL;
		int r = plain_once(bad[i].msg, bad[i].len, &s, &err);
		if (r != -1)
			fprintf(stderr, "accepted bad PLAIN #%zu\n", i);
		CHECK(r == -1);
		CHECK(err != NULL && err[0] != '\0');
		CHECK(s.password == NULL && s.authcid == NULL);
		sasl_free(&s);
	}

	static const char *const bad_text[] = {
		"=",			/* empty response */
		"",			/* empty text is not "=" */
		"AGJvYgBwdw",		/* no padding */
		"AGJvYgBwdw==\r\n",
		" AGJvYgBwdw==",
		"AGJvYgBwdw=",
		"!!!!",
		"AGJvYgBwdw==AAAA",
		"A",
		"==",
		"**",
		"* ",
	};
	for (size_t i = 0; i < sizeof(bad_text) / sizeof(bad_text[0]); i++) {
		struct sasl_state s;
		const char *ch, *err = NULL;
		sasl_begin(&s, SASL_PLAIN);
		int r = sasl_step(&s, bad_text[i], &ch, &err);
		if (r != -1)
			fprintf(stderr, "accepted bad PLAIN text #%zu\n", i);
		CHECK(r == -1);
		CHECK(err != NULL);
		sasl_free(&s);
	}
}

static void test_plain_limits(void)
{
	char msg[255 + 1 + 255 + 1 + 1024 + 10];
	struct sasl_state s;
	const char *err;

	/* authcid of 255 bytes is fine, 256 is not */
	msg[0] = '\0';
	memset(msg + 1, 'u', 255);
	msg[256] = '\0';
	memcpy(msg + 257, "pw", 2);
	CHECK(plain_once(msg, 259, &s, &err) == 1);
	CHECK(s.authcid != NULL && strlen(s.authcid) == 255);
	sasl_free(&s);
	memset(msg + 1, 'u', 256);
	msg[257] = '\0';
	memcpy(msg + 258, "pw", 2);
	CHECK(plain_once(msg, 260, &s, &err) == -1);
	sasl_free(&s);

	/* password of 1024 bytes is fine, 1025 is not */
	memcpy(msg, "\0bob\0", 5);
	memset(msg + 5, 'p', 1024);
	CHECK(plain_once(msg, 5 + 1024, &s, &err) == 1);
	CHECK(s.password != NULL && strlen(s.password) == 1024);
	sasl_free(&s);
	memset(msg + 5, 'p', 1025);
	CHECK(plain_once(msg, 5 + 1025, &s, &err) == -1);
	sasl_free(&s);

	/* authzid of 256 bytes */
	memset(msg, 'z', 256);
	memcpy(msg + 256, "\0bob\0pw", 7);
	CHECK(plain_once(msg, 263, &s, &err) == -1);
	sasl_free(&s);

	/* everything at its limit together still fits */
	size_t n = 0;
	memset(msg, 'u', 255);
	n = 255;
	msg[n++] = '\0';
	memset(msg + n, 'u', 255);
	n += 255;
	msg[n++] = '\0';
	memset(msg + n, 'p', 1024);
	n += 1024;
	CHECK(plain_once(msg, n, &s, &err) == 1);
	sasl_free(&s);

	/* a huge text is refused before decoding */
	size_t big = 1 << 20;
	char *text = malloc(big + 1);
	memset(text, 'A', big);
	text[big] = '\0';
	const char *ch;
	sasl_begin(&s, SASL_PLAIN);
	CHECK(sasl_step(&s, text, &ch, &err) == -1);
	CHECK_STREQ(err, "response too long");
	sasl_free(&s);
	/* a huge text that is not valid base64 is refused as well */
	text[big / 2] = '\x01';
	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, text, &ch, &err) == -1);
	sasl_free(&s);
	free(text);
}

static void test_login(void)
{
	struct sasl_state s;
	const char *ch, *err;

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
	CHECK_STREQ(ch, "VXNlcm5hbWU6");
	CHECK(sasl_step(&s, "Ym9iQGV4YW1wbGUub3Jn", &ch, &err) == 0);	/* bob@example.org */
	CHECK_STREQ(ch, "UGFzc3dvcmQ6");
	CHECK_STREQ(s.authcid, "bob@example.org");
	CHECK(sasl_step(&s, "czNjcmV0", &ch, &err) == 1);			/* s3cret */
	CHECK_STREQ(s.password, "s3cret");
	CHECK(sasl_step(&s, "czNjcmV0", &ch, &err) == -1);
	sasl_free(&s);

	/* user name as the initial response */
	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
	CHECK_STREQ(ch, "UGFzc3dvcmQ6");
	CHECK(sasl_step(&s, "cHc=", &ch, &err) == 1);
	CHECK_STREQ(s.authcid, "bob");
	CHECK_STREQ(s.password, "pw");
	sasl_free(&s);

	/* empty user name, empty password, NULs, bad base64, missing responses */
	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "=", &ch, &err) == -1);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == -1);	/* over after an error */
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
	CHECK(sasl_step(&s, "=", &ch, &err) == -1);
	CHECK(s.password == NULL);
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "AGJvYg==", &ch, &err) == -1);	/* "\0bob" */
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
	CHECK(sasl_step(&s, "cABx", &ch, &err) == -1);	/* "p\0q" */
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
	CHECK(sasl_step(&s, NULL, &ch, &err) == -1);
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
	CHECK(sasl_step(&s, "cHc", &ch, &err) == -1);
	CHECK(s.password == NULL);
	sasl_free(&s);

	/* user name limit: 255 fine, 256 not */
	char name[257];
	memset(name, 'n', sizeof(name));
	char *t = b64(name, 255);
	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, t, &ch, &err) == 0);
	free(t);
	sasl_free(&s);
	t = b64(name, 256);
	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, t, &ch, &err) == -1);
	free(t);
	sasl_free(&s);
}

static void test_cancel(void)
{
	struct sasl_state s;
	const char *ch, *err;

	sasl_begin(&s, SASL_PLAIN);
	CHECK(sasl_step(&s, "*", &ch, &err) == -2);
	sasl_free(&s);

	sasl_begin(&s, SASL_PLAIN);
	CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
	CHECK(sasl_step(&s, "*", &ch, &err) == -2);
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
	CHECK(sasl_step(&s, "*", &ch, &err) == -2);
	sasl_free(&s);

	sasl_begin(&s, SASL_LOGIN);
	CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
	CHECK(sasl_step(&s, "*", &ch, &err) == -2);
	CHECK(s.password == NULL);
	sasl_free(&s);
}

/* test_single_bytes - every byte alone as a response, at every step: only "*" cancels,
 * nothing else is accepted. */
static void test_single_bytes(void)
{
	for (int mech = 0; mech < 2; mech++) {
		for (int c = 1; c < 256; c++) {
			char text[2] = { (char)c, '\0' };
			for (int pre = 0; pre < 2; pre++) {
				struct sasl_state s;
				const char *ch, *err;
				sasl_begin(&s, mech == 0 ? SASL_PLAIN : SASL_LOGIN);
				if (pre) {
					CHECK(sasl_step(&s, NULL, &ch, &err) == 0);
					if (mech == 1)
						CHECK(sasl_step(&s, "Ym9i", &ch, &err) == 0);
				}
				int r = sasl_step(&s, text, &ch, &err);
				CHECK(r == (c == '*' ? -2 : -1));
				CHECK(s.password == NULL);
				sasl_free(&s);
			}
		}
	}
}

/* xorshift - a small deterministic generator for the random tests. */
static uint32_t rng_state = 2463534242u;
static uint32_t xorshift(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* plain_expect - an independent statement of the PLAIN rules. */
static int plain_expect(const unsigned char *m, size_t n)
{
	size_t nuls = 0, pos[3] = { 0, 0, 0 };
	for (size_t i = 0; i < n; i++) {
		if (m[i] == 0) {
			if (nuls < 3)
				pos[nuls] = i;
			nuls++;
		}
	}
	if (nuls != 2)
		return -1;
	size_t zlen = pos[0], clen = pos[1] - pos[0] - 1, plen = n - pos[1] - 1;
	if (clen == 0 || clen > 255 || zlen > 255 || plen == 0 || plen > 1024)
		return -1;
	for (size_t i = pos[0] + 1; i < pos[1]; i++) {
		if (m[i] < 0x20 || m[i] == 0x7f)
			return -1;
	}
	if (zlen != 0 && (zlen != clen || memcmp(m, m + pos[0] + 1, clen) != 0))
		return -1;
	return 1;
}

/* test_random_plain - random messages with few NULs, checked against plain_expect. */
static void test_random_plain(void)
{
	unsigned char m[64];
	int accepted = 0;
	for (int iter = 0; iter < 20000; iter++) {
		size_t n = xorshift() % sizeof(m);
		for (size_t i = 0; i < n; i++) {
			uint32_t r = xorshift() % 16;
			m[i] = r == 0 ? 0 : r < 4 ? (unsigned char)(xorshift() & 0xff)
				: (unsigned char)('a' + r);
		}
		if (n > 4 && xorshift() % 2) {	/* often make it well-formed-ish */
			m[0] = 0;
			m[1 + xorshift() % (n - 2)] = 0;
		}
		struct sasl_state s;
		const char *err;
		int r = plain_once(m, n, &s, &err);
		int want = plain_expect(m, n);
		CHECK(r == want);
		if (r == 1) {
			accepted++;
			CHECK(s.authcid != NULL && s.password != NULL);
		}
		sasl_free(&s);
	}
	CHECK(accepted > 100);	/* the generator does exercise the success path */

	/* random printable text as a response: never accepted unless it is valid base64 */
	for (int iter = 0; iter < 5000; iter++) {
		char text[40];
		size_t n = xorshift() % (sizeof(text) - 1);
		for (size_t i = 0; i < n; i++)
			text[i] = (char)(0x21 + xorshift() % 94);
		text[n] = '\0';
		struct sasl_state s;
		const char *ch, *err;
		sasl_begin(&s, iter % 2 ? SASL_LOGIN : SASL_PLAIN);
		int r = sasl_step(&s, text, &ch, &err);
		CHECK(r == -2 || r == -1 || r == 0 || r == 1);
		if (r == -1)
			CHECK(err != NULL);
		sasl_free(&s);
	}
}

TEST_MAIN(TEST(test_mech_parse), TEST(test_plain_valid), TEST(test_plain_invalid),
	  TEST(test_plain_limits), TEST(test_login), TEST(test_cancel), TEST(test_single_bytes),
	  TEST(test_random_plain))
