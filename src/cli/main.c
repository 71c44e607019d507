/* main - the tern command: dispatch to serve, user, alias, queue, check, version */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "cli/cmd_check.h"
#include "cli/cmd_backup.h"
#include "cli/cmd_dkim.h"
#include "cli/cmd_send.h"
#include "cli/cmd_trace.h"
#include "cli/cmd_read.h"
#include "cli/cmd_user.h"
#include "cli/dataowner.h"
#include "cli/devdata.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "queue/queue.h"
#include "config/config.h"
#include "server/master.h"

#define EX_USAGE 64
#define TERN_VERSION "0.1.0"

static const char usage_text[] =
	"usage: tern COMMAND [options]\n"
	"\n"
	"commands:\n"
	"  serve [-c FILE]                 run the mail server in the foreground\n"
	"                                  (without -c: the development instance in ./tern-data)\n"
	"  user add|del|passwd|list|senders [ADDRESS] [SENDER...] [-c FILE]\n"
	"                                  manage accounts (password read from stdin or prompted)\n"
	"  alias add ALIAS TARGET...|del ALIAS|list [-c FILE]\n"
	"                                  manage aliases\n"
	"  queue list|flush [ID]|delete ID|bounce ID [-c FILE]\n"
	"                                  show and manage the outbound queue\n"
	"  send --to ADDR... [options] < body.txt\n"
	"                                  compose a message and submit it (see send --help)\n"
	"  read [options] list|show N|save N DIR|delete N|move N FOLDER|folders\n"
	"                                  read a mailbox over IMAP or POP3 (see 'tern read --help')\n"
	"  dkim generate DOMAIN|list|check DOMAIN [-c FILE]\n"
	"                                  DKIM signing keys and their DNS records\n"
	"  trace ID [--json] [-c FILE]     the story of one message (queue id or Message-ID)\n"
	"  check [DOMAIN] [--private-ok] [-c FILE]\n"
	"                                  check the configuration, its files and the domains' DNS\n"
	"                                  records (MX, PTR, SPF, DKIM, DMARC, MTA-STS, TLS-RPT)\n"
	"                                  and the certificate; exit 0 ok, 1 warnings, 2 errors\n"
	"  backup DIR -c FILE              copy the data dir consistently while it runs\n"
	"  version                         print the version\n"
	"\n"
	"Run 'tern COMMAND --help' for a command's options.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tern: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'tern --help')\n");
	return EX_USAGE;
}

/* parse_c_only - accept only "-c FILE" (and --help) after the command words */
static int parse_c_only(int argc, char **argv, int first, const char *help, const char **conf_r,
			int *done_r)
{
	*conf_r = NULL;
	*done_r = 0;
	for (int i = first; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help, stdout);
			*done_r = 1;
			return 0;
		}
		if (!strcmp(argv[i], "-c")) {
			if (i + 1 >= argc)
				return usage_error("%s: -c needs a file", argv[0]);
			*conf_r = argv[++i];
			continue;
		}
		return usage_error("unexpected argument '%s'", argv[i]);
	}
	return 0;
}

static struct tern_config *load_config(const char *path, bool announce)
{
	char *err = NULL;
	if (path == NULL) {
		struct tern_config *dev = config_dev();
		cli_dev_place_data(dev, announce);
		return dev;
	}
	struct tern_config *cfg = config_load(path, &err);
	if (cfg == NULL) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
	}
	return cfg;
}

/* dev_account - the development instance's demo account: created (or its password made
 * anew when the password file is lost); returns the password. Exits on failure. */
static char *dev_account(struct tern_config *cfg)
{
	char *err = NULL;
	char *pwfile = config_path_in_data(cfg, "demo-password");
	char *db = config_path_in_data(cfg, "tern.db");
	char *password = NULL;
	size_t len;
	struct accounts *a;
	static const char *const names[] = { "tern.db", "tern.db-wal", "tern.db-shm",
					     "tern.db-journal", NULL };

	if (cli_enter_data_dir(cfg) != 0 || cli_refuse_symlinks(cfg, "", names) != 0)
		exit(1);
	if (accounts_open(db, &a, &err) < 0) {
		fprintf(stderr, "tern: %s\n", err);
		exit(1);
	}
	if (fs_read_file(pwfile, 256, &password, &len) < 0 ||
	    accounts_user_exists(a, "demo@localhost") != 1) {
		unsigned char rnd[12];
		buf pw;
		buf_init(&pw, 0);
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			abort();
		for (size_t i = 0; i < sizeof(rnd); i++)
			buf_printf(&pw, "%02x", rnd[i]);
		free(password);
		password = pw.data;
		accounts_user_del(a, "demo@localhost", &err);
		free(err);
		err = NULL;
		if (accounts_user_add(a, "demo@localhost", password, &err) < 0 ||
		    fs_write_file_atomic(pwfile, password, strlen(password), 0600) < 0) {
			fprintf(stderr, "tern: demo account: %s\n", err ? err : strerror(errno));
			exit(1);
		}
	}
	accounts_close(&a);
	free(pwfile);
	free(db);
	return password;
}

/* dev_password - dev_account, as the data dir's owner when root started us: in a child
 * that drops root for good (the master must keep it), the password coming back on a pipe */
static char *dev_password(struct tern_config *cfg)
{
	if (geteuid() != 0)
		return dev_account(cfg);
	int p[2];
	if (pipe(p) < 0) {
		perror("tern: pipe");
		exit(1);
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("tern: fork");
		exit(1);
	}
	if (pid == 0) {
		close(p[0]);
		char *pw = dev_account(cfg);
		int r = fs_write_all(p[1], pw, strlen(pw));
		explicit_bzero(pw, strlen(pw));
		free(pw);
		_exit(r == 0 ? 0 : 1);
	}
	close(p[1]);
	char got[257];
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(got) - 1 &&
	       ((r = read(p[0], got + n, sizeof(got) - 1 - n)) > 0 || (r < 0 && errno == EINTR)))
		if (r > 0)
			n += (size_t)r;
	close(p[0]);
	got[n] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n == 0)
		exit(1);	/* the child said why */
	return xstrdup(got);
}

/* dev_setup - the development instance's demo account; returns the banner to print */
static char *dev_setup(struct tern_config *cfg)
{
	char *password = dev_password(cfg);
	char *banner = xasprintf(
		"\n"
		"Tern development instance is running (Ctrl-C stops it). Data: %s\n"
		"  demo account: demo@localhost   password: %s\n"
		"  SMTP (MX):    swaks --server 127.0.0.1:2525 --to demo@localhost\n"
		"  submission:   swaks --server 127.0.0.1:5587 -tls --auth PLAIN"
		" --auth-user demo@localhost --auth-password %s --to demo@localhost\n"
		"  submissions:  swaks --server 127.0.0.1:4465 --tlsc --auth PLAIN"
		" --auth-user demo@localhost --auth-password %s --to demo@localhost\n"
		"  Python:       smtplib.SMTP('127.0.0.1', 2525).sendmail('me@example.org',"
		" ['demo@localhost'], 'Subject: hi\\r\\n\\r\\nhello')\n"
		"  POP3 (STLS):  curl -k --ssl-reqd --user demo@localhost:%s pop3://127.0.0.1:1110/\n"
		"  POP3S:        curl -k --user demo@localhost:%s pop3s://127.0.0.1:1995/1\n"
		"  IMAP:         curl -k --ssl-reqd --user demo@localhost:%s imap://127.0.0.1:1143/INBOX\n"
		"  IMAPS:        curl -k --user demo@localhost:%s 'imaps://127.0.0.1:1993/INBOX?ALL'\n"
		"  mail arrives in %s/mail/localhost/demo/new/\n"
		"  add users:    echo PASSWORD | ./tern user add someone@localhost\n\n",
		cfg->data_dir, password, password, password, password, password, password, password,
		cfg->data_dir);
	free(password);
	return banner;
}

static int cmd_serve(int argc, char **argv)
{
	const char *conf;
	int done;
	int r = parse_c_only(argc, argv, 1, "usage: tern serve [-c FILE]\n"
			     "Runs the mail server in the foreground, logging to stderr.\n"
			     "Without -c: the development instance (./tern-data, domain localhost,\n"
			     "127.0.0.1 ports 2525/5587/4465, a demo account).\n", &conf, &done);
	if (r != 0 || done)
		return r;
	struct tern_config *cfg = load_config(conf, true);
	if (cfg == NULL)
		return 1;
	char *banner = conf == NULL ? dev_setup(cfg) : NULL;
	r = master_run(cfg, banner);
	free(banner);
	config_free(&cfg);
	return r;
}

static void print_queued(void *ctx, const struct queue_msg_info *m)
{
	char when[32];
	time_t t = (time_t)m->arrived;
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-24s %10llu %s <%s>\n", m->qid, (unsigned long long)m->size, when, m->sender);
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct queue_rcpt_info *r = &m->rcpts[i];
		char next[32] = "now";
		if (r->next_try > time(NULL)) {
			time_t nt = (time_t)r->next_try;
			localtime_r(&nt, &tm);
			strftime(next, sizeof(next), "%H:%M:%S", &tm);
		}
		printf("    <%s> state=%s attempts=%d next_try=%s%s%s\n", r->address, r->state,
		       r->attempts, next, r->last_error ? " last_error=" : "",
		       r->last_error ? r->last_error : "");
	}
	(*(unsigned *)ctx)++;
}

static int cmd_queue(int argc, char **argv)
{
	static const char help[] =
		"usage: tern queue list [-c FILE]\n"
		"       tern queue flush [ID] [-c FILE]   retry deferred mail now\n"
		"       tern queue delete ID [-c FILE]    remove a message without notice\n"
		"       tern queue bounce ID [-c FILE]    return a message to its sender\n";
	const char *sub = argc >= 2 ? argv[1] : "";
	if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
		fputs(help, stdout);
		return 0;
	}
	bool is_list = !strcmp(sub, "list"), is_flush = !strcmp(sub, "flush");
	bool is_delete = !strcmp(sub, "delete"), is_bounce = !strcmp(sub, "bounce");
	if (!is_list && !is_flush && !is_delete && !is_bounce)
		return usage_error("queue: expected list, flush, delete or bounce");
	int first = 2;
	const char *id = NULL;
	if (argc > 2 && argv[2][0] != '-' && !is_list) {
		id = argv[2];
		first = 3;
	}
	if ((is_delete || is_bounce) && id == NULL)
		return usage_error("queue %s: needs a queue ID", sub);
	const char *conf;
	int done;
	int r = parse_c_only(argc, argv, first, help, &conf, &done);
	if (r != 0 || done)
		return r;
	struct tern_config *cfg = load_config(conf, false);
	if (cfg == NULL)
		return 1;
	char *err = NULL;
	struct queue *q = NULL;
	char *spool = config_path_in_data(cfg, "spool");
	unsigned n = 0;
	static const char *const names[] = { "queue", "queue.db", "queue.db-wal", "queue.db-shm",
					     "queue.db-journal", NULL };
	if (cli_enter_data_dir(cfg) != 0 || cli_refuse_symlinks(cfg, "spool", names) != 0) {
		r = 1;
	} else if (queue_open(spool, &q, &err) < 0) {
		fprintf(stderr, "tern: %s\n", err);
		r = 1;
	} else if (is_list) {
		if (queue_list(q, print_queued, &n, &err) < 0) {
			fprintf(stderr, "tern: %s\n", err);
			r = 1;
		} else if (n == 0) {
			printf("queue is empty\n");
		}
	} else {
		int hit = is_flush ? queue_flush(q, id, &err)
			  : is_delete ? queue_delete(q, id, &err) : queue_bounce(q, id, &err);
		if (hit < 0) {
			fprintf(stderr, "tern: %s\n", err);
			r = 1;
		} else if (id != NULL && hit == 0) {
			fprintf(stderr, "tern: %s: no such message in the queue\n", id);
			r = 1;
		} else {
			printf("%s: %d recipient(s)\n", sub, hit);
			queue_wake(spool);
		}
	}
	free(err);
	queue_close(&q);
	free(spool);
	config_free(&cfg);
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("missing command");
	const char *cmd = argv[1];
	/* the server's files (password hashes, mail, queue) are for the server alone: made 0600
	 * and 0700 whatever the caller's umask; send and read keep the user's */
	if (!strcmp(cmd, "serve") || !strcmp(cmd, "user") || !strcmp(cmd, "alias") ||
	    !strcmp(cmd, "queue"))
		umask(077);
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
		printf("tern %s\n", TERN_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "serve"))
		return cmd_serve(argc - 1, argv + 1);
	if (!strcmp(cmd, "user"))
		return cmd_user(argc - 1, argv + 1);
	if (!strcmp(cmd, "alias"))
		return cmd_alias(argc - 1, argv + 1);
	if (!strcmp(cmd, "queue"))
		return cmd_queue(argc - 1, argv + 1);
	if (!strcmp(cmd, "send"))
		return cmd_send(argc - 1, argv + 1);
	if (!strcmp(cmd, "read"))
		return cmd_read(argc - 1, argv + 1);
	if (!strcmp(cmd, "dkim"))
		return cmd_dkim(argc - 1, argv + 1);
	if (!strcmp(cmd, "trace"))
		return cmd_trace(argc - 1, argv + 1);
	if (!strcmp(cmd, "check"))
		return cmd_check(argc - 1, argv + 1);
	if (!strcmp(cmd, "backup"))
		return cmd_backup(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", cmd);
}
