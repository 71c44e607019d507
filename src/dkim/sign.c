/* dkim_sign - DKIM-Signature fields for outgoing mail (RFC 6376 §5, RFC 8463) */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dkim/internal.h"
#include "lib/base64.h"
#include "lib/xmalloc.h"
#include "mime/address.h"

#define MAX_FIELDS 1000

const char *const dkim_signed_headers[] = {
	"from", "reply-to", "subject", "date", "to", "cc", "message-id", "in-reply-to",
	"references", "mime-version", "content-type", "content-transfer-encoding",
	"list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe",
	"list-post", "list-owner", "list-archive", NULL,
};

int dkim_crypto_sign(const struct dkim_key *key, const char *data, size_t len, buf *out)
{
	unsigned char hash[32], sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	int ok = 0;
	if (c == NULL)
		return -1;
	if (key->type == DKIM_KEYTYPE_ED25519) {
		unsigned int hl = 0;
		ok = EVP_Digest(data, len, hash, &hl, EVP_sha256(), NULL) == 1 &&
		     EVP_DigestSignInit(c, NULL, NULL, NULL, key->pkey) == 1 &&
		     EVP_DigestSign(c, sig, &siglen, hash, hl) == 1;
	} else {
		ok = EVP_PKEY_get_size(key->pkey) <= (int)sizeof(sig) &&
		     EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
		     EVP_DigestSign(c, sig, &siglen, (const unsigned char *)data, len) == 1;
	}
	EVP_MD_CTX_free(c);
	if (!ok)
		return -1;
	return base64_encode(sig, siglen, out);
}

void dkim_fold_b64(buf *out, const char *b64, size_t len, size_t col)
{
	for (size_t i = 0; i < len; i++) {
		if (col >= 76) {
			buf_puts(out, "\r\n\t ");
			col = 2;
		}
		buf_putc(out, b64[i]);
		col++;
	}
}

void dkim_h_list(const struct dkim_header *h, buf *out)
{
	size_t col = 3;
	bool first = true;
	for (size_t i = 0; dkim_signed_headers[i] != NULL; i++) {
		const char *name = dkim_signed_headers[i];
		size_t count = 0;
		for (size_t j = 0; j < h->n; j++)
			count += dkim_field_is(&h->f[j], name);
		if (strcmp(name, "from") == 0)
			count++;	/* oversigned: no From can be added after us */
		for (size_t k = 0; k < count; k++) {
			size_t nl = strlen(name);
			if (!first) {
				buf_putc(out, ':');
				col++;
			}
			if (col + nl > 76) {
				buf_puts(out, "\r\n\t ");
				col = 2;
			}
			buf_puts(out, name);
			col += nl;
			first = false;
		}
	}
}

void dkim_h_split(const char *list, struct dkim_sig *sig)
{
	const char *p = list;
	while (*p) {
		while (*p == ':' || *p == '\r' || *p == '\n' || *p == '\t' || *p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ':' && *p != '\r')
			p++;
		if (p > s) {
			sig->h = xreallocarray(sig->h, sig->n_h + 1, sizeof(*sig->h));
			sig->h[sig->n_h++] = xstrndup(s, (size_t)(p - s));
		}
	}
}

int dkim_sign_fold(const struct dkim_key *key, buf *field, const buf *data)
{
	buf b64;
	buf_init(&b64, 0);
	int rc = dkim_crypto_sign(key, data->data, data->len, &b64);
	if (rc == 0) {
		dkim_fold_b64(field, b64.data, b64.len, 4);
		buf_puts(field, "\r\n");
	}
	buf_free(&b64);
	return rc;
}

int dkim_sign_fields(const struct dkim_key *key, const struct dkim_header *h,
		     const unsigned char bh[32], buf *field, size_t name_len)
{
	buf hl, data;
	buf_init(&hl, 0);
	buf_init(&data, 0);
	dkim_h_list(h, &hl);
	buf_append(field, hl.data, hl.len);
	buf_puts(field, ";\r\n\tbh=");
	base64_encode(bh, 32, field);
	buf_puts(field, ";\r\n\tb=");
	struct dkim_sig sig;
	memset(&sig, 0, sizeof(sig));
	sig.canon_h = DKIM_CANON_RELAXED;
	dkim_h_split(buf_cstr(&hl), &sig);
	sig.b_raw_start = sig.b_raw_end = field->len - name_len;
	dkim_header_hash_input(h, &sig, field->data, field->len, name_len, &data);
	int rc = dkim_sign_fold(key, field, &data);
	dkim_sig_free(&sig);
	buf_free(&hl);
	buf_free(&data);
	return rc;
}

/* sign_hashed - dkim_sign with the relaxed body hash bh of msg already made */
static int sign_hashed(const struct dkim_key *key, const char *msg, size_t len,
		       const unsigned char bh[32], time_t now, buf *out, char **error_r)
{
	struct dkim_header h;
	dkim_header_split(msg, len, MAX_FIELDS, &h);
	buf field;
	buf_init(&field, 0);
	buf_printf(&field, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed; d=%s;\r\n\ts=%s; t=%lld;\r\n\th=",
		   key->type == DKIM_KEYTYPE_ED25519 ? "ed25519-sha256" : "rsa-sha256",
		   key->domain, key->selector, (long long)now);
	int rc = dkim_sign_fields(key, &h, bh, &field, strlen("DKIM-Signature:"));
	if (rc == 0)
		buf_append(out, field.data, field.len);
	else
		*error_r = xasprintf("signing with %s/%s failed", key->domain, key->selector);
	buf_free(&field);
	free(h.f);
	return rc;
}

/* relaxed_body_hash - of msg's body */
static int relaxed_body_hash(const char *msg, size_t len, unsigned char bh[32], char **error_r)
{
	struct dkim_header h;
	dkim_header_split(msg, len, 0, &h);
	uint64_t clen;
	int rc = dkim_body_hash(DKIM_CANON_RELAXED, msg + h.body_off, len - h.body_off, UINT64_MAX,
				bh, &clen);
	free(h.f);
	if (rc < 0)
		*error_r = xstrdup("body hash failed");
	return rc;
}

int dkim_sign(const struct dkim_key *key, const char *msg, size_t len, time_t now, buf *out,
	      char **error_r)
{
	unsigned char bh[32];
	if (relaxed_body_hash(msg, len, bh, error_r) < 0)
		return -1;
	return sign_hashed(key, msg, len, bh, now, out, error_r);
}

/* unfold_value - a field's value unfolded (CR/LF removed); caller frees */
static char *unfold_value(const struct dkim_field *f)
{
	const char *colon = memchr(f->start, ':', f->len);
	if (colon == NULL)
		return NULL;
	size_t off = (size_t)(colon - f->start) + 1;
	char *v = xmalloc(f->len - off + 1);
	size_t m = 0;
	for (size_t i = off; i < f->len; i++)
		if (f->start[i] != '\r' && f->start[i] != '\n')
			v[m++] = f->start[i];
	v[m] = '\0';
	return v;
}

char *dkim_from_domain(const char *msg, size_t len)
{
	struct dkim_header h;
	dkim_header_split(msg, len, MAX_FIELDS, &h);
	char *dom = NULL;
	for (size_t i = 0; i < h.n && dom == NULL; i++) {
		if (!dkim_field_is(&h.f[i], "from"))
			continue;
		char *v = unfold_value(&h.f[i]);
		struct mime_address *list = NULL;
		unsigned n = 0;
		mime_address_list_parse(v, strlen(v), 10, &list, &n);
		for (unsigned j = 0; j < n && dom == NULL; j++)
			if (list[j].kind == MIME_ADDR_MAILBOX && list[j].host != NULL &&
			    list[j].host[0] != '\0')
				dom = xstrdup(list[j].host);
		mime_address_list_free(&list, n);
		free(v);
		break;	/* the first From: only */
	}
	free(h.f);
	if (dom != NULL)
		for (char *p = dom; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	return dom;
}

/* pick_for - keys for domain, else for a parent of it that still has a dot */
static size_t pick_for(const struct dkim_keyring *ring, const char *domain,
		       const struct dkim_key **out, size_t max)
{
	size_t n = dkim_keyring_pick(ring, domain, out, max);
	for (const char *d = strchr(domain, '.'); n == 0 && d != NULL; d = strchr(d + 1, '.'))
		if (strchr(d + 1, '.') != NULL)
			n = dkim_keyring_pick(ring, d + 1, out, max);
	return n;
}

int dkim_sign_message(const struct dkim_keyring *ring, const char *msg, size_t len,
		      const char *sender, time_t now, buf *out, char **error_r)
{
	if (ring == NULL || ring->n == 0)
		return 0;
	const struct dkim_key *keys[2];
	size_t n = 0;
	char *from = dkim_from_domain(msg, len);
	if (from != NULL)
		n = pick_for(ring, from, keys, 2);
	free(from);
	if (n == 0 && sender != NULL) {
		const char *at = strrchr(sender, '@');
		if (at != NULL && at[1] != '\0')
			n = pick_for(ring, at + 1, keys, 2);
	}
	unsigned char bh[32];	/* one body hash for both signatures */
	if (n > 0 && relaxed_body_hash(msg, len, bh, error_r) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (sign_hashed(keys[i], msg, len, bh, now, out, error_r) < 0)
			return -1;
	return (int)n;
}
