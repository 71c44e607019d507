/* tls - OpenSSL contexts for servers, and self-signed certificates for first starts. */
#ifndef TERN_TLS_H
#define TERN_TLS_H
#include <stddef.h>

#include <openssl/ssl.h>

/* tls_init - OpenSSL global setup; call once. */
void tls_init(void);
/* tls_server_ctx_fd - a server SSL_CTX with the cert chain and key read from PEM files
 * already open (the caller chose how to open them: see fs_open_trusted; names are for
 * errors). TLS 1.2 and 1.3 only, Mozilla "intermediate" suites for TLS 1.2 and OpenSSL's
 * for 1.3, the client's order, no compression, no renegotiation. The key's bytes are wiped
 * from memory after use. NULL with *error_r (caller frees). */
SSL_CTX *tls_server_ctx_fd(int cert_fd, const char *cert_name, int key_fd,
			   const char *key_name, char **error_r);
/* tls_server_ctx - the same from two paths, opened as they are (symlinks followed). */
SSL_CTX *tls_server_ctx(const char *cert_path, const char *key_path, char **error_r);
/* tls_make_selfsigned - write a new P-256 key (mode 0600) and a self-signed certificate for
 * hostname, valid ten years, each fsync'd. 0 or -1 with *error_r. */
int tls_make_selfsigned(const char *cert_path, const char *key_path, const char *hostname,
			char **error_r);
/* tls_make_selfsigned_for - the same, naming in subjectAltName the n_addrs IP addresses
 * (text, "192.0.2.1" or "2001:db8::1") besides the host name. */
int tls_make_selfsigned_for(const char *cert_path, const char *key_path, const char *hostname,
			    const char *const *addrs, size_t n_addrs, char **error_r);
/* tls_describe - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)" into out. */
const char *tls_describe(SSL *ssl, char *out, size_t outsz);

#endif
