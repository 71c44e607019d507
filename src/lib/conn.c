/* conn - one client connection over libevent bufferevents, with or without TLS */
#include "lib/conn.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/connlimit.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xmalloc.h"

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *kick;		/* deferred work: resume input, finish a close */
	const struct conn_ops *ops;
	void *ctx;
	struct sockaddr_storage peer;
	char peer_ip[64];
	struct timeval timeout;
	size_t max_input;
	bool tls;
	bool counted;		/* holds a slot in connlimit */
	bool paused;
	bool waiting_drain;	/* paused until the peer reads our output */
	bool closing;
	bool closed_notified;
	struct timeval close_deadline;
};

#define CONN_OUTPUT_HIGH (64 * 1024)
#define CONN_OUTPUT_LOW (16 * 1024)
#define CONN_CLOSE_GRACE 10	/* seconds a last reply may take to leave */

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* conn_kick_cb - run deferred work outside the bufferevent's own callbacks */
static void conn_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->closing) {
		if (c->closed_notified)
			return;
		struct timeval now;
		gettimeofday(&now, NULL);
		/* Done when the output left, or when the peer stopped reading: a write timeout
		 * or error disables writing for good, and a close must not wait forever. */
		if (conn_output_pending(c) == 0 || timercmp(&now, &c->close_deadline, >)) {
			c->closed_notified = true;
			c->ops->on_closed(c->ctx);
		} else {
			/* A TLS filter's lower layer may still hold bytes: look again soon. */
			struct timeval tv = { 0, 5000 };
			event_add(c->kick, &tv);
		}
		return;
	}
	if (c->waiting_drain) {
		/* A TLS filter hands its bytes to the layer below at once, so the filter's write
		 * callback may never fire again: look at the total now and then. */
		if (conn_output_pending(c) > CONN_OUTPUT_LOW) {
			struct timeval tv = { 0, 10000 };
			event_add(c->kick, &tv);
			return;
		}
		c->waiting_drain = false;
		c->paused = false;
		bufferevent_enable(c->bev, EV_READ);
	}
	/* After a resume the session runs even with no new input: it may have output of its
	 * own to continue (a POP3 RETR streaming a large message). */
	if (!c->paused)
		c->ops->on_input(c->ctx);
}

static void conn_setup_bev(struct conn *c)
{
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, c->max_input);
	/* the write callback fires once output falls to the low mark: a paused session
	 * resumes while there is still data in flight, so the pipe never runs dry */
	bufferevent_setwatermark(c->bev, EV_WRITE, c->closing ? 0 : CONN_OUTPUT_LOW, 0);
	bufferevent_set_timeouts(c->bev, c->timeout.tv_sec ? &c->timeout : NULL,
				 c->timeout.tv_sec ? &c->timeout : NULL);
	bufferevent_enable(c->bev, c->paused || c->closing ? EV_WRITE : EV_READ | EV_WRITE);
}

struct conn *conn_new(struct event_base *base, int fd, const struct sockaddr *peer,
		      socklen_t peerlen, SSL_CTX *tls_ctx, size_t max_input, unsigned max_per_ip,
		      const struct conn_ops *ops, void *ctx)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	/* replies are written whole, often several in a row: never let the last small
	 * segment wait for the peer's delayed ACK (Nagle) */
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->base = base;
	c->ops = ops;
	c->ctx = ctx;
	c->max_input = max_input;
	if (peerlen > sizeof(c->peer))
		peerlen = sizeof(c->peer);
	memcpy(&c->peer, peer, peerlen);
	net_ntop(peer, c->peer_ip, sizeof(c->peer_ip));
	c->counted = connlimit_acquire(peer, max_per_ip);
	if (tls_ctx != NULL) {
		SSL *ssl = SSL_new(tls_ctx);
		c->bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
							BEV_OPT_CLOSE_ON_FREE);
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
		c->tls = true;
	} else {
		c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	if (c->bev == NULL)
		log_panic("bufferevent_socket_new failed");
	c->kick = event_new(base, -1, 0, conn_kick_cb, c);
	conn_setup_bev(c);
	return c;
}

void conn_free(struct conn **cp)
{
	struct conn *c = *cp;
	if (c == NULL)
		return;
	if (c->counted)
		connlimit_release((const struct sockaddr *)&c->peer);
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
	*cp = NULL;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (!c->paused && !c->closing)
		c->ops->on_input(c->ctx);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->closing) {
		event_active(c->kick, 0, 0);
	} else if (c->waiting_drain) {
		event_active(c->kick, 0, 0);
	}
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED)
		return;		/* TLS handshake done */
	if (what & BEV_EVENT_ERROR) {
		unsigned long e;
		while ((e = bufferevent_get_openssl_error(bev)) != 0) {
			char msg[256];
			ERR_error_string_n(e, msg, sizeof(msg));
			log_debug("conn %s: TLS: %s", c->peer_ip, msg);
		}
	}
	if (c->closing) {
		/* The peer went away while we flushed: nothing more to send. */
		struct bufferevent *under = bufferevent_get_underlying(c->bev);
		evbuffer_drain(bufferevent_get_output(c->bev),
			       evbuffer_get_length(bufferevent_get_output(c->bev)));
		if (under != NULL)
			evbuffer_drain(bufferevent_get_output(under),
				       evbuffer_get_length(bufferevent_get_output(under)));
		event_active(c->kick, 0, 0);
		return;
	}
	enum conn_event ev = (what & BEV_EVENT_TIMEOUT) ? CONN_TIMEOUT
			     : (what & BEV_EVENT_EOF) ? CONN_EOF : CONN_ERROR;
	c->ops->on_event(c->ctx, ev);
}

struct evbuffer *conn_input(struct conn *c)
{
	return bufferevent_get_input(c->bev);
}

void conn_write(struct conn *c, const void *p, size_t n)
{
	bufferevent_write(c->bev, p, n);
}

void conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
}

void conn_set_timeout(struct conn *c, unsigned seconds)
{
	c->timeout.tv_sec = seconds;
	c->timeout.tv_usec = 0;
	bufferevent_set_timeouts(c->bev, seconds ? &c->timeout : NULL, seconds ? &c->timeout : NULL);
}

int conn_starttls(struct conn *c, SSL_CTX *tls_ctx)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	SSL *ssl = SSL_new(tls_ctx);
	if (ssl == NULL)
		return -1;
	struct bufferevent *tb = bufferevent_openssl_filter_new(c->base, c->bev, ssl,
		BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tb == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	c->bev = tb;
	c->tls = true;
	conn_setup_bev(c);
	return 0;
}

bool conn_is_tls(const struct conn *c)
{
	return c->tls;
}

SSL *conn_ssl(const struct conn *c)
{
	return c->tls ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

void conn_pause(struct conn *c)
{
	c->paused = true;
	bufferevent_disable(c->bev, EV_READ);
}

void conn_resume(struct conn *c)
{
	c->paused = false;
	if (!c->closing) {
		bufferevent_enable(c->bev, EV_READ);
		event_active(c->kick, 0, 0);
	}
}

bool conn_output_full(struct conn *c)
{
	if (conn_output_pending(c) <= CONN_OUTPUT_HIGH)
		return false;
	/* stop reading until the peer has taken what we owe it (write watermark 0) */
	c->waiting_drain = true;
	conn_pause(c);
	struct timeval tv = { 0, 10000 };
	event_add(c->kick, &tv);
	return true;
}

void conn_close_after_flush(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	gettimeofday(&c->close_deadline, NULL);
	c->close_deadline.tv_sec += CONN_CLOSE_GRACE;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	event_active(c->kick, 0, 0);
}

bool conn_over_ip_limit(const struct conn *c)
{
	return !c->counted;
}

const struct sockaddr *conn_peer(const struct conn *c)
{
	return (const struct sockaddr *)&c->peer;
}

const char *conn_peer_ip(const struct conn *c)
{
	return c->peer_ip;
}

bool conn_peer_is_loopback(const struct conn *c)
{
	return net_is_loopback((const struct sockaddr *)&c->peer);
}

size_t conn_output_pending(const struct conn *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));
	struct bufferevent *under = bufferevent_get_underlying(c->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}
