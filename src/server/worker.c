/* worker - a worker process's event loop */
#include "server/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "lib/log.h"
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
	struct worker_listener listeners[ROLE_COUNT];
	struct event *sigterm, *sigint, *drain_timer, *drain_deadline;
	bool draining;
};

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

static void listener_reenable(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(arg);
}

static void worker_accept_error(struct evconnlistener *l, void *arg)
{
	/* EMFILE and friends: pause briefly instead of spinning */
	log_warn("accept");
	evconnlistener_disable(l);
	struct timeval tv = { 1, 0 };
	event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, listener_reenable, l, &tv);
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
	for (int r = 0; r < ROLE_COUNT; r++)
		if (w->listeners[r].l != NULL)
			evconnlistener_disable(w->listeners[r].l);
	smtp_server_drain(&w->smtp);
	pop3_server_drain(&w->pop3);
	imap_server_drain(&w->imap);
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
	pop3_server_init(&w.pop3, w.base, cfg, tls, accounts, login);
	imap_server_init(&w.imap, w.base, cfg, tls, accounts, login);
	for (int r = 0; r < ROLE_COUNT; r++) {
		if (listen_fds[r] < 0)
			continue;
		w.listeners[r].w = &w;
		w.listeners[r].role = (enum listen_role)r;
		w.listeners[r].l = evconnlistener_new(w.base, worker_accept, &w.listeners[r],
						      LEV_OPT_CLOSE_ON_EXEC, 0, listen_fds[r]);
		if (w.listeners[r].l == NULL)
			log_fatalx("evconnlistener_new failed for %s", config_role_name(r));
		evconnlistener_set_error_cb(w.listeners[r].l, worker_accept_error);
	}
	w.sigterm = evsignal_new(w.base, SIGTERM, worker_stop, &w);
	w.sigint = evsignal_new(w.base, SIGINT, worker_stop, &w);
	event_add(w.sigterm, NULL);
	event_add(w.sigint, NULL);

	event_base_dispatch(w.base);

	smtp_server_free(&w.smtp);
	pop3_server_free(&w.pop3);
	imap_server_free(&w.imap);
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
	login_pool_free(&login);	/* after the sessions: they cancelled their checks */
	store_deliver_cache_close();	/* the account handles SMTP deliveries kept open */
	queue_close(&queue);
	accounts_close(&accounts);
	event_base_free(w.base);
	return 0;
}
