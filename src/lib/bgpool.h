/* bgpool - a few threads that make blocking system calls (fsync, link) or long computations
 * (password hashing, auth/login.c) for an event loop.
 *
 * A job's work() runs on one of the threads; its done() runs afterwards on the loop that
 * made the pool. Jobs are embedded in the caller's own structure (container_of), so the pool
 * allocates nothing per job. Several jobs run at once: their fsyncs overlap, and the file
 * system commits them together (ext4's journal takes every fsync waiting at a commit in one
 * go): that is the group commit of concurrent sessions, and the loop never waits. */
#ifndef TERN_BGPOOL_H
#define TERN_BGPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;

struct bgjob {
	struct bgjob *next;		/* the pool's */
	void (*work)(struct bgjob *);	/* on a thread: blocking calls only, no loop state */
	void (*done)(struct bgjob *);	/* on the loop, after work */
};

/* bg_threads_start - start n threads running fn(arg) with every signal blocked but the
 * faults (the loop's thread takes the signals); the number started */
unsigned bg_threads_start(pthread_t *threads, unsigned n, void *(*fn)(void *), void *arg);
/* bgpool_new - nthreads threads (at least 1) serving base's loop; NULL when a thread or the
 * eventfd cannot be made (errno set). */
struct bgpool *bgpool_new(struct event_base *base, unsigned nthreads);
/* bgpool_new_niced - the same with threads at nice value nice (Linux: per thread), so that on
 * a busy machine the loop's thread gets the CPU first; failing to renice is harmless. */
struct bgpool *bgpool_new_niced(struct event_base *base, unsigned nthreads, int nice);
/* bgpool_submit - run j: work on a thread, then done on the loop. */
void bgpool_submit(struct bgpool *p, struct bgjob *j);
/* bgpool_cancel - take back j if no thread has started it: true, and neither its work nor
 * its done will run; false when it is running or finished (its done will run as usual). */
bool bgpool_cancel(struct bgpool *p, struct bgjob *j);
/* bgpool_pending - jobs submitted whose done has not run yet (and were not taken back) */
size_t bgpool_pending(const struct bgpool *p);
/* bgpool_free - wait for every job submitted (work, then done, here), stop the threads. */
void bgpool_free(struct bgpool **pp);

#endif
