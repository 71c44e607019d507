/* queue - outbound queue state in SQLite plus immutable message files */
#include "queue/queue.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/dbschema.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct queue {
	sqlite3 *db;
	char *dir;	/* spool/queue */
	struct dbschema_busy busy;	/* the busy handler's wait (lib/dbschema) */
};

#define QUEUE_BUSY_TIMEOUT_MS 10000

/* queue.db's schema versions (lib/dbschema): steps are never edited once released. */

/* Version 1: the schema from before versioning, exactly: its CREATE ... IF NOT EXISTS, then
 * the columns that code added later with ALTERs it let fail when they existed. A database
 * from any earlier tern thus comes out the same as a new one. */
static const char queue_schema_v1[] =
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

/* queue_columns_v1 - the columns added by ALTER before versioning, where missing */
static int queue_columns_v1(sqlite3 *db)
{
	static const char *const cols[][3] = {
		{ "messages", "ret", "TEXT" },
		{ "messages", "envid", "TEXT" },
		{ "recipients", "notify", "TEXT" },
		{ "recipients", "orcpt", "TEXT" },
		{ "recipients", "delay_warned", "INTEGER NOT NULL DEFAULT 0" },
	};
	for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
		if (dbschema_add_column(db, cols[i][0], cols[i][1], cols[i][2]) < 0)
			return -1;
	}
	return 0;
}

/* Version 2: the runner's queries select by next_try alone (WHERE next_try <= ?, and
 * MIN(next_try) after every scan), which recipients_due (state first) cannot serve: both
 * scanned every recipient. No query selects by state, so that index only cost writes. */
static const char queue_schema_v2[] =
	"CREATE INDEX recipients_next_try ON recipients(next_try);"
	"DROP INDEX recipients_due;";

static const struct dbschema_step queue_steps[] = {
	{ queue_schema_v1, queue_columns_v1 },
	{ queue_schema_v2, NULL },
};

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
					 SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
	free(path);
	if (rc != SQLITE_OK) {
		*error_r = db_error(q->db, "open");
		goto fail;
	}
	dbschema_busy_fine(q->db, &q->busy, QUEUE_BUSY_TIMEOUT_MS);
	/* before the migration's transaction: journal_mode and foreign_keys do not change
	 * inside one */
	if (dbschema_wal(q->db, QUEUE_BUSY_TIMEOUT_MS) < 0 ||
	    sqlite3_exec(q->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
			 NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "configure");
		goto fail;
	}
	if (dbschema_migrate_steps(q->db, "queue.db", queue_steps,
				   sizeof(queue_steps) / sizeof(queue_steps[0]), error_r) < 0)
		goto fail;
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

/* enqueue_rows - the rows of one message, inside the caller's transaction; 0 or -1 */
static int enqueue_rows(struct queue *q, sqlite3_stmt *ins_msg, sqlite3_stmt *ins_rcpt,
			const struct queue_entry *e, int64_t now)
{
	static const struct queue_dsn none;
	const struct queue_dsn *dsn = e->dsn != NULL ? e->dsn : &none;
	sqlite3_reset(ins_msg);
	sqlite3_bind_text(ins_msg, 1, e->qid, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins_msg, 2, e->sender, -1, SQLITE_STATIC);
	sqlite3_bind_int64(ins_msg, 3, (int64_t)e->size);
	sqlite3_bind_int64(ins_msg, 4, (int64_t)e->body_offset);
	sqlite3_bind_int64(ins_msg, 5, now);
	sqlite3_bind_text(ins_msg, 6, dsn->ret, -1, SQLITE_STATIC);
	sqlite3_bind_text(ins_msg, 7, dsn->envid, -1, SQLITE_STATIC);
	if (sqlite3_step(ins_msg) != SQLITE_DONE)
		return -1;
	for (size_t i = 0; i < e->n_rcpts; i++) {
		sqlite3_reset(ins_rcpt);
		sqlite3_bind_text(ins_rcpt, 1, e->qid, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins_rcpt, 2, e->rcpts[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(ins_rcpt, 3, now);
		sqlite3_bind_text(ins_rcpt, 4, dsn->notify ? dsn->notify[i] : NULL, -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(ins_rcpt, 5, dsn->orcpt ? dsn->orcpt[i] : NULL, -1, SQLITE_STATIC);
		if (sqlite3_step(ins_rcpt) != SQLITE_DONE)
			return -1;
	}
	return 0;
}

int queue_enqueue_batch(struct queue *q, struct queue_entry *e, size_t n, char **error_r)
{
	char **dst = xcalloc(n + 1, sizeof(char *));
	size_t linked = 0;
	int err = 0;
	*error_r = NULL;
	/* the queue names first, one directory fsync for all */
	for (size_t i = 0; i < n; i++) {
		e[i].rc = 0;
		dst[i] = xasprintf("%s/%s", q->dir, e[i].qid);
		if (link(e[i].src_path, dst[i]) < 0) {
			/* never unlink here: on EEXIST the name is another message's */
			e[i].rc = errno;
			free(dst[i]);
			dst[i] = NULL;
			if (*error_r == NULL)
				*error_r = xasprintf("%s/%s: %s", q->dir, e[i].qid,
						     strerror(e[i].rc));
			continue;
		}
		linked++;
	}
	if (linked > 0 && fs_fsync_dir(q->dir) < 0) {
		err = errno;
		free(*error_r);
		*error_r = xasprintf("%s: %s", q->dir, strerror(err));
		goto undo;
	}
	if (linked == 0)
		goto out;
	/* one transaction (one lock, one sync) for every message */
	int64_t now = (int64_t)time(NULL);
	sqlite3_stmt *ins_msg = NULL, *ins_rcpt = NULL;
	const char *what = "begin";
	if (exec_step(q->db, "BEGIN IMMEDIATE", "") < 0)
		goto dberr;
	what = "enqueue";
	if (sqlite3_prepare_v2(q->db,
			       "INSERT INTO messages(qid, sender, size, body_offset, arrived, ret, envid)"
			       " VALUES(?, ?, ?, ?, ?, ?, ?)",
			       -1, &ins_msg, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(q->db,
			       "INSERT INTO recipients(qid, address, next_try, notify, orcpt)"
			       " VALUES(?, ?, ?, ?, ?)",
			       -1, &ins_rcpt, NULL) != SQLITE_OK)
		goto rollback;
	for (size_t i = 0; i < n; i++)
		if (dst[i] != NULL && enqueue_rows(q, ins_msg, ins_rcpt, &e[i], now) < 0)
			goto rollback;
	sqlite3_finalize(ins_msg);
	sqlite3_finalize(ins_rcpt);
	ins_msg = ins_rcpt = NULL;
	if (exec_step(q->db, "COMMIT", "") < 0)
		goto rollback;
	goto out;
rollback:
	sqlite3_finalize(ins_msg);
	sqlite3_finalize(ins_rcpt);
dberr:
	err = sqlite3_errcode(q->db) == SQLITE_FULL ? ENOSPC : EIO;
	free(*error_r);
	*error_r = db_error(q->db, what);
	if (!sqlite3_get_autocommit(q->db))
		exec_step(q->db, "ROLLBACK", "");
undo:
	for (size_t i = 0; i < n; i++) {
		if (dst[i] != NULL) {
			unlink(dst[i]);
			e[i].rc = err;
		}
	}
out:
	for (size_t i = 0; i < n; i++)
		free(dst[i]);
	free(dst);
	int failed = 0;
	for (size_t i = 0; i < n; i++)
		failed += e[i].rc != 0;
	if (failed == 0) {
		free(*error_r);
		*error_r = NULL;
	}
	return failed;
}

int queue_enqueue(struct queue *q, const char *qid, const char *src_path, uint64_t body_offset,
		  uint64_t size, const char *sender, const char *const *rcpts, size_t n_rcpts,
		  const struct queue_dsn *dsn, char **error_r)
{
	struct queue_entry e = { .qid = qid, .src_path = src_path, .body_offset = body_offset,
				 .size = size, .sender = sender, .rcpts = rcpts,
				 .n_rcpts = n_rcpts, .dsn = dsn };
	if (queue_enqueue_batch(q, &e, 1, error_r) == 0)
		return 0;
	errno = e.rc;
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

int queue_due_list(struct queue *q, int64_t now, size_t limit,
		   void (*cb)(void *ctx, const struct queue_due *d), void *ctx, char **error_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(q->db,
			       "SELECT r.id, r.qid, m.sender, r.address, r.state, r.attempts, m.arrived,"
			       " m.body_offset, m.size, r.last_error, r.notify, r.orcpt, m.ret, m.envid,"
			       " r.delay_warned"
			       " FROM recipients r"
			       " JOIN messages m ON m.qid = r.qid WHERE r.next_try <= ?"
			       " ORDER BY m.arrived, r.qid, r.id LIMIT ?",
			       -1, &st, NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "due");
		return -1;
	}
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, (int64_t)limit);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *le = sqlite3_column_text(st, 9);
		struct queue_due d = {
			.rcpt_id = sqlite3_column_int64(st, 0),
			.qid = (const char *)sqlite3_column_text(st, 1),
			.sender = (const char *)sqlite3_column_text(st, 2),
			.address = (const char *)sqlite3_column_text(st, 3),
			.state = (const char *)sqlite3_column_text(st, 4),
			.attempts = sqlite3_column_int(st, 5),
			.arrived = sqlite3_column_int64(st, 6),
			.body_offset = (uint64_t)sqlite3_column_int64(st, 7),
			.size = (uint64_t)sqlite3_column_int64(st, 8),
			.last_error = (const char *)le,
			.notify = (const char *)sqlite3_column_text(st, 10),
			.orcpt = (const char *)sqlite3_column_text(st, 11),
			.ret = (const char *)sqlite3_column_text(st, 12),
			.envid = (const char *)sqlite3_column_text(st, 13),
			.delay_warned = sqlite3_column_int(st, 14) != 0,
		};
		cb(ctx, &d);
	}
	sqlite3_finalize(st);
	return 0;
}

int64_t queue_next_due(struct queue *q)
{
	sqlite3_stmt *st;
	int64_t r = -1;
	if (sqlite3_prepare_v2(q->db, "SELECT MIN(next_try) FROM recipients", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return r;
}

int queue_counts(struct queue *q, struct queue_counts *c, char **error_r)
{
	sqlite3_stmt *st;
	*c = (struct queue_counts){ 0 };
	if (sqlite3_prepare_v2(q->db,
			       "SELECT state, COUNT(*) FROM recipients GROUP BY state"
			       " UNION ALL SELECT NULL, COUNT(*) FROM messages",
			       -1, &st, NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "counts");
		return -1;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *state = (const char *)sqlite3_column_text(st, 0);
		int64_t n = sqlite3_column_int64(st, 1);
		if (state == NULL)
			c->messages = n;
		else if (strcmp(state, "deferred") == 0)
			c->deferred += n;
		else if (strcmp(state, "bounce") == 0)
			c->bounce += n;
		else
			c->queued += n;
	}
	if (rc != SQLITE_DONE)
		*error_r = db_error(q->db, "counts");
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* changes_or_error - the row count of the last statement, or -1 with *error_r */
static int changes_or_error(struct queue *q, int rc, const char *what, char **error_r)
{
	if (rc < 0) {
		*error_r = db_error(q->db, what);
		return -1;
	}
	return sqlite3_changes(q->db);
}

int queue_rcpt_remove(struct queue *q, int64_t rcpt_id, char **error_r)
{
	int rc = exec_step(q->db, "DELETE FROM recipients WHERE id = ?", "i", rcpt_id);
	return changes_or_error(q, rc, "remove recipient", error_r) < 0 ? -1 : 0;
}

int queue_rcpt_defer(struct queue *q, int64_t rcpt_id, int64_t next_try, const char *error,
		     char **error_r)
{
	int rc = exec_step(q->db,
			   "UPDATE recipients SET state = 'deferred', attempts = attempts + 1,"
			   " next_try = ?, last_error = ? WHERE id = ?",
			   "iti", next_try, error, rcpt_id);
	return changes_or_error(q, rc, "defer recipient", error_r) < 0 ? -1 : 0;
}

int queue_rcpt_delay_warned(struct queue *q, int64_t rcpt_id, char **error_r)
{
	int rc = exec_step(q->db, "UPDATE recipients SET delay_warned = 1 WHERE id = ?", "i",
			   rcpt_id);
	return changes_or_error(q, rc, "delay warned", error_r) < 0 ? -1 : 0;
}

char *queue_file_path(struct queue *q, const char *qid)
{
	return xasprintf("%s/%s", q->dir, qid);
}

int queue_msg_finish(struct queue *q, const char *qid, char **error_r)
{
	sqlite3_stmt *st;
	int left = -1;
	if (sqlite3_prepare_v2(q->db, "SELECT COUNT(*) FROM recipients WHERE qid = ?", -1, &st,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, qid, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			left = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (left != 0) {
		if (left < 0)
			*error_r = db_error(q->db, "count recipients");
		return left < 0 ? -1 : 0;
	}
	/* File first, then the row: a crash between leaves a row without recipients, which
	 * queue_finish_orphans completes at the next start; the other order would leave a file
	 * nobody owns. */
	char *path = queue_file_path(q, qid);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("%s: unlink %s", qid, path);
	free(path);
	if (exec_step(q->db, "DELETE FROM messages WHERE qid = ?", "t", qid) < 0) {
		*error_r = db_error(q->db, "remove message");
		return -1;
	}
	return 0;
}

int queue_msgs_done(struct queue *q, const char *const *qids, size_t n, bool *done,
		    char **error_r)
{
	sqlite3_stmt *count;
	int found = 0;
	if (sqlite3_prepare_v2(q->db, "SELECT COUNT(*) FROM recipients WHERE qid = ?", -1, &count,
			       NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "count recipients");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		sqlite3_reset(count);
		sqlite3_bind_text(count, 1, qids[i], -1, SQLITE_STATIC);
		if (sqlite3_step(count) != SQLITE_ROW) {
			*error_r = db_error(q->db, "count recipients");
			found = -1;
			break;
		}
		done[i] = sqlite3_column_int(count, 0) == 0;
		found += done[i];
	}
	/* finalized here: an open read transaction would make the next BEGIN IMMEDIATE fail
	 * at once with SQLITE_BUSY */
	sqlite3_finalize(count);
	return found;
}

int queue_msgs_remove(struct queue *q, const char *const *qids, const bool *which, size_t n,
		      char **error_r)
{
	sqlite3_stmt *del = NULL;
	if (queue_begin(q, error_r) < 0)
		return -1;
	if (sqlite3_prepare_v2(q->db, "DELETE FROM messages WHERE qid = ?", -1, &del, NULL) !=
	    SQLITE_OK)
		goto dberr;
	for (size_t i = 0; i < n; i++) {
		if (which != NULL && !which[i])
			continue;
		sqlite3_reset(del);
		sqlite3_bind_text(del, 1, qids[i], -1, SQLITE_STATIC);
		if (sqlite3_step(del) != SQLITE_DONE)
			goto dberr;
	}
	sqlite3_finalize(del);
	if (queue_commit(q, error_r) == 0)
		return 0;
	queue_rollback(q);
	return -1;
dberr:
	*error_r = db_error(q->db, "remove message");
	sqlite3_finalize(del);
	queue_rollback(q);
	return -1;
}

int queue_flush(struct queue *q, const char *qid, char **error_r)
{
	int rc = qid ? exec_step(q->db, "UPDATE recipients SET next_try = 0 WHERE qid = ?", "t", qid)
		     : exec_step(q->db, "UPDATE recipients SET next_try = 0", "");
	return changes_or_error(q, rc, "flush", error_r);
}

int queue_bounce(struct queue *q, const char *qid, char **error_r)
{
	int rc = exec_step(q->db,
			   "UPDATE recipients SET state = 'bounce', next_try = 0 WHERE qid = ?",
			   "t", qid);
	return changes_or_error(q, rc, "bounce", error_r);
}

int queue_delete(struct queue *q, const char *qid, char **error_r)
{
	int rc = exec_step(q->db, "DELETE FROM recipients WHERE qid = ?", "t", qid);
	int n = changes_or_error(q, rc, "delete", error_r);
	if (n < 0 || queue_msg_finish(q, qid, error_r) < 0)
		return -1;
	return n;
}

/* wake_addr - the runner's socket address under spool_dir */
static int wake_addr(const char *spool_dir, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	int n = snprintf(sun->sun_path, sizeof(sun->sun_path), "%s/runner.sock", spool_dir);
	return n < 0 || (size_t)n >= sizeof(sun->sun_path) ? -1 : 0;
}

void queue_wake(const char *spool_dir)
{
	struct sockaddr_un sun;
	if (wake_addr(spool_dir, &sun) < 0)
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, "w", 1, 0, (struct sockaddr *)&sun, sizeof(sun));
	close(fd);
}

int queue_wake_listen(const char *spool_dir)
{
	struct sockaddr_un sun;
	if (wake_addr(spool_dir, &sun) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		close(fd);
		return -1;
	}
	/* root's `tern queue flush` and every worker may nudge us */
	chmod(sun.sun_path, 0666);
	return fd;
}

int queue_begin(struct queue *q, char **error_r)
{
	if (exec_step(q->db, "BEGIN IMMEDIATE", "") < 0) {
		*error_r = db_error(q->db, "begin");
		return -1;
	}
	return 0;
}

int queue_commit(struct queue *q, char **error_r)
{
	if (exec_step(q->db, "COMMIT", "") < 0) {
		*error_r = db_error(q->db, "commit");
		return -1;
	}
	return 0;
}

void queue_rollback(struct queue *q)
{
	(void)exec_step(q->db, "ROLLBACK", "");
}

int queue_finish_orphans(struct queue *q, char **error_r)
{
	sqlite3_stmt *st;
	char **qids = NULL;
	size_t n = 0;
	if (sqlite3_prepare_v2(q->db,
			       "SELECT qid FROM messages m WHERE NOT EXISTS"
			       " (SELECT 1 FROM recipients r WHERE r.qid = m.qid)",
			       -1, &st, NULL) != SQLITE_OK) {
		*error_r = db_error(q->db, "orphans");
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		qids = xreallocarray(qids, n + 1, sizeof(*qids));
		qids[n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_finalize(st);
	int r = (int)n;
	for (size_t i = 0; i < n; i++) {
		if (r >= 0 && queue_msg_finish(q, qids[i], error_r) < 0)
			r = -1;
		free(qids[i]);
	}
	free(qids);
	return r;
}
