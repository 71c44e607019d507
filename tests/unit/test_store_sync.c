/* test_store_sync - expunge records, the sync API (store_mailbox_changes), the schema
 * migration of index.db, and wake-ups across processes through the store_notifier: two and
 * three processes on one mailbox learn each other's deliveries, appends, flag changes and
 * expunges within 100 ms of the commit. Also measures that latency (p50/p99). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "mime/tree.h"
#include "store/notify.h"
#include "store/store.h"
#include "sqltrace.h"
#include "test.h"

#define ADDR "carol@example.test"
#define WAKE_BOUND_NS (100 * 1000000LL)	/* the promise: within 100 ms of the commit */

static char datadir[256];
static char root[512];
static int spool_seq;

static void setup(void)
{
	snprintf(datadir, sizeof(datadir), "/tmp/tern-test-sync-XXXXXX");
	if (mkdtemp(datadir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	char *p = store_maildir_path(datadir, ADDR);
	snprintf(root, sizeof(root), "%s", p);
	free(p);
	char spool[300];
	snprintf(spool, sizeof(spool), "%s/spool", datadir);
	mkdir(spool, 0700);
}

static void teardown(void)
{
	store_deliver_cache_close();
	struct store_settings set = { 0 };
	store_settings_set(&set);
	test_rmtree(datadir);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char msg1[] = "Subject: one\r\n\r\nbody one\r\n";

/* deliver_data - through a spool file, as SMTP does (store_deliver_file) */
static int deliver_data(const char *data, size_t len)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/spool/m%d.%d", datadir, (int)getpid(), ++spool_seq);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
		perror(path);
		exit(1);
	}
	close(fd);
	char *err = NULL;
	int r = store_deliver_file(datadir, ADDR, path, len, "host.example", &err);
	if (r < 0) {
		fprintf(stderr, "deliver: %s\n", err);
		free(err);
	}
	unlink(path);
	return r;
}

static int deliver(void)
{
	return deliver_data(msg1, strlen(msg1));
}

static struct store *open_store(void)
{
	struct store *s = NULL;
	char *err = NULL;
	if (store_open(datadir, ADDR, &s, &err) < 0) {
		fprintf(stderr, "store_open: %s\n", err);
		free(err);
	}
	return s;
}

static struct store_mailbox *open_mb(struct store *s, const char *name)
{
	struct store_mailbox *mb = NULL;
	char *err = NULL;
	if (store_mailbox_open(s, name, &mb, &err) < 0) {
		fprintf(stderr, "store_mailbox_open %s: %s\n", name, err);
		free(err);
	}
	return mb;
}

/* a session's view: what it last saw */
struct view {
	uint64_t modseq;
	uint32_t uidnext;
};

static void view_init(struct store_mailbox *mb, struct view *v)
{
	CHECK(store_mailbox_highestmodseq(mb, &v->modseq, NULL) == 0);
	CHECK(store_mailbox_uidnext(mb, &v->uidnext, NULL) == 0);
}

/* sync - store_mailbox_changes since v, then v moves on */
static int sync_view(struct store_mailbox *mb, struct view *v, struct store_changes *ch)
{
	char *err = NULL;
	int r = store_mailbox_changes(mb, v->modseq, v->uidnext, ch, &err);
	if (r < 0) {
		fprintf(stderr, "changes: %s\n", err);
		free(err);
		return r;
	}
	v->modseq = ch->highestmodseq;
	v->uidnext = ch->uidnext;
	return r;
}

static bool uids_are(const uint32_t *v, size_t n, const uint32_t *want, size_t n_want)
{
	if (n != n_want)
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] != want[i])
			return false;
	return true;
}

static bool msgs_are(const struct store_msg *m, size_t n, const uint32_t *want, size_t n_want)
{
	if (n != n_want)
		return false;
	for (size_t i = 0; i < n; i++)
		if (m[i].uid != want[i])
			return false;
	return true;
}

/* ---- single process: the sync API ------------------------------------------------------- */

static void test_changes_basic(void)
{
	setup();
	for (int i = 0; i < 4; i++)
		CHECK(deliver() == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct view v;
	view_init(mb, &v);
	CHECK(v.uidnext == 5);
	struct store_changes ch;

	/* nothing changed: 0, counters only */
	CHECK(sync_view(mb, &v, &ch) == 0);
	CHECK(ch.n_added == 0 && ch.n_changed == 0 && ch.n_expunged == 0 && !ch.too_old);
	CHECK(ch.uidnext == 5);
	store_changes_free(&ch);

	/* a delivery, a flag change, an expunge */
	CHECK(deliver() == 0);
	struct store_uid_range r2 = { 2, 2 };
	CHECK(store_flags_update(mb, &r2, 1, STORE_FLAGS_ADD, STORE_F_SEEN, "Work", 0, NULL, NULL,
				 NULL) == 0);
	uint32_t three = 3;
	CHECK(store_expunge(mb, &three, 1, NULL) == 0);
	uint64_t before = v.modseq;
	CHECK(sync_view(mb, &v, &ch) == 1);
	static const uint32_t want_added[] = { 5 }, want_changed[] = { 2 }, want_exp[] = { 3 };
	CHECK(msgs_are(ch.added, ch.n_added, want_added, 1));
	CHECK(msgs_are(ch.changed, ch.n_changed, want_changed, 1));
	CHECK(ch.n_changed == 1 && ch.changed[0].flags == STORE_F_SEEN &&
	      strcmp(ch.changed[0].keywords, "Work") == 0 && ch.changed[0].modseq > before);
	CHECK(ch.n_added == 1 && ch.added[0].keywords != NULL && ch.added[0].keywords[0] == '\0');
	CHECK(uids_are(ch.expunged, ch.n_expunged, want_exp, 1));
	CHECK(ch.uidnext == 6 && ch.highestmodseq == before + 3);	/* one MODSEQ per change */
	store_changes_free(&ch);
	CHECK(ch.added == NULL && ch.expunged == NULL);
	CHECK(sync_view(mb, &v, &ch) == 0);
	store_changes_free(&ch);

	/* changed, then expunged: reported as expunged only */
	struct store_uid_range r4 = { 4, 4 };
	CHECK(store_flags_update(mb, &r4, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	CHECK(store_expunge_deleted(mb, NULL, 0, NULL, NULL, NULL) == 1);
	CHECK(sync_view(mb, &v, &ch) == 1);
	static const uint32_t want4[] = { 4 };
	CHECK(ch.n_added == 0 && ch.n_changed == 0);
	CHECK(uids_are(ch.expunged, ch.n_expunged, want4, 1));
	store_changes_free(&ch);

	/* arrived and expunged since: the session never knew it, nothing to report */
	CHECK(deliver() == 0);	/* UID 6 */
	uint32_t six = 6;
	CHECK(store_expunge(mb, &six, 1, NULL) == 0);
	CHECK(sync_view(mb, &v, &ch) == 1);
	CHECK(ch.n_added == 0 && ch.n_changed == 0 && ch.n_expunged == 0 && ch.uidnext == 7);
	store_changes_free(&ch);

	/* from an old view: everything since, in one answer */
	struct view old = { before, 5 };
	CHECK(sync_view(mb, &old, &ch) == 1);
	static const uint32_t want_exp_old[] = { 3, 4 };
	CHECK(uids_are(ch.expunged, ch.n_expunged, want_exp_old, 2));
	CHECK(msgs_are(ch.changed, ch.n_changed, want_changed, 1));
	CHECK(msgs_are(ch.added, ch.n_added, want_added, 1));
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* own changes: the callbacks carry what the session reports; the sync returns them too */
struct own_log {
	uint32_t uids[16];
	uint64_t modseqs[16];
	size_t n;
};

static void own_flags(void *ctx, const struct store_msg *m, enum store_update what)
{
	struct own_log *l = ctx;
	if (what == STORE_UPDATE_CHANGED && l->n < 16) {
		l->uids[l->n] = m->uid;
		l->modseqs[l->n++] = m->modseq;
	}
}

static void own_expunge(void *ctx, uint32_t uid, uint64_t modseq)
{
	struct own_log *l = ctx;
	if (l->n < 16) {
		l->uids[l->n] = uid;
		l->modseqs[l->n++] = modseq;
	}
}

static void test_changes_own(void)
{
	setup();
	for (int i = 0; i < 3; i++)
		CHECK(deliver() == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct view v;
	view_init(mb, &v);
	struct own_log fl = { 0 }, ex = { 0 };
	struct store_uid_range all = { 1, UINT32_MAX };
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, own_flags,
				 &fl, NULL) == 0);
	CHECK(fl.n == 3 && fl.modseqs[0] == v.modseq + 1 && fl.modseqs[2] == v.modseq + 1);
	struct store_uid_range r1 = { 1, 1 };
	CHECK(store_flags_update(mb, &r1, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	CHECK(store_expunge_deleted(mb, NULL, 0, own_expunge, &ex, NULL) == 1);
	CHECK(ex.n == 1 && ex.uids[0] == 1 && ex.modseqs[0] == v.modseq + 3);
	uint64_t hm;
	CHECK(store_mailbox_highestmodseq(mb, &hm, NULL) == 0 && hm == ex.modseqs[0]);
	struct store_changes ch;
	CHECK(sync_view(mb, &v, &ch) == 1);
	/* the session's own changes, with the MODSEQs its callbacks had: it can skip them */
	static const uint32_t want_changed[] = { 2, 3 }, want_exp[] = { 1 };
	CHECK(msgs_are(ch.changed, ch.n_changed, want_changed, 2));
	CHECK(ch.n_changed == 2 && ch.changed[0].modseq == fl.modseqs[1] &&
	      ch.changed[1].modseq == fl.modseqs[2]);
	CHECK(uids_are(ch.expunged, ch.n_expunged, want_exp, 1));
	CHECK(ch.highestmodseq == hm);
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* pruned records: a view from before the floor is told to resynchronise fully */
static void test_changes_too_old(void)
{
	setup();
	struct store_settings set = { .expunge_keep = 3 };
	store_settings_set(&set);
	for (int i = 0; i < 8; i++)
		CHECK(deliver() == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct view v0;
	view_init(mb, &v0);
	for (uint32_t u = 1; u <= 3; u++)
		CHECK(store_expunge(mb, &u, 1, NULL) == 0);	/* 3 records: all kept */
	struct view v1;
	view_init(mb, &v1);
	struct store_changes ch;
	struct view t = v0;
	CHECK(sync_view(mb, &t, &ch) == 1);
	static const uint32_t want123[] = { 1, 2, 3 };
	CHECK(!ch.too_old && uids_are(ch.expunged, ch.n_expunged, want123, 3));
	store_changes_free(&ch);

	uint32_t two[] = { 4, 5 };
	CHECK(store_expunge(mb, two, 2, NULL) == 0);	/* 5 records: the oldest MODSEQs go (1, 2) */
	t = v0;
	CHECK(sync_view(mb, &t, &ch) == 1);
	CHECK(ch.too_old);
	store_changes_free(&ch);
	/* a view after the floor is complete */
	t = v1;
	CHECK(sync_view(mb, &t, &ch) == 1);
	static const uint32_t want45[] = { 4, 5 };
	CHECK(!ch.too_old && uids_are(ch.expunged, ch.n_expunged, want45, 2));
	store_changes_free(&ch);
	/* so is a view taken after the prune */
	struct view v2;
	view_init(mb, &v2);
	uint32_t six = 6;
	CHECK(store_expunge(mb, &six, 1, NULL) == 0);
	t = v2;
	CHECK(sync_view(mb, &t, &ch) == 1);
	CHECK(!ch.too_old && ch.n_expunged == 1 && ch.expunged[0] == 6);
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* the source of a move keeps records; a deleted mailbox loses them */
static long long db_count(const char *sql)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/index.db", root);
	sqlite3 *db;
	long long v = -1;
	if (sqlite3_open(p, &db) == SQLITE_OK) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
			if (sqlite3_step(st) == SQLITE_ROW)
				v = sqlite3_column_int64(st, 0);
			sqlite3_finalize(st);
		}
	}
	sqlite3_close(db);
	return v;
}

static void test_changes_move_delete(void)
{
	setup();
	for (int i = 0; i < 3; i++)
		CHECK(deliver() == 0);
	struct store *s = open_store();
	CHECK(store_mailbox_create(s, "Archive", NULL) == 0);
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_mailbox *ar = open_mb(s, "Archive");
	struct view v, va;
	view_init(mb, &v);
	view_init(ar, &va);
	struct store_uid_range r = { 1, 2 };
	CHECK(store_copy(mb, &r, 1, "Archive", true, NULL, NULL) == 0);
	struct store_changes ch;
	CHECK(sync_view(mb, &v, &ch) == 1);
	static const uint32_t want12[] = { 1, 2 };
	CHECK(uids_are(ch.expunged, ch.n_expunged, want12, 2));
	store_changes_free(&ch);
	CHECK(sync_view(ar, &va, &ch) == 1);
	CHECK(msgs_are(ch.added, ch.n_added, want12, 2));
	store_changes_free(&ch);
	/* Archive's own expunge, then its deletion: its records go with it */
	uint32_t one = 1;
	CHECK(store_expunge(ar, &one, 1, NULL) == 0);
	CHECK(db_count("SELECT count(*) FROM expunged") == 3);
	CHECK(store_mailbox_delete(s, "Archive", NULL) == 0);
	CHECK(db_count("SELECT count(*) FROM expunged") == 2);
	/* a session still on the deleted mailbox is told it is gone */
	CHECK(store_mailbox_changes(ar, va.modseq, va.uidnext, &ch, NULL) == STORE_NOTFOUND);
	store_changes_free(&ch);
	store_mailbox_close(&ar);
	CHECK(store_mailbox_changes(mb, v.modseq, v.uidnext, &ch, NULL) == 0);
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- schema: an index.db written by version 1 ------------------------------------------- */

/* the exact schema of index.db version 1 */
static const char v1_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
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
	"CREATE TABLE IF NOT EXISTS unlinks("
	" id INTEGER PRIMARY KEY, mailbox_id INTEGER NOT NULL, name TEXT NOT NULL,"
	" file TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS unlinks_name ON unlinks(mailbox_id, name);"
	"CREATE TABLE IF NOT EXISTS subscriptions(name TEXT PRIMARY KEY);";

static void put_file(const char *rel, const char *data)
{
	char p[800];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, data, strlen(data)) == (ssize_t)strlen(data));
	close(fd);
}

static void test_schema_v1_migrates(void)
{
	setup();
	char p[800];
	snprintf(p, sizeof(p), "%s/mail", datadir);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/mail/example.test", datadir);
	mkdir(p, 0700);
	mkdir(root, 0700);
	static const char *const subs[] = { "tmp", "new", "cur" };
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, subs[i]);
		mkdir(p, 0700);
	}
	put_file("cur/100.a.host:2,S", msg1);
	put_file("cur/101.b.host:2,", msg1);
	put_file("cur/102.c.host:2,", msg1);
	snprintf(p, sizeof(p), "%s/index.db", root);
	sqlite3 *db;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	char *sql = xasprintf(
		"PRAGMA journal_mode=WAL; BEGIN; %s"
		"INSERT INTO meta VALUES('last_uidvalidity', 1234);"
		"INSERT INTO mailboxes(id, name, dir, uidvalidity, uidnext, highestmodseq, recent_uid,"
		" keywords) VALUES(1, 'INBOX', '', 1234, 8, 20, 8, 'Old');"
		"INSERT INTO messages VALUES(1, 5, '100.a.host', 'cur/100.a.host:2,S', %zu, 1000, 1,"
		" 'Old', 11, NULL);"
		"INSERT INTO messages VALUES(1, 6, '101.b.host', 'cur/101.b.host:2,', %zu, 1001, 0,"
		" '', 12, NULL);"
		"INSERT INTO messages VALUES(1, 7, '102.c.host', 'cur/102.c.host:2,', %zu, 1002, 4,"
		" '', 20, NULL);"
		"INSERT INTO subscriptions VALUES('INBOX');"
		"PRAGMA user_version=1; COMMIT;",
		v1_sql, strlen(msg1), strlen(msg1), strlen(msg1));
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	free(sql);
	sqlite3_close(db);

	struct store *s = open_store();
	CHECK(s != NULL);
	if (s == NULL) {
		teardown();
		return;
	}
	CHECK(db_count("PRAGMA user_version") == 2);
	struct store_mailbox *mb = open_mb(s, "INBOX");
	CHECK(store_mailbox_uidvalidity(mb) == 1234);
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 3);
	CHECK(n == 3 && m[0].uid == 5 && m[0].flags == STORE_F_SEEN &&
	      strcmp(m[0].keywords, "Old") == 0 && m[0].modseq == 11);
	CHECK(n == 3 && m[2].uid == 7 && m[2].flags == STORE_F_FLAGGED && m[2].modseq == 20);
	char **subs_v;
	size_t n_subs;
	CHECK(store_subscriptions(s, &subs_v, &n_subs, NULL) == 0 && n_subs == 1);
	store_names_free(&subs_v, n_subs);
	/* the sync API on the migrated index */
	struct view v = { 20, 8 };
	struct store_changes ch;
	CHECK(sync_view(mb, &v, &ch) == 0);
	store_changes_free(&ch);
	uint32_t six = 6;
	CHECK(store_expunge(mb, &six, 1, NULL) == 0);
	CHECK(deliver() == 0);
	struct view old = { 11, 8 };
	CHECK(sync_view(mb, &old, &ch) == 1);
	static const uint32_t want_added[] = { 8 }, want_changed[] = { 7 }, want_exp[] = { 6 };
	CHECK(msgs_are(ch.added, ch.n_added, want_added, 1));
	CHECK(msgs_are(ch.changed, ch.n_changed, want_changed, 1));
	CHECK(uids_are(ch.expunged, ch.n_expunged, want_exp, 1));
	CHECK(!ch.too_old && ch.highestmodseq == 22);
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&s);
	/* a second open finds version 2 and changes nothing */
	s = open_store();
	CHECK(s != NULL && db_count("PRAGMA user_version") == 2);
	store_close(&s);
	teardown();
}

/* ---- the notifier, in one process ---------------------------------------------------------- */

struct wake_log {
	int calls;
	char address[128];
};

static void on_wake(void *ctx, struct store_watch *w)
{
	struct wake_log *l = ctx;
	l->calls++;
	snprintf(l->address, sizeof(l->address), "%s", store_watch_address(w));
}

static bool readable_within(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void test_notifier_local(void)
{
	setup();
	CHECK(deliver() == 0);
	struct store_notifier *n = store_notifier_new(NULL);
	CHECK(n != NULL);
	struct store_watch *w1 = NULL, *w2 = NULL, *w3 = NULL;
	CHECK(store_notifier_watch(n, datadir, ADDR, &w1, NULL) == 0);
	CHECK(store_notifier_watch(n, datadir, ADDR, &w2, NULL) == 0 && w1 == w2);
	/* nothing pending */
	struct wake_log l = { 0 };
	CHECK(!readable_within(store_notifier_fd(n), 0));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 0 && l.calls == 0);
	/* two changes before the dispatch: one callback for the account */
	CHECK(deliver() == 0);
	struct store *s = open_store();
	CHECK(store_mailbox_create(s, "Box", NULL) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1);
	CHECK(l.calls == 1 && strcmp(l.address, ADDR) == 0);
	/* one reference gone: still watched */
	store_notifier_unwatch(n, &w2);
	CHECK(w2 == NULL);
	CHECK(store_append(s, "Box", msg1, strlen(msg1), 0, NULL, 0, NULL, NULL, NULL) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1 && l.calls == 2);
	/* the last reference gone: no more events */
	store_notifier_unwatch(n, &w1);
	CHECK(store_append(s, "Box", msg1, strlen(msg1), 0, NULL, 0, NULL, NULL, NULL) == 0);
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 0 && l.calls == 2);
	/* watch again: a fresh reference; the same account spelled in another case shares it */
	CHECK(store_notifier_watch(n, datadir, ADDR, &w3, NULL) == 0);
	struct store_watch *w4 = NULL;
	CHECK(store_notifier_watch(n, datadir, "CAROL@example.test", &w4, NULL) == 0 && w4 == w3);
	store_notifier_unwatch(n, &w4);
	/* the change file removed (an account deleted and made again): watched anew */
	store_close(&s);
	store_deliver_cache_close();	/* nobody holds the old file open */
	char cf[700];
	snprintf(cf, sizeof(cf), "%s/tern.changes", root);
	CHECK(unlink(cf) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	int before = l.calls;
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1 && l.calls == before + 1);
	s = open_store();
	CHECK(store_append(s, "Box", msg1, strlen(msg1), 0, NULL, 0, NULL, NULL, NULL) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1 && l.calls == before + 2);
	/* store_notifier_poll counts the events for the "nothing changed" shortcut and leaves
	 * their callbacks to dispatch: no wake-up is lost */
	unsigned long long e0 = store_watch_events(w3);
	CHECK(store_notifier_poll(n) == 0 && store_watch_events(w3) == e0);
	CHECK(store_mailbox_create(s, "Box2", NULL) == 0);
	CHECK(store_notifier_poll(n) == 0 && store_watch_events(w3) > e0);
	unsigned long long e1 = store_watch_events(w3);
	CHECK(store_notifier_poll(n) == 0 && store_watch_events(w3) == e1);	/* nothing new */
	CHECK(readable_within(store_notifier_fd(n), 0));	/* the callback is still due */
	before = l.calls;
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1 && l.calls == before + 1);
	CHECK(!readable_within(store_notifier_fd(n), 0));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 0 && l.calls == before + 1);
	CHECK(store_watch_events(w3) == e1);	/* read once, counted once */
	/* events read by dispatch count too */
	CHECK(store_mailbox_delete(s, "Box2", NULL) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1 && store_watch_events(w3) > e1);
	/* the change file replaced: the shortcut's count moves, and the new file is watched
	 * at once (by poll, before any dispatch) */
	e1 = store_watch_events(w3);
	store_close(&s);
	store_deliver_cache_close();
	CHECK(unlink(cf) == 0);
	CHECK(store_notifier_poll(n) == 0 && store_watch_events(w3) > e1);
	e1 = store_watch_events(w3);
	s = open_store();
	CHECK(store_append(s, "Box", msg1, strlen(msg1), 0, NULL, 0, NULL, NULL, NULL) == 0);
	CHECK(store_notifier_poll(n) == 0 && store_watch_events(w3) > e1);
	CHECK(store_notifier_dispatch(n, on_wake, &l) == 1);
	/* a watch whose file cannot be watched again (the account's directory removed) never
	 * looks quiet */
	struct store *sd = NULL;
	CHECK(store_open(datadir, "dave@example.test", &sd, NULL) == 0);
	struct store_watch *wd = NULL;
	CHECK(store_notifier_watch(n, datadir, "dave@example.test", &wd, NULL) == 0);
	store_close(&sd);
	store_deliver_cache_close();
	char *droot = store_maildir_path(datadir, "dave@example.test");
	CHECK(test_rmtree(droot) == 0);
	free(droot);
	unsigned long long g0 = store_watch_events(wd);
	CHECK(readable_within(store_notifier_fd(n), 100));
	CHECK(store_notifier_poll(n) == 0);
	unsigned long long g1 = store_watch_events(wd);
	CHECK(g1 > g0 && store_watch_events(wd) > g1);
	CHECK(store_notifier_dispatch(n, on_wake, &l) >= 1);
	store_notifier_unwatch(n, &wd);
	/* a watch of an account that was never opened fails cleanly */
	struct store_watch *wx = NULL;
	char *err = NULL;
	CHECK(store_notifier_watch(n, datadir, "nobody@example.test", &wx, &err) < 0 && err);
	free(err);
	store_close(&s);
	store_notifier_unwatch(n, &w3);
	store_notifier_free(&n);
	CHECK(n == NULL);
	teardown();
}

/* test_change_file_retry - a change file that could not be opened (out of descriptors)
 * is opened again at a later commit, so that changes are announced again */
static void test_change_file_retry(void)
{
	setup();
	CHECK(deliver() == 0);
	store_deliver_cache_close();	/* a fresh connection: its change file not yet open */
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_notifier *n = store_notifier_new(NULL);
	struct store_watch *w = NULL;
	CHECK(n != NULL && store_notifier_watch(n, datadir, ADDR, &w, NULL) == 0);
	struct store_uid_range one = { 1, 1 };
	/* no descriptor left: the commit succeeds, its announcement cannot be made */
	struct rlimit old;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	int probe = dup(0);
	CHECK(probe >= 0);
	close(probe);
	struct rlimit low = { (rlim_t)probe, old.rlim_max };
	CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	int r = store_flags_update(mb, &one, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				   NULL);
	CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
	CHECK(r == 0);
	CHECK(!readable_within(store_notifier_fd(n), 50));
	/* the next commit tries the file again */
	CHECK(store_flags_update(mb, &one, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL,
				 NULL, NULL) == 0);
	CHECK(readable_within(store_notifier_fd(n), 100));
	store_notifier_unwatch(n, &w);
	store_notifier_free(&n);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- two and three processes ----------------------------------------------------------------- */

enum action { ACT_DELIVER, ACT_APPEND, ACT_FLAGS, ACT_EXPUNGE };

struct step {
	int actor;
	enum action act;
	uint32_t uid;		/* flags: the message; expunge: the message */
	/* what every other process must see */
	uint32_t added, changed, expunged;	/* one UID or 0 */
};

struct shared {
	pthread_barrier_t bar;
	int64_t commit_ns[64];	/* per step: the actor's clock when the call returned */
	int64_t max_latency_ns[3];
	int failures[3];
};

/* the steps of the script: everyone starts with UIDs 1..3 */
static const struct step script[] = {
	{ 0, ACT_DELIVER, 0, 4, 0, 0 },
	{ 1, ACT_FLAGS, 2, 0, 2, 0 },
	{ 2, ACT_EXPUNGE, 1, 0, 0, 1 },
	{ 1, ACT_APPEND, 0, 5, 0, 0 },
	{ 0, ACT_EXPUNGE, 4, 0, 0, 4 },
	{ 2, ACT_DELIVER, 0, 6, 0, 0 },
	{ 0, ACT_FLAGS, 6, 0, 6, 0 },
	{ 2, ACT_FLAGS, 3, 0, 3, 0 },
	{ 1, ACT_EXPUNGE, 2, 0, 0, 2 },
};
#define N_STEPS (sizeof(script) / sizeof(script[0]))

static int act(struct store *s, struct store_mailbox *mb, const struct step *st)
{
	struct store_uid_range r = { st->uid, st->uid };
	switch (st->act) {
	case ACT_DELIVER:
		return deliver();
	case ACT_APPEND:
		return store_append(s, "INBOX", msg1, strlen(msg1), 0, NULL, 0, NULL, NULL, NULL);
	case ACT_FLAGS:
		return store_flags_update(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_ANSWERED, NULL, 0, NULL,
					  NULL, NULL);
	case ACT_EXPUNGE:
		return store_expunge(mb, &st->uid, 1, NULL);
	}
	return -1;
}

static void ignore_wake(void *ctx, struct store_watch *w)
{
	(void)w;
	(*(int *)ctx)++;
}

/* participant - one process of the script; returns the number of failed expectations */
static int participant(struct shared *sh, int me, int nproc)
{
	int bad = 0;
	struct store *s = open_store();
	struct store_mailbox *mb = s ? open_mb(s, "INBOX") : NULL;
	struct store_notifier *n = store_notifier_new(NULL);
	struct store_watch *w = NULL;
	if (mb == NULL || n == NULL || store_notifier_watch(n, datadir, ADDR, &w, NULL) < 0)
		return 100;
	/* watch first, then look: no change can fall between */
	struct view v;
	if (store_mailbox_highestmodseq(mb, &v.modseq, NULL) < 0 ||
	    store_mailbox_uidnext(mb, &v.uidnext, NULL) < 0)
		return 100;
	for (size_t i = 0; i < N_STEPS; i++) {
		const struct step *st = &script[i];
		pthread_barrier_wait(&sh->bar);
		if (st->actor % nproc == me) {	/* with two, the third's steps are the first's */
			if (act(s, mb, st) < 0)
				bad++;
			sh->commit_ns[i] = now_ns();
			pthread_barrier_wait(&sh->bar);
			/* its own change: seen by its own sync too, and by its own notifier */
			struct store_changes ch;
			if (sync_view(mb, &v, &ch) != 1)
				bad++;
			store_changes_free(&ch);
			int calls = 0;
			if (readable_within(store_notifier_fd(n), 1000))
				store_notifier_dispatch(n, ignore_wake, &calls);
			if (calls != 1)
				bad++;
		} else {
			/* the wake-up: within a generous absolute time; the bound is checked
			 * against the actor's commit below */
			bool woke = readable_within(store_notifier_fd(n), 2000);
			int64_t t_wake = now_ns();
			int calls = 0;
			if (!woke || store_notifier_dispatch(n, ignore_wake, &calls) != 1 || calls != 1) {
				fprintf(stderr, "proc %d step %zu: no wake-up\n", me, i);
				bad++;
			}
			struct store_changes ch;
			int k = sync_view(mb, &v, &ch);
			bool ok = k == 1 &&
				  (st->added ? ch.n_added == 1 && ch.added[0].uid == st->added
					     : ch.n_added == 0) &&
				  (st->changed ? ch.n_changed == 1 && ch.changed[0].uid == st->changed &&
							 (ch.changed[0].flags & STORE_F_ANSWERED)
					       : ch.n_changed == 0) &&
				  (st->expunged ? ch.n_expunged == 1 && ch.expunged[0] == st->expunged
						: ch.n_expunged == 0) &&
				  !ch.too_old;
			if (!ok) {
				fprintf(stderr,
					"proc %d step %zu: k=%d added=%zu changed=%zu expunged=%zu\n",
					me, i, k, ch.n_added, ch.n_changed, ch.n_expunged);
				bad++;
			}
			store_changes_free(&ch);
			pthread_barrier_wait(&sh->bar);	/* the actor's commit time is there */
			int64_t lat = t_wake - sh->commit_ns[i];
			if (lat > sh->max_latency_ns[me])
				sh->max_latency_ns[me] = lat;
		}
	}
	store_notifier_unwatch(n, &w);
	store_notifier_free(&n);
	store_mailbox_close(&mb);
	store_close(&s);
	store_deliver_cache_close();
	return bad;
}

static void run_processes(int nproc)
{
	setup();
	for (int i = 0; i < 3; i++)
		CHECK(deliver() == 0);
	store_deliver_cache_close();	/* nothing open crosses fork */
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	pthread_barrierattr_t ba;
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	pthread_barrier_init(&sh->bar, &ba, (unsigned)nproc);
	pid_t pids[3];
	for (int p = 0; p < nproc; p++) {
		pids[p] = fork();
		if (pids[p] == 0)
			_exit(participant(sh, p, nproc) > 0 ? 1 : 0);
	}
	for (int p = 0; p < nproc; p++) {
		int status = 0;
		CHECK(pids[p] > 0 && waitpid(pids[p], &status, 0) == pids[p]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (int p = 0; p < nproc; p++) {
		printf("  %d processes: proc %d worst wake-up %.2f ms after the commit\n", nproc, p,
		       (double)sh->max_latency_ns[p] / 1e6);
		CHECK(sh->max_latency_ns[p] <= WAKE_BOUND_NS);
	}
	pthread_barrier_destroy(&sh->bar);
	munmap(sh, sizeof(*sh));
	teardown();
}

static void test_two_processes_sync(void)
{
	run_processes(2);
}

static void test_three_processes_sync(void)
{
	run_processes(3);
}

/* ---- latency: 1,000 commits in A, each seen by B ------------------------------------------ */

#define LAT_ROUNDS 1000

struct lat_shared {
	int64_t commit_ns;	/* set by A's change hook: after the commit, before the bump */
	int64_t lat_ns[LAT_ROUNDS];
};

static struct lat_shared *lat_sh;

static void lat_hook(void *ctx, const char *mailbox, unsigned changes)
{
	(void)ctx;
	(void)mailbox;
	(void)changes;
	lat_sh->commit_ns = now_ns();
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_wakeup_latency(void)
{
	setup();
	CHECK(deliver() == 0);
	store_deliver_cache_close();
	lat_sh = mmap(NULL, sizeof(*lat_sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	CHECK(lat_sh != MAP_FAILED);
	int go[2], ack[2];
	CHECK(pipe(go) == 0 && pipe(ack) == 0);
	pid_t a = fork();
	if (a == 0) {
		/* A: one flag change per round, after B's ack of the previous one */
		close(go[0]);
		close(ack[1]);
		struct store *s = open_store();
		struct store_mailbox *mb = open_mb(s, "INBOX");
		store_set_change_hook(s, lat_hook, NULL);
		struct store_uid_range r = { 1, 1 };
		char c = 0;
		if (write(go[1], &c, 1) != 1)	/* ready */
			_exit(1);
		for (int i = 0; i < LAT_ROUNDS; i++) {
			if (read(ack[0], &c, 1) != 1)
				_exit(1);
			enum store_flag_op op = i % 2 ? STORE_FLAGS_REMOVE : STORE_FLAGS_ADD;
			if (store_flags_update(mb, &r, 1, op, STORE_F_SEEN, NULL, 0, NULL, NULL,
					       NULL) < 0)
				_exit(1);
		}
		store_mailbox_close(&mb);
		store_close(&s);
		_exit(0);
	}
	close(go[1]);
	close(ack[0]);
	/* B: the watcher; does what a worker would: poll, dispatch, sync */
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_notifier *n = store_notifier_new(NULL);
	struct store_watch *w = NULL;
	CHECK(n != NULL && store_notifier_watch(n, datadir, ADDR, &w, NULL) == 0);
	struct view v;
	view_init(mb, &v);
	char c;
	CHECK(read(go[0], &c, 1) == 1);
	int missed = 0, wrong = 0;
	for (int i = 0; i < LAT_ROUNDS; i++) {
		CHECK(write(ack[1], &c, 1) == 1);
		bool woke = readable_within(store_notifier_fd(n), 2000);
		int64_t t = now_ns();
		int calls = 0;
		if (!woke || store_notifier_dispatch(n, ignore_wake, &calls) != 1) {
			missed++;
			continue;
		}
		lat_sh->lat_ns[i] = t - lat_sh->commit_ns;
		struct store_changes ch;
		if (sync_view(mb, &v, &ch) != 1 || ch.n_changed != 1)
			wrong++;
		store_changes_free(&ch);
	}
	int status = 0;
	CHECK(waitpid(a, &status, 0) == a && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(missed == 0 && wrong == 0);
	qsort(lat_sh->lat_ns, LAT_ROUNDS, sizeof(int64_t), cmp_i64);
	int64_t p50 = lat_sh->lat_ns[LAT_ROUNDS / 2], p99 = lat_sh->lat_ns[LAT_ROUNDS * 99 / 100];
	int64_t max = lat_sh->lat_ns[LAT_ROUNDS - 1];
	printf("  wake-up latency over %d commits (commit in A to readable in B): p50 %.3f ms, "
	       "p99 %.3f ms, max %.3f ms\n",
	       LAT_ROUNDS, (double)p50 / 1e6, (double)p99 / 1e6, (double)max / 1e6);
	CHECK(p99 <= WAKE_BOUND_NS);
	store_notifier_unwatch(n, &w);
	store_notifier_free(&n);
	store_mailbox_close(&mb);
	store_close(&s);
	close(go[0]);
	close(ack[1]);
	munmap(lat_sh, sizeof(*lat_sh));
	teardown();
}

/* ---- concurrency: one connection per account per process, a short busy timeout ---------- */

/* index_db_fds - descriptors of this process open on an index.db */
static int index_db_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++) {
		char link[64], target[1024];
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t k = readlink(link, target, sizeof(target) - 1);
		if (k <= 0)
			continue;
		target[k] = '\0';
		size_t len = strlen(target);
		if (len >= 9 && strcmp(target + len - 9, "/index.db") == 0)
			n++;
	}
	return n;
}

static void test_handles_share_connection(void)
{
	setup();
	CHECK(deliver() == 0);
	store_deliver_cache_close();
	int base = index_db_fds();
	struct store *a = open_store();
	CHECK(index_db_fds() == base + 1);
	struct store *b = open_store();
	struct store *c = open_store();
	CHECK(index_db_fds() == base + 1);	/* shared */
	struct store_mailbox *ma = open_mb(a, "INBOX"), *mb = open_mb(b, "INBOX");
	struct view v;
	view_init(mb, &v);
	struct store_uid_range r = { 1, 1 };
	CHECK(store_flags_update(ma, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				 NULL) == 0);
	struct store_changes ch;
	CHECK(sync_view(mb, &v, &ch) == 1 && ch.n_changed == 1);
	store_changes_free(&ch);
	store_mailbox_close(&ma);
	store_close(&a);
	CHECK(index_db_fds() == base + 1);	/* b and c still hold it */
	CHECK(sync_view(mb, &v, &ch) == 0);
	store_changes_free(&ch);
	store_mailbox_close(&mb);
	store_close(&b);
	store_close(&c);
	CHECK(index_db_fds() == base);		/* the last one closed it */
	teardown();
}

/* store_sleep lets go of the account's connection once no awake handle uses it, and of the
 * snapshots; store_wake takes it back and the handle and its open mailbox carry on: changes
 * made while it slept are reported by the next sync as if it had been awake */
static void test_sleep_wake(void)
{
	setup();
	CHECK(deliver() == 0);
	CHECK(deliver() == 0);
	store_deliver_cache_close();
	int base = index_db_fds();
	struct store *a = open_store(), *b = open_store();
	struct store_mailbox *ma = open_mb(a, "INBOX"), *mb = open_mb(b, "INBOX");
	struct view v;
	view_init(mb, &v);
	CHECK(index_db_fds() == base + 1);
	store_sleep(b);
	store_sleep(b);			/* twice is fine */
	CHECK(index_db_fds() == base + 1);	/* a still uses it */
	/* changes while b sleeps: a flag through a, a delivery, an expunge */
	struct store_uid_range r = { 1, 1 };
	CHECK(store_flags_update(ma, &r, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	CHECK(deliver() == 0);
	store_deliver_cache_close();
	uint32_t two = 2;
	CHECK(store_expunge(ma, &two, 1, NULL) == 0);
	store_sleep(a);
	CHECK(index_db_fds() == base);		/* nobody awake: closed */
	char *err = NULL;
	CHECK(store_wake(b, &err) == 0 && err == NULL);
	CHECK(store_wake(b, &err) == 0);	/* awake already: nothing */
	CHECK(index_db_fds() == base + 1);
	struct store_changes ch;
	CHECK(sync_view(mb, &v, &ch) == 1);
	CHECK(ch.n_added == 1 && ch.added[0].uid == 3);
	CHECK(ch.n_changed == 1 && ch.changed[0].uid == 1 &&
	      (ch.changed[0].flags & STORE_F_FLAGGED));
	CHECK(ch.n_expunged == 1 && ch.expunged[0] == 2);
	store_changes_free(&ch);
	const struct store_msg *msgs;
	size_t n;
	CHECK(store_mailbox_messages(mb, &msgs, &n, &err) == 0 && n == 2);
	/* asleep with an open mailbox: closing both is fine without waking */
	store_sleep(b);
	CHECK(index_db_fds() == base);
	store_mailbox_close(&mb);
	store_close(&b);
	CHECK(store_wake(a, &err) == 0);
	CHECK(store_mailbox_messages(ma, &msgs, &n, &err) == 0 && n == 2 && msgs[1].uid == 3);
	store_mailbox_close(&ma);
	store_close(&a);
	CHECK(index_db_fds() == base);
	teardown();
}

/* a worker's short busy timeout: a writer blocked by another process's transaction gets
 * STORE_ERROR ("try again") after about the timeout, not 10 s later */
static void test_busy_timeout(void)
{
	setup();
	CHECK(deliver() == 0);
	store_deliver_cache_close();
	struct store_settings set = { .busy_timeout_ms = 100 };
	store_settings_set(&set);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	int ready[2];
	CHECK(pipe(ready) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		/* another process holds the write lock for a second */
		char p[700];
		snprintf(p, sizeof(p), "%s/index.db", root);
		sqlite3 *db;
		if (sqlite3_open(p, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			_exit(1);
		char c = 1;
		if (write(ready[1], &c, 1) != 1)
			_exit(1);
		usleep(1000 * 1000);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		_exit(0);
	}
	char c;
	CHECK(read(ready[0], &c, 1) == 1);
	struct store_uid_range r = { 1, 1 };
	char *err = NULL;
	int64_t t0 = now_ns();
	int k = store_flags_update(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				   &err);
	int64_t took = now_ns() - t0;
	CHECK(k == STORE_ERROR && err != NULL);
	free(err);
	CHECK(took >= 90 * 1000000LL && took < 800 * 1000000LL);
	/* reads are never blocked by a writer (WAL) */
	struct store_changes ch;
	struct view v = { 0, 0 };
	CHECK(sync_view(mb, &v, &ch) == 1 && ch.n_added == 1);
	store_changes_free(&ch);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* once the lock is free the same call succeeds */
	CHECK(store_flags_update(mb, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				 NULL) == 0);
	close(ready[0]);
	close(ready[1]);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- how long write transactions hold the lock (figures for docs/architecture.md) -------- */

static uint64_t tx_ms_since_reset(void)
{
	struct store_stats st;
	store_stats_get(&st);
	store_stats_reset();
	return st.write_us_max;
}

/* test_write_transactions - the store's largest writes on a mailbox of N messages
 * (TERN_STORE_BENCH_N, default 2000), each timed from BEGIN IMMEDIATE to COMMIT */
static void test_write_transactions(void)
{
	setup();
	const char *env = getenv("TERN_STORE_BENCH_N");
	int n = env ? atoi(env) : 2000;
	if (n < 10)
		n = 10;
	CHECK(deliver() == 0);	/* creates the Maildir */
	store_deliver_cache_close();
	for (int i = 0; i < n; i++) {
		char rel[128];
		snprintf(rel, sizeof(rel), "cur/%010d.M%dP1.other:2,", 1000000 + i, i);
		char p[800];
		snprintf(p, sizeof(p), "%s/%s", root, rel);
		int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, msg1, strlen(msg1)) == (ssize_t)strlen(msg1));
		close(fd);
	}
	struct store *s = open_store();
	CHECK(store_mailbox_create(s, "Folder", NULL) == 0);
	store_stats_reset();
	uint64_t us[8];
	struct store_mailbox *mb = open_mb(s, "INBOX");	/* picks up n files */
	us[0] = tx_ms_since_reset();
	struct store_uid_range all = { 1, UINT32_MAX };
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_SEEN, "kw", 0, NULL, NULL,
				 NULL) == 0);
	us[1] = tx_ms_since_reset();
	CHECK(store_copy(mb, &all, 1, "Folder", false, NULL, NULL) == 0);
	us[2] = tx_ms_since_reset();
	struct store_uid_range half = { 1, (uint32_t)n / 2 };
	CHECK(store_copy(mb, &half, 1, "Folder", true, NULL, NULL) == 0);
	us[3] = tx_ms_since_reset();
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	tx_ms_since_reset();
	CHECK(store_expunge_deleted(mb, NULL, 0, NULL, NULL, NULL) > 0);
	us[4] = tx_ms_since_reset();
	CHECK(deliver() == 0);
	us[5] = tx_ms_since_reset();
	struct store_uid_range one = { 1, 1 };
	struct store_mailbox *f = open_mb(s, "Folder");
	tx_ms_since_reset();
	CHECK(store_flags_update(f, &one, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	us[6] = tx_ms_since_reset();
	/* the sync on the big mailbox: nothing changed, then one flag change */
	struct view sv;
	view_init(f, &sv);
	struct store_changes ch;
	int64_t t0 = now_ns();
	for (int i = 0; i < 1000; i++) {
		CHECK(store_mailbox_changes(f, sv.modseq, sv.uidnext, &ch, NULL) == 0);
		store_changes_free(&ch);
	}
	int64_t t_none = (now_ns() - t0) / 1000;
	struct store_uid_range two = { 2, 2 };
	CHECK(store_flags_update(f, &two, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	t0 = now_ns();
	CHECK(store_mailbox_changes(f, sv.modseq, sv.uidnext, &ch, NULL) == 1 && ch.n_changed == 1);
	int64_t t_one = now_ns() - t0;
	store_changes_free(&ch);
	tx_ms_since_reset();
	printf("  sync on %d messages: nothing changed %.1f us, one change %.1f us\n", n,
	       (double)t_none / 1e3, (double)t_one / 1e3);
	printf("  write transactions, %d messages: pick-up %.1f ms, flags on all %.1f ms, "
	       "copy all %.1f ms, move half %.1f ms, expunge half %.1f ms, one delivery %.2f ms, "
	       "one flag change %.2f ms\n",
	       n, us[0] / 1e3, us[1] / 1e3, us[2] / 1e3, us[3] / 1e3, us[4] / 1e3, us[5] / 1e3,
	       us[6] / 1e3);
	store_mailbox_close(&f);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- message structure, parsed once ------------------------------------------------------ */

static const char multipart[] =
	"From: A <a@example.test>\r\nTo: b@example.test\r\nSubject: parts\r\n"
	"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
	"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
	"--XX\r\nContent-Type: application/octet-stream\r\n"
	"Content-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--XX--\r\n";

static char *describe(const struct mime_tree *t)
{
	buf b;
	buf_init(&b, 0);
	mime_tree_describe(t, &b);
	buf_putc(&b, '\0');
	return b.data;
}

static uint64_t commits_since_reset(void)
{
	struct store_stats st;
	store_stats_get(&st);
	store_stats_reset();
	return st.write_commits;
}

static void test_structures(void)
{
	sqltrace_install();	/* connections opened from now on */
	setup();
	CHECK(deliver() == 0);
	struct store *s = open_store();
	CHECK(store_append(s, "INBOX", multipart, strlen(multipart), 0, NULL, 0, NULL, NULL,
			   NULL) == 0);
	struct store_mailbox *mb = open_mb(s, "INBOX");
	/* delivery cached message 1's structure at once; append left message 2's */
	CHECK(db_count("SELECT count(*) FROM messages WHERE structure IS NOT NULL") == 1);
	CHECK(db_count("SELECT count(*) FROM messages WHERE uid=1 AND structure IS NOT NULL") == 1);
	uint32_t uids[] = { 2, 1, 99 };
	struct mime_tree **t = NULL;
	/* forget both: two parses must be written in one transaction */
	char p[700];
	snprintf(p, sizeof(p), "%s/index.db", root);
	sqlite3 *db;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, "UPDATE messages SET structure=NULL", NULL, NULL, NULL) ==
	      SQLITE_OK);
	sqlite3_close(db);
	commits_since_reset();
	CHECK(store_msg_structures(mb, uids, 3, &t, NULL) == 0);
	CHECK(commits_since_reset() == 1);	/* both parsed, written in one transaction */
	CHECK(t != NULL && t[0] != NULL && t[1] != NULL && t[2] == NULL);
	struct mime_tree *direct = mime_tree_parse(multipart, strlen(multipart), NULL);
	char *want = describe(direct), *got = t && t[0] ? describe(t[0]) : NULL;
	CHECK(direct->count == 3);
	CHECK_STREQ(got, want);
	free(got);
	CHECK(t && t[1] && t[1]->count == 1);
	store_structures_free(&t, 3);
	CHECK(t == NULL);
	CHECK(db_count("SELECT count(*) FROM messages WHERE structure IS NOT NULL") == 2);

	/* the second time from the cache: no write, the same tree, with the summary that
	 * ENVELOPE and SEARCH use instead of the file; every read in one read transaction */
	sqltrace_reset();
	CHECK(store_msg_structures(mb, uids, 2, &t, NULL) == 0);
	CHECK(commits_since_reset() == 0);
	CHECK(sqltrace_count("BEGIN") == 1 && sqltrace_count("COMMIT") == 1);
	CHECK(strncmp(sqltrace_log, "BEGIN\n", 6) == 0 && sqltrace_len > 7 &&
	      strcmp(sqltrace_log + sqltrace_len - 7, "COMMIT\n") == 0);
	CHECK(sqltrace_count("SELECT") == 2);	/* the mailbox, then one range scan (1..2) */
	got = t && t[0] ? describe(t[0]) : NULL;
	CHECK_STREQ(got, want);
	free(got);
	CHECK(t && t[0] && t[0]->summary != NULL &&
	      strcmp(t[0]->summary, "From: A <a@example.test>\r\nTo: b@example.test\r\n"
				    "Subject: parts\r\n") == 0);
	store_structures_free(&t, 2);

	/* a blob of the encoding before the summary (version 1) is parsed again and
	 * replaced: caches written by an older tern upgrade themselves at first use */
	void *old;
	size_t old_len;
	CHECK(store_msg_cache_get(mb, 2, &old, &old_len, NULL) == 1 && old_len > 12);
	if (old_len > 12) {
		CHECK(memcmp((char *)old + 8, "TMT\2", 4) == 0);
		((char *)old)[11] = 1;
		CHECK(store_msg_cache_set(mb, 2, old, old_len, NULL) == 0);
		CHECK(store_msg_structures(mb, uids, 1, &t, NULL) == 0);
		CHECK(commits_since_reset() == 1);
		CHECK(t && t[0] && t[0]->summary != NULL);
		store_structures_free(&t, 1);
		free(old);
		CHECK(store_msg_cache_get(mb, 2, &old, &old_len, NULL) == 1 && old_len > 12 &&
		      memcmp((char *)old + 8, "TMT\2", 4) == 0);
	}
	free(old);

	/* a blob it cannot decode is parsed again and replaced */
	CHECK(store_msg_cache_set(mb, 2, "junk", 4, NULL) == 0);
	CHECK(store_msg_structures(mb, uids, 1, &t, NULL) == 0);
	CHECK(commits_since_reset() == 1);
	got = t && t[0] ? describe(t[0]) : NULL;
	CHECK_STREQ(got, want);
	free(got);
	store_structures_free(&t, 1);
	void *blob;
	size_t len;
	CHECK(store_msg_cache_get(mb, 2, &blob, &len, NULL) == 1 && len > 8);
	free(blob);

	/* a message above 1 MiB is not parsed at delivery, but at its first use */
	buf big;
	buf_init(&big, 0);
	buf_puts(&big, "Subject: big\r\n\r\n");
	while (big.len <= 1024 * 1024)
		buf_puts(&big, "0123456789012345678901234567890123456789012345678901234567890123\r\n");
	CHECK(deliver_data(big.data, big.len) == 0);	/* UID 3 */
	CHECK(db_count("SELECT count(*) FROM messages WHERE uid=3 AND structure IS NULL") == 1);
	uint32_t three = 3;
	CHECK(store_msg_structures(mb, &three, 1, &t, NULL) == 0 && t[0] != NULL &&
	      t[0]->msg_size == big.len);
	store_structures_free(&t, 1);
	CHECK(db_count("SELECT count(*) FROM messages WHERE uid=3 AND structure IS NULL") == 0);
	buf_free(&big);

	/* any order, repeats, gaps and UIDs that are not there: each answered in its place;
	 * UIDs close together share a range scan, distant ones get their own */
	uint32_t mixed[] = { 3, 99, 1, 2, 1, 50 };
	sqltrace_reset();
	CHECK(store_msg_structures(mb, mixed, 6, &t, NULL) == 0);
	CHECK(sqltrace_count("SELECT") == 4);	/* the mailbox, 1..3, 50, 99 */
	CHECK(t && t[0] && t[0]->msg_size > 1024 * 1024 && !t[1] && t[2] && t[3] && t[4] && !t[5]);
	if (t && t[2] && t[3] && t[4]) {
		char *d2 = describe(t[2]), *d4 = describe(t[4]), *d3 = describe(t[3]);
		CHECK_STREQ(d2, d4);
		CHECK_STREQ(d3, want);	/* UID 2 is the multipart */
		free(d2);
		free(d3);
		free(d4);
	}
	store_structures_free(&t, 6);

	/* an expunged message: NULL, not an error */
	uint32_t two = 2;
	CHECK(store_expunge(mb, &two, 1, NULL) == 0);
	CHECK(store_msg_structures(mb, uids, 1, &t, NULL) == 0 && t[0] == NULL);
	store_structures_free(&t, 1);
	free(want);
	mime_tree_free(&direct);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* test_structure_cost_at_delivery - what parsing at delivery would add to store_deliver_file
 * (the figure behind not doing it there: see docs/architecture.md) */
static void test_structure_cost_at_delivery(void)
{
	setup();
	enum { ROUNDS = 200 };
	/* a 20 KB multipart message */
	buf m;
	buf_init(&m, 0);
	buf_puts(&m, multipart);
	for (int i = 0; i < 300; i++)
		buf_puts(&m, "a line of text that makes the body larger than a toy message\r\n");
	CHECK(deliver_data(m.data, m.len) == 0);
	/* the spool file's write and fsync are SMTP's, timed apart so they can be left out */
	int64_t t_total = 0, t_spool = 0;
	for (int i = 0; i < ROUNDS; i++) {
		int64_t t0 = now_ns();
		CHECK(deliver_data(m.data, m.len) == 0);
		t_total += now_ns() - t0;
	}
	for (int i = 0; i < ROUNDS; i++) {
		char path[400];
		snprintf(path, sizeof(path), "%s/spool/x%d", datadir, i);
		int64_t t0 = now_ns();
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, m.data, m.len) == (ssize_t)m.len && fsync(fd) == 0);
		close(fd);
		t_spool += now_ns() - t0;
		unlink(path);
	}
	int64_t t_deliver = t_total - t_spool;
	int64_t t0 = now_ns();
	for (int i = 0; i < ROUNDS; i++) {
		struct mime_tree *tree = mime_tree_parse(m.data, m.len, NULL);
		buf b;
		buf_init(&b, 0);
		CHECK(mime_tree_serialize(tree, &b) == 0);
		buf_free(&b);
		mime_tree_free(&tree);
	}
	int64_t t_parse = now_ns() - t0;
	printf("  store_deliver_file of a %zu-byte message %.3f ms (spool write+fsync %.3f ms "
	       "more), of which parsing and encoding its structure %.3f ms (%.1f%%)\n",
	       m.len, (double)t_deliver / ROUNDS / 1e6, (double)t_spool / ROUNDS / 1e6,
	       (double)t_parse / ROUNDS / 1e6, 100.0 * (double)t_parse / (double)t_deliver);
	buf_free(&m);
	teardown();
}

TEST_MAIN(TEST(test_changes_basic), TEST(test_changes_own), TEST(test_changes_too_old),
	  TEST(test_changes_move_delete), TEST(test_schema_v1_migrates), TEST(test_notifier_local),
	  TEST(test_change_file_retry),
	  TEST(test_two_processes_sync), TEST(test_three_processes_sync),
	  TEST(test_wakeup_latency), TEST(test_handles_share_connection), TEST(test_sleep_wake),
	  TEST(test_busy_timeout), TEST(test_write_transactions), TEST(test_structures),
	  TEST(test_structure_cost_at_delivery))
