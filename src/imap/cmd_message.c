/* imap/cmd_message - commands on the selected mailbox's messages: STORE, COPY, MOVE,
 * EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_private.h"
#include "lib/log.h"
#include "lib/conn.h"
#include "lib/strnum.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"

/* set_arg - argument 0 as the view's UIDs; false (BAD sent) when malformed */
static bool set_arg(struct imap_session *s, const struct imap_req *r, uint32_t **uids_r,
		    size_t *n_r)
{
	const char *err;
	if (r->n < 1 || r->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, r, "Missing sequence set");
		return false;
	}
	if (imap_view_set(s, r->args[0].str, r->uid, uids_r, n_r, &err) < 0) {
		imap_bad(s, r, err);
		return false;
	}
	return true;
}

static bool writable(struct imap_session *s, const struct imap_req *r)
{
	if (!s->view.readonly)
		return true;
	imap_reply(s, "%s NO [READ-ONLY] The mailbox is read-only (EXAMINE)", r->tag);
	return false;
}

/* ---- STORE ---- */

struct store_ctx {
	struct imap_session *s;
	bool silent;
	bool uid;
	uint32_t *modified;	/* not changed for UNCHANGEDSINCE: numbers or UIDs, ascending */
	size_t n_modified;
};

static void store_cb(void *ctx, const struct store_msg *m, enum store_update what)
{
	struct store_ctx *c = ctx;
	struct imap_session *s = c->s;
	if (what == STORE_UPDATE_CONFLICT) {
		/* RFC 7162 §3.1.3: sequence numbers for STORE, UIDs for UID STORE */
		uint32_t num = c->uid ? m->uid : imap_view_seq(&s->view, m->uid);
		if (num != 0)
			c->modified[c->n_modified++] = num;
		return;
	}
	if (what == STORE_UPDATE_CHANGED)
		imap_view_own(&s->view, m->uid, m->modseq);
	if (what == STORE_UPDATE_CHANGED)
		TRACE(NULL, "flags", "user=%s folder=%s uidvalidity=%u uid=%u seen=%d deleted=%d "
		      "flags=%u session=%s client=%s", s->user, s->view.name, s->view.uidvalidity,
		      m->uid, !!(m->flags & STORE_F_SEEN), !!(m->flags & STORE_F_DELETED),
		      (unsigned)m->flags, session_id(s->ss), conn_peer_ip(s->conn));
	if (c->silent && what == STORE_UPDATE_CHANGED && !s->condstore)
		return;
	if (c->silent && what == STORE_UPDATE_SAME)
		return;
	uint32_t seq = imap_view_seq(&s->view, m->uid);
	if (seq == 0)
		return;
	buf b;
	buf_init(&b, 0);
	buf_printf(&b, "* %u FETCH (", seq);
	if (!c->silent) {
		buf_puts(&b, "FLAGS ");
		imap_msg_flags_out(s, &b, m->flags, m->keywords);
		buf_putc(&b, ' ');
	}
	buf_printf(&b, "UID %u", m->uid);
	if (s->condstore)
		buf_printf(&b, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	buf_puts(&b, ")");
	imap_reply(s, "%s", buf_cstr(&b));
	buf_free(&b);
}

void imap_cmd_store(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	uint32_t *uids;
	size_t n;
	if (!set_arg(s, r, &uids, &n))
		return;
	size_t i = 1;
	uint64_t unchangedsince = 0;
	bool conditional = false;
	if (i < r->n && r->args[i].type == IMAP_ARG_LIST) {
		const struct imap_arg *m = &r->args[i++];
		if (m->n_list != 2 || !imap_arg_is_atom(&m->list[0], "UNCHANGEDSINCE") ||
		    m->list[1].type != IMAP_ARG_ATOM ||
		    strnum_u64z(m->list[1].str, INT64_MAX, &unchangedsince) < 0) {
			free(uids);
			imap_bad(s, r, "Bad STORE modifier");
			return;
		}
		s->condstore = true;
		conditional = true;
	}
	if (i + 1 >= r->n + 1 || i >= r->n || r->args[i].type != IMAP_ARG_ATOM) {
		free(uids);
		imap_bad(s, r, "Usage: STORE set [+|-]FLAGS[.SILENT] (flags)");
		return;
	}
	const char *item = r->args[i++].str;
	enum store_flag_op op = STORE_FLAGS_REPLACE;
	if (*item == '+' || *item == '-') {
		op = *item == '+' ? STORE_FLAGS_ADD : STORE_FLAGS_REMOVE;
		item++;
	}
	bool silent = false;
	if (strcasecmp(item, "FLAGS.SILENT") == 0)
		silent = true;
	else if (strcasecmp(item, "FLAGS") != 0) {
		free(uids);
		imap_bad(s, r, "Unknown STORE item");
		return;
	}
	/* the flags: one list, or flags as separate arguments (RFC 3501 store-att-flags) */
	struct imap_arg flat = { .type = IMAP_ARG_LIST, .list = (struct imap_arg *)&r->args[i],
				 .n_list = r->n - i };
	const struct imap_arg *fa = (r->n - i == 1 && r->args[i].type == IMAP_ARG_LIST)
					    ? &r->args[i]
					    : &flat;
	uint32_t flags;
	char *keywords;
	const char *ferr;
	if (r->n <= i || imap_flags_parse(fa, &flags, &keywords, &ferr) < 0) {
		free(uids);
		imap_bad(s, r, r->n <= i ? "Missing flags" : ferr);
		return;
	}
	if (!writable(s, r)) {
		free(uids);
		free(keywords);
		return;
	}
	size_t nr;
	struct store_uid_range *ranges = imap_uid_ranges(uids, n, &nr);
	struct store_ctx c = { .s = s, .silent = silent, .uid = r->uid };
	c.modified = xcalloc(n ? n : 1, sizeof(uint32_t));
	char *err = NULL;
	int rc = 0;
	if (conditional && unchangedsince == 0) {
		/* every message has a MODSEQ above 0, so every one fails the test and none is
		 * changed (RFC 7162 §3.1.3; the store reads 0 as "unconditional") */
		for (size_t k = 0; k < n; k++)
			c.modified[c.n_modified++] = r->uid ? uids[k] : imap_view_seq(&s->view, uids[k]);
	} else if (n > 0) {
		rc = store_flags_update(s->view.mb, ranges, nr, op, flags, keywords, unchangedsince,
					store_cb, &c, &err);
	}
	if (rc < 0) {
		imap_store_error(s, r, rc, err);
	} else if (c.n_modified > 0) {
		buf set;
		buf_init(&set, 0);
		imap_uid_set_out(&set, c.modified, c.n_modified);
		imap_reply(s, "%s OK [MODIFIED %s] Conditional STORE failed for some", r->tag,
			   buf_cstr(&set));
		buf_free(&set);
	} else {
		imap_reply(s, "%s OK STORE completed", r->tag);
	}
	free(c.modified);
	free(ranges);
	free(keywords);
	free(uids);
}

/* ---- COPY, MOVE ---- */

static void copy_or_move(struct imap_session *s, const struct imap_req *r, bool move)
{
	uint32_t *uids;
	size_t n;
	if (r->n != 2) {
		imap_bad(s, r, move ? "Usage: MOVE set mailbox" : "Usage: COPY set mailbox");
		return;
	}
	if (!set_arg(s, r, &uids, &n))
		return;
	char *dest = imap_mailbox_arg(s, r, 1);
	if (dest == NULL) {
		free(uids);
		return;
	}
	if (move && !writable(s, r)) {
		free(uids);
		free(dest);
		return;
	}
	if (n == 0) {
		imap_reply(s, "%s OK %s completed (no messages)", r->tag, move ? "MOVE" : "COPY");
		free(uids);
		free(dest);
		return;
	}
	size_t nr;
	struct store_uid_range *ranges = imap_uid_ranges(uids, n, &nr);
	struct store_copy_result res;
	char *err = NULL;
	int rc = store_copy(s->view.mb, ranges, nr, dest, move, &res, &err);
	if (rc == STORE_NOTFOUND) {
		free(err);
		imap_reply(s, "%s NO [TRYCREATE] No such mailbox", r->tag);
	} else if (rc < 0) {
		imap_store_error(s, r, rc, err);
	} else {
		buf code;
		buf_init(&code, 0);
		if (res.n > 0) {
			buf_printf(&code, "[COPYUID %u ", res.uidvalidity);
			imap_uid_set_out(&code, res.src_uids, res.n);
			buf_putc(&code, ' ');
			/* dst_uids follow src_uids' order, which is ascending: so are they */
			imap_uid_set_out(&code, res.dst_uids, res.n);
			buf_puts(&code, "] ");
		}
		for (size_t k = 0; trace_on && k < res.n; k++)
			trace_event(NULL, move ? "moved" : "copied", "user=%s folder=%s uidvalidity=%u "
				    "uid=%u to_folder=%s to_uidvalidity=%u to_uid=%u", s->user,
				    s->view.name, s->view.uidvalidity, res.src_uids[k], dest,
				    res.uidvalidity, res.dst_uids[k]);
		if (move) {
			/* RFC 6851 §4.3: COPYUID untagged before the expunges */
			if (res.n > 0)
				imap_reply(s, "* OK %sMoved", buf_cstr(&code));
			imap_view_remove(s, res.src_uids, res.n);
			imap_reply(s, "%s OK MOVE completed", r->tag);
		} else {
			imap_reply(s, "%s OK %sCOPY completed", r->tag, buf_cstr(&code));
		}
		buf_free(&code);
		store_copy_result_free(&res);
	}
	free(ranges);
	free(uids);
	free(dest);
}

void imap_cmd_copy(void *ctx, const void *req)
{
	copy_or_move(ctx, req, false);
}

void imap_cmd_move(void *ctx, const void *req)
{
	copy_or_move(ctx, req, true);
}

/* ---- EXPUNGE, CLOSE, UNSELECT ---- */

struct expunged {
	struct imap_session *s;
	uint32_t *uids;
	size_t n, cap;
};

static void expunge_cb(void *ctx, uint32_t uid, uint64_t modseq)
{
	struct expunged *e = ctx;
	TRACE(NULL, "expunged", "user=%s folder=%s uidvalidity=%u uid=%u by=%s session=%s",
	      e->s->user, e->s->view.name, e->s->view.uidvalidity, uid, "imap", session_id(e->s->ss));
	if (e->n == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 16;
		e->uids = xreallocarray(e->uids, e->cap, sizeof(*e->uids));
	}
	e->uids[e->n++] = uid;
}

/* expunge_deleted - remove \Deleted messages (in uids, or all); tell the client unless quiet */
static int expunge_deleted(struct imap_session *s, const uint32_t *uids, size_t n, bool all,
			   bool quiet, char **err)
{
	struct expunged e = { .s = s };
	size_t nr = 0;
	struct store_uid_range *ranges = all ? NULL : imap_uid_ranges(uids, n, &nr);
	int rc = 0;
	if (all || nr > 0)
		rc = store_expunge_deleted(s->view.mb, ranges, nr, expunge_cb, &e, err);
	if (rc >= 0 && !quiet)
		imap_view_remove(s, e.uids, e.n);
	free(ranges);
	free(e.uids);
	return rc;
}

/* An EXPUNGE whose commit is made durable on a sync thread (store_expunge_deleted_begin:
 * the WAL's fdatasync, then the unlinks and their directories' fsyncs); the client hears of
 * the expunges (and OK) on the loop afterwards, never before. */
struct expunge_wait {
	struct imap_wait w;		/* first */
	struct store_expunge_sync *es;
	struct expunged e;
	char *tag;
};

static void expunge_sync_work(struct bgjob *j)
{
	struct expunge_wait *x = (struct expunge_wait *)j;
	store_expunge_sync_run(x->es);
}

/* expunge_answer - the expunges are durable (or could not be made so: rc < 0) */
static void expunge_answer(struct imap_session *s, const char *tag, int rc, char *err,
			   const struct expunged *e)
{
	/* the rows are gone for every reader either way: the view follows the index */
	imap_view_remove(s, e->uids, e->n);
	struct imap_req r = { .tag = tag, .name = "EXPUNGE" };
	if (rc < 0)
		imap_store_error(s, &r, rc, err);
	else
		imap_reply(s, "%s OK EXPUNGE completed", tag);
}

static void expunge_sync_done(struct bgjob *j)
{
	struct expunge_wait *x = (struct expunge_wait *)j;
	struct imap_session *s = x->w.s;
	struct store *store = s != NULL ? s->store : NULL;
	s = imap_wait_end(&x->w);
	char *err = NULL;
	int rc = store_expunge_sync_end(store, &x->es, &err);
	if (s != NULL) {
		expunge_answer(s, x->tag, rc, err, &x->e);
		imap_wait_resume(s);
	} else {
		free(err);
	}
	free(x->e.uids);
	free(x->tag);
	free(x);
}

void imap_cmd_expunge(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	uint32_t *uids = NULL;
	size_t n = 0;
	if (r->uid) {
		if (r->n != 1 || !set_arg(s, r, &uids, &n)) {
			if (r->n != 1)
				imap_bad(s, r, "Usage: UID EXPUNGE set");
			return;
		}
	} else if (r->n != 0) {
		imap_bad(s, r, "EXPUNGE takes no arguments");
		return;
	}
	if (!writable(s, r)) {
		free(uids);
		return;
	}
	char *err = NULL;
	struct expunge_wait *x = xcalloc(1, sizeof(*x));
	x->e.s = s;
	size_t nr = 0;
	struct store_uid_range *ranges = r->uid ? imap_uid_ranges(uids, n, &nr) : NULL;
	int rc = 0;
	if (!r->uid || nr > 0)
		rc = store_expunge_deleted_begin(s->view.mb, ranges, nr, expunge_cb, &x->e, &x->es,
						 &err);
	free(ranges);
	free(uids);
	if (x->es != NULL) {
		x->w.job.work = expunge_sync_work;
		x->w.job.done = expunge_sync_done;
		x->tag = xstrdup(r->tag);
		if (imap_wait_start(s, &x->w))
			return;
		free(x->tag);
		store_expunge_sync_run(x->es);	/* no sync threads: here */
		rc = store_expunge_sync_end(s->store, &x->es, &err);
	}
	if (rc < 0 && x->e.n == 0)
		imap_store_error(s, r, rc, err);
	else
		expunge_answer(s, r->tag, rc, err, &x->e);
	free(x->e.uids);
	free(x);
}

static void deselect(struct imap_session *s)
{
	imap_view_close(s);
	session_set_selected(s->ss, false);
	session_set_state(s->ss, IMAP_S_AUTH);
}

void imap_cmd_close(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	if (r->n != 0) {
		imap_bad(s, r, "CLOSE takes no arguments");
		return;
	}
	if (!s->view.readonly) {
		char *err = NULL;
		if (expunge_deleted(s, NULL, 0, true, true, &err) < 0) {
			log_warnx("%s: CLOSE expunge: %s", session_id(s->ss), err ? err : "?");
			free(err);
		}
	}
	deselect(s);
	imap_reply(s, "%s OK CLOSE completed", r->tag);
}

void imap_cmd_unselect(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	if (r->n != 0) {
		imap_bad(s, r, "UNSELECT takes no arguments");
		return;
	}
	deselect(s);
	imap_reply(s, "%s OK UNSELECT completed", r->tag);
}
