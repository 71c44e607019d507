/* imap/cmd_fetch - FETCH and UID FETCH (stub: being written) */
#include "imap/imap_private.h"

void imap_cmd_fetch(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	imap_reply(s, "%s NO [CANNOT] FETCH not implemented yet", r->tag);
}

bool imap_fetch_resume(struct imap_session *s)
{
	return true;
}

void imap_fetch_free(struct imap_fetch_job **job)
{
	*job = NULL;
}
