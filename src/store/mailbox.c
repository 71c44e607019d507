/* mailbox - the account handle and its mailboxes: open, create, delete, rename, list,
 * subscriptions, status, change detection, the POP3 lock */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

void store_set_change_hook(struct store *s, store_change_fn *fn, void *ctx)
{
	s->hook = fn;
	s->hook_ctx = ctx;
}

/* sweep_trash - finish deletes that a crash interrupted (directories moved to tmp/) */
static void sweep_trash(struct store *s)
{
	struct entries e;
	char *tmp = store_path(s, NULL, "tmp");
	if (maildir_list(tmp, &e) == 0) {
		for (size_t i = 0; i < e.n; i++) {
			if (strncmp(e.v[i], "deleted.", 8) != 0)
				continue;
			char *p = xasprintf("%s/%s", tmp, e.v[i]);
			if (maildir_rmtree(p) < 0)
				log_warn("%s: remove %s", s->root, p);
			free(p);
		}
		entries_free(&e);
	}
	free(tmp);
}

int store_open(const char *data_dir, const char *address, struct store **store_r, char **error_r)
{
	struct store *s = xcalloc(1, sizeof(*s));
	s->root = store_maildir_path(data_dir, address);
	if (gethostname(s->host, sizeof(s->host) - 1) < 0 || s->host[0] == '\0')
		snprintf(s->host, sizeof(s->host), "localhost");
	/* Maildir names keep '/' and ':' out of the host part */
	for (char *p = s->host; *p; p++)
		if (*p == '/' || *p == ':' || *p == ',' || (unsigned char)*p < 0x21 ||
		    (unsigned char)*p > 0x7e)
			*p = '_';
	if (maildir_ensure(s->root, false) < 0) {
		store_set_error(error_r, "%s: %s", s->root, strerror(errno));
		goto fail;
	}
	if (db_open(s, error_r) < 0)
		goto fail;
	struct mbrow r;
	int k = idx_mb_lookup(s, "INBOX", &r, error_r);
	if (k < 0)
		goto fail;
	if (k == 0) {
		store_set_error(error_r, "%s: INBOX missing", s->root);
		goto fail;
	}
	s->inbox_id = r.id;
	mbrow_free(&r);
	sweep_trash(s);
	*store_r = s;
	return 0;
fail:
	store_close(&s);
	return -1;
}

void store_close(struct store **sp)
{
	struct store *s = *sp;
	if (s == NULL)
		return;
	if (s->open_mailboxes != 0)
		log_panic("store_close: %u mailboxes still open", s->open_mailboxes);
	db_close(s);
	free(s->root);
	free(s);
	*sp = NULL;
}

/* mb_snapshot_free - drop a mailbox's cached message list and UID snapshot; they are
 * read again when next needed. */
static void mb_snapshot_free(struct store_mailbox *mb)
{
	free(mb->msgs);
	free(mb->kw_arena);
	free(mb->uids);
	mb->msgs = NULL;
	mb->kw_arena = NULL;
	mb->uids = NULL;
	mb->n_msgs = mb->n_uids = 0;
}

void store_sleep(struct store *s)
{
	if (s->asleep)
		return;
	for (struct store_mailbox *mb = s->mailboxes; mb != NULL; mb = mb->next)
		mb_snapshot_free(mb);
	db_close(s);
	s->asleep = true;
}

int store_wake(struct store *s, char **error_r)
{
	if (!s->asleep)
		return 0;
	if (db_open(s, error_r) < 0) {
		db_close(s);	/* a half-open connection: the next wake tries again */
		return -1;
	}
	s->asleep = false;
	return 0;
}

/* ---- opened mailboxes -------------------------------------------------------------------- */

int store_mailbox_open(struct store *s, const char *name, struct store_mailbox **mb_r,
		       char **error_r)
{
	char *norm;
	struct mbrow r;
	int k = store_mb_find(s, name, &norm, &r, error_r);
	if (k < 0)
		return k;
	unsigned changes = 0;
	int sr = idx_sync(s, r.id, &changes, error_r);
	if (sr < 0) {
		mbrow_free(&r);
		free(norm);
		return sr;
	}
	struct store_mailbox *mb = xcalloc(1, sizeof(*mb));
	mb->s = s;
	mb->id = r.id;
	mb->name = norm;
	mb->uidvalidity = r.uidvalidity;
	mb->lock_fd = -1;
	mbrow_free(&r);
	if (store_mailbox_changed(mb, error_r) < 0) {	/* remembers the counters */
		free(mb->name);
		free(mb);
		return STORE_ERROR;
	}
	s->open_mailboxes++;
	mb->next = s->mailboxes;
	s->mailboxes = mb;
	*mb_r = mb;
	return 0;
}

void store_mailbox_close(struct store_mailbox **mbp)
{
	struct store_mailbox *mb = *mbp;
	if (mb == NULL)
		return;
	if (mb->lock_fd >= 0)
		close(mb->lock_fd);	/* releases the flock */
	mb->s->open_mailboxes--;
	for (struct store_mailbox **pp = &mb->s->mailboxes; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == mb) {
			*pp = mb->next;
			break;
		}
	}
	free(mb->name);
	free(mb->recent);
	mb_snapshot_free(mb);
	free(mb);
	*mbp = NULL;
}

uint32_t store_mailbox_uidvalidity(const struct store_mailbox *mb)
{
	return mb->uidvalidity;
}

const char *store_mailbox_name(const struct store_mailbox *mb)
{
	return mb->name;
}

/* mb_counters - current UIDNEXT and HIGHESTMODSEQ of mb */
static int mb_counters(struct store_mailbox *mb, uint32_t *uidnext_r, uint64_t *modseq_r,
		       char **error_r)
{
	struct mbrow r;
	int k = idx_mb_current(mb, &r, error_r);
	if (k < 0)
		return k;
	*uidnext_r = r.uidnext;
	*modseq_r = r.highestmodseq;
	mbrow_free(&r);
	return 0;
}

int store_mailbox_uidnext(struct store_mailbox *mb, uint32_t *uidnext_r, char **error_r)
{
	uint64_t m;
	return mb_counters(mb, uidnext_r, &m, error_r);
}

int store_mailbox_highestmodseq(struct store_mailbox *mb, uint64_t *modseq_r, char **error_r)
{
	uint32_t u;
	return mb_counters(mb, &u, modseq_r, error_r);
}

int store_mailbox_keywords(struct store_mailbox *mb, char **keywords_r, char **error_r)
{
	sqlite3_stmt *st = db_st(mb->s, ST_MB_GET_KEYWORDS);
	sqlite3_bind_int64(st, 1, mb->id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*keywords_r = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc == SQLITE_DONE) {
		store_set_error(error_r, "mailbox %s no longer exists", mb->name);
		return STORE_NOTFOUND;
	}
	db_set_error(mb->s, error_r, "read keywords");
	return STORE_ERROR;
}

int store_mailbox_sync(struct store_mailbox *mb, char **error_r)
{
	unsigned changes = 0;
	return idx_sync(mb->s, mb->id, &changes, error_r);
}

int store_mailbox_changed(struct store_mailbox *mb, char **error_r)
{
	uint32_t uidnext;
	uint64_t modseq;
	int r = mb_counters(mb, &uidnext, &modseq, error_r);
	if (r < 0)
		return r;
	bool changed = uidnext != mb->seen_uidnext || modseq != mb->seen_modseq;
	mb->seen_uidnext = uidnext;
	mb->seen_modseq = modseq;
	return changed ? 1 : 0;
}

/* take_recent - the messages from the first UID no session has claimed (and this handle has
 * not taken yet) to UIDNEXT - 1 become recent for this handle; with claim, for no other
 * session after it (recent_uid moves on, in a write transaction). Without, nothing is
 * written: a read-only session sees them \Recent and so do the sessions after it. */
static int take_recent(struct store_mailbox *mb, bool claim, char **error_r)
{
	struct store *s = mb->s;
	int r = claim ? db_begin(s, false, error_r) : 0;
	if (r < 0)
		return r;
	struct mbrow row;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		if (claim)
			db_rollback(s);
		return k;
	}
	uint32_t first = row.recent_uid, next = row.uidnext;
	mbrow_free(&row);
	if (mb->n_recent > 0 && mb->recent[mb->n_recent - 1].last >= first)
		first = mb->recent[mb->n_recent - 1].last + 1;
	if (first >= next) {
		if (claim)
			db_rollback(s);
		return 0;
	}
	sqlite3_stmt *st;
	if (claim) {
		st = db_st(s, ST_MB_SET_RECENT);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, next);
		if (db_exec(st) < 0) {
			db_set_error(s, error_r, "claim recent");
			db_rollback(s);
			return STORE_ERROR;
		}
	}
	int64_t count = 0;
	st = db_st(s, ST_MSG_COUNT_FROM);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, first);
	sqlite3_bind_int64(st, 3, (int64_t)next - 1);
	if (sqlite3_step(st) == SQLITE_ROW)
		count = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (claim && (r = db_commit(s, error_r)) < 0)
		return r;
	mb->recent = xreallocarray(mb->recent, mb->n_recent + 1, sizeof(*mb->recent));
	mb->recent[mb->n_recent].first = first;
	mb->recent[mb->n_recent++].last = next - 1;
	return (int)(count > INT32_MAX ? INT32_MAX : count);
}

int store_mailbox_claim_recent(struct store_mailbox *mb, char **error_r)
{
	return take_recent(mb, true, error_r);
}

int store_mailbox_peek_recent(struct store_mailbox *mb, char **error_r)
{
	return take_recent(mb, false, error_r);
}

int store_lock_exclusive(struct store_mailbox *mb, char **error_r)
{
	if (mb->lock_fd >= 0)
		return 0;
	struct mbrow r;
	if (idx_mb_current(mb, &r, error_r) < 0)
		return -1;
	char *path = store_path(mb->s, r.dir, STORE_LOCK_NAME);
	mbrow_free(&r);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		store_set_error(error_r, "%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	/* flock locks belong to the open file description: a second open in this process
	 * conflicts too, unlike fcntl locks */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			free(path);
			return 0;
		}
		store_set_error(error_r, "flock %s: %s", path, strerror(e));
		free(path);
		return -1;
	}
	free(path);
	mb->lock_fd = fd;
	return 1;
}

/* ---- status ------------------------------------------------------------------------------ */

int store_mailbox_status(struct store *s, const char *name, struct store_status *st_r,
			 char **error_r)
{
	struct mbrow r;
	int k = store_mb_find(s, name, NULL, &r, error_r);
	if (k < 0)
		return k;
	unsigned changes = 0;
	int64_t id = r.id;
	mbrow_free(&r);
	int rr = idx_sync(s, id, &changes, error_r);
	if (rr < 0)
		return rr;
	/* one read transaction: the counters and the counts agree */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		return STORE_ERROR;
	}
	k = idx_mb_by_id(s, id, &r, error_r);
	if (k <= 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		if (k == 0)
			store_set_error(error_r, "the mailbox no longer exists");
		return k == 0 ? STORE_NOTFOUND : STORE_ERROR;
	}
	memset(st_r, 0, sizeof(*st_r));
	st_r->uidvalidity = r.uidvalidity;
	st_r->uidnext = r.uidnext;
	st_r->highestmodseq = r.highestmodseq;
	sqlite3_stmt *st = db_st(s, ST_MSG_STATUS);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, r.recent_uid);
	mbrow_free(&r);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		st_r->messages = (uint32_t)sqlite3_column_int64(st, 0);
		st_r->unseen = (uint32_t)sqlite3_column_int64(st, 1);
		st_r->recent = (uint32_t)sqlite3_column_int64(st, 2);
		st_r->size = (uint64_t)sqlite3_column_int64(st, 3);
		st_r->first_unseen_uid = (uint32_t)sqlite3_column_int64(st, 4);
	}
	sqlite3_reset(st);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_ROW) {
		db_set_error(s, error_r, "status");
		return STORE_ERROR;
	}
	return 0;
}

/* ---- create, delete, rename ------------------------------------------------------------- */

int store_mailbox_create(struct store *s, const char *name, char **error_r)
{
	char *norm = NULL, *dir = NULL, *path = NULL;
	int r = STORE_INVALID;
	if (store_name_normalize(name, &norm) < 0 || (dir = store_name_dir(norm)) == NULL) {
		store_set_error(error_r, "invalid mailbox name");
		goto out;
	}
	if (dir[0] == '\0') {
		store_set_error(error_r, "INBOX exists already");
		r = STORE_EXISTS;
		goto out;
	}
	struct mbrow row;
	int k = idx_mb_lookup(s, norm, &row, error_r);	/* adopts a folder on disk */
	if (k < 0) {
		r = STORE_ERROR;
		goto out;
	}
	if (k == 1) {
		mbrow_free(&row);
		store_set_error(error_r, "mailbox %s exists already", norm);
		r = STORE_EXISTS;
		goto out;
	}
	r = db_begin(s, false, error_r);
	if (r < 0)
		goto out;
	k = idx_mb_by_name(s, norm, &row, error_r);
	if (k != 0) {
		db_rollback(s);
		if (k == 1) {
			mbrow_free(&row);
			store_set_error(error_r, "mailbox %s exists already", norm);
		}
		r = k == 1 ? STORE_EXISTS : STORE_ERROR;
		goto out;
	}
	/* Directory first, row second, both under the write lock: whoever looks sees either
	 * nothing or both (a directory alone is adopted, a row alone dropped). */
	path = store_path(s, dir, NULL);
	int64_t id;
	if (maildir_ensure(path, true) < 0) {
		store_set_error(error_r, "%s: %s", path, strerror(errno));
		db_rollback(s);
		r = STORE_ERROR;
		goto out;
	}
	if (idx_mb_insert(s, norm, dir, &id, error_r) < 0 || db_commit(s, error_r) < 0) {
		db_rollback(s);
		maildir_rmtree(path);
		r = STORE_ERROR;
		goto out;
	}
	store_notify(s, norm, STORE_CHANGE_MAILBOXES);
	r = 0;
out:
	free(norm);
	free(dir);
	free(path);
	return r;
}

int store_mailbox_delete(struct store *s, const char *name, char **error_r)
{
	char *norm = NULL;
	struct mbrow row;
	int k = store_mb_find(s, name, &norm, &row, error_r);
	if (k < 0)
		return k;
	mbrow_free(&row);
	if (strcmp(norm, "INBOX") == 0) {
		free(norm);
		store_set_error(error_r, "INBOX cannot be deleted");
		return STORE_INVALID;
	}
	char *from = NULL, *trash = NULL;
	int r = db_begin(s, false, error_r);
	if (r < 0)
		goto out;
	k = idx_mb_by_name(s, norm, &row, error_r);
	if (k <= 0) {
		db_rollback(s);
		if (k == 0)
			store_set_error(error_r, "mailbox %s does not exist", norm);
		r = k == 0 ? STORE_NOTFOUND : STORE_ERROR;
		goto out;
	}
	sqlite3_stmt *st = db_st(s, ST_MB_CHILDREN);
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_rollback(s);
		if (rc == SQLITE_ROW) {
			store_set_error(error_r, "mailbox %s has children", norm);
			r = STORE_HASCHILDREN;
		} else {
			db_set_error(s, error_r, "children");
			r = STORE_ERROR;
		}
		mbrow_free(&row);
		goto out;
	}
	/* The rename of the directory out of the tree is the moment of deletion (a row whose
	 * directory is gone is dropped by the next lookup); the files go after the commit. */
	char name_buf[256];
	store_unique_name(s, name_buf, sizeof(name_buf), 0);
	from = store_path(s, row.dir, NULL);
	trash = xasprintf("%s/tmp/deleted.%s", s->root, name_buf);
	bool moved = rename(from, trash) == 0;
	if (!moved && errno != ENOENT) {
		store_set_error(error_r, "rename %s: %s", from, strerror(errno));
		db_rollback(s);
		mbrow_free(&row);
		r = STORE_ERROR;
		goto out;
	}
	fs_fsync_dir(s->root);
	if (idx_mb_drop(s, row.id) < 0) {
		db_set_error(s, error_r, "delete mailbox");
		db_rollback(s);
		if (moved)
			rename(trash, from);
		mbrow_free(&row);
		r = STORE_ERROR;
		goto out;
	}
	mbrow_free(&row);
	r = db_commit(s, error_r);
	if (r < 0) {
		if (moved)
			rename(trash, from);
		goto out;
	}
	if (moved && maildir_rmtree(trash) < 0)
		log_warn("%s: remove %s", s->root, trash);
	store_notify(s, norm, STORE_CHANGE_MAILBOXES);
out:
	free(from);
	free(trash);
	free(norm);
	return r;
}

/* under - true when name is below parent ("parent/…") */
static bool under(const char *name, const char *parent)
{
	size_t n = strlen(parent);
	return strncmp(name, parent, n) == 0 && name[n] == STORE_SEP;
}

/* rename_inbox - RFC 3501: a new mailbox gets all of INBOX's messages */
static int rename_inbox(struct store *s, const char *new_norm, char **error_r)
{
	int r = store_mailbox_create(s, new_norm, error_r);
	if (r < 0)
		return r;
	struct store_mailbox *mb;
	r = store_mailbox_open(s, "INBOX", &mb, error_r);
	if (r < 0)
		return r;
	struct store_uid_range all = { 1, UINT32_MAX };
	r = store_copy(mb, &all, 1, new_norm, true, NULL, error_r);
	store_mailbox_close(&mb);
	return r;
}

int store_mailbox_rename(struct store *s, const char *old_name, const char *new_name,
			 char **error_r)
{
	char *old_norm = NULL, *new_norm = NULL, *new_dir = NULL;
	struct mbrow *rows = NULL;
	char **new_names = NULL, **new_dirs = NULL;
	size_t n = 0, renamed = 0;
	int r = STORE_INVALID;
	if (store_name_normalize(old_name, &old_norm) < 0 ||
	    store_name_normalize(new_name, &new_norm) < 0 ||
	    (new_dir = store_name_dir(new_norm)) == NULL) {
		store_set_error(error_r, "invalid mailbox name");
		goto out;
	}
	if (strcmp(new_norm, "INBOX") == 0 || strcmp(old_norm, new_norm) == 0) {
		store_set_error(error_r, "mailbox %s exists already", new_norm);
		r = STORE_EXISTS;
		goto out;
	}
	if (under(new_norm, old_norm)) {
		store_set_error(error_r, "cannot rename a mailbox below itself");
		goto out;
	}
	if (strcmp(old_norm, "INBOX") == 0) {
		r = rename_inbox(s, new_norm, error_r);
		goto out;
	}
	struct mbrow probe;
	int k = idx_mb_lookup(s, old_norm, &probe, error_r);
	if (k <= 0) {
		if (k == 0)
			store_set_error(error_r, "mailbox %s does not exist", old_norm);
		r = k == 0 ? STORE_NOTFOUND : STORE_ERROR;
		goto out;
	}
	mbrow_free(&probe);
	k = idx_mb_lookup(s, new_norm, &probe, error_r);	/* adopts a directory there */
	if (k != 0) {
		if (k == 1) {
			mbrow_free(&probe);
			store_set_error(error_r, "mailbox %s exists already", new_norm);
		}
		r = k == 1 ? STORE_EXISTS : STORE_ERROR;
		goto out;
	}

	r = db_begin(s, false, error_r);
	if (r < 0)
		goto out;
	/* the mailbox and its children, under the lock */
	size_t cap = 4;
	rows = xcalloc(cap, sizeof(*rows));
	k = idx_mb_by_name(s, old_norm, &rows[0], error_r);
	if (k <= 0) {
		db_rollback(s);
		if (k == 0)
			store_set_error(error_r, "mailbox %s does not exist", old_norm);
		r = k == 0 ? STORE_NOTFOUND : STORE_ERROR;
		goto out;
	}
	n = 1;
	sqlite3_stmt *st = db_st(s, ST_MB_CHILDREN);
	sqlite3_bind_text(st, 1, old_norm, -1, SQLITE_TRANSIENT);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap *= 2;
			rows = xreallocarray(rows, cap, sizeof(*rows));
		}
		struct mbrow *row = &rows[n++];
		row->id = sqlite3_column_int64(st, 0);
		row->name = xstrdup((const char *)sqlite3_column_text(st, 1));
		row->dir = xstrdup((const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_set_error(s, error_r, "children");
		r = STORE_ERROR;
		goto rollback;
	}
	new_names = xcalloc(n, sizeof(*new_names));
	new_dirs = xcalloc(n, sizeof(*new_dirs));
	for (size_t i = 0; i < n; i++) {
		new_names[i] = xasprintf("%s%s", new_norm, rows[i].name + strlen(old_norm));
		new_dirs[i] = store_name_dir(new_names[i]);
		struct mbrow other;
		k = new_dirs[i] ? idx_mb_by_name(s, new_names[i], &other, error_r) : 0;
		if (new_dirs[i] == NULL) {
			store_set_error(error_r, "mailbox name too long: %s", new_names[i]);
			r = STORE_INVALID;
			goto rollback;
		}
		char *p = store_path(s, new_dirs[i], NULL);
		struct stat sb;
		bool on_disk = lstat(p, &sb) == 0;
		free(p);
		if (k != 0 || on_disk) {
			if (k == 1)
				mbrow_free(&other);
			if (k >= 0)
				store_set_error(error_r, "mailbox %s exists already", new_names[i]);
			r = k < 0 ? STORE_ERROR : STORE_EXISTS;
			goto rollback;
		}
	}
	/* Maildir++ keeps every level in its own root entry: one rename per mailbox. */
	for (renamed = 0; renamed < n; renamed++) {
		char *from = store_path(s, rows[renamed].dir, NULL);
		char *to = store_path(s, new_dirs[renamed], NULL);
		int rn = rename(from, to);
		int e = errno;
		free(from);
		free(to);
		if (rn < 0 && e != ENOENT) {
			store_set_error(error_r, "rename %s: %s", rows[renamed].dir, strerror(e));
			r = STORE_ERROR;
			goto undo;
		}
	}
	fs_fsync_dir(s->root);
	for (size_t i = 0; i < n; i++) {
		st = db_st(s, ST_MB_RENAME);
		sqlite3_bind_int64(st, 1, rows[i].id);
		sqlite3_bind_text(st, 2, new_names[i], -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, new_dirs[i], -1, SQLITE_TRANSIENT);
		if (db_exec(st) < 0) {
			db_set_error(s, error_r, "rename mailbox");
			r = STORE_ERROR;
			goto undo;
		}
	}
	r = db_commit(s, error_r);
	if (r < 0)
		goto undo_committed;
	store_notify(s, old_norm, STORE_CHANGE_MAILBOXES);
	store_notify(s, new_norm, STORE_CHANGE_MAILBOXES);
	goto out;
undo:
	db_rollback(s);
undo_committed:
	while (renamed-- > 0) {
		char *from = store_path(s, rows[renamed].dir, NULL);
		char *to = store_path(s, new_dirs[renamed], NULL);
		rename(to, from);
		free(from);
		free(to);
	}
	fs_fsync_dir(s->root);
	goto out;
rollback:
	db_rollback(s);
out:
	for (size_t i = 0; i < n; i++) {
		mbrow_free(&rows[i]);
		if (new_names)
			free(new_names[i]);
		if (new_dirs)
			free(new_dirs[i]);
	}
	free(rows);
	free(new_names);
	free(new_dirs);
	free(old_norm);
	free(new_norm);
	free(new_dir);
	return r;
}

/* ---- list and subscriptions -------------------------------------------------------------- */

static int cmp_info(const void *a, const void *b)
{
	const struct store_mailbox_info *x = a, *y = b;
	bool xi = strcmp(x->name, "INBOX") == 0, yi = strcmp(y->name, "INBOX") == 0;
	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_subscribed(struct store *s, const char *name)
{
	sqlite3_stmt *st = db_st(s, ST_SUB_HAS);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	bool yes = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_reset(st);
	return yes;
}

int store_mailbox_list(struct store *s, struct store_mailbox_info **list_r, size_t *n_r,
		       char **error_r)
{
	/* Reconcile the directories with the rows first: every folder directory gets looked
	 * up (adopted when it has no row), every row too (dropped when its directory went). */
	DIR *d = opendir(s->root);
	if (d == NULL) {
		store_set_error(error_r, "%s: %s", s->root, strerror(errno));
		return STORE_ERROR;
	}
	struct entries names = { 0 };
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char *name = store_dir_name(de->d_name);
		if (name == NULL)
			continue;
		if (names.n == cap) {
			cap = cap ? cap * 2 : 16;
			names.v = xreallocarray(names.v, cap, sizeof(*names.v));
		}
		names.v[names.n++] = name;
	}
	closedir(d);
	sqlite3_stmt *st = db_st(s, ST_MB_LIST);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (names.n == cap) {
			cap = cap ? cap * 2 : 16;
			names.v = xreallocarray(names.v, cap, sizeof(*names.v));
		}
		names.v[names.n++] = xstrdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		entries_free(&names);
		db_set_error(s, error_r, "list mailboxes");
		return STORE_ERROR;
	}
	qsort(names.v, names.n, sizeof(*names.v), cmp_name);
	struct store_mailbox_info *list = xcalloc(names.n + 1, sizeof(*list));
	size_t n = 0;
	for (size_t i = 0; i < names.n; i++) {
		if (i > 0 && strcmp(names.v[i], names.v[i - 1]) == 0)
			continue;
		struct mbrow row;
		int k = idx_mb_lookup(s, names.v[i], &row, error_r);
		if (k < 0) {
			entries_free(&names);
			store_mailbox_list_free(&list, n);
			return STORE_ERROR;
		}
		if (k == 0)
			continue;
		list[n].name = row.name;
		row.name = NULL;
		mbrow_free(&row);
		list[n].subscribed = is_subscribed(s, list[n].name);
		n++;
	}
	entries_free(&names);
	qsort(list, n, sizeof(*list), cmp_info);
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n && !list[i].has_children; j++)
			list[i].has_children = under(list[j].name, list[i].name);
	*list_r = list;
	*n_r = n;
	return 0;
}

void store_mailbox_list_free(struct store_mailbox_info **list, size_t n)
{
	if (*list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*list)[i].name);
	free(*list);
	*list = NULL;
}

int store_subscribe(struct store *s, const char *name, bool on, char **error_r)
{
	char *norm;
	if (store_name_normalize(name, &norm) < 0) {
		store_set_error(error_r, "invalid mailbox name");
		return STORE_INVALID;
	}
	sqlite3_stmt *st = db_st(s, on ? ST_SUB_ADD : ST_SUB_DEL);
	sqlite3_bind_text(st, 1, norm, -1, SQLITE_TRANSIENT);
	int r = db_exec(st);
	free(norm);
	if (r < 0) {
		db_set_error(s, error_r, "subscribe");
		return STORE_ERROR;
	}
	return 0;
}

int store_subscriptions(struct store *s, char ***names_r, size_t *n_r, char **error_r)
{
	sqlite3_stmt *st = db_st(s, ST_SUB_LIST);
	char **v = NULL;
	size_t n = 0, cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		store_names_free(&v, n);
		db_set_error(s, error_r, "subscriptions");
		return STORE_ERROR;
	}
	*names_r = v;
	*n_r = n;
	return 0;
}

void store_names_free(char ***names, size_t n)
{
	if (*names == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free((*names)[i]);
	free(*names);
	*names = NULL;
}
