/* spf - RFC 7208 record parser, macros and the asynchronous check_host() (see spf.h) */
#include "spf/spf.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"

#define SPF_MAX_DNS_MECHS 10	/* RFC 7208 §4.6.4 */
#define SPF_MAX_VOID 2
#define SPF_MAX_MX 10
#define SPF_MAX_PTR 10
#define SPF_MAX_DEPTH 12	/* includes/redirects nested: bounded by the 10 anyway */

const char *spf_result_name(enum spf_result r)
{
	static const char *const names[] = { "none", "neutral", "pass", "fail", "softfail",
					     "temperror", "permerror" };
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "permerror";
}

/* ---- record parser -------------------------------------------------------------------------- */

bool spf_record_is_spf(const char *txt)
{
	return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == '\0' || txt[6] == ' ');
}

__attribute__((format(printf, 2, 0))) static void set_err(char **error_r, const char *fmt,
							    const char *term)
{
	if (error_r != NULL) {
		char safe[80];
		size_t n = 0;
		for (const char *p = term; *p && n + 1 < sizeof(safe); p++)
			safe[n++] = isprint((unsigned char)*p) ? *p : '?';
		safe[n] = '\0';
		#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		*error_r = xasprintf(fmt, safe);
#pragma GCC diagnostic pop
	}
}

/* macro_string_ok - the syntax of a macro-string (RFC 7208 §7.1) in s[0..n): every '%' starts
 * "%%", "%_", "%-" or "%{letter digits [r] delimiters}"; other bytes are visible ASCII */
static bool macro_string_ok(const char *s, size_t n, bool exp)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			if (c < 0x21 || c > 0x7e) {
				if (!(exp && c == ' '))
					return false;
			}
			continue;
		}
		if (i + 1 >= n)
			return false;
		char k = s[++i];
		if (k == '%' || k == '_' || k == '-')
			continue;
		if (k != '{' || ++i >= n)
			return false;
		char l = (char)tolower((unsigned char)s[i]);
		if (strchr(exp ? "slodiphcrtv" : "slodiphv", l) == NULL || l == '\0')
			return false;
		i++;
		size_t d0 = i;
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i > d0) {
			/* a transformer's digits: nonzero, and at most 128 parts make sense */
			if (i - d0 > 3 || strtoul(s + d0, NULL, 10) == 0)
				return false;
		}
		if (i < n && (s[i] == 'r' || s[i] == 'R'))
			i++;
		while (i < n && strchr(".-+,/_=", s[i]) != NULL && s[i] != '\0')
			i++;
		if (i >= n || s[i] != '}')
			return false;
	}
	return true;
}

/* toplabel_ok - RFC 7208 §7.1 toplabel: alphanumerics and '-', not all digits, no '-' at the
 * ends */
static bool toplabel_ok(const char *s, size_t n)
{
	bool alpha = false;
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (isalpha((unsigned char)s[i]))
			alpha = true;
		else if (!isdigit((unsigned char)s[i]) && s[i] != '-')
			return false;
	}
	return alpha;
}

/* domain_spec_ok - macro-string domain-end: it ends in a macro-expand or "." toplabel ["."] */
static bool domain_spec_ok(const char *s, size_t n)
{
	if (n == 0 || !macro_string_ok(s, n, false))
		return false;
	if (s[n - 1] == '}')
		return true;
	if (n >= 2 && s[n - 2] == '%' && (s[n - 1] == '%' || s[n - 1] == '_' || s[n - 1] == '-'))
		return false;	/* a literal macro is no domain-end */
	if (s[n - 1] == '.')
		n--;
	size_t dot = n;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	if (dot == 0)
		return false;	/* needs "." toplabel */
	return toplabel_ok(s + dot, n - dot);
}

/* parse_cidr - "/N" with no leading zero, 0..max */
static bool parse_cidr(const char **p, const char *end, int max, int *out)
{
	const char *s = *p + 1;
	if (s >= end || !isdigit((unsigned char)*s) || (*s == '0' && s + 1 < end &&
							  isdigit((unsigned char)s[1])))
		return false;
	int v = 0;
	while (s < end && isdigit((unsigned char)*s)) {
		v = v * 10 + (*s - '0');
		if (v > max)
			return false;
		s++;
	}
	*out = v;
	*p = s;
	return true;
}

/* split_dual_cidr - find "[/n4][//n6]" at the end of term[0..n); sets *spec_end */
static bool split_dual_cidr(const char *t, size_t n, bool v4, bool v6, int *c4, int *c6,
			    size_t *spec_end)
{
	/* the domain-spec cannot hold '/' outside a macro's braces */
	size_t i = 0;
	int depth = 0;
	for (; i < n; i++) {
		if (t[i] == '{')
			depth++;
		else if (t[i] == '}')
			depth--;
		else if (t[i] == '/' && depth == 0)
			break;
	}
	*spec_end = i;
	const char *p = t + i, *end = t + n;
	if (p < end && v4 && p + 1 < end && p[1] != '/') {
		if (!parse_cidr(&p, end, 32, c4))
			return false;
	}
	if (p < end && v6 && p + 1 < end && p[0] == '/' && p[1] == '/') {
		p++;
		if (!parse_cidr(&p, end, 128, c6))
			return false;
	}
	return p == end;
}

static const struct {
	const char *name;
	enum spf_mech_type type;
} mech_names[] = {
	{ "all", SPF_ALL },	    { "include", SPF_INCLUDE }, { "a", SPF_A },
	{ "mx", SPF_MX },	    { "ptr", SPF_PTR },		{ "ip4", SPF_IP4 },
	{ "ip6", SPF_IP6 },	    { "exists", SPF_EXISTS },
};

/* parse_mechanism - one directive without its qualifier */
static int parse_mechanism(const char *t, size_t n, char q, struct spf_mech *m, char **error_r)
{
	char *term = xstrndup(t, n);
	memset(m, 0, sizeof(*m));
	m->qualifier = q;
	m->cidr4 = 32;
	m->cidr6 = 128;
	size_t nl = 0;
	while (nl < n && t[nl] != ':' && t[nl] != '/')
		nl++;
	size_t k;
	for (k = 0; k < sizeof(mech_names) / sizeof(mech_names[0]); k++)
		if (strlen(mech_names[k].name) == nl && strncasecmp(t, mech_names[k].name, nl) == 0)
			break;
	if (k == sizeof(mech_names) / sizeof(mech_names[0])) {
		set_err(error_r, "unknown mechanism '%s'", term);
		goto bad;
	}
	m->type = mech_names[k].type;
	const char *arg = t + nl;
	size_t an = n - nl;
	bool colon = an > 0 && arg[0] == ':';
	switch (m->type) {
	case SPF_ALL:
		if (an != 0)
			goto syntax;
		break;
	case SPF_INCLUDE:
	case SPF_EXISTS:
		if (!colon || !domain_spec_ok(arg + 1, an - 1))
			goto syntax;
		m->domain_spec = xstrndup(arg + 1, an - 1);
		break;
	case SPF_A:
	case SPF_MX:
	case SPF_PTR: {
		size_t se;
		const char *s = colon ? arg + 1 : arg;
		size_t sn = colon ? an - 1 : an;
		bool cidr = m->type != SPF_PTR;
		if (!split_dual_cidr(s, sn, cidr, cidr, &m->cidr4, &m->cidr6, &se))
			goto syntax;
		if (colon) {
			if (!domain_spec_ok(s, se))
				goto syntax;
			m->domain_spec = xstrndup(s, se);
		} else if (se != 0) {
			goto syntax;
		}
		break;
	}
	case SPF_IP4:
	case SPF_IP6: {
		if (!colon)
			goto syntax;
		const char *s = arg + 1;
		size_t sn = an - 1, slash = 0;
		while (slash < sn && s[slash] != '/')
			slash++;
		char ip[INET6_ADDRSTRLEN + 1];
		if (slash == 0 || slash >= sizeof(ip))
			goto syntax;
		memcpy(ip, s, slash);
		ip[slash] = '\0';
		bool v4 = m->type == SPF_IP4;
		if (inet_pton(v4 ? AF_INET : AF_INET6, ip, m->addr) != 1)
			goto syntax;
		if (slash < sn) {
			const char *p = s + slash;
			if (!parse_cidr(&p, s + sn, v4 ? 32 : 128, v4 ? &m->cidr4 : &m->cidr6) ||
			    p != s + sn)
				goto syntax;
		}
		break;
	}
	}
	free(term);
	return 0;
syntax:
	set_err(error_r, "invalid mechanism '%s'", term);
bad:
	free(m->domain_spec);
	m->domain_spec = NULL;
	free(term);
	return -1;
}

int spf_record_parse(const char *txt, struct spf_record *r, char **error_r)
{
	memset(r, 0, sizeof(*r));
	if (!spf_record_is_spf(txt)) {
		set_err(error_r, "not an SPF record: '%s'", txt);
		return -1;
	}
	const char *p = txt + 6;
	while (*p != '\0') {
		if (*p != ' ') {
			set_err(error_r, "unexpected character in '%s'", p);
			goto bad;
		}
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		size_t n = strcspn(p, " ");
		/* a modifier: name "=" ...; the name starts with a letter and holds no ':' '/' */
		size_t nl = 0;
		while (nl < n && (isalnum((unsigned char)p[nl]) || p[nl] == '-' || p[nl] == '_' ||
				  p[nl] == '.'))
			nl++;
		if (nl > 0 && nl < n && p[nl] == '=' && isalpha((unsigned char)p[0])) {
			char *term = xstrndup(p, n);
			const char *v = p + nl + 1;
			size_t vn = n - nl - 1;
			bool redirect = nl == 8 && strncasecmp(p, "redirect", 8) == 0;
			bool exp = nl == 3 && strncasecmp(p, "exp", 3) == 0;
			char **slot = redirect ? &r->redirect : exp ? &r->exp : NULL;
			if (slot != NULL && *slot != NULL) {
				set_err(error_r, "duplicate modifier '%s'", term);
				free(term);
				goto bad;
			}
			if (slot != NULL ? !domain_spec_ok(v, vn) : !macro_string_ok(v, vn, false)) {
				set_err(error_r, "invalid modifier '%s'", term);
				free(term);
				goto bad;
			}
			if (slot != NULL)
				*slot = xstrndup(v, vn);
			free(term);
			p += n;
			continue;
		}
		char q = '+';
		const char *t = p;
		size_t tn = n;
		if (strchr("+-~?", *t) != NULL) {
			q = *t++;
			tn--;
		}
		struct spf_mech m;
		if (parse_mechanism(t, tn, q, &m, error_r) < 0)
			goto bad;
		r->mechs = xreallocarray(r->mechs, r->n_mechs + 1, sizeof(*r->mechs));
		r->mechs[r->n_mechs++] = m;
		p += n;
	}
	return 0;
bad:
	spf_record_free(r);
	return -1;
}

void spf_record_free(struct spf_record *r)
{
	for (size_t i = 0; i < r->n_mechs; i++)
		free(r->mechs[i].domain_spec);
	free(r->mechs);
	free(r->redirect);
	free(r->exp);
	memset(r, 0, sizeof(*r));
}

/* ---- macros --------------------------------------------------------------------------------- */

/* macro_value - the raw value of a macro letter (lower case) */
static char *macro_value(char l, const struct spf_macro_ctx *c)
{
	const char *at = strrchr(c->sender, '@');
	char text[INET6_ADDRSTRLEN + 8];
	switch (l) {
	case 's':
		return xstrdup(c->sender);
	case 'l':
		return at != NULL && at != c->sender ? xstrndup(c->sender, (size_t)(at - c->sender))
						      : xstrdup("postmaster");
	case 'o':
		return xstrdup(at != NULL ? at + 1 : c->sender);
	case 'd':
		return xstrdup(c->domain);
	case 'h':
		return xstrdup(c->helo ? c->helo : "unknown");
	case 'r':
		return xstrdup(c->receiver ? c->receiver : "unknown");
	case 'p':
		return xstrdup("unknown");
	case 'v':
		return xstrdup(c->family == AF_INET ? "in-addr" : "ip6");
	case 't':
		return xasprintf("%lld", (long long)c->now);
	case 'c':
		inet_ntop(c->family, c->ip, text, sizeof(text));
		return xstrdup(text);
	case 'i':
		if (c->family == AF_INET) {
			inet_ntop(AF_INET, c->ip, text, sizeof(text));
			return xstrdup(text);
		} else {
			static const char hex[] = "0123456789abcdef";
			char out[64];
			size_t k = 0;
			for (size_t i = 0; i < 16; i++) {
				out[k++] = hex[c->ip[i] >> 4];
				out[k++] = '.';
				out[k++] = hex[c->ip[i] & 15];
				out[k++] = '.';
			}
			out[k - 1] = '\0';
			return xstrdup(out);
		}
	}
	return xstrdup("");
}

/* macro_transform - split on delims, optionally reverse, keep the rightmost keep parts,
 * join with '.' (RFC 7208 §7.3) */
static void macro_transform(buf *out, const char *v, unsigned keep, bool reverse,
			    const char *delims, bool upper)
{
	size_t n = 1;
	for (const char *p = v; *p; p++)
		if (strchr(delims, *p) != NULL)
			n++;
	const char **parts = xcalloc(n, sizeof(char *));
	size_t *lens = xcalloc(n, sizeof(size_t));
	size_t k = 0;
	const char *start = v;
	for (const char *p = v;; p++) {
		if (*p == '\0' || strchr(delims, *p) != NULL) {
			parts[k] = start;
			lens[k++] = (size_t)(p - start);
			if (*p == '\0')
				break;
			start = p + 1;
		}
	}
	if (reverse) {
		for (size_t i = 0; i < n / 2; i++) {
			const char *tp = parts[i];
			size_t tl = lens[i];
			parts[i] = parts[n - 1 - i];
			lens[i] = lens[n - 1 - i];
			parts[n - 1 - i] = tp;
			lens[n - 1 - i] = tl;
		}
	}
	size_t first = keep > 0 && keep < n ? n - keep : 0;
	for (size_t i = first; i < n; i++) {
		if (i > first)
			buf_append(out, ".", 1);
		if (!upper) {
			buf_append(out, parts[i], lens[i]);
			continue;
		}
		/* upper-case macro letters: URL-escape what is not unreserved (RFC 3986) */
		for (size_t j = 0; j < lens[i]; j++) {
			unsigned char ch = (unsigned char)parts[i][j];
			if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~')
				buf_append(out, &parts[i][j], 1);
			else
				buf_printf(out, "%%%02X", ch);
		}
	}
	free(parts);
	free(lens);
}

int spf_macro_expand(const char *spec, const struct spf_macro_ctx *c, bool exp, bool domain,
		     char **out_r, char **error_r)
{
	if (!macro_string_ok(spec, strlen(spec), exp)) {
		set_err(error_r, "invalid macro string '%s'", spec);
		return -1;
	}
	buf out;
	buf_init(&out, 0);
	for (const char *p = spec; *p; p++) {
		if (*p != '%') {
			buf_append(&out, p, 1);
			continue;
		}
		p++;
		if (*p == '%' || *p == '_' || *p == '-') {
			buf_append(&out, *p == '%' ? "%" : *p == '_' ? " " : "%20", *p == '-' ? 3 : 1);
			continue;
		}
		p++;	/* past '{' */
		char letter = *p++;
		bool upper = isupper((unsigned char)letter);
		unsigned keep = 0;
		while (isdigit((unsigned char)*p))
			keep = keep * 10 + (unsigned)(*p++ - '0');
		bool reverse = false;
		if (*p == 'r' || *p == 'R') {
			reverse = true;
			p++;
		}
		char delims[8];
		size_t nd = 0;
		while (*p != '}' && nd + 1 < sizeof(delims))
			delims[nd++] = *p++;
		while (*p != '}')
			p++;
		delims[nd] = '\0';
		char *v = macro_value((char)tolower((unsigned char)letter), c);
		macro_transform(&out, v, keep, reverse, nd ? delims : ".", upper);
		free(v);
	}
	buf_append(&out, "", 1);
	char *s = (char *)out.data;
	out.data = NULL;
	buf_free(&out);
	if (domain) {
		/* §7.3: over 253 octets, drop labels from the left until it fits */
		size_t len = strlen(s);
		char *t = s;
		while (len > 253) {
			char *dot = strchr(t, '.');
			if (dot == NULL)
				break;
			len -= (size_t)(dot + 1 - t);
			t = dot + 1;
		}
		if (t != s)
			memmove(s, t, len + 1);
	}
	*out_r = s;
	return 0;
}

/* ---- check_host ----------------------------------------------------------------------------- */

struct spf_frame {
	char *domain;
	struct spf_record rec;
	bool loaded;
	size_t next;		/* the mechanism to evaluate next */
	bool include;		/* evaluated for an include (else the top or a redirect) */
	bool redirected;	/* reached through redirect=: no record is a permerror */
};

enum spf_wait {
	W_NONE,
	W_TXT,		/* the record of the top frame */
	W_ADDR,		/* a, or an MX host's / PTR name's addresses */
	W_MX,
	W_PTR,
	W_EXISTS,
	W_EXP_TXT,
};

struct spf_check {
	struct event_base *base;
	struct dns *dns;
	spf_cb *cb;
	void *ctx;
	bool cancelled;
	bool in_flight;		/* a DNS query's callback is outstanding */
	struct event *ev;	/* to call back from the loop */
	struct spf_macro_ctx m;
	char *sender, *helo, *receiver, *top_domain;
	struct spf_frame frames[SPF_MAX_DEPTH];
	size_t depth;
	unsigned dns_mechs, voids;
	enum spf_wait wait;
	/* the mechanism being evaluated */
	char *target;		/* its expanded domain */
	char **names;		/* MX hosts or PTR names still to look up */
	size_t n_names, i_name;
	bool ptr_mode;		/* names are PTR names: a match must be within target */
	int cidr;		/* the prefix for the client's family */
	/* the outcome */
	bool done;
	enum spf_result result;
	char *problem;
	char *explanation;
};

static void step(struct spf_check *c);

static void names_free(struct spf_check *c)
{
	for (size_t i = 0; i < c->n_names; i++)
		free(c->names[i]);
	free(c->names);
	c->names = NULL;
	c->n_names = c->i_name = 0;
}

static void check_free(struct spf_check *c)
{
	for (size_t i = 0; i < c->depth; i++) {
		free(c->frames[i].domain);
		spf_record_free(&c->frames[i].rec);
	}
	names_free(c);
	if (c->ev != NULL)
		event_free(c->ev);
	free(c->target);
	free(c->sender);
	free(c->helo);
	free(c->receiver);
	free(c->top_domain);
	free(c->problem);
	free(c->explanation);
	free(c);
}

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
	struct spf_check *c = arg;
	(void)fd;
	(void)what;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	struct spf_outcome o = { .result = c->result, .domain = c->top_domain,
				 .problem = c->problem, .explanation = c->explanation,
				 .dns_mechanisms = c->dns_mechs, .void_lookups = c->voids };
	c->cb(c->ctx, &o);
	check_free(c);
}

/* finish - the result is known: call back from the loop */
static void finish(struct spf_check *c, enum spf_result r, const char *problem)
{
	c->done = true;
	c->result = r;
	free(c->problem);
	c->problem = problem ? xstrdup(problem) : NULL;
	c->wait = W_NONE;
	c->ev = event_new(c->base, -1, 0, deliver_cb, c);
	event_active(c->ev, EV_TIMEOUT, 1);
}

static struct spf_frame *top(struct spf_check *c)
{
	return &c->frames[c->depth - 1];
}

/* push_frame - evaluate domain's record next (include or redirect) */
static void push_frame(struct spf_check *c, const char *domain, bool include)
{
	struct spf_frame *f = &c->frames[c->depth++];
	memset(f, 0, sizeof(*f));
	f->domain = xstrdup(domain);
	f->include = include;
}

static void pop_frame(struct spf_check *c)
{
	struct spf_frame *f = top(c);
	free(f->domain);
	spf_record_free(&f->rec);
	c->depth--;
}

/* count_dns_mech - one more DNS-querying term; false (and permerror) past the limit */
static bool count_dns_mech(struct spf_check *c)
{
	if (++c->dns_mechs > SPF_MAX_DNS_MECHS) {
		finish(c, SPF_PERMERROR, "more than 10 DNS-querying terms");
		return false;
	}
	return true;
}

/* count_void - an answer without records; false (and permerror) past the limit */
static bool count_void(struct spf_check *c)
{
	if (++c->voids > SPF_MAX_VOID) {
		finish(c, SPF_PERMERROR, "more than 2 void lookups");
		return false;
	}
	return true;
}

/* expand_domain - a term's domain-spec in the current frame, or the frame's domain */
static bool expand_domain(struct spf_check *c, const char *spec, char **out_r)
{
	if (spec == NULL) {
		*out_r = xstrdup(top(c)->domain);
		return true;
	}
	char *err = NULL;
	c->m.domain = top(c)->domain;
	if (spf_macro_expand(spec, &c->m, false, true, out_r, &err) < 0) {
		finish(c, SPF_PERMERROR, err);
		free(err);
		return false;
	}
	/* a trailing dot is the root: the same name */
	size_t n = strlen(*out_r);
	if (n > 0 && (*out_r)[n - 1] == '.')
		(*out_r)[n - 1] = '\0';
	return true;
}

/* valid_dns_name - labels 1..63 octets, not empty; a name we may query */
static bool valid_dns_name(const char *d)
{
	size_t len = strlen(d);
	if (len == 0 || len > 253)
		return false;
	const char *p = d;
	while (*p) {
		size_t l = strcspn(p, ".");
		if (l == 0 || l > 63)
			return false;
		p += l;
		if (*p == '.')
			p++;
		else
			break;
	}
	return d[len - 1] != '.';
}

static void on_txt(void *ctx, const struct dns_txt_result *r);
static void on_answer(void *ctx, const struct dns_answer *a);

/* query - one DNS query for the current step; answers come to on_answer */
static void query(struct spf_check *c, enum spf_wait w, const char *name, int type)
{
	c->wait = w;
	c->in_flight = true;
	dns_query(c->dns, name, type, on_answer, c);
}

/* ip_match - the client's address in addr/prefix (same family) */
static bool ip_match(const struct spf_check *c, const unsigned char *addr, int prefix)
{
	size_t len = c->m.family == AF_INET ? 4 : 16;
	int bits = prefix;
	for (size_t i = 0; i < len && bits > 0; i++, bits -= 8) {
		unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
		if ((addr[i] & mask) != (c->m.ip[i] & mask))
			return false;
	}
	return true;
}

/* matched - the current mechanism matched: its qualifier is the frame's result */
static void frame_result(struct spf_check *c, enum spf_result r);

static enum spf_result qualifier_result(char q)
{
	switch (q) {
	case '-':
		return SPF_FAIL;
	case '~':
		return SPF_SOFTFAIL;
	case '?':
		return SPF_NEUTRAL;
	default:
		return SPF_PASS;
	}
}

static void matched(struct spf_check *c)
{
	struct spf_frame *f = top(c);
	frame_result(c, qualifier_result(f->rec.mechs[f->next - 1].qualifier));
}

static void on_exp_txt(void *ctx, const struct dns_txt_result *r)
{
	struct spf_check *c = ctx;
	c->in_flight = false;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	/* §6.2: exactly one TXT record, else no explanation; errors are not fatal */
	if (r->status == DNS_ANSWER_OK && r->n == 1) {
		char *out = NULL, *err = NULL;
		if (spf_macro_expand(r->txts[0], &c->m, true, false, &out, &err) == 0) {
			bool printable = true;
			for (const char *p = out; *p; p++)
				if (*p < 0x20 || *p > 0x7e)
					printable = false;
			if (printable)
				c->explanation = out;
			else
				free(out);
		}
		free(err);
	}
	finish(c, SPF_FAIL, NULL);
}

/* frame_result - the record of the top frame produced r */
static void frame_result(struct spf_check *c, enum spf_result r)
{
	struct spf_frame *f = top(c);
	if (f->include) {
		pop_frame(c);
		/* §5.2: pass matches; fail, softfail, neutral do not; errors propagate; none is a
		 * permerror */
		if (r == SPF_PASS) {
			matched(c);
			return;
		}
		if (r == SPF_TEMPERROR || r == SPF_PERMERROR) {
			frame_result(c, r);
			return;
		}
		if (r == SPF_NONE) {
			frame_result(c, SPF_PERMERROR);
			return;
		}
		step(c);
		return;
	}
	/* the top-level record (or what redirected it) is decided */
	if (c->done)
		return;
	if (r == SPF_FAIL && f->rec.exp != NULL) {
		char *name = NULL, *err = NULL;
		c->m.domain = f->domain;
		if (spf_macro_expand(f->rec.exp, &c->m, false, true, &name, &err) == 0 &&
		    valid_dns_name(name)) {
			c->wait = W_EXP_TXT;
			c->in_flight = true;
			dns_lookup_txt(c->dns, name, on_exp_txt, c);
			free(name);
			return;
		}
		free(name);
		free(err);
	}
	finish(c, r, NULL);
}

/* start_mechanism - evaluate f->rec.mechs[f->next++]; may wait for DNS */
static void start_mechanism(struct spf_check *c)
{
	struct spf_frame *f = top(c);
	const struct spf_mech *m = &f->rec.mechs[f->next++];
	free(c->target);
	c->target = NULL;
	names_free(c);
	c->ptr_mode = m->type == SPF_PTR;
	bool v4 = c->m.family == AF_INET;
	switch (m->type) {
	case SPF_ALL:
		matched(c);
		return;
	case SPF_IP4:
	case SPF_IP6:
		if ((m->type == SPF_IP4) == v4 &&
		    ip_match(c, m->addr, v4 ? m->cidr4 : m->cidr6)) {
			matched(c);
			return;
		}
		step(c);
		return;
	case SPF_INCLUDE:
		if (!count_dns_mech(c) || !expand_domain(c, m->domain_spec, &c->target))
			return;
		if (!valid_dns_name(c->target) || c->depth >= SPF_MAX_DEPTH) {
			frame_result(c, SPF_PERMERROR);
			return;
		}
		push_frame(c, c->target, true);
		step(c);
		return;
	case SPF_A:
	case SPF_MX:
	case SPF_PTR:
	case SPF_EXISTS:
		if (!count_dns_mech(c) || !expand_domain(c, m->domain_spec, &c->target))
			return;
		c->cidr = v4 ? m->cidr4 : m->cidr6;
		if (!valid_dns_name(c->target)) {
			/* an invalid name cannot be looked up: no match (as a void lookup) */
			if (count_void(c))
				step(c);
			return;
		}
		if (m->type == SPF_A) {
			query(c, W_ADDR, c->target, v4 ? ns_t_a : ns_t_aaaa);
		} else if (m->type == SPF_MX) {
			query(c, W_MX, c->target, ns_t_mx);
		} else if (m->type == SPF_EXISTS) {
			query(c, W_EXISTS, c->target, ns_t_a);
		} else {
			char name[128];
			size_t k = 0;
			if (v4) {
				snprintf(name, sizeof(name), "%u.%u.%u.%u.in-addr.arpa", c->m.ip[3],
					 c->m.ip[2], c->m.ip[1], c->m.ip[0]);
			} else {
				static const char hex[] = "0123456789abcdef";
				for (int i = 15; i >= 0; i--) {
					name[k++] = hex[c->m.ip[i] & 15];
					name[k++] = '.';
					name[k++] = hex[c->m.ip[i] >> 4];
					name[k++] = '.';
				}
				snprintf(name + k, sizeof(name) - k, "ip6.arpa");
			}
			query(c, W_PTR, name, ns_t_ptr);
		}
		return;
	}
}

/* ends_with_domain - name is target or a subdomain of it (case-insensitive) */
static bool ends_with_domain(const char *name, const char *target)
{
	size_t n = strlen(name), t = strlen(target);
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n < t || strncasecmp(name + n - t, target, t) != 0)
		return false;
	return n == t || name[n - t - 1] == '.';
}

/* next_name - look up the addresses of the next MX host / PTR name, or finish the mechanism */
static void next_name(struct spf_check *c)
{
	if (c->i_name < c->n_names) {
		query(c, W_ADDR, c->names[c->i_name++], c->m.family == AF_INET ? ns_t_a : ns_t_aaaa);
		return;
	}
	step(c);	/* none matched */
}

/* addresses_match - an A (v4) or AAAA answer holds the client's address within c->cidr;
 * any_r: it holds addresses at all (exists asks for A records whatever the client's family) */
static int addresses_match(struct spf_check *c, const struct dns_answer *a, bool v4, bool *any_r)
{
	*any_r = false;
	if (v4) {
		struct ares_addrttl ttls[64];
		int n = 64;
		int st = ares_parse_a_reply(a->abuf, a->alen, NULL, ttls, &n);
		if (st == ARES_ENODATA)
			return 0;
		if (st != ARES_SUCCESS)
			return -1;
		*any_r = n > 0;
		for (int i = 0; i < n; i++)
			if (ip_match(c, (const unsigned char *)&ttls[i].ipaddr, c->cidr))
				return 1;
	} else {
		struct ares_addr6ttl ttls[64];
		int n = 64;
		int st = ares_parse_aaaa_reply(a->abuf, a->alen, NULL, ttls, &n);
		if (st == ARES_ENODATA)
			return 0;
		if (st != ARES_SUCCESS)
			return -1;
		*any_r = n > 0;
		for (int i = 0; i < n; i++)
			if (ip_match(c, (const unsigned char *)&ttls[i].ip6addr, c->cidr))
				return 1;
	}
	return 0;
}

static void on_answer(void *ctx, const struct dns_answer *a)
{
	struct spf_check *c = ctx;
	c->in_flight = false;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	if (a->status == DNS_ANSWER_TEMPFAIL) {
		finish(c, SPF_TEMPERROR, a->error);
		return;
	}
	bool empty = a->status != DNS_ANSWER_OK;
	switch (c->wait) {
	case W_ADDR:
	case W_EXISTS: {
		bool any = false;
		bool v4 = c->wait == W_EXISTS || c->m.family == AF_INET;
		int r = empty ? 0 : addresses_match(c, a, v4, &any);
		if (c->wait == W_EXISTS)
			r = 0;	/* only "any" counts */
		if (r < 0) {
			finish(c, SPF_TEMPERROR, "malformed address answer");
			return;
		}
		if (!any && !count_void(c))
			return;
		if (r == 1 && c->ptr_mode &&
		    !ends_with_domain(c->names[c->i_name - 1], c->target))
			r = 0;
		if (c->wait == W_EXISTS ? any : r == 1) {
			names_free(c);
			matched(c);
			return;
		}
		if (c->names != NULL && c->wait == W_ADDR)
			next_name(c);
		else
			step(c);
		return;
	}
	case W_MX: {
		struct ares_mx_reply *mx = NULL;
		if (!empty) {
			int st = ares_parse_mx_reply(a->abuf, a->alen, &mx);
			if (st != ARES_SUCCESS && st != ARES_ENODATA) {
				finish(c, SPF_TEMPERROR, "malformed MX answer");
				return;
			}
		}
		size_t n = 0;
		for (struct ares_mx_reply *p = mx; p; p = p->next)
			n++;
		if (n == 0) {
			ares_free_data(mx);
			if (count_void(c))
				step(c);
			return;
		}
		if (n > SPF_MAX_MX) {
			ares_free_data(mx);
			finish(c, SPF_PERMERROR, "more than 10 MX records");
			return;
		}
		c->names = xcalloc(n, sizeof(char *));
		for (struct ares_mx_reply *p = mx; p; p = p->next)
			c->names[c->n_names++] = xstrdup(p->host);
		ares_free_data(mx);
		next_name(c);
		return;
	}
	case W_PTR: {
		struct hostent *he = NULL;
		if (!empty) {
			int st = ares_parse_ptr_reply(a->abuf, a->alen, c->m.ip,
						      c->m.family == AF_INET ? 4 : 16,
						      c->m.family, &he);
			if (st != ARES_SUCCESS && st != ARES_ENODATA) {
				finish(c, SPF_TEMPERROR, "malformed PTR answer");
				return;
			}
		}
		size_t n = 0;
		if (he != NULL) {
			if (he->h_name != NULL)
				n++;
			for (char **al = he->h_aliases; al && *al; al++)
				n++;
		}
		if (n == 0) {
			if (he)
				ares_free_hostent(he);
			if (count_void(c))
				step(c);
			return;
		}
		/* §5.5: the first 10 names are validated (their addresses looked up, as pyspf
		 * does, each lookup counting for the void limit); a validated name within the
		 * target domain matches */
		c->names = xcalloc(n, sizeof(char *));
		for (size_t i = 0; i < n && c->n_names < SPF_MAX_PTR; i++)
			c->names[c->n_names++] = xstrdup(i == 0 ? he->h_name : he->h_aliases[i - 1]);
		ares_free_hostent(he);
		c->cidr = c->m.family == AF_INET ? 32 : 128;
		next_name(c);
		return;
	}
	default:
		finish(c, SPF_TEMPERROR, "internal: unexpected answer");
		return;
	}
}

static void on_txt(void *ctx, const struct dns_txt_result *r)
{
	struct spf_check *c = ctx;
	c->in_flight = false;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	if (r->status == DNS_ANSWER_TEMPFAIL) {
		finish(c, SPF_TEMPERROR, r->error);
		return;
	}
	const char *rec = NULL;
	size_t n = 0;
	for (size_t i = 0; i < r->n; i++)
		if (spf_record_is_spf(r->txts[i])) {
			rec = r->txts[i];
			n++;
		}
	if (r->status != DNS_ANSWER_OK || r->n == 0) {
		if (!count_void(c))
			return;
	}
	if (n > 1) {
		frame_result(c, SPF_PERMERROR);
		return;
	}
	struct spf_frame *f = top(c);
	if (n == 0) {
		frame_result(c, f->redirected ? SPF_PERMERROR : SPF_NONE);
		return;
	}
	char *err = NULL;
	if (spf_record_parse(rec, &f->rec, &err) < 0) {
		free(c->problem);
		c->problem = err;
		frame_result(c, SPF_PERMERROR);
		return;
	}
	f->loaded = true;
	step(c);
}

/* step - go on evaluating until a DNS answer is needed or the result is known */
static void step(struct spf_check *c)
{
	if (c->done)
		return;
	struct spf_frame *f = top(c);
	if (!f->loaded) {
		c->wait = W_TXT;
		c->in_flight = true;
		dns_lookup_txt(c->dns, f->domain, on_txt, c);
		return;
	}
	if (f->next < f->rec.n_mechs) {
		start_mechanism(c);
		return;
	}
	/* no mechanism matched: redirect=, else neutral (§4.7) */
	if (f->rec.redirect != NULL) {
		char *target = NULL;
		if (!count_dns_mech(c) || !expand_domain(c, f->rec.redirect, &target))
			return;
		if (!valid_dns_name(target)) {
			free(target);
			frame_result(c, SPF_PERMERROR);
			return;
		}
		/* the redirect's record takes the frame's place; its none is a permerror */
		bool include = f->include;
		free(f->domain);
		spf_record_free(&f->rec);
		memset(f, 0, sizeof(*f));
		f->domain = target;
		f->include = include;
		f->redirected = true;
		step(c);
		return;
	}
	frame_result(c, SPF_NEUTRAL);
}

struct spf_check *spf_check_start(struct event_base *base, struct dns *d,
				  const struct sockaddr *peer, const char *sender, const char *helo,
				  const char *receiver, spf_cb *cb, void *ctx)
{
	struct spf_check *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->dns = d;
	c->cb = cb;
	c->ctx = ctx;
	c->sender = xstrdup(sender);
	c->helo = xstrdup(helo ? helo : "unknown");
	c->receiver = xstrdup(receiver ? receiver : "unknown");
	const char *at = strrchr(sender, '@');
	c->top_domain = xstrdup(at ? at + 1 : sender);
	size_t tl = strlen(c->top_domain);
	if (tl > 0 && c->top_domain[tl - 1] == '.')
		c->top_domain[tl - 1] = '\0';
	c->m.sender = c->sender;
	c->m.helo = c->helo;
	c->m.receiver = c->receiver;
	c->m.now = time(NULL);
	if (peer->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			c->m.family = AF_INET;
			memcpy(c->m.ip, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			c->m.family = AF_INET6;
			memcpy(c->m.ip, s6->sin6_addr.s6_addr, 16);
		}
	} else {
		c->m.family = AF_INET;
		memcpy(c->m.ip, &((const struct sockaddr_in *)peer)->sin_addr, 4);
	}
	/* §4.3: a malformed or single-label domain has no policy */
	if (!valid_dns_name(c->top_domain) || strchr(c->top_domain, '.') == NULL) {
		finish(c, SPF_NONE, "not a fully qualified domain name");
		return c;
	}
	push_frame(c, c->top_domain, false);
	step(c);
	return c;
}

void spf_check_cancel(struct spf_check **cp)
{
	struct spf_check *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->cancelled = true;
	/* the callback of a query in flight frees it */
	if (!c->in_flight)
		check_free(c);	/* also frees a callback event not yet run */
}
