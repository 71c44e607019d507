/* buf - a growable byte buffer with an optional hard cap.
 * The data is always followed by a NUL byte (not counted in len), so buf_cstr() is free;
 * binary data may still contain NULs and must be used with len. */
#ifndef TERN_BUF_H
#define TERN_BUF_H
#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
	char *data;	/* NULL until the first append */
	size_t len;
	size_t cap;
	size_t max;	/* 0: no cap */
} buf;

/* buf_init - empty buffer that refuses to grow beyond max bytes (0 = no cap). */
void buf_init(buf *b, size_t max);
/* buf_append - append n bytes; returns 0, or -1 (buffer unchanged) when max would be exceeded. */
int buf_append(buf *b, const void *p, size_t n);
int buf_puts(buf *b, const char *s);
int buf_putc(buf *b, char c);
/* buf_printf - append formatted text; -1 when it would exceed max. */
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
/* buf_cstr - the contents as a NUL-terminated string (valid until the next change). */
const char *buf_cstr(buf *b);
/* buf_consume - drop the first n bytes. */
void buf_consume(buf *b, size_t n);
void buf_reset(buf *b);
/* buf_free - release the memory; the buffer can be reused after buf_init. */
void buf_free(buf *b);

#endif
