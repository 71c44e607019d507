/* msgfiles - a mailbox's message file names for a reader that opens many in a row (see
 * msgfiles.h). Calls: -> index (the mailbox row, the connection), maildir (paths). */
#include "store/msgfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

struct store_files {
	int dirfd;		/* the mailbox's directory (O_PATH) */
	size_t n;
	uint32_t *uids;		/* ascending */
	uint32_t *off;		/* of each name in names */
	char *names;		/* "cur/...\0new/...\0" */
	size_t names_len;
};

/* files_query - uid and file of every message of mailbox id, ascending UID, into f */
static int files_query(struct store *s, int64_t id, struct store_files *f, char **error_r)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT uid, file FROM messages WHERE mailbox_id=?1"
				      " ORDER BY uid", -1, &st, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "list message files");
		return STORE_ERROR;
	}
	sqlite3_bind_int64(st, 1, id);
	buf names;
	buf_init(&names, 0);
	size_t cap = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *file = (const char *)sqlite3_column_text(st, 1);
		if (file == NULL || names.len > UINT32_MAX - 4096)
			continue;	/* cannot be served from the list: store_msg_open */
		if (f->n == cap) {
			cap = cap ? cap * 2 : 256;
			f->uids = xreallocarray(f->uids, cap, sizeof(*f->uids));
			f->off = xreallocarray(f->off, cap, sizeof(*f->off));
		}
		f->uids[f->n] = (uint32_t)sqlite3_column_int64(st, 0);
		f->off[f->n] = (uint32_t)names.len;
		buf_append(&names, file, strlen(file) + 1);
		f->n++;
	}
	if (rc != SQLITE_DONE)
		db_set_error(s, error_r, "list message files");
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		buf_free(&names);
		return STORE_ERROR;
	}
	/* exactly as large as needed: held for the whole download */
	f->names_len = names.len;
	if (names.len > 0) {
		f->names = xrealloc(names.data, names.len);
	} else {
		buf_free(&names);
		f->names = NULL;
	}
	if (f->n > 0) {
		f->uids = xreallocarray(f->uids, f->n, sizeof(*f->uids));
		f->off = xreallocarray(f->off, f->n, sizeof(*f->off));
	}
	return 0;
}

int store_files_load(struct store_mailbox *mb, struct store_files **f_r, char **error_r)
{
	struct store *s = mb->s;
	struct store_files *f = xcalloc(1, sizeof(*f));
	f->dirfd = -1;
	/* the mailbox's row and its messages in one read transaction */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		free(f);
		return STORE_ERROR;
	}
	struct mbrow row;
	int r = idx_mb_current(mb, &row, error_r);
	if (r == 0) {
		r = files_query(s, mb->id, f, error_r);
		if (r == 0) {
			char *dir = store_path(s, row.dir, NULL);
			/* followed as the full paths of store_msg_open are: an operator may have
			 * linked a Maildir elsewhere; the message file itself is O_NOFOLLOW */
			f->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (f->dirfd < 0) {
				store_set_error(error_r, "open %s: %s", dir, strerror(errno));
				r = STORE_ERROR;
			}
			free(dir);
		}
		mbrow_free(&row);
	}
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	if (r < 0) {
		store_files_free(&f);
		return r;
	}
	*f_r = f;
	return 0;
}

int store_files_open(const struct store_files *f, uint32_t uid, int *fd_r)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (f->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == f->n || f->uids[lo] != uid)
		return STORE_NOTFOUND;
	int fd = openat(f->dirfd, f->names + f->off[lo], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? STORE_NOTFOUND : STORE_ERROR;
	*fd_r = fd;
	return 0;
}

size_t store_files_count(const struct store_files *f)
{
	return f->n;
}

size_t store_files_bytes(const struct store_files *f)
{
	return sizeof(*f) + f->n * (sizeof(*f->uids) + sizeof(*f->off)) + f->names_len;
}

void store_files_free(struct store_files **fp)
{
	struct store_files *f = *fp;
	if (f == NULL)
		return;
	if (f->dirfd >= 0)
		close(f->dirfd);
	free(f->uids);
	free(f->off);
	free(f->names);
	free(f);
	*fp = NULL;
}
