/* client/message - what `tern read` shows of a message: the summary line of `list`, the
 * decoded header and text body of `show`, and the attachments of `show` and `save`.
 * Built on mime/: the tree finds the parts, the decoders undo base64 / quoted-printable,
 * encword and param decode RFC 2047 words and RFC 2231 names, charsets become UTF-8.
 * Everything printed has its control characters (ESC …) replaced, so that a message cannot
 * drive the terminal. */
#ifndef TERN_CLIENT_MESSAGE_H
#define TERN_CLIENT_MESSAGE_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "lib/buf.h"

struct msg_summary {
	char *date;	/* "2024-01-31 10:00" in local time, or the raw value, or "" */
	char *from;	/* the display name, or the address; decoded */
	char *subject;	/* decoded */
};

/* msg_summarize - Date, From and Subject of the header block hdr[0..len), one line each
 * (CR, LF and TAB in decoded text become spaces). */
void msg_summarize(const char *hdr, size_t len, struct msg_summary *s);
void msg_summary_free(struct msg_summary *s);

/* msg_print_clean - write s[0..len) to f with control characters other than LF and TAB
 * replaced by '?' (and CR dropped): C0, DEL, C1 in UTF-8 and single bytes 0x80..0x9f that
 * are not part of a valid UTF-8 sequence. */
void msg_print_clean(FILE *f, const char *s, size_t len);

/* msg_show - the decoded From/To/Cc/Date/Subject, the text body (text/plain preferred,
 * else HTML as text) and the list of attachments, to f. */
void msg_show(const char *data, size_t len, FILE *f);

/* msg_save - write every attachment (every part with a filename or disposition
 * "attachment") into the directory dir (created if missing) under its sanitised name, never
 * replacing a file; each saved file is reported as "saved NAME (N bytes)" on f. Returns 0
 * (the number saved in *count_r) or a sysexits code with *error_r (caller frees). */
int msg_save(const char *data, size_t len, const char *dir, FILE *f, unsigned *count_r,
	     char **error_r);

#endif
