/* log - the one logging module */
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "lib/xmalloc.h"

enum log_level { LV_DEBUG, LV_INFO, LV_WARNING, LV_ERROR, LV_FATAL };

static const char *const level_names[] = { "debug", "info", "warning", "error", "fatal" };
static const int level_prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR, LOG_CRIT };

static char log_component[32] = "tern";
static bool log_debug_on;
static enum log_dest log_dest = LOG_TO_STDERR;
static bool log_stamps = true;		/* RFC 3339 timestamps on stderr lines */
static bool log_journal;		/* stderr is the journal: "<N>" prefixes */
static int log_facility = LOG_MAIL;
static long log_gmtoff;			/* local offset for the syslog header, taken at
					   log_configure (no localtime_r per line: it locks) */
static struct sockaddr_un log_syslog_addr;
static int log_syslog_fd = -1;

void log_init(const char *component)
{
	snprintf(log_component, sizeof(log_component), "%s", component);
}

void log_set_debug(bool on)
{
	log_debug_on = on;
}

bool log_debug_enabled(void)
{
	return log_debug_on;
}

int log_facility_parse(const char *name, int *facility_r)
{
	static const struct {
		const char *name;
		int facility;
	} names[] = {
		{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
		{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
		{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
		{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(names[i].name, name)) {
			*facility_r = names[i].facility;
			return 0;
		}
	return -1;
}

/* civil_from_days - the proleptic Gregorian date of a day count from 1970-01-01 (Howard
 * Hinnant's algorithm): gmtime_r takes glibc's time zone lock, which a child forked while
 * another thread held it would never get back. */
static void civil_from_days(long long z, long long *y_r, unsigned *m_r, unsigned *d_r)
{
	z += 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	long long y = (long long)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*d_r = doy - (153 * mp + 2) / 5 + 1;
	*m_r = mp < 10 ? mp + 3 : mp - 9;
	*y_r = y + (*m_r <= 2);
}

/* split_time - seconds since the epoch into date and time of day */
struct civil {
	long long year;
	unsigned month, day, hour, min, sec;
};

static void split_time(long long t, struct civil *c)
{
	long long days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	long long rem = t - days * 86400;
	civil_from_days(days, &c->year, &c->month, &c->day);
	c->hour = (unsigned)(rem / 3600);
	c->min = (unsigned)(rem % 3600 / 60);
	c->sec = (unsigned)(rem % 60);
}

size_t log_format_stamp(char *out, size_t outsz, long long sec, long nsec)
{
	struct civil c;
	split_time(sec, &c);
	int n = snprintf(out, outsz, "%04lld-%02u-%02uT%02u:%02u:%02u.%03ldZ", c.year, c.month,
			 c.day, c.hour, c.min, c.sec, nsec / 1000000);
	if (n < 0 || outsz == 0)
		return 0;
	return (size_t)n < outsz ? (size_t)n : outsz - 1;
}

static void put(char *line, size_t sz, size_t *off, const char *fmt, ...) LOG_PRINTF(4, 5);

/* syslog_header - "Mmm dd hh:mm:ss " in local time (RFC 3164 §4.1.2) at *off */
static void syslog_header(char *line, size_t sz, size_t *off, long long sec)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct civil c;
	split_time(sec + log_gmtoff, &c);
	put(line, sz, off, "%s %2u %02u:%02u:%02u ", months[(c.month - 1) % 12], c.day, c.hour,
	    c.min, c.sec);
}

/* stderr_is_journal - systemd sets JOURNAL_STREAM=dev:inode for a service whose stderr is
 * connected to the journal; it holds only when stderr is still that stream */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* syslog_connect - a datagram socket connected to the syslog socket, or -1 */
static int syslog_connect(void)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -1;
	if (connect(s, (const struct sockaddr *)&log_syslog_addr, sizeof(log_syslog_addr)) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

int log_configure(enum log_dest dest, enum log_stamps stamps, int facility,
		  const char *syslog_socket, char **error_r)
{
	log_journal = dest == LOG_TO_STDERR && stderr_is_journal();
	log_stamps = stamps == LOG_STAMPS_YES || (stamps == LOG_STAMPS_AUTO && !log_journal);
	log_facility = facility;
	time_t now = time(NULL);
	struct tm tm;
	if (localtime_r(&now, &tm) != NULL)
		log_gmtoff = tm.tm_gmtoff;
	if (log_syslog_fd >= 0) {
		close(log_syslog_fd);
		log_syslog_fd = -1;
	}
	log_dest = dest;
	if (dest != LOG_TO_SYSLOG)
		return 0;
	const char *path = syslog_socket != NULL ? syslog_socket : "/dev/log";
	memset(&log_syslog_addr, 0, sizeof(log_syslog_addr));
	log_syslog_addr.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(log_syslog_addr.sun_path)) {
		log_dest = LOG_TO_STDERR;
		*error_r = xasprintf("syslog socket %s: path too long", path);
		return -1;
	}
	memcpy(log_syslog_addr.sun_path, path, strlen(path));
	log_syslog_fd = syslog_connect();
	if (log_syslog_fd < 0) {
		*error_r = xasprintf("syslog socket %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* syslog_send - one datagram, without blocking (a full syslog queue must not stop an event
 * loop); a socket the syslog daemon closed (restarted) is connected again, in place (dup2:
 * the descriptor number stays valid for other threads). false when it could not be sent. */
static bool syslog_send(const char *msg, size_t len)
{
	int fd = log_syslog_fd;
	if (fd >= 0 && send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
		return true;
	if (fd >= 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return false;
	int s = syslog_connect();
	if (s < 0)
		return false;
	if (fd >= 0) {
		if (dup2(s, fd) < 0)
			fd = -1;
		close(s);
		if (fd < 0)
			return false;
	} else {
		log_syslog_fd = fd = s;
	}
	return send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0;
}

/* put - snprintf at *off into line (size sz), cut short at the end */
static void put(char *line, size_t sz, size_t *off, const char *fmt, ...)
{
	if (*off + 1 >= sz)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line + *off, sz - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off += (size_t)n < sz - *off ? (size_t)n : sz - *off - 1;
}

/* log_emit - format one line on the stack and write it with a single write(2) (or send(2)),
 * so lines from several processes and threads do not interleave. */
static void log_emit(enum log_level lv, const char *fmt, va_list ap, const char *suffix)
{
	char msg[2048], line[2200];
	size_t ml = 0, off = 0;
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n > 0)
		ml = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	if (suffix != NULL)
		put(msg, sizeof(msg), &ml, ": %s", suffix);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (log_dest == LOG_TO_SYSLOG) {
		/* "<PRI>Mmm dd hh:mm:ss tern/smtpd[pid]: warning: message" (no level word for info) */
		put(line, sizeof(line), &off, "<%d>", log_facility | level_prio[lv]);
		syslog_header(line, sizeof(line), &off, (long long)ts.tv_sec);
		put(line, sizeof(line), &off, "tern/%s[%ld]: ", log_component, (long)getpid());
		if (lv != LV_INFO)
			put(line, sizeof(line), &off, "%s: ", level_names[lv]);
		put(line, sizeof(line), &off, "%.*s", (int)ml, msg);
		if (syslog_send(line, off))
			return;
		off = 0;	/* syslog is away: the line goes to stderr */
	}
	/* "[<N>][2026-11-30T12:00:00.123Z ]info tern/smtpd[pid]: message" */
	if (log_journal)
		put(line, sizeof(line), &off, "<%d>", level_prio[lv]);
	if (log_stamps) {
		off += log_format_stamp(line + off, sizeof(line) - off, (long long)ts.tv_sec,
					ts.tv_nsec);
		line[off++] = ' ';
	}
	put(line, sizeof(line), &off, "%s tern/%s[%ld]: %.*s", level_names[lv], log_component,
	    (long)getpid(), (int)ml, msg);
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, off);
	(void)w;
}

#define LOG_BODY(lv, suffix)                   \
	do {                                   \
		va_list ap;                    \
		va_start(ap, fmt);             \
		log_emit(lv, fmt, ap, suffix); \
		va_end(ap);                    \
	} while (0)

void log_debug(const char *fmt, ...)
{
	if (log_debug_on)
		LOG_BODY(LV_DEBUG, NULL);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(LV_INFO, NULL);
}

void log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(LV_WARNING, e);
}

void log_warnx(const char *fmt, ...)
{
	LOG_BODY(LV_WARNING, NULL);
}

void log_error(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(LV_ERROR, e);
}

void log_errorx(const char *fmt, ...)
{
	LOG_BODY(LV_ERROR, NULL);
}

void log_fatal(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(LV_FATAL, e);
	exit(1);
}

void log_fatalx(const char *fmt, ...)
{
	LOG_BODY(LV_FATAL, NULL);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	LOG_BODY(LV_FATAL, NULL);
	abort();
}

char *log_sanitize(char *out, size_t outsz, const char *in, size_t inlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (outsz == 0)
		return out;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (o + 8 >= outsz) {
			if (o + 4 <= outsz) {
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o < outsz ? o : outsz - 1] = '\0';
	return out;
}
