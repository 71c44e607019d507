/* store - the mail store: the only API protocol code uses to reach mailboxes.
 * Layout: data_dir/mail/<domain>/<local part>/ is a Maildir (tmp/ new/ cur/). Message files
 * are immutable once delivered and hold CRLF line ends exactly as received over SMTP. */
#ifndef TERN_STORE_H
#define TERN_STORE_H
#include <stddef.h>
#include <stdint.h>

/* store_maildir_path - the Maildir of address (lower-cased "local@domain"); characters that
 * are unsafe in a path ('/', '%', control bytes, a leading '.') are %XX-encoded. Caller frees. */
char *store_maildir_path(const char *data_dir, const char *address);

/* store_deliver_file - make the fsync'd, immutable file at src_path appear in the INBOX of
 * address (hard link into new/, the Maildir created when missing), durably: the directory
 * is fsync'd before this returns. hostname goes into the unique file name.
 * 0, or -1 with *error_r (caller frees). */
int store_deliver_file(const char *data_dir, const char *address, const char *src_path,
		       uint64_t size, const char *hostname, char **error_r);

#endif
