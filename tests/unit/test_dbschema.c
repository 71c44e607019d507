/* test_dbschema - numbered migrations: a fresh database, a partial one, a failing step, a
 * newer one, steps with C code, dbschema_add_column */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/dbschema.h"
#include "sqltrace.h"
#include "test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Two steps; step 2 records that it ran, so a test can count its runs. Neither uses IF NOT
 * EXISTS: running a step twice fails. */
static const char *const two_steps[] = {
	"CREATE TABLE t1(a TEXT);",
	"CREATE TABLE t2(b TEXT); CREATE TABLE ran(step INTEGER); INSERT INTO ran VALUES(2);",
};

static sqlite3 *mem_db(void)
{
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(":memory:", &db) == SQLITE_OK);
	return db;
}

static int count_rows(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int n = -1;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return n;
}

static int table_exists(sqlite3 *db, const char *name)
{
	char sql[128];
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '%s'", name);
	return count_rows(db, sql);
}

/* test_fresh - version 0 -> n, every step runs once, inside one transaction */
static void test_fresh(void)
{
	sqlite3 *db = mem_db();
	char *err = NULL;
	CHECK(dbschema_version(db) == 0);
	sqltrace_reset();
	CHECK(dbschema_migrate(db, "test.db", two_steps, N(two_steps), &err) == 0);
	CHECK(err == NULL);
	CHECK(dbschema_version(db) == 2);
	CHECK(table_exists(db, "t1") == 1 && table_exists(db, "t2") == 1);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM ran") == 1);
	CHECK(sqltrace_count("BEGIN IMMEDIATE") == 1);
	CHECK(sqltrace_count("COMMIT") == 1);
	CHECK(sqltrace_count("PRAGMA user_version=2") == 1);

	/* again: up to date costs one read of the version and nothing else */
	sqltrace_reset();
	CHECK(dbschema_migrate(db, "test.db", two_steps, N(two_steps), &err) == 0);
	CHECK(sqltrace_lines() == 1);
	CHECK(sqltrace_count("PRAGMA user_version") == 1);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM ran") == 1);
	sqlite3_close(db);
}

/* test_partial - a database at version 1 of 2: only step 2 runs */
static void test_partial(void)
{
	sqlite3 *db = mem_db();
	char *err = NULL;
	CHECK(dbschema_migrate(db, "test.db", two_steps, 1, &err) == 0);
	CHECK(dbschema_version(db) == 1);
	CHECK(table_exists(db, "t1") == 1 && table_exists(db, "t2") == 0);
	CHECK(sqlite3_exec(db, "INSERT INTO t1 VALUES('kept')", NULL, NULL, NULL) == SQLITE_OK);

	sqltrace_reset();
	CHECK(dbschema_migrate(db, "test.db", two_steps, N(two_steps), &err) == 0);
	if (err != NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
		err = NULL;
	}
	CHECK(dbschema_version(db) == 2);
	CHECK(sqltrace_count("CREATE TABLE t1") == 0);
	CHECK(sqltrace_count("CREATE TABLE t2") == 1);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM ran") == 1);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM t1 WHERE a = 'kept'") == 1);
	sqlite3_close(db);
}

/* test_failing_step - a step that fails undoes the whole call: version unchanged, none of
 * its tables (nor those of the steps before it in the same call) left behind */
static void test_failing_step(void)
{
	static const char *const bad[] = {
		"CREATE TABLE t1(a TEXT);",
		"CREATE TABLE t2(b TEXT); INSERT INTO t1 VALUES('x'); CREATE TABLE t3(c TEXT);"
		" INSERT INTO no_such_table VALUES(1);",
	};
	sqlite3 *db = mem_db();
	char *err = NULL;
	CHECK(dbschema_migrate(db, "test.db", bad, N(bad), &err) == -1);
	CHECK(err != NULL && strstr(err, "test.db") != NULL && strstr(err, "step 2") != NULL &&
	      strstr(err, "no_such_table") != NULL);
	free(err);
	err = NULL;
	CHECK(dbschema_version(db) == 0);
	CHECK(table_exists(db, "t1") == 0 && table_exists(db, "t2") == 0 &&
	      table_exists(db, "t3") == 0);
	CHECK(sqlite3_get_autocommit(db));	/* no transaction left open */

	/* from version 1: step 2 fails, version stays 1, t1 and its rows stay as they were */
	CHECK(dbschema_migrate(db, "test.db", bad, 1, &err) == 0);
	CHECK(dbschema_migrate(db, "test.db", bad, N(bad), &err) == -1);
	free(err);
	err = NULL;
	CHECK(dbschema_version(db) == 1);
	CHECK(table_exists(db, "t1") == 1 && table_exists(db, "t2") == 0);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM t1") == 0);
	CHECK(sqlite3_get_autocommit(db));

	/* error_r may be NULL */
	CHECK(dbschema_migrate(db, "test.db", bad, N(bad), NULL) == -1);
	sqlite3_close(db);
}

/* test_newer - a database from a program with more steps is refused and left alone */
static void test_newer(void)
{
	sqlite3 *db = mem_db();
	char *err = NULL;
	CHECK(dbschema_migrate(db, "test.db", two_steps, N(two_steps), &err) == 0);
	CHECK(sqlite3_exec(db, "PRAGMA user_version=3", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(dbschema_migrate(db, "test.db", two_steps, N(two_steps), &err) == -1);
	CHECK(err != NULL && strstr(err, "test.db") != NULL && strstr(err, "newer") != NULL);
	free(err);
	err = NULL;
	CHECK(dbschema_version(db) == 3);
	CHECK(sqlite3_get_autocommit(db));
	CHECK(dbschema_migrate(db, "test.db", two_steps, 0, NULL) == -1);	/* no steps at all */
	CHECK(dbschema_version(db) == 3);
	sqlite3_close(db);
}

static int fn_runs;

static int fn_step(sqlite3 *db)
{
	fn_runs++;
	if (dbschema_add_column(db, "t", "b", "TEXT") < 0 ||
	    dbschema_add_column(db, "t", "c", "INTEGER NOT NULL DEFAULT 7") < 0)
		return -1;
	return 0;
}

static int fn_fail(sqlite3 *db)
{
	/* leave an SQLite error on db, as a failing step does */
	return sqlite3_exec(db, "SELECT * FROM missing_table", NULL, NULL, NULL) == SQLITE_OK ? 0
											     : -1;
}

/* test_fn_steps - dbschema_migrate_steps: sql then fn; add_column adds only what is
 * missing; a failing fn rolls back */
static void test_fn_steps(void)
{
	static const struct dbschema_step steps[] = {
		{ "CREATE TABLE IF NOT EXISTS t(a TEXT);", fn_step },
		{ NULL, NULL },
		{ "CREATE INDEX t_c ON t(c);", NULL },
	};
	char *err = NULL;

	/* fresh */
	sqlite3 *db = mem_db();
	fn_runs = 0;
	CHECK(dbschema_migrate_steps(db, "test.db", steps, N(steps), &err) == 0);
	CHECK(fn_runs == 1);
	CHECK(dbschema_version(db) == 3);
	CHECK(sqlite3_exec(db, "INSERT INTO t(a, b) VALUES('x', 'y')", NULL, NULL, NULL) ==
	      SQLITE_OK);
	CHECK(count_rows(db, "SELECT c FROM t") == 7);
	CHECK(dbschema_migrate_steps(db, "test.db", steps, N(steps), &err) == 0);
	CHECK(fn_runs == 1);
	sqlite3_close(db);

	/* adopted: t exists with a and c (added by some older program); b is added, c kept */
	db = mem_db();
	CHECK(sqlite3_exec(db,
			   "CREATE TABLE t(a TEXT); ALTER TABLE t ADD COLUMN c INTEGER NOT NULL"
			   " DEFAULT 7; INSERT INTO t(a, c) VALUES('old', 9);",
			   NULL, NULL, NULL) == SQLITE_OK);
	fn_runs = 0;
	CHECK(dbschema_migrate_steps(db, "test.db", steps, N(steps), &err) == 0);
	CHECK(fn_runs == 1);
	CHECK(count_rows(db, "SELECT c FROM t WHERE a = 'old' AND b IS NULL") == 9);
	CHECK(count_rows(db, "SELECT COUNT(*) FROM pragma_table_info('t')") == 3);
	sqlite3_close(db);

	/* a failing fn undoes its step's SQL */
	static const struct dbschema_step failing[] = {
		{ "CREATE TABLE u(a TEXT);", fn_fail },
	};
	db = mem_db();
	CHECK(dbschema_migrate_steps(db, "test.db", failing, N(failing), &err) == -1);
	CHECK(err != NULL && strstr(err, "step 1") != NULL && strstr(err, "missing_table") != NULL);
	free(err);
	err = NULL;
	CHECK(dbschema_version(db) == 0);
	CHECK(table_exists(db, "u") == 0);
	sqlite3_close(db);
}

/* test_file_wal - the same on a WAL file database, which a second connection sees */
static void test_file_wal(void)
{
	char dir[] = "/tmp/tern-test-dbschema-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[128], wal[140], shm[140];
	snprintf(path, sizeof(path), "%s/t.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	snprintf(shm, sizeof(shm), "%s-shm", path);
	sqlite3 *a = NULL, *b = NULL;
	char *err = NULL;
	CHECK(sqlite3_open(path, &a) == SQLITE_OK);
	CHECK(sqlite3_exec(a, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(dbschema_migrate(a, "t.db", two_steps, N(two_steps), &err) == 0);
	CHECK(sqlite3_open(path, &b) == SQLITE_OK);
	CHECK(dbschema_version(b) == 2);
	CHECK(dbschema_migrate(b, "t.db", two_steps, N(two_steps), &err) == 0);
	CHECK(count_rows(b, "SELECT COUNT(*) FROM ran") == 1);
	sqlite3_close(b);
	sqlite3_close(a);
	unlink(wal);
	unlink(shm);
	unlink(path);
	CHECK(rmdir(dir) == 0);
}

static void test_setup(void)
{
	sqltrace_install();
}

TEST_MAIN(TEST(test_setup), TEST(test_fresh), TEST(test_partial), TEST(test_failing_step),
	  TEST(test_newer), TEST(test_fn_steps), TEST(test_file_wal))
