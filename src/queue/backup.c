/* queue/backup - a consistent copy of the outbound queue for `tern backup` */
#include "queue/backup.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xmalloc.h"

/* queue_fixup - the copy's queue.db and spool/queue/ agree: entries without a file and files
 * without an entry go */
static int queue_fixup(const char *db_path, const char *qdir, struct backup_counts *c,
		       unsigned *messages_r, char **error_r)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *sel = NULL, *del_r = NULL, *del_m = NULL, *has = NULL;
	int rc, ok;
	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT qid FROM messages", -1, &sel, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM recipients WHERE qid = ?", -1, &del_r, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM messages WHERE qid = ?", -1, &del_m, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT 1 FROM messages WHERE qid = ?", -1, &has, NULL) !=
		    SQLITE_OK)
		goto fail;
	char **gone = NULL;
	size_t n_gone = 0;
	unsigned kept = 0;
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
		const char *qid = (const char *)sqlite3_column_text(sel, 0);
		char *p = xasprintf("%s/%s", qdir, qid ? qid : "");
		if (qid != NULL && strchr(qid, '/') == NULL && access(p, F_OK) == 0) {
			kept++;
		} else {
			gone = xreallocarray(gone, n_gone + 1, sizeof(*gone));
			gone[n_gone++] = xstrdup(qid ? qid : "");
		}
		free(p);
	}
	ok = rc == SQLITE_DONE;
	for (size_t i = 0; i < n_gone; i++) {
		if (ok) {
			sqlite3_bind_text(del_r, 1, gone[i], -1, SQLITE_STATIC);
			sqlite3_bind_text(del_m, 1, gone[i], -1, SQLITE_STATIC);
			ok = sqlite3_step(del_r) == SQLITE_DONE && sqlite3_step(del_m) == SQLITE_DONE;
			sqlite3_reset(del_r);
			sqlite3_reset(del_m);
			c->dropped++;
		}
		free(gone[i]);
	}
	free(gone);
	if (!ok)
		goto fail;
	DIR *d = opendir(qdir);
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		sqlite3_bind_text(has, 1, e->d_name, -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(has);
		sqlite3_reset(has);
		if (rc == SQLITE_DONE) {
			char *p = xasprintf("%s/%s", qdir, e->d_name);
			unlink(p);
			free(p);
		}
	}
	if (d != NULL)
		closedir(d);
	*messages_r = kept;
	ok = 1;
	goto out;
fail:
	ok = 0;
out:;
	sqlite3_stmt *all[] = { sel, del_r, del_m, has };
	return backup_db_finish(db, ok, db_path, all, 4, error_r);
}

int queue_backup(const char *src_spool, const char *dst_spool, struct backup_counts *c,
		 unsigned *messages_r, char **error_r)
{
	*messages_r = 0;
	if (mkdir(dst_spool, 0700) < 0) {
		*error_r = xasprintf("mkdir %s: %s", dst_spool, strerror(errno));
		return -1;
	}
	char *sdb = xasprintf("%s/queue.db", src_spool), *ddb = xasprintf("%s/queue.db", dst_spool);
	char *sq = xasprintf("%s/queue", src_spool), *dq = xasprintf("%s/queue", dst_spool);
	char *din = xasprintf("%s/incoming", dst_spool);
	int r = -1;
	int have_db = backup_sqlite(sdb, ddb, error_r);
	if (have_db < 0 || backup_copy_dir(sq, dq, c, error_r) < 0)
		goto out;
	if (mkdir(din, 0700) < 0) {
		*error_r = xasprintf("mkdir %s: %s", din, strerror(errno));
		goto out;
	}
	if (have_db > 0 && queue_fixup(ddb, dq, c, messages_r, error_r) < 0)
		goto out;
	r = 0;
out:
	free(sdb);
	free(ddb);
	free(sq);
	free(dq);
	free(din);
	return r;
}
