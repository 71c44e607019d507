/* test_acme - the ACME client's JOSE pieces (base64url, RFC 7638 thumbprint, ES256 JWS with
 * raw r||s) and its readers of hostile CA responses (directory, order, authorization,
 * problem documents, Retry-After), the renewal decision and the CSR. */
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include "acme/acme.h"
#include "acme/cert.h"
#include "acme/jws.h"
#include "acme/resp.h"
#include "lib/base64.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "test.h"

/* b64url_decode - test helper: base64url without padding back to bytes */
static int b64url_decode(const char *s, buf *out)
{
	buf t;
	buf_init(&t, 0);
	for (const char *p = s; *p; p++)
		buf_putc(&t, *p == '-' ? '+' : *p == '_' ? '/' : *p);
	while (t.len % 4 != 0)
		buf_putc(&t, '=');
	int r = base64_decode(t.data ? t.data : "", t.len, out);
	buf_free(&t);
	return r;
}

static void test_b64url(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{ "", 0, "" },		 { "f", 1, "Zg" },	 { "fo", 2, "Zm8" },
		{ "foo", 3, "Zm9v" },	 { "foob", 4, "Zm9vYg" }, { "\xfb\xff", 2, "-_8" },
		{ "\x00\x00", 2, "AAA" }, { "\xff\xfe\xfd", 3, "__79" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = acme_b64url(cases[i].in, cases[i].len);
		CHECK_STREQ(s, cases[i].out);
		free(s);
	}
}

/* RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint */
#define RFC7638_N                                                                          \
	"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6t" \
	"Soc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-6" \
	"5YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLy" \
	"rdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzK" \
	"nqDKgw"
#define RFC7638_THUMB "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

static void test_thumbprint_rfc7638(void)
{
	char *err = NULL;
	/* members in any order, with others (alg, kid) that do not count */
	json_t *jwk = json_loads("{\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\",\"e\":\"AQAB\","
				 "\"alg\":\"RS256\",\"kid\":\"2011-04-29\"}",
				 0, NULL);
	CHECK(jwk != NULL);
	char *t = acme_jwk_thumbprint(jwk, &err);
	CHECK_STREQ(t, RFC7638_THUMB);
	free(t);
	json_decref(jwk);
}

static void test_thumbprint_bad(void)
{
	static const char *const bad[] = {
		"{}",
		"{\"kty\":\"oct\",\"k\":\"AAAA\"}",
		"{\"kty\":\"RSA\",\"n\":\"AQAB\"}",			/* no e */
		"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":65537}",		/* e not a string */
		"{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\"}",	/* no y */
		"{\"kty\":7}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = NULL;
		json_t *j = json_loads(bad[i], 0, NULL);
		CHECK(j != NULL);
		char *t = acme_jwk_thumbprint(j, &err);
		CHECK(t == NULL && err != NULL);
		free(t);
		free(err);
		json_decref(j);
	}
}

static void test_jwk_ec(void)
{
	EVP_PKEY *key = acme_new_p256();
	json_t *jwk = acme_jwk(key);
	CHECK(jwk != NULL);
	CHECK_STREQ(json_string_value(json_object_get(jwk, "kty")), "EC");
	CHECK_STREQ(json_string_value(json_object_get(jwk, "crv")), "P-256");
	const char *x = json_string_value(json_object_get(jwk, "x"));
	const char *y = json_string_value(json_object_get(jwk, "y"));
	CHECK(x != NULL && strlen(x) == 43 && y != NULL && strlen(y) == 43); /* 32 bytes */
	/* the thumbprint is the hash of exactly {"crv","kty","x","y"} */
	char *canon = xasprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)canon, strlen(canon), md);
	char *want = acme_b64url(md, sizeof(md)), *err = NULL;
	char *got = acme_jwk_thumbprint(jwk, &err);
	CHECK_STREQ(got, want);
	free(canon);
	free(want);
	free(got);
	json_decref(jwk);
	EVP_PKEY_free(key);
	/* not P-256: no JWK */
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	CHECK(acme_jwk(p384) == NULL);
	EVP_PKEY_free(p384);
}

/* der_sig - an ECDSA-Sig-Value of r and s given as hex */
static int der_sig(const char *rhex, const char *shex, unsigned char *out)
{
	BIGNUM *r = NULL, *s = NULL;
	BN_hex2bn(&r, rhex);
	BN_hex2bn(&s, shex);
	ECDSA_SIG *sig = ECDSA_SIG_new();
	ECDSA_SIG_set0(sig, r, s);
	unsigned char *p = out;
	int n = i2d_ECDSA_SIG(sig, &p);
	ECDSA_SIG_free(sig);
	return n;
}

static void test_ecdsa_raw(void)
{
	unsigned char der[128], raw[64];
	/* small r and s are left-padded to 32 bytes each */
	int n = der_sig("01", "0203", der);
	CHECK(acme_ecdsa_raw(der, (size_t)n, raw) == 0);
	CHECK(raw[31] == 1 && raw[62] == 2 && raw[63] == 3);
	for (int i = 0; i < 31; i++)
		CHECK(raw[i] == 0);
	/* a full-width r with its high bit set (DER adds a 0 byte) */
	n = der_sig("FF00000000000000000000000000000000000000000000000000000000000001", "05", der);
	CHECK(acme_ecdsa_raw(der, (size_t)n, raw) == 0);
	CHECK(raw[0] == 0xff && raw[31] == 1 && raw[63] == 5);
	/* r of 33 bytes does not fit */
	n = der_sig("010000000000000000000000000000000000000000000000000000000000000000", "05", der);
	CHECK(acme_ecdsa_raw(der, (size_t)n, raw) < 0);
	/* trailing junk, truncation, garbage */
	n = der_sig("01", "02", der);
	der[n] = 0;
	CHECK(acme_ecdsa_raw(der, (size_t)n + 1, raw) < 0);
	CHECK(acme_ecdsa_raw(der, (size_t)n - 1, raw) < 0);
	CHECK(acme_ecdsa_raw((const unsigned char *)"\x30\x80", 2, raw) < 0);
	CHECK(acme_ecdsa_raw((const unsigned char *)"", 0, raw) < 0);
}

/* jws_check - verify a flattened JWS made by acme_jws: header fields and the signature */
static void jws_check(const char *jws, EVP_PKEY *key, const char *kid, const char *payload)
{
	json_t *j = json_loads(jws, 0, NULL);
	CHECK(json_is_object(j) && json_object_size(j) == 3);
	const char *p64 = json_string_value(json_object_get(j, "protected"));
	const char *pay64 = json_string_value(json_object_get(j, "payload"));
	const char *s64 = json_string_value(json_object_get(j, "signature"));
	CHECK(p64 && pay64 && s64);
	if (!p64 || !pay64 || !s64) {
		json_decref(j);
		return;
	}
	CHECK(strpbrk(p64, "+/=") == NULL && strpbrk(s64, "+/=") == NULL);
	buf prot, pay, sig;
	buf_init(&prot, 0);
	buf_init(&pay, 0);
	buf_init(&sig, 0);
	CHECK(b64url_decode(p64, &prot) == 0 && b64url_decode(pay64, &pay) == 0 &&
	      b64url_decode(s64, &sig) == 0);
	json_t *h = json_loadb(prot.data, prot.len, 0, NULL);
	CHECK_STREQ(json_string_value(json_object_get(h, "alg")), "ES256");
	CHECK_STREQ(json_string_value(json_object_get(h, "nonce")), "n0nce");
	CHECK_STREQ(json_string_value(json_object_get(h, "url")), "https://ca.test/x");
	if (kid != NULL) {
		CHECK_STREQ(json_string_value(json_object_get(h, "kid")), kid);
		CHECK(json_object_get(h, "jwk") == NULL);
	} else {
		CHECK(json_is_object(json_object_get(h, "jwk")));
		CHECK(json_object_get(h, "kid") == NULL);
	}
	json_decref(h);
	if (payload == NULL)
		CHECK(pay.len == 0 && pay64[0] == '\0');
	else
		CHECK(pay.len == strlen(payload) && memcmp(pay.data, payload, pay.len) == 0);
	/* the signature is 64 bytes r||s over "protected.payload" */
	CHECK(sig.len == 64);
	if (sig.len == 64) {
		BIGNUM *r = BN_bin2bn((unsigned char *)sig.data, 32, NULL);
		BIGNUM *s = BN_bin2bn((unsigned char *)sig.data + 32, 32, NULL);
		ECDSA_SIG *es = ECDSA_SIG_new();
		ECDSA_SIG_set0(es, r, s);
		unsigned char *der = NULL;
		int dlen = i2d_ECDSA_SIG(es, &der);
		char *input = xasprintf("%s.%s", p64, pay64);
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1);
		CHECK(EVP_DigestVerify(md, der, (size_t)dlen, (unsigned char *)input,
				       strlen(input)) == 1);
		/* and not over anything else */
		input[0] ^= 1;
		CHECK(EVP_DigestVerify(md, der, (size_t)dlen, (unsigned char *)input,
				       strlen(input)) != 1);
		EVP_MD_CTX_free(md);
		free(input);
		OPENSSL_free(der);
		ECDSA_SIG_free(es);
	}
	buf_free(&prot);
	buf_free(&pay);
	buf_free(&sig);
	json_decref(j);
}

static void test_jws(void)
{
	EVP_PKEY *key = acme_new_p256();
	char *err = NULL;
	char *jws = acme_jws(key, NULL, "n0nce", "https://ca.test/x", "{\"a\":1}", &err);
	CHECK(jws != NULL);
	if (jws != NULL)
		jws_check(jws, key, NULL, "{\"a\":1}");
	free(jws);
	jws = acme_jws(key, "https://ca.test/acct/1", "n0nce", "https://ca.test/x", NULL, &err);
	CHECK(jws != NULL);
	if (jws != NULL)
		jws_check(jws, key, "https://ca.test/acct/1", NULL);
	free(jws);
	EVP_PKEY_free(key);
}

#define DIR_OK                                                                            \
	"{\"newNonce\":\"https://ca.test/nonce\",\"newAccount\":\"https://ca.test/acct\","     \
	"\"newOrder\":\"https://ca.test/order\",\"meta\":{\"termsOfService\":\"https://t\"}}"

static void test_directory(void)
{
	struct acme_directory d;
	char *err = NULL;
	CHECK(acme_parse_directory(DIR_OK, strlen(DIR_OK), &d, &err) == 0);
	CHECK_STREQ(d.new_order, "https://ca.test/order");
	CHECK_STREQ(d.terms, "https://t");
	acme_directory_free(&d);
	static const char *const bad[] = {
		"",
		"[]",
		"\"https://x\"",
		"{",
		"{\"newNonce\":\"https://a\",\"newAccount\":\"https://b\"}",	/* no newOrder */
		"{\"newNonce\":\"http://a\",\"newAccount\":\"https://b\",\"newOrder\":\"https://c\"}",
		"{\"newNonce\":\"file:///etc/passwd\",\"newAccount\":\"https://b\","
		"\"newOrder\":\"https://c\"}",
		"{\"newNonce\":1,\"newAccount\":\"https://b\",\"newOrder\":\"https://c\"}",
		"{\"newNonce\":\"https://a\\u0000x\",\"newAccount\":\"https://b\","
		"\"newOrder\":\"https://c\"}",
		"{\"newNonce\":\"https://a\\r\\nX: y\",\"newAccount\":\"https://b\","
		"\"newOrder\":\"https://c\"}",
		"{\"newNonce\":\"https://a\",\"newNonce\":\"https://b\",\"newAccount\":\"https://b\","
		"\"newOrder\":\"https://c\"}",						/* duplicate */
		"{\"newNonce\":\"https://\",\"newAccount\":\"https://b\",\"newOrder\":\"https://c\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK(acme_parse_directory(bad[i], strlen(bad[i]), &d, &err) < 0 && err != NULL);
		CHECK(d.new_nonce == NULL && d.new_order == NULL);
		free(err);
	}
	/* an over-long string and an over-large body */
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "{\"newNonce\":\"https://");
	for (int i = 0; i < ACME_MAX_STRING; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "\",\"newAccount\":\"https://b\",\"newOrder\":\"https://c\"}");
	err = NULL;
	CHECK(acme_parse_directory(b.data, b.len, &d, &err) < 0);
	free(err);
	buf_reset(&b);
	buf_puts(&b, DIR_OK);
	while (b.len <= ACME_MAX_BODY)
		buf_puts(&b, "                                ");
	err = NULL;
	CHECK(acme_parse_directory(b.data, b.len, &d, &err) < 0 && strstr(err, "too large"));
	free(err);
	/* deep nesting: jansson's own depth limit answers, no crash */
	buf_reset(&b);
	for (int i = 0; i < 100000; i++)
		buf_putc(&b, '[');
	err = NULL;
	CHECK(acme_parse_directory(b.data, b.len, &d, &err) < 0);
	free(err);
	buf_free(&b);
}

static void test_order(void)
{
	const char *ok = "{\"status\":\"pending\",\"authorizations\":[\"https://ca.test/a/1\","
			 "\"https://ca.test/a/2\"],\"finalize\":\"https://ca.test/f\"}";
	struct acme_order o;
	char *err = NULL;
	CHECK(acme_parse_order(ok, strlen(ok), &o, &err) == 0);
	CHECK(o.n_authz == 2 && strcmp(o.authz[1], "https://ca.test/a/2") == 0);
	CHECK(o.certificate == NULL);
	acme_order_free(&o);
	const char *valid = "{\"status\":\"valid\",\"authorizations\":[\"https://a\"],"
			    "\"finalize\":\"https://f\",\"certificate\":\"https://c\"}";
	CHECK(acme_parse_order(valid, strlen(valid), &o, &err) == 0);
	CHECK_STREQ(o.certificate, "https://c");
	acme_order_free(&o);
	static const char *const bad[] = {
		"{\"status\":\"pending\",\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":[],\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":\"https://a\",\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":[\"https://a\",7],\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":[\"https://a\",null],"
		"\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":[\"http://a\"],\"finalize\":\"https://f\"}",
		"{\"status\":\"pending\",\"authorizations\":[\"https://a\"]}",
		"{\"status\":[],\"authorizations\":[\"https://a\"],\"finalize\":\"https://f\"}",
		"{\"status\":\"valid\",\"authorizations\":[\"https://a\"],\"finalize\":\"https://f\","
		"\"certificate\":\"ftp://c\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK(acme_parse_order(bad[i], strlen(bad[i]), &o, &err) < 0 && err != NULL);
		CHECK(o.authz == NULL && o.n_authz == 0 && o.status == NULL);
		free(err);
	}
	/* more authorizations than we take */
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "{\"status\":\"pending\",\"finalize\":\"https://f\",\"authorizations\":[");
	for (int i = 0; i <= ACME_MAX_AUTHZ; i++)
		buf_printf(&b, "%s\"https://a/%d\"", i ? "," : "", i);
	buf_puts(&b, "]}");
	err = NULL;
	CHECK(acme_parse_order(b.data, b.len, &o, &err) < 0);
	free(err);
	buf_free(&b);
}

#define TOKEN "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"

static void test_authz(void)
{
	const char *ok = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":"
			 "\"mx.example.test\"},\"challenges\":[{\"type\":\"dns-01\",\"url\":"
			 "\"https://c/1\",\"token\":\"../../etc\",\"status\":\"pending\"},"
			 "{\"type\":\"http-01\",\"url\":\"https://c/2\",\"token\":\"" TOKEN "\","
			 "\"status\":\"pending\"}]}";
	struct acme_authz a;
	char *err = NULL;
	CHECK(acme_parse_authz(ok, strlen(ok), &a, &err) == 0);
	CHECK_STREQ(a.identifier, "mx.example.test");
	CHECK_STREQ(a.token, TOKEN);	/* the dns-01 one (a bad token) is not looked at */
	CHECK_STREQ(a.challenge_url, "https://c/2");
	CHECK(a.challenge_error == NULL);
	acme_authz_free(&a);
	/* no http-01 offered: parsed, without a token */
	const char *none = "{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},"
			   "\"challenges\":[{\"type\":\"tls-alpn-01\",\"url\":\"https://c\","
			   "\"token\":\"" TOKEN "\",\"status\":\"pending\"}]}";
	CHECK(acme_parse_authz(none, strlen(none), &a, &err) == 0 && a.token == NULL);
	acme_authz_free(&a);
	/* an invalid challenge carries the CA's problem document */
	const char *inv = "{\"status\":\"invalid\",\"identifier\":{\"value\":\"a.test\"},"
			  "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://c\",\"token\":\"" TOKEN
			  "\",\"status\":\"invalid\",\"error\":{\"type\":\"urn:ietf:params:acme:"
			  "error:connection\",\"detail\":\"refused\\u001b[31m\"}}]}";
	CHECK(acme_parse_authz(inv, strlen(inv), &a, &err) == 0);
	CHECK(a.challenge_error != NULL && strstr(a.challenge_error, "error:connection: refused") &&
	      strchr(a.challenge_error, '\x1b') == NULL);
	acme_authz_free(&a);
	/* tokens that would escape the challenge directory or are not base64url */
	static const char *const bad_tokens[] = {
		"../../../../etc/passwd", "abc/defghijklmnopq", ".htaccessxxxxxxxxx", "short",
		"AAAAAAAAAAAAAAAA AAAA", "AAAAAAAAAAAAAAAA=",	"AAAAAAAAAAAAAAAA\\u0000",
	};
	for (size_t i = 0; i < sizeof(bad_tokens) / sizeof(bad_tokens[0]); i++) {
		char *body = xasprintf("{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},"
				       "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://c\","
				       "\"token\":\"%s\",\"status\":\"pending\"}]}",
				       bad_tokens[i]);
		err = NULL;
		CHECK(acme_parse_authz(body, strlen(body), &a, &err) < 0 && err != NULL);
		CHECK(a.token == NULL && a.identifier == NULL);
		free(err);
		free(body);
	}
	static const char *const bad[] = {
		"{\"status\":\"pending\",\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":\"a.test\",\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"}}",
		"{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},\"challenges\":{}}",
		"{\"status\":\"pending\",\"identifier\":{\"value\":\"a.test\"},\"challenges\":"
		"[{\"type\":\"http-01\",\"token\":\"" TOKEN "\",\"status\":\"pending\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK(acme_parse_authz(bad[i], strlen(bad[i]), &a, &err) < 0 && err != NULL);
		CHECK(a.status == NULL && a.identifier == NULL && a.token == NULL);
		free(err);
	}
	CHECK(acme_token_ok(TOKEN));
}

static void test_problem(void)
{
	const char *p = "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
			"\"detail\":\"no\\nway\",\"subproblems\":[{\"type\":\"x\",\"detail\":\"bad "
			"name\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.test\"}}]}";
	char *t = acme_problem_text(p, strlen(p));
	CHECK(strstr(t, "urn:ietf:params:acme:error:rejectedIdentifier: no\\x0away") != NULL);
	CHECK(strstr(t, "; a.test: bad name") != NULL);
	CHECK(strchr(t, '\n') == NULL);
	free(t);
	t = acme_problem_text("<html>\x01oops", 11);
	CHECK(strncmp(t, "(not a problem document) <html>", 31) == 0 && strchr(t, '\x01') == NULL);
	free(t);
	t = acme_problem_text("", 0);
	CHECK(t != NULL);
	free(t);
	const char *bn = "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"x\"}";
	CHECK(acme_problem_is(bn, strlen(bn), "badNonce"));
	CHECK(!acme_problem_is(bn, strlen(bn), "badNonceX"));
	CHECK(!acme_problem_is(bn, strlen(bn), "malformed"));
	CHECK(!acme_problem_is("{\"type\":\"badNonce\"}", 19, "badNonce"));
	CHECK(!acme_problem_is("nonsense", 8, "badNonce"));
}

static void test_retry_after(void)
{
	CHECK(acme_retry_after("5", 1, 1, 10) == 5);
	CHECK(acme_retry_after(" 3", 1, 1, 10) == 3);
	CHECK(acme_retry_after("0", 2, 1, 10) == 1);
	CHECK(acme_retry_after("86400", 1, 1, 10) == 10);
	CHECK(acme_retry_after("99999999999999999999999", 2, 1, 10) == 2);
	CHECK(acme_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 2, 1, 10) == 2);
	CHECK(acme_retry_after("-1", 2, 1, 10) == 2);
	CHECK(acme_retry_after("4x", 2, 1, 10) == 2);
	CHECK(acme_retry_after("", 2, 1, 10) == 2);
	CHECK(acme_retry_after(NULL, 2, 1, 10) == 2);
}

static void test_names_and_due(void)
{
	char *err = NULL;
	struct tern_config *cfg = config_load_string(
		"(t)", "data_dir = /tmp/x\nhostname = mx.a.test\ndomains = a.test b.test\n", &err);
	CHECK(cfg != NULL);
	size_t n;
	char **names = acme_names(cfg, &n);
	CHECK(n == 5);
	CHECK_STREQ(names[0], "mx.a.test");
	CHECK_STREQ(names[1], "mta-sts.a.test");
	CHECK_STREQ(names[4], "autoconfig.b.test");
	/* a self-signed certificate is due; nothing readable is due */
	char dir[] = "/tmp/test_acme.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
	CHECK(tls_make_selfsigned(cert, key, "mx.a.test", &err) == 0);
	char *pem = NULL;
	size_t len = 0;
	FILE *f = fopen(cert, "r");
	CHECK(f != NULL);
	pem = xmalloc(65536);
	len = fread(pem, 1, 65535, f);
	fclose(f);
	long na;
	char *why = acme_cert_due(pem, len, names, n, 30, &na);
	CHECK(why != NULL && strstr(why, "self-signed"));
	CHECK(na > 0);
	free(why);
	why = acme_cert_due("junk", 4, names, n, 30, &na);
	CHECK(why != NULL && na == 0);
	free(why);
	/* a CSR names every name and is signed by the key */
	EVP_PKEY *k = acme_new_p256();
	size_t dlen;
	unsigned char *der = acme_make_csr(k, names, n, &dlen);
	CHECK(der != NULL && dlen > 0);
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)dlen);
	CHECK(req != NULL && X509_REQ_verify(req, k) == 1);
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *sans = NULL;
	for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
		if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
			sans = X509V3_EXT_d2i(e);
	}
	CHECK(sans != NULL && sk_GENERAL_NAME_num(sans) == (int)n);
	for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		CHECK(g->type == GEN_DNS &&
		      strcmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), names[i]) == 0);
	}
	GENERAL_NAMES_free(sans);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	OPENSSL_free(der);
	/* the chain check: a certificate for another key is refused */
	long not_after;
	char *serial;
	why = acme_check_chain(pem, len, k, names, n, &not_after, &serial);
	CHECK(why != NULL && strstr(why, "not for our key"));
	free(why);
	free(serial);
	EVP_PKEY_free(k);
	free(pem);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	free(cert);
	free(key);
	acme_names_free(names, n);
	config_free(&cfg);
}

static void test_config_keys(void)
{
	static const char *const bad[] = {
		"[tls]\nacme = http://ca.test/dir\n",
		"[tls]\nacme_email = nobody\n",
		"[tls]\nacme_ca_file = relative.pem\n",
		"[tls]\nacme_renew_days = 0\n",
		"[tls]\nacme_renew_days = 366\n",
		"[tls]\nacme_check_interval = 1x\n",
		"[tls]\nacme_names = not_a..name\n",
		"[tls]\nacme_bogus = 1\n",
		"[tls]\nacme = https://ca.test/dir\ncert = /a.pem\nkey = /b.pem\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = NULL;
		char *text = xasprintf("data_dir = /tmp/x\ndomains = a.test\n%s", bad[i]);
		struct tern_config *c = config_load_string("(t)", text, &err);
		CHECK(c == NULL && err != NULL);
		config_free(&c);
		free(err);
		free(text);
	}
	char *err = NULL;
	struct tern_config *c = config_load_string(
		"(t)",
		"data_dir = /tmp/x\ndomains = a.test\n[tls]\nacme = https://ca.test/dir\n"
		"acme_email = hostmaster@a.test\nacme_ca_file = /etc/ca.pem\nacme_renew_days = 20\n"
		"acme_check_interval = 600\nacme_names = mail.a.test, a.test\n",
		&err);
	CHECK(c != NULL);
	if (c != NULL) {
		CHECK_STREQ(c->acme_url, "https://ca.test/dir");
		CHECK(c->acme_renew_days == 20 && c->acme_check_interval == 600);
		CHECK(c->n_acme_names == 2 && strcmp(c->acme_names[1], "a.test") == 0);
		size_t n;
		char **names = acme_names(c, &n);
		CHECK(n == 2);
		acme_names_free(names, n);
	}
	config_free(&c);
}

TEST_MAIN(TEST(test_b64url), TEST(test_thumbprint_rfc7638), TEST(test_thumbprint_bad),
	  TEST(test_jwk_ec), TEST(test_ecdsa_raw), TEST(test_jws), TEST(test_directory),
	  TEST(test_order), TEST(test_authz), TEST(test_problem), TEST(test_retry_after),
	  TEST(test_names_and_due), TEST(test_config_keys))
