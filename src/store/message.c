/* message - messages of an opened mailbox: snapshots, reading, flags and keywords, expunge,
 * copy and move, append, the structure cache */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

/* ---- UID ranges -------------------------------------------------------------------------- */

static int cmp_range(const void *a, const void *b)
{
	const struct store_uid_range *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* ranges_norm - sorted, merged copy of ranges (every UID when n == 0); caller frees */
static struct store_uid_range *ranges_norm(const struct store_uid_range *in, size_t n,
					   size_t *n_r)
{
	if (n == 0) {
		struct store_uid_range *all = xmalloc(sizeof(*all));
		all->first = 1;
		all->last = UINT32_MAX;
		*n_r = 1;
		return all;
	}
	struct store_uid_range *v = xcalloc(n, sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		v[i] = in[i];
		if (v[i].first > v[i].last) {	/* IMAP "5:3" means 3:5 */
			uint32_t t = v[i].first;
			v[i].first = v[i].last;
			v[i].last = t;
		}
	}
	qsort(v, n, sizeof(*v), cmp_range);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m > 0 && (v[m - 1].last == UINT32_MAX || v[i].first <= v[m - 1].last + 1)) {
			if (v[i].last > v[m - 1].last)
				v[m - 1].last = v[i].last;
		} else {
			v[m++] = v[i];
		}
	}
	*n_r = m;
	return v;
}

static bool is_recent(const struct store_mailbox *mb, uint32_t uid)
{
	for (size_t i = 0; i < mb->n_recent; i++)
		if (uid >= mb->recent[i].first && uid <= mb->recent[i].last)
			return true;
	return false;
}

/* mb_saw - after a change through mb: remember the new counters when the old ones were
 * what mb had seen, so that store_mailbox_changed reports only others' changes */
static void mb_saw(struct store_mailbox *mb, uint32_t old_uidnext, uint64_t old_modseq,
	    uint32_t new_uidnext, uint64_t new_modseq)
{
	if (old_uidnext == mb->seen_uidnext && old_modseq == mb->seen_modseq) {
		mb->seen_uidnext = new_uidnext;
		mb->seen_modseq = new_modseq;
	}
}

/* ---- snapshots --------------------------------------------------------------------------- */

int store_mailbox_messages_in(struct store_mailbox *mb, const struct store_uid_range *ranges,
			      size_t n_ranges, uint64_t changedsince,
			      const struct store_msg **msgs_r, size_t *n_r, char **error_r)
{
	struct store *s = mb->s;
	size_t nr;
	struct store_uid_range *rv = ranges_norm(ranges, n_ranges, &nr);
	struct store_msg *msgs = NULL;
	size_t n = 0, cap = 0;
	size_t *kwoff = NULL;
	buf arena;
	buf_init(&arena, 0);
	buf_putc(&arena, '\0');		/* offset 0: "" */
	/* one read transaction: a consistent snapshot across the ranges */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		free(rv);
		buf_free(&arena);
		return STORE_ERROR;
	}
	int rc = SQLITE_DONE;
	for (size_t i = 0; i < nr && rc == SQLITE_DONE; i++) {
		sqlite3_stmt *st = db_st(s, ST_MSG_RANGE);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, rv[i].first);
		sqlite3_bind_int64(st, 3, rv[i].last);
		sqlite3_bind_int64(st, 4, (int64_t)changedsince);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				msgs = xreallocarray(msgs, cap, sizeof(*msgs));
				kwoff = xreallocarray(kwoff, cap, sizeof(*kwoff));
			}
			struct store_msg *m = &msgs[n];
			memset(m, 0, sizeof(*m));
			m->uid = (uint32_t)sqlite3_column_int64(st, 0);
			m->size = (uint64_t)sqlite3_column_int64(st, 1);
			m->internal_date = sqlite3_column_int64(st, 2);
			m->flags = (uint32_t)sqlite3_column_int64(st, 3) & STORE_F_STORED;
			if (is_recent(mb, m->uid))
				m->flags |= STORE_F_RECENT;
			m->modseq = (uint64_t)sqlite3_column_int64(st, 4);
			const char *kw = (const char *)sqlite3_column_text(st, 5);
			kwoff[n] = 0;
			if (kw != NULL && kw[0] != '\0') {
				kwoff[n] = arena.len;
				buf_append(&arena, kw, strlen(kw) + 1);
			}
			n++;
		}
		sqlite3_reset(st);
	}
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	free(rv);
	if (rc != SQLITE_DONE) {
		db_set_error(s, error_r, "list messages");
		free(msgs);
		free(kwoff);
		buf_free(&arena);
		return STORE_ERROR;
	}
	if (msgs == NULL)	/* never NULL, even for no messages (memcpy-safe) */
		msgs = xcalloc(1, sizeof(*msgs));
	for (size_t i = 0; i < n; i++)
		msgs[i].keywords = arena.data + kwoff[i];
	free(kwoff);
	free(mb->msgs);
	free(mb->kw_arena);
	mb->msgs = msgs;
	mb->n_msgs = n;
	mb->kw_arena = arena.data;
	*msgs_r = msgs;
	*n_r = n;
	return 0;
}

int store_mailbox_messages(struct store_mailbox *mb, const struct store_msg **msgs_r, size_t *n_r,
			   char **error_r)
{
	return store_mailbox_messages_in(mb, NULL, 0, 0, msgs_r, n_r, error_r);
}

int store_mailbox_uids(struct store_mailbox *mb, const uint32_t **uids_r, size_t *n_r,
		       char **error_r)
{
	sqlite3_stmt *st = db_st(mb->s, ST_MSG_UIDS);
	sqlite3_bind_int64(st, 1, mb->id);
	uint32_t *v = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		free(v);
		db_set_error(mb->s, error_r, "list UIDs");
		return STORE_ERROR;
	}
	if (v == NULL)
		v = xcalloc(1, sizeof(*v));
	free(mb->uids);
	mb->uids = v;
	mb->n_uids = n;
	*uids_r = v;
	*n_r = n;
	return 0;
}

/* ---- reading ----------------------------------------------------------------------------- */

/* msg_locate - open the file of uid: fd, served size; STORE_NOTFOUND when not indexed */
static int msg_locate(struct store_mailbox *mb, uint32_t uid, int *fd_r, uint64_t *size_r,
		      char **error_r)
{
	struct store *s = mb->s;
	/* both reads in one read transaction: one WAL read lock, not two */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		return STORE_ERROR;
	}
	struct mbrow row;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
		return k;
	}
	sqlite3_stmt *st = db_st(s, ST_MSG_BY_UID);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, uid);
	int rc = sqlite3_step(st);
	char *name = NULL, *file = NULL;
	if (rc == SQLITE_ROW) {
		name = xstrdup((const char *)sqlite3_column_text(st, 0));
		file = xstrdup((const char *)sqlite3_column_text(st, 1));
		*size_r = (uint64_t)sqlite3_column_int64(st, 2);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		db_set_error(s, error_r, "read message");
	sqlite3_reset(st);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	int r;
	if (rc == SQLITE_DONE) {
		store_set_error(error_r, "message %u is not in %s", uid, mb->name);
		r = STORE_NOTFOUND;
	} else if (rc != SQLITE_ROW) {
		r = STORE_ERROR;
	} else {
		r = maildir_open_msg(s, row.dir, name, file, fd_r);
		if (r == STORE_NOTFOUND)
			store_set_error(error_r, "message %u of %s: file %s missing", uid, mb->name,
					file);
		else if (r < 0)
			store_set_error(error_r, "message %u of %s: open %s: %s", uid, mb->name,
					file, strerror(errno));
	}
	free(name);
	free(file);
	mbrow_free(&row);
	return r;
}

int store_msg_open(struct store_mailbox *mb, uint32_t uid, int *fd_r, bool *crlf_r, char **error_r)
{
	uint64_t size;
	int fd;
	int r = msg_locate(mb, uid, &fd, &size, error_r);
	if (r < 0)
		return r;
	/* each bare LF adds one to the served size: equal sizes mean no bare LF */
	struct stat st;
	if (fstat(fd, &st) < 0) {
		store_set_error(error_r, "message %u: fstat: %s", uid, strerror(errno));
		close(fd);
		return STORE_ERROR;
	}
	*crlf_r = (uint64_t)st.st_size == size;
	*fd_r = fd;
	return 0;
}

struct store_reader {
	int fd;
	bool raw;		/* the file is served as it is */
	uint64_t size;		/* served size */
	uint64_t pos;		/* served offset */
	bool prev_cr, pending_lf;
	size_t in_len, in_off;
	char in[16384];
};

int store_reader_open(struct store_mailbox *mb, uint32_t uid, struct store_reader **r_r,
		      char **error_r)
{
	int fd;
	bool crlf;
	int r = store_msg_open(mb, uid, &fd, &crlf, error_r);
	if (r < 0)
		return r;
	struct store_reader *rd = xcalloc(1, sizeof(*rd));
	rd->fd = fd;
	rd->raw = crlf;
	struct stat st;
	rd->size = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	if (!crlf)
		maildir_served_size(fd, &rd->size);
	*r_r = rd;
	return 0;
}

uint64_t store_reader_size(const struct store_reader *r)
{
	return r->size;
}

ssize_t store_reader_read(struct store_reader *r, void *p, size_t n)
{
	if (r->raw) {
		ssize_t k;
		do
			k = read(r->fd, p, n);
		while (k < 0 && errno == EINTR);
		if (k > 0)
			r->pos += (uint64_t)k;
		return k;
	}
	char *out = p;
	size_t o = 0;
	while (o < n) {
		if (r->pending_lf) {
			out[o++] = '\n';
			r->pending_lf = false;
			continue;
		}
		if (r->in_off == r->in_len) {
			ssize_t k = read(r->fd, r->in, sizeof(r->in));
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				if (o > 0)
					break;
				return -1;
			}
			if (k == 0)
				break;
			r->in_len = (size_t)k;
			r->in_off = 0;
		}
		char c = r->in[r->in_off++];
		if (c == '\n' && !r->prev_cr) {
			out[o++] = '\r';
			r->pending_lf = true;
			r->prev_cr = false;
			continue;
		}
		out[o++] = c;
		r->prev_cr = c == '\r';
	}
	r->pos += o;
	return (ssize_t)o;
}

int store_reader_seek(struct store_reader *r, uint64_t offset)
{
	if (r->raw) {
		if (lseek(r->fd, (off_t)offset, SEEK_SET) < 0)
			return -1;
		r->pos = offset;
		return 0;
	}
	if (offset < r->pos) {
		if (lseek(r->fd, 0, SEEK_SET) < 0)
			return -1;
		r->pos = 0;
		r->prev_cr = r->pending_lf = false;
		r->in_len = r->in_off = 0;
	}
	char scratch[8192];
	while (r->pos < offset) {
		uint64_t want = offset - r->pos;
		ssize_t k = store_reader_read(r, scratch,
					      want < sizeof(scratch) ? (size_t)want : sizeof(scratch));
		if (k < 0)
			return -1;
		if (k == 0)
			break;
	}
	return 0;
}

void store_reader_close(struct store_reader **rp)
{
	struct store_reader *r = *rp;
	if (r == NULL)
		return;
	close(r->fd);
	free(r);
	*rp = NULL;
}

/* ---- flags and keywords ------------------------------------------------------------------ */

/* kw_valid - an IMAP atom that is not a system flag */
static bool kw_valid(const char *k, size_t n)
{
	if (n == 0 || n > STORE_MAX_KEYWORD)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)k[i];
		if (c <= 0x20 || c >= 0x7f || strchr("(){]%*\"\\", c) != NULL)
			return false;
	}
	return true;
}

/* kw_check - every keyword of the list valid */
static bool kw_check(const char *list)
{
	if (list == NULL)
		return true;
	const char *p = list;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if (e > p && !kw_valid(p, (size_t)(e - p)))
			return false;
		p = e;
	}
	return true;
}

/* kw_apply - the keyword list after op with arg; caller frees */
static char *kw_apply(const char *cur, enum store_flag_op op, const char *arg)
{
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "");
	const char *src = op == STORE_FLAGS_REPLACE ? "" : cur;
	/* keep those of cur that stay */
	for (const char *p = src; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (n > 0 && !(op == STORE_FLAGS_REMOVE && store_kw_has(arg, p, n)) &&
		    !store_kw_has(b.data, p, n)) {
			if (b.len > 0)
				buf_putc(&b, ' ');
			buf_append(&b, p, n);
		}
		p = e;
	}
	if (op != STORE_FLAGS_REMOVE) {
		for (const char *p = arg; *p;) {
			while (*p == ' ')
				p++;
			const char *e = p;
			while (*e && *e != ' ')
				e++;
			size_t n = (size_t)(e - p);
			if (n > 0 && !store_kw_has(b.data, p, n)) {
				if (b.len > 0)
					buf_putc(&b, ' ');
				buf_append(&b, p, n);
			}
			p = e;
		}
	}
	return b.data;
}

/* the full state of a message during an update */
struct msgrow {
	struct store_msg m;
	char *keywords;
	char *name, *file;
	enum store_update what;
};

static void msgrows_free(struct msgrow *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].keywords);
		free(v[i].name);
		free(v[i].file);
	}
	free(v);
}

/* msgrows_read - the rows in (normalized) ranges, with name and file */
static int msgrows_read(struct store_mailbox *mb, const struct store_uid_range *rv, size_t nr,
			struct msgrow **rows_r, size_t *n_r)
{
	struct msgrow *v = NULL;
	size_t n = 0, cap = 0;
	int rc = SQLITE_DONE;
	for (size_t i = 0; i < nr && rc == SQLITE_DONE; i++) {
		sqlite3_stmt *st = db_st(mb->s, ST_MSG_RANGE_FULL);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, rv[i].first);
		sqlite3_bind_int64(st, 3, rv[i].last);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				v = xreallocarray(v, cap, sizeof(*v));
			}
			struct msgrow *r = &v[n++];
			memset(r, 0, sizeof(*r));
			r->m.uid = (uint32_t)sqlite3_column_int64(st, 0);
			r->m.size = (uint64_t)sqlite3_column_int64(st, 1);
			r->m.internal_date = sqlite3_column_int64(st, 2);
			r->m.flags = (uint32_t)sqlite3_column_int64(st, 3) & STORE_F_STORED;
			r->m.modseq = (uint64_t)sqlite3_column_int64(st, 4);
			r->keywords = xstrdup((const char *)sqlite3_column_text(st, 5));
			r->name = xstrdup((const char *)sqlite3_column_text(st, 6));
			r->file = xstrdup((const char *)sqlite3_column_text(st, 7));
		}
		sqlite3_reset(st);
	}
	if (rc != SQLITE_DONE) {
		msgrows_free(v, n);
		return -1;
	}
	*rows_r = v;
	*n_r = n;
	return 0;
}

int store_flags_update(struct store_mailbox *mb, const struct store_uid_range *ranges,
		       size_t n_ranges, enum store_flag_op op, uint32_t flags,
		       const char *keywords, uint64_t unchangedsince, store_update_fn *cb,
		       void *ctx, char **error_r)
{
	struct store *s = mb->s;
	flags &= ~(uint32_t)STORE_F_RECENT;
	if ((flags & ~(uint32_t)STORE_F_STORED) != 0 || !kw_check(keywords)) {
		store_set_error(error_r, "invalid flag or keyword");
		return STORE_INVALID;
	}
	if (keywords == NULL)
		keywords = "";
	size_t nr;
	struct store_uid_range *rv = ranges_norm(ranges, n_ranges, &nr);
	struct msgrow *rows = NULL;
	size_t n = 0;
	struct mbrow row = { 0 };
	int r = db_begin(s, false, error_r);
	if (r < 0)
		goto out;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		r = k;
		goto rollback;
	}
	if (msgrows_read(mb, rv, nr, &rows, &n) < 0)
		goto dberr;
	uint64_t modseq = row.highestmodseq + 1;
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		struct msgrow *m = &rows[i];
		uint32_t nf = op == STORE_FLAGS_ADD ? m->m.flags | flags
			      : op == STORE_FLAGS_REMOVE ? m->m.flags & ~flags : flags;
		char *nk = kw_apply(m->keywords, op, keywords);
		if (unchangedsince != 0 && m->m.modseq > unchangedsince) {
			m->what = STORE_UPDATE_CONFLICT;
		} else if (nf == m->m.flags && strcmp(nk, m->keywords) == 0) {
			m->what = STORE_UPDATE_SAME;
		} else {
			m->what = STORE_UPDATE_CHANGED;
			sqlite3_stmt *st = db_st(s, ST_MSG_SET_FLAGS);
			sqlite3_bind_int64(st, 1, mb->id);
			sqlite3_bind_int64(st, 2, m->m.uid);
			sqlite3_bind_int64(st, 3, nf);
			sqlite3_bind_text(st, 4, nk, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(st, 5, (int64_t)modseq);
			if (db_exec(st) < 0) {
				free(nk);
				goto dberr;
			}
			m->m.flags = nf;
			m->m.modseq = modseq;
			free(m->keywords);
			m->keywords = nk;
			nk = NULL;
			any = true;
		}
		free(nk);
	}
	if (any) {
		if (idx_mb_counters(s, mb->id, row.uidnext, modseq) < 0)
			goto dberr;
		if (op != STORE_FLAGS_REMOVE) {
			r = idx_add_keywords(s, mb->id, keywords, error_r);
			if (r < 0)
				goto rollback;
		}
		r = db_commit(s, error_r);
		if (r < 0)
			goto out;
		mb_saw(mb, row.uidnext, row.highestmodseq, row.uidnext, modseq);
	} else {
		db_rollback(s);
	}
	for (size_t i = 0; cb != NULL && i < n; i++) {
		rows[i].m.keywords = rows[i].keywords;
		if (is_recent(mb, rows[i].m.uid))
			rows[i].m.flags |= STORE_F_RECENT;
		cb(ctx, &rows[i].m, rows[i].what);
	}
	if (any)
		store_notify(s, mb->name, STORE_CHANGE_FLAGS);
	r = 0;
	goto out;
dberr:
	db_set_error(s, error_r, "update flags");
	r = STORE_ERROR;
rollback:
	db_rollback(s);
out:
	msgrows_free(rows, n);
	mbrow_free(&row);
	free(rv);
	return r;
}

/* ---- expunge ----------------------------------------------------------------------------- */

/* expunge - remove the messages in rv (only \Deleted ones when only_deleted): rows and
 * pending unlinks in one durable transaction, then the files, then the pending entries.
 * Each gets an expunge record with the mailbox's new HIGHESTMODSEQ (*modseq_r).
 * Returns the count, *uids_r (caller frees) the UIDs. */
/* An expunge whose syncs run on another thread (store_expunge_deleted_begin): the WAL, so
 * that the commit (made with synchronous=NORMAL) is durable, then the unlinks. */
struct store_expunge_sync {
	struct idx_unlinks u;	/* with sync_wal: the WAL first */
	char *mailbox;		/* for the notification, at the end */
};

/* The accounts (roots) with such an expunge in flight in this process, so that a pick-up
 * leaves their pending unlinks to it rather than sync the WAL on the loop. Touched on the
 * loop's thread only (begin and end). */
static struct inflight {
	char *root;
	unsigned n;
} *inflight;
static size_t n_inflight;

static void inflight_add(const char *root, int d)
{
	for (size_t i = 0; i < n_inflight; i++) {
		if (strcmp(inflight[i].root, root) != 0)
			continue;
		inflight[i].n += (unsigned)d;
		if (inflight[i].n == 0) {
			free(inflight[i].root);
			inflight[i] = inflight[--n_inflight];
		}
		return;
	}
	if (d <= 0)
		return;
	inflight = xreallocarray(inflight, n_inflight + 1, sizeof(*inflight));
	inflight[n_inflight++] = (struct inflight){ .root = xstrdup(root), .n = 1 };
}

bool store_expunge_in_flight(const char *root)
{
	for (size_t i = 0; i < n_inflight; i++)
		if (strcmp(inflight[i].root, root) == 0)
			return true;
	return false;
}

static int expunge(struct store_mailbox *mb, const struct store_uid_range *rv, size_t nr,
		   bool only_deleted, uint32_t **uids_r, uint64_t *modseq_r,
		   struct store_expunge_sync **sync_r, char **error_r)
{
	struct store *s = mb->s;
	struct msgrow *rows = NULL;
	size_t n = 0, count = 0;
	struct mbrow row = { 0 };
	uint32_t *uids = NULL;
	/* Why rows before files: a file without a row would be picked up again as new mail,
	 * a row without a file would be a message that cannot be read. The pending entry,
	 * written with the row's deletion, bridges the two: the pick-up skips its name and
	 * finishes the unlink. The commit is synchronous=FULL: expunged mail stays gone. With
	 * sync_r, it is synchronous=NORMAL, and the caller makes it durable before anyone is
	 * told (store_expunge_sync_run: the WAL's fdatasync, what FULL does at the commit). */
	int r = db_begin(s, sync_r == NULL, error_r);
	if (r < 0)
		return r;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		r = k;
		goto rollback;
	}
	if (msgrows_read(mb, rv, nr, &rows, &n) < 0)
		goto dberr;
	uids = xcalloc(n + 1, sizeof(*uids));
	uint64_t modseq = row.highestmodseq + 1;	/* every expunged message's (RFC 7162 3.2.7) */
	for (size_t i = 0; i < n; i++) {
		if (only_deleted && !(rows[i].m.flags & STORE_F_DELETED))
			continue;
		if (idx_expunge_record(s, mb->id, rows[i].m.uid, modseq) < 0)
			goto dberr;
		sqlite3_stmt *st = db_st(s, ST_UNLINK_ADD);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_text(st, 2, rows[i].name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, rows[i].file, -1, SQLITE_TRANSIENT);
		if (db_exec(st) < 0)
			goto dberr;
		st = db_st(s, ST_MSG_DELETE);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, rows[i].m.uid);
		if (db_exec(st) < 0)
			goto dberr;
		uids[count++] = rows[i].m.uid;
	}
	if (count == 0) {
		db_rollback(s);
		r = 0;
		goto out;
	}
	if (idx_mb_counters(s, mb->id, row.uidnext, modseq) < 0 || idx_expunge_prune(s, mb->id) < 0)
		goto dberr;
	r = db_commit(s, error_r);
	if (r < 0)
		goto out;
	mb_saw(mb, row.uidnext, row.highestmodseq, row.uidnext, modseq);
	if (modseq_r != NULL)
		*modseq_r = modseq;
	char *err = NULL;
	if (sync_r != NULL) {
		struct store_expunge_sync *es = xcalloc(1, sizeof(*es));
		es->mailbox = xstrdup(mb->name);
		if (idx_unlinks_list(s, mb->id, &es->u, &err) < 0) {
			/* committed: the next pick-up finishes the unlinks */
			log_warnx("%s: %s", s->root, err ? err : "pending unlinks");
			free(err);
		}
		/* our own commit: the WAL is synced even if the list failed */
		es->u.sync_wal_always = true;
		inflight_add(s->root, 1);
		*sync_r = es;
	} else {
		if (idx_finish_unlinks(s, mb->id, true, &err) < 0) {
			/* committed: the next pick-up finishes the unlinks */
			log_warnx("%s: %s", s->root, err ? err : "pending unlinks");
			free(err);
		}
		store_notify(s, mb->name, STORE_CHANGE_EXPUNGE);
	}
	r = (int)count;
	goto out;
dberr:
	db_set_error(s, error_r, "expunge");
	r = STORE_ERROR;
rollback:
	db_rollback(s);
out:
	msgrows_free(rows, n);
	mbrow_free(&row);
	if (r > 0)
		*uids_r = uids;
	else
		free(uids);
	return r;
}

int store_expunge(struct store_mailbox *mb, const uint32_t *uids, size_t n, char **error_r)
{
	if (n == 0)
		return 0;
	struct store_uid_range *in = xcalloc(n, sizeof(*in));
	for (size_t i = 0; i < n; i++)
		in[i].first = in[i].last = uids[i];
	size_t nr;
	struct store_uid_range *rv = ranges_norm(in, n, &nr);
	free(in);
	uint32_t *gone = NULL;
	int r = expunge(mb, rv, nr, false, &gone, NULL, NULL, error_r);
	free(rv);
	free(gone);
	return r < 0 ? r : 0;
}

/* expunge_deleted - store_expunge_deleted, with sync_r: store_expunge_deleted_begin */
static int expunge_deleted(struct store_mailbox *mb, const struct store_uid_range *ranges,
			   size_t n_ranges, store_expunge_fn *cb, void *ctx,
			   struct store_expunge_sync **sync_r, char **error_r)
{
	size_t nr;
	struct store_uid_range *rv = ranges_norm(ranges, n_ranges, &nr);
	uint32_t *gone = NULL;
	uint64_t modseq = 0;
	int r = expunge(mb, rv, nr, true, &gone, &modseq, sync_r, error_r);
	free(rv);
	for (int i = 0; cb != NULL && i < r; i++)
		cb(ctx, gone[i], modseq);
	free(gone);
	return r;
}

int store_expunge_deleted(struct store_mailbox *mb, const struct store_uid_range *ranges,
			  size_t n_ranges, store_expunge_fn *cb, void *ctx, char **error_r)
{
	return expunge_deleted(mb, ranges, n_ranges, cb, ctx, NULL, error_r);
}

int store_expunge_deleted_begin(struct store_mailbox *mb, const struct store_uid_range *ranges,
				size_t n_ranges, store_expunge_fn *cb, void *ctx,
				struct store_expunge_sync **sync_r, char **error_r)
{
	*sync_r = NULL;
	return expunge_deleted(mb, ranges, n_ranges, cb, ctx, sync_r, error_r);
}

void store_expunge_sync_run(struct store_expunge_sync *es)
{
	idx_unlinks_run(&es->u);	/* the WAL's fdatasync, then the files */
}

int store_expunge_sync_end(struct store *s, struct store_expunge_sync **esp, char **error_r)
{
	struct store_expunge_sync *es = *esp;
	int r = 0;
	if (es == NULL)
		return 0;
	*esp = NULL;
	char *err = NULL;
	if (s != NULL && idx_unlinks_forget(s, &es->u, &err) < 0 && es->u.wal_err == 0) {
		/* durable: the next pick-up finishes the unlinks */
		log_warnx("%s: %s", s->root, err ? err : "pending unlinks");
	}
	free(err);
	if (es->u.wal_err != 0) {
		store_set_error(error_r, "fdatasync of the index's WAL: %s", strerror(es->u.wal_err));
		r = STORE_ERROR;
	}
	if (s != NULL)
		store_notify(s, es->mailbox, STORE_CHANGE_EXPUNGE);
	inflight_add(es->u.root->root, -1);
	idx_unlinks_free(&es->u);
	free(es->mailbox);
	free(es);
	return r;
}

/* ---- copy and move ----------------------------------------------------------------------- */

/* kw_union_add - add the keywords of list that u lacks (space-separated) */
static void kw_union_add(buf *u, const char *list)
{
	for (const char *p = list; *p;) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		size_t n = (size_t)(e - p);
		if (n > 0 && !store_kw_has(u->data, p, n)) {
			if (u->len > 0)
				buf_putc(u, ' ');
			buf_append(u, p, n);
		}
		p = e;
	}
}

/* copy_bytes - when a hard link is impossible: a copy through tmp/, fsync'd, at dst */
static int copy_bytes(struct store *s, const char *src_dir, const struct msgrow *m,
		      const char *dst_dir, const char *dst)
{
	int in;
	if (maildir_open_msg(s, src_dir, m->name, m->file, &in) < 0)
		return -1;
	char uniq[256];
	store_unique_name(s, uniq, sizeof(uniq), m->m.size);
	char *tmp = xasprintf("%s/tmp/%s", dst_dir, uniq);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int r = out < 0 ? -1 : 0;
	char chunk[65536];
	while (r == 0) {
		ssize_t k = read(in, chunk, sizeof(chunk));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			r = k < 0 ? -1 : 0;
			break;
		}
		if (fs_write_all(out, chunk, (size_t)k) < 0)
			r = -1;
	}
	close(in);
	if (out >= 0) {
		if (r == 0 && (fsync(out) < 0 || close(out) < 0))
			r = -1;
		else if (r < 0)
			close(out);
		if (r == 0 && rename(tmp, dst) < 0)
			r = -1;
		if (r < 0)
			unlink(tmp);
	}
	free(tmp);
	return r;
}

int store_copy(struct store_mailbox *mb, const struct store_uid_range *ranges, size_t n_ranges,
	       const char *dest, bool move, struct store_copy_result *res_r, char **error_r)
{
	struct store *s = mb->s;
	char *norm = NULL;
	struct mbrow src = { 0 }, dst = { 0 };
	struct msgrow *rows = NULL;
	size_t n = 0, nr = 0;
	struct store_uid_range *rv = NULL;
	char **links = NULL;		/* per row: the new file's name in dest new/, or NULL */
	char *dst_root = NULL, *dst_new = NULL;
	buf kws;		/* the distinct keywords of the copied messages */
	buf_init(&kws, 0);
	buf_puts(&kws, "");
	int r;
	if (res_r != NULL)
		memset(res_r, 0, sizeof(*res_r));
	int k = store_mb_find(s, dest, &norm, &dst, error_r);
	if (k < 0) {
		buf_free(&kws);
		return k;
	}
	k = idx_mb_current(mb, &src, error_r);
	if (k < 0) {
		r = k;
		goto out;
	}
	rv = ranges_norm(ranges, n_ranges, &nr);
	if (msgrows_read(mb, rv, nr, &rows, &n) < 0) {
		db_set_error(s, error_r, "read messages");
		r = STORE_ERROR;
		goto out;
	}
	/* The files first, outside the lock: links in dest new/ (a crash leaves them to be
	 * picked up there: a duplicate at worst, never a loss), made durable together. */
	links = xcalloc(n + 1, sizeof(*links));
	dst_root = store_path(s, dst.dir, NULL);
	dst_new = store_path(s, dst.dir, "new");
	size_t n_links = 0;
	for (size_t i = 0; i < n; i++) {
		char uniq[256];
		store_unique_name(s, uniq, sizeof(uniq), rows[i].m.size);
		char *path = xasprintf("%s/%s", dst_new, uniq);
		int lr = maildir_link_msg(s, src.dir, rows[i].name, rows[i].file, path);
		if (lr == -1 && (errno == EXDEV || errno == EMLINK))
			lr = copy_bytes(s, src.dir, &rows[i], dst_root, path);
		free(path);
		if (lr == STORE_NOTFOUND)
			continue;	/* expunged meanwhile */
		if (lr < 0) {
			store_set_error(error_r, "copy message %u to %s: %s", rows[i].m.uid, norm,
					strerror(errno));
			r = STORE_ERROR;
			goto unlink_out;
		}
		links[i] = xstrdup(uniq);
		n_links++;
	}
	if (n_links > 0 && fs_fsync_dir(dst_new) < 0) {
		store_set_error(error_r, "fsync %s: %s", dst_new, strerror(errno));
		r = STORE_ERROR;
		goto unlink_out;
	}
	if (n_links == 0) {
		r = 0;
		goto out;
	}

	r = db_begin(s, move, error_r);
	if (r < 0)
		goto unlink_out;
	mbrow_free(&dst);
	mbrow_free(&src);
	if ((k = idx_mb_by_name(s, norm, &dst, error_r)) != 1 ||
	    (k = idx_mb_by_id(s, mb->id, &src, error_r)) != 1) {
		if (k == 0)
			store_set_error(error_r, "mailbox deleted meanwhile");
		r = k == 0 ? STORE_NOTFOUND : STORE_ERROR;
		goto rollback;
	}
	bool same = dst.id == src.id;
	uint32_t uidnext = dst.uidnext;
	uint64_t dst_modseq = dst.highestmodseq + 1;
	uint32_t *src_uids = xcalloc(n_links, sizeof(uint32_t));
	uint32_t *dst_uids = xcalloc(n_links, sizeof(uint32_t));
	size_t done = 0;
	for (size_t i = 0; i < n; i++) {
		if (links[i] == NULL)
			continue;
		if (move) {
			/* a message expunged meanwhile is not moved */
			sqlite3_stmt *st = db_st(s, ST_MSG_BY_UID);
			sqlite3_bind_int64(st, 1, mb->id);
			sqlite3_bind_int64(st, 2, rows[i].m.uid);
			int rc = sqlite3_step(st);
			sqlite3_reset(st);
			if (rc == SQLITE_DONE)
				continue;
			if (rc != SQLITE_ROW)
				goto dberr_arrays;
		}
		if (uidnext == UINT32_MAX) {
			store_set_error(error_r, "mailbox %s: no UIDs left", norm);
			r = STORE_ERROR;
			free(src_uids);
			free(dst_uids);
			goto rollback;
		}
		char *file = xasprintf("new/%s", links[i]);
		int ir = idx_msg_insert(s, dst.id, uidnext, links[i], file, rows[i].m.size,
					rows[i].m.internal_date, rows[i].m.flags,
					rows[i].keywords, dst_modseq);
		free(file);
		if (ir < 0)
			goto dberr_arrays;
		kw_union_add(&kws, rows[i].keywords);
		if (move) {
			/* the source's new MODSEQ: dst_modseq when moving within one mailbox */
			if (idx_expunge_record(s, mb->id, rows[i].m.uid,
					       same ? dst_modseq : src.highestmodseq + 1) < 0)
				goto dberr_arrays;
			sqlite3_stmt *st = db_st(s, ST_UNLINK_ADD);
			sqlite3_bind_int64(st, 1, mb->id);
			sqlite3_bind_text(st, 2, rows[i].name, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(st, 3, rows[i].file, -1, SQLITE_TRANSIENT);
			if (db_exec(st) < 0)
				goto dberr_arrays;
			st = db_st(s, ST_MSG_DELETE);
			sqlite3_bind_int64(st, 1, mb->id);
			sqlite3_bind_int64(st, 2, rows[i].m.uid);
			if (db_exec(st) < 0)
				goto dberr_arrays;
		}
		src_uids[done] = rows[i].m.uid;
		dst_uids[done++] = uidnext++;
	}
	if (done > 0) {
		/* the destination's keyword list once, not once per message */
		if (idx_mb_counters(s, dst.id, uidnext, dst_modseq) < 0 ||
		    (kws.len > 0 && idx_add_keywords(s, dst.id, kws.data, NULL) < 0))
			goto dberr_arrays;
		if (move && !same &&
		    idx_mb_counters(s, src.id, src.uidnext, src.highestmodseq + 1) < 0)
			goto dberr_arrays;
		if (move && idx_expunge_prune(s, mb->id) < 0)
			goto dberr_arrays;
	}
	r = db_commit(s, error_r);
	if (r < 0) {
		free(src_uids);
		free(dst_uids);
		goto unlink_out;
	}
	/* links not used (moved messages that vanished) go again */
	for (size_t i = 0; i < n; i++) {
		if (links[i] == NULL)
			continue;
		bool used = false;
		for (size_t j = 0; j < done && !used; j++)
			used = src_uids[j] == rows[i].m.uid;
		if (!used) {
			char *p = xasprintf("%s/%s", dst_new, links[i]);
			unlink(p);
			free(p);
		}
	}
	if (move && done > 0) {
		if (same)
			mb_saw(mb, src.uidnext, src.highestmodseq, uidnext, dst_modseq);
		else
			mb_saw(mb, src.uidnext, src.highestmodseq, src.uidnext,
			       src.highestmodseq + 1);
		char *err = NULL;
		if (idx_finish_unlinks(s, mb->id, true, &err) < 0) {
			log_warnx("%s: %s", s->root, err ? err : "pending unlinks");
			free(err);
		}
	}
	if (done > 0) {
		store_notify(s, dst.name, STORE_CHANGE_NEW);
		if (move)
			store_notify(s, mb->name, STORE_CHANGE_EXPUNGE);
	}
	if (res_r != NULL) {
		res_r->uidvalidity = dst.uidvalidity;
		res_r->n = done;
		res_r->src_uids = src_uids;
		res_r->dst_uids = dst_uids;
	} else {
		free(src_uids);
		free(dst_uids);
	}
	r = 0;
	goto out;
dberr_arrays:
	free(src_uids);
	free(dst_uids);
	db_set_error(s, error_r, move ? "move" : "copy");
	r = STORE_ERROR;
rollback:
	db_rollback(s);
unlink_out:
	for (size_t i = 0; links != NULL && i < n; i++) {
		if (links[i] == NULL)
			continue;
		char *p = xasprintf("%s/%s", dst_new, links[i]);
		unlink(p);
		free(p);
	}
out:
	for (size_t i = 0; links != NULL && i < n; i++)
		free(links[i]);
	free(links);
	msgrows_free(rows, n);
	mbrow_free(&src);
	mbrow_free(&dst);
	free(rv);
	free(dst_root);
	free(dst_new);
	free(norm);
	buf_free(&kws);
	return r;
}

void store_copy_result_free(struct store_copy_result *res)
{
	if (res == NULL)
		return;
	free(res->src_uids);
	free(res->dst_uids);
	memset(res, 0, sizeof(*res));
}

/* ---- append ------------------------------------------------------------------------------ */

struct store_append {
	struct store *s;
	int64_t id;
	char *dir_path;		/* the mailbox directory */
	char *tmp_path;
	int fd;
	uint64_t served;
	char prev;
	int err;		/* first write error (errno) */
	char wbuf[65536];
	size_t wlen;
	/* store_append_seal's, for store_append_sync and store_append_commit */
	bool sealed;
	uint32_t flags;
	char *keywords;		/* compacted */
	int64_t date;
	char *name, *newdir, *dst;	/* the name in new/, new/ and the path there */
	bool linked;		/* dst is in new/ (sync done), not yet indexed */
	char *sync_error;	/* store_append_sync's failure */
};

int store_append_begin(struct store *s, const char *mailbox, struct store_append **ap_r,
		       char **error_r)
{
	struct mbrow row;
	int k = store_mb_find(s, mailbox, NULL, &row, error_r);
	if (k < 0)
		return k;
	struct store_append *ap = xcalloc(1, sizeof(*ap));
	ap->s = s;
	ap->id = row.id;
	ap->dir_path = store_path(s, row.dir, NULL);
	mbrow_free(&row);
	char uniq[256];
	store_unique_name(s, uniq, sizeof(uniq), 0);
	ap->tmp_path = xasprintf("%s/tmp/%s", ap->dir_path, uniq);
	ap->fd = open(ap->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (ap->fd < 0) {
		store_set_error(error_r, "%s: %s", ap->tmp_path, strerror(errno));
		free(ap->tmp_path);
		ap->tmp_path = NULL;
		store_append_abort(&ap);
		return STORE_ERROR;
	}
	*ap_r = ap;
	return 0;
}

static void append_flush(struct store_append *ap)
{
	if (ap->wlen > 0 && ap->err == 0 && fs_write_all(ap->fd, ap->wbuf, ap->wlen) < 0)
		ap->err = errno;
	ap->wlen = 0;
}

int store_append_write(struct store_append *ap, const void *p, size_t n)
{
	const char *c = p;
	for (size_t i = 0; i < n; i++) {
		if (c[i] == '\n' && ap->prev != '\r')
			ap->served++;
		ap->prev = c[i];
	}
	ap->served += n;
	if (ap->err != 0)
		return -1;
	if (ap->wlen + n > sizeof(ap->wbuf)) {
		append_flush(ap);
		if (n >= sizeof(ap->wbuf)) {
			if (ap->err == 0 && fs_write_all(ap->fd, p, n) < 0)
				ap->err = errno;
			return ap->err ? -1 : 0;
		}
	}
	memcpy(ap->wbuf + ap->wlen, p, n);
	ap->wlen += n;
	return ap->err ? -1 : 0;
}

int store_append_seal(struct store_append *ap, uint32_t flags, const char *keywords,
		      int64_t internal_date, char **error_r)
{
	flags &= ~(uint32_t)STORE_F_RECENT;
	if ((flags & ~(uint32_t)STORE_F_STORED) != 0 || !kw_check(keywords)) {
		store_set_error(error_r, "invalid flag or keyword");
		return STORE_INVALID;
	}
	ap->flags = flags;
	/* Compact keywords to single spaces before they are stored. */
	ap->keywords = kw_apply("", STORE_FLAGS_REPLACE, keywords ? keywords : "");
	ap->date = internal_date > 0 ? internal_date : (int64_t)time(NULL);
	append_flush(ap);
	char name[256];
	store_unique_name(ap->s, name, sizeof(name), ap->served);
	ap->name = xstrdup(name);
	ap->newdir = xasprintf("%s/new", ap->dir_path);
	ap->dst = xasprintf("%s/%s", ap->newdir, name);
	ap->sealed = true;
	return 0;
}

void store_append_sync(struct store_append *ap)
{
	/* the file's mtime is the INTERNALDATE, so that a rebuilt index finds it again */
	struct timespec times[2] = { { ap->date, 0 }, { ap->date, 0 } };
	if (ap->err == 0 && (futimens(ap->fd, times) < 0 || fsync(ap->fd) < 0))
		ap->err = errno;
	if (close(ap->fd) < 0 && ap->err == 0)
		ap->err = errno;
	ap->fd = -1;
	if (ap->err != 0) {
		ap->sync_error = xasprintf("%s: %s", ap->tmp_path, strerror(ap->err));
		return;
	}
	if (rename(ap->tmp_path, ap->dst) < 0) {
		ap->sync_error = xasprintf("rename to %s: %s", ap->dst, strerror(errno));
		return;
	}
	free(ap->tmp_path);
	ap->tmp_path = NULL;
	if (fs_fsync_dir(ap->newdir) < 0) {
		ap->sync_error = xasprintf("fsync %s: %s", ap->newdir, strerror(errno));
		unlink(ap->dst);
		return;
	}
	ap->linked = true;
}

int store_append_commit(struct store_append **app, uint32_t *uidvalidity_r, uint32_t *uid_r,
			char **error_r)
{
	struct store_append *ap = *app;
	int r = STORE_ERROR;
	if (!ap->linked) {
		if (error_r != NULL && *error_r == NULL)
			*error_r = ap->sync_error ? xstrdup(ap->sync_error) : xstrdup("not synced");
		goto out;
	}
	char *file = xasprintf("new/%s", ap->name);
	uint32_t uidvalidity = 0, uid = 0;
	/* the structure is left to the first FETCH (store_msg_structures): only delivery, the
	 * path that must be fast and is followed by FETCHes of new mail, caches it at once */
	r = idx_add_message(ap->s, ap->id, ap->name, file, ap->served, ap->date, ap->flags,
			    ap->keywords, NULL, &uid, &uidvalidity, error_r);
	free(file);
	if (r < 0) {
		unlink(ap->dst);
		fs_fsync_dir(ap->newdir);
		ap->linked = false;
		goto out;
	}
	ap->linked = false;	/* indexed: the file stays */
	if (uidvalidity_r != NULL)
		*uidvalidity_r = uidvalidity;
	if (uid_r != NULL)
		*uid_r = uid;
out:
	store_append_abort(app);
	return r;
}

int store_append_finish(struct store_append **app, uint32_t flags, const char *keywords,
			int64_t internal_date, uint32_t *uidvalidity_r, uint32_t *uid_r,
			char **error_r)
{
	int r = store_append_seal(*app, flags, keywords, internal_date, error_r);
	if (r < 0) {
		store_append_abort(app);
		return r;
	}
	store_append_sync(*app);
	return store_append_commit(app, uidvalidity_r, uid_r, error_r);
}

void store_append_abort(struct store_append **app)
{
	struct store_append *ap = *app;
	if (ap == NULL)
		return;
	if (ap->fd >= 0)
		close(ap->fd);
	if (ap->tmp_path != NULL)
		unlink(ap->tmp_path);
	/* in new/ but never indexed (nobody was told): taken back, as SMTP takes back its links */
	if (ap->linked)
		unlink(ap->dst);
	free(ap->tmp_path);
	free(ap->dir_path);
	free(ap->keywords);
	free(ap->name);
	free(ap->newdir);
	free(ap->dst);
	free(ap->sync_error);
	free(ap);
	*app = NULL;
}

int store_append(struct store *s, const char *mailbox, const void *data, size_t len,
		 uint32_t flags, const char *keywords, int64_t internal_date,
		 uint32_t *uidvalidity_r, uint32_t *uid_r, char **error_r)
{
	struct store_append *ap;
	int r = store_append_begin(s, mailbox, &ap, error_r);
	if (r < 0)
		return r;
	store_append_write(ap, data, len);
	return store_append_finish(&ap, flags, keywords, internal_date, uidvalidity_r, uid_r,
				   error_r);
}

/* ---- structure cache --------------------------------------------------------------------- */

int store_msg_cache_get(struct store_mailbox *mb, uint32_t uid, void **data_r, size_t *len_r,
			char **error_r)
{
	sqlite3_stmt *st = db_st(mb->s, ST_MSG_CACHE_GET);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, uid);
	int rc = sqlite3_step(st);
	int r;
	if (rc == SQLITE_ROW) {
		if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
			r = 0;
		} else {
			const void *p = sqlite3_column_blob(st, 0);
			size_t n = (size_t)sqlite3_column_bytes(st, 0);
			char *copy = xmalloc(n + 1);
			if (n > 0)
				memcpy(copy, p, n);
			*data_r = copy;
			*len_r = n;
			r = 1;
		}
	} else if (rc == SQLITE_DONE) {
		store_set_error(error_r, "message %u is not in %s", uid, mb->name);
		r = STORE_NOTFOUND;
	} else {
		db_set_error(mb->s, error_r, "read cache");
		r = STORE_ERROR;
	}
	sqlite3_reset(st);
	return r;
}

int store_msg_cache_set(struct store_mailbox *mb, uint32_t uid, const void *data, size_t len,
			char **error_r)
{
	sqlite3_stmt *st = db_st(mb->s, ST_MSG_CACHE_SET);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_blob64(st, 3, len ? data : "", len, SQLITE_TRANSIENT);
	if (db_exec(st) < 0) {
		db_set_error(mb->s, error_r, "write cache");
		return STORE_ERROR;
	}
	if (sqlite3_changes(mb->s->db) == 0) {
		store_set_error(error_r, "message %u is not in %s", uid, mb->name);
		return STORE_NOTFOUND;
	}
	return 0;
}
