/* test_queue_backup - queue_backup of a queue that changes while it is copied: an entry whose
 * file went away (delivered meanwhile) is dropped from the copy, a file without an entry
 * (queued after the snapshot) is removed, the rest comes through whole and listable */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/backup.h"
#include "queue/queue.h"
#include "test.h"

static char tmpdir[] = "/tmp/tern-test-queue-backup-XXXXXX";

static void count_cb(void *ctx, const struct queue_msg_info *m)
{
	(void)m;
	(*(unsigned *)ctx)++;
}

static void test_backup_queue(void)
{
	char spool[200], copy[200], path[300];
	snprintf(spool, sizeof(spool), "%s/spool", tmpdir);
	snprintf(copy, sizeof(copy), "%s/copy", tmpdir);
	mkdir(spool, 0700);
	snprintf(path, sizeof(path), "%s/queue", spool);
	mkdir(path, 0700);
	struct queue *q = NULL;
	char *err = NULL;
	CHECK(queue_open(spool, &q, &err) == 0);
	const char *rcpts[] = { "x@remote.test", "y@remote.test" };
	for (int i = 1; i <= 3; i++) {
		char qid[16];
		snprintf(qid, sizeof(qid), "Q%d", i);
		snprintf(path, sizeof(path), "%s/in%d", tmpdir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		CHECK(fd >= 0 && write(fd, "Subject: x\r\n\r\nbody\r\n", 20) == 20);
		close(fd);
		CHECK(queue_enqueue(q, qid, path, 0, 20, "a@example.test", rcpts, 2, NULL, &err) == 0);
	}
	queue_close(&q);
	/* Q2 delivered between the snapshot and the file copy: its file is gone, its row not;
	 * a stray file that no entry names */
	snprintf(path, sizeof(path), "%s/queue/Q2", spool);
	CHECK(unlink(path) == 0);
	snprintf(path, sizeof(path), "%s/queue/Q9", spool);
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	close(fd);

	struct backup_counts c = { 0 };
	unsigned kept = 0;
	CHECK(queue_backup(spool, copy, &c, &kept, &err) == 0);
	if (err != NULL)
		fprintf(stderr, "queue_backup: %s\n", err);
	CHECK(kept == 2 && c.dropped == 1 && c.files == 3);
	snprintf(path, sizeof(path), "%s/queue/Q9", copy);
	CHECK(access(path, F_OK) < 0);
	snprintf(path, sizeof(path), "%s/queue/Q1", copy);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 20 && (st.st_mode & 0777) == 0600);
	snprintf(path, sizeof(path), "%s/incoming", copy);
	CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));

	/* the copy is a queue: two messages, and Q2's recipients are gone with it */
	CHECK(queue_open(copy, &q, &err) == 0);
	unsigned n = 0;
	CHECK(queue_list(q, count_cb, &n, &err) == 0 && n == 2);
	queue_close(&q);

	/* a target that exists is refused */
	err = NULL;
	CHECK(queue_backup(spool, copy, &c, &kept, &err) < 0 && err != NULL);
	free(err);
}

int main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	static const struct test_case cases[] = { TEST(test_backup_queue) };
	int r = test_run(cases, 1);
	test_rmtree(tmpdir);
	return r;
}
