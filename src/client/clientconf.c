/* clientconf - defaults for `tern read` from ~/.config/tern/client.conf */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/clientconf.h"
#include "lib/fs.h"
#include "lib/xmalloc.h"

static char *conf_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	if (xdg && xdg[0] == '/')
		return xasprintf("%s/tern/client.conf", xdg);
	const char *home = getenv("HOME");
	if (home && home[0])
		return xasprintf("%s/.config/tern/client.conf", home);
	return NULL;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

int clientconf_load(struct clientconf *c, char **error_r)
{
	memset(c, 0, sizeof(*c));
	char *path = conf_path();
	if (path == NULL)
		return 0;
	char *data = NULL;
	size_t len;
	if (fs_read_file(path, 64 * 1024, &data, &len) < 0) {
		int e = errno;
		if (e == ENOENT) {
			free(path);
			return 0;
		}
		*error_r = xasprintf("%s: %s", path, strerror(e));
		free(path);
		return -1;
	}
	int r = 0;
	unsigned lineno = 0;
	char *save = NULL;
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (eq == NULL) {
			*error_r = xasprintf("%s: line %u: expected key = value", path, lineno);
			r = -1;
			break;
		}
		*eq = '\0';
		char *key = trim(s), *value = trim(eq + 1);
		char **slot = !strcmp(key, "server") ? &c->server
			      : !strcmp(key, "protocol") ? &c->protocol
			      : !strcmp(key, "tls") ? &c->tls
			      : !strcmp(key, "user") ? &c->user : NULL;
		if (slot) {
			free(*slot);
			*slot = xstrdup(value);
		}
	}
	free(data);
	free(path);
	if (r < 0)
		clientconf_free(c);
	return r;
}

void clientconf_free(struct clientconf *c)
{
	free(c->server);
	free(c->protocol);
	free(c->tls);
	free(c->user);
	memset(c, 0, sizeof(*c));
}
