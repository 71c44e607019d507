/* test_accounts_schema - tern.db's schema versions: a database written before versioning is
 * adopted with its users and aliases, a newer one is refused, an up-to-date one costs one
 * version read, two processes creating one database at once both succeed */
#include <crypt.h>
#include <dirent.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "sqltrace.h"
#include "test.h"

#define ACCOUNTS_VERSION 2

static char tmpdir[] = "/tmp/tern-test-accounts-schema-XXXXXX";
static char dbpath[128];

/* The SQL that tern ran on every open of tern.db before schema versions (up to commit
 * 403a084), copied here so the test does not change when accounts.c does. */
static const char legacy_schema[] =
	"CREATE TABLE IF NOT EXISTS users (address TEXT PRIMARY KEY, hash TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, targets TEXT NOT NULL);";

/* new_path - a database path not used before */
static void new_path(void)
{
	static int seq;
	snprintf(dbpath, sizeof(dbpath), "%s/tern%d.db", tmpdir, ++seq);
}

static int db_int(const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st;
	int n = -1;
	if (sqlite3_open(dbpath, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return n;
}

static struct accounts *open_accounts(void)
{
	struct accounts *a = NULL;
	char *err = NULL;
	if (accounts_open(dbpath, &a, &err) < 0) {
		fprintf(stderr, "accounts_open: %s\n", err);
		free(err);
	}
	return a;
}

static bool is_local(void *ctx, const char *domain)
{
	(void)ctx;
	return strcasecmp(domain, "example.org") == 0;
}

/* hash_of - a yescrypt hash of password, as accounts_user_add makes them */
static char *hash_of(const char *password)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	memset(&cd, 0, sizeof(cd));
	if (crypt_gensalt_rn("$y$", 0, NULL, 0, setting, (int)sizeof(setting)) == NULL)
		return NULL;
	const char *h = crypt_rn(password, setting, &cd, (int)sizeof(cd));
	return h != NULL && h[0] != '*' ? strdup(h) : NULL;
}

/* write_legacy - tern.db as tern wrote it before versioning, with a user and an alias */
static void write_legacy(void)
{
	sqlite3 *db = NULL;
	char *hash = hash_of("old secret");
	CHECK(hash != NULL);
	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, legacy_schema, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_stmt *st;
	CHECK(sqlite3_prepare_v2(db, "INSERT INTO users(address, hash) VALUES ('bob@example.org', ?1)",
				 -1, &st, NULL) == SQLITE_OK);
	sqlite3_bind_text(st, 1, hash ? hash : "x", -1, SQLITE_TRANSIENT);
	CHECK(sqlite3_step(st) == SQLITE_DONE);
	sqlite3_finalize(st);
	CHECK(sqlite3_exec(db,
			   "INSERT OR REPLACE INTO aliases(alias, targets) VALUES"
			   " ('team@example.org', 'bob@example.org ext@remote.test')",
			   NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	free(hash);
	CHECK(db_int("PRAGMA user_version") == 0);
}

/* test_legacy - rows intact, version 1, passwords verify, aliases resolve, writes work */
static void test_legacy(void)
{
	char *err = NULL;
	new_path();
	write_legacy();
	struct accounts *a = open_accounts();
	CHECK(a != NULL);
	if (a == NULL)
		return;
	CHECK(db_int("PRAGMA user_version") == ACCOUNTS_VERSION);
	CHECK(accounts_verify(a, "bob@example.org", "old secret") == 1);
	CHECK(accounts_verify(a, "Bob@Example.org", "wrong") == 0);
	CHECK(accounts_alias_exists(a, "team@example.org") == 1);
	char **t = NULL;
	size_t n = 0;
	CHECK(accounts_resolve(a, "team@example.org", is_local, NULL, &t, &n) == 1);
	CHECK(n == 2 && t != NULL && strcmp(t[0], "bob@example.org") == 0 &&
	      strcmp(t[1], "ext@remote.test") == 0);
	accounts_targets_free(&t);
	CHECK(accounts_user_add(a, "carol@example.org", "new secret", &err) == 0);
	CHECK(accounts_user_passwd(a, "bob@example.org", "changed", &err) == 0);
	CHECK(accounts_verify(a, "bob@example.org", "changed") == 1);
	/* step 2: senders, empty for the users that were there */
	char *senders = NULL;
	CHECK(accounts_user_senders(a, "bob@example.org", &senders) == 1);
	CHECK(senders != NULL && strcmp(senders, "") == 0);
	free(senders);
	accounts_close(&a);
	CHECK(db_int("SELECT COUNT(*) FROM users") == 2);
	CHECK(db_int("SELECT COUNT(*) FROM aliases") == 1);
	CHECK(db_int("PRAGMA user_version") == ACCOUNTS_VERSION);
}

/* test_version1 - a tern.db of version 1 (before senders) gets the column, rows intact */
static void test_version1(void)
{
	char *err = NULL;
	new_path();
	write_legacy();
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA user_version=1", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	struct accounts *a = open_accounts();
	CHECK(a != NULL);
	if (a == NULL)
		return;
	CHECK(db_int("PRAGMA user_version") == ACCOUNTS_VERSION);
	CHECK(accounts_verify(a, "bob@example.org", "old secret") == 1);
	const char *const list[] = { "Bob.Smith@Example.org", "@Lists.example.org",
				     "bob.smith@example.org" };
	CHECK(accounts_user_set_senders(a, "bob@example.org", list, 3, &err) == 0);
	char *senders = NULL;
	CHECK(accounts_user_senders(a, "BOB@example.org", &senders) == 1);
	CHECK(senders != NULL && strcmp(senders, "bob.smith@example.org @lists.example.org") == 0);
	free(senders);
	CHECK(accounts_user_set_senders(a, "nobody@example.org", list, 1, &err) == -1);
	CHECK(err != NULL && strstr(err, "no such user") != NULL);
	free(err);
	err = NULL;
	const char *const bad[] = { "@" };
	CHECK(accounts_user_set_senders(a, "bob@example.org", bad, 1, &err) == -1);
	free(err);
	accounts_close(&a);
}

/* test_up_to_date - opening a current database reads the version once and changes nothing */
static void test_up_to_date(void)
{
	new_path();
	struct accounts *a = open_accounts();
	CHECK(a != NULL);
	accounts_close(&a);
	CHECK(db_int("PRAGMA user_version") == ACCOUNTS_VERSION);
	sqltrace_reset();
	a = open_accounts();
	CHECK(a != NULL);
	accounts_close(&a);
	CHECK(sqltrace_count("PRAGMA user_version") == 1);
	CHECK(sqltrace_count("PRAGMA user_version=") == 0);
	CHECK(sqltrace_count("BEGIN") == 0);
	CHECK(sqltrace_count("CREATE") == 0);
	CHECK(sqltrace_count("SELECT") == 0);
}

/* test_newer - a tern.db from a newer tern is refused and left as it is */
static void test_newer(void)
{
	new_path();
	write_legacy();
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA user_version=3", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	struct accounts *a = NULL;
	char *err = NULL;
	CHECK(accounts_open(dbpath, &a, &err) == -1);
	CHECK(a == NULL);
	CHECK(err != NULL && strstr(err, dbpath) != NULL && strstr(err, "newer") != NULL);
	free(err);
	accounts_close(&a);
	CHECK(db_int("PRAGMA user_version") == 3);
	CHECK(db_int("SELECT COUNT(*) FROM users") == 1);
}

/* test_concurrent_create - two processes open one new tern.db at the same moment: both
 * succeed and the schema is written once */
static void test_concurrent_create(void)
{
	new_path();
	int go[2], report[2];
	CHECK(pipe(go) == 0 && pipe(report) == 0);
	pid_t pids[2];
	for (int i = 0; i < 2; i++) {
		pids[i] = fork();
		CHECK(pids[i] >= 0);
		if (pids[i] == 0) {
			close(go[1]);
			close(report[0]);
			char c;
			(void)read(go[0], &c, 1);	/* EOF when the parent lets both go */
			sqltrace_reset();
			struct accounts *a = open_accounts();
			char out[2] = { (char)sqltrace_count("PRAGMA user_version="),
					(char)sqltrace_count("CREATE TABLE") };
			(void)write(report[1], out, 2);
			int ok = a != NULL;
			accounts_close(&a);
			_exit(ok ? 0 : 1);
		}
	}
	close(go[0]);
	close(report[1]);
	close(go[1]);
	int sets = 0, creates = 0;
	char in[2];
	while (read(report[0], in, 2) == 2) {
		sets += in[0];
		creates += in[1];
	}
	close(report[0]);
	for (int i = 0; i < 2; i++) {
		int status = -1;
		CHECK(waitpid(pids[i], &status, 0) == pids[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK(sets == 1);
	CHECK(creates == 2);	/* users and aliases, by one of the two */
	CHECK(db_int("PRAGMA user_version") == ACCOUNTS_VERSION);
	CHECK(db_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") == 2);
}

static void test_setup(void)
{
	CHECK(mkdtemp(tmpdir) != NULL);
	sqltrace_install();
}

static void test_teardown(void)
{
	DIR *d = opendir(tmpdir);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			char p[512];
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
			    snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name) < (int)sizeof(p))
				unlink(p);
		}
		closedir(d);
	}
	CHECK(rmdir(tmpdir) == 0);
}

TEST_MAIN(TEST(test_setup), TEST(test_legacy), TEST(test_version1), TEST(test_up_to_date), TEST(test_newer),
	  TEST(test_concurrent_create), TEST(test_teardown))
