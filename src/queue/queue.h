/* queue - the outbound queue: message files under spool/queue/ and their state in
 * spool/queue.db (SQLite, WAL, synchronous=FULL). Workers enqueue; the queue runner delivers.
 * Every call that returns 0 has made its change durable. */
#ifndef TERN_QUEUE_H
#define TERN_QUEUE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;

struct queue_rcpt_info {
	const char *address;
	const char *state;	/* "queued", "deferred", … */
	int attempts;
	int64_t next_try;	/* unix time */
	const char *last_error;	/* may be NULL */
};

struct queue_msg_info {
	const char *qid;
	const char *sender;	/* "" for the null sender */
	uint64_t size;
	int64_t arrived;
	const struct queue_rcpt_info *rcpts;
	size_t n_rcpts;
};

/* queue_open - open spool_dir/queue.db, creating spool_dir/queue/ and bringing the schema
 * to this program's version (a newer database is refused). 0 or -1 with *error_r. */
int queue_open(const char *spool_dir, struct queue **queue_r, char **error_r);
void queue_close(struct queue **queue);

/* DSN requests (RFC 3461) that travel with a message: all fields may be NULL. */
struct queue_dsn {
	const char *ret;		/* "FULL" or "HDRS" */
	const char *envid;		/* xtext as received */
	const char *const *notify;	/* per recipient: "NEVER" or "SUCCESS,FAILURE,DELAY" */
	const char *const *orcpt;	/* per recipient: "rfc822;xtext" */
};

/* queue_enqueue - hard-link the fsync'd file src_path (message text starts at body_offset)
 * as the queue file for qid, then record sender, recipients and DSN requests (dsn may be
 * NULL). 0 or -1 with *error_r and errno (ENOSPC when the disk is full, the database's
 * too). */
int queue_enqueue(struct queue *q, const char *qid, const char *src_path, uint64_t body_offset,
		  uint64_t size, const char *sender, const char *const *rcpts, size_t n_rcpts,
		  const struct queue_dsn *dsn, char **error_r);

/* One message for queue_enqueue_batch: queue_enqueue's arguments, and rc (out): 0 when it
 * was queued, else an errno (ENOSPC: the disk is full). */
struct queue_entry {
	const char *qid;
	const char *src_path;
	uint64_t body_offset;
	uint64_t size;
	const char *sender;
	const char *const *rcpts;
	size_t n_rcpts;
	const struct queue_dsn *dsn;
	int rc;
};
/* queue_enqueue_batch - queue_enqueue for n messages: every link, one fsync of the queue
 * directory and one queue.db transaction (one lock, one sync) for all of them: the group
 * commit of concurrent sessions. A message whose link fails is left out; when the directory
 * fsync or the transaction fails, none is queued (their links are taken back). Returns how
 * many failed (0: all durable), with *error_r (the first reason) when some did. */
int queue_enqueue_batch(struct queue *q, struct queue_entry *e, size_t n, char **error_r);

/* A recipient that is due for a delivery attempt, with its message. */
struct queue_due {
	int64_t rcpt_id;
	const char *qid;
	const char *sender;
	const char *address;
	const char *state;	/* "queued", "deferred", or "bounce" (operator: bounce now) */
	int attempts;
	int64_t arrived;
	uint64_t body_offset;
	uint64_t size;
	const char *last_error;	/* may be NULL */
	const char *notify;	/* DSN requests, each may be NULL */
	const char *orcpt;
	const char *ret;
	const char *envid;
	bool delay_warned;	/* a delay notice was sent already */
};

/* queue_due_list - cb for each recipient with next_try <= now, oldest message first (at
 * most limit). Pointers valid during cb only. 0 or -1. */
int queue_due_list(struct queue *q, int64_t now, size_t limit,
		   void (*cb)(void *ctx, const struct queue_due *d), void *ctx, char **error_r);
/* queue_next_due - the earliest next_try of any recipient, or -1 when the queue is empty. */
int64_t queue_next_due(struct queue *q);
/* queue_counts - what the queue holds: messages, and recipients by state (queued: never
 * tried; deferred: waiting for a retry; bounce: to be bounced). One read of both tables (a
 * full scan: the runner calls it at most once a second). 0 or -1. */
struct queue_counts {
	int64_t messages, queued, deferred, bounce;
};
int queue_counts(struct queue *q, struct queue_counts *c, char **error_r);
/* queue_rcpt_remove - the recipient is done (delivered or bounced). */
int queue_rcpt_remove(struct queue *q, int64_t rcpt_id, char **error_r);
/* queue_rcpt_defer - record a failed attempt: attempts+1, next try, the error text. */
int queue_rcpt_defer(struct queue *q, int64_t rcpt_id, int64_t next_try, const char *error,
		     char **error_r);
/* queue_rcpt_delay_warned - remember that the sender was told of the delay. */
int queue_rcpt_delay_warned(struct queue *q, int64_t rcpt_id, char **error_r);
/* queue_msg_finish - when qid has no recipients left: remove its row and its file. */
int queue_msg_finish(struct queue *q, const char *qid, char **error_r);
/* queue_msg_finish in two steps, for n messages (duplicates allowed), so that the files
 * can be removed in between (and elsewhere: the runner does it on a thread).
 * queue_msgs_done - done[i]: qids[i] has no recipient left (remove its file, then its row);
 * how many, or -1. queue_msgs_remove - the rows of qids[i] where which[i] (NULL: all), in one
 * transaction. 0 or -1. */
int queue_msgs_done(struct queue *q, const char *const *qids, size_t n, bool *done,
		    char **error_r);
int queue_msgs_remove(struct queue *q, const char *const *qids, const bool *which, size_t n,
		      char **error_r);
/* queue_begin / queue_commit - group the runner's updates for one attempt into one
 * transaction (one lock, one sync); queue_rollback on failure. 0 or -1. */
int queue_begin(struct queue *q, char **error_r);
int queue_commit(struct queue *q, char **error_r);
void queue_rollback(struct queue *q);

/* queue_finish_orphans - finish messages left without recipients (a crash between the last
 * recipient's removal and queue_msg_finish). Returns how many, or -1. */
int queue_finish_orphans(struct queue *q, char **error_r);
/* queue_file_path - spool/queue/<qid>; caller frees. */
char *queue_file_path(struct queue *q, const char *qid);
/* queue_flush - make deferred recipients (of qid, or all when NULL) due now; returns how many
 * or -1. queue_bounce - mark them to be bounced at the next run. queue_delete - remove the
 * message and its file without notice. Each returns -1, or the number of recipients hit. */
int queue_flush(struct queue *q, const char *qid, char **error_r);
int queue_bounce(struct queue *q, const char *qid, char **error_r);
int queue_delete(struct queue *q, const char *qid, char **error_r);

/* queue_wake - nudge the queue runner (a datagram to spool_dir/runner.sock; best effort). */
void queue_wake(const char *spool_dir);
/* queue_wake_listen - the runner's end: a bound non-blocking datagram socket; -1 on error. */
int queue_wake_listen(const char *spool_dir);

/* queue_list - cb for each queued message, oldest first; pointers valid during cb only. */
int queue_list(struct queue *q, void (*cb)(void *ctx, const struct queue_msg_info *m), void *ctx,
	       char **error_r);

#endif
