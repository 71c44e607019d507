/* imap/cmd_search - SEARCH and UID SEARCH: SEARCH or ESEARCH (RFC 4731) responses,
 * RETURN (MIN MAX COUNT ALL SAVE), SEARCHRES "$" (RFC 5182), CHARSET UTF-8 */
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "imap/imap_private.h"
#include "imap/search.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "mime/tree.h"
#include "mime/tree.h"

#define SEARCH_BATCH 256		/* structures fetched from the store at once */
#define SEARCH_MAX_MESSAGE (64u * 1024 * 1024)

enum ret_opts { RET_MIN = 1, RET_MAX = 2, RET_ALL = 4, RET_COUNT = 8, RET_SAVE = 16 };

/* read_part - the first len bytes of the file of uid (the header, or all); NULL when gone */
static char *read_msg(struct imap_session *s, uint32_t uid, size_t len, size_t *len_r)
{
	int fd;
	bool crlf;
	char *err = NULL;
	if (store_msg_open(s->view.mb, uid, &fd, &crlf, &err) < 0) {
		free(err);
		return NULL;
	}
	char *data = xmalloc(len + 1);
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, data + got, len - got);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	data[got] = '\0';
	*len_r = got;
	return data;
}

/* A SEARCH that reads messages (header or body keys) runs a slice at a time: at most
 * SEARCH_SLICE messages or SEARCH_SLICE_BYTES of them per turn of the event loop. */
#define SEARCH_SLICE 200
#define SEARCH_SLICE_BYTES (16u * 1024 * 1024)
/* a timer that is due at once: it runs after the loop's next poll for I/O (an event made
 * active at once could run before it) */
static const struct timeval next_turn = { 0, 0 };

struct imap_search_job {
	char *tag;
	bool uid, esearch, with_modseq;
	unsigned ret;
	unsigned need;			/* imap_search_needs */
	bool summary_only;		/* header keys the cached summaries hold */
	struct imap_search_key *prog;
	struct imap_search_ctx sctx;
	struct store_msg *list;		/* the messages of the view (keywords copied) */
	char **kw;
	size_t n, next;			/* next: the first not looked at yet */
	uint32_t *hits;			/* UIDs, ascending */
	uint64_t *hit_modseq;
	size_t n_hits;
	struct event *ev;		/* the next slice */
};

void imap_search_job_free(struct imap_search_job **jp)
{
	struct imap_search_job *j = *jp;
	if (j == NULL)
		return;
	if (j->ev != NULL)
		event_free(j->ev);
	for (size_t k = 0; k < j->n; k++)
		free(j->kw[k]);
	free(j->kw);
	free(j->list);
	free(j->hits);
	free(j->hit_modseq);
	imap_search_free(&j->prog);
	free(j->tag);
	free(j);
	*jp = NULL;
}

/* search_slice - match the next messages: all of them when the index is enough, else a
 * slice (SEARCH_SLICE messages or SEARCH_SLICE_BYTES read); true when all are done */
static bool search_slice(struct imap_session *s, struct imap_search_job *j)
{
	struct imap_view *v = &s->view;
	size_t end = j->need == IMAP_SEARCH_NEED_INDEX || j->n - j->next < SEARCH_SLICE
			     ? j->n
			     : j->next + SEARCH_SLICE;
	uint64_t bytes = 0;
	while (j->next < end && bytes < SEARCH_SLICE_BYTES) {
		size_t nb = end - j->next < SEARCH_BATCH ? end - j->next : SEARCH_BATCH;
		struct mime_tree **trees = NULL;
		char *err = NULL;
		if (j->need != IMAP_SEARCH_NEED_INDEX) {
			uint32_t *buids = xcalloc(nb, sizeof(uint32_t));
			for (size_t k = 0; k < nb; k++)
				buids[k] = j->list[j->next + k].uid;
			if (store_msg_structures(v->mb, buids, nb, &trees, &err) < 0) {
				log_warnx("%s: search: %s", session_id(s->ss), err ? err : "?");
				free(err);
				trees = NULL;
			}
			free(buids);
		}
		size_t k;
		for (k = 0; k < nb && bytes < SEARCH_SLICE_BYTES; k++) {
			const struct store_msg *m = &j->list[j->next + k];
			struct imap_search_msg sm = {
				.seq = imap_view_seq(v, m->uid), .uid = m->uid, .flags = m->flags,
				.keywords = m->keywords, .size = m->size,
				.internal_date = m->internal_date, .modseq = m->modseq,
			};
			char *data = NULL;
			if (trees != NULL && trees[k] != NULL && j->summary_only &&
			    trees[k]->summary != NULL) {
				sm.data = trees[k]->summary;
				sm.len = trees[k]->summary_len;
				sm.tree = trees[k];
			} else if (trees != NULL && trees[k] != NULL) {
				const struct mime_tree *t = trees[k];
				uint64_t want = j->need == IMAP_SEARCH_NEED_HEADER && t->count > 0
							? t->parts[0].header_size
							: t->msg_size;
				if (want > SEARCH_MAX_MESSAGE)
					want = SEARCH_MAX_MESSAGE;
				data = read_msg(s, m->uid, (size_t)want, &sm.len);
				sm.data = data;
				sm.tree = t;
				bytes += sm.len;
			}
			if ((j->need == IMAP_SEARCH_NEED_INDEX || sm.data != NULL) &&
			    imap_search_match(j->prog, &sm, &j->sctx)) {
				j->hit_modseq[j->n_hits] = m->modseq;
				j->hits[j->n_hits++] = m->uid;
			}
			free(data);
		}
		if (trees != NULL)
			store_structures_free(&trees, nb);
		j->next += k;
	}
	return j->next == j->n;
}

/* highest_modseq - the MODSEQ a response with return options want reports for the hits'
 * MODSEQs (n > 0): of the message MIN or MAX returns when that is all it returns, the
 * higher of the two for MIN and MAX alone, else the highest of all (RFC 4731 §3.2) */
static uint64_t highest_modseq(const uint64_t *modseq, size_t n, unsigned want)
{
	if (!(want & (RET_ALL | RET_COUNT)) && (want & (RET_MIN | RET_MAX))) {
		uint64_t lo = (want & RET_MIN) ? modseq[0] : 0;
		uint64_t hi = (want & RET_MAX) ? modseq[n - 1] : 0;
		return lo > hi ? lo : hi;
	}
	uint64_t max = 0;
	for (size_t k = 0; k < n; k++)
		if (modseq[k] > max)
			max = modseq[k];
	return max;
}

/* search_finish - the answer (and SAVE) once every message was looked at */
static void search_finish(struct imap_session *s, struct imap_search_job *j)
{
	struct imap_view *v = &s->view;
	unsigned ret = j->ret;
	const uint32_t *hits = j->hits;
	size_t n_hits = j->n_hits;
	/* the response: numbers, or UIDs for UID SEARCH */
	uint32_t *out = xcalloc(n_hits ? n_hits : 1, sizeof(uint32_t));
	for (size_t k = 0; k < n_hits; k++)
		out[k] = j->uid ? hits[k] : imap_view_seq(v, hits[k]);
	if (ret & RET_SAVE) {
		free(v->saved);
		v->saved = xcalloc(n_hits ? n_hits : 1, sizeof(uint32_t));
		if ((ret & (RET_MIN | RET_MAX)) && !(ret & (RET_ALL | RET_COUNT))) {
			/* RFC 9051 §6.4.4.1 (RFC 5182 §2.4): SAVE with MIN/MAX alone keeps
			 * only the messages those return */
			v->n_saved = 0;
			if ((ret & RET_MIN) && n_hits > 0)
				v->saved[v->n_saved++] = hits[0];
			if ((ret & RET_MAX) && n_hits > 0 && (v->n_saved == 0 || n_hits > 1))
				v->saved[v->n_saved++] = hits[n_hits - 1];
		} else {
			memcpy(v->saved, hits, n_hits * sizeof(uint32_t));
			v->n_saved = n_hits;
		}
	}
	buf b;
	buf_init(&b, 0);
	if (!j->esearch) {
		buf_puts(&b, "* SEARCH");
		for (size_t k = 0; k < n_hits; k++)
			buf_printf(&b, " %u", out[k]);
		if (j->with_modseq && n_hits > 0)
			buf_printf(&b, " (MODSEQ %llu)",
				   (unsigned long long)highest_modseq(j->hit_modseq, n_hits, RET_ALL));
		buf_puts(&b, "\r\n");
	} else if (ret != RET_SAVE) {
		unsigned want = ret ? ret : RET_ALL;
		buf_printf(&b, "* ESEARCH (TAG \"%s\")%s", j->tag, j->uid ? " UID" : "");
		if ((want & RET_MIN) && n_hits > 0)
			buf_printf(&b, " MIN %u", out[0]);
		if ((want & RET_MAX) && n_hits > 0)
			buf_printf(&b, " MAX %u", out[n_hits - 1]);
		if (want & RET_COUNT)
			buf_printf(&b, " COUNT %zu", n_hits);
		if ((want & RET_ALL) && n_hits > 0) {
			buf_puts(&b, " ALL ");
			imap_uid_set_out(&b, out, n_hits);
		}
		if (j->with_modseq && n_hits > 0)
			buf_printf(&b, " MODSEQ %llu",
				   (unsigned long long)highest_modseq(j->hit_modseq, n_hits, want));
		buf_puts(&b, "\r\n");
	}
	if (b.len > 0)
		imap_write(s, b.data, b.len);
	buf_free(&b);
	free(out);
	imap_reply(s, "%s OK %sSEARCH completed", j->tag, j->uid ? "UID " : "");
}

/* search_next_cb - the next slice of s->search, on a later turn of the event loop */
static void search_next_cb(evutil_socket_t fd, short what, void *arg)
{
	struct imap_session *s = arg;
	struct imap_search_job *j = s->search;
	if (session_is_closing(s->ss))
		return;		/* the session's end frees the job */
	if (!search_slice(s, j)) {
		evtimer_add(j->ev, &next_turn);
		return;
	}
	s->search = NULL;
	search_finish(s, j);
	imap_search_job_free(&j);
	session_resume(s->ss);		/* the commands that came meanwhile */
}

void imap_cmd_search(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	struct imap_view *v = &s->view;
	size_t i = 0;
	unsigned ret = 0;
	bool esearch = s->rev2;
	if (i < r->n && imap_arg_is_atom(&r->args[i], "RETURN")) {
		if (i + 1 >= r->n || r->args[i + 1].type != IMAP_ARG_LIST) {
			imap_bad(s, r, "Usage: SEARCH RETURN (options) keys");
			return;
		}
		const struct imap_arg *l = &r->args[i + 1];
		for (size_t k = 0; k < l->n_list; k++) {
			static const struct {
				const char *name;
				unsigned bit;
			} opts[] = { { "MIN", RET_MIN },     { "MAX", RET_MAX },   { "ALL", RET_ALL },
				     { "COUNT", RET_COUNT }, { "SAVE", RET_SAVE } };
			size_t o;
			for (o = 0; o < sizeof(opts) / sizeof(opts[0]); o++)
				if (imap_arg_is_atom(&l->list[k], opts[o].name))
					break;
			if (o == sizeof(opts) / sizeof(opts[0])) {
				imap_bad(s, r, "Unknown RETURN option");
				return;
			}
			ret |= opts[o].bit;
		}
		if (ret == 0)
			ret = RET_ALL;		/* RETURN () */
		esearch = true;
		i += 2;
	}
	if (i < r->n && imap_arg_is_atom(&r->args[i], "CHARSET")) {
		if (i + 1 >= r->n || !imap_arg_is_astring(&r->args[i + 1])) {
			imap_bad(s, r, "Missing charset");
			return;
		}
		const char *cs = r->args[i + 1].str;
		if (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "US-ASCII") != 0) {
			imap_reply(s, "%s NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset", r->tag);
			return;
		}
		i += 2;
	}
	struct imap_search_key *prog;
	const char *perr;
	if (imap_search_parse(r->args + i, r->n - i, &prog, &perr) < 0) {
		imap_bad(s, r, perr);
		return;
	}
	const struct store_msg *msgs;
	size_t n_msgs;
	char *err = NULL;
	int rc = store_mailbox_messages(v->mb, &msgs, &n_msgs, &err);
	if (rc < 0) {
		imap_search_free(&prog);
		imap_store_error(s, r, rc, err);
		return;
	}
	struct imap_search_job *j = xcalloc(1, sizeof(*j));
	j->tag = xstrdup(r->tag);
	j->uid = r->uid;
	j->esearch = esearch;
	j->ret = ret;
	j->prog = prog;
	j->need = imap_search_needs(prog);
	/* MODSEQ in the keys: the response carries the highest MODSEQ (RFC 7162 §3.1.5), and
	 * the command enables CONDSTORE (§3.1) */
	j->with_modseq = imap_search_uses_modseq(prog);
	if (j->with_modseq)
		s->condstore = true;
	/* the snapshot is the store's; keep only messages the view shows, in its order */
	j->list = xcalloc(n_msgs ? n_msgs : 1, sizeof(*j->list));
	j->kw = xcalloc(n_msgs ? n_msgs : 1, sizeof(char *));
	for (size_t k = 0; k < n_msgs; k++) {
		if (imap_view_seq(v, msgs[k].uid) == 0)
			continue;
		j->list[j->n] = msgs[k];
		j->kw[j->n] = xstrdup(msgs[k].keywords ? msgs[k].keywords : "");
		j->list[j->n].keywords = j->kw[j->n];
		j->n++;
	}
	/* keys on ENVELOPE's fields (FROM, SUBJECT, SENTSINCE, ...) are matched against the
	 * cached trees' summaries: no message file is read */
	j->summary_only = j->need == IMAP_SEARCH_NEED_HEADER &&
			  imap_search_headers_within(prog, mime_summary_field);
	j->sctx = (struct imap_search_ctx){
		.max_seq = (uint32_t)v->n,
		.max_uid = v->n ? v->uids[v->n - 1] : 0,
		.saved_uids = v->saved,
		.n_saved = v->n_saved,
	};
	j->hits = xcalloc(j->n ? j->n : 1, sizeof(uint32_t));
	j->hit_modseq = xcalloc(j->n ? j->n : 1, sizeof(uint64_t));
	if (search_slice(s, j)) {
		search_finish(s, j);
		imap_search_job_free(&j);
		return;
	}
	/* more to read: the rest on later turns of the event loop, so that the other sessions
	 * of this worker are served in between; this session reads no further commands until
	 * the answer is out */
	j->ev = evtimer_new(s->srv->base, search_next_cb, s);
	if (j->ev == NULL)
		log_fatalx("evtimer_new failed");
	s->search = j;
	session_suspend(s->ss);
	evtimer_add(j->ev, &next_turn);
}
