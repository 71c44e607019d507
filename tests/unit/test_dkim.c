/* test_dkim - DKIM tag lists, signature and key record parsers (tables, nasty inputs), the
 * canonicalisation examples of RFC 6376 §3.4.5, body hashes, RFC 8463 Appendix A verified
 * with its own key records served by a real dnsmasq, sign-then-verify with generated RSA
 * and Ed25519 keys, and every failure result (revoked, short key, no key, expired, l=,
 * missing From, t=s, tampered). */
#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "dkim/dkim.h"
#include "dkim/internal.h"
#include "dkim/parse.h"
#include "lib/base64.h"
#include "outbound/dns.h"
#include "test.h"

/* ---- parsers ------------------------------------------------------------------------------ */

static void test_tags(void)
{
	static const struct {
		const char *in;
		int rc;
		size_t n;
	} cases[] = {
		{ "v=1; a=rsa-sha256", 0, 2 },
		{ "v=1; a=rsa-sha256;", 0, 2 },
		{ "  v = 1 ;\r\n\ta=rsa-sha256 ;  ", 0, 2 },
		{ "", 0, 0 },
		{ "v=", 0, 1 },
		{ "v=1; v=1", -1, 0 },		/* duplicate */
		{ "1v=1", -1, 0 },		/* name starts with a digit */
		{ "v 1", -1, 0 },		/* no '=' */
		{ "v=1;;a=2", -1, 0 },		/* empty tag-spec in the middle */
		{ "v=\x01", -1, 0 },		/* control character */
		{ "v=\xc3\xa9", -1, 0 },	/* 8-bit */
		{ "abcdefghijklmnopqrstuvwxyz=1", -1, 0 },	/* name too long */
		{ "b=abc def\r\n ghi", 0, 1 },	/* white space inside a value */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dkim_tag t[DKIM_MAX_TAGS];
		size_t n = 99;
		const char *err = NULL;
		int rc = dkim_tags_parse(cases[i].in, strlen(cases[i].in), t, DKIM_MAX_TAGS, &n, &err);
		if (rc != cases[i].rc || (rc == 0 && n != cases[i].n))
			fprintf(stderr, "case %zu: %s rc=%d n=%zu (%s)\n", i, cases[i].in, rc, n,
				err ? err : "");
		CHECK(rc == cases[i].rc);
		CHECK(rc != 0 || n == cases[i].n);
		CHECK(rc == 0 || err != NULL);
	}
	struct dkim_tag t[4];
	size_t n;
	const char *err;
	const char *s = " v = 1 ; b = ab cd ; x=5";
	CHECK(dkim_tags_parse(s, strlen(s), t, 4, &n, &err) == 0 && n == 3);
	CHECK(t[1].vlen == 5 && memcmp(t[1].value, "ab cd", 5) == 0);
	CHECK(t[1].raw_start == 12 && s[t[1].raw_end] == ';');
	/* more tags than room */
	CHECK(dkim_tags_parse("a=1;b=2;c=3", 11, t, 2, &n, &err) < 0);
}

#define BH "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;"
static void test_sig_parse(void)
{
	static const struct {
		const char *in;
		int rc;
	} cases[] = {
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from:to; " BH " b=AAAA", 0 },
		{ "v=1; a=ed25519-sha256; c=relaxed/simple; d=example.com; s=sel; h=From; " BH
		  " b=AA\r\n AA", 0 },	/* b= with folding white space */
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=to:subject; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; " BH " b=AAAA", -1 },	/* no h= */
		{ "v=2; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA", -1 },
		{ "a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA", -1 },	/* no v= */
		{ "v=1; a=rsa-md5; d=example.com; s=sel; h=from; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=!!!!", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; bh=AAAA; b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; c=fancy", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; l=x", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; l=10", 0 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; t=10; x=5", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; i=@evil.com", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; i=u@a.example.com", 0 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; q=http", -1 },
		{ "v=1; a=rsa-sha256; d=exa mple.com; s=sel; h=from; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=../x; h=from; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from::to; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; d=example.org; s=sel; h=from; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha1; d=example.com; s=sel; h=from; bh=2jmj7l5rSw0yVb/vlWAYkK/YBwk=; b=AAAA", 0 },
		{ "v=1; a=rsa-sha1; d=example.com; s=sel; h=from; " BH " b=AAAA", -1 },
		{ "v=1; a=rsa-sha256; d=example.com; s=sel; h=from; " BH " b=AAAA; t=9999999999999", -1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dkim_sig sig;
		const char *err = NULL;
		int rc = dkim_sig_parse(cases[i].in, strlen(cases[i].in), &sig, &err);
		if (rc != cases[i].rc)
			fprintf(stderr, "sig case %zu: rc=%d (%s)\n", i, rc, err ? err : "");
		CHECK(rc == cases[i].rc);
		dkim_sig_free(&sig);
	}
	/* what a failed parse still reports, for the result */
	struct dkim_sig sig;
	const char *err = NULL;
	const char *s = "v=1; a=rsa-sha256; d=example.com; s=sel; h=to; " BH " b=ABCD EFGH";
	CHECK(dkim_sig_parse(s, strlen(s), &sig, &err) < 0);
	CHECK_STREQ(err, "h= does not sign From");
	CHECK_STREQ(sig.d, "example.com");
	CHECK_STREQ(sig.s, "sel");
	CHECK_STREQ(sig.b8, "ABCDEFGH");
	dkim_sig_free(&sig);
	/* a huge h= is refused, not grown without bound */
	buf big;
	buf_init(&big, 0);
	buf_puts(&big, "v=1; a=rsa-sha256; d=example.com; s=sel; " BH " b=AAAA; h=from");
	for (int i = 0; i < 5000; i++)
		buf_puts(&big, ":subject");
	CHECK(dkim_sig_parse(big.data, big.len, &sig, &err) < 0);
	dkim_sig_free(&sig);
	buf_free(&big);
}

static void test_keyrec(void)
{
	struct dkim_keyrec k;
	const char *err;
	const char *ok = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
	CHECK(dkim_keyrec_parse(ok, strlen(ok), &k, &err) == 0);
	CHECK(k.k == DKIM_KEY_ED25519 && k.p.len == 32 && !k.revoked && k.sha256_ok && k.email_ok);
	dkim_keyrec_free(&k);
	const char *rev = "v=DKIM1; p=";
	CHECK(dkim_keyrec_parse(rev, strlen(rev), &k, &err) == 0 && k.revoked && k.k == DKIM_KEY_RSA);
	dkim_keyrec_free(&k);
	const char *notfirst = "k=rsa; v=DKIM1; p=AAAA";
	CHECK(dkim_keyrec_parse(notfirst, strlen(notfirst), &k, &err) < 0);
	dkim_keyrec_free(&k);
	const char *nop = "v=DKIM1; k=rsa";
	CHECK(dkim_keyrec_parse(nop, strlen(nop), &k, &err) < 0);
	dkim_keyrec_free(&k);
	const char *flags = "p=AAAA; h=sha1; s=tlsrpt; t=y:s; g=*; zz=unknown";
	CHECK(dkim_keyrec_parse(flags, strlen(flags), &k, &err) == 0);
	CHECK(!k.sha256_ok && !k.email_ok && k.testing && k.strict);
	dkim_keyrec_free(&k);
	const char *dup = "p=AAAA; p=BBBB";
	CHECK(dkim_keyrec_parse(dup, strlen(dup), &k, &err) < 0);
	dkim_keyrec_free(&k);
}

/* ---- canonicalisation (RFC 6376 §3.4.5) --------------------------------------------------- */

static const char rfc_example[] = "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n";

static void canon_header_all(enum dkim_canon c, const char *msg, size_t len, buf *out)
{
	struct dkim_header h;
	dkim_header_split(msg, len, 100, &h);
	for (size_t i = 0; i < h.n; i++)
		dkim_canon_header(c, h.f[i].start, h.f[i].len, out);
	free(h.f);
}

static void test_canon_rfc_example(void)
{
	buf b;
	size_t len = sizeof(rfc_example) - 1;
	struct dkim_header h;
	dkim_header_split(rfc_example, len, 100, &h);
	CHECK(h.n == 2);
	CHECK(h.body_off == 22);
	buf_init(&b, 0);
	canon_header_all(DKIM_CANON_RELAXED, rfc_example, len, &b);
	CHECK_STREQ(buf_cstr(&b), "a:X\r\nb:Y Z\r\n");
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_RELAXED, rfc_example + h.body_off, len - h.body_off, &b);
	CHECK_STREQ(buf_cstr(&b), " C\r\nD E\r\n");
	buf_reset(&b);
	canon_header_all(DKIM_CANON_SIMPLE, rfc_example, len, &b);
	CHECK_STREQ(buf_cstr(&b), "A: X\r\nB : Y\t\r\n\tZ  \r\n");
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_SIMPLE, rfc_example + h.body_off, len - h.body_off, &b);
	CHECK_STREQ(buf_cstr(&b), " C \r\nD \t E\r\n");
	free(h.f);

	/* the same message with LF line ends canonicalises the same */
	const char *lf = "A: X\nB : Y\t\n\tZ  \n\n C \nD \t E\n\n\n";
	dkim_header_split(lf, strlen(lf), 100, &h);
	buf_reset(&b);
	canon_header_all(DKIM_CANON_RELAXED, lf, strlen(lf), &b);
	CHECK_STREQ(buf_cstr(&b), "a:X\r\nb:Y Z\r\n");
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_SIMPLE, lf + h.body_off, strlen(lf) - h.body_off, &b);
	CHECK_STREQ(buf_cstr(&b), " C \r\nD \t E\r\n");
	free(h.f);

	/* empty bodies (§3.4.3, §3.4.4), a body without a final line end */
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_SIMPLE, "", 0, &b);
	CHECK_STREQ(buf_cstr(&b), "\r\n");
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_RELAXED, "\r\n\r\n", 4, &b);
	CHECK(b.len == 0);
	buf_reset(&b);
	dkim_body_canon(DKIM_CANON_RELAXED, "x  ", 3, &b);
	CHECK_STREQ(buf_cstr(&b), "x\r\n");
	buf_free(&b);
}

static void b64(const unsigned char *p, size_t n, char *out)
{
	buf b;
	buf_init(&b, 0);
	base64_encode(p, n, &b);
	snprintf(out, 64, "%s", buf_cstr(&b));
	buf_free(&b);
}

static void test_body_hash(void)
{
	unsigned char h[32];
	char s[64];
	uint64_t clen;
	CHECK(dkim_body_hash(DKIM_CANON_SIMPLE, "", 0, UINT64_MAX, h, &clen) == 0 && clen == 2);
	b64(h, 32, s);
	CHECK_STREQ(s, "frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=");
	CHECK(dkim_body_hash(DKIM_CANON_RELAXED, "\r\n", 2, UINT64_MAX, h, &clen) == 0 && clen == 0);
	b64(h, 32, s);
	CHECK_STREQ(s, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
	/* l= cuts the hashed part, the canonical length is still the whole */
	CHECK(dkim_body_hash(DKIM_CANON_RELAXED, "abc\r\ndef\r\n", 10, 0, h, &clen) == 0 && clen == 10);
	b64(h, 32, s);
	CHECK_STREQ(s, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
}

/* ---- dnsmasq serving key records ---------------------------------------------------------- */

static pid_t dnsmasq_pid = -1;
static char dns_servers[64];
static char tmpdir[64] = "/tmp/test_dkim.XXXXXX";

static int free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int u = socket(AF_INET, SOCK_DGRAM, 0);
	if (u < 0 || bind(u, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(u, (struct sockaddr *)&sin, &len) < 0) {
		if (u >= 0)
			close(u);
		return -1;
	}
	close(u);
	return ntohs(sin.sin_port);
}

static bool dns_probe(int port)
{
	static const unsigned char q[] = {
		0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		5, 'p', 'r', 'o', 'b', 'e', 4, 't', 'e', 's', 't', 0, 0, 16, 0, 1,
	};
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	bool ok = false;
	if (fd < 0)
		return false;
	if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&sin, sizeof(sin)) == (ssize_t)sizeof(q)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		unsigned char ans[512];
		ok = poll(&p, 1, 100) == 1 && recv(fd, ans, sizeof(ans), 0) >= 12 && ans[0] == 0x12;
	}
	close(fd);
	return ok;
}

/* zone_txt - a dnsmasq txt-record line, the text cut in 255-byte strings */
static void zone_txt(FILE *f, const char *name, const char *text)
{
	fprintf(f, "txt-record=%s", name);
	size_t len = strlen(text);
	for (size_t i = 0; i < len; i += 255)
		fprintf(f, ",\"%.*s\"", (int)(len - i < 255 ? len - i : 255), text + i);
	fputc('\n', f);
}

static FILE *zone;

static bool dnsmasq_start(void)
{
	char conf[128], portarg[32], confarg[160];
	snprintf(conf, sizeof(conf), "%s/dnsmasq.conf", tmpdir);
	int port = free_port();
	if (zone == NULL || fclose(zone) != 0 || port < 0)
		return false;
	zone = NULL;
	snprintf(portarg, sizeof(portarg), "--port=%d", port);
	snprintf(confarg, sizeof(confarg), "--conf-file=%s", conf);
	const char *argv[] = { "/usr/sbin/dnsmasq", "--keep-in-foreground", confarg, portarg,
			       "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
			       geteuid() == 0 ? "--user=root" : NULL, NULL };
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	dnsmasq_pid = pid;
	for (int i = 0; i < 50; i++) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		if (dns_probe(port)) {
			snprintf(dns_servers, sizeof(dns_servers), "127.0.0.1:%d", port);
			return true;
		}
	}
	return false;
}

/* ---- verification driver ------------------------------------------------------------------ */

struct outcome {
	bool called, in_call;
	size_t n;
	char result[DKIM_MAX_SIGNATURES + 2][16];
	char reason[DKIM_MAX_SIGNATURES + 2][100];
	char domain[DKIM_MAX_SIGNATURES + 2][64];
	char b[DKIM_MAX_SIGNATURES + 2][16];
	bool limited[DKIM_MAX_SIGNATURES + 2];
	struct event_base *base;
};

static void on_result(void *ctx, const struct dkim_verify_result *r)
{
	struct outcome *o = ctx;
	CHECK(!o->in_call);
	CHECK(!o->called);
	o->called = true;
	o->n = r->n;
	for (size_t i = 0; i < r->n && i < DKIM_MAX_SIGNATURES + 2; i++) {
		snprintf(o->result[i], sizeof(o->result[i]), "%s", r->sigs[i].result);
		snprintf(o->reason[i], sizeof(o->reason[i]), "%s",
			 r->sigs[i].reason ? r->sigs[i].reason : "");
		snprintf(o->domain[i], sizeof(o->domain[i]), "%s",
			 r->sigs[i].domain ? r->sigs[i].domain : "(null)");
		snprintf(o->b[i], sizeof(o->b[i]), "%s", r->sigs[i].b ? r->sigs[i].b : "(null)");
		o->limited[i] = r->sigs[i].body_length_limited;
	}
	event_base_loopbreak(o->base);
}

static void verify_msg(const char *msg, size_t len, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *err = NULL;
	o->base = base;
	if (dns_init(base, dns_servers, &d, &err) < 0) {
		fprintf(stderr, "dns_init: %s\n", err);
		CHECK(0);
		return;
	}
	/* the message is copied and freed at once: the API must not keep it */
	char *copy = malloc(len ? len : 1);
	memcpy(copy, msg, len);
	o->in_call = true;
	struct dkim_verify *v = dkim_verify_start(d, copy, len, on_result, o);
	o->in_call = false;
	memset(copy, 'X', len);
	free(copy);
	CHECK(v != NULL);
	CHECK(!o->called);
	event_base_dispatch(base);
	CHECK(o->called);
	dns_free(&d);
	event_base_free(base);
}

/* RFC 8463 Appendix A.3, continuation lines starting with one space */
static const char rfc8463_msg[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
	" subject : date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
	" d=football.example.com; i=@football.example.com;\r\n"
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
	" date : message-id : from : subject : date;\r\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
	"From: Joe SixPack <joe@football.example.com>\r\n"
	"To: Suzie Q <suzie@shopping.example.net>\r\n"
	"Subject: Is dinner ready?\r\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
	"\r\n"
	"Hi.\r\n"
	"\r\n"
	"We lost the game.  Are you hungry yet?\r\n"
	"\r\n"
	"Joe.\r\n";

static void test_rfc8463_example(void)
{
	struct outcome o;
	verify_msg(rfc8463_msg, sizeof(rfc8463_msg) - 1, &o);
	CHECK(o.n == 2);
	CHECK_STREQ(o.result[0], "pass");
	CHECK_STREQ(o.result[1], "pass");
	CHECK_STREQ(o.domain[0], "football.example.com");
	CHECK_STREQ(o.b[0], "/gCrinpc");
	CHECK_STREQ(o.b[1], "F45dVWDf");
	/* one changed byte in a signed field: both fail */
	char *bad = strdup(rfc8463_msg);
	char *subj = strstr(bad, "dinner");
	subj[0] = 'D';
	verify_msg(bad, strlen(bad), &o);
	CHECK(o.n == 2);
	CHECK_STREQ(o.result[0], "fail");
	CHECK_STREQ(o.result[1], "fail");
	CHECK_STREQ(o.reason[0], "signature did not verify");
	/* in the body: the body hash fails */
	strcpy(bad, rfc8463_msg);
	strstr(bad, "hungry")[0] = 'H';
	verify_msg(bad, strlen(bad), &o);
	CHECK_STREQ(o.result[0], "fail");
	CHECK_STREQ(o.reason[0], "body hash did not verify");
	/* LF line ends verify the same */
	size_t m = 0;
	for (const char *p = rfc8463_msg; *p; p++)
		if (*p != '\r')
			bad[m++] = *p;
	bad[m] = '\0';
	verify_msg(bad, m, &o);
	CHECK_STREQ(o.result[0], "pass");
	CHECK_STREQ(o.result[1], "pass");
	free(bad);
}

/* ---- our own keys ------------------------------------------------------------------------- */

static struct dkim_key *k_rsa, *k_ed, *k_short, *k_revoked, *k_strict, *k_nokey;

static const char plain_msg[] =
	"Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"From: Alice <alice@sign.test>\r\n"
	"To: bob@example.net\r\n"
	"Subject: hello  there\r\n"
	"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	"Message-ID: <1@sign.test>\r\n"
	"\r\n"
	"Hello   Bob \r\n\r\nbye\r\n\r\n";

/* signed - sign plain_msg (or msg) with key, return the signed message (caller frees) */
static char *signed_with(const struct dkim_key *k, const char *msg, size_t *len_r)
{
	buf out;
	char *err = NULL;
	buf_init(&out, 0);
	CHECK(dkim_sign(k, msg, strlen(msg), time(NULL), &out, &err) == 0);
	buf_puts(&out, msg);
	*len_r = out.len;
	return out.data;
}

/* handmade - a signature with extra tags (x=, l=, i=, h=) made with our pieces */
static char *handmade(const struct dkim_key *k, const char *tags, const char *hlist,
		      uint64_t l, const char *msg)
{
	struct dkim_header h;
	size_t len = strlen(msg);
	dkim_header_split(msg, len, 100, &h);
	unsigned char bh[32];
	uint64_t clen;
	dkim_body_hash(DKIM_CANON_RELAXED, msg + h.body_off, len - h.body_off, l, bh, &clen);
	char bhs[64];
	b64(bh, 32, bhs);
	buf f;
	buf_init(&f, 0);
	buf_printf(&f, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s; %s h=%s; bh=%s; b=",
		   k->type == DKIM_KEYTYPE_RSA ? "rsa-sha256" : "ed25519-sha256", k->domain,
		   k->selector, tags, hlist, bhs);
	struct dkim_sig sig;
	memset(&sig, 0, sizeof(sig));
	sig.canon_h = DKIM_CANON_RELAXED;
	char *names = strdup(hlist), *save = NULL;
	for (char *t = strtok_r(names, ":", &save); t != NULL; t = strtok_r(NULL, ":", &save)) {
		sig.h = realloc(sig.h, (sig.n_h + 1) * sizeof(*sig.h));
		sig.h[sig.n_h++] = strdup(t);
	}
	free(names);
	sig.b_raw_end = sig.b_raw_start = f.len - 15;
	buf data;
	buf_init(&data, 0);
	dkim_header_hash_input(&h, &sig, f.data, f.len, 15, &data);
	CHECK(dkim_crypto_sign(k, data.data, data.len, &f) == 0);
	buf_puts(&f, "\r\n");
	buf_puts(&f, msg);
	dkim_sig_free(&sig);
	buf_free(&data);
	free(h.f);
	return f.data;
}

static void test_sign_verify(void)
{
	struct outcome o;
	size_t len;
	char *m = signed_with(k_rsa, plain_msg, &len);
	CHECK(strstr(m, "h=from:from:subject:date:to:message-id;") != NULL);
	CHECK(strstr(m, "c=relaxed/relaxed") != NULL && strstr(m, " t=") != NULL);
	CHECK(strstr(m, "l=") == NULL);
	verify_msg(m, len, &o);
	CHECK(o.n == 1);
	CHECK_STREQ(o.result[0], "pass");
	CHECK_STREQ(o.domain[0], "sign.test");
	/* oversigned From: a second From added on top breaks it */
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "From: mallory@evil.test\r\n");
	buf_puts(&b, m);
	verify_msg(b.data, b.len, &o);
	CHECK_STREQ(o.result[0], "fail");
	buf_free(&b);
	/* relaxed: re-folding and white space changes still pass */
	buf_init(&b, 0);
	const char *sub = strstr(m, "Subject: hello  there");
	buf_append(&b, m, (size_t)(sub - m));
	buf_puts(&b, "subject:   hello\r\n\t there  ");
	buf_puts(&b, sub + strlen("Subject: hello  there"));
	verify_msg(b.data, b.len, &o);
	CHECK_STREQ(o.result[0], "pass");
	buf_free(&b);
	free(m);

	m = signed_with(k_ed, plain_msg, &len);
	CHECK(strstr(m, "a=ed25519-sha256") != NULL);
	verify_msg(m, len, &o);
	CHECK_STREQ(o.result[0], "pass");
	free(m);

	/* dual signature as the runner makes it */
	struct dkim_keyring ring = { .keys = NULL, .n = 0 };
	struct dkim_key keys[2] = { *k_rsa, *k_ed };
	ring.keys = keys;
	ring.n = 2;
	buf_init(&b, 0);
	char *err = NULL;
	CHECK(dkim_sign_message(&ring, plain_msg, strlen(plain_msg), "x@other.test", time(NULL), &b,
				&err) == 2);
	buf_puts(&b, plain_msg);
	verify_msg(b.data, b.len, &o);
	CHECK(o.n == 2);
	CHECK_STREQ(o.result[0], "pass");
	CHECK_STREQ(o.result[1], "pass");
	buf_free(&b);
	/* no key for the From domain nor the sender's: nothing */
	const char *other = "From: a@nokeys.test\r\n\r\nx\r\n";
	buf_init(&b, 0);
	CHECK(dkim_sign_message(&ring, other, strlen(other), "", time(NULL), &b, &err) == 0);
	CHECK(b.len == 0);
	/* a subdomain From uses the parent's keys; the envelope sender is the fallback */
	const char *sub2 = "From: a@mail.sign.test\r\n\r\nx\r\n";
	CHECK(dkim_sign_message(&ring, sub2, strlen(sub2), "", time(NULL), &b, &err) == 2);
	buf_reset(&b);
	CHECK(dkim_sign_message(&ring, other, strlen(other), "b@sign.test", time(NULL), &b, &err) == 2);
	buf_free(&b);
}

static void test_failures(void)
{
	struct outcome o;
	size_t len;
	char *m;
	/* no signature: dkim=none */
	verify_msg(plain_msg, strlen(plain_msg), &o);
	CHECK(o.n == 0);
	/* revoked key */
	m = signed_with(k_revoked, plain_msg, &len);
	verify_msg(m, len, &o);
	CHECK_STREQ(o.result[0], "fail");
	CHECK_STREQ(o.reason[0], "key revoked");
	free(m);
	/* RSA 512 */
	m = signed_with(k_short, plain_msg, &len);
	verify_msg(m, len, &o);
	CHECK_STREQ(o.result[0], "permerror");
	CHECK(strstr(o.reason[0], "1024") != NULL);
	free(m);
	/* no key record */
	m = signed_with(k_nokey, plain_msg, &len);
	verify_msg(m, len, &o);
	CHECK_STREQ(o.result[0], "permerror");
	CHECK_STREQ(o.reason[0], "no key record");
	free(m);
	/* expired */
	m = handmade(k_rsa, "t=1000; x=2000;", "from:to", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "policy");
	CHECK_STREQ(o.reason[0], "signature expired");
	free(m);
	/* not yet expired */
	m = handmade(k_rsa, "t=1000; x=99999999999;", "from:to", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "pass");
	free(m);
	/* h= without From */
	m = handmade(k_rsa, "", "to:subject", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "permerror");
	CHECK(strstr(o.reason[0], "From") != NULL);
	free(m);
	/* l=: only the signed part counts; text appended after it still passes, reported */
	m = handmade(k_ed, "l=14;", "from", 14, plain_msg);
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, m);
	buf_puts(&b, "appended by someone else\r\n");
	verify_msg(b.data, b.len, &o);
	CHECK_STREQ(o.result[0], "pass");
	CHECK(o.limited[0]);
	CHECK(strstr(o.reason[0], "l=") != NULL);
	buf_free(&b);
	free(m);
	/* l= beyond the body */
	m = handmade(k_ed, "l=100000;", "from", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "fail");
	free(m);
	/* t=s in the key record: i= in a subdomain is refused */
	m = handmade(k_strict, "i=@sub.sign.test;", "from", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "permerror");
	free(m);
	m = handmade(k_strict, "i=@sign.test;", "from", UINT64_MAX, plain_msg);
	verify_msg(m, strlen(m), &o);
	CHECK_STREQ(o.result[0], "pass");
	free(m);
	/* a garbage signature next to a good one: each has its own result */
	m = signed_with(k_ed, plain_msg, &len);
	buf_init(&b, 0);
	buf_puts(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=sign.test; s=x; b=@@@\r\n");
	buf_puts(&b, m);
	verify_msg(b.data, b.len, &o);
	CHECK(o.n == 2);
	CHECK_STREQ(o.result[0], "permerror");
	CHECK_STREQ(o.result[1], "pass");
	buf_free(&b);
	/* more signatures than the cap: only DKIM_MAX_SIGNATURES are checked */
	buf_init(&b, 0);
	for (int i = 0; i < DKIM_MAX_SIGNATURES + 3; i++)
		buf_puts(&b, "DKIM-Signature: v=1; a=rsa-sha256; d=sign.test; s=x; b=AAAA\r\n");
	buf_puts(&b, m);
	verify_msg(b.data, b.len, &o);
	CHECK(o.n == DKIM_MAX_SIGNATURES);
	buf_free(&b);
	/* key type mismatch: an RSA signature with the Ed25519 selector */
	buf_init(&b, 0);
	const char *sel = strstr(m, "s=");
	buf_append(&b, m, (size_t)(sel - m));
	buf_puts(&b, "s=rsa1;");
	buf_puts(&b, strchr(sel, ';') + 1);
	verify_msg(b.data, b.len, &o);
	CHECK(strcmp(o.result[0], "pass") != 0);
	buf_free(&b);
	free(m);
}

/* ---- ARC ------------------------------------------------------------------------------------ */

struct arc_outcome {
	bool called, in_call;
	char cv[8];
	unsigned instances, oldest_pass;
	struct event_base *base;
};

static void on_arc_result(void *ctx, const struct arc_verify_result *r)
{
	struct arc_outcome *o = ctx;
	CHECK(!o->in_call && !o->called);
	o->called = true;
	snprintf(o->cv, sizeof(o->cv), "%s", r->cv);
	o->instances = r->instances;
	o->oldest_pass = r->oldest_pass;
	event_base_loopbreak(o->base);
}

static void arc_check(const char *msg, size_t len, struct arc_outcome *o)
{
	memset(o, 0, sizeof(*o));
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *err = NULL;
	o->base = base;
	CHECK(dns_init(base, dns_servers, &d, &err) == 0);
	o->in_call = true;
	CHECK(arc_verify_start(d, msg, len, on_arc_result, o) != NULL);
	o->in_call = false;
	event_base_dispatch(base);
	CHECK(o->called);
	dns_free(&d);
	event_base_free(base);
}

static void test_arc(void)
{
	struct arc_outcome o;
	char *err = NULL;
	arc_check(plain_msg, strlen(plain_msg), &o);
	CHECK_STREQ(o.cv, "none");
	/* three hops of our own seals, RSA and Ed25519 mixed */
	buf m;
	buf_init(&m, 0);
	buf_puts(&m, plain_msg);
	const struct dkim_key *hop[] = { k_rsa, k_ed, k_rsa };
	const char *cv = "none";
	for (int i = 0; i < 3; i++) {
		buf set;
		buf_init(&set, 0);
		CHECK(arc_seal(hop[i], m.data, m.len, cv, "mx.sign.test", "spf=pass", time(NULL), &set,
			       &err) == 1);
		buf_append(&set, m.data, m.len);
		buf_free(&m);
		m = set;
		arc_check(m.data, m.len, &o);
		CHECK_STREQ(o.cv, "pass");
		CHECK(o.instances == (unsigned)i + 1 && o.oldest_pass == 0);
		cv = "pass";
	}
	/* bad arguments, and cv=none on a message that has a chain */
	buf x;
	buf_init(&x, 0);
	CHECK(arc_seal(k_rsa, m.data, m.len, "maybe", "id", "", 0, &x, &err) < 0);
	free(err);
	err = NULL;
	CHECK(arc_seal(k_rsa, m.data, m.len, "pass", "id\r\nX-Injected: 1", "", 0, &x, &err) < 0);
	free(err);
	err = NULL;
	CHECK(arc_seal(k_rsa, m.data, m.len, "none", "id", "", 0, &x, &err) == 0 && x.len == 0);
	/* a removed AAR breaks the structure */
	char *aar = strstr(m.data, "ARC-Authentication-Results: i=2;");
	CHECK(aar != NULL);
	if (aar != NULL) {
		aar[4] = 'X';
		arc_check(m.data, m.len, &o);
		CHECK_STREQ(o.cv, "fail");
		aar[4] = 'A';
	}
	/* the body changed: the newest AMS fails */
	char *hello = strstr(m.data, "Hello");
	hello[0] = 'J';
	arc_check(m.data, m.len, &o);
	CHECK_STREQ(o.cv, "fail");
	buf_free(&x);
	buf_free(&m);
}

/* nasty messages: a huge folded header, many fields, no body, a bare header */
static void test_nasty_messages(void)
{
	struct outcome o;
	size_t len;
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "From: a@sign.test\r\nSubject: x");
	for (int i = 0; i < 20000; i++)
		buf_puts(&b, "\r\n\t word  word\t");
	buf_puts(&b, "\r\n");
	for (int i = 0; i < 3000; i++)
		buf_puts(&b, "X-Junk: 1\r\n");
	buf_puts(&b, "\r\nbody\r\n");
	char *m = signed_with(k_ed, b.data, &len);
	verify_msg(m, len, &o);
	CHECK(o.n == 1);
	CHECK_STREQ(o.result[0], "pass");
	free(m);
	buf_free(&b);
	/* header only, no empty line, no final line end */
	m = signed_with(k_rsa, "From: a@sign.test\r\nSubject: only a header", &len);
	verify_msg(m, len, &o);
	CHECK_STREQ(o.result[0], "pass");
	free(m);
	/* a signature field of 100 KB of tags */
	buf_init(&b, 0);
	buf_puts(&b, "DKIM-Signature: v=1");
	for (int i = 0; i < 10000; i++)
		buf_printf(&b, "; z%d=%d", i, i);
	buf_puts(&b, "\r\nFrom: a@sign.test\r\n\r\nx\r\n");
	verify_msg(b.data, b.len, &o);
	CHECK(o.n == 1);
	CHECK_STREQ(o.result[0], "permerror");
	CHECK_STREQ(o.reason[0], "bad signature: too many tags");
	buf_free(&b);
}

/* cancel before the answer: no callback, nothing leaks (ASan) */
static void test_cancel(void)
{
	size_t len;
	char *m = signed_with(k_rsa, plain_msg, &len);
	struct outcome o;
	memset(&o, 0, sizeof(o));
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *err = NULL;
	o.base = base;
	CHECK(dns_init(base, dns_servers, &d, &err) == 0);
	struct dkim_verify *v = dkim_verify_start(d, m, len, on_result, &o);
	dkim_verify_cancel(v);
	/* and one with nothing to look up */
	v = dkim_verify_start(d, plain_msg, strlen(plain_msg), on_result, &o);
	dkim_verify_cancel(v);
	event_base_loop(base, EVLOOP_NONBLOCK);
	dns_free(&d);
	event_base_free(base);
	CHECK(!o.called);
	free(m);
}

static void setup_keys(void)
{
	char *err = NULL;
	char dir[128];
	snprintf(dir, sizeof(dir), "%s/keys", tmpdir);
	CHECK(dkim_key_generate(dir, "sign.test", "rsa1", DKIM_KEYTYPE_RSA, &k_rsa, &err) == 0);
	CHECK(dkim_key_generate(dir, "sign.test", "ed1", DKIM_KEYTYPE_ED25519, &k_ed, &err) == 0);
	CHECK(dkim_key_generate(dir, "sign.test", "gone", DKIM_KEYTYPE_ED25519, &k_revoked, &err) == 0);
	CHECK(dkim_key_generate(dir, "sign.test", "strict", DKIM_KEYTYPE_ED25519, &k_strict, &err) == 0);
	CHECK(dkim_key_generate(dir, "sign.test", "nokey", DKIM_KEYTYPE_ED25519, &k_nokey, &err) == 0);
	/* an existing selector is refused; the files are 0600 in 0700 directories */
	struct dkim_key *again = NULL;
	CHECK(dkim_key_generate(dir, "sign.test", "rsa1", DKIM_KEYTYPE_RSA, &again, &err) < 0);
	free(err);
	struct stat st;
	char path[256];
	snprintf(path, sizeof(path), "%s/sign.test/rsa1.pem", dir);
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	/* the ring loads them back and picks the newest of each type */
	struct dkim_keyring *ring = NULL;
	CHECK(dkim_keyring_load(dir, &ring, &err) == 0 && ring->n == 5);
	const struct dkim_key *pick[2];
	CHECK(dkim_keyring_pick(ring, "SIGN.test", pick, 2) == 2);
	CHECK_STREQ(pick[0]->selector, "rsa1");
	CHECK_STREQ(pick[1]->selector, "strict");
	dkim_keyring_free(&ring);
	/* a symlinked domain directory is not followed */
	char link[256];
	snprintf(link, sizeof(link), "%s/evil.test", dir);
	CHECK(symlink("sign.test", link) == 0);
	CHECK(dkim_keyring_load(dir, &ring, &err) == 0 && ring->n == 5);
	dkim_keyring_free(&ring);
	CHECK(dkim_key_generate(dir, "evil.test", "x", DKIM_KEYTYPE_ED25519, &again, &err) < 0);
	free(err);

	/* a 512-bit RSA key, made directly (generate refuses nothing, but we make 2048) */
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
	EVP_PKEY *pk = NULL;
	EVP_PKEY_keygen_init(c);
	EVP_PKEY_CTX_set_rsa_keygen_bits(c, 512);
	EVP_PKEY_keygen(c, &pk);
	EVP_PKEY_CTX_free(c);
	k_short = calloc(1, sizeof(*k_short));
	k_short->domain = strdup("sign.test");
	k_short->selector = strdup("short");
	k_short->type = DKIM_KEYTYPE_RSA;
	k_short->pkey = pk;

	snprintf(path, sizeof(path), "%s/dnsmasq.conf", tmpdir);
	zone = fopen(path, "w");
	fputs("no-resolv\nno-hosts\nlocal=/test/\nlocal=/com/\n", zone);
	zone_txt(zone, "brisbane._domainkey.football.example.com",
		 "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
	zone_txt(zone, "test._domainkey.football.example.com",
		 "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
		 "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
		 "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
		 "Ip3G+2kryOTIKT+l/K4w3QIDAQAB");
	const struct dkim_key *pub[] = { k_rsa, k_ed, k_short };
	for (size_t i = 0; i < 3; i++) {
		char name[128], *rec = dkim_key_record(pub[i]);
		snprintf(name, sizeof(name), "%s._domainkey.sign.test", pub[i]->selector);
		zone_txt(zone, name, rec);
		free(rec);
	}
	char *rec = dkim_key_record(k_strict);
	char *strict = NULL;
	(void)!asprintf(&strict, "%s; t=s", rec);
	zone_txt(zone, "strict._domainkey.sign.test", strict);
	free(rec);
	free(strict);
	zone_txt(zone, "gone._domainkey.sign.test", "v=DKIM1; k=ed25519; p=");
}

static void test_all_with_dns(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		CHECK(0);
		return;
	}
	setup_keys();
	if (!dnsmasq_start()) {
		fprintf(stderr, "dnsmasq did not start (scripts/deps.sh installs dnsmasq-base)\n");
		CHECK(0);
		return;
	}
	test_rfc8463_example();
	test_sign_verify();
	test_failures();
	test_cancel();
	test_nasty_messages();
	test_arc();
	kill(dnsmasq_pid, SIGTERM);
	waitpid(dnsmasq_pid, NULL, 0);
	dkim_key_free(&k_rsa);
	dkim_key_free(&k_ed);
	dkim_key_free(&k_short);
	dkim_key_free(&k_revoked);
	dkim_key_free(&k_strict);
	dkim_key_free(&k_nokey);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	(void)!system(cmd);
}

/* dkim_dir: next to the config file by default, relative to it, or as given */
static void test_config_dkim_dir(void)
{
	static const struct {
		const char *name, *extra, *want;
	} cases[] = {
		{ "/etc/tern/tern.conf", "", "/etc/tern/dkim" },
		{ "/etc/tern/tern.conf", "dkim_dir = keys/dkim\n", "/etc/tern/keys/dkim" },
		{ "/etc/tern/tern.conf", "dkim_dir = /srv/dkim\n", "/srv/dkim" },
		{ "/tern.conf", "", "/dkim" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[256];
		char *err = NULL;
		snprintf(text, sizeof(text), "data_dir = /var/tern\ndomains = a.test\n%s", cases[i].extra);
		struct tern_config *c = config_load_string(cases[i].name, text, &err);
		CHECK(c != NULL);
		if (c != NULL)
			CHECK_STREQ(c->dkim_dir, cases[i].want);
		config_free(&c);
		free(err);
	}
}

TEST_MAIN(TEST(test_config_dkim_dir), TEST(test_tags), TEST(test_sig_parse), TEST(test_keyrec), TEST(test_canon_rfc_example),
	  TEST(test_body_hash), TEST(test_all_with_dns))
