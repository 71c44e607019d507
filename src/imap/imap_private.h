/* imap_private - what the IMAP server's files share: the session, the request a handler
 * gets, the selected mailbox's view, and the reply helpers. Not for use outside src/imap. */
#ifndef TERN_IMAP_PRIVATE_H
#define TERN_IMAP_PRIVATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "imap/parser.h"
#include "imap/server.h"
#include "lib/bgpool.h"
#include "lib/buf.h"
#include "lib/session.h"
#include "store/store.h"

enum imap_state {
	IMAP_S_NOT_AUTH,
	IMAP_S_AUTH,
	IMAP_S_SELECTED,
	IMAP_S_LOGOUT,
};

/* A command as a handler gets it: "UID FETCH ..." arrives as name "FETCH" with uid set. */
struct imap_req {
	const char *tag;
	const char *name;
	const struct imap_arg *args;
	size_t n;
	bool uid;
};

/* The selected mailbox as this session has shown it to its client: sequence numbers are
 * indexes into uids[] (seq = index + 1). */
struct imap_view {
	struct store_mailbox *mb;
	char *name;			/* as the store normalised it (UTF-8) */
	bool readonly;			/* EXAMINE */
	uint32_t uidvalidity;
	uint32_t *uids;
	size_t n, cap;
	uint64_t modseq;		/* HIGHESTMODSEQ reported */
	uint32_t uidnext;		/* UIDNEXT reported */
	size_t n_recent;		/* rev1 RECENT count reported */
	/* changes this session reported itself (STORE), skipped once by the next sync */
	struct { uint32_t uid; uint64_t modseq; } *own;
	size_t n_own, cap_own;
	uint32_t *saved;		/* SEARCHRES "$" (ascending UIDs) */
	size_t n_saved;
	/* imap_view_sync's last complete sync: the counters it left, and the account's
	 * change count (store_watch_events) taken before it read the index */
	bool synced;
	uint64_t synced_modseq;
	uint32_t synced_uidnext;
	unsigned long long synced_events;
};

/* A FETCH in progress: resumed when the client has read what was sent (a large literal or
 * many messages never sit whole in memory). */
struct imap_fetch_job;
/* An APPEND whose message is being streamed in. */
struct imap_append_job;
/* A SEARCH that reads messages, done a slice per event-loop turn (the session reads no
 * commands meanwhile). */
struct imap_search_job;
/* A command whose durable part (fsync, the index's WAL) runs on the worker's sync threads
 * (lib/bgpool): embedded first in the command's own job; the session reads no commands
 * meanwhile (imap_wait_start / imap_wait_end). */
struct imap_wait {
	struct bgjob job;		/* first: the pool hands back &job */
	struct imap_session *s;		/* NULL: the session ended meanwhile */
};

struct imap_session {
	LIST_ENTRY(imap_session) link;	/* srv->imap_sessions */
	struct session *ss;
	struct imap_server *srv;
	struct conn *conn;
	struct imap_parser *parser;
	unsigned auth_failures;

	/* authentication */
	struct login *login;
	char *login_tag;
	bool sasl_active;
	bool log_hide_tag;		/* imap_reply: the tag is not logged (not a command) */
	struct sasl_state sasl;

	/* authenticated */
	char *user;
	struct store *store;
	struct store_watch *watch;
	bool utf8;			/* ENABLE UTF8=ACCEPT (or IMAP4rev2) */
	bool rev2;			/* ENABLE IMAP4rev2 */
	bool condstore, qresync;	/* ENABLEd or implied by a CONDSTORE command */

	struct imap_view view;		/* state SELECTED */

	bool idling;
	char *idle_tag;
	bool woken;			/* the account changed while a command ran */

	struct imap_fetch_job *fetch;
	struct imap_search_job *search;
	struct imap_append_job *append;
	struct imap_append_job *append_done;	/* its literal is in: awaits the command's end */
	struct imap_wait *wait;		/* a command's syncs on a thread: input paused */
	char *pending_tag;		/* a command that waits (STARTTLS handshake, ...) */
	/* the command running: its untagged updates go out just before its tagged reply
	 * (imap_reply), with EXPUNGEs only when the command allows them */
	char *sync_tag;
	bool sync_expunges;
	bool in_tagged_reply;		/* that sync runs now */
	bool mailbox_gone;		/* it found the mailbox deleted: BYE after the reply */
};

/* ---- server.c: replies and state ---- */
void imap_reply(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* imap_write - raw bytes to the client (long responses built in a buf) */
void imap_write(struct imap_session *s, const void *p, size_t n);
/* imap_bad - tagged BAD, counted as a protocol error */
void imap_bad(struct imap_session *s, const struct imap_req *r, const char *text);
/* imap_store_error - tagged NO for a store failure (STORE_ERROR: [UNAVAILABLE]), logged */
void imap_store_error(struct imap_session *s, const struct imap_req *r, int code, char *err);
/* imap_mailbox_arg - argument i as a mailbox name in the store's UTF-8 form (modified UTF-7
 * decoded unless UTF8=ACCEPT); NULL (and a BAD sent) when unusable. Caller frees. */
char *imap_mailbox_arg(struct imap_session *s, const struct imap_req *r, size_t i);
/* imap_mailbox_out - append name as the client should see it (astring, mUTF-7 for rev1) */
void imap_mailbox_out(struct imap_session *s, buf *out, const char *name);
/* imap_capabilities - the CAPABILITY list for the session's state */
void imap_capabilities(struct imap_session *s, buf *out);

/* imap_wait_start - run w's work on a sync thread and its done on the loop, the session
 * suspended until then; false (nothing started) when the worker has no sync threads: the
 * caller then does the work inline. */
bool imap_wait_start(struct imap_session *s, struct imap_wait *w);
/* imap_wait_end - in w's done: the session (NULL when it ended or is closing, and then the
 * done only cleans up) and its input resumes after the caller has answered */
struct imap_session *imap_wait_end(struct imap_wait *w);
/* imap_wait_resume - after imap_wait_end's caller answered: read the next commands */
void imap_wait_resume(struct imap_session *s);

/* ---- view.c: the selected mailbox ---- */
/* imap_view_open - SELECT / EXAMINE: open name, send the untagged responses; 0, or <0
 * (STORE_* code, *error_r) */
int imap_view_open(struct imap_session *s, const char *name, bool readonly, uint64_t *modseq_r,
		   char **error_r);
void imap_view_close(struct imap_session *s);
/* imap_view_sync - learn what other sessions and deliveries changed and tell the client:
 * EXISTS, RECENT, FETCH (flags), and EXPUNGE / VANISHED when expunges may be sent now
 * (not during a command that uses sequence numbers). */
void imap_view_sync(struct imap_session *s, bool expunges_allowed);
/* imap_view_seqset - resolve a sequence set (or UID set) to the view's UIDs: ascending,
 * without duplicates; *uids_r caller frees. A sequence number past the end is an error (BAD),
 * UIDs that are not there are left out. 0 or -1 (*error_r static). */
int imap_view_set(struct imap_session *s, const char *set, bool uid, uint32_t **uids_r,
		  size_t *n_r, const char **error_r);
/* imap_view_remove - messages expunged (uids ascending): take them out of the view and tell
 * the client (EXPUNGE with the numbers of the moment, or VANISHED with QRESYNC) */
void imap_view_remove(struct imap_session *s, const uint32_t *uids, size_t n);
/* imap_uid_set_out - ascending numbers as a compact set "1:3,7" (COPYUID, ESEARCH, VANISHED) */
void imap_uid_set_out(buf *b, const uint32_t *v, size_t n);
/* imap_uid_ranges - ascending UIDs as store ranges of consecutive values (caller frees) */
struct store_uid_range *imap_uid_ranges(const uint32_t *uids, size_t n, size_t *n_r);
/* imap_view_seq - the sequence number of uid, 0 when not in the view */
uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid);
/* imap_view_own - remember a change this session reports itself */
void imap_view_own(struct imap_view *v, uint32_t uid, uint64_t modseq);
/* imap_flags_out - "(\Seen $Junk ...)" */
void imap_flags_out(buf *out, uint32_t flags, const char *keywords);
/* imap_msg_flags_out - a message's flags as s's client is shown them in FETCH FLAGS:
 * imap_flags_out without \Recent for IMAP4rev2 (RFC 9051 has none) */
void imap_msg_flags_out(const struct imap_session *s, buf *out, uint32_t flags,
			const char *keywords);
/* imap_flags_parse - a flag list (or a single flag) into store bits and a keyword string
 * (caller frees); \Recent is refused; -1 with *error_r */
int imap_flags_parse(const struct imap_arg *a, uint32_t *flags_r, char **keywords_r,
		     const char **error_r);

/* ---- commands (one file per family) ---- */
void imap_cmd_list(void *ctx, const void *req);		/* cmd_mailbox.c */
void imap_cmd_lsub(void *ctx, const void *req);
void imap_cmd_create(void *ctx, const void *req);
void imap_cmd_delete(void *ctx, const void *req);
void imap_cmd_rename(void *ctx, const void *req);
void imap_cmd_subscribe(void *ctx, const void *req);
void imap_cmd_unsubscribe(void *ctx, const void *req);
void imap_cmd_status(void *ctx, const void *req);
void imap_cmd_select(void *ctx, const void *req);
void imap_cmd_examine(void *ctx, const void *req);
void imap_cmd_namespace(void *ctx, const void *req);
/* imap_account_setup - at login: create the special-use folders an account lacks */
void imap_account_setup(struct imap_session *s);
void imap_cmd_close(void *ctx, const void *req);		/* cmd_message.c */
void imap_cmd_unselect(void *ctx, const void *req);
void imap_cmd_expunge(void *ctx, const void *req);
void imap_cmd_store(void *ctx, const void *req);
void imap_cmd_copy(void *ctx, const void *req);
void imap_cmd_move(void *ctx, const void *req);
void imap_cmd_fetch(void *ctx, const void *req);		/* cmd_fetch.c */
void imap_cmd_search(void *ctx, const void *req);		/* cmd_search.c */
void imap_cmd_append(void *ctx, const void *req);		/* cmd_append.c */

/* cmd_fetch.c: continue a FETCH that paused for the client to read; true when it finished */
bool imap_fetch_resume(struct imap_session *s);
void imap_fetch_free(struct imap_fetch_job **job);
/* cmd_search.c: a SEARCH still reading messages (s->search) at the session's end */
void imap_search_job_free(struct imap_search_job **job);
/* imap_vanished_earlier - "* VANISHED (EARLIER) uids" (RFC 7162 §3.2.10.1; nothing when
 * there are none): the UIDs of known (a UID set after imap_seqset_normalize; NULL for all)
 * above `above` and below uidnext that ch (store_mailbox_changes since the client's
 * MODSEQ) says were expunged; when ch->too_old (the records were pruned), every such UID
 * that is not in present[] (ascending) instead. UID FETCH (VANISHED) and SELECT (QRESYNC). */
void imap_vanished_earlier(struct imap_session *s, const struct imap_seqset *known,
			   uint32_t above, uint32_t uidnext, const struct store_changes *ch,
			   const uint32_t *present, size_t n_present);
/* cmd_append.c: a large APPEND literal arrives (parser result IMAP_PARSE_LITERAL_STREAM) */
void imap_append_stream_begin(struct imap_session *s);
/* imap_append_stream_feed - take the literal's bytes from the input; true when it is in */
bool imap_append_stream_feed(struct imap_session *s);
void imap_append_free(struct imap_append_job **job);

#endif
