/* login - one password check for any protocol (SMTP AUTH, POP3 USER/PASS and AUTH, IMAP
 * LOGIN/AUTHENTICATE), without ever blocking the worker's event loop:
 *   failed-login delay (auth/throttle, a timer) -> stored hash lookup (tern.db, an indexed
 *   read on the loop) -> cache of recent successes, or yescrypt + constant-time compare on a
 *   pool thread -> throttle bookkeeping and a log line on failure -> the caller's callback,
 *   on the loop.
 * The pool belongs to one worker process: make it after fork (threads do not survive fork).
 * The threads are a lib/bgpool (at nice +10): results come back through its eventfd, the
 * threads never touch libevent, so the event base needs no locking (evthread) at all.
 * A job owns copies of the password and the stored hash; a session that ends while its
 * check is in flight cancels it (login_cancel) and nothing of the session is touched after.
 * Passwords are wiped (explicit_bzero) as soon as they have been hashed. */
#ifndef TERN_LOGIN_H
#define TERN_LOGIN_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <event2/event.h>

#include "lib/metrics.h"

struct accounts;
struct login_pool;
struct login;

enum login_result {
	LOGIN_TEMPFAIL = -1,	/* database error, or the pool's queue is full: try later */
	LOGIN_FAILED = 0,	/* wrong password or no such user */
	LOGIN_OK = 1,
};

/* login_done_fn - the outcome, on the loop thread, never from inside login_start. user is
 * the login name in lower case (valid during the call). */
typedef void login_done_fn(void *ctx, enum login_result result, const char *user);

/* login_pool_new - nthreads hashing threads (>= 1); at most queue_max checks wait for them
 * (one more is answered LOGIN_TEMPFAIL at once); successful checks are remembered for
 * cache_ttl seconds (0: no cache). accounts is used on the loop thread only. NULL when the
 * threads or the eventfd cannot be made (errno set). */
struct login_pool *login_pool_new(struct event_base *base, struct accounts *accounts,
				  unsigned nthreads, unsigned queue_max, unsigned cache_ttl);
/* login_pool_free - drop the checks still queued, wait for those being hashed (one hash
 * each), stop the threads; no callback is called (their sessions are being freed too). */
void login_pool_free(struct login_pool **pool);

/* login_start - check user/password for a client at peer (throttle key). log_id names the
 * session in log lines. The password is copied; the caller may wipe its own at once.
 * *login_r is the handle, valid until the callback runs or login_cancel. */
void login_start(struct login_pool *pool, const struct sockaddr *peer, const char *log_id,
		 const char *user, const char *password, login_done_fn *done, void *ctx,
		 struct login **login_r);
/* login_sasl_feed - one client response (NULL: no initial response) to a SASL exchange
 * begun with sasl_begin. 0: *text_r is the challenge to send. 1: the credentials are
 * complete and login_start has been called with them (same arguments). -1: malformed
 * (*text_r says why). -2: the client cancelled. On any outcome but 0 sasl is freed, its
 * password wiped. */
struct sasl_state;
int login_sasl_feed(struct login_pool *pool, struct sasl_state *sasl, const char *response,
		    const struct sockaddr *peer, const char *log_id, login_done_fn *done, void *ctx,
		    struct login **login_r, const char **text_r);
/* login_cancel - forget a check in flight (NULL or already done: nothing); its callback
 * will not be called. A job already on a thread finishes there and is freed on return. */
void login_cancel(struct login **login);

/* login_count - count a check's outcome for /metrics under the session's protocol (each
 * protocol calls it where the result comes back). */
void login_count(enum metrics_protocol protocol, enum login_result result);

/* login_pool_queued - checks waiting or running (for tests and stats). */
size_t login_pool_queued(const struct login_pool *pool);
/* login_pool_cache_hits - checks answered from the cache since the pool was made. */
unsigned long login_pool_cache_hits(const struct login_pool *pool);

#endif
