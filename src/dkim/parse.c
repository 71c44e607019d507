/* dkim_parse - tag lists, DKIM-Signature, key records (RFC 6376 §3.2, §3.5, §3.6.1) */
#include "dkim/parse.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/base64.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_valchar(unsigned char c)
{
	return c >= 0x21 && c <= 0x7e && c != ';';
}

/* dkim_tags_parse - tag-list = tag-spec *( ";" tag-spec ) [ ";" ] */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, size_t max, size_t *n_r,
		    const char **error_r)
{
	size_t n = 0, p = 0;
	*n_r = 0;
	while (p < len) {
		while (p < len && is_fws(s[p]))
			p++;
		if (p == len)
			break;	/* white space after the last ';' */
		size_t ns = p;
		if (!isalpha((unsigned char)s[p])) {
			*error_r = "bad tag name";
			return -1;
		}
		while (p < len && (isalnum((unsigned char)s[p]) || s[p] == '_'))
			p++;
		size_t nlen = p - ns;
		if (nlen >= DKIM_TAG_NAME_MAX) {
			*error_r = "tag name too long";
			return -1;
		}
		while (p < len && is_fws(s[p]))
			p++;
		if (p == len || s[p] != '=') {
			*error_r = "tag without '='";
			return -1;
		}
		p++;
		size_t raw_start = p;
		while (p < len && s[p] != ';') {
			if (!is_fws(s[p]) && !is_valchar((unsigned char)s[p])) {
				*error_r = "bad character in tag value";
				return -1;
			}
			p++;
		}
		size_t raw_end = p;
		size_t vs = raw_start, ve = raw_end;
		while (vs < ve && is_fws(s[vs]))
			vs++;
		while (ve > vs && is_fws(s[ve - 1]))
			ve--;
		for (size_t i = 0; i < n; i++)
			if (strlen(tags[i].name) == nlen && memcmp(tags[i].name, s + ns, nlen) == 0) {
				*error_r = "duplicate tag";
				return -1;
			}
		if (n == max) {
			*error_r = "too many tags";
			return -1;
		}
		memcpy(tags[n].name, s + ns, nlen);
		tags[n].name[nlen] = '\0';
		tags[n].value = s + vs;
		tags[n].vlen = ve - vs;
		tags[n].raw_start = raw_start;
		tags[n].raw_end = raw_end;
		n++;
		if (p < len)
			p++;	/* the ';' */
	}
	*n_r = n;
	return 0;
}

const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tags[i].name, name) == 0)
			return &tags[i];
	return NULL;
}

/* dkim_b64_decode_fws - base64 with folding white space removed */
int dkim_b64_decode_fws(const char *s, size_t len, buf *out)
{
	char *tmp = xmalloc(len + 1);
	size_t m = 0;
	for (size_t i = 0; i < len; i++)
		if (!is_fws(s[i]))
			tmp[m++] = s[i];
	int rc = m == 0 ? 0 : base64_decode(tmp, m, out);
	free(tmp);
	return rc;
}

/* tag_dup - the tag's value as a NUL-terminated copy, or NULL */
static char *tag_dup(const struct dkim_tag *t)
{
	return t == NULL ? NULL : xstrndup(t->value, t->vlen);
}

/* tag_number - a decimal tag value (at most 12 digits, as §3.5 allows); 0 or -1 */
static int tag_number(const struct dkim_tag *t, uint64_t *r)
{
	return t->vlen > 12 ? -1 : strnum_u64(t->value, t->vlen, UINT64_MAX, r);
}

/* dns_label_ok - a domain name as DKIM needs it: labels of letters, digits, '-', '_' */
static bool domain_ok(const char *d)
{
	size_t len = strlen(d), label = 0;
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

/* subdomain_of - i's domain part equals d or ends in "." d */
static bool subdomain_of(const char *i, const char *d)
{
	const char *at = strrchr(i, '@');
	const char *dom = at ? at + 1 : i;
	size_t dl = strlen(dom), l = strlen(d);
	if (dl == l)
		return strcasecmp(dom, d) == 0;
	return dl > l && dom[dl - l - 1] == '.' && strcasecmp(dom + dl - l, d) == 0;
}

/* parse_canon - c= "header[/body]" */
static int parse_canon(const struct dkim_tag *t, struct dkim_sig *sig)
{
	sig->canon_h = sig->canon_b = DKIM_CANON_SIMPLE;
	if (t == NULL)
		return 0;
	const char *slash = memchr(t->value, '/', t->vlen);
	size_t hl = slash ? (size_t)(slash - t->value) : t->vlen;
	const char *b = slash ? slash + 1 : NULL;
	size_t bl = slash ? t->vlen - hl - 1 : 0;
	if (hl == 6 && strncasecmp(t->value, "simple", 6) == 0)
		sig->canon_h = DKIM_CANON_SIMPLE;
	else if (hl == 7 && strncasecmp(t->value, "relaxed", 7) == 0)
		sig->canon_h = DKIM_CANON_RELAXED;
	else
		return -1;
	if (b == NULL)
		return 0;
	if (bl == 6 && strncasecmp(b, "simple", 6) == 0)
		sig->canon_b = DKIM_CANON_SIMPLE;
	else if (bl == 7 && strncasecmp(b, "relaxed", 7) == 0)
		sig->canon_b = DKIM_CANON_RELAXED;
	else
		return -1;
	return 0;
}

/* parse_h - h= "from : to : subject" into sig->h (names keep their case; compared
 * case-insensitively) */
static int parse_h(const struct dkim_tag *t, struct dkim_sig *sig)
{
	const char *p = t->value, *end = t->value + t->vlen;
	while (p <= end) {
		const char *c = memchr(p, ':', (size_t)(end - p));
		const char *e = c ? c : end;
		const char *a = p, *b = e;
		while (a < b && is_fws(*a))
			a++;
		while (b > a && is_fws(b[-1]))
			b--;
		if (a == b)
			return -1;
		for (const char *q = a; q < b; q++)
			if ((unsigned char)*q <= 0x20 || (unsigned char)*q > 0x7e)
				return -1;
		if (sig->n_h == DKIM_MAX_SIGNED_HEADERS)
			return -1;
		sig->h = xreallocarray(sig->h, sig->n_h + 1, sizeof(*sig->h));
		sig->h[sig->n_h++] = xstrndup(a, (size_t)(b - a));
		if (c == NULL)
			break;
		p = c + 1;
	}
	return 0;
}

/* sig_common - the tags DKIM-Signature and ARC-Message-Signature share */
static int sig_common(const struct dkim_tag *tags, size_t n, struct dkim_sig *sig, bool need_h,
		      const char **error_r)
{
	const struct dkim_tag *a = dkim_tag_find(tags, n, "a"), *b = dkim_tag_find(tags, n, "b"),
			      *d = dkim_tag_find(tags, n, "d"), *s = dkim_tag_find(tags, n, "s"),
			      *t = dkim_tag_find(tags, n, "t"), *x = dkim_tag_find(tags, n, "x");
	sig->d = tag_dup(d);
	sig->s = tag_dup(s);
	sig->a = tag_dup(a);
	if (b != NULL) {
		char tmp[9];
		size_t m = 0;
		for (size_t i = 0; i < b->vlen && m < 8; i++)
			if (!is_fws(b->value[i]))
				tmp[m++] = b->value[i];
		tmp[m] = '\0';
		sig->b8 = xstrdup(tmp);
		sig->b_raw_start = b->raw_start;
		sig->b_raw_end = b->raw_end;
	}
	if (a == NULL || b == NULL || d == NULL || s == NULL) {
		*error_r = "missing a required tag (a=, b=, d=, s=)";
		return -1;
	}
	if (strcasecmp(sig->a, "rsa-sha256") == 0)
		sig->alg = DKIM_ALG_RSA_SHA256;
	else if (strcasecmp(sig->a, "ed25519-sha256") == 0)
		sig->alg = DKIM_ALG_ED25519_SHA256;
	else if (strcasecmp(sig->a, "rsa-sha1") == 0)
		sig->alg = DKIM_ALG_RSA_SHA1;
	else {
		*error_r = "unknown algorithm";
		return -1;
	}
	if (!domain_ok(sig->d)) {
		*error_r = "bad d= domain";
		return -1;
	}
	if (sig->s[0] == '\0' || !domain_ok(sig->s)) {
		*error_r = "bad s= selector";
		return -1;
	}
	if (dkim_b64_decode_fws(b->value, b->vlen, &sig->b) < 0 || sig->b.len == 0) {
		*error_r = "bad b= (not base64)";
		return -1;
	}
	if ((sig->has_t = t != NULL) && tag_number(t, &sig->t) < 0) {
		*error_r = "bad t=";
		return -1;
	}
	if ((sig->has_x = x != NULL) && tag_number(x, &sig->x) < 0) {
		*error_r = "bad x=";
		return -1;
	}
	if (sig->has_t && sig->has_x && sig->x < sig->t) {
		*error_r = "x= before t=";
		return -1;
	}
	if (!need_h)
		return 0;
	const struct dkim_tag *bh = dkim_tag_find(tags, n, "bh"), *h = dkim_tag_find(tags, n, "h"),
			      *c = dkim_tag_find(tags, n, "c"), *l = dkim_tag_find(tags, n, "l");
	if (bh == NULL || h == NULL) {
		*error_r = "missing a required tag (bh=, h=)";
		return -1;
	}
	if (dkim_b64_decode_fws(bh->value, bh->vlen, &sig->bh) < 0 ||
	    sig->bh.len != (sig->alg == DKIM_ALG_RSA_SHA1 ? 20u : 32u)) {
		*error_r = "bad bh=";
		return -1;
	}
	if (parse_canon(c, sig) < 0) {
		*error_r = "bad c=";
		return -1;
	}
	if (parse_h(h, sig) < 0) {
		*error_r = "bad h=";
		return -1;
	}
	bool from = false;
	for (size_t i = 0; i < sig->n_h; i++)
		from |= strcasecmp(sig->h[i], "from") == 0;
	if (!from) {
		*error_r = "h= does not sign From";
		return -1;
	}
	if ((sig->has_l = l != NULL) && tag_number(l, &sig->l) < 0) {
		*error_r = "bad l=";
		return -1;
	}
	return 0;
}

static int sig_tags(const char *s, size_t len, struct dkim_tag *tags, size_t *n,
		    struct dkim_sig *sig, const char **error_r)
{
	memset(sig, 0, sizeof(*sig));
	buf_init(&sig->b, 4096);
	buf_init(&sig->bh, 64);
	return dkim_tags_parse(s, len, tags, DKIM_MAX_TAGS, n, error_r);
}

int dkim_sig_parse(const char *s, size_t len, struct dkim_sig *sig, const char **error_r)
{
	struct dkim_tag tags[DKIM_MAX_TAGS];
	size_t n;
	if (sig_tags(s, len, tags, &n, sig, error_r) < 0)
		return -1;
	const struct dkim_tag *v = dkim_tag_find(tags, n, "v"), *i = dkim_tag_find(tags, n, "i"),
			      *q = dkim_tag_find(tags, n, "q");
	int rc = sig_common(tags, n, sig, true, error_r);
	if (rc < 0)
		return -1;
	if (v == NULL || v->vlen != 1 || v->value[0] != '1') {
		*error_r = "v= is not 1";
		return -1;
	}
	if (q != NULL && !(q->vlen >= 7 && strncasecmp(q->value, "dns/txt", 7) == 0)) {
		*error_r = "q= is not dns/txt";
		return -1;
	}
	if (i != NULL) {
		sig->i = tag_dup(i);
		if (!subdomain_of(sig->i, sig->d)) {
			*error_r = "i= is not in d=";
			return -1;
		}
	}
	return 0;
}

int dkim_arc_sig_parse(const char *s, size_t len, bool ams, struct dkim_sig *sig,
		       const char **error_r)
{
	struct dkim_tag tags[DKIM_MAX_TAGS];
	size_t n;
	if (sig_tags(s, len, tags, &n, sig, error_r) < 0)
		return -1;
	const struct dkim_tag *i = dkim_tag_find(tags, n, "i");
	uint64_t inst;
	if (i == NULL || strnum_u64(i->value, i->vlen, 50, &inst) < 0 || inst < 1) {
		*error_r = "bad or missing i= instance";
		return -1;
	}
	sig->instance = (unsigned)inst;
	if (sig_common(tags, n, sig, ams, error_r) < 0)
		return -1;
	if (!ams) {
		const struct dkim_tag *cv = dkim_tag_find(tags, n, "cv");
		if (cv == NULL || dkim_tag_find(tags, n, "h") != NULL) {
			*error_r = "ARC-Seal needs cv= and has no h=";
			return -1;
		}
		sig->cv = tag_dup(cv);
		if (strcasecmp(sig->cv, "none") != 0 && strcasecmp(sig->cv, "pass") != 0 &&
		    strcasecmp(sig->cv, "fail") != 0) {
			*error_r = "bad cv=";
			return -1;
		}
	}
	return 0;
}

void dkim_sig_free(struct dkim_sig *sig)
{
	free(sig->d);
	free(sig->s);
	free(sig->a);
	free(sig->b8);
	free(sig->i);
	free(sig->cv);
	for (size_t i = 0; i < sig->n_h; i++)
		free(sig->h[i]);
	free(sig->h);
	buf_free(&sig->b);
	buf_free(&sig->bh);
	memset(sig, 0, sizeof(*sig));
}

/* list_has - a colon-separated list value holds word (case-insensitive) */
static bool list_has(const struct dkim_tag *t, const char *word)
{
	const char *p = t->value, *end = t->value + t->vlen;
	size_t wl = strlen(word);
	while (p <= end) {
		const char *c = memchr(p, ':', (size_t)(end - p));
		const char *e = c ? c : end, *a = p, *b = e;
		while (a < b && is_fws(*a))
			a++;
		while (b > a && is_fws(b[-1]))
			b--;
		if ((size_t)(b - a) == wl && strncasecmp(a, word, wl) == 0)
			return true;
		if (c == NULL)
			break;
		p = c + 1;
	}
	return false;
}

int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *k, const char **error_r)
{
	struct dkim_tag tags[DKIM_MAX_TAGS];
	size_t n;
	memset(k, 0, sizeof(*k));
	buf_init(&k->p, 8192);
	if (dkim_tags_parse(txt, len, tags, DKIM_MAX_TAGS, &n, error_r) < 0)
		return -1;
	const struct dkim_tag *v = dkim_tag_find(tags, n, "v"), *h = dkim_tag_find(tags, n, "h"),
			      *kt = dkim_tag_find(tags, n, "k"), *p = dkim_tag_find(tags, n, "p"),
			      *s = dkim_tag_find(tags, n, "s"), *t = dkim_tag_find(tags, n, "t");
	if (v != NULL && (v != &tags[0] || v->vlen != 5 || strncmp(v->value, "DKIM1", 5) != 0)) {
		*error_r = "v= is not DKIM1 first";
		return -1;
	}
	if (p == NULL) {
		*error_r = "no p= in key record";
		return -1;
	}
	k->k = DKIM_KEY_RSA;
	if (kt != NULL) {
		if (kt->vlen == 3 && strncasecmp(kt->value, "rsa", 3) == 0)
			k->k = DKIM_KEY_RSA;
		else if (kt->vlen == 7 && strncasecmp(kt->value, "ed25519", 7) == 0)
			k->k = DKIM_KEY_ED25519;
		else
			k->k = DKIM_KEY_UNKNOWN;
	}
	k->sha256_ok = h == NULL || list_has(h, "sha256");
	k->email_ok = s == NULL || list_has(s, "*") || list_has(s, "email");
	if (t != NULL) {
		k->testing = list_has(t, "y");
		k->strict = list_has(t, "s");
	}
	if (dkim_b64_decode_fws(p->value, p->vlen, &k->p) < 0) {
		*error_r = "p= is not base64";
		return -1;
	}
	k->revoked = k->p.len == 0;
	return 0;
}

void dkim_keyrec_free(struct dkim_keyrec *k)
{
	buf_free(&k->p);
}
