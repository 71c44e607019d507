/* acme - certificates from an ACME CA (RFC 8555) for tern's own names.
 * acme_run is the whole job of the root child the master forks at start and then every
 * [tls] acme_check_interval: it checks the certificate the master serves, and when it is
 * self-signed, due for renewal or lacks a name, orders a new one (http-01 challenges through
 * files in [tls] acme_challenge_dir that the http role serves), writes the new key and chain
 * over [tls] dir's key.pem and cert.pem, and exits ACME_RENEWED so that the master reloads.
 * It blocks (libcurl), which is why it runs in a process of its own. */
#ifndef TERN_ACME_H
#define TERN_ACME_H
#include <stddef.h>

#include "config/config.h"

enum acme_result { ACME_UP_TO_DATE = 0, ACME_FAILED = 1, ACME_RENEWED = 2 };

/* acme_run - check and, when needed, renew; returns an acme_result (an exit status). */
int acme_run(const struct tern_config *cfg, const char *cert_path, const char *key_path);
/* acme_names - the names to certify: [tls] acme_names, or the host name and mta-sts.D and
 * autoconfig.D for each domain D. Fresh array of fresh strings; *n_r set. */
char **acme_names(const struct tern_config *cfg, size_t *n_r);
void acme_names_free(char **names, size_t n);
/* acme_cert_due - why the certificate PEM (first certificate of text[0..len)) must be
 * replaced: unreadable, self-signed, expiring within renew_days, or missing one of names.
 * A fresh reason, or NULL when it is good. *not_after_r: its expiry (0 when unreadable). */
char *acme_cert_due(const char *pem, size_t len, char **names, size_t n, unsigned renew_days,
		    long *not_after_r);

#endif
