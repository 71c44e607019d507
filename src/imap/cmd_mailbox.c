/* imap/cmd_mailbox - mailboxes: LIST (with LIST-EXTENDED, LIST-STATUS, SPECIAL-USE), LSUB,
 * CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS, SELECT, EXAMINE, NAMESPACE */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_private.h"
#include "imap/listmatch.h"
#include "imap/mutf7.h"
#include "imap/write.h"
#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

/* the folders every account has, with their RFC 6154 attributes */
static const struct {
	const char *name;
	const char *attr;
} special_use[] = {
	{ "Sent", "\\Sent" },	   { "Drafts", "\\Drafts" }, { "Trash", "\\Trash" },
	{ "Junk", "\\Junk" },	   { "Archive", "\\Archive" },
};

static const char *special_attr(const char *name)
{
	for (size_t i = 0; i < sizeof(special_use) / sizeof(special_use[0]); i++)
		if (strcmp(special_use[i].name, name) == 0)
			return special_use[i].attr;
	return NULL;
}

/* ensure_special - create the special-use folders an account lacks (first login); how many
 * it created */
static size_t ensure_special(struct imap_session *s, const struct store_mailbox_info *list,
			     size_t n)
{
	size_t created = 0;
	for (size_t i = 0; i < sizeof(special_use) / sizeof(special_use[0]); i++) {
		bool have = false;
		for (size_t k = 0; k < n && !have; k++)
			have = strcmp(list[k].name, special_use[i].name) == 0;
		if (have)
			continue;
		char *err = NULL;
		int r = store_mailbox_create(s->store, special_use[i].name, &err);
		if (r < 0 && r != STORE_EXISTS)
			log_warnx("%s: create %s: %s", session_id(s->ss), special_use[i].name,
				  err ? err : "?");
		free(err);
		if (r == 0) {
			store_subscribe(s->store, special_use[i].name, true, NULL);
			created++;
		}
	}
	return created;
}

/* ---- LIST ---- */

struct candidate {
	char *name;
	bool exists, children, subscribed;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct candidate *x = a, *y = b;
	bool xi = strcmp(x->name, "INBOX") == 0, yi = strcmp(y->name, "INBOX") == 0;
	if (xi != yi)
		return xi ? -1 : 1;
	return strcmp(x->name, y->name);
}

static struct candidate *cand_find(struct candidate *c, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(c[i].name, name) == 0)
			return &c[i];
	return NULL;
}

static struct candidate *cand_add(struct candidate **c, size_t *n, size_t *cap, const char *name)
{
	struct candidate *f = cand_find(*c, *n, name);
	if (f != NULL)
		return f;
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		*c = xreallocarray(*c, *cap, sizeof(**c));
	}
	f = &(*c)[(*n)++];
	memset(f, 0, sizeof(*f));
	f->name = xstrdup(name);
	return f;
}

/* collect - every existing mailbox, the levels above them, and the subscriptions */
static int collect(struct imap_session *s, struct candidate **c_r, size_t *n_r, char **error_r)
{
	struct store_mailbox_info *list;
	size_t n;
	int r = store_mailbox_list(s->store, &list, &n, error_r);
	if (r < 0)
		return r;
	struct candidate *c = NULL;
	size_t nc = 0, cap = 0;
	for (size_t i = 0; i < n; i++) {
		struct candidate *f = cand_add(&c, &nc, &cap, list[i].name);
		f->exists = true;
		f->children |= list[i].has_children;
		f->subscribed = list[i].subscribed;
		/* the levels above a/b/c: a and a/b, with children */
		char *p = xstrdup(list[i].name);
		for (char *sl = strrchr(p, '/'); sl != NULL; sl = strrchr(p, '/')) {
			*sl = '\0';
			cand_add(&c, &nc, &cap, p)->children = true;
		}
		free(p);
	}
	store_mailbox_list_free(&list, n);
	char **subs;
	size_t ns;
	if (store_subscriptions(s->store, &subs, &ns, error_r) == 0) {
		for (size_t i = 0; i < ns; i++) {
			cand_add(&c, &nc, &cap, subs[i])->subscribed = true;
			/* the levels above, for LSUB's \Noselect parents and CHILDINFO */
			char *p = xstrdup(subs[i]);
			for (char *sl = strrchr(p, '/'); sl != NULL; sl = strrchr(p, '/')) {
				*sl = '\0';
				cand_add(&c, &nc, &cap, p);
			}
			free(p);
		}
		store_names_free(&subs, ns);
	}
	qsort(c, nc, sizeof(*c), cand_cmp);
	*c_r = c;
	*n_r = nc;
	return 0;
}

static void cands_free(struct candidate *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(c[i].name);
	free(c);
}

enum status_item {
	ST_MESSAGES = 1 << 0, ST_RECENT = 1 << 1, ST_UIDNEXT = 1 << 2, ST_UIDVALIDITY = 1 << 3,
	ST_UNSEEN = 1 << 4, ST_DELETED = 1 << 5, ST_SIZE = 1 << 6, ST_HIGHESTMODSEQ = 1 << 7,
};

static int status_items_parse(const struct imap_arg *a, unsigned *items_r)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {
		{ "MESSAGES", ST_MESSAGES }, { "RECENT", ST_RECENT },
		{ "UIDNEXT", ST_UIDNEXT },   { "UIDVALIDITY", ST_UIDVALIDITY },
		{ "UNSEEN", ST_UNSEEN },     { "DELETED", ST_DELETED },
		{ "SIZE", ST_SIZE },	     { "HIGHESTMODSEQ", ST_HIGHESTMODSEQ },
	};
	if (a->type != IMAP_ARG_LIST || a->n_list == 0)
		return -1;
	*items_r = 0;
	for (size_t i = 0; i < a->n_list; i++) {
		size_t k;
		for (k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (imap_arg_is_atom(&a->list[i], names[k].name))
				break;
		if (k == sizeof(names) / sizeof(names[0]))
			return -1;
		*items_r |= names[k].bit;
	}
	return 0;
}

/* status_line - "* STATUS name (...)"; <0 store error */
static int status_line(struct imap_session *s, const char *name, unsigned items, char **error_r)
{
	struct store_status st;
	int r = store_mailbox_status(s->store, name, &st, error_r);
	if (r < 0)
		return r;
	uint32_t deleted = 0;
	if (items & ST_DELETED) {
		struct store_mailbox *mb;
		const struct store_msg *msgs;
		size_t n;
		if (store_mailbox_open(s->store, name, &mb, NULL) == 0) {
			if (store_mailbox_messages(mb, &msgs, &n, NULL) == 0)
				for (size_t i = 0; i < n; i++)
					deleted += (msgs[i].flags & STORE_F_DELETED) != 0;
			store_mailbox_close(&mb);
		}
	}
	buf b;
	buf_init(&b, 0);
	buf_puts(&b, "* STATUS ");
	imap_mailbox_out(s, &b, name);
	buf_puts(&b, " (");
	const char *sep = "";
#define ITEM(bit, fmt, v)                                   \
	if (items & (bit)) {                                \
		buf_printf(&b, "%s" fmt, sep, v);           \
		sep = " ";                                  \
	}
	ITEM(ST_MESSAGES, "MESSAGES %u", st.messages);
	ITEM(ST_RECENT, "RECENT %u", st.recent);
	ITEM(ST_UIDNEXT, "UIDNEXT %u", st.uidnext);
	ITEM(ST_UIDVALIDITY, "UIDVALIDITY %u", st.uidvalidity);
	ITEM(ST_UNSEEN, "UNSEEN %u", st.unseen);
	ITEM(ST_DELETED, "DELETED %u", deleted);
	ITEM(ST_SIZE, "SIZE %llu", (unsigned long long)st.size);
	ITEM(ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st.highestmodseq);
#undef ITEM
	buf_puts(&b, ")");
	imap_reply(s, "%s", buf_cstr(&b));
	buf_free(&b);
	return 0;
}

static bool matches_any(char **patterns, size_t n, const char *name)
{
	for (size_t k = 0; k < n; k++)
		if (imap_list_match(patterns[k], name, '/'))
			return true;
	return false;
}

/* hidden_subscribed_child - name has a subscribed mailbox below it that no pattern
 * matches (so the client learns of it only through name) */
static bool hidden_subscribed_child(const struct candidate *c, size_t n, const char *name,
				    char **patterns, size_t n_pats)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < n; i++)
		if (c[i].subscribed && strncmp(c[i].name, name, len) == 0 &&
		    c[i].name[len] == '/' && !matches_any(patterns, n_pats, c[i].name))
			return true;
	return false;
}

enum list_opts {
	LO_SUBSCRIBED = 1 << 0,		/* selection: only subscribed */
	LO_RECURSIVE = 1 << 1,		/* RECURSIVEMATCH */
	LO_SPECIAL = 1 << 2,		/* selection: only special-use */
	LO_RET_SUBSCRIBED = 1 << 3,
	LO_RET_CHILDREN = 1 << 4,
	LO_RET_SPECIAL = 1 << 5,
	LO_RET_STATUS = 1 << 6,
	LO_EXTENDED = 1 << 7,		/* the extended syntax was used */
};

static void do_list(struct imap_session *s, const struct imap_req *r, bool lsub)
{
	size_t i = 0;
	unsigned opts = 0, status_items = 0;
	if (!lsub && i < r->n && r->args[i].type == IMAP_ARG_LIST) {
		opts |= LO_EXTENDED;
		const struct imap_arg *l = &r->args[i++];
		for (size_t k = 0; k < l->n_list; k++) {
			if (imap_arg_is_atom(&l->list[k], "SUBSCRIBED"))
				opts |= LO_SUBSCRIBED | LO_RET_SUBSCRIBED;
			else if (imap_arg_is_atom(&l->list[k], "RECURSIVEMATCH"))
				opts |= LO_RECURSIVE;
			else if (imap_arg_is_atom(&l->list[k], "SPECIAL-USE"))
				opts |= LO_SPECIAL | LO_RET_SPECIAL;
			else if (imap_arg_is_atom(&l->list[k], "REMOTE"))
				;
			else {
				imap_bad(s, r, "Unknown LIST selection option");
				return;
			}
		}
		if ((opts & LO_RECURSIVE) && !(opts & LO_SUBSCRIBED)) {
			imap_bad(s, r, "RECURSIVEMATCH needs another selection option");
			return;
		}
	}
	if (i + 2 > r->n || !imap_arg_is_astring(&r->args[i])) {
		imap_bad(s, r, "Usage: LIST reference pattern");
		return;
	}
	const struct imap_arg *ref = &r->args[i++];
	const struct imap_arg *pats = &r->args[i++];
	size_t n_pats = 1;
	if (pats->type == IMAP_ARG_LIST) {
		if (lsub || pats->n_list == 0) {
			imap_bad(s, r, "Bad pattern list");
			return;
		}
		opts |= LO_EXTENDED;
		n_pats = pats->n_list;
		pats = pats->list;
	}
	if (!lsub && i < r->n) {
		if (!imap_arg_is_atom(&r->args[i], "RETURN") || i + 2 != r->n ||
		    r->args[i + 1].type != IMAP_ARG_LIST) {
			imap_bad(s, r, "Usage: LIST ... RETURN (options)");
			return;
		}
		opts |= LO_EXTENDED;
		const struct imap_arg *l = &r->args[i + 1];
		for (size_t k = 0; k < l->n_list; k++) {
			if (imap_arg_is_atom(&l->list[k], "SUBSCRIBED"))
				opts |= LO_RET_SUBSCRIBED;
			else if (imap_arg_is_atom(&l->list[k], "CHILDREN"))
				opts |= LO_RET_CHILDREN;
			else if (imap_arg_is_atom(&l->list[k], "SPECIAL-USE"))
				opts |= LO_RET_SPECIAL;
			else if (imap_arg_is_atom(&l->list[k], "STATUS") && k + 1 < l->n_list &&
				 status_items_parse(&l->list[k + 1], &status_items) == 0) {
				opts |= LO_RET_STATUS;
				k++;
			} else {
				imap_bad(s, r, "Unknown LIST return option");
				return;
			}
		}
	}
	for (size_t k = 0; k < n_pats; k++) {
		if (!imap_arg_is_astring(&pats[k])) {
			imap_bad(s, r, "Bad pattern");
			return;
		}
	}
	/* LIST "" "": the delimiter and the root (RFC 9051 §6.3.9) */
	if (!lsub && n_pats == 1 && pats[0].len == 0) {
		imap_reply(s, "* LIST (\\Noselect) \"/\" \"\"");
		imap_reply(s, "%s OK LIST completed", r->tag);
		return;
	}
	/* every pattern is matched against every mailbox: bounded, or the command fails */
	buf joined;
	buf_init(&joined, 0);
	struct imap_list_budget used = { 0 };
	const char *perr = NULL;
	bool too_much = false;
	for (size_t k = 0; k < n_pats && !too_much; k++) {
		imap_list_pattern(ref->str, pats[k].str, '/', &joined);
		too_much = imap_list_pattern_check(buf_cstr(&joined), &used, &perr) < 0;
	}
	buf_free(&joined);
	if (too_much) {
		imap_reply(s, "%s NO [LIMIT] %s", r->tag, perr);
		return;
	}
	struct candidate *c;
	size_t nc;
	char *err = NULL;
	int rc = collect(s, &c, &nc, &err);
	if (rc < 0) {
		imap_store_error(s, r, rc, err);
		return;
	}
	/* patterns in UTF-8 (mUTF-7 decoded for rev1 clients, wildcards pass through) */
	char **patterns = xcalloc(n_pats, sizeof(char *));
	buf conv;
	buf_init(&joined, 0);
	buf_init(&conv, 0);
	for (size_t k = 0; k < n_pats; k++) {
		imap_list_pattern(ref->str, pats[k].str, '/', &joined);
		buf_reset(&conv);
		if (!s->utf8 && imap_mutf7_to_utf8(buf_cstr(&joined), &conv) == 0)
			patterns[k] = xstrdup(buf_cstr(&conv));
		else
			patterns[k] = xstrdup(buf_cstr(&joined));
	}
	buf_free(&joined);
	buf_free(&conv);
	bool subscribed_only = lsub || (opts & LO_SUBSCRIBED);
	buf b;
	buf_init(&b, 0);
	for (size_t m = 0; m < nc; m++) {
		const struct candidate *f = &c[m];
		if (!matches_any(patterns, n_pats, f->name))
			continue;
		const char *su = special_attr(f->name);
		/* a level above a subscribed mailbox that the pattern does not reach: LSUB
		 * shows it \Noselect (RFC 3501 §6.3.9), LIST (SUBSCRIBED RECURSIVEMATCH) with
		 * CHILDINFO (RFC 5258 §3.5) */
		bool childinfo = (lsub || (opts & LO_RECURSIVE)) &&
				 hidden_subscribed_child(c, nc, f->name, patterns, n_pats);
		if (subscribed_only && !f->subscribed && !childinfo)
			continue;
		if ((opts & LO_SPECIAL) && su == NULL)
			continue;
		if (!f->exists && !f->children && !subscribed_only)
			continue;
		buf_reset(&b);
		buf_printf(&b, "* %s (", lsub ? "LSUB" : "LIST");
		const char *sep = "";
		if (lsub && !f->subscribed) {
			buf_printf(&b, "%s\\Noselect", sep);
			sep = " ";
		} else if (!f->exists) {
			/* a level that only has children, or a subscription without a mailbox */
			bool extended = (opts & LO_EXTENDED) || s->rev2;
			buf_printf(&b, "%s%s", sep, extended ? "\\NonExistent" : "\\Noselect");
			sep = " ";
		}
		if (!lsub) {
			buf_printf(&b, "%s%s", sep, f->children ? "\\HasChildren" : "\\HasNoChildren");
			sep = " ";
		}
		if (f->subscribed && (opts & LO_RET_SUBSCRIBED)) {
			buf_printf(&b, "%s\\Subscribed", sep);
			sep = " ";
		}
		if (su != NULL && f->exists && !lsub) {
			buf_printf(&b, "%s%s", sep, su);
			sep = " ";
		}
		buf_puts(&b, ") \"/\" ");
		imap_mailbox_out(s, &b, f->name);
		if (childinfo && !lsub)
			buf_puts(&b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");
		imap_reply(s, "%s", buf_cstr(&b));
		if ((opts & LO_RET_STATUS) && f->exists) {
			rc = status_line(s, f->name, status_items, &err);
			if (rc < 0) {
				free(err);
				err = NULL;
			}
		}
	}
	buf_free(&b);
	for (size_t k = 0; k < n_pats; k++)
		free(patterns[k]);
	free(patterns);
	cands_free(c, nc);
	imap_reply(s, "%s OK %s completed", r->tag, lsub ? "LSUB" : "LIST");
}

void imap_cmd_list(void *ctx, const void *req)
{
	do_list(ctx, req, false);
}

void imap_cmd_lsub(void *ctx, const void *req)
{
	do_list(ctx, req, true);
}

/* ---- CREATE, DELETE, RENAME, SUBSCRIBE ---- */

/* one_name - the single mailbox argument of CREATE/DELETE/SUBSCRIBE/UNSUBSCRIBE, with a
 * trailing delimiter dropped (CREATE "a/" creates a) */
static char *one_name(struct imap_session *s, const struct imap_req *r)
{
	if (r->n != 1) {
		imap_bad(s, r, "Usage: COMMAND mailbox");
		return NULL;
	}
	char *name = imap_mailbox_arg(s, r, 0);
	if (name == NULL)
		return NULL;
	size_t l = strlen(name);
	while (l > 1 && name[l - 1] == '/')
		name[--l] = '\0';
	return name;
}

void imap_cmd_create(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	char *name = one_name(s, r);
	if (name == NULL)
		return;
	char *err = NULL;
	/* the levels above it become mailboxes too (RFC 9051 §6.3.4: SHOULD), so that "a/b"
	 * can be selected, deleted and renamed after CREATE a/b/c */
	for (char *sl = strchr(name, '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
		*sl = '\0';
		if (strcasecmp(name, "INBOX") != 0) {
			int pr = store_mailbox_create(s->store, name, NULL);
			(void)pr;	/* exists already, or the real CREATE below says why not */
		}
		*sl = '/';
	}
	int rc = store_mailbox_create(s->store, name, &err);
	if (rc == STORE_INVALID && strcasecmp(name, "INBOX") == 0) {
		free(err);
		rc = STORE_EXISTS;
		err = NULL;
	}
	if (rc < 0)
		imap_store_error(s, r, rc, err);
	else
		imap_reply(s, "%s OK CREATE completed", r->tag);
	free(name);
}

void imap_cmd_delete(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	char *name = one_name(s, r);
	if (name == NULL)
		return;
	char *err = NULL;
	int rc = store_mailbox_delete(s->store, name, &err);
	if (rc < 0)
		imap_store_error(s, r, rc, err);
	else
		imap_reply(s, "%s OK DELETE completed", r->tag);
	free(name);
}

void imap_cmd_rename(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	if (r->n != 2) {
		imap_bad(s, r, "Usage: RENAME old new");
		return;
	}
	char *from = imap_mailbox_arg(s, r, 0);
	char *to = from != NULL ? imap_mailbox_arg(s, r, 1) : NULL;
	if (to != NULL) {
		char *err = NULL;
		int rc = store_mailbox_rename(s->store, from, to, &err);
		if (rc < 0)
			imap_store_error(s, r, rc, err);
		else
			imap_reply(s, "%s OK RENAME completed", r->tag);
	}
	free(from);
	free(to);
}

static void subscribe(struct imap_session *s, const struct imap_req *r, bool on)
{
	char *name = one_name(s, r);
	if (name == NULL)
		return;
	char *err = NULL;
	int rc = store_subscribe(s->store, name, on, &err);
	if (rc < 0)
		imap_store_error(s, r, rc, err);
	else
		imap_reply(s, "%s OK %s completed", r->tag, on ? "SUBSCRIBE" : "UNSUBSCRIBE");
	free(name);
}

void imap_cmd_subscribe(void *ctx, const void *req)
{
	subscribe(ctx, req, true);
}

void imap_cmd_unsubscribe(void *ctx, const void *req)
{
	subscribe(ctx, req, false);
}

void imap_cmd_status(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	unsigned items;
	if (r->n != 2 || status_items_parse(&r->args[1], &items) < 0) {
		imap_bad(s, r, "Usage: STATUS mailbox (items)");
		return;
	}
	char *name = imap_mailbox_arg(s, r, 0);
	if (name == NULL)
		return;
	char *err = NULL;
	int rc = status_line(s, name, items, &err);
	if (rc < 0)
		imap_store_error(s, r, rc, err);
	else
		imap_reply(s, "%s OK STATUS completed", r->tag);
	free(name);
}

/* the QRESYNC select parameter (RFC 7162 §3.2.5) */
struct qresync {
	uint32_t uidvalidity;		/* 0: none given */
	uint64_t modseq;
	bool has_known, has_match;
	struct imap_seqset known;	/* known-uids */
	struct imap_seqset match_seqs, match_uids;	/* seq-match-data */
};

static void qresync_free(struct qresync *q)
{
	imap_seqset_free(&q->known);
	imap_seqset_free(&q->match_seqs);
	imap_seqset_free(&q->match_uids);
}

/* set_param - a sequence set parameter (no "$"): 0 or -1 */
static int set_param(const struct imap_arg *a, struct imap_seqset *set_r)
{
	const char *err;
	if (a->type != IMAP_ARG_ATOM || imap_seqset_parse(a->str, 100000, set_r, &err) < 0)
		return -1;
	return set_r->saved ? -1 : 0;
}

/* qresync_parse - "(uidvalidity modseq [known-uids] [(seqs uids)])"; 0 or -1 (BAD) */
static int qresync_parse(const struct imap_arg *a, struct qresync *q)
{
	if (a->type != IMAP_ARG_LIST || a->n_list < 2 || a->n_list > 4)
		return -1;
	const struct imap_arg *p = a->list;
	uint64_t uv;
	if (p[0].type != IMAP_ARG_ATOM || p[1].type != IMAP_ARG_ATOM ||
	    strnum_u64z(p[0].str, UINT32_MAX, &uv) < 0 || uv == 0 ||
	    strnum_u64z(p[1].str, INT64_MAX, &q->modseq) < 0 || q->modseq == 0)
		return -1;
	q->uidvalidity = (uint32_t)uv;
	size_t i = 2;
	if (i < a->n_list && p[i].type == IMAP_ARG_ATOM) {
		if (set_param(&p[i++], &q->known) < 0)
			return -1;
		q->has_known = true;
	}
	if (i < a->n_list) {
		const struct imap_arg *m = &p[i++];
		if (m->type != IMAP_ARG_LIST || m->n_list != 2 ||
		    set_param(&m->list[0], &q->match_seqs) < 0 ||
		    set_param(&m->list[1], &q->match_uids) < 0)
			return -1;
		q->has_match = true;
	}
	return i == a->n_list ? 0 : -1;
}

/* set_walk - step through a sequence set's numbers in the order given: the next one into
 * *v_r, false at the end */
struct set_walk {
	const struct imap_seqset *set;
	size_t range;
	uint64_t next;
};

static bool set_walk_next(struct set_walk *w, uint32_t *v_r)
{
	while (w->range < w->set->n) {
		if (w->next == 0)
			w->next = w->set->ranges[w->range].first;
		if (w->next <= w->set->ranges[w->range].last) {
			*v_r = (uint32_t)w->next++;
			return true;
		}
		w->range++;
		w->next = 0;
	}
	return false;
}

/* seq_match_floor - RFC 7162 §3.2.5.2: the client knows of every expunge up to the UID of
 * each (sequence number, UID) pair that holds in the view; the UID of the last pair that
 * holds before the first that does not (0: none). At most v->n + 1 pairs are looked at. */
static uint32_t seq_match_floor(const struct imap_view *v, const struct qresync *q)
{
	struct set_walk ws = { .set = &q->match_seqs }, wu = { .set = &q->match_uids };
	uint32_t floor = 0, seq, uid;
	while (set_walk_next(&ws, &seq) && set_walk_next(&wu, &uid)) {
		if (seq > v->n || v->uids[seq - 1] != uid)
			break;
		floor = uid;
	}
	return floor;
}

/* qresync_select - SELECT ... (QRESYNC (...)) once the mailbox is open: what changed since
 * the client's MODSEQ, for the UIDs it knows - VANISHED (EARLIER), then FETCH of the
 * flags that changed (RFC 7162 §3.2.5.1: as UID FETCH known-uids (FLAGS) (CHANGEDSINCE
 * modseq VANISHED) would) */
static void qresync_select(struct imap_session *s, struct qresync *q)
{
	struct imap_view *v = &s->view;
	if (q->uidvalidity != v->uidvalidity)
		return;		/* "as if no dynamic message data changed" */
	struct store_changes ch;
	char *err = NULL;
	int r = store_mailbox_changes(v->mb, q->modseq, v->uidnext, &ch, &err);
	if (r <= 0) {
		if (r < 0)
			log_warnx("%s: QRESYNC: %s", session_id(s->ss), err ? err : "?");
		free(err);
		store_changes_free(&ch);
		return;
	}
	if (q->has_known)
		imap_seqset_normalize(&q->known, v->uidnext > 1 ? v->uidnext - 1 : 1);
	const struct imap_seqset *known = q->has_known ? &q->known : NULL;
	uint32_t above = q->has_match ? seq_match_floor(v, q) : 0;
	/* the view is the mailbox below UIDNEXT as of now: what the client may know of and
	 * is not in it has gone */
	imap_vanished_earlier(s, known, above, v->uidnext, &ch, v->uids, v->n);
	size_t kr = 0;
	for (size_t i = 0; i < ch.n_changed; i++) {
		const struct store_msg *m = &ch.changed[i];
		uint32_t seq = imap_view_seq(v, m->uid);
		if (seq == 0)
			continue;
		if (known != NULL) {
			/* changed[] is ascending: one walk along the known ranges */
			while (kr < known->n && known->ranges[kr].last < m->uid)
				kr++;
			if (kr == known->n || known->ranges[kr].first > m->uid)
				continue;
		}
		buf b;
		buf_init(&b, 0);
		buf_printf(&b, "* %u FETCH (UID %u FLAGS ", seq, m->uid);
		imap_msg_flags_out(s, &b, m->flags, m->keywords);
		buf_printf(&b, " MODSEQ (%llu))", (unsigned long long)m->modseq);
		imap_reply(s, "%s", buf_cstr(&b));
		buf_free(&b);
	}
	store_changes_free(&ch);
}

static void do_select(struct imap_session *s, const struct imap_req *r, bool readonly)
{
	struct qresync q = { 0 };
	if (r->n < 1 || r->n > 2) {
		imap_bad(s, r, "Usage: SELECT mailbox [(params)]");
		return;
	}
	if (r->n == 2) {
		const struct imap_arg *p = &r->args[1];
		if (p->type != IMAP_ARG_LIST) {
			imap_bad(s, r, "Bad SELECT parameters");
			return;
		}
		for (size_t k = 0; k < p->n_list; k++) {
			if (imap_arg_is_atom(&p->list[k], "CONDSTORE")) {
				s->condstore = true;
			} else if (imap_arg_is_atom(&p->list[k], "QRESYNC") && s->qresync &&
				   k + 1 < p->n_list && q.uidvalidity == 0) {
				if (qresync_parse(&p->list[k + 1], &q) < 0) {
					qresync_free(&q);
					imap_bad(s, r, "Bad QRESYNC parameters");
					return;
				}
				k++;
			} else {
				qresync_free(&q);
				imap_bad(s, r, "Unknown SELECT parameter");
				return;
			}
		}
	}
	char *name = imap_mailbox_arg(s, r, 0);
	if (name == NULL) {
		qresync_free(&q);
		return;
	}
	if (session_state(s->ss) == IMAP_S_SELECTED && (s->qresync || s->rev2))
		imap_reply(s, "* OK [CLOSED] Previous mailbox closed");
	session_set_selected(s->ss, false);
	session_set_state(s->ss, IMAP_S_AUTH);
	char *err = NULL;
	uint64_t modseq;
	int rc = imap_view_open(s, name, readonly, &modseq, &err);
	if (rc < 0) {
		imap_store_error(s, r, rc, err);
		qresync_free(&q);
		free(name);
		return;
	}
	if (q.uidvalidity != 0)
		qresync_select(s, &q);
	qresync_free(&q);
	session_set_selected(s->ss, true);
	session_set_state(s->ss, IMAP_S_SELECTED);
	imap_reply(s, "%s OK [%s] %s completed", r->tag, readonly ? "READ-ONLY" : "READ-WRITE",
		   readonly ? "EXAMINE" : "SELECT");
	free(name);
}

void imap_cmd_select(void *ctx, const void *req)
{
	do_select(ctx, req, false);
}

void imap_cmd_examine(void *ctx, const void *req)
{
	do_select(ctx, req, true);
}

void imap_cmd_namespace(void *ctx, const void *req)
{
	struct imap_session *s = ctx;
	const struct imap_req *r = req;
	imap_reply(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL");
	imap_reply(s, "%s OK NAMESPACE completed", r->tag);
}

void imap_account_setup(struct imap_session *s)
{
	struct store_mailbox_info *list;
	size_t n;
	char *err = NULL;
	if (store_mailbox_list(s->store, &list, &n, &err) < 0) {
		free(err);
		return;
	}
	/* a new account: INBOX subscribed too, for clients that show subscribed folders only */
	if (ensure_special(s, list, n) > 0)
		store_subscribe(s->store, "INBOX", true, NULL);
	store_mailbox_list_free(&list, n);
}
