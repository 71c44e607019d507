/* test_login - password checks through the thread pool: results come back on the loop and
 * never from inside login_start, unknown users fail, the cache (and its invalidation by a
 * password change), the queue bound, cancelling at every stage, SASL feeding, freeing the
 * pool with a check in flight. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "auth/sasl.h"
#include "auth/throttle.h"
#include "test.h"

static char tmpdir[] = "/tmp/tern-test-login-XXXXXX";
static char dbpath[160];
static struct accounts *db;
static struct event_base *base;

struct outcome {
	int calls;
	enum login_result result;
	char user[64];
	struct login *handle;
};

static void done(void *ctx, enum login_result r, const char *user)
{
	struct outcome *o = ctx;
	o->calls++;
	o->result = r;
	snprintf(o->user, sizeof(o->user), "%s", user);
	/* the handle is cleared before the callback: cancelling now is harmless */
	login_cancel(&o->handle);
}

static struct sockaddr_in peer(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(0x7f000001);
	return sin;
}

static void start(struct login_pool *p, const char *user, const char *pw, struct outcome *o)
{
	struct sockaddr_in sin = peer();
	memset(o, 0, sizeof(*o));
	login_start(p, (struct sockaddr *)&sin, "test", user, pw, done, o, &o->handle);
}

/* run_until - run the loop until *calls reaches n or 20 s pass; true when it did */
static bool run_until(const int *const *calls, size_t k, int n)
{
	time_t deadline = time(NULL) + 20;
	for (;;) {
		int total = 0;
		for (size_t i = 0; i < k; i++)
			total += *calls[i];
		if (total >= n)
			return true;
		if (time(NULL) > deadline)
			return false;
		struct timeval tv = { 0, 20000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static void run_idle(int rounds)
{
	for (int i = 0; i < rounds; i++) {
		struct timeval tv = { 0, 20000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static void test_results_come_back(void)
{
	struct login_pool *p = login_pool_new(base, db, 2, 8, 0);
	struct outcome ok, bad, unknown;
	CHECK(p != NULL);
	start(p, "Bob@Example.ORG", "hunter2", &ok);
	start(p, "bob@example.org", "wrong", &bad);
	start(p, "nobody@example.org", "hunter2", &unknown);
	/* never from inside login_start */
	CHECK(ok.calls == 0 && bad.calls == 0 && unknown.calls == 0);
	CHECK(ok.handle != NULL);
	const int *calls[] = { &ok.calls, &bad.calls, &unknown.calls };
	CHECK(run_until(calls, 3, 3));
	CHECK(ok.calls == 1 && ok.result == LOGIN_OK);
	CHECK_STREQ(ok.user, "bob@example.org");	/* lower case */
	CHECK(ok.handle == NULL);
	CHECK(bad.calls == 1 && bad.result == LOGIN_FAILED);
	CHECK(unknown.calls == 1 && unknown.result == LOGIN_FAILED);
	CHECK(login_pool_queued(p) == 0);
	CHECK(login_pool_cache_hits(p) == 0);
	login_pool_free(&p);
	CHECK(p == NULL);
}

static void test_cache_and_invalidation(void)
{
	char *err = NULL;
	struct login_pool *p = login_pool_new(base, db, 1, 8, 60);
	struct outcome o;
	const int *calls[] = { &o.calls };
	start(p, "bob@example.org", "hunter2", &o);
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_OK);
	CHECK(login_pool_cache_hits(p) == 0);
	start(p, "BOB@example.org", "hunter2", &o);
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_OK);
	CHECK(login_pool_cache_hits(p) == 1);
	/* a wrong password is never a hit */
	start(p, "bob@example.org", "hunter3", &o);
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_FAILED);
	CHECK(login_pool_cache_hits(p) == 1);
	/* another process changes the password: the old one fails at once */
	CHECK(accounts_user_passwd(db, "bob@example.org", "n3w-pass", &err) == 0);
	start(p, "bob@example.org", "hunter2", &o);
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_FAILED);
	start(p, "bob@example.org", "n3w-pass", &o);
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_OK);
	CHECK(login_pool_cache_hits(p) == 1);
	CHECK(accounts_user_passwd(db, "bob@example.org", "hunter2", &err) == 0);
	login_pool_free(&p);
}

static void test_queue_bound(void)
{
	/* one thread, one waiting: the third check is refused at once */
	struct login_pool *p = login_pool_new(base, db, 1, 1, 0);
	struct outcome o[3];
	/* three users: checks of one (address, user) would wait for each other instead */
	const char *users[] = { "bob@example.org", "u1@example.org", "u2@example.org" };
	for (int i = 0; i < 3; i++)
		start(p, users[i], "wrong", &o[i]);
	const int *calls[] = { &o[0].calls, &o[1].calls, &o[2].calls };
	CHECK(run_until(calls, 3, 3));
	int failed = 0, tempfail = 0;	/* which one is refused depends on timer order */
	for (int i = 0; i < 3; i++) {
		failed += o[i].result == LOGIN_FAILED;
		tempfail += o[i].result == LOGIN_TEMPFAIL;
	}
	CHECK(failed == 2 && tempfail == 1);
	CHECK(login_pool_queued(p) == 0);
	login_pool_free(&p);
}

static void test_cancel(void)
{
	struct login_pool *p = login_pool_new(base, db, 1, 8, 0);
	struct outcome before, running, waiting, after;
	/* cancelled before the lookup (the delay timer is pending) */
	start(p, "bob@example.org", "hunter2", &before);
	login_cancel(&before.handle);
	CHECK(before.handle == NULL);
	/* submitted: one on the thread, one waiting in the queue */
	start(p, "bob@example.org", "hunter2", &running);
	start(p, "other@example.org", "hunter2", &waiting);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK(login_pool_queued(p) == 2);
	login_cancel(&waiting.handle);		/* taken back from the queue */
	CHECK(login_pool_queued(p) <= 1);
	login_cancel(&running.handle);		/* freed when the thread hands it back */
	login_cancel(&running.handle);		/* twice: harmless */
	/* a later check still works, and the cancelled ones never call back */
	start(p, "bob@example.org", "hunter2", &after);
	const int *calls[] = { &after.calls };
	CHECK(run_until(calls, 1, 1) && after.result == LOGIN_OK);
	run_idle(5);
	CHECK(before.calls == 0 && running.calls == 0 && waiting.calls == 0);
	CHECK(login_pool_queued(p) == 0);
	/* freeing the pool with a cancelled check still on the thread */
	start(p, "bob@example.org", "hunter2", &running);
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	login_cancel(&running.handle);
	login_pool_free(&p);
	CHECK(running.calls == 0);
}

/* checks of one (address, user) run one after the other, so that each sees the delay the
 * failures before it earned (in parallel they would all start with the same one) */
static void test_serialized_per_user(void)
{
	struct login_pool *p = login_pool_new(base, db, 2, 8, 0);
	struct outcome o[3], other;
	for (int i = 0; i < 3; i++)
		start(p, "bob@example.org", "wrong", &o[i]);
	start(p, "u9@example.org", "wrong", &other);	/* another user: not held up */
	event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	CHECK(login_pool_queued(p) == 2);		/* bob's first, and u9's */
	const int *calls[] = { &o[0].calls, &o[1].calls, &o[2].calls, &other.calls };
	CHECK(run_until(calls, 4, 4));
	for (int i = 0; i < 3; i++)
		CHECK(o[i].result == LOGIN_FAILED);
	CHECK(other.result == LOGIN_FAILED);
	/* a cancelled waiting check lets the next one go */
	start(p, "bob@example.org", "wrong", &o[0]);
	start(p, "bob@example.org", "wrong", &o[1]);
	start(p, "bob@example.org", "hunter2", &o[2]);
	login_cancel(&o[1].handle);
	const int *two[] = { &o[0].calls, &o[2].calls };
	CHECK(run_until(two, 2, 2) && o[2].result == LOGIN_OK);
	login_pool_free(&p);
}

static void test_sasl_feed(void)
{
	struct login_pool *p = login_pool_new(base, db, 1, 8, 0);
	struct sasl_state sasl;
	struct outcome o;
	const char *text;
	struct sockaddr_in sin = peer();
	const char *b64 = "AGJvYkBleGFtcGxlLm9yZwBodW50ZXIy";	/* "\0bob@example.org\0hunter2" */
	memset(&o, 0, sizeof(o));
	sasl_begin(&sasl, SASL_PLAIN);
	CHECK(login_sasl_feed(p, &sasl, NULL, (struct sockaddr *)&sin, "t", done, &o, &o.handle,
			      &text) == 0);			/* empty challenge */
	CHECK(login_sasl_feed(p, &sasl, b64, (struct sockaddr *)&sin, "t", done, &o, &o.handle,
			      &text) == 1);
	CHECK(sasl.password == NULL);			/* wiped and freed */
	const int *calls[] = { &o.calls };
	CHECK(run_until(calls, 1, 1) && o.result == LOGIN_OK);
	sasl_begin(&sasl, SASL_PLAIN);
	CHECK(login_sasl_feed(p, &sasl, "*", (struct sockaddr *)&sin, "t", done, &o, &o.handle,
			      &text) == -2);
	sasl_begin(&sasl, SASL_PLAIN);
	CHECK(login_sasl_feed(p, &sasl, "!!!", (struct sockaddr *)&sin, "t", done, &o, &o.handle,
			      &text) == -1);
	CHECK(text != NULL && *text != '\0');
	login_pool_free(&p);
}

static void setup(void)
{
	char *err = NULL;
	if (mkdtemp(tmpdir) == NULL)
		abort();
	snprintf(dbpath, sizeof(dbpath), "%s/tern.db", tmpdir);
	if (accounts_open(dbpath, &db, &err) < 0 ||
	    accounts_user_add(db, "bob@example.org", "hunter2", &err) < 0) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	base = event_base_new();
}

static void teardown(void)
{
	char cmd[256];
	accounts_close(&db);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static void test_setup(void)
{
	setup();
}

static void test_teardown(void)
{
	teardown();
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* test_failures_serve_the_delay - with throttling on and a 4 s delay earned: a right password
 * is answered after the first step, a wrong one after the whole delay; a check cancelled
 * while its failure is held is freed with the pool; over the in-flight cap a check is a
 * temporary failure at once */
static void test_failures_serve_the_delay(void)
{
	CHECK(throttle_init() == 0);
	throttle_set_limits(0, 1);
	struct sockaddr_in sin = peer(), other = peer();
	for (int i = 0; i < 4; i++) {	/* 4 failures from elsewhere, none free: 4 s */
		other.sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)i);
		throttle_failed((struct sockaddr *)&other, "bob@example.org");
	}
	CHECK(throttle_delay_ms((struct sockaddr *)&sin, "bob@example.org") == 4000);
	struct login_pool *p = login_pool_new(base, db, 1, 8, 0);	/* attaches */
	CHECK(p != NULL);
	struct outcome right, wrong, over, held;
	const int *c1[] = { &right.calls };
	double t0 = now_s();
	start(p, "bob@example.org", "hunter2", &right);
	start(p, "carol@example.org", "x", &over);	/* the cap is 1 */
	const int *c0[] = { &over.calls };
	CHECK(run_until(c0, 1, 1));
	CHECK(over.result == LOGIN_TEMPFAIL && right.calls == 0);
	CHECK(run_until(c1, 1, 1));
	double dt = now_s() - t0;
	CHECK(right.result == LOGIN_OK);
	CHECK(dt >= 0.45 && dt < 2.5);
	if (!(dt < 2.5))
		fprintf(stderr, "right password after %.3f s\n", dt);
	t0 = now_s();
	start(p, "bob@example.org", "wrong", &wrong);
	const int *c2[] = { &wrong.calls };
	CHECK(run_until(c2, 1, 1));
	CHECK(wrong.result == LOGIN_FAILED && now_s() - t0 >= 3.95);
	/* held, then cancelled: finished without a callback, or freed with the pool */
	start(p, "bob@example.org", "wrong again", &held);
	/* past the first step its job is queued, then its failure comes back and is held */
	int i = 0;
	while (login_pool_queued(p) == 0 && i++ < 500)
		run_idle(1);
	while (login_pool_queued(p) > 0 && i++ < 1000)
		run_idle(1);
	CHECK(i < 1000 && held.calls == 0 && held.handle != NULL);
	login_cancel(&held.handle);
	CHECK(held.handle == NULL);
	run_idle(5);
	CHECK(held.calls == 0);
	login_pool_free(&p);
	throttle_set_limits(10, 256);
	CHECK(throttle_init() == 0);
}

TEST_MAIN(TEST(test_setup), TEST(test_results_come_back), TEST(test_cache_and_invalidation),
	  TEST(test_queue_bound), TEST(test_cancel), TEST(test_serialized_per_user),
	  TEST(test_sasl_feed), TEST(test_failures_serve_the_delay), TEST(test_teardown))
