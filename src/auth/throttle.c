/* throttle - slow down failed logins, shared by every worker process.
 *
 * Three kinds of record live in one table: (client IP), (client IP, account) and (account).
 * Each counts failures and remembers the time of the last one; records decay 15 minutes
 * after their last failure. The (IP, account) record throttles guessing one password; the
 * IP record, with a larger allowance, throttles spraying many accounts from one address; the
 * account record throttles guessing one account's password from many addresses. IPv6
 * clients are keyed by their /64, since a single host usually owns a whole /64.
 *
 * The delay is served by failures only (auth/login holds a failed answer until the delay
 * has passed; before the check it waits at most THROTTLE_FIRST_STEP_MS), so the account
 * record cannot lock its owner out, nor the IP record the other users behind one address.
 *
 * Beside the table, one counter per worker process of its password checks in flight: their
 * sum is capped (login_max_inflight), so that a storm of logins gets temporary failures
 * instead of a queue that grows without bound. A worker owns its counter by pid; one that
 * dies leaves its count behind until the next worker attaches and clears it (the master
 * restarts a dead worker at once).
 *
 * The table is an anonymous MAP_SHARED mapping made before fork, so workers see each other's
 * records. Fields are read and written with __atomic builtins and never locked: throttling
 * is a heuristic, and the worst a race can do is lose or misattribute one failure. */
#include "auth/throttle.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/siphash.h"

#define THROTTLE_SLOTS 4096		/* a power of two */
#define THROTTLE_PROBE 8		/* slots looked at for one key */
#define THROTTLE_DECAY_SECS (15 * 60)
#define THROTTLE_FREE_USER 2		/* failures without delay for (IP, account) */
#define THROTTLE_FREE_IP 10		/* ... and for the IP over all accounts */
#define THROTTLE_FREE_ACCOUNT 10	/* ... and for the account over all addresses */
#define THROTTLE_MAX_INFLIGHT 256	/* checks in flight over all workers */
#define THROTTLE_WORKER_SLOTS 128	/* in-flight counters: 64 workers, twice over a SIGHUP */
#define THROTTLE_BASE_MS THROTTLE_FIRST_STEP_MS
#define THROTTLE_MAX_MS 15000u
#define THROTTLE_MAX_FAILURES 1000000u	/* keep the counter far from wrapping */
#define THROTTLE_MAX_USER 320		/* bytes of the account name that are hashed */

struct throttle_slot {
	uint64_t hash;			/* 0: empty */
	uint32_t failures;
	uint32_t unused;
	int64_t last_fail;		/* seconds on the throttle clock */
};

/* One worker's checks in flight. */
struct throttle_worker {
	int32_t pid;			/* 0: free */
	uint32_t inflight;
};

static struct throttle_slot *throttle_table;	/* NULL: throttling off (tests, CLI) */
static struct throttle_worker *throttle_workers; /* THROTTLE_WORKER_SLOTS, same mapping */
static struct throttle_worker *throttle_self;	/* this worker's counter, or NULL */
static uint64_t throttle_key[2];		/* SipHash key, inherited by the workers */
static time_t (*throttle_clock)(void);
static uint32_t throttle_free_user = THROTTLE_FREE_USER;
static uint32_t throttle_free_ip = THROTTLE_FREE_IP;
static uint32_t throttle_free_account = THROTTLE_FREE_ACCOUNT;
static uint32_t throttle_max_inflight = THROTTLE_MAX_INFLIGHT;

/* throttle_now - seconds on the monotonic clock (immune to wall clock steps), or the test
 * clock. */
static int64_t throttle_now(void)
{
	if (throttle_clock != NULL)
		return (int64_t)throttle_clock();
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

void throttle_set_allowance(unsigned free_user, unsigned free_ip)
{
	throttle_free_user = free_user;
	throttle_free_ip = free_ip;
}

void throttle_set_limits(unsigned free_account, unsigned max_inflight)
{
	throttle_free_account = free_account;
	throttle_max_inflight = max_inflight;
}

void throttle_set_clock(time_t (*now)(void))
{
	throttle_clock = now;
}

/* throttle_init - map the table and pick the hash key. A second call clears the table
 * (useful in tests). */
int throttle_init(void)
{
	size_t size = sizeof(struct throttle_slot) * THROTTLE_SLOTS +
		      sizeof(struct throttle_worker) * THROTTLE_WORKER_SLOTS;
	if (throttle_table == NULL) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		/* a random key keeps clients from choosing addresses or names that collide */
		if (getrandom(throttle_key, sizeof(throttle_key), 0) != (ssize_t)sizeof(throttle_key)) {
			munmap(p, size);
			return -1;
		}
		throttle_table = p;
		throttle_workers = (struct throttle_worker *)(throttle_table + THROTTLE_SLOTS);
		return 0;
	}
	throttle_self = NULL;
	for (size_t i = 0; i < THROTTLE_WORKER_SLOTS; i++) {
		__atomic_store_n(&throttle_workers[i].pid, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&throttle_workers[i].inflight, 0, __ATOMIC_RELAXED);
	}
	for (size_t i = 0; i < THROTTLE_SLOTS; i++) {
		__atomic_store_n(&throttle_table[i].hash, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&throttle_table[i].failures, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&throttle_table[i].last_fail, 0, __ATOMIC_RELAXED);
	}
	return 0;
}

/* key_hash - hash of the IP alone (user NULL), of IP and account, or of the account alone
 * (ip NULL; account names are case-folded, as they are everywhere). 0 when throttling does
 * not apply; never 0 otherwise. */
static uint64_t key_hash(const struct sockaddr *ip, const char *user)
{
	unsigned char key[1 + 17 + THROTTLE_MAX_USER];
	size_t n = 1;

	/* the three kinds never share a hash */
	key[0] = user == NULL ? 'I' : ip == NULL ? 'A' : 'U';
	if (ip != NULL) {
		size_t ipn = siphash_client_bytes(ip, key + 1);
		if (ipn == 0)
			return 0;
		n += ipn;
	} else if (user == NULL) {
		return 0;
	}
	if (user != NULL) {
		for (size_t i = 0; user[i] != '\0' && i < THROTTLE_MAX_USER; i++)
			key[n++] = (unsigned char)tolower((unsigned char)user[i]);
	}
	uint64_t h = siphash24(throttle_key, key, n);
	return h == 0 ? 1 : h;
}

/* slot_find - the slot holding hash h, or NULL. */
static struct throttle_slot *slot_find(uint64_t h)
{
	for (size_t i = 0; i < THROTTLE_PROBE; i++) {
		struct throttle_slot *s = &throttle_table[(h + i) & (THROTTLE_SLOTS - 1)];
		if (__atomic_load_n(&s->hash, __ATOMIC_ACQUIRE) == h)
			return s;
	}
	return NULL;
}

/* live_failures - the failures a slot counts at now, 0 once it decayed. */
static uint32_t live_failures(struct throttle_slot *s, int64_t now)
{
	uint32_t f = __atomic_load_n(&s->failures, __ATOMIC_RELAXED);
	int64_t last = __atomic_load_n(&s->last_fail, __ATOMIC_RELAXED);
	if (f == 0 || now - last >= THROTTLE_DECAY_SECS)
		return 0;
	return f;
}

/* delay_for - no delay for the first free failures, then 500 ms doubling up to 15 s. */
static unsigned delay_for(uint32_t failures, uint32_t free_failures)
{
	if (failures <= free_failures)
		return 0;
	uint32_t over = failures - free_failures - 1;
	if (over >= 5)
		return THROTTLE_MAX_MS;
	unsigned ms = THROTTLE_BASE_MS << over;
	return ms < THROTTLE_MAX_MS ? ms : THROTTLE_MAX_MS;
}

/* key_delay - the delay one record asks for. */
static unsigned key_delay(uint64_t h, uint32_t free_failures, int64_t now)
{
	if (h == 0)
		return 0;
	struct throttle_slot *s = slot_find(h);
	return s == NULL ? 0 : delay_for(live_failures(s, now), free_failures);
}

unsigned throttle_delay_ms(const struct sockaddr *ip, const char *user)
{
	if (throttle_table == NULL)
		return 0;
	int64_t now = throttle_now();
	unsigned d = key_delay(key_hash(ip, NULL), throttle_free_ip, now);
	if (user != NULL) {
		unsigned du = key_delay(key_hash(ip, user), throttle_free_user, now);
		if (du > d)
			d = du;
		/* only when the IP counts at all (a UNIX socket or unknown peer is not throttled) */
		unsigned da = key_hash(ip, NULL) == 0 ? 0
			      : key_delay(key_hash(NULL, user), throttle_free_account, now);
		if (da > d)
			d = da;
	}
	return d;
}

/* key_failed - count one failure for h: in its slot, or in a claimed slot (an empty or
 * decayed one in the probe window, else the one whose last failure is oldest). */
static void key_failed(uint64_t h, int64_t now)
{
	if (h == 0)
		return;
	struct throttle_slot *s = slot_find(h);
	if (s != NULL) {
		if (live_failures(s, now) == 0) {
			__atomic_store_n(&s->failures, 1, __ATOMIC_RELAXED);
		} else {
			uint32_t f = __atomic_add_fetch(&s->failures, 1, __ATOMIC_RELAXED);
			if (f > THROTTLE_MAX_FAILURES)
				__atomic_store_n(&s->failures, THROTTLE_MAX_FAILURES, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&s->last_fail, now, __ATOMIC_RELAXED);
		return;
	}
	struct throttle_slot *victim = NULL;
	int64_t oldest = INT64_MAX;
	for (size_t i = 0; i < THROTTLE_PROBE; i++) {
		struct throttle_slot *c = &throttle_table[(h + i) & (THROTTLE_SLOTS - 1)];
		if (__atomic_load_n(&c->hash, __ATOMIC_RELAXED) == 0 || live_failures(c, now) == 0) {
			victim = c;
			break;
		}
		int64_t last = __atomic_load_n(&c->last_fail, __ATOMIC_RELAXED);
		if (last < oldest) {
			oldest = last;
			victim = c;
		}
	}
	uint64_t old = __atomic_load_n(&victim->hash, __ATOMIC_RELAXED);
	/* another process may claim the same slot at once: only the winner writes */
	if (!__atomic_compare_exchange_n(&victim->hash, &old, h, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return;
	__atomic_store_n(&victim->last_fail, now, __ATOMIC_RELAXED);
	__atomic_store_n(&victim->failures, 1, __ATOMIC_RELAXED);
}

void throttle_failed(const struct sockaddr *ip, const char *user)
{
	if (throttle_table == NULL)
		return;
	int64_t now = throttle_now();
	uint64_t hip = key_hash(ip, NULL);
	key_failed(hip, now);
	if (user != NULL && hip != 0) {
		key_failed(key_hash(ip, user), now);
		key_failed(key_hash(NULL, user), now);
	}
}

/* throttle_succeeded - clear only the (IP, account) record: a success with one account must
 * not wipe the IP's record, or one known password would reset a spraying attack. */
void throttle_succeeded(const struct sockaddr *ip, const char *user)
{
	if (throttle_table == NULL || user == NULL)
		return;
	uint64_t h = key_hash(ip, user);
	if (h == 0)
		return;
	struct throttle_slot *s = slot_find(h);
	if (s != NULL)
		__atomic_store_n(&s->failures, 0, __ATOMIC_RELAXED);
}

/* ---- checks in flight over all workers ------------------------------------------------- */

/* throttle_worker_attach - a free counter (or one whose process is gone) becomes ours */
int throttle_worker_attach(void)
{
	if (throttle_workers == NULL)
		return -1;
	int32_t me = (int32_t)getpid();
	throttle_self = NULL;
	for (size_t i = 0; i < THROTTLE_WORKER_SLOTS; i++) {
		struct throttle_worker *w = &throttle_workers[i];
		int32_t pid = __atomic_load_n(&w->pid, __ATOMIC_ACQUIRE);
		if (pid == me) {	/* a pid reused after its first owner died */
			__atomic_store_n(&w->inflight, 0, __ATOMIC_RELAXED);
			throttle_self = w;
			continue;
		}
		if (pid != 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue;	/* alive (EPERM: alive, another user's) */
		/* a dead worker's counts go with it; then the slot is free to claim */
		if (pid != 0 && __atomic_compare_exchange_n(&w->pid, &pid, 0, false,
							    __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
			__atomic_store_n(&w->inflight, 0, __ATOMIC_RELAXED);
		int32_t zero = 0;
		if (throttle_self == NULL &&
		    __atomic_compare_exchange_n(&w->pid, &zero, me, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED)) {
			__atomic_store_n(&w->inflight, 0, __ATOMIC_RELAXED);
			throttle_self = w;
		}
	}
	return throttle_self != NULL ? 0 : -1;
}

unsigned throttle_inflight_total(void)
{
	if (throttle_workers == NULL)
		return 0;
	uint64_t sum = 0;
	for (size_t i = 0; i < THROTTLE_WORKER_SLOTS; i++)
		if (__atomic_load_n(&throttle_workers[i].pid, __ATOMIC_RELAXED) != 0)
			sum += __atomic_load_n(&throttle_workers[i].inflight, __ATOMIC_RELAXED);
	return sum > UINT32_MAX ? UINT32_MAX : (unsigned)sum;
}

bool throttle_inflight_acquire(void)
{
	if (throttle_self == NULL)
		return true;
	if (throttle_max_inflight != 0 && throttle_inflight_total() >= throttle_max_inflight)
		return false;
	__atomic_add_fetch(&throttle_self->inflight, 1, __ATOMIC_RELAXED);
	return true;
}

void throttle_inflight_release(void)
{
	if (throttle_self == NULL)
		return;
	uint32_t n = __atomic_load_n(&throttle_self->inflight, __ATOMIC_RELAXED);
	if (n > 0)
		__atomic_sub_fetch(&throttle_self->inflight, 1, __ATOMIC_RELAXED);
}
