/* cmd_user - "tern user" and "tern alias": manage accounts and aliases in data_dir/tern.db.
 * Both take argv with argv[0] the command name ("user", "alias") and an option -c FILE
 * anywhere (without it, the development instance's configuration). They print to stdout and
 * stderr and return an exit status: 0 ok, 64 (EX_USAGE) wrong usage, 65 (EX_DATAERR) a
 * malformed address or one outside the server's domains, 1 any other failure. */
#ifndef TERN_CMD_USER_H
#define TERN_CMD_USER_H

/* cmd_user - tern user add|del|passwd ADDRESS, tern user list. The password for add and
 * passwd is one line of standard input, or asked twice without echo on a terminal. */
int cmd_user(int argc, char **argv);
/* cmd_alias - tern alias add ALIAS TARGET..., tern alias del ALIAS, tern alias list. */
int cmd_alias(int argc, char **argv);

#endif
