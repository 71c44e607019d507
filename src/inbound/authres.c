/* authres - the Authentication-Results field (RFC 8601): formatting ours, recognising forged
 * ones, and the header scan that finds them and the From domains (see inbound.h) */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "inbound/inbound.h"
#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "mime/address.h"

/* is_token - RFC 2045 token: no specials, no space or control */
static bool is_token(const char *v)
{
	if (*v == '\0')
		return false;
	for (const char *p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    strchr("()<>@,;:\\\"/[]?=", *p) != NULL)
			return false;
	return true;
}

/* put_value - a property value (RFC 8601 §2.2: value or addr-spec): a token or a dot-atom
 * addr-spec as it is, else a quoted string (printable ASCII, '"' and '\' escaped; anything
 * else replaced by '?': the value comes from the client) */
static void put_value(buf *b, const char *v)
{
	bool plain = *v != '\0';
	for (const char *p = v; *p && plain; p++)
		plain = isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~.@", *p) != NULL;
	if (plain && strchr(v, '@') == NULL && !is_token(v))
		plain = false;
	if (plain) {
		buf_append(b, v, strlen(v));
		return;
	}
	buf_append(b, "\"", 1);
	for (const char *p = v; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\')
			buf_append(b, "\\", 1);
		buf_append(b, c >= 0x20 && c < 0x7f ? p : "?", 1);
	}
	buf_append(b, "\"", 1);
}

/* put_comment - " (text)" with parentheses and controls made harmless */
static void put_comment(buf *b, const char *text)
{
	buf_append(b, " (", 2);
	size_t n = 0;
	for (const char *p = text; *p && n < 200; p++, n++) {
		unsigned char c = (unsigned char)*p;
		buf_append(b, c >= 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' ? p : " ",
			   1);
	}
	buf_append(b, ")", 1);
}

/* put_arc - ";\r\n\tarc=RESULT (i=N d=SEALER) smtp.remote-ip=IP header.oldest-pass=N"
 * (RFC 8617 §6 and §10.2: the ptypes are recorded when known; oldest-pass for a pass) */
static void put_arc(buf *b, const struct inbound_results *r)
{
	buf_printf(b, ";\r\n\tarc=%s", r->arc);
	if (strcmp(r->arc, "fail") == 0 && r->arc_reason != NULL) {
		put_comment(b, r->arc_reason);
	} else if (r->arc_instances > 0) {
		char *c = xasprintf("i=%u%s%s", r->arc_instances, r->arc_domain ? " d=" : "",
				    r->arc_domain ? r->arc_domain : "");
		put_comment(b, c);
		free(c);
	}
	if (r->remote_ip != NULL && strcmp(r->arc, "none") != 0) {
		buf_append(b, " smtp.remote-ip=", 16);
		put_value(b, r->remote_ip);
	}
	if (strcmp(r->arc, "pass") == 0)
		buf_printf(b, " header.oldest-pass=%u", r->arc_oldest_pass);
}

char *inbound_authres_format(const char *authserv_id, const struct inbound_results *r)
{
	buf b;
	buf_init(&b, 0);
	buf_printf(&b, "Authentication-Results: %s;\r\n\tspf=%s", authserv_id,
		   spf_result_name(r->spf));
	if (r->spf_problem != NULL &&
	    (r->spf == SPF_TEMPERROR || r->spf == SPF_PERMERROR || r->spf == SPF_NONE))
		put_comment(&b, r->spf_problem);
	buf_printf(&b, " smtp.%s=", r->spf_helo ? "helo" : "mailfrom");
	put_value(&b, r->spf_identity);
	buf_append(&b, ";\r\n\t", 4);
	if (r->dkim == NULL || r->dkim->n == 0) {
		buf_append(&b, "dkim=none", 9);
	} else {
		for (size_t i = 0; i < r->dkim->n; i++) {
			const struct dkim_sig_result *s = &r->dkim->sigs[i];
			if (i > 0)
				buf_append(&b, ";\r\n\t", 4);
			buf_printf(&b, "dkim=%s", s->result ? s->result : "permerror");
			if (s->reason != NULL) {
				buf_append(&b, " reason=", 8);
				put_value(&b, s->reason);
			}
			if (s->domain != NULL) {
				buf_append(&b, " header.d=", 10);
				put_value(&b, s->domain);
			}
			if (s->selector != NULL) {
				buf_append(&b, " header.s=", 10);
				put_value(&b, s->selector);
			}
			if (s->algorithm != NULL) {
				buf_append(&b, " header.a=", 10);
				put_value(&b, s->algorithm);
			}
			if (s->b != NULL) {
				buf_append(&b, " header.b=", 10);
				put_value(&b, s->b);
			}
		}
	}
	buf_printf(&b, ";\r\n\tdmarc=%s", dmarc_result_name(r->dmarc));
	if (r->dmarc_policy && r->dmarc_override != NULL) {
		/* dis= is what we did: the sealer's passing chain overrode the policy */
		char *c = xasprintf("p=%s dis=none, local policy: ARC sealed by %s",
				    dmarc_policy_name(r->published), r->dmarc_override);
		put_comment(&b, c);
		free(c);
	} else if (r->dmarc_policy) {
		buf_printf(&b, " (p=%s dis=%s)", dmarc_policy_name(r->published),
			   dmarc_policy_name(r->disposition));
	}
	else if (r->dmarc_comment != NULL)
		put_comment(&b, r->dmarc_comment);
	if (r->dmarc_from != NULL) {
		buf_append(&b, " header.from=", 13);
		put_value(&b, r->dmarc_from);
	}
	if (r->arc != NULL)
		put_arc(&b, r);
	buf_append(&b, "\r\n", 3);	/* with the NUL */
	char *s = (char *)b.data;
	b.data = NULL;
	buf_free(&b);
	return s;
}

/* skip_cfws - white space, folds and (nested) comments */
static size_t skip_cfws(const char *v, size_t len, size_t i)
{
	int depth = 0;
	while (i < len) {
		char c = v[i];
		if (depth > 0) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
		} else if (c == '(') {
			depth++;
		} else if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
			break;
		}
		i++;
	}
	return i;
}

bool inbound_authres_claims(const char *value, size_t len, const char *authserv_id)
{
	size_t i = skip_cfws(value, len, 0);
	char id[256];
	size_t n = 0;
	if (i < len && value[i] == '"') {
		for (i++; i < len && value[i] != '"'; i++) {
			if (value[i] == '\\' && i + 1 < len)
				i++;
			if (n + 1 < sizeof(id))
				id[n++] = value[i];
		}
	} else {
		for (; i < len && value[i] != ';' && value[i] != ' ' && value[i] != '\t' &&
		       value[i] != '\r' && value[i] != '\n' && value[i] != '(';
		     i++)
			if (n + 1 < sizeof(id))
				id[n++] = value[i];
	}
	id[n] = '\0';
	/* a trailing dot names the same host */
	size_t al = strlen(authserv_id);
	if (n == al + 1 && id[n - 1] == '.')
		id[--n] = '\0';
	return n > 0 && strcasecmp(id, authserv_id) == 0;
}

/* unfold - the value without CR and LF (folds become their white space) */
static char *unfold(const char *v, size_t len, size_t *out_len)
{
	char *u = xmalloc(len + 1);
	size_t k = 0;
	for (size_t i = 0; i < len; i++)
		if (v[i] != '\r' && v[i] != '\n')
			u[k++] = v[i];
	u[k] = '\0';
	*out_len = k;
	return u;
}

/* add_from - the domains of the mailboxes of one From field */
static void add_from(struct inbound_header *h, const char *v, size_t len)
{
	size_t ul;
	char *u = unfold(v, len, &ul);
	struct mime_address *list = NULL;
	unsigned count = 0;
	mime_address_list_parse(u, ul, 100, &list, &count);
	for (unsigned i = 0; i < count; i++) {
		if (list[i].kind != MIME_ADDR_MAILBOX || list[i].host == NULL ||
		    *list[i].host == '\0')
			continue;
		char *d = xstrdup(list[i].host);
		for (char *p = d; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		h->from_domains = xreallocarray(h->from_domains, h->n_from + 1, sizeof(char *));
		h->from_domains[h->n_from++] = d;
	}
	mime_address_list_free(&list, count);
	free(u);
}

int inbound_header_scan(const char *hdr, size_t len, const char *authserv_id,
			struct inbound_header *h_r)
{
	memset(h_r, 0, sizeof(*h_r));
	size_t i = 0;
	while (i < len) {
		/* one field: its first line and its continuation lines */
		size_t start = i;
		size_t eol = i;
		while (eol < len && hdr[eol] != '\n')
			eol++;
		size_t line_end = eol < len ? eol + 1 : len;
		if (eol == i || (eol == i + 1 && hdr[i] == '\r'))
			break;	/* the empty line: the body follows */
		const char *colon = memchr(hdr + i, ':', eol - i);
		if (colon == NULL || colon == hdr + i || hdr[i] == ' ' || hdr[i] == '\t')
			break;	/* not a field: the header ended */
		size_t name_len = (size_t)(colon - (hdr + i));
		while (name_len > 0 && (hdr[i + name_len - 1] == ' ' || hdr[i + name_len - 1] == '\t'))
			name_len--;	/* obsolete "Name :" */
		size_t end = line_end;
		while (end < len && (hdr[end] == ' ' || hdr[end] == '\t')) {
			while (end < len && hdr[end] != '\n')
				end++;
			if (end < len)
				end++;
		}
		const char *v = colon + 1;
		size_t vlen = (size_t)(hdr + end - v);
		if (name_len == 4 && strncasecmp(hdr + start, "From", 4) == 0) {
			h_r->from_fields++;
			add_from(h_r, v, vlen);
		} else if (name_len == 22 &&
			   strncasecmp(hdr + start, "Authentication-Results", 22) == 0 &&
			   inbound_authres_claims(v, vlen, authserv_id)) {
			h_r->forged = xreallocarray(h_r->forged, h_r->n_forged + 1,
						    sizeof(*h_r->forged));
			h_r->forged[h_r->n_forged++] = (struct spool_range){ start, end };
		}
		i = end;
	}
	return 0;
}

void inbound_header_free(struct inbound_header *h)
{
	for (size_t i = 0; i < h->n_from; i++)
		free(h->from_domains[i]);
	free(h->from_domains);
	free(h->forged);
	memset(h, 0, sizeof(*h));
}
