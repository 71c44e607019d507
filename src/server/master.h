/* master - `tern serve`: prepares the data dir, TLS and listening sockets, forks the
 * workers and the queue runner (dropping root in each), restarts children that die,
 * reloads on SIGHUP, drains and exits on SIGTERM. */
#ifndef TERN_MASTER_H
#define TERN_MASTER_H
#include <stddef.h>

#include "config/config.h"

/* master_run - run until SIGTERM/SIGINT; returns the exit status. dev_banner: printed once
 * ready (the development instance's how-to-connect text), or NULL. */
/* master_dev_user - who the development instance's children run as when it is started as
 * root: "tern" when that user exists, else "nobody". */
const char *master_dev_user(void);
int master_run(struct tern_config *cfg, const char *dev_banner);
/* master_listen_addresses - the addresses clients reach us at (for the self-signed certificate
 * and `tern check`): each listener's address, and for a wildcard one every address of the host
 * in that family; as text, no duplicates. Returns how many; the caller frees each and *list_r. */
size_t master_listen_addresses(const struct tern_config *cfg, char ***list_r);
/* master_tls_open - open a TLS file (certificate, key) as the master does: run by root, only
 * through root's directories (fs_open_trusted). The descriptor, or -1 with *error_r (caller
 * frees; it names the file). */
int master_tls_open(const char *path, char **error_r);

#endif
