/* dbschema - numbered schema migrations for a SQLite database (PRAGMA user_version).
 *
 * A database's schema version is its user_version: 0 for a new, empty file. steps[i] is the
 * SQL that takes version i to version i+1, so a program whose table has n steps wants
 * version n. Step 0 (the first schema) uses CREATE ... IF NOT EXISTS, so that a database
 * made before versioning began adopts it as version 1. Migrations never rewrite a step
 * once released: a change to the schema is a new step appended at the end. */
#ifndef TERN_DBSCHEMA_H
#define TERN_DBSCHEMA_H
#include <stddef.h>
#include <sqlite3.h>

/* dbschema_version - the database's user_version, or -1 on error. */
int dbschema_version(sqlite3 *db);

/* dbschema_migrate - bring db to version n_steps: when it is already there, one read and
 * nothing else; else, inside one BEGIN IMMEDIATE transaction (so two processes opening one
 * new database at once do not both migrate), run steps[v] .. steps[n_steps-1] and set
 * user_version. A database newer than n_steps is an error (a newer tern wrote it). 0, or -1
 * with *error_r (caller frees; may be NULL) naming what failed. what names the database in
 * errors (e.g. "index.db"). A step that fails rolls back every step of this call. */
int dbschema_migrate(sqlite3 *db, const char *what, const char *const *steps, size_t n_steps,
		     char **error_r);

/* dbschema_wal - PRAGMA journal_mode=WAL, for a connection's first use. Two connections
 * that switch one new database at once can get SQLITE_BUSY without their busy handler being
 * called (each holds a shared lock and wants an exclusive one: SQLite avoids the deadlock
 * by failing one), so that is retried for up to timeout_ms. 0, or -1 with the SQLite error
 * on db. */
int dbschema_wal(sqlite3 *db, int timeout_ms);

/* A busy handler that retries often: SQLite's sqlite3_busy_timeout sleeps 1, 2, 5, 10 ... up
 * to 100 ms between tries, so a writer that misses the lock by a microsecond sleeps for
 * milliseconds while the lock is free again long before (queue.db's committers and runner,
 * two workers writing one mailbox's index). dbschema_busy_fine installs a handler that tries
 * every DBSCHEMA_BUSY_STEP_US for up to timeout_ms in all, then gives up (SQLITE_BUSY). b
 * holds the wait's start and must live as long as the connection. */
#define DBSCHEMA_BUSY_STEP_US 250
struct dbschema_busy {
	long long since;	/* when the current wait began (usec, monotonic) */
	unsigned timeout_ms;
};
void dbschema_busy_fine(sqlite3 *db, struct dbschema_busy *b, unsigned timeout_ms);

/* A step that SQL alone cannot write (SQLite has no ADD COLUMN IF NOT EXISTS): sql runs
 * first, then fn, both inside the migration's transaction; either may be NULL. fn returns 0,
 * or -1 with the SQLite error left on db for the message. */
struct dbschema_step {
	const char *sql;
	int (*fn)(sqlite3 *db);
};

/* dbschema_migrate_steps - dbschema_migrate for steps that may run C code. */
int dbschema_migrate_steps(sqlite3 *db, const char *what, const struct dbschema_step *steps,
			   size_t n_steps, char **error_r);

/* dbschema_add_column - ALTER TABLE table ADD COLUMN column decl unless table has that
 * column already: for a first step that adopts databases whose pre-versioning code added
 * columns one by one. table, column and decl are program constants (pasted into SQL).
 * 0, or -1 with the SQLite error on db. */
int dbschema_add_column(sqlite3 *db, const char *table, const char *column, const char *decl);

#endif
