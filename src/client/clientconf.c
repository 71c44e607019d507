/* clientconf - the mail client's defaults (`tern send`, `tern read`) from
 * ~/.config/tern/client.conf, read with lib/conf */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client/clientconf.h"
#include "lib/conf.h"
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

static int conf_entry(void *ctx, const char *section, const char *key, const char *value,
		      char **error_r)
{
	struct clientconf *c = ctx;
	char **slot = !strcmp(key, "server")	 ? &c->server
		      : !strcmp(key, "protocol") ? &c->protocol
		      : !strcmp(key, "tls")	 ? &c->tls
		      : !strcmp(key, "user")	 ? &c->user
		      : !strcmp(key, "from")	 ? &c->from
						 : NULL;
	if (slot == NULL || section[0] != '\0') {
		*error_r = xasprintf("unknown key \"%s\" (server, protocol, tls, user, from)", key);
		return -1;
	}
	free(*slot);
	*slot = xstrdup(value);
	return 0;
}

int clientconf_load(struct clientconf *c, char **error_r)
{
	memset(c, 0, sizeof(*c));
	char *path = conf_path();
	if (path == NULL)
		return 0;
	char *data = NULL;
	size_t len;
	int r = 0;
	if (fs_read_file(path, 64 * 1024, &data, &len) < 0) {
		if (errno != ENOENT) {
			*error_r = xasprintf("%s: %s", path, strerror(errno));
			r = -1;
		}
	} else if (conf_parse(path, data, len, conf_entry, c, error_r) < 0) {
		r = -1;
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
	free(c->from);
	memset(c, 0, sizeof(*c));
}
