/* smtp/server - the SMTP session: state machine, command table, DATA and BDAT streaming */
#include "smtp/server.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "auth/login.h"
#include "auth/recipient.h"
#include "auth/sasl.h"
#include "auth/srs.h"
#include "inbound/inbound.h"
#include "lib/bgpool.h"
#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/session.h"
#include "lib/tls.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "mime/address.h"
#include "mime/hdrfilter.h"
#include "mime/header.h"
#include "queue/queue.h"
#include "queue/spool.h"
#include "smtp/parser.h"
#include "store/store.h"

#define SMTP_MAX_INPUT (256 * 1024)	/* input buffered before reading pauses */
#define SMTP_FEED_CHUNK 65536
#define SMTP_FROM_HEADER_MAX 65536	/* header bytes kept for sender_login_match_header */

enum smtp_state {
	SMTP_S_CMD,	/* reading commands */
	SMTP_S_AUTH,	/* reading SASL responses */
	SMTP_S_DATA,	/* reading the DATA stream */
	SMTP_S_BDAT,	/* reading a BDAT chunk */
};

static const char *const smtp_state_names[] = { "cmd", "auth", "data", "bdat" };

static const struct session_texts smtp_texts = {
	.bare_lf = "500 5.5.2 Line must end with CRLF",	/* RFC 5321 §2.3.8 */
	.too_many_errors = "421 4.7.0 Too many errors, closing connection",
	.timeout = "421 4.4.2 Timeout exceeded, closing connection",
	.too_slow = "421 4.4.2 Too slow, closing connection",
	.too_many_connections = "421 4.7.0 Too many connections from your address",
	.busy = "421 4.7.0 Too many connections, try again later",
	.too_many_commands = "421 4.7.0 Too many commands, closing connection",
	.drain = "421 4.3.2 Service shutting down",
};

/* A list of addresses without duplicates, with each one's DSN requests (RFC 3461). */
struct addr_list {
	char **v;
	char **notify;	/* NULL entries when not given */
	char **orcpt;
	size_t n;
};

struct smtp_session {
	struct session *ss;		/* the core: lines, replies, state, limits */
	struct smtp_server *srv;
	struct conn *conn;		/* session_conn(ss) */
	enum listen_role role;

	char *helo;
	bool esmtp;
	char *auth_user;
	unsigned auth_failures;
	bool seen_data;			/* a DATA or BDAT was accepted in this session */
	size_t bytes_before_data;
	unsigned commands_in_txn;

	/* the transaction */
	bool have_mail;
	uint64_t mail_usec;		/* when MAIL was accepted (metrics_now_usec) */
	char *sender;			/* "" for <> */
	char *dsn_ret;			/* RET= (RFC 3461), NULL when not given */
	char *dsn_envid;		/* ENVID= as received (xtext) */
	bool smtputf8;
	size_t n_rcpts;
	bool rcpt_tried;		/* a RCPT came, accepted or not */
	char *first_rcpt;
	struct addr_list locals, remotes;
	struct addr_list forwards;	/* remote alias targets: their copies get an SRS sender */
	struct inbound *inbound;	/* SPF/DKIM/DMARC of this transaction (MX role) */
	uint64_t msg_text_start;	/* spool offset of the message text (after Received) */
	struct spool_msg *msg;
	struct commit *commit;		/* msg on its way to disk (then msg is NULL) */
	uint64_t msg_bytes;		/* message text bytes (limit check) */
	bool too_big;
	struct smtp_data_parser dp;
	struct mime_hdrfilter hf;	/* the message's header cleanup on its way to the spool */
	char *hf_add[2];		/* Date: and Message-ID: to add (submission), or NULL */
	bool hdr_keep;			/* header bytes are kept in hdr (From: check) */
	buf hdr;			/* the filtered header block, up to SMTP_FROM_HEADER_MAX */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_open;			/* a BDAT sequence began */
	const char *bdat_error;		/* reply owed at the end of this chunk */

	struct sasl_state sasl;
	bool sasl_active;
	struct login *login;		/* a password check in flight */
};

static const struct session_ops smtp_session_ops;
struct commit;
static void commit_disown(struct commit *c);

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
	s->mail_usec = 0;
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
	addr_list_free(&s->forwards);
	inbound_free(&s->inbound);
	if (s->commit != NULL) {	/* it finishes without us (commit_done) */
		commit_disown(s->commit);
		s->commit = NULL;
	}
	spool_abort(&s->msg);
	for (size_t i = 0; i < 2; i++) {
		free(s->hf_add[i]);
		s->hf_add[i] = NULL;
	}
	s->msg_bytes = 0;
	s->too_big = false;
	s->hdr_keep = false;
	buf_free(&s->hdr);
	s->bdat_open = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->bdat_error = NULL;
	s->commands_in_txn = 0;
}

/* metrics_protocol - the protocol label of this session's numbers */
static enum metrics_protocol metrics_protocol(const struct smtp_session *s)
{
	return s->role == ROLE_SMTP ? METRICS_SMTP : METRICS_SUBMISSION;
}

/* smtp_on_end - the SMTP part of the one teardown: everything the session owns */
static void smtp_on_end(void *ctx)
{
	struct smtp_session *s = ctx;
	metrics_gauge_add(METRICS_CONNECTIONS + metrics_protocol(s), -1);
	if (s->msg != NULL)
		log_info("%s: %s: connection ended during message, discarded", session_id(s->ss),
			 s->msg->qid);
	txn_reset(s);
	login_cancel(&s->login);
	if (s->sasl_active)
		sasl_free(&s->sasl);
	free(s->helo);
	free(s->auth_user);
	free(s);
}

static bool role_is_submission(const struct smtp_session *s)
{
	return s->role == ROLE_SUBMISSION || s->role == ROLE_SUBMISSIONS;
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
		session_reply(s->ss, "501 5.5.4 %s", err);
		session_bad_command(s->ss);
		return;
	}
	txn_reset(s);
	free(s->helo);
	s->helo = xstrndup(args, strcspn(args, " \t"));
	s->esmtp = esmtp;
	const struct tern_config *cfg = s->srv->cfg;
	if (!esmtp) {
		session_reply(s->ss, "250 %s", cfg->hostname);
		return;
	}
	conn_printf(s->conn, "250-%s Hello %s [%s]\r\n", cfg->hostname, s->helo,
		    conn_peer_ip(s->conn));
	conn_printf(s->conn, "250-PIPELINING\r\n250-SIZE %llu\r\n250-8BITMIME\r\n"
			     "250-ENHANCEDSTATUSCODES\r\n",
		    (unsigned long long)cfg->max_message_size);
	if (!conn_is_tls(s->conn) && s->srv->tls != NULL)
		conn_printf(s->conn, "250-STARTTLS\r\n");
	if (session_secure(s->ss) && s->auth_user == NULL)
		conn_printf(s->conn, "250-AUTH PLAIN LOGIN\r\n");
	conn_printf(s->conn, "250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n");
}

static void cmd_starttls(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	if (*args != '\0') {
		session_reply(s->ss, "501 5.5.4 Syntax: STARTTLS");
		session_bad_command(s->ss);
		return;
	}
	if (s->srv->tls == NULL) {
		session_reply(s->ss, "454 4.7.0 TLS not available");
		return;
	}
	session_reply(s->ss, "220 2.0.0 Ready to start TLS");
	/* RFC 3207 §4.2: forget everything learnt from the client before TLS. */
	txn_reset(s);
	free(s->helo);
	s->helo = NULL;
	s->esmtp = false;
	free(s->auth_user);
	s->auth_user = NULL;
	session_set_authenticated(s->ss, false);
	if (conn_starttls(s->conn, s->srv->tls) < 0) {
		log_warnx("%s: STARTTLS setup failed", session_id(s->ss));
		session_close(s->ss, NULL);
	}
}

/* auth_done - the outcome of the password check (auth/login) */
static void auth_done(void *ctx, enum login_result r, const char *user)
{
	struct smtp_session *s = ctx;
	const char *mech = s->sasl.mech == SASL_PLAIN ? "PLAIN" : "LOGIN";
	sasl_free(&s->sasl);
	s->sasl_active = false;
	login_count(metrics_protocol(s), r);
	if (session_is_closing(s->ss))
		return;		/* timed out meanwhile */
	session_set_state(s->ss, SMTP_S_CMD);
	if (r == LOGIN_OK) {
		s->auth_user = xstrdup(user);
		session_set_authenticated(s->ss, true);
		log_info("%s: authenticated user=%s method=%s", session_id(s->ss), user, mech);
		session_reply(s->ss, "235 2.7.0 Authentication successful");
	} else if (r == LOGIN_FAILED) {
		if (++s->auth_failures >= s->srv->cfg->smtp_max_auth_failures) {
			session_close(s->ss, "421 4.7.0 Too many authentication failures");
			return;
		}
		session_reply(s->ss, "535 5.7.8 Authentication credentials invalid");
	} else {
		session_reply(s->ss, "454 4.7.0 Temporary authentication failure");
	}
	if (session_draining(s->ss) && !s->have_mail)
		session_close(s->ss, "421 4.3.2 Service shutting down");
	session_resume(s->ss);
}

/* auth_step - feed one SASL response (NULL: no initial response). Once the credentials
 * are complete the session stays in AUTH, suspended, until auth_done. */
static void auth_step(struct smtp_session *s, const char *response)
{
	const char *text;
	int r = login_sasl_feed(s->srv->login, &s->sasl, response, conn_peer(s->conn),
				session_id(s->ss), auth_done, s, &s->login, &text);
	session_set_state(s->ss, r >= 0 ? SMTP_S_AUTH : SMTP_S_CMD);
	if (r == 0) {
		session_reply(s->ss, "334 %s", text);
	} else if (r == 1) {
		session_suspend(s->ss);
	} else {
		s->sasl_active = false;
		session_reply(s->ss,
			      r == -2 ? "501 5.0.0 Authentication cancelled" : "501 5.5.2 %s",
			      text);
		session_bad_command(s->ss);
	}
}

static void cmd_auth(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	if (s->helo == NULL || !s->esmtp) {
		session_reply(s->ss, "503 5.5.1 Send EHLO first");
		session_bad_command(s->ss);
		return;
	}
	if (s->have_mail) {
		session_reply(s->ss, "503 5.5.1 AUTH not allowed during a mail transaction");
		session_bad_command(s->ss);
		return;
	}
	char mech[32];
	size_t ml = strcspn(args, " ");
	enum sasl_mech m;
	if (ml == 0 || ml >= sizeof(mech)) {
		session_reply(s->ss, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		session_bad_command(s->ss);
		return;
	}
	memcpy(mech, args, ml);
	mech[ml] = '\0';
	if (sasl_mech_parse(mech, &m) < 0) {
		session_reply(s->ss, "504 5.5.4 Unrecognized authentication type");
		session_bad_command(s->ss);
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

static bool domain_is_local(void *ctx, const char *domain)
{
	return config_is_local_domain(ctx, domain);
}

/* sender_allowed - an authenticated client may use only its own address, its aliases and
 * the senders listed for it (sender_login_match; Postfix's reject_sender_login_mismatch):
 * else it could pass itself off as another user, or as anyone. Replies when it says no. */
static bool sender_allowed(struct smtp_session *s, const char *sender)
{
	const struct tern_config *cfg = s->srv->cfg;
	if (s->auth_user == NULL || !cfg->sender_login_match)
		return true;
	int r = accounts_sender_allowed(s->srv->accounts, s->auth_user, sender, domain_is_local,
					(void *)cfg);
	if (r < 0) {
		session_reply(s->ss, "451 4.3.0 Temporary lookup failure");
		return false;
	}
	if (r == 0) {
		char safe[128];
		log_info("%s: sender denied user=%s from=<%s>", session_id(s->ss), s->auth_user,
			 log_sanitize(safe, sizeof(safe), sender, strlen(sender)));
		session_reply(s->ss, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s",
			      sender, s->auth_user);
		return false;
	}
	return true;
}

static void cmd_mail(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	if (s->helo == NULL) {
		session_reply(s->ss, "503 5.5.1 Send HELO/EHLO first");
		session_bad_command(s->ss);
		return;
	}
	if (s->have_mail) {
		session_reply(s->ss, "503 5.5.1 Nested MAIL command");
		session_bad_command(s->ss);
		return;
	}
	if (role_is_submission(s) && s->auth_user == NULL) {
		session_reply(s->ss, "530 5.7.0 Authentication required");
		return;
	}
	struct smtp_path_args pa;
	const char *err;
	if (smtp_parse_mail_from(args, &pa, &err) < 0) {
		session_reply(s->ss, "501 5.5.4 %s", err);
		session_bad_command(s->ss);
		return;
	}
	s->smtputf8 = false;
	const char *bad = mail_params(s, &pa);
	if (bad == NULL && !s->esmtp && pa.n_params > 0)
		bad = "555 5.5.4 Parameters need EHLO";
	if (bad == NULL && pa.path.utf8 && !s->smtputf8)
		bad = "553 5.6.7 Non-ASCII address needs SMTPUTF8";
	if (bad != NULL)
		session_reply(s->ss, "%s", bad);
	/* sender_allowed replies itself when it says no */
	if (bad != NULL || (!pa.path.null && !sender_allowed(s, pa.path.address))) {
		smtp_path_args_free(&pa);
		s->smtputf8 = false;
		free(s->dsn_ret);
		free(s->dsn_envid);
		s->dsn_ret = s->dsn_envid = NULL;
		return;
	}
	s->have_mail = true;
	s->mail_usec = metrics_now_usec();
	s->sender = xstrdup(pa.path.null ? "" : pa.path.address);
	smtp_path_args_free(&pa);
	/* mail from other MTAs: SPF starts now, in the background (inbound/) */
	if (s->role == ROLE_SMTP && s->auth_user == NULL && s->srv->cfg->inbound_checks &&
	    s->srv->dns != NULL)
		s->inbound = inbound_begin(s->srv->base, s->srv->dns, s->srv->cfg,
					   conn_peer(s->conn), s->helo, s->sender);
	session_reply(s->ss, "250 2.1.0 Ok");
}

static void cmd_rcpt(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	const struct tern_config *cfg = s->srv->cfg;
	if (!s->have_mail) {
		session_reply(s->ss, "503 5.5.1 Need MAIL before RCPT");
		session_bad_command(s->ss);
		return;
	}
	if (s->bdat_open) {
		session_reply(s->ss, "503 5.5.1 RCPT not allowed after BDAT");
		session_bad_command(s->ss);
		return;
	}
	struct smtp_path_args pa;
	const char *err;
	s->rcpt_tried = true;
	if (smtp_parse_rcpt_to(args, &pa, &err) < 0) {
		session_reply(s->ss, "501 5.5.4 %s", err);
		session_bad_command(s->ss);
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
		session_reply(s->ss, "%s", bad);
	} else if (utf8 && !s->smtputf8) {
		session_reply(s->ss, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
	} else if (s->n_rcpts >= cfg->smtp_max_recipients) {
		session_reply(s->ss, "452 4.5.3 Too many recipients");
	} else if (!local && s->auth_user == NULL) {
		log_info("%s: relay denied from=<%s> to=<%s> ip=%s", session_id(s->ss), s->sender,
			 addr,
			 conn_peer_ip(s->conn));
		session_reply(s->ss, "554 5.7.1 <%s>: Relay access denied", addr);
	} else {
		struct recipient_targets t;
		int r = recipient_resolve(s->srv->accounts, cfg, addr, &t);
		if (r == -2) {
			log_info("%s: invalid SRS address to=<%s> ip=%s", session_id(s->ss), addr,
				 conn_peer_ip(s->conn));
			session_reply(s->ss, "550 5.7.1 <%s>: Invalid or expired SRS address", addr);
		} else if (r < 0) {
			session_reply(s->ss, "451 4.3.0 Temporary lookup failure");
		} else if (r == 0) {
			session_reply(s->ss,
				      "550 5.1.1 <%s>: Recipient address rejected: User unknown", addr);
		} else {
			for (size_t i = 0; i < t.n_remotes; i++)
				addr_list_add(t.forwarded[i] && cfg->srs && cfg->srs_key_ready
						      ? &s->forwards : &s->remotes,
					      t.remotes[i], notify, orcpt);
			for (size_t i = 0; i < t.n_locals; i++)
				addr_list_add(&s->locals, t.locals[i], notify, orcpt);
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
	session_reply(s->ss, "250 2.1.5 Ok");
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

/* Header fields removed from every message, whatever the role (as Postfix's cleanup does):
 * blind copies must not show, and the Return-Path is ours alone (spool_open writes it). */
static const char *const cleanup_drop[] = { "Bcc", "Resent-Bcc", "Return-Path", NULL };

static void cleanup_emit(void *ctx, const void *p, size_t n)
{
	struct smtp_session *s = ctx;
	spool_write(s->msg, p, n);
	if (!s->hdr_keep)
		return;
	/* keep the header block for the From: check: up to its blank line, or the cap */
	size_t room = SMTP_FROM_HEADER_MAX - s->hdr.len;
	(void)buf_append(&s->hdr, p, n < room ? n : room);
	const char *d = s->hdr.data;
	size_t from = s->hdr.len > n + 3 ? s->hdr.len - n - 3 : 0;
	for (size_t i = from; i + 3 < s->hdr.len; i++) {
		if (d[i] == '\r' && d[i + 1] == '\n' && d[i + 2] == '\r' && d[i + 3] == '\n') {
			s->hdr.len = i + 4;
			s->hdr_keep = false;
			return;
		}
	}
	if (s->hdr.len >= SMTP_FROM_HEADER_MAX)
		s->hdr_keep = false;
}

/* from_header_allowed - with sender_login_match_header, every address in the From: fields
 * of a logged-in client's message must be one it may use as MAIL FROM (else a 550 is sent
 * here): the envelope check alone lets a client show any author to the recipient. */
static bool from_header_allowed(struct smtp_session *s)
{
	const struct tern_config *cfg = s->srv->cfg;
	if (s->auth_user == NULL || !cfg->sender_login_match || !cfg->sender_login_match_header)
		return true;
	struct mime_headers h;
	const char *err;
	struct mime_header_limits lim = { SMTP_FROM_HEADER_MAX, 1000 };
	mime_headers_init(&h);
	(void)mime_headers_parse(&h, s->hdr.data ? s->hdr.data : "", s->hdr.len, true, &lim, &err);
	bool ok = true;
	for (int i = mime_headers_find(&h, s->hdr.data, "From", 0); i >= 0 && ok;
	     i = mime_headers_find(&h, s->hdr.data, "From", (unsigned)i + 1)) {
		const struct mime_header_field *f = &h.fields[i];
		buf v;	/* unfolded */
		buf_init(&v, 0);
		for (size_t k = 0; k < f->value_len; k++) {
			char c = s->hdr.data[f->value_offset + k];
			if (c != '\r' && c != '\n')
				buf_append(&v, &c, 1);
		}
		struct mime_address *list = NULL;
		unsigned n = 0;
		(void)mime_address_list_parse(v.data ? v.data : "", v.len, 0, &list, &n);
		for (unsigned k = 0; k < n && ok; k++) {
			if (list[k].kind != MIME_ADDR_MAILBOX)
				continue;
			char *addr = xasprintf("%s@%s", list[k].mailbox,
					       list[k].host ? list[k].host : "");
			int r = list[k].host == NULL ? 0
				: accounts_sender_allowed(s->srv->accounts, s->auth_user, addr,
							  domain_is_local, (void *)cfg);
			if (r <= 0) {
				char safe[128];
				log_info("%s: sender denied user=%s header_from=<%s>", session_id(s->ss),
					 s->auth_user, log_sanitize(safe, sizeof(safe), addr,
								    strlen(addr)));
				if (r < 0)
					session_reply(s->ss, "451 4.3.0 Temporary lookup failure");
				else
					session_reply(s->ss, "550 5.7.1 <%s>: From: header address "
							     "rejected: not owned by user %s",
						      safe, s->auth_user);
				ok = false;
			}
			free(addr);
		}
		mime_address_list_free(&list, n);
		buf_free(&v);
	}
	mime_headers_free(&h);
	return ok;
}

/* cleanup_begin - set up the header filter: on submission, the Date: and Message-ID: that
 * a message lacks are added (RFC 6409 section 8.2 and 8.3); mail from other MTAs is only
 * cleaned of Bcc and Return-Path */
static void cleanup_begin(struct smtp_session *s)
{
	size_t n_add = 0;
	if (role_is_submission(s)) {
		char date[64], stamp[32];
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
		strftime(stamp, sizeof(stamp), "%Y%m%d%H%M%S", &tm);
		s->hf_add[n_add++] = xasprintf("Date: %s\r\n", date);
		s->hf_add[n_add++] = xasprintf("Message-ID: <%s.%s@%s>\r\n", stamp, s->msg->qid,
					       s->srv->cfg->hostname);
	}
	mime_hdrfilter_init(&s->hf, cleanup_drop, (const char *const *)s->hf_add, n_add,
			    cleanup_emit, s);
	buf_free(&s->hdr);
	buf_init(&s->hdr, SMTP_FROM_HEADER_MAX);
	s->hdr_keep = s->auth_user != NULL && s->srv->cfg->sender_login_match &&
		      s->srv->cfg->sender_login_match_header;
}

/* message_begin - shared start of DATA and BDAT: open the spool file; false on failure */
static bool message_begin(struct smtp_session *s)
{
	char *err = NULL;
	if (spool_open(s->srv->spool_dir, s->sender, &s->msg, &err) < 0) {
		log_warnx("%s: %s", session_id(s->ss), err);
		free(err);
		return false;
	}
	received_header(s);
	s->msg_text_start = s->msg->size;
	cleanup_begin(s);
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
	mime_hdrfilter_feed(&s->hf, p, n);
}

/* deliver - spool_deliver with the DSN requests of every recipient, locals first; local
 * copies into mailbox (NULL: INBOX); forwarded copies with the SRS sender */
static int deliver(struct smtp_session *s, const char *mailbox, const struct spool_link *links,
		   size_t queued_already, char **error_r)
{
	const struct tern_config *cfg = s->srv->cfg;
	struct addr_list fwd_plain = { 0 };
	char *srs_sender = NULL;
	if (s->forwards.n > 0)
		srs_sender = srs_forward(cfg->srs_key, sizeof(cfg->srs_key), s->sender,
					 cfg->domains[0], time(NULL));
	if (s->forwards.n > 0 && srs_sender == NULL) {
		/* nothing to rewrite (<>, or a sender of ours): ordinary remote copies */
		for (size_t i = 0; i < s->forwards.n; i++)
			addr_list_add(&s->remotes, s->forwards.v[i], s->forwards.notify[i],
				      s->forwards.orcpt[i]);
		fwd_plain = s->forwards;
		s->forwards = (struct addr_list){ 0 };
	}
	size_t n = s->locals.n + s->remotes.n;
	const char **notify = xcalloc(n + 1, sizeof(char *));
	const char **orcpt = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < s->locals.n; i++) {
		notify[i] = s->locals.notify[i];
		orcpt[i] = s->locals.orcpt[i];
	}
	for (size_t i = 0; i < s->remotes.n; i++) {
		notify[s->locals.n + i] = s->remotes.notify[i];
		orcpt[s->locals.n + i] = s->remotes.orcpt[i];
	}
	struct queue_dsn dsn = { .ret = s->dsn_ret, .envid = s->dsn_envid, .notify = notify,
				 .orcpt = orcpt };
	struct spool_delivery_opts o = {
		.mailbox = mailbox, .fwd_sender = srs_sender,
		.fwd_rcpts = (const char *const *)s->forwards.v, .n_fwd = s->forwards.n,
		.fwd_notify = (const char *const *)s->forwards.notify,
		.fwd_orcpt = (const char *const *)s->forwards.orcpt,
		.synced = links != NULL, .links = links, .queued_already = queued_already,
	};
	int queued = spool_deliver_opts(s->msg, cfg->data_dir, cfg->hostname,
					(const char *const *)s->locals.v, s->locals.n,
					s->srv->queue, s->sender,
					(const char *const *)s->remotes.v,
					queued_already > 0 ? 0 : s->remotes.n, &dsn, &o, error_r);
	free(notify);
	free(orcpt);
	free(srs_sender);
	addr_list_free(&fwd_plain);
	return queued;
}

/* txn_observe - the transaction's time, MAIL to the final reply after its data (metrics) */
static void txn_observe(const struct smtp_session *s)
{
	if (s->mail_usec != 0)
		metrics_observe(METRICS_SMTP_TRANSACTION, metrics_since_usec(s->mail_usec));
}

/* message_done - the transaction is over, whatever its outcome */
static void message_done(struct smtp_session *s)
{
	txn_observe(s);
	txn_reset(s);
	session_set_state(s->ss, SMTP_S_CMD);
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_command);
	if (session_draining(s->ss))
		session_close(s->ss, "421 4.3.2 Service shutting down");
}

/* message_id_of - the Message-ID field's value (unfolded, trimmed; at most 998 bytes) in
 * the first 16 KiB of the spool file's header, or NULL. For the trace journal only: one
 * pread of a file the page cache holds. */
static char *message_id_of(struct spool_msg *m)
{
	char head[16384];
	if (spool_flush(m) < 0)
		return NULL;
	ssize_t n = pread(m->fd, head, sizeof(head) - 1, (off_t)m->body_offset);
	if (n <= 0)
		return NULL;
	head[n] = '\0';
	for (char *p = head; p != NULL && *p && !(p[0] == '\r' && p[1] == '\n');) {
		if (strncasecmp(p, "Message-ID:", 11) == 0) {
			buf v;
			buf_init(&v, 998);
			for (char *q = p + 11; *q; q++) {
				if (*q == '\r' || *q == '\n') {
					if (*q == '\n' && q[1] != ' ' && q[1] != '\t')
						break;
					continue;
				}
				if (buf_append(&v, q, 1) < 0)
					break;
			}
			char *id = xstrdup(buf_cstr(&v));
			buf_free(&v);
			char *a = id + strspn(id, " \t");
			size_t len = strlen(a);
			while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '\t'))
				len--;
			memmove(id, a, len);
			id[len] = '\0';
			return id;
		}
		p = strchr(p, '\n');
		p = p != NULL ? p + 1 : NULL;
	}
	return NULL;
}

/* trace_received - the trace journal's "received" event (the client, the session, the
 * envelope, the Message-ID) and one "rcpt" event per recipient, before the delivery */
static void trace_received(struct smtp_session *s, const char *mailbox)
{
	SSL *ssl = conn_is_tls(s->conn) ? conn_ssl(s->conn) : NULL;
	char *msgid = message_id_of(s->msg);
	trace_event(s->msg->qid, "received",
		    "session=%s role=%s client=%s helo=%s user=%s tls=%s cipher=%s from=%s "
		    "size=%llu nrcpt=%zu msgid=%s folder=%s",
		    session_id(s->ss), config_role_name(s->role), conn_peer_ip(s->conn),
		    s->helo ? s->helo : "", s->auth_user ? s->auth_user : "",
		    ssl ? SSL_get_version(ssl) : "no", ssl ? SSL_get_cipher_name(ssl) : "",
		    s->sender, (unsigned long long)s->msg_bytes, s->n_rcpts, msgid ? msgid : "",
		    mailbox ? mailbox : "");
	free(msgid);
	const struct addr_list *lists[] = { &s->locals, &s->remotes, &s->forwards };
	static const char *const kinds[] = { "local", "remote", "forward" };
	for (size_t k = 0; k < 3; k++)
		for (size_t i = 0; i < lists[k]->n; i++)
			trace_event(s->msg->qid, "rcpt", "to=%s route=%s notify=%s",
				    lists[k]->v[i], kinds[k],
				    lists[k]->notify[i] ? lists[k]->notify[i] : "");
}

/* message_deliver - put the message where it goes (local copies into mailbox, NULL: INBOX;
 * links: what the sync threads did already, or NULL) and answer */
static void message_deliver(struct smtp_session *s, const char *mailbox,
			    const struct spool_link *links, size_t queued_already)
{
	char *err = NULL;
	int queued = 0;
	if (trace_on && !s->msg->failed)
		trace_received(s, mailbox);
	if (s->msg->failed || (queued = deliver(s, mailbox, links, queued_already, &err)) < 0) {
		TRACE(s->msg->qid, "refused", "reply=%s", s->msg->no_space ? "452 4.3.1" : "451 4.3.0");
		log_warnx("%s: %s: message not accepted: %s", session_id(s->ss), s->msg->qid,
			  err ? err : "write error");
		free(err);
		if (s->msg->no_space)	/* RFC 3463: 4.3.1 mail system full */
			session_reply(s->ss, "452 4.3.1 Insufficient system storage, try again later");
		else
			session_reply(s->ss, "451 4.3.0 Local error in processing, try again later");
		return;
	}
	log_info("%s: %s: from=<%s> size=%llu nrcpt=%zu local=%zu queued=%zu%s%s",
		 session_id(s->ss), s->msg->qid, s->sender, (unsigned long long)s->msg_bytes,
		 s->n_rcpts, s->locals.n, (size_t)queued, s->auth_user ? " auth=yes" : "",
		 mailbox ? " folder=Junk" : "");
	session_reply(s->ss, "250 2.0.0 Ok: queued as %s", s->msg->qid);
	metrics_count(METRICS_RECEIVED + metrics_protocol(s));
	TRACE(s->msg->qid, "accepted", "reply=%s queued=%d", "250 2.0.0", queued);
	spool_close(&s->msg);
	if (queued > 0)
		queue_wake(s->srv->spool_dir);
}

/* ---- group commit ------------------------------------------------------------------ */

/* A message on its way to disk. The spool file's fsync, the links of its local copies into
 * their new/ and the fsyncs of those directories run on the worker's sync threads
 * (lib/bgpool), so the loop serves the other sessions meanwhile, and the fsyncs of
 * concurrent sessions are committed together by the file system. The index rows, the queue
 * and the 250 follow on the loop (commit_done): never before the syncs. */
struct commit {
	struct bgjob job;		/* first: the pool hands back &job */
	struct smtp_session *s;		/* NULL: the session ended meanwhile */
	struct spool_msg *msg;		/* the session's, lent for the journey */
	const char *mailbox;		/* "Junk" or NULL */
	struct spool_link *links;	/* per local recipient */
	size_t n_links;
	int sync_err;			/* errno of the spool file's fsync */
	/* the remote recipients, queued by the thread too (copies: the session may end) */
	char *spool_dir, *sender, *ret, *envid;
	struct addr_list remotes;
	int queue_rc;			/* 0: queued; -1: the loop tries again and answers */
};

/* The worker's queue.db group commit. A sync thread with remote recipients to queue puts
 * its message on qgc's list; the first thread to find no transaction in progress becomes
 * the writer: it takes every message on the list (its own, and those that arrived while the
 * last transaction synced) and queues them in one transaction (queue_enqueue_batch: one lock,
 * one sync), then wakes their threads. So the worker holds one connection to queue.db and
 * takes its write lock once per batch, not once per message, and no session gets its 250
 * before the transaction that holds its rows is synced. No timer: a lone message is written
 * at once. The connection is opened by the first writer and closed at exit. */
struct qgc_entry {
	struct qgc_entry *next;
	struct commit *c;
	bool done;
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cond;		/* a batch was written */
	struct qgc_entry *head;		/* waiting for the next transaction, under mu */
	bool writing;			/* a thread is writing a batch, under mu */
	struct queue *q;		/* the writer's alone */
} qgc = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, false, NULL };

static void qgc_close(void)
{
	queue_close(&qgc.q);
}

/* qgc_write - on the writer's thread, without mu: batch (a list) into queue.db */
static void qgc_write(struct qgc_entry *batch)
{
	size_t n = 0;
	for (struct qgc_entry *e = batch; e != NULL; e = e->next)
		n++;
	char *err = NULL;
	if (qgc.q == NULL && queue_open(batch->c->spool_dir, &qgc.q, &err) == 0)
		atexit(qgc_close);
	if (qgc.q == NULL) {
		free(err);	/* the loop tries again and logs why */
		for (struct qgc_entry *e = batch; e != NULL; e = e->next)
			e->c->queue_rc = -1;
		return;
	}
	struct queue_entry *qe = xcalloc(n, sizeof(*qe));
	struct queue_dsn *dsn = xcalloc(n, sizeof(*dsn));
	size_t i = 0;
	for (struct qgc_entry *e = batch; e != NULL; e = e->next, i++) {
		struct commit *c = e->c;
		const struct spool_msg *m = c->msg;
		dsn[i] = (struct queue_dsn){ .ret = c->ret, .envid = c->envid,
					     .notify = (const char *const *)c->remotes.notify,
					     .orcpt = (const char *const *)c->remotes.orcpt };
		qe[i] = (struct queue_entry){ .qid = m->qid, .src_path = m->path,
					      .body_offset = m->body_offset,
					      .size = m->size - m->body_offset, .sender = c->sender,
					      .rcpts = (const char *const *)c->remotes.v,
					      .n_rcpts = c->remotes.n, .dsn = &dsn[i] };
	}
	(void)queue_enqueue_batch(qgc.q, qe, n, &err);
	free(err);	/* the loop tries again (each message alone) and logs why */
	i = 0;
	for (struct qgc_entry *e = batch; e != NULL; e = e->next, i++)
		e->c->queue_rc = qe[i].rc == 0 ? 0 : -1;
	free(qe);
	free(dsn);
}

/* commit_enqueue - on the thread: the remote recipients into queue.db (with those of the
 * other threads' messages), or queue_rc -1 */
static void commit_enqueue(struct commit *c)
{
	struct qgc_entry me = { .c = c };
	pthread_mutex_lock(&qgc.mu);
	me.next = qgc.head;
	qgc.head = &me;
	while (!me.done) {
		if (qgc.writing) {
			pthread_cond_wait(&qgc.cond, &qgc.mu);
			continue;
		}
		/* nobody is writing: write everything waiting, this message with it */
		struct qgc_entry *batch = NULL;
		while (qgc.head != NULL) {	/* reversed: the oldest first */
			struct qgc_entry *e = qgc.head;
			qgc.head = e->next;
			e->next = batch;
			batch = e;
		}
		qgc.writing = true;
		pthread_mutex_unlock(&qgc.mu);
		qgc_write(batch);
		pthread_mutex_lock(&qgc.mu);
		/* each entry lives on its thread's stack: read next before marking it done */
		for (struct qgc_entry *e = batch, *next; e != NULL; e = next) {
			next = e->next;
			e->done = true;
		}
		qgc.writing = false;
		pthread_cond_broadcast(&qgc.cond);
	}
	pthread_mutex_unlock(&qgc.mu);
}

/* commit_work - on a sync thread: blocking calls on paths and the spool fd only */
static void commit_work(struct bgjob *j)
{
	struct commit *c = (struct commit *)j;
	if (fsync(c->msg->fd) < 0) {
		c->sync_err = errno;
		return;
	}
	for (size_t i = 0; i < c->n_links; i++) {
		struct spool_link *l = &c->links[i];
		if (l->dst != NULL && link(c->msg->path, l->dst) < 0)
			l->err = errno;	/* ENOENT: no maildir yet; the loop makes it */
	}
	/* one fsync per directory: several recipients in one mailbox share it */
	for (size_t i = 0; i < c->n_links; i++) {
		struct spool_link *l = &c->links[i];
		bool done = false;
		for (size_t k = 0; k < i && !done; k++)
			done = c->links[k].dst != NULL && strcmp(c->links[k].dir, l->dir) == 0;
		if (l->dst == NULL || l->err != 0 || done || fs_fsync_dir(l->dir) == 0)
			continue;
		int e = errno;
		for (size_t k = i; k < c->n_links; k++) {
			struct spool_link *m = &c->links[k];
			if (m->dst != NULL && m->err == 0 && strcmp(m->dir, l->dir) == 0) {
				unlink(m->dst);
				m->err = e;
			}
		}
	}
	if (c->remotes.n > 0)
		commit_enqueue(c);
}

static void commit_free(struct commit *c)
{
	for (size_t i = 0; i < c->n_links; i++) {
		free(c->links[i].dst);
		free(c->links[i].dir);
	}
	free(c->links);
	free(c->spool_dir);
	free(c->sender);
	free(c->ret);
	free(c->envid);
	addr_list_free(&c->remotes);
	free(c);
}

/* commit_done - on the loop: index, queue and answer; or, for a session that ended, take
 * the copies back (the client was never told 250) */
static void commit_done(struct bgjob *j)
{
	struct commit *c = (struct commit *)j;
	struct smtp_session *s = c->s;
	if (s != NULL && session_is_closing(s->ss)) {	/* timed out meanwhile */
		s->commit = NULL;
		s = NULL;
	}
	if (s == NULL) {
		log_info("%s: connection ended before the reply, message discarded",
			 c->msg->qid);
		for (size_t i = 0; i < c->n_links; i++)
			if (c->links[i].dst != NULL && c->links[i].err == 0)
				unlink(c->links[i].dst);
		spool_abort(&c->msg);
		commit_free(c);
		return;
	}
	s->commit = NULL;
	s->msg = c->msg;
	if (c->sync_err != 0) {
		log_warnx("%s: %s: fsync: %s", session_id(s->ss), s->msg->qid,
			  strerror(c->sync_err));
		s->msg->failed = true;
		s->msg->no_space = c->sync_err == ENOSPC || c->sync_err == EDQUOT;
	}
	message_deliver(s, c->mailbox, c->sync_err == 0 ? c->links : NULL,
			c->sync_err == 0 && c->remotes.n > 0 && c->queue_rc == 0 ? c->remotes.n : 0);
	commit_free(c);
	message_done(s);
	session_resume(s->ss);
}

static void commit_disown(struct commit *c)
{
	c->s = NULL;
}

/* message_accept - make the message durable and answer: on the sync threads when the worker
 * has them (true: the session waits, suspended, for commit_done), else here (false) */
static bool message_accept(struct smtp_session *s, const char *mailbox)
{
	if (s->srv->sync == NULL || s->msg->failed || spool_flush(s->msg) < 0) {
		message_deliver(s, mailbox, NULL, 0);
		return false;
	}
	struct commit *c = xcalloc(1, sizeof(*c));
	c->job.work = commit_work;
	c->job.done = commit_done;
	c->s = s;
	c->mailbox = mailbox;
	c->n_links = s->locals.n;
	c->links = xcalloc(c->n_links + 1, sizeof(*c->links));
	for (size_t i = 0; i < s->locals.n; i++) {
		/* a recipient who asked for a success report goes through the queue */
		const char *notify = s->locals.notify[i];
		char *err = NULL;
		if ((notify != NULL && strstr(notify, "SUCCESS") != NULL) ||
		    store_deliver_prepare(s->srv->cfg->data_dir, s->locals.v[i], mailbox,
					  s->msg->path, s->srv->cfg->hostname, &c->links[i].dst,
					  &c->links[i].dir, &err) < 0) {
			free(err);	/* spool_deliver tries again and says why */
			c->links[i].dst = c->links[i].dir = NULL;
		}
	}
	/* Plain remote recipients are queued by the thread as well. Not forwarded copies (their
	 * SRS sender is made on the loop), nor recipients when a local one wants a success
	 * report (queued with them on the loop, under the same qid). */
	bool report = false;
	for (size_t i = 0; i < c->n_links; i++)
		report = report || (s->locals.notify[i] != NULL &&
				    strstr(s->locals.notify[i], "SUCCESS") != NULL);
	if (s->remotes.n > 0 && s->forwards.n == 0 && !report && s->srv->queue != NULL) {
		c->spool_dir = xstrdup(s->srv->spool_dir);
		c->sender = xstrdup(s->sender);
		c->ret = s->dsn_ret ? xstrdup(s->dsn_ret) : NULL;
		c->envid = s->dsn_envid ? xstrdup(s->dsn_envid) : NULL;
		for (size_t i = 0; i < s->remotes.n; i++)
			addr_list_add(&c->remotes, s->remotes.v[i], s->remotes.notify[i],
				      s->remotes.orcpt[i]);
	}
	c->msg = s->msg;
	s->msg = NULL;
	s->commit = c;
	session_set_state(s->ss, SMTP_S_CMD);
	session_suspend(s->ss);
	bgpool_submit(s->srv->sync, &c->job);
	return true;
}

/* inbound_done - the verdict of the inbound checks: reject, or put the
 * Authentication-Results field on top (dropping forged ones) and deliver */
static void inbound_done(void *ctx, const struct inbound_verdict *v)
{
	struct smtp_session *s = ctx;
	if (session_is_closing(s->ss))
		return;		/* timed out meanwhile: the teardown frees the transaction */
	log_info("%s: %s: inbound %s", session_id(s->ss), s->msg->qid, v->summary);
	if (v->action == INBOUND_REJECT) {
		log_info("%s: %s: message rejected: %s", session_id(s->ss), s->msg->qid, v->reply);
		session_reply(s->ss, "%s", v->reply);
	} else {
		char *err = NULL;
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (spool_rewrite(s->msg, s->msg->body_offset, v->header, strlen(v->header), v->cuts,
				  v->n_cuts, &err) < 0) {
			log_warnx("%s: %s", session_id(s->ss), err);
			free(err);
			s->msg->failed = true;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		log_debug("%s: %s: header rewrite %ld us", session_id(s->ss), s->msg->qid,
			  (long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000));
		if (message_accept(s, v->action == INBOUND_QUARANTINE ? "Junk" : NULL))
			return;	/* commit_done goes on */
	}
	message_done(s);
	session_resume(s->ss);
}

/* message_finish - the message is complete: check it, make it durable, answer */
static void message_finish(struct smtp_session *s)
{
	mime_hdrfilter_finish(&s->hf);
	if (s->too_big) {
		log_info("%s: message rejected: size over %llu", session_id(s->ss),
			 (unsigned long long)s->srv->cfg->max_message_size);
		session_reply(s->ss, "552 5.3.4 Message size exceeds fixed maximum message size");
	} else if (s->dp.bare_eol) {
		log_info("%s: message rejected: bare CR or LF", session_id(s->ss));
		session_reply(s->ss,
			      "550 5.6.0 Message contains bare CR or LF characters; lines must end "
			      "with CRLF");
	} else if (s->dp.line_too_long) {
		log_info("%s: message rejected: line over %zu octets", session_id(s->ss),
			 s->srv->cfg->smtp_max_text_line);
		session_reply(s->ss, "550 5.6.0 Message contains a line longer than %zu octets",
		      s->srv->cfg->smtp_max_text_line);
	} else if (!from_header_allowed(s)) {
		/* answered there */
	} else if (s->inbound != NULL && spool_flush(s->msg) == 0) {
		/* wait for the checks (SPF began at MAIL FROM) without holding the loop; the
		 * message is complete: what the client pipelined after it is commands */
		session_set_state(s->ss, SMTP_S_CMD);
		session_suspend(s->ss);
		inbound_finish(s->inbound, s->msg->path, s->msg_text_start, s->msg->size,
			       inbound_done, s);
		return;
	} else {
		struct spool_range *cuts = NULL;
		size_t n = 0;
		char *err = NULL;
		/* unchecked mail: only fields that claim our authserv-id go (RFC 8601 §5) */
		if (!s->msg->failed && spool_flush(s->msg) == 0)
			n = inbound_forged_fields(s->srv->cfg, s->msg->path, s->msg_text_start,
						  s->msg->size, &cuts);
		if (n > 0 && spool_rewrite(s->msg, s->msg->body_offset, "", 0, cuts, n, &err) < 0) {
			log_warnx("%s: %s", session_id(s->ss), err);
			free(err);
			s->msg->failed = true;
		}
		free(cuts);
		if (message_accept(s, NULL))
			return;	/* commit_done goes on */
	}
	message_done(s);
}

static void cmd_data(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	if (*args != '\0') {
		session_reply(s->ss, "501 5.5.4 Syntax: DATA");
		session_bad_command(s->ss);
		return;
	}
	if (!s->have_mail) {
		session_reply(s->ss, "503 5.5.1 Need MAIL command");
		session_bad_command(s->ss);
		return;
	}
	if (s->bdat_open) {
		session_reply(s->ss, "503 5.5.1 DATA not allowed after BDAT");
		session_bad_command(s->ss);
		return;
	}
	if (s->n_rcpts == 0) {
		/* As Postfix: 503 when no RCPT came, 554 when every one was refused. */
		if (s->rcpt_tried) {
			session_reply(s->ss, "554 5.5.1 No valid recipients");
		} else {
			session_reply(s->ss, "503 5.5.1 Need RCPT command");
			session_bad_command(s->ss);
		}
		return;
	}
	if (!message_begin(s)) {
		session_reply(s->ss, "451 4.3.0 Local error in processing, try again later");
		return;
	}
	smtp_data_init(&s->dp, SMTP_DATA_DOT, s->srv->cfg->smtp_max_text_line);
	session_reply(s->ss, "354 End data with <CR><LF>.<CR><LF>");
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_data);
	session_set_state(s->ss, SMTP_S_DATA);
	session_set_raw(s->ss, true);
	session_deadline_start(s->ss);	/* the body must keep up transfer_min_rate */
}

static void cmd_bdat(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	uint64_t size;
	bool last;
	const char *err;
	if (!s->esmtp) {
		/* CHUNKING is only offered after EHLO (RFC 3030 §2); the size is unknown to
		 * us, so the chunk cannot be skipped: close rather than read it as commands */
		session_close(s->ss, "503 5.5.1 BDAT needs EHLO; closing connection");
		return;
	}
	if (smtp_parse_bdat(args, &size, &last, &err) < 0) {
		/* Without a size we cannot know where the chunk ends, and its bytes must never
		 * be taken for commands: give up on the connection. */
		session_reply(s->ss, "501 5.5.4 %s", err);
		session_close(s->ss,
			      "421 4.5.0 Cannot find the end of the BDAT chunk, closing connection");
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
	session_set_state(s->ss, SMTP_S_BDAT);
	session_set_raw(s->ss, true);
	session_deadline_start(s->ss);	/* the chunk must keep up transfer_min_rate */
}

/* bdat_chunk_done - the chunk's bytes are all in */
static void bdat_chunk_done(struct smtp_session *s)
{
	session_set_state(s->ss, SMTP_S_CMD);
	conn_set_timeout(s->conn, s->srv->cfg->smtp_timeout_command);
	if (s->bdat_error != NULL) {
		session_reply(s->ss, "%s", s->bdat_error);
		bool txn_failed = s->bdat_open;
		s->bdat_error = NULL;
		if (txn_failed) {
			txn_observe(s);
			txn_reset(s);
		}
		session_bad_command(s->ss);
		return;
	}
	if (s->too_big) {
		session_reply(s->ss, "552 5.3.4 Message size exceeds fixed maximum message size");
		txn_observe(s);
		txn_reset(s);
		return;
	}
	if (!s->bdat_last) {
		session_reply(s->ss, "250 2.0.0 %llu octets received",
		      (unsigned long long)s->msg_bytes);
		return;
	}
	smtp_data_finish_raw(&s->dp);
	message_finish(s);
}

static void cmd_rset(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	txn_reset(s);
	session_reply(s->ss, "250 2.0.0 Ok");
}

static void cmd_noop(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	session_reply(s->ss, "250 2.0.0 Ok");
}

static void cmd_quit(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	session_close(s->ss, "221 2.0.0 Bye");
}

static void cmd_vrfy(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	session_reply(s->ss,
		      "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_expn(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	session_reply(s->ss, "502 5.5.1 EXPN not available");
}

static void cmd_help(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	session_reply(s->ss,
		      "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY "
		      "HELP STARTTLS AUTH");
}

static void cmd_helo_plain(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	cmd_helo(s, args, false);
}

static void cmd_ehlo(void *ctx, const void *a)
{
	struct smtp_session *s = ctx;
	const char *args = a;
	cmd_helo(s, args, true);
}

/* The command table. The dispatcher (lib/session) checks the flags before a handler runs
 * and smtp_refuse answers a refusal; sequence rules that depend on the transaction (MAIL
 * before RCPT ...) stay with the handlers. Commands are read in state CMD only: AUTH
 * responses and message data never reach the table. */
#define C_CMD SESSION_CMD_STATE(SMTP_S_CMD)
/* F_TXN: part of a transaction, counted against smtp_max_commands (smtp_admit) */
#define F_TXN SESSION_CMD_PROTO(0)
static const struct session_command smtp_commands[] = {
	{ "HELO", cmd_helo_plain, C_CMD },
	{ "EHLO", cmd_ehlo, C_CMD },
	{ "MAIL", cmd_mail, C_CMD | F_TXN },
	{ "RCPT", cmd_rcpt, C_CMD | F_TXN },
	{ "DATA", cmd_data, C_CMD | F_TXN },
	{ "BDAT", cmd_bdat, C_CMD | F_TXN },
	{ "RSET", cmd_rset, C_CMD },
	{ "NOOP", cmd_noop, C_CMD | F_TXN },
	{ "QUIT", cmd_quit, C_CMD },
	{ "VRFY", cmd_vrfy, C_CMD | F_TXN },
	{ "EXPN", cmd_expn, C_CMD | F_TXN },
	{ "HELP", cmd_help, C_CMD | F_TXN },
	{ "STARTTLS", cmd_starttls, C_CMD | SESSION_CMD_PRE_TLS },
	{ "AUTH", cmd_auth, C_CMD | SESSION_CMD_PRE_AUTH | SESSION_CMD_NEEDS_TLS },
};

/* smtp_admit - commands per transaction, counted before anything else */
static bool smtp_admit(void *ctx, const struct session_command *c)
{
	struct smtp_session *s = ctx;
	if ((c->flags & F_TXN) && ++s->commands_in_txn > s->srv->cfg->smtp_max_commands) {
		session_close(s->ss, "421 4.7.0 Too many commands, closing connection");
		return false;
	}
	return true;
}

/* smtp_refuse - the reply to a command the dispatcher refused */
static void smtp_refuse(void *ctx, const struct session_command *c, enum session_refusal why)
{
	struct smtp_session *s = ctx;
	switch (why) {
	case SESSION_REFUSED_NEEDS_TLS:
		session_reply(s->ss, "538 5.7.11 Encryption required for requested authentication "
				     "mechanism");
		return;
	case SESSION_REFUSED_NEEDS_AUTH:
		session_reply(s->ss, "530 5.7.0 Authentication required");
		return;
	case SESSION_REFUSED_AUTHENTICATED:
		session_reply(s->ss, "503 5.5.1 Already authenticated");
		break;
	case SESSION_REFUSED_TLS_ACTIVE:
		session_reply(s->ss, "503 5.5.1 TLS already active");
		break;
	default:
		session_reply(s->ss, "503 5.5.1 Bad sequence of commands");
		break;
	}
	session_bad_command(s->ss);
}

static const struct session_dispatcher smtp_dispatcher = {
	smtp_commands, sizeof(smtp_commands) / sizeof(smtp_commands[0]), smtp_admit, smtp_refuse
};

/* line_too_long - an overlong command line or SASL response was skipped */
static void line_too_long(struct smtp_session *s)
{
	if (session_state(s->ss) == SMTP_S_AUTH) {
		sasl_free(&s->sasl);
		s->sasl_active = false;
		session_set_state(s->ss, SMTP_S_CMD);
		session_reply(s->ss, "501 5.5.2 Authentication response too long");
	} else {
		session_reply(s->ss, "500 5.5.2 Line too long");
	}
}

/* smtp_on_line - a command line, or a SASL response while AUTH is in progress */
static void smtp_on_line(void *ctx, char *line, size_t len)
{
	struct smtp_session *s = ctx;
	const struct tern_config *cfg = s->srv->cfg;
	if (line == NULL) {
		line_too_long(s);
		return;
	}
	if (session_state(s->ss) == SMTP_S_AUTH) {
		auth_step(s, line);
		return;
	}
	if (!s->seen_data) {
		s->bytes_before_data += len + 2;
		if (s->bytes_before_data > cfg->smtp_max_bytes_before_data) {
			session_close(s->ss,
				      "421 4.7.0 Too much command traffic, closing connection");
			return;
		}
	}
	if (memchr(line, '\0', len) != NULL) {
		session_reply(s->ss, "500 5.5.2 Syntax error: NUL character in command");
		session_bad_command(s->ss);
		return;
	}
	if (session_draining(s->ss) && !s->have_mail) {
		session_close(s->ss, "421 4.3.2 Service shutting down");
		return;
	}
	const char *args;
	if (smtp_verb_parse(line, len, &args) != SMTP_VERB_UNKNOWN &&
	    session_dispatch(s->ss, &smtp_dispatcher, line, strcspn(line, " "), args))
		return;
	/* not its text: a client that aborted a SASL exchange (or never saw our 334) may be
	 * sending its credentials as a line of their own */
	log_debug("%s: unknown command (%zu bytes, not logged)", session_id(s->ss), len);
	session_reply(s->ss, "500 5.5.1 Command unrecognized");
	session_bad_command(s->ss);
}


/* feed_data - push buffered DATA or BDAT bytes through the parser into the spool */
static void feed_data(struct smtp_session *s)
{
	static char out[SMTP_FEED_CHUNK];
	struct evbuffer *in = conn_input(s->conn);
	while (session_state(s->ss) == SMTP_S_DATA || session_state(s->ss) == SMTP_S_BDAT) {
		size_t avail = evbuffer_get_length(in);
		if (session_state(s->ss) == SMTP_S_BDAT && s->bdat_left == 0) {
			bdat_chunk_done(s);
			return;
		}
		if (avail == 0)
			return;
		size_t want = avail < SMTP_FEED_CHUNK ? avail : SMTP_FEED_CHUNK;
		if (session_state(s->ss) == SMTP_S_BDAT && want > s->bdat_left)
			want = (size_t)s->bdat_left;
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, (ssize_t)want, NULL, &v, 1) < 1)
			return;
		if (v.iov_len < want)
			want = v.iov_len;	/* one contiguous piece at a time */
		size_t outlen = 0, used = want;
		int done = 0;
		if (session_state(s->ss) == SMTP_S_DATA || s->bdat_error == NULL)
			done = smtp_data_feed(&s->dp, v.iov_base, want, out, &outlen, &used);
		if (s->msg != NULL && s->bdat_error == NULL)
			message_write(s, out, outlen);
		evbuffer_drain(in, used);
		if (session_state(s->ss) == SMTP_S_BDAT) {
			s->bdat_left -= used;
		} else if (done) {
			message_finish(s);
		}
	}
}

/* smtp_on_raw - DATA or BDAT bytes; back to command lines once the message or chunk is in */
static void smtp_on_raw(void *ctx)
{
	struct smtp_session *s = ctx;
	feed_data(s);
	if (session_state(s->ss) != SMTP_S_DATA && session_state(s->ss) != SMTP_S_BDAT)
		session_set_raw(s->ss, false);
}

static bool smtp_can_drain(void *ctx)
{
	struct smtp_session *s = ctx;
	return !s->have_mail && session_state(s->ss) == SMTP_S_CMD;
}

static const struct session_ops smtp_session_ops = {
	.state_names = smtp_state_names,
	.on_line = smtp_on_line,
	.on_raw = smtp_on_raw,
	.can_drain = smtp_can_drain,
	.on_end = smtp_on_end,
};

void smtp_server_init(struct smtp_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct queue *queue, struct login_pool *login)
{
	*srv = (struct smtp_server){ .base = base, .cfg = cfg, .tls = tls, .accounts = accounts,
				     .queue = queue, .login = login };
	srv->spool_dir = config_path_in_data(cfg, "spool");
	srv->greeting = xasprintf("220 %s ESMTP Tern", cfg->hostname);
	session_list_init(&srv->sessions, &smtp_texts);
}

void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role)
{
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	s->role = role;
	metrics_count(METRICS_SESSIONS + metrics_protocol(s));
	metrics_gauge_add(METRICS_CONNECTIONS + metrics_protocol(s), 1);
	SSL_CTX *implicit_tls = role == ROLE_SUBMISSIONS ? srv->tls : NULL;
	s->ss = session_new(&srv->sessions, srv->base, fd, peer, peerlen, implicit_tls,
			    &srv->cfg->session_limits[role], &smtp_session_ops, s, 's',
			    config_role_name(role), srv->greeting);
	s->conn = session_conn(s->ss);
}

void smtp_server_drain(struct smtp_server *srv)
{
	session_list_drain(&srv->sessions);
}

void smtp_server_free(struct smtp_server *srv)
{
	session_list_free(&srv->sessions);
	free(srv->spool_dir);
	free(srv->greeting);
}
