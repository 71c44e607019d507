/* test_smtp_parser - tables for the SMTP command parsers and the DATA/BDAT stream, which is
 * also fed at every split point, one byte at a time, in place, and checked against a simple
 * whole-buffer reference model over all short inputs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "smtp/parser.h"
#include "test.h"

/* ---- verbs ---- */

static const struct verb_case {
	const char *line;
	size_t len; /* 0: strlen(line) */
	enum smtp_verb verb;
	const char *args;
} verb_cases[] = {
	{ "MAIL FROM:<>", 0, SMTP_VERB_MAIL, "FROM:<>" },
	{ "mail FROM:<>", 0, SMTP_VERB_MAIL, "FROM:<>" },
	{ "MaIl FROM:<>", 0, SMTP_VERB_MAIL, "FROM:<>" },
	{ "MAIL", 0, SMTP_VERB_MAIL, "" },
	{ "MAIL ", 0, SMTP_VERB_MAIL, "" },
	{ "MAIL  FROM:<>", 0, SMTP_VERB_MAIL, " FROM:<>" },
	{ "MAILX", 0, SMTP_VERB_UNKNOWN, "" },
	{ "MAILX FROM:<>", 0, SMTP_VERB_UNKNOWN, "" },
	{ "MAI", 0, SMTP_VERB_UNKNOWN, "" },
	{ "MAIL\tFROM:<>", 0, SMTP_VERB_UNKNOWN, "" },
	{ " MAIL FROM:<>", 0, SMTP_VERB_UNKNOWN, "" },
	{ "", 0, SMTP_VERB_UNKNOWN, "" },
	{ " ", 0, SMTP_VERB_UNKNOWN, "" },
	{ "HELO mx.example", 0, SMTP_VERB_HELO, "mx.example" },
	{ "ehlo mx.example", 0, SMTP_VERB_EHLO, "mx.example" },
	{ "RCPT TO:<a@b.example>", 0, SMTP_VERB_RCPT, "TO:<a@b.example>" },
	{ "DATA", 0, SMTP_VERB_DATA, "" },
	{ "DATA x", 0, SMTP_VERB_DATA, "x" },
	{ "BDAT 10 LAST", 0, SMTP_VERB_BDAT, "10 LAST" },
	{ "RSET", 0, SMTP_VERB_RSET, "" },
	{ "NOOP", 0, SMTP_VERB_NOOP, "" },
	{ "noop anything at all", 0, SMTP_VERB_NOOP, "anything at all" },
	{ "QUIT", 0, SMTP_VERB_QUIT, "" },
	{ "VRFY user", 0, SMTP_VERB_VRFY, "user" },
	{ "EXPN list", 0, SMTP_VERB_EXPN, "list" },
	{ "HELP", 0, SMTP_VERB_HELP, "" },
	{ "StartTLS", 0, SMTP_VERB_STARTTLS, "" },
	{ "STARTTLSX", 0, SMTP_VERB_UNKNOWN, "" },
	{ "AUTH PLAIN AGEAYg==", 0, SMTP_VERB_AUTH, "PLAIN AGEAYg==" },
	{ "TURN", 0, SMTP_VERB_UNKNOWN, "" },
	/* NUL bytes anywhere: unknown, so that arguments are never cut at a NUL */
	{ "MA\0L FROM:<>", 12, SMTP_VERB_UNKNOWN, "" },
	{ "MAIL FROM:<a@b.example>\0 SIZE=1", 31, SMTP_VERB_UNKNOWN, "" },
	{ "QUIT\0", 5, SMTP_VERB_UNKNOWN, "" },
	{ "\0", 1, SMTP_VERB_UNKNOWN, "" },
	/* bytes >= 0x80 and controls are just not a verb */
	{ "M\xc3\x80IL x", 0, SMTP_VERB_UNKNOWN, "" },
	{ "QUIT\r", 0, SMTP_VERB_UNKNOWN, "" },
};

static void test_verbs(void)
{
	for (size_t i = 0; i < sizeof(verb_cases) / sizeof(verb_cases[0]); i++) {
		const struct verb_case *c = &verb_cases[i];
		size_t len = c->len ? c->len : strlen(c->line);
		const char *args = NULL;
		enum smtp_verb v = smtp_verb_parse(c->line, len, &args);

		if (v != c->verb || args == NULL || strcmp(args, c->args) != 0)
			fprintf(stderr, "verb case %zu (%s): got %d \"%s\"\n", i, c->line, (int)v,
				args ? args : "(null)");
		CHECK(v == c->verb);
		CHECK_STREQ(args, c->args);
	}
}

/* test_verbs_long - very long lines: a long verb is unknown, long arguments are kept. */
static void test_verbs_long(void)
{
	size_t n = 100000;
	char *line = xmalloc(n + 1);
	const char *args;

	memset(line, 'X', n);
	line[n] = '\0';
	CHECK(smtp_verb_parse(line, n, &args) == SMTP_VERB_UNKNOWN);
	CHECK_STREQ(args, "");
	memcpy(line, "NOOP ", 5);
	CHECK(smtp_verb_parse(line, n, &args) == SMTP_VERB_NOOP);
	CHECK(args == line + 5 && strlen(args) == n - 5);
	memcpy(line, "MAILX", 5);
	CHECK(smtp_verb_parse(line, n, &args) == SMTP_VERB_UNKNOWN);
	free(line);
}

/* ---- MAIL FROM / RCPT TO ---- */

struct path_case {
	const char *args;
	bool ok;
	const char *address;   /* NULL: null path (or error) */
	const char *localpart; /* NULL: don't care (null path) */
	const char *domain;    /* NULL: no domain */
	bool utf8;
	const char *params;    /* "KEY=value KEY" as parsed (keywords upper-cased), "" if none */
	const char *error;     /* expected error text, NULL: don't check */
};

#define OK(a, addr, lp, dom, u8, prm) { a, true, addr, lp, dom, u8, prm, NULL }
#define BAD(a, err) { a, false, NULL, NULL, NULL, false, "", err }

static const struct path_case mail_cases[] = {
	OK("FROM:<>", NULL, NULL, NULL, false, ""),
	OK("from:<>", NULL, NULL, NULL, false, ""),
	OK("From: <>", NULL, NULL, NULL, false, ""),
	OK("FROM:<> SIZE=10", NULL, NULL, NULL, false, "SIZE=10"),
	OK("FROM:<user@example.com>", "user@example.com", "user", "example.com", false, ""),
	OK("FROM: <user@example.com>", "user@example.com", "user", "example.com", false, ""),
	OK("FROM:    <user@example.com>", "user@example.com", "user", "example.com", false, ""),
	OK("FROM:<User.Name@Mail.EXAMPLE.com>", "User.Name@mail.example.com", "User.Name",
	   "mail.example.com", false, ""),
	OK("FROM:<user@example.com> SIZE=123 BODY=8BITMIME SMTPUTF8", "user@example.com", "user",
	   "example.com", false, "SIZE=123 BODY=8BITMIME SMTPUTF8"),
	OK("FROM:<user@example.com> size=123 body=8bitmime", "user@example.com", "user",
	   "example.com", false, "SIZE=123 BODY=8bitmime"),
	OK("FROM:<user@example.com>  SIZE=1   X-FOO  ", "user@example.com", "user", "example.com",
	   false, "SIZE=1 X-FOO"),
	OK("FROM:<user@example.com> AUTH=<> ENVID=QQ+2B1", "user@example.com", "user",
	   "example.com", false, "AUTH=<> ENVID=QQ+2B1"),
	OK("FROM:<user@example.com> 1=2 A-=x", "user@example.com", "user", "example.com", false,
	   "1=2 A-=x"),
	OK("FROM:<@a.example,@b.example:u@c.example>", "u@c.example", "u", "c.example", false, ""),
	OK("FROM:<@a.example:u@c.example>", "u@c.example", "u", "c.example", false, ""),
	OK("FROM:<\"john doe\"@example.com>", "\"john doe\"@example.com", "john doe",
	   "example.com", false, ""),
	OK("FROM:<\"a\\\"b\\\\c\\d\"@example.com>", "\"a\\\"b\\\\c\\d\"@example.com", "a\"b\\cd",
	   "example.com", false, ""),
	OK("FROM:<\"\"@example.com>", "\"\"@example.com", "", "example.com", false, ""),
	OK("FROM:<\"a@b\"@example.com>", "\"a@b\"@example.com", "a@b", "example.com", false, ""),
	OK("FROM:<\"a>b\"@example.com>", "\"a>b\"@example.com", "a>b", "example.com", false, ""),
	OK("FROM:<a+tag@example.com>", "a+tag@example.com", "a+tag", "example.com", false, ""),
	OK("FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", "!#$%&'*+-/=?^_`{|}~@example.com",
	   "!#$%&'*+-/=?^_`{|}~", "example.com", false, ""),
	OK("FROM:<user@a-b.x-1.example>", "user@a-b.x-1.example", "user", "a-b.x-1.example",
	   false, ""),
	OK("FROM:<user@localhost>", "user@localhost", "user", "localhost", false, ""),
	OK("FROM:<user@123.example>", "user@123.example", "user", "123.example", false, ""),
	OK("FROM:<j\xc3\xb6rg@example.com> SMTPUTF8", "j\xc3\xb6rg@example.com", "j\xc3\xb6rg",
	   "example.com", true, "SMTPUTF8"),
	OK("FROM:<user@B\xc3\xbc" "CHER.example>", "user@b\xc3\xbc" "cher.example", "user",
	   "b\xc3\xbc" "cher.example", true, ""),
	OK("FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
	   "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
	   "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", true,
	   ""),
	OK("FROM:<\xf0\x9f\x98\x80@example.com>", "\xf0\x9f\x98\x80@example.com",
	   "\xf0\x9f\x98\x80", "example.com", true, ""),
	OK("FROM:<\"j\xc3\xb6rg\"@example.com>", "\"j\xc3\xb6rg\"@example.com", "j\xc3\xb6rg",
	   "example.com", true, ""),
	OK("FROM:<@b\xc3\xbc.example:u@c.example>", "u@c.example", "u", "c.example", true, ""),
	OK("FROM:<user@[127.0.0.1]>", "user@[127.0.0.1]", "user", "[127.0.0.1]", false, ""),
	OK("FROM:<user@[255.255.255.255]>", "user@[255.255.255.255]", "user",
	   "[255.255.255.255]", false, ""),
	OK("FROM:<user@[001.2.3.4]>", "user@[001.2.3.4]", "user", "[001.2.3.4]", false, ""),
	OK("FROM:<user@[IPv6:::1]>", "user@[ipv6:::1]", "user", "[ipv6:::1]", false, ""),
	OK("FROM:<user@[ipv6:2001:DB8::1]>", "user@[ipv6:2001:db8::1]", "user",
	   "[ipv6:2001:db8::1]", false, ""),
	OK("FROM:<user@[IPv6:::ffff:192.0.2.1]>", "user@[ipv6:::ffff:192.0.2.1]", "user",
	   "[ipv6:::ffff:192.0.2.1]", false, ""),
	OK("FROM:<user@[IPv6:1:2:3:4:5:6:7:8]>", "user@[ipv6:1:2:3:4:5:6:7:8]", "user",
	   "[ipv6:1:2:3:4:5:6:7:8]", false, ""),

	BAD("", "syntax: MAIL FROM:<address>"),
	BAD("FROM", "syntax: MAIL FROM:<address>"),
	BAD("FRO", "syntax: MAIL FROM:<address>"),
	BAD("FROM:", "path must be enclosed in <>"),
	BAD("FROM: ", "path must be enclosed in <>"),
	BAD("FROM<>", "syntax: MAIL FROM:<address>"),
	BAD("FROM :<>", "syntax: MAIL FROM:<address>"),
	BAD(" FROM:<>", "syntax: MAIL FROM:<address>"),
	BAD("TO:<user@example.com>", "syntax: MAIL FROM:<address>"),
	BAD("FROM:\t<user@example.com>", "path must be enclosed in <>"),
	BAD("FROM:user@example.com", "path must be enclosed in <>"),
	BAD("FROM:user@example.com>", "path must be enclosed in <>"),
	BAD("FROM:<user@example.com", "path must be enclosed in <>"),
	BAD("FROM:<", "invalid local part"),
	BAD("FROM:<<user@example.com>>", "invalid local part"),
	BAD("FROM:<user@example.com>>", "garbage after path"),
	BAD("FROM:<user@example.com>SIZE=1", "garbage after path"),
	BAD("FROM:<user@example.com>\t", "garbage after path"),
	BAD("FROM:< user@example.com>", "invalid local part"),
	BAD("FROM:<user@example.com >", "invalid address"),
	BAD("FROM:<user>", "address needs a domain"),
	BAD("FROM:<Postmaster>", "address needs a domain"),
	BAD("FROM:<@example.com>", "invalid source route"),
	BAD("FROM:<user@>", "invalid domain"),
	BAD("FROM:<@a.example:>", "invalid local part"),
	BAD("FROM:<@a.example,u@c.example>", "invalid source route"),
	BAD("FROM:<@:u@c.example>", "invalid source route"),
	BAD("FROM:<@a.example;@b.example:u@c.example>", "invalid source route"),
	BAD("FROM:<@[1.2.3.4]:u@c.example>", "invalid source route"),
	BAD("FROM:<user@example..com>", "invalid domain"),
	BAD("FROM:<user@.example.com>", "invalid domain"),
	BAD("FROM:<user@example.com.>", "invalid domain"),
	BAD("FROM:<user@-example.com>", "invalid domain"),
	BAD("FROM:<user@example-.com>", "invalid domain"),
	BAD("FROM:<user@exa_mple.com>", "invalid address"),
	BAD("FROM:<user@exa mple.com>", "invalid address"),
	BAD("FROM:<us er@example.com>", "invalid address"),
	BAD("FROM:<user.@example.com>", "invalid local part"),
	BAD("FROM:<.user@example.com>", "invalid local part"),
	BAD("FROM:<us..er@example.com>", "invalid local part"),
	BAD("FROM:<us\ter@example.com>", "invalid address"),
	BAD("FROM:<us\x01" "er@example.com>", "invalid address"),
	BAD("FROM:<us\x7f" "er@example.com>", "invalid address"),
	BAD("FROM:<user@exa\x7fmple.com>", "invalid address"),
	BAD("FROM:<user@example.com\r>", "invalid address"),
	BAD("FROM:<\"us\x01" "er\"@example.com>", "invalid character in local part"),
	BAD("FROM:<\"us\ter\"@example.com>", "invalid character in local part"),
	BAD("FROM:<\"us\x7f" "er\"@example.com>", "invalid character in local part"),
	BAD("FROM:<\"a\\\x01\"@example.com>", "invalid quoted pair in local part"),
	BAD("FROM:<\"a\\\xc3\xa9\"@example.com>", "invalid quoted pair in local part"),
	BAD("FROM:<\"unterminated@example.com>", "unterminated quoted local part"),
	BAD("FROM:<\"a\\", "invalid quoted pair in local part"),
	BAD("FROM:<\"a\"b@example.com>", "invalid address"),
	BAD("FROM:<a\"b\"@example.com>", "invalid address"),
	BAD("FROM:<\xc3@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\xc0\xaf@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\xe0\x80\xaf@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\xed\xa0\x80@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\xf4\x90\x80\x80@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\xff@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\x80@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<\"\xc3(\"@example.com>", "invalid UTF-8 in local part"),
	BAD("FROM:<user@\xed\xa0\x80.example>", "invalid domain"),
	BAD("FROM:<user@b\xc3.example>", "invalid domain"),
	BAD("FROM:<user@[256.0.0.1]>", "invalid domain"),
	BAD("FROM:<user@[1.2.3]>", "invalid domain"),
	BAD("FROM:<user@[1.2.3.4.5]>", "invalid domain"),
	BAD("FROM:<user@[1.2.3.4 ]>", "invalid domain"),
	BAD("FROM:<user@[1.2.3.04.]>", "invalid domain"),
	BAD("FROM:<user@[1234.2.3.4]>", "invalid domain"),
	BAD("FROM:<user@[]>", "invalid domain"),
	BAD("FROM:<user@[1.2.3.4>", "invalid domain"),
	BAD("FROM:<user@[IPv6:::g]>", "invalid domain"),
	BAD("FROM:<user@[IPv6:1.2.3.4]>", "invalid domain"),
	BAD("FROM:<user@[IPv6:]>", "invalid domain"),
	BAD("FROM:<user@[IPv6:fe80::1%eth0]>", "invalid domain"),
	BAD("FROM:<user@[IPv6:1:2:3:4:5:6:7:8:9]>", "invalid domain"),
	BAD("FROM:<user@[x-tag:abc]>", "invalid domain"),
	BAD("FROM:<user@[127.0.0.1]x>", "invalid address"),
	BAD("FROM:<user@example.com> SIZE=1 SIZE=2", "duplicate parameter"),
	BAD("FROM:<user@example.com> SIZE=1 size=2", "duplicate parameter"),
	BAD("FROM:<user@example.com> SMTPUTF8 smtputf8", "duplicate parameter"),
	BAD("FROM:<user@example.com> SIZE=", "empty parameter value"),
	BAD("FROM:<user@example.com> =1", "invalid parameter"),
	BAD("FROM:<user@example.com> -X=1", "invalid parameter"),
	BAD("FROM:<user@example.com> SIZE=a=b", "invalid parameter"),
	BAD("FROM:<user@example.com> SIZE==1", "invalid parameter"),
	BAD("FROM:<user@example.com> SIZE_X=1", "invalid parameter"),
	BAD("FROM:<user@example.com> BODY=8BIT\x01", "invalid parameter"),
	BAD("FROM:<user@example.com> BODY=8BIT\tX=1", "invalid parameter"),
	BAD("FROM:<user@example.com> ENVID=\xc3\xa9", "invalid parameter"),
	BAD("FROM:<user@example.com> \xc3\xa9", "invalid parameter"),
	BAD("FROM:<user@example.com> A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8 I=9 J=10 K=11 L=12 M=13 "
	    "N=14 O=15 P=16 Q=17",
	    "too many parameters"),
};

static const struct path_case rcpt_cases[] = {
	OK("TO:<Postmaster>", "Postmaster", "Postmaster", NULL, false, ""),
	OK("to:<postmaster>", "postmaster", "postmaster", NULL, false, ""),
	OK("TO: <POSTMASTER> NOTIFY=NEVER", "POSTMASTER", "POSTMASTER", NULL, false,
	   "NOTIFY=NEVER"),
	OK("TO:<postmaster@Example.com>", "postmaster@example.com", "postmaster", "example.com",
	   false, ""),
	OK("TO:<user@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+2Bx@example.com",
	   "user@example.com", "user", "example.com", false,
	   "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user+2Bx@example.com"),
	OK("TO:<@relay.example:user@example.com>", "user@example.com", "user", "example.com",
	   false, ""),
	BAD("TO:<>", "empty path not allowed"),
	BAD("TO:<postmasterx>", "address needs a domain"),
	BAD("TO:<post.master>", "address needs a domain"),
	BAD("TO:<\"postmaster\">", "address needs a domain"),
	BAD("TO:<@relay.example:postmaster>", "address needs a domain"),
	BAD("TO:<user>", "address needs a domain"),
	BAD("TO:Postmaster", "path must be enclosed in <>"),
	BAD("FROM:<user@example.com>", "syntax: RCPT TO:<address>"),
	BAD("T", "syntax: RCPT TO:<address>"),
	BAD("TO<user@example.com>", "syntax: RCPT TO:<address>"),
};

/* params_str - the parsed parameters as "KEY=value KEY …". */
static void params_str(const struct smtp_path_args *a, buf *b)
{
	for (size_t i = 0; i < a->n_params; i++) {
		if (i > 0)
			buf_putc(b, ' ');
		buf_puts(b, a->params[i].keyword);
		if (a->params[i].value != NULL) {
			buf_putc(b, '=');
			buf_puts(b, a->params[i].value);
		}
	}
}

static void check_path_cases(const struct path_case *cases, size_t n, bool mail)
{
	for (size_t i = 0; i < n; i++) {
		const struct path_case *c = &cases[i];
		struct smtp_path_args a;
		const char *err = NULL;
		int ret = mail ? smtp_parse_mail_from(c->args, &a, &err)
			       : smtp_parse_rcpt_to(c->args, &a, &err);
		int before = test_failed_checks;

		CHECK(ret == (c->ok ? 0 : -1));
		if (ret == 0 && c->ok) {
			buf pb;

			CHECK(a.path.null == (c->address == NULL));
			if (c->address != NULL) {
				CHECK_STREQ(a.path.address, c->address);
				CHECK_STREQ(a.path.localpart, c->localpart);
			} else {
				CHECK(a.path.address == NULL && a.path.localpart == NULL);
			}
			if (c->domain != NULL)
				CHECK_STREQ(a.path.domain, c->domain);
			else
				CHECK(a.path.domain == NULL);
			CHECK(a.path.utf8 == c->utf8);
			buf_init(&pb, 0);
			params_str(&a, &pb);
			CHECK_STREQ(buf_cstr(&pb), c->params);
			buf_free(&pb);
		} else if (ret != 0) {
			CHECK(err != NULL);
			if (c->error != NULL)
				CHECK_STREQ(err, c->error);
			/* a failed parse leaves nothing behind */
			CHECK(a.path.address == NULL && a.params == NULL && a.n_params == 0);
		}
		if (test_failed_checks != before)
			fprintf(stderr, "  in %s case %zu: %s (err %s)\n", mail ? "MAIL" : "RCPT", i,
				c->args, err ? err : "-");
		smtp_path_args_free(&a);
		CHECK(a.params == NULL && a.path.address == NULL);
	}
}

static void test_mail_from(void)
{
	check_path_cases(mail_cases, sizeof(mail_cases) / sizeof(mail_cases[0]), true);
}

static void test_rcpt_to(void)
{
	check_path_cases(rcpt_cases, sizeof(rcpt_cases) / sizeof(rcpt_cases[0]), false);
}

/* test_mail_null_with_keyword - a null path with a bare keyword parameter. */
static void test_mail_null_with_keyword(void)
{
	struct smtp_path_args a;
	const char *err;

	CHECK(smtp_parse_mail_from("FROM:<> x", &a, &err) == 0);
	CHECK(a.path.null && a.n_params == 1);
	CHECK_STREQ(a.params[0].keyword, "X");
	CHECK(a.params[0].value == NULL);
	smtp_path_args_free(&a);
}

/* mail_of - parse "FROM:<local@domain>" built from repeated characters. */
static int mail_of(size_t llen, size_t dlen, const char **err)
{
	buf b;
	struct smtp_path_args a;
	int ret;

	buf_init(&b, 0);
	buf_puts(&b, "FROM:<");
	for (size_t i = 0; i < llen; i++)
		buf_putc(&b, 'l');
	buf_putc(&b, '@');
	/* labels of at most 63 octets: "ddd…d.ddd…" */
	for (size_t i = 0; i < dlen; i++)
		buf_putc(&b, (i % 64 == 63 && i + 1 < dlen) ? '.' : 'd');
	buf_putc(&b, '>');
	ret = smtp_parse_mail_from(buf_cstr(&b), &a, err);
	if (ret == 0) {
		CHECK(strlen(a.path.localpart) == llen);
		CHECK(strlen(a.path.domain) == dlen);
	}
	smtp_path_args_free(&a);
	buf_free(&b);
	return ret;
}

/* test_path_limits - local part 64, domain 255, path 256 (RFC 5321 §4.5.3.1). */
static void test_path_limits(void)
{
	const char *err = NULL;
	struct smtp_path_args a;
	buf b;

	CHECK(mail_of(64, 10, &err) == 0);
	CHECK(mail_of(65, 10, &err) == -1);
	CHECK_STREQ(err, "local part too long");
	/* path = "<" + local + "@" + domain + ">" */
	CHECK(mail_of(64, 189, &err) == 0);
	CHECK(mail_of(64, 190, &err) == -1);
	CHECK_STREQ(err, "path too long");
	CHECK(mail_of(1, 252, &err) == 0);
	CHECK(mail_of(1, 253, &err) == -1);
	CHECK_STREQ(err, "path too long");
	CHECK(mail_of(1, 256, &err) == -1);
	CHECK_STREQ(err, "domain too long");

	/* a quoted local part counts with its quotes */
	buf_init(&b, 0);
	buf_puts(&b, "FROM:<\"");
	for (int i = 0; i < 62; i++)
		buf_putc(&b, 'q');
	buf_puts(&b, "\"@example.com>");
	CHECK(smtp_parse_mail_from(buf_cstr(&b), &a, &err) == 0);
	smtp_path_args_free(&a);
	buf_reset(&b);
	buf_puts(&b, "FROM:<\"");
	for (int i = 0; i < 63; i++)
		buf_putc(&b, 'q');
	buf_puts(&b, "\"@example.com>");
	CHECK(smtp_parse_mail_from(buf_cstr(&b), &a, &err) == -1);
	CHECK_STREQ(err, "local part too long");

	/* exactly 16 parameters */
	buf_reset(&b);
	buf_puts(&b, "FROM:<> ");
	for (int i = 0; i < 16; i++)
		buf_printf(&b, " P%d=%d", i, i);
	CHECK(smtp_parse_mail_from(buf_cstr(&b), &a, &err) == 0);
	CHECK(a.n_params == 16);
	CHECK_STREQ(a.params[15].keyword, "P15");
	CHECK_STREQ(a.params[15].value, "15");
	smtp_path_args_free(&a);
	buf_puts(&b, " P16");
	CHECK(smtp_parse_mail_from(buf_cstr(&b), &a, &err) == -1);
	CHECK_STREQ(err, "too many parameters");
	buf_free(&b);
}

/* ---- HELO, BDAT ---- */

static const struct {
	const char *args;
	bool ok;
} helo_cases[] = {
	{ "example.com", true },
	{ "MX.Example.COM", true },
	{ "localhost", true },
	{ "mail.example.com  ", true },
	{ "[192.0.2.1]", true },
	{ "[IPv6:2001:db8::1]", true },
	{ "b\xc3\xbc" "cher.example", true },
	{ "", false },
	{ " ", false },
	{ " example.com", false },
	{ "example.com extra", false },
	{ "example.com\t", false },
	{ "exa mple", false },
	{ "[1.2.3]", false },
	{ "[192.0.2.1", false },
	{ "192.0.2.1]", false },
	{ "-bad.example", false },
	{ "example..com", false },
	{ "example.com.", false },
	{ "under_score.example", false },
	{ "\xff.example", false },
	{ "<example.com>", false },
};

static void test_helo(void)
{
	char longname[300];

	for (size_t i = 0; i < sizeof(helo_cases) / sizeof(helo_cases[0]); i++) {
		const char *err = NULL;
		int ret = smtp_parse_helo(helo_cases[i].args, &err);

		if (ret != (helo_cases[i].ok ? 0 : -1))
			fprintf(stderr, "  HELO case %zu \"%s\": %d\n", i, helo_cases[i].args, ret);
		CHECK(ret == (helo_cases[i].ok ? 0 : -1));
		if (ret < 0)
			CHECK(err != NULL);
	}
	/* 255 octets fit, 256 do not */
	for (size_t i = 0; i < 256; i++)
		longname[i] = (i % 50 == 49) ? '.' : 'h';
	longname[255] = '\0';
	const char *err = NULL;
	CHECK(smtp_parse_helo(longname, &err) == 0);
	longname[255] = 'h';
	longname[256] = '\0';
	CHECK(smtp_parse_helo(longname, &err) == -1);
}

static const struct {
	const char *args;
	bool ok;
	uint64_t size;
	bool last;
} bdat_cases[] = {
	{ "0", true, 0, false },
	{ "100", true, 100, false },
	{ "100 LAST", true, 100, true },
	{ "100 last", true, 100, true },
	{ "0 LaSt", true, 0, true },
	{ "100  LAST  ", true, 100, true },
	{ "100 ", true, 100, false },
	{ "00012", true, 12, false },
	{ "9223372036854775807", true, 9223372036854775807ULL, false },
	{ "", false, 0, false },
	{ " 100", false, 0, false },
	{ "-1", false, 0, false },
	{ "+1", false, 0, false },
	{ "1e3", false, 0, false },
	{ "0x10", false, 0, false },
	{ "100LAST", false, 0, false },
	{ "100 LASTX", false, 0, false },
	{ "100 LAS", false, 0, false },
	{ "100 LAST X", false, 0, false },
	{ "100 FIRST", false, 0, false },
	{ "100\tLAST", false, 0, false },
	{ "LAST", false, 0, false },
	{ "9223372036854775808", false, 0, false },
	{ "18446744073709551615", false, 0, false },
	{ "18446744073709551616", false, 0, false },
	{ "000000000000000000000000001", false, 0, false },
};

static void test_bdat(void)
{
	for (size_t i = 0; i < sizeof(bdat_cases) / sizeof(bdat_cases[0]); i++) {
		const char *err = NULL;
		uint64_t size = 12345;
		bool last = false;
		int ret = smtp_parse_bdat(bdat_cases[i].args, &size, &last, &err);

		if (ret != (bdat_cases[i].ok ? 0 : -1))
			fprintf(stderr, "  BDAT case %zu \"%s\": %d\n", i, bdat_cases[i].args, ret);
		CHECK(ret == (bdat_cases[i].ok ? 0 : -1));
		if (ret == 0) {
			CHECK(size == bdat_cases[i].size);
			CHECK(last == bdat_cases[i].last);
		} else {
			CHECK(err != NULL);
		}
	}
}

/* ---- DATA / BDAT stream ---- */

struct data_run {
	int ret;
	size_t consumed;
	buf out; /* output of all feeds, then the held bytes if not finished */
	bool bare_eol, line_too_long;
	uint64_t lines;
};

enum feed_how { FEED_COPY, FEED_INPLACE, FEED_NULL };

/* run_data - feed in[0..len) in chunks ending at cuts[], each chunk in its own exact-size
 * allocation and the output in one the size of the chunk, so ASan sees any overrun. */
static void run_data(const char *in, size_t len, enum smtp_data_mode mode, size_t max_line,
		     const size_t *cuts, size_t ncuts, enum feed_how how, struct data_run *r)
{
	struct smtp_data_parser p;
	size_t pos = 0;

	smtp_data_init(&p, mode, max_line);
	memset(r, 0, sizeof(*r));
	buf_init(&r->out, 0);
	for (size_t k = 0; k <= ncuts && r->ret == 0; k++) {
		size_t end = k < ncuts && cuts != NULL ? cuts[k] : len;
		size_t n = end - pos, outlen = (size_t)-1, consumed = (size_t)-1;
		char *chunk = xmalloc(n);
		char *out = how == FEED_INPLACE ? chunk : how == FEED_NULL ? NULL : xmalloc(n);
		int ret;

		memcpy(chunk, in + pos, n);
		ret = smtp_data_feed(&p, chunk, n, out, &outlen, &consumed);
		CHECK(ret == 0 || ret == 1);
		CHECK(outlen <= n);
		CHECK(consumed <= n);
		if (ret == 0)
			CHECK(consumed == n);
		if (mode == SMTP_DATA_RAW) {
			CHECK(ret == 0);
			if (out != NULL)
				CHECK(outlen == n && memcmp(out, in + pos, n) == 0);
		}
		if (out != NULL)
			buf_append(&r->out, out, outlen);
		r->ret = ret;
		r->consumed += consumed;
		pos = end;
		if (out != chunk)
			free(out);
		free(chunk);
	}
	if (r->ret == 1) {
		char dummy[4];
		size_t outlen = 9, consumed = 9;
		char held[2];

		CHECK(smtp_data_held(&p, held) == 0);
		/* finished: stays finished */
		CHECK(smtp_data_feed(&p, "x\r\n", 3, dummy, &outlen, &consumed) == 1);
		CHECK(outlen == 0 && consumed == 0);
	} else {
		char held[2];
		size_t n = smtp_data_held(&p, held);

		CHECK(n <= 1);
		if (how != FEED_NULL)
			buf_append(&r->out, held, n);
		if (mode == SMTP_DATA_RAW)
			smtp_data_finish_raw(&p);
	}
	r->bare_eol = p.bare_eol;
	r->line_too_long = p.line_too_long;
	r->lines = p.lines;
}

/* data_run_eq - same results; output compared unless one run discarded it. */
static bool data_run_eq(const struct data_run *a, const struct data_run *b, bool cmp_out)
{
	return a->ret == b->ret && a->consumed == b->consumed && a->bare_eol == b->bare_eol &&
	       a->line_too_long == b->line_too_long && a->lines == b->lines &&
	       (!cmp_out ||
		(a->out.len == b->out.len && memcmp(buf_cstr((buf *)&a->out),
						    buf_cstr((buf *)&b->out), a->out.len) == 0));
}

static void print_bytes(const char *what, const char *s, size_t len)
{
	fprintf(stderr, "  %s: \"", what);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r')
			fputs("\\r", stderr);
		else if (c == '\n')
			fputs("\\n", stderr);
		else if (c < 32 || c > 126)
			fprintf(stderr, "\\x%02x", c);
		else
			fputc(c, stderr);
	}
	fprintf(stderr, "\" (%zu)\n", len);
}

/* check_splits - feeding in every split, one byte at a time, in place and with no output
 * buffer all agree with feeding it whole (*whole). Returns false (once) on a mismatch. */
static bool check_splits(const char *in, size_t len, enum smtp_data_mode mode, size_t max_line,
			 const struct data_run *whole)
{
	struct data_run r;
	size_t *cuts = xmalloc((len + 1) * sizeof(*cuts));
	bool ok = true;

	for (size_t k = 0; k <= len && ok; k++) {
		run_data(in, len, mode, max_line, &k, 1, FEED_COPY, &r);
		if (!data_run_eq(whole, &r, true)) {
			fprintf(stderr, "  split at %zu differs\n", k);
			ok = false;
		}
		buf_free(&r.out);
	}
	for (size_t k = 1; k < len; k++)
		cuts[k - 1] = k;
	run_data(in, len, mode, max_line, cuts, len ? len - 1 : 0, FEED_COPY, &r);
	if (ok && !data_run_eq(whole, &r, true)) {
		fprintf(stderr, "  byte at a time differs\n");
		print_bytes("bytewise output", r.out.data ? r.out.data : "", r.out.len);
		ok = false;
	}
	buf_free(&r.out);
	run_data(in, len, mode, max_line, cuts, len ? len - 1 : 0, FEED_INPLACE, &r);
	if (ok && !data_run_eq(whole, &r, true)) {
		fprintf(stderr, "  byte at a time in place differs\n");
		ok = false;
	}
	buf_free(&r.out);
	run_data(in, len, mode, max_line, NULL, 0, FEED_INPLACE, &r);
	if (ok && !data_run_eq(whole, &r, true)) {
		fprintf(stderr, "  in place differs\n");
		ok = false;
	}
	buf_free(&r.out);
	run_data(in, len, mode, max_line, NULL, 0, FEED_NULL, &r);
	if (ok && !data_run_eq(whole, &r, false)) {
		fprintf(stderr, "  NULL output differs\n");
		ok = false;
	}
	buf_free(&r.out);
	free(cuts);
	if (!ok)
		print_bytes("input", in, len);
	return ok;
}

struct data_case {
	const char *in;
	size_t len; /* 0: strlen(in) */
	enum smtp_data_mode mode;
	size_t max_line;
	int ret;
	size_t consumed; /* 0: all of it */
	const char *out;
	size_t outlen; /* 0: strlen(out) */
	bool bare_eol, line_too_long;
	uint64_t lines;
};

#define D SMTP_DATA_DOT
#define R SMTP_DATA_RAW

static const struct data_case data_cases[] = {
	/* plain messages */
	{ "Subject: x\r\n\r\nhello\r\n.\r\n", 0, D, 1000, 1, 0, "Subject: x\r\n\r\nhello\r\n", 0,
	  false, false, 3 },
	{ ".\r\n", 0, D, 1000, 1, 0, "", 0, false, false, 0 },
	{ "\r\n.\r\n", 0, D, 1000, 1, 0, "\r\n", 0, false, false, 1 },
	{ "a\r\n.\r\nQUIT\r\n", 0, D, 1000, 1, 6, "a\r\n", 0, false, false, 1 },
	{ "a\r\n.\r\n.\r\n", 0, D, 1000, 1, 6, "a\r\n", 0, false, false, 1 },
	{ "a\0b\r\n.\r\n", 8, D, 1000, 1, 0, "a\0b\r\n", 5, false, false, 1 },
	{ "a\xff\x80z\r\n.\r\n", 0, D, 0, 1, 0, "a\xff\x80z\r\n", 0, false, false, 1 },
	/* not finished yet */
	{ "", 0, D, 1000, 0, 0, "", 0, false, false, 0 },
	{ "a\r\n", 0, D, 1000, 0, 0, "a\r\n", 0, false, false, 1 },
	{ "a\r\n.", 0, D, 1000, 0, 0, "a\r\n", 0, false, false, 1 },
	{ "a\r\n.\r", 0, D, 1000, 0, 0, "a\r\n", 0, false, false, 1 },
	{ "a\r", 0, D, 1000, 0, 0, "a\r", 0, false, false, 0 },
	/* dot-stuffing */
	{ "..\r\n.\r\n", 0, D, 1000, 1, 0, ".\r\n", 0, false, false, 1 },
	{ "..a\r\n...\r\nb.\r\n.\r\n", 0, D, 1000, 1, 0, ".a\r\n..\r\nb.\r\n", 0, false, false,
	  3 },
	{ "a\r\n.b\r\n.\r\n", 0, D, 1000, 1, 0, "a\r\nb\r\n", 0, false, false, 2 },
	{ "a\r\n. \r\n.\r\n", 0, D, 1000, 1, 0, "a\r\n \r\n", 0, false, false, 2 },
	{ "a.\r\n.\r\n", 0, D, 1000, 1, 0, "a.\r\n", 0, false, false, 1 },
	{ "..\r\n", 0, D, 1000, 0, 0, ".\r\n", 0, false, false, 1 },
	/* SMTP smuggling: none of these end DATA */
	{ "a\n.\nMAIL FROM:<x@y.example>\r\n.\r\n", 0, D, 1000, 1, 0,
	  "a\n.\nMAIL FROM:<x@y.example>\r\n", 0, true, false, 1 },
	{ "a\r.\rMAIL FROM:<x@y.example>\r\n.\r\n", 0, D, 1000, 1, 0,
	  "a\r.\rMAIL FROM:<x@y.example>\r\n", 0, true, false, 1 },
	{ "a\n.\r\nMAIL FROM:<x@y.example>\r\n.\r\n", 0, D, 1000, 1, 0,
	  "a\n.\r\nMAIL FROM:<x@y.example>\r\n", 0, true, false, 2 },
	{ "a\r\n.\nMAIL FROM:<x@y.example>\r\n.\r\n", 0, D, 1000, 1, 0,
	  "a\r\n\nMAIL FROM:<x@y.example>\r\n", 0, true, false, 2 },
	{ "a\r.\r\nMAIL FROM:<x@y.example>\r\n.\r\n", 0, D, 1000, 1, 0,
	  "a\r.\r\nMAIL FROM:<x@y.example>\r\n", 0, true, false, 2 },
	{ "\n.\n", 0, D, 1000, 0, 0, "\n.\n", 0, true, false, 0 },
	{ "\r.\r", 0, D, 1000, 0, 0, "\r.\r", 0, true, false, 0 },
	{ "\n.\r\n", 0, D, 1000, 0, 0, "\n.\r\n", 0, true, false, 1 },
	{ "\r\n.\n", 0, D, 1000, 0, 0, "\r\n\n", 0, true, false, 1 },
	{ "\r.\r\n", 0, D, 1000, 0, 0, "\r.\r\n", 0, true, false, 1 },
	{ ".\n", 0, D, 1000, 0, 0, "\n", 0, true, false, 0 },
	{ ".\r.\r\n", 0, D, 1000, 0, 0, "\r.\r\n", 0, true, false, 1 },
	{ ".\r\r\n.\r\n", 0, D, 1000, 1, 0, "\r\r\n", 0, true, false, 1 },
	{ "\r\n.\rx\r\n.\r\n", 0, D, 1000, 1, 0, "\r\n\rx\r\n", 0, true, false, 2 },
	{ "x\r\n.\r\r\r\n.\r\n", 0, D, 1000, 1, 0, "x\r\n\r\r\r\n", 0, true, false, 2 },
	{ "a\n\r\n.\r\n", 0, D, 1000, 1, 0, "a\n\r\n", 0, true, false, 1 },
	/* bare CR / LF flags */
	{ "a\rb\r\n.\r\n", 0, D, 1000, 1, 0, "a\rb\r\n", 0, true, false, 1 },
	{ "a\nb\r\n.\r\n", 0, D, 1000, 1, 0, "a\nb\r\n", 0, true, false, 1 },
	{ "\r\r\n.\r\n", 0, D, 1000, 1, 0, "\r\r\n", 0, true, false, 1 },
	{ "a\r\n\n.\r\n", 0, D, 1000, 0, 0, "a\r\n\n.\r\n", 0, true, false, 2 },
	/* line length, CRLF included; the stuffing dot counts */
	{ "12345678\r\n.\r\n", 0, D, 10, 1, 0, "12345678\r\n", 0, false, false, 1 },
	{ "123456789\r\n.\r\n", 0, D, 10, 1, 0, "123456789\r\n", 0, false, true, 1 },
	{ "..345678\r\n.\r\n", 0, D, 10, 1, 0, ".345678\r\n", 0, false, false, 1 },
	{ "..3456789\r\n.\r\n", 0, D, 10, 1, 0, ".3456789\r\n", 0, false, true, 1 },
	{ "1234567890", 0, D, 10, 0, 0, "1234567890", 0, false, false, 0 },
	{ "12345678901", 0, D, 10, 0, 0, "12345678901", 0, false, true, 0 },
	{ "1234\n5678\r\n.\r\n", 0, D, 10, 1, 0, "1234\n5678\r\n", 0, true, true, 1 },
	{ "12345678\r\n12345678\r\n.\r\n", 0, D, 10, 1, 0, "12345678\r\n12345678\r\n", 0, false,
	  false, 2 },
	{ "123456789\r\n.\r\n", 0, D, 0, 1, 0, "123456789\r\n", 0, false, false, 1 },
	{ "1\r\n.\r\n", 0, D, 3, 1, 0, "1\r\n", 0, false, false, 1 },
	/* RAW (BDAT): no unstuffing, no terminator */
	{ "a\r\n.\r\nb\r\n", 0, R, 1000, 0, 0, "a\r\n.\r\nb\r\n", 0, false, false, 3 },
	{ "..x\r\n", 0, R, 1000, 0, 0, "..x\r\n", 0, false, false, 1 },
	{ "a\r", 0, R, 1000, 0, 0, "a\r", 0, true, false, 0 },
	{ "a\rb", 0, R, 1000, 0, 0, "a\rb", 0, true, false, 0 },
	{ "a\nb", 0, R, 1000, 0, 0, "a\nb", 0, true, false, 0 },
	{ "\n", 0, R, 1000, 0, 0, "\n", 0, true, false, 0 },
	{ "123456789\r\n", 0, R, 10, 0, 0, "123456789\r\n", 0, false, true, 1 },
	{ "12345678\r\n", 0, R, 10, 0, 0, "12345678\r\n", 0, false, false, 1 },
	{ "12345678901", 0, R, 10, 0, 0, "12345678901", 0, false, true, 0 },
	{ "", 0, R, 10, 0, 0, "", 0, false, false, 0 },
};

static void test_data_table(void)
{
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		size_t outlen = c->outlen ? c->outlen : strlen(c->out);
		struct data_run r;
		int before = test_failed_checks;

		run_data(c->in, len, c->mode, c->max_line, NULL, 0, FEED_COPY, &r);
		CHECK(r.ret == c->ret);
		CHECK(r.consumed == (c->consumed ? c->consumed : len));
		CHECK(r.out.len == outlen && memcmp(buf_cstr(&r.out), c->out, outlen) == 0);
		CHECK(r.bare_eol == c->bare_eol);
		CHECK(r.line_too_long == c->line_too_long);
		CHECK(r.lines == c->lines);
		CHECK(check_splits(c->in, len, c->mode, c->max_line, &r));
		if (test_failed_checks != before) {
			fprintf(stderr, "  in data case %zu: ret %d consumed %zu bare %d long %d "
					"lines %llu\n",
				i, r.ret, r.consumed, r.bare_eol, r.line_too_long,
				(unsigned long long)r.lines);
			print_bytes("input", c->in, len);
			print_bytes("output", buf_cstr(&r.out), r.out.len);
		}
		buf_free(&r.out);
	}
}

/* test_data_held - ".\r" ending one feed and "x" starting the next: the feed of one byte
 * may output one byte; the other comes out with the next feed. */
static void test_data_held(void)
{
	struct smtp_data_parser p;
	char out[16], held[2];
	size_t outlen, consumed;

	smtp_data_init(&p, SMTP_DATA_DOT, 1000);
	CHECK(smtp_data_feed(&p, "a\r\n.\r", 5, out, &outlen, &consumed) == 0);
	CHECK(outlen == 3 && memcmp(out, "a\r\n", 3) == 0 && consumed == 5);
	CHECK(smtp_data_held(&p, held) == 0);
	CHECK(smtp_data_feed(&p, "x", 1, out, &outlen, &consumed) == 0);
	CHECK(outlen == 1 && out[0] == '\r' && consumed == 1);
	CHECK(smtp_data_held(&p, held) == 1 && held[0] == 'x');
	CHECK(p.bare_eol);
	CHECK(smtp_data_feed(&p, "yz", 2, out, &outlen, &consumed) == 0);
	CHECK(outlen == 2 && memcmp(out, "xy", 2) == 0);
	CHECK(smtp_data_held(&p, held) == 1 && held[0] == 'z');
	CHECK(smtp_data_feed(&p, "\r\n.", 3, out, &outlen, &consumed) == 0);
	CHECK(outlen == 3 && memcmp(out, "z\r\n", 3) == 0);
	CHECK(smtp_data_held(&p, held) == 0);
	CHECK(smtp_data_feed(&p, "\r\nNOOP\r\n", 8, out, &outlen, &consumed) == 1);
	CHECK(outlen == 0 && consumed == 2);

	/* the same in one go: nothing held */
	smtp_data_init(&p, SMTP_DATA_DOT, 1000);
	CHECK(smtp_data_feed(&p, "a\r\n.\rxyz\r\n.\r\n", 13, out, &outlen, &consumed) == 1);
	CHECK(outlen == 9 && memcmp(out, "a\r\n\rxyz\r\n", 9) == 0 && consumed == 13);

	/* finish_raw: a CR at the end of one chunk and LF at the start of the next is fine */
	smtp_data_init(&p, SMTP_DATA_RAW, 1000);
	CHECK(smtp_data_feed(&p, "a\r", 2, out, &outlen, &consumed) == 0);
	CHECK(!p.bare_eol);
	CHECK(smtp_data_feed(&p, "\nb\r\n", 4, NULL, &outlen, &consumed) == 0);
	CHECK(outlen == 4 && consumed == 4);
	smtp_data_finish_raw(&p);
	CHECK(!p.bare_eol && p.lines == 2);
}

/* ---- reference model: the rules written over a whole buffer ---- */

struct ref_state {
	struct data_run *r;
	size_t max_line, line_len;
};

static void ref_count(struct ref_state *s, size_t n)
{
	s->line_len += n;
	if (s->max_line != 0 && s->line_len > s->max_line)
		s->r->line_too_long = true;
}

/* ref_data - what the DATA/BDAT stream means, given all of it at once. */
static void ref_data(const char *in, size_t len, enum smtp_data_mode mode, size_t max_line,
		     struct data_run *r)
{
	struct ref_state s;
	size_t i = 0;
	bool bol = true, trailing_cr = false;

	memset(r, 0, sizeof(*r));
	buf_init(&r->out, 0);
	s.r = r;
	s.max_line = max_line;
	s.line_len = 0;
	while (i < len) {
		char c = in[i];

		if (mode == SMTP_DATA_DOT && bol && c == '.') {
			if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
				r->ret = 1;
				i += 3;
				break;
			}
			if (i + 1 == len || (in[i + 1] == '\r' && i + 2 == len)) {
				/* undecided: nothing output yet */
				ref_count(&s, len - i);
				i = len;
				break;
			}
			ref_count(&s, 1); /* stuffing dot, dropped */
			i++;
			bol = false;
			continue;
		}
		bol = false;
		if (c == '\r' && i + 1 < len && in[i + 1] == '\n') {
			buf_append(&r->out, "\r\n", 2);
			ref_count(&s, 2);
			r->lines++;
			s.line_len = 0;
			bol = true;
			i += 2;
			continue;
		}
		if (c == '\r' && i + 1 == len)
			trailing_cr = true;
		else if (c == '\r' || c == '\n')
			r->bare_eol = true;
		buf_putc(&r->out, c);
		ref_count(&s, 1);
		i++;
	}
	if (mode == SMTP_DATA_RAW && trailing_cr)
		r->bare_eol = true;
	r->consumed = i;
}

/* test_data_exhaustive - every string of up to 7 octets over ".\r\na" in both modes and
 * several limits: the parser, fed whole and in every split, agrees with ref_data. */
static void test_data_exhaustive(void)
{
	static const char alphabet[] = ".\r\na";
	static const size_t limits[] = { 0, 3, 4 };
	char in[8];
	int failures = 0;

	for (size_t len = 0; len <= 7 && failures < 5; len++) {
		size_t total = 1;

		for (size_t k = 0; k < len; k++)
			total *= 4;
		for (size_t n = 0; n < total && failures < 5; n++) {
			size_t v = n;

			for (size_t k = 0; k < len; k++, v /= 4)
				in[k] = alphabet[v % 4];
			for (int mode = 0; mode < 2; mode++) {
				for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
					enum smtp_data_mode m = mode ? SMTP_DATA_RAW : SMTP_DATA_DOT;
					struct data_run want, got;
					bool ok;

					ref_data(in, len, m, limits[l], &want);
					run_data(in, len, m, limits[l], NULL, 0, FEED_COPY, &got);
					ok = data_run_eq(&want, &got, true);
					if (!ok) {
						fprintf(stderr, "  differs from the reference (mode %d max %zu)\n",
							mode, limits[l]);
						print_bytes("input", in, len);
						print_bytes("want", buf_cstr(&want.out), want.out.len);
						print_bytes("got", buf_cstr(&got.out), got.out.len);
					}
					/* the splits take long: only the short ones all, or on mismatch */
					if (ok && (len <= 5 || n % 7 == 0))
						ok = check_splits(in, len, m, limits[l], &got);
					CHECK(ok);
					failures += !ok;
					buf_free(&want.out);
					buf_free(&got.out);
				}
			}
		}
	}
}

/* test_data_random - longer random streams, cut at random points, against ref_data. */
static void test_data_random(void)
{
	static const char alphabet[] = ".\r\nab\0";
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	char in[64];
	int failures = 0;

	for (int iter = 0; iter < 20000 && failures < 5; iter++) {
		size_t len, cuts[3];
		enum smtp_data_mode m;
		size_t max_line;
		struct data_run want, got;
		bool ok;

		/* xorshift64 */
#define RND() (seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17, seed)
		len = (size_t)(RND() % sizeof(in));
		for (size_t k = 0; k < len; k++) {
			uint64_t x = RND() % 16;
			/* mostly CRLF pairs and dots, so that terminators do occur */
			if (x < 4 && k + 1 < len) {
				in[k++] = '\r';
				in[k] = '\n';
			} else {
				in[k] = alphabet[x % 6];
			}
		}
		m = RND() % 2 ? SMTP_DATA_RAW : SMTP_DATA_DOT;
		max_line = (size_t)(RND() % 12);
		if (max_line < 3)
			max_line = 0;
		for (int k = 0; k < 3; k++)
			cuts[k] = (size_t)(RND() % (len + 1));
		/* sorted cut points */
		for (int a = 0; a < 3; a++)
			for (int b = a + 1; b < 3; b++)
				if (cuts[b] < cuts[a]) {
					size_t t = cuts[a];
					cuts[a] = cuts[b];
					cuts[b] = t;
				}
#undef RND
		ref_data(in, len, m, max_line, &want);
		run_data(in, len, m, max_line, cuts, 3, FEED_COPY, &got);
		ok = data_run_eq(&want, &got, true);
		if (!ok) {
			fprintf(stderr, "  random: cuts %zu %zu %zu mode %d max %zu\n", cuts[0],
				cuts[1], cuts[2], (int)m, max_line);
			print_bytes("input", in, len);
			print_bytes("want", buf_cstr(&want.out), want.out.len);
			print_bytes("got", buf_cstr(&got.out), got.out.len);
		}
		CHECK(ok);
		failures += !ok;
		buf_free(&want.out);
		buf_free(&got.out);
	}
}

/* test_data_large - a big message in odd-sized chunks (the copy fast path). */
static void test_data_large(void)
{
	buf msg, want, got;
	struct smtp_data_parser p;
	size_t pos = 0, step = 1;

	buf_init(&msg, 0);
	buf_init(&want, 0);
	buf_init(&got, 0);
	for (int i = 0; i < 5000; i++) {
		buf_printf(&msg, "%sline %d of the message with some text\r\n", i % 10 ? "" : "..",
			   i);
		buf_printf(&want, "%sline %d of the message with some text\r\n", i % 10 ? "" : ".",
			   i);
	}
	buf_puts(&msg, ".\r\n");
	smtp_data_init(&p, SMTP_DATA_DOT, 1000);
	for (;;) {
		size_t n = step < msg.len - pos ? step : msg.len - pos, outlen, consumed;
		char *out = xmalloc(n);
		int ret = smtp_data_feed(&p, msg.data + pos, n, out, &outlen, &consumed);

		buf_append(&got, out, outlen);
		free(out);
		pos += consumed;
		step = step * 7 % 1021 + 1;
		if (ret == 1 || n == 0)
			break;
	}
	CHECK(pos == msg.len);
	CHECK(got.len == want.len && memcmp(got.data, want.data, want.len) == 0);
	CHECK(p.lines == 5000 && !p.bare_eol && !p.line_too_long);
	buf_free(&msg);
	buf_free(&want);
	buf_free(&got);
}

TEST_MAIN(TEST(test_verbs), TEST(test_verbs_long), TEST(test_mail_from), TEST(test_rcpt_to),
	  TEST(test_mail_null_with_keyword), TEST(test_path_limits), TEST(test_helo),
	  TEST(test_bdat), TEST(test_data_table), TEST(test_data_held),
	  TEST(test_data_exhaustive), TEST(test_data_random), TEST(test_data_large))
