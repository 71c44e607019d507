/* dkim_internal - what sign.c, verify.c and arc.c share: the crypto and the folding */
#ifndef TERN_DKIM_INTERNAL_H
#define TERN_DKIM_INTERNAL_H
#include "dkim/dkim.h"
#include "dkim/parse.h"

/* dkim_crypto_sign - the signature of data (hashed with SHA-256; Ed25519 signs the 32-byte
 * hash, RFC 8463 §3) with key, base64 appended to out. 0 or -1. */
int dkim_crypto_sign(const struct dkim_key *key, const char *data, size_t len, buf *out);

/* dkim_crypto_verify - 1 when sig is pkey's signature of data under alg, 0 when not */
int dkim_crypto_verify(void *pkey, enum dkim_alg alg, const char *data, size_t len,
		       const unsigned char *sig, size_t siglen);

/* dkim_pubkey - the public key of a parsed record, for alg: NULL with *result_r
 * ("permerror"/"fail"/"policy") and *reason_r when it cannot be used (revoked, wrong type,
 * RSA under 1024 bits, h= without sha256, s= without email, unparsable). */
void *dkim_pubkey(const struct dkim_keyrec *k, enum dkim_alg alg, const char **result_r,
		  const char **reason_r);
void dkim_pubkey_free(void *pkey);

struct dns_txt_result;
/* dkim_key_verify - check sig over data with the key record answer r (DNS status, record
 * syntax, h=/s=/t=s/k= checks, revoked key, RSA size): *result_r an RFC 8601 word, *reason_r
 * NULL or text (static, or in reason_buf); *testing_r (may be NULL): the record says t=y */
void dkim_key_verify(const struct dns_txt_result *r, const struct dkim_sig *sig, const buf *data,
		     const char **result_r, const char **reason_r, char *reason_buf,
		     size_t reason_size, bool *testing_r);

/* dkim_sign_fold - sign data with key and append the signature to field (which ends in "b="),
 * folded, then CRLF. 0 or -1. */
int dkim_sign_fold(const struct dkim_key *key, buf *field, const buf *data);

/* dkim_sign_fields - finish a DKIM-Signature-shaped field (DKIM-Signature, ARC-Message-
 * Signature): field holds "NAME: <tags>; h=" (name_len: the length of "NAME:"); appended
 * are the h= list of h's fields (From oversigned), bh= (the relaxed body hash), and b=, the
 * relaxed signature over those fields and this one, folded, then CRLF. 0 or -1. */
int dkim_sign_fields(const struct dkim_key *key, const struct dkim_header *h,
		     const unsigned char bh[32], buf *field, size_t name_len);

/* dkim_fold_b64 - append b64 to out, folded as "\r\n\t" every 72 columns */
void dkim_fold_b64(buf *out, const char *b64, size_t len, size_t col);

/* dkim_now - the verification clock (dkim_verify_set_now) */
time_t dkim_now(void);

/* The usual header set we sign (lower case). */
extern const char *const dkim_signed_headers[];

/* dkim_h_list - "from:from:to:subject..." for the fields of h present (From oversigned) */
void dkim_h_list(const struct dkim_header *h, buf *out);

/* dkim_h_split - the names of an h= list dkim_h_list made, appended to sig->h */
void dkim_h_split(const char *list, struct dkim_sig *sig);

/* dkim_domain_has_key_query - "<selector>._domainkey.<domain>" (caller frees) */
char *dkim_key_query_name(const char *selector, const char *domain);

#endif
