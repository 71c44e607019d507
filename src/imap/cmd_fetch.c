/* imap/cmd_fetch - FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2), BINARY (RFC 3516),
 * CHANGEDSINCE / VANISHED (RFC 7162).
 *
 * A FETCH runs as a job (s->fetch) that writes one message's response at a time and stops
 * whenever the client's output buffer is full; imap_on_raw resumes it once the client has
 * read. Large body sections of CRLF files are streamed from the file in chunks, so a 50 MB
 * message is never in memory whole; structures are fetched from the store in batches. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "imap/bodystructure.h"
#include "imap/datetime.h"
#include "imap/imap_private.h"
#include "imap/section.h"
#include "imap/write.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "mime/decode.h"
#include "mime/tree.h"

#define FETCH_BATCH 256				/* structures fetched from the store at once */
#define FETCH_CHUNK (64 * 1024)			/* bytes of a streamed literal per write */
#define FETCH_BINARY_MAX (16u * 1024 * 1024)	/* BINARY decodes in memory up to this */
#define FETCH_READ_MAX (1024 * 1024)		/* CRLF files read rather than mapped */

enum fetch_kind {
	FK_UID,
	FK_FLAGS,
	FK_INTERNALDATE,
	FK_SIZE,
	FK_ENVELOPE,
	FK_BODYSTRUCTURE,
	FK_BODY,		/* non-extensible BODYSTRUCTURE */
	FK_MODSEQ,
	FK_SECTION,		/* BODY[...], BINARY[...], BINARY.SIZE[...], RFC822* */
};

struct fetch_item {
	enum fetch_kind kind;
	struct imap_section sec;
	const char *alias;	/* "RFC822", "RFC822.HEADER", "RFC822.TEXT", or NULL */
};

struct fetch_msg {
	uint32_t uid;
	uint64_t size;
	int64_t internal_date;
	uint32_t flags;
	char *keywords;
	uint64_t modseq;
	bool seen_changed;	/* this FETCH set \Seen: FLAGS goes into the response */
};

/* the bytes of the message being answered */
struct msg_data {
	int fd;
	bool crlf;		/* the file is served as it is */
	char *map;		/* crlf: a large file mapped read-only (lazily), else NULL */
	size_t map_len;
	char *mem;		/* !crlf: the message converted to CRLF; crlf: a small file
				   read (lazily) */
	size_t mem_len;
	struct mime_tree *own_tree;	/* parsed here (LF file, or no cached tree) */
	const struct mime_tree *tree;
};

struct imap_fetch_job {
	char *tag;
	bool uid_cmd;
	struct fetch_item *items;
	size_t n_items;
	bool need_tree;		/* some item needs the MIME tree */
	bool need_bytes;	/* some item needs the message's bytes (a section, BODY,
				   BODYSTRUCTURE): ENVELOPE alone is made from the tree's
				   summary when it has one */
	bool add_uid;		/* UID FETCH without UID among the items */
	bool add_modseq;	/* CHANGEDSINCE without MODSEQ among the items */
	bool has_flags;
	bool set_seen;		/* some item sets \Seen (and the mailbox is writable) */

	struct fetch_msg *msgs;
	size_t n_msgs, next;

	struct mime_tree **trees;	/* batch [batch_start, batch_start + batch_n) */
	size_t batch_start, batch_n;
	size_t batch_stop;	/* the message of the batch that cannot be served (n_msgs: none) */

	bool in_msg;
	size_t cur_item;
	bool item_sent;		/* the next item needs a space before it */
	struct msg_data md;
	buf line;

	/* a literal being streamed */
	bool streaming;
	uint64_t st_off, st_left;

	bool expunged;		/* some message could not be read: it was expunged */
	bool failed;		/* a read error: NO [UNAVAILABLE] */
	const char *stop_code;	/* "UNKNOWN-CTE" / "LIMIT": the request failed here */
};

/* ---- the job ---- */

static void md_close(struct msg_data *md)
{
	if (md->map != NULL)
		munmap(md->map, md->map_len);
	if (md->fd >= 0)
		close(md->fd);
	free(md->mem);
	mime_tree_free(&md->own_tree);
	memset(md, 0, sizeof(*md));
	md->fd = -1;
}

static void batch_free(struct imap_fetch_job *j)
{
	if (j->trees != NULL)
		store_structures_free(&j->trees, j->batch_n);
	j->trees = NULL;
	j->batch_n = 0;
}

void imap_fetch_free(struct imap_fetch_job **jp)
{
	struct imap_fetch_job *j = *jp;
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->n_items; i++)
		imap_section_free(&j->items[i].sec);
	free(j->items);
	for (size_t i = 0; i < j->n_msgs; i++)
		free(j->msgs[i].keywords);
	free(j->msgs);
	batch_free(j);
	md_close(&j->md);
	buf_free(&j->line);
	free(j->tag);
	free(j);
	*jp = NULL;
}

/* ---- parsing the request ---- */

#define IMAP_FETCH_MAX_ITEMS 64		/* real clients ask for a dozen at most */

static void add_item(struct imap_fetch_job *j, enum fetch_kind k)
{
	j->items = xreallocarray(j->items, j->n_items + 1, sizeof(*j->items));
	memset(&j->items[j->n_items], 0, sizeof(j->items[0]));
	j->items[j->n_items++].kind = k;
	if (k == FK_ENVELOPE || k == FK_BODYSTRUCTURE || k == FK_BODY || k == FK_SECTION)
		j->need_tree = true;
	if (k == FK_BODYSTRUCTURE || k == FK_BODY || k == FK_SECTION)
		j->need_bytes = true;
}

/* add_section - a section item from text (BODY[...] syntax), shown under alias if set */
static int add_section(struct imap_fetch_job *j, const char *text, const char *alias,
		       const char **error_r)
{
	struct imap_section sec;
	if (imap_section_parse(text, &sec, error_r) != 1)
		return -1;
	add_item(j, FK_SECTION);
	j->items[j->n_items - 1].sec = sec;
	j->items[j->n_items - 1].alias = alias;
	return 0;
}

/* parse_item - one fetch-att; 0 or -1 with *error_r */
static int parse_item(struct imap_session *s, struct imap_fetch_job *j, const struct imap_arg *a,
		      const char **error_r)
{
	static const struct {
		const char *name;
		enum fetch_kind kind;
	} simple[] = {
		{ "UID", FK_UID },		{ "FLAGS", FK_FLAGS },
		{ "INTERNALDATE", FK_INTERNALDATE }, { "RFC822.SIZE", FK_SIZE },
		{ "ENVELOPE", FK_ENVELOPE },	{ "BODYSTRUCTURE", FK_BODYSTRUCTURE },
		{ "BODY", FK_BODY },		{ "MODSEQ", FK_MODSEQ },
	};
	*error_r = "Unknown FETCH item";
	if (a->type != IMAP_ARG_ATOM)
		return -1;
	for (size_t k = 0; k < sizeof(simple) / sizeof(simple[0]); k++) {
		if (strcasecmp(a->str, simple[k].name) != 0)
			continue;
		add_item(j, simple[k].kind);
		if (simple[k].kind == FK_MODSEQ)
			s->condstore = true;
		if (simple[k].kind == FK_FLAGS)
			j->has_flags = true;
		return 0;
	}
	if (strcasecmp(a->str, "RFC822") == 0)
		return add_section(j, "BODY[]", "RFC822", error_r);
	if (strcasecmp(a->str, "RFC822.HEADER") == 0)
		return add_section(j, "BODY.PEEK[HEADER]", "RFC822.HEADER", error_r);
	if (strcasecmp(a->str, "RFC822.TEXT") == 0)
		return add_section(j, "BODY[TEXT]", "RFC822.TEXT", error_r);
	struct imap_section sec;
	int r = imap_section_parse(a->str, &sec, error_r);
	if (r <= 0) {
		if (r == 0)
			*error_r = "Unknown FETCH item";
		return -1;
	}
	add_item(j, FK_SECTION);
	j->items[j->n_items - 1].sec = sec;
	return 0;
}

/* parse_items - the item argument: an atom (maybe a macro) or a list */
static int parse_items(struct imap_session *s, struct imap_fetch_job *j, const struct imap_arg *a,
		       const char **error_r)
{
	if (a->type == IMAP_ARG_LIST) {
		if (a->n_list == 0) {
			*error_r = "Empty FETCH item list";
			return -1;
		}
		/* each item's data is built in memory for every message (BINARY decodes up to
		 * 16 MiB): a list of thousands would make one response line of gigabytes */
		if (a->n_list > IMAP_FETCH_MAX_ITEMS) {
			*error_r = "Too many FETCH items";
			return -1;
		}
		for (size_t i = 0; i < a->n_list; i++)
			if (parse_item(s, j, &a->list[i], error_r) < 0)
				return -1;
		return 0;
	}
	static const char *const fast[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE" };
	size_t n_macro = 0;
	if (imap_arg_is_atom(a, "ALL"))
		n_macro = 4;
	else if (imap_arg_is_atom(a, "FAST"))
		n_macro = 3;
	else if (imap_arg_is_atom(a, "FULL"))
		n_macro = 5;
	if (n_macro == 0)
		return parse_item(s, j, a, error_r);
	for (size_t i = 0; i < 3; i++) {
		struct imap_arg m = { .type = IMAP_ARG_ATOM, .str = (char *)fast[i],
				      .len = strlen(fast[i]) };
		parse_item(s, j, &m, error_r);
	}
	if (n_macro >= 4)
		add_item(j, FK_ENVELOPE);
	if (n_macro == 5)
		add_item(j, FK_BODY);
	return 0;
}

/* sets_seen - does the item set \Seen (BODY[...], BINARY[...], RFC822, RFC822.TEXT)? */
static bool sets_seen(const struct fetch_item *it)
{
	return it->kind == FK_SECTION &&
	       (it->sec.item == IMAP_ITEM_BODY || it->sec.item == IMAP_ITEM_BINARY);
}

/* ---- \Seen ---- */

static int cmp_msg_uid(const void *key, const void *elem)
{
	uint32_t u = *(const uint32_t *)key;
	const struct fetch_msg *m = elem;
	return u < m->uid ? -1 : u > m->uid;
}

static void seen_cb(void *ctx, const struct store_msg *m, enum store_update what)
{
	struct imap_session *s = ctx;
	struct imap_fetch_job *j = s->fetch;
	if (what != STORE_UPDATE_CHANGED)
		return;
	TRACE(NULL, "seen", "user=%s folder=%s uidvalidity=%u uid=%u by=%s session=%s client=%s",
	      s->user, s->view.name, s->view.uidvalidity, m->uid, "imap-fetch", session_id(s->ss),
	      conn_peer_ip(s->conn));
	imap_view_own(&s->view, m->uid, m->modseq);
	struct fetch_msg *fm = bsearch(&m->uid, j->msgs, j->n_msgs, sizeof(*fm), cmp_msg_uid);
	if (fm == NULL)
		return;
	fm->flags = m->flags | (fm->flags & STORE_F_RECENT);
	fm->modseq = m->modseq;
	fm->seen_changed = true;
}

/* ---- VANISHED (EARLIER) ---- */

struct uid_set_writer {
	buf *b;
	size_t n;
	uint32_t first, last;
	bool open;
};

static void usw_flush(struct uid_set_writer *w)
{
	if (w->open) {
		buf_printf(w->b, "%s%u", w->n++ ? "," : "", w->first);
		if (w->last > w->first)
			buf_printf(w->b, ":%u", w->last);
	}
	w->open = false;
}

/* usw_add - first..last (ascending calls), joined to the range before when adjacent */
static void usw_add(struct uid_set_writer *w, uint32_t first, uint32_t last)
{
	if (w->open && w->last + 1 == first) {
		w->last = last;
		return;
	}
	usw_flush(w);
	w->first = first;
	w->last = last;
	w->open = true;
}

void imap_vanished_earlier(struct imap_session *s, const struct imap_seqset *known,
			   uint32_t above, uint32_t uidnext, const struct store_changes *ch,
			   const uint32_t *present, size_t n_present)
{
	if (uidnext <= 1 || above >= uidnext - 1)
		return;
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "* VANISHED (EARLIER) ");
	struct uid_set_writer w = { .b = &b };
	size_t e = 0, k = 0;
	size_t n_ranges = known != NULL ? known->n : 1;
	/* known's ranges, ch->expunged and present are ascending: one walk along each */
	for (size_t i = 0; i < n_ranges; i++) {
		uint32_t a = known != NULL ? known->ranges[i].first : 1;
		uint32_t z = known != NULL ? known->ranges[i].last : uidnext - 1;
		if (a <= above)
			a = above + 1;
		if (z > uidnext - 1)
			z = uidnext - 1;
		if (a > z)
			continue;
		if (!ch->too_old) {
			while (e < ch->n_expunged && ch->expunged[e] < a)
				e++;
			for (; e < ch->n_expunged && ch->expunged[e] <= z; e++)
				usw_add(&w, ch->expunged[e], ch->expunged[e]);
			continue;
		}
		/* the records since then were pruned: every UID of a..z that is not there, as
		 * the gaps between the UIDs present (never one UID at a time: a..z may span
		 * billions) */
		uint32_t from = a;
		while (k < n_present && present[k] < a)
			k++;
		for (; k < n_present && present[k] <= z; k++) {
			if (present[k] > from)
				usw_add(&w, from, present[k] - 1);
			from = present[k] + 1;
		}
		if (from <= z)
			usw_add(&w, from, z);
	}
	usw_flush(&w);
	if (w.n > 0) {
		buf_puts(&b, "\r\n");
		imap_write(s, b.data, b.len);
	}
	buf_free(&b);
}

/* send_vanished - UID FETCH set ... (CHANGEDSINCE since VANISHED): the UIDs of set expunged
 * since then (RFC 7162 §3.2.6); 0, or <0 with *err */
static int send_vanished(struct imap_session *s, const char *set, uint64_t since, char **err)
{
	struct imap_seqset ss;
	const char *perr;
	if (imap_seqset_parse(set, 100000, &ss, &perr) < 0 || ss.saved) {
		imap_seqset_free(&ss);
		return 0;
	}
	struct store_changes ch;
	int r = store_mailbox_changes(s->view.mb, since, UINT32_MAX, &ch, err);
	if (r > 0) {
		const uint32_t *all = NULL;
		size_t n_all = 0;
		/* "a mod-sequence smaller than <minmodseq> ... MUST behave as if it was
		 * requested to report all expunged messages from the provided UID set" */
		if (ch.too_old)
			r = store_mailbox_uids(s->view.mb, &all, &n_all, err);
		if (r >= 0) {
			imap_seqset_normalize(&ss, ch.uidnext > 1 ? ch.uidnext - 1 : 1);
			imap_vanished_earlier(s, &ss, 0, ch.uidnext, &ch, all, n_all);
		}
	}
	store_changes_free(&ch);
	imap_seqset_free(&ss);
	return r < 0 ? r : 0;
}

/* ---- the command ---- */

void imap_cmd_fetch(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	const char *perr;
	if (r->n < 2 || r->n > 3 || r->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, r, "Usage: FETCH set items [(modifiers)]");
		return;
	}
	uint64_t changedsince = 0;
	bool vanished = false, has_changedsince = false;
	if (r->n == 3) {
		const struct imap_arg *m = &r->args[2];
		if (m->type != IMAP_ARG_LIST) {
			imap_bad(s, r, "Bad FETCH modifiers");
			return;
		}
		for (size_t i = 0; i < m->n_list; i++) {
			if (imap_arg_is_atom(&m->list[i], "CHANGEDSINCE") && i + 1 < m->n_list &&
			    m->list[i + 1].type == IMAP_ARG_ATOM &&
			    strnum_u64z(m->list[i + 1].str, INT64_MAX, &changedsince) == 0 &&
			    !has_changedsince) {
				has_changedsince = true;
				i++;
			} else if (imap_arg_is_atom(&m->list[i], "VANISHED") && !vanished) {
				vanished = true;
			} else {
				imap_bad(s, r, "Bad FETCH modifier");
				return;
			}
		}
		if (vanished && (!r->uid || !has_changedsince || !s->qresync)) {
			imap_bad(s, r, "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC");
			return;
		}
		if (has_changedsince)
			s->condstore = true;
	}
	struct imap_fetch_job *j = xcalloc(1, sizeof(*j));
	j->md.fd = -1;
	buf_init(&j->line, 0);
	if (parse_items(s, j, &r->args[1], &perr) < 0) {
		imap_fetch_free(&j);
		imap_bad(s, r, perr);
		return;
	}
	uint32_t *uids;
	size_t n;
	if (imap_view_set(s, r->args[0].str, r->uid, &uids, &n, &perr) < 0) {
		imap_fetch_free(&j);
		imap_bad(s, r, perr);
		return;
	}
	j->tag = xstrdup(r->tag);
	j->uid_cmd = r->uid;
	bool has_uid = false, has_modseq = false, seen = false;
	for (size_t i = 0; i < j->n_items; i++) {
		has_uid |= j->items[i].kind == FK_UID;
		has_modseq |= j->items[i].kind == FK_MODSEQ;
		seen |= sets_seen(&j->items[i]);
	}
	j->add_uid = r->uid && !has_uid;
	j->add_modseq = has_changedsince && !has_modseq;

	char *err = NULL;
	if (vanished && send_vanished(s, r->args[0].str, changedsince, &err) < 0) {
		free(uids);
		imap_fetch_free(&j);
		imap_store_error(s, r, STORE_ERROR, err);
		return;
	}
	/* the messages of the set (those changed since, with CHANGEDSINCE), copied: the
	 * store's snapshot lives only until the next call on the mailbox */
	if (n > 0) {
		size_t nr;
		struct store_uid_range *ranges = imap_uid_ranges(uids, n, &nr);
		const struct store_msg *msgs;
		size_t n_msgs;
		int rc = store_mailbox_messages_in(s->view.mb, ranges, nr, changedsince, &msgs,
						   &n_msgs, &err);
		free(ranges);
		if (rc < 0) {
			free(uids);
			imap_fetch_free(&j);
			imap_store_error(s, r, rc, err);
			return;
		}
		j->msgs = xcalloc(n_msgs ? n_msgs : 1, sizeof(*j->msgs));
		for (size_t i = 0; i < n_msgs; i++) {
			if (imap_view_seq(&s->view, msgs[i].uid) == 0)
				continue;
			struct fetch_msg *fm = &j->msgs[j->n_msgs++];
			fm->uid = msgs[i].uid;
			fm->size = msgs[i].size;
			fm->internal_date = msgs[i].internal_date;
			fm->flags = msgs[i].flags;
			fm->keywords = xstrdup(msgs[i].keywords ? msgs[i].keywords : "");
			fm->modseq = msgs[i].modseq;
		}
		/* without CHANGEDSINCE every message of the set must be there: one that is not
		 * was expunged by another session */
		if (changedsince == 0 && j->n_msgs < n)
			j->expunged = true;
	}
	free(uids);
	/* \Seen is set a batch at a time, just before the batch's messages are answered, and
	 * only on those that will be (see batch_load) */
	j->set_seen = seen && !s->view.readonly;
	s->fetch = j;
	/* imap_on_raw resumes the job: the responses go out from there */
}

/* ---- the responses ---- */

/* md_bytes - the message's bytes as served: a copy in memory (a converted LF file, or a
 * CRLF file up to FETCH_READ_MAX: cheaper than a mapping, whose unmapping interrupts every
 * CPU that ran one of the worker's threads), or the mapping of a larger CRLF file */
static const char *md_bytes(struct msg_data *md, size_t *len_r)
{
	if (md->mem == NULL && md->crlf && md->map == NULL && md->map_len == 0) {
		struct stat st;
		if (fstat(md->fd, &st) == 0 && st.st_size > 0 && st.st_size <= FETCH_READ_MAX) {
			size_t len = (size_t)st.st_size, got = 0;
			md->mem = xmalloc(len);
			while (got < len) {
				ssize_t k = pread(md->fd, md->mem + got, len - got, (off_t)got);
				if (k < 0 && errno == EINTR)
					continue;
				if (k <= 0)
					break;
				got += (size_t)k;
			}
			md->mem_len = got;
		}
	}
	if (md->mem != NULL || !md->crlf) {
		*len_r = md->mem_len;
		return md->mem != NULL ? md->mem : "";
	}
	if (md->map == NULL && md->map_len == 0) {
		struct stat st;
		if (fstat(md->fd, &st) == 0 && st.st_size > 0) {
			void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, md->fd, 0);
			if (p != MAP_FAILED) {
				md->map = p;
				md->map_len = (size_t)st.st_size;
			}
		}
	}
	*len_r = md->map_len;
	return md->map != NULL ? md->map : "";
}

/* md_open - open message m for the items that need its bytes and tree: 0, STORE_NOTFOUND
 * (expunged) or another <0 */
static int md_open(struct imap_session *s, struct imap_fetch_job *j, const struct fetch_msg *m,
		   const struct mime_tree *cached)
{
	struct msg_data *md = &j->md;
	char *err = NULL;
	int rc = store_msg_open(s->view.mb, m->uid, &md->fd, &md->crlf, &err);
	if (rc < 0) {
		md->fd = -1;
		if (rc != STORE_NOTFOUND)
			log_warnx("%s: FETCH %u: %s", session_id(s->ss), m->uid, err ? err : "?");
		free(err);
		return rc;
	}
	if (md->crlf) {
		if (cached != NULL && cached->msg_size == m->size) {
			md->tree = cached;
			return 0;
		}
		size_t len;
		const char *p = md_bytes(md, &len);
		md->own_tree = mime_tree_parse(p, len, NULL);
		md->tree = md->own_tree;
		return 0;
	}
	/* bare LFs: the tree must count served (CRLF) octets, so parse the converted copy */
	struct store_reader *rd;
	if ((rc = store_reader_open(s->view.mb, m->uid, &rd, &err)) < 0) {
		if (rc != STORE_NOTFOUND)
			log_warnx("%s: FETCH %u: %s", session_id(s->ss), m->uid, err ? err : "?");
		free(err);
		return rc;
	}
	uint64_t size = store_reader_size(rd);
	uint64_t max = s->srv->cfg->max_message_size;
	if (size > max || size > SIZE_MAX - 1) {
		store_reader_close(&rd);
		return STORE_INVALID;
	}
	md->mem = xmalloc((size_t)size + 1);
	size_t got = 0;
	while (got < size) {
		ssize_t k = store_reader_read(rd, md->mem + got, (size_t)size - got);
		if (k <= 0) {
			if (k < 0) {
				log_warn("%s: FETCH %u: read", session_id(s->ss), m->uid);
				store_reader_close(&rd);
				return STORE_ERROR;
			}
			break;
		}
		got += (size_t)k;
	}
	store_reader_close(&rd);
	md->mem_len = got;
	md->own_tree = mime_tree_parse(md->mem, md->mem_len, NULL);
	md->tree = md->own_tree;
	return 0;
}

/* write_literal - a literal of data in line (a literal8 when it holds NUL) */
static void write_literal(buf *line, const char *data, size_t len)
{
	if (memchr(data, '\0', len) != NULL)
		buf_printf(line, "~{%zu}\r\n", len);
	else
		buf_printf(line, "{%zu}\r\n", len);
	buf_append(line, data, len);
}

/* binary_check - can BINARY[sec] be served for the part rg names: NULL, or the code of the
 * NO that fails the request (RFC 3516 §4.3): "UNKNOWN-CTE" for a transfer encoding that
 * cannot be undone, "LIMIT" for a part too large to decode in memory. Only a leaf part
 * named by number has an encoding to undo. */
static const char *binary_check(const struct imap_section *sec,
				const struct imap_section_range *rg)
{
	if (rg->kind == IMAP_SECTION_EMPTY)
		return NULL;
	const char *enc = sec->n_part == 0 || !rg->leaf ? NULL : rg->encoding;
	if (enc != NULL && strcmp(enc, "base64") != 0 && strcmp(enc, "quoted-printable") != 0 &&
	    strcmp(enc, "7bit") != 0 && strcmp(enc, "8bit") != 0 && strcmp(enc, "binary") != 0)
		return "UNKNOWN-CTE";
	if (rg->size > FETCH_BINARY_MAX)
		return "LIMIT";	/* decoding never makes base64 or QP larger */
	return NULL;
}

/* items_check - can every BINARY item be served from the message of tree? NULL, or the
 * code that fails the request (binary_check) */
static const char *items_check(const struct imap_fetch_job *j, const struct mime_tree *tree)
{
	for (size_t i = 0; i < j->n_items; i++) {
		const struct imap_section *sec = &j->items[i].sec;
		if (j->items[i].kind != FK_SECTION || sec->item < IMAP_ITEM_BINARY)
			continue;
		struct imap_section_range rg;
		imap_section_resolve(sec, tree, &rg);
		const char *code = binary_check(sec, &rg);
		if (code != NULL)
			return code;
	}
	return NULL;
}

/* binary_decode - the decoded content of range into out (cap FETCH_BINARY_MAX), which
 * binary_check passed; 0, or -1 with *code_r ("LIMIT": the range is not in the message) */
static int binary_decode(const char *msg, size_t msg_len, const struct imap_section *sec,
			 const struct imap_section_range *rg, buf *out, const char **code_r)
{
	const char *enc = sec->n_part == 0 || !rg->leaf ? NULL : rg->encoding;
	if (rg->offset > msg_len || rg->size > msg_len - rg->offset) {
		*code_r = "LIMIT";
		return -1;
	}
	const char *p = msg + rg->offset;
	size_t n = (size_t)rg->size;
	int r;
	if (enc != NULL && strcmp(enc, "base64") == 0)
		r = mime_base64_decode(p, n, out);
	else if (enc != NULL && strcmp(enc, "quoted-printable") == 0)
		r = mime_qp_decode(p, n, false, out);
	else
		r = buf_append(out, p, n);
	if (r < 0) {
		*code_r = "LIMIT";
		return -1;
	}
	return 0;
}

/* write_section - a body section item; may start streaming (j->streaming) */
static void write_section(struct imap_session *s, struct imap_fetch_job *j,
			  const struct fetch_item *it)
{
	const struct imap_section *sec = &it->sec;
	struct msg_data *md = &j->md;
	buf *line = &j->line;
	if (it->alias != NULL)
		buf_puts(line, it->alias);
	else
		imap_section_name(sec, line);
	buf_putc(line, ' ');
	struct imap_section_range rg;
	imap_section_resolve(sec, md->tree, &rg);
	if (sec->item >= IMAP_ITEM_BINARY) {
		if (rg.kind == IMAP_SECTION_EMPTY) {
			buf_puts(line, sec->item == IMAP_ITEM_BINARY_SIZE ? "0" : "\"\"");
			return;
		}
		size_t len;
		const char *msg = md_bytes(md, &len);
		buf dec;
		buf_init(&dec, FETCH_BINARY_MAX);
		const char *code = binary_check(sec, &rg);
		/* msg_start checked the items, so this is only a safety net */
		if (code != NULL || binary_decode(msg, len, sec, &rg, &dec, &code) < 0) {
			buf_free(&dec);
			j->stop_code = code;
			/* the item cannot be given: drop its name again */
			return;
		}
		if (sec->item == IMAP_ITEM_BINARY_SIZE) {
			buf_printf(line, "%zu", dec.len);
		} else {
			uint64_t start, n;
			imap_partial(sec, dec.len, &start, &n);
			write_literal(line, dec.data ? dec.data + start : "", (size_t)n);
		}
		buf_free(&dec);
		return;
	}
	if (rg.kind == IMAP_SECTION_EMPTY) {
		buf_puts(line, "\"\"");
		return;
	}
	if (rg.kind == IMAP_SECTION_FILTER) {
		size_t len;
		const char *msg = md_bytes(md, &len);
		buf hdr;
		buf_init(&hdr, 0);
		if (rg.offset <= len && rg.size <= len - rg.offset)
			imap_header_filter(sec, msg + rg.offset, (size_t)rg.size, &hdr);
		uint64_t start, n;
		imap_partial(sec, hdr.len, &start, &n);
		write_literal(line, hdr.data ? hdr.data + start : "", (size_t)n);
		buf_free(&hdr);
		return;
	}
	uint64_t start, n;
	imap_partial(sec, rg.size, &start, &n);
	buf_printf(line, "{%llu}\r\n", (unsigned long long)n);
	j->streaming = n > 0;
	j->st_off = rg.offset + start;
	j->st_left = n;
}

/* fetch_pump - send the literal being streamed; false when the output filled up */
static bool fetch_pump(struct imap_session *s, struct imap_fetch_job *j)
{
	struct msg_data *md = &j->md;
	char chunk[FETCH_CHUNK];
	while (j->st_left > 0) {
		if (conn_output_full(s->conn))
			return false;
		size_t want = j->st_left < FETCH_CHUNK ? (size_t)j->st_left : FETCH_CHUNK;
		if (md->mem != NULL || !md->crlf) {
			if (j->st_off > md->mem_len || want > md->mem_len - j->st_off) {
				session_close(s->ss, "* BYE Internal error reading a message");
				return false;
			}
			imap_write(s, md->mem + j->st_off, want);
		} else {
			ssize_t k;
			do
				k = pread(md->fd, chunk, want, (off_t)j->st_off);
			while (k < 0 && errno == EINTR);
			if (k <= 0) {
				/* a literal cut short cannot be repaired: the client must go */
				log_warn("%s: FETCH: reading a message", session_id(s->ss));
				session_close(s->ss, "* BYE Error reading a message");
				return false;
			}
			want = (size_t)k;
			imap_write(s, chunk, want);
		}
		j->st_off += want;
		j->st_left -= want;
	}
	j->streaming = false;
	return true;
}

/* write_item - item i of the current message into j->line */
static void write_item(struct imap_session *s, struct imap_fetch_job *j, const struct fetch_msg *m,
		       const struct fetch_item *it)
{
	buf *line = &j->line;
	size_t mark = line->len;
	bool sent = j->item_sent;
	if (j->item_sent)
		buf_putc(line, ' ');
	j->item_sent = true;
	size_t len;
	const char *msg;
	switch (it->kind) {
	case FK_UID:
		buf_printf(line, "UID %u", m->uid);
		break;
	case FK_FLAGS:
		buf_puts(line, "FLAGS ");
		imap_msg_flags_out(s, line, m->flags, m->keywords);
		break;
	case FK_INTERNALDATE:
		buf_puts(line, "INTERNALDATE ");
		imap_datetime_append(line, m->internal_date);
		break;
	case FK_SIZE:
		buf_printf(line, "RFC822.SIZE %llu", (unsigned long long)m->size);
		break;
	case FK_MODSEQ:
		buf_printf(line, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case FK_ENVELOPE: {
		if (j->md.tree->summary != NULL) {	/* the fields it is made of, at hand */
			buf_puts(line, "ENVELOPE ");
			imap_envelope_write(line, j->md.tree->summary, j->md.tree->summary_len,
					    s->utf8);
			break;
		}
		msg = md_bytes(&j->md, &len);
		size_t hl = j->md.tree->count > 0 ? (size_t)j->md.tree->parts[0].header_size : 0;
		if (hl > len)
			hl = len;
		buf_puts(line, "ENVELOPE ");
		imap_envelope_write(line, msg, hl, s->utf8);
		break;
	}
	case FK_BODYSTRUCTURE:
	case FK_BODY:
		msg = md_bytes(&j->md, &len);
		buf_puts(line, it->kind == FK_BODY ? "BODY " : "BODYSTRUCTURE ");
		imap_bodystructure_write(line, j->md.tree, msg, len, it->kind == FK_BODYSTRUCTURE,
					 s->utf8);
		break;
	case FK_SECTION:
		write_section(s, j, it);
		if (j->stop_code != NULL) {
			line->len = mark;	/* not given */
			j->item_sent = sent;
		}
		break;
	}
}

/* batch_load - the structures of the batch that starts at j->next; the first message of
 * it whose BINARY items cannot be served is remembered (batch_stop: the request ends
 * there), and \Seen is set on the messages before it when the items set it */
static void batch_load(struct imap_session *s, struct imap_fetch_job *j)
{
	batch_free(j);
	j->batch_start = j->next;
	size_t nb = j->n_msgs - j->next < FETCH_BATCH ? j->n_msgs - j->next : FETCH_BATCH;
	uint32_t *bu = xcalloc(nb, sizeof(uint32_t));
	for (size_t k = 0; k < nb; k++)
		bu[k] = j->msgs[j->next + k].uid;
	char *err = NULL;
	if (store_msg_structures(s->view.mb, bu, nb, &j->trees, &err) < 0) {
		log_warnx("%s: FETCH structures: %s", session_id(s->ss), err ? err : "?");
		free(err);
		err = NULL;
		j->trees = NULL;	/* parsed per message instead */
	}
	j->batch_n = nb;
	free(bu);
	size_t stop = nb;
	for (size_t k = 0; k < nb && j->trees != NULL && stop == nb; k++)
		if (j->trees[k] != NULL && items_check(j, j->trees[k]) != NULL)
			stop = k;
	j->batch_stop = j->batch_start + stop;
	if (!j->set_seen || stop == 0)
		return;
	size_t nr;
	uint32_t *uids = xcalloc(stop, sizeof(*uids));
	for (size_t k = 0; k < stop; k++)
		uids[k] = j->msgs[j->batch_start + k].uid;
	struct store_uid_range *ranges = imap_uid_ranges(uids, stop, &nr);
	free(uids);
	int rc = store_flags_update(s->view.mb, ranges, nr, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0,
				    seen_cb, s, &err);
	free(ranges);
	if (rc < 0) {
		/* the content can still be sent; \Seen is not set (logged) */
		log_warnx("%s: FETCH \\Seen: %s", session_id(s->ss), err ? err : "?");
		free(err);
	}
}

/* msg_start - begin the response of message j->next; false when it is skipped, or when the
 * request ends before it (j->stop_code: nothing of its response has been sent) */
static bool msg_start(struct imap_session *s, struct imap_fetch_job *j)
{
	const struct fetch_msg *m = &j->msgs[j->next];
	if (j->need_tree) {
		if (j->next < j->batch_start || j->next >= j->batch_start + j->batch_n)
			batch_load(s, j);
		const struct mime_tree *cached =
			j->trees != NULL ? j->trees[j->next - j->batch_start] : NULL;
		if (j->next == j->batch_stop) {
			j->stop_code = items_check(j, cached);
			return false;
		}
		/* A cached tree of the file's own size describes the message as served (no
		 * bare LF: the served size is the file's). When no item needs the bytes and
		 * ENVELOPE can come from its summary, the file is not even opened. */
		int rc = 0;
		if (cached != NULL && cached->msg_size == m->size && !j->need_bytes &&
		    cached->summary != NULL)
			j->md.tree = cached;
		else
			rc = md_open(s, j, m, cached);
		if (rc < 0) {
			md_close(&j->md);
			if (rc == STORE_NOTFOUND)
				j->expunged = true;
			else if (rc == STORE_INVALID)
				j->stop_code = j->stop_code ? j->stop_code : "LIMIT";
			else
				j->failed = true;
			return false;
		}
		/* the tree the items are served from (it may be parsed here): a BINARY item that
		 * cannot be served fails the request before the response begins */
		const char *code = items_check(j, j->md.tree);
		if (code != NULL) {
			md_close(&j->md);
			j->stop_code = code;
			return false;
		}
	}
	buf_reset(&j->line);
	buf_printf(&j->line, "* %u FETCH (", imap_view_seq(&s->view, m->uid));
	j->cur_item = 0;
	j->item_sent = false;
	j->in_msg = true;
	return true;
}

/* msg_end - the implicit items, ")" and the message is done */
static void msg_end(struct imap_session *s, struct imap_fetch_job *j)
{
	const struct fetch_msg *m = &j->msgs[j->next];
	if (m->seen_changed && !j->has_flags) {
		struct fetch_item fl = { .kind = FK_FLAGS };
		write_item(s, j, m, &fl);
	}
	bool modseq = j->add_modseq || (m->seen_changed && s->condstore);
	for (size_t i = 0; i < j->n_items && modseq; i++)
		if (j->items[i].kind == FK_MODSEQ)
			modseq = false;
	if (modseq) {
		struct fetch_item ms = { .kind = FK_MODSEQ };
		write_item(s, j, m, &ms);
	}
	buf_puts(&j->line, ")\r\n");
	imap_write(s, j->line.data, j->line.len);
	buf_reset(&j->line);
	md_close(&j->md);
	j->in_msg = false;
	j->next++;
}

bool imap_fetch_resume(struct imap_session *s)
{
	struct imap_fetch_job *j = s->fetch;
	if (j == NULL)
		return true;
	for (;;) {
		if (session_is_closing(s->ss))
			return false;
		if (j->streaming) {
			if (!fetch_pump(s, j))
				return false;
			continue;
		}
		if (j->in_msg) {
			const struct fetch_msg *m = &j->msgs[j->next];
			while (j->cur_item < j->n_items && !j->streaming && j->stop_code == NULL) {
				write_item(s, j, m, &j->items[j->cur_item++]);
			}
			if (j->streaming) {
				imap_write(s, j->line.data, j->line.len);
				buf_reset(&j->line);
				continue;
			}
			msg_end(s, j);
			continue;
		}
		if (j->next == j->n_msgs || j->stop_code != NULL || j->failed)
			break;
		if (conn_output_full(s->conn))
			return false;
		if (!msg_start(s, j)) {
			j->next++;
			continue;
		}
		if (j->add_uid) {
			struct fetch_item uid = { .kind = FK_UID };
			write_item(s, j, &j->msgs[j->next], &uid);
		}
	}
	const char *cmd = j->uid_cmd ? "UID FETCH" : "FETCH";
	if (j->stop_code != NULL)
		imap_reply(s, "%s NO [%s] %s", j->tag, j->stop_code,
			   strcmp(j->stop_code, "UNKNOWN-CTE") == 0
				   ? "Unknown Content-Transfer-Encoding"
				   : "Message part too large to serve");
	else if (j->failed)
		imap_reply(s, "%s NO [UNAVAILABLE] Error reading messages; try again", j->tag);
	else if (j->expunged)
		imap_reply(s, "%s NO %sSome messages were expunged", j->tag,
			   s->rev2 ? "[EXPUNGEISSUED] " : "");
	else
		imap_reply(s, "%s OK %s completed", j->tag, cmd);
	imap_fetch_free(&s->fetch);
	return true;
}
