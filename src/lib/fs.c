/* fs - durable file system helpers */
#include "lib/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

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
	size_t cap = (size_t)st.st_size, len = 0;
	char *data = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= max)
				break;
			cap = cap * 2 + 64 > max ? max : cap * 2 + 64;
			data = xrealloc(data, cap + 1);
		}
		ssize_t r = read(fd, data + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(data);
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
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
