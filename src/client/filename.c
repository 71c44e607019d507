/* filename - safe attachment file names */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/filename.h"
#include "lib/utf8.h"
#include "lib/xmalloc.h"

void filename_sanitize(const char *name, const char *fallback, buf *out)
{
	buf b;
	buf_init(&b, 0);
	const unsigned char *s = (const unsigned char *)name;
	size_t n = strlen(name);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		uint32_t cp = 0;
		size_t l = utf8_decode(s + i, n - i, &cp);
		/* C1 controls (U+0080..U+009F) are as unwelcome in a file name as C0 ones */
		bool c1 = l == 2 && cp < 0xa0;
		if (l == 0 || c1 || c < 0x20 || c == 0x7f || c == '/' || c == '\\') {
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
		/* the cut stem must not end in blanks or dots either (nor make ".." with the
		 * extension); it keeps its first character, which is neither */
		while (keep > 0 && (b.data[start + keep - 1] == ' ' || b.data[start + keep - 1] == '.'))
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
