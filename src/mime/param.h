/* mime_param - Content-Type / Content-Disposition values: "type/subtype" or a disposition
 * token, then ";"-separated parameters (RFC 2045 5.1, RFC 2183), with RFC 2231
 * continuations (name*0, name*1*), charsets and languages (name*=utf-8'en'%E2%82%AC),
 * converted to UTF-8. Tolerated: comments anywhere, a missing ";" between parameters,
 * unquoted values with blanks or specials (up to the next ";"), an unterminated quoted
 * string, RFC 2047 encoded words inside values (except boundary), duplicate names (the
 * first wins). */
#ifndef TERN_MIME_PARAM_H
#define TERN_MIME_PARAM_H
#include <stdbool.h>
#include <stddef.h>

struct mime_param {
	char *name;	/* lowercase, without RFC 2231 "*n*" decoration */
	char *value;	/* UTF-8 (boundary: the raw bytes) */
};

struct mime_content {
	char *type;	/* lowercase; Content-Type: the type; Disposition: the token; NULL if none */
	char *subtype;	/* lowercase; Content-Type only, NULL otherwise */
	struct mime_param *params;
	unsigned nparams;
};

/* mime_content_parse - parse an unfolded header value s[0..len). with_subtype: a
 * Content-Type (type "/" subtype required, else type and subtype are NULL); otherwise a
 * single token (Content-Disposition). At most max_params parameters are kept (0 = 64).
 * Returns 0, or -1 when parameters were dropped for the limit (*c is still usable).
 * *c is owned by the caller: mime_content_free. */
int mime_content_parse(const char *s, size_t len, bool with_subtype, unsigned max_params,
		       struct mime_content *c);
void mime_content_free(struct mime_content *c);
/* mime_param_get - the value of the parameter name (lowercase), or NULL. */
const char *mime_param_get(const struct mime_param *params, unsigned n, const char *name);

#endif
