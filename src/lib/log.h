/* log - the one logging module.
 * On stderr a line is "2026-11-30T12:00:00.123Z info tern/<component>[pid]: message": a UTC
 * RFC 3339 timestamp with milliseconds (left out with log_timestamps = no, or by default when
 * stderr is the systemd journal), a level (debug, info, warning, error, fatal) and the
 * Postfix-like tag. To syslog (log_configure) a line is one datagram to the local socket,
 * "<PRI>Mmm dd hh:mm:ss tern/<component>[pid]: message", the level in PRI (and, above info,
 * as "warning: " ... in front of the message, as Postfix writes it).
 * log_warn appends strerror(errno), log_warnx does not. log_fatal* exit(1); log_panic aborts
 * (a bug: leave a core).
 * Every line is formatted on the stack and written with one write(2)/send(2): no locks, no
 * allocation, so logging stays usable after fork() and between threads (not in a signal
 * handler: vsnprintf is not async-signal-safe). */
#ifndef TERN_LOG_H
#define TERN_LOG_H
#include <stdbool.h>
#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum log_dest { LOG_TO_STDERR, LOG_TO_SYSLOG };
enum log_stamps { LOG_STAMPS_AUTO, LOG_STAMPS_YES, LOG_STAMPS_NO };

/* log_init - set the component name shown in each line ("master", "smtpd", …). */
void log_init(const char *component);
void log_set_debug(bool on);
bool log_debug_enabled(void);
/* log_configure - where lines go from now on (inherited by children forked later).
 * stamps: timestamps on stderr lines (AUTO: yes, unless stderr is the systemd journal,
 * which stamps lines itself; then "<N>" priority prefixes are written instead).
 * facility: a syslog facility value (LOG_MAIL ...; see log_facility_parse).
 * syslog_socket: the local syslog socket (NULL: /dev/log). With LOG_TO_SYSLOG, a socket
 * that cannot be reached is tried again at each line; meanwhile lines go to stderr.
 * Returns 0, or -1 with *error_r (caller frees) when syslog cannot be reached now. */
int log_configure(enum log_dest dest, enum log_stamps stamps, int facility,
		  const char *syslog_socket, char **error_r);
/* log_facility_parse - "mail", "daemon", "user", "local0".."local7" -> the facility value
 * (syslog.h LOG_MAIL ...). 0 or -1. */
int log_facility_parse(const char *name, int *facility_r);
/* log_format_stamp - the RFC 3339 UTC timestamp with milliseconds of sec/nsec in out (at
 * least 25 bytes): "2026-11-30T12:00:00.123Z". Lock-free (no gmtime). Returns its length. */
size_t log_format_stamp(char *out, size_t outsz, long long sec, long nsec);

void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
/* log_error, log_errorx - level error: something failed that an operator must look at */
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_errorx(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_panic(const char *fmt, ...) LOG_PRINTF(1, 2);

/* log_sanitize - copy client text into out (size outsz) made printable (\xNN) and cut short
 * ("..." appended) so it is safe to log. Returns out. */
char *log_sanitize(char *out, size_t outsz, const char *in, size_t inlen);

#endif
