/* connlimit - connections per client IP across every worker process.
 * A fixed table of counters in an anonymous MAP_SHARED mapping made before fork; addresses
 * are hashed into slots, so a collision can only make the limit stricter, never looser. */
#ifndef TERN_CONNLIMIT_H
#define TERN_CONNLIMIT_H
#include <stdbool.h>
#include <sys/socket.h>

/* connlimit_init - create the table (master, before fork). 0 or -1. */
int connlimit_init(void);
/* connlimit_acquire - count one more connection from ip; false (nothing counted) when that
 * would exceed max. Without connlimit_init everything is allowed. */
bool connlimit_acquire(const struct sockaddr *ip, unsigned max);
void connlimit_release(const struct sockaddr *ip);

#endif
