/* dkim_verify - check DKIM-Signature fields (RFC 6376 §6), keys by async TXT lookups */
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/internal.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"

#define MAX_FIELDS 1000

static time_t fixed_now;

void dkim_verify_set_now(time_t now)
{
	fixed_now = now;
}

time_t dkim_now(void)
{
	return fixed_now ? fixed_now : time(NULL);
}

char *dkim_key_query_name(const char *selector, const char *domain)
{
	return xasprintf("%s._domainkey.%s", selector, domain);
}

int dkim_crypto_verify(void *pkey, enum dkim_alg alg, const char *data, size_t len,
		       const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = 0;
	if (c == NULL)
		return 0;
	if (alg == DKIM_ALG_ED25519_SHA256) {
		unsigned char hash[32];
		unsigned int hl = 0;
		ok = EVP_Digest(data, len, hash, &hl, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestVerifyInit(c, NULL, NULL, NULL, pkey) == 1 &&
		     EVP_DigestVerify(c, sig, siglen, hash, hl) == 1;
	} else if (alg == DKIM_ALG_RSA_SHA256) {
		ok = EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pkey) == 1 &&
		     EVP_DigestVerify(c, sig, siglen, (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(c);
	return ok;
}

void *dkim_pubkey(const struct dkim_keyrec *k, enum dkim_alg alg, const char **result_r,
		  const char **reason_r)
{
	*result_r = "permerror";
	if (k->revoked) {
		*result_r = "fail";
		*reason_r = "key revoked";
		return NULL;
	}
	if (!k->sha256_ok) {
		*reason_r = "key record h= does not allow sha256";
		return NULL;
	}
	if (!k->email_ok) {
		*reason_r = "key record s= does not allow email";
		return NULL;
	}
	const unsigned char *p = (const unsigned char *)k->p.data;
	EVP_PKEY *pk = NULL;
	if (alg == DKIM_ALG_RSA_SHA256) {
		if (k->k != DKIM_KEY_RSA) {
			*reason_r = "key type does not match a=";
			return NULL;
		}
		pk = d2i_PUBKEY(NULL, &p, (long)k->p.len);
		if (pk == NULL) {	/* some publish the bare RSAPublicKey */
			p = (const unsigned char *)k->p.data;
			pk = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)k->p.len);
		}
		if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA) {
			EVP_PKEY_free(pk);
			*reason_r = "bad RSA key in key record";
			return NULL;
		}
		if (EVP_PKEY_get_bits(pk) < 1024) {
			EVP_PKEY_free(pk);
			*reason_r = "RSA key shorter than 1024 bits (RFC 8301)";
			return NULL;
		}
		return pk;
	}
	if (alg == DKIM_ALG_ED25519_SHA256) {
		if (k->k != DKIM_KEY_ED25519) {
			*reason_r = "key type does not match a=";
			return NULL;
		}
		pk = k->p.len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, 32)
				    : NULL;
		if (pk == NULL)
			*reason_r = "bad Ed25519 key in key record";
		return pk;
	}
	*reason_r = "unsupported algorithm";
	return NULL;
}

void dkim_pubkey_free(void *pkey)
{
	EVP_PKEY_free(pkey);
}

/* ---- one signature in flight ------------------------------------------------------------- */

struct vsig {
	struct dkim_verify *v;
	struct dkim_sig sig;
	buf data;		/* what the signature covers (header hash input) */
	const char *result, *reason;
	char reason_buf[96];
	bool testing;
};

struct dkim_verify {
	struct dns *dns;
	struct event *ev;	/* defers the callback when no lookup is needed */
	dkim_verify_cb *cb;
	void *ctx;
	struct vsig *s;
	size_t n, pending;
	bool cancelled, delivering;
};

/* Bodies hashed once per (canonicalisation, length). */
struct bh_cache {
	enum dkim_canon c;
	uint64_t limit;
	unsigned char hash[32];
	uint64_t canon_len;
	int ok;
};

static void verify_free(struct dkim_verify *v)
{
	for (size_t i = 0; i < v->n; i++) {
		dkim_sig_free(&v->s[i].sig);
		buf_free(&v->s[i].data);
	}
	free(v->s);
	if (v->ev != NULL)
		event_free(v->ev);
	free(v);
}

/* finish - every signature has its result: tell the caller, then free */
static void finish(struct dkim_verify *v)
{
	struct dkim_sig_result *res = xcalloc(v->n ? v->n : 1, sizeof(*res));
	for (size_t i = 0; i < v->n; i++) {
		struct vsig *s = &v->s[i];
		res[i].result = s->result;
		res[i].domain = s->sig.d;
		res[i].selector = s->sig.s;
		res[i].algorithm = s->sig.a;
		res[i].b = s->sig.b8;
		res[i].reason = s->reason;
		res[i].identity = s->sig.i;
		res[i].testing = s->testing;
		res[i].body_length_limited = s->sig.has_l;
	}
	struct dkim_verify_result r = { .n = v->n, .sigs = res };
	v->delivering = true;
	v->cb(v->ctx, &r);
	free(res);
	verify_free(v);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
	finish(arg);
}

void dkim_key_verify(const struct dns_txt_result *r, const struct dkim_sig *sig, const buf *data,
		     const char **result_r, const char **reason_r, char *reason_buf,
		     size_t reason_size, bool *testing_r)
{
	if (r->status == DNS_ANSWER_TEMPFAIL) {
		*result_r = "temperror";
		*reason_r = "key lookup failed";
		return;
	}
	if (r->status != DNS_ANSWER_OK || r->n == 0) {
		*result_r = "permerror";
		*reason_r = "no key record";
		return;
	}
	struct dkim_keyrec k;
	const char *err = NULL;
	int parsed = -1;
	memset(&k, 0, sizeof(k));
	for (size_t i = 0; i < r->n && parsed < 0; i++) {
		dkim_keyrec_free(&k);
		parsed = dkim_keyrec_parse(r->txts[i], strlen(r->txts[i]), &k, &err);
	}
	if (parsed < 0) {
		snprintf(reason_buf, reason_size, "bad key record: %s", err ? err : "unparsable");
		*result_r = "permerror";
		*reason_r = reason_buf;
		dkim_keyrec_free(&k);
		return;
	}
	if (testing_r != NULL)
		*testing_r = k.testing;
	if (k.strict && sig->i != NULL) {
		const char *at = strrchr(sig->i, '@');
		if (strcasecmp(at ? at + 1 : sig->i, sig->d) != 0) {
			*result_r = "permerror";
			*reason_r = "key record t=s: i= domain must be d=";
			dkim_keyrec_free(&k);
			return;
		}
	}
	void *pk = dkim_pubkey(&k, sig->alg, result_r, reason_r);
	dkim_keyrec_free(&k);
	if (pk == NULL)
		return;
	if (dkim_crypto_verify(pk, sig->alg, data->data, data->len,
			       (const unsigned char *)sig->b.data, sig->b.len)) {
		*result_r = "pass";
		*reason_r = sig->has_l ? "body length limit l= used: only part of the body is signed"
				       : NULL;
	} else {
		*result_r = "fail";
		*reason_r = "signature did not verify";
	}
	dkim_pubkey_free(pk);
}

/* check_key - a key record answer for one signature */
static void check_key(struct vsig *s, const struct dns_txt_result *r)
{
	dkim_key_verify(r, &s->sig, &s->data, &s->result, &s->reason, s->reason_buf,
			sizeof(s->reason_buf), &s->testing);
}

static void on_key(void *ctx, const struct dns_txt_result *r)
{
	struct vsig *s = ctx;
	struct dkim_verify *v = s->v;
	v->pending--;
	if (!v->cancelled)
		check_key(s, r);
	if (v->pending > 0)
		return;
	if (v->cancelled)
		verify_free(v);
	else
		finish(v);
}

/* prepare - parse one signature and check what needs no key; true when a lookup is needed */
static bool prepare(struct vsig *s, const struct dkim_header *h, const struct dkim_field *f,
		    const char *body, size_t body_len, struct bh_cache *cache, size_t *n_cache)
{
	const char *colon = memchr(f->start, ':', f->len);
	size_t voff = (size_t)(colon - f->start) + 1;
	const char *err = NULL;
	buf_init(&s->data, 0);
	if (dkim_sig_parse(f->start + voff, f->len - voff, &s->sig, &err) < 0) {
		s->result = "permerror";
		snprintf(s->reason_buf, sizeof(s->reason_buf), "bad signature: %s", err);
		s->reason = s->reason_buf;
		return false;
	}
	if (s->sig.alg == DKIM_ALG_RSA_SHA1) {
		s->result = "permerror";
		s->reason = "rsa-sha1 is not accepted (RFC 8301)";
		return false;
	}
	if (s->sig.has_x && (uint64_t)dkim_now() > s->sig.x) {
		s->result = "policy";
		s->reason = "signature expired";
		return false;
	}
	uint64_t limit = s->sig.has_l ? s->sig.l : UINT64_MAX;
	struct bh_cache *bc = NULL;
	for (size_t i = 0; i < *n_cache && bc == NULL; i++)
		if (cache[i].c == s->sig.canon_b && cache[i].limit == limit)
			bc = &cache[i];
	if (bc == NULL) {
		bc = &cache[(*n_cache)++];
		bc->c = s->sig.canon_b;
		bc->limit = limit;
		bc->ok = dkim_body_hash(bc->c, body, body_len, limit, bc->hash, &bc->canon_len) == 0;
	}
	if (!bc->ok) {
		s->result = "temperror";
		s->reason = "body hash failed";
		return false;
	}
	if (s->sig.has_l && s->sig.l > bc->canon_len) {
		s->result = "fail";
		s->reason = "l= is longer than the body";
		return false;
	}
	if (memcmp(bc->hash, s->sig.bh.data, 32) != 0) {
		s->result = "fail";
		s->reason = "body hash did not verify";
		return false;
	}
	dkim_header_hash_input(h, &s->sig, f->start, f->len, voff, &s->data);
	return true;
}

struct dkim_verify *dkim_verify_start(struct dns *d, const char *msg, size_t len,
				      dkim_verify_cb *cb, void *ctx)
{
	struct dkim_verify *v = xcalloc(1, sizeof(*v));
	v->dns = d;
	v->cb = cb;
	v->ctx = ctx;
	struct dkim_header h;
	dkim_header_split(msg, len, MAX_FIELDS, &h);
	size_t n = 0;
	for (size_t i = 0; i < h.n && n < DKIM_MAX_SIGNATURES; i++)
		n += dkim_field_is(&h.f[i], "dkim-signature");
	v->s = xcalloc(n ? n : 1, sizeof(*v->s));
	struct bh_cache cache[DKIM_MAX_SIGNATURES];
	size_t n_cache = 0;
	bool *lookup = xcalloc(n ? n : 1, sizeof(bool));
	for (size_t i = 0; i < h.n && v->n < n; i++) {
		if (!dkim_field_is(&h.f[i], "dkim-signature"))
			continue;
		struct vsig *s = &v->s[v->n++];
		s->v = v;
		lookup[v->n - 1] = prepare(s, &h, &h.f[i], msg + h.body_off, len - h.body_off, cache,
					   &n_cache);
	}
	free(h.f);
	for (size_t i = 0; i < v->n; i++)
		v->pending += lookup[i];
	/* every lookup's callback comes from the loop, so none can finish v while we start */
	for (size_t i = 0; i < v->n; i++) {
		if (!lookup[i])
			continue;
		char *name = dkim_key_query_name(v->s[i].sig.s, v->s[i].sig.d);
		dns_lookup_txt(d, name, on_key, &v->s[i]);
		free(name);
	}
	free(lookup);
	if (v->pending == 0) {
		v->ev = event_new(dns_event_base(d), -1, 0, on_deferred, v);
		event_active(v->ev, 0, 0);
	}
	return v;
}

void dkim_verify_cancel(struct dkim_verify *v)
{
	if (v == NULL || v->delivering)
		return;
	if (v->pending == 0) {
		verify_free(v);	/* only the deferred event was left: event_free drops it */
		return;
	}
	v->cancelled = true;	/* freed when the last lookup answers */
}
