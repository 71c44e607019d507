/* http/server - the small HTTP role on libevent's evhttp: ACME HTTP-01 challenges, MTA-STS
 * policies and mail client autoconfiguration on the http and https listeners, /metrics on
 * the metrics listener. Nothing else is served (404). Each worker serves the listening
 * sockets the master bound (one evhttp per listener kind, on the worker's event loop). */
#ifndef TERN_HTTP_SERVER_H
#define TERN_HTTP_SERVER_H
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config/config.h"

struct http_server;

/* http_server_new - serve listen_fds[ROLE_HTTP], [ROLE_HTTPS] (TLS with tls) and
 * [ROLE_METRICS] (each -1 when not configured) on base, at most max_conns connections at
 * once (0: no cap; counted apart from the sessions) and max_connections_per_ip per client
 * (counted with the sessions). NULL when none is configured. The config and tls must
 * outlive the server. Failures to set up are fatal (log_fatalx). */
struct http_server *http_server_new(struct event_base *base, const struct tern_config *cfg,
				    SSL_CTX *tls, const int *listen_fds, unsigned max_conns);
/* http_server_drain - stop accepting connections (SIGTERM); requests in flight go on. */
void http_server_drain(struct http_server *srv);
/* http_server_free - close every connection and listener; *srv = NULL. */
void http_server_free(struct http_server **srv);

#endif
