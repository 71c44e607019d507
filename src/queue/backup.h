/* queue/backup - a consistent copy of the outbound queue for `tern backup` */
#ifndef TERN_QUEUE_BACKUP_H
#define TERN_QUEUE_BACKUP_H
#include "lib/backup.h"

/* queue_backup - copy the spool directory src_spool to dst_spool (made 0700): a snapshot of
 * queue.db, then the queued message files (spool/queue/QID), then, in the copy, the entries
 * whose file went away in between (delivered or bounced since the snapshot) are deleted, and
 * so are files without an entry (queued after it). spool/incoming (transactions not yet
 * answered) is left empty. *messages_r: queue entries in the copy. 0, or -1 with *error_r. */
int queue_backup(const char *src_spool, const char *dst_spool, struct backup_counts *c,
		 unsigned *messages_r, char **error_r);

#endif
