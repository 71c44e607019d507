/* store_notifier - wake-ups across processes when a mailbox changes.
 *
 * Every store call that commits a change to a mailbox (delivery, append, copy, move, flags,
 * expunge, pick-up of foreign files, mailbox create/delete/rename) ends with one pwrite(2) to
 * the account's change file, <Maildir root>/tern.changes (no fsync: it is a hint, not data).
 * A process that serves sessions keeps one notifier: one inotify descriptor (polled through
 * an epoll set, see store_notifier_poll), with one watch (IN_MODIFY) per account that some
 * of its sessions have open, whichever process made the
 * change (a worker, the queue runner's bounce, another worker's IMAP or POP3 session, the tern
 * CLI) and including itself. The worker adds store_notifier_fd() to its event loop (the store
 * does not depend on libevent); when it is readable, store_notifier_dispatch() names the
 * accounts that changed, once each per call, and the worker wakes those accounts' sessions,
 * which ask store_mailbox_changes() what changed. No timer per idle session.
 *
 * No wake-up is lost: a session that watches its account before its first
 * store_mailbox_changes() sees every later commit, either in that call or as an event.
 * Events are coalesced by the kernel and by dispatch; a wake-up may find nothing changed in
 * the session's own mailbox (a change in another folder of the account), which costs one
 * primary-key read. When the kernel's event queue overflows, dispatch reports every watched
 * account. Linux inotify only; on a network file system changes made on another host are not
 * seen (one host per store, as today).
 *
 * Not thread-safe; never use a notifier across fork(). */
#ifndef TERN_STORE_NOTIFY_H
#define TERN_STORE_NOTIFY_H

struct store_notifier;
struct store_watch;

/* store_notifier_new - one per process (non-blocking, close-on-exec inotify descriptor).
 * NULL with *error_r (caller frees) when inotify is unavailable. */
struct store_notifier *store_notifier_new(char **error_r);
/* store_notifier_free - close it; every watch is dropped (watch handles become invalid). NULL
 * is fine; sets *n to NULL. */
void store_notifier_free(struct store_notifier **n);
/* store_notifier_fd - the descriptor to poll for reading (EV_READ | EV_PERSIST). */
int store_notifier_fd(const struct store_notifier *n);

/* store_notifier_watch - watch the account of address (as for store_open, which must have
 * created its Maildir) under data_dir; watches are counted per account: the second watch of
 * an account returns the same handle with one more reference. The change file is created
 * when missing. 0 with *w_r, or -1 with *error_r (caller frees). */
int store_notifier_watch(struct store_notifier *n, const char *data_dir, const char *address,
			 struct store_watch **w_r, char **error_r);
/* store_notifier_unwatch - drop one reference; the last one removes the inotify watch. Sets
 * *w to NULL (NULL is fine). */
void store_notifier_unwatch(struct store_notifier *n, struct store_watch **w);
/* store_watch_address, store_watch_data_dir - what the watch was made for (valid while it
 * is). */
const char *store_watch_address(const struct store_watch *w);
const char *store_watch_data_dir(const struct store_watch *w);

/* called once per changed account per dispatch; cb may watch or unwatch (also w itself). */
typedef void store_notifier_fn(void *ctx, struct store_watch *w);
/* store_notifier_dispatch - read the pending events (never blocks) and call cb for each
 * account that changed. Returns the number of accounts reported (0 when nothing was
 * pending), or -1 (read error, errno set). */
int store_notifier_dispatch(struct store_notifier *n, store_notifier_fn *cb, void *ctx);

/* "Nothing changed" without asking the index. Every commit writes the change file before
 * the committing call returns (so before its writer answers anyone), and the kernel queues
 * the event within that write. So a session that takes store_watch_events() before it reads
 * the index, and later finds it the same right after store_notifier_poll(), knows that no
 * change was committed and announced in between - by this process or any other - and need
 * not call store_mailbox_changes(). (A change committed but not yet announced is one that
 * happens "after" the check: its writer has not answered anyone yet.) */
/* store_notifier_poll - read the events waiting (never blocks) and count them in
 * store_watch_events; their callbacks are left to the next dispatch, for which the polled
 * descriptor stays readable. 0, or -1 (errno set: the counts may be behind). */
int store_notifier_poll(struct store_notifier *n);
/* store_watch_events - how many events have been read for w's account (by dispatch or
 * poll); a queue overflow counts for every watch, and a watch that is not in place (its
 * file could not be watched again) counts one more at every call. */
unsigned long long store_watch_events(struct store_watch *w);

#endif
