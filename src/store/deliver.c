/* deliver - store_deliver_file, the SMTP (and bounce) delivery entry point, and its cache of
 * account handles. On top of mailbox.c (store_open), structure.c and index.c
 * (idx_add_message). */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

/* ---- delivery ------------------------------------------------------------------------ */

/* Deliveries keep a few account handles open, so that 1000 deliveries a second cost a link,
 * an fsync and one small transaction each, not an index open. A handle never crosses fork:
 * a child forgets (without closing) what its parent had open. */
#define DELIVER_CACHE 8
#define DELIVER_STRUCTURE_MAX (1024 * 1024)	/* larger messages are parsed at first FETCH */
static struct deliver_slot {
	char *key;		/* data_dir "\n" address */
	struct store *s;
	uint64_t used;
} deliver_cache[DELIVER_CACHE];
static pid_t deliver_cache_pid;
static uint64_t deliver_clock;

static void structure_cache_free(void);

void store_deliver_cache_close(void)
{
	for (size_t i = 0; i < DELIVER_CACHE; i++) {
		if (deliver_cache_pid == getpid())
			store_close(&deliver_cache[i].s);
		free(deliver_cache[i].key);
		deliver_cache[i].key = NULL;
		deliver_cache[i].s = NULL;
	}
	structure_cache_free();
}

/* deliver_store - a handle on the account, cached; reopened when index.db was replaced */
static int deliver_store(const char *data_dir, const char *address, struct store **s_r,
			 char **error_r)
{
	if (deliver_cache_pid != getpid()) {
		for (size_t i = 0; i < DELIVER_CACHE; i++) {
			free(deliver_cache[i].key);
			deliver_cache[i].key = NULL;
			deliver_cache[i].s = NULL;	/* the parent's: never touch it */
		}
		deliver_cache_pid = getpid();
	}
	char *key = xasprintf("%s\n%s", data_dir, address);
	struct deliver_slot *slot = NULL, *victim = &deliver_cache[0];
	for (size_t i = 0; i < DELIVER_CACHE; i++) {
		struct deliver_slot *c = &deliver_cache[i];
		if (c->key != NULL && strcmp(c->key, key) == 0) {
			slot = c;
			break;
		}
		if (c->key == NULL || (victim->key != NULL && c->used < victim->used))
			victim = c;
	}
	if (slot != NULL) {
		if (db_replaced(slot->s)) {
			store_close(&slot->s);
			free(slot->key);
			slot->key = NULL;
			victim = slot;
			slot = NULL;
		}
	}
	if (slot == NULL) {
		store_close(&victim->s);
		free(victim->key);
		victim->key = NULL;
		if (store_open(data_dir, address, &victim->s, error_r) < 0) {
			free(key);
			return -1;
		}
		victim->key = key;
		key = NULL;
		slot = victim;
	}
	free(key);
	slot->used = ++deliver_clock;
	*s_r = slot->s;
	return 0;
}

/* The structure of the last message delivered: every local recipient of one message links
 * the same file (one inode), so it is parsed once per message, not once per recipient. */
static struct {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	buf blob;
} last_structure;

static void structure_cache_free(void)
{
	if (last_structure.valid)
		buf_free(&last_structure.blob);
	last_structure.valid = false;
}

/* structure_for - the structure blob of the file at path (st: the spool file, whose inode
 * the link shares); empty when it cannot be parsed */
static void structure_for(const struct stat *st, const char *path, buf *out)
{
	if (last_structure.valid && st->st_ino != 0 && last_structure.dev == st->st_dev &&
	    last_structure.ino == st->st_ino && last_structure.size == st->st_size) {
		buf_append(out, last_structure.blob.data, last_structure.blob.len);
		return;
	}
	if (structure_blob_of_file(path, out) < 0) {
		buf_free(out);
		buf_init(out, 0);
		return;
	}
	if (!last_structure.valid)
		buf_init(&last_structure.blob, 0);
	buf_reset(&last_structure.blob);
	buf_append(&last_structure.blob, out->data, out->len);
	last_structure.valid = true;
	last_structure.dev = st->st_dev;
	last_structure.ino = st->st_ino;
	last_structure.size = st->st_size;
}

int store_deliver_file(const char *data_dir, const char *address, const char *src_path,
		       uint64_t size, const char *hostname, char **error_r)
{
	return store_deliver_file_to(data_dir, address, NULL, src_path, size, hostname, NULL,
				     error_r);
}

/* deliver_folder - the id and directory of mailbox, created when missing */
static int deliver_folder(struct store *s, const char *mailbox, int64_t *id_r, char **dir_r,
			  char **error_r)
{
	char *norm = NULL;
	if (store_name_normalize(mailbox, &norm) < 0) {
		store_set_error(error_r, "invalid mailbox name %s", mailbox);
		return -1;
	}
	struct mbrow row;
	int k = idx_mb_lookup(s, norm, &row, error_r);
	if (k == 0) {
		int c = store_mailbox_create(s, norm, error_r);
		if (c < 0 && c != STORE_EXISTS) {
			free(norm);
			return -1;
		}
		k = idx_mb_lookup(s, norm, &row, error_r);
	}
	free(norm);
	if (k != 1) {
		if (k == 0)
			store_set_error(error_r, "mailbox %s vanished", mailbox);
		return -1;
	}
	*id_r = row.id;
	*dir_r = xstrdup(row.dir);
	mbrow_free(&row);
	return 0;
}

/* folder_dir - the maildir of the folder mailbox (NULL: INBOX) and its row id */
static int folder_dir(struct store *s, const char *mailbox, int64_t *id_r, char **dir_r,
		      char **error_r)
{
	*id_r = s->inbox_id;
	*dir_r = NULL;
	if (mailbox != NULL && deliver_folder(s, mailbox, id_r, dir_r, error_r) < 0)
		return -1;
	return 0;
}

int store_deliver_prepare(const char *data_dir, const char *address, const char *mailbox,
			  const char *src_path, const char *hostname, char **dst_r, char **dir_r,
			  char **error_r)
{
	struct store *s;
	struct stat sst = { 0 };
	int64_t mb_id;
	char *mb_dir = NULL;
	if (deliver_store(data_dir, address, &s, error_r) < 0 ||
	    folder_dir(s, mailbox, &mb_id, &mb_dir, error_r) < 0)
		return -1;
	/* the size indexed and named is the file's own (CRLF line ends: served as it is) */
	if (stat(src_path, &sst) < 0) {
		store_set_error(error_r, "stat %s: %s", src_path, strerror(errno));
		free(mb_dir);
		return -1;
	}
	char stamp[200];
	fs_unique_name(stamp, sizeof(stamp), hostname);
	*dir_r = store_path(s, mb_dir != NULL && *mb_dir ? mb_dir : NULL, "new");
	*dst_r = xasprintf("%s/%s,S=%llu", *dir_r, stamp, (unsigned long long)sst.st_size);
	free(mb_dir);
	return 0;
}

int store_deliver_linked(const char *data_dir, const char *address, const char *mailbox,
			 const char *dst, const char *qid, char **error_r)
{
	struct store *s;
	struct stat sst = { 0 };
	int64_t mb_id;
	char *mb_dir = NULL;
	const char *name = strrchr(dst, '/');
	name = name != NULL ? name + 1 : dst;
	if (deliver_store(data_dir, address, &s, error_r) < 0 ||
	    folder_dir(s, mailbox, &mb_id, &mb_dir, error_r) < 0 || stat(dst, &sst) < 0) {
		if (error_r != NULL && *error_r == NULL)
			store_set_error(error_r, "stat %s: %s", dst, strerror(errno));
		goto fail;
	}
	free(mb_dir);
	/* The file is durable in new/; now its index row. Should the row be lost (a crash
	 * with synchronous=NORMAL), the file is picked up from new/ at the next open. */
	char *file = xasprintf("new/%s", name);
	uint32_t uid, uidvalidity;
	/* The structure is cached with the row: parsing costs about 1 % of a delivery (measured
	 * by test_store_sync), and IMAP's first FETCH of new mail then writes nothing. Not for a
	 * large message: the parser wants it whole (mapped), and a worker's memory must not grow
	 * with the size of the mail it receives; the first FETCH parses it instead. */
	buf structure;
	buf_init(&structure, 0);
	if ((uint64_t)sst.st_size <= DELIVER_STRUCTURE_MAX)
		structure_for(&sst, dst, &structure);
	int ir = idx_add_message(s, mb_id, name, file, (uint64_t)sst.st_size, (int64_t)time(NULL),
				 0, NULL, &structure, &uid, &uidvalidity, error_r);
	buf_free(&structure);
	free(file);
	if (ir == 0) {
		TRACE(qid, "stored", "user=%s folder=%s uidvalidity=%u uid=%u file=%s", address,
		      mailbox ? mailbox : "INBOX", uidvalidity, uid, name);
		return 0;
	}
fail:
	/* Answering 4xx: the client sends it again, so the file must go. */
	unlink(dst);
	char *dir = xstrdup(dst);
	char *slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		fs_fsync_dir(dir);
	}
	free(dir);
	return -1;
}

/* link_new - link src to dst in a maildir's new/ (dir), making the maildir (a folder's when
 * folder) when missing */
static int link_new(const char *src, const char *dst, const char *dir, bool folder)
{
	if (link(src, dst) == 0)
		return 0;
	if (errno != ENOENT)
		return -1;
	char *mdir = xstrdup(dir);
	char *slash = strrchr(mdir, '/');	/* .../new */
	if (slash != NULL)
		*slash = '\0';
	int r = maildir_ensure(mdir, folder) < 0 ? -1 : link(src, dst);
	free(mdir);
	return r;
}

int store_deliver_file_to(const char *data_dir, const char *address, const char *mailbox,
			  const char *src_path, uint64_t size, const char *hostname,
			  const char *qid, char **error_r)
{
	char *dst = NULL, *dir = NULL;
	(void)size;
	if (store_deliver_prepare(data_dir, address, mailbox, src_path, hostname, &dst, &dir,
				  error_r) < 0)
		return -1;
	int r = -1;
	if (link_new(src_path, dst, dir, mailbox != NULL) < 0) {
		store_set_error(error_r, "deliver to %s: %s", dst, strerror(errno));
	} else if (fs_fsync_dir(dir) < 0) {
		store_set_error(error_r, "fsync %s: %s", dir, strerror(errno));
		unlink(dst);
	} else {
		r = store_deliver_linked(data_dir, address, mailbox, dst, qid, error_r);
	}
	free(dst);
	free(dir);
	return r;
}
