/* sync - what changed in a mailbox since a session last looked: new messages, flag and
 * keyword changes, expunges (store_mailbox_changes). Reads index.db only. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xmalloc.h"
#include "store/store_private.h"

struct msglist {
	struct store_msg *v;
	size_t n, cap;
	size_t *kwoff;		/* offsets into the arena until the arena stops moving */
};

/* read_msgs - step st (columns uid, size, internaldate, flags, modseq, keywords) into l */
static int read_msgs(const struct store_mailbox *mb, sqlite3_stmt *st, struct msglist *l,
		     buf *arena)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (l->n == l->cap) {
			l->cap = l->cap ? l->cap * 2 : 16;
			l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
			l->kwoff = xreallocarray(l->kwoff, l->cap, sizeof(*l->kwoff));
		}
		struct store_msg *m = &l->v[l->n];
		memset(m, 0, sizeof(*m));
		m->uid = (uint32_t)sqlite3_column_int64(st, 0);
		m->size = (uint64_t)sqlite3_column_int64(st, 1);
		m->internal_date = sqlite3_column_int64(st, 2);
		m->flags = (uint32_t)sqlite3_column_int64(st, 3) & STORE_F_STORED;
		for (size_t i = 0; i < mb->n_recent; i++)
			if (m->uid >= mb->recent[i].first && m->uid <= mb->recent[i].last)
				m->flags |= STORE_F_RECENT;
		m->modseq = (uint64_t)sqlite3_column_int64(st, 4);
		const char *kw = (const char *)sqlite3_column_text(st, 5);
		l->kwoff[l->n] = 0;
		if (kw != NULL && kw[0] != '\0') {
			l->kwoff[l->n] = arena->len;
			buf_append(arena, kw, strlen(kw) + 1);
		}
		l->n++;
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

static void msglist_finish(struct msglist *l, const char *arena, struct store_msg **v_r,
			   size_t *n_r)
{
	for (size_t i = 0; i < l->n; i++)
		l->v[i].keywords = arena + l->kwoff[i];
	free(l->kwoff);
	*v_r = l->v;
	*n_r = l->n;
}

int store_mailbox_changes(struct store_mailbox *mb, uint64_t since_modseq, uint32_t since_uidnext,
			  struct store_changes *ch, char **error_r)
{
	struct store *s = mb->s;
	memset(ch, 0, sizeof(*ch));
	/* One read transaction: the counters (the cheap path ends there: one primary-key
	 * read) and, when something changed, the lists - one WAL read lock either way */
	if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_set_error(s, error_r, "begin");
		return STORE_ERROR;
	}
	struct mbrow row;
	int k = idx_mb_current(mb, &row, error_r);
	if (k < 0) {
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
		return k;
	}
	ch->highestmodseq = row.highestmodseq;
	ch->uidnext = row.uidnext;
	uint64_t floor = row.expunge_floor;
	mbrow_free(&row);
	if (ch->highestmodseq == since_modseq && ch->uidnext == since_uidnext) {
		sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
		return 0;
	}
	ch->too_old = since_modseq < floor;
	struct msglist added = { 0 }, changed = { 0 };
	uint32_t *exp = NULL;
	size_t n_exp = 0, cap_exp = 0;
	buf arena;
	buf_init(&arena, 0);
	buf_putc(&arena, '\0');		/* offset 0: "" */
	int r = STORE_ERROR;

	sqlite3_stmt *st = db_st(s, ST_MSG_RANGE);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, since_uidnext);
	sqlite3_bind_int64(st, 3, UINT32_MAX);
	sqlite3_bind_int64(st, 4, 0);
	if (read_msgs(mb, st, &added, &arena) < 0)
		goto dberr;
	st = db_st(s, ST_MSG_CHANGED);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, (int64_t)since_modseq);
	sqlite3_bind_int64(st, 3, since_uidnext);
	if (read_msgs(mb, st, &changed, &arena) < 0)
		goto dberr;
	st = db_st(s, ST_EXP_SINCE);
	sqlite3_bind_int64(st, 1, mb->id);
	sqlite3_bind_int64(st, 2, (int64_t)since_modseq);
	sqlite3_bind_int64(st, 3, since_uidnext);
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n_exp == cap_exp) {
			cap_exp = cap_exp ? cap_exp * 2 : 16;
			exp = xreallocarray(exp, cap_exp, sizeof(*exp));
		}
		exp[n_exp++] = (uint32_t)sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		goto dberr;
	sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
	ch->kw_arena = arena.data;
	msglist_finish(&added, arena.data, &ch->added, &ch->n_added);
	msglist_finish(&changed, arena.data, &ch->changed, &ch->n_changed);
	ch->expunged = exp;
	ch->n_expunged = n_exp;
	return 1;
dberr:
	db_set_error(s, error_r, "changes");
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	free(added.v);
	free(added.kwoff);
	free(changed.v);
	free(changed.kwoff);
	free(exp);
	buf_free(&arena);
	memset(ch, 0, sizeof(*ch));
	return r;
}

void store_changes_free(struct store_changes *ch)
{
	if (ch == NULL)
		return;
	free(ch->added);
	free(ch->changed);
	free(ch->expunged);
	free(ch->kw_arena);
	memset(ch, 0, sizeof(*ch));
}
