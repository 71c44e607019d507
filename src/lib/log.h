/* log - the one logging module.
 * Lines go to stderr as "tern/<component>[pid]: message". log_warn appends strerror(errno),
 * log_warnx does not. log_fatal* exit(1); log_panic aborts (a bug: leave a core). */
#ifndef TERN_LOG_H
#define TERN_LOG_H
#include <stdbool.h>
#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* log_init - set the component name shown in each line ("master", "smtpd", …). */
void log_init(const char *component);
void log_set_debug(bool on);
bool log_debug_enabled(void);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warnx(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void log_panic(const char *fmt, ...) LOG_PRINTF(1, 2);

/* log_sanitize - copy client text into out (size outsz) made printable (\xNN) and cut short
 * ("..." appended) so it is safe to log. Returns out. */
char *log_sanitize(char *out, size_t outsz, const char *in, size_t inlen);

#endif
