/* cmd_backup - "tern backup DIR -c FILE": a consistent copy of the data dir while it runs */
#include "cli/cmd_backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/dataowner.h"
#include "config/config.h"
#include "lib/backup.h"
#include "lib/xmalloc.h"
#include "queue/backup.h"
#include "store/backup.h"

#define EX_USAGE_BACKUP 64

static const char backup_help[] =
	"usage: tern backup DIR -c FILE\n"
	"Copies the data dir of FILE into DIR (a new or empty directory) while the server runs:\n"
	"tern.db, the queue and every mailbox, each database as one snapshot, then the message\n"
	"files. Restore: stop the server, copy DIR to data_dir (owned by `user`), start it.\n"
	"TLS and DKIM keys live outside the data dir: back up the config directory too.\n";

/* open_target - DIR made (0700) or an empty directory; opened, and as root given to the data
 * dir's owner, whom the command becomes before it reads anything of the data dir */
static int open_target(const char *dir, const struct tern_config *cfg)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "tern: backup: mkdir %s: %s\n", dir, strerror(errno));
		return -1;
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "tern: backup: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	DIR *d = fdopendir(dup(fd));
	struct dirent *e;
	bool empty = true;
	while (d != NULL && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = false;
	if (d != NULL)
		closedir(d);
	if (!empty) {
		fprintf(stderr, "tern: backup: %s is not empty\n", dir);
		close(fd);
		return -1;
	}
	struct stat st;
	if (geteuid() == 0 && stat(cfg->data_dir, &st) == 0 && st.st_uid != 0 &&
	    fchown(fd, st.st_uid, st.st_gid) < 0) {
		fprintf(stderr, "tern: backup: chown %s: %s\n", dir, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* backup_mail - every account of mail/DOMAIN/USER */
static int backup_mail(const struct tern_config *cfg, struct backup_counts *c,
		       unsigned *accounts_r, char **error_r)
{
	char *mail = config_path_in_data(cfg, "mail");
	int r = 0;
	if (mkdir("mail", 0700) < 0) {
		*error_r = xasprintf("mkdir mail: %s", strerror(errno));
		free(mail);
		return -1;
	}
	DIR *domains = opendir(mail);
	struct dirent *de;
	while (r == 0 && domains != NULL && (de = readdir(domains)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *sdom = xasprintf("%s/%s", mail, de->d_name);
		char *ddom = xasprintf("mail/%s", de->d_name);
		DIR *users = opendir(sdom);
		if (users != NULL && mkdir(ddom, 0700) < 0) {
			*error_r = xasprintf("mkdir %s: %s", ddom, strerror(errno));
			r = -1;
		}
		struct dirent *ue;
		while (r == 0 && users != NULL && (ue = readdir(users)) != NULL) {
			if (ue->d_name[0] == '.')
				continue;
			char *src = xasprintf("%s/%s", sdom, ue->d_name);
			char *dst = xasprintf("%s/%s", ddom, ue->d_name);
			struct stat st;
			if (lstat(src, &st) == 0 && S_ISDIR(st.st_mode)) {
				r = store_backup_account(src, dst, c, error_r);
				(*accounts_r)++;
			}
			free(src);
			free(dst);
		}
		if (users != NULL)
			closedir(users);
		free(sdom);
		free(ddom);
	}
	if (domains != NULL)
		closedir(domains);
	else if (errno != ENOENT) {
		*error_r = xasprintf("%s: %s", mail, strerror(errno));
		r = -1;
	}
	free(mail);
	return r;
}

int cmd_backup(int argc, char **argv)
{
	const char *dir = NULL, *conf = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(backup_help, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			conf = argv[++i];
		} else if (argv[i][0] != '-' && dir == NULL) {
			dir = argv[i];
		} else {
			fprintf(stderr, "tern: backup: unexpected argument '%s'\n%s", argv[i],
				backup_help);
			return EX_USAGE_BACKUP;
		}
	}
	if (dir == NULL || conf == NULL) {
		fputs(backup_help, stderr);
		return EX_USAGE_BACKUP;
	}
	char *err = NULL;
	struct tern_config *cfg = config_load(conf, &err);
	if (cfg == NULL) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	umask(077);
	struct stat st;
	if (stat(cfg->data_dir, &st) < 0) {
		fprintf(stderr, "tern: backup: data_dir %s: %s\n", cfg->data_dir, strerror(errno));
		config_free(&cfg);
		return 1;
	}
	/* DIR by its real path: SQLite opens databases by absolute path (from getcwd), so
	 * the data dir's owner, whom root becomes, must be able to reach DIR */
	int fd = open_target(dir, cfg);
	char *abs = fd >= 0 ? realpath(dir, NULL) : NULL;
	if (fd < 0 || abs == NULL || cli_enter_data_dir(cfg) != 0) {
		if (fd >= 0)
			close(fd);
		free(abs);
		config_free(&cfg);
		return 1;
	}
	if (chdir(abs) < 0) {
		fprintf(stderr, "tern: backup: %s: %s (the data dir's owner, uid %ld, must be able "
			"to reach it: put it where every directory above lets it search)\n", abs,
			strerror(errno), (long)geteuid());
		close(fd);
		free(abs);
		config_free(&cfg);
		return 1;
	}
	free(abs);
	/* tern.db, then the queue, then the mailboxes: a message that leaves the queue for a
	 * local mailbox meanwhile is in one of them (or both: delivered again at the restore) */
	struct backup_counts c = { 0 };
	unsigned queued = 0, accounts = 0;
	char *db = config_path_in_data(cfg, "tern.db");
	char *spool = config_path_in_data(cfg, "spool");
	int r = backup_sqlite(db, "tern.db", &err) < 0 ||
			queue_backup(spool, "spool", &c, &queued, &err) < 0 ||
			backup_mail(cfg, &c, &accounts, &err) < 0
		? 1 : 0;
	if (r == 0 && syncfs(fd) < 0) {
		err = xasprintf("syncfs: %s", strerror(errno));
		r = 1;
	}
	if (r != 0) {
		fprintf(stderr, "tern: backup: %s\n", err);
	} else {
		printf("backup: %s: tern.db, %u queued message(s), %u account(s), %llu file(s), "
		       "%llu bytes", dir, queued, accounts, (unsigned long long)c.files,
		       (unsigned long long)c.bytes);
		if (c.dropped > 0)
			printf("; %llu entr%s whose file went away during the copy left out",
			       (unsigned long long)c.dropped, c.dropped == 1 ? "y" : "ies");
		printf("\n");
	}
	free(err);
	free(db);
	free(spool);
	close(fd);
	config_free(&cfg);
	return r;
}
