/* smtp_server - SMTP server sessions (RFC 5321 + PIPELINING, SIZE, 8BITMIME,
 * ENHANCEDSTATUSCODES, STARTTLS, AUTH, SMTPUTF8, CHUNKING) for the smtp, submission and
 * submissions roles. One struct smtp_server per worker process holds what its sessions
 * share. */
#ifndef TERN_SMTP_SERVER_H
#define TERN_SMTP_SERVER_H
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "lib/session.h"

struct accounts;
struct dns;
struct login_pool;
struct queue;

struct smtp_server {
	struct event_base *base;
	const struct tern_config *cfg;
	SSL_CTX *tls;			/* NULL: no STARTTLS, no implicit TLS */
	struct accounts *accounts;
	struct queue *queue;		/* NULL: remote recipients get 451 */
	struct login_pool *login;	/* password checks off the loop (auth/login) */
	struct dns *dns;		/* the worker's resolver for inbound checks, or NULL */
	struct bgpool *sync;		/* threads making messages durable, or NULL: on the loop */
	char *spool_dir;
	char *greeting;			/* "220 <hostname> ESMTP Tern" */
	struct session_list sessions;	/* .n: sessions alive; .draining */
};

/* smtp_server_init - fill srv (the caller opened accounts and queue and made the login
 * pool). */
void smtp_server_init(struct smtp_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct queue *queue, struct login_pool *login);
/* smtp_session_start - serve an accepted socket (owned from now on) for role. */
void smtp_session_start(struct smtp_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role);
/* smtp_server_drain - stop: idle sessions get 421 now, a transaction in flight finishes
 * first. Sessions end on their own; watch srv->sessions.n. */
void smtp_server_drain(struct smtp_server *srv);
/* smtp_server_free - end every session at once and free what srv holds. */
void smtp_server_free(struct smtp_server *srv);

#endif
