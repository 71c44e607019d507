/* test_http - the HTTP role's hand-written scans (http/parse): ACME tokens, Host headers,
 * addresses, the emailaddress query parameter, the autodiscover body; and the documents of
 * http/autoconfig (escaping, only configured listeners, the MTA-STS policy text) */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "http/autoconfig.h"
#include "http/parse.h"
#include "test.h"

static void test_acme_token(void)
{
	static const char *const good[] = { "a", "AbC-_09", "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0" };
	static const char *const bad[] = { "", ".", "..", "a.b", "../x", "a/b", "a%2Fb", "a b",
					   "a\nb", "ä", "a=", "a+b", "/a", "\\a" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CHECK(http_acme_token_valid(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!http_acme_token_valid(bad[i]));
	char t[HTTP_ACME_TOKEN_MAX + 2];
	memset(t, 'x', sizeof(t));
	t[HTTP_ACME_TOKEN_MAX] = '\0';
	CHECK(http_acme_token_valid(t));
	t[HTTP_ACME_TOKEN_MAX] = 'x';
	t[HTTP_ACME_TOKEN_MAX + 1] = '\0';
	CHECK(!http_acme_token_valid(t));
}

static void test_host_domain(void)
{
	char *domains[] = { "example.test", "other.test", NULL };
	CHECK_STREQ(http_host_domain("mta-sts.example.test", "mta-sts.", domains, 2), "example.test");
	CHECK_STREQ(http_host_domain("MTA-STS.Other.TEST:443", "mta-sts.", domains, 2), "other.test");
	CHECK_STREQ(http_host_domain("mta-sts.example.test.", "mta-sts.", domains, 2), "example.test");
	CHECK_STREQ(http_host_domain("example.test", "", domains, 2), "example.test");
	CHECK(http_host_domain("mta-sts.", "mta-sts.", domains, 2) == NULL);
	CHECK(http_host_domain("mta-sts.evil.test", "mta-sts.", domains, 2) == NULL);
	CHECK(http_host_domain("mta-sts.example.test.evil", "mta-sts.", domains, 2) == NULL);
	CHECK(http_host_domain("xmta-sts.example.test", "mta-sts.", domains, 2) == NULL);
	CHECK(http_host_domain("example.test", "mta-sts.", domains, 2) == NULL);
	CHECK(http_host_domain("", "", domains, 2) == NULL);
	CHECK(http_host_domain("[::1]:80", "", domains, 2) == NULL);
	CHECK(http_host_domain("example.test:80:90", "", domains, 2) == NULL);
	CHECK(http_host_domain("sub.example.test", "", domains, 2) == NULL);
}

static void test_email(void)
{
	const char *d = NULL;
	CHECK(http_email_valid("alice@example.test", &d) && !strcmp(d, "example.test"));
	CHECK(http_email_valid("a.b+c@Example.TEST", &d) && !strcmp(d, "Example.TEST"));
	CHECK(http_email_valid("j\xc3\xb6rg@example.test", &d));
	static const char *const bad[] = { "", "@", "a@", "@b.test", "a@@b.test", "a@b@c.test",
		"a b@c.test", "<a>@c.test", "a\"@c.test", "a&amp;@c.test", "a'@c.test",
		"a@c..test", "a@.c.test", "a@c.test.", "a@-c.test", "a@c_d.test", "a@c test",
		"\xff@c.test", "a\x01@c.test", "a@c.test\n", "noat" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!http_email_valid(bad[i], &d));
	char lng[400];
	memset(lng, 'a', 65);
	strcpy(lng + 65, "@c.test");
	CHECK(!http_email_valid(lng, &d));	/* local part over 64 */
	memset(lng, 'a', sizeof(lng));
	lng[0] = 'x';
	lng[1] = '@';
	lng[300] = '\0';
	CHECK(!http_email_valid(lng, &d));	/* over 254 */
}

static void test_query_param(void)
{
	char out[64];
	CHECK(http_query_param("emailaddress=a%40b.test", "emailaddress", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "a@b.test");
	CHECK(http_query_param("x=1&emailaddress=a@b.test&y", "emailaddress", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "a@b.test");
	CHECK(http_query_param("emailaddress=a%2Bb%40c", "emailaddress", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "a+b@c");
	CHECK(http_query_param("emailaddress=a+b", "emailaddress", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "a b");
	CHECK(http_query_param("emailaddress=", "emailaddress", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "");
	CHECK(http_query_param("", "emailaddress", out, sizeof(out)) == 0);
	CHECK(http_query_param("emailaddressx=1", "emailaddress", out, sizeof(out)) == 0);
	CHECK(http_query_param("xemailaddress=1", "emailaddress", out, sizeof(out)) == 0);
	CHECK(http_query_param("emailaddress", "emailaddress", out, sizeof(out)) == 0);
	CHECK(http_query_param("&&&", "emailaddress", out, sizeof(out)) == 0);
	/* the first one counts */
	CHECK(http_query_param("emailaddress=a&emailaddress=b", "emailaddress", out, 64) == 1);
	CHECK_STREQ(out, "a");
	/* bad escapes, NUL, too long */
	CHECK(http_query_param("emailaddress=a%4", "emailaddress", out, sizeof(out)) == -1);
	CHECK(http_query_param("emailaddress=a%", "emailaddress", out, sizeof(out)) == -1);
	CHECK(http_query_param("emailaddress=a%zz", "emailaddress", out, sizeof(out)) == -1);
	CHECK(http_query_param("emailaddress=a%00b", "emailaddress", out, sizeof(out)) == -1);
	CHECK(http_query_param("emailaddress=a%4&x=1", "emailaddress", out, sizeof(out)) == -1);
	CHECK(http_query_param("emailaddress=abcd", "emailaddress", out, 5) == 1);
	CHECK(http_query_param("emailaddress=abcde", "emailaddress", out, 5) == -1);
	CHECK(http_query_param("emailaddress=abc%41", "emailaddress", out, 5) == 1);
	CHECK_STREQ(out, "abcA");
	CHECK(http_query_param("emailaddress=x", "emailaddress", out, 0) == -1);
}

/* scan - http_autodiscover_email over a copy of exactly len bytes (no NUL after it: ASan
 * sees any read beyond) */
static int scan(const char *text, char *out, size_t outsz)
{
	size_t len = strlen(text);
	char *copy = malloc(len ? len : 1);
	memcpy(copy, text, len);
	int r = http_autodiscover_email(copy, len, out, outsz);
	free(copy);
	return r;
}

static void test_autodiscover_body(void)
{
	char out[HTTP_EMAIL_MAX + 1];
	const char *req =
		"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<Autodiscover xmlns=\"http://schemas."
		"microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\r\n<Request>\r\n"
		"<EMailAddress>alice@example.test</EMailAddress>\r\n<AcceptableResponseSchema>"
		"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
		"</AcceptableResponseSchema>\r\n</Request>\r\n</Autodiscover>\r\n";
	CHECK(scan(req, out, sizeof(out)) == 1);
	CHECK_STREQ(out, "alice@example.test");
	CHECK(scan("<emailaddress> \r\n bob@x.test\t</EMAILADDRESS>", out, sizeof(out)) == 1);
	CHECK_STREQ(out, "bob@x.test");
	CHECK(scan("", out, sizeof(out)) == 0);
	CHECK(scan("<Request></Request>", out, sizeof(out)) == 0);
	CHECK(scan("<EMailAddress", out, sizeof(out)) == 0);
	CHECK(scan("<EMailAddress>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>a@b.test", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>a@b.test</EMail", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>a@b.test</Other>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress></EMailAddress>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>   </EMailAddress>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>a&amp;b@c.test</EMailAddress>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress><x/>a@c.test</EMailAddress>", out, sizeof(out)) == -1);
	CHECK(scan("<EMailAddress>abcd</EMailAddress>", out, 5) == 1);
	CHECK(scan("<EMailAddress>abcde</EMailAddress>", out, 5) == -1);
	/* a NUL inside the value */
	const char nul[] = "<EMailAddress>a\0b@c.test</EMailAddress>";
	CHECK(http_autodiscover_email(nul, sizeof(nul) - 1, out, sizeof(out)) == -1);
	/* every prefix of a good request: found or not, never beyond len (ASan) */
	size_t len = strlen(req);
	for (size_t i = 0; i <= len; i++) {
		char *copy = malloc(i ? i : 1);
		memcpy(copy, req, i);
		int r = http_autodiscover_email(copy, i, out, sizeof(out));
		CHECK(r >= -1 && r <= 1);
		free(copy);
	}
}

static char *render(void (*f)(struct evbuffer *, const struct tern_config *, const char *),
		    const struct tern_config *c, const char *arg)
{
	struct evbuffer *b = evbuffer_new();
	f(b, c, arg);
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static void test_documents(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string("t.conf",
		"data_dir = /x\ndomains = example.test\nhostname = mx.example.test\n"
		"mta_sts_mode = enforce\nmta_sts_max_age = 86400\n"
		"[listen]\nimaps = 0.0.0.0:993\npop3 = [::]:110\nsubmission = 0.0.0.0:587\n", &err);
	CHECK(c != NULL);
	if (c == NULL)
		return;
	char *x = render(autoconfig_thunderbird, c, "example.test");
	CHECK(strstr(x, "<incomingServer type=\"imap\">\n      <hostname>mx.example.test</hostname>\n"
			"      <port>993</port>\n      <socketType>SSL</socketType>") != NULL);
	CHECK(strstr(x, "<incomingServer type=\"pop3\">\n      <hostname>mx.example.test</hostname>\n"
			"      <port>110</port>\n      <socketType>STARTTLS</socketType>") != NULL);
	CHECK(strstr(x, "<port>143</port>") == NULL);	/* imap is not configured */
	CHECK(strstr(x, "<outgoingServer type=\"smtp\">\n      <hostname>mx.example.test</hostname>\n"
			"      <port>587</port>\n      <socketType>STARTTLS</socketType>") != NULL);
	free(x);
	x = render(autoconfig_outlook, c, "a'b<&>\"@example.test");
	CHECK(strstr(x, "<LoginName>a&apos;b&lt;&amp;&gt;&quot;@example.test</LoginName>") != NULL);
	CHECK(strstr(x, "<Type>IMAP</Type>") != NULL && strstr(x, "<Type>POP3</Type>") != NULL);
	CHECK(strstr(x, "<Encryption>TLS</Encryption>") != NULL);
	free(x);
	x = render(autoconfig_apple, c, "a&b@example.test");
	CHECK(strstr(x, "<string>a&amp;b@example.test</string>") != NULL);
	CHECK(strstr(x, "a&b") == NULL);
	free(x);
	struct evbuffer *b = evbuffer_new();
	autoconfig_mta_sts(b, c);
	size_t n = evbuffer_get_length(b);
	char policy[256];
	CHECK(n < sizeof(policy));
	evbuffer_remove(b, policy, n);
	policy[n] = '\0';
	CHECK_STREQ(policy, "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n");
	evbuffer_free(b);
	config_free(&c);
}

static void test_config_keys(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string("t.conf",
		"data_dir = /x\ndomains = a.test\n[listen]\nmetrics = 9425\nhttp = 0.0.0.0:80\n", &err);
	CHECK(c != NULL && c->listen[ROLE_METRICS].enabled);
	if (c != NULL) {
		CHECK_STREQ(c->listen[ROLE_METRICS].text, "127.0.0.1:9425");
		CHECK(c->mta_sts_mode == MTA_STS_TESTING && c->mta_sts_max_age == 604800);
		CHECK(c->acme_challenge_dir != NULL && c->acme_challenge_dir[0] == '/');
		CHECK(strstr(c->acme_challenge_dir, "/acme-challenge") != NULL);
		config_free(&c);
	}
	c = config_load_string("t.conf", "data_dir = /x\ndomains = a.test\n[listen]\nmetrics = yes\n",
			       &err);
	CHECK(c != NULL);
	if (c != NULL) {
		CHECK_STREQ(c->listen[ROLE_METRICS].text, METRICS_DEFAULT_LISTEN);
		config_free(&c);
	}
	static const char *const bad[] = {
		"data_dir = /x\ndomains = a.test\nmta_sts_mode = strict\n",
		"data_dir = /x\ndomains = a.test\nmta_sts_max_age = 0\n",
		"data_dir = /x\ndomains = a.test\n[listen]\nmetrics = 99999\n",
		"data_dir = /x\ndomains = a.test\n[listen]\nmetrics = no\n",
		"data_dir = /x\ndomains = a.test\n[listen]\nhttp = 80\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		c = config_load_string("t.conf", bad[i], &err);
		CHECK(c == NULL && err != NULL);
		free(err);
		config_free(&c);
	}
}

TEST_MAIN(TEST(test_acme_token), TEST(test_host_domain), TEST(test_email), TEST(test_query_param),
	  TEST(test_autodiscover_body), TEST(test_documents), TEST(test_config_keys))
