/* spf - Sender Policy Framework (RFC 7208): the record parser, macro expansion and an
 * asynchronous check_host() on the resolver of outbound/dns.
 *
 * spf_check_start() evaluates the policy of a domain for a client address; it never blocks
 * and calls back once, from the loop. Mechanisms are evaluated one DNS query at a time (the
 * RFC's order); every limit of §4.6.4 is kept: 10 DNS mechanisms and modifiers (include, a,
 * mx, ptr, exists, redirect), 10 MX hosts per mx (more is permerror), 10 PTR names per ptr
 * (the rest ignored), 2 void lookups (answers with no records or NXDOMAIN). */
#ifndef TERN_SPF_H
#define TERN_SPF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

struct dns;
struct event_base;

enum spf_result {
	SPF_NONE,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

/* spf_result_name - "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror" */
const char *spf_result_name(enum spf_result r);

/* ---- the record ---------------------------------------------------------------------------- */

enum spf_mech_type { SPF_ALL, SPF_INCLUDE, SPF_A, SPF_MX, SPF_PTR, SPF_IP4, SPF_IP6, SPF_EXISTS };

struct spf_mech {
	enum spf_mech_type type;
	char qualifier;		/* '+', '-', '~' or '?' */
	char *domain_spec;	/* macro-string as written; NULL when none was given */
	int cidr4, cidr6;	/* prefix lengths (32 and 128 when not given) */
	unsigned char addr[16];	/* ip4 (first 4 bytes) and ip6 */
};

struct spf_record {
	struct spf_mech *mechs;
	size_t n_mechs;
	char *redirect;		/* domain-spec of redirect=, or NULL */
	char *exp;		/* domain-spec of exp=, or NULL */
};

/* spf_record_is_spf - true when txt is an SPF record: "v=spf1" (any case) then a space or
 * the end (RFC 7208 §4.5). */
bool spf_record_is_spf(const char *txt);

/* spf_record_parse - parse a whole record (with its "v=spf1"), RFC 7208 §4.6 and §12: the
 * syntax of every term is checked before any is evaluated. 0 with *r filled (free with
 * spf_record_free), or -1 (a permerror) with *error_r (caller frees). */
int spf_record_parse(const char *txt, struct spf_record *r, char **error_r);
void spf_record_free(struct spf_record *r);

/* ---- macros (RFC 7208 §7) ------------------------------------------------------------------ */

struct spf_macro_ctx {
	const char *sender;	/* <sender>: "local@domain" (postmaster@helo for <>) */
	const char *domain;	/* <domain>: the domain being checked now (%{d}) */
	const char *helo;	/* %{h} */
	const char *receiver;	/* %{r}: our host name */
	int family;		/* AF_INET or AF_INET6 */
	unsigned char ip[16];	/* the client's address (4 bytes for AF_INET) */
	time_t now;		/* %{t} */
};

/* spf_macro_expand - expand a macro-string. exp: allow c, r and t (explanation strings
 * only). %{p} expands to "unknown" (RFC 7208 §7.3 allows it; it costs DNS queries and its
 * use is discouraged). A domain-spec longer than 253 octets after expansion is cut from the
 * left, whole labels at a time (§7.3) when domain is true. 0 with *out_r (caller frees), or
 * -1 with *error_r (a syntax error: permerror). */
int spf_macro_expand(const char *spec, const struct spf_macro_ctx *c, bool exp, bool domain,
		     char **out_r, char **error_r);

/* ---- the check ------------------------------------------------------------------------------ */

/* The outcome handed to the callback; valid during the call only. */
struct spf_outcome {
	enum spf_result result;
	const char *domain;		/* the domain checked (the identity's domain) */
	const char *problem;		/* why, for errors and logs; NULL when nothing to say */
	const char *explanation;	/* exp= text of a fail, or NULL */
	unsigned dns_mechanisms;	/* DNS-querying terms evaluated */
	unsigned void_lookups;
};
typedef void spf_cb(void *ctx, const struct spf_outcome *o);

struct spf_check;

/* spf_check_start - check_host(ip, domain, sender) (RFC 7208 §4). sender: "local@domain"
 * (for the HELO identity, "postmaster@helo"); its domain is the one checked. helo and
 * receiver feed the macros. peer: AF_INET or AF_INET6 (an IPv4-mapped IPv6 address counts
 * as IPv4). cb is called exactly once, from the loop (never from inside this call); a check
 * cancelled first never calls it. Everything is copied. */
struct spf_check *spf_check_start(struct event_base *base, struct dns *d,
				  const struct sockaddr *peer, const char *sender, const char *helo,
				  const char *receiver, spf_cb *cb, void *ctx);
/* spf_check_cancel - forget the check: its callback will not run. The memory is released once
 * the DNS query in flight (if any) has answered. Sets *c to NULL; NULL is a no-op. */
void spf_check_cancel(struct spf_check **c);

#endif
