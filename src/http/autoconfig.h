/* http/autoconfig - what mail clients are told about this server: Thunderbird's autoconfig
 * XML (clientConfig 1.1), Outlook's autodiscover response (the 2006 "outlook" schema),
 * Apple's configuration profile, and the MTA-STS policy (RFC 8461). Each names the
 * configured hostname and only the listeners really configured in [listen], with their
 * ports: imaps/pop3s/submissions as implicit TLS, imap/pop3/submission with STARTTLS. All
 * text echoed is XML-escaped. */
#ifndef TERN_HTTP_AUTOCONFIG_H
#define TERN_HTTP_AUTOCONFIG_H
#include <event2/buffer.h>

#include "config/config.h"

/* autoconfig_thunderbird - the clientConfig document for domain (one of ours). */
void autoconfig_thunderbird(struct evbuffer *out, const struct tern_config *cfg,
			    const char *domain);
/* autoconfig_outlook - the autodiscover response for the address email (checked with
 * http_email_valid). */
void autoconfig_outlook(struct evbuffer *out, const struct tern_config *cfg, const char *email);
/* autoconfig_apple - an unsigned .mobileconfig with one e-mail payload for email. */
void autoconfig_apple(struct evbuffer *out, const struct tern_config *cfg, const char *email);
/* autoconfig_mta_sts - the policy text, CRLF line ends (RFC 8461 §3.2). */
void autoconfig_mta_sts(struct evbuffer *out, const struct tern_config *cfg);
/* xml_escape - append s with & < > " ' as entities. */
void xml_escape(struct evbuffer *out, const char *s);

#endif
