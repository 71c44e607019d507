/* log - the one logging module */
#include "lib/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char log_component[32] = "tern";
static bool log_debug_on;

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

/* log_emit - format one line and write it with a single write(2) so lines from several
 * processes do not interleave. */
static void log_emit(const char *fmt, va_list ap, const char *suffix)
{
	char line[2048];
	int n = snprintf(line, sizeof(line), "tern/%s[%ld]: ", log_component, (long)getpid());
	if (n < 0)
		return;
	size_t off = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	int m = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	if (m > 0)
		off += (size_t)m < sizeof(line) - off ? (size_t)m : sizeof(line) - off - 1;
	if (suffix != NULL) {
		m = snprintf(line + off, sizeof(line) - off, ": %s", suffix);
		if (m > 0)
			off += (size_t)m < sizeof(line) - off ? (size_t)m : sizeof(line) - off - 1;
	}
	if (off >= sizeof(line) - 1)
		off = sizeof(line) - 2;
	line[off++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, off);
	(void)w;
}

#define LOG_BODY(suffix)                       \
	do {                                   \
		va_list ap;                    \
		va_start(ap, fmt);             \
		log_emit(fmt, ap, suffix);     \
		va_end(ap);                    \
	} while (0)

void log_debug(const char *fmt, ...)
{
	if (log_debug_on)
		LOG_BODY(NULL);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(NULL);
}

void log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(e);
}

void log_warnx(const char *fmt, ...)
{
	LOG_BODY(NULL);
}

void log_fatal(const char *fmt, ...)
{
	const char *e = strerror(errno);
	LOG_BODY(e);
	exit(1);
}

void log_fatalx(const char *fmt, ...)
{
	LOG_BODY(NULL);
	exit(1);
}

void log_panic(const char *fmt, ...)
{
	LOG_BODY(NULL);
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
