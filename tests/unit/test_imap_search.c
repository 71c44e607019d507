/* test_imap_search - SEARCH programs: parsing (every key, nesting, errors) and matching
 * against index data and real corpus messages (decoded headers, encoded bodies, charsets,
 * Unicode case-insensitivity, sent dates in their own zone). */
#include <stdlib.h>
#include <string.h>

#include "imap/parser.h"
#include "imap/search.h"
#include "lib/fs.h"
#include "mime/tree.h"
#include "store/store.h"
#include "test.h"

/* program - parse "t SEARCH <text>" and build the search tree; NULL with *err on error */
static struct imap_search_key *program(const char *text, const char **err)
{
	struct imap_parser *p = imap_parser_new(NULL);
	char line[4096];
	snprintf(line, sizeof(line), "t SEARCH %s\r\n", text);
	size_t used;
	struct imap_search_key *k = NULL;
	if (imap_parser_feed(p, line, strlen(line), &used) == IMAP_PARSE_COMMAND) {
		const struct imap_command *c = imap_parser_command(p);
		if (imap_search_parse(c->args, c->n_args, &k, err) < 0)
			k = NULL;
	} else {
		*err = "syntax";
	}
	imap_parser_free(&p);
	return k;
}

struct msgfile {
	char *data;
	size_t len;
	struct mime_tree *tree;
};

static unsigned summary_checks;

static bool matches(const char *text, const struct imap_search_msg *m)
{
	const char *err = NULL;
	struct imap_search_key *k = program(text, &err);
	if (k == NULL) {
		fprintf(stderr, "refused: %s (%s)\n", text, err);
		CHECK(0);
		return false;
	}
	uint32_t saved[] = { 2, 7 };
	struct imap_search_ctx ctx = { .max_seq = 10, .max_uid = 20, .saved_uids = saved,
				       .n_saved = 2 };
	bool r = imap_search_match(k, m, &ctx);
	/* what SEARCH does with a cached tree: header keys on summary fields are matched
	 * against the summary alone, with the same result */
	if (imap_search_needs(k) == IMAP_SEARCH_NEED_HEADER && m->tree != NULL &&
	    m->tree->summary != NULL && imap_search_headers_within(k, mime_summary_field)) {
		struct imap_search_msg sm = *m;
		sm.data = m->tree->summary;
		sm.len = m->tree->summary_len;
		summary_checks++;
		if (imap_search_match(k, &sm, &ctx) != r) {
			fprintf(stderr, "the summary answers otherwise: %s\n", text);
			CHECK(0);
		}
	}
	imap_search_free(&k);
	return r;
}

#define YES(text, m) do { if (!matches(text, m)) { fprintf(stderr, "no match: %s\n", text); CHECK(0); } } while (0)
#define NO(text, m) do { if (matches(text, m)) { fprintf(stderr, "matched: %s\n", text); CHECK(0); } } while (0)

static void test_index_keys(void)
{
	struct imap_search_msg m = {
		.seq = 3, .uid = 7, .flags = STORE_F_SEEN | STORE_F_RECENT,
		.keywords = "$Junk Work", .size = 1000, .internal_date = 1704067200 + 3600, /* 1 Jan 2024 01:00 UTC */
		.modseq = 42,
	};
	YES("ALL", &m);
	YES("SEEN", &m);
	NO("UNSEEN", &m);
	YES("RECENT", &m);
	NO("NEW", &m);		/* recent but seen */
	NO("OLD", &m);
	YES("UNFLAGGED UNDELETED UNANSWERED UNDRAFT", &m);
	NO("FLAGGED", &m);
	YES("KEYWORD work", &m);
	NO("KEYWORD Home", &m);
	YES("UNKEYWORD Home", &m);
	YES("3", &m);
	YES("1:5", &m);
	YES("2,3,9", &m);
	NO("4:*", &m);
	YES("*:3", &m);
	YES("UID 7", &m);
	YES("UID 5:*", &m);
	NO("UID 8:10", &m);
	YES("$", &m);		/* UID 7 is in the saved result */
	YES("UID $", &m);
	YES("LARGER 999 SMALLER 1001", &m);
	NO("LARGER 1000", &m);
	YES("ON 1-Jan-2024", &m);
	YES("SINCE 1-Jan-2024", &m);
	NO("SINCE 2-Jan-2024", &m);
	YES("BEFORE 2-Jan-2024", &m);
	NO("BEFORE 1-Jan-2024", &m);
	YES("ON \"1-jan-2024\"", &m);
	YES("MODSEQ 42", &m);
	NO("MODSEQ 43", &m);
	YES("MODSEQ \"/flags/\\\\draft\" all 40", &m);
	YES("OR FLAGGED SEEN", &m);
	NO("NOT SEEN", &m);
	YES("NOT NOT SEEN", &m);
	YES("(SEEN (RECENT UID 7)) OR 1 2:4", &m);
	NO("(SEEN FLAGGED)", &m);
}

static void load(const char *name, struct msgfile *f, struct imap_search_msg *m)
{
	char *path;
	if (asprintf(&path, "tests/mime-corpus/%s.eml", name) < 0)
		abort();
	CHECK(fs_read_file(path, 1 << 20, &f->data, &f->len) == 0);
	free(path);
	f->tree = mime_tree_parse(f->data, f->len, NULL);
	*m = (struct imap_search_msg){ .seq = 1, .uid = 1, .keywords = "", .data = f->data,
					.len = f->len, .tree = f->tree };
}

static void unload(struct msgfile *f)
{
	mime_tree_free(&f->tree);
	free(f->data);
}

static void test_text_keys(void)
{
	struct msgfile f;
	struct imap_search_msg m;
	load("02-alternative", &f, &m);
	YES("FROM \"jörg\"", &m);			/* an encoded word, decoded */
	YES("FROM \"JÖRG\"", &m);			/* Unicode case-insensitive */
	YES("FROM joerg@example.de", &m);
	YES("SUBJECT \"GRÜSSE\"", &m);		/* ß folds to ss */
	YES("SUBJECT \"grüße\"", &m);
	NO("SUBJECT hello", &m);
	YES("TO team", &m);
	NO("CC team", &m);
	YES("HEADER MIME-Version 1.0", &m);
	YES("HEADER mime-version \"\"", &m);	/* the field exists */
	NO("HEADER X-Missing \"\"", &m);
	YES("BODY \"grüße\"", &m);		/* quoted-printable text/plain, decoded */
	YES("BODY \"<P>GR\"", &m);		/* the html part is text too */
	NO("BODY \"multi-part message\"", &m);	/* a multipart's preamble is not a part's text */
	NO("BODY joerg", &m);			/* BODY does not look at the header */
	YES("TEXT joerg", &m);			/* TEXT does */
	YES("TEXT {7+}\r\ngrüße", &m);		/* a literal argument */
	NO("SENTON 1-Jan-2024", &m);		/* no Date: field */
	unload(&f);

	load("15-encoded-subjects", &f, &m);
	YES("FROM \"ПРИВЕТ\"", &m);		/* koi8-r, upper-case Cyrillic in the needle */
	YES("TO \"müller\"", &m);			/* windows-1252 */
	YES("SUBJECT \"café €uro\"", &m);	/* utf-8 and iso-8859-15 words joined */
	unload(&f);

	load("01-plain", &f, &m);
	/* Date: Mon, 1 Jan 2024 10:00:00 +0100 */
	YES("SENTON 1-Jan-2024", &m);
	YES("SENTSINCE 1-Jan-2024 SENTBEFORE 2-Jan-2024", &m);
	NO("SENTBEFORE 1-Jan-2024", &m);
	YES("BODY \"HOW ARE\"", &m);
	unload(&f);

	/* the sent date's own day: 00:30 +0100 is still 1 Jan although it is 31 Dec in UTC */
	const char *msg = "Date: Mon, 1 Jan 2024 00:30:00 +0100\r\n\r\nx\r\n";
	struct mime_tree *t = mime_tree_parse(msg, strlen(msg), NULL);
	m = (struct imap_search_msg){ .seq = 1, .uid = 1, .keywords = "", .data = msg,
				      .len = strlen(msg), .tree = t };
	YES("SENTON 1-Jan-2024", &m);
	mime_tree_free(&t);
	CHECK(summary_checks >= 15);	/* the summary was tried on most keys above */

	/* which programs a summary can answer */
	static const struct {
		const char *text;
		bool within;
	} w[] = {
		{ "SEEN", true }, { "FROM x SUBJECT y TO z CC a BCC b", true },
		{ "SENTSINCE 1-Jan-2024", true }, { "HEADER Message-ID x", true },
		{ "HEADER in-reply-to x", true }, { "OR SUBJECT x NOT HEADER Sender y", true },
		{ "HEADER References x", false }, { "OR SUBJECT x HEADER X-Spam y", false },
		{ "NOT (SEEN HEADER Received x)", false },
	};
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		const char *err;
		struct imap_search_key *k = program(w[i].text, &err);
		CHECK(k != NULL);
		if (k != NULL && imap_search_headers_within(k, mime_summary_field) != w[i].within) {
			fprintf(stderr, "headers_within wrong: %s\n", w[i].text);
			CHECK(0);
		}
		imap_search_free(&k);
	}
}

static void test_errors(void)
{
	const char *bad[] = {
		"", "FOO", "FROM", "HEADER x", "KEYWORD", "KEYWORD \\Seen", "UID", "UID x",
		"LARGER", "LARGER -1", "LARGER 1x", "BEFORE", "BEFORE 31-Feb-2024",
		"BEFORE 1-Foo-2024", "BEFORE 2024-01-01", "ON 1-Jan-24", "NOT", "OR SEEN", "()",
		"0", "1:0", "MODSEQ", "MODSEQ \"/flags/x\" bad 1", "HEADER \"a:b\" x",
		"((((((((((((((((((((((((((((((((((SEEN))))))))))))))))))))))))))))))))))",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;
		struct imap_search_key *k = program(bad[i], &err);
		if (k != NULL) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
			imap_search_free(&k);
		} else {
			CHECK(err != NULL);
		}
	}
	/* what a program needs */
	const char *err;
	struct imap_search_key *k = program("SEEN UID 1:5", &err);
	CHECK(k != NULL && imap_search_needs(k) == IMAP_SEARCH_NEED_INDEX && !imap_search_uses_saved(k));
	imap_search_free(&k);
	k = program("OR FROM x SEEN", &err);
	CHECK(k != NULL && imap_search_needs(k) == IMAP_SEARCH_NEED_HEADER);
	imap_search_free(&k);
	k = program("NOT (SEEN BODY x) $", &err);
	CHECK(k != NULL && imap_search_needs(k) == IMAP_SEARCH_NEED_BODY && imap_search_uses_saved(k));
	imap_search_free(&k);
	CHECK(!imap_search_uses_modseq(k = program("SEEN UID 1:5", &err)));
	imap_search_free(&k);
	CHECK(imap_search_uses_modseq(k = program("MODSEQ 5", &err)));
	imap_search_free(&k);
	CHECK(imap_search_uses_modseq(k = program("OR NOT MODSEQ 5 LARGER 50000", &err)));
	imap_search_free(&k);
	int64_t day;
	CHECK(imap_date_parse("1-Jan-1970", &day) == 0 && day == 0);
	CHECK(imap_date_parse("29-Feb-2024", &day) == 0);
	CHECK(imap_date_parse("29-Feb-2023", &day) == -1);
}

TEST_MAIN(TEST(test_index_keys), TEST(test_text_keys), TEST(test_errors))
