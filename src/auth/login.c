/* login - password checks off the event loop: delay, lookup, cache, hashing threads.
 *
 * Why threads and not an auth process: a check needs the stored hash (an indexed read the
 * worker already does in microseconds) and ~80 ms of yescrypt. Threads that run only
 * crypt_rn on copies share nothing with the loop but a bgpool's two short lists; an
 * auth process would add a protocol, a socket per worker, its own restart and privilege
 * story, for no gain in isolation (the worker already holds tern.db open). */
#include "auth/login.h"

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/accounts.h"
#include "auth/sasl.h"
#include "auth/throttle.h"
#include "lib/bgpool.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

#define LOGIN_CACHE_SIZE 256
#define LOGIN_KEY_LEN 32		/* HMAC-SHA-256 */
#define LOGIN_THREAD_NICE 10		/* below the loop: on a busy machine hashing delays logins,
					 * never the other sessions */
#define LOGIN_MAX_PER_IP 8		/* checks in flight for one client address */

/* One hashing job on the pool's bgpool. The thread reads password and stored and writes ok;
 * owner is the loop's business only. */
struct login_job {
	struct bgjob bg;		/* first: the bgpool hands this back */
	struct login_pool *pool;
	struct login *owner;
	char *password;
	char *stored;			/* NULL: no such user (the dummy hash is used) */
	bool ok;
};

struct login {
	struct login *prev_in_pool, *next_in_pool;	/* every check of the pool */
	bool started;			/* its delay is running, or it is past it */
	bool counted;			/* holds one of throttle's checks in flight */
	bool held;			/* failed, waiting out the rest of its delay */
	enum login_result result;	/* when held */
	unsigned delay_ms;		/* the whole delay a failure serves */
	int64_t started_ms;		/* when its delay began (monotonic) */
	struct login_pool *pool;
	struct login **handle;		/* the caller's pointer, cleared when done */
	struct event *timer;		/* the failed-login delay, then the lookup */
	struct login_job *job;
	struct sockaddr_storage peer;
	char log_id[32];
	char *user;			/* lower case */
	char *password;			/* wiped once handed to a job */
	char *stored;
	unsigned char key[LOGIN_KEY_LEN];
	login_done_fn *done;
	void *ctx;
};

struct cache_entry {
	unsigned char key[LOGIN_KEY_LEN];
	char *stored;			/* NULL: free slot */
	int64_t expires;
};

struct login_pool {
	struct event_base *base;
	struct accounts *accounts;
	struct bgpool *hashing;			/* the hashing threads (lib/bgpool) */
	unsigned nthreads;
	bool closing;				/* login_pool_free: results are dropped */
	size_t queue_max;
	unsigned cache_ttl;
	unsigned char secret[32];
	struct cache_entry cache[LOGIN_CACHE_SIZE];
	unsigned long cache_hits;
	unsigned long refused;			/* over login_max_inflight */
	int64_t refused_logged;			/* second of the last such log line */
	struct login *logins;			/* loop only: started and waiting checks */
};

static int64_t now_secs(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void free_secret(char **p)
{
	if (*p != NULL) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static void job_free(struct login_job *j)
{
	free_secret(&j->password);
	free(j->stored);
	free(j);
}

/* hash_work - on a pool thread: hash and compare, nothing else */
static void hash_work(struct bgjob *bj)
{
	struct login_job *j = (struct login_job *)bj;
	j->ok = accounts_hash_check(j->password, j->stored);
	explicit_bzero(j->password, strlen(j->password));
}

static void login_finish(struct login *l, enum login_result r);

/* hash_done - on the loop: the check's outcome (none when the pool is being freed: nobody
 * waits any more, and a failure must not start a delay then) */
static void hash_done(struct bgjob *bj)
{
	struct login_job *j = (struct login_job *)bj;
	struct login *l = j->owner;
	bool ok = j->ok, closing = j->pool->closing;
	job_free(j);
	if (l != NULL) {
		l->job = NULL;
		if (!closing)
			login_finish(l, ok ? LOGIN_OK : LOGIN_FAILED);
	}
}

/* ---- cache of successful checks ------------------------------------------------------ */

static void cache_key(const struct login_pool *p, const char *user, const char *password,
		      unsigned char out[LOGIN_KEY_LEN])
{
	size_t ul = strlen(user), pl = strlen(password);
	unsigned char *msg = xmalloc(ul + 1 + pl);
	memcpy(msg, user, ul);
	msg[ul] = '\0';
	memcpy(msg + ul + 1, password, pl);
	unsigned len = LOGIN_KEY_LEN;
	if (HMAC(EVP_sha256(), p->secret, sizeof(p->secret), msg, ul + 1 + pl, out, &len) == NULL)
		memset(out, 0, LOGIN_KEY_LEN);	/* an all-zero key never matches: see cache_hit */
	explicit_bzero(msg, ul + 1 + pl);
	free(msg);
}

static bool key_zero(const unsigned char *k)
{
	unsigned char acc = 0;
	for (size_t i = 0; i < LOGIN_KEY_LEN; i++)
		acc |= k[i];
	return acc == 0;
}

/* cache_hit - a remembered success for this key whose stored hash is still the current
 * one: a changed password or a deleted user (another process) misses at once. */
static bool cache_hit(struct login_pool *p, const unsigned char *key, const char *stored)
{
	if (p->cache_ttl == 0 || stored == NULL || key_zero(key))
		return false;
	int64_t now = now_secs();
	for (size_t i = 0; i < LOGIN_CACHE_SIZE; i++) {
		struct cache_entry *e = &p->cache[i];
		if (e->stored == NULL || CRYPTO_memcmp(e->key, key, LOGIN_KEY_LEN) != 0)
			continue;
		if (e->expires > now && strcmp(e->stored, stored) == 0)
			return true;
		free(e->stored);
		e->stored = NULL;
		return false;
	}
	return false;
}

/* cache_put - remember a success: its slot, a free or expired one, else the oldest */
static void cache_put(struct login_pool *p, const unsigned char *key, const char *stored)
{
	if (p->cache_ttl == 0 || stored == NULL || key_zero(key))
		return;
	int64_t now = now_secs();
	struct cache_entry *same = NULL, *unused = NULL, *oldest = &p->cache[0];
	for (size_t i = 0; i < LOGIN_CACHE_SIZE && same == NULL; i++) {
		struct cache_entry *e = &p->cache[i];
		if (e->stored != NULL && memcmp(e->key, key, LOGIN_KEY_LEN) == 0)
			same = e;
		else if (e->stored == NULL || e->expires <= now)
			unused = unused ? unused : e;
		else if (e->expires < oldest->expires)
			oldest = e;
	}
	struct cache_entry *victim = same ? same : unused ? unused : oldest;
	free(victim->stored);
	memcpy(victim->key, key, LOGIN_KEY_LEN);
	victim->stored = xstrdup(stored);
	victim->expires = now + (int64_t)p->cache_ttl;
}

/* ---- one check ----------------------------------------------------------------------- */

static void login_free(struct login *l)
{
	if (l->counted)
		throttle_inflight_release();
	if (l->timer != NULL)
		event_free(l->timer);
	free_secret(&l->password);
	free(l->user);
	free(l->stored);
	explicit_bzero(l->key, sizeof(l->key));
	free(l);
}

/* same_ip - one client address (the port does not matter) */
static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr, sizeof(struct in_addr)) == 0;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			      &((const struct sockaddr_in6 *)b)->sin6_addr,
			      sizeof(struct in6_addr)) == 0;
	return true;
}

/* may_start - checks run one at a time per (address, user) and at most LOGIN_MAX_PER_IP at
 * once per address: a failure is counted when its hash is done, so parallel guesses would
 * otherwise all start with the same (small) delay; waiting ones start when one ends and
 * then see the delay the failures before them earned */
static bool may_start(const struct login *l)
{
	unsigned per_ip = 0;
	for (const struct login *o = l->pool->logins; o != NULL; o = o->next_in_pool) {
		if (o == l || !o->started || !same_ip(&o->peer, &l->peer))
			continue;
		if (strcmp(o->user, l->user) == 0 || ++per_ip >= LOGIN_MAX_PER_IP)
			return false;
	}
	return true;
}

static void login_lookup(evutil_socket_t fd, short what, void *arg);

/* schedule - the failed-login delay as it stands now, then the lookup */
static void schedule(struct login *l)
{
	/* Slow down repeated failures without blocking the other sessions of this worker;
	 * with no delay the timer still defers the work to the loop, so done never runs
	 * inside login_start. Only the first step is waited before the check: a right
	 * password is answered then, a wrong one serves the rest (login_finish), so that an
	 * attack on an account or from a shared address does not lock out its owner. */
	l->delay_ms = throttle_delay_ms((const struct sockaddr *)&l->peer, l->user);
	l->started_ms = now_ms();
	unsigned ms = l->delay_ms < THROTTLE_FIRST_STEP_MS ? l->delay_ms : THROTTLE_FIRST_STEP_MS;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	l->started = true;
	l->timer = evtimer_new(l->pool->base, login_lookup, l);
	evtimer_add(l->timer, &tv);
}

/* pool_unlink - l leaves the pool's list; checks that waited for it may start */
static void pool_unlink(struct login *l)
{
	struct login_pool *p = l->pool;
	if (l->prev_in_pool != NULL)
		l->prev_in_pool->next_in_pool = l->next_in_pool;
	else
		p->logins = l->next_in_pool;
	if (l->next_in_pool != NULL)
		l->next_in_pool->prev_in_pool = l->prev_in_pool;
	l->prev_in_pool = l->next_in_pool = NULL;
	if (!l->started)
		return;
	/* oldest first: the list is kept newest-first, so walk to the end and back */
	struct login *o = p->logins;
	while (o != NULL && o->next_in_pool != NULL)
		o = o->next_in_pool;
	for (; o != NULL; o = o->prev_in_pool)
		if (!o->started && may_start(o))
			schedule(o);
}

/* login_complete - the caller's callback (none when it cancelled); l is gone afterwards */
static void login_complete(struct login *l, enum login_result r)
{
	if (l->handle != NULL)
		*l->handle = NULL;
	pool_unlink(l);
	login_done_fn *done = l->done;
	void *ctx = l->ctx;
	char *user = l->user;
	l->user = NULL;
	login_free(l);
	if (done != NULL)
		done(ctx, r, user);
	free(user);
}

static void login_held(evutil_socket_t fd, short what, void *arg)
{
	struct login *l = arg;
	login_complete(l, l->result);
}

/* login_finish - bookkeeping, then the caller's callback, after the rest of the delay for a
 * failure. A held failure stays in the pool's list (and in flight) until then, even when its
 * session goes: a client that hangs up on a slow answer must not get its next guess sooner. */
static void login_finish(struct login *l, enum login_result r)
{
	const struct sockaddr *peer = (const struct sockaddr *)&l->peer;
	if (r == LOGIN_OK) {
		cache_put(l->pool, l->key, l->stored);
		throttle_succeeded(peer, l->user);
	} else if (r == LOGIN_FAILED) {
		char ip[NI_MAXHOST] = "?", safe[128];
		getnameinfo(peer, sizeof(l->peer), ip, sizeof(ip), NULL, 0, NI_NUMERICHOST);
		throttle_failed(peer, l->user);
		log_info("%s: authentication failed user=%s ip=%s", l->log_id,
			 log_sanitize(safe, sizeof(safe), l->user, strlen(l->user)), ip);
		int64_t left = (int64_t)l->delay_ms - (now_ms() - l->started_ms);
		if (left > 0) {
			struct timeval tv = { (time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000 };
			l->held = true;
			l->result = r;
			event_free(l->timer);
			l->timer = evtimer_new(l->pool->base, login_held, l);
			evtimer_add(l->timer, &tv);
			return;
		}
	}
	login_complete(l, r);
}

/* login_lookup - after the delay: stored hash, cache, or a job for the threads */
static void login_lookup(evutil_socket_t fd, short what, void *arg)
{
	struct login *l = arg;
	struct login_pool *p = l->pool;
	if (accounts_password_hash(p->accounts, l->user, &l->stored) < 0) {
		login_finish(l, LOGIN_TEMPFAIL);
		return;
	}
	if (p->cache_ttl > 0 && l->stored != NULL)
		cache_key(p, l->user, l->password, l->key);
	if (cache_hit(p, l->key, l->stored)) {
		p->cache_hits++;
		log_debug("%s: login user=%s answered from the cache", l->log_id, l->user);
		login_finish(l, LOGIN_OK);
		return;
	}
	size_t queued = bgpool_pending(p->hashing);
	if (queued >= p->queue_max + p->nthreads) {
		log_warnx("%s: login queue full (%zu checks waiting)", l->log_id, queued);
		login_finish(l, LOGIN_TEMPFAIL);
		return;
	}
	struct login_job *j = xcalloc(1, sizeof(*j));
	j->bg.work = hash_work;
	j->bg.done = hash_done;
	j->pool = p;
	j->owner = l;
	j->password = l->password;	/* the job owns it now */
	l->password = NULL;
	j->stored = l->stored ? xstrdup(l->stored) : NULL;
	l->job = j;
	bgpool_submit(p->hashing, &j->bg);
}

void login_start(struct login_pool *pool, const struct sockaddr *peer, const char *log_id,
		 const char *user, const char *password, login_done_fn *done, void *ctx,
		 struct login **login_r)
{
	struct login *l = xcalloc(1, sizeof(*l));
	l->pool = pool;
	l->handle = login_r;
	l->counted = throttle_inflight_acquire();
	l->done = done;
	l->ctx = ctx;
	if (peer != NULL) {
		size_t len = peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							  : sizeof(struct sockaddr_in);
		memcpy(&l->peer, peer, len);
	}
	snprintf(l->log_id, sizeof(l->log_id), "%s", log_id);
	l->user = xstrdup(user);
	for (char *c = l->user; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	l->password = xstrdup(password);
	*login_r = l;
	l->next_in_pool = pool->logins;
	if (pool->logins != NULL)
		pool->logins->prev_in_pool = l;
	pool->logins = l;
	if (!l->counted) {
		/* over login_max_inflight: a temporary failure now beats a queue without bound;
		 * answered from the loop like any other outcome */
		pool->refused++;
		if (now_secs() != pool->refused_logged) {
			pool->refused_logged = now_secs();
			log_warnx("%s: login refused: %u password checks in flight over all workers "
				  "(login_max_inflight; %lu refused so far)", l->log_id,
				  throttle_inflight_total(), pool->refused);
		}
		l->started = true;
		l->result = LOGIN_TEMPFAIL;
		l->timer = evtimer_new(pool->base, login_held, l);
		struct timeval now = { 0, 0 };
		evtimer_add(l->timer, &now);
		return;
	}
	if (may_start(l))
		schedule(l);
}

int login_sasl_feed(struct login_pool *pool, struct sasl_state *sasl, const char *response,
		    const struct sockaddr *peer, const char *log_id, login_done_fn *done, void *ctx,
		    struct login **login_r, const char **text_r)
{
	const char *challenge, *err = "";
	int r = sasl_step(sasl, response, &challenge, &err);
	if (r == 0) {
		*text_r = challenge;
		return 0;
	}
	*text_r = r == -1 ? err : "";
	if (r == 1)
		login_start(pool, peer, log_id, sasl->authcid, sasl->password, done, ctx, login_r);
	sasl_free(sasl);	/* the check has its own copy of the password */
	return r;
}

void login_cancel(struct login **lp)
{
	struct login *l = *lp;
	if (l == NULL)
		return;
	*lp = NULL;
	struct login_job *j = l->job;
	bool disown = l->held;
	if (j != NULL) {
		if (bgpool_cancel(l->pool->hashing, &j->bg)) {	/* not started: taken back */
			job_free(j);
			l->job = NULL;
		} else {
			disown = true;	/* running or done: hash_done finishes it */
		}
	}
	if (disown) {
		/* a guess was made: it finishes (and counts) without its session, and keeps its
		 * place among the checks in flight until its delay has passed */
		l->handle = NULL;
		l->done = NULL;
		l->ctx = NULL;
		return;
	}
	pool_unlink(l);
	login_free(l);
}

struct login_pool *login_pool_new(struct event_base *base, struct accounts *accounts,
				  unsigned nthreads, unsigned queue_max, unsigned cache_ttl)
{
	struct login_pool *p = xcalloc(1, sizeof(*p));
	p->base = base;
	p->accounts = accounts;
	p->nthreads = nthreads ? nthreads : 1;
	p->queue_max = queue_max;
	p->cache_ttl = cache_ttl;
	(void)throttle_worker_attach();	/* -1: throttling off here (CLI, unit tests) */
	if (getrandom(p->secret, sizeof(p->secret), 0) != (ssize_t)sizeof(p->secret) ||
	    (p->hashing = bgpool_new_niced(base, p->nthreads, LOGIN_THREAD_NICE)) == NULL) {
		int e = errno;
		explicit_bzero(p->secret, sizeof(p->secret));
		free(p);
		errno = e;
		return NULL;
	}
	return p;
}

void login_pool_free(struct login_pool **pp)
{
	struct login_pool *p = *pp;
	if (p == NULL)
		return;
	/* Nobody waits for the checks any more: their sessions were freed (and cancelled them).
	 * Those not started are dropped; bgpool_free waits for the ones on a thread (one hash
	 * each at most) and hash_done only frees them. */
	p->closing = true;
	for (struct login *l = p->logins; l != NULL; l = l->next_in_pool) {
		if (l->job != NULL && bgpool_cancel(p->hashing, &l->job->bg)) {
			job_free(l->job);
			l->job = NULL;
		}
	}
	bgpool_free(&p->hashing);
	/* checks whose sessions went while they were hashed or held */
	while (p->logins != NULL) {
		struct login *l = p->logins;
		p->logins = l->next_in_pool;
		login_free(l);
	}
	for (size_t i = 0; i < LOGIN_CACHE_SIZE; i++)
		free(p->cache[i].stored);
	explicit_bzero(p->secret, sizeof(p->secret));
	free(p);
	*pp = NULL;
}

void login_count(enum metrics_protocol protocol, enum login_result result)
{
	enum metrics_login_result m = result == LOGIN_OK	   ? METRICS_LOGIN_OK
				      : result == LOGIN_FAILED ? METRICS_LOGIN_FAILED
							       : METRICS_LOGIN_TEMPFAIL;
	metrics_count(METRICS_LOGINS + 3 * protocol + m);
}

size_t login_pool_queued(const struct login_pool *p)
{
	return bgpool_pending(p->hashing);
}

unsigned long login_pool_cache_hits(const struct login_pool *p)
{
	return p->cache_hits;
}
