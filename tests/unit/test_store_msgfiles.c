/* test_store_msgfiles - the file list of a download (store/msgfiles): one load, then opens
 * by UID without the index; a UID not listed, a file renamed or removed since the load give
 * STORE_NOTFOUND (the POP3 server then asks the index); an empty mailbox; the bytes held. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/msgfiles.h"
#include "store/store.h"
#include "test.h"

#define ADDR "bob@example.test"

static char datadir[256];
static char root[512];

static void setup(void)
{
	snprintf(datadir, sizeof(datadir), "/tmp/tern-test-msgfiles-XXXXXX");
	if (mkdtemp(datadir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	char *p = store_maildir_path(datadir, ADDR);
	snprintf(root, sizeof(root), "%s", p);
	free(p);
}

static void teardown(void)
{
	store_deliver_cache_close();
	test_rmtree(datadir);
}

/* drop - n messages written into new/ (the mailbox's open picks them up, UIDs 1..n) */
static void drop(int n)
{
	char p[700];
	snprintf(p, sizeof(p), "%s/new", root);
	for (int i = 0; i < n; i++) {
		char f[800], text[64];
		snprintf(f, sizeof(f), "%s/17000000%02d.M%dP1.host", p, i, i);
		int len = snprintf(text, sizeof(text), "Subject: m%d\r\n\r\nbody %d\r\n", i, i);
		int fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, text, (size_t)len) == len);
		close(fd);
	}
}

/* open_mb - bob's INBOX (created on the first store_open) */
static void open_mb(struct store **s, struct store_mailbox **mb)
{
	char *err = NULL;
	CHECK(store_open(datadir, ADDR, s, &err) == 0);
	CHECK(store_mailbox_open(*s, "INBOX", mb, &err) == 0);
	free(err);
}

/* read_fd - the first bytes of fd, closed */
static void read_fd(int fd, char *out, size_t n)
{
	ssize_t r = read(fd, out, n - 1);
	out[r > 0 ? r : 0] = '\0';
	close(fd);
}

/* the cur/ entry of message uid's file (by its subject), NULL when none */
static char *find_cur(int i)
{
	char cur[700], want[32];
	snprintf(cur, sizeof(cur), "%s/cur", root);
	snprintf(want, sizeof(want), "17000000%02d.", i);
	DIR *d = opendir(cur);
	char *found = NULL;
	struct dirent *e;
	while (d != NULL && (e = readdir(d)) != NULL)
		if (strncmp(e->d_name, want, strlen(want)) == 0) {
			found = malloc(strlen(cur) + strlen(e->d_name) + 2);
			sprintf(found, "%s/%s", cur, e->d_name);
		}
	if (d != NULL)
		closedir(d);
	return found;
}

static void test_load_and_open(void)
{
	setup();
	struct store *s = NULL;
	struct store_mailbox *mb = NULL;
	open_mb(&s, &mb);	/* creates the Maildir */
	store_mailbox_close(&mb);
	drop(5);
	char *err = NULL;
	CHECK(store_mailbox_open(s, "INBOX", &mb, &err) == 0);
	struct store_files *f = NULL;
	CHECK(store_files_load(mb, &f, &err) == 0);
	CHECK(f != NULL && store_files_count(f) == 5);
	/* compact: the list, about the names' length per message, nothing more */
	CHECK(store_files_bytes(f) < 5 * 80 + 64);
	/* opens need no connection: the handle sleeps */
	store_sleep(s);
	char b[128];
	for (uint32_t uid = 1; uid <= 5; uid++) {
		int fd = -1;
		CHECK(store_files_open(f, uid, &fd) == 0);
		read_fd(fd, b, sizeof(b));
		char want[32];
		snprintf(want, sizeof(want), "Subject: m%u\r\n", uid - 1);
		CHECK(strncmp(b, want, strlen(want)) == 0);
	}
	int fd = -1;
	CHECK(store_files_open(f, 0, &fd) == STORE_NOTFOUND);
	CHECK(store_files_open(f, 6, &fd) == STORE_NOTFOUND);
	CHECK(store_files_open(f, UINT32_MAX, &fd) == STORE_NOTFOUND);
	/* renamed (another program set a flag): not under the listed name */
	char *p2 = find_cur(1);
	CHECK(p2 != NULL);
	if (p2 != NULL) {
		char to[900];
		snprintf(to, sizeof(to), "%sS", p2);
		CHECK(rename(p2, to) == 0);
		CHECK(store_files_open(f, 2, &fd) == STORE_NOTFOUND);
		/* the index still finds it (what the POP3 server falls back to) */
		bool crlf;
		CHECK(store_wake(s, &err) == 0);
		CHECK(store_msg_open(mb, 2, &fd, &crlf, &err) == 0);
		close(fd);
		free(p2);
	}
	/* removed */
	char *p3 = find_cur(2);
	CHECK(p3 != NULL && unlink(p3) == 0);
	free(p3);
	CHECK(store_files_open(f, 3, &fd) == STORE_NOTFOUND);
	/* the others are unaffected */
	CHECK(store_files_open(f, 4, &fd) == 0);
	close(fd);
	store_files_free(&f);
	CHECK(f == NULL);
	store_files_free(&f);	/* NULL is fine */
	store_mailbox_close(&mb);
	store_close(&s);
	free(err);
	teardown();
}

static void test_empty_mailbox(void)
{
	setup();
	struct store *s = NULL;
	struct store_mailbox *mb = NULL;
	open_mb(&s, &mb);
	struct store_files *f = NULL;
	char *err = NULL;
	CHECK(store_files_load(mb, &f, &err) == 0);
	free(err);
	CHECK(f != NULL && store_files_count(f) == 0);
	int fd;
	CHECK(f != NULL && store_files_open(f, 1, &fd) == STORE_NOTFOUND);
	store_files_free(&f);
	store_mailbox_close(&mb);
	store_close(&s);
	teardown();
}

TEST_MAIN(TEST(test_load_and_open), TEST(test_empty_mailbox))
