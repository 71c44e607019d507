/* session - the protocol-independent core of a line-based server session (SMTP, POP3, IMAP):
 * the read loop over a conn, bounded lines, the bare-LF policy, replies, the bad-command
 * limit, explicit state changes, idle timeout, close-with-reason, suspend/resume while a
 * login is checked elsewhere, the session list and its drain, and one teardown.
 * It also holds the command dispatcher: a protocol's table of { name, handler, flags } whose
 * flags are enforced here, before any handler runs. Nothing here knows a mail protocol: the
 * texts of replies and refusals come from the protocol (struct session_ops).
 *
 * Ownership: the protocol allocates its own session object (ctx) and creates a core for it
 * with session_new; session_end (called by the core when the connection ends, or by
 * session_list_free) first calls ops->on_end(ctx), where the protocol frees ctx and all it
 * owns, then frees the core and the conn. */
#ifndef TERN_SESSION_H
#define TERN_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "lib/conn.h"

struct session;

/* ---- command tables ------------------------------------------------------------------ */

/* Flags of a command, checked by session_dispatch in this order: the protocol's admit hook,
 * state, authentication, TLS, selected mailbox. A refused command never reaches its
 * handler; ops->refuse answers it in the protocol's words. */
#define SESSION_CMD_STATE(st)	(1u << (st))	/* allowed in state st (0..15) */
#define SESSION_CMD_STATE_MASK	0xffffu
#define SESSION_CMD_NEEDS_AUTH	(1u << 16)	/* only once logged in (session_set_authenticated) */
#define SESSION_CMD_PRE_AUTH	(1u << 17)	/* only before logging in */
#define SESSION_CMD_NEEDS_TLS	(1u << 18)	/* only over TLS, or from a peer allowed to log in
						   in clear (session_set_plaintext_ok) */
#define SESSION_CMD_PRE_TLS	(1u << 19)	/* only before TLS (STARTTLS, STLS) */
#define SESSION_CMD_NEEDS_SELECTED (1u << 20)	/* IMAP: only with a selected mailbox */
/* IMAP (RFC 9051 §5.5), defined for the IMAP server and not enforced yet: a command that
 * refers to messages by sequence number may not run while a command that can expunge (and
 * so renumber) is in progress, and the other way round. */
#define SESSION_CMD_USES_SEQ	(1u << 21)
#define SESSION_CMD_BREAKS_SEQ	(1u << 22)
#define SESSION_CMD_PROTO(n)	(1u << (24 + (n)))	/* 0..7: the protocol's own bits,
							   ignored by the dispatcher */

enum session_refusal {
	SESSION_REFUSED_STATE,		/* not allowed in the current state */
	SESSION_REFUSED_NEEDS_AUTH,	/* log in first */
	SESSION_REFUSED_AUTHENTICATED,	/* already logged in */
	SESSION_REFUSED_NEEDS_TLS,	/* TLS first */
	SESSION_REFUSED_TLS_ACTIVE,	/* TLS already on */
	SESSION_REFUSED_NOT_SELECTED,	/* select a mailbox first */
};

/* A handler gets the protocol's session (ctx) and the parsed arguments the protocol passed
 * to session_dispatch (a string for SMTP, a parsed command line for POP3). */
struct session_command {
	const char *name;		/* the verb, matched without regard to case */
	void (*handler)(void *ctx, const void *args);
	uint32_t flags;
};

/* A protocol's table and its policy hooks. */
struct session_dispatcher {
	const struct session_command *commands;
	size_t n_commands;
	/* admit - optional, first of all checks: the protocol's own policy for a known command
	 * (SMTP: commands per transaction; POP3: shutting down). false: it answered already. */
	bool (*admit)(void *ctx, const struct session_command *c);
	/* refuse - answer a command the flags refused (and count it as a bad command where the
	 * protocol does). */
	void (*refuse)(void *ctx, const struct session_command *c, enum session_refusal why);
};

/* ---- what a protocol supplies -------------------------------------------------------- */

/* The protocol's words for what the core answers by itself. */
struct session_texts {
	const char *bare_lf;		/* a line ended by LF alone; NULL: accept such lines */
	const char *too_many_errors;	/* last reply once max_bad_commands is passed */
	const char *timeout;		/* last reply after the idle timeout */
	const char *too_slow;		/* ... after a deadline (session_deadline_start); NULL:
					   the timeout text */
	const char *too_many_connections; /* the client has max_per_ip connections already */
	const char *busy;		/* the server (or this worker) is full; NULL: as above */
	const char *too_many_commands;	/* max_commands passed; NULL: too_many_errors */
	const char *drain;		/* goodbye of session_list_drain */
};

struct session_ops {
	const char *const *state_names;	/* indexed by state: debug and timeout logs */
	/* on_line - a complete line (NUL-terminated; len excludes CRLF; may hold NUL bytes),
	 * or line NULL: the line was too long (the core then counts a bad command and skips
	 * the rest of it up to its LF). The protocol parses the line and calls
	 * session_dispatch, or feeds it to its SASL exchange. The core wipes the line
	 * afterwards: it may hold a password. */
	void (*on_line)(void *ctx, char *line, size_t len);
	/* on_raw - while session_set_raw is on, called instead of reading lines: the protocol
	 * consumes conn input itself (SMTP DATA/BDAT, IMAP literals) or streams output (POP3
	 * RETR). It leaves raw mode with session_set_raw(s, false) when done. */
	void (*on_raw)(void *ctx);
	/* can_drain - optional: true when session_list_drain may close this session now. The
	 * core never closes a session in raw mode or suspended; without can_drain it closes
	 * every other one. */
	bool (*can_drain)(void *ctx);
	/* on_end - the protocol's part of the one teardown: free ctx and all it owns. Called
	 * once; the conn is still there (do not write to it). */
	void (*on_end)(void *ctx);
};

/* The sessions of one protocol in one worker, and that protocol's words. */
struct session_list {
	LIST_HEAD(, session) head;
	unsigned n;
	bool draining;
	const struct session_texts *texts;
	struct session_pool *pool;	/* NULL: no caps (tests) */
};

/* The sessions of one worker over every protocol, and their caps. When a new session
 * finds the worker (max) or the server (max_total, lib/connlimit) full, it takes the place
 * of the oldest idle session that has not logged in, of the client that holds the most
 * connections, when that client holds more than the newcomer's; otherwise the newcomer
 * is told texts->busy and closed. Either way nobody waits in silence. */
#define SESSION_POOL_LISTS 4
struct session_pool {
	struct session_list *lists[SESSION_POOL_LISTS];
	size_t n_lists;
	unsigned n;			/* sessions alive (closing ones included) */
	unsigned max;			/* this worker's cap */
	unsigned max_total;		/* all workers' cap */
	unsigned evicted, refused;	/* counters for the log */
	/* on_full - optional: this worker reached max while the server has room (another
	 * worker should take the next client); on_end - optional: a session ended */
	void (*on_full)(void *arg);
	void (*on_end)(void *arg);
	void *arg;
};

struct session_limits {
	size_t max_line;		/* command lines, CRLF included */
	size_t max_input;		/* input buffered before reading pauses */
	unsigned timeout;		/* idle seconds */
	unsigned line_timeout;		/* seconds from a line's first byte to its end (<= timeout) */
	unsigned login_timeout;		/* before login: idle seconds and line deadline at most
					   this; 0: the protocol has no login phase here */
	unsigned min_rate;		/* bytes/s a deadline unit must average after line_timeout */
	unsigned max_commands;		/* commands in a session; one more closes it */
	unsigned max_commands_before_login; /* ... before login (with login_timeout) */
	unsigned max_bad_commands;	/* one more closes the session */
	unsigned max_per_ip;		/* connections from one client (IPv4, IPv6 /64) */
	bool plaintext_auth_loopback;	/* peers on loopback may log in without TLS */
};

/* ---- life cycle ---------------------------------------------------------------------- */

void session_list_init(struct session_list *l, const struct session_texts *texts);
/* session_new - serve an accepted socket (owned from now on) for ctx: a conn (implicit TLS
 * when tls is non-NULL), an id "<prefix><pid>.<n>", a "connect" log line naming label, then
 * the greeting, or texts->too_many_connections and a close when the client is over its
 * per-IP limit (l->texts). Starts in state 0. */
struct session *session_new(struct session_list *l, struct event_base *base, int fd,
			    const struct sockaddr *peer, socklen_t peerlen, SSL_CTX *tls,
			    const struct session_limits *limits, const struct session_ops *ops,
			    void *ctx, char id_prefix, const char *label, const char *greeting);
/* session_list_set_pool - count l's sessions in the worker's pool p (and its caps). */
void session_list_set_pool(struct session_list *l, struct session_pool *p);
/* session_list_drain - shutting down: every session that can_drain says goodbye now; the
 * others are told by session_draining and finish what they are doing. */
void session_list_drain(struct session_list *l);
/* session_list_free - end every session at once. */
void session_list_free(struct session_list *l);

/* ---- inside a session ---------------------------------------------------------------- */

const char *session_id(const struct session *s);
struct conn *session_conn(const struct session *s);
unsigned session_state(const struct session *s);
/* session_set_state - the one way to change state; logs the change at debug level. */
void session_set_state(struct session *s, unsigned state);
/* session_is_closing - session_close was called: the last reply is on its way out. */
bool session_is_closing(const struct session *s);
bool session_draining(const struct session *s);

/* session_reply - one reply line (CRLF added; cut at 1000 bytes), logged at debug level. */
void session_reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* session_close - a last reply (text NULL: none), then the session ends once it is out. */
void session_close(struct session *s, const char *text);
/* session_bad_command - count a protocol error; true when that was one too many and the
 * session is now closing. */
bool session_bad_command(struct session *s);

/* session_dispatch - look verb[0..verb_len) up in d's table and run its handler with args
 * once d->admit and the flags allow it. true: the command was known (run or refused);
 * false: unknown (the protocol answers). */
bool session_dispatch(struct session *s, const struct session_dispatcher *d, const char *verb,
		      size_t verb_len, const void *args);
/* session_set_authenticated / session_set_plaintext_ok / session_set_selected - what the
 * dispatcher's flags look at. plaintext_ok: this peer may send credentials without TLS. */
void session_set_authenticated(struct session *s, bool on);
void session_set_plaintext_ok(struct session *s, bool on);
void session_set_selected(struct session *s, bool on);
bool session_authenticated(const struct session *s);
/* session_secure - TLS is on, or the peer may log in in clear */
bool session_secure(const struct session *s);

/* session_set_raw - switch between lines and the protocol's raw mode (ops->on_raw).
 * Leaving raw mode ends a deadline unit (session_deadline_start). */
void session_set_raw(struct session *s, bool on);
/* session_deadline_start / session_deadline_stop - a unit of work driven by the client (a
 * command line, an IMAP command with its literals, a DATA or BDAT body, a RETR) must end
 * within line_timeout (before login: at most login_timeout) plus one second per min_rate
 * bytes it moved; the bytes are those on_raw consumed from the input or queued for output
 * while the unit runs. Otherwise the session closes with texts->timeout. The core does this
 * by itself for command lines it reads; raw-mode protocols call these. start: no-op when a
 * unit runs already. */
void session_deadline_start(struct session *s);
void session_deadline_stop(struct session *s);
bool session_is_raw(const struct session *s);
/* session_suspend / session_resume - stop handling input while something else works for
 * the session (a password check); session_resume goes on with what is buffered. */
void session_suspend(struct session *s);
void session_resume(struct session *s);

#endif
