/* imap/cmd_search - SEARCH and UID SEARCH: SEARCH or ESEARCH (RFC 4731) responses,
 * RETURN (MIN MAX COUNT ALL SAVE), SEARCHRES "$" (RFC 5182), CHARSET UTF-8 */
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
	/* the snapshot is the store's; keep only messages the view shows, in its order */
	struct store_msg *list = xcalloc(n_msgs ? n_msgs : 1, sizeof(*list));
	char **kw = xcalloc(n_msgs ? n_msgs : 1, sizeof(char *));
	size_t n = 0;
	for (size_t k = 0; k < n_msgs; k++) {
		if (imap_view_seq(v, msgs[k].uid) == 0)
			continue;
		list[n] = msgs[k];
		kw[n] = xstrdup(msgs[k].keywords ? msgs[k].keywords : "");
		list[n].keywords = kw[n];
		n++;
	}
	unsigned need = imap_search_needs(prog);
	/* keys on ENVELOPE's fields (FROM, SUBJECT, SENTSINCE, ...) are matched against the
	 * cached trees' summaries: no message file is read */
	bool summary_only = need == IMAP_SEARCH_NEED_HEADER &&
			    imap_search_headers_within(prog, mime_summary_field);
	struct imap_search_ctx sctx = {
		.max_seq = (uint32_t)v->n,
		.max_uid = v->n ? v->uids[v->n - 1] : 0,
		.saved_uids = v->saved,
		.n_saved = v->n_saved,
	};
	uint32_t *hits = xcalloc(n ? n : 1, sizeof(uint32_t));	/* UIDs */
	size_t n_hits = 0;
	uint64_t max_modseq = 0;
	for (size_t b = 0; b < n; b += SEARCH_BATCH) {
		size_t nb = n - b < SEARCH_BATCH ? n - b : SEARCH_BATCH;
		struct mime_tree **trees = NULL;
		if (need != IMAP_SEARCH_NEED_INDEX) {
			uint32_t *buids = xcalloc(nb, sizeof(uint32_t));
			for (size_t k = 0; k < nb; k++)
				buids[k] = list[b + k].uid;
			if (store_msg_structures(v->mb, buids, nb, &trees, &err) < 0) {
				log_warnx("%s: search: %s", session_id(s->ss), err ? err : "?");
				free(err);
				err = NULL;
				trees = NULL;
			}
			free(buids);
		}
		for (size_t k = 0; k < nb; k++) {
			const struct store_msg *m = &list[b + k];
			struct imap_search_msg sm = {
				.seq = imap_view_seq(v, m->uid), .uid = m->uid, .flags = m->flags,
				.keywords = m->keywords, .size = m->size,
				.internal_date = m->internal_date, .modseq = m->modseq,
			};
			char *data = NULL;
			if (trees != NULL && trees[k] != NULL && summary_only &&
			    trees[k]->summary != NULL) {
				sm.data = trees[k]->summary;
				sm.len = trees[k]->summary_len;
				sm.tree = trees[k];
			} else if (trees != NULL && trees[k] != NULL) {
				const struct mime_tree *t = trees[k];
				uint64_t want = need == IMAP_SEARCH_NEED_HEADER && t->count > 0
							? t->parts[0].header_size
							: t->msg_size;
				if (want > SEARCH_MAX_MESSAGE)
					want = SEARCH_MAX_MESSAGE;
				data = read_msg(s, m->uid, (size_t)want, &sm.len);
				sm.data = data;
				sm.tree = t;
			}
			if ((need == IMAP_SEARCH_NEED_INDEX || sm.data != NULL) &&
			    imap_search_match(prog, &sm, &sctx)) {
				hits[n_hits++] = m->uid;
				if (m->modseq > max_modseq)
					max_modseq = m->modseq;
			}
			free(data);
		}
		if (trees != NULL)
			store_structures_free(&trees, nb);
	}
	/* the response: numbers, or UIDs for UID SEARCH */
	uint32_t *out = xcalloc(n_hits ? n_hits : 1, sizeof(uint32_t));
	for (size_t k = 0; k < n_hits; k++)
		out[k] = r->uid ? hits[k] : imap_view_seq(v, hits[k]);
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
	if (!esearch) {
		buf_puts(&b, "* SEARCH");
		for (size_t k = 0; k < n_hits; k++)
			buf_printf(&b, " %u", out[k]);
		buf_puts(&b, "\r\n");
	} else if (ret != RET_SAVE) {
		unsigned want = ret ? ret : RET_ALL;
		buf_printf(&b, "* ESEARCH (TAG \"%s\")%s", r->tag, r->uid ? " UID" : "");
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
		buf_puts(&b, "\r\n");
	}
	if (b.len > 0)
		imap_write(s, b.data, b.len);
	buf_free(&b);
	imap_reply(s, "%s OK %sSEARCH completed", r->tag, r->uid ? "UID " : "");
	(void)max_modseq;
	for (size_t k = 0; k < n; k++)
		free(kw[k]);
	free(kw);
	free(list);
	free(hits);
	free(out);
	imap_search_free(&prog);
}
