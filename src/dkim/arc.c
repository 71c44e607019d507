/* arc - Authenticated Received Chain (RFC 8617): validation and sealing */
#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/internal.h"
#include "lib/base64.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"

#define MAX_FIELDS 1000
#define ARC_MAX 50

/* One ARC Set as found in a message. */
struct arc_set {
	const struct dkim_field *aar, *ams, *as;
	int n_aar, n_ams, n_as;		/* how many fields claim this instance */
	struct dkim_sig ams_sig, as_sig;
	bool ams_parsed, as_parsed;
};

struct arc_chain {
	struct dkim_header h;
	struct arc_set sets[ARC_MAX + 1];	/* index = instance */
	unsigned n;				/* highest instance */
	const char *error;			/* structure error: the chain fails */
};

/* field_value - where a field's value starts (after the colon) */
static size_t value_off(const struct dkim_field *f)
{
	const char *colon = memchr(f->start, ':', f->len);
	return colon ? (size_t)(colon - f->start) + 1 : f->len;
}

/* aar_instance - "i=N;" at the start of an ARC-Authentication-Results value; 0 if none */
static unsigned aar_instance(const struct dkim_field *f)
{
	size_t p = value_off(f);
	while (p < f->len && isspace((unsigned char)f->start[p]))
		p++;
	if (p + 2 > f->len || f->start[p] != 'i')
		return 0;
	p++;
	while (p < f->len && isspace((unsigned char)f->start[p]))
		p++;
	if (p >= f->len || f->start[p] != '=')
		return 0;
	p++;
	while (p < f->len && isspace((unsigned char)f->start[p]))
		p++;
	size_t s = p;
	while (p < f->len && isdigit((unsigned char)f->start[p]))
		p++;
	uint64_t v;
	if (strnum_u64(f->start + s, p - s, 1000, &v) < 0)
		return 0;
	while (p < f->len && isspace((unsigned char)f->start[p]))
		p++;
	return p < f->len && f->start[p] == ';' ? (unsigned)v : 0;
}

/* chain_collect - the ARC Sets of msg and the structure checks of §5.2 step 3 A and B (C,
 * the cv values, is left to the caller) */
static void chain_collect(const char *msg, size_t len, struct arc_chain *c)
{
	memset(c, 0, sizeof(*c));
	dkim_header_split(msg, len, MAX_FIELDS, &c->h);
	for (size_t i = 0; i < c->h.n; i++) {
		const struct dkim_field *f = &c->h.f[i];
		int kind = dkim_field_is(f, "arc-authentication-results") ? 0
			 : dkim_field_is(f, "arc-message-signature")	  ? 1
			 : dkim_field_is(f, "arc-seal")		  ? 2
									  : -1;
		if (kind < 0)
			continue;
		unsigned inst = 0;
		struct dkim_sig tmp;
		const char *err = NULL;
		size_t vo = value_off(f);
		if (kind == 0) {
			inst = aar_instance(f);
		} else {
			memset(&tmp, 0, sizeof(tmp));
			int rc = dkim_arc_sig_parse(f->start + vo, f->len - vo, kind == 1, &tmp, &err);
			inst = tmp.instance;
			if (inst >= 1 && inst <= ARC_MAX) {
				struct arc_set *s = &c->sets[inst];
				if (kind == 1 && !s->ams_parsed && rc == 0) {
					s->ams_sig = tmp;
					s->ams_parsed = true;
				} else if (kind == 2 && !s->as_parsed && rc == 0) {
					s->as_sig = tmp;
					s->as_parsed = true;
				} else {
					dkim_sig_free(&tmp);
				}
			} else {
				dkim_sig_free(&tmp);
			}
			if (rc < 0 && c->error == NULL)
				c->error = kind == 1 ? "bad ARC-Message-Signature" : "bad ARC-Seal";
		}
		if (inst < 1 || inst > ARC_MAX) {
			if (c->error == NULL)
				c->error = "ARC instance missing or above 50";
			continue;
		}
		struct arc_set *s = &c->sets[inst];
		if (kind == 0) {
			s->aar = f;
			s->n_aar++;
		} else if (kind == 1) {
			s->ams = f;
			s->n_ams++;
		} else {
			s->as = f;
			s->n_as++;
		}
		if (inst > c->n)
			c->n = inst;
	}
	for (unsigned i = 1; i <= c->n && c->error == NULL; i++) {
		struct arc_set *s = &c->sets[i];
		if (s->n_aar != 1 || s->n_ams != 1 || s->n_as != 1)
			c->error = "ARC sets incomplete, repeated or not 1..N";
	}
}

static void chain_free(struct arc_chain *c)
{
	for (unsigned i = 0; i <= ARC_MAX; i++) {
		dkim_sig_free(&c->sets[i].ams_sig);
		dkim_sig_free(&c->sets[i].as_sig);
	}
	free(c->h.f);
}

/* seal_input - what the ARC-Seal of instance k signs (§5.1.1): the sets 1..k (or k alone when
 * only_k) in order AAR, AMS, AS, relaxed; the last AS with its b= emptied and no CRLF */
static void seal_input(const struct arc_chain *c, unsigned k, bool only_k, buf *out)
{
	for (unsigned j = only_k ? k : 1; j <= k; j++) {
		const struct arc_set *s = &c->sets[j];
		dkim_canon_header(DKIM_CANON_RELAXED, s->aar->start, s->aar->len, out);
		dkim_canon_header(DKIM_CANON_RELAXED, s->ams->start, s->ams->len, out);
		if (j < k) {
			dkim_canon_header(DKIM_CANON_RELAXED, s->as->start, s->as->len, out);
			continue;
		}
		struct dkim_header none = { 0 };
		struct dkim_sig sig = s->as_sig;
		sig.n_h = 0;
		sig.canon_h = DKIM_CANON_RELAXED;
		dkim_header_hash_input(&none, &sig, s->as->start, s->as->len, value_off(s->as), out);
	}
}

/* ---- validation ----------------------------------------------------------------------------- */

struct arc_check {
	struct arc_verify *v;
	struct dkim_sig *sig;
	buf data;
	const char *result, *reason;
	char reason_buf[96];
	bool lookup;
	unsigned inst;
	bool is_seal;
};

struct arc_verify {
	arc_verify_cb *cb;
	void *ctx;
	struct event *ev;
	struct arc_chain chain;
	struct arc_check checks[2 * ARC_MAX];
	size_t n_checks, pending;
	const char *cv, *reason;
	bool cancelled, delivering, decided;
};

static void arc_verify_free(struct arc_verify *v)
{
	for (size_t i = 0; i < v->n_checks; i++)
		buf_free(&v->checks[i].data);
	chain_free(&v->chain);
	if (v->ev != NULL)
		event_free(v->ev);
	free(v);
}

static void arc_finish(struct arc_verify *v)
{
	struct arc_verify_result r = { .cv = v->cv, .reason = v->reason,
				       .instances = v->chain.n };
	if (!v->decided) {
		/* every signature is checked: AMS N, then the older ones for oldest-pass, then
		 * every AS (§5.2 steps 4 to 7) */
		unsigned n = v->chain.n;
		struct arc_check *ams[ARC_MAX + 1] = { 0 }, *as[ARC_MAX + 1] = { 0 };
		for (size_t i = 0; i < v->n_checks; i++)
			(v->checks[i].is_seal ? as : ams)[v->checks[i].inst] = &v->checks[i];
		r.cv = "pass";
		if (strcmp(ams[n]->result, "pass") != 0) {
			r.cv = "fail";
			r.reason = "the newest ARC-Message-Signature did not verify";
		}
		for (unsigned k = n; k >= 1 && strcmp(r.cv, "pass") == 0; k--)
			if (strcmp(as[k]->result, "pass") != 0) {
				r.cv = "fail";
				r.reason = "an ARC-Seal did not verify";
			}
		if (strcmp(r.cv, "pass") == 0) {
			r.oldest_pass = 0;
			for (unsigned m = n - 1; m >= 1; m--)
				if (strcmp(ams[m]->result, "pass") != 0) {
					r.oldest_pass = m + 1;
					break;
				}
		}
	}
	if (v->chain.n > 0 && v->chain.sets[v->chain.n].as_parsed)
		r.domain = v->chain.sets[v->chain.n].as_sig.d;
	v->delivering = true;
	v->cb(v->ctx, &r);
	arc_verify_free(v);
}

static void arc_on_deferred(evutil_socket_t fd, short what, void *arg)
{
	arc_finish(arg);
}

static void arc_on_key(void *ctx, const struct dns_txt_result *r)
{
	struct arc_check *c = ctx;
	struct arc_verify *v = c->v;
	v->pending--;
	if (!v->cancelled)
		dkim_key_verify(r, c->sig, &c->data, &c->result, &c->reason, c->reason_buf,
				sizeof(c->reason_buf), NULL);
	if (v->pending > 0)
		return;
	if (v->cancelled)
		arc_verify_free(v);
	else
		arc_finish(v);
}

/* decide - a result known without keys */
static void decide(struct arc_verify *v, const char *cv, const char *reason)
{
	v->decided = true;
	v->cv = cv;
	v->reason = reason;
}

struct arc_verify *arc_verify_start(struct dns *d, const char *msg, size_t len,
				    arc_verify_cb *cb, void *ctx)
{
	struct arc_verify *v = xcalloc(1, sizeof(*v));
	v->cb = cb;
	v->ctx = ctx;
	struct arc_chain *c = &v->chain;
	chain_collect(msg, len, c);
	unsigned n = c->n;
	if (n == 0 && c->error == NULL) {
		decide(v, "none", NULL);
	} else if (n > 0 && c->sets[n].as_parsed && c->sets[n].as_sig.cv != NULL &&
		   strcasecmp(c->sets[n].as_sig.cv, "fail") == 0) {
		decide(v, "fail", "the newest ARC-Seal says cv=fail");
	} else if (c->error != NULL) {
		decide(v, "fail", c->error);
	} else {
		for (unsigned i = 1; i <= n && !v->decided; i++)
			if (strcasecmp(c->sets[i].as_sig.cv, i == 1 ? "none" : "pass") != 0)
				decide(v, "fail", "an ARC-Seal has the wrong cv=");
	}
	if (!v->decided) {
		/* the message's part is hashed now; keys come later */
		const char *body = msg + c->h.body_off;
		size_t blen = len - c->h.body_off;
		/* newest first, so the AMS that decides the chain is hashed before the cap of
		 * distinct (canonicalisation, length) body hashes can bite */
		struct { enum dkim_canon c; uint64_t l; unsigned char h[32]; int ok; } bh[8];
		size_t n_bh = 0;
		for (unsigned i = n; i >= 1; i--) {
			struct arc_set *s = &c->sets[i];
			struct arc_check *am = &v->checks[v->n_checks++];
			am->v = v;
			am->sig = &s->ams_sig;
			am->inst = i;
			buf_init(&am->data, 0);
			uint64_t lim = s->ams_sig.has_l ? s->ams_sig.l : UINT64_MAX;
			size_t k = 0;
			while (k < n_bh && !(bh[k].c == s->ams_sig.canon_b && bh[k].l == lim))
				k++;
			if (k == n_bh && n_bh < sizeof(bh) / sizeof(bh[0])) {
				uint64_t clen;
				bh[k].c = s->ams_sig.canon_b;
				bh[k].l = lim;
				bh[k].ok = dkim_body_hash(bh[k].c, body, blen, lim, bh[k].h, &clen) == 0;
				n_bh++;
			}
			if (s->ams_sig.alg == DKIM_ALG_RSA_SHA1) {
				am->result = "fail";
				am->reason = "rsa-sha1";
			} else if (k == n_bh) {
				am->result = "fail";
				am->reason = "too many different body lengths";
			} else if (!bh[k].ok || memcmp(bh[k].h, s->ams_sig.bh.data, 32) != 0) {
				am->result = "fail";
				am->reason = "body hash did not verify";
			} else {
				dkim_header_hash_input(&c->h, &s->ams_sig, s->ams->start, s->ams->len,
						       value_off(s->ams), &am->data);
				am->lookup = true;
			}
			struct arc_check *se = &v->checks[v->n_checks++];
			se->v = v;
			se->sig = &s->as_sig;
			se->inst = i;
			se->is_seal = true;
			buf_init(&se->data, 0);
			if (s->as_sig.alg == DKIM_ALG_RSA_SHA1) {
				se->result = "fail";
				se->reason = "rsa-sha1";
			} else {
				seal_input(c, i, false, &se->data);
				se->lookup = true;
			}
		}
		for (size_t i = 0; i < v->n_checks; i++)
			v->pending += v->checks[i].lookup;
		for (size_t i = 0; i < v->n_checks; i++) {
			if (!v->checks[i].lookup)
				continue;
			char *name = dkim_key_query_name(v->checks[i].sig->s, v->checks[i].sig->d);
			dns_lookup_txt(d, name, arc_on_key, &v->checks[i]);
			free(name);
		}
	}
	if (v->pending == 0) {
		v->ev = event_new(dns_event_base(d), -1, 0, arc_on_deferred, v);
		event_active(v->ev, 0, 0);
	}
	return v;
}

void arc_verify_cancel(struct arc_verify *v)
{
	if (v == NULL || v->delivering)
		return;
	if (v->pending == 0) {
		arc_verify_free(v);
		return;
	}
	v->cancelled = true;
}

/* ---- sealing -------------------------------------------------------------------------------- */

/* single_line - s has no CR or LF (it goes into a header field we write) */
static bool single_line(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

int arc_seal(const struct dkim_key *key, const char *msg, size_t len, const char *cv,
	     const char *authserv_id, const char *ar, time_t now, buf *out, char **error_r)
{
	if (!single_line(authserv_id) || !single_line(ar) || authserv_id[0] == '\0') {
		*error_r = xstrdup("authserv-id and results must be one line");
		return -1;
	}
	bool failed = strcasecmp(cv, "fail") == 0;
	if (!failed && strcasecmp(cv, "pass") != 0 && strcasecmp(cv, "none") != 0) {
		*error_r = xstrdup("cv must be none, pass or fail");
		return -1;
	}
	struct arc_chain c;
	chain_collect(msg, len, &c);
	unsigned n = c.n;
	int rc = 0;
	/* §5.1 step 2: a chain already marked failed is not sealed again; 50 sets at most */
	if ((n > 0 && c.sets[n].as_parsed && c.sets[n].as_sig.cv != NULL &&
	     strcasecmp(c.sets[n].as_sig.cv, "fail") == 0) || n >= ARC_MAX ||
	    (!failed && (c.error != NULL || (n == 0) != (strcasecmp(cv, "none") == 0)))) {
		chain_free(&c);
		return 0;
	}
	unsigned inst = n + 1;
	const char *alg = key->type == DKIM_KEYTYPE_ED25519 ? "ed25519-sha256" : "rsa-sha256";
	buf aar, ams, as, data;
	buf_init(&aar, 0);
	buf_init(&ams, 0);
	buf_init(&as, 0);
	buf_init(&data, 0);
	buf_printf(&aar, "ARC-Authentication-Results: i=%u; %s;\r\n\t%s\r\n", inst, authserv_id,
		   ar[0] ? ar : "none");

	/* the AMS: as a DKIM-Signature, over the message as it is now */
	unsigned char bh[32];
	uint64_t clen;
	dkim_body_hash(DKIM_CANON_RELAXED, msg + c.h.body_off, len - c.h.body_off, UINT64_MAX, bh,
		       &clen);
	buf_printf(&ams, "ARC-Message-Signature: i=%u; a=%s; c=relaxed/relaxed; d=%s;\r\n\ts=%s; t=%lld;\r\n\th=",
		   inst, alg, key->domain, key->selector, (long long)now);
	if (dkim_sign_fields(key, &c.h, bh, &ams, strlen("ARC-Message-Signature:")) < 0)
		rc = -1;

	/* the AS: the sets 1..n of the message (none when the chain failed), then ours */
	buf_printf(&as, "ARC-Seal: i=%u; a=%s; cv=%s; d=%s; s=%s;\r\n\tt=%lld; b=", inst, alg,
		   failed ? "fail" : n == 0 ? "none" : "pass", key->domain, key->selector,
		   (long long)now);
	if (!failed)
		for (unsigned j = 1; j <= n; j++) {
			dkim_canon_header(DKIM_CANON_RELAXED, c.sets[j].aar->start, c.sets[j].aar->len, &data);
			dkim_canon_header(DKIM_CANON_RELAXED, c.sets[j].ams->start, c.sets[j].ams->len, &data);
			dkim_canon_header(DKIM_CANON_RELAXED, c.sets[j].as->start, c.sets[j].as->len, &data);
		}
	dkim_canon_header(DKIM_CANON_RELAXED, aar.data, aar.len - 2, &data);
	dkim_canon_header(DKIM_CANON_RELAXED, ams.data, ams.len - 2, &data);
	dkim_canon_header(DKIM_CANON_RELAXED, as.data, as.len, &data);
	data.len -= 2;	/* the AS being made: no CRLF */
	if (rc == 0 && dkim_sign_fold(key, &as, &data) < 0)
		rc = -1;
	if (rc == 0) {
		buf_append(out, as.data, as.len);
		buf_append(out, ams.data, ams.len);
		buf_append(out, aar.data, aar.len);
		rc = 1;
	} else {
		*error_r = xasprintf("signing with %s/%s failed", key->domain, key->selector);
	}
	buf_free(&aar);
	buf_free(&ams);
	buf_free(&as);
	buf_free(&data);
	chain_free(&c);
	return rc;
}
