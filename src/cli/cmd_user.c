/* cmd_user - "tern user" and "tern alias" */
#include "cli/cmd_user.h"
#include "cli/dataowner.h"
#include "cli/devdata.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"
#include "config/config.h"

#define PASSWORD_MAX 1024	/* longest line read as a password */

static const char user_usage[] =
	"usage: tern user add ADDRESS [-c FILE]     add a user (password from stdin or prompt)\n"
	"       tern user passwd ADDRESS [-c FILE]  change a user's password\n"
	"       tern user del ADDRESS [-c FILE]     delete a user (the mailbox stays)\n"
	"       tern user list [-c FILE]            list users, one per line\n"
	"       tern user senders ADDRESS [SENDER...|none] [-c FILE]\n"
	"                                           show or set the other MAIL FROM addresses\n"
	"                                           (or @domain) the user may send as\n"
	"Without -c, the development instance (./tern-data) is used. On a terminal the\n"
	"password is asked for twice without echo; otherwise it is the first line of stdin.\n";

static const char alias_usage[] =
	"usage: tern alias add ALIAS TARGET... [-c FILE]  make ALIAS deliver to the TARGETs\n"
	"       tern alias del ALIAS [-c FILE]            delete an alias\n"
	"       tern alias list [-c FILE]                 list aliases as \"alias: t1 t2\"\n"
	"ALIAS must be in one of this server's domains; targets may be anywhere. An alias that\n"
	"names itself among its targets keeps a copy for the user of that name.\n";

/* The parsed command line: the -c FILE option and the other words in order. */
struct cli_args {
	const char *config;
	char **words;
	size_t n_words;
	bool help;
};

/* parse_args - take -c FILE / -cFILE / --config FILE / --config=FILE and -h / --help from
 * anywhere in argv[1..]; "--" ends the options. 0, or EX_USAGE after printing why. */
static int parse_args(const char *cmd, int argc, char **argv, struct cli_args *args)
{
	bool options = true;

	memset(args, 0, sizeof(*args));
	args->words = xcalloc((size_t)(argc > 0 ? argc : 1), sizeof(*args->words));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!options || a[0] != '-' || a[1] == '\0') {
			args->words[args->n_words++] = argv[i];
			continue;
		}
		if (strcmp(a, "--") == 0) {
			options = false;
		} else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			args->help = true;
		} else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tern %s: option %s needs a FILE argument\n", cmd, a);
				return EX_USAGE;
			}
			args->config = argv[++i];
		} else if (strncmp(a, "-c", 2) == 0) {
			args->config = a + 2;
		} else if (strncmp(a, "--config=", 9) == 0) {
			args->config = a + 9;
		} else {
			fprintf(stderr, "tern %s: unknown option %s (try tern %s --help)\n", cmd, a,
				cmd);
			return EX_USAGE;
		}
	}
	if (args->config != NULL && args->config[0] == '\0') {
		fprintf(stderr, "tern %s: option -c needs a FILE argument\n", cmd);
		return EX_USAGE;
	}
	return 0;
}

/* want_words - check the number of words after the subcommand; EX_USAGE with a reason. */
static int want_words(const char *cmd, const struct cli_args *args, size_t min, size_t max,
		      const char *what)
{
	size_t n = args->n_words - 1;
	if (n < min) {
		fprintf(stderr, "tern %s %s: missing %s (try tern %s --help)\n", cmd,
			args->words[0], what, cmd);
		return EX_USAGE;
	}
	if (n > max) {
		fprintf(stderr, "tern %s %s: unexpected argument \"%s\" (try tern %s --help)\n", cmd,
			args->words[0], args->words[1 + max], cmd);
		return EX_USAGE;
	}
	return 0;
}

/* check_format - EX_DATAERR unless address is a plain local@domain. */
static int check_format(const char *address)
{
	if (accounts_address_valid(address))
		return 0;
	fprintf(stderr, "tern: %s: not a valid address (expected local-part@domain)\n", address);
	return EX_DATAERR;
}

/* domain_is_ours - whether the address's domain is one of the configured domains. */
static bool domain_is_ours(const struct tern_config *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	return at != NULL && config_is_local_domain(cfg, at + 1);
}

/* not_ours - the EX_DATAERR message for an address outside our domains. */
static int not_ours(const char *address)
{
	const char *at = strrchr(address, '@');
	fprintf(stderr, "tern: %s: domain %s is not one of this server's domains\n", address,
		at != NULL ? at + 1 : "");
	return EX_DATAERR;
}

/* precheck_domain - refuse an address outside our domains before the data dir or the
 * database is created: always for add and passwd; for del only when there is no database
 * (with one, a user left over from a removed domain can still be deleted). 0 or EX_DATAERR. */
static int precheck_domain(const struct tern_config *cfg, const char *sub, const char *address)
{
	if (address == NULL || domain_is_ours(cfg, address))
		return 0;
	if (strcmp(sub, "del") != 0)
		return not_ours(address);
	char *path = config_path_in_data(cfg, "tern.db");
	bool have_db = access(path, F_OK) == 0;
	free(path);
	return have_db ? 0 : not_ours(address);
}

/* open_config - the configuration named by -c, or the development instance's. 0 or 1. */
static int open_config(const struct cli_args *args, struct tern_config **cfg_r)
{
	char *err = NULL;
	*cfg_r = args->config != NULL ? config_load(args->config, &err) : config_dev();
	if (args->config == NULL && *cfg_r != NULL)
		cli_dev_place_data(*cfg_r, false);
	if (*cfg_r == NULL) {
		fprintf(stderr, "tern: %s\n", err != NULL ? err : "cannot load configuration");
		free(err);
		return 1;
	}
	return 0;
}

/* open_accounts - create the data dir if needed, become its owner when root (a symlink
 * planted there then cannot lead root anywhere), refuse planted links, open tern.db. 0 or 1. */
static int open_accounts(const struct tern_config *cfg, struct accounts **acc_r)
{
	static const char *const names[] = { "tern.db", "tern.db-wal", "tern.db-shm",
					     "tern.db-journal", NULL };
	if (cli_enter_data_dir(cfg) != 0 || cli_refuse_symlinks(cfg, "", names) != 0)
		return 1;
	char *path = config_path_in_data(cfg, "tern.db"), *err = NULL;
	int r = accounts_open(path, acc_r, &err);
	free(path);
	if (r < 0) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	return 0;
}

static volatile sig_atomic_t read_interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	read_interrupted = 1;
}

/* read_line - read one line from fd byte by byte (nothing beyond it is consumed, and no
 * stdio buffer keeps a copy) into out, without the CR/LF. 1 got a line, 0 EOF before any
 * byte, -1 error or interrupt, -2 too long. */
static int read_line(int fd, char *out, size_t outsz)
{
	size_t n = 0;
	bool any = false;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);
		if (r < 0) {
			if (errno == EINTR && !read_interrupted)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		any = true;
		if (c == '\n')
			break;
		if (n + 1 >= outsz) {
			explicit_bzero(out, outsz);
			return -2;
		}
		out[n++] = c;
	}
	while (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return any ? 1 : 0;
}

/* prompt_hidden - print prompt on stderr and read a line from the terminal on stdin with
 * echo off; the terminal is restored even after ^C (SIGINT interrupts the read). */
static int prompt_hidden(const char *prompt, char *out, size_t outsz)
{
	struct termios old, quiet;
	struct sigaction sa, old_int, old_term;
	bool restore = tcgetattr(STDIN_FILENO, &old) == 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;	/* no SA_RESTART: the read must return */
	sigemptyset(&sa.sa_mask);
	read_interrupted = 0;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);

	fputs(prompt, stderr);
	fflush(stderr);
	if (restore) {
		quiet = old;
		quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHOE | ECHOK);
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	int r = read_line(STDIN_FILENO, out, outsz);
	if (restore)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	if (read_interrupted) {
		fputc('\n', stderr);
		explicit_bzero(out, outsz);
		return -1;
	}
	return r;
}

/* read_password - the new password into out: one line of stdin, or asked twice on a
 * terminal. 0, or 1 after printing why. */
static int read_password(char *out, size_t outsz)
{
	int r;
	bool tty = isatty(STDIN_FILENO);

	r = tty ? prompt_hidden("Password: ", out, outsz) : read_line(STDIN_FILENO, out, outsz);
	if (r == 1 && out[0] != '\0' && tty) {
		char again[PASSWORD_MAX + 2];
		int r2 = prompt_hidden("Again: ", again, sizeof(again));
		bool same = r2 == 1 && strcmp(out, again) == 0;
		explicit_bzero(again, sizeof(again));
		if (!same) {
			explicit_bzero(out, outsz);
			if (r2 == 1 || r2 == -2)
				fprintf(stderr, "tern: the passwords do not match\n");
			else if (read_interrupted)
				fprintf(stderr, "tern: interrupted\n");
			else
				fprintf(stderr, "tern: no password given the second time\n");
			return 1;
		}
	}
	if (r == -2) {
		fprintf(stderr, "tern: password too long (at most %d bytes)\n", PASSWORD_MAX);
		return 1;
	}
	if (r < 0) {
		if (read_interrupted)
			fprintf(stderr, "tern: interrupted\n");
		else
			fprintf(stderr, "tern: cannot read the password: %s\n", strerror(errno));
		return 1;
	}
	if (r == 0 || out[0] == '\0') {
		explicit_bzero(out, outsz);
		fprintf(stderr, "tern: empty password refused\n");
		return 1;
	}
	return 0;
}

static void print_user(void *ctx, const char *address)
{
	(void)ctx;
	printf("%s\n", address);
}

static void print_alias(void *ctx, const char *alias, const char *targets)
{
	(void)ctx;
	printf("%s: %s\n", alias, targets);
}

/* user_senders - show (no SENDER) or replace ("none": clear) a user's other senders: the
 * exceptions to sender_login_match. */
static int user_senders(const struct cli_args *args, struct accounts *acc)
{
	const char *address = args->words[1];
	char *err = NULL, *list = NULL;
	if (args->n_words == 2) {
		int r = accounts_user_senders(acc, address, &list);
		if (r <= 0) {
			fprintf(stderr, "tern: %s: %s\n", address,
				r == 0 ? "no such user" : "cannot look up its senders");
			return 1;
		}
		for (char *p = list; *p != '\0'; p++)
			if (*p == ' ')
				*p = '\n';
		if (*list != '\0')
			printf("%s\n", list);
		free(list);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	bool none = args->n_words == 3 && strcmp(args->words[2], "none") == 0;
	size_t n = none ? 0 : args->n_words - 2;
	if (accounts_user_set_senders(acc, address, (const char *const *)args->words + 2, n,
				      &err) < 0) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	printf("senders of %s set\n", address);
	return 0;
}

/* user_run - the user subcommands, with config and database open. */
static int user_run(const char *sub, const char *address, const struct tern_config *cfg,
		    struct accounts *acc)
{
	char *err = NULL;
	char password[PASSWORD_MAX + 2];

	if (strcmp(sub, "list") == 0) {
		if (accounts_user_list(acc, print_user, NULL) < 0) {
			fprintf(stderr, "tern: cannot list users\n");
			return 1;
		}
		return fflush(stdout) == 0 ? 0 : 1;
	}
	int exists = accounts_user_exists(acc, address);
	if (exists < 0) {
		fprintf(stderr, "tern: cannot look up %s\n", address);
		return 1;
	}
	if (strcmp(sub, "del") == 0) {
		/* a user left over from a domain that was removed can still be deleted */
		if (!exists && !domain_is_ours(cfg, address))
			return not_ours(address);
		if (accounts_user_del(acc, address, &err) < 0)
			goto fail;
		printf("deleted user %s\n", address);
		return 0;
	}
	if (!domain_is_ours(cfg, address))
		return not_ours(address);
	if (strcmp(sub, "add") == 0 && exists) {
		fprintf(stderr, "tern: %s: user exists (use tern user passwd to change the password)\n",
			address);
		return 1;
	}
	if (strcmp(sub, "passwd") == 0 && !exists) {
		fprintf(stderr, "tern: %s: no such user\n", address);
		return 1;
	}
	if (read_password(password, sizeof(password)) != 0)
		return 1;
	int r = strcmp(sub, "add") == 0 ? accounts_user_add(acc, address, password, &err)
					: accounts_user_passwd(acc, address, password, &err);
	explicit_bzero(password, sizeof(password));
	if (r < 0)
		goto fail;
	printf("%s user %s\n", strcmp(sub, "add") == 0 ? "added" : "changed password of",
	       address);
	if (strcmp(sub, "add") == 0 && accounts_alias_exists(acc, address) == 1)
		fprintf(stderr, "tern: note: %s is also an alias; mail to it goes to the alias's "
				"targets\n", address);
	return 0;
fail:
	fprintf(stderr, "tern: %s\n", err);
	free(err);
	return 1;
}

int cmd_user(int argc, char **argv)
{
	struct cli_args args;
	struct tern_config *cfg = NULL;
	struct accounts *acc = NULL;
	int ret = parse_args("user", argc, argv, &args);

	if (ret != 0)
		goto out;
	if (args.help) {
		fputs(user_usage, stdout);
		goto out;
	}
	if (args.n_words == 0) {
		fprintf(stderr, "tern user: missing command: add, del, passwd, list or senders "
				"(try tern user --help)\n");
		ret = EX_USAGE;
		goto out;
	}
	const char *sub = args.words[0];
	if (strcmp(sub, "list") == 0) {
		ret = want_words("user", &args, 0, 0, "");
	} else if (strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0 ||
		   strcmp(sub, "passwd") == 0) {
		ret = want_words("user", &args, 1, 1, "ADDRESS");
		if (ret == 0)
			ret = check_format(args.words[1]);
	} else if (strcmp(sub, "senders") == 0) {
		ret = want_words("user", &args, 1, (size_t)argc, "ADDRESS");
		if (ret == 0)
			ret = check_format(args.words[1]);
	} else {
		fprintf(stderr, "tern user: unknown command \"%s\": use add, del, passwd, list or "
				"senders\n", sub);
		ret = EX_USAGE;
	}
	if (ret != 0)
		goto out;
	const char *address = args.n_words > 1 ? args.words[1] : NULL;
	if ((ret = open_config(&args, &cfg)) != 0 ||
	    (ret = precheck_domain(cfg, sub, address)) != 0)
		goto out;
	if ((ret = open_accounts(cfg, &acc)) == 0)
		ret = strcmp(sub, "senders") == 0 ? user_senders(&args, acc)
						  : user_run(sub, address, cfg, acc);
	accounts_close(&acc);
out:
	config_free(&cfg);
	free(args.words);
	return ret;
}

/* warn_dangling - tell about local targets that nobody receives yet (allowed: the user may
 * be added next). */
static void warn_dangling(const struct tern_config *cfg, struct accounts *acc,
			  char *const *targets, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!domain_is_ours(cfg, targets[i]))
			continue;
		if (accounts_user_exists(acc, targets[i]) == 0 &&
		    accounts_alias_exists(acc, targets[i]) == 0)
			fprintf(stderr, "tern: warning: %s is not a user or alias (yet)\n", targets[i]);
	}
}

/* alias_run - the alias subcommands, with config and database open. */
static int alias_run(const struct cli_args *args, const struct tern_config *cfg,
		     struct accounts *acc)
{
	const char *sub = args->words[0];
	char *err = NULL;

	if (strcmp(sub, "list") == 0) {
		if (accounts_alias_list(acc, print_alias, NULL) < 0) {
			fprintf(stderr, "tern: cannot list aliases\n");
			return 1;
		}
		return fflush(stdout) == 0 ? 0 : 1;
	}
	const char *alias = args->words[1];
	if (strcmp(sub, "del") == 0) {
		int exists = accounts_alias_exists(acc, alias);
		if (exists < 0) {
			fprintf(stderr, "tern: cannot look up %s\n", alias);
			return 1;
		}
		if (!exists && !domain_is_ours(cfg, alias))
			return not_ours(alias);
		if (accounts_alias_del(acc, alias, &err) < 0)
			goto fail;
		printf("deleted alias %s\n", alias);
		return 0;
	}
	if (!domain_is_ours(cfg, alias))
		return not_ours(alias);
	char *const *targets = args->words + 2;
	size_t n = args->n_words - 2;
	if (accounts_alias_add(acc, alias, (const char *const *)targets, n, &err) < 0)
		goto fail;
	printf("alias %s set\n", alias);
	warn_dangling(cfg, acc, targets, n);
	return 0;
fail:
	fprintf(stderr, "tern: %s\n", err);
	free(err);
	return 1;
}

int cmd_alias(int argc, char **argv)
{
	struct cli_args args;
	struct tern_config *cfg = NULL;
	struct accounts *acc = NULL;
	int ret = parse_args("alias", argc, argv, &args);

	if (ret != 0)
		goto out;
	if (args.help) {
		fputs(alias_usage, stdout);
		goto out;
	}
	if (args.n_words == 0) {
		fprintf(stderr, "tern alias: missing command: add, del or list "
				"(try tern alias --help)\n");
		ret = EX_USAGE;
		goto out;
	}
	const char *sub = args.words[0];
	if (strcmp(sub, "list") == 0) {
		ret = want_words("alias", &args, 0, 0, "");
	} else if (strcmp(sub, "del") == 0) {
		ret = want_words("alias", &args, 1, 1, "ALIAS");
		if (ret == 0)
			ret = check_format(args.words[1]);
	} else if (strcmp(sub, "add") == 0) {
		ret = want_words("alias", &args, 2, (size_t)argc, "ALIAS or TARGET");
		for (size_t i = 1; ret == 0 && i < args.n_words; i++)
			ret = check_format(args.words[i]);
	} else {
		fprintf(stderr, "tern alias: unknown command \"%s\": use add, del or list\n", sub);
		ret = EX_USAGE;
	}
	if (ret != 0)
		goto out;
	if ((ret = open_config(&args, &cfg)) != 0 ||
	    (ret = precheck_domain(cfg, sub, args.n_words > 1 ? args.words[1] : NULL)) != 0)
		goto out;
	if ((ret = open_accounts(cfg, &acc)) == 0)
		ret = alias_run(&args, cfg, acc);
	accounts_close(&acc);
out:
	config_free(&cfg);
	free(args.words);
	return ret;
}
