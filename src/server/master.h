/* master - `tern serve`: prepares the data dir, TLS and listening sockets, forks the
 * workers and the queue runner (dropping root in each), restarts children that die,
 * reloads on SIGHUP, drains and exits on SIGTERM. */
#ifndef TERN_MASTER_H
#define TERN_MASTER_H
#include "config/config.h"

/* master_run - run until SIGTERM/SIGINT; returns the exit status. dev_banner: printed once
 * ready (the development instance's how-to-connect text), or NULL. */
/* master_dev_user - who the development instance's children run as when it is started as
 * root: "tern" when that user exists, else "nobody". */
const char *master_dev_user(void);
int master_run(struct tern_config *cfg, const char *dev_banner);

#endif
