/* index - index.db: the schema, cached statements, transactions, and the pick-up of files
 * that have no index row yet.
 *
 * Durability: journal_mode=WAL with synchronous=NORMAL. A commit is atomic and survives a
 * process crash; only a power failure can lose the last commits. That is acceptable for
 * deliveries and appends because their files are fsync'd into new/ before the row is
 * written, and a file of new/ (or cur/) without a row is picked up at the next open: a lost
 * row costs a new UID, never a message. Transactions whose loss would bring mail back
 * (expunge, move) are committed with synchronous=FULL, or (IMAP's EXPUNGE,
 * store_expunge_deleted_begin) with NORMAL and the WAL fdatasync'd on another thread
 * before the files go and anyone is told (docs/architecture.md, "IMAP's APPEND and EXPUNGE
 * sync off the loop").
 *
 * Concurrency: every write is BEGIN IMMEDIATE (waiting up to store_settings.busy_timeout_ms:
 * 250 ms in workers, 10 s elsewhere), so a transaction that reads and then writes (UID
 * allocation, flag changes) holds the write lock from its first read: two processes can never
 * both allocate a UID or both rewrite one message's flags from the same old value. One
 * connection per account per process is shared by all its handles (below).
 *
 * Schema: numbered steps through lib/dbschema (PRAGMA user_version); step 1 is the schema as
 * it was before versioning (user_version 1), step 2 adds the expunge records. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/dbschema.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

/* The schema as numbered steps (lib/dbschema): step i takes user_version i to i+1. A released
 * step is never edited; a change is a new step at the end. */
static const char schema_v1[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	/* AUTOINCREMENT: a deleted mailbox's id is never given to a new one, so a session
	 * that still holds the old id cannot reach the new mailbox. */
	"CREATE TABLE IF NOT EXISTS mailboxes("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, dir TEXT NOT NULL UNIQUE,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL, highestmodseq INTEGER NOT NULL,"
	" recent_uid INTEGER NOT NULL, cur_mtime INTEGER NOT NULL DEFAULT 0,"
	" keywords TEXT NOT NULL DEFAULT '');"
	"CREATE TABLE IF NOT EXISTS messages("
	" mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL, name TEXT NOT NULL,"
	" file TEXT NOT NULL, size INTEGER NOT NULL, internaldate INTEGER NOT NULL,"
	" flags INTEGER NOT NULL, keywords TEXT NOT NULL DEFAULT '', modseq INTEGER NOT NULL,"
	" structure BLOB, PRIMARY KEY(mailbox_id, uid));"
	"CREATE UNIQUE INDEX IF NOT EXISTS messages_name ON messages(mailbox_id, name);"
	/* files of expunged messages not yet unlinked: never picked up again as new mail */
	"CREATE TABLE IF NOT EXISTS unlinks("
	" id INTEGER PRIMARY KEY, mailbox_id INTEGER NOT NULL, name TEXT NOT NULL,"
	" file TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS unlinks_name ON unlinks(mailbox_id, name);"
	"CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY);";

/* v2: expunge records for the sync API (RFC 7162 3.2.7: remember the UID and the new MODSEQ
 * of each expunged message), the highest MODSEQ pruned from them per mailbox, and an index
 * that finds the messages changed since a MODSEQ without a scan. */
static const char schema_v2[] =
	"CREATE TABLE expunged(mailbox_id INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, PRIMARY KEY(mailbox_id, uid)) WITHOUT ROWID;"
	"CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);"
	"ALTER TABLE mailboxes ADD COLUMN expunge_floor INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);";

static const char *const schema_steps[] = { schema_v1, schema_v2 };

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SYNC_FULL] = "PRAGMA synchronous=FULL",
	[ST_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
	[ST_META_GET] = "SELECT value FROM meta WHERE key=?1",
	[ST_META_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
#define MB_COLS \
	"id, name, dir, uidvalidity, uidnext, highestmodseq, recent_uid, cur_mtime, expunge_floor"
	[ST_MB_BY_NAME] = "SELECT " MB_COLS " FROM mailboxes WHERE name=?1",
	[ST_MB_BY_ID] = "SELECT " MB_COLS " FROM mailboxes WHERE id=?1",
	[ST_MB_INSERT] = "INSERT INTO mailboxes(name, dir, uidvalidity, uidnext, highestmodseq,"
			 " recent_uid) VALUES(?1, ?2, ?3, 1, 1, 1)",
	[ST_MB_COUNTERS] = "UPDATE mailboxes SET uidnext=?2, highestmodseq=?3 WHERE id=?1",
	[ST_MB_SET_RECENT] = "UPDATE mailboxes SET recent_uid=?2 WHERE id=?1",
	[ST_MB_SET_MTIME] = "UPDATE mailboxes SET cur_mtime=?2 WHERE id=?1",
	[ST_MB_GET_KEYWORDS] = "SELECT keywords FROM mailboxes WHERE id=?1",
	[ST_MB_SET_KEYWORDS] = "UPDATE mailboxes SET keywords=?2 WHERE id=?1",
	[ST_MB_DELETE] = "DELETE FROM mailboxes WHERE id=?1",
	[ST_MB_RENAME] = "UPDATE mailboxes SET name=?2, dir=?3 WHERE id=?1",
	[ST_MB_LIST] = "SELECT " MB_COLS " FROM mailboxes ORDER BY name",
	[ST_MB_CHILDREN] = "SELECT " MB_COLS " FROM mailboxes"
			   " WHERE substr(name, 1, length(?1) + 1) = ?1 || '/' ORDER BY name",
	[ST_MSG_INSERT] = "INSERT INTO messages(mailbox_id, uid, name, file, size, internaldate,"
			  " flags, keywords, modseq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[ST_MSG_BY_NAME] = "SELECT uid, file FROM messages WHERE mailbox_id=?1 AND name=?2",
	[ST_MSG_BY_UID] = "SELECT name, file, size FROM messages WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_SET_FILE] = "UPDATE messages SET file=?3 WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_RANGE] = "SELECT uid, size, internaldate, flags, modseq, keywords FROM messages"
			 " WHERE mailbox_id=?1 AND uid BETWEEN ?2 AND ?3 AND modseq > ?4"
			 " ORDER BY uid",
	[ST_MSG_RANGE_FULL] = "SELECT uid, size, internaldate, flags, modseq, keywords, name, file"
			      " FROM messages WHERE mailbox_id=?1 AND uid BETWEEN ?2 AND ?3"
			      " ORDER BY uid",
	[ST_MSG_NAMES] = "SELECT name FROM messages WHERE mailbox_id=?1 ORDER BY name",
	[ST_MSG_UIDS] = "SELECT uid FROM messages WHERE mailbox_id=?1 ORDER BY uid",
	[ST_MSG_SET_FLAGS] = "UPDATE messages SET flags=?3, keywords=?4, modseq=?5"
			     " WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_DELETE] = "DELETE FROM messages WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_DELETE_MB] = "DELETE FROM messages WHERE mailbox_id=?1",
	[ST_MSG_STATUS] = "SELECT count(*), coalesce(sum((flags & 1) = 0), 0),"
			  " coalesce(sum(uid >= ?2), 0), coalesce(sum(size), 0),"
			  " coalesce(min(CASE WHEN (flags & 1) = 0 THEN uid END), 0)"
			  " FROM messages WHERE mailbox_id=?1",
	[ST_MSG_COUNT_FROM] = "SELECT count(*) FROM messages WHERE mailbox_id=?1"
			      " AND uid BETWEEN ?2 AND ?3",
	[ST_MSG_CACHE_GET] = "SELECT structure FROM messages WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_CACHE_SET] = "UPDATE messages SET structure=?3 WHERE mailbox_id=?1 AND uid=?2",
	[ST_MSG_STRUCTURE] = "SELECT uid, structure, name, file FROM messages"
			     " WHERE mailbox_id=?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
	[ST_UNLINK_ADD] = "INSERT INTO unlinks(mailbox_id, name, file) VALUES(?1, ?2, ?3)",
	[ST_UNLINK_HAS] = "SELECT 1 FROM unlinks WHERE mailbox_id=?1 AND name=?2",
	[ST_UNLINK_LIST] = "SELECT u.id, u.name, u.file, b.dir FROM unlinks u"
			   " LEFT JOIN mailboxes b ON b.id = u.mailbox_id"
			   " WHERE ?1 = 0 OR u.mailbox_id = ?1 ORDER BY u.id",
	[ST_UNLINK_DEL] = "DELETE FROM unlinks WHERE id=?1",
	[ST_UNLINK_DELETE_MB] = "DELETE FROM unlinks WHERE mailbox_id=?1",
	[ST_SUB_ADD] = "INSERT OR IGNORE INTO subscriptions(name) VALUES(?1)",
	[ST_SUB_DEL] = "DELETE FROM subscriptions WHERE name=?1",
	[ST_SUB_LIST] = "SELECT name FROM subscriptions ORDER BY name",
	[ST_SUB_HAS] = "SELECT 1 FROM subscriptions WHERE name=?1",
	[ST_EXP_ADD] = "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES(?1, ?2, ?3)",
	/* the MODSEQ below which records go: the (keep+1)-th newest */
	[ST_EXP_CUT] = "SELECT modseq FROM expunged WHERE mailbox_id=?1"
		       " ORDER BY modseq DESC LIMIT 1 OFFSET ?2",
	[ST_EXP_PRUNE] = "DELETE FROM expunged WHERE mailbox_id=?1 AND modseq <= ?2",
	[ST_EXP_FLOOR] = "UPDATE mailboxes SET expunge_floor=max(expunge_floor, ?2) WHERE id=?1",
	[ST_EXP_DELETE_MB] = "DELETE FROM expunged WHERE mailbox_id=?1",
	/* "+uid": search by MODSEQ (the few recent changes), not by UID (the whole mailbox) */
	[ST_EXP_SINCE] = "SELECT uid FROM expunged INDEXED BY expunged_modseq"
			 " WHERE mailbox_id=?1 AND modseq > ?2 AND uid < ?3 ORDER BY uid",
	[ST_MSG_CHANGED] = "SELECT uid, size, internaldate, flags, modseq, keywords FROM messages"
			   " WHERE mailbox_id=?1 AND modseq > ?2 AND +uid < ?3 ORDER BY uid",
};

void db_set_error(struct store *s, char **error_r, const char *what)
{
	store_set_error(error_r, "%s/%s: %s: %s", s->root, STORE_INDEX_NAME, what,
			s->db ? sqlite3_errmsg(s->db) : "not open");
}

/* Statements are prepared at their first use, not at open: a session uses a handful of the
 * fifty, and each prepared statement costs a few kB for as long as the connection lives. */
sqlite3_stmt *db_st(struct store *s, enum stmt id)
{
	sqlite3_stmt *st = s->st[id];
	if (st == NULL) {
		/* NULL on failure: binding and stepping it fail with SQLITE_MISUSE, and
		 * sqlite3_errmsg still tells why the prepare failed */
		if (sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
				       &s->st[id], NULL) != SQLITE_OK)
			log_warnx("store: prepare %s: %s", stmt_sql[id], sqlite3_errmsg(s->db));
		return s->st[id];
	}
	sqlite3_reset(st);
	return st;
}

int db_exec(sqlite3_stmt *st)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Write transactions are timed (process-wide: one at a time in a single-threaded process):
 * store_stats reports the longest, and one that held the lock past STORE_SLOW_WRITE_MS is
 * logged, since every other process's writer waited for it. */
#define STORE_SLOW_WRITE_MS 100
static struct store_stats stats;
static int64_t tx_start;

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void tx_end(struct store *s, bool committed)
{
	if (tx_start == 0)
		return;
	uint64_t us = (uint64_t)(mono_ns() - tx_start) / 1000;
	tx_start = 0;
	if (committed)
		stats.write_commits++;
	if (us > stats.write_us_max)
		stats.write_us_max = us;
	if (us > STORE_SLOW_WRITE_MS * 1000)
		log_warnx("%s: slow write transaction: %llu ms", s->root,
			  (unsigned long long)(us / 1000));
}

void store_stats_get(struct store_stats *st_r)
{
	*st_r = stats;
}

void store_stats_reset(void)
{
	memset(&stats, 0, sizeof(stats));
}

int db_begin(struct store *s, bool durable, char **error_r)
{
	if (durable && db_exec(db_st(s, ST_SYNC_FULL)) < 0) {
		db_set_error(s, error_r, "synchronous=FULL");
		return STORE_ERROR;
	}
	if (db_exec(db_st(s, ST_BEGIN)) < 0) {
		int code = sqlite3_errcode(s->db);
		if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
			stats.busy_errors++;
		db_set_error(s, error_r, "begin");
		if (durable)
			db_exec(db_st(s, ST_SYNC_NORMAL));
		return STORE_ERROR;
	}
	tx_start = mono_ns();
	return 0;
}

int db_commit(struct store *s, char **error_r)
{
	int r = 0;
	if (db_exec(db_st(s, ST_COMMIT)) < 0) {
		db_set_error(s, error_r, "commit");
		db_rollback(s);
		r = STORE_ERROR;
	}
	tx_end(s, r == 0);
	db_exec(db_st(s, ST_SYNC_NORMAL));
	return r;
}

void db_rollback(struct store *s)
{
	if (!sqlite3_get_autocommit(s->db))
		db_exec(db_st(s, ST_ROLLBACK));
	tx_end(s, false);
	db_exec(db_st(s, ST_SYNC_NORMAL));
}

static int meta_get(struct store *s, const char *key, int64_t *v_r)
{
	sqlite3_stmt *st = db_st(s, ST_META_GET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*v_r = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int meta_set(struct store *s, const char *key, int64_t v)
{
	sqlite3_stmt *st = db_st(s, ST_META_SET);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, v);
	return db_exec(st);
}

/* db_pragma_wal - switch to WAL; the first opener of a new file may race another, so
 * retry while the database is busy */
static int db_pragma_wal(struct store *s)
{
	for (int i = 0; i < 100; i++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
			return -1;
		int rc = sqlite3_step(st);
		bool wal = rc == SQLITE_ROW &&
			   strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
		sqlite3_finalize(st);
		if (wal)
			return 0;
		if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED && rc != SQLITE_ROW)
			return -1;
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return -1;
}

/* db_schema - bring index.db to the current schema (one read when it is there already) */
static int db_schema(struct store *s, char **error_r)
{
	char *what = store_path(s, NULL, STORE_INDEX_NAME);
	int r = dbschema_migrate(s->db, what, schema_steps,
				 sizeof(schema_steps) / sizeof(schema_steps[0]), error_r);
	free(what);
	return r;
}

/* ---- connections: one per account per process ------------------------------------------ */

/* Every handle on an account in one process shares one SQLite connection and its prepared
 * statements (about 50, prepared as first used): a worker with a thousand sessions on a few hundred accounts keeps a
 * few hundred connections, not a thousand. Sharing is safe because a worker is single-threaded
 * and every store call finishes its transaction before it returns: no transaction, and no
 * statement mid-step, is ever left open between calls. A connection never crosses fork: a
 * child forgets (never closes) its parent's. */
struct store_db {
	struct store_db *next;
	char *path;		/* index.db: the key */
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	dev_t dev;		/* index.db as opened: a replaced file means a lost index */
	ino_t ino;
	int changes_fd;		/* the change file: -1 not yet opened, -2 failed */
	struct dbschema_busy busy;	/* the busy handler's wait: short steps (lib/dbschema) */
	unsigned refs;
	bool listed;		/* still in the cache list (not superseded) */
};
static struct store_db *db_list;
static pid_t db_list_pid;

static void store_db_free(struct store_db *d)
{
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(d->st[i]);
	if (d->db != NULL)
		sqlite3_close(d->db);
	if (d->changes_fd >= 0)
		close(d->changes_fd);
	free(d->path);
	free(d);
}

static void db_unlist(struct store_db *d)
{
	for (struct store_db **pp = &db_list; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	d->listed = false;
}

/* db_attach - point s at d (one more reference) */
static void db_attach(struct store *s, struct store_db *d)
{
	d->refs++;
	s->conn = d;
	s->db = d->db;
	s->st = d->st;
}

/* db_open_file - open d->path into d: WAL, synchronous=NORMAL, the current schema */
static int db_open_file(struct store *s, struct store_db *d, char **error_r)
{
	int rc = sqlite3_open_v2(d->path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
						  SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW, NULL);
	s->db = d->db;
	if (rc != SQLITE_OK) {
		db_set_error(s, error_r, "open");
		return -1;
	}
	struct stat st;
	if (stat(d->path, &st) == 0) {
		d->dev = st.st_dev;
		d->ino = st.st_ino;
	}
	dbschema_busy_fine(d->db, &d->busy, store_settings_current()->busy_timeout_ms);
	if (db_pragma_wal(s) < 0 ||
	    sqlite3_exec(d->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "journal mode");
		return -1;
	}
	return db_schema(s, error_r);
}

/* db_damaged - the last error on db says that index.db is no database or a damaged one */
static bool db_damaged(sqlite3 *db)
{
	int e = sqlite3_errcode(db) & 0xff;
	return e == SQLITE_NOTADB || e == SQLITE_CORRUPT;
}

/* db_set_aside - move a damaged index.db (the file dev/ino) and its WAL out of the way
 * (index.db.damaged.<time>), so that the next open builds a new one from the Maildir. Under
 * an flock on the Maildir's root: of several processes that found it damaged one moves it,
 * and the others, finding another file at the path, leave the new index alone. */
static int db_set_aside(struct store *s, const char *path, dev_t dev, ino_t ino,
			char **error_r)
{
	int dfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || flock(dfd, LOCK_EX) < 0) {
		store_set_error(error_r, "%s: lock: %s", s->root, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	int r = 0;
	struct stat st;
	if (stat(path, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
		char *aside = xasprintf("%s.damaged.%lld", path, (long long)time(NULL));
		char *wal = xasprintf("%s-wal", path), *aside_wal = xasprintf("%s-wal", aside);
		char *shm = xasprintf("%s-shm", path);
		if (rename(path, aside) < 0) {
			store_set_error(error_r, "rename %s: %s", path, strerror(errno));
			r = -1;
		} else {
			if (rename(wal, aside_wal) < 0 && errno != ENOENT)
				log_warn("rename %s", wal);
			if (unlink(shm) < 0 && errno != ENOENT)
				log_warn("unlink %s", shm);
			fs_fsync_dir(s->root);
			log_warnx("%s: damaged; moved to %s, the index is rebuilt from the Maildir "
				  "(new UIDVALIDITYs)", path, aside);
		}
		free(aside);
		free(wal);
		free(aside_wal);
		free(shm);
	}
	flock(dfd, LOCK_UN);
	close(dfd);
	return r;
}

int db_open(struct store *s, char **error_r)
{
	if (db_list_pid != getpid()) {
		db_list = NULL;		/* the parent's: never touch them */
		db_list_pid = getpid();
	}
	char *path = store_path(s, NULL, STORE_INDEX_NAME);
	struct stat st;
	bool exists = stat(path, &st) == 0;
	for (struct store_db *d = db_list; d != NULL; d = d->next) {
		if (strcmp(d->path, path) != 0)
			continue;
		if (exists && st.st_dev == d->dev && st.st_ino == d->ino) {
			free(path);
			db_attach(s, d);
			return 0;
		}
		db_unlist(d);	/* index.db was replaced: its holders keep it, newcomers do not */
		break;
	}
	struct store_db *d = xcalloc(1, sizeof(*d));
	d->path = path;
	d->changes_fd = -1;
	db_attach(s, d);
	int r = db_open_file(s, d, error_r);
	if (r < 0 && d->db != NULL && db_damaged(d->db)) {
		/* Not a database (or a damaged one): the Maildir holds every message, so the
		 * index is rebuilt from it (new UIDVALIDITYs) rather than the account refused
		 * for good. */
		if (error_r != NULL) {
			log_warnx("%s", *error_r);
			free(*error_r);
			*error_r = NULL;
		}
		sqlite3_close(d->db);
		d->db = s->db = NULL;
		if (db_set_aside(s, path, d->dev, d->ino, error_r) < 0)
			return -1;
		r = db_open_file(s, d, error_r);
	}
	if (r < 0)
		return -1;
	d->next = db_list;
	db_list = d;
	d->listed = true;
	return 0;
}

void db_close(struct store *s)
{
	struct store_db *d = s->conn;
	s->conn = NULL;
	s->db = NULL;
	s->st = NULL;
	if (d == NULL || --d->refs > 0)
		return;
	if (d->listed)
		db_unlist(d);
	store_db_free(d);
}

bool db_replaced(const struct store *s)
{
	struct stat st;
	return stat(s->conn->path, &st) < 0 || st.st_dev != s->conn->dev ||
	       st.st_ino != s->conn->ino;
}

/* store_notify - after a commit that changed mailbox: this handle's hook first (so that a
 * hook sees the change before any other process can), then the change file that wakes the
 * watchers of every process (notify.c) */
void store_notify(struct store *s, const char *mailbox, unsigned changes)
{
	if (changes == 0)
		return;
	if (s->hook != NULL)
		s->hook(s->hook_ctx, mailbox, changes);
	/* A change file that could not be opened (say, out of descriptors) is tried again, at
	 * most once a second in this process: a commit that is not announced is missed by
	 * the IDLE sessions of every process, and by every other session until the next
	 * announced change (imap_view_sync asks the index only after one). */
	static time_t last_retry;
	if (s->conn->changes_fd == -2 && time(NULL) != last_retry) {
		last_retry = time(NULL);
		s->conn->changes_fd = -1;
	}
	maildir_changes_bump(s->root, &s->conn->changes_fd);
}

/* ---- mailbox rows ------------------------------------------------------------------- */

static void mbrow_read(sqlite3_stmt *st, struct mbrow *r)
{
	r->id = sqlite3_column_int64(st, 0);
	r->name = xstrdup((const char *)sqlite3_column_text(st, 1));
	r->dir = xstrdup((const char *)sqlite3_column_text(st, 2));
	r->uidvalidity = (uint32_t)sqlite3_column_int64(st, 3);
	r->uidnext = (uint32_t)sqlite3_column_int64(st, 4);
	r->highestmodseq = (uint64_t)sqlite3_column_int64(st, 5);
	r->recent_uid = (uint32_t)sqlite3_column_int64(st, 6);
	r->cur_mtime = sqlite3_column_int64(st, 7);
	r->expunge_floor = (uint64_t)sqlite3_column_int64(st, 8);
}

void mbrow_free(struct mbrow *r)
{
	free(r->name);
	free(r->dir);
	r->name = r->dir = NULL;
}

static int mb_get(struct store *s, sqlite3_stmt *st, struct mbrow *r, char **error_r)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		mbrow_read(st, r);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	db_set_error(s, error_r, "read mailbox");
	return -1;
}

int idx_mb_by_name(struct store *s, const char *name, struct mbrow *r, char **error_r)
{
	sqlite3_stmt *st = db_st(s, ST_MB_BY_NAME);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	return mb_get(s, st, r, error_r);
}

int idx_mb_by_id(struct store *s, int64_t id, struct mbrow *r, char **error_r)
{
	sqlite3_stmt *st = db_st(s, ST_MB_BY_ID);
	sqlite3_bind_int64(st, 1, id);
	return mb_get(s, st, r, error_r);
}

int idx_mb_current(struct store_mailbox *mb, struct mbrow *r, char **error_r)
{
	int k = idx_mb_by_id(mb->s, mb->id, r, error_r);
	if (k == 0)
		store_set_error(error_r, "mailbox %s no longer exists", mb->name);
	return k > 0 ? 0 : k == 0 ? STORE_NOTFOUND : STORE_ERROR;
}

int idx_mb_insert(struct store *s, const char *name, const char *dir, int64_t *id_r,
		  char **error_r)
{
	/* UIDVALIDITY: the time, but always above any value this index gave before, so a
	 * mailbox deleted and created again within a second still gets a new one ... */
	int64_t last = 0;
	if (meta_get(s, "last_uidvalidity", &last) < 0) {
		db_set_error(s, error_r, "read meta");
		return -1;
	}
	/* ... and above any value given before this index existed (a lost or damaged one):
	 * the floor is saved before the row commits, so it is never below a committed value */
	int64_t floor = maildir_uidvalidity_floor(s->root);
	if (floor > last)
		last = floor;
	int64_t v = (int64_t)time(NULL);
	if (v <= last)
		v = last + 1;
	if (v > UINT32_MAX)
		v = 1;		/* after 2106; reuse is harmless across so long */
	if (maildir_uidvalidity_save(s->root, (uint32_t)v) < 0)
		log_warn("%s/%s: write", s->root, STORE_UIDVALIDITY_NAME);
	sqlite3_stmt *st = db_st(s, ST_MB_INSERT);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, dir, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 3, v);
	if (db_exec(st) < 0 || meta_set(s, "last_uidvalidity", v) < 0) {
		db_set_error(s, error_r, "insert mailbox");
		return -1;
	}
	*id_r = sqlite3_last_insert_rowid(s->db);
	return 0;
}

int idx_mb_counters(struct store *s, int64_t id, uint32_t uidnext, uint64_t modseq)
{
	sqlite3_stmt *st = db_st(s, ST_MB_COUNTERS);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, uidnext);
	sqlite3_bind_int64(st, 3, (int64_t)modseq);
	return db_exec(st);
}

int idx_mb_drop(struct store *s, int64_t id)
{
	sqlite3_stmt *st = db_st(s, ST_MSG_DELETE_MB);
	sqlite3_bind_int64(st, 1, id);
	if (db_exec(st) < 0)
		return -1;
	st = db_st(s, ST_UNLINK_DELETE_MB);
	sqlite3_bind_int64(st, 1, id);
	if (db_exec(st) < 0)
		return -1;
	st = db_st(s, ST_EXP_DELETE_MB);
	sqlite3_bind_int64(st, 1, id);
	if (db_exec(st) < 0)
		return -1;
	st = db_st(s, ST_MB_DELETE);
	sqlite3_bind_int64(st, 1, id);
	return db_exec(st);
}

bool store_kw_has(const char *list, const char *k, size_t n)
{
	const char *p = list;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncasecmp(p, k, n) == 0)
			return true;
		p += len;
		while (*p == ' ')
			p++;
	}
	return false;
}

int idx_add_keywords(struct store *s, int64_t id, const char *keywords, char **error_r)
{
	if (keywords == NULL || keywords[0] == '\0')
		return 0;
	sqlite3_stmt *st = db_st(s, ST_MB_GET_KEYWORDS);
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_reset(st);
		db_set_error(s, error_r, "read keywords");
		return -1;
	}
	char *list = xstrdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_reset(st);
	size_t count = 0;
	for (const char *p = list; *p; p++)
		if (*p != ' ' && (p == list || p[-1] == ' '))
			count++;
	bool changed = false;
	const char *p = keywords;
	int r = 0;
	while (*p) {
		const char *e = strchr(p, ' ');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len > 0 && !store_kw_has(list, p, len)) {
			if (++count > STORE_MAX_MB_KEYWORDS) {
				store_set_error(error_r, "too many keywords in the mailbox");
				r = STORE_INVALID;
				break;
			}
			char *n = xasprintf("%s%s%.*s", list, list[0] ? " " : "", (int)len, p);
			free(list);
			list = n;
			changed = true;
		}
		p += len;
		while (*p == ' ')
			p++;
	}
	if (r == 0 && changed) {
		st = db_st(s, ST_MB_SET_KEYWORDS);
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, list, -1, SQLITE_TRANSIENT);
		if (db_exec(st) < 0) {
			db_set_error(s, error_r, "write keywords");
			r = -1;
		}
	}
	free(list);
	return r;
}

int idx_msg_insert(struct store *s, int64_t id, uint32_t uid, const char *name,
		   const char *file, uint64_t size, int64_t date, uint32_t flags,
		      const char *keywords, uint64_t modseq)
{
	sqlite3_stmt *st = db_st(s, ST_MSG_INSERT);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 4, file, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 5, (int64_t)size);
	sqlite3_bind_int64(st, 6, date);
	sqlite3_bind_int64(st, 7, flags);
	sqlite3_bind_text(st, 8, keywords ? keywords : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 9, (int64_t)modseq);
	return db_exec(st);
}

/* msg_by_name - 1 with the UID (and file) of name, 0 none, -1 */
static int msg_by_name(struct store *s, int64_t id, const char *name, uint32_t *uid_r,
		       char **file_r)
{
	sqlite3_stmt *st = db_st(s, ST_MSG_BY_NAME);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*uid_r = (uint32_t)sqlite3_column_int64(st, 0);
		if (file_r != NULL)
			*file_r = xstrdup((const char *)sqlite3_column_text(st, 1));
	}
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int unlink_pending(struct store *s, int64_t id, const char *name)
{
	sqlite3_stmt *st = db_st(s, ST_UNLINK_HAS);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int idx_add_message(struct store *s, int64_t id, const char *name, const char *file,
		    uint64_t size, int64_t date, uint32_t flags, const char *keywords,
		    const buf *structure, uint32_t *uid_r, uint32_t *uidvalidity_r,
		    char **error_r)
{
	struct mbrow mb;
	int r = db_begin(s, false, error_r);
	if (r < 0)
		return r;
	r = idx_mb_by_id(s, id, &mb, error_r);
	if (r <= 0) {
		db_rollback(s);
		if (r == 0)
			store_set_error(error_r, "the mailbox no longer exists");
		return r == 0 ? STORE_NOTFOUND : STORE_ERROR;
	}
	uint32_t uid;
	r = msg_by_name(s, id, name, &uid, NULL);
	if (r < 0)
		goto dberr;
	if (r == 0) {
		/* a pick-up in another process may have indexed the name first (r == 1) */
		if (mb.uidnext == UINT32_MAX) {
			store_set_error(error_r, "mailbox %s: no UIDs left", mb.name);
			r = STORE_ERROR;
			goto fail;
		}
		uid = mb.uidnext;
		uint64_t modseq = mb.highestmodseq + 1;
		if (idx_msg_insert(s, id, uid, name, file, size, date, flags, keywords, modseq) < 0 ||
		    idx_mb_counters(s, id, uid + 1, modseq) < 0)
			goto dberr;
		if (structure != NULL && structure->len > 0) {
			sqlite3_stmt *st = db_st(s, ST_MSG_CACHE_SET);
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_int64(st, 2, uid);
			sqlite3_bind_blob64(st, 3, structure->data, structure->len, SQLITE_STATIC);
			if (db_exec(st) < 0)
				goto dberr;
		}
		r = idx_add_keywords(s, id, keywords, error_r);
		if (r < 0)
			goto fail;
	}
	r = db_commit(s, error_r);
	if (r == 0) {
		*uid_r = uid;
		*uidvalidity_r = mb.uidvalidity;
		store_notify(s, mb.name, STORE_CHANGE_NEW);
	}
	mbrow_free(&mb);
	return r;
dberr:
	db_set_error(s, error_r, "add message");
	r = STORE_ERROR;
fail:
	db_rollback(s);
	mbrow_free(&mb);
	return r;
}

/* ---- expunge records --------------------------------------------------------------- */

int idx_expunge_record(struct store *s, int64_t id, uint32_t uid, uint64_t modseq)
{
	sqlite3_stmt *st = db_st(s, ST_EXP_ADD);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, uid);
	sqlite3_bind_int64(st, 3, (int64_t)modseq);
	return db_exec(st);
}

/* idx_expunge_prune - the cut is found through the (mailbox_id, modseq) index, so it costs
 * a walk of at most `keep` index entries, inside the expunge's own transaction; records that
 * share the cut's MODSEQ (one EXPUNGE of many messages) go together, so the floor is exact:
 * every record above it is kept. */
int idx_expunge_prune(struct store *s, int64_t id)
{
	unsigned keep = store_settings_current()->expunge_keep;
	sqlite3_stmt *st = db_st(s, ST_EXP_CUT);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, keep);
	int rc = sqlite3_step(st);
	int64_t cut = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return -1;
	st = db_st(s, ST_EXP_PRUNE);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, cut);
	if (db_exec(st) < 0)
		return -1;
	st = db_st(s, ST_EXP_FLOOR);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, cut);
	return db_exec(st);
}

/* ---- pending unlinks ---------------------------------------------------------------- */

int idx_unlinks_list(struct store *s, int64_t id, struct idx_unlinks *u, char **error_r)
{
	memset(u, 0, sizeof(*u));
	/* the thread reaches the files through the account's root only (store_path): a copy,
	 * since the handle may be closed before the thread is done */
	u->root = xcalloc(1, sizeof(*u->root));
	u->root->root = xstrdup(s->root);
	u->wal = store_path(s, NULL, STORE_INDEX_NAME "-wal");
	u->db = store_path(s, NULL, STORE_INDEX_NAME);
	sqlite3_stmt *st = db_st(s, ST_UNLINK_LIST);
	sqlite3_bind_int64(st, 1, id);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (u->n == cap) {
			cap = cap ? cap * 2 : 16;
			u->v = xreallocarray(u->v, cap, sizeof(*u->v));
		}
		const char *dir = (const char *)sqlite3_column_text(st, 3);
		u->v[u->n++] = (struct idx_unlink){
			.id = sqlite3_column_int64(st, 0),
			.name = xstrdup((const char *)sqlite3_column_text(st, 1)),
			.file = xstrdup((const char *)sqlite3_column_text(st, 2)),
			.dir = dir != NULL ? xstrdup(dir) : NULL,
		};
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE) {
		db_set_error(s, error_r, "pending unlinks");
		/* none to unlink; the paths stay, for a WAL sync (idx_unlinks_run) */
		for (size_t i = 0; i < u->n; i++) {
			free(u->v[i].name);
			free(u->v[i].file);
			free(u->v[i].dir);
		}
		free(u->v);
		u->v = NULL;
		u->n = 0;
		return STORE_ERROR;
	}
	return 0;
}

/* wal_sync - fdatasync index.db's WAL through a descriptor of our own: it flushes every
 * frame committed so far, by any connection, as synchronous=FULL would have at the commit.
 * SQLite locks the -shm and the database, never the -wal, so closing this descriptor drops
 * no lock of SQLite's. A WAL that is gone was checkpointed into index.db: sync that. 0, or
 * an errno. */
static int wal_sync(const struct idx_unlinks *u)
{
	int fd = open(u->wal, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		fd = open(u->db, O_RDONLY | O_CLOEXEC);
	int err = fd < 0 || fdatasync(fd) < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	return err;
}

void idx_unlinks_run(struct idx_unlinks *u)
{
	/* A pending unlink may be an expunge committed with synchronous=NORMAL whose WAL sync
	 * is still to come (store_expunge_deleted_begin, in flight on another thread): its file
	 * goes only once that commit is durable, so that no row can come back without it. */
	if (((u->sync_wal && u->n > 0) || u->sync_wal_always) && (u->wal_err = wal_sync(u)) != 0)
		return;
	for (size_t i = 0; i < u->n; i++) {
		struct idx_unlink *e = &u->v[i];
		/* NULL: the mailbox is gone, and its files with it */
		if (e->dir != NULL && maildir_unlink_msg(u->root, e->dir, e->name, e->file) < 0) {
			log_warn("%s: unlink %s", u->root->root, e->name);
			continue;	/* kept: tried again later */
		}
		e->done = true;
	}
	/* The unlinks must be durable before the entries go, or a crash could leave a file
	 * that the next pick-up takes for new mail: one fsync of new/ and cur/ per directory. */
	for (size_t i = 0; i < u->n; i++) {
		struct idx_unlink *e = &u->v[i];
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = u->v[k].dir != NULL && u->v[k].done && strcmp(u->v[k].dir, e->dir) == 0;
		if (e->dir == NULL || !e->done || seen)
			continue;
		char *p1 = store_path(u->root, e->dir, "new");
		char *p2 = store_path(u->root, e->dir, "cur");
		if (fs_fsync_dir(p1) < 0 || fs_fsync_dir(p2) < 0)
			u->sync_failed = true;
		free(p1);
		free(p2);
	}
}

int idx_unlinks_forget(struct store *s, struct idx_unlinks *u, char **error_r)
{
	if (u->wal_err != 0) {
		store_set_error(error_r, "fdatasync %s: %s", u->wal, strerror(u->wal_err));
		return STORE_ERROR;
	}
	if (u->sync_failed) {
		store_set_error(error_r, "%s: fsync after unlinks failed", s->root);
		return STORE_ERROR;
	}
	bool any = false;
	for (size_t i = 0; i < u->n && !any; i++)
		any = u->v[i].done;
	if (!any)
		return 0;
	int r = db_begin(s, false, error_r);
	for (size_t i = 0; r == 0 && i < u->n; i++) {
		if (!u->v[i].done)
			continue;
		sqlite3_stmt *st = db_st(s, ST_UNLINK_DEL);
		sqlite3_bind_int64(st, 1, u->v[i].id);
		if (db_exec(st) < 0) {
			db_set_error(s, error_r, "forget unlinks");
			db_rollback(s);
			r = STORE_ERROR;
		}
	}
	if (r == 0)
		r = db_commit(s, error_r);
	return r;
}

void idx_unlinks_free(struct idx_unlinks *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->v[i].name);
		free(u->v[i].file);
		free(u->v[i].dir);
	}
	free(u->v);
	if (u->root != NULL)
		free(u->root->root);
	free(u->root);
	free(u->wal);
	free(u->db);
	memset(u, 0, sizeof(*u));
}

int idx_finish_unlinks(struct store *s, int64_t id, bool wal_synced, char **error_r)
{
	struct idx_unlinks u;
	int r = idx_unlinks_list(s, id, &u, error_r);
	if (r < 0) {
		idx_unlinks_free(&u);
		return r;
	}
	u.sync_wal = !wal_synced;
	idx_unlinks_run(&u);
	r = idx_unlinks_forget(s, &u, error_r);
	idx_unlinks_free(&u);
	return r;
}

/* ---- pick-up of files without a row -------------------------------------------------- */

struct found {
	char *entry;		/* directory entry */
	char *base;		/* before ":2," */
	bool in_new;
	/* for a file without a row, measured before the write lock is taken */
	enum { PROBE_NONE, PROBE_OK, PROBE_SKIP, PROBE_RETRY } probe;
	uint64_t size;
	int64_t mtime;
};

/* probe_file - open and measure a file that has no row (served size reads it whole, so this
 * is done before the write lock: a large foreign file must not hold other writers up) */
static void probe_file(struct found *f, const char *newdir, const char *curdir)
{
	char *path = xasprintf("%s/%s", f->in_new ? newdir : curdir, f->entry);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	free(path);
	struct stat fst = { 0 };
	if (fd < 0) {
		/* gone meanwhile, or a symlink; anything else is looked at again */
		f->probe = errno != ENOENT && errno != ELOOP ? PROBE_RETRY : PROBE_SKIP;
		return;
	}
	if (fstat(fd, &fst) < 0 || !S_ISREG(fst.st_mode) || maildir_served_size(fd, &f->size) < 0)
		/* an I/O error is looked at again, a non-file never */
		f->probe = fst.st_mode == 0 || S_ISREG(fst.st_mode) ? PROBE_RETRY : PROBE_SKIP;
	else
		f->probe = PROBE_OK;
	f->mtime = (int64_t)fst.st_mtime;
	close(fd);
}

static int cmp_found(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	int c = strcmp(x->base, y->base);
	return c ? c : (int)y->in_new - (int)x->in_new;
}

struct rename_plan {
	char *from, *to;
};

/* cur_target - where a new/ entry goes in cur/: its info kept, ":2," added when none */
static char *cur_target(const char *entry, const char *base)
{
	const char *info = strstr(entry, ":2,");
	return info ? xasprintf("cur/%s%s", base, info) : xasprintf("cur/%s:2,", base);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_pstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* names_load - every indexed name of mailbox id, sorted (strcmp order = BINARY collation) */
static int names_load(struct store *s, int64_t id, struct entries *e)
{
	sqlite3_stmt *st = db_st(s, ST_MSG_NAMES);
	sqlite3_bind_int64(st, 1, id);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (e->n == cap) {
			cap = cap ? cap * 2 : 256;
			e->v = xreallocarray(e->v, cap, sizeof(*e->v));
		}
		e->v[e->n++] = xstrdup((const char *)sqlite3_column_text(st, 0));
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int idx_sync(struct store *s, int64_t id, unsigned *changes_r, char **error_r)
{
	struct mbrow mb;
	int r = idx_mb_by_id(s, id, &mb, error_r);
	if (r <= 0) {
		if (r == 0)
			store_set_error(error_r, "the mailbox no longer exists");
		return r == 0 ? STORE_NOTFOUND : STORE_ERROR;
	}
	struct entries enew = { 0 }, ecur = { 0 }, known = { 0 };
	struct found *f = NULL;
	size_t nf = 0;
	struct rename_plan *plan = NULL;
	size_t nplan = 0;
	char *curdir = store_path(s, mb.dir, "cur");
	char *newdir = store_path(s, mb.dir, "new");

	/* Expunges that a crash interrupted are finished first, so that their files are
	 * gone before anything looks for files without a row. */
	/* Not while an expunge of this account syncs on a thread here: it finishes them itself,
	 * and the WAL sync they would need first must not stop the loop. Their names are
	 * skipped below meanwhile (unlink_pending). */
	if (!store_expunge_in_flight(s->root)) {
		r = idx_finish_unlinks(s, id, false, error_r);
		if (r < 0)
			goto out;
	}

	r = STORE_ERROR;
	if (maildir_list(newdir, &enew) < 0 && errno != ENOENT) {
		store_set_error(error_r, "%s: %s", newdir, strerror(errno));
		goto out;
	}
	/* cur/ is read only when it changed since its last full check: its mtime is
	 * remembered when it was at least 2 s old at the check (so that a change within the
	 * same timestamp tick cannot hide). */
	struct stat cst;
	int64_t cur_mtime = 0;
	if (stat(curdir, &cst) == 0)
		cur_mtime = (int64_t)cst.st_mtim.tv_sec * 1000000000 + cst.st_mtim.tv_nsec;
	bool scan_cur = cur_mtime == 0 || cur_mtime != mb.cur_mtime;
	if (scan_cur && maildir_list(curdir, &ecur) < 0 && errno != ENOENT) {
		store_set_error(error_r, "%s: %s", curdir, strerror(errno));
		goto out;
	}

	/* Without the lock: what might need work. Every entry of new/ does (it moves to
	 * cur/); an entry of cur/ only when its name has no row. */
	f = xcalloc(enew.n + ecur.n + 1, sizeof(*f));
	for (size_t i = 0; i < enew.n; i++) {
		f[nf].entry = enew.v[i];
		f[nf].base = maildir_base(enew.v[i]);
		f[nf++].in_new = true;
		enew.v[i] = NULL;
	}
	/* cur/ holds the whole mailbox: compare it with all indexed names at once (sorted by
	 * the name index) rather than one query per file */
	if (ecur.n > 0 && names_load(s, id, &known) < 0) {
		db_set_error(s, error_r, "read messages");
		goto out;
	}
	for (size_t i = 0; i < ecur.n; i++) {
		char *base = maildir_base(ecur.v[i]);
		if (known.n > 0 &&
		    bsearch(&base, known.v, known.n, sizeof(*known.v), cmp_pstr) != NULL) {
			free(base);
			continue;
		}
		f[nf].entry = ecur.v[i];
		f[nf].base = base;
		f[nf++].in_new = false;
		ecur.v[i] = NULL;
	}
	bool remember_mtime = scan_cur && cur_mtime != 0 && cur_mtime != mb.cur_mtime &&
			      cur_mtime < now_ns() - 2000000000LL;
	if (nf == 0 && !remember_mtime) {
		r = 0;
		goto out;
	}
	qsort(f, nf, sizeof(*f), cmp_found);
	/* Without the lock: measure the files that have no row yet. */
	for (size_t i = 0; i < nf; i++) {
		uint32_t uid;
		int k = msg_by_name(s, id, f[i].base, &uid, NULL);
		if (k < 0) {
			db_set_error(s, error_r, "read messages");
			r = STORE_ERROR;
			goto out;
		}
		if (k == 0)
			probe_file(&f[i], newdir, curdir);
	}

	r = db_begin(s, false, error_r);
	if (r < 0)
		goto out;
	mbrow_free(&mb);
	r = idx_mb_by_id(s, id, &mb, error_r);	/* the counters, under the lock */
	if (r <= 0) {
		db_rollback(s);
		if (r == 0)
			store_set_error(error_r, "the mailbox no longer exists");
		r = r == 0 ? STORE_NOTFOUND : STORE_ERROR;
		goto out;
	}
	uint32_t uidnext = mb.uidnext;
	uint64_t modseq = mb.highestmodseq + 1;
	unsigned added = 0;
	plan = xcalloc(nf + 1, sizeof(*plan));
	for (size_t i = 0; i < nf; i++) {
		if (i > 0 && strcmp(f[i].base, f[i - 1].base) == 0)
			continue;	/* one name in both new/ and cur/: the first wins */
		uint32_t uid;
		char *file = NULL;
		int k = msg_by_name(s, id, f[i].base, &uid, &file);
		if (k < 0)
			goto dberr;
		if (k == 1) {
			/* Known (delivered or picked up before): only the move to cur/. */
			if (f[i].in_new) {
				char *target = cur_target(f[i].entry, f[i].base);
				if (strncmp(file, "new/", 4) == 0) {
					sqlite3_stmt *st = db_st(s, ST_MSG_SET_FILE);
					sqlite3_bind_int64(st, 1, id);
					sqlite3_bind_int64(st, 2, uid);
					sqlite3_bind_text(st, 3, target, -1, SQLITE_TRANSIENT);
					if (db_exec(st) < 0) {
						free(target);
						free(file);
						goto dberr;
					}
				}
				plan[nplan].from = xasprintf("new/%s", f[i].entry);
				plan[nplan++].to = target;
			}
			free(file);
			continue;
		}
		k = unlink_pending(s, id, f[i].base);
		if (k < 0)
			goto dberr;
		if (k == 1)
			continue;	/* an expunged message's file, about to go */

		/* A file nobody indexed: another program's, or a row lost in a crash. Measured
		 * above; one whose row vanished since (no pending unlink) waits for next time. */
		if (f[i].probe != PROBE_OK) {
			if (f[i].probe != PROBE_SKIP)
				remember_mtime = false;
			continue;
		}
		uint64_t size = f[i].size;
		if (uidnext == UINT32_MAX) {
			log_warnx("%s: mailbox %s: no UIDs left", s->root, mb.name);
			break;
		}
		char *target = f[i].in_new ? cur_target(f[i].entry, f[i].base)
					   : xasprintf("cur/%s", f[i].entry);
		if (idx_msg_insert(s, id, uidnext, f[i].base, target, size, f[i].mtime,
			       maildir_info_flags(f[i].entry), "", modseq) < 0) {
			free(target);
			goto dberr;
		}
		uidnext++;
		added++;
		if (f[i].in_new) {
			plan[nplan].from = xasprintf("new/%s", f[i].entry);
			plan[nplan++].to = target;
		} else {
			free(target);
		}
	}
	if (added > 0 && idx_mb_counters(s, id, uidnext, modseq) < 0)
		goto dberr;
	if (remember_mtime) {
		sqlite3_stmt *st = db_st(s, ST_MB_SET_MTIME);
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, cur_mtime);
		if (db_exec(st) < 0)
			goto dberr;
	}
	r = db_commit(s, error_r);
	if (r < 0)
		goto out;
	/* After the commit: the rows already name cur/, and readers try new/ too. A rename
	 * that fails with ENOENT was done by another process (or the message expunged). */
	for (size_t i = 0; i < nplan; i++) {
		char *from = store_path(s, mb.dir, plan[i].from);
		char *to = store_path(s, mb.dir, plan[i].to);
		if (rename(from, to) < 0 && errno != ENOENT)
			log_warn("%s: rename %s", s->root, from);
		free(from);
		free(to);
	}
	if (added > 0) {
		*changes_r |= STORE_CHANGE_NEW;
		store_notify(s, mb.name, STORE_CHANGE_NEW);
	}
	goto out;
dberr:
	db_set_error(s, error_r, "pick up new files");
	db_rollback(s);
	r = STORE_ERROR;
out:
	for (size_t i = 0; i < nf; i++) {
		free(f[i].entry);
		free(f[i].base);
	}
	free(f);
	for (size_t i = 0; i < nplan; i++) {
		free(plan[i].from);
		free(plan[i].to);
	}
	free(plan);
	entries_free(&enew);
	entries_free(&ecur);
	entries_free(&known);
	free(curdir);
	free(newdir);
	mbrow_free(&mb);
	return r;
}

/* ---- mailbox lookup with adoption ----------------------------------------------------- */

static bool dir_is_maildir(struct store *s, const char *dir)
{
	char *cur = store_path(s, dir, "cur");
	struct stat st;
	bool ok = lstat(cur, &st) == 0 && S_ISDIR(st.st_mode);
	free(cur);
	return ok;
}

int idx_mb_lookup(struct store *s, const char *norm, struct mbrow *r, char **error_r)
{
	int k = idx_mb_by_name(s, norm, r, error_r);
	if (k < 0)
		return -1;
	char *dir = store_name_dir(norm);
	if (dir == NULL) {
		if (k == 1)
			mbrow_free(r);
		return 0;
	}
	bool exists = dir[0] == '\0' || dir_is_maildir(s, dir);
	if ((k == 1) == exists) {
		free(dir);
		return k;
	}
	if (k == 1)
		mbrow_free(r);
	/* Row and directory disagree: decide under the write lock, where creates, deletes
	 * and renames happen, and look again there. */
	int rr = db_begin(s, false, error_r);
	if (rr < 0) {
		free(dir);
		return -1;
	}
	k = idx_mb_by_name(s, norm, r, error_r);
	if (k < 0)
		goto fail;
	exists = dir_is_maildir(s, k == 1 ? r->dir : dir);
	bool changed = (k == 1) != exists;
	if (k == 1 && !exists) {
		/* its directory was deleted (or a delete was cut short): the mailbox is gone */
		if (idx_mb_drop(s, r->id) < 0) {
			db_set_error(s, error_r, "drop mailbox");
			goto fail;
		}
		mbrow_free(r);
		k = 0;
	} else if (k == 0 && exists) {
		/* another program made the folder: adopt it; the files are picked up at open */
		int64_t id;
		if (idx_mb_insert(s, norm, dir, &id, error_r) < 0)
			goto fail;
		if (idx_mb_by_id(s, id, r, error_r) != 1)
			goto fail;
		k = 1;
	}
	if (db_commit(s, error_r) < 0) {
		if (k == 1)
			mbrow_free(r);
		free(dir);
		return -1;
	}
	/* a mailbox dropped or adopted is a change like any other: a session that shows the
	 * dropped one learns at its next sync (imap_view_sync asks the index only after a
	 * change was announced) */
	if (changed)
		store_notify(s, norm, STORE_CHANGE_MAILBOXES);
	free(dir);
	return k;
fail:
	if (k == 1)
		mbrow_free(r);
	db_rollback(s);
	free(dir);
	return -1;
}

int store_mb_find(struct store *s, const char *name, char **norm_r, struct mbrow *r,
		  char **error_r)
{
	char *norm;
	if (store_name_normalize(name, &norm) < 0) {
		store_set_error(error_r, "invalid mailbox name");
		return STORE_INVALID;
	}
	int k = idx_mb_lookup(s, norm, r, error_r);
	if (k <= 0) {
		if (k == 0)
			store_set_error(error_r, "mailbox %s does not exist", norm);
		free(norm);
		return k == 0 ? STORE_NOTFOUND : STORE_ERROR;
	}
	if (norm_r != NULL)
		*norm_r = norm;
	else
		free(norm);
	return 0;
}
