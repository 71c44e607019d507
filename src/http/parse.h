/* http/parse - the checks and scans of the HTTP role's untrusted input (pure functions, no
 * I/O): ACME tokens, Host headers, e-mail addresses, the Outlook autodiscover request body.
 * The HTTP framing itself is evhttp's (with the role's size limits). */
#ifndef TERN_HTTP_PARSE_H
#define TERN_HTTP_PARSE_H
#include <stdbool.h>
#include <stddef.h>

#define HTTP_ACME_TOKEN_MAX 256
#define HTTP_EMAIL_MAX 254		/* RFC 5321 path limit less the brackets */

/* http_acme_token_valid - s is 1 to HTTP_ACME_TOKEN_MAX base64url characters
 * ([A-Za-z0-9_-]): never a path (no '/', no '.'), so it names a file of the challenge
 * directory and nothing else. */
bool http_acme_token_valid(const char *s);

/* http_host_domain - host is a Host header's value (any case, an optional ":port", an
 * optional trailing dot): when it is prefix followed by one of the n domains (lower case),
 * that domain (a pointer into domains), else NULL. prefix is lower case ("mta-sts.", or ""
 * for the domain itself). */
const char *http_host_domain(const char *host, const char *prefix, char *const *domains,
			     size_t n);

/* http_email_valid - s is one plausible address "local@domain": at most HTTP_EMAIL_MAX
 * bytes, one '@', a local part of 1-64 bytes without controls, spaces or any of "<>\"\\&'",
 * well-formed UTF-8, a domain of letters, digits, '-' and '.'. The domain part is *domain_r
 * (a pointer into s). */
bool http_email_valid(const char *s, const char **domain_r);

/* http_autodiscover_email - the text of the first <EMailAddress> element of an Outlook
 * autodiscover request (body[0..len), not NUL-terminated; the element name in any case,
 * whitespace around the value trimmed) copied into out (NUL-terminated). 1 found, 0 none,
 * -1 malformed (no closing tag, an entity or markup inside, longer than outsz - 1). Reads
 * nothing beyond len. */
int http_autodiscover_email(const char *body, size_t len, char *out, size_t outsz);

/* http_query_param - the value of the first name=value pair named name in the query string
 * query (pairs split at '&', the value percent-decoded, '+' a space) into out (NUL-terminated).
 * 1 found, 0 absent, -1 malformed (a bad %-escape, %00, longer than outsz - 1). */
int http_query_param(const char *query, const char *name, char *out, size_t outsz);

#endif
