/* imap/cmd_append - APPEND (RFC 9051 §6.3.12) with APPENDUID (RFC 4315), APPENDLIMIT /
 * TOOBIG (RFC 7889), LITERAL+ (RFC 7888) and literal8 (RFC 3516).
 *
 * A small message arrives inline in the command's arguments and is stored with
 * store_append. A large one (over the parser's inline limit) is announced to
 * imap_append_stream_begin before any of its bytes: the command so far is checked there,
 * the store's streaming append begun, and imap_append_stream_feed moves the bytes from the
 * input into the store file as they arrive, so the message is never in memory whole. When
 * the command line ends, imap_cmd_append finishes (or aborts) that append. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>

#include "imap/datetime.h"
#include "imap/imap_private.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct imap_append_job {
	struct store_append *ap;
	uint64_t left;		/* bytes of the literal still to come */
	bool binary;		/* literal8: NUL allowed */
	bool nul;		/* a NUL arrived in a plain literal: refused at the end */
	uint32_t flags;
	char *keywords;
	int64_t date;
};

void imap_append_free(struct imap_append_job **jp)
{
	struct imap_append_job *j = *jp;
	if (j == NULL)
		return;
	store_append_abort(&j->ap);	/* a client that went away mid-literal leaves nothing */
	free(j->keywords);
	free(j);
	*jp = NULL;
}

/* append_opts - the optional flag list and date-time in args[1..n) (the message literal
 * not included): 0, or -1 with *error_r */
static int append_opts(const struct imap_arg *args, size_t n, uint32_t *flags_r,
		       char **keywords_r, int64_t *date_r, const char **error_r)
{
	size_t i = 1;
	*flags_r = 0;
	*keywords_r = NULL;
	*date_r = 0;
	if (i < n && args[i].type == IMAP_ARG_LIST) {
		if (imap_flags_parse(&args[i], flags_r, keywords_r, error_r) < 0)
			return -1;
		i++;
	}
	if (i < n && (args[i].type == IMAP_ARG_QUOTED || args[i].type == IMAP_ARG_LITERAL) &&
	    !args[i].streamed) {
		if (imap_datetime_parse(args[i].str, date_r) < 0) {
			free(*keywords_r);
			*keywords_r = NULL;
			*error_r = "Invalid date-time";
			return -1;
		}
		i++;
	}
	if (i != n) {
		free(*keywords_r);
		*keywords_r = NULL;
		*error_r = "Usage: APPEND mailbox [(flags)] [date-time] message";
		return -1;
	}
	return 0;
}

/* append_result - the store's answer as the tagged reply. A message appended to the
 * selected mailbox is announced (EXISTS) before it (RFC 9051 §6.3.12): imap_reply syncs the
 * view before any command's tagged reply. */
static void append_result(struct imap_session *s, const struct imap_req *r, int rc, char *err,
			  uint32_t uidvalidity, uint32_t uid)
{
	if (rc == STORE_NOTFOUND) {
		free(err);
		imap_reply(s, "%s NO [TRYCREATE] No such mailbox", r->tag);
	} else if (rc < 0) {
		imap_store_error(s, r, rc, err);
	} else {
		imap_reply(s, "%s OK [APPENDUID %u %u] APPEND completed", r->tag, uidvalidity, uid);
	}
}

/* An APPEND whose file is being made durable on a sync thread: the fsync of the file, its
 * rename into new/ and the fsync of new/ (store_append_sync); the index row and the tagged
 * reply follow on the loop, never before. A session that ended meanwhile was told nothing:
 * the file is taken back out of new/. */
struct append_wait {
	struct imap_wait w;		/* first */
	struct store_append *ap;
	char *tag;
};

static void append_sync_work(struct bgjob *j)
{
	struct append_wait *a = (struct append_wait *)j;
	store_append_sync(a->ap);
}

static void append_sync_done(struct bgjob *j)
{
	struct append_wait *a = (struct append_wait *)j;
	struct imap_session *s = imap_wait_end(&a->w);
	if (s == NULL) {
		store_append_abort(&a->ap);
	} else {
		uint32_t uidvalidity = 0, uid = 0;
		char *err = NULL;
		int rc = store_append_commit(&a->ap, &uidvalidity, &uid, &err);
		struct imap_req r = { .tag = a->tag, .name = "APPEND" };
		append_result(s, &r, rc, err, uidvalidity, uid);
		imap_wait_resume(s);
	}
	free(a->tag);
	free(a);
}

/* append_complete - the message is in ap: make it durable and index it, then answer; on a
 * sync thread when the worker has them. Frees *app. */
static void append_complete(struct imap_session *s, const struct imap_req *r,
			    struct store_append **app, uint32_t flags, const char *keywords,
			    int64_t date)
{
	char *err = NULL;
	int rc = store_append_seal(*app, flags, keywords, date, &err);
	if (rc < 0) {
		store_append_abort(app);
		append_result(s, r, rc, err, 0, 0);
		return;
	}
	struct append_wait *a = xcalloc(1, sizeof(*a));
	a->w.job.work = append_sync_work;
	a->w.job.done = append_sync_done;
	a->ap = *app;
	a->tag = xstrdup(r->tag);
	*app = NULL;
	if (imap_wait_start(s, &a->w))
		return;
	/* no sync threads: here */
	*app = a->ap;
	free(a->tag);
	free(a);
	store_append_sync(*app);
	uint32_t uidvalidity = 0, uid = 0;
	rc = store_append_commit(app, &uidvalidity, &uid, &err);
	append_result(s, r, rc, err, uidvalidity, uid);
}

void imap_cmd_append(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	struct imap_append_job *job = s->append_done;
	s->append_done = NULL;
	const struct imap_arg *msg = r->n >= 2 ? &r->args[r->n - 1] : NULL;
	if (msg == NULL || msg->type != IMAP_ARG_LITERAL) {
		imap_append_free(&job);
		imap_bad(s, r, "Usage: APPEND mailbox [(flags)] [date-time] message");
		return;
	}
	if (msg->streamed) {
		/* everything but the end of the line was checked at imap_append_stream_begin */
		if (job == NULL || r->n > 4) {
			imap_append_free(&job);
			imap_bad(s, r, "Only one message per APPEND");
			return;
		}
		if (job->nul) {
			imap_append_free(&job);
			imap_reply(s, "%s NO NUL byte in a literal (use literal8)", r->tag);
			return;
		}
		append_complete(s, r, &job->ap, job->flags, job->keywords, job->date);
		imap_append_free(&job);
		return;
	}
	imap_append_free(&job);
	char *name = imap_mailbox_arg(s, r, 0);
	if (name == NULL)
		return;
	uint32_t flags;
	char *keywords;
	int64_t date;
	const char *perr;
	if (append_opts(r->args, r->n - 1, &flags, &keywords, &date, &perr) < 0) {
		free(name);
		imap_bad(s, r, perr);
		return;
	}
	if (msg->len > s->srv->cfg->max_message_size) {
		imap_reply(s, "%s NO [TOOBIG] Message too large (the limit is %llu octets)",
			   r->tag, (unsigned long long)s->srv->cfg->max_message_size);
	} else if (msg->len == 0) {
		imap_reply(s, "%s NO [CANNOT] Cannot store an empty message", r->tag);
	} else {
		struct store_append *ap;
		char *err = NULL;
		int rc = store_append_begin(s->store, name, &ap, &err);
		if (rc < 0) {
			append_result(s, r, rc, err, 0, 0);
		} else {
			store_append_write(ap, msg->str, msg->len);
			append_complete(s, r, &ap, flags, keywords, date);
		}
	}
	free(keywords);
	free(name);
}

/* stream_refuse - answer the command that announced the literal and drop it: a
 * synchronising literal is never sent; a non-synchronising one larger than a message may
 * be is not worth reading (RFC 7888 §4 allows closing), a smaller one is skipped */
static void stream_refuse(struct imap_session *s, const char *tag, bool too_big,
			  const char *status, const char *text)
{
	imap_reply(s, "%s %s %s", tag, status, text);
	imap_parser_stream_reject(s->parser);
	if (!imap_parser_literal_sync(s->parser) && too_big)
		session_close(s->ss, "* BYE Literal too large");
}

void imap_append_stream_begin(struct imap_session *s)
{
	const struct imap_command *c = imap_parser_command(s->parser);
	uint64_t size = imap_parser_literal_size(s->parser);
	uint64_t max = s->srv->cfg->max_message_size;
	bool too_big = size > max;
	const char *tag = c->tag != NULL ? c->tag : "*";
	imap_append_free(&s->append_done);
	if (c->name == NULL || strcasecmp(c->name, "APPEND") != 0) {
		stream_refuse(s, tag, too_big, "BAD", "Literal too large");
		session_bad_command(s->ss);
		return;
	}
	if (!session_authenticated(s->ss) || s->store == NULL) {
		stream_refuse(s, tag, too_big, "BAD", "APPEND not allowed before logging in");
		session_bad_command(s->ss);
		return;
	}
	struct imap_req r = { .tag = tag, .name = c->name, .args = c->args, .n = c->n_args };
	uint32_t flags;
	char *keywords;
	int64_t date;
	const char *perr;
	if (c->n_args < 1 || append_opts(c->args, c->n_args, &flags, &keywords, &date, &perr) < 0) {
		stream_refuse(s, tag, too_big, "BAD",
			      c->n_args < 1 ? "Missing mailbox name" : perr);
		session_bad_command(s->ss);
		return;
	}
	if (too_big) {
		free(keywords);
		char text[128];
		snprintf(text, sizeof(text), "Message too large (the limit is %llu octets)",
			 (unsigned long long)max);
		stream_refuse(s, tag, true, "NO [TOOBIG]", text);
		return;
	}
	/* imap_mailbox_arg answers BAD itself when the name is unusable */
	char *name = NULL;
	if (!imap_arg_is_astring(&c->args[0]) || memchr(c->args[0].str, '\0', c->args[0].len)) {
		stream_refuse(s, tag, false, "BAD", "Bad mailbox name");
		session_bad_command(s->ss);
		free(keywords);
		return;
	}
	name = imap_mailbox_arg(s, &r, 0);
	if (name == NULL) {
		free(keywords);
		imap_parser_stream_reject(s->parser);
		return;
	}
	struct store_append *ap;
	char *err = NULL;
	int rc = store_append_begin(s->store, name, &ap, &err);
	free(name);
	if (rc < 0) {
		free(keywords);
		if (rc == STORE_NOTFOUND) {
			free(err);
			stream_refuse(s, tag, false, "NO [TRYCREATE]", "No such mailbox");
		} else {
			imap_store_error(s, &r, rc, err);
			imap_parser_stream_reject(s->parser);
		}
		return;
	}
	struct imap_append_job *j = xcalloc(1, sizeof(*j));
	j->ap = ap;
	j->left = size;
	j->binary = imap_parser_literal_binary(s->parser);
	j->flags = flags;
	j->keywords = keywords;
	j->date = date;
	s->append = j;
	if (imap_parser_literal_sync(s->parser))
		imap_reply(s, "+ Ready for literal data");
}

bool imap_append_stream_feed(struct imap_session *s)
{
	struct imap_append_job *j = s->append;
	if (j == NULL)
		return true;
	struct evbuffer *in = conn_input(s->conn);
	while (j->left > 0) {
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return false;
		struct evbuffer_iovec v[4];
		int nv = evbuffer_peek(in, -1, NULL, v, 4);
		if (nv > 4)
			nv = 4;
		size_t used = 0;
		for (int i = 0; i < nv && j->left > 0; i++) {
			size_t take = v[i].iov_len < j->left ? v[i].iov_len : (size_t)j->left;
			if (!j->binary && !j->nul && memchr(v[i].iov_base, '\0', take) != NULL)
				j->nul = true;
			/* a write error is remembered by the store and reported at finish */
			(void)store_append_write(j->ap, v[i].iov_base, take);
			j->left -= take;
			used += take;
		}
		evbuffer_drain(in, used);
	}
	imap_parser_stream_done(s->parser);
	s->append_done = j;
	s->append = NULL;
	return true;
}
