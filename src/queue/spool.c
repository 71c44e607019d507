/* spool - incoming message files and their hand-over to mailboxes and the queue */
#include "queue/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/trace.h"
#include "lib/xmalloc.h"
#include "queue/queue.h"
#include "store/store.h"

void spool_qid_new(char out[32])
{
	static unsigned counter;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	snprintf(out, 32, "%llX%05lX%lXQ%X", (unsigned long long)tv.tv_sec, (long)tv.tv_usec,
		 (long)getpid(), ++counter & 0xfffff);
}

int spool_open(const char *spool_dir, const char *sender, struct spool_msg **msg_r,
	       char **error_r)
{
	struct spool_msg *m = xcalloc(1, sizeof(*m));
	spool_qid_new(m->qid);
	m->opened_usec = metrics_now_usec();
	m->path = xasprintf("%s/incoming/%s", spool_dir, m->qid);
	m->fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (m->fd < 0 && errno == ENOENT) {
		char *dir = xasprintf("%s/incoming", spool_dir);
		if (fs_mkdirs(dir, 0700) == 0)
			m->fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		free(dir);
	}
	if (m->fd < 0) {
		*error_r = xasprintf("%s: %s", m->path, strerror(errno));
		free(m->path);
		free(m);
		return -1;
	}
	char rp[600];
	int n = snprintf(rp, sizeof(rp), "Return-Path: <%s>\r\n", sender);
	if (n < 0 || (size_t)n >= sizeof(rp))
		n = snprintf(rp, sizeof(rp), "Return-Path: <>\r\n");
	spool_write(m, rp, (size_t)n);
	m->body_offset = (uint64_t)n;
	*msg_r = m;
	return 0;
}

/* write_failed - note a failed write or fsync (errno says why) */
static void write_failed(struct spool_msg *m, const char *what)
{
	if (errno == ENOSPC || errno == EDQUOT)
		m->no_space = true;
	log_warn("%s: %s %s", m->qid, what, m->path);
	m->failed = true;
}

/* spool_flush - write the buffer out */
int spool_flush(struct spool_msg *m)
{
	if (m->wlen > 0 && !m->failed && fs_write_all(m->fd, m->wbuf, m->wlen) < 0)
		write_failed(m, "write");
	m->wlen = 0;
	return m->failed ? -1 : 0;
}

/* spool_adopt_size - after others wrote to m->fd directly: take the file's size */
int spool_adopt_size(struct spool_msg *m)
{
	struct stat st;
	if (spool_flush(m) < 0 || fstat(m->fd, &st) < 0) {
		m->failed = true;
		return -1;
	}
	m->size = (uint64_t)st.st_size;
	return 0;
}

int spool_write(struct spool_msg *m, const void *p, size_t n)
{
	if (m->failed)
		return -1;
	m->size += n;
	if (m->wlen + n > sizeof(m->wbuf)) {
		if (spool_flush(m) < 0)
			return -1;
		if (n >= sizeof(m->wbuf)) {
			if (fs_write_all(m->fd, p, n) < 0) {
				write_failed(m, "write");
				return -1;
			}
			return 0;
		}
	}
	memcpy(m->wbuf + m->wlen, p, n);
	m->wlen += n;
	return 0;
}

int spool_deliver(struct spool_msg *m, const char *data_dir, const char *hostname,
		  const char *const *locals, size_t n_locals, struct queue *q, const char *sender,
		  const char *const *remotes, size_t n_remotes, const struct queue_dsn *dsn,
		  char **error_r)
{
	return spool_deliver_opts(m, data_dir, hostname, locals, n_locals, q, sender, remotes,
				  n_remotes, dsn, NULL, error_r);
}

int spool_deliver_opts(struct spool_msg *m, const char *data_dir, const char *hostname,
		       const char *const *locals, size_t n_locals, struct queue *q,
		       const char *sender, const char *const *remotes, size_t n_remotes,
		       const struct queue_dsn *dsn, const struct spool_delivery_opts *o,
		       char **error_r)
{
	const char *mailbox = o != NULL ? o->mailbox : NULL;
	const struct spool_link *links = o != NULL ? o->links : NULL;
	bool synced = o != NULL && o->synced;
	if (!synced && spool_flush(m) < 0)
		*error_r = xasprintf("%s: cannot write the spool file", m->qid);
	else if (!synced && fsync(m->fd) < 0) {
		write_failed(m, "fsync");
		*error_r = xasprintf("%s: cannot write the spool file: %s", m->qid, strerror(errno));
	}
	if (m->failed)
		return -1;
	/* A mailbox that cannot be written now (its index locked by another process past the
	 * store's short busy timeout, or an I/O error) must not turn the whole message into a
	 * 4xx: the recipients already delivered would get it again when the client retries.
	 * Such recipients go to the queue instead, whose runner delivers them locally with
	 * patience; only when the queue cannot take them either is the answer 4xx. */
	size_t n_all = n_locals + n_remotes;
	const char **queued = xcalloc(n_all + 1, sizeof(char *));
	const char **q_notify = xcalloc(n_all + 1, sizeof(char *));
	const char **q_orcpt = xcalloc(n_all + 1, sizeof(char *));
	size_t n_queued = 0, n_delivered = 0;
	for (size_t i = 0; i < n_all; i++) {
		const char *addr = i < n_locals ? locals[i] : remotes[i - n_locals];
		const char *notify = dsn != NULL && dsn->notify != NULL ? dsn->notify[i] : NULL;
		const char *orcpt = dsn != NULL && dsn->orcpt != NULL ? dsn->orcpt[i] : NULL;
		/* A local recipient whose sender asked for a success report (RFC 3461 NOTIFY=
		 * SUCCESS) is delivered by the queue runner's local transport, which sends the
		 * report: one place composes every report. */
		bool report = notify != NULL && strstr(notify, "SUCCESS") != NULL;
		char *err = NULL;
		const struct spool_link *l = links != NULL && i < n_locals ? &links[i] : NULL;
		int stored = -1;
		if (i < n_locals && !report && l != NULL && l->dst != NULL && l->err == 0)
			stored = store_deliver_linked(data_dir, addr, mailbox, l->dst, m->qid,
						      &err);
		else if (i < n_locals && !report)	/* a link not tried or not made: here */
			stored = store_deliver_file_to(data_dir, addr, mailbox, m->path, m->size,
						       hostname, m->qid, &err);
		if (stored == 0) {
			log_info("%s: to=<%s> relay=local status=sent (delivered to maildir%s%s)",
				 m->qid, addr, mailbox ? " folder " : "", mailbox ? mailbox : "");
			metrics_count(METRICS_DELIVERED_LOCAL);
			metrics_observe(METRICS_DELIVERY_DELAY, metrics_since_usec(m->opened_usec));
			n_delivered++;
			continue;
		}
		if (i < n_locals && !report) {
			log_warnx("%s: to=<%s>: mailbox busy or unwritable, queued for a retry: %s",
				  m->qid, addr, err != NULL ? err : "?");
			TRACE(m->qid, "store-busy", "to=%s error=%s", addr, err != NULL ? err : "?");
			free(err);
		}
		q_notify[n_queued] = notify;
		q_orcpt[n_queued] = orcpt;
		queued[n_queued++] = addr;
	}
	int rc = 0;
	if (n_queued > 0) {
		struct queue_dsn qdsn = { .ret = dsn ? dsn->ret : NULL,
					  .envid = dsn ? dsn->envid : NULL,
					  .notify = q_notify, .orcpt = q_orcpt };
		rc = -1;
		if (q == NULL)
			*error_r = xasprintf("%s: the queue is not available", m->qid);
		else {
			char own[32];
			if (o != NULL && o->queued_already > 0)
				spool_qid_new(own);
			rc = queue_enqueue(q, o != NULL && o->queued_already > 0 ? own : m->qid,
					   m->path, m->body_offset, m->size - m->body_offset, sender,
					   queued, n_queued, &qdsn, error_r);
			if (rc < 0 && (errno == ENOSPC || errno == EDQUOT))
				m->no_space = true;
		}
		if (rc < 0 && n_delivered > 0)
			log_warnx("%s: %zu local recipients already have the message; a retry "
				  "will give them a second copy", m->qid, n_delivered);
	}
	if (rc == 0 && o != NULL && o->n_fwd > 0) {
		/* The queue keeps one envelope sender per message: the forwarded copies, whose
		 * sender SRS rewrote, are a message of their own sharing the file. */
		char fqid[32];
		spool_qid_new(fqid);
		struct queue_dsn fdsn = { .ret = dsn ? dsn->ret : NULL,
					  .envid = dsn ? dsn->envid : NULL,
					  .notify = o->fwd_notify, .orcpt = o->fwd_orcpt };
		rc = -1;
		if (q == NULL)
			*error_r = xasprintf("%s: the queue is not available", m->qid);
		else
			rc = queue_enqueue(q, fqid, m->path, m->body_offset, m->size - m->body_offset,
					   o->fwd_sender, o->fwd_rcpts, o->n_fwd, &fdsn, error_r);
		if (rc == 0) {
			log_info("%s: forwarded copies queued as %s from=<%s> nrcpt=%zu", m->qid, fqid,
				 o->fwd_sender, o->n_fwd);
			TRACE(m->qid, "forward", "qid=%s from=%s nrcpt=%zu", fqid, o->fwd_sender, o->n_fwd);
			n_queued += o->n_fwd;
		} else if (n_delivered > 0 || n_queued > 0) {
			log_warnx("%s: some recipients already have the message; a retry will give "
				  "them a second copy", m->qid);
		}
	}
	free(queued);
	free(q_notify);
	free(q_orcpt);
	if (rc < 0)
		return -1;
	if (o != NULL)
		n_queued += o->queued_already;
	/* Every copy that matters is durable now; the incoming name is only a leftover. */
	if (unlink(m->path) < 0)
		log_warn("%s: unlink %s", m->qid, m->path);
	free(m->path);
	m->path = NULL;
	return (int)n_queued;
}

/* copy_range - len bytes of in from *off to out's position: copy_file_range, else
 * read/write (another file system, an old kernel) */
static int copy_range(int in, int out, uint64_t off, uint64_t len)
{
	loff_t o = (loff_t)off;
	while (len > 0) {
		ssize_t n = copy_file_range(in, &o, out, NULL, len, 0);
		if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
			      errno == EOPNOTSUPP)) {
			char b[65536];
			ssize_t r = pread(in, b, len < sizeof(b) ? len : sizeof(b), o);
			if (r <= 0 || fs_write_all(out, b, (size_t)r) < 0)
				return -1;
			n = r;
			o += r;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* the file is shorter than we think */
			return -1;
		}
		len -= (uint64_t)n;
	}
	return 0;
}

int spool_rewrite(struct spool_msg *m, uint64_t at, const char *text, size_t len,
		  const struct spool_range *cuts, size_t n_cuts, char **error_r)
{
	if (spool_flush(m) < 0) {
		*error_r = xasprintf("%s: write %s: %s", m->qid, m->path, strerror(errno));
		return -1;
	}
	char *tmp = xasprintf("%s.rw", m->path);
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	uint64_t pos = at, size = at + len;
	int r = -1;
	if (fd < 0 || copy_range(m->fd, fd, 0, at) < 0 || fs_write_all(fd, text, len) < 0)
		goto out;
	for (size_t i = 0; i < n_cuts; i++) {
		if (cuts[i].start < pos || cuts[i].end < cuts[i].start || cuts[i].end > m->size) {
			errno = EINVAL;
			goto out;
		}
		if (copy_range(m->fd, fd, pos, cuts[i].start - pos) < 0)
			goto out;
		size += cuts[i].start - pos;
		pos = cuts[i].end;
	}
	if (copy_range(m->fd, fd, pos, m->size - pos) < 0)
		goto out;
	/* The new file keeps its own name and the old one is unlinked: a rename over the old
	 * name would make ext4 (auto_da_alloc) start writing the new file's data at once,
	 * milliseconds we would pay again in spool_deliver's fsync. */
	if (unlink(m->path) < 0)
		log_warn("%s: unlink %s", m->qid, m->path);
	size += m->size - pos;
	close(m->fd);
	m->fd = fd;
	fd = -1;
	free(m->path);
	m->path = tmp;
	tmp = NULL;
	m->size = size;
	r = 0;
out:
	if (r < 0) {
		if (errno == ENOSPC || errno == EDQUOT)
			m->no_space = true;
		*error_r = xasprintf("%s: rewrite %s: %s", m->qid, m->path, strerror(errno));
		if (fd >= 0)
			unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	free(tmp);
	return r;
}

void spool_abort(struct spool_msg **mp)
{
	struct spool_msg *m = *mp;
	if (m == NULL)
		return;
	if (m->path != NULL && unlink(m->path) < 0 && errno != ENOENT)
		log_warn("%s: unlink %s", m->qid, m->path);
	spool_close(mp);
}

void spool_close(struct spool_msg **mp)
{
	struct spool_msg *m = *mp;
	if (m == NULL)
		return;
	if (m->fd >= 0)
		close(m->fd);
	free(m->path);
	free(m);
	*mp = NULL;
}

void spool_sweep_incoming(const char *spool_dir)
{
	char *dir = xasprintf("%s/incoming", spool_dir);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (d == NULL && dfd >= 0)
		close(dfd);
	if (d != NULL) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) == 0)
				log_info("removed unfinished spool file %s", e->d_name);
		}
		closedir(d);
	}
	free(dir);
}
