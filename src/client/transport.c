/* transport - blocking socket + OpenSSL + line reader for the command-line client */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sysexits.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "client/transport.h"
#include "lib/base64.h"
#include "lib/net.h"
#include "lib/xmalloc.h"

int client_fail(char **error_r, int code, const char *fmt, ...)
{
	va_list ap;
	buf b;
	buf_init(&b, 0);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	free(*error_r);
	*error_r = b.data ? b.data : xstrdup("error");
	return code;
}

void client_sasl_plain(const char *user, const char *password, buf *out)
{
	buf raw;
	buf_init(&raw, 0);
	buf_putc(&raw, '\0');
	buf_puts(&raw, user);
	buf_putc(&raw, '\0');
	buf_puts(&raw, password);
	base64_encode(raw.data, raw.len, out);
	buf_append(out, "", 0);
	explicit_bzero(raw.data, raw.len);
	buf_free(&raw);
}

/* ssl_errors - OpenSSL's error queue as one string (static buffer) */
static const char *ssl_errors(void)
{
	static char out[512];
	unsigned long e;
	out[0] = '\0';
	size_t n = 0;
	while ((e = ERR_get_error()) != 0 && n + 2 < sizeof(out)) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		int w = snprintf(out + n, sizeof(out) - n, "%s%s", n ? "; " : "", one);
		if (w < 0)
			break;
		n += (size_t)w;
		if (n >= sizeof(out))
			n = sizeof(out) - 1;
	}
	return out[0] ? out : "no details";
}

/* connect_one - non-blocking connect bounded by the timeout, then back to blocking with
 * send/receive timeouts on the socket. fd or -1 with errno. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			ai->ai_protocol);
	if (fd < 0)
		return -1;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS)
			goto bad;
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		int r = poll(&p, 1, timeout_ms);
		if (r == 0) {
			errno = ETIMEDOUT;
			goto bad;
		}
		if (r < 0)
			goto bad;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			goto bad;
		if (soerr != 0) {
			errno = soerr;
			goto bad;
		}
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
		goto bad;
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
bad:;
	int e = errno;
	close(fd);
	errno = e;
	return -1;
}

int transport_connect(struct transport *t, const char *host, uint16_t port,
		      enum transport_tls tls, bool insecure, int timeout_s, char **error_r)
{
	memset(t, 0, sizeof(*t));
	t->fd = -1;
	t->host = xstrdup(host);
	t->insecure = insecure;
	t->timeout_ms = timeout_s * 1000;

	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *res = NULL;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
	int gr = getaddrinfo(host, portstr, &hints, &res);
	if (gr != 0) {
		if (gr == EAI_NONAME || gr == EAI_NODATA || gr == EAI_FAIL || gr == EAI_AGAIN)
			return client_fail(error_r, EX_NOHOST, "%s: unknown server (%s)", host,
				    gai_strerror(gr));
		return client_fail(error_r, EX_NOHOST, "%s: %s", host, gai_strerror(gr));
	}
	int err = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		t->fd = connect_one(ai, t->timeout_ms);
		if (t->fd >= 0) {
			t->loopback = net_is_loopback(ai->ai_addr);
			break;
		}
		err = errno;
	}
	freeaddrinfo(res);
	if (t->fd < 0)
		return client_fail(error_r, EX_UNAVAILABLE, "%s port %u: cannot connect: %s", host,
			    (unsigned)port, strerror(err));
	if (tls == TRANSPORT_TLS_IMPLICIT)
		return transport_start_tls(t, error_r);
	return 0;
}

static bool is_ip_literal(const char *host)
{
	unsigned char tmp[16];
	return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

int transport_start_tls(struct transport *t, char **error_r)
{
	t->failed = true;	/* until the handshake is done */
	if (t->rpos < t->rlen)
		return client_fail(error_r, EX_PROTOCOL,
			    "%s: the server sent data before the TLS handshake", t->host);
	ERR_clear_error();
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL)
		return client_fail(error_r, EX_SOFTWARE, "TLS: %s", ssl_errors());
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	if (!t->insecure) {
		if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
			return client_fail(error_r, EX_SOFTWARE, "TLS: no CA certificates: %s",
				    ssl_errors());
		SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	}
	t->ssl = SSL_new(t->ctx);
	if (t->ssl == NULL)
		return client_fail(error_r, EX_SOFTWARE, "TLS: %s", ssl_errors());
	bool ip = is_ip_literal(t->host);
	if (!ip)
		SSL_set_tlsext_host_name(t->ssl, t->host);
	if (!t->insecure) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, t->host)
			    : X509_VERIFY_PARAM_set1_host(vp, t->host, 0);
		if (ok != 1)
			return client_fail(error_r, EX_SOFTWARE, "TLS: cannot check the name %s", t->host);
	}
	SSL_set_fd(t->ssl, t->fd);
	if (SSL_connect(t->ssl) != 1) {
		long v = SSL_get_verify_result(t->ssl);
		if (!t->insecure && v != X509_V_OK)
			return client_fail(error_r, EX_PROTOCOL,
				    "%s: TLS certificate verification failed: %s "
				    "(--insecure skips the check)",
				    t->host, X509_verify_cert_error_string(v));
		return client_fail(error_r, EX_PROTOCOL, "%s: TLS handshake failed: %s", t->host,
			    ssl_errors());
	}
	t->failed = false;
	return 0;
}

bool transport_is_tls(const struct transport *t)
{
	return t->ssl != NULL;
}

int transport_write(struct transport *t, const void *p, size_t n, char **error_r)
{
	const char *c = p;
	if (t->failed)
		return client_fail(error_r, EX_IOERR, "%s: the connection is broken", t->host);
	while (n > 0) {
		ssize_t w;
		if (t->ssl) {
			int chunk = n > 1 << 30 ? 1 << 30 : (int)n;
			ERR_clear_error();
			int r = SSL_write(t->ssl, c, chunk);
			if (r <= 0) {
				t->failed = true;
				return client_fail(error_r, EX_IOERR, "%s: TLS write failed: %s", t->host,
					    errno ? strerror(errno) : ssl_errors());
			}
			w = r;
		} else {
			w = write(t->fd, c, n);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				t->failed = true;
				return client_fail(error_r, EX_IOERR, "%s: write failed: %s", t->host,
					    strerror(errno));
			}
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fill - read more bytes into rbuf (which must be empty) */
static int fill(struct transport *t, char **error_r)
{
	ssize_t r;
	t->failed = true;	/* unless the read below succeeds */
	t->rpos = t->rlen = 0;
	for (;;) {
		errno = 0;
		if (t->ssl) {
			ERR_clear_error();
			int n = SSL_read(t->ssl, t->rbuf, (int)sizeof(t->rbuf));
			if (n <= 0) {
				int e = SSL_get_error(t->ssl, n);
				if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
					return client_fail(error_r, EX_PROTOCOL,
						    "%s: the server closed the connection", t->host);
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return client_fail(error_r, EX_UNAVAILABLE,
						    "%s: timed out waiting for the server", t->host);
				return client_fail(error_r, EX_IOERR, "%s: TLS read failed: %s", t->host,
					    errno ? strerror(errno) : ssl_errors());
			}
			r = n;
		} else {
			r = read(t->fd, t->rbuf, sizeof(t->rbuf));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return client_fail(error_r, EX_UNAVAILABLE,
					    "%s: timed out waiting for the server", t->host);
			if (r < 0)
				return client_fail(error_r, EX_IOERR, "%s: read failed: %s", t->host,
					    strerror(errno));
			if (r == 0)
				return client_fail(error_r, EX_PROTOCOL,
					    "%s: the server closed the connection", t->host);
		}
		t->rlen = (size_t)r;
		t->failed = false;
		return 0;
	}
}

int transport_read_line(struct transport *t, buf *line, char **error_r)
{
	buf_reset(line);
	for (;;) {
		if (t->rpos == t->rlen) {
			int r = fill(t, error_r);
			if (r != 0)
				return r;
		}
		const char *s = t->rbuf + t->rpos;
		size_t avail = t->rlen - t->rpos;
		const char *lf = memchr(s, '\n', avail);
		size_t take = lf ? (size_t)(lf - s) + 1 : avail;
		if (line->len + take > TRANSPORT_MAX_LINE)
			return client_fail(error_r, EX_PROTOCOL, "%s: a line from the server is too long",
				    t->host);
		buf_append(line, s, take);
		t->rpos += take;
		if (lf) {
			line->len--;
			if (line->len > 0 && line->data[line->len - 1] == '\r')
				line->len--;
			line->data[line->len] = '\0';
			return 0;
		}
	}
}

int transport_read_exact(struct transport *t, size_t n, buf *out, char **error_r)
{
	while (n > 0) {
		if (t->rpos == t->rlen) {
			int r = fill(t, error_r);
			if (r != 0)
				return r;
		}
		size_t take = t->rlen - t->rpos;
		if (take > n)
			take = n;
		if (buf_append(out, t->rbuf + t->rpos, take) < 0)
			return client_fail(error_r, EX_PROTOCOL, "%s: the server's answer is too big",
				    t->host);
		t->rpos += take;
		n -= take;
	}
	return 0;
}

void transport_close(struct transport *t)
{
	if (t->ssl) {
		if (!t->failed)
			SSL_shutdown(t->ssl);
		SSL_free(t->ssl);
		t->ssl = NULL;
	}
	if (t->ctx) {
		SSL_CTX_free(t->ctx);
		t->ctx = NULL;
	}
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	free(t->host);
	t->host = NULL;
}
