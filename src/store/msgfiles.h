/* store/msgfiles - the file names of a mailbox's messages, held by a reader that opens many of
 * them in a row (a POP3 download): one index query for the list, then each open is one
 * openat() in the mailbox's directory, without SQLite (no read transaction, no lock calls).
 * Compact: a UID, an offset and the relative name ("cur/<base>:2,<flags>", about 60 bytes)
 * per message, in one arena. Separate from store.h so that the store's main API is
 * untouched; it uses the store's internals (store_private.h). */
#ifndef TERN_STORE_MSGFILES_H
#define TERN_STORE_MSGFILES_H
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct store_files;

/* store_files_load - the files of every message of mb as the index has them now (the handle
 * must be awake; one read transaction). 0 with *f_r (free with store_files_free), or <0 with
 * *error_r (caller frees). */
int store_files_load(struct store_mailbox *mb, struct store_files **f_r, char **error_r);
/* store_files_open - open the file of message uid for reading (O_NOFOLLOW): 0 with *fd_r;
 * STORE_NOTFOUND when uid is not in the list or its file is not under the name listed
 * (moved: flags changed, or gone; the caller may ask the index again, store_msg_open);
 * STORE_ERROR (errno) for other failures. Needs no SQLite, works while the handle sleeps. */
int store_files_open(const struct store_files *f, uint32_t uid, int *fd_r);
/* store_files_count, store_files_bytes - messages listed; bytes held (for tests, docs) */
size_t store_files_count(const struct store_files *f);
size_t store_files_bytes(const struct store_files *f);
/* store_files_free - close and free (NULL is fine); sets *f to NULL */
void store_files_free(struct store_files **f);

#endif
