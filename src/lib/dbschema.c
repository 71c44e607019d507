/* dbschema - numbered schema migrations (see dbschema.h) */
#include "lib/dbschema.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lib/xmalloc.h"

int dbschema_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int version = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return version;
}

int dbschema_wal(sqlite3 *db, int timeout_ms)
{
	const struct timespec pause = { 0, 10 * 1000 * 1000 };
	int rc;
	for (int waited = 0;; waited += 10) {
		rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
		if (rc != SQLITE_BUSY || waited >= timeout_ms)
			break;
		nanosleep(&pause, NULL);
	}
	return rc == SQLITE_OK ? 0 : -1;
}

static int fail(sqlite3 *db, const char *what, const char *step, char **error_r)
{
	if (error_r != NULL)
		*error_r = xasprintf("%s: schema %s: %s", what, step, sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* migrate - the one migration loop: step i is sql[i] when sql is set, else steps[i]. The
 * version is read again inside the write transaction: another process may have migrated
 * between the first look and the lock, and then there is nothing left to write. */
static int migrate(sqlite3 *db, const char *what, const char *const *sql,
		   const struct dbschema_step *steps, size_t n_steps, char **error_r)
{
	int v = dbschema_version(db);
	if (v == (int)n_steps)
		return 0;
	if (v < 0)
		return fail(db, what, "version", error_r);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return fail(db, what, "lock", error_r);
	v = dbschema_version(db);
	if (v < 0)
		return fail(db, what, "version", error_r);
	if (v == (int)n_steps) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return 0;
	}
	if (v > (int)n_steps) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		if (error_r != NULL)
			*error_r = xasprintf("%s: schema version %d is newer than this tern knows"
					     " (%zu): refusing to use it", what, v, n_steps);
		return -1;
	}
	for (size_t i = (size_t)v; i < n_steps; i++) {
		const char *s = sql != NULL ? sql[i] : steps[i].sql;
		int (*fn)(sqlite3 *) = sql != NULL ? NULL : steps[i].fn;
		if ((s != NULL && sqlite3_exec(db, s, NULL, NULL, NULL) != SQLITE_OK) ||
		    (fn != NULL && fn(db) < 0)) {
			char label[32];
			snprintf(label, sizeof(label), "step %zu", i + 1);
			return fail(db, what, label, error_r);
		}
	}
	char set[48];
	snprintf(set, sizeof(set), "PRAGMA user_version=%zu", n_steps);
	if (sqlite3_exec(db, set, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return fail(db, what, "commit", error_r);
	return 0;
}

int dbschema_migrate(sqlite3 *db, const char *what, const char *const *steps, size_t n_steps,
		     char **error_r)
{
	return migrate(db, what, steps, NULL, n_steps, error_r);
}

int dbschema_migrate_steps(sqlite3 *db, const char *what, const struct dbschema_step *steps,
			   size_t n_steps, char **error_r)
{
	return migrate(db, what, NULL, steps, n_steps, error_r);
}

int dbschema_add_column(sqlite3 *db, const char *table, const char *column, const char *decl)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, column, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return 0;
	if (rc != SQLITE_DONE)
		return -1;
	char *alter = xasprintf("ALTER TABLE %s ADD COLUMN %s %s", table, column, decl);
	rc = sqlite3_exec(db, alter, NULL, NULL, NULL);
	free(alter);
	return rc == SQLITE_OK ? 0 : -1;
}

static long long mono_usec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int busy_fine(void *arg, int count)
{
	struct dbschema_busy *b = arg;
	long long now = mono_usec();
	if (count == 0)
		b->since = now;
	if (now - b->since >= (long long)b->timeout_ms * 1000)
		return 0;
	struct timespec step = { 0, DBSCHEMA_BUSY_STEP_US * 1000L };
	nanosleep(&step, NULL);
	return 1;
}

void dbschema_busy_fine(sqlite3 *db, struct dbschema_busy *b, unsigned timeout_ms)
{
	b->since = 0;
	b->timeout_ms = timeout_ms;
	sqlite3_busy_handler(db, busy_fine, b);
}
