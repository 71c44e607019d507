/* runner - the queue runner: picks due recipients, finds the next hop (routes or MX),
 * delivers with the SMTP client, records each outcome, retries with back-off, bounces */
#include "outbound/runner.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/recipient.h"
#include "dkim/dkim.h"
#include "lib/bgpool.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "mime/downgrade.h"
#include "outbound/arcseal.h"
#include "outbound/dns.h"
#include "outbound/dsn.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtp/client.h"
#include "store/store.h"

#define RUNNER_SCAN_LIMIT 2000
#define RUNNER_IDLE_SECONDS 60
#define RUNNER_REUSE_SECONDS 5	/* how long an idle connection waits for the next message */

struct delivery;

/* An open connection kept for the next message to the same destination (RSET, reuse). */
struct idle_conn {
	LIST_ENTRY(idle_conn) link;
	struct runner *r;
	char *domain;
	char relay[300];
	struct smtp_client *client;
	struct event *expire;
};

/* An attempt's outcome for one recipient, waiting for the next scan's transaction. */
struct rcpt_update {
	int64_t id;
	bool remove;		/* delivered or bounced: the row goes */
	char *defer_error;	/* else: deferred, with this error (NULL: neither) */
	int64_t next_try;
	bool warned;		/* the sender was told of the delay */
};

struct runner {
	struct event_base *base;
	const struct tern_config *cfg;
	struct queue *q;
	struct accounts *accounts;
	struct dns *dns;
	SSL_CTX *client_tls;
	const struct dkim_keyring *dkim;	/* loaded by the master as root; may be empty */
	char *spool_dir;
	int wake_fd;
	struct event *wake_ev, *timer, *sigterm, *sigint, *rescan;
	LIST_HEAD(, delivery) deliveries;
	LIST_HEAD(, idle_conn) idle;
	unsigned active;
	struct event *gauge_timer;	/* queue gauges due (runner_gauges) */
	uint64_t gauges_at;		/* when they were last read (metrics_now_usec) */
	bool stopping;
	bool arc_nokey_logged;		/* "no key to seal with" is logged once */
	/* outcomes of the attempts finished since the last scan (runner_flush) */
	struct rcpt_update *upd;
	size_t n_upd;
	char **fin_qids;		/* their messages, to finish when no recipient is left */
	size_t n_fin;
	struct bgpool *bg;		/* a thread removing finished messages' files, or NULL */
};

/* One attempt: the recipients of one message at one domain, over one connection. */
struct delivery {
	LIST_ENTRY(delivery) link;
	struct runner *r;
	char *qid;
	char *sender;
	char *domain;
	int64_t arrived;
	uint64_t body_offset, size;
	int64_t *ids;
	char **addrs;
	int *attempts;
	bool *delay_warned;
	char **notify;		/* per recipient DSN requests (RFC 3461), NULL when none */
	char **orcpt;
	char **last_errors;	/* per recipient: the queue's last error ("4.2.0 (451 …)"), or NULL */
	size_t n;
	char *ret;		/* RET= and ENVID= of the message */
	char *envid;
	int fd;
	int fd7;		/* the 7-bit form made for a server without 8BITMIME, or -1 */
	bool body_8bit;
	struct dns_host *hosts;
	size_t n_hosts, hi, ai;
	struct smtp_client *client;
	bool reused;			/* client came from the idle pool */
	char relay[300];
	char *last_error;		/* why the last host failed */
	bool next_hop_dsn;		/* the server that took the message offers DSN */
	bool admin_bounce;		/* tern queue bounce: no attempt, report the last error */
	char last_status[16];
	time_t started;
	buf dkim_sig;		/* DKIM-Signature fields (or, for a forwarded copy, the
				   ARC set) for the text in dkim_fd */
	int dkim_fd;		/* which text dkim_sig signs (fd or fd7); -1: not made yet */
};

/* A recipient to report on (failed for good, delayed, or delivered with NOTIFY=SUCCESS). */
struct failed_rcpt {
	enum dsn_action action;
	char *address;
	char *orcpt;
	char status[16];
	char *diagnostic;
	char *remote_mta;
	const char *note;	/* ours, shown before the diagnostic (static) */
};

static void runner_schedule_scan(struct runner *r);
static void delivery_try_next(struct delivery *d);
static void delivery_send(struct delivery *d);
static void delivery_lookup(struct delivery *d);

static void idle_free(struct idle_conn *ic)
{
	LIST_REMOVE(ic, link);
	event_free(ic->expire);
	if (ic->client != NULL)
		smtp_client_quit(&ic->client);
	free(ic->domain);
	free(ic);
}

static void idle_expire(evutil_socket_t fd, short what, void *arg)
{
	idle_free(arg);
}

/* idle_keep - park a usable connection for the next message to domain */
static void idle_keep(struct runner *r, const char *domain, const char *relay,
		      struct smtp_client *client)
{
	struct idle_conn *ic = xcalloc(1, sizeof(*ic));
	ic->r = r;
	ic->domain = xstrdup(domain);
	snprintf(ic->relay, sizeof(ic->relay), "%s", relay);
	ic->client = client;
	ic->expire = evtimer_new(r->base, idle_expire, ic);
	struct timeval tv = { RUNNER_REUSE_SECONDS, 0 };
	evtimer_add(ic->expire, &tv);
	LIST_INSERT_HEAD(&r->idle, ic, link);
}

/* idle_take - a parked connection to domain, or NULL */
static struct smtp_client *idle_take(struct runner *r, const char *domain, char *relay,
				     size_t relaysz)
{
	struct idle_conn *ic;
	LIST_FOREACH(ic, &r->idle, link) {
		if (strcmp(ic->domain, domain) != 0 || !smtp_client_usable(ic->client))
			continue;
		struct smtp_client *c = ic->client;
		ic->client = NULL;
		snprintf(relay, relaysz, "%s", ic->relay);
		idle_free(ic);
		return c;
	}
	return NULL;
}

static char *domain_of(const char *address)
{
	const char *at = strrchr(address, '@');
	char *d = xstrdup(at ? at + 1 : "");
	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

static void delivery_free(struct delivery *d)
{
	LIST_REMOVE(d, link);
	d->r->active--;
	if (d->client != NULL)
		smtp_client_quit(&d->client);
	if (d->fd >= 0)
		close(d->fd);
	if (d->fd7 >= 0)
		close(d->fd7);
	for (size_t i = 0; i < d->n; i++) {
		free(d->addrs[i]);
		free(d->notify[i]);
		free(d->orcpt[i]);
		free(d->last_errors[i]);
	}
	free(d->last_errors);
	free(d->addrs);
	free(d->notify);
	free(d->orcpt);
	free(d->delay_warned);
	free(d->ret);
	free(d->envid);
	free(d->ids);
	free(d->attempts);
	for (size_t i = 0; i < d->n_hosts; i++) {
		free(d->hosts[i].name);
		free(d->hosts[i].addrs);
		free(d->hosts[i].addrlens);
	}
	free(d->hosts);
	free(d->qid);
	free(d->sender);
	free(d->domain);
	free(d->last_error);
	buf_free(&d->dkim_sig);
	free(d);
}

/* status_from - the enhanced code in a reply text ("550 5.1.1 …"), else a default */
static void status_from(const char *text, const char *dflt, char out[16])
{
	const char *p = text ? strchr(text, ' ') : NULL;
	if (p != NULL && isdigit((unsigned char)p[1]) && p[2] == '.' &&
	    (p[1] == '2' || p[1] == '4' || p[1] == '5')) {
		size_t n = strcspn(p + 1, " ");
		if (n < 16) {
			memcpy(out, p + 1, n);
			out[n] = '\0';
			return;
		}
	}
	snprintf(out, 16, "%s", dflt);
}

/* xtext_decode - RFC 3461 §4 "+HH" escapes to bytes; caller frees */
static char *xtext_decode(const char *x)
{
	char *out = xmalloc(strlen(x) + 1), *o = out;
	for (const char *p = x; *p; p++) {
		if (p[0] == '+' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			char hex[3] = { p[1], p[2], '\0' };
			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else {
			*o++ = *p;
		}
	}
	*o = '\0';
	return out;
}

/* wants_failure_notice - RFC 3461 §4.1: no NOTIFY means FAILURE (and DELAY) */
static bool wants_failure_notice(const char *notify)
{
	return notify == NULL || strstr(notify, "FAILURE") != NULL;
}

static bool wants_delay_notice(const char *notify)
{
	return notify == NULL || strstr(notify, "DELAY") != NULL;
}

/* wants_success_notice - only an explicit NOTIFY=SUCCESS asks for one */
static bool wants_success_notice(const char *notify)
{
	return notify != NULL && strstr(notify, "SUCCESS") != NULL;
}

/* last_error_split - the queue's last error "4.2.0 (451 4.2.0 text)" into its status and
 * text (the reply or our own error); false when it has another form */
static bool last_error_split(const char *e, char status[16], char **text_r)
{
	const char *open = strstr(e, " (");
	size_t len = strlen(e);
	if (open == NULL || (size_t)(open - e) >= 16 || len < 2 || e[len - 1] != ')')
		return false;
	snprintf(status, 16, "%.*s", (int)(open - e), e);
	*text_r = xstrndup(open + 2, (size_t)(e + len - 1 - (open + 2)));
	return true;
}

/* bounce_deliver - compose a DSN for the recipients in f (all of one kind: failed, delayed
 * or delivered/relayed) and send it to the sender: into local mailboxes, or queued with the
 * null sender */
static void bounce_deliver(struct runner *r, const struct delivery *d,
			   const struct failed_rcpt *f, size_t n)
{
	bool delayed = f[0].action == DSN_DELAYED;
	const char *kind = f[0].action == DSN_FAILED ? "non-delivery" : delayed ? "delay" : "success";
	const char *qid = d->qid, *sender = d->sender;
	const struct tern_config *cfg = r->cfg;
	char *err = NULL;
	struct spool_msg *m = NULL;
	if (*sender == '\0') {
		log_info("%s: no bounce for a bounce (null sender)", qid);
		return;
	}
	struct dsn_rcpt *rc = xcalloc(n, sizeof(*rc));
	for (size_t i = 0; i < n; i++) {
		rc[i].final_rcpt = f[i].address;
		rc[i].orig_rcpt = f[i].orcpt;
		rc[i].action = f[i].action;
		rc[i].note = f[i].note;
		rc[i].status = f[i].status;
		rc[i].remote_mta = f[i].remote_mta;
		rc[i].diagnostic = f[i].diagnostic;
		rc[i].last_attempt = (int64_t)time(NULL);
		if (f[i].action == DSN_DELAYED)
			rc[i].will_retry_until = d->arrived + (int64_t)cfg->queue_max_lifetime;
	}
	char *envid = d->envid ? xtext_decode(d->envid) : NULL;
	struct dsn_report rep = {
		.reporting_mta = cfg->hostname,
		.envelope_sender = sender,
		.envid = envid,
		.arrival = d->arrived,
		.queue_id = qid,
		.return_full = d->ret != NULL && strcmp(d->ret, "FULL") == 0,
		.rcpts = rc,
		.n_rcpts = n,
	};
	char *path = queue_file_path(r->q, qid);
	int ofd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	struct recipient_targets t = { 0 };
	if (spool_open(r->spool_dir, "", &m, &err) < 0 || spool_flush(m) < 0 ||
	    dsn_compose(m->fd, &rep, ofd, d->body_offset, d->size, &err) < 0 ||
	    spool_adopt_size(m) < 0) {
		log_warnx("%s: cannot compose a bounce: %s", qid, err ? err : "write error");
		goto out;
	}
	/* local: the resolved users (and any forwarding targets) get it; remote: queued
	 * with the null sender so it can never bounce again */
	if (recipient_resolve(r->accounts, cfg, sender, &t) <= 0) {
		log_warnx("%s: bounce to <%s>: no such local user; dropped", qid, sender);
		goto out;
	}
	TRACE(qid, "dsn", "kind=%s qid=%s to=%s nrcpt=%zu", kind, m->qid, sender, n);
	TRACE(m->qid, "received", "origin=dsn of=%s kind=%s from= to=%s", qid, kind, sender);
	if (spool_deliver(m, cfg->data_dir, cfg->hostname, (const char *const *)t.locals,
			  t.n_locals, r->q, "", (const char *const *)t.remotes, t.n_remotes, NULL,
			  &err) < 0)
		log_warnx("%s: cannot deliver the bounce: %s", qid, err ? err : "?");
	else
		log_info("%s: sender %s notification: %s", qid, kind, m->qid);
out:
	if (m != NULL && m->path != NULL)
		spool_abort(&m);
	else
		spool_close(&m);
	free(err);
	recipient_targets_free(&t);
	if (ofd >= 0)
		close(ofd);
	free(envid);
	free(rc);
}

static int64_t now_minus(int64_t t)
{
	return (int64_t)time(NULL) - t;
}

static void failed_free(struct failed_rcpt *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].address);
		free(f[i].orcpt);
		free(f[i].diagnostic);
		free(f[i].remote_mta);
	}
	free(f);
}

/* retry_at - when to try again after attempts failures */
static int64_t retry_at(const struct runner *r, int attempts)
{
	uint64_t delay = r->cfg->queue_retry_min;
	for (int i = 1; i < attempts && delay < r->cfg->queue_retry_max; i++)
		delay *= 2;
	if (delay > r->cfg->queue_retry_max)
		delay = r->cfg->queue_retry_max;
	return (int64_t)time(NULL) + (int64_t)delay;
}

/* arrival_delay_usec - from a message's arrival (whole seconds) to now, for /metrics */
static uint64_t arrival_delay_usec(int64_t arrived)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t us = ((int64_t)ts.tv_sec - arrived) * 1000000 + ts.tv_nsec / 1000;
	return us > 0 ? (uint64_t)us : 0;
}

/* log_attempt - one line per recipient and attempt, in Postfix's form */
static void log_attempt(const struct delivery *d, size_t i, const char *relay,
			const char *status_code, const char *status, const char *text)
{
	char safe[400];
	log_info("%s: to=<%s>, relay=%s, delay=%lld, dsn=%s, status=%s (%s)", d->qid,
		 d->addrs[i], relay, (long long)(time(NULL) - d->arrived), status_code, status,
		 log_sanitize(safe, sizeof(safe), text, strlen(text)));
	TRACE(d->qid, "attempt", "to=%s relay=%s status=%s dsn=%s attempt=%d reply=%s", d->addrs[i],
	      relay, status, status_code, d->attempts[i] + 1, text);
}

/* delivery_finish - record every recipient's outcome; bounce what failed; next scan.
 * Reports go out first and the queue is updated after, in one transaction: a crash in
 * between repeats a report, it never loses one. */
static void delivery_finish(struct delivery *d, const struct smtp_client_result *res,
			    const char *fail_text, const char *fail_status, bool permanent)
{
	struct runner *r = d->r;
	struct failed_rcpt *failed = xcalloc(d->n, sizeof(*failed));
	struct failed_rcpt *delayed = xcalloc(d->n, sizeof(*delayed));
	struct failed_rcpt *succeeded = xcalloc(d->n, sizeof(*succeeded));
	bool *remove = xcalloc(d->n, sizeof(bool)), *warned = xcalloc(d->n, sizeof(bool));
	char **defer_error = xcalloc(d->n, sizeof(char *));
	size_t nf = 0, nd = 0, ns = 0;
	bool local = strcmp(d->relay, "local") == 0;
	int64_t now = (int64_t)time(NULL);
	/* arrived is in whole seconds, truncated: "more than" the lifetime guarantees the
	 * message really waited at least that long (">=" bounced after 3.1 s of 4). */
	bool expired = now - d->arrived > (int64_t)r->cfg->queue_max_lifetime;
	bool warn_due = r->cfg->queue_delay_warning > 0 &&
			now_minus(d->arrived) >= (int64_t)r->cfg->queue_delay_warning;
	for (size_t i = 0; i < d->n; i++) {
		const char *text = fail_text;
		char status[16];
		bool ok = false, perm = permanent;
		if (res != NULL) {
			const struct smtp_client_reply *rep = &res->rcpts[i];
			text = rep->text ? rep->text : "no reply";
			ok = rep->status == SMTP_CLIENT_OK;
			perm = rep->status == SMTP_CLIENT_PERMFAIL;
			if (rep->enhanced[0] != '\0')
				snprintf(status, sizeof(status), "%s", rep->enhanced);
			else
				status_from(text, ok ? "2.0.0" : perm ? "5.0.0" : "4.0.0", status);
		} else {
			snprintf(status, sizeof(status), "%s", fail_status);
		}
		if (ok) {
			log_attempt(d, i, d->relay, status, "sent", text);
			metrics_count(local ? METRICS_DELIVERED_LOCAL : METRICS_RELAYED);
			metrics_observe(METRICS_DELIVERY_DELAY, arrival_delay_usec(d->arrived));
			remove[i] = true;
			/* RFC 3461 section 6.2: a server that offers DSN took the request on with
			 * the message; otherwise the report is ours: delivered, or relayed */
			if (wants_success_notice(d->notify[i]) && (local || !d->next_hop_dsn)) {
				struct failed_rcpt *sr = &succeeded[ns++];
				sr->action = local ? DSN_DELIVERED : DSN_RELAYED;
				sr->address = xstrdup(d->addrs[i]);
				sr->orcpt = d->orcpt[i] ? xtext_decode(d->orcpt[i]) : NULL;
				snprintf(sr->status, sizeof(sr->status), "%s", status);
				sr->diagnostic = local ? NULL : xstrdup(text);
				sr->remote_mta = local ? NULL : xstrndup(d->relay, strcspn(d->relay, "["));
			}
			continue;
		}
		if (!perm && !expired) {
			log_attempt(d, i, d->relay[0] ? d->relay : "none", status, "deferred", text);
			metrics_count(METRICS_DEFERRED);
			defer_error[i] = xasprintf("%s (%s)", status, text);
			if (warn_due && !d->delay_warned[i] && wants_delay_notice(d->notify[i])) {
				/* tell the sender once that we are still trying */
				delayed[nd].action = DSN_DELAYED;
				delayed[nd].address = xstrdup(d->addrs[i]);
				delayed[nd].orcpt = d->orcpt[i] ? xtext_decode(d->orcpt[i]) : NULL;
				snprintf(delayed[nd].status, sizeof(delayed[nd].status), "%s", status);
				delayed[nd].diagnostic = xstrdup(text);
				delayed[nd].remote_mta = d->relay[0] ? xstrndup(d->relay, strcspn(d->relay, "["))
								     : NULL;
				nd++;
				warned[i] = true;
			}
			continue;
		}
		if (!perm)
			snprintf(status, sizeof(status), "4.4.7");	/* expired */
		log_attempt(d, i, d->relay[0] ? d->relay : "none", status, "bounced", text);
		metrics_count(METRICS_BOUNCED);
		metrics_observe(METRICS_DELIVERY_DELAY, arrival_delay_usec(d->arrived));
		remove[i] = true;
		if (!wants_failure_notice(d->notify[i])) {
			log_info("%s: to=<%s>: no bounce (NOTIFY=%s)", d->qid, d->addrs[i], d->notify[i]);
			continue;
		}
		failed[nf].action = DSN_FAILED;
		failed[nf].address = xstrdup(d->addrs[i]);
		failed[nf].orcpt = d->orcpt[i] ? xtext_decode(d->orcpt[i]) : NULL;
		snprintf(failed[nf].status, sizeof(failed[nf].status), "%s", status);
		failed[nf].diagnostic = xstrdup(text);
		failed[nf].remote_mta = d->relay[0] ? xstrndup(d->relay, strcspn(d->relay, "[")) : NULL;
		/* an operator's bounce comes before any attempt: the last real error (from the
		 * queue) is what the sender needs, with the note that the operator ended it */
		if (d->admin_bounce && d->last_errors[i] != NULL) {
			char st[16];
			char *last = NULL;
			free(failed[nf].diagnostic);
			if (last_error_split(d->last_errors[i], st, &last)) {
				failed[nf].diagnostic = last;
				if (st[0] == '4' || st[0] == '5')
					snprintf(failed[nf].status, sizeof(failed[nf].status), "5%s",
						 st + 1);
			} else {
				failed[nf].diagnostic = xstrdup(d->last_errors[i]);
			}
			failed[nf].note = text;	/* "bounced by the administrator" */
		}
		nf++;
	}
	if (nf > 0)
		bounce_deliver(r, d, failed, nf);
	if (nd > 0)
		bounce_deliver(r, d, delayed, nd);
	if (ns > 0)
		bounce_deliver(r, d, succeeded, ns);
	/* The queue is updated at the next scan, with every other attempt finished by then, in
	 * one transaction (runner_flush): one lock and one sync per batch, not per message. That
	 * scan is due at once (runner_schedule_scan), and it writes before it reads. */
	r->upd = xreallocarray(r->upd, r->n_upd + d->n, sizeof(*r->upd));
	for (size_t i = 0; i < d->n; i++) {
		r->upd[r->n_upd++] = (struct rcpt_update){
			.id = d->ids[i], .remove = remove[i], .defer_error = defer_error[i],
			.next_try = defer_error[i] != NULL ? retry_at(r, d->attempts[i] + 1) : 0,
			.warned = warned[i] };
		defer_error[i] = NULL;	/* the update's now */
	}
	r->fin_qids = xreallocarray(r->fin_qids, r->n_fin + 1, sizeof(*r->fin_qids));
	r->fin_qids[r->n_fin++] = xstrdup(d->qid);
	for (size_t i = 0; i < d->n; i++)
		free(defer_error[i]);
	free(defer_error);
	free(remove);
	free(warned);
	failed_free(failed, nf);
	failed_free(delayed, nd);
	failed_free(succeeded, ns);
	delivery_free(d);
	runner_schedule_scan(r);
}

static void on_sent(struct smtp_client *c, const struct smtp_client_result *res, void *ctx)
{
	struct delivery *d = ctx;
	d->next_hop_dsn = smtp_client_extensions(c)->dsn;
	if (res->usable && !d->r->stopping) {
		/* keep the connection for the next message to this destination */
		idle_keep(d->r, d->domain, d->relay, d->client);
		d->client = NULL;
	}
	delivery_finish(d, res, NULL, NULL, false);
}

static void on_connected(struct smtp_client *c, const struct smtp_client_reply *err, void *ctx)
{
	struct delivery *d = ctx;
	if (err != NULL) {
		free(d->last_error);
		d->last_error = xasprintf("%s: %s", d->relay, err->text ? err->text : "failed");
		snprintf(d->last_status, sizeof(d->last_status), "%s",
			 err->enhanced[0] ? err->enhanced : "4.4.1");
		smtp_client_quit(&d->client);
		d->ai++;
		delivery_try_next(d);
		return;
	}
	delivery_send(d);
}

/* downgrade - a 7-bit copy of the message in an unlinked file (RFC 6152 §3) for a server
 * without 8BITMIME; -1 when it cannot be made (8-bit headers): the client then refuses
 * and the recipients bounce with 5.6.3 */
static int downgrade(struct delivery *d)
{
	struct stat st;
	if (fstat(d->fd, &st) < 0 || (uint64_t)st.st_size < d->body_offset + d->size)
		return -1;
	void *map = d->size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, d->fd, 0)
			    : NULL;
	if (d->size && map == MAP_FAILED)
		return -1;
	char *path = xasprintf("%s/queue/%s.7bit", d->r->spool_dir, d->qid);
	int out = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out >= 0)
		unlink(path);	/* a scratch copy: nothing to clean up after a crash */
	free(path);
	int r = out < 0 ? -1
			: mime_downgrade_7bit(map ? (const char *)map + d->body_offset : "",
					      (size_t)d->size, out);
	if (map != NULL)
		munmap(map, (size_t)st.st_size);
	if (r != 0) {
		if (out >= 0)
			close(out);
		return -1;
	}
	log_info("%s: converted to 7 bit for %s (no 8BITMIME)", d->qid, d->relay);
	return out;
}

/* dkim_eligible - may we sign this message (text[0..len), what goes out)? Mail that came
 * in over SMTP starts with our Received: field, whose second line is ours alone
 * ("\tby HOST (Tern) with ESMTPSA id ..."; the client's HELO is on the first line and cannot
 * hold a line end): sign only when the protocol word ends in 'A' (authenticated, RFC 3848).
 * Text without a Received: first was made here (a bounce or delay notice from dsn.c): sign.
 * Our own Authentication-Results field, which the inbound checks put above our Received:,
 * is stepped over first (such text came in over SMTP). Mail from outside that an alias
 * forwards is not signed (ARC is for that: arcseal.c). */
static bool dkim_eligible(const char *text, size_t len, const struct tern_config *cfg)
{
	static const char rcvd[] = "Received:";
	size_t ours = arcseal_our_field(text, len, config_authserv_id(cfg));
	if (ours > 0) {
		text += ours;
		len -= ours;
		if (len < sizeof(rcvd) || strncasecmp(text, rcvd, sizeof(rcvd) - 1) != 0)
			return false;
	}
	const char *hostname = cfg->hostname;
	if (len < sizeof(rcvd) || strncasecmp(text, rcvd, sizeof(rcvd) - 1) != 0)
		return true;
	const char *nl = memchr(text, '\n', len);
	if (nl == NULL)
		return false;
	size_t rest = len - (size_t)(nl + 1 - text);
	char want[400];
	int n = snprintf(want, sizeof(want), "\tby %s (Tern) with ", hostname);
	if (n < 0 || (size_t)n >= sizeof(want) || rest < (size_t)n + 8 ||
	    memcmp(nl + 1, want, (size_t)n) != 0)
		return false;
	const char *w = nl + 1 + n, *end = text + len;
	const char *sp = w;
	while (sp < end && *sp != ' ' && *sp != '\r' && *sp != '\n')
		sp++;
	return sp > w && sp[-1] == 'A' && sp - w <= 12;
}

/* arc_prefix - for mail that is not ours to sign: the ARC set when it is a copy an alias
 * forwards (arcseal.c). Forwarded copies get no DKIM-Signature of ours: the original
 * signatures travel untouched and the seal vouches for what we saw. */
static void arc_prefix(struct delivery *d, const char *text, size_t len)
{
	const char *why = NULL;
	char *err = NULL;
	int n = arcseal_make(d->r->cfg, d->r->dkim, text, len, d->sender, time(NULL),
			     &d->dkim_sig, &why, &err);
	if (n < 0) {
		log_warnx("%s: arc: %s: sent unsealed", d->qid, err);
		buf_reset(&d->dkim_sig);
	} else if (n > 0) {
		log_info("%s: arc: sealed for %s", d->qid, strrchr(d->sender, '@') + 1);
	} else if (strcmp(why, "not a forwarded copy") == 0) {
		log_debug("%s: dkim: not signed (not from an authenticated client)", d->qid);
	} else if (strcmp(why, "no DKIM key for the SRS domain") != 0 ||
		   !d->r->arc_nokey_logged) {
		if (strcmp(why, "no DKIM key for the SRS domain") == 0)
			d->r->arc_nokey_logged = true;
		log_info("%s: arc: not sealed: %s (%s)", d->qid, why,
			 strrchr(d->sender, '@') + 1);
	}
	free(err);
}

/* dkim_prefix - the DKIM-Signature fields for the text about to be sent (size bytes at
 * offset of fd), made once per text: mapped, never copied */
static void dkim_prefix(struct delivery *d, int fd, off_t offset, uint64_t size)
{
	const struct dkim_keyring *ring = d->r->dkim;
	if (ring == NULL || ring->n == 0 || d->dkim_fd == fd)
		return;
	d->dkim_fd = fd;
	buf_reset(&d->dkim_sig);
	struct stat st;
	if (size == 0 || fstat(fd, &st) < 0 || (uint64_t)st.st_size < (uint64_t)offset + size)
		return;
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		log_warn("%s: dkim: mmap", d->qid);
		return;
	}
	const char *text = (const char *)map + offset;
	char *err = NULL;
	if (!dkim_eligible(text, (size_t)size, d->r->cfg)) {
		arc_prefix(d, text, (size_t)size);
	} else {
		int n = dkim_sign_message(ring, text, (size_t)size, d->sender, time(NULL),
					  &d->dkim_sig, &err);
		if (n < 0) {
			log_warnx("%s: dkim: %s: sent unsigned", d->qid, err);
			buf_reset(&d->dkim_sig);
		} else if (n > 0) {
			log_info("%s: dkim: signed (%d signature%s)", d->qid, n, n > 1 ? "s" : "");
		}
		free(err);
	}
	munmap(map, (size_t)st.st_size);
}

/* delivery_send - the transaction on a connected (new or reused) client */
static void delivery_send(struct delivery *d)
{
	int fd = d->fd;
	off_t offset = (off_t)d->body_offset;
	uint64_t size = d->size;
	bool eight = d->body_8bit;
	if (eight && !smtp_client_extensions(d->client)->eightbitmime) {
		if (d->fd7 < 0)
			d->fd7 = downgrade(d);
		struct stat st;
		if (d->fd7 >= 0 && fstat(d->fd7, &st) == 0) {
			fd = d->fd7;
			offset = 0;
			size = (uint64_t)st.st_size;
			eight = false;
		}
	}
	struct smtp_client_rcpt *rc = xcalloc(d->n, sizeof(*rc));
	for (size_t i = 0; i < d->n; i++) {
		rc[i].address = d->addrs[i];
		rc[i].notify = d->notify[i];
		rc[i].orcpt = d->orcpt[i];
	}
	struct smtp_client_txn txn = {
		.sender = d->sender,
		.dsn_ret = d->ret,
		.dsn_envid = d->envid,
		.rcpts = rc,
		.n_rcpts = d->n,
		.body_8bit = eight,
		.fd = fd,
		.offset = offset,
		.size = size,
	};
	dkim_prefix(d, fd, offset, size);
	txn.prefix = d->dkim_sig.data;
	txn.prefix_len = d->dkim_sig.len;
	int sent = smtp_client_send(d->client, &txn, on_sent, d);
	free(rc);
	if (sent < 0 && d->reused) {
		/* the parked connection went stale: look the destination up afresh */
		smtp_client_quit(&d->client);
		d->reused = false;
		delivery_lookup(d);
	} else if (sent < 0) {
		delivery_finish(d, NULL, "client not usable", "4.3.0", false);
	}
}

/* delivery_try_next - connect to the next address of the next host in MX order */
static void delivery_try_next(struct delivery *d)
{
	struct runner *r = d->r;
	while (d->hi < d->n_hosts && d->ai >= d->hosts[d->hi].n_addrs) {
		d->hi++;
		d->ai = 0;
	}
	if (d->hi >= d->n_hosts) {
		delivery_finish(d, NULL, d->last_error ? d->last_error : "no host could be reached",
				d->last_status[0] ? d->last_status : "4.4.1", false);
		return;
	}
	const struct dns_host *h = &d->hosts[d->hi];
	const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[d->ai];
	char ip[64];
	unsigned port = ntohs(sa->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
						       : ((const struct sockaddr_in *)sa)->sin_port);
	snprintf(d->relay, sizeof(d->relay), "%s[%s]:%u", h->name, net_ntop(sa, ip, sizeof(ip)),
		 port);
	struct sockaddr_storage src;
	socklen_t srclen = 0;
	if (r->cfg->queue_source_ip != NULL) {
		char *probe = xasprintf(strchr(r->cfg->queue_source_ip, ':') ? "[%s]:1" : "%s:1",
					r->cfg->queue_source_ip);
		if (net_parse_addrport(probe, &src, &srclen) == 0) {
			if (src.ss_family == AF_INET)
				((struct sockaddr_in *)&src)->sin_port = 0;
			else
				((struct sockaddr_in6 *)&src)->sin6_port = 0;
		}
		free(probe);
	}
	bool require_tls = false;
	for (size_t i = 0; i < r->cfg->n_queue_require_tls; i++)
		if (strcmp(r->cfg->queue_require_tls[i], d->domain) == 0)
			require_tls = true;
	struct smtp_client_opts opts = {
		.require_tls = require_tls,
		.helo_name = r->cfg->hostname,
		.source = srclen ? (const struct sockaddr *)&src : NULL,
		.sourcelen = srclen,
		.tls_ctx = r->client_tls,
		.tls_server_name = h->name,
		.log_id = d->qid,
	};
	d->client = smtp_client_connect(r->base, sa, h->addrlens[d->ai], &opts, on_connected, d);
}

static void on_dns(void *ctx, const struct dns_mx_result *res)
{
	struct delivery *d = ctx;
	if (d->r->stopping) {
		delivery_free(d);
		return;
	}
	switch (res->status) {
	case DNS_OK:
		break;
	case DNS_NXDOMAIN:
		delivery_finish(d, NULL, res->error ? res->error : "domain not found", "5.1.2", true);
		return;
	case DNS_NULL_MX:
		delivery_finish(d, NULL, res->error ? res->error : "domain accepts no mail (null MX)",
				"5.1.10", true);
		return;
	case DNS_NO_ADDRESS:
		delivery_finish(d, NULL, res->error ? res->error : "no address for the mail exchanger",
				"5.4.4", true);
		return;
	default:
		delivery_finish(d, NULL, res->error ? res->error : "DNS lookup failed", "4.4.3",
				false);
		return;
	}
	/* keep our own copy: res is valid during the callback only */
	d->hosts = xcalloc(res->n_hosts ? res->n_hosts : 1, sizeof(*d->hosts));
	d->n_hosts = res->n_hosts;
	for (size_t i = 0; i < res->n_hosts; i++) {
		const struct dns_host *h = &res->hosts[i];
		d->hosts[i].name = xstrdup(h->name);
		d->hosts[i].preference = h->preference;
		d->hosts[i].n_addrs = h->n_addrs;
		d->hosts[i].addrs = xcalloc(h->n_addrs ? h->n_addrs : 1, sizeof(*h->addrs));
		d->hosts[i].addrlens = xcalloc(h->n_addrs ? h->n_addrs : 1, sizeof(*h->addrlens));
		memcpy(d->hosts[i].addrs, h->addrs, h->n_addrs * sizeof(*h->addrs));
		memcpy(d->hosts[i].addrlens, h->addrlens, h->n_addrs * sizeof(*h->addrlens));
	}
	delivery_try_next(d);
}

/* has_8bit - does the message text contain bytes >= 0x80 (needs 8BITMIME)? */
static bool has_8bit(int fd, uint64_t off, uint64_t size)
{
	char b[65536];
	while (size > 0) {
		ssize_t n = pread(fd, b, size < sizeof(b) ? size : sizeof(b), (off_t)off);
		if (n <= 0)
			return false;
		for (ssize_t i = 0; i < n; i++)
			if ((unsigned char)b[i] >= 0x80)
				return true;
		off += (uint64_t)n;
		size -= (uint64_t)n;
	}
	return false;
}

/* delivery_start - begin one attempt: route or MX lookup first */
/* delivery_local - recipients at our own domains, queued because their mailbox could not
 * be written at once (another process held its index, see spool_deliver): link the queue
 * file into each mailbox, with the runner's patient store settings. Failures are retried
 * like any deferral. */
static void delivery_local(struct delivery *d)
{
	struct runner *r = d->r;
	char *path = queue_file_path(r->q, d->qid);
	struct smtp_client_reply *rep = xcalloc(d->n, sizeof(*rep));
	char **errs = xcalloc(d->n, sizeof(char *));
	snprintf(d->relay, sizeof(d->relay), "local");
	for (size_t i = 0; i < d->n; i++) {
		if (store_deliver_file_to(r->cfg->data_dir, d->addrs[i], NULL, path,
					  d->body_offset + d->size, r->cfg->hostname, d->qid,
					  &errs[i]) == 0) {
			rep[i].status = SMTP_CLIENT_OK;
			rep[i].text = "delivered to maildir";
			continue;
		}
		rep[i].status = SMTP_CLIENT_TEMPFAIL;
		snprintf(rep[i].enhanced, sizeof(rep[i].enhanced), "4.3.0");
		rep[i].text = errs[i] != NULL ? errs[i] : "mailbox unavailable";
	}
	size_t n = d->n;
	struct smtp_client_result res = { .rcpts = rep, .n_rcpts = n };
	free(path);
	delivery_finish(d, &res, NULL, NULL, false);	/* frees d */
	for (size_t i = 0; i < n; i++)
		free(errs[i]);
	free(errs);
	free(rep);
}

static void delivery_start(struct delivery *d)
{
	struct runner *r = d->r;
	if (config_is_local_domain(r->cfg, d->domain)) {
		delivery_local(d);
		return;
	}
	char *path = queue_file_path(r->q, d->qid);
	d->fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (d->fd < 0) {
		log_warnx("%s: queue file missing: %s", d->qid, strerror(errno));
		delivery_finish(d, NULL, "queue file missing", "4.3.0", false);
		return;
	}
	d->body_8bit = has_8bit(d->fd, d->body_offset, d->size);
	d->client = idle_take(r, d->domain, d->relay, sizeof(d->relay));
	if (d->client != NULL) {
		d->reused = true;
		delivery_send(d);	/* the client RSETs before the next MAIL */
		return;
	}
	delivery_lookup(d);
}

/* delivery_lookup - the next hop: a [routes] entry, else the MX records */
static void delivery_lookup(struct delivery *d)
{
	struct runner *r = d->r;
	for (size_t i = 0; i < r->cfg->n_routes; i++) {
		const struct route *rt = &r->cfg->routes[i];
		if (strcmp(rt->domain, d->domain) == 0) {
			dns_lookup_host(r->dns, rt->host, rt->port, on_dns, d);
			return;
		}
	}
	dns_lookup_mx(r->dns, d->domain, (uint16_t)r->cfg->queue_mx_port, on_dns, d);
}

/* A scan's working set: due recipients grouped into deliveries. */
struct scan {
	struct runner *r;
	struct delivery **pending;
	size_t n_pending;
};

static bool in_flight(const struct runner *r, int64_t id)
{
	const struct delivery *d;
	LIST_FOREACH(d, &r->deliveries, link)
		for (size_t i = 0; i < d->n; i++)
			if (d->ids[i] == id)
				return true;
	return false;
}

static unsigned active_for_domain(const struct runner *r, const char *domain)
{
	unsigned n = 0;
	const struct delivery *d;
	LIST_FOREACH(d, &r->deliveries, link)
		if (strcmp(d->domain, domain) == 0)
			n++;
	return n;
}

/* over_limits - would one more delivery to domain, with those the scan made so far, exceed
 * the concurrency limits? Then runner_scan would free it unstarted: a scan of a long queue
 * made (and freed) a delivery for every due message, after each finished attempt. */
static bool over_limits(const struct scan *sc, const char *domain)
{
	const struct runner *r = sc->r;
	if (r->active + sc->n_pending >= r->cfg->queue_concurrency)
		return true;
	unsigned n = active_for_domain(r, domain);
	for (size_t i = 0; i < sc->n_pending; i++)
		n += strcmp(sc->pending[i]->domain, domain) == 0;
	return n >= r->cfg->queue_concurrency_per_domain;
}

static void scan_cb(void *ctx, const struct queue_due *due)
{
	struct scan *sc = ctx;
	struct runner *r = sc->r;
	if (in_flight(r, due->rcpt_id))
		return;
	char *domain = domain_of(due->address);
	struct delivery *d = NULL;
	for (size_t i = 0; i < sc->n_pending; i++) {
		struct delivery *p = sc->pending[i];
		if (strcmp(p->qid, due->qid) == 0 && strcmp(p->domain, domain) == 0) {
			d = p;
			break;
		}
	}
	if (d == NULL && strcmp(due->state, "bounce") != 0 && over_limits(sc, domain)) {
		free(domain);	/* runner_scan would let it go at once: a later scan takes it */
		return;
	}
	if (d == NULL) {
		d = xcalloc(1, sizeof(*d));
		d->r = r;
		d->fd = -1;
		d->fd7 = -1;
		d->dkim_fd = -1;
		buf_init(&d->dkim_sig, 0);
		d->qid = xstrdup(due->qid);
		d->sender = xstrdup(due->sender);
		d->domain = domain;
		domain = NULL;
		d->arrived = due->arrived;
		d->body_offset = due->body_offset;
		d->size = due->size;
		d->ret = due->ret ? xstrdup(due->ret) : NULL;
		d->envid = due->envid ? xstrdup(due->envid) : NULL;
		d->started = time(NULL);
		sc->pending = xreallocarray(sc->pending, sc->n_pending + 1, sizeof(*sc->pending));
		sc->pending[sc->n_pending++] = d;
	}
	free(domain);
	if (strcmp(due->state, "bounce") == 0)
		d->admin_bounce = true;		/* the operator asked for a bounce */
	d->ids = xreallocarray(d->ids, d->n + 1, sizeof(*d->ids));
	d->addrs = xreallocarray(d->addrs, d->n + 1, sizeof(*d->addrs));
	d->attempts = xreallocarray(d->attempts, d->n + 1, sizeof(*d->attempts));
	d->notify = xreallocarray(d->notify, d->n + 1, sizeof(*d->notify));
	d->delay_warned = xreallocarray(d->delay_warned, d->n + 1, sizeof(*d->delay_warned));
	d->delay_warned[d->n] = due->delay_warned;
	d->orcpt = xreallocarray(d->orcpt, d->n + 1, sizeof(*d->orcpt));
	d->notify[d->n] = due->notify ? xstrdup(due->notify) : NULL;
	d->orcpt[d->n] = due->orcpt ? xstrdup(due->orcpt) : NULL;
	d->last_errors = xreallocarray(d->last_errors, d->n + 1, sizeof(*d->last_errors));
	d->last_errors[d->n] = due->last_error ? xstrdup(due->last_error) : NULL;
	d->ids[d->n] = due->rcpt_id;
	d->addrs[d->n] = xstrdup(due->address);
	d->attempts[d->n] = due->attempts;
	d->n++;
}

/* runner_gauges - what the queue holds, for /metrics: after every scan, but read from
 * queue.db at most once a second (queue_counts reads every row); a call within the second
 * arms a timer instead, so that the last change shows a second later at most */
static void runner_gauges(struct runner *r)
{
	metrics_gauge_set(METRICS_QUEUE_ACTIVE, r->active);
	uint64_t now = metrics_now_usec();
	if (r->gauges_at != 0 && now - r->gauges_at < 1000000) {
		if (!evtimer_pending(r->gauge_timer, NULL)) {
			struct timeval tv = { 1, 0 };
			evtimer_add(r->gauge_timer, &tv);
		}
		return;
	}
	r->gauges_at = now;
	struct queue_counts c;
	char *err = NULL;
	if (queue_counts(r->q, &c, &err) < 0) {
		log_warnx("%s", err);
		free(err);
		return;
	}
	metrics_gauge_set(METRICS_QUEUE_MESSAGES, c.messages);
	metrics_gauge_set(METRICS_QUEUE_QUEUED, c.queued);
	metrics_gauge_set(METRICS_QUEUE_DEFERRED, c.deferred);
	metrics_gauge_set(METRICS_QUEUE_BOUNCE, c.bounce);
}

static void gauge_cb(evutil_socket_t fd, short what, void *arg)
{
	runner_gauges(arg);
}

/* runner_scan - start deliveries for what is due, within the concurrency limits */
/* trace_housekeeping - at most once an hour, remove the trace journal's files older than
 * trace_days (the runner is the one process that does it) */
static void trace_housekeeping(struct runner *r)
{
	static time_t last;
	time_t now = time(NULL);
	if (!trace_on || now - last < 3600)
		return;
	last = now;
	char *dir = trace_dir(r->cfg->data_dir);
	int n = trace_prune(dir, r->cfg->trace_days, now);
	if (n > 0)
		log_info("trace: removed %d journal file(s) older than %u days", n, r->cfg->trace_days);
	free(dir);
}

/* Messages without recipients left: their files are removed on the runner's thread (an unlink
 * of a queue file, the last name of its inode, frees its blocks: about a millisecond that
 * the loop, which delivers, need not wait), then their rows on the loop, in one transaction.
 * Files first, as queue_msg_finish: a crash between leaves rows without recipients, which
 * queue_finish_orphans completes at the next start. */
struct finish_job {
	struct bgjob job;	/* first: the pool hands back &job */
	struct runner *r;
	char **qids;
	char **paths;		/* NULL where the message is not finished */
	bool *gone;
	int *errs;		/* the unlinks' errno */
	size_t n;
};

static void finish_work(struct bgjob *j)
{
	struct finish_job *f = (struct finish_job *)j;
	for (size_t i = 0; i < f->n; i++)
		if (f->paths[i] != NULL && unlink(f->paths[i]) < 0 && errno != ENOENT)
			f->errs[i] = errno;
}

static void finish_done(struct bgjob *j)
{
	struct finish_job *f = (struct finish_job *)j;
	char *err = NULL;
	for (size_t i = 0; i < f->n; i++)
		if (f->errs[i] != 0)
			log_warnx("%s: unlink %s: %s", f->qids[i], f->paths[i], strerror(f->errs[i]));
	if (queue_msgs_remove(f->r->q, (const char *const *)f->qids, f->gone, f->n, &err) < 0) {
		log_warnx("%s", err);
		free(err);
	}
	for (size_t i = 0; i < f->n; i++) {
		free(f->qids[i]);
		free(f->paths[i]);
	}
	free(f->qids);
	free(f->paths);
	free(f->gone);
	free(f->errs);
	free(f);
}

/* runner_finish_msgs - finish r->fin_qids (taken) where no recipient is left */
static void runner_finish_msgs(struct runner *r)
{
	struct finish_job *f = xcalloc(1, sizeof(*f));
	char *err = NULL;
	f->r = r;
	f->qids = r->fin_qids;
	f->n = r->n_fin;
	r->fin_qids = NULL;
	r->n_fin = 0;
	f->gone = xcalloc(f->n + 1, sizeof(bool));
	f->errs = xcalloc(f->n + 1, sizeof(int));
	f->paths = xcalloc(f->n + 1, sizeof(char *));
	int found = queue_msgs_done(r->q, (const char *const *)f->qids, f->n, f->gone, &err);
	if (found < 0) {
		log_warnx("%s", err);
		free(err);
	}
	for (size_t i = 0; found > 0 && i < f->n; i++)
		if (f->gone[i])
			f->paths[i] = queue_file_path(r->q, f->qids[i]);
	f->job.work = finish_work;
	f->job.done = finish_done;
	if (found <= 0) {
		for (size_t i = 0; i < f->n; i++)
			f->gone[i] = false;
		finish_done(&f->job);	/* frees: no row to remove */
	} else if (r->bg != NULL) {
		bgpool_submit(r->bg, &f->job);
	} else {
		finish_work(&f->job);
		finish_done(&f->job);
	}
}

/* runner_flush - write the outcomes of the attempts finished since the last call: every
 * recipient's update in one transaction, then the messages left without recipients
 * (runner_finish_msgs). On an error they are dropped (logged): the recipients are still
 * queued and go out again (at least once, as SMTP allows), as after a crash. */
static void runner_flush(struct runner *r)
{
	char *err = NULL;
	if (r->n_upd == 0 && r->n_fin == 0)
		return;
	if (queue_begin(r->q, &err) < 0)
		goto dberr;
	for (size_t i = 0; i < r->n_upd; i++) {
		const struct rcpt_update *u = &r->upd[i];
		int rc = 0;
		if (u->remove)
			rc = queue_rcpt_remove(r->q, u->id, &err);
		else if (u->defer_error != NULL)
			rc = queue_rcpt_defer(r->q, u->id, u->next_try, u->defer_error, &err);
		if (rc == 0 && u->warned)
			rc = queue_rcpt_delay_warned(r->q, u->id, &err);
		if (rc < 0) {
			queue_rollback(r->q);
			goto dberr;
		}
	}
	if (queue_commit(r->q, &err) < 0) {
		queue_rollback(r->q);
		goto dberr;
	}
	runner_finish_msgs(r);
	goto out;
dberr:
	log_warnx("%s", err ? err : "queue database error");
	free(err);
out:
	for (size_t i = 0; i < r->n_upd; i++)
		free(r->upd[i].defer_error);
	for (size_t i = 0; i < r->n_fin; i++)
		free(r->fin_qids[i]);
	r->n_upd = r->n_fin = 0;
}

static void runner_scan(struct runner *r)
{
	struct scan sc = { .r = r };
	char *err = NULL;
	runner_flush(r);
	if (r->stopping)
		return;
	trace_housekeeping(r);
	if (queue_due_list(r->q, (int64_t)time(NULL), RUNNER_SCAN_LIMIT, scan_cb, &sc, &err) < 0) {
		log_warnx("%s", err);
		free(err);
	}
	for (size_t i = 0; i < sc.n_pending; i++) {
		struct delivery *d = sc.pending[i];
		LIST_INSERT_HEAD(&r->deliveries, d, link);
		r->active++;
		if (d->admin_bounce) {
			delivery_finish(d, NULL, "bounced by the administrator", "5.0.0", true);
			continue;
		}
		if (r->active > r->cfg->queue_concurrency ||
		    active_for_domain(r, d->domain) > r->cfg->queue_concurrency_per_domain) {
			delivery_free(d);	/* over the limit: a later scan takes it */
			continue;
		}
		delivery_start(d);
	}
	free(sc.pending);
	runner_gauges(r);
	/* sleep until the next recipient is due, or a wake-up */
	int64_t next = queue_next_due(r->q);
	int64_t now = (int64_t)time(NULL);
	struct timeval tv = { RUNNER_IDLE_SECONDS, 0 };
	if (next >= 0 && next - now < RUNNER_IDLE_SECONDS)
		tv.tv_sec = next > now ? (time_t)(next - now) : 1;
	evtimer_add(r->timer, &tv);
}

static void rescan_cb(evutil_socket_t fd, short what, void *arg)
{
	runner_scan(arg);
}

/* runner_schedule_scan - scan soon, outside the current callback */
static void runner_schedule_scan(struct runner *r)
{
	if (!r->stopping)
		event_active(r->rescan, 0, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	char b[64];
	while (recv(fd, b, sizeof(b), 0) > 0)
		;
	runner_schedule_scan(arg);
}

static void runner_stop(evutil_socket_t sig, short what, void *arg)
{
	struct runner *r = arg;
	if (r->stopping)
		return;
	r->stopping = true;
	event_base_loopbreak(r->base);
}

int runner_main(const struct tern_config *cfg, const struct dkim_keyring *dkim)
{
	struct runner rr, *r = &rr;
	char *err = NULL;
	memset(r, 0, sizeof(*r));
	log_init("queue");
	signal(SIGPIPE, SIG_IGN);
	if (metrics_join() < 0)
		log_warnx("no free metrics slot: the queue runner is not counted in /metrics");
	r->cfg = cfg;
	r->dkim = dkim;
	LIST_INIT(&r->deliveries);
	LIST_INIT(&r->idle);
	r->base = event_base_new();
	if (r->base == NULL)
		log_fatalx("event_base_new failed");
	r->bg = bgpool_new(r->base, 1);
	if (r->bg == NULL)
		log_warn("runner thread: queue files are removed on the loop");
	r->spool_dir = config_path_in_data(cfg, "spool");
	char *db = config_path_in_data(cfg, "tern.db");
	if (queue_open(r->spool_dir, &r->q, &err) < 0 || accounts_open(db, &r->accounts, &err) < 0 ||
	    dns_init(r->base, cfg->dns_servers, &r->dns, &err) < 0)
		log_fatalx("%s", err);
	free(db);
	r->client_tls = SSL_CTX_new(TLS_client_method());
	if (r->client_tls != NULL) {
		SSL_CTX_set_min_proto_version(r->client_tls, TLS1_2_VERSION);
		SSL_CTX_set_verify(r->client_tls, SSL_VERIFY_NONE, NULL);
	}
	r->wake_fd = queue_wake_listen(r->spool_dir);
	if (r->wake_fd < 0)
		log_warn("queue wake socket");
	else {
		r->wake_ev = event_new(r->base, r->wake_fd, EV_READ | EV_PERSIST, wake_cb, r);
		event_add(r->wake_ev, NULL);
	}
	r->timer = evtimer_new(r->base, rescan_cb, r);
	r->gauge_timer = evtimer_new(r->base, gauge_cb, r);
	r->rescan = event_new(r->base, -1, 0, rescan_cb, r);
	r->sigterm = evsignal_new(r->base, SIGTERM, runner_stop, r);
	r->sigint = evsignal_new(r->base, SIGINT, runner_stop, r);
	event_add(r->sigterm, NULL);
	event_add(r->sigint, NULL);
	/* a crash may have left a message whose last recipient was already done */
	int orphans = queue_finish_orphans(r->q, &err);
	if (orphans < 0) {
		log_warnx("%s", err);
		free(err);
		err = NULL;
	} else if (orphans > 0) {
		log_info("finished %d message(s) left without recipients by a crash", orphans);
	}
	runner_scan(r);

	event_base_dispatch(r->base);
	runner_flush(r);	/* the outcomes of the attempts that finished */
	/* its last removals and their rows (r->q); and its eventfd's event would keep the wait
	 * for quitting clients below from ending early */
	bgpool_free(&r->bg);

	/* Stop: attempts in flight are abandoned; their recipients are still queued and go
	 * out after the restart (at least once, as SMTP allows). */
	r->stopping = true;
	event_free(r->timer);
	event_free(r->gauge_timer);
	event_free(r->rescan);
	event_free(r->sigterm);
	event_free(r->sigint);
	/* after freeing the signal events (libevent restores the old handler then): a second
	 * SIGTERM from the master must not cut the cleanup */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	if (r->wake_ev != NULL)
		event_free(r->wake_ev);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	dns_free(&r->dns);	/* pending lookups call on_dns, which frees their delivery */
	while (!LIST_EMPTY(&r->deliveries))
		delivery_free(LIST_FIRST(&r->deliveries));
	while (!LIST_EMPTY(&r->idle))
		idle_free(LIST_FIRST(&r->idle));
	/* let quitting clients free themselves: only as long as some are left, 6 s at most */
	time_t deadline = time(NULL) + 6;
	while (event_base_get_num_events(r->base, EVENT_BASE_COUNT_ADDED) > 0 &&
	       time(NULL) < deadline) {
		struct timeval tick = { 0, 100000 };
		event_base_loopexit(r->base, &tick);
		event_base_dispatch(r->base);
	}
	SSL_CTX_free(r->client_tls);
	store_deliver_cache_close();	/* the account handles local bounces kept open */
	runner_flush(r);	/* attempts that finished while the clients quit (no thread now) */
	free(r->upd);
	free(r->fin_qids);
	queue_close(&r->q);
	accounts_close(&r->accounts);
	free(r->spool_dir);
	event_base_free(r->base);
	return 0;
}
