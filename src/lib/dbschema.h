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
 * errors (e.g. "index.db"). */
int dbschema_migrate(sqlite3 *db, const char *what, const char *const *steps, size_t n_steps,
		     char **error_r);

#endif
