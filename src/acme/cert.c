/* acme/cert - names, the renewal decision, CSRs and the challenge directory */
#include "acme/acme.h"
#include "acme/cert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"

static void add_name(char ***list, size_t *n, char *name)
{
	for (size_t i = 0; i < *n; i++)
		if (strcasecmp((*list)[i], name) == 0) {
			free(name);
			return;
		}
	*list = xreallocarray(*list, *n + 1, sizeof(char *));
	(*list)[(*n)++] = name;
}

char **acme_names(const struct tern_config *cfg, size_t *n_r)
{
	char **list = NULL;
	size_t n = 0;
	if (cfg->n_acme_names > 0) {
		for (size_t i = 0; i < cfg->n_acme_names; i++)
			add_name(&list, &n, xstrdup(cfg->acme_names[i]));
	} else {
		add_name(&list, &n, xstrdup(cfg->hostname));
		for (size_t i = 0; i < cfg->n_domains; i++) {
			add_name(&list, &n, xasprintf("mta-sts.%s", cfg->domains[i]));
			add_name(&list, &n, xasprintf("autoconfig.%s", cfg->domains[i]));
		}
	}
	*n_r = n;
	return list;
}

void acme_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

char *acme_cert_due(const char *pem, size_t len, char **names, size_t n, unsigned renew_days,
		    long *not_after_r)
{
	*not_after_r = 0;
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (x == NULL)
		return xstrdup("no certificate could be read");
	char *why = NULL;
	struct tm tm;
	int days = 0, secs = 0;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		*not_after_r = (long)timegm(&tm);
	if (X509_check_issued(x, x) == X509_V_OK) {
		why = xstrdup("the certificate is self-signed");
	} else if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) != 1 ||
		   (long)days * 86400 + secs < (long)renew_days * 86400) {
		why = xasprintf("the certificate expires in %d days %d s (renewal %u days before)",
				days, secs, renew_days);
	} else {
		for (size_t i = 0; i < n && why == NULL; i++)
			if (X509_check_host(x, names[i], 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
				why = xasprintf("the certificate does not name %s", names[i]);
	}
	X509_free(x);
	return why;
}

unsigned char *acme_make_csr(EVP_PKEY *key, char **names, size_t n, size_t *len_r)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *subj = X509_NAME_new();
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	unsigned char *der = NULL;
	int ok = req != NULL && subj != NULL && gens != NULL && exts != NULL && n > 0;
	/* the CN is optional (RFC 8555 §7.4); a CN over 64 bytes would be invalid */
	if (ok && strlen(names[0]) <= 64)
		ok = X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC,
						(const unsigned char *)names[0], -1, -1, 0) == 1;
	for (size_t i = 0; ok && i < n; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
		ok = g != NULL && ia5 != NULL && ASN1_STRING_set(ia5, names[i], -1) == 1;
		if (!ok) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(ia5);
			break;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
		if (sk_GENERAL_NAME_push(gens, g) <= 0) {
			GENERAL_NAME_free(g);
			ok = 0;
		}
	}
	X509_EXTENSION *ext = ok ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
	if (ext == NULL || sk_X509_EXTENSION_push(exts, ext) <= 0) {
		X509_EXTENSION_free(ext);
		ok = 0;
	}
	ok = ok && X509_REQ_set_version(req, 0) == 1 && X509_REQ_set_subject_name(req, subj) == 1 &&
	     X509_REQ_add_extensions(req, exts) == 1 && X509_REQ_set_pubkey(req, key) == 1 &&
	     X509_REQ_sign(req, key, EVP_sha256()) > 0;
	int len = ok ? i2d_X509_REQ(req, &der) : -1;
	if (len <= 0) {
		der = NULL;
		len = 0;
	}
	*len_r = (size_t)len;
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(subj);
	X509_REQ_free(req);
	return der;
}

char *acme_check_chain(const char *pem, size_t len, EVP_PKEY *key, char **names, size_t n,
		       long *not_after_r, char **serial_r)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	*serial_r = NULL;
	*not_after_r = 0;
	if (x == NULL)
		return xstrdup("the certificate chain is not PEM");
	char *why = NULL;
	if (X509_check_private_key(x, key) != 1)
		why = xstrdup("the certificate is not for our key");
	for (size_t i = 0; i < n && why == NULL; i++)
		if (X509_check_host(x, names[i], 0, X509_CHECK_FLAG_NO_WILDCARDS, NULL) != 1)
			why = xasprintf("the certificate does not name %s", names[i]);
	struct tm tm;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		*not_after_r = (long)timegm(&tm);
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
	*serial_r = xstrdup(hex != NULL ? hex : "?");
	OPENSSL_free(hex);
	BN_free(bn);
	X509_free(x);
	return why;
}
