/* master - `tern serve`: data dir, TLS, listening sockets, privilege drop, children */
#include "server/master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "acme/acme.h"
#include "auth/srs.h"
#include "auth/throttle.h"
#include "lib/connlimit.h"
#include "lib/metrics.h"
#include "lib/fs.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/sdnotify.h"
#include "lib/tls.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "dkim/dkim.h"
#include "outbound/runner.h"
#include "queue/spool.h"
#include "server/worker.h"

#define MAX_CHILDREN (3 * 64 + 2)	/* two retiring generations + one live + runner */

enum child_kind { CHILD_WORKER, CHILD_RUNNER };

struct child {
	pid_t pid;
	enum child_kind kind;
	bool retiring;		/* replaced after SIGHUP: do not restart */
	time_t started;
	time_t restart_at;	/* pid 0 and restart_at set: restart it then */
	unsigned quick_deaths;	/* deaths soon after start in a row: back-off */
};

struct master {
	struct tern_config *cfg;
	int listen_fds[ROLE_COUNT];
	SSL_CTX *tls;
	char *cert_path, *key_path;
	bool drop;		/* started as root: children switch to uid/gid */
	uid_t uid;
	gid_t gid;
	struct child children[MAX_CHILDREN];
	unsigned n_workers;
	struct dkim_keyring *dkim;	/* signing keys, for the queue runner only */
	pid_t acme_pid;			/* the ACME child (root, no listeners), or 0 */
	time_t acme_next;		/* when to start it next; 0: no ACME */
	unsigned acme_failures;		/* failed runs in a row: back-off */
};

static volatile sig_atomic_t got_term, got_hup, got_chld;

static void on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}

const char *master_dev_user(void)
{
	return getpwnam("tern") != NULL ? "tern" : "nobody";
}

/* resolve_user - decide who the children run as */
static void resolve_user(struct master *m, bool dev)
{
	if (geteuid() != 0) {
		m->drop = false;
		return;
	}
	const char *name = m->cfg->user;
	if (name == NULL && dev)
		name = master_dev_user();
	if (name == NULL)
		log_fatalx("started as root: set \"user = NAME\" in %s so the children can drop root",
			   m->cfg->path);
	struct passwd *pw = getpwnam(name);
	if (pw == NULL)
		log_fatalx("user %s: no such user", name);
	if (pw->pw_uid == 0)
		log_fatalx("user %s: is root; children must not run as root", name);
	m->drop = true;
	m->uid = pw->pw_uid;
	m->gid = pw->pw_gid;
}

/* own - give path to the run user (when dropping) */
static void own(struct master *m, const char *path)
{
	if (m->drop && lchown(path, m->uid, m->gid) < 0 && errno != ENOENT)
		log_fatal("chown %s", path);
}

/* own_in - give the file name inside the directory dir to the run user: a database a command
 * run as root may have created. The run user controls dir, so nothing is done by name: the
 * file is opened without following a symlink (O_NONBLOCK: a planted FIFO must not block us)
 * and changed through its descriptor only when it is a regular file with one link and root's
 * (a hard link to a file of root's, where fs.protected_hardlinks is off, is left alone). */
static void own_in(struct master *m, const char *dir, const char *name)
{
	if (!m->drop)
		return;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == 0) {
		if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
			log_warnx("%s/%s: not a plain file of its own (type or links): left as it is",
				  dir, name);
		else if (fchown(fd, m->uid, m->gid) < 0)
			log_warn("chown %s/%s", dir, name);
	}
	if (fd >= 0)
		close(fd);
	close(dfd);
}

/* tighten_data_dir - the data dir holds password hashes and mail: nobody but its owner may
 * read it. One that others can enter (made by hand, or by an older tern) is made 0700. */
static void tighten_data_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		log_fatal("data_dir %s", dir);
	if ((st.st_mode & 077) != 0) {
		if (fchmod(fd, 0700) < 0)
			log_fatal("data_dir %s: chmod 0700", dir);
		log_info("data_dir %s was mode %04o (open to others): now 0700", dir,
			 (unsigned)(st.st_mode & 07777));
	}
	close(fd);
}

/* prepare_data_dir - the root part: the data dir itself (given to the run user, mode 0700)
 * and databases a command run as root may have created. Everything else is made by
 * prepare_as_user, without root. TLS files are not here (see load_tls). */
static void prepare_data_dir(struct master *m)
{
	static const char *const top[] = { "tern.db", "tern.db-wal", "tern.db-shm" };
	static const char *const spool[] = { "queue.db", "queue.db-wal", "queue.db-shm" };
	if (fs_mkdirs(m->cfg->data_dir, 0700) < 0)
		log_fatal("mkdir %s", m->cfg->data_dir);
	own(m, m->cfg->data_dir);
	tighten_data_dir(m->cfg->data_dir);
	for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
		own_in(m, m->cfg->data_dir, top[i]);
	char *sp = config_path_in_data(m->cfg, "spool");
	for (size_t i = 0; i < sizeof(spool) / sizeof(spool[0]); i++)
		own_in(m, sp, spool[i]);
	free(sp);
}

/* prepare_as_user - runs as the run user: directories the children write, and the sweep of
 * unfinished spool files. 0 or -1. */
static int prepare_as_user(const struct tern_config *cfg)
{
	static const char *const dirs[] = { "spool/incoming", "spool/queue", "mail" };
	if (access(cfg->data_dir, R_OK | W_OK | X_OK) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char *p = config_path_in_data(cfg, dirs[i]);
		int r = fs_mkdirs(p, 0700);
		free(p);
		if (r < 0)
			return -1;
	}
	char *spool = config_path_in_data(cfg, "spool");
	spool_sweep_incoming(spool);
	free(spool);
	return 0;
}

/* add_addr - append the text of one address to the list, once */
static void add_addr(char ***list, size_t *n, const char *text)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*list)[i], text) == 0)
			return;
	*list = xreallocarray(*list, *n + 1, sizeof(char *));
	(*list)[(*n)++] = xstrdup(text);
}

/* listen_addresses - the addresses clients reach us at, for the self-signed certificate: each
 * listener's address, and for a wildcard one every address of the host in that family */
static size_t listen_addresses(const struct tern_config *cfg, char ***list_r)
{
	char text[INET6_ADDRSTRLEN];
	char **list = NULL;
	size_t n = 0;
	bool any4 = false, any6 = false;
	for (int r = 0; r < ROLE_COUNT; r++) {
		const struct listen_spec *l = &cfg->listen[r];
		if (!l->enabled)
			continue;
		if (l->addr.ss_family == AF_INET) {
			const struct in_addr *a = &((const struct sockaddr_in *)&l->addr)->sin_addr;
			if (a->s_addr == htonl(INADDR_ANY))
				any4 = true;
			else if (inet_ntop(AF_INET, a, text, sizeof(text)) != NULL)
				add_addr(&list, &n, text);
		} else if (l->addr.ss_family == AF_INET6) {
			const struct in6_addr *a = &((const struct sockaddr_in6 *)&l->addr)->sin6_addr;
			if (IN6_IS_ADDR_UNSPECIFIED(a))
				any6 = true;
			else if (inet_ntop(AF_INET6, a, text, sizeof(text)) != NULL)
				add_addr(&list, &n, text);
		}
	}
	struct ifaddrs *ifs = NULL;
	if ((any4 || any6) && getifaddrs(&ifs) == 0) {
		for (struct ifaddrs *i = ifs; i != NULL; i = i->ifa_next) {
			if (i->ifa_addr == NULL)
				continue;
			int fam = i->ifa_addr->sa_family;
			const void *a = fam == AF_INET && any4
						? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
					: fam == AF_INET6 && any6
						? (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr
						: NULL;
			if (a != NULL && inet_ntop(fam, a, text, sizeof(text)) != NULL)
				add_addr(&list, &n, text);
		}
		freeifaddrs(ifs);
	}
	*list_r = list;
	return n;
}

/* tls_open - open a TLS file for the master. As root only through directories and links
 * that root alone controls (fs_open_trusted): the master would otherwise load whatever key a
 * user who can rename one directory on the way points it at, and serve it from the workers.
 * Without root there is no boundary to keep. -1 with *error_r. */
static int tls_open(const char *path, char **error_r)
{
	if (geteuid() != 0) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			*error_r = xasprintf("%s: %s", path, strerror(errno));
		return fd;
	}
	char *why = NULL;
	int fd = fs_open_trusted(path, O_RDONLY, &why);
	if (fd < 0) {
		*error_r = xasprintf("refusing %s: %s (TLS files must be reached only through "
				     "root's directories; see [tls] in docs/configuration.md)",
				     path, why);
		free(why);
	}
	return fd;
}

/* make_root_dir - a directory of root's: created with mode by root inside a parent only
 * root controls, and checked to be root's (without root: made as it is). 0 or -1 with
 * *error_r. */
static int make_root_dir(const char *dir, mode_t mode, char **error_r)
{
	if (geteuid() != 0) {
		if (fs_mkdirs(dir, mode) < 0) {
			*error_r = xasprintf("mkdir %s: %s", dir, strerror(errno));
			return -1;
		}
		return 0;
	}
	const char *slash = strrchr(dir, '/');
	char *parent = slash == dir ? xstrdup("/") : xstrndup(dir, (size_t)(slash - dir));
	char *why = NULL;
	int pfd = fs_open_trusted(parent, O_PATH | O_DIRECTORY, &why);
	free(parent);
	if (pfd >= 0) {
		if (mkdirat(pfd, slash + 1, mode) < 0 && errno != EEXIST)
			why = xasprintf("mkdir %s: %s", dir, strerror(errno));
		close(pfd);
	}
	int dfd = why == NULL ? fs_open_trusted(dir, O_PATH | O_DIRECTORY, &why) : -1;
	if (dfd < 0) {
		*error_r = xasprintf("directory %s: %s (set [tls] dir or acme_challenge_dir to a "
				     "directory of root's)", dir, why);
		free(why);
		return -1;
	}
	close(dfd);
	return 0;
}

/* make_tls_dir - the directory of the self-signed pair and root's keys: 0700 */
static int make_tls_dir(const char *dir, char **error_r)
{
	return make_root_dir(dir, 0700, error_r);
}

/* make_challenge_dir - [tls] acme_challenge_dir: written by root (the ACME client), read by
 * the workers (the run user), so root's and 0755 (made so whatever the umask). */
static void make_challenge_dir(const struct tern_config *cfg)
{
	char *err = NULL;
	if (make_root_dir(cfg->acme_challenge_dir, 0755, &err) < 0)
		log_fatalx("acme_challenge_dir: %s", err);
	struct stat st;
	if (stat(cfg->acme_challenge_dir, &st) < 0)
		log_fatal("acme_challenge_dir %s", cfg->acme_challenge_dir);
	if (geteuid() == 0 && (st.st_mode & 0755) != 0755 &&
	    chmod(cfg->acme_challenge_dir, (st.st_mode & 07777) | 0755) < 0)
		log_fatal("acme_challenge_dir %s: chmod", cfg->acme_challenge_dir);
}

/* load_tls - the configured pair, or a self-signed one in tls_dir made on first start */
static SSL_CTX *load_tls(struct master *m, char **error_r)
{
	if (m->cert_path == NULL) {
		if (m->cfg->tls_cert != NULL) {
			m->cert_path = xstrdup(m->cfg->tls_cert);
			m->key_path = xstrdup(m->cfg->tls_key);
		} else {
			m->cert_path = xasprintf("%s/cert.pem", m->cfg->tls_dir);
			m->key_path = xasprintf("%s/key.pem", m->cfg->tls_dir);
		}
	}
	if (m->cfg->tls_cert == NULL) {
		if (make_tls_dir(m->cfg->tls_dir, error_r) < 0)
			return NULL;
		/* the directory is root's now: names in it stay what they are */
		if (access(m->cert_path, F_OK) < 0 || access(m->key_path, F_OK) < 0) {
			char **addrs = NULL;
			size_t n = listen_addresses(m->cfg, &addrs);
			log_info("generating a self-signed certificate for %s and %zu address(es) in %s",
				 m->cfg->hostname, n, m->cert_path);
			int r = tls_make_selfsigned_for(m->cert_path, m->key_path, m->cfg->hostname,
							(const char *const *)addrs, n, error_r);
			for (size_t i = 0; i < n; i++)
				free(addrs[i]);
			free(addrs);
			if (r < 0)
				return NULL;
		}
	}
	int cfd = tls_open(m->cert_path, error_r);
	if (cfd < 0)
		return NULL;
	int kfd = tls_open(m->key_path, error_r);
	if (kfd < 0) {
		close(cfd);
		return NULL;
	}
	SSL_CTX *ctx = tls_server_ctx_fd(cfd, m->cert_path, kfd, m->key_path, error_r);
	close(cfd);
	close(kfd);
	return ctx;
}

/* acme_restart_selfsigned - with [tls] acme, the pair in [tls] dir is ours to replace: when it
 * cannot be loaded at start (a crash between the renames of a renewal left a new key with
 * the old chain, or a file was damaged), start on a fresh self-signed pair rather than not at
 * all; the ACME child orders a real one at once. Only names in [tls] dir, which load_tls
 * checked to be root's. True when the pair was removed. */
static bool acme_restart_selfsigned(struct master *m, const char *why)
{
	char *refused = NULL;
	int dfd = geteuid() == 0 ? fs_open_trusted(m->cfg->tls_dir, O_PATH | O_DIRECTORY, &refused)
				 : open(m->cfg->tls_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		free(refused);
		return false;	/* not a directory of ours: the error stands */
	}
	log_warnx("TLS: %s; [tls] acme: starting with a new self-signed certificate until the CA "
		  "issues one", why);
	bool ok = (unlinkat(dfd, "cert.pem", 0) == 0 || errno == ENOENT) &&
		  (unlinkat(dfd, "key.pem", 0) == 0 || errno == ENOENT);
	if (!ok)
		log_warn("removing the pair in %s", m->cfg->tls_dir);
	close(dfd);
	return ok;
}

/* load_srs_key - [inbound] srs_secret, or the random key file srs.key in tls_dir: root's, read
 * like the TLS key (the run user must not choose what root reads or where it writes), made
 * on first start. 0 or -1 with *error_r. */
static int load_srs_key(struct master *m, char **error_r)
{
	struct tern_config *cfg = m->cfg;
	if (cfg->srs_secret != NULL) {
		srs_key_from_secret(cfg);
		return 0;
	}
	if (make_tls_dir(cfg->tls_dir, error_r) < 0)
		return -1;
	char *path = xasprintf("%s/srs.key", cfg->tls_dir);
	int fd = -1;
	if (access(path, F_OK) == 0 && (fd = tls_open(path, error_r)) < 0) {
		free(path);
		return -1;
	}
	int r = srs_key_load(fd, path, cfg->srs_key, error_r);
	if (fd >= 0)
		close(fd);
	free(path);
	if (r == 0)
		cfg->srs_key_ready = true;
	return r;
}

static void open_listeners(struct master *m)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		m->listen_fds[r] = -1;
		const struct listen_spec *l = &m->cfg->listen[r];
		if (!l->enabled)
			continue;
		m->listen_fds[r] = net_listen((const struct sockaddr *)&l->addr, l->addrlen, 511);
		if (m->listen_fds[r] < 0)
			log_fatal("listen %s on %s", config_role_name(r), l->text);
	}
}

/* child_detach - in a new child: default signals, an empty mask, and die with the master
 * (PDEATHSIG; a master gone before it was set leaves the child alone: it exits) */
static void child_detach(pid_t master_pid)
{
	sigset_t none;
	sigemptyset(&none);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid)
		_exit(0);
}

/* child_drop_root - to the run user for good (when the master runs as root) */
static void child_drop_root(struct master *m, pid_t master_pid)
{
	if (!m->drop)
		return;
	if (setgroups(0, NULL) < 0 || setgid(m->gid) < 0 || setuid(m->uid) < 0)
		log_fatal("dropping privileges");
	if (setuid(0) == 0)
		log_fatalx("could drop root but get it back: refusing to run");
	prctl(PR_SET_PDEATHSIG, SIGTERM);	/* setuid clears it */
	if (getppid() != master_pid)
		_exit(0);
}

/* child_setup - in a new worker, runner or check child: detach, then drop root */
static void child_setup(struct master *m, pid_t master_pid)
{
	child_detach(master_pid);
	child_drop_root(m, master_pid);
}

/* check_access - prepare_as_user in a child that dropped root; fail fast when the run
 * user cannot reach the data dir (a parent directory without search permission is the usual
 * cause) instead of children dying in a loop */
static void check_access(struct master *m)
{
	if (!m->drop) {
		if (prepare_as_user(m->cfg) < 0)
			log_fatal("data_dir %s", m->cfg->data_dir);
		return;
	}
	pid_t master_pid = getpid();
	pid_t pid = fork();
	if (pid < 0)
		log_fatal("fork");
	if (pid == 0) {
		child_setup(m, master_pid);
		_exit(prepare_as_user(m->cfg) == 0 ? 0 : 1);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		log_fatalx("data_dir %s is not usable by uid %ld: check the permissions of it and "
			   "its parent directories", m->cfg->data_dir, (long)m->uid);
}

static void spawn(struct master *m, struct child *c, enum child_kind kind)
{
	pid_t master_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("fork");
		c->pid = 0;
		c->kind = kind;
		c->restart_at = time(NULL) + 1;	/* keep the slot: try again */
		return;
	}
	if (pid == 0) {
		child_setup(m, master_pid);
		if (kind == CHILD_WORKER)
			dkim_keyring_free(&m->dkim);	/* workers face clients: no private keys */
		trace_init(m->cfg->data_dir, m->cfg->trace_days);	/* after the drop to user */
		int rc = kind == CHILD_WORKER ? worker_main(m->cfg, m->tls, m->listen_fds)
					      : runner_main(m->cfg, m->dkim);
		exit(rc);
	}
	c->pid = pid;
	c->kind = kind;
	c->retiring = false;
	c->started = time(NULL);
	c->restart_at = 0;
}

static struct child *free_slot(struct master *m)
{
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (m->children[i].pid == 0 && m->children[i].restart_at == 0)
			return &m->children[i];
	return NULL;
}

static void spawn_generation(struct master *m)
{
	for (unsigned i = 0; i < m->n_workers; i++) {
		struct child *c = free_slot(m);
		if (c != NULL)
			spawn(m, c, CHILD_WORKER);
	}
}

/* acme_start - fork the ACME child when it is due ([tls] acme): it keeps root (it writes the
 * root-only key and certificate), closes the listeners and runs acme_run (acme.h), which may
 * block on the CA for minutes (bounded by an alarm) */
static void acme_start(struct master *m)
{
	if (m->acme_next == 0 || m->acme_pid != 0 || time(NULL) < m->acme_next || got_term)
		return;
	pid_t master_pid = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		log_warn("fork (acme)");
		m->acme_next = time(NULL) + 60;
		return;
	}
	if (pid == 0) {
		child_detach(master_pid);	/* and no child_drop_root: it keeps root */
		for (int r = 0; r < ROLE_COUNT; r++)
			if (m->listen_fds[r] >= 0)
				close(m->listen_fds[r]);
		dkim_keyring_free(&m->dkim);
		log_init("acme");
		alarm(15 * 60);	/* a CA that never answers must not hold renewals forever */
		int rc = acme_run(m->cfg, m->cert_path, m->key_path);
		signal(SIGTERM, SIG_IGN);	/* the master stopping must not cut exit's cleanup */
		exit(rc);			/* exit, not _exit: LeakSanitizer runs */
	}
	m->acme_pid = pid;
}

/* acme_done - the ACME child ended: reload when it renewed (as SIGHUP does: new workers,
 * old sessions finish on the old ones), and plan the next run: after acme_check_interval, or
 * after a failure sooner, 1 min doubling per failure up to the interval */
static void acme_done(struct master *m, int status)
{
	int rc = WIFEXITED(status) ? WEXITSTATUS(status) : ACME_FAILED;
	unsigned every = m->cfg->acme_check_interval, wait = every;
	m->acme_pid = 0;
	if (rc == ACME_RENEWED)
		got_hup = 1;
	if (rc == ACME_RENEWED || rc == ACME_UP_TO_DATE) {
		m->acme_failures = 0;
	} else {
		unsigned shift = m->acme_failures < 10 ? m->acme_failures : 10;
		m->acme_failures++;
		wait = 60u << shift;
		if (wait > every)
			wait = every;
		if (WIFSIGNALED(status))
			log_warnx("acme child killed by signal %d", WTERMSIG(status));
		log_warnx("acme: attempt %u failed; next attempt in %u s", m->acme_failures, wait);
	}
	m->acme_next = time(NULL) + wait;
}

/* reap - collect dead children; restart those that should still run */
static void reap(struct master *m)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == m->acme_pid) {
			acme_done(m, status);
			continue;
		}
		for (size_t i = 0; i < MAX_CHILDREN; i++) {
			struct child *c = &m->children[i];
			if (c->pid != pid)
				continue;
			c->pid = 0;
			metrics_child_gone(pid);	/* its counters stay for its successor */
			bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			if (!clean || (!got_term && !c->retiring)) {
				if (WIFSIGNALED(status))
					log_warnx("%s %ld killed by signal %d",
						  c->kind == CHILD_WORKER ? "worker" : "queue runner",
						  (long)pid, WTERMSIG(status));
				else
					log_info("%s %ld exited with status %d",
						 c->kind == CHILD_WORKER ? "worker" : "queue runner",
						 (long)pid, WEXITSTATUS(status));
			}
			if (!got_term && !c->retiring) {
				/* A crash loop must not spin, nor block the master: restart later,
				 * waiting longer (to 60 s) while the child keeps dying young. */
				time_t now = time(NULL);
				c->quick_deaths = now - c->started < 10 ? c->quick_deaths + 1 : 0;
				unsigned wait = c->quick_deaths == 0 ? 0 : 1u << (c->quick_deaths < 6 ? c->quick_deaths - 1 : 5);
				c->restart_at = now + (wait > 60 ? 60 : wait);
			}
			break;
		}
	}
}

/* restart_due - start the children whose back-off has run out */
static void restart_due(struct master *m)
{
	time_t now = time(NULL);
	for (size_t i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &m->children[i];
		if (c->pid == 0 && c->restart_at != 0 && now >= c->restart_at && !got_term) {
			c->restart_at = 0;
			unsigned deaths = c->quick_deaths;
			spawn(m, c, c->kind);
			c->quick_deaths = deaths;
		}
	}
}

static unsigned live_children(const struct master *m)
{
	unsigned n = 0;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (m->children[i].pid != 0)
			n++;
	return n;
}

/* reload_dkim - SIGHUP: read the DKIM keys again (as root) and restart the queue runner, which
 * holds the old ones; it finishes what it is sending and the master starts it again */
static void reload_dkim(struct master *m)
{
	struct dkim_keyring *ring = NULL;
	char *err = NULL;
	if (dkim_keyring_load(m->cfg->dkim_dir, &ring, &err) < 0) {
		log_warnx("reload: dkim: %s; keeping the old keys", err);
		free(err);
		return;
	}
	dkim_keyring_free(&m->dkim);
	m->dkim = ring;
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (m->children[i].pid != 0 && m->children[i].kind == CHILD_RUNNER)
			kill(m->children[i].pid, SIGTERM);
	log_info("reloaded: %zu dkim signing key%s", ring->n, ring->n == 1 ? "" : "s");
}

/* reload - SIGHUP: reload the certificate, start fresh workers, retire the old ones */
static void reload(struct master *m)
{
	char *err = NULL;
	SSL_CTX *tls = load_tls(m, &err);
	if (tls == NULL) {
		log_warnx("reload: TLS: %s; keeping the old certificate", err);
		free(err);
		return;
	}
	SSL_CTX_free(m->tls);
	m->tls = tls;
	for (size_t i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &m->children[i];
		if (c->pid != 0 && c->kind == CHILD_WORKER && !c->retiring) {
			c->retiring = true;
			kill(c->pid, SIGTERM);
		}
	}
	spawn_generation(m);
	log_info("reloaded: certificate %s; new workers started", m->cert_path);
	reload_dkim(m);
}

static void print_ready(struct master *m)
{
	for (int r = 0; r < ROLE_COUNT; r++)
		if (m->listen_fds[r] >= 0)
			log_info("listening: %s on %s", config_role_name(r), m->cfg->listen[r].text);
	log_info("ready: %u workers, data in %s%s", m->n_workers, m->cfg->data_dir,
		 m->drop ? ", children run unprivileged" : "");
}

/* raise_nofile - every session holds a descriptor: take all the kernel allows this process
 * (the soft limit up to the hard one; children inherit it) */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("getrlimit RLIMIT_NOFILE");
		return;
	}
	rlim_t want = rl.rlim_max;
	if (want == RLIM_INFINITY || want > (rlim_t)1 << 20)
		want = (rlim_t)1 << 20;	/* above fs.nr_open setrlimit fails */
	if (rl.rlim_cur < want) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("setrlimit RLIMIT_NOFILE %lu", (unsigned long)want);
		else
			log_info("descriptors: limit raised from %lu to %lu", (unsigned long)was,
				 (unsigned long)want);
	}
}

int master_run(struct tern_config *cfg, const char *dev_banner)
{
	struct master m;
	char *err = NULL;
	memset(&m, 0, sizeof(m));
	m.cfg = cfg;
	log_init("master");
	log_set_debug(cfg->debug);
	/* log, log_timestamps, log_facility, syslog_socket: set before any child is forked */
	if (log_configure(cfg->log_dest, cfg->log_stamps, cfg->log_facility, cfg->syslog_socket,
			  &err) < 0) {
		log_warnx("%s: lines go to stderr until it answers", err);
		free(err);
		err = NULL;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	tls_init();

	resolve_user(&m, dev_banner != NULL);
	prepare_data_dir(&m);
	m.tls = load_tls(&m, &err);
	if (m.tls == NULL && cfg->acme_url != NULL && acme_restart_selfsigned(&m, err)) {
		free(err);
		err = NULL;
		m.tls = load_tls(&m, &err);
	}
	if (m.tls == NULL)
		log_fatalx("TLS: %s", err);
	/* DKIM keys are root's: read them now, as root, for the queue runner we fork */
	if (dkim_keyring_load(cfg->dkim_dir, &m.dkim, &err) < 0)
		log_fatalx("dkim: %s", err);
	if (m.dkim->n > 0)
		log_info("dkim: %zu signing key%s from %s", m.dkim->n, m.dkim->n > 1 ? "s" : "",
			 cfg->dkim_dir);
	/* the SRS key, like the TLS key: read (or made) as root, inherited by the children */
	if (cfg->srs && load_srs_key(&m, &err) < 0)
		log_fatalx("SRS: %s", err);
	check_access(&m);
	if (cfg->listen[ROLE_HTTP].enabled || cfg->listen[ROLE_HTTPS].enabled || cfg->acme_url)
		make_challenge_dir(cfg);
	if (cfg->acme_url != NULL)
		m.acme_next = time(NULL);	/* ACME: check the certificate at once */
	if (cfg->acme_url != NULL && !cfg->listen[ROLE_HTTP].enabled)
		log_warnx("[tls] acme without [listen] http: the CA's http-01 requests (port 80) must "
			  "reach %s some other way", cfg->acme_challenge_dir);
	open_listeners(&m);
	if (connlimit_init() < 0 || throttle_init() < 0 || metrics_init() < 0)
		log_fatal("shared tables");
	throttle_set_allowance(cfg->login_free_failures, cfg->login_free_failures_ip);
	throttle_set_limits(cfg->login_free_failures_account, cfg->login_max_inflight);

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	m.n_workers = cfg->workers ? cfg->workers : (ncpu > 0 ? (unsigned)ncpu : 1);
	if (m.n_workers > 64)
		m.n_workers = 64;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);

	spawn(&m, &m.children[0], CHILD_RUNNER);
	spawn_generation(&m);
	print_ready(&m);
	if (sdnotify("READY=1\nSTATUS=listening") < 0)	/* systemd Type=notify */
		log_warn("NOTIFY_SOCKET");
	if (dev_banner != NULL)
		fprintf(stderr, "%s", dev_banner);

	while (!got_term) {
		struct timespec one_second = { 1, 0 };
		int sig = sigtimedwait(&block, NULL, &one_second);
		if (sig > 0)
			on_signal(sig);
		if (got_chld) {
			got_chld = 0;
			reap(&m);
		}
		restart_due(&m);
		acme_start(&m);
		if (got_hup && !got_term) {
			got_hup = 0;
			sdnotify_reloading();
			reload(&m);
			sdnotify("READY=1");
		}
	}

	sdnotify("STOPPING=1");
	log_info("stopping: waiting up to %us for transactions in flight", cfg->shutdown_timeout);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (m.children[i].pid != 0)
			kill(m.children[i].pid, SIGTERM);
	if (m.acme_pid != 0)
		kill(m.acme_pid, SIGTERM);
	for (int r = 0; r < ROLE_COUNT; r++)
		if (m.listen_fds[r] >= 0)
			close(m.listen_fds[r]);
	time_t deadline = time(NULL) + cfg->shutdown_timeout + 5;
	sigprocmask(SIG_SETMASK, &old, NULL);
	while (live_children(&m) > 0) {
		if (time(NULL) > deadline) {
			log_warnx("children did not stop in time: killing them");
			for (size_t i = 0; i < MAX_CHILDREN; i++)
				if (m.children[i].pid != 0)
					kill(m.children[i].pid, SIGKILL);
			deadline = time(NULL) + 5;
		}
		reap(&m);
		struct timespec ts = { 0, 20 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	SSL_CTX_free(m.tls);
	dkim_keyring_free(&m.dkim);
	free(m.cert_path);
	free(m.key_path);
	log_info("stopped");
	return 0;
}

/* master_listen_addresses, master_tls_open - see master.h (for `tern check`) */
size_t master_listen_addresses(const struct tern_config *cfg, char ***list_r)
{
	return listen_addresses(cfg, list_r);
}

int master_tls_open(const char *path, char **error_r)
{
	return tls_open(path, error_r);
}
