/* check_private - what the parts of `tern check` share (cmd_check.c: the command, the
 * configuration, its files and the certificate; check_dns.c: the host name's and the
 * domains' records; check_lookup.c: reporting, names and addresses, and lookups that wait for
 * their answer on the command's private event loop). Not for use outside src/cli/check*. */
#ifndef TERN_CLI_CHECK_PRIVATE_H
#define TERN_CLI_CHECK_PRIVATE_H
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "outbound/dns.h"

struct tern_config;
struct event_base;
struct dkim_keyring;

enum check_level { CHECK_OK, CHECK_WARN, CHECK_ERROR };

/* A list of strings, each owned by the list. */
struct check_list {
	char **v;
	size_t n;
};

/* One run of `tern check`. */
struct checker {
	const struct tern_config *cfg;
	bool private_ok;		/* --private-ok */
	enum check_level worst;
	unsigned count[3];		/* lines reported per level */
	struct event_base *base;	/* the private loop of the lookups */
	struct dns *dns;
	struct dkim_keyring *ring;	/* NULL when the keys could not be read */
	X509 *cert;			/* the leaf, when the pair loaded (owned by tls) */
	SSL_CTX *tls;
	struct check_list listen;	/* addresses we listen on (master_listen_addresses) */
	struct check_list host_addrs;	/* A/AAAA of hostname */
};

/* ---- check_lookup.c ----------------------------------------------------------------------- */

void check_list_add(struct check_list *l, const char *s);
/* check_list_add_name - add a DNS name unless the list has it already (any case) */
void check_list_add_name(struct check_list *l, const char *s);
void check_list_free(struct check_list *l);

/* check_report - print one line, "LEVEL  SUBJECT  text", and count it */
void check_report(struct checker *c, enum check_level level, const char *subject,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* check_shown - DNS text quoted, made printable and cut short, for a report; caller frees */
char *check_shown(const char *s);

/* check_same_name - two DNS names equal, ignoring case and a final dot */
bool check_same_name(const char *a, const char *b);
/* check_addr_bytes - an address text as bytes (4 or 16) in out; its family, or 0 */
int check_addr_bytes(const char *text, unsigned char out[16]);
bool check_same_addr(const char *a, const char *b);
/* check_is_private - an address other mail servers on the Internet cannot reach: loopback,
 * RFC 1918, link-local, CGNAT, "this network", unique-local (and not an address at all) */
bool check_is_private(const char *text);
/* check_listening_on - addr is one of the addresses this server listens on */
bool check_listening_on(const struct checker *c, const char *addr);

/* check_wait - run the private loop until *done (a lookup's callback sets it), or until the
 * loop has nothing left to wait for */
void check_wait(struct checker *c, const bool *done);

/* A raw answer (parse abuf with ares_parse_*_reply); every field owned. */
struct check_answer {
	bool done;
	enum dns_answer_status status;
	char *error;
	unsigned char *abuf;
	int alen;
};

/* check_query - one query of name for type, answered before it returns (status TEMPFAIL
 * with an error when the loop had nothing left to wait for); check_answer_free after. */
void check_query(struct checker *c, const char *name, int type, struct check_answer *r);
void check_answer_free(struct check_answer *r);

/* The TXT records of a name, strings joined; every field owned. */
struct check_txt_answer {
	bool done;
	enum dns_answer_status status;
	char *error;
	struct check_list txts;
};

void check_txt(struct checker *c, const char *name, struct check_txt_answer *t);
void check_txt_free(struct check_txt_answer *t);
/* check_records_of_kind - the TXT records at name into *t (check_txt_free it); returns how
 * many of them is_rec keeps (SPF, DMARC, MTA-STS, TLS-RPT: exactly one is wanted), *rec_r the
 * last of those */
size_t check_records_of_kind(struct checker *c, const char *name, bool (*is_rec)(const char *),
			     struct check_txt_answer *t, const char **rec_r);
/* check_addrs - the A and AAAA records of name as text into out. OK when there is any;
 * TEMPFAIL (with *error_r, caller frees) when a lookup failed; NXDOMAIN when the name does
 * not exist; else NODATA. */
enum dns_answer_status check_addrs(struct checker *c, const char *name, struct check_list *out,
				   char **error_r);
/* check_reverse_name - "4.3.2.1.in-addr.arpa" or the ip6.arpa nibbles of addr (its bytes and
 * family too); NULL when addr is not an address. Caller frees. */
char *check_reverse_name(const char *addr, unsigned char bytes[16], int *family_r);
/* check_ptr_names - the PTR names at rev (addr's reverse name) into names, without repeats;
 * TEMPFAIL with *error_r */
enum dns_answer_status check_ptr_names(struct checker *c, const char *addr, const char *rev,
				       struct check_list *names, char **error_r);

/* ---- cmd_check.c -------------------------------------------------------------------------- */

/* check_cert_name - report whether the loaded certificate names name (missing: the level,
 * why: appended to the complaint); nothing without a certificate */
void check_cert_name(struct checker *c, const char *name, enum check_level missing,
		     const char *why);

/* ---- check_dns.c -------------------------------------------------------------------------- */

/* check_host - the host name: its addresses (ours? public?) and their PTR (FCrDNS); fills
 * c->host_addrs */
void check_host(struct checker *c);
/* check_domain - MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT of dom, and the certificate's names
 * for its policy hosts; after check_host */
void check_domain(struct checker *c, const char *dom);

#endif
