/* pop3/server - the POP3 session: states, command table, streaming RETR/TOP */
#include "pop3/server.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/sasl.h"
#include "auth/throttle.h"
#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/linereader.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"
#include "pop3/parser.h"
#include "store/store.h"

#define POP3_MAX_INPUT (64 * 1024)
#define POP3_MAX_LINE 4096		/* commands (RFC 2449: 255) and SASL responses */
#define POP3_TIMEOUT 600		/* RFC 1939 §3: at least 10 minutes */
#define POP3_MAX_BAD 20
#define POP3_MAX_AUTH_FAILURES 3
#define POP3_SEND_CHUNK 16384

enum pop3_state {
	POP3_S_AUTHORIZATION,
	POP3_S_AUTH_SASL,	/* reading SASL responses */
	POP3_S_TRANSACTION,
	POP3_S_CLOSING,
};

static const char *const pop3_state_names[] = { "authorization", "sasl", "transaction",
						"closing" };

/* A message being streamed (RETR or TOP): file bytes -> CRLF, dot-stuffed. */
struct pop3_send {
	int fd;
	bool crlf;		/* the file already has CRLF ends */
	bool line_start;
	bool prev_cr;
	bool top;		/* stop after the header and body_lines lines */
	bool in_body;
	bool header_line_empty;	/* the current header line has no content so far */
	uint64_t body_lines;
};

struct pop3_session {
	LIST_ENTRY(pop3_session) link;
	struct pop3_server *srv;
	struct conn *conn;
	enum pop3_state state;
	char id[24];
	struct linereader lr;
	buf line;
	unsigned bad_commands;
	unsigned auth_failures;

	char *user;			/* USER given, not yet PASS */
	struct sasl_state sasl;
	bool sasl_active;
	struct event *delay;
	char *pending_user, *pending_pass;	/* credentials waiting out the delay */

	/* TRANSACTION */
	char *account;
	struct store *store;
	struct store_mailbox *mb;
	struct store_msg *msgs;		/* the maildrop as it was at login */
	bool *deleted;
	size_t n_msgs;
	uint32_t uidvalidity;

	bool sending_active;
	struct pop3_send send;
};

static void session_end(struct pop3_session *s);

static void reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reply(struct pop3_session *s, const char *fmt, ...)
{
	char line[600];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	conn_write(s->conn, line, (size_t)n);
}

static void set_state(struct pop3_session *s, enum pop3_state st)
{
	if (s->state != st)
		log_debug("%s: state %s -> %s", s->id, pop3_state_names[s->state],
			  pop3_state_names[st]);
	s->state = st;
}

static void close_with(struct pop3_session *s, const char *text)
{
	reply(s, "%s", text);
	set_state(s, POP3_S_CLOSING);
	conn_close_after_flush(s->conn);
}

static bool bad_command(struct pop3_session *s)
{
	if (++s->bad_commands <= POP3_MAX_BAD)
		return false;
	close_with(s, "-ERR Too many errors, closing connection");
	return true;
}

static bool auth_allowed(const struct pop3_session *s)
{
	return conn_is_tls(s->conn) ||
	       (s->srv->cfg->allow_plaintext_auth_loopback && conn_peer_is_loopback(s->conn));
}

/* msg_arg - argument 0 as a message number; NULL and a reply sent when unusable */
static struct store_msg *msg_arg(struct pop3_session *s, const struct pop3_command_line *c,
				 size_t *index_r)
{
	uint64_t n;
	if (c->n_args > 1 + (strcmp(c->verb, "TOP") == 0) ||
	    pop3_number_parse(c, 0, UINT32_MAX, &n) < 0) {
		reply(s, "-ERR Invalid message number");
		bad_command(s);
		return NULL;
	}
	if (n == 0 || n > s->n_msgs) {
		reply(s, "-ERR No such message");
		return NULL;
	}
	if (s->deleted[n - 1]) {
		reply(s, "-ERR Message %llu already deleted", (unsigned long long)n);
		return NULL;
	}
	*index_r = (size_t)(n - 1);
	return &s->msgs[n - 1];
}

/* ---- login ------------------------------------------------------------------------ */

/* login_open - take the maildrop: lock, snapshot. Replies itself; true on success. */
static bool login_open(struct pop3_session *s, const char *account)
{
	char *err = NULL;
	const struct store_msg *msgs;
	size_t n;
	if (store_open(s->srv->cfg->data_dir, account, &s->store, &err) < 0 ||
	    store_mailbox_open(s->store, "INBOX", &s->mb, &err) < 0) {
		log_warnx("%s: %s: %s", s->id, account, err ? err : "cannot open mailbox");
		free(err);
		reply(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later");
		goto fail;
	}
	int r = store_lock_exclusive(s->mb, &err);
	if (r <= 0) {
		if (r < 0) {
			log_warnx("%s: %s: %s", s->id, account, err ? err : "lock failed");
			free(err);
			reply(s, "-ERR [SYS/TEMP] Cannot lock the mailbox, try again later");
		} else {
			reply(s, "-ERR [IN-USE] Mailbox is in use by another POP3 session");
		}
		goto fail;
	}
	if (store_mailbox_messages(s->mb, &msgs, &n, &err) < 0) {
		log_warnx("%s: %s: %s", s->id, account, err ? err : "listing failed");
		free(err);
		reply(s, "-ERR [SYS/TEMP] Cannot read the mailbox, try again later");
		goto fail;
	}
	/* Our own copy: the session works on the maildrop as it was at login. */
	s->msgs = xcalloc(n ? n : 1, sizeof(*s->msgs));
	if (n > 0)
		memcpy(s->msgs, msgs, n * sizeof(*msgs));
	s->deleted = xcalloc(n ? n : 1, sizeof(bool));
	s->n_msgs = n;
	s->uidvalidity = store_mailbox_uidvalidity(s->mb);
	s->account = xstrdup(account);
	set_state(s, POP3_S_TRANSACTION);
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += s->msgs[i].size;
	log_info("%s: login user=%s messages=%zu size=%llu", s->id, account, n,
		 (unsigned long long)total);
	reply(s, "+OK Logged in, %zu messages (%llu octets)", n, (unsigned long long)total);
	return true;
fail:
	store_mailbox_close(&s->mb);
	store_close(&s->store);
	return false;
}

/* login_check - verify credentials (after any failed-login delay) and open the maildrop */
static void login_check(struct pop3_session *s, const char *user, const char *pass)
{
	char lower[512];
	if (strlen(user) >= sizeof(lower)) {
		reply(s, "-ERR [AUTH] Authentication failed");
		return;
	}
	snprintf(lower, sizeof(lower), "%s", user);
	for (char *p = lower; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	int r = accounts_verify(s->srv->accounts, lower, pass);
	if (r == 1) {
		throttle_succeeded(conn_peer(s->conn), lower);
		login_open(s, lower);
		return;
	}
	if (r < 0) {
		reply(s, "-ERR [SYS/TEMP] Authentication temporarily unavailable");
		return;
	}
	char safe[128];
	throttle_failed(conn_peer(s->conn), lower);
	log_info("%s: authentication failed user=%s ip=%s", s->id,
		 log_sanitize(safe, sizeof(safe), lower, strlen(lower)), conn_peer_ip(s->conn));
	if (++s->auth_failures >= POP3_MAX_AUTH_FAILURES) {
		close_with(s, "-ERR [AUTH] Authentication failed; too many failures");
		return;
	}
	reply(s, "-ERR [AUTH] Authentication failed");
}

static void wipe_pending(struct pop3_session *s)
{
	if (s->pending_pass != NULL) {
		explicit_bzero(s->pending_pass, strlen(s->pending_pass));
		free(s->pending_pass);
		s->pending_pass = NULL;
	}
	free(s->pending_user);
	s->pending_user = NULL;
}

static void login_delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct pop3_session *s = arg;
	if (s->state == POP3_S_CLOSING)
		return;
	login_check(s, s->pending_user, s->pending_pass);
	wipe_pending(s);
	if (s->state != POP3_S_CLOSING)
		conn_resume(s->conn);
}

/* login - slow down repeated failures without blocking the worker, then check */
static void login(struct pop3_session *s, const char *user, const char *pass)
{
	unsigned ms = throttle_delay_ms(conn_peer(s->conn), user);
	if (ms == 0) {
		login_check(s, user, pass);
		return;
	}
	s->pending_user = xstrdup(user);
	s->pending_pass = xstrdup(pass);
	conn_pause(s->conn);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	if (s->delay == NULL)
		s->delay = evtimer_new(s->srv->base, login_delay_done, s);
	evtimer_add(s->delay, &tv);
}

static bool require_tls_for_login(struct pop3_session *s)
{
	if (auth_allowed(s))
		return true;
	reply(s, "-ERR [AUTH] Plaintext authentication disallowed without TLS; use STLS first");
	return false;
}

static void cmd_user(struct pop3_session *s, struct pop3_command_line *c)
{
	if (!require_tls_for_login(s))
		return;
	if (c->rest == NULL || strlen(c->rest) > 255) {
		reply(s, "-ERR Syntax: USER name");
		bad_command(s);
		return;
	}
	free(s->user);
	s->user = xstrdup(c->rest);
	reply(s, "+OK Send PASS");
}

static void cmd_pass(struct pop3_session *s, struct pop3_command_line *c)
{
	if (!require_tls_for_login(s))
		return;
	if (s->user == NULL) {
		reply(s, "-ERR Send USER first");
		bad_command(s);
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
	if (s->state == POP3_S_AUTH_SASL)
		set_state(s, POP3_S_AUTHORIZATION);
}

/* sasl_feed - one SASL response (NULL: no initial response) */
static void sasl_feed(struct pop3_session *s, const char *response)
{
	const char *challenge, *err;
	int r = sasl_step(&s->sasl, response, &challenge, &err);
	if (r == 0) {
		set_state(s, POP3_S_AUTH_SASL);
		reply(s, "+ %s", challenge);
		return;
	}
	if (r < 0) {
		sasl_stop(s);
		reply(s, r == -2 ? "-ERR Authentication cancelled" : "-ERR %s", err);
		bad_command(s);
		return;
	}
	char *user = xstrdup(s->sasl.authcid);
	char *pass = xstrdup(s->sasl.password);
	sasl_stop(s);
	login(s, user, pass);
	explicit_bzero(pass, strlen(pass));
	free(pass);
	free(user);
}

static void cmd_auth(struct pop3_session *s, struct pop3_command_line *c)
{
	if (c->n_args == 0) {
		/* the mechanism list many clients ask for (before RFC 5034) */
		reply(s, "+OK\r\nPLAIN\r\nLOGIN\r\n.");
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
		reply(s, "-ERR Unsupported authentication mechanism");
		bad_command(s);
		return;
	}
	sasl_begin(&s->sasl, m);
	s->sasl_active = true;
	sasl_feed(s, ir);
}

static void cmd_capa(struct pop3_session *s, struct pop3_command_line *c)
{
	conn_printf(s->conn, "+OK Capability list follows\r\nTOP\r\nUIDL\r\n");
	/* USER and SASL only where they may be used: a client trusting CAPA must not send
	 * a password in clear only to have it refused (RFC 2595 §4) */
	if (auth_allowed(s))
		conn_printf(s->conn, "USER\r\nSASL PLAIN LOGIN\r\n");
	conn_printf(s->conn, "RESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
	if (!conn_is_tls(s->conn) && s->srv->tls != NULL && s->state != POP3_S_TRANSACTION)
		conn_printf(s->conn, "STLS\r\n");
	conn_printf(s->conn, "IMPLEMENTATION Tern\r\n.\r\n");
}

static void cmd_stls(struct pop3_session *s, struct pop3_command_line *c)
{
	if (conn_is_tls(s->conn)) {
		reply(s, "-ERR TLS already active");
		bad_command(s);
		return;
	}
	if (s->srv->tls == NULL) {
		reply(s, "-ERR TLS not available");
		return;
	}
	reply(s, "+OK Begin TLS negotiation");
	free(s->user);
	s->user = NULL;
	if (conn_starttls(s->conn, s->srv->tls) < 0) {
		set_state(s, POP3_S_CLOSING);
		conn_close_after_flush(s->conn);
	}
}

/* ---- transaction -------------------------------------------------------------------- */

static void cmd_stat(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t n = 0;
	uint64_t total = 0;
	for (size_t i = 0; i < s->n_msgs; i++) {
		if (!s->deleted[i]) {
			n++;
			total += s->msgs[i].size;
		}
	}
	reply(s, "+OK %zu %llu", n, (unsigned long long)total);
}

static void cmd_list(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t i;
	if (c->n_args > 0) {
		struct store_msg *m = msg_arg(s, c, &i);
		if (m != NULL)
			reply(s, "+OK %zu %llu", i + 1, (unsigned long long)m->size);
		return;
	}
	conn_printf(s->conn, "+OK scan listing follows\r\n");
	for (i = 0; i < s->n_msgs; i++)
		if (!s->deleted[i])
			conn_printf(s->conn, "%zu %llu\r\n", i + 1,
				    (unsigned long long)s->msgs[i].size);
	conn_printf(s->conn, ".\r\n");
}

static void cmd_uidl(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t i;
	/* "<uidvalidity>.<uid>": stable across sessions, never reused (UIDs never are) */
	if (c->n_args > 0) {
		struct store_msg *m = msg_arg(s, c, &i);
		if (m != NULL)
			reply(s, "+OK %zu %u.%u", i + 1, s->uidvalidity, m->uid);
		return;
	}
	conn_printf(s->conn, "+OK unique-id listing follows\r\n");
	for (i = 0; i < s->n_msgs; i++)
		if (!s->deleted[i])
			conn_printf(s->conn, "%zu %u.%u\r\n", i + 1, s->uidvalidity,
				    s->msgs[i].uid);
	conn_printf(s->conn, ".\r\n");
}

static void cmd_dele(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t i;
	if (msg_arg(s, c, &i) == NULL)
		return;
	s->deleted[i] = true;
	reply(s, "+OK Message %zu deleted", i + 1);
}

static void cmd_rset(struct pop3_session *s, struct pop3_command_line *c)
{
	memset(s->deleted, 0, s->n_msgs * sizeof(bool));
	reply(s, "+OK %zu messages", s->n_msgs);
}

static void cmd_noop(struct pop3_session *s, struct pop3_command_line *c)
{
	reply(s, "+OK");
}

/* send_pump - stream the message being sent until done or the output is full */
static void send_pump(struct pop3_session *s)
{
	struct pop3_send *x = &s->send;
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
			log_warn("%s: reading message", s->id);
			close(x->fd);
			x->fd = -1;
			s->sending_active = false;
			close_with(s, "-ERR [SYS/TEMP] Error reading the message");
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

/* send_start - RETR and TOP: reply +OK and stream the message */
static void send_start(struct pop3_session *s, size_t i, bool top, uint64_t lines)
{
	char *err = NULL;
	int fd;
	bool crlf;
	if (store_msg_open(s->mb, s->msgs[i].uid, &fd, &crlf, &err) < 0) {
		log_warnx("%s: message %u: %s", s->id, s->msgs[i].uid, err ? err : "open failed");
		free(err);
		reply(s, "-ERR [SYS/TEMP] Cannot read message %zu", i + 1);
		return;
	}
	if (top)
		reply(s, "+OK");
	else
		reply(s, "+OK %llu octets", (unsigned long long)s->msgs[i].size);
	memset(&s->send, 0, sizeof(s->send));
	s->send.fd = fd;
	s->send.crlf = crlf;
	s->send.line_start = true;
	s->send.top = top;
	s->send.header_line_empty = true;
	s->send.body_lines = lines;
	s->sending_active = true;
	send_pump(s);
}

static void cmd_retr(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t i;
	if (msg_arg(s, c, &i) != NULL)
		send_start(s, i, false, 0);
}

static void cmd_top(struct pop3_session *s, struct pop3_command_line *c)
{
	size_t i;
	uint64_t lines;
	if (c->n_args != 2) {
		reply(s, "-ERR Syntax: TOP msg n");
		bad_command(s);
		return;
	}
	if (pop3_number_parse(c, 1, UINT64_MAX / 2, &lines) < 0) {
		reply(s, "-ERR Invalid line count");
		bad_command(s);
		return;
	}
	if (msg_arg(s, c, &i) != NULL)
		send_start(s, i, true, lines);
}

static void cmd_quit(struct pop3_session *s, struct pop3_command_line *c)
{
	if (s->state != POP3_S_TRANSACTION) {
		close_with(s, "+OK Bye");
		return;
	}
	/* UPDATE state: only now do deletions take effect (RFC 1939 §6). */
	uint32_t *uids = xcalloc(s->n_msgs ? s->n_msgs : 1, sizeof(uint32_t));
	size_t n = 0;
	for (size_t i = 0; i < s->n_msgs; i++)
		if (s->deleted[i])
			uids[n++] = s->msgs[i].uid;
	char *err = NULL;
	if (n > 0 && store_expunge(s->mb, uids, n, &err) < 0) {
		log_warnx("%s: expunge: %s", s->id, err ? err : "failed");
		free(err);
		free(uids);
		close_with(s, "-ERR [SYS/TEMP] Some deleted messages not removed");
		return;
	}
	free(uids);
	/* let the next session in now, not once the goodbye has drained */
	store_mailbox_close(&s->mb);
	log_info("%s: logout user=%s deleted=%zu", s->id, s->account, n);
	char text[96];
	snprintf(text, sizeof(text), "+OK Tern POP3 server signing off (%zu messages deleted)", n);
	close_with(s, text);
}

/* The command table: the dispatcher checks the state before a handler runs. */
#define P_AUTHZ 0x01	/* allowed in AUTHORIZATION */
#define P_TRANS 0x02	/* allowed in TRANSACTION */
struct pop3_command {
	const char *name;
	void (*handler)(struct pop3_session *s, struct pop3_command_line *c);
	unsigned flags;
};

static const struct pop3_command pop3_commands[] = {
	{ "CAPA", cmd_capa, P_AUTHZ | P_TRANS },
	{ "USER", cmd_user, P_AUTHZ },
	{ "PASS", cmd_pass, P_AUTHZ },
	{ "AUTH", cmd_auth, P_AUTHZ },
	{ "STLS", cmd_stls, P_AUTHZ },
	{ "QUIT", cmd_quit, P_AUTHZ | P_TRANS },
	{ "NOOP", cmd_noop, P_TRANS },
	{ "STAT", cmd_stat, P_TRANS },
	{ "LIST", cmd_list, P_TRANS },
	{ "UIDL", cmd_uidl, P_TRANS },
	{ "RETR", cmd_retr, P_TRANS },
	{ "TOP", cmd_top, P_TRANS },
	{ "DELE", cmd_dele, P_TRANS },
	{ "RSET", cmd_rset, P_TRANS },
};

static void dispatch(struct pop3_session *s, char *line, size_t len)
{
	struct pop3_command_line cl;
	const char *err;
	if (pop3_command_parse(line, len, &cl, &err) < 0) {
		reply(s, "-ERR %s", err);
		bad_command(s);
		return;
	}
	for (size_t i = 0; i < sizeof(pop3_commands) / sizeof(pop3_commands[0]); i++) {
		const struct pop3_command *c = &pop3_commands[i];
		if (strcmp(c->name, cl.verb) != 0)
			continue;
		unsigned need = s->state == POP3_S_TRANSACTION ? P_TRANS : P_AUTHZ;
		if (!(c->flags & need)) {
			reply(s, "-ERR %s not allowed in the %s state", c->name,
			      pop3_state_names[s->state]);
			bad_command(s);
			return;
		}
		if (s->srv->draining && s->state != POP3_S_TRANSACTION) {
			close_with(s, "-ERR Server shutting down");
			return;
		}
		c->handler(s, &cl);
		return;
	}
	reply(s, "-ERR Unknown command");
	bad_command(s);
}

static void session_process(struct pop3_session *s)
{
	for (;;) {
		if (s->state == POP3_S_CLOSING)
			return;
		if (s->sending_active) {
			send_pump(s);
			if (s->sending_active || s->state == POP3_S_CLOSING)
				return;
			if (s->srv->draining) {
				close_with(s, "-ERR Server shutting down");
				return;
			}
		}
		if (s->delay != NULL && evtimer_pending(s->delay, NULL))
			return;
		if (conn_output_full(s->conn))
			return;
		bool bare_lf;
		int r = linereader_read(&s->lr, conn_input(s->conn), &s->line, &bare_lf);
		if (r == 0)
			return;
		if (r < 0) {
			if (s->state == POP3_S_AUTH_SASL)
				sasl_stop(s);
			reply(s, "-ERR Line too long");
			if (bad_command(s))
				return;
			continue;
		}
		if (bare_lf) {
			reply(s, "-ERR Line must end with CRLF");
			if (bad_command(s))
				return;
			continue;
		}
		if (s->state == POP3_S_AUTH_SASL)
			sasl_feed(s, buf_cstr(&s->line));
		else
			dispatch(s, s->line.data ? s->line.data : (char *)"", s->line.len);
		/* the line may have held a password (PASS, AUTH, a SASL response) */
		if (s->line.data != NULL)
			explicit_bzero(s->line.data, s->line.cap);
	}
}

static void pop3_on_input(void *ctx)
{
	session_process(ctx);
}

static void pop3_on_event(void *ctx, enum conn_event ev)
{
	struct pop3_session *s = ctx;
	if (ev == CONN_TIMEOUT) {
		/* RFC 1939 §3: the autologout timer ends the session without UPDATE */
		close_with(s, "-ERR Autologout; idle for too long");
		return;
	}
	session_end(s);
}

static void pop3_on_closed(void *ctx)
{
	session_end(ctx);
}

static const struct conn_ops pop3_conn_ops = {
	.on_input = pop3_on_input,
	.on_event = pop3_on_event,
	.on_closed = pop3_on_closed,
};

/* session_end - the one teardown; a dropped connection deletes nothing */
static void session_end(struct pop3_session *s)
{
	log_info("%s: disconnect from %s", s->id, conn_peer_ip(s->conn));
	if (s->sending_active && s->send.fd >= 0)
		close(s->send.fd);
	conn_free(&s->conn);
	if (s->delay != NULL)
		event_free(s->delay);
	wipe_pending(s);
	sasl_stop(s);
	if (s->line.data != NULL)
		explicit_bzero(s->line.data, s->line.cap);
	store_mailbox_close(&s->mb);
	store_close(&s->store);
	free(s->msgs);
	free(s->deleted);
	free(s->account);
	free(s->user);
	buf_free(&s->line);
	LIST_REMOVE(s, link);
	s->srv->n_sessions--;
	free(s);
}

void pop3_server_init(struct pop3_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts)
{
	memset(srv, 0, sizeof(*srv));
	srv->base = base;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->accounts = accounts;
	LIST_INIT(&srv->sessions);
}

void pop3_session_start(struct pop3_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role)
{
	static unsigned long counter;
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->send.fd = -1;
	snprintf(s->id, sizeof(s->id), "p%lx.%lu", (long)getpid(), ++counter);
	SSL_CTX *implicit = role == ROLE_POP3S ? srv->tls : NULL;
	s->conn = conn_new(srv->base, fd, peer, peerlen, implicit, POP3_MAX_INPUT,
			   srv->cfg->max_connections_per_ip, &pop3_conn_ops, s);
	linereader_init(&s->lr, POP3_MAX_LINE);
	buf_init(&s->line, 0);
	LIST_INSERT_HEAD(&srv->sessions, s, link);
	srv->n_sessions++;
	log_info("%s: connect from %s role=%s", s->id, conn_peer_ip(s->conn),
		 config_role_name(role));
	if (conn_over_ip_limit(s->conn)) {
		close_with(s, "-ERR [SYS/TEMP] Too many connections from your address");
		return;
	}
	conn_set_timeout(s->conn, POP3_TIMEOUT);
	reply(s, "+OK Tern POP3 server ready");
}

void pop3_server_drain(struct pop3_server *srv)
{
	srv->draining = true;
	struct pop3_session *s, *next;
	for (s = LIST_FIRST(&srv->sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (s->state != POP3_S_CLOSING && !s->sending_active)
			close_with(s, "-ERR Server shutting down");
	}
}

void pop3_server_free(struct pop3_server *srv)
{
	while (!LIST_EMPTY(&srv->sessions))
		session_end(LIST_FIRST(&srv->sessions));
}
