/* runner - the queue runner process: owns outbound delivery. Until outbound delivery is
 * built it holds the queue: it opens queue.db (so its schema exists) and waits for SIGTERM. */
#ifndef TERN_RUNNER_H
#define TERN_RUNNER_H
#include "config/config.h"

int runner_main(const struct tern_config *cfg);

#endif
