/* store_private - what the files of src/store/ share; nothing outside src/store/ includes it.
 * Calls point one way (a file calls only those listed after its arrow):
 *   deliver.c   store_deliver_file, its handle cache -> mailbox, structure, index, maildir
 *   mailbox.c   the account handle, mailboxes, status, lock  -> message, index, maildir
 *   message.c   messages: snapshots, reading, flags, expunge,
 *               copy/move, append, the raw structure cache   -> index, maildir
 *   structure.c store_msg_structures (parsed once, cached)   -> index, maildir
 *   sync.c      store_mailbox_changes                        -> index, maildir
 *   msgfiles.c  store_files_* (a download's file list)       -> index, maildir
 *   notify.c    store_notifier (inotify on the change files) -> maildir
 *   index.c     index.db only: schema, statements, transactions,
 *               shared connections, pick-up, store_notify    -> maildir, settings
 *   maildir.c   files and names only, the change file        -> (nothing)
 *   settings.c  process-wide settings */
#ifndef TERN_STORE_PRIVATE_H
#define TERN_STORE_PRIVATE_H
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "store/store.h"

#define STORE_INDEX_NAME "index.db"
#define STORE_LOCK_NAME "tern.lock"
#define STORE_CHANGES_NAME "tern.changes"	/* at the account root: see notify.h */
#define STORE_UIDVALIDITY_NAME "tern.uidvalidity"	/* the highest UIDVALIDITY given */
#define STORE_MAX_DIR 255		/* a directory name's limit */
#define STORE_MAX_KEYWORD 64
#define STORE_MAX_MB_KEYWORDS 256	/* distinct keywords a mailbox accepts */

enum stmt {
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SYNC_FULL, ST_SYNC_NORMAL,
	ST_META_GET, ST_META_SET,
	ST_MB_BY_NAME, ST_MB_BY_ID, ST_MB_INSERT, ST_MB_COUNTERS, ST_MB_SET_RECENT,
	ST_MB_SET_MTIME, ST_MB_GET_KEYWORDS, ST_MB_SET_KEYWORDS, ST_MB_DELETE, ST_MB_RENAME,
	ST_MB_LIST, ST_MB_CHILDREN,
	ST_MSG_INSERT, ST_MSG_BY_NAME, ST_MSG_BY_UID, ST_MSG_SET_FILE, ST_MSG_RANGE,
	ST_MSG_RANGE_FULL, ST_MSG_NAMES, ST_MSG_UIDS, ST_MSG_SET_FLAGS, ST_MSG_DELETE,
	ST_MSG_DELETE_MB, ST_MSG_STATUS, ST_MSG_COUNT_FROM, ST_MSG_CACHE_GET, ST_MSG_CACHE_SET,
	ST_UNLINK_ADD, ST_UNLINK_HAS, ST_UNLINK_LIST, ST_UNLINK_DEL, ST_UNLINK_DELETE_MB,
	ST_SUB_ADD, ST_SUB_DEL, ST_SUB_LIST, ST_SUB_HAS,
	ST_EXP_ADD, ST_EXP_CUT, ST_EXP_PRUNE, ST_EXP_FLOOR, ST_EXP_DELETE_MB, ST_EXP_SINCE,
	ST_MSG_CHANGED, ST_MSG_STRUCTURE,
	ST__COUNT
};

struct store_db;		/* index.c: the account's connection, shared in the process */

/* one handle (a session's, a delivery's); handles on one account share conn */
struct store {
	char *root;		/* the account's Maildir = INBOX */
	char host[64];		/* for unique file names */
	struct store_db *conn;
	sqlite3 *db;		/* conn's, copied for brevity */
	sqlite3_stmt **st;	/* conn's prepared statements [ST__COUNT] */
	int64_t inbox_id;
	store_change_fn *hook;
	void *hook_ctx;
	unsigned open_mailboxes;
	struct store_mailbox *mailboxes;	/* those open, for store_sleep */
	bool asleep;			/* store_sleep: conn let go until store_wake */
};

struct store_mailbox {
	struct store *s;
	struct store_mailbox *next;	/* s->mailboxes */
	int64_t id;
	char *name;
	uint32_t uidvalidity;
	uint32_t seen_uidnext;		/* for store_mailbox_changed */
	uint64_t seen_modseq;
	int lock_fd;
	struct store_uid_range *recent;	/* UIDs claimed as \Recent by this handle */
	size_t n_recent;
	struct store_msg *msgs;		/* the last snapshot */
	size_t n_msgs;
	char *kw_arena;			/* keyword strings of msgs */
	uint32_t *uids;
	size_t n_uids;
};

/* a mailbox row */
struct mbrow {
	int64_t id;
	char *name;
	char *dir;		/* relative to the root: "" for INBOX, ".a.b" */
	uint32_t uidvalidity, uidnext, recent_uid;
	uint64_t highestmodseq;
	int64_t cur_mtime;	/* cur/ as last fully checked (ns), 0 unknown */
	uint64_t expunge_floor;	/* highest MODSEQ of pruned expunge records, 0 none */
};

/* a list of directory entries */
struct entries {
	char **v;
	size_t n;
};

/* ---- maildir.c ---- */
void store_set_error(char **error_r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* maildir_ensure - dir/{tmp,new,cur} (and dir) exist; a new folder gets "maildirfolder";
 * whatever was created is fsync'd into its parent. 0 or -1 (errno). */
int maildir_ensure(const char *dir, bool folder);
/* store_name_normalize - check name; *norm_r = a copy with a first level "inbox" in any
 * case as "INBOX". 0 or STORE_INVALID. */
int store_name_normalize(const char *name, char **norm_r);
/* store_name_dir - the directory (relative to the root) of a normalized name: "" for
 * INBOX; NULL when too long. Caller frees. */
char *store_name_dir(const char *norm);
/* store_dir_name - the mailbox name of a root entry (".a.b"), NULL when it is not the
 * exact encoding of a valid name. Caller frees. */
char *store_dir_name(const char *entry);
/* store_path - root[/dir][/file]; caller frees */
char *store_path(const struct store *s, const char *dir, const char *file);
/* maildir_base - the part of a file name before its ":2," info; caller frees */
char *maildir_base(const char *entry);
/* maildir_info_flags - store_flag bits from a ":2,DFRST" info */
uint32_t maildir_info_flags(const char *entry);
/* maildir_served_size - bytes of fd from its start with each bare LF counted as CRLF */
int maildir_served_size(int fd, uint64_t *served_r);
/* maildir_list - the entries of path that do not start with '.', sorted; 0, or -1 (errno;
 * ENOENT for a missing directory) */
int maildir_list(const char *path, struct entries *e);
void entries_free(struct entries *e);
/* maildir_open_msg - open a message file of mailbox directory dir, known by name (base)
 * and file (as indexed, "new/…" or "cur/…"), wherever a concurrent move put it.
 * 0, STORE_NOTFOUND or STORE_ERROR. */
int maildir_open_msg(const struct store *s, const char *dir, const char *name, const char *file,
		     int *fd_r);
/* maildir_unlink_msg - unlink it wherever it is: 1 done, 0 not found, -1 error */
int maildir_unlink_msg(const struct store *s, const char *dir, const char *name,
		       const char *file);
/* maildir_link_msg - hard-link it to dst: 0, STORE_NOTFOUND, or -1 (errno; EXDEV and
 * EMLINK mean "copy instead") */
int maildir_link_msg(const struct store *s, const char *dir, const char *name, const char *file,
		     const char *dst);
/* maildir_rmtree - remove path and all below it, not following symlinks */
int maildir_rmtree(const char *path);
/* maildir_uidvalidity_floor - the highest UIDVALIDITY the account at root ever gave, as
 * saved outside index.db (0 when unknown): a rebuilt index starts above it. */
uint32_t maildir_uidvalidity_floor(const char *root);
/* maildir_uidvalidity_save - save v as that value (fsync'd); -1 (errno) on failure. */
int maildir_uidvalidity_save(const char *root, uint32_t v);
/* maildir_changes_bump - write the change file of the account at root (wakes notify.c's
 * watchers); *fd: the file, opened on first use (-1), -2 once that failed */
void maildir_changes_bump(const char *root, int *fd);
/* store_unique_name - a Maildir base name for a new file of size bytes */
void store_unique_name(const struct store *s, char *out, size_t outsz, uint64_t size);

/* ---- structure.c ---- */
/* structure_blob_of_file - parse the message file at path and encode its structure as the
 * cache holds it (store_msg_cache_get); b is initialised here, caller frees. 0 or -1. */
int structure_blob_of_file(const char *path, buf *b);

/* ---- settings.c ---- */
/* store_settings_current - the process-wide settings (store_settings_set), never NULL */
const struct store_settings *store_settings_current(void);

/* ---- index.c ---- */
/* db_open - attach s to the account's connection in this process, opening (and migrating)
 * index.db when no handle has it open, or when the file was replaced since. 0 or -1. */
int db_open(struct store *s, char **error_r);
/* db_close - detach s; the last handle closes the connection */
void db_close(struct store *s);
/* db_replaced - index.db is no longer the file s's connection has open (a lost index) */
bool db_replaced(const struct store *s);
/* db_st - a cached statement, reset and ready to bind */
sqlite3_stmt *db_st(struct store *s, enum stmt id);
/* db_exec - step st to the end and reset it: 0, or -1 */
int db_exec(sqlite3_stmt *st);
/* db_begin - BEGIN IMMEDIATE (waits up to the busy timeout); durable: this transaction's
 * COMMIT is synchronous=FULL */
int db_begin(struct store *s, bool durable, char **error_r);
int db_commit(struct store *s, char **error_r);
void db_rollback(struct store *s);
void db_set_error(struct store *s, char **error_r, const char *what);
/* idx_mb_by_name, idx_mb_by_id - 1 found (*r filled: mbrow_free it), 0 not found, -1 */
int idx_mb_by_name(struct store *s, const char *name, struct mbrow *r, char **error_r);
int idx_mb_by_id(struct store *s, int64_t id, struct mbrow *r, char **error_r);
/* idx_mb_current - the row of the opened mailbox mb: 0 (*r filled: mbrow_free it),
 * STORE_NOTFOUND ("no longer exists": deleted or renamed away meanwhile) or STORE_ERROR */
struct store_mailbox;
int idx_mb_current(struct store_mailbox *mb, struct mbrow *r, char **error_r);
void mbrow_free(struct mbrow *r);
/* idx_mb_insert - a new mailbox row with a fresh UIDVALIDITY; inside a transaction */
int idx_mb_insert(struct store *s, const char *name, const char *dir, int64_t *id_r,
		  char **error_r);
/* idx_mb_counters - set UIDNEXT and HIGHESTMODSEQ; inside a transaction */
int idx_mb_counters(struct store *s, int64_t id, uint32_t uidnext, uint64_t modseq);
/* idx_add_keywords - merge keywords into the mailbox's list; inside a transaction.
 * 0, STORE_INVALID (too many), -1 */
int idx_add_keywords(struct store *s, int64_t id, const char *keywords, char **error_r);
/* store_kw_has - keyword k (n bytes) is in the space-separated list (case-insensitive) */
bool store_kw_has(const char *list, const char *k, size_t n);
/* idx_msg_insert - a message row; inside a transaction. 0 or -1 */
int idx_msg_insert(struct store *s, int64_t id, uint32_t uid, const char *name,
		   const char *file, uint64_t size, int64_t date, uint32_t flags,
		   const char *keywords, uint64_t modseq);
/* idx_add_message - index one new file of mailbox id in its own transaction, with its
 * structure cache blob when structure is not NULL: 0 with *uid_r (the existing UID when a
 * pick-up indexed the name first), or <0 */
int idx_add_message(struct store *s, int64_t id, const char *name, const char *file,
		    uint64_t size, int64_t date, uint32_t flags, const char *keywords,
		    const buf *structure, uint32_t *uid_r, uint32_t *uidvalidity_r,
		    char **error_r);
/* idx_sync - pick up unindexed files of mailbox id, move new/ to cur/, finish pending
 * unlinks. *changes_r |= STORE_CHANGE_NEW when messages were added. 0 or <0. */
int idx_sync(struct store *s, int64_t id, unsigned *changes_r, char **error_r);
/* idx_finish_unlinks - unlink the files of expunged messages (of mailbox id, or all when
 * id == 0) and forget them. wal_synced: the caller's own commit just synced the WAL
 * (synchronous=FULL), which makes every earlier commit durable too; else the WAL is
 * fdatasync'd first when there is anything to unlink (an expunge in flight on a sync
 * thread may not be durable yet). */
int idx_finish_unlinks(struct store *s, int64_t id, bool wal_synced, char **error_r);
/* The same in three steps, so that the blocking middle one can run on another thread:
 * idx_unlinks_list reads the pending unlinks (of mailbox id, or all when id == 0);
 * idx_unlinks_run (any thread; touches files only, through a copy of the account's root)
 * unlinks the files and fsyncs their directories; idx_unlinks_forget (s's thread) forgets
 * those done, unless a directory fsync failed. idx_unlinks_free frees the list (also after
 * idx_unlinks_list failed: the list is then empty, the WAL can still be synced). */
struct idx_unlink {
	int64_t id;
	char *name, *file, *dir;	/* dir NULL: the mailbox is gone */
	bool done;
};
struct idx_unlinks {
	struct store *root;		/* root only (store_path, maildir_unlink_msg) */
	char *wal, *db;			/* index.db-wal and index.db */
	struct idx_unlink *v;
	size_t n;
	bool sync_wal;			/* set by the caller: fdatasync the WAL first, */
	bool sync_wal_always;		/* ...when there are unlinks, or always */
	int wal_err;			/* its errno: then nothing was unlinked */
	bool sync_failed;
};
int idx_unlinks_list(struct store *s, int64_t id, struct idx_unlinks *u, char **error_r);
/* store_expunge_in_flight - an expunge of the account at root waits for its WAL sync on a
 * thread of this process (store_expunge_deleted_begin): it finishes the pending unlinks */
bool store_expunge_in_flight(const char *root);
void idx_unlinks_run(struct idx_unlinks *u);
int idx_unlinks_forget(struct store *s, struct idx_unlinks *u, char **error_r);
void idx_unlinks_free(struct idx_unlinks *u);
/* idx_mb_lookup - the row of a normalized name, adopting a directory that has no row and
 * dropping a row whose directory has gone. 1, 0 (none), -1. */
int idx_mb_lookup(struct store *s, const char *norm, struct mbrow *r, char **error_r);
/* store_mb_find - normalize name and find its mailbox row (idx_mb_lookup). 0 with *r (free
 * with mbrow_free) and, when norm_r is not NULL, the normalized name (caller frees); else
 * STORE_INVALID / STORE_NOTFOUND / STORE_ERROR with *error_r set. */
int store_mb_find(struct store *s, const char *name, char **norm_r, struct mbrow *r,
		  char **error_r);
/* idx_expunge_record - remember that uid of mailbox id was expunged at modseq; inside the
 * expunging transaction. 0 or -1. */
int idx_expunge_record(struct store *s, int64_t id, uint32_t uid, uint64_t modseq);
/* idx_expunge_prune - keep the newest settings.expunge_keep records of mailbox id (whole
 * MODSEQs), raising its expunge_floor to the highest MODSEQ dropped; inside the transaction
 * that added records. 0 or -1. */
int idx_expunge_prune(struct store *s, int64_t id);
/* idx_mb_drop - delete a mailbox's rows (messages, pending unlinks, expunge records); inside
 * a transaction */
int idx_mb_drop(struct store *s, int64_t id);

/* store_notify - after a commit that changed mailbox: the handle's hook, the change file */
void store_notify(struct store *s, const char *mailbox, unsigned changes);

#endif
