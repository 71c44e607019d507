/* fuzz_acme_resp - libFuzzer target for acme/resp.c: what an ACME server (or whoever sits
 * on the path) sends. Every reader gets the input: it either succeeds with fields that keep
 * their promises (https URLs, base64url tokens, printable strings) or fails with a reason;
 * the problem text is always one printable line. */
#include <string.h>

#include "acme/resp.h"
#include "fuzz.h"

static void printable(const char *s)
{
	for (; s != NULL && *s; s++)
		FUZZ_ASSERT((unsigned char)*s >= 0x20 && *s != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	char *err = NULL;
	struct acme_directory d;
	if (acme_parse_directory(body, size, &d, &err) == 0) {
		FUZZ_ASSERT(strncmp(d.new_nonce, "https://", 8) == 0);
		FUZZ_ASSERT(strncmp(d.new_order, "https://", 8) == 0);
		printable(d.new_account);
		acme_directory_free(&d);
	} else {
		FUZZ_ASSERT(err != NULL);
		free(err);
	}
	err = NULL;
	struct acme_order o;
	if (acme_parse_order(body, size, &o, &err) == 0) {
		FUZZ_ASSERT(o.n_authz >= 1 && o.n_authz <= ACME_MAX_AUTHZ);
		for (size_t i = 0; i < o.n_authz; i++)
			FUZZ_ASSERT(strncmp(o.authz[i], "https://", 8) == 0);
		acme_order_free(&o);
	} else {
		FUZZ_ASSERT(err != NULL);
		free(err);
	}
	err = NULL;
	struct acme_authz a;
	if (acme_parse_authz(body, size, &a, &err) == 0) {
		if (a.token != NULL) {
			FUZZ_ASSERT(acme_token_ok(a.token));
			FUZZ_ASSERT(strchr(a.token, '/') == NULL && a.token[0] != '.');
		}
		printable(a.identifier);
		printable(a.challenge_error);
		acme_authz_free(&a);
	} else {
		FUZZ_ASSERT(err != NULL);
		free(err);
	}
	char *t = acme_problem_text(body, size);
	printable(t);
	free(t);
	(void)acme_problem_is(body, size, "badNonce");
	return 0;
}
