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
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *st = db_st(s, ST_MSG_STRUCTURE);
		sqlite3_bind_int64(st, 1, mb->id);
		sqlite3_bind_int64(st, 2, uids[i]);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE) {
			sqlite3_reset(st);
			continue;	/* not in the mailbox: NULL */
		}
		if (rc != SQLITE_ROW) {
			db_set_error(s, error_r, "read structure");
			sqlite3_reset(st);
			r = STORE_ERROR;
			break;
		}
		trees[i] = blob_decode(sqlite3_column_blob(st, 0),
				       (size_t)sqlite3_column_bytes(st, 0));
		if (trees[i] == NULL) {
			names[i] = xstrdup((const char *)sqlite3_column_text(st, 1));
			files[i] = xstrdup((const char *)sqlite3_column_text(st, 2));
		}
		sqlite3_reset(st);
	}
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
