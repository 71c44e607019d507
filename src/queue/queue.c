/* queue - outbound queue state in SQLite plus immutable message files */
#include "queue/queue.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"

struct queue {
	sqlite3 *db;
	char *dir;	/* spool/queue */
};

static const char queue_schema[] =
	"PRAGMA journal_mode=WAL;"
	"CREATE TABLE IF NOT EXISTS messages("
	" qid TEXT PRIMARY KEY, sender TEXT NOT NULL, size INTEGER NOT NULL,"
	" body_offset INTEGER NOT NULL, arrived INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS recipients("
	" id INTEGER PRIMARY KEY, qid TEXT NOT NULL REFERENCES messages(qid) ON DELETE CASCADE,"
	" address TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'queued',"
	" attempts INTEGER NOT NULL DEFAULT 0, next_try INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT);"
	"CREATE INDEX IF NOT EXISTS recipients_due ON recipients(state, next_try);"
	"CREATE INDEX IF NOT EXISTS recipients_qid ON recipients(qid);";

static char *db_error(sqlite3 *db, const char *what)
{
	return xasprintf("queue.db: %s: %s", what, sqlite3_errmsg(db));
}

int queue_open(const char *spool_dir, struct queue **queue_r, char **error_r)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	q->dir = xasprintf("%s/queue", spool_dir);
	if (fs_mkdirs(q->dir, 0700) < 0) {
		*error_r = xasprintf("%s: %s", q->dir, strerror(errno));
		goto fail;
	}
	char *path = xasprintf("%s/queue.db", spool_dir);
	int rc = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_NOMUTEX, NULL);
	free(path);
	if (rc != SQLITE_OK) {
		*error_r = db_error(q->db, "open");
		goto fail;
	}
	sqlite3_busy_timeout(q->db, 10000);
	if (sqlite3_exec(q->db, queue_schema, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(q->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
			 NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "schema");
		goto fail;
	}
	*queue_r = q;
	return 0;
fail:
	queue_close(&q);
	return -1;
}

void queue_close(struct queue **qp)
{
	struct queue *q = *qp;
	if (q == NULL)
		return;
	sqlite3_close(q->db);
	free(q->dir);
	free(q);
	*qp = NULL;
}

/* exec_step - prepare, bind text/int args by a tiny format ("t" text, "i" int64), step once */
static int exec_step(sqlite3 *db, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	for (int i = 0; fmt[i]; i++) {
		if (fmt[i] == 't')
			sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
		else
			sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
	}
	va_end(ap);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

int queue_enqueue(struct queue *q, const char *qid, const char *src_path, uint64_t body_offset,
		  uint64_t size, const char *sender, const char *const *rcpts, size_t n_rcpts,
		  char **error_r)
{
	char *dst = xasprintf("%s/%s", q->dir, qid);
	if (link(src_path, dst) < 0) {
		/* never unlink here: on EEXIST the name is another message's */
		*error_r = xasprintf("%s: %s", dst, strerror(errno));
		free(dst);
		return -1;
	}
	if (fs_fsync_dir(q->dir) < 0) {
		*error_r = xasprintf("%s: %s", q->dir, strerror(errno));
		unlink(dst);
		free(dst);
		return -1;
	}
	int64_t now = (int64_t)time(NULL);
	if (exec_step(q->db, "BEGIN IMMEDIATE", "") < 0)
		goto dberr;
	if (exec_step(q->db,
		      "INSERT INTO messages(qid, sender, size, body_offset, arrived) "
		      "VALUES(?, ?, ?, ?, ?)",
		      "ttiii", qid, sender, (int64_t)size, (int64_t)body_offset, now) < 0)
		goto rollback;
	for (size_t i = 0; i < n_rcpts; i++) {
		if (exec_step(q->db,
			      "INSERT INTO recipients(qid, address, next_try) VALUES(?, ?, ?)",
			      "tti", qid, rcpts[i], now) < 0)
			goto rollback;
	}
	if (exec_step(q->db, "COMMIT", "") < 0)
		goto rollback;
	free(dst);
	return 0;
rollback:
	*error_r = db_error(q->db, "enqueue");
	exec_step(q->db, "ROLLBACK", "");
	unlink(dst);
	free(dst);
	return -1;
dberr:
	*error_r = db_error(q->db, "begin");
	unlink(dst);
	free(dst);
	return -1;
}

int queue_list(struct queue *q, void (*cb)(void *ctx, const struct queue_msg_info *m), void *ctx,
	       char **error_r)
{
	sqlite3_stmt *ms, *rs;
	if (sqlite3_prepare_v2(q->db,
			       "SELECT qid, sender, size, arrived FROM messages ORDER BY arrived, qid",
			       -1, &ms, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db,
			       "SELECT address, state, attempts, next_try, last_error FROM recipients "
			       "WHERE qid = ? ORDER BY id",
			       -1, &rs, NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "list");
		return -1;
	}
	while (sqlite3_step(ms) == SQLITE_ROW) {
		struct queue_msg_info m = {
			.qid = (const char *)sqlite3_column_text(ms, 0),
			.sender = (const char *)sqlite3_column_text(ms, 1),
			.size = (uint64_t)sqlite3_column_int64(ms, 2),
			.arrived = sqlite3_column_int64(ms, 3),
		};
		struct queue_rcpt_info *r = NULL;
		size_t n = 0;
		sqlite3_bind_text(rs, 1, m.qid, -1, SQLITE_TRANSIENT);
		while (sqlite3_step(rs) == SQLITE_ROW) {
			r = xreallocarray(r, n + 1, sizeof(*r));
			r[n].address = xstrdup((const char *)sqlite3_column_text(rs, 0));
			r[n].state = xstrdup((const char *)sqlite3_column_text(rs, 1));
			r[n].attempts = sqlite3_column_int(rs, 2);
			r[n].next_try = sqlite3_column_int64(rs, 3);
			const unsigned char *le = sqlite3_column_text(rs, 4);
			r[n].last_error = le ? xstrdup((const char *)le) : NULL;
			n++;
		}
		sqlite3_reset(rs);
		m.rcpts = r;
		m.n_rcpts = n;
		cb(ctx, &m);
		for (size_t i = 0; i < n; i++) {
			free((char *)r[i].address);
			free((char *)r[i].state);
			free((char *)r[i].last_error);
		}
		free(r);
	}
	sqlite3_finalize(ms);
	sqlite3_finalize(rs);
	return 0;
}
