/* store - the mail store: the only API protocol code uses to reach mailboxes.
 *
 * Layout. data_dir/mail/<domain>/<local part>/ is the account's Maildir root and is INBOX
 * (tmp/ new/ cur/). Folders are Maildir++ subdirectories of the root: the folder "a/b.c" is
 * the directory ".a.b%2Ec" (the IMAP hierarchy separator is '/', STORE_SEP; '.' joins the
 * levels in the directory name, a '.' inside a level is written %2E). The index, index.db
 * (SQLite, WAL), sits at the root and holds every mailbox of the account: per mailbox
 * UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ; per message UID, file, served size, INTERNALDATE,
 * flags, keywords, MODSEQ and its parsed MIME structure (a cache); per expunged message an
 * expunge record (UID, MODSEQ). index.db's schema is versioned (lib/dbschema).
 *
 * Message files are immutable once delivered. Those that arrive over SMTP hold CRLF line
 * ends exactly as received; a file that another program drops into new/ or cur/ may have LF
 * ends, and its size is indexed as served (every bare LF counted as CRLF). Files are never
 * renamed for flag changes: the index, not the ":2,FLAGS" info of a file name, is the truth
 * for flags (the info is read once, when a foreign file is first indexed).
 *
 * Crash safety. A message file is fsync'd into new/ before its index row is committed, so a
 * row lost in a crash (index.db runs synchronous=NORMAL) only means the file is picked up
 * again at the next open, with a new UID. Opening a mailbox moves the files of new/ to cur/
 * (rows first, renames after the commit; readers try both places). Expunge deletes the rows
 * and records the files as pending unlinks in one synchronous=FULL transaction, then unlinks
 * and fsyncs, then forgets the pending entries: an interrupted expunge is finished at the next
 * open and its files are never taken for new mail. A lost index.db is rebuilt from the files
 * (new UIDVALIDITY, flags from the ":2," info of the names).
 *
 * Concurrency. Any number of processes (workers, the queue runner, tern commands) may use one
 * account at once. Within a process, every handle on an account (store_open per session,
 * store_deliver_file's cache) shares one SQLite connection and its prepared statements,
 * counted by reference: the last store_close closes it. This is safe because a process is
 * single-threaded and every store call ends its transaction before it returns. Every change
 * is one SQLite write transaction (BEGIN IMMEDIATE): read-modify-write of flags cannot lose an
 * update, and a change is visible to every other handle as soon as the call returns. Readers
 * never wait (WAL). A writer waits for another process's write lock at most
 * store_settings.busy_timeout_ms: STORE_BUSY_TIMEOUT_WORKER (250 ms) in the workers, whose
 * event loop must not freeze; STORE_BUSY_TIMEOUT_DEFAULT (10 s) in the queue runner and the
 * CLI. Past it the call fails with STORE_ERROR, which every protocol reports as "try again"
 * (SMTP 451 4.3.0, POP3 -ERR [SYS/TEMP], IMAP NO [UNAVAILABLE]). Write transactions are kept
 * short so that 250 ms is ample: files are linked, copied, fsync'd and measured outside them;
 * measured (store_stats, -O2, ext4): a delivery or a flag change 0.1-0.4 ms; on a mailbox of
 * 10,000 messages pick-up of all of them 55-81 ms, flags on all 36-45 ms, copy of all 96-132
 * ms, move of half 66-73 ms, expunge of half 43-62 ms (synchronous=FULL). A write held
 * longer than 100 ms is logged. A handle is not thread-safe and must not cross fork() (a
 * child forgets its parent's connections without closing them).
 *
 * Wake-ups. Every commit that changes a mailbox also writes the account's change file
 * (tern.changes at the Maildir root); store/notify.h turns that into one inotify event per
 * account per process, so that sessions in every process learn of changes within
 * milliseconds without polling, and then ask store_mailbox_changes() what changed.
 *
 * Expunged messages. An expunge unlinks the files at once (after its commit). A session that
 * still shows a message another session expunged gets STORE_NOTFOUND from store_msg_open,
 * store_reader_open and store_msg_structures (NULL tree) until it learns of the expunge;
 * IMAP answers such a FETCH with NO [EXPUNGEISSUED] (IMAP4rev2, RFC 9051 7.1) or a plain NO
 * (rev1; RFC 3501 7.4.1 allows it) - as Dovecot does on Maildir - and sends the EXPUNGE at
 * its next chance. Keeping expunged files readable would need to know which sessions, in
 * which processes, still show them: reference counts across processes that a crash would
 * leak. A reader opened before the expunge keeps its descriptor, so a FETCH that is already
 * streaming completes.
 *
 * Results. Calls that can fail return 0 (or a documented positive value) on success and a
 * negative enum store_result on failure, with *error_r set to a message the caller frees
 * (error_r may be NULL when the caller does not want it). STORE_ERROR is "temporary: try
 * again later" (I/O, database, lock timeout); the other codes are the caller's mistake or a
 * state the protocol reports (IMAP NONEXISTENT, ALREADYEXISTS, TRYCREATE, HASCHILDREN). */
#ifndef TERN_STORE_H
#define TERN_STORE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STORE_SEP '/'			/* IMAP hierarchy separator of mailbox names */

enum store_result {
	STORE_OK = 0,
	STORE_ERROR = -1,		/* temporary: I/O, database, busy */
	STORE_NOTFOUND = -2,		/* no such mailbox */
	STORE_EXISTS = -3,		/* the mailbox exists already */
	STORE_INVALID = -4,		/* bad name or keyword, or not allowed (delete INBOX) */
	STORE_HASCHILDREN = -5,		/* delete of a mailbox with sub-mailboxes */
};

/* store_maildir_path - the Maildir of address (lower-cased "local@domain"); characters that
 * are unsafe in a path ('/', '%', control bytes, a leading '.') are %XX-encoded. Caller frees. */
char *store_maildir_path(const char *data_dir, const char *address);

/* store_deliver_file - the delivery entry point (store_deliver of the design): make the
 * fsync'd, immutable file at src_path appear in the INBOX of address, durably and indexed:
 * hard link into new/ (the Maildir and index created when missing), fsync new/, then commit
 * its index row (next UID, no flags, INTERNALDATE now, size that of the file, which must have
 * CRLF line ends, as SMTP guarantees) with the message's parsed MIME structure when it is at
 * most 1 MiB (see store_msg_structures; a larger one is parsed at its first FETCH, so that
 * a worker's memory does not grow with the mail it receives). hostname goes into the unique
 * file name. If the index cannot be written the link is removed again and -1 returned (the
 * caller answers 4xx). Keeps a few
 * account handles open per process (the most recent accounts; they share the connection of
 * any session on the same account), so that a delivery costs one small transaction. Wakes the
 * account's watchers in every process (store/notify.h). 0, or -1 with *error_r (caller
 * frees). */
int store_deliver_file(const char *data_dir, const char *address, const char *src_path,
		       uint64_t size, const char *hostname, char **error_r);
/* store_deliver_file_to - store_deliver_file into the folder mailbox (NULL: INBOX), which
 * is created when missing (a "Junk" folder is what IMAP lists as \\Junk, RFC 6154). qid
 * (may be NULL): the queue id the trace journal's "stored" event names (lib/trace.h). */
int store_deliver_file_to(const char *data_dir, const char *address, const char *mailbox,
			  const char *src_path, uint64_t size, const char *hostname,
			  const char *qid, char **error_r);
/* store_deliver_prepare / store_deliver_linked - store_deliver_file_to in two halves, for a
 * caller that makes the link and its fsync elsewhere (off the event loop, many at once):
 * prepare names the new/ file *dst_r (in the directory *dir_r; both the caller's to free)
 * that src_path is to be linked to; once it is linked and dir fsync'd, linked indexes it.
 * When linked fails it removes the file again. 0, or -1 with *error_r. */
int store_deliver_prepare(const char *data_dir, const char *address, const char *mailbox,
			  const char *src_path, const char *hostname, char **dst_r, char **dir_r,
			  char **error_r);
int store_deliver_linked(const char *data_dir, const char *address, const char *mailbox,
			 const char *dst, const char *qid, char **error_r);
/* store_deliver_cache_close - close the handles store_deliver_file keeps and free its cached
 * structure (at a worker's or the queue runner's exit, and in tests). */
void store_deliver_cache_close(void);

/* ==== the subset the POP3 server uses: signatures and semantics fixed ==== */
struct store;			/* one account: its Maildir tree + index.db */
struct store_mailbox;		/* one opened mailbox (a snapshot view + live operations) */

enum store_flag {
	STORE_F_SEEN = 1 << 0, STORE_F_ANSWERED = 1 << 1, STORE_F_FLAGGED = 1 << 2,
	STORE_F_DELETED = 1 << 3, STORE_F_DRAFT = 1 << 4, STORE_F_RECENT = 1 << 5,
};
/* the flags that are stored (\Recent is per session, never stored) */
#define STORE_F_STORED (STORE_F_SEEN | STORE_F_ANSWERED | STORE_F_FLAGGED | STORE_F_DELETED | \
			STORE_F_DRAFT)

struct store_msg {
	uint32_t uid;
	uint64_t size;		/* octets as served (CRLF line ends): what POP3 RETR / IMAP
				   RFC822.SIZE report. Equals the file size for CRLF files. */
	int64_t internal_date;	/* unix time */
	uint32_t flags;		/* enum store_flag bits; STORE_F_RECENT when recent for this
				   handle (see store_mailbox_claim_recent) */
	uint64_t modseq;
	const char *keywords;	/* space-separated keywords, "" when none; owned like the
				   array that holds this struct */
};

/* store_open - open the account of address (lower-case local@domain) under data_dir,
 * creating its Maildir and index.db when missing (and bringing index.db to the current
 * schema version, lib/dbschema). Each call returns a handle of its own (its own hook and
 * mailboxes); handles on one account in one process share one SQLite connection (see
 * "Concurrency"). 0 or -1 with *error_r (caller frees). */
int store_open(const char *data_dir, const char *address, struct store **store_r, char **error_r);
/* store_close - close the handle (NULL is fine; the last handle on an account closes its
 * connection); every mailbox opened through it must have been closed before. Sets *store to
 * NULL. */
void store_close(struct store **store);
/* store_sleep - an idle handle lets go of what it can rebuild: its share of the account's
 * SQLite connection (closed when no other handle in the process uses it: the connection,
 * its page cache and prepared statements are most of what an idle IMAP session would
 * otherwise hold) and the snapshots of its open mailboxes. Only between calls, never inside
 * a transaction. Every other store call on the handle (and its mailboxes) must be preceded by
 * store_wake; store_close and store_mailbox_close are fine while asleep. */
void store_sleep(struct store *s);
/* store_wake - reattach a sleeping handle (a no-op when awake): 0, or -1 with *error_r */
int store_wake(struct store *s, char **error_r);

/* store_mailbox_open - open a mailbox ("INBOX" any case, or a folder name): first picks up
 * files that appeared in new/ (or cur/) without an index row, assigning UIDs (in file name
 * order, which is arrival order for Maildir names), and moves the files of new/ to cur/.
 * STORE_NOTFOUND when there is no such mailbox. */
int store_mailbox_open(struct store *s, const char *name, struct store_mailbox **mb_r,
		       char **error_r);
/* store_mailbox_close - release the handle, its snapshot and its POP3 lock (NULL is fine). */
void store_mailbox_close(struct store_mailbox **mb);
uint32_t store_mailbox_uidvalidity(const struct store_mailbox *mb);
/* store_mailbox_messages - a snapshot of the messages, ascending UID; *msgs_r is owned by mb
 * and valid until the next call on mb or close. */
int store_mailbox_messages(struct store_mailbox *mb, const struct store_msg **msgs_r, size_t *n_r,
			   char **error_r);
/* store_msg_open - open message uid for reading: fd positioned at 0 (caller closes) and
 * *crlf_r = true when the file already has CRLF line ends (else LF ends must be converted
 * when serving). STORE_NOTFOUND when the message is not (or no longer) in the mailbox. */
int store_msg_open(struct store_mailbox *mb, uint32_t uid, int *fd_r, bool *crlf_r, char **error_r);
/* store_expunge - remove the messages with these UIDs (file and index row), durably, whatever
 * their flags; UIDs not in the mailbox are ignored. The mailbox's HIGHESTMODSEQ grows by one
 * and each expunged UID gets an expunge record with it (see store_mailbox_changes). */
int store_expunge(struct store_mailbox *mb, const uint32_t *uids, size_t n, char **error_r);
/* store_lock_exclusive - a POP3-style exclusive session lock on the mailbox (flock on a lock
 * file, LOCK_NB): 1 taken, 0 held by another session (even in the same process, or this
 * handle), -1 error. Released by store_mailbox_close. Advisory: only callers of this
 * function are kept out; IMAP sessions and deliveries go on. */
int store_lock_exclusive(struct store_mailbox *mb, char **error_r);

/* ==== mailboxes ==== */
/* Mailbox names are byte strings (UTF-8 or modified UTF-7 as the protocol has them: the store
 * does not convert), levels separated by '/'. Valid: 1..255 bytes of directory name, no
 * control bytes, no '*' or '%', no empty level (no leading, trailing or doubled '/'). The
 * first level "INBOX" in any case means INBOX. */

/* store_mailbox_create - create the mailbox name (its parents need not exist: Maildir++ has
 * no directories for them). STORE_EXISTS, STORE_INVALID (bad name, INBOX). */
int store_mailbox_create(struct store *s, const char *name, char **error_r);
/* store_mailbox_delete - delete the mailbox, its messages and its expunge records. STORE_NOTFOUND,
 * STORE_INVALID (INBOX), STORE_HASCHILDREN (sub-mailboxes exist: RFC 9051 allows refusing).
 * Subscriptions are left alone (RFC 3501). */
int store_mailbox_delete(struct store *s, const char *name, char **error_r);
/* store_mailbox_rename - rename old_name and all its sub-mailboxes to new_name, keeping
 * UIDVALIDITY, UIDs and flags. Renaming INBOX creates new_name and moves every message of
 * INBOX into it, leaving INBOX empty (RFC 3501 6.3.5). STORE_NOTFOUND, STORE_EXISTS (new_name
 * or one of the renamed children's new names exists), STORE_INVALID. */
int store_mailbox_rename(struct store *s, const char *old_name, const char *new_name,
			 char **error_r);

struct store_mailbox_info {
	char *name;		/* normalized ("INBOX" upper case) */
	bool subscribed;
	bool has_children;	/* some other mailbox is below this one */
};
/* store_mailbox_list - every existing mailbox, sorted by name (INBOX first). Directories that
 * another program created are adopted (new UIDVALIDITY, files indexed); index rows whose
 * directory has gone are dropped. Mailboxes that only exist as a level of a deeper name
 * ("a" for "a/b" alone) are not listed: IMAP shows them \NonExistent or \Noselect.
 * *list_r: caller frees with store_mailbox_list_free. */
int store_mailbox_list(struct store *s, struct store_mailbox_info **list_r, size_t *n_r,
		       char **error_r);
void store_mailbox_list_free(struct store_mailbox_info **list, size_t n);

/* store_subscribe - add (on) or remove (!on) name from the subscriptions; the mailbox need
 * not exist. STORE_INVALID for a bad name. */
int store_subscribe(struct store *s, const char *name, bool on, char **error_r);
/* store_subscriptions - every subscribed name, sorted; caller frees with
 * store_names_free. */
int store_subscriptions(struct store *s, char ***names_r, size_t *n_r, char **error_r);
void store_names_free(char ***names, size_t n);

struct store_status {
	uint32_t messages;
	uint32_t unseen;		/* without \Seen */
	uint32_t recent;		/* not yet claimed by any session */
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint32_t first_unseen_uid;	/* 0 when every message is \Seen */
	uint64_t highestmodseq;
	uint64_t size;			/* sum of served sizes (STATUS SIZE) */
};
/* store_mailbox_status - counts of mailbox name (picks up new files first, like open).
 * STORE_NOTFOUND. */
int store_mailbox_status(struct store *s, const char *name, struct store_status *st_r,
			 char **error_r);

/* ==== an opened mailbox ==== */
/* store_mailbox_name - the normalized name given at open (valid until close). */
const char *store_mailbox_name(const struct store_mailbox *mb);
/* store_mailbox_uidnext, store_mailbox_highestmodseq - current values from the index. */
int store_mailbox_uidnext(struct store_mailbox *mb, uint32_t *uidnext_r, char **error_r);
int store_mailbox_highestmodseq(struct store_mailbox *mb, uint64_t *modseq_r, char **error_r);
/* store_mailbox_keywords - every keyword ever set in the mailbox (for IMAP FLAGS and
 * PERMANENTFLAGS), space-separated; caller frees. */
int store_mailbox_keywords(struct store_mailbox *mb, char **keywords_r, char **error_r);
/* store_mailbox_sync - pick up files that appeared without an index row, as at open (IMAP
 * NOOP, CHECK, IDLE polls). */
int store_mailbox_sync(struct store_mailbox *mb, char **error_r);
/* store_mailbox_changed - the cheap check for another handle's changes (kept for callers that
 * only need "anything?"; IMAP uses store_mailbox_changes): 1 when UIDNEXT or
 * HIGHESTMODSEQ differ from what this handle last saw (at open, at the previous call, or
 * after its own change when nothing else had changed before it), then remembers the new
 * values; 0 unchanged; <0 error. Does not look at the directories (store_mailbox_sync
 * does). */
int store_mailbox_changed(struct store_mailbox *mb, char **error_r);
/* store_mailbox_claim_recent - take \Recent (RFC 3501) for this handle: the messages no
 * session has claimed yet become recent for this handle only (STORE_F_RECENT in its
 * snapshots). IMAP SELECT calls it (EXAMINE peeks instead), and again after it sees new mail.
 * Returns the number of messages claimed, or <0. */
int store_mailbox_claim_recent(struct store_mailbox *mb, char **error_r);
/* store_mailbox_peek_recent - the same for a read-only session (IMAP EXAMINE): the messages
 * no session has claimed yet become recent for this handle too, but stay unclaimed (a
 * later claim by any session gets them). Returns the number of messages newly taken. */
int store_mailbox_peek_recent(struct store_mailbox *mb, char **error_r);

/* UID ranges: first..last inclusive (first <= last); UINT32_MAX stands for "*". */
struct store_uid_range {
	uint32_t first, last;
};

/* store_mailbox_messages_in - like store_mailbox_messages, for the messages in ranges (all
 * when n_ranges == 0) whose MODSEQ > changedsince (0: any), ascending UID, no duplicates. */
int store_mailbox_messages_in(struct store_mailbox *mb, const struct store_uid_range *ranges,
			      size_t n_ranges, uint64_t changedsince,
			      const struct store_msg **msgs_r, size_t *n_r, char **error_r);
/* store_mailbox_uids - just the UIDs, ascending (for IMAP's sequence numbers): *uids_r
 * owned by mb, valid until the next call on mb or close. */
int store_mailbox_uids(struct store_mailbox *mb, const uint32_t **uids_r, size_t *n_r,
		       char **error_r);

/* ==== flags and keywords ==== */
/* Keywords are passed as one space-separated string (NULL or "" for none) of IMAP atoms
 * (no '\\', no '(' ')' '{' ']' '%' '*' '"', no control bytes or spaces), at most 64 bytes
 * each; compared case-insensitively, stored as first spelled. */
enum store_flag_op {
	STORE_FLAGS_ADD,	/* +FLAGS */
	STORE_FLAGS_REMOVE,	/* -FLAGS */
	STORE_FLAGS_REPLACE,	/* FLAGS */
};
enum store_update {
	STORE_UPDATE_CHANGED,	/* new flags, new MODSEQ */
	STORE_UPDATE_SAME,	/* already so: nothing written */
	STORE_UPDATE_CONFLICT,	/* MODSEQ > unchangedsince: not changed (RFC 7162 MODIFIED) */
};
/* a message's state after an update; m's pointers are valid during the call only */
typedef void store_update_fn(void *ctx, const struct store_msg *m, enum store_update what);
/* store_flags_update - apply op with flags (STORE_F_STORED bits; STORE_F_RECENT is ignored)
 * and keywords to the messages in ranges, in one transaction; every changed message gets
 * the same new MODSEQ, HIGHESTMODSEQ becomes it. unchangedsince: RFC 7162 UNCHANGEDSINCE
 * (0: none). cb (may be NULL) is called after the commit for each message in ranges, in UID
 * order. STORE_INVALID for a bad keyword or flag bit. */
int store_flags_update(struct store_mailbox *mb, const struct store_uid_range *ranges,
		       size_t n_ranges, enum store_flag_op op, uint32_t flags,
		       const char *keywords, uint64_t unchangedsince, store_update_fn *cb,
		       void *ctx, char **error_r);

/* ==== expunge, copy, move, append ==== */
/* an expunged message: its UID and the MODSEQ its expunge was given (the mailbox's new
 * HIGHESTMODSEQ, the same for every message of one call) */
typedef void store_expunge_fn(void *ctx, uint32_t uid, uint64_t modseq);
/* store_expunge_deleted - IMAP EXPUNGE (n_ranges == 0) and UID EXPUNGE: remove the messages
 * flagged \Deleted in ranges. cb (may be NULL) gets each expunged UID, ascending, after the
 * commit. Returns the number expunged, or <0. */
int store_expunge_deleted(struct store_mailbox *mb, const struct store_uid_range *ranges,
			  size_t n_ranges, store_expunge_fn *cb, void *ctx, char **error_r);
/* store_expunge_deleted_begin - the same, but the commit is not yet durable when it returns
 * (>0 expunged: *sync_r set, else NULL): store_expunge_sync_run (any thread; files only)
 * makes it durable (the index's WAL is fdatasync'd: what synchronous=FULL does at the commit)
 * and then unlinks the files and fsyncs their directories; store_expunge_sync_end (the
 * handle's thread; s NULL when the handle was closed meanwhile) forgets the unlinks done,
 * notifies the account's other sessions, frees *sync_r, and returns 0, or STORE_ERROR when
 * the WAL could not be synced. Nobody may be told of the expunge before that. */
struct store_expunge_sync;
int store_expunge_deleted_begin(struct store_mailbox *mb, const struct store_uid_range *ranges,
				size_t n_ranges, store_expunge_fn *cb, void *ctx,
				struct store_expunge_sync **sync_r, char **error_r);
void store_expunge_sync_run(struct store_expunge_sync *es);
int store_expunge_sync_end(struct store *s, struct store_expunge_sync **sync_r, char **error_r);

struct store_copy_result {
	uint32_t uidvalidity;	/* of the destination */
	size_t n;
	uint32_t *src_uids;	/* ascending */
	uint32_t *dst_uids;	/* dst_uids[i] is the copy of src_uids[i] */
};
/* store_copy - copy (move=false) or move the messages in ranges to the mailbox dest (may be
 * mb's own), keeping flags, keywords and INTERNALDATE; the copies are \Recent in dest. A move
 * leaves expunge records in the source, as store_expunge does. The
 * files are hard links (immutable, so shared); dest rows, and for a move the removal of the
 * source rows, are one transaction. Messages that vanished meanwhile are left out. *res_r
 * (may be NULL) is filled for COPYUID; free with store_copy_result_free. STORE_NOTFOUND when
 * dest does not exist (IMAP TRYCREATE). */
int store_copy(struct store_mailbox *mb, const struct store_uid_range *ranges, size_t n_ranges,
	       const char *dest, bool move, struct store_copy_result *res_r, char **error_r);
void store_copy_result_free(struct store_copy_result *res);

/* Streaming append: the message never needs to be in memory whole. begin creates a file in
 * the mailbox's tmp/; write appends (returns 0 or -1; the error is reported at finish);
 * finish fsyncs it, links it into new/ and indexes it with flags, keywords and
 * internal_date (0: now), returning its UID (and the mailbox's UIDVALIDITY for APPENDUID);
 * abort throws it away. finish and abort free *ap and set it to NULL. */
struct store_append;
int store_append_begin(struct store *s, const char *mailbox, struct store_append **ap_r,
		       char **error_r);
int store_append_write(struct store_append *ap, const void *p, size_t n);
int store_append_finish(struct store_append **ap, uint32_t flags, const char *keywords,
			int64_t internal_date, uint32_t *uidvalidity_r, uint32_t *uid_r,
			char **error_r);
void store_append_abort(struct store_append **ap);
/* store_append_finish in three steps, so that its syncs can run on another thread:
 * store_append_seal (the handle's thread) checks flags and keywords and fixes the file's
 * name: 0, or STORE_INVALID (ap kept: abort it). store_append_sync (any thread; files only,
 * never the index nor the handle) writes the INTERNALDATE, fsyncs the file, renames it into
 * new/ and fsyncs new/. store_append_commit (the handle's thread, after the sync) indexes
 * it, or reports the sync's failure; frees *ap. store_append_abort after the sync takes the
 * file back out of new/ (for a client that went away before it was told). */
int store_append_seal(struct store_append *ap, uint32_t flags, const char *keywords,
		      int64_t internal_date, char **error_r);
void store_append_sync(struct store_append *ap);
int store_append_commit(struct store_append **ap, uint32_t *uidvalidity_r, uint32_t *uid_r,
			char **error_r);
/* store_append - the same for a message in memory. STORE_NOTFOUND (TRYCREATE). */
int store_append(struct store *s, const char *mailbox, const void *data, size_t len,
		 uint32_t flags, const char *keywords, int64_t internal_date,
		 uint32_t *uidvalidity_r, uint32_t *uid_r, char **error_r);

/* ==== reading messages ==== */
/* A reader that serves the message as the index sizes it: bare LFs come out as CRLF, so the
 * bytes read add up to store_msg.size. */
struct store_reader;
/* store_reader_open - STORE_NOTFOUND when uid is not in the mailbox. */
int store_reader_open(struct store_mailbox *mb, uint32_t uid, struct store_reader **r_r,
		      char **error_r);
uint64_t store_reader_size(const struct store_reader *r);
/* store_reader_read - up to n bytes at the current offset: count, 0 at the end, -1 (errno). */
ssize_t store_reader_read(struct store_reader *r, void *p, size_t n);
/* store_reader_seek - set the offset (in served bytes; a backward seek in a file that needs
 * conversion re-reads from the start). 0 or -1. */
int store_reader_seek(struct store_reader *r, uint64_t offset);
void store_reader_close(struct store_reader **r);

/* store_msg_cache_get - the structure cache of uid, raw: the blob store_msg_structures
 * writes (the file's size, 8 bytes little-endian, then mime_tree_serialize's encoding); 1 with
 * *data_r (caller frees) and *len_r, 0 when none is stored, <0 error (STORE_NOTFOUND: no such
 * message). A blob that store_msg_structures cannot decode is parsed again and replaced. */
int store_msg_cache_get(struct store_mailbox *mb, uint32_t uid, void **data_r, size_t *len_r,
			char **error_r);
/* store_msg_cache_set - store a raw blob (files are immutable, so it never goes stale; no
 * MODSEQ change). Normally only store_msg_structures writes it. */
int store_msg_cache_set(struct store_mailbox *mb, uint32_t uid, const void *data, size_t len,
			char **error_r);

/* ==== what changed: the sync API ==== */
/* Every committed change to a mailbox raises its HIGHESTMODSEQ: new messages and flag or
 * keyword changes carry the new MODSEQ in their rows; an expunge (store_expunge,
 * store_expunge_deleted, the source side of a move) leaves an expunge record (UID, MODSEQ).
 * Records are kept per mailbox up to store_settings.expunge_keep (the newest, whole MODSEQs);
 * older ones are pruned and the mailbox remembers the highest MODSEQ pruned (its "floor").
 * A deleted mailbox's records go with it (a new mailbox of the same name is another mailbox:
 * new UIDVALIDITY).
 *
 * A session remembers the HIGHESTMODSEQ and UIDNEXT it has reported to its client (from
 * store_mailbox_highestmodseq/uidnext at SELECT, then from each result below) and asks what
 * changed since. Its own changes come back too (they are changes since): a session that
 * already reported them through the store_flags_update / store_expunge_deleted callbacks
 * skips a changed entry whose (UID, MODSEQ) it reported, and an expunged UID that it no longer
 * has. */
struct store_changes {
	uint64_t highestmodseq;		/* the mailbox's, as of this result: the next "since" */
	uint32_t uidnext;		/* likewise */
	bool too_old;			/* expunge records after since_modseq were pruned:
					   expunged[] is incomplete; compare the whole UID list
					   (store_mailbox_uids) - QRESYNC's full resync */
	struct store_msg *added;	/* UID >= since_uidnext, still present, ascending */
	size_t n_added;
	struct store_msg *changed;	/* UID < since_uidnext with MODSEQ > since_modseq
					   (flags or keywords changed), ascending */
	size_t n_changed;
	uint32_t *expunged;		/* UID < since_uidnext expunged after since_modseq,
					   ascending; a message both changed and expunged is here
					   only */
	size_t n_expunged;
	char *kw_arena;			/* the keywords strings of added[] and changed[] */
};
/* store_mailbox_changes - what changed in mb's mailbox since (since_modseq, since_uidnext):
 * reads only index.db (no directory scan: store_mailbox_sync picks up foreign files), in one
 * read transaction, so the lists and the counters agree. When nothing changed (both counters
 * equal) it costs one primary-key read and returns 0 with only highestmodseq/uidnext set;
 * else 1 with the lists filled. Everything in *ch_r is the caller's (no pointer into mb): free
 * with store_changes_free, also after 0. <0 on error (STORE_NOTFOUND: the mailbox was deleted
 * or renamed away; STORE_ERROR: try again). */
int store_mailbox_changes(struct store_mailbox *mb, uint64_t since_modseq, uint32_t since_uidnext,
			  struct store_changes *ch_r, char **error_r);
void store_changes_free(struct store_changes *ch);

/* ==== process-wide settings ==== */
struct store_settings {
	unsigned busy_timeout_ms;	/* how long a statement waits for another process's
					   lock before STORE_ERROR (see "Concurrency" above) */
	unsigned expunge_keep;		/* expunge records kept per mailbox */
};
#define STORE_BUSY_TIMEOUT_DEFAULT 10000	/* CLI, queue runner, tests */
#define STORE_BUSY_TIMEOUT_WORKER 250		/* event-loop processes */
#define STORE_EXPUNGE_KEEP_DEFAULT 10000
/* store_settings_set - replace the settings (values 0: the default) for handles opened from
 * now on in this process; store_settings_get reads them. */
void store_settings_set(const struct store_settings *set);
void store_settings_get(struct store_settings *set_r);

/* store_stats - this process's write transactions so far: how many committed, the longest
 * (BEGIN IMMEDIATE to COMMIT or ROLLBACK: how long it held every other writer of its account
 * up), and how many failed for want of the lock within the busy timeout. One longer than
 * 100 ms is also logged. */
struct store_stats {
	uint64_t write_commits;
	uint64_t write_us_max;
	uint64_t busy_errors;
};
void store_stats_get(struct store_stats *st_r);
/* store_stats_reset - start counting again from zero */
void store_stats_reset(void);

/* ==== message structure, parsed once ==== */
struct mime_tree;
/* store_msg_structures - the MIME structure (mime/tree.h: every part's offsets, sizes, line
 * counts and Content-* fields: what ENVELOPE and BODYSTRUCTURE are made of) of each message
 * uids[0..n) of mb. Each comes from the index's structure cache when it is there; the others
 * are parsed from their files (mime_tree_parse, default limits) and all of them written to
 * the cache in ONE write transaction (best effort: when the lock cannot be had within the
 * busy timeout the trees are still returned, and cached at a later call). Files never
 * change, so a cached structure never goes stale. *trees_r: an array of n trees in the order
 * of uids, NULL for a UID not in the mailbox (expunged); free with store_structures_free.
 * 0, or <0 (STORE_ERROR: a file could not be read). Offsets are in bytes of the file as it is
 * (see store_msg_open's crlf). A message is parsed whole from a read-only mapping of its file:
 * while it is parsed, the process's resident size grows by the message's size (file pages,
 * released when the call returns). */
int store_msg_structures(struct store_mailbox *mb, const uint32_t *uids, size_t n,
			 struct mime_tree ***trees_r, char **error_r);
void store_structures_free(struct mime_tree ***trees, size_t n);

/* ==== change notification ==== */
enum store_change {
	STORE_CHANGE_NEW = 1 << 0,		/* messages arrived (deliver, append, copy, pickup) */
	STORE_CHANGE_FLAGS = 1 << 1,
	STORE_CHANGE_EXPUNGE = 1 << 2,
	STORE_CHANGE_MAILBOXES = 1 << 3,	/* created, deleted or renamed */
};
/* called after this handle committed a change to mailbox (normalized name), before the
 * changing call returns (and before the change file is written); changes: enum store_change
 * bits. Must not call back into s. */
typedef void store_change_fn(void *ctx, const char *mailbox, unsigned changes);
/* store_set_change_hook - register fn (NULL to remove) for this handle (only changes made
 * through this handle call it, even though handles share a connection). Other handles and
 * processes learn of changes through store/notify.h and store_mailbox_changes. */
void store_set_change_hook(struct store *s, store_change_fn *fn, void *ctx);

#endif
