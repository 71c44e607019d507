/* test_smtp_reply - SMTP reply lines: grammar, multi-line replies, enhanced codes, limits */
#include <stdlib.h>

#include "smtp/reply.h"
#include "test.h"

struct reply_case {
	const char *lines[6];	/* fed in order, NULL-terminated */
	int ret;		/* result of the last line fed */
	int code;
	const char *enhanced;
	const char *text;	/* reply text, or the error when ret is -1 */
};

static const struct reply_case cases[] = {
	{ { "220 mx.example.com ESMTP", NULL }, 1, 220, "", "mx.example.com ESMTP" },
	{ { "250", NULL }, 1, 250, "", "" },
	{ { "250 ", NULL }, 1, 250, "", "" },
	{ { "550 5.1.1 User unknown", NULL }, 1, 550, "5.1.1", "5.1.1 User unknown" },
	{ { "451 4.3.0", NULL }, 1, 451, "4.3.0", "4.3.0" },
	{ { "250 2.0.0Ok", NULL }, 1, 250, "", "2.0.0Ok" },		/* no SP after it */
	{ { "550 4.1.1 wrong class", NULL }, 1, 550, "", "4.1.1 wrong class" },
	{ { "550 5.1234.1 too many digits", NULL }, 1, 550, "", "5.1234.1 too many digits" },
	{ { "250 2.1.500 x", NULL }, 1, 250, "2.1.500", "2.1.500 x" },
	{ { "250-mx.example.com", "250-PIPELINING", "250-SIZE 1000", "250 8BITMIME", NULL }, 1,
	  250, "", "mx.example.com\nPIPELINING\nSIZE 1000\n8BITMIME" },
	{ { "550-5.7.1 first", "550 5.7.1 second", NULL }, 1, 550, "5.7.1",
	  "5.7.1 first\n5.7.1 second" },
	{ { "250-", "250 last", NULL }, 1, 250, "", "\nlast" },
	{ { "250-one", NULL }, 0, 250, "", "one" },
	{ { "hello", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "25", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "2500 x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "250x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "150 x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "650 x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "260 x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "2a0 x", NULL }, -1, 0, NULL, "not a reply line" },
	{ { "250-a", "251 b", NULL }, -1, 0, NULL, "reply code changed within a multi-line reply" },
	{ { "250-a", "garbage", NULL }, -1, 0, NULL, "not a reply line" },
};

/* run_case - feed the lines; check every line but the last returns 0 */
static void run_case(const struct reply_case *tc)
{
	struct smtp_reply_parser p;
	const char *err = NULL;
	int r = 0;
	smtp_reply_parser_init(&p, 0, 0);
	for (size_t i = 0; tc->lines[i] != NULL; i++) {
		if (i > 0 && r != 0)
			fprintf(stderr, "line %zu of \"%s\": early result %d\n", i, tc->lines[0], r);
		CHECK(i == 0 || r == 0);
		r = smtp_reply_parse_line(&p, tc->lines[i], strlen(tc->lines[i]), &err);
	}
	if (r != tc->ret)
		fprintf(stderr, "case \"%s\": ret %d\n", tc->lines[0], r);
	CHECK(r == tc->ret);
	if (tc->ret == -1) {
		CHECK_STREQ(err, tc->text);
	} else {
		CHECK(p.reply.code == tc->code);
		CHECK_STREQ(p.reply.enhanced, tc->enhanced);
		CHECK_STREQ(buf_cstr(&p.reply.text), tc->text);
	}
	smtp_reply_parser_free(&p);
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
}

/* test_sequence - one parser, several replies in turn, an error in between */
static void test_sequence(void)
{
	struct smtp_reply_parser p;
	const char *err;
	smtp_reply_parser_init(&p, 0, 0);
	CHECK(smtp_reply_parse_line(&p, "250-a", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250 b", 5, &err) == 1);
	CHECK(p.reply.n_lines == 2);
	CHECK(smtp_reply_parse_line(&p, "354 go", 6, &err) == 1);
	CHECK(p.reply.code == 354 && p.reply.n_lines == 1);
	CHECK_STREQ(buf_cstr(&p.reply.text), "go");
	CHECK(smtp_reply_parse_line(&p, "550-x", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "x", 1, &err) == -1);
	CHECK(smtp_reply_parse_line(&p, "221 bye", 7, &err) == 1);
	CHECK(p.reply.code == 221);
	CHECK_STREQ(buf_cstr(&p.reply.text), "bye");
	smtp_reply_parser_free(&p);
}

static void test_nul(void)
{
	struct smtp_reply_parser p;
	const char *err = NULL;
	smtp_reply_parser_init(&p, 0, 0);
	CHECK(smtp_reply_parse_line(&p, "250 a\0b", 7, &err) == -1);
	CHECK_STREQ(err, "NUL byte in reply");
	smtp_reply_parser_free(&p);
}

/* test_limits - the line count and text size limits trigger exactly at their bound */
static void test_limits(void)
{
	struct smtp_reply_parser p;
	const char *err = NULL;
	smtp_reply_parser_init(&p, 3, 0);
	CHECK(smtp_reply_parse_line(&p, "250-a", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250-b", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250 c", 5, &err) == 1);
	CHECK(smtp_reply_parse_line(&p, "250-a", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250-b", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250-c", 5, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250 d", 5, &err) == -1);
	CHECK_STREQ(err, "too many reply lines");
	smtp_reply_parser_free(&p);

	/* 10 bytes of text: "abcd\nefgh" is 9, one more line does not fit */
	smtp_reply_parser_init(&p, 100, 10);
	CHECK(smtp_reply_parse_line(&p, "250-abcd", 8, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250-efgh", 8, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "250 ij", 6, &err) == -1);
	CHECK_STREQ(err, "reply text too long");
	CHECK(smtp_reply_parse_line(&p, "250 0123456789", 14, &err) == 1);
	CHECK(smtp_reply_parse_line(&p, "250 0123456789a", 15, &err) == -1);
	smtp_reply_parser_free(&p);

	/* default limit: 100 lines */
	smtp_reply_parser_init(&p, 0, 0);
	int r = 0;
	for (int i = 0; i < 100; i++)
		r = smtp_reply_parse_line(&p, "250-x", 5, &err);
	CHECK(r == 0);
	CHECK(smtp_reply_parse_line(&p, "250 x", 5, &err) == -1);
	smtp_reply_parser_free(&p);
}

static void test_oneline(void)
{
	struct smtp_reply_parser p;
	const char *err;
	smtp_reply_parser_init(&p, 0, 0);
	CHECK(smtp_reply_parse_line(&p, "550-5.1.1 no such", 17, &err) == 0);
	CHECK(smtp_reply_parse_line(&p, "550 5.1.1 user \x01\xff", 17, &err) == 1);
	char *s = smtp_reply_oneline(&p.reply, 0);
	CHECK_STREQ(s, "550 5.1.1 no such 5.1.1 user \\x01\\xff");
	free(s);
	s = smtp_reply_oneline(&p.reply, 14);
	CHECK_STREQ(s, "550 5.1.1 n...");
	free(s);
	CHECK(smtp_reply_parse_line(&p, "250", 3, &err) == 1);
	s = smtp_reply_oneline(&p.reply, 0);
	CHECK_STREQ(s, "250");
	free(s);
	smtp_reply_parser_free(&p);
}

static void test_enhanced(void)
{
	size_t n = 0;
	CHECK(smtp_reply_is_enhanced("2.0.0", 5, '2', &n) && n == 5);
	CHECK(smtp_reply_is_enhanced("5.7.1 x", 7, '5', &n) && n == 5);
	CHECK(smtp_reply_is_enhanced("4.123.456", 9, '4', &n) && n == 9);
	CHECK(!smtp_reply_is_enhanced("4.1234.4", 8, '4', &n));
	CHECK(!smtp_reply_is_enhanced("4.1.", 4, '4', &n));
	CHECK(!smtp_reply_is_enhanced("4..1", 4, '4', &n));
	CHECK(!smtp_reply_is_enhanced("5.1.1", 5, '4', &n));
	CHECK(!smtp_reply_is_enhanced("5.1.1x", 6, '5', &n));
	CHECK(!smtp_reply_is_enhanced("5.1", 3, '5', &n));
}

TEST_MAIN(TEST(test_table), TEST(test_sequence), TEST(test_nul), TEST(test_limits),
	  TEST(test_oneline), TEST(test_enhanced))
