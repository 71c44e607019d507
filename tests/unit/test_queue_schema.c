/* test_queue_schema - queue.db's schema versions: databases written before versioning
 * (today's and older) are adopted with their rows, a newer one is refused, an up-to-date one
 * costs one version read, two processes creating one database at once both succeed */
#define _XOPEN_SOURCE 700
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "queue/queue.h"
#include "sqltrace.h"
#include "test.h"

#define QUEUE_VERSION 2

static char tmpdir[] = "/tmp/tern-test-queue-schema-XXXXXX";

/* The SQL that tern ran on every open of queue.db before schema versions (up to commit
 * 403a084), copied here so the test does not change when queue.c does. */
static const char legacy_schema[] =
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
static const char *const legacy_columns[] = {
	"ALTER TABLE messages ADD COLUMN ret TEXT",
	"ALTER TABLE messages ADD COLUMN envid TEXT",
	"ALTER TABLE recipients ADD COLUMN notify TEXT",
	"ALTER TABLE recipients ADD COLUMN orcpt TEXT",
	"ALTER TABLE recipients ADD COLUMN delay_warned INTEGER NOT NULL DEFAULT 0",
};

/* new_spool - an empty spool directory for one test */
static void new_spool(char *spool, size_t size)
{
	static int seq;
	snprintf(spool, size, "%s/spool%d", tmpdir, ++seq);
	CHECK(mkdir(spool, 0700) == 0);
}

static sqlite3 *raw_open(const char *spool)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/queue.db", spool);
	sqlite3 *db = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	return db;
}

static int int_query(sqlite3 *db, const char *sql)
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

/* db_version - the user_version of spool/queue.db, read with a connection of our own */
static int db_version(const char *spool)
{
	sqlite3 *db = raw_open(spool);
	int v = int_query(db, "PRAGMA user_version");
	sqlite3_close(db);
	return v;
}

static int db_int(const char *spool, const char *sql)
{
	sqlite3 *db = raw_open(spool);
	int v = int_query(db, sql);
	sqlite3_close(db);
	return v;
}

/* db_is_wal - the database header says WAL (bytes 18 and 19 are 2) */
static int db_is_wal(const char *spool)
{
	char path[256];
	unsigned char hdr[20];
	snprintf(path, sizeof(path), "%s/queue.db", spool);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return 0;
	size_t n = fread(hdr, 1, sizeof(hdr), f);
	fclose(f);
	return n == sizeof(hdr) && hdr[18] == 2 && hdr[19] == 2;
}

/* write_legacy - a queue.db as tern wrote it before versioning: with_columns false makes
 * it as the first queue (before DSN and delay warnings), true as the last one. One message
 * with two recipients, one due and one deferred to the future. */
static void write_legacy(const char *spool, int with_columns)
{
	sqlite3 *db = raw_open(spool);
	CHECK(sqlite3_exec(db, legacy_schema, NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
			   NULL) == SQLITE_OK);
	if (with_columns) {
		for (size_t i = 0; i < sizeof(legacy_columns) / sizeof(legacy_columns[0]); i++)
			(void)sqlite3_exec(db, legacy_columns[i], NULL, NULL, NULL);
		CHECK(sqlite3_exec(db,
				   "INSERT INTO messages(qid, sender, size, body_offset, arrived,"
				   " ret, envid) VALUES('Q1', 'from@example.org', 1234, 40, 1000,"
				   " 'HDRS', 'env-1');"
				   "INSERT INTO recipients(qid, address, next_try, notify, orcpt)"
				   " VALUES('Q1', 'a@remote.test', 0, 'SUCCESS,FAILURE',"
				   " 'rfc822;a@remote.test');"
				   "INSERT INTO recipients(qid, address, state, attempts, next_try,"
				   " last_error, delay_warned) VALUES('Q1', 'b@remote.test', 'deferred',"
				   " 3, 4000000000, '451 try later', 1);",
				   NULL, NULL, NULL) == SQLITE_OK);
	} else {
		CHECK(sqlite3_exec(db,
				   "INSERT INTO messages(qid, sender, size, body_offset, arrived)"
				   " VALUES('Q1', 'from@example.org', 1234, 40, 1000);"
				   "INSERT INTO recipients(qid, address, next_try)"
				   " VALUES('Q1', 'a@remote.test', 0);"
				   "INSERT INTO recipients(qid, address, state, attempts, next_try,"
				   " last_error) VALUES('Q1', 'b@remote.test', 'deferred', 3, 4000000000,"
				   " '451 try later');",
				   NULL, NULL, NULL) == SQLITE_OK);
	}
	CHECK(int_query(db, "PRAGMA user_version") == 0);
	sqlite3_close(db);
}

static void list_cb(void *ctx, const struct queue_msg_info *m)
{
	buf *b = ctx;
	buf_printf(b, "%s %s %llu %lld:", m->qid, m->sender, (unsigned long long)m->size,
		   (long long)m->arrived);
	for (size_t i = 0; i < m->n_rcpts; i++)
		buf_printf(b, " %s/%s/%d/%lld/%s", m->rcpts[i].address, m->rcpts[i].state,
			   m->rcpts[i].attempts, (long long)m->rcpts[i].next_try,
			   m->rcpts[i].last_error ? m->rcpts[i].last_error : "-");
	buf_printf(b, ";");
}

static void due_cb(void *ctx, const struct queue_due *d)
{
	buf *b = ctx;
	buf_printf(b, "%lld %s %s %s %s %d %llu+%llu %s %s %s %s %d;", (long long)d->rcpt_id,
		   d->qid, d->sender, d->address, d->state, d->attempts,
		   (unsigned long long)d->body_offset, (unsigned long long)d->size,
		   d->notify ? d->notify : "-", d->orcpt ? d->orcpt : "-", d->ret ? d->ret : "-",
		   d->envid ? d->envid : "-", d->delay_warned);
}

static const char *queue_text(struct queue *q, int due, int64_t now)
{
	static buf b;
	char *err = NULL;
	buf_free(&b);
	buf_init(&b, 0);
	int r = due ? queue_due_list(q, now, 100, due_cb, &b, &err)
		    : queue_list(q, list_cb, &b, &err);
	CHECK(r == 0);
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		free(err);
	}
	return buf_cstr(&b);
}

static struct queue *open_queue(const char *spool)
{
	struct queue *q = NULL;
	char *err = NULL;
	if (queue_open(spool, &q, &err) < 0) {
		fprintf(stderr, "queue_open: %s\n", err);
		free(err);
	}
	return q;
}

/* check_schema - the version-2 schema: every column, recipients_next_try, no recipients_due */
static void check_schema(const char *spool)
{
	CHECK(db_version(spool) == QUEUE_VERSION);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM pragma_table_info('messages')") == 7);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM pragma_table_info('recipients')") == 10);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'"
			    " AND name = 'recipients_next_try'") == 1);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'recipients_due'") ==
	      0);
	CHECK(db_is_wal(spool));
}

/* enqueue_one - the code writes a new message with DSN fields on the adopted database */
static void enqueue_one(struct queue *q, const char *spool)
{
	char src[256], *err = NULL;
	snprintf(src, sizeof(src), "%s/incoming", spool);
	FILE *f = fopen(src, "w");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fputs("Return-Path: <s@example.org>\r\n\r\nhi\r\n", f);
	fclose(f);
	const char *rcpts[] = { "c@remote.test" };
	const char *notify[] = { "DELAY" };
	const char *orcpt[] = { "rfc822;c@remote.test" };
	struct queue_dsn dsn = { "FULL", "env-2", notify, orcpt };
	CHECK(queue_enqueue(q, "Q2", src, 30, 40, "s@example.org", rcpts, 1, &dsn, &err) == 0);
	if (err != NULL) {
		fprintf(stderr, "%s\n", err);
		free(err);
	}
	unlink(src);
}

/* test_legacy_current - the last pre-versioning queue.db: rows intact, version 2, the runner's
 * calls work on it */
static void test_legacy_current(void)
{
	char spool[128], *err = NULL;
	new_spool(spool, sizeof(spool));
	write_legacy(spool, 1);
	struct queue *q = open_queue(spool);
	CHECK(q != NULL);
	if (q == NULL)
		return;
	check_schema(spool);
	CHECK_STREQ(queue_text(q, 0, 0),
		    "Q1 from@example.org 1234 1000: a@remote.test/queued/0/0/-"
		    " b@remote.test/deferred/3/4000000000/451 try later;");
	/* claim: only the due recipient, with its DSN requests */
	CHECK_STREQ(queue_text(q, 1, 2000000000),
		    "1 Q1 from@example.org a@remote.test queued 0 40+1234 SUCCESS,FAILURE"
		    " rfc822;a@remote.test HDRS env-1 0;");
	CHECK(queue_next_due(q) == 0);
	CHECK(queue_rcpt_defer(q, 1, 3000000000, "421 busy", &err) == 0);
	CHECK(queue_next_due(q) == 3000000000);
	CHECK_STREQ(queue_text(q, 1, 2000000000), "");
	CHECK_STREQ(queue_text(q, 1, 4000000000),
		    "1 Q1 from@example.org a@remote.test deferred 1 40+1234 SUCCESS,FAILURE"
		    " rfc822;a@remote.test HDRS env-1 0;"
		    "2 Q1 from@example.org b@remote.test deferred 3 40+1234 - - HDRS env-1 1;");
	enqueue_one(q, spool);
	CHECK(queue_rcpt_remove(q, 1, &err) == 0);
	CHECK(queue_rcpt_remove(q, 2, &err) == 0);
	CHECK(queue_msg_finish(q, "Q1", &err) == 0);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM messages WHERE qid = 'Q1'") == 0);
	CHECK(queue_flush(q, NULL, &err) == 1);
	CHECK_STREQ(queue_text(q, 1, 0),
		    "3 Q2 s@example.org c@remote.test queued 0 30+40 DELAY rfc822;c@remote.test"
		    " FULL env-2 0;");
	queue_close(&q);
	CHECK(db_version(spool) == QUEUE_VERSION);
}

/* test_legacy_first - a queue.db from before the DSN columns: they are added, rows kept */
static void test_legacy_first(void)
{
	char spool[128], *err = NULL;
	new_spool(spool, sizeof(spool));
	write_legacy(spool, 0);
	struct queue *q = open_queue(spool);
	CHECK(q != NULL);
	if (q == NULL)
		return;
	check_schema(spool);
	CHECK_STREQ(queue_text(q, 0, 0),
		    "Q1 from@example.org 1234 1000: a@remote.test/queued/0/0/-"
		    " b@remote.test/deferred/3/4000000000/451 try later;");
	CHECK_STREQ(queue_text(q, 1, 4000000000),
		    "1 Q1 from@example.org a@remote.test queued 0 40+1234 - - - - 0;"
		    "2 Q1 from@example.org b@remote.test deferred 3 40+1234 - - - - 0;");
	CHECK(queue_rcpt_delay_warned(q, 2, &err) == 0);
	enqueue_one(q, spool);
	CHECK_STREQ(queue_text(q, 1, 4000000000),
		    "1 Q1 from@example.org a@remote.test queued 0 40+1234 - - - - 0;"
		    "2 Q1 from@example.org b@remote.test deferred 3 40+1234 - - - - 1;"
		    "3 Q2 s@example.org c@remote.test queued 0 30+40 DELAY rfc822;c@remote.test"
		    " FULL env-2 0;");
	queue_close(&q);
}

/* test_up_to_date - opening a current database reads the version once and changes nothing */
static void test_up_to_date(void)
{
	char spool[128];
	new_spool(spool, sizeof(spool));
	struct queue *q = open_queue(spool);
	CHECK(q != NULL);
	queue_close(&q);
	check_schema(spool);
	sqltrace_reset();
	q = open_queue(spool);
	CHECK(q != NULL);
	queue_close(&q);
	CHECK(sqltrace_count("PRAGMA user_version") == 1);
	CHECK(sqltrace_count("PRAGMA user_version=") == 0);
	CHECK(sqltrace_count("BEGIN") == 0);
	CHECK(sqltrace_count("CREATE") == 0);
	CHECK(sqltrace_count("ALTER") == 0);
	CHECK(sqltrace_count("DROP") == 0);
	CHECK(sqltrace_count("SELECT") == 0);
}

/* test_newer - a queue.db from a newer tern is refused and left as it is */
static void test_newer(void)
{
	char spool[128];
	new_spool(spool, sizeof(spool));
	write_legacy(spool, 1);
	sqlite3 *db = raw_open(spool);
	CHECK(sqlite3_exec(db, "PRAGMA user_version=3", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	struct queue *q = NULL;
	char *err = NULL;
	CHECK(queue_open(spool, &q, &err) == -1);
	CHECK(q == NULL);
	CHECK(err != NULL && strstr(err, "queue.db") != NULL && strstr(err, "newer") != NULL &&
	      strstr(err, "3") != NULL);
	free(err);
	queue_close(&q);
	CHECK(db_version(spool) == 3);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'recipients_due'") ==
	      1);
	CHECK(db_int(spool, "SELECT COUNT(*) FROM recipients") == 2);
}

/* test_concurrent_create - two processes open one new queue.db at the same moment: both
 * succeed and the schema is written once */
static void test_concurrent_create(void)
{
	char spool[128];
	new_spool(spool, sizeof(spool));
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
			struct queue *q = open_queue(spool);
			/* one byte each: migrations written, CREATE TABLE statements run */
			char out[2] = { (char)sqltrace_count("PRAGMA user_version="),
					(char)sqltrace_count("CREATE TABLE") };
			(void)write(report[1], out, 2);
			int ok = q != NULL;
			queue_close(&q);
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
	CHECK(creates == 2);	/* messages and recipients, by one of the two */
	check_schema(spool);
}

static void test_setup(void)
{
	CHECK(mkdtemp(tmpdir) != NULL);
	sqltrace_install();
}

static void test_teardown(void)
{
	CHECK(test_rmtree(tmpdir) == 0);
	CHECK(access(tmpdir, F_OK) != 0);
}

TEST_MAIN(TEST(test_setup), TEST(test_legacy_current), TEST(test_legacy_first),
	  TEST(test_up_to_date), TEST(test_newer), TEST(test_concurrent_create),
	  TEST(test_teardown))
