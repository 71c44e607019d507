/* test_smtp_client - the SMTP client against a scripted fake server in a thread.
 * Each case is a list of steps the server plays (expect a command prefix and reply, read a
 * message, send raw bytes, sleep, close, start TLS); the client runs on a libevent loop in
 * the main thread with 1 s timeouts. After its script the server answers QUIT with 221. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "lib/tls.h"
#include "smtp/client.h"
#include "test.h"

/* ---- the fake server --------------------------------------------------------------- */

enum step_kind {
	ST_END,
	ST_SEND,	/* send text */
	ST_EXPECT,	/* read a line starting with text, then send reply (if any) */
	ST_MSG,		/* read the message up to "." alone, then send reply */
	ST_CLOSE,	/* close the connection now */
	ST_SLEEP,	/* sleep ms */
	ST_LONG,	/* send 10,000 bytes without a newline */
	ST_TLS,		/* TLS handshake as server */
};

#define F_ALONE 1	/* no more input may follow the line within 100 ms (no pipelining) */

struct step {
	enum step_kind kind;
	const char *text;
	const char *reply;
	int flags;
	int ms;
};

#define SEND(t) { ST_SEND, (t), NULL, 0, 0 }
#define EXPECT(t, r) { ST_EXPECT, (t), (r), 0, 0 }
#define EXPECT_ALONE(t, r) { ST_EXPECT, (t), (r), F_ALONE, 0 }
#define MSG(r) { ST_MSG, NULL, (r), 0, 0 }
#define CLOSE() { ST_CLOSE, NULL, NULL, 0, 0 }
#define SLEEP(n) { ST_SLEEP, NULL, NULL, 0, (n) }
#define LONG() { ST_LONG, NULL, NULL, 0, 0 }
#define TLS() { ST_TLS, NULL, NULL, 0, 0 }
#define END { ST_END, NULL, NULL, 0, 0 }

#define GREET SEND("220 fake.test ESMTP\r\n")

struct fake {
	int lfd, fd;
	uint16_t port;
	const struct step *steps;
	pthread_t th;
	SSL_CTX *tls_ctx;
	SSL *ssl;
	char rbuf[65536];
	size_t rlen;
	buf transcript;		/* every command line received, each followed by "\n" */
	buf message;		/* the raw DATA text (stuffed), without the final ".\r\n" */
	char error[512];	/* the first script mismatch, "" when none */
	int not_alone;		/* F_ALONE lines that had company */
	bool saw_quit;
	bool was_tls;
};

static void fake_fail(struct fake *f, const char *what, const char *a)
{
	if (f->error[0] == '\0')
		snprintf(f->error, sizeof(f->error), "%s: %s", what, a);
}

static ssize_t fake_recv(struct fake *f, char *p, size_t n)
{
	if (f->ssl != NULL) {
		int r = SSL_read(f->ssl, p, (int)n);
		return r > 0 ? r : -1;
	}
	return recv(f->fd, p, n, 0);
}

static void fake_send(struct fake *f, const char *p, size_t n)
{
	if (f->ssl != NULL) {
		SSL_write(f->ssl, p, (int)n);
		return;
	}
	while (n > 0) {
		ssize_t w = send(f->fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

/* fake_line - next line (without CRLF) into out; -1 on EOF, error or timeout */
static int fake_line(struct fake *f, char *out, size_t outsz)
{
	for (;;) {
		char *nl = memchr(f->rbuf, '\n', f->rlen);
		if (nl != NULL) {
			size_t n = (size_t)(nl - f->rbuf) + 1, len = n - 1;
			if (len > 0 && f->rbuf[len - 1] == '\r')
				len--;
			snprintf(out, outsz, "%.*s", (int)len, f->rbuf);
			memmove(f->rbuf, f->rbuf + n, f->rlen - n);
			f->rlen -= n;
			return 0;
		}
		if (f->rlen == sizeof(f->rbuf))
			return -1;
		ssize_t r = fake_recv(f, f->rbuf + f->rlen, sizeof(f->rbuf) - f->rlen);
		if (r <= 0)
			return -1;
		f->rlen += (size_t)r;
	}
}

/* fake_alone - nothing buffered and nothing arriving within 100 ms */
static bool fake_alone(struct fake *f)
{
	if (f->rlen > 0 || (f->ssl != NULL && SSL_pending(f->ssl) > 0))
		return false;
	struct pollfd p = { f->fd, POLLIN, 0 };
	return poll(&p, 1, 100) == 0;
}

/* fake_msg - the message text up to the line "."; -1 on EOF */
static int fake_msg(struct fake *f)
{
	char line[70000];
	for (;;) {
		if (fake_line(f, line, sizeof(line)) < 0)
			return -1;
		if (strcmp(line, ".") == 0)
			return 0;
		buf_puts(&f->message, line);
		buf_puts(&f->message, "\r\n");
	}
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	struct pollfd p = { f->lfd, POLLIN, 0 };
	if (poll(&p, 1, 5000) <= 0)
		return NULL;
	f->fd = accept(f->lfd, NULL, NULL);
	if (f->fd < 0)
		return NULL;
	struct timeval tv = { 5, 0 };
	setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char line[70000];
	bool closed = false;
	for (const struct step *s = f->steps; s->kind != ST_END && !closed; s++) {
		switch (s->kind) {
		case ST_SEND:
			fake_send(f, s->text, strlen(s->text));
			break;
		case ST_EXPECT:
			if (fake_line(f, line, sizeof(line)) < 0) {
				fake_fail(f, "EOF, expected", s->text);
				closed = true;
				break;
			}
			buf_printf(&f->transcript, "%s\n", line);
			if (strncmp(line, s->text, strlen(s->text)) != 0) {
				fake_fail(f, "unexpected command", line);
				closed = true;
				break;
			}
			if ((s->flags & F_ALONE) && !fake_alone(f))
				f->not_alone++;
			if (s->reply != NULL)
				fake_send(f, s->reply, strlen(s->reply));
			break;
		case ST_MSG:
			if (fake_msg(f) < 0) {
				fake_fail(f, "EOF", "in message");
				closed = true;
				break;
			}
			if (s->reply != NULL)
				fake_send(f, s->reply, strlen(s->reply));
			break;
		case ST_CLOSE:
			closed = true;
			break;
		case ST_SLEEP:
			usleep((useconds_t)s->ms * 1000);
			break;
		case ST_LONG: {
			char *big = malloc(10000);
			memset(big, 'x', 10000);
			fake_send(f, big, 10000);
			free(big);
			break;
		}
		case ST_TLS:
			f->ssl = SSL_new(f->tls_ctx);
			SSL_set_fd(f->ssl, f->fd);
			if (SSL_accept(f->ssl) != 1) {
				fake_fail(f, "TLS", "handshake failed");
				closed = true;
			}
			f->was_tls = true;
			break;
		case ST_END:
			break;
		}
	}
	/* the end of the script: answer a QUIT if one comes */
	while (!closed && fake_line(f, line, sizeof(line)) == 0) {
		buf_printf(&f->transcript, "%s\n", line);
		if (strcmp(line, "QUIT") == 0) {
			f->saw_quit = true;
			fake_send(f, "221 bye\r\n", 9);
			break;
		}
		fake_fail(f, "command after the script", line);
		fake_send(f, "500 script over\r\n", 17);
	}
	if (f->ssl != NULL) {
		SSL_free(f->ssl);
		f->ssl = NULL;
	}
	close(f->fd);
	return NULL;
}

static void fake_start(struct fake *f, const struct step *steps, SSL_CTX *tls_ctx)
{
	memset(f, 0, sizeof(*f));
	f->steps = steps;
	f->tls_ctx = tls_ctx;
	buf_init(&f->transcript, 0);
	buf_init(&f->message, 0);
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(f->lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	socklen_t len = sizeof(sin);
	getsockname(f->lfd, (struct sockaddr *)&sin, &len);
	f->port = ntohs(sin.sin_port);
	CHECK(listen(f->lfd, 4) == 0);
	pthread_create(&f->th, NULL, fake_main, f);
}

/* fake_join - wait for the script's end; the transcript stays until fake_free */
static void fake_join(struct fake *f)
{
	pthread_join(f->th, NULL);
	close(f->lfd);
	if (f->error[0] != '\0')
		fprintf(stderr, "fake server: %s\n", f->error);
	CHECK(f->error[0] == '\0');
}

static void fake_free(struct fake *f)
{
	buf_free(&f->transcript);
	buf_free(&f->message);
}

/* ---- the client side --------------------------------------------------------------- */

struct saved_reply {
	enum smtp_client_status status;
	enum smtp_client_stage stage;
	int code;
	char enhanced[16];
	char text[700];
};

struct cl {
	struct event_base *base;
	struct smtp_client *c;
	bool connect_done, connect_ok;
	struct saved_reply err;
	bool send_done;
	struct saved_reply mail, data, rcpts[4];
	size_t n_rcpts, n_accepted;
	bool usable;
	int fd;		/* the message file */
};

static void save_reply(struct saved_reply *s, const struct smtp_client_reply *r)
{
	s->status = r->status;
	s->stage = r->stage;
	s->code = r->code;
	snprintf(s->enhanced, sizeof(s->enhanced), "%s", r->enhanced);
	snprintf(s->text, sizeof(s->text), "%s", r->text ? r->text : "(null)");
}

static void on_connect(struct smtp_client *c, const struct smtp_client_reply *err, void *ctx)
{
	struct cl *cl = ctx;
	(void)c;
	cl->connect_done = true;
	cl->connect_ok = err == NULL;
	if (err != NULL)
		save_reply(&cl->err, err);
}

static void on_send(struct smtp_client *c, const struct smtp_client_result *r, void *ctx)
{
	struct cl *cl = ctx;
	(void)c;
	cl->send_done = true;
	save_reply(&cl->mail, &r->mail);
	save_reply(&cl->data, &r->data);
	cl->n_rcpts = r->n_rcpts;
	for (size_t i = 0; i < r->n_rcpts && i < 4; i++)
		save_reply(&cl->rcpts[i], &r->rcpts[i]);
	cl->n_accepted = r->n_accepted;
	cl->usable = r->usable;
}

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* run_until - run the loop until *flag (or ms pass: a failure) */
static void run_until(struct event_base *base, const bool *flag, int ms)
{
	bool timed_out = false;
	struct event *guard = evtimer_new(base, guard_cb, &timed_out);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(guard, &tv);
	while (!*flag && !timed_out)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(guard);
	CHECK(!timed_out);
}

/* the big-message tests move megabytes through the fake server: on a loaded machine under
 * ASan that takes longer than the 1 s the timeout tests want */
static unsigned data_timeout_ms = 1000;

static struct smtp_client_opts test_opts(void)
{
	struct smtp_client_opts o;
	memset(&o, 0, sizeof(o));
	o.helo_name = "client.test";
	o.timeouts.connect = o.timeouts.greeting = o.timeouts.ehlo = 1000;
	o.timeouts.mail = o.timeouts.rcpt = o.timeouts.data_init = 1000;
	o.timeouts.data_block = o.timeouts.data_done = data_timeout_ms;
	o.timeouts.quit = 500;
	return o;
}

static void cl_connect_opts(struct cl *cl, uint16_t port, const struct smtp_client_opts *o)
{
	memset(cl, 0, sizeof(*cl));
	cl->fd = -1;
	signal(SIGPIPE, SIG_IGN);
	cl->base = event_base_new();
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cl->c = smtp_client_connect(cl->base, (struct sockaddr *)&sin, sizeof(sin), o, on_connect,
				    cl);
	CHECK(cl->c != NULL);
	run_until(cl->base, &cl->connect_done, 5000);
}

static void cl_connect(struct cl *cl, uint16_t port)
{
	struct smtp_client_opts o = test_opts();
	cl_connect_opts(cl, port, &o);
}

/* message_fd - a temp file holding 7 bytes of junk then text (offset 7, size len) */
static int message_fd(const char *text, size_t len)
{
	char path[] = "/tmp/tern-client-XXXXXX";
	int fd = mkstemp(path);
	unlink(path);
	CHECK(write(fd, "JUNK..\n", 7) == 7);
	CHECK(write(fd, text, len) == (ssize_t)len);
	return fd;
}

/* cl_send_txn - run txn with message text; fills cl's results */
static void cl_send_txn(struct cl *cl, struct smtp_client_txn *t, const char *text, size_t len)
{
	if (cl->fd >= 0)
		close(cl->fd);
	cl->fd = message_fd(text, len);
	t->fd = cl->fd;
	t->offset = 7;
	t->size = len;
	cl->send_done = false;
	CHECK(smtp_client_send(cl->c, t, on_send, cl) == 0);
	run_until(cl->base, &cl->send_done, 5000);
}

/* cl_send - a plain message from a@x.test to the given recipients */
static void cl_send(struct cl *cl, const char *const *rcpts, size_t n, const char *text)
{
	struct smtp_client_rcpt r[4];
	memset(r, 0, sizeof(r));
	for (size_t i = 0; i < n; i++)
		r[i].address = rcpts[i];
	struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = r, .n_rcpts = n };
	cl_send_txn(cl, &t, text, strlen(text));
}

/* cl_finish - quit, let the client free itself, release the loop */
static void cl_finish(struct cl *cl)
{
	smtp_client_quit(&cl->c);
	CHECK(cl->c == NULL);
	bool timed_out = false;
	struct event *guard = evtimer_new(cl->base, guard_cb, &timed_out);
	struct timeval tv = { 3, 0 };
	evtimer_add(guard, &tv);
	/* everything but our guard gone: the client has freed itself */
	while (!timed_out &&
	       event_base_get_num_events(cl->base, EVENT_BASE_COUNT_ADDED |
							   EVENT_BASE_COUNT_ACTIVE) > 1)
		event_base_loop(cl->base, EVLOOP_ONCE);
	CHECK(!timed_out);
	event_free(guard);
	event_base_free(cl->base);
	if (cl->fd >= 0)
		close(cl->fd);
}

static bool starts_with(const char *s, const char *prefix)
{
	if (strncmp(s, prefix, strlen(prefix)) == 0)
		return true;
	fprintf(stderr, "\"%s\" does not start with \"%s\"\n", s, prefix);
	return false;
}

static const char *const two_rcpts[] = { "b@y.test", "c@y.test" };
static const char *const one_rcpt[] = { "b@y.test" };

/* ---- cases ------------------------------------------------------------------------- */

/* test_plain - no PIPELINING: commands one by one, one recipient refused */
static void test_plain(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO client.test", "250-fake.test\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP\r\n"),
		EXPECT_ALONE("MAIL FROM:<a@x.test>", "250 2.1.0 ok\r\n"),
		EXPECT_ALONE("RCPT TO:<b@y.test>", "250 2.1.5 ok\r\n"),
		EXPECT_ALONE("RCPT TO:<c@y.test>", "550 5.1.1 <c@y.test>: no such user\r\n"),
		EXPECT_ALONE("DATA", "354 go ahead\r\n"),
		MSG("250 2.0.0 queued as ABC\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(cl.connect_ok);
	CHECK(smtp_client_usable(cl.c));
	const struct smtp_client_ext *e = smtp_client_extensions(cl.c);
	CHECK(e->esmtp && e->enhancedstatuscodes && !e->pipelining && !e->size);
	cl_send(&cl, two_rcpts, 2, "Subject: x\r\n\r\nhello\r\n");
	CHECK(cl.send_done);
	CHECK(cl.n_rcpts == 2 && cl.n_accepted == 1 && cl.usable);
	CHECK(cl.mail.code == 250 && cl.mail.status == SMTP_CLIENT_OK);
	CHECK_STREQ(cl.mail.enhanced, "2.1.0");
	CHECK(cl.data.code == 250 && cl.data.stage == SMTP_CLIENT_STAGE_DATA_DONE);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_OK && cl.rcpts[0].code == 250);
	CHECK_STREQ(cl.rcpts[0].text, "250 2.0.0 queued as ABC");
	CHECK(cl.rcpts[1].status == SMTP_CLIENT_PERMFAIL && cl.rcpts[1].code == 550);
	CHECK(cl.rcpts[1].stage == SMTP_CLIENT_STAGE_RCPT);
	CHECK_STREQ(cl.rcpts[1].enhanced, "5.1.1");
	CHECK_STREQ(cl.rcpts[1].text, "550 5.1.1 <c@y.test>: no such user");
	CHECK(smtp_client_usable(cl.c));
	cl_finish(&cl);
	fake_join(&f);
	CHECK(f.not_alone == 0);
	CHECK(f.saw_quit);
	CHECK_STREQ(buf_cstr(&f.message), "Subject: x\r\n\r\nhello\r\n");
	fake_free(&f);
}

/* test_pipelining - MAIL, RCPTs and DATA in one go; replies matched in order. The server
 * answers nothing until it has read DATA: a client waiting for replies would time out. */
static void test_pipelining(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO client.test", "250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", NULL),
		EXPECT("RCPT TO:<b@y.test>", NULL),
		EXPECT("RCPT TO:<c@y.test>", NULL),
		EXPECT("DATA", "250 ok\r\n550 5.1.1 nope\r\n250 ok\r\n354 go\r\n"),
		MSG("250 2.0.0 done\r\n"),
		/* second transaction: RSET joins the group; all recipients refused */
		EXPECT("RSET", NULL),
		EXPECT("MAIL FROM:<a@x.test>", NULL),
		EXPECT("RCPT TO:<b@y.test>", NULL),
		EXPECT("RCPT TO:<c@y.test>", NULL),
		EXPECT("DATA", "250 ok\r\n250 ok\r\n450 4.2.0 busy\r\n550 5.1.1 no\r\n"
			       "554 5.5.1 no valid recipients\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(cl.connect_ok);
	CHECK(smtp_client_extensions(cl.c)->pipelining);
	cl_send(&cl, two_rcpts, 2, "hi\r\n");
	CHECK(cl.send_done && cl.usable && cl.n_accepted == 1);
	CHECK(cl.rcpts[0].code == 550 && cl.rcpts[0].status == SMTP_CLIENT_PERMFAIL);
	CHECK(cl.rcpts[1].code == 250 && cl.rcpts[1].status == SMTP_CLIENT_OK);
	CHECK_STREQ(cl.rcpts[1].text, "250 2.0.0 done");
	cl_send(&cl, two_rcpts, 2, "hi\r\n");
	CHECK(cl.send_done && cl.usable && cl.n_accepted == 0);
	CHECK(cl.rcpts[0].code == 450 && cl.rcpts[0].status == SMTP_CLIENT_TEMPFAIL);
	CHECK(cl.rcpts[1].code == 550 && cl.rcpts[1].status == SMTP_CLIENT_PERMFAIL);
	CHECK(cl.data.status == SMTP_CLIENT_TEMPFAIL && cl.data.code == 0);
	CHECK_STREQ(cl.data.text, "message not sent: no recipient accepted");
	cl_finish(&cl);
	fake_join(&f);
	CHECK_STREQ(buf_cstr(&f.message), "hi\r\n");
	fake_free(&f);
}

/* test_pipelining_354_without_rcpt - a server that says 354 although every RCPT failed
 * gets an empty message (RFC 2920 §3.1) */
static void test_pipelining_354_without_rcpt(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250 PIPELINING\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", NULL),
		EXPECT("RCPT TO:<b@y.test>", NULL),
		EXPECT("DATA", "250 ok\r\n550 no\r\n354 go\r\n"),
		MSG("554 no recipients\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	cl_send(&cl, one_rcpt, 1, "hi\r\n");
	CHECK(cl.send_done && cl.usable);
	CHECK(cl.rcpts[0].code == 550);
	cl_finish(&cl);
	fake_join(&f);
	CHECK_STREQ(buf_cstr(&f.message), "");
	fake_free(&f);
}

/* test_size - over the advertised SIZE: refused before sending; under it: SIZE= sent */
static void test_size(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250 SIZE 100\r\n"),
		EXPECT("MAIL FROM:<a@x.test> SIZE=4", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(smtp_client_extensions(cl.c)->size);
	CHECK(smtp_client_extensions(cl.c)->size_max == 100);
	char big[201];
	memset(big, 'a', 200);
	big[200] = '\0';
	cl_send(&cl, one_rcpt, 1, big);
	CHECK(cl.send_done && cl.usable);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_PERMFAIL && cl.rcpts[0].code == 0);
	CHECK(cl.rcpts[0].stage == SMTP_CLIENT_STAGE_PRECHECK);
	CHECK_STREQ(cl.rcpts[0].enhanced, "5.3.4");
	CHECK_STREQ(cl.rcpts[0].text, "552 5.3.4 message size exceeds remote limit");
	/* nothing was sent, so no RSET either */
	cl_send(&cl, one_rcpt, 1, "hi\r\n");
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_OK);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* test_8bit - 8-bit body without 8BITMIME (5.6.3), UTF-8 address without SMTPUTF8 (5.6.7);
 * with the extensions the parameters are sent */
static void test_8bit(void)
{
	static const struct step plain[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250 PIPELINING\r\n"),
		END,
	};
	static const struct step ext[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
		EXPECT("MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8", "250 ok\r\n"),
		EXPECT("RCPT TO:<j\xc3\xb6rg@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	struct smtp_client_rcpt r = { .address = "b@y.test" };
	struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = &r, .n_rcpts = 1,
				     .body_8bit = true };
	fake_start(&f, plain, NULL);
	cl_connect(&cl, f.port);
	cl_send_txn(&cl, &t, "caf\xc3\xa9\r\n", 6);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_PERMFAIL);
	CHECK_STREQ(cl.rcpts[0].enhanced, "5.6.3");
	CHECK(starts_with(cl.rcpts[0].text, "554 5.6.3 "));
	CHECK(cl.usable);
	t.body_8bit = false;
	r.address = "j\xc3\xb6rg@y.test";
	cl_send_txn(&cl, &t, "hi\r\n", 4);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_PERMFAIL);
	CHECK_STREQ(cl.rcpts[0].enhanced, "5.6.7");
	CHECK(starts_with(cl.rcpts[0].text, "553 5.6.7 "));
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);

	fake_start(&f, ext, NULL);
	cl_connect(&cl, f.port);
	t.body_8bit = true;
	cl_send_txn(&cl, &t, "caf\xc3\xa9\r\n", 6);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_OK);
	cl_finish(&cl);
	fake_join(&f);
	CHECK_STREQ(buf_cstr(&f.message), "caf\xc3\xa9\r\n");
	fake_free(&f);
}

/* test_bad_input - CR/LF in an address never reaches the wire */
static void test_bad_input(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	const char *evil[] = { "b@y.test>\r\nRCPT TO:<c@y.test" };
	cl_send(&cl, evil, 1, "hi\r\n");
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_PERMFAIL);
	CHECK_STREQ(cl.rcpts[0].enhanced, "5.5.4");
	struct smtp_client_txn t = { .sender = "a@x.test", .n_rcpts = 0 };
	CHECK(smtp_client_send(cl.c, &t, on_send, &cl) == -1);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* one message through a fresh fake server; returns the raw DATA text (caller frees) */
static char *wire_form(const char *text, size_t len)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	struct smtp_client_rcpt r = { .address = "b@y.test" };
	struct smtp_client_txn t = { .sender = "", .rcpts = &r, .n_rcpts = 1 };
	fake_start(&f, steps, NULL);
	data_timeout_ms = 30000;
	cl_connect(&cl, f.port);
	data_timeout_ms = 1000;
	cl_send_txn(&cl, &t, text, len);
	CHECK(cl.data.status == SMTP_CLIENT_OK);
	cl_finish(&cl);
	fake_join(&f);
	CHECK(strstr(buf_cstr(&f.transcript), "MAIL FROM:<>\n") != NULL);
	char *s = strdup(buf_cstr(&f.message));
	fake_free(&f);
	return s;
}

/* test_dot_stuffing - lines starting with "." get another; bare CR/LF become CRLF */
static void test_dot_stuffing(void)
{
	static const struct {
		const char *in, *wire;
	} cases[] = {
		{ ".hello\r\n..two\r\nmid.dot\r\n.\r\n", "..hello\r\n...two\r\nmid.dot\r\n..\r\n" },
		{ ".", ".." "\r\n" },
		{ "a\nb\n.c\n", "a\r\nb\r\n..c\r\n" },
		{ "a\r.\r\nb\r\n", "a\r\n..\r\nb\r\n" },
		{ "x\r\n\r\n.\r\n", "x\r\n\r\n..\r\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *w = wire_form(cases[i].in, strlen(cases[i].in));
		CHECK_STREQ(w, cases[i].wire);
		free(w);
	}
}

/* test_no_final_crlf - CRLF is added when the message does not end with one */
static void test_no_final_crlf(void)
{
	char *w = wire_form("Subject: x\r\n\r\nno newline", 24);
	CHECK_STREQ(w, "Subject: x\r\n\r\nno newline\r\n");
	free(w);
	w = wire_form("ends in CR\r", 11);
	CHECK_STREQ(w, "ends in CR\r\n");
	free(w);
	w = wire_form("", 0);
	CHECK_STREQ(w, "");
	free(w);
}

/* test_big_message - a message larger than the output buffer streams through */
static void test_big_message(void)
{
	size_t n = 3000000;
	char *text = malloc(n);
	for (size_t i = 0; i < n; i++)
		text[i] = (i % 100 == 98) ? '\r' : (i % 100 == 99) ? '\n' : (i % 100 == 0) ? '.' : 'a';
	char *w = wire_form(text, n);
	CHECK(strlen(w) == n + n / 100);	/* one stuffed dot per line */
	CHECK(strncmp(w, "..aaa", 5) == 0);
	free(w);
	free(text);
}

/* test_multiline - multi-line greeting, EHLO and refusal */
static void test_multiline(void)
{
	static const struct step steps[] = {
		SEND("220-fake.test ESMTP\r\n220-more banner\r\n220 end\r\n"),
		EXPECT("EHLO", "250-fake.test\r\n250-SIZE\r\n250-DSN\r\n250-CHUNKING\r\n"
			       "250 PIPELINING\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "550-5.7.1 first line\r\n550-5.7.1 second line\r\n550 5.7.1 end\r\n"),
		EXPECT("DATA", "554 no valid recipients\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	const struct smtp_client_ext *e = smtp_client_extensions(cl.c);
	CHECK(e->size && e->size_max == 0 && e->dsn && e->chunking && e->pipelining);
	CHECK(!e->eightbitmime && !e->starttls);
	cl_send(&cl, one_rcpt, 1, "hi\r\n");
	CHECK(cl.rcpts[0].code == 550);
	CHECK_STREQ(cl.rcpts[0].enhanced, "5.7.1");
	CHECK_STREQ(cl.rcpts[0].text, "550 5.7.1 first line 5.7.1 second line 5.7.1 end");
	CHECK(cl.usable);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* test_dsn - DSN parameters only when the server offers DSN */
static void test_dsn(void)
{
	static const struct step with[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250 DSN\r\n"),
		EXPECT("MAIL FROM:<a@x.test> RET=HDRS ENVID=Q123", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;b@y.test",
		       "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	static const struct step without[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	const struct step *scripts[] = { with, without };
	for (int i = 0; i < 2; i++) {
		struct fake f;
		struct cl cl;
		struct smtp_client_rcpt r = { .address = "b@y.test", .notify = "FAILURE,DELAY",
					      .orcpt = "rfc822;b@y.test" };
		struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = &r, .n_rcpts = 1,
					     .dsn_ret = "HDRS", .dsn_envid = "Q123" };
		fake_start(&f, scripts[i], NULL);
		cl_connect(&cl, f.port);
		cl_send_txn(&cl, &t, "hi\r\n", 4);
		CHECK(cl.rcpts[0].status == SMTP_CLIENT_OK);
		cl_finish(&cl);
		fake_join(&f);
		const char *tr = buf_cstr(&f.transcript);
		CHECK((strstr(tr, "NOTIFY=") != NULL) == (i == 0));
		CHECK(strstr(tr, "MAIL FROM:<a@x.test>\n") != NULL || i == 0);
		fake_free(&f);
	}
}

/* test_helo_fallback - EHLO refused with 5xx: HELO, no extensions */
static void test_helo_fallback(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO client.test", "502 5.5.1 what?\r\n"),
		EXPECT("HELO client.test", "250 fake.test\r\n"),
		EXPECT_ALONE("MAIL FROM:<a@x.test>", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(cl.connect_ok);
	CHECK(!smtp_client_extensions(cl.c)->esmtp);
	cl_send(&cl, one_rcpt, 1, "hi\r\n");
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_OK);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* test_reuse - two transactions on one connection, RSET before the second; the second
 * is refused at MAIL and the connection is still usable */
static void test_reuse(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 first\r\n"),
		EXPECT_ALONE("RSET", "250 reset\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", "451 4.3.0 try later\r\n"),
		EXPECT("RSET", "250 reset\r\n"),
		EXPECT("MAIL FROM:<a@x.test>", "250 ok\r\n"),
		EXPECT("RCPT TO:<b@y.test>", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 third\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	cl_send(&cl, one_rcpt, 1, "one\r\n");
	CHECK_STREQ(cl.rcpts[0].text, "250 first");
	cl_send(&cl, two_rcpts, 2, "two\r\n");
	CHECK(cl.usable);
	CHECK(cl.mail.status == SMTP_CLIENT_TEMPFAIL && cl.mail.code == 451);
	CHECK(cl.rcpts[0].code == 451 && cl.rcpts[0].stage == SMTP_CLIENT_STAGE_MAIL);
	CHECK(cl.rcpts[1].code == 451);
	CHECK(cl.data.code == 451);
	cl_send(&cl, one_rcpt, 1, "three\r\n");
	CHECK_STREQ(cl.rcpts[0].text, "250 third");
	cl_finish(&cl);
	fake_join(&f);
	CHECK_STREQ(buf_cstr(&f.message), "one\r\nthree\r\n");
	fake_free(&f);
}

/* fail_case - a transaction the server breaks; returns the recipient's outcome text */
static void fail_case(const struct step *steps, const char *want_prefix,
		      enum smtp_client_stage stage)
{
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(cl.connect_ok);
	cl_send(&cl, one_rcpt, 1, "hi\r\n");
	CHECK(cl.send_done);
	CHECK(!cl.usable);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_TEMPFAIL);
	CHECK(cl.rcpts[0].stage == stage);
	CHECK(starts_with(cl.rcpts[0].text, want_prefix));
	CHECK(!smtp_client_usable(cl.c));
	struct smtp_client_rcpt r = { .address = "b@y.test" };
	struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = &r, .n_rcpts = 1 };
	CHECK(smtp_client_send(cl.c, &t, on_send, &cl) == -1);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

static void test_close_after_rcpt(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", NULL),
		CLOSE(),
		END,
	};
	fail_case(steps, "lost connection after RCPT TO", SMTP_CLIENT_STAGE_RCPT);
}

static void test_garbage_reply(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "hello there\r\n"),
		END,
	};
	fail_case(steps, "bad reply after RCPT TO: not a reply line: \"hello there\"",
		  SMTP_CLIENT_STAGE_RCPT);
}

static void test_overlong_reply(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", NULL),
		LONG(),
		END,
	};
	fail_case(steps, "reply too long after MAIL FROM", SMTP_CLIENT_STAGE_MAIL);
}

static void test_too_many_lines(void)
{
	static char reply[200 * 8 + 16];
	static struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", reply),
		END,
	};
	reply[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(reply, "250-ok\r\n");
	strcat(reply, "250 ok\r\n");
	fail_case(steps, "bad reply after MAIL FROM: too many reply lines", SMTP_CLIENT_STAGE_MAIL);
}

static void test_timeout(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", NULL),
		SLEEP(1500),
		CLOSE(),
		END,
	};
	fail_case(steps, "timeout after RCPT TO", SMTP_CLIENT_STAGE_RCPT);
}

static void test_timeout_end_of_data(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG(NULL),
		SLEEP(1500),
		CLOSE(),
		END,
	};
	fail_case(steps, "timeout after end of data", SMTP_CLIENT_STAGE_DATA_DONE);
}

/* test_timeout_sending - the server stops reading mid-message: data_block timeout (and the
 * client never buffers more than a bounded part of the message) */
static void test_timeout_sending(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		SLEEP(2500),
		CLOSE(),
		END,
	};
	size_t n = 32 * 1024 * 1024;
	char *text = malloc(n + 1);
	memset(text, 'x', n);
	for (size_t i = 76; i < n; i += 78) {
		text[i] = '\r';
		text[i + 1] = '\n';
	}
	text[n] = '\0';
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	cl_send(&cl, one_rcpt, 1, text);
	CHECK(!cl.usable);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_TEMPFAIL);
	CHECK(cl.rcpts[0].stage == SMTP_CLIENT_STAGE_BODY);
	CHECK_STREQ(cl.rcpts[0].text, "timeout while sending message");
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
	free(text);
}

/* test_data_refused - accepted recipients take the reply after the dot */
static void test_data_refused(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("554 5.7.1 spam\r\n"),
		EXPECT("RSET", "250 ok\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "451 4.3.0 not now\r\n"),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	cl_send(&cl, two_rcpts, 2, "spam\r\n");
	CHECK(cl.usable && cl.n_accepted == 2);
	for (int i = 0; i < 2; i++) {
		CHECK(cl.rcpts[i].status == SMTP_CLIENT_PERMFAIL && cl.rcpts[i].code == 554);
		CHECK(cl.rcpts[i].stage == SMTP_CLIENT_STAGE_DATA_DONE);
		CHECK_STREQ(cl.rcpts[i].text, "554 5.7.1 spam");
	}
	cl_send(&cl, one_rcpt, 1, "x\r\n");
	CHECK(cl.usable);
	CHECK(cl.rcpts[0].status == SMTP_CLIENT_TEMPFAIL && cl.rcpts[0].code == 451);
	CHECK(cl.rcpts[0].stage == SMTP_CLIENT_STAGE_DATA);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* test_421_midway - a 421 to RCPT ends the transaction and the connection */
static void test_421_midway(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("RCPT", "421 4.3.2 shutting down\r\n"),
		CLOSE(),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	cl_send(&cl, two_rcpts, 2, "x\r\n");
	CHECK(!cl.usable);
	CHECK(cl.rcpts[0].code == 421 && cl.rcpts[0].status == SMTP_CLIENT_TEMPFAIL);
	CHECK(cl.rcpts[1].code == 421);
	cl_finish(&cl);
	fake_join(&f);
	CHECK(!f.saw_quit);
	fake_free(&f);
}

/* connect_fail - connecting to the script fails with this error; true when QUIT came */
static bool connect_fail(const struct step *steps, const struct smtp_client_opts *o,
			 enum smtp_client_stage stage, enum smtp_client_status status, int code,
			 const char *text, SSL_CTX *server_tls)
{
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, server_tls);
	cl_connect_opts(&cl, f.port, o);
	CHECK(cl.connect_done && !cl.connect_ok);
	CHECK(cl.err.stage == stage);
	CHECK(cl.err.status == status);
	CHECK(cl.err.code == code);
	CHECK(starts_with(cl.err.text, text));
	CHECK(!smtp_client_usable(cl.c));
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
	return f.saw_quit;
}

static void test_greeting_421(void)
{
	static const struct step steps[] = {
		SEND("421 4.3.2 too busy\r\n"),
		CLOSE(),
		END,
	};
	struct smtp_client_opts o = test_opts();
	CHECK(!connect_fail(steps, &o, SMTP_CLIENT_STAGE_GREETING, SMTP_CLIENT_TEMPFAIL, 421,
			    "421 4.3.2 too busy", NULL));
}

static void test_greeting_554(void)
{
	/* a 554 greeting is permanent and still answers QUIT */
	static const struct step steps[] = {
		SEND("554 5.7.1 go away\r\n"),
		END,
	};
	struct smtp_client_opts o = test_opts();
	CHECK(connect_fail(steps, &o, SMTP_CLIENT_STAGE_GREETING, SMTP_CLIENT_PERMFAIL, 554,
			   "554 5.7.1 go away", NULL));
}

static void test_greeting_timeout(void)
{
	static const struct step steps[] = {
		SLEEP(1500),
		CLOSE(),
		END,
	};
	struct smtp_client_opts o = test_opts();
	connect_fail(steps, &o, SMTP_CLIENT_STAGE_GREETING, SMTP_CLIENT_TEMPFAIL, 0,
		     "timeout waiting for greeting", NULL);
}

static void test_connection_refused(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(s, (struct sockaddr *)&sin, sizeof(sin));
	socklen_t len = sizeof(sin);
	getsockname(s, (struct sockaddr *)&sin, &len);
	close(s);	/* a port nobody listens on */
	struct cl cl;
	cl_connect(&cl, ntohs(sin.sin_port));
	CHECK(cl.connect_done && !cl.connect_ok);
	CHECK(cl.err.stage == SMTP_CLIENT_STAGE_CONNECT);
	CHECK(cl.err.status == SMTP_CLIENT_TEMPFAIL);
	CHECK_STREQ(cl.err.text, "connect: Connection refused");
	cl_finish(&cl);
}

/* test_quit_while_busy - quitting in the middle of a transaction: no callback */
static void test_quit_while_busy(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		END,	/* the MAIL never leaves: the client is gone before the loop runs */
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	struct smtp_client_rcpt r = { .address = "b@y.test" };
	struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = &r, .n_rcpts = 1, .fd = -1 };
	CHECK(smtp_client_send(cl.c, &t, on_send, &cl) == 0);
	CHECK(smtp_client_send(cl.c, &t, on_send, &cl) == -1);	/* busy */
	cl_finish(&cl);
	CHECK(!cl.send_done);
	fake_join(&f);
	fake_free(&f);
}

/* test_idle_close - the server hangs up while the connection is idle: no longer usable */
static void test_idle_close(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		SLEEP(100),
		SEND("421 4.4.2 idle timeout\r\n"),
		CLOSE(),
		END,
	};
	struct fake f;
	struct cl cl;
	fake_start(&f, steps, NULL);
	cl_connect(&cl, f.port);
	CHECK(smtp_client_usable(cl.c));
	bool timed_out = false;
	struct event *guard = evtimer_new(cl.base, guard_cb, &timed_out);
	struct timeval tv = { 3, 0 };
	evtimer_add(guard, &tv);
	while (smtp_client_usable(cl.c) && !timed_out)
		event_base_loop(cl.base, EVLOOP_ONCE);
	event_free(guard);
	CHECK(!timed_out);
	struct smtp_client_rcpt r = { .address = "b@y.test" };
	struct smtp_client_txn t = { .sender = "a@x.test", .rcpts = &r, .n_rcpts = 1 };
	CHECK(smtp_client_send(cl.c, &t, on_send, &cl) == -1);
	cl_finish(&cl);
	fake_join(&f);
	fake_free(&f);
}

/* ---- STARTTLS ---------------------------------------------------------------------- */

static char tls_dir[64];
static SSL_CTX *server_ctx, *client_ctx;

static void tls_setup(void)
{
	if (server_ctx != NULL)
		return;
	tls_init();
	snprintf(tls_dir, sizeof(tls_dir), "/tmp/tern-client-tls-XXXXXX");
	CHECK(mkdtemp(tls_dir) != NULL);
	char cert[128], key[128];
	char *err = NULL;
	snprintf(cert, sizeof(cert), "%s/cert.pem", tls_dir);
	snprintf(key, sizeof(key), "%s/key.pem", tls_dir);
	CHECK(tls_make_selfsigned(cert, key, "fake.test", &err) == 0);
	server_ctx = tls_server_ctx(cert, key, &err);
	CHECK(server_ctx != NULL);
	client_ctx = SSL_CTX_new(TLS_client_method());
	unlink(cert);
	unlink(key);
	rmdir(tls_dir);
}

static void test_starttls(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"),
		EXPECT("STARTTLS", "220 go ahead\r\n"),
		TLS(),
		EXPECT("EHLO", "250-fake.test\r\n250 8BITMIME\r\n"),
		EXPECT("MAIL", "250 ok\r\n"),
		EXPECT("RCPT", "250 ok\r\n"),
		EXPECT("DATA", "354 go\r\n"),
		MSG("250 ok over TLS\r\n"),
		END,
	};
	tls_setup();
	struct fake f;
	struct cl cl;
	struct smtp_client_opts o = test_opts();
	o.tls_ctx = client_ctx;
	o.tls_server_name = "fake.test";
	o.require_tls = true;
	fake_start(&f, steps, server_ctx);
	cl_connect_opts(&cl, f.port, &o);
	CHECK(cl.connect_ok);
	CHECK(smtp_client_tls(cl.c) && smtp_client_ssl(cl.c) != NULL);
	const struct smtp_client_ext *e = smtp_client_extensions(cl.c);
	CHECK(e->eightbitmime && !e->pipelining && !e->starttls);	/* the second EHLO */
	cl_send(&cl, one_rcpt, 1, "secret\r\n");
	CHECK_STREQ(cl.rcpts[0].text, "250 ok over TLS");
	cl_finish(&cl);
	fake_join(&f);
	CHECK(f.was_tls && f.saw_quit);
	CHECK_STREQ(buf_cstr(&f.message), "secret\r\n");
	fake_free(&f);
}

/* test_starttls_opportunistic - no STARTTLS offered: plain unless TLS is required */
static void test_starttls_missing(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250 fake.test\r\n"),
		END,
	};
	tls_setup();
	struct fake f;
	struct cl cl;
	struct smtp_client_opts o = test_opts();
	o.tls_ctx = client_ctx;
	fake_start(&f, steps, NULL);
	cl_connect_opts(&cl, f.port, &o);
	CHECK(cl.connect_ok && !smtp_client_tls(cl.c));
	cl_finish(&cl);
	fake_join(&f);
	CHECK(f.saw_quit);
	fake_free(&f);

	o.require_tls = true;
	CHECK(connect_fail(steps, &o, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, 0,
			   "TLS is required, but the server does not offer STARTTLS", NULL));
}

/* test_starttls_handshake_fails - the server answers 220 and then speaks no TLS */
static void test_starttls_handshake_fails(void)
{
	static const struct step steps[] = {
		GREET,
		EXPECT("EHLO", "250-fake.test\r\n250 STARTTLS\r\n"),
		EXPECT("STARTTLS", "220 go ahead\r\n"),
		SEND("this is not TLS at all\r\n"),
		SLEEP(200),
		CLOSE(),
		END,
	};
	tls_setup();
	struct smtp_client_opts o = test_opts();
	o.tls_ctx = client_ctx;
	connect_fail(steps, &o, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, 0,
		     "TLS handshake failed", NULL);
}

static void test_tls_cleanup(void)
{
	SSL_CTX_free(server_ctx);
	SSL_CTX_free(client_ctx);
	server_ctx = client_ctx = NULL;
}

TEST_MAIN(TEST(test_plain), TEST(test_pipelining), TEST(test_pipelining_354_without_rcpt),
	  TEST(test_size), TEST(test_8bit), TEST(test_bad_input), TEST(test_dot_stuffing),
	  TEST(test_no_final_crlf), TEST(test_big_message), TEST(test_multiline), TEST(test_dsn),
	  TEST(test_helo_fallback), TEST(test_reuse), TEST(test_close_after_rcpt),
	  TEST(test_garbage_reply), TEST(test_overlong_reply), TEST(test_too_many_lines),
	  TEST(test_timeout), TEST(test_timeout_end_of_data), TEST(test_timeout_sending), TEST(test_data_refused),
	  TEST(test_421_midway), TEST(test_greeting_421), TEST(test_greeting_554),
	  TEST(test_greeting_timeout), TEST(test_connection_refused), TEST(test_quit_while_busy), TEST(test_idle_close),
	  TEST(test_starttls), TEST(test_starttls_missing), TEST(test_starttls_handshake_fails),
	  TEST(test_tls_cleanup))
