/* fs - durable file system helpers */
#include "lib/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"

int fs_mkdirs(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(tmp, mode) < 0 && errno != EEXIST)
				return -1;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	return 0;
}

int fs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

int fs_fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return fs_fsync_dir(".");
	if (slash == path)
		return fs_fsync_dir("/");
	char *dir = xstrndup(path, (size_t)(slash - path));
	int r = fs_fsync_dir(dir);
	int e = errno;
	free(dir);
	errno = e;
	return r;
}

int fs_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int fs_write_file_atomic(const char *path, const void *p, size_t n, mode_t mode)
{
	char name[128];
	char *tmp = xasprintf("%s.tmp.%s", path, fs_unique_name(name, sizeof(name), "t"));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		free(tmp);
		return -1;
	}
	if (fs_write_all(fd, p, n) < 0 || fsync(fd) < 0 || close(fd) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		free(tmp);
		errno = e;
		return -1;
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		errno = e;
		return -1;
	}
	free(tmp);
	return fs_fsync_parent(path);
}

int fs_read_file(const char *path, size_t max, char **data_r, size_t *len_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		errno = EFBIG;
		return -1;
	}
	int r = fs_read_fd(fd, max, data_r, len_r);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

#define TRUST_MAX_DEPTH 64	/* directories deep */
#define TRUST_MAX_LINKS 40	/* symlinks followed, as the kernel's limit */

/* untrusted - why st is not something only root controls; NULL when it is. Group write is
 * fine for group root; world write only on a sticky directory (others cannot rename or
 * remove root's entries there, and each entry is checked in turn). */
static const char *untrusted(const struct stat *st)
{
	if (st->st_uid != 0)
		return "is not owned by root";
	if ((st->st_mode & S_IWGRP) && st->st_gid != 0)
		return "is writable by its group";
	if ((st->st_mode & S_IWOTH) && !(S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX)))
		return "is writable by everyone";
	return NULL;
}

/* trusted_fail - *error_r = "seen/name: why", close the walk's descriptors; -1 */
static int trusted_fail(char **error_r, buf *seen, const char *name, const char *why,
			int *stack, size_t depth)
{
	*error_r = xasprintf("%s/%s: %s", seen->len > 0 ? buf_cstr(seen) : "", name, why);
	for (size_t i = 0; i < depth; i++)
		close(stack[i]);
	return -1;
}

int fs_open_trusted(const char *path, int flags, char **error_r)
{
	int stack[TRUST_MAX_DEPTH];
	size_t depth = 0;
	unsigned links = 0;
	struct stat st;
	buf seen, rest;
	int fd = -1;

	if (path[0] != '/') {
		*error_r = xasprintf("%s: not an absolute path", path);
		return -1;
	}
	buf_init(&seen, 0);
	buf_init(&rest, 0);
	buf_puts(&rest, path);
	stack[depth++] = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (stack[0] < 0 || fstat(stack[0], &st) < 0 || untrusted(&st) != NULL) {
		if (stack[0] < 0)
			depth = 0;
		trusted_fail(error_r, &seen, "", "the root directory is not root's", stack, depth);
		goto out;
	}
	for (;;) {
		/* the next component of rest, and whether any follows it */
		const char *r = buf_cstr(&rest);
		while (*r == '/')
			r++;
		if (*r == '\0') {
			trusted_fail(error_r, &seen, "", "the path names no file", stack, depth);
			goto out;
		}
		size_t n = strcspn(r, "/");
		char *name = xstrndup(r, n);
		const char *after = r + n;
		while (*after == '/')
			after++;
		bool last = *after == '\0';
		char *tail = xstrdup(after);
		buf_reset(&rest);
		buf_puts(&rest, tail);
		free(tail);
		int dirfd = stack[depth - 1];

		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
			if (strcmp(name, "..") == 0 && depth > 1) {
				close(stack[--depth]);
				char *slash = strrchr(buf_cstr(&seen), '/');
				seen.len = slash != NULL ? (size_t)(slash - seen.data) : 0;
			}
			free(name);
			if (last) {
				trusted_fail(error_r, &seen, "", "the path ends in . or ..", stack, depth);
				goto out;
			}
			continue;
		}
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			trusted_fail(error_r, &seen, name, strerror(errno), stack, depth);
			free(name);
			goto out;
		}
		if (S_ISLNK(st.st_mode)) {
			/* in a directory only root controls; the link itself must be root's too
			 * (a sticky directory lets others add links) */
			char target[PATH_MAX];
			ssize_t len = st.st_uid == 0 ? readlinkat(dirfd, name, target, sizeof(target) - 1)
						   : -1;
			if (st.st_uid != 0 || len <= 0 || ++links > TRUST_MAX_LINKS) {
				trusted_fail(error_r, &seen, name,
					     st.st_uid != 0 ? "is a symlink not owned by root"
					     : len <= 0	   ? "unreadable symlink"
							   : "too many symlinks",
					     stack, depth);
				free(name);
				goto out;
			}
			target[len] = '\0';
			if (target[0] == '/') {
				while (depth > 1)
					close(stack[--depth]);
				seen.len = 0;
			}
			tail = xasprintf("%s/%s", target, buf_cstr(&rest));
			buf_reset(&rest);
			buf_puts(&rest, tail);
			free(tail);
			free(name);
			continue;
		}
		fd = last ? openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC)
			  : openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		const char *why = fd < 0 ? strerror(errno) : fstat(fd, &st) < 0 ? strerror(errno)
										: untrusted(&st);
		if (why == NULL && !last && depth == TRUST_MAX_DEPTH)
			why = "too deep";
		if (why != NULL) {
			if (fd >= 0)
				close(fd);
			fd = -1;
			trusted_fail(error_r, &seen, name, why, stack, depth);
			free(name);
			goto out;
		}
		buf_putc(&seen, '/');
		buf_puts(&seen, name);
		free(name);
		if (last) {
			for (size_t i = 0; i < depth; i++)
				close(stack[i]);
			break;
		}
		stack[depth++] = fd;
		fd = -1;
	}
out:
	buf_free(&seen);
	buf_free(&rest);
	return fd;
}

int fs_read_fd(int fd, size_t max, char **data_r, size_t *len_r)
{
	size_t cap = 4096, len = 0;
	char *data = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap > max)
				break;
			cap = cap * 2;
			data = xrealloc(data, cap + 1);
		}
		ssize_t r = read(fd, data + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			explicit_bzero(data, len);
			free(data);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > max) {
		explicit_bzero(data, len);
		free(data);
		errno = EFBIG;
		return -1;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

char *fs_unique_name(char *out, size_t outsz, const char *host)
{
	static unsigned long counter;
	struct timeval tv;
	uint32_t rnd = 0;
	gettimeofday(&tv, NULL);
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
		rnd = (uint32_t)tv.tv_usec ^ (uint32_t)getpid();
	snprintf(out, outsz, "%lld.M%06ldP%ldQ%luR%08x.%s", (long long)tv.tv_sec,
		 (long)tv.tv_usec, (long)getpid(), ++counter, rnd, host);
	return out;
}
