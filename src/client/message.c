/* message - render a fetched message for `tern read` */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "client/filename.h"
#include "client/html.h"
#include "client/message.h"
#include "lib/fs.h"
#include "lib/utf8.h"
#include "lib/xmalloc.h"
#include "mime/mime.h"

/* header_raw - the unfolded value of the first field name in the header block, or false */
static bool header_raw(const char *hdr, size_t len, const char *name, buf *out)
{
	struct mime_headers h;
	const char *err;
	mime_headers_init(&h);
	mime_headers_parse(&h, hdr, len, true, NULL, &err);
	int i = mime_headers_find(&h, hdr, name, 0);
	if (i >= 0) {
		const struct mime_header_field *f = &h.fields[i];
		mime_header_unfold(hdr + f->value_offset, f->value_len, out);
		buf_append(out, "", 0);
	}
	mime_headers_free(&h);
	return i >= 0;
}

/* header_decoded - the field's value with RFC 2047 words decoded, as a new string */
static char *header_decoded(const char *hdr, size_t len, const char *name)
{
	buf raw, dec;
	buf_init(&raw, 0);
	buf_init(&dec, 0);
	if (header_raw(hdr, len, name, &raw))
		mime_encword_decode(raw.data, raw.len, &dec);
	buf_append(&dec, "", 0);
	buf_free(&raw);
	return dec.data;
}

static char *sender_of(const char *hdr, size_t len)
{
	buf raw, dec;
	buf_init(&raw, 0);
	buf_init(&dec, 0);
	if (header_raw(hdr, len, "From", &raw)) {
		struct mime_address *list = NULL;
		unsigned n = 0;
		mime_address_list_parse(raw.data, raw.len, 0, &list, &n);
		for (unsigned i = 0; i < n; i++) {
			if (list[i].kind != MIME_ADDR_MAILBOX)
				continue;
			if (list[i].name && list[i].name[0])
				mime_encword_decode(list[i].name, strlen(list[i].name), &dec);
			else if (list[i].host)
				buf_printf(&dec, "%s@%s", list[i].mailbox, list[i].host);
			else
				buf_puts(&dec, list[i].mailbox);
			break;
		}
		mime_address_list_free(&list, n);
		if (dec.len == 0)
			mime_encword_decode(raw.data, raw.len, &dec);
	}
	buf_append(&dec, "", 0);
	buf_free(&raw);
	return dec.data;
}

/* one_line - CR, LF and TAB become spaces: a summary is one tab-separated line, and a
 * decoded word ("=?utf-8?q?a=0Ab?=") must not start a line of its own */
static char *one_line(char *s)
{
	for (char *p = s; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n' || *p == '\t')
			*p = ' ';
	return s;
}

void msg_summarize(const char *hdr, size_t len, struct msg_summary *s)
{
	buf raw;
	buf_init(&raw, 0);
	time_t t;
	if (header_raw(hdr, len, "Date", &raw) && mime_date_parse(raw.data, raw.len, &t, NULL) == 0) {
		struct tm tm;
		char out[32];
		localtime_r(&t, &tm);
		strftime(out, sizeof(out), "%Y-%m-%d %H:%M", &tm);
		s->date = xstrdup(out);
	} else {
		s->date = xstrdup(raw.data ? raw.data : "");
	}
	buf_free(&raw);
	one_line(s->date);
	s->from = one_line(sender_of(hdr, len));
	s->subject = one_line(header_decoded(hdr, len, "Subject"));
}

void msg_summary_free(struct msg_summary *s)
{
	free(s->date);
	free(s->from);
	free(s->subject);
	memset(s, 0, sizeof(*s));
}

void msg_print_clean(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r')
			continue;
		if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
			c = '?';
		/* C1 controls act as escapes on some terminals: in UTF-8 (0xc2 0x80..0x9f), and
		 * as single bytes 0x80..0x9f on terminals that read 8-bit (0x9b is CSI) */
		if (c >= 0x80) {
			uint32_t cp = 0;
			size_t l = utf8_decode((const unsigned char *)s + i, len - i, &cp);
			if (l == 0) {
				putc(c < 0xa0 ? '?' : c, f);
			} else if (cp < 0xa0) {
				putc('?', f);
				i += l - 1;
			} else {
				fwrite(s + i, 1, l, f);
				i += l - 1;
			}
			continue;
		}
		putc(c, f);
	}
}

/* ---- parts ---------------------------------------------------------------------------- */

/* inside_message - is part i within an attached message (below a message/rfc822)? */
static bool inside_message(const struct mime_tree *t, uint32_t i)
{
	for (uint32_t p = t->parts[i].parent; p != MIME_NO_PART; p = t->parts[p].parent)
		if (t->parts[p].flags & MIME_PART_MESSAGE)
			return true;
	return false;
}

static const char *part_filename(const struct mime_part *p)
{
	const char *n = mime_param_get(p->disp_params, p->ndisp_params, "filename");
	if (n == NULL || !n[0])
		n = mime_part_param(p, "name");
	return n && n[0] ? n : NULL;
}

static bool is_attachment(const struct mime_tree *t, uint32_t i)
{
	const struct mime_part *p = &t->parts[i];
	if (p->flags & MIME_PART_MULTIPART || inside_message(t, i) || i == 0)
		return false;
	return part_filename(p) != NULL ||
	       (p->disposition && !strcmp(p->disposition, "attachment"));
}

/* part_decode - the part's body with its transfer encoding undone */
static void part_decode(const char *data, const struct mime_part *p, buf *out)
{
	const char *b = data + p->body_offset;
	size_t n = (size_t)p->body_size;
	if (p->encoding && !strcmp(p->encoding, "base64"))
		mime_base64_decode(b, n, out);
	else if (p->encoding && !strcmp(p->encoding, "quoted-printable"))
		mime_qp_decode(b, n, false, out);
	else
		buf_append(out, b, n);
}

/* body_part - the text to show: the first inline text/plain, else the first text/html */
static uint32_t body_part(const struct mime_tree *t, bool *html_r)
{
	uint32_t html = MIME_NO_PART;
	for (uint32_t i = 0; i < t->count; i++) {
		const struct mime_part *p = &t->parts[i];
		if (p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE) || inside_message(t, i) ||
		    strcmp(p->type, "text") != 0 || is_attachment(t, i))
			continue;
		if (!strcmp(p->subtype, "plain")) {
			*html_r = false;
			return i;
		}
		if (!strcmp(p->subtype, "html") && html == MIME_NO_PART)
			html = i;
	}
	*html_r = html != MIME_NO_PART;
	return html;
}

void msg_show(const char *data, size_t len, FILE *f)
{
	struct mime_tree *t = mime_tree_parse(data, len, NULL);
	size_t hlen = (size_t)t->parts[0].header_size;
	static const char *const fields[] = { "From", "To", "Cc", "Date", "Subject" };
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
		buf raw;
		buf_init(&raw, 0);
		if (header_raw(data, hlen, fields[k], &raw)) {
			/* one line: a decoded line end must not fake a field of its own */
			char *v = one_line(header_decoded(data, hlen, fields[k]));
			fprintf(f, "%s: ", fields[k]);
			msg_print_clean(f, v, strlen(v));
			putc('\n', f);
			free(v);
		}
		buf_free(&raw);
	}
	putc('\n', f);

	bool html;
	uint32_t bp = body_part(t, &html);
	if (bp != MIME_NO_PART) {
		const struct mime_part *p = &t->parts[bp];
		buf dec, utf8;
		buf_init(&dec, 0);
		buf_init(&utf8, 0);
		part_decode(data, p, &dec);
		const char *cs = mime_part_param(p, "charset");
		if (cs == NULL || mime_charset_to_utf8(cs, dec.data ? dec.data : "", dec.len,
						       &utf8) != 0) {
			buf_reset(&utf8);
			mime_utf8_sanitize(dec.data ? dec.data : "", dec.len, &utf8);
		}
		if (html) {
			buf text;
			buf_init(&text, 0);
			html_to_text(utf8.data ? utf8.data : "", utf8.len, &text);
			msg_print_clean(f, text.data ? text.data : "", text.len);
			buf_free(&text);
		} else {
			msg_print_clean(f, utf8.data ? utf8.data : "", utf8.len);
			if (utf8.len > 0 && utf8.data[utf8.len - 1] != '\n')
				putc('\n', f);
		}
		buf_free(&dec);
		buf_free(&utf8);
	} else {
		fputs("(no text part)\n", f);
	}

	unsigned k = 0;
	for (uint32_t i = 0; i < t->count; i++) {
		if (!is_attachment(t, i))
			continue;
		const struct mime_part *p = &t->parts[i];
		buf dec;
		buf_init(&dec, 0);
		part_decode(data, p, &dec);
		if (k++ == 0)
			fputs("\nAttachments:\n", f);
		const char *name = part_filename(p);
		fprintf(f, "  %u. ", k);
		if (name)
			msg_print_clean(f, name, strlen(name));
		else
			fputs("(no name)", f);
		fprintf(f, "  %s/%s  %zu bytes\n", p->type, p->subtype, dec.len);
		buf_free(&dec);
	}
	mime_tree_free(&t);
}

int msg_save(const char *data, size_t len, const char *dir, FILE *f, unsigned *count_r,
	     char **error_r)
{
	*count_r = 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		*error_r = xasprintf("%s: cannot create: %s", dir, strerror(errno));
		return EX_CANTCREAT;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		*error_r = xasprintf("%s: %s", dir, strerror(errno));
		return EX_CANTCREAT;
	}
	struct mime_tree *t = mime_tree_parse(data, len, NULL);
	int r = 0;
	unsigned k = 0;
	for (uint32_t i = 0; i < t->count && r == 0; i++) {
		if (!is_attachment(t, i))
			continue;
		const struct mime_part *p = &t->parts[i];
		k++;
		char fallback[32];
		snprintf(fallback, sizeof(fallback), "attachment-%u", k);
		const char *name = part_filename(p);
		buf safe, dec;
		buf_init(&safe, 0);
		buf_init(&dec, 0);
		filename_sanitize(name ? name : fallback, fallback, &safe);
		part_decode(data, p, &dec);
		char *used = NULL;
		int fd = filename_create(dfd, buf_cstr(&safe), &used);
		if (fd < 0) {
			*error_r = xasprintf("%s/%s: cannot create: %s", dir, buf_cstr(&safe),
					     strerror(errno));
			r = EX_CANTCREAT;
		} else {
			if (fs_write_all(fd, dec.data ? dec.data : "", dec.len) < 0 || fsync(fd) < 0) {
				*error_r = xasprintf("%s/%s: %s", dir, used, strerror(errno));
				r = EX_IOERR;
			}
			if (close(fd) < 0 && r == 0) {
				*error_r = xasprintf("%s/%s: %s", dir, used, strerror(errno));
				r = EX_IOERR;
			}
			if (r == 0) {
				fputs("saved ", f);
				msg_print_clean(f, used, strlen(used));
				fprintf(f, " (%zu bytes)\n", dec.len);
				(*count_r)++;
			}
			free(used);
		}
		buf_free(&safe);
		buf_free(&dec);
	}
	mime_tree_free(&t);
	close(dfd);
	return r;
}
