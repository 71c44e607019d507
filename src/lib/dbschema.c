/* dbschema - numbered schema migrations (see dbschema.h) */
#include "lib/dbschema.h"

#include <stdio.h>
#include <stdlib.h>

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

static int fail(sqlite3 *db, const char *what, const char *step, char **error_r)
{
	if (error_r != NULL)
		*error_r = xasprintf("%s: schema %s: %s", what, step, sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

/* dbschema_migrate - the version is read again inside the write transaction: another
 * process may have migrated between the first look and the lock */
int dbschema_migrate(sqlite3 *db, const char *what, const char *const *steps, size_t n_steps,
		     char **error_r)
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
	if (v > (int)n_steps) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		if (error_r != NULL)
			*error_r = xasprintf("%s: schema version %d is newer than this program's (%zu)",
					     what, v, n_steps);
		return -1;
	}
	for (size_t i = (size_t)v; i < n_steps; i++) {
		if (sqlite3_exec(db, steps[i], NULL, NULL, NULL) != SQLITE_OK) {
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
