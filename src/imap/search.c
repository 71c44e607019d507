/* imap/search - SEARCH program parsing and matching (see search.h) */
#include "imap/search.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <wctype.h>

#include "lib/buf.h"
#include "lib/strnum.h"
#include "lib/utf8.h"
#include "lib/xmalloc.h"
#include "mime/date.h"
#include "mime/decode.h"
#include "mime/encword.h"
#include "mime/header.h"
#include "mime/tree.h"
#include "store/store.h"

#define DEFAULT_MAX_TEXT (16u * 1024 * 1024)

/* ---- case folding ---- */

static locale_t utf8_locale(void)
{
	static locale_t loc = (locale_t)0;
	if (loc == (locale_t)0)
		loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	return loc;
}

void imap_search_fold(const char *str, size_t len, buf *out)
{
	const unsigned char *s = (const unsigned char *)str;
	locale_t loc = utf8_locale();
	size_t i = 0;
	while (i < len) {
		if (s[i] < 0x80) {	/* the common case, without a library call */
			unsigned char c = s[i++];
			buf_putc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
			continue;
		}
		uint32_t cp;
		size_t n = utf8_decode(s + i, len - i, &cp);
		if (n == 0) {		/* not UTF-8: the byte as Latin-1 */
			cp = s[i];
			n = 1;
		}
		i += n;
		if (cp == 0xdf || cp == 0x1e9e) {	/* ß, ẞ: full case folding gives "ss" */
			buf_puts(out, "ss");
			continue;
		}
		if (loc != (locale_t)0)
			cp = (uint32_t)towlower_l((wint_t)cp, loc);
		utf8_append(out, cp);
	}
}

/* ---- parsing ---- */

int imap_date_parse(const char *s, int64_t *day_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *dash1 = strchr(s, '-');
	if (dash1 == NULL || dash1 == s || dash1 - s > 2)
		return -1;
	uint64_t d, y;
	if (strnum_u64(s, (size_t)(dash1 - s), 31, &d) < 0 || d == 0)
		return -1;
	const char *m = dash1 + 1;
	if (strlen(m) != 8 || m[3] != '-')
		return -1;
	int mon = -1;
	for (int i = 0; i < 12; i++)
		if (strncasecmp(m, months + 3 * i, 3) == 0)
			mon = i;
	if (mon < 0 || strnum_u64(m + 4, 4, 9999, &y) < 0)
		return -1;
	struct tm tm = { .tm_mday = (int)d, .tm_mon = mon, .tm_year = (int)y - 1900 };
	time_t t = timegm(&tm);
	if (tm.tm_mday != (int)d)	/* 31-Feb */
		return -1;
	*day_r = (int64_t)(t >= 0 ? t / 86400 : (t - 86399) / 86400);
	return 0;
}

struct parse_ctx {
	const struct imap_arg *args;
	size_t n, pos;
	size_t keys;
	const char *error;
};

static int parse_key(struct parse_ctx *c, struct imap_search_key *k, size_t depth);

static const struct imap_arg *next_arg(struct parse_ctx *c)
{
	return c->pos < c->n ? &c->args[c->pos++] : NULL;
}

/* string_arg - the next argument as an astring, or NULL with the error set */
static const struct imap_arg *string_arg(struct parse_ctx *c)
{
	const struct imap_arg *a = next_arg(c);
	if (a == NULL || !imap_arg_is_astring(a)) {
		c->error = "Missing or bad search string";
		return NULL;
	}
	return a;
}

static char *fold_copy(const struct imap_arg *a)
{
	buf b;
	buf_init(&b, 0);
	imap_search_fold(a->str, a->len, &b);
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static const struct {
	const char *name;
	enum imap_search_op op;
	uint32_t flags;
} flag_keys[] = {
	{ "ANSWERED", IMAP_SK_FLAGS_SET, STORE_F_ANSWERED },
	{ "DELETED", IMAP_SK_FLAGS_SET, STORE_F_DELETED },
	{ "DRAFT", IMAP_SK_FLAGS_SET, STORE_F_DRAFT },
	{ "FLAGGED", IMAP_SK_FLAGS_SET, STORE_F_FLAGGED },
	{ "SEEN", IMAP_SK_FLAGS_SET, STORE_F_SEEN },
	{ "RECENT", IMAP_SK_FLAGS_SET, STORE_F_RECENT },
	{ "UNANSWERED", IMAP_SK_FLAGS_CLEAR, STORE_F_ANSWERED },
	{ "UNDELETED", IMAP_SK_FLAGS_CLEAR, STORE_F_DELETED },
	{ "UNDRAFT", IMAP_SK_FLAGS_CLEAR, STORE_F_DRAFT },
	{ "UNFLAGGED", IMAP_SK_FLAGS_CLEAR, STORE_F_FLAGGED },
	{ "UNSEEN", IMAP_SK_FLAGS_CLEAR, STORE_F_SEEN },
	{ "OLD", IMAP_SK_FLAGS_CLEAR, STORE_F_RECENT },
};

static const struct {
	const char *name;
	enum imap_search_op op;
} date_keys[] = {
	{ "BEFORE", IMAP_SK_BEFORE },	      { "ON", IMAP_SK_ON },
	{ "SINCE", IMAP_SK_SINCE },	      { "SENTBEFORE", IMAP_SK_SENTBEFORE },
	{ "SENTON", IMAP_SK_SENTON },	      { "SENTSINCE", IMAP_SK_SENTSINCE },
};

static const char *const header_keys[] = { "BCC", "CC", "FROM", "SUBJECT", "TO" };

/* parse_children - n keys into k->children */
static int parse_children(struct parse_ctx *c, struct imap_search_key *k, size_t n, size_t depth)
{
	k->children = xcalloc(n, sizeof(*k->children));
	k->n_children = n;
	for (size_t i = 0; i < n; i++)
		if (parse_key(c, &k->children[i], depth + 1) < 0)
			return -1;
	return 0;
}

static int parse_list(const struct imap_arg *list, size_t n, struct imap_search_key *k,
		      struct parse_ctx *outer, size_t depth)
{
	struct parse_ctx c = { .args = list, .n = n, .keys = outer->keys };
	k->op = IMAP_SK_AND;
	size_t cap = 0;
	int r = 0;
	while (c.pos < c.n && r == 0) {
		if (k->n_children == cap) {
			cap = cap ? cap * 2 : 4;
			k->children = xreallocarray(k->children, cap, sizeof(*k->children));
		}
		memset(&k->children[k->n_children], 0, sizeof(*k->children));
		r = parse_key(&c, &k->children[k->n_children++], depth + 1);
	}
	outer->keys = c.keys;
	if (r < 0)
		outer->error = c.error;
	return r;
}

static int parse_key(struct parse_ctx *c, struct imap_search_key *k, size_t depth)
{
	if (depth > IMAP_SEARCH_MAX_DEPTH) {
		c->error = "Search program nested too deeply";
		return -1;
	}
	if (++c->keys > IMAP_SEARCH_MAX_KEYS) {
		c->error = "Too many search keys";
		return -1;
	}
	const struct imap_arg *a = next_arg(c);
	if (a == NULL) {
		c->error = "Missing search key";
		return -1;
	}
	if (a->type == IMAP_ARG_LIST) {
		if (a->n_list == 0) {
			c->error = "Empty search key list";
			return -1;
		}
		return parse_list(a->list, a->n_list, k, c, depth);
	}
	if (a->type != IMAP_ARG_ATOM) {
		c->error = "Bad search key";
		return -1;
	}
	const char *name = a->str;
	if ((name[0] >= '0' && name[0] <= '9') || name[0] == '*' || name[0] == '$') {
		k->op = IMAP_SK_SEQSET;
		if (imap_seqset_parse(name, IMAP_SEARCH_MAX_KEYS, &k->set, &c->error) < 0)
			return -1;
		return 0;
	}
	if (strcasecmp(name, "ALL") == 0) {
		k->op = IMAP_SK_ALL;
		return 0;
	}
	if (strcasecmp(name, "NEW") == 0) {	/* RECENT UNSEEN */
		k->op = IMAP_SK_AND;
		k->children = xcalloc(2, sizeof(*k->children));
		k->n_children = 2;
		k->children[0] = (struct imap_search_key){ .op = IMAP_SK_FLAGS_SET,
							    .flags = STORE_F_RECENT };
		k->children[1] = (struct imap_search_key){ .op = IMAP_SK_FLAGS_CLEAR,
							    .flags = STORE_F_SEEN };
		return 0;
	}
	for (size_t i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++) {
		if (strcasecmp(name, flag_keys[i].name) == 0) {
			k->op = flag_keys[i].op;
			k->flags = flag_keys[i].flags;
			return 0;
		}
	}
	if (strcasecmp(name, "NOT") == 0) {
		k->op = IMAP_SK_NOT;
		return parse_children(c, k, 1, depth);
	}
	if (strcasecmp(name, "OR") == 0) {
		k->op = IMAP_SK_OR;
		return parse_children(c, k, 2, depth);
	}
	if (strcasecmp(name, "KEYWORD") == 0 || strcasecmp(name, "UNKEYWORD") == 0) {
		k->op = strcasecmp(name, "KEYWORD") == 0 ? IMAP_SK_KEYWORD : IMAP_SK_UNKEYWORD;
		const struct imap_arg *v = next_arg(c);
		if (v == NULL || v->type != IMAP_ARG_ATOM || v->str[0] == '\\') {
			c->error = "Bad keyword";
			return -1;
		}
		k->str = xstrdup(v->str);
		return 0;
	}
	if (strcasecmp(name, "UID") == 0) {
		const struct imap_arg *v = next_arg(c);
		k->op = IMAP_SK_UIDSET;
		if (v == NULL || v->type != IMAP_ARG_ATOM) {
			c->error = "Missing UID set";
			return -1;
		}
		return imap_seqset_parse(v->str, IMAP_SEARCH_MAX_KEYS, &k->set, &c->error);
	}
	if (strcasecmp(name, "LARGER") == 0 || strcasecmp(name, "SMALLER") == 0 ||
	    strcasecmp(name, "MODSEQ") == 0) {
		k->op = strcasecmp(name, "LARGER") == 0	   ? IMAP_SK_LARGER
			: strcasecmp(name, "SMALLER") == 0 ? IMAP_SK_SMALLER
							   : IMAP_SK_MODSEQ;
		const struct imap_arg *v = next_arg(c);
		/* MODSEQ [entry-name entry-type] number: the entry is for per-flag modseqs,
		 * which we do not keep separately; it is accepted and ignored (RFC 7162 §3.1.5) */
		if (k->op == IMAP_SK_MODSEQ && v != NULL && v->type == IMAP_ARG_QUOTED) {
			const struct imap_arg *type = next_arg(c);
			if (type == NULL || type->type != IMAP_ARG_ATOM ||
			    (strcasecmp(type->str, "priv") != 0 &&
			     strcasecmp(type->str, "shared") != 0 && strcasecmp(type->str, "all") != 0)) {
				c->error = "Bad MODSEQ entry type";
				return -1;
			}
			v = next_arg(c);
		}
		if (v == NULL || v->type != IMAP_ARG_ATOM ||
		    strnum_u64z(v->str, INT64_MAX, &k->num) < 0) {
			c->error = "Bad number";
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(date_keys) / sizeof(date_keys[0]); i++) {
		if (strcasecmp(name, date_keys[i].name) == 0) {
			k->op = date_keys[i].op;
			const struct imap_arg *v = next_arg(c);
			if (v == NULL || !imap_arg_is_astring(v) || imap_date_parse(v->str, &k->day) < 0) {
				c->error = "Bad date";
				return -1;
			}
			return 0;
		}
	}
	for (size_t i = 0; i < sizeof(header_keys) / sizeof(header_keys[0]); i++) {
		if (strcasecmp(name, header_keys[i]) == 0) {
			const struct imap_arg *v = string_arg(c);
			if (v == NULL)
				return -1;
			k->op = IMAP_SK_HEADER;
			k->header = xstrdup(header_keys[i]);
			k->str = fold_copy(v);
			return 0;
		}
	}
	if (strcasecmp(name, "HEADER") == 0) {
		const struct imap_arg *f = string_arg(c);
		if (f == NULL)
			return -1;
		const struct imap_arg *v = string_arg(c);
		if (v == NULL)
			return -1;
		if (f->len == 0 || strpbrk(f->str, ": \t") != NULL) {
			c->error = "Bad header field name";
			return -1;
		}
		k->op = IMAP_SK_HEADER;
		k->header = xstrdup(f->str);
		k->str = fold_copy(v);
		return 0;
	}
	if (strcasecmp(name, "BODY") == 0 || strcasecmp(name, "TEXT") == 0) {
		const struct imap_arg *v = string_arg(c);
		if (v == NULL)
			return -1;
		k->op = strcasecmp(name, "BODY") == 0 ? IMAP_SK_BODY : IMAP_SK_TEXT;
		k->str = fold_copy(v);
		return 0;
	}
	c->error = "Unknown search key";
	return -1;
}

static void key_free(struct imap_search_key *k)
{
	for (size_t i = 0; i < k->n_children; i++)
		key_free(&k->children[i]);
	free(k->children);
	free(k->header);
	free(k->str);
	imap_seqset_free(&k->set);
}

void imap_search_free(struct imap_search_key **root)
{
	if (*root == NULL)
		return;
	key_free(*root);
	free(*root);
	*root = NULL;
}

int imap_search_parse(const struct imap_arg *args, size_t n, struct imap_search_key **root_r,
		      const char **error_r)
{
	struct imap_search_key *root = xcalloc(1, sizeof(*root));
	struct parse_ctx c = { 0 };
	if (n == 0) {
		*error_r = "Missing search key";
		free(root);
		return -1;
	}
	if (parse_list(args, n, root, &c, 0) < 0) {
		*error_r = c.error;
		imap_search_free(&root);
		return -1;
	}
	*root_r = root;
	return 0;
}

unsigned imap_search_needs(const struct imap_search_key *k)
{
	unsigned need = IMAP_SEARCH_NEED_INDEX;
	switch (k->op) {
	case IMAP_SK_HEADER:
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		need = IMAP_SEARCH_NEED_HEADER;
		break;
	case IMAP_SK_BODY:
	case IMAP_SK_TEXT:
		need = IMAP_SEARCH_NEED_BODY;
		break;
	default:
		break;
	}
	for (size_t i = 0; i < k->n_children; i++) {
		unsigned c = imap_search_needs(&k->children[i]);
		if (c > need)
			need = c;
	}
	return need;
}

/* any_key - does some key of the tree satisfy pred? */
static bool any_key(const struct imap_search_key *k, bool (*pred)(const struct imap_search_key *))
{
	if (pred(k))
		return true;
	for (size_t i = 0; i < k->n_children; i++)
		if (any_key(&k->children[i], pred))
			return true;
	return false;
}

static bool is_saved_set(const struct imap_search_key *k)
{
	return (k->op == IMAP_SK_SEQSET || k->op == IMAP_SK_UIDSET) && k->set.saved;
}

static bool is_modseq(const struct imap_search_key *k)
{
	return k->op == IMAP_SK_MODSEQ;
}

bool imap_search_uses_saved(const struct imap_search_key *k)
{
	return any_key(k, is_saved_set);
}

bool imap_search_uses_modseq(const struct imap_search_key *k)
{
	return any_key(k, is_modseq);
}

bool imap_search_headers_within(const struct imap_search_key *k,
				bool (*field)(const char *name, size_t len))
{
	switch (k->op) {
	case IMAP_SK_HEADER:
		if (!field(k->header, strlen(k->header)))
			return false;
		break;
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		if (!field("Date", 4))
			return false;
		break;
	default:
		break;
	}
	for (size_t i = 0; i < k->n_children; i++)
		if (!imap_search_headers_within(&k->children[i], field))
			return false;
	return true;
}

/* ---- matching ---- */

struct match_ctx {
	const struct imap_search_msg *m;
	const struct imap_search_ctx *ctx;
	bool have_headers;
	struct mime_headers h;		/* the top header, parsed once per message */
	bool have_body;
	buf body;			/* folded text of every text part */
	bool have_htext;
	buf htext;			/* folded, decoded text of the whole header */
};

static bool in_saved(const struct imap_search_ctx *ctx, uint32_t uid)
{
	size_t lo = 0, hi = ctx->n_saved;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (ctx->saved_uids[mid] == uid)
			return true;
		if (ctx->saved_uids[mid] < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static bool has_keyword(const char *list, const char *k)
{
	size_t kl = strlen(k);
	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *sp = strchr(p, ' ');
		size_t l = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (l == kl && strncasecmp(p, k, l) == 0)
			return true;
		p = sp != NULL ? sp + 1 : NULL;
	}
	return false;
}

/* contains - the folded text holds the needle (binary-safe) */
static bool contains(const buf *text, const char *needle)
{
	size_t n = strlen(needle);
	if (n == 0)
		return true;
	return text->data != NULL && memmem(text->data, text->len, needle, n) != NULL;
}

static void load_headers(struct match_ctx *mc)
{
	if (mc->have_headers)
		return;
	mc->have_headers = true;
	mime_headers_init(&mc->h);
	const char *err;
	struct mime_header_limits lim = { .max_size = 1024 * 1024, .max_fields = 10000 };
	mime_headers_parse(&mc->h, mc->m->data != NULL ? mc->m->data : "", mc->m->len, true, &lim,
			   &err);
}

/* field_text - append the folded, decoded value of field i */
static void field_text(struct match_ctx *mc, unsigned i, buf *out)
{
	const struct mime_header_field *f = &mc->h.fields[i];
	buf unf, dec;
	buf_init(&unf, 0);
	buf_init(&dec, 0);
	mime_header_unfold(mc->m->data + f->value_offset, f->value_len, &unf);
	mime_encword_decode(unf.data != NULL ? unf.data : "", unf.len, &dec);
	imap_search_fold(dec.data != NULL ? dec.data : "", dec.len, out);
	buf_free(&unf);
	buf_free(&dec);
}

static bool match_header(struct match_ctx *mc, const struct imap_search_key *k)
{
	load_headers(mc);
	for (int i = mime_headers_find(&mc->h, mc->m->data, k->header, 0); i >= 0;
	     i = mime_headers_find(&mc->h, mc->m->data, k->header, (unsigned)i + 1)) {
		if (k->str[0] == '\0')
			return true;	/* HEADER x "": the field exists */
		buf t;
		buf_init(&t, 0);
		field_text(mc, (unsigned)i, &t);
		bool hit = contains(&t, k->str);
		buf_free(&t);
		if (hit)
			return true;
	}
	return false;
}

static bool match_sent(struct match_ctx *mc, const struct imap_search_key *k)
{
	load_headers(mc);
	int i = mime_headers_find(&mc->h, mc->m->data, "Date", 0);
	if (i < 0)
		return false;
	const struct mime_header_field *f = &mc->h.fields[i];
	time_t t;
	int tz;
	if (mime_date_parse(mc->m->data + f->value_offset, f->value_len, &t, &tz) < 0)
		return false;
	int64_t local = (int64_t)t + (int64_t)tz * 60;
	int64_t day = local >= 0 ? local / 86400 : (local - 86399) / 86400;
	switch (k->op) {
	case IMAP_SK_SENTBEFORE:
		return day < k->day;
	case IMAP_SK_SENTON:
		return day == k->day;
	default:
		return day >= k->day;
	}
}

/* part_text - append the folded, decoded text of part p (CTE undone, charset to UTF-8) */
static void part_text(struct match_ctx *mc, const struct mime_part *p, size_t budget)
{
	const struct imap_search_msg *m = mc->m;
	if (p->body_offset > m->len)
		return;
	size_t size = (size_t)(p->body_size < m->len - p->body_offset ? p->body_size
								       : m->len - p->body_offset);
	if (size > budget)
		size = budget;
	const char *src = m->data + p->body_offset;
	buf raw, utf8;
	buf_init(&raw, 0);
	buf_init(&utf8, 0);
	if (p->encoding != NULL && strcmp(p->encoding, "base64") == 0)
		mime_base64_decode(src, size, &raw);
	else if (p->encoding != NULL && strcmp(p->encoding, "quoted-printable") == 0)
		mime_qp_decode(src, size, false, &raw);
	else
		buf_append(&raw, src, size);
	const char *charset = mime_part_param(p, "charset");
	if (charset == NULL || mime_charset_to_utf8(charset, raw.data != NULL ? raw.data : "",
						    raw.len, &utf8) != 0) {
		buf_reset(&utf8);
		mime_utf8_sanitize(raw.data != NULL ? raw.data : "", raw.len, &utf8);
	}
	imap_search_fold(utf8.data != NULL ? utf8.data : "", utf8.len, &mc->body);
	buf_putc(&mc->body, '\n');	/* no match across parts */
	buf_free(&raw);
	buf_free(&utf8);
}

static void load_body(struct match_ctx *mc)
{
	if (mc->have_body)
		return;
	mc->have_body = true;
	buf_init(&mc->body, 0);
	const struct mime_tree *t = mc->m->tree;
	size_t max = mc->ctx->max_text != 0 ? mc->ctx->max_text : DEFAULT_MAX_TEXT;
	if (t == NULL || mc->m->data == NULL)
		return;
	for (uint32_t i = 0; i < t->count && mc->body.len < max; i++) {
		const struct mime_part *p = &t->parts[i];
		if ((p->flags & (MIME_PART_MULTIPART | MIME_PART_MESSAGE)) && p->first_child != MIME_NO_PART)
			continue;
		if (strcmp(p->type, "text") != 0)
			continue;
		part_text(mc, p, max - mc->body.len);
	}
}

static void load_header_text(struct match_ctx *mc)
{
	if (mc->have_htext)
		return;
	mc->have_htext = true;
	load_headers(mc);
	buf_init(&mc->htext, 0);
	for (unsigned i = 0; i < mc->h.count; i++) {
		const struct mime_header_field *f = &mc->h.fields[i];
		imap_search_fold(mc->m->data + f->offset, f->name_len, &mc->htext);
		buf_puts(&mc->htext, ": ");
		field_text(mc, i, &mc->htext);
		buf_putc(&mc->htext, '\n');
	}
}

static bool match(struct match_ctx *mc, const struct imap_search_key *k)
{
	const struct imap_search_msg *m = mc->m;
	int64_t iday;
	switch (k->op) {
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->n_children; i++)
			if (!match(mc, &k->children[i]))
				return false;
		return true;
	case IMAP_SK_OR:
		return match(mc, &k->children[0]) || match(mc, &k->children[1]);
	case IMAP_SK_NOT:
		return !match(mc, &k->children[0]);
	case IMAP_SK_FLAGS_SET:
		return (m->flags & k->flags) == k->flags;
	case IMAP_SK_FLAGS_CLEAR:
		return (m->flags & k->flags) == 0;
	case IMAP_SK_KEYWORD:
		return has_keyword(m->keywords, k->str);
	case IMAP_SK_UNKEYWORD:
		return !has_keyword(m->keywords, k->str);
	case IMAP_SK_SEQSET:
		if (k->set.saved)
			return in_saved(mc->ctx, m->uid);
		return imap_seqset_contains(&k->set, m->seq, mc->ctx->max_seq);
	case IMAP_SK_UIDSET:
		if (k->set.saved)
			return in_saved(mc->ctx, m->uid);
		return imap_seqset_contains(&k->set, m->uid, mc->ctx->max_uid);
	case IMAP_SK_LARGER:
		return m->size > k->num;
	case IMAP_SK_SMALLER:
		return m->size < k->num;
	case IMAP_SK_MODSEQ:
		return m->modseq >= k->num;
	case IMAP_SK_BEFORE:
	case IMAP_SK_ON:
	case IMAP_SK_SINCE:
		iday = m->internal_date >= 0 ? m->internal_date / 86400
					     : (m->internal_date - 86399) / 86400;
		return k->op == IMAP_SK_BEFORE ? iday < k->day
		       : k->op == IMAP_SK_ON   ? iday == k->day
					       : iday >= k->day;
	case IMAP_SK_SENTBEFORE:
	case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return match_sent(mc, k);
	case IMAP_SK_HEADER:
		return match_header(mc, k);
	case IMAP_SK_BODY:
		load_body(mc);
		return contains(&mc->body, k->str);
	case IMAP_SK_TEXT:
		load_header_text(mc);
		if (contains(&mc->htext, k->str))
			return true;
		load_body(mc);
		return contains(&mc->body, k->str);
	}
	return false;
}

bool imap_search_match(const struct imap_search_key *root, const struct imap_search_msg *m,
		       const struct imap_search_ctx *ctx)
{
	struct match_ctx mc = { .m = m, .ctx = ctx };
	bool r = match(&mc, root);
	if (mc.have_headers)
		mime_headers_free(&mc.h);
	if (mc.have_body)
		buf_free(&mc.body);
	if (mc.have_htext)
		buf_free(&mc.htext);
	return r;
}
