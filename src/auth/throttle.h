/* throttle - slow down failed logins, shared by every worker process.
 * A fixed-size table in an anonymous MAP_SHARED mapping made by the master before it forks,
 * keyed by a hash of (client IP) and of (client IP, account). */
#ifndef TERN_THROTTLE_H
#define TERN_THROTTLE_H
#include <sys/socket.h>
#include <time.h>

/* throttle_init - create the shared table; call once in the master before fork. 0 or -1. */
int throttle_init(void);
/* throttle_set_allowance - failures without delay for one (IP, account) and for one IP over
 * all accounts (defaults 2 and 10); call in the master before fork, like throttle_init. */
void throttle_set_allowance(unsigned free_user, unsigned free_ip);
/* throttle_delay_ms - how long to wait before answering a login attempt from ip for user. */
unsigned throttle_delay_ms(const struct sockaddr *ip, const char *user);
/* throttle_failed - record a failed login; throttle_succeeded - clear the (ip, user) record. */
void throttle_failed(const struct sockaddr *ip, const char *user);
void throttle_succeeded(const struct sockaddr *ip, const char *user);
/* throttle_set_clock - for tests: use now() (seconds) instead of the monotonic clock;
 * NULL restores it. */
void throttle_set_clock(time_t (*now)(void));

#endif
