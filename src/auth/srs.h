/* srs - the Sender Rewriting Scheme for forwarded mail (the Shevek/libsrs2 "SRS0" form).
 *
 * A message that an alias forwards to another domain keeps SPF working only if its envelope
 * sender is one of ours: alice@example.org becomes
 *     SRS0=HHHHHHHH=TT=example.org=alice@forwarder.test
 * where TT is the day (days since the epoch, mod 1024, two base32 characters) and HHHHHHHH
 * the first 40 bits of HMAC-SHA256(key, lower-case "TT=domain=local"), base32 (case does
 * not matter: MTAs may change it). A bounce to that address is decoded back to the original
 * sender once its hash and age have been checked (constant-time compare). Not done: SRS1
 * (re-forwarding an SRS0 address is wrapped as a new SRS0, which also decodes correctly). */
#ifndef TERN_SRS_H
#define TERN_SRS_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define SRS_KEY_LEN 32

/* srs_forward - the SRS0 address for sender at srs_domain. NULL when sender needs no
 * rewriting: "" (the null sender), no '@', or already at srs_domain. Caller frees. */
char *srs_forward(const unsigned char *key, size_t key_len, const char *sender,
		  const char *srs_domain, time_t now);

enum srs_status {
	SRS_NOT_SRS = 0,	/* not an SRS0 address: route it as usual */
	SRS_OK = 1,		/* *orig_r holds the original sender */
	SRS_FORGED = -1,	/* malformed, or the hash does not match */
	SRS_EXPIRED = -2,	/* older than max_age_days (or from the future) */
};

/* srs_reverse - decode address (its local part; the domain is the caller's business).
 * max_age_days: how long a rewritten address is honoured (1..1000). */
enum srs_status srs_reverse(const unsigned char *key, size_t key_len, const char *address,
			    unsigned max_age_days, time_t now, char **orig_r);

/* srs_key_load - read the key (SRS_KEY_LEN random bytes) from fd, the key file path opened by
 * the caller (the master, through root's directories only); fd -1: the file is missing,
 * create it at path (mode 0600, from getrandom). 0, or -1 with *error_r. */
int srs_key_load(int fd, const char *path, unsigned char key[SRS_KEY_LEN], char **error_r);

struct tern_config;
/* srs_key_from_secret - fill cfg->srs_key with the SHA-256 of [inbound] srs_secret. */
void srs_key_from_secret(struct tern_config *cfg);

#endif
