/* http/parse - checks and scans of the HTTP role's untrusted input */
#include "http/parse.h"

#include <string.h>
#include <strings.h>

#include "lib/strnum.h"
#include "lib/utf8.h"

bool http_acme_token_valid(const char *s)
{
	size_t n = 0;
	for (; s[n] != '\0'; n++) {
		char c = s[n];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  c == '-' || c == '_';
		if (!ok || n >= HTTP_ACME_TOKEN_MAX)
			return false;
	}
	return n > 0;
}

const char *http_host_domain(const char *host, const char *prefix, char *const *domains,
			     size_t n)
{
	size_t len = strcspn(host, ":");
	/* an IPv6 literal has colons but is never one of our names */
	if (host[0] == '[' || (host[len] != '\0' && strchr(host + len + 1, ':') != NULL))
		return NULL;
	if (len > 0 && host[len - 1] == '.')
		len--;
	size_t plen = strlen(prefix);
	if (len <= plen || strncasecmp(host, prefix, plen) != 0)
		return NULL;
	const char *name = host + plen;
	size_t nlen = len - plen;
	for (size_t i = 0; i < n; i++)
		if (strlen(domains[i]) == nlen && strncasecmp(name, domains[i], nlen) == 0)
			return domains[i];
	return NULL;
}

bool http_email_valid(const char *s, const char **domain_r)
{
	size_t len = strlen(s);
	const char *at = strchr(s, '@');
	if (len > HTTP_EMAIL_MAX || at == NULL || strchr(at + 1, '@') != NULL)
		return false;
	size_t local = (size_t)(at - s);
	if (local == 0 || local > 64 || !utf8_valid(s, local))
		return false;
	for (size_t i = 0; i < local; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c == 0x7f || strchr("<>\"\\&'", c) != NULL)
			return false;
	}
	const char *d = at + 1;
	size_t dlen = strlen(d);
	if (dlen == 0 || dlen > 253 || d[0] == '.' || d[0] == '-' || d[dlen - 1] == '.' ||
	    strstr(d, "..") != NULL)
		return false;
	for (size_t i = 0; i < dlen; i++) {
		char c = d[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '.'))
			return false;
	}
	*domain_r = d;
	return true;
}

/* find_ci - the first case-insensitive occurrence of needle in hay[0..len), or NULL */
static const char *find_ci(const char *hay, size_t len, const char *needle)
{
	size_t nlen = strlen(needle);
	for (size_t i = 0; i + nlen <= len; i++)
		if (strncasecmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

int http_autodiscover_email(const char *body, size_t len, char *out, size_t outsz)
{
	static const char open_tag[] = "<EMailAddress>";
	const char *p = find_ci(body, len, open_tag);
	if (p == NULL)
		return 0;
	p += sizeof(open_tag) - 1;
	const char *end = body + len;
	const char *close = memchr(p, '<', (size_t)(end - p));
	if (close == NULL || (size_t)(end - close) < sizeof("</EMailAddress>") - 1 ||
	    strncasecmp(close, "</EMailAddress>", sizeof("</EMailAddress>") - 1) != 0)
		return -1;
	while (p < close && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	const char *q = close;
	while (q > p && (q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\r' || q[-1] == '\n'))
		q--;
	size_t n = (size_t)(q - p);
	if (n == 0 || n >= outsz || memchr(p, '&', n) != NULL || memchr(p, '>', n) != NULL ||
	    memchr(p, '\0', n) != NULL)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return 1;
}

int http_query_param(const char *query, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	const char *p = query;
	while (*p != '\0') {
		size_t plen = strcspn(p, "&");
		if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
			size_t n = 0;
			for (const char *v = p + nlen + 1; v < p + plen; v++) {
				char c = *v;
				if (c == '%') {
					int hi = v + 2 < p + plen ? strnum_hexdigit(v[1]) : -1;
					int lo = hi >= 0 ? strnum_hexdigit(v[2]) : -1;
					if (lo < 0 || (hi == 0 && lo == 0))
						return -1;
					c = (char)(hi * 16 + lo);
					v += 2;
				} else if (c == '+') {
					c = ' ';
				}
				if (n + 1 >= outsz)
					return -1;
				out[n++] = c;
			}
			if (outsz == 0)
				return -1;
			out[n] = '\0';
			return 1;
		}
		p += plen;
		if (*p == '&')
			p++;
	}
	return 0;
}
