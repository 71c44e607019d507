/* test_config - the config reader: good files, every kind of bad value, nasty bytes */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "test.h"

static const char good[] =
	"# a comment\n"
	"hostname = mx.example.test   # trailing comment\n"
	"data_dir = /var/lib/tern\n"
	"domains = Example.TEST, other.test\n"
	"user = tern\n"
	"max_message_size = 1048576\n"
	"received_show_auth = yes\n"
	"\n"
	"[listen]\n"
	"smtp = 0.0.0.0:25\n"
	"submission = [::1]:587\n"
	"[tls]\n"
	"cert = /etc/tern/cert.pem\n"
	"key = /etc/tern/key.pem\n"
	"[dns]\n"
	"servers = 127.0.0.1:5353\n"
	"[queue]\n"
	"mx_port = 2525\n"
	"[routes]\n"
	"example.org = 10.0.0.5:25\n";

static void test_good(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string("t.conf", good, &err);
	CHECK(c != NULL);
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_STREQ(c->hostname, "mx.example.test");
	CHECK_STREQ(c->data_dir, "/var/lib/tern");
	CHECK(c->n_domains == 2);
	CHECK_STREQ(c->domains[0], "example.test");
	CHECK(config_is_local_domain(c, "OTHER.test"));
	CHECK(!config_is_local_domain(c, "example.org"));
	CHECK(c->max_message_size == 1048576);
	CHECK(c->received_show_auth);
	CHECK(c->listen[ROLE_SMTP].enabled);
	CHECK(c->listen[ROLE_SUBMISSION].enabled);
	CHECK(!c->listen[ROLE_IMAP].enabled);
	CHECK(c->queue_mx_port == 2525);
	CHECK(c->n_routes == 1 && c->routes[0].port == 25);
	CHECK_STREQ(c->routes[0].host, "10.0.0.5");
	CHECK(c->smtp_max_recipients == 1000);	/* a default */
	/* the logins block's defaults: strict senders, no postmaster key */
	CHECK(c->login_free_failures_account == 10 && c->login_max_inflight == 256);
	CHECK(c->sender_login_match && !c->sender_login_match_header);
	CHECK(c->postmaster == NULL);
	config_free(&c);
	CHECK(c == NULL);
	c = config_load_string("t.conf", "data_dir=/x\ndomains=a.test\npostmaster = Root@A.test\n"
			       "sender_login_match = no\nlogin_max_inflight = 0\n", &err);
	CHECK(c != NULL && c->postmaster != NULL && strcmp(c->postmaster, "root@a.test") == 0);
	CHECK(c != NULL && !c->sender_login_match && c->login_max_inflight == 0);
	config_free(&c);
}

struct bad_case {
	const char *text;
	const char *error;	/* expected start of the message */
};

static void test_bad(void)
{
	static const struct bad_case cases[] = {
		{ "data_dir=/x\ndomains=a.test\nbogus = 1\n", "t.conf:3: bogus: unknown key" },
		{ "data_dir=/x\ndomains=a.test\nmax_message_size = 12abc\n", "t.conf:3: max_message_size:" },
		{ "data_dir=/x\ndomains=a.test\nmax_message_size = -5\n", "t.conf:3:" },
		{ "data_dir=/x\ndomains=a.test\nmax_message_size = 99999999999999999999999\n", "t.conf:3:" },
		{ "data_dir=/x\ndomains=a.test\nworkers = 65\n", "t.conf:3:" },
		{ "data_dir=/x\ndomains=a.test\ndebug = maybe\n", "t.conf:3: debug: expected yes or no" },
		{ "data_dir=/x\ndomains=a..test\n", "t.conf:2: domains:" },
		{ "data_dir=/x\ndomains=a.test\n[listen]\nsmtp = localhost:25\n", "t.conf:4: listen.smtp:" },
		{ "data_dir=/x\ndomains=a.test\n[listen]\nsmtp = 1.2.3.4:99999\n", "t.conf:4:" },
		{ "data_dir=/x\ndomains=a.test\n[listen]\nsmtp = 1.2.3.4\n", "t.conf:4:" },
		{ "data_dir=/x\ndomains=a.test\n[listen]\nfinger = 1.2.3.4:79\n", "t.conf:4: listen.finger:" },
		{ "data_dir=/x\ndomains=a.test\n[nosuch]\nx = 1\n", "t.conf:4: nosuch.x: unknown section" },
		{ "data_dir=/x\ndomains=a.test\n[listen\n", "t.conf:3: section header" },
		{ "data_dir=/x\ndomains=a.test\njust words\n", "t.conf:3: expected" },
		{ "data_dir=/x\ndomains=a.test\n= value\n", "t.conf:3: bad key" },
		{ "data_dir=/x\ndomains=a.test\nhostname =\n", "t.conf:3: hostname: empty value" },
		{ "domains=a.test\n", "t.conf: data_dir is not set" },
		{ "data_dir=/x\n", "t.conf: domains is not set" },
		{ "data_dir=/x\ndomains=a.test\n[tls]\ncert=/a\n", "t.conf: [tls] cert and key go together" },
		{ "data_dir=/x\ndomains=a.test\n[queue]\nmx_port = 0\n", "t.conf:4:" },
		{ "data_dir=/x\ndomains=a.test\n[routes]\nexample.org = nohost\n", "t.conf:4:" },
		{ "data_dir=/x\ndomains=a.test\npostmaster = root\n", "t.conf:3: postmaster:" },
		{ "data_dir=/x\ndomains=a.test\npostmaster = a@b@c.test\n", "t.conf:3: postmaster:" },
		{ "data_dir=/x\ndomains=a.test\npostmaster = <a@b.test>\n", "t.conf:3: postmaster:" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		struct tern_config *c = config_load_string("t.conf", cases[i].text, &err);
		CHECK(c == NULL);
		CHECK(err != NULL && strncmp(err, cases[i].error, strlen(cases[i].error)) == 0);
		if (err == NULL || strncmp(err, cases[i].error, strlen(cases[i].error)) != 0)
			fprintf(stderr, "case %zu: got \"%s\", want \"%s...\"\n", i, err ? err : "(null)",
				cases[i].error);
		free(err);
		config_free(&c);
	}
}

/* every prefix of a good file either loads or fails with a FILE:LINE message, never crashes */
static void test_prefixes_and_garbage(void)
{
	size_t len = strlen(good);
	for (size_t i = 0; i <= len; i++) {
		char *text = strndup(good, i);
		char *err = NULL;
		struct tern_config *c = config_load_string("p.conf", text, &err);
		CHECK(c != NULL || (err != NULL && strncmp(err, "p.conf", 6) == 0));
		config_free(&c);
		free(err);
		free(text);
	}
	char junk[600];
	unsigned seed = 7;
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(junk) - 1; i++) {
			seed = seed * 1103515245 + 12345;
			char ch = (char)((seed >> 16) & 0xff);
			junk[i] = ch == 0 ? '\n' : ch;
		}
		junk[sizeof(junk) - 1] = '\0';
		char *err = NULL;
		struct tern_config *c = config_load_string("j.conf", junk, &err);
		CHECK(c == NULL && err != NULL);
		config_free(&c);
		free(err);
	}
}

static void test_long_line(void)
{
	char *text = malloc(10000);
	memset(text, 'a', 9999);
	text[9999] = '\0';
	char *err = NULL;
	struct tern_config *c = config_load_string("l.conf", text, &err);
	CHECK(c == NULL);
	CHECK(err != NULL && strstr(err, "l.conf:1: line too long") != NULL);
	free(err);
	free(text);
}

static void test_dev(void)
{
	struct tern_config *c = config_dev();
	CHECK(c != NULL && c->listen[ROLE_SMTP].enabled && config_is_local_domain(c, "localhost"));
	CHECK(c->data_dir[0] == '/');
	config_free(&c);
}

/* test_inbound_keys - [inbound]: defaults, every key, bad values */
static void test_inbound_keys(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string("i.conf", "data_dir = /d\ndomains = a.test\n"
						   "hostname = mx.a.test\n", &err);
	CHECK(c != NULL && c->inbound_checks && c->dmarc_enforce && c->srs &&
	      !c->spf_reject_fail && c->srs_max_age == 21 && c->srs_secret == NULL &&
	      !c->srs_key_ready);
	CHECK(c != NULL && strcmp(config_authserv_id(c), "mx.a.test") == 0);
	config_free(&c);
	c = config_load_string("i.conf", "data_dir = /d\ndomains = a.test\n[inbound]\n"
			       "checks = no\nauthserv_id = auth.a.test\nspf_reject_fail = yes\n"
			       "dmarc_enforce = no\nsrs = no\nsrs_secret = 0123456789abcdefXYZ\n"
			       "srs_max_age = 7\n", &err);
	CHECK(c != NULL && !c->inbound_checks && c->spf_reject_fail && !c->dmarc_enforce &&
	      !c->srs && c->srs_max_age == 7);
	CHECK(c != NULL && strcmp(config_authserv_id(c), "auth.a.test") == 0);
	CHECK(c != NULL && c->srs_secret != NULL && strcmp(c->srs_secret, "0123456789abcdefXYZ") == 0);
	config_free(&c);
	static const char *const bad[] = {
		"[inbound]\nchecks = maybe\n", "[inbound]\nauthserv_id = a b\n",
		"[inbound]\nauthserv_id = a;b\n", "[inbound]\nsrs_secret = short\n",
		"[inbound]\nsrs_max_age = 0\n", "[inbound]\nsrs_max_age = 1001\n",
		"[inbound]\nnope = 1\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), "data_dir = /d\ndomains = a.test\n%s", bad[i]);
		err = NULL;
		c = config_load_string("i.conf", text, &err);
		CHECK(c == NULL && err != NULL);
		config_free(&c);
		free(err);
	}
}

/* the flood keys: defaults, derived caps, per-role session limits */
static void test_flood_limits(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string("f.conf",
		"data_dir = /d\ndomains = example.test\nline_timeout = 20\nlogin_timeout = 9\n", &err);
	CHECK(c != NULL);
	if (c == NULL)
		return;
	unsigned per, total;
	config_connection_caps(c, 1024, 2, &per, &total);
	CHECK(per == 480 && total == 960);	/* (1024 - 64) / 2, summed */
	config_connection_caps(c, 1048576, 4, &per, &total);
	CHECK(per == 20000 && total == 80000);
	c->max_connections_per_worker = 100;
	c->max_connections = 1000;
	config_connection_caps(c, 1024, 2, &per, &total);
	CHECK(per == 100 && total == 200);	/* never more than the workers hold */
	c->max_connections = 150;
	config_connection_caps(c, 1024, 2, &per, &total);
	CHECK(total == 150);
	const struct session_limits *smtp = &c->session_limits[ROLE_SMTP];
	const struct session_limits *imap = &c->session_limits[ROLE_IMAP];
	const struct session_limits *sub = &c->session_limits[ROLE_SUBMISSION];
	CHECK(smtp->line_timeout == 20 && imap->line_timeout == 20);
	CHECK(smtp->login_timeout == 0 && smtp->max_commands_before_login == 0);	/* MX */
	CHECK(sub->login_timeout == 9 && imap->login_timeout == 9);
	CHECK(imap->max_commands_before_login == 50 && imap->max_commands == 100000);
	CHECK(imap->min_rate == 1024);
	config_free(&c);
	/* line_timeout never outlasts the idle timeout */
	c = config_load_string("f.conf",
		"data_dir = /d\ndomains = example.test\nsmtp_timeout_command = 10\n", &err);
	CHECK(c != NULL && c->session_limits[ROLE_SMTP].line_timeout == 10);
	config_free(&c);
	c = config_load_string("f.conf", "data_dir = /d\ndomains = x.test\ntransfer_min_rate = 0\n",
			       &err);
	CHECK(c == NULL);
	free(err);
}

TEST_MAIN(TEST(test_flood_limits), TEST(test_good), TEST(test_bad), TEST(test_prefixes_and_garbage),
	  TEST(test_long_line), TEST(test_dev), TEST(test_inbound_keys))
