/* imap_load - an IMAP load generator in C (Python would be the bottleneck): N clients, each
 * logged in as its own user, repeat a mixed cycle of what mail clients do and count the
 * operations per second. LOGIN over plain TCP (the servers allow it on loopback), or over
 * implicit TLS (OpenSSL; the server's certificate is not verified).
 *
 *   imap_load HOST PORT USERFMT PASSWORD CLIENTS SECONDS [mixed|idle|warm] [plain|tls]
 *
 * One thread and one connection per client. Plain connections use blocking sockets; TLS
 * connections are non-blocking: SSL_connect/SSL_read/SSL_write that answer
 * SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE wait in poll(2) for that direction and retry
 * (a TLS 1.3 read may need a write, e.g. to answer a key update, and a write a read).
 * USERFMT is a printf format with one %d (1..CLIENTS), e.g. "bench%d@example.test".
 * mixed: per cycle SELECT INBOX, FETCH 1:50 (FLAGS ENVELOPE), FETCH one BODY.PEEK[],
 *   STORE +FLAGS \Flagged and -FLAGS, SEARCH SUBJECT, APPEND a small message, UID STORE it
 *   \Deleted, UID EXPUNGE it, NOOP: each command counts as one operation. The mailboxes must
 *   hold at least 50 messages. Prints "ops N seconds S ops_per_s R p50_ms A p99_ms B": the
 *   rate is each client's operations over its own SECONDS of cycles, summed; LOGIN, the first
 *   SELECT and LOGOUT are neither counted nor timed (S: the longest client's cycle time);
 *   then "client_cpu C wall W": this process's CPU time (getrusage) and the run's wall time.
 * idle: log in, SELECT, IDLE, and stay (for memory figures) for SECONDS after all sessions
 *   are idling; prints "idle N" once all are.
 * warm: users 1..CLIENTS each log in, SELECT INBOX and LOG OUT once, WARM_THREADS (4) at a
 *   time (the first open of a mailbox indexes it; a server's heap does not grow for many
 *   sessions at once); SECONDS is unused. Prints "warm N".
 * Exit 1 when a command fails (a NO/BAD, a lost connection): a benchmark of errors measures
 * nothing. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LAT 2000000

static const char *host, *userfmt, *password;
static int port, seconds;
static int idle_mode, warm_mode;
static SSL_CTX *tls_ctx;	/* NULL: plain TCP */
#define WARM_THREADS 4
static int n_clients;
static atomic_long total_ops;
static atomic_int idling, failed;
static double *lat;
static atomic_long n_lat;

/* per kind of command of the mixed cycle: count and total time (a breakdown on stderr) */
#define N_KINDS 10
static const char *const kind_name[N_KINDS] = {
	"SELECT", "FETCH 1:50 (FLAGS ENVELOPE)", "FETCH n BODY.PEEK[]", "STORE +FLAGS",
	"STORE -FLAGS", "SEARCH SUBJECT", "APPEND", "UID STORE * +FLAGS", "UID EXPUNGE *", "NOOP",
};
static atomic_long kind_count[N_KINDS];
static atomic_long kind_us[N_KINDS];
static atomic_long kind_max_us[N_KINDS];

struct client {
	int id, fd;
	SSL *ssl;		/* NULL on a plain connection */
	char in[1 << 16];
	size_t len, off;
	int tagn;
	int measuring;		/* in the mixed cycle: ops and latencies count */
	int kind;		/* of the command being sent (index into kind_name) */
	long ops;
	double t_begin, t_end;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(struct client *c, const char *what)
{
	fprintf(stderr, "client %d: %s\n", c->id, what);
	atomic_store(&failed, 1);
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	pthread_exit(NULL);
}

/* tls_wait - after an SSL call returned r: wait in poll(2) for what it wants and return 1
 * (call it again), or return 0 on EOF / -1 on an error */
static int tls_wait(struct client *c, int r)
{
	short ev;
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		ev = POLLIN;
		break;
	case SSL_ERROR_WANT_WRITE:
		ev = POLLOUT;
		break;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && (r == 0 || errno == 0))
			return 0;	/* EOF without close_notify */
		return -1;
	default:
		return -1;
	}
	struct pollfd p = { .fd = c->fd, .events = ev };
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	return 1;
}

/* conn_read - up to n bytes into p: >0, 0 at EOF, -1 on an error */
static ssize_t conn_read(struct client *c, char *p, size_t n)
{
	if (c->ssl == NULL)
		return read(c->fd, p, n);
	for (;;) {
		ERR_clear_error();
		int r = SSL_read(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		if (r > 0)
			return r;
		int w = tls_wait(c, r);
		if (w <= 0)
			return w;
	}
}

/* conn_write - up to n bytes of p: >0 written, -1 on an error. A TLS write that had to wait
 * is retried with the same arguments, as OpenSSL requires. */
static ssize_t conn_write(struct client *c, const char *p, size_t n)
{
	if (c->ssl == NULL)
		return write(c->fd, p, n);
	for (;;) {
		ERR_clear_error();
		int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		if (r > 0)
			return r;
		if (tls_wait(c, r) <= 0)
			return -1;
	}
}

/* tls_start - make the socket non-blocking and do the TLS handshake (no verification) */
static void tls_start(struct client *c)
{
	int fl = fcntl(c->fd, F_GETFL);
	if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		fail(c, "fcntl O_NONBLOCK failed");
	c->ssl = SSL_new(tls_ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd))
		fail(c, "SSL_new failed");
	for (;;) {
		ERR_clear_error();
		int r = SSL_connect(c->ssl);
		if (r == 1)
			return;
		if (tls_wait(c, r) <= 0) {
			char msg[300], err[256] = "connection closed";
			unsigned long e = ERR_peek_error();
			if (e != 0)
				ERR_error_string_n(e, err, sizeof(err));
			snprintf(msg, sizeof(msg), "TLS handshake failed: %s", err);
			fail(c, msg);
		}
	}
}

/* conn_close - end the connection (no close_notify: the benchmark does not wait for it) */
static void conn_close(struct client *c)
{
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
}

/* fill - more input; 0 at EOF */
static size_t fill(struct client *c)
{
	if (c->off > 0) {
		memmove(c->in, c->in + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len == sizeof(c->in))
		fail(c, "line too long");
	ssize_t n = conn_read(c, c->in + c->len, sizeof(c->in) - c->len);
	if (n <= 0)
		fail(c, n == 0 ? "connection closed" : strerror(errno));
	c->len += (size_t)n;
	return (size_t)n;
}

/* read_line - the next line (without CRLF) into out; literals "{n}" at its end are read
 * past (their bytes and the rest of the response) */
static void read_line(struct client *c, char *out, size_t max)
{
	for (;;) {
		char *nl = memchr(c->in + c->off, '\n', c->len - c->off);
		if (nl == NULL) {
			fill(c);
			continue;
		}
		size_t l = (size_t)(nl - (c->in + c->off));
		size_t keep = l < max - 1 ? l : max - 1;
		memcpy(out, c->in + c->off, keep);
		out[keep] = '\0';
		if (keep > 0 && out[keep - 1] == '\r')
			out[--keep] = '\0';
		c->off += l + 1;
		/* a literal: skip its bytes, then go on reading the same response */
		char *brace = keep > 0 && out[keep - 1] == '}' ? strrchr(out, '{') : NULL;
		if (brace == NULL)
			return;
		size_t n = strtoul(brace + 1, NULL, 10);
		while (c->len - c->off < n) {
			n -= c->len - c->off;
			c->off = c->len;
			fill(c);
		}
		c->off += n;
	}
}

static void send_all(struct client *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = conn_write(c, p, n);
		if (w <= 0)
			fail(c, "write failed");
		p += w;
		n -= (size_t)w;
	}
}

/* command - send "tag text", wait for the tagged reply (OK, or fail); the untagged lines
 * are passed to cb (may be NULL). literal: sent after a "+" continuation. */
static void command(struct client *c, const char *text, const char *literal, size_t lit_len,
		    void (*cb)(struct client *, const char *, void *), void *arg)
{
	char tag[16], line[8192];
	snprintf(tag, sizeof(tag), "a%d", ++c->tagn);
	double t0 = now();
	char out[1024];
	int n = snprintf(out, sizeof(out), "%s %s\r\n", tag, text);
	send_all(c, out, (size_t)n);
	if (literal != NULL) {
		read_line(c, line, sizeof(line));
		if (line[0] != '+')
			fail(c, "no continuation for a literal");
		send_all(c, literal, lit_len);
		send_all(c, "\r\n", 2);
	}
	size_t tl = strlen(tag);
	for (;;) {
		read_line(c, line, sizeof(line));
		if (strncmp(line, tag, tl) == 0 && line[tl] == ' ') {
			if (strncmp(line + tl + 1, "OK", 2) != 0) {
				fprintf(stderr, "client %d: %s -> %s\n", c->id, text, line);
				fail(c, "command failed");
			}
			break;
		}
		if (cb != NULL)
			cb(c, line, arg);
	}
	if (!c->measuring)	/* LOGIN (a slow hash in tern), the first SELECT, LOGOUT */
		return;
	long i = atomic_fetch_add(&n_lat, 1);
	double ms = (now() - t0) * 1000.0;
	if (i < MAX_LAT)
		lat[i] = ms;
	long us = (long)(ms * 1000.0);
	atomic_fetch_add(&kind_count[c->kind], 1);
	atomic_fetch_add(&kind_us[c->kind], us);
	long mx = atomic_load(&kind_max_us[c->kind]);
	while (us > mx && !atomic_compare_exchange_weak(&kind_max_us[c->kind], &mx, us))
		;
	atomic_fetch_add(&total_ops, 1);
	c->ops++;
}

static void session(struct client *c);

/* warm_run - one thread of the warm mode: ids first, first + WARM_THREADS, ... */
static void *warm_run(void *arg)
{
	struct client *c = arg;
	for (int id = c->id; id <= n_clients; id += WARM_THREADS) {
		c->id = id;
		c->len = c->off = 0;
		session(c);
	}
	return NULL;
}

static void *run(void *arg)
{
	session(arg);
	return NULL;
}

static void session(struct client *c)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, host, &sa.sin_addr);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		fail(c, "connect failed");
	if (tls_ctx != NULL)
		tls_start(c);
	char line[4096], cmd[512], user[256];
	read_line(c, line, sizeof(line));	/* greeting */
	snprintf(user, sizeof(user), userfmt, c->id);
	snprintf(cmd, sizeof(cmd), "LOGIN \"%s\" \"%s\"", user, password);
	command(c, cmd, NULL, 0, NULL, NULL);
	command(c, "SELECT INBOX", NULL, 0, NULL, NULL);
	if (idle_mode) {
		snprintf(cmd, sizeof(cmd), "i IDLE\r\n");
		send_all(c, cmd, strlen(cmd));
		read_line(c, line, sizeof(line));
		if (line[0] != '+')
			fail(c, "IDLE refused");
		atomic_fetch_add(&idling, 1);
		/* SECONDS count from the moment all sessions idle, not from this one's login */
		while (atomic_load(&idling) < n_clients && !atomic_load(&failed))
			usleep(100000);
		sleep((unsigned)seconds);
		send_all(c, "DONE\r\n", 6);
		conn_close(c);
		return;
	}
	if (warm_mode) {
		command(c, "LOGOUT", NULL, 0, NULL, NULL);
		conn_close(c);
		atomic_fetch_add(&idling, 1);
		return;
	}
	static const char msg[] = "From: load@example.org\r\nTo: x@example.test\r\n"
				  "Subject: load test\r\n\r\nA message the load generator appends.\r\n";
	c->t_begin = now();
	c->measuring = 1;
	double end = c->t_begin + seconds;
	unsigned k = 0;
	while (now() < end) {
		k++;
		c->kind = 0;
		command(c, "SELECT INBOX", NULL, 0, NULL, NULL);
		c->kind = 1;
		command(c, "FETCH 1:50 (FLAGS ENVELOPE)", NULL, 0, NULL, NULL);
		snprintf(cmd, sizeof(cmd), "FETCH %u BODY.PEEK[]", k % 50 + 1);
		c->kind = 2;
		command(c, cmd, NULL, 0, NULL, NULL);
		snprintf(cmd, sizeof(cmd), "STORE %u +FLAGS.SILENT (\\Flagged)", k % 50 + 1);
		c->kind = 3;
		command(c, cmd, NULL, 0, NULL, NULL);
		snprintf(cmd, sizeof(cmd), "STORE %u -FLAGS.SILENT (\\Flagged)", k % 50 + 1);
		c->kind = 4;
		command(c, cmd, NULL, 0, NULL, NULL);
		c->kind = 5;
		command(c, "SEARCH SUBJECT \"load\"", NULL, 0, NULL, NULL);
		snprintf(cmd, sizeof(cmd), "APPEND INBOX {%zu}", sizeof(msg) - 1);
		c->kind = 6;
		command(c, cmd, msg, sizeof(msg) - 1, NULL, NULL);
		/* the appended message is the last: flag it and expunge it by its UID */
		c->kind = 7;
		command(c, "UID STORE * +FLAGS.SILENT (\\Deleted)", NULL, 0, NULL, NULL);
		c->kind = 8;
		command(c, "UID EXPUNGE *", NULL, 0, NULL, NULL);
		c->kind = 9;
		command(c, "NOOP", NULL, 0, NULL, NULL);
	}
	c->t_end = now();
	c->measuring = 0;
	command(c, "LOGOUT", NULL, 0, NULL, NULL);
	conn_close(c);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: imap_load HOST PORT USERFMT PASSWORD CLIENTS SECONDS "
				"[mixed|idle|warm] [plain|tls]\n");
		return 2;
	}
	host = argv[1];
	port = atoi(argv[2]);
	userfmt = argv[3];
	password = argv[4];
	int n = atoi(argv[5]);
	seconds = atoi(argv[6]);
	idle_mode = argc > 7 && strcmp(argv[7], "idle") == 0;
	warm_mode = argc > 7 && strcmp(argv[7], "warm") == 0;
	if (argc > 8 && strcmp(argv[8], "tls") == 0) {
		tls_ctx = SSL_CTX_new(TLS_client_method());
		if (tls_ctx == NULL) {
			fprintf(stderr, "SSL_CTX_new failed\n");
			return 1;
		}
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
		/* a write may return after part of the buffer (non-blocking): send_all goes on */
		SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
	} else if (argc > 8 && strcmp(argv[8], "plain") != 0) {
		fprintf(stderr, "imap_load: '%s': plain or tls\n", argv[8]);
		return 2;
	}
	n_clients = n;
	lat = calloc(MAX_LAT, sizeof(double));
	if (warm_mode) {
		int t = n < WARM_THREADS ? n : WARM_THREADS;
		struct client *wc = calloc((size_t)t, sizeof(*wc));
		pthread_t *wt = calloc((size_t)t, sizeof(*wt));
		for (int i = 0; i < t; i++) {
			wc[i].id = i + 1;
			if (pthread_create(&wt[i], NULL, warm_run, &wc[i]) != 0) {
				fprintf(stderr, "pthread_create failed\n");
				return 1;
			}
		}
		for (int i = 0; i < t; i++)
			pthread_join(wt[i], NULL);
		if (atomic_load(&failed))
			return 1;
		printf("warm %d\n", atomic_load(&idling));
		return 0;
	}
	struct client *cl = calloc((size_t)n, sizeof(*cl));
	pthread_t *th = calloc((size_t)n, sizeof(*th));
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	double t0 = now();
	for (int i = 0; i < n; i++) {
		cl[i].id = i + 1;
		if (pthread_create(&th[i], &attr, run, &cl[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	if (idle_mode) {
		while (atomic_load(&idling) < n && !atomic_load(&failed))
			usleep(10000);
		printf("idle %d\n", atomic_load(&idling));
		fflush(stdout);
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	double el = now() - t0;
	if (atomic_load(&failed))
		return 1;
	if (!idle_mode) {
		long m = atomic_load(&n_lat) < MAX_LAT ? atomic_load(&n_lat) : MAX_LAT;
		qsort(lat, (size_t)m, sizeof(double), cmp_d);
		/* each client's rate over its own cycles (its login and LOGOUT left out), summed */
		double rate = 0, span = 0;
		for (int i = 0; i < n; i++) {
			double d = cl[i].t_end - cl[i].t_begin;
			if (d > 0)
				rate += (double)cl[i].ops / d;
			if (d > span)
				span = d;
		}
		for (int i = 0; i < N_KINDS; i++) {
			long cnt = atomic_load(&kind_count[i]);
			if (cnt > 0)
				fprintf(stderr, "cmd %-28s count %7ld mean_ms %8.3f max_ms %8.1f\n",
					kind_name[i], cnt, (double)atomic_load(&kind_us[i]) / 1000.0 / (double)cnt,
					(double)atomic_load(&kind_max_us[i]) / 1000.0);
		}
		printf("ops %ld seconds %.2f ops_per_s %.0f p50_ms %.3f p99_ms %.3f\n",
		       atomic_load(&total_ops), span, rate,
		       m ? lat[m / 2] : 0.0, m ? lat[(size_t)((double)m * 0.99)] : 0.0);
		/* the generator's own CPU time (user + system, all threads) against the wall time of
		 * the whole run, logins included: far below it, the client was not the limit */
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		printf("client_cpu %.3f wall %.3f\n",
		       ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6, el);
	}
	return 0;
}
