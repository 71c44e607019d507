/* runner - the queue runner process: owns outbound delivery. Until outbound delivery is
 * built it holds the queue: it opens queue.db (so its schema exists) and waits for SIGTERM. */
#ifndef TERN_RUNNER_H
#define TERN_RUNNER_H
#include "config/config.h"

struct dkim_keyring;

/* runner_main - run the queue runner until SIGTERM. dkim: the signing keys (the master
 * loads them as root before the fork; NULL or empty: nothing is signed). */
int runner_main(const struct tern_config *cfg, const struct dkim_keyring *dkim);

#endif
