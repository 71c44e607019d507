/* imap/server - the IMAP session: input through imap/parser, the command table, login,
 * STARTTLS, ENABLE, ID, IDLE, and the wake-ups that tell idling sessions what changed */
#include "imap/server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>

#include "auth/login.h"
#include "auth/sasl.h"
#include "imap/imap_private.h"
#include "imap/mutf7.h"
#include "imap/write.h"
#include "lib/base64.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/xmalloc.h"
#include "store/notify.h"

#define IMAP_MAX_AUTH_FAILURES 3
#define IMAP_IDLE_LINE 64		/* "DONE" and a little slack */

static const char *const imap_state_names[] = { "not authenticated", "authenticated",
						"selected", "logout" };

static const struct session_texts imap_texts = {
	.bare_lf = NULL,	/* the IMAP parser takes CRLF or LF */
	.too_many_errors = "* BYE Too many invalid commands",
	.timeout = "* BYE Autologout; idle for too long",
	.too_slow = "* BYE Too slow, closing connection",
	.too_many_connections = "* BYE [UNAVAILABLE] Too many connections from your address",
	.busy = "* BYE [UNAVAILABLE] Too many connections, try again later",
	.too_many_commands = "* BYE Too many commands",
	.drain = "* BYE Server shutting down",
};

/* ---- replies ------------------------------------------------------------------------ */

void imap_reply(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;
	buf b;
	buf_init(&b, 0);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	/* the running command's tagged reply: first the updates it may carry (RFC 9051
	 * §7.5.1), so that a client sees them before the command completes */
	size_t tl = s->sync_tag != NULL ? strlen(s->sync_tag) : 0;
	bool bye = false;
	if (tl > 0 && b.len > tl && memcmp(b.data, s->sync_tag, tl) == 0 && b.data[tl] == ' ') {
		char *tag = s->sync_tag;
		s->sync_tag = NULL;
		if (session_state(s->ss) == IMAP_S_SELECTED && !s->idling) {
			s->in_tagged_reply = true;
			imap_view_sync(s, s->sync_expunges);
			s->in_tagged_reply = false;
			bye = s->mailbox_gone;	/* the command's completion goes before the BYE */
		}
		free(tag);
	}
	buf_puts(&b, "\r\n");
	conn_write(s->conn, b.data, b.len);
	if (bye)
		session_close(s->ss, "* BYE [NONEXISTENT] The selected mailbox was deleted");
	if (s->log_hide_tag) {
		/* the tag of a line that is no command: maybe a password sent as a line */
		size_t tag_len = strcspn(b.data, " ");
		log_debug("%s: > (a tag of %zu bytes)%.*s", session_id(s->ss), tag_len,
			  (int)(b.len - tag_len > 202 ? 200 : b.len - tag_len - 2), b.data + tag_len);
	} else {
		log_debug("%s: > %.*s", session_id(s->ss), (int)(b.len > 202 ? 200 : b.len - 2),
			  b.data);
	}
	buf_free(&b);
}

void imap_write(struct imap_session *s, const void *p, size_t n)
{
	conn_write(s->conn, p, n);
}

void imap_bad(struct imap_session *s, const struct imap_req *r, const char *text)
{
	imap_reply(s, "%s BAD %s", r->tag, text);
	session_bad_command(s->ss);
}

void imap_store_error(struct imap_session *s, const struct imap_req *r, int code, char *err)
{
	switch (code) {
	case STORE_NOTFOUND:
		imap_reply(s, "%s NO [NONEXISTENT] No such mailbox", r->tag);
		break;
	case STORE_EXISTS:
		imap_reply(s, "%s NO [ALREADYEXISTS] Mailbox already exists", r->tag);
		break;
	case STORE_INVALID:
		imap_reply(s, "%s NO [CANNOT] %s", r->tag, err != NULL ? err : "Not allowed");
		break;
	case STORE_HASCHILDREN:
		imap_reply(s, "%s NO [HASCHILDREN] Mailbox has children; delete them first", r->tag);
		break;
	default:
		log_warnx("%s: %s %s: %s", session_id(s->ss), r->name, s->user ? s->user : "",
			  err != NULL ? err : "store error");
		imap_reply(s, "%s NO [UNAVAILABLE] Temporary failure; try again", r->tag);
		break;
	}
	free(err);
}

char *imap_mailbox_arg(struct imap_session *s, const struct imap_req *r, size_t i)
{
	if (i >= r->n || !imap_arg_is_astring(&r->args[i])) {
		imap_bad(s, r, "Missing mailbox name");
		return NULL;
	}
	const struct imap_arg *a = &r->args[i];
	if (memchr(a->str, '\0', a->len) != NULL) {
		imap_bad(s, r, "Bad mailbox name");
		return NULL;
	}
	if (s->utf8) {
		if (!imap_utf8_valid(a->str, a->len)) {
			imap_bad(s, r, "Mailbox name is not UTF-8");
			return NULL;
		}
		return xstrdup(a->str);
	}
	buf out;
	buf_init(&out, 0);
	if (imap_mutf7_to_utf8(a->str, &out) < 0) {
		buf_free(&out);
		/* 8-bit names from rev1 clients that never heard of modified UTF-7: refuse */
		imap_bad(s, r, "Mailbox name is not valid modified UTF-7");
		return NULL;
	}
	char *name = xstrdup(buf_cstr(&out));
	buf_free(&out);
	return name;
}

void imap_mailbox_out(struct imap_session *s, buf *out, const char *name)
{
	if (s->utf8) {
		imap_write_astring(out, name, true);
		return;
	}
	buf m;
	buf_init(&m, 0);
	if (imap_utf8_to_mutf7(name, &m) < 0)
		imap_write_astring(out, name, false);	/* not UTF-8: a literal of the bytes */
	else
		imap_write_astring(out, buf_cstr(&m), false);
	buf_free(&m);
}

void imap_capabilities(struct imap_session *s, buf *out)
{
	buf_puts(out, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE "
		      "UNSELECT CHILDREN SPECIAL-USE LIST-EXTENDED LIST-STATUS ESEARCH SEARCHRES "
		      "CONDSTORE QRESYNC STATUS=SIZE BINARY UTF8=ACCEPT");
	buf_printf(out, " APPENDLIMIT=%llu",
		   (unsigned long long)s->srv->cfg->max_message_size);
	if (!conn_is_tls(s->conn) && s->srv->tls != NULL && !session_authenticated(s->ss))
		buf_puts(out, " STARTTLS");
	if (!session_authenticated(s->ss)) {
		if (session_secure(s->ss))
			buf_puts(out, " AUTH=PLAIN AUTH=LOGIN");
		else
			buf_puts(out, " LOGINDISABLED");
	} else {
		buf_puts(out, " COMPRESS=DEFLATE");	/* a command of the authenticated state */
	}
}

/* ---- the account, once logged in ------------------------------------------------------ */

static void notify_cb(void *ctx, struct store_watch *w);

/* notify_ready - an account changed: its idling sessions are told now, the others at the
 * end of their next command (they sync after every command) */
static void notify_ready(evutil_socket_t fd, short what, void *arg)
{
	struct imap_server *srv = arg;
	if (store_notifier_dispatch(srv->notifier, notify_cb, srv) < 0)
		log_warn("store notifier");
}

/* idle_wake - an idling session needs its store again (a change to report, DONE): false
 * when it cannot have it, and the session is closing */
static bool idle_wake(struct imap_session *s)
{
	char *err = NULL;
	if (store_wake(s->store, &err) == 0)
		return true;
	log_warnx("%s: wake: %s", session_id(s->ss), err ? err : "?");
	free(err);
	session_close(s->ss, "* BYE [UNAVAILABLE] Cannot reopen your mailbox; try again later");
	return false;
}

/* idle_sleep - an idling session holds only what it needs to notice a change: the view's
 * UIDs and counters, its watch; the store's connection and snapshots go (store_sleep).
 * A session without a watch is polled (idle_poll) and stays awake: a poll is then one
 * primary-key read, not a reopened connection. */
static void idle_sleep(struct imap_session *s)
{
	if (s->idling && s->watch != NULL && !session_is_closing(s->ss))
		store_sleep(s->store);
}

/* wake_idlers - sync the idling sessions that match (watch w, or every one without a
 * watch when w is NULL) */
static void wake_idlers(struct imap_server *srv, const struct store_watch *w)
{
	struct imap_session *s, *next;
	/* a failed wake closes the session, which may leave the list: hence _SAFE-style */
	for (s = LIST_FIRST(&srv->imap_sessions); s != NULL; s = next) {
		next = LIST_NEXT(s, link);
		if (s->watch != w || s->store == NULL || session_is_closing(s->ss))
			continue;
		if (s->idling && session_state(s->ss) == IMAP_S_SELECTED) {
			if (!idle_wake(s))
				continue;
			imap_view_sync(s, true);
			idle_sleep(s);
		}
	}
}

static void notify_cb(void *ctx, struct store_watch *w)
{
	wake_idlers(ctx, w);
}

/* Without inotify (the per-user limit of instances or watches reached, say by another
 * program of the same run user) IDLE would never report anything: those sessions are
 * polled instead, once a second, by one timer for the worker. */
#define IMAP_IDLE_POLL_MS 1000

static void idle_poll(evutil_socket_t fd, short what, void *arg)
{
	wake_idlers(arg, NULL);
}

static void idle_poll_start(struct imap_server *srv)
{
	if (srv->poll_ev != NULL)
		return;
	srv->poll_ev = event_new(srv->base, -1, EV_PERSIST, idle_poll, srv);
	struct timeval tv = { IMAP_IDLE_POLL_MS / 1000, (IMAP_IDLE_POLL_MS % 1000) * 1000 };
	event_add(srv->poll_ev, &tv);
}

/* ---- syncs off the loop ----------------------------------------------------------------- */

bool imap_wait_start(struct imap_session *s, struct imap_wait *w)
{
	if (s->srv->sync == NULL)
		return false;
	w->s = s;
	s->wait = w;
	session_suspend(s->ss);
	bgpool_submit(s->srv->sync, &w->job);
	return true;
}

struct imap_session *imap_wait_end(struct imap_wait *w)
{
	struct imap_session *s = w->s;
	if (s == NULL)
		return NULL;
	s->wait = NULL;
	if (session_is_closing(s->ss))	/* timed out meanwhile: the client hears nothing */
		return NULL;
	return s;
}

void imap_wait_resume(struct imap_session *s)
{
	session_resume(s->ss);
}

/* ---- login ---------------------------------------------------------------------------- */

/* account_open - logged in as user: open the store, watch the account, say OK */
static void account_open(struct imap_session *s, const char *user, const char *tag)
{
	char *err = NULL;
	if (store_open(s->srv->cfg->data_dir, user, &s->store, &err) < 0) {
		log_warnx("%s: %s: %s", session_id(s->ss), user, err ? err : "cannot open store");
		free(err);
		imap_reply(s, "%s NO [UNAVAILABLE] Cannot open your mailbox; try again later", tag);
		return;
	}
	if (s->srv->notifier != NULL &&
	    store_notifier_watch(s->srv->notifier, s->srv->cfg->data_dir, user, &s->watch, &err) < 0) {
		log_warnx("%s: watch %s: %s; IDLE polls", session_id(s->ss), user, err ? err : "?");
		free(err);
		err = NULL;
	}
	if (s->watch == NULL)
		idle_poll_start(s->srv);
	s->user = xstrdup(user);
	imap_account_setup(s);
	session_set_authenticated(s->ss, true);
	session_set_state(s->ss, IMAP_S_AUTH);
	log_info("%s: login user=%s", session_id(s->ss), user);
	buf caps;
	buf_init(&caps, 0);
	imap_capabilities(s, &caps);
	imap_reply(s, "%s OK [CAPABILITY %s] Logged in", tag, buf_cstr(&caps));
	buf_free(&caps);
}

static void login_done(void *ctx, enum login_result r, const char *user)
{
	struct imap_session *s = ctx;
	s->login = NULL;
	login_count(METRICS_IMAP, r);
	char *tag = s->login_tag;
	s->login_tag = NULL;
	if (session_is_closing(s->ss)) {
		free(tag);
		return;
	}
	if (r == LOGIN_OK) {
		account_open(s, user, tag);
	} else if (r == LOGIN_TEMPFAIL) {
		imap_reply(s, "%s NO [UNAVAILABLE] Authentication temporarily unavailable", tag);
	} else if (++s->auth_failures >= IMAP_MAX_AUTH_FAILURES) {
		imap_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed", tag);
		session_close(s->ss, "* BYE Too many authentication failures");
	} else {
		imap_reply(s, "%s NO [AUTHENTICATIONFAILED] Authentication failed", tag);
	}
	free(tag);
	session_resume(s->ss);
}

static bool require_secure(struct imap_session *s, const struct imap_req *r)
{
	if (session_secure(s->ss))
		return true;
	imap_reply(s, "%s NO [PRIVACYREQUIRED] Use STARTTLS before sending a password", r->tag);
	return false;
}

static void cmd_login(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (!require_secure(s, r))
		return;
	if (r->n != 2 || !imap_arg_is_astring(&r->args[0]) || !imap_arg_is_astring(&r->args[1])) {
		imap_bad(s, r, "Usage: LOGIN user password");
		return;
	}
	s->login_tag = xstrdup(r->tag);
	session_suspend(s->ss);
	login_start(s->srv->login, conn_peer(s->conn), session_id(s->ss), r->args[0].str,
		    r->args[1].str, login_done, s, &s->login);
	/* the parser's copy of the password goes at imap_parser_reset */
}

/* sasl_feed - one response of AUTHENTICATE (NULL: no initial response) */
static void sasl_feed(struct imap_session *s, const char *response)
{
	const char *text;
	int r = login_sasl_feed(s->srv->login, &s->sasl, response, conn_peer(s->conn),
				session_id(s->ss), login_done, s, &s->login, &text);
	if (r == 0) {
		imap_reply(s, "+ %s", text);
		return;
	}
	s->sasl_active = false;
	if (r == 1) {
		session_suspend(s->ss);	/* until login_done */
		return;
	}
	imap_reply(s, "%s %s", s->login_tag,
		   r == -2 ? "BAD Authentication cancelled" : "NO [AUTHENTICATIONFAILED] Bad response");
	free(s->login_tag);
	s->login_tag = NULL;
	session_bad_command(s->ss);
}

static void cmd_authenticate(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (!require_secure(s, r))
		return;
	enum sasl_mech m;
	if (r->n < 1 || r->n > 2 || r->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, r, "Usage: AUTHENTICATE mechanism [initial-response]");
		return;
	}
	if (sasl_mech_parse(r->args[0].str, &m) < 0) {
		imap_reply(s, "%s NO [CANNOT] Unsupported mechanism", r->tag);
		return;
	}
	if (r->n == 2 && !imap_arg_is_astring(&r->args[1])) {
		imap_bad(s, r, "Bad initial response");
		return;
	}
	sasl_begin(&s->sasl, m);
	s->sasl_active = true;
	s->login_tag = xstrdup(r->tag);
	sasl_feed(s, r->n == 2 ? r->args[1].str : NULL);
}

static void cmd_starttls(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (s->srv->tls == NULL) {
		imap_reply(s, "%s NO STARTTLS not available", r->tag);
		return;
	}
	imap_reply(s, "%s OK Begin TLS negotiation now", r->tag);
	/* commands pipelined after STARTTLS were sent in clear: RFC 9051 §6.2.1 says to drop
	 * them (the STARTTLS injection attack) */
	struct evbuffer *in = conn_input(s->conn);
	evbuffer_drain(in, evbuffer_get_length(in));
	imap_parser_reset(s->parser);
	if (conn_starttls(s->conn, s->srv->tls) < 0)
		session_close(s->ss, NULL);
}

/* cmd_compress - RFC 4978: after the tagged OK (sent as it is) both directions are raw
 * DEFLATE; conn does the work, commands pipelined behind this one included */
static void cmd_compress(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (r->n != 1 || r->args[0].type != IMAP_ARG_ATOM) {
		imap_bad(s, r, "Usage: COMPRESS DEFLATE");
		return;
	}
	if (strcasecmp(r->args[0].str, "DEFLATE") != 0) {
		imap_bad(s, r, "Unknown compression mechanism");
		return;
	}
	if (conn_is_compressed(s->conn)) {
		imap_reply(s, "%s NO [COMPRESSIONACTIVE] DEFLATE is active already", r->tag);
		return;
	}
	imap_reply(s, "%s OK DEFLATE active", r->tag);
	if (conn_compress(s->conn) < 0)
		session_close(s->ss, NULL);	/* the client compresses now: we cannot follow */
}

/* ---- any state ----------------------------------------------------------------------- */

static void cmd_capability(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	buf caps;
	buf_init(&caps, 0);
	imap_capabilities(s, &caps);
	imap_reply(s, "* CAPABILITY %s", buf_cstr(&caps));
	imap_reply(s, "%s OK Capability completed", r->tag);
	buf_free(&caps);
}

static void cmd_noop(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (session_state(s->ss) == IMAP_S_SELECTED) {
		char *err = NULL;
		if (store_mailbox_sync(s->view.mb, &err) < 0)	/* files other programs dropped */
			free(err);
	}
	imap_reply(s, "%s OK %s completed", r->tag, r->name);
}

static void cmd_logout(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	imap_reply(s, "* BYE Logging out");
	char text[128];
	snprintf(text, sizeof(text), "%s OK Logout completed", r->tag);
	session_set_state(s->ss, IMAP_S_LOGOUT);
	session_close(s->ss, text);
}

static void cmd_id(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (r->n != 1 || (r->args[0].type != IMAP_ARG_LIST && !imap_arg_is_nil(&r->args[0]))) {
		imap_bad(s, r, "Usage: ID (params) or ID NIL");
		return;
	}
	imap_reply(s, "* ID (\"name\" \"Tern\" \"vendor\" \"Tern\")");
	imap_reply(s, "%s OK ID completed", r->tag);
}

static void cmd_enable(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	if (r->n == 0) {
		imap_bad(s, r, "Usage: ENABLE capability...");
		return;
	}
	buf en;
	buf_init(&en, 0);
	for (size_t i = 0; i < r->n; i++) {
		const struct imap_arg *c = &r->args[i];
		if (c->type != IMAP_ARG_ATOM) {
			buf_free(&en);
			imap_bad(s, r, "Bad capability");
			return;
		}
		bool *flag = NULL;
		if (strcasecmp(c->str, "UTF8=ACCEPT") == 0)
			flag = &s->utf8;
		else if (strcasecmp(c->str, "IMAP4rev2") == 0)
			flag = &s->rev2;
		else if (strcasecmp(c->str, "CONDSTORE") == 0)
			flag = &s->condstore;
		else if (strcasecmp(c->str, "QRESYNC") == 0)
			flag = &s->qresync;
		if (flag == NULL || *flag)
			continue;	/* unknown or already on: not listed (RFC 5161 §3.2) */
		*flag = true;
		buf_printf(&en, " %s", c->str);
	}
	if (s->rev2)
		s->utf8 = true;	/* IMAP4rev2 includes UTF8=ACCEPT */
	if (s->qresync)
		s->condstore = true;
	imap_reply(s, "* ENABLED%s", buf_cstr(&en));
	imap_reply(s, "%s OK ENABLE completed", r->tag);
	buf_free(&en);
}

/* cmd_idle - RFC 2177: tell the client of changes as they happen until it sends DONE */
static void cmd_idle(void *ctx, const void *a)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = a;
	s->idling = true;
	metrics_gauge_add(METRICS_IMAP_IDLE, 1);
	s->idle_tag = xstrdup(r->tag);
	imap_reply(s, "+ idling");
	if (session_state(s->ss) == IMAP_S_SELECTED)
		imap_view_sync(s, true);
	idle_sleep(s);
}

static void cmd_check(void *ctx, const void *a)
{
	cmd_noop(ctx, a);
}

/* ---- the table ------------------------------------------------------------------------ */

#define S_NA SESSION_CMD_STATE(IMAP_S_NOT_AUTH)
#define S_AU SESSION_CMD_STATE(IMAP_S_AUTH)
#define S_SE SESSION_CMD_STATE(IMAP_S_SELECTED)
#define S_ANY (S_NA | S_AU | S_SE)
#define S_LOGGED (S_AU | S_SE)
#define SEQ SESSION_CMD_USES_SEQ
/* a command whose untagged responses may not include EXPUNGE (RFC 9051 §7.5.1) */
#define NO_EXPUNGE SESSION_CMD_PROTO(0)
/* UID variants: found under "UID NAME" */
static const struct session_command imap_commands[] = {
	{ "CAPABILITY", cmd_capability, S_ANY },
	{ "NOOP", cmd_noop, S_ANY },
	{ "LOGOUT", cmd_logout, S_ANY },
	{ "ID", cmd_id, S_ANY },
	{ "STARTTLS", cmd_starttls, S_NA | SESSION_CMD_PRE_TLS },
	{ "LOGIN", cmd_login, S_NA },
	{ "AUTHENTICATE", cmd_authenticate, S_NA },
	{ "ENABLE", cmd_enable, S_LOGGED },
	{ "SELECT", imap_cmd_select, S_LOGGED },
	{ "EXAMINE", imap_cmd_examine, S_LOGGED },
	{ "CREATE", imap_cmd_create, S_LOGGED },
	{ "DELETE", imap_cmd_delete, S_LOGGED },
	{ "RENAME", imap_cmd_rename, S_LOGGED },
	{ "SUBSCRIBE", imap_cmd_subscribe, S_LOGGED },
	{ "UNSUBSCRIBE", imap_cmd_unsubscribe, S_LOGGED },
	{ "LIST", imap_cmd_list, S_LOGGED },
	{ "LSUB", imap_cmd_lsub, S_LOGGED },
	{ "NAMESPACE", imap_cmd_namespace, S_LOGGED },
	{ "STATUS", imap_cmd_status, S_LOGGED },
	{ "APPEND", imap_cmd_append, S_LOGGED },
	{ "IDLE", cmd_idle, S_LOGGED },
	{ "COMPRESS", cmd_compress, S_LOGGED },
	{ "CHECK", cmd_check, S_SE },
	{ "CLOSE", imap_cmd_close, S_SE },
	{ "UNSELECT", imap_cmd_unselect, S_SE },
	{ "EXPUNGE", imap_cmd_expunge, S_SE },
	{ "FETCH", imap_cmd_fetch, S_SE | SEQ | NO_EXPUNGE },
	{ "STORE", imap_cmd_store, S_SE | SEQ | NO_EXPUNGE },
	{ "SEARCH", imap_cmd_search, S_SE | SEQ | NO_EXPUNGE },
	{ "COPY", imap_cmd_copy, S_SE | SEQ | NO_EXPUNGE },
	{ "MOVE", imap_cmd_move, S_SE | SEQ },
	{ "UID FETCH", imap_cmd_fetch, S_SE },
	{ "UID STORE", imap_cmd_store, S_SE },
	{ "UID SEARCH", imap_cmd_search, S_SE },
	{ "UID COPY", imap_cmd_copy, S_SE },
	{ "UID MOVE", imap_cmd_move, S_SE },
	{ "UID EXPUNGE", imap_cmd_expunge, S_SE },
};

static void imap_refuse(void *ctx, const struct session_command *c, enum session_refusal why)
{
	struct imap_session *s = ctx;
	const struct imap_command *cmd = imap_parser_command(s->parser);
	switch (why) {
	case SESSION_REFUSED_TLS_ACTIVE:
		imap_reply(s, "%s BAD TLS is already active", cmd->tag);
		break;
	case SESSION_REFUSED_NOT_SELECTED:
		imap_reply(s, "%s BAD No mailbox selected", cmd->tag);
		break;
	case SESSION_REFUSED_AUTHENTICATED:
	case SESSION_REFUSED_STATE:
		imap_reply(s, "%s BAD %s not allowed %s", cmd->tag, c->name,
			   session_authenticated(s->ss) ? "now" : "before logging in");
		break;
	default:
		imap_reply(s, "%s BAD %s not allowed now", cmd->tag, c->name);
		break;
	}
	session_bad_command(s->ss);
}

static bool imap_admit(void *ctx, const struct session_command *c)
{
	struct imap_session *s = ctx;
	if (session_draining(s->ss) && strcmp(c->name, "LOGOUT") != 0) {
		session_close(s->ss, "* BYE Server shutting down");
		return false;
	}
	return true;
}

static const struct session_dispatcher imap_dispatcher = {
	.commands = imap_commands,
	.n_commands = sizeof(imap_commands) / sizeof(imap_commands[0]),
	.admit = imap_admit,
	.refuse = imap_refuse,
};

/* run_command - a complete command from the parser */
static void run_command(struct imap_session *s, const struct imap_command *c)
{
	struct imap_req r = { .tag = c->tag, .name = c->name, .args = c->args, .n = c->n_args };
	char verb[64];
	if (strcasecmp(c->name, "UID") == 0) {
		if (c->n_args == 0 || c->args[0].type != IMAP_ARG_ATOM || c->args[0].len > 20) {
			imap_bad(s, &r, "UID needs a command");
			return;
		}
		snprintf(verb, sizeof(verb), "UID %s", c->args[0].str);
		r.name = c->args[0].str;
		r.args = c->args + 1;
		r.n = c->n_args - 1;
		r.uid = true;
	} else {
		snprintf(verb, sizeof(verb), "%s", c->name);
	}
	for (char *p = verb; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	bool known = false;
	for (size_t i = 0; i < imap_dispatcher.n_commands && !known; i++)
		known = strcasecmp(imap_dispatcher.commands[i].name, verb) == 0;
	if (known)
		log_debug("%s: < %s %s", session_id(s->ss), c->tag, verb);
	else	/* no command: maybe a password typed as a line ("correct horse ...") */
		log_debug("%s: < an unknown command (not logged)", session_id(s->ss));
	/* sequence numbers must not change under FETCH, STORE, SEARCH, COPY: no EXPUNGE then */
	free(s->sync_tag);
	s->sync_tag = xstrdup(c->tag);
	s->sync_expunges = r.uid || (strcmp(verb, "FETCH") != 0 && strcmp(verb, "STORE") != 0 &&
				     strcmp(verb, "SEARCH") != 0 && strcmp(verb, "COPY") != 0);
	if (!session_dispatch(s->ss, &imap_dispatcher, verb, strlen(verb), &r)) {
		s->log_hide_tag = true;
		imap_reply(s, "%s BAD Unknown command", c->tag);
		s->log_hide_tag = false;
		session_bad_command(s->ss);
	}
}

/* idle_input - while idling only "DONE" is read */
static bool idle_input(struct imap_session *s)
{
	struct evbuffer *in = conn_input(s->conn);
	size_t len;
	char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > IMAP_IDLE_LINE) {
			session_close(s->ss, "* BYE Expected DONE");
			return false;
		}
		return false;
	}
	bool done = strcasecmp(line, "DONE") == 0;
	free(line);
	s->idling = false;
	metrics_gauge_add(METRICS_IMAP_IDLE, -1);
	if (!idle_wake(s))
		return false;
	if (done) {
		imap_reply(s, "%s OK IDLE terminated", s->idle_tag);
	} else {
		imap_reply(s, "%s BAD Expected DONE", s->idle_tag);
		session_bad_command(s->ss);
	}
	free(s->idle_tag);
	s->idle_tag = NULL;
	return true;
}

/* imap_on_raw - the session reads everything itself: commands with literals, IDLE's DONE,
 * APPEND data; paused FETCHes go on first */
static void imap_on_raw(void *ctx)
{
	struct imap_session *s = ctx;
	for (;;) {
		if (session_is_closing(s->ss))
			return;
		if (s->login != NULL)
			return;		/* a password check is in flight: login_done resumes */
		if (s->search != NULL)
			return;		/* a SEARCH reads messages: it resumes when it is done */
		if (s->wait != NULL)
			return;		/* a command's syncs are on a thread: its done resumes */
		if (s->fetch != NULL) {
			/* a reader slower than transfer_min_rate is dropped (lib/session) */
			session_deadline_start(s->ss);
			if (!imap_fetch_resume(s))
				return;		/* waits for the client to read */
			if (s->fetch == NULL)
				session_deadline_stop(s->ss);
			continue;
		}
		if (conn_output_full(s->conn))
			return;
		if (s->append != NULL) {
			if (!imap_append_stream_feed(s))
				return;
			continue;
		}
		if (s->idling) {
			if (evbuffer_get_length(conn_input(s->conn)) > 0)
				session_deadline_start(s->ss);	/* "DONE" must not trickle */
			if (!idle_input(s))
				return;
			session_deadline_stop(s->ss);
			continue;
		}
		struct evbuffer *in = conn_input(s->conn);
		size_t avail = evbuffer_get_length(in);
		if (avail == 0)
			return;
		/* a command (with its literals) or a SASL line has begun: it must end within the
		 * line deadline, plus time for its literals' bytes (lib/session) */
		session_deadline_start(s->ss);
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		if (s->sasl_active) {
			size_t len;
			char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
			if (line == NULL) {
				if (avail > 8192)
					session_close(s->ss, "* BYE SASL response too long");
				return;
			}
			session_deadline_stop(s->ss);
			sasl_feed(s, line);
			explicit_bzero(line, len);
			free(line);
			continue;
		}
		size_t used;
		enum imap_parse_result pr = imap_parser_feed(s->parser, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		switch (pr) {
		case IMAP_PARSE_MORE:
			continue;
		case IMAP_PARSE_CONTINUE:
			imap_reply(s, "+ Ready for literal data");
			continue;
		case IMAP_PARSE_ERROR: {
			session_deadline_stop(s->ss);
			const char *tag = imap_parser_error_tag(s->parser);
			s->log_hide_tag = true;
			imap_reply(s, "%s BAD %s", tag != NULL ? tag : "*", imap_parser_error(s->parser));
			s->log_hide_tag = false;
			imap_append_free(&s->append_done);	/* the line after its literal was bad */
			if (imap_parser_fatal(s->parser)) {
				session_close(s->ss, "* BYE Cannot stay in sync with the client");
				return;
			}
			session_bad_command(s->ss);
			continue;
		}
		case IMAP_PARSE_LITERAL_STREAM: {
			/* only APPEND's message is streamed; any other command (or APPEND before
			 * login) is answered here, before the literal is sent when it can be */
			const struct imap_command *pc = imap_parser_command(s->parser);
			if (pc->name != NULL && strcasecmp(pc->name, "APPEND") == 0 &&
			    session_authenticated(s->ss)) {
				imap_append_stream_begin(s);
				continue;
			}
			imap_reply(s, "%s BAD Literal too large", pc->tag != NULL ? pc->tag : "*");
			imap_parser_stream_reject(s->parser);
			session_bad_command(s->ss);
			continue;
		}
		case IMAP_PARSE_COMMAND:
			break;
		}
		session_deadline_stop(s->ss);
		run_command(s, imap_parser_command(s->parser));
		imap_append_free(&s->append_done);	/* a streamed APPEND its command did not take */
		/* a login in flight keeps its copy; the parser's (password) goes now */
		imap_parser_reset(s->parser);
		if (!s->ss || session_is_closing(s->ss))
			return;
	}
}

static void imap_on_line(void *ctx, char *line, size_t len)
{
	/* never called: the session is always raw */
}

static bool imap_can_drain(void *ctx)
{
	struct imap_session *s = ctx;
	return s->fetch == NULL && s->append == NULL && s->login == NULL && s->search == NULL &&
	       s->wait == NULL;
}

static void imap_on_end(void *ctx)
{
	struct imap_session *s = ctx;
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_IMAP, -1);
	if (s->idling)
		metrics_gauge_add(METRICS_IMAP_IDLE, -1);
	login_cancel(&s->login);
	if (s->sasl_active)
		sasl_free(&s->sasl);
	imap_fetch_free(&s->fetch);
	imap_search_job_free(&s->search);
	imap_append_free(&s->append);
	imap_append_free(&s->append_done);
	if (s->wait != NULL)	/* its done cleans up without the session */
		s->wait->s = NULL;
	imap_view_close(s);
	if (s->watch != NULL)
		store_notifier_unwatch(s->srv->notifier, &s->watch);
	store_close(&s->store);
	imap_parser_free(&s->parser);
	LIST_REMOVE(s, link);
	free(s->login_tag);
	free(s->idle_tag);
	free(s->pending_tag);
	free(s->sync_tag);
	free(s->user);
	free(s);
}

static const struct session_ops imap_session_ops = {
	.state_names = imap_state_names,
	.on_line = imap_on_line,
	.on_raw = imap_on_raw,
	.can_drain = imap_can_drain,
	.on_end = imap_on_end,
};

void imap_server_init(struct imap_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct login_pool *login)
{
	*srv = (struct imap_server){
		.base = base, .cfg = cfg, .tls = tls, .accounts = accounts, .login = login
	};
	LIST_INIT(&srv->imap_sessions);
	session_list_init(&srv->sessions, &imap_texts);
	char *err = NULL;
	srv->notifier = store_notifier_new(&err);
	if (srv->notifier == NULL) {
		log_warnx("IMAP wake-ups through inotify off (IDLE polls every %d ms; other "
			  "sessions learn of changes at their next command): %s",
			  IMAP_IDLE_POLL_MS, err ? err : "?");
		free(err);
		return;
	}
	srv->notify_ev = event_new(base, store_notifier_fd(srv->notifier), EV_READ | EV_PERSIST,
				   notify_ready, srv);
	event_add(srv->notify_ev, NULL);
}

void imap_session_start(struct imap_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	s->srv = srv;
	metrics_count(METRICS_SESSIONS + METRICS_IMAP);
	metrics_gauge_add(METRICS_CONNECTIONS + METRICS_IMAP, 1);
	struct imap_parser_limits lim = imap_parser_default_limits;
	/* no parser limit on a streamed literal's size: APPEND checks max_message_size itself,
	 * to answer NO [TOOBIG] (RFC 7889) rather than BAD */
	lim.max_literal = UINT64_MAX;
	s->parser = imap_parser_new(&lim);
	LIST_INSERT_HEAD(&srv->imap_sessions, s, link);
	s->ss = session_new(&srv->sessions, srv->base, fd, peer, peerlen,
			    role == ROLE_IMAPS ? srv->tls : NULL, &srv->cfg->session_limits[role],
			    &imap_session_ops, s, 'i', config_role_name(role),
			    "* OK Tern IMAP server ready");
	s->conn = session_conn(s->ss);
	session_set_raw(s->ss, true);
}

void imap_server_drain(struct imap_server *srv)
{
	session_list_drain(&srv->sessions);
	/* the core leaves sessions in raw mode alone, and IMAP sessions always are: say
	 * goodbye here to those between commands (an IDLE included); a FETCH, APPEND or login
	 * in progress finishes first and meets imap_admit's BYE at its next command */
	struct imap_session *s;
	LIST_FOREACH(s, &srv->imap_sessions, link)
	{
		if (!session_is_closing(s->ss) && imap_can_drain(s))
			session_close(s->ss, "* BYE Server shutting down");
	}
}

void imap_server_free(struct imap_server *srv)
{
	session_list_free(&srv->sessions);
	if (srv->notify_ev != NULL)
		event_free(srv->notify_ev);
	if (srv->poll_ev != NULL)
		event_free(srv->poll_ev);
	store_notifier_free(&srv->notifier);
}
