/* acme/resp - strict readers of ACME server responses */
#include "acme/resp.h"

#include <jansson.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

/* load - the body as a JSON object; NULL with *error_r */
static json_t *load(const char *body, size_t len, const char *what, char **error_r)
{
	if (len > ACME_MAX_BODY) {
		*error_r = xasprintf("%s: response too large (%zu bytes)", what, len);
		return NULL;
	}
	json_error_t je;
	json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (j == NULL || !json_is_object(j)) {
		char text[160];
		*error_r = xasprintf("%s: not a JSON object (%s)", what,
				     log_sanitize(text, sizeof(text), j ? "an array or value" : je.text,
						  strlen(j ? "an array or value" : je.text)));
		json_decref(j);
		return NULL;
	}
	return j;
}

/* get_str - obj[key] as a fresh string: must be a string of 1..ACME_MAX_STRING bytes without
 * control characters. Missing: NULL without error when optional. -1 on a bad value. */
static int get_str(json_t *obj, const char *key, bool required, char **out, const char *what,
		   char **error_r)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (v == NULL || json_is_null(v)) {
		if (!required)
			return 0;
		*error_r = xasprintf("%s: no \"%s\"", what, key);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (s == NULL || n == 0 || n > ACME_MAX_STRING || strlen(s) != n) {
		*error_r = xasprintf("%s: \"%s\" is not a string of 1 to %d bytes", what, key,
				     ACME_MAX_STRING);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			*error_r = xasprintf("%s: \"%s\" has control characters", what, key);
			return -1;
		}
	*out = xstrdup(s);
	return 0;
}

/* url_ok - an absolute https URL without spaces (RFC 8555 §6.1: HTTPS only) */
static int check_url(const char *url, const char *key, const char *what, char **error_r)
{
	if (url == NULL)
		return 0;
	if (strncmp(url, "https://", 8) != 0 || url[8] == '\0' || strpbrk(url, " \"<>\\") != NULL) {
		*error_r = xasprintf("%s: \"%s\" is not an https URL", what, key);
		return -1;
	}
	return 0;
}

static int get_url(json_t *obj, const char *key, bool required, char **out, const char *what,
		   char **error_r)
{
	if (get_str(obj, key, required, out, what, error_r) < 0)
		return -1;
	if (check_url(*out, key, what, error_r) < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

int acme_parse_directory(const char *body, size_t len, struct acme_directory *d, char **error_r)
{
	memset(d, 0, sizeof(*d));
	json_t *j = load(body, len, "directory", error_r);
	if (j == NULL)
		return -1;
	int r = -1;
	json_t *meta = json_object_get(j, "meta");
	if (get_url(j, "newNonce", true, &d->new_nonce, "directory", error_r) == 0 &&
	    get_url(j, "newAccount", true, &d->new_account, "directory", error_r) == 0 &&
	    get_url(j, "newOrder", true, &d->new_order, "directory", error_r) == 0 &&
	    (!json_is_object(meta) ||
	     get_str(meta, "termsOfService", false, &d->terms, "directory", error_r) == 0))
		r = 0;
	json_decref(j);
	if (r < 0)
		acme_directory_free(d);
	return r;
}

void acme_directory_free(struct acme_directory *d)
{
	free(d->new_nonce);
	free(d->new_account);
	free(d->new_order);
	free(d->terms);
	memset(d, 0, sizeof(*d));
}

int acme_parse_order(const char *body, size_t len, struct acme_order *o, char **error_r)
{
	memset(o, 0, sizeof(*o));
	json_t *j = load(body, len, "order", error_r);
	if (j == NULL)
		return -1;
	int r = -1;
	json_t *list = json_object_get(j, "authorizations");
	if (get_str(j, "status", true, &o->status, "order", error_r) < 0 ||
	    get_url(j, "finalize", true, &o->finalize, "order", error_r) < 0 ||
	    get_url(j, "certificate", false, &o->certificate, "order", error_r) < 0)
		goto out;
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > ACME_MAX_AUTHZ) {
		*error_r = xasprintf("order: \"authorizations\" is not a list of 1 to %d URLs",
				     ACME_MAX_AUTHZ);
		goto out;
	}
	o->authz = xcalloc(json_array_size(list), sizeof(char *));
	for (size_t i = 0; i < json_array_size(list); i++) {
		json_t *wrap = json_pack("{s:O}", "a", json_array_get(list, i));
		int bad = get_url(wrap, "a", true, &o->authz[i], "order authorization", error_r);
		json_decref(wrap);
		if (bad < 0)
			goto out;
		o->n_authz++;
	}
	r = 0;
out:
	json_decref(j);
	if (r < 0)
		acme_order_free(o);
	return r;
}

void acme_order_free(struct acme_order *o)
{
	free(o->status);
	for (size_t i = 0; i < o->n_authz; i++)
		free(o->authz[i]);
	free(o->authz);
	free(o->finalize);
	free(o->certificate);
	memset(o, 0, sizeof(*o));
}

/* problem_of - a problem document given as a JSON object, as text */
static char *problem_of(json_t *p)
{
	const char *type = json_string_value(json_object_get(p, "type"));
	const char *detail = json_string_value(json_object_get(p, "detail"));
	char t[200], d[600];
	buf b;
	buf_init(&b, 4096);
	buf_printf(&b, "%s: %s", type ? log_sanitize(t, sizeof(t), type, strlen(type)) : "(no type)",
		   detail ? log_sanitize(d, sizeof(d), detail, strlen(detail)) : "(no detail)");
	json_t *subs = json_object_get(p, "subproblems");
	for (size_t i = 0; json_is_array(subs) && i < json_array_size(subs) && i < 3; i++) {
		json_t *s = json_array_get(subs, i);
		const char *sd = json_string_value(json_object_get(s, "detail"));
		const char *id = json_string_value(
			json_object_get(json_object_get(s, "identifier"), "value"));
		if (sd != NULL)
			buf_printf(&b, "; %s: %s", id ? log_sanitize(t, sizeof(t), id, strlen(id)) : "?",
				   log_sanitize(d, sizeof(d), sd, strlen(sd)));
	}
	char *out = xstrdup(b.data != NULL ? buf_cstr(&b) : "");
	buf_free(&b);
	return out;
}

int acme_parse_authz(const char *body, size_t len, struct acme_authz *a, char **error_r)
{
	memset(a, 0, sizeof(*a));
	json_t *j = load(body, len, "authorization", error_r);
	if (j == NULL)
		return -1;
	int r = -1;
	json_t *ident = json_object_get(j, "identifier");
	json_t *chals = json_object_get(j, "challenges");
	if (get_str(j, "status", true, &a->status, "authorization", error_r) < 0)
		goto out;
	if (!json_is_object(ident)) {
		*error_r = xstrdup("authorization: \"identifier\" is not an object");
		goto out;
	}
	if (get_str(ident, "value", true, &a->identifier, "authorization identifier", error_r) < 0)
		goto out;
	if (!json_is_array(chals) || json_array_size(chals) > 32) {
		*error_r = xstrdup("authorization: \"challenges\" is not a list of at most 32");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(chals); i++) {
		json_t *c = json_array_get(chals, i);
		const char *type = json_string_value(json_object_get(c, "type"));
		if (!json_is_object(c) || type == NULL || strcmp(type, "http-01") != 0)
			continue;
		if (get_str(c, "token", true, &a->token, "http-01 challenge", error_r) < 0 ||
		    get_url(c, "url", true, &a->challenge_url, "http-01 challenge", error_r) < 0 ||
		    get_str(c, "status", true, &a->challenge_status, "http-01 challenge", error_r) < 0)
			goto out;
		if (!acme_token_ok(a->token)) {
			*error_r = xstrdup("http-01 challenge: the token is not 16 to 256 base64url "
					   "characters");
			goto out;
		}
		if (json_is_object(json_object_get(c, "error")))
			a->challenge_error = problem_of(json_object_get(c, "error"));
		break;
	}
	r = 0;
out:
	json_decref(j);
	if (r < 0)
		acme_authz_free(a);
	return r;
}

void acme_authz_free(struct acme_authz *a)
{
	free(a->status);
	free(a->identifier);
	free(a->token);
	free(a->challenge_url);
	free(a->challenge_status);
	free(a->challenge_error);
	memset(a, 0, sizeof(*a));
}

char *acme_problem_text(const char *body, size_t len)
{
	json_t *j = len <= ACME_MAX_BODY ? json_loadb(body, len, 0, NULL) : NULL;
	if (json_is_object(j) && json_is_string(json_object_get(j, "type"))) {
		char *s = problem_of(j);
		json_decref(j);
		return s;
	}
	json_decref(j);
	char text[200];
	return xasprintf("(not a problem document) %s",
			 log_sanitize(text, sizeof(text), body ? body : "", body ? len : 0));
}

bool acme_problem_is(const char *body, size_t len, const char *name)
{
	json_t *j = len <= ACME_MAX_BODY ? json_loadb(body, len, 0, NULL) : NULL;
	const char *type = json_string_value(json_object_get(j, "type"));
	static const char prefix[] = "urn:ietf:params:acme:error:";
	bool is = type != NULL && strncmp(type, prefix, sizeof(prefix) - 1) == 0 &&
		  strcmp(type + sizeof(prefix) - 1, name) == 0;
	json_decref(j);
	return is;
}

bool acme_token_ok(const char *token)
{
	size_t n = strlen(token);
	if (n < 16 || n > 256)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = token[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

unsigned acme_retry_after(const char *value, unsigned dflt, unsigned min, unsigned max)
{
	uint64_t v = dflt;
	if (value != NULL) {
		while (*value == ' ' || *value == '\t')
			value++;
		char tmp[24];
		size_t n = strcspn(value, " \t\r\n");
		if (n > 0 && n < sizeof(tmp)) {
			memcpy(tmp, value, n);
			tmp[n] = '\0';
			if (strnum_u64z(tmp, UINT32_MAX, &v) < 0)
				v = dflt;
		}
	}
	return v < min ? min : v > max ? max : (unsigned)v;
}
