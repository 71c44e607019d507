/* conf - a generic "key = value" / "[section]" file reader */
#include "lib/conf.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lib/xmalloc.h"

#define CONF_MAX_LINE 4096

static void trim(char **s, char **e)
{
	while (*s < *e && isblank((unsigned char)**s))
		(*s)++;
	while (*e > *s && isspace((unsigned char)(*e)[-1]))
		(*e)--;
}

static int key_ok(const char *k)
{
	if (*k == '\0')
		return 0;
	for (; *k; k++)
		if (!isalnum((unsigned char)*k) && *k != '_' && *k != '-' && *k != '.')
			return 0;
	return 1;
}

/* conf_parse - walk the lines, hand each key/value to cb with its section */
int conf_parse(const char *name, const char *text, size_t len, conf_cb *cb, void *ctx,
	       char **error_r)
{
	char section[128] = "";
	char line[CONF_MAX_LINE + 1];
	size_t pos = 0;
	unsigned lineno = 0;

	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - (text + pos)) : len - pos;
		lineno++;
		if (ll > CONF_MAX_LINE) {
			*error_r = xasprintf("%s:%u: line too long", name, lineno);
			return -1;
		}
		memcpy(line, text + pos, ll);
		line[ll] = '\0';
		pos += ll + (nl ? 1 : 0);
		if (memchr(line, '\0', ll) != NULL) {
			*error_r = xasprintf("%s:%u: NUL byte in line", name, lineno);
			return -1;
		}
		char *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		char *s = line, *e = line + strlen(line);
		trim(&s, &e);
		*e = '\0';
		if (s == e)
			continue;
		if (*s == '[') {
			if (e[-1] != ']') {
				*error_r = xasprintf("%s:%u: section header without ']'", name, lineno);
				return -1;
			}
			char *ss = s + 1, *se = e - 1;
			trim(&ss, &se);
			*se = '\0';
			if (!key_ok(ss) || (size_t)(se - ss) >= sizeof(section)) {
				*error_r = xasprintf("%s:%u: bad section name", name, lineno);
				return -1;
			}
			memcpy(section, ss, (size_t)(se - ss) + 1);
			continue;
		}
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			*error_r = xasprintf("%s:%u: expected \"key = value\"", name, lineno);
			return -1;
		}
		char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
		trim(&ks, &ke);
		trim(&vs, &ve);
		*ke = '\0';
		*ve = '\0';
		if (!key_ok(ks)) {
			*error_r = xasprintf("%s:%u: bad key name", name, lineno);
			return -1;
		}
		char *err = NULL;
		if (cb(ctx, section, ks, vs, &err) < 0) {
			*error_r = xasprintf("%s:%u: %s%s%s: %s", name, lineno, section,
					     *section ? "." : "", ks, err ? err : "bad value");
			free(err);
			return -1;
		}
	}
	return 0;
}
