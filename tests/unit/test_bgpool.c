/* test_bgpool - blocking calls off the loop: work on a thread, done on the loop, in parallel,
 * and bgpool_free finishes what was submitted */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/bgpool.h"
#include "test.h"

struct job {
	struct bgjob j;
	pthread_t worker;	/* who ran work */
	int *done_count;
	struct event_base *base;
	int stop_at;
};

static atomic_int running, max_running;
static atomic_int gate;		/* while set, work holds its thread (test_cancel) */

static void work(struct bgjob *bj)
{
	struct job *j = (struct job *)bj;
	j->worker = pthread_self();
	int now = atomic_fetch_add(&running, 1) + 1;
	int seen = atomic_load(&max_running);
	while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now))
		;
	struct timespec ts = { 0, 20 * 1000 * 1000 };	/* a slow fsync */
	nanosleep(&ts, NULL);
	while (atomic_load(&gate))
		nanosleep(&(struct timespec){ 0, 1000 * 1000 }, NULL);
	atomic_fetch_sub(&running, 1);
}

static void done(struct bgjob *bj)
{
	struct job *j = (struct job *)bj;
	CHECK(!pthread_equal(j->worker, pthread_self()));
	if (++*j->done_count == j->stop_at && j->base != NULL)
		event_base_loopbreak(j->base);
	free(j);
}

static struct job *job_new(int *count, struct event_base *base, int stop_at)
{
	struct job *j = calloc(1, sizeof(*j));
	j->j.work = work;
	j->j.done = done;
	j->done_count = count;
	j->base = base;
	j->stop_at = stop_at;
	return j;
}

/* 16 jobs of 20 ms on 8 threads: done on the loop, several at once, well under 16 x 20 ms */
static void test_parallel_done_on_loop(void)
{
	struct event_base *base = event_base_new();
	struct bgpool *p = bgpool_new(base, 8);
	CHECK(p != NULL);
	int count = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 16; i++)
		bgpool_submit(p, &job_new(&count, base, 16)->j);
	CHECK(bgpool_pending(p) == 16);
	event_base_dispatch(base);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(count == 16);
	CHECK(bgpool_pending(p) == 0);
	CHECK(atomic_load(&max_running) > 1);
	double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	CHECK(ms < 16 * 20);
	bgpool_free(&p);
	CHECK(p == NULL);
	event_base_free(base);
}

/* jobs still in flight when the pool is freed: their done runs inside bgpool_free */
static void test_free_finishes(void)
{
	struct event_base *base = event_base_new();
	struct bgpool *p = bgpool_new(base, 2);
	int count = 0;
	for (int i = 0; i < 10; i++)
		bgpool_submit(p, &job_new(&count, NULL, 0)->j);
	bgpool_free(&p);
	CHECK(count == 10);
	event_base_free(base);
}

/* bgpool_cancel: a queued job is taken back (neither work nor done runs, pending drops);
 * one already on a thread is not, and finishes as usual */
static void test_cancel(void)
{
	struct event_base *base = event_base_new();
	struct bgpool *p = bgpool_new(base, 1);
	int count = 0;
	struct job *a = job_new(&count, NULL, 0), *b = job_new(&count, NULL, 0);
	atomic_store(&running, 0);
	atomic_store(&gate, 1);
	bgpool_submit(p, &a->j);
	bgpool_submit(p, &b->j);
	while (atomic_load(&running) == 0)	/* a is on the one thread, b waits behind it */
		sched_yield();
	CHECK(bgpool_pending(p) == 2);
	CHECK(bgpool_cancel(p, &b->j));
	CHECK(bgpool_pending(p) == 1);
	CHECK(!bgpool_cancel(p, &b->j));	/* not there any more */
	CHECK(!bgpool_cancel(p, &a->j));	/* running */
	atomic_store(&gate, 0);
	free(b);
	bgpool_free(&p);
	CHECK(count == 1);			/* a's done ran in bgpool_free, b's never */
	event_base_free(base);
}

/* a niced pool works as the plain one */
static void test_niced(void)
{
	struct event_base *base = event_base_new();
	struct bgpool *p = bgpool_new_niced(base, 2, 10);
	CHECK(p != NULL);
	int count = 0;
	for (int i = 0; i < 4; i++)
		bgpool_submit(p, &job_new(&count, base, 4)->j);
	event_base_dispatch(base);
	CHECK(count == 4);
	bgpool_free(&p);
	event_base_free(base);
}

TEST_MAIN(TEST(test_parallel_done_on_loop), TEST(test_free_finishes), TEST(test_cancel),
	  TEST(test_niced))
