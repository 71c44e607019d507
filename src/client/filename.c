/* filename - safe attachment file names */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/filename.h"
#include "lib/xmalloc.h"

/* utf8_len - length of the valid UTF-8 sequence at s[0..n), or 0 */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	/* C1 controls (U+0080..U+009F) are as unwelcome in a file name as C0 ones */
	if (len == 2 && cp < 0xa0)
		return 0;
	return len;
}

void filename_sanitize(const char *name, const char *fallback, buf *out)
{
	buf b;
	buf_init(&b, 0);
	const unsigned char *s = (const unsigned char *)name;
	size_t n = strlen(name);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t l = utf8_len(s + i, n - i);
		if (l == 0 || c < 0x20 || c == 0x7f || c == '/' || c == '\\') {
			buf_putc(&b, '_');
			i += l ? l : 1;
			continue;
		}
		if (c == '.' && b.len > 0 && b.data[b.len - 1] == '.') {
			i++;
			continue;
		}
		buf_append(&b, s + i, l);
		i += l;
	}
	buf_append(&b, "", 0);
	/* trim: leading dots and blanks, trailing blanks and dots */
	size_t start = 0, end = b.len;
	while (start < end && (b.data[start] == '.' || b.data[start] == ' '))
		start++;
	while (end > start && (b.data[end - 1] == ' ' || b.data[end - 1] == '.'))
		end--;
	if (end - start > FILENAME_MAX_BYTES) {
		/* keep an extension of up to 16 bytes after the cut stem */
		const char *dot = memrchr(b.data + start, '.', end - start);
		size_t ext = dot ? (size_t)(b.data + end - dot) : 0;
		if (ext > 16)
			ext = 0;
		size_t keep = FILENAME_MAX_BYTES - ext;
		while (keep > 0 && ((unsigned char)b.data[start + keep] & 0xc0) == 0x80)
			keep--;
		size_t before = out->len;
		buf_append(out, b.data + start, keep);
		buf_append(out, b.data + end - ext, ext);
		if (out->len == before)
			buf_puts(out, fallback);
	} else if (end > start) {
		buf_append(out, b.data + start, end - start);
	} else {
		buf_puts(out, fallback);
	}
	buf_free(&b);
}

int filename_create(int dirfd, const char *name, char **used_r)
{
	const char *dot = strrchr(name, '.');
	if (dot == name)
		dot = NULL;
	size_t stem = dot ? (size_t)(dot - name) : strlen(name);
	for (unsigned k = 1; k <= 9999; k++) {
		char *try = k == 1 ? xstrdup(name)
			    : xasprintf("%.*s (%u)%s", (int)stem, name, k, dot ? dot : "");
		int fd = openat(dirfd, try, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				0644);
		if (fd >= 0) {
			*used_r = try;
			return fd;
		}
		int e = errno;
		free(try);
		if (e != EEXIST) {
			errno = e;
			return -1;
		}
	}
	errno = EEXIST;
	return -1;
}
