/* client/filename - attachment file names made safe to create, and files created under
 * them without ever leaving the target directory or replacing anything. */
#ifndef TERN_CLIENT_FILENAME_H
#define TERN_CLIENT_FILENAME_H
#include <stddef.h>
#include "lib/buf.h"

#define FILENAME_MAX_BYTES 200

/* filename_sanitize - append a safe single path component made from the UTF-8 name
 * (already decoded from RFC 2047 / RFC 2231): '/' and '\' become '_', control characters
 * (C0, DEL, C1) and invalid UTF-8 become '_', runs of dots collapse to one (so no ".."),
 * leading dots and blanks and trailing blanks and dots are removed, the result is cut to
 * FILENAME_MAX_BYTES (on a character boundary, keeping a short extension). An empty
 * result becomes fallback (itself assumed safe). */
void filename_sanitize(const char *name, const char *fallback, buf *out);

/* filename_create - create name in the directory dirfd with O_CREAT|O_EXCL|O_NOFOLLOW
 * (mode 0644); when it exists, "stem (2).ext", "stem (3).ext" … are tried. Returns the open
 * file descriptor and the name used in *used_r (caller frees), or -1 with errno. */
int filename_create(int dirfd, const char *name, char **used_r);

#endif
