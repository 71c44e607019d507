/* conn - one client connection over libevent bufferevents, with or without TLS, with or
 * without COMPRESS=DEFLATE. The layers, bottom up: a socket bufferevent, or an OpenSSL one
 * (implicit TLS), or a socket with an OpenSSL filter on it (STARTTLS); then, once
 * conn_compress ran, a zlib filter on whatever was there. c->bev is always the top: the
 * session reads and writes plain protocol bytes there. */
#include "lib/conn.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/time.h>
#include <unistd.h>
#include <zlib.h>

#include "lib/connlimit.h"
#include "lib/metrics.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/xmalloc.h"

/* COMPRESS=DEFLATE (RFC 4978): both directions' zlib streams. The struct belongs to the
 * filter bufferevent (its free_context, which libevent may run after conn_free); the zlib
 * state inside goes in conn_free, which also sets c to NULL so that the filter does no more. */
struct conn_zlib {
	struct conn *c;
	z_stream in;			/* the client's stream: inflate */
	z_stream out;			/* ours: deflate */
	size_t unflushed;		/* bytes given to deflate since its last sync flush */
	bool in_more;			/* inflate ran out of room: it may hold more output */
	bool in_ended;			/* the client's stream had its final block */
	bool failed;			/* the client's stream is corrupt: the conn ends */
	size_t state_bytes;		/* what zlib allocated for both streams */
};

struct conn {
	struct event_base *base;
	struct bufferevent *bev;	/* the top layer (see above) */
	struct event *kick;		/* deferred work: resume input, finish a close */
	struct conn_zlib *z;		/* COMPRESS active */
	struct event *zflush;		/* end of a write burst: sync-flush the compressor */
	const struct conn_ops *ops;
	void *ctx;
	struct sockaddr_storage peer;
	char peer_ip[64];
	struct timeval timeout;
	size_t max_input;
	bool tls;
	bool handshaking;	/* a TLS handshake began and has not ended yet (metrics) */
	bool counted;		/* holds a slot in connlimit */
	bool paused;
	bool waiting_drain;	/* paused until the peer reads our output */
	bool closing;
	bool closed_notified;
	struct timeval close_deadline;
	struct evbuffer_iovec resv;	/* conn_write_reserve's extent */
};

#define CONN_OUTPUT_HIGH (64 * 1024)
#define CONN_OUTPUT_LOW (16 * 1024)
#define CONN_CLOSE_GRACE 10	/* seconds a last reply may take to leave */
/* deflate: the full 32 KiB window (raw deflate; RFC 4978 §4 allows windowBits -8 to -15, and
 * a long window finds repeats between the messages of a FETCH), but a smaller hash and
 * literal buffer than zlib's default memLevel 8: 144 KiB instead of 256 KiB for 0.7 % more
 * bytes (docs/architecture.md has the numbers). inflate always takes -15: any window the
 * client chose. */
#define CONN_Z_WINDOW_BITS 15
#define CONN_Z_MEM_LEVEL 5
#define CONN_Z_CHUNK (16 * 1024)	/* output space reserved per zlib call */

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

/* conn_wire - the layer under compression (the top when there is none): the one that
 * meets the socket's bytes, so timeouts and TLS live there */
static struct bufferevent *conn_wire(const struct conn *c)
{
	return c->z != NULL ? bufferevent_get_underlying(c->bev) : c->bev;
}

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
	if (c->z != NULL && c->z->failed) {
		c->ops->on_event(c->ctx, CONN_ERROR);	/* frees c */
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

/* conn_setup_bev - callbacks, watermarks, timeouts and events of a new top layer. The
 * layers below a compression filter keep their read watermark (the compressed input is
 * bounded too) and their timeouts: they see the socket's bytes, whereas the filter's own
 * (generic) write timeout would run out during a long upload that gets no reply. */
static void conn_setup_bev(struct conn *c)
{
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, c->max_input);
	/* the write callback fires once output falls to the low mark: a paused session
	 * resumes while there is still data in flight, so the pipe never runs dry */
	bufferevent_setwatermark(c->bev, EV_WRITE, c->closing ? 0 : CONN_OUTPUT_LOW, 0);
	bufferevent_set_timeouts(conn_wire(c), c->timeout.tv_sec ? &c->timeout : NULL,
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
		c->handshaking = true;
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
	if (c->handshaking)
		metrics_count(METRICS_TLS_IN_FAILED);	/* closed before the handshake ended */
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->zflush != NULL)
		event_free(c->zflush);
	if (c->z != NULL) {
		struct conn_zlib *z = c->z;
		log_debug("conn %s: compress: read %lu bytes as %lu, wrote %lu as %lu, zlib %zu bytes",
			  c->peer_ip, z->in.total_in, z->in.total_out, z->out.total_in,
			  z->out.total_out, z->state_bytes);
		/* the filter may outlive us a little (libevent finalises later): it finds c NULL */
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		z->c = NULL;
		inflateEnd(&z->in);
		deflateEnd(&z->out);
	}
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
	if (what & BEV_EVENT_CONNECTED) {
		/* TLS handshake done */
		if (c->handshaking)
			metrics_count(METRICS_TLS_IN_OK);
		c->handshaking = false;
		return;
	}
	if (c->handshaking)
		metrics_count(METRICS_TLS_IN_FAILED);
	c->handshaking = false;
	if ((what & BEV_EVENT_ERROR) && c->tls) {
		unsigned long e;
		while ((e = bufferevent_get_openssl_error(conn_wire(c))) != 0) {
			char msg[256];
			ERR_error_string_n(e, msg, sizeof(msg));
			log_debug("conn %s: TLS: %s", c->peer_ip, msg);
		}
	}
	if (c->closing) {
		/* The peer went away while we flushed: nothing more to send. */
		for (struct bufferevent *b = c->bev; b != NULL; b = bufferevent_get_underlying(b))
			evbuffer_drain(bufferevent_get_output(b),
				       evbuffer_get_length(bufferevent_get_output(b)));
		if (c->z != NULL)
			c->z->unflushed = 0;	/* what deflate holds has nowhere to go */
		event_active(c->kick, 0, 0);
		return;
	}
	enum conn_event ev = (what & BEV_EVENT_TIMEOUT) ? CONN_TIMEOUT
			     : (what & BEV_EVENT_EOF) ? CONN_EOF : CONN_ERROR;
	c->ops->on_event(c->ctx, ev);
}

static void conn_inflate_more(struct conn *c);

struct evbuffer *conn_input(struct conn *c)
{
	if (c->z != NULL)
		conn_inflate_more(c);
	return bufferevent_get_input(c->bev);
}

void conn_write(struct conn *c, const void *p, size_t n)
{
	bufferevent_write(c->bev, p, n);
}

void *conn_write_reserve(struct conn *c, size_t len)
{
	if (len == 0 ||
	    evbuffer_reserve_space(bufferevent_get_output(c->bev), (ev_ssize_t)len, &c->resv, 1) < 1)
		return NULL;
	return c->resv.iov_base;
}

void conn_write_commit(struct conn *c, size_t len)
{
	if (len == 0)
		return;
	c->resv.iov_len = len;
	evbuffer_commit_space(bufferevent_get_output(c->bev), &c->resv, 1);
}

int conn_send_file(struct conn *c, int fd, uint64_t offset, uint64_t len)
{
	/* a plain socket: the kernel sends from the page cache (sendfile); through TLS or a
	 * compressor the bytes must pass through us */
	if (c->tls || c->z != NULL || c->bev == NULL)
		return -1;
	return evbuffer_add_file(bufferevent_get_output(c->bev), fd, (ev_off_t)offset,
				 (ev_off_t)len);
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
	bufferevent_set_timeouts(conn_wire(c), seconds ? &c->timeout : NULL,
				 seconds ? &c->timeout : NULL);
}

int conn_starttls(struct conn *c, SSL_CTX *tls_ctx)
{
	if (c->z != NULL)
		return -1;	/* TLS goes under compression, never over it (RFC 4978 §3) */
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
	c->handshaking = true;
	conn_setup_bev(c);
	return 0;
}

/* ---- COMPRESS=DEFLATE ------------------------------------------------------------------ */

static voidpf conn_zalloc(voidpf opaque, uInt items, uInt size)
{
	struct conn_zlib *z = opaque;
	z->state_bytes += (size_t)items * size;	/* xreallocarray checks the product */
	return xreallocarray(NULL, items, size);
}

static void conn_zfree(voidpf opaque, voidpf p)
{
	free(p);
}

/* conn_zlib_free - the filter's free_context: the zlib state went in conn_free already */
static void conn_zlib_free(void *ctx)
{
	free(ctx);
}

/* conn_head - the first contiguous bytes of b (none when b is empty), at most 1 MiB: a
 * zlib call's size fits its uInt and its time stays short */
static struct evbuffer_iovec conn_head(struct evbuffer *b)
{
	struct evbuffer_iovec iv = { NULL, 0 };
	if (evbuffer_peek(b, -1, NULL, &iv, 1) < 1)
		iv.iov_len = 0;
	if (iv.iov_len > 1024 * 1024)
		iv.iov_len = 1024 * 1024;
	if (iv.iov_len == 0 && evbuffer_get_length(b) > 0) {
		/* an empty chain first: libevent avoids them, but be sure */
		size_t n = evbuffer_get_length(b) < CONN_Z_CHUNK ? evbuffer_get_length(b)
								  : CONN_Z_CHUNK;
		iv.iov_base = evbuffer_pullup(b, (ev_ssize_t)n);
		iv.iov_len = n;
	}
	return iv;
}

/* conn_inflate_fail - the client's stream is unusable: log it, stop, end the conn from the
 * loop (never from inside libevent's filter call) */
static void conn_inflate_fail(struct conn_zlib *z, const char *why)
{
	z->failed = true;
	log_info("conn %s: compress: bad deflate stream from the client: %s", z->c->peer_ip, why);
	event_active(z->c->kick, 0, 0);
}

/* conn_inflate_cb - the filter's input side: the client's deflate stream into dst, at most
 * dst_limit bytes (what the input watermark leaves). Whatever would go past it stays
 * compressed below, or inside zlib (in_more), until the session reads: a few KiB that
 * inflate to gigabytes never take more than max_input of memory. */
static enum bufferevent_filter_result conn_inflate_cb(struct evbuffer *src, struct evbuffer *dst,
						       ev_ssize_t dst_limit,
						       enum bufferevent_flush_mode mode, void *ctx)
{
	struct conn_zlib *z = ctx;
	if (z->c == NULL || z->failed)
		return BEV_ERROR;
	size_t room = dst_limit < 0 ? z->c->max_input : (size_t)dst_limit;
	bool progress = false;
	while (room > 0) {
		struct evbuffer_iovec iv = conn_head(src);
		if (iv.iov_len == 0 && !z->in_more)
			break;
		if (z->in_ended) {
			if (iv.iov_len > 0)
				conn_inflate_fail(z, "data after the final block");
			z->in_more = false;
			break;
		}
		struct evbuffer_iovec ov;
		size_t want = room < CONN_Z_CHUNK ? room : CONN_Z_CHUNK;
		if (evbuffer_reserve_space(dst, (ev_ssize_t)want, &ov, 1) < 1)
			log_panic("evbuffer_reserve_space failed");
		if (ov.iov_len > want)
			ov.iov_len = want;
		z->in.next_in = iv.iov_base;
		z->in.avail_in = (uInt)iv.iov_len;
		z->in.next_out = ov.iov_base;
		z->in.avail_out = (uInt)ov.iov_len;
		int r = inflate(&z->in, Z_SYNC_FLUSH);
		size_t used = iv.iov_len - z->in.avail_in;
		size_t made = ov.iov_len - z->in.avail_out;
		ov.iov_len = made;
		evbuffer_commit_space(dst, &ov, 1);
		evbuffer_drain(src, used);
		room -= made;
		z->in_more = z->in.avail_out == 0;
		if (r == Z_STREAM_END) {
			z->in_ended = true;
		} else if (r != Z_OK && r != Z_BUF_ERROR) {
			conn_inflate_fail(z, z->in.msg != NULL ? z->in.msg : zError(r));
			return BEV_ERROR;
		}
		if (used == 0 && made == 0)
			break;		/* Z_BUF_ERROR: a partial code, more input needed */
		progress = true;
	}
	if (z->failed)
		return BEV_ERROR;
	return progress ? BEV_OK : BEV_NEED_MORE;
}

/* conn_deflate_cb - the filter's output side: compress what the session wrote. Normal
 * writes only feed deflate and schedule zflush; the sync flush (a flush mode) comes once
 * per burst of writes, so a FETCH of many small pieces is not cut into many blocks. */
static enum bufferevent_filter_result conn_deflate_cb(struct evbuffer *src, struct evbuffer *dst,
						       ev_ssize_t dst_limit,
						       enum bufferevent_flush_mode mode, void *ctx)
{
	struct conn_zlib *z = ctx;
	if (z->c == NULL)
		return BEV_ERROR;
	bool flush = mode != BEV_NORMAL;
	bool fed = false;
	for (;;) {
		struct evbuffer_iovec iv = conn_head(src);
		bool last = iv.iov_len == evbuffer_get_length(src);
		int how = last && flush ? Z_SYNC_FLUSH : Z_NO_FLUSH;
		if (iv.iov_len == 0 && (how != Z_SYNC_FLUSH || z->unflushed == 0))
			break;
		z->out.next_in = iv.iov_base;
		z->out.avail_in = (uInt)iv.iov_len;
		do {
			struct evbuffer_iovec ov;
			if (evbuffer_reserve_space(dst, CONN_Z_CHUNK, &ov, 1) < 1)
				log_panic("evbuffer_reserve_space failed");
			z->out.next_out = ov.iov_base;
			z->out.avail_out = (uInt)ov.iov_len;
			int r = deflate(&z->out, how);
			ov.iov_len -= z->out.avail_out;
			evbuffer_commit_space(dst, &ov, 1);
			if (r == Z_STREAM_ERROR)
				log_panic("deflate: stream state inconsistent");
		} while (z->out.avail_out == 0);
		/* avail_out left over: deflate took all the input */
		evbuffer_drain(src, iv.iov_len);
		fed = true;
		if (how == Z_SYNC_FLUSH) {
			z->unflushed = 0;
			break;
		}
		z->unflushed += iv.iov_len;
		if (last)
			break;
	}
	if (z->unflushed > 0)
		event_active(z->c->zflush, 0, 0);
	return fed ? BEV_OK : BEV_NEED_MORE;
}

/* conn_zflush_cb - the write burst is over: what deflate holds goes out now */
static void conn_zflush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->z->unflushed > 0)
		bufferevent_flush(c->bev, EV_WRITE, BEV_FLUSH);
}

/* conn_inflate_more - inflate what waits under the filter: bytes the client pipelined
 * behind COMPRESS, bytes left below when the input was full, output zlib still holds.
 * libevent only looks there when the socket has news. Bounded by the watermark (the
 * filter's normal mode) and a no-op while reading is paused. */
static void conn_inflate_more(struct conn *c)
{
	struct conn_zlib *z = c->z;
	if (z->failed)
		return;
	if (!z->in_more && evbuffer_get_length(bufferevent_get_input(conn_wire(c))) == 0)
		return;
	bufferevent_flush(c->bev, EV_READ, BEV_NORMAL);
}

int conn_compress(struct conn *c)
{
	if (c->z != NULL || c->closing)
		return -1;
	struct conn_zlib *z = xcalloc(1, sizeof(*z));
	z->c = c;
	z->in.zalloc = z->out.zalloc = conn_zalloc;
	z->in.zfree = z->out.zfree = conn_zfree;
	z->in.opaque = z->out.opaque = z;
	if (inflateInit2(&z->in, -15) != Z_OK) {
		free(z);
		return -1;
	}
	if (deflateInit2(&z->out, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -CONN_Z_WINDOW_BITS,
			 CONN_Z_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
		inflateEnd(&z->in);
		free(z);
		return -1;
	}
	/* deferred callbacks: the filter inflates inside the session's own evbuffer_drain
	 * (libevent refills a full input buffer there); on_input must not run in the middle */
	struct bufferevent *fb = bufferevent_filter_new(c->bev, conn_inflate_cb, conn_deflate_cb,
							BEV_OPT_CLOSE_ON_FREE |
								BEV_OPT_DEFER_CALLBACKS,
							conn_zlib_free, z);
	if (fb == NULL) {
		inflateEnd(&z->in);
		deflateEnd(&z->out);
		free(z);
		return -1;
	}
	c->z = z;
	c->zflush = event_new(c->base, -1, 0, conn_zflush_cb, c);
	c->bev = fb;
	conn_setup_bev(c);
	/* input the client sent after the command is compressed: the session's next look at
	 * conn_input inflates it; the kick makes sure there is a next look */
	event_active(c->kick, 0, 0);
	return 0;
}

bool conn_is_compressed(const struct conn *c)
{
	return c->z != NULL;
}

bool conn_is_tls(const struct conn *c)
{
	return c->tls;
}

SSL *conn_ssl(const struct conn *c)
{
	return c->tls ? bufferevent_openssl_get_ssl(conn_wire(c)) : NULL;
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
	size_t n = c->z != NULL ? c->z->unflushed : 0;
	for (struct bufferevent *b = c->bev; b != NULL; b = bufferevent_get_underlying(b))
		n += evbuffer_get_length(bufferevent_get_output(b));
	return n;
}
