/* fuzz_session.h - drive one real protocol session in-process for the session targets
 * (fuzz_smtp_session, fuzz_pop3_session, fuzz_imap_session).
 *
 * Set-up, once (fuzz_env_init): a data dir under $TMPDIR (tests/fuzz/run.sh makes that a
 * directory it removes), a configuration for it, tern.db with the user bob@example.org
 * (password "secret") and an alias, the spool and its queue, the shared tables (connlimit,
 * throttle), a login pool of one thread with the success cache on, an event base.
 *
 * One run (fuzz_session_run): the protocol's session is started on one end of a
 * socketpair with a made-up peer address (loopback or not: the first input byte's bit 0);
 * the conversation (the rest of the input) is written into the other end at once; the loop
 * runs until everything written was consumed, no password check is in flight and nothing
 * is ready to run, and only then is the client's side shut down (EOF), so that a command
 * after AUTH is read after its check rather than cut off by the EOF. The loop then runs
 * until the session has ended. Server output is read and checked as it comes: replies end
 * in CRLF (the protocol's line checker). The throttle table is cleared for every run, so
 * that failed logins of one input never delay another: runs are independent and fast.
 * fsync and fdatasync are no-ops (below). */
#ifndef TERN_FUZZ_SESSION_H
#define TERN_FUZZ_SESSION_H
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "auth/throttle.h"
#include "config/config.h"
#include "fuzz.h"
#include "lib/buf.h"
#include "lib/connlimit.h"
#include "lib/fs.h"
#include "lib/session.h"
#include "queue/queue.h"
#include "store/store.h"

struct fuzz_env {
	char *dir;			/* the data dir */
	struct tern_config *cfg;
	struct accounts *accounts;
	struct queue *queue;
	struct login_pool *login;
	struct event_base *base;
};

static struct fuzz_env fuzz_env;

/* fsync and fdatasync do nothing in the session targets: these definitions in the
 * executable take the place of libc's for the store, the spool and SQLite alike. What a
 * crash would lose does not matter to a fuzzer, and a disk flush per delivery or index
 * write made a run take up to half a second. */
int fsync(int fd)
{
	(void)fd;
	return 0;
}

int fdatasync(int fd)
{
	(void)fd;
	return 0;
}

/* fuzz_env_init - everything sessions share (see above); extra_conf is appended to the
 * configuration. Aborts on failure: a target that cannot set up must not "pass". */
static void fuzz_env_init(const char *extra_conf)
{
	signal(SIGPIPE, SIG_IGN);
	const char *tmp = getenv("TMPDIR");
	char tmpl[4096];
	snprintf(tmpl, sizeof(tmpl), "%s/tern-fuzz-XXXXXX", tmp != NULL && tmp[0] ? tmp : "/tmp");
	fuzz_env.dir = mkdtemp(tmpl);
	FUZZ_ASSERT(fuzz_env.dir != NULL);
	fuzz_env.dir = strdup(fuzz_env.dir);
	buf conf;
	buf_init(&conf, 0);
	buf_printf(&conf,
		   "hostname = mx.example.org\n"
		   "data_dir = %s\n"
		   "domains = example.org example.net\n"
		   "allow_plaintext_auth_loopback = yes\n"
		   "login_threads = 1\n"
		   "login_cache_ttl = 3600\n"
		   "login_free_failures = 1000000\n"
		   "login_free_failures_ip = 1000000\n"
		   "%s",
		   fuzz_env.dir, extra_conf);
	char *err = NULL;
	fuzz_env.cfg = config_load_string("fuzz.conf", buf_cstr(&conf), &err);
	if (fuzz_env.cfg == NULL)
		fprintf(stderr, "fuzz config: %s\n", err);
	FUZZ_ASSERT(fuzz_env.cfg != NULL);
	buf_free(&conf);
	static const char *const dirs[] = { "spool/incoming", "spool/queue", "mail", "tls" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *p = config_path_in_data(fuzz_env.cfg, dirs[i]);
		FUZZ_ASSERT(fs_mkdirs(p, 0700) == 0);
		free(p);
	}
	char *db = config_path_in_data(fuzz_env.cfg, "tern.db");
	FUZZ_ASSERT(accounts_open(db, &fuzz_env.accounts, &err) == 0);
	free(db);
	FUZZ_ASSERT(accounts_user_add(fuzz_env.accounts, "bob@example.org", "secret", &err) == 0);
	FUZZ_ASSERT(accounts_user_add(fuzz_env.accounts, "alice@example.org", "secret", &err) == 0);
	const char *targets[] = { "bob@example.org", "alice@example.org" };
	FUZZ_ASSERT(accounts_alias_add(fuzz_env.accounts, "team@example.org", targets, 2, &err) == 0);
	char *spool = config_path_in_data(fuzz_env.cfg, "spool");
	FUZZ_ASSERT(queue_open(spool, &fuzz_env.queue, &err) == 0);
	free(spool);
	FUZZ_ASSERT(connlimit_init() == 0 && throttle_init() == 0);
	throttle_set_allowance(fuzz_env.cfg->login_free_failures,
			       fuzz_env.cfg->login_free_failures_ip);
	fuzz_env.base = event_base_new();
	FUZZ_ASSERT(fuzz_env.base != NULL);
	fuzz_env.login = login_pool_new(fuzz_env.base, fuzz_env.accounts, 1, 16, 3600);
	FUZZ_ASSERT(fuzz_env.login != NULL);
}

/* fuzz_deliver - put a message into bob's INBOX (for POP3 and IMAP to find) */
static void fuzz_deliver(const char *msg)
{
	char *path = config_path_in_data(fuzz_env.cfg, "seed.eml");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t len = strlen(msg);
	FUZZ_ASSERT(fd >= 0 && write(fd, msg, len) == (ssize_t)len && close(fd) == 0);
	char *err = NULL;
	if (store_deliver_file(fuzz_env.cfg->data_dir, "bob@example.org", path, len,
			       fuzz_env.cfg->hostname, &err) < 0)
		fprintf(stderr, "deliver: %s\n", err);
	FUZZ_ASSERT(err == NULL);
	unlink(path);
	free(path);
}

/* fuzz_seed_inbox - three messages for bob: plain with a dot-stuffed line, multipart with
 * an encoded subject and a base64 attachment, bare LF line ends without a final one */
static void fuzz_seed_inbox(void)
{
	static const char *const msgs[] = {
		"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: one\r\n"
		"Date: Mon, 1 Jan 2024 00:30:00 +0100\r\nMessage-ID: <1@example.org>\r\n\r\n"
		"Hello Bob.\r\n.leading dot\r\n\r\nBye.\r\n",
		"From: carol@example.net\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
		"Content-Type: text/plain\r\n\r\nbody\r\n--b\r\n"
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"AAECAwQF\r\n--b--\r\n",
		"Subject: bare LF\n\nline one\nline two without end",
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		fuzz_deliver(msgs[i]);
}

/* The peer a run pretends to come from */
static socklen_t fuzz_peer(bool loopback, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(40000);
	sin->sin_addr.s_addr = htonl(loopback ? 0x7f000001 : 0xcb007107); /* 203.0.113.7 */
	return sizeof(*sin);
}

/* What a protocol gives the driver. */
struct fuzz_proto {
	/* start the session on fd (owned by it from now on) */
	void (*start)(int fd, const struct sockaddr *peer, socklen_t len, unsigned flags);
	/* sessions alive */
	unsigned (*alive)(void);
	/* the server's output so far (all of it), to check; may be NULL */
	void (*check_output)(const char *out, size_t len, bool done);
};

/* fuzz_drain_output - read what the server wrote so far */
static void fuzz_drain_output(int fd, buf *out)
{
	char b[16384];
	for (;;) {
		ssize_t n = read(fd, b, sizeof(b));
		if (n <= 0)
			return;
		buf_append(out, b, (size_t)n);
	}
}

/* fuzz_session_run - one conversation (see the top of the file) */
static void fuzz_session_run(const struct fuzz_proto *p, const uint8_t *data, size_t size)
{
	if (size == 0)
		return;
	unsigned flags = data[0];
	data++;
	size--;
	FUZZ_ASSERT(throttle_init() == 0);
	int sv[2];
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	struct sockaddr_storage peer;
	socklen_t plen = fuzz_peer(flags & 1, &peer);
	p->start(sv[0], (const struct sockaddr *)&peer, plen, flags >> 1);

	buf out;
	buf_init(&out, 0);
	size_t written = 0;
	bool shut = false;
	unsigned idle_rounds = 0;
	while (p->alive() > 0) {
		if (written < size) {
			ssize_t n = write(sv[1], data + written, size - written);
			if (n > 0)
				written += (size_t)n;
		}
		/* block only while a password check runs on the thread */
		int how = login_pool_queued(fuzz_env.login) > 0 ? EVLOOP_ONCE : EVLOOP_NONBLOCK;
		event_base_loop(fuzz_env.base, how);
		fuzz_drain_output(sv[1], &out);
		if (shut)
			continue;
		int unread = 0;
		if (written == size && ioctl(sv[0], FIONREAD, &unread) == 0 && unread == 0 &&
		    login_pool_queued(fuzz_env.login) == 0 &&
		    event_base_get_num_events(fuzz_env.base, EVENT_BASE_COUNT_ACTIVE) == 0) {
			/* a few quiet rounds: what was read has been handled */
			if (++idle_rounds >= 3) {
				shutdown(sv[1], SHUT_WR);
				shut = true;
			}
		} else {
			idle_rounds = 0;
		}
	}
	fuzz_drain_output(sv[1], &out);
	close(sv[1]);
	/* FUZZ_SESSION_PRINT=1: show the conversation's replies (when reading a crash) */
	if (getenv("FUZZ_SESSION_PRINT") != NULL)
		fprintf(stderr, "--- server output:\n%.*s---\n", (int)out.len, out.data ? out.data : "");
	if (p->check_output != NULL)
		p->check_output(out.data != NULL ? out.data : "", out.len, true);
	buf_free(&out);
}

/* fuzz_check_lines - every reply line ends in CRLF, holds no NUL, CR or LF inside and is at
 * most max bytes long (CRLF included); data between from and to (byte offsets) are not
 * looked at (a message the server sends). */
static void fuzz_check_lines(const char *out, size_t len, size_t max)
{
	size_t start = 0;
	while (start < len) {
		const char *lf = memchr(out + start, '\n', len - start);
		FUZZ_ASSERT(lf != NULL);	/* the last reply is complete */
		size_t n = (size_t)(lf - (out + start)) + 1;
		FUZZ_ASSERT(n >= 2 && out[start + n - 2] == '\r' && n <= max);
		FUZZ_ASSERT(memchr(out + start, '\0', n) == NULL);
		FUZZ_ASSERT(memchr(out + start, '\r', n - 2) == NULL);
		start += n;
	}
}

#endif
