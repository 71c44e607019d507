/* cmd_dkim - tern dkim generate|list|check */
#include "cli/cmd_dkim.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "dkim/dkim.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "outbound/dns.h"

#define EX_USAGE 64

static const char help_text[] =
	"usage: tern dkim generate DOMAIN [--selector NAME] [--algorithm ed25519|rsa|both] [-c FILE]\n"
	"       tern dkim list [-c FILE]\n"
	"       tern dkim check DOMAIN [-c FILE]\n"
	"       tern dkim verify [-c FILE] < message\n"
	"       tern dkim arc-verify [-c FILE] < message\n"
	"       tern dkim arc-seal DOMAIN --authserv-id ID --results TEXT [--cv none|pass|fail]\n"
	"                          [-c FILE] < message\n"
	"\n"
	"generate  make signing keys for DOMAIN in dkim_dir (root-only) and print the DNS TXT\n"
	"          records to publish. Default: both algorithms (RSA 2048 and Ed25519: every\n"
	"          message gets two signatures), selectors tern-YYYYMM-rsa and tern-YYYYMM-ed.\n"
	"          --selector NAME: NAME-rsa and NAME-ed, or NAME itself for one algorithm.\n"
	"          The server signs with the newest selector of each type after SIGHUP or a restart.\n"
	"list      every domain, selector and record in dkim_dir\n"
	"check     look DOMAIN's records up in the DNS and say whether they match the keys\n"
	"verify    check the DKIM signatures of the message on standard input, one line each\n"
	"          (as Authentication-Results words); exit 0 when at least one passes\n"
	"arc-verify  validate the message's ARC chain: arc=none|pass|fail; exit 0 on pass\n"
	"arc-seal  print the ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results)\n"
	"          DOMAIN's newest key would add to the message, with cv= as given (default: the\n"
	"          result of validating it)\n";

/* print_record - "sel._domainkey.domain. IN TXT "..." "..."", 255-byte strings */
static void print_record(const struct dkim_key *k)
{
	char *line = dkim_key_zone_line(k);
	printf("%s\n", line);
	free(line);
}

static struct tern_config *load(const char *path)
{
	char *err = NULL;
	struct tern_config *c = path ? config_load(path, &err) : config_dev();
	if (c == NULL) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
	}
	return c;
}

static int dkim_generate(struct tern_config *cfg, const char *domain, const char *selector,
			 const char *alg)
{
	bool rsa = !strcmp(alg, "rsa") || !strcmp(alg, "both");
	bool ed = !strcmp(alg, "ed25519") || !strcmp(alg, "both");
	if (!rsa && !ed) {
		fprintf(stderr, "tern: dkim generate: --algorithm is ed25519, rsa or both\n");
		return EX_USAGE;
	}
	char base[64], sel_rsa[128], sel_ed[128];
	if (selector == NULL) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(base, sizeof(base), "tern-%Y%m", &tm);
	} else {
		snprintf(base, sizeof(base), "%s", selector);
	}
	bool suffix = selector == NULL || (rsa && ed);
	snprintf(sel_rsa, sizeof(sel_rsa), "%s%s", base, suffix ? "-rsa" : "");
	snprintf(sel_ed, sizeof(sel_ed), "%s%s", base, suffix ? "-ed" : "");
	struct dkim_key *keys[2] = { NULL, NULL };
	char *err = NULL;
	int rc = 0;
	if (rsa && dkim_key_generate(cfg->dkim_dir, domain, sel_rsa, DKIM_KEYTYPE_RSA, &keys[0],
				     &err) < 0)
		rc = 1;
	if (rc == 0 && ed &&
	    dkim_key_generate(cfg->dkim_dir, domain, sel_ed, DKIM_KEYTYPE_ED25519, &keys[1], &err) < 0)
		rc = 1;
	if (rc != 0) {
		fprintf(stderr, "tern: dkim generate: %s\n", err);
		free(err);
	}
	if (keys[0] || keys[1]) {
		printf("; keys in %s/%s/ (root only). Publish these DNS records, then send tern serve\n"
		       "; SIGHUP: it signs with the newest selector of each type.\n",
		       cfg->dkim_dir, keys[0] ? keys[0]->domain : keys[1]->domain);
	}
	for (int i = 0; i < 2; i++) {
		if (keys[i] != NULL)
			print_record(keys[i]);
		dkim_key_free(&keys[i]);
	}
	return rc;
}

static int dkim_list(struct tern_config *cfg)
{
	struct dkim_keyring *ring = NULL;
	char *err = NULL;
	if (dkim_keyring_load(cfg->dkim_dir, &ring, &err) < 0) {
		fprintf(stderr, "tern: dkim list: %s\n", err);
		free(err);
		return 1;
	}
	if (ring->n == 0)
		printf("; no keys in %s\n", cfg->dkim_dir);
	for (size_t i = 0; i < ring->n; i++) {
		const struct dkim_key *k = &ring->keys[i];
		const struct dkim_key *pick[2];
		size_t n = dkim_keyring_pick(ring, k->domain, pick, 2);
		bool used = false;
		for (size_t j = 0; j < n; j++)
			used |= pick[j] == k;
		printf("; %s %s %s%s\n", k->domain, k->selector,
		       k->type == DKIM_KEYTYPE_RSA ? "rsa" : "ed25519", used ? " (signing)" : "");
		print_record(k);
	}
	dkim_keyring_free(&ring);
	return 0;
}

/* ---- check: our records against the DNS, on a private loop -------------------------------- */

struct check {
	const struct dkim_key *k;
	int *bad;
	int *pending;
	struct event_base *base;
};

static void on_txt(void *ctx, const struct dns_txt_result *r)
{
	struct check *c = ctx;
	const char *name = c->k->selector;
	bool ok = false;
	if (r->status == DNS_ANSWER_OK) {
		ok = dkim_key_published(c->k, (const char *const *)r->txts, r->n);
		printf("%s %s._domainkey.%s: %s\n", ok ? "ok" : "MISMATCH", name, c->k->domain,
		       ok ? "the published key matches" : "the published record differs from the key");
		if (!ok)
			for (size_t i = 0; i < r->n; i++)
				printf("    published: %s\n", r->txts[i]);
	} else {
		printf("MISSING %s._domainkey.%s: %s\n", name, c->k->domain,
		       r->status == DNS_ANSWER_TEMPFAIL ? (r->error ? r->error : "lookup failed")
							: "no TXT record");
	}
	if (!ok) {
		printf("    publish: ");
		print_record(c->k);
		(*c->bad)++;
	}
	if (--*c->pending == 0)
		event_base_loopbreak(c->base);
}

static int dkim_check(struct tern_config *cfg, const char *domain)
{
	struct dkim_keyring *ring = NULL;
	char *err = NULL;
	if (dkim_keyring_load(cfg->dkim_dir, &ring, &err) < 0) {
		fprintf(stderr, "tern: dkim check: %s\n", err);
		free(err);
		return 1;
	}
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	if (dns_init(base, cfg->dns_servers, &d, &err) < 0) {
		fprintf(stderr, "tern: dkim check: %s\n", err);
		free(err);
		event_base_free(base);
		dkim_keyring_free(&ring);
		return 1;
	}
	int bad = 0, pending = 0;
	struct check *checks = xcalloc(ring->n ? ring->n : 1, sizeof(*checks));
	for (size_t i = 0; i < ring->n; i++)
		if (strcasecmp(ring->keys[i].domain, domain) == 0)
			pending++;
	int total = pending;
	for (size_t i = 0; i < ring->n; i++) {
		const struct dkim_key *k = &ring->keys[i];
		if (strcasecmp(k->domain, domain) != 0)
			continue;
		struct check *c = &checks[i];
		*c = (struct check){ .k = k, .bad = &bad,
				     .pending = &pending, .base = base };
		char *name = xasprintf("%s._domainkey.%s", k->selector, k->domain);
		dns_lookup_txt(d, name, on_txt, c);
		free(name);
	}
	if (total == 0) {
		fprintf(stderr, "tern: dkim check: no keys for %s in %s\n", domain, cfg->dkim_dir);
		bad = 1;
	} else {
		event_base_dispatch(base);
	}
	dns_free(&d);
	event_base_free(base);
	free(checks);
	dkim_keyring_free(&ring);
	return bad ? 1 : 0;
}

/* ---- verify: a message on stdin ---------------------------------------------------------- */

struct verify_run {
	struct event_base *base;
	int passed;
	bool done;
};

static void on_verified(void *ctx, const struct dkim_verify_result *r)
{
	struct verify_run *v = ctx;
	if (r->n == 0)
		printf("dkim=none\n");
	for (size_t i = 0; i < r->n; i++) {
		const struct dkim_sig_result *s = &r->sigs[i];
		printf("dkim=%s header.d=%s header.s=%s header.a=%s header.b=%s%s%s%s\n", s->result,
		       s->domain ? s->domain : "-", s->selector ? s->selector : "-",
		       s->algorithm ? s->algorithm : "-", s->b ? s->b : "-",
		       s->reason ? " (" : "", s->reason ? s->reason : "", s->reason ? ")" : "");
		v->passed += strcmp(s->result, "pass") == 0;
	}
	v->done = true;
	event_base_loopbreak(v->base);
}

/* read_stdin - all of standard input, at most max bytes; NULL when larger */
static char *read_stdin(size_t max, size_t *len_r)
{
	buf b;
	buf_init(&b, max);
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		if (buf_append(&b, chunk, n) < 0) {
			buf_free(&b);
			return NULL;
		}
	*len_r = b.len;
	return b.data ? b.data : xstrdup("");
}

static int dkim_verify_stdin(struct tern_config *cfg)
{
	size_t len;
	char *msg = read_stdin(cfg->max_message_size, &len);
	if (msg == NULL) {
		fprintf(stderr, "tern: dkim verify: the message is larger than max_message_size\n");
		return 1;
	}
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *err = NULL;
	if (dns_init(base, cfg->dns_servers, &d, &err) < 0) {
		fprintf(stderr, "tern: dkim verify: %s\n", err);
		free(err);
		free(msg);
		event_base_free(base);
		return 1;
	}
	struct verify_run v = { .base = base };
	dkim_verify_start(d, msg, len, on_verified, &v);
	free(msg);
	event_base_dispatch(base);
	dns_free(&d);
	event_base_free(base);
	return v.done && v.passed > 0 ? 0 : 1;
}

/* ---- ARC --------------------------------------------------------------------------------- */

struct arc_run {
	struct event_base *base;
	char cv[8];
	char line[300];
};

static void on_arc(void *ctx, const struct arc_verify_result *r)
{
	struct arc_run *a = ctx;
	snprintf(a->cv, sizeof(a->cv), "%s", r->cv);
	snprintf(a->line, sizeof(a->line), "arc=%s instances=%u oldest-pass=%u%s%s%s%s%s",
		 r->cv, r->instances, r->oldest_pass, r->domain ? " header.d=" : "",
		 r->domain ? r->domain : "", r->reason ? " (" : "", r->reason ? r->reason : "",
		 r->reason ? ")" : "");
	event_base_loopbreak(a->base);
}

/* arc_validate - the chain status of msg: 0, or -1 when DNS cannot be set up */
static int arc_validate(struct tern_config *cfg, const char *msg, size_t len, struct arc_run *a)
{
	struct event_base *base = event_base_new();
	struct dns *d = NULL;
	char *err = NULL;
	if (dns_init(base, cfg->dns_servers, &d, &err) < 0) {
		fprintf(stderr, "tern: dkim: %s\n", err);
		free(err);
		event_base_free(base);
		return -1;
	}
	a->base = base;
	arc_verify_start(d, msg, len, on_arc, a);
	event_base_dispatch(base);
	dns_free(&d);
	event_base_free(base);
	return 0;
}

static int dkim_arc_verify(struct tern_config *cfg)
{
	size_t len;
	char *msg = read_stdin(cfg->max_message_size, &len);
	struct arc_run a = { .cv = "" };
	if (msg == NULL || arc_validate(cfg, msg, len, &a) < 0) {
		free(msg);
		return 1;
	}
	free(msg);
	printf("%s\n", a.line);
	return strcmp(a.cv, "pass") == 0 ? 0 : 1;
}

static int dkim_arc_seal(struct tern_config *cfg, const char *domain, const char *id,
			 const char *results, const char *cv)
{
	if (id == NULL || results == NULL) {
		fprintf(stderr, "tern: dkim arc-seal: --authserv-id and --results are needed\n");
		return EX_USAGE;
	}
	size_t len;
	char *msg = read_stdin(cfg->max_message_size, &len);
	struct arc_run a = { .cv = "" };
	if (msg == NULL || (cv == NULL && arc_validate(cfg, msg, len, &a) < 0)) {
		free(msg);
		return 1;
	}
	struct dkim_keyring *ring = NULL;
	char *err = NULL;
	const struct dkim_key *keys[2];
	if (dkim_keyring_load(cfg->dkim_dir, &ring, &err) < 0 ||
	    dkim_keyring_pick(ring, domain, keys, 2) == 0) {
		fprintf(stderr, "tern: dkim arc-seal: %s\n", err ? err : "no key for that domain");
		free(err);
		free(msg);
		dkim_keyring_free(&ring);
		return 1;
	}
	buf out;
	buf_init(&out, 0);
	int rc = arc_seal(keys[0], msg, len, cv ? cv : a.cv, id, results, time(NULL), &out, &err);
	if (rc < 0)
		fprintf(stderr, "tern: dkim arc-seal: %s\n", err);
	else
		fwrite(out.data ? out.data : "", 1, out.len, stdout);
	free(err);
	buf_free(&out);
	free(msg);
	dkim_keyring_free(&ring);
	return rc < 0 ? 1 : 0;
}

int cmd_dkim(int argc, char **argv)
{
	const char *conf = NULL, *selector = NULL, *alg = "both", *authserv = NULL, *results = NULL,
		   *cv = NULL;
	const char *words[3] = { NULL, NULL, NULL };
	int nw = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(help_text, stdout);
			return 0;
		}
		if (!strcmp(a, "-c") || !strcmp(a, "--selector") || !strcmp(a, "--algorithm") ||
		    !strcmp(a, "--authserv-id") || !strcmp(a, "--results") || !strcmp(a, "--cv")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tern: dkim: %s needs a value\n%s", a, help_text);
				return EX_USAGE;
			}
			const char **dst = !strcmp(a, "-c")		 ? &conf
					   : !strcmp(a, "--selector")	 ? &selector
					   : !strcmp(a, "--algorithm")	 ? &alg
					   : !strcmp(a, "--authserv-id") ? &authserv
					   : !strcmp(a, "--results")	 ? &results
									 : &cv;
			*dst = argv[++i];
			continue;
		}
		if (a[0] == '-' || nw == 2) {
			fprintf(stderr, "tern: dkim: unexpected argument '%s'\n%s", a, help_text);
			return EX_USAGE;
		}
		words[nw++] = a;
	}
	const char *sub = words[0];
	bool needs_domain = sub && (!strcmp(sub, "generate") || !strcmp(sub, "check") ||
				    !strcmp(sub, "arc-seal"));
	if (sub == NULL || (needs_domain != (words[1] != NULL)) ||
	    (strcmp(sub, "generate") && strcmp(sub, "check") && strcmp(sub, "list") &&
	     strcmp(sub, "verify") && strcmp(sub, "arc-verify") && strcmp(sub, "arc-seal"))) {
		fputs(help_text, stderr);
		return EX_USAGE;
	}
	struct tern_config *cfg = load(conf);
	if (cfg == NULL)
		return 1;
	int rc = !strcmp(sub, "generate") ? dkim_generate(cfg, words[1], selector, alg)
		 : !strcmp(sub, "list")   ? dkim_list(cfg)
		 : !strcmp(sub, "verify") ? dkim_verify_stdin(cfg)
		 : !strcmp(sub, "arc-verify") ? dkim_arc_verify(cfg)
		 : !strcmp(sub, "arc-seal") ? dkim_arc_seal(cfg, words[1], authserv, results, cv)
					  : dkim_check(cfg, words[1]);
	config_free(&cfg);
	return rc;
}
