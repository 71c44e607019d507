/* acme/resp - reading what an ACME server sends (RFC 8555 §7): the directory, orders,
 * authorizations, problem documents, Retry-After. Everything here is untrusted: a response
 * that lacks a field, has the wrong type, an over-long string, a URL that is not https, or a
 * token that could not be a file name is an error, never a crash. */
#ifndef TERN_ACME_RESP_H
#define TERN_ACME_RESP_H
#include <stdbool.h>
#include <stddef.h>

#define ACME_MAX_BODY (256 * 1024)	/* bytes of one JSON response read at most */
#define ACME_MAX_STRING 2048		/* a URL, status, token or identifier */
#define ACME_MAX_AUTHZ 100		/* authorizations of one order */

struct acme_directory {
	char *new_nonce, *new_account, *new_order;
	char *terms;			/* meta.termsOfService, or NULL */
};

struct acme_order {
	char *status;			/* pending ready processing valid invalid */
	char **authz;
	size_t n_authz;
	char *finalize;
	char *certificate;		/* NULL until valid */
};

struct acme_authz {
	char *status;
	char *identifier;		/* the DNS name */
	char *token;			/* the http-01 challenge's; NULL when none is offered */
	char *challenge_url;
	char *challenge_status;
	char *challenge_error;		/* the challenge's problem document as text, or NULL */
};

/* Each parser: 0, or -1 with *error_r (caller frees); on success the struct owns fresh
 * strings, freed by the matching _free (which also frees a partly filled struct). */
int acme_parse_directory(const char *body, size_t len, struct acme_directory *d, char **error_r);
void acme_directory_free(struct acme_directory *d);
int acme_parse_order(const char *body, size_t len, struct acme_order *o, char **error_r);
void acme_order_free(struct acme_order *o);
int acme_parse_authz(const char *body, size_t len, struct acme_authz *a, char **error_r);
void acme_authz_free(struct acme_authz *a);

/* acme_problem_text - a problem document (RFC 7807, RFC 8555 §6.7) as one printable line:
 * "TYPE: DETAIL" plus up to three subproblems; for a body that is not one, the start of the
 * body made printable. Always a fresh string. */
char *acme_problem_text(const char *body, size_t len);
/* acme_problem_is - true when body is a problem document of type
 * "urn:ietf:params:acme:error:" + name (e.g. "badNonce"). */
bool acme_problem_is(const char *body, size_t len, const char *name);
/* acme_token_ok - an http-01 token is base64url characters only, 16 to 256 of them (it
 * becomes a file name: no '/', no "..", no dot files). */
bool acme_token_ok(const char *token);
/* acme_retry_after - a Retry-After header value in seconds, clamped to [min, max]; an
 * HTTP-date, junk or NULL gives dflt (also clamped). */
unsigned acme_retry_after(const char *value, unsigned dflt, unsigned min, unsigned max);

#endif
