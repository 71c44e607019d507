/* bench/pop3_load.c - the load generator of bench/pop3.sh (C, no dependency beyond libc and
 * pthreads; built by `make bench-tools` into build/bench/pop3_load).
 *
 *   pop3_load retr --port P --user U --password W --mode one|pipe [--batch 50] [--expect N]
 *                  [--sessions K] [--host 127.0.0.1] [--timeout 30]
 *       Log in (USER/PASS), LIST, then RETR every message once, in order:
 *         one   send "RETR n", read the whole reply, then the next command;
 *         pipe  write --batch RETR commands in one send, then read their replies, next batch.
 *       Every reply must be +OK and carry exactly as many octets (after undoing the
 *       byte-stuffing, RFC 1939 section 3) as LIST announced for that message; anything else
 *       is a failure. Then QUIT (nothing is deleted).
 *       --sessions K runs K sessions at once, one thread each; --user then holds a "%d"
 *       (replaced by 1..K, e.g. "par%02d@example.test"): one account per session.
 *       Prints one line of JSON:
 *         {"messages": N, "octets": B, "seconds": S, "login_seconds": L, "client_cpu": C,
 *          "sessions": K}
 *       seconds: from the first RETR written (of the first session) to the last reply read (of
 *       the last one), the wall time; login_seconds: the longest greeting + USER/PASS + LIST;
 *       client_cpu: this process's CPU time (user + system, getrusage) over the same span.
 *       messages and octets are summed over the sessions.
 *
 *   pop3_load logins --port P --users-file F --password W
 *       For each line (user name) of F in turn: log in, STAT, QUIT; one session at a time.
 *
 *   pop3_load idle --port P --users-file F --password W
 *       One connection per line of F, each logged in and STAT checked; prints "READY <n>" and
 *       holds them idle until standard input has a line or closes; then QUIT them all and
 *       prints "DONE".
 *
 * Exit status 0 on success; 1 with a message on stderr on any protocol error, short or long
 * message, unexpected reply, timeout (--timeout seconds without a byte) or closed connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ (1 << 20)

static const char *opt_host = "127.0.0.1";
static int opt_port, opt_batch = 50, opt_expect = -1, opt_sessions = 1, opt_timeout = 30;
static const char *opt_user, *opt_pass, *opt_mode, *opt_users_file;

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("pop3_load: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

struct conn {
	int fd;
	char *buf;
	size_t pos, len, cap;	/* unread bytes are buf[pos..len); cap: its size */
	const char *who;
};

static void conn_open(struct conn *c, const char *who)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(opt_port) };
	int one = 1;
	struct timeval tv = { .tv_sec = opt_timeout };
	if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1)
		die("bad --host %s", opt_host);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		die("%s: connect to %s:%d: %s", who, opt_host, opt_port, strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	c->buf = malloc(BUFSZ);
	if (!c->buf)
		die("out of memory");
	c->pos = c->len = 0;
	c->cap = BUFSZ;
	c->who = who;
}

static void conn_close(struct conn *c)
{
	close(c->fd);
	free(c->buf);
}

static void conn_send(struct conn *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			die("%s: send: %s", c->who, strerror(errno));
		}
		p += w;
		n -= (size_t)w;
	}
}

/* more bytes at the end of the buffer; consumed bytes are dropped first when room is short */
static void conn_fill(struct conn *c)
{
	if (c->pos > 0 && (c->pos == c->len || c->cap - c->len < 65536)) {
		memmove(c->buf, c->buf + c->pos, c->len - c->pos);
		c->len -= c->pos;
		c->pos = 0;
	}
	if (c->len == c->cap)
		die("%s: a line longer than %zu bytes", c->who, c->cap);
	for (;;) {
		ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (r > 0) {
			c->len += (size_t)r;
			return;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			die("%s: connection closed by the server", c->who);
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			die("%s: no byte from the server within %d s", c->who, opt_timeout);
		die("%s: recv: %s", c->who, strerror(errno));
	}
}

/* one CRLF-terminated line: *len its length without CRLF; valid until the next read */
static char *conn_line(struct conn *c, size_t *len)
{
	for (;;) {
		char *s = c->buf + c->pos;
		char *nl = memchr(s, '\n', c->len - c->pos);
		if (nl) {
			size_t n = (size_t)(nl - s) + 1;
			c->pos += n;
			*len = n >= 2 && nl[-1] == '\r' ? n - 2 : n - 1;
			return s;
		}
		conn_fill(c);
	}
}

static void status(struct conn *c, const char *what, long n)
{
	size_t len;
	char *l = conn_line(c, &len);
	if (len < 3 || memcmp(l, "+OK", 3) != 0) {
		if (n >= 0)
			die("%s: %s %ld: %.*s", c->who, what, n, (int)(len > 200 ? 200 : len), l);
		die("%s: %s: %.*s", c->who, what, (int)(len > 200 ? 200 : len), l);
	}
}

/* the body of a multi-line reply whose status line was read: its octets, un-stuffed, with
 * the CRLF of each line (RFC 1939's size) */
static long multiline_octets(struct conn *c)
{
	long octets = 0;
	for (;;) {
		size_t len;
		char *l = conn_line(c, &len);
		if (len == 1 && l[0] == '.')
			return octets;
		octets += (long)len + 2;
		if (len > 0 && l[0] == '.')
			octets--;
	}
}

static void login(struct conn *c, const char *user)
{
	char cmd[512];
	int n;
	status(c, "greeting", -1);
	n = snprintf(cmd, sizeof cmd, "USER %s\r\n", user);
	conn_send(c, cmd, (size_t)n);
	status(c, "USER", -1);
	n = snprintf(cmd, sizeof cmd, "PASS %s\r\n", opt_pass);
	conn_send(c, cmd, (size_t)n);
	status(c, "PASS", -1);
}

/* --- retr -------------------------------------------------------------------------------- */
struct job {
	pthread_t th;
	char user[256];
	long messages, octets;
	double login_s;
};

static pthread_barrier_t start_line;
static double t_first = 0, t_last = 0;	/* first RETR written, last reply read (any session) */
static double cpu_first;
static pthread_mutex_t tmu = PTHREAD_MUTEX_INITIALIZER;

static void *retr_session(void *arg)
{
	struct job *j = arg;
	struct conn c;
	double t0 = now(), t;
	long *sizes = NULL, n = 0, cap = 0;
	size_t len;
	char *l, *cmds = malloc((size_t)opt_batch * 24 + 32);

	conn_open(&c, j->user);
	login(&c, j->user);
	conn_send(&c, "LIST\r\n", 6);
	status(&c, "LIST", -1);
	while ((l = conn_line(&c, &len)), !(len == 1 && l[0] == '.')) {
		long num, size;
		char tmp[64];
		snprintf(tmp, sizeof tmp, "%.*s", (int)(len < 63 ? len : 63), l);
		if (sscanf(tmp, "%ld %ld", &num, &size) != 2)
			die("%s: LIST: bad line %s", j->user, tmp);
		if (num != n + 1)
			die("%s: LIST: message %ld out of order (expected %ld)", j->user, num, n + 1);
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			sizes = realloc(sizes, (size_t)cap * sizeof *sizes);
			if (!sizes)
				die("out of memory");
		}
		sizes[n++] = size;
	}
	if (opt_expect >= 0 && n != opt_expect)
		die("%s: LIST: %ld messages, expected %d", j->user, n, opt_expect);
	if (n == 0)
		die("%s: LIST: the maildrop is empty", j->user);
	j->login_s = now() - t0;

	pthread_barrier_wait(&start_line);	/* every session logged in: the clock starts */
	t = now();
	pthread_mutex_lock(&tmu);
	if (t_first == 0) {
		t_first = t;
		cpu_first = cpu_now();
	}
	pthread_mutex_unlock(&tmu);

	int batch = strcmp(opt_mode, "one") == 0 ? 1 : opt_batch;
	for (long b = 0; b < n; b += batch) {
		long e = b + batch < n ? b + batch : n;
		size_t w = 0;
		for (long i = b; i < e; i++)
			w += (size_t)sprintf(cmds + w, "RETR %ld\r\n", i + 1);
		conn_send(&c, cmds, w);
		for (long i = b; i < e; i++) {
			long got;
			status(&c, "RETR", i + 1);
			got = multiline_octets(&c);
			if (got != sizes[i])
				die("%s: RETR %ld: %ld octets, LIST said %ld", j->user, i + 1, got, sizes[i]);
			j->octets += got;
		}
	}
	j->messages = n;
	t = now();
	pthread_mutex_lock(&tmu);
	if (t > t_last)
		t_last = t;
	pthread_mutex_unlock(&tmu);
	conn_send(&c, "QUIT\r\n", 6);
	status(&c, "QUIT", -1);
	conn_close(&c);
	free(sizes);
	free(cmds);
	return NULL;
}

/* --user with its "%d" or "%0Nd" replaced by n */
static void user_n(char *out, size_t size, int n)
{
	const char *p = strchr(opt_user, '%'), *q;
	int width = 0, zero = 0;
	if (!p)
		die("--user has no %%d");
	q = p + 1;
	if (*q == '0')
		zero = 1;
	while (*q >= '0' && *q <= '9')
		width = width * 10 + (*q++ - '0');
	if (*q != 'd')
		die("--user: only %%d or %%0Nd is understood");
	snprintf(out, size, zero ? "%.*s%0*d%s" : "%.*s%*d%s", (int)(p - opt_user), opt_user, width, n, q + 1);
}

static int cmd_retr(void)
{
	struct job *jobs = calloc((size_t)opt_sessions, sizeof *jobs);
	long messages = 0, octets = 0;
	double login_s = 0, cpu;
	if (!opt_user || !opt_pass || !opt_mode)
		die("retr needs --user, --password and --mode");
	if (strcmp(opt_mode, "one") && strcmp(opt_mode, "pipe"))
		die("--mode: one or pipe");
	if (opt_batch < 1 || opt_sessions < 1)
		die("--batch and --sessions must be at least 1");
	if (opt_sessions > 1 && !strstr(opt_user, "%"))
		die("--sessions > 1 needs a --user with a %%d (one account per session)");
	pthread_barrier_init(&start_line, NULL, (unsigned)opt_sessions);
	for (int i = 0; i < opt_sessions; i++) {
		if (opt_sessions > 1)
			user_n(jobs[i].user, sizeof jobs[i].user, i + 1);
		else
			snprintf(jobs[i].user, sizeof jobs[i].user, "%s", opt_user);
		if (pthread_create(&jobs[i].th, NULL, retr_session, &jobs[i]) != 0)
			die("pthread_create failed");
	}
	for (int i = 0; i < opt_sessions; i++) {
		pthread_join(jobs[i].th, NULL);
		messages += jobs[i].messages;
		octets += jobs[i].octets;
		if (jobs[i].login_s > login_s)
			login_s = jobs[i].login_s;
	}
	cpu = cpu_now() - cpu_first;	/* includes the QUITs: a few microseconds */
	printf("{\"messages\": %ld, \"octets\": %ld, \"seconds\": %.6f, \"login_seconds\": %.6f, "
	       "\"client_cpu\": %.6f, \"sessions\": %d}\n",
	       messages, octets, t_last - t_first, login_s, cpu, opt_sessions);
	free(jobs);
	return 0;
}

/* --- logins, idle ------------------------------------------------------------------------ */
static char **read_users(int *count)
{
	FILE *f = fopen(opt_users_file, "r");
	char line[512];
	char **v = NULL;
	int n = 0;
	if (!f)
		die("%s: %s", opt_users_file, strerror(errno));
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\r\n \t")] = 0;
		if (!line[0])
			continue;
		v = realloc(v, (size_t)(n + 1) * sizeof *v);
		if (!v || !(v[n] = strdup(line)))
			die("out of memory");
		n++;
	}
	fclose(f);
	*count = n;
	return v;
}

static int cmd_logins(void)
{
	int n;
	char **users = read_users(&n);
	for (int i = 0; i < n; i++) {
		struct conn c;
		conn_open(&c, users[i]);
		login(&c, users[i]);
		conn_send(&c, "STAT\r\n", 6);
		status(&c, "STAT", -1);
		conn_send(&c, "QUIT\r\n", 6);
		status(&c, "QUIT", -1);
		conn_close(&c);
	}
	return 0;
}

static int cmd_idle(void)
{
	int n;
	char **users = read_users(&n);
	struct conn *cs = calloc((size_t)n, sizeof *cs);
	char line[64];
	for (int i = 0; i < n; i++) {
		conn_open(&cs[i], users[i]);
		login(&cs[i], users[i]);
		conn_send(&cs[i], "STAT\r\n", 6);
		status(&cs[i], "STAT", -1);
		/* the big receive buffer is not needed while idle: keep the client small */
		if (cs[i].pos != cs[i].len)
			die("%s: unexpected bytes after STAT", cs[i].who);
		free(cs[i].buf);
		cs[i].buf = malloc(4096);
		cs[i].cap = 4096;
		cs[i].pos = cs[i].len = 0;
	}
	printf("READY %d\n", n);
	fflush(stdout);
	if (!fgets(line, sizeof line, stdin)) {
		/* standard input closed: end as well */
	}
	for (int i = 0; i < n; i++)
		conn_send(&cs[i], "QUIT\r\n", 6);
	for (int i = 0; i < n; i++) {
		status(&cs[i], "QUIT", -1);
		conn_close(&cs[i]);
	}
	printf("DONE\n");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, 0, 'h' },     { "port", required_argument, 0, 'p' },
		{ "user", required_argument, 0, 'u' },     { "password", required_argument, 0, 'w' },
		{ "mode", required_argument, 0, 'm' },     { "batch", required_argument, 0, 'b' },
		{ "expect", required_argument, 0, 'e' },   { "sessions", required_argument, 0, 's' },
		{ "timeout", required_argument, 0, 't' },  { "users-file", required_argument, 0, 'f' },
		{ 0, 0, 0, 0 },
	};
	int o;
	const char *cmd;
	if (argc < 2)
		die("usage: pop3_load retr|logins|idle --port P ... (see the comment at the top of bench/pop3_load.c)");
	cmd = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'h': opt_host = optarg; break;
		case 'p': opt_port = atoi(optarg); break;
		case 'u': opt_user = optarg; break;
		case 'w': opt_pass = optarg; break;
		case 'm': opt_mode = optarg; break;
		case 'b': opt_batch = atoi(optarg); break;
		case 'e': opt_expect = atoi(optarg); break;
		case 's': opt_sessions = atoi(optarg); break;
		case 't': opt_timeout = atoi(optarg); break;
		case 'f': opt_users_file = optarg; break;
		default: die("unknown option");
		}
	}
	if (opt_port <= 0 || !opt_pass)
		die("--port and --password are required");
	if (strcmp(cmd, "retr") == 0)
		return cmd_retr();
	if (!opt_users_file)
		die("%s needs --users-file", cmd);
	if (strcmp(cmd, "logins") == 0)
		return cmd_logins();
	if (strcmp(cmd, "idle") == 0)
		return cmd_idle();
	die("unknown command %s (retr, logins, idle)", cmd);
}
