/* test_fs_trusted - fs_open_trusted: what only root can have put there is opened, anything
 * another user could change on the way is refused with the component named. The ownership
 * cases need root (CI runs as root); without root only the path checks run. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "test.h"

static char base[64];
static uid_t other_uid = 65534;

/* path - base + "/" + rel, in one of two static buffers (two may be used in one call) */
static const char *path(const char *rel)
{
	static char p[2][256];
	static int next;
	char *out = p[next];
	next = !next;
	snprintf(out, sizeof(p[0]), "%s/%s", base, rel);
	return out;
}

static void mkfile(const char *rel)
{
	int fd = open(path(rel), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "x\n", 2) == 2);
	close(fd);
}

/* opens - fs_open_trusted(path(rel)) succeeds; else print why */
static bool opens(const char *rel)
{
	char *err = NULL;
	int fd = fs_open_trusted(path(rel), O_RDONLY, &err);
	if (fd >= 0) {
		close(fd);
		return true;
	}
	fprintf(stderr, "  (%s: %s)\n", rel, err);
	free(err);
	return false;
}

/* refused_because - refused, and the error names what and why */
static bool refused_because(const char *rel, const char *names, const char *why)
{
	char *err = NULL;
	int fd = fs_open_trusted(path(rel), O_RDONLY, &err);
	if (fd >= 0) {
		close(fd);
		fprintf(stderr, "  (%s: opened)\n", rel);
		return false;
	}
	bool ok = strstr(err, names) != NULL && strstr(err, why) != NULL;
	if (!ok)
		fprintf(stderr, "  (%s: %s)\n", rel, err);
	free(err);
	return ok;
}

static void test_paths(void)
{
	char *err = NULL;
	CHECK(fs_open_trusted("relative/key.pem", O_RDONLY, &err) < 0);
	CHECK(err != NULL && strstr(err, "not an absolute path") != NULL);
	free(err);
	err = NULL;
	CHECK(fs_open_trusted("/", O_RDONLY, &err) < 0);
	free(err);
	err = NULL;
	CHECK(fs_open_trusted("/nonexistent-tern-test/x", O_RDONLY, &err) < 0);
	CHECK(err != NULL && strstr(err, "/nonexistent-tern-test") != NULL);
	free(err);
}

static void test_root_tree(void)
{
	if (geteuid() != 0)
		return;
	CHECK(mkdir(path("etc"), 0755) == 0);
	CHECK(mkdir(path("etc/archive"), 0700) == 0);
	CHECK(mkdir(path("etc/live"), 0755) == 0);
	mkfile("etc/archive/key1.pem");
	CHECK(symlink("../archive/key1.pem", path("etc/live/key.pem")) == 0);
	CHECK(symlink(path("etc/live"), path("etc/abs")) == 0);
	CHECK(opens("etc/archive/key1.pem"));
	CHECK(opens("etc/live/key.pem"));	/* relative root link with .. */
	CHECK(opens("etc/abs/key.pem"));	/* absolute root link */
	CHECK(opens("etc/live/../archive/./key1.pem"));
	/* a loop of root's links ends */
	CHECK(symlink("loop2", path("etc/loop1")) == 0 && symlink("loop1", path("etc/loop2")) == 0);
	CHECK(refused_because("etc/loop1", "loop", "too many symlinks"));
	/* group root may write; another group may not; others only on a sticky directory */
	CHECK(chmod(path("etc/live"), 0775) == 0);
	CHECK(opens("etc/live/key.pem"));
	CHECK(chown(path("etc/live"), 0, 100) == 0);
	CHECK(refused_because("etc/live/key.pem", "/etc/live", "writable by its group"));
	CHECK(chown(path("etc/live"), 0, 0) == 0 && chmod(path("etc/live"), 0777) == 0);
	CHECK(refused_because("etc/live/key.pem", "/etc/live", "writable by everyone"));
	CHECK(chmod(path("etc/live"), 01777) == 0);
	CHECK(opens("etc/live/key.pem"));
	CHECK(chmod(path("etc/live"), 0755) == 0);
	/* the file itself */
	CHECK(chmod(path("etc/archive/key1.pem"), 0666) == 0);
	CHECK(refused_because("etc/archive/key1.pem", "key1.pem", "writable by everyone"));
	CHECK(chmod(path("etc/archive/key1.pem"), 0600) == 0);
}

static void test_other_users_things(void)
{
	if (geteuid() != 0)
		return;
	/* a directory of another user's on the way, even if all it holds is root's */
	CHECK(mkdir(path("data"), 0755) == 0);
	CHECK(symlink(path("etc/archive"), path("data/tls")) == 0);
	CHECK(lchown(path("data/tls"), other_uid, other_uid) == 0);
	CHECK(refused_because("data/tls/key1.pem", "/data/tls", "symlink not owned by root"));
	CHECK(chown(path("data"), other_uid, other_uid) == 0);
	CHECK(refused_because("data/tls/key1.pem", "/data", "is not owned by root"));
	/* a link of another user's in a sticky world-writable directory (like /tmp) */
	CHECK(mkdir(path("sticky"), 01777) == 0 && chmod(path("sticky"), 01777) == 0);
	CHECK(symlink(path("etc/archive/key1.pem"), path("sticky/key.pem")) == 0);
	CHECK(opens("sticky/key.pem"));
	CHECK(lchown(path("sticky/key.pem"), other_uid, other_uid) == 0);
	CHECK(refused_because("sticky/key.pem", "sticky/key.pem", "symlink not owned by root"));
	/* a file of another user's */
	mkfile("etc/archive/theirs.pem");
	CHECK(chown(path("etc/archive/theirs.pem"), other_uid, other_uid) == 0);
	CHECK(refused_because("etc/archive/theirs.pem", "theirs.pem", "is not owned by root"));
}

static void cleanup(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	CHECK(system(cmd) == 0);
}

int main(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (pw != NULL)
		other_uid = pw->pw_uid;
	/* /tmp is root's and sticky: the walk may pass it */
	snprintf(base, sizeof(base), "/tmp/tern-trusted-XXXXXX");
	if (mkdtemp(base) == NULL || chmod(base, 0755) < 0) {
		perror("mkdtemp");
		return 1;
	}
	static const struct test_case cases[] = {
		TEST(test_paths),
		TEST(test_root_tree),
		TEST(test_other_users_things),
	};
	int r = test_run(cases, sizeof(cases) / sizeof(cases[0]));
	cleanup();
	return r;
}
