/* queue - the outbound queue: message files under spool/queue/ and their state in
 * spool/queue.db (SQLite, WAL, synchronous=FULL). Workers enqueue; the queue runner delivers.
 * Every call that returns 0 has made its change durable. */
#ifndef TERN_QUEUE_H
#define TERN_QUEUE_H
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

/* queue_open - open spool_dir/queue.db (creating spool_dir/queue/ and the schema). */
int queue_open(const char *spool_dir, struct queue **queue_r, char **error_r);
void queue_close(struct queue **queue);

/* queue_enqueue - hard-link the fsync'd file src_path (message text starts at body_offset)
 * as the queue file for qid, then record sender and recipients. 0 or -1 with *error_r. */
int queue_enqueue(struct queue *q, const char *qid, const char *src_path, uint64_t body_offset,
		  uint64_t size, const char *sender, const char *const *rcpts, size_t n_rcpts,
		  char **error_r);

/* queue_list - cb for each queued message, oldest first; pointers valid during cb only. */
int queue_list(struct queue *q, void (*cb)(void *ctx, const struct queue_msg_info *m), void *ctx,
	       char **error_r);

#endif
