/* connlimit - connections per client IP across every worker process */
#include "lib/connlimit.h"

#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define CONNLIMIT_SLOTS 8192

static unsigned *connlimit_table;

int connlimit_init(void)
{
	void *p = mmap(NULL, CONNLIMIT_SLOTS * sizeof(unsigned), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	connlimit_table = p;
	return 0;
}

/* slot_of - FNV-1a over the address bytes (v4-mapped v6 folds to v4) */
static unsigned *slot_of(const struct sockaddr *sa)
{
	const unsigned char *b;
	size_t n;
	if (sa->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		n = 4;
	} else if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		b = a->s6_addr;
		n = 16;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			b += 12;
			n = 4;
		}
	} else {
		return NULL;
	}
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return &connlimit_table[h % CONNLIMIT_SLOTS];
}

bool connlimit_acquire(const struct sockaddr *ip, unsigned max)
{
	if (connlimit_table == NULL)
		return true;
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
	if (connlimit_table == NULL)
		return;
	unsigned *slot = slot_of(ip);
	if (slot != NULL)
		__atomic_fetch_sub(slot, 1, __ATOMIC_RELAXED);
}
