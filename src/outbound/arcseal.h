/* arcseal - ARC sealing (RFC 8617) of the copies an alias forwards to another domain, made
 * by the queue runner at send time (it holds the DKIM keys; workers do not).
 *
 * A forwarded copy is recognised by its envelope sender: an SRS0 address at one of our
 * domains that srs_reverse accepts (our key, not expired). Its text, as queued, begins with
 * our own Authentication-Results field (inbound/, authserv-id ours): that field's results
 * become the ARC-Authentication-Results, and its arc= result the seal's cv=. */
#ifndef TERN_OUTBOUND_ARCSEAL_H
#define TERN_OUTBOUND_ARCSEAL_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "lib/buf.h"

struct tern_config;
struct dkim_keyring;
struct dkim_key;

/* arcseal_is_forward - is sender an SRS0 address of ours (a local domain, a hash made with
 * cfg's SRS key, within srs_max_age)? False when SRS or its key is off. */
bool arcseal_is_forward(const struct tern_config *cfg, const char *sender, time_t now);

/* arcseal_our_field - the length of the Authentication-Results field naming authserv_id
 * that text[0..len) begins with (through its last line end), or 0 when it does not. */
size_t arcseal_our_field(const char *text, size_t len, const char *authserv_id);

/* arcseal_our_results - when text[0..len) begins with an Authentication-Results field that
 * names authserv_id, its results (after "id;", unfolded, trimmed; caller frees) in *ar_r
 * and the cv for the seal in *cv_r ("none" "pass" "fail", static): the field's arc= result,
 * or "none" when it has none and the header holds no ARC-Seal. 1, or 0 when the text does
 * not begin with such a field or the cv cannot be told (nothing set). */
int arcseal_our_results(const char *text, size_t len, const char *authserv_id, char **ar_r,
			const char **cv_r);

/* arcseal_pick_key - the key to seal for domain: its newest RSA key (RFC 8617 names
 * rsa-sha256; verifiers know it), else its newest Ed25519 key; NULL when it has none. */
const struct dkim_key *arcseal_pick_key(const struct dkim_keyring *ring, const char *domain);

/* arcseal_make - the three ARC fields for text[0..len) (what is about to be sent) appended
 * to out when the envelope sender is a forward of ours (arcseal_is_forward), the text
 * carries our results and the SRS domain has a key. Returns 1 (sealed), 0 (not for
 * sealing; *why_r says why, static text), -1 (*error_r, caller frees). */
int arcseal_make(const struct tern_config *cfg, const struct dkim_keyring *ring,
		 const char *text, size_t len, const char *sender, time_t now, buf *out,
		 const char **why_r, char **error_r);

#endif
