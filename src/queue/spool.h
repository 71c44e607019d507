/* spool - incoming message files: written while DATA/BDAT arrives, fsync'd, then handed to
 * local mailboxes (hard links through store/) and to the outbound queue before the 250. */
#ifndef TERN_SPOOL_H
#define TERN_SPOOL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct queue;

struct spool_msg {
	char qid[32];
	char *path;		/* spool/incoming/<qid> */
	int fd;
	uint64_t size;		/* bytes in the file (including Return-Path) */
	uint64_t body_offset;	/* where the message text starts (after Return-Path) */
	bool failed;		/* a write failed: the message cannot be accepted */
	bool no_space;		/* ... because the disk (or quota) is full: 452, not 451 */
	uint64_t opened_usec;	/* metrics_now_usec() at spool_open: the arrival */
	size_t wlen;
	char wbuf[65536];
};

/* spool_qid_new - a fresh queue id (hex of time, pid, counter; 31 chars at most). */
void spool_qid_new(char out[32]);
/* spool_open - create spool_dir/incoming/<qid> and write "Return-Path: <sender>\r\n".
 * 0 or -1 with *error_r. */
int spool_open(const char *spool_dir, const char *sender, struct spool_msg **msg_r,
	       char **error_r);
/* spool_write - buffered append; -1 (and failed set; no_space too on ENOSPC/EDQUOT) on an
 * I/O error. */
int spool_write(struct spool_msg *m, const void *p, size_t n);
/* spool_flush - write out the buffer (before writing to m->fd directly); 0 or -1. */
int spool_flush(struct spool_msg *m);
/* spool_adopt_size - flush, then take the file's size as the message size (after a
 * composer wrote to m->fd directly, e.g. a bounce). 0 or -1. */
int spool_adopt_size(struct spool_msg *m);
/* spool_deliver - flush and fsync the file, link it into each local recipient's mailbox,
 * enqueue the remote recipients - and the local ones whose mailbox could not be written now
 * (index locked by another process, I/O error): the queue runner delivers those locally,
 * so a busy mailbox never makes the client send the message again to recipients who have
 * it - then remove the incoming name. Logs each local delivery. Returns the number of
 * recipients queued (wake the runner when > 0), everything durable; on -1 (*error_r) the
 * queue could not take them, though some mailboxes may already hold the message (the
 * client retries: at-least-once, as SMTP allows); m->no_space tells whether a full disk
 * was the reason. dsn (may be NULL): RET/ENVID and per
 * recipient NOTIFY/ORCPT, the locals' first, then the remotes'; a local recipient with
 * NOTIFY=SUCCESS is queued too (the runner delivers it and sends the success report). */
struct queue_dsn;
int spool_deliver(struct spool_msg *m, const char *data_dir, const char *hostname,
		  const char *const *locals, size_t n_locals, struct queue *q, const char *sender,
		  const char *const *remotes, size_t n_remotes, const struct queue_dsn *dsn,
		  char **error_r);
/* What spool_deliver_opts adds to spool_deliver (inbound checks and forwarding). */
struct spool_delivery_opts {
	const char *mailbox;		/* local recipients' folder (NULL: INBOX; "Junk" for
					   quarantine: created when missing). Recipients queued
					   for a retry land in INBOX. */
	const char *fwd_sender;		/* envelope sender of the forwarded copies (SRS) */
	const char *const *fwd_rcpts;	/* forwarded recipients: queued as a message of their
					   own (a new qid, the same file) with fwd_sender */
	size_t n_fwd;
	const char *const *fwd_notify;	/* per forwarded recipient, may be NULL */
	const char *const *fwd_orcpt;
	/* Filled when the caller made the file durable and linked the local copies itself (off
	 * the event loop, see smtp/server.c): the spool file is fsync'd already, and links[i]
	 * (per local recipient, NULL: none) says what became of local i's link. */
	bool synced;
	const struct spool_link *links;
	size_t queued_already;		/* the caller queued this many (the remote ones) under
					   m->qid: recipients queued here get a qid of their own */
};
/* A local copy linked by the caller: dst (NULL: not tried, deliver as usual), err 0 when
 * the link was made and its directory fsync'd, else the errno of what failed (the link is
 * gone then). */
struct spool_link {
	char *dst;
	char *dir;
	int err;
};
/* spool_deliver_opts - spool_deliver, plus o (may be NULL). The forwarded copies count in
 * the number returned. */
int spool_deliver_opts(struct spool_msg *m, const char *data_dir, const char *hostname,
		       const char *const *locals, size_t n_locals, struct queue *q,
		       const char *sender, const char *const *remotes, size_t n_remotes,
		       const struct queue_dsn *dsn, const struct spool_delivery_opts *o,
		       char **error_r);

/* A byte range [start, end) of the spool file. */
struct spool_range {
	uint64_t start, end;
};
/* spool_rewrite - replace the file by a copy with text inserted at offset at and the ranges
 * cut (sorted, not overlapping, each at or after at): a new file in incoming/ (m->path
 * becomes its name; the old file is unlinked), the bytes copied in the kernel
 * (copy_file_range). Not fsync'd here
 * (spool_deliver does it before any link; until then the file is only a leftover that the
 * start-up sweep removes). 0, or -1 with *error_r (the old file is left as it was). */
int spool_rewrite(struct spool_msg *m, uint64_t at, const char *text, size_t len,
		  const struct spool_range *cuts, size_t n_cuts, char **error_r);

/* spool_abort - close and unlink; frees and NULLs *m. */
void spool_abort(struct spool_msg **m);
/* spool_close - after spool_deliver: close and free. */
void spool_close(struct spool_msg **m);
/* spool_sweep_incoming - remove files left in spool_dir/incoming by a crash (never
 * acknowledged, or already linked where they belong). Call at startup before any worker. */
void spool_sweep_incoming(const char *spool_dir);

#endif
