/* dataowner - commands run as root work in the data dir as its owner. */
#ifndef TERN_CLI_DATAOWNER_H
#define TERN_CLI_DATAOWNER_H
#include <stdbool.h>

struct tern_config;

/* cli_enter_data_dir - call before anything in the data dir is opened. Run by root: create
 * the data dir when it is missing (mode 0700, given to the run user, `user` or the
 * development instance's, as `tern serve` does), then, when it belongs to another user, become that user for good
 * (setgroups/setgid/setuid; checked that root cannot come back). From then on a symlink the
 * owner planted leads only where the owner could write anyway, and the files made are the
 * owner's (as Postfix's postdrop runs with the queue's group, not root). Without root, only
 * the creation. 0, or 1 after printing why on stderr. */
int cli_enter_data_dir(const struct tern_config *cfg);

/* cli_refuse_symlinks - 1 after printing a clear refusal when dir (relative to the data dir;
 * "" for the data dir itself) or one of the NULL-terminated names in it is a symbolic link,
 * else 0. A tern data dir has no links; one there was planted. */
int cli_refuse_symlinks(const struct tern_config *cfg, const char *dir, const char *const *names);

#endif
