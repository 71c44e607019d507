/* config - the tern configuration: keys, defaults, validation */
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/conf.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

#define CONFIG_MAX_FILE (1024 * 1024)
#define SMTP_MAX_INPUT (256 * 1024)	/* SMTP input buffered before reading pauses */

static const char *const role_names[ROLE_COUNT] = {
	"smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps",
	"http", "https", "metrics",
};

enum key_type { K_STR, K_UINT, K_SIZE, K_U64, K_BOOL };

/* The scalar keys of the top-level section: name, type, where, bounds. */
struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	uint64_t min, max;
};

#define OFF(f) offsetof(struct tern_config, f)
static const struct key_def top_keys[] = {
	{ "hostname", K_STR, OFF(hostname), 0, 0 },
	{ "data_dir", K_STR, OFF(data_dir), 0, 0 },
	{ "user", K_STR, OFF(user), 0, 0 },
	{ "workers", K_UINT, OFF(workers), 0, 64 },
	{ "debug", K_BOOL, OFF(debug), 0, 0 },
	{ "max_message_size", K_U64, OFF(max_message_size), 1024, (uint64_t)1 << 40 },
	{ "smtp_max_line", K_SIZE, OFF(smtp_max_line), 512, 65536 },
	{ "smtp_max_text_line", K_SIZE, OFF(smtp_max_text_line), 1000, 1 << 24 },
	{ "smtp_max_recipients", K_SIZE, OFF(smtp_max_recipients), 1, 100000 },
	{ "smtp_max_commands", K_UINT, OFF(smtp_max_commands), 10, 1000000 },
	{ "smtp_max_bytes_before_data", K_SIZE, OFF(smtp_max_bytes_before_data), 4096, 1 << 30 },
	{ "smtp_max_bad_commands", K_UINT, OFF(smtp_max_bad_commands), 1, 10000 },
	{ "smtp_max_auth_failures", K_UINT, OFF(smtp_max_auth_failures), 1, 1000 },
	{ "max_connections_per_ip", K_UINT, OFF(max_connections_per_ip), 1, 1000000 },
	{ "smtp_timeout_command", K_UINT, OFF(smtp_timeout_command), 1, 86400 },
	{ "smtp_timeout_data", K_UINT, OFF(smtp_timeout_data), 1, 86400 },
	{ "shutdown_timeout", K_UINT, OFF(shutdown_timeout), 0, 3600 },
	{ "received_show_auth", K_BOOL, OFF(received_show_auth), 0, 0 },
	{ "allow_plaintext_auth_loopback", K_BOOL, OFF(allow_plaintext_auth_loopback), 0, 0 },
	{ "login_free_failures", K_UINT, OFF(login_free_failures), 0, 1000000 },
	{ "login_free_failures_ip", K_UINT, OFF(login_free_failures_ip), 0, 1000000 },
	{ "login_threads", K_UINT, OFF(login_threads), 1, 16 },
	{ "login_queue", K_UINT, OFF(login_queue), 1, 100000 },
	{ "login_cache_ttl", K_UINT, OFF(login_cache_ttl), 0, 3600 },
	{ "login_free_failures_account", K_UINT, OFF(login_free_failures_account), 0, 1000000 },
	{ "login_max_inflight", K_UINT, OFF(login_max_inflight), 0, 1000000 },
	{ "sender_login_match", K_BOOL, OFF(sender_login_match), 0, 0 },
	{ "sender_login_match_header", K_BOOL, OFF(sender_login_match_header), 0, 0 },
	{ "postmaster", K_STR, OFF(postmaster), 0, 0 },
	{ "pop3_max_line", K_SIZE, OFF(pop3_max_line), 512, 65536 },
	{ "pop3_max_input", K_SIZE, OFF(pop3_max_input), 4096, 1 << 24 },
	{ "pop3_timeout", K_UINT, OFF(pop3_timeout), 600, 86400 },
	{ "pop3_max_bad_commands", K_UINT, OFF(pop3_max_bad_commands), 1, 10000 },
	{ "imap_timeout", K_UINT, OFF(imap_timeout), 1800, 86400 },
	{ "imap_max_bad_commands", K_UINT, OFF(imap_max_bad_commands), 1, 10000 },
	{ "pop3_max_auth_failures", K_UINT, OFF(pop3_max_auth_failures), 1, 1000 },
	{ "dkim_dir", K_STR, OFF(dkim_dir), 0, 0 },
	{ "trace_days", K_UINT, OFF(trace_days), 0, 3650 },
	/* floods and slow clients */
	{ "max_connections", K_UINT, OFF(max_connections), 0, 10000000 },
	{ "max_connections_per_worker", K_UINT, OFF(max_connections_per_worker), 0, 1000000 },
	{ "line_timeout", K_UINT, OFF(line_timeout), 1, 86400 },
	{ "login_timeout", K_UINT, OFF(login_timeout), 0, 86400 },
	{ "transfer_min_rate", K_UINT, OFF(transfer_min_rate), 1, 1 << 30 },
	{ "max_commands_per_session", K_UINT, OFF(max_commands_per_session), 10, 100000000 },
	{ "max_commands_before_login", K_UINT, OFF(max_commands_before_login), 3, 100000 },
	/* the HTTP role */
	{ "mta_sts_max_age", K_UINT, OFF(mta_sts_max_age), 1, 31557600 },
	{ "http_timeout", K_UINT, OFF(http_timeout), 1, 3600 },
};

static void config_defaults(struct tern_config *c)
{
	char host[256];
	if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	c->hostname = xstrdup(host);
	c->max_message_size = 50 * 1024 * 1024;
	c->smtp_max_line = 4096;
	c->smtp_max_text_line = 65536;
	c->smtp_max_recipients = 1000;
	c->smtp_max_commands = 2000;
	c->smtp_max_bytes_before_data = 1024 * 1024;
	c->smtp_max_bad_commands = 20;
	c->smtp_max_auth_failures = 3;
	c->max_connections_per_ip = 50;
	c->smtp_timeout_command = 300;
	c->smtp_timeout_data = 180;
	c->shutdown_timeout = 30;
	c->login_free_failures = 2;
	c->login_free_failures_ip = 10;
	c->login_threads = 2;
	c->login_queue = 64;
	c->login_cache_ttl = 60;
	c->login_free_failures_account = 10;
	c->login_max_inflight = 256;
	c->sender_login_match = true;
	c->sender_login_match_header = false;
	c->pop3_max_line = 4096;	/* RFC 2449: 255 for commands; SASL responses are longer */
	c->pop3_max_input = 64 * 1024;
	c->pop3_timeout = 600;		/* RFC 1939 §3: at least 10 minutes */
	c->pop3_max_bad_commands = 20;
	c->imap_timeout = 1800;		/* RFC 9051 §5.4: at least 30 minutes */
	c->imap_max_bad_commands = 20;
	c->pop3_max_auth_failures = 3;
	c->mta_sts_mode = MTA_STS_TESTING;
	c->mta_sts_max_age = 604800;	/* a week (RFC 8461 §3.2 suggests weeks) */
	c->http_timeout = 30;
	/* floods and slow clients */
	c->line_timeout = 300;		/* RFC 5321 §4.5.3.2.7: the command timeout */
	c->login_timeout = 60;		/* RFC 9051 §5.4 allows a short pre-login timer */
	c->transfer_min_rate = 1024;
	c->max_commands_per_session = 100000;
	c->max_commands_before_login = 50;
	c->queue_mx_port = 25;
	c->trace_days = 7;
	c->queue_retry_min = 300;
	c->queue_retry_max = 4 * 3600;
	c->queue_max_lifetime = 5 * 24 * 3600;
	c->queue_concurrency = 20;
	c->queue_concurrency_per_domain = 5;
	c->inbound_checks = true;
	c->dmarc_enforce = true;
	c->srs = true;
	c->srs_max_age = 21;
	log_facility_parse("mail", &c->log_facility);
	c->acme_renew_days = 30;
	c->acme_check_interval = 12 * 3600;
}

static int parse_bool(const char *v, bool *r);

static bool valid_domain(const char *d);
static char *lower_dup(const char *s);

/* add_domain_list - append the domains of value (separated by blanks or commas), lower
 * case, to *list_r; 0, or -1 with *error_r naming the first one that is not a domain */
static int add_domain_list(const char *value, char ***list_r, size_t *n_r, char **error_r)
{
	char *copy = xstrdup(value), *save = NULL;
	for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
		if (!valid_domain(t)) {
			*error_r = xasprintf("'%s' is not a domain name", t);
			free(copy);
			return -1;
		}
		*list_r = xreallocarray(*list_r, *n_r + 1, sizeof(char *));
		(*list_r)[(*n_r)++] = lower_dup(t);
	}
	free(copy);
	return 0;
}

/* set_inbound - the [inbound] section: SPF, DMARC, Authentication-Results, SRS */
static int set_inbound(struct tern_config *c, const char *key, const char *value,
		       char **error_r)
{
	static const struct {
		const char *name;
		size_t offset;
	} bools[] = {
		{ "checks", OFF(inbound_checks) },
		{ "spf_reject_fail", OFF(spf_reject_fail) },
		{ "dmarc_enforce", OFF(dmarc_enforce) },
		{ "srs", OFF(srs) },
	};
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		if (strcmp(bools[i].name, key) != 0)
			continue;
		if (parse_bool(value, (bool *)((char *)c + bools[i].offset)) < 0) {
			*error_r = xstrdup("expected yes or no");
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "authserv_id")) {
		/* RFC 8601 §2.2: a value (token or quoted string); we take a token */
		for (const char *p = value; *p; p++)
			if (*p <= ' ' || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?=", *p) != NULL) {
				*error_r = xstrdup("expected a token (a host name)");
				return -1;
			}
		if (*value == '\0') {
			*error_r = xstrdup("expected a token (a host name)");
			return -1;
		}
		free(c->authserv_id);
		c->authserv_id = xstrdup(value);
		return 0;
	}
	if (!strcmp(key, "arc_trusted_sealers"))
		return add_domain_list(value, &c->arc_trusted_sealers, &c->n_arc_trusted_sealers,
				       error_r);
	if (!strcmp(key, "srs_secret")) {
		if (strlen(value) < 16) {
			*error_r = xstrdup("expected a secret of at least 16 characters");
			return -1;
		}
		free(c->srs_secret);
		c->srs_secret = xstrdup(value);
		return 0;
	}
	if (!strcmp(key, "srs_max_age")) {
		uint64_t v;
		if (strnum_u64z(value, 1000, &v) < 0 || v < 1) {
			*error_r = xstrdup("expected days from 1 to 1000");
			return -1;
		}
		c->srs_max_age = (unsigned)v;
		return 0;
	}
	*error_r = xstrdup("unknown key");
	return -1;
}

static int parse_bool(const char *v, bool *r)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "1"))
		*r = true;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "off") || !strcmp(v, "0"))
		*r = false;
	else
		return -1;
	return 0;
}

/* valid_domain - a plausible DNS name: labels of letters, digits, hyphens (or UTF-8). */
static bool valid_domain(const char *d)
{
	size_t len = strlen(d), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (const char *p = d; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch >= 0x80) {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

static char *lower_dup(const char *s)
{
	char *r = xstrdup(s);
	for (char *p = r; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return r;
}

/* set_log - the logging keys: log, log_timestamps, log_facility, syslog_socket. 1: not
 * one of them; 0: set; -1 with *error_r. */
static int set_log(struct tern_config *c, const char *key, const char *value, char **error_r)
{
	if (!strcmp(key, "log")) {
		if (!strcmp(value, "stderr") || !strcmp(value, "syslog")) {
			c->log_dest = !strcmp(value, "syslog") ? LOG_TO_SYSLOG : LOG_TO_STDERR;
			return 0;
		}
		*error_r = xstrdup("expected stderr or syslog");
		return -1;
	}
	if (!strcmp(key, "log_timestamps")) {
		bool on;
		if (!strcmp(value, "auto")) {
			c->log_stamps = LOG_STAMPS_AUTO;
		} else if (parse_bool(value, &on) == 0) {
			c->log_stamps = on ? LOG_STAMPS_YES : LOG_STAMPS_NO;
		} else {
			*error_r = xstrdup("expected auto, yes or no");
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "log_facility")) {
		if (log_facility_parse(value, &c->log_facility) < 0) {
			*error_r = xstrdup("expected mail, daemon, user or local0 to local7");
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "syslog_socket")) {
		if (value[0] != '/' || strlen(value) >= 108) {
			*error_r = xstrdup("expected an absolute path (under 108 bytes)");
			return -1;
		}
		free(c->syslog_socket);
		c->syslog_socket = xstrdup(value);
		return 0;
	}
	return 1;
}

static int set_top(struct tern_config *c, const char *key, const char *value, char **error_r)
{
	int lr = set_log(c, key, value, error_r);
	if (lr <= 0)
		return lr;
	if (!strcmp(key, "domains")) {
		for (size_t i = 0; i < c->n_domains; i++)
			free(c->domains[i]);
		c->n_domains = 0;
		char *copy = xstrdup(value), *save = NULL;
		for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
			if (!valid_domain(t)) {
				*error_r = xasprintf("'%s' is not a domain name", t);
				free(copy);
				return -1;
			}
			c->domains = xreallocarray(c->domains, c->n_domains + 2, sizeof(char *));
			c->domains[c->n_domains++] = lower_dup(t);
			c->domains[c->n_domains] = NULL;
		}
		free(copy);
		return 0;
	}
	if (!strcmp(key, "postmaster")) {
		const char *at = strchr(value, '@');
		if (at == NULL || at == value || strchr(at + 1, '@') != NULL ||
		    !valid_domain(at + 1) || strpbrk(value, " \t<>") != NULL) {
			*error_r = xasprintf("'%s' is not an address (local@domain)", value);
			return -1;
		}
		free(c->postmaster);
		c->postmaster = lower_dup(value);
		return 0;
	}
	if (!strcmp(key, "mta_sts_mode")) {
		if (!strcmp(value, "enforce") || !strcmp(value, "testing") || !strcmp(value, "none")) {
			c->mta_sts_mode = value[0] == 'e' ? MTA_STS_ENFORCE
					  : value[0] == 't' ? MTA_STS_TESTING : MTA_STS_NONE;
			return 0;
		}
		*error_r = xstrdup("expected enforce, testing or none");
		return -1;
	}
	for (size_t i = 0; i < sizeof(top_keys) / sizeof(top_keys[0]); i++) {
		const struct key_def *k = &top_keys[i];
		if (strcmp(k->name, key) != 0)
			continue;
		void *field = (char *)c + k->offset;
		uint64_t v;
		switch (k->type) {
		case K_STR:
			if (*value == '\0') {
				*error_r = xstrdup("empty value");
				return -1;
			}
			free(*(char **)field);
			*(char **)field = xstrdup(value);
			return 0;
		case K_BOOL:
			if (parse_bool(value, field) < 0) {
				*error_r = xstrdup("expected yes or no");
				return -1;
			}
			return 0;
		case K_UINT:
		case K_SIZE:
		case K_U64:
			if (strnum_u64z(value, k->max, &v) < 0 || v < k->min) {
				*error_r = xasprintf("expected a whole number from %llu to %llu",
						     (unsigned long long)k->min,
						     (unsigned long long)k->max);
				return -1;
			}
			if (k->type == K_UINT)
				*(unsigned *)field = (unsigned)v;
			else if (k->type == K_SIZE)
				*(size_t *)field = (size_t)v;
			else
				*(uint64_t *)field = v;
			return 0;
		}
	}
	*error_r = xstrdup("unknown key");
	return -1;
}

static int set_listen(struct tern_config *c, const char *key, const char *value, char **error_r)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		if (strcmp(role_names[r], key) != 0)
			continue;
		struct listen_spec *l = &c->listen[r];
		/* metrics is for loopback unless an address is written: a port alone, or "yes" */
		char *text = r == ROLE_METRICS && !strcmp(value, "yes") ? xstrdup(METRICS_DEFAULT_LISTEN)
			     : r == ROLE_METRICS && value[strspn(value, "0123456789")] == '\0'
				     ? xasprintf("127.0.0.1:%s", value)
				     : xstrdup(value);
		if (net_parse_addrport(text, &l->addr, &l->addrlen) < 0) {
			free(text);
			*error_r = xstrdup("expected a numeric address:port, e.g. 0.0.0.0:25 or [::]:25");
			return -1;
		}
		free(l->text);
		l->text = text;
		l->enabled = true;
		return 0;
	}
	*error_r = xstrdup("unknown listener role (smtp submission submissions pop3 pop3s imap imaps "
			   "http https metrics)");
	return -1;
}

/* set_queue - the [queue] keys */
static int set_queue(struct tern_config *c, const char *key, const char *value, char **error_r)
{
	static const struct {
		const char *name;
		size_t offset;
		uint64_t min, max;
	} keys[] = {
		{ "mx_port", OFF(queue_mx_port), 1, 65535 },
		{ "retry_min", OFF(queue_retry_min), 1, 86400 },
		{ "retry_max", OFF(queue_retry_max), 1, 7 * 86400 },
		{ "max_queue_lifetime", OFF(queue_max_lifetime), 1, 60 * 86400 },
		{ "delay_warning_time", OFF(queue_delay_warning), 0, 60 * 86400 },
		{ "concurrency", OFF(queue_concurrency), 1, 1000 },
		{ "concurrency_per_domain", OFF(queue_concurrency_per_domain), 1, 1000 },
	};
	if (!strcmp(key, "require_tls"))
		return add_domain_list(value, &c->queue_require_tls, &c->n_queue_require_tls,
				       error_r);
	if (!strcmp(key, "source_ip")) {
		struct sockaddr_storage ss;
		socklen_t len;
		char *probe = xasprintf(strchr(value, ':') ? "[%s]:1" : "%s:1", value);
		int bad = net_parse_addrport(probe, &ss, &len);
		free(probe);
		if (bad < 0) {
			*error_r = xstrdup("expected a numeric IP address");
			return -1;
		}
		free(c->queue_source_ip);
		c->queue_source_ip = xstrdup(value);
		return 0;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		uint64_t v;
		if (strcmp(keys[i].name, key) != 0)
			continue;
		if (strnum_u64z(value, keys[i].max, &v) < 0 || v < keys[i].min) {
			*error_r = xasprintf("expected a whole number from %llu to %llu",
					     (unsigned long long)keys[i].min,
					     (unsigned long long)keys[i].max);
			return -1;
		}
		*(unsigned *)((char *)c + keys[i].offset) = (unsigned)v;
		return 0;
	}
	*error_r = xstrdup("unknown key");
	return -1;
}

/* set_acme - the [tls] acme* keys */
static int set_acme(struct tern_config *c, const char *key, const char *value, char **error_r)
{
	char **f = !strcmp(key, "acme")		      ? &c->acme_url
		   : !strcmp(key, "acme_email")	      ? &c->acme_email
		   : !strcmp(key, "acme_ca_file")      ? &c->acme_ca_file
							: NULL;
	uint64_t v;
	if (!strcmp(key, "acme_names"))
		return add_domain_list(value, &c->acme_names, &c->n_acme_names, error_r);
	if (!strcmp(key, "acme_renew_days") || !strcmp(key, "acme_check_interval")) {
		bool days = key[5] == 'r';
		uint64_t max = days ? 365 : 7 * 86400;
		if (strnum_u64z(value, max, &v) < 0 || v < 1) {
			*error_r = xasprintf("expected a whole number from 1 to %llu",
					     (unsigned long long)max);
			return -1;
		}
		*(days ? &c->acme_renew_days : &c->acme_check_interval) = (unsigned)v;
		return 0;
	}
	if (f == NULL) {
		*error_r = xstrdup("unknown key");
		return -1;
	}
	if (f == &c->acme_url && strncmp(value, "https://", 8) != 0) {
		*error_r = xstrdup("expected the https:// URL of an ACME directory");
		return -1;
	}
	if (f == &c->acme_email && (strchr(value, '@') == NULL || strpbrk(value, " \t<>,\"") != NULL)) {
		*error_r = xstrdup("expected an address (local@domain)");
		return -1;
	}
	if (f == &c->acme_ca_file && value[0] != '/') {
		*error_r = xstrdup("expected an absolute path");
		return -1;
	}
	free(*f);
	*f = xstrdup(value);
	return 0;
}

static int config_entry(void *ctx, const char *section, const char *key, const char *value,
			char **error_r)
{
	struct tern_config *c = ctx;
	if (*section == '\0')
		return set_top(c, key, value, error_r);
	if (!strcmp(section, "listen"))
		return set_listen(c, key, value, error_r);
	if (!strcmp(section, "tls") && !strncmp(key, "acme", 4) && strcmp(key, "acme_challenge_dir"))
		return set_acme(c, key, value, error_r);
	if (!strcmp(section, "tls")) {
		char **f = !strcmp(key, "cert") ? &c->tls_cert : !strcmp(key, "key") ? &c->tls_key
			   : !strcmp(key, "dir") ? &c->tls_dir
			   : !strcmp(key, "acme_challenge_dir") ? &c->acme_challenge_dir : NULL;
		if (f == NULL) {
			*error_r = xstrdup("unknown key");
			return -1;
		}
		free(*f);
		*f = xstrdup(value);
		return 0;
	}
	if (!strcmp(section, "dns")) {
		if (strcmp(key, "servers") != 0) {
			*error_r = xstrdup("unknown key");
			return -1;
		}
		free(c->dns_servers);
		c->dns_servers = xstrdup(value);
		return 0;
	}
	if (!strcmp(section, "queue"))
		return set_queue(c, key, value, error_r);
	if (!strcmp(section, "inbound"))
		return set_inbound(c, key, value, error_r);
	if (!strcmp(section, "routes")) {
		char *host;
		uint16_t port;
		if (!valid_domain(key)) {
			*error_r = xstrdup("not a domain name");
			return -1;
		}
		if (net_split_hostport(value, &host, &port) < 0) {
			*error_r = xstrdup("expected host:port");
			return -1;
		}
		c->routes = xreallocarray(c->routes, c->n_routes + 1, sizeof(*c->routes));
		c->routes[c->n_routes].domain = lower_dup(key);
		c->routes[c->n_routes].host = host;
		c->routes[c->n_routes].port = port;
		c->n_routes++;
		return 0;
	}
	*error_r = xstrdup("unknown section");
	return -1;
}

/* key_dir_finish - make a directory of root's keys absolute (*dir: [tls] dir, dkim_dir): by
 * default def next to the config file (e.g. /etc/tern/tls), a relative one taken from the
 * config file's directory (the current directory for the development instance, whose config
 * has no file). Never data_dir's: its owner could swap it for a symlink to a key root can
 * read. 0 or -1. */
static int key_dir_finish(char **dir, const char *path, const char *def, const char *name,
			  char **error_r)
{
	const char *rel = *dir != NULL ? *dir : def;
	if (rel[0] == '/')
		return 0;
	char base[PATH_MAX];
	const char *slash = path[0] == '(' ? NULL : strrchr(path, '/');
	if (slash == NULL || path[0] != '/') {
		if (getcwd(base, sizeof(base)) == NULL) {
			*error_r = xasprintf("%s: getcwd: %s", name, strerror(errno));
			return -1;
		}
	} else {
		base[0] = '\0';
	}
	char *abs = slash == NULL ? xasprintf("%s/%s", base, rel)
		    : path[0] == '/' ? xasprintf("%.*s/%s", (int)(slash - path), path, rel)
				     : xasprintf("%s/%.*s/%s", base, (int)(slash - path), path, rel);
	free(*dir);
	*dir = abs;
	return 0;
}

/* config_finish - checks that span keys, and derived values */
static int config_finish(struct tern_config *c, const char *name, char **error_r)
{
	if (c->data_dir == NULL) {
		*error_r = xasprintf("%s: data_dir is not set", name);
		return -1;
	}
	if (c->data_dir[0] != '/') {
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			*error_r = xasprintf("%s: getcwd: %s", name, strerror(errno));
			return -1;
		}
		char *abs = xasprintf("%s/%s", cwd, c->data_dir);
		free(c->data_dir);
		c->data_dir = abs;
	}
	if (key_dir_finish(&c->dkim_dir, c->path, c->path[0] == '(' ? "tern-dkim" : "dkim", name,
			   error_r) < 0)
		return -1;
	if (c->n_domains == 0) {
		*error_r = xasprintf("%s: domains is not set", name);
		return -1;
	}
	if (c->pop3_max_input < c->pop3_max_line) {
		*error_r = xasprintf("%s: pop3_max_input must be at least pop3_max_line", name);
		return -1;
	}
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		*error_r = xasprintf("%s: [tls] cert and key go together", name);
		return -1;
	}
	if (key_dir_finish(&c->tls_dir, c->path, "tls", name, error_r) < 0)
		return -1;
	if (c->acme_url != NULL && c->tls_cert != NULL) {
		*error_r = xasprintf("%s: [tls] acme manages [tls] dir's cert.pem and key.pem: "
				     "remove [tls] cert and key", name);
		return -1;
	}
	/* not inside [tls] dir: that one is 0700 and the workers (the run user) read this */
	if (key_dir_finish(&c->acme_challenge_dir, c->path,
			   c->path[0] == '(' ? "tern-acme-challenge" : "acme-challenge", name,
			   error_r) < 0)
		return -1;
	/* the limits of every session core, by protocol */
	for (int r = 0; r < ROLE_COUNT; r++) {
		struct session_limits *l = &c->session_limits[r];
		bool pop3 = r == ROLE_POP3 || r == ROLE_POP3S;
		bool imap = r == ROLE_IMAP || r == ROLE_IMAPS;
		l->max_line = pop3 ? c->pop3_max_line : c->smtp_max_line;
		l->max_input = pop3 ? c->pop3_max_input : SMTP_MAX_INPUT;
		l->timeout = pop3 ? c->pop3_timeout : imap ? c->imap_timeout : c->smtp_timeout_command;
		l->max_bad_commands = pop3   ? c->pop3_max_bad_commands
				      : imap ? c->imap_max_bad_commands
					     : c->smtp_max_bad_commands;
		l->max_per_ip = c->max_connections_per_ip;
		l->plaintext_auth_loopback = c->allow_plaintext_auth_loopback;
		l->line_timeout = c->line_timeout < l->timeout ? c->line_timeout : l->timeout;
		l->min_rate = c->transfer_min_rate;
		l->max_commands = c->max_commands_per_session;
		/* port 25 has no login: a mail exchanger's session keeps the RFC's timeouts */
		bool login = r != ROLE_SMTP;
		l->login_timeout = login ? c->login_timeout : 0;
		l->max_commands_before_login = login ? c->max_commands_before_login : 0;
	}
	return 0;
}

struct tern_config *config_load_string(const char *name, const char *text, char **error_r)
{
	struct tern_config *c = xcalloc(1, sizeof(*c));
	config_defaults(c);
	c->path = xstrdup(name);
	if (conf_parse(name, text, strlen(text), config_entry, c, error_r) < 0 ||
	    config_finish(c, name, error_r) < 0) {
		config_free(&c);
		return NULL;
	}
	return c;
}

struct tern_config *config_load(const char *path, char **error_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	char *text = xmalloc(CONFIG_MAX_FILE + 1);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, CONFIG_MAX_FILE + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("%s: %s", path, strerror(errno));
			close(fd);
			free(text);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_MAX_FILE) {
			*error_r = xasprintf("%s: file too large", path);
			close(fd);
			free(text);
			return NULL;
		}
	}
	close(fd);
	text[len] = '\0';
	if (strlen(text) != len) {
		*error_r = xasprintf("%s: NUL byte in file", path);
		free(text);
		return NULL;
	}
	struct tern_config *c = config_load_string(path, text, error_r);
	free(text);
	return c;
}

struct tern_config *config_dev(void)
{
	static const char *const dev_listen[ROLE_COUNT] = {
		"127.0.0.1:2525", "127.0.0.1:5587", "127.0.0.1:4465", "127.0.0.1:1110",
		"127.0.0.1:1995", "127.0.0.1:1143", "127.0.0.1:1993",
	};
	char *err = NULL;
	struct tern_config *c = config_load_string("(development instance)",
		"data_dir = tern-data\ndomains = localhost\nhostname = localhost\n", &err);
	if (c == NULL)
		abort();	/* the built-in text is fixed: a failure is a bug */
	free(c->path);
	c->path = NULL;
	/* no config file: keep the pair in the data dir (a root start moves it, devdata.c) */
	free(c->tls_dir);
	c->tls_dir = config_path_in_data(c, "tls");
	for (int r = ROLE_SMTP; r < ROLE_COUNT; r++) {
		if (dev_listen[r] != NULL && set_listen(c, role_names[r], dev_listen[r], &err) < 0)
			abort();
	}
	return c;
}

bool config_is_local_domain(const struct tern_config *c, const char *domain)
{
	for (size_t i = 0; i < c->n_domains; i++)
		if (strcasecmp(c->domains[i], domain) == 0)
			return true;
	return false;
}

const char *config_role_name(enum listen_role role)
{
	return role >= 0 && role < ROLE_COUNT ? role_names[role] : "?";
}

void config_connection_caps(const struct tern_config *c, unsigned long nofile,
			    unsigned workers, unsigned *per_worker_r, unsigned *total_r)
{
	/* what a worker needs besides sessions: listeners, event loop, databases, log */
	const unsigned long reserve = 64;
	unsigned long per = c->max_connections_per_worker;
	if (per == 0) {
		/* a session may hold a second descriptor (a spool file, a mailbox's index) */
		per = nofile > reserve + 2 ? (nofile - reserve) / 2 : 1;
		if (per > 20000)
			per = 20000;
	}
	unsigned long sum = per * (workers ? workers : 1);
	unsigned long total = c->max_connections ? c->max_connections : sum;
	if (total > sum)
		total = sum;
	*per_worker_r = (unsigned)per;
	*total_r = (unsigned)(total > UINT32_MAX ? UINT32_MAX : total);
}

char *config_path_in_data(const struct tern_config *c, const char *rel)
{
	return xasprintf("%s/%s", c->data_dir, rel);
}

const char *config_authserv_id(const struct tern_config *c)
{
	return c->authserv_id != NULL ? c->authserv_id : c->hostname;
}

void config_free(struct tern_config **cp)
{
	struct tern_config *c = *cp;
	if (c == NULL)
		return;
	free(c->path);
	free(c->hostname);
	free(c->data_dir);
	for (size_t i = 0; i < c->n_domains; i++)
		free(c->domains[i]);
	free(c->domains);
	free(c->user);
	free(c->postmaster);
	free(c->syslog_socket);
	for (int r = 0; r < ROLE_COUNT; r++)
		free(c->listen[r].text);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_dir);
	free(c->acme_url);
	free(c->acme_email);
	free(c->acme_ca_file);
	for (size_t i = 0; i < c->n_acme_names; i++)
		free(c->acme_names[i]);
	free(c->acme_names);
	free(c->dns_servers);
	free(c->acme_challenge_dir);
	free(c->dkim_dir);
	free(c->queue_source_ip);
	for (size_t i = 0; i < c->n_queue_require_tls; i++)
		free(c->queue_require_tls[i]);
	free(c->queue_require_tls);
	for (size_t i = 0; i < c->n_routes; i++) {
		free(c->routes[i].domain);
		free(c->routes[i].host);
	}
	free(c->routes);
	free(c->authserv_id);
	for (size_t i = 0; i < c->n_arc_trusted_sealers; i++)
		free(c->arc_trusted_sealers[i]);
	free(c->arc_trusted_sealers);
	free(c->srs_secret);
	explicit_bzero(c->srs_key, sizeof(c->srs_key));
	free(c);
	*cp = NULL;
}
