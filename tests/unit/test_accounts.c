/* test_accounts - users, passwords and alias resolution in a temporary tern.db */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/accounts.h"
#include "lib/buf.h"
#include "test.h"

static char tmpdir[] = "/tmp/tern-test-accounts-XXXXXX";
static char dbpath[128];

/* open_db - a fresh database for one test (the previous one removed). */
static struct accounts *open_db(void)
{
	static int seq;
	char *err = NULL;
	struct accounts *a = NULL;
	snprintf(dbpath, sizeof(dbpath), "%s/tern%d.db", tmpdir, ++seq);
	if (accounts_open(dbpath, &a, &err) < 0) {
		fprintf(stderr, "accounts_open: %s\n", err);
		free(err);
	}
	return a;
}

/* cleanup - remove every file in tmpdir and the directory itself. */
static void cleanup(void)
{
	DIR *d = opendir(tmpdir);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char p[512];
			if (snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name) < (int)sizeof(p))
				unlink(p);
		}
		closedir(d);
	}
	rmdir(tmpdir);
}

static bool is_local(void *ctx, const char *domain)
{
	(void)ctx;
	return strcasecmp(domain, "example.org") == 0 || strcasecmp(domain, "example.net") == 0;
}

static void collect_users(void *ctx, const char *address)
{
	buf *b = ctx;
	buf_printf(b, "%s;", address);
}

static void collect_aliases(void *ctx, const char *alias, const char *targets)
{
	buf *b = ctx;
	buf_printf(b, "%s: %s;", alias, targets);
}

/* resolved - resolve and join the result with spaces into a static buffer; "#0" for 0 and
 * "#-1" for -1. */
static const char *resolved(struct accounts *a, const char *address)
{
	static char out[1024];
	char **t = NULL;
	size_t n = 0;
	int r = accounts_resolve(a, address, is_local, NULL, &t, &n);
	if (r <= 0) {
		snprintf(out, sizeof(out), "#%d", r);
		CHECK(t == NULL && n == 0);
		return out;
	}
	size_t off = 0;
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(out + off, sizeof(out) - off, "%s%s", i ? " " : "", t[i]);
		if (w < 0 || (size_t)w >= sizeof(out) - off)
			break;
		off += (size_t)w;
	}
	CHECK(t[n] == NULL);
	accounts_targets_free(&t);
	CHECK(t == NULL);
	return out;
}

static void test_users(void)
{
	struct accounts *a = open_db();
	char *err = NULL;
	CHECK(a != NULL);
	if (a == NULL)
		return;

	CHECK(accounts_user_exists(a, "bob@example.org") == 0);
	CHECK(accounts_user_add(a, "Bob@Example.ORG", "hunter2", &err) == 0);
	CHECK(accounts_user_exists(a, "bob@example.org") == 1);
	CHECK(accounts_user_exists(a, "BOB@example.org") == 1);

	/* adding again, in any case, fails with a clear message */
	CHECK(accounts_user_add(a, "bob@example.org", "x", &err) == -1);
	CHECK(err != NULL && strstr(err, "exists") != NULL);
	free(err);
	err = NULL;

	/* bad addresses and passwords */
	CHECK(accounts_user_add(a, "no-at-sign", "pw", &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_user_add(a, "a b@example.org", "pw", &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_user_add(a, "carol@example.org", "", &err) == -1);
	free(err);
	err = NULL;
	char longpw[600];
	memset(longpw, 'p', sizeof(longpw) - 1);
	longpw[sizeof(longpw) - 1] = '\0';
	CHECK(accounts_user_add(a, "carol@example.org", longpw, &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_user_exists(a, "carol@example.org") == 0);

	/* verify: right, wrong, other case of address, unknown user */
	CHECK(accounts_verify(a, "bob@example.org", "hunter2") == 1);
	CHECK(accounts_verify(a, "BOB@EXAMPLE.ORG", "hunter2") == 1);
	CHECK(accounts_verify(a, "bob@example.org", "hunter3") == 0);
	CHECK(accounts_verify(a, "bob@example.org", "Hunter2") == 0);
	CHECK(accounts_verify(a, "bob@example.org", "") == 0);
	CHECK(accounts_verify(a, "bob@example.org", longpw) == 0);
	CHECK(accounts_verify(a, "nobody@example.org", "hunter2") == 0);
	CHECK(accounts_verify(a, "", "") == 0);

	/* passwd */
	CHECK(accounts_user_passwd(a, "BOB@example.org", "correct horse", &err) == 0);
	CHECK(accounts_verify(a, "bob@example.org", "hunter2") == 0);
	CHECK(accounts_verify(a, "bob@example.org", "correct horse") == 1);
	CHECK(accounts_user_passwd(a, "nobody@example.org", "x", &err) == -1);
	CHECK(err != NULL && strstr(err, "no such user") != NULL);
	free(err);
	err = NULL;
	CHECK(accounts_user_passwd(a, "bob@example.org", "", &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_verify(a, "bob@example.org", "correct horse") == 1);

	/* list, in order */
	CHECK(accounts_user_add(a, "alice@example.org", "pw-a", &err) == 0);
	CHECK(accounts_user_add(a, "zed@example.net", "pw-z", &err) == 0);
	buf b;
	buf_init(&b, 0);
	CHECK(accounts_user_list(a, collect_users, &b) == 0);
	CHECK_STREQ(buf_cstr(&b), "alice@example.org;bob@example.org;zed@example.net;");

	/* del */
	CHECK(accounts_user_del(a, "Bob@example.org", &err) == 0);
	CHECK(accounts_user_exists(a, "bob@example.org") == 0);
	CHECK(accounts_verify(a, "bob@example.org", "correct horse") == 0);
	CHECK(accounts_user_del(a, "bob@example.org", &err) == -1);
	CHECK(err != NULL && strstr(err, "no such user") != NULL);
	free(err);
	err = NULL;
	buf_reset(&b);
	CHECK(accounts_user_list(a, collect_users, &b) == 0);
	CHECK_STREQ(buf_cstr(&b), "alice@example.org;zed@example.net;");
	buf_free(&b);

	/* the same password twice gives different hashes (random salt): both verify */
	CHECK(accounts_user_add(a, "twin1@example.org", "same", &err) == 0);
	CHECK(accounts_user_add(a, "twin2@example.org", "same", &err) == 0);
	CHECK(accounts_verify(a, "twin1@example.org", "same") == 1);
	CHECK(accounts_verify(a, "twin2@example.org", "same") == 1);

	/* injection-looking input is just data */
	CHECK(accounts_verify(a, "x' OR '1'='1@example.org", "pw") == 0);
	CHECK(accounts_user_exists(a, "alice@example.org' --") == 0);

	accounts_close(&a);
	CHECK(a == NULL);
	accounts_close(&a);
}

/* test_reopen - the data survives closing, and the file is in WAL mode */
static void test_reopen(void)
{
	struct accounts *a = open_db();
	char *err = NULL;
	CHECK(a != NULL);
	if (a == NULL)
		return;
	CHECK(accounts_user_add(a, "keep@example.org", "pw", &err) == 0);
	const char *tg[] = { "keep@example.org" };
	CHECK(accounts_alias_add(a, "k@example.org", tg, 1, &err) == 0);
	accounts_close(&a);

	char *err2 = NULL;
	CHECK(accounts_open(dbpath, &a, &err2) == 0);
	CHECK(accounts_verify(a, "keep@example.org", "pw") == 1);
	CHECK_STREQ(resolved(a, "k@example.org"), "keep@example.org");
	accounts_close(&a);

	/* the database header says WAL: bytes 18 and 19 are 2 */
	FILE *f = fopen(dbpath, "rb");
	CHECK(f != NULL);
	if (f != NULL) {
		unsigned char hdr[20];
		CHECK(fread(hdr, 1, sizeof(hdr), f) == sizeof(hdr));
		CHECK(hdr[18] == 2 && hdr[19] == 2);
		fclose(f);
	}

	/* a file that is not a database is an error, not a crash */
	char bad[160];
	snprintf(bad, sizeof(bad), "%s/garbage.db", tmpdir);
	f = fopen(bad, "wb");
	if (f != NULL) {
		fputs("this is not an SQLite database, not at all, no.............\n", f);
		fclose(f);
	}
	CHECK(accounts_open(bad, &a, &err2) == -1);
	CHECK(a == NULL);
	CHECK(err2 != NULL);
	free(err2);
	err2 = NULL;
	CHECK(accounts_open("/nonexistent-dir/x/tern.db", &a, &err2) == -1);
	free(err2);
}

static void test_aliases(void)
{
	struct accounts *a = open_db();
	char *err = NULL;
	CHECK(a != NULL);
	if (a == NULL)
		return;
	CHECK(accounts_user_add(a, "bob@example.org", "pw", &err) == 0);
	CHECK(accounts_user_add(a, "alice@example.org", "pw", &err) == 0);
	CHECK(accounts_user_add(a, "carol@example.net", "pw", &err) == 0);

	/* plain users resolve to themselves, in any case */
	CHECK_STREQ(resolved(a, "bob@example.org"), "bob@example.org");
	CHECK_STREQ(resolved(a, "BOB@Example.Org"), "bob@example.org");
	/* unknown local -> 0; foreign -> itself */
	CHECK_STREQ(resolved(a, "nobody@example.org"), "#0");
	CHECK_STREQ(resolved(a, "nobody@EXAMPLE.NET"), "#0");
	CHECK_STREQ(resolved(a, "someone@Elsewhere.test"), "someone@elsewhere.test");
	CHECK_STREQ(resolved(a, "postmaster"), "#0");

	/* simple alias, upper case input stored lower case, duplicates dropped */
	const char *t1[] = { "Bob@Example.org", "alice@example.org", "bob@example.org" };
	CHECK(accounts_alias_add(a, "Team@Example.org", t1, 3, &err) == 0);
	CHECK(accounts_alias_exists(a, "team@example.org") == 1);
	CHECK(accounts_alias_exists(a, "TEAM@example.org") == 1);
	CHECK(accounts_alias_exists(a, "bob@example.org") == 0);
	CHECK_STREQ(resolved(a, "TEAM@example.org"), "bob@example.org alice@example.org");

	/* chain: all -> team + carol + foreign; team -> bob, alice */
	const char *t2[] = { "team@example.org", "carol@example.net", "ext@Remote.test" };
	CHECK(accounts_alias_add(a, "all@example.org", t2, 3, &err) == 0);
	CHECK_STREQ(resolved(a, "all@example.org"),
		    "bob@example.org alice@example.org carol@example.net ext@remote.test");

	/* diamond: both branches reach team; each user appears once */
	const char *t3[] = { "team@example.org", "all@example.org", "bob@example.org" };
	CHECK(accounts_alias_add(a, "diamond@example.org", t3, 3, &err) == 0);
	CHECK_STREQ(resolved(a, "diamond@example.org"),
		    "bob@example.org alice@example.org carol@example.net ext@remote.test");

	/* loops: a -> b -> a, both alias-only: nothing; with a user on the way: the user */
	const char *la[] = { "loopb@example.org" }, *lb[] = { "loopa@example.org" };
	CHECK(accounts_alias_add(a, "loopa@example.org", la, 1, &err) == 0);
	CHECK(accounts_alias_add(a, "loopb@example.org", lb, 1, &err) == 0);
	CHECK_STREQ(resolved(a, "loopa@example.org"), "#0");
	const char *lb2[] = { "loopa@example.org", "alice@example.org" };
	CHECK(accounts_alias_add(a, "loopb@example.org", lb2, 2, &err) == 0);	/* replaces */
	CHECK_STREQ(resolved(a, "loopa@example.org"), "alice@example.org");
	const char *self[] = { "selfie@example.org" };
	CHECK(accounts_alias_add(a, "selfie@example.org", self, 1, &err) == 0);
	CHECK_STREQ(resolved(a, "selfie@example.org"), "#0");

	/* a user with an alias of the same name: the alias wins; naming itself keeps a copy */
	const char *fw[] = { "bob@example.org", "bob@gmail.test" };
	CHECK(accounts_alias_add(a, "bob@example.org", fw, 2, &err) == 0);
	CHECK_STREQ(resolved(a, "bob@example.org"), "bob@example.org bob@gmail.test");
	CHECK_STREQ(resolved(a, "team@example.org"),
		    "bob@example.org bob@gmail.test alice@example.org");
	CHECK(accounts_alias_del(a, "bob@example.org", &err) == 0);

	/* unknown local targets are dropped; if nothing is left, 0 */
	const char *gone[] = { "ghost@example.org", "alice@example.org" };
	CHECK(accounts_alias_add(a, "mixed@example.org", gone, 2, &err) == 0);
	CHECK_STREQ(resolved(a, "mixed@example.org"), "alice@example.org");
	const char *gone2[] = { "ghost@example.org" };
	CHECK(accounts_alias_add(a, "dead@example.org", gone2, 1, &err) == 0);
	CHECK_STREQ(resolved(a, "dead@example.org"), "#0");

	/* a foreign-only alias */
	const char *fo[] = { "x@one.test", "y@two.test" };
	CHECK(accounts_alias_add(a, "out@example.org", fo, 2, &err) == 0);
	CHECK_STREQ(resolved(a, "out@example.org"), "x@one.test y@two.test");

	/* bad alias definitions */
	CHECK(accounts_alias_add(a, "empty@example.org", fo, 0, &err) == -1);
	free(err);
	err = NULL;
	const char *badt[] = { "ok@example.org", "not an address" };
	CHECK(accounts_alias_add(a, "bad@example.org", badt, 2, &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_alias_exists(a, "bad@example.org") == 0);
	CHECK(accounts_alias_add(a, "bad alias", fo, 1, &err) == -1);
	free(err);
	err = NULL;

	/* list and del */
	buf b;
	buf_init(&b, 0);
	CHECK(accounts_alias_del(a, "DIAMOND@example.org", &err) == 0);
	CHECK(accounts_alias_del(a, "diamond@example.org", &err) == -1);
	free(err);
	err = NULL;
	CHECK(accounts_alias_del(a, "loopa@example.org", &err) == 0);
	CHECK(accounts_alias_del(a, "loopb@example.org", &err) == 0);
	CHECK(accounts_alias_del(a, "selfie@example.org", &err) == 0);
	CHECK(accounts_alias_del(a, "mixed@example.org", &err) == 0);
	CHECK(accounts_alias_del(a, "dead@example.org", &err) == 0);
	CHECK(accounts_alias_list(a, collect_aliases, &b) == 0);
	CHECK_STREQ(buf_cstr(&b),
		    "all@example.org: team@example.org carol@example.net ext@remote.test;"
		    "out@example.org: x@one.test y@two.test;"
		    "team@example.org: bob@example.org alice@example.org;");
	buf_free(&b);
	accounts_close(&a);
}

/* test_depth - a chain of 8 aliases reaches its user; a chain of 9 does not */
static void test_depth(void)
{
	struct accounts *a = open_db();
	char *err = NULL;
	CHECK(a != NULL);
	if (a == NULL)
		return;
	CHECK(accounts_user_add(a, "end@example.org", "pw", &err) == 0);
	/* c1 -> c2 -> ... -> c9 -> end */
	for (int i = 1; i <= 9; i++) {
		char name[64], next[64];
		snprintf(name, sizeof(name), "c%d@example.org", i);
		if (i == 9)
			snprintf(next, sizeof(next), "end@example.org");
		else
			snprintf(next, sizeof(next), "c%d@example.org", i + 1);
		const char *t[] = { next };
		CHECK(accounts_alias_add(a, name, t, 1, &err) == 0);
	}
	CHECK_STREQ(resolved(a, "c2@example.org"), "end@example.org");	/* 8 aliases */
	CHECK_STREQ(resolved(a, "c1@example.org"), "#0");			/* 9 aliases */

	/* a wide alias tree: every user is found once */
	char users[40][32];
	const char *tp[40];
	for (int i = 0; i < 40; i++) {
		snprintf(users[i], sizeof(users[i]), "u%d@example.org", i);
		tp[i] = users[i];
		CHECK(accounts_user_add(a, users[i], "pw", &err) == 0);
	}
	CHECK(accounts_alias_add(a, "wide1@example.org", tp, 40, &err) == 0);
	CHECK(accounts_alias_add(a, "wide2@example.org", tp + 10, 30, &err) == 0);
	const char *both[] = { "wide1@example.org", "wide2@example.org", "wide1@example.org" };
	CHECK(accounts_alias_add(a, "wide@example.org", both, 3, &err) == 0);
	char **t = NULL;
	size_t n = 0;
	CHECK(accounts_resolve(a, "wide@example.org", is_local, NULL, &t, &n) == 1);
	CHECK(n == 40);
	accounts_targets_free(&t);

	/* no is_local callback: every domain counts as local */
	CHECK(accounts_resolve(a, "x@foreign.test", NULL, NULL, &t, &n) == 0);
	CHECK(t == NULL);
	accounts_close(&a);
}

static void test_address_valid(void)
{
	CHECK(accounts_address_valid("bob@example.org"));
	CHECK(accounts_address_valid("b.o+b-1@sub.example.org"));
	CHECK(accounts_address_valid("j\xc3\xb6rg@example.org"));
	CHECK(!accounts_address_valid(""));
	CHECK(!accounts_address_valid("bob"));
	CHECK(!accounts_address_valid("@example.org"));
	CHECK(!accounts_address_valid("bob@"));
	CHECK(!accounts_address_valid("bob@@example.org"));
	CHECK(!accounts_address_valid("bob@a@example.org"));
	CHECK(!accounts_address_valid("bob@.example.org"));
	CHECK(!accounts_address_valid("bob@example.org."));
	CHECK(!accounts_address_valid("bob@example..org"));
	CHECK(!accounts_address_valid("bo b@example.org"));
	CHECK(!accounts_address_valid("bob@example.org\r\n"));
	CHECK(!accounts_address_valid("<bob@example.org>"));
	CHECK(!accounts_address_valid("\"bob\"@example.org"));
	CHECK(!accounts_address_valid("bob,eve@example.org"));
	CHECK(!accounts_address_valid("bob@[127.0.0.1]"));
	char longaddr[300];
	memset(longaddr, 'a', sizeof(longaddr));
	memcpy(longaddr + 240, "@example.org", 13);	/* 252 bytes */
	CHECK(accounts_address_valid(longaddr));
	memcpy(longaddr + 250, "@example.org", 13);	/* 262 bytes */
	CHECK(!accounts_address_valid(longaddr));
}

static void test_setup(void)
{
	CHECK(mkdtemp(tmpdir) != NULL);
}

static void test_teardown(void)
{
	cleanup();
	CHECK(access(tmpdir, F_OK) != 0);
}

/* test_senders - who may use which MAIL FROM; the oldest user */
static void test_senders(void)
{
	struct accounts *a = open_db();
	char *err = NULL, *oldest = NULL;
	CHECK(accounts_user_oldest(a, &oldest) == 0 && oldest == NULL);
	CHECK(accounts_user_add(a, "zed@example.org", "pw-z", &err) == 0);
	CHECK(accounts_user_add(a, "amy@example.org", "pw-a", &err) == 0);
	CHECK(accounts_user_oldest(a, &oldest) == 1 && strcmp(oldest, "zed@example.org") == 0);
	free(oldest);
	const char *const sales[] = { "amy@example.org", "ext@remote.test" };
	const char *const own[] = { "amy@example.org" };
	const char *const zed[] = { "zed@example.org" };
	CHECK(accounts_alias_add(a, "sales@example.org", sales, 2, &err) == 0);
	CHECK(accounts_alias_add(a, "a.m.y@example.org", own, 1, &err) == 0);
	CHECK(accounts_alias_add(a, "boss@example.org", zed, 1, &err) == 0);
	static const struct {
		const char *user, *sender;
		int want;
	} cases[] = {
		{ "amy@example.org", "amy@example.org", 1 },
		{ "amy@example.org", "AMY@Example.ORG", 1 },
		{ "AMY@example.org", "amy@example.org", 1 },
		{ "amy@example.org", "a.m.y@example.org", 1 },	/* her alias */
		{ "amy@example.org", "sales@example.org", 1 },	/* an alias among others */
		{ "amy@example.org", "zed@example.org", 0 },	/* another user */
		{ "amy@example.org", "boss@example.org", 0 },	/* another user's alias */
		{ "amy@example.org", "nobody@example.org", 0 },
		{ "amy@example.org", "amy@remote.test", 0 },	/* foreign */
		{ "amy@example.org", "ext@remote.test", 0 },	/* an alias target is not hers */
		{ "zed@example.org", "sales@example.org", 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = accounts_sender_allowed(a, cases[i].user, cases[i].sender, is_local, NULL);
		if (r != cases[i].want)
			fprintf(stderr, "%s as %s: %d\n", cases[i].user, cases[i].sender, r);
		CHECK(r == cases[i].want);
	}
	const char *const extra[] = { "amy@remote.test", "@lists.example.net" };
	CHECK(accounts_user_set_senders(a, "amy@example.org", extra, 2, &err) == 0);
	CHECK(accounts_sender_allowed(a, "amy@example.org", "Amy@Remote.test", is_local, NULL) == 1);
	CHECK(accounts_sender_allowed(a, "amy@example.org", "x@lists.example.net", is_local,
				      NULL) == 1);
	CHECK(accounts_sender_allowed(a, "amy@example.org", "x@sub.lists.example.net", is_local,
				      NULL) == 0);
	CHECK(accounts_sender_allowed(a, "amy@example.org", "zed@example.org", is_local, NULL) == 0);
	CHECK(accounts_sender_allowed(a, "zed@example.org", "amy@remote.test", is_local, NULL) == 0);
	CHECK(accounts_user_set_senders(a, "amy@example.org", NULL, 0, &err) == 0);
	CHECK(accounts_sender_allowed(a, "amy@example.org", "amy@remote.test", is_local, NULL) == 0);
	accounts_close(&a);
}

TEST_MAIN(TEST(test_setup), TEST(test_address_valid), TEST(test_users), TEST(test_reopen),
	  TEST(test_aliases), TEST(test_depth), TEST(test_senders), TEST(test_teardown))
