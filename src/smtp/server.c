/* smtp/server - the SMTP session: state machine, command table, DATA and BDAT streaming */
#include "smtp/server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/recipient.h"
#include "auth/sasl.h"
#include "auth/throttle.h"
#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/linereader.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtp/parser.h"

#define SMTP_MAX_INPUT (256 * 1024)	/* input buffered before reading pauses */
#define SMTP_FEED_CHUNK 65536

enum smtp_state {
	SMTP_S_CMD,	/* reading commands */
	SMTP_S_AUTH,	/* reading SASL responses */
	SMTP_S_DATA,	/* reading the DATA stream */
	SMTP_S_BDAT,	/* reading a BDAT chunk */
	SMTP_S_CLOSING,	/* the last reply is on its way out */
};

static const char *const smtp_state_names[] = { "cmd", "auth", "data", "bdat", "closing" };

/* A list of addresses without duplicates, with each one's DSN requests (RFC 3461). */
struct addr_list {
	char **v;
	char **notify;	/* NULL entries when not given */
	char **orcpt;
	size_t n;
};

struct smtp_session {
	LIST_ENTRY(smtp_session) link;
	struct smtp_server *srv;
	struct conn *conn;
	enum listen_role role;
	enum smtp_state state;
	char id[24];
	struct linereader lr;
	buf line;

	char *helo;
	bool esmtp;
	char *auth_user;
	unsigned bad_commands;
	unsigned auth_failures;
	bool seen_data;			/* a DATA or BDAT was accepted in this session */
	size_t bytes_before_data;
	unsigned commands_in_txn;

	/* the transaction */
	bool have_mail;
	char *sender;			/* "" for <> */
	char *dsn_ret;			/* RET= (RFC 3461), NULL when not given */
	char *dsn_envid;		/* ENVID= as received (xtext) */
	bool smtputf8;
	size_t n_rcpts;
	bool rcpt_tried;		/* a RCPT came, accepted or not */
	char *first_rcpt;
	struct addr_list locals, remotes;
	struct spool_msg *msg;
	uint64_t msg_bytes;		/* message text bytes (limit check) */
	bool too_big;
	struct smtp_data_parser dp;
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_open;			/* a BDAT sequence began */
	const char *bdat_error;		/* reply owed at the end of this chunk */

	struct sasl_state sasl;
	bool sasl_active;
	struct event *delay;		/* failed-login slowdown */
};

static void session_end(struct smtp_session *s);
static void session_process(struct smtp_session *s);

static const struct conn_ops smtp_conn_ops;

/* reply - one reply line (fmt includes the code and the enhanced code) */
static void reply(struct smtp_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
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
	log_debug("%s: > %.*s", s->id, n - 2, line);
}

static void set_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state != st)
		log_debug("%s: state %s -> %s", s->id, smtp_state_names[s->state],
			  smtp_state_names[st]);
	s->state = st;
}

/* close_with - send a last reply and end the session once it is out */
static void close_with(struct smtp_session *s, const char *text)
{
	reply(s, "%s", text);
	set_state(s, SMTP_S_CLOSING);
	conn_close_after_flush(s->conn);
}

static void addr_list_add(struct addr_list *l, const char *a, const char *notify,
			  const char *orcpt)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], a) == 0)
			return;
	l->v = xreallocarray(l->v, l->n + 1, sizeof(char *));
	l->notify = xreallocarray(l->notify, l->n + 1, sizeof(char *));
	l->orcpt = xreallocarray(l->orcpt, l->n + 1, sizeof(char *));
	l->notify[l->n] = notify ? xstrdup(notify) : NULL;
	l->orcpt[l->n] = orcpt ? xstrdup(orcpt) : NULL;
	l->v[l->n++] = xstrdup(a);
}

static void addr_list_free(struct addr_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i]);
		free(l->notify[i]);
		free(l->orcpt[i]);
	}
	free(l->v);
	free(l->notify);
	free(l->orcpt);
	l->v = l->notify = l->orcpt = NULL;
	l->n = 0;
}

/* xtext_ok - RFC 3461 §4: printable ASCII except '+' and '=', and "+HH" (upper-case hex) */
static bool xtext_ok(const char *v, size_t max)
{
	size_t n = 0;
	for (const char *p = v; *p; p++, n++) {
		unsigned char c = (unsigned char)*p;
		if (c == '+') {
			if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]) ||
			    islower((unsigned char)p[1]) || islower((unsigned char)p[2]))
				return false;
			p += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return n > 0 && n <= max;
}

/* notify_ok - "NEVER", or a list of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1) */
static bool notify_ok(const char *v)
{
	if (strcasecmp(v, "NEVER") == 0)
		return true;
	char *copy = xstrdup(v), *save = NULL;
	bool ok = *v != '\0' && v[strlen(v) - 1] != ',';
	for (char *t = strtok_r(copy, ",", &save); t && ok; t = strtok_r(NULL, ",", &save))
		ok = !strcasecmp(t, "SUCCESS") || !strcasecmp(t, "FAILURE") ||
		     !strcasecmp(t, "DELAY");
	free(copy);
	return ok;
}

/* txn_reset - forget the transaction (RSET, EHLO, after a message, at the end) */
static void txn_reset(struct smtp_session *s)
{
	s->have_mail = false;
	free(s->sender);
	s->sender = NULL;
	free(s->dsn_ret);
	free(s->dsn_envid);
	s->dsn_ret = s->dsn_envid = NULL;
	s->smtputf8 = false;
	s->n_rcpts = 0;
	s->rcpt_tried = false;
	free(s->first_rcpt);
	s->first_rcpt = NULL;
	addr_list_free(&s->locals);
	addr_list_free(&s->remotes);
	spool_abort(&s->msg);
	s->msg_bytes = 0;
	s->too_big = false;
	s->bdat_open = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->bdat_error = NULL;
	s->commands_in_txn = 0;
}

/* bad_command - count a protocol error; true when the session was closed for too many */
static bool bad_command(struct smtp_session *s)
{
	if (++s->bad_commands <= s->srv->cfg->smtp_max_bad_commands)
		return false;
	log_info("%s: too many errors from %s, disconnecting", s->id, conn_peer_ip(s->conn));
	close_with(s, "421 4.7.0 Too many errors, closing connection");
	return true;
}

static bool role_is_submission(const struct smtp_session *s)
{
	return s->role == ROLE_SUBMISSION || s->role == ROLE_SUBMISSIONS;
}

static bool auth_allowed(const struct smtp_session *s)
{
	return conn_is_tls(s->conn) ||
	       (s->srv->cfg->allow_plaintext_auth_loopback && conn_peer_is_loopback(s->conn));
}

/* ---- commands ---------------------------------------------------------------------- */

/* helo_tolerable - RFC 5321 §4.1.4 forbids refusing mail over a poor EHLO name; take any
 * one printable ASCII token ("MY_PC", "host.") as Postfix does */
static bool helo_tolerable(const char *args)
{
	size_t n = strcspn(args, " ");
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)args[i];
		/* ASCII only here: a UTF-8 name must pass the strict parser (valid UTF-8) */
		if (c < 0x21 || c >= 0x7f || c == '<' || c == '>' || c == '(' || c == ')')
			return false;
	}
	return args[n + strspn(args + n, " ")] == '\0';
}

static void cmd_helo(struct smtp_session *s, const char *args, bool esmtp)
{
	const char *err;
	if (smtp_parse_helo(args, &err) < 0 && !helo_tolerable(args)) {
		reply(s, "501 5.5.4 %s", err);
		bad_command(s);
		return;
	}
	txn_reset(s);
	free(s->helo);
	s->helo = xstrndup(args, strcspn(args, " \t"));
	s->esmtp = esmtp;
	const struct tern_config *cfg = s->srv->cfg;
	if (!esmtp) {
		reply(s, "250 %s", cfg->hostname);
		return;
	}
	conn_printf(s->conn, "250-%s Hello %s [%s]\r\n", cfg->hostname, s->helo,
		    conn_peer_ip(s->conn));
	conn_printf(s->conn, "250-PIPELINING\r\n250-SIZE %llu\r\n250-8BITMIME\r\n"
			     "250-ENHANCEDSTATUSCODES\r\n",
		    (unsigned long long)cfg->max_message_size);
	if (!conn_is_tls(s->conn) && s->srv->tls != NULL)
		conn_printf(s->conn, "250-STARTTLS\r\n");
	if (auth_allowed(s) && s->auth_user == NULL)
		conn_printf(s->conn, "250-AUTH PLAIN LOGIN\r\n");
	conn_printf(s->conn, "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
}

static void cmd_starttls(struct smtp_session *s, const char *args)
{
	if (*args != '\0') {
		reply(s, "501 5.5.4 Syntax: STARTTLS");
		bad_command(s);
		return;
	}
	if (conn_is_tls(s->conn)) {
		reply(s, "503 5.5.1 TLS already active");
		bad_command(s);
		return;
	}
	if (s->srv->tls == NULL) {
		reply(s, "454 4.7.0 TLS not available");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	/* RFC 3207 §4.2: forget everything learnt from the client before TLS. */
	txn_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	free(s->auth_user);
	s->auth_user = NULL;
	if (conn_starttls(s->conn, s->srv->tls) < 0) {
		log_warnx("%s: STARTTLS setup failed", s->id);
		set_state(s, SMTP_S_CLOSING);
		conn_close_after_flush(s->conn);
	}
}

/* auth_finish - check the credentials the SASL exchange produced */
static void auth_finish(struct smtp_session *s)
{
	const char *user = s->sasl.authcid;
	int r = accounts_verify(s->srv->accounts, user, s->sasl.password);
	set_state(s, SMTP_S_CMD);
	if (r == 1) {
		char *u = xstrdup(user);
		for (char *p = u; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		s->auth_user = u;
		throttle_succeeded(conn_peer(s->conn), user);
		log_info("%s: authenticated user=%s method=%s", s->id, u,
			 s->sasl.mech == SASL_PLAIN ? "PLAIN" : "LOGIN");
		reply(s, "235 2.7.0 Authentication successful");
	} else if (r == 0) {
		char safe[128];
		throttle_failed(conn_peer(s->conn), user);
		log_info("%s: authentication failed user=%s ip=%s", s->id,
			 log_sanitize(safe, sizeof(safe), user, strlen(user)), conn_peer_ip(s->conn));
		if (++s->auth_failures >= s->srv->cfg->smtp_max_auth_failures) {
			sasl_free(&s->sasl);
			s->sasl_active = false;
			close_with(s, "421 4.7.0 Too many authentication failures");
			return;
		}
		reply(s, "535 5.7.8 Authentication credentials invalid");
	} else {
		reply(s, "454 4.7.0 Temporary authentication failure");
	}
	sasl_free(&s->sasl);
	s->sasl_active = false;
}

static void auth_delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;
	if (s->state == SMTP_S_CLOSING)
		return;		/* a drain or timeout ended the session meanwhile */
	auth_finish(s);
	if (s->state != SMTP_S_CLOSING)
		conn_resume(s->conn);
}

/* auth_step - feed one SASL response (NULL: no initial response) */
static void auth_step(struct smtp_session *s, const char *response)
{
	const char *challenge, *err;
	int r = sasl_step(&s->sasl, response, &challenge, &err);
	if (r == 0) {
		set_state(s, SMTP_S_AUTH);
		reply(s, "334 %s", challenge);
		return;
	}
	set_state(s, SMTP_S_CMD);
	if (r < 0) {
		sasl_free(&s->sasl);
		s->sasl_active = false;
		if (r == -2)
			reply(s, "501 5.0.0 Authentication cancelled");
		else
			reply(s, "501 5.5.2 %s", err);
		bad_command(s);
		return;
	}
	unsigned ms = throttle_delay_ms(conn_peer(s->conn), s->sasl.authcid);
	if (ms == 0) {
		auth_finish(s);
		return;
	}
	/* Slow down repeated failures without blocking the other sessions of this worker. */
	conn_pause(s->conn);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	if (s->delay == NULL)
		s->delay = evtimer_new(s->srv->base, auth_delay_done, s);
	evtimer_add(s->delay, &tv);
}

static void cmd_auth(struct smtp_session *s, const char *args)
{
	if (s->helo == NULL || !s->esmtp) {
		reply(s, "503 5.5.1 Send EHLO first");
		bad_command(s);
		return;
	}
	if (s->auth_user != NULL) {
		reply(s, "503 5.5.1 Already authenticated");
		bad_command(s);
		return;
	}
	if (s->have_mail) {
		reply(s, "503 5.5.1 AUTH not allowed during a mail transaction");
		bad_command(s);
		return;
	}
	if (!auth_allowed(s)) {
		reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	char mech[32];
	size_t ml = strcspn(args, " ");
	enum sasl_mech m;
	if (ml == 0 || ml >= sizeof(mech)) {
		reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		bad_command(s);
		return;
	}
	memcpy(mech, args, ml);
	mech[ml] = '\0';
	if (sasl_mech_parse(mech, &m) < 0) {
		reply(s, "504 5.5.4 Unrecognized authentication type");
		bad_command(s);
		return;
	}
	const char *ir = args[ml] == ' ' ? args + ml + 1 : NULL;
	sasl_begin(&s->sasl, m);
	s->sasl_active = true;
	auth_step(s, ir);
}

/* mail_params - the ESMTP parameters of MAIL; returns a reply or NULL when all is well */
static const char *mail_params(struct smtp_session *s, const struct smtp_path_args *pa)
{
	for (size_t i = 0; i < pa->n_params; i++) {
		const struct smtp_param *p = &pa->params[i];
		if (strcmp(p->keyword, "SIZE") == 0) {
			uint64_t size = 0;
			const char *v = p->value ? p->value : "";
			char *end;
			if (*v < '0' || *v > '9')
				return "501 5.5.4 Bad SIZE parameter";
			size = strtoull(v, &end, 10);
			if (*end != '\0')
				return "501 5.5.4 Bad SIZE parameter";
			if (size > s->srv->cfg->max_message_size)
				return "552 5.3.4 Message size exceeds fixed maximum message size";
		} else if (strcmp(p->keyword, "BODY") == 0) {
			if (p->value == NULL || (strcasecmp(p->value, "7BIT") != 0 &&
						 strcasecmp(p->value, "8BITMIME") != 0))
				return "501 5.5.4 Unsupported BODY type";
		} else if (strcmp(p->keyword, "SMTPUTF8") == 0) {
			if (p->value != NULL)
				return "501 5.5.4 SMTPUTF8 takes no value";
			s->smtputf8 = true;
		} else if (strcmp(p->keyword, "RET") == 0) {
			if (p->value == NULL || (strcasecmp(p->value, "FULL") != 0 &&
						 strcasecmp(p->value, "HDRS") != 0) || s->dsn_ret)
				return "501 5.5.4 Bad RET parameter";
			s->dsn_ret = xstrdup(p->value);
			for (char *c = s->dsn_ret; *c; c++)
				*c = (char)toupper((unsigned char)*c);
		} else if (strcmp(p->keyword, "ENVID") == 0) {
			if (p->value == NULL || !xtext_ok(p->value, 100) || s->dsn_envid)
				return "501 5.5.4 Bad ENVID parameter";
			s->dsn_envid = xstrdup(p->value);
		} else if (strcmp(p->keyword, "AUTH") == 0) {
			/* RFC 4954 §5: we do not trust other servers' AUTH=; ignore it. */
		} else {
			return "555 5.5.4 Unsupported MAIL parameter";
		}
	}
	return NULL;
}

static void cmd_mail(struct smtp_session *s, const char *args)
{
	if (s->helo == NULL) {
		reply(s, "503 5.5.1 Send HELO/EHLO first");
		bad_command(s);
		return;
	}
	if (s->have_mail) {
		reply(s, "503 5.5.1 Nested MAIL command");
		bad_command(s);
		return;
	}
	if (role_is_submission(s) && s->auth_user == NULL) {
		reply(s, "530 5.7.0 Authentication required");
		return;
	}
	struct smtp_path_args pa;
	const char *err;
	if (smtp_parse_mail_from(args, &pa, &err) < 0) {
		reply(s, "501 5.5.4 %s", err);
		bad_command(s);
		return;
	}
	s->smtputf8 = false;
	const char *bad = mail_params(s, &pa);
	if (bad == NULL && !s->esmtp && pa.n_params > 0)
		bad = "555 5.5.4 Parameters need EHLO";
	if (bad == NULL && pa.path.utf8 && !s->smtputf8)
		bad = "553 5.6.7 Non-ASCII address needs SMTPUTF8";
	if (bad != NULL) {
		reply(s, "%s", bad);
		smtp_path_args_free(&pa);
		s->smtputf8 = false;
		free(s->dsn_ret);
		free(s->dsn_envid);
		s->dsn_ret = s->dsn_envid = NULL;
		return;
	}
	s->have_mail = true;
	s->sender = xstrdup(pa.path.null ? "" : pa.path.address);
	smtp_path_args_free(&pa);
	reply(s, "250 2.1.0 Ok");
}

static void cmd_rcpt(struct smtp_session *s, const char *args)
{
	const struct tern_config *cfg = s->srv->cfg;
	if (!s->have_mail) {
		reply(s, "503 5.5.1 Need MAIL before RCPT");
		bad_command(s);
		return;
	}
	if (s->bdat_open) {
		reply(s, "503 5.5.1 RCPT not allowed after BDAT");
		bad_command(s);
		return;
	}
	struct smtp_path_args pa;
	const char *err;
	s->rcpt_tried = true;
	if (smtp_parse_rcpt_to(args, &pa, &err) < 0) {
		reply(s, "501 5.5.4 %s", err);
		bad_command(s);
		return;
	}
	char *addr = pa.path.domain != NULL ? xstrdup(pa.path.address)
					     : xasprintf("postmaster@%s", cfg->domains[0]);
	bool local = pa.path.domain == NULL || config_is_local_domain(cfg, pa.path.domain);
	bool utf8 = pa.path.utf8;
	char *notify = NULL, *orcpt = NULL;
	const char *bad = NULL;
	for (size_t i = 0; i < pa.n_params && bad == NULL; i++) {
		const struct smtp_param *p = &pa.params[i];
		if (strcmp(p->keyword, "NOTIFY") == 0 && p->value && notify_ok(p->value) && !notify) {
			notify = xstrdup(p->value);
			for (char *c = notify; *c; c++)
				*c = (char)toupper((unsigned char)*c);
		} else if (strcmp(p->keyword, "ORCPT") == 0 && p->value && !orcpt &&
			   strchr(p->value, ';') != NULL && xtext_ok(strchr(p->value, ';') + 1, 500)) {
			orcpt = xstrdup(p->value);
		} else if (strcmp(p->keyword, "NOTIFY") == 0 || strcmp(p->keyword, "ORCPT") == 0) {
			bad = "501 5.5.4 Bad NOTIFY or ORCPT parameter";
		} else {
			bad = "555 5.5.4 Unsupported RCPT parameter";
		}
	}
	smtp_path_args_free(&pa);

	if (bad != NULL) {
		reply(s, "%s", bad);
	} else if (utf8 && !s->smtputf8) {
		reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
	} else if (s->n_rcpts >= cfg->smtp_max_recipients) {
		reply(s, "452 4.5.3 Too many recipients");
	} else if (!local && s->auth_user == NULL) {
		log_info("%s: relay denied from=<%s> to=<%s> ip=%s", s->id, s->sender, addr,
			 conn_peer_ip(s->conn));
		reply(s, "554 5.7.1 <%s>: Relay access denied", addr);
	} else {
		struct recipient_targets t;
		int r = recipient_resolve(s->srv->accounts, cfg, addr, &t);
		if (r < 0) {
			reply(s, "451 4.3.0 Temporary lookup failure");
		} else if (r == 0) {
			reply(s, "550 5.1.1 <%s>: Recipient address rejected: User unknown", addr);
		} else {
			for (size_t i = 0; i < t.n_remotes; i++)
				addr_list_add(&s->remotes, t.remotes[i], notify, orcpt);
			for (size_t i = 0; i < t.n_locals; i++)
				addr_list_add(&s->locals, t.locals[i], NULL, NULL);
			recipient_targets_free(&t);
			goto accepted;
		}
	}
	free(addr);
	free(notify);
	free(orcpt);
	return;
accepted:
	s->n_rcpts++;
	if (s->first_rcpt == NULL)
		s->first_rcpt = xstrdup(addr);
	free(addr);
	free(notify);
	free(orcpt);
	reply(s, "250 2.1.5 Ok");
}

/* received_header - write the trace header (RFC 5321 §4.4) to the spool file */
static void received_header(struct smtp_session *s)
{
	const struct tern_config *cfg = s->srv->cfg;
	buf h;
	char date[64], tlsdesc[160];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	const char *proto = s->smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP";
	bool tls = conn_is_tls(s->conn);
	buf_init(&h, 0);
	buf_printf(&h, "Received: from %s (%s [%s])\r\n\tby %s (Tern) with %s%s%s id %s",
		   s->helo, "unknown", conn_peer_ip(s->conn), cfg->hostname, proto,
		   tls ? "S" : "", s->auth_user ? "A" : "", s->msg->qid);
	if (tls)
		buf_printf(&h, "\r\n\t(using %s)", tls_describe(conn_ssl(s->conn), tlsdesc,
								 sizeof(tlsdesc)));
	if (s->auth_user != NULL && cfg->received_show_auth)
		buf_printf(&h, "\r\n\t(Authenticated sender: %s)", s->auth_user);
	if (s->n_rcpts == 1)
		buf_printf(&h, "\r\n\tfor <%s>", s->first_rcpt);
	buf_printf(&h, "; %s\r\n", date);
	spool_write(s->msg, h.data, h.len);
	buf_free(&h);
}

/* message_begin - shared start of DATA and BDAT: open the spool file; false on failure */
static bool message_begin(struct smtp_session *s)
{
	char *err = NULL;
	if (spool_open(s->srv->spool_dir, s->sender, &s->msg, &err) < 0) {
		log_warnx("%s: %s", s->id, err);
		free(err);
		return false;
	}
	received_header(s);
	s->msg_bytes = 0;
	s->too_big = false;
	s->seen_data = true;
	return true;
}

/* message_write - append message text, enforcing the size limit */
static void message_write(struct smtp_session *s, const char *p, size_t n)
{
	if (s->too_big)
		return;
	s->msg_bytes += n;
	if (s->msg_bytes > s->srv->cfg->max_message_size) {
		s->too_big = true;
		return;
	}
	spool_write(s->msg, p, n);
}

/* message_finish - the message is complete: check it, make it durable, answer */
static void message_finish(struct smtp_session *s)
{
	char *err = NULL;
	if (s->too_big) {
		log_info("%s: message rejected: size over %llu", s->id,
			 (unsigned long long)s->srv->cfg->max_message_size);
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
	} else if (s->dp.bare_eol) {
		log_info("%s: message rejected: bare CR or LF", s->id);
		reply(s, "550 5.6.0 Message contains bare CR or LF characters; lines must end "
			 "with CRLF");
	} else if (s->dp.line_too_long) {
		log_info("%s: message rejected: line over %zu octets", s->id,
			 s->srv->cfg->smtp_max_text_line);
		reply(s, "550 5.6.0 Message contains a line longer than %zu octets",
		      s->srv->cfg->smtp_max_text_line);
	} else if (s->msg->failed ||
		   spool_deliver(s->msg, s->srv->cfg->data_dir, s->srv->cfg->hostname,
				 (const char *const *)s->locals.v, s->locals.n, s->srv->queue,
				 s->sender, (const char *const *)s->remotes.v, s->remotes.n,
				 &(struct queue_dsn){ .ret = s->dsn_ret, .envid = s->dsn_envid,
						      .notify = (const char *const *)s->remotes.notify,
						      .orcpt = (const char *const *)s->remotes.orcpt },
				 &err) < 0) {
		log_warnx("%s: %s: message not accepted: %s", s->id, s->msg->qid,
			  err ? err : "write error");
		free(err);
		reply(s, "451 4.3.0 Local error in processing, try again later");
	} else {
		log_info("%s: %s: from=<%s> size=%llu nrcpt=%zu local=%zu queued=%zu%s", s->id,
			 s->msg->qid, s->sender, (unsigned long long)s->msg_bytes, s->n_rcpts,
			 s->locals.n, s->remotes.n, s->auth_user ? " auth=yes" : "");
		for (size_t i = 0; i < s->locals.n; i++)
			log_info("%s: to=<%s> relay=local status=sent (delivered to maildir)",
				 s->msg->qid, s->locals.v[i]);
		reply(s, "250 2.0.0 Ok: queued as %s", s->msg->qid);
		spool_close(&s->msg);
		if (s->remotes.n > 0)
			queue_wake(s->srv->spool_dir);
	}
	txn_reset(s);
	set_state(s, SMTP_S_CMD);
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_command);
	if (s->srv->draining)
		close_with(s, "421 4.3.2 Service shutting down");
}

static void cmd_data(struct smtp_session *s, const char *args)
{
	if (*args != '\0') {
		reply(s, "501 5.5.4 Syntax: DATA");
		bad_command(s);
		return;
	}
	if (!s->have_mail) {
		reply(s, "503 5.5.1 Need MAIL command");
		bad_command(s);
		return;
	}
	if (s->bdat_open) {
		reply(s, "503 5.5.1 DATA not allowed after BDAT");
		bad_command(s);
		return;
	}
	if (s->n_rcpts == 0) {
		/* As Postfix: 503 when no RCPT came, 554 when every one was refused. */
		if (s->rcpt_tried) {
			reply(s, "554 5.5.1 No valid recipients");
		} else {
			reply(s, "503 5.5.1 Need RCPT command");
			bad_command(s);
		}
		return;
	}
	if (!message_begin(s)) {
		reply(s, "451 4.3.0 Local error in processing, try again later");
		return;
	}
	smtp_data_init(&s->dp, SMTP_DATA_DOT, s->srv->cfg->smtp_max_text_line);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_data);
	set_state(s, SMTP_S_DATA);
}

static void cmd_bdat(struct smtp_session *s, const char *args)
{
	uint64_t size;
	bool last;
	const char *err;
	if (!s->esmtp) {
		/* CHUNKING is only offered after EHLO (RFC 3030 §2); the size is unknown to
		 * us, so the chunk cannot be skipped: close rather than read it as commands */
		close_with(s, "503 5.5.1 BDAT needs EHLO; closing connection");
		return;
	}
	if (smtp_parse_bdat(args, &size, &last, &err) < 0) {
		/* Without a size we cannot know where the chunk ends, and its bytes must never
		 * be taken for commands: give up on the connection. */
		reply(s, "501 5.5.4 %s", err);
		close_with(s, "421 4.5.0 Cannot find the end of the BDAT chunk, closing connection");
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_error = NULL;
	if (!s->have_mail)
		s->bdat_error = "503 5.5.1 Need MAIL command";
	else if (s->n_rcpts == 0)
		s->bdat_error = s->rcpt_tried ? "554 5.5.1 No valid recipients"
					      : "503 5.5.1 Need RCPT command";
	else if (!s->bdat_open) {
		if (!message_begin(s))
			s->bdat_error = "451 4.3.0 Local error in processing, try again later";
		else {
			s->bdat_open = true;
			smtp_data_init(&s->dp, SMTP_DATA_RAW, s->srv->cfg->smtp_max_text_line);
		}
	}
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_data);
	set_state(s, SMTP_S_BDAT);
}

/* bdat_chunk_done - the chunk's bytes are all in */
static void bdat_chunk_done(struct smtp_session *s)
{
	set_state(s, SMTP_S_CMD);
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_command);
	if (s->bdat_error != NULL) {
		reply(s, "%s", s->bdat_error);
		bool txn_failed = s->bdat_open;
		s->bdat_error = NULL;
		if (txn_failed)
			txn_reset(s);
		bad_command(s);
		return;
	}
	if (s->too_big) {
		reply(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		txn_reset(s);
		return;
	}
	if (!s->bdat_last) {
		reply(s, "250 2.0.0 %llu octets received",
		      (unsigned long long)s->msg_bytes);
		return;
	}
	smtp_data_finish_raw(&s->dp);
	message_finish(s);
}

static void cmd_rset(struct smtp_session *s, const char *args)
{
	txn_reset(s);
	reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, const char *args)
{
	reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, const char *args)
{
	close_with(s, "221 2.0.0 Bye");
}

static void cmd_vrfy(struct smtp_session *s, const char *args)
{
	reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(struct smtp_session *s, const char *args)
{
	reply(s, "502 5.5.1 EXPN not available");
}

static void cmd_help(struct smtp_session *s, const char *args)
{
	reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY "
		 "HELP STARTTLS AUTH");
}

static void cmd_helo_plain(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, false);
}

static void cmd_ehlo(struct smtp_session *s, const char *args)
{
	cmd_helo(s, args, true);
}

/* The command table: policy flags are applied by dispatch() before the handler runs. */
#define F_TXN 0x01	/* part of a mail transaction: counted against smtp_max_commands */
struct smtp_command {
	enum smtp_verb verb;
	void (*handler)(struct smtp_session *s, const char *args);
	unsigned flags;
};

static const struct smtp_command smtp_commands[] = {
	{ SMTP_VERB_HELO, cmd_helo_plain, 0 },
	{ SMTP_VERB_EHLO, cmd_ehlo, 0 },
	{ SMTP_VERB_MAIL, cmd_mail, F_TXN },
	{ SMTP_VERB_RCPT, cmd_rcpt, F_TXN },
	{ SMTP_VERB_DATA, cmd_data, F_TXN },
	{ SMTP_VERB_BDAT, cmd_bdat, F_TXN },
	{ SMTP_VERB_RSET, cmd_rset, 0 },
	{ SMTP_VERB_NOOP, cmd_noop, F_TXN },
	{ SMTP_VERB_QUIT, cmd_quit, 0 },
	{ SMTP_VERB_VRFY, cmd_vrfy, F_TXN },
	{ SMTP_VERB_EXPN, cmd_expn, F_TXN },
	{ SMTP_VERB_HELP, cmd_help, F_TXN },
	{ SMTP_VERB_STARTTLS, cmd_starttls, 0 },
	{ SMTP_VERB_AUTH, cmd_auth, 0 },
};

/* dispatch - one command line: limits, then the handler */
static void dispatch(struct smtp_session *s, const char *line, size_t len)
{
	const struct tern_config *cfg = s->srv->cfg;
	if (!s->seen_data) {
		s->bytes_before_data += len + 2;
		if (s->bytes_before_data > cfg->smtp_max_bytes_before_data) {
			close_with(s, "421 4.7.0 Too much command traffic, closing connection");
			return;
		}
	}
	if (memchr(line, '\0', len) != NULL) {
		reply(s, "500 5.5.2 Syntax error: NUL character in command");
		bad_command(s);
		return;
	}
	if (s->srv->draining && !s->have_mail) {
		close_with(s, "421 4.3.2 Service shutting down");
		return;
	}
	const char *args;
	enum smtp_verb verb = smtp_verb_parse(line, len, &args);
	for (size_t i = 0; i < sizeof(smtp_commands) / sizeof(smtp_commands[0]); i++) {
		const struct smtp_command *c = &smtp_commands[i];
		if (c->verb != verb)
			continue;
		if ((c->flags & F_TXN) && ++s->commands_in_txn > cfg->smtp_max_commands) {
			close_with(s, "421 4.7.0 Too many commands, closing connection");
			return;
		}
		c->handler(s, args);
		return;
	}
	char safe[64];
	log_debug("%s: unknown command: %s", s->id, log_sanitize(safe, sizeof(safe), line, len));
	reply(s, "500 5.5.1 Command unrecognized");
	bad_command(s);
}

/* feed_data - push buffered DATA or BDAT bytes through the parser into the spool */
static void feed_data(struct smtp_session *s)
{
	static char out[SMTP_FEED_CHUNK];
	struct evbuffer *in = conn_input(s->conn);
	while (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT) {
		size_t avail = evbuffer_get_length(in);
		if (s->state == SMTP_S_BDAT && s->bdat_left == 0) {
			bdat_chunk_done(s);
			return;
		}
		if (avail == 0)
			return;
		size_t want = avail < SMTP_FEED_CHUNK ? avail : SMTP_FEED_CHUNK;
		if (s->state == SMTP_S_BDAT && want > s->bdat_left)
			want = (size_t)s->bdat_left;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, (ssize_t)want, NULL, &v, 1) < 1)
			return;
		if (v.iov_len < want)
			want = v.iov_len;	/* one contiguous piece at a time */
		size_t outlen = 0, used = want;
		int done = 0;
		if (s->state == SMTP_S_DATA || s->bdat_error == NULL)
			done = smtp_data_feed(&s->dp, v.iov_base, want, out, &outlen, &used);
		if (s->msg != NULL && s->bdat_error == NULL)
			message_write(s, out, outlen);
		evbuffer_drain(in, used);
		if (s->state == SMTP_S_BDAT) {
			s->bdat_left -= used;
		} else if (done) {
			message_finish(s);
		}
	}
}

/* session_process - handle whatever the client sent, in order (pipelining) */
static void session_process(struct smtp_session *s)
{
	for (;;) {
		if (s->state == SMTP_S_CLOSING || s->conn == NULL)
			return;
		if (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT) {
			feed_data(s);
			if (s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT)
				return;		/* need more bytes */
			continue;
		}
		bool bare_lf;
		if (conn_output_full(s->conn))
			return;		/* resumes once the client reads its replies */
		/* conn_input each time: STARTTLS replaces the connection's buffers */
		int r = linereader_read(&s->lr, conn_input(s->conn), &s->line, &bare_lf);
		if (r == 0)
			return;
		if (r < 0) {
			if (s->state == SMTP_S_AUTH) {
				sasl_free(&s->sasl);
				s->sasl_active = false;
				set_state(s, SMTP_S_CMD);
				reply(s, "501 5.5.2 Authentication response too long");
			} else {
				reply(s, "500 5.5.2 Line too long");
			}
			if (bad_command(s))
				return;
			continue;
		}
		if (bare_lf) {
			/* RFC 5321 §2.3.8: only CRLF ends a line */
			reply(s, "500 5.5.2 Line must end with CRLF");
			if (bad_command(s))
				return;
			continue;
		}
		if (s->state == SMTP_S_AUTH) {
			auth_step(s, s->line.data);
			if (s->delay != NULL && evtimer_pending(s->delay, NULL))
				return;		/* paused for the failed-login delay */
			continue;
		}
		dispatch(s, buf_cstr(&s->line), s->line.len);
		if (s->delay != NULL && evtimer_pending(s->delay, NULL))
			return;
	}
}

static void smtp_on_input(void *ctx)
{
	session_process(ctx);
}

static void smtp_on_event(void *ctx, enum conn_event ev)
{
	struct smtp_session *s = ctx;
	if (ev == CONN_TIMEOUT) {
		log_info("%s: timeout from %s in state %s", s->id, conn_peer_ip(s->conn),
			 smtp_state_names[s->state]);
		close_with(s, "421 4.4.2 Timeout exceeded, closing connection");
		return;
	}
	if (s->msg != NULL)
		log_info("%s: %s: connection lost during message, discarded", s->id, s->msg->qid);
	session_end(s);
}

static void smtp_on_closed(void *ctx)
{
	session_end(ctx);
}

static const struct conn_ops smtp_conn_ops = {
	.on_input = smtp_on_input,
	.on_event = smtp_on_event,
	.on_closed = smtp_on_closed,
};

/* session_end - the one teardown: everything the session owns is freed here */
static void session_end(struct smtp_session *s)
{
	log_info("%s: disconnect from %s", s->id, conn_peer_ip(s->conn));
	txn_reset(s);
	conn_free(&s->conn);
	if (s->delay != NULL)
		event_free(s->delay);
	if (s->sasl_active)
		sasl_free(&s->sasl);
	buf_free(&s->line);
	free(s->helo);
	free(s->auth_user);
	LIST_REMOVE(s, link);
	s->srv->n_sessions--;
	free(s);
}

void smtp_server_init(struct smtp_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct queue *queue)
{
	memset(srv, 0, sizeof(*srv));
	srv->base = base;
	srv->cfg = cfg;
	srv->tls = tls;
	srv->accounts = accounts;
	srv->queue = queue;
	srv->spool_dir = config_path_in_data(cfg, "spool");
	LIST_INIT(&srv->sessions);
}

void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role)
{
	static unsigned long counter;
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->role = role;
	snprintf(s->id, sizeof(s->id), "s%lx.%lu", (long)getpid(), ++counter);
	SSL_CTX *implicit = role == ROLE_SUBMISSIONS ? srv->tls : NULL;
	s->conn = conn_new(srv->base, fd, peer, peerlen, implicit, SMTP_MAX_INPUT,
			   srv->cfg->max_connections_per_ip, &smtp_conn_ops, s);
	linereader_init(&s->lr, srv->cfg->smtp_max_line);
	buf_init(&s->line, 0);
	LIST_INSERT_HEAD(&srv->sessions, s, link);
	srv->n_sessions++;
	log_info("%s: connect from %s role=%s", s->id, conn_peer_ip(s->conn),
		 config_role_name(role));
	if (conn_over_ip_limit(s->conn)) {
		log_info("%s: too many connections from %s", s->id, conn_peer_ip(s->conn));
		close_with(s, "421 4.7.0 Too many connections from your address");
		return;
	}
	conn_set_timeout(s->conn, srv->cfg->smtp_timeout_command);
	reply(s, "220 %s ESMTP Tern", srv->cfg->hostname);
}

void smtp_server_drain(struct smtp_server *srv)
{
	srv->draining = true;
	struct smtp_session *s, *next;
	for (s = LIST_FIRST(&srv->sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (!s->have_mail && s->state == SMTP_S_CMD)
			close_with(s, "421 4.3.2 Service shutting down");
	}
}

void smtp_server_free(struct smtp_server *srv)
{
	while (!LIST_EMPTY(&srv->sessions))
		session_end(LIST_FIRST(&srv->sessions));
	free(srv->spool_dir);
}
