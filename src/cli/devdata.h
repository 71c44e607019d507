/* devdata - the development instance's data dir (tern without -c). */
#ifndef TERN_CLI_DEVDATA_H
#define TERN_CLI_DEVDATA_H
#include <stdbool.h>

struct tern_config;

/* cli_dev_place_data - started by root, the development instance runs its children as an
 * unprivileged user (master_dev_user); when that user cannot reach ./tern-data (a clone in
 * /root, mode 0700), its data goes to /var/lib/tern-dev/<the clone's path with '/' as '_'>
 * instead, for serve and for the user/alias commands alike. announce: say so on stderr.
 * Started by root, its TLS pair lives in /var/lib/tern-dev/<the same>.tls (root's).
 * Without root nothing changes: data and TLS pair in ./tern-data. */
void cli_dev_place_data(struct tern_config *cfg, bool announce);

#endif
