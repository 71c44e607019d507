/* dsn - compose delivery status notifications (RFC 3464, RFC 3461, RFC 3463) */
#include "outbound/dsn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

#define DSN_CHUNK 65536		/* the original is read in pieces of this size */
#define TEXT_WIDTH 76		/* human-readable part */
#define FIELD_WIDTH 78		/* preferred header line length (RFC 5322 2.1.1) */
#define WORD_MAX 900		/* longer runs without a space are split: lines stay < 998 */
#define NEEDLE_MAX 256
#define BOUNDARY_TRIES 8
#define HOST_MAX 255
#define ENVID_MAX 300
#define QUEUE_ID_MAX 128

static const char *const action_names[] = {
	[DSN_FAILED] = "failed",     [DSN_DELAYED] = "delayed",   [DSN_DELIVERED] = "delivered",
	[DSN_RELAYED] = "relayed",   [DSN_EXPANDED] = "expanded",
};

/* RFC 3463 subject.detail texts for the human-readable part when there is no diagnostic. */
static const struct {
	const char *code;
	const char *text;
} status_texts[] = {
	{ "0.0", "other or undefined status" },
	{ "1.0", "other address status" },
	{ "1.1", "bad destination mailbox address" },
	{ "1.2", "bad destination system address" },
	{ "1.3", "bad destination mailbox address syntax" },
	{ "1.4", "destination mailbox address ambiguous" },
	{ "1.6", "destination mailbox has moved" },
	{ "1.10", "recipient domain accepts no mail (null MX)" },
	{ "2.0", "other or undefined mailbox status" },
	{ "2.1", "mailbox disabled, not accepting messages" },
	{ "2.2", "mailbox full" },
	{ "2.3", "message length exceeds administrative limit" },
	{ "2.4", "mailing list expansion problem" },
	{ "3.0", "other or undefined mail system status" },
	{ "3.1", "mail system full" },
	{ "3.2", "system not accepting network messages" },
	{ "3.4", "message too big for system" },
	{ "4.0", "other or undefined network or routing status" },
	{ "4.1", "no answer from host" },
	{ "4.2", "bad connection" },
	{ "4.3", "directory server failure" },
	{ "4.4", "unable to route" },
	{ "4.6", "routing loop detected" },
	{ "4.7", "delivery time expired" },
	{ "5.0", "other or undefined protocol status" },
	{ "5.3", "too many recipients" },
	{ "6.0", "other or undefined media error" },
	{ "7.0", "other or undefined security status" },
	{ "7.1", "delivery not authorized, message refused" },
};

/* A sink receives the converted original piece by piece: 0 go on, 1 stop, -1 error. */
typedef int orig_sink(void *ctx, const char *p, size_t n, char **error_r);

/* Line end conversion state while the original is read. */
struct orig_state {
	bool at_bol;		/* at the start of a line */
	bool cr_pending;	/* a CR was read and not yet written: CRLF or a bare CR */
	bool cr_at_bol;		/* ... and it was the first octet of its line */
	bool done;		/* headers_only: the empty line was reached */
	bool eightbit;		/* an octet >= 0x80 was passed */
};

struct scan_ctx {
	const char *needle;
	size_t nlen;
	char *win;		/* the last nlen-1 octets, then the new piece */
	size_t tail;
	bool found;
};

/* clean_line - s made one printable US-ASCII line into out (outsz > 3): CR, LF, TAB become a
 * space, other controls go, 8-bit octets become '?', runs of spaces collapse, ends trimmed;
 * a longer text is cut and ends in "...". Returns out. */
static char *clean_line(char *out, size_t outsz, const char *s)
{
	size_t o = 0;
	bool space = false, cut = false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		unsigned char c = *p;
		if (c == '\r' || c == '\n' || c == '\t' || c == ' ') {
			space = true;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			continue;
		if (c >= 0x80)
			c = '?';
		if (o + (space && o > 0) + 1 > outsz - 1) {
			cut = true;
			break;
		}
		if (space && o > 0)
			out[o++] = ' ';
		space = false;
		out[o++] = (char)c;
	}
	if (cut) {
		o = outsz - 4;
		while (o > 0 && out[o - 1] == ' ')
			o--;
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* utf8_decode - length of the valid UTF-8 sequence at s (n octets left) with its code point
 * in *cp, or 0 (overlong forms, surrogates and values past U+10FFFF are invalid). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

/* utf8_clean - a valid UTF-8 string without control characters? */
static bool utf8_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_decode(p, n, &cp);
		if (len == 0 || cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
			return false;
		p += len;
		n -= len;
	}
	return true;
}

/* printable_ascii - only octets 0x20..0x7e? */
static bool printable_ascii(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p > 0x7e)
			return false;
	return true;
}

/* append_unit - add the n octets of one encoded unit to out if they fit whole. */
static bool append_unit(char *out, size_t outsz, size_t *o, const char *unit, size_t n)
{
	if (*o + n > outsz - 1)
		return false;
	memcpy(out + *o, unit, n);
	*o += n;
	out[*o] = '\0';
	return true;
}

/* address_value - "type; address" for a 7-bit DSN address field into out (outsz >= 64).
 * Printable ASCII passes as it is; valid UTF-8 becomes RFC 6533 "utf-8; " utf-8-addr-xtext;
 * anything else keeps its type and is xtext-encoded (RFC 3461 section 4). The address part is
 * cut (never inside an escape) at DSN_ADDRESS_MAX octets. */
static void address_value(char *out, size_t outsz, const char *type, size_t type_len,
			  const char *addr)
{
	char tbuf[33];
	size_t t = 0, o;
	for (size_t i = 0; i < type_len && t < sizeof(tbuf) - 1; i++) {
		char c = type[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.')
			tbuf[t++] = c;
	}
	tbuf[t] = '\0';
	if (t == 0)
		snprintf(tbuf, sizeof(tbuf), "unknown");

	size_t max = outsz - 1;
	if (max > DSN_ADDRESS_MAX + sizeof(tbuf) + 2)
		max = DSN_ADDRESS_MAX + sizeof(tbuf) + 2;
	const unsigned char *p = (const unsigned char *)addr;
	size_t n = strlen(addr);
	char unit[16];
	if (printable_ascii(addr)) {
		o = (size_t)snprintf(out, outsz, "%s; ", tbuf);
		for (; n > 0; p++, n--)
			if (!append_unit(out, max + 1, &o, (const char *)p, 1))
				break;
	} else if (utf8_clean(addr)) {
		o = (size_t)snprintf(out, outsz, "utf-8; ");
		while (n > 0) {
			uint32_t cp;
			size_t len = utf8_decode(p, n, &cp);
			int ul;
			if (cp > 0x20 && cp < 0x7f && cp != '+' && cp != '=' && cp != '\\')
				ul = snprintf(unit, sizeof(unit), "%c", (char)cp);
			else
				ul = snprintf(unit, sizeof(unit), "\\x{%02X}", (unsigned)cp);
			if (!append_unit(out, max + 1, &o, unit, (size_t)ul))
				break;
			p += len;
			n -= len;
		}
	} else {
		o = (size_t)snprintf(out, outsz, "%s; ", tbuf);
		for (; n > 0; p++, n--) {
			int ul;
			if (*p > 0x20 && *p < 0x7f && *p != '+' && *p != '=')
				ul = snprintf(unit, sizeof(unit), "%c", (char)*p);
			else
				ul = snprintf(unit, sizeof(unit), "+%02X", (unsigned)*p);
			if (!append_unit(out, max + 1, &o, unit, (size_t)ul))
				break;
		}
	}
}

/* display_address - addr for the To: field and the text part: valid UTF-8 stays (sets
 * *eightbit), controls and invalid octets become '?', cut at DSN_ADDRESS_MAX octets. */
static void display_address(char *out, size_t outsz, const char *addr, bool *eightbit)
{
	const unsigned char *p = (const unsigned char *)addr;
	size_t n = strlen(addr), o = 0;
	if (outsz > DSN_ADDRESS_MAX + 1)
		outsz = DSN_ADDRESS_MAX + 1;
	out[0] = '\0';
	while (n > 0) {
		uint32_t cp;
		size_t len = utf8_decode(p, n, &cp);
		bool ok = len > 0 && cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0);
		if (!ok)
			len = 1;
		if (!append_unit(out, outsz, &o, ok ? (const char *)p : "?", ok ? len : 1))
			break;
		if (ok && cp >= 0x80)
			*eightbit = true;
		p += len;
		n -= len;
	}
}

/* fold_words - append text word by word from column col; a word that would pass width starts
 * a new line with cont ("\r\n " or "\r\n    "). Runs without a space longer than WORD_MAX
 * are split so that no line can reach 998 octets. Spaces collapse. */
static void fold_words(buf *b, size_t col, const char *text, size_t width, const char *cont)
{
	size_t cont_col = strlen(cont) - 2;
	bool line_has_word = false;
	const char *p = text;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		size_t wlen = strcspn(p, " ");
		if (wlen > WORD_MAX)
			wlen = WORD_MAX;
		if (line_has_word && col + 1 + wlen > width) {
			buf_puts(b, cont);
			col = cont_col;
		} else if (line_has_word) {
			buf_putc(b, ' ');
			col++;
		}
		buf_append(b, p, wlen);
		col += wlen;
		p += wlen;
		line_has_word = true;
	}
}

/* put_field - "Name: value" CRLF, folded; value must be clean (no CR, LF or controls). */
static void put_field(buf *b, const char *name, const char *value)
{
	buf_puts(b, name);
	buf_puts(b, ": ");
	fold_words(b, strlen(name) + 2, value, FIELD_WIDTH, "\r\n ");
	buf_puts(b, "\r\n");
}

/* put_para - a paragraph of the text part, wrapped at TEXT_WIDTH, then an empty line. */
static void put_para(buf *b, const char *text)
{
	fold_words(b, 0, text, TEXT_WIDTH, "\r\n");
	buf_puts(b, "\r\n\r\n");
}

/* format_date - RFC 5322 date-time with a numeric zone, in local time, English names. */
static void format_date(char *out, size_t outsz, int64_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;
	if (localtime_r(&tt, &tm) == NULL && gmtime_r(&tt, &tm) == NULL) {
		snprintf(out, outsz, "Thu, 1 Jan 1970 00:00:00 +0000");
		return;
	}
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(out, outsz, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld", days[tm.tm_wday % 7],
		 tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, sign, off / 60 % 100, off % 60);
}

/* format_duration - "45 minutes", "3 hours", "5 days" for a positive number of seconds. */
static void format_duration(char *out, size_t outsz, int64_t secs)
{
	long long v;
	const char *unit;
	if (secs < 2 * 3600)
		v = secs / 60, unit = "minute";
	else if (secs < 2 * 86400)
		v = secs / 3600, unit = "hour";
	else
		v = secs / 86400, unit = "day";
	snprintf(out, outsz, "%lld %s%s", v, unit, v == 1 ? "" : "s");
}

/* random_hex - 2*n lowercase hex digits (n <= 32) from getrandom(2), or from the clock, pid
 * and a counter mixed by splitmix64 when the kernel cannot give any. */
static void random_hex(char *out, size_t n)
{
	static uint64_t counter;
	unsigned char rnd[32];
	if (n > sizeof(rnd))
		n = sizeof(rnd);
	if (getrandom(rnd, n, GRND_NONBLOCK) != (ssize_t)n) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		x ^= (uint64_t)getpid() << 32 ^ ++counter;
		for (size_t i = 0; i < n; i++) {
			uint64_t z = (x += 0x9e3779b97f4a7c15u);
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
			rnd[i] = (unsigned char)(z ^ (z >> 31));
		}
	}
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", rnd[i]);
	out[2 * n] = '\0';
}

/* status_ok - RFC 3464 status-code: class 2, 4 or 5, then two 1-3 digit fields without
 * leading zeros. */
static bool status_ok(const char *s)
{
	if (s == NULL || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.')
		return false;
	s += 2;
	for (int field = 0; field < 2; field++) {
		size_t n = strspn(s, "0123456789");
		if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
			return false;
		s += n;
		if (field == 0 && *s++ != '.')
			return false;
	}
	return *s == '\0';
}

/* rcpt_status - the recipient's status, or the generic one for its action. */
static const char *rcpt_status(const struct dsn_rcpt *rc)
{
	if (status_ok(rc->status))
		return rc->status;
	switch (rc->action) {
	case DSN_FAILED:
		return "5.0.0";
	case DSN_DELAYED:
		return "4.0.0";
	default:
		return "2.0.0";
	}
}

/* status_text - the RFC 3463 meaning of "C.S.D" (its "S.D" part), or a generic one. */
static const char *status_text(const char *status)
{
	const char *sd = status + 2;
	for (size_t i = 0; i < sizeof(status_texts) / sizeof(status_texts[0]); i++)
		if (strcmp(status_texts[i].code, sd) == 0)
			return status_texts[i].text;
	return status[0] == '2' ? "success" : status[0] == '4' ? "temporary failure"
							      : "permanent failure";
}

/* is_smtp_reply - does the cleaned diagnostic start with a three-digit SMTP reply code? */
static bool is_smtp_reply(const char *d)
{
	return d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[2] >= '0' &&
	       d[2] <= '9' && (d[3] == '\0' || d[3] == ' ' || d[3] == '-');
}

/* clean_host - a host name for "dns;" fields and MAILER-DAEMON@host: printable ASCII without
 * spaces, brackets or '@'; NULL when s has none of it. */
static const char *clean_host(char *out, size_t outsz, const char *s)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && o < outsz - 1; p++)
		if (*p > 0x20 && *p < 0x7f && !strchr("<>@()\\\",;", *p))
			out[o++] = (char)*p;
	out[o] = '\0';
	return o > 0 ? out : NULL;
}

/* rcpt_explanation - the human-readable reason for one recipient into out. */
static void rcpt_explanation(buf *out, const struct dsn_rcpt *rc)
{
	char diag[DSN_DIAGNOSTIC_MAX + 1], host[HOST_MAX + 1];
	const char *status = rcpt_status(rc);
	bool problem = rc->action == DSN_FAILED || rc->action == DSN_DELAYED;
	const char *d = rc->diagnostic ? clean_line(diag, sizeof(diag), rc->diagnostic) : "";
	const char *h = rc->remote_mta ? clean_host(host, sizeof(host), rc->remote_mta) : NULL;
	if (rc->note != NULL) {
		char note[DSN_DIAGNOSTIC_MAX + 1];
		buf_puts(out, clean_line(note, sizeof(note), rc->note));
		if (d[0] == '\0')
			return;
		buf_puts(out, "; the last error was: ");
	}
	/* "host said" only for a reply from that host, not for our own error text. */
	if (d[0] != '\0' && h != NULL && is_smtp_reply(d))
		buf_printf(out, problem ? "host %s said: %s" : "delivery via %s: %s", h, d);
	else if (d[0] != '\0')
		buf_puts(out, d);
	else if (rc->action == DSN_FAILED)
		buf_printf(out, "delivery failed (%s: %s)", status, status_text(status));
	else if (rc->action == DSN_DELAYED)
		buf_printf(out, "delivery temporarily suspended (%s: %s)", status,
			   status_text(status));
	else if (rc->action == DSN_DELIVERED)
		buf_puts(out, "delivered to mailbox");
	else if (rc->action == DSN_RELAYED)
		buf_puts(out, "relayed to a system that does not send delivery notifications");
	else
		buf_puts(out, "delivered to an alias and forwarded to its members");
}

/* text_part - part 1: the explanation a person reads, in the manner of Postfix's bounces.
 * Sets *eightbit when an address is shown in UTF-8. */
static void text_part(buf *b, const struct dsn_report *r, const char *host, int attach,
		      int64_t now, bool *eightbit)
{
	size_t n_failed = 0, n_delayed = 0, n_ok = 0;
	int64_t retry_until = 0;
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		if (rc->action == DSN_FAILED)
			n_failed++;
		else if (rc->action == DSN_DELAYED)
			n_delayed++;
		else
			n_ok++;
		if (rc->action == DSN_DELAYED && rc->will_retry_until > retry_until)
			retry_until = rc->will_retry_until;
	}
	buf_printf(b, "This is the mail system at host %s.\r\n\r\n", host);
	if (n_failed > 0) {
		buf para;
		buf_init(&para, 0);
		buf_puts(&para, "I'm sorry to have to inform you that your message could not be "
				"delivered to one or more recipients.");
		if (attach == 2)
			buf_puts(&para, " It's attached below.");
		else if (attach == 1)
			buf_puts(&para, " Its header is attached below.");
		put_para(b, buf_cstr(&para));
		buf_free(&para);
	}
	if (n_delayed > 0) {
		char dur[64], date[64];
		buf para;
		buf_init(&para, 0);
		if (n_failed == 0)
			buf_puts(b, "####################################################################\r\n"
				    "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
				    "####################################################################\r\n"
				    "\r\n");
		if (r->arrival > 0 && now > r->arrival) {
			format_duration(dur, sizeof(dur), now - r->arrival);
			buf_printf(&para, "Your message could not be delivered for %s%s.", dur,
				   n_failed + n_ok > 0 ? " to the recipients marked as delayed below"
						       : "");
		} else {
			buf_printf(&para, "Delivery of your message has been delayed%s.",
				   n_failed + n_ok > 0 ? " for the recipients marked as delayed below"
						       : "");
		}
		if (retry_until > 0) {
			format_date(date, sizeof(date), retry_until);
			buf_printf(&para, " It will be retried until %s.", date);
		} else {
			buf_puts(&para, " It is still being retried.");
		}
		put_para(b, buf_cstr(&para));
		buf_free(&para);
	}
	if (n_ok > 0)
		put_para(b, "Your message was successfully delivered to the destination(s) listed "
			    "below. If the message was delivered to a mailbox you will receive no "
			    "further notifications. Otherwise you may still receive notifications "
			    "of mail delivery errors from other systems.");
	put_para(b, "For further assistance, please send mail to postmaster.");
	if (n_failed + n_delayed > 0)
		put_para(b, "If you do so, please include this problem report. You can delete "
			    "your own text from the attached returned message.");
	buf_puts(b, "                   The mail system\r\n");

	/* The recipients, grouped by what happened, headed only when the report is mixed. */
	static const struct {
		const char *heading;
		int kind;
	} groups[] = {
		{ "Delivery failed permanently (no more attempts will be made):", 0 },
		{ "Delivery delayed (still being retried):", 1 },
		{ "Delivered:", 2 },
	};
	bool mixed = (n_failed > 0) + (n_delayed > 0) + (n_ok > 0) > 1;
	for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]); g++) {
		bool headed = false;
		for (size_t i = 0; i < r->n_rcpts; i++) {
			const struct dsn_rcpt *rc = &r->rcpts[i];
			int kind = rc->action == DSN_FAILED ? 0 : rc->action == DSN_DELAYED ? 1 : 2;
			if (kind != groups[g].kind)
				continue;
			if (mixed && !headed) {
				buf_printf(b, "\r\n%s\r\n", groups[g].heading);
				headed = true;
			}
			char addr[DSN_ADDRESS_MAX + 1];
			buf line;
			buf_init(&line, 0);
			display_address(addr, sizeof(addr), rc->final_rcpt, eightbit);
			buf_printf(&line, "<%s>: ", addr);
			rcpt_explanation(&line, rc);
			buf_puts(b, "\r\n");
			fold_words(b, 0, buf_cstr(&line), TEXT_WIDTH, "\r\n    ");
			buf_puts(b, "\r\n");
			buf_free(&line);
		}
	}
}

/* status_part - part 2: the message/delivery-status fields (RFC 3464 section 2), 7-bit. */
static void status_part(buf *b, const struct dsn_report *r, const char *host)
{
	char date[64], val[DSN_DIAGNOSTIC_MAX + 64];
	if (r->envid != NULL && r->envid[0] != '\0') {
		/* RFC 3461 6.3(a): the decoded ENVID; an octet it may not hold is xtext-encoded. */
		size_t o = 0;
		for (const unsigned char *p = (const unsigned char *)r->envid;
		     *p != '\0' && o + 3 < ENVID_MAX; p++) {
			if (*p > 0x20 && *p < 0x7f)
				val[o++] = (char)*p;
			else
				o += (size_t)snprintf(val + o, sizeof(val) - o, "+%02X", *p);
		}
		val[o] = '\0';
		put_field(b, "Original-Envelope-Id", val);
	}
	snprintf(val, sizeof(val), "dns; %s", host);
	put_field(b, "Reporting-MTA", val);
	if (r->arrival > 0) {
		format_date(date, sizeof(date), r->arrival);
		put_field(b, "Arrival-Date", date);
	}
	if (r->queue_id != NULL && r->queue_id[0] != '\0') {
		char qid[QUEUE_ID_MAX + 1];
		put_field(b, "X-Queue-ID", clean_line(qid, sizeof(qid), r->queue_id));
	}
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		buf_puts(b, "\r\n");
		if (rc->orig_rcpt != NULL && rc->orig_rcpt[0] != '\0') {
			const char *semi = strchr(rc->orig_rcpt, ';');
			if (semi != NULL)
				address_value(val, sizeof(val), rc->orig_rcpt,
					      (size_t)(semi - rc->orig_rcpt), semi + 1);
			else
				address_value(val, sizeof(val), "rfc822", 6, rc->orig_rcpt);
			put_field(b, "Original-Recipient", val);
		}
		address_value(val, sizeof(val), "rfc822", 6, rc->final_rcpt);
		put_field(b, "Final-Recipient", val);
		put_field(b, "Action", action_names[rc->action]);
		put_field(b, "Status", rcpt_status(rc));
		char mta[HOST_MAX + 1];
		if (rc->remote_mta != NULL && clean_host(mta, sizeof(mta), rc->remote_mta)) {
			snprintf(val, sizeof(val), "dns; %s", mta);
			put_field(b, "Remote-MTA", val);
		}
		if (rc->diagnostic != NULL) {
			char diag[DSN_DIAGNOSTIC_MAX + 1];
			clean_line(diag, sizeof(diag), rc->diagnostic);
			if (diag[0] != '\0') {
				snprintf(val, sizeof(val), "%s; %s",
					 is_smtp_reply(diag) ? "smtp" : "X-Tern", diag);
				put_field(b, "Diagnostic-Code", val);
			}
		}
		if (rc->last_attempt > 0) {
			format_date(date, sizeof(date), rc->last_attempt);
			put_field(b, "Last-Attempt-Date", date);
		}
		if (rc->action == DSN_DELAYED && rc->will_retry_until > 0) {
			format_date(date, sizeof(date), rc->will_retry_until);
			put_field(b, "Will-Retry-Until", date);
		}
	}
}

/* convert_chunk - pass in[0..n) to out with bare LF made CRLF (CRLF and bare CR stay), stopping
 * at the empty line when headers_only. out must hold 2 * n octets. Returns the length. */
static size_t convert_chunk(struct orig_state *st, bool headers_only, const unsigned char *in,
			    size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n && !st->done; i++) {
		unsigned char c = in[i];
		if (st->cr_pending) {
			st->cr_pending = false;
			if (c == '\n') {
				if (headers_only && st->cr_at_bol) {
					st->done = true;
					break;
				}
				out[o++] = '\r';
				out[o++] = '\n';
				st->at_bol = true;
				continue;
			}
			out[o++] = '\r';
			st->at_bol = false;
		}
		if (c == '\r') {
			st->cr_pending = true;
			st->cr_at_bol = st->at_bol;
		} else if (c == '\n') {
			if (headers_only && st->at_bol) {
				st->done = true;
				break;
			}
			out[o++] = '\r';
			out[o++] = '\n';
			st->at_bol = true;
		} else {
			if (c >= 0x80)
				st->eightbit = true;
			out[o++] = (char)c;
			st->at_bol = false;
		}
	}
	return o;
}

/* walk_original - read the included part of the original (pread, DSN_CHUNK at a time),
 * convert its line ends and hand it to sink; the result always ends in CRLF unless empty.
 * 0 (with *eightbit_r, may be NULL), or -1 with *error_r. */
static int walk_original(int fd, uint64_t offset, uint64_t size, bool headers_only,
			 orig_sink *sink, void *ctx, bool *eightbit_r, char **error_r)
{
	struct orig_state st = { .at_bol = true };
	unsigned char *in;
	char *out;
	uint64_t pos = 0;
	int ret = -1, s = 0;

	if (offset > (uint64_t)INT64_MAX || size > (uint64_t)INT64_MAX - offset) {
		*error_r = xasprintf("original offset %llu + size %llu out of range",
				     (unsigned long long)offset, (unsigned long long)size);
		return -1;
	}
	in = xmalloc(DSN_CHUNK);
	out = xmalloc(2 * DSN_CHUNK + 4);
	while (pos < size && !st.done && s == 0) {
		size_t want = size - pos < DSN_CHUNK ? (size_t)(size - pos) : DSN_CHUNK;
		ssize_t n = pread(fd, in, want, (off_t)(offset + pos));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*error_r = xasprintf("read original: %s", strerror(errno));
			goto out;
		}
		if (n == 0) {
			*error_r = xasprintf("original truncated: %llu of %llu bytes at offset %llu",
					     (unsigned long long)pos, (unsigned long long)size,
					     (unsigned long long)offset);
			goto out;
		}
		pos += (uint64_t)n;
		size_t olen = convert_chunk(&st, headers_only, in, (size_t)n, out);
		if (olen > 0 && (s = sink(ctx, out, olen, error_r)) < 0)
			goto out;
	}
	if (s == 0) {
		/* A CR at the very end ends its line; the last line gets its CRLF. */
		size_t olen = 0;
		if (st.cr_pending && !(headers_only && st.cr_at_bol && !st.done)) {
			out[olen++] = '\r';
			out[olen++] = '\n';
			st.at_bol = true;
		}
		if (!st.at_bol) {
			out[olen++] = '\r';
			out[olen++] = '\n';
		}
		if (olen > 0 && sink(ctx, out, olen, error_r) < 0)
			goto out;
	}
	if (eightbit_r != NULL)
		*eightbit_r = st.eightbit;
	ret = 0;
out:
	free(in);
	free(out);
	return ret;
}

/* scan_sink - look for the needle, also across pieces; stop once found. */
static int scan_sink(void *vctx, const char *p, size_t n, char **error_r)
{
	struct scan_ctx *sc = vctx;
	(void)error_r;
	memcpy(sc->win + sc->tail, p, n);
	size_t len = sc->tail + n;
	if (memmem(sc->win, len, sc->needle, sc->nlen) != NULL) {
		sc->found = true;
		return 1;
	}
	size_t keep = sc->nlen - 1 < len ? sc->nlen - 1 : len;
	memmove(sc->win, sc->win + len - keep, keep);
	sc->tail = keep;
	return 0;
}

/* write_sink - copy a piece to the output fd. */
static int write_sink(void *vctx, const char *p, size_t n, char **error_r)
{
	const int *fd = vctx;
	if (fs_write_all(*fd, p, n) < 0) {
		*error_r = xasprintf("write DSN: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* scan_original - dsn_original_contains, also telling whether the part is 8-bit. */
static int scan_original(int orig_fd, uint64_t orig_offset, uint64_t orig_size,
			 bool headers_only, const char *needle, bool *found_r, bool *eightbit_r,
			 char **error_r)
{
	struct scan_ctx sc = { .needle = needle, .nlen = strlen(needle) };
	if (sc.nlen == 0 || sc.nlen > NEEDLE_MAX) {
		*error_r = xasprintf("needle length %zu not in 1..%d", sc.nlen, NEEDLE_MAX);
		return -1;
	}
	sc.win = xmalloc(2 * DSN_CHUNK + 4 + NEEDLE_MAX);
	int ret = walk_original(orig_fd, orig_offset, orig_size, headers_only, scan_sink, &sc,
				eightbit_r, error_r);
	free(sc.win);
	if (ret == 0)
		*found_r = sc.found;
	return ret;
}

/* dsn_original_contains - scan_original without the 8-bit answer (see dsn.h). */
int dsn_original_contains(int orig_fd, uint64_t orig_offset, uint64_t orig_size,
			  bool headers_only, const char *needle, bool *found_r, char **error_r)
{
	return scan_original(orig_fd, orig_offset, orig_size, headers_only, needle, found_r, NULL,
			     error_r);
}

/* choose_boundary - a random boundary found neither in the first two parts nor in the
 * included original; also says whether that original is 8-bit. 0, or -1 with *error_r. */
static int choose_boundary(char *out, size_t outsz, const buf *text, const buf *status,
			   int orig_fd, uint64_t orig_offset, uint64_t orig_size,
			   bool headers_only, bool *eightbit_r, char **error_r)
{
	*eightbit_r = false;
	for (int attempt = 0; attempt < BOUNDARY_TRIES; attempt++) {
		char hex[33];
		bool found = false;
		random_hex(hex, 16);
		snprintf(out, outsz, "=_tern_dsn_%s", hex);
		size_t blen = strlen(out);
		if (memmem(text->data, text->len, out, blen) != NULL ||
		    memmem(status->data, status->len, out, blen) != NULL)
			continue;
		if (orig_fd >= 0 && scan_original(orig_fd, orig_offset, orig_size, headers_only,
						  out, &found, eightbit_r, error_r) < 0)
			return -1;
		if (!found)
			return 0;
	}
	*error_r = xstrdup("no MIME boundary absent from the original could be found");
	return -1;
}

/* dsn_compose - build parts 1 and 2 in memory, choose the boundary, write the header and
 * parts, then stream the original (see dsn.h). */
int dsn_compose(int out_fd, const struct dsn_report *r, int orig_fd, uint64_t orig_offset,
		uint64_t orig_size, char **error_r)
{
	char host[HOST_MAX + 1], boundary[64], date[64], hex[33], addr[DSN_ADDRESS_MAX + 1];
	bool any_failed = false, any_delayed = false, text_8bit = false, orig_8bit = false;
	bool to_8bit = false;
	buf text, status, out;
	int ret = -1;

	if (r == NULL || r->rcpts == NULL || r->n_rcpts == 0) {
		*error_r = xstrdup("DSN without recipients");
		return -1;
	}
	if (r->reporting_mta == NULL || clean_host(host, sizeof(host), r->reporting_mta) == NULL) {
		*error_r = xstrdup("DSN without a reporting MTA host name");
		return -1;
	}
	if (r->envelope_sender == NULL || r->envelope_sender[0] == '\0') {
		*error_r = xstrdup("no DSN is sent to the null sender");
		return -1;
	}
	for (size_t i = 0; i < r->n_rcpts; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		if (rc->final_rcpt == NULL || rc->final_rcpt[0] == '\0' ||
		    (unsigned)rc->action > DSN_EXPANDED) {
			*error_r = xasprintf("DSN recipient %zu without address or valid action", i);
			return -1;
		}
		any_failed |= rc->action == DSN_FAILED;
		any_delayed |= rc->action == DSN_DELAYED;
	}
	/* RFC 3461 6.2: the whole message only comes back with a failure. */
	bool headers_only = !(r->return_full && any_failed);
	int attach = orig_fd < 0 ? 0 : headers_only ? 1 : 2;
	int64_t now = (int64_t)time(NULL);

	buf_init(&text, 0);
	buf_init(&status, 0);
	buf_init(&out, 0);
	text_part(&text, r, host, attach, now, &text_8bit);
	status_part(&status, r, host);
	if (choose_boundary(boundary, sizeof(boundary), &text, &status, orig_fd, orig_offset,
			    orig_size, headers_only, &orig_8bit, error_r) < 0)
		goto out;
	/* RFC 6533: a report on a message with UTF-8 in its header or addresses uses the
	 * global types, which may carry UTF-8 (mail readers show the returned header right) */
	bool global = !printable_ascii(r->envelope_sender);
	for (size_t i = 0; i < r->n_rcpts; i++)
		global |= !printable_ascii(r->rcpts[i].final_rcpt) ||
			  (r->rcpts[i].orig_rcpt != NULL && !printable_ascii(r->rcpts[i].orig_rcpt));
	if (attach == 1) {
		global |= orig_8bit;
	} else if (attach == 2 && orig_8bit && !global) {
		bool found, header_8bit = false;
		/* the boundary does not occur: the scan reads the whole header */
		if (scan_original(orig_fd, orig_offset, orig_size, true, boundary, &found,
				  &header_8bit, error_r) < 0)
			goto out;
		global = header_8bit;
	}

	/* The message header. */
	buf_printf(&out, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n", host);
	display_address(addr, sizeof(addr), r->envelope_sender, &to_8bit);
	buf_puts(&out, "To: <");
	buf_puts(&out, addr);
	buf_puts(&out, ">\r\n");
	put_field(&out, "Subject",
		  any_failed    ? "Undelivered Mail Returned to Sender"
		  : any_delayed ? "Delayed Mail (still being retried)"
				: "Successful Mail Delivery Report");
	format_date(date, sizeof(date), now);
	put_field(&out, "Date", date);
	random_hex(hex, 12);
	buf_printf(&out, "Message-ID: <%lld.%s@%s>\r\n", (long long)now, hex, host);
	buf_puts(&out, "Auto-Submitted: auto-replied\r\n"
		       "MIME-Version: 1.0\r\n"
		       "Content-Type: multipart/report; report-type=delivery-status;\r\n");
	buf_printf(&out, " boundary=\"%s\"\r\n", boundary);
	if (text_8bit || orig_8bit)
		buf_puts(&out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(&out, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	/* Part 1: the explanation. */
	buf_printf(&out, "--%s\r\n", boundary);
	buf_puts(&out, "Content-Description: Notification\r\n");
	buf_printf(&out, "Content-Type: text/plain; charset=%s\r\n",
		   text_8bit ? "utf-8" : "us-ascii");
	if (text_8bit)
		buf_puts(&out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_puts(&out, "\r\n");
	buf_append(&out, text.data, text.len);

	/* Part 2: the delivery status. */
	buf_printf(&out, "--%s\r\n", boundary);
	buf_printf(&out, "Content-Description: Delivery report\r\n"
			 "Content-Type: message/%sdelivery-status\r\n\r\n", global ? "global-" : "");
	buf_append(&out, status.data, status.len);

	/* Part 3: the original or its header. */
	if (attach > 0) {
		buf_printf(&out, "--%s\r\n", boundary);
		buf_printf(&out, "Content-Description: %s%s\r\n",
			   any_failed ? "Undelivered Message" : "Message",
			   headers_only ? " Headers" : "");
		buf_printf(&out, "Content-Type: %s\r\n",
			   headers_only ? (global ? "message/global-headers" : "text/rfc822-headers")
					: (global ? "message/global" : "message/rfc822"));
		if (orig_8bit)
			buf_puts(&out, "Content-Transfer-Encoding: 8bit\r\n");
		buf_puts(&out, "\r\n");
	}
	if (fs_write_all(out_fd, out.data, out.len) < 0) {
		*error_r = xasprintf("write DSN: %s", strerror(errno));
		goto out;
	}
	if (attach > 0 && walk_original(orig_fd, orig_offset, orig_size, headers_only,
					write_sink, &out_fd, NULL, error_r) < 0)
		goto out;
	buf_reset(&out);
	buf_printf(&out, "--%s--\r\n", boundary);
	if (fs_write_all(out_fd, out.data, out.len) < 0) {
		*error_r = xasprintf("write DSN: %s", strerror(errno));
		goto out;
	}
	ret = 0;
out:
	buf_free(&text);
	buf_free(&status);
	buf_free(&out);
	return ret;
}
