/* test_inbound - the Authentication-Results field (format, quoting, which forged fields are
 * ours), the header scan (From domains, folded fields, the end of the header), SRS (round
 * trip, forgery, expiry, case changes, null sender) and spool_rewrite (insert and cut). */
#include <ctype.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/srs.h"
#include "config/config.h"
#include "inbound/inbound.h"
#include "queue/spool.h"
#include "test.h"

static void test_authres_format(void)
{
	struct inbound_results r = { .spf = SPF_PASS, .spf_identity = "alice@example.com",
				     .dmarc = DMARC_PASS, .dmarc_from = "example.com",
				     .dmarc_policy = true, .published = DMARC_POLICY_REJECT,
				     .disposition = DMARC_POLICY_NONE };
	char *h = inbound_authres_format("mx.example.net", &r);
	CHECK_STREQ(h, "Authentication-Results: mx.example.net;\r\n"
		       "\tspf=pass smtp.mailfrom=alice@example.com;\r\n"
		       "\tdkim=none;\r\n"
		       "\tdmarc=pass (p=reject dis=none) header.from=example.com\r\n");
	free(h);
	struct dkim_sig_result sigs[2] = {
		{ "pass", "example.com", "sel", "rsa-sha256", "abcdEFGH", NULL, NULL, false, false },
		{ "fail", "other.org", "s2", "ed25519-sha256", "zzzzzzzz", "bad signature", NULL,
		  false, false },
	};
	struct dkim_verify_result dk = { 2, sigs };
	struct inbound_results r2 = { .spf = SPF_TEMPERROR, .spf_helo = true,
				      .spf_identity = "helo.example", .spf_problem = "timed (out)",
				      .dkim = &dk, .dmarc = DMARC_NONE,
				      .dmarc_comment = "no From domain" };
	h = inbound_authres_format("mx", &r2);
	CHECK_STREQ(h, "Authentication-Results: mx;\r\n"
		       "\tspf=temperror (timed  out ) smtp.helo=helo.example;\r\n"
		       "\tdkim=pass header.d=example.com header.s=sel header.a=rsa-sha256 "
		       "header.b=abcdEFGH;\r\n"
		       "\tdkim=fail reason=\"bad signature\" header.d=other.org header.s=s2 "
		       "header.a=ed25519-sha256 header.b=zzzzzzzz;\r\n"
		       "\tdmarc=none (no From domain)\r\n");
	free(h);
	/* a sender that is not a dot-atom is quoted, with '"' and '\' escaped */
	struct inbound_results r3 = { .spf = SPF_FAIL, .spf_identity = "\"a b\\\"\"@x.org" };
	h = inbound_authres_format("mx", &r3);
	CHECK(strstr(h, "smtp.mailfrom=\"\\\"a b\\\\\\\"\\\"@x.org\"") != NULL);
	free(h);
}

static void test_authres_claims(void)
{
	static const char *const ours[] = { " mx.example.net; spf=pass", "mx.example.net;",
					     " MX.Example.NET ; dkim=pass",
					     " (comment (nested)) mx.example.net; none",
					     "\r\n\tmx.example.net;\r\n\tspf=pass", " \"mx.example.net\"; x",
					     " mx.example.net. ; x", " mx.example.net 1; spf=pass" };
	static const char *const theirs[] = { " mx.example.org; spf=pass", " example.net; x",
					      " mx.example.net.evil; x", "", " ; spf=pass",
					      " (mx.example.net) other; x" };
	for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		CHECK(inbound_authres_claims(ours[i], strlen(ours[i]), "mx.example.net"));
	for (size_t i = 0; i < sizeof(theirs) / sizeof(theirs[0]); i++)
		CHECK(!inbound_authres_claims(theirs[i], strlen(theirs[i]), "mx.example.net"));
}

static void test_header_scan(void)
{
	const char *hdr = "Authentication-Results: mx.example.net; spf=pass\r\n"
			  "From: Alice <alice@Example.COM>\r\n"
			  "Authentication-Results: other.example;\r\n\tdkim=pass\r\n"
			  "authentication-results:\r\n mx.example.net;\r\n\tdmarc=pass\r\n"
			  "Subject: hi\r\n"
			  "\r\n"
			  "From: body@not.header\r\n"
			  "Authentication-Results: mx.example.net; in the body\r\n";
	struct inbound_header h;
	CHECK(inbound_header_scan(hdr, strlen(hdr), "mx.example.net", &h) == 0);
	CHECK(h.from_fields == 1 && h.n_from == 1);
	if (h.n_from == 1)
		CHECK_STREQ(h.from_domains[0], "example.com");
	CHECK(h.n_forged == 2);
	if (h.n_forged == 2) {
		CHECK(h.forged[0].start == 0 && hdr[h.forged[0].end] == 'F');
		const char *second = strstr(hdr, "authentication-results:");
		CHECK(h.forged[1].start == (uint64_t)(second - hdr));
		CHECK(strncmp(hdr + h.forged[1].end, "Subject:", 8) == 0);
	}
	inbound_header_free(&h);
	/* several From fields and a From with mailboxes of two domains */
	const char *two = "From: a@one.example, b@two.example\r\nFrom: c@one.example\r\n\r\n";
	CHECK(inbound_header_scan(two, strlen(two), "mx", &h) == 0);
	CHECK(h.from_fields == 2 && h.n_from == 3);
	inbound_header_free(&h);
	/* no From; a header that ends at a non-field line; a header without a body */
	const char *none = "Subject: x\r\nnot a field\r\nFrom: late@x.example\r\n";
	CHECK(inbound_header_scan(none, strlen(none), "mx", &h) == 0);
	CHECK(h.from_fields == 0 && h.n_from == 0);
	inbound_header_free(&h);
	const char *only = "From: a@b.example";
	CHECK(inbound_header_scan(only, strlen(only), "mx", &h) == 0);
	CHECK(h.n_from == 1);
	inbound_header_free(&h);
}

static const unsigned char key[SRS_KEY_LEN] = "0123456789abcdef0123456789abcdef";

static void test_srs(void)
{
	time_t now = 1700000000;
	char *a = srs_forward(key, sizeof(key), "alice@sender.example", "fwd.example", now);
	CHECK(a != NULL && strncmp(a, "SRS0=", 5) == 0);
	CHECK(a != NULL && strstr(a, "=sender.example=alice@fwd.example") != NULL);
	char *orig = NULL;
	CHECK(srs_reverse(key, sizeof(key), a, 21, now, &orig) == SRS_OK);
	CHECK_STREQ(orig, "alice@sender.example");
	free(orig);
	orig = NULL;
	/* MTAs may change the case */
	char *lower = strdup(a);
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	CHECK(srs_reverse(key, sizeof(key), lower, 21, now + 86400 * 3, &orig) == SRS_OK);
	CHECK(orig != NULL && strcasecmp(orig, "alice@sender.example") == 0);
	free(orig);
	orig = NULL;
	free(lower);
	/* expired after max_age days; accepted at exactly max_age */
	CHECK(srs_reverse(key, sizeof(key), a, 21, now + 86400 * 21, &orig) == SRS_OK);
	free(orig);
	orig = NULL;
	CHECK(srs_reverse(key, sizeof(key), a, 21, now + 86400 * 22, &orig) == SRS_EXPIRED);
	/* forged: another key, a changed sender, a changed timestamp, a malformed address */
	unsigned char other[SRS_KEY_LEN];
	memcpy(other, key, sizeof(other));
	other[0] ^= 1;
	CHECK(srs_reverse(other, sizeof(other), a, 21, now, &orig) == SRS_FORGED);
	char *tampered = strdup(a);
	char *l = strstr(tampered, "=alice@");
	l[1] = 'm';
	CHECK(srs_reverse(key, sizeof(key), tampered, 21, now, &orig) == SRS_FORGED);
	free(tampered);
	tampered = strdup(a);
	tampered[5 + 8 + 1] = tampered[5 + 8 + 1] == 'A' ? 'B' : 'A';	/* TT */
	CHECK(srs_reverse(key, sizeof(key), tampered, 21, now, &orig) == SRS_FORGED);
	free(tampered);
	CHECK(srs_reverse(key, sizeof(key), "SRS0=xx@fwd.example", 21, now, &orig) == SRS_FORGED);
	CHECK(srs_reverse(key, sizeof(key), "SRS0=AAAAAAAA=AA=x.example=@f.example", 21, now,
			  &orig) == SRS_FORGED);
	CHECK(srs_reverse(key, sizeof(key), "bob@fwd.example", 21, now, &orig) == SRS_NOT_SRS);
	CHECK(orig == NULL);
	free(a);
	/* nothing to rewrite */
	CHECK(srs_forward(key, sizeof(key), "", "fwd.example", now) == NULL);
	CHECK(srs_forward(key, sizeof(key), "bob@FWD.example", "fwd.example", now) == NULL);
	/* an SRS address forwarded again decodes to the first one */
	char *a1 = srs_forward(key, sizeof(key), "alice@sender.example", "one.example", now);
	char *a2 = srs_forward(key, sizeof(key), a1, "two.example", now);
	CHECK(srs_reverse(key, sizeof(key), a2, 21, now, &orig) == SRS_OK);
	CHECK_STREQ(orig, a1);
	free(orig);
	free(a1);
	free(a2);
}

static void test_spool_rewrite(void)
{
	char dir[] = "/tmp/test_inbound.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	struct spool_msg *m = NULL;
	char *err = NULL;
	CHECK(spool_open(dir, "a@b.example", &m, &err) == 0);
	const char *rest = "Received: x\r\nA-R: forged\r\nFrom: a@b\r\nA-R: two\r\n\r\nbody\r\n";
	spool_write(m, rest, strlen(rest));
	uint64_t base = m->body_offset;
	const char *p1 = strstr(rest, "A-R: forged"), *p2 = strstr(rest, "A-R: two");
	struct spool_range cuts[2] = {
		{ base + (uint64_t)(p1 - rest), base + (uint64_t)(p1 - rest) + 13 },
		{ base + (uint64_t)(p2 - rest), base + (uint64_t)(p2 - rest) + 10 },
	};
	const char *ins = "Authentication-Results: mx; spf=pass\r\n";
	CHECK(spool_rewrite(m, base, ins, strlen(ins), cuts, 2, &err) == 0);
	if (err != NULL)
		fprintf(stderr, "  %s\n", err);
	char got[512];
	int rfd = open(m->path, O_RDONLY);
	ssize_t n = pread(rfd, got, sizeof(got) - 1, 0);
	close(rfd);
	CHECK(n > 0);
	got[n > 0 ? n : 0] = '\0';
	CHECK_STREQ(got, "Return-Path: <a@b.example>\r\nAuthentication-Results: mx; spf=pass\r\n"
			 "Received: x\r\nFrom: a@b\r\n\r\nbody\r\n");
	CHECK(m->size == (uint64_t)n);
	struct stat st;
	CHECK(fstat(m->fd, &st) == 0 && (uint64_t)st.st_size == m->size);
	/* a cut outside the file is refused and leaves the file alone */
	struct spool_range badcut = { 0, m->size + 10 };
	CHECK(spool_rewrite(m, 0, "", 0, &badcut, 1, &err) == -1);
	free(err);
	CHECK(stat(m->path, &st) == 0 && (uint64_t)st.st_size == m->size);
	spool_abort(&m);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

/* test_rewrite_cost - what putting the field on top costs (copy_file_range of the whole
 * file, no fsync: spool_deliver's fsync covers the new file); figures for the notes */
static void test_rewrite_cost(void)
{
	static const size_t sizes[] = { 20 * 1024, 1024 * 1024, 10 * 1024 * 1024 };
	char dir[] = "/tmp/test_inbound_cost.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *chunk = malloc(65536);
	memset(chunk, 'x', 65536);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct spool_msg *m = NULL;
		char *err = NULL;
		CHECK(spool_open(dir, "a@b.example", &m, &err) == 0);
		spool_write(m, "Subject: x\r\n\r\n", 15);
		for (size_t n = 0; n < sizes[k]; n += 65536)
			spool_write(m, chunk, sizes[k] - n < 65536 ? sizes[k] - n : 65536);
		spool_flush(m);
		const char *ins = "Authentication-Results: mx; spf=pass smtp.mailfrom=a@b.example\r\n";
		struct timespec t0, t1;
		enum { ROUNDS = 5 };
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < ROUNDS; i++)
			CHECK(spool_rewrite(m, m->body_offset, ins, strlen(ins), NULL, 0, &err) == 0);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e6 +
			     (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / ROUNDS;
		printf("  spool_rewrite of a %zu-byte message: %.0f us\n", sizes[k], us);
		spool_abort(&m);
	}
	free(chunk);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
}

static void test_authres_arc(void)
{
	struct inbound_results r = { .spf = SPF_PASS, .spf_identity = "a@o.test",
				     .dmarc = DMARC_PASS, .dmarc_from = "o.test", .arc = "pass",
				     .arc_instances = 2, .arc_oldest_pass = 0,
				     .arc_domain = "fwd.test", .remote_ip = "127.0.0.21" };
	char *h = inbound_authres_format("mx", &r);
	CHECK_STREQ(h, "Authentication-Results: mx;\r\n"
		       "\tspf=pass smtp.mailfrom=a@o.test;\r\n"
		       "\tdkim=none;\r\n"
		       "\tdmarc=pass header.from=o.test;\r\n"
		       "\tarc=pass (i=2 d=fwd.test) smtp.remote-ip=127.0.0.21 "
		       "header.oldest-pass=0\r\n");
	free(h);
	/* fail: the reason, remote-ip, no oldest-pass; none: the result alone; IPv6 quoted */
	r.arc = "fail";
	r.arc_reason = "seal i=1 (bad)";
	r.remote_ip = "2001:db8::1";
	h = inbound_authres_format("mx", &r);
	CHECK(strstr(h, ";\r\n\tarc=fail (seal i=1  bad ) smtp.remote-ip=\"2001:db8::1\"\r\n")
	      != NULL);
	free(h);
	r.arc = "none";
	r.arc_instances = 0;
	r.arc_domain = NULL;
	h = inbound_authres_format("mx", &r);
	CHECK(strstr(h, "header.from=o.test;\r\n\tarc=none\r\n") != NULL);
	free(h);
	/* a DMARC fail let through by a trusted sealer says so, and dis=none */
	struct inbound_results o = { .spf = SPF_FAIL, .spf_identity = "a@o.test",
				     .dmarc = DMARC_FAIL, .dmarc_from = "o.test",
				     .dmarc_policy = true, .published = DMARC_POLICY_REJECT,
				     .disposition = DMARC_POLICY_REJECT,
				     .dmarc_override = "fwd.test", .arc = "pass",
				     .arc_instances = 1, .arc_domain = "fwd.test" };
	h = inbound_authres_format("mx", &o);
	CHECK(strstr(h, "dmarc=fail (p=reject dis=none, local policy: ARC sealed by fwd.test) "
			"header.from=o.test;") != NULL);
	free(h);
}

static void test_arc_override(void)
{
	char *err = NULL;
	struct tern_config *none = config_load_string("a.conf", "data_dir=/x\ndomains=a.test\n",
						      &err);
	CHECK(none != NULL && none->n_arc_trusted_sealers == 0);
	struct tern_config *c = config_load_string(
		"a.conf", "data_dir=/x\ndomains=a.test\n[inbound]\n"
		"arc_trusted_sealers = Fwd.test, lists.example.org\n", &err);
	CHECK(c != NULL && c->n_arc_trusted_sealers == 2);
	CHECK_STREQ(c->arc_trusted_sealers[0], "fwd.test");
	CHECK(config_load_string("a.conf", "data_dir=/x\ndomains=a.test\n[inbound]\n"
				 "arc_trusted_sealers = fwd.test bad_name!\n", &err) == NULL);
	CHECK(err != NULL && strstr(err, "bad_name!") != NULL);
	free(err);
	static const struct {
		enum dmarc_result dmarc;
		enum dmarc_policy dis;
		const char *cv, *sealer;
		bool override;
	} cases[] = {
		{ DMARC_FAIL, DMARC_POLICY_REJECT, "pass", "fwd.test", true },
		{ DMARC_FAIL, DMARC_POLICY_QUARANTINE, "pass", "LISTS.example.org", true },
		{ DMARC_FAIL, DMARC_POLICY_REJECT, "fail", "fwd.test", false },
		{ DMARC_FAIL, DMARC_POLICY_REJECT, "none", NULL, false },
		{ DMARC_FAIL, DMARC_POLICY_REJECT, "pass", "other.test", false },
		{ DMARC_FAIL, DMARC_POLICY_REJECT, "pass", "sub.fwd.test", false },
		{ DMARC_FAIL, DMARC_POLICY_NONE, "pass", "fwd.test", false },
		{ DMARC_PASS, DMARC_POLICY_NONE, "pass", "fwd.test", false },
		{ DMARC_FAIL, DMARC_POLICY_REJECT, NULL, "fwd.test", false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *o = inbound_arc_override(c, cases[i].dmarc, cases[i].dis, cases[i].cv,
						     cases[i].sealer);
		CHECK((o != NULL) == cases[i].override);
		/* empty by default: never */
		CHECK(inbound_arc_override(none, cases[i].dmarc, cases[i].dis, cases[i].cv,
					   cases[i].sealer) == NULL);
	}
	config_free(&c);
	config_free(&none);
}

TEST_MAIN(TEST(test_authres_format), TEST(test_rewrite_cost), TEST(test_authres_claims),
	  TEST(test_header_scan), TEST(test_srs), TEST(test_spool_rewrite),
	  TEST(test_authres_arc), TEST(test_arc_override))
