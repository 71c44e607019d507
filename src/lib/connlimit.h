/* connlimit - connections per client and in all, across every worker process.
 * A client is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64). Clients
 * are hashed with a keyed hash (SipHash, random key made by connlimit_init) into a fixed
 * table of counters, so nobody can choose addresses that collide with a victim's; a
 * collision can only make the limit stricter, never looser. Both tables live in an
 * anonymous MAP_SHARED mapping made before fork. */
#ifndef TERN_CONNLIMIT_H
#define TERN_CONNLIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define CONNLIMIT_SLOTS 8192	/* per-client counters */
#define CONNLIMIT_WORKERS 256	/* per-worker counters of the total */

/* connlimit_init - create the tables and pick the hash key (master, before fork). 0 or
 * -1. */
int connlimit_init(void);
/* connlimit_acquire - count one more connection from ip; false (nothing counted) when that
 * would exceed max. Without connlimit_init everything is allowed. */
bool connlimit_acquire(const struct sockaddr *ip, unsigned max);
void connlimit_release(const struct sockaddr *ip);
/* connlimit_count - connections counted for ip's client (its slot) now. */
unsigned connlimit_count(const struct sockaddr *ip);

/* connlimit_worker_join - in a worker after fork: claim a counter of the total for this
 * process, freeing those of dead workers first (a crashed worker's sessions are gone).
 * -1 when every counter is taken by a live process. */
int connlimit_worker_join(void);
/* connlimit_worker_add - this worker's sessions went up or down by delta. */
void connlimit_worker_add(int delta);
/* connlimit_total - sessions in every worker. 0 without connlimit_init. */
unsigned connlimit_total(void);

/* for tests: the hash key in use, and the slot ip falls in */
void connlimit_set_key(const uint64_t key[2]);
size_t connlimit_slot(const struct sockaddr *ip);

#endif
