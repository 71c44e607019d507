/* tls - OpenSSL contexts and self-signed certificates */
#include "lib/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

void tls_init(void)
{
	OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}

/* ssl_error - the last OpenSSL error as text, prefixed with what we were doing. */
static char *ssl_error(const char *what)
{
	char e[256];
	unsigned long code = ERR_get_error();
	ERR_error_string_n(code, e, sizeof(e));
	ERR_clear_error();
	return xasprintf("%s: %s", what, code ? e : "unknown error");
}

SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = ssl_error("SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
		*error_r = ssl_error(cert_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = ssl_error(key_path);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* pem_to_file - serialise with the given writer into memory, then write atomically. */
static int write_pem(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, char **error_r)
{
	BIO *mem = BIO_new(BIO_s_mem());
	int ok = key ? PEM_write_bio_PrivateKey(mem, key, NULL, NULL, 0, NULL, NULL)
		     : PEM_write_bio_X509(mem, cert);
	if (!ok) {
		*error_r = ssl_error(path);
		BIO_free(mem);
		return -1;
	}
	char *data;
	long len = BIO_get_mem_data(mem, &data);
	int r = fs_write_file_atomic(path, data, (size_t)len, mode);
	if (r < 0)
		*error_r = xasprintf("%s: cannot write", path);
	BIO_free(mem);
	return r;
}

int tls_make_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
			char **error_r)
{
	int r = -1;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	if (key == NULL || x == NULL) {
		*error_r = ssl_error("key generation");
		goto out;
	}
	unsigned char serial[16];
	RAND_bytes(serial, sizeof(serial));
	serial[0] &= 0x7f;
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_set_version(x, 2);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)hostname, -1,
				   -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_CTX v3;
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	char *san = xasprintf("DNS:%s", hostname);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
	free(san);
	if (ext != NULL) {
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	if (!X509_sign(x, key, EVP_sha256())) {
		*error_r = ssl_error("certificate signing");
		goto out;
	}
	if (write_pem(key_path, 0600, key, NULL, error_r) < 0 ||
	    write_pem(cert_path, 0644, NULL, x, error_r) < 0)
		goto out;
	r = 0;
out:
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

const char *tls_describe(SSL *ssl, char *out, size_t outsz)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int alg = 0;
	int bits = c ? SSL_CIPHER_get_bits(c, &alg) : 0;
	snprintf(out, outsz, "%s with cipher %s (%d/%d bits)", SSL_get_version(ssl),
		 c ? SSL_CIPHER_get_name(c) : "unknown", bits, alg);
	return out;
}
