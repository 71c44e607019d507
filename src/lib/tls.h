/* tls - OpenSSL contexts for servers, and self-signed certificates for first starts. */
#ifndef TERN_TLS_H
#define TERN_TLS_H
#include <openssl/ssl.h>

/* tls_init - OpenSSL global setup; call once. */
void tls_init(void);
/* tls_server_ctx - a server SSL_CTX (TLS 1.2+, sane ciphers) with cert chain and key from
 * PEM files. NULL with *error_r (caller frees). */
SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, char **error_r);
/* tls_make_selfsigned - write a new P-256 key (mode 0600) and a self-signed certificate for
 * hostname, valid ten years, each fsync'd. 0 or -1 with *error_r. */
int tls_make_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
			char **error_r);
/* tls_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" into out. */
const char *tls_describe(SSL *ssl, char *out, size_t outsz);

#endif
