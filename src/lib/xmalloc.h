/* xmalloc - allocation that succeeds or aborts.
 * Every function here either returns valid memory or logs and aborts; callers never check
 * for NULL. Sizes are checked for overflow before they reach the allocator. */
#ifndef TERN_XMALLOC_H
#define TERN_XMALLOC_H
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* xreallocarray - realloc for nmemb * size with overflow check. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
/* xstrndup - copy at most n bytes of s and NUL-terminate. */
char *xstrndup(const char *s, size_t n);
/* xasprintf - formatted string in fresh memory; caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
