/* test_imap_parser - the IMAP command reader: tokens, literals, errors and limits, fed whole,
 * one byte at a time and split at every point (all must agree). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/parser.h"
#include "lib/buf.h"
#include "test.h"

/* dump_args - a canonical text of an argument list */
static void dump_args(buf *out, const struct imap_arg *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			buf_putc(out, ' ');
		switch (a[i].type) {
		case IMAP_ARG_ATOM:
			buf_printf(out, "%s", a[i].str);
			break;
		case IMAP_ARG_QUOTED:
			buf_printf(out, "q<%s>", a[i].str);
			break;
		case IMAP_ARG_LITERAL:
			if (a[i].streamed) {
				buf_printf(out, "stream<%llu>", (unsigned long long)a[i].stream_size);
				break;
			}
			buf_printf(out, "%s<", a[i].literal8 ? "lit8" : "lit");
			for (size_t k = 0; k < a[i].len; k++) {
				unsigned char c = (unsigned char)a[i].str[k];
				if (c < ' ' || c >= 0x7f)
					buf_printf(out, "\\x%02x", c);
				else
					buf_putc(out, (char)c);
			}
			buf_putc(out, '>');
			break;
		case IMAP_ARG_LIST:
			buf_putc(out, '(');
			dump_args(out, a[i].list, a[i].n_list);
			buf_putc(out, ')');
			break;
		}
	}
}

enum stream_policy { STREAM_ACCEPT, STREAM_REJECT };

/* run - feed input in chunks of chunk bytes (0: whole) and return the transcript of events;
 * a streamed literal is consumed here, as a session would (caller frees) */
static char *run_with(const struct imap_parser_limits *lim, const char *input, size_t len,
		      size_t chunk, enum stream_policy policy)
{
	struct imap_parser *p = imap_parser_new(lim);
	buf out;
	buf_init(&out, 0);
	size_t pos = 0;
	uint64_t stream_left = 0;
	while (pos < len) {
		size_t n = chunk == 0 ? len - pos : chunk;
		if (n > len - pos)
			n = len - pos;
		if (stream_left > 0) {	/* the session reads the literal itself */
			size_t take = n < stream_left ? n : (size_t)stream_left;
			pos += take;
			stream_left -= take;
			if (stream_left == 0)
				imap_parser_stream_done(p);
			continue;
		}
		size_t used;
		enum imap_parse_result r = imap_parser_feed(p, input + pos, n, &used);
		pos += used;
		const struct imap_command *c = imap_parser_command(p);
		switch (r) {
		case IMAP_PARSE_MORE:
			break;
		case IMAP_PARSE_COMMAND:
			buf_printf(&out, "CMD %s %s", c->tag, c->name);
			if (c->n_args > 0) {
				buf_putc(&out, ' ');
				dump_args(&out, c->args, c->n_args);
			}
			buf_putc(&out, '\n');
			imap_parser_reset(p);
			break;
		case IMAP_PARSE_CONTINUE:
			buf_puts(&out, "+\n");
			break;
		case IMAP_PARSE_LITERAL_STREAM:
			buf_printf(&out, "STREAM %s %llu %s\n", c->name,
				   (unsigned long long)imap_parser_literal_size(p),
				   imap_parser_literal_sync(p) ? "sync" : "nonsync");
			if (policy == STREAM_ACCEPT) {
				if (imap_parser_literal_sync(p))
					buf_puts(&out, "+\n");
				stream_left = imap_parser_literal_size(p);
			} else {
				imap_parser_stream_reject(p);
			}
			break;
		case IMAP_PARSE_ERROR:
			buf_printf(&out, "ERR %s %s%s\n", imap_parser_error_tag(p) ?
				   imap_parser_error_tag(p) : "*", imap_parser_error(p),
				   imap_parser_fatal(p) ? " FATAL" : "");
			if (imap_parser_fatal(p))
				pos = len;
			break;
		}
	}
	imap_parser_free(&p);
	char *s = strdup(buf_cstr(&out));
	buf_free(&out);
	return s;
}

/* check_all_ways - whole, byte by byte, and split at every point give expected */
static void check_lim(const struct imap_parser_limits *lim, const char *input, size_t len,
		      enum stream_policy policy, const char *expected)
{
	char *whole = run_with(lim, input, len, 0, policy);
	CHECK_STREQ(whole, expected);
	char *bytes = run_with(lim, input, len, 1, policy);
	CHECK_STREQ(bytes, expected);
	for (size_t chunk = 2; chunk < len && chunk < 40; chunk++) {
		char *c = run_with(lim, input, len, chunk, policy);
		if (strcmp(c, expected) != 0) {
			fprintf(stderr, "chunk %zu:\n", chunk);
			CHECK_STREQ(c, expected);
		}
		free(c);
	}
	free(whole);
	free(bytes);
}

static void check(const char *input, const char *expected)
{
	check_lim(NULL, input, strlen(input), STREAM_ACCEPT, expected);
}

static void test_simple(void)
{
	check("a1 NOOP\r\n", "CMD a1 NOOP\n");
	check("a1 NOOP\n", "CMD a1 NOOP\n");			/* bare LF tolerated */
	check("a1 NOOP \r\n", "CMD a1 NOOP\n");			/* trailing space tolerated */
	check("a1 capability\r\nb2 LOGOUT\r\n", "CMD a1 capability\nCMD b2 LOGOUT\n");
	check("A.1] uid fetch 1:* (UID FLAGS)\r\n", "CMD A.1] uid fetch 1:* (UID FLAGS)\n");
}

static void test_tokens(void)
{
	check("a2 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\r\n",
	      "CMD a2 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100>)\n");
	check("a2 FETCH 1 BODY[1.2.MIME]\r\n", "CMD a2 FETCH 1 BODY[1.2.MIME]\n");
	check("a3 LOGIN \"us\\\"er\" \"p\\\\w\"\r\n", "CMD a3 LOGIN q<us\"er> q<p\\w>\n");
	check("a3 LOGIN \"\" \"\"\r\n", "CMD a3 LOGIN q<> q<>\n");
	check("a4 STORE 1 +FLAGS (\\Seen \\Deleted $Junk)\r\n",
	      "CMD a4 STORE 1 +FLAGS (\\Seen \\Deleted $Junk)\n");
	check("a5 LIST \"\" *\r\n", "CMD a5 LIST q<> *\n");
	check("a5 LIST \"\" %/x\r\n", "CMD a5 LIST q<> %/x\n");
	check("a6 X () ((a) (b c) ()) NIL\r\n", "CMD a6 X () ((a) (b c) ()) NIL\n");
	check("a7 SELECT \"Caf\xc3\xa9\"\r\n", "CMD a7 SELECT q<Caf\xc3\xa9>\n");
	check("a8 SEARCH OR (FROM x) NOT SEEN\r\n", "CMD a8 SEARCH OR (FROM x) NOT SEEN\n");
}

static void test_literals(void)
{
	check("a4 LOGIN {4}\r\nuser {3}\r\npwd\r\n", "+\n+\nCMD a4 LOGIN lit<user> lit<pwd>\n");
	check("a5 LOGIN {4+}\r\nuser {3+}\r\npwd\r\n", "CMD a5 LOGIN lit<user> lit<pwd>\n");
	check("a6 X {0}\r\n\r\n", "+\nCMD a6 X lit<>\n");
	check("a6 X {0+}\r\n {1}\r\n\n\r\n", "+\nCMD a6 X lit<> lit<\\x0a>\n");
	check("a7 X ({2}\r\nab {2+}\r\ncd)\r\n", "+\nCMD a7 X (lit<ab> lit<cd>)\n");
	check("a8 X {5}\r\na\r\nb)\r\n", "+\nCMD a8 X lit<a\\x0d\\x0ab)>\n");
	/* literal8 may hold NUL; a plain literal may not, and the rest of the line goes */
	check_lim(NULL, "a9 APPEND INBOX ~{3}\r\na\0b\r\n", 27, STREAM_ACCEPT,
		  "+\nCMD a9 APPEND INBOX lit8<a\\x00b>\n");
	check_lim(NULL, "b1 X {3+}\r\na\0b x\r\nb2 NOOP\r\n", 27, STREAM_ACCEPT,
		  "ERR b1 NUL byte in a literal (use literal8)\nCMD b2 NOOP\n");
	check("b3 X {3}x\r\nb4 NOOP\r\n", "ERR b3 A literal must end its line\nCMD b4 NOOP\n");
	check("b3 X {}\r\nb4 NOOP\r\n", "ERR b3 Bad literal size\nCMD b4 NOOP\n");
	check("b3 X {99999999999999999999999}\r\nb4 NOOP\r\n",
	      "ERR b3 Literal size too large\nCMD b4 NOOP\n");
}

static void test_streamed_literal(void)
{
	struct imap_parser_limits lim = imap_parser_default_limits;
	lim.max_inline_literal = 8;
	lim.max_literal = 100;
	const char *in = "a1 APPEND INBOX (\\Seen) {20}\r\n01234567890123456789 {2}\r\nab\r\n"
			 "a2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT,
		  "STREAM APPEND 20 sync\n+\n+\nCMD a1 APPEND INBOX (\\Seen) stream<20> lit<ab>\n"
		  "CMD a2 NOOP\n");
	/* refused: a synchronising literal is never sent, so the next line is a command */
	in = "a1 APPEND INBOX {20}\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_REJECT, "STREAM APPEND 20 sync\nCMD a2 NOOP\n");
	/* a non-synchronising one comes anyway and is skipped with the rest of its line */
	in = "a1 APPEND INBOX {20+}\r\n0123456789\r\n12345678 x\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_REJECT, "STREAM APPEND 20 nonsync\nCMD a2 NOOP\n");
	/* too large at all: a synchronising literal is refused before it is sent */
	in = "a1 APPEND INBOX {101}\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Literal too large\nCMD a2 NOOP\n");
	/* ... a non-synchronising one cannot be refused: fatal */
	in = "a1 APPEND INBOX {101+}\r\nxxx";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Literal too large FATAL\n");
	/* large literals inside lists are not streamed */
	in = "a1 X ({9}\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Literal too large here\nCMD a2 NOOP\n");
	/* the inline total of one command is bounded */
	lim.max_literal_total = 10;
	in = "a1 X {8+}\r\n01234567 {8}\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT,
		  "ERR a1 Too much literal data in one command\nCMD a2 NOOP\n");
}

static void test_errors(void)
{
	check("\r\na1 NOOP\r\n", "ERR * Empty line\nCMD a1 NOOP\n");
	check("a1\r\na2 NOOP\r\n", "ERR a1 Missing command\nCMD a2 NOOP\n");
	check("+a NOOP\r\na2 NOOP\r\n", "ERR * Bad tag\nCMD a2 NOOP\n");
	check("a1 NO\x01OP\r\na2 NOOP\r\n", "ERR a1 Bad command name\nCMD a2 NOOP\n");
	check("a1 X (b\r\na2 NOOP\r\n", "ERR a1 Unbalanced parentheses\nCMD a2 NOOP\n");
	check("a1 X b)\r\na2 NOOP\r\n", "ERR a1 Unbalanced parentheses\nCMD a2 NOOP\n");
	check("a1 X (b )\r\na2 NOOP\r\n", "ERR a1 Space before ')'\nCMD a2 NOOP\n");
	check("a1 X ( b)\r\na2 NOOP\r\n", "ERR a1 Space after '('\nCMD a2 NOOP\n");
	check("a1 X b(c)\r\na2 NOOP\r\n", "ERR a1 Missing space between arguments\nCMD a2 NOOP\n");
	check("a1 X \"ab\r\na2 NOOP\r\n", "ERR a1 Unterminated quoted string\nCMD a2 NOOP\n");
	check("a1 X \"a\\b\"\r\na2 NOOP\r\n", "ERR a1 Bad escape in a quoted string\nCMD a2 NOOP\n");
	check("a1 X caf\xc3\xa9\r\na2 NOOP\r\n", "ERR a1 8-bit byte in an atom\nCMD a2 NOOP\n");
	check("a1 X BODY[1\r\na2 NOOP\r\n", "ERR a1 Unterminated [\nCMD a2 NOOP\n");
	check("a1 X a\rb\r\na2 NOOP\r\n", "ERR a1 CR without LF\nCMD a2 NOOP\n");
	/* the skipped line announced a non-synchronising literal: its bytes are skipped too,
	 * even when they look like commands */
	check("a1 X b(c {12+}\r\na3 NOOP\r\n12\r\na2 NOOP\r\n",
	      "ERR a1 Missing space between arguments\nCMD a2 NOOP\n");
}

static void test_limits(void)
{
	struct imap_parser_limits lim = imap_parser_default_limits;
	lim.max_line = 32;
	lim.max_depth = 3;
	lim.max_args = 5;
	const char *in = "a1 X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Command line too long\nCMD a2 NOOP\n");
	in = "a1 X (((a)))\r\na2 X (((a\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT,
		  "CMD a1 X (((a)))\nERR a2 Unbalanced parentheses\n");
	in = "a1 X ((((a))))\r\na2 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Too deeply nested\nCMD a2 NOOP\n");
	in = "a1 X a b c d e\r\na2 X a b c d e f\r\na3 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT,
		  "CMD a1 X a b c d e\nERR a2 Too many arguments\nCMD a3 NOOP\n");
	in = "a1 X (a b) (c d e)\r\na3 NOOP\r\n";
	check_lim(&lim, in, strlen(in), STREAM_ACCEPT, "ERR a1 Too many arguments\nCMD a3 NOOP\n");
}

/* a huge line never makes the parser buffer more than its limit */
static void test_never_ending_line(void)
{
	struct imap_parser *p = imap_parser_new(NULL);
	char chunk[4096];
	memset(chunk, 'a', sizeof(chunk));
	size_t used;
	enum imap_parse_result r = imap_parser_feed(p, "a1 X ", 5, &used);
	CHECK(r == IMAP_PARSE_MORE);
	int errors = 0;
	for (int i = 0; i < 10000; i++) {	/* 40 MB */
		size_t off = 0;
		while (off < sizeof(chunk)) {
			r = imap_parser_feed(p, chunk + off, sizeof(chunk) - off, &used);
			off += used;
			if (r == IMAP_PARSE_ERROR)
				errors++;
		}
	}
	CHECK(errors == 1);
	r = imap_parser_feed(p, "\r\nb1 NOOP\r\n", 11, &used);
	CHECK(r == IMAP_PARSE_COMMAND);
	CHECK_STREQ(imap_parser_command(p)->tag, "b1");
	imap_parser_free(&p);
}

static void test_seqset(void)
{
	struct imap_seqset s;
	const char *err;
	CHECK(imap_seqset_parse("1", 10, &s, &err) == 0);
	CHECK(s.n == 1 && s.ranges[0].first == 1 && s.ranges[0].last == 1);
	imap_seqset_free(&s);
	CHECK(imap_seqset_parse("1:5,7,*", 10, &s, &err) == 0);
	CHECK(s.n == 3 && s.ranges[0].last == 5 && s.ranges[1].first == 7 &&
	      s.ranges[2].first == IMAP_SEQ_STAR);
	imap_seqset_free(&s);
	CHECK(imap_seqset_parse("5:2,*:3", 10, &s, &err) == 0);
	CHECK(s.n == 2 && s.ranges[0].first == 2 && s.ranges[0].last == 5 &&
	      s.ranges[1].first == 3 && s.ranges[1].last == IMAP_SEQ_STAR);
	imap_seqset_free(&s);
	CHECK(imap_seqset_parse("4294967294", 10, &s, &err) == 0);
	imap_seqset_free(&s);
	CHECK(imap_seqset_parse("$", 10, &s, &err) == 0 && s.saved && s.n == 0);
	imap_seqset_free(&s);
	const char *bad[] = { "", "0", "1:0", "1:", ":1", ",1", "1,", "1,,2", "a", "1:2:3",
			      "4294967295", "99999999999", "-1", "1 ", "$,1", "*1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (imap_seqset_parse(bad[i], 10, &s, &err) != -1) {
			fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
			CHECK(0);
		}
		CHECK(s.ranges == NULL && s.n == 0);
	}
	CHECK(imap_seqset_parse("1,2,3", 2, &s, &err) == -1);
}

static void test_seqset_normalize(void)
{
	struct imap_seqset s;
	const char *err;
	/* "*" resolved, ends ordered, sorted, overlapping and adjacent ranges merged */
	CHECK(imap_seqset_parse("9:*,1,3:4,2,20:30,25,11,13", 100, &s, &err) == 0);
	imap_seqset_normalize(&s, 10);
	CHECK(s.n == 4);
	CHECK(s.ranges[0].first == 1 && s.ranges[0].last == 4);
	CHECK(s.ranges[1].first == 9 && s.ranges[1].last == 11);
	CHECK(s.ranges[2].first == 13 && s.ranges[2].last == 13);
	CHECK(s.ranges[3].first == 20 && s.ranges[3].last == 30);
	imap_seqset_free(&s);
	/* "*" below the other end: the range turns round */
	CHECK(imap_seqset_parse("7:*", 100, &s, &err) == 0);
	imap_seqset_normalize(&s, 3);
	CHECK(s.n == 1 && s.ranges[0].first == 3 && s.ranges[0].last == 7);
	imap_seqset_free(&s);
	/* the top of the UID space: no overflow when merging */
	CHECK(imap_seqset_parse("4294967294,1:4294967293", 100, &s, &err) == 0);
	imap_seqset_normalize(&s, 5);
	CHECK(s.n == 1 && s.ranges[0].first == 1 && s.ranges[0].last == 4294967294u);
	imap_seqset_free(&s);
	CHECK(imap_seqset_parse("$", 100, &s, &err) == 0);
	imap_seqset_normalize(&s, 5);
	CHECK(s.saved && s.n == 0);
	imap_seqset_free(&s);
}

static void test_helpers(void)
{
	struct imap_parser *p = imap_parser_new(NULL);
	size_t used;
	const char *in = "t LOGIN nil \"x\" {1+}\r\ny (a)\r\n";
	CHECK(imap_parser_feed(p, in, strlen(in), &used) == IMAP_PARSE_COMMAND);
	const struct imap_command *c = imap_parser_command(p);
	CHECK(c->n_args == 4);
	CHECK(imap_arg_is_nil(&c->args[0]) && imap_arg_is_atom(&c->args[0], "NIL"));
	CHECK(imap_arg_is_astring(&c->args[1]) && imap_arg_is_astring(&c->args[2]));
	CHECK(!imap_arg_is_astring(&c->args[3]) && !imap_arg_is_nil(&c->args[1]));
	/* a command must be reset before the next: until then feeding returns it again */
	CHECK(imap_parser_feed(p, "u NOOP\r\n", 8, &used) == IMAP_PARSE_COMMAND && used == 0);
	imap_parser_reset(p);
	CHECK(imap_parser_feed(p, "u NOOP\r\n", 8, &used) == IMAP_PARSE_COMMAND && used == 8);
	CHECK_STREQ(imap_parser_command(p)->tag, "u");
	imap_parser_free(&p);
	CHECK(p == NULL);
}

TEST_MAIN(TEST(test_simple), TEST(test_tokens), TEST(test_literals),
	  TEST(test_streamed_literal), TEST(test_errors), TEST(test_limits),
	  TEST(test_never_ending_line), TEST(test_seqset), TEST(test_seqset_normalize),
	  TEST(test_helpers))
