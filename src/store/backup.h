/* store/backup - a consistent copy of one account for `tern backup` */
#ifndef TERN_STORE_BACKUP_H
#define TERN_STORE_BACKUP_H
#include "lib/backup.h"

/* store_backup_account - copy the account at src_root (its Maildir root) to dst_root (made
 * 0700; must not hold a copy yet): first a snapshot of index.db (lib/backup), then the files
 * of new/ and cur/ of INBOX and every folder. Message files never change once in new/ or
 * cur/, so the copy is consistent but for what happened between the snapshot and the file
 * copy: a message that arrived is a file without a row (indexed with a new UID when the
 * restored mailbox opens); a message expunged has a row without a file, which is removed
 * from the copy here with an expunge record (as EXPUNGE makes). A file moved from new/ to
 * cur/ during the copy is kept once, in cur/. Counts go to c. 0, or -1 with *error_r. */
int store_backup_account(const char *src_root, const char *dst_root, struct backup_counts *c,
			 char **error_r);

#endif
