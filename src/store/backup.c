/* store/backup - a consistent copy of one account for `tern backup` */
#include "store/backup.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xmalloc.h"
#include "store/store_private.h"

/* The Maildir base names (before ':') of a mailbox's files, sorted: looked up once per file
 * or row, so that a mailbox of n messages costs n log n, not n^2 directory reads. */
struct bases {
	char **v;
	size_t n;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* bases_add_dir - add the entries of dir (missing: none) */
static void bases_add_dir(struct bases *b, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		b->v = xreallocarray(b->v, b->n + 1, sizeof(*b->v));
		b->v[b->n++] = maildir_base(e->d_name);
	}
	if (d != NULL)
		closedir(d);
	if (b->n > 1)
		qsort(b->v, b->n, sizeof(*b->v), cmp_str);
}

static bool bases_has(const struct bases *b, const char *base)
{
	return b->n > 0 && bsearch(&base, b->v, b->n, sizeof(*b->v), cmp_str) != NULL;
}

static void bases_free(struct bases *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->v[i]);
	free(b->v);
	b->v = NULL;
	b->n = 0;
}

/* copy_maildir - tmp/ (empty), new/ and then cur/ of one mailbox: a file that moves from
 * new/ to cur/ meanwhile is caught by the second pass; one caught by both is kept in cur/ */
static int copy_maildir(const char *src, const char *dst, struct backup_counts *c,
			char **error_r)
{
	if (mkdir(dst, 0700) < 0 && errno != EEXIST) {
		*error_r = xasprintf("mkdir %s: %s", dst, strerror(errno));
		return -1;
	}
	char *s_new = xasprintf("%s/new", src), *s_cur = xasprintf("%s/cur", src);
	char *d_new = xasprintf("%s/new", dst), *d_cur = xasprintf("%s/cur", dst);
	char *d_tmp = xasprintf("%s/tmp", dst);
	int r = -1;
	if (mkdir(d_tmp, 0700) < 0 && errno != EEXIST) {
		*error_r = xasprintf("mkdir %s: %s", d_tmp, strerror(errno));
		goto out;
	}
	if (backup_copy_dir(s_new, d_new, c, error_r) < 0 ||
	    backup_copy_dir(s_cur, d_cur, c, error_r) < 0)
		goto out;
	struct bases in_cur = { 0 };
	bases_add_dir(&in_cur, d_cur);
	DIR *d = opendir(d_new);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *base = maildir_base(e->d_name);
		if (bases_has(&in_cur, base)) {
			char *dup = xasprintf("%s/%s", d_new, e->d_name);
			unlink(dup);
			free(dup);
		}
		free(base);
	}
	if (d != NULL)
		closedir(d);
	bases_free(&in_cur);
	r = 0;
out:
	free(s_new);
	free(s_cur);
	free(d_new);
	free(d_cur);
	free(d_tmp);
	return r;
}

/* mailbox_bases - the base names of new/ and cur/ of the mailbox directory dir (relative to
 * root; "" is INBOX) */
static void mailbox_bases(struct bases *b, const char *root, const char *dir)
{
	const char *subs[] = { "cur", "new" };
	for (size_t i = 0; i < 2; i++) {
		char *p = dir != NULL && dir[0] != '\0' ? xasprintf("%s/%s/%s", root, dir, subs[i])
						     : xasprintf("%s/%s", root, subs[i]);
		bases_add_dir(b, p);
		free(p);
	}
}

/* drop_missing - in the copy's index, turn the rows whose file is not in the copy into
 * expunges (row deleted, HIGHESTMODSEQ raised, an expunge record with it) */
static int drop_missing(const char *dst_root, const char *index, struct backup_counts *c,
			char **error_r)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *sel = NULL, *del = NULL, *bump = NULL, *rec = NULL;
	struct bases files = { 0 };	/* one mailbox's files at a time (rows by mailbox) */
	int ok = 0;
	if (sqlite3_open_v2(index, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
		goto fail;
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT m.mailbox_id, m.uid, m.name, m.file, b.dir"
			       " FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id"
			       " ORDER BY m.mailbox_id", -1, &sel,
			       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", -1,
			       &del, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "UPDATE mailboxes SET highestmodseq = highestmodseq + 1"
			       " WHERE id = ?", -1, &bump, NULL) != SQLITE_OK)
		goto fail;
	/* an index older than the expunge records (schema v1) simply has none */
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq)"
			       " SELECT id, ?, highestmodseq FROM mailboxes WHERE id = ?", -1, &rec,
			       NULL) != SQLITE_OK)
		rec = NULL;
	int rc;
	sqlite3_int64 listed = -1;	/* the mailbox whose files are in files */
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		sqlite3_int64 mbox = sqlite3_column_int64(sel, 0), uid = sqlite3_column_int64(sel, 1);
		const char *name = (const char *)sqlite3_column_text(sel, 2);
		const char *file = (const char *)sqlite3_column_text(sel, 3);
		if (mbox != listed) {
			bases_free(&files);
			mailbox_bases(&files, dst_root, (const char *)sqlite3_column_text(sel, 4));
			listed = mbox;
		}
		char *fbase = file != NULL ? maildir_base(file) : NULL;
		bool there = (name != NULL && bases_has(&files, name)) ||
			     (fbase != NULL && bases_has(&files, fbase));
		free(fbase);
		if (there)
			continue;
		sqlite3_bind_int64(del, 1, mbox);
		sqlite3_bind_int64(del, 2, uid);
		sqlite3_bind_int64(bump, 1, mbox);
		if (sqlite3_step(del) != SQLITE_DONE || sqlite3_step(bump) != SQLITE_DONE)
			goto fail;
		sqlite3_reset(del);
		sqlite3_reset(bump);
		if (rec != NULL) {
			sqlite3_bind_int64(rec, 1, uid);
			sqlite3_bind_int64(rec, 2, mbox);
			if (sqlite3_step(rec) != SQLITE_DONE)
				goto fail;
			sqlite3_reset(rec);
		}
		c->dropped++;
	}
	ok = rc == SQLITE_DONE;
fail:
	bases_free(&files);
	sqlite3_stmt *all[] = { sel, del, bump, rec };
	return backup_db_finish(db, ok, index, all, 4, error_r);
}

int store_backup_account(const char *src_root, const char *dst_root, struct backup_counts *c,
			 char **error_r)
{
	if (mkdir(dst_root, 0700) < 0) {
		*error_r = xasprintf("mkdir %s: %s", dst_root, strerror(errno));
		return -1;
	}
	char *si = xasprintf("%s/index.db", src_root), *di = xasprintf("%s/index.db", dst_root);
	int r = -1;
	int have_index = backup_sqlite(si, di, error_r);
	if (have_index < 0 || copy_maildir(src_root, dst_root, c, error_r) < 0)
		goto out;
	/* the folders: Maildir++ subdirectories ".name" */
	DIR *d = opendir(src_root);
	if (d == NULL) {
		*error_r = xasprintf("%s: %s", src_root, strerror(errno));
		goto out;
	}
	struct dirent *e;
	int fr = 0;
	while (fr == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *from = xasprintf("%s/%s", src_root, e->d_name);
		struct stat st;
		if (lstat(from, &st) == 0 && S_ISDIR(st.st_mode)) {
			char *to = xasprintf("%s/%s", dst_root, e->d_name);
			fr = copy_maildir(from, to, c, error_r);
			free(to);
		}
		free(from);
	}
	closedir(d);
	if (fr < 0)
		goto out;
	if (have_index > 0 && drop_missing(dst_root, di, c, error_r) < 0)
		goto out;
	r = 0;
out:
	free(si);
	free(di);
	return r;
}
