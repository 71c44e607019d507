/* cmd_check - tern check [DOMAIN]: the configuration, its files and each domain's DNS records,
 * each as ok / warning / error with the record to publish (see cmd_check.h) */
#include "cli/cmd_check.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/check_records.h"
#include "cli/devdata.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "dmarc/dmarc.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"
#include "server/master.h"
#include "spf/spf.h"

#define EX_USAGE 64
#define EXPIRY_WARN_DAYS 14

static const char help_text[] =
	"usage: tern check [DOMAIN] [--private-ok] [-c FILE]\n"
	"\n"
	"Checks the configuration (as `tern serve` loads it; errors say FILE:LINE), the data dir,\n"
	"the [tls] dir, the certificate and key, and dkim_dir; then, for every domain in `domains`\n"
	"(or only DOMAIN), looks up in the DNS (the [dns] servers): MX naming `hostname`, the\n"
	"A/AAAA of `hostname` (addresses this server listens on), their PTR back to `hostname`\n"
	"(forward-confirmed), SPF (one record, authorising those addresses), DKIM (each key in\n"
	"dkim_dir published), DMARC, MTA-STS and TLS-RPT; and the certificate (names, expiry,\n"
	"chain). One line per check: ok, warning or error, the subject, and what was found, with\n"
	"the exact record to publish when one is missing or wrong. It only reads; run it as root\n"
	"to check the TLS key and the DKIM keys (root's files).\n"
	"\n"
	"--private-ok  a test or private network: loopback and private addresses, and an smtp\n"
	"              listener on a port other than 25, are not warned about\n"
	"\n"
	"Exit status: 0 all ok, 1 warnings only, 2 errors, 64 usage.\n";

enum level { L_OK, L_WARN, L_ERROR };

struct strlist {
	char **v;
	size_t n;
};

struct checker {
	const struct tern_config *cfg;
	bool private_ok;
	enum level worst;
	unsigned count[3];
	struct event_base *base;
	struct dns *dns;
	struct dkim_keyring *ring;	/* NULL when the keys could not be read */
	X509 *cert;			/* the leaf, when the pair loaded (owned by tls) */
	SSL_CTX *tls;
	struct strlist listen;		/* addresses we listen on */
	struct strlist host_addrs;	/* A/AAAA of hostname */
};

static void strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(char *));
	l->v[l->n++] = xstrdup(s);
}

/* strlist_add_name - add a DNS name unless the list has it already (any case) */
static void strlist_add_name(struct strlist *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i], s) == 0)
			return;
	strlist_add(l, s);
}

static void strlist_free(struct strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* report - one line: level, subject, message */
static void report(struct checker *c, enum level level, const char *subject, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));
static void report(struct checker *c, enum level level, const char *subject, const char *fmt,
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

/* shown - text from the DNS made printable and cut short, for a report; caller frees */
static char *shown(const char *s)
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

/* same_name - two DNS names equal, ignoring case and a final dot */
static bool same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* addr_bytes - the address text as bytes; its family, or 0 */
static int addr_bytes(const char *text, unsigned char out[16])
{
	if (inet_pton(AF_INET, text, out) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, text, out) == 1)
		return AF_INET6;
	return 0;
}

static bool same_addr(const char *a, const char *b)
{
	unsigned char x[16], y[16];
	int fa = addr_bytes(a, x), fb = addr_bytes(b, y);
	return fa != 0 && fa == fb && memcmp(x, y, fa == AF_INET ? 4 : 16) == 0;
}

/* is_private4 - loopback, RFC 1918, link-local, CGNAT, "this network" */
static bool is_private4(const unsigned char *a)
{
	return a[0] == 0 || a[0] == 10 || a[0] == 127 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	       (a[0] == 192 && a[1] == 168) || (a[0] == 169 && a[1] == 254) ||
	       (a[0] == 100 && (a[1] & 0xc0) == 64);
}

/* is_private - an address other mail servers on the Internet cannot reach */
static bool is_private(const char *text)
{
	unsigned char a[16];
	int fam = addr_bytes(text, a);
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

struct raw_answer {
	bool done;
	enum dns_answer_status status;
	char *error;
	unsigned char *abuf;
	int alen;
};

static void on_raw(void *ctx, const struct dns_answer *a)
{
	struct raw_answer *r = ctx;
	r->status = a->status;
	r->error = a->error ? xstrdup(a->error) : NULL;
	if (a->status == DNS_ANSWER_OK && a->alen > 0) {
		r->abuf = xmalloc((size_t)a->alen);
		memcpy(r->abuf, a->abuf, (size_t)a->alen);
		r->alen = a->alen;
	}
	r->done = true;
}

static void run_until(struct checker *c, const bool *done)
{
	while (!*done)
		if (event_base_loop(c->base, EVLOOP_ONCE) != 0)
			break;	/* nothing left to wait for: the caller sees !done */
}

static void raw_query(struct checker *c, const char *name, int type, struct raw_answer *r)
{
	*r = (struct raw_answer){ .status = DNS_ANSWER_TEMPFAIL };
	dns_query(c->dns, name, type, on_raw, r);
	run_until(c, &r->done);
	if (!r->done)
		r->error = xstrdup("no answer");
}

static void raw_free(struct raw_answer *r)
{
	free(r->error);
	free(r->abuf);
	*r = (struct raw_answer){ 0 };
}

struct txt_answer {
	bool done;
	enum dns_answer_status status;
	char *error;
	struct strlist txts;
};

static void on_txt(void *ctx, const struct dns_txt_result *r)
{
	struct txt_answer *t = ctx;
	t->status = r->status;
	t->error = r->error ? xstrdup(r->error) : NULL;
	for (size_t i = 0; i < r->n; i++)
		strlist_add(&t->txts, r->txts[i]);
	t->done = true;
}

static void txt_query(struct checker *c, const char *name, struct txt_answer *t)
{
	*t = (struct txt_answer){ .status = DNS_ANSWER_TEMPFAIL };
	dns_lookup_txt(c->dns, name, on_txt, t);
	run_until(c, &t->done);
	if (!t->done)
		t->error = xstrdup("no answer");
}

static void txt_free(struct txt_answer *t)
{
	free(t->error);
	strlist_free(&t->txts);
}

/* records_of_kind - the TXT records at name into *t (txt_free it); returns how many of them
 * is_rec keeps (SPF, DMARC, MTA-STS, TLS-RPT: exactly one is wanted), *rec_r the last */
static size_t records_of_kind(struct checker *c, const char *name, bool (*is_rec)(const char *),
			      struct txt_answer *t, const char **rec_r)
{
	txt_query(c, name, t);
	size_t n = 0;
	*rec_r = NULL;
	for (size_t i = 0; i < t->txts.n; i++)
		if (is_rec(t->txts.v[i])) {
			n++;
			*rec_r = t->txts.v[i];
		}
	return n;
}

/* lookup_addrs - the A and AAAA records of name as text into out. OK when there is any;
 * TEMPFAIL (with *error_r) when a lookup failed; NXDOMAIN when the name does not exist;
 * else NODATA. */
static enum dns_answer_status lookup_addrs(struct checker *c, const char *name,
					   struct strlist *out, char **error_r)
{
	enum dns_answer_status st[2];
	static const int types[2] = { ns_t_a, ns_t_aaaa };
	for (int t = 0; t < 2; t++) {
		struct raw_answer r;
		raw_query(c, name, types[t], &r);
		st[t] = r.status;
		char text[INET6_ADDRSTRLEN];
		if (r.status == DNS_ANSWER_OK && t == 0) {
			struct ares_addrttl a[16];
			int n = 16;
			if (ares_parse_a_reply(r.abuf, r.alen, NULL, a, &n) == ARES_SUCCESS)
				for (int i = 0; i < n; i++)
					if (inet_ntop(AF_INET, &a[i].ipaddr, text, sizeof(text)))
						strlist_add(out, text);
		} else if (r.status == DNS_ANSWER_OK) {
			struct ares_addr6ttl a[16];
			int n = 16;
			if (ares_parse_aaaa_reply(r.abuf, r.alen, NULL, a, &n) == ARES_SUCCESS)
				for (int i = 0; i < n; i++)
					if (inet_ntop(AF_INET6, &a[i].ip6addr, text, sizeof(text)))
						strlist_add(out, text);
		} else if (r.status == DNS_ANSWER_TEMPFAIL && *error_r == NULL) {
			*error_r = xstrdup(r.error ? r.error : "lookup failed");
		}
		raw_free(&r);
	}
	if (st[0] == DNS_ANSWER_TEMPFAIL || st[1] == DNS_ANSWER_TEMPFAIL)
		return DNS_ANSWER_TEMPFAIL;
	if (out->n > 0)
		return DNS_ANSWER_OK;
	return st[0] == DNS_ANSWER_NXDOMAIN ? DNS_ANSWER_NXDOMAIN : DNS_ANSWER_NODATA;
}

/* reverse_name - "4.3.2.1.in-addr.arpa" or the ip6.arpa nibbles of addr; NULL if not one */
static char *reverse_name(const char *addr, unsigned char bytes[16], int *family_r)
{
	*family_r = addr_bytes(addr, bytes);
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

/* lookup_ptr - the PTR names of addr into names */
static enum dns_answer_status lookup_ptr(struct checker *c, const char *addr, const char *rev,
					 struct strlist *names, char **error_r)
{
	unsigned char bytes[16];
	int fam = addr_bytes(addr, bytes);
	struct raw_answer r;
	raw_query(c, rev, ns_t_ptr, &r);
	enum dns_answer_status st = r.status;
	if (st == DNS_ANSWER_OK) {
		struct hostent *he = NULL;
		if (ares_parse_ptr_reply(r.abuf, r.alen, bytes, fam == AF_INET ? 4 : 16, fam, &he) ==
			    ARES_SUCCESS &&
		    he != NULL) {
			if (he->h_name != NULL)
				strlist_add_name(names, he->h_name);
			for (char **al = he->h_aliases; al && *al; al++)
				strlist_add_name(names, *al);
		}
		if (he != NULL)
			ares_free_hostent(he);
		if (names->n == 0)
			st = DNS_ANSWER_NODATA;
	} else if (st == DNS_ANSWER_TEMPFAIL) {
		*error_r = xstrdup(r.error ? r.error : "lookup failed");
	}
	raw_free(&r);
	return st;
}

/* ---- the configuration and its files -------------------------------------------------------- */

/* check_root_dir - a directory that must be root's ([tls] dir, dkim_dir): reached only
 * through root's directories and not open to others. 1 when it exists and is fine, 0 when
 * missing (nothing reported), -1 after reporting an error. */
static int check_root_dir(struct checker *c, const char *what, const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		report(c, L_ERROR, "config", "%s %s: %s", what, dir, strerror(errno));
		return -1;
	}
	if (geteuid() == 0) {
		char *why = NULL;
		int fd = fs_open_trusted(dir, O_PATH | O_DIRECTORY, &why);
		if (fd < 0) {
			report(c, L_ERROR, "config",
			       "%s %s: %s (it must be root's, reached only through root's "
			       "directories, and writable by no one else)",
			       what, dir, why);
			free(why);
			return -1;
		}
		close(fd);
	}
	if (!S_ISDIR(st.st_mode)) {
		report(c, L_ERROR, "config", "%s %s is not a directory", what, dir);
		return -1;
	}
	if ((st.st_mode & 077) != 0)
		report(c, L_WARN, "config", "%s %s has mode %04o: others may look in; chmod 700 %s",
		       what, dir, (unsigned)(st.st_mode & 07777), dir);
	else
		report(c, L_OK, "config", "%s %s: owner uid %ld, mode %04o", what, dir,
		       (long)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 1;
}

static void check_data_dir(struct checker *c)
{
	const struct tern_config *cfg = c->cfg;
	struct stat st;
	struct passwd *pw = cfg->user != NULL ? getpwnam(cfg->user) : NULL;
	if (cfg->user != NULL && pw == NULL)
		report(c, L_ERROR, "config", "user %s (the run user) does not exist", cfg->user);
	if (lstat(cfg->data_dir, &st) < 0) {
		if (errno == ENOENT)
			report(c, L_WARN, "config",
			       "data dir %s does not exist yet: tern serve makes it on its first start",
			       cfg->data_dir);
		else
			report(c, L_ERROR, "config", "data dir %s: %s", cfg->data_dir,
			       strerror(errno));
		return;
	}
	if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
		report(c, L_ERROR, "config", "data dir %s is %s", cfg->data_dir,
		       S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory");
		return;
	}
	if (pw != NULL && st.st_uid != pw->pw_uid) {
		report(c, L_ERROR, "config",
		       "data dir %s belongs to uid %ld, not to %s (the run user): chown -R %s %s",
		       cfg->data_dir, (long)st.st_uid, cfg->user, cfg->user, cfg->data_dir);
	} else if ((st.st_mode & 077) != 0) {
		report(c, L_WARN, "config", "data dir %s has mode %04o: mail is private; chmod 700 %s",
		       cfg->data_dir, (unsigned)(st.st_mode & 07777), cfg->data_dir);
	} else {
		report(c, L_OK, "config", "data dir %s: owner uid %ld, mode %04o", cfg->data_dir,
		       (long)st.st_uid, (unsigned)(st.st_mode & 07777));
	}
}

/* check_tls_files - the [tls] dir, the certificate and key: they load as the master loads
 * them, and the key is readable by its owner alone */
static void check_tls_files(struct checker *c)
{
	const struct tern_config *cfg = c->cfg;
	bool self = cfg->tls_cert == NULL;
	int d = check_root_dir(c, "[tls] dir", cfg->tls_dir);
	if (d < 0 && self)
		return;
	char *cert = self ? xasprintf("%s/cert.pem", cfg->tls_dir) : xstrdup(cfg->tls_cert);
	char *key = self ? xasprintf("%s/key.pem", cfg->tls_dir) : xstrdup(cfg->tls_key);
	char *why = NULL;
	int cfd = -1, kfd = -1;
	struct stat st;
	if (self && (d == 0 || (lstat(cert, &st) < 0 && errno == ENOENT))) {
		report(c, L_WARN, "tls",
		       "no certificate yet: tern serve makes a self-signed one in %s on its first "
		       "start (set [tls] cert and key to a CA-issued pair for real use)",
		       cfg->tls_dir);
		goto out;
	}
	if ((cfd = master_tls_open(cert, &why)) < 0) {
		report(c, geteuid() == 0 ? L_ERROR : L_WARN, "tls", "certificate: %s%s", why,
		       geteuid() == 0 ? "" : " (run tern check as root to check it)");
		goto out;
	}
	if ((kfd = master_tls_open(key, &why)) < 0) {
		report(c, geteuid() == 0 ? L_ERROR : L_WARN, "tls", "key: %s%s", why,
		       geteuid() == 0 ? "" : " (run tern check as root to check it)");
		goto out;
	}
	if (fstat(kfd, &st) == 0 && (st.st_mode & 077) != 0)
		report(c, L_ERROR, "tls", "key %s has mode %04o: others may read it; chmod 600 %s",
		       key, (unsigned)(st.st_mode & 07777), key);
	c->tls = tls_server_ctx_fd(cfd, cert, kfd, key, &why);
	if (c->tls == NULL) {
		report(c, L_ERROR, "tls", "%s", why);
		goto out;
	}
	c->cert = SSL_CTX_get0_certificate(c->tls);
	report(c, L_OK, "tls", "certificate %s and key %s load and match", cert, key);
out:
	if (cfd >= 0)
		close(cfd);
	if (kfd >= 0)
		close(kfd);
	free(why);
	free(cert);
	free(key);
}

static void check_dkim_dir(struct checker *c)
{
	const char *dir = c->cfg->dkim_dir;
	int d = check_root_dir(c, "dkim_dir", dir);
	if (d < 0)
		return;
	char *err = NULL;
	if (dkim_keyring_load(dir, &c->ring, &err) < 0) {
		report(c, geteuid() == 0 ? L_ERROR : L_WARN, "config", "DKIM keys: %s%s", err,
		       geteuid() == 0 ? "" : " (run tern check as root to read them)");
		free(err);
		c->ring = NULL;
	}
}

/* ---- the certificate ------------------------------------------------------------------------ */

/* cert_dns_names - the certificate's subjectAltName DNS names, ", "-separated; caller frees */
static char *cert_dns_names(X509 *cert)
{
	buf b;
	buf_init(&b, 0);
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		if (g->type != GEN_DNS)
			continue;
		const unsigned char *s = ASN1_STRING_get0_data(g->d.dNSName);
		int len = ASN1_STRING_length(g->d.dNSName);
		buf_printf(&b, "%s%.*s", b.len ? ", " : "", len, (const char *)s);
	}
	GENERAL_NAMES_free(names);
	char *out = xstrdup(b.len ? buf_cstr(&b) : "no DNS names");
	buf_free(&b);
	return out;
}

/* check_cert_name - the certificate names name (subjectAltName, wildcards as RFC 6125) */
static void check_cert_name(struct checker *c, const char *name, enum level missing,
			    const char *why)
{
	if (c->cert == NULL)
		return;
	if (X509_check_host(c->cert, name, 0, 0, NULL) == 1) {
		report(c, L_OK, "tls", "the certificate names %s", name);
	} else {
		char *names = cert_dns_names(c->cert);
		report(c, missing, "tls", "the certificate does not name %s (it names: %s)%s", name,
		       names, why);
		free(names);
	}
}

static void check_cert(struct checker *c)
{
	if (c->cert == NULL)
		return;
	check_cert_name(c, c->cfg->hostname, L_ERROR,
			": clients and MTA-STS senders check it; get one that does");
	char when[64] = "?";
	struct tm tm;
	const ASN1_TIME *na = X509_get0_notAfter(c->cert);
	if (ASN1_TIME_to_tm(na, &tm) == 1)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	int days = 0, secs = 0;
	if (X509_cmp_current_time(X509_get0_notBefore(c->cert)) > 0)
		report(c, L_ERROR, "tls", "the certificate is not valid yet (check the clock)");
	if (ASN1_TIME_diff(&days, &secs, NULL, na) != 1 || days < 0 || secs < 0 ||
	    X509_cmp_current_time(na) <= 0)
		report(c, L_ERROR, "tls", "the certificate expired on %s: renew it", when);
	else if (days < EXPIRY_WARN_DAYS)
		report(c, L_WARN, "tls", "the certificate expires in %d day(s), on %s: renew it",
		       days, when);
	else
		report(c, L_OK, "tls", "the certificate is valid until %s (%d days)", when, days);

	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *x = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = NULL;
	SSL_CTX_get0_chain_certs(c->tls, &chain);
	if (store == NULL || x == NULL || X509_STORE_set_default_paths(store) != 1 ||
	    X509_STORE_CTX_init(x, store, c->cert, chain) != 1) {
		report(c, L_ERROR, "tls", "cannot set up certificate verification");
	} else if (X509_verify_cert(x) == 1) {
		report(c, L_OK, "tls", "the certificate chain verifies against the system's CAs");
	} else {
		int e = X509_STORE_CTX_get_error(x);
		if (e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
			report(c, L_WARN, "tls",
			       "the certificate is self-signed: mail clients refuse it and senders "
			       "that enforce MTA-STS will not deliver; get one for %s from a CA (e.g. Let's "
			       "Encrypt with certbot) and set [tls] cert and key",
			       c->cfg->hostname);
		else
			report(c, L_ERROR, "tls",
			       "the certificate chain does not verify against the system's CAs: %s "
			       "(is the intermediate certificate missing after the leaf in the "
			       "certificate file?)",
			       X509_verify_cert_error_string(e));
	}
	X509_STORE_CTX_free(x);
	X509_STORE_free(store);
}

/* ---- the host name: addresses and reverse DNS ----------------------------------------------- */

/* listening_on - addr is one of the addresses this server listens on */
static bool listening_on(const struct checker *c, const char *addr)
{
	for (size_t j = 0; j < c->listen.n; j++)
		if (same_addr(c->listen.v[j], addr))
			return true;
	return false;
}

/* suggested_address - an address to put in a record we suggest */
static const char *suggested_address(struct checker *c)
{
	for (size_t i = 0; i < c->listen.n; i++)
		if (!is_private(c->listen.v[i]) || c->private_ok)
			return c->listen.v[i];
	return "<this server's public address>";
}

static void check_ptr(struct checker *c, const char *addr)
{
	const char *host = c->cfg->hostname;
	unsigned char bytes[16];
	int fam;
	char *rev = reverse_name(addr, bytes, &fam);
	if (rev == NULL)
		return;
	struct strlist names = { 0 };
	char *err = NULL;
	enum dns_answer_status st = lookup_ptr(c, addr, rev, &names, &err);
	if (st == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, host, "PTR of %s: lookup failed: %s", addr, err);
	} else if (st != DNS_ANSWER_OK) {
		report(c, L_ERROR, host,
		       "PTR of %s missing: ask whoever runs the address (the hosting provider) to "
		       "publish  %s. PTR %s.",
		       addr, rev, host);
	} else {
		/* forward-confirmed: a PTR name whose addresses include addr; for host itself
		 * they were looked up already */
		bool named = false;
		const char *confirmed = NULL;
		for (size_t i = 0; i < names.n && !named; i++) {
			if (same_name(names.v[i], host)) {
				named = true;
				for (size_t j = 0; j < c->host_addrs.n; j++)
					if (same_addr(c->host_addrs.v[j], addr))
						confirmed = names.v[i];
			}
		}
		buf all;
		buf_init(&all, 0);
		for (size_t i = 0; i < names.n; i++)
			buf_printf(&all, "%s%s", i ? ", " : "", names.v[i]);
		if (named && confirmed != NULL)
			report(c, L_OK, host, "PTR of %s is %s, which resolves back to %s (FCrDNS)",
			       addr, host, addr);
		else
			report(c, L_ERROR, host,
			       "PTR of %s is %s, not %s: other servers compare it with our HELO name; "
			       "ask whoever runs the address to publish  %s. PTR %s.",
			       addr, buf_cstr(&all), host, rev, host);
		buf_free(&all);
	}
	free(err);
	strlist_free(&names);
	free(rev);
}

static void check_host(struct checker *c)
{
	const struct tern_config *cfg = c->cfg;
	const char *host = cfg->hostname;
	const struct listen_spec *smtp = &cfg->listen[ROLE_SMTP];
	if (!smtp->enabled) {
		report(c, L_WARN, host,
		       "no [listen] smtp: mail from other servers (the MX role) cannot arrive");
	} else {
		unsigned port = smtp->addr.ss_family == AF_INET6
					? ntohs(((const struct sockaddr_in6 *)&smtp->addr)->sin6_port)
					: ntohs(((const struct sockaddr_in *)&smtp->addr)->sin_port);
		if (port != 25 && !c->private_ok)
			report(c, L_WARN, host,
			       "[listen] smtp is on port %u: other mail servers connect to port 25",
			       port);
	}
	char *err = NULL;
	enum dns_answer_status st = lookup_addrs(c, host, &c->host_addrs, &err);
	if (st == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, host, "A/AAAA lookup failed: %s", err);
		free(err);
		return;
	}
	free(err);
	if (c->host_addrs.n == 0) {
		const char *a = suggested_address(c);
		report(c, L_ERROR, host, "no A or AAAA record: publish  %s. %s %s", host,
		       strchr(a, ':') ? "AAAA" : "A", a);
		return;
	}
	for (size_t i = 0; i < c->host_addrs.n; i++) {
		const char *a = c->host_addrs.v[i];
		if (!listening_on(c, a))
			report(c, L_ERROR, host,
			       "has address %s, which this server does not listen on (it listens on "
			       "%zu address(es)%s%s): fix the record or [listen]",
			       a, c->listen.n, c->listen.n ? ", e.g. " : "",
			       c->listen.n ? c->listen.v[0] : "");
		else if (is_private(a) && !c->private_ok)
			report(c, L_WARN, host,
			       "has address %s, a private or loopback address other mail servers "
			       "cannot reach",
			       a);
		else
			report(c, L_OK, host, "has address %s, which this server listens on", a);
	}
	for (size_t i = 0; i < c->host_addrs.n; i++)
		check_ptr(c, c->host_addrs.v[i]);
}

/* ---- one domain ------------------------------------------------------------------------------ */

static bool check_mx(struct checker *c, const char *dom)
{
	const char *host = c->cfg->hostname;
	struct raw_answer r;
	raw_query(c, dom, ns_t_mx, &r);
	bool here = false;
	if (r.status == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, dom, "MX lookup failed: %s", r.error ? r.error : "");
	} else if (r.status != DNS_ANSWER_OK) {
		report(c, L_ERROR, dom, "MX %s: publish  %s. MX 10 %s.",
		       r.status == DNS_ANSWER_NXDOMAIN ? "missing (the domain does not exist)"
						       : "missing",
		       dom, host);
	} else {
		struct ares_mx_reply *mx = NULL;
		if (ares_parse_mx_reply(r.abuf, r.alen, &mx) != ARES_SUCCESS) {
			report(c, L_ERROR, dom, "MX answer malformed");
		} else {
			buf others;
			buf_init(&others, 0);
			unsigned pref = 0;
			bool null_mx = false;
			for (struct ares_mx_reply *p = mx; p; p = p->next) {
				if (same_name(p->host, host)) {
					here = true;
					pref = p->priority;
				} else {
					null_mx |= p->host[0] == '\0' || !strcmp(p->host, ".");
					buf_printf(&others, "%s%u %s", others.len ? ", " : "",
						   p->priority, p->host[0] ? p->host : ".");
				}
			}
			if (here)
				report(c, L_OK, dom, "MX %u %s points here%s%s%s", pref, host,
				       others.len ? " (also: " : "", buf_cstr(&others),
				       others.len ? ")" : "");
			else
				report(c, L_ERROR, dom, "MX %s (%s), not to %s: publish  %s. MX 10 %s.",
				       null_mx ? "says the domain takes no mail"
					       : "points elsewhere",
				       buf_cstr(&others), host, dom, host);
			buf_free(&others);
			ares_free_data(mx);
		}
	}
	raw_free(&r);
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
	int fam = addr_bytes(addr, bytes);
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
	run_until(c, &w.done);
	free(sender);
	*problem_r = w.problem;
	return w.result;
}

static void check_spf(struct checker *c, const char *dom)
{
	char *want = xasprintf("publish  %s. TXT \"v=spf1 mx -all\"", dom);
	struct txt_answer t;
	const char *rec;
	size_t n = records_of_kind(c, dom, spf_record_is_spf, &t, &rec);
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, dom, "SPF lookup failed: %s", t.error ? t.error : "");
	} else if (n == 0) {
		report(c, L_ERROR, dom, "SPF missing: %s", want);
	} else if (n > 1) {
		report(c, L_ERROR, dom,
		       "SPF: %zu records (a permerror for every receiver, RFC 7208 §4.5): keep one: %s",
		       n, want);
	} else {
		struct spf_record parsed;
		char *err = NULL;
		char *s = shown(rec);
		if (spf_record_parse(rec, &parsed, &err) < 0) {
			report(c, L_ERROR, dom, "SPF %s is invalid (%s): %s", s, err, want);
			free(err);
		} else {
			spf_record_free(&parsed);
			bool all_pass = true;
			for (size_t i = 0; i < c->host_addrs.n; i++) {
				char *problem = NULL;
				enum spf_result r = spf_for(c, dom, c->host_addrs.v[i], &problem);
				if (r != SPF_PASS) {
					all_pass = false;
					report(c, L_ERROR, dom,
					       "SPF %s gives %s for %s, this server's address%s%s%s: %s",
					       s, spf_result_name(r), c->host_addrs.v[i],
					       problem ? " (" : "", problem ? problem : "",
					       problem ? ")" : "", want);
				}
				free(problem);
			}
			if (all_pass && c->host_addrs.n > 0)
				report(c, L_OK, dom, "SPF %s authorises this server's address(es)", s);
			else if (c->host_addrs.n == 0)
				report(c, L_WARN, dom,
				       "SPF %s parses, but %s has no address to check it with", s,
				       c->cfg->hostname);
		}
		free(s);
	}
	txt_free(&t);
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
		enum level bad = used ? L_ERROR : L_WARN;
		const char *note = used ? "" : " (an older key, not used for signing)";
		struct txt_answer t;
		txt_query(c, name, &t);
		if (t.status == DNS_ANSWER_TEMPFAIL)
			report(c, L_ERROR, dom, "DKIM %s: lookup failed: %s", name,
			       t.error ? t.error : "");
		else if (t.status != DNS_ANSWER_OK)
			report(c, bad, dom, "DKIM %s missing%s: publish  %s", name, note, line);
		else if (dkim_key_published(k, (const char *const *)t.txts.v, t.txts.n))
			report(c, L_OK, dom, "DKIM %s publishes our %s key", name, type);
		else
			report(c, bad, dom,
			       "DKIM %s differs from our %s key%s (another p=, or not a valid key "
			       "record): publish  %s",
			       name, type, note, line);
		txt_free(&t);
		free(line);
		free(name);
	}
	if (found == 0)
		report(c, L_WARN, dom,
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
	struct txt_answer t;
	const char *rec;
	size_t n = records_of_kind(c, name, is_dmarc, &t, &rec);
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, dom, "DMARC lookup failed: %s", t.error ? t.error : "");
	} else if (n == 0) {
		report(c, L_ERROR, dom, "DMARC missing: %s", want);
	} else if (n > 1) {
		report(c, L_ERROR, dom, "DMARC: %zu records at %s (receivers ignore them all): keep "
					"one: %s",
		       n, name, want);
	} else {
		struct dmarc_record r;
		char *err = NULL;
		char *s = shown(rec);
		if (dmarc_record_parse(rec, &r, &err) < 0)
			report(c, L_ERROR, dom, "DMARC %s is invalid (%s): %s", s, err, want);
		else if (r.p == DMARC_POLICY_NONE)
			report(c, L_WARN, dom,
			       "DMARC %s: p=none only monitors; once reports look right, %s", s,
			       want);
		else
			report(c, L_OK, dom, "DMARC %s: p=%s", s, dmarc_policy_name(r.p));
		free(err);
		free(s);
	}
	txt_free(&t);
	free(want);
	free(name);
}

/* check_policy_host - a host name the domain publishes for HTTPS (mta-sts., autoconfig.):
 * when it leads to this server, the certificate must name it; another server's certificate
 * is not ours to check. Returns whether the name has addresses. */
static bool check_policy_host(struct checker *c, const char *dom, const char *name,
			      enum level cert_level, const char *why)
{
	struct strlist addrs = { 0 };
	char *err = NULL;
	enum dns_answer_status st = lookup_addrs(c, name, &addrs, &err);
	bool ours = false;
	for (size_t i = 0; i < addrs.n && !ours; i++)
		ours = listening_on(c, addrs.v[i]);
	if (st == DNS_ANSWER_OK && ours)
		check_cert_name(c, name, cert_level, why);
	else if (st == DNS_ANSWER_OK)
		report(c, L_OK, dom, "%s leads to another server (%s): its certificate is not "
				     "checked here",
		       name, addrs.v[0]);
	free(err);
	strlist_free(&addrs);
	return st == DNS_ANSWER_OK;
}

/* check_one_record - the single record of a kind at name: count those is_rec keeps, check
 * that one with check; missing is a warning (optional records), the rest errors */
static void check_one_record(struct checker *c, const char *dom, const char *kind,
			     const char *name, const char *want, bool (*is_rec)(const char *),
			     int (*check)(const char *, const char **), bool *present_r)
{
	struct txt_answer t;
	const char *rec;
	size_t n = records_of_kind(c, name, is_rec, &t, &rec);
	*present_r = false;
	if (t.status == DNS_ANSWER_TEMPFAIL) {
		report(c, L_ERROR, dom, "%s lookup failed: %s", kind, t.error ? t.error : "");
	} else if (n == 0) {
		report(c, L_WARN, dom, "%s not published: publish  %s", kind, want);
	} else if (n > 1) {
		report(c, L_ERROR, dom, "%s: %zu records at %s (senders then ignore them all): keep "
					"one: publish  %s",
		       kind, n, name, want);
	} else {
		const char *err = NULL;
		char *s = shown(rec);
		if (check(rec, &err) < 0) {
			report(c, L_ERROR, dom, "%s %s is invalid (%s): publish  %s", kind, s, err,
			       want);
		} else {
			report(c, L_OK, dom, "%s %s", kind, s);
			*present_r = true;
		}
		free(s);
	}
	txt_free(&t);
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
	bool has_host = check_policy_host(c, dom, policy_host, L_ERROR,
					  ": senders fetch the MTA-STS policy over HTTPS from it");
	if (present && !has_host)
		report(c, L_ERROR, dom,
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
	check_policy_host(c, dom, autoconf, L_WARN,
			  ": mail clients that look for their settings there will refuse it");
	free(autoconf);
}

static void check_domain(struct checker *c, const char *dom)
{
	if (!config_is_local_domain(c->cfg, dom))
		report(c, L_ERROR, dom, "is not one of the configured domains");
	check_mx(c, dom);
	check_spf(c, dom);
	check_dkim(c, dom);
	check_dmarc(c, dom);
	check_mtasts_tlsrpt(c, dom);
}

/* ---- the command ----------------------------------------------------------------------------- */

int cmd_check(int argc, char **argv)
{
	const char *conf = NULL, *only = NULL;
	bool private_ok = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(help_text, stdout);
			return 0;
		}
		if (!strcmp(a, "--private-ok")) {
			private_ok = true;
		} else if (!strcmp(a, "-c")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tern: check: -c needs a file\n%s", help_text);
				return EX_USAGE;
			}
			conf = argv[++i];
		} else if (a[0] == '-' || only != NULL) {
			fprintf(stderr, "tern: check: unexpected argument '%s'\n%s", a, help_text);
			return EX_USAGE;
		} else {
			only = a;
		}
	}
	struct checker c = { .private_ok = private_ok };
	char *err = NULL;
	struct tern_config *cfg = conf != NULL ? config_load(conf, &err) : config_dev();
	if (cfg == NULL) {
		report(&c, L_ERROR, "config", "%s", err);
		free(err);
		return 2;
	}
	if (conf == NULL)
		cli_dev_place_data(cfg, false);	/* where `tern serve` keeps it */
	c.cfg = cfg;
	report(&c, L_OK, "config", "%s loads: hostname %s, %zu domain(s)",
	       cfg->path ? cfg->path : "the development configuration", cfg->hostname,
	       cfg->n_domains);
	tls_init();
	check_data_dir(&c);
	check_tls_files(&c);
	check_dkim_dir(&c);
	check_cert(&c);

	char **listen = NULL;
	c.listen.n = master_listen_addresses(cfg, &listen);
	c.listen.v = listen;
	c.base = event_base_new();
	if (c.base == NULL || dns_init(c.base, cfg->dns_servers, &c.dns, &err) < 0) {
		report(&c, L_ERROR, "dns", "cannot set up the resolver: %s", err ? err : "libevent");
		free(err);
	} else {
		check_host(&c);
		if (only != NULL) {
			check_domain(&c, only);
		} else {
			for (size_t i = 0; i < cfg->n_domains; i++)
				check_domain(&c, cfg->domains[i]);
		}
	}
	printf("%u ok, %u warning(s), %u error(s)\n", c.count[L_OK], c.count[L_WARN],
	       c.count[L_ERROR]);
	dns_free(&c.dns);
	if (c.base != NULL)
		event_base_free(c.base);
	strlist_free(&c.listen);
	strlist_free(&c.host_addrs);
	dkim_keyring_free(&c.ring);
	SSL_CTX_free(c.tls);
	config_free(&cfg);
	return c.worst == L_OK ? 0 : c.worst == L_WARN ? 1 : 2;
}
