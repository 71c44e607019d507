/* maildir - Maildir files and names only: paths, mailbox names, creation, message files, the
 * change file. The bottom of the store: it calls no other store file. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

void store_set_error(char **error_r, const char *fmt, ...)
{
	if (error_r == NULL)
		return;
	va_list ap;
	va_start(ap, fmt);
	buf b;
	buf_init(&b, 0);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	*error_r = b.data != NULL ? b.data : xstrdup("");
}

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

char *store_path(const struct store *s, const char *dir, const char *file)
{
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, s->root);
	if (dir != NULL && dir[0] != '\0')
		buf_printf(&b, "/%s", dir);
	if (file != NULL && file[0] != '\0')
		buf_printf(&b, "/%s", file);
	return b.data;
}

/* maildir_ensure - create tmp/ new/ cur/ under dir (and dir itself) when missing; what is
 * created is made durable (fsync of the directories that gained an entry) */
int maildir_ensure(const char *dir, bool folder)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[4096];
	bool created = false;
	struct stat st;
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT || fs_mkdirs(dir, 0700) < 0)
			return -1;
		created = true;
	}
	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subs[i]);
		if (mkdir(path, 0700) == 0) {
			created = true;
			continue;
		}
		if (errno != EEXIST)
			return -1;
	}
	if (folder) {
		snprintf(path, sizeof(path), "%s/maildirfolder", dir);
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0)
			close(fd);
	}
	if (!created)
		return 0;
	/* The new directories must survive a crash, and so must every level above that
	 * fs_mkdirs may have created (domain directory, mail/). */
	if (fs_fsync_dir(dir) < 0 || fs_fsync_parent(dir) < 0)
		return -1;
	char *up = xstrdup(dir);
	for (int level = 0; level < 2; level++) {
		char *slash = strrchr(up, '/');
		if (slash == NULL || slash == up)
			break;
		*slash = '\0';
		if (fs_fsync_parent(up) < 0) {
			free(up);
			return -1;
		}
	}
	free(up);
	return 0;
}

/* ---- mailbox names ---------------------------------------------------------------- */

int store_name_normalize(const char *name, char **norm_r)
{
	size_t len = strlen(name);
	if (len == 0 || len > STORE_MAX_DIR)
		return STORE_INVALID;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == 0x7f || c == '*' || c == '%')
			return STORE_INVALID;
		if (c == STORE_SEP && (i == 0 || i == len - 1 || name[i + 1] == STORE_SEP))
			return STORE_INVALID;
	}
	char *norm = xstrdup(name);
	if (strncasecmp(norm, "INBOX", 5) == 0 && (norm[5] == '\0' || norm[5] == STORE_SEP))
		memcpy(norm, "INBOX", 5);
	*norm_r = norm;
	return 0;
}

char *store_name_dir(const char *norm)
{
	if (strcmp(norm, "INBOX") == 0)
		return xstrdup("");
	buf b;
	buf_init(&b, 0);
	buf_putc(&b, '.');
	for (const char *p = norm; *p; p++) {
		if (*p == STORE_SEP)
			buf_putc(&b, '.');
		else if (*p == '.')
			buf_puts(&b, "%2E");
		else
			buf_putc(&b, *p);
	}
	if (b.len > STORE_MAX_DIR) {
		buf_free(&b);
		return NULL;
	}
	return b.data;
}

char *store_dir_name(const char *entry)
{
	if (entry[0] != '.' || entry[1] == '\0' || strcmp(entry, "..") == 0)
		return NULL;
	buf b;
	buf_init(&b, 0);
	for (const char *p = entry + 1; *p; p++) {
		if (*p == '.') {
			buf_putc(&b, STORE_SEP);
		} else if (*p == '%') {
			int hi = strnum_hexdigit(p[1]), lo = hi >= 0 ? strnum_hexdigit(p[2]) : -1;
			if (lo < 0) {
				buf_free(&b);
				return NULL;
			}
			buf_putc(&b, (char)(hi * 16 + lo));
			p += 2;
		} else {
			buf_putc(&b, *p);
		}
	}
	/* Only the exact encoding of a valid name counts: one name, one directory. */
	char *norm = NULL;
	char *dir = NULL;
	if (b.data == NULL || store_name_normalize(b.data, &norm) < 0 ||
	    (dir = store_name_dir(norm)) == NULL || strcmp(dir, entry) != 0) {
		free(norm);
		norm = NULL;
	}
	free(dir);
	buf_free(&b);
	return norm;
}

/* ---- message files ---------------------------------------------------------------- */

char *maildir_base(const char *entry)
{
	const char *colon = strchr(entry, ':');
	return colon ? xstrndup(entry, (size_t)(colon - entry)) : xstrdup(entry);
}

uint32_t maildir_info_flags(const char *entry)
{
	const char *info = strstr(entry, ":2,");
	uint32_t f = 0;
	if (info == NULL)
		return 0;
	for (const char *p = info + 3; *p; p++) {
		switch (*p) {
		case 'D': f |= STORE_F_DRAFT; break;
		case 'F': f |= STORE_F_FLAGGED; break;
		case 'R': f |= STORE_F_ANSWERED; break;
		case 'S': f |= STORE_F_SEEN; break;
		case 'T': f |= STORE_F_DELETED; break;
		default: break;
		}
	}
	return f;
}

int maildir_served_size(int fd, uint64_t *served_r)
{
	char chunk[65536];
	uint64_t n = 0;
	char prev = 0;
	off_t off = 0;
	for (;;) {
		ssize_t r = pread(fd, chunk, sizeof(chunk), off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		for (ssize_t i = 0; i < r; i++) {
			if (chunk[i] == '\n' && prev != '\r')
				n++;		/* served as CRLF */
			prev = chunk[i];
		}
		n += (uint64_t)r;
		off += r;
	}
	*served_r = n;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int maildir_list(const char *path, struct entries *e)
{
	e->v = NULL;
	e->n = 0;
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	size_t cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (e->n == cap) {
			cap = cap ? cap * 2 : 16;
			e->v = xreallocarray(e->v, cap, sizeof(*e->v));
		}
		e->v[e->n++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (e->n > 1)
		qsort(e->v, e->n, sizeof(*e->v), cmp_str);
	return 0;
}

void entries_free(struct entries *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->v[i]);
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

/* find_in_cur - last resort: a cur/ entry "<name>:…" (another program changed its info) */
static char *find_in_cur(const struct store *s, const char *dir, const char *name)
{
	char *cur = store_path(s, dir, "cur");
	DIR *d = opendir(cur);
	char *found = NULL;
	size_t nlen = strlen(name);
	if (d != NULL) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strncmp(de->d_name, name, nlen) == 0 && de->d_name[nlen] == ':') {
				found = xasprintf("%s/%s", cur, de->d_name);
				break;
			}
		}
		closedir(d);
	}
	free(cur);
	return found;
}

/* The places a message file can be, in order. Files only ever move from new/ to cur/, so
 * trying new/ before cur/ cannot miss a file that moves meanwhile. The indexed name comes
 * first for open (the usual hit); unlink must not miss, so it starts at new/. */
static char **msg_candidates(const struct store *s, const char *dir, const char *name,
			     const char *file, bool new_first, size_t *n_r)
{
	char **c = xcalloc(4, sizeof(*c));
	size_t n = 0;
	char *in_new = xasprintf("new/%s", name);
	char *in_cur = xasprintf("cur/%s:2,", name);
	if (!new_first)
		c[n++] = store_path(s, dir, file);
	c[n++] = store_path(s, dir, in_new);
	c[n++] = store_path(s, dir, in_cur);
	if (new_first || strcmp(file, in_new) != 0)
		c[n++] = store_path(s, dir, file);
	free(in_new);
	free(in_cur);
	*n_r = n;
	return c;
}

static void candidates_free(char **c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i]);
	free(c);
}

int maildir_open_msg(const struct store *s, const char *dir, const char *name, const char *file,
		     int *fd_r)
{
	size_t n;
	char **c = msg_candidates(s, dir, name, file, false, &n);
	int r = STORE_NOTFOUND;
	for (size_t i = 0; i < n && r == STORE_NOTFOUND; i++) {
		int fd = open(c[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0) {
			*fd_r = fd;
			r = 0;
		} else if (errno != ENOENT) {
			r = STORE_ERROR;
		}
	}
	candidates_free(c, n);
	if (r == STORE_NOTFOUND) {
		char *other = find_in_cur(s, dir, name);
		if (other != NULL) {
			int fd = open(other, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd >= 0) {
				*fd_r = fd;
				r = 0;
			}
			free(other);
		}
	}
	return r;
}

int maildir_unlink_msg(const struct store *s, const char *dir, const char *name, const char *file)
{
	size_t n;
	char **c = msg_candidates(s, dir, name, file, true, &n);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		if (unlink(c[i]) == 0)
			r = 1;
		else if (errno != ENOENT)
			r = -1;
	}
	candidates_free(c, n);
	if (r == 0) {
		char *other = find_in_cur(s, dir, name);
		if (other != NULL) {
			r = unlink(other) == 0 ? 1 : errno == ENOENT ? 0 : -1;
			free(other);
		}
	}
	return r;
}

int maildir_link_msg(const struct store *s, const char *dir, const char *name, const char *file,
		     const char *dst)
{
	size_t n;
	char **c = msg_candidates(s, dir, name, file, true, &n);
	int r = STORE_NOTFOUND;
	for (size_t i = 0; i < n && r == STORE_NOTFOUND; i++) {
		if (link(c[i], dst) == 0)
			r = 0;
		else if (errno != ENOENT)
			r = -1;
	}
	int e = errno;
	candidates_free(c, n);
	if (r == STORE_NOTFOUND) {
		char *other = find_in_cur(s, dir, name);
		if (other != NULL) {
			r = link(other, dst) == 0 ? 0 : errno == ENOENT ? STORE_NOTFOUND : -1;
			e = errno;
			free(other);
		}
	}
	errno = e;
	return r;
}

/* rmtree_at - remove everything in the directory fd (closed here) */
static int rmtree_at(int fd)
{
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -1;
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			continue;
		if (errno != EISDIR && errno != EPERM) {
			r = -1;
			continue;
		}
		int sub = openat(dirfd(d), de->d_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub < 0 || rmtree_at(sub) < 0 || unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0)
			r = -1;
	}
	closedir(d);
	return r;
}

int maildir_rmtree(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return unlink(path);	/* a symlink or file: remove it, not its target */
		return errno == ENOENT ? 0 : -1;
	}
	if (rmtree_at(fd) < 0)
		return -1;
	return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
}

void store_unique_name(const struct store *s, char *out, size_t outsz, uint64_t size)
{
	char name[200];
	fs_unique_name(name, sizeof(name), s->host);
	snprintf(out, outsz, "%s,S=%llu", name, (unsigned long long)size);
}

/* ---- the change file ------------------------------------------------------------------ */

/* maildir_changes_bump - a wake-up hint, not data: one pwrite of the time into the account's
 * change file, whose inotify IN_MODIFY wakes every store_notifier watching the account. No
 * fsync: after a crash nobody is waiting for it. A failure is logged once per handle and
 * costs only the prompt wake-up (sessions still sync at their next command). */
/* The floor lives beside index.db, not in it, so that it survives the loss of the index:
 * UIDVALIDITY is the time at creation, but bumped above the last one given, and mailboxes
 * made in a burst (the special-use ones at the first login) run ahead of the clock; a new
 * index built a few seconds later would give some of them their old values again, under
 * new UIDs (RFC 3501 §2.3.1.1 forbids it). Fixed width: one small pwrite, never torn. */
uint32_t maildir_uidvalidity_floor(const char *root)
{
	char *path = xasprintf("%s/%s", root, STORE_UIDVALIDITY_NAME);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	free(path);
	if (fd < 0)
		return 0;
	char b[16] = "";
	ssize_t n = pread(fd, b, sizeof(b) - 1, 0);
	close(fd);
	uint64_t v = 0;
	if (n > 0) {
		b[n] = '\0';
		b[strcspn(b, "\n")] = '\0';
		if (strnum_u64z(b, UINT32_MAX, &v) < 0)
			v = 0;
	}
	return (uint32_t)v;
}

int maildir_uidvalidity_save(const char *root, uint32_t v)
{
	char *path = xasprintf("%s/%s", root, STORE_UIDVALIDITY_NAME);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	free(path);
	if (fd < 0)
		return -1;
	char b[12];
	snprintf(b, sizeof(b), "%010u\n", (unsigned)v);
	int r = pwrite(fd, b, 11, 0) == 11 && fsync(fd) == 0 ? 0 : -1;
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

void maildir_changes_bump(const char *root, int *fd)
{
	if (*fd == -1) {
		char *path = xasprintf("%s/%s", root, STORE_CHANGES_NAME);
		*fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (*fd < 0) {
			log_warn("%s: open", path);
			*fd = -2;	/* do not try again on every commit */
		}
		free(path);
	}
	if (*fd < 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t v = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	if (pwrite(*fd, &v, sizeof(v), 0) != (ssize_t)sizeof(v))
		log_warn("%s/%s: write", root, STORE_CHANGES_NAME);
}
