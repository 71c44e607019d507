/* dmarc - RFC 7489 records, organisational domains (libpsl), alignment, policy (see dmarc.h) */
#include "dmarc/dmarc.h"

#include <ctype.h>
#include <event2/event.h>
#include <libpsl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/xmalloc.h"
#include "outbound/dns.h"

const char *dmarc_policy_name(enum dmarc_policy p)
{
	return p == DMARC_POLICY_REJECT ? "reject" : p == DMARC_POLICY_QUARANTINE ? "quarantine"
										: "none";
}

const char *dmarc_result_name(enum dmarc_result r)
{
	static const char *const names[] = { "none", "pass", "fail", "temperror", "permerror" };
	return (unsigned)r < 5 ? names[r] : "permerror";
}

/* trim - s[0..*n) without surrounding blanks */
static const char *trim(const char *s, size_t *n)
{
	while (*n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		(*n)--;
	}
	while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

static bool value_is(const char *v, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(v, word, n) == 0;
}

static int parse_policy(const char *v, size_t n, enum dmarc_policy *p)
{
	if (value_is(v, n, "none"))
		*p = DMARC_POLICY_NONE;
	else if (value_is(v, n, "quarantine"))
		*p = DMARC_POLICY_QUARANTINE;
	else if (value_is(v, n, "reject"))
		*p = DMARC_POLICY_REJECT;
	else
		return -1;
	return 0;
}

int dmarc_record_parse(const char *txt, struct dmarc_record *r, char **error_r)
{
	*r = (struct dmarc_record){ .pct = 100 };
	bool first = true, have_p = false, have_sp = false, bad_p = false, have_rua = false;
	const char *p = txt;
	while (true) {
		size_t n = strcspn(p, ";");
		size_t tn = n;
		const char *t = trim(p, &tn);
		if (tn == 0) {
			if (first) {
				*error_r = xstrdup("empty record");
				return -1;
			}
		} else {
			const char *eq = memchr(t, '=', tn);
			if (eq == NULL) {
				*error_r = xstrdup("a tag without '='");
				return -1;
			}
			size_t kn = (size_t)(eq - t), vn = tn - kn - 1;
			const char *k = trim(t, &kn);
			const char *v = trim(eq + 1, &vn);
			if (first) {
				/* §6.4: "v=DMARC1" first, the value exactly */
				if (!(kn == 1 && *k == 'v') || vn != 6 || strncmp(v, "DMARC1", 6) != 0) {
					*error_r = xstrdup("not a DMARC1 record");
					return -1;
				}
			} else if (kn == 1 && tolower((unsigned char)*k) == 'p') {
				if (have_p) {
					*error_r = xstrdup("duplicate p=");
					return -1;
				}
				have_p = true;
				bad_p = parse_policy(v, vn, &r->p) < 0;
			} else if (kn == 2 && strncasecmp(k, "sp", 2) == 0) {
				if (have_sp || parse_policy(v, vn, &r->sp) < 0) {
					*error_r = xstrdup("invalid sp=");
					return -1;
				}
				have_sp = true;
			} else if (kn == 3 && strncasecmp(k, "pct", 3) == 0) {
				unsigned pct = 0;
				if (vn == 0 || vn > 3) {
					*error_r = xstrdup("invalid pct=");
					return -1;
				}
				for (size_t i = 0; i < vn; i++) {
					if (!isdigit((unsigned char)v[i])) {
						*error_r = xstrdup("invalid pct=");
						return -1;
					}
					pct = pct * 10 + (unsigned)(v[i] - '0');
				}
				if (pct > 100) {
					*error_r = xstrdup("invalid pct=");
					return -1;
				}
				r->pct = pct;
			} else if (kn == 5 && strncasecmp(k, "adkim", 5) == 0) {
				if (!value_is(v, vn, "r") && !value_is(v, vn, "s")) {
					*error_r = xstrdup("invalid adkim=");
					return -1;
				}
				r->adkim_strict = value_is(v, vn, "s");
			} else if (kn == 4 && strncasecmp(k, "aspf", 4) == 0) {
				if (!value_is(v, vn, "r") && !value_is(v, vn, "s")) {
					*error_r = xstrdup("invalid aspf=");
					return -1;
				}
				r->aspf_strict = value_is(v, vn, "s");
			} else if (kn == 3 && strncasecmp(k, "rua", 3) == 0) {
				have_rua = vn > 0;
			} else if (kn == 0) {
				*error_r = xstrdup("a tag without a name");
				return -1;
			}
			/* fo, rf, ri, ruf and unknown tags: ignored (no reports are sent) */
		}
		first = false;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	if (!have_p || bad_p) {
		/* §6.6.3: without a valid p=, a record with rua= counts as p=none */
		if (!have_rua) {
			*error_r = xstrdup(have_p ? "invalid p=" : "no p=");
			return -1;
		}
		r->p = DMARC_POLICY_NONE;
	}
	if (!have_sp)
		r->sp = r->p;
	return 0;
}

/* the Public Suffix List, loaded once per process */
static const psl_ctx_t *psl_list(void)
{
	static const psl_ctx_t *psl;
	if (psl == NULL) {
		/* the newer of the distribution's file and the built-in copy */
		psl = psl_latest(NULL);
		if (psl == NULL)
			psl = psl_builtin();
	}
	return psl;
}

char *dmarc_org_domain(const char *domain)
{
	char *lower = xstrdup(domain);
	size_t n = strlen(lower);
	for (size_t i = 0; i < n; i++)
		lower[i] = (char)tolower((unsigned char)lower[i]);
	if (n > 0 && lower[n - 1] == '.')
		lower[n - 1] = '\0';
	const psl_ctx_t *psl = psl_list();
	const char *reg = psl != NULL ? psl_registrable_domain(psl, lower) : NULL;
	char *out = xstrdup(reg != NULL ? reg : lower);
	free(lower);
	return out;
}

bool dmarc_aligned(const char *a, const char *b, bool strict)
{
	if (a == NULL || b == NULL || *a == '\0' || *b == '\0')
		return false;
	if (strict)
		return strcasecmp(a, b) == 0;
	char *oa = dmarc_org_domain(a), *ob = dmarc_org_domain(b);
	bool same = strcmp(oa, ob) == 0;
	free(oa);
	free(ob);
	return same;
}

void dmarc_decide(const struct dmarc_input *in, const struct dmarc_record *rec, bool at_org,
		  unsigned roll, enum dmarc_result *result_r, enum dmarc_policy *published_r,
		  enum dmarc_policy *disposition_r)
{
	*published_r = *disposition_r = DMARC_POLICY_NONE;
	if (rec == NULL) {
		*result_r = DMARC_NONE;
		return;
	}
	*published_r = at_org ? rec->sp : rec->p;
	bool pass = in->spf_pass && dmarc_aligned(in->spf_domain, in->from_domain,
						  rec->aspf_strict);
	for (size_t i = 0; i < in->n_dkim && !pass; i++)
		pass = dmarc_aligned(in->dkim_pass_domains[i], in->from_domain, rec->adkim_strict);
	*result_r = pass ? DMARC_PASS : DMARC_FAIL;
	if (pass)
		return;
	enum dmarc_policy d = *published_r;
	/* §6.6.4: a message outside the pct= sample gets the next less strict policy */
	if (roll >= rec->pct && d != DMARC_POLICY_NONE)
		d = d == DMARC_POLICY_REJECT ? DMARC_POLICY_QUARANTINE : DMARC_POLICY_NONE;
	*disposition_r = d;
}

/* ---- the lookup ------------------------------------------------------------------------------ */

struct dmarc_check {
	struct event_base *base;
	struct dns *dns;
	dmarc_cb *cb;
	void *ctx;
	bool cancelled, in_flight;
	struct event *ev;
	char *from_domain, *spf_domain, *org_domain;
	char **dkim;
	size_t n_dkim;
	bool spf_pass;
	bool at_org;		/* the current lookup is the organisational domain's */
	struct dmarc_outcome o;
	char *problem;
};

static void check_free(struct dmarc_check *c)
{
	if (c->ev != NULL)
		event_free(c->ev);
	for (size_t i = 0; i < c->n_dkim; i++)
		free(c->dkim[i]);
	free(c->dkim);
	free(c->from_domain);
	free(c->spf_domain);
	free(c->org_domain);
	free(c->problem);
	free(c);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dmarc_check *c = arg;
	(void)fd;
	(void)what;
	if (!c->cancelled)
		c->cb(c->ctx, &c->o);
	check_free(c);
}

static void finish(struct dmarc_check *c)
{
	c->o.from_domain = c->from_domain;
	c->o.problem = c->problem;
	c->ev = event_new(c->base, -1, 0, deliver_cb, c);
	event_active(c->ev, EV_TIMEOUT, 1);
}

static void lookup(struct dmarc_check *c, const char *domain);

static void on_txt(void *ctx, const struct dns_txt_result *r)
{
	struct dmarc_check *c = ctx;
	c->in_flight = false;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	if (r->status == DNS_ANSWER_TEMPFAIL) {
		c->o.result = DMARC_TEMPERROR;
		c->problem = xstrdup(r->error ? r->error : "DNS failure");
		finish(c);
		return;
	}
	/* §6.6.3: records that start with "v=DMARC1"; exactly one, or none at all */
	size_t n = 0;
	const char *txt = NULL;
	for (size_t i = 0; i < r->n; i++)
		if (strncmp(r->txts[i], "v=DMARC1", 8) == 0) {
			n++;
			txt = r->txts[i];
		}
	struct dmarc_record rec;
	char *err = NULL;
	bool found = n == 1 && dmarc_record_parse(txt, &rec, &err) == 0;
	free(err);
	if (!found) {
		if (!c->at_org && strcmp(c->org_domain, c->from_domain) != 0) {
			c->at_org = true;
			lookup(c, c->org_domain);
			return;
		}
		c->o.result = DMARC_NONE;
		finish(c);
		return;
	}
	struct dmarc_input in = { .from_domain = c->from_domain, .spf_pass = c->spf_pass,
				  .spf_domain = c->spf_domain,
				  .dkim_pass_domains = (const char *const *)c->dkim,
				  .n_dkim = c->n_dkim };
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)random();
	dmarc_decide(&in, &rec, c->at_org, rnd % 100, &c->o.result, &c->o.published,
		     &c->o.disposition);
	c->o.record_domain = c->at_org ? c->org_domain : c->from_domain;
	finish(c);
}

static void lookup(struct dmarc_check *c, const char *domain)
{
	char *name = xasprintf("_dmarc.%s", domain);
	c->in_flight = true;
	dns_lookup_txt(c->dns, name, on_txt, c);
	free(name);
}

struct dmarc_check *dmarc_check_start(struct event_base *base, struct dns *d,
				      const struct dmarc_input *in, dmarc_cb *cb, void *ctx)
{
	struct dmarc_check *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->dns = d;
	c->cb = cb;
	c->ctx = ctx;
	c->from_domain = xstrdup(in->from_domain);
	for (char *p = c->from_domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	c->org_domain = dmarc_org_domain(c->from_domain);
	c->spf_pass = in->spf_pass;
	c->spf_domain = in->spf_domain ? xstrdup(in->spf_domain) : NULL;
	c->dkim = xcalloc(in->n_dkim + 1, sizeof(char *));
	for (size_t i = 0; i < in->n_dkim; i++)
		c->dkim[c->n_dkim++] = xstrdup(in->dkim_pass_domains[i]);
	lookup(c, c->from_domain);
	return c;
}

void dmarc_check_cancel(struct dmarc_check **cp)
{
	struct dmarc_check *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->cancelled = true;
	if (!c->in_flight)
		check_free(c);	/* also frees a callback event not yet run */
}
