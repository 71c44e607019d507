/* dns - asynchronous mail routing lookups (RFC 5321 §5.1, RFC 7505) on c-ares + libevent.
 *
 * dns_lookup_mx() turns a recipient domain into the ordered list of hosts and addresses to
 * try; dns_lookup_host() resolves one next-hop name. Every lookup ends in exactly one call of
 * its callback, always from the event loop (never from inside the dns_lookup_* call), or from
 * inside dns_free() when the resolver is freed first.
 *
 * Names are looked up in the DNS only: no /etc/hosts, no search list (RFC 5321 §5.1 forbids
 * inferring FQDNs). Use an address literal for a next hop that is not in the DNS. */
#ifndef TERN_QUEUE_DNS_H
#define TERN_QUEUE_DNS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;

/* An async resolver bound to an event_base: c-ares, driven by libevent events on c-ares'
 * sockets (ARES_OPT_SOCK_STATE_CB) plus one timer set from ares_timeout(). */
struct dns;

/* dns_init - a resolver on base. servers: NULL = the servers of /etc/resolv.conf; else
 * "addr:port,addr:port" ("[v6]:port" for IPv6; the port may be left out for 53).
 * Each query waits 3 s for an answer and is tried twice (c-ares doubles the wait on the
 * second round, so a silent server fails a query after about 9 s).
 * Returns 0 with *dns_r (the caller frees it with dns_free), or -1 with *error_r (caller
 * frees). base must outlive the resolver. Between lookups c-ares may keep a socket open and
 * watched, so event_base_dispatch() does not return by itself while the resolver lives. */
int dns_init(struct event_base *base, const char *servers, struct dns **dns_r, char **error_r);

/* dns_event_base - the event_base the resolver runs on (for callers that defer their own
 * callbacks to the loop, as DKIM verification does when it needs no lookup). */
struct event_base *dns_event_base(struct dns *d);

/* dns_free - cancel everything and free the resolver; sets *dns to NULL (NULL is a no-op).
 * Every lookup whose callback has not run yet gets it now, from inside dns_free: with its
 * result if it had completed, else with DNS_TEMPFAIL and error "cancelled". Those callbacks
 * must not start new lookups on this resolver. May be called from inside a lookup callback. */
void dns_free(struct dns **dns);

/* What a lookup found, and what the queue should do about it. */
enum dns_status {
	DNS_OK,		/* hosts holds at least one host with at least one address */
	DNS_NXDOMAIN,	/* the domain (or the next-hop host) does not exist, or is not a
			   valid DNS name: permanent, bounce with 5.1.2 */
	DNS_NULL_MX,	/* RFC 7505 null MX: the domain accepts no mail; permanent, bounce
			   with 5.1.10 (reply 556) */
	DNS_NO_ADDRESS,	/* the domain exists, but none of its MX hosts (or the implicit MX,
			   or the next-hop host) has any A/AAAA record, and every one of those
			   address lookups got a definite answer (NXDOMAIN or no data):
			   permanent, bounce with 5.4.4 (unable to route). If any address
			   lookup failed temporarily the status is DNS_TEMPFAIL instead. */
	DNS_TEMPFAIL,	/* SERVFAIL, REFUSED, timeout, unreachable server, malformed answer,
			   cancelled: defer and retry later. (c-ares 1.18 words a retried
			   SERVFAIL or REFUSED as "Could not contact DNS servers".) */
};

/* One host to try, with its addresses in the order to try them. */
struct dns_host {
	char *name;		/* MX exchange (no trailing dot), the domain itself for an
				   implicit MX, or the address text for an address literal */
	unsigned preference;	/* MX preference; 0 for implicit MX, literals and next hops */
	struct sockaddr_storage *addrs;	/* n_addrs entries, the port set in each */
	socklen_t *addrlens;		/* n_addrs entries: the length of each addrs[i] */
	size_t n_addrs;		/* 1..8: the IPv4 addresses first, then IPv6 (each family in
				   the order the DNS gave; up to 4 IPv6 when both exist) */
};

/* The answer handed to a lookup's callback. All of it (strings and arrays) belongs to the
 * resolver and is valid only during the callback: copy what you keep. */
struct dns_mx_result {
	enum dns_status status;
	char *error;		/* human text for logs and DSNs; NULL when status is DNS_OK */
	struct dns_host *hosts;	/* in the order to try; NULL and 0 unless DNS_OK */
	size_t n_hosts;		/* 1..10: hosts without any address are left out */
};

/* The callback of a lookup; r is valid during the call only. */
typedef void dns_mx_cb(void *ctx, const struct dns_mx_result *r);

/* dns_lookup_mx - route mail for domain (RFC 5321 §5.1).
 * MX query; hosts sorted by preference, equal preferences shuffled, duplicates dropped,
 * at most 10 hosts; then A and AAAA queries for each host (at most 8 addresses per host,
 * port set in each sockaddr). No MX records (NODATA) -> implicit MX: the domain itself with
 * preference 0. A single MX of "." -> DNS_NULL_MX (a "." next to real MX records is
 * ignored). MX query NXDOMAIN -> DNS_NXDOMAIN. Address literals ("[1.2.3.4]",
 * "[IPv6:::1]") are resolved without DNS into one host. cb is called exactly once, never
 * synchronously from inside dns_lookup_mx. domain is copied. */
void dns_lookup_mx(struct dns *d, const char *domain, uint16_t port, dns_mx_cb *cb, void *ctx);

/* dns_lookup_host - A/AAAA for one next-hop host (used for [routes] next hops): a result
 * with one host named host. An IP address, bare or in brackets, needs no DNS. A/AAAA
 * NXDOMAIN -> DNS_NXDOMAIN, no address records -> DNS_NO_ADDRESS. Same callback rules as
 * dns_lookup_mx. host is copied. */
void dns_lookup_host(struct dns *d, const char *host, uint16_t port, dns_mx_cb *cb, void *ctx);

/* ---- any record type (SPF, DKIM, DMARC) --------------------------------------------------- */

/* What a query of one name and type found. */
enum dns_answer_status {
	DNS_ANSWER_OK,		/* the answer holds records of the type asked for (abuf) */
	DNS_ANSWER_NODATA,	/* the name exists, no records of that type */
	DNS_ANSWER_NXDOMAIN,	/* the name does not exist (or cannot be a DNS name) */
	DNS_ANSWER_TEMPFAIL,	/* SERVFAIL, timeout, malformed, cancelled: try later */
};

/* The answer of dns_query, valid during the callback only. */
struct dns_answer {
	enum dns_answer_status status;
	const char *error;		/* human text; NULL when DNS_ANSWER_OK */
	const unsigned char *abuf;	/* the whole DNS reply (parse it with ares_parse_*_reply) */
	int alen;			/* 0 unless DNS_ANSWER_OK */
};
typedef void dns_query_cb(void *ctx, const struct dns_answer *a);

/* dns_query - one query of name (copied) for type (ns_t_a, ns_t_txt, ...; class IN). cb is
 * called exactly once, from the loop, never from inside dns_query; dns_free cancels with
 * DNS_ANSWER_TEMPFAIL "cancelled". Same timeouts as every lookup here. */
void dns_query(struct dns *d, const char *name, int type, dns_query_cb *cb, void *ctx);

/* The TXT records of a name: each record's character-strings joined into one string
 * (RFC 7208 §3.3, RFC 6376 §3.6.2.2), NUL-terminated (a record holding a NUL byte is cut
 * there: no TXT record we read may hold one). Valid during the callback only. */
struct dns_txt_result {
	enum dns_answer_status status;
	const char *error;	/* NULL when DNS_ANSWER_OK */
	char **txts;		/* n records, in the order of the answer */
	size_t n;		/* 0 unless DNS_ANSWER_OK; at most 64 records are kept */
};
typedef void dns_txt_cb(void *ctx, const struct dns_txt_result *r);

/* dns_lookup_txt - the TXT records of name; same rules as dns_query. An answer of the right
 * status whose records cannot be parsed is DNS_ANSWER_TEMPFAIL. */
void dns_lookup_txt(struct dns *d, const char *name, dns_txt_cb *cb, void *ctx);

#endif
