/* cmd_backup - "tern backup DIR -c FILE": a consistent copy of a running server's data dir
 * (docs/operations.md, "Backing up"). Exit status: 0 done, 64 usage, 1 failure. */
#ifndef TERN_CMD_BACKUP_H
#define TERN_CMD_BACKUP_H

/* cmd_backup - argv[0] is "backup" */
int cmd_backup(int argc, char **argv);

#endif
