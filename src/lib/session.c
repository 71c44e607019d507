/* session - the protocol-independent core of a line-based server session */
#include "lib/session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/linereader.h"
#include "lib/log.h"
#include "lib/xmalloc.h"

struct session {
	LIST_ENTRY(session) link;
	struct session_list *list;
	const struct session_ops *ops;
	void *ctx;
	struct conn *conn;
	char id[24];
	unsigned state;
	unsigned bad_commands;
	unsigned max_bad_commands;
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

void session_set_authenticated(struct session *s, bool on)
{
	s->authenticated = on;
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

bool session_dispatch(struct session *s, const struct session_dispatcher *d, const char *verb,
		      size_t verb_len, const void *args)
{
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
			s->ops->on_raw(s->ctx);
			if (s->raw)
				break;		/* needs more input, or the output to drain */
			continue;
		}
		if (conn_output_full(s->conn))
			break;		/* resumes once the client reads its replies */
		bool bare_lf;
		/* conn_input each time: STARTTLS replaces the connection's buffers */
		int r = linereader_read(&s->lr, conn_input(s->conn), &s->line, &bare_lf);
		if (r == 0)
			break;
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
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.cap);
	buf_free(&s->line);
	LIST_REMOVE(s, link);
	s->list->n--;
	free(s);
}

void session_list_init(struct session_list *l, const struct session_texts *texts)
{
	LIST_INIT(&l->head);
	l->n = 0;
	l->draining = false;
	l->texts = texts;
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
	s->max_bad_commands = limits->max_bad_commands;
	snprintf(s->id, sizeof(s->id), "%c%lx.%lu", id_prefix, (long)getpid(), ++counter);
	s->conn = conn_new(base, fd, peer, peerlen, tls, limits->max_input, limits->max_per_ip,
			   &session_conn_ops, s);
	linereader_init(&s->lr, limits->max_line);
	buf_init(&s->line, 0);
	LIST_INSERT_HEAD(&l->head, s, link);
	l->n++;
	log_info("%s: connect from %s role=%s", s->id, conn_peer_ip(s->conn), label);
	if (conn_over_ip_limit(s->conn)) {
		log_info("%s: too many connections from %s", s->id, conn_peer_ip(s->conn));
		session_close(s, l->texts->too_many_connections);
		return s;
	}
	s->plaintext_ok = limits->plaintext_auth_loopback && conn_peer_is_loopback(s->conn);
	conn_set_timeout(s->conn, limits->timeout);
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
