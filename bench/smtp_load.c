/* bench/smtp_load.c - the SMTP submission load generator of bench/relay.sh (C, OpenSSL; built
 * by `make bench-tools` into build/bench/smtp_load).
 *
 *   smtp_load --port P --from F --to T [--messages 5000] [--sessions 20] [--size 10240]
 *             [--user U --password W] [--tls] [--tag TEXT] [--host 127.0.0.1] [--timeout 60]
 *
 * Opens --sessions SMTP connections to HOST:P at once and drives them from one poll(2) loop
 * (non-blocking sockets): greeting, EHLO, with --tls STARTTLS and EHLO again, with --user
 * AUTH PLAIN (initial response), then messages until --messages have been handed out over
 * all sessions, then QUIT. Without --user there is no AUTH: Postfix relaying for mynetworks,
 * or smtp-sink, which shows the generator's own ceiling.
 *
 * Each message is one transaction pipelined as RFC 2920 allows: "MAIL FROM / RCPT TO / DATA"
 * in one write, their three replies (250, 250, 354), then the message and the final dot in one
 * write, then its 250. The message has a few headers (a unique Message-ID, X-Bench-Seq) and a
 * body of --size bytes in 78-character lines. Every reply must be the expected one; anything
 * else, --timeout seconds without progress, or a closed connection is a failure.
 *
 * Prints one line of JSON:
 *   {"messages": N, "sessions": S, "start_ns": T0, "first_ns": TM, "last_ns": T1,
 *    "seconds": S, "auth_seconds": A, "auth_median": M, "client_cpu": C}
 * start_ns: wall clock (CLOCK_REALTIME, as `date +%s%N`) just before the first connection;
 * first_ns: the first MAIL FROM written; last_ns: just after the last message's 250;
 * seconds = (last_ns - start_ns) / 1e9; auth_seconds / auth_median: the longest / median time
 * of a session from connect to ready (235, or the last EHLO without AUTH); client_cpu: this
 * process's CPU time (user + system, getrusage) over the whole run.
 *
 * Exit status 0 on success; 1 with a message on stderr on any error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *opt_host = "127.0.0.1", *opt_from, *opt_to, *opt_user, *opt_pass;
static const char *opt_tag = "bench";
static int opt_port, opt_messages = 5000, opt_sessions = 20, opt_size = 10240, opt_tls, opt_timeout = 60;

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("smtp_load: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

enum phase { GREET, EHLO1, STARTTLS, HANDSHAKE, EHLO2, AUTH, ENVELOPE, DATA_END, QUIT, DONE };

#define HEADROOM 512
#define RBUF 16384

struct sess {
	int id, fd;
	SSL *ssl;
	enum phase ph;
	int exp[3], nexp, iexp;	/* the replies expected for what was written */
	int seen_pipelining, seen_starttls;
	char rbuf[RBUF];
	size_t rlen;
	const char *out;	/* what is left to write */
	size_t outlen;
	char small[1024];	/* commands */
	char *msg;	/* HEADROOM for the headers, then the body and the dot */
	long seq;
	double t_conn, t_ready, t_progress;
};

static struct sess *S;
static long next_msg, done_msgs;
static int64_t first_ns, last_ns;
static const char *body_tmpl;
static size_t body_len;
static SSL_CTX *ctx;

__attribute__((format(printf, 2, 3))) static void fail(struct sess *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "smtp_load: session %d: ", s->id);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void queue_write(struct sess *s, const char *p, size_t n, int e1, int e2, int e3)
{
	s->out = p;
	s->outlen = n;
	s->exp[0] = e1;
	s->exp[1] = e2;
	s->exp[2] = e3;
	s->nexp = e3 ? 3 : e2 ? 2 : 1;
	s->iexp = 0;
}

__attribute__((format(printf, 3, 4))) static void send_cmd(struct sess *s, int code, const char *fmt, ...)
{
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vsnprintf(s->small, sizeof s->small, fmt, ap);
	va_end(ap);
	queue_write(s, s->small, (size_t)n, code, 0, 0);
}

/* the next message, or QUIT when all are handed out */
static void next_transaction(struct sess *s)
{
	if (next_msg >= opt_messages) {
		s->ph = QUIT;
		send_cmd(s, 221, "QUIT\r\n");
		return;
	}
	s->seq = next_msg++;
	s->ph = ENVELOPE;
	if (!first_ns)
		first_ns = wall_ns();
	int n = snprintf(s->small, sizeof s->small, "MAIL FROM:<%s> SIZE=%zu\r\nRCPT TO:<%s>\r\nDATA\r\n",
			 opt_from, body_len + HEADROOM, opt_to);
	queue_write(s, s->small, (size_t)n, 250, 250, 354);
}

static void ready(struct sess *s)
{
	s->t_ready = mono();
	next_transaction(s);
}

static void after_ehlo(struct sess *s)
{
	if (opt_tls && s->ph == EHLO1) {
		if (!s->seen_starttls)
			fail(s, "the server does not offer STARTTLS");
		s->ph = STARTTLS;
		send_cmd(s, 220, "STARTTLS\r\n");
		return;
	}
	if (!s->seen_pipelining)
		fail(s, "the server does not offer PIPELINING");
	if (opt_user) {
		unsigned char raw[600], b64[820];
		int n = snprintf((char *)raw, sizeof raw, "%c%s%c%s", 0, opt_user, 0, opt_pass);
		EVP_EncodeBlock(b64, raw, n);
		s->ph = AUTH;
		send_cmd(s, 235, "AUTH PLAIN %s\r\n", b64);
		return;
	}
	ready(s);
}

/* all expected replies of the last write have arrived */
static void advance(struct sess *s)
{
	switch (s->ph) {
	case GREET:
		s->ph = EHLO1;
		send_cmd(s, 250, "EHLO bench-client.example.org\r\n");
		break;
	case EHLO1:
	case EHLO2:
		after_ehlo(s);
		break;
	case STARTTLS:
		if (s->rlen)
			fail(s, "bytes after the STARTTLS reply");
		s->ssl = SSL_new(ctx);
		if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1)
			fail(s, "SSL_new failed");
		s->ph = HANDSHAKE;
		s->nexp = 0;
		break;
	case AUTH:
		ready(s);
		break;
	case ENVELOPE: {
		/* the headers right before the body in the same buffer: one write */
		char head[HEADROOM];
		int n = snprintf(head, sizeof head,
				 "From: <%s>\r\nTo: <%s>\r\nSubject: relay bench %ld\r\n"
				 "Message-ID: <%s.%ld@bench-client.example.org>\r\nX-Bench-Seq: %ld\r\n\r\n",
				 opt_from, opt_to, s->seq, opt_tag, s->seq, s->seq);
		if (n >= HEADROOM)
			fail(s, "headers too long");
		memcpy(s->msg + HEADROOM - n, head, (size_t)n);
		s->ph = DATA_END;
		queue_write(s, s->msg + HEADROOM - n, (size_t)n + body_len, 250, 0, 0);
		break;
	}
	case DATA_END:
		done_msgs++;
		last_ns = wall_ns();
		next_transaction(s);
		break;
	case QUIT:
		s->ph = DONE;
		if (s->ssl) {
			SSL_free(s->ssl);
			s->ssl = NULL;
		}
		close(s->fd);
		s->fd = -1;
		break;
	default:
		fail(s, "internal: reply in phase %d", s->ph);
	}
}

/* one complete reply line (without CRLF) */
static void on_line(struct sess *s, char *l, size_t len)
{
	int code;
	if (len < 3 || l[0] < '0' || l[0] > '9' || l[1] < '0' || l[1] > '9' || l[2] < '0' || l[2] > '9')
		fail(s, "malformed reply line '%.*s'", (int)(len > 200 ? 200 : len), l);
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (s->ph == EHLO1 || s->ph == EHLO2) {
		if (len >= 14 && strncasecmp(l + 4, "PIPELINING", 10) == 0)
			s->seen_pipelining = 1;
		if (len >= 12 && strncasecmp(l + 4, "STARTTLS", 8) == 0)
			s->seen_starttls = 1;
	}
	if (len > 3 && l[3] == '-')
		return;	/* more lines of this reply follow */
	if (s->iexp >= s->nexp)
		fail(s, "unexpected reply '%.*s'", (int)(len > 200 ? 200 : len), l);
	if (code != s->exp[s->iexp])
		fail(s, "phase %d%s%ld: expected %d, got '%.*s'", s->ph, s->seq >= 0 ? ", message " : "",
		     s->seq, s->exp[s->iexp], (int)(len > 200 ? 200 : len), l);
	s->iexp++;
	if (s->iexp == s->nexp && s->outlen == 0)
		advance(s);
}

/* the complete lines in rbuf, one at a time: each is copied out and removed before on_line
 * sees it, so that STARTTLS can tell whether anything followed its reply */
static void parse(struct sess *s)
{
	char line[RBUF];
	char *nl;
	while (s->fd >= 0 && (nl = memchr(s->rbuf, '\n', s->rlen)) != NULL) {
		size_t n = (size_t)(nl - s->rbuf) + 1, len = n - 1;
		if (len > 0 && s->rbuf[len - 1] == '\r')
			len--;
		memcpy(line, s->rbuf, len);
		memmove(s->rbuf, s->rbuf + n, s->rlen - n);
		s->rlen -= n;
		on_line(s, line, len);
	}
	if (s->rlen == RBUF)
		fail(s, "reply line longer than %d bytes", RBUF);
}

static const char *ssl_err(void)
{
	static char b[256];
	unsigned long e = ERR_get_error();
	if (!e)
		return strerror(errno);
	ERR_error_string_n(e, b, sizeof b);
	return b;
}

/* I/O on one session: finish the handshake, write what is pending, read what is there.
 * Returns the poll events to wait for next. */
static short pump(struct sess *s)
{
	for (;;) {
		ssize_t r;
		if (s->fd < 0)
			return 0;
		if (s->ph == HANDSHAKE) {
			int k = SSL_connect(s->ssl);
			if (k != 1) {
				int e = SSL_get_error(s->ssl, k);
				if (e == SSL_ERROR_WANT_READ)
					return POLLIN;
				if (e == SSL_ERROR_WANT_WRITE)
					return POLLOUT;
				fail(s, "TLS handshake: %s", ssl_err());
			}
			s->ph = EHLO2;
			s->seen_pipelining = 0;
			send_cmd(s, 250, "EHLO bench-client.example.org\r\n");
		}
		while (s->outlen > 0) {
			ssize_t w;
			if (s->ssl) {
				int k = SSL_write(s->ssl, s->out, (int)s->outlen);
				if (k <= 0) {
					int e = SSL_get_error(s->ssl, k);
					if (e == SSL_ERROR_WANT_WRITE)
						return POLLOUT;
					if (e == SSL_ERROR_WANT_READ)
						return POLLIN;
					fail(s, "SSL_write: %s", ssl_err());
				}
				w = k;
			} else {
				w = send(s->fd, s->out, s->outlen, MSG_NOSIGNAL);
				if (w < 0) {
					if (errno == EAGAIN || errno == EWOULDBLOCK)
						return POLLOUT;
					if (errno == EINTR)
						continue;
					fail(s, "send: %s", strerror(errno));
				}
			}
			s->out += w;
			s->outlen -= (size_t)w;
			s->t_progress = mono();
			/* all replies came before the write ended (a server may answer early) */
			if (s->outlen == 0 && s->nexp > 0 && s->iexp == s->nexp)
				advance(s);
		}
		if (s->fd < 0 || s->ph == HANDSHAKE)
			continue;
		if (s->ssl) {
			int k = SSL_read(s->ssl, s->rbuf + s->rlen, (int)(RBUF - s->rlen));
			if (k <= 0) {
				int e = SSL_get_error(s->ssl, k);
				if (e == SSL_ERROR_WANT_READ)
					return POLLIN;
				if (e == SSL_ERROR_WANT_WRITE)
					return POLLOUT;
				if (e == SSL_ERROR_ZERO_RETURN)
					fail(s, "connection closed by the server (phase %d)", s->ph);
				fail(s, "SSL_read: %s", ssl_err());
			}
			r = k;
		} else {
			r = recv(s->fd, s->rbuf + s->rlen, RBUF - s->rlen, 0);
			if (r < 0) {
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					return POLLIN;
				if (errno == EINTR)
					continue;
				fail(s, "recv: %s", strerror(errno));
			}
			if (r == 0)
				fail(s, "connection closed by the server (phase %d)", s->ph);
		}
		s->rlen += (size_t)r;
		s->t_progress = mono();
		parse(s);
	}
}

/* size bytes of 78-character lines (CRLF included in the count), no line starting with '.',
 * then the final dot */
static char *make_body(size_t size, size_t *len)
{
	static const char line[] = "La de da de da La de da de da La de da de da La de da de da La de da de da L\r\n";
	size_t ll = sizeof line - 1, n = size / ll, rest = size % ll, k = 0;
	char *b = malloc(size + 8);
	if (!b)
		die("out of memory");
	for (size_t i = 0; i < n; i++, k += ll)
		memcpy(b + k, line, ll);
	if (rest >= 3) {
		memset(b + k, 'x', rest - 2);
		k += rest - 2;
		memcpy(b + k, "\r\n", 2);
		k += 2;
	}
	memcpy(b + k, ".\r\n", 3);
	*len = k + 3;
	return b;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, 0, 'h' },     { "port", required_argument, 0, 'p' },
		{ "user", required_argument, 0, 'u' },     { "password", required_argument, 0, 'w' },
		{ "from", required_argument, 0, 'f' },     { "to", required_argument, 0, 'r' },
		{ "messages", required_argument, 0, 'n' }, { "sessions", required_argument, 0, 's' },
		{ "size", required_argument, 0, 'z' },     { "tls", no_argument, 0, 'T' },
		{ "tag", required_argument, 0, 'g' },      { "timeout", required_argument, 0, 't' },
		{ 0, 0, 0, 0 },
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'h': opt_host = optarg; break;
		case 'p': opt_port = atoi(optarg); break;
		case 'u': opt_user = optarg; break;
		case 'w': opt_pass = optarg; break;
		case 'f': opt_from = optarg; break;
		case 'r': opt_to = optarg; break;
		case 'n': opt_messages = atoi(optarg); break;
		case 's': opt_sessions = atoi(optarg); break;
		case 'z': opt_size = atoi(optarg); break;
		case 'T': opt_tls = 1; break;
		case 'g': opt_tag = optarg; break;
		case 't': opt_timeout = atoi(optarg); break;
		default: die("unknown option (see the comment at the top of bench/smtp_load.c)");
		}
	}
	if (opt_port <= 0 || !opt_from || !opt_to || opt_sessions < 1 || opt_messages < 0 || opt_size < 0)
		die("usage: smtp_load --port P --from F --to T [--messages N] [--sessions S] [--size B]"
		    " [--user U --password W] [--tls] [--tag T]");
	if (opt_user && !opt_pass)
		die("--user needs --password");
	if ((opt_user && strlen(opt_user) > 250) || (opt_pass && strlen(opt_pass) > 250) ||
	    strlen(opt_from) > 300 || strlen(opt_to) > 300 || strlen(opt_tag) > 100)
		die("argument too long");
	if (opt_tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		if (!ctx)
			die("SSL_CTX_new failed");
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);	/* tern's self-signed certificate */
		SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	body_tmpl = make_body((size_t)opt_size, &body_len);

	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(opt_port) };
	if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1)
		die("bad --host %s", opt_host);
	S = calloc((size_t)opt_sessions, sizeof *S);
	struct pollfd *pfd = calloc((size_t)opt_sessions, sizeof *pfd);
	if (!S || !pfd)
		die("out of memory");
	int64_t start_ns = wall_ns();
	for (int i = 0; i < opt_sessions; i++) {
		struct sess *s = &S[i];
		int one = 1;
		s->id = i;
		s->seq = -1;
		s->t_conn = mono();
		s->fd = socket(AF_INET, SOCK_STREAM, 0);
		if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
			fail(s, "connect to %s:%d: %s", opt_host, opt_port, strerror(errno));
		setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) | O_NONBLOCK);
		s->msg = malloc(HEADROOM + body_len);
		if (!s->msg)
			die("out of memory");
		memcpy(s->msg + HEADROOM, body_tmpl, body_len);
		s->ph = GREET;
		s->nexp = 1;
		s->exp[0] = 220;
		s->t_progress = mono();
	}
	for (int i = 0; i < opt_sessions; i++)
		pfd[i].events = POLLIN;
	for (;;) {
		int live = 0;
		for (int i = 0; i < opt_sessions; i++) {
			pfd[i].fd = S[i].fd;
			if (S[i].fd >= 0)
				live++;
		}
		if (!live)
			break;
		int r = poll(pfd, (nfds_t)opt_sessions, 1000);
		if (r < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		double t = mono();
		for (int i = 0; i < opt_sessions; i++) {
			struct sess *s = &S[i];
			if (s->fd < 0)
				continue;
			if (pfd[i].revents)
				pfd[i].events = pump(s);
			if (s->fd >= 0 && t - s->t_progress > opt_timeout)
				fail(s, "nothing moved for %d s (phase %d)", opt_timeout, s->ph);
		}
	}
	if (done_msgs != opt_messages)
		die("%ld messages accepted, expected %d", done_msgs, opt_messages);
	double *auth = malloc((size_t)opt_sessions * sizeof *auth), amax = 0;
	for (int i = 0; i < opt_sessions; i++) {
		auth[i] = S[i].t_ready - S[i].t_conn;
		if (auth[i] > amax)
			amax = auth[i];
	}
	qsort(auth, (size_t)opt_sessions, sizeof *auth, cmp_double);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	if (!last_ns)
		last_ns = wall_ns();
	printf("{\"messages\": %ld, \"sessions\": %d, \"start_ns\": %lld, \"first_ns\": %lld, "
	       "\"last_ns\": %lld, \"seconds\": %.3f, \"auth_seconds\": %.3f, \"auth_median\": %.3f, "
	       "\"client_cpu\": %.3f}\n",
	       done_msgs, opt_sessions, (long long)start_ns, (long long)first_ns, (long long)last_ns,
	       (last_ns - start_ns) / 1e9, amax, auth[opt_sessions / 2], cpu);
	return 0;
}
