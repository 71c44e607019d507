/* cmd_read - the `tern read` command: options, password, then one action over the
 * IMAP or POP3 client of src/client/ */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cmd_read.h"
#include "client/clientconf.h"
#include "client/imap.h"
#include "client/message.h"
#include "client/pop3.h"
#include "lib/fs.h"
#include "lib/net.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

#define READ_TIMEOUT_S 60
#define MAX_PASSWORD 1024

static const char read_help[] =
	"usage: tern read [--protocol imap|pop3] [--server HOST:PORT] [--tls starttls|implicit|none]\n"
	"                 [--insecure] [--password-file FILE] --user USER [--folder NAME]\n"
	"                 list | show N | save N DIR | delete N | move N FOLDER | folders\n"
	"The password comes from $TERN_PASSWORD, --password-file or a prompt on the terminal.\n"
	"Defaults for server, protocol, tls and user: ~/.config/tern/client.conf (key = value).\n"
	"Ports default to 993/143 (IMAP) and 995/110 (POP3) for implicit TLS/STARTTLS.\n";

struct read_opts {
	const char *protocol, *server, *tls, *user, *folder, *password_file;
	bool insecure;
	const char *action;
	const char *args[2];
	unsigned nargs;
};

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tern read: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'tern read --help')\n");
	return EX_USAGE;
}

static int parse_args(int argc, char **argv, struct read_opts *o, bool *help_r)
{
	static const struct {
		const char *name;
		size_t off;
	} valued[] = {
		{ "--protocol", offsetof(struct read_opts, protocol) },
		{ "--server", offsetof(struct read_opts, server) },
		{ "--tls", offsetof(struct read_opts, tls) },
		{ "--user", offsetof(struct read_opts, user) },
		{ "--folder", offsetof(struct read_opts, folder) },
		{ "--password-file", offsetof(struct read_opts, password_file) },
	};
	*help_r = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			*help_r = true;
			return 0;
		}
		if (!strcmp(a, "--insecure")) {
			o->insecure = true;
			continue;
		}
		bool matched = false;
		for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
			size_t nl = strlen(valued[k].name);
			if (strncmp(a, valued[k].name, nl) != 0 || (a[nl] != '\0' && a[nl] != '='))
				continue;
			const char *v = a[nl] == '=' ? a + nl + 1 : NULL;
			if (v == NULL) {
				if (i + 1 >= argc)
					return usage("%s needs a value", valued[k].name);
				v = argv[++i];
			}
			*(const char **)((char *)o + valued[k].off) = v;
			matched = true;
			break;
		}
		if (matched)
			continue;
		if (a[0] == '-' && a[1] != '\0')
			return usage("unknown option '%s'", a);
		if (o->action == NULL)
			o->action = a;
		else if (o->nargs < 2)
			o->args[o->nargs++] = a;
		else
			return usage("unexpected argument '%s'", a);
	}
	return 0;
}

/* read_tty_password - prompt on /dev/tty without echo */
static int read_tty_password(char *out, size_t outsz)
{
	int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct termios old, quiet;
	bool restore = tcgetattr(fd, &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
		quiet.c_lflag |= ICANON;
		tcsetattr(fd, TCSAFLUSH, &quiet);
	}
	(void)!write(fd, "Password: ", 10);
	size_t n = 0;
	int r = 0;
	for (;;) {
		char c;
		ssize_t got = read(fd, &c, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			r = n > 0 ? 0 : -1;
			break;
		}
		if (c == '\n' || c == '\r')
			break;
		if (n + 1 < outsz)
			out[n++] = c;
	}
	out[n] = '\0';
	if (restore)
		tcsetattr(fd, TCSAFLUSH, &old);
	(void)!write(fd, "\n", 1);
	close(fd);
	return r;
}

/* get_password - $TERN_PASSWORD, the first line of --password-file, or the terminal */
static int get_password(const struct read_opts *o, char *out, size_t outsz)
{
	const char *env = getenv("TERN_PASSWORD");
	if (o->password_file) {
		char *data = NULL;
		size_t len;
		int fd = open(o->password_file, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			fprintf(stderr, "tern read: %s: %s\n", o->password_file, strerror(errno));
			return EX_NOINPUT;
		}
		data = xmalloc(outsz);
		ssize_t got = read(fd, data, outsz - 1);
		close(fd);
		if (got < 0) {
			fprintf(stderr, "tern read: %s: %s\n", o->password_file, strerror(errno));
			free(data);
			return EX_IOERR;
		}
		len = strcspn(data, "\r\n");
		if ((size_t)got < len)
			len = (size_t)got;
		data[len] = '\0';
		len = strcspn(data, "\r\n");
		memcpy(out, data, len);
		out[len] = '\0';
		explicit_bzero(data, outsz);
		free(data);
		return 0;
	}
	if (env != NULL) {
		if (strlen(env) >= outsz) {
			fprintf(stderr, "tern read: TERN_PASSWORD is too long\n");
			return EX_USAGE;
		}
		memcpy(out, env, strlen(env) + 1);
		return 0;
	}
	if (read_tty_password(out, outsz) < 0) {
		fprintf(stderr, "tern read: no password: set TERN_PASSWORD, use --password-file, "
				"or run on a terminal\n");
		return EX_USAGE;
	}
	return 0;
}

static int parse_number(const char *s, uint32_t *n_r)
{
	uint64_t v;
	if (s == NULL || strnum_u64z(s, UINT32_MAX, &v) < 0 || v == 0)
		return usage("'%s' is not a message number (1, 2, ...)", s ? s : "");
	*n_r = (uint32_t)v;
	return 0;
}

static int report(int code, char *err)
{
	if (code != 0)
		fprintf(stderr, "tern read: %s\n", err ? err : "failed");
	free(err);
	return code;
}

/* show_or_save - print message n, or save its attachments into the directory argument */
static int show_or_save(const struct read_opts *o, uint32_t n, buf *msg, char **error_r)
{
	const char *data = msg->data ? msg->data : "";
	if (!strcmp(o->action, "show")) {
		msg_show(data, msg->len, stdout);
		return 0;
	}
	unsigned saved;
	int r = msg_save(data, msg->len, o->args[1], stdout, &saved, error_r);
	if (r == 0 && saved == 0)
		printf("message %u has no attachments\n", n);
	return r;
}

/* print_summary - one `list` line: number, date, sender, subject, size, flags */
static void print_summary(uint32_t n, const char *hdr, size_t len, uint64_t size,
			  const char *flags)
{
	struct msg_summary m;
	msg_summarize(hdr, len, &m);
	/* the date is the raw header value when it does not parse: cleaned like the others */
	printf("%u\t", n);
	msg_print_clean(stdout, m.date, strlen(m.date));
	putchar('\t');
	msg_print_clean(stdout, m.from, strlen(m.from));
	putchar('\t');
	msg_print_clean(stdout, m.subject, strlen(m.subject));
	printf("\t%llu\t%s\n", (unsigned long long)size, flags);
	msg_summary_free(&m);
}

/* ---- IMAP ------------------------------------------------------------------------------- */

static void print_imap_summary(void *ctx, const struct imapc_summary *s)
{
	print_summary(s->seq, s->header, s->header_len, s->size, s->flags);
}

static void print_folder(void *ctx, const char *name, const char *flags)
{
	msg_print_clean(stdout, name, strlen(name));
	if (flags[0])
		printf("\t%s", flags);
	putchar('\n');
}

static int run_imap(const struct read_opts *o, const char *host, uint16_t port,
		    enum transport_tls tls, const char *password, uint32_t n)
{
	struct imapc c;
	char *err = NULL;
	const char *act = o->action;
	const char *folder = o->folder ? o->folder : "INBOX";
	int r = imapc_open(&c, host, port, tls, o->insecure, READ_TIMEOUT_S, &err);
	if (r == 0)
		r = imapc_login(&c, o->user, password, &err);
	if (r == 0 && !strcmp(act, "folders")) {
		r = imapc_folders(&c, print_folder, NULL, &err);
	} else if (r == 0) {
		bool ro = !strcmp(act, "list") || !strcmp(act, "save");
		r = imapc_select(&c, folder, ro, &err);
	}
	if (r == 0 && !strcmp(act, "list")) {
		r = imapc_list_headers(&c, print_imap_summary, NULL, &err);
	} else if (r == 0 && (!strcmp(act, "show") || !strcmp(act, "save"))) {
		buf msg;
		buf_init(&msg, 0);
		r = imapc_fetch(&c, n, !strcmp(act, "show"), &msg, &err);
		if (r == 0)
			r = show_or_save(o, n, &msg, &err);
		buf_free(&msg);
	} else if (r == 0 && !strcmp(act, "delete")) {
		r = imapc_delete(&c, n, &err);
		if (r == 0)
			printf("deleted message %u\n", n);
	} else if (r == 0 && !strcmp(act, "move")) {
		r = imapc_move(&c, n, o->args[1], &err);
		if (r == 0)
			printf("moved message %u to %s\n", n, o->args[1]);
	}
	imapc_close(&c);
	return report(r, err);
}

/* ---- POP3 ------------------------------------------------------------------------------- */

static int run_pop3(const struct read_opts *o, const char *host, uint16_t port,
		    enum transport_tls tls, const char *password, uint32_t n)
{
	struct pop3c c;
	char *err = NULL;
	const char *act = o->action;
	int r = pop3c_open(&c, host, port, tls, o->insecure, READ_TIMEOUT_S, &err);
	if (r == 0)
		r = pop3c_login(&c, o->user, password, &err);
	if (r == 0 && !strcmp(act, "list")) {
		uint64_t *sizes = NULL;
		r = pop3c_sizes(&c, &sizes, &err);
		for (uint32_t i = 1; r == 0 && i <= c.count; i++) {
			buf hdr;
			buf_init(&hdr, 0);
			r = pop3c_top(&c, i, 0, &hdr, &err);
			if (r == 0)
				print_summary(i, hdr.data ? hdr.data : "", hdr.len, sizes[i - 1], "");
			buf_free(&hdr);
		}
		free(sizes);
	} else if (r == 0 && (!strcmp(act, "show") || !strcmp(act, "save"))) {
		buf msg;
		buf_init(&msg, 0);
		r = pop3c_retr(&c, n, &msg, &err);
		if (r == 0)
			r = show_or_save(o, n, &msg, &err);
		buf_free(&msg);
	} else if (r == 0 && !strcmp(act, "delete")) {
		r = pop3c_dele(&c, n, &err);
	}
	/* QUIT commits a DELE; after a failure the connection is just dropped */
	if (r == 0)
		r = pop3c_quit(&c, &err);
	if (r == 0 && !strcmp(act, "delete"))
		printf("deleted message %u\n", n);
	pop3c_close(&c);
	return report(r, err);
}

/* ---- the command --------------------------------------------------------------------------- */

int cmd_read(int argc, char **argv)
{
	struct read_opts o = { 0 };
	bool help;
	int r = parse_args(argc, argv, &o, &help);
	if (r != 0)
		return r;
	if (help) {
		fputs(read_help, stdout);
		return 0;
	}
	struct clientconf conf;
	char *err = NULL;
	if (clientconf_load(&conf, &err) < 0) {
		fprintf(stderr, "tern read: %s\n", err);
		free(err);
		return EX_CONFIG;
	}
	if (!o.protocol)
		o.protocol = conf.protocol ? conf.protocol : "imap";
	if (!o.server)
		o.server = conf.server;
	if (!o.tls)
		o.tls = conf.tls;
	if (!o.user)
		o.user = conf.user;

	r = EX_USAGE;
	bool imap = !strcmp(o.protocol, "imap");
	const char *act = o.action;
	unsigned want = 0;
	uint32_t n = 0;
	char *host = NULL;
	uint16_t port = 0;
	enum transport_tls tls = TRANSPORT_TLS_STARTTLS;
	char password[MAX_PASSWORD];
	password[0] = '\0';
	if (!imap && strcmp(o.protocol, "pop3") != 0) {
		usage("--protocol must be imap or pop3, not '%s'", o.protocol);
		goto out;
	}
	if (act == NULL) {
		usage("expected list, show N, save N DIR, delete N, move N FOLDER or folders");
		goto out;
	}
	if (!strcmp(act, "list") || !strcmp(act, "folders"))
		want = 0;
	else if (!strcmp(act, "show") || !strcmp(act, "delete"))
		want = 1;
	else if (!strcmp(act, "save") || !strcmp(act, "move"))
		want = 2;
	else {
		usage("unknown action '%s'", act);
		goto out;
	}
	if (o.nargs != want) {
		usage("%s: wrong number of arguments", act);
		goto out;
	}
	if (!imap && (!strcmp(act, "folders") || !strcmp(act, "move"))) {
		usage("%s works over IMAP only (POP3 has one mailbox)", act);
		goto out;
	}
	if (!imap && o.folder) {
		usage("--folder works over IMAP only");
		goto out;
	}
	if (want > 0 && parse_number(o.args[0], &n) != 0)
		goto out;
	if (o.user == NULL || !o.user[0]) {
		usage("no user: give --user or user = in client.conf");
		goto out;
	}
	if (o.server == NULL) {
		usage("no server: give --server HOST[:PORT] or server = in client.conf");
		goto out;
	}
	if (o.tls == NULL) {
		tls = TRANSPORT_TLS_STARTTLS;
	} else if (!strcmp(o.tls, "starttls")) {
		tls = TRANSPORT_TLS_STARTTLS;
	} else if (!strcmp(o.tls, "implicit")) {
		tls = TRANSPORT_TLS_IMPLICIT;
	} else if (!strcmp(o.tls, "none")) {
		tls = TRANSPORT_TLS_NONE;
	} else {
		usage("--tls must be starttls, implicit or none, not '%s'", o.tls);
		goto out;
	}
	if (net_split_hostport(o.server, &host, &port) < 0) {
		/* no port: the protocol's default for the TLS mode */
		const char *h = o.server;
		size_t hl = strlen(h);
		if (hl > 2 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		if (hl == 0 || (memchr(h, ':', hl) && o.server[0] != '[')) {
			usage("bad --server '%s' (HOST or HOST:PORT)", o.server);
			goto out;
		}
		host = xstrndup(h, hl);
		if (o.tls == NULL)
			tls = TRANSPORT_TLS_IMPLICIT;	/* the standard ports: implicit TLS first */
		port = imap ? (tls == TRANSPORT_TLS_IMPLICIT ? 993 : 143)
			    : (tls == TRANSPORT_TLS_IMPLICIT ? 995 : 110);
	} else if (o.tls == NULL && (port == 993 || port == 995)) {
		tls = TRANSPORT_TLS_IMPLICIT;
	}
	r = get_password(&o, password, sizeof(password));
	if (r != 0)
		goto out;
	signal(SIGPIPE, SIG_IGN);	/* a closed connection is an error to report */
	r = imap ? run_imap(&o, host, port, tls, password, n)
		 : run_pop3(&o, host, port, tls, password, n);
out:
	explicit_bzero(password, sizeof(password));
	free(host);
	clientconf_free(&conf);
	return r;
}
