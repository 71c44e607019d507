/* tls - OpenSSL contexts and self-signed certificates */
#include "lib/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Mozilla's "intermediate" TLS 1.2 suites (v5.7); TLS 1.3 keeps OpenSSL's defaults. Only
 * forward-secret AEAD suites: no CBC, no RSA key exchange, no SHA-1 MACs. */
#define TLS12_CIPHERS                                                                       \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                        \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                        \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                        \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:prime256v1:secp384r1"

/* read_pem_fd - a PEM file's bytes into a memory BIO (the bytes are wiped when it is freed
 * by free_pem_bio); NULL with *error_r */
static BIO *read_pem_fd(int fd, const char *what, char **data_r, size_t *len_r, char **error_r)
{
	if (fs_read_fd(fd, 1024 * 1024, data_r, len_r) < 0) {
		*error_r = xasprintf("%s: %s", what, strerror(errno));
		return NULL;
	}
	return BIO_new_mem_buf(*data_r, (int)*len_r);
}

static void free_pem_bio(BIO *bio, char *data, size_t len)
{
	BIO_free(bio);
	if (data != NULL)
		explicit_bzero(data, len);
	free(data);
}

/* use_chain - the first certificate of bio as the leaf, the others as its chain */
static int use_chain(SSL_CTX *ctx, BIO *bio)
{
	X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
	if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1) {
		X509_free(leaf);
		return -1;
	}
	X509_free(leaf);
	SSL_CTX_clear_chain_certs(ctx);
	X509 *ca;
	while ((ca = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
			X509_free(ca);
			return -1;
		}
	}
	/* the loop ends on "no start line" at the end of the file: not an error */
	unsigned long e = ERR_peek_last_error();
	if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
		ERR_clear_error();
	return ERR_peek_error() == 0 ? 0 : -1;
}

SSL_CTX *tls_server_ctx_fd(int cert_fd, const char *cert_name, int key_fd,
			   const char *key_name, char **error_r)
{
	char *cert_pem = NULL, *key_pem = NULL;
	size_t cert_len = 0, key_len = 0;
	BIO *cert_bio = NULL, *key_bio = NULL;
	EVP_PKEY *key = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		*error_r = ssl_error("SSL_CTX_new");
		return NULL;
	}
	/* TLS 1.2 and 1.3 only; the client's cipher order (all suites are strong: Mozilla
	 * intermediate's "prefer server ciphers: off"); no compression (CRIME), no
	 * renegotiation (a client could make us redo handshakes) */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1) {
		*error_r = ssl_error("TLS parameters");
		goto fail;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	ERR_clear_error();
	cert_bio = read_pem_fd(cert_fd, cert_name, &cert_pem, &cert_len, error_r);
	if (cert_bio == NULL)
		goto fail;
	if (use_chain(ctx, cert_bio) < 0) {
		*error_r = ssl_error(cert_name);
		goto fail;
	}
	key_bio = read_pem_fd(key_fd, key_name, &key_pem, &key_len, error_r);
	if (key_bio == NULL)
		goto fail;
	key = PEM_read_bio_PrivateKey(key_bio, NULL, NULL, NULL);
	if (key == NULL || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = ssl_error(key_name);
		goto fail;
	}
	EVP_PKEY_free(key);
	free_pem_bio(cert_bio, cert_pem, cert_len);
	free_pem_bio(key_bio, key_pem, key_len);
	return ctx;
fail:
	EVP_PKEY_free(key);
	free_pem_bio(cert_bio, cert_pem, cert_len);
	free_pem_bio(key_bio, key_pem, key_len);
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, char **error_r)
{
	int cfd = open(cert_path, O_RDONLY | O_CLOEXEC);
	if (cfd < 0) {
		*error_r = xasprintf("%s: %s", cert_path, strerror(errno));
		return NULL;
	}
	int kfd = open(key_path, O_RDONLY | O_CLOEXEC);
	if (kfd < 0) {
		*error_r = xasprintf("%s: %s", key_path, strerror(errno));
		close(cfd);
		return NULL;
	}
	SSL_CTX *ctx = tls_server_ctx_fd(cfd, cert_path, kfd, key_path, error_r);
	close(cfd);
	close(kfd);
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
	return tls_make_selfsigned_for(cert_path, key_path, hostname, NULL, 0, error_r);
}

int tls_make_selfsigned_for(const char *cert_path, const char *key_path, const char *hostname,
			    const char *const *addrs, size_t n_addrs, char **error_r)
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
	/* the host name and every address clients may connect to (a client that connects
	 * by address checks it against the IP SANs) */
	buf san;
	buf_init(&san, 0);
	buf_printf(&san, "DNS:%s", hostname);
	for (size_t i = 0; i < n_addrs; i++)
		buf_printf(&san, ",IP:%s", addrs[i]);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, buf_cstr(&san));
	buf_free(&san);
	if (ext == NULL) {
		*error_r = ssl_error("subjectAltName");
		goto out;
	}
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
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
