/* fuzz_http_parse - libFuzzer target for http/parse.c, the HTTP role's scans of untrusted
 * input. The input is an Outlook autodiscover body (scanned as it is, not NUL-terminated),
 * then, as a C string, a query string, a Host header, an ACME token and an address. Whatever
 * the scans accept must hold what their contracts promise: a found address fits the buffer
 * and has no markup; a found query value has no NUL; a valid token is base64url; a valid
 * address has one '@' and its domain after it; a matched Host names one of the domains. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[HTTP_EMAIL_MAX + 1];
	size_t cap = 1 + (size > 0 ? data[0] % sizeof(out) : 0);
	int r = http_autodiscover_email((const char *)data, size, out, cap);
	FUZZ_ASSERT(r >= -1 && r <= 1);
	if (r == 1) {
		size_t n = strlen(out);
		FUZZ_ASSERT(n > 0 && n < cap);
		FUZZ_ASSERT(strpbrk(out, "<>&") == NULL);
	}

	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	r = http_query_param(s, "emailaddress", out, cap);
	FUZZ_ASSERT(r >= -1 && r <= 1);
	if (r == 1)
		FUZZ_ASSERT(strlen(out) < cap);

	char *domains[] = { "example.test", "other.test" };
	const char *d = http_host_domain(s, "mta-sts.", domains, 2);
	FUZZ_ASSERT(d == NULL || d == domains[0] || d == domains[1]);
	d = http_host_domain(s, "", domains, 2);
	FUZZ_ASSERT(d == NULL || d == domains[0] || d == domains[1]);

	size_t slen = strlen(s);	/* the C string ends at the first NUL of the input */
	if (http_acme_token_valid(s)) {
		FUZZ_ASSERT(slen > 0 && slen <= HTTP_ACME_TOKEN_MAX);
		FUZZ_ASSERT(strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				      "0123456789-_") == slen);
	}
	if (http_email_valid(s, &d)) {
		const char *at = strchr(s, '@');
		FUZZ_ASSERT(at != NULL && d == at + 1 && strchr(d, '@') == NULL);
		FUZZ_ASSERT(slen <= HTTP_EMAIL_MAX);
	}
	free(s);
	return 0;
}
