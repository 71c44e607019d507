/* worker - a worker process: one event loop serving every listener (shared-nothing; the
 * kernel spreads connections between workers). */
#ifndef TERN_WORKER_H
#define TERN_WORKER_H
#include <openssl/ssl.h>
#include "config/config.h"

/* worker_main - serve until SIGTERM (drain, bounded by shutdown_timeout); returns the exit
 * status. listen_fds[role] is -1 for roles not served. */
int worker_main(const struct tern_config *cfg, SSL_CTX *tls, const int *listen_fds);

#endif
