/* recipient - local/alias/remote routing of one address (see recipient.h) */
#include "auth/recipient.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/accounts.h"
#include "auth/srs.h"
#include "config/config.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

bool recipient_is_local(const struct tern_config *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	return at != NULL && config_is_local_domain(cfg, at + 1);
}

static bool domain_is_local(void *ctx, const char *domain)
{
	return config_is_local_domain(ctx, domain);
}

/* is_postmaster - "postmaster@" any domain, in any case (the domain is checked apart) */
static bool is_postmaster(const char *address)
{
	return strncasecmp(address, "postmaster@", 11) == 0;
}

/* postmaster_targets - where postmaster mail goes when no user or alias of that name
 * exists at the domain: the postmaster key, else postmaster@ the first domain, else the
 * oldest user. RFC 5321 §4.5.1: it must always be accepted. */
static int postmaster_targets(struct accounts *a, const struct tern_config *cfg,
			      const char *address, char ***targets_r, size_t *n_r)
{
	int r = 0;
	if (cfg->postmaster != NULL) {
		if (!recipient_is_local(cfg, cfg->postmaster)) {
			*targets_r = xcalloc(2, sizeof(char *));
			(*targets_r)[0] = xstrdup(cfg->postmaster);
			*n_r = 1;
			return 1;
		}
		r = accounts_resolve(a, cfg->postmaster, domain_is_local, (void *)cfg, targets_r, n_r);
		if (r != 0)
			return r;
		log_warnx("postmaster = %s is not a user or alias; using the default",
			  cfg->postmaster);
	}
	char *primary = xasprintf("postmaster@%s", cfg->domains[0]);
	if (strcasecmp(primary, address) != 0)
		r = accounts_resolve(a, primary, domain_is_local, (void *)cfg, targets_r, n_r);
	free(primary);
	if (r != 0)
		return r;
	char *oldest = NULL;
	r = accounts_user_oldest(a, &oldest);
	if (r == 1) {
		*targets_r = xcalloc(2, sizeof(char *));
		(*targets_r)[0] = oldest;
		*n_r = 1;
	}
	return r;
}

int recipient_resolve(struct accounts *a, const struct tern_config *cfg, const char *address,
		      struct recipient_targets *t_r)
{
	memset(t_r, 0, sizeof(*t_r));
	if (!recipient_is_local(cfg, address)) {
		t_r->remotes = xcalloc(1, sizeof(char *));
		t_r->forwarded = xcalloc(1, sizeof(bool));
		t_r->remotes[t_r->n_remotes++] = xstrdup(address);
		return 1;
	}
	if (cfg->srs_key_ready) {
		char *orig = NULL;
		enum srs_status st = srs_reverse(cfg->srs_key, sizeof(cfg->srs_key), address,
						 cfg->srs_max_age, time(NULL), &orig);
		if (st == SRS_FORGED || st == SRS_EXPIRED)
			return -2;
		if (st == SRS_OK) {
			/* a bounce of forwarded mail: back to whoever sent it (routed again,
			 * in case the original sender is one of ours) */
			int r = recipient_resolve(a, cfg, orig, t_r);
			free(orig);
			return r == -2 ? 0 : r;
		}
	}
	char **targets;
	size_t n;
	int r = accounts_resolve(a, address, domain_is_local, (void *)cfg, &targets, &n);
	if (r == 0 && is_postmaster(address))
		r = postmaster_targets(a, cfg, address, &targets, &n);
	if (r <= 0)
		return r;
	t_r->locals = xcalloc(n, sizeof(char *));
	t_r->remotes = xcalloc(n, sizeof(char *));
	t_r->forwarded = xcalloc(n, sizeof(bool));
	for (size_t i = 0; i < n; i++) {
		if (recipient_is_local(cfg, targets[i])) {
			t_r->locals[t_r->n_locals++] = xstrdup(targets[i]);
		} else {
			t_r->forwarded[t_r->n_remotes] = true;
			t_r->remotes[t_r->n_remotes++] = xstrdup(targets[i]);
		}
	}
	accounts_targets_free(&targets);
	return 1;
}

void recipient_targets_free(struct recipient_targets *t)
{
	for (size_t i = 0; i < t->n_locals; i++)
		free(t->locals[i]);
	for (size_t i = 0; i < t->n_remotes; i++)
		free(t->remotes[i]);
	free(t->locals);
	free(t->remotes);
	free(t->forwarded);
	memset(t, 0, sizeof(*t));
}
