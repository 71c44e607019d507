/* dmarc - DMARC (RFC 7489): the record parser, organisational domains from the Public
 * Suffix List (libpsl, the distribution's list in /usr/share/publicsuffix), identifier
 * alignment and the asynchronous policy lookup and evaluation.
 *
 * dmarc_check_start() takes what SPF and DKIM found (the SPF result and the domain it
 * checked; the d= domains of the DKIM signatures that passed) and the RFC5322.From domain,
 * looks the policy up at _dmarc.<From domain>, then at _dmarc.<organisational domain>, and
 * calls back once from the loop with the result and the disposition to apply. */
#ifndef TERN_DMARC_H
#define TERN_DMARC_H
#include <stdbool.h>
#include <stddef.h>

struct dns;
struct event_base;

enum dmarc_policy { DMARC_POLICY_NONE, DMARC_POLICY_QUARANTINE, DMARC_POLICY_REJECT };

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp;	/* p when the record has no sp= */
	unsigned pct;		/* 0..100, default 100 */
	bool adkim_strict;	/* adkim=s (default r) */
	bool aspf_strict;	/* aspf=s (default r) */
};

/* dmarc_record_parse - a TXT record "v=DMARC1; p=...; ..." (RFC 7489 §6.3, §6.4). v=DMARC1
 * must come first; unknown tags are ignored; a missing or invalid p= makes the record
 * invalid unless a rua= is present (then p=none, §6.6.3). Tag names are case-insensitive.
 * 0 with *r, or -1 with *error_r (caller frees): the record is to be ignored. */
int dmarc_record_parse(const char *txt, struct dmarc_record *r, char **error_r);

/* dmarc_policy_name - "none", "quarantine", "reject" */
const char *dmarc_policy_name(enum dmarc_policy p);

/* dmarc_org_domain - the organisational domain of domain (RFC 7489 §3.2): its registrable
 * domain by the Public Suffix List, lower case; domain itself (lower-cased) when it is a
 * public suffix or the list does not know it. Caller frees. */
char *dmarc_org_domain(const char *domain);

/* dmarc_aligned - identifier alignment (§3.1): strict = the same name (any case); relaxed =
 * the same organisational domain. */
bool dmarc_aligned(const char *a, const char *b, bool strict);

enum dmarc_result { DMARC_NONE, DMARC_PASS, DMARC_FAIL, DMARC_TEMPERROR, DMARC_PERMERROR };
const char *dmarc_result_name(enum dmarc_result r);

/* What the evaluation found; valid during the callback only. */
struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy published;	/* p= (or sp=) of the record that applies */
	enum dmarc_policy disposition;	/* what to do: published, lowered by pct= sampling;
					   NONE unless result is FAIL */
	const char *from_domain;
	const char *record_domain;	/* where the record was found, or NULL */
	const char *problem;		/* for temperror/permerror and logs, or NULL */
};
typedef void dmarc_cb(void *ctx, const struct dmarc_outcome *o);

/* The authenticated identifiers DMARC looks at. */
struct dmarc_input {
	const char *from_domain;	/* RFC5322.From domain */
	bool spf_pass;			/* SPF result was pass ... */
	const char *spf_domain;		/* ... for this domain (MAIL FROM's, or HELO's for <>) */
	const char *const *dkim_pass_domains;	/* d= of every DKIM signature that passed */
	size_t n_dkim;
};

struct dmarc_check;

/* dmarc_check_start - evaluate DMARC for in (everything is copied). cb is called exactly
 * once, from the loop (never from inside this call), unless cancelled first. */
struct dmarc_check *dmarc_check_start(struct event_base *base, struct dns *d,
				      const struct dmarc_input *in, dmarc_cb *cb, void *ctx);
/* dmarc_check_cancel - its callback will not run; memory goes once DNS has answered.
 * Sets *c to NULL; NULL is a no-op. */
void dmarc_check_cancel(struct dmarc_check **c);

/* dmarc_decide - the evaluation without DNS, given the record found (NULL: none) and whether
 * it came from the organisational domain rather than the From domain; roll is a number in
 * 0..99 for pct= sampling (the message is sampled when roll < pct). For tests and for
 * dmarc_check. */
void dmarc_decide(const struct dmarc_input *in, const struct dmarc_record *rec, bool at_org,
		  unsigned roll, enum dmarc_result *result_r, enum dmarc_policy *published_r,
		  enum dmarc_policy *disposition_r);

#endif
