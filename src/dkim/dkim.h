/* dkim - DKIM signing and verification (RFC 6376, RFC 8463 Ed25519, RFC 8301), and ARC
 * (RFC 8617), on OpenSSL and the async resolver of outbound/dns.h.
 *
 * Keys: dkim_dir/<domain>/<selector>.pem (PKCS#8 PEM, RSA or Ed25519), root-only, made by
 * `tern dkim generate`. The master loads them as root before it forks the queue runner,
 * which signs with them (dkim_sign_message) when it sends a message to a remote server.
 * Verification (dkim_verify_start) is for the inbound pipeline: every key lookup is an async
 * TXT query, the result comes back through a callback from the event loop. */
#ifndef TERN_DKIM_H
#define TERN_DKIM_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib/buf.h"

struct dns;

/* ---- verification ------------------------------------------------------------------------ */

struct dkim_sig_result {
	const char *result;	/* RFC 8601 word: "pass" "fail" "neutral" "policy" "temperror" "permerror" */
	const char *domain;	/* d= (NULL when unparsable) */
	const char *selector;	/* s= (NULL when unparsable) */
	const char *algorithm;	/* a= value (NULL when unparsable) */
	const char *b;		/* the first 8 characters of b= for header.b (NULL when none) */
	const char *reason;	/* short human text, or NULL */
	/* additions */
	const char *identity;	/* i= as signed, or NULL (header.i) */
	bool testing;		/* the key record says t=y (RFC 6376 §3.6.1: do not treat a
				   failure differently from no signature) */
	bool body_length_limited;	/* l= was used: only part of the body is signed */
};
struct dkim_verify_result { size_t n; const struct dkim_sig_result *sigs; };	/* n == 0: dkim=none */
typedef void dkim_verify_cb(void *ctx, const struct dkim_verify_result *r);

/* At most this many DKIM-Signature fields are checked (the topmost ones, the most recently
 * added); the others are ignored. */
#define DKIM_MAX_SIGNATURES 8

/* dkim_verify_start - every DKIM-Signature of msg[0..len) (header + body as received, CRLF
 * or LF line ends); keys via d. The message is hashed during the call (each body hash once
 * per (canonicalisation, length) pair) and not kept: msg may be freed when this returns.
 * cb exactly once, from the loop, never from inside the call; result valid during cb only.
 * Results are in the order of the fields in the header (top first). */
struct dkim_verify *dkim_verify_start(struct dns *d, const char *msg, size_t len, dkim_verify_cb *cb, void *ctx);
void dkim_verify_cancel(struct dkim_verify *v);	/* cb is not called after this */

/* dkim_verify_set_now - verify as if the time were now (tests: expired x=); 0 = the clock */
void dkim_verify_set_now(time_t now);

/* ---- keys --------------------------------------------------------------------------------- */

enum dkim_key_type { DKIM_KEYTYPE_RSA, DKIM_KEYTYPE_ED25519 };

struct dkim_key {
	char *domain;		/* lower case */
	char *selector;
	enum dkim_key_type type;
	void *pkey;		/* EVP_PKEY * */
	long mtime;
};

struct dkim_keyring {
	struct dkim_key *keys;
	size_t n;
};

/* dkim_keyring_load - every dir/<domain>/<selector>.pem (no symlinks followed, regular files
 * of at most 64 KiB; when run as root, dir and the files must belong to root and not be
 * writable by group or others). A missing dir is an empty ring. Files that do not parse
 * are skipped with a warning. 0 with *ring_r, or -1 with *error_r. */
int dkim_keyring_load(const char *dir, struct dkim_keyring **ring_r, char **error_r);
void dkim_keyring_free(struct dkim_keyring **ring);

/* dkim_keyring_pick - the keys to sign for domain (exactly): the newest (selector sorting
 * last) of each type, at most max into out. Returns how many. */
size_t dkim_keyring_pick(const struct dkim_keyring *ring, const char *domain,
			 const struct dkim_key **out, size_t max);

/* dkim_key_record - the TXT record text for k ("v=DKIM1; k=rsa; p=..."); caller frees */
char *dkim_key_record(const struct dkim_key *k);

/* dkim_key_zone_line - the zone-file line that publishes k:
 * 'SEL._domainkey.DOMAIN. IN TXT "..." "..."' (the record cut into 255-byte strings), no
 * newline; caller frees */
char *dkim_key_zone_line(const struct dkim_key *k);

/* dkim_key_published - true when one of the n TXT records (strings joined) is a valid key
 * record with k's key type and public key (other tags may differ) */
bool dkim_key_published(const struct dkim_key *k, const char *const *txts, size_t n);

/* dkim_key_generate - a new key of type into dkim_dir/<domain>/<selector>.pem: directories
 * made 0700 where missing (never through a symlink; when run as root they must be root's),
 * the file written to a temporary name (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fsync'd, linked to
 * its name (an existing selector is refused) and the directory fsync'd. 0 with *key_r (free
 * with dkim_key_free), or -1 with *error_r. */
int dkim_key_generate(const char *dkim_dir, const char *domain, const char *selector,
		      enum dkim_key_type type, struct dkim_key **key_r, char **error_r);
void dkim_key_free(struct dkim_key **k);

/* ---- signing ------------------------------------------------------------------------------ */

/* dkim_sign - append a DKIM-Signature field for msg[0..len) (header + body, CRLF or LF) made
 * with key, folded, ending in CRLF: a=rsa-sha256 or ed25519-sha256, c=relaxed/relaxed, h=
 * the usual fields present in the message with From signed once more than it occurs, t=now,
 * no l=. 0, or -1 with *error_r. */
int dkim_sign(const struct dkim_key *key, const char *msg, size_t len, time_t now, buf *out,
	      char **error_r);

/* dkim_sign_message - sign msg for the first of these domains that has keys: the From:
 * domain, then the envelope sender's (sender may be NULL or ""), each also tried without
 * its leftmost labels (mail.example.com, then example.com). Every picked key signs (RSA and
 * Ed25519: dual signatures). Returns the number of signatures appended to out (0: no keys
 * for the message), or -1 with *error_r. */
int dkim_sign_message(const struct dkim_keyring *ring, const char *msg, size_t len,
		      const char *sender, time_t now, buf *out, char **error_r);

/* dkim_from_domain - the domain of the (first) address in the From: field of msg, lower
 * case, or NULL; caller frees */
char *dkim_from_domain(const char *msg, size_t len);

/* ---- ARC (RFC 8617) ----------------------------------------------------------------------- */

struct arc_verify_result {
	const char *cv;		/* "none" "pass" "fail" */
	unsigned instances;	/* the highest instance found (0 when none) */
	unsigned oldest_pass;	/* RFC 8617 §5.2 step 5 "oldest-pass", for cv=pass: 0 when
				   every AMS verified, else the lowest instance M+1 above the
				   newest AMS M that did not */
	const char *reason;	/* short human text, or NULL */
	const char *domain;	/* d= of the newest ARC-Seal, or NULL */
};
typedef void arc_verify_cb(void *ctx, const struct arc_verify_result *r);

/* arc_verify_start - validate the ARC chain of msg[0..len) (same rules as dkim_verify_start:
 * msg is hashed during the call, cb once from the loop, result valid during cb only). */
struct arc_verify *arc_verify_start(struct dns *d, const char *msg, size_t len, arc_verify_cb *cb, void *ctx);
void arc_verify_cancel(struct arc_verify *v);

/* arc_seal - the three ARC header fields (ARC-Seal, ARC-Message-Signature,
 * ARC-Authentication-Results, in that order, each folded and ending in CRLF) to prepend to
 * msg[0..len) for instance i+1, where cv is the result of arc_verify on msg ("none" when it
 * has no chain, "pass" or "fail"). ar: the Authentication-Results text we produced, without
 * "Authentication-Results:" and without the authserv-id (e.g. "spf=pass smtp.mailfrom=...;
 * dkim=pass header.d=..."); authserv_id: ours. A message whose chain failed gets no seal
 * (RFC 8617 §5.1.2: returns 0 and appends nothing). Returns 1 with the fields appended to
 * out, 0, or -1 with *error_r. */
int arc_seal(const struct dkim_key *key, const char *msg, size_t len, const char *cv,
	     const char *authserv_id, const char *ar, time_t now, buf *out, char **error_r);

#endif
