/* backup - copying a live data dir: SQLite online backup, files by content */
#include "lib/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/xmalloc.h"

int backup_sqlite(const char *src, const char *dst, char **error_r)
{
	struct stat st;
	if (stat(src, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = xasprintf("%s: %s", src, strerror(errno));
		return -1;
	}
	sqlite3 *from = NULL, *to = NULL;
	int r = -1;
	/* read-write without CREATE: a WAL database's reader must be able to use its -shm */
	if (sqlite3_open_v2(src, &from, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
		*error_r = xasprintf("%s: %s", src, from ? sqlite3_errmsg(from) : "out of memory");
		goto out;
	}
	sqlite3_busy_timeout(from, 30000);
	if (sqlite3_open_v2(dst, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		*error_r = xasprintf("%s: %s", dst, to ? sqlite3_errmsg(to) : "out of memory");
		goto out;
	}
	sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
	if (b == NULL) {
		*error_r = xasprintf("%s: %s", dst, sqlite3_errmsg(to));
		goto out;
	}
	/* all pages in one step: one read transaction on src, so one snapshot */
	int rc, tries = 0;
	while ((rc = sqlite3_backup_step(b, -1)) == SQLITE_BUSY || rc == SQLITE_LOCKED) {
		if (++tries > 3000)
			break;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		*error_r = xasprintf("backup of %s: %s", src, sqlite3_errstr(rc));
		goto out;
	}
	r = 1;
out:
	sqlite3_close(from);
	sqlite3_close(to);
	return r;
}

int backup_copy_file(const char *src, const char *dst, struct backup_counts *c, char **error_r)
{
	int in = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (in < 0) {
		if (errno == ENOENT || errno == ELOOP)
			return 0;	/* gone (expunged, delivered) since it was listed */
		*error_r = xasprintf("%s: %s", src, strerror(errno));
		return -1;
	}
	if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(in);
		return 0;
	}
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		*error_r = xasprintf("%s: %s", dst, strerror(errno));
		close(in);
		return -1;
	}
	char buf[65536];
	ssize_t n;
	uint64_t total = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				*error_r = xasprintf("%s: %s", dst, strerror(errno));
				goto fail;
			}
			off += w;
		}
		total += (uint64_t)n;
	}
	if (n < 0) {
		*error_r = xasprintf("%s: %s", src, strerror(errno));
		goto fail;
	}
	struct timespec times[2] = { st.st_atim, st.st_mtim };
	if (futimens(out, times) < 0 || close(out) < 0) {
		*error_r = xasprintf("%s: %s", dst, strerror(errno));
		out = -1;
		goto fail;
	}
	close(in);
	c->files++;
	c->bytes += total;
	return 1;
fail:
	if (out >= 0)
		close(out);
	close(in);
	unlink(dst);
	return -1;
}

int backup_copy_dir(const char *src, const char *dst, struct backup_counts *c, char **error_r)
{
	if (mkdir(dst, 0700) < 0 && errno != EEXIST) {
		*error_r = xasprintf("mkdir %s: %s", dst, strerror(errno));
		return -1;
	}
	DIR *d = opendir(src);
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = xasprintf("%s: %s", src, strerror(errno));
		return -1;
	}
	int r = 0;
	struct dirent *e;
	while (r == 0 && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || (e->d_type != DT_REG && e->d_type != DT_UNKNOWN))
			continue;
		char *from = xasprintf("%s/%s", src, e->d_name);
		char *to = xasprintf("%s/%s", dst, e->d_name);
		if (backup_copy_file(from, to, c, error_r) < 0)
			r = -1;
		free(from);
		free(to);
	}
	closedir(d);
	return r;
}

int backup_db_finish(sqlite3 *db, int ok, const char *path, sqlite3_stmt **st, int n,
		     char **error_r)
{
	if (ok && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		ok = 0;
	if (!ok)
		*error_r = xasprintf("%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
	for (int i = 0; i < n; i++)
		sqlite3_finalize(st[i]);
	sqlite3_close(db);
	return ok ? 0 : -1;
}
