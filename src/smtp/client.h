/* smtp_client - an asynchronous SMTP client for ONE outbound connection on a libevent
 * event_base, carrying transactions one after another (used by the queue runner and
 * `tern send`).
 *
 * Life of a client:
 *   c = smtp_client_connect(base, addr, ..., connect_cb, ctx)
 *     connects (with opts->implicit_tls: the TLS handshake first), reads the greeting, EHLO
 *     (HELO when EHLO gets a 5xx), STARTTLS when the server offers it and opts->tls_ctx is
 *     set, EHLO again, AUTH when opts->auth_user is set; then connect_cb(c, NULL, ctx).
 *     Any failure: connect_cb(c, err, ctx) and the client is unusable.
 *   smtp_client_send(c, txn, send_cb, ctx)  (again and again while smtp_client_usable(c))
 *     one transaction: [RSET] MAIL, RCPT..., DATA, the message; send_cb(c, result, ctx).
 *   smtp_client_quit(&c)
 *     sends QUIT when the connection is in a state to, then frees (see below).
 *
 * Callbacks are never called from inside smtp_client_connect / smtp_client_send, always
 * later from the event loop. Inside a callback the caller may call smtp_client_send (the
 * next message) or smtp_client_quit. No callback runs after smtp_client_quit.
 * Writing to a peer that has gone may raise SIGPIPE: the process must ignore SIGPIPE.
 * Timeouts and reply limits follow RFC 5321 §4.5.3.2 and §4.5.3.1 unless overridden. */
#ifndef TERN_SMTP_CLIENT_H
#define TERN_SMTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct smtp_client;

/* Timeouts in milliseconds; 0 takes the default (RFC 5321 §4.5.3.2). */
struct smtp_client_timeouts {
	unsigned connect;	/* TCP connect: 5 min */
	unsigned greeting;	/* the 220 banner: 5 min */
	unsigned ehlo;		/* EHLO, HELO, STARTTLS and the TLS handshake: 5 min */
	unsigned mail;		/* MAIL (and RSET): 5 min */
	unsigned rcpt;		/* each RCPT: 5 min */
	unsigned data_init;	/* the 354 after DATA: 2 min */
	unsigned data_block;	/* no progress sending the message: 3 min */
	unsigned data_done;	/* the reply after the final dot: 10 min */
	unsigned quit;		/* the reply to QUIT: 5 s (we only wait to be polite) */
};

struct smtp_client_opts {
	const char *helo_name;		/* our name for EHLO/HELO (required; copied) */
	const struct sockaddr *source;	/* NULL, or the local address to bind (port 0) */
	socklen_t sourcelen;
	SSL_CTX *tls_ctx;		/* NULL: never STARTTLS. Else a client SSL_CTX used
					   opportunistically: STARTTLS whenever offered, the
					   certificate is not verified. Must outlive the client. */
	const char *tls_server_name;	/* NULL or the server's name (copied): sent as SNI
					   (unless an IP literal) and, with tls_verify, checked
					   against the certificate */
	bool implicit_tls;		/* TLS from the first byte (port 465, RFC 8314):
					   needs tls_ctx */
	bool tls_verify;		/* verify the certificate chain (against tls_ctx's
					   trust store) and tls_server_name; a failure fails the
					   handshake with the reason in the error text */
	const char *auth_user;		/* NULL, or AUTH (PLAIN, else LOGIN) after EHLO with
					   this user and auth_password (copied, wiped when
					   freed). Only ever over TLS: on a clear connection the
					   setup fails (stage AUTH, 5.7.11) before the password
					   is sent */
	const char *auth_password;
	bool require_tls;		/* no STARTTLS offered / refused / failed is an error.
					   Without it a refused STARTTLS goes on in clear, but a
					   failed handshake still fails the connection (it is out
					   of step): retry without tls_ctx */
	struct smtp_client_timeouts timeouts;
	size_t max_reply_line;		/* bytes with CRLF; 0: 512 */
	size_t max_reply_lines;		/* lines per reply; 0: 100 */
	const char *log_id;		/* NULL or a queue id prefixed to debug lines (copied) */
};

/* Where in the dialogue a result or error arose. */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_CONNECT,
	SMTP_CLIENT_STAGE_GREETING,
	SMTP_CLIENT_STAGE_EHLO,		/* EHLO or HELO */
	SMTP_CLIENT_STAGE_STARTTLS,	/* the command or the handshake */
	SMTP_CLIENT_STAGE_PRECHECK,	/* refused locally before sending (SIZE, 8BITMIME, …) */
	SMTP_CLIENT_STAGE_RSET,
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,		/* the DATA command (354 expected) */
	SMTP_CLIENT_STAGE_BODY,		/* sending the message */
	SMTP_CLIENT_STAGE_DATA_DONE,	/* the reply after the final dot */
	SMTP_CLIENT_STAGE_AUTH,		/* AUTH: refused (535: bad credentials), or not
					   possible (no TLS, no PLAIN/LOGIN offered) */
};

enum smtp_client_status { SMTP_CLIENT_OK, SMTP_CLIENT_TEMPFAIL, SMTP_CLIENT_PERMFAIL };

/* One outcome: a server reply or a local error. */
struct smtp_client_reply {
	enum smtp_client_status status;	/* OK (2xx), TEMPFAIL (4xx, network, timeout,
					   protocol error), PERMFAIL (5xx, local refusal) */
	enum smtp_client_stage stage;
	int code;			/* the server's reply code; 0 when the outcome is local
					   (then text may still start with a code, e.g.
					   "552 5.3.4 message size exceeds remote limit") */
	char enhanced[16];		/* "5.1.1"; "" when unknown. Local errors set one:
					   4.4.1 no answer/connect, 4.4.2 lost connection or
					   timeout, 4.5.0 protocol error, 4.3.0 local error */
	char *text;			/* one printable line: "550 5.1.1 User unknown" or
					   "lost connection after RCPT TO" (owned by the client) */
};

/* smtp_client_stage_name - "RCPT TO", "end of data", … (static). */
const char *smtp_client_stage_name(enum smtp_client_stage stage);

/* connect callback: err NULL on success; else why it failed (valid during the call).
 * After a failure the client is unusable: smtp_client_quit it. */
typedef void smtp_client_connect_cb(struct smtp_client *c, const struct smtp_client_reply *err,
				    void *ctx);

/* smtp_client_connect - start connecting to addr. Returns the client (never NULL); the
 * outcome comes through cb. The sockets are non-blocking and close-on-exec. */
struct smtp_client *smtp_client_connect(struct event_base *base, const struct sockaddr *addr,
					socklen_t addrlen, const struct smtp_client_opts *opts,
					smtp_client_connect_cb *cb, void *ctx);

/* The server's extensions, from the last EHLO (after STARTTLS: the second one). */
struct smtp_client_ext {
	bool esmtp;			/* EHLO worked (false: HELO fallback, no extensions) */
	bool pipelining, eightbitmime, smtputf8, dsn, chunking, enhancedstatuscodes, starttls;
	bool auth_plain, auth_login;	/* AUTH mechanisms advertised */
	bool size;			/* SIZE advertised */
	uint64_t size_max;		/* its limit; 0: none given */
};
const struct smtp_client_ext *smtp_client_extensions(const struct smtp_client *c);
/* smtp_client_tls - true once STARTTLS succeeded; smtp_client_ssl gives its SSL (or NULL)
 * for logging (tls_describe). */
bool smtp_client_tls(const struct smtp_client *c);
SSL *smtp_client_ssl(const struct smtp_client *c);
/* smtp_client_usable - true when connected and idle, so smtp_client_send may be called. */
bool smtp_client_usable(const struct smtp_client *c);

struct smtp_client_rcpt {
	const char *address;		/* "user@example.com", no angle brackets */
	const char *notify;		/* NULL or RFC 3461 NOTIFY value ("SUCCESS,FAILURE") */
	const char *orcpt;		/* NULL or ORCPT value, xtext ("rfc822;user@example.com") */
};

/* A transaction. Only read during smtp_client_send (strings are copied), except fd. */
struct smtp_client_txn {
	const char *sender;		/* "" for the null reverse-path <> */
	const struct smtp_client_rcpt *rcpts;
	size_t n_rcpts;			/* at least 1 */
	bool body_8bit;			/* the body has 8-bit data: BODY=8BITMIME needed */
	bool smtputf8;			/* SMTPUTF8 needed (implied by non-ASCII addresses) */
	const char *dsn_ret;		/* NULL, "FULL" or "HDRS" */
	const char *dsn_envid;		/* NULL or ENVID value (xtext) */
	bool all_or_nothing;		/* a refused recipient stops the message for all: the
					   body is never sent (DATA is not sent, or after its 354
					   the connection is dropped, which aborts it) */
	/* The message: size bytes at offset of fd, read with pread (the file position is not
	 * used). The fd stays the caller's and must stay open until the callback. The text is
	 * sent with every line end as CRLF (a bare LF or bare CR becomes CRLF, so no server
	 * can find an end of data we did not send), dot-stuffed, and CRLF is added when it
	 * does not end with one. */
	int fd;
	off_t offset;
	uint64_t size;
	/* Bytes sent before the message (header fields we add: DKIM-Signature), copied; they
	 * count in SIZE=. NULL/0 for none. */
	const char *prefix;
	size_t prefix_len;
};

struct smtp_client_result {
	struct smtp_client_reply mail;	/* the MAIL reply (or why there is none) */
	struct smtp_client_reply data;	/* the final reply after the dot, or the reason the
					   message was not sent/accepted (status OK only when
					   the server accepted it) */
	struct smtp_client_reply *rcpts;	/* n_rcpts, in the order of txn->rcpts: the
					   recipient's outcome: its RCPT refusal, or for an
					   accepted recipient the DATA outcome */
	size_t n_rcpts;
	size_t n_accepted;		/* recipients the server took at RCPT */
	bool usable;			/* the connection can carry another transaction */
};

/* send callback: r is valid during the call only. */
typedef void smtp_client_send_cb(struct smtp_client *c, const struct smtp_client_result *r,
				 void *ctx);

/* smtp_client_send - run one transaction. Refused locally without sending (every recipient
 * PERMFAIL, stage PRECHECK): SIZE limit exceeded (552 5.3.4), 8-bit body without 8BITMIME
 * (554 5.6.3), SMTPUTF8 needed but not offered (553 5.6.7), an address or DSN value with
 * control characters (501 5.5.4). With PIPELINING, [RSET] MAIL, the RCPTs and DATA go in one
 * write; without, one by one. DATA is sent only when a RCPT was accepted. SIZE=, BODY=,
 * SMTPUTF8 are added when advertised and needed; NOTIFY/ORCPT/RET/ENVID only when the server
 * advertises DSN. Failures midway (lost connection, timeout, bad or over-long reply) give
 * TEMPFAIL to every recipient without a final outcome and make the client unusable.
 * Returns 0, or -1 (no callback) when the client is not usable (busy, failed or closed). */
int smtp_client_send(struct smtp_client *c, const struct smtp_client_txn *txn,
		     smtp_client_send_cb *cb, void *ctx);

/* smtp_client_quit - end the session and free the client; *c becomes NULL. When the
 * connection is idle and in sync, QUIT is sent and the client lingers on the event_base
 * until the reply, EOF or the quit timeout, then frees itself; otherwise (failed, or in the
 * middle of a transaction) the connection is closed at once. Either way no callback runs
 * any more, and the memory is released from the event loop: run the base until it has no
 * events left (event_base_dispatch returns) before freeing it. NULL-safe. */
void smtp_client_quit(struct smtp_client **c);

#endif
