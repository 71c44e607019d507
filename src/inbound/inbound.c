/* inbound - the authentication pipeline of the MX role: SPF at MAIL FROM, DKIM and DMARC at
 * the end of data, the verdict and the Authentication-Results field (see inbound.h) */
#include "inbound/inbound.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xmalloc.h"

#define INBOUND_HEADER_MAX (256 * 1024)	/* header bytes read for From and A-R */
#define INBOUND_DEADLINE 30		/* seconds after the end of data */

/* ---- the pipeline ---------------------------------------------------------------------------- */

struct inbound {
	struct event_base *base;
	struct dns *dns;
	const struct tern_config *cfg;
	char *identity;			/* MAIL FROM, or the HELO name for <> */
	bool helo_identity;
	char *spf_domain;

	struct spf_check *spf;
	bool spf_done;
	enum spf_result spf_result;
	char *spf_problem;
	char *spf_exp;

	bool finishing;			/* inbound_finish was called */
	inbound_cb *cb;
	void *ctx;
	uint64_t hdr_start;
	struct inbound_header hdr;
	void *map;			/* the message, for DKIM */
	size_t map_len;

	struct dkim_verify *dkim;
	bool dkim_done;
	struct dkim_verify_result dkim_result;	/* deep copy */
	struct dkim_sig_result *dkim_sigs;

	struct arc_verify *arc;
	bool arc_done;
	char arc_cv[8];			/* "none" "pass" "fail" */
	unsigned arc_instances, arc_oldest_pass;
	char *arc_domain, *arc_reason;
	char remote_ip[64];		/* the client, for arc's smtp.remote-ip */
	const char *arc_override;	/* the trusted sealer that overrode DMARC, or NULL */

	struct dmarc_check *dmarc;
	bool dmarc_started, dmarc_done;
	enum dmarc_result dmarc_result;
	enum dmarc_policy published, disposition;
	bool dmarc_policy;
	char *dmarc_from;
	const char *dmarc_comment;
	bool multi_from;		/* From addresses of several domains (§6.6.1) */

	struct event *timer;
	struct event *done_ev;
	double t_begin, t_spf, t_finish;	/* monotonic ms, for the log's figures */
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void progress(struct inbound *in);

static void on_spf(void *ctx, const struct spf_outcome *o)
{
	struct inbound *in = ctx;
	in->spf = NULL;
	in->spf_done = true;
	in->t_spf = now_ms();
	in->spf_result = o->result;
	in->spf_problem = o->problem ? xstrdup(o->problem) : NULL;
	in->spf_exp = o->explanation ? xstrdup(o->explanation) : NULL;
	if (in->finishing)
		progress(in);
}

struct inbound *inbound_begin(struct event_base *base, struct dns *d,
			      const struct tern_config *cfg, const struct sockaddr *peer,
			      const char *helo, const char *sender)
{
	struct inbound *in = xcalloc(1, sizeof(*in));
	in->base = base;
	in->dns = d;
	in->cfg = cfg;
	in->t_begin = now_ms();
	if (peer == NULL || net_ntop(peer, in->remote_ip, sizeof(in->remote_ip)) == NULL)
		in->remote_ip[0] = '\0';
	char *spf_sender;
	if (*sender == '\0') {
		/* RFC 7208 §2.4: for the null sender, the HELO identity */
		in->helo_identity = true;
		in->identity = xstrdup(helo ? helo : "unknown");
		spf_sender = xasprintf("postmaster@%s", in->identity);
	} else {
		in->identity = xstrdup(sender);
		spf_sender = xstrdup(sender);
	}
	const char *at = strrchr(spf_sender, '@');
	in->spf_domain = xstrdup(at ? at + 1 : spf_sender);
	if (d == NULL) {
		in->spf_done = true;
		in->spf_result = SPF_TEMPERROR;
		in->spf_problem = xstrdup("no resolver");
	} else {
		in->spf = spf_check_start(base, d, peer, spf_sender, helo, cfg->hostname, on_spf,
					  in);
	}
	free(spf_sender);
	return in;
}

static void on_dkim(void *ctx, const struct dkim_verify_result *r)
{
	struct inbound *in = ctx;
	in->dkim = NULL;
	in->dkim_done = true;
	/* keep a copy: the result is valid during the callback only */
	in->dkim_sigs = xcalloc(r->n + 1, sizeof(*in->dkim_sigs));
	for (size_t i = 0; i < r->n; i++) {
		const struct dkim_sig_result *s = &r->sigs[i];
		struct dkim_sig_result *c = &in->dkim_sigs[i];
		c->result = s->result ? xstrdup(s->result) : NULL;
		c->domain = s->domain ? xstrdup(s->domain) : NULL;
		c->selector = s->selector ? xstrdup(s->selector) : NULL;
		c->algorithm = s->algorithm ? xstrdup(s->algorithm) : NULL;
		c->b = s->b ? xstrdup(s->b) : NULL;
		c->reason = s->reason ? xstrdup(s->reason) : NULL;
	}
	in->dkim_result.n = r->n;
	in->dkim_result.sigs = in->dkim_sigs;
	progress(in);
}

static void on_arc(void *ctx, const struct arc_verify_result *r)
{
	struct inbound *in = ctx;
	in->arc = NULL;
	in->arc_done = true;
	snprintf(in->arc_cv, sizeof(in->arc_cv), "%s", r->cv ? r->cv : "fail");
	in->arc_instances = r->instances;
	in->arc_oldest_pass = r->oldest_pass;
	in->arc_domain = r->domain ? xstrdup(r->domain) : NULL;
	in->arc_reason = r->reason ? xstrdup(r->reason) : NULL;
	progress(in);
}

static void on_dmarc(void *ctx, const struct dmarc_outcome *o)
{
	struct inbound *in = ctx;
	in->dmarc = NULL;
	in->dmarc_done = true;
	in->dmarc_result = o->result;
	in->published = o->published;
	in->disposition = o->disposition;
	in->dmarc_policy = o->record_domain != NULL;
	progress(in);
}

static void deliver_verdict(evutil_socket_t fd, short what, void *arg);

/* start_dmarc - SPF and DKIM are known: evaluate the From domain's policy */
static void start_dmarc(struct inbound *in)
{
	in->dmarc_started = true;
	const struct inbound_header *h = &in->hdr;
	for (size_t i = 1; i < h->n_from; i++)
		if (strcmp(h->from_domains[i], h->from_domains[0]) != 0)
			in->multi_from = true;
	if (h->n_from == 0) {
		in->dmarc_done = true;
		in->dmarc_result = DMARC_NONE;
		in->dmarc_comment = "no From domain";
		return;
	}
	if (in->multi_from) {
		/* RFC 7489 §6.6.1: several From domains cannot be evaluated as one; we reject
		 * such a message from another MTA (when DMARC is enforced) and call it fail */
		in->dmarc_done = true;
		in->dmarc_result = DMARC_FAIL;
		in->dmarc_comment = "From addresses in several domains";
		return;
	}
	in->dmarc_from = xstrdup(h->from_domains[0]);
	const char **pass = xcalloc(in->dkim_result.n + 1, sizeof(char *));
	size_t n_pass = 0;
	for (size_t i = 0; i < in->dkim_result.n; i++)
		if (in->dkim_sigs[i].result && strcmp(in->dkim_sigs[i].result, "pass") == 0 &&
		    in->dkim_sigs[i].domain)
			pass[n_pass++] = in->dkim_sigs[i].domain;
	struct dmarc_input din = { .from_domain = in->dmarc_from,
				   .spf_pass = in->spf_result == SPF_PASS,
				   .spf_domain = in->spf_domain,
				   .dkim_pass_domains = pass,
				   .n_dkim = n_pass };
	if (in->dns == NULL) {
		in->dmarc_done = true;
		in->dmarc_result = DMARC_TEMPERROR;
	} else {
		in->dmarc = dmarc_check_start(in->base, in->dns, &din, on_dmarc, in);
	}
	free(pass);
}

/* progress - go on once a check has finished; the verdict when all have */
static void progress(struct inbound *in)
{
	if (!in->finishing || in->done_ev != NULL)
		return;
	if (!in->spf_done || !in->dkim_done || !in->arc_done)
		return;
	if (!in->dmarc_started)
		start_dmarc(in);
	if (!in->dmarc_done)
		return;
	in->done_ev = event_new(in->base, -1, 0, deliver_verdict, in);
	event_active(in->done_ev, EV_TIMEOUT, 1);
}

/* deliver_verdict - decide, format the field, call back */
static void deliver_verdict(evutil_socket_t fd, short what, void *arg)
{
	struct inbound *in = arg;
	const struct tern_config *cfg = in->cfg;
	(void)fd;
	(void)what;
	in->arc_override = inbound_arc_override(cfg, in->dmarc_result, in->disposition,
						in->arc_cv, in->arc_domain);
	struct inbound_results r = {
		.spf = in->spf_result, .spf_helo = in->helo_identity,
		.spf_identity = in->identity, .spf_problem = in->spf_problem,
		.dkim = &in->dkim_result, .dmarc = in->dmarc_result,
		.dmarc_from = in->dmarc_from, .dmarc_policy = in->dmarc_policy,
		.published = in->published, .disposition = in->disposition,
		.dmarc_comment = in->dmarc_comment,
		.dmarc_override = in->arc_override,
		.arc = in->arc_cv, .arc_instances = in->arc_instances,
		.arc_oldest_pass = in->arc_oldest_pass, .arc_domain = in->arc_domain,
		.arc_reason = in->arc_reason,
		.remote_ip = in->remote_ip[0] ? in->remote_ip : NULL,
	};
	char *header = inbound_authres_format(config_authserv_id(cfg), &r);
	struct inbound_verdict v = { .action = INBOUND_ACCEPT, .header = header };
	char *reply = NULL;
	if (cfg->dmarc_enforce && in->multi_from) {
		v.action = INBOUND_REJECT;
		reply = xstrdup("550 5.7.1 From addresses in several domains cannot be "
				"authenticated (RFC 7489 section 6.6.1)");
	} else if (cfg->dmarc_enforce && in->dmarc_result == DMARC_FAIL &&
		   in->disposition == DMARC_POLICY_REJECT && in->arc_override == NULL) {
		v.action = INBOUND_REJECT;
		reply = xasprintf("550 5.7.1 Rejected by the DMARC policy of %s", in->dmarc_from);
	} else if (cfg->spf_reject_fail && in->spf_result == SPF_FAIL) {
		/* RFC 7208 §8.4: 550 5.7.1 with the domain's explanation when it gave one */
		v.action = INBOUND_REJECT;
		reply = xasprintf("550 5.7.1 SPF fail for %s%s%s", in->spf_domain,
				  in->spf_exp ? ": " : "", in->spf_exp ? in->spf_exp : "");
	} else if (cfg->dmarc_enforce && in->dmarc_result == DMARC_FAIL &&
		   in->disposition == DMARC_POLICY_QUARANTINE && in->arc_override == NULL) {
		v.action = INBOUND_QUARANTINE;
	}
	v.reply = reply;
	struct spool_range *cuts = xcalloc(in->hdr.n_forged + 1, sizeof(*cuts));
	for (size_t i = 0; i < in->hdr.n_forged; i++) {
		cuts[i].start = in->hdr_start + in->hdr.forged[i].start;
		cuts[i].end = in->hdr_start + in->hdr.forged[i].end;
	}
	v.cuts = cuts;
	v.n_cuts = in->hdr.n_forged;
	/* spf_ms: MAIL FROM to the SPF result; wait_ms: what the end of data waited */
	double t_end = now_ms();
	const char *dkim_first = in->dkim_result.n && in->dkim_sigs[0].result
					 ? in->dkim_sigs[0].result : "none";
	char *summary = xasprintf("spf=%s dkim=%s dmarc=%s%s%s arc=%s%s%s%s action=%s "
				  "forged_ar=%zu spf_ms=%.1f wait_ms=%.1f",
				  spf_result_name(in->spf_result),
				  dkim_first,
				  dmarc_result_name(in->dmarc_result),
				  in->dmarc_from ? " from_domain=" : "",
				  in->dmarc_from ? in->dmarc_from : "",
				  in->arc_cv,
				  in->arc_domain ? " arc_sealer=" : "",
				  in->arc_domain ? in->arc_domain : "",
				  in->arc_override ? " arc_override=yes" : "",
				  v.action == INBOUND_REJECT ? "reject"
				  : v.action == INBOUND_QUARANTINE ? "quarantine" : "accept",
				  in->hdr.n_forged, in->spf_done && in->t_spf > 0 ? in->t_spf - in->t_begin
										: -1.0,
				  t_end - in->t_finish);
	v.summary = summary;
	inbound_cb *cb = in->cb;
	void *ctx = in->ctx;
	in->cb = NULL;
	cb(ctx, &v);	/* may free in */
	free(summary);
	free(cuts);
	free(reply);
	free(header);
}

/* on_deadline - checks still running count as temperror */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct inbound *in = arg;
	(void)fd;
	(void)what;
	if (!in->spf_done) {
		spf_check_cancel(&in->spf);
		in->spf_done = true;
		in->spf_result = SPF_TEMPERROR;
		in->spf_problem = xstrdup("timed out");
	}
	if (!in->dkim_done) {
		dkim_verify_cancel(in->dkim);
		in->dkim = NULL;
		in->dkim_done = true;	/* dkim=none: nothing verified in time */
	}
	if (!in->arc_done) {
		arc_verify_cancel(in->arc);
		in->arc = NULL;
		in->arc_done = true;	/* a chain that could not be checked is not a pass */
		snprintf(in->arc_cv, sizeof(in->arc_cv), "fail");
		in->arc_reason = xstrdup("timed out");
	}
	if (!in->dmarc_started)
		start_dmarc(in);
	if (!in->dmarc_done) {
		dmarc_check_cancel(&in->dmarc);
		in->dmarc_done = true;
		in->dmarc_result = DMARC_TEMPERROR;
	}
	progress(in);
}

void inbound_finish(struct inbound *in, const char *path, uint64_t hdr_start, uint64_t size,
		    inbound_cb *cb, void *ctx)
{
	in->finishing = true;
	in->t_finish = now_ms();
	in->cb = cb;
	in->ctx = ctx;
	in->hdr_start = hdr_start;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && size > hdr_start) {
		in->map_len = (size_t)(size - hdr_start);
		/* mmap wants a page-aligned offset: map from 0, use from hdr_start */
		void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m != MAP_FAILED) {
			in->map = m;
			const char *msg = (const char *)m + hdr_start;
			size_t hl = in->map_len < INBOUND_HEADER_MAX ? in->map_len : INBOUND_HEADER_MAX;
			inbound_header_scan(msg, hl, config_authserv_id(in->cfg), &in->hdr);
		}
	}
	if (fd >= 0)
		close(fd);
	if (in->map == NULL) {
		log_warnx("inbound: cannot read %s: %s", path, strerror(errno));
		in->map_len = 0;
	}
	const char *msg = in->map ? (const char *)in->map + hdr_start : "";
	in->dkim = dkim_verify_start(in->dns, msg, in->map_len, on_dkim, in);
	in->arc = arc_verify_start(in->dns, msg, in->map_len, on_arc, in);
	struct timeval tv = { INBOUND_DEADLINE, 0 };
	in->timer = evtimer_new(in->base, on_deadline, in);
	evtimer_add(in->timer, &tv);
	progress(in);
}

const char *inbound_arc_override(const struct tern_config *cfg, enum dmarc_result dmarc,
				 enum dmarc_policy disposition, const char *arc_cv,
				 const char *sealer)
{
	if (dmarc != DMARC_FAIL || disposition == DMARC_POLICY_NONE || arc_cv == NULL ||
	    strcmp(arc_cv, "pass") != 0 || sealer == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->n_arc_trusted_sealers; i++)
		if (strcasecmp(cfg->arc_trusted_sealers[i], sealer) == 0)
			return cfg->arc_trusted_sealers[i];
	return NULL;
}

void inbound_free(struct inbound **inp)
{
	struct inbound *in = *inp;
	if (in == NULL)
		return;
	*inp = NULL;
	spf_check_cancel(&in->spf);
	dkim_verify_cancel(in->dkim);
	arc_verify_cancel(in->arc);
	dmarc_check_cancel(&in->dmarc);
	if (in->timer != NULL)
		event_free(in->timer);
	if (in->done_ev != NULL)
		event_free(in->done_ev);
	if (in->map != NULL)
		munmap(in->map, (size_t)(in->hdr_start + in->map_len));
	inbound_header_free(&in->hdr);
	for (size_t i = 0; i < in->dkim_result.n; i++) {
		struct dkim_sig_result *c = &in->dkim_sigs[i];
		free((char *)c->result);
		free((char *)c->domain);
		free((char *)c->selector);
		free((char *)c->algorithm);
		free((char *)c->b);
		free((char *)c->reason);
	}
	free(in->dkim_sigs);
	free(in->identity);
	free(in->spf_domain);
	free(in->spf_problem);
	free(in->spf_exp);
	free(in->dmarc_from);
	free(in->arc_domain);
	free(in->arc_reason);
	free(in);
}

size_t inbound_forged_fields(const struct tern_config *cfg, const char *path, uint64_t hdr_start,
			     uint64_t size, struct spool_range **cuts_r)
{
	*cuts_r = NULL;
	if (size <= hdr_start)
		return 0;
	size_t len = size - hdr_start < INBOUND_HEADER_MAX ? (size_t)(size - hdr_start)
							   : INBOUND_HEADER_MAX;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char *hdr = xmalloc(len);
	ssize_t n = pread(fd, hdr, len, (off_t)hdr_start);
	close(fd);
	struct inbound_header h;
	inbound_header_scan(hdr, n > 0 ? (size_t)n : 0, config_authserv_id(cfg), &h);
	size_t k = h.n_forged;
	if (k > 0) {
		*cuts_r = xcalloc(k, sizeof(**cuts_r));
		for (size_t i = 0; i < k; i++) {
			(*cuts_r)[i].start = hdr_start + h.forged[i].start;
			(*cuts_r)[i].end = hdr_start + h.forged[i].end;
		}
	}
	inbound_header_free(&h);
	free(hdr);
	return k;
}
