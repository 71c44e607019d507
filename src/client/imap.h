/* client/imap - a small blocking IMAP4rev1/rev2 client for `tern read`: STARTTLS or
 * implicit TLS, AUTHENTICATE PLAIN (with SASL-IR when offered) or LOGIN, SELECT/EXAMINE,
 * FETCH of headers and whole messages (literals read by their announced size), STORE,
 * MOVE (COPY + STORE \Deleted + UID EXPUNGE/EXPUNGE where MOVE is missing), LIST.
 * Messages are addressed by sequence number N (1..EXISTS, as `list` prints them); each
 * operation first maps N to its UID and then works with UID commands, so that nothing acts
 * on a different message should the mailbox change meanwhile.
 * Every function returns 0 or a sysexits.h code with *error_r (caller frees):
 * EX_NOPERM a refused login, EX_NOINPUT no such folder, EX_DATAERR no such message,
 * EX_PROTOCOL an unexpected or malformed answer, and the transport's codes. */
#ifndef TERN_CLIENT_IMAP_H
#define TERN_CLIENT_IMAP_H
#include <stdbool.h>
#include <stdint.h>
#include "client/transport.h"
#include "lib/buf.h"

struct imapc {
	struct transport t;
	unsigned tag;
	char *caps;		/* " CAP1 CAP2 ... " uppercase, from the last CAPABILITY */
	uint32_t exists;	/* of the selected folder */
	bool utf8;		/* UTF8=ACCEPT enabled: folder names travel as UTF-8 */
	buf resp;		/* the response being read, literals included */
	buf tmp;		/* scratch for unescaped quoted strings */
};

/* one message of imapc_list_headers */
struct imapc_summary {
	uint32_t seq, uid;
	uint64_t size;
	const char *flags;		/* "\Seen \Answered", "" when none */
	const char *header;		/* the requested header fields (not NUL-safe: use len) */
	size_t header_len;
};

/* imapc_open - connect, read the greeting, upgrade with STARTTLS unless tls is
 * TRANSPORT_TLS_NONE or IMPLICIT, learn the capabilities. */
int imapc_open(struct imapc *c, const char *host, uint16_t port, enum transport_tls tls,
	       bool insecure, int timeout_s, char **error_r);
/* imapc_login - authenticate; refuses (EX_USAGE) to send a password over a connection that
 * is neither TLS nor loopback. */
int imapc_login(struct imapc *c, const char *user, const char *password, char **error_r);
/* imapc_select - SELECT (or EXAMINE when readonly) the UTF-8 folder name; sets c->exists. */
int imapc_select(struct imapc *c, const char *folder, bool readonly, char **error_r);
/* imapc_list_headers - every message's flags, size and Date/From/Subject fields, in order;
 * the summary's pointers are valid during the callback only. */
int imapc_list_headers(struct imapc *c,
		       void (*cb)(void *ctx, const struct imapc_summary *s), void *ctx,
		       char **error_r);
/* imapc_fetch - the whole message N appended to out. mark_seen: BODY[] (sets \Seen),
 * otherwise BODY.PEEK[]. */
int imapc_fetch(struct imapc *c, uint32_t seq, bool mark_seen, buf *out, char **error_r);
/* imapc_delete - flag message N \Deleted and expunge it (only it when UIDPLUS is there). */
int imapc_delete(struct imapc *c, uint32_t seq, char **error_r);
/* imapc_move - move message N to the folder (UTF-8 name). */
int imapc_move(struct imapc *c, uint32_t seq, const char *folder, char **error_r);
/* imapc_folders - LIST "" "*": each folder's UTF-8 name and its flags ("\HasNoChildren
 * \Sent"). */
int imapc_folders(struct imapc *c, void (*cb)(void *ctx, const char *name, const char *flags),
		  void *ctx, char **error_r);
/* imapc_close - LOGOUT when the connection is still usable, then close and free. */
void imapc_close(struct imapc *c);

#endif
