/* smtp/client - asynchronous SMTP client: one connection, transactions in turn */
#include "smtp/client.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/linereader.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/net.h"
#include "lib/strnum.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "smtp/reply.h"

#define BODY_CHUNK 16384		/* bytes read from the message file at a time */
#define BODY_HIGH (256 * 1024)		/* queued output before we wait for the peer */
#define BODY_LOW (64 * 1024)		/* refill when the output drains to this */
#define RESULT_TEXT_MAX 600		/* a reply rendered on one line */

enum client_state {
	CS_CONNECTING,
	CS_GREETING,
	CS_EHLO,
	CS_HELO,
	CS_STARTTLS,
	CS_HANDSHAKE,
	CS_AUTH,	/* AUTH sent: waiting for 334 or 235 */
	CS_READY,	/* idle and usable */
	CS_TXN,		/* a transaction waits for replies */
	CS_BODY,	/* sending the message */
	CS_QUIT,	/* QUIT sent: waiting a little for the reply */
	CS_FAILED,	/* unusable; the connection may still be open (in_sync) */
	CS_FREEING,	/* released from the event loop */
};

static const char *const state_names[] = { "connecting", "greeting", "ehlo", "helo",
					   "starttls", "handshake", "auth", "ready", "txn", "body",
					   "quit", "failed", "freeing" };

/* What a pipelined command waits for. */
enum cmd_kind { CMD_RSET, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_DOT, CMD_DOT_DISCARD };

struct cmd {
	enum cmd_kind kind;
	size_t rcpt;		/* CMD_RCPT: index in the transaction */
	char *line;		/* with CRLF; NULL for CMD_DOT (the message is the "command") */
};

struct smtp_client {
	struct event_base *base;
	enum client_state state;
	char *helo_name, *server_name, *id;
	SSL_CTX *tls_ctx;
	bool require_tls, implicit_tls, tls_verify;
	char *auth_user, *auth_password;
	enum { AUTH_PLAIN_SENT, AUTH_LOGIN_START, AUTH_LOGIN_USER, AUTH_LOGIN_PASS } auth_step;
	struct smtp_client_timeouts to;
	size_t max_line;

	int fd;				/* until the bufferevent owns it */
	struct event *connect_ev;
	struct event *timer;		/* the reply (or progress) we wait for */
	struct event *kick;		/* deferred callbacks and the final free */
	struct bufferevent *bev;	/* the top one: the TLS filter after STARTTLS */
	bool tls;
	bool in_sync;			/* FAILED, yet a QUIT still makes sense */
	bool need_rset;			/* a transaction ran: RSET before the next MAIL */
	bool connect_reported;

	struct linereader lr;
	buf line;
	struct smtp_reply_parser rp;
	struct smtp_client_ext ext;

	smtp_client_connect_cb *connect_cb;
	void *connect_ctx;
	struct smtp_client_reply pending_error;	/* a connect failure not yet reported */

	/* the transaction */
	smtp_client_send_cb *send_cb;
	void *send_ctx;
	struct cmd *cmds;
	size_t n_cmds, next_send, next_reply;
	bool pipelining, all_or_nothing;
	bool *accepted;
	bool mail_failed;
	bool deferred_finish;		/* a local refusal: report from the event loop */
	struct smtp_client_result res;
	int body_fd;
	off_t body_offset;
	uint64_t body_size, body_pos;
	bool body_bol, body_prev_cr;
	char *prefix;			/* txn->prefix (DKIM-Signature fields), sent first */
	size_t prefix_len;
};

static void client_read_cb(struct bufferevent *bev, void *arg);
static void start_auth(struct smtp_client *c);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void txn_pump(struct smtp_client *c);
static void body_fill(struct smtp_client *c);
static void txn_finish(struct smtp_client *c, bool usable);
static void timer_cb(evutil_socket_t fd, short what, void *arg);

const char *smtp_client_stage_name(enum smtp_client_stage stage)
{
	static const char *const names[] = { "connect", "greeting", "EHLO", "STARTTLS",
					     "precheck", "RSET", "MAIL FROM", "RCPT TO",
					     "DATA", "message body", "end of data", "AUTH" };
	return (size_t)stage < sizeof(names) / sizeof(names[0]) ? names[stage] : "?";
}

static void set_state(struct smtp_client *c, enum client_state st)
{
	if (c->state != st)
		log_debug("smtp client %s: state %s -> %s", c->id, state_names[c->state],
			  state_names[st]);
	c->state = st;
}

/* ---- results ---------------------------------------------------------------------- */

static void reply_clear(struct smtp_client_reply *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
}

static void result_free(struct smtp_client_result *r)
{
	reply_clear(&r->mail);
	reply_clear(&r->data);
	for (size_t i = 0; i < r->n_rcpts; i++)
		reply_clear(&r->rcpts[i]);
	free(r->rcpts);
	memset(r, 0, sizeof(*r));
}

static enum smtp_client_status status_of(int code)
{
	return code >= 200 && code < 300 ? SMTP_CLIENT_OK
	       : code >= 500 && code < 600 ? SMTP_CLIENT_PERMFAIL : SMTP_CLIENT_TEMPFAIL;
}

/* reply_set_server - r becomes the server's reply (replacing what it held) */
static void reply_set_server(struct smtp_client_reply *r, enum smtp_client_stage stage,
			     const struct smtp_reply *rep)
{
	reply_clear(r);
	r->status = status_of(rep->code);
	r->stage = stage;
	r->code = rep->code;
	snprintf(r->enhanced, sizeof(r->enhanced), "%s", rep->enhanced);
	r->text = smtp_reply_oneline(rep, RESULT_TEXT_MAX);
}

static void reply_set_local(struct smtp_client_reply *r, enum smtp_client_status status,
			    enum smtp_client_stage stage, const char *enhanced, const char *text)
{
	reply_clear(r);
	r->status = status;
	r->stage = stage;
	snprintf(r->enhanced, sizeof(r->enhanced), "%s", enhanced ? enhanced : "");
	r->text = xstrdup(text ? text : "");
}

static void reply_copy(struct smtp_client_reply *dst, const struct smtp_client_reply *src)
{
	reply_clear(dst);
	*dst = *src;
	dst->text = xstrdup(src->text ? src->text : "");
}

/* ---- timers, output, teardown ------------------------------------------------------- */

static void timer_arm(struct smtp_client *c, unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

static void send_line(struct smtp_client *c, const char *line)
{
	size_t n = strlen(line);
	bufferevent_write(c->bev, line, n);
	log_debug("smtp client %s: > %.*s", c->id, (int)(n >= 2 ? n - 2 : n), line);
}

/* close_connection - drop the socket now; the client stays for the caller to quit */
static void close_connection(struct smtp_client *c)
{
	evtimer_del(c->timer);
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->connect_ev != NULL) {
		event_free(c->connect_ev);
		c->connect_ev = NULL;
	}
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	c->in_sync = false;
}

/* free_later - hand the client to the event loop for release (never free on our own
 * stack: a callback up there may still look at it) */
static void free_later(struct smtp_client *c)
{
	c->connect_cb = NULL;
	c->send_cb = NULL;
	evtimer_del(c->timer);
	if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	set_state(c, CS_FREEING);
	event_active(c->kick, 0, 0);
}

/* wipe_secrets - the credentials are needed no more: overwrite and free them */
static void wipe_secrets(struct smtp_client *c)
{
	if (c->auth_password != NULL) {
		explicit_bzero(c->auth_password, strlen(c->auth_password));
		free(c->auth_password);
		c->auth_password = NULL;
	}
	free(c->auth_user);
	c->auth_user = NULL;
}

/* client_destroy - release everything (only from kick_cb) */
static void client_destroy(struct smtp_client *c)
{
	close_connection(c);
	event_free(c->timer);
	event_free(c->kick);
	for (size_t i = 0; i < c->n_cmds; i++)
		free(c->cmds[i].line);
	free(c->cmds);
	free(c->accepted);
	free(c->prefix);
	result_free(&c->res);
	reply_clear(&c->pending_error);
	smtp_reply_parser_free(&c->rp);
	buf_free(&c->line);
	free(c->helo_name);
	free(c->server_name);
	wipe_secrets(c);
	free(c->id);
	free(c);
}

/* ---- connection setup --------------------------------------------------------------- */

/* setup_fail - the connection could not be set up: tell the caller (the client stays
 * allocated until smtp_client_quit) */
static void setup_fail(struct smtp_client *c, enum smtp_client_stage stage,
		       enum smtp_client_status status, const struct smtp_reply *rep,
		       const char *enhanced, const char *text, bool in_sync)
{
	struct smtp_client_reply err;
	memset(&err, 0, sizeof(err));
	if (rep != NULL)
		reply_set_server(&err, stage, rep);
	else
		reply_set_local(&err, status, stage, enhanced, text);
	if (rep != NULL && status != SMTP_CLIENT_OK)
		err.status = status;
	log_debug("smtp client %s: setup failed: %s", c->id, err.text);
	if (!in_sync)
		close_connection(c);
	else if (c->bev != NULL)
		bufferevent_disable(c->bev, EV_READ);
	c->in_sync = in_sync && c->bev != NULL;
	set_state(c, CS_FAILED);
	evtimer_del(c->timer);
	smtp_client_connect_cb *cb = c->connect_cb;
	c->connect_cb = NULL;
	c->connect_reported = true;
	if (cb != NULL)
		cb(c, &err, c->connect_ctx);
	reply_clear(&err);
}

/* setup_done - connected, greeted, EHLO (and TLS) done: tell the caller */
static void setup_done(struct smtp_client *c)
{
	evtimer_del(c->timer);
	set_state(c, CS_READY);
	smtp_client_connect_cb *cb = c->connect_cb;
	c->connect_cb = NULL;
	c->connect_reported = true;
	if (cb != NULL)
		cb(c, NULL, c->connect_ctx);
}

/* send_ehlo - EHLO, or HELO as the fallback */
static void send_ehlo(struct smtp_client *c, bool helo)
{
	char line[300];
	snprintf(line, sizeof(line), "%s %s\r\n", helo ? "HELO" : "EHLO", c->helo_name);
	set_state(c, helo ? CS_HELO : CS_EHLO);
	send_line(c, line);
	timer_arm(c, c->to.ehlo);
}

/* parse_ehlo - the extensions listed after the first line of a 250 EHLO reply */
static void parse_ehlo(struct smtp_client *c, const struct smtp_reply *rep)
{
	memset(&c->ext, 0, sizeof(c->ext));
	c->ext.esmtp = true;
	const char *p = rep->text.data ? rep->text.data : "";
	const char *nl = strchr(p, '\n');
	while (nl != NULL) {
		const char *kw = nl + 1;
		nl = strchr(kw, '\n');
		size_t len = nl ? (size_t)(nl - kw) : strlen(kw);
		size_t kwlen = strcspn(kw, " \n");
		if (kwlen > len)
			kwlen = len;
#define IS(name) (kwlen == sizeof(name) - 1 && strncasecmp(kw, name, kwlen) == 0)
		if (IS("PIPELINING")) {
			c->ext.pipelining = true;
		} else if (IS("8BITMIME")) {
			c->ext.eightbitmime = true;
		} else if (IS("SMTPUTF8")) {
			c->ext.smtputf8 = true;
		} else if (IS("DSN")) {
			c->ext.dsn = true;
		} else if (IS("CHUNKING")) {
			c->ext.chunking = true;
		} else if (IS("ENHANCEDSTATUSCODES")) {
			c->ext.enhancedstatuscodes = true;
		} else if (IS("STARTTLS")) {
			c->ext.starttls = true;
		} else if (IS("AUTH")) {
			/* "AUTH PLAIN LOGIN ...": the mechanisms we know */
			const char *m = kw + kwlen, *end = kw + len;
			while (m < end) {
				while (m < end && *m == ' ')
					m++;
				size_t ml = 0;
				while (m + ml < end && m[ml] != ' ')
					ml++;
				if (ml == 5 && !strncasecmp(m, "PLAIN", 5))
					c->ext.auth_plain = true;
				else if (ml == 5 && !strncasecmp(m, "LOGIN", 5))
					c->ext.auth_login = true;
				m += ml;
			}
		} else if (IS("SIZE")) {
			uint64_t n = 0;
			c->ext.size = true;
			/* "SIZE" alone or an unparsable value: no limit we can rely on */
			if (len > kwlen + 1) {
				char *v = xstrndup(kw + kwlen + 1, len - kwlen - 1);
				if (strnum_u64z(v, UINT64_MAX, &n) == 0)
					c->ext.size_max = n;
				free(v);
			}
		}
#undef IS
	}
}

/* send_secret - a line with credentials: logged without them */
static void send_secret(struct smtp_client *c, const char *line, const char *shown)
{
	bufferevent_write(c->bev, line, strlen(line));
	log_debug("smtp client %s: > %s", c->id, shown);
}

/* send_b64_secret - one AUTH line: prefix + base64(data) + CRLF, logged as prefix + "***" */
static void send_b64_secret(struct smtp_client *c, const char *prefix, const void *data,
			    size_t len)
{
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, prefix);
	base64_encode(data, len, &b);
	buf_puts(&b, "\r\n");
	char shown[64];
	snprintf(shown, sizeof(shown), "%s***", prefix);
	send_secret(c, buf_cstr(&b), shown);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
}

/* start_auth - AUTH PLAIN (initial response) or LOGIN; never on a clear connection */
static void start_auth(struct smtp_client *c)
{
	if (!c->tls) {
		setup_fail(c, SMTP_CLIENT_STAGE_AUTH, SMTP_CLIENT_PERMFAIL, NULL, "5.7.11",
			   "refusing to send a password over an unencrypted connection", true);
		return;
	}
	set_state(c, CS_AUTH);
	if (c->ext.auth_plain) {
		size_t ul = strlen(c->auth_user), pl = strlen(c->auth_password);
		char *msg = xmalloc(ul + pl + 2);
		msg[0] = '\0';
		memcpy(msg + 1, c->auth_user, ul);
		msg[1 + ul] = '\0';
		memcpy(msg + 2 + ul, c->auth_password, pl);
		send_b64_secret(c, "AUTH PLAIN ", msg, ul + pl + 2);
		explicit_bzero(msg, ul + pl + 2);
		free(msg);
		c->auth_step = AUTH_PLAIN_SENT;
	} else if (c->ext.auth_login) {
		send_line(c, "AUTH LOGIN\r\n");
		c->auth_step = AUTH_LOGIN_START;
	} else {
		setup_fail(c, SMTP_CLIENT_STAGE_AUTH, SMTP_CLIENT_PERMFAIL, NULL, "5.7.4",
			   c->ext.esmtp ? "the server offers neither AUTH PLAIN nor AUTH LOGIN"
					: "the server does not support ESMTP (no AUTH)", true);
		return;
	}
	timer_arm(c, c->to.ehlo);
}

/* auth_reply - a reply during AUTH: 334 asks for the next LOGIN step, 235 is success */
static void auth_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	if (rep->code == 235) {
		wipe_secrets(c);
		setup_done(c);
		return;
	}
	if (rep->code == 334 && c->auth_step == AUTH_LOGIN_START) {
		send_b64_secret(c, "", c->auth_user, strlen(c->auth_user));
		c->auth_step = AUTH_LOGIN_USER;
		timer_arm(c, c->to.ehlo);
		return;
	}
	if (rep->code == 334 && c->auth_step == AUTH_LOGIN_USER) {
		send_b64_secret(c, "", c->auth_password, strlen(c->auth_password));
		c->auth_step = AUTH_LOGIN_PASS;
		timer_arm(c, c->to.ehlo);
		return;
	}
	int cls = rep->code / 100;
	setup_fail(c, SMTP_CLIENT_STAGE_AUTH, cls == 3 ? SMTP_CLIENT_TEMPFAIL : status_of(rep->code),
		   rep, NULL, NULL, cls != 3 && rep->code != 421);
}

/* after_ehlo - EHLO/HELO accepted: STARTTLS, AUTH, or done */
static void after_ehlo(struct smtp_client *c)
{
	if (!c->tls && c->tls_ctx != NULL && c->ext.starttls) {
		set_state(c, CS_STARTTLS);
		send_line(c, "STARTTLS\r\n");
		timer_arm(c, c->to.ehlo);
		return;
	}
	if (!c->tls && c->require_tls) {
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.7.10",
			   "TLS is required, but the server does not offer STARTTLS", true);
		return;
	}
	if (c->auth_user != NULL) {
		start_auth(c);
		return;
	}
	setup_done(c);
}

/* is_ip_literal - s is an IPv4 or IPv6 address (no SNI for those, RFC 6066 §3) */
static bool is_ip_literal(const char *s)
{
	unsigned char tmp[16];
	return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

/* ssl_new_for - a client SSL: SNI, and with tls_verify the chain and the name checked */
static SSL *ssl_new_for(struct smtp_client *c)
{
	SSL *ssl = SSL_new(c->tls_ctx);
	if (ssl == NULL)
		return NULL;
	bool ip = c->server_name != NULL && is_ip_literal(c->server_name);
	if (c->server_name != NULL && !ip)
		SSL_set_tlsext_host_name(ssl, c->server_name);
	if (!c->tls_verify) {
		SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
		return ssl;
	}
	SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
	if (c->server_name != NULL) {
		int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->server_name)
			    : SSL_set1_host(ssl, c->server_name);
		if (ok != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/* start_implicit_tls - connected on a TLS port: handshake before the greeting */
static void start_implicit_tls(struct smtp_client *c)
{
	SSL *ssl = ssl_new_for(c);
	if (ssl == NULL) {
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.3.0",
			   "TLS: cannot create a session", false);
		return;
	}
	c->bev = bufferevent_openssl_socket_new(c->base, c->fd, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		SSL_free(ssl);
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.3.0",
			   "TLS: cannot create a bufferevent", false);
		return;
	}
	c->fd = -1;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	set_state(c, CS_HANDSHAKE);
	timer_arm(c, c->to.ehlo);
}

/* start_tls - the server said 220 to STARTTLS: put a TLS filter over the socket */
static void start_tls(struct smtp_client *c)
{
	/* Anything the server sent after its 220 was sent before the handshake, in clear:
	 * it must not be taken as a reply inside TLS (RFC 3207 §6 injection). */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_drain(in, evbuffer_get_length(in));
	linereader_init(&c->lr, c->max_line);
	SSL *ssl = ssl_new_for(c);
	if (ssl == NULL) {
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.3.0",
			   "TLS: cannot create a session", false);
		return;
	}
	struct bufferevent *tb = bufferevent_openssl_filter_new(
		c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (tb == NULL) {
		SSL_free(ssl);
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.3.0",
			   "TLS: cannot create a filter", false);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	/* the filter must not hoard the whole message in the socket's buffer */
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, BODY_HIGH);
	c->bev = tb;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	set_state(c, CS_HANDSHAKE);
	timer_arm(c, c->to.ehlo);
}

/* setup_reply - a reply during greeting/EHLO/HELO/STARTTLS */
static void setup_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	int cls = rep->code / 100;
	bool closing = rep->code == 421;
	switch (c->state) {
	case CS_GREETING:
		if (cls == 2)
			send_ehlo(c, false);
		else
			setup_fail(c, SMTP_CLIENT_STAGE_GREETING, status_of(rep->code), rep, NULL,
				   NULL, !closing);
		break;
	case CS_EHLO:
		if (cls == 2) {
			parse_ehlo(c, rep);
			after_ehlo(c);
		} else if (cls == 5) {
			send_ehlo(c, true);
		} else {
			setup_fail(c, SMTP_CLIENT_STAGE_EHLO, SMTP_CLIENT_TEMPFAIL, rep, NULL, NULL,
				   !closing && cls == 4);
		}
		break;
	case CS_HELO:
		if (cls == 2) {
			memset(&c->ext, 0, sizeof(c->ext));
			after_ehlo(c);
		} else {
			setup_fail(c, SMTP_CLIENT_STAGE_EHLO, status_of(rep->code), rep, NULL, NULL,
				   !closing && (cls == 4 || cls == 5));
		}
		break;
	case CS_AUTH:
		auth_reply(c, rep);
		break;
	case CS_STARTTLS:
		if (cls == 2)
			start_tls(c);
		else if (closing || cls == 3)
			setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, rep, NULL,
				   NULL, false);
		else if (c->require_tls)
			setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, rep, NULL,
				   NULL, true);
		else
			setup_done(c);	/* opportunistic: go on in clear */
		break;
	default:
		break;
	}
}

/* connect_done_cb - the non-blocking connect finished, failed or timed out */
static void connect_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	(void)fd;
	event_free(c->connect_ev);
	c->connect_ev = NULL;
	if (what & EV_TIMEOUT) {
		setup_fail(c, SMTP_CLIENT_STAGE_CONNECT, SMTP_CLIENT_TEMPFAIL, NULL, "4.4.1",
			   "connect: timed out", false);
		return;
	}
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0) {
		char text[128];
		snprintf(text, sizeof(text), "connect: %s", strerror(err));
		setup_fail(c, SMTP_CLIENT_STAGE_CONNECT, SMTP_CLIENT_TEMPFAIL, NULL, "4.4.1", text,
			   false);
		return;
	}
	if (c->implicit_tls) {
		start_implicit_tls(c);
		return;
	}
	c->bev = bufferevent_socket_new(c->base, c->fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		log_panic("bufferevent_socket_new failed");
	c->fd = -1;
	bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	set_state(c, CS_GREETING);
	timer_arm(c, c->to.greeting);
}

/* kick_cb - work deferred to the event loop: a failure found inside a call, a local
 * refusal of a transaction, the final free */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	(void)fd;
	(void)what;
	if (c->state == CS_FREEING) {
		client_destroy(c);
		return;
	}
	if (c->pending_error.text != NULL) {
		struct smtp_client_reply e = c->pending_error;
		memset(&c->pending_error, 0, sizeof(c->pending_error));
		setup_fail(c, e.stage, e.status, NULL, e.enhanced, e.text, false);
		reply_clear(&e);
		return;
	}
	if (c->state == CS_TXN && c->deferred_finish)
		txn_finish(c, true);
}

/* defer_setup_error - a failure inside smtp_client_connect, reported from the loop */
static void defer_setup_error(struct smtp_client *c, enum smtp_client_status status,
			      const char *enhanced, const char *text)
{
	reply_set_local(&c->pending_error, status, SMTP_CLIENT_STAGE_CONNECT, enhanced, text);
	event_active(c->kick, 0, 0);
}

/* timeouts_default - the caller's timeouts, RFC 5321 §4.5.3.2 values for the zeros */
static void timeouts_default(struct smtp_client_timeouts *t, const struct smtp_client_timeouts *o)
{
	t->connect = o->connect ? o->connect : 300000;
	t->greeting = o->greeting ? o->greeting : 300000;
	t->ehlo = o->ehlo ? o->ehlo : 300000;
	t->mail = o->mail ? o->mail : 300000;
	t->rcpt = o->rcpt ? o->rcpt : 300000;
	t->data_init = o->data_init ? o->data_init : 120000;
	t->data_block = o->data_block ? o->data_block : 180000;
	t->data_done = o->data_done ? o->data_done : 600000;
	t->quit = o->quit ? o->quit : 5000;
}

/* printable_token - s is non-empty printable ASCII without spaces */
static bool printable_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* smtp_client_connect - socket, bind, non-blocking connect; the rest runs in callbacks */
struct smtp_client *smtp_client_connect(struct event_base *base, const struct sockaddr *addr,
					socklen_t addrlen, const struct smtp_client_opts *opts,
					smtp_client_connect_cb *cb, void *ctx)
{
	struct smtp_client *c = xcalloc(1, sizeof(*c));
	char ip[64];
	c->base = base;
	c->fd = -1;
	c->state = CS_CONNECTING;
	c->helo_name = xstrdup(opts->helo_name ? opts->helo_name : "");
	c->server_name = opts->tls_server_name ? xstrdup(opts->tls_server_name) : NULL;
	net_ntop(addr, ip, sizeof(ip));
	c->id = opts->log_id ? xasprintf("%s %s", opts->log_id, ip) : xstrdup(ip);
	c->tls_ctx = opts->tls_ctx;
	c->require_tls = opts->require_tls;
	c->implicit_tls = opts->implicit_tls;
	c->tls_verify = opts->tls_verify;
	if (opts->auth_user != NULL) {
		c->auth_user = xstrdup(opts->auth_user);
		c->auth_password = xstrdup(opts->auth_password ? opts->auth_password : "");
	}
	timeouts_default(&c->to, &opts->timeouts);
	c->max_line = opts->max_reply_line ? opts->max_reply_line : SMTP_REPLY_MAX_LINE;
	linereader_init(&c->lr, c->max_line);
	buf_init(&c->line, 0);
	smtp_reply_parser_init(&c->rp, opts->max_reply_lines, 0);
	c->connect_cb = cb;
	c->connect_ctx = ctx;
	c->timer = evtimer_new(base, timer_cb, c);
	c->kick = event_new(base, -1, 0, kick_cb, c);
	if (c->timer == NULL || c->kick == NULL)
		log_panic("event_new failed");

	if (!printable_token(c->helo_name)) {
		defer_setup_error(c, SMTP_CLIENT_PERMFAIL, "5.3.5", "invalid HELO name");
		return c;
	}
	if ((c->require_tls || c->implicit_tls) && c->tls_ctx == NULL) {
		defer_setup_error(c, SMTP_CLIENT_PERMFAIL, "5.7.10",
				  "TLS is required, but no TLS context was given");
		return c;
	}
	c->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		char text[128];
		snprintf(text, sizeof(text), "socket: %s", strerror(errno));
		defer_setup_error(c, SMTP_CLIENT_TEMPFAIL, "4.3.0", text);
		return c;
	}
	{
		/* PIPELINING sends a burst of commands: no Nagle delay on the last one */
		int one = 1;
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (opts->source != NULL && bind(c->fd, opts->source, opts->sourcelen) < 0) {
		char text[128];
		snprintf(text, sizeof(text), "bind: %s", strerror(errno));
		defer_setup_error(c, SMTP_CLIENT_TEMPFAIL, "4.3.0", text);
		return c;
	}
	if (connect(c->fd, addr, addrlen) < 0 && errno != EINPROGRESS) {
		char text[128];
		snprintf(text, sizeof(text), "connect: %s", strerror(errno));
		defer_setup_error(c, SMTP_CLIENT_TEMPFAIL, "4.4.1", text);
		return c;
	}
	/* Even an immediate success is reported from the loop, like every outcome. */
	c->connect_ev = event_new(base, c->fd, EV_WRITE, connect_done_cb, c);
	struct timeval tv = { (time_t)(c->to.connect / 1000),
			      (suseconds_t)(c->to.connect % 1000) * 1000 };
	event_add(c->connect_ev, &tv);
	return c;
}

/* ---- transactions ------------------------------------------------------------------ */

static enum smtp_client_stage cmd_stage(enum cmd_kind k)
{
	switch (k) {
	case CMD_RSET:
		return SMTP_CLIENT_STAGE_RSET;
	case CMD_MAIL:
		return SMTP_CLIENT_STAGE_MAIL;
	case CMD_RCPT:
		return SMTP_CLIENT_STAGE_RCPT;
	case CMD_DATA:
	case CMD_DOT_DISCARD:
		return SMTP_CLIENT_STAGE_DATA;
	case CMD_DOT:
		break;
	}
	return SMTP_CLIENT_STAGE_DATA_DONE;
}

static unsigned cmd_timeout(const struct smtp_client *c, enum cmd_kind k)
{
	switch (k) {
	case CMD_RSET:
	case CMD_MAIL:
		return c->to.mail;
	case CMD_RCPT:
		return c->to.rcpt;
	case CMD_DATA:
		return c->to.data_init;
	case CMD_DOT:
	case CMD_DOT_DISCARD:
		break;
	}
	return c->to.data_done;
}

/* cmd_add - queue a command (line owned by the queue) */
static void cmd_add(struct smtp_client *c, enum cmd_kind kind, size_t rcpt, char *line)
{
	c->cmds = xreallocarray(c->cmds, c->n_cmds + 1, sizeof(*c->cmds));
	c->cmds[c->n_cmds].kind = kind;
	c->cmds[c->n_cmds].rcpt = rcpt;
	c->cmds[c->n_cmds].line = line;
	c->n_cmds++;
}

/* cmds_truncate - forget the commands not sent yet (nothing more will go out) */
static void cmds_truncate(struct smtp_client *c)
{
	for (size_t i = c->next_send; i < c->n_cmds; i++)
		free(c->cmds[i].line);
	c->n_cmds = c->next_send;
}

/* txn_finish - every recipient gets an outcome; report and go back to idle (or, when not
 * usable, close the connection) */
static void txn_finish(struct smtp_client *c, bool usable)
{
	struct smtp_client_result *r = &c->res;
	if (r->mail.text == NULL)
		reply_set_local(&r->mail, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_MAIL, "4.3.0",
				"MAIL FROM not sent");
	if (r->data.text == NULL) {
		if (c->mail_failed) {
			reply_copy(&r->data, &r->mail);
		} else if (r->n_accepted == 0) {
			bool temp = false;
			for (size_t i = 0; i < r->n_rcpts; i++)
				if (r->rcpts[i].text != NULL &&
				    r->rcpts[i].status == SMTP_CLIENT_TEMPFAIL)
					temp = true;
			reply_set_local(&r->data,
					temp ? SMTP_CLIENT_TEMPFAIL : SMTP_CLIENT_PERMFAIL,
					SMTP_CLIENT_STAGE_RCPT, temp ? "4.0.0" : "5.0.0",
					"message not sent: no recipient accepted");
		} else {
			reply_set_local(&r->data, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_STAGE_DATA,
					"4.5.0", "no reply to DATA");
		}
	}
	for (size_t i = 0; i < r->n_rcpts; i++)
		if (r->rcpts[i].text == NULL)
			reply_copy(&r->rcpts[i], &r->data);
	r->usable = usable;
	if (c->next_send > 0)
		c->need_rset = true;
	for (size_t i = 0; i < c->n_cmds; i++)
		free(c->cmds[i].line);
	free(c->cmds);
	c->cmds = NULL;
	c->n_cmds = c->next_send = c->next_reply = 0;
	free(c->accepted);
	c->accepted = NULL;
	c->deferred_finish = false;
	evtimer_del(c->timer);
	if (c->bev != NULL)
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	if (usable) {
		set_state(c, CS_READY);
	} else {
		close_connection(c);
		set_state(c, CS_FAILED);
	}
	/* The callback may start the next transaction on c: hand it a result of its own. */
	struct smtp_client_result done = *r;
	memset(r, 0, sizeof(*r));
	smtp_client_send_cb *cb = c->send_cb;
	c->send_cb = NULL;
	log_debug("smtp client %s: transaction done: %s", c->id, done.data.text);
	if (cb != NULL)
		cb(c, &done, c->send_ctx);
	result_free(&done);
}

/* txn_fail - the transaction cannot go on: every outcome not known yet becomes why */
static void txn_fail(struct smtp_client *c, const struct smtp_client_reply *why)
{
	struct smtp_client_result *r = &c->res;
	if (r->mail.text == NULL)
		reply_copy(&r->mail, why);
	if (r->data.text == NULL)
		reply_copy(&r->data, why);
	for (size_t i = 0; i < r->n_rcpts; i++)
		if (r->rcpts[i].text == NULL)
			reply_copy(&r->rcpts[i], why);
	txn_finish(c, false);
}

static void txn_fail_local(struct smtp_client *c, enum smtp_client_stage stage,
			   const char *enhanced, const char *text)
{
	struct smtp_client_reply why;
	memset(&why, 0, sizeof(why));
	reply_set_local(&why, SMTP_CLIENT_TEMPFAIL, stage, enhanced, text);
	txn_fail(c, &why);
	reply_clear(&why);
}

/* txn_pump - send what may go now: everything up to DATA with PIPELINING, else the next
 * command once the previous one has its reply */
static void txn_pump(struct smtp_client *c)
{
	while (c->state == CS_TXN && c->next_send < c->n_cmds) {
		if (!c->pipelining && c->next_reply < c->next_send)
			break;
		struct cmd *cmd = &c->cmds[c->next_send];
		if (cmd->kind == CMD_DOT)
			break;
		if (cmd->kind == CMD_DATA && !c->pipelining &&
		    (c->res.n_accepted == 0 ||
		     (c->all_or_nothing && c->res.n_accepted < c->res.n_rcpts))) {
			cmds_truncate(c);
			break;
		}
		send_line(c, cmd->line);
		c->next_send++;
		if (cmd->kind == CMD_DATA)
			break;	/* RFC 2920 §3.1: DATA ends a group */
	}
	if (c->state != CS_TXN)
		return;
	if (c->next_reply == c->n_cmds) {
		txn_finish(c, true);
		return;
	}
	if (c->next_reply < c->next_send)
		timer_arm(c, cmd_timeout(c, c->cmds[c->next_reply].kind));
}

/* dot_stuff - message bytes to wire form: every line end (CRLF, bare LF, bare CR) becomes
 * CRLF, a line starting with "." gets another. out needs room for 2 * n + 2 bytes. Only
 * CRLF ever leaves us, so no server can see a line end, or an end of data, where the
 * message had none (SMTP smuggling). */
static size_t dot_stuff(struct smtp_client *c, const char *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char b = in[i];
		if (c->body_prev_cr) {
			out[o++] = '\r';
			out[o++] = '\n';
			c->body_bol = true;
			c->body_prev_cr = false;
			if (b == '\n')
				continue;
		}
		if (b == '\r') {
			c->body_prev_cr = true;
			continue;
		}
		if (b == '\n') {
			out[o++] = '\r';
			out[o++] = '\n';
			c->body_bol = true;
			continue;
		}
		if (c->body_bol && b == '.')
			out[o++] = '.';
		out[o++] = b;
		c->body_bol = false;
	}
	return o;
}

/* body_end - the whole message is queued: end it and wait for the final reply */
static void body_end(struct smtp_client *c)
{
	if (c->body_prev_cr || !c->body_bol)
		bufferevent_write(c->bev, "\r\n", 2);
	bufferevent_write(c->bev, ".\r\n", 3);
	log_debug("smtp client %s: > (%llu bytes of message) .", c->id,
		  (unsigned long long)c->body_size);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	c->next_send = c->n_cmds;
	set_state(c, CS_TXN);
	timer_arm(c, c->to.data_done);
}

/* body_fill - queue message text until the output holds BODY_HIGH bytes */
static void body_fill(struct smtp_client *c)
{
	char in[BODY_CHUNK], out[2 * BODY_CHUNK + 8];
	while (c->state == CS_BODY &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) < BODY_HIGH) {
		if (c->body_pos >= c->body_size) {
			body_end(c);
			return;
		}
		uint64_t left = c->body_size - c->body_pos;
		size_t want = left < BODY_CHUNK ? (size_t)left : BODY_CHUNK;
		ssize_t n = pread(c->body_fd, in, want, c->body_offset + (off_t)c->body_pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			char text[160];
			snprintf(text, sizeof(text), "error reading message: %s",
				 n < 0 ? strerror(errno) : "unexpected end of file");
			/* The DATA cannot be ended: a dot now would deliver a truncated message. */
			txn_fail_local(c, SMTP_CLIENT_STAGE_BODY, "4.3.0", text);
			return;
		}
		size_t outlen = dot_stuff(c, in, (size_t)n, out);
		bufferevent_write(c->bev, out, outlen);
		c->body_pos += (uint64_t)n;
	}
}

/* body_start - 354 received: stream the message, refilling as the output drains */
static void body_start(struct smtp_client *c)
{
	cmd_add(c, CMD_DOT, 0, NULL);
	set_state(c, CS_BODY);
	c->body_pos = 0;
	c->body_bol = true;
	c->body_prev_cr = false;
	bufferevent_setwatermark(c->bev, EV_WRITE, BODY_LOW, 0);
	timer_arm(c, c->to.data_block);
	/* the prefix (header fields we add, such as DKIM-Signature) goes first, through the
	 * same line-end and dot-stuffing filter as the message */
	for (size_t off = 0; off < c->prefix_len; off += BODY_CHUNK) {
		char out[2 * BODY_CHUNK + 8];
		size_t n = c->prefix_len - off < BODY_CHUNK ? c->prefix_len - off : BODY_CHUNK;
		bufferevent_write(c->bev, out, dot_stuff(c, c->prefix + off, n, out));
	}
	body_fill(c);
}

/* txn_reply - the reply to the oldest command in flight */
static void txn_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	/* copies: cmd_add below may move the array */
	const struct cmd cmd = c->cmds[c->next_reply++];
	struct smtp_client_result *r = &c->res;
	int cls = rep->code / 100;
	bool live = !c->mail_failed && r->n_accepted > 0;
	bool bad = cmd.kind == CMD_DATA ? (rep->code != 354 && cls != 4 && cls != 5) : cls == 3;
	if (bad) {
		char *one = smtp_reply_oneline(rep, RESULT_TEXT_MAX);
		char *text = xasprintf("unexpected reply after %s: %s",
				       smtp_client_stage_name(cmd_stage(cmd.kind)), one);
		txn_fail_local(c, cmd_stage(cmd.kind), "4.5.0", text);
		free(one);
		free(text);
		return;
	}
	switch (cmd.kind) {
	case CMD_RSET:
		if (cls != 2) {
			char *one = smtp_reply_oneline(rep, RESULT_TEXT_MAX);
			char *text = xasprintf("RSET refused: %s", one);
			txn_fail_local(c, SMTP_CLIENT_STAGE_RSET, "4.5.0", text);
			free(one);
			free(text);
			return;
		}
		c->need_rset = false;
		break;
	case CMD_MAIL:
		reply_set_server(&r->mail, SMTP_CLIENT_STAGE_MAIL, rep);
		if (cls != 2) {
			c->mail_failed = true;
			for (size_t i = 0; i < r->n_rcpts; i++)
				reply_set_server(&r->rcpts[i], SMTP_CLIENT_STAGE_MAIL, rep);
			cmds_truncate(c);	/* without PIPELINING nothing more goes out */
		}
		break;
	case CMD_RCPT:
		if (c->mail_failed)
			break;
		if (cls == 2) {
			c->accepted[cmd.rcpt] = true;
			r->n_accepted++;
		} else {
			reply_set_server(&r->rcpts[cmd.rcpt], SMTP_CLIENT_STAGE_RCPT, rep);
		}
		break;
	case CMD_DATA:
		if (rep->code == 354) {
			if (live && c->all_or_nothing && r->n_accepted < r->n_rcpts) {
				/* all or nothing: dropping the connection aborts the DATA */
				txn_fail_local(c, SMTP_CLIENT_STAGE_DATA, "5.0.0",
					       "message not sent: a recipient was refused");
				return;
			}
			if (live) {
				body_start(c);
				return;
			}
			/* RFC 2920 §3.1: no valid recipient, yet 354: send an empty message
			 * and let the server refuse it. */
			cmd_add(c, CMD_DOT_DISCARD, 0, xstrdup(".\r\n"));
		} else if (live) {
			reply_set_server(&r->data, SMTP_CLIENT_STAGE_DATA, rep);
		}
		break;
	case CMD_DOT:
		reply_set_server(&r->data, SMTP_CLIENT_STAGE_DATA_DONE, rep);
		break;
	case CMD_DOT_DISCARD:
		break;
	}
	if (rep->code == 421) {
		/* the server is closing the connection: nothing else will be answered */
		struct smtp_client_reply why;
		memset(&why, 0, sizeof(why));
		reply_set_server(&why, cmd_stage(cmd.kind), rep);
		txn_fail(c, &why);
		reply_clear(&why);
		return;
	}
	txn_pump(c);
}

/* body_reply - a reply while we are still sending the message: the server gave up on it */
static void body_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	struct smtp_client_reply why;
	memset(&why, 0, sizeof(why));
	reply_set_server(&why, SMTP_CLIENT_STAGE_BODY, rep);
	if (why.status == SMTP_CLIENT_OK)
		why.status = SMTP_CLIENT_TEMPFAIL;
	txn_fail(c, &why);
	reply_clear(&why);
}

/* bad_address - text unfit for a command line: control characters or angle brackets */
static bool bad_address(const char *s)
{
	if (s == NULL)
		return true;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f || ch == '<' || ch == '>')
			return true;
	}
	return false;
}

/* bad_xtext - a DSN value must be printable ASCII without SP and "=" (RFC 3461 xtext) */
static bool bad_xtext(const char *s)
{
	return s != NULL && (!printable_token(s) || strchr(s, '=') != NULL);
}

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* txn_precheck - NULL, or why the transaction is refused before anything is sent */
static const char *txn_precheck(const struct smtp_client *c, const struct smtp_client_txn *t,
				char enhanced[16])
{
	bool utf8 = t->smtputf8 || non_ascii(t->sender);
	const char *why = NULL;
	if (bad_address(t->sender) || bad_xtext(t->dsn_ret) || bad_xtext(t->dsn_envid))
		why = "501 5.5.4 invalid sender or DSN parameter";
	for (size_t i = 0; i < t->n_rcpts && why == NULL; i++) {
		const struct smtp_client_rcpt *rc = &t->rcpts[i];
		if (bad_address(rc->address) || rc->address[0] == '\0' || bad_xtext(rc->notify) ||
		    bad_xtext(rc->orcpt))
			why = "501 5.5.4 invalid recipient or DSN parameter";
		else if (non_ascii(rc->address))
			utf8 = true;
	}
	if (why == NULL && c->ext.size && c->ext.size_max > 0 &&
	    t->size + t->prefix_len > c->ext.size_max)
		why = "552 5.3.4 message size exceeds remote limit";
	if (why == NULL && t->body_8bit && !c->ext.eightbitmime)
		why = "554 5.6.3 8-bit message, but the server does not support 8BITMIME";
	if (why == NULL && utf8 && !c->ext.smtputf8)
		why = "553 5.6.7 SMTPUTF8 is required, but not supported by the server";
	if (why != NULL)
		snprintf(enhanced, 16, "%.*s", (int)strcspn(why + 4, " "), why + 4);
	return why;
}

/* smtp_client_send - check locally, build the commands, send what may go now */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_txn *txn,
		     smtp_client_send_cb *cb, void *ctx)
{
	if (c == NULL || c->state != CS_READY || c->bev == NULL || txn->n_rcpts == 0)
		return -1;
	struct smtp_client_result *r = &c->res;
	result_free(r);
	r->n_rcpts = txn->n_rcpts;
	r->rcpts = xcalloc(txn->n_rcpts, sizeof(*r->rcpts));
	c->accepted = xcalloc(txn->n_rcpts, sizeof(*c->accepted));
	c->send_cb = cb;
	c->send_ctx = ctx;
	c->mail_failed = false;
	c->deferred_finish = false;
	c->n_cmds = c->next_send = c->next_reply = 0;
	set_state(c, CS_TXN);

	char enhanced[16];
	const char *why = txn_precheck(c, txn, enhanced);
	if (why != NULL) {
		reply_set_local(&r->mail, SMTP_CLIENT_PERMFAIL, SMTP_CLIENT_STAGE_PRECHECK,
				enhanced, why);
		reply_copy(&r->data, &r->mail);
		for (size_t i = 0; i < r->n_rcpts; i++)
			reply_copy(&r->rcpts[i], &r->mail);
		c->deferred_finish = true;
		event_active(c->kick, 0, 0);
		return 0;
	}

	bool utf8 = txn->smtputf8 || non_ascii(txn->sender);
	for (size_t i = 0; i < txn->n_rcpts; i++)
		utf8 = utf8 || non_ascii(txn->rcpts[i].address);
	if (c->need_rset)
		cmd_add(c, CMD_RSET, 0, xstrdup("RSET\r\n"));
	buf b;
	buf_init(&b, 0);
	buf_printf(&b, "MAIL FROM:<%s>", txn->sender);
	if (c->ext.size)
		buf_printf(&b, " SIZE=%llu", (unsigned long long)(txn->size + txn->prefix_len));
	if (txn->body_8bit)
		buf_puts(&b, " BODY=8BITMIME");
	if (utf8)
		buf_puts(&b, " SMTPUTF8");
	if (c->ext.dsn && txn->dsn_ret != NULL)
		buf_printf(&b, " RET=%s", txn->dsn_ret);
	if (c->ext.dsn && txn->dsn_envid != NULL)
		buf_printf(&b, " ENVID=%s", txn->dsn_envid);
	buf_puts(&b, "\r\n");
	cmd_add(c, CMD_MAIL, 0, xstrdup(buf_cstr(&b)));
	for (size_t i = 0; i < txn->n_rcpts; i++) {
		const struct smtp_client_rcpt *rc = &txn->rcpts[i];
		buf_reset(&b);
		buf_printf(&b, "RCPT TO:<%s>", rc->address);
		if (c->ext.dsn && rc->notify != NULL)
			buf_printf(&b, " NOTIFY=%s", rc->notify);
		if (c->ext.dsn && rc->orcpt != NULL)
			buf_printf(&b, " ORCPT=%s", rc->orcpt);
		buf_puts(&b, "\r\n");
		cmd_add(c, CMD_RCPT, i, xstrdup(buf_cstr(&b)));
	}
	buf_free(&b);
	cmd_add(c, CMD_DATA, 0, xstrdup("DATA\r\n"));
	c->pipelining = c->ext.pipelining;
	c->all_or_nothing = txn->all_or_nothing;
	c->body_fd = txn->fd;
	c->body_offset = txn->offset;
	c->body_size = txn->size;
	free(c->prefix);
	c->prefix = txn->prefix_len > 0 ? xmalloc(txn->prefix_len) : NULL;
	if (c->prefix != NULL)
		memcpy(c->prefix, txn->prefix, txn->prefix_len);
	c->prefix_len = txn->prefix_len;
	txn_pump(c);
	return 0;
}

/* ---- I/O --------------------------------------------------------------------------- */

/* wait_phrase - where we are, for error texts: "after RCPT TO", "waiting for greeting" */
static const char *wait_phrase(const struct smtp_client *c, enum smtp_client_stage *stage_r,
			       char *out, size_t outsz)
{
	enum smtp_client_stage st = SMTP_CLIENT_STAGE_CONNECT;
	const char *p = "";
	switch (c->state) {
	case CS_GREETING:
		st = SMTP_CLIENT_STAGE_GREETING;
		p = "waiting for greeting";
		break;
	case CS_EHLO:
		st = SMTP_CLIENT_STAGE_EHLO;
		p = "after EHLO";
		break;
	case CS_HELO:
		st = SMTP_CLIENT_STAGE_EHLO;
		p = "after HELO";
		break;
	case CS_STARTTLS:
		st = SMTP_CLIENT_STAGE_STARTTLS;
		p = "after STARTTLS";
		break;
	case CS_HANDSHAKE:
		st = SMTP_CLIENT_STAGE_STARTTLS;
		p = "during TLS handshake";
		break;
	case CS_AUTH:
		st = SMTP_CLIENT_STAGE_AUTH;
		p = "after AUTH";
		break;
	case CS_BODY:
		st = SMTP_CLIENT_STAGE_BODY;
		p = "while sending message";
		break;
	case CS_TXN:
		st = c->next_reply < c->n_cmds ? cmd_stage(c->cmds[c->next_reply].kind)
					       : SMTP_CLIENT_STAGE_DATA_DONE;
		snprintf(out, outsz, "after %s", smtp_client_stage_name(st));
		*stage_r = st;
		return out;
	case CS_QUIT:
		p = "after QUIT";
		break;
	default:
		p = "while idle";
		break;
	}
	*stage_r = st;
	snprintf(out, outsz, "%s", p);
	return out;
}

/* fail_now - the connection broke (what: "timeout", "lost connection", "bad reply"); the
 * current stage gets the blame and the client becomes unusable */
static void fail_now(struct smtp_client *c, const char *what, const char *enhanced,
		     const char *detail)
{
	char where[64], text[512];
	enum smtp_client_stage stage;
	wait_phrase(c, &stage, where, sizeof(where));
	snprintf(text, sizeof(text), "%s %s%s%s", what, where, detail ? ": " : "",
		 detail ? detail : "");
	switch (c->state) {
	case CS_GREETING:
	case CS_EHLO:
	case CS_HELO:
	case CS_STARTTLS:
	case CS_HANDSHAKE:
	case CS_AUTH:
		setup_fail(c, stage, SMTP_CLIENT_TEMPFAIL, NULL, enhanced, text, false);
		break;
	case CS_TXN:
	case CS_BODY:
		txn_fail_local(c, stage, enhanced, text);
		break;
	case CS_READY:
		log_debug("smtp client %s: %s", c->id, text);
		close_connection(c);
		set_state(c, CS_FAILED);
		break;
	case CS_QUIT:
		free_later(c);
		break;
	default:
		break;
	}
}

/* handle_reply - a complete reply, by state */
static void handle_reply(struct smtp_client *c, const struct smtp_reply *rep)
{
	switch (c->state) {
	case CS_GREETING:
	case CS_EHLO:
	case CS_HELO:
	case CS_STARTTLS:
	case CS_AUTH:
		evtimer_del(c->timer);
		setup_reply(c, rep);
		break;
	case CS_TXN:
		evtimer_del(c->timer);
		if (c->next_reply < c->next_send) {
			txn_reply(c, rep);
		} else {
			char *one = smtp_reply_oneline(rep, RESULT_TEXT_MAX);
			fail_now(c, "unexpected reply", "4.5.0", one);
			free(one);
		}
		break;
	case CS_BODY:
		body_reply(c, rep);
		break;
	case CS_READY: {
		/* unasked: most likely a 421 before an idle close; we are out of step anyway */
		char *one = smtp_reply_oneline(rep, RESULT_TEXT_MAX);
		fail_now(c, "unexpected reply", "4.5.0", one);
		free(one);
		break;
	}
	case CS_QUIT:
		free_later(c);
		break;
	default:
		break;
	}
}

static bool reading_state(const struct smtp_client *c)
{
	switch (c->state) {
	case CS_GREETING:
	case CS_EHLO:
	case CS_HELO:
	case CS_STARTTLS:
	case CS_AUTH:
	case CS_READY:
	case CS_TXN:
	case CS_BODY:
	case CS_QUIT:
		return c->bev != NULL;
	default:
		return false;
	}
}

/* client_read_cb - read reply lines, hand complete replies on; stops as soon as the state
 * no longer reads (a callback may have sent QUIT, STARTTLS may have swapped the bev) */
static void client_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	(void)bev;
	while (reading_state(c)) {
		bool bare;
		int r = linereader_read(&c->lr, bufferevent_get_input(c->bev), &c->line, &bare);
		if (r == 0)
			break;
		if (r < 0) {
			char detail[64];
			snprintf(detail, sizeof(detail), "line longer than %zu bytes", c->max_line);
			fail_now(c, "reply too long", "4.5.0", detail);
			break;
		}
		if (log_debug_enabled()) {
			char clean[256];
			log_sanitize(clean, sizeof(clean), c->line.data, c->line.len);
			log_debug("smtp client %s: < %s", c->id, clean);
		}
		const char *err;
		int pr = smtp_reply_parse_line(&c->rp, c->line.data, c->line.len, &err);
		if (pr == 0)
			continue;
		if (pr < 0) {
			char clean[128], detail[200];
			log_sanitize(clean, sizeof(clean), c->line.data, c->line.len);
			snprintf(detail, sizeof(detail), "%s: \"%s\"", err, clean);
			fail_now(c, "bad reply", "4.5.0", detail);
			break;
		}
		handle_reply(c, &c->rp.reply);
	}
}

/* client_write_cb - the output drained below BODY_LOW: more of the message */
static void client_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_client *c = arg;
	(void)bev;
	if (c->state == CS_BODY) {
		timer_arm(c, c->to.data_block);	/* progress: the peer took a block */
		body_fill(c);
	}
}

/* ssl_errors - the queued OpenSSL errors of bev as one line */
static void ssl_errors(struct bufferevent *bev, char *out, size_t outsz)
{
	unsigned long e;
	size_t len = 0;
	out[0] = '\0';
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		char msg[256];
		ERR_error_string_n(e, msg, sizeof(msg));
		if (len == 0)
			snprintf(out, outsz, "%s", msg);
		len++;
	}
}

/* client_event_cb - TLS handshake done, or the connection failed or closed */
static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_client *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == CS_HANDSHAKE)
			metrics_count(METRICS_TLS_OUT_OK);
		if (c->state == CS_HANDSHAKE && c->implicit_tls && !c->tls) {
			c->tls = true;
			set_state(c, CS_GREETING);
			timer_arm(c, c->to.greeting);
			return;
		}
		if (c->state == CS_HANDSHAKE) {
			c->tls = true;
			memset(&c->ext, 0, sizeof(c->ext));
			if (log_debug_enabled()) {
				char desc[128];
				log_debug("smtp client %s: %s", c->id,
					  tls_describe(bufferevent_openssl_get_ssl(c->bev), desc,
							sizeof(desc)));
			}
			send_ehlo(c, false);
		}
		return;
	}
	int err = EVUTIL_SOCKET_ERROR();
	char detail[300] = "";
	if (what & BEV_EVENT_ERROR) {
		ssl_errors(bev, detail, sizeof(detail));
		if (detail[0] == '\0' && err != 0)
			snprintf(detail, sizeof(detail), "%s", strerror(err));
	}
	if (c->state == CS_HANDSHAKE) {
		char text[400];
		metrics_count(METRICS_TLS_OUT_FAILED);
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		long vr = ssl != NULL && c->tls_verify ? SSL_get_verify_result(ssl) : X509_V_OK;
		if (vr != X509_V_OK)
			snprintf(detail, sizeof(detail), "certificate verification failed: %s",
				 X509_verify_cert_error_string(vr));
		snprintf(text, sizeof(text), "TLS handshake failed%s%s", detail[0] ? ": " : "",
			 detail);
		setup_fail(c, SMTP_CLIENT_STAGE_STARTTLS, SMTP_CLIENT_TEMPFAIL, NULL, "4.7.0", text,
			   false);
		return;
	}
	/* A last reply may wait unread (a 554 before the server hung up mid-message): it
	 * explains more than "lost connection". */
	if (reading_state(c))
		client_read_cb(c->bev, c);
	fail_now(c, "lost connection", "4.4.2", detail[0] ? detail : NULL);
}

/* timer_cb - the reply (or progress) we waited for did not come in time */
static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_client *c = arg;
	(void)fd;
	(void)what;
	if (c->state == CS_QUIT) {
		free_later(c);
		return;
	}
	if (c->state == CS_HANDSHAKE)
		metrics_count(METRICS_TLS_OUT_FAILED);
	fail_now(c, "timeout", "4.4.2", NULL);
}

/* ---- public ------------------------------------------------------------------------ */

const struct smtp_client_ext *smtp_client_extensions(const struct smtp_client *c)
{
	return &c->ext;
}

bool smtp_client_tls(const struct smtp_client *c)
{
	return c->tls;
}

SSL *smtp_client_ssl(const struct smtp_client *c)
{
	return c->tls && c->bev != NULL ? bufferevent_openssl_get_ssl(c->bev) : NULL;
}

bool smtp_client_usable(const struct smtp_client *c)
{
	return c != NULL && c->state == CS_READY && c->bev != NULL;
}

/* smtp_client_quit - QUIT when in sync, then release from the loop */
void smtp_client_quit(struct smtp_client **cp)
{
	struct smtp_client *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	c->connect_cb = NULL;
	c->send_cb = NULL;
	if (c->state == CS_FREEING || c->state == CS_QUIT)
		return;
	if (c->bev != NULL && (c->state == CS_READY || (c->state == CS_FAILED && c->in_sync))) {
		set_state(c, CS_QUIT);
		bufferevent_enable(c->bev, EV_READ | EV_WRITE);
		send_line(c, "QUIT\r\n");
		timer_arm(c, c->to.quit);
		return;
	}
	free_later(c);
}
