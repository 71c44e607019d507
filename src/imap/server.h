/* imap_server - IMAP4rev1/IMAP4rev2 sessions (RFC 3501, RFC 9051) for the imap (STARTTLS)
 * and imaps (implicit TLS) roles. One struct imap_server per worker. Sessions on one account
 * learn of each other's changes (and of deliveries) through the store's notifier: one
 * inotify descriptor per worker on the worker's loop; an idling session is told within
 * milliseconds, the others at their next command. */
#ifndef TERN_IMAP_SERVER_H
#define TERN_IMAP_SERVER_H
#include <sys/queue.h>
#include <sys/socket.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "lib/session.h"

struct accounts;
struct login_pool;
struct store_notifier;
struct imap_session;

struct imap_server {
	struct event_base *base;
	const struct tern_config *cfg;
	SSL_CTX *tls;
	struct accounts *accounts;
	struct login_pool *login;
	struct bgpool *sync;		/* the worker's sync threads (NULL: syncs on the loop) */
	struct store_notifier *notifier;	/* NULL when inotify is unavailable */
	struct event *notify_ev;
	struct event *poll_ev;		/* IDLE polling for sessions without a watch */
	struct session_list sessions;
	LIST_HEAD(, imap_session) imap_sessions;	/* the same sessions, for wake-ups */
};

void imap_server_init(struct imap_server *srv, struct event_base *base,
		      const struct tern_config *cfg, SSL_CTX *tls, struct accounts *accounts,
		      struct login_pool *login);
/* imap_session_start - serve an accepted socket (owned from now on). */
void imap_session_start(struct imap_server *srv, int fd, const struct sockaddr *peer,
			socklen_t peerlen, enum listen_role role);
/* imap_server_drain - shutting down: idle sessions get "* BYE", busy ones finish first. */
void imap_server_drain(struct imap_server *srv);
void imap_server_free(struct imap_server *srv);

#endif
