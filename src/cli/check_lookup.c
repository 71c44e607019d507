/* check_lookup - reporting, names and addresses, and waiting lookups for `tern check` */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/check_private.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"

void check_list_add(struct check_list *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(char *));
	l->v[l->n++] = xstrdup(s);
}

/* check_list_add_name - add a DNS name unless the list has it already (any case) */
void check_list_add_name(struct check_list *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i], s) == 0)
			return;
	check_list_add(l, s);
}

void check_list_free(struct check_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* check_report - one line: level, subject, message */
void check_report(struct checker *c, enum check_level level, const char *subject, const char *fmt,
		   ...)
{
	static const char *const names[] = { "ok", "warning", "error" };
	va_list ap;
	printf("%-7s  %s  ", names[level], subject);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	c->count[level]++;
	if (level > c->worst)
		c->worst = level;
}

/* check_shown - text from the DNS made printable and cut short, for a report; caller frees */
char *check_shown(const char *s)
{
	buf b;
	buf_init(&b, 0);
	buf_append(&b, "\"", 1);
	size_t i;
	for (i = 0; s[i] != '\0' && i < 300; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			buf_printf(&b, "\\%03o", ch);
		else
			buf_append(&b, (const char *)&ch, 1);
	}
	buf_printf(&b, "%s\"", s[i] != '\0' ? "..." : "");
	char *out = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return out;
}

/* check_same_name - two DNS names equal, ignoring case and a final dot */
bool check_same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* check_addr_bytes - the address text as bytes; its family, or 0 */
int check_addr_bytes(const char *text, unsigned char out[16])
{
	if (inet_pton(AF_INET, text, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, text, out) == 1)
		return AF_INET6;
	return 0;
}

bool check_same_addr(const char *a, const char *b)
{
	unsigned char x[16], y[16];
	int fa = check_addr_bytes(a, x), fb = check_addr_bytes(b, y);
	return fa != 0 && fa == fb && memcmp(x, y, fa == AF_INET ? 4 : 16) == 0;
}

/* is_private4 - loopback, RFC 1918, link-local, CGNAT, "this network" */
static bool is_private4(const unsigned char *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	       (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
	       (a[0] == 100 && (a[1] & 0xc0) == 64);
}

/* check_is_private - an address other mail servers on the Internet cannot reach */
bool check_is_private(const char *text)
{
	unsigned char a[16];
	int fam = check_addr_bytes(text, a);
	if (fam == AF_INET)
		return is_private4(a);
	if (fam != AF_INET6)
		return true;
	static const unsigned char zero[16], mapped[12] = { [10] = 0xff, [11] = 0xff };
	if (memcmp(a, mapped, 12) == 0)
		return is_private4(a + 12);
	return memcmp(a, zero, 15) == 0 /* :: and ::1 */ || (a[0] & 0xfe) == 0xfc ||
	       (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

/* ---- synchronous lookups on the private loop ------------------------------------------------
 * A command line tool asks one question at a time: each helper starts one lookup of
 * outbound/dns and runs the loop until its callback has run. */

static void on_raw(void *ctx, const struct dns_answer *a)
{
	struct check_answer *r = ctx;
	r->status = a->status;
	r->error = a->error ? xstrdup(a->error) : NULL;
	if (a->status == DNS_ANSWER_OK && a->alen > 0) {
		r->abuf = xmalloc((size_t)a->alen);
		memcpy(r->abuf, a->abuf, (size_t)a->alen);
		r->alen = a->alen;
	}
	r->done = true;
}

void check_wait(struct checker *c, const bool *done)
{
	while (!*done)
		if (event_base_loop(c->base, EVLOOP_ONCE) != 0)
			break;	/* nothing left to wait for: the caller sees !done */
}

void check_query(struct checker *c, const char *name, int type, struct check_answer *r)
{
	*r = (struct check_answer){ .status = DNS_ANSWER_TEMPFAIL };
	dns_query(c->dns, name, type, on_raw, r);
	check_wait(c, &r->done);
	if (!r->done)
		r->error = xstrdup("no answer");
}

void check_answer_free(struct check_answer *r)
{
	free(r->error);
	free(r->abuf);
	*r = (struct check_answer){ 0 };
}

static void on_txt(void *ctx, const struct dns_txt_result *r)
{
	struct check_txt_answer *t = ctx;
	t->status = r->status;
	t->error = r->error ? xstrdup(r->error) : NULL;
	for (size_t i = 0; i < r->n; i++)
		check_list_add(&t->txts, r->txts[i]);
	t->done = true;
}

void check_txt(struct checker *c, const char *name, struct check_txt_answer *t)
{
	*t = (struct check_txt_answer){ .status = DNS_ANSWER_TEMPFAIL };
	dns_lookup_txt(c->dns, name, on_txt, t);
	check_wait(c, &t->done);
	if (!t->done)
		t->error = xstrdup("no answer");
}

void check_txt_free(struct check_txt_answer *t)
{
	free(t->error);
	check_list_free(&t->txts);
}

/* check_records_of_kind - the TXT records at name into *t (txt_free it); returns how many of them
 * is_rec keeps (SPF, DMARC, MTA-STS, TLS-RPT: exactly one is wanted), *rec_r the last */
size_t check_records_of_kind(struct checker *c, const char *name, bool (*is_rec)(const char *),
			      struct check_txt_answer *t, const char **rec_r)
{
	check_txt(c, name, t);
	size_t n = 0;
	*rec_r = NULL;
	for (size_t i = 0; i < t->txts.n; i++)
		if (is_rec(t->txts.v[i])) {
			n++;
			*rec_r = t->txts.v[i];
		}
	return n;
}

/* check_addrs - the A and AAAA records of name as text into out. OK when there is any;
 * TEMPFAIL (with *error_r) when a lookup failed; NXDOMAIN when the name does not exist;
 * else NODATA. */
enum dns_answer_status check_addrs(struct checker *c, const char *name,
					   struct check_list *out, char **error_r)
{
	enum dns_answer_status st[2];
	static const int types[2] = { ns_t_a, ns_t_aaaa };
	for (int t = 0; t < 2; t++) {
		struct check_answer r;
		check_query(c, name, types[t], &r);
		st[t] = r.status;
		char text[INET6_ADDRSTRLEN];
		if (r.status == DNS_ANSWER_OK && t == 0) {
			struct ares_addrttl a[16];
			int n = 16;
			if (ares_parse_a_reply(r.abuf, r.alen, NULL, a, &n) == ARES_SUCCESS)
				for (int i = 0; i < n; i++)
					if (inet_ntop(AF_INET, &a[i].ipaddr, text, sizeof(text)))
						check_list_add(out, text);
		} else if (r.status == DNS_ANSWER_OK) {
			struct ares_addr6ttl a[16];
			int n = 16;
			if (ares_parse_aaaa_reply(r.abuf, r.alen, NULL, a, &n) == ARES_SUCCESS)
				for (int i = 0; i < n; i++)
					if (inet_ntop(AF_INET6, &a[i].ip6addr, text, sizeof(text)))
						check_list_add(out, text);
		} else if (r.status == DNS_ANSWER_TEMPFAIL && *error_r == NULL) {
			*error_r = xstrdup(r.error ? r.error : "lookup failed");
		}
		check_answer_free(&r);
	}
	if (st[0] == DNS_ANSWER_TEMPFAIL || st[1] == DNS_ANSWER_TEMPFAIL)
		return DNS_ANSWER_TEMPFAIL;
	if (out->n > 0)
		return DNS_ANSWER_OK;
	return st[0] == DNS_ANSWER_NXDOMAIN ? DNS_ANSWER_NXDOMAIN : DNS_ANSWER_NODATA;
}

/* check_reverse_name - "4.3.2.1.in-addr.arpa" or the ip6.arpa nibbles of addr; NULL if not one */
char *check_reverse_name(const char *addr, unsigned char bytes[16], int *family_r)
{
	*family_r = check_addr_bytes(addr, bytes);
	if (*family_r == AF_INET)
		return xasprintf("%u.%u.%u.%u.in-addr.arpa", bytes[3], bytes[2], bytes[1], bytes[0]);
	if (*family_r != AF_INET6)
		return NULL;
	buf b;
	buf_init(&b, 0);
	for (int i = 15; i >= 0; i--)
		buf_printf(&b, "%x.%x.", bytes[i] & 0xf, bytes[i] >> 4);
	buf_printf(&b, "ip6.arpa");
	char *out = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return out;
}

/* check_ptr_names - the PTR names of addr into names */
enum dns_answer_status check_ptr_names(struct checker *c, const char *addr, const char *rev,
					 struct check_list *names, char **error_r)
{
	unsigned char bytes[16];
	int fam = check_addr_bytes(addr, bytes);
	struct check_answer r;
	check_query(c, rev, ns_t_ptr, &r);
	enum dns_answer_status st = r.status;
	if (st == DNS_ANSWER_OK) {
		struct hostent *he = NULL;
		if (ares_parse_ptr_reply(r.abuf, r.alen, bytes, fam == AF_INET ? 4 : 16, fam, &he) ==
			    ARES_SUCCESS &&
		    he != NULL) {
			if (he->h_name != NULL)
				check_list_add_name(names, he->h_name);
			for (char **al = he->h_aliases; al && *al; al++)
				check_list_add_name(names, *al);
		}
		if (he != NULL)
			ares_free_hostent(he);
		if (names->n == 0)
			st = DNS_ANSWER_NODATA;
	} else if (st == DNS_ANSWER_TEMPFAIL) {
		*error_r = xstrdup(r.error ? r.error : "lookup failed");
	}
	check_answer_free(&r);
	return st;
}

/* check_listening_on - addr is one of the addresses this server listens on */
bool check_listening_on(const struct checker *c, const char *addr)
{
	for (size_t j = 0; j < c->listen.n; j++)
		if (check_same_addr(c->listen.v[j], addr))
			return true;
	return false;
}
