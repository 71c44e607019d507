/* notify - the inotify side of the change file (see notify.h). The writer side is
 * maildir_changes_bump, called through store_notify after every commit that changes a
 * mailbox. */
#include "store/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/xmalloc.h"
#include "store/store.h"
#include "store/store_private.h"

struct store_watch {
	struct store_watch *next;
	char *data_dir, *address;
	char *path;		/* the change file */
	int wd;			/* -1 when the file went away (IN_IGNORED) */
	dev_t dev;		/* the file watched: a replaced file is watched again */
	ino_t ino;
	unsigned refs;
	unsigned long long events;	/* store_watch_events */
	bool fired;		/* read, its callback not yet made */
	bool recheck;		/* IN_ATTRIB: maybe unlinked or replaced */
};

/* The descriptor the caller polls is an epoll set of two: the inotify descriptor, and an
 * eventfd that store_notifier_poll() signals when it has read events whose callbacks are
 * still to be made - so that reading events outside dispatch never loses a wake-up. */
struct store_notifier {
	int fd;			/* epoll: ino and pending */
	int ino;		/* inotify */
	int pending;		/* eventfd: events read by store_notifier_poll */
	bool all;		/* a queue overflow read, its callbacks not yet made */
	struct store_watch *watches;
};

struct store_notifier *store_notifier_new(char **error_r)
{
	struct store_notifier *n = xcalloc(1, sizeof(*n));
	n->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	n->pending = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	n->fd = epoll_create1(EPOLL_CLOEXEC);
	const char *what = n->ino < 0 ? "inotify_init1" : n->pending < 0 ? "eventfd" : "epoll_create1";
	if (n->ino >= 0 && n->pending >= 0 && n->fd >= 0) {
		struct epoll_event ev = { .events = EPOLLIN };
		ev.data.fd = n->ino;
		if (epoll_ctl(n->fd, EPOLL_CTL_ADD, n->ino, &ev) == 0) {
			ev.data.fd = n->pending;
			if (epoll_ctl(n->fd, EPOLL_CTL_ADD, n->pending, &ev) == 0)
				return n;
		}
		what = "epoll_ctl";
	}
	store_set_error(error_r, "%s: %s", what, strerror(errno));
	if (n->ino >= 0)
		close(n->ino);
	if (n->pending >= 0)
		close(n->pending);
	if (n->fd >= 0)
		close(n->fd);
	free(n);
	return NULL;
}

static void watch_free(struct store_watch *w)
{
	free(w->data_dir);
	free(w->address);
	free(w->path);
	free(w);
}

void store_notifier_free(struct store_notifier **np)
{
	struct store_notifier *n = *np;
	if (n == NULL)
		return;
	while (n->watches != NULL) {
		struct store_watch *w = n->watches;
		n->watches = w->next;
		watch_free(w);
	}
	close(n->fd);
	close(n->ino);
	close(n->pending);
	free(n);
	*np = NULL;
}

int store_notifier_fd(const struct store_notifier *n)
{
	return n->fd;
}

const char *store_watch_address(const struct store_watch *w)
{
	return w->address;
}

const char *store_watch_data_dir(const struct store_watch *w)
{
	return w->data_dir;
}

/* watch_add - (re)create the inotify watch of w's change file, creating the file */
static int watch_add(struct store_notifier *n, struct store_watch *w, char **error_r)
{
	int fd = open(w->path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		store_set_error(error_r, "%s: %s", w->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	if (w->wd >= 0)
		inotify_rm_watch(n->ino, w->wd);
	w->wd = -1;
	w->dev = st.st_dev;
	w->ino = st.st_ino;
	/* IN_MODIFY: every bump; IN_ATTRIB: a rename or unlink of the file (link count) */
	int wd = inotify_add_watch(n->ino, w->path, IN_MODIFY | IN_ATTRIB);
	if (wd < 0) {
		store_set_error(error_r, "inotify_add_watch %s: %s", w->path, strerror(errno));
		return -1;
	}
	/* one inode, one wd: another account's watch cannot share it (one file per account) */
	w->wd = wd;
	return 0;
}

int store_notifier_watch(struct store_notifier *n, const char *data_dir, const char *address,
			 struct store_watch **w_r, char **error_r)
{
	/* one watch per change file: addresses that differ only in case share an account */
	char *root = store_maildir_path(data_dir, address);
	char *path = xasprintf("%s/%s", root, STORE_CHANGES_NAME);
	free(root);
	for (struct store_watch *w = n->watches; w != NULL; w = w->next) {
		if (strcmp(w->path, path) == 0) {
			free(path);
			if (w->wd < 0 && watch_add(n, w, error_r) < 0)
				return -1;
			w->refs++;
			*w_r = w;
			return 0;
		}
	}
	struct store_watch *w = xcalloc(1, sizeof(*w));
	w->data_dir = xstrdup(data_dir);
	w->address = xstrdup(address);
	w->path = path;
	w->wd = -1;
	if (watch_add(n, w, error_r) < 0) {
		watch_free(w);
		return -1;
	}
	w->refs = 1;
	w->next = n->watches;
	n->watches = w;
	*w_r = w;
	return 0;
}

void store_notifier_unwatch(struct store_notifier *n, struct store_watch **wp)
{
	struct store_watch *w = *wp;
	if (w == NULL)
		return;
	*wp = NULL;
	if (--w->refs > 0)
		return;
	for (struct store_watch **pp = &n->watches; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	if (w->wd >= 0)
		inotify_rm_watch(n->ino, w->wd);
	watch_free(w);
}

/* read_events - read every queued event (never blocks): count and mark the watches that
 * fired (n->all on a queue overflow). 1 when some watch was marked, 0 none, -1 read error
 * (errno set). */
static int read_events(struct store_notifier *n)
{
	/* aligned as inotify_event needs; room for many events per read */
	char evbuf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	for (;;) {
		ssize_t len = read(n->ino, evbuf, sizeof(evbuf));
		if (len < 0 && errno == EINTR)
			continue;
		if (len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (len <= 0)
			return -1;
		for (char *p = evbuf; p < evbuf + len;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				/* events were lost: any account may have changed */
				n->all = true;
				any = true;
				for (struct store_watch *w = n->watches; w != NULL; w = w->next)
					w->events++;
				continue;
			}
			for (struct store_watch *w = n->watches; w != NULL; w = w->next) {
				if (w->wd != ev->wd)
					continue;
				w->events++;
				w->fired = true;
				any = true;
				if (ev->mask & IN_IGNORED)
					w->wd = -1;	/* the file went: watched again below */
				else if (ev->mask & IN_ATTRIB)
					w->recheck = true;
			}
		}
	}
	/* A watch whose file went away (account deleted, or the file removed by hand) is made
	 * again at once, so that a recreated account is still heard - before anyone relies on
	 * the counts; it fired, as something did change. */
	for (struct store_watch *w = n->watches; w != NULL && any; w = w->next) {
		if (!w->fired)
			continue;
		if (w->recheck) {
			/* unlinked or replaced (the account deleted and made again): the writers
			 * of the new file must be heard too */
			struct stat st;
			w->recheck = false;
			if (stat(w->path, &st) < 0 || st.st_dev != w->dev || st.st_ino != w->ino)
				watch_add(n, w, NULL);
		}
		if (w->wd < 0)
			watch_add(n, w, NULL);
	}
	return any ? 1 : 0;
}

int store_notifier_poll(struct store_notifier *n)
{
	int r = read_events(n);
	if (r > 0) {
		/* the callbacks are dispatch's: make the polled descriptor readable for it */
		uint64_t one = 1;
		if (write(n->pending, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -1;
	}
	return r < 0 ? -1 : 0;
}

unsigned long long store_watch_events(struct store_watch *w)
{
	/* not in place (its file could not be watched again): changes would go unheard, so
	 * it must never look quiet */
	if (w->wd < 0)
		w->events++;
	return w->events;
}

int store_notifier_dispatch(struct store_notifier *n, store_notifier_fn *cb, void *ctx)
{
	uint64_t count_pending;
	if (read(n->pending, &count_pending, sizeof(count_pending)) < 0 && errno != EAGAIN)
		return -1;
	if (read_events(n) < 0)
		return -1;
	bool all = n->all, any = all;
	n->all = false;
	for (struct store_watch *w = n->watches; w != NULL && !any; w = w->next)
		any = w->fired;
	if (!any && !all)
		return 0;
	/* Mark first, then call back: cb may watch or unwatch. */
	int count = 0;
	for (;;) {
		struct store_watch *w = n->watches;
		while (w != NULL && !(w->fired || all))
			w = w->next;
		if (w == NULL)
			break;
		/* take w out of this round: clear every mark (all included) before the call */
		w->fired = false;
		if (all) {
			for (struct store_watch *o = n->watches; o != NULL; o = o->next)
				o->fired = true;
			w->fired = false;
			all = false;
		}
		count++;
		w->refs++;	/* cb may unwatch it: keep it alive through the call */
		cb(ctx, w);
		struct store_watch *tmp = w;
		store_notifier_unwatch(n, &tmp);
	}
	return count;
}
