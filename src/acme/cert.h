/* acme/cert - the X.509 side of the ACME client: CSRs and checking what the CA issued. */
#ifndef TERN_ACME_CERT_H
#define TERN_ACME_CERT_H
#include <stddef.h>

#include <openssl/evp.h>

/* acme_make_csr - a DER CSR signed by key naming every name as a DNS subjectAltName (and the
 * first as CN when it fits). Fresh OpenSSL memory (OPENSSL_free), *len_r set; NULL on failure. */
unsigned char *acme_make_csr(EVP_PKEY *key, char **names, size_t n, size_t *len_r);
/* acme_check_chain - NULL when the first certificate of the PEM chain is for key and names
 * every name; else a fresh reason. *not_after_r and *serial_r (fresh hex) describe it. */
char *acme_check_chain(const char *pem, size_t len, EVP_PKEY *key, char **names, size_t n,
		       long *not_after_r, char **serial_r);

#endif
