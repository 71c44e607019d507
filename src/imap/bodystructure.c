/* imap/bodystructure - ENVELOPE, BODY, BODYSTRUCTURE (see bodystructure.h) */
#include "imap/bodystructure.h"

#include <string.h>

#include "imap/write.h"
#include "mime/address.h"
#include "mime/header.h"
#include "mime/tree.h"

#define ENVELOPE_MAX_ADDRESSES 1000
#define ENVELOPE_MAX_HEADER (256 * 1024)

/* field_value - the unfolded, trimmed value of the first field called name, appended to
 * val; false when there is none */
static bool field_value(const struct mime_headers *h, const char *data, const char *name,
			buf *val)
{
	int i = mime_headers_find(h, data, name, 0);
	if (i < 0)
		return false;
	const struct mime_header_field *f = &h->fields[i];
	buf_reset(val);
	mime_header_unfold(data + f->value_offset, f->value_len, val);
	return true;
}

static int write_nstring_field(buf *out, const struct mime_headers *h, const char *data,
			       const char *name, bool utf8, buf *val)
{
	if (!field_value(h, data, name, val))
		return buf_puts(out, "NIL");
	return imap_write_string(out, val->data != NULL ? val->data : "", val->len, utf8);
}

/* write_addresses - an address list field as ((name adl mailbox host) ...) or NIL; false
 * when the field is absent or holds no address (for the Sender/Reply-To default) */
static int write_addresses(buf *out, const struct mime_headers *h, const char *data,
			   const char *name, bool utf8, buf *val, bool *written_r)
{
	*written_r = false;
	if (!field_value(h, data, name, val))
		return 0;
	struct mime_address *list;
	unsigned n;
	mime_address_list_parse(val->data != NULL ? val->data : "", val->len,
				ENVELOPE_MAX_ADDRESSES, &list, &n);
	if (n == 0)
		return 0;
	int r = buf_putc(out, '(');
	for (unsigned i = 0; i < n && r == 0; i++) {
		const struct mime_address *a = &list[i];
		r |= buf_putc(out, '(');
		switch (a->kind) {
		case MIME_ADDR_MAILBOX:
			r |= imap_write_nstring(out, a->name, utf8);
			r |= buf_putc(out, ' ');
			r |= imap_write_nstring(out, a->route, utf8);
			r |= buf_putc(out, ' ');
			r |= imap_write_nstring(out, a->mailbox, utf8);
			r |= buf_putc(out, ' ');
			r |= imap_write_nstring(out, a->host, utf8);
			break;
		case MIME_ADDR_GROUP_START:
			r |= buf_puts(out, "NIL NIL ");
			r |= imap_write_nstring(out, a->mailbox, utf8);
			r |= buf_puts(out, " NIL");
			break;
		case MIME_ADDR_GROUP_END:
			r |= buf_puts(out, "NIL NIL NIL NIL");
			break;
		}
		r |= buf_putc(out, ')');
	}
	r |= buf_putc(out, ')');
	mime_address_list_free(&list, n);
	*written_r = true;
	return r < 0 ? -1 : 0;
}

int imap_envelope_write(buf *out, const char *header, size_t len, bool utf8)
{
	struct mime_headers h;
	struct mime_header_limits lim = { .max_size = ENVELOPE_MAX_HEADER, .max_fields = 0 };
	const char *err;
	mime_headers_init(&h);
	mime_headers_parse(&h, header, len, true, &lim, &err);
	buf val, from;
	buf_init(&val, 0);
	buf_init(&from, 0);
	bool written;
	int r = buf_putc(out, '(');
	r |= write_nstring_field(out, &h, header, "Date", utf8, &val);
	r |= buf_putc(out, ' ');
	r |= write_nstring_field(out, &h, header, "Subject", utf8, &val);
	r |= buf_putc(out, ' ');
	/* From is written once into its own buffer: Sender and Reply-To may repeat it */
	r |= write_addresses(&from, &h, header, "From", utf8, &val, &written);
	if (!written)
		r |= buf_puts(&from, "NIL");
	r |= buf_append(out, from.data, from.len);
	static const char *const defaulted[] = { "Sender", "Reply-To" };
	for (size_t i = 0; i < 2; i++) {
		r |= buf_putc(out, ' ');
		r |= write_addresses(out, &h, header, defaulted[i], utf8, &val, &written);
		if (!written)
			r |= buf_append(out, from.data, from.len);
	}
	static const char *const lists[] = { "To", "Cc", "Bcc" };
	for (size_t i = 0; i < 3; i++) {
		r |= buf_putc(out, ' ');
		r |= write_addresses(out, &h, header, lists[i], utf8, &val, &written);
		if (!written)
			r |= buf_puts(out, "NIL");
	}
	r |= buf_putc(out, ' ');
	r |= write_nstring_field(out, &h, header, "In-Reply-To", utf8, &val);
	r |= buf_putc(out, ' ');
	r |= write_nstring_field(out, &h, header, "Message-ID", utf8, &val);
	r |= buf_putc(out, ')');
	buf_free(&val);
	buf_free(&from);
	mime_headers_free(&h);
	return r < 0 ? -1 : 0;
}

/* write_param_2231 - a value the tree decoded to non-ASCII UTF-8 goes out as the RFC 2231
 * parameter name*="utf-8''%XX..." that clients decode, as they would the original */
static int write_param_2231(buf *out, const struct mime_param *p, bool utf8)
{
	buf name, val;
	buf_init(&name, 0);
	buf_init(&val, 0);
	int r = buf_printf(&name, "%s*", p->name);
	r |= buf_puts(&val, "utf-8''");
	for (const unsigned char *v = (const unsigned char *)p->value; *v; v++) {
		if (*v > ' ' && *v < 0x7f && strchr("*'%()<>@,;:\\\"/[]?=", *v) == NULL)
			r |= buf_putc(&val, (char)*v);
		else
			r |= buf_printf(&val, "%%%02X", *v);
	}
	r |= imap_write_string(out, name.data, name.len, utf8);
	r |= buf_putc(out, ' ');
	r |= imap_write_string(out, val.data, val.len, utf8);
	buf_free(&name);
	buf_free(&val);
	return r < 0 ? -1 : 0;
}

static bool is_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* write_params - ("name" "value" ...) or NIL */
static int write_params(buf *out, const struct mime_param *p, uint32_t n, bool utf8)
{
	if (n == 0)
		return buf_puts(out, "NIL");
	int r = buf_putc(out, '(');
	for (uint32_t i = 0; i < n; i++) {
		if (i > 0)
			r |= buf_putc(out, ' ');
		if (!utf8 && p[i].value != NULL && !is_ascii(p[i].value)) {
			r |= write_param_2231(out, &p[i], utf8);
			continue;
		}
		r |= imap_write_nstring(out, p[i].name, utf8);
		r |= buf_putc(out, ' ');
		r |= imap_write_nstring(out, p[i].value, utf8);
	}
	r |= buf_putc(out, ')');
	return r < 0 ? -1 : 0;
}

/* write_extension - body-fld-dsp SP body-fld-lang SP body-fld-loc, shared by single and
 * multi parts */
static int write_dsp_lang_loc(buf *out, const struct mime_part *p, bool utf8)
{
	int r = 0;
	if (p->disposition == NULL) {
		r |= buf_puts(out, "NIL");
	} else {
		r |= buf_putc(out, '(');
		r |= imap_write_nstring(out, p->disposition, utf8);
		r |= buf_putc(out, ' ');
		r |= write_params(out, p->disp_params, p->ndisp_params, utf8);
		r |= buf_putc(out, ')');
	}
	r |= buf_putc(out, ' ');
	if (p->nlanguage == 0) {
		r |= buf_puts(out, "NIL");
	} else if (p->nlanguage == 1) {
		r |= imap_write_nstring(out, p->language[0], utf8);
	} else {
		r |= buf_putc(out, '(');
		for (uint32_t i = 0; i < p->nlanguage; i++) {
			if (i > 0)
				r |= buf_putc(out, ' ');
			r |= imap_write_nstring(out, p->language[i], utf8);
		}
		r |= buf_putc(out, ')');
	}
	r |= buf_putc(out, ' ');
	r |= imap_write_nstring(out, p->location, utf8);
	return r < 0 ? -1 : 0;
}

struct bs_ctx {
	buf *out;
	const struct mime_tree *tree;
	const char *msg;
	size_t len;
	bool extended, utf8;
};

static int write_part(struct bs_ctx *c, uint32_t idx);

/* write_multipart_tail - after a multipart's bodies: SP subtype [SP extension data] ")" */
static int write_multipart_tail(struct bs_ctx *c, const struct mime_part *p)
{
	int r = buf_putc(c->out, ' ');
	r |= imap_write_nstring(c->out, p->subtype, c->utf8);
	if (c->extended) {
		r |= buf_putc(c->out, ' ');
		r |= write_params(c->out, p->params, p->nparams, c->utf8);
		r |= buf_putc(c->out, ' ');
		r |= write_dsp_lang_loc(c->out, p, c->utf8);
	}
	r |= buf_putc(c->out, ')');
	return r < 0 ? -1 : 0;
}

static int write_multipart(struct bs_ctx *c, const struct mime_part *p)
{
	int r = buf_putc(c->out, '(');
	for (uint32_t ch = p->first_child; ch != MIME_NO_PART && r == 0;
	     ch = c->tree->parts[ch].next_sibling)
		r |= write_part(c, ch);
	r |= write_multipart_tail(c, p);
	return r < 0 ? -1 : 0;
}

/* part_lines - the body's lines as IMAP servers count them: its LFs (the tree also counts
 * a last line without one) */
static uint64_t part_lines(const struct bs_ctx *c, const struct mime_part *p)
{
	uint64_t lines = p->body_lines;
	uint64_t end = p->body_offset + p->body_size;
	if (lines > 0 && p->body_size > 0 && end <= c->len && c->msg[end - 1] != '\n')
		lines--;
	return lines;
}

/* write_empty_multipart - a multipart whose boundary never appears: shown, as Dovecot does,
 * as a multipart holding one empty text/plain part, since a basic body of type multipart
 * is not valid BODYSTRUCTURE */
static int write_empty_multipart(struct bs_ctx *c, const struct mime_part *p)
{
	int r = buf_puts(c->out, "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
	if (c->extended)
		r |= buf_puts(c->out, " NIL NIL NIL NIL");
	r |= buf_putc(c->out, ')');
	r |= write_multipart_tail(c, p);
	return r < 0 ? -1 : 0;
}

/* is_message_type - message/rfc822 or message/global: media-message in the grammar */
static bool is_message_type(const struct mime_part *p)
{
	return strcmp(p->type, "message") == 0 &&
	       (strcmp(p->subtype, "rfc822") == 0 || strcmp(p->subtype, "global") == 0);
}

static int write_single(struct bs_ctx *c, const struct mime_part *p)
{
	static const struct mime_param us_ascii = { .name = "charset", .value = "us-ascii" };
	int r = buf_putc(c->out, '(');
	r |= imap_write_nstring(c->out, p->type, c->utf8);
	r |= buf_putc(c->out, ' ');
	r |= imap_write_nstring(c->out, p->subtype, c->utf8);
	r |= buf_putc(c->out, ' ');
	bool is_text = strcmp(p->type, "text") == 0;
	if (p->nparams == 0 && is_text)
		r |= write_params(c->out, &us_ascii, 1, c->utf8);
	else
		r |= write_params(c->out, p->params, p->nparams, c->utf8);
	r |= buf_putc(c->out, ' ');
	r |= imap_write_nstring(c->out, p->id, c->utf8);
	r |= buf_putc(c->out, ' ');
	r |= imap_write_nstring(c->out, p->description, c->utf8);
	r |= buf_putc(c->out, ' ');
	r |= imap_write_nstring(c->out, p->encoding != NULL ? p->encoding : "7bit", c->utf8);
	r |= buf_printf(c->out, " %llu", (unsigned long long)(p->body_size + p->body_bare_lf));
	if ((p->flags & MIME_PART_MESSAGE) && p->first_child != MIME_NO_PART) {
		const struct mime_part *m = &c->tree->parts[p->first_child];
		r |= buf_putc(c->out, ' ');
		if (m->header_offset <= c->len && m->header_size <= c->len - m->header_offset)
			r |= imap_envelope_write(c->out, c->msg + m->header_offset,
						 (size_t)m->header_size, c->utf8);
		else
			r |= imap_envelope_write(c->out, "", 0, c->utf8);
		r |= buf_putc(c->out, ' ');
		r |= write_part(c, p->first_child);
		r |= buf_printf(c->out, " %llu", (unsigned long long)part_lines(c, p));
	} else if (is_message_type(p)) {
		/* encoded (base64, quoted-printable): not parsed, but the grammar wants the
		 * envelope, body and lines of media-message: an empty message, as Dovecot sends */
		r |= buf_puts(c->out, " (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" "
				      "(\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0");
		if (c->extended)
			r |= buf_puts(c->out, " NIL NIL NIL NIL");
		r |= buf_printf(c->out, ") %llu", (unsigned long long)part_lines(c, p));
	} else if (is_text) {
		r |= buf_printf(c->out, " %llu", (unsigned long long)part_lines(c, p));
	}
	if (c->extended) {
		r |= buf_putc(c->out, ' ');
		r |= imap_write_nstring(c->out, p->md5, c->utf8);
		r |= buf_putc(c->out, ' ');
		r |= write_dsp_lang_loc(c->out, p, c->utf8);
	}
	r |= buf_putc(c->out, ')');
	return r < 0 ? -1 : 0;
}

/* write_part - one part, recursively; the depth is the tree's, which its limits bound */
static int write_part(struct bs_ctx *c, uint32_t idx)
{
	const struct mime_part *p = &c->tree->parts[idx];
	if ((p->flags & MIME_PART_MULTIPART) && p->first_child != MIME_NO_PART)
		return write_multipart(c, p);
	if (strcmp(p->type, "multipart") == 0)
		return write_empty_multipart(c, p);
	return write_single(c, p);
}

int imap_bodystructure_write(buf *out, const struct mime_tree *tree, const char *msg, size_t len,
			     bool extended, bool utf8)
{
	struct bs_ctx c = { out, tree, msg, len, extended, utf8 };
	if (tree->count == 0)
		return buf_puts(out, "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)");
	return write_part(&c, 0);
}
