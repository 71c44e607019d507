/* acme/jws - the JOSE pieces ACME needs (RFC 7515, 7517, 7518, 7638): base64url, the JWK of a
 * P-256 key, its thumbprint, and ES256 requests in the flattened JSON serialization. */
#ifndef TERN_ACME_JWS_H
#define TERN_ACME_JWS_H
#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

/* acme_b64url - base64url of p[0..n) without padding (RFC 7515 §2); a fresh string. */
char *acme_b64url(const void *p, size_t n);
/* acme_jwk - the public JWK of a P-256 key: {"crv":"P-256","kty":"EC","x":..,"y":..} (x and y
 * 32 bytes each, RFC 7518 §6.2.1). New reference, or NULL when key is not a P-256 key. */
json_t *acme_jwk(EVP_PKEY *key);
/* acme_jwk_thumbprint - base64url(SHA-256) of the JWK's required members in lexicographic
 * order without whitespace (RFC 7638 §3): EC (crv, kty, x, y) and RSA (e, kty, n). A fresh
 * string, or NULL with *error_r when a member is missing, not a string, or the kty unknown. */
char *acme_jwk_thumbprint(const json_t *jwk, char **error_r);
/* acme_ecdsa_raw - an ECDSA-Sig-Value (DER) as the fixed 64-byte r||s of ES256 (RFC 7518
 * §3.4), left-padded. 0, or -1 when the DER is malformed or r or s does not fit 32 bytes. */
int acme_ecdsa_raw(const unsigned char *der, size_t der_len, unsigned char out[64]);
/* acme_jws - a signed request body: {"protected":..,"payload":..,"signature":..}. The
 * protected header has alg ES256, nonce, url and either jwk (kid NULL: newAccount) or kid.
 * payload NULL means POST-as-GET (empty payload, RFC 8555 §6.3). A fresh string, or NULL
 * with *error_r. */
char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
	       const char *payload, char **error_r);
/* acme_new_p256 - a fresh P-256 key, or NULL. */
EVP_PKEY *acme_new_p256(void);

#endif
