/* cmd_send - `tern send`: read everything, compose, then connect and submit */
#include "cli/cmd_send.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "client/clientconf.h"
#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/net.h"
#include "lib/tls.h"
#include "lib/xmalloc.h"
#include "mime/compose.h"
#include "smtp/client.h"

#define SEND_MAX_INPUT (64u * 1024 * 1024)	/* body, html, each attachment */
#define SEND_MAX_TOTAL (128u * 1024 * 1024)	/* the composed message */
#define TIMEOUT_MS 60000		/* each step of the dialogue */

static const char send_help[] =
	"usage: tern send [--server HOST:PORT] [--tls starttls|implicit|none] [--insecure]\n"
	"                 [--user USER] [--password-file FILE] [--from ADDR] --to ADDR...\n"
	"                 [--cc ADDR...] [--bcc ADDR...] [--subject TEXT] [--attach FILE...]\n"
	"                 [--html FILE] [--header \"Name: value\"...] [--dry-run] < body.txt\n"
	"Composes a MIME message (the text from stdin) and submits it. The password comes from\n"
	"TERN_PASSWORD, --password-file, or a prompt on the terminal. Defaults for server, tls,\n"
	"user and from may be set in ~/.config/tern/client.conf (key = value).\n"
	"--server defaults to localhost, port 587 (465 with --tls implicit); --tls to starttls.\n"
	"--dry-run prints the message and sends nothing. Exit codes are from sysexits.h.\n";

struct strlist {
	const char **v;
	size_t n;
};

struct send_opts {
	char *server, *tls, *user, *from;	/* from client.conf, then the command line */
	const char *password_file, *subject, *html;
	struct strlist to, cc, bcc, attach, headers;
	bool insecure, dry_run;
};

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "tern: send: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

static void strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	l->v[l->n++] = s;
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v);
}

/* ---- client.conf --------------------------------------------------------------------- */

/* load_client_conf - the defaults (client/clientconf) under what the command line says */
static int load_client_conf(struct send_opts *o)
{
	struct clientconf c;
	char *err = NULL;
	if (clientconf_load(&c, &err) < 0) {
		int r = fail(EX_CONFIG, "%s", err);
		free(err);
		return r;
	}
	o->server = c.server;
	o->tls = c.tls;
	o->user = c.user;
	o->from = c.from;
	free(c.protocol);
	return 0;
}

/* ---- arguments ----------------------------------------------------------------------- */

/* parse_args - options with one value, or a list of values up to the next "--option" */
static int parse_args(int argc, char **argv, struct send_opts *o, bool *help_r)
{
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
		if (!strcmp(a, "--dry-run")) {
			o->dry_run = true;
			continue;
		}
		struct strlist *list = !strcmp(a, "--to")	 ? &o->to
				       : !strcmp(a, "--cc")	 ? &o->cc
				       : !strcmp(a, "--bcc")	 ? &o->bcc
				       : !strcmp(a, "--attach") ? &o->attach
				       : !strcmp(a, "--header") ? &o->headers : NULL;
		if (list != NULL) {
			if (i + 1 >= argc || !strncmp(argv[i + 1], "--", 2))
				return fail(EX_USAGE, "%s needs a value", a);
			while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
				strlist_add(list, argv[++i]);
			continue;
		}
		static const char *const single[] = { "--server", "--tls", "--user", "--from",
						      "--password-file", "--subject", "--html" };
		size_t k;
		for (k = 0; k < sizeof(single) / sizeof(single[0]); k++)
			if (!strcmp(a, single[k]))
				break;
		if (k == sizeof(single) / sizeof(single[0]))
			return fail(EX_USAGE, "unexpected argument '%s' (see 'tern send --help')", a);
		if (i + 1 >= argc)
			return fail(EX_USAGE, "%s needs a value", a);
		const char *v = argv[++i];
		switch (k) {
		case 0: set_str(&o->server, v); break;
		case 1: set_str(&o->tls, v); break;
		case 2: set_str(&o->user, v); break;
		case 3: set_str(&o->from, v); break;
		case 4: o->password_file = v; break;
		case 5: o->subject = v; break;
		default: o->html = v; break;
		}
	}
	return 0;
}

/* ---- input --------------------------------------------------------------------------- */

/* read_fd_all - everything from fd, at most max bytes; -1 with errno (EFBIG) */
static int read_fd_all(int fd, size_t max, buf *out)
{
	char tmp[65536];
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		if (out->len + (size_t)n > max) {
			errno = EFBIG;
			return -1;
		}
		buf_append(out, tmp, (size_t)n);
	}
}

/* read_path - a whole regular file (symlinks followed: the user named it) */
static int read_path(const char *path, buf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
		close(fd);
		errno = e ? e : EINVAL;
		return -1;
	}
	int r = read_fd_all(fd, SEND_MAX_INPUT, out);
	int e = errno;
	close(fd);
	errno = e;
	return r;
}

/* read_password - TERN_PASSWORD, --password-file (its first line), or /dev/tty without
 * echo (stdin carries the body). Fresh string, or NULL after an error message. */
static char *read_password(const struct send_opts *o, int *code_r)
{
	const char *env = getenv("TERN_PASSWORD");
	if (env != NULL)
		return xstrdup(env);
	if (o->password_file != NULL) {
		buf b;
		buf_init(&b, 0);
		if (read_path(o->password_file, &b) < 0) {
			*code_r = fail(EX_NOINPUT, "%s: %s", o->password_file, strerror(errno));
			buf_free(&b);
			return NULL;
		}
		buf_cstr(&b);
		char *pw = xstrndup(b.data ? b.data : "", strcspn(b.data ? b.data : "", "\r\n"));
		explicit_bzero(b.data, b.len);
		buf_free(&b);
		return pw;
	}
	FILE *tty = fopen("/dev/tty", "r+e");
	if (tty == NULL) {
		*code_r = fail(EX_USAGE, "a password is needed for %s: set TERN_PASSWORD or use "
				 "--password-file (no terminal to ask on)", o->user);
		return NULL;
	}
	struct termios old, noecho;
	bool restore = tcgetattr(fileno(tty), &old) == 0;
	if (restore) {
		noecho = old;
		noecho.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &noecho);
	}
	fprintf(tty, "Password for %s: ", o->user);
	fflush(tty);
	char line[1024];
	char *got = fgets(line, sizeof(line), tty);
	if (restore)
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	if (got == NULL) {
		*code_r = fail(EX_USAGE, "no password given");
		return NULL;
	}
	char *pw = xstrndup(line, strcspn(line, "\r\n"));
	explicit_bzero(line, sizeof(line));
	return pw;
}

/* ---- submission ---------------------------------------------------------------------- */

struct submit {
	struct event_base *base;
	struct smtp_client *c;
	const struct smtp_client_txn *txn;
	const char *server;
	int code;		/* the exit code */
	bool connect_failed;	/* a connect-stage failure: the next address may do */
};

static bool non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/* setup_code - the exit code for a failure before the transaction */
static int setup_code(const struct smtp_client_reply *e)
{
	if (e->code >= 400 && e->code < 500)
		return EX_TEMPFAIL;
	switch (e->stage) {
	case SMTP_CLIENT_STAGE_CONNECT:
		return EX_UNAVAILABLE;
	case SMTP_CLIENT_STAGE_AUTH:
		return e->code >= 500 ? EX_NOPERM : EX_PROTOCOL;
	case SMTP_CLIENT_STAGE_STARTTLS:
		return EX_PROTOCOL;
	default:
		return e->code >= 500 ? EX_UNAVAILABLE
		       : e->status == SMTP_CLIENT_TEMPFAIL && e->code == 0 ? EX_PROTOCOL
									  : EX_TEMPFAIL;
	}
}

static void sent_cb(struct smtp_client *c, const struct smtp_client_result *r, void *ctx)
{
	struct submit *s = ctx;
	const struct smtp_client_txn *t = s->txn;
	bool refused = false, temp = false;
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct smtp_client_reply *rr = &r->rcpts[i];
		if (rr->stage == SMTP_CLIENT_STAGE_RCPT && rr->status != SMTP_CLIENT_OK) {
			fprintf(stderr, "tern: send: <%s> refused: %s\n", t->rcpts[i].address,
				rr->text);
			refused = true;
			temp = temp || rr->status == SMTP_CLIENT_TEMPFAIL;
		}
	}
	if (r->data.status == SMTP_CLIENT_OK) {
		s->code = 0;
	} else if (refused) {
		fprintf(stderr, "tern: send: nothing was sent\n");
		s->code = temp ? EX_TEMPFAIL : EX_NOUSER;
	} else {
		const struct smtp_client_reply *why = r->mail.status != SMTP_CLIENT_OK ? &r->mail
										       : &r->data;
		fprintf(stderr, "tern: send: %s: %s (%s)\n", s->server, why->text,
			smtp_client_stage_name(why->stage));
		s->code = why->status == SMTP_CLIENT_TEMPFAIL ? EX_TEMPFAIL : EX_UNAVAILABLE;
	}
	smtp_client_quit(&s->c);
}

static void connected_cb(struct smtp_client *c, const struct smtp_client_reply *err, void *ctx)
{
	struct submit *s = ctx;
	if (err != NULL) {
		s->connect_failed = err->stage == SMTP_CLIENT_STAGE_CONNECT;
		s->code = setup_code(err);
		const char *hint = "";
		if (err->stage == SMTP_CLIENT_STAGE_STARTTLS && strstr(err->text, "certificate"))
			hint = " (use --insecure to skip the check, e.g. for a test server)";
		fprintf(stderr, "tern: send: %s: %s%s%s%s\n", s->server,
			err->stage == SMTP_CLIENT_STAGE_AUTH && err->code >= 500
				? "authentication failed: " : "",
			err->text, hint,
			err->stage == SMTP_CLIENT_STAGE_CONNECT ? "" : "; nothing was sent");
		smtp_client_quit(&s->c);
		return;
	}
	if (smtp_client_send(c, s->txn, sent_cb, s) < 0) {
		s->code = fail(EX_SOFTWARE, "the SMTP client refused the transaction");
		smtp_client_quit(&s->c);
	}
}

/* submit - resolve, then try each address until one connects */
static int submit(const struct send_opts *o, const char *host, uint16_t port, int msg_fd,
		  size_t msg_len, const char *sender, const struct smtp_client_rcpt *rcpts,
		  size_t n_rcpts, const char *password)
{
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG };
	struct addrinfo *ai = NULL;
	int g = getaddrinfo(host, portstr, &hints, &ai);
	if (g != 0)
		return fail(EX_NOHOST, "cannot resolve server \"%s\": %s; nothing was sent", host,
			    gai_strerror(g));
	bool implicit = !strcmp(o->tls, "implicit"), none = !strcmp(o->tls, "none");
	SSL_CTX *ctx = NULL;
	if (!none) {
		tls_init();
		ctx = SSL_CTX_new(TLS_client_method());
		if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
		    (!o->insecure && !SSL_CTX_set_default_verify_paths(ctx))) {
			freeaddrinfo(ai);
			SSL_CTX_free(ctx);
			return fail(EX_SOFTWARE, "cannot set up TLS");
		}
	}
	char helo[256];
	if (gethostname(helo, sizeof(helo)) < 0 || helo[0] == '\0' || strchr(helo, ' '))
		snprintf(helo, sizeof(helo), "localhost");
	helo[sizeof(helo) - 1] = '\0';
	char *server = xasprintf("%s:%u", host, port);
	struct smtp_client_txn txn = {
		.sender = sender,
		.rcpts = rcpts,
		.n_rcpts = n_rcpts,
		.smtputf8 = non_ascii(sender),
		.fd = msg_fd,
		.offset = 0,
		.size = msg_len,
		.all_or_nothing = true,
	};
	struct submit s = { .txn = &txn, .server = server, .code = EX_SOFTWARE };
	struct smtp_client_opts opts = {
		.helo_name = helo,
		.tls_ctx = ctx,
		.tls_server_name = host,
		.require_tls = !none,
		.implicit_tls = implicit,
		.tls_verify = !o->insecure,
		.auth_user = o->user,
		.auth_password = password,
		.timeouts = { TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS, TIMEOUT_MS,
			      TIMEOUT_MS, TIMEOUT_MS, 5 * TIMEOUT_MS, 5000 },
	};
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
		s.base = event_base_new();
		if (s.base == NULL) {
			s.code = fail(EX_SOFTWARE, "event_base_new failed");
			break;
		}
		s.connect_failed = false;
		s.c = smtp_client_connect(s.base, a->ai_addr, a->ai_addrlen, &opts, connected_cb,
					  &s);
		event_base_dispatch(s.base);
		event_base_free(s.base);
		if (!s.connect_failed)
			break;
	}
	freeaddrinfo(ai);
	SSL_CTX_free(ctx);
	free(server);
	return s.code;
}

/* ---- the command --------------------------------------------------------------------- */

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash && slash[1] ? slash + 1 : path;
}

/* envelope_add - the addr-spec of each "Name <addr>" into rcpts (owned strings) */
static int envelope_add(const struct strlist *l, const char *what,
			struct smtp_client_rcpt **rcpts, size_t *n)
{
	for (size_t i = 0; i < l->n; i++) {
		char *addr, *name;
		const char *err;
		if (mime_compose_address(l->v[i], &addr, &name, &err) < 0)
			return fail(EX_USAGE, "%s \"%s\": %s", what, l->v[i], err);
		free(name);
		*rcpts = xreallocarray(*rcpts, *n + 1, sizeof(**rcpts));
		(*rcpts)[*n] = (struct smtp_client_rcpt){ .address = addr };
		(*n)++;
	}
	return 0;
}

static int run_send(struct send_opts *o)
{
	if (o->tls == NULL)
		o->tls = xstrdup("starttls");
	if (strcmp(o->tls, "starttls") && strcmp(o->tls, "implicit") && strcmp(o->tls, "none"))
		return fail(EX_USAGE, "--tls: expected starttls, implicit or none, not \"%s\"",
			    o->tls);
	if (o->to.n == 0)
		return fail(EX_USAGE, "--to is required (see 'tern send --help')");
	if (o->from == NULL && o->user != NULL && strchr(o->user, '@') != NULL)
		o->from = xstrdup(o->user);
	if (o->from == NULL)
		return fail(EX_USAGE, "--from is required (or user = / from = in client.conf)");
	if (!strcmp(o->tls, "none") && o->user != NULL && !o->dry_run)
		return fail(EX_USAGE, "refusing to send a password over an unencrypted connection"
				      " (--tls none with --user)");
	char *host = NULL;
	uint16_t port = 0;
	const char *srv = o->server ? o->server : "localhost";
	if (net_split_hostport(srv, &host, &port) < 0) {
		/* no port: a name, an IPv4 address, or an IPv6 one bare or in brackets */
		const char *colon = strchr(srv, ':');
		size_t len = strlen(srv);
		if (*srv == '\0' || (colon != NULL && strchr(colon + 1, ':') == NULL))
			return fail(EX_USAGE, "--server \"%s\": expected HOST[:PORT]", srv);
		host = srv[0] == '[' && len > 2 && srv[len - 1] == ']' ? xstrndup(srv + 1, len - 2)
								       : xstrdup(srv);
		port = 0;
	}
	if (port == 0)
		port = !strcmp(o->tls, "implicit") ? 465 : 587;

	int code = 0;
	struct smtp_client_rcpt *rcpts = NULL;
	size_t n_rcpts = 0;
	char *sender = NULL, *from_name = NULL;
	buf body, html, msg;
	buf *att_data = xcalloc(o->attach.n ? o->attach.n : 1, sizeof(*att_data));
	struct mime_attachment *atts = xcalloc(o->attach.n ? o->attach.n : 1, sizeof(*atts));
	char *password = NULL;
	int msg_fd = -1;
	buf_init(&body, 0);
	buf_init(&html, 0);
	buf_init(&msg, SEND_MAX_TOTAL);

	/* everything is read and composed before any connection: nothing half-sent */
	const char *err;
	if (mime_compose_address(o->from, &sender, &from_name, &err) < 0) {
		code = fail(EX_USAGE, "--from \"%s\": %s", o->from, err);
		goto out;
	}
	if ((code = envelope_add(&o->to, "--to", &rcpts, &n_rcpts)) != 0 ||
	    (code = envelope_add(&o->cc, "--cc", &rcpts, &n_rcpts)) != 0 ||
	    (code = envelope_add(&o->bcc, "--bcc", &rcpts, &n_rcpts)) != 0)
		goto out;
	for (size_t i = 0; i < o->attach.n; i++) {
		buf_init(&att_data[i], 0);
		if (read_path(o->attach.v[i], &att_data[i]) < 0) {
			code = fail(EX_NOINPUT, "cannot read attachment %s: %s; nothing was sent",
				    o->attach.v[i], errno == EFBIG ? "file too large" : strerror(errno));
			goto out;
		}
		atts[i].filename = base_name(o->attach.v[i]);
		atts[i].data = (const unsigned char *)(att_data[i].data ? att_data[i].data : "");
		atts[i].len = att_data[i].len;
	}
	if (o->html != NULL && read_path(o->html, &html) < 0) {
		code = fail(EX_NOINPUT, "cannot read --html %s: %s; nothing was sent", o->html,
			    strerror(errno));
		goto out;
	}
	if (read_fd_all(0, SEND_MAX_INPUT, &body) < 0) {
		code = fail(EX_NOINPUT, "reading the message text from stdin: %s",
			    errno == EFBIG ? "too large" : strerror(errno));
		goto out;
	}
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		code = fail(EX_SOFTWARE, "getrandom: %s", strerror(errno));
		goto out;
	}
	time_t now = time(NULL);
	struct tm lt;
	localtime_r(&now, &lt);
	char unique[64];
	snprintf(unique, sizeof(unique), "%lld.%02x%02x%02x%02x%02x%02x%02x%02x", (long long)now,
		 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	struct mime_compose m = {
		.from = o->from,
		.to = o->to.v,
		.n_to = o->to.n,
		.cc = o->cc.v,
		.n_cc = o->cc.n,
		.subject = o->subject,
		.headers = o->headers.v,
		.n_headers = o->headers.n,
		.text = body.data ? body.data : "",
		.text_len = body.len,
		.html = o->html ? (html.data ? html.data : "") : NULL,
		.html_len = html.len,
		.attachments = atts,
		.n_attachments = o->attach.n,
		.date = now,
		.tz_minutes = (int)(lt.tm_gmtoff / 60),
		.unique = unique,
	};
	char *cerr = NULL;
	if (mime_compose(&m, &msg, &cerr) < 0) {
		code = fail(EX_DATAERR, "%s; nothing was sent", cerr);
		free(cerr);
		goto out;
	}
	if (o->dry_run) {
		if (fwrite(msg.data, 1, msg.len, stdout) != msg.len || fflush(stdout) != 0)
			code = fail(EX_IOERR, "writing to stdout: %s", strerror(errno));
		goto out;
	}
	if (o->user != NULL && (password = read_password(o, &code)) == NULL)
		goto out;
	msg_fd = memfd_create("tern-send", MFD_CLOEXEC);
	if (msg_fd < 0 || fs_write_all(msg_fd, msg.data, msg.len) < 0) {
		code = fail(EX_SOFTWARE, "cannot hold the message: %s", strerror(errno));
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	code = submit(o, host, port, msg_fd, msg.len, sender, rcpts, n_rcpts, password);
out:
	if (msg_fd >= 0)
		close(msg_fd);
	if (password != NULL) {
		explicit_bzero(password, strlen(password));
		free(password);
	}
	for (size_t i = 0; i < n_rcpts; i++)
		free((char *)rcpts[i].address);
	free(rcpts);
	for (size_t i = 0; i < o->attach.n; i++)
		buf_free(&att_data[i]);
	free(att_data);
	free(atts);
	buf_free(&body);
	buf_free(&html);
	buf_free(&msg);
	free(sender);
	free(from_name);
	free(host);
	return code;
}

int cmd_send(int argc, char **argv)
{
	struct send_opts o;
	memset(&o, 0, sizeof(o));
	bool help;
	int code = load_client_conf(&o);
	if (code == 0)
		code = parse_args(argc, argv, &o, &help);
	if (code == 0 && help)
		fputs(send_help, stdout);
	else if (code == 0)
		code = run_send(&o);
	free(o.server);
	free(o.tls);
	free(o.user);
	free(o.from);
	free(o.to.v);
	free(o.cc.v);
	free(o.bcc.v);
	free(o.attach.v);
	free(o.headers.v);
	return code;
}
