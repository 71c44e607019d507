/* test_session - the session core and its dispatcher: flags refuse a command before its
 * handler runs (state, authentication, TLS, selected mailbox), admit goes first, unknown
 * verbs are the protocol's, overlong lines and bare LFs, the bad-command limit, the line
 * deadline, command caps and the shorter limits before login, the pool's caps. A session
 * runs over a socketpair; the test is its client. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/session.h"
#include "test.h"

enum { ST_START, ST_OPEN };
static const char *const names[] = { "start", "open" };

struct proto {
	struct session *ss;
	int ran[8];			/* handler runs, by command index */
	int refused[8];			/* refusals, by enum session_refusal */
	int too_long;
	bool admit_no;			/* admit refuses everything */
	bool ended;
};

static void h_open(void *ctx, const void *a)
{
	struct proto *p = ctx;
	p->ran[0]++;
	session_set_state(p->ss, ST_OPEN);
	session_reply(p->ss, "OK open");
}

#define HANDLER(n, i)                                   \
	static void n(void *ctx, const void *a)         \
	{                                               \
		struct proto *p = ctx;                  \
		p->ran[i]++;                            \
		session_reply(p->ss, "OK %s", #n);      \
	}
HANDLER(h_read, 1)
HANDLER(h_login, 2)
HANDLER(h_fetch, 3)
HANDLER(h_stls, 4)
HANDLER(h_noop, 5)

static const struct session_command commands[] = {
	{ "OPEN", h_open, SESSION_CMD_STATE(ST_START) },
	{ "READ", h_read, SESSION_CMD_STATE(ST_OPEN) | SESSION_CMD_NEEDS_AUTH },
	{ "LOGIN", h_login, SESSION_CMD_STATE(ST_START) | SESSION_CMD_STATE(ST_OPEN) |
			    SESSION_CMD_PRE_AUTH | SESSION_CMD_NEEDS_TLS },
	{ "FETCH", h_fetch, SESSION_CMD_STATE(ST_OPEN) | SESSION_CMD_NEEDS_SELECTED |
			    SESSION_CMD_USES_SEQ },
	{ "STLS", h_stls, SESSION_CMD_STATE(ST_START) | SESSION_CMD_PRE_TLS },
	{ "NOOP", h_noop, SESSION_CMD_STATE(ST_START) | SESSION_CMD_STATE(ST_OPEN) },
};

static bool admit(void *ctx, const struct session_command *c)
{
	struct proto *p = ctx;
	if (p->admit_no)
		session_reply(p->ss, "NO admit");
	return !p->admit_no;
}

static void refuse(void *ctx, const struct session_command *c, enum session_refusal why)
{
	struct proto *p = ctx;
	p->refused[why]++;
	session_reply(p->ss, "NO %s %d", c->name, (int)why);
	session_bad_command(p->ss);
}

static const struct session_dispatcher dispatcher = {
	commands, sizeof(commands) / sizeof(commands[0]), admit, refuse
};

static void on_line(void *ctx, char *line, size_t len)
{
	struct proto *p = ctx;
	if (line == NULL) {
		p->too_long++;
		session_reply(p->ss, "BAD too long");
		return;
	}
	if (!session_dispatch(p->ss, &dispatcher, line, strcspn(line, " "), line))
		session_reply(p->ss, "BAD unknown");
}

static void on_raw(void *ctx)
{
}

static void on_end(void *ctx)
{
	struct proto *p = ctx;
	p->ended = true;
}

static const struct session_ops ops = { names, on_line, on_raw, NULL, on_end };
static const struct session_texts texts = {
	.bare_lf = "BAD bare LF",
	.too_many_errors = "BYE too many errors",
	.timeout = "BYE timeout",
	.too_slow = "BYE too slow",
	.too_many_connections = "BYE too many connections",
	.busy = "BYE busy",
	.too_many_commands = "BYE too many commands",
	.drain = "BYE shutting down",
};

struct rig {
	struct event_base *base;
	struct session_list list;
	struct proto p;
	int client;
	char in[4096];
	size_t in_len;
};

static const struct session_limits *rig_limits;	/* NULL: the defaults below */

/* rig_connect - one more session on r's list, its client socket in *client_r */
static struct session *rig_connect(struct rig *r, struct proto *p, int *client_r,
				   const struct session_limits *limits)
{
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	*client_r = sv[1];
	struct sockaddr_in peer = { .sin_family = AF_INET };
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->ss = session_new(&r->list, r->base, sv[0], (struct sockaddr *)&peer, sizeof(peer), NULL,
			    limits, &ops, p, 't', "test", "HELLO");
	return p->ss;
}

static void rig_start(struct rig *r, bool plaintext_ok, unsigned max_bad)
{
	int sv[2];
	memset(r, 0, sizeof(*r));
	r->base = event_base_new();
	session_list_init(&r->list, &texts);
	if (rig_limits != NULL) {
		rig_connect(r, &r->p, &r->client, rig_limits);
		return;
	}
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	r->client = sv[1];
	struct sockaddr_in peer = { .sin_family = AF_INET };
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct session_limits limits = { .max_line = 64, .max_input = 4096, .timeout = 60,
					 .max_bad_commands = max_bad, .max_per_ip = 10,
					 .plaintext_auth_loopback = plaintext_ok };
	r->p.ss = session_new(&r->list, r->base, sv[0], (struct sockaddr *)&peer, sizeof(peer),
			      NULL, &limits, &ops, &r->p, 't', "test", "HELLO");
}

/* rig_line - the next reply line from the session (without CRLF), "" on EOF/timeout */
static const char *rig_line(struct rig *r)
{
	static char line[1024];
	for (int tries = 0; tries < 2000; tries++) {
		char *nl = memchr(r->in, '\n', r->in_len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - r->in);
			size_t keep = n > 0 && r->in[n - 1] == '\r' ? n - 1 : n;
			memcpy(line, r->in, keep);
			line[keep] = '\0';
			memmove(r->in, nl + 1, r->in_len - n - 1);
			r->in_len -= n + 1;
			return line;
		}
		event_base_loop(r->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		ssize_t got = read(r->client, r->in + r->in_len, sizeof(r->in) - r->in_len);
		if (got > 0)
			r->in_len += (size_t)got;
		else if (got == 0)
			return "";
		else
			usleep(1000);
	}
	return "";
}

static const char *rig_cmd(struct rig *r, const char *text)
{
	CHECK(write(r->client, text, strlen(text)) == (ssize_t)strlen(text));
	return rig_line(r);
}

static void rig_stop(struct rig *r)
{
	close(r->client);
	session_list_free(&r->list);
	CHECK(r->p.ended);
	CHECK(r->list.n == 0);
	event_base_free(r->base);
}

static void test_state_flags(void)
{
	struct rig r;
	rig_start(&r, false, 20);
	CHECK_STREQ(rig_line(&r), "HELLO");
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "NO READ 0");	/* SESSION_REFUSED_STATE */
	CHECK(r.p.ran[1] == 0);
	CHECK_STREQ(rig_cmd(&r, "open\r\n"), "OK open");	/* any case */
	CHECK(session_state(r.p.ss) == ST_OPEN);
	CHECK_STREQ(rig_cmd(&r, "OPEN\r\n"), "NO OPEN 0");
	CHECK(r.p.ran[0] == 1);
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "XYZZY\r\n"), "BAD unknown");
	rig_stop(&r);
}

static void test_auth_and_selected_flags(void)
{
	struct rig r;
	rig_start(&r, false, 20);
	rig_line(&r);
	rig_cmd(&r, "OPEN\r\n");
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "NO READ 1");	/* NEEDS_AUTH */
	CHECK(r.p.refused[SESSION_REFUSED_NEEDS_AUTH] == 1);
	session_set_authenticated(r.p.ss, true);
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "OK h_read");
	CHECK(r.p.ran[1] == 1);
	CHECK_STREQ(rig_cmd(&r, "LOGIN x\r\n"), "NO LOGIN 2");	/* PRE_AUTH */
	CHECK(r.p.refused[SESSION_REFUSED_AUTHENTICATED] == 1);
	CHECK_STREQ(rig_cmd(&r, "FETCH 1\r\n"), "NO FETCH 5");	/* NEEDS_SELECTED */
	session_set_selected(r.p.ss, true);
	CHECK_STREQ(rig_cmd(&r, "FETCH 1\r\n"), "OK h_fetch");
	CHECK(r.p.ran[2] == 0 && r.p.ran[3] == 1);
	rig_stop(&r);
}

static void test_tls_flags(void)
{
	struct rig r;
	rig_start(&r, false, 20);
	rig_line(&r);
	CHECK(!session_secure(r.p.ss));
	CHECK_STREQ(rig_cmd(&r, "LOGIN a b\r\n"), "NO LOGIN 3");	/* NEEDS_TLS */
	CHECK(r.p.ran[2] == 0);
	CHECK_STREQ(rig_cmd(&r, "STLS\r\n"), "OK h_stls");	/* PRE_TLS: not in TLS */
	rig_stop(&r);
	/* a loopback peer that may log in in clear (allow_plaintext_auth_loopback) */
	rig_start(&r, true, 20);
	rig_line(&r);
	CHECK(session_secure(r.p.ss));
	CHECK_STREQ(rig_cmd(&r, "LOGIN a b\r\n"), "OK h_login");
	rig_stop(&r);
}

static void test_admit_first(void)
{
	struct rig r;
	rig_start(&r, false, 20);
	rig_line(&r);
	r.p.admit_no = true;
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "NO admit");	/* before the state check */
	CHECK(r.p.refused[SESSION_REFUSED_STATE] == 0 && r.p.ran[1] == 0);
	rig_stop(&r);
}

static void test_lines_and_bad_commands(void)
{
	struct rig r;
	char longline[200];
	rig_start(&r, false, 3);
	rig_line(&r);
	memset(longline, 'A', sizeof(longline));
	memcpy(longline + sizeof(longline) - 2, "\r\n", 2);
	CHECK(write(r.client, longline, sizeof(longline)) == (ssize_t)sizeof(longline));
	CHECK_STREQ(rig_line(&r), "BAD too long");		/* once, then in sync */
	CHECK(r.p.too_long == 1);
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\n"), "BAD bare LF");
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "NO READ 0");	/* the third error */
	CHECK(!session_is_closing(r.p.ss));
	CHECK_STREQ(rig_cmd(&r, "READ\r\n"), "NO READ 0");	/* one too many */
	CHECK_STREQ(rig_line(&r), "BYE too many errors");	/* then the session ends */
	CHECK_STREQ(rig_line(&r), "");				/* closed */
	CHECK(r.list.n == 0 && r.p.ended);
	close(r.client);
	event_base_free(r.base);
}

static void test_drain(void)
{
	struct rig r;
	rig_start(&r, false, 20);
	rig_line(&r);
	session_list_drain(&r.list);
	CHECK(session_draining(r.p.ss));
	CHECK_STREQ(rig_line(&r), "BYE shutting down");
	CHECK_STREQ(rig_line(&r), "");
	CHECK(r.list.n == 0);
	close(r.client);
	event_base_free(r.base);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* a line's bytes may come slowly, but the line must end within line_timeout of its first
 * byte; silence between lines is the idle timeout's business */
static void test_line_deadline(void)
{
	struct rig r;
	struct session_limits l = { .max_line = 64, .max_input = 4096, .timeout = 60,
				    .line_timeout = 1, .max_bad_commands = 20, .max_per_ip = 10 };
	rig_limits = &l;
	rig_start(&r, false, 20);
	rig_limits = NULL;
	CHECK_STREQ(rig_line(&r), "HELLO");
	/* complete lines, 0.6 s apart, each sent in two pieces: fine */
	double t0 = now_s();
	for (int i = 0; i < 3; i++) {
		CHECK(write(r.client, "NO", 2) == 2);
		while (now_s() - t0 < 0.6 * (i + 1))
			event_base_loop(r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		CHECK_STREQ(rig_cmd(&r, "OP\r\n"), "OK h_noop");
	}
	/* a line that does not end: the timeout text, about a second after its first byte */
	t0 = now_s();
	CHECK(write(r.client, "NOO", 3) == 3);
	CHECK_STREQ(rig_line(&r), "BYE too slow");
	double took = now_s() - t0;
	CHECK(took >= 0.9 && took < 2.0);
	CHECK_STREQ(rig_line(&r), "");
	CHECK(r.list.n == 0);
	close(r.client);
	event_base_free(r.base);
}

/* max_commands_before_login before login, max_commands in all */
static void test_command_caps(void)
{
	struct rig r;
	struct session_limits l = { .max_line = 64, .max_input = 4096, .timeout = 60,
				    .login_timeout = 30, .max_commands = 4,
				    .max_commands_before_login = 2, .max_bad_commands = 20,
				    .max_per_ip = 10 };
	rig_limits = &l;
	rig_start(&r, false, 20);
	CHECK_STREQ(rig_line(&r), "HELLO");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "BYE too many commands");
	CHECK_STREQ(rig_line(&r), "");
	close(r.client);
	event_base_free(r.base);

	rig_start(&r, false, 20);
	rig_limits = NULL;
	rig_line(&r);
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	session_set_authenticated(r.p.ss, true);	/* logged in: the larger cap */
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "BYE too many commands");
	close(r.client);
	event_base_free(r.base);
}

/* before login the idle timeout is login_timeout; logged in, the protocol's */
static void test_idle_before_login(void)
{
	struct rig r;
	struct session_limits l = { .max_line = 64, .max_input = 4096, .timeout = 60,
				    .login_timeout = 1, .max_bad_commands = 20, .max_per_ip = 10 };
	rig_limits = &l;
	rig_start(&r, false, 20);
	rig_limits = NULL;
	CHECK_STREQ(rig_line(&r), "HELLO");
	double t0 = now_s();
	CHECK_STREQ(rig_line(&r), "BYE timeout");
	CHECK(now_s() - t0 < 2.0);
	close(r.client);
	event_base_free(r.base);
}

/* a full pool: the newcomer is told busy (no client holds more than it: nobody to evict) */
static void test_pool_full(void)
{
	struct rig r;
	struct session_pool pool = { .max = 1 };
	memset(&r, 0, sizeof(r));
	r.base = event_base_new();
	session_list_init(&r.list, &texts);
	session_list_set_pool(&r.list, &pool);
	struct session_limits l = { .max_line = 64, .max_input = 4096, .timeout = 60,
				    .max_bad_commands = 20, .max_per_ip = 10 };
	rig_connect(&r, &r.p, &r.client, &l);
	CHECK_STREQ(rig_line(&r), "HELLO");
	struct rig second = r;
	struct proto p2;
	memset(&p2, 0, sizeof(p2));
	second.in_len = 0;
	rig_connect(&r, &p2, &second.client, &l);
	CHECK(pool.n == 2 && pool.refused == 1);
	CHECK_STREQ(rig_line(&second), "BYE busy");
	CHECK_STREQ(rig_line(&second), "");
	CHECK(pool.n == 1 && p2.ended);
	CHECK_STREQ(rig_cmd(&r, "NOOP\r\n"), "OK h_noop");	/* the first one is unharmed */
	close(second.client);
	rig_stop(&r);
	CHECK(pool.n == 0);
}

TEST_MAIN(TEST(test_state_flags), TEST(test_auth_and_selected_flags), TEST(test_tls_flags),
	  TEST(test_admit_first), TEST(test_lines_and_bad_commands), TEST(test_drain),
	  TEST(test_line_deadline), TEST(test_command_caps), TEST(test_idle_before_login),
	  TEST(test_pool_full))
