/* dkim_parse - the pure parts of DKIM (RFC 6376) and ARC (RFC 8617): tag lists, the
 * DKIM-Signature and key record parsers, the header split and both canonicalisations.
 * No I/O, no DNS, no allocation that outlives the caller's struct: unit tests and the fuzz
 * target drive these directly. Errors are static strings (safe to keep). */
#ifndef TERN_DKIM_PARSE_H
#define TERN_DKIM_PARSE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* ---- tag=value lists (RFC 6376 §3.2) ------------------------------------------------------ */

#define DKIM_MAX_TAGS 32
#define DKIM_TAG_NAME_MAX 16

struct dkim_tag {
	char name[DKIM_TAG_NAME_MAX];
	const char *value;	/* the value without surrounding FWS (points into the text) */
	size_t vlen;
	size_t raw_start;	/* offsets in the text: just after '=' ... */
	size_t raw_end;		/* ... up to the ';' or the end (FWS included): what "b= emptied"
				   removes */
};

/* dkim_tags_parse - split s[0..len) into at most max tags (*n_r). Tag names are
 * ALPHA *(ALPHA/DIGIT/"_") up to DKIM_TAG_NAME_MAX-1 bytes; values hold only VALCHARs and
 * folding white space; a duplicate tag name is an error (§3.2). 0, or -1 with *error_r. */
int dkim_tags_parse(const char *s, size_t len, struct dkim_tag *tags, size_t max, size_t *n_r,
		    const char **error_r);
/* dkim_tag_find - the tag called name, or NULL */
const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name);

/* ---- DKIM-Signature (RFC 6376 §3.5) -------------------------------------------------------- */

enum dkim_alg { DKIM_ALG_NONE, DKIM_ALG_RSA_SHA256, DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA1 };
enum dkim_canon { DKIM_CANON_SIMPLE, DKIM_CANON_RELAXED };

#define DKIM_MAX_SIGNED_HEADERS 64

struct dkim_sig {
	/* filled as far as parsing got, even on error (for the result's d=, s=, a=, b) */
	char *d, *s, *a;	/* NUL-terminated copies; NULL when absent */
	char *b8;		/* the first 8 characters of b= (white space removed), or NULL */
	char *i;		/* i= or NULL */
	enum dkim_alg alg;
	enum dkim_canon canon_h, canon_b;
	char **h;		/* h= names, n_h of them (copies) */
	size_t n_h;
	buf b, bh;		/* decoded b= and bh= */
	bool has_l, has_t, has_x;
	uint64_t l, t, x;
	size_t b_raw_start, b_raw_end;	/* b='s value in the parsed text (to empty it) */
	/* ARC only (RFC 8617 §4.1): i= as an instance number, cv= */
	unsigned instance;
	char *cv;
};

/* dkim_sig_parse - parse a DKIM-Signature value s[0..len) (the text after the colon) into
 * *sig (zeroed here; free with dkim_sig_free even on error). Checks: v=1, a= known
 * (rsa-sha1 is parsed but reported), b= and bh= base64, c=, d=, s=, h= present and holding
 * "from", i= a subdomain of d=, l= t= x= decimal, x >= t, q= dns/txt. 0, or -1 with
 * *error_r. */
int dkim_sig_parse(const char *s, size_t len, struct dkim_sig *sig, const char **error_r);
/* dkim_arc_sig_parse - the same for ARC-Message-Signature (ams = true: as a DKIM-Signature
 * without v=, i= the instance 1..50) or ARC-Seal (ams = false: a=, b=, cv=, d=, i=, s=, t=;
 * no h=, bh=). */
int dkim_arc_sig_parse(const char *s, size_t len, bool ams, struct dkim_sig *sig,
		       const char **error_r);
void dkim_sig_free(struct dkim_sig *sig);

/* ---- key records (RFC 6376 §3.6.1, RFC 8463) ---------------------------------------------- */

struct dkim_keyrec {
	enum { DKIM_KEY_RSA, DKIM_KEY_ED25519, DKIM_KEY_UNKNOWN } k;
	bool sha256_ok;		/* h= absent or lists sha256 */
	bool email_ok;		/* s= absent, "*" or "email" */
	bool testing, strict;	/* t=y, t=s */
	bool revoked;		/* p= empty */
	buf p;			/* decoded public key */
};

/* dkim_keyrec_parse - parse a TXT record's text (strings joined). Unknown tags are ignored;
 * v= when present must be first and "DKIM1". 0, or -1 with *error_r. Free with
 * dkim_keyrec_free either way. */
int dkim_keyrec_parse(const char *txt, size_t len, struct dkim_keyrec *k, const char **error_r);
void dkim_keyrec_free(struct dkim_keyrec *k);

/* ---- the message --------------------------------------------------------------------------- */

struct dkim_field {
	const char *start;	/* "Name: value" with its folded lines */
	size_t len;		/* without the final line end */
	size_t name_len;	/* the name, white space before ':' excluded; len when no ':' */
};

struct dkim_header {
	struct dkim_field *f;	/* in message order */
	size_t n;
	size_t body_off;	/* offset of the body (after the empty line); the message length
				   when there is none */
};

/* dkim_header_split - the header fields of msg[0..len) (CRLF or LF line ends), at most
 * max_fields; fields past the cap are not listed (0 when all were, 1 when some were cut).
 * Free h->f with free(). */
int dkim_header_split(const char *msg, size_t len, size_t max_fields, struct dkim_header *h);
/* dkim_field_is - the field's name is name (ASCII case-insensitive) */
bool dkim_field_is(const struct dkim_field *f, const char *name);

/* dkim_canon_header - append field text[0..len) canonicalised (§3.4.1, §3.4.2) and CRLF. */
void dkim_canon_header(enum dkim_canon c, const char *text, size_t len, buf *out);

/* dkim_body_hash - SHA-256 of body[0..len) canonicalised (§3.4.3, §3.4.4), of at most limit
 * canonical bytes (UINT64_MAX: all). *canon_len_r: the whole canonical length. 0 or -1. */
int dkim_body_hash(enum dkim_canon c, const char *body, size_t len, uint64_t limit,
		   unsigned char out[32], uint64_t *canon_len_r);
/* dkim_body_canon - the canonical body itself (for tests), appended to out */
void dkim_body_canon(enum dkim_canon c, const char *body, size_t len, buf *out);

/* dkim_header_hash_input - the data a signature covers (§3.7): the fields named in sig->h
 * picked bottom-up, each canonicalised, then the signature field sig_field[0..sig_len)
 * (the whole "DKIM-Signature: ..." field) with its b= value emptied and no final CRLF.
 * value_off: where the value (what sig was parsed from) starts in sig_field. */
void dkim_header_hash_input(const struct dkim_header *h, const struct dkim_sig *sig,
			    const char *sig_field, size_t sig_len, size_t value_off, buf *out);

/* dkim_b64_decode_fws - base64 with folding white space removed; 0 or -1 */
int dkim_b64_decode_fws(const char *s, size_t len, buf *out);

#endif
