/* check_dns - `tern check`: the host name's addresses and reverse DNS, and each domain's MX,
 * SPF, DKIM, DMARC, MTA-STS and TLS-RPT records */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli/check_private.h"
#include "cli/check_records.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "dmarc/dmarc.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "spf/spf.h"

/* ---- the host name: addresses and reverse DNS ----------------------------------------------- */

/* suggested_address - an address to put in a record we suggest */
static const char *suggested_address(struct checker *c)
{
	for (size_t i = 0; i < c->listen.n; i++)
		if (!check_is_private(c->listen.v[i]) || c->private_ok)
			return c->listen.v[i];
	return "<this server's public address>";
}

/* resolves_to - name has addr among its A/AAAA records */
static bool resolves_to(struct checker *c, const char *name, const char *addr)
{
	struct check_list addrs = { 0 };
	char *err = NULL;
	bool found = false;
	if (check_addrs(c, name, &addrs, &err) == DNS_ANSWER_OK)
		for (size_t i = 0; i < addrs.n && !found; i++)
			found = check_same_addr(addrs.v[i], addr);
	free(err);
	check_list_free(&addrs);
	return found;
}

static void check_ptr(struct checker *c, const char *addr)
{
	const char *host = c->cfg->hostname;
	unsigned char bytes[16];
	int fam;
	char *rev = check_reverse_name(addr, bytes, &fam);
	if (rev == NULL)
		return;
	struct check_list names = { 0 };
	char *err = NULL;
	enum dns_answer_status st = check_ptr_names(c, addr, rev, &names, &err);
	if (st == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, host, "PTR of %s: lookup failed: %s", addr, err);
	} else if (st != DNS_ANSWER_OK) {
		check_report(c, CHECK_ERROR, host,
		       "PTR of %s missing: ask whoever runs the address (the hosting provider) to "
		       "publish  %s. PTR %s.",
		       addr, rev, host);
	} else {
		/* forward-confirmed: a PTR name whose addresses include addr; for host itself
		 * they were looked up already */
		bool named = false;
		const char *confirmed = NULL;
		for (size_t i = 0; i < names.n && !named; i++) {
			if (check_same_name(names.v[i], host)) {
				named = true;
				for (size_t j = 0; j < c->host_addrs.n; j++)
					if (check_same_addr(c->host_addrs.v[j], addr))
						confirmed = names.v[i];
			}
		}
		buf all;
		buf_init(&all, 0);
		for (size_t i = 0; i < names.n; i++)
			buf_printf(&all, "%s%s", i ? ", " : "", names.v[i]);
		if (named && confirmed != NULL)
			check_report(c, CHECK_OK, host, "PTR of %s is %s, which resolves back to %s (FCrDNS)",
			       addr, host, addr);
		else
			check_report(c, CHECK_ERROR, host,
			       "PTR of %s is %s (%s), not %s: other servers compare it with our "
			       "HELO name; ask whoever runs the address to publish  %s. PTR %s.",
			       addr, buf_cstr(&all),
			       resolves_to(c, names.v[0], addr) ? "it resolves back to the address"
								 : "not even forward-confirmed",
			       host, rev, host);
		buf_free(&all);
	}
	free(err);
	check_list_free(&names);
	free(rev);
}

/* wildcard_for - some listener takes every address of addr's family (0.0.0.0, or :: which
 * lib/net.c binds IPV6_V6ONLY): a NAT may forward an address the interfaces do not have */
static bool wildcard_for(const struct checker *c, const char *addr)
{
	unsigned char b[16];
	int fam = check_addr_bytes(addr, b);
	for (int r = 0; r < ROLE_COUNT; r++) {
		const struct listen_spec *l = &c->cfg->listen[r];
		if (!l->enabled)
			continue;
		if (l->addr.ss_family == AF_INET && fam == AF_INET &&
		    ((const struct sockaddr_in *)&l->addr)->sin_addr.s_addr == htonl(INADDR_ANY))
			return true;
		if (l->addr.ss_family == AF_INET6 && fam == AF_INET6 &&
		    IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&l->addr)->sin6_addr))
			return true;
	}
	return false;
}

void check_host(struct checker *c)
{
	const struct tern_config *cfg = c->cfg;
	const char *host = cfg->hostname;
	const struct listen_spec *smtp = &cfg->listen[ROLE_SMTP];
	if (!smtp->enabled) {
		check_report(c, CHECK_WARN, host,
		       "no [listen] smtp: mail from other servers (the MX role) cannot arrive");
	} else {
		unsigned port = smtp->addr.ss_family == AF_INET6
					? ntohs(((const struct sockaddr_in6 *)&smtp->addr)->sin6_port)
					: ntohs(((const struct sockaddr_in *)&smtp->addr)->sin_port);
		if (port != 25 && !c->private_ok)
			check_report(c, CHECK_WARN, host,
			       "[listen] smtp is on port %u: other mail servers connect to port 25",
			       port);
	}
	char *err = NULL;
	enum dns_answer_status st = check_addrs(c, host, &c->host_addrs, &err);
	if (st == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, host, "A/AAAA lookup failed: %s", err);
		free(err);
		return;
	}
	free(err);
	if (c->host_addrs.n == 0) {
		const char *a = suggested_address(c);
		check_report(c, CHECK_ERROR, host, "no A or AAAA record: publish  %s. %s %s", host,
		       strchr(a, ':') ? "AAAA" : "A", a);
		return;
	}
	for (size_t i = 0; i < c->host_addrs.n; i++) {
		const char *a = c->host_addrs.v[i];
		if (!check_listening_on(c, a) && wildcard_for(c, a))
			check_report(c, CHECK_WARN, host,
			       "has address %s, which none of this host's interfaces has: right only "
			       "if it is forwarded here (NAT); else fix the record",
			       a);
		else if (!check_listening_on(c, a))
			check_report(c, CHECK_ERROR, host,
			       "has address %s, which this server does not listen on (it listens on "
			       "%zu address(es)%s%s): fix the record or [listen]",
			       a, c->listen.n, c->listen.n ? ", e.g. " : "",
			       c->listen.n ? c->listen.v[0] : "");
		else if (check_is_private(a) && !c->private_ok)
			check_report(c, CHECK_WARN, host,
			       "has address %s, a private or loopback address other mail servers "
			       "cannot reach",
			       a);
		else
			check_report(c, CHECK_OK, host, "has address %s, which this server listens on", a);
	}
	for (size_t i = 0; i < c->host_addrs.n; i++)
		check_ptr(c, c->host_addrs.v[i]);
}

/* ---- one domain ------------------------------------------------------------------------------ */

static bool check_mx(struct checker *c, const char *dom)
{
	const char *host = c->cfg->hostname;
	struct check_answer r;
	check_query(c, dom, ns_t_mx, &r);
	bool here = false;
	if (r.status == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, dom, "MX lookup failed: %s", r.error ? r.error : "");
	} else if (r.status != DNS_ANSWER_OK) {
		check_report(c, CHECK_ERROR, dom, "MX %s: publish  %s. MX 10 %s.",
		       r.status == DNS_ANSWER_NXDOMAIN ? "missing (the domain does not exist)"
						       : "missing",
		       dom, host);
	} else {
		struct ares_mx_reply *mx = NULL;
		if (ares_parse_mx_reply(r.abuf, r.alen, &mx) != ARES_SUCCESS) {
			check_report(c, CHECK_ERROR, dom, "MX answer malformed");
		} else {
			buf others;
			buf_init(&others, 0);
			unsigned pref = 0;
			bool null_mx = false;
			for (struct ares_mx_reply *p = mx; p; p = p->next) {
				if (check_same_name(p->host, host)) {
					here = true;
					pref = p->priority;
				} else {
					null_mx |= p->host[0] == '\0' || !strcmp(p->host, ".");
					buf_printf(&others, "%s%u %s", others.len ? ", " : "",
						   p->priority, p->host[0] ? p->host : ".");
				}
			}
			if (here)
				check_report(c, CHECK_OK, dom, "MX %u %s points here%s%s%s", pref, host,
				       others.len ? " (also: " : "", buf_cstr(&others),
				       others.len ? ")" : "");
			else
				check_report(c, CHECK_ERROR, dom, "MX %s (%s), not to %s: publish  %s. MX 10 %s.",
				       null_mx ? "says the domain takes no mail"
					       : "points elsewhere",
				       buf_cstr(&others), host, dom, host);
			buf_free(&others);
			ares_free_data(mx);
		}
	}
	check_answer_free(&r);
	return here;
}

struct spf_wait {
	bool done;
	enum spf_result result;
	char *problem;
};

static void on_spf(void *ctx, const struct spf_outcome *o)
{
	struct spf_wait *w = ctx;
	w->result = o->result;
	w->problem = o->problem ? xstrdup(o->problem) : NULL;
	w->done = true;
}

/* spf_for - check_host() of dom for our address addr */
static enum spf_result spf_for(struct checker *c, const char *dom, const char *addr,
			       char **problem_r)
{
	struct sockaddr_storage ss = { 0 };
	unsigned char bytes[16];
	int fam = check_addr_bytes(addr, bytes);
	if (fam == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		memcpy(&s->sin_addr, bytes, 4);
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, bytes, 16);
	}
	char *sender = xasprintf("postmaster@%s", dom);
	struct spf_wait w = { .result = SPF_TEMPERROR };
	spf_check_start(c->base, c->dns, (const struct sockaddr *)&ss, sender, c->cfg->hostname,
			c->cfg->hostname, on_spf, &w);
	check_wait(c, &w.done);
	free(sender);
	*problem_r = w.problem;
	return w.result;
}

static void check_spf(struct checker *c, const char *dom)
{
	char *want = xasprintf("publish  %s. TXT \"v=spf1 mx -all\"", dom);
	struct check_txt_answer t;
	const char *rec;
	size_t n = check_records_of_kind(c, dom, spf_record_is_spf, &t, &rec);
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, dom, "SPF lookup failed: %s", t.error ? t.error : "");
	} else if (n == 0) {
		check_report(c, CHECK_ERROR, dom, "SPF missing: %s", want);
	} else if (n > 1) {
		check_report(c, CHECK_ERROR, dom,
		       "SPF: %zu records (a permerror for every receiver, RFC 7208 §4.5): keep one: %s",
		       n, want);
	} else {
		struct spf_record parsed;
		char *err = NULL;
		char *s = check_shown(rec);
		if (spf_record_parse(rec, &parsed, &err) < 0) {
			check_report(c, CHECK_ERROR, dom, "SPF %s is invalid (%s): %s", s, err, want);
			free(err);
		} else {
			spf_record_free(&parsed);
			bool all_pass = true;
			for (size_t i = 0; i < c->host_addrs.n; i++) {
				char *problem = NULL;
				enum spf_result r = spf_for(c, dom, c->host_addrs.v[i], &problem);
				if (r != SPF_PASS) {
					all_pass = false;
					check_report(c, CHECK_ERROR, dom,
					       "SPF %s gives %s for %s, this server's address%s%s%s: %s",
					       s, spf_result_name(r), c->host_addrs.v[i],
					       problem ? " (" : "", problem ? problem : "",
					       problem ? ")" : "", want);
				}
				free(problem);
			}
			if (all_pass && c->host_addrs.n > 0)
				check_report(c, CHECK_OK, dom, "SPF %s authorises this server's address(es)", s);
			else if (c->host_addrs.n == 0)
				check_report(c, CHECK_WARN, dom,
				       "SPF %s parses, but %s has no address to check it with", s,
				       c->cfg->hostname);
		}
		free(s);
	}
	check_txt_free(&t);
	free(want);
}

static void check_dkim(struct checker *c, const char *dom)
{
	if (c->ring == NULL)
		return;	/* reported with the config */
	const struct dkim_key *signing[2];
	size_t n_signing = dkim_keyring_pick(c->ring, dom, signing, 2);
	size_t found = 0;
	for (size_t i = 0; i < c->ring->n; i++) {
		const struct dkim_key *k = &c->ring->keys[i];
		if (strcasecmp(k->domain, dom) != 0)
			continue;
		found++;
		bool used = false;
		for (size_t j = 0; j < n_signing; j++)
			used |= signing[j] == k;
		char *name = xasprintf("%s._domainkey.%s", k->selector, k->domain);
		char *line = dkim_key_zone_line(k);
		const char *type = k->type == DKIM_KEYTYPE_RSA ? "rsa" : "ed25519";
		enum check_level bad = used ? CHECK_ERROR : CHECK_WARN;
		const char *note = used ? "" : " (an older key, not used for signing)";
		struct check_txt_answer t;
		check_txt(c, name, &t);
		if (t.status == DNS_ANSWER_TEMPFAIL)
			check_report(c, CHECK_ERROR, dom, "DKIM %s: lookup failed: %s", name,
			       t.error ? t.error : "");
		else if (t.status != DNS_ANSWER_OK)
			check_report(c, bad, dom, "DKIM %s missing%s: publish  %s", name, note, line);
		else if (dkim_key_published(k, (const char *const *)t.txts.v, t.txts.n))
			check_report(c, CHECK_OK, dom, "DKIM %s publishes our %s key", name, type);
		else
			check_report(c, bad, dom,
			       "DKIM %s differs from our %s key%s (another p=, or not a valid key "
			       "record): publish  %s",
			       name, type, note, line);
		check_txt_free(&t);
		free(line);
		free(name);
	}
	if (found == 0)
		check_report(c, CHECK_WARN, dom,
		       "DKIM: no key for %s in %s: outgoing mail is not signed; run  tern dkim "
		       "generate %s  and publish the records it prints",
		       dom, c->cfg->dkim_dir, dom);
}

/* is_dmarc - a DMARC record: "v=DMARC1" first (RFC 7489 §6.6.3 keeps only those) */
static bool is_dmarc(const char *txt)
{
	return strncmp(txt, "v=DMARC1", 8) == 0;
}

static void check_dmarc(struct checker *c, const char *dom)
{
	char *name = xasprintf("_dmarc.%s", dom);
	char *want = xasprintf("publish  %s. TXT \"v=DMARC1; p=quarantine; rua=mailto:postmaster@%s\"",
			       name, dom);
	struct check_txt_answer t;
	const char *rec;
	size_t n = check_records_of_kind(c, name, is_dmarc, &t, &rec);
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, dom, "DMARC lookup failed: %s", t.error ? t.error : "");
	} else if (n == 0) {
		check_report(c, CHECK_ERROR, dom, "DMARC missing: %s", want);
	} else if (n > 1) {
		check_report(c, CHECK_ERROR, dom, "DMARC: %zu records at %s (receivers ignore them all): keep "
					"one: %s",
		       n, name, want);
	} else {
		struct dmarc_record r;
		char *err = NULL;
		char *s = check_shown(rec);
		if (dmarc_record_parse(rec, &r, &err) < 0)
			check_report(c, CHECK_ERROR, dom, "DMARC %s is invalid (%s): %s", s, err, want);
		else if (r.p == DMARC_POLICY_NONE)
			check_report(c, CHECK_WARN, dom,
			       "DMARC %s: p=none only monitors; once reports look right, %s", s,
			       want);
		else
			check_report(c, CHECK_OK, dom, "DMARC %s: p=%s", s, dmarc_policy_name(r.p));
		free(err);
		free(s);
	}
	check_txt_free(&t);
	free(want);
	free(name);
}

/* check_policy_host - a host name the domain publishes for HTTPS (mta-sts., autoconfig.):
 * when it leads to this server, the certificate must name it; another server's certificate
 * is not ours to check. Returns whether the name has addresses. */
static bool check_policy_host(struct checker *c, const char *dom, const char *name,
			      enum check_level cert_level, const char *why)
{
	struct check_list addrs = { 0 };
	char *err = NULL;
	enum dns_answer_status st = check_addrs(c, name, &addrs, &err);
	bool ours = false;
	for (size_t i = 0; i < addrs.n && !ours; i++)
		ours = check_listening_on(c, addrs.v[i]);
	if (st == DNS_ANSWER_OK && ours)
		check_cert_name(c, name, cert_level, why);
	else if (st == DNS_ANSWER_OK)
		check_report(c, CHECK_OK, dom, "%s leads to another server (%s): its certificate is not "
				     "checked here",
		       name, addrs.v[0]);
	free(err);
	check_list_free(&addrs);
	return st == DNS_ANSWER_OK;
}

/* check_one_record - the single record of a kind at name: count those is_rec keeps, check
 * that one with check; missing is a warning (optional records), the rest errors */
static void check_one_record(struct checker *c, const char *dom, const char *kind,
			     const char *name, const char *want, bool (*is_rec)(const char *),
			     int (*check)(const char *, const char **), bool *present_r)
{
	struct check_txt_answer t;
	const char *rec;
	size_t n = check_records_of_kind(c, name, is_rec, &t, &rec);
	*present_r = false;
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		check_report(c, CHECK_ERROR, dom, "%s lookup failed: %s", kind, t.error ? t.error : "");
	} else if (n == 0) {
		check_report(c, CHECK_WARN, dom, "%s not published: publish  %s", kind, want);
	} else if (n > 1) {
		check_report(c, CHECK_ERROR, dom, "%s: %zu records at %s (senders then ignore them all): keep "
					"one: publish  %s",
		       kind, n, name, want);
	} else {
		const char *err = NULL;
		char *s = check_shown(rec);
		if (check(rec, &err) < 0) {
			check_report(c, CHECK_ERROR, dom, "%s %s is invalid (%s): publish  %s", kind, s, err,
			       want);
		} else {
			check_report(c, CHECK_OK, dom, "%s %s", kind, s);
			*present_r = true;
		}
		free(s);
	}
	check_txt_free(&t);
}

static void check_mtasts_tlsrpt(struct checker *c, const char *dom)
{
	char id[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(id, sizeof(id), "%Y%m%d%H%M%SZ", &tm);
	char *name = xasprintf("_mta-sts.%s", dom);
	char *want = xasprintf("%s. TXT \"v=STSv1; id=%s\" and serve the policy at "
			       "https://mta-sts.%s/.well-known/mta-sts.txt",
			       name, id, dom);
	bool present;
	check_one_record(c, dom, "MTA-STS", name, want, mtasts_is_record, mtasts_record_check,
			 &present);
	char *policy_host = xasprintf("mta-sts.%s", dom);
	bool has_host = check_policy_host(c, dom, policy_host, CHECK_ERROR,
					  ": senders fetch the MTA-STS policy over HTTPS from it");
	if (present && !has_host)
		check_report(c, CHECK_ERROR, dom,
		       "MTA-STS is published but %s has no address: senders cannot fetch the "
		       "policy; publish  %s. CNAME %s.",
		       policy_host, policy_host, c->cfg->hostname);
	free(policy_host);
	free(want);
	free(name);

	name = xasprintf("_smtp._tls.%s", dom);
	want = xasprintf("%s. TXT \"v=TLSRPTv1; rua=mailto:postmaster@%s\"", name, dom);
	check_one_record(c, dom, "TLS-RPT", name, want, tlsrpt_is_record, tlsrpt_record_check,
			 &present);
	free(want);
	free(name);

	char *autoconf = xasprintf("autoconfig.%s", dom);
	check_policy_host(c, dom, autoconf, CHECK_WARN,
			  ": mail clients that look for their settings there will refuse it");
	free(autoconf);
}

void check_domain(struct checker *c, const char *dom)
{
	if (!config_is_local_domain(c->cfg, dom))
		check_report(c, CHECK_ERROR, dom, "is not one of the configured domains");
	check_mx(c, dom);
	check_spf(c, dom);
	check_dkim(c, dom);
	check_dmarc(c, dom);
	check_mtasts_tlsrpt(c, dom);
}
