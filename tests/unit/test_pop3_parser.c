/* test_pop3_parser - POP3 command lines: valid, invalid, nasty */
#include <stdlib.h>

#include "pop3/parser.h"
#include "test.h"

struct case_ {
	const char *line;
	int ok;
	const char *verb;
	size_t n_args;
	const char *arg0;
	const char *rest;
};

static void test_table(void)
{
	static const struct case_ cases[] = {
		{ "STAT", 1, "STAT", 0, NULL, NULL },
		{ "stat", 1, "STAT", 0, NULL, NULL },
		{ "LiSt 12", 1, "LIST", 1, "12", "12" },
		{ "TOP 1 10", 1, "TOP", 2, "1", "1 10" },
		{ "PASS secret with spaces", 1, "PASS", 3, "secret", "secret with spaces" },
		{ "AUTH PLAIN AGJvYgBwdw==", 1, "AUTH", 2, "PLAIN", "PLAIN AGJvYgBwdw==" },
		{ "UIDL", 1, "UIDL", 0, NULL, NULL },
		{ "", 0, NULL, 0, NULL, NULL },
		{ "ST", 0, NULL, 0, NULL, NULL },
		{ "STATS", 0, NULL, 0, NULL, NULL },
		{ "ST4T", 0, NULL, 0, NULL, NULL },
		{ " STAT", 0, NULL, 0, NULL, NULL },
		{ "LIST  1", 0, NULL, 0, NULL, NULL },
		{ "LIST 1 ", 0, NULL, 0, NULL, NULL },
		{ "R\xc3\xa9TR 1", 0, NULL, 0, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char line[128];
		size_t len = strlen(cases[i].line);
		memcpy(line, cases[i].line, len + 1);
		struct pop3_command_line c;
		const char *err = NULL;
		int r = pop3_command_parse(line, len, &c, &err);
		CHECK((r == 0) == cases[i].ok);
		if (r != 0) {
			CHECK(err != NULL);
			continue;
		}
		CHECK_STREQ(c.verb, cases[i].verb);
		CHECK(c.n_args == cases[i].n_args);
		if (cases[i].arg0 != NULL)
			CHECK(c.args_len[0] == strlen(cases[i].arg0) &&
			      memcmp(c.args[0], cases[i].arg0, c.args_len[0]) == 0);
		if (cases[i].rest != NULL)
			CHECK_STREQ(c.rest, cases[i].rest);
		else
			CHECK(c.rest == NULL);
	}
}

static void test_nul_and_numbers(void)
{
	char line[] = "RETR 1\0 2";
	struct pop3_command_line c;
	const char *err;
	CHECK(pop3_command_parse(line, sizeof(line) - 1, &c, &err) < 0);

	static const struct {
		const char *arg;
		int ok;
		uint64_t n;
	} nums[] = {
		{ "1", 1, 1 }, { "4294967295", 1, 4294967295u }, { "4294967296", 0, 0 },
		{ "0", 1, 0 }, { "-1", 0, 0 }, { "+1", 0, 0 }, { "1x", 0, 0 }, { "0x10", 0, 0 },
		{ "99999999999999999999999", 0, 0 }, { "007", 1, 7 },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		char buf[64];
		int n = snprintf(buf, sizeof(buf), "LIST %s", nums[i].arg);
		uint64_t v = 12345;
		CHECK(pop3_command_parse(buf, (size_t)n, &c, &err) == 0);
		int r = pop3_number_parse(&c, 0, UINT32_MAX, &v);
		CHECK((r == 0) == nums[i].ok);
		if (r == 0)
			CHECK(v == nums[i].n);
	}
	char stat[] = "STAT";
	uint64_t v;
	CHECK(pop3_command_parse(stat, 4, &c, &err) == 0);
	CHECK(pop3_number_parse(&c, 0, 10, &v) < 0);
}

static void test_every_byte(void)
{
	/* each single byte after a verb either parses or errors, never crashes */
	for (int b = 0; b < 256; b++) {
		char line[16] = "LIST x";
		line[5] = (char)b;
		struct pop3_command_line c;
		const char *err;
		int r = pop3_command_parse(line, 6, &c, &err);
		CHECK(r == 0 || err != NULL);
		CHECK(r != 0 || (b != 0 && b != ' '));
	}
}

TEST_MAIN(TEST(test_table), TEST(test_nul_and_numbers), TEST(test_every_byte))
