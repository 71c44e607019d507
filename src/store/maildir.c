/* maildir - Maildir files: paths, creation, durable delivery by hard link */
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

/* path_escape - append s to b with bytes unsafe in a file name %XX-encoded */
static void path_escape(buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '/' || c == '%' || c < 0x20 || c == 0x7f || (i == 0 && c == '.')) {
			buf_putc(b, '%');
			buf_putc(b, hex[c >> 4]);
			buf_putc(b, hex[c & 15]);
		} else {
			buf_putc(b, (char)c);
		}
	}
}

char *store_maildir_path(const char *data_dir, const char *address)
{
	buf b;
	buf_init(&b, 0);
	const char *at = strrchr(address, '@');
	const char *local = address;
	size_t local_len = at ? (size_t)(at - address) : strlen(address);
	const char *domain = at ? at + 1 : "localhost";
	buf_printf(&b, "%s/mail/", data_dir);
	path_escape(&b, domain, strlen(domain));
	buf_putc(&b, '/');
	/* lower-case the local part's ASCII letters: lookups are case-insensitive */
	char *lower = xstrndup(local, local_len);
	for (char *p = lower; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	path_escape(&b, lower, local_len);
	free(lower);
	return b.data;
}

/* maildir_ensure - create tmp/ new/ cur/ under dir (and dir itself) when missing */
static int maildir_ensure(const char *dir)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[4096];
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if (mkdir(path, 0700) == 0 || errno == EEXIST)
			continue;
		if (errno != ENOENT || fs_mkdirs(path, 0700) < 0)
			return -1;
	}
	return 0;
}

int store_deliver_file(const char *data_dir, const char *address, const char *src_path,
		       uint64_t size, const char *hostname, char **error_r)
{
	char *dir = store_maildir_path(data_dir, address);
	char *newdir = xasprintf("%s/new", dir);
	char name[256];
	int r = -1;
	fs_unique_name(name, sizeof(name), hostname);
	char *dst = xasprintf("%s/%s,S=%llu", newdir, name, (unsigned long long)size);

	if (link(src_path, dst) < 0) {
		if (errno != ENOENT || maildir_ensure(dir) < 0 || link(src_path, dst) < 0) {
			*error_r = xasprintf("deliver to %s: %s", dst, strerror(errno));
			goto out;
		}
		/* A new Maildir: its own entry and its domain's must be durable too. */
		char *domdir = xstrndup(dir, (size_t)(strrchr(dir, '/') - dir));
		int fr = fs_fsync_dir(dir) | fs_fsync_dir(domdir) | fs_fsync_parent(domdir);
		free(domdir);
		if (fr < 0) {
			*error_r = xasprintf("fsync %s: %s", dir, strerror(errno));
			goto out;
		}
	}
	if (fs_fsync_dir(newdir) < 0) {
		*error_r = xasprintf("fsync %s: %s", newdir, strerror(errno));
		unlink(dst);
		goto out;
	}
	r = 0;
out:
	free(dst);
	free(newdir);
	free(dir);
	return r;
}
