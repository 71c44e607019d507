/* smtp_parser - SMTP command arguments and the DATA/BDAT byte stream (see parser.h). */
#include "smtp/parser.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

/* RFC 5321 §4.5.3.1 */
#define SMTP_MAX_LOCALPART 64
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_PATH 256
#define SMTP_MAX_PARAMS 16

/* ASCII-only helpers: <ctype.h> depends on the locale and client bytes >= 0x80 are UTF-8
 * here, never letters of some 8-bit charset. */
static inline bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_alnum(unsigned char c)
{
	return is_alpha(c) || is_digit(c);
}

static inline unsigned char to_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static inline unsigned char to_upper(unsigned char c)
{
	return (c >= 'a' && c <= 'z') ? (unsigned char)(c - 'a' + 'A') : c;
}

/* ascii_ncaseeq - s[0..n) equals the ASCII word w (length n) ignoring case. Stops at the
 * first difference, so a NUL-terminated s shorter than w is never read past its NUL. */
static bool ascii_ncaseeq(const char *s, const char *w, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (to_lower((unsigned char)s[i]) != to_lower((unsigned char)w[i]))
			return false;
	}
	return true;
}

/* utf8_len - length (2..4) of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0. Stops at the first bad octet, so a NUL
 * terminator is never read past. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

/* ---- verbs ---- */

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
	{ "HELO", SMTP_VERB_HELO },	    { "EHLO", SMTP_VERB_EHLO }, { "MAIL", SMTP_VERB_MAIL },
	{ "RCPT", SMTP_VERB_RCPT },	    { "DATA", SMTP_VERB_DATA }, { "BDAT", SMTP_VERB_BDAT },
	{ "RSET", SMTP_VERB_RSET },	    { "NOOP", SMTP_VERB_NOOP }, { "QUIT", SMTP_VERB_QUIT },
	{ "VRFY", SMTP_VERB_VRFY },	    { "EXPN", SMTP_VERB_EXPN }, { "HELP", SMTP_VERB_HELP },
	{ "STARTTLS", SMTP_VERB_STARTTLS }, { "AUTH", SMTP_VERB_AUTH },
};

/* smtp_verb_parse - verb of a command line and its arguments. */
enum smtp_verb smtp_verb_parse(const char *line, size_t len, const char **args_r)
{
	size_t vlen;

	*args_r = "";
	if (memchr(line, '\0', len) != NULL)
		return SMTP_VERB_UNKNOWN;
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		if (strlen(smtp_verbs[i].name) == vlen &&
		    ascii_ncaseeq(line, smtp_verbs[i].name, vlen)) {
			if (vlen < len)
				*args_r = line + vlen + 1;
			return smtp_verbs[i].verb;
		}
	}
	return SMTP_VERB_UNKNOWN;
}

/* ---- domains ---- */

/* parse_ipv4 - "Snum 3("." Snum)" in s[0..len), Snum being 1-3 digits up to 255. */
static bool parse_ipv4(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0;
		size_t digits = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit((unsigned char)s[i]) && digits < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || v > 255)
			return false;
	}
	return i == len;
}

/* parse_address_literal - "[IPv4]" or "[IPv6:addr]" at s; *end_r past the "]".
 * RFC 5321 §4.1.3 also has General-address-literal with an IANA tag: none but IPv6 exists. */
static bool parse_address_literal(const char *s, const char **end_r)
{
	const char *close = strchr(s + 1, ']');
	const char *body = s + 1;
	size_t len;

	if (close == NULL)
		return false;
	len = (size_t)(close - body);
	if (len >= 5 && ascii_ncaseeq(body, "IPv6:", 5)) {
		/* inet_pton wants a NUL-terminated string; the longest valid form
		 * ("ffff:…:255.255.255.255") is 45 octets. */
		char tmp[64];
		struct in6_addr a6;

		if (len - 5 >= sizeof(tmp))
			return false;
		memcpy(tmp, body + 5, len - 5);
		tmp[len - 5] = '\0';
		/* inet_pton accepts exactly the RFC 4291 text forms that RFC 5321's IPv6-addr
		 * describes, but no zone ids ("%eth0"), which are not allowed here either. */
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return false;
	} else if (!parse_ipv4(body, len)) {
		return false;
	}
	*end_r = close + 1;
	return true;
}

/* parse_domain_name - dot-separated labels at s (RFC 5321 Domain, RFC 6531 U-labels);
 * *end_r is the first octet after it; *utf8 set on non-ASCII. */
static bool parse_domain_name(const char *s, const char **end_r, bool *utf8)
{
	const unsigned char *p = (const unsigned char *)s;

	for (;;) {
		const unsigned char *label = p;
		unsigned char last = 0;

		for (;;) {
			size_t n = 1;

			if (*p >= 0x80) {
				if ((n = utf8_len(p)) == 0)
					return false;
				*utf8 = true;
			} else if (!is_alnum(*p) && *p != '-') {
				break;
			}
			last = *p;
			p += n;
		}
		/* Let-dig [Ldh-str]: not empty, no hyphen at either end */
		if (p == label || *label == '-' || last == '-')
			return false;
		if (*p != '.')
			break;
		p++;
	}
	*end_r = (const char *)p;
	return true;
}

/* parse_domain - Domain or address-literal at s; *end_r past it. */
static bool parse_domain(const char *s, const char **end_r, bool *utf8)
{
	bool ok = *s == '[' ? parse_address_literal(s, end_r) : parse_domain_name(s, end_r, utf8);

	return ok && (size_t)(*end_r - s) <= SMTP_MAX_DOMAIN;
}

/* dup_lower - copy of s[0..len) with ASCII letters lower-cased. */
static char *dup_lower(const char *s, size_t len)
{
	char *d = xstrndup(s, len);

	for (size_t i = 0; i < len; i++)
		d[i] = (char)to_lower((unsigned char)d[i]);
	return d;
}

/* ---- paths ---- */

static inline bool is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* parse_local_part - Dot-string or Quoted-string at s (RFC 5321 §4.1.2, RFC 6531 §3.3);
 * *end_r past it; the unquoted, unescaped form goes to out. */
static bool parse_local_part(const char *s, const char **end_r, buf *out, bool *utf8,
			     const char **error_r)
{
	const unsigned char *p = (const unsigned char *)s;

	if (*p == '"') {
		p++;
		for (;;) {
			size_t n = 1;

			if (*p == '"') {
				break;
			} else if (*p == '\\') {
				/* quoted-pairSMTP = "\" %d32-126 */
				if (p[1] < 32 || p[1] > 126) {
					*error_r = "invalid quoted pair in local part";
					return false;
				}
				p++;
			} else if (*p >= 0x80) {
				if ((n = utf8_len(p)) == 0) {
					*error_r = "invalid UTF-8 in local part";
					return false;
				}
				*utf8 = true;
			} else if (*p < 32 || *p > 126) {
				*error_r = *p == '\0' ? "unterminated quoted local part"
						      : "invalid character in local part";
				return false;
			}
			buf_append(out, p, n);
			p += n;
		}
		p++;
	} else {
		for (;;) {
			const unsigned char *atom = p;

			for (;;) {
				size_t n = 1;

				if (*p >= 0x80) {
					if ((n = utf8_len(p)) == 0) {
						*error_r = "invalid UTF-8 in local part";
						return false;
					}
					*utf8 = true;
				} else if (!is_atext(*p)) {
					break;
				}
				p += n;
			}
			if (p == atom) {
				*error_r = "invalid local part";
				return false;
			}
			if (*p != '.')
				break;
			p++;
		}
		buf_append(out, s, (size_t)((const char *)p - s));
	}
	if ((size_t)((const char *)p - s) > SMTP_MAX_LOCALPART) {
		*error_r = "local part too long";
		return false;
	}
	*end_r = (const char *)p;
	return true;
}

/* parse_path - "<" [A-d-l ":"] Mailbox ">" (or "<>" when allow_null, or "<Postmaster>" when
 * allow_postmaster) at s; *end_r past the ">". Fills path. */
static bool parse_path(const char *s, bool allow_null, bool allow_postmaster,
		       struct smtp_path *path, const char **end_r, const char **error_r)
{
	const char *p = s + 1, *lp, *lp_end, *dom = NULL, *dom_end = NULL;
	buf local;
	bool ok = false;

	if (*s != '<') {
		*error_r = "path must be enclosed in <>";
		return false;
	}
	if (*p == '>') {
		if (!allow_null) {
			*error_r = "empty path not allowed";
			return false;
		}
		path->null = true;
		*end_r = p + 1;
		return true;
	}
	/* A-d-l: parsed for syntax, then ignored (RFC 5321 §4.1.2, appendix C) */
	if (*p == '@') {
		for (;;) {
			if (*p != '@' || !parse_domain_name(p + 1, &p, &path->utf8)) {
				*error_r = "invalid source route";
				return false;
			}
			if (*p == ':')
				break;
			if (*p != ',') {
				*error_r = "invalid source route";
				return false;
			}
			p++;
		}
		p++;
	}

	buf_init(&local, 0);
	lp = p;
	if (!parse_local_part(lp, &lp_end, &local, &path->utf8, error_r))
		goto out;
	p = lp_end;
	if (*p == '@') {
		dom = p + 1;
		if (!parse_domain(dom, &dom_end, &path->utf8)) {
			*error_r = dom_end != NULL && (size_t)(dom_end - dom) > SMTP_MAX_DOMAIN
					   ? "domain too long"
					   : "invalid domain";
			goto out;
		}
		p = dom_end;
	} else if (!(allow_postmaster && lp == s + 1 && lp_end - lp == 10 &&
		     ascii_ncaseeq(lp, "postmaster", 10))) {
		*error_r = *p == '>' ? "address needs a domain" : "invalid address";
		goto out;
	}
	if (*p != '>') {
		*error_r = strchr(p, '>') == NULL ? "path must be enclosed in <>" : "invalid address";
		goto out;
	}
	if ((size_t)(p + 1 - s) > SMTP_MAX_PATH) {
		*error_r = "path too long";
		goto out;
	}

	path->localpart = xstrndup(buf_cstr(&local), local.len);
	if (dom != NULL) {
		size_t llen = (size_t)(lp_end - lp), dlen = (size_t)(dom_end - dom);

		path->domain = dup_lower(dom, dlen);
		path->address = xmalloc(llen + 1 + dlen + 1);
		memcpy(path->address, lp, llen);
		path->address[llen] = '@';
		memcpy(path->address + llen + 1, path->domain, dlen + 1);
	} else {
		path->address = xstrndup(lp, (size_t)(lp_end - lp));
	}
	*end_r = p + 1;
	ok = true;
out:
	buf_free(&local);
	return ok;
}

/* parse_params - "KEYWORD[=value]" separated by spaces, up to the end of s. */
static bool parse_params(const char *s, struct smtp_path_args *r, const char **error_r)
{
	const char *p = s;

	for (;;) {
		const char *kw, *val = NULL;
		size_t kwlen, vallen = 0;
		struct smtp_param *prm;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			return true;
		kw = p;
		if (!is_alnum((unsigned char)*p)) {
			*error_r = "invalid parameter";
			return false;
		}
		while (is_alnum((unsigned char)*p) || *p == '-')
			p++;
		kwlen = (size_t)(p - kw);
		if (*p == '=') {
			val = ++p;
			/* esmtp-value = 1*(%d33-60 / %d62-126) */
			while (*p >= 33 && *p <= 126 && *p != '=')
				p++;
			vallen = (size_t)(p - val);
		}
		if (*p != ' ' && *p != '\0') {
			*error_r = "invalid parameter";
			return false;
		}
		if (val != NULL && vallen == 0) {
			*error_r = "empty parameter value";
			return false;
		}
		if (r->n_params == SMTP_MAX_PARAMS) {
			*error_r = "too many parameters";
			return false;
		}
		for (size_t i = 0; i < r->n_params; i++) {
			if (strlen(r->params[i].keyword) == kwlen &&
			    ascii_ncaseeq(r->params[i].keyword, kw, kwlen)) {
				*error_r = "duplicate parameter";
				return false;
			}
		}
		if (r->params == NULL)
			r->params = xcalloc(SMTP_MAX_PARAMS, sizeof(*r->params));
		prm = &r->params[r->n_params++];
		prm->keyword = xstrndup(kw, kwlen);
		for (size_t i = 0; i < kwlen; i++)
			prm->keyword[i] = (char)to_upper((unsigned char)prm->keyword[i]);
		prm->value = val != NULL ? xstrndup(val, vallen) : NULL;
	}
}

/* parse_path_args - "<prefix><path> [params]" shared by MAIL and RCPT. */
static int parse_path_args(const char *args, const char *prefix, bool is_mail,
			   struct smtp_path_args *r, const char **error_r)
{
	size_t plen = strlen(prefix);
	const char *p;

	memset(r, 0, sizeof(*r));
	/* ascii_ncaseeq stops at the first difference, so a shorter args is not overread */
	if (!ascii_ncaseeq(args, prefix, plen)) {
		*error_r = is_mail ? "syntax: MAIL FROM:<address>" : "syntax: RCPT TO:<address>";
		return -1;
	}
	p = args + plen;
	while (*p == ' ')
		p++;
	if (*p != '<') {
		*error_r = "path must be enclosed in <>";
		return -1;
	}
	if (!parse_path(p, is_mail, !is_mail, &r->path, &p, error_r))
		goto fail;
	if (*p != ' ' && *p != '\0') {
		*error_r = "garbage after path";
		goto fail;
	}
	if (!parse_params(p, r, error_r))
		goto fail;
	return 0;
fail:
	smtp_path_args_free(r);
	return -1;
}

/* smtp_parse_mail_from - MAIL arguments. */
int smtp_parse_mail_from(const char *args, struct smtp_path_args *r, const char **error_r)
{
	return parse_path_args(args, "FROM:", true, r, error_r);
}

/* smtp_parse_rcpt_to - RCPT arguments. */
int smtp_parse_rcpt_to(const char *args, struct smtp_path_args *r, const char **error_r)
{
	return parse_path_args(args, "TO:", false, r, error_r);
}

/* smtp_path_args_free - release and zero *r. */
void smtp_path_args_free(struct smtp_path_args *r)
{
	for (size_t i = 0; i < r->n_params; i++) {
		free(r->params[i].keyword);
		free(r->params[i].value);
	}
	free(r->params);
	free(r->path.address);
	free(r->path.localpart);
	free(r->path.domain);
	memset(r, 0, sizeof(*r));
}

/* smtp_parse_helo - HELO/EHLO argument: one domain or address literal. */
int smtp_parse_helo(const char *args, const char **error_r)
{
	const char *end;
	bool utf8 = false;

	if (*args == '\0' || *args == ' ') {
		*error_r = "HELO/EHLO needs a domain";
		return -1;
	}
	if (!parse_domain(args, &end, &utf8)) {
		*error_r = "invalid domain";
		return -1;
	}
	while (*end == ' ')
		end++;
	if (*end != '\0') {
		*error_r = "invalid domain";
		return -1;
	}
	return 0;
}

/* smtp_parse_bdat - "chunk-size [LAST]" (RFC 3030 §2). */
int smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r, const char **error_r)
{
	const char *p = args;
	size_t n = 0;

	while (p[n] != '\0' && p[n] != ' ')
		n++;
	if (strnum_u64(p, n, UINT64_MAX / 2, size_r) < 0) {
		*error_r = "invalid chunk size";
		return -1;
	}
	p += n;
	while (*p == ' ')
		p++;
	*last_r = false;
	if (*p != '\0') {
		if (!ascii_ncaseeq(p, "LAST", 4)) {
			*error_r = "syntax: BDAT size [LAST]";
			return -1;
		}
		p += 4;
		while (*p == ' ')
			p++;
		if (*p != '\0') {
			*error_r = "syntax: BDAT size [LAST]";
			return -1;
		}
		*last_r = true;
	}
	return 0;
}

/* ---- DATA / BDAT stream ---- */

enum {
	DS_BOL,	  /* start of a line: after CRLF, or the very beginning */
	DS_TEXT,  /* inside a line */
	DS_CR,	  /* after a CR (already output) */
	DS_DOT,	  /* DOT mode: "." at the start of a line, not output yet */
	DS_DOTCR, /* DOT mode: ".\r" at the start of a line, neither output yet */
	DS_DONE,  /* DOT mode: terminator seen */
};

/* smtp_data_init - a fresh parser at the start of a message. */
void smtp_data_init(struct smtp_data_parser *p, enum smtp_data_mode mode, size_t max_line)
{
	memset(p, 0, sizeof(*p));
	p->mode = mode;
	p->state = DS_BOL;
	p->max_line = max_line;
}

/* data_count - add n octets to the current line and check the limit. */
static inline void data_count(struct smtp_data_parser *p, size_t n)
{
	p->line_len = n > SIZE_MAX - p->line_len ? SIZE_MAX : p->line_len + n;
	if (p->max_line != 0 && p->line_len > p->max_line)
		p->line_too_long = true;
}

/* data_hold - queue one output octet (emitted as the feed's budget allows). */
static inline void data_hold(struct smtp_data_parser *p, char c)
{
	if (p->n_held >= sizeof(p->held))
		log_panic("smtp_data: held output overflow");
	p->held[p->n_held++] = c;
}

/* data_text - an octet inside a line (or one that cannot start anything special). */
static inline void data_text(struct smtp_data_parser *p, char c)
{
	data_hold(p, c);
	if (c == '\r') {
		p->state = DS_CR;
	} else {
		if (c == '\n')
			p->bare_eol = true; /* LF without CR: not a line end */
		p->state = DS_TEXT;
	}
}

/* data_step - run one octet through the state machine; 1 when it ends the terminator. */
static int data_step(struct smtp_data_parser *p, char c)
{
	if (p->state == DS_DOTCR && c == '\n') {
		p->state = DS_DONE;
		return 1;
	}
	data_count(p, 1);
	switch (p->state) {
	case DS_BOL:
		if (c == '.' && p->mode == SMTP_DATA_DOT)
			p->state = DS_DOT;
		else
			data_text(p, c);
		break;
	case DS_TEXT:
		data_text(p, c);
		break;
	case DS_CR:
		if (c == '\n') {
			data_hold(p, c);
			p->lines++;
			p->line_len = 0;
			p->state = DS_BOL;
		} else {
			p->bare_eol = true; /* the CR before c was bare */
			data_text(p, c);
		}
		break;
	case DS_DOT:
		/* any "." at the start of a line not followed by CRLF is stuffing: drop it */
		if (c == '\r')
			p->state = DS_DOTCR;
		else
			data_text(p, c);
		break;
	case DS_DOTCR:
		/* ".\r" + not LF: the dot was stuffing and the CR is bare text */
		data_hold(p, '\r');
		p->bare_eol = true;
		data_text(p, c);
		break;
	default:
		log_panic("smtp_data: bad state %d", p->state);
	}
	return 0;
}

/* smtp_data_feed - see parser.h. Bytes go through a tiny queue (held) so that the output of
 * one feed never outgrows its input; see the header for why one byte may stay queued. */
int smtp_data_feed(struct smtp_data_parser *p, const char *in, size_t inlen, char *out,
		   size_t *outlen_r, size_t *consumed_r)
{
	size_t i = 0, o = 0;
	int done = 0;

	if (p->state == DS_DONE) {
		*outlen_r = 0;
		*consumed_r = 0;
		return 1;
	}
	while (i < inlen) {
		if (p->n_held == 0 && p->state == DS_TEXT) {
			/* fast path: copy the run up to the next CR or LF */
			size_t j = i;

			while (j < inlen && in[j] != '\r' && in[j] != '\n')
				j++;
			if (j > i) {
				if (out != NULL)
					memmove(out + o, in + i, j - i);
				o += j - i;
				data_count(p, j - i);
				i = j;
				continue;
			}
		}
		/* read in[i] before out[o] (o <= i) is written: in == out works */
		done = data_step(p, in[i++]);
		while (p->n_held > 0 && o < i) {
			if (out != NULL)
				out[o] = p->held[0];
			o++;
			p->held[0] = p->held[1];
			p->n_held--;
		}
		if (done) {
			/* the "." of the terminator emitted anything held */
			if (p->n_held != 0)
				log_panic("smtp_data: output held at the terminator");
			break;
		}
	}
	*outlen_r = o;
	*consumed_r = i;
	return done;
}

/* smtp_data_finish_raw - end of the last BDAT chunk. */
void smtp_data_finish_raw(struct smtp_data_parser *p)
{
	if (p->state == DS_CR)
		p->bare_eol = true;
	p->state = DS_BOL;
}

/* smtp_data_held - output bytes still owed by DOT mode (tests compare partial output). */
size_t smtp_data_held(const struct smtp_data_parser *p, char out[2])
{
	memcpy(out, p->held, p->n_held);
	return p->n_held;
}
