/* recipient - where mail for an address goes: the one place that splits a recipient into
 * local mailboxes (after aliases) and remote addresses. SMTP's RCPT and the queue runner's
 * bounce path both use it, so an address is routed the same way whoever sends to it. */
#ifndef TERN_RECIPIENT_H
#define TERN_RECIPIENT_H
#include <stdbool.h>
#include <stddef.h>

struct accounts;
struct tern_config;

struct recipient_targets {
	char **locals;		/* mailbox addresses on this server */
	size_t n_locals;
	char **remotes;		/* addresses at other domains (alias targets or the address) */
	bool *forwarded;	/* per remote: an alias target (forwarding: SRS applies) */
	size_t n_remotes;
};

/* recipient_is_local - true when address's domain (after the last '@') is one of ours. */
bool recipient_is_local(const struct tern_config *cfg, const char *address);

/* recipient_resolve - route address: at a domain of ours it is expanded through aliases
 * (accounts_resolve) and each target lands in locals or remotes by its domain; elsewhere it
 * is one remote, itself. postmaster@ a domain of ours (any case) that is no user or alias
 * goes to the postmaster key's address, else to postmaster@ the first domain, else to the
 * oldest user (RFC 5321 §4.5.1: postmaster is always accepted). An SRS0 address at a domain
 * of ours (a bounce of mail we forwarded, auth/srs.h) is one remote: the original sender,
 * once its hash and age are checked. Returns 1 with *t_r filled (free with
 * recipient_targets_free), 0 when a local address has no user or alias (550 5.1.1), -1 when
 * the lookup failed (temporary), -2 for a forged or expired SRS address (550 5.7.1). Relay
 * policy is the caller's: this function routes, it does not authorise. */
int recipient_resolve(struct accounts *a, const struct tern_config *cfg, const char *address,
		      struct recipient_targets *t_r);
void recipient_targets_free(struct recipient_targets *t);

#endif
