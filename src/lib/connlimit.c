/* connlimit - connections per client and in all, across every worker process */
#include "lib/connlimit.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "lib/siphash.h"

struct connlimit_worker {
	int32_t pid;			/* 0: free */
	uint32_t sessions;
};

struct connlimit_shared {
	unsigned clients[CONNLIMIT_SLOTS];
	struct connlimit_worker workers[CONNLIMIT_WORKERS];
};

static struct connlimit_shared *connlimit_table;
static uint64_t connlimit_key[2];	/* inherited by the workers */
static struct connlimit_worker *connlimit_self;

int connlimit_init(void)
{
	void *p = mmap(NULL, sizeof(struct connlimit_shared), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	/* a random key keeps clients from choosing addresses that collide with a victim's */
	if (getrandom(connlimit_key, sizeof(connlimit_key), 0) != (ssize_t)sizeof(connlimit_key)) {
		munmap(p, sizeof(struct connlimit_shared));
		return -1;
	}
	connlimit_table = p;
	return 0;
}

void connlimit_set_key(const uint64_t key[2])
{
	connlimit_key[0] = key[0];
	connlimit_key[1] = key[1];
}

size_t connlimit_slot(const struct sockaddr *ip)
{
	unsigned char b[17];
	size_t n = siphash_client_bytes(ip, b);
	if (n == 0)
		return CONNLIMIT_SLOTS;
	return (size_t)(siphash24(connlimit_key, b, n) % CONNLIMIT_SLOTS);
}

/* slot_of - ip's counter, NULL when not counted (no table, not an IP) */
static unsigned *slot_of(const struct sockaddr *ip)
{
	if (connlimit_table == NULL)
		return NULL;
	size_t i = connlimit_slot(ip);
	return i < CONNLIMIT_SLOTS ? &connlimit_table->clients[i] : NULL;
}

bool connlimit_acquire(const struct sockaddr *ip, unsigned max)
{
	unsigned *slot = slot_of(ip);
	if (slot == NULL)
		return true;
	unsigned prev = __atomic_fetch_add(slot, 1, __ATOMIC_RELAXED);
	if (prev >= max) {
		__atomic_fetch_sub(slot, 1, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

void connlimit_release(const struct sockaddr *ip)
{
	unsigned *slot = slot_of(ip);
	if (slot != NULL)
		__atomic_fetch_sub(slot, 1, __ATOMIC_RELAXED);
}

unsigned connlimit_count(const struct sockaddr *ip)
{
	unsigned *slot = slot_of(ip);
	return slot != NULL ? __atomic_load_n(slot, __ATOMIC_RELAXED) : 0;
}

int connlimit_worker_join(void)
{
	if (connlimit_table == NULL)
		return 0;
	int32_t me = (int32_t)getpid();
	struct connlimit_worker *mine = NULL;
	for (size_t i = 0; i < CONNLIMIT_WORKERS; i++) {
		struct connlimit_worker *w = &connlimit_table->workers[i];
		int32_t pid = __atomic_load_n(&w->pid, __ATOMIC_ACQUIRE);
		if (pid == me) {
			mine = w;	/* joined before: start again */
		} else if (pid != 0 && kill(pid, 0) < 0 && errno == ESRCH) {
			/* a worker that died (crash, SIGKILL) never released its sessions */
			__atomic_store_n(&w->sessions, 0, __ATOMIC_RELAXED);
			__atomic_compare_exchange_n(&w->pid, &pid, 0, false, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED);
		}
	}
	for (size_t i = 0; mine == NULL && i < CONNLIMIT_WORKERS; i++) {
		struct connlimit_worker *w = &connlimit_table->workers[i];
		int32_t zero = 0;
		if (__atomic_compare_exchange_n(&w->pid, &zero, me, false, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
			mine = w;
	}
	if (mine != NULL)
		__atomic_store_n(&mine->sessions, 0, __ATOMIC_RELAXED);
	connlimit_self = mine;
	return mine != NULL ? 0 : -1;
}

void connlimit_worker_add(int delta)
{
	if (connlimit_self != NULL)
		__atomic_add_fetch(&connlimit_self->sessions, (uint32_t)delta, __ATOMIC_RELAXED);
}

unsigned connlimit_total(void)
{
	if (connlimit_table == NULL)
		return 0;
	unsigned n = 0;
	for (size_t i = 0; i < CONNLIMIT_WORKERS; i++)
		if (__atomic_load_n(&connlimit_table->workers[i].pid, __ATOMIC_RELAXED) != 0)
			n += __atomic_load_n(&connlimit_table->workers[i].sessions, __ATOMIC_RELAXED);
	return n;
}
