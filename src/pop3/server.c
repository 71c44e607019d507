/* pop3/server - the POP3 session: states, command table, streaming RETR/TOP */
#include "pop3/server.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "auth/sasl.h"
#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/session.h"
#include "lib/strnum.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "pop3/parser.h"
#include "store/msgfiles.h"
#include "store/store.h"

#define POP3_SLEEP_SECS 2		/* idle after a download: the file list goes */
#define POP3_SEND_CHUNK 16384
#define POP3_COPY_MAX (256 * 1024)	/* larger files as they are: sendfile (no copy) */		/* the limits are in the configuration (pop3_*) */

enum pop3_state {
	POP3_S_AUTHORIZATION,
	POP3_S_AUTH_SASL,	/* reading SASL responses */
	POP3_S_TRANSACTION,
};

static const char *const pop3_state_names[] = { "authorization", "sasl", "transaction" };

static const struct session_texts pop3_texts = {
	.bare_lf = "-ERR Line must end with CRLF",
	.too_many_errors = "-ERR Too many errors, closing connection",
	/* RFC 1939 §3: the autologout timer ends the session without UPDATE */
	.timeout = "-ERR Autologout; idle for too long",
	.too_slow = "-ERR Too slow, closing connection",
	.too_many_connections = "-ERR [SYS/TEMP] Too many connections from your address",
	.busy = "-ERR [SYS/TEMP] Too many connections, try again later",
	.too_many_commands = "-ERR Too many commands, closing connection",
	.drain = "-ERR Server shutting down",
};

/* A message being streamed (RETR or TOP): file bytes -> CRLF, dot-stuffed. */
struct pop3_send {
	int fd;
	bool line_start;
	bool prev_cr;
	bool top;		/* stop after the header and body_lines lines */
	bool in_body;
	bool header_line_empty;	/* the current header line has no content so far */
	uint64_t body_lines;
	uint64_t file_size;	/* > 0: the file goes out as it is (send_file) */
	bool copy_whole;	/* ... read into the output in one piece (small files) */
	bool file_queued;	/* ... and is in the output now */
};

/* A message of the maildrop: all a session keeps of it (16 bytes: 1,000 messages cost 16 KB;
 * the index's connection and snapshot are let go between downloads, store_sleep). */
struct pop3_msg {
	uint64_t size;
	uint32_t uid;
	bool deleted;
};

struct pop3_session {
	struct session *ss;		/* the core: lines, replies, state, limits */
	struct pop3_server *srv;
	struct conn *conn;		/* session_conn(ss) */
	unsigned auth_failures;

	char *user;			/* USER given, not yet PASS */
	struct sasl_state sasl;
	bool sasl_active;
	struct login *login;		/* a password check in flight */

	/* TRANSACTION */
	char *account;
	struct store *store;
	struct store_mailbox *mb;
	struct pop3_msg *msgs;		/* the maildrop as it was at login */
	size_t n_msgs;
	struct store_files *files;	/* the message files, while a download goes on */
	struct event *sleep_ev;		/* lets go of the file list once a download is over */
	uint32_t uidvalidity;

	bool sending_active;
	struct pop3_send send;
	char listing;			/* 'L' LIST, 'U' UIDL: a listing being streamed */
	size_t list_next;		/* ... the next message it reaches */
};

/* msg_arg - argument 0 as a message number; NULL and a reply sent when unusable */
static struct pop3_msg *msg_arg(struct pop3_session *s, const struct pop3_command_line *c,
				 size_t *index_r)
{
	uint64_t n;
	if (c->n_args > 1 + (strcmp(c->verb, "TOP") == 0) ||
	    pop3_number_parse(c, 0, UINT32_MAX, &n) < 0) {
		session_reply(s->ss, "-ERR Invalid message number");
		session_bad_command(s->ss);
		return NULL;
	}
	if (n == 0 || n > s->n_msgs) {
		session_reply(s->ss, "-ERR No such message");
		return NULL;
	}
	if (s->msgs[n - 1].deleted) {
		session_reply(s->ss, "-ERR Message %llu already deleted", (unsigned long long)n);
		return NULL;
	}
	*index_r = (size_t)(n - 1);
	return &s->msgs[n - 1];
}

/* ---- login ------------------------------------------------------------------------ */

/* store_sleep_cb - a while after the last download: let go of the file list (and of the
 * index's connection, if a fallback woke it) */
static void store_sleep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	if (s->sending_active)
		return;
	store_files_free(&s->files);
	store_sleep(s->store);
}

/* store_ready - the store awake for a command that reads it; false (logged) when not */
static bool store_ready(struct pop3_session *s)
{
	char *err = NULL;
	if (s->sleep_ev != NULL)
		evtimer_del(s->sleep_ev);
	if (store_wake(s->store, &err) == 0)
		return true;
	log_warnx("%s: wake: %s", session_id(s->ss), err ? err : "?");
	free(err);
	return false;
}

/* login_open - take the maildrop: lock, snapshot. Replies itself; true on success. */
static bool login_open(struct pop3_session *s, const char *account)
{
	char *err = NULL;
	const struct store_msg *msgs;
	size_t n;
	if (store_open(s->srv->cfg->data_dir, account, &s->store, &err) < 0 ||
	    store_mailbox_open(s->store, "INBOX", &s->mb, &err) < 0) {
		log_warnx("%s: %s: %s", session_id(s->ss), account,
			  err ? err : "cannot open mailbox");
		free(err);
		session_reply(s->ss, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later");
		goto fail;
	}
	int r = store_lock_exclusive(s->mb, &err);
	if (r <= 0) {
		if (r < 0) {
			log_warnx("%s: %s: %s", session_id(s->ss), account,
				  err ? err : "lock failed");
			free(err);
			session_reply(s->ss,
				      "-ERR [SYS/TEMP] Cannot lock the mailbox, try again later");
		} else {
			session_reply(s->ss,
				      "-ERR [IN-USE] Mailbox is in use by another POP3 session");
		}
		goto fail;
	}
	if (store_mailbox_messages(s->mb, &msgs, &n, &err) < 0) {
		log_warnx("%s: %s: %s", session_id(s->ss), account, err ? err : "listing failed");
		free(err);
		session_reply(s->ss, "-ERR [SYS/TEMP] Cannot read the mailbox, try again later");
		goto fail;
	}
	/* Our own copy: the session works on the maildrop as it was at login. */
	s->msgs = xcalloc(n ? n : 1, sizeof(*s->msgs));
	for (size_t i = 0; i < n; i++)
		s->msgs[i] = (struct pop3_msg){ .size = msgs[i].size, .uid = msgs[i].uid };
	s->n_msgs = n;
	s->uidvalidity = store_mailbox_uidvalidity(s->mb);
	s->account = xstrdup(account);
	session_set_state(s->ss, POP3_S_TRANSACTION);
	session_set_authenticated(s->ss, true);	/* the long timeout and command cap again */
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += s->msgs[i].size;
	log_info("%s: login user=%s messages=%zu size=%llu", session_id(s->ss), account, n,
		 (unsigned long long)total);
	session_reply(s->ss, "+OK Logged in, %zu messages (%llu octets)", n,
		      (unsigned long long)total);
	/* the snapshot is copied: the index's connection waits for a RETR, TOP or QUIT */
	s->sleep_ev = evtimer_new(s->srv->base, store_sleep_cb, s);
	store_sleep(s->store);
	return true;
fail:
	store_mailbox_close(&s->mb);
	store_close(&s->store);
	return false;
}

/* login_done - the outcome of the password check (auth/login) */
static void login_done(void *ctx, enum login_result r, const char *user)
{
	struct pop3_session *s = ctx;
	login_count(METRICS_POP3, r);
	if (session_is_closing(s->ss))
		return;		/* timed out meanwhile */
	if (r == LOGIN_OK) {
		login_open(s, user);
	} else if (r == LOGIN_TEMPFAIL) {
		session_reply(s->ss, "-ERR [SYS/TEMP] Authentication temporarily unavailable");
	} else if (++s->auth_failures >= s->srv->cfg->pop3_max_auth_failures) {
		session_close(s->ss, "-ERR [AUTH] Authentication failed; too many failures");
	} else {
		session_reply(s->ss, "-ERR [AUTH] Authentication failed");
	}
	if (session_draining(s->ss) && session_state(s->ss) == POP3_S_AUTHORIZATION &&
	    !session_is_closing(s->ss))
		session_close(s->ss, "-ERR Server shutting down");
	session_resume(s->ss);
}

/* login - check the credentials off the loop (delay, hashing), then open the maildrop */
static void login(struct pop3_session *s, const char *user, const char *pass)
{
	session_suspend(s->ss);
	login_start(s->srv->login, conn_peer(s->conn), session_id(s->ss), user, pass, login_done, s,
		    &s->login);
}

static bool require_tls_for_login(struct pop3_session *s)
{
	if (session_secure(s->ss))
		return true;
	session_reply(s->ss,
		      "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first");
	return false;
}

static void cmd_user(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	if (c->rest == NULL || strlen(c->rest) > 255) {
		session_reply(s->ss, "-ERR Syntax: USER name");
		session_bad_command(s->ss);
		return;
	}
	free(s->user);
	s->user = xstrdup(c->rest);
	session_reply(s->ss, "+OK Send PASS");
}

static void cmd_pass(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	if (s->user == NULL) {
		session_reply(s->ss, "-ERR Send USER first");
		session_bad_command(s->ss);
		return;
	}
	char *user = s->user;
	s->user = NULL;
	login(s, user, c->rest ? c->rest : "");
	free(user);
}

static void sasl_stop(struct pop3_session *s)
{
	if (s->sasl_active)
		sasl_free(&s->sasl);
	s->sasl_active = false;
	if (session_state(s->ss) == POP3_S_AUTH_SASL)
		session_set_state(s->ss, POP3_S_AUTHORIZATION);
}

/* sasl_feed - one SASL response (NULL: no initial response) */
static void sasl_feed(struct pop3_session *s, const char *response)
{
	const char *text;
	int r = login_sasl_feed(s->srv->login, &s->sasl, response, conn_peer(s->conn),
				session_id(s->ss), login_done, s, &s->login, &text);
	if (r == 0) {
		session_set_state(s->ss, POP3_S_AUTH_SASL);
		session_reply(s->ss, "+ %s", text);
		return;
	}
	sasl_stop(s);
	if (r == 1) {
		session_suspend(s->ss);	/* until login_done */
		return;
	}
	session_reply(s->ss, r == -2 ? "-ERR Authentication cancelled" : "-ERR %s", text);
	session_bad_command(s->ss);
}

static void cmd_auth(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	if (c->n_args == 0) {
		/* the mechanism list many clients ask for (before RFC 5034) */
		session_reply(s->ss, "+OK\r\nPLAIN\r\nLOGIN\r\n.");
		return;
	}
	if (!require_tls_for_login(s))
		return;
	char mech[16];
	enum sasl_mech m;
	snprintf(mech, sizeof(mech), "%.*s", (int)(c->args_len[0] < 15 ? c->args_len[0] : 15),
		 c->args[0]);
	const char *ir = c->n_args == 2 ? c->args[1] : NULL;
	if (c->n_args > 2 || c->args_len[0] >= sizeof(mech) || sasl_mech_parse(mech, &m) < 0) {
		session_reply(s->ss, "-ERR Unsupported authentication mechanism");
		session_bad_command(s->ss);
		return;
	}
	sasl_begin(&s->sasl, m);
	s->sasl_active = true;
	sasl_feed(s, ir);
}

static void cmd_capa(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	conn_printf(s->conn, "+OK Capability list follows\r\nTOP\r\nUIDL\r\n");
	/* USER and SASL only where they may be used: a client trusting CAPA must not send
	 * a password in clear only to have it refused (RFC 2595 §4) */
	if (session_secure(s->ss))
		conn_printf(s->conn, "USER\r\nSASL PLAIN LOGIN\r\n");
	conn_printf(s->conn, "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (!conn_is_tls(s->conn) && s->srv->tls != NULL &&
	    session_state(s->ss) != POP3_S_TRANSACTION)
		conn_printf(s->conn, "STLS\r\n");
	conn_printf(s->conn, "IMPLEMENTATION Tern\r\n.\r\n");
}

static void cmd_stls(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	if (s->srv->tls == NULL) {
		session_reply(s->ss, "-ERR TLS not available");
		return;
	}
	session_reply(s->ss, "+OK Begin TLS negotiation");
	free(s->user);
	s->user = NULL;
	if (conn_starttls(s->conn, s->srv->tls) < 0) {
		session_close(s->ss, NULL);
	}
}

/* ---- transaction -------------------------------------------------------------------- */

static void cmd_stat(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	size_t n = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (!s->msgs[i].deleted) {
			n++;
			total += s->msgs[i].size;
		}
	}
	session_reply(s->ss, "+OK %zu %llu", n, (unsigned long long)total);
}

/* list_pump - stream the LIST or UIDL lines in POP3_SEND_CHUNK pieces while the output has
 * room (a 100,000-message maildrop does not make a 2 MB reply in memory), then "." */
static void list_pump(struct pop3_session *s)
{
	char b[POP3_SEND_CHUNK + 64];
	size_t o = 0;
	while (s->list_next < s->n_msgs) {
		if (o >= POP3_SEND_CHUNK) {
			conn_write(s->conn, b, o);
			o = 0;
			if (conn_output_full(s->conn))
				return;		/* resumed when the client has read */
		}
		size_t i = s->list_next++;
		const struct pop3_msg *m = &s->msgs[i];
		if (m->deleted)
			continue;
		int n = s->listing == 'L'
			? snprintf(b + o, sizeof(b) - o, "%zu %llu\r\n", i + 1,
				   (unsigned long long)m->size)
			: snprintf(b + o, sizeof(b) - o, "%zu %u.%u\r\n", i + 1, s->uidvalidity,
				   m->uid);
		o += (size_t)n;
	}
	memcpy(b + o, ".\r\n", 3);
	conn_write(s->conn, b, o + 3);
	s->listing = 0;
	s->sending_active = false;
}

/* list_start - after the +OK: the listing goes out through pop3_on_raw */
static void list_start(struct pop3_session *s, char kind)
{
	s->listing = kind;
	s->list_next = 0;
	s->send.fd = -1;
	s->sending_active = true;
	session_set_raw(s->ss, true);
	session_deadline_start(s->ss);	/* a reader too slow for transfer_min_rate is dropped */
}

static void cmd_list(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	size_t i;
	if (c->n_args > 0) {
		struct pop3_msg *m = msg_arg(s, c, &i);
		if (m != NULL)
			session_reply(s->ss, "+OK %zu %llu", i + 1, (unsigned long long)m->size);
		return;
	}
	session_reply(s->ss, "+OK scan listing follows");
	list_start(s, 'L');
}

static void cmd_uidl(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	size_t i;
	/* "<uidvalidity>.<uid>": stable across sessions, never reused (UIDs never are) */
	if (c->n_args > 0) {
		struct pop3_msg *m = msg_arg(s, c, &i);
		if (m != NULL)
			session_reply(s->ss, "+OK %zu %u.%u", i + 1, s->uidvalidity, m->uid);
		return;
	}
	session_reply(s->ss, "+OK unique-id listing follows");
	list_start(s, 'U');
}

static void cmd_dele(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	size_t i;
	if (msg_arg(s, c, &i) == NULL)
		return;
	s->msgs[i].deleted = true;
	session_reply(s->ss, "+OK Message %zu deleted", i + 1);
}

static void cmd_rset(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	for (size_t i = 0; i < s->n_msgs; i++)
		s->msgs[i].deleted = false;
	session_reply(s->ss, "+OK %zu messages", s->n_msgs);
}

static void cmd_noop(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	session_reply(s->ss, "+OK");
}

/* no_dot_lines - no line of b (n > 0 bytes, after a byte *prev) starts with "." (nothing to
 * byte-stuff); *prev becomes b's last byte */
static bool no_dot_lines(const char *b, size_t n, char *prev)
{
	if (*prev == '\n' && b[0] == '.')
		return false;
	for (const char *p = b; (p = memchr(p, '\n', n - (size_t)(p - b) - 1)) != NULL; p++)
		if (p[1] == '.')
			return false;
	*prev = b[n - 1];
	return true;
}

/* sendable_as_is - the file (size bytes) is its own POP3 form: CRLF line ends (the caller
 * knows), ends with CRLF, and no line starts with "." (nothing to byte-stuff) */
static bool sendable_as_is(int fd, uint64_t size)
{
	char b[POP3_SEND_CHUNK];
	char prev = '\n';
	uint64_t off = 0;
	while (off < size) {
		ssize_t n = pread(fd, b, sizeof(b), (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || !no_dot_lines(b, (size_t)n, &prev))
			return false;
		off += (uint64_t)n;
	}
	return size >= 2 && prev == '\n';
}

/* copy_whole - a small file read straight into the output in one piece, if it is its own
 * POP3 form (else nothing is written: -1, and it is streamed). With the +OK before it and
 * the "." after it, the reply leaves in one write: a sendfile between two writes would
 * wake a client waiting for it three times, which costs more than the copy saves. */
static int copy_whole(struct pop3_session *s)
{
	struct pop3_send *x = &s->send;
	size_t size = (size_t)x->file_size, got = 0;
	/* one byte more than the served size: a file of exactly that size has CRLF ends (a bare
	 * LF would make it shorter), which spares an fstat */
	char *p = conn_write_reserve(s->conn, size + 1);
	if (p == NULL)
		return -1;
	while (got < size + 1) {
		ssize_t n = pread(x->fd, p + got, size + 1 - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == size)
			break;	/* short by the extra byte: a regular file reads short only at its end */
	}
	char prev = '\n';
	if (got != size || size < 2 || !no_dot_lines(p, size, &prev) || prev != '\n') {
		conn_write_commit(s->conn, 0);
		return -1;
	}
	conn_write_commit(s->conn, size);
	close(x->fd);
	return 0;
}

/* send_file - the whole file into the output (small: one copy; large: sendfile, no copy),
 * then the end */
static void send_file(struct pop3_session *s)
{
	struct pop3_send *x = &s->send;
	if (!x->file_queued) {
		int r = x->copy_whole ? copy_whole(s) : conn_send_file(s->conn, x->fd, 0,
									 x->file_size);
		if (r < 0) {
			x->file_size = 0;	/* not as it is after all: stream it */
			return;
		}
		x->fd = -1;	/* closed, or the output's now */
		x->file_queued = true;
		conn_write(s->conn, ".\r\n", 3);
	}
	/* done, as the copying path is, once the output has room for the next command */
	if (!conn_output_full(s->conn))
		s->sending_active = false;
}

/* send_pump - stream the message being sent until done or the output is full */
static void send_pump(struct pop3_session *s)
{
	struct pop3_send *x = &s->send;
	if (x->file_size > 0)
		send_file(s);
	if (x->file_size > 0)
		return;
	char in[POP3_SEND_CHUNK];
	char out[POP3_SEND_CHUNK * 3 + 8];
	while (s->sending_active) {
		if (conn_output_full(s->conn))
			return;		/* resumed when the client has read */
		ssize_t n = read(x->fd, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			/* never end a cut-short message with "." : the client would take it
			 * for whole and might DELE it */
			log_warn("%s: reading message", session_id(s->ss));
			close(x->fd);
			x->fd = -1;
			s->sending_active = false;
			session_close(s->ss, "-ERR [SYS/TEMP] Error reading the message");
			return;
		}
		bool done = n == 0;
		size_t o = 0;
		for (ssize_t i = 0; i < n && !done; i++) {
			char c = in[i];
			if (x->line_start && c == '.')
				out[o++] = '.';		/* byte-stuffing, RFC 1939 §3 */
			if (c == '\n') {
				if (!x->prev_cr)
					out[o++] = '\r';	/* LF-only files become CRLF */
				out[o++] = '\n';
				x->prev_cr = false;
				x->line_start = true;
				if (!x->top)
					continue;
				if (!x->in_body) {
					if (x->header_line_empty) {
						x->in_body = true;	/* the blank line */
						if (x->body_lines == 0)
							done = true;
					}
					x->header_line_empty = true;
				} else if (--x->body_lines == 0) {
					done = true;
				}
				continue;
			}
			out[o++] = c;
			x->line_start = false;
			x->prev_cr = c == '\r';
			if (c != '\r')
				x->header_line_empty = false;
		}
		if (done && !x->line_start) {
			if (x->prev_cr)
				out[o++] = '\n';
			else {
				out[o++] = '\r';
				out[o++] = '\n';
			}
		}
		if (done) {
			out[o++] = '.';
			out[o++] = '\r';
			out[o++] = '\n';
		}
		conn_write(s->conn, out, o);
		if (done) {
			close(x->fd);
			x->fd = -1;
			s->sending_active = false;
		}
	}
}

/* files_ready - the file list of a download: loaded at its first RETR or TOP (one index
 * query), after which the store sleeps again; the list goes POP3_SLEEP_SECS after the last
 * download (store_sleep_cb), so an idle session does not hold it. False when it cannot be
 * had (logged; each message is then looked up in the index). */
static bool files_ready(struct pop3_session *s)
{
	if (s->files != NULL)
		return true;
	if (!store_ready(s))
		return false;
	char *err = NULL;
	if (store_files_load(s->mb, &s->files, &err) < 0) {
		log_warnx("%s: file list: %s", session_id(s->ss), err ? err : "?");
		free(err);
		return false;
	}
	store_sleep(s->store);
	return true;
}

/* msg_open - open message i: from the file list (no SQLite), else through the index (a file
 * renamed meanwhile, by an IMAP flag change, or a list that could not be loaded).
 * 0 with *fd_r, or -1 (logged). */
static int msg_open(struct pop3_session *s, size_t i, int *fd_r)
{
	uint32_t uid = s->msgs[i].uid;
	if (files_ready(s) && store_files_open(s->files, uid, fd_r) == 0)
		return 0;
	char *err = NULL;
	bool crlf;
	if (!store_ready(s))
		return -1;
	if (store_msg_open(s->mb, uid, fd_r, &crlf, &err) < 0) {
		log_warnx("%s: message %u: %s", session_id(s->ss), uid, err ? err : "open failed");
		free(err);
		return -1;
	}
	return 0;
}

/* file_is_crlf - the file has CRLF line ends: its size is the served size (each bare LF
 * adds one to that) */
static bool file_is_crlf(int fd, uint64_t served)
{
	struct stat st;
	return fstat(fd, &st) == 0 && (uint64_t)st.st_size == served;
}

/* send_start - RETR and TOP: reply +OK and stream the message */
static void send_start(struct pop3_session *s, size_t i, bool top, uint64_t lines)
{
	int fd;
	if (msg_open(s, i, &fd) < 0) {
		session_reply(s->ss, "-ERR [SYS/TEMP] Cannot read message %zu", i + 1);
		return;
	}
	if (!top)
		TRACE(NULL, "retr", "user=%s folder=INBOX uidvalidity=%u uid=%u session=%s client=%s",
		      s->account, s->uidvalidity, s->msgs[i].uid, session_id(s->ss),
		      conn_peer_ip(s->conn));
	if (top)
		session_reply(s->ss, "+OK");
	else
		session_reply(s->ss, "+OK %llu octets", (unsigned long long)s->msgs[i].size);
	memset(&s->send, 0, sizeof(s->send));
	s->send.fd = fd;
	s->send.line_start = true;
	s->send.top = top;
	s->send.header_line_empty = true;
	s->send.body_lines = lines;
	uint64_t size = s->msgs[i].size;
	if (!top && size <= POP3_COPY_MAX) {
		/* its size (CRLF ends) and form are checked as it is copied: no fstat */
		s->send.file_size = size;
		s->send.copy_whole = true;
	} else if (!top && file_is_crlf(fd, size) && !conn_is_tls(s->conn) &&
		   !conn_is_compressed(s->conn) && sendable_as_is(fd, size)) {
		s->send.file_size = size;
	}
	s->sending_active = true;
	session_set_raw(s->ss, true);	/* pop3_on_raw streams it */
	session_deadline_start(s->ss);	/* a reader too slow for transfer_min_rate is dropped */
}

static void cmd_retr(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	size_t i;
	if (msg_arg(s, c, &i) != NULL)
		send_start(s, i, false, 0);

}

static void cmd_top(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	const struct pop3_command_line *c = a;
	size_t i;
	uint64_t lines;
	if (c->n_args != 2) {
		session_reply(s->ss, "-ERR Syntax: TOP msg n");
		session_bad_command(s->ss);
		return;
	}
	if (pop3_number_parse(c, 1, UINT64_MAX / 2, &lines) < 0) {
		session_reply(s->ss, "-ERR Invalid line count");
		session_bad_command(s->ss);
		return;
	}
	if (msg_arg(s, c, &i) != NULL)
		send_start(s, i, true, lines);
}

static void cmd_quit(void *ctx, const void *a)
{
	struct pop3_session *s = ctx;
	if (session_state(s->ss) != POP3_S_TRANSACTION) {
		session_close(s->ss, "+OK Bye");
		return;
	}
	/* UPDATE state: only now do deletions take effect (RFC 1939 §6). */
	uint32_t *uids = xcalloc(s->n_msgs ? s->n_msgs : 1, sizeof(uint32_t));
	size_t n = 0;
	for (size_t i = 0; i < s->n_msgs; i++)
		if (s->msgs[i].deleted)
			uids[n++] = s->msgs[i].uid;
	char *err = NULL;
	if (n > 0 && !store_ready(s)) {
		free(uids);
		session_close(s->ss, "-ERR [SYS/TEMP] Some deleted messages not removed");
		return;
	}
	if (n > 0 && store_expunge(s->mb, uids, n, &err) < 0) {
		log_warnx("%s: expunge: %s", session_id(s->ss), err ? err : "failed");
		free(err);
		free(uids);
		session_close(s->ss, "-ERR [SYS/TEMP] Some deleted messages not removed");
		return;
	}
	for (size_t k = 0; trace_on && k < n; k++)
		trace_event(NULL, "dele", "user=%s folder=INBOX uidvalidity=%u uid=%u session=%s",
			    s->account, s->uidvalidity, uids[k], session_id(s->ss));
	free(uids);
	/* let the next session in now, not once the goodbye has drained */
	store_mailbox_close(&s->mb);
	log_info("%s: logout user=%s deleted=%zu", session_id(s->ss), s->account, n);
	char text[96];
	snprintf(text, sizeof(text), "+OK Tern POP3 server signing off (%zu messages deleted)", n);
	session_close(s->ss, text);
}

/* The command table: the dispatcher (lib/session) checks the flags before a handler runs
 * and pop3_refuse answers a refusal. */
#define C_AUTHZ SESSION_CMD_STATE(POP3_S_AUTHORIZATION)
#define C_TRANS SESSION_CMD_STATE(POP3_S_TRANSACTION)
static const struct session_command pop3_commands[] = {
	{ "CAPA", cmd_capa, C_AUTHZ | C_TRANS },
	{ "USER", cmd_user, C_AUTHZ | SESSION_CMD_NEEDS_TLS },
	{ "PASS", cmd_pass, C_AUTHZ | SESSION_CMD_NEEDS_TLS },
	{ "AUTH", cmd_auth, C_AUTHZ },	/* without arguments (a mechanism list) also in clear */
	{ "STLS", cmd_stls, C_AUTHZ | SESSION_CMD_PRE_TLS },
	{ "QUIT", cmd_quit, C_AUTHZ | C_TRANS },
	{ "NOOP", cmd_noop, C_TRANS },
	{ "STAT", cmd_stat, C_TRANS },
	{ "LIST", cmd_list, C_TRANS },
	{ "UIDL", cmd_uidl, C_TRANS },
	{ "RETR", cmd_retr, C_TRANS },
	{ "TOP", cmd_top, C_TRANS },
	{ "DELE", cmd_dele, C_TRANS },
	{ "RSET", cmd_rset, C_TRANS },
};

static void pop3_refuse(void *ctx, const struct session_command *c, enum session_refusal why)
{
	struct pop3_session *s = ctx;
	switch (why) {
	case SESSION_REFUSED_NEEDS_TLS:
		require_tls_for_login(s);
		return;
	case SESSION_REFUSED_TLS_ACTIVE:
		session_reply(s->ss, "-ERR TLS already active");
		break;
	default:
		session_reply(s->ss, "-ERR %s not allowed in the %s state", c->name,
			      pop3_state_names[session_state(s->ss)]);
		break;
	}
	session_bad_command(s->ss);
}

/* pop3_admit - shutting down: a session that has not logged in goes now */
static bool pop3_admit(void *ctx, const struct session_command *c)
{
	struct pop3_session *s = ctx;
	if (session_draining(s->ss) && session_state(s->ss) != POP3_S_TRANSACTION &&
	    (c->flags & C_AUTHZ)) {
		session_close(s->ss, "-ERR Server shutting down");
		return false;
	}
	return true;
}

static const struct session_dispatcher pop3_dispatcher = {
	.commands = pop3_commands,
	.n_commands = sizeof(pop3_commands) / sizeof(pop3_commands[0]),
	.admit = pop3_admit,
	.refuse = pop3_refuse,
};

/* pop3_on_line - a command line, or a SASL response while AUTH is in progress */
static void pop3_on_line(void *ctx, char *line, size_t len)
{
	struct pop3_session *s = ctx;
	if (line == NULL) {	/* too long: skipped */
		if (session_state(s->ss) == POP3_S_AUTH_SASL)
			sasl_stop(s);
		session_reply(s->ss, "-ERR Line too long");
		return;
	}
	if (session_state(s->ss) == POP3_S_AUTH_SASL) {
		sasl_feed(s, line);
		return;
	}
	struct pop3_command_line cl;
	const char *err;
	if (pop3_command_parse(line, len, &cl, &err) < 0) {
		session_reply(s->ss, "-ERR %s", err);
		session_bad_command(s->ss);
		return;
	}
	if (session_dispatch(s->ss, &pop3_dispatcher, cl.verb, strlen(cl.verb), &cl))
		return;
	session_reply(s->ss, "-ERR Unknown command");
	session_bad_command(s->ss);
}

/* pop3_on_raw - stream the message of a RETR or TOP; then back to commands */
static void pop3_on_raw(void *ctx)
{
	struct pop3_session *s = ctx;
	if (s->listing)
		list_pump(s);
	else
		send_pump(s);
	if (s->sending_active || session_is_closing(s->ss))
		return;
	session_set_raw(s->ss, false);
	if (session_draining(s->ss))
		session_close(s->ss, "-ERR Server shutting down");
	else if (s->sleep_ev != NULL) {	/* the next RETR usually follows at once */
		struct timeval tv = { POP3_SLEEP_SECS, 0 };
		evtimer_add(s->sleep_ev, &tv);
	}
}

/* pop3_on_end - the POP3 part of the one teardown; a dropped connection deletes nothing */
static void pop3_on_end(void *ctx)
{
	struct pop3_session *s = ctx;
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_POP3, -1);
	if (s->sending_active && s->send.fd >= 0)
		close(s->send.fd);
	login_cancel(&s->login);
	sasl_stop(s);
	store_mailbox_close(&s->mb);
	store_close(&s->store);
	store_files_free(&s->files);
	free(s->msgs);
	if (s->sleep_ev != NULL)
		event_free(s->sleep_ev);
	free(s->account);
	free(s->user);
	free(s);
}

static const struct session_ops pop3_session_ops = {
	.state_names = pop3_state_names,
	.on_line = pop3_on_line,
	.on_raw = pop3_on_raw,
	.on_end = pop3_on_end,	/* drain: any session not streaming nor logging in */
};

void pop3_server_init(struct pop3_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct login_pool *login)
{
	*srv = (struct pop3_server){
		.base = base, .cfg = cfg, .tls = tls, .accounts = accounts, .login = login
	};
	session_list_init(&srv->sessions, &pop3_texts);
}

void pop3_session_start(struct pop3_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->send.fd = -1;
	metrics_count(METRICS_SESSIONS + METRICS_POP3);
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_POP3, 1);
	s->ss = session_new(&srv->sessions, srv->base, fd, peer, peerlen,
			    role == ROLE_POP3S ? srv->tls : NULL, &srv->cfg->session_limits[role],
			    &pop3_session_ops, s, 'p', config_role_name(role),
			    "+OK Tern POP3 server ready");
	s->conn = session_conn(s->ss);
}

void pop3_server_drain(struct pop3_server *srv)
{
	session_list_drain(&srv->sessions);
}

void pop3_server_free(struct pop3_server *srv)
{
	session_list_free(&srv->sessions);
}
