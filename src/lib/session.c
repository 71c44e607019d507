/* session - the protocol-independent core of a line-based server session */
#include "lib/session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/connlimit.h"
#include "lib/linereader.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct session {
	LIST_ENTRY(session) link;
	struct session_list *list;
	const struct session_ops *ops;
	void *ctx;
	struct conn *conn;
	struct session_limits limits;	/* a copy: the caller's may be short-lived */
	char id[24];
	unsigned state;
	unsigned bad_commands;
	unsigned max_bad_commands;
	unsigned commands;
	uint64_t age;			/* creation order: lower is older */
	struct event *deadline;		/* the running unit's (session_deadline_start) */
	struct timespec unit_start;
	uint64_t unit_bytes;
	bool unit;			/* a deadline unit runs */
	struct linereader lr;
	buf line;
	bool closing;
	bool raw;
	bool suspended;
	bool authenticated;
	bool plaintext_ok;
	bool selected;
};

static void session_end(struct session *s);

const char *session_id(const struct session *s)
{
	return s->id;
}

struct conn *session_conn(const struct session *s)
{
	return s->conn;
}

unsigned session_state(const struct session *s)
{
	return s->state;
}

void session_set_state(struct session *s, unsigned state)
{
	if (s->state != state)
		log_debug("%s: state %s -> %s", s->id, s->ops->state_names[s->state],
			  s->ops->state_names[state]);
	s->state = state;
}

bool session_is_closing(const struct session *s)
{
	return s->closing;
}

bool session_draining(const struct session *s)
{
	return s->list->draining;
}

void session_reply(struct session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	conn_write(s->conn, line, (size_t)n);
	log_debug("%s: > %.*s", s->id, n - 2, line);
}

void session_close(struct session *s, const char *text)
{
	if (text != NULL)
		session_reply(s, "%s", text);
	log_debug("%s: closing in state %s", s->id, s->ops->state_names[s->state]);
	s->closing = true;
	s->raw = false;
	conn_close_after_flush(s->conn);
}

bool session_bad_command(struct session *s)
{
	if (++s->bad_commands <= s->max_bad_commands)
		return false;
	log_info("%s: too many errors from %s, disconnecting", s->id, conn_peer_ip(s->conn));
	session_close(s, s->list->texts->too_many_errors);
	return true;
}

/* idle_timeout / line_timeout - the limits in force: shorter before login where the
 * protocol has a login phase */
static unsigned idle_timeout(const struct session *s)
{
	unsigned t = s->limits.timeout, lt = s->limits.login_timeout;
	return !s->authenticated && lt != 0 && lt < t ? lt : t;
}

static unsigned line_timeout(const struct session *s)
{
	unsigned t = idle_timeout(s), lt = s->limits.line_timeout;
	return lt == 0 ? t : t == 0 || lt < t ? lt : t;	/* 0: neither is set */
}

void session_set_authenticated(struct session *s, bool on)
{
	s->authenticated = on;
	conn_set_timeout(s->conn, idle_timeout(s));
}

static double elapsed_since(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* deadline_allowance - seconds the running unit may take with what it moved so far */
static double deadline_allowance(const struct session *s)
{
	double a = line_timeout(s);
	if (s->limits.min_rate != 0)
		a += (double)s->unit_bytes / s->limits.min_rate;
	return a;
}

static void deadline_arm(struct session *s, double seconds)
{
	if (seconds < 0.01)
		seconds = 0.01;
	struct timeval tv = { (time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6) };
	event_add(s->deadline, &tv);
}

/* deadline_cb - the unit's time is up, unless what it moved since bought it more */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	if (!s->unit || s->closing)
		return;
	double spent = elapsed_since(&s->unit_start), allowed = deadline_allowance(s);
	if (spent < allowed) {
		deadline_arm(s, allowed - spent);
		return;
	}
	log_info("%s: too slow from %s in state %s: %.0fs for %llu bytes", s->id,
		 conn_peer_ip(s->conn), s->ops->state_names[s->state], spent,
		 (unsigned long long)s->unit_bytes);
	s->unit = false;
	const struct session_texts *t = s->list->texts;
	session_close(s, t->too_slow != NULL ? t->too_slow : t->timeout);
}

void session_deadline_start(struct session *s)
{
	if (s->unit || s->closing || line_timeout(s) == 0)
		return;
	s->unit = true;
	s->unit_bytes = 0;
	clock_gettime(CLOCK_MONOTONIC, &s->unit_start);
	deadline_arm(s, line_timeout(s));
}

void session_deadline_stop(struct session *s)
{
	if (!s->unit)
		return;
	s->unit = false;
	event_del(s->deadline);
}

void session_set_plaintext_ok(struct session *s, bool on)
{
	s->plaintext_ok = on;
}

void session_set_selected(struct session *s, bool on)
{
	s->selected = on;
}

bool session_authenticated(const struct session *s)
{
	return s->authenticated;
}

bool session_secure(const struct session *s)
{
	return conn_is_tls(s->conn) || s->plaintext_ok;
}

void session_set_raw(struct session *s, bool on)
{
	s->raw = on;
	if (!on)
		session_deadline_stop(s);
}

bool session_is_raw(const struct session *s)
{
	return s->raw;
}

void session_suspend(struct session *s)
{
	s->suspended = true;
	conn_pause(s->conn);
}

void session_resume(struct session *s)
{
	s->suspended = false;
	if (!session_is_closing(s))
		conn_resume(s->conn);	/* runs session_process again from the loop */
}

/* refusal - the first flag of c that the session does not meet */
static bool refusal(const struct session *s, const struct session_command *c,
		    enum session_refusal *why_r)
{
	uint32_t f = c->flags;
	if (s->state < 16 && !(f & SESSION_CMD_STATE(s->state)))
		*why_r = SESSION_REFUSED_STATE;
	else if ((f & SESSION_CMD_NEEDS_AUTH) && !s->authenticated)
		*why_r = SESSION_REFUSED_NEEDS_AUTH;
	else if ((f & SESSION_CMD_PRE_AUTH) && s->authenticated)
		*why_r = SESSION_REFUSED_AUTHENTICATED;
	else if ((f & SESSION_CMD_NEEDS_TLS) && !session_secure(s))
		*why_r = SESSION_REFUSED_NEEDS_TLS;
	else if ((f & SESSION_CMD_PRE_TLS) && conn_is_tls(s->conn))
		*why_r = SESSION_REFUSED_TLS_ACTIVE;
	else if ((f & SESSION_CMD_NEEDS_SELECTED) && !s->selected)
		*why_r = SESSION_REFUSED_NOT_SELECTED;
	else
		return false;
	return true;
}

/* over_command_limit - one command more than the session may send: it is closing now */
static bool over_command_limit(struct session *s)
{
	const struct session_limits *l = &s->limits;
	bool pre = !s->authenticated && l->max_commands_before_login != 0;
	unsigned max = pre ? l->max_commands_before_login : l->max_commands;
	if (max == 0 || ++s->commands <= max)
		return false;
	log_info("%s: too many commands from %s%s, disconnecting", s->id, conn_peer_ip(s->conn),
		 pre ? " before login" : "");
	const struct session_texts *t = s->list->texts;
	session_close(s, t->too_many_commands != NULL ? t->too_many_commands : t->too_many_errors);
	return true;
}

bool session_dispatch(struct session *s, const struct session_dispatcher *d, const char *verb,
		      size_t verb_len, const void *args)
{
	if (over_command_limit(s))
		return true;
	for (size_t i = 0; i < d->n_commands; i++) {
		const struct session_command *c = &d->commands[i];
		if (strlen(c->name) != verb_len || strncasecmp(c->name, verb, verb_len) != 0)
			continue;
		enum session_refusal why;
		if (d->admit != NULL && !d->admit(s->ctx, c))
			return true;
		if (refusal(s, c, &why)) {
			log_debug("%s: %s refused (%d)", s->id, c->name, (int)why);
			d->refuse(s->ctx, c, why);
			return true;
		}
		c->handler(s->ctx, args);
		return true;
	}
	return false;
}

/* session_process - handle whatever the client sent, in order (pipelining), until more
 * input is needed, the output is full, a login is being checked, or the session closes */
static void session_process(struct session *s)
{
	for (;;) {
		if (session_is_closing(s) || s->suspended)
			break;
		if (s->raw) {
			/* what the unit moves buys it time (session_deadline_start) */
			size_t in0 = evbuffer_get_length(conn_input(s->conn));
			size_t out0 = conn_output_pending(s->conn);
			s->ops->on_raw(s->ctx);
			if (s->unit) {
				size_t in1 = evbuffer_get_length(conn_input(s->conn));
				size_t out1 = conn_output_pending(s->conn);
				s->unit_bytes += (in0 > in1 ? in0 - in1 : 0) + (out1 > out0 ? out1 - out0 : 0);
			}
			if (s->raw)
				break;		/* needs more input, or the output to drain */
			continue;
		}
		if (conn_output_full(s->conn))
			break;		/* resumes once the client reads its replies */
		bool bare_lf;
		/* conn_input each time: STARTTLS replaces the connection's buffers */
		struct evbuffer *in = conn_input(s->conn);
		int r = linereader_read(&s->lr, in, &s->line, &bare_lf);
		if (r == 0) {
			/* a line has begun (or its overlong tail is being skipped): it must end
			 * within the line deadline, however slowly its bytes come */
			if (evbuffer_get_length(in) > 0 || linereader_skipping(&s->lr))
				session_deadline_start(s);
			else
				session_deadline_stop(s);
			break;
		}
		session_deadline_stop(s);
		if (r < 0) {
			s->ops->on_line(s->ctx, NULL, 0);
			session_bad_command(s);
			continue;
		}
		if (bare_lf && s->list->texts->bare_lf != NULL) {
			session_reply(s, "%s", s->list->texts->bare_lf);
			session_bad_command(s);
			continue;
		}
		s->ops->on_line(s->ctx, s->line.data ? s->line.data : (char *)"", s->line.len);
		/* the line may have held a password (PASS, AUTH, a SASL response) */
		if (s->line.data != NULL)
			explicit_bzero(s->line.data, s->line.cap);
	}
}

static void session_on_input(void *ctx)
{
	session_process(ctx);
}

static void session_on_event(void *ctx, enum conn_event ev)
{
	struct session *s = ctx;
	if (ev == CONN_TIMEOUT) {
		log_info("%s: timeout from %s in state %s", s->id, conn_peer_ip(s->conn),
			 s->ops->state_names[s->state]);
		session_close(s, s->list->texts->timeout);
		return;
	}
	session_end(s);
}

static void session_on_closed(void *ctx)
{
	session_end(ctx);
}

static const struct conn_ops session_conn_ops = {
	.on_input = session_on_input,
	.on_event = session_on_event,
	.on_closed = session_on_closed,
};

/* session_end - the one teardown: the protocol's part, then the core's */
static void session_end(struct session *s)
{
	log_info("%s: disconnect from %s", s->id, conn_peer_ip(s->conn));
	s->ops->on_end(s->ctx);
	conn_free(&s->conn);
	event_free(s->deadline);
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.cap);
	buf_free(&s->line);
	LIST_REMOVE(s, link);
	s->list->n--;
	struct session_pool *p = s->list->pool;
	free(s);
	if (p != NULL) {
		p->n--;
		connlimit_worker_add(-1);
		if (p->on_end != NULL)
			p->on_end(p->arg);
	}
}

void session_list_init(struct session_list *l, const struct session_texts *texts)
{
	LIST_INIT(&l->head);
	l->n = 0;
	l->draining = false;
	l->texts = texts;
	l->pool = NULL;
}

void session_list_set_pool(struct session_list *l, struct session_pool *p)
{
	l->pool = p;
	if (p->n_lists < SESSION_POOL_LISTS)
		p->lists[p->n_lists++] = l;
}

/* evictable - a session that may make room for a newcomer: idle, not logged in, nothing
 * in flight (the protocol's can_drain, or not in raw mode) */
static bool evictable(struct session *s)
{
	if (s->closing || s->suspended || s->authenticated || s->unit)
		return false;
	return s->ops->can_drain != NULL ? s->ops->can_drain(s->ctx) : !s->raw;
}

/* pool_victim - the oldest evictable session of the client holding the most connections,
 * if that client keeps at least as many as the newcomer's (newcomer counted) once it is
 * gone; NULL otherwise */
static struct session *pool_victim(struct session_pool *p, struct session *newcomer)
{
	unsigned mine = connlimit_count(conn_peer(newcomer->conn));
	struct session *best = NULL;
	unsigned best_count = 0;
	for (size_t i = 0; i < p->n_lists; i++) {
		struct session *s;
		LIST_FOREACH(s, &p->lists[i]->head, link)
		{
			if (s == newcomer || !evictable(s))
				continue;
			unsigned c = connlimit_count(conn_peer(s->conn));
			if (c > best_count || (c == best_count && best != NULL && s->age < best->age)) {
				best = s;
				best_count = c;
			}
		}
	}
	return best != NULL && best_count > mine ? best : NULL;
}

/* pool_admit - false when the newcomer s was refused (it is closing) */
static bool pool_admit(struct session_pool *p, struct session *s)
{
	bool worker_full = p->max != 0 && p->n > p->max;
	bool server_full = p->max_total != 0 && connlimit_total() > p->max_total;
	if (!worker_full && !server_full) {
		if (p->max != 0 && p->n == p->max && p->on_full != NULL &&
		    (p->max_total == 0 || connlimit_total() < p->max_total))
			p->on_full(p->arg);	/* let a sibling worker with room take the next */
		return true;
	}
	struct session *v = pool_victim(p, s);
	if (v != NULL) {
		p->evicted++;
		log_info("%s: server full (%u here, %u in all): making room for %s, evictions=%u",
			 v->id, p->n, connlimit_total(), conn_peer_ip(s->conn), p->evicted);
		const struct session_texts *t = v->list->texts;
		session_close(v, t->busy != NULL ? t->busy : t->too_many_connections);
		if (worker_full && !server_full && p->on_full != NULL)
			p->on_full(p->arg);
		return true;
	}
	p->refused++;
	log_info("%s: server full (%u here, %u in all): refusing %s, refusals=%u", s->id, p->n,
		 connlimit_total(), conn_peer_ip(s->conn), p->refused);
	const struct session_texts *t = s->list->texts;
	session_close(s, t->busy != NULL ? t->busy : t->too_many_connections);
	if (worker_full && !server_full && p->on_full != NULL)
		p->on_full(p->arg);
	return false;
}

struct session *session_new(struct session_list *l, struct event_base *base, int fd,
			    const struct sockaddr *peer, socklen_t peerlen, SSL_CTX *tls,
			    const struct session_limits *limits, const struct session_ops *ops,
			    void *ctx, char id_prefix, const char *label, const char *greeting)
{
	static unsigned long counter;
	struct session *s = xcalloc(1, sizeof(*s));
	s->list = l;
	s->ops = ops;
	s->ctx = ctx;
	s->limits = *limits;
	s->age = counter + 1;
	s->max_bad_commands = limits->max_bad_commands;
	s->deadline = evtimer_new(base, deadline_cb, s);
	if (s->deadline == NULL)
		log_panic("evtimer_new failed");
	snprintf(s->id, sizeof(s->id), "%c%lx.%lu", id_prefix, (long)getpid(), ++counter);
	s->conn = conn_new(base, fd, peer, peerlen, tls, limits->max_input, limits->max_per_ip,
			   &session_conn_ops, s);
	linereader_init(&s->lr, limits->max_line);
	buf_init(&s->line, 0);
	LIST_INSERT_HEAD(&l->head, s, link);
	l->n++;
	if (l->pool != NULL) {
		l->pool->n++;
		connlimit_worker_add(1);
	}
	log_info("%s: connect from %s role=%s", s->id, conn_peer_ip(s->conn), label);
	if (conn_over_ip_limit(s->conn)) {
		log_info("%s: too many connections from %s", s->id, conn_peer_ip(s->conn));
		session_close(s, l->texts->too_many_connections);
		return s;
	}
	if (l->pool != NULL && !pool_admit(l->pool, s))
		return s;
	s->plaintext_ok = limits->plaintext_auth_loopback && conn_peer_is_loopback(s->conn);
	conn_set_timeout(s->conn, idle_timeout(s));
	session_reply(s, "%s", greeting);
	return s;
}

void session_list_drain(struct session_list *l)
{
	l->draining = true;
	struct session *s, *next;
	for (s = LIST_FIRST(&l->head); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (s->closing || s->raw || s->suspended)
			continue;
		if (s->ops->can_drain == NULL || s->ops->can_drain(s->ctx))
			session_close(s, s->list->texts->drain);
	}
}

void session_list_free(struct session_list *l)
{
	while (!LIST_EMPTY(&l->head))
		session_end(LIST_FIRST(&l->head));
}
