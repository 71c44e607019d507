/* trace - the message trace journal: one line per event in the life of a message, written
 * by every process into data_dir/trace/YYYY-MM-DD (UTC day), read by `tern trace`.
 *
 * A line is "TIME QID EVENT key=value key=value...\n": TIME is
 * "YYYY-MM-DDTHH:MM:SS.uuuuuuZ", QID a queue id or "-" (events that name a message by its
 * mailbox place, user/uidvalidity/uid, instead), EVENT a word. Every value (and the QID) is
 * escaped: bytes outside '!'..'~', and '%' '=' are written %XX, so a value never holds a
 * space, a newline or an '=' and no client text can forge a field or a line. Lines are at
 * most TRACE_LINE_MAX bytes (a long value is cut, never in the middle of an %XX).
 *
 * It is diagnostics, not data: one write(2) per event with O_APPEND (whole lines from
 * concurrent processes do not interleave), no fsync; a write that fails is dropped. With
 * trace off (trace_init with days 0, or never called) TRACE() costs one test of a global and
 * no system call. Knows nothing of mail: callers name their events and keys. */
#ifndef TERN_TRACE_H
#define TERN_TRACE_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define TRACE_LINE_MAX 4096

extern bool trace_on;

/* TRACE - trace_event when the journal is on; fmt is a list of "key=%s" (and %d %u %ld %lu
 * %lld %llu %zu) separated by spaces: the literal text is written as is, every argument is
 * escaped. NULL for a %s is written as an empty value. */
#define TRACE(qid, event, ...) \
	do { \
		if (trace_on) \
			trace_event(qid, event, __VA_ARGS__); \
	} while (0)

/* trace_init - journal into data_dir/trace, files kept days days (0: off). No system call:
 * the directory and the day's file are made at the first event. Call before forking the
 * processes that write (each opens its own descriptor). */
void trace_init(const char *data_dir, unsigned days);
void trace_event(const char *qid, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* trace_format - the line (with its "\n") for an event at tv_sec/usec into out (cap at least
 * 64); returns its length. What trace_event writes; public for the unit tests. */
size_t trace_format(char *out, size_t cap, time_t sec, long usec, const char *qid,
		    const char *event, const char *fmt, va_list ap);

/* A parsed line; pointers into the struct's own copy, valid until trace_line_free. */
struct trace_field {
	char *key, *value;	/* value unescaped (may hold any byte but NUL; %00 is cut) */
};
struct trace_line {
	char *time, *qid, *event;	/* qid NULL when "-" */
	struct trace_field *f;
	size_t n;
	char *copy_;
};
/* trace_parse_line - one line (without or with its "\n"): 0, or -1 when it is not a
 * journal line (too few words, a word without '=', a bad TIME, a bad %XX). */
int trace_parse_line(const char *line, size_t len, struct trace_line *out);
void trace_line_free(struct trace_line *l);
/* trace_get - the value of key, or NULL */
const char *trace_get(const struct trace_line *l, const char *key);

/* trace_dir - data_dir/trace (caller frees) */
char *trace_dir(const char *data_dir);
/* trace_files - the journal's day files in dir, oldest first (NULL-terminated, caller frees
 * each and the array); NULL when dir cannot be read (errno). */
char **trace_files(const char *dir);
/* trace_prune - remove the day files of dir older than days days before now (journal
 * names only); the number removed. */
int trace_prune(const char *dir, unsigned days, time_t now);

#endif
