/* inbound - authentication of mail from other MTAs (the MX role, `smtp` listener, no AUTH):
 * SPF (spf/), DKIM (branch dkim, through authcheck_dkim_start), DMARC (dmarc/), and the
 * Authentication-Results header field (RFC 8601) that records them.
 *
 * The SMTP session calls inbound_begin() at MAIL FROM, which starts SPF and returns at once
 * (RCPT and DATA go on meanwhile), and inbound_finish() once the message is in the spool
 * file: it reads the header (From, forged Authentication-Results), starts DKIM, waits for
 * SPF, evaluates DMARC and calls back once with the verdict: the field to put on top, the
 * forged fields to remove, and accept / quarantine (Junk) / reject (550 5.7.1). */
#ifndef TERN_INBOUND_H
#define TERN_INBOUND_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dkim/dkim.h"
#include "dmarc/dmarc.h"
#include "queue/spool.h"
#include "spf/spf.h"

struct dns;
struct event_base;
struct tern_config;

/* ---- Authentication-Results (RFC 8601) ---------------------------------------------------- */

struct inbound_results {
	enum spf_result spf;
	bool spf_helo;			/* the HELO identity was checked (MAIL FROM was <>) */
	const char *spf_identity;	/* the MAIL FROM address or the HELO name */
	const char *spf_problem;	/* comment for errors, may be NULL */
	const struct dkim_verify_result *dkim;	/* NULL or n == 0: dkim=none */
	enum dmarc_result dmarc;
	const char *dmarc_from;		/* header.from domain, NULL when none was found */
	bool dmarc_policy;		/* a record was found: show p= and dis= */
	enum dmarc_policy published, disposition;
	const char *dmarc_comment;	/* e.g. "no From domain", may be NULL */
	const char *dmarc_override;	/* the trusted ARC sealer that overrode the policy
					   (RFC 8617 §7.2.1), or NULL */
	const char *arc;		/* "none" "pass" "fail"; NULL: no arc= result */
	unsigned arc_instances;		/* the newest ARC set's instance */
	unsigned arc_oldest_pass;	/* header.oldest-pass (cv=pass) */
	const char *arc_domain;		/* d= of the newest ARC-Seal, or NULL */
	const char *arc_reason;		/* for fail, may be NULL */
	const char *remote_ip;		/* smtp.remote-ip of arc=, may be NULL */
};

/* inbound_authres_format - the whole field, folded, ending in CRLF:
 * "Authentication-Results: <authserv-id>;\r\n\tspf=... smtp.mailfrom=...;\r\n\tdkim=...;
 * \r\n\tdmarc=... header.from=...;\r\n\tarc=... smtp.remote-ip=...\r\n" (arc= when r->arc is set:
 * RFC 8617 §6, with header.oldest-pass for a pass). Property values that are not tokens are quoted.
 * Caller frees. */
char *inbound_authres_format(const char *authserv_id, const struct inbound_results *r);

/* inbound_authres_claims - does the (unfolded or folded) value of an Authentication-Results
 * field name authserv_id (case-insensitive) as its authserv-id? Comments (CFWS) before it
 * are skipped; the id is a token or a quoted string. */
bool inbound_authres_claims(const char *value, size_t len, const char *authserv_id);

/* What the message header holds that the checks need. */
struct inbound_header {
	char **from_domains;		/* the domain of each From mailbox, lower case */
	size_t n_from;
	unsigned from_fields;		/* From: fields seen */
	struct spool_range *forged;	/* Authentication-Results fields claiming our id,
					   offsets relative to the header's start */
	size_t n_forged;
};

/* inbound_header_scan - scan the header block at hdr[0..len) (it ends at the first empty
 * line, a line that is neither a field nor a continuation, or len). 0 with *h_r (free with
 * inbound_header_free). */
int inbound_header_scan(const char *hdr, size_t len, const char *authserv_id,
			struct inbound_header *h_r);
void inbound_header_free(struct inbound_header *h);

/* ---- the pipeline ------------------------------------------------------------------------- */

enum inbound_action { INBOUND_ACCEPT, INBOUND_QUARANTINE, INBOUND_REJECT };

/* The verdict handed to inbound_finish's callback; valid during the call only. */
struct inbound_verdict {
	enum inbound_action action;
	const char *reply;		/* REJECT: the whole reply ("550 5.7.1 ...") */
	const char *header;		/* the Authentication-Results field to insert */
	const struct spool_range *cuts;	/* forged fields, absolute offsets in the file */
	size_t n_cuts;
	const char *summary;		/* "spf=pass dkim=none dmarc=pass" for the log */
};
typedef void inbound_cb(void *ctx, const struct inbound_verdict *v);

struct inbound;

/* inbound_begin - at MAIL FROM: start SPF for sender ("" for <>: then the HELO identity,
 * postmaster@helo). Needs cfg->inbound_checks; d must outlive the check. Never NULL. */
struct inbound *inbound_begin(struct event_base *base, struct dns *d,
			      const struct tern_config *cfg, const struct sockaddr *peer,
			      const char *helo, const char *sender);

/* inbound_finish - at the end of data: path is the spool file (flushed), whose message
 * text starts at hdr_start (after our Return-Path and Received) and which is size bytes
 * long. cb is called exactly once, from the loop, unless inbound_free comes first. Checks
 * still running after 30 s count as temperror. A file that cannot be read gives a verdict
 * of ACCEPT with results temperror. */
void inbound_finish(struct inbound *in, const char *path, uint64_t hdr_start, uint64_t size,
		    inbound_cb *cb, void *ctx);

/* inbound_forged_fields - for mail that gets no checks (submission): the Authentication-
 * Results fields of the message at path (text from hdr_start, size bytes in all) that claim
 * our authserv-id, as absolute ranges for spool_rewrite. Returns their number (0: *cuts_r
 * NULL) - a user must not hand a local recipient results in our name either. */
size_t inbound_forged_fields(const struct tern_config *cfg, const char *path, uint64_t hdr_start,
			     uint64_t size, struct spool_range **cuts_r);

/* inbound_arc_override - RFC 8617 §7.2.1 local policy: a DMARC fail that would be rejected
 * or quarantined is let through when the ARC chain passed (arc_cv "pass") and the newest
 * seal's d= (sealer) is in [inbound] arc_trusted_sealers (empty by default: never). Returns
 * the matching configured name (valid as long as cfg), or NULL. */
const char *inbound_arc_override(const struct tern_config *cfg, enum dmarc_result dmarc,
				 enum dmarc_policy disposition, const char *arc_cv,
				 const char *sealer);

/* inbound_free - cancel what still runs (no callback afterwards) and free; *in = NULL. */
void inbound_free(struct inbound **in);

#endif
