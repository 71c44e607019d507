/* imap - the blocking IMAP client of `tern read` */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "client/imap.h"
#include "imap/mutf7.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

/* the biggest literal accepted in a response (a whole message) */
#define IMAPC_MAX_LITERAL (1024u * 1024 * 1024)

static bool has_cap(const struct imapc *c, const char *cap)
{
	if (c->caps == NULL)
		return false;
	char pat[64];
	snprintf(pat, sizeof(pat), " %s ", cap);
	return strstr(c->caps, pat) != NULL;
}

/* ---- reading responses ------------------------------------------------------------------ */

/* literal_size - does line end in "{n}" or "{n+}"? then n */
static bool literal_size(const buf *line, size_t from, uint64_t *n_r)
{
	const char *s = line->data + from;
	size_t len = line->len - from;
	if (len < 3 || s[len - 1] != '}')
		return false;
	size_t end = len - 1;
	if (end > 0 && s[end - 1] == '+')
		end--;
	size_t start = end;
	while (start > 0 && isdigit((unsigned char)s[start - 1]))
		start--;
	if (start == 0 || start == end || s[start - 1] != '{')
		return false;
	return strnum_u64(s + start, end - start, IMAPC_MAX_LITERAL, n_r) == 0;
}

/* read_response - one whole response line into c->resp with every literal's bytes inline
 * ("...{n}\r\n<n bytes>..."), as the parser below expects */
static int read_response(struct imapc *c, char **error_r)
{
	buf line;
	buf_init(&line, 0);
	buf_reset(&c->resp);
	int r;
	for (;;) {
		r = transport_read_line(&c->t, &line, error_r);
		if (r != 0)
			break;
		size_t from = c->resp.len;
		buf_append(&c->resp, line.data, line.len);
		uint64_t n;
		if (!literal_size(&c->resp, from, &n))
			break;
		buf_append(&c->resp, "\r\n", 2);
		r = transport_read_exact(&c->t, (size_t)n, &c->resp, error_r);
		if (r != 0)
			break;
	}
	buf_free(&line);
	if (c->resp.data == NULL)
		buf_append(&c->resp, "", 0);
	return r;
}

/* A cursor over c->resp. */
struct rd {
	struct imapc *c;
	const char *p, *end;
};

enum tok { T_END, T_OPEN, T_CLOSE, T_ATOM, T_STRING, T_NIL };

/* next_tok - the next token; *s_r and *len_r its text (a quoted string unescaped in c->tmp,
 * valid until the next call) */
static enum tok next_tok(struct rd *r, const char **s_r, size_t *len_r)
{
	while (r->p < r->end && *r->p == ' ')
		r->p++;
	*s_r = r->p;
	*len_r = 0;
	if (r->p >= r->end)
		return T_END;
	char ch = *r->p;
	if (ch == '(') {
		r->p++;
		return T_OPEN;
	}
	if (ch == ')') {
		r->p++;
		return T_CLOSE;
	}
	if (ch == '"') {
		buf_reset(&r->c->tmp);
		r->p++;
		while (r->p < r->end && *r->p != '"') {
			if (*r->p == '\\' && r->p + 1 < r->end)
				r->p++;
			buf_putc(&r->c->tmp, *r->p++);
		}
		if (r->p < r->end)
			r->p++;
		buf_append(&r->c->tmp, "", 0);
		*s_r = r->c->tmp.data;
		*len_r = r->c->tmp.len;
		return T_STRING;
	}
	if (ch == '{' || (ch == '~' && r->p + 1 < r->end && r->p[1] == '{')) {
		const char *q = r->p + (ch == '~' ? 2 : 1);
		const char *digits = q;
		while (q < r->end && isdigit((unsigned char)*q))
			q++;
		uint64_t n;
		if (strnum_u64(digits, (size_t)(q - digits), IMAPC_MAX_LITERAL, &n) < 0)
			return T_END;
		if (q < r->end && *q == '+')
			q++;
		if (q + 3 > r->end || q[0] != '}' || q[1] != '\r' || q[2] != '\n')
			return T_END;
		q += 3;
		if ((uint64_t)(r->end - q) < n)
			return T_END;
		*s_r = q;
		*len_r = (size_t)n;
		r->p = q + n;
		return T_STRING;
	}
	/* an atom; "BODY[HEADER.FIELDS (A B)]<0>" is one, brackets included */
	int depth = 0;
	while (r->p < r->end) {
		char d = *r->p;
		if (d == '[')
			depth++;
		else if (d == ']' && depth > 0)
			depth--;
		else if (depth == 0 && (d == ' ' || d == '(' || d == ')'))
			break;
		r->p++;
	}
	*len_r = (size_t)(r->p - *s_r);
	if (*len_r == 3 && strncasecmp(*s_r, "NIL", 3) == 0)
		return T_NIL;
	return T_ATOM;
}

/* skip_value - skip one value (a parenthesised list as a whole) */
static void skip_value(struct rd *r, enum tok first)
{
	if (first != T_OPEN)
		return;
	int depth = 1;
	const char *s;
	size_t len;
	while (depth > 0) {
		enum tok t = next_tok(r, &s, &len);
		if (t == T_END)
			return;
		if (t == T_OPEN)
			depth++;
		else if (t == T_CLOSE)
			depth--;
	}
}

static bool atom_is(const char *s, size_t len, const char *word)
{
	return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

/* note_untagged - state the client keeps from untagged data: CAPABILITY and EXISTS */
static void note_untagged(struct imapc *c)
{
	struct rd r = { c, c->resp.data + 2, c->resp.data + c->resp.len };
	const char *s;
	size_t len;
	if (next_tok(&r, &s, &len) != T_ATOM)
		return;
	if (atom_is(s, len, "CAPABILITY")) {
		buf caps;
		buf_init(&caps, 0);
		buf_putc(&caps, ' ');
		for (const char *q = r.p; q < r.end; q++)
			buf_putc(&caps, (char)toupper((unsigned char)*q));
		buf_putc(&caps, ' ');
		free(c->caps);
		c->caps = caps.data;
		return;
	}
	uint64_t n;
	if (strnum_u64(s, len, UINT32_MAX, &n) == 0 && next_tok(&r, &s, &len) == T_ATOM &&
	    atom_is(s, len, "EXISTS"))
		c->exists = (uint32_t)n;
}

/* Untagged responses go to this callback (c->resp holds the response). */
typedef void untagged_fn(struct imapc *c, void *ctx);

/* command_end - read responses up to the tagged one for tag; 0 for OK, EX_PROTOCOL (or
 * no_code for NO) otherwise, with the server's text in the error */
static int command_end(struct imapc *c, const char *tag, untagged_fn *cb, void *ctx,
		       int no_code, const char *what, char **error_r)
{
	size_t taglen = strlen(tag);
	for (;;) {
		int r = read_response(c, error_r);
		if (r != 0)
			return r;
		const char *line = c->resp.data;
		if (c->resp.len >= 2 && line[0] == '*' && line[1] == ' ') {
			note_untagged(c);
			if (strncasecmp(line + 2, "BYE", 3) == 0 && cb == NULL)
				continue;
			if (cb)
				cb(c, ctx);
			continue;
		}
		if (c->resp.len > taglen && strncmp(line, tag, taglen) == 0 &&
		    line[taglen] == ' ') {
			const char *st = line + taglen + 1;
			if (strncasecmp(st, "OK", 2) == 0)
				return 0;
			bool no = strncasecmp(st, "NO", 2) == 0;
			return client_fail(error_r, no ? no_code : EX_PROTOCOL, "%s: %.300s", what, st);
		}
		if (line[0] == '+')
			return client_fail(error_r, EX_PROTOCOL, "%s: unexpected continuation: %.300s",
				    what, line);
		/* anything else is junk we do not understand: skip */
	}
}

/* command - send "TAG text\r\n" and wait for its completion */
static int command(struct imapc *c, untagged_fn *cb, void *ctx, int no_code, const char *what,
		   char **error_r, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static int command(struct imapc *c, untagged_fn *cb, void *ctx, int no_code, const char *what,
		   char **error_r, const char *fmt, ...)
{
	char tag[16];
	snprintf(tag, sizeof(tag), "t%u", ++c->tag);
	buf line;
	buf_init(&line, 0);
	buf_printf(&line, "%s ", tag);
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&line, fmt, ap);
	va_end(ap);
	buf_puts(&line, "\r\n");
	int r = transport_write(&c->t, line.data, line.len, error_r);
	buf_free(&line);
	if (r != 0)
		return r;
	return command_end(c, tag, cb, ctx, no_code, what, error_r);
}

/* quote - s as an IMAP quoted string (CR, LF and NUL cannot be sent that way) */
static int quote(const char *s, buf *out, char **error_r)
{
	buf_putc(out, '"');
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n')
			return client_fail(error_r, EX_USAGE, "a line break cannot be sent to an IMAP server");
		if (*s == '"' || *s == '\\')
			buf_putc(out, '\\');
		buf_putc(out, *s);
	}
	buf_putc(out, '"');
	return 0;
}

/* folder_arg - the folder name as a quoted string, in modified UTF-7 unless UTF8=ACCEPT */
static int folder_arg(struct imapc *c, const char *folder, buf *out, char **error_r)
{
	if (c->utf8)
		return quote(folder, out, error_r);
	buf m;
	buf_init(&m, 0);
	if (imap_utf8_to_mutf7(folder, &m) < 0) {
		buf_free(&m);
		return client_fail(error_r, EX_USAGE, "%s: not a valid UTF-8 folder name", folder);
	}
	buf_append(&m, "", 0);
	int r = quote(m.data, out, error_r);
	buf_free(&m);
	return r;
}

/* ---- session ------------------------------------------------------------------------------- */

int imapc_open(struct imapc *c, const char *host, uint16_t port, enum transport_tls tls,
	       bool insecure, int timeout_s, char **error_r)
{
	memset(c, 0, sizeof(*c));
	buf_init(&c->resp, 0);
	buf_init(&c->tmp, 0);
	c->t.fd = -1;
	int r = transport_connect(&c->t, host, port, tls, insecure, timeout_s, error_r);
	if (r != 0)
		return r;
	r = read_response(c, error_r);
	if (r != 0)
		return r;
	if (strncasecmp(c->resp.data, "* OK", 4) != 0)
		return client_fail(error_r, strncasecmp(c->resp.data, "* PREAUTH", 9) == 0 ? EX_PROTOCOL
			    : EX_UNAVAILABLE, "%s: not an IMAP server ready for us: %.200s", host,
			    c->resp.data);
	r = command(c, NULL, NULL, EX_PROTOCOL, "CAPABILITY", error_r, "CAPABILITY");
	if (r != 0)
		return r;
	if (tls == TRANSPORT_TLS_STARTTLS) {
		if (!has_cap(c, "STARTTLS"))
			return client_fail(error_r, EX_PROTOCOL, "%s: the server does not offer STARTTLS",
				    host);
		r = command(c, NULL, NULL, EX_PROTOCOL, "STARTTLS", error_r, "STARTTLS");
		if (r == 0)
			r = transport_start_tls(&c->t, error_r);
		if (r == 0)
			r = command(c, NULL, NULL, EX_PROTOCOL, "CAPABILITY", error_r,
				    "CAPABILITY");
	}
	return r;
}

int imapc_login(struct imapc *c, const char *user, const char *password, char **error_r)
{
	if (!transport_is_tls(&c->t) && !c->t.loopback)
		return client_fail(error_r, EX_USAGE,
			    "%s: refusing to send a password without TLS to a server that is not "
			    "on this machine (use --tls starttls or implicit)", c->t.host);
	if (has_cap(c, "AUTH=PLAIN")) {
		buf b64;
		buf_init(&b64, 0);
		client_sasl_plain(user, password, &b64);
		int r;
		char tag[16];
		snprintf(tag, sizeof(tag), "t%u", ++c->tag);
		buf line;
		buf_init(&line, 0);
		if (has_cap(c, "SASL-IR")) {
			buf_printf(&line, "%s AUTHENTICATE PLAIN %s\r\n", tag, b64.data);
			r = transport_write(&c->t, line.data, line.len, error_r);
		} else {
			buf_printf(&line, "%s AUTHENTICATE PLAIN\r\n", tag);
			r = transport_write(&c->t, line.data, line.len, error_r);
			if (r == 0)
				r = read_response(c, error_r);
			if (r == 0 && c->resp.data[0] != '+')
				r = client_fail(error_r, EX_PROTOCOL, "AUTHENTICATE: %.300s", c->resp.data);
			buf_reset(&line);
			buf_printf(&line, "%s\r\n", b64.data);
			if (r == 0)
				r = transport_write(&c->t, line.data, line.len, error_r);
		}
		explicit_bzero(line.data, line.len);
		explicit_bzero(b64.data, b64.len);
		buf_free(&line);
		buf_free(&b64);
		if (r == 0)
			r = command_end(c, tag, NULL, NULL, EX_NOPERM, "login failed", error_r);
		if (r != 0)
			return r;
	} else {
		if (has_cap(c, "LOGINDISABLED"))
			return client_fail(error_r, EX_PROTOCOL,
				    "%s: the server allows no login here (LOGINDISABLED)", c->t.host);
		buf args;
		buf_init(&args, 0);
		int r = quote(user, &args, error_r);
		buf_putc(&args, ' ');
		if (r == 0)
			r = quote(password, &args, error_r);
		if (r == 0)
			r = command(c, NULL, NULL, EX_NOPERM, "login failed", error_r, "LOGIN %s",
				    buf_cstr(&args));
		explicit_bzero(args.data, args.len);
		buf_free(&args);
		if (r != 0)
			return r;
	}
	int r = command(c, NULL, NULL, EX_PROTOCOL, "CAPABILITY", error_r, "CAPABILITY");
	if (r == 0 && has_cap(c, "UTF8=ACCEPT") &&
	    command(c, NULL, NULL, EX_PROTOCOL, "ENABLE", error_r, "ENABLE UTF8=ACCEPT") == 0)
		c->utf8 = true;
	return r;
}

int imapc_select(struct imapc *c, const char *folder, bool readonly, char **error_r)
{
	buf arg;
	buf_init(&arg, 0);
	c->exists = 0;
	int r = folder_arg(c, folder, &arg, error_r);
	if (r == 0) {
		char *what = xasprintf("folder %s", folder);
		r = command(c, NULL, NULL, EX_NOINPUT, what, error_r, "%s %s",
			    readonly ? "EXAMINE" : "SELECT", buf_cstr(&arg));
		free(what);
	}
	buf_free(&arg);
	return r;
}

/* ---- FETCH --------------------------------------------------------------------------------- */

struct fetch_ctx {
	void (*cb)(void *ctx, const struct imapc_summary *s);
	void *ctx;
	buf *body;		/* imapc_fetch: where BODY[] goes */
	bool got_body;
	uint32_t uid;		/* uid_of: the UID found */
};

/* on_fetch - parse "* N FETCH (...)" and hand it on */
static void on_fetch(struct imapc *c, void *vctx)
{
	struct fetch_ctx *fc = vctx;
	struct rd r = { c, c->resp.data + 2, c->resp.data + c->resp.len };
	const char *s;
	size_t len;
	uint64_t seq;
	if (next_tok(&r, &s, &len) != T_ATOM || strnum_u64(s, len, UINT32_MAX, &seq) < 0)
		return;
	if (next_tok(&r, &s, &len) != T_ATOM || !atom_is(s, len, "FETCH") ||
	    next_tok(&r, &s, &len) != T_OPEN)
		return;
	struct imapc_summary sum = { .seq = (uint32_t)seq, .flags = "" };
	buf flags;
	buf_init(&flags, 0);
	bool have_header = false;
	for (;;) {
		enum tok t = next_tok(&r, &s, &len);
		if (t != T_ATOM)
			break;
		const char *key = s;
		size_t keylen = len;
		t = next_tok(&r, &s, &len);
		uint64_t n;
		if (atom_is(key, keylen, "UID") && t == T_ATOM &&
		    strnum_u64(s, len, UINT32_MAX, &n) == 0) {
			sum.uid = (uint32_t)n;
		} else if (atom_is(key, keylen, "RFC822.SIZE") && t == T_ATOM &&
			   strnum_u64(s, len, UINT64_MAX, &n) == 0) {
			sum.size = n;
		} else if (atom_is(key, keylen, "FLAGS") && t == T_OPEN) {
			while ((t = next_tok(&r, &s, &len)) == T_ATOM) {
				if (flags.len)
					buf_putc(&flags, ' ');
				buf_append(&flags, s, len);
			}
		} else if (keylen >= 5 && strncasecmp(key, "BODY[", 5) == 0 &&
			   (t == T_STRING || t == T_NIL)) {
			if (keylen > 6 && key[5] != ']') {	/* BODY[HEADER.FIELDS ...] */
				sum.header = s;
				sum.header_len = len;
				have_header = true;
			} else if (fc->body) {
				buf_append(fc->body, s, len);
				fc->got_body = true;
			}
		} else {
			skip_value(&r, t);
		}
	}
	if (flags.data)
		sum.flags = flags.data;
	if (!have_header) {
		sum.header = "";
		sum.header_len = 0;
	}
	if (sum.uid)
		fc->uid = sum.uid;
	if (fc->cb)
		fc->cb(fc->ctx, &sum);
	buf_free(&flags);
}

int imapc_list_headers(struct imapc *c,
		       void (*cb)(void *ctx, const struct imapc_summary *s), void *ctx,
		       char **error_r)
{
	if (c->exists == 0)
		return 0;
	struct fetch_ctx fc = { .cb = cb, .ctx = ctx };
	return command(c, on_fetch, &fc, EX_PROTOCOL, "FETCH", error_r,
		       "FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)])");
}

/* uid_of - the UID of message seq in the selected folder */
static int uid_of(struct imapc *c, uint32_t seq, uint32_t *uid_r, char **error_r)
{
	if (seq == 0 || seq > c->exists)
		return client_fail(error_r, EX_DATAERR, "no message %u (the folder has %u)", seq,
			    c->exists);
	struct fetch_ctx fc = { 0 };
	int r = command(c, on_fetch, &fc, EX_PROTOCOL, "FETCH", error_r, "FETCH %u (UID)", seq);
	if (r != 0)
		return r;
	if (fc.uid == 0)
		return client_fail(error_r, EX_DATAERR, "no message %u", seq);
	*uid_r = fc.uid;
	return 0;
}

int imapc_fetch(struct imapc *c, uint32_t seq, bool mark_seen, buf *out, char **error_r)
{
	uint32_t uid;
	int r = uid_of(c, seq, &uid, error_r);
	if (r != 0)
		return r;
	struct fetch_ctx fc = { .body = out };
	r = command(c, on_fetch, &fc, EX_PROTOCOL, "FETCH", error_r, "UID FETCH %u (%s)", uid,
		    mark_seen ? "BODY[]" : "BODY.PEEK[]");
	if (r == 0 && !fc.got_body)
		r = client_fail(error_r, EX_DATAERR, "message %u is gone", seq);
	return r;
}

/* expunge_uid - remove message uid, flagged \Deleted: UID EXPUNGE touches only it */
static int expunge_uid(struct imapc *c, uint32_t uid, char **error_r)
{
	if (has_cap(c, "UIDPLUS") || has_cap(c, "IMAP4REV2"))
		return command(c, NULL, NULL, EX_PROTOCOL, "UID EXPUNGE", error_r,
			       "UID EXPUNGE %u", uid);
	return command(c, NULL, NULL, EX_PROTOCOL, "EXPUNGE", error_r, "EXPUNGE");
}

int imapc_delete(struct imapc *c, uint32_t seq, char **error_r)
{
	uint32_t uid;
	int r = uid_of(c, seq, &uid, error_r);
	if (r == 0)
		r = command(c, NULL, NULL, EX_PROTOCOL, "STORE", error_r,
			    "UID STORE %u +FLAGS.SILENT (\\Deleted)", uid);
	if (r == 0)
		r = expunge_uid(c, uid, error_r);
	return r;
}

int imapc_move(struct imapc *c, uint32_t seq, const char *folder, char **error_r)
{
	uint32_t uid;
	int r = uid_of(c, seq, &uid, error_r);
	if (r != 0)
		return r;
	buf arg;
	buf_init(&arg, 0);
	r = folder_arg(c, folder, &arg, error_r);
	char *what = xasprintf("move to %s", folder);
	if (r == 0 && (has_cap(c, "MOVE") || has_cap(c, "IMAP4REV2"))) {
		r = command(c, NULL, NULL, EX_NOINPUT, what, error_r, "UID MOVE %u %s", uid,
			    buf_cstr(&arg));
	} else if (r == 0) {
		r = command(c, NULL, NULL, EX_NOINPUT, what, error_r, "UID COPY %u %s", uid,
			    buf_cstr(&arg));
		if (r == 0)
			r = command(c, NULL, NULL, EX_PROTOCOL, "STORE", error_r,
				    "UID STORE %u +FLAGS.SILENT (\\Deleted)", uid);
		if (r == 0)
			r = expunge_uid(c, uid, error_r);
	}
	free(what);
	buf_free(&arg);
	return r;
}

/* ---- LIST ---------------------------------------------------------------------------------- */

struct list_ctx {
	void (*cb)(void *ctx, const char *name, const char *flags);
	void *ctx;
};

static void on_list(struct imapc *c, void *vctx)
{
	struct list_ctx *lc = vctx;
	struct rd r = { c, c->resp.data + 2, c->resp.data + c->resp.len };
	const char *s;
	size_t len;
	if (next_tok(&r, &s, &len) != T_ATOM || !atom_is(s, len, "LIST") ||
	    next_tok(&r, &s, &len) != T_OPEN)
		return;
	buf flags, name;
	buf_init(&flags, 0);
	buf_init(&name, 0);
	enum tok t;
	while ((t = next_tok(&r, &s, &len)) == T_ATOM) {
		if (flags.len)
			buf_putc(&flags, ' ');
		buf_append(&flags, s, len);
	}
	buf_append(&flags, "", 0);
	next_tok(&r, &s, &len);		/* the hierarchy delimiter */
	t = next_tok(&r, &s, &len);
	if (t == T_ATOM || t == T_STRING) {
		buf raw;
		buf_init(&raw, 0);
		buf_append(&raw, s, len);
		buf_append(&raw, "", 0);
		if (c->utf8 || imap_mutf7_to_utf8(raw.data, &name) < 0) {
			buf_reset(&name);
			buf_append(&name, raw.data, raw.len);
		}
		buf_append(&name, "", 0);
		buf_free(&raw);
		lc->cb(lc->ctx, name.data, flags.data);
	}
	buf_free(&flags);
	buf_free(&name);
}

int imapc_folders(struct imapc *c, void (*cb)(void *ctx, const char *name, const char *flags),
		  void *ctx, char **error_r)
{
	struct list_ctx lc = { cb, ctx };
	return command(c, on_list, &lc, EX_PROTOCOL, "LIST", error_r, "LIST \"\" \"*\"");
}

void imapc_close(struct imapc *c)
{
	if (c->t.fd >= 0 && !c->t.failed) {
		char *err = NULL;
		command(c, NULL, NULL, EX_PROTOCOL, "LOGOUT", &err, "LOGOUT");
		free(err);
	}
	transport_close(&c->t);
	free(c->caps);
	c->caps = NULL;
	buf_free(&c->resp);
	buf_free(&c->tmp);
}
