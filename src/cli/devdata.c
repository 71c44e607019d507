/* devdata - where the development instance keeps its data (see devdata.h) */
#include "cli/devdata.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config/config.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "server/master.h"

/* dev_user_can_reach - can the development instance's run user (root started it) get to
 * dir? Asked in a child that has become that user, so that every rule (modes, groups, ACLs)
 * counts exactly as it will for the children. */
static bool dev_user_can_reach(const char *dir)
{
	struct passwd *pw = getpwnam(master_dev_user());
	if (pw == NULL)
		return true;	/* master_run will say what is wrong */
	pid_t pid = fork();
	if (pid < 0)
		return true;
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
			_exit(2);
		_exit(access(dir, X_OK) == 0 ? 0 : 1);
	}
	int status = 0;
	pid_t w;
	while ((w = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	return w == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* flatten - "/var/lib/tern-dev/" + path with '/' as '_' and '_' doubled, so that no two
 * paths share a name */
static char *flatten(const char *path, const char *suffix)
{
	buf flat;
	buf_init(&flat, 0);
	buf_puts(&flat, "/var/lib/tern-dev/");
	for (const char *p = path + 1; *p != '\0'; p++) {
		if (*p == '_')
			buf_putc(&flat, '_');
		buf_putc(&flat, *p == '/' ? '_' : *p);
	}
	buf_puts(&flat, suffix);
	char *r = xstrdup(buf_cstr(&flat));
	buf_free(&flat);
	return r;
}

/* cli_dev_place_data - root's development instance drops to an unprivileged user, who cannot
 * reach ./tern-data when a parent directory is closed to others (a clone in /root, mode
 * 0700): its data then goes to /var/lib/tern-dev/<the clone's path, flattened>, which it
 * can reach, and the banner says where. Its TLS pair goes to root's
 * /var/lib/tern-dev/<the clone's path, flattened>.tls in any case: never into the data dir,
 * which the run user owns. Without root nothing changes. */
void cli_dev_place_data(struct tern_config *cfg, bool announce)
{
	if (geteuid() != 0)
		return;
	char *parent = xstrdup(cfg->data_dir);
	char *slash = strrchr(parent, '/');
	if (slash != NULL && slash != parent)
		*slash = '\0';
	/* 0755 whatever the umask: the run user must reach a data dir in it */
	if (fs_mkdirs("/var/lib/tern-dev", 0755) < 0 || chmod("/var/lib/tern-dev", 0755) < 0) {
		fprintf(stderr, "tern: /var/lib/tern-dev: %s\n", strerror(errno));
		exit(1);
	}
	free(cfg->tls_dir);
	cfg->tls_dir = flatten(parent, ".tls");
	if (!dev_user_can_reach(parent)) {
		char *flat = flatten(parent, "");
		if (announce)
			fprintf(stderr,
				"tern: %s cannot reach %s (a parent directory is closed to "
				"others):\n      the development instance keeps its data in %s "
				"instead\n",
				master_dev_user(), cfg->data_dir, flat);
		free(cfg->data_dir);
		cfg->data_dir = flat;
	}
	free(parent);
}
