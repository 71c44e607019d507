/* bgpool - blocking calls off the event loop; see bgpool.h */
#include "lib/bgpool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/xmalloc.h"

struct bgpool {
	struct event_base *base;
	pthread_t *threads;
	unsigned nthreads;
	int nice;			/* of the threads; 0: as the loop */
	pthread_mutex_t mu;
	pthread_cond_t cond;		/* todo got a job, or stop */
	struct bgjob *todo, **todo_tail;	/* FIFO, under mu */
	struct bgjob *done, **done_tail;	/* FIFO, under mu */
	bool stop;			/* under mu */
	size_t pending;			/* loop only */
	int efd;
	struct event *efd_ev;
};

static void *bg_thread(void *arg)
{
	struct bgpool *p = arg;
	if (p->nice != 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), p->nice);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop && p->todo == NULL)
			pthread_cond_wait(&p->cond, &p->mu);
		if (p->todo == NULL)	/* stopping, and nothing left to do */
			break;
		struct bgjob *j = p->todo;
		p->todo = j->next;
		if (p->todo == NULL)
			p->todo_tail = &p->todo;
		pthread_mutex_unlock(&p->mu);
		j->work(j);
		pthread_mutex_lock(&p->mu);
		j->next = NULL;
		*p->done_tail = j;
		p->done_tail = &j->next;
		uint64_t one = 1;
		while (write(p->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* run_done - the done() of every job the threads finished, in the order they finished */
static void run_done(struct bgpool *p)
{
	pthread_mutex_lock(&p->mu);
	struct bgjob *j = p->done;
	p->done = NULL;
	p->done_tail = &p->done;
	pthread_mutex_unlock(&p->mu);
	while (j != NULL) {
		struct bgjob *next = j->next;
		p->pending--;
		j->done(j);	/* may free j */
		j = next;
	}
}

static void efd_ready(evutil_socket_t fd, short what, void *arg)
{
	struct bgpool *p = arg;
	uint64_t n;
	(void)fd;
	(void)what;
	while (read(p->efd, &n, sizeof(n)) < 0 && errno == EINTR)
		;
	run_done(p);
}

unsigned bg_threads_start(pthread_t *threads, unsigned n, void *(*fn)(void *), void *arg)
{
	/* signals are the loop's business: the threads block them all... */
	sigset_t all, old;
	sigfillset(&all);
	/* ...but a fault in a thread must still be reported where it happens (ASan, a core) */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	unsigned made = 0;
	for (; made < n; made++)
		if (pthread_create(&threads[made], NULL, fn, arg) != 0)
			break;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return made;
}

struct bgpool *bgpool_new(struct event_base *base, unsigned nthreads)
{
	return bgpool_new_niced(base, nthreads, 0);
}

struct bgpool *bgpool_new_niced(struct event_base *base, unsigned nthreads, int nice)
{
	struct bgpool *p = xcalloc(1, sizeof(*p));
	p->base = base;
	p->nice = nice;
	p->todo_tail = &p->todo;
	p->done_tail = &p->done;
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		free(p);
		return NULL;
	}
	p->efd_ev = event_new(base, p->efd, EV_READ | EV_PERSIST, efd_ready, p);
	if (p->efd_ev == NULL || event_add(p->efd_ev, NULL) < 0) {
		if (p->efd_ev != NULL)
			event_free(p->efd_ev);
		close(p->efd);
		free(p);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->nthreads = nthreads ? nthreads : 1;
	p->threads = xcalloc(p->nthreads, sizeof(pthread_t));
	unsigned made = bg_threads_start(p->threads, p->nthreads, bg_thread, p);
	if (made < p->nthreads) {
		p->nthreads = made;
		bgpool_free(&p);
		errno = EAGAIN;
		return NULL;
	}
	return p;
}

void bgpool_submit(struct bgpool *p, struct bgjob *j)
{
	p->pending++;
	j->next = NULL;
	pthread_mutex_lock(&p->mu);
	*p->todo_tail = j;
	p->todo_tail = &j->next;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->mu);
}

bool bgpool_cancel(struct bgpool *p, struct bgjob *j)
{
	bool found = false;
	pthread_mutex_lock(&p->mu);
	for (struct bgjob **q = &p->todo; *q != NULL; q = &(*q)->next) {
		if (*q == j) {
			*q = j->next;
			if (p->todo_tail == &j->next)
				p->todo_tail = q;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	if (found)
		p->pending--;
	return found;
}

size_t bgpool_pending(const struct bgpool *p)
{
	return p->pending;
}

void bgpool_free(struct bgpool **pp)
{
	struct bgpool *p = *pp;
	if (p == NULL)
		return;
	*pp = NULL;
	/* the threads finish what was submitted, then stop; the done()s run here */
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	if (p->todo != NULL && p->nthreads == 0) {	/* no thread was ever made: run here */
		for (struct bgjob *j = p->todo, *next; j != NULL; j = next) {
			next = j->next;
			j->work(j);
			j->next = NULL;
			*p->done_tail = j;
			p->done_tail = &j->next;
		}
		p->todo = NULL;
	}
	run_done(p);
	event_free(p->efd_ev);
	close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
