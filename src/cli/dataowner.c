/* dataowner - root's commands work in the data dir as its owner (see dataowner.h) */
#include "cli/dataowner.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "server/master.h"

int cli_enter_data_dir(const struct tern_config *cfg)
{
	/* the user `tern serve` would run as (the development instance has a default) */
	const char *run_user = cfg->user != NULL ? cfg->user
			       : cfg->path == NULL ? master_dev_user() : NULL;
	struct stat st;
	if (stat(cfg->data_dir, &st) < 0) {
		if (errno != ENOENT || fs_mkdirs(cfg->data_dir, 0700) < 0 ||
		    stat(cfg->data_dir, &st) < 0) {
			fprintf(stderr, "tern: cannot create data directory %s: %s\n", cfg->data_dir,
				strerror(errno));
			return 1;
		}
		struct passwd *pw = run_user != NULL && geteuid() == 0 ? getpwnam(run_user) : NULL;
		if (pw != NULL && pw->pw_uid != 0) {
			if (lchown(cfg->data_dir, pw->pw_uid, pw->pw_gid) < 0) {
				fprintf(stderr, "tern: chown %s: %s\n", cfg->data_dir, strerror(errno));
				return 1;
			}
			st.st_uid = pw->pw_uid;
			st.st_gid = pw->pw_gid;
		}
	}
	if (geteuid() != 0 || st.st_uid == 0)
		return 0;	/* not root, or root's own data dir: no one else controls it */
	struct passwd *owner = getpwuid(st.st_uid);
	gid_t gid = owner != NULL ? owner->pw_gid : st.st_gid;
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(st.st_uid) < 0) {
		fprintf(stderr, "tern: cannot become uid %ld, the owner of %s: %s\n",
			(long)st.st_uid, cfg->data_dir, strerror(errno));
		return 1;
	}
	if (setuid(0) == 0) {
		fprintf(stderr, "tern: could get root back after becoming uid %ld: refusing\n",
			(long)st.st_uid);
		return 1;
	}
	if (access(cfg->data_dir, R_OK | W_OK | X_OK) < 0) {
		fprintf(stderr, "tern: %s is not usable by its owner, uid %ld: %s (check the "
				"permissions of it and its parent directories)\n",
			cfg->data_dir, (long)st.st_uid, strerror(errno));
		return 1;
	}
	return 0;
}

int cli_refuse_symlinks(const struct tern_config *cfg, const char *dir, const char *const *names)
{
	char *base = dir[0] != '\0' ? config_path_in_data(cfg, dir) : xstrdup(cfg->data_dir);
	struct stat st;
	int r = 0;
	if (dir[0] != '\0' && lstat(base, &st) == 0 && S_ISLNK(st.st_mode)) {
		fprintf(stderr, "tern: %s is a symbolic link: refusing to use it (a tern data "
				"dir has none; someone who can write %s put it there)\n",
			base, cfg->data_dir);
		r = 1;
	}
	for (size_t i = 0; r == 0 && names[i] != NULL; i++) {
		char *p = xasprintf("%s/%s", base, names[i]);
		if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
			fprintf(stderr, "tern: %s is a symbolic link: refusing to open it (a tern "
					"data dir has none; someone who can write %s put it there)\n",
				p, base);
			r = 1;
		}
		free(p);
	}
	free(base);
	return r;
}
