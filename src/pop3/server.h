/* pop3_server - POP3 sessions (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034) for
 * the pop3 (STLS) and pop3s (implicit TLS) roles. One struct pop3_server per worker. */
#ifndef TERN_POP3_SERVER_H
#define TERN_POP3_SERVER_H
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "lib/session.h"

struct accounts;
struct login_pool;

struct pop3_server {
	struct event_base *base;
	const struct tern_config *cfg;
	SSL_CTX *tls;
	struct accounts *accounts;
	struct login_pool *login;	/* password checks off the loop (auth/login) */
	struct session_list sessions;	/* .n: sessions alive; .draining */
};

void pop3_server_init(struct pop3_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct login_pool *login);
/* pop3_session_start - serve an accepted socket (owned from now on). */
void pop3_session_start(struct pop3_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role);
/* pop3_server_drain - stop: sessions not in a command are closed with -ERR; nothing is
 * deleted for them (deletions happen only at QUIT). */
void pop3_server_drain(struct pop3_server *srv);
void pop3_server_free(struct pop3_server *srv);

#endif
