/* imap/view - the selected mailbox as one session shows it: sequence numbers, the updates
 * it owes its client (EXISTS, RECENT, FETCH FLAGS, EXPUNGE / VANISHED), flags syntax */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_private.h"
#include "imap/write.h"
#include "lib/log.h"
#include "lib/xmalloc.h"
#include "store/notify.h"

static const struct {
	const char *name;
	uint32_t bit;
} system_flags[] = {
	{ "\\Seen", STORE_F_SEEN },	    { "\\Answered", STORE_F_ANSWERED },
	{ "\\Flagged", STORE_F_FLAGGED }, { "\\Deleted", STORE_F_DELETED },
	{ "\\Draft", STORE_F_DRAFT },	    { "\\Recent", STORE_F_RECENT },
};

void imap_flags_out(buf *out, uint32_t flags, const char *keywords)
{
	buf_putc(out, '(');
	bool first = true;
	for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
		if (!(flags & system_flags[i].bit))
			continue;
		buf_printf(out, "%s%s", first ? "" : " ", system_flags[i].name);
		first = false;
	}
	if (keywords != NULL && *keywords != '\0')
		buf_printf(out, "%s%s", first ? "" : " ", keywords);
	buf_putc(out, ')');
}

void imap_msg_flags_out(const struct imap_session *s, buf *out, uint32_t flags,
			const char *keywords)
{
	/* RFC 9051 removed \Recent: an IMAP4rev2 client never sees it */
	imap_flags_out(out, s->rev2 ? flags & ~(uint32_t)STORE_F_RECENT : flags, keywords);
}

int imap_flags_parse(const struct imap_arg *a, uint32_t *flags_r, char **keywords_r,
		     const char **error_r)
{
	const struct imap_arg *list = a;
	size_t n = 1;
	if (a->type == IMAP_ARG_LIST) {
		list = a->list;
		n = a->n_list;
	}
	buf kw;
	buf_init(&kw, 0);
	*flags_r = 0;
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *f = &list[i];
		if (f->type != IMAP_ARG_ATOM) {
			*error_r = "Flags must be atoms";
			goto bad;
		}
		if (f->str[0] == '\\') {
			size_t k;
			for (k = 0; k < sizeof(system_flags) / sizeof(system_flags[0]); k++)
				if (strcasecmp(f->str, system_flags[k].name) == 0)
					break;
			if (k == sizeof(system_flags) / sizeof(system_flags[0]) ||
			    system_flags[k].bit == STORE_F_RECENT) {
				*error_r = "Unknown or read-only system flag";
				goto bad;
			}
			*flags_r |= system_flags[k].bit;
			continue;
		}
		if (strpbrk(f->str, "(){%*\"]") != NULL || f->len > 64) {
			*error_r = "Invalid keyword";
			goto bad;
		}
		buf_printf(&kw, "%s%s", kw.len ? " " : "", f->str);
	}
	*keywords_r = xstrdup(buf_cstr(&kw));
	buf_free(&kw);
	return 0;
bad:
	buf_free(&kw);
	return -1;
}

void imap_uid_set_out(buf *b, const uint32_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t j = i;
		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		buf_printf(b, "%s%u", i ? "," : "", v[i]);
		if (j > i)
			buf_printf(b, ":%u", v[j]);
		i = j;
	}
}

struct store_uid_range *imap_uid_ranges(const uint32_t *uids, size_t n, size_t *n_r)
{
	struct store_uid_range *r = xcalloc(n ? n : 1, sizeof(*r));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k > 0 && r[k - 1].last + 1 == uids[i]) {
			r[k - 1].last = uids[i];
			continue;
		}
		r[k].first = r[k].last = uids[i];
		k++;
	}
	*n_r = k;
	return r;
}

uint32_t imap_view_seq(const struct imap_view *v, uint32_t uid)
{
	size_t lo = 0, hi = v->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v->uids[mid] == uid)
			return (uint32_t)mid + 1;
		if (v->uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

void imap_view_own(struct imap_view *v, uint32_t uid, uint64_t modseq)
{
	if (v->n_own == v->cap_own) {
		v->cap_own = v->cap_own ? v->cap_own * 2 : 16;
		v->own = xreallocarray(v->own, v->cap_own, sizeof(*v->own));
	}
	v->own[v->n_own].uid = uid;
	v->own[v->n_own].modseq = modseq;
	v->n_own++;
}

static bool is_own(const struct imap_view *v, uint32_t uid, uint64_t modseq)
{
	for (size_t i = 0; i < v->n_own; i++)
		if (v->own[i].uid == uid && v->own[i].modseq == modseq)
			return true;
	return false;
}

static void uids_push(struct imap_view *v, uint32_t uid)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 64;
		v->uids = xreallocarray(v->uids, v->cap, sizeof(*v->uids));
	}
	v->uids[v->n++] = uid;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int imap_view_set(struct imap_session *s, const char *set, bool uid, uint32_t **uids_r,
		  size_t *n_r, const char **error_r)
{
	struct imap_view *v = &s->view;
	struct imap_seqset ss;
	*uids_r = NULL;
	*n_r = 0;
	if (imap_seqset_parse(set, 100000, &ss, error_r) < 0)
		return -1;
	uint32_t *out = NULL;
	size_t n = 0, cap = 0;
	if (ss.saved) {
		/* "$": the saved search result, as UIDs still in the view */
		for (size_t i = 0; i < v->n_saved; i++) {
			if (imap_view_seq(v, v->saved[i]) == 0)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 16;
				out = xreallocarray(out, cap, sizeof(*out));
			}
			out[n++] = v->saved[i];
		}
		*uids_r = out;
		*n_r = n;
		return 0;
	}
	/* Resolve "*", order each range, then sort and merge the ranges before expanding
	 * them: "1:*,1:*,..." (thousands of times) must cost no more than "1:*" */
	uint32_t max_uid = v->n > 0 ? v->uids[v->n - 1] : 0;
	struct imap_range { uint32_t a, b; } *rs = xcalloc(ss.n ? ss.n : 1, sizeof(*rs));
	size_t nr = 0;
	for (size_t r = 0; r < ss.n; r++) {
		uint32_t a = ss.ranges[r].first, b = ss.ranges[r].last;
		bool star = a == IMAP_SEQ_STAR || b == IMAP_SEQ_STAR;
		uint32_t top = uid ? max_uid : (uint32_t)v->n;
		if (a == IMAP_SEQ_STAR)
			a = top;
		if (b == IMAP_SEQ_STAR)
			b = top;
		if (a > b) {
			uint32_t t = a;
			a = b;
			b = t;
		}
		if (!uid && v->n == 0 && star)
			continue;	/* "1:*" in an empty mailbox: nothing, not an error */
		if (!uid && (b > v->n || a == 0)) {
			free(rs);
			imap_seqset_free(&ss);
			*error_r = v->n == 0 ? "No messages" : "Message sequence number out of range";
			return -1;
		}
		if (uid && a == 0)
			continue;	/* "*" of an empty mailbox */
		rs[nr].a = a;
		rs[nr].b = b;
		nr++;
	}
	imap_seqset_free(&ss);
	/* sort by start (cmp_u32 reads the first member, .a) and merge */
	if (nr > 1)
		qsort(rs, nr, sizeof(*rs), cmp_u32);
	size_t m = 0;
	for (size_t r = 0; r < nr; r++) {
		if (m > 0 && rs[r].a <= rs[m - 1].b + (uint64_t)1) {
			if (rs[r].b > rs[m - 1].b)
				rs[m - 1].b = rs[r].b;
			continue;
		}
		rs[m++] = rs[r];
	}
	for (size_t r = 0; r < m; r++) {
		size_t lo = 0, hi = v->n;
		if (uid) {
			/* the view's UIDs in [a, b] */
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (v->uids[mid] < rs[r].a)
					lo = mid + 1;
				else
					hi = mid;
			}
			hi = lo;
			while (hi < v->n && v->uids[hi] <= rs[r].b)
				hi++;
		} else {
			lo = rs[r].a - 1;
			hi = rs[r].b;
		}
		if (hi > lo) {
			if (n + (hi - lo) > cap) {
				cap = n + (hi - lo);
				out = xreallocarray(out, cap, sizeof(*out));
			}
			memcpy(out + n, v->uids + lo, (hi - lo) * sizeof(*out));
			n += hi - lo;
		}
	}
	free(rs);
	*uids_r = out;
	*n_r = n;
	return 0;
}

/* send_flags - "* seq FETCH (FLAGS (...) [UID u] [MODSEQ (m)])" for a changed message */
static void send_flags(struct imap_session *s, uint32_t seq, const struct store_msg *m)
{
	buf b;
	buf_init(&b, 0);
	buf_printf(&b, "* %u FETCH (FLAGS ", seq);
	imap_msg_flags_out(s, &b, m->flags, m->keywords);
	buf_printf(&b, " UID %u", m->uid);
	if (s->condstore)
		buf_printf(&b, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	buf_puts(&b, ")\r\n");
	imap_write(s, b.data, b.len);
	buf_free(&b);
}

void imap_view_remove(struct imap_session *s, const uint32_t *uids, size_t n)
{
	struct imap_view *v = &s->view;
	if (n == 0 || v->n == 0)
		return;
	/* one walk along both ascending lists: the sequence numbers of those in the view */
	uint32_t *seqs = xcalloc(n, sizeof(uint32_t));
	size_t n_seqs = 0, j = 0;
	for (size_t i = 0; i < v->n && j < n; i++) {
		while (j < n && uids[j] < v->uids[i])
			j++;
		if (j < n && uids[j] == v->uids[i])
			seqs[n_seqs++] = (uint32_t)i + 1;
	}
	if (n_seqs > 0 && s->qresync) {
		/* VANISHED (RFC 7162 §3.2.10): those of the UIDs still in the view, as ranges */
		uint32_t *shown = xcalloc(n_seqs, sizeof(uint32_t));
		for (size_t k = 0; k < n_seqs; k++)
			shown[k] = v->uids[seqs[k] - 1];
		buf b;
		buf_init(&b, 0);
		buf_puts(&b, "* VANISHED ");
		imap_uid_set_out(&b, shown, n_seqs);
		imap_reply(s, "%s", buf_cstr(&b));
		buf_free(&b);
		free(shown);
	} else {
		/* highest first, so that each number is still the message's when it is sent
		 * (RFC 9051 §7.5.1 allows any order, with each number as of the moment it is
		 * sent) */
		for (size_t k = n_seqs; k-- > 0;)
			imap_reply(s, "* %u EXPUNGE", seqs[k]);
	}
	/* then the view loses them all in one pass */
	size_t w = n_seqs > 0 ? seqs[0] - 1 : v->n, k = 0;
	for (size_t i = w; i < v->n; i++) {
		if (k < n_seqs && seqs[k] == i + 1) {
			k++;
			continue;
		}
		v->uids[w++] = v->uids[i];
	}
	v->n = w;
	free(seqs);
}

/* take_recent - the new messages no session has claimed become \Recent in this view:
 * claimed by SELECT; only seen by EXAMINE, so that the next SELECT (of any session) still
 * gets them as \Recent (RFC 3501 §2.3.2, §6.3.2). How many, or <0. */
static int take_recent(struct imap_view *v, char **error_r)
{
	return v->readonly ? store_mailbox_peek_recent(v->mb, error_r)
			   : store_mailbox_claim_recent(v->mb, error_r);
}

/* sync_done - the view is now what the index held when the account's change count was
 * events: remember it for the next sync's shortcut */
static void sync_done(struct imap_view *v, bool watched, unsigned long long events)
{
	v->synced = watched;
	v->synced_modseq = v->modseq;
	v->synced_uidnext = v->uidnext;
	v->synced_events = events;
}

void imap_view_sync(struct imap_session *s, bool expunges_allowed)
{
	struct imap_view *v = &s->view;
	if (v->mb == NULL)
		return;
	/* No event read for the account since the last complete sync read the index, once
	 * the waiting ones are read: nothing was committed since (store/notify.h), so the view
	 * is current without asking the index. Only from the counters that sync left: a view
	 * whose counters came from elsewhere is synced in full. */
	struct store_notifier *n = s->srv->notifier;
	bool watched = n != NULL && s->watch != NULL && store_notifier_poll(n) == 0;
	unsigned long long events = watched ? store_watch_events(s->watch) : 0;
	if (watched && v->synced && v->synced_modseq == v->modseq &&
	    v->synced_uidnext == v->uidnext && v->synced_events == events)
		return;
	v->synced = false;
	struct store_changes ch;
	char *err = NULL;
	int r = store_mailbox_changes(v->mb, v->modseq, v->uidnext, &ch, &err);
	if (r < 0) {
		if (r == STORE_NOTFOUND) {
			/* the mailbox was deleted or renamed away under us; the command's own
			 * completion (DELETE of the selected mailbox) goes before the BYE */
			if (s->in_tagged_reply)
				s->mailbox_gone = true;
			else
				session_close(s->ss,
					      "* BYE [NONEXISTENT] The selected mailbox was deleted");
		} else {
			log_warnx("%s: sync: %s", session_id(s->ss), err ? err : "?");
		}
		free(err);
		return;
	}
	if (r == 0) {
		store_changes_free(&ch);
		sync_done(v, watched, events);
		return;
	}
	bool has_expunges = ch.n_expunged > 0 || ch.too_old;
	if (has_expunges && !expunges_allowed) {
		/* keep everything for later: sequence numbers may not change now */
		store_changes_free(&ch);
		return;
	}
	if (ch.too_old) {
		/* records pruned: compare the whole UID list */
		const uint32_t *all;
		size_t n_all;
		if (store_mailbox_uids(v->mb, &all, &n_all, &err) < 0) {
			log_warnx("%s: sync: %s", session_id(s->ss), err ? err : "?");
			free(err);
			store_changes_free(&ch);
			return;
		}
		uint32_t *gone = xcalloc(v->n ? v->n : 1, sizeof(uint32_t));
		size_t n_gone = 0, j = 0;
		for (size_t i = 0; i < v->n; i++) {
			while (j < n_all && all[j] < v->uids[i])
				j++;
			if (j == n_all || all[j] != v->uids[i])
				gone[n_gone++] = v->uids[i];
		}
		imap_view_remove(s, gone, n_gone);
		free(gone);
	} else {
		imap_view_remove(s, ch.expunged, ch.n_expunged);
	}
	for (size_t i = 0; i < ch.n_changed; i++) {
		const struct store_msg *m = &ch.changed[i];
		uint32_t seq = imap_view_seq(v, m->uid);
		if (seq != 0 && !is_own(v, m->uid, m->modseq))
			send_flags(s, seq, m);
	}
	size_t before = v->n;
	for (size_t i = 0; i < ch.n_added; i++)
		if (v->n == 0 || ch.added[i].uid > v->uids[v->n - 1])
			uids_push(v, ch.added[i].uid);
	if (v->n != before) {
		imap_reply(s, "* %zu EXISTS", v->n);
		int claimed = take_recent(v, &err);
		if (claimed < 0) {
			free(err);
			err = NULL;
		} else {
			v->n_recent += (size_t)claimed;
		}
		if (!s->rev2)
			imap_reply(s, "* %zu RECENT", v->n_recent);
	}
	v->modseq = ch.highestmodseq;
	v->uidnext = ch.uidnext;
	v->n_own = 0;
	store_changes_free(&ch);
	sync_done(v, watched, events);
}

int imap_view_open(struct imap_session *s, const char *name, bool readonly, uint64_t *modseq_r,
		   char **error_r)
{
	struct imap_view *v = &s->view;
	imap_view_close(s);
	int r = store_mailbox_open(s->store, name, &v->mb, error_r);
	if (r < 0)
		return r;
	v->name = xstrdup(store_mailbox_name(v->mb));
	v->readonly = readonly;
	v->uidvalidity = store_mailbox_uidvalidity(v->mb);
	/* counters before the UID list: a change in between shows at the first sync */
	if ((r = store_mailbox_highestmodseq(v->mb, &v->modseq, error_r)) < 0 ||
	    (r = store_mailbox_uidnext(v->mb, &v->uidnext, error_r)) < 0)
		goto fail;
	if ((r = take_recent(v, error_r)) < 0)
		goto fail;
	const struct store_msg *msgs;
	size_t n;
	if ((r = store_mailbox_messages(v->mb, &msgs, &n, error_r)) < 0)
		goto fail;
	uint32_t first_unseen = 0;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].uid >= v->uidnext)
			break;		/* arrived after the counters were read: the sync says so */
		uids_push(v, msgs[i].uid);
		if (msgs[i].flags & STORE_F_RECENT)
			v->n_recent++;
		if (first_unseen == 0 && !(msgs[i].flags & STORE_F_SEEN))
			first_unseen = (uint32_t)v->n;
	}
	char *kw = NULL;
	if ((r = store_mailbox_keywords(v->mb, &kw, error_r)) < 0)
		goto fail;
	buf b;
	buf_init(&b, 0);
	imap_flags_out(&b, STORE_F_STORED, kw);
	imap_reply(s, "* %zu EXISTS", v->n);
	if (!s->rev2)
		imap_reply(s, "* %zu RECENT", v->n_recent);
	imap_reply(s, "* FLAGS %s", buf_cstr(&b));
	buf_reset(&b);
	if (readonly) {
		imap_reply(s, "* OK [PERMANENTFLAGS ()] Read-only mailbox");
	} else {
		imap_flags_out(&b, STORE_F_STORED, kw);
		b.len--;	/* drop ')' to add \* */
		buf_puts(&b, b.len > 1 ? " \\*)" : "\\*)");
		imap_reply(s, "* OK [PERMANENTFLAGS %s] Flags permitted", buf_cstr(&b));
	}
	buf_free(&b);
	free(kw);
	if (first_unseen != 0 && !s->rev2)
		imap_reply(s, "* OK [UNSEEN %u] First unseen", first_unseen);
	imap_reply(s, "* OK [UIDVALIDITY %u] UIDs valid", v->uidvalidity);
	imap_reply(s, "* OK [UIDNEXT %u] Predicted next UID", v->uidnext);
	imap_reply(s, "* OK [HIGHESTMODSEQ %llu] Highest", (unsigned long long)v->modseq);
	if (s->rev2) {
		buf l;
		buf_init(&l, 0);
		buf_puts(&l, "* LIST () \"/\" ");
		imap_mailbox_out(s, &l, v->name);
		imap_reply(s, "%s", buf_cstr(&l));
		buf_free(&l);
	}
	*modseq_r = v->modseq;
	return 0;
fail:
	imap_view_close(s);
	return r;
}

void imap_view_close(struct imap_session *s)
{
	struct imap_view *v = &s->view;
	store_mailbox_close(&v->mb);
	free(v->name);
	free(v->uids);
	free(v->own);
	free(v->saved);
	memset(v, 0, sizeof(*v));
}
