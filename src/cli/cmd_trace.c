/* cmd_trace - "tern trace ID": the story of one message from the trace journal
 * (lib/trace.h) and queue.db: received, stored, each outbound attempt, the reports it
 * caused, read, downloaded, expunged. */
#include "cli/cmd_trace.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/dataowner.h"
#include "cli/devdata.h"
#include "config/config.h"
#include "lib/trace.h"
#include "lib/utf8.h"
#include "lib/xmalloc.h"
#include "queue/queue.h"
#include "store/store.h"

static const char help[] =
	"usage: tern trace ID [--json] [-c FILE]\n"
	"  ID: a queue id (as in '250 Ok: queued as ID' and the log) or a Message-ID\n"
	"  The whole story of one message from the trace journal (data_dir/trace, kept\n"
	"  trace_days days): received (client, HELO, login, TLS, envelope), stored in which\n"
	"  mailboxes, each delivery attempt with the remote's reply, the reports (DSN) it\n"
	"  caused, and when it was read over IMAP, downloaded over POP3, expunged.\n"
	"  --json  one JSON object per line instead of text\n";

/* What the story follows: queue ids, and messages in mailboxes (user, uidvalidity, uid). */
struct story {
	char **qids;
	size_t n_qids;
	struct place {
		char *user;
		char *folder;	/* as the journal last named it */
		unsigned long uidvalidity, uid;
	} *places;
	size_t n_places;
	const char *msgid;	/* the ID without <> when it may be a Message-ID */
	size_t n_events;
	bool json;
};

static bool has_qid(const struct story *st, const char *qid)
{
	for (size_t i = 0; i < st->n_qids; i++)
		if (strcmp(st->qids[i], qid) == 0)
			return true;
	return false;
}

static void add_qid(struct story *st, const char *qid)
{
	if (qid == NULL || *qid == '\0' || has_qid(st, qid))
		return;
	st->qids = xreallocarray(st->qids, st->n_qids + 1, sizeof(char *));
	st->qids[st->n_qids++] = xstrdup(qid);
}

static bool place_of(const struct trace_line *l, const char *uv_key, const char *uid_key,
		     struct place *p)
{
	const char *user = trace_get(l, "user"), *uv = trace_get(l, uv_key),
		   *uid = trace_get(l, uid_key);
	if (user == NULL || uv == NULL || uid == NULL)
		return false;
	p->user = (char *)user;
	p->folder = (char *)trace_get(l, strcmp(uv_key, "uidvalidity") == 0 ? "folder" : "to_folder");
	p->uidvalidity = strtoul(uv, NULL, 10);
	p->uid = strtoul(uid, NULL, 10);
	return true;
}

static bool has_place(const struct story *st, const struct place *p)
{
	for (size_t i = 0; i < st->n_places; i++)
		if (st->places[i].uidvalidity == p->uidvalidity && st->places[i].uid == p->uid &&
		    strcasecmp(st->places[i].user, p->user) == 0)
			return true;
	return false;
}

static void add_place(struct story *st, const struct place *p)
{
	if (has_place(st, p))
		return;
	st->places = xreallocarray(st->places, st->n_places + 1, sizeof(*st->places));
	st->places[st->n_places] = *p;
	st->places[st->n_places].user = xstrdup(p->user);
	st->places[st->n_places].folder = xstrdup(p->folder ? p->folder : "INBOX");
	st->n_places++;
}

/* msgid_bare - the Message-ID without blanks and angle brackets (into out) */
static const char *msgid_bare(const char *id, char *out, size_t outsz)
{
	id += strspn(id, " \t<");
	size_t len = strlen(id);
	while (len > 0 && (id[len - 1] == '>' || id[len - 1] == ' ' || id[len - 1] == '\t'))
		len--;
	snprintf(out, outsz, "%.*s", (int)len, id);
	return out;
}

/* S - a value made safe for the terminal: printable ASCII and well-formed UTF-8 above the C1
 * controls stay, any other byte is shown \xNN; cut at about 1 KB (static buffers, enough for
 * every value of one sentence) */
static const char *S(const char *v)
{
	static char bufs[32][1200];
	static unsigned k;
	char *b = bufs[k++ % 32];
	size_t o = 0, len = v ? strlen(v) : 0;
	for (size_t i = 0; i < len && o + 12 < sizeof(bufs[0]);) {
		unsigned char c = (unsigned char)v[i];
		uint32_t cp;
		size_t n = c >= 0x80 ? utf8_decode((const unsigned char *)v + i, len - i, &cp) : 0;
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			b[o++] = (char)c;
			i++;
		} else if (n > 0 && cp >= 0xa0) {
			memcpy(b + o, v + i, n);
			o += n;
			i += n;
		} else {
			o += (size_t)snprintf(b + o, 5, "\\x%02x", c);
			i++;
		}
	}
	b[o] = '\0';
	return b;
}

/* json_str - v as a JSON string; a byte that is not well-formed UTF-8 becomes \u00XX */
static void json_str(const char *v)
{
	putchar('"');
	size_t len = v ? strlen(v) : 0;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)v[i];
		uint32_t cp;
		size_t n = c >= 0x80 ? utf8_decode((const unsigned char *)v + i, len - i, &cp) : 0;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && n == 0))
			printf("\\u%04x", c);
		else if (n > 0) {
			fwrite(v + i, 1, n, stdout);
			i += n;
			continue;
		} else
			putchar(c);
		i++;
	}
	putchar('"');
}

/* describe - one event as a sentence */
static void describe(const struct trace_line *l, char *out, size_t outsz)
{
#define G(k) S(trace_get(l, k))
	const char *ev = l->event;
	const char *tls = trace_get(l, "tls");
	if (strcmp(ev, "received") == 0 && trace_get(l, "origin") != NULL) {
		snprintf(out, outsz, "created: %s report about %s, from <> to <%s>", G("kind"),
			 G("of"), G("to"));
	} else if (strcmp(ev, "received") == 0) {
		const char *user = trace_get(l, "user");
		snprintf(out, outsz,
			 "received on %s from %s [%s] (%s), %s, %s%s; from <%s>, %s recipient(s), "
			 "%s bytes, Message-ID %s",
			 G("role"), *G("helo") ? G("helo") : "(no HELO)", G("client"), G("session"),
			 tls != NULL && strcmp(tls, "no") != 0 ? "TLS" : "no TLS",
			 user != NULL && *user ? "authenticated as " : "not authenticated",
			 user != NULL && *user ? G("user") : "", G("from"), G("nrcpt"),
			 G("size"), *G("msgid") ? G("msgid") : "(none)");
		if (tls != NULL && strcmp(tls, "no") != 0) {
			size_t n = strlen(out);
			snprintf(out + n, outsz - n, "; TLS %s cipher %s", G("tls"), G("cipher"));
		}
		if (*G("folder")) {
			size_t n = strlen(out);
			snprintf(out + n, outsz - n, "; inbound checks: into folder %s", G("folder"));
		}
	} else if (strcmp(ev, "rcpt") == 0) {
		snprintf(out, outsz, "recipient <%s> (%s)", G("to"), G("route"));
	} else if (strcmp(ev, "stored") == 0) {
		snprintf(out, outsz, "stored for %s in folder %s (uid %s, uidvalidity %s, file %s)",
			 G("user"), G("folder"), G("uid"), G("uidvalidity"), G("file"));
	} else if (strcmp(ev, "store-busy") == 0) {
		snprintf(out, outsz, "mailbox of <%s> busy, queued for local delivery: %s", G("to"),
			 G("error"));
	} else if (strcmp(ev, "accepted") == 0) {
		snprintf(out, outsz, "accepted: answered %s (queued for %s recipient(s))",
			 G("reply"), G("queued"));
	} else if (strcmp(ev, "refused") == 0) {
		snprintf(out, outsz, "not accepted: answered %s", G("reply"));
	} else if (strcmp(ev, "forward") == 0) {
		snprintf(out, outsz, "forwarded copies queued as %s (sender %s)", G("qid"),
			 G("from"));
	} else if (strcmp(ev, "attempt") == 0) {
		snprintf(out, outsz, "attempt %s to <%s> via %s: %s (%s %s)", G("attempt"), G("to"),
			 G("relay"), G("status"), G("dsn"), G("reply"));
	} else if (strcmp(ev, "dsn") == 0) {
		snprintf(out, outsz, "%s report (DSN) to <%s> queued as %s", G("kind"), G("to"),
			 G("qid"));
	} else if (strcmp(ev, "seen") == 0) {
		snprintf(out, outsz, "read: \\Seen set by FETCH over IMAP, %s folder %s uid %s (%s, %s)",
			 G("user"), G("folder"), G("uid"), G("session"), G("client"));
	} else if (strcmp(ev, "flags") == 0) {
		snprintf(out, outsz, "flags changed over IMAP (STORE): \\Seen %s, \\Deleted %s; %s "
			 "folder %s uid %s (%s, %s)", strcmp(G("seen"), "1") == 0 ? "set" : "not set",
			 strcmp(G("deleted"), "1") == 0 ? "set" : "not set", G("user"), G("folder"),
			 G("uid"), G("session"), G("client"));
	} else if (strcmp(ev, "retr") == 0) {
		snprintf(out, outsz, "downloaded over POP3 (RETR) by %s (%s, %s)", G("user"),
			 G("session"), G("client"));
	} else if (strcmp(ev, "dele") == 0) {
		snprintf(out, outsz, "deleted over POP3 (DELE, committed at QUIT) by %s (%s)",
			 G("user"), G("session"));
	} else if (strcmp(ev, "expunged") == 0) {
		snprintf(out, outsz, "expunged over IMAP from %s folder %s uid %s (%s)", G("user"),
			 G("folder"), G("uid"), G("session"));
	} else if (strcmp(ev, "moved") == 0 || strcmp(ev, "copied") == 0) {
		snprintf(out, outsz, "%s over IMAP from %s folder %s uid %s to folder %s uid %s", ev,
			 G("user"), G("folder"), G("uid"), G("to_folder"), G("to_uid"));
	} else {
		size_t n = (size_t)snprintf(out, outsz, "%s", S(ev));
		for (size_t i = 0; i < l->n && n < outsz; i++)
			n += (size_t)snprintf(out + n, outsz - n, " %s=%s", S(l->f[i].key),
					      S(l->f[i].value));
	}
#undef G
}

static void emit(struct story *st, const struct trace_line *l)
{
	st->n_events++;
	if (st->json) {
		printf("{\"time\":");
		json_str(l->time);
		printf(",\"qid\":");
		if (l->qid)
			json_str(l->qid);
		else
			printf("null");
		printf(",\"event\":");
		json_str(l->event);
		for (size_t i = 0; i < l->n; i++) {
			putchar(',');
			json_str(l->f[i].key);
			putchar(':');
			json_str(l->f[i].value);
		}
		printf("}\n");
		return;
	}
	char text[4096];
	describe(l, text, sizeof(text));
	char when[40];
	snprintf(when, sizeof(when), "%s", l->time);
	when[10] = ' ';
	printf("%s  %-24s  %s\n", when, l->qid ? S(l->qid) : "", text);
}

/* follow - the line belongs to the story? Then learn what it links to. */
static bool follow(struct story *st, const struct trace_line *l)
{
	struct place p;
	bool in = false;
	if (l->qid != NULL) {
		in = has_qid(st, l->qid);
		if (!in && st->msgid != NULL && strcmp(l->event, "received") == 0) {
			const char *m = trace_get(l, "msgid");
			char bare[1024];
			if (m != NULL && strcmp(msgid_bare(m, bare, sizeof(bare)), st->msgid) == 0) {
				add_qid(st, l->qid);
				in = true;
			}
		}
	} else if (place_of(l, "uidvalidity", "uid", &p)) {
		in = has_place(st, &p);
	}
	if (!in)
		return false;
	if (strcmp(l->event, "stored") == 0 && place_of(l, "uidvalidity", "uid", &p))
		add_place(st, &p);
	if (strcmp(l->event, "dsn") == 0 || strcmp(l->event, "forward") == 0)
		add_qid(st, trace_get(l, "qid"));
	if ((strcmp(l->event, "moved") == 0 || strcmp(l->event, "copied") == 0) &&
	    place_of(l, "to_uidvalidity", "to_uid", &p))
		add_place(st, &p);
	return true;
}

/* read_journal - one pass over the day files, oldest first */
static int read_journal(struct story *st, const char *dir)
{
	char **files = trace_files(dir);
	if (files == NULL)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	for (size_t i = 0; files[i] != NULL; i++) {
		FILE *f = fopen(files[i], "re");
		if (f == NULL) {
			fprintf(stderr, "tern: %s: %m\n", files[i]);
			continue;
		}
		ssize_t n;
		while ((n = getline(&line, &cap, f)) > 0) {
			struct trace_line l;
			if (trace_parse_line(line, (size_t)n, &l) < 0)
				continue;	/* a torn or foreign line */
			if (follow(st, &l))
				emit(st, &l);
			trace_line_free(&l);
		}
		fclose(f);
	}
	free(line);
	for (size_t i = 0; files[i] != NULL; i++)
		free(files[i]);
	free(files);
	return 0;
}

struct queued_ctx {
	struct story *st;
	unsigned n;
};

/* print_queued - the story's messages still in the queue, recipient by recipient */
static void print_queued(void *ctx, const struct queue_msg_info *m)
{
	struct queued_ctx *c = ctx;
	if (!has_qid(c->st, m->qid))
		return;
	c->n++;
	for (size_t i = 0; i < m->n_rcpts; i++) {
		const struct queue_rcpt_info *r = &m->rcpts[i];
		char next[40] = "now";
		time_t nt = (time_t)r->next_try;
		struct tm tm;
		if (nt > time(NULL)) {
			gmtime_r(&nt, &tm);
			strftime(next, sizeof(next), "%Y-%m-%d %H:%M:%SZ", &tm);
		}
		if (c->st->json) {
			printf("{\"now\":\"queued\",\"qid\":");
			json_str(m->qid);
			printf(",\"to\":");
			json_str(r->address);
			printf(",\"state\":");
			json_str(r->state);
			printf(",\"attempts\":%d,\"next_try\":%lld,\"last_error\":", r->attempts,
			       (long long)r->next_try);
			json_str(r->last_error);
			printf("}\n");
		} else {
			printf("now: %s still queued for <%s>: %s, %d attempt(s), next try %s%s%s\n",
			       S(m->qid), S(r->address), S(r->state), r->attempts, next,
			       r->last_error ? ", last error: " : "", S(r->last_error));
		}
	}
}

/* print_place - where a stored copy is now: its flags from the mailbox index, or gone.
 * Opening the mailbox is what an IMAP SELECT does (it picks up files dropped in new/). */
static void print_place(const struct tern_config *cfg, const struct story *st,
			const struct place *p)
{
	char *dir = store_maildir_path(cfg->data_dir, p->user), *err = NULL;
	struct stat sb;
	struct store *s = NULL;
	struct store_mailbox *mb = NULL;
	const struct store_msg *m = NULL;
	size_t n = 0;
	const char *state = "no longer there (expunged, moved or deleted)";
	char flags[96] = "";
	if (stat(dir, &sb) < 0)
		state = "no such mailbox any more";
	else if (store_open(cfg->data_dir, p->user, &s, &err) < 0 ||
		 store_mailbox_open(s, p->folder, &mb, &err) < 0)
		state = "mailbox not readable now";
	else if (store_mailbox_uidvalidity(mb) == p->uidvalidity) {
		struct store_uid_range r = { (uint32_t)p->uid, (uint32_t)p->uid };
		if (store_mailbox_messages_in(mb, &r, 1, 0, &m, &n, &err) == 0 && n == 1) {
			static const struct { uint32_t bit; const char *name; } names[] = {
				{ STORE_F_SEEN, "\\Seen" }, { STORE_F_ANSWERED, "\\Answered" },
				{ STORE_F_FLAGGED, "\\Flagged" }, { STORE_F_DELETED, "\\Deleted" },
				{ STORE_F_DRAFT, "\\Draft" },
			};
			for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
				if (m->flags & names[i].bit)
					snprintf(flags + strlen(flags), sizeof(flags) - strlen(flags),
						 "%s%s", *flags ? " " : "", names[i].name);
			state = "there";
		}
	}
	if (st->json) {
		printf("{\"now\":\"mailbox\",\"user\":");
		json_str(p->user);
		printf(",\"folder\":");
		json_str(p->folder);
		printf(",\"uid\":%lu,\"state\":", p->uid);
		json_str(state);
		printf(",\"flags\":");
		json_str(flags);
		printf("}\n");
	} else if (strcmp(state, "there") == 0) {
		printf("now: in %s folder %s uid %lu, flags: %s\n", S(p->user), S(p->folder), p->uid,
		       *flags ? flags : "(none: unread)");
	} else {
		printf("now: %s folder %s uid %lu: %s\n", S(p->user), S(p->folder), p->uid, state);
	}
	free(err);
	store_mailbox_close(&mb);
	store_close(&s);
	free(dir);
}

int cmd_trace(int argc, char **argv)
{
	const char *id = NULL, *conf = NULL;
	bool json = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help, stdout);
			return 0;
		} else if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			conf = argv[++i];
		} else if (argv[i][0] != '-' && id == NULL) {
			id = argv[i];
		} else {
			fprintf(stderr, "tern: trace: unexpected argument %s\n%s", argv[i], help);
			return 64;
		}
	}
	if (id == NULL || *id == '\0') {
		fprintf(stderr, "tern: trace: needs a queue id or a Message-ID\n%s", help);
		return 64;
	}
	char *err = NULL;
	struct tern_config *cfg;
	if (conf == NULL) {
		cfg = config_dev();
		cli_dev_place_data(cfg, false);
	} else if ((cfg = config_load(conf, &err)) == NULL) {
		fprintf(stderr, "tern: %s\n", err);
		free(err);
		return 1;
	}
	if (cli_enter_data_dir(cfg) != 0) {
		config_free(&cfg);
		return 1;
	}
	char bare[1024];
	struct story st = { .json = json };
	add_qid(&st, id);
	st.msgid = msgid_bare(id, bare, sizeof(bare));
	char *dir = trace_dir(cfg->data_dir);
	int rc = 0;
	if (read_journal(&st, dir) < 0 && cfg->trace_days > 0)
		fprintf(stderr, "tern: no trace journal in %s yet\n", dir);
	/* messages still waiting */
	char *spool = config_path_in_data(cfg, "spool");
	struct queue *q = NULL;
	struct queued_ctx qc = { .st = &st };
	if (queue_open(spool, &q, &err) == 0)
		(void)queue_list(q, print_queued, &qc, &err);
	free(err);
	queue_close(&q);
	free(spool);
	for (size_t i = 0; i < st.n_places; i++)
		print_place(cfg, &st, &st.places[i]);
	if (st.n_events == 0 && qc.n == 0) {
		fprintf(stderr, "tern: %s: no such message in the trace journal (%s%s) or the "
				"queue\n", id, dir, cfg->trace_days == 0 ? ", which trace_days = 0 "
									 "turns off" : "");
		rc = 1;
	}
	free(dir);
	for (size_t i = 0; i < st.n_qids; i++)
		free(st.qids[i]);
	free(st.qids);
	for (size_t i = 0; i < st.n_places; i++) {
		free(st.places[i].user);
		free(st.places[i].folder);
	}
	free(st.places);
	config_free(&cfg);
	return rc;
}
