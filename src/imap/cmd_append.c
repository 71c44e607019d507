/* imap/cmd_append - APPEND (stub: being written) */
#include "imap/imap_private.h"

void imap_cmd_append(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	imap_reply(s, "%s NO [CANNOT] APPEND not implemented yet", r->tag);
}

void imap_append_stream_begin(struct imap_session *s)
{
	imap_parser_stream_reject(s->parser);
}

bool imap_append_stream_feed(struct imap_session *s)
{
	return true;
}

void imap_append_free(struct imap_append_job **job)
{
	*job = NULL;
}
