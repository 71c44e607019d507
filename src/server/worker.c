/* worker - a worker process's event loop */
#include "server/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "http/server.h"
#include "lib/bgpool.h"
#include "lib/connlimit.h"
#include "lib/metrics.h"
#include "lib/log.h"
#include "outbound/dns.h"
#include "lib/xmalloc.h"
#include "queue/queue.h"
#include "imap/server.h"
#include "pop3/server.h"
#include "smtp/server.h"
#include "store/store.h"

struct worker;

struct worker_listener {
	struct worker *w;
	enum listen_role role;
	struct evconnlistener *l;
};

struct worker {
	const struct tern_config *cfg;
	struct event_base *base;
	struct smtp_server smtp;
	struct pop3_server pop3;
	struct imap_server imap;
	struct http_server *http;	/* NULL without an http, https or metrics listener */
	struct worker_listener listeners[ROLE_COUNT];
	struct event *sigterm, *sigint, *drain_timer, *drain_deadline;
	struct session_pool pool;	/* the caps over every protocol */
	int reserve_fd;			/* spent to refuse a client when descriptors run out */
	struct event *resume_timer;	/* listeners paused: enable them again */
	bool paused;
	bool draining;
};

#define WORKER_PAUSE_MS 200	/* a full worker leaves new clients to its siblings this long */
#define WORKER_SYNC_THREADS 8	/* fsyncs of accepted messages in flight at once, per worker */

static void worker_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	struct worker_listener *wl = arg;
	switch (wl->role) {
	case ROLE_SMTP:
	case ROLE_SUBMISSION:
	case ROLE_SUBMISSIONS:
		smtp_session_start(&wl->w->smtp, fd, sa, (socklen_t)salen, wl->role);
		break;
	case ROLE_POP3:
	case ROLE_POP3S:
		pop3_session_start(&wl->w->pop3, fd, sa, (socklen_t)salen, wl->role);
		break;
	case ROLE_IMAP:
	case ROLE_IMAPS:
		imap_session_start(&wl->w->imap, fd, sa, (socklen_t)salen, wl->role);
		break;
	default:
		close(fd);
		break;
	}
}

/* worker_pause - stop accepting for a moment (until the timer or a session's end) */
static void worker_pause(struct worker *w, unsigned ms)
{
	if (w->draining)
		return;
	if (!w->paused) {
		for (int r = 0; r < ROLE_COUNT; r++)
			if (w->listeners[r].l != NULL)
				evconnlistener_disable(w->listeners[r].l);
		w->paused = true;
	}
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	event_add(w->resume_timer, &tv);
}

static void worker_resume(struct worker *w)
{
	if (!w->paused || w->draining)
		return;
	w->paused = false;
	event_del(w->resume_timer);
	if (w->reserve_fd < 0)		/* lost to a race for the last descriptor: again */
		w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	for (int r = 0; r < ROLE_COUNT; r++)
		if (w->listeners[r].l != NULL)
			evconnlistener_enable(w->listeners[r].l);
}

static void worker_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	worker_resume(arg);
}

/* pool_full - this worker is at its cap while others have room: let them take the next
 * clients (the kernel hands a connection to whichever worker accepts first) */
static void pool_full(void *arg)
{
	worker_pause(arg, WORKER_PAUSE_MS);
}

static void pool_session_ended(void *arg)
{
	worker_resume(arg);
}

/* role_texts - the words of the protocol served on role */
static const struct session_texts *role_texts(struct worker *w, enum listen_role role)
{
	switch (role) {
	case ROLE_POP3:
	case ROLE_POP3S:
		return w->pop3.sessions.texts;
	case ROLE_IMAP:
	case ROLE_IMAPS:
		return w->imap.sessions.texts;
	default:
		return w->smtp.sessions.texts;
	}
}

/* refuse_with_reserve - out of descriptors: free the reserve, accept one waiting client,
 * tell it (in clear on the clear-text roles) that the server is busy, close it, take the
 * reserve back. true when a client was refused so. */
static bool refuse_with_reserve(struct worker_listener *wl)
{
	struct worker *w = wl->w;
	if (w->reserve_fd < 0)
		return false;
	close(w->reserve_fd);
	w->reserve_fd = -1;
	int fd = accept4(evconnlistener_get_fd(wl->l), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	bool refused = fd >= 0;
	if (fd >= 0) {
		bool tls = wl->role == ROLE_SUBMISSIONS || wl->role == ROLE_POP3S ||
			   wl->role == ROLE_IMAPS;
		const struct session_texts *t = role_texts(w, wl->role);
		const char *text = t->busy != NULL ? t->busy : t->too_many_connections;
		if (!tls) {
			char line[256];
			int n = snprintf(line, sizeof(line), "%s\r\n", text);
			if (n > 0 && (size_t)n < sizeof(line))
				(void)!write(fd, line, (size_t)n);	/* a fresh socket: room */
		}
		close(fd);
	}
	w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return refused;
}

static void worker_accept_error(struct evconnlistener *l, void *arg)
{
	struct worker_listener *wl = arg;
	int err = errno;
	static unsigned long refused;
	if (err == EMFILE || err == ENFILE) {
		/* answer what waits, one reserve descriptor at a time, so that nobody hangs */
		unsigned n = 0;
		while (n < 64 && refuse_with_reserve(wl))
			n++;
		refused += n;
		log_warnx("accept: out of descriptors (%s): refused %u waiting clients (%lu in all); "
			  "pausing", strerror(err), n, refused);
	} else {
		log_warn("accept");
	}
	/* never spin on an error: pause, until a session ends or the timer runs out */
	worker_pause(wl->w, err == EMFILE || err == ENFILE ? WORKER_PAUSE_MS : 1000);
}

/* drain_check - leave the loop once every session has ended */
static void drain_check(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (w->smtp.sessions.n == 0 && w->pop3.sessions.n == 0 && w->imap.sessions.n == 0)
		event_base_loopbreak(w->base);
}

static void drain_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	log_warnx("shutdown timeout: ending %u sessions",
		  w->smtp.sessions.n + w->pop3.sessions.n + w->imap.sessions.n);
	event_base_loopbreak(w->base);
}

/* worker_stop - SIGTERM: stop accepting, let transactions finish, then exit */
static void worker_stop(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	if (w->draining)
		return;
	w->draining = true;
	event_del(w->resume_timer);
	for (int r = 0; r < ROLE_COUNT; r++)
		if (w->listeners[r].l != NULL)
			evconnlistener_disable(w->listeners[r].l);
	smtp_server_drain(&w->smtp);
	pop3_server_drain(&w->pop3);
	imap_server_drain(&w->imap);
	http_server_drain(w->http);
	struct timeval tick = { 0, 50000 };
	struct timeval limit = { (time_t)w->cfg->shutdown_timeout, 0 };
	w->drain_timer = event_new(w->base, -1, EV_PERSIST, drain_check, w);
	event_add(w->drain_timer, &tick);
	w->drain_deadline = evtimer_new(w->base, drain_deadline_cb, w);
	event_add(w->drain_deadline, &limit);
}

int worker_main(const struct tern_config *cfg, SSL_CTX *tls, const int *listen_fds)
{
	struct worker w;
	char *err = NULL;
	memset(&w, 0, sizeof(w));
	w.cfg = cfg;
	w.reserve_fd = -1;
	log_init("smtpd");
	/* an event loop: a store write waits at most this long for another process's lock */
	store_settings_set(&(struct store_settings){ .busy_timeout_ms = STORE_BUSY_TIMEOUT_WORKER });
	w.base = event_base_new();
	if (w.base == NULL)
		log_fatalx("event_base_new failed");

	struct accounts *accounts;
	char *db = config_path_in_data(cfg, "tern.db");
	if (accounts_open(db, &accounts, &err) < 0)
		log_fatalx("%s", err);
	free(db);
	struct queue *queue;
	char *spool = config_path_in_data(cfg, "spool");
	if (queue_open(spool, &queue, &err) < 0)
		log_fatalx("%s", err);
	free(spool);

	/* Threads do not survive fork: each worker makes its own pool, after the fork. */
	struct login_pool *login = login_pool_new(w.base, accounts, cfg->login_threads,
						  cfg->login_queue, cfg->login_cache_ttl);
	if (login == NULL)
		log_fatal("login threads");
	smtp_server_init(&w.smtp, w.base, cfg, tls, accounts, queue, login);
	/* the fsyncs and links of accepted messages, off the loop (smtp/server.c commit) */
	w.smtp.sync = bgpool_new(w.base, WORKER_SYNC_THREADS);
	if (w.smtp.sync == NULL)
		log_warn("sync threads: messages are made durable on the loop");
	/* a resolver for the inbound checks (SPF, DKIM, DMARC); without one none are made */
	struct dns *dns = NULL;
	if (dns_init(w.base, cfg->dns_servers, &dns, &err) < 0) {
		log_warnx("resolver: %s; no inbound checks (SPF, DKIM, DMARC)", err);
		free(err);
		err = NULL;
	}
	w.smtp.dns = dns;
	pop3_server_init(&w.pop3, w.base, cfg, tls, accounts, login);
	imap_server_init(&w.imap, w.base, cfg, tls, accounts, login);
	w.imap.sync = w.smtp.sync;	/* APPEND's and EXPUNGE's syncs too (imap/cmd_*.c) */

	/* the caps, from the descriptors this process may hold (the master raised the limit) */
	struct rlimit rl;
	unsigned long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
				       ? (unsigned long)rl.rlim_cur : 1024;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers = cfg->workers ? cfg->workers : ncpu > 0 ? (unsigned)ncpu : 1;
	config_connection_caps(cfg, nofile, workers > 64 ? 64 : workers, &w.pool.max,
			       &w.pool.max_total);
	w.pool.on_full = pool_full;
	w.pool.on_end = pool_session_ended;
	w.pool.arg = &w;
	session_list_set_pool(&w.smtp.sessions, &w.pool);
	session_list_set_pool(&w.pop3.sessions, &w.pool);
	session_list_set_pool(&w.imap.sessions, &w.pool);
	if (metrics_join() < 0)
		log_warnx("no free metrics slot: this worker is not counted in /metrics");
	if (connlimit_worker_join() < 0)
		log_warnx("no free counter for the connection total: max_connections not enforced "
			  "for this worker");
	w.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (w.reserve_fd < 0)
		log_warn("open /dev/null (reserve descriptor)");
	w.resume_timer = evtimer_new(w.base, worker_resume_cb, &w);
	log_info("connections: at most %u in this worker, %u in all (descriptors %lu)", w.pool.max,
		 w.pool.max_total, nofile);
	for (int r = 0; r < ROLE_COUNT; r++) {
		if (listen_fds[r] < 0 || ROLE_IS_HTTP(r))
			continue;
		w.listeners[r].w = &w;
		w.listeners[r].role = (enum listen_role)r;
		w.listeners[r].l = evconnlistener_new(w.base, worker_accept, &w.listeners[r],
						      LEV_OPT_CLOSE_ON_EXEC, 0, listen_fds[r]);
		if (w.listeners[r].l == NULL)
			log_fatalx("evconnlistener_new failed for %s", config_role_name(r));
		evconnlistener_set_error_cb(w.listeners[r].l, worker_accept_error);
	}
	/* HTTP connections: as many again as sessions, counted apart */
	w.http = http_server_new(w.base, cfg, tls, listen_fds, w.pool.max);
	w.sigterm = evsignal_new(w.base, SIGTERM, worker_stop, &w);
	w.sigint = evsignal_new(w.base, SIGINT, worker_stop, &w);
	event_add(w.sigterm, NULL);
	event_add(w.sigint, NULL);

	event_base_dispatch(w.base);

	smtp_server_free(&w.smtp);
	dns_free(&dns);	/* after the sessions: they cancelled their checks */
	pop3_server_free(&w.pop3);
	imap_server_free(&w.imap);
	/* after the SMTP and IMAP sessions: their messages in flight are dropped */
	bgpool_free(&w.smtp.sync);
	http_server_free(&w.http);
	for (int r = 0; r < ROLE_COUNT; r++)
		if (w.listeners[r].l != NULL)
			evconnlistener_free(w.listeners[r].l);
	event_free(w.sigterm);
	event_free(w.sigint);
	/* after the signal events are gone (libevent restores the old handler then): a second
	 * SIGTERM must not cut the cleanup */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	if (w.drain_timer)
		event_free(w.drain_timer);
	if (w.drain_deadline)
		event_free(w.drain_deadline);
	event_free(w.resume_timer);
	if (w.reserve_fd >= 0)
		close(w.reserve_fd);
	login_pool_free(&login);	/* after the sessions: they cancelled their checks */
	store_deliver_cache_close();	/* the account handles SMTP deliveries kept open */
	queue_close(&queue);
	accounts_close(&accounts);
	/* A bufferevent freed while one of its deferred callbacks was pending (an SSL write
	 * schedules one) keeps a reference until that callback runs; event_base_free only
	 * cancels it, so the bufferevent_openssl and its SSL would be lost at exit. The loop
	 * may have stopped in the very iteration that freed it (drain_check, the shutdown
	 * timeout): let it run what is pending once more, without waiting. Nothing of ours is
	 * registered any more. */
	event_base_loop(w.base, EVLOOP_NONBLOCK);
	event_base_free(w.base);
	return 0;
}
