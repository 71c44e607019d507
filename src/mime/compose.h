/* mime_compose - build an RFC 5322 / MIME message from its parts (used by `tern send`).
 * Pure: no I/O, no clock, no randomness of its own; the caller passes the time, its zone
 * and a unique string, so that the output is a function of the input (unit-testable).
 *
 * The body encoders are mime_qp_encode and mime_base64_encode_lines (mime/downgrade.h).
 *
 * What comes out: CRLF line ends; no line over 998 octets (headers folded at blanks or
 * split into RFC 2047 encoded words of at most 75 characters, base64 bodies in 76-column
 * lines, quoted-printable with soft breaks at 76); Date, From, To, Cc, Subject, Message-ID,
 * the caller's extra headers, MIME-Version; the text as UTF-8, 7bit when it is ASCII with
 * short lines and quoted-printable otherwise; with html, multipart/alternative (text, then
 * html); with attachments, multipart/mixed with the text (or the alternative) first and
 * each attachment base64-encoded with Content-Disposition: attachment and its filename
 * (RFC 2231 filename*= for non-ASCII or long names). Boundaries are checked against every
 * encoded part and never occur in them. There is no Bcc input: blind recipients belong to
 * the envelope only, so the composer cannot leak them. */
#ifndef TERN_MIME_COMPOSE_H
#define TERN_MIME_COMPOSE_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include "lib/buf.h"

struct mime_attachment {
	const char *filename;		/* base name, UTF-8 (no directory part) */
	const char *content_type;	/* NULL: mime_guess_type(filename, data, len) */
	const unsigned char *data;
	size_t len;
};

struct mime_compose {
	const char *from;		/* "Display Name <addr>" or "addr" (UTF-8) */
	const char *const *to;		/* the same forms */
	size_t n_to;
	const char *const *cc;
	size_t n_cc;
	const char *subject;		/* NULL or UTF-8 text (no CR/LF) */
	const char *const *headers;	/* extra "Name: value" lines (UTF-8 value) */
	size_t n_headers;
	const char *text;		/* the body, UTF-8; LF or CRLF line ends */
	size_t text_len;
	const char *html;		/* NULL, or an HTML alternative (UTF-8) */
	size_t html_len;
	const struct mime_attachment *attachments;
	size_t n_attachments;
	time_t date;			/* the Date: header's time */
	int tz_minutes;			/* its zone, east of UTC: +120 for +0200 */
	const char *unique;		/* [A-Za-z0-9.]+: the Message-ID's left part and the
					   boundaries' stem (e.g. time + random hex) */
};

/* mime_compose - append the whole message to out. 0, or -1 with *error_r (caller frees):
 * an address without one '@', a header name or value that is not allowed (a control
 * character, CR/LF, a header the composer writes itself such as Bcc or Content-Type),
 * text or html that is not valid UTF-8, out full. */
int mime_compose(const struct mime_compose *m, buf *out, char **error_r);

/* mime_compose_address - split "Name <addr>" / "addr" into the addr-spec (*addr_r) and the
 * display name (*name_r, NULL when none; quotes removed). Both allocated (caller frees).
 * 0, or -1 with *error_r (static text) when it is not one address. */
int mime_compose_address(const char *in, char **addr_r, char **name_r, const char **error_r);

/* mime_encword_encode - append text[0..len) (UTF-8) as RFC 2047 "B" encoded words
 * (=?UTF-8?B?...?=) joined by single spaces (a header writer folds there). Each word is at
 * most 75 characters and holds whole characters only; the first at most first_room (when
 * that is 16 or more), so that it fits the line it starts on. 0 or -1 (out full). */
int mime_encword_encode(const char *text, size_t len, size_t first_room, buf *out);

/* mime_guess_type - a content type for an attachment, from its leading bytes (PNG, JPEG,
 * GIF, PDF, ZIP, gzip, …) and then its file name extension; text that is valid UTF-8 without
 * NULs is "text/plain; charset=utf-8"; else "application/octet-stream". Static string. */
const char *mime_guess_type(const char *filename, const unsigned char *data, size_t len);

#endif
