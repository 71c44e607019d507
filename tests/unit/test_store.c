/* test_store - the mail store in a temporary data dir: delivery and indexing, pick-up of
 * foreign files, flags/keywords/MODSEQ, expunge, copy/move/append, counts, folders, the POP3
 * lock, change detection, index loss, and two processes writing flags at once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/xmalloc.h"
#include "store/backup.h"
#include "store/store.h"
#include "test.h"

#define ADDR "bob@example.test"

static char datadir[256];
static char root[512];		/* bob's Maildir */
static int spool_seq;

/* setup - a fresh data dir per test */
static void setup(void)
{
	snprintf(datadir, sizeof(datadir), "/tmp/tern-test-store-XXXXXX");
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
	test_rmtree(datadir);
}

static void write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0) {
		perror(path);
		exit(1);
	}
	close(fd);
}

/* deliver - deliver text through a spool file like spool_deliver does */
static int deliver(const char *text)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/spool/m%d", datadir, ++spool_seq);
	write_file(path, text, strlen(text));
	char *err = NULL;
	int r = store_deliver_file(datadir, ADDR, path, strlen(text), "host.example", &err);
	if (r < 0) {
		fprintf(stderr, "deliver: %s\n", err);
		free(err);
	}
	unlink(path);
	return r;
}

/* count_files - regular files in root/sub (or a folder's) */
static int count_files(const char *dir, const char *sub)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/%s", dir, sub);
	DIR *d = opendir(p);
	int n = 0;
	if (d == NULL)
		return -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
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

/* read_msg - the served bytes of uid (through the reader); caller frees */
static char *read_msg(struct store_mailbox *mb, uint32_t uid, size_t *len_r)
{
	struct store_reader *r;
	char *err = NULL;
	if (store_reader_open(mb, uid, &r, &err) < 0) {
		fprintf(stderr, "reader: %s\n", err);
		free(err);
		return NULL;
	}
	size_t cap = 64, len = 0;
	char *out = xmalloc(cap);
	for (;;) {
		if (len + 3 >= cap)
			out = xrealloc(out, cap *= 2);
		ssize_t k = store_reader_read(r, out + len, 3);	/* tiny reads: state kept */
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	CHECK(store_reader_size(r) == len);
	store_reader_close(&r);
	out[len] = '\0';
	*len_r = len;
	return out;
}

/* db_count - a number straight from index.db (to see what delivery wrote) */
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

static const char msg1[] = "Return-Path: <a@b>\r\nSubject: one\r\n\r\nbody one\r\n";
static const char msg2[] = "Subject: two\r\n\r\nbody two\r\n.\r\n";
static const char msg3[] = "Subject: three\r\n\r\nbody three\r\n";

/* ---- delivery and pick-up ------------------------------------------------------------- */

static void test_deliver_indexes(void)
{
	setup();
	CHECK(deliver(msg1) == 0);
	CHECK(deliver(msg2) == 0);
	CHECK(deliver(msg3) == 0);
	/* indexed at delivery, files untouched in new/ */
	CHECK(db_count("SELECT count(*) FROM messages") == 3);
	CHECK(db_count("SELECT max(uid) FROM messages") == 3);
	CHECK(db_count("SELECT size FROM messages WHERE uid=2") == (long long)strlen(msg2));
	CHECK(count_files(root, "new") == 3);

	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "inbox");
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0);
	CHECK(n == 3);
	for (size_t i = 0; i < n && n == 3; i++) {
		CHECK(m[i].uid == i + 1);
		CHECK(m[i].flags == 0);
		CHECK(m[i].internal_date > 0);
		CHECK(m[i].modseq > 0);
		CHECK_STREQ(m[i].keywords, "");
	}
	if (n == 3) {
		CHECK(m[0].size == strlen(msg1));
		CHECK(m[1].size == strlen(msg2));
	}
	CHECK_STREQ(store_mailbox_name(mb), "INBOX");
	CHECK(store_mailbox_uidvalidity(mb) > 0);
	/* opening moved the files to cur/, content unchanged */
	CHECK(count_files(root, "new") == 0);
	CHECK(count_files(root, "cur") == 3);
	int fd;
	bool crlf = false;
	CHECK(store_msg_open(mb, 2, &fd, &crlf, NULL) == 0);
	char buf[256];
	ssize_t k = read(fd, buf, sizeof(buf));
	CHECK(k == (ssize_t)strlen(msg2) && memcmp(buf, msg2, strlen(msg2)) == 0);
	CHECK(crlf);
	close(fd);
	char *err = NULL;
	CHECK(store_msg_open(mb, 9, &fd, &crlf, &err) == STORE_NOTFOUND);
	free(err);
	uint32_t next;
	CHECK(store_mailbox_uidnext(mb, &next, NULL) == 0 && next == 4);

	/* a delivery while the mailbox is open: indexed at once, next UID */
	CHECK(deliver(msg1) == 0);
	CHECK(store_mailbox_changed(mb, NULL) == 1);
	CHECK(store_mailbox_changed(mb, NULL) == 0);
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 4 && m[3].uid == 4);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

static void test_pickup_foreign_files(void)
{
	setup();
	CHECK(deliver(msg1) == 0);
	CHECK(deliver(msg2) == 0);
	/* another program drops an LF-only file into new/ and a seen one into cur/ */
	static const char lf[] = "Subject: lf\n\nline one\nline two\n";
	char p[800];
	snprintf(p, sizeof(p), "%s/new/1700000000.X1.other", root);
	write_file(p, lf, strlen(lf));
	snprintf(p, sizeof(p), "%s/cur/1700000001.X2.other:2,FS", root);
	write_file(p, msg3, strlen(msg3));
	snprintf(p, sizeof(p), "%s/new/.hidden", root);
	write_file(p, "x", 1);

	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0);
	CHECK(n == 4);
	if (n == 4) {
		/* picked up in name (arrival) order after the delivered ones */
		CHECK(m[2].uid == 3 && m[3].uid == 4);
		CHECK(m[2].size == strlen(lf) + 4);	/* four LFs served as CRLF */
		CHECK(m[2].flags == 0);
		CHECK(m[3].size == strlen(msg3));
		CHECK(m[3].flags == (STORE_F_FLAGGED | STORE_F_SEEN));
	}
	int fd;
	bool crlf = true;
	CHECK(store_msg_open(mb, 3, &fd, &crlf, NULL) == 0);
	CHECK(!crlf);
	close(fd);
	size_t len;
	char *text = read_msg(mb, 3, &len);
	CHECK(text != NULL && strcmp(text, "Subject: lf\r\n\r\nline one\r\nline two\r\n") == 0);
	free(text);
	/* seek within a converted file */
	struct store_reader *r;
	CHECK(store_reader_open(mb, 3, &r, NULL) == 0);
	char buf[16] = { 0 };
	CHECK(store_reader_seek(r, 15) == 0);
	CHECK(store_reader_read(r, buf, 8) == 8 && memcmp(buf, "line one", 8) == 0);
	CHECK(store_reader_seek(r, 11) == 0);
	CHECK(store_reader_read(r, buf, 4) == 4 && memcmp(buf, "\r\n\r\n", 4) == 0);
	store_reader_close(&r);
	store_mailbox_close(&mb);

	/* the next drop gets the next UID at the next open; nothing is indexed twice */
	snprintf(p, sizeof(p), "%s/new/1700000002.X3.other", root);
	write_file(p, msg1, strlen(msg1));
	mb = open_mb(s, "INBOX");
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 5 && m[4].uid == 5);
	CHECK(count_files(root, "new") == 0);	/* .hidden is not mail */
	store_mailbox_close(&mb);
	mb = open_mb(s, "INBOX");
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 5);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- flags ---------------------------------------------------------------------------- */

struct upd_log {
	int changed, same, conflict;
	uint32_t last_flags;
	char last_kw[128];
	uint64_t last_modseq;
};

static void upd_cb(void *ctx, const struct store_msg *m, enum store_update what)
{
	struct upd_log *l = ctx;
	if (what == STORE_UPDATE_CHANGED)
		l->changed++;
	else if (what == STORE_UPDATE_SAME)
		l->same++;
	else
		l->conflict++;
	l->last_flags = m->flags;
	snprintf(l->last_kw, sizeof(l->last_kw), "%s", m->keywords);
	l->last_modseq = m->modseq;
}

static void test_flags_keywords_modseq(void)
{
	setup();
	for (int i = 0; i < 3; i++)
		CHECK(deliver(msg1) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	uint64_t ms0, ms1, ms2;
	CHECK(store_mailbox_highestmodseq(mb, &ms0, NULL) == 0);

	struct store_uid_range one_two = { 1, 2 };
	struct upd_log l = { 0 };
	CHECK(store_flags_update(mb, &one_two, 1, STORE_FLAGS_ADD, STORE_F_SEEN | STORE_F_FLAGGED,
				 "Work $Label1", 0, upd_cb, &l, NULL) == 0);
	CHECK(l.changed == 2 && l.same == 0);
	CHECK(l.last_flags == (STORE_F_SEEN | STORE_F_FLAGGED));
	CHECK_STREQ(l.last_kw, "Work $Label1");
	CHECK(store_mailbox_highestmodseq(mb, &ms1, NULL) == 0 && ms1 == ms0 + 1);
	CHECK(l.last_modseq == ms1);

	/* the same again: nothing written, no MODSEQ */
	memset(&l, 0, sizeof(l));
	CHECK(store_flags_update(mb, &one_two, 1, STORE_FLAGS_ADD, STORE_F_SEEN, "work", 0,
				 upd_cb, &l, NULL) == 0);
	CHECK(l.changed == 0 && l.same == 2);
	CHECK(store_mailbox_highestmodseq(mb, &ms2, NULL) == 0 && ms2 == ms1);

	/* remove one flag and a keyword from message 2 only */
	struct store_uid_range two = { 2, 2 };
	memset(&l, 0, sizeof(l));
	CHECK(store_flags_update(mb, &two, 1, STORE_FLAGS_REMOVE, STORE_F_FLAGGED, "WORK", 0,
				 upd_cb, &l, NULL) == 0);
	CHECK(l.changed == 1 && l.last_flags == STORE_F_SEEN);
	CHECK_STREQ(l.last_kw, "$Label1");
	CHECK(store_mailbox_highestmodseq(mb, &ms2, NULL) == 0 && ms2 == ms1 + 1);

	/* replace; UNCHANGEDSINCE below message 2's MODSEQ is a conflict for it */
	struct store_uid_range all = { 1, UINT32_MAX };
	memset(&l, 0, sizeof(l));
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_REPLACE, STORE_F_ANSWERED, NULL, ms1,
				 upd_cb, &l, NULL) == 0);
	CHECK(l.changed == 2 && l.conflict == 1);

	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 3);
	if (n == 3) {
		CHECK(m[0].flags == STORE_F_ANSWERED && strcmp(m[0].keywords, "") == 0);
		CHECK(m[1].flags == STORE_F_SEEN && strcmp(m[1].keywords, "$Label1") == 0);
		CHECK(m[2].flags == STORE_F_ANSWERED);
		CHECK(m[0].modseq == m[2].modseq && m[0].modseq > m[1].modseq);
	}
	/* CHANGEDSINCE */
	CHECK(store_mailbox_messages_in(mb, NULL, 0, ms2, &m, &n, NULL) == 0 && n == 2);
	char *kw = NULL;
	CHECK(store_mailbox_keywords(mb, &kw, NULL) == 0);
	CHECK_STREQ(kw, "Work $Label1");
	free(kw);

	/* invalid input */
	char *err = NULL;
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, 0, "bad(kw", 0, NULL, NULL,
				 &err) == STORE_INVALID);
	free(err);
	err = NULL;
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, 1u << 9, NULL, 0, NULL, NULL,
				 &err) == STORE_INVALID);
	free(err);
	/* flags survive a reopen in another handle */
	struct store *s2 = open_store();
	struct store_mailbox *mb2 = open_mb(s2, "INBOX");
	CHECK(store_mailbox_messages(mb2, &m, &n, NULL) == 0 && n == 3 &&
	      m[1].flags == STORE_F_SEEN);
	store_mailbox_close(&mb2);
	store_close(&s2);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- expunge -------------------------------------------------------------------------- */

static void collect_uid(void *ctx, uint32_t uid, uint64_t modseq)
{
	uint32_t *v = ctx;
	v[++v[0]] = uid;
}

static void test_expunge(void)
{
	setup();
	for (int i = 0; i < 4; i++)
		CHECK(deliver(msg1) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	uint32_t uids[] = { 2, 42 };
	CHECK(store_expunge(mb, uids, 2, NULL) == 0);
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 3);
	CHECK(n == 3 && m[0].uid == 1 && m[1].uid == 3 && m[2].uid == 4);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 3);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 0);

	/* EXPUNGE removes only \Deleted ones */
	struct store_uid_range r4 = { 4, 4 };
	CHECK(store_flags_update(mb, &r4, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, NULL, NULL,
				 NULL) == 0);
	uint32_t got[8] = { 0 };
	CHECK(store_expunge_deleted(mb, NULL, 0, collect_uid, got, NULL) == 1);
	CHECK(got[0] == 1 && got[1] == 4);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 2);
	store_mailbox_close(&mb);
	store_close(&s);

	/* UIDs are never reused, even after a reopen */
	CHECK(deliver(msg2) == 0);
	s = open_store();
	mb = open_mb(s, "INBOX");
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 3 && m[2].uid == 5);

	/* an expunge cut short after its commit: the row is gone, the file still there and
	 * listed as pending. The next open removes the file; it is never picked up again. */
	store_mailbox_close(&mb);
	store_close(&s);
	char sql[300];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO unlinks(mailbox_id, name, file) SELECT mailbox_id, name, file"
		 " FROM messages WHERE uid=5; DELETE FROM messages WHERE uid=5; SELECT 1");
	char p[700];
	snprintf(p, sizeof(p), "%s/index.db", root);
	sqlite3 *db;
	CHECK(sqlite3_open(p, &db) == SQLITE_OK);
	CHECK(sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(db);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 3);
	s = open_store();
	mb = open_mb(s, "INBOX");
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 2);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 2);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 0);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* The split forms the IMAP server uses to sync on a thread: nothing of an expunge leaves
 * the disk before store_expunge_sync_run, nothing of an append is in new/ before
 * store_append_sync, and an append synced but never committed (its client went away) is
 * taken back by the abort. */
static void test_expunge_append_split(void)
{
	setup();
	for (int i = 0; i < 3; i++)
		CHECK(deliver(msg1) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_uid_range all = { 1, 3 };
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_DELETED, NULL, 0, NULL,
				 NULL, NULL) == 0);
	uint32_t got[8] = { 0 };
	struct store_expunge_sync *es = NULL;
	struct store_uid_range r12 = { 1, 2 };
	CHECK(store_expunge_deleted_begin(mb, &r12, 1, collect_uid, got, &es, NULL) == 2);
	CHECK(es != NULL && got[0] == 2 && got[1] == 1 && got[2] == 2);
	/* committed (rows gone) but the files stay until the sync */
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 1 && m[0].uid == 3);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 3);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 2);
	/* a mailbox open meanwhile (its pick-up) leaves them to the expunge in flight, and
	 * does not take the files for new mail */
	struct store_mailbox *mb2 = open_mb(s, "INBOX");
	CHECK(store_mailbox_messages(mb2, &m, &n, NULL) == 0 && n == 1);
	store_mailbox_close(&mb2);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 3);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 2);
	store_expunge_sync_run(es);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 1);
	CHECK(store_expunge_sync_end(s, &es, NULL) == 0 && es == NULL);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 0);
	/* nothing \Deleted in the range: nothing to sync */
	CHECK(store_expunge_deleted_begin(mb, &r12, 1, collect_uid, got, &es, NULL) == 0);
	CHECK(es == NULL);
	/* a handle closed meanwhile (s NULL at the end): the unlinks are left for the next open */
	CHECK(store_expunge_deleted_begin(mb, NULL, 0, collect_uid, got, &es, NULL) == 1);
	store_expunge_sync_run(es);
	CHECK(store_expunge_sync_end(NULL, &es, NULL) == 0 && es == NULL);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 0);
	CHECK(db_count("SELECT count(*) FROM unlinks") == 1);

	/* append: seal, sync, commit */
	static const char app[] = "Subject: split\r\n\r\nhello\r\n";
	struct store_append *ap;
	uint32_t uidv = 0, uid = 0;
	CHECK(store_append_begin(s, "INBOX", &ap, NULL) == 0);
	CHECK(store_append_write(ap, app, strlen(app)) == 0);
	CHECK(store_append_seal(ap, STORE_F_SEEN, "k1", 0, NULL) == 0);
	CHECK(count_files(root, "new") == 0 && count_files(root, "tmp") == 1);
	store_append_sync(ap);
	CHECK(count_files(root, "new") == 1 && count_files(root, "tmp") == 0);
	CHECK(store_append_commit(&ap, &uidv, &uid, NULL) == 0 && ap == NULL && uid == 4);
	CHECK(count_files(root, "new") == 1);
	/* synced, never committed: taken back */
	CHECK(store_append_begin(s, "INBOX", &ap, NULL) == 0);
	CHECK(store_append_write(ap, app, strlen(app)) == 0);
	CHECK(store_append_seal(ap, 0, NULL, 0, NULL) == 0);
	store_append_sync(ap);
	CHECK(count_files(root, "new") == 2);
	store_append_abort(&ap);
	CHECK(ap == NULL && count_files(root, "new") == 1 && count_files(root, "tmp") == 0);
	/* a bad keyword: refused at the seal, nothing left */
	CHECK(store_append_begin(s, "INBOX", &ap, NULL) == 0);
	CHECK(store_append_seal(ap, 0, "bad(kw", 0, NULL) == STORE_INVALID);
	store_append_abort(&ap);
	CHECK(count_files(root, "tmp") == 0);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- copy, move, append ---------------------------------------------------------------- */

static void test_copy_move_append(void)
{
	setup();
	CHECK(deliver(msg1) == 0);
	CHECK(deliver(msg2) == 0);
	struct store *s = open_store();
	char *err = NULL;
	CHECK(store_mailbox_create(s, "Archive", NULL) == 0);

	/* append with flags, keywords and a date */
	static const char app[] = "Subject: appended\r\n\r\nhello\r\n";
	uint32_t uidv = 0, uid = 0;
	CHECK(store_append(s, "Archive", app, strlen(app), STORE_F_SEEN | STORE_F_DRAFT,
			   "draft1  $Fwd", 1500000000, &uidv, &uid, NULL) == 0);
	CHECK(uid == 1 && uidv > 0);
	CHECK(store_append(s, "Nope", app, strlen(app), 0, NULL, 0, &uidv, &uid, &err) ==
	      STORE_NOTFOUND);
	free(err);
	err = NULL;
	/* streaming, in pieces */
	struct store_append *ap;
	CHECK(store_append_begin(s, "Archive", &ap, NULL) == 0);
	CHECK(store_append_write(ap, "Subject: x\n", 11) == 0);
	CHECK(store_append_write(ap, "\nbody\n", 6) == 0);
	CHECK(store_append_finish(&ap, 0, NULL, 0, NULL, &uid, NULL) == 0 && uid == 2 && ap == NULL);
	CHECK(store_append_begin(s, "Archive", &ap, NULL) == 0);
	store_append_abort(&ap);
	char arch[800];
	snprintf(arch, sizeof(arch), "%s/.Archive", root);
	CHECK(count_files(arch, "tmp") == 0);

	struct store_mailbox *inbox = open_mb(s, "INBOX");
	struct store_uid_range r1 = { 1, 1 };
	CHECK(store_flags_update(inbox, &r1, 1, STORE_FLAGS_ADD, STORE_F_FLAGGED, "Important", 0,
				 NULL, NULL, NULL) == 0);
	/* copy 1..2 */
	struct store_uid_range all = { 1, UINT32_MAX };
	struct store_copy_result res;
	CHECK(store_copy(inbox, &all, 1, "Archive", false, &res, NULL) == 0);
	CHECK(res.n == 2 && res.uidvalidity == uidv);
	CHECK(res.n == 2 && res.src_uids[0] == 1 && res.dst_uids[0] == 3 && res.dst_uids[1] == 4);
	store_copy_result_free(&res);
	CHECK(store_copy(inbox, &all, 1, "Missing", false, &res, &err) == STORE_NOTFOUND);
	free(err);
	err = NULL;

	struct store_mailbox *ar = open_mb(s, "Archive");
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(ar, &m, &n, NULL) == 0 && n == 4);
	if (n == 4) {
		CHECK(m[0].flags == (STORE_F_SEEN | STORE_F_DRAFT));
		CHECK_STREQ(m[0].keywords, "draft1 $Fwd");
		CHECK(m[0].internal_date == 1500000000);
		CHECK(m[0].size == strlen(app));
		CHECK(m[1].size == 20);		/* 17 bytes, three bare LFs */
		CHECK(m[2].flags == STORE_F_FLAGGED);
		CHECK_STREQ(m[2].keywords, "Important");
		CHECK(m[3].size == strlen(msg2));
	}
	size_t len;
	char *text = read_msg(ar, 4, &len);
	CHECK(text != NULL && len == strlen(msg2) && memcmp(text, msg2, len) == 0);
	free(text);

	/* move 2 back and forth: gone from the source, new UID in the destination */
	struct store_uid_range r2 = { 2, 2 };
	CHECK(store_copy(inbox, &r2, 1, "Archive", true, &res, NULL) == 0);
	CHECK(res.n == 1 && res.src_uids[0] == 2 && res.dst_uids[0] == 5);
	store_copy_result_free(&res);
	CHECK(store_mailbox_messages(inbox, &m, &n, NULL) == 0 && n == 1 && m[0].uid == 1);
	CHECK(count_files(root, "cur") + count_files(root, "new") == 1);
	struct store_uid_range r5 = { 5, 5 };
	CHECK(store_copy(ar, &r5, 1, "INBOX", true, &res, NULL) == 0);
	CHECK(res.n == 1 && res.dst_uids[0] == 3);
	store_copy_result_free(&res);
	text = read_msg(inbox, 3, &len);
	CHECK(text != NULL && len == strlen(msg2) && memcmp(text, msg2, len) == 0);
	free(text);
	/* a move within one mailbox */
	struct store_uid_range r3 = { 3, 3 };
	CHECK(store_copy(inbox, &r3, 1, "inbox", true, &res, NULL) == 0);
	CHECK(res.n == 1 && res.dst_uids[0] == 4);
	store_copy_result_free(&res);
	CHECK(store_mailbox_messages(inbox, &m, &n, NULL) == 0 && n == 2 && m[1].uid == 4);

	/* the structure cache */
	void *blob = NULL;
	size_t blen = 0;
	CHECK(store_msg_cache_get(ar, 1, &blob, &blen, NULL) == 0);
	CHECK(store_msg_cache_set(ar, 1, "\0(BODY)", 7, NULL) == 0);
	CHECK(store_msg_cache_get(ar, 1, &blob, &blen, NULL) == 1 && blen == 7 &&
	      memcmp(blob, "\0(BODY)", 7) == 0);
	free(blob);
	CHECK(store_msg_cache_set(ar, 99, "x", 1, &err) == STORE_NOTFOUND);
	free(err);
	store_mailbox_close(&ar);
	store_mailbox_close(&inbox);
	store_close(&s);
	teardown();
}

/* ---- counts and \Recent ------------------------------------------------------------------ */

static void test_counts_recent(void)
{
	setup();
	for (int i = 0; i < 4; i++)
		CHECK(deliver(msg1) == 0);
	struct store *s = open_store();
	struct store_status st;
	CHECK(store_mailbox_status(s, "INBOX", &st, NULL) == 0);
	CHECK(st.messages == 4 && st.unseen == 4 && st.recent == 4 && st.uidnext == 5);
	CHECK(st.first_unseen_uid == 1 && st.size == 4 * strlen(msg1));
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_uid_range r12 = { 1, 2 };
	CHECK(store_flags_update(mb, &r12, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				 NULL) == 0);
	/* a read-only handle sees them recent (once) and leaves them unclaimed */
	struct store_mailbox *ro = open_mb(s, "INBOX");
	CHECK(store_mailbox_peek_recent(ro, NULL) == 4);
	CHECK(store_mailbox_peek_recent(ro, NULL) == 0);
	const struct store_msg *rm;
	size_t rn;
	CHECK(store_mailbox_messages(ro, &rm, &rn, NULL) == 0 && rn == 4 &&
	      (rm[0].flags & STORE_F_RECENT) && (rm[3].flags & STORE_F_RECENT));
	CHECK(store_mailbox_status(s, "INBOX", &st, NULL) == 0 && st.recent == 4);
	CHECK(store_mailbox_claim_recent(mb, NULL) == 4);
	CHECK(store_mailbox_peek_recent(ro, NULL) == 0);
	store_mailbox_close(&ro);
	CHECK(store_mailbox_claim_recent(mb, NULL) == 0);
	CHECK(store_mailbox_status(s, "INBOX", &st, NULL) == 0);
	CHECK(st.messages == 4 && st.unseen == 2 && st.recent == 0 && st.first_unseen_uid == 3);
	CHECK(st.highestmodseq > 0 && st.uidvalidity == store_mailbox_uidvalidity(mb));
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 4 &&
	      (m[0].flags & STORE_F_RECENT) && (m[3].flags & STORE_F_RECENT));
	/* another session does not see them recent; new mail is recent for the next claim */
	struct store *s2 = open_store();
	struct store_mailbox *mb2 = open_mb(s2, "INBOX");
	CHECK(store_mailbox_messages(mb2, &m, &n, NULL) == 0 && n == 4 &&
	      !(m[0].flags & STORE_F_RECENT));
	CHECK(deliver(msg2) == 0);
	CHECK(store_mailbox_status(s, "INBOX", &st, NULL) == 0 && st.recent == 1);
	CHECK(store_mailbox_claim_recent(mb2, NULL) == 1);
	CHECK(store_mailbox_messages(mb2, &m, &n, NULL) == 0 && n == 5 &&
	      (m[4].flags & STORE_F_RECENT) && !(m[3].flags & STORE_F_RECENT));
	char *err = NULL;
	CHECK(store_mailbox_status(s, "Nope", &st, &err) == STORE_NOTFOUND);
	free(err);
	store_mailbox_close(&mb2);
	store_close(&s2);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- folders ---------------------------------------------------------------------------- */

static bool listed(struct store *s, const char *name, bool *children_r, bool *sub_r)
{
	struct store_mailbox_info *l;
	size_t n;
	bool found = false;
	if (store_mailbox_list(s, &l, &n, NULL) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(l[i].name, name) == 0) {
			found = true;
			if (children_r)
				*children_r = l[i].has_children;
			if (sub_r)
				*sub_r = l[i].subscribed;
		}
	}
	store_mailbox_list_free(&l, n);
	return found;
}

static void test_folders(void)
{
	setup();
	struct store *s = open_store();
	char *err = NULL;
	CHECK(store_mailbox_create(s, "Work", NULL) == 0);
	CHECK(store_mailbox_create(s, "Work/2024.q1", NULL) == 0);
	CHECK(store_mailbox_create(s, "Work", &err) == STORE_EXISTS);
	free(err);
	err = NULL;
	CHECK(store_mailbox_create(s, "inbox", &err) == STORE_EXISTS);
	free(err);
	err = NULL;
	static const char *const bad[] = { "", "/a", "a/", "a//b", "a*", "a%b", "a\tb" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK(store_mailbox_create(s, bad[i], &err) == STORE_INVALID);
		free(err);
		err = NULL;
	}
	char p[800];
	snprintf(p, sizeof(p), "%s/.Work.2024%%2Eq1/cur", root);
	struct stat st;
	CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));

	struct store_mailbox_info *l;
	size_t n;
	CHECK(store_mailbox_list(s, &l, &n, NULL) == 0 && n == 3);
	if (n == 3) {
		CHECK_STREQ(l[0].name, "INBOX");
		CHECK_STREQ(l[1].name, "Work");
		CHECK(l[1].has_children);
		CHECK_STREQ(l[2].name, "Work/2024.q1");
		CHECK(!l[2].has_children);
	}
	store_mailbox_list_free(&l, n);

	/* subscriptions may name what does not exist */
	CHECK(store_subscribe(s, "Work", true, NULL) == 0);
	CHECK(store_subscribe(s, "Ghost", true, NULL) == 0);
	bool sub = false, children = false;
	CHECK(listed(s, "Work", &children, &sub) && sub);
	char **names;
	CHECK(store_subscriptions(s, &names, &n, NULL) == 0 && n == 2);
	if (n == 2) {
		CHECK_STREQ(names[0], "Ghost");
		CHECK_STREQ(names[1], "Work");
	}
	store_names_free(&names, n);
	CHECK(store_subscribe(s, "Ghost", false, NULL) == 0);

	/* a message in a child survives the rename of its parent */
	static const char app[] = "Subject: q1\r\n\r\nq1\r\n";
	uint32_t uidv0 = 0, uid = 0;
	CHECK(store_append(s, "Work/2024.q1", app, strlen(app), 0, NULL, 0, &uidv0, &uid, NULL) ==
	      0);
	CHECK(store_mailbox_rename(s, "Work", "Jobs/Old", NULL) == 0);
	CHECK(!listed(s, "Work", NULL, NULL) && !listed(s, "Work/2024.q1", NULL, NULL));
	CHECK(listed(s, "Jobs/Old", &children, NULL) && children);
	CHECK(!listed(s, "Jobs", NULL, NULL));
	struct store_mailbox *mb = open_mb(s, "Jobs/Old/2024.q1");
	const struct store_msg *m;
	CHECK(mb != NULL && store_mailbox_uidvalidity(mb) == uidv0);
	CHECK(mb != NULL && store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 1);
	size_t len;
	char *text = mb ? read_msg(mb, 1, &len) : NULL;
	CHECK(text != NULL && strcmp(text, app) == 0);
	free(text);
	store_mailbox_close(&mb);
	CHECK(store_mailbox_rename(s, "Nope", "X", &err) == STORE_NOTFOUND);
	free(err);
	err = NULL;
	CHECK(store_mailbox_create(s, "Other", NULL) == 0);
	CHECK(store_mailbox_rename(s, "Other", "Jobs/Old", &err) == STORE_EXISTS);
	free(err);
	err = NULL;
	CHECK(store_mailbox_rename(s, "Other", "Other/Sub", &err) == STORE_INVALID);
	free(err);
	err = NULL;

	/* delete: children refuse, INBOX refuses; a deleted name comes back fresh */
	CHECK(store_mailbox_delete(s, "Jobs/Old", &err) == STORE_HASCHILDREN);
	free(err);
	err = NULL;
	CHECK(store_mailbox_delete(s, "INBOX", &err) == STORE_INVALID);
	free(err);
	err = NULL;
	CHECK(store_mailbox_delete(s, "Jobs/Old/2024.q1", NULL) == 0);
	CHECK(store_mailbox_delete(s, "Jobs/Old/2024.q1", &err) == STORE_NOTFOUND);
	free(err);
	err = NULL;
	CHECK(!listed(s, "Jobs/Old/2024.q1", NULL, NULL));
	CHECK(store_mailbox_create(s, "Jobs/Old/2024.q1", NULL) == 0);
	mb = open_mb(s, "Jobs/Old/2024.q1");
	CHECK(mb != NULL && store_mailbox_uidvalidity(mb) != uidv0);
	CHECK(mb != NULL && store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 0);
	store_mailbox_close(&mb);
	CHECK(count_files(root, "tmp") == 0);	/* the deleted folder's files are gone */

	/* a folder another program made is adopted, with its mail; one removed behind our
	 * back is dropped */
	snprintf(p, sizeof(p), "%s/.Sieve", root);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/.Sieve/cur", root);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/.Sieve/new", root);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/.Sieve/new/1700000000.A.x", root);
	write_file(p, msg1, strlen(msg1));
	CHECK(listed(s, "Sieve", NULL, NULL));
	struct store_status ss;
	CHECK(store_mailbox_status(s, "Sieve", &ss, NULL) == 0 && ss.messages == 1);
	snprintf(p, sizeof(p), "%s/.Other", root);
	char cmd[900];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p);
	CHECK(system(cmd) == 0);
	CHECK(!listed(s, "Other", NULL, NULL));
	CHECK(store_mailbox_create(s, "Other", NULL) == 0);

	/* renaming INBOX moves its messages into the new mailbox */
	CHECK(deliver(msg1) == 0);
	CHECK(deliver(msg2) == 0);
	CHECK(store_mailbox_rename(s, "INBOX", "Old Inbox", NULL) == 0);
	CHECK(store_mailbox_status(s, "INBOX", &ss, NULL) == 0 && ss.messages == 0);
	CHECK(store_mailbox_status(s, "Old Inbox", &ss, NULL) == 0 && ss.messages == 2);
	store_close(&s);
	teardown();
}

/* ---- the POP3 lock, change detection, hooks ----------------------------------------------- */

struct hook_log {
	int calls;
	unsigned changes;
	char mailbox[64];
};

static void hook(void *ctx, const char *mailbox, unsigned changes)
{
	struct hook_log *h = ctx;
	h->calls++;
	h->changes |= changes;
	snprintf(h->mailbox, sizeof(h->mailbox), "%s", mailbox);
}

static void test_lock_changes_hooks(void)
{
	setup();
	CHECK(deliver(msg1) == 0);
	struct store *s1 = open_store(), *s2 = open_store();
	struct store_mailbox *a = open_mb(s1, "INBOX"), *b = open_mb(s2, "INBOX");
	CHECK(store_lock_exclusive(a, NULL) == 1);
	CHECK(store_lock_exclusive(b, NULL) == 0);	/* same process, other session */
	CHECK(store_lock_exclusive(a, NULL) == 0);	/* and the holder itself */
	store_mailbox_close(&a);
	CHECK(store_lock_exclusive(b, NULL) == 1);	/* released by close */
	a = open_mb(s1, "INBOX");

	struct hook_log h = { 0 };
	store_set_change_hook(s1, hook, &h);
	struct store_uid_range r = { 1, 1 };
	CHECK(store_mailbox_changed(b, NULL) == 0);
	CHECK(store_flags_update(a, &r, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				 NULL) == 0);
	CHECK(h.calls == 1 && h.changes == STORE_CHANGE_FLAGS && strcmp(h.mailbox, "INBOX") == 0);
	CHECK(store_mailbox_changed(a, NULL) == 0);	/* its own change */
	CHECK(store_mailbox_changed(b, NULL) == 1);	/* another's */
	CHECK(store_mailbox_changed(b, NULL) == 0);
	CHECK(store_mailbox_create(s1, "F", NULL) == 0);
	CHECK(h.calls == 2 && (h.changes & STORE_CHANGE_MAILBOXES));
	h.changes = 0;
	CHECK(store_append(s1, "INBOX", msg3, strlen(msg3), 0, NULL, 0, NULL, NULL, NULL) == 0);
	CHECK(h.changes == STORE_CHANGE_NEW);
	CHECK(store_mailbox_changed(b, NULL) == 1);
	uint32_t one = 1;
	h.changes = 0;
	CHECK(store_expunge(a, &one, 1, NULL) == 0);
	CHECK(h.changes == STORE_CHANGE_EXPUNGE);
	CHECK(store_mailbox_changed(b, NULL) == 1);
	store_set_change_hook(s1, NULL, NULL);
	store_mailbox_close(&a);
	store_mailbox_close(&b);
	store_close(&s1);
	store_close(&s2);
	teardown();
}

/* ---- a lost index ------------------------------------------------------------------------- */

static void test_index_lost(void)
{
	setup();
	CHECK(deliver(msg1) == 0);
	CHECK(deliver(msg2) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	uint32_t v0 = store_mailbox_uidvalidity(mb);
	store_mailbox_close(&mb);
	store_close(&s);
	store_deliver_cache_close();
	char p[800];
	static const char *const parts[] = { "index.db", "index.db-wal", "index.db-shm" };
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, parts[i]);
		unlink(p);
	}
	sleep(1);	/* UIDVALIDITY is time-based */
	s = open_store();
	mb = open_mb(s, "INBOX");
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_uidvalidity(mb) != v0);
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0 && n == 2);
	CHECK(n == 2 && m[0].size == strlen(msg1) && m[1].size == strlen(msg2));
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- names ---------------------------------------------------------------------------------- */

static void test_maildir_path(void)
{
	char *p = store_maildir_path("/d", "Bob.Smith@Example.test");
	CHECK_STREQ(p, "/d/mail/Example.test/bob.smith");
	free(p);
	p = store_maildir_path("/d", ".evil/x@d");
	CHECK_STREQ(p, "/d/mail/d/%2Eevil%2Fx");
	free(p);
}

/* ---- two processes at once ------------------------------------------------------------------ */

#define NMSG 5
#define ROUNDS 200

/* flag_worker - toggle one flag and one keyword on every message ROUNDS times */
static int flag_worker(uint32_t flag, const char *kw)
{
	struct store *s = NULL;
	struct store_mailbox *mb = NULL;
	char *err = NULL;
	if (store_open(datadir, ADDR, &s, &err) < 0 || store_mailbox_open(s, "INBOX", &mb, &err) < 0) {
		fprintf(stderr, "child: %s\n", err);
		return 1;
	}
	struct store_uid_range all = { 1, NMSG };
	for (int i = 0; i < ROUNDS; i++) {
		enum store_flag_op op = i % 2 == 0 ? STORE_FLAGS_REMOVE : STORE_FLAGS_ADD;
		if (store_flags_update(mb, &all, 1, op, flag, kw, 0, NULL, NULL, &err) < 0) {
			fprintf(stderr, "child: %s\n", err);
			return 1;
		}
	}
	store_mailbox_close(&mb);
	store_close(&s);
	return 0;
}

static int deliver_worker(int count)
{
	for (int i = 0; i < count; i++)
		if (deliver(msg3) < 0)
			return 1;
	store_deliver_cache_close();
	return 0;
}

static void test_two_processes(void)
{
	setup();
	for (int i = 0; i < NMSG; i++)
		CHECK(deliver(msg1) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_uid_range all = { 1, NMSG };
	/* start from both flags set, so that every round really writes */
	CHECK(store_flags_update(mb, &all, 1, STORE_FLAGS_ADD, STORE_F_SEEN | STORE_F_FLAGGED,
				 "alpha beta", 0, NULL, NULL, NULL) == 0);
	uint64_t ms0;
	CHECK(store_mailbox_highestmodseq(mb, &ms0, NULL) == 0);
	/* nothing open crosses fork (SQLite forbids it) */
	store_mailbox_close(&mb);
	store_close(&s);
	store_deliver_cache_close();

	pid_t pids[3];
	for (int w = 0; w < 3; w++) {
		pids[w] = fork();
		if (pids[w] == 0) {
			int rc = w == 0 ? flag_worker(STORE_F_SEEN, "alpha")
				 : w == 1 ? flag_worker(STORE_F_FLAGGED, "beta")
					  : deliver_worker(50);
			_exit(rc);
		}
	}
	for (int w = 0; w < 3; w++) {
		int status = 0;
		CHECK(pids[w] > 0 && waitpid(pids[w], &status, 0) == pids[w]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	s = open_store();
	mb = open_mb(s, "INBOX");
	const struct store_msg *m;
	size_t n;
	CHECK(store_mailbox_messages(mb, &m, &n, NULL) == 0);
	CHECK(n == NMSG + 50);
	for (size_t i = 0; i < n && i < NMSG; i++) {
		CHECK(m[i].flags == (STORE_F_SEEN | STORE_F_FLAGGED));
		CHECK(strcmp(m[i].keywords, "alpha beta") == 0 ||
		      strcmp(m[i].keywords, "beta alpha") == 0);
	}
	for (size_t i = 0; i < n; i++)
		CHECK(m[i].uid == i + 1);	/* deliveries got distinct, consecutive UIDs */
	/* every round of both writers committed exactly once; each delivery too */
	uint64_t ms1;
	CHECK(store_mailbox_highestmodseq(mb, &ms1, NULL) == 0);
	CHECK(ms1 == ms0 + 2 * ROUNDS + 50);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

/* ---- backup (tern backup) ---------------------------------------------------------------- */

/* unlink_containing - remove the file of root/new or root/cur that holds needle */
static int unlink_containing(const char *needle)
{
	const char *subs[] = { "new", "cur" };
	for (int i = 0; i < 2; i++) {
		char d[700];
		snprintf(d, sizeof(d), "%s/%s", root, subs[i]);
		DIR *dir = opendir(d);
		struct dirent *e;
		while (dir != NULL && (e = readdir(dir)) != NULL) {
			char p[1000], buf[256];
			snprintf(p, sizeof(p), "%s/%s", d, e->d_name);
			int fd = e->d_name[0] == '.' ? -1 : open(p, O_RDONLY);
			ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
			if (fd >= 0)
				close(fd);
			if (n > 0 && (buf[n] = '\0', strstr(buf, needle) != NULL)) {
				closedir(dir);
				return unlink(p);
			}
		}
		if (dir != NULL)
			closedir(dir);
	}
	return -1;
}

/* The copy of an account made while it changes: a row whose file went away before the copy
 * (expunged meanwhile) becomes an expunge in the copy; a file without a row (arrived
 * meanwhile) is picked up at the next open; flags come with the index. */
static void test_backup_account(void)
{
	setup();
	CHECK(deliver(msg1) == 0 && deliver(msg2) == 0 && deliver(msg3) == 0);
	struct store *s = open_store();
	struct store_mailbox *mb = open_mb(s, "INBOX");
	struct store_uid_range r1 = { 1, 1 };
	CHECK(store_flags_update(mb, &r1, 1, STORE_FLAGS_ADD, STORE_F_SEEN, NULL, 0, NULL, NULL,
				 NULL) == 0);
	uint64_t before = 0;
	CHECK(store_mailbox_highestmodseq(mb, &before, NULL) == 0);
	store_mailbox_close(&mb);
	store_close(&s);
	store_deliver_cache_close();
	CHECK(unlink_containing("Subject: two") == 0);		/* uid 2's file: gone */
	char foreign[700];
	snprintf(foreign, sizeof(foreign), "%s/new/1700000000.foreign.host", root);
	write_file(foreign, "Subject: four\r\n\r\nbody four\r\n", 27);

	char copy[300], dst[600];
	snprintf(copy, sizeof(copy), "%s-copy", datadir);
	char *p = store_maildir_path(copy, ADDR);
	snprintf(dst, sizeof(dst), "%s", p);
	free(p);
	char parent[600];
	snprintf(parent, sizeof(parent), "%s", dst);
	*strrchr(parent, '/') = '\0';
	char mkp[700];
	snprintf(mkp, sizeof(mkp), "mkdir -p '%s'", parent);
	CHECK(system(mkp) == 0);
	struct backup_counts c = { 0 };
	char *err = NULL;
	CHECK(store_backup_account(root, dst, &c, &err) == 0);
	if (err != NULL)
		fprintf(stderr, "backup: %s\n", err);
	free(err);
	CHECK(c.files == 3 && c.dropped == 1);
	err = NULL;
	CHECK(store_backup_account(root, dst, &c, &err) < 0 && err != NULL);	/* no overwrite */
	free(err);

	/* the copy, as a data dir of its own */
	char save[256];
	snprintf(save, sizeof(save), "%s", datadir);
	snprintf(datadir, sizeof(datadir), "%s", copy);
	s = open_store();
	mb = open_mb(s, "INBOX");
	const struct store_msg *m;
	size_t n = 0;
	CHECK(mb != NULL && store_mailbox_messages(mb, &m, &n, NULL) == 0);
	CHECK(n == 3);
	if (n == 3) {
		CHECK(m[0].uid == 1 && (m[0].flags & STORE_F_SEEN));
		CHECK(m[1].uid == 3 && !(m[1].flags & STORE_F_SEEN));
		CHECK(m[2].uid == 4);	/* the file that had no row: indexed with a new UID */
		size_t len;
		char *body = read_msg(mb, 4, &len);
		CHECK(body != NULL && strstr(body, "body four") != NULL);
		free(body);
	}
	uint64_t after = 0;
	CHECK(store_mailbox_highestmodseq(mb, &after, NULL) == 0 && after > before);
	store_mailbox_close(&mb);
	store_close(&s);
	char sql[200];
	snprintf(root, sizeof(root), "%s", dst);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM expunged WHERE uid = 2");
	CHECK(db_count(sql) == 1);
	teardown();
	snprintf(datadir, sizeof(datadir), "%s", save);
	teardown();
}

TEST_MAIN(TEST(test_maildir_path), TEST(test_deliver_indexes), TEST(test_pickup_foreign_files),
	  TEST(test_flags_keywords_modseq), TEST(test_expunge), TEST(test_expunge_append_split),
	  TEST(test_copy_move_append),
	  TEST(test_counts_recent), TEST(test_folders), TEST(test_lock_changes_hooks),
	  TEST(test_index_lost), TEST(test_two_processes), TEST(test_backup_account))
