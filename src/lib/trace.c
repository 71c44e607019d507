/* trace - the message trace journal (see trace.h) */
#include "lib/trace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/strnum.h"
#include "lib/xmalloc.h"

bool trace_on;
static char *trace_path;	/* data_dir/trace */
static int trace_fd = -1;
static long trace_fd_day = -1;	/* days since the epoch of the open file */
static pid_t trace_fd_pid;	/* a descriptor inherited over fork is reopened */
static time_t trace_warned;

char *trace_dir(const char *data_dir)
{
	return xasprintf("%s/trace", data_dir);
}

void trace_init(const char *data_dir, unsigned days)
{
	free(trace_path);
	trace_path = days > 0 && data_dir != NULL ? trace_dir(data_dir) : NULL;
	trace_on = trace_path != NULL;
	if (trace_fd >= 0 && trace_fd_pid == getpid())
		close(trace_fd);
	trace_fd = -1;
	trace_fd_day = -1;
}

static const char hex[] = "0123456789ABCDEF";

/* put_escaped - append s escaped to out[*len] within cap (whole %XX units only) */
static void put_escaped(char *out, size_t cap, size_t *len, const char *s)
{
	size_t n = *len;
	for (; s != NULL && *s; s++) {
		unsigned char c = (unsigned char)*s;
		bool plain = c > ' ' && c < 0x7f && c != '%' && c != '=';
		if (n + (plain ? 1 : 3) > cap)
			break;
		if (plain) {
			out[n++] = (char)c;
		} else {
			out[n++] = '%';
			out[n++] = hex[c >> 4];
			out[n++] = hex[c & 15];
		}
	}
	*len = n;
}

/* put_raw - append literal text (the caller's format: keys, spaces) made safe the same way,
 * except that a space and '=' stay what they are */
static void put_raw(char *out, size_t cap, size_t *len, const char *s, size_t k)
{
	for (size_t i = 0; i < k && *len < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		out[(*len)++] = c >= ' ' && c < 0x7f ? (char)c : '_';
	}
}

size_t trace_format(char *out, size_t cap, time_t sec, long usec, const char *qid,
		    const char *event, const char *fmt, va_list ap)
{
	size_t len = 0;
	size_t room = cap - 1;	/* the final "\n" */
	struct tm tm;
	gmtime_r(&sec, &tm);
	int w = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
	len = w > 0 && (size_t)w < room ? (size_t)w : 0;
	if (qid != NULL && *qid)
		put_escaped(out, room, &len, qid);
	else
		put_raw(out, room, &len, "-", 1);
	put_raw(out, room, &len, " ", 1);
	put_escaped(out, room, &len, event);
	if (fmt != NULL && *fmt)
		put_raw(out, room, &len, " ", 1);
	for (const char *p = fmt; p != NULL && *p;) {
		const char *pct = strchr(p, '%');
		size_t k = pct ? (size_t)(pct - p) : strlen(p);
		put_raw(out, room, &len, p, k);
		if (pct == NULL)
			break;
		p = pct + 1;
		char num[32];
		int l = 0;	/* count of 'l' */
		bool z = false;
		while (*p == 'l') {
			l++;
			p++;
		}
		if (*p == 'z') {
			z = true;
			p++;
		}
		switch (*p) {
		case 's':
			put_escaped(out, room, &len, va_arg(ap, const char *));
			break;
		case 'd':
			if (l >= 2)
				snprintf(num, sizeof(num), "%lld", va_arg(ap, long long));
			else if (l == 1)
				snprintf(num, sizeof(num), "%ld", va_arg(ap, long));
			else
				snprintf(num, sizeof(num), "%d", va_arg(ap, int));
			put_escaped(out, room, &len, num);
			break;
		case 'u':
			if (z)
				snprintf(num, sizeof(num), "%zu", va_arg(ap, size_t));
			else if (l >= 2)
				snprintf(num, sizeof(num), "%llu", va_arg(ap, unsigned long long));
			else if (l == 1)
				snprintf(num, sizeof(num), "%lu", va_arg(ap, unsigned long));
			else
				snprintf(num, sizeof(num), "%u", va_arg(ap, unsigned));
			put_escaped(out, room, &len, num);
			break;
		case '%':
			put_escaped(out, room, &len, "%");
			break;
		default:	/* not supported: the rest of the format is dropped */
			p = "";
			continue;
		}
		p++;
	}
	out[len++] = '\n';
	return len;
}

/* day_open - the descriptor of today's file (days since the epoch: day), made when missing */
static int day_open(long day, time_t sec)
{
	if (trace_fd >= 0 && trace_fd_day == day && trace_fd_pid == getpid())
		return trace_fd;
	if (trace_fd >= 0 && trace_fd_pid == getpid())
		close(trace_fd);
	trace_fd = -1;
	struct tm tm;
	gmtime_r(&sec, &tm);
	char *path = xasprintf("%s/%04d-%02d-%02d", trace_path, tm.tm_year + 1900, tm.tm_mon + 1,
			       tm.tm_mday);
	int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
	int fd = open(path, flags, 0600);
	if (fd < 0 && errno == ENOENT && (mkdir(trace_path, 0700) == 0 || errno == EEXIST))
		fd = open(path, flags, 0600);
	if (fd < 0 && sec - trace_warned >= 60) {
		trace_warned = sec;
		log_warn("trace: %s", path);
	}
	free(path);
	trace_fd = fd;
	trace_fd_day = day;
	trace_fd_pid = getpid();
	return fd;
}

void trace_event(const char *qid, const char *event, const char *fmt, ...)
{
	if (!trace_on)
		return;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	char line[TRACE_LINE_MAX];
	va_list ap;
	va_start(ap, fmt);
	size_t n = trace_format(line, sizeof(line), tv.tv_sec, (long)tv.tv_usec, qid, event, fmt,
				ap);
	va_end(ap);
	int fd = day_open((long)(tv.tv_sec / 86400), tv.tv_sec);
	if (fd >= 0 && write(fd, line, n) != (ssize_t)n && tv.tv_sec - trace_warned >= 60) {
		trace_warned = tv.tv_sec;
		log_warn("trace: write");
	}
}

/* ---- reading ---- */

/* unescape - decode %XX in place; -1 on a bad escape or a raw byte a writer never puts */
static int unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		unsigned char c = (unsigned char)*r;
		if (c == '%') {
			int a = strnum_hexdigit(r[1]), b = a < 0 ? -1 : strnum_hexdigit(r[2]);
			if (b < 0)
				return -1;
			*w++ = (char)(a << 4 | b);
			r += 2;
			if (w[-1] == '\0')	/* %00: the value ends there */
				return 0;
		} else if (c <= ' ' || c >= 0x7f || c == '=') {
			return -1;
		} else {
			*w++ = (char)c;
		}
	}
	*w = '\0';
	return 0;
}

/* valid_time - "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" */
static bool valid_time(const char *t)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
	if (strlen(t) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (t[i] < '0' || t[i] > '9') : t[i] != shape[i])
			return false;
	return true;
}

int trace_parse_line(const char *line, size_t len, struct trace_line *out)
{
	memset(out, 0, sizeof(*out));
	if (len > 0 && line[len - 1] == '\n')
		len--;
	if (len == 0 || len > TRACE_LINE_MAX || memchr(line, '\0', len) != NULL ||
	    memchr(line, '\n', len) != NULL)
		return -1;
	char *c = xstrndup(line, len);
	out->copy_ = c;
	char *words[3];
	char *save = NULL, *tok = strtok_r(c, " ", &save);
	size_t nw = 0;
	for (; tok != NULL && nw < 3; tok = nw < 3 ? strtok_r(NULL, " ", &save) : NULL)
		words[nw++] = tok;
	if (nw < 3 || !valid_time(words[0]))
		goto bad;
	out->time = words[0];
	out->qid = strcmp(words[1], "-") == 0 ? NULL : words[1];
	out->event = words[2];
	if ((out->qid != NULL && unescape(out->qid) < 0) || unescape(out->event) < 0 ||
	    *out->event == '\0')
		goto bad;
	for (tok = strtok_r(NULL, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || eq == tok)
			goto bad;
		*eq = '\0';
		if (unescape(tok) < 0 || unescape(eq + 1) < 0)
			goto bad;
		out->f = xreallocarray(out->f, out->n + 1, sizeof(*out->f));
		out->f[out->n].key = tok;
		out->f[out->n].value = eq + 1;
		out->n++;
	}
	return 0;
bad:
	trace_line_free(out);
	return -1;
}

void trace_line_free(struct trace_line *l)
{
	free(l->f);
	free(l->copy_);
	memset(l, 0, sizeof(*l));
}

const char *trace_get(const struct trace_line *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->f[i].key, key) == 0)
			return l->f[i].value;
	return NULL;
}

/* day_name - is name a journal file name (YYYY-MM-DD)? Its day since the epoch in *day_r */
static bool day_name(const char *name, long *day_r)
{
	static const char shape[] = "dddd-dd-dd";
	if (strlen(name) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (name[i] < '0' || name[i] > '9') : name[i] != shape[i])
			return false;
	struct tm tm = { 0 };
	tm.tm_year = atoi(name) - 1900;
	tm.tm_mon = atoi(name + 5) - 1;
	tm.tm_mday = atoi(name + 8);
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31)
		return false;
	*day_r = (long)(timegm(&tm) / 86400);
	return true;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **trace_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return NULL;
	char **v = xcalloc(1, sizeof(char *));
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long day;
		if (!day_name(e->d_name, &day))
			continue;
		v = xreallocarray(v, n + 2, sizeof(char *));
		v[n++] = xasprintf("%s/%s", dir, e->d_name);
		v[n] = NULL;
	}
	closedir(d);
	qsort(v, n, sizeof(char *), cmp_str);
	return v;
}

int trace_prune(const char *dir, unsigned days, time_t now)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return 0;
	DIR *d = fdopendir(dfd);
	if (d == NULL) {
		close(dfd);
		return 0;
	}
	long today = (long)(now / 86400);
	int removed = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long day;
		if (day_name(e->d_name, &day) && today - day >= (long)days &&
		    unlinkat(dirfd(d), e->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
