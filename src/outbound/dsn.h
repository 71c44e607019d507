/* dsn - delivery status notifications: the bounce, delay and success reports the queue sends
 * back to a message's envelope sender (RFC 3464 multipart/report; report-type=delivery-status,
 * RFC 3461 RET/ENVID/ORCPT, RFC 3463 status codes, RFC 3834 Auto-Submitted).
 *
 * Everything a remote server or a client chose (diagnostics, addresses, ENVID) is cleaned
 * before it reaches a header field: CR, LF and other control characters never pass, long
 * values are folded so that no line exceeds 998 octets, diagnostics are cut at
 * DSN_DIAGNOSTIC_MAX. When the original's header holds 8-bit octets (UTF-8 headers,
 * SMTPUTF8) or an address is not ASCII, the report uses RFC 6533's types:
 * message/global-delivery-status, and message/global-headers (or message/global) for the
 * original. The delivery-status part stays 7-bit either way: a non-ASCII address is
 * written as RFC 6533 "utf-8; " utf-8-addr-xtext
 * (j\x{F6}rg@example.test) when it is valid UTF-8, else its type is kept and every octet that
 * is not printable ASCII is xtext-encoded ("+HH", RFC 3461 section 4). */
#ifndef TERN_QUEUE_DSN_H
#define TERN_QUEUE_DSN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A diagnostic is cut to this many octets (after cleaning). */
#define DSN_DIAGNOSTIC_MAX 1000
/* An address (after encoding) is cut to this many octets so its field fits in 998. */
#define DSN_ADDRESS_MAX 900

enum dsn_action { DSN_FAILED, DSN_DELAYED, DSN_DELIVERED, DSN_RELAYED, DSN_EXPANDED };

struct dsn_rcpt {
	const char *final_rcpt;		/* "bob@example.org" */
	const char *orig_rcpt;		/* ORCPT as given ("rfc822;bob@example.org") or NULL;
					   printable ASCII passes as it is; without a ';' the
					   type "rfc822" is assumed */
	enum dsn_action action;
	const char *status;		/* "5.1.1"; NULL or malformed: 5.0.0 / 4.0.0 / 2.0.0
					   by action */
	const char *remote_mta;		/* "mx.example.org" or NULL */
	const char *diagnostic;		/* the remote reply, e.g. "550 5.1.1 <bob@…>: user unknown", or NULL;
					   written as "Diagnostic-Code: smtp; …", folded, control chars removed
					   (CR/LF become a space); a text that does not start with a
					   three-digit reply code (a local error such as "connection
					   refused") is written as "X-Tern; …" instead */
	const char *note;		/* our own remark, shown in the text part before the
					   diagnostic (e.g. "bounced by the administrator"), or
					   NULL */
	int64_t last_attempt;		/* unix time or 0 */
	int64_t will_retry_until;	/* for delayed, or 0 */
};

struct dsn_report {
	const char *reporting_mta;	/* our hostname */
	const char *envelope_sender;	/* To: of the bounce; must not be empty (no DSN to <>) */
	const char *envid;		/* ENVID (decoded from xtext) or NULL */
	int64_t arrival;		/* when we received the original; 0: no Arrival-Date */
	const char *queue_id;		/* written as X-Queue-ID, or NULL */
	bool return_full;		/* RET=FULL: include the whole message as message/rfc822;
					   else only its header as text/rfc822-headers. As RFC 3461
					   section 6.2 says, the whole message is only returned when
					   at least one recipient failed: a delay or success report
					   always carries the header alone. */
	const struct dsn_rcpt *rcpts;
	size_t n_rcpts;			/* at least 1 */
};

/* dsn_compose - write a complete RFC 5322 bounce/delay message (CRLF line ends) to fd
 * (so a 50 MB original is streamed, not held in memory): From: "Mail Delivery System"
 * <MAILER-DAEMON@reporting_mta>, To: <envelope_sender>, Subject ("Undelivered Mail Returned
 * to Sender" / "Delayed Mail (still being retried)" / "Successful Mail Delivery Report"),
 * Date, Message-ID, Auto-Submitted: auto-replied (RFC 3834), MIME-Version, Content-Type:
 * multipart/report; report-type=delivery-status; boundary=… (a random boundary not present
 * in the original), part 1 text/plain human-readable explanation listing each recipient and
 * its diagnostic, part 2 message/delivery-status or message/global-delivery-status (see
 * above) (per-message fields: Original-Envelope-Id,
 * Reporting-MTA: dns; …, Arrival-Date, X-Queue-ID; a blank line; per-recipient blocks:
 * Original-Recipient (when given), Final-Recipient: rfc822; …, Action, Status, Remote-MTA:
 * dns; …, Diagnostic-Code: smtp; …, Last-Attempt-Date, Will-Retry-Until), part 3 the
 * original: message/rfc822 (whole) or text/rfc822-headers (up to the first empty line) or
 * their global forms, read
 * from orig_fd with pread(2) (the fd's offset is not moved) starting at orig_offset for
 * orig_size bytes; lines are passed as they are (CRLF; a bare LF original is converted to
 * CRLF); an original with 8-bit octets is labelled Content-Transfer-Encoding: 8bit.
 * orig_fd < 0: no third part. The original is read twice (once to choose the boundary and
 * see whether it is 8-bit, once to copy it). Returns 0, or -1 with *error_r (caller frees)
 * when the report is unusable, the original is shorter than orig_size or a read or write
 * fails; out_fd may then hold a partial message and must be discarded. */
int dsn_compose(int out_fd, const struct dsn_report *r, int orig_fd, uint64_t orig_offset,
		uint64_t orig_size, char **error_r);

/* dsn_original_contains - whether needle occurs in the part of the original dsn_compose
 * would include (the whole of it, or with headers_only its header up to the first empty
 * line), after line end conversion; needles that span read chunks are found. Used to choose
 * the boundary; exposed for tests. 0 with *found_r, or -1 with *error_r. */
int dsn_original_contains(int orig_fd, uint64_t orig_offset, uint64_t orig_size,
			  bool headers_only, const char *needle, bool *found_r, char **error_r);

#endif
