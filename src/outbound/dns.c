/* dns - asynchronous mail routing lookups on c-ares, driven by libevent.
 *
 * c-ares tells us which sockets to watch through its socket-state callback; each one gets a
 * persistent libevent event, and one timer follows ares_timeout(). A lookup counts its
 * outstanding c-ares queries; when the count drops to zero its result is built and its
 * callback is scheduled through an event made active, never called directly: c-ares may call
 * our query callbacks from inside ares_query() or ares_process_fd(), and the user's callback
 * must be free to start lookups or free the resolver. */
#include "outbound/dns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/xmalloc.h"

#define DNS_TIMEOUT_MS 3000
#define DNS_TRIES 2
#define DNS_MAX_HOSTS 10	/* MX hosts kept after sorting */
#define DNS_MAX_ADDRS 8		/* addresses kept per host */
#define DNS_MAX_V6_SHARE 4	/* IPv6 slots kept free when a host has many IPv4 addresses */
#define DNS_MAX_MX_RECORDS 64	/* MX records looked at before sorting (a sane bound) */

/* What one A or AAAA query said about a host. */
enum addr_answer {
	ANSWER_PENDING,
	ANSWER_ADDRS,
	ANSWER_NODATA,
	ANSWER_NXDOMAIN,
	ANSWER_TEMPFAIL,
};

struct lookup_host {
	char *name;
	unsigned preference;
	struct in_addr v4[DNS_MAX_ADDRS];
	size_t n_v4;
	struct in6_addr v6[DNS_MAX_ADDRS];
	size_t n_v6;
	enum addr_answer a, aaaa;
	int a_err, aaaa_err;	/* the c-ares status of a failed query */
};

struct dns_lookup {
	struct dns *d;
	struct dns_lookup *prev, *next;	/* in d->lookups until the callback runs */
	char *name;			/* the domain or host asked for */
	uint16_t port;
	bool is_mx;
	bool implicit_mx;
	dns_mx_cb *cb;
	dns_query_cb *qcb;		/* a dns_query instead of a routing lookup */
	void *ctx;
	struct dns_answer answer;	/* dns_query: what it found (abuf ours) */
	unsigned pending;		/* c-ares queries whose callback has not run yet */
	bool finished;			/* res is built; delivery is scheduled */
	bool failed;			/* fail_status/fail_error decided before any host */
	enum dns_status fail_status;
	char *fail_error;
	struct lookup_host *hosts;
	size_t n_hosts;
	struct event *done_ev;		/* made active to run the callback from the loop */
	struct dns_mx_result res;
};

/* The argument of one A/AAAA query. */
struct addr_query {
	struct dns_lookup *l;
	size_t host;
	bool v6;
};

struct dns_sock {
	struct dns_sock *next;
	int fd;
	struct event *ev;
};

struct dns {
	struct event_base *base;
	ares_channel channel;
	struct event *timer;
	struct dns_sock *socks;
	struct dns_lookup *lookups;
	bool destroying;	/* inside dns_free: start nothing, deliver nothing by event */
};

struct event_base *dns_event_base(struct dns *d)
{
	return d->base;
}

static void lookup_finish(struct dns_lookup *l);

/* clean_name - name made printable and cut short for an error text (into out). */
static const char *clean_name(char *out, size_t outsz, const char *name)
{
	return log_sanitize(out, outsz, name, strlen(name));
}

/* dns_reschedule - set the timer to c-ares' next timeout, or stop it when nothing waits. */
static void dns_reschedule(struct dns *d)
{
	struct timeval tv, *t;
	if (d->destroying)
		return;
	t = ares_timeout(d->channel, NULL, &tv);
	if (t != NULL)
		evtimer_add(d->timer, t);
	else
		evtimer_del(d->timer);
}

/* dns_sock_event - a watched c-ares socket is ready: let c-ares read or write it. */
static void dns_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	ares_process_fd(d->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	dns_reschedule(d);
}

/* dns_timer_event - c-ares' timeout passed: let it expire or resend queries. */
static void dns_timer_event(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	(void)fd;
	(void)what;
	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_reschedule(d);
}

/* dns_sock_state - c-ares opened, closed or changed interest in a socket: mirror it with a
 * libevent event. (0, 0) comes before c-ares closes the fd, so the event goes first. */
static void dns_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock **pp, *s;
	for (pp = &d->socks; (s = *pp) != NULL; pp = &s->next) {
		if (s->fd == fd)
			break;
	}
	if (s != NULL) {
		/* freeing the event that is running right now (we may be inside its callback)
		 * is allowed by libevent: nothing touches it after the callback returns */
		event_free(s->ev);
		s->ev = NULL;
	}
	if (!readable && !writable) {
		if (s != NULL) {
			*pp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		s->next = d->socks;
		d->socks = s;
	}
	short what = EV_PERSIST | (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
	s->ev = event_new(d->base, fd, what, dns_sock_event, d);
	if (s->ev == NULL || event_add(s->ev, NULL) < 0)
		log_fatalx("dns: cannot watch the resolver socket %d", fd);
}

int dns_init(struct event_base *base, const char *servers, struct dns **dns_r, char **error_r)
{
	int r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS) {
		*error_r = xasprintf("c-ares initialisation failed: %s", ares_strerror(r));
		return -1;
	}
	struct dns *d = xcalloc(1, sizeof(*d));
	d->base = base;
	struct ares_options opts;
	memset(&opts, 0, sizeof(opts));
	opts.timeout = DNS_TIMEOUT_MS;
	opts.tries = DNS_TRIES;
	opts.sock_state_cb = dns_sock_state;
	opts.sock_state_cb_data = d;
	r = ares_init_options(&d->channel, &opts,
			      ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB);
	if (r != ARES_SUCCESS) {
		*error_r = xasprintf("resolver initialisation failed: %s", ares_strerror(r));
		free(d);
		ares_library_cleanup();
		return -1;
	}
	if (servers != NULL) {
		r = ARES_EBADSTR;
		if (*servers != '\0')
			r = ares_set_servers_ports_csv(d->channel, servers);
		if (r != ARES_SUCCESS) {
			char clean[128];
			clean_name(clean, sizeof(clean), servers);
			*error_r = xasprintf("bad DNS servers \"%s\": %s", clean, ares_strerror(r));
			ares_destroy(d->channel);
			free(d);
			ares_library_cleanup();
			return -1;
		}
	}
	d->timer = evtimer_new(base, dns_timer_event, d);
	if (d->timer == NULL)
		log_fatalx("dns: evtimer_new failed");
	*dns_r = d;
	return 0;
}

/* lookup_free - release a lookup whose callback has run (or never will). */
static void lookup_free(struct dns_lookup *l)
{
	for (size_t i = 0; i < l->n_hosts; i++)
		free(l->hosts[i].name);
	free(l->hosts);
	for (size_t i = 0; i < l->res.n_hosts; i++) {
		free(l->res.hosts[i].addrs);
		free(l->res.hosts[i].addrlens);
	}
	free(l->res.hosts);	/* the names were the lookup hosts' */
	free(l->res.error);
	free((char *)l->answer.error);
	free((unsigned char *)l->answer.abuf);
	free(l->fail_error);
	free(l->name);
	if (l->done_ev != NULL)
		event_free(l->done_ev);
	free(l);
}

/* lookup_unlink - take a lookup off the resolver's list of undelivered lookups. */
static void lookup_unlink(struct dns_lookup *l)
{
	if (l->prev != NULL)
		l->prev->next = l->next;
	else
		l->d->lookups = l->next;
	if (l->next != NULL)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
}

/* lookup_callback - hand a lookup's result to its callback. */
static void lookup_callback(struct dns_lookup *l)
{
	if (l->qcb != NULL)
		l->qcb(l->ctx, &l->answer);
	else
		l->cb(l->ctx, &l->res);
}

/* lookup_deliver - run the callback of a finished lookup from the event loop. */
static void lookup_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct dns_lookup *l = arg;
	(void)fd;
	(void)what;
	/* off the list first: the callback may call dns_free(), which must not see it */
	lookup_unlink(l);
	lookup_callback(l);
	lookup_free(l);
}

/* lookup_new - a lookup on d's list, its delivery event ready. */
static struct dns_lookup *lookup_new(struct dns *d, const char *name, uint16_t port, bool is_mx,
				     dns_mx_cb *cb, void *ctx)
{
	if (d->destroying)
		log_panic("dns: lookup of %s started while the resolver is being freed", name);
	struct dns_lookup *l = xcalloc(1, sizeof(*l));
	l->d = d;
	l->name = xstrdup(name);
	l->port = port;
	l->is_mx = is_mx;
	l->cb = cb;
	l->ctx = ctx;
	l->done_ev = event_new(d->base, -1, 0, lookup_deliver, l);
	if (l->done_ev == NULL)
		log_fatalx("dns: event_new failed");
	l->next = d->lookups;
	if (d->lookups != NULL)
		d->lookups->prev = l;
	d->lookups = l;
	return l;
}

/* lookup_fail - decide the whole lookup's outcome before any host is known. */
static void lookup_fail(struct dns_lookup *l, enum dns_status status, char *error)
{
	l->failed = true;
	l->fail_status = status;
	free(l->fail_error);
	l->fail_error = error;
}

/* lookup_add_host - append a host (name copied) to be resolved. */
static struct lookup_host *lookup_add_host(struct dns_lookup *l, const char *name,
					   unsigned preference)
{
	l->hosts = xreallocarray(l->hosts, l->n_hosts + 1, sizeof(*l->hosts));
	struct lookup_host *h = &l->hosts[l->n_hosts++];
	memset(h, 0, sizeof(*h));
	h->name = xstrdup(name);
	h->preference = preference;
	return h;
}

/* answer_of - what an address query's c-ares status says about the name. */
static enum addr_answer answer_of(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return ANSWER_ADDRS;
	case ARES_ENODATA:
		return ANSWER_NODATA;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME:	/* cannot be a DNS name: it will never resolve */
		return ANSWER_NXDOMAIN;
	default:
		return ANSWER_TEMPFAIL;
	}
}

/* addr_query_done - the A or AAAA answer for one host of a lookup. */
static void addr_query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct addr_query *q = arg;
	struct dns_lookup *l = q->l;
	struct lookup_host *h = &l->hosts[q->host];
	bool v6 = q->v6;
	(void)timeouts;
	free(q);
	l->pending--;
	if (l->d->destroying || status == ARES_EDESTRUCTION)
		return;	/* dns_free() delivers "cancelled" */

	if (status == ARES_SUCCESS) {
		int n = DNS_MAX_ADDRS;
		if (v6) {
			struct ares_addr6ttl ttls[DNS_MAX_ADDRS];
			status = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
			if (status == ARES_SUCCESS && n == 0)
				status = ARES_ENODATA;
			for (int i = 0; status == ARES_SUCCESS && i < n; i++)
				memcpy(&h->v6[i], &ttls[i].ip6addr, sizeof(h->v6[i]));
			if (status == ARES_SUCCESS)
				h->n_v6 = (size_t)n;
		} else {
			struct ares_addrttl ttls[DNS_MAX_ADDRS];
			status = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
			if (status == ARES_SUCCESS && n == 0)
				status = ARES_ENODATA;
			for (int i = 0; status == ARES_SUCCESS && i < n; i++)
				h->v4[i] = ttls[i].ipaddr;
			if (status == ARES_SUCCESS)
				h->n_v4 = (size_t)n;
		}
		/* an answer that parses to no record of the type (a bare CNAME) is no data;
		 * one that does not parse at all is the server's problem: try again later */
		if (status != ARES_SUCCESS && status != ARES_ENODATA)
			status = ARES_EBADRESP;
	}
	if (v6) {
		h->aaaa = answer_of(status);
		h->aaaa_err = status;
	} else {
		h->a = answer_of(status);
		h->a_err = status;
	}
	if (l->pending == 0)
		lookup_finish(l);
}

/* lookup_resolve_hosts - start the A and AAAA queries of every host of l. */
static void lookup_resolve_hosts(struct dns_lookup *l)
{
	for (size_t i = 0; i < l->n_hosts; i++) {
		for (int v6 = 0; v6 <= 1; v6++) {
			struct addr_query *q = xcalloc(1, sizeof(*q));
			q->l = l;
			q->host = i;
			q->v6 = v6;
			l->pending++;
			/* may call addr_query_done before returning: the caller holds a
			 * pending count of its own so that l cannot finish under us */
			ares_query(l->d->channel, l->hosts[i].name, ns_c_in,
				   v6 ? ns_t_aaaa : ns_t_a, addr_query_done, q);
		}
	}
}

/* mx_compare - qsort order: lower preference first. */
static int mx_compare(const void *a, const void *b)
{
	const struct lookup_host *x = a, *y = b;
	return (x->preference > y->preference) - (x->preference < y->preference);
}

/* lookup_order_hosts - sort by preference, shuffle equal preferences (RFC 5321 §5.1),
 * drop repeated names (keeping the most preferred) and cut the list at DNS_MAX_HOSTS. */
static void lookup_order_hosts(struct dns_lookup *l)
{
	qsort(l->hosts, l->n_hosts, sizeof(*l->hosts), mx_compare);
	for (size_t start = 0, end; start < l->n_hosts; start = end) {
		for (end = start + 1; end < l->n_hosts; end++) {
			if (l->hosts[end].preference != l->hosts[start].preference)
				break;
		}
		for (size_t i = end - 1; i > start; i--) {
			size_t j = start + arc4random_uniform((uint32_t)(i - start + 1));
			struct lookup_host t = l->hosts[i];
			l->hosts[i] = l->hosts[j];
			l->hosts[j] = t;
		}
	}
	size_t kept = 0;
	for (size_t i = 0; i < l->n_hosts; i++) {
		bool dup = false;
		for (size_t j = 0; j < kept && !dup; j++)
			dup = strcasecmp(l->hosts[j].name, l->hosts[i].name) == 0;
		if (dup || kept == DNS_MAX_HOSTS) {
			free(l->hosts[i].name);
			continue;
		}
		l->hosts[kept++] = l->hosts[i];
	}
	l->n_hosts = kept;
}

/* mx_query_done - the MX answer: fail, go implicit, or resolve the exchanges. */
static void mx_query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_lookup *l = arg;
	char name[256];
	(void)timeouts;
	if (l->d->destroying || status == ARES_EDESTRUCTION) {
		l->pending--;
		return;
	}
	clean_name(name, sizeof(name), l->name);

	struct ares_mx_reply *mx = NULL;
	if (status == ARES_SUCCESS) {
		status = ares_parse_mx_reply(abuf, alen, &mx);
		/* c-ares 1.18 returns success and an empty list when the answer holds no MX
		 * (a CNAME whose target has none): that is no data, i.e. implicit MX */
		if (status == ARES_SUCCESS && mx == NULL)
			status = ARES_ENODATA;
		else if (status != ARES_SUCCESS && status != ARES_ENODATA)
			status = ARES_EBADRESP;
	}
	switch (status) {
	case ARES_SUCCESS: {
		size_t n_null = 0, n_seen = 0;
		for (struct ares_mx_reply *m = mx; m != NULL && n_seen < DNS_MAX_MX_RECORDS;
		     m = m->next, n_seen++) {
			/* c-ares gives the root name "." as "" */
			if (m->host[0] == '\0' || strcmp(m->host, ".") == 0)
				n_null++;
			else
				lookup_add_host(l, m->host, m->priority);
		}
		ares_free_data(mx);
		if (l->n_hosts == 0 && n_null > 0) {
			lookup_fail(l, DNS_NULL_MX,
				    xasprintf("%s does not accept mail (null MX)", name));
		} else {
			lookup_order_hosts(l);
			lookup_resolve_hosts(l);
		}
		break;
	}
	case ARES_ENODATA:
		/* no MX: the domain itself is the implicit MX, preference 0 */
		l->implicit_mx = true;
		lookup_add_host(l, l->name, 0);
		lookup_resolve_hosts(l);
		break;
	case ARES_ENOTFOUND:
		lookup_fail(l, DNS_NXDOMAIN, xasprintf("domain %s does not exist", name));
		break;
	case ARES_EBADNAME:
		lookup_fail(l, DNS_NXDOMAIN, xasprintf("%s is not a valid domain name", name));
		break;
	default:
		lookup_fail(l, DNS_TEMPFAIL,
			    xasprintf("MX lookup for %s failed: %s", name, ares_strerror(status)));
		break;
	}
	l->pending--;
	if (l->pending == 0)
		lookup_finish(l);
}

/* host_fill_addrs - the addresses of h, in the order to try, into out (port set). */
static void host_fill_addrs(const struct lookup_host *h, uint16_t port, struct dns_host *out)
{
	size_t n6 = h->n_v6 < DNS_MAX_V6_SHARE ? h->n_v6 : DNS_MAX_V6_SHARE;
	size_t n4 = h->n_v4 < DNS_MAX_ADDRS - n6 ? h->n_v4 : DNS_MAX_ADDRS - n6;
	n6 = h->n_v6 < DNS_MAX_ADDRS - n4 ? h->n_v6 : DNS_MAX_ADDRS - n4;
	out->name = h->name;
	out->preference = h->preference;
	out->n_addrs = n4 + n6;
	out->addrs = xcalloc(out->n_addrs, sizeof(*out->addrs));
	out->addrlens = xcalloc(out->n_addrs, sizeof(*out->addrlens));
	for (size_t i = 0; i < n4; i++) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&out->addrs[i];
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sin->sin_addr = h->v4[i];
		out->addrlens[i] = sizeof(*sin);
	}
	for (size_t i = 0; i < n6; i++) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addrs[n4 + i];
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sin6->sin6_addr = h->v6[i];
		out->addrlens[n4 + i] = sizeof(*sin6);
	}
}

/* lookup_result - build l->res from what the queries found. */
static void lookup_result(struct dns_lookup *l)
{
	struct dns_mx_result *res = &l->res;
	char name[256], host[256];
	if (l->failed) {
		res->status = l->fail_status;
		res->error = l->fail_error;
		l->fail_error = NULL;
		return;
	}
	res->hosts = xcalloc(l->n_hosts, sizeof(*res->hosts));
	const struct lookup_host *tempfailed = NULL;
	int tempfail_err = 0;
	bool all_nxdomain = true;
	for (size_t i = 0; i < l->n_hosts; i++) {
		const struct lookup_host *h = &l->hosts[i];
		if (h->n_v4 + h->n_v6 > 0)
			host_fill_addrs(h, l->port, &res->hosts[res->n_hosts++]);
		if (tempfailed == NULL && (h->a == ANSWER_TEMPFAIL || h->aaaa == ANSWER_TEMPFAIL)) {
			tempfailed = h;
			tempfail_err = h->a == ANSWER_TEMPFAIL ? h->a_err : h->aaaa_err;
		}
		if (h->a != ANSWER_NXDOMAIN || h->aaaa != ANSWER_NXDOMAIN)
			all_nxdomain = false;
	}
	if (res->n_hosts > 0) {
		res->status = DNS_OK;
		return;
	}
	free(res->hosts);
	res->hosts = NULL;
	clean_name(name, sizeof(name), l->name);
	if (tempfailed != NULL) {
		res->status = DNS_TEMPFAIL;
		res->error = xasprintf("address lookup for %s failed: %s",
				       clean_name(host, sizeof(host), tempfailed->name),
				       ares_strerror(tempfail_err));
	} else if (!l->is_mx && all_nxdomain) {
		res->status = DNS_NXDOMAIN;
		res->error = xasprintf("host %s does not exist", name);
	} else if (!l->is_mx) {
		res->status = DNS_NO_ADDRESS;
		res->error = xasprintf("host %s has no A/AAAA record", name);
	} else if (l->implicit_mx) {
		res->status = DNS_NO_ADDRESS;
		res->error = xasprintf("%s has no MX and no A/AAAA record", name);
	} else {
		res->status = DNS_NO_ADDRESS;
		res->error = xasprintf("no MX host of %s has an A/AAAA record", name);
	}
}

/* lookup_finish - all queries of l are done: build its result and schedule the callback. */
static void lookup_finish(struct dns_lookup *l)
{
	if (l->qcb == NULL)
		lookup_result(l);
	l->finished = true;
	if (!l->d->destroying)
		event_active(l->done_ev, EV_TIMEOUT, 0);
}

/* parse_literal - "[1.2.3.4]", "[IPv6:::1]" (or "[::1]"), and with bare set also "1.2.3.4"
 * and "::1", into h (name: the address text). 1: an address; 0: not a literal; -1: a
 * bracketed text that is no address we can use. */
static int parse_literal(const char *s, bool bare, struct lookup_host *h)
{
	char text[INET6_ADDRSTRLEN + 8];
	size_t len = strlen(s);
	bool v6_only = false;
	if (len > 0 && s[0] == '[') {
		if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(text))
			return -1;
		memcpy(text, s + 1, len - 2);
		text[len - 2] = '\0';
		if (strncasecmp(text, "IPv6:", 5) == 0) {
			memmove(text, text + 5, strlen(text + 5) + 1);
			v6_only = true;
		}
	} else {
		if (!bare || len >= sizeof(text))
			return 0;
		memcpy(text, s, len + 1);
	}
	if (!v6_only && inet_pton(AF_INET, text, &h->v4[0]) == 1) {
		h->n_v4 = 1;
	} else if (inet_pton(AF_INET6, text, &h->v6[0]) == 1) {
		h->n_v6 = 1;
	} else {
		return s[0] == '[' ? -1 : 0;
	}
	free(h->name);
	h->name = xstrdup(text);
	return 1;
}

/* lookup_start - literal or DNS: begin the lookup (MX first when is_mx). */
static void lookup_start(struct dns *d, const char *name, uint16_t port, bool is_mx,
			 dns_mx_cb *cb, void *ctx)
{
	struct dns_lookup *l = lookup_new(d, name, port, is_mx, cb, ctx);
	char clean[256];
	struct lookup_host lit;
	memset(&lit, 0, sizeof(lit));
	int r = parse_literal(name, !is_mx, &lit);
	if (r > 0) {
		struct lookup_host *h = lookup_add_host(l, lit.name, 0);
		free(lit.name);
		h->v4[0] = lit.v4[0];
		h->n_v4 = lit.n_v4;
		h->v6[0] = lit.v6[0];
		h->n_v6 = lit.n_v6;
		lookup_finish(l);
		return;
	}
	if (r < 0 || *name == '\0' || strcmp(name, ".") == 0) {
		lookup_fail(l, DNS_NXDOMAIN,
			    r < 0 ? xasprintf("%s is not a valid address literal",
					      clean_name(clean, sizeof(clean), name))
				  : xasprintf("empty domain name"));
		lookup_finish(l);
		return;
	}
	/* one pending count of our own while starting, so that queries answered from inside
	 * ares_query() cannot finish the lookup before all are started */
	l->pending++;
	if (is_mx) {
		l->pending++;
		ares_query(d->channel, name, ns_c_in, ns_t_mx, mx_query_done, l);
	} else {
		lookup_add_host(l, name, 0);
		lookup_resolve_hosts(l);
	}
	l->pending--;
	if (l->pending == 0)
		lookup_finish(l);
	dns_reschedule(d);
}

void dns_lookup_mx(struct dns *d, const char *domain, uint16_t port, dns_mx_cb *cb, void *ctx)
{
	lookup_start(d, domain, port, true, cb, ctx);
}

void dns_lookup_host(struct dns *d, const char *host, uint16_t port, dns_mx_cb *cb, void *ctx)
{
	lookup_start(d, host, port, false, cb, ctx);
}

/* query_done - the answer of a dns_query. */
static void query_done(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_lookup *l = arg;
	char name[256];
	(void)timeouts;
	l->pending--;
	if (l->d->destroying || status == ARES_EDESTRUCTION)
		return;	/* dns_free() delivers "cancelled" */
	clean_name(name, sizeof(name), l->name);
	switch (answer_of(status)) {
	case ANSWER_ADDRS:
		if (alen > 0 && abuf != NULL) {
			unsigned char *copy = xmalloc((size_t)alen);
			memcpy(copy, abuf, (size_t)alen);
			l->answer.status = DNS_ANSWER_OK;
			l->answer.abuf = copy;
			l->answer.alen = alen;
		} else {
			l->answer.status = DNS_ANSWER_TEMPFAIL;
			l->answer.error = xasprintf("%s: empty answer", name);
		}
		break;
	case ANSWER_NODATA:
		l->answer.status = DNS_ANSWER_NODATA;
		l->answer.error = xasprintf("%s: no records of that type", name);
		break;
	case ANSWER_NXDOMAIN:
		l->answer.status = DNS_ANSWER_NXDOMAIN;
		l->answer.error = xasprintf("%s: no such domain", name);
		break;
	default:
		l->answer.status = DNS_ANSWER_TEMPFAIL;
		l->answer.error = xasprintf("%s: %s", name, ares_strerror(status));
		break;
	}
	if (l->pending == 0)
		lookup_finish(l);
}

void dns_query(struct dns *d, const char *name, int type, dns_query_cb *cb, void *ctx)
{
	struct dns_lookup *l = lookup_new(d, name, 0, false, NULL, ctx);
	l->qcb = cb;
	if (*name == '\0' || strlen(name) > 253) {
		l->answer.status = DNS_ANSWER_NXDOMAIN;
		l->answer.error = xstrdup(*name == '\0' ? "empty domain name" : "name too long");
		lookup_finish(l);
		return;
	}
	l->pending++;
	ares_query(d->channel, name, ns_c_in, type, query_done, l);
	dns_reschedule(d);
}

#define DNS_MAX_TXT 64

/* A dns_lookup_txt in flight. */
struct txt_req {
	dns_txt_cb *cb;
	void *ctx;
};

/* txt_done - parse a TXT answer and hand its records to the caller. */
static void txt_done(void *arg, const struct dns_answer *a)
{
	struct txt_req *t = arg;
	struct dns_txt_result r = { .status = a->status, .error = a->error };
	struct ares_txt_ext *txt = NULL;
	char *err = NULL;
	if (a->status == DNS_ANSWER_OK) {
		int st = ares_parse_txt_reply_ext(a->abuf, a->alen, &txt);
		if (st != ARES_SUCCESS && st != ARES_ENODATA) {
			r.status = DNS_ANSWER_TEMPFAIL;
			r.error = err = xasprintf("malformed TXT answer: %s", ares_strerror(st));
		} else if (txt == NULL) {
			r.status = DNS_ANSWER_NODATA;	/* e.g. a CNAME to a name without TXT */
			r.error = "no TXT records";
		}
	}
	r.txts = xcalloc(DNS_MAX_TXT, sizeof(char *));
	for (struct ares_txt_ext *p = txt; p != NULL; p = p->next) {
		if (p->record_start) {
			if (r.n == DNS_MAX_TXT)
				break;
			r.txts[r.n++] = xstrdup("");
		} else if (r.n == 0) {
			continue;
		}
		char **cur = &r.txts[r.n - 1];
		size_t have = strlen(*cur), add = strnlen((const char *)p->txt, p->length);
		*cur = xrealloc(*cur, have + add + 1);
		memcpy(*cur + have, p->txt, add);
		(*cur)[have + add] = '\0';
	}
	if (txt != NULL)
		ares_free_data(txt);
	t->cb(t->ctx, &r);
	for (size_t i = 0; i < r.n; i++)
		free(r.txts[i]);
	free(r.txts);
	free(err);
	free(t);
}

void dns_lookup_txt(struct dns *d, const char *name, dns_txt_cb *cb, void *ctx)
{
	struct txt_req *t = xmalloc(sizeof(*t));
	t->cb = cb;
	t->ctx = ctx;
	dns_query(d, name, ns_t_txt, txt_done, t);
}

void dns_free(struct dns **dns)
{
	struct dns *d = *dns;
	if (d == NULL)
		return;
	*dns = NULL;
	d->destroying = true;
	/* runs every pending query callback with ARES_EDESTRUCTION and closes the sockets
	 * (telling dns_sock_state, which frees their events) */
	ares_destroy(d->channel);
	while (d->socks != NULL) {
		struct dns_sock *s = d->socks;
		d->socks = s->next;
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
	}
	event_free(d->timer);
	while (d->lookups != NULL) {
		struct dns_lookup *l = d->lookups;
		lookup_unlink(l);
		if (!l->finished) {
			l->res.status = DNS_TEMPFAIL;
			l->res.error = xstrdup("cancelled");
			l->answer.status = DNS_ANSWER_TEMPFAIL;
			l->answer.error = xstrdup("cancelled");
		}
		lookup_callback(l);
		lookup_free(l);
	}
	free(d);
	ares_library_cleanup();
}
