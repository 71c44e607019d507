/* test_arcseal - ARC sealing of forwarded copies in the runner (outbound/arcseal.c): which
 * envelope senders are our forwards, reading our Authentication-Results (payload and cv),
 * the key choice, and a whole seal made from generated keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/srs.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "outbound/arcseal.h"
#include "test.h"

static struct tern_config *config(void)
{
	char *err = NULL;
	struct tern_config *c = config_load_string(
		"a.conf", "data_dir=/x\ndomains = fwd.test second.test\nhostname = mx.fwd.test\n",
		&err);
	CHECK(c != NULL);
	free(err);
	memset(c->srs_key, 7, sizeof(c->srs_key));
	c->srs_key_ready = true;
	return c;
}

static void test_is_forward(void)
{
	struct tern_config *c = config();
	time_t now = time(NULL);
	char *a = srs_forward(c->srs_key, sizeof(c->srs_key), "alice@origin.test", "fwd.test", now);
	CHECK(a != NULL && strncmp(a, "SRS0=", 5) == 0);
	CHECK(arcseal_is_forward(c, a, now));
	/* another local domain of ours decodes the same way; case does not matter */
	char *b = srs_forward(c->srs_key, sizeof(c->srs_key), "alice@origin.test", "second.test",
			      now);
	CHECK(arcseal_is_forward(c, b, now));
	for (char *p = b; *p && *p != '@'; p++)
		*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
	CHECK(arcseal_is_forward(c, b, now));
	/* not ours: another domain, a changed hash, expired, plain addresses, the null sender */
	char *other = srs_forward(c->srs_key, sizeof(c->srs_key), "alice@origin.test",
				  "else.test", now);
	CHECK(!arcseal_is_forward(c, other, now));
	char *forged = strdup(a);
	forged[5] = forged[5] == 'A' ? 'B' : 'A';
	CHECK(!arcseal_is_forward(c, forged, now));
	CHECK(!arcseal_is_forward(c, a, now + (time_t)(c->srs_max_age + 2) * 86400));
	CHECK(!arcseal_is_forward(c, "alice@fwd.test", now));
	CHECK(!arcseal_is_forward(c, "", now));
	CHECK(!arcseal_is_forward(c, NULL, now));
	/* SRS off, or no key yet: nothing is a forward */
	c->srs = false;
	CHECK(!arcseal_is_forward(c, a, now));
	c->srs = true;
	c->srs_key_ready = false;
	CHECK(!arcseal_is_forward(c, a, now));
	free(a);
	free(b);
	free(other);
	free(forged);
	config_free(&c);
}

static void test_our_results(void)
{
	static const struct {
		const char *text;
		int ret;
		const char *ar, *cv;
	} cases[] = {
		{ "Authentication-Results: mx.fwd.test;\r\n\tspf=pass smtp.mailfrom=a@o.test;\r\n"
		  "\tdkim=none;\r\n\tdmarc=none;\r\n\tarc=pass (i=1 d=x.test) "
		  "smtp.remote-ip=1.2.3.4 header.oldest-pass=0\r\nReceived: x\r\n\r\nbody\r\n",
		  1, "spf=pass smtp.mailfrom=a@o.test; dkim=none; dmarc=none; arc=pass (i=1 "
		  "d=x.test) smtp.remote-ip=1.2.3.4 header.oldest-pass=0", "pass" },
		{ "Authentication-Results: MX.FWD.TEST; spf=fail smtp.mailfrom=a@o.test; arc=fail "
		  "(bad seal)\nReceived: x\n\nbody\n", 1,
		  "spf=fail smtp.mailfrom=a@o.test; arc=fail (bad seal)", "fail" },
		/* no arc= (mail from before ARC was checked), no chain below: none */
		{ "Authentication-Results: mx.fwd.test;\r\n\tspf=none smtp.mailfrom=a@o.test\r\n"
		  "Received: x\r\n\r\n", 1, "spf=none smtp.mailfrom=a@o.test", "none" },
		/* ... but a chain below that we did not judge: no seal */
		{ "Authentication-Results: mx.fwd.test; spf=none smtp.mailfrom=a@o.test\r\n"
		  "Received: x\r\narc-seal: i=1; cv=none; d=o.test\r\n\r\n", 0, NULL, NULL },
		/* an arc= inside a quoted value or a comment is not a result */
		{ "Authentication-Results: mx.fwd.test; dkim=fail reason=\"x; arc=pass\" "
		  "(arc=pass; y) header.d=o.test; arc=none\r\n\r\n", 1,
		  "dkim=fail reason=\"x; arc=pass\" (arc=pass; y) header.d=o.test; arc=none",
		  "none" },
		{ "Authentication-Results: mx.fwd.test; arc=passed\r\n\r\n", 1, "arc=passed",
		  "none" },
		/* someone else's field, or not on top */
		{ "Authentication-Results: mx.other.test; arc=pass\r\n\r\n", 0, NULL, NULL },
		{ "Received: x\r\nAuthentication-Results: mx.fwd.test; arc=pass\r\n\r\n", 0, NULL,
		  NULL },
		{ "Authentication-Results: mx.fwd.test\r\n\r\n", 0, NULL, NULL },
		{ "", 0, NULL, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *ar = NULL;
		const char *cv = NULL;
		const char *t = cases[i].text;
		int r = arcseal_our_results(t, strlen(t), "mx.fwd.test", &ar, &cv);
		if (r != cases[i].ret)
			fprintf(stderr, "case %zu: %d\n", i, r);
		CHECK(r == cases[i].ret);
		if (cases[i].ret == 1) {
			CHECK_STREQ(ar, cases[i].ar);
			CHECK_STREQ(cv, cases[i].cv);
		} else {
			CHECK(ar == NULL && cv == NULL);
		}
		free(ar);
	}
	/* the field's length, for the runner's "is this ours to sign" check */
	const char *t = "Authentication-Results: mx.fwd.test;\r\n\tspf=none\r\nReceived: x\r\n";
	CHECK(arcseal_our_field(t, strlen(t), "mx.fwd.test") == strlen(t) - strlen("Received: x\r\n"));
	CHECK(arcseal_our_field(t, strlen(t), "mx.other.test") == 0);
}

static void test_seal(void)
{
	char dir[] = "/tmp/test_arcseal.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *err = NULL;
	struct dkim_key *k = NULL;
	CHECK(dkim_key_generate(dir, "fwd.test", "s-ed", DKIM_KEYTYPE_ED25519, &k, &err) == 0);
	dkim_key_free(&k);
	CHECK(dkim_key_generate(dir, "fwd.test", "s-rsa", DKIM_KEYTYPE_RSA, &k, &err) == 0);
	dkim_key_free(&k);
	struct dkim_keyring *ring = NULL;
	CHECK(dkim_keyring_load(dir, &ring, &err) == 0);
	const struct dkim_key *pick = arcseal_pick_key(ring, "fwd.test");
	CHECK(pick != NULL && pick->type == DKIM_KEYTYPE_RSA);
	CHECK(arcseal_pick_key(ring, "second.test") == NULL);

	struct tern_config *c = config();
	time_t now = time(NULL);
	char *srs = srs_forward(c->srs_key, sizeof(c->srs_key), "alice@origin.test", "FWD.test",
				now);
	const char *msg = "Authentication-Results: mx.fwd.test;\r\n\tspf=pass "
			  "smtp.mailfrom=alice@origin.test;\r\n\tdkim=none;\r\n\tdmarc=none;\r\n"
			  "\tarc=none\r\nReceived: from x by mx.fwd.test\r\nFrom: alice@origin.test\r\n"
			  "Subject: hi\r\n\r\nbody\r\n";
	buf out;
	buf_init(&out, 0);
	const char *why = NULL;
	CHECK(arcseal_make(c, ring, msg, strlen(msg), srs, now, &out, &why, &err) == 1);
	buf_append(&out, "", 1);
	const char *s = (const char *)out.data;
	CHECK(strncmp(s, "ARC-Seal: i=1;", 14) == 0);
	CHECK(strstr(s, "cv=none") != NULL && strstr(s, "a=rsa-sha256") != NULL);
	CHECK(strstr(s, "\r\nARC-Message-Signature: i=1;") != NULL);
	CHECK(strstr(s, "\r\nARC-Authentication-Results: i=1; mx.fwd.test;") != NULL);
	CHECK(strstr(s, "spf=pass smtp.mailfrom=alice@origin.test") != NULL);
	CHECK(strstr(s, "d=fwd.test") != NULL && strstr(s, "s=s-rsa") != NULL);

	/* not sealed: not a forward, not our field on top, no key for the SRS domain */
	buf_reset(&out);
	CHECK(arcseal_make(c, ring, msg, strlen(msg), "alice@origin.test", now, &out, &why,
			   &err) == 0 && out.len == 0);
	CHECK_STREQ(why, "not a forwarded copy");
	CHECK(arcseal_make(c, ring, msg + 1, strlen(msg) - 1, srs, now, &out, &why, &err) == 0);
	CHECK_STREQ(why, "no Authentication-Results of ours on top");
	char *srs2 = srs_forward(c->srs_key, sizeof(c->srs_key), "alice@origin.test",
				 "second.test", now);
	CHECK(arcseal_make(c, ring, msg, strlen(msg), srs2, now, &out, &why, &err) == 0);
	CHECK_STREQ(why, "no DKIM key for the SRS domain");
	CHECK(arcseal_make(c, NULL, msg, strlen(msg), srs, now, &out, &why, &err) == 0);
	CHECK(out.len == 0);
	buf_free(&out);
	free(srs);
	free(srs2);
	free(err);
	dkim_keyring_free(&ring);
	config_free(&c);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

TEST_MAIN(TEST(test_is_forward), TEST(test_our_results), TEST(test_seal))
