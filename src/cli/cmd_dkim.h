/* cmd_dkim - "tern dkim generate|list|check": DKIM signing keys in dkim_dir and the DNS
 * records to publish for them. Exit status: 0 ok, 64 usage, 1 failure (check: a record
 * missing or different). */
#ifndef TERN_CMD_DKIM_H
#define TERN_CMD_DKIM_H

/* cmd_dkim - argv[0] is "dkim" */
int cmd_dkim(int argc, char **argv);

#endif
