/* client/clientconf - the mail client's defaults in ~/.config/tern/client.conf
 * ($XDG_CONFIG_HOME/tern/client.conf when set), shared by `tern send` and `tern read`:
 * "key = value" lines (lib/conf), '#' comments, keys server, protocol (read), tls, user,
 * from (send); another key is an error (a typo should not pass silently). A missing file is
 * no error; command-line options override what it says. */
#ifndef TERN_CLIENT_CLIENTCONF_H
#define TERN_CLIENT_CLIENTCONF_H

struct clientconf {
	char *server, *protocol, *tls, *user, *from;	/* NULL when not set */
};

/* clientconf_load - read the file into c (zeroed first). 0, or -1 with *error_r (caller
 * frees) when it exists but cannot be read or has a malformed line. */
int clientconf_load(struct clientconf *c, char **error_r);
void clientconf_free(struct clientconf *c);

#endif
