/* throttle - slow down failed logins, shared by every worker process.
 * A fixed-size table in an anonymous MAP_SHARED mapping made by the master before it forks,
 * keyed by a hash of (client IP), of (client IP, account) and of (account) alone; plus one
 * counter per worker of the password checks it has in flight, for a global cap. */
#ifndef TERN_THROTTLE_H
#define TERN_THROTTLE_H
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

/* The first step of the delay: a login is never held longer than this before its check; the
 * rest of a longer delay is served only by a failure (auth/login). */
#define THROTTLE_FIRST_STEP_MS 500u

/* throttle_init - create the shared table; call once in the master before fork. 0 or -1. */
int throttle_init(void);
/* throttle_set_allowance - failures without delay for one (IP, account) and for one IP over
 * all accounts (defaults 2 and 10); call in the master before fork, like throttle_init. */
void throttle_set_allowance(unsigned free_user, unsigned free_ip);
/* throttle_set_limits - failures without delay for one account over all client addresses
 * (default 10), and the most password checks in flight over all workers (default 256; 0:
 * no cap). In the master before fork, like throttle_set_allowance. */
void throttle_set_limits(unsigned free_account, unsigned max_inflight);
/* throttle_delay_ms - how long a failed login attempt from ip for user is to take: the
 * largest delay its (IP), (IP, account) and (account) records ask for. */
unsigned throttle_delay_ms(const struct sockaddr *ip, const char *user);
/* throttle_failed - record a failed login (in all three records); throttle_succeeded - clear
 * the (ip, user) record. */
void throttle_failed(const struct sockaddr *ip, const char *user);
void throttle_succeeded(const struct sockaddr *ip, const char *user);
/* throttle_set_clock - for tests: use now() (seconds) instead of the monotonic clock;
 * NULL restores it. */
void throttle_set_clock(time_t (*now)(void));

/* throttle_worker_attach - claim this process's in-flight counter (a worker, after fork);
 * counters left by processes that died are cleared on the way. 0, or -1 when throttling is
 * off or every counter is taken (the process's checks are then not counted). */
int throttle_worker_attach(void);
/* throttle_inflight_acquire - count one more password check in flight unless the total over
 * all workers has reached the cap: true (counted: call throttle_inflight_release once) or
 * false (refuse it as a temporary failure). Approximate: workers acquiring at the same
 * instant may pass the cap by one each. Always true when off or not attached. */
bool throttle_inflight_acquire(void);
void throttle_inflight_release(void);
/* throttle_inflight_total - checks in flight over all workers (tests, logs). */
unsigned throttle_inflight_total(void);

#endif
