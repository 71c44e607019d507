/* arcseal - ARC sealing of forwarded copies in the queue runner (see arcseal.h) */
#include "outbound/arcseal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/srs.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "inbound/inbound.h"
#include "lib/xmalloc.h"

bool arcseal_is_forward(const struct tern_config *cfg, const char *sender, time_t now)
{
	if (!cfg->srs || !cfg->srs_key_ready || sender == NULL)
		return false;
	const char *at = strrchr(sender, '@');
	if (at == NULL || strncasecmp(sender, "SRS0=", 5) != 0 ||
	    !config_is_local_domain(cfg, at + 1))
		return false;
	char *orig = NULL;
	enum srs_status st = srs_reverse(cfg->srs_key, sizeof(cfg->srs_key), sender,
					 cfg->srs_max_age, now, &orig);
	free(orig);
	return st == SRS_OK;
}

/* field_end - the end of the header field starting at text[0] (after its last line's LF,
 * continuation lines included), or len */
static size_t field_end(const char *text, size_t len)
{
	size_t i = 0;
	for (;;) {
		const char *nl = memchr(text + i, '\n', len - i);
		if (nl == NULL)
			return len;
		i = (size_t)(nl - text) + 1;
		if (i >= len || (text[i] != ' ' && text[i] != '\t'))
			return i;
	}
}

/* unfold - value[0..len) on one line: each line break and the white space around it
 * become one space; leading and trailing white space dropped. Caller frees. */
static char *unfold(const char *v, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;
	bool space = false;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true;
			continue;
		}
		if (space && o > 0)
			out[o++] = ' ';
		space = false;
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}

/* arc_result - the word of the first "arc=" resinfo in the unfolded results, or NULL
 * (semicolons inside quoted strings and comments do not separate resinfos) */
static const char *arc_result(const char *ar)
{
	static const char *const words[] = { "none", "pass", "fail" };
	bool start = true, quoted = false;
	int depth = 0;
	for (const char *p = ar; *p; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '"')
				quoted = false;
			continue;
		}
		if (depth > 0) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')')
				depth--;
			continue;
		}
		if (*p == ';') {
			start = true;
			continue;
		}
		if (*p == ' ')
			continue;
		if (start && strncasecmp(p, "arc=", 4) == 0) {
			for (size_t i = 0; i < 3; i++) {
				size_t n = strlen(words[i]);
				if (strncasecmp(p + 4, words[i], n) == 0 &&
				    strchr(" ;(", p[4 + n]) != NULL)
					return words[i];
			}
			return NULL;
		}
		start = false;
		if (*p == '"')
			quoted = true;
		else if (*p == '(')
			depth++;
	}
	return NULL;
}

/* has_arc_seal - does the header of text[0..len) hold an ARC-Seal field? */
static bool has_arc_seal(const char *text, size_t len)
{
	static const char name[] = "ARC-Seal:";
	size_t i = 0;
	while (i < len && text[i] != '\r' && text[i] != '\n') {
		if (len - i >= sizeof(name) - 1 && strncasecmp(text + i, name, sizeof(name) - 1) == 0)
			return true;
		i += field_end(text + i, len - i);
	}
	return false;
}

size_t arcseal_our_field(const char *text, size_t len, const char *authserv_id)
{
	static const char name[] = "Authentication-Results:";
	const size_t nl = sizeof(name) - 1;
	if (len < nl || strncasecmp(text, name, nl) != 0)
		return 0;
	size_t end = field_end(text, len);
	return inbound_authres_claims(text + nl, end - nl, authserv_id) ? end : 0;
}

int arcseal_our_results(const char *text, size_t len, const char *authserv_id, char **ar_r,
			const char **cv_r)
{
	const size_t nl = sizeof("Authentication-Results:") - 1;
	size_t end = arcseal_our_field(text, len, authserv_id);
	if (end == 0)
		return 0;
	const char *v = text + nl;
	size_t vlen = end - nl;
	const char *semi = memchr(v, ';', vlen);
	if (semi == NULL)
		return 0;
	char *ar = unfold(semi + 1, vlen - (size_t)(semi + 1 - v));
	const char *cv = arc_result(ar);
	if (cv == NULL && has_arc_seal(text + end, len - end)) {
		/* a chain we did not judge: sealing it with cv=none would be a lie */
		free(ar);
		return 0;
	}
	*ar_r = ar;
	*cv_r = cv ? cv : "none";
	return 1;
}

const struct dkim_key *arcseal_pick_key(const struct dkim_keyring *ring, const char *domain)
{
	const struct dkim_key *keys[4];
	size_t n = ring ? dkim_keyring_pick(ring, domain, keys, 4) : 0;
	for (size_t i = 0; i < n; i++)
		if (keys[i]->type == DKIM_KEYTYPE_RSA)
			return keys[i];
	return n > 0 ? keys[0] : NULL;
}

int arcseal_make(const struct tern_config *cfg, const struct dkim_keyring *ring,
		 const char *text, size_t len, const char *sender, time_t now, buf *out,
		 const char **why_r, char **error_r)
{
	if (!arcseal_is_forward(cfg, sender, now)) {
		*why_r = "not a forwarded copy";
		return 0;
	}
	char *ar = NULL;
	const char *cv = NULL;
	if (!arcseal_our_results(text, len, config_authserv_id(cfg), &ar, &cv)) {
		*why_r = "no Authentication-Results of ours on top";
		return 0;
	}
	char *domain = xstrdup(strrchr(sender, '@') + 1);
	for (char *p = domain; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	const struct dkim_key *key = arcseal_pick_key(ring, domain);
	free(domain);
	if (key == NULL) {
		free(ar);
		*why_r = "no DKIM key for the SRS domain";
		return 0;
	}
	int r = arc_seal(key, text, len, cv, config_authserv_id(cfg), ar, now, out, error_r);
	free(ar);
	if (r == 0)
		*why_r = "the chain had failed before (RFC 8617 section 5.1.2)";
	return r;
}
