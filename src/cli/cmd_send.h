/* cmd_send - `tern send`: compose a message (mime/compose) and submit it with the SMTP
 * client (smtp/client) over STARTTLS or implicit TLS with AUTH. */
#ifndef TERN_CLI_CMD_SEND_H
#define TERN_CLI_CMD_SEND_H

/* cmd_send - argv[0] is "send". Returns a sysexits.h code: 0, EX_USAGE, EX_DATAERR (the
 * body or a header cannot be composed), EX_NOINPUT (an unreadable file), EX_NOHOST (the
 * server name does not resolve), EX_UNAVAILABLE (cannot connect; the server refused the
 * message), EX_NOUSER (a recipient refused), EX_PROTOCOL (TLS failure, protocol error),
 * EX_NOPERM (authentication failed), EX_TEMPFAIL (a 4xx or a lost connection),
 * EX_CONFIG (client.conf), EX_SOFTWARE. */
int cmd_send(int argc, char **argv);

#endif
