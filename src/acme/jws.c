/* acme/jws - base64url, JWK, thumbprint and ES256 JWS for the ACME client */
#include "acme/jws.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/sha.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"

char *acme_b64url(const void *p, size_t n)
{
	buf b;
	buf_init(&b, 0);
	if (base64_encode(p, n, &b) < 0)
		abort();	/* no cap: cannot fail */
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	size_t j = 0;
	for (size_t i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		if (c == '=')
			break;
		s[j++] = c == '+' ? '-' : c == '/' ? '_' : c;
	}
	s[j] = '\0';
	return s;
}

/* bn_b64url - a big number as a fixed-width big-endian field, base64url */
static char *bn_b64url(const BIGNUM *bn, int width)
{
	unsigned char raw[66];
	if (width > (int)sizeof(raw) || BN_bn2binpad(bn, raw, width) != width)
		return NULL;
	return acme_b64url(raw, (size_t)width);
}

json_t *acme_jwk(EVP_PKEY *key)
{
	char curve[32];
	BIGNUM *x = NULL, *y = NULL;
	json_t *jwk = NULL;
	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
	    EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve),
					   NULL) != 1 ||
	    strcmp(curve, "prime256v1") != 0)
		return NULL;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
	    EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1) {
		char *xs = bn_b64url(x, 32), *ys = bn_b64url(y, 32);
		if (xs != NULL && ys != NULL)
			jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC", "x", xs,
					"y", ys);
		free(xs);
		free(ys);
	}
	BN_free(x);
	BN_free(y);
	return jwk;
}

char *acme_jwk_thumbprint(const json_t *jwk, char **error_r)
{
	static const char *const ec[] = { "crv", "kty", "x", "y", NULL };
	static const char *const rsa[] = { "e", "kty", "n", NULL };
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *const *members = kty == NULL		? NULL
				     : strcmp(kty, "EC") == 0	? ec
				     : strcmp(kty, "RSA") == 0 ? rsa
								: NULL;
	if (members == NULL) {
		*error_r = xstrdup("JWK: kty missing or not EC/RSA");
		return NULL;
	}
	/* RFC 7638 §3.3: the members in order, each value as JSON with no whitespace; values
	 * are base64url or fixed names, but dump them with jansson so nothing can break out */
	buf b;
	buf_init(&b, 0);
	buf_putc(&b, '{');
	for (size_t i = 0; members[i] != NULL; i++) {
		json_t *v = json_object_get(jwk, members[i]);
		char *dumped = json_is_string(v) ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
		if (dumped == NULL) {
			*error_r = xasprintf("JWK: member %s missing or not a string", members[i]);
			buf_free(&b);
			return NULL;
		}
		buf_printf(&b, "%s\"%s\":%s", i > 0 ? "," : "", members[i], dumped);
		free(dumped);
	}
	buf_putc(&b, '}');
	unsigned char md[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)b.data, b.len, md);
	buf_free(&b);
	return acme_b64url(md, sizeof(md));
}

int acme_ecdsa_raw(const unsigned char *der, size_t der_len, unsigned char out[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	if (sig == NULL)
		return -1;
	int ok = p == der + der_len;	/* no trailing bytes */
	const BIGNUM *r, *s;
	ECDSA_SIG_get0(sig, &r, &s);
	ok = ok && BN_bn2binpad(r, out, 32) == 32 && BN_bn2binpad(s, out + 32, 32) == 32;
	ECDSA_SIG_free(sig);
	return ok ? 0 : -1;
}

EVP_PKEY *acme_new_p256(void)
{
	return EVP_EC_gen("P-256");
}

char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
	       const char *payload, char **error_r)
{
	json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
	if (prot == NULL) {
		*error_r = xstrdup("JWS: bad nonce or url");
		return NULL;
	}
	if (kid != NULL) {
		json_object_set_new(prot, "kid", json_string(kid));
	} else {
		json_t *jwk = acme_jwk(key);
		if (jwk == NULL) {
			json_decref(prot);
			*error_r = xstrdup("JWS: the account key is not a P-256 key");
			return NULL;
		}
		json_object_set_new(prot, "jwk", jwk);
	}
	char *prot_json = json_dumps(prot, JSON_COMPACT);
	json_decref(prot);
	char *prot64 = acme_b64url(prot_json, strlen(prot_json));
	free(prot_json);
	char *pay64 = payload != NULL ? acme_b64url(payload, strlen(payload)) : xstrdup("");
	char *input = xasprintf("%s.%s", prot64, pay64);

	unsigned char der[80], raw[64];
	size_t der_len = sizeof(der);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md != NULL && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
		 EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, strlen(input)) == 1 &&
		 acme_ecdsa_raw(der, der_len, raw) == 0;
	EVP_MD_CTX_free(md);
	free(input);
	char *out = NULL;
	if (ok) {
		char *sig64 = acme_b64url(raw, sizeof(raw));
		json_t *jws = json_pack("{s:s, s:s, s:s}", "protected", prot64, "payload", pay64,
					"signature", sig64);
		out = json_dumps(jws, JSON_COMPACT);
		json_decref(jws);
		free(sig64);
	} else {
		*error_r = xstrdup("JWS: signing failed");
	}
	free(prot64);
	free(pay64);
	return out;
}
