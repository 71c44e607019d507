/* cmd_check - tern check [DOMAIN]: the command, the configuration, its files and the
 * certificate (the DNS checks are in check_dns.c; see cmd_check.h and check_private.h) */
#include "cli/cmd_check.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/check_private.h"
#include "cli/devdata.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"
#include "server/master.h"

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
		check_report(c, CHECK_ERROR, "config", "%s %s: %s", what, dir, strerror(errno));
		return -1;
	}
	if (geteuid() == 0) {
		char *why = NULL;
		int fd = fs_open_trusted(dir, O_PATH | O_DIRECTORY, &why);
		if (fd < 0) {
			check_report(c, CHECK_ERROR, "config",
			       "%s %s: %s (it must be root's, reached only through root's "
			       "directories, and writable by no one else)",
			       what, dir, why);
			free(why);
			return -1;
		}
		close(fd);
	}
	if (!S_ISDIR(st.st_mode)) {
		check_report(c, CHECK_ERROR, "config", "%s %s is not a directory", what, dir);
		return -1;
	}
	if ((st.st_mode & 077) != 0)
		check_report(c, CHECK_WARN, "config", "%s %s has mode %04o: others may look in; chmod 700 %s",
		       what, dir, (unsigned)(st.st_mode & 07777), dir);
	else
		check_report(c, CHECK_OK, "config", "%s %s: owner uid %ld, mode %04o", what, dir,
		       (long)st.st_uid, (unsigned)(st.st_mode & 07777));
	return 1;
}

static void check_data_dir(struct checker *c)
{
	const struct tern_config *cfg = c->cfg;
	struct stat st;
	struct passwd *pw = cfg->user != NULL ? getpwnam(cfg->user) : NULL;
	if (cfg->user != NULL && pw == NULL)
		check_report(c, CHECK_ERROR, "config", "user %s (the run user) does not exist", cfg->user);
	if (lstat(cfg->data_dir, &st) < 0) {
		if (errno == ENOENT)
			check_report(c, CHECK_WARN, "config",
			       "data dir %s does not exist yet: tern serve makes it on its first start",
			       cfg->data_dir);
		else
			check_report(c, CHECK_ERROR, "config", "data dir %s: %s", cfg->data_dir,
			       strerror(errno));
		return;
	}
	if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
		check_report(c, CHECK_ERROR, "config", "data dir %s is %s", cfg->data_dir,
		       S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory");
		return;
	}
	if (pw != NULL && st.st_uid != pw->pw_uid) {
		check_report(c, CHECK_ERROR, "config",
		       "data dir %s belongs to uid %ld, not to %s (the run user): chown -R %s %s",
		       cfg->data_dir, (long)st.st_uid, cfg->user, cfg->user, cfg->data_dir);
	} else if ((st.st_mode & 077) != 0) {
		check_report(c, CHECK_WARN, "config", "data dir %s has mode %04o: mail is private; chmod 700 %s",
		       cfg->data_dir, (unsigned)(st.st_mode & 07777), cfg->data_dir);
	} else {
		check_report(c, CHECK_OK, "config", "data dir %s: owner uid %ld, mode %04o", cfg->data_dir,
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
		check_report(c, CHECK_WARN, "tls",
		       "no certificate yet: tern serve makes a self-signed one in %s on its first "
		       "start (set [tls] cert and key to a CA-issued pair for real use)",
		       cfg->tls_dir);
		goto out;
	}
	if ((cfd = master_tls_open(cert, &why)) < 0) {
		check_report(c, geteuid() == 0 ? CHECK_ERROR : CHECK_WARN, "tls", "certificate: %s%s", why,
		       geteuid() == 0 ? "" : " (run tern check as root to check it)");
		goto out;
	}
	if ((kfd = master_tls_open(key, &why)) < 0) {
		check_report(c, geteuid() == 0 ? CHECK_ERROR : CHECK_WARN, "tls", "key: %s%s", why,
		       geteuid() == 0 ? "" : " (run tern check as root to check it)");
		goto out;
	}
	if (fstat(kfd, &st) == 0 && (st.st_mode & 077) != 0)
		check_report(c, CHECK_ERROR, "tls", "key %s has mode %04o: others may read it; chmod 600 %s",
		       key, (unsigned)(st.st_mode & 07777), key);
	c->tls = tls_server_ctx_fd(cfd, cert, kfd, key, &why);
	if (c->tls == NULL) {
		check_report(c, CHECK_ERROR, "tls", "%s", why);
		goto out;
	}
	c->cert = SSL_CTX_get0_certificate(c->tls);
	check_report(c, CHECK_OK, "tls", "certificate %s and key %s load and match", cert, key);
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
		check_report(c, geteuid() == 0 ? CHECK_ERROR : CHECK_WARN, "config", "DKIM keys: %s%s", err,
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
void check_cert_name(struct checker *c, const char *name, enum check_level missing,
			    const char *why)
{
	if (c->cert == NULL)
		return;
	if (X509_check_host(c->cert, name, 0, 0, NULL) == 1) {
		check_report(c, CHECK_OK, "tls", "the certificate names %s", name);
	} else {
		char *names = cert_dns_names(c->cert);
		check_report(c, missing, "tls", "the certificate does not name %s (it names: %s)%s", name,
		       names, why);
		free(names);
	}
}

static void check_cert(struct checker *c)
{
	if (c->cert == NULL)
		return;
	check_cert_name(c, c->cfg->hostname, CHECK_ERROR,
			": clients and MTA-STS senders check it; get one that does");
	char when[64] = "?";
	struct tm tm;
	const ASN1_TIME *na = X509_get0_notAfter(c->cert);
	if (ASN1_TIME_to_tm(na, &tm) == 1)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	int days = 0, secs = 0;
	if (X509_cmp_current_time(X509_get0_notBefore(c->cert)) > 0)
		check_report(c, CHECK_ERROR, "tls", "the certificate is not valid yet (check the clock)");
	if (ASN1_TIME_diff(&days, &secs, NULL, na) != 1 || days < 0 || secs < 0 ||
	    X509_cmp_current_time(na) <= 0)
		check_report(c, CHECK_ERROR, "tls", "the certificate expired on %s: renew it", when);
	else if (days < EXPIRY_WARN_DAYS)
		check_report(c, CHECK_WARN, "tls", "the certificate expires in %d day(s), on %s: renew it",
		       days, when);
	else
		check_report(c, CHECK_OK, "tls", "the certificate is valid until %s (%d days)", when, days);

	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *x = X509_STORE_CTX_new();
	STACK_OF(X509) *chain = NULL;
	SSL_CTX_get0_chain_certs(c->tls, &chain);
	if (store == NULL || x == NULL || X509_STORE_set_default_paths(store) != 1 ||
	    X509_STORE_CTX_init(x, store, c->cert, chain) != 1) {
		check_report(c, CHECK_ERROR, "tls", "cannot set up certificate verification");
	} else if (X509_verify_cert(x) == 1) {
		check_report(c, CHECK_OK, "tls", "the certificate chain verifies against the system's CAs");
	} else {
		int e = X509_STORE_CTX_get_error(x);
		if (e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT)
			check_report(c, CHECK_WARN, "tls",
			       "the certificate is self-signed: mail clients refuse it and senders "
			       "that enforce MTA-STS will not deliver; get one for %s from a CA (e.g. Let's "
			       "Encrypt with certbot) and set [tls] cert and key",
			       c->cfg->hostname);
		else
			check_report(c, CHECK_ERROR, "tls",
			       "the certificate chain does not verify against the system's CAs: %s "
			       "(is the intermediate certificate missing after the leaf in the "
			       "certificate file?)",
			       X509_verify_cert_error_string(e));
	}
	X509_STORE_CTX_free(x);
	X509_STORE_free(store);
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
		check_report(&c, CHECK_ERROR, "config", "%s", err);
		free(err);
		return 2;
	}
	if (conf == NULL)
		cli_dev_place_data(cfg, false);	/* where `tern serve` keeps it */
	c.cfg = cfg;
	check_report(&c, CHECK_OK, "config", "%s loads: hostname %s, %zu domain(s)",
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
		check_report(&c, CHECK_ERROR, "dns", "cannot set up the resolver: %s", err ? err : "libevent");
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
	printf("%u ok, %u warning(s), %u error(s)\n", c.count[CHECK_OK], c.count[CHECK_WARN],
	       c.count[CHECK_ERROR]);
	dns_free(&c.dns);
	if (c.base != NULL)
		event_base_free(c.base);
	check_list_free(&c.listen);
	check_list_free(&c.host_addrs);
	dkim_keyring_free(&c.ring);
	SSL_CTX_free(c.tls);
	config_free(&cfg);
	return c.worst == CHECK_OK ? 0 : c.worst == CHECK_WARN ? 1 : 2;
}
