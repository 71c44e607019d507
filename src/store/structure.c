/* structure - the MIME structure of messages, parsed once and cached in index.db
 * (store_msg_structures). On top of index.c and maildir.c; uses mime/ below it. */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "mime/tree.h"
#include "store/store_private.h"

#define SIZE_PREFIX 8		/* the file's size, little-endian, before the tree's encoding */

/* blob_decode - the tree of a cached blob, or NULL when it is missing, foreign or corrupt */
static struct mime_tree *blob_decode(const unsigned char *p, size_t len)
{
	if (p == NULL || len <= SIZE_PREFIX)
		return NULL;
	uint64_t size = 0;
	for (int i = SIZE_PREFIX - 1; i >= 0; i--)
		size = size << 8 | p[i];
	const char *err;
	return mime_tree_deserialize(p + SIZE_PREFIX, len - SIZE_PREFIX, size, 0, &err);
}

/* blob_encode - the cache blob of tree; caller frees b */
static int blob_encode(const struct mime_tree *tree, buf *b)
{
	buf_init(b, 0);
	unsigned char pre[SIZE_PREFIX];
	for (int i = 0; i < SIZE_PREFIX; i++)
		pre[i] = (unsigned char)(tree->msg_size >> (8 * i));
	if (buf_append(b, pre, sizeof(pre)) < 0 || mime_tree_serialize(tree, b) < 0) {
		buf_free(b);
		return -1;
	}
	return 0;
}

#define PARSE_READ_MAX (1024 * 1024)	/* files up to this are read, larger ones mapped */

/* parse_file - parse the (immutable) file. One up to PARSE_READ_MAX is read into memory:
 * unmapping a file costs a TLB shootdown on every CPU that ran one of the process's threads
 * (the worker's login threads), an interprocessor interrupt each, far dearer than copying
 * a few kilobytes (in a VM it was 15% of a worker's time when every FETCH mapped). */
static int parse_file(int fd, struct mime_tree **tree_r)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size == 0) {
		*tree_r = mime_tree_parse("", 0, NULL);
		return 0;
	}
	if (st.st_size <= PARSE_READ_MAX) {
		size_t len = (size_t)st.st_size, got = 0;
		char *data = xmalloc(len);
		while (got < len) {
			ssize_t k = pread(fd, data + got, len - got, (off_t)got);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				free(data);
				if (k == 0)
					errno = EIO;	/* shorter than its size: not the file it was */
				return -1;
			}
			got += (size_t)k;
		}
		*tree_r = mime_tree_parse(data, len, NULL);
		free(data);
		return 0;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	*tree_r = mime_tree_parse(p, (size_t)st.st_size, NULL);
	munmap(p, (size_t)st.st_size);
	return 0;
}

int structure_blob_of_file(const char *path, buf *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct mime_tree *tree = NULL;
	int r = parse_file(fd, &tree);
	close(fd);
	if (r == 0)
		r = blob_encode(tree, b);
	mime_tree_free(&tree);
	return r;
}

#define RANGE_GAP 8	/* UIDs at most this far apart are read by one range scan */

struct uid_at {
	uint32_t uid;
	size_t i;	/* its index in the caller's array */
};

static int cmp_uid_at(const void *a, const void *b)
{
	const struct uid_at *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

int store_msg_structures(struct store_mailbox *mb, const uint32_t *uids, size_t n,
			 struct mime_tree ***trees_r, char **error_r)
{
	struct store *s = mb->s;
	/* First every row, in ONE read transaction: each statement on its own would be a
	 * transaction of its own, taking and dropping SQLite's WAL read lock (fcntl calls)
	 * every time - 256 of them for a batch. The files of messages without a usable cached
	 * structure are parsed after it, outside any transaction. */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		return STORE_ERROR;
	}
	struct mbrow row;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
		return k;
	}
	struct mime_tree **trees = xcalloc(n + 1, sizeof(*trees));
	char **names = xcalloc(n + 1, sizeof(*names));	/* to parse: name and file */
	char **files = xcalloc(n + 1, sizeof(*files));
	bool *fresh = xcalloc(n + 1, sizeof(*fresh));	/* parsed now: to be cached */
	size_t n_fresh = 0;
	int r = 0;
	/* The batch in UID order, read by range scans: UIDs close together (a FETCH 1:50,
	 * SEARCH's whole mailbox) cost one seek and a step each, not a lookup each; a row
	 * between them that was not asked for is stepped over unread. */
	struct uid_at *order = xcalloc(n + 1, sizeof(*order));
	for (size_t i = 0; i < n; i++) {
		order[i].uid = uids[i];
		order[i].i = i;
	}
	qsort(order, n, sizeof(*order), cmp_uid_at);
	for (size_t a = 0, b; a < n && r == 0; a = b) {
		for (b = a + 1; b < n && order[b].uid - order[b - 1].uid <= RANGE_GAP; b++)
			;
		sqlite3_stmt *st = db_st(s, ST_MSG_STRUCTURE);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, order[a].uid);
		sqlite3_bind_int64(st, 3, order[b - 1].uid);
		size_t next = a;	/* the first of the run not yet matched */
		int rc = SQLITE_DONE;
		while (next < b && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			uint32_t u = (uint32_t)sqlite3_column_int64(st, 0);
			while (next < b && order[next].uid < u)
				next++;	/* not in the mailbox: NULL */
			for (; next < b && order[next].uid == u; next++) {
				size_t i = order[next].i;
				trees[i] = blob_decode(sqlite3_column_blob(st, 1),
						       (size_t)sqlite3_column_bytes(st, 1));
				if (trees[i] == NULL) {
					names[i] = xstrdup((const char *)sqlite3_column_text(st, 2));
					files[i] = xstrdup((const char *)sqlite3_column_text(st, 3));
				}
			}
		}
		if (next < b && rc != SQLITE_DONE) {
			db_set_error(s, error_r, "read structure");
			r = STORE_ERROR;
		}
		sqlite3_reset(st);
	}
	free(order);
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (names[i] == NULL)
			continue;
		int fd;
		k = maildir_open_msg(s, row.dir, names[i], files[i], &fd);
		if (k == 0) {
			if (parse_file(fd, &trees[i]) < 0) {
				store_set_error(error_r, "message %u of %s: %s", uids[i], mb->name,
						strerror(errno));
				r = STORE_ERROR;
			} else {
				fresh[i] = true;
				n_fresh++;
			}
			close(fd);
		} else if (k == STORE_ERROR) {
			store_set_error(error_r, "message %u of %s: open %s: %s", uids[i], mb->name,
					files[i], strerror(errno));
			r = STORE_ERROR;
		}
		/* STORE_NOTFOUND: expunged meanwhile (its file gone): NULL */
	}
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		free(files[i]);
	}
	free(names);
	free(files);
	mbrow_free(&row);
	/* Everything parsed now, in one write transaction: a FETCH BODYSTRUCTURE of 1:* on a
	 * new mailbox costs one commit, not one per message. Best effort: it is a cache. */
	if (r == 0 && n_fresh > 0) {
		char *err = NULL;
		if (db_begin(s, false, &err) == 0) {
			bool ok = true;
			for (size_t i = 0; i < n && ok; i++) {
				if (!fresh[i])
					continue;
				buf b;
				if (blob_encode(trees[i], &b) < 0)
					continue;
				sqlite3_stmt *st = db_st(s, ST_MSG_CACHE_SET);
				sqlite3_bind_int64(st, 1, mb->id);
				sqlite3_bind_int64(st, 2, uids[i]);
				sqlite3_bind_blob64(st, 3, b.data, b.len, SQLITE_TRANSIENT);
				ok = db_exec(st) == 0;
				buf_free(&b);
			}
			if (!ok) {
				db_set_error(s, &err, "write structure");
				db_rollback(s);
			} else {
				db_commit(s, &err);
			}
		}
		if (err != NULL) {
			log_warnx("%s: structure cache not written: %s", s->root, err);
			free(err);
		}
	}
	free(fresh);
	if (r < 0) {
		store_structures_free(&trees, n);
		return r;
	}
	*trees_r = trees;
	return 0;
}

void store_structures_free(struct mime_tree ***trees, size_t n)
{
	if (*trees == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		mime_tree_free(&(*trees)[i]);
	free(*trees);
	*trees = NULL;
}
