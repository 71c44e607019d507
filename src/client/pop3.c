/* pop3 - the blocking POP3 client of `tern read` */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "client/pop3.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

/* reply - read one status line; 0 for +OK, err_code (with the text) for -ERR */
static int reply(struct pop3c *c, int err_code, const char *what, char **error_r)
{
	int r = transport_read_line(&c->t, &c->line, error_r);
	if (r != 0)
		return r;
	const char *s = buf_cstr(&c->line);
	if (strncmp(s, "+OK", 3) == 0)
		return 0;
	if (strncmp(s, "-ERR", 4) == 0)
		return client_fail(error_r, err_code, "%s: %.300s", what, s);
	return client_fail(error_r, EX_PROTOCOL, "%s: unexpected answer: %.300s", what, s);
}

static int send_cmd(struct pop3c *c, char **error_r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int send_cmd(struct pop3c *c, char **error_r, const char *fmt, ...)
{
	buf b;
	buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	buf_puts(&b, "\r\n");
	int r = transport_write(&c->t, b.data, b.len, error_r);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
	return r;
}

/* multiline - the lines after a +OK up to ".", unstuffed, each + CRLF appended to out */
static int multiline(struct pop3c *c, buf *out, char **error_r)
{
	for (;;) {
		int r = transport_read_line(&c->t, &c->line, error_r);
		if (r != 0)
			return r;
		const char *s = c->line.data ? c->line.data : "";
		size_t len = c->line.len;
		if (len == 1 && s[0] == '.')
			return 0;
		if (len > 0 && s[0] == '.') {
			s++;
			len--;
		}
		if (out && (buf_append(out, s, len) < 0 || buf_append(out, "\r\n", 2) < 0))
			return client_fail(error_r, EX_PROTOCOL, "the server's answer is too big");
	}
}

static bool has_cap(const struct pop3c *c, const char *cap)
{
	char pat[64];
	snprintf(pat, sizeof(pat), " %s ", cap);
	return c->caps && strstr(c->caps, pat) != NULL;
}

/* capa - CAPA into c->caps, lines joined; a server without CAPA leaves it NULL */
static int capa(struct pop3c *c, char **error_r)
{
	int r = send_cmd(c, error_r, "CAPA");
	if (r == 0)
		r = reply(c, -1, "CAPA", error_r);
	free(c->caps);
	c->caps = NULL;
	if (r == -1) {
		free(*error_r);
		*error_r = NULL;
		return 0;
	}
	if (r != 0)
		return r;
	buf lines;
	buf_init(&lines, 0);
	r = multiline(c, &lines, error_r);
	buf caps;
	buf_init(&caps, 0);
	buf_putc(&caps, ' ');
	for (size_t i = 0; i < lines.len; i++) {
		char ch = lines.data[i];
		if (ch == '\r')
			continue;
		buf_putc(&caps, ch == '\n' ? ' ' : (char)toupper((unsigned char)ch));
	}
	buf_putc(&caps, ' ');
	c->caps = caps.data;
	buf_free(&lines);
	return r;
}

int pop3c_open(struct pop3c *c, const char *host, uint16_t port, enum transport_tls tls,
	       bool insecure, int timeout_s, char **error_r)
{
	memset(c, 0, sizeof(*c));
	buf_init(&c->line, 0);
	c->t.fd = -1;
	int r = transport_connect(&c->t, host, port, tls, insecure, timeout_s, error_r);
	if (r == 0)
		r = reply(c, EX_UNAVAILABLE, "greeting", error_r);
	if (r == 0)
		r = capa(c, error_r);
	if (r == 0 && tls == TRANSPORT_TLS_STARTTLS) {
		if (c->caps && !has_cap(c, "STLS"))
			return client_fail(error_r, EX_PROTOCOL, "%s: the server does not offer STLS", host);
		r = send_cmd(c, error_r, "STLS");
		if (r == 0)
			r = reply(c, EX_PROTOCOL, "STLS", error_r);
		if (r == 0)
			r = transport_start_tls(&c->t, error_r);
		if (r == 0)
			r = capa(c, error_r);
	}
	return r;
}

/* auth_plain - "AUTH PLAIN <initial response>" (RFC 5034) */
static int auth_plain(struct pop3c *c, const char *user, const char *password, char **error_r)
{
	buf b64;
	buf_init(&b64, 0);
	client_sasl_plain(user, password, &b64);
	int r = send_cmd(c, error_r, "AUTH PLAIN %s", b64.data);
	explicit_bzero(b64.data, b64.len);
	buf_free(&b64);
	if (r == 0)
		r = reply(c, EX_NOPERM, "login failed", error_r);
	return r;
}

int pop3c_login(struct pop3c *c, const char *user, const char *password, char **error_r)
{
	if (!transport_is_tls(&c->t) && !c->t.loopback)
		return client_fail(error_r, EX_USAGE,
			    "%s: refusing to send a password without TLS to a server that is not "
			    "on this machine (use --tls starttls or implicit)", c->t.host);
	if (strpbrk(user, "\r\n") || strpbrk(password, "\r\n"))
		return client_fail(error_r, EX_USAGE, "a user name or password with a line break");
	int r;
	if (c->caps && strstr(c->caps, " SASL ") && strstr(c->caps, " PLAIN ")) {
		r = auth_plain(c, user, password, error_r);
	} else {
		r = send_cmd(c, error_r, "USER %s", user);
		if (r == 0)
			r = reply(c, EX_NOPERM, "login failed", error_r);
		if (r == 0)
			r = send_cmd(c, error_r, "PASS %s", password);
		if (r == 0)
			r = reply(c, EX_NOPERM, "login failed", error_r);
	}
	if (r == 0)
		r = send_cmd(c, error_r, "STAT");
	if (r == 0)
		r = reply(c, EX_PROTOCOL, "STAT", error_r);
	if (r == 0) {
		const char *s = buf_cstr(&c->line) + 3;
		while (*s == ' ')
			s++;
		size_t n = strcspn(s, " ");
		uint64_t count;
		if (strnum_u64(s, n, UINT32_MAX, &count) < 0)
			return client_fail(error_r, EX_PROTOCOL, "STAT: malformed answer: %.200s",
				    buf_cstr(&c->line));
		c->count = (uint32_t)count;
	}
	return r;
}

int pop3c_sizes(struct pop3c *c, uint64_t **sizes_r, char **error_r)
{
	*sizes_r = xcalloc(c->count ? c->count : 1, sizeof(uint64_t));
	int r = send_cmd(c, error_r, "LIST");
	if (r == 0)
		r = reply(c, EX_PROTOCOL, "LIST", error_r);
	if (r != 0)
		return r;
	buf lines;
	buf_init(&lines, 0);
	r = multiline(c, &lines, error_r);
	char *save = NULL;
	buf_append(&lines, "", 0);
	for (char *l = strtok_r(lines.data, "\r\n", &save); r == 0 && l;
	     l = strtok_r(NULL, "\r\n", &save)) {
		uint64_t n, size;
		char *sp = strchr(l, ' ');
		if (sp == NULL || strnum_u64(l, (size_t)(sp - l), UINT32_MAX, &n) < 0 ||
		    strnum_u64(sp + 1, strcspn(sp + 1, " "), UINT64_MAX, &size) < 0)
			continue;
		if (n >= 1 && n <= c->count)
			(*sizes_r)[n - 1] = size;
	}
	buf_free(&lines);
	return r;
}

static int check_n(struct pop3c *c, uint32_t n, char **error_r)
{
	if (n == 0 || n > c->count)
		return client_fail(error_r, EX_DATAERR, "no message %u (the mailbox has %u)", n, c->count);
	return 0;
}

int pop3c_top(struct pop3c *c, uint32_t n, unsigned lines, buf *out, char **error_r)
{
	int r = check_n(c, n, error_r);
	if (r == 0)
		r = send_cmd(c, error_r, "TOP %u %u", n, lines);
	if (r == 0)
		r = reply(c, EX_DATAERR, "TOP", error_r);
	if (r == 0)
		r = multiline(c, out, error_r);
	return r;
}

int pop3c_retr(struct pop3c *c, uint32_t n, buf *out, char **error_r)
{
	int r = check_n(c, n, error_r);
	if (r == 0)
		r = send_cmd(c, error_r, "RETR %u", n);
	if (r == 0)
		r = reply(c, EX_DATAERR, "RETR", error_r);
	if (r == 0)
		r = multiline(c, out, error_r);
	return r;
}

int pop3c_dele(struct pop3c *c, uint32_t n, char **error_r)
{
	int r = check_n(c, n, error_r);
	if (r == 0)
		r = send_cmd(c, error_r, "DELE %u", n);
	if (r == 0)
		r = reply(c, EX_DATAERR, "DELE", error_r);
	return r;
}

int pop3c_quit(struct pop3c *c, char **error_r)
{
	c->quit_sent = true;
	int r = send_cmd(c, error_r, "QUIT");
	if (r == 0)
		r = reply(c, EX_PROTOCOL, "QUIT", error_r);
	return r;
}

void pop3c_close(struct pop3c *c)
{
	transport_close(&c->t);
	buf_free(&c->line);
	free(c->caps);
	c->caps = NULL;
}
