/* config - the tern configuration: keys, defaults, validation.
 * Syntax: "key = value" lines, "[section]" headers, '#' starts a comment. An unknown key or a
 * bad value stops loading with "FILE:LINE: reason". The reference is docs/configuration.md. */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "lib/session.h"

enum listen_role {
	ROLE_SMTP,
	ROLE_SUBMISSION,
	ROLE_SUBMISSIONS,
	ROLE_POP3,
	ROLE_POP3S,
	ROLE_IMAP,
	ROLE_IMAPS,
	/* the HTTP role (src/http): not sessions; served by evhttp in every worker */
	ROLE_HTTP,
	ROLE_HTTPS,
	ROLE_METRICS,		/* /metrics only; "PORT" alone means 127.0.0.1:PORT */
	ROLE_COUNT
};

/* ROLE_IS_HTTP - the roles served by src/http rather than a session core */
#define ROLE_IS_HTTP(r) ((r) == ROLE_HTTP || (r) == ROLE_HTTPS || (r) == ROLE_METRICS)
/* the address of "[listen] metrics = yes" (loopback only) */
#define METRICS_DEFAULT_LISTEN "127.0.0.1:9425"


struct listen_spec {
	bool enabled;
	char *text;			/* as written: "127.0.0.1:2525" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct route {
	char *domain;
	char *host;			/* host name or address */
	uint16_t port;
};

struct tern_config {
	char *path;			/* NULL for the development instance */
	char *hostname;
	char *data_dir;			/* absolute */
	char **domains;			/* lower case */
	size_t n_domains;
	char *user;			/* NULL: do not change user */
	unsigned workers;		/* 0 = one per CPU */
	bool debug;
	enum log_dest log_dest;		/* log: stderr (default) or syslog */
	enum log_stamps log_stamps;	/* log_timestamps: auto (default), yes, no */
	int log_facility;		/* log_facility: a syslog facility (LOG_MAIL) */
	char *syslog_socket;		/* syslog_socket: NULL = /dev/log */

	/* SMTP limits */
	uint64_t max_message_size;
	size_t smtp_max_line;		/* command line, bytes incl. CRLF */
	size_t smtp_max_text_line;	/* message text line, bytes incl. CRLF (RFC 5321: 1000) */
	size_t smtp_max_recipients;
	unsigned smtp_max_commands;	/* commands in one transaction before DATA (RSET clears) */
	size_t smtp_max_bytes_before_data; /* command bytes in a session before its first DATA */
	unsigned smtp_max_bad_commands;
	unsigned smtp_max_auth_failures;
	unsigned max_connections_per_ip;
	unsigned smtp_timeout_command;	/* seconds: waiting for a command (RFC 5321: 5 min) */
	unsigned smtp_timeout_data;	/* seconds: between data blocks (RFC 5321: 3 min) */
	unsigned shutdown_timeout;	/* seconds: SIGTERM waits this long for transactions */
	bool received_show_auth;	/* name the authenticated user in Received: */
	bool allow_plaintext_auth_loopback; /* AUTH without TLS from 127.0.0.0/8, ::1 */
	unsigned login_free_failures;	/* failed logins per (IP, account) before delays */
	unsigned login_free_failures_ip; /* ... and per IP over all accounts */
	unsigned login_threads;		/* password-hashing threads per worker */
	unsigned login_queue;		/* checks waiting for them before 4xx */
	unsigned login_cache_ttl;	/* seconds a successful check is remembered; 0: off */

	/* logins and senders (issue "hardening: logins") */
	unsigned login_free_failures_account; /* failed logins per account over all addresses */
	unsigned login_max_inflight;	/* password checks in flight over all workers; 0: no cap */
	bool sender_login_match;	/* an authenticated MAIL FROM must be the user's own */
	bool sender_login_match_header;	/* ... and so must the From: header (submission) */
	char *postmaster;		/* who gets postmaster mail; NULL: see recipient.h */

	/* POP3 limits */
	size_t pop3_max_line;		/* command line or SASL response, bytes incl. CRLF */
	size_t pop3_max_input;		/* input buffered before reading pauses */
	unsigned pop3_timeout;		/* seconds idle before autologout (RFC 1939: >= 600) */
	unsigned pop3_max_bad_commands;
	unsigned pop3_max_auth_failures;

	/* IMAP limits (commands and literals: imap/parser's limits; APPEND: max_message_size) */
	unsigned imap_timeout;		/* seconds idle before autologout (RFC 9051: >= 1800) */
	unsigned imap_max_bad_commands;

	/* Floods and slow clients (every protocol). The connection caps are 0 when not set:
	 * the worker derives them from its descriptor limit (config_connection_caps). */
	unsigned max_connections;	/* sessions in all workers together */
	unsigned max_connections_per_worker;
	unsigned line_timeout;		/* seconds from a command line's first byte to its end */
	unsigned login_timeout;		/* idle seconds (and line deadline) before login on
					   submission, POP3, IMAP; 0: no shorter limit */
	unsigned transfer_min_rate;	/* bytes/s a DATA, BDAT, literal or RETR must average
					   (after a grace of line_timeout seconds) */
	unsigned max_commands_per_session;
	unsigned max_commands_before_login; /* submission, POP3, IMAP */

	struct listen_spec listen[ROLE_COUNT];
	struct session_limits session_limits[ROLE_COUNT]; /* derived from the keys above */

	char *tls_cert;			/* NULL: tls_dir/cert.pem, self-signed on first start */
	char *tls_key;
	char *tls_dir;			/* absolute; default: the config file's directory + "/tls"
					 * (never inside data_dir, which the run user owns) */
	/* ACME (src/acme): [tls] acme = directory URL; NULL: no ACME */
	char *acme_url;
	char *acme_email;		/* contact for the account, or NULL */
	char *acme_ca_file;		/* PEM roots to trust for the CA's HTTPS (private CAs) */
	unsigned acme_renew_days;	/* renew this many days before expiry (30) */
	unsigned acme_check_interval;	/* seconds between checks (43200) */
	char **acme_names;		/* NULL: hostname, mta-sts.D and autoconfig.D per domain */
	size_t n_acme_names;

	char *dns_servers;		/* NULL: /etc/resolv.conf; else "addr:port,addr:port" */

	/* HTTP role (src/http) */
	char *acme_challenge_dir;	/* [tls] acme_challenge_dir: absolute after loading;
					 * default "acme-challenge" next to the config file
					 * (./tern-acme-challenge for the development instance):
					 * root's, 0755, files 0644, read by the workers */
	enum { MTA_STS_NONE, MTA_STS_TESTING, MTA_STS_ENFORCE } mta_sts_mode;
	unsigned mta_sts_max_age;	/* seconds */
	unsigned http_timeout;		/* seconds for a request (headers and body) or idle */

	/* DKIM: dkim_dir/<domain>/<selector>.pem, root's; absolute after loading (default:
	 * "dkim" next to the config file, ./tern-dkim for the development instance) */
	char *dkim_dir;

	unsigned trace_days;		/* trace journal kept this many days; 0: off */

	unsigned queue_mx_port;
	unsigned queue_retry_min;	/* seconds: first retry delay, doubled per attempt */
	unsigned queue_retry_max;	/* seconds: cap on the retry delay */
	unsigned queue_max_lifetime;	/* seconds before deferred mail is bounced */
	unsigned queue_delay_warning;	/* seconds before a "still trying" notice; 0: never */
	unsigned queue_concurrency;	/* deliveries in flight at once */
	unsigned queue_concurrency_per_domain;
	char *queue_source_ip;		/* NULL: let the kernel choose */
	char **queue_require_tls;	/* domains whose mail must go over STARTTLS */
	size_t n_queue_require_tls;
	struct route *routes;
	size_t n_routes;

	/* [inbound]: SPF, DMARC, Authentication-Results (src/inbound) and SRS (auth/srs) */
	bool inbound_checks;		/* checks: SPF/DKIM/DMARC and A-R on the smtp role */
	char *authserv_id;		/* authserv_id: NULL = hostname */
	bool spf_reject_fail;		/* spf_reject_fail: 550 on an SPF fail by itself */
	bool dmarc_enforce;		/* dmarc_enforce: apply p=reject and p=quarantine */
	char **arc_trusted_sealers;	/* arc_trusted_sealers: ARC sealers (d=) whose passing
					   chain overrides a DMARC fail (RFC 8617 §7.2.1) */
	size_t n_arc_trusted_sealers;
	bool srs;			/* srs: rewrite the sender of mail forwarded elsewhere */
	char *srs_secret;		/* srs_secret: NULL = [tls] dir/srs.key (made at start) */
	unsigned srs_max_age;		/* srs_max_age: days a rewritten address is honoured */
	unsigned char srs_key[32];	/* filled at start (config_srs_key_setup) */
	bool srs_key_ready;
};

/* config_load - read FILE into a fresh config with defaults filled in.
 * Returns NULL and sets *error_r (caller frees) to "FILE:LINE: reason" on failure. */
struct tern_config *config_load(const char *path, char **error_r);
/* config_load_string - the same from text (name is used in errors); for tests. */
struct tern_config *config_load_string(const char *name, const char *text, char **error_r);
/* config_dev - the development instance: ./tern-data, domain localhost, 127.0.0.1 high ports. */
struct tern_config *config_dev(void);
/* config_is_local_domain - true when domain (any case) is in domains. */
bool config_is_local_domain(const struct tern_config *c, const char *domain);
/* config_role_name - "smtp", "submission", … */
const char *config_role_name(enum listen_role role);
/* config_connection_caps - the per-worker and total session caps for a worker allowed
 * nofile descriptors, with workers workers: the configured values, or derived ones
 * (half the descriptors after a reserve, at most 20000 per worker; the total is the sum
 * over the workers). The total is never more than the sum of the per-worker caps. */
void config_connection_caps(const struct tern_config *c, unsigned long nofile,
			    unsigned workers, unsigned *per_worker_r, unsigned *total_r);
/* config_path_in_data - data_dir + "/" + rel; caller frees. */
char *config_path_in_data(const struct tern_config *c, const char *rel);
void config_free(struct tern_config **c);
/* config_authserv_id - the authserv-id of our Authentication-Results (RFC 8601). */
const char *config_authserv_id(const struct tern_config *c);

#endif
