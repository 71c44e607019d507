/* conf - a generic "key = value" / "[section]" file reader (no knowledge of the keys).
 * '#' starts a comment to the end of the line; keys and values have surrounding blanks
 * removed. */
#ifndef TERN_CONF_H
#define TERN_CONF_H
#include <stddef.h>

/* conf_cb - called for each entry; return 0, or -1 with *error_r (static or xasprintf'd
 * into *error_r, caller frees) describing the bad value. section is "" before any header. */
typedef int conf_cb(void *ctx, const char *section, const char *key, const char *value,
		    char **error_r);

/* conf_parse - parse text[0..len); errors come back as "NAME:LINE: reason" in *error_r
 * (caller frees). Lines are limited to 4096 bytes. 0 or -1. */
int conf_parse(const char *name, const char *text, size_t len, conf_cb *cb, void *ctx,
	       char **error_r);

#endif
